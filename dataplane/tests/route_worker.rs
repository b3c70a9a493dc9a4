//! Routed mode driven by the worker, over the in-memory backend (the same worker code as the
//! DPDK path): the gateway answers ARP and ping for its own addresses from its smoltcp stack,
//! transit traffic goes through the stateful policy path and leaves on the port the route chose
//! with rewritten MACs and TTL, denied flows are dropped under `policy`, TTL 1 draws a time
//! exceeded, an unresolved next hop draws an ARP request, a burst for several egress ports is
//! split per port, and the gateway's answers wait while no transmit buffer is available.

use std::net::Ipv4Addr;

use septa_classifier::{Action, AddrMatch, PortRange, Prefix, Rule, RuleTable, TableCell, compile};
use septa_dataplane::events::EventSink;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::parse::TcpFlags;
use septa_dataplane::route::{RoutedPort, Router, RouterConfig};
use septa_dataplane::testgen::{FrameBuilder, MAC_A, MAC_B, Side, TcpSession, arp_request};
use septa_dataplane::{Bridge, Decision, DropReason, StateConfig, Stats, Worker, WorkerState};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet,
};

const GW0: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x10];
const GW1: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x11];
const GW2: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x12];
const MAC_C: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
const MAC_A2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x1a];
const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const A2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
const C: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 30);
const GW0_4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const GW1_4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const GW2_4: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 1);

/// Allow TCP/80 (rule 1) and ICMP (rule 2) within 10/8, deny everything else (rule 9).
fn policy() -> RuleTable {
    let ten = AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(10, 0, 0, 0), 8));
    compile(&[
        Rule {
            dst: ten.clone(),
            proto: Some(6),
            dport: PortRange { lo: 80, hi: 80 },
            ..Rule::any(1, Action::Allow)
        },
        Rule {
            dst: ten,
            proto: Some(1),
            ..Rule::any(2, Action::Allow)
        },
        Rule::any(9, Action::Deny),
    ])
    .unwrap()
}

/// Three routed ports: 10.1.0.1/24 (0), 10.2.0.1/24 (1), 10.3.0.1/24 (2).
fn router() -> Router {
    let port = |port, mac, v4: &str| RoutedPort {
        port,
        mac,
        v4: Some(v4.parse().unwrap()),
        v6: None,
    };
    let cfg = RouterConfig::new(
        vec![
            port(0, GW0, "10.1.0.1/24"),
            port(1, GW1, "10.2.0.1/24"),
            port(2, GW2, "10.3.0.1/24"),
        ],
        vec![],
    );
    Router::new(&cfg, 0).unwrap()
}

fn worker(decision: Decision) -> Worker {
    let state = WorkerState::new(&StateConfig::new(1024), EventSink::disabled()).unwrap();
    let mut w = Worker::with_state(Bridge::new(3, &[(0, 1)]).unwrap(), decision, state);
    w.set_router(router());
    w
}

/// Receive `frames` on `port`, poll until they are processed; returns what each port sent.
fn run(w: &mut Worker, io: &mut MemoryIo, port: u16, frames: Vec<Vec<u8>>) -> [Vec<Vec<u8>>; 3] {
    for f in frames {
        io.push_rx(port, f);
    }
    while io.rx_pending(port) > 0 {
        w.poll(io, &mut ());
    }
    [io.take_tx(0), io.take_tx(1), io.take_tx(2)]
}

fn stats(w: &Worker) -> Stats {
    Stats::collect([&**w.counters()])
}

/// `frame` with its Ethernet destination set to `mac` (host → gateway).
fn to(mac: [u8; 6], mut frame: Vec<u8>) -> Vec<u8> {
    frame[..6].copy_from_slice(&mac);
    frame
}

/// Teach the router every host: each sends an ARP request for its gateway. The answers are
/// checked and discarded.
fn learn_all(w: &mut Worker, io: &mut MemoryIo) {
    for (port, mac, ip, gw) in [
        (0, MAC_A, A, GW0_4),
        (0, MAC_A2, A2, GW0_4),
        (1, MAC_B, B, GW1_4),
        (2, MAC_C, C, GW2_4),
    ] {
        let out = run(w, io, port, vec![arp_request(mac, ip, gw)]);
        assert_eq!(out[usize::from(port)].len(), 1, "ARP reply from {gw}");
    }
}

fn eth(frame: &[u8]) -> EthernetFrame<&[u8]> {
    EthernetFrame::new_checked(frame).unwrap()
}

fn ipv4(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let p = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(p.verify_checksum(), "IPv4 header checksum");
    p
}

#[test]
fn gateway_answers_arp_and_ping_from_its_stack() {
    let cell = TableCell::new(policy());
    let mut w = worker(Decision::Table(cell.reader()));
    let mut io = MemoryIo::new(3);

    let out = run(&mut w, &mut io, 0, vec![arp_request(MAC_A, A, GW0_4)]);
    assert!(out[1].is_empty() && out[2].is_empty());
    let [reply] = &out[0][..] else {
        panic!("one ARP reply on port 0: {out:?}")
    };
    assert_eq!(eth(reply).dst_addr(), EthernetAddress(MAC_A));
    assert_eq!(eth(reply).src_addr(), EthernetAddress(GW0));
    assert_eq!(eth(reply).ethertype(), EthernetProtocol::Arp);
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&reply[14..]).unwrap()).unwrap();
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(GW0),
            source_protocol_addr: GW0_4,
            target_hardware_addr: EthernetAddress(MAC_A),
            target_protocol_addr: A,
        }
    );

    let ping = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A, GW0_4)
        .icmp(8, 0)
        .payload_len(56)
        .build();
    let out = run(&mut w, &mut io, 0, vec![ping]);
    let [reply] = &out[0][..] else {
        panic!("one echo reply on port 0: {out:?}")
    };
    assert_eq!(eth(reply).dst_addr(), EthernetAddress(MAC_A));
    let ip = ipv4(reply);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GW0_4, A));
    assert_eq!(ip.next_header(), IpProtocol::Icmp);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
    assert!(icmp.verify_checksum());

    // The gateway's own traffic is neither forwarded nor dropped, and not policed.
    let s = stats(&w);
    assert_eq!(s.rx_packets(), 2);
    assert_eq!(s.total_drops(), 0);
    assert_eq!(s.tx_packets(), 2, "the two answers");
    assert_eq!(
        w.state().flows().len(),
        0,
        "no flow for the gateway's own traffic"
    );
}

#[test]
fn transit_is_policed_then_routed_with_rewritten_macs_and_ttl() {
    let cell = TableCell::new(policy());
    let mut w = worker(Decision::Table(cell.reader()));
    let mut io = MemoryIo::new(3);
    learn_all(&mut w, &mut io);

    // An allowed TCP connection A -> B:80, both directions, through conntrack.
    let mut s = TcpSession::v4(A, 40000, B, 80);
    let syn = to(GW0, s.segment(Side::Client, TcpFlags::SYN, 0));
    let out = run(&mut w, &mut io, 0, vec![syn.clone()]);
    let [fwd] = &out[1][..] else {
        panic!("SYN forwarded on port 1: {out:?}")
    };
    assert!(out[0].is_empty() && out[2].is_empty());
    assert_eq!(
        eth(fwd).dst_addr(),
        EthernetAddress(MAC_B),
        "next hop's MAC"
    );
    assert_eq!(
        eth(fwd).src_addr(),
        EthernetAddress(GW1),
        "egress port's MAC"
    );
    assert_eq!(ipv4(fwd).hop_limit(), ipv4(&syn).hop_limit() - 1, "TTL - 1");
    assert_eq!(&fwd[34..], &syn[34..], "the transport layer is untouched");

    let synack = to(
        GW1,
        s.segment(Side::Server, TcpFlags::SYN | TcpFlags::ACK, 0),
    );
    let out = run(&mut w, &mut io, 1, vec![synack]);
    let [back] = &out[0][..] else {
        panic!("SYN-ACK forwarded on port 0: {out:?}")
    };
    assert_eq!(eth(back).dst_addr(), EthernetAddress(MAC_A));
    assert_eq!(eth(back).src_addr(), EthernetAddress(GW0));
    let data = (0..5)
        .map(|_| {
            to(
                GW0,
                s.segment(Side::Client, TcpFlags::ACK | TcpFlags::PSH, 100),
            )
        })
        .collect();
    let out = run(&mut w, &mut io, 0, data);
    assert_eq!(out[1].len(), 5, "established data forwarded");
    assert_eq!(
        w.state().flows().len(),
        1,
        "one tracked flow for both directions"
    );

    // A denied flow (UDP) is dropped under `policy` after routing.
    let udp = to(GW0, FrameBuilder::new().ipv4(A, B).udp(5000, 9999).build());
    let out = run(&mut w, &mut io, 0, vec![udp]);
    assert!(out.iter().all(Vec::is_empty), "{out:?}");
    assert_eq!(stats(&w).drops(DropReason::Policy), 1);

    // TTL 1 expires at the gateway (before the policy): time exceeded from 10.1.0.1.
    let expiring = to(
        GW0,
        FrameBuilder::new()
            .ipv4(A, B)
            .udp(5000, 9999)
            .ttl(1)
            .build(),
    );
    let out = run(&mut w, &mut io, 0, vec![expiring]);
    assert!(out[1].is_empty());
    let [err] = &out[0][..] else {
        panic!("one time exceeded on port 0: {out:?}")
    };
    assert_eq!(eth(err).dst_addr(), EthernetAddress(MAC_A));
    let ip = ipv4(err);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GW0_4, A));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), Icmpv4Message::TimeExceeded);
    assert_eq!(stats(&w).drops(DropReason::TtlExceeded), 1);

    // An unknown next hop: dropped under `neighbour_unresolved`, ARP request on the egress.
    let unknown = Ipv4Addr::new(10, 2, 0, 99);
    let syn = to(
        GW0,
        FrameBuilder::new()
            .ipv4(A, unknown)
            .tcp(40001, 80, TcpFlags::SYN)
            .build(),
    );
    let out = run(&mut w, &mut io, 0, vec![syn]);
    assert!(out[0].is_empty() && out[2].is_empty());
    let [req] = &out[1][..] else {
        panic!("one ARP request on port 1: {out:?}")
    };
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&req[14..]).unwrap()).unwrap();
    assert!(matches!(
        arp,
        ArpRepr::EthernetIpv4 { operation: ArpOperation::Request, source_protocol_addr, target_protocol_addr, .. }
            if source_protocol_addr == GW1_4 && target_protocol_addr == unknown
    ));
    assert_eq!(stats(&w).drops(DropReason::NeighbourUnresolved), 1);
}

#[test]
fn one_burst_leaves_on_every_egress_port_its_routes_choose() {
    let mut w = worker(Decision::AllowAll);
    let mut io = MemoryIo::new(3);
    learn_all(&mut w, &mut io);
    // Interleaved: to B (port 1), to C (port 2), hairpin to A2 (back out of port 0).
    let dsts = [B, C, A2, B, C, A2, B];
    let frames = dsts
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            to(
                GW0,
                FrameBuilder::new()
                    .ipv4(A, d)
                    .udp(1000, 2000)
                    .seq(i as u64)
                    .build(),
            )
        })
        .collect();
    let out = run(&mut w, &mut io, 0, frames);
    let seqs = |v: &Vec<Vec<u8>>| -> Vec<u64> {
        v.iter()
            .map(|f| septa_dataplane::testgen::sequence_number(f).unwrap())
            .collect()
    };
    assert_eq!(seqs(&out[1]), [0, 3, 6], "to B, in order");
    assert_eq!(seqs(&out[2]), [1, 4], "to C, in order");
    assert_eq!(seqs(&out[0]), [2, 5], "hairpin to A2");
    for f in &out[2] {
        assert_eq!(eth(f).dst_addr(), EthernetAddress(MAC_C));
        assert_eq!(eth(f).src_addr(), EthernetAddress(GW2));
    }
    for f in &out[0] {
        assert_eq!(eth(f).dst_addr(), EthernetAddress(MAC_A2));
        assert_eq!(eth(f).src_addr(), EthernetAddress(GW0));
    }
    let s = stats(&w);
    assert_eq!(s.total_drops(), 0);
}

#[test]
fn deny_all_still_answers_for_the_gateway_but_routes_nothing() {
    let mut w = worker(Decision::DenyAll);
    let mut io = MemoryIo::new(3);
    learn_all(&mut w, &mut io);
    let ping = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A, GW0_4)
        .icmp(8, 0)
        .build();
    let across = to(GW0, FrameBuilder::new().ipv4(A, B).icmp(8, 0).build());
    let out = run(&mut w, &mut io, 0, vec![ping, across]);
    assert_eq!(out[0].len(), 1, "echo reply from the gateway");
    assert!(out[1].is_empty(), "nothing routed under deny-all");
    assert_eq!(stats(&w).drops(DropReason::Policy), 1);
}

#[test]
fn gateway_frames_wait_for_a_transmit_buffer() {
    let mut w = worker(Decision::AllowAll);
    let mut io = MemoryIo::new(3);
    io.set_tx_pool(0, 0);
    let out = run(&mut w, &mut io, 0, vec![arp_request(MAC_A, A, GW0_4)]);
    assert!(out.iter().all(Vec::is_empty), "no buffer: nothing sent yet");
    assert_eq!(stats(&w).total_drops(), 0, "and nothing lost");
    io.set_tx_pool(4, 2048);
    w.poll(&mut io, &mut ());
    let sent = io.take_tx(0);
    assert_eq!(
        sent.len(),
        1,
        "the queued ARP reply goes out once a buffer is there"
    );
    assert_eq!(eth(&sent[0]).ethertype(), EthernetProtocol::Arp);
}
