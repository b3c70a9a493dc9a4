use std::net::Ipv4Addr;

use septa_features::spread::{SoloReceiver, SpreadConfig, sample_channel};

use super::*;

fn key(src: u8, dst: u32, dport: u16, proto: u8) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::new(10, 0, 0, src),
        Ipv4Addr::from(0x0a01_0000 + dst),
        proto,
        40000,
        dport,
    )
}

/// The inference side of a sampler's channel, as `septa_ml` runs it: records come out with their
/// spread filled from sketches of its own.
type Rx = SoloReceiver;

/// A sample channel of `cap` records (and 1024 new flows), sketches of `slots` slots per table and
/// the default 10 s window.
fn channel_with(cap: usize, slots: usize) -> (SampleSender, Rx) {
    let (tx, rx) = sample_channel(cap, 1024);
    let cfg = SpreadConfig {
        slots,
        ..SpreadConfig::default()
    };
    (tx, SoloReceiver::new(rx, cfg).unwrap())
}

fn channel(cap: usize) -> (SampleSender, Rx) {
    channel_with(cap, SpreadConfig::default().slots)
}

/// A sampler following every flow (`one_in` 1) with a ring of `cap` records.
fn sampler(cap: usize) -> (Sampler, Rx) {
    let (tx, rx) = channel(cap);
    let mut c = SamplerConfig::new(64);
    c.one_in = 1;
    (Sampler::new(3, c, tx).unwrap(), rx)
}

/// A flow as the flow entry would describe it.
struct Flow {
    slot: L7Slot,
    view: FlowView,
}

impl Flow {
    fn start(s: &mut Sampler, key: FlowKey, now: u64) -> Self {
        let mut slot = L7Slot::default();
        s.start(&mut slot, &key, now);
        Flow {
            slot,
            view: FlowView {
                key,
                first_seen: now,
                last_seen: now,
                ..FlowView::default()
            },
        }
    }

    /// Account the packet like the flow table, then sample it (emitting if due).
    fn packet(&mut self, s: &mut Sampler, dir: Direction, len: u16, flags: u8, now: u64) {
        let d = dir.index();
        self.view.packets[d] += 1;
        self.view.bytes[d] += u64::from(len);
        self.view.last_seen = now;
        if self.slot.sample != 0
            && let Some(r) = s.packet(&self.slot, len, flags, now)
        {
            s.emit(&self.slot, &self.view, r);
        }
    }

    fn end(&mut self, s: &mut Sampler) {
        s.end(&mut self.slot, &self.view);
    }
}

#[test]
fn emits_after_first_packets_and_at_flow_end() {
    let (mut s, mut rx) = sampler(16);
    let mut f = Flow::start(&mut s, key(1, 1, 445, 6), 1_000);
    assert_ne!(f.slot.sample, 0, "one_in 1 samples every flow");
    let pkts: [(Direction, u16, u8); 9] = [
        (Direction::Original, 60, 0x02),
        (Direction::Reply, 60, 0x12),
        (Direction::Original, 52, 0x10),
        (Direction::Original, 200, 0x18),
        (Direction::Reply, 1500, 0x18),
        (Direction::Original, 52, 0x10),
        (Direction::Reply, 400, 0x18),
        (Direction::Original, 52, 0x11),
        (Direction::Reply, 52, 0x04),
    ];
    for (i, &(d, len, flags)) in pkts.iter().enumerate() {
        f.packet(&mut s, d, len, flags, 1_000 + 1_000 * i as u64);
        if i == 6 {
            assert!(rx.try_recv().is_none(), "nothing before the 8th packet");
        }
    }
    let head = rx.try_recv().expect("record after 8 packets");
    assert_eq!(head.reason, EmitReason::FirstPackets);
    assert_eq!(head.worker, 3);
    assert_eq!(head.packets, [5, 3]);
    assert_eq!(head.head.count, 8);
    assert_eq!(
        head.head.size_sum,
        60 + 60 + 52 + 200 + 1500 + 52 + 400 + 52
    );
    assert_eq!(head.head.size_max, 1500);
    assert_eq!(head.head.iat_sum_us, 7_000);
    assert_eq!(head.head.iat_sumsq_us2, 7 * 1_000_000);
    assert_eq!(head.duration_us, 7_000);
    assert_eq!(head.key.dst_port, 445);
    assert_eq!(head.key.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    f.view.l7 = septa_l7::L7Proto::Smb as u8;
    f.end(&mut s);
    let end = rx.try_recv().expect("record at flow end");
    assert_eq!(end.reason, EmitReason::FlowEnd);
    assert_eq!(end.packets, [5, 4]);
    assert_eq!(end.bytes[1], 60 + 1500 + 400 + 52);
    assert_eq!(end.head.count, 8, "head stats stop at HEAD_PACKETS");
    assert_eq!(
        end.tcp,
        TcpFlagCounts {
            syn: 2,
            syn_ack: 1,
            fin: 1,
            rst: 1,
            psh: 3
        }
    );
    assert_eq!(end.l7, L7Proto::Smb);
    assert_eq!(end.spread.src_hosts_on_port, 1);
    // an ended flow emits nothing more, and its slab entry is free again
    assert_eq!(f.slot.sample, 0);
    f.end(&mut s);
    assert!(rx.try_recv().is_none());
    assert_eq!(s.counters().emitted, 2);
    assert_eq!(s.active(), 0);
}

#[test]
fn long_flows_emit_periodically() {
    let (mut s, mut rx) = sampler(64);
    let mut f = Flow::start(&mut s, key(1, 1, 502, 6), 0);
    // one packet per second for 200 s
    for t in 0..200u64 {
        f.packet(&mut s, Direction::Original, 64, 0x18, t * 1_000_000);
    }
    let reasons: Vec<_> = rx.try_iter().map(|r| r.reason).collect();
    assert_eq!(reasons[0], EmitReason::FirstPackets);
    // first packets at t=7 s, then every 60 s: t=67, 127, 187
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[1..].iter().all(|&r| r == EmitReason::Periodic));
}

#[test]
fn full_ring_drops_and_counts() {
    let (mut s, mut rx) = sampler(1);
    for h in 0..3 {
        let mut f = Flow::start(&mut s, key(1, h, 80, 6), 0);
        f.end(&mut s);
    }
    let c = s.counters();
    assert_eq!((c.emitted, c.ring_full), (1, 2));
    assert_eq!(rx.try_iter().count(), 1);
    drop(rx);
    let mut f = Flow::start(&mut s, key(1, 9, 80, 6), 0);
    f.end(&mut s);
    assert_eq!(s.counters().ring_full, 3, "a gone consumer counts as full");
}

#[test]
fn one_flow_in_k_is_sampled_and_a_full_slab_is_counted() {
    let (tx, mut rx) = channel(1024);
    let mut c = SamplerConfig::new(4);
    c.one_in = 8;
    let mut s = Sampler::new(0, c, tx).unwrap();
    let flows: Vec<Flow> = (0..64)
        .map(|h| Flow::start(&mut s, key(1, h, 80, 6), 0))
        .collect();
    let sampled = flows.iter().filter(|f| f.slot.sample != 0).count();
    let c = s.counters();
    assert_eq!((c.flows, c.sampled), (64, 8));
    assert_eq!(sampled, 4, "the slab holds 4");
    assert_eq!(c.slab_full, 4);
    for mut f in flows {
        f.end(&mut s);
    }
    assert_eq!(rx.try_iter().count(), 4, "only sampled flows emit");
    assert_eq!(s.active(), 0);
}

#[test]
fn an_evicted_flows_sample_is_freed_without_a_record() {
    let (tx, mut rx) = channel(16);
    let mut c = SamplerConfig::new(1);
    c.one_in = 1;
    let mut s = Sampler::new(0, c, tx).unwrap();
    let a = Flow::start(&mut s, key(1, 1, 80, 6), 0);
    assert_ne!(a.slot.sample, 0);
    // The slab's single entry is taken: the next flow is skipped...
    let b = Flow::start(&mut s, key(1, 2, 80, 6), 10);
    assert_eq!(b.slot.sample, 0);
    assert_eq!(s.counters().slab_full, 1);
    // ...until `a` is evicted (no end, no record): its entry comes back.
    s.evicted(a.slot);
    s.evicted(L7Slot::default());
    assert_eq!(
        s.counters().evicted,
        1,
        "an unsampled eviction is not counted"
    );
    assert_eq!(s.active(), 0);
    let mut c = Flow::start(&mut s, key(1, 3, 80, 6), 20);
    assert_ne!(c.slot.sample, 0, "the slab entry came back");
    c.end(&mut s);
    assert_eq!(rx.try_iter().count(), 1, "only c's end");
}

#[test]
fn fan_out_and_fan_in_estimates() {
    let (mut s, mut rx) = sampler(4096);
    // 10.0.0.1 sweeps 212 hosts on 445/tcp; 10.0.0.2 talks to 3 hosts on 443.
    for h in 0..212u32 {
        Flow::start(&mut s, key(1, h, 445, 6), 1_000_000 + u64::from(h)).end(&mut s);
    }
    for h in 0..3u32 {
        Flow::start(&mut s, key(2, h, 443, 6), 2_000_000).end(&mut s);
    }
    // 40 sources reach host 7 on 80
    for src in 10..50u8 {
        Flow::start(&mut s, key(src, 7, 80, 6), 3_000_000).end(&mut s);
    }
    let recs: Vec<_> = rx.try_iter().collect();
    let sweep = recs[211].spread;
    assert!((200..=225).contains(&sweep.src_hosts_on_port), "{sweep:?}");
    assert!((200..=225).contains(&sweep.src_hosts), "{sweep:?}");
    assert_eq!(sweep.src_ports, 1);
    assert_eq!(sweep.window_s, 10);
    let quiet = recs[214].spread;
    assert_eq!((quiet.src_hosts, quiet.src_hosts_on_port), (3, 3));
    let fan_in = recs[254].spread;
    assert!((38..=42).contains(&fan_in.dst_sources), "{fan_in:?}");
    // next window: the sweep is forgotten
    Flow::start(&mut s, key(1, 999, 445, 6), 11_000_000).end(&mut s);
    assert_eq!(rx.try_recv().unwrap().spread.src_hosts_on_port, 1);
}

#[test]
fn function_classes_separate_restarts_from_operates() {
    use septa_l7::L7Proto as P;
    use septa_l7::functions::Class as C;
    assert_eq!(
        feature_function_class(P::Dnp3, 13, C::Control),
        FunctionClass::Disruptive
    );
    assert_eq!(
        feature_function_class(P::Dnp3, 5, C::Control),
        FunctionClass::Control
    );
    assert_eq!(
        feature_function_class(P::S7comm, 0x29, C::Control),
        FunctionClass::Disruptive
    );
    assert_eq!(
        feature_function_class(P::Modbus, 16, C::Write),
        FunctionClass::Write
    );
    assert_eq!(
        feature_function_class(P::Modbus, 3, C::Read),
        FunctionClass::Read
    );
    assert_eq!(
        feature_function_class(P::S7comm, 0x1a, C::Program),
        FunctionClass::Disruptive
    );
    assert_eq!(feature_l7(P::S7commPlus), L7Proto::S7comm);
}

/// Alerts label a flow's protocol with the feature schema's names: the same labels flow records
/// use (S7comm-plus counted as S7comm).
#[test]
fn feature_protocol_names_are_the_flow_record_labels() {
    for p in septa_l7::L7Proto::ALL {
        let want = match p {
            septa_l7::L7Proto::S7commPlus => "s7comm",
            p => p.name(),
        };
        assert_eq!(feature_l7(p).name(), want, "{p:?}");
    }
}

#[test]
fn bad_config_is_rejected() {
    let (tx, _rx) = channel(1);
    let mut c = SamplerConfig::new(8);
    c.one_in = 0;
    assert_eq!(
        Sampler::new(0, c, tx).unwrap_err(),
        SamplerConfigError::OneIn
    );
    let (tx, _rx) = channel(1);
    let c = SamplerConfig::new(0);
    assert_eq!(
        Sampler::new(0, c, tx).unwrap_err(),
        SamplerConfigError::Flows(0)
    );
}

/// The record of one more flow `key` at `now` (started and ended at once).
fn spread_of(s: &mut Sampler, rx: &mut Rx, key: FlowKey, now: u64) -> Spread {
    Flow::start(s, key, now).end(s);
    rx.try_iter().last().expect("a record").spread
}

fn within(got: u32, want: u32, pct: u32) -> bool {
    got.abs_diff(want) * 100 <= want * pct
}

#[test]
fn port_scans_and_lateral_sweeps_are_told_apart() {
    let (mut s, mut rx) = sampler(8192);
    // 10.0.0.5 scans 300 ports of one host; 10.0.0.6 sweeps 100 hosts on 445 and 50 others on
    // 3389; 10.0.0.7 polls 2 PLCs on 502. Same window, interleaved.
    for i in 0..300u32 {
        Flow::start(&mut s, key(5, 1, 1000 + i as u16, 6), 1_000_000).end(&mut s);
        if i < 100 {
            Flow::start(&mut s, key(6, 100 + i, 445, 6), 1_000_000).end(&mut s);
        }
        if i < 50 {
            Flow::start(&mut s, key(6, 500 + i, 3389, 6), 1_000_000).end(&mut s);
        }
        if i < 2 {
            Flow::start(&mut s, key(7, 900 + i, 502, 6), 1_000_000).end(&mut s);
        }
    }
    let scan = spread_of(&mut s, &mut rx, key(5, 1, 999, 6), 2_000_000);
    assert!(within(scan.src_ports, 301, 8), "{scan:?}");
    assert_eq!((scan.src_hosts, scan.src_hosts_on_port), (1, 1), "{scan:?}");
    let sweep = spread_of(&mut s, &mut rx, key(6, 100, 445, 6), 2_000_000);
    assert!(within(sweep.src_hosts, 150, 8), "{sweep:?}");
    assert!(within(sweep.src_hosts_on_port, 100, 8), "{sweep:?}");
    assert_eq!(sweep.src_ports, 2, "{sweep:?}");
    let rdp = spread_of(&mut s, &mut rx, key(6, 500, 3389, 6), 2_000_000);
    assert!(within(rdp.src_hosts_on_port, 50, 8), "{rdp:?}");
    let poll = spread_of(&mut s, &mut rx, key(7, 900, 502, 6), 2_000_000);
    assert_eq!(
        (poll.src_hosts, poll.src_ports, poll.src_hosts_on_port),
        (2, 1, 2),
        "{poll:?}"
    );
}

#[test]
fn saturated_sketches_report_their_ceiling_and_collisions_never_overstate() {
    let (mut s, mut rx) = sampler(1024);
    // A sweep of 20,000 hosts in one window: the estimate saturates high, it does not wrap.
    // (The receiver reads every 512 flows, as the inference thread keeps up: the ring of new
    // flows never fills.)
    for h in 0..20_000u32 {
        Flow::start(&mut s, key(1, h, 445, 6), 1_000_000).end(&mut s);
        if h % 512 == 0 {
            rx.try_iter().for_each(drop);
        }
    }
    assert_eq!(s.counters().spread_lost, 0);
    let big = spread_of(&mut s, &mut rx, key(1, 0, 445, 6), 1_000_000);
    assert!(big.src_hosts >= 3_000, "{big:?}");
    // A tiny table: colliding sources take slots over (counted); a taken-over key's estimate
    // restarts from its own flows, never another key's.
    let (tx, mut rx) = channel_with(4096, 16);
    let mut c = SamplerConfig::new(64);
    c.one_in = 1;
    let mut s = Sampler::new(0, c, tx).unwrap();
    for src in 1..=64u8 {
        for h in 0..3u32 {
            Flow::start(&mut s, key(src, h, 80, 6), 1_000_000).end(&mut s);
        }
    }
    assert!(
        rx.try_iter()
            .all(|r| r.spread.src_hosts <= 3 && r.spread.dst_sources <= 70)
    );
    assert!(rx.sketches.evictions() > 0);
    assert_eq!(s.counters().spread_lost, 0);
}

#[test]
fn every_record_sees_the_new_flows_sent_before_it() {
    // One source reaches 40 hosts on 445: no record is read until the last flow ends, and
    // that record sees all 40 (the waiting flows are applied before it reads the sketches).
    let (mut s, mut rx) = sampler(4096);
    let mut flows: Vec<Flow> = (0..40u32)
        .map(|h| Flow::start(&mut s, key(1, h, 445, 6), 1_000_000))
        .collect();
    assert_eq!(rx.try_iter().count(), 0);
    let mut last = flows.pop().unwrap();
    last.end(&mut s);
    let rec = rx.try_recv().expect("a record");
    assert!(
        within(rec.spread.src_hosts_on_port, 40, 8),
        "{:?}",
        rec.spread
    );
    // Records in between see exactly the flows started before them, as one update per flow
    // would: the first flow's end record after 39 of them, then one more source on host 0.
    flows[0].end(&mut s);
    assert!(within(rx.try_recv().unwrap().spread.src_hosts, 40, 8));
    let mut late = Flow::start(&mut s, key(2, 0, 445, 6), 1_000_001);
    late.end(&mut s);
    assert_eq!(rx.try_recv().unwrap().spread.dst_sources, 2);

    // New flows with no record are on the ring at once; a flow the full ring refuses is
    // counted, not waited for.
    let (tx, rx) = sample_channel(16, 4);
    let mut rx = SoloReceiver::new(rx, SpreadConfig::default()).unwrap();
    let mut c = SamplerConfig::new(1);
    c.one_in = u32::MAX;
    let mut s = Sampler::new(0, c, tx).unwrap();
    let start = |s: &mut Sampler, src: u32| {
        let k = FlowKey::v4(
            Ipv4Addr::from(0x0a00_0000 + src),
            Ipv4Addr::new(10, 1, 0, 1),
            6,
            40000,
            80,
        );
        s.start(&mut L7Slot::default(), &k, 1_000_000);
    };
    start(&mut s, 0);
    assert_eq!(rx.drain_spread(), 1, "a flow is sent at once");
    assert_eq!(rx.sketches.flows(), 1);
    for src in 1..=6 {
        start(&mut s, src);
    }
    assert_eq!(s.counters().flows, 7);
    assert_eq!(s.counters().spread_lost, 2, "a ring of 4: two refused");
    assert_eq!(rx.drain_spread(), 4);
    assert_eq!(rx.sketches.flows(), 5);
    start(&mut s, 7);
    assert_eq!(rx.drain_spread(), 1, "room again once drained");
    assert_eq!(s.counters().spread_lost, 2);
}

proptest::proptest! {
    /// When the receiver reads changes nothing a record or a counter says: the same sequence of
    /// new flows, refused flows and ends through a sampler whose receiver reads its records and
    /// applies every waiting new flow after each step (as a live inference thread does) and
    /// through one whose receiver reads everything at the end (every record then applies
    /// exactly the new flows sent before it) gives the same records, in a small table
    /// (collisions, evictions) across several windows.
    #[test]
    fn records_do_not_depend_on_when_the_receiver_reads(
        ops in proptest::collection::vec((0u8..4, 0u32..40, 0u32..40, 0u16..6, 0u64..3), 1..400)
    ) {
        let mk = || {
            let (tx, rx) = channel_with(4096, 16);
            let mut c = SamplerConfig::new(64);
            c.one_in = 3;
            (Sampler::new(0, c, tx).unwrap(), rx)
        };
        let (mut eager, mut rx_eager) = mk();
        let (mut late, mut rx_batched) = mk();
        let mut ra = Vec::new();
        let mut open: Vec<(Flow, Flow)> = Vec::new();
        for (i, &(op, src, dst, port, w)) in ops.iter().enumerate() {
            let now = w * 10_000_000 + i as u64;
            let k = FlowKey::v4(
                Ipv4Addr::from(0x0a00_0000 + src),
                Ipv4Addr::from(0x0a01_0000 + dst),
                6,
                40000,
                80 + port,
            );
            match op {
                0 | 1 => {
                    let a = Flow::start(&mut eager, k, now);
                    open.push((a, Flow::start(&mut late, k, now)));
                }
                2 => {
                    eager.denied(&k, 60, 0x02, now);
                    late.denied(&k, 60, 0x02, now);
                }
                _ => {
                    if let Some((mut a, mut b)) = open.pop() {
                        a.end(&mut eager);
                        b.end(&mut late);
                    }
                }
            }
            ra.extend(rx_eager.try_iter());
            rx_eager.drain_spread();
        }
        for (mut a, mut b) in open.drain(..) {
            a.end(&mut eager);
            b.end(&mut late);
        }
        ra.extend(rx_eager.try_iter());
        let rb: Vec<_> = rx_batched.try_iter().collect();
        proptest::prop_assert_eq!(ra, rb);
        let (mut ce, cb) = (eager.counters(), late.counters());
        proptest::prop_assert_eq!(ce.spread_lost, 0);
        ce.spread_lost = cb.spread_lost;
        proptest::prop_assert_eq!(ce, cb);
        // Both sketches, once every new flow is in: the same updates in the same order.
        for rx in [&mut rx_eager, &mut rx_batched] {
            rx.drain_spread();
        }
        proptest::prop_assert_eq!(rx_eager.sketches.flows(), rx_batched.sketches.flows());
        proptest::prop_assert_eq!(rx_eager.sketches.evictions(), rx_batched.sketches.evictions());
    }
}

#[test]
fn counters_are_published_for_other_threads_at_most_every_publish_us() {
    let (mut s, rx) = sampler(1);
    let shared = s.shared_counters();
    let reader = std::thread::spawn({
        let shared = Arc::clone(&shared);
        move || shared.load()
    });
    assert_eq!(reader.join().unwrap(), SamplerCounters::default());
    let mut f = Flow::start(&mut s, key(1, 1, 80, 6), 0);
    s.publish(0);
    assert_eq!(shared.load().flows, 1);
    assert_eq!(shared.load().sampled, 1);
    // a ring of one record: the first record goes through, the second is counted as dropped
    for t in 0..8 {
        f.packet(&mut s, Direction::Original, 60, 0x02, t);
    }
    f.end(&mut s);
    assert_eq!((s.counters().emitted, s.counters().ring_full), (1, 1));
    s.publish(PUBLISH_US - 1);
    assert_eq!(
        shared.load().emitted,
        0,
        "not due yet: the last publication stands"
    );
    s.publish(PUBLISH_US);
    let seen = std::thread::spawn(move || shared.load()).join().unwrap();
    assert_eq!(seen, s.counters());
    assert_eq!((seen.emitted, seen.ring_full), (1, 1));
    drop(rx);
}

/// Clients reuse a port the server closed first: conntrack reopens the entry, which goes on
/// counting. The first connection gets its final record, the second is sampled from its SYN
/// with its own counts, flags and duration (not the two connections' sums).
#[test]
fn a_reopened_connection_is_sampled_as_a_new_one() {
    let (mut s, mut rx) = sampler(16);
    let mut f = Flow::start(&mut s, key(1, 1, 80, 6), 0);
    let conn: [(Direction, u16, u8); 9] = [
        (Direction::Original, 60, 0x02),
        (Direction::Reply, 60, 0x12),
        (Direction::Original, 52, 0x10),
        (Direction::Original, 130, 0x18),
        (Direction::Reply, 240, 0x18),
        (Direction::Reply, 52, 0x11),
        (Direction::Original, 52, 0x11),
        (Direction::Reply, 52, 0x10),
        (Direction::Original, 52, 0x10),
    ];
    // A reopen is the SYN seen after the FIN: the worker (sampled_packet) asks first.
    let send = |f: &mut Flow, s: &mut Sampler, d: Direction, len: u16, flags: u8, t: u64| {
        let i = d.index();
        f.view.packets[i] += 1;
        f.view.bytes[i] += u64::from(len);
        f.view.last_seen = t;
        if flags & 0x12 == 0x02 {
            s.reopened(&f.slot, &f.view, d, len, t);
        }
        if let Some(r) = s.packet(&f.slot, len, flags, t) {
            s.emit(&f.slot, &f.view, r);
        }
    };
    for (i, &(d, len, flags)) in conn.iter().enumerate() {
        send(&mut f, &mut s, d, len, flags, 1_000 * i as u64);
    }
    let first: Vec<_> = rx.try_iter().collect();
    assert_eq!(first.len(), 1, "the first connection's first packets");
    assert_eq!(s.counters().reopened, 0, "its own SYN reopens nothing");
    // the same 5-tuple, 2 s later
    for (i, &(d, len, flags)) in conn.iter().enumerate() {
        send(&mut f, &mut s, d, len, flags, 2_000_000 + 1_000 * i as u64);
    }
    let recs: Vec<_> = rx.try_iter().collect();
    assert_eq!(s.counters().reopened, 1);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let (end1, head2) = (&recs[0], &recs[1]);
    assert_eq!(end1.reason, EmitReason::FlowEnd);
    assert_eq!(end1.packets, [5, 4]);
    assert_eq!(end1.bytes, [60 + 52 + 130 + 52 + 52, 60 + 240 + 52 + 52]);
    assert_eq!(end1.duration_us, 8_000);
    assert_eq!((end1.tcp.syn, end1.tcp.fin), (2, 2));
    assert_eq!(head2.reason, EmitReason::FirstPackets);
    assert_eq!(head2.packets, [4, 4], "the second connection's own counts");
    assert_eq!(head2.duration_us, 7_000);
    assert_eq!((head2.tcp.syn, head2.tcp.syn_ack), (2, 1));
    f.end(&mut s);
    let end2 = rx.try_recv().unwrap();
    assert_eq!((end2.packets, end2.bytes), (end1.packets, end1.bytes));
    assert_eq!(end2.tcp, end1.tcp);
    // a retransmitted SYN of an open connection is not a reopen
    let mut g = Flow::start(&mut s, key(2, 1, 80, 6), 0);
    send(&mut g, &mut s, Direction::Original, 60, 0x02, 0);
    send(&mut g, &mut s, Direction::Original, 60, 0x02, 1_000_000);
    assert_eq!(s.counters().reopened, 1);
}
