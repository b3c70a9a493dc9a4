use std::net::Ipv4Addr;

use super::*;

type State = [u64; 5];

fn cfg(capacity: usize) -> FlowTableConfig {
    // 1 tick = 1 ms; wheel slots of 64 ms.
    FlowTableConfig {
        capacity,
        max_half_open: capacity,
        timeouts: Timeouts::nftables_defaults(1000),
        wheel_shift: 6,
        wheel_slots: 256,
    }
}

fn table(capacity: usize) -> FlowTable<State> {
    FlowTable::new(&cfg(capacity), [0x1234, 0x5678]).unwrap()
}

fn key(i: u32) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::from(0x0a00_0000 + i),
        Ipv4Addr::new(192, 168, 0, 1),
        6,
        40000,
        443,
    )
}

fn add(t: &mut FlowTable<State>, k: &FlowKey, now: u64) -> Result<Inserted, FlowTableFull> {
    match t.lookup(k) {
        Lookup::Miss(v) => t.insert(v, [0; 5], TimeoutClass::TcpSynSent, now),
        Lookup::Hit { .. } => panic!("{k} already present"),
    }
}

fn hit(t: &FlowTable<State>, k: &FlowKey) -> Option<(FlowId, Direction)> {
    match t.lookup(k) {
        Lookup::Hit { id, dir } => Some((id, dir)),
        Lookup::Miss(_) => None,
    }
}

#[test]
fn both_directions_find_one_entry_and_report_direction() {
    let mut t = table(16);
    let mut k = key(1);
    k.in_port = 0;
    // Originator has the higher address: the canonical key is swapped.
    let mut orig = k.reversed();
    orig.in_port = 1;
    let id = add(&mut t, &orig, 5).unwrap().id;
    let mut reply = k;
    reply.in_port = 0;
    assert_eq!(hit(&t, &orig), Some((id, Direction::Original)));
    assert_eq!(hit(&t, &reply), Some((id, Direction::Reply)));
    assert_eq!(t.entry(id).key(), orig);
    assert_eq!(t.entry(id).orig_in_port(), 1);
    // A different port pair is a different flow.
    let mut other = orig;
    other.sport += 1;
    assert!(hit(&t, &other).is_none());
}

#[test]
fn touch_counts_per_direction_and_tracks_time() {
    let mut t = table(4);
    let k = key(1);
    let id = add(&mut t, &k, 10).unwrap().id;
    t.touch(id, Direction::Original, 60, TimeoutClass::TcpSynSent, 10);
    t.touch(id, Direction::Reply, 1500, TimeoutClass::TcpEstablished, 20);
    t.touch(id, Direction::Reply, 100, TimeoutClass::TcpEstablished, 30);
    let e = t.entry(id);
    assert_eq!(
        (e.packets(Direction::Original), e.bytes(Direction::Original)),
        (1, 60)
    );
    assert_eq!(
        (e.packets(Direction::Reply), e.bytes(Direction::Reply)),
        (2, 1600)
    );
    assert_eq!((e.first_seen(), e.last_seen()), (10, 30));
    assert_eq!(t.expires(id), 30 + 432_000_000);
    assert_eq!(e.expires_with(t.timeouts()), 30 + 432_000_000);
    assert_eq!(e.timeout_class(), TimeoutClass::TcpEstablished);
}

#[test]
fn full_table_evicts_oldest_half_open_first() {
    let mut t = table(4);
    let ids: Vec<FlowId> = (0..4)
        .map(|i| add(&mut t, &key(i), 0).unwrap().id)
        .collect();
    t.mark_established(ids[0]);
    t.mark_established(ids[2]);
    assert_eq!(t.half_open_len(), 2);
    // Full: key 1 (oldest half-open) goes, then key 3.
    let r = add(&mut t, &key(10), 1).unwrap();
    assert!(r.evicted);
    assert!(hit(&t, &key(1)).is_none());
    assert!(hit(&t, &key(3)).is_some());
    t.mark_established(r.id);
    assert!(add(&mut t, &key(11), 2).unwrap().evicted);
    assert!(hit(&t, &key(3)).is_none());
    assert_eq!(t.half_open_len(), 1);
    t.mark_established(hit(&t, &key(11)).unwrap().0);
    // Only established flows left: refused, and nothing was disturbed.
    assert_eq!(add(&mut t, &key(12), 3), Err(FlowTableFull));
    assert_eq!(t.stats().full, 1);
    assert_eq!(t.stats().evicted_half_open, 2);
    for k in [0, 2, 10, 11] {
        assert!(hit(&t, &key(k)).is_some(), "established flow {k} evicted");
    }
    assert_eq!(DropReason::from(FlowTableFull), DropReason::FlowTableFull);
}

#[test]
fn half_open_cap_evicts_before_the_table_fills() {
    let mut c = cfg(100);
    c.max_half_open = 3;
    let mut t: FlowTable<State> = FlowTable::new(&c, [1, 2]).unwrap();
    for i in 0..10 {
        add(&mut t, &key(i), i as u64).unwrap();
    }
    assert_eq!(t.len(), 3);
    assert_eq!(t.half_open_len(), 3);
    assert!(hit(&t, &key(9)).is_some() && hit(&t, &key(6)).is_none());
}

#[test]
fn idle_flows_expire_and_refreshed_ones_stay() {
    let mut t = table(8);
    let a = add(&mut t, &key(1), 0).unwrap().id;
    let b = add(&mut t, &key(2), 0).unwrap().id;
    // Both have the SYN_SENT timeout (120 s); b is refreshed at 100 s.
    t.touch(
        b,
        Direction::Original,
        60,
        TimeoutClass::TcpSynSent,
        100_000,
    );
    let mut seen = Vec::new();
    assert_eq!(t.expire(119_999, usize::MAX, |e| seen.push(e.key())), 0);
    assert_eq!(t.expire(120_100, usize::MAX, |e| seen.push(e.key())), 1);
    assert_eq!(seen, vec![key(1)]);
    assert!(hit(&t, &key(1)).is_none());
    let _ = a;
    assert_eq!(t.expire(219_000, usize::MAX, |_| {}), 0);
    assert_eq!(t.expire(220_100, usize::MAX, |_| {}), 1);
    assert!(t.is_empty());
    assert_eq!(t.stats().expired, 2);
}

#[test]
fn shortened_timeout_relinks_eagerly() {
    let mut t = table(8);
    let id = add(&mut t, &key(1), 0).unwrap().id;
    t.touch(id, Direction::Reply, 60, TimeoutClass::TcpEstablished, 0);
    // RST: close timeout 10 s.
    t.touch(id, Direction::Reply, 60, TimeoutClass::TcpClose, 1_000);
    assert_eq!(t.expire(10_999, usize::MAX, |_| {}), 0);
    assert_eq!(t.expire(11_100, usize::MAX, |_| {}), 1);
}

#[test]
fn timeouts_longer_than_a_revolution_and_clock_jumps() {
    // Revolution = 256 * 64 ms ≈ 16 s; established = 5 days.
    let mut t = table(8);
    let id = add(&mut t, &key(1), 0).unwrap().id;
    t.touch(id, Direction::Reply, 1, TimeoutClass::TcpEstablished, 0);
    let day = 86_400_000;
    let mut now = 0;
    while now < 5 * day - 60_000 {
        now += 7_000;
        assert_eq!(
            t.expire(now, usize::MAX, |_| {}),
            0,
            "expired early at {now}"
        );
    }
    // A jump far past the expiry.
    assert_eq!(t.expire(9 * day, usize::MAX, |_| {}), 1);
}

#[test]
fn timers_stay_exact_across_the_32_bit_wrap_of_slot_time() {
    // One tick per slot, so slot time crosses 2^32 (where the entry's 32-bit visit time
    // wraps) a few hundred ticks after the start.
    let mut c = cfg(8);
    c.wheel_shift = 0;
    c.wheel_slots = 4096;
    c.timeouts.set(TimeoutClass::TcpEstablished, 3_000);
    c.timeouts.set(TimeoutClass::TcpClose, 10);
    c.timeouts.set(TimeoutClass::TcpSynSent, u64::MAX);
    let mut t = FlowTable::<State>::new(&c, [1, 2]).unwrap();
    let base = (1u64 << 32) - 1_000;
    assert_eq!(t.expire(base, usize::MAX, |_| {}), 0);
    // Visit time base + 3000 wraps to 2000; a close at base + 1 moves the expiry before it
    // (but not below it in 32-bit arithmetic): the entry must still be relinked.
    let a = add(&mut t, &key(1), base).unwrap().id;
    t.touch(a, Direction::Reply, 1, TimeoutClass::TcpEstablished, base);
    t.touch(a, Direction::Reply, 1, TimeoutClass::TcpClose, base + 1);
    assert_eq!(t.expires(a), base + 11);
    // A flow that never times out (saturating expiry) stays, re-slotted each revolution.
    let b = add(&mut t, &key(2), base).unwrap().id;
    assert_eq!(t.expires(b), u64::MAX);
    assert_eq!(t.expire(base + 10, usize::MAX, |_| {}), 0);
    let mut gone = Vec::new();
    assert_eq!(t.expire(base + 11, usize::MAX, |e| gone.push(e.key())), 1);
    assert_eq!(gone, [key(1)]);
    assert_eq!(t.expire(base + 20_000, usize::MAX, |_| {}), 0);
    // Shortened after many revolutions, it expires on time.
    t.touch(
        b,
        Direction::Original,
        1,
        TimeoutClass::TcpClose,
        base + 20_001,
    );
    assert_eq!(t.expire(base + 20_010, usize::MAX, |_| {}), 0);
    assert_eq!(t.expire(base + 20_011, usize::MAX, |_| {}), 1);
    assert!(t.is_empty());
}

#[test]
fn expiry_budget_bounds_work_and_resumes() {
    let mut t = table(64);
    for i in 0..50 {
        add(&mut t, &key(i), 0).unwrap();
    }
    let mut total = 0;
    let mut calls = 0;
    while total < 50 {
        let n = t.expire(200_000, 7, |_| {});
        assert!(n <= 7);
        total += n;
        calls += 1;
        assert!(calls < 100);
    }
    assert!(calls >= 8);
    assert!(t.is_empty());
}

#[test]
fn removal_frees_the_slot_and_the_key() {
    let mut t = table(2);
    let a = add(&mut t, &key(1), 0).unwrap().id;
    add(&mut t, &key(2), 0).unwrap();
    t.remove(a);
    t.remove(a); // stale id: no effect
    assert_eq!(t.len(), 1);
    assert!(hit(&t, &key(1)).is_none());
    let r = add(&mut t, &key(3), 0).unwrap();
    assert!(!r.evicted);
    assert_eq!(t.stats().removed, 1);
    // The removed flow's timer does not fire on the new one.
    t.mark_established(r.id);
    t.touch(
        r.id,
        Direction::Original,
        1,
        TimeoutClass::TcpEstablished,
        0,
    );
    assert_eq!(t.expire(130_000, usize::MAX, |_| {}), 1); // key 2 only
    assert!(hit(&t, &key(3)).is_some());
}

#[test]
fn cached_decision_epoch() {
    let d = CachedDecision::default();
    assert!(!d.is_current(0) && !d.is_current(1));
    let d = CachedDecision { epoch: 3, ..d };
    assert!(d.is_current(3) && !d.is_current(4));
}

#[test]
fn config_is_validated() {
    let mut c = cfg(0);
    assert!(matches!(
        FlowTable::<State>::new(&c, [0, 0]),
        Err(FlowConfigError::Capacity(0))
    ));
    c.capacity = 4;
    assert!(matches!(
        FlowTable::<State>::new(&c, [0, 0]),
        Err(FlowConfigError::HalfOpen)
    ));
    c.max_half_open = 4;
    c.wheel_slots = 100;
    assert!(matches!(
        FlowTable::<State>::new(&c, [0, 0]),
        Err(FlowConfigError::Wheel)
    ));
    c.wheel_slots = MAX_WHEEL_SLOTS * 2;
    assert!(matches!(
        FlowTable::<State>::new(&c, [0, 0]),
        Err(FlowConfigError::Wheel)
    ));
    let d = FlowTableConfig::new(1 << 10, 1_000_000_000);
    assert_eq!(d.wheel_shift, 25); // 2^25 ns ≈ 1/30 s
    assert!(FlowTable::<State>::new(&d, [0, 0]).is_ok());
}

#[test]
fn remove_and_shorten_while_a_slot_is_half_processed() {
    let mut t = table(64);
    let ids: Vec<FlowId> = (0..20)
        .map(|i| add(&mut t, &key(i), 0).unwrap().id)
        .collect();
    // All twenty sit in one slot; refresh half of them so they survive the visit.
    for id in &ids[..10] {
        t.touch(
            *id,
            Direction::Original,
            1,
            TimeoutClass::TcpSynSent,
            100_000,
        );
    }
    // Visit part of the slot: the rest stays pending.
    // The slot list is newest first: 19..15 expire, 14..0 stay pending.
    let first = t.expire(120_100, 5, |_| {});
    assert_eq!(first, 5);
    // Remove one and shorten another while they are pending.
    t.remove(ids[10]);
    t.touch(
        ids[0],
        Direction::Original,
        1,
        TimeoutClass::TcpClose,
        120_100,
    );
    let rest = t.expire(120_100, usize::MAX, |_| {});
    assert_eq!(
        first + rest,
        9,
        "the nine untouched, unremoved flows expire"
    );
    assert_eq!(t.len(), 10);
    assert_eq!(
        t.expire(130_200, usize::MAX, |_| {}),
        1,
        "the shortened one"
    );
    assert_eq!(t.expire(220_200, usize::MAX, |_| {}), 9);
    assert!(t.is_empty());
}

#[test]
fn published_stats_are_what_the_table_counted_at_most_once_per_interval() {
    const EVERY: u64 = 100;
    let mut t = table(4);
    let shared = t.shared_stats();
    assert_eq!(shared.load(), FlowTableSnapshot::default(), "nothing yet");
    let ids: Vec<FlowId> = (0..4)
        .map(|i| add(&mut t, &key(i), 0).unwrap().id)
        .collect();
    t.mark_established(ids[0]);
    t.publish(0, EVERY);
    let first = FlowTableSnapshot {
        stats: FlowTableStats {
            inserted: 4,
            ..FlowTableStats::default()
        },
        active: 4,
        half_open: 3,
        capacity: 4,
    };
    assert_eq!(shared.load(), first);
    // Two half-open flows evicted, one refused, two expired: none of it shows before the
    // interval has passed.
    t.mark_established(ids[1]);
    add(&mut t, &key(10), 1).unwrap();
    add(&mut t, &key(11), 2).unwrap();
    let (a, b) = (hit(&t, &key(10)).unwrap().0, hit(&t, &key(11)).unwrap().0);
    t.mark_established(a);
    t.mark_established(b);
    assert_eq!(add(&mut t, &key(12), 3), Err(FlowTableFull));
    // Established flows time out after 5 days (nftables): jump past it.
    let later = 6 * 24 * 3600 * 1000;
    assert_eq!(t.expire(later, 2, |_| {}), 2);
    t.publish(EVERY - 1, EVERY);
    assert_eq!(shared.load(), first, "not due before the interval");
    t.publish(EVERY, EVERY);
    let second = shared.load();
    assert_eq!(second.stats, *t.stats());
    assert_eq!(
        second.stats,
        FlowTableStats {
            inserted: 6,
            removed: 0,
            expired: 2,
            evicted_half_open: 2,
            full: 1,
        }
    );
    assert_eq!(
        (second.active, second.half_open, second.capacity),
        (2, 0, 4)
    );
    t.publish(2 * EVERY - 1, EVERY);
    t.publish(later, EVERY);
    assert_eq!(shared.load().active, t.len() as u64);
}

/// Runs the sweep at every tick of `ticks` (one call per tick, like one poll each), returning
/// the flows (by the key's source) it reported in order.
fn sweep_over(
    s: &mut UpdateSweep,
    t: &FlowTable<State>,
    ticks: std::ops::Range<u64>,
    budget: usize,
) -> Vec<u128> {
    let mut seen = Vec::new();
    for now in ticks {
        s.run(t, now, budget, |e| seen.push(e.key().src));
    }
    seen
}

#[test]
fn the_update_sweep_reports_active_flows_once_per_interval_and_idle_ones_never() {
    // 16 slots, one pass per 1000 ticks.
    let mut t = table(16);
    let (busy, idle) = (key(1), key(2));
    let b = add(&mut t, &busy, 0).unwrap().id;
    add(&mut t, &idle, 0).unwrap();
    let mut s = UpdateSweep::new(1000);
    // A table this small is visited in one batch per pass, at its end. The first pass reports
    // both (they had packets since the sweep started).
    let first = sweep_over(&mut s, &t, 0..1001, 64);
    assert_eq!(first.len(), 2, "{first:?}");
    // Ten more passes: the busy flow gets a packet every 100 ticks, the idle one nothing.
    let mut seen = Vec::new();
    for now in 1001..11_001u64 {
        if now.is_multiple_of(100) {
            t.touch(
                b,
                Direction::Original,
                60,
                TimeoutClass::TcpEstablished,
                now,
            );
        }
        s.run(&t, now, 64, |e| seen.push(e.key().src));
    }
    assert_eq!(seen.len(), 10, "once per interval: {seen:?}");
    assert!(seen.iter().all(|&src| src == busy.src));
    // Every slot is visited once per interval.
    assert_eq!(s.visits(), 11 * 16);
    // A packet after the last visit is reported at the next one, and only then.
    t.touch(
        b,
        Direction::Reply,
        60,
        TimeoutClass::TcpEstablished,
        11_050,
    );
    assert_eq!(sweep_over(&mut s, &t, 11_001..12_001, 64), [busy.src]);
    let late = sweep_over(&mut s, &t, 12_001..13_001, 64);
    assert!(late.is_empty(), "{late:?} {s:?}");
}

#[test]
fn the_update_sweep_keeps_to_its_budget_and_resumes_where_it_stopped() {
    let mut t = table(64);
    for i in 0..64 {
        add(&mut t, &key(i), 10).unwrap();
    }
    let mut s = UpdateSweep::new(1000);
    s.run(&t, 10, 4, |_| {});
    // A whole pass is due at once (a stalled worker): 4 slots per call, never more.
    let mut seen = Vec::new();
    let mut calls = 0;
    while seen.len() < 64 {
        let n = s.run(&t, 1_020, 4, |e| seen.push(e.key().src));
        assert!(n <= 4, "visited {n}");
        calls += 1;
        assert!(calls <= 17, "no progress");
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 64, "every flow once, in order of the slots");
    assert_eq!(s.run(&t, 1_020, 4, |_| panic!("nothing due")), 0);
}

#[test]
fn an_update_interval_of_zero_never_visits() {
    let mut t = table(4);
    add(&mut t, &key(1), 0).unwrap();
    let mut s = UpdateSweep::new(0);
    assert!(sweep_over(&mut s, &t, 0..10_000, 64).is_empty());
    assert_eq!(s.visits(), 0);
}

#[test]
fn a_sweep_far_behind_skips_ahead_and_still_reports_what_it_had_not_covered() {
    let mut t = table(8);
    let a = add(&mut t, &key(1), 0).unwrap().id;
    let mut s = UpdateSweep::new(1000);
    assert_eq!(sweep_over(&mut s, &t, 0..1001, 64).len(), 1);
    // A packet right after its visit, then the clock jumps ten passes ahead.
    t.touch(
        a,
        Direction::Original,
        60,
        TimeoutClass::TcpEstablished,
        1_001,
    );
    let mut seen = Vec::new();
    let n = s.run(&t, 11_000, 64, |e| seen.push(e.key().src));
    assert_eq!(n, 8, "one pass over every slot, not ten");
    assert_eq!(seen, [key(1).src], "the packet before the jump is reported");
    assert!(sweep_over(&mut s, &t, 11_001..12_001, 64).is_empty());
    assert_eq!(s.visits(), 96);
}

#[test]
fn the_update_sweep_sees_flows_inserted_and_removed_between_visits() {
    let mut t = table(8);
    let mut s = UpdateSweep::new(800);
    // Nothing live: visits, no reports.
    assert!(sweep_over(&mut s, &t, 0..801, 64).is_empty());
    assert_eq!(s.visits(), 8);
    let id = add(&mut t, &key(3), 900).unwrap().id;
    t.remove(id);
    add(&mut t, &key(4), 950).unwrap();
    assert_eq!(sweep_over(&mut s, &t, 801..1601, 64), [key(4).src]);
}

#[test]
fn a_large_table_is_swept_in_groups_each_flow_reported_once_per_pass() {
    // 1024 slots in groups of 64: 16 groups per pass of 1000 ticks.
    let mut t = table(1024);
    let ids: Vec<FlowId> = (0..300)
        .map(|i| add(&mut t, &key(i), 0).unwrap().id)
        .collect();
    let mut s = UpdateSweep::new(1000);
    let mut reports = std::collections::HashMap::<u128, u32>::new();
    let mut most = 0;
    for now in 0..10_000 {
        // Every flow has a packet every 7 ticks (somewhere in each pass).
        for (i, id) in ids.iter().enumerate() {
            if (now + i as u64).is_multiple_of(7) {
                t.touch(
                    *id,
                    Direction::Original,
                    60,
                    TimeoutClass::TcpEstablished,
                    now,
                );
            }
        }
        most = most.max(s.run(&t, now, 64, |e| {
            *reports.entry(e.key().src).or_default() += 1
        }));
    }
    assert_eq!(most, 64, "one group per call");
    assert_eq!(reports.len(), 300);
    // Ten passes, the last one perhaps not finished by tick 9999.
    assert!(reports.values().all(|&n| n == 9 || n == 10), "{reports:?}");
}
