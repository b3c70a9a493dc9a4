//! Byte-vector tests: frames are assembled here (TCP fields, options and payload lengths that
//! `FrameBuilder` does not expose), parsed with the real parser, and fed to conntrack.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::flow::{FlowTableConfig, Lookup, TimeoutClass};
use crate::parse::{TcpFlags, parse};
use crate::testgen::FrameBuilder;

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const C6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 10);
const S6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 20);
const R6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 9, 0, 0, 0, 1);

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// The IPv4 packet (no Ethernet) carrying `l4`.
pub(crate) fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(l4);
    ip
}

pub(crate) fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(0x0800, &ipv4_packet(src, dst, proto, l4))
}

pub(crate) fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[next, 64]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(l4);
    ip
}

fn ipv6_frame(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
    eth(0x86dd, &ipv6_packet(src, dst, next, l4))
}

/// A TCP header (checksum left 0: nothing on the path verifies it) plus `len` payload bytes.
#[allow(clippy::too_many_arguments)] // one argument per header field
fn tcp_l4(
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    opts: &[u8],
    len: usize,
) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push((((20 + opts.len()) / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&win.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(opts);
    t.extend(std::iter::repeat_n(0xaa, len));
    t
}

fn table() -> FlowTable<Conn> {
    FlowTable::new(&FlowTableConfig::new(64, 1000), [3, 4]).unwrap()
}

/// A client (10.1.0.10:40000) talking to a server (10.2.0.20:80).
struct Conv {
    t: FlowTable<Conn>,
    now: u64,
    wscale: [Option<u8>; 2],
    win: u16,
}

impl Conv {
    fn new() -> Self {
        Conv {
            t: table(),
            now: 0,
            wscale: [None, None],
            win: 65535,
        }
    }

    fn frame(&self, dir: Direction, flags: u8, seq: u32, ack: u32, len: usize) -> Vec<u8> {
        let opts: Vec<u8> = match self.wscale[dir.index()] {
            Some(s) if flags & SYN != 0 => vec![1, 3, 3, s],
            _ => vec![],
        };
        match dir {
            Direction::Original => ipv4_frame(
                CLIENT,
                SERVER,
                6,
                &tcp_l4(40000, 80, flags, seq, ack, self.win, &opts, len),
            ),
            Direction::Reply => ipv4_frame(
                SERVER,
                CLIENT,
                6,
                &tcp_l4(80, 40000, flags, seq, ack, self.win, &opts, len),
            ),
        }
    }

    fn send(
        &mut self,
        dir: Direction,
        flags: u8,
        seq: u32,
        ack: u32,
        len: usize,
    ) -> Result<TcpState, DropReason> {
        self.now += 1;
        let f = self.frame(dir, flags, seq, ack, len);
        let pkt = parse(&f).unwrap();
        let (id, got) = track(&mut self.t, &pkt, &f, self.now)?.unwrap();
        assert_eq!(got, dir);
        match self.t.entry(id).state {
            Conn::Tcp(c) => Ok(c.state),
            other => panic!("not TCP: {other:?}"),
        }
    }

    fn state(&self) -> TcpState {
        let f = self.frame(Direction::Original, ACK, 0, 0, 0);
        match self.t.lookup(&parse(&f).unwrap().key) {
            Lookup::Hit { id, .. } => match self.t.entry(id).state {
                Conn::Tcp(c) => c.state,
                _ => unreachable!(),
            },
            Lookup::Miss(_) => panic!("no flow"),
        }
    }

    /// Three-way handshake with client ISN `c` and server ISN `s`.
    fn handshake(&mut self, c: u32, s: u32) {
        assert_eq!(self.send(O, SYN, c, 0, 0), Ok(TcpState::SynSent));
        assert_eq!(
            self.send(R, SYN | ACK, s, c.wrapping_add(1), 0),
            Ok(TcpState::SynRecv)
        );
        assert_eq!(
            self.send(O, ACK, c.wrapping_add(1), s.wrapping_add(1), 0),
            Ok(TcpState::Established)
        );
    }
}

const O: Direction = Direction::Original;
const R: Direction = Direction::Reply;

#[test]
fn full_lifecycle_handshake_data_and_fin_close() {
    let mut c = Conv::new();
    c.handshake(1000, 5000);
    assert_eq!(
        c.t.half_open_len(),
        0,
        "established flow left the half-open list"
    );
    assert_eq!(
        c.send(O, PSH | ACK, 1001, 5001, 100),
        Ok(TcpState::Established)
    );
    assert_eq!(
        c.send(R, PSH | ACK, 5001, 1101, 1400),
        Ok(TcpState::Established)
    );
    assert_eq!(c.send(O, FIN | ACK, 1101, 6401, 0), Ok(TcpState::FinWait));
    assert_eq!(c.send(R, ACK, 6401, 1102, 0), Ok(TcpState::CloseWait));
    assert_eq!(
        c.send(R, PSH | ACK, 6401, 1102, 10),
        Ok(TcpState::CloseWait)
    );
    assert_eq!(c.send(R, FIN | ACK, 6411, 1102, 0), Ok(TcpState::LastAck));
    assert_eq!(c.send(O, ACK, 1102, 6412, 0), Ok(TcpState::TimeWait));
    // Stray retransmitted FIN in TIME_WAIT passes.
    assert_eq!(c.send(R, FIN | ACK, 6411, 1102, 0), Ok(TcpState::TimeWait));
}

#[test]
fn timeout_class_follows_the_state() {
    let mut c = Conv::new();
    c.send(O, SYN, 1, 0, 0).unwrap();
    let key = parse(&c.frame(O, ACK, 0, 0, 0)).unwrap().key;
    let id = match c.t.lookup(&key) {
        Lookup::Hit { id, .. } => id,
        Lookup::Miss(_) => panic!(),
    };
    assert_eq!(c.t.entry(id).timeout_class(), TimeoutClass::TcpSynSent);
    assert!(c.t.entry(id).is_embryonic());
    c.send(R, SYN | ACK, 9, 2, 0).unwrap();
    assert_eq!(c.t.entry(id).timeout_class(), TimeoutClass::TcpSynRecv);
    c.send(O, ACK, 2, 10, 0).unwrap();
    assert_eq!(c.t.entry(id).timeout_class(), TimeoutClass::TcpEstablished);
    c.send(R, RST, 10, 0, 0).unwrap();
    assert_eq!(c.t.entry(id).timeout_class(), TimeoutClass::TcpClose);
}

#[test]
fn out_of_window_rst_is_dropped_and_in_window_rst_closes() {
    let mut c = Conv::new();
    c.handshake(1000, 5000);
    // Blind reset: a guessed sequence number far outside the window.
    assert_eq!(
        c.send(R, RST, 5001 + 10_000_000, 0, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    assert_eq!(
        c.send(R, RST | ACK, 5001u32.wrapping_sub(200_000), 1001, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    // RST+ACK acknowledging data the client never sent.
    assert_eq!(
        c.send(R, RST | ACK, 5001, 900_000, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    assert_eq!(
        c.state(),
        TcpState::Established,
        "refused RSTs change nothing"
    );
    assert_eq!(c.send(R, RST, 5001, 0, 0), Ok(TcpState::Close));
    // After the reset, data is refused; a retransmitted RST is fine.
    assert_eq!(
        c.send(O, ACK, 1001, 5001, 10),
        Err(DropReason::TcpInvalidState)
    );
    assert_eq!(c.send(R, RST, 5001, 0, 0), Ok(TcpState::Close));
}

#[test]
fn rst_answering_a_syn_must_acknowledge_it() {
    let mut c = Conv::new();
    c.send(O, SYN, 1000, 0, 0).unwrap();
    assert_eq!(
        c.send(R, RST | ACK, 0, 1234, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    assert_eq!(c.send(R, RST, 0, 0, 0), Err(DropReason::TcpOutOfWindow));
    assert_eq!(c.send(R, RST | ACK, 0, 1001, 0), Ok(TcpState::Close));
}

#[test]
fn data_before_handshake() {
    let mut c = Conv::new();
    // No flow and not a SYN: no pickup of mid-stream connections.
    assert_eq!(c.send(O, PSH | ACK, 1, 1, 10), Err(DropReason::TcpNoFlow));
    assert_eq!(c.send(R, ACK, 1, 1, 0), Err(DropReason::TcpNoFlow));
    assert_eq!(c.send(O, SYN | ACK, 1, 1, 0), Err(DropReason::TcpNoFlow));
    assert!(c.t.is_empty());
    c.send(O, SYN, 1000, 0, 0).unwrap();
    // Data from either side before the SYN-ACK / final ACK.
    assert_eq!(
        c.send(O, PSH | ACK, 1001, 0, 10),
        Err(DropReason::TcpInvalidState)
    );
    assert_eq!(
        c.send(R, PSH | ACK, 5001, 1001, 10),
        Err(DropReason::TcpInvalidState)
    );
    assert_eq!(
        c.send(O, FIN | ACK, 1001, 0, 0),
        Err(DropReason::TcpInvalidState)
    );
    // A SYN-ACK from the originator's side is not an answer.
    assert_eq!(
        c.send(O, SYN | ACK, 1000, 1, 0),
        Err(DropReason::TcpInvalidState)
    );
    assert_eq!(c.state(), TcpState::SynSent);
}

#[test]
fn syn_ack_must_acknowledge_the_syn() {
    let mut c = Conv::new();
    c.send(O, SYN, 1000, 0, 0).unwrap();
    assert_eq!(
        c.send(R, SYN | ACK, 5000, 1000, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    assert_eq!(
        c.send(R, SYN | ACK, 5000, 77, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    assert_eq!(c.send(R, SYN | ACK, 5000, 1001, 0), Ok(TcpState::SynRecv));
    // Retransmissions of the handshake packets are fine.
    assert_eq!(c.send(R, SYN | ACK, 5000, 1001, 0), Ok(TcpState::SynRecv));
    assert_eq!(c.send(O, SYN, 1000, 0, 0), Ok(TcpState::SynRecv));
    assert_eq!(c.send(O, SYN, 1777, 0, 0), Err(DropReason::TcpInvalidState));
}

#[test]
fn syn_retransmission_and_new_isn_in_syn_sent() {
    let mut c = Conv::new();
    c.send(O, SYN, 1000, 0, 0).unwrap();
    assert_eq!(c.send(O, SYN, 1000, 0, 0), Ok(TcpState::SynSent));
    // The client gave up and retried with a new ISN: the SYN-ACK must match the new one.
    assert_eq!(c.send(O, SYN, 90_000, 0, 0), Ok(TcpState::SynSent));
    assert_eq!(
        c.send(R, SYN | ACK, 5000, 1001, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    assert_eq!(c.send(R, SYN | ACK, 5000, 90_001, 0), Ok(TcpState::SynRecv));
}

#[test]
fn syn_after_fin() {
    let mut c = Conv::new();
    c.handshake(1000, 5000);
    assert_eq!(c.send(O, FIN | ACK, 1001, 5001, 0), Ok(TcpState::FinWait));
    // Close in progress: a SYN (even with a fresh ISN) is refused.
    assert_eq!(c.send(O, SYN, 777, 0, 0), Err(DropReason::TcpInvalidState));
    assert_eq!(c.send(R, SYN, 777, 0, 0), Err(DropReason::TcpInvalidState));
    assert_eq!(c.send(R, FIN | ACK, 5001, 1002, 0), Ok(TcpState::LastAck));
    assert_eq!(c.send(O, SYN, 777, 0, 0), Err(DropReason::TcpInvalidState));
    assert_eq!(c.send(O, ACK, 1002, 5002, 0), Ok(TcpState::TimeWait));
    // Closed: the server may not open back, the client may reuse the port pair.
    assert_eq!(c.send(R, SYN, 777, 0, 0), Err(DropReason::TcpInvalidState));
    let f = c.frame(O, SYN, 3_000_000, 0, 0);
    let pkt = parse(&f).unwrap();
    match begin(&mut c.t, &pkt, &f, 100).unwrap() {
        Begun::Tracked { reopened, dir, .. } => assert!(reopened && dir == O),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.state(), TcpState::SynSent);
    assert_eq!(
        c.t.half_open_len(),
        1,
        "a reopened connection is half-open again"
    );
    assert_eq!(
        c.send(R, SYN | ACK, 8000, 3_000_001, 0),
        Ok(TcpState::SynRecv)
    );
    assert_eq!(
        c.send(O, ACK, 3_000_001, 8001, 0),
        Ok(TcpState::Established)
    );
    assert_eq!(c.t.half_open_len(), 0);
}

#[test]
fn simultaneous_open() {
    let mut c = Conv::new();
    assert_eq!(c.send(O, SYN, 1000, 0, 0), Ok(TcpState::SynSent));
    assert_eq!(c.send(R, SYN, 5000, 0, 0), Ok(TcpState::SynSent2));
    assert_eq!(c.send(R, SYN, 5000, 0, 0), Ok(TcpState::SynSent2));
    // Each side answers with SYN-ACK acknowledging the other's SYN.
    assert_eq!(
        c.send(O, SYN | ACK, 1000, 5000, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    assert_eq!(c.send(O, SYN | ACK, 1000, 5001, 0), Ok(TcpState::SynRecv));
    assert_eq!(c.send(R, SYN | ACK, 5000, 1001, 0), Ok(TcpState::SynRecv));
    assert_eq!(c.send(R, ACK, 5001, 1001, 0), Ok(TcpState::Established));
    assert_eq!(
        c.send(O, PSH | ACK, 1001, 5001, 50),
        Ok(TcpState::Established)
    );
}

#[test]
fn invalid_flag_combinations() {
    let mut c = Conv::new();
    for flags in [
        SYN | FIN,
        SYN | RST,
        FIN,
        0,
        PSH,
        SYN | ACK | RST,
        FIN | RST | ACK,
        0x29,
    ] {
        assert_eq!(
            c.send(O, flags, 1, 0, 0),
            Err(DropReason::TcpInvalidFlags),
            "{flags:#x}"
        );
    }
    c.handshake(1000, 5000);
    for flags in [SYN | FIN, FIN, 0, FIN | PSH | 0x20] {
        assert_eq!(
            c.send(O, flags, 1001, 5001, 0),
            Err(DropReason::TcpInvalidFlags),
            "{flags:#x}"
        );
    }
    // ECE/CWR/PSH do not matter.
    assert_eq!(
        c.send(O, ACK | PSH | 0x40 | 0x80, 1001, 5001, 5),
        Ok(TcpState::Established)
    );
}

#[test]
fn data_and_acks_outside_the_window() {
    let mut c = Conv::new();
    c.handshake(1000, 5000);
    // The server advertised 65535: the client may send up to 5001 + 65535 ... i.e. seq <= 1001 + 65535.
    assert_eq!(
        c.send(O, ACK, 1001 + 65_535, 5001, 0),
        Ok(TcpState::Established)
    );
    assert_eq!(
        c.send(O, ACK, 1001 + 65_536, 5001, 10),
        Err(DropReason::TcpOutOfWindow)
    );
    // Acknowledging data the server never sent.
    assert_eq!(
        c.send(O, ACK, 1001, 5002, 0),
        Err(DropReason::TcpOutOfWindow)
    );
    // Very old data (more than a maximum window behind).
    c.send(O, ACK, 1001, 5001, 60_000).unwrap();
    assert_eq!(
        c.send(O, ACK, 1001u32.wrapping_sub(70_000), 5001, 10),
        Err(DropReason::TcpOutOfWindow)
    );
    // A pure ACK is judged by its ACK only (as in Linux), whatever its seq.
    assert_eq!(
        c.send(O, ACK, 1001 + 500_000, 5001, 0),
        Ok(TcpState::Established)
    );
    // A retransmission within the window is fine.
    assert_eq!(c.send(O, ACK, 1001, 5001, 100), Ok(TcpState::Established));
}

#[test]
fn sequence_numbers_wrap() {
    let mut c = Conv::new();
    let isn = u32::MAX - 10;
    c.handshake(isn, 7);
    let mut seq = isn.wrapping_add(1);
    for _ in 0..5 {
        assert_eq!(
            c.send(O, PSH | ACK, seq, 8, 1000),
            Ok(TcpState::Established)
        );
        seq = seq.wrapping_add(1000);
    }
    assert_eq!(c.send(R, ACK, 8, seq, 0), Ok(TcpState::Established));
}

#[test]
fn window_scaling_needs_both_sides() {
    // Both offer scale 7: windows of 512 * 128 = 65536 bytes.
    let mut c = Conv::new();
    c.wscale = [Some(7), Some(7)];
    c.win = 512;
    c.handshake(1000, 5000);
    // The client's ACK advertised 512 << 7 = 65536 for the server.
    assert_eq!(
        c.send(R, PSH | ACK, 5001 + 60_000, 1001, 10),
        Ok(TcpState::Established)
    );
    // Only the client offers: no scaling, the server may send 512 bytes past the ACK.
    let mut c = Conv::new();
    c.wscale = [Some(7), None];
    c.win = 512;
    c.handshake(1000, 5000);
    assert_eq!(
        c.send(R, PSH | ACK, 5001 + 512, 1001, 10),
        Ok(TcpState::Established)
    );
    assert_eq!(
        c.send(R, PSH | ACK, 5001 + 60_000, 1001, 10),
        Err(DropReason::TcpOutOfWindow)
    );
}

fn icmp_echo(ty: u8, id: u16) -> Vec<u8> {
    let mut v = vec![ty, 0, 0, 0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0, 1, 0xab, 0xcd]);
    v
}

fn track_frame(
    t: &mut FlowTable<Conn>,
    f: &[u8],
) -> Result<Option<(FlowId, Direction)>, DropReason> {
    let pkt = parse(f).unwrap();
    track(t, &pkt, f, 1)
}

#[test]
fn udp_pseudo_state_new_then_established_on_reply() {
    let mut t = table();
    let req = FrameBuilder::new()
        .ipv4(CLIENT, SERVER)
        .udp(40001, 53)
        .build();
    let rsp = FrameBuilder::new()
        .ipv4(SERVER, CLIENT)
        .udp(53, 40001)
        .build();
    let (id, dir) = track_frame(&mut t, &req).unwrap().unwrap();
    assert_eq!(dir, O);
    assert!(t.entry(id).is_embryonic());
    assert_eq!(t.entry(id).timeout_class(), TimeoutClass::Udp);
    assert_eq!(track_frame(&mut t, &rsp).unwrap(), Some((id, R)));
    assert!(!t.entry(id).is_embryonic());
    assert_eq!(t.entry(id).timeout_class(), TimeoutClass::UdpStream);
    assert_eq!(t.entry(id).packets(O) + t.entry(id).packets(R), 2);
}

#[test]
fn icmp_echo_matches_by_identifier() {
    let mut t = table();
    let req = ipv4_frame(CLIENT, SERVER, 1, &icmp_echo(8, 0x1234));
    let rsp = ipv4_frame(SERVER, CLIENT, 1, &icmp_echo(0, 0x1234));
    let other = ipv4_frame(SERVER, CLIENT, 1, &icmp_echo(0, 0x9999));
    assert_eq!(
        track_frame(&mut t, &rsp),
        Err(DropReason::IcmpNoFlow),
        "reply before request"
    );
    let (id, _) = track_frame(&mut t, &req).unwrap().unwrap();
    assert_eq!(track_frame(&mut t, &rsp).unwrap(), Some((id, R)));
    assert!(!t.entry(id).is_embryonic());
    assert_eq!(
        track_frame(&mut t, &other),
        Err(DropReason::IcmpNoFlow),
        "wrong identifier"
    );
    // ICMPv6 echo as well.
    let req6 = ipv6_frame(C6, S6, 58, &icmp_echo(128, 7));
    let rsp6 = ipv6_frame(S6, C6, 58, &icmp_echo(129, 7));
    let (id6, _) = track_frame(&mut t, &req6).unwrap().unwrap();
    assert_eq!(track_frame(&mut t, &rsp6).unwrap(), Some((id6, R)));
}

/// An ICMPv4 error from `from` to `to` embedding `inner` (an IP packet), cut to `keep` bytes.
fn icmp4_error(
    from: Ipv4Addr,
    to: Ipv4Addr,
    ty: u8,
    code: u8,
    inner: &[u8],
    keep: usize,
) -> Vec<u8> {
    let mut l4 = vec![ty, code, 0, 0, 0, 0, 0x05, 0xdc]; // next-hop MTU 1500
    l4.extend_from_slice(&inner[..keep.min(inner.len())]);
    ipv4_frame(from, to, 1, &l4)
}

#[test]
fn icmp_errors_related_to_a_flow_pass_and_others_are_dropped() {
    let mut c = Conv::new();
    c.handshake(1000, 5000);
    // The client's data packet, as a router on the path would quote it.
    let data = &c.frame(O, PSH | ACK, 1001, 5001, 1400)[14..];
    // Fragmentation needed (3/4), sent back to the client: related, in the reply direction.
    let frag_needed = icmp4_error(ROUTER, CLIENT, 3, 4, data, 28);
    let got = track_frame(&mut c.t, &frag_needed).unwrap().unwrap();
    assert_eq!(got.1, R);
    // Time exceeded quoting the whole packet is related too.
    let ttl = icmp4_error(ROUTER, CLIENT, 11, 0, data, 576);
    assert!(track_frame(&mut c.t, &ttl).unwrap().is_some());
    // Errors do not count as flow packets.
    assert_eq!(c.t.entry(got.0).packets(R), 1);
    // Unrelated: quoting a connection that does not exist.
    let other = &ipv4_frame(
        CLIENT,
        SERVER,
        6,
        &tcp_l4(40001, 80, ACK, 1, 1, 100, &[], 0),
    )[14..];
    let e = icmp4_error(ROUTER, CLIENT, 3, 4, other, 28);
    assert_eq!(
        track_frame(&mut c.t, &e),
        Err(DropReason::IcmpErrorUnrelated)
    );
    // Unrelated: quoting the flow but sent to someone else than its sender.
    let e = icmp4_error(ROUTER, SERVER, 3, 4, data, 28);
    assert_eq!(
        track_frame(&mut c.t, &e),
        Err(DropReason::IcmpErrorUnrelated)
    );
    // Malformed: less than the IP header + 8 bytes quoted.
    let e = icmp4_error(ROUTER, CLIENT, 3, 4, data, 24);
    assert_eq!(
        track_frame(&mut c.t, &e),
        Err(DropReason::IcmpErrorMalformed)
    );
    // An error about an ICMP error is never related.
    let inner_err = &icmp4_error(CLIENT, ROUTER, 3, 3, data, 28)[14..];
    let e = icmp4_error(ROUTER, CLIENT, 3, 1, inner_err, 36);
    assert_eq!(
        track_frame(&mut c.t, &e),
        Err(DropReason::IcmpErrorUnrelated)
    );
}

#[test]
fn icmp_error_about_udp_and_echo_flows() {
    let mut t = table();
    let req = FrameBuilder::new()
        .ipv4(CLIENT, SERVER)
        .udp(40001, 53)
        .build();
    track_frame(&mut t, &req).unwrap();
    // Port unreachable from the server.
    let e = icmp4_error(SERVER, CLIENT, 3, 3, &req[14..], 28);
    assert!(track_frame(&mut t, &e).unwrap().is_some());
    // Time exceeded for a ping (traceroute -I).
    let ping = ipv4_frame(CLIENT, SERVER, 1, &icmp_echo(8, 42));
    track_frame(&mut t, &ping).unwrap();
    let e = icmp4_error(ROUTER, CLIENT, 11, 0, &ping[14..], 28);
    assert!(track_frame(&mut t, &e).unwrap().is_some());
    let ping43 = ipv4_frame(CLIENT, SERVER, 1, &icmp_echo(8, 43));
    let e = icmp4_error(ROUTER, CLIENT, 11, 0, &ping43[14..], 28);
    assert_eq!(track_frame(&mut t, &e), Err(DropReason::IcmpErrorUnrelated));
}

#[test]
fn icmpv6_packet_too_big_is_related() {
    let mut t = table();
    let syn = ipv6_frame(C6, S6, 6, &tcp_l4(40000, 443, SYN, 1, 0, 65535, &[], 0));
    let syn_ack = ipv6_frame(
        S6,
        C6,
        6,
        &tcp_l4(443, 40000, SYN | ACK, 9, 2, 65535, &[], 0),
    );
    let data = ipv6_frame(S6, C6, 6, &tcp_l4(443, 40000, ACK, 10, 2, 65535, &[], 1400));
    track_frame(&mut t, &syn).unwrap();
    track_frame(&mut t, &syn_ack).unwrap();
    // Packet too big (type 2), from a router back to the server, quoting its data packet.
    let mut l4 = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    l4.extend_from_slice(&data[14..14 + 1200]);
    let ptb = ipv6_frame(R6, S6, 58, &l4);
    let (_, dir) = track_frame(&mut t, &ptb).unwrap().unwrap();
    assert_eq!(
        dir, O,
        "the error travels towards the server, the flow's original direction"
    );
    // Destination unreachable about a flow that does not exist.
    let stray = ipv6_frame(S6, C6, 6, &tcp_l4(443, 40001, ACK, 10, 2, 65535, &[], 100));
    let mut l4 = vec![1, 4, 0, 0, 0, 0, 0, 0];
    l4.extend_from_slice(&stray[14..]);
    let e = ipv6_frame(R6, S6, 58, &l4);
    assert_eq!(track_frame(&mut t, &e), Err(DropReason::IcmpErrorUnrelated));
    // Truncated quote.
    let mut l4 = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    l4.extend_from_slice(&data[14..14 + 44]);
    let e = ipv6_frame(R6, S6, 58, &l4);
    assert_eq!(track_frame(&mut t, &e), Err(DropReason::IcmpErrorMalformed));
}

#[test]
fn non_echo_icmp_and_non_first_fragments() {
    let mut t = table();
    // Neighbour solicitation: tracked by type/code, not an echo.
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&S6.octets());
    let ns = ipv6_frame(C6, S6, 58, &ns);
    assert!(track_frame(&mut t, &ns).unwrap().is_some());
    // A non-first fragment is not conntrack's business.
    let frag = FrameBuilder::new()
        .ipv4(CLIENT, SERVER)
        .udp(1, 2)
        .fragment(64, false)
        .build();
    assert_eq!(track_frame(&mut t, &frag), Ok(None));
    let arp = crate::testgen::arp_request(crate::testgen::MAC_A, CLIENT, SERVER);
    assert_eq!(track_frame(&mut t, &arp), Ok(None));
}

#[test]
fn conn_state_fits_the_budget() {
    assert!(
        std::mem::size_of::<Conn>() <= 40,
        "{}",
        std::mem::size_of::<Conn>()
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn flags() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(ACK),
            Just(PSH | ACK),
            Just(FIN | ACK),
            Just(RST),
            Just(RST | ACK),
            Just(SYN),
            Just(SYN | ACK),
            any::<u8>(),
        ]
    }

    proptest! {
        /// Random segments (near and far from the tracked window) on an established
        /// connection: never a panic, and a refused segment leaves the state untouched.
        #[test]
        fn refused_segments_change_nothing(
            segs in proptest::collection::vec(
                (any::<bool>(), flags(), -200_000i64..200_000, -200_000i64..200_000, 0usize..3000),
                1..60,
            )
        ) {
            let mut conn = {
                let mut c = Conv::new();
                c.handshake(1000, 5000);
                c
            };
            for (reply, flags, dseq, dack, len) in segs {
                let dir = if reply { R } else { O };
                let (base_seq, base_ack) = if reply { (5001i64, 1001i64) } else { (1001, 5001) };
                let seq = (base_seq + dseq) as u32;
                let ack = (base_ack + dack) as u32;
                let f = conn.frame(dir, flags, seq, ack, len);
                let pkt = parse(&f).unwrap();
                let before = match conn.t.lookup(&pkt.key) {
                    Lookup::Hit { id, .. } => Some((id, conn.t.entry(id).state)),
                    Lookup::Miss(_) => None,
                };
                conn.now += 1;
                let r = track(&mut conn.t, &pkt, &f, conn.now);
                if r.is_err()
                    && let Some((id, state)) = before
                {
                    prop_assert_eq!(conn.t.entry(id).state, state);
                }
            }
        }
    }
}

#[test]
fn syn_flood_never_disturbs_established_flows() {
    let mut c = FlowTableConfig::new(64, 1000);
    c.max_half_open = 16;
    let mut t: FlowTable<Conn> = FlowTable::new(&c, [9, 9]).unwrap();
    let syn = |sport: u16, seq: u32| {
        ipv4_frame(
            CLIENT,
            SERVER,
            6,
            &tcp_l4(sport, 80, SYN, seq, 0, 65535, &[], 0),
        )
    };
    // Ten established connections.
    for p in 0..10u16 {
        let f = syn(1000 + p, 1);
        track_frame(&mut t, &f).unwrap();
        let sa = ipv4_frame(
            SERVER,
            CLIENT,
            6,
            &tcp_l4(80, 1000 + p, SYN | ACK, 9, 2, 65535, &[], 0),
        );
        track_frame(&mut t, &sa).unwrap();
        let a = ipv4_frame(
            CLIENT,
            SERVER,
            6,
            &tcp_l4(1000 + p, 80, ACK, 2, 10, 65535, &[], 0),
        );
        track_frame(&mut t, &a).unwrap();
    }
    assert_eq!((t.len(), t.half_open_len()), (10, 0));
    // A flood of spoofed SYNs from other source ports: half-open flows recycle among themselves.
    for p in 0..5000u16 {
        track_frame(&mut t, &syn(20_000 + p, u32::from(p))).unwrap();
    }
    assert_eq!(t.half_open_len(), 16);
    assert_eq!(t.len(), 26);
    assert_eq!(t.stats().evicted_half_open, 5000 - 16);
    // Every established connection still carries data.
    for p in 0..10u16 {
        let d = ipv4_frame(
            CLIENT,
            SERVER,
            6,
            &tcp_l4(1000 + p, 80, PSH | ACK, 2, 10, 65535, &[], 100),
        );
        assert!(track_frame(&mut t, &d).unwrap().is_some());
    }
}

#[test]
fn full_table_of_established_flows_refuses_new_ones() {
    let mut t: FlowTable<Conn> = FlowTable::new(&FlowTableConfig::new(4, 1000), [9, 9]).unwrap();
    for p in 0..4u16 {
        let q = ipv4_frame(CLIENT, SERVER, 17, &[0x10, p as u8, 0, 53, 0, 8, 0, 0]);
        let r = ipv4_frame(SERVER, CLIENT, 17, &[0, 53, 0x10, p as u8, 0, 8, 0, 0]);
        track_frame(&mut t, &q).unwrap();
        track_frame(&mut t, &r).unwrap();
    }
    assert_eq!(t.half_open_len(), 0);
    let syn = ipv4_frame(CLIENT, SERVER, 6, &tcp_l4(1, 80, SYN, 1, 0, 65535, &[], 0));
    assert_eq!(track_frame(&mut t, &syn), Err(DropReason::FlowTableFull));
    assert_eq!(t.len(), 4);
}

/// A lookup made ahead of time is reused only while no flow was inserted or removed: two SYNs
/// of one connection looked up before either is committed must not create two flows.
#[test]
fn found_ahead_is_redone_after_the_table_changes() {
    let mut t = table();
    let syn = FrameBuilder::new()
        .ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
        .tcp(1000, 80, TcpFlags::SYN)
        .build();
    let p = parse(&syn).unwrap();
    let first = find(&t, &p, &syn).unwrap().expect("tracked");
    let second = find(&t, &p, &syn).unwrap().expect("tracked");
    assert_eq!(first.at.id(), None);
    let g = t.generation();
    let Begun::New(new) = begin_found(&mut t, &p, &syn, 1, Some(first), |_| {}).unwrap() else {
        panic!("first SYN opens a flow");
    };
    let id = commit(&mut t, new, 1).unwrap();
    assert_ne!(t.generation(), g, "an insert changes the generation");
    // `second` still says Miss; it is stale now and begin_found looks again.
    match begin_found(&mut t, &p, &syn, 2, Some(second), |_| {}).unwrap() {
        Begun::Tracked { id: got, dir, .. } => {
            assert_eq!((got, dir), (id, Direction::Original));
        }
        other => panic!("retransmitted SYN must hit the flow, got {other:?}"),
    }
    assert_eq!(t.len(), 1);
    // A current lookup is used as is; a removal changes the generation again.
    let current = find(&t, &p, &syn).unwrap().expect("tracked");
    assert_eq!(current.at.id(), Some(id));
    let g = t.generation();
    t.remove(id);
    assert_ne!(t.generation(), g, "a removal changes the generation");
    assert!(matches!(
        begin_found(&mut t, &p, &syn, 3, Some(current), |_| {}).unwrap(),
        Begun::New(_)
    ));
    // Untracked packets: nothing to find.
    let other = eth(0x88b5, &[0; 46]);
    assert!(find(&t, &parse(&other).unwrap(), &other).unwrap().is_none());
}
