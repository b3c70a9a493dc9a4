//! The per-core state modules allocate nothing after construction: conntrack over a flow table
//! (inserts, evictions of half-open flows, refusals, expiry) and the fragment table (heads,
//! followers, overlaps, expiry) run under a counting global allocator (its own test binary).

use std::alloc::System;
use std::net::Ipv4Addr;

use septa_dataplane::conntrack::{self, Conn};
use septa_dataplane::flow::{FlowTable, FlowTableConfig};
use septa_dataplane::frag::{FragConfig, FragTable, fragment_info};
use septa_dataplane::parse::{Fragment, TcpFlags, parse};
use septa_dataplane::testgen::FrameBuilder;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn state_modules_do_not_allocate_after_construction() {
    let server = Ipv4Addr::new(192, 168, 0, 1);
    // 512 distinct flows: SYNs (half-open, evictable), UDP requests and replies.
    let mut frames = Vec::new();
    for i in 0..512u32 {
        let src = Ipv4Addr::from(0x0a00_0000 + i);
        frames.push(
            FrameBuilder::new()
                .ipv4(src, server)
                .tcp(1024 + i as u16, 443, TcpFlags::SYN)
                .build(),
        );
        frames.push(FrameBuilder::new().ipv4(src, server).udp(2000, 53).build());
        frames.push(FrameBuilder::new().ipv4(server, src).udp(53, 2000).build());
    }
    let frags: Vec<Vec<u8>> = (0..64u64)
        .flat_map(|id| {
            let b = FrameBuilder::new()
                .ipv4(Ipv4Addr::new(10, 9, 0, 1), server)
                .udp(7, 7)
                .seq(id);
            [
                b.clone().fragment(0, true).payload_len(64).build(),
                b.clone().fragment(72, true).payload_len(64).build(),
                b.clone().fragment(64, false).payload_len(40).build(), // overlap
            ]
        })
        .collect();
    // Smaller than the flow count, so inserts evict and, once only replied UDP flows are left,
    // are refused.
    let mut flows: FlowTable<Conn> =
        FlowTable::new(&FlowTableConfig::new(256, 1000), [1, 2]).unwrap();
    let mut frag: FragTable<u8> = FragTable::new(&FragConfig::new(16, 1000), [3, 4]).unwrap();

    let region = Region::new(GLOBAL);
    let mut now = 0;
    let (mut ok, mut dropped) = (0u64, 0u64);
    for round in 0..20 {
        for f in &frames {
            now += 1;
            let pkt = parse(f).unwrap();
            match conntrack::track(&mut flows, &pkt, f, now) {
                Ok(_) => ok += 1,
                Err(_) => dropped += 1,
            }
        }
        for f in &frags {
            let pkt = parse(f).unwrap();
            let info = fragment_info(&pkt, f).unwrap();
            let r = match pkt.fragment {
                Fragment::First => frag
                    .head(&pkt, &info, pkt.key, round as u8, now)
                    .map(|_| ()),
                _ => frag.follow(&pkt, &info, now).map(|_| ()),
            };
            if r.is_ok() { ok += 1 } else { dropped += 1 }
        }
        now += 200_000;
        flows.expire(now, usize::MAX, |_| {});
        frag.expire(now, usize::MAX);
    }
    let change = region.change();
    assert_eq!(change.allocations, 0, "allocations in the state modules");
    assert_eq!(
        change.reallocations, 0,
        "reallocations in the state modules"
    );
    assert!(ok > 0 && dropped > 0);
    assert!(
        flows.stats().evicted_half_open > 0 && flows.stats().full > 0 && flows.stats().expired > 0
    );
}
