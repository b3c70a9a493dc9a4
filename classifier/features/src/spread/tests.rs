use std::net::{IpAddr, Ipv4Addr};

use super::*;

const W: u64 = 10_000_000;

fn v4(a: u32) -> u128 {
    u128::from(0x0a00_0000 + a)
}

fn flow(src: u32, dst: u32, dport: u16, tick: u64) -> NewFlow {
    NewFlow {
        src: v4(src),
        dst: v4(0x1_0000 + dst),
        tick,
        dport,
        proto: 6,
    }
}

fn key_of(f: &NewFlow) -> FlowKey {
    let ip = |a: u128| IpAddr::V4(Ipv4Addr::from(a as u32));
    FlowKey {
        src: ip(f.src),
        dst: ip(f.dst),
        src_port: 40000,
        dst_port: f.dport,
        proto: f.proto,
    }
}

fn sketches() -> SpreadSketches {
    SpreadSketches::new(SpreadConfig::default()).unwrap()
}

fn send(tx: &mut SampleSender, flows: impl IntoIterator<Item = NewFlow>) {
    for f in flows {
        tx.try_send_flow(f).unwrap();
    }
}

/// A record of flow `f` whose spread is to be looked up at `tick` after `flows` new flows.
fn record(f: &NewFlow, tick: u64, flows: u64) -> Sampled {
    Sampled {
        record: FeatureRecord {
            key: key_of(f),
            ..FeatureRecord::default()
        },
        spread: Some(SpreadQuery { tick, flows }),
    }
}

#[test]
fn estimate_tables_give_the_linear_counting_formula() {
    for m in [192usize, 256, 448, 512] {
        let t = Estimates::new(m);
        let mut bits = vec![0u64; m / 64];
        assert_eq!(t.of(&bits), 0);
        // Bits set one at a time in a scattered order (37 is coprime with every m here).
        for set in 1..=m {
            let b = (set * 37) % m;
            bits[b / 64] |= 1 << (b % 64);
            assert_eq!(
                t.of(&bits),
                linear_count(m as u32, (m - set) as u32),
                "m {m}"
            );
        }
    }
    assert_eq!(linear_count(448, 447), 1);
    // The ceilings: a full bitmap reports m ln m.
    assert_eq!(Estimates::new(256).of(&[u64::MAX; 4]), 1420);
    assert_eq!(Estimates::new(448).of(&[u64::MAX; 7]), 2735);
}

#[test]
fn bad_config_is_rejected() {
    let bad = |slots, window_us| SpreadSketches::new(SpreadConfig { slots, window_us }).err();
    assert_eq!(bad(1000, W), Some(SpreadConfigError::Slots(1000)));
    assert_eq!(bad(8, W), Some(SpreadConfigError::Slots(8)));
    assert_eq!(bad(1 << 21, W), Some(SpreadConfigError::Slots(1 << 21)));
    assert_eq!(bad(4096, 999_999), Some(SpreadConfigError::Window(999_999)));
    assert!(bad(16, 1_000_000).is_none());
    assert!(
        SpreadConfigError::Slots(1000)
            .to_string()
            .contains("power of two")
    );
}

/// A record sees the new flows its worker sent before it, not those sent after it (when the
/// receiver reads it before they are needed), and a record without a query is passed on as is.
#[test]
fn a_record_sees_the_new_flows_sent_before_it() {
    let (mut tx, mut rx) = sample_channel(16, 64);
    let mut sk = sketches();
    // 10.0.0.1 reaches 30 hosts on 445, then a record, then 16 more hosts.
    let first: Vec<_> = (0..30).map(|h| flow(1, h, 445, 1_000_000)).collect();
    send(&mut tx, first.iter().copied());
    assert_eq!(tx.flows_sent(), 30);
    tx.try_send_record(record(&first[0], 1_000_000, 30))
        .unwrap();
    send(&mut tx, (30..46).map(|h| flow(1, h, 445, 1_000_001)));
    let plain = FeatureRecord {
        duration_us: 5,
        ..FeatureRecord::default()
    };
    tx.try_send_record(plain.into()).unwrap();
    tx.try_send_record(record(&first[0], 1_000_001, 46))
        .unwrap();

    let r = rx.try_recv(&mut sk).unwrap();
    assert_eq!(sk.flows(), 30, "only the flows before the record");
    assert!(
        (28..=32).contains(&r.spread.src_hosts_on_port),
        "{:?}",
        r.spread
    );
    assert_eq!(r.spread.src_ports, 1);
    assert_eq!(r.spread.dst_sources, 1);
    assert_eq!(r.spread.window_s, 10);
    assert_eq!(rx.try_recv(&mut sk).unwrap(), plain);
    let r = rx.try_recv(&mut sk).unwrap();
    assert!((44..=48).contains(&r.spread.src_hosts), "{:?}", r.spread);
    assert!(rx.try_recv(&mut sk).is_none());
    assert_eq!(rx.drain_spread(&mut sk), 0);
}

/// New flows the full ring refused are missing from the estimates (low, never wrong) and are
/// not counted in what a record waits for; the receiver goes on with what arrived. A gone
/// receiver refuses both kinds of send.
#[test]
fn lost_flows_make_estimates_low_and_nothing_waits_for_them() {
    let (mut tx, mut rx) = sample_channel(16, 16);
    let mut sk = sketches();
    send(&mut tx, (0..16).map(|h| flow(1, h, 22, 0)));
    assert_eq!(
        tx.try_send_flow(flow(1, 16, 22, 0)),
        Err(SendFailed),
        "a ring of 16 flows"
    );
    assert_eq!(tx.flows_sent(), 16, "a refused flow is not counted as sent");
    tx.try_send_record(record(&flow(1, 0, 22, 0), 0, tx.flows_sent()))
        .unwrap();
    let r = rx.try_recv(&mut sk).unwrap();
    assert!((15..=17).contains(&r.spread.src_hosts), "{:?}", r.spread);
    // A flow sent after the record: applied by the next drain.
    tx.try_send_flow(flow(2, 0, 22, 0)).unwrap();
    assert_eq!(rx.drain_spread(&mut sk), 1);
    assert_eq!(sk.flows(), 17);
    drop(rx);
    assert_eq!(
        tx.try_send_record(FeatureRecord::default().into()),
        Err(SendFailed)
    );
    assert_eq!(tx.try_send_flow(flow(2, 1, 22, 0)), Err(SendFailed));
    assert_eq!(tx.flows_sent(), 17);
}

/// Full rings refuse records too, and take them again once the receiver reads.
#[test]
fn a_full_record_ring_refuses_until_read() {
    let (mut tx, mut rx) = sample_channel(2, 4);
    let mut sk = sketches();
    let r = |d| {
        Sampled::from(FeatureRecord {
            duration_us: d,
            ..FeatureRecord::default()
        })
    };
    tx.try_send_record(r(1)).unwrap();
    tx.try_send_record(r(2)).unwrap();
    assert_eq!(tx.try_send_record(r(3)), Err(SendFailed));
    assert_eq!(rx.try_recv(&mut sk).unwrap().duration_us, 1);
    tx.try_send_record(r(4)).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| rx.try_recv(&mut sk))
        .map(|r| r.duration_us)
        .collect();
    assert_eq!(got, [2, 4]);
}

/// One set of sketches for every worker: a sweep whose flows two workers saw shows whole.
#[test]
fn workers_share_the_sketches() {
    let (mut tx0, mut rx0) = sample_channel(4, 16);
    let (mut tx1, mut rx1) = sample_channel(4, 16);
    let mut sk = sketches();
    send(&mut tx0, (0..16).map(|h| flow(1, 2 * h, 445, 5)));
    send(&mut tx1, (0..16).map(|h| flow(1, 2 * h + 1, 445, 7)));
    assert_eq!(rx1.drain_spread(&mut sk), 16);
    tx0.try_send_record(record(&flow(1, 0, 445, 5), 9, 16))
        .unwrap();
    let r = rx0.try_recv(&mut sk).unwrap();
    assert!((31..=33).contains(&r.spread.src_hosts), "{:?}", r.spread);
}

#[test]
fn windows_tumble_and_a_late_flow_never_evicts_a_current_slot() {
    let mut sk = sketches();
    let f = |src, dst, tick| flow(src, dst, 80, tick);
    for h in 0..10 {
        sk.add(&f(1, h, 9 * W + 5));
    }
    let est = |sk: &SpreadSketches, src, tick| sk.estimate(&key_of(&f(src, 0, 0)), tick);
    assert_eq!(est(&sk, 1, 9 * W).src_hosts, 10);
    // The next window starts afresh; the old one is gone.
    sk.add(&f(1, 100, 10 * W));
    assert_eq!(est(&sk, 1, 10 * W).src_hosts, 1);
    assert_eq!(est(&sk, 1, 9 * W).src_hosts, 1, "that window is over");
    // A worker a little behind (still in window 9): its flow of the same source counts in the
    // slot's window, not as a reset of it.
    sk.add(&f(1, 101, 10 * W - 3));
    assert_eq!(est(&sk, 1, 10 * W).src_hosts, 2);
    assert_eq!(sk.evictions(), 0);
    // In a table of 16 slots, an old flow of another key finds a slot of window 10 and skips it
    // (counted) instead of taking it over.
    let mut tiny = SpreadSketches::new(SpreadConfig {
        slots: 16,
        window_us: W,
    })
    .unwrap();
    for src in 0..64 {
        tiny.add(&f(src, 0, 10 * W));
    }
    let evicted = tiny.evictions();
    assert!(evicted > 0, "64 sources in 16 slots, one window");
    for src in 64..128 {
        tiny.add(&f(src, 0, 9 * W));
    }
    assert_eq!(tiny.evictions(), evicted, "old flows evict nothing");
    assert!(tiny.stale() > 0);
    assert_eq!(tiny.flows(), 128);
}

#[test]
fn ipv6_flows_and_their_records_meet_in_the_same_slots() {
    let mut sk = sketches();
    let src: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    for h in 0..20u16 {
        let dst = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, h);
        sk.add(&NewFlow {
            src: u128::from(src),
            dst: u128::from(dst),
            tick: 0,
            dport: 443,
            proto: 6,
        });
    }
    let key = FlowKey {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, 0)),
        src_port: 1,
        dst_port: 443,
        proto: 6,
    };
    let s = sk.estimate(&key, 0);
    assert!((19..=21).contains(&s.src_hosts_on_port), "{s:?}");
    assert_eq!(
        addr_u128(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        0x0a00_0001
    );
}

/// The sizes the ring memory in `sample_channel`'s documentation and `SPREAD_RING`'s are
/// computed from.
#[test]
fn ring_item_sizes() {
    assert_eq!(size_of::<Sampled>(), 208);
    assert_eq!(size_of::<NewFlow>(), 48);
}
