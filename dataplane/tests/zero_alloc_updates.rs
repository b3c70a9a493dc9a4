//! Proves the flow-update reports allocate nothing: TCP connections closing by FIN and by RST
//! (the close queue and its report at the end of the poll) and the periodic sweep over a table
//! of long-lived flows, with a ring small enough to overflow. A counting global allocator (its
//! own test binary, one test) must not move.

use std::alloc::System;
use std::net::Ipv4Addr;

use septa_classifier::{Action, Rule, TableCell, compile};
use septa_dataplane::events::{self, EventDrain, FlowEvent, UpdateCause};
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::testgen::{FrameBuilder, Side, TcpSession};
use septa_dataplane::{Bridge, Decision, StateConfig, Worker, WorkerState};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn closes_and_the_update_sweep_do_not_allocate() {
    let client = Ipv4Addr::new(10, 1, 0, 1);
    let server = Ipv4Addr::new(10, 2, 0, 1);
    // Prepared before measuring: 200 TCP connections, half closed by FINs, half reset, and
    // 64 long-lived UDP flows that send on every round.
    let mut rounds: Vec<Vec<Vec<u8>>> = Vec::new();
    for r in 0..200u16 {
        let mut c = TcpSession::v4(client, 10_000 + r, server, 443);
        let mut f = c.handshake();
        f.push(c.data(Side::Client, 200));
        f.push(c.data(Side::Server, 900));
        if r % 2 == 0 {
            f.extend(c.close(Side::Client));
        } else {
            f.push(c.rst(Side::Server));
        }
        f.extend((0..64u16).map(|i| {
            FrameBuilder::new()
                .ipv4(client, server)
                .udp(20_000 + i, 53)
                .seq(u64::from(r))
                .build()
        }));
        rounds.push(f);
    }
    let cell = TableCell::new(compile(&[Rule::any(1, Action::Allow)]).unwrap());
    let (sink, source) = events::ring(64);
    let mut drain = EventDrain::new(vec![source]);
    let mut cfg = StateConfig::new(1024);
    cfg.update_interval = 50_000;
    let mut w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        WorkerState::new(&cfg, sink).unwrap(),
    );
    let mut io = MemoryIo::new(2);
    // Every frame queued before measuring, with room for what is forwarded: the memory
    // backend then allocates nothing (a dropped frame's buffer is freed, nothing is allocated).
    let total: usize = rounds.iter().map(Vec::len).sum();
    io.reserve_rx(0, total);
    io.reserve_tx(1, total);
    for f in rounds.into_iter().flatten() {
        io.push_rx(0, f);
    }
    let mut now = 1_000;
    let mut updates = [0u64; 3];
    let mut poll = |w: &mut Worker, io: &mut MemoryIo, updates: &mut [u64; 3]| {
        now += 1_000;
        w.state_mut().set_now(now);
        w.poll(io, &mut ());
        drain.drain(usize::MAX, |_, e| {
            if let FlowEvent::Update(u) = e {
                updates[u.cause as usize] += 1;
            }
        });
    };
    // Warm-up outside the region.
    for _ in 0..20 {
        poll(&mut w, &mut io, &mut updates);
    }
    let region = Region::new(GLOBAL);
    while io.rx_pending(0) > 0 {
        poll(&mut w, &mut io, &mut updates);
    }
    for _ in 0..200 {
        poll(&mut w, &mut io, &mut updates);
    }
    let change = region.change();
    assert_eq!(change.allocations, 0, "allocations while reporting updates");
    assert_eq!(change.reallocations, 0);
    let by = |c: UpdateCause| updates[c as usize];
    assert!(
        by(UpdateCause::Closed) > 50
            && by(UpdateCause::Reset) > 50
            && by(UpdateCause::Interval) > 50,
        "every kind of update was reported: {updates:?}"
    );
}
