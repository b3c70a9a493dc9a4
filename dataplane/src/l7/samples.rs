//! Generators of valid messages for every protocol and of whole captures of sample flows, so
//! that parser, stream and identification tests run on a fresh machine without shared data.
//! Test support only: these builders allocate.

use std::borrow::Cow;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use septa_l7::L7Proto;
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket};

use super::{Side, Transport, dnp3};

/// A Modbus/TCP ADU.
pub fn modbus(tid: u16, unit: u8, function: u8, data: &[u8]) -> Vec<u8> {
    let mut v = tid.to_be_bytes().to_vec();
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&(2 + data.len() as u16).to_be_bytes());
    v.push(unit);
    v.push(function);
    v.extend_from_slice(data);
    v
}

/// A Modbus request with a start address and a quantity (functions 1-4, 15, 16; 5/6 value).
pub fn modbus_request(tid: u16, unit: u8, function: u8, start: u16, qty: u16) -> Vec<u8> {
    let mut d = start.to_be_bytes().to_vec();
    d.extend_from_slice(&qty.to_be_bytes());
    if matches!(function, 15 | 16) {
        let bytes = if function == 15 {
            qty.div_ceil(8)
        } else {
            qty * 2
        } as u8;
        d.push(bytes);
        d.extend(std::iter::repeat_n(0xab, usize::from(bytes)));
    }
    modbus(tid, unit, function, &d)
}

/// A DNP3 link frame with CRCs over the header and every 16-byte data block.
pub fn dnp3_frame(control: u8, dst: u16, src: u16, user_data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x05, 0x64, (5 + user_data.len()) as u8, control];
    v.extend_from_slice(&dst.to_le_bytes());
    v.extend_from_slice(&src.to_le_bytes());
    let c = dnp3::crc(&v);
    v.extend_from_slice(&c);
    for block in user_data.chunks(dnp3::BLOCK) {
        v.extend_from_slice(block);
        v.extend_from_slice(&dnp3::crc(block));
    }
    v
}

/// A DNP3 request from a master: one transport segment (FIR|FIN) with an application header.
pub fn dnp3_request(dst: u16, src: u16, function: u8, objects: &[u8]) -> Vec<u8> {
    let mut ud = vec![0xc0, 0xc0, function];
    ud.extend_from_slice(objects);
    dnp3_frame(0xc4, dst, src, &ud)
}

/// A DNP3 response from an outstation.
pub fn dnp3_response(dst: u16, src: u16, objects: &[u8]) -> Vec<u8> {
    let mut ud = vec![0xc0, 0xc0, 0x81, 0x00, 0x00];
    ud.extend_from_slice(objects);
    dnp3_frame(0x44, dst, src, &ud)
}

/// Class 0 read objects (group 60 variation 1, all).
pub const DNP3_CLASS0: &[u8] = &[0x3c, 0x01, 0x06];

fn tpkt(cotp_and_payload: &[u8]) -> Vec<u8> {
    let mut v = vec![3, 0];
    v.extend_from_slice(&(4 + cotp_and_payload.len() as u16).to_be_bytes());
    v.extend_from_slice(cotp_and_payload);
    v
}

/// A COTP connection request with S7 TSAPs.
pub fn s7_cotp_cr() -> Vec<u8> {
    tpkt(&[
        0x11, 0xe0, 0, 0, 0, 1, 0, 0xc0, 1, 0x0a, 0xc1, 2, 1, 0, 0xc2, 2, 1, 2,
    ])
}

/// An S7comm job with `function` and extra parameter bytes.
pub fn s7_job(function: u8, params: &[u8]) -> Vec<u8> {
    let plen = 1 + params.len() as u16;
    let mut v = vec![0x02, 0xf0, 0x80, 0x32, 1, 0, 0, 0, 1];
    v.extend_from_slice(&plen.to_be_bytes());
    v.extend_from_slice(&[0, 0, function]);
    v.extend_from_slice(params);
    tpkt(&v)
}

/// An S7comm ack-data for `function`.
pub fn s7_ack_data(function: u8) -> Vec<u8> {
    tpkt(&[
        0x02, 0xf0, 0x80, 0x32, 3, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, function, 1,
    ])
}

/// An S7comm userdata request of function `group` (4 = CPU functions, e.g. read SZL).
pub fn s7_userdata(group: u8) -> Vec<u8> {
    tpkt(&[
        0x02,
        0xf0,
        0x80,
        0x32,
        7,
        0,
        0,
        0,
        1,
        0,
        8,
        0,
        4,
        0,
        1,
        0x12,
        4,
        0x11,
        0x40 | group,
        1,
        0,
        0xff,
        9,
        0,
        0,
    ])
}

/// An S7comm-plus PDU (recognised by its magic).
pub fn s7plus() -> Vec<u8> {
    tpkt(&[
        0x02, 0xf0, 0x80, 0x72, 1, 0, 8, 0x31, 0, 0, 0x04, 0xca, 0, 0, 0, 1,
    ])
}

/// An EtherNet/IP RegisterSession request.
pub fn enip_register_session() -> Vec<u8> {
    let mut v = enip_header(0x65, 4, 0);
    v.extend_from_slice(&[1, 0, 0, 0]);
    v
}

fn enip_header(cmd: u16, len: u16, session: u32) -> Vec<u8> {
    let mut v = cmd.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&session.to_le_bytes());
    v.extend_from_slice(&[0; 16]);
    v
}

/// A SendRRData carrying an unconnected CIP request `service` to the identity object.
pub fn enip_send_rr(service: u8, session: u32) -> Vec<u8> {
    let cip = [service, 2, 0x20, 0x01, 0x24, 0x01];
    let mut body = vec![0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0xb2, 0];
    body.extend_from_slice(&(cip.len() as u16).to_le_bytes());
    body.extend_from_slice(&cip);
    let mut v = enip_header(0x6f, body.len() as u16, session);
    v.extend_from_slice(&body);
    v
}

/// A SendUnitData carrying a connected CIP request `service`.
pub fn enip_send_unit(service: u8, session: u32) -> Vec<u8> {
    let cip = [service, 2, 0x20, 0x02, 0x24, 0x01];
    let mut body = vec![0, 0, 0, 0, 0, 0, 2, 0, 0xa1, 0, 4, 0, 1, 2, 3, 4, 0xb1, 0];
    body.extend_from_slice(&(cip.len() as u16 + 2).to_le_bytes());
    body.extend_from_slice(&[7, 0]);
    body.extend_from_slice(&cip);
    let mut v = enip_header(0x70, body.len() as u16, session);
    v.extend_from_slice(&body);
    v
}

fn bvlc(npdu_apdu: &[u8]) -> Vec<u8> {
    let mut v = vec![0x81, 0x0a];
    v.extend_from_slice(&(4 + npdu_apdu.len() as u16).to_be_bytes());
    v.extend_from_slice(npdu_apdu);
    v
}

/// A BACnet confirmed request (e.g. 12 read-property, 15 write-property).
pub fn bacnet_confirmed(service: u8, invoke: u8) -> Vec<u8> {
    bvlc(&[
        1, 4, 0x00, 0x05, invoke, service, 0x0c, 0x02, 0, 0, 1, 0x19, 0x55,
    ])
}

/// A BACnet unconfirmed request (e.g. 8 who-is).
pub fn bacnet_unconfirmed(service: u8) -> Vec<u8> {
    let mut v = vec![0x81, 0x0b, 0, 0];
    v.extend_from_slice(&[1, 0x20, 0xff, 0xff, 0, 0xff, 0x10, service]);
    let len = v.len() as u16;
    v[2..4].copy_from_slice(&len.to_be_bytes());
    v
}

/// An IEC-104 I-format APDU with one information object.
pub fn iec104_i(type_id: u8, cause: u8, common: u16, send_seq: u16) -> Vec<u8> {
    let mut v = vec![0x68, 0];
    v.extend_from_slice(&(send_seq << 1).to_le_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&[type_id, 1, cause, 0]);
    v.extend_from_slice(&common.to_le_bytes());
    v.extend_from_slice(&[1, 0, 0, 0x01]);
    v[1] = (v.len() - 2) as u8;
    v
}

/// An IEC-104 U-format APDU (0x07 STARTDT act, 0x0b con, 0x43 TESTFR act).
pub fn iec104_u(function: u8) -> Vec<u8> {
    vec![0x68, 4, function, 0, 0, 0]
}

/// An OPC UA Hello.
pub fn opcua_hello() -> Vec<u8> {
    let url = b"opc.tcp://plc:4840";
    let mut v = b"HELF".to_vec();
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&0u32.to_le_bytes());
    for x in [65536u32, 65536, 0, 0] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&(url.len() as u32).to_le_bytes());
    v.extend_from_slice(url);
    let n = v.len() as u32;
    v[4..8].copy_from_slice(&n.to_le_bytes());
    v
}

/// An OPC UA MSG chunk whose service is the request with numeric node id `node_id`.
pub fn opcua_msg(node_id: u16, chunk: u8, request_id: u32) -> Vec<u8> {
    let mut v = vec![b'M', b'S', b'G', chunk, 0, 0, 0, 0];
    for x in [1u32, 1, request_id, request_id] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&[0x01, 0]);
    v.extend_from_slice(&node_id.to_le_bytes());
    v.extend_from_slice(&[0; 20]);
    let n = v.len() as u32;
    v[4..8].copy_from_slice(&n.to_le_bytes());
    v
}

/// An HTTP/1.1 GET.
pub fn http_get(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: septa-test\r\n\r\n").into_bytes()
}

/// A TLS 1.2 ClientHello with an SNI extension.
pub fn tls_client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut ext = vec![0, 0];
    let list_len = 3 + name.len() as u16;
    ext.extend_from_slice(&(list_len + 2).to_be_bytes());
    ext.extend_from_slice(&list_len.to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let mut hello = vec![3, 3];
    hello.extend_from_slice(&[0x11; 32]);
    hello.push(0);
    hello.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    hs.extend_from_slice(&hello);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// A DNS query for `name`, type A.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        v.push(label.len() as u8);
        v.extend_from_slice(label.as_bytes());
    }
    v.extend_from_slice(&[0, 0, 1, 0, 1]);
    v
}

/// An SSH identification string.
pub fn ssh_banner() -> Vec<u8> {
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec()
}

/// An SMB2 NEGOTIATE request behind NetBIOS session framing.
pub fn smb2_negotiate() -> Vec<u8> {
    let mut smb = b"\xfeSMB".to_vec();
    smb.extend_from_slice(&[64, 0]);
    smb.extend_from_slice(&[0; 58]);
    smb.extend_from_slice(&[36, 0, 1, 0, 1, 0, 0, 0]);
    smb.extend_from_slice(&[0; 28]);
    smb.extend_from_slice(&[0x02, 0x02]);
    let mut v = vec![0, 0];
    v.extend_from_slice(&(smb.len() as u16).to_be_bytes());
    v.extend_from_slice(&smb);
    v
}

/// An RDP X.224 connection request with a cookie and a negotiation request.
pub fn rdp_cr(user: &str) -> Vec<u8> {
    let mut cr = vec![0, 0xe0, 0, 0, 0, 0, 0];
    cr.extend_from_slice(format!("Cookie: mstshash={user}\r\n").as_bytes());
    cr.extend_from_slice(&[1, 0, 8, 0, 3, 0, 0, 0]);
    cr[0] = (cr.len() - 1) as u8;
    tpkt(&cr)
}

/// A Kerberos AS-REQ (TCP framing adds the 4-byte length).
pub fn kerberos_as_req(tcp: bool) -> Vec<u8> {
    let body = [
        0xa1, 3, 2, 1, 5, 0xa2, 3, 2, 1, 10, 0xa4, 8, 0x30, 6, 0xa0, 4, 3, 2, 0, 0x10,
    ];
    let mut seq = vec![0x30, body.len() as u8];
    seq.extend_from_slice(&body);
    let mut v = vec![0x6a, seq.len() as u8];
    v.extend_from_slice(&seq);
    if tcp {
        let mut t = (v.len() as u32).to_be_bytes().to_vec();
        t.extend_from_slice(&v);
        t
    } else {
        v
    }
}

/// One generated flow: its protocol, transport, ports and messages in order.
#[derive(Clone, Debug)]
pub struct SampleFlow {
    /// The protocol a correct identification names.
    pub proto: L7Proto,
    /// TCP or UDP.
    pub transport: Transport,
    /// Client port.
    pub client_port: u16,
    /// Server port.
    pub server_port: u16,
    /// Payloads in order, with their sender.
    pub messages: Vec<(Side, Vec<u8>)>,
}

fn flow(proto: L7Proto, t: Transport, port: u16, msgs: Vec<(Side, Vec<u8>)>) -> SampleFlow {
    SampleFlow {
        proto,
        transport: t,
        client_port: 40000 + proto as u16,
        server_port: port,
        messages: msgs,
    }
}

/// One sample flow per protocol (industrial ones with a request/response exchange). Servers
/// listen on unusual ports where `odd_ports`, so identification must come from the payload.
pub fn sample_flows(odd_ports: bool) -> Vec<SampleFlow> {
    use L7Proto::*;
    use Side::{Client as C, Server as S};
    use Transport::{Tcp, Udp};
    let p = |std: u16| if odd_ports { 30000 + std % 1000 } else { std };
    vec![
        flow(
            Modbus,
            Tcp,
            p(502),
            vec![
                (C, modbus_request(1, 1, 3, 0, 10)),
                (
                    S,
                    modbus(
                        1,
                        1,
                        3,
                        &[
                            20, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10,
                        ],
                    ),
                ),
            ],
        ),
        flow(
            Dnp3,
            Tcp,
            p(20000),
            vec![
                (C, dnp3_request(10, 1, 1, DNP3_CLASS0)),
                (S, dnp3_response(1, 10, &[])),
            ],
        ),
        flow(
            S7comm,
            Tcp,
            p(102),
            vec![
                (C, s7_job(0xf0, &[0, 0, 1, 0, 1, 0, 0xf0])),
                (S, s7_ack_data(0xf0)),
            ],
        ),
        flow(S7commPlus, Tcp, p(102), vec![(C, s7plus())]),
        flow(
            EnipCip,
            Tcp,
            p(44818),
            vec![(C, enip_register_session()), (C, enip_send_rr(0x0e, 7))],
        ),
        flow(Bacnet, Udp, 47808, vec![(C, bacnet_confirmed(12, 1))]),
        flow(
            Iec104,
            Tcp,
            p(2404),
            vec![
                (C, iec104_u(0x07)),
                (S, iec104_u(0x0b)),
                (C, iec104_i(100, 6, 1, 0)),
            ],
        ),
        flow(OpcUa, Tcp, p(4840), vec![(C, opcua_hello())]),
        flow(Http, Tcp, p(80), vec![(C, http_get("example.test"))]),
        flow(
            Tls,
            Tcp,
            p(443),
            vec![(C, tls_client_hello("plc.example.test"))],
        ),
        flow(Dns, Udp, 53, vec![(C, dns_query(7, "scada.example.test"))]),
        flow(Ssh, Tcp, p(22), vec![(S, ssh_banner()), (C, ssh_banner())]),
        flow(Smb, Tcp, p(445), vec![(C, smb2_negotiate())]),
        flow(Rdp, Tcp, p(3389), vec![(C, rdp_cr("operator"))]),
        flow(Kerberos, Tcp, p(88), vec![(C, kerberos_as_req(true))]),
        flow(Kerberos, Udp, 88, vec![(C, kerberos_as_req(false))]),
    ]
}

/// Ethernet/IPv4/TCP-or-UDP frames of `flows` (TCP without handshakes: data segments with
/// consecutive sequence numbers), as a pcap file in memory. Flow `i` runs between 10.0.0.x and
/// 10.1.0.x with x = i + 1.
pub fn capture(flows: &[SampleFlow]) -> Vec<u8> {
    let header = PcapHeader::default();
    let mut w = PcapWriter::with_header(Vec::new(), header).expect("writing to memory");
    let mut t = 0u64;
    for (i, f) in flows.iter().enumerate() {
        let host = (i % 250) as u8 + 1;
        let (ca, sa) = ([10, 0, 0, host], [10, 1, 0, host]);
        let mut seq = [1000u32, 5000u32];
        for (side, payload) in &f.messages {
            let (src, dst, sp, dp) = match side {
                Side::Client => (ca, sa, f.client_port, f.server_port),
                Side::Server => (sa, ca, f.server_port, f.client_port),
            };
            let s = &mut seq[*side as usize];
            let frame = frame(f.transport, src, dst, sp, dp, *s, payload);
            *s = s.wrapping_add(payload.len() as u32);
            t += 1000;
            let pkt = PcapPacket {
                timestamp: Duration::from_micros(t),
                orig_len: frame.len() as u32,
                data: Cow::Owned(frame),
            };
            w.write_packet(&pkt).expect("writing to memory");
        }
    }
    w.into_writer()
}

/// One Ethernet/IPv4 frame with checksums filled (TCP: PSH+ACK acknowledging 1).
pub fn frame(
    t: Transport,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    segment(t, src, dst, (sport, dport), (seq, 1, 0x18), payload)
}

/// TCP flags of the frames [`conversation`] builds.
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const FIN_ACK: u8 = 0x11;

/// One TCP connection that connection tracking accepts, as Ethernet/IPv4 frames: the
/// handshake (client ISN 1000, server ISN 500000), each message as a PSH+ACK segment from its
/// sender acknowledging everything the peer sent, then FIN/ACK from both ends if `close`.
/// Returns the frames and, for each message, the index of its frame (so a test can replay a
/// segment as a retransmission).
pub fn conversation(
    client: [u8; 4],
    server: [u8; 4],
    ports: (u16, u16),
    messages: &[(Side, Vec<u8>)],
    close: bool,
) -> (Vec<Vec<u8>>, Vec<usize>) {
    let mut next = [1000u32, 500_000u32];
    let mut frames = Vec::new();
    let mut at = Vec::new();
    let mut send = |side: Side, flags: u8, payload: &[u8], frames: &mut Vec<Vec<u8>>| {
        let i = side as usize;
        let (src, dst, p) = match side {
            Side::Client => (client, server, ports),
            Side::Server => (server, client, (ports.1, ports.0)),
        };
        let ack = if flags & ACK != 0 { next[1 - i] } else { 0 };
        frames.push(segment(
            Transport::Tcp,
            src,
            dst,
            p,
            (next[i], ack, flags),
            payload,
        ));
        let used = payload.len() as u32 + u32::from(flags & (SYN | 0x01) != 0);
        next[i] = next[i].wrapping_add(used);
    };
    send(Side::Client, SYN, &[], &mut frames);
    send(Side::Server, SYN | ACK, &[], &mut frames);
    send(Side::Client, ACK, &[], &mut frames);
    for (side, payload) in messages {
        at.push(frames.len());
        send(*side, PSH_ACK, payload, &mut frames);
    }
    if close {
        send(Side::Client, FIN_ACK, &[], &mut frames);
        send(Side::Server, FIN_ACK, &[], &mut frames);
        send(Side::Client, ACK, &[], &mut frames);
    }
    (frames, at)
}

/// One Ethernet/IPv4 frame with checksums filled; `tcp` is (sequence, acknowledgement, flags),
/// ignored for UDP.
pub fn segment(
    t: Transport,
    src: [u8; 4],
    dst: [u8; 4],
    (sport, dport): (u16, u16),
    (seq, ack, flags): (u32, u32, u8),
    payload: &[u8],
) -> Vec<u8> {
    let l4_len = match t {
        Transport::Tcp => 20,
        Transport::Udp => 8,
    } + payload.len();
    let mut v = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let ip_len = 20 + l4_len;
    v.extend_from_slice(&[0x45, 0]);
    v.extend_from_slice(&(ip_len as u16).to_be_bytes());
    v.extend_from_slice(&[
        0,
        1,
        0x40,
        0,
        64,
        if t == Transport::Tcp { 6 } else { 17 },
        0,
        0,
    ]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    let l4 = v.len();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    match t {
        Transport::Tcp => {
            v.extend_from_slice(&seq.to_be_bytes());
            v.extend_from_slice(&ack.to_be_bytes());
            v.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        }
        Transport::Udp => {
            v.extend_from_slice(&(l4_len as u16).to_be_bytes());
            v.extend_from_slice(&[0, 0]);
        }
    }
    v.extend_from_slice(payload);
    let (s, d) = (
        IpAddress::Ipv4(Ipv4Address::from(src)),
        IpAddress::Ipv4(Ipv4Address::from(dst)),
    );
    Ipv4Packet::new_unchecked(&mut v[14..l4]).fill_checksum();
    match t {
        Transport::Tcp => TcpPacket::new_unchecked(&mut v[l4..]).fill_checksum(&s, &d),
        Transport::Udp => UdpPacket::new_unchecked(&mut v[l4..]).fill_checksum(&s, &d),
    }
    v
}
