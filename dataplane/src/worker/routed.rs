//! Routed-mode bursts: the worker's side of [`crate::route`] (design in `docs/routed.md`).
//!
//! A burst received on a routed port is handled in two steps:
//! 1. every frame is parsed and given to [`Router::process`]: frames for the gateway itself
//!    (ARP, neighbour discovery, pings of its addresses) go to the port's smoltcp stack and are
//!    neither forwarded nor dropped; frames the router refuses are dropped under its reason
//!    (`ttl_exceeded`, `no_route`, `neighbour_unresolved`, ...); transit frames are rewritten
//!    in place (MACs, TTL/hop limit) and keep the egress port the route chose;
//! 2. the transit frames are grouped by egress port (receive order is kept within a group, so
//!    within a flow) and each group goes through the same decision path as a bridge burst
//!    (`state::stateful_burst` under a policy, `fixed_burst` under allow-all/deny-all) with the
//!    egress port as its peer, then onto that port's own tx burst.
//!
//! The policy thus applies after routing, as Linux's FORWARD hook does: a packet to a denied
//! destination still gets `ttl_exceeded` (and a time-exceeded error) when its TTL is 1.
//!
//! Once per poll, after every port was received, [`transmit_local`] runs the gateway's stacks
//! and sends what they and the router queued (answers, time-exceeded errors, solicitations),
//! copied into buffers from [`PacketIo::alloc_tx`].
//!
//! Nothing here allocates, locks or logs: bursts and groups are fixed arrays on the stack.

use arrayvec::ArrayVec;

use super::{Decision, Observer, Verdict, fixed_burst, state};
use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::io::{BURST, Burst, PacketBuf, PacketIo, PortId};
use crate::parse::parse;
use crate::route::{RouteAction, Router};
use state::WorkerState;

/// Route and decide one burst received on routed `port`, transmitting what passes on the egress
/// ports the routes chose. Returns the bytes received.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn burst<IO: PacketIo, O: Observer>(
    router: &mut Router,
    decision: &mut Decision,
    state: &mut WorkerState,
    counters: &WorkerCounters,
    io: &mut IO,
    port: PortId,
    rx: &mut Burst<IO::Buf>,
    obs: &mut O,
) -> usize {
    let now = state.now();
    for pkt in rx.iter() {
        pkt.prefetch();
    }
    let mut rx_bytes = 0;
    let mut transit: Burst<IO::Buf> = Burst::new();
    let mut egress: ArrayVec<PortId, BURST> = ArrayVec::new();
    for mut pkt in rx.drain(..) {
        let len = pkt.data().len();
        rx_bytes += len;
        let parsed = match parse(pkt.data()) {
            Ok(mut p) => {
                p.key.in_port = port;
                p
            }
            Err(reason) => {
                obs.packet(port, len, None, Verdict::Drop(reason), None);
                counters.dropped(reason, 1);
                continue;
            }
        };
        match router.process(port, pkt.data_mut(), &parsed, now) {
            RouteAction::Forward { port: out } => {
                transit.push(pkt);
                egress.push(out);
            }
            // A copy is queued for the gateway's stack; the buffer is freed here.
            RouteAction::Local => {}
            RouteAction::Drop(reason) => {
                obs.packet(port, len, Some(&parsed), Verdict::Drop(reason), None);
                counters.dropped(reason, 1);
            }
        }
    }
    while let Some(&out) = egress.first() {
        // Split off the frames for `out`; the rest waits for the next round.
        let mut group: Burst<IO::Buf> = Burst::new();
        let mut rest: Burst<IO::Buf> = Burst::new();
        let mut rest_egress: ArrayVec<PortId, BURST> = ArrayVec::new();
        for (pkt, to) in transit.drain(..).zip(egress.drain(..)) {
            if to == out {
                group.push(pkt);
            } else {
                rest.push(pkt);
                rest_egress.push(to);
            }
        }
        transit = rest;
        egress = rest_egress;
        let mut tx: Burst<IO::Buf> = Burst::new();
        let peer = Some(out);
        let (_, tx_bytes) = match &mut *decision {
            Decision::Table(reader) => {
                let table = reader.load();
                state::stateful_burst(
                    Some(table),
                    state,
                    counters,
                    port,
                    peer,
                    &mut group,
                    &mut tx,
                    obs,
                )
            }
            Decision::Awaiting(_) => {
                state::stateful_burst(None, state, counters, port, peer, &mut group, &mut tx, obs)
            }
            fixed => fixed_burst(fixed, counters, port, peer, &mut group, &mut tx, obs),
        };
        send(io, counters, out, &mut tx, tx_bytes, obs);
    }
    rx_bytes
}

/// Transmit `tx` on `port`, counting what went out and dropping what the port refused as
/// `tx_full`.
#[inline]
fn send<IO: PacketIo, O: Observer>(
    io: &mut IO,
    counters: &WorkerCounters,
    port: PortId,
    tx: &mut Burst<IO::Buf>,
    tx_bytes: usize,
    obs: &mut O,
) {
    if tx.is_empty() {
        return;
    }
    let sent = io.tx_burst(port, tx);
    let unsent_bytes: usize = tx.iter().map(|p| p.data().len()).sum();
    counters.tx(port, sent, tx_bytes - unsent_bytes);
    if !tx.is_empty() {
        counters.dropped(DropReason::TxFull, tx.len());
        obs.tx_failed(port, tx.len());
        tx.clear();
    }
}

/// Run the gateway's stacks and send, on every routed port, up to one burst of the frames the
/// gateway originated (answers, errors, solicitations). A frame stays queued in the router
/// while no transmit buffer is available; one the port refuses is counted as `tx_full`.
pub(super) fn transmit_local<IO: PacketIo>(
    router: &mut Router,
    counters: &WorkerCounters,
    io: &mut IO,
    now: u64,
) {
    router.poll(now);
    for port in 0..io.port_count() {
        if !router.is_routed(port) {
            continue;
        }
        let mut tx: Burst<IO::Buf> = Burst::new();
        let mut bytes = 0;
        router.drain_tx(port, |frame| {
            if tx.is_full() {
                return false;
            }
            match io.alloc_tx(port, frame) {
                Some(buf) => {
                    bytes += frame.len();
                    tx.push(buf);
                    true
                }
                None => false,
            }
        });
        send(io, counters, port, &mut tx, bytes, &mut ());
    }
}
