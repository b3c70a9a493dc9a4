//! Proves the steady-state poll loop under a rule table allocates nothing: per burst the worker
//! loads the table, parses, classifies the flow keys in one call and applies the decisions, all
//! in fixed arrays. A counting global allocator (its own test binary) must not move, even across
//! a table publish, whose retired table the worker releases without freeing it.

use std::alloc::System;
use std::net::{Ipv4Addr, Ipv6Addr};

use septa_classifier::{Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, TableCell};
use septa_dataplane::events::{self, EventDrain};
use septa_dataplane::flow::TimeoutClass;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::testgen::{FrameBuilder, MAC_A, Side, TcpSession, arp_request};
use septa_dataplane::{Bridge, Decision, DropReason, StateConfig, Stats, Worker, WorkerState};
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
    // Circulating (forwarded) traffic: an allowed TCP connection in both directions, a
    // monitor-denied UDP flow (would-deny, expires and is re-created as the clock runs), an
    // allowed IPv6 UDP flow, ARP.
    let mut web = TcpSession::v4(a, 1000, Ipv4Addr::new(10, 2, 0, 1), 80);
    let mut circulating = web.handshake();
    circulating.push(web.data(Side::Client, 100));
    circulating.push(web.data(Side::Server, 600));
    circulating.extend((0..20u64).map(|i| {
        FrameBuilder::new()
            .vlan(7)
            .ipv4(a, Ipv4Addr::new(10, 3, 0, 1))
            .udp(1000, 53)
            .seq(i)
            .build()
    }));
    circulating.extend((0..20u64).map(|i| {
        FrameBuilder::new()
            .ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST)
            .udp(1, 2)
            .seq(i)
            .build()
    }));
    circulating.push(arp_request(MAC_A, a, Ipv4Addr::new(10, 2, 0, 1)));
    // Refused traffic, consumed once each: inspect (fail closed), TCP without a flow,
    // malformed; and SYNs of allowed connections that never complete: they circulate, fill the
    // half-open cap (evictions), age out between passes (expiry, flow-end events) and come
    // back as new flows, so inserts and removals run throughout the measured polls.
    let refused: Vec<Vec<u8>> = (0..3000u64)
        .map(|i| match i % 4 {
            3 => FrameBuilder::new()
                .ipv4(a, Ipv4Addr::new(10, 2, 0, 1))
                .tcp(20_000 + i as u16, 80, 0x02)
                .seq(i)
                .build(),
            0 => FrameBuilder::new()
                .ipv4(a, Ipv4Addr::new(10, 4, 0, 1))
                .tcp(1000 + i as u16, 502, 0x02)
                .seq(i)
                .build(),
            1 => FrameBuilder::new()
                .ipv4(a, Ipv4Addr::new(10, 2, 0, 1))
                .tcp(1000 + i as u16, 80, 0x10)
                .seq(i)
                .build(),
            _ => vec![0u8; 12],
        })
        .collect();
    let mut io = MemoryIo::new(2);
    io.ring(0, 1, 4096);
    for f in circulating.iter().chain(&refused) {
        io.push_rx(0, f.clone());
    }
    let cell = TableCell::new(septa_classifier::compile(&rules()).unwrap());
    let next = septa_classifier::compile(&rules()).unwrap();
    let (sink, source) = events::ring(64);
    let mut drain = EventDrain::new(vec![source]);
    let mut cfg = StateConfig::new(1024);
    cfg.flows.timeouts.set(TimeoutClass::Udp, 30_000);
    cfg.flows.timeouts.set(TimeoutClass::UdpStream, 30_000);
    cfg.flows.timeouts.set(TimeoutClass::TcpSynSent, 5_000);
    let mut w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        WorkerState::new(&cfg, sink).unwrap(),
    );
    let mut now = 0;
    // Warm-up: the first passes create the flows.
    for _ in 0..10 {
        now += 1_000;
        w.state_mut().set_now(now);
        w.poll(&mut io, &mut ());
    }
    cell.publish(next);
    let mut seen = 0;
    let dropped_before = Stats::collect([&**w.counters()]).total_drops();
    let region = Region::new(GLOBAL);
    let mut received = 0;
    for i in 0..5_000 {
        now += 1_000;
        w.state_mut().set_now(now);
        received += w.poll(&mut io, &mut ());
        if i % 100 == 0 {
            drain.drain(usize::MAX, |_, _| seen += 1);
        }
    }
    let change = region.change();
    let dropped = Stats::collect([&**w.counters()]).total_drops() - dropped_before;
    assert_eq!(
        change.allocations, 0,
        "allocations during steady-state polls"
    );
    assert_eq!(
        change.reallocations, 0,
        "reallocations during steady-state polls"
    );
    // The memory backend frees the buffer of each dropped frame (DPDK returns the mbuf to its
    // pool); nothing else is freed: the worker never frees a retired table.
    assert_eq!(
        change.deallocations as u64, dropped,
        "only dropped frames' buffers are freed"
    );
    assert_eq!(cell.reclaim(), 0, "the worker let go of the retired table");
    assert!(received > 4_000 * 32, "polls moved full bursts: {received}");
    let s = Stats::collect([&**w.counters()]);
    assert!(s.would_deny > 0, "{s}");
    assert_eq!(s.drops(DropReason::L7Unavailable), 750, "{s}");
    assert_eq!(s.drops(DropReason::TcpNoFlow), 750, "{s}");
    let flows = w.state().flows().stats();
    assert!(
        flows.expired > 1000 && flows.evicted_half_open > 0 && flows.inserted > 2000,
        "half-open flows churned: {flows:?}"
    );
    assert!(seen > 0 && drain.lost() > 0, "events flowed and overflowed");
}
