//! A burst is processed exactly as its packets would be one at a time.
//!
//! The stateful worker runs the leading packets of established flows through conntrack with
//! nothing staged (pass 0), stages the rest (lookups, one classification call, then conntrack
//! in receive order) and takes a fast path for established packets in pass 3. None of that may
//! change a result: the same interleaved stream (allowed and denied TCP sessions with data,
//! retransmissions, out-of-window RSTs, FIN closes and reopening SYNs; UDP queries and
//! replies; ICMP echo; a fragmented datagram; a few malformed frames) is run through a worker
//! with the direct pass switched off, one packet per poll (the reference: only the staged
//! passes, one packet at a time), and through workers in full bursts and one packet per poll
//! with the direct pass on and off. Every forwarded frame, every observed verdict, every
//! counter, every event and the flow table must be the same.

use std::net::{Ipv4Addr, Ipv6Addr};

use septa_classifier::{
    Action, AddrMatch, FlowKey, PortRange, Prefix, Rule, RuleTable, TableCell, compile,
};
use septa_dataplane::events::{self, EventDrain, FlowEvent};
use septa_dataplane::io::PortId;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::parse::{ParsedPacket, TcpFlags};
use septa_dataplane::testgen::{FrameBuilder, Side, TcpSession};
use septa_dataplane::{
    Bridge, Decision, DropReason, Observer, RuleDecision, StateConfig, Stats, Verdict, Worker,
    WorkerState,
};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 1);

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 + i)
}

/// Allow TCP/443, UDP/53 and ICMP to the server's /16 and TCP/443 and UDP/53 to the IPv6
/// server's /64; deny the rest.
fn policy() -> RuleTable {
    let to = |id: u32, proto: u8, lo: u16, hi: u16| Rule {
        dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(10, 2, 0, 0), 16)),
        proto: Some(proto),
        dport: PortRange { lo, hi },
        ..Rule::any(id, Action::Allow)
    };
    let to6 = |id: u32, proto: u8, port: u16| Rule {
        dst: AddrMatch::prefix(Prefix::v6(Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, 0), 64)),
        proto: Some(proto),
        dport: PortRange { lo: port, hi: port },
        ..Rule::any(id, Action::Allow)
    };
    compile(&[
        to(1, 6, 443, 443),
        to(2, 17, 53, 53),
        to(3, 1, 0, u16::MAX),
        to6(4, 6, 443),
        to6(5, 17, 53),
        Rule::any(9, Action::Deny),
    ])
    .unwrap()
}

fn client6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, i as u16)
}

/// Per-flow frame sequences (each in its own order), to be interleaved.
fn flows() -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for i in 0..24u32 {
        let port = if i % 5 == 4 { 22 } else { 443 };
        let mut s = TcpSession::v4(client(i), 2000 + i as u16, SERVER, port);
        let mut f = s.handshake();
        for k in 0..6 {
            f.push(s.data(Side::Client, 10 + k));
            f.push(s.data(Side::Server, 100));
        }
        // A retransmission (inside the window) and an out-of-window RST.
        f.push(f[3].clone());
        let bogus = s.next_seq(Side::Server).wrapping_add(1 << 30);
        f.push(s.raw(Side::Server, TcpFlags::RST, bogus, 0));
        f.push(s.data(Side::Client, 5));
        if i % 3 == 0 {
            f.extend(s.close(Side::Client));
            // Reopened after the close.
            f.push(s.raw(Side::Client, TcpFlags::SYN, 77, 0));
        }
        out.push(f);
    }
    // IPv6 (the fast parse) and VLAN-tagged (the general parse) sessions, some denied.
    for i in 0..10u32 {
        let port = if i % 5 == 4 { 22 } else { 443 };
        let mut s = if i < 6 {
            TcpSession::v6(client6(i), 2100 + i as u16, SERVER6, port)
        } else {
            TcpSession::v4(client(400 + i), 2100 + i as u16, SERVER, port).map(|b| b.vlan(7))
        };
        let mut f = s.handshake();
        for k in 0..5 {
            f.push(s.data(Side::Client, 10 + k));
            f.push(s.data(Side::Server, 100));
        }
        f.extend(s.close(Side::Server));
        out.push(f);
    }
    for i in 0..4u32 {
        let dport = if i == 3 { 161 } else { 53 };
        let c = client6(100 + i);
        let q = FrameBuilder::new().ipv6(c, SERVER6).udp(3000, dport);
        let r = FrameBuilder::new().ipv6(SERVER6, c).udp(dport, 3000);
        out.push(
            (0..6)
                .map(|k| [&q, &r][k % 2].clone().seq(k as u64).build())
                .collect(),
        );
    }
    for i in 0..16u32 {
        let dport = if i % 4 == 3 { 161 } else { 53 };
        let c = client(100 + i);
        let q = FrameBuilder::new().ipv4(c, SERVER).udp(3000, dport);
        let r = FrameBuilder::new().ipv4(SERVER, c).udp(dport, 3000);
        let mut f = Vec::new();
        for k in 0..8 {
            f.push(q.clone().seq(k).build());
            f.push(r.clone().seq(k).build());
        }
        out.push(f);
    }
    for i in 0..4u32 {
        let c = client(200 + i);
        let req = FrameBuilder::new().ipv4(c, SERVER).icmp(8, 0);
        let rep = FrameBuilder::new().ipv4(SERVER, c).icmp(0, 0);
        out.push((0..6).map(|k| [&req, &rep][k % 2].build()).collect());
    }
    // A fragmented UDP datagram (first fragment, then the rest) and some malformed frames.
    let frag = FrameBuilder::new()
        .ipv4(client(300), SERVER)
        .udp(4000, 53)
        .payload_len(64)
        .ip_id(7);
    out.push(vec![
        frag.clone().fragment(0, true).build(),
        frag.clone().fragment(5, false).build(),
    ]);
    out.push(vec![vec![0u8; 10], vec![0xff; 60]]);
    out
}

/// The flows interleaved by a fixed pseudo-random schedule (each flow keeps its own order).
fn stream() -> Vec<Vec<u8>> {
    let mut flows: Vec<std::collections::VecDeque<Vec<u8>>> =
        flows().into_iter().map(Into::into).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::new();
    while flows.iter().any(|f| !f.is_empty()) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let live: Vec<usize> = (0..flows.len()).filter(|&i| !flows[i].is_empty()).collect();
        let pick = live[(x % live.len() as u64) as usize];
        // Runs of one flow's packets, so bursts hold established prefixes of varying length.
        for _ in 0..1 + (x >> 40) % 4 {
            if let Some(f) = flows[pick].pop_front() {
                out.push(f);
            }
        }
    }
    out
}

/// What the observer saw of one packet: port, length, flow key, verdict, rule decision.
type Seen = (
    PortId,
    usize,
    Option<FlowKey>,
    Verdict,
    Option<RuleDecision>,
);

#[derive(Default)]
struct Recorder(Vec<Seen>);

impl Observer for Recorder {
    fn packet(
        &mut self,
        port: PortId,
        len: usize,
        p: Option<&ParsedPacket>,
        v: Verdict,
        d: Option<&RuleDecision>,
    ) {
        self.0.push((
            port,
            len,
            p.and_then(|p| p.flow_key().copied()),
            v,
            d.copied(),
        ));
    }
}

struct Outcome {
    tx: Vec<Vec<u8>>,
    seen: Recorder,
    stats: Stats,
    events: Vec<FlowEvent>,
    flows: usize,
    half_open: usize,
}

/// Runs `frames` through a fresh worker, `per_poll` frames made available per poll, with the
/// direct pass on or off.
fn run(frames: &[Vec<u8>], per_poll: usize, direct: bool) -> Outcome {
    let (sink, source) = events::ring(1 << 16);
    let cell = TableCell::new(policy());
    let mut w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        WorkerState::new(&StateConfig::new(1 << 12), sink).unwrap(),
    );
    w.state_mut().set_now(1_000);
    w.state_mut().set_direct_pass(direct);
    let mut io = MemoryIo::new(2);
    let mut seen = Recorder::default();
    for chunk in frames.chunks(per_poll) {
        for f in chunk {
            io.push_rx(0, f.clone());
        }
        while io.rx_pending(0) > 0 {
            w.poll(&mut io, &mut seen);
        }
    }
    let mut drain = EventDrain::new(vec![source]);
    let mut events = Vec::new();
    drain.drain(usize::MAX, |_, e| events.push(e));
    Outcome {
        tx: io.take_tx(1),
        seen,
        stats: Stats::collect([&**w.counters()]),
        events,
        flows: w.state().flows().len(),
        half_open: w.state().flows().half_open_len(),
    }
}

#[test]
fn bursts_give_the_results_of_one_packet_per_poll() {
    let frames = stream();
    assert!(frames.len() > 600, "{} frames", frames.len());
    let one = run(&frames, 1, false);
    // The stream exercises every path: forwards, drops of several reasons, flows opened.
    assert!(one.tx.len() > 300, "{} forwarded", one.tx.len());
    assert!(one.stats.total_drops() > 50, "{:?}", one.stats);
    assert!(one.flows > 30);
    assert!(one.events.len() > 30);
    assert!(
        one.events.iter().any(|e| matches!(e, FlowEvent::Update(_))),
        "the FIN closes report updates"
    );
    for (per_poll, direct) in [(frames.len(), true), (frames.len(), false), (1, true)] {
        let burst = run(&frames, per_poll, direct);
        same(
            &burst,
            &one,
            &format!("{per_poll} per poll, direct pass {direct}"),
        );
    }
}

/// `burst` equals the reference `one` in everything observable.
fn same(burst: &Outcome, one: &Outcome, what: &str) {
    assert_eq!(
        burst.tx.len(),
        one.tx.len(),
        "{what}: forwarded frame counts"
    );
    let first = |a: &[Vec<u8>], b: &[Vec<u8>]| a.iter().zip(b).position(|(x, y)| x != y);
    assert_eq!(
        first(&burst.tx, &one.tx),
        None,
        "{what}: first forwarded frame that differs"
    );
    assert_eq!(
        burst.seen.0.len(),
        one.seen.0.len(),
        "{what}: observed packets"
    );
    let diff = burst.seen.0.iter().zip(&one.seen.0).find(|(x, y)| x != y);
    assert_eq!(
        diff, None,
        "{what}: first observation that differs (this run, reference)"
    );
    assert_eq!(burst.stats, one.stats, "{what}");
    // Flow updates of TCP closes are reported at the end of the poll, after the other records
    // of the burst: the same updates, in another place in the sequence.
    let split = |evs: &[FlowEvent]| {
        let (mut ups, mut rest): (Vec<String>, Vec<FlowEvent>) = (Vec::new(), Vec::new());
        for e in evs {
            match e {
                FlowEvent::Update(u) => ups.push(format!("{u:?}")),
                e => rest.push(*e),
            }
        }
        ups.sort();
        (ups, rest)
    };
    let ((burst_ups, burst_rest), (one_ups, one_rest)) = (split(&burst.events), split(&one.events));
    assert_eq!(burst_rest, one_rest, "{what}");
    assert_eq!(burst_ups, one_ups, "{what}: flow updates");
    assert_eq!(
        (burst.flows, burst.half_open),
        (one.flows, one.half_open),
        "{what}"
    );
}

/// The same policy with TCP/443 denied.
fn policy_without_443() -> RuleTable {
    compile(&[
        Rule {
            dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(10, 2, 0, 0), 16)),
            proto: Some(17),
            dport: PortRange { lo: 53, hi: 53 },
            ..Rule::any(2, Action::Allow)
        },
        Rule::any(9, Action::Deny),
    ])
    .unwrap()
}

/// Pushes `frames` on port 0 and polls until the worker has taken them all.
fn feed(
    w: &mut Worker,
    io: &mut MemoryIo,
    seen: &mut Recorder,
    frames: &[Vec<u8>],
    per_poll: usize,
) {
    for chunk in frames.chunks(per_poll) {
        for f in chunk {
            io.push_rx(0, f.clone());
        }
        while io.rx_pending(0) > 0 {
            w.poll(io, seen);
        }
    }
}

/// A publish between bursts reaches established flows on their next packet, also when a whole
/// burst of them would qualify for the direct pass (it must check the cached decision's epoch,
/// not only that the flow is tracked and was allowed): one packet per poll and in full bursts.
#[test]
fn a_publish_reaches_established_flows_in_the_direct_pass() {
    for (per_poll, direct) in [(1, true), (64, true), (64, false)] {
        let (sink, _source) = events::ring(1 << 16);
        let cell = TableCell::new(policy());
        let mut w = Worker::with_state(
            Bridge::new(2, &[(0, 1)]).unwrap(),
            Decision::Table(cell.reader()),
            WorkerState::new(&StateConfig::new(1 << 12), sink).unwrap(),
        );
        w.state_mut().set_now(1_000);
        w.state_mut().set_direct_pass(direct);
        let mut io = MemoryIo::new(2);
        let mut seen = Recorder::default();
        let mut sessions: Vec<TcpSession> = (0..16u32)
            .map(|i| TcpSession::v4(client(100 + i), 3000 + i as u16, SERVER, 443))
            .collect();
        let mut open = Vec::new();
        for s in &mut sessions {
            open.extend(s.handshake());
            open.push(s.data(Side::Client, 10));
            open.push(s.data(Side::Server, 10));
        }
        feed(&mut w, &mut io, &mut seen, &open, per_poll);
        assert_eq!(
            io.take_tx(1).len(),
            open.len(),
            "per_poll {per_poll}: opened"
        );
        let policy_drops = Stats::collect([&**w.counters()]).drops(DropReason::Policy);

        cell.publish(policy_without_443());
        let mut later = Vec::new();
        for s in &mut sessions {
            later.push(s.data(Side::Client, 10));
            later.push(s.data(Side::Server, 10));
        }
        feed(&mut w, &mut io, &mut seen, &later, per_poll);
        assert_eq!(
            io.take_tx(1).len(),
            0,
            "per_poll {per_poll}: forwarded after the publish"
        );
        let stats = Stats::collect([&**w.counters()]);
        assert_eq!(
            stats.drops(DropReason::Policy) - policy_drops,
            later.len() as u64,
            "per_poll {per_poll}: policy drops after the publish"
        );
    }
}
