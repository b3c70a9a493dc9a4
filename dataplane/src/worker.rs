//! The worker poll loop: rx burst → parse → decide → tx burst to the bridge peer.
//!
//! A worker owns its counters (single writer), its bridge pairing and its connection state
//! (flow table, conntrack, fragment table, event ring: [`WorkerState`]), and is generic over
//! the port backend and the observer, so each combination is monomorphised: the DPDK path with
//! the `()` observer carries no `dyn` call and no observer cost. Per packet it allocates
//! nothing, takes no lock and logs nothing; every packet it receives is either handed to a tx
//! burst or dropped and counted under one [`DropReason`].
//!
//! Bridge mode is a bump in the wire: a packet received on one port of a pair leaves on the
//! other, unmodified. The peer is looked up per burst ([`Bridge::peer`]). Ports of a routed pair
//! ([`Worker::set_router`]) branch off there: they are routed first (MAC rewrite, TTL, the
//! gateway's own ARP/ND/ping), then go through the same decision path with the egress port the
//! route chose as their peer (`worker/routed.rs`, `docs/routed.md`).
//!
//! The policy is applied per burst in one place, [`Worker::poll`]. The fixed placeholders
//! ([`Decision::AllowAll`], [`Decision::DenyAll`]) decide packet by packet and track nothing
//! (bring-up and tests). Under a rule table ([`Decision::Table`]) or while waiting for one
//! ([`Decision::Awaiting`]) the worker is stateful (`worker/state.rs`, walk-through in
//! `docs/dataplane-state.md`): each IP packet goes through conntrack; a packet of a tracked
//! flow whose cached decision carries the running table's epoch is applied without
//! classifying; the packets of a burst that miss or find a stale epoch are classified together
//! in one [`septa_classifier::RuleTable::classify_burst`] call and the result is cached in the flow. Replies and
//! related ICMP errors get the decision of the flow's original direction.

mod routed;
mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use septa_classifier::{Action, Mode, TableCell, TableReader};

use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::error::BridgeError;
use crate::events::EventSink;
use crate::io::{Burst, PacketBuf, PacketIo, PortId};
use crate::parse::{L3, ParsedPacket, parse};
use crate::route::Router;
pub use state::{Clock, DEFAULT_UPDATE_INTERVAL_S, StateConfig, TICKS_PER_SECOND, WorkerState};

/// The classifier's answer for one flow (which rule, what action, which mode, which clause).
pub use septa_classifier::Decision as RuleDecision;

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Send it out on the peer port.
    Forward,
    /// Drop it, counted under this reason.
    Drop(DropReason),
}

/// The policy a worker applies.
#[derive(Debug, Default)]
pub enum Decision {
    /// Forward everything that parses.
    #[default]
    AllowAll,
    /// Drop every IP packet and every non-IP frame except ARP, under `policy`.
    ///
    /// ARP passes so that hosts on both sides keep resolving each other: dropping it would
    /// break L2 adjacency across the bridge and turn a policy into an outage of everything,
    /// including what a later allow rule would permit. Other non-IP ethertypes are dropped
    /// (fail closed), since PPPoE, MPLS or unknown tunnels could carry IP past the policy.
    DenyAll,
    /// The compiled policy published in a [`septa_classifier::TableCell`], read through this
    /// worker's own reader (loaded once per burst; see `docs/rcu.md`). IP packets get the
    /// decision of their flow key's first matching rule, applied by [`enforce`]; non-IP frames
    /// are handled as under [`Decision::DenyAll`]: ARP passes, every other ethertype is dropped
    /// under `policy`. Stateful: see the module documentation.
    Table(TableReader),
    /// No policy yet (fail-closed start): new flows are dropped under `no_policy`, unless the
    /// worker's [`StateConfig::fail_open`] admits them (tracked, and re-evaluated on their next
    /// packet once a policy arrives). Non-IP frames as under [`Decision::Table`]. The worker
    /// checks the slot once per poll and switches to [`Decision::Table`] as soon as a cell is
    /// installed in it.
    Awaiting(PolicySlot),
}

/// Where the control side installs the first policy for workers started without one. Clone it
/// into every worker's [`Decision::Awaiting`]; [`PolicySlot::install`] the cell once, then
/// publish later tables into that cell.
#[derive(Clone, Debug, Default)]
pub struct PolicySlot(Arc<OnceLock<Arc<TableCell>>>);

impl PolicySlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Install the cell workers read from. `false` if one was already installed (it stays).
    pub fn install(&self, cell: Arc<TableCell>) -> bool {
        self.0.set(cell).is_ok()
    }

    /// The installed cell, if any (one atomic load).
    #[inline]
    pub fn cell(&self) -> Option<&Arc<TableCell>> {
        self.0.get()
    }
}

impl Decision {
    /// The verdict of a fixed decision for one parsed packet; `None` for [`Decision::Table`],
    /// which decides a burst at a time.
    #[inline]
    pub fn fixed_verdict(&self, pkt: &ParsedPacket) -> Option<Verdict> {
        match (self, pkt.is_ip()) {
            (Decision::AllowAll, _) => Some(Verdict::Forward),
            (Decision::DenyAll, true) => Some(Verdict::Drop(DropReason::Policy)),
            (Decision::DenyAll | Decision::Table(_) | Decision::Awaiting(_), false) => {
                Some(non_ip_verdict(pkt.l3))
            }
            (Decision::Table(_) | Decision::Awaiting(_), true) => None,
        }
    }
}

/// Non-IP frames under a policy: ARP passes, everything else is dropped under `policy`.
#[inline]
fn non_ip_verdict(l3: L3) -> Verdict {
    match l3 {
        L3::Arp => Verdict::Forward,
        _ => Verdict::Drop(DropReason::Policy),
    }
}

/// The verdict for a packet whose flow the rule table decided `d`.
///
/// * allow: forward;
/// * deny in enforce mode: drop under `policy`;
/// * deny in monitor mode: forward, and count it as `would_deny` (not a drop);
/// * inspect: there are no L7 hooks yet. In enforce mode the packet fails closed under
///   `l7_unavailable`: a conduit that asks for inspection never admits traffic it cannot
///   inspect. In monitor mode it is forwarded and counted as `would_deny`, like any other
///   monitor-mode refusal: monitor mode exists to learn without disrupting (an HMI polling a PLC
///   must not stop because a conduit is still being tuned).
#[inline]
pub fn enforce(d: &RuleDecision, counters: &WorkerCounters) -> Verdict {
    let (v, would) = judge(d);
    if would.is_some() {
        counters.would_deny();
    }
    v
}

/// [`enforce`] without counting: the verdict, and for a monitor-mode refusal the reason
/// enforcing would have dropped the packet under.
#[inline]
pub fn judge(d: &RuleDecision) -> (Verdict, Option<DropReason>) {
    match (d.action, d.mode) {
        (Action::Allow, _) => (Verdict::Forward, None),
        (Action::Deny, Mode::Enforce) => (Verdict::Drop(DropReason::Policy), None),
        (Action::Deny, Mode::Monitor) => (Verdict::Forward, Some(DropReason::Policy)),
        (Action::Inspect(_), Mode::Enforce) => (Verdict::Drop(DropReason::L7Unavailable), None),
        (Action::Inspect(_), Mode::Monitor) => (Verdict::Forward, Some(DropReason::L7Unavailable)),
    }
}

/// The drop reason an L7 conduit deny is counted under: `l7_malformed` for a message that does
/// not parse (or a stream that could not be followed), `l7_denied` for every other refusal.
#[inline]
pub fn l7_drop_reason(r: &septa_l7::DenyReason) -> DropReason {
    match r {
        septa_l7::DenyReason::Malformed { .. } => DropReason::L7Malformed,
        _ => DropReason::L7Denied,
    }
}

/// The verdict for a message an L7 conduit of a rule in `mode` judged `v`, like [`judge`]: in
/// enforce mode a deny drops under [`l7_drop_reason`]; in monitor mode it forwards and reports
/// the reason enforcing would have dropped under (counted as `would_deny`).
#[inline]
pub fn judge_l7(mode: Mode, v: &septa_l7::L7Verdict) -> (Verdict, Option<DropReason>) {
    match (v, mode) {
        (septa_l7::L7Verdict::Allow, _) => (Verdict::Forward, None),
        (septa_l7::L7Verdict::Deny(r), Mode::Enforce) => (Verdict::Drop(l7_drop_reason(r)), None),
        (septa_l7::L7Verdict::Deny(r), Mode::Monitor) => {
            (Verdict::Forward, Some(l7_drop_reason(r)))
        }
    }
}

/// Sees every packet a worker handles. The `()` implementation does nothing and compiles away.
pub trait Observer {
    /// Called once per received packet with its parse result (`None` if parsing failed), the
    /// verdict and, when a rule table decided it, the table's decision (rule, action, mode,
    /// clause). A forwarded packet may still be dropped as `tx_full`, reported through
    /// [`Observer::tx_failed`].
    fn packet(
        &mut self,
        port: PortId,
        len: usize,
        parsed: Option<&ParsedPacket>,
        verdict: Verdict,
        rule: Option<&RuleDecision>,
    );

    /// `frames` forwarded packets that `port` did not accept.
    fn tx_failed(&mut self, _port: PortId, _frames: usize) {}
}

impl Observer for () {
    #[inline(always)]
    fn packet(
        &mut self,
        _: PortId,
        _: usize,
        _: Option<&ParsedPacket>,
        _: Verdict,
        _: Option<&RuleDecision>,
    ) {
    }
}

/// Which port forwards to which: pairs of ports, each direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    peer: Vec<Option<PortId>>,
}

impl Bridge {
    /// A bridge over `port_count` ports with the given pairs. Ports in no pair drop what they
    /// receive (`no_peer_port`).
    pub fn new(port_count: u16, pairs: &[(PortId, PortId)]) -> Result<Self, BridgeError> {
        let mut peer = vec![None; usize::from(port_count)];
        for &(a, b) in pairs {
            if a == b {
                return Err(BridgeError::SelfPair(a));
            }
            for p in [a, b] {
                if p >= port_count {
                    return Err(BridgeError::NoSuchPort {
                        port: p,
                        count: port_count,
                    });
                }
                if peer[usize::from(p)].is_some() {
                    return Err(BridgeError::Duplicate(p));
                }
            }
            peer[usize::from(a)] = Some(b);
            peer[usize::from(b)] = Some(a);
        }
        Ok(Bridge { peer })
    }

    /// Ports 0↔1, 2↔3, ... (an odd last port stays unpaired).
    pub fn consecutive_pairs(port_count: u16) -> Self {
        let pairs: Vec<_> = (0..port_count / 2).map(|i| (2 * i, 2 * i + 1)).collect();
        Self::new(port_count, &pairs)
            .unwrap_or_else(|_| unreachable!("consecutive pairs are valid"))
    }

    /// Number of ports.
    pub fn port_count(&self) -> u16 {
        self.peer.len() as u16
    }

    /// The port that `port` forwards to.
    #[inline]
    pub fn peer(&self, port: PortId) -> Option<PortId> {
        self.peer.get(usize::from(port)).copied().flatten()
    }
}

/// One poll-loop worker.
#[derive(Debug)]
pub struct Worker {
    counters: Arc<WorkerCounters>,
    bridge: Bridge,
    decision: Decision,
    state: WorkerState,
    /// Routed mode: frames received on the router's ports go through it (`worker/routed.rs`).
    router: Option<Router>,
}

impl Worker {
    /// A worker forwarding across `bridge` under `decision`, with fresh counters, the default
    /// [`StateConfig`] (a 65536-flow table), a monotonic clock and no event consumer.
    pub fn new(bridge: Bridge, decision: Decision) -> Self {
        let state = WorkerState::new(&StateConfig::default(), EventSink::disabled())
            .unwrap_or_else(|_| unreachable!("the default state configuration is valid"));
        Self::with_state(bridge, decision, state)
    }

    /// A worker with its connection state made by the caller ([`WorkerState::new`]).
    pub fn with_state(bridge: Bridge, decision: Decision, state: WorkerState) -> Self {
        Worker {
            counters: Arc::new(WorkerCounters::new(bridge.port_count())),
            bridge,
            decision,
            state,
            router: None,
        }
    }

    /// Route the router's ports (routed mode, `docs/routed.md`): frames received on them are
    /// routed instead of bridged, and the gateway's own answers are sent once per poll. The
    /// router's clock is the worker's ([`WorkerState::now`]).
    pub fn set_router(&mut self, router: Router) {
        self.router = Some(router);
    }

    /// The router, in routed mode (neighbours, routes, slow-path counters).
    pub fn router(&self) -> Option<&Router> {
        self.router.as_ref()
    }

    /// The worker's counters; clone the `Arc` to read them from a stats thread.
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    /// The worker's connection state (flow and fragment tables, clock).
    pub fn state(&self) -> &WorkerState {
        &self.state
    }

    /// The worker's connection state, mutably (tests and the offline runtime drive its clock).
    pub fn state_mut(&mut self) -> &mut WorkerState {
        &mut self.state
    }

    /// Replace the decision (between polls). Tracked flows keep their cached decisions, which a
    /// table of another epoch replaces on their next packet.
    pub fn set_decision(&mut self, decision: Decision) {
        self.decision = decision;
    }

    /// Receive one burst on every port of the bridge, process it and transmit to the peers,
    /// then age flows and fragments a bounded amount. Returns the number of packets received.
    pub fn poll<IO: PacketIo, O: Observer>(&mut self, io: &mut IO, obs: &mut O) -> usize {
        self.counters.polled();
        self.state.tick();
        if let Decision::Awaiting(slot) = &self.decision
            && let Some(cell) = slot.cell()
        {
            // Once, when the first policy arrives (the reader's one allocation).
            self.decision = Decision::Table(cell.reader());
        }
        let mut received = 0;
        for port in 0..self.bridge.port_count() {
            let mut rx: Burst<IO::Buf> = Burst::new();
            if io.rx_burst(port, &mut rx) == 0 {
                continue;
            }
            let received_here = rx.len();
            received += received_here;
            if let Some(router) = self.router.as_mut().filter(|r| r.is_routed(port)) {
                let rx_bytes = routed::burst(
                    router,
                    &mut self.decision,
                    &mut self.state,
                    &self.counters,
                    io,
                    port,
                    &mut rx,
                    obs,
                );
                self.counters.rx(port, received_here, rx_bytes);
                continue;
            }
            let peer = self.bridge.peer(port);
            let mut tx: Burst<IO::Buf> = Burst::new();
            for pkt in &rx {
                pkt.prefetch();
            }
            let (rx_bytes, tx_bytes) = match &mut self.decision {
                Decision::Table(reader) => {
                    // The worker's quiescent point: the newest table, once per burst.
                    let table = reader.load();
                    state::stateful_burst(
                        Some(table),
                        &mut self.state,
                        &self.counters,
                        port,
                        peer,
                        &mut rx,
                        &mut tx,
                        obs,
                    )
                }
                Decision::Awaiting(_) => state::stateful_burst(
                    None,
                    &mut self.state,
                    &self.counters,
                    port,
                    peer,
                    &mut rx,
                    &mut tx,
                    obs,
                ),
                fixed => fixed_burst(fixed, &self.counters, port, peer, &mut rx, &mut tx, obs),
            };
            self.counters.rx(port, received_here, rx_bytes);
            if let Some(peer) = peer.filter(|_| !tx.is_empty()) {
                let sent = io.tx_burst(peer, &mut tx);
                let unsent_bytes: usize = tx.iter().map(|p| p.data().len()).sum();
                self.counters.tx(peer, sent, tx_bytes - unsent_bytes);
                if !tx.is_empty() {
                    self.counters.dropped(DropReason::TxFull, tx.len());
                    obs.tx_failed(peer, tx.len());
                    tx.clear();
                }
            }
        }
        if let Some(router) = &mut self.router {
            routed::transmit_local(router, &self.counters, io, self.state.now());
        }
        if received == 0
            && let Decision::Table(reader) = &mut self.decision
        {
            // Idle: let go of a retired table all the same.
            reader.quiescent();
        }
        // Ageing runs on idle polls too, so idle flows end on time.
        self.state.expire();
        received
    }

    /// Poll until `stop` is set (checked between polls).
    pub fn run<IO: PacketIo>(&mut self, io: &mut IO, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if self.poll(io, &mut ()) == 0 {
                std::hint::spin_loop();
            }
        }
        self.publish_now();
        self.counters.set_stopped();
    }

    /// Publish the flow table's, the L7 inspector's, the sampler's and the router's counters now
    /// (they are otherwise published every [`counters::PUBLISH_US`](crate::counters::PUBLISH_US),
    /// the L7 counters every [`L7_PUBLISH_US`](crate::l7::L7_PUBLISH_US), between polls): when
    /// the worker stops, and after each [`Self::flush`].
    pub fn publish_now(&mut self) {
        self.state.publish_now();
        if let Some(r) = &mut self.router {
            r.publish_now(self.state.now());
        }
    }

    /// End every tracked flow now (flow-end records with reason `flushed` unless closed or
    /// reset): at shutdown and at the end of an offline replay. Removes at most `budget` flows
    /// per call and returns how many it removed (0: the table is empty), so the caller can
    /// drain the event ring in between.
    pub fn flush(&mut self, budget: usize) -> usize {
        let n = self.state.flush(budget);
        self.publish_now();
        n
    }
}

/// Drains `rx` under a fixed decision, packet by packet, into `tx` (forwarded) or the drop
/// counters. Returns the received and forwarded byte counts.
#[inline(always)]
fn fixed_burst<B: PacketBuf, O: Observer>(
    decision: &Decision,
    counters: &WorkerCounters,
    port: PortId,
    peer: Option<PortId>,
    rx: &mut Burst<B>,
    tx: &mut Burst<B>,
    obs: &mut O,
) -> (usize, usize) {
    let (mut rx_bytes, mut tx_bytes) = (0, 0);
    for pkt in rx.drain(..) {
        rx_bytes += pkt.data().len();
        let verdict = fixed_packet(decision, counters, port, peer, pkt.data(), obs);
        match verdict {
            Verdict::Forward => {
                tx_bytes += pkt.data().len();
                tx.push(pkt);
            }
            Verdict::Drop(reason) => counters.dropped(reason, 1),
        }
    }
    (rx_bytes, tx_bytes)
}

#[inline(always)]
fn fixed_packet<O: Observer>(
    decision: &Decision,
    counters: &WorkerCounters,
    port: PortId,
    peer: Option<PortId>,
    frame: &[u8],
    obs: &mut O,
) -> Verdict {
    let mut parsed = match parse(frame) {
        Ok(p) => p,
        Err(reason) => {
            let v = Verdict::Drop(reason);
            obs.packet(port, frame.len(), None, v, None);
            return v;
        }
    };
    parsed.key.in_port = port;
    let verdict = match peer {
        // Only fixed decisions come here, so there is always a verdict.
        Some(_) => decision
            .fixed_verdict(&parsed)
            .unwrap_or(Verdict::Drop(DropReason::Policy)),
        None => Verdict::Drop(DropReason::NoPeerPort),
    };
    if verdict == Verdict::Forward && !parsed.is_ip() {
        counters.non_ip();
    }
    obs.packet(port, frame.len(), Some(&parsed), verdict, None);
    verdict
}

#[cfg(test)]
mod tests;
