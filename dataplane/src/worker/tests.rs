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
    fn packet(
        &mut self,
        port: PortId,
        len: usize,
        p: Option<&ParsedPacket>,
        v: Verdict,
        _: Option<&RuleDecision>,
    ) {
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
    let counters = Arc::clone(w.counters());
    std::thread::scope(|s| {
        s.spawn(|| {
            // Stop once the worker has forwarded the ring's packets at least once (a fixed
            // sleep raced a descheduled worker); the bound only keeps a broken loop from
            // hanging the test, the assertions below then fail.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while Stats::collect([&*counters]).ports[1].tx_packets < 8
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        w.run(&mut io, &stop);
    });
    assert!(counters.is_stopped(), "run returned after the stop");
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

mod table {
    //! The rule-table decision: one classify per burst, verdicts per action and mode.

    use std::net::{Ipv4Addr, Ipv6Addr};

    use septa_classifier::{
        Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, SourceRef, TableCell, compile,
    };

    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DENIED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const MONITORED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
    const PLC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
    const C6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const DNS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);

    fn to(id: u32, action: Action, mode: Mode, dst: Prefix) -> Rule {
        Rule {
            dst: AddrMatch::prefix(dst),
            mode,
            source: SourceRef(u64::from(id) * 10),
            ..Rule::any(id, action)
        }
    }

    /// allow CLIENT→WEB tcp/80; deny →DENIED; monitor-deny →MONITORED; inspect →PLC tcp/502;
    /// allow IPv6 →DNS6 udp/53; everything else falls to the default deny.
    fn rules() -> Vec<Rule> {
        vec![
            Rule {
                src: AddrMatch::prefix(Prefix::v4(CLIENT, 32)),
                proto: Some(6),
                dport: PortRange { lo: 80, hi: 80 },
                ..to(1, Action::Allow, Mode::Enforce, Prefix::v4(WEB, 32))
            },
            to(2, Action::Deny, Mode::Enforce, Prefix::v4(DENIED, 32)),
            to(3, Action::Deny, Mode::Monitor, Prefix::v4(MONITORED, 32)),
            Rule {
                proto: Some(6),
                dport: PortRange { lo: 502, hi: 502 },
                ..to(
                    4,
                    Action::Inspect(HookId(9)),
                    Mode::Enforce,
                    Prefix::v4(PLC, 32),
                )
            },
            Rule {
                proto: Some(17),
                dport: PortRange { lo: 53, hi: 53 },
                ..to(5, Action::Allow, Mode::Enforce, Prefix::v6(DNS6, 128))
            },
        ]
    }

    fn table_worker() -> (Arc<TableCell>, Worker) {
        let cell = TableCell::new(compile(&rules()).unwrap());
        let w = worker(Decision::Table(cell.reader()));
        (cell, w)
    }

    fn v4(dst: Ipv4Addr, dport: u16, seq: u64) -> Vec<u8> {
        FrameBuilder::new()
            .ipv4(CLIENT, dst)
            .tcp(40000, dport, 0x02)
            .seq(seq)
            .build()
    }

    fn v6(dst: Ipv6Addr, dport: u16, seq: u64) -> Vec<u8> {
        FrameBuilder::new()
            .ipv6(C6, dst)
            .udp(40000, dport)
            .seq(seq)
            .build()
    }

    #[derive(Default)]
    struct Rules(Vec<(Verdict, Option<u32>)>);

    impl Observer for Rules {
        fn packet(
            &mut self,
            _: PortId,
            _: usize,
            _: Option<&ParsedPacket>,
            v: Verdict,
            d: Option<&RuleDecision>,
        ) {
            self.0.push((v, d.and_then(|d| d.rule).map(|r| r.0)));
        }
    }

    #[test]
    fn each_action_and_mode_gets_its_verdict_v4_v6_and_arp() {
        let frames = [
            v4(WEB, 80, 0),                                // rule 1: allow
            v4(DENIED, 80, 1),                             // rule 2: deny
            v4(MONITORED, 22, 2),                          // rule 3: monitor deny
            v4(PLC, 502, 3),                               // rule 4: inspect
            v4(WEB, 443, 4),                               // default deny
            v6(DNS6, 53, 5),                               // rule 5: allow (IPv6)
            v6(DNS6, 54, 6),                               // default deny (IPv6)
            arp_request(MAC_A, CLIENT, WEB),               // ARP passes
            FrameBuilder::new().ethertype(0x8863).build(), // PPPoE: dropped
        ];
        let mut io = MemoryIo::new(2);
        frames.iter().for_each(|f| io.push_rx(0, f.clone()));
        let (_cell, mut w) = table_worker();
        let mut rec = Rules::default();
        assert_eq!(w.poll(&mut io, &mut rec), frames.len());
        let policy = Verdict::Drop(DropReason::Policy);
        assert_eq!(
            rec.0,
            [
                (Verdict::Forward, Some(1)),
                (policy, Some(2)),
                (Verdict::Forward, Some(3)),
                (Verdict::Drop(DropReason::L7Unavailable), Some(4)),
                (policy, None),
                (Verdict::Forward, Some(5)),
                (policy, None),
                (Verdict::Forward, None),
                (policy, None),
            ]
        );
        let out = io.take_tx(1);
        let want: Vec<_> = [0, 2, 5, 7].map(|i| frames[i].clone()).into();
        assert_eq!(out, want);
        let s = stats(&w);
        assert_eq!(s.drops(DropReason::Policy), 4);
        assert_eq!(s.drops(DropReason::L7Unavailable), 1);
        assert_eq!(s.would_deny, 1, "monitor mode forwards and counts");
        assert_eq!(s.non_ip_forwarded, 1);
        assert_eq!(s.total_drops(), 5);
    }

    #[test]
    fn inspect_in_monitor_mode_forwards_and_counts_would_deny() {
        let mut r = rules();
        r[3].mode = Mode::Monitor;
        let cell = TableCell::new(compile(&r).unwrap());
        let mut w = worker(Decision::Table(cell.reader()));
        let mut io = MemoryIo::new(2);
        let frame = v4(PLC, 502, 0);
        io.push_rx(0, frame.clone());
        w.poll(&mut io, &mut ());
        assert_eq!(io.take_tx(1), vec![frame], "monitor mode never drops");
        assert_eq!(stats(&w).drops(DropReason::L7Unavailable), 0);
        assert_eq!(stats(&w).would_deny, 1);
    }

    #[test]
    fn unpaired_port_and_malformed_frames_are_not_classified() {
        let mut io = MemoryIo::new(3);
        io.push_rx(2, v4(WEB, 80, 0));
        io.push_rx(0, vec![0u8; 10]);
        let cell = TableCell::new(compile(&rules()).unwrap());
        let mut w = Worker::new(Bridge::consecutive_pairs(3), Decision::Table(cell.reader()));
        let mut rec = Rules::default();
        w.poll(&mut io, &mut rec);
        assert_eq!(
            rec.0,
            [
                (Verdict::Drop(DropReason::Truncated), None),
                (Verdict::Drop(DropReason::NoPeerPort), None),
            ]
        );
    }

    #[test]
    fn a_published_table_applies_from_the_next_burst_and_the_old_one_is_released() {
        let (cell, mut w) = table_worker();
        let mut io = MemoryIo::new(2);
        io.push_rx(0, v4(DENIED, 80, 0));
        w.poll(&mut io, &mut ());
        assert!(io.take_tx(1).is_empty());
        // Now everything is allowed.
        cell.publish(compile(&[Rule::any(1, Action::Allow)]).unwrap());
        assert_eq!(cell.reclaim(), 1, "the worker still holds the old table");
        io.push_rx(0, v4(DENIED, 80, 1));
        w.poll(&mut io, &mut ());
        assert_eq!(io.take_tx(1).len(), 1);
        assert_eq!(cell.reclaim(), 0, "released at the worker's next burst");
        // An idle poll is a quiescent point too.
        cell.publish(compile(&[Rule::any(1, Action::Deny)]).unwrap());
        assert_eq!(w.poll(&mut io, &mut ()), 0);
        assert_eq!(cell.reclaim(), 0, "released by an idle poll");
    }

    #[test]
    fn full_burst_of_mixed_families_matches_one_by_one_classification() {
        let table = compile(&rules()).unwrap();
        let frames: Vec<_> = (0..32u64)
            .map(|i| match i % 4 {
                0 => v4(WEB, 80, i),
                1 => v6(DNS6, 53, i),
                2 => v4(PLC, 502, i),
                _ => v4(DENIED, 1, i),
            })
            .collect();
        let mut io = MemoryIo::new(2);
        frames.iter().for_each(|f| io.push_rx(0, f.clone()));
        let cell = TableCell::new(table.clone());
        let mut w = worker(Decision::Table(cell.reader()));
        let mut rec = Rules::default();
        w.poll(&mut io, &mut rec);
        for (f, (_, rule)) in frames.iter().zip(&rec.0) {
            let mut key = *crate::parse::parse(f).unwrap().flow_key().unwrap();
            key.in_port = 0;
            assert_eq!(*rule, table.classify(&key).rule.map(|r| r.0));
        }
    }
}

/// A read-only Modbus conduit through the stream state and [`judge_l7`]: reads forward in both
/// modes, a write drops as `l7_denied` in enforce mode and is forwarded as a would-deny in
/// monitor mode, garbage on the conduit is `l7_malformed`.
#[test]
fn l7_conduit_verdicts_map_to_worker_verdicts() {
    use crate::l7::samples::{modbus_request, tls_client_hello};
    use crate::l7::{L7Counters, L7State, Side, Transport};
    use septa_l7::{L7Constraint, L7Proto, L7Verdict, Sender, functions::resolve};

    let conduit = L7Constraint {
        functions: resolve(L7Proto::Modbus, "read_*")
            .unwrap()
            .into_iter()
            .collect(),
        ..L7Constraint::allow_all(L7Proto::Modbus)
    };
    let mut k = L7Counters::boxed();
    let mut inspect = |payload: &[u8]| {
        let mut st = L7State::new(L7Proto::Modbus);
        st.inspect(
            Side::Client,
            Transport::Tcp,
            payload,
            &conduit,
            Sender::default(),
            &mut k,
        )
    };
    let read = inspect(&modbus_request(1, 1, 3, 0, 10));
    let write = inspect(&modbus_request(2, 1, 6, 7, 1));
    let garbage = inspect(&tls_client_hello("plc.example"));
    assert_eq!(read, L7Verdict::Allow);
    let L7Verdict::Deny(w) = write else {
        panic!("write passed: {write:?}")
    };
    assert_eq!(
        w.to_string(),
        "modbus function 6 (write_single_register) not allowed"
    );

    for mode in [Mode::Enforce, Mode::Monitor] {
        assert_eq!(judge_l7(mode, &read), (Verdict::Forward, None));
    }
    assert_eq!(
        judge_l7(Mode::Enforce, &write),
        (Verdict::Drop(DropReason::L7Denied), None)
    );
    assert_eq!(
        judge_l7(Mode::Monitor, &write),
        (Verdict::Forward, Some(DropReason::L7Denied))
    );
    let malformed = septa_l7::DenyReason::Malformed {
        proto: L7Proto::Modbus,
    };
    assert_eq!(l7_drop_reason(&malformed), DropReason::L7Malformed);
    assert_eq!(
        judge_l7(Mode::Enforce, &garbage),
        (Verdict::Drop(DropReason::L7Malformed), None),
        "{garbage:?}"
    );
    assert_eq!(
        DropReason::from_name("l7_denied"),
        Some(DropReason::L7Denied)
    );
    assert_eq!(
        DropReason::from_name("l7_malformed"),
        Some(DropReason::L7Malformed)
    );
}

#[test]
fn every_poll_counts_busy_or_idle_and_run_marks_the_worker_stopped() {
    let mut io = MemoryIo::new(2);
    io.push_rx(0, tcp(0));
    let mut w = worker(Decision::AllowAll);
    assert_eq!(w.counters().polls(), 0);
    w.poll(&mut io, &mut ());
    w.poll(&mut io, &mut ());
    w.poll(&mut io, &mut ());
    assert_eq!(w.counters().polls(), 3, "idle polls count too");
    assert!(!w.counters().is_stopped());
    let stop = AtomicBool::new(true);
    w.run(&mut io, &stop);
    assert!(w.counters().is_stopped(), "run marks its return");
    assert_eq!(
        w.counters().polls(),
        3,
        "a stop set before the loop polls nothing"
    );
}
