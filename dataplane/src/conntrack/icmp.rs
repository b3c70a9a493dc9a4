//! ICMP and ICMPv6: echo identifiers for flow keys, and the packet embedded in error messages.

use septa_classifier::{Family, FlowKey};

use crate::drop::DropReason;
use crate::parse::{MAX_IPV6_EXT_HEADERS, ParsedPacket};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;

/// ICMP message kinds conntrack treats differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IcmpKind {
    EchoRequest,
    EchoReply,
    /// Destination unreachable (incl. fragmentation needed / packet too big), time exceeded,
    /// parameter problem.
    Error,
    /// Anything else (router/neighbour discovery, MLD, timestamps...): tracked by type/code.
    Other,
}

pub(crate) fn icmp_kind(family: Family, ty: u16) -> IcmpKind {
    match (family, ty) {
        (Family::V4, 8) | (Family::V6, 128) => IcmpKind::EchoRequest,
        (Family::V4, 0) | (Family::V6, 129) => IcmpKind::EchoReply,
        (Family::V4, 3 | 11 | 12) | (Family::V6, 1..=4) => IcmpKind::Error,
        _ => IcmpKind::Other,
    }
}

/// Is `proto` this family's ICMP?
pub(crate) fn is_icmp(family: Family, proto: u8) -> bool {
    matches!(
        (family, proto),
        (Family::V4, PROTO_ICMP) | (Family::V6, PROTO_ICMPV6)
    )
}

/// Rewrite the ports of an ICMP key for tracking: echo request and reply both get
/// `sport = dport = identifier`, so the two directions meet in one flow; other messages keep the
/// type in `sport` and get `code + 256` in `dport` (no identifier is ever ≥ 256 in both fields
/// at once with a type below 256, so the two forms never collide).
pub(crate) fn icmp_conn_ports(kind: IcmpKind, l4: &[u8], ty: u16, code: u16) -> Option<(u16, u16)> {
    match kind {
        IcmpKind::EchoRequest | IcmpKind::EchoReply => {
            let id = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
            Some((id, id))
        }
        _ => Some((ty, code + 256)),
    }
}

/// For an ICMP/ICMPv6 error, the conntrack key of the packet it reports on, as that packet
/// travelled (its source is the host the error goes back to). `Ok(None)` if `pkt` is not an
/// ICMP error. The caller looks the key up in the flow table: a hit means the error is related
/// and passes with the flow (path-MTU discovery, traceroute); a miss is `icmp_error_unrelated`.
///
/// Checks: the embedded header is the same IP family, holds at least its IP header (with
/// IPv6 extension headers) and 8 bytes of transport header (RFC 792 / RFC 4443), else
/// `icmp_error_malformed`; its source must be the error's destination, it must not be a
/// non-first fragment or an ICMP error itself, else `icmp_error_unrelated`.
pub fn icmp_error_relation(
    pkt: &ParsedPacket,
    frame: &[u8],
) -> Result<Option<FlowKey>, DropReason> {
    let outer = &pkt.key;
    if !pkt.is_ip() || !is_icmp(outer.family, outer.proto) {
        return Ok(None);
    }
    if icmp_kind(outer.family, outer.sport) != IcmpKind::Error {
        return Ok(None);
    }
    let (Some(start), Some(l4)) = (pkt.payload_offset, pkt.l4_offset) else {
        return Err(DropReason::IcmpErrorMalformed);
    };
    if start < l4 + 8 {
        return Err(DropReason::IcmpErrorMalformed);
    }
    let inner = frame
        .get(start..pkt.l3_end)
        .ok_or(DropReason::IcmpErrorMalformed)?;
    let mut key = match outer.family {
        Family::V4 => inner_v4(inner)?,
        Family::V6 => inner_v6(inner)?,
    };
    if key.src != outer.dst {
        return Err(DropReason::IcmpErrorUnrelated);
    }
    key.vlan = outer.vlan;
    key.in_port = outer.in_port;
    Ok(Some(key))
}

fn inner_v4(b: &[u8]) -> Result<FlowKey, DropReason> {
    let bad = DropReason::IcmpErrorMalformed;
    if b.len() < 20 || b[0] >> 4 != 4 {
        return Err(bad);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(bad);
    }
    let l4 = b.get(ihl..ihl + 8).ok_or(bad)?;
    let frag_offset = u16::from_be_bytes([b[6], b[7]]) & 0x1fff;
    if frag_offset != 0 {
        return Err(DropReason::IcmpErrorUnrelated);
    }
    let be32 = |i: usize| u128::from(u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    let mut key = FlowKey {
        src: be32(12),
        dst: be32(16),
        proto: b[9],
        family: Family::V4,
        ..FlowKey::default()
    };
    inner_ports(&mut key, l4)?;
    Ok(key)
}

fn inner_v6(b: &[u8]) -> Result<FlowKey, DropReason> {
    let bad = DropReason::IcmpErrorMalformed;
    if b.len() < 40 || b[0] >> 4 != 6 {
        return Err(bad);
    }
    let addr = |i: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[i..i + 16]);
        u128::from_be_bytes(a)
    };
    let mut next = b[6];
    let mut off = 40;
    let mut walked = 0;
    loop {
        let len = match next {
            0 | 43 | 60 => 8 + usize::from(*b.get(off + 1).ok_or(bad)?) * 8,
            44 => {
                let field = b.get(off + 2..off + 4).ok_or(bad)?;
                if u16::from_be_bytes([field[0], field[1]]) & 0xfff8 != 0 {
                    return Err(DropReason::IcmpErrorUnrelated);
                }
                8
            }
            51 => (usize::from(*b.get(off + 1).ok_or(bad)?) + 2) * 4,
            _ => break,
        };
        next = *b.get(off).ok_or(bad)?;
        off += len;
        walked += 1;
        if walked > MAX_IPV6_EXT_HEADERS {
            return Err(bad);
        }
    }
    let l4 = b.get(off..off + 8).ok_or(bad)?;
    let mut key = FlowKey {
        src: addr(8),
        dst: addr(24),
        proto: next,
        family: Family::V6,
        ..FlowKey::default()
    };
    inner_ports(&mut key, l4)?;
    Ok(key)
}

/// Fill the key's ports from the embedded transport header the way conntrack keys them.
fn inner_ports(key: &mut FlowKey, l4: &[u8]) -> Result<(), DropReason> {
    match key.proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            key.sport = u16::from_be_bytes([l4[0], l4[1]]);
            key.dport = u16::from_be_bytes([l4[2], l4[3]]);
        }
        p if is_icmp(key.family, p) => {
            let (ty, code) = (u16::from(l4[0]), u16::from(l4[1]));
            let kind = icmp_kind(key.family, ty);
            if kind == IcmpKind::Error {
                // RFC 1122 3.2.2: never an error about an error.
                return Err(DropReason::IcmpErrorUnrelated);
            }
            let (s, d) =
                icmp_conn_ports(kind, l4, ty, code).ok_or(DropReason::IcmpErrorMalformed)?;
            key.sport = s;
            key.dport = d;
        }
        _ => {}
    }
    Ok(())
}
