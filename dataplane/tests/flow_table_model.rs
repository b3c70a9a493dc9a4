//! The flow table against a `HashMap` model under random insert / touch / establish / remove /
//! expire sequences: same membership, same directions, same eviction victims, same refusals,
//! and expiry within the wheel's one-slot granularity.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use septa_classifier::FlowKey;
use septa_dataplane::flow::{
    Direction, FlowTable, FlowTableConfig, FlowTableFull, Lookup, TimeoutClass, Timeouts, canonical,
};

const SHIFT: u32 = 2;

#[derive(Clone, Debug)]
enum Op {
    Insert(usize),
    Touch(usize, usize),
    Establish(usize),
    Reopen(usize),
    Remove(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..24usize).prop_map(Op::Insert),
        3 => (0..24usize, 0..TimeoutClass::COUNT).prop_map(|(k, c)| Op::Touch(k, c)),
        2 => (0..24usize).prop_map(Op::Establish),
        1 => (0..24usize).prop_map(Op::Reopen),
        1 => (0..24usize).prop_map(Op::Remove),
        2 => (0..300u64).prop_map(Op::Advance),
    ]
}

/// 12 endpoints pairs; keys 12..24 are the reverses of 0..12.
fn key(i: usize) -> FlowKey {
    let k = FlowKey::v4(
        Ipv4Addr::new(10, 0, 0, (i % 12) as u8),
        Ipv4Addr::new(10, 0, 1, (i % 5) as u8),
        if i.is_multiple_of(3) { 17 } else { 6 },
        1000 + (i % 12) as u16,
        80,
    );
    if i >= 12 { k.reversed() } else { k }
}

const CLASSES: [TimeoutClass; TimeoutClass::COUNT] = [
    TimeoutClass::TcpSynSent,
    TimeoutClass::TcpSynRecv,
    TimeoutClass::TcpEstablished,
    TimeoutClass::TcpFinWait,
    TimeoutClass::TcpCloseWait,
    TimeoutClass::TcpLastAck,
    TimeoutClass::TcpTimeWait,
    TimeoutClass::TcpClose,
    TimeoutClass::Udp,
    TimeoutClass::UdpStream,
    TimeoutClass::Icmp,
    TimeoutClass::Other,
];

struct Model {
    /// canonical key -> (originator key, expires, embryonic, insertion order)
    flows: HashMap<FlowKey, (FlowKey, u64, bool, u64)>,
    order: u64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn flow_table_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut timeouts = Timeouts { ticks: [0; TimeoutClass::COUNT] };
        for (i, c) in CLASSES.iter().enumerate() {
            // 3 .. 200 ticks; one class longer than a wheel revolution (16 slots * 4 ticks).
            timeouts.set(*c, [3, 10, 200, 20, 7, 5, 40, 1, 30, 90, 15, 64][i]);
        }
        let cfg = FlowTableConfig { capacity: 8, max_half_open: 6, timeouts, wheel_shift: SHIFT, wheel_slots: 16 };
        let mut t: FlowTable<u32> = FlowTable::new(&cfg, [7, 9]).unwrap();
        let mut m = Model { flows: HashMap::new(), order: 0 };
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Insert(i) => {
                    let k = key(i);
                    let (ck, _) = canonical(&k);
                    match t.lookup(&k) {
                        Lookup::Hit { dir, .. } => {
                            let (orig, ..) = m.flows.get(&ck).expect("hit on a key the model lacks");
                            let want = if *orig == k { Direction::Original } else { Direction::Reply };
                            prop_assert_eq!(dir, want);
                        }
                        Lookup::Miss(v) => {
                            prop_assert!(!m.flows.contains_key(&ck));
                            let half = m.flows.values().filter(|f| f.2).count();
                            let must_make_room = m.flows.len() == 8 || half >= 6;
                            let victim = m.flows.iter().filter(|(_, f)| f.2).min_by_key(|(_, f)| f.3).map(|(k, _)| *k);
                            let r = t.insert(v, i as u32, TimeoutClass::TcpSynSent, now);
                            if must_make_room && victim.is_none() {
                                prop_assert_eq!(r, Err(FlowTableFull));
                                continue;
                            }
                            let r = r.unwrap();
                            prop_assert_eq!(r.evicted, must_make_room);
                            if must_make_room {
                                m.flows.remove(&victim.unwrap());
                            }
                            m.order += 1;
                            m.flows.insert(ck, (k, now + 3, true, m.order));
                            prop_assert_eq!(t.entry(r.id).key(), k);
                        }
                    }
                }
                Op::Touch(i, c) => {
                    if let Lookup::Hit { id, dir } = t.lookup(&key(i)) {
                        t.touch(id, dir, 100, CLASSES[c], now);
                        let f = m.flows.get_mut(&canonical(&key(i)).0).unwrap();
                        f.1 = now + timeouts.get(CLASSES[c]);
                    }
                }
                Op::Establish(i) => {
                    if let Lookup::Hit { id, .. } = t.lookup(&key(i)) {
                        t.mark_established(id);
                        m.flows.get_mut(&canonical(&key(i)).0).unwrap().2 = false;
                        prop_assert!(!t.entry(id).is_embryonic());
                    }
                }
                Op::Reopen(i) => {
                    if let Lookup::Hit { id, .. } = t.lookup(&key(i)) {
                        t.mark_embryonic(id);
                        let f = m.flows.get_mut(&canonical(&key(i)).0).unwrap();
                        if !f.2 {
                            // Back on the young end of the half-open list.
                            m.order += 1;
                            f.2 = true;
                            f.3 = m.order;
                        }
                    }
                }
                Op::Remove(i) => {
                    if let Lookup::Hit { id, .. } = t.lookup(&key(i)) {
                        t.remove(id);
                        prop_assert!(m.flows.remove(&canonical(&key(i)).0).is_some());
                    }
                }
                Op::Advance(dt) => {
                    now += dt;
                    let mut gone = Vec::new();
                    t.expire(now, usize::MAX, |e| gone.push(e.key()));
                    for k in gone {
                        let (_, exp, ..) = m.flows.remove(&canonical(&k).0).expect("expired unknown flow");
                        prop_assert!(exp <= now, "expired early: {exp} > {now}");
                    }
                    let slot_start = (now >> SHIFT) << SHIFT;
                    for (orig, exp, ..) in m.flows.values() {
                        prop_assert!(*exp >= slot_start, "{orig} overdue: expires {exp}, now {now}");
                    }
                }
            }
            prop_assert_eq!(t.len(), m.flows.len());
            prop_assert_eq!(t.half_open_len(), m.flows.values().filter(|f| f.2).count());
            for (ck, (orig, ..)) in &m.flows {
                let both = matches!(t.lookup(ck), Lookup::Hit { .. })
                    && matches!(t.lookup(&orig.reversed()), Lookup::Hit { .. });
                prop_assert!(both, "{} lost", orig);
            }
        }
    }
}
