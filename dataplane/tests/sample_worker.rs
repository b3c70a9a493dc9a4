//! The feature sampler in the worker: a sampled connection emits its first-packets record and
//! its flow-end record with the flow entry's counts and the identified protocol; flows not
//! chosen cost nothing and emit nothing. Under a function-code conduit, a sampled Modbus flow's
//! record counts its requests by class (a write is counted even when the conduit refuses it),
//! head statistics describe only the packets the worker forwarded, and the deny records carry
//! the conduit's reason.

use std::net::Ipv4Addr;
use std::sync::Arc;

use septa_classifier::{
    Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, RuleTable, TableCell, compile,
};
use septa_dataplane::events::{DenyRecord, EventDrain, EventSink, FlowEvent, ring};
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::l7::samples::{conversation, modbus, modbus_request, smb2_negotiate};
use septa_dataplane::l7::{DenyReason, L7Constraint, Side};
use septa_dataplane::sample::{Sampler, SamplerConfig};
use septa_dataplane::{Bridge, Decision, DropReason, StateConfig, Worker, WorkerState};
use septa_features::spread::{SoloReceiver, SpreadConfig, sample_channel};
use septa_features::{EmitReason, FeatureRecord, FunctionClass, L7Proto};

fn worker(one_in: u32) -> (Worker, SoloReceiver) {
    let table = compile(&[Rule::any(1, Action::Allow)]).unwrap();
    let (w, rx, _cell) = worker_with(one_in, table, EventSink::disabled());
    (w, rx)
}

/// A worker under `table` with a sampler (one flow in `one_in`) and events to `sink`; keep the
/// cell alive as long as the worker.
fn worker_with(
    one_in: u32,
    table: RuleTable,
    sink: EventSink,
) -> (Worker, SoloReceiver, Arc<TableCell>) {
    let (tx, rx) = sample_channel(1024, 1024);
    let rx = SoloReceiver::new(rx, SpreadConfig::default()).unwrap();
    let mut sc = SamplerConfig::new(64);
    sc.one_in = one_in;
    let cell = TableCell::new(table);
    let mut state = WorkerState::new(&StateConfig::new(1024), sink).unwrap();
    state.set_sampler(Sampler::new(7, sc, tx).unwrap());
    let w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        state,
    );
    (w, rx, cell)
}

const PLC: [u8; 4] = [10, 9, 0, 1];

/// Modbus/502 to the PLC inspected by a read-only conduit in `mode`; everything else allowed.
fn read_only_modbus(mode: Mode) -> RuleTable {
    let rule = Rule {
        dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::from(PLC), 32)),
        proto: Some(6),
        dport: PortRange { lo: 502, hi: 502 },
        mode,
        ..Rule::any(1, Action::Inspect(HookId(0)))
    };
    let conduit = L7Constraint {
        functions: septa_l7::functions::resolve(septa_l7::L7Proto::Modbus, "read_*")
            .unwrap()
            .into_iter()
            .collect(),
        ..L7Constraint::allow_all(septa_l7::L7Proto::Modbus)
    };
    compile(&[rule, Rule::any(2, Action::Allow)])
        .unwrap()
        .with_l7_constraints(Arc::from(vec![conduit]))
}

/// Handshake, two reads with responses, a write single register, one more read; no close.
fn modbus_session(cport: u16) -> Vec<(Side, Vec<u8>)> {
    let msgs = vec![
        (Side::Client, modbus_request(1, 1, 3, 0, 2)),
        (Side::Server, modbus(1, 1, 3, &[4, 0, 1, 0, 2])),
        (Side::Client, modbus_request(2, 1, 3, 0, 2)),
        (Side::Server, modbus(2, 1, 3, &[4, 0, 1, 0, 2])),
        (Side::Client, modbus_request(3, 1, 6, 7, 1)),
        (Side::Client, modbus_request(4, 1, 3, 0, 2)),
    ];
    let (frames, _) = conversation([10, 0, 0, 1], PLC, (cport, 502), &msgs, false);
    let sides = [Side::Client, Side::Server, Side::Client]
        .into_iter()
        .chain(msgs.iter().map(|m| m.0));
    sides.zip(frames).collect()
}

fn denies(drain: &mut EventDrain) -> Vec<DenyRecord> {
    let mut out = Vec::new();
    drain.drain(usize::MAX, |_, ev| {
        if let FlowEvent::Deny(d) = ev {
            out.push(d);
        }
    });
    out
}

const WRITE_6: DenyReason = DenyReason::Function {
    proto: septa_l7::L7Proto::Modbus,
    code: 6,
};

/// An SMB connection: handshake, then the negotiate request and 9 more client segments.
fn smb(cport: u16) -> Vec<(Side, Vec<u8>)> {
    let mut msgs = vec![(Side::Client, smb2_negotiate())];
    msgs.extend((0..9).map(|_| (Side::Client, vec![0u8; 100])));
    let (frames, _) = conversation([10, 0, 0, 1], [10, 0, 0, 2], (cport, 445), &msgs, false);
    let sides = [Side::Client, Side::Server, Side::Client]
        .into_iter()
        .chain(msgs.iter().map(|m| m.0));
    sides.zip(frames).collect()
}

fn send(w: &mut Worker, io: &mut MemoryIo, frames: &[(Side, Vec<u8>)], t0: u64) {
    for (i, (side, f)) in frames.iter().enumerate() {
        let port = match side {
            Side::Client => 0,
            Side::Server => 1,
        };
        io.push_rx(port, f.clone());
        w.state_mut().set_now(t0 + 1_000 * i as u64);
        w.poll(io, &mut ());
    }
}

#[test]
fn a_sampled_connection_emits_head_and_end_records() {
    let (mut w, mut rx) = worker(1);
    let mut io = MemoryIo::new(2);
    let frames = smb(40000);
    send(&mut w, &mut io, &frames, 1_000);
    let head = rx.try_recv().expect("first-packets record");
    assert_eq!(head.reason, EmitReason::FirstPackets);
    assert_eq!(head.worker, 7);
    assert_eq!(head.packets, [7, 1], "8 packets: SYN-ACK the only reply");
    assert_eq!(head.head.count, 8);
    assert_eq!(head.tcp.syn, 2);
    assert_eq!(
        head.l7,
        L7Proto::Smb,
        "identified from the negotiate request"
    );
    assert_eq!(head.key.dst_port, 445);
    assert!(rx.try_recv().is_none());
    w.flush(usize::MAX);
    let end = rx.try_recv().expect("flow-end record");
    assert_eq!(end.reason, EmitReason::FlowEnd);
    assert_eq!(end.packets, [12, 1]);
    assert_eq!(end.duration_us, 12_000);
    assert_eq!(end.tcp.psh, 10);
    let s = w.state().sampler().unwrap();
    assert_eq!((s.counters().emitted, s.active()), (2, 0));
}

#[test]
fn flows_not_chosen_emit_nothing() {
    let (mut w, mut rx) = worker(4);
    let mut io = MemoryIo::new(2);
    for c in 0..8 {
        send(&mut w, &mut io, &smb(41000 + c), 1_000);
    }
    w.flush(usize::MAX);
    let c = w.state().sampler().unwrap().counters();
    assert_eq!((c.flows, c.sampled), (8, 2));
    let reasons: Vec<_> = rx.try_iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons.len(),
        4,
        "2 sampled flows × (head + end): {reasons:?}"
    );
}

#[test]
fn a_monitored_modbus_flow_with_a_write_counts_it_and_says_why() {
    let (sink, source) = ring(64);
    let mut drain = EventDrain::new(vec![source]);
    let (mut w, mut rx, _cell) = worker_with(1, read_only_modbus(Mode::Monitor), sink);
    let mut io = MemoryIo::new(2);
    send(&mut w, &mut io, &modbus_session(40100), 1_000);
    w.flush(usize::MAX);
    let end = rx
        .try_iter()
        .find(|r| r.reason == EmitReason::FlowEnd)
        .expect("flow-end record");
    let f = end.functions;
    assert_eq!(f[FunctionClass::Write as usize], 1, "{f:?}");
    assert_eq!(f[FunctionClass::Read as usize], 3, "requests only: {f:?}");
    assert_eq!(f.iter().sum::<u32>(), 4, "responses are not counted: {f:?}");
    assert_eq!(end.l7, L7Proto::Modbus);
    assert_eq!(end.packets[0] + end.packets[1], 9);
    assert_eq!(
        end.head.count, 8,
        "monitor mode forwards everything (the head stops at 8)"
    );
    let d = denies(&mut drain);
    assert_eq!(d.len(), 1, "one would-deny record per flow: {d:?}");
    assert!(d[0].would_deny);
    assert_eq!(d[0].reason, DropReason::L7Denied);
    assert_eq!(d[0].l7, Some(WRITE_6));
    assert_eq!(
        d[0].l7_text().unwrap(),
        "modbus function 6 (write_single_register) not allowed"
    );
}

#[test]
fn an_enforced_write_is_counted_but_dropped_packets_stay_out_of_the_head() {
    let (sink, source) = ring(64);
    let mut drain = EventDrain::new(vec![source]);
    let (mut w, mut rx, _cell) = worker_with(1, read_only_modbus(Mode::Enforce), sink);
    let mut io = MemoryIo::new(2);
    let frames = modbus_session(40101);
    send(&mut w, &mut io, &frames, 1_000);
    w.flush(usize::MAX);
    let end = rx
        .try_iter()
        .find(|r| r.reason == EmitReason::FlowEnd)
        .expect("flow-end record");
    // The refused write is an attempt: counted. The read after it is dropped unparsed (the flow
    // is blocked), so it is not.
    let f = end.functions;
    assert_eq!(f[FunctionClass::Write as usize], 1, "{f:?}");
    assert_eq!(f[FunctionClass::Read as usize], 2, "{f:?}");
    // 9 packets offered (the entry counts them all), 7 forwarded: the head holds those 7.
    assert_eq!(end.packets[0] + end.packets[1], 9);
    assert_eq!(end.head.count, 7);
    let ip_len = |f: &[u8]| u32::from(u16::from_be_bytes([f[16], f[17]]));
    let sizes: u32 = frames[..7].iter().map(|(_, f)| ip_len(f)).sum();
    assert_eq!(
        end.head.size_sum, sizes,
        "L3 sizes of the forwarded packets"
    );
    let d = denies(&mut drain);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        d.iter()
            .all(|r| !r.would_deny && r.reason == DropReason::L7Denied)
    );
    assert_eq!(d[0].l7, Some(WRITE_6), "the refused message is named");
    assert_eq!(
        d[1].l7, None,
        "a packet of the blocked flow names no message"
    );
}

/// A port scan the policy blocks is still seen: every refused SYN feeds the spread sketches and
/// (one in `one_in`) is emitted at once as a one-packet flow without reply, so the model can
/// score a scan it never let through. Every 4th refused attempt here with `one_in = 4`.
#[test]
fn a_blocked_scan_is_sampled_with_its_fan_out() {
    let deny_plc = Rule {
        dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(10, 9, 0, 0), 24)),
        proto: Some(6),
        ..Rule::any(1, Action::Deny)
    };
    let table = compile(&[deny_plc, Rule::any(2, Action::Allow)]).unwrap();
    let (mut w, mut rx, _cell) = worker_with(4, table, EventSink::disabled());
    let mut io = MemoryIo::new(2);
    let scanner = Ipv4Addr::new(10, 0, 0, 5);
    for port in 1..=40u16 {
        let mut s = septa_dataplane::testgen::TcpSession::v4(
            scanner,
            40_000 + port,
            Ipv4Addr::from(PLC),
            port,
        );
        io.push_rx(0, s.handshake().swap_remove(0));
        w.state_mut().set_now(1_000_000 + u64::from(port) * 1_000);
        w.poll(&mut io, &mut ());
    }
    assert_eq!(io.take_tx(1).len(), 0, "the scan is blocked");
    let c = w.state().sampler().unwrap().counters();
    assert_eq!((c.denied, c.flows, c.sampled), (40, 40, 10));
    let recs: Vec<FeatureRecord> = rx.try_iter().collect();
    assert_eq!(recs.len(), 10);
    for r in &recs {
        assert_eq!(r.reason, EmitReason::FlowEnd);
        assert_eq!(r.packets, [1, 0]);
        assert_eq!((r.tcp.syn, r.tcp.syn_ack), (1, 0));
        assert_eq!(r.head.count, 1);
        assert_eq!(r.key.src, std::net::IpAddr::V4(scanner));
    }
    // The last record sees the whole scan's fan-out (40 ports, one host); the estimate is a
    // distinct count, close but not exact.
    let last = recs.last().unwrap();
    assert!(
        (36..=44).contains(&last.spread.src_ports),
        "{:?}",
        last.spread
    );
    assert_eq!(last.spread.src_hosts, 1);
}
