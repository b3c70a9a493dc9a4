//! Function-code conduits in the packet path: the real worker on the in-memory backend, under a
//! rule table that carries its conduits (published together, swapped together).
//!
//! * a read-only Modbus conduit forwards reads (and their responses) and drops a write under
//!   `l7_denied`; the flow is then blocked: later requests and the retransmitted write are
//!   dropped too, while bare ACK/FIN segments still pass;
//! * a DNP3 conduit drops a cold restart; an S7 conduit drops a PLC STOP;
//! * monitor mode forwards everything and counts would-deny;
//! * a policy swap that admits writes reaches the blocked flow on its next packet;
//! * a full L7 slab fails closed under `l7_unavailable`, counted; a flow's end frees its entry;
//! * retransmitted segments are not fed again; a segment beyond a gap is dropped (enforce).

use std::net::Ipv4Addr;
use std::sync::Arc;

use septa_classifier::{
    Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, RuleTable, TableCell, compile,
};
use septa_dataplane::events;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::l7::samples::{
    conversation, dnp3_request, modbus, modbus_request, s7_cotp_cr, s7_job,
};
use septa_dataplane::l7::{L7Constraint, L7Proto, Side};
use septa_dataplane::{Bridge, Decision, DropReason, StateConfig, Stats, Worker, WorkerState};

const HMI: [u8; 4] = [10, 0, 0, 1];
const PLC: [u8; 4] = [10, 9, 0, 1];
const PLC_MONITORED: [u8; 4] = [10, 9, 0, 2];

fn only(proto: L7Proto, selector: &str) -> L7Constraint {
    L7Constraint {
        functions: septa_l7::functions::resolve(proto, selector)
            .unwrap()
            .into_iter()
            .collect(),
        ..L7Constraint::allow_all(proto)
    }
}

fn deny(proto: L7Proto, selectors: &[&str]) -> L7Constraint {
    let mut c = L7Constraint::allow_all(proto);
    for s in selectors {
        for f in septa_l7::functions::resolve(proto, s).unwrap() {
            c.functions.remove(f);
        }
    }
    c
}

fn inspect(id: u32, dst: [u8; 4], port: u16, hook: u32, mode: Mode) -> Rule {
    Rule {
        dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::from(dst), 32)),
        proto: Some(6),
        dport: PortRange { lo: port, hi: port },
        mode,
        ..Rule::any(id, Action::Inspect(HookId(hook)))
    }
}

/// Modbus/502 (hook 0: `modbus_conduit`) to PLC in enforce and to PLC_MONITORED in monitor
/// mode, DNP3/20000 without restarts (hook 1), S7/102 without STOP (hook 2); default deny.
fn table(modbus_conduit: L7Constraint) -> RuleTable {
    let rules = [
        inspect(1, PLC, 502, 0, Mode::Enforce),
        inspect(2, PLC_MONITORED, 502, 0, Mode::Monitor),
        inspect(3, PLC, 20000, 1, Mode::Enforce),
        inspect(4, PLC, 102, 2, Mode::Enforce),
        Rule::any(9, Action::Deny),
    ];
    let conduits: Arc<[L7Constraint]> = vec![
        modbus_conduit,
        deny(L7Proto::Dnp3, &["restart"]),
        deny(L7Proto::S7comm, &["stop"]),
    ]
    .into();
    compile(&rules).unwrap().with_l7_constraints(conduits)
}

fn worker(cell: &Arc<TableCell>, cfg: &StateConfig) -> Worker {
    Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        WorkerState::new(cfg, events::EventSink::disabled()).unwrap(),
    )
}

/// Sends each frame on its sender's port (client: 0, server: 1), one poll per frame; returns,
/// per frame, whether it was forwarded.
fn send(w: &mut Worker, io: &mut MemoryIo, frames: &[(Side, Vec<u8>)]) -> Vec<bool> {
    frames
        .iter()
        .map(|(side, f)| {
            let (rx, tx) = match side {
                Side::Client => (0, 1),
                Side::Server => (1, 0),
            };
            io.push_rx(rx, f.clone());
            w.poll(io, &mut ());
            let out = io.take_tx(tx);
            assert!(out.len() <= 1);
            out.len() == 1
        })
        .collect()
}

/// The frames of a conversation with the sender of each.
fn talk(
    server: [u8; 4],
    port: u16,
    cport: u16,
    msgs: &[(Side, Vec<u8>)],
    close: bool,
) -> (Vec<(Side, Vec<u8>)>, Vec<usize>) {
    let (frames, at) = conversation(HMI, server, (cport, port), msgs, close);
    // Handshake and close alternate client/server/client; messages carry their sender.
    let mut sides = vec![Side::Client, Side::Server, Side::Client];
    sides.extend(msgs.iter().map(|m| m.0));
    if close {
        sides.extend([Side::Client, Side::Server, Side::Client]);
    }
    (sides.into_iter().zip(frames).collect(), at)
}

fn stats(w: &Worker) -> Stats {
    Stats::collect([&**w.counters()])
}

fn read_only_modbus() -> L7Constraint {
    only(L7Proto::Modbus, "read_*")
}

fn modbus_session() -> Vec<(Side, Vec<u8>)> {
    vec![
        (Side::Client, modbus_request(1, 1, 3, 0, 2)),
        (Side::Server, modbus(1, 1, 3, &[4, 0, 1, 0, 2])),
        (Side::Client, modbus_request(2, 1, 6, 7, 1)),
        (Side::Client, modbus_request(3, 1, 3, 0, 2)),
    ]
}

#[test]
fn modbus_read_passes_write_is_dropped_and_blocks_the_flow() {
    let cell = TableCell::new(table(read_only_modbus()));
    let mut w = worker(&cell, &StateConfig::new(1024));
    // A manual clock that stands still: the L7 counters are published at the first poll and at
    // the flush below, never in between (below: what other threads see).
    w.state_mut().set_now(1);
    let mut io = MemoryIo::new(2);
    let (frames, at) = talk(PLC, 502, 40001, &modbus_session(), true);
    let write = frames[at[2]].clone();
    let fwd = send(&mut w, &mut io, &frames);
    // Handshake, read, response forwarded; write dropped; the later read dropped (blocked);
    // the FIN/ACK close passes.
    assert_eq!(
        fwd,
        [true, true, true, true, true, false, false, true, true, true]
    );
    // The client retransmits the write: still dropped.
    assert_eq!(send(&mut w, &mut io, &[write]), [false]);
    let s = stats(&w);
    assert_eq!(s.drops(DropReason::L7Denied), 3, "{s:?}");
    assert_eq!(s.drops(DropReason::L7Unavailable), 0);
    let l7 = w.state().l7();
    let modbus = L7Proto::Modbus as usize;
    assert_eq!(l7.counters().denied[modbus][6], 1, "the write, named");
    assert_eq!(
        l7.counters().messages[modbus][3],
        2,
        "read and its response"
    );
    assert_eq!(l7.stats().blocked, 2);
    assert_eq!(l7.active(), 1);
    // Other threads (the control side's /metrics) see the counters once published: the first
    // poll published them as they were then, the flush publishes them now.
    let shared = l7.shared_counters();
    assert_ne!(*shared.load(), *l7.counters(), "not published per packet");
    w.flush(usize::MAX);
    assert_eq!(
        w.state().l7().active(),
        0,
        "the flow's end frees its stream"
    );
    assert_eq!(*shared.load(), *w.state().l7().counters());
    let rows = septa_dataplane::replay::l7_function_counts(&shared.load());
    assert_eq!(
        rows.iter()
            .map(|r| (r.proto, r.function, r.name, r.messages, r.denied))
            .collect::<Vec<_>>(),
        [
            ("modbus", Some(3), Some("read_holding_registers"), 2, 0),
            ("modbus", Some(6), Some("write_single_register"), 1, 1)
        ],
        "{rows:?}"
    );
}

#[test]
fn dnp3_cold_restart_and_s7_stop_are_dropped() {
    let cell = TableCell::new(table(read_only_modbus()));
    let mut w = worker(&cell, &StateConfig::new(1024));
    let mut io = MemoryIo::new(2);
    let dnp3 = [
        (Side::Client, dnp3_request(10, 1, 1, &[0x3c, 0x01, 0x06])),
        (Side::Client, dnp3_request(10, 1, 13, &[])),
    ];
    let (frames, _) = talk(PLC, 20000, 40002, &dnp3, false);
    assert_eq!(
        send(&mut w, &mut io, &frames),
        [true, true, true, true, false]
    );
    let s7 = [
        (Side::Client, s7_cotp_cr()),
        (
            Side::Client,
            s7_job(0x04, &[1, 0x12, 10, 0x10, 2, 0, 1, 0, 1, 0x84, 0, 0, 0]),
        ),
        (
            Side::Client,
            s7_job(
                0x29,
                &[
                    0, 0, 0, 0, 0, 9, b'P', b'_', b'P', b'R', b'O', b'G', b'R', b'A', b'M',
                ],
            ),
        ),
    ];
    let (frames, _) = talk(PLC, 102, 40003, &s7, false);
    assert_eq!(
        send(&mut w, &mut io, &frames),
        [true, true, true, true, true, false]
    );
    let c = w.state().l7().counters();
    assert_eq!(c.denied[L7Proto::Dnp3 as usize][13], 1);
    assert_eq!(c.denied[L7Proto::S7comm as usize][0x29], 1);
    assert_eq!(stats(&w).drops(DropReason::L7Denied), 2);
}

#[test]
fn monitor_mode_forwards_and_counts_would_deny() {
    let cell = TableCell::new(table(read_only_modbus()));
    let mut w = worker(&cell, &StateConfig::new(1024));
    let mut io = MemoryIo::new(2);
    let (frames, _) = talk(PLC_MONITORED, 502, 40004, &modbus_session(), false);
    assert!(send(&mut w, &mut io, &frames).iter().all(|f| *f));
    let s = stats(&w);
    assert_eq!(s.total_drops(), 0);
    assert_eq!(s.would_deny, 1, "the write");
    assert_eq!(
        w.state().l7().counters().denied[L7Proto::Modbus as usize][6],
        1
    );
}

#[test]
fn a_policy_swap_changes_rules_and_conduits_together() {
    let cell = TableCell::new(table(read_only_modbus()));
    let mut w = worker(&cell, &StateConfig::new(1024));
    let mut io = MemoryIo::new(2);
    let (frames, at) = talk(PLC, 502, 40005, &modbus_session()[..3], false);
    let write = frames[at[2]].clone();
    assert_eq!(send(&mut w, &mut io, &frames).last(), Some(&false));
    // The new policy admits writes: the retransmitted write passes on the next packet.
    cell.publish(table(L7Constraint::allow_all(L7Proto::Modbus)));
    assert_eq!(send(&mut w, &mut io, std::slice::from_ref(&write)), [true]);
    // A table without conduits (hook 0 unknown): inspection is unavailable, fail closed.
    let bare = compile(&[inspect(1, PLC, 502, 0, Mode::Enforce)]).unwrap();
    cell.publish(bare);
    assert_eq!(send(&mut w, &mut io, &[write]), [false]);
    assert_eq!(stats(&w).drops(DropReason::L7Unavailable), 1);
}

#[test]
fn a_full_slab_fails_closed_and_a_flow_end_frees_it() {
    let cell = TableCell::new(table(read_only_modbus()));
    let cfg = StateConfig {
        l7_flows: 1,
        ..StateConfig::new(1024)
    };
    let mut w = worker(&cell, &cfg);
    let mut io = MemoryIo::new(2);
    let read = [(Side::Client, modbus_request(1, 1, 3, 0, 2))];
    let (a, _) = talk(PLC, 502, 40006, &read, false);
    let (b, _) = talk(PLC, 502, 40007, &read, false);
    assert_eq!(send(&mut w, &mut io, &a), [true; 4]);
    assert_eq!(send(&mut w, &mut io, &b), [true, true, true, false]);
    assert_eq!(w.state().l7().stats().slab_full, 1);
    assert_eq!(stats(&w).drops(DropReason::L7Unavailable), 1);
    w.flush(usize::MAX);
    let (c, _) = talk(PLC, 502, 40008, &read, false);
    assert_eq!(send(&mut w, &mut io, &c), [true; 4]);
}

#[test]
fn retransmissions_are_not_fed_again_and_gaps_are_dropped() {
    let cell = TableCell::new(table(read_only_modbus()));
    let mut w = worker(&cell, &StateConfig::new(1024));
    let mut io = MemoryIo::new(2);
    let msgs = [
        (Side::Client, modbus_request(1, 1, 3, 0, 2)),
        (Side::Client, modbus_request(2, 1, 3, 0, 2)),
        (Side::Client, modbus_request(3, 1, 3, 0, 2)),
    ];
    let (frames, at) = talk(PLC, 502, 40009, &msgs, false);
    // Handshake and the first read.
    assert_eq!(send(&mut w, &mut io, &frames[..=at[0]]), [true; 4]);
    // The third read before the second: a gap, dropped; the first again: a retransmission.
    let again = frames[at[0]].clone();
    let third = frames[at[2]].clone();
    assert_eq!(
        send(&mut w, &mut io, &[third.clone(), again]),
        [false, true]
    );
    // In order now: both pass, and each message was counted once.
    let second = frames[at[1]].clone();
    assert_eq!(send(&mut w, &mut io, &[second, third]), [true, true]);
    let l7 = w.state().l7();
    assert_eq!(l7.counters().messages[L7Proto::Modbus as usize][3], 3);
    assert_eq!(l7.stats().out_of_order, 1);
    assert_eq!(l7.stats().retransmitted, 1);
}

/// Where a frame's TCP payload starts (untagged IPv4, as the sample conversations are).
fn tcp_payload_offset(frame: &[u8]) -> usize {
    let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
    l4 + usize::from(frame[l4 + 12] >> 4) * 4
}

#[test]
fn a_harmless_segment_sent_ahead_does_not_let_an_earlier_write_through() {
    // Bytes start at the client's initial sequence number + 1, learnt from the SYN-ACK: a read
    // sent first at a later sequence number is a gap (dropped), and the write that fills it is
    // inspected, not waved through as a "retransmission" of bytes never seen.
    let cell = TableCell::new(table(read_only_modbus()));
    let mut w = worker(&cell, &StateConfig::new(1024));
    let mut io = MemoryIo::new(2);
    let msgs = [
        (Side::Client, modbus_request(1, 1, 6, 7, 1)),
        (Side::Client, modbus_request(2, 1, 3, 0, 2)),
    ];
    let (frames, at) = talk(PLC, 502, 40020, &msgs, false);
    assert_eq!(send(&mut w, &mut io, &frames[..3]), [true; 3]);
    let (write, read) = (frames[at[0]].clone(), frames[at[1]].clone());
    assert_eq!(send(&mut w, &mut io, &[read, write]), [false, false]);
    assert_eq!(w.state().l7().stats().out_of_order, 1);
    assert_eq!(stats(&w).drops(DropReason::L7Denied), 1);
}

#[test]
fn a_corrupt_segment_is_not_inspected_in_place_of_its_valid_twin() {
    // A read with a bad TCP checksum (the PLC would discard it) is dropped before inspection,
    // so the valid write at the same sequence number is inspected and dropped.
    let cell = TableCell::new(table(read_only_modbus()));
    let mut w = worker(&cell, &StateConfig::new(1024));
    let mut io = MemoryIo::new(2);
    let msgs = [(Side::Client, modbus_request(1, 1, 6, 7, 1))];
    let (frames, at) = talk(PLC, 502, 40021, &msgs, false);
    assert_eq!(send(&mut w, &mut io, &frames[..3]), [true; 3]);
    let write = frames[at[0]].clone();
    let mut corrupt = write.clone();
    let fc = tcp_payload_offset(&corrupt.1) + 7;
    assert_eq!(corrupt.1[fc], 6, "the write's function code");
    corrupt.1[fc] = 3; // now a read, with the write's checksum
    assert_eq!(send(&mut w, &mut io, &[corrupt, write]), [false, false]);
    assert_eq!(w.state().l7().stats().bad_checksum, 1);
    assert_eq!(stats(&w).drops(DropReason::L7Unavailable), 1);
    assert_eq!(stats(&w).drops(DropReason::L7Denied), 1);
}

#[test]
fn a_connection_that_becomes_inspected_mid_stream_fails_closed_in_enforce_mode() {
    // Its handshake went by under a plain allow: where its bytes begin is unknown, so its
    // payload cannot be judged and is dropped (the client reconnects and is inspected).
    let allow = Rule {
        dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::from(PLC), 32)),
        ..Rule::any(1, Action::Allow)
    };
    let cell = TableCell::new(compile(&[allow]).unwrap());
    let mut w = worker(&cell, &StateConfig::new(1024));
    let mut io = MemoryIo::new(2);
    let msgs = [
        (Side::Client, modbus_request(1, 1, 3, 0, 2)),
        (Side::Client, modbus_request(2, 1, 3, 0, 2)),
    ];
    let (frames, at) = talk(PLC, 502, 40022, &msgs, false);
    assert_eq!(send(&mut w, &mut io, &frames[..=at[0]]), [true; 4]);
    cell.publish(table(read_only_modbus()));
    assert_eq!(send(&mut w, &mut io, &[frames[at[1]].clone()]), [false]);
    assert_eq!(w.state().l7().stats().unseeded, 1);
    assert_eq!(stats(&w).drops(DropReason::L7Unavailable), 1);
}

#[test]
fn an_evicted_half_open_flow_gives_its_stream_back() {
    // The stream is taken at the SYN-ACK, while the flow is still half-open: when a new flow
    // evicts it, the entry must return to the slab, or a SYN-ACK flood would exhaust it.
    let cell = TableCell::new(table(read_only_modbus()));
    let mut cfg = StateConfig {
        l7_flows: 1,
        ..StateConfig::new(1024)
    };
    cfg.flows.max_half_open = 1;
    let mut w = worker(&cell, &cfg);
    let mut io = MemoryIo::new(2);
    let read = [(Side::Client, modbus_request(1, 1, 3, 0, 2))];
    let (a, _) = talk(PLC, 502, 40030, &read, false);
    let (b, _) = talk(PLC, 502, 40031, &read, false);
    // A: SYN and SYN-ACK only (its stream is taken); B's SYN evicts it.
    assert_eq!(send(&mut w, &mut io, &a[..2]), [true; 2]);
    assert_eq!(w.state().l7().active(), 1);
    assert_eq!(send(&mut w, &mut io, &b), [true; 4]);
    assert_eq!(w.state().l7().stats().slab_full, 0);
    assert_eq!(w.state().l7().active(), 1);
}
