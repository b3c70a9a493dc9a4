//! The worker with a feature sampler allocates nothing per packet: flow starts (new flows onto
//! their ring, sampling choice), sampled packets (identification included), emissions into the
//! rings (also when they are full) and flow ends at expiry, nor does the receiving side filling
//! the records' spread, measured by a counting global allocator (its own test binary: the count
//! is process-wide).

use std::alloc::System;
use std::net::Ipv4Addr;

use septa_classifier::{Action, Rule, TableCell, compile};
use septa_dataplane::flow::TimeoutClass;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::sample::{Sampler, SamplerConfig};
use septa_dataplane::testgen::{FrameBuilder, Side, TcpSession};
use septa_dataplane::{Bridge, Decision, StateConfig, Worker, WorkerState};
use septa_features::spread::{SoloReceiver, SpreadConfig, sample_channel};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn sampling_in_the_worker_does_not_allocate() {
    let (tx, rx) = sample_channel(64, 16);
    let mut rx = SoloReceiver::new(rx, SpreadConfig::default()).unwrap();
    let mut sc = SamplerConfig::new(256);
    sc.one_in = 2;
    sc.periodic_us = 50_000;
    let sampler = Sampler::new(0, sc, tx).unwrap();
    let cell = TableCell::new(compile(&[Rule::any(1, Action::Allow)]).unwrap());
    let mut cfg = StateConfig::new(4096);
    // A pass over the circulating frames takes about 20 polls (ticks of 1 ms): UDP flows
    // expire between their packets and start again.
    cfg.flows.timeouts.set(TimeoutClass::Udp, 5_000);
    cfg.flows.timeouts.set(TimeoutClass::TcpEstablished, 20_000);
    let mut state = WorkerState::new(&cfg, septa_dataplane::events::EventSink::disabled()).unwrap();
    state.set_sampler(sampler);
    let mut w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        state,
    );
    // Circulating traffic (the ring returns what is forwarded): UDP flows from many sources
    // (expire between passes and start again: flow starts, sketches, flow ends) and TCP
    // connections with data.
    let mut io = MemoryIo::new(2);
    io.ring(0, 1, 8192);
    for i in 0..600u32 {
        let f = FrameBuilder::new()
            .ipv4(
                Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8),
                Ipv4Addr::new(10, 1, 0, (i % 50) as u8),
            )
            .udp(40000, 53)
            .seq(u64::from(i))
            .build();
        io.push_rx(0, f);
    }
    for c in 0..50u16 {
        let mut s = TcpSession::v4(
            Ipv4Addr::new(10, 2, 0, 1),
            1000 + c,
            Ipv4Addr::new(10, 3, 0, 1),
            445,
        );
        for f in s.handshake() {
            io.push_rx(0, f);
        }
        for _ in 0..10 {
            io.push_rx(0, s.data(Side::Client, 100));
        }
    }
    let mut now = 1_000;
    w.state_mut().set_now(now);
    w.poll(&mut io, &mut ());
    let region = Region::new(GLOBAL);
    for _ in 0..3_000 {
        now += 1_000;
        w.state_mut().set_now(now);
        w.poll(&mut io, &mut ());
        if now % 500_000 == 0 {
            // The inference side drains now and then; in between the ring fills.
            while rx.try_recv().is_some() {}
            rx.drain_spread();
        }
    }
    let change = region.change();
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "{change:?}"
    );
    let c = w.state().sampler().unwrap().counters();
    assert!(c.flows > 1000 && c.sampled > 500, "{c:?}");
    assert!(c.emitted > 100 && c.ring_full > 0, "{c:?}");
    assert!(c.spread_lost > 0, "the ring of new flows filled too: {c:?}");
    assert!(rx.sketches.flows() > 0);
    drop(rx);
}
