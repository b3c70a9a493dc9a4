//! The feature sampler in the worker: a sampled connection emits its first-packets record and
//! its flow-end record with the flow entry's counts and the identified protocol; flows not
//! chosen cost nothing and emit nothing.

use std::sync::mpsc::{Receiver, sync_channel};

use septa_classifier::{Action, Rule, TableCell, compile};
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::l7::Side;
use septa_dataplane::l7::samples::{conversation, smb2_negotiate};
use septa_dataplane::sample::{Sampler, SamplerConfig};
use septa_dataplane::{Bridge, Decision, StateConfig, Worker, WorkerState};
use septa_features::{EmitReason, FeatureRecord, L7Proto};

fn worker(one_in: u32) -> (Worker, Receiver<FeatureRecord>) {
    let (tx, rx) = sync_channel(1024);
    let mut sc = SamplerConfig::new(64);
    sc.one_in = one_in;
    let cell = TableCell::new(compile(&[Rule::any(1, Action::Allow)]).unwrap());
    let mut state = WorkerState::new(
        &StateConfig::new(1024),
        septa_dataplane::events::EventSink::disabled(),
    )
    .unwrap();
    state.set_sampler(Sampler::new(7, sc, tx).unwrap());
    let w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        state,
    );
    (w, rx)
}

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
    let (mut w, rx) = worker(1);
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
    assert!(rx.try_recv().is_err());
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
    let (mut w, rx) = worker(4);
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
