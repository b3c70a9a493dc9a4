//! The worker with function-code conduits in the packet path allocates nothing per packet,
//! measured by a counting global allocator (its own test binary: the count is process-wide).

use std::alloc::System;

use septa_dataplane::l7::samples;
use septa_dataplane::l7::{L7Constraint, L7Proto, Side, Transport};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The worker with function-code conduits in the packet path: Modbus connections opened,
/// inspected (reads pass, writes are denied and block their flow), retransmitted (their frames
/// circulate), expired and freed from the slab; BACnet datagrams judged one by one. Nothing
/// allocates after the warm-up but the memory backend's frees of dropped frames.
#[test]
fn the_worker_with_conduits_never_allocates() {
    use std::sync::Arc;

    use septa_classifier::{
        Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, TableCell, compile,
    };
    use septa_dataplane::flow::TimeoutClass;
    use septa_dataplane::io::memory::MemoryIo;
    use septa_dataplane::l7::samples::{bacnet_confirmed, conversation, modbus, segment};
    use septa_dataplane::{Bridge, Decision, DropReason, StateConfig, Stats, Worker, WorkerState};

    let inspect = |id, proto, port, hook| Rule {
        dst: AddrMatch::prefix(Prefix::v4([10, 4, 0, 0].into(), 16)),
        proto: Some(proto),
        dport: PortRange { lo: port, hi: port },
        mode: Mode::Enforce,
        ..Rule::any(id, Action::Inspect(HookId(hook)))
    };
    let mut modbus_ro = L7Constraint::allow_all(L7Proto::Modbus);
    modbus_ro.functions = septa_l7::functions::resolve(L7Proto::Modbus, "read")
        .unwrap()
        .into_iter()
        .collect();
    let conduits: Arc<[L7Constraint]> =
        vec![modbus_ro, L7Constraint::allow_all(L7Proto::Bacnet)].into();
    let table = || {
        compile(&[inspect(1, 6, 502, 0), inspect(2, 17, 47808, 1)])
            .unwrap()
            .with_l7_constraints(conduits.clone())
    };
    let cell = TableCell::new(table());

    let mut io = MemoryIo::new(2);
    io.ring(0, 1, 8192);
    // Frames of 300 connections (client side only: the ring returns forwarded frames to port 0,
    // so server frames are sent there too and count as the client's direction; what matters is
    // that they open flows, carry messages and get judged).
    for c in 0..300u16 {
        let msgs = [
            (Side::Client, samples::modbus_request(1, 1, 3, 0, 2)),
            (Side::Server, modbus(1, 1, 3, &[4, 0, 1, 0, 2])),
            (Side::Client, samples::modbus_request(2, 1, 6, 7, 1)),
        ];
        let (frames, _) = conversation(
            [10, 1, 0, 1],
            [10, 4, 0, 1],
            (20_000 + c, 502),
            &msgs,
            false,
        );
        for f in frames {
            io.push_rx(0, f);
        }
        let bacnet = segment(
            Transport::Udp,
            [10, 1, 0, 2],
            [10, 4, 0, 2],
            (30_000 + c, 47808),
            (0, 0, 0),
            &bacnet_confirmed(12, c as u8),
        );
        io.push_rx(0, bacnet);
    }
    let mut cfg = StateConfig::new(1024);
    cfg.l7_flows = 64;
    cfg.flows.timeouts.set(TimeoutClass::Udp, 20_000);
    cfg.flows.timeouts.set(TimeoutClass::TcpEstablished, 20_000);
    cfg.flows.timeouts.set(TimeoutClass::TcpSynSent, 20_000);
    cfg.flows.timeouts.set(TimeoutClass::TcpSynRecv, 20_000);
    let mut w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        WorkerState::new(&cfg, septa_dataplane::events::EventSink::disabled()).unwrap(),
    );
    let mut now = 0;
    // Warm-up: one poll, so lazily made per-worker pieces exist.
    now += 1_000;
    w.state_mut().set_now(now);
    w.poll(&mut io, &mut ());
    let dropped_before = Stats::collect([&**w.counters()]).total_drops();
    let region = Region::new(GLOBAL);
    for _ in 0..3_000 {
        now += 1_000;
        w.state_mut().set_now(now);
        w.poll(&mut io, &mut ());
    }
    let change = region.change();
    let s = Stats::collect([&**w.counters()]);
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "{change:?}"
    );
    assert_eq!(
        change.deallocations as u64,
        s.total_drops() - dropped_before,
        "only dropped frames' buffers are freed"
    );
    let l7 = w.state().l7();
    let (m, b) = (L7Proto::Modbus as usize, L7Proto::Bacnet as usize);
    assert!(l7.counters().messages[m][3] > 100, "reads inspected");
    assert!(l7.counters().denied[m][6] > 100, "writes denied");
    assert!(l7.counters().messages[b][12] > 300, "datagrams judged");
    assert!(s.drops(DropReason::L7Denied) > 100, "{s}");
    assert!(
        l7.stats().slab_full > 0,
        "the slab filled: {:?}",
        l7.stats()
    );
    assert!(
        w.state().flows().stats().expired > 100,
        "flows expired and freed their streams"
    );
}
