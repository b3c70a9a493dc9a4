//! Interim flow updates through the stateful worker (memory backend): a TCP close (FIN or RST)
//! reports the flow's totals at once instead of after TIME_WAIT; the periodic sweep reports
//! long-lived flows while they carry traffic, once per interval, and never idle ones or
//! one-packet flows; an interval of 0 turns the periodic reports off.

use std::net::Ipv4Addr;

use septa_classifier::{Action, Rule, TableCell, compile};
use septa_dataplane::events::{
    self, EndReason, EventDrain, FlowEnd, FlowEvent, FlowUpdate, UpdateCause,
};
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::testgen::{FrameBuilder, Side, TcpSession, ip_packet};
use septa_dataplane::{Bridge, Decision, StateConfig, Worker, WorkerState};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const S: u64 = 1_000_000;

fn worker(update_interval_s: u64) -> (Worker, EventDrain, TableCellGuard) {
    let cell = TableCell::new(compile(&[Rule::any(1, Action::Allow)]).unwrap());
    let mut cfg = StateConfig::new(1024);
    cfg.update_interval = update_interval_s * S;
    let (sink, source) = events::ring(1 << 14);
    let mut w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        WorkerState::new(&cfg, sink).unwrap(),
    );
    w.state_mut().set_now(1);
    (w, EventDrain::new(vec![source]), TableCellGuard(cell))
}

/// Keeps the table alive as long as the worker reads it.
struct TableCellGuard(#[allow(dead_code)] std::sync::Arc<TableCell>);

/// Sends `frames` (client's on port 0, server's on port 1) at `now`, one poll per frame.
fn send(w: &mut Worker, io: &mut MemoryIo, now: u64, frames: &[(Side, Vec<u8>)]) {
    w.state_mut().set_now(now);
    for (side, f) in frames {
        io.push_rx(if *side == Side::Client { 0 } else { 1 }, f.clone());
        assert_eq!(w.poll(io, &mut ()), 1);
    }
    io.take_tx(0);
    io.take_tx(1);
}

fn idle(w: &mut Worker, io: &mut MemoryIo, now: u64) {
    w.state_mut().set_now(now);
    w.poll(io, &mut ());
}

fn events(drain: &mut EventDrain) -> (Vec<FlowUpdate>, Vec<FlowEnd>) {
    let (mut ups, mut ends) = (Vec::new(), Vec::new());
    drain.drain(usize::MAX, |_, e| match e {
        FlowEvent::Update(u) => ups.push(u),
        FlowEvent::End(e) => ends.push(e),
        _ => {}
    });
    (ups, ends)
}

/// Packets and IP bytes per direction `[client, server]`.
fn totals(frames: &[(Side, Vec<u8>)]) -> ([u64; 2], [u64; 2]) {
    let (mut p, mut b) = ([0; 2], [0; 2]);
    for (side, f) in frames {
        let d = usize::from(*side == Side::Server);
        p[d] += 1;
        b[d] += ip_packet(f).unwrap().len() as u64;
    }
    (p, b)
}

fn conversation(c: &mut TcpSession) -> Vec<(Side, Vec<u8>)> {
    let mut f: Vec<(Side, Vec<u8>)> = c
        .handshake()
        .into_iter()
        .zip([Side::Client, Side::Server, Side::Client])
        .map(|(f, s)| (s, f))
        .collect();
    f.push((Side::Client, c.data(Side::Client, 300)));
    f.push((Side::Server, c.data(Side::Server, 1400)));
    f.push((Side::Server, c.data(Side::Server, 1400)));
    f.push((Side::Client, c.data(Side::Client, 0)));
    f
}

#[test]
fn a_fin_close_reports_the_totals_at_once_and_the_end_repeats_them_after_time_wait() {
    // Periodic updates off: only the close reports.
    let (mut w, mut drain, _t) = worker(0);
    let mut io = MemoryIo::new(2);
    let mut c = TcpSession::v4(CLIENT, 40_000, SERVER, 443);
    let mut frames = conversation(&mut c);
    frames.extend(
        c.close(Side::Client)
            .into_iter()
            .zip([Side::Client, Side::Server, Side::Server, Side::Client])
            .map(|(f, s)| (s, f)),
    );
    // Everything but the close's last ACK: no update yet (FIN_WAIT, LAST_ACK are still open).
    let (last, before) = frames.split_last().unwrap();
    send(&mut w, &mut io, 5 * S, before);
    assert_eq!(events(&mut drain).0, []);
    send(&mut w, &mut io, 6 * S, std::slice::from_ref(last));
    let (ups, ends) = events(&mut drain);
    assert_eq!((ups.len(), ends.len()), (1, 0), "{ups:?}");
    let (packets, bytes) = totals(&frames);
    let u = ups[0];
    assert_eq!(u.cause, UpdateCause::Closed);
    assert_eq!((u.packets, u.bytes), (packets, bytes));
    assert_eq!((u.first_seen, u.last_seen, u.at), (5 * S, 6 * S, 6 * S));
    assert_eq!(
        (u.key.sport, u.key.dport, u.decision.rule),
        (40_000, 443, Some(1))
    );
    // TIME_WAIT (120 s) passes without another update; the end carries the same totals.
    for t in 7..130 {
        idle(&mut w, &mut io, t * S);
    }
    let (ups, ends) = events(&mut drain);
    assert_eq!((ups.len(), ends.len()), (0, 1), "{ups:?}");
    assert_eq!(ends[0].reason, EndReason::Closed);
    assert_eq!((ends[0].packets, ends[0].bytes), (packets, bytes));
    assert_eq!(ends[0].last_seen, 6 * S);
    assert_eq!(drain.lost(), 0);
}

#[test]
fn a_reset_reports_the_totals_with_the_rst_counted() {
    let (mut w, mut drain, _t) = worker(0);
    let mut io = MemoryIo::new(2);
    let mut c = TcpSession::v4(CLIENT, 40_001, SERVER, 502);
    let mut frames = conversation(&mut c);
    send(&mut w, &mut io, 2 * S, &frames);
    assert_eq!(events(&mut drain).0, []);
    let rst = (Side::Server, c.rst(Side::Server));
    send(&mut w, &mut io, 3 * S, std::slice::from_ref(&rst));
    frames.push(rst);
    let (ups, _) = events(&mut drain);
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert_eq!(ups[0].cause, UpdateCause::Reset);
    let (packets, bytes) = totals(&frames);
    assert_eq!((ups[0].packets, ups[0].bytes), (packets, bytes));
    assert_eq!(ups[0].packets, [4, 4]);
}

/// A long-lived UDP flow with a datagram each way every 250 ms during `busy` seconds from
/// t = 1 s, then silence until t = 40 s; a one-datagram flow at t = 1 s. Returns the updates.
fn long_flow(update_interval_s: u64, busy: u64) -> Vec<FlowUpdate> {
    let (mut w, mut drain, _t) = worker(update_interval_s);
    let mut io = MemoryIo::new(2);
    let dgram = |side: Side| -> (Side, Vec<u8>) {
        let b = match side {
            Side::Client => FrameBuilder::new().ipv4(CLIENT, SERVER).udp(5020, 502),
            Side::Server => FrameBuilder::new().ipv4(SERVER, CLIENT).udp(502, 5020),
        };
        (side, b.payload_len(100).build())
    };
    let lone = (
        Side::Client,
        FrameBuilder::new().ipv4(CLIENT, SERVER).udp(9, 9).build(),
    );
    send(&mut w, &mut io, S, &[lone]);
    let mut ups = Vec::new();
    let mut t = S;
    while t < 40 * S {
        if t < (1 + busy) * S {
            send(
                &mut w,
                &mut io,
                t,
                &[dgram(Side::Client), dgram(Side::Server)],
            );
        } else {
            idle(&mut w, &mut io, t);
        }
        ups.extend(events(&mut drain).0);
        t += S / 4;
    }
    assert_eq!(drain.lost(), 0);
    assert!(
        ups.iter().all(|u| u.key.dport == 502),
        "never the one-packet flow: {ups:?}"
    );
    ups
}

#[test]
fn the_sweep_reports_a_long_flow_once_per_interval_while_it_carries_traffic() {
    // 20 s of traffic, reports every 5 s: four or five updates (the pass that sees the flow's
    // first packets may end just before or after t = 21 s), none after the traffic stopped.
    let ups = long_flow(5, 20);
    assert!((4..=5).contains(&ups.len()), "{ups:#?}");
    assert!(ups.iter().all(|u| u.cause == UpdateCause::Interval));
    for pair in ups.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            (4 * S..=6 * S).contains(&gap),
            "one report per interval: {gap}"
        );
        assert!(
            pair[1].packets[0] > pair[0].packets[0],
            "running totals grow"
        );
    }
    let last = ups.last().unwrap();
    // The last datagrams (t = 20.75 s) are reported by the first visit after them.
    assert_eq!(last.packets, [80, 80], "{last:?}");
    assert_eq!(last.last_seen, 20 * S + 3 * S / 4);
    assert!(last.at <= 26 * S);
}

#[test]
fn an_update_interval_of_zero_sends_no_periodic_updates() {
    assert_eq!(long_flow(0, 20), []);
}
