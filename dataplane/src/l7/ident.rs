//! Protocol identification from a flow's first payload, with the well-known port as a hint.
//!
//! Industrial protocols are recognised by their parsers' header checks; IT protocols by short
//! signatures (not full parsing): HTTP request/status lines, the TLS handshake record (with the
//! ClientHello's SNI available through [`tls_sni`]), DNS headers whose first question parses,
//! the SSH banner, SMB1/2/3 behind NetBIOS session framing, RDP's X.224 connection request
//! (cookie or negotiation request), Kerberos' length-prefixed (TCP) or bare (UDP) ASN.1
//! application tag with protocol version 5.
//!
//! Order matters where signatures overlap: TPKT is RDP only with an RDP cookie or negotiation
//! request, S7 when COTP carries S7 or when the port is 102.

use septa_l7::L7Proto;

use super::{Side, bacnet, be16, dnp3, enip, iec104, modbus, opcua, s7};

/// Transport of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Names the protocol of a flow from one payload (`side` sent it; `ports` are the packet's
/// source and destination ports). The payload decides first; the server port decides when the
/// payload matches no signature.
pub fn identify(side: Side, transport: Transport, ports: (u16, u16), payload: &[u8]) -> L7Proto {
    let by_payload = match transport {
        Transport::Tcp => tcp_payload(side, ports, payload),
        Transport::Udp => udp_payload(ports, payload),
    };
    if by_payload != L7Proto::Unknown {
        return by_payload;
    }
    let server = match side {
        Side::Client => ports.1,
        Side::Server => ports.0,
    };
    by_port(transport, server)
}

/// The protocol conventionally served on `port`.
pub fn by_port(transport: Transport, port: u16) -> L7Proto {
    use L7Proto::*;
    match (transport, port) {
        (Transport::Tcp, 502) => Modbus,
        (_, 20000) => Dnp3,
        (Transport::Tcp, 102) => S7comm,
        (_, 44818) | (Transport::Udp, 2222) => EnipCip,
        (Transport::Udp, 47808..=47823) => Bacnet,
        (Transport::Tcp, 2404) => Iec104,
        (Transport::Tcp, 4840) => OpcUa,
        (Transport::Tcp, 80 | 8080 | 8000) => Http,
        (Transport::Tcp, 443 | 8443) => Tls,
        (_, 53) => Dns,
        (Transport::Tcp, 22) => Ssh,
        (Transport::Tcp, 445 | 139) => Smb,
        (_, 3389) => Rdp,
        (_, 88) => Kerberos,
        _ => Unknown,
    }
}

fn tcp_payload(side: Side, ports: (u16, u16), p: &[u8]) -> L7Proto {
    use L7Proto::*;
    if p.is_empty() {
        return Unknown;
    }
    if is_http(p) {
        return Http;
    }
    if is_tls(p) {
        return Tls;
    }
    if p.starts_with(b"SSH-") {
        return Ssh;
    }
    if is_smb(p) {
        return Smb;
    }
    if p.len() >= 4 && p[0] == 3 && p[1] == 0 {
        if is_rdp(p) {
            return Rdp;
        }
        if let Ok(m) = s7::summarize(p) {
            let is_s7_port = ports.0 == 102 || ports.1 == 102;
            if m.proto == S7commPlus || s7_data(p) == Some(s7::S7_MAGIC) || is_s7_port {
                return m.proto;
            }
        }
    }
    if dnp3::summarize(p).is_ok() {
        return Dnp3;
    }
    if opcua::summarize(side, p).is_ok() {
        return OpcUa;
    }
    if iec104::summarize(p).is_ok() && iec104_plausible(p) {
        return Iec104;
    }
    if enip::summarize(p).is_ok() && enip_plausible(p) {
        return EnipCip;
    }
    if is_kerberos_tcp(p) {
        return Kerberos;
    }
    if p.len() > 2 && usize::from(be16(p, 0)) == p.len() - 2 && is_dns(&p[2..]) {
        return Dns;
    }
    if modbus_plausible(side, p) {
        return Modbus;
    }
    Unknown
}

fn udp_payload(ports: (u16, u16), p: &[u8]) -> L7Proto {
    use L7Proto::*;
    if p.is_empty() {
        return Unknown;
    }
    if bacnet::Packet::new_checked(p).is_ok() {
        return Bacnet;
    }
    if dnp3::summarize(p).is_ok() {
        return Dnp3;
    }
    if is_kerberos_asn1(p) {
        return Kerberos;
    }
    if enip::summarize(p).is_ok() && enip_plausible(p) || is_cip_io(ports, p) {
        return EnipCip;
    }
    if is_dns(p) {
        return Dns;
    }
    Unknown
}

fn s7_data(p: &[u8]) -> Option<u8> {
    s7::Packet::new_unchecked(p).protocol_id()
}

fn modbus_plausible(side: Side, p: &[u8]) -> bool {
    let Ok(Some(total)) = modbus::frame_len(p) else {
        return false;
    };
    let Ok(m) = modbus::summarize(side, p) else {
        return false;
    };
    // A whole ADU (or several) with a known function code and a length its function implies.
    (total == p.len() || (total < p.len() && modbus::frame_len(&p[total..]).is_ok()))
        && septa_l7::functions::lookup(L7Proto::Modbus, m.function).is_some()
        && modbus::length_fits_function(side, &p[..total.min(p.len())])
}

fn iec104_plausible(p: &[u8]) -> bool {
    let Ok(Some(total)) = iec104::frame_len(p) else {
        return false;
    };
    total <= p.len()
        && iec104::Packet::new_checked(&p[..total]).is_ok_and(|f| {
            f.format() != iec104::Format::I
                || septa_l7::functions::lookup(L7Proto::Iec104, f.type_id()).is_some()
        })
}

fn enip_plausible(p: &[u8]) -> bool {
    enip::Packet::new_checked(p).is_ok_and(|e| e.total_len() == p.len())
}

fn is_cip_io(ports: (u16, u16), p: &[u8]) -> bool {
    // Implicit I/O: CPF with a sequenced address item then connected data.
    (ports.0 == 2222 || ports.1 == 2222)
        && p.len() >= 6
        && u16::from_le_bytes([p[0], p[1]]) == 2
        && u16::from_le_bytes([p[2], p[3]]) == enip::item::SEQUENCED_ADDRESS
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
];

fn is_http(p: &[u8]) -> bool {
    if p.starts_with(b"HTTP/1.") {
        return true;
    }
    // A request line that ends in an HTTP version (RTSP and SIP share the method tokens).
    METHODS.iter().any(|m| p.starts_with(m)) && {
        let line = p
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        line.len() < p.len() && line.ends_with(b"HTTP/1.1") || line.ends_with(b"HTTP/1.0")
    }
}

fn is_tls(p: &[u8]) -> bool {
    // Handshake record, TLS 1.0-1.3 record version, ClientHello or ServerHello.
    p.len() >= 6 && p[0] == 0x16 && p[1] == 3 && p[2] <= 4 && matches!(p[5], 1 | 2)
}

fn is_smb(p: &[u8]) -> bool {
    p.len() >= 8 && p[0] == 0 && matches!(&p[4..8], b"\xfeSMB" | b"\xffSMB" | b"\xfdSMB")
}

fn is_rdp(p: &[u8]) -> bool {
    // TPKT, COTP connection request or confirm, then a cookie or an RDP negotiation PDU.
    if p.len() < 11 || !matches!(p[5] & 0xf0, s7::cotp::CR | s7::cotp::CC) {
        return false;
    }
    let rest = &p[11..];
    rest.starts_with(b"Cookie: mstshash=")
        || rest.starts_with(b"Cookie: msts=")
        || (rest.len() >= 8 && matches!(rest[0], 1..=3) && rest[2] == 8 && rest[3] == 0)
}

fn is_kerberos_tcp(p: &[u8]) -> bool {
    p.len() > 4
        && u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize == p.len() - 4
        && is_kerberos_asn1(&p[4..])
}

fn is_kerberos_asn1(p: &[u8]) -> bool {
    // [APPLICATION n] for AS-REQ/REP, TGS-REQ/REP, AP-REQ/REP, KRB-ERROR; then a SEQUENCE
    // whose first element is pvno (or msg-type) = INTEGER 5 (or the message type).
    if p.len() < 12 || !matches!(p[0], 0x6a..=0x6f | 0x7e) {
        return false;
    }
    let skip_len = |i: usize| -> Option<usize> {
        let l = *p.get(i)?;
        Some(if l < 0x80 {
            i + 1
        } else {
            i + 1 + usize::from(l & 0x7f)
        })
    };
    let Some(seq) = skip_len(1) else {
        return false;
    };
    if p.get(seq) != Some(&0x30) {
        return false;
    }
    let Some(first) = skip_len(seq + 1) else {
        return false;
    };
    p.get(first..first + 5)
        .is_some_and(|w| w[0] == 0xa0 || w[0] == 0xa1)
        && p.get(first + 2..first + 5) == Some(&[0x02, 0x01, 0x05][..])
}

fn is_dns(p: &[u8]) -> bool {
    if p.len() < 12 {
        return false;
    }
    let flags = be16(p, 2);
    let opcode = (flags >> 11) & 0xf;
    let (qd, an, ns, ar) = (be16(p, 4), be16(p, 6), be16(p, 8), be16(p, 10));
    if opcode > 5 || qd == 0 || qd > 16 || an > 256 || ns > 256 || ar > 256 {
        return false;
    }
    // NetBIOS name service shares the format; its names are one 32-byte label of A-P.
    if p[12] == 32
        && p.get(13..45)
            .is_some_and(|n| n.iter().all(|c| (b'A'..=b'P').contains(c)))
    {
        return false;
    }
    // The first question's name: labels of 1-63 bytes ending in the root, then type and class.
    let mut i = 12;
    loop {
        let Some(&l) = p.get(i) else {
            return false;
        };
        if l == 0 {
            i += 1;
            break;
        }
        if l & 0xc0 == 0xc0 {
            i += 2;
            break;
        }
        if l > 63 {
            return false;
        }
        i += 1 + usize::from(l);
    }
    p.len() >= i + 4 && matches!(be16(p, i + 2), 1..=4 | 255)
}

/// The server name of a TLS ClientHello that starts `p` (borrowed from `p`), if present in the
/// bytes given.
pub fn tls_sni(p: &[u8]) -> Option<&[u8]> {
    if !is_tls(p) || p[5] != 1 {
        return None;
    }
    // record(5) + handshake header(4) + version(2) + random(32)
    let mut i = 5 + 4 + 2 + 32;
    let sid = usize::from(*p.get(i)?);
    i += 1 + sid;
    let suites = usize::from(be16(p.get(i..i + 2)?, 0));
    i += 2 + suites;
    let comp = usize::from(*p.get(i)?);
    i += 1 + comp;
    let ext_len = usize::from(be16(p.get(i..i + 2)?, 0));
    i += 2;
    let end = (i + ext_len).min(p.len());
    while i + 4 <= end {
        let kind = be16(p, i);
        let len = usize::from(be16(p, i + 2));
        let body = p.get(i + 4..i + 4 + len)?;
        if kind == 0 {
            // server_name_list: length(2), name_type(1) = host_name, length(2), name
            if body.len() < 5 || body[2] != 0 {
                return None;
            }
            let n = usize::from(be16(body, 3));
            return body.get(5..5 + n);
        }
        i += 4 + len;
    }
    None
}
