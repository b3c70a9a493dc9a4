//! In-place header rewrites of a routed packet: MAC addresses, TTL / hop limit, and the IPv4
//! header checksum updated incrementally (RFC 1624) instead of recomputed.

/// Offset of the TTL byte in an IPv4 header (the protocol byte follows it in the same word).
const IPV4_TTL: usize = 8;
/// Offset of the IPv4 header checksum.
const IPV4_CHECKSUM: usize = 10;
/// Offset of the hop-limit byte in an IPv6 header.
const IPV6_HOP_LIMIT: usize = 7;

/// RFC 1624 equation 3: the checksum `hc` after one 16-bit word of the covered data changed
/// from `old` to `new`, computed as `~(~HC + ~m + m')` in one's-complement arithmetic. Unlike
/// equation 2 of RFC 1141 this never yields the `0xffff` form a full recomputation cannot.
#[inline]
pub fn checksum_update16(hc: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    // Folded twice: fits in 16 bits.
    !(sum as u16)
}

/// The IPv4 header checksum of `hdr` computed from scratch (the checksum field is taken as 0).
/// The reference the incremental update is tested against; the forwarding path does not call it.
pub fn ipv4_header_checksum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, w) in hdr.chunks(2).enumerate() {
        if i == IPV4_CHECKSUM / 2 {
            continue;
        }
        let hi = w[0];
        let lo = w.get(1).copied().unwrap_or(0);
        sum += u32::from(u16::from_be_bytes([hi, lo]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded until it fits.
    !(sum as u16)
}

/// Decrement the TTL of the IPv4 header at the start of `ip` and update its checksum
/// incrementally. The caller has checked that the header is present (20 bytes or more) and that
/// the TTL is at least 2.
#[inline]
pub fn decrement_ipv4_ttl(ip: &mut [u8]) {
    let old = u16::from_be_bytes([ip[IPV4_TTL], ip[IPV4_TTL + 1]]);
    ip[IPV4_TTL] = ip[IPV4_TTL].wrapping_sub(1);
    let new = u16::from_be_bytes([ip[IPV4_TTL], ip[IPV4_TTL + 1]]);
    let hc = u16::from_be_bytes([ip[IPV4_CHECKSUM], ip[IPV4_CHECKSUM + 1]]);
    let hc = checksum_update16(hc, old, new);
    ip[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&hc.to_be_bytes());
}

/// Decrement the hop limit of the IPv6 header at the start of `ip` (IPv6 has no header
/// checksum). The caller has checked the header is present and the hop limit is at least 2.
#[inline]
pub fn decrement_ipv6_hop_limit(ip: &mut [u8]) {
    ip[IPV6_HOP_LIMIT] = ip[IPV6_HOP_LIMIT].wrapping_sub(1);
}

/// The TTL of an IPv4 header or hop limit of an IPv6 header starting at `ip`.
#[inline]
pub fn hop_limit(ip: &[u8], v6: bool) -> u8 {
    let at = if v6 { IPV6_HOP_LIMIT } else { IPV4_TTL };
    ip.get(at).copied().unwrap_or(0)
}

/// Write the Ethernet destination and source addresses of `frame`.
#[inline]
pub fn set_macs(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
}
