//! Proves the steady-state poll loop allocates nothing: a counting global allocator (its own
//! test binary, since the global allocator is per binary) wraps the system allocator, and
//! thousands of polls over the memory backend in ring mode must not move its counter.

use std::alloc::System;
use std::net::{Ipv4Addr, Ipv6Addr};

use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::testgen::{FrameBuilder, Ipv6Ext, MAC_A, arp_request};
use septa_dataplane::{Bridge, Decision, Stats, Worker};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

// Implementing `GlobalAlloc` needs code the workspace lints forbid (even in tests), so the
// counting allocator comes from `stats_alloc` rather than a local impl.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn steady_state_polls_do_not_allocate() {
    let a = Ipv4Addr::new(10, 1, 0, 1);
    let b = Ipv4Addr::new(10, 2, 0, 1);
    let frames: Vec<Vec<u8>> = (0..100u64)
        .map(|i| match i % 5 {
            0 => FrameBuilder::new()
                .ipv4(a, b)
                .tcp(1000, 80, 0x10)
                .seq(i)
                .build(),
            1 => FrameBuilder::new()
                .vlan(7)
                .ipv4(a, b)
                .udp(1000, 53)
                .seq(i)
                .build(),
            2 => FrameBuilder::new()
                .ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST)
                .ext(Ipv6Ext::HopByHop)
                .tcp(1, 2, 0x02)
                .seq(i)
                .build(),
            3 => arp_request(MAC_A, a, b),
            _ => vec![0u8; 12], // truncated: dropped, so the ring drains it
        })
        .collect();
    let mut io = MemoryIo::new(2);
    io.ring(0, 1, 256);
    for f in &frames {
        io.push_rx(0, f.clone());
    }
    let mut w = Worker::new(Bridge::new(2, &[(0, 1)]).unwrap(), Decision::AllowAll);
    // Warm-up: the truncated frames are dropped (their buffers freed) on the first pass.
    for _ in 0..10 {
        w.poll(&mut io, &mut ());
    }
    let region = Region::new(GLOBAL);
    let mut received = 0;
    for _ in 0..5_000 {
        received += w.poll(&mut io, &mut ());
    }
    let change = region.change();
    assert_eq!(
        change.allocations, 0,
        "allocations during steady-state polls"
    );
    assert_eq!(
        change.reallocations, 0,
        "reallocations during steady-state polls"
    );
    assert_eq!(received, 5_000 * 32, "every poll moved a full burst");
    let s = Stats::collect([&**w.counters()]);
    assert_eq!(s.drops(septa_dataplane::DropReason::Truncated), 20);
    assert!(s.non_ip_forwarded > 0);
}
