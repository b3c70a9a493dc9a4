//! Proves the steady-state poll loop under a rule table allocates nothing: per burst the worker
//! loads the table, parses, classifies the flow keys in one call and applies the decisions, all
//! in fixed arrays. A counting global allocator (its own test binary) must not move, even across
//! a table publish, whose retired table the worker releases without freeing it.

use std::alloc::System;
use std::net::{Ipv4Addr, Ipv6Addr};

use septa_classifier::{Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, TableCell};
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::testgen::{FrameBuilder, MAC_A, arp_request};
use septa_dataplane::{Bridge, Decision, DropReason, Stats, Worker};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

// Implementing `GlobalAlloc` needs code the workspace lints forbid (even in tests), so the
// counting allocator comes from `stats_alloc` rather than a local impl.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn rules() -> Vec<Rule> {
    let to = |id, action, mode, p| Rule {
        dst: AddrMatch::prefix(p),
        mode,
        ..Rule::any(id, action)
    };
    vec![
        Rule {
            proto: Some(6),
            dport: PortRange { lo: 80, hi: 80 },
            ..to(
                1,
                Action::Allow,
                Mode::Enforce,
                Prefix::v4(Ipv4Addr::new(10, 2, 0, 0), 16),
            )
        },
        to(
            2,
            Action::Deny,
            Mode::Monitor,
            Prefix::v4(Ipv4Addr::new(10, 3, 0, 0), 16),
        ),
        to(
            3,
            Action::Inspect(HookId(1)),
            Mode::Enforce,
            Prefix::v4(Ipv4Addr::new(10, 4, 0, 0), 16),
        ),
        to(
            4,
            Action::Allow,
            Mode::Enforce,
            Prefix::v6(Ipv6Addr::LOCALHOST, 128),
        ),
    ]
}

#[test]
fn steady_state_polls_under_a_rule_table_do_not_allocate() {
    let a = Ipv4Addr::new(10, 1, 0, 1);
    let frames: Vec<Vec<u8>> = (0..100u64)
        .map(|i| match i % 6 {
            0 => FrameBuilder::new()
                .ipv4(a, Ipv4Addr::new(10, 2, 0, 1))
                .tcp(1000, 80, 0x10)
                .seq(i)
                .build(),
            1 => FrameBuilder::new()
                .vlan(7)
                .ipv4(a, Ipv4Addr::new(10, 3, 0, 1))
                .udp(1000, 53)
                .seq(i)
                .build(),
            2 => FrameBuilder::new()
                .ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST)
                .tcp(1, 2, 0x02)
                .seq(i)
                .build(),
            3 => arp_request(MAC_A, a, Ipv4Addr::new(10, 2, 0, 1)),
            4 => FrameBuilder::new()
                .ipv4(a, Ipv4Addr::new(10, 4, 0, 1))
                .tcp(1000, 502, 0x10)
                .seq(i)
                .build(),
            _ => vec![0u8; 12],
        })
        .collect();
    let mut io = MemoryIo::new(2);
    io.ring(0, 1, 256);
    for f in &frames {
        io.push_rx(0, f.clone());
    }
    let cell = TableCell::new(septa_classifier::compile(&rules()).unwrap());
    let next = septa_classifier::compile(&rules()).unwrap();
    let mut w = Worker::new(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
    );
    // Warm-up: dropped frames leave the ring on the first passes.
    for _ in 0..10 {
        w.poll(&mut io, &mut ());
    }
    cell.publish(next);
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
    assert_eq!(
        change.deallocations, 0,
        "a worker never frees a retired table"
    );
    assert_eq!(cell.reclaim(), 0, "the worker let go of the retired table");
    assert!(received > 4_000 * 32, "polls moved full bursts: {received}");
    let s = Stats::collect([&**w.counters()]);
    assert!(s.would_deny > 0 && s.drops(DropReason::L7Unavailable) > 0);
    assert!(s.drops(DropReason::Policy) == 0, "{s}");
}
