//! Worker tests over the memory backend.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;

use super::*;
use crate::counters::Stats;
use crate::io::memory::MemoryIo;
use crate::testgen::{FrameBuilder, MAC_A, MAC_B, arp_request, sequence_number};

const A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn tcp(seq: u64) -> Vec<u8> {
    FrameBuilder::new()
        .ipv4(A4, B4)
        .tcp(1024, 502, 0x18)
        .seq(seq)
        .build()
}

fn reply(seq: u64) -> Vec<u8> {
    FrameBuilder::new()
        .macs(MAC_B, MAC_A)
        .ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED)
        .udp(53, 5353)
        .seq(seq)
        .build()
}

fn worker(decision: Decision) -> Worker {
    Worker::new(Bridge::new(2, &[(0, 1)]).unwrap(), decision)
}

fn stats(w: &Worker) -> Stats {
    Stats::collect([&**w.counters()])
}

#[derive(Default)]
struct Recorder(Vec<(PortId, usize, Option<FlowKey>, Verdict)>, usize);

use septa_classifier::FlowKey;

impl Observer for Recorder {
    fn packet(&mut self, port: PortId, len: usize, p: Option<&ParsedPacket>, v: Verdict) {
        self.0
            .push((port, len, p.and_then(|p| p.flow_key().copied()), v));
    }
    fn tx_failed(&mut self, _: PortId, n: usize) {
        self.1 += n;
    }
}

#[test]
fn allow_all_forwards_identical_bytes_both_ways() {
    let mut io = MemoryIo::new(2);
    let a: Vec<_> = (0..40).map(tcp).collect();
    let b: Vec<_> = (0..5).map(reply).collect();
    a.iter().for_each(|f| io.push_rx(0, f.clone()));
    b.iter().for_each(|f| io.push_rx(1, f.clone()));
    let mut w = worker(Decision::AllowAll);
    let mut rec = Recorder::default();
    assert_eq!(w.poll(&mut io, &mut rec), 32 + 5, "one burst per port");
    assert_eq!(w.poll(&mut io, &mut rec), 8);
    assert_eq!(w.poll(&mut io, &mut rec), 0);
    assert_eq!(io.take_tx(1), a, "A→B unchanged and in order");
    assert_eq!(io.take_tx(0), b, "B→A unchanged and in order");
    let s = stats(&w);
    assert_eq!((s.ports[0].rx_packets, s.ports[1].tx_packets), (40, 40));
    assert_eq!((s.ports[1].rx_packets, s.ports[0].tx_packets), (5, 5));
    assert_eq!(
        s.ports[1].tx_bytes,
        a.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(s.total_drops(), 0);
    assert_eq!(rec.0.len(), 45);
    let (port, _, key, v) = rec.0[0];
    assert_eq!((port, v), (0, Verdict::Forward));
    assert_eq!(key.unwrap().in_port, 0);
    assert_eq!(
        rec.0
            .iter()
            .filter(|r| r.2.is_some_and(|k| k.in_port == 1))
            .count(),
        5
    );
}

#[test]
fn deny_all_drops_ip_counts_policy_and_passes_arp() {
    let mut io = MemoryIo::new(2);
    io.push_rx(0, tcp(1));
    io.push_rx(0, arp_request(MAC_A, A4, B4));
    io.push_rx(1, reply(2));
    io.push_rx(1, FrameBuilder::new().ethertype(0x8863).build()); // PPPoE discovery
    let mut w = worker(Decision::DenyAll);
    w.poll(&mut io, &mut ());
    assert_eq!(io.take_tx(1), vec![arp_request(MAC_A, A4, B4)]);
    assert!(io.take_tx(0).is_empty());
    let s = stats(&w);
    assert_eq!(s.drops(DropReason::Policy), 3);
    assert_eq!(s.non_ip_forwarded, 1);
    assert_eq!(s.total_drops(), 3);
}

#[test]
fn allow_all_forwards_non_ip_and_counts_it() {
    let mut io = MemoryIo::new(2);
    io.push_rx(0, arp_request(MAC_A, A4, B4));
    io.push_rx(0, FrameBuilder::new().ethertype(0x88cc).seq(7).build());
    let mut w = worker(Decision::AllowAll);
    w.poll(&mut io, &mut ());
    let out = io.take_tx(1);
    assert_eq!(out.len(), 2);
    assert_eq!(sequence_number(&out[1]), Some(7));
    assert_eq!(stats(&w).non_ip_forwarded, 2);
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let mut io = MemoryIo::new(2);
    let mut bad_sum = tcp(1);
    bad_sum[24] ^= 1;
    io.push_rx(0, vec![0u8; 10]); // truncated Ethernet
    io.push_rx(0, tcp(2)[..30].to_vec()); // truncated IPv4
    io.push_rx(0, bad_sum);
    io.push_rx(0, tcp(3));
    let mut w = worker(Decision::AllowAll);
    let mut rec = Recorder::default();
    w.poll(&mut io, &mut rec);
    assert_eq!(io.take_tx(1).len(), 1);
    let s = stats(&w);
    assert_eq!(s.drops(DropReason::Truncated), 2);
    assert_eq!(s.drops(DropReason::Ipv4Checksum), 1);
    assert_eq!(s.ports[0].rx_packets, 4);
    assert_eq!(
        rec.0[0],
        (0, 10, None, Verdict::Drop(DropReason::Truncated))
    );
}

#[test]
fn tx_full_is_counted() {
    let mut io = MemoryIo::new(2);
    (0..10).for_each(|i| io.push_rx(0, tcp(i)));
    io.set_tx_limit(1, 4);
    let mut w = worker(Decision::AllowAll);
    let mut rec = Recorder::default();
    w.poll(&mut io, &mut rec);
    let sent = io.take_tx(1);
    assert_eq!(sent.len(), 4);
    assert_eq!(
        sequence_number(&sent[3]),
        Some(3),
        "the front of the burst is sent"
    );
    let s = stats(&w);
    assert_eq!(s.drops(DropReason::TxFull), 6);
    assert_eq!(s.ports[1].tx_packets, 4);
    assert_eq!(
        s.ports[1].tx_bytes,
        sent.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(rec.1, 6);
}

#[test]
fn unpaired_port_drops_with_no_peer() {
    let mut io = MemoryIo::new(3);
    io.push_rx(2, tcp(1));
    let mut w = Worker::new(Bridge::consecutive_pairs(3), Decision::AllowAll);
    w.poll(&mut io, &mut ());
    assert_eq!(stats(&w).drops(DropReason::NoPeerPort), 1);
}

#[test]
fn bridge_validation() {
    assert_eq!(Bridge::new(2, &[(0, 0)]), Err(BridgeError::SelfPair(0)));
    assert_eq!(
        Bridge::new(3, &[(0, 1), (1, 2)]),
        Err(BridgeError::Duplicate(1))
    );
    assert_eq!(
        Bridge::new(2, &[(0, 2)]),
        Err(BridgeError::NoSuchPort { port: 2, count: 2 })
    );
    let b = Bridge::consecutive_pairs(4);
    assert_eq!(
        (b.peer(0), b.peer(1), b.peer(2), b.peer(3), b.peer(9)),
        (Some(1), Some(0), Some(3), Some(2), None)
    );
}

#[test]
fn run_stops_when_asked() {
    let mut io = MemoryIo::new(2);
    io.ring(0, 1, 64);
    (0..8).for_each(|i| io.push_rx(0, tcp(i)));
    let stop = AtomicBool::new(false);
    let mut w = worker(Decision::AllowAll);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        w.run(&mut io, &stop);
    });
    assert!(stats(&w).ports[1].tx_packets >= 8);
    assert_eq!(io.rx_pending(0), 8, "ring mode conserves packets");
}

#[test]
fn demo_traffic_parses_and_forwards() {
    let frames = crate::testgen::demo_traffic();
    let mut io = MemoryIo::new(2);
    frames.iter().for_each(|f| io.push_rx(0, f.clone()));
    let mut w = worker(Decision::AllowAll);
    w.poll(&mut io, &mut ());
    assert_eq!(io.take_tx(1), frames);
    assert_eq!(stats(&w).total_drops(), 0);
}

#[test]
fn mixed_frames_have_distinct_flows() {
    use std::collections::HashSet;
    let keys: HashSet<_> = (0..400)
        .map(|seq| {
            *crate::parse::parse(&crate::testgen::mixed_frame(100, seq))
                .unwrap()
                .flow_key()
                .unwrap()
        })
        .collect();
    assert_eq!(keys.len(), 100);
    let f = crate::testgen::mixed_frame(100, 7);
    assert_eq!(sequence_number(&f), Some(7));
}
