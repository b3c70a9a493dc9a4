//! The feature sampler allocates nothing after construction: flow starts (spread sketches),
//! packets, emissions into the ring (also when it is full) and flow ends.

use std::alloc::System;
use std::net::Ipv4Addr;
use std::sync::mpsc::sync_channel;

use septa_classifier::FlowKey;
use septa_dataplane::flow::Direction;
use septa_dataplane::sample::{Sampler, SamplerConfig};
use septa_features::FunctionClass;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn sampling_does_not_allocate() {
    let (tx, rx) = sync_channel(64);
    let mut s = Sampler::new(0, SamplerConfig::new(1024), tx).unwrap();
    let keys: Vec<FlowKey> = (0..1024u32)
        .map(|i| {
            FlowKey::v4(
                Ipv4Addr::new(10, 0, 0, (i % 7) as u8),
                Ipv4Addr::from(0x0a01_0000 + i),
                6,
                40000,
                445,
            )
        })
        .collect();
    // warm up: the channel's array is allocated with it, but touch every path once anyway
    s.flow_start(0, &keys[0], 0);
    s.flow_end(0, &keys[0], 1);
    while rx.try_recv().is_ok() {}
    let region = Region::new(GLOBAL);
    for round in 0..4u64 {
        for (slot, k) in keys.iter().enumerate() {
            let t = round * 20_000_000 + slot as u64;
            s.flow_start(slot, k, t);
            for p in 0..12u64 {
                let dir = if p % 2 == 0 {
                    Direction::Original
                } else {
                    Direction::Reply
                };
                s.on_packet(slot, k, dir, 60 + p as u16, 0x18, t + p * 100);
            }
            s.on_function(slot, FunctionClass::Read);
            s.flow_end(slot, k, t + 2_000);
        }
    }
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "{stats:?}"
    );
    let c = s.counters();
    assert!(
        c.ring_full > 0 && c.emitted > 0,
        "the ring filled up during the run: {c:?}"
    );
    drop(rx);
}
