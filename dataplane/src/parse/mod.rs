//! Packet parsing: one pass over a frame with `smoltcp::wire` views (plus our own [`vlan`] view),
//! yielding offsets, VLAN ids, fragment info, TCP flags and the [`FlowKey`].
//!
//! Invariants: no allocation, no panics on any input (every view is built with `new_checked`, or
//! after an explicit length check), a bounded amount of work per frame (at most
//! [`MAX_VLAN_TAGS`] tags and [`MAX_IPV6_EXT_HEADERS`] IPv6 extension headers).
//!
//! How inputs are classified (each maps to one [`DropReason`]):
//! * **truncated**: the frame ends before a length that a header declares or requires (Ethernet
//!   header, VLAN tag, ARP body, fixed IPv4/IPv6 header, IPv4 total length, IPv6 payload length).
//!   Bytes after the IP packet (Ethernet padding) are allowed and ignored.
//! * **malformed_***: the headers contradict themselves or a standard (IPv4 IHL < 5, total length
//!   < header length, wrong version, multicast source; an IPv6 extension header running past the
//!   payload length; an L4 header that does not fit in a complete IP payload).
//! * **ipv4_checksum**: the IPv4 header checksum is verified (20–60 bytes, cheap, and a router
//!   must do it per RFC 1812). L4 checksums are *not* verified: that is the end hosts' job, it
//!   costs a pass over the payload, and captures taken with tx checksum offload carry invalid
//!   ones.
//! * Non-IP ethertypes (ARP, LLDP, 802.3 length frames...) are not errors: they parse as
//!   [`L3::Arp`] or [`L3::Other`] and the policy decides what to do with them.
//! * IPv4 options and IPv6 option contents are skipped, not interpreted.

pub mod vlan;

use septa_classifier::{Family, FlowKey};
use smoltcp::wire::{
    ArpHardware, ArpPacket, ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol, IPV4_HEADER_LEN,
    IPV6_HEADER_LEN, Icmpv4Packet, Icmpv6Packet, IpProtocol, IpSecAuthHeaderPacket, Ipv4Packet,
    Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet, TcpPacket, UDP_HEADER_LEN, UdpPacket,
};

use crate::drop::DropReason;
use vlan::VlanTag;

/// Most VLAN tags parsed (802.1Q, or QinQ outer + inner). A deeper stack is dropped.
pub const MAX_VLAN_TAGS: usize = 2;
/// Most IPv6 extension headers walked before giving up (RFC 8200 recommends at most one of each
/// kind, destination options twice: 6; a little slack for AH).
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;
const SCTP_COMMON_HEADER_LEN: usize = 12;
const IPV6_FRAGMENT_HEADER_LEN: usize = 8;
/// ARP hardware type, protocol type, address lengths and operation.
const ARP_FIXED_LEN: usize = 8;

/// What sits after the Ethernet/VLAN headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    /// IPv4; [`ParsedPacket::key`] is valid.
    Ipv4,
    /// IPv6; [`ParsedPacket::key`] is valid.
    Ipv6,
    /// Ethernet/IPv4 ARP.
    Arp,
    /// Any other ethertype (or an 802.3 length field); not interpreted.
    Other,
}

/// Fragmentation state of an IP packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment (or not IP).
    #[default]
    None,
    /// First fragment (offset 0, more fragments follow): carries the transport header.
    First,
    /// Non-first fragment: no transport header, so the flow key has no ports.
    NonFirst,
}

/// TCP flags byte (FIN = 0x01 ... CWR = 0x80); 0 for non-TCP packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;

    /// Are all bits of `mask` set?
    #[inline]
    pub const fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
}

/// VLAN ids of a frame, outermost first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vlans {
    /// Number of tags (0..=[`MAX_VLAN_TAGS`]).
    pub count: u8,
    /// Ids, outermost first; unused entries are 0.
    pub ids: [u16; MAX_VLAN_TAGS],
}

impl Vlans {
    /// Outermost VLAN id, 0 when untagged (what [`FlowKey::vlan`] holds).
    #[inline]
    pub const fn outer(&self) -> u16 {
        self.ids[0]
    }
}

/// The result of [`parse`]: offsets into the frame and the extracted fields. Plain `Copy` data,
/// lives on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedPacket {
    /// Ethertype after all VLAN tags.
    pub ethertype: u16,
    /// VLAN tags.
    pub vlans: Vlans,
    /// Kind of network-layer payload.
    pub l3: L3,
    /// Offset of the network-layer header.
    pub l3_offset: usize,
    /// End of the IP packet (excludes Ethernet padding); end of frame for non-IP.
    pub l3_end: usize,
    /// Offset of the transport header, when the packet carries one that was parsed (TCP, UDP,
    /// ICMP, ICMPv6, SCTP, not in non-first fragments).
    pub l4_offset: Option<usize>,
    /// Offset of the transport payload (after the TCP/UDP/ICMP header), when known.
    pub payload_offset: Option<usize>,
    /// Flow key (IP only; `in_port` is 0 here, the worker sets it).
    pub key: FlowKey,
    /// Fragmentation state.
    pub fragment: Fragment,
    /// TCP flags (0 unless TCP).
    pub tcp_flags: TcpFlags,
}

impl ParsedPacket {
    /// Is the packet IPv4 or IPv6?
    #[inline]
    pub const fn is_ip(&self) -> bool {
        matches!(self.l3, L3::Ipv4 | L3::Ipv6)
    }

    /// The flow key of an IP packet.
    #[inline]
    pub const fn flow_key(&self) -> Option<&FlowKey> {
        if self.is_ip() { Some(&self.key) } else { None }
    }
}

/// Parse an Ethernet frame. Never panics, never allocates.
///
/// Inlined into the worker so the result is built in registers rather than copied through memory.
#[inline(always)]
pub fn parse(frame: &[u8]) -> Result<ParsedPacket, DropReason> {
    match parse_fast(frame) {
        Some(pkt) => Ok(pkt),
        None => parse_general(frame),
    }
}

/// The common cases, read straight from fixed offsets: untagged Ethernet, IPv4 without options
/// or IPv6 without extension headers, not a fragment, TCP or UDP, every check of the general
/// path passing. Anything else, and any check that fails, returns `None` and [`parse_general`]
/// decides (and names the drop reason).
///
/// It exists because the general path's per-field smoltcp views (each bounds-checked) cost about
/// a third of the forwarding budget on these most frequent shapes (VPP's and DPDK l3fwd's fast
/// paths make the same trade). A proptest holds it to the general path: whenever it returns
/// `Some`, the result is identical.
///
/// A caller that keeps the result apart from [`parse_general`]'s (the worker's direct pass)
/// keeps it in registers: merged with the general path's result, it has to be stored to the
/// stack field by field first.
#[inline(always)]
pub fn parse_fast(frame: &[u8]) -> Option<ParsedPacket> {
    let h = frame.first_chunk::<{ ETHERNET_HEADER_LEN + 2 }>()?;
    // Unicast source MAC.
    if h[6] & 1 != 0 {
        return None;
    }
    match u16::from_be_bytes([h[12], h[13]]) {
        ETHERTYPE_IPV4 => parse_ipv4_fast(frame),
        ETHERTYPE_IPV6 => parse_ipv6_fast(frame),
        _ => None,
    }
}

/// The transport header of a fast-path packet: its length and the TCP flags, if the
/// `l4_len`-byte payload at `l4` of `frame` holds a complete TCP or UDP header (the checks of
/// smoltcp's `check_len`).
#[inline(always)]
fn l4_fast(frame: &[u8], l4: usize, l4_len: usize, proto: u8) -> Option<(usize, u8)> {
    match proto {
        IPPROTO_TCP => {
            let tcp = frame.get(l4..l4 + 20)?;
            let header_len = usize::from(tcp[12] >> 4) * 4;
            if header_len < 20 || header_len > l4_len {
                return None;
            }
            Some((header_len, tcp[13]))
        }
        IPPROTO_UDP => {
            let udp = frame.get(l4..l4 + UDP_HEADER_LEN)?;
            let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            if udp_len < UDP_HEADER_LEN || udp_len > l4_len {
                return None;
            }
            Some((UDP_HEADER_LEN, 0))
        }
        _ => None,
    }
}

/// [`parse_fast`] for IPv4 (the Ethernet source and type already checked).
#[inline(always)]
fn parse_ipv4_fast(frame: &[u8]) -> Option<ParsedPacket> {
    const L3: usize = ETHERNET_HEADER_LEN;
    const L4: usize = L3 + IPV4_HEADER_LEN;
    let be16 = |a: u8, b: u8| u16::from_be_bytes([a, b]);
    let h = frame.first_chunk::<{ L4 + UDP_HEADER_LEN }>()?;
    // Version 4 with IHL 5.
    if h[L3] != 0x45 {
        return None;
    }
    let total_len = usize::from(be16(h[L3 + 2], h[L3 + 3]));
    // Room for a UDP header at least; no truncation; neither MF nor a fragment offset.
    if total_len < IPV4_HEADER_LEN + UDP_HEADER_LEN
        || frame.len() < L3 + total_len
        || be16(h[L3 + 6], h[L3 + 7]) & 0x3fff != 0
        || !ipv4_header_checksum_ok(&h[L3..L4])
    {
        return None;
    }
    let src = u32::from_be_bytes([h[L3 + 12], h[L3 + 13], h[L3 + 14], h[L3 + 15]]);
    let dst = u32::from_be_bytes([h[L3 + 16], h[L3 + 17], h[L3 + 18], h[L3 + 19]]);
    // Multicast (224.0.0.0/4) or limited-broadcast sources are malformed: the general path says so.
    if src >> 28 == 0xe || src == u32::MAX {
        return None;
    }
    let proto = h[L3 + 9];
    let (header_len, flags) = l4_fast(frame, L4, total_len - IPV4_HEADER_LEN, proto)?;
    Some(ParsedPacket {
        ethertype: ETHERTYPE_IPV4,
        vlans: Vlans::default(),
        l3: L3::Ipv4,
        l3_offset: L3,
        l3_end: L3 + total_len,
        l4_offset: Some(L4),
        payload_offset: Some(L4 + header_len),
        key: FlowKey {
            src: u128::from(src),
            dst: u128::from(dst),
            sport: be16(h[L4], h[L4 + 1]),
            dport: be16(h[L4 + 2], h[L4 + 3]),
            proto,
            family: Family::V4,
            vlan: 0,
            in_port: 0,
        },
        fragment: Fragment::None,
        tcp_flags: TcpFlags(flags),
    })
}

/// [`parse_fast`] for IPv6 whose next header is TCP or UDP (no extension header).
#[inline(always)]
fn parse_ipv6_fast(frame: &[u8]) -> Option<ParsedPacket> {
    const L3: usize = ETHERNET_HEADER_LEN;
    const L4: usize = L3 + IPV6_HEADER_LEN;
    let h = frame.first_chunk::<{ L4 + UDP_HEADER_LEN }>()?;
    // Version 6; a unicast source (multicast sources are malformed).
    if h[L3] >> 4 != 6 || h[L3 + 8] == 0xff {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([h[L3 + 4], h[L3 + 5]]));
    if frame.len() < L4 + payload_len {
        return None;
    }
    let proto = h[L3 + 6];
    let (header_len, flags) = l4_fast(frame, L4, payload_len, proto)?;
    let addr = |at: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&h[at..at + 16]);
        u128::from_be_bytes(b)
    };
    Some(ParsedPacket {
        ethertype: ETHERTYPE_IPV6,
        vlans: Vlans::default(),
        l3: L3::Ipv6,
        l3_offset: L3,
        l3_end: L4 + payload_len,
        l4_offset: Some(L4),
        payload_offset: Some(L4 + header_len),
        key: FlowKey {
            src: addr(L3 + 8),
            dst: addr(L3 + 24),
            sport: u16::from_be_bytes([h[L4], h[L4 + 1]]),
            dport: u16::from_be_bytes([h[L4 + 2], h[L4 + 3]]),
            proto,
            family: Family::V6,
            vlan: 0,
            in_port: 0,
        },
        fragment: Fragment::None,
        tcp_flags: TcpFlags(flags),
    })
}

/// Every frame shape, with smoltcp views; [`parse`] tries the fast path first.
#[inline(never)]
pub fn parse_general(frame: &[u8]) -> Result<ParsedPacket, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Truncated)?;
    if eth.src_addr().is_multicast() {
        return Err(DropReason::MalformedL2);
    }
    let mut ethertype = u16::from(eth.ethertype());
    let mut off = ETHERNET_HEADER_LEN;
    // Plain locals, assembled into `Vlans` once: updating the struct field by field in the loop
    // made the compiler reload it with wider loads than the stores, stalling store forwarding
    // on every packet.
    let mut ids = [0u16; MAX_VLAN_TAGS];
    let mut count = 0usize;
    while vlan::is_vlan_tpid(ethertype) {
        if count == MAX_VLAN_TAGS {
            return Err(DropReason::VlanTooDeep);
        }
        let rest = frame.get(off..).unwrap_or_default();
        let tag = VlanTag::new_checked(rest).map_err(|_| DropReason::Truncated)?;
        ids[count] = tag.vlan_id();
        count += 1;
        ethertype = u16::from(tag.ethertype());
        off += vlan::HEADER_LEN;
    }
    // At most MAX_VLAN_TAGS (2): fits.
    let vlans = Vlans {
        count: count as u8,
        ids,
    };

    let mut pkt = ParsedPacket {
        ethertype,
        vlans,
        l3: L3::Other,
        l3_offset: off,
        l3_end: frame.len(),
        l4_offset: None,
        payload_offset: None,
        key: FlowKey::default(),
        fragment: Fragment::None,
        tcp_flags: TcpFlags(0),
    };
    pkt.key.vlan = vlans.outer();
    let l3 = frame.get(off..).unwrap_or_default();
    // Dispatch on the raw numbers: smoltcp's enum conversions are a compare chain per packet.
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(l3, &mut pkt)?,
        ETHERTYPE_IPV6 => parse_ipv6(l3, &mut pkt)?,
        ETHERTYPE_ARP => {
            parse_arp(l3)?;
            pkt.l3 = L3::Arp;
        }
        _ => {}
    }
    Ok(pkt)
}

fn parse_arp(buf: &[u8]) -> Result<(), DropReason> {
    // Check the fixed part first: `new_checked` trusts the address lengths, so bogus lengths
    // would otherwise read as a truncated frame.
    if buf.len() < ARP_FIXED_LEN {
        return Err(DropReason::Truncated);
    }
    let fixed = ArpPacket::new_unchecked(&buf[..ARP_FIXED_LEN]);
    let ethernet_ipv4 = fixed.hardware_type() == ArpHardware::Ethernet
        && fixed.protocol_type() == EthernetProtocol::Ipv4
        && fixed.hardware_len() == 6
        && fixed.protocol_len() == 4;
    if !ethernet_ipv4 {
        return Err(DropReason::MalformedArp);
    }
    ArpPacket::new_checked(buf).map_err(|_| DropReason::Truncated)?;
    Ok(())
}

#[inline(always)]
fn parse_ipv4(buf: &[u8], pkt: &mut ParsedPacket) -> Result<(), DropReason> {
    if buf.len() < IPV4_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    // Classify before `new_checked`, which folds "too short" and "inconsistent" into one error.
    let raw = Ipv4Packet::new_unchecked(buf);
    let header_len = usize::from(raw.header_len());
    let total_len = usize::from(raw.total_len());
    if raw.version() != 4 || header_len < IPV4_HEADER_LEN || total_len < header_len {
        return Err(DropReason::MalformedIpv4);
    }
    if buf.len() < total_len {
        return Err(DropReason::Truncated);
    }
    let ip = Ipv4Packet::new_checked(buf).map_err(|_| DropReason::MalformedIpv4)?;
    if !ipv4_header_checksum_ok(&buf[..header_len]) {
        return Err(DropReason::Ipv4Checksum);
    }
    let src = ip.src_addr();
    if src.is_multicast() || src.is_broadcast() {
        return Err(DropReason::MalformedIpv4);
    }
    let proto = u8::from(ip.next_header());
    pkt.l3 = L3::Ipv4;
    pkt.l3_end = pkt.l3_offset + total_len;
    pkt.key.family = Family::V4;
    pkt.key.src = u128::from(u32::from(src));
    pkt.key.dst = u128::from(u32::from(ip.dst_addr()));
    pkt.key.proto = proto;

    let frag_offset = ip.frag_offset();
    if frag_offset != 0 {
        pkt.fragment = Fragment::NonFirst;
        // RFC 1858: a TCP fragment at offset 8 can rewrite the flags of the first fragment.
        if proto == IPPROTO_TCP && frag_offset == 8 {
            return Err(DropReason::TinyFragment);
        }
        return Ok(());
    }
    if ip.more_frags() {
        pkt.fragment = Fragment::First;
    }
    let l4_offset = pkt.l3_offset + header_len;
    parse_l4(ip.payload(), l4_offset, pkt)
}

/// Does the one's-complement sum of an IPv4 header (checksum field included) come to 0xffff?
///
/// smoltcp's general-purpose checksum walks byte pairs and showed up as a tenth of the per-packet
/// cost; a header is 20–60 bytes, so summing 32-bit words into a 64-bit accumulator and folding
/// once is enough. The one's-complement sum is byte-order independent (RFC 1071 §2(B)), so the
/// words are read in native order and never byte-swapped. `hdr.len()` is a multiple of 4 (IHL
/// counts 32-bit words).
#[inline(always)]
fn ipv4_header_checksum_ok(hdr: &[u8]) -> bool {
    let word = |w: &[u8]| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    let mut sum: u64 = 0;
    if let Some(fixed) = hdr.first_chunk::<IPV4_HEADER_LEN>() {
        // The option-less header is the common case: five loads the compiler fully unrolls.
        for w in fixed.chunks_exact(4) {
            sum += word(w);
        }
    }
    for w in hdr
        .get(IPV4_HEADER_LEN..)
        .unwrap_or_default()
        .chunks_exact(4)
    {
        sum += word(w);
    }
    // At most 15 words: sum < 2^36. Fold to 32 bits, then to 16 (each step may carry once more).
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum == 0xffff
}

#[inline(always)]
fn parse_ipv6(buf: &[u8], pkt: &mut ParsedPacket) -> Result<(), DropReason> {
    if buf.len() < IPV6_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let raw = Ipv6Packet::new_unchecked(buf);
    if raw.version() != 6 {
        return Err(DropReason::MalformedIpv6);
    }
    let ip = Ipv6Packet::new_checked(buf).map_err(|_| DropReason::Truncated)?;
    let src = ip.src_addr();
    if src.is_multicast() {
        return Err(DropReason::MalformedIpv6);
    }
    pkt.l3 = L3::Ipv6;
    pkt.l3_end = pkt.l3_offset + ip.total_len();
    pkt.key.family = Family::V6;
    pkt.key.src = u128::from(src);
    pkt.key.dst = u128::from(ip.dst_addr());

    let mut next = ip.next_header();
    let mut rest = ip.payload();
    let mut off = pkt.l3_offset + IPV6_HEADER_LEN;
    // An extension header that overruns the payload is malformed, except behind a first
    // fragment header where RFC 7112 requires the whole chain in the first fragment.
    let mut overrun = DropReason::MalformedIpv6;
    let mut seen_fragment = false;
    let mut walked = 0;
    loop {
        let len = match next {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                // RFC 8200 4.1: hop-by-hop options only directly after the IPv6 header.
                if next == IpProtocol::HopByHop && walked != 0 {
                    return Err(DropReason::MalformedIpv6);
                }
                let h = Ipv6ExtHeader::new_checked(rest).map_err(|_| overrun)?;
                next = h.next_header();
                8 + usize::from(h.header_len()) * 8
            }
            IpProtocol::Ipv6Frag => {
                if seen_fragment {
                    return Err(DropReason::MalformedIpv6);
                }
                seen_fragment = true;
                // Fixed 8 bytes; the generic view would misread the reserved second byte as a length.
                let bytes = rest.get(..IPV6_FRAGMENT_HEADER_LEN).ok_or(overrun)?;
                let frag = Ipv6FragmentHeader::new_checked(&bytes[2..]).map_err(|_| overrun)?;
                next = Ipv6ExtHeader::new_unchecked(bytes).next_header();
                if frag.frag_offset() != 0 {
                    pkt.fragment = Fragment::NonFirst;
                    pkt.key.proto = u8::from(next);
                    return Ok(());
                }
                if frag.more_frags() {
                    pkt.fragment = Fragment::First;
                    overrun = DropReason::TinyFragment;
                }
                IPV6_FRAGMENT_HEADER_LEN
            }
            IpProtocol::IpSecAh => {
                let ah = IpSecAuthHeaderPacket::new_checked(rest).map_err(|_| overrun)?;
                next = ah.next_header();
                (usize::from(ah.payload_len()) + 2) * 4
            }
            _ => break,
        };
        walked += 1;
        if walked > MAX_IPV6_EXT_HEADERS {
            return Err(DropReason::Ipv6ExtChainTooLong);
        }
        // The views above checked that `len` bytes are present.
        rest = rest.get(len..).ok_or(overrun)?;
        off += len;
    }
    pkt.key.proto = u8::from(next);
    parse_l4(rest, off, pkt)
}

/// Parse the transport header in `buf` (the rest of the IP payload, which is complete), at
/// absolute offset `offset`. Protocols without ports leave `sport`/`dport` at 0.
#[inline(always)]
fn parse_l4(buf: &[u8], offset: usize, pkt: &mut ParsedPacket) -> Result<(), DropReason> {
    let err = if pkt.fragment == Fragment::First {
        DropReason::TinyFragment
    } else {
        DropReason::MalformedL4
    };
    let header_len = match pkt.key.proto {
        IPPROTO_TCP => {
            let tcp = TcpPacket::new_checked(buf).map_err(|_| err)?;
            pkt.key.sport = tcp.src_port();
            pkt.key.dport = tcp.dst_port();
            pkt.tcp_flags = tcp_flags(&tcp);
            usize::from(tcp.header_len())
        }
        IPPROTO_UDP => {
            let (sport, dport) = if pkt.fragment == Fragment::First {
                // The UDP length covers the whole datagram, beyond this fragment: only the
                // fixed header can be checked.
                let head = buf.get(..UDP_HEADER_LEN).ok_or(err)?;
                let udp = UdpPacket::new_unchecked(head);
                (udp.src_port(), udp.dst_port())
            } else {
                let udp = UdpPacket::new_checked(buf).map_err(|_| err)?;
                (udp.src_port(), udp.dst_port())
            };
            pkt.key.sport = sport;
            pkt.key.dport = dport;
            UDP_HEADER_LEN
        }
        IPPROTO_ICMP if pkt.key.family == Family::V4 => {
            let icmp = Icmpv4Packet::new_checked(buf).map_err(|_| err)?;
            pkt.key.sport = u16::from(u8::from(icmp.msg_type()));
            pkt.key.dport = u16::from(icmp.msg_code());
            8
        }
        IPPROTO_ICMPV6 if pkt.key.family == Family::V6 => {
            let icmp = Icmpv6Packet::new_checked(buf).map_err(|_| err)?;
            pkt.key.sport = u16::from(u8::from(icmp.msg_type()));
            pkt.key.dport = u16::from(icmp.msg_code());
            // Type, code, checksum and the 4-byte message-specific word.
            8.min(buf.len())
        }
        IPPROTO_SCTP => {
            let common = buf.get(..SCTP_COMMON_HEADER_LEN).ok_or(err)?;
            pkt.key.sport = u16::from_be_bytes([common[0], common[1]]);
            pkt.key.dport = u16::from_be_bytes([common[2], common[3]]);
            SCTP_COMMON_HEADER_LEN
        }
        _ => return Ok(()),
    };
    pkt.l4_offset = Some(offset);
    pkt.payload_offset = Some(offset + header_len);
    Ok(())
}

/// The eight classic flag bits: the low byte of the 16-bit offset/flags word (FIN = 0x01 …
/// CWR = 0x80), one load instead of eight accessors. `new_checked` guaranteed the 20 bytes.
fn tcp_flags<T: AsRef<[u8]>>(tcp: &TcpPacket<T>) -> TcpFlags {
    TcpFlags(tcp.as_ref().get(13).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests;
