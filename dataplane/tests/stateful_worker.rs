//! The stateful worker under pressure, over the in-memory backend (the same worker code as the
//! DPDK and pcap paths):
//!
//! * flow-table exhaustion: a SYN flood evicts half-open flows first and never disturbs
//!   established ones; with no half-open flow left to evict, new flows are `flow_table_full`;
//! * swap under load: a sequenced stream runs while another thread publishes two policies
//!   alternately more than 1000 times; no packet is lost or duplicated, every packet's decision
//!   is the old or the new policy's for its flow's original key, existing flows follow each
//!   publish on their next packet, and what both policies allow is never dropped;
//! * fail-closed start, fail-open start, and a policy installed later;
//! * events: flow start/end with per-direction counters, deny and would-deny records.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use septa_classifier::{
    Action, AddrMatch, FlowKey, Mode, PortRange, Prefix, Rule, RuleTable, TableCell, compile,
};
use septa_dataplane::events::{self, EndReason, EventDrain, FlowEvent};
use septa_dataplane::io::PortId;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::parse::ParsedPacket;
use septa_dataplane::testgen::{FrameBuilder, MAC_A, MAC_B, Side, TcpSession, sequence_number};
use septa_dataplane::{
    Bridge, Decision, DropReason, Observer, PolicySlot, RuleDecision, StateConfig, Stats, Verdict,
    Worker, WorkerState,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);

/// Allow TCP and UDP to `port` (rule `base + 1`), TCP/443 (rule `base + 2`) and UDP/53
/// (`base + 3`); deny the rest (`base + 9`, explicit so it has an id).
fn policy(base: u32, port: u16) -> RuleTable {
    let to = |id: u32, proto: u8, p: u16| Rule {
        dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(10, 2, 0, 0), 16)),
        proto: Some(proto),
        dport: PortRange { lo: p, hi: p },
        ..Rule::any(base + id, Action::Allow)
    };
    compile(&[
        to(1, 6, port),
        to(101, 17, port),
        to(2, 6, 443),
        to(3, 17, 53),
        Rule::any(base + 9, Action::Deny),
    ])
    .unwrap()
}

fn worker(decision: Decision, cfg: &StateConfig) -> (Worker, EventDrain) {
    let (sink, source) = events::ring(1 << 16);
    let w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        decision,
        WorkerState::new(cfg, sink).unwrap(),
    );
    (w, EventDrain::new(vec![source]))
}

/// Push `frames` on port 0 and poll until they are all processed; returns the frames port 1
/// transmitted.
fn run(w: &mut Worker, io: &mut MemoryIo, frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    for f in frames {
        io.push_rx(0, f);
    }
    while io.rx_pending(0) > 0 {
        w.poll(io, &mut ());
    }
    io.take_tx(1)
}

fn stats(w: &Worker) -> Stats {
    Stats::collect([&**w.counters()])
}

fn session(cport: u16) -> TcpSession {
    TcpSession::v4(CLIENT, cport, SERVER, 443)
}

#[test]
fn syn_flood_evicts_half_open_first_and_never_established_flows() {
    let cell = TableCell::new(policy(0, 80));
    let mut cfg = StateConfig::new(64);
    cfg.flows.max_half_open = 16;
    let (mut w, _) = worker(Decision::Table(cell.reader()), &cfg);
    let mut io = MemoryIo::new(2);

    // 48 established connections.
    let mut conns: Vec<TcpSession> = (0..48).map(|i| session(30_000 + i)).collect();
    let hs: Vec<Vec<u8>> = conns.iter_mut().flat_map(TcpSession::handshake).collect();
    assert_eq!(run(&mut w, &mut io, hs).len(), 48 * 3);
    assert_eq!(w.state().flows().len(), 48);
    assert_eq!(w.state().flows().half_open_len(), 0);

    // A flood of 1000 SYNs: at most 16 half-open at a time, the oldest evicted.
    let flood: Vec<Vec<u8>> = (0..1000u16)
        .map(|i| session(1000 + i).segment(Side::Client, 0x02, 0))
        .collect();
    assert_eq!(run(&mut w, &mut io, flood).len(), 1000, "SYNs are admitted");
    let f = *w.state().flows().stats();
    assert_eq!(f.evicted_half_open, 1000 - 16, "{f:?}");
    assert_eq!(w.state().flows().len(), 48 + 16);
    assert_eq!(stats(&w).drops(DropReason::FlowTableFull), 0);

    // Every established connection still carries data both ways.
    let data: Vec<Vec<u8>> = conns
        .iter_mut()
        .flat_map(|c| [c.data(Side::Client, 10), c.data(Side::Server, 10)])
        .collect();
    assert_eq!(run(&mut w, &mut io, data).len(), 96, "{}", stats(&w));

    // Complete 16 more handshakes (evicting half-open flows): 64 established, nothing
    // evictable. New flows are now refused, established ones still pass.
    let mut more: Vec<TcpSession> = (0..16).map(|i| session(31_000 + i)).collect();
    for c in &mut more {
        assert_eq!(run(&mut w, &mut io, c.handshake()).len(), 3);
    }
    assert_eq!(w.state().flows().len(), 64);
    assert_eq!(w.state().flows().half_open_len(), 0);
    let flood: Vec<Vec<u8>> = (0..500u16)
        .map(|i| session(5000 + i).segment(Side::Client, 0x02, 0))
        .collect();
    assert!(run(&mut w, &mut io, flood).is_empty());
    assert_eq!(stats(&w).drops(DropReason::FlowTableFull), 500);
    let data: Vec<Vec<u8>> = conns
        .iter_mut()
        .chain(more.iter_mut())
        .map(|c| c.data(Side::Server, 1))
        .collect();
    assert_eq!(run(&mut w, &mut io, data).len(), 64);
    let s = stats(&w);
    assert_eq!(s.total_drops(), 500, "only the refused SYNs: {s}");
}

/// The same flood with a feature sampler that samples every new flow: each evicted half-open
/// flow gives its sample slot back (`Sampler::evicted`, the only reclaim of an evicted flow's
/// slot: an eviction has no expiry callback), so the slab never fills and every new flow is
/// sampled; only the flows still in the table hold slots.
#[test]
fn a_syn_flood_under_the_half_open_cap_gives_sample_slots_back() {
    use septa_dataplane::sample::{Sampler, SamplerConfig};

    let cell = TableCell::new(policy(0, 80));
    let mut cfg = StateConfig::new(64);
    cfg.flows.max_half_open = 8;
    let (mut w, _) = worker(Decision::Table(cell.reader()), &cfg);
    let (tx, _records) = septa_features::spread::sample_channel(4096, 64);
    let mut sc = SamplerConfig::new(16);
    sc.one_in = 1;
    w.state_mut().set_sampler(Sampler::new(7, sc, tx).unwrap());
    let mut io = MemoryIo::new(2);

    // Two established connections, sampled too, and kept: they are never evicted.
    let mut conns: Vec<TcpSession> = (0..2).map(|i| session(30_000 + i)).collect();
    let hs: Vec<Vec<u8>> = conns.iter_mut().flat_map(TcpSession::handshake).collect();
    assert_eq!(run(&mut w, &mut io, hs).len(), 6);

    let flood: Vec<Vec<u8>> = (0..200u16)
        .map(|i| session(1000 + i).segment(Side::Client, 0x02, 0))
        .collect();
    assert_eq!(run(&mut w, &mut io, flood).len(), 200, "SYNs are admitted");
    let f = *w.state().flows().stats();
    assert_eq!(f.evicted_half_open, 200 - 8, "{f:?}");
    assert_eq!(w.state().flows().len(), 2 + 8);
    let smp = w.state().sampler().unwrap();
    let c = smp.counters();
    assert_eq!(c.sampled, 2 + 200, "{c:?}");
    assert_eq!(c.slab_full, 0, "{c:?}");
    assert_eq!(c.evicted, 200 - 8, "{c:?}");
    assert_eq!(smp.active(), 2 + 8, "only live flows hold sample slots");

    // The established connections still pass, both ways.
    let data: Vec<Vec<u8>> = conns
        .iter_mut()
        .flat_map(|c| [c.data(Side::Client, 10), c.data(Side::Server, 10)])
        .collect();
    assert_eq!(run(&mut w, &mut io, data).len(), 4, "{}", stats(&w));
}

/// Records every packet's verdict and decision in receive order.
#[derive(Default)]
struct Log(Vec<(Verdict, Option<RuleDecision>, FlowKey)>);

impl Observer for Log {
    fn packet(
        &mut self,
        _: PortId,
        _: usize,
        p: Option<&ParsedPacket>,
        v: Verdict,
        d: Option<&RuleDecision>,
    ) {
        self.0
            .push((v, d.copied(), p.map(|p| p.key).unwrap_or_default()));
    }
}

#[test]
fn two_policies_swapped_over_a_thousand_times_under_load() {
    const SWAPS: u64 = 1200;
    // A allows port 80, B port 81; both allow TCP/443 and UDP/53.
    let (a, b) = (policy(0, 80), policy(1000, 81));
    let cell = TableCell::new(a.clone());
    let (mut w, _) = worker(Decision::Table(cell.reader()), &StateConfig::new(1024));
    let mut io = MemoryIo::new(2);

    // Flows: an established TCP/443 connection (allowed by both), UDP/53 (both), UDP to 80
    // and to 81 (one policy each), each with traffic both ways.
    let mut tcp = session(40_000);
    for f in run(&mut w, &mut io, tcp.handshake()) {
        assert!(sequence_number(&f).is_some());
    }
    let udp = |sport: u16, dport: u16, reply: bool, seq: u64| {
        let b = if reply {
            FrameBuilder::new()
                .macs(MAC_B, MAC_A)
                .ipv4(SERVER, CLIENT)
                .udp(dport, sport)
        } else {
            FrameBuilder::new().ipv4(CLIENT, SERVER).udp(sport, dport)
        };
        b.seq(seq).build()
    };

    let bursts = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (cell, bursts, done) = (Arc::clone(&cell), Arc::clone(&bursts), Arc::clone(&done));
        let published = Arc::clone(&published);
        let (a, b) = (a.clone(), b.clone());
        std::thread::spawn(move || {
            for i in 0..SWAPS {
                // Publish `i` once the worker has done `i + 2` bursts; the worker starts burst
                // `k + 2` only after `k` publishes. So exactly one publish lands between two
                // consecutive bursts, from this thread while the worker thread runs, and
                // neither side can wait for the other forever.
                while bursts.load(Ordering::Acquire) < i + 2 {
                    std::thread::yield_now();
                }
                cell.publish(if i % 2 == 0 { b.clone() } else { a.clone() });
                published.store(i + 1, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        })
    };

    let mut log = Log::default();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut seq = 1_000u64;
    let mut polls = 0u64;
    while !done.load(Ordering::Acquire) || polls < 10 {
        // One burst: 8 packets of each of the four flows, interleaved, both directions.
        let mut burst = Vec::with_capacity(32);
        for k in 0..8 {
            let reply = k % 2 == 1;
            let side = if reply { Side::Server } else { Side::Client };
            burst.push(tcp.data(side, 0));
            burst.push(udp(50_000, 53, reply, seq));
            burst.push(udp(50_001, 80, reply, seq + 1));
            burst.push(udp(50_002, 81, reply, seq + 2));
            seq += 3;
        }
        for f in &burst {
            io.push_rx(0, f.clone());
        }
        sent.extend(burst);
        while io.rx_pending(0) > 0 {
            w.poll(&mut io, &mut log);
        }
        polls += 1;
        bursts.store(polls, Ordering::Release);
        // Stay at most one burst ahead of the publisher (see above).
        while !done.load(Ordering::Acquire) && polls > published.load(Ordering::Acquire) + 1 {
            std::thread::yield_now();
        }
    }
    publisher.join().unwrap();
    let out = io.take_tx(1);

    // No loss, no duplication, order kept: port 1 sent exactly the frames judged `forward`.
    assert_eq!(log.0.len(), sent.len(), "one verdict per packet");
    let forwarded: Vec<&Vec<u8>> = sent
        .iter()
        .zip(&log.0)
        .filter(|(_, (v, _, _))| *v == Verdict::Forward)
        .map(|(f, _)| f)
        .collect();
    assert_eq!(out.len(), forwarded.len());
    assert!(out.iter().zip(&forwarded).all(|(o, f)| o == *f));

    // Every decision is A's or B's for the flow's original key, and the verdict follows it.
    let mut flips = 0;
    let mut last_rule_80 = None;
    for (v, d, key) in &log.0 {
        let d = d.expect("every IP packet has a decision");
        // Originators use port 40000 (TCP) and 50000.. (UDP).
        let mut orig = if key.sport == 40_000 || key.sport >= 50_000 {
            *key
        } else {
            key.reversed()
        };
        orig.in_port = 0;
        let (da, db) = (a.classify(&orig), b.classify(&orig));
        assert!(
            d == da || d == db,
            "{key:?}: {d:?} is neither {da:?} nor {db:?}"
        );
        let allowed = d.action == Action::Allow;
        assert_eq!(*v == Verdict::Forward, allowed, "{key:?} {d:?} {v:?}");
        if da == db {
            assert_eq!(*v, Verdict::Forward, "allowed by both: never dropped");
        }
        if orig.dport == 80 && orig.proto == 17 {
            let r = d.rule.map(|r| r.0);
            if last_rule_80.is_some_and(|l| l != r) {
                flips += 1;
            }
            last_rule_80 = Some(r);
        }
    }
    // One publish between consecutive bursts: the flow's rule changes at every burst.
    assert!(
        flips >= SWAPS - 2,
        "the UDP/80 flow followed the publishes: {flips} flips over {SWAPS} swaps"
    );
    let s = stats(&w);
    assert_eq!(s.drops(DropReason::Policy), s.total_drops(), "{s}");
    assert!(s.drops(DropReason::Policy) > 0);
    assert_eq!(cell.current().epoch(), 1 + SWAPS);
}

#[test]
fn a_publish_re_evaluates_existing_flows_on_their_next_packet() {
    let cell = TableCell::new(policy(0, 80));
    let (mut w, _) = worker(Decision::Table(cell.reader()), &StateConfig::new(64));
    let mut io = MemoryIo::new(2);
    let mut c = TcpSession::v4(CLIENT, 40_400, SERVER, 80);
    assert_eq!(run(&mut w, &mut io, c.handshake()).len(), 3);
    for round in 0..20 {
        let allowed = round % 2 == 0;
        if round > 0 {
            cell.publish(if allowed {
                policy(0, 80)
            } else {
                policy(1000, 81)
            });
        }
        let out = run(
            &mut w,
            &mut io,
            vec![c.data(Side::Client, 1), c.data(Side::Server, 1)],
        );
        assert_eq!(out.len(), if allowed { 2 } else { 0 }, "round {round}");
    }
    assert_eq!(stats(&w).drops(DropReason::Policy), 20);
    assert_eq!(w.state().flows().len(), 1, "a denied flow keeps its entry");
}

#[test]
fn fail_closed_until_a_policy_is_installed_then_flows_are_judged() {
    let slot = PolicySlot::new();
    let (mut w, mut drain) = worker(Decision::Awaiting(slot.clone()), &StateConfig::new(64));
    let mut io = MemoryIo::new(2);
    let mut c = session(40_100);
    assert!(run(&mut w, &mut io, c.handshake()[..1].to_vec()).is_empty());
    assert_eq!(stats(&w).drops(DropReason::NoPolicy), 1);
    let mut denied = 0;
    drain.drain(usize::MAX, |_, ev| {
        if let FlowEvent::Deny(d) = ev {
            assert_eq!(d.reason, DropReason::NoPolicy);
            denied += 1;
        }
    });
    assert_eq!(denied, 1);
    // ARP still passes.
    let arp = septa_dataplane::testgen::arp_request(MAC_A, CLIENT, SERVER);
    assert_eq!(run(&mut w, &mut io, vec![arp]).len(), 1);

    assert!(slot.install(TableCell::new(policy(0, 80))));
    let mut c = session(40_101);
    assert_eq!(run(&mut w, &mut io, c.handshake()).len(), 3);
}

#[test]
fn fail_open_admits_then_re_evaluates_when_the_policy_arrives() {
    let slot = PolicySlot::new();
    let mut cfg = StateConfig::new(64);
    cfg.fail_open = true;
    let (mut w, _) = worker(Decision::Awaiting(slot.clone()), &cfg);
    let mut io = MemoryIo::new(2);
    // TCP/22 is not allowed by the policy to come, but admitted while there is none.
    let mut ssh = TcpSession::v4(CLIENT, 40_200, SERVER, 22);
    let mut web = session(40_201);
    assert_eq!(run(&mut w, &mut io, ssh.handshake()).len(), 3);
    assert_eq!(run(&mut w, &mut io, web.handshake()).len(), 3);
    slot.install(TableCell::new(policy(0, 80)));
    assert!(run(&mut w, &mut io, vec![ssh.data(Side::Client, 5)]).is_empty());
    assert_eq!(
        run(&mut w, &mut io, vec![web.data(Side::Client, 5)]).len(),
        1
    );
    assert_eq!(stats(&w).drops(DropReason::Policy), 1);
}

#[test]
fn events_report_flow_start_end_with_counters_and_denies() {
    let rules = [
        Rule {
            dst: AddrMatch::prefix(Prefix::v4(SERVER, 32)),
            proto: Some(6),
            dport: PortRange { lo: 443, hi: 443 },
            ..Rule::any(1, Action::Allow)
        },
        Rule {
            dport: PortRange { lo: 53, hi: 53 },
            mode: Mode::Monitor,
            ..Rule::any(2, Action::Deny)
        },
        Rule::any(3, Action::Deny),
    ];
    let cell = TableCell::new(compile(&rules).unwrap());
    let (mut w, mut drain) = worker(Decision::Table(cell.reader()), &StateConfig::new(64));
    let mut io = MemoryIo::new(2);
    w.state_mut().set_now(1_000);
    let mut c = session(40_300);
    let mut frames = c.handshake();
    frames.push(c.data(Side::Client, 88));
    frames.push(c.data(Side::Server, 188));
    frames.extend(c.close(Side::Client));
    frames.push(
        FrameBuilder::new()
            .ipv4(CLIENT, SERVER)
            .udp(5000, 53)
            .build(),
    );
    frames.push(
        FrameBuilder::new()
            .ipv4(CLIENT, SERVER)
            .udp(5000, 54)
            .build(),
    );
    let denied_ip_bytes = septa_dataplane::testgen::ip_packet(frames.last().unwrap())
        .unwrap()
        .len();
    assert_eq!(run(&mut w, &mut io, frames).len(), 10);
    // TIME_WAIT is 120 s; the UDP flow's 30 s. Age them out (idle polls drive the wheel).
    w.state_mut().set_now(1_000 + 121 * 1_000_000);
    for _ in 0..10 {
        w.poll(&mut io, &mut ());
    }
    let mut evs = Vec::new();
    drain.drain(usize::MAX, |_, e| evs.push(e));
    let starts: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Start(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "{evs:#?}");
    assert_eq!(starts[0].decision.rule, Some(1));
    assert_eq!(starts[0].key.dport, 443);
    let ends: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            FlowEvent::End(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 2, "{evs:#?}");
    let tcp_end = ends.iter().find(|e| e.key.proto == 6).unwrap();
    assert_eq!(tcp_end.reason, EndReason::Closed);
    assert_eq!(tcp_end.packets, [5, 4]);
    assert_eq!(tcp_end.key.sport, 40_300);
    let udp_end = ends.iter().find(|e| e.key.proto == 17).unwrap();
    assert_eq!(udp_end.reason, EndReason::Timeout);
    assert_eq!(udp_end.packets, [1, 0]);
    let denies: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Deny(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(denies.len(), 2, "{evs:#?}");
    assert!(denies[0].would_deny && denies[0].decision.rule == Some(2));
    assert_eq!(denies[0].reason, DropReason::Policy);
    assert!(!denies[1].would_deny && denies[1].decision.rule == Some(3));
    assert_eq!(denies[1].decision.epoch, 1);
    // Deny records carry the refused packet's size.
    assert_eq!(denies[1].bytes as usize, denied_ip_bytes);
    assert!(denies[0].bytes > 28, "{:?}", denies[0]);
    assert_eq!(drain.lost(), 0);
}
