//! The stateful decision path of a worker: flow table, conntrack, fragments, cached decisions
//! and events (walk-through in `docs/dataplane-state.md`).
//!
//! A burst starts with a direct pass (`established_prefix`): its leading packets that belong to
//! tracked flows whose cached decision is a current allow go straight through parse, lookup and
//! conntrack, one at a time, with nothing staged (such a packet inserts and removes nothing, so
//! this is exact). The first other packet ends that pass; it and the rest of the burst take three
//! passes, all in fixed arrays on the stack:
//! 1. parse every packet and, for each IP packet, look its flow up (read-only,
//!    [`conntrack::find`]): a hit whose cached decision carries the running table's epoch needs
//!    nothing; a stale hit needs its flow's *original* key classified, a miss the packet's own
//!    key;
//! 2. match those keys with one [`RuleTable::match_burst`] call (rule indices, resolved with
//!    [`RuleTable::decision_at`] when pass 3 uses them);
//! 3. in receive order, run conntrack ([`conntrack::begin_found`]: state, windows, counters;
//!    it reuses pass 1's lookup unless a flow was inserted or removed since), then
//!    apply the flow's cached decision, or the one from pass 2 (cached into the flow), or admit
//!    or refuse the new flow. A key pass 2 did not foresee (a flow created or evicted by an
//!    earlier packet of the same burst) is classified alone with [`RuleTable::classify`]; this
//!    is rare and still allocation-free.

use std::hash::{BuildHasher, Hasher};

use arrayvec::ArrayVec;
use std::time::Instant;

use septa_classifier::{
    Action, Family, FlowKey, HookId, Mode, NO_RULE, RuleId, RuleTable, SourceRef,
};

use super::{Observer, RuleDecision, Verdict, judge, non_ip_verdict};
use crate::conntrack::{self, Begun, Conn, Found, NewFlow, TcpState};
use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::error::StateConfigError;
use crate::events::{
    DenyRecord, EndReason, EventAction, EventDecision, EventSink, FlowEnd, FlowEvent, FlowStart,
    FlowUpdate, UpdateCause,
};
use crate::flow::{
    CachedDecision, Direction, FlowEntry, FlowId, FlowTable, FlowTableConfig, HashedKey,
    UpdateSweep,
};
use crate::frag::{FragConfig, FragTable, fragment_info};
use crate::io::{BURST, Burst, PacketBuf, PortId};
use crate::l7::{FunctionTally, L7Inspector, L7Judgement};
use crate::parse::{self, Fragment, ParsedPacket, parse};
use crate::sample::Sampler;

/// Ticks of the worker clock per second: the clock counts microseconds.
pub const TICKS_PER_SECOND: u64 = 1_000_000;

/// Sizing, timeouts and start-up behaviour of a worker's connection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateConfig {
    /// Flow table: capacity, half-open cap, per-class idle timeouts (in microsecond ticks),
    /// timer wheel.
    pub flows: FlowTableConfig,
    /// Fragment table: datagrams tracked at once and how long (ticks).
    pub frags: FragConfig,
    /// Admit new flows while no policy is installed ([`super::Decision::Awaiting`]) instead of
    /// dropping them under `no_policy`. Off by default (fail closed).
    pub fail_open: bool,
    /// Flows and datagrams aged per poll at most (bounds the work of one poll).
    pub expire_budget: usize,
    /// TCP flows under a function-code conduit inspected at once (the L7 stream slab, 76
    /// bytes each; see `l7/inspect.rs`). Beyond it their payload fails closed (`l7_unavailable`).
    pub l7_flows: usize,
    /// Ticks between two flow-update reports of a live flow with traffic (the update sweep's
    /// pass over the table, `flow/sweep.rs`); 0: no periodic updates (TCP closes still report).
    pub update_interval: u64,
}

/// Default [`StateConfig::update_interval`], in seconds.
pub const DEFAULT_UPDATE_INTERVAL_S: u64 = 10;

impl StateConfig {
    /// `capacity` flows (half-open cap a quarter of it, nftables timeouts), `capacity / 16`
    /// fragmented datagrams (at least 64) tracked for 30 s, fail closed.
    pub fn new(capacity: usize) -> Self {
        StateConfig {
            flows: FlowTableConfig::new(capacity, TICKS_PER_SECOND),
            frags: FragConfig::new((capacity / 16).max(64), TICKS_PER_SECOND),
            fail_open: false,
            expire_budget: 64,
            l7_flows: (capacity / 4).clamp(1, 1 << 16),
            update_interval: DEFAULT_UPDATE_INTERVAL_S * TICKS_PER_SECOND,
        }
    }
}

impl Default for StateConfig {
    /// 65536 flows.
    fn default() -> Self {
        Self::new(1 << 16)
    }
}

/// Where a worker's `now` comes from.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// Microseconds since the worker was made, read once per poll (`Instant`, monotonic).
    Monotonic(Instant),
    /// Whatever the owner last set with [`WorkerState::set_now`] (tests, deterministic replay).
    Manual,
}

/// Verdict recorded with a first fragment for the rest of its datagram.
#[derive(Clone, Copy, Debug)]
struct FragVerdict {
    verdict: Verdict,
    decision: Option<RuleDecision>,
    would_deny: bool,
}

impl Default for FragVerdict {
    fn default() -> Self {
        FragVerdict {
            verdict: Verdict::Drop(DropReason::FragmentNoHead),
            decision: None,
            would_deny: false,
        }
    }
}

/// TCP connections closed since the last poll's reports, with their counters at the close
/// (filled by the general conntrack path, emptied once per poll by [`WorkerState::expire`]).
const CLOSED_PER_POLL: usize = 256;

/// One worker's connection state: flow table with conntrack, fragment table, clock, event
/// sink. Everything is allocated here, once.
#[derive(Debug)]
pub struct WorkerState {
    flows: FlowTable<Conn>,
    closed: ClosedQueue,
    sweep: UpdateSweep,
    frags: FragTable<FragVerdict>,
    events: EventSink,
    l7: L7Inspector,
    sampler: Option<Sampler>,
    /// Run bursts through the direct pass first ([`WorkerState::set_direct_pass`]).
    direct: bool,
    fail_open: bool,
    budget: usize,
    clock: Clock,
    now: u64,
}

/// A fresh 128-bit hash key from the OS-seeded `RandomState`.
fn random_key() -> [u64; 2] {
    let s = std::collections::hash_map::RandomState::new();
    let mut a = s.build_hasher();
    a.write_u8(1);
    let mut b = s.build_hasher();
    b.write_u8(2);
    [a.finish(), b.finish()]
}

impl WorkerState {
    /// Allocate the tables of `cfg` (fresh random hash keys) with a monotonic clock; events go
    /// to `events`.
    pub fn new(cfg: &StateConfig, events: EventSink) -> Result<Self, StateConfigError> {
        Ok(WorkerState {
            flows: FlowTable::new(&cfg.flows, random_key())?,
            closed: ClosedQueue::default(),
            sweep: UpdateSweep::new(cfg.update_interval),
            frags: FragTable::new(&cfg.frags, random_key())?,
            events,
            l7: L7Inspector::new(cfg.l7_flows),
            sampler: None,
            direct: true,
            fail_open: cfg.fail_open,
            budget: cfg.expire_budget.max(1),
            clock: Clock::Monotonic(Instant::now()),
            now: 0,
        })
    }

    /// Use `clock` from now on.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Set `now` (ticks, never backwards) and switch to the manual clock.
    pub fn set_now(&mut self, now: u64) {
        self.clock = Clock::Manual;
        self.now = self.now.max(now);
    }

    /// The current tick.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The flow table (read-only: length, stats, entries).
    pub fn flows(&self) -> &FlowTable<Conn> {
        &self.flows
    }

    /// The function-code conduit state: L7 counters, stream slab, stats.
    pub fn l7(&self) -> &L7Inspector {
        &self.l7
    }

    /// Sample flow features for ML with `sampler` from now on (`sample.rs`).
    pub fn set_sampler(&mut self, sampler: Sampler) {
        self.sampler = Some(sampler);
    }

    /// Start bursts with the direct pass (the default) or send every packet through the staged
    /// passes. The results are the same either way (`tests/burst_equivalence.rs` compares
    /// them); switching it off is for that comparison and for measuring the direct pass.
    pub fn set_direct_pass(&mut self, on: bool) {
        self.direct = on;
    }

    /// The feature sampler, if one is set.
    pub fn sampler(&self) -> Option<&Sampler> {
        self.sampler.as_ref()
    }

    /// Heap bytes of the connection state, all allocated up front: flow table (entries,
    /// index, timer wheel), fragment table, L7 stream slab and, if set, the feature sampler.
    pub fn memory_bytes(&self) -> usize {
        self.flows.memory_bytes()
            + self.frags.memory_bytes()
            + self.l7.memory_bytes()
            + self.sampler.as_ref().map_or(0, |s| s.memory_bytes())
    }

    /// Datagrams tracked in the fragment table.
    pub fn fragments(&self) -> usize {
        self.frags.len()
    }

    /// Read the clock (once per poll).
    #[inline]
    pub(super) fn tick(&mut self) {
        if let Clock::Monotonic(start) = self.clock {
            self.now = self.now.max(start.elapsed().as_micros() as u64);
        }
    }

    /// Report the TCP connections closed since the last poll, with their counters as they
    /// were at the close (later packets of the poll, e.g. a SYN reopening the connection, are
    /// not in them: the same records as if each packet had been a poll of its own).
    #[cold]
    fn report_closed(&mut self) {
        let events = &self.events;
        for _ in 0..std::mem::take(&mut self.closed.lost) {
            events.count_lost();
        }
        for c in self.closed.flows.drain(..) {
            // A closed connection is established, so not evictable until the next expiry; one
            // that a SYN reopened is, and its slot may hold another flow by now.
            let Some(e) = self
                .flows
                .slot_entry(c.id.slot())
                .filter(|e| e.first_seen() == c.first_seen && e.key_hash() == c.hash)
            else {
                continue;
            };
            let mut u = flow_update(e, c.at, UpdateCause::Closed);
            if c.state == TcpState::Close {
                u.cause = UpdateCause::Reset;
            }
            (u.packets, u.bytes, u.last_seen) = (c.packets, c.bytes, c.at);
            events.emit(FlowEvent::Update(u));
        }
    }

    /// Report the TCP connections closed since the last poll, then the live flows the update
    /// sweep finds active (within the budget).
    #[inline]
    fn report_updates(&mut self) {
        if !self.closed.is_empty() {
            self.report_closed();
        }
        let (now, events) = (self.now, &self.events);
        self.sweep.run(&self.flows, now, self.budget, |e| {
            let closed = matches!(e.state, Conn::Tcp(c)
                if matches!(c.state, TcpState::TimeWait | TcpState::Close));
            // A closed connection was reported when it closed and its end follows; a flow of
            // one packet (a probe, a lone SYN) is reported by its end.
            if !closed && e.packets(Direction::Original) + e.packets(Direction::Reply) > 1 {
                events.emit(FlowEvent::Update(flow_update(
                    e,
                    now,
                    UpdateCause::Interval,
                )));
            }
        });
    }

    /// Age flows and fragments up to `now`, within the budget.
    #[inline]
    pub(super) fn expire(&mut self) {
        self.report_updates();
        let (now, events, l7, smp) = (self.now, &self.events, &mut self.l7, &mut self.sampler);
        self.flows.expire(now, self.budget, |e| {
            l7.release_ended(e.l7);
            if let Some(s) = smp {
                s.flow_end(e);
            }
            events.emit(FlowEvent::End(flow_end(e, now, None)));
        });
        self.frags.expire(now, self.budget);
        self.flows.publish(now, crate::counters::PUBLISH_US);
        // Its L7 counters, every `l7::L7_PUBLISH_US` (one comparison when not due).
        self.l7.publish(now);
        if let Some(s) = &mut self.sampler {
            // Its counters for the control side, every `counters::PUBLISH_US` (one comparison).
            s.publish(now);
        }
    }

    /// Publish the flow table's, the L7 inspector's and the sampler's counters now, due or not:
    /// at stop, so that the last interval's counts reach `/metrics` and the health report too.
    pub(super) fn publish_now(&mut self) {
        self.flows.publish_now(self.now);
        self.l7.publish_now(self.now);
        if let Some(s) = &mut self.sampler {
            s.publish_now(self.now);
        }
    }

    /// Remove up to `budget` flows, reporting each; returns how many were removed.
    pub(super) fn flush(&mut self, budget: usize) -> usize {
        if !self.closed.is_empty() {
            self.report_closed();
        }
        let (now, events, l7, smp) = (self.now, &self.events, &mut self.l7, &mut self.sampler);
        self.flows.expire(u64::MAX >> 2, budget, |e| {
            l7.release_ended(e.l7);
            if let Some(s) = smp {
                s.flow_end(e);
            }
            events.emit(FlowEvent::End(flow_end(e, now, Some(EndReason::Flushed))));
        })
    }

    /// Pass 3's fast path, for most packets of an established workload: a packet (not a
    /// fragment, not an ICMP error) of tracked flow `id`, going in `dir`, whose pass-1 lookup
    /// is still exact and whose cached decision is current and a plain allow (pass 1b checked
    /// that; nothing in between changes a decision without changing the table's generation).
    /// Runs conntrack; `Err` is its refusal. [`Self::packet`] handles this case identically
    /// (and every other one).
    #[inline(always)]
    fn established(
        &mut self,
        id: FlowId,
        dir: Direction,
        pkt: &ParsedPacket,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        debug_assert!(pkt.fragment == Fragment::None);
        debug_assert!(self.flows.entry(id).decision.action == ACT_ALLOW);
        let closed = &mut self.closed;
        conntrack::advance_found(&mut self.flows, id, dir, pkt, frame, self.now, move |c| {
            closed.note(c)
        })?;
        if let Some(s) = &mut self.sampler {
            let e = self.flows.entry_mut(id);
            if e.l7.sample != 0 {
                // Only the sampled flows pay for reading the frame again: passing `pkt` out of
                // line would force the direct pass's parse result out of registers.
                sample_reparsed(s, e, pkt.key.in_port, frame, self.now);
            }
        }
        Ok(())
    }

    /// The verdict for one IP packet with a peer port. `decide` returns the rule table's
    /// decision for a key (pass 2's, or a fresh classification).
    #[inline]
    fn packet(
        &mut self,
        table: Option<&RuleTable>,
        pkt: &ParsedPacket,
        frame: &[u8],
        found: Option<Found>,
        decide: &impl Fn(&FlowKey) -> RuleDecision,
        counters: &WorkerCounters,
    ) -> (Verdict, Option<RuleDecision>) {
        if pkt.fragment == Fragment::NonFirst {
            let Some(info) = fragment_info(pkt, frame) else {
                return (Verdict::Drop(DropReason::FragmentInvalid), None);
            };
            return match self.frags.follow(pkt, &info, self.now) {
                Ok((_, fv)) => {
                    if fv.would_deny && fv.verdict == Verdict::Forward {
                        counters.would_deny();
                    }
                    (fv.verdict, fv.decision)
                }
                Err(r) => (Verdict::Drop(r), None),
            };
        }
        let (verdict, decision, would) =
            match conntrack::begin_found(&mut self.flows, pkt, frame, self.now, found, |c| {
                self.closed.note(c)
            }) {
                Err(r) => return (Verdict::Drop(r), None),
                Ok(Begun::Tracked { id, .. } | Begun::Related { id, .. }) => {
                    self.tracked(id, pkt, frame, table, decide)
                }
                Ok(Begun::New(new)) => self.new_flow(new, pkt, frame, table, decide),
                // Only non-IP frames and non-first fragments are untracked, both handled above.
                Ok(Begun::Untracked) => match table {
                    Some(_) => {
                        let d = decide(&pkt.key);
                        let (v, w) = judge(&d);
                        (v, Some(d), w)
                    }
                    None => (Verdict::Drop(DropReason::NoPolicy), None, None),
                },
            };
        if pkt.fragment == Fragment::First {
            let Some(info) = fragment_info(pkt, frame) else {
                return (Verdict::Drop(DropReason::FragmentInvalid), decision);
            };
            let fv = FragVerdict {
                verdict,
                decision,
                would_deny: would.is_some(),
            };
            if let Err(r) = self.frags.head(pkt, &info, pkt.key, fv, self.now) {
                return (Verdict::Drop(r), decision);
            }
        }
        if would.is_some() && verdict == Verdict::Forward {
            counters.would_deny();
        }
        (verdict, decision)
    }

    /// A packet of tracked flow `id` (or an ICMP error about it): the flow's decision,
    /// reclassified first if it is stale.
    fn tracked(
        &mut self,
        id: FlowId,
        pkt: &ParsedPacket,
        frame: &[u8],
        table: Option<&RuleTable>,
        decide: &impl Fn(&FlowKey) -> RuleDecision,
    ) -> (Verdict, Option<RuleDecision>, Option<DropReason>) {
        let now = self.now;
        let e = self.flows.entry_mut(id);
        let Some(t) = table else {
            // Only flows admitted fail-open exist before a policy is installed.
            if let Some(s) = &mut self.sampler {
                s.on_packet(e, pkt, frame, now);
            }
            return (Verdict::Forward, None, None);
        };
        let fresh = !e.decision.is_current(t.epoch());
        if fresh {
            let d = decide(&classifier_key(&e.key()));
            e.decision = cache(&d, t.epoch());
            self.l7.reclassified(&mut e.l7, conduit(t, &d));
        }
        let d = uncache(&e.decision);
        let (v, would, l7_first, l7_deny) = match d.action {
            Action::Inspect(_) => {
                let key = e.key();
                // A flow the ML sampler follows also counts its requests by function class.
                let mut tally = FunctionTally::default();
                let sampled = self.sampler.is_some() && e.l7.sample != 0;
                let j = self.l7.packet_tallied(
                    Some(&mut e.l7),
                    conduit(t, &d),
                    d.mode,
                    &key,
                    pkt,
                    frame,
                    sampled.then_some(&mut tally),
                );
                if sampled && let Some(s) = &mut self.sampler {
                    s.functions(&e.l7, &tally);
                }
                (j.verdict, j.would, j.first, j.deny)
            }
            _ => {
                let (v, w) = judge(&d);
                (v, w, false, None)
            }
        };
        // Features describe the conversation as delivered: only forwarded packets (see
        // `sample.rs`).
        if v == Verdict::Forward
            && let Some(s) = &mut self.sampler
        {
            s.on_packet(e, pkt, frame, now);
        }
        let refused = match v {
            Verdict::Drop(r) => Some((r, false)),
            Verdict::Forward => would.filter(|_| fresh || l7_first).map(|r| (r, true)),
        };
        if let Some((reason, would_deny)) = refused {
            let key = e.key();
            self.events.emit(FlowEvent::Deny(DenyRecord {
                key,
                at: now,
                decision: event_decision(&d, t.epoch()),
                reason,
                would_deny,
                bytes: ip_bytes(pkt),
                l7: l7_deny,
            }));
        }
        (v, Some(d), would)
    }

    /// The first packet of a flow: admit it (insert, flow-start) or refuse it (deny record).
    fn new_flow(
        &mut self,
        new: NewFlow,
        pkt: &ParsedPacket,
        frame: &[u8],
        table: Option<&RuleTable>,
        decide: &impl Fn(&FlowKey) -> RuleDecision,
    ) -> (Verdict, Option<RuleDecision>, Option<DropReason>) {
        let now = self.now;
        let Some(t) = table else {
            if !self.fail_open {
                self.events.emit(FlowEvent::Deny(DenyRecord {
                    key: pkt.key,
                    at: now,
                    decision: NO_POLICY,
                    reason: DropReason::NoPolicy,
                    would_deny: false,
                    bytes: ip_bytes(pkt),
                    l7: None,
                }));
                return (Verdict::Drop(DropReason::NoPolicy), None, None);
            }
            return match conntrack::commit_evicting(&mut self.flows, new, now) {
                Ok((id, evicted)) => {
                    // An evicted half-open flow has no expiry callback: free its stream and
                    // its feature sample here.
                    self.l7.release_ended(evicted);
                    if let Some(s) = &mut self.sampler {
                        s.evicted(evicted);
                    }
                    self.flows.entry_mut(id).decision = FAIL_OPEN;
                    self.events.emit(FlowEvent::Start(FlowStart {
                        key: self.flows.entry(id).key(),
                        at: now,
                        decision: NO_POLICY,
                    }));
                    (Verdict::Forward, None, None)
                }
                Err(r) => (Verdict::Drop(r), None, None),
            };
        };
        let d = decide(&pkt.key);
        // The first datagram's requests by function class, in case the sampler picks the flow.
        let mut tally = FunctionTally::default();
        let (v, would, l7_deny) = match d.action {
            // A UDP datagram is judged before its flow is admitted; a TCP SYN carries nothing.
            Action::Inspect(_) => {
                let j: L7Judgement = self.l7.packet_tallied(
                    None,
                    conduit(t, &d),
                    d.mode,
                    &pkt.key,
                    pkt,
                    frame,
                    self.sampler.is_some().then_some(&mut tally),
                );
                (j.verdict, j.would, j.deny)
            }
            _ => {
                let (v, w) = judge(&d);
                (v, w, None)
            }
        };
        let ed = event_decision(&d, t.epoch());
        match v {
            Verdict::Forward => match conntrack::commit_evicting(&mut self.flows, new, now) {
                Ok((id, evicted)) => {
                    self.l7.release_ended(evicted);
                    let e = self.flows.entry_mut(id);
                    e.decision = cache(&d, t.epoch());
                    if let Some(s) = &mut self.sampler {
                        s.evicted(evicted);
                        s.flow_start(e, pkt, now);
                        s.on_packet(e, pkt, frame, now);
                        if !tally.is_empty() {
                            s.functions(&e.l7, &tally);
                        }
                    }
                    let key = e.key();
                    self.events.emit(FlowEvent::Start(FlowStart {
                        key,
                        at: now,
                        decision: ed,
                    }));
                    if let Some(reason) = would {
                        self.events.emit(FlowEvent::Deny(DenyRecord {
                            key,
                            at: now,
                            decision: ed,
                            reason,
                            would_deny: true,
                            bytes: ip_bytes(pkt),
                            l7: l7_deny,
                        }));
                    }
                    (v, Some(d), would)
                }
                Err(r) => (Verdict::Drop(r), Some(d), None),
            },
            Verdict::Drop(reason) => {
                if let Some(s) = &mut self.sampler {
                    // A refused attempt is still behaviour: a blocked scan must be scored.
                    let len = u16::try_from(pkt.l3_end - pkt.l3_offset).unwrap_or(u16::MAX);
                    s.denied(&pkt.key, len, pkt.tcp_flags.0, now);
                }
                self.events.emit(FlowEvent::Deny(DenyRecord {
                    key: pkt.key,
                    at: now,
                    decision: ed,
                    reason,
                    would_deny: false,
                    bytes: ip_bytes(pkt),
                    l7: l7_deny,
                }));
                (v, Some(d), None)
            }
        }
    }
}

/// [`Sampler::on_packet`] for a forwarded packet of a sampled flow in the fast path, from the
/// frame (parsed again, as the caller parsed it, `in_port` included).
#[inline(never)]
fn sample_reparsed(
    s: &mut Sampler,
    e: &mut FlowEntry<Conn>,
    in_port: PortId,
    frame: &[u8],
    now: u64,
) {
    if let Ok(mut p) = parse(frame) {
        p.key.in_port = in_port;
        s.on_packet(e, &p, frame, now);
    }
}

/// The function-code conduit of an inspect decision, from the same table (hook ids index
/// only their own table's list).
#[inline]
fn conduit<'t>(t: &'t RuleTable, d: &RuleDecision) -> Option<&'t septa_l7::L7Constraint> {
    match d.action {
        Action::Inspect(h) => t.l7_constraint(h),
        _ => None,
    }
}

/// The decision events carry while no policy is installed.
const NO_POLICY: EventDecision = EventDecision {
    rule: None,
    source: None,
    epoch: 0,
    action: EventAction::Allow,
    monitor: false,
};

/// The cached decision of a flow admitted fail-open: epoch 0 is never current, so the flow is
/// classified on its first packet after a policy arrives.
const FAIL_OPEN: CachedDecision = CachedDecision {
    epoch: 0,
    rule: NONE32,
    source: NONE64,
    action: ACT_ALLOW,
    mode: 0,
    hook: 0,
};

const NONE32: u32 = u32::MAX;
const NONE64: u64 = u64::MAX;
const ACT_ALLOW: u8 = 0;
const ACT_DENY: u8 = 1;
const ACT_INSPECT: u8 = 2;
const MODE_ENFORCE: u8 = 0;
const MODE_MONITOR: u8 = 1;

/// A classifier decision in the flow entry's compact form.
#[inline]
fn cache(d: &RuleDecision, epoch: u64) -> CachedDecision {
    let (action, hook) = match d.action {
        Action::Allow => (ACT_ALLOW, 0),
        Action::Deny => (ACT_DENY, 0),
        Action::Inspect(h) => (ACT_INSPECT, h.0),
    };
    CachedDecision {
        epoch,
        rule: d.rule.map_or(NONE32, |r| r.0),
        source: d.source.map_or(NONE64, |s| s.0),
        action,
        mode: match d.mode {
            Mode::Enforce => MODE_ENFORCE,
            Mode::Monitor => MODE_MONITOR,
        },
        hook,
    }
}

/// The classifier decision a flow entry cached.
#[inline]
fn uncache(c: &CachedDecision) -> RuleDecision {
    RuleDecision {
        rule: (c.rule != NONE32).then_some(RuleId(c.rule)),
        action: match c.action {
            ACT_ALLOW => Action::Allow,
            ACT_INSPECT => Action::Inspect(HookId(c.hook)),
            _ => Action::Deny,
        },
        mode: if c.mode == MODE_MONITOR {
            Mode::Monitor
        } else {
            Mode::Enforce
        },
        source: (c.source != NONE64).then_some(SourceRef(c.source)),
    }
}

fn event_decision(d: &RuleDecision, epoch: u64) -> EventDecision {
    EventDecision {
        rule: d.rule.map(|r| r.0),
        source: d.source.map(|s| s.0),
        epoch,
        action: match d.action {
            Action::Allow => EventAction::Allow,
            Action::Deny => EventAction::Deny,
            Action::Inspect(h) => EventAction::Inspect(h.0),
        },
        monitor: d.mode == Mode::Monitor,
    }
}

/// The TCP connections closed since the last poll's reports (see [`CLOSED_PER_POLL`]).
#[derive(Debug, Default)]
struct ClosedQueue {
    flows: ArrayVec<conntrack::Closed, CLOSED_PER_POLL>,
    /// Closes that found the queue full: lost records, counted when the queue is reported.
    lost: u64,
}

impl ClosedQueue {
    /// Queue the update of a TCP connection that closed (reported at the end of the poll,
    /// with its counters at the close).
    #[cold]
    fn note(&mut self, c: conntrack::Closed) {
        if self.flows.try_push(c).is_err() {
            self.lost += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.lost == 0
    }
}

/// The decision a flow entry's events carry.
fn entry_decision(e: &FlowEntry<Conn>) -> EventDecision {
    if e.decision.epoch == 0 {
        NO_POLICY
    } else {
        event_decision(&uncache(&e.decision), e.decision.epoch)
    }
}

fn flow_update(e: &FlowEntry<Conn>, now: u64, cause: UpdateCause) -> FlowUpdate {
    use crate::flow::Direction::{Original, Reply};
    FlowUpdate {
        key: e.key(),
        first_seen: e.first_seen(),
        last_seen: e.last_seen(),
        at: now,
        packets: [e.packets(Original), e.packets(Reply)],
        bytes: [e.bytes(Original), e.bytes(Reply)],
        cause,
        decision: entry_decision(e),
        l7: septa_l7::L7Proto::from_u8(e.l7.proto).unwrap_or_default(),
    }
}

fn flow_end(e: &FlowEntry<Conn>, now: u64, flushed: Option<EndReason>) -> FlowEnd {
    use crate::flow::Direction::{Original, Reply};
    let reason = match e.state {
        Conn::Tcp(c) if c.state == TcpState::Close => EndReason::Reset,
        Conn::Tcp(c) if c.state == TcpState::TimeWait => EndReason::Closed,
        _ => flushed.unwrap_or(EndReason::Timeout),
    };
    FlowEnd {
        key: e.key(),
        first_seen: e.first_seen(),
        last_seen: e.last_seen(),
        at: now,
        packets: [e.packets(Original), e.packets(Reply)],
        bytes: [e.bytes(Original), e.bytes(Reply)],
        reason,
        decision: entry_decision(e),
        l7: septa_l7::L7Proto::from_u8(e.l7.proto).unwrap_or_default(),
    }
}

/// The key the classifier judges a tracked flow by: its original key, with the ports conntrack
/// rewrote for ICMP turned back into type and code (echo flows are keyed by identifier, other
/// ICMP messages by `(type, code + 256)`; see `conntrack::conn_key`).
#[inline]
fn classifier_key(orig: &FlowKey) -> FlowKey {
    let mut k = *orig;
    let echo_request = match (k.family, k.proto) {
        (Family::V4, 1) => 8,
        (Family::V6, 58) => 128,
        _ => return k,
    };
    if k.sport == k.dport {
        // Only an echo request opens an echo flow.
        k.sport = echo_request;
        k.dport = 0;
    } else {
        k.dport = k.dport.wrapping_sub(256);
    }
    k
}

/// The packet that ended the direct pass, as far as the direct pass got with it: the general
/// parser's result (`None` when the fast parse read it: that one is cheaper to read again than
/// to keep in memory for every packet) and, if it was looked up under its own key, the lookup
/// (still exact: the direct pass inserts and removes nothing). Pass 1 starts from it instead
/// of parsing (generally) and probing again.
type Handover = (Option<Result<ParsedPacket, DropReason>>, Option<Found>);

/// One packet of the direct pass, parsed (`in_port` set): its verdict if it is a packet (not a
/// fragment, not ICMP) of a tracked flow whose cached decision is a current allow, observed;
/// otherwise the lookup made for it (`None` if it was not looked up), and nothing changed.
#[inline(always)]
fn direct_packet<O: Observer>(
    state: &mut WorkerState,
    epoch: u64,
    port: PortId,
    p: &ParsedPacket,
    frame: &[u8],
    obs: &mut O,
) -> Result<Verdict, Option<Found>> {
    if !conntrack::keyed_by_packet(p) || p.fragment != Fragment::None {
        return Err(None);
    }
    let found = Found::hashed(&state.flows, &state.flows.hash_key(&p.key), false);
    let Some(id) = found.at.id() else {
        return Err(Some(found));
    };
    let d = &state.flows.entry(id).decision;
    if !d.is_current(epoch) || d.action != ACT_ALLOW {
        return Err(Some(found));
    }
    let (v, rule) = match state.established(id, found.at.dir(), p, frame) {
        Ok(()) => (
            Verdict::Forward,
            Some(uncache(&state.flows.entry(id).decision)),
        ),
        Err(reason) => (Verdict::Drop(reason), None),
    };
    obs.packet(port, frame.len(), Some(p), v, rule.as_ref());
    Ok(v)
}

/// [`direct_packet`] for a frame the fast parse declined (VLAN tags, IPv4 options, IPv6
/// extension headers, ICMP, fragments, malformed frames). Out of line: inlined, the compiler
/// merges it with the fast case and the fast parse result goes through memory again.
// The handover is large, but it is built in the caller's slot, once per burst at most.
#[allow(clippy::result_large_err)]
#[inline(never)]
fn direct_general<O: Observer>(
    state: &mut WorkerState,
    epoch: u64,
    port: PortId,
    frame: &[u8],
    obs: &mut O,
) -> Result<Verdict, Handover> {
    match parse::parse_general(frame) {
        Ok(mut p) => {
            p.key.in_port = port;
            direct_packet(state, epoch, port, &p, frame, obs).map_err(|f| (Some(Ok(p)), f))
        }
        Err(r) => Err((Some(Err(r)), None)),
    }
}

/// Pass 0 of [`stateful_burst`]: the verdicts of the burst's leading packets of established
/// flows with a current allow, in `verdicts`, each observed; returns how many, and what it
/// learnt of the packet that ended it (see [`Handover`]).
#[inline(always)]
fn established_prefix<B: PacketBuf, O: Observer>(
    table: Option<&RuleTable>,
    state: &mut WorkerState,
    port: PortId,
    peer: Option<PortId>,
    rx: &Burst<B>,
    verdicts: &mut [Verdict; BURST],
    obs: &mut O,
) -> (usize, Option<Handover>) {
    let (Some(t), Some(_), true) = (table, peer, state.direct) else {
        return (0, None);
    };
    let epoch = t.epoch();
    let mut n = 0;
    loop {
        let (at, stop) = direct_fast_run(state, epoch, port, rx, n, verdicts, obs);
        n = at;
        match stop {
            FastStop::End => return (n, None),
            FastStop::Ended(found) => return (n, Some((None, found))),
            FastStop::Declined => match direct_general(state, epoch, port, rx[n].data(), obs) {
                Ok(v) => {
                    verdicts[n] = v;
                    n += 1;
                }
                Err(handover) => return (n, Some(handover)),
            },
        }
    }
}

/// Why [`direct_fast_run`] stopped.
enum FastStop {
    /// At the end of the burst.
    End,
    /// At a packet the fast parse declined.
    Declined,
    /// At a fast-parsed packet that ends the direct pass (with its lookup, if one was made).
    Ended(Option<Found>),
}

/// The direct pass over the packets from `from` on while the fast parse reads them; returns
/// where and why it stopped. Out of line, apart from the general parser's case, so the fast
/// parse result stays in registers (merged with the general one, the compiler stores it to
/// the stack field by field for every packet).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn direct_fast_run<B: PacketBuf, O: Observer>(
    state: &mut WorkerState,
    epoch: u64,
    port: PortId,
    rx: &Burst<B>,
    from: usize,
    verdicts: &mut [Verdict; BURST],
    obs: &mut O,
) -> (usize, FastStop) {
    for (i, pkt) in rx.iter().enumerate().skip(from) {
        let frame = pkt.data();
        let Some(mut p) = parse::parse_fast(frame) else {
            return (i, FastStop::Declined);
        };
        p.key.in_port = port;
        match direct_packet(state, epoch, port, &p, frame, obs) {
            Ok(v) => verdicts[i] = v,
            Err(found) => return (i, FastStop::Ended(found)),
        }
    }
    (rx.len(), FastStop::End)
}

/// What pass 1b found a packet needs.
enum Wanted {
    /// Pass 2 should classify this key.
    Key(FlowKey),
    /// Nothing to classify, and the packet can take pass 3's fast path.
    Fast,
    /// Nothing to classify; the general path.
    Nothing,
}

/// The key pass 2 should classify for this packet, if any (see the module documentation),
/// given its flow lookup `found`; or whether the packet can take the fast path (a packet, not
/// a fragment and not an ICMP error, of a flow whose cached decision is current and an allow).
#[inline(always)]
fn wanted_key(flows: &FlowTable<Conn>, pkt: &ParsedPacket, found: &Found, epoch: u64) -> Wanted {
    match found.at.id() {
        Some(id) => {
            let e = flows.entry(id);
            if !e.decision.is_current(epoch) {
                Wanted::Key(classifier_key(&e.key()))
            } else if e.decision.action == ACT_ALLOW
                && !found.error
                && pkt.fragment == Fragment::None
            {
                Wanted::Fast
            } else {
                Wanted::Nothing
            }
        }
        None if found.error => Wanted::Nothing,
        None => Wanted::Key(pkt.key),
    }
}

/// No flow-key slot: the packet did not parse, is not IP, has no peer or needs no
/// classification.
const NO_KEY: u8 = u8::MAX;
/// No flow-key slot, and the packet takes pass 3's fast path ([`WorkerState::established`]) if
/// the table's generation is still the one of pass 1.
const FAST: u8 = u8::MAX - 1;

/// Drains `rx` statefully under `table` (`None`: no policy installed yet). Returns the
/// received and forwarded byte counts.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn stateful_burst<B: PacketBuf, O: Observer>(
    table: Option<&RuleTable>,
    state: &mut WorkerState,
    counters: &WorkerCounters,
    port: PortId,
    peer: Option<PortId>,
    rx: &mut Burst<B>,
    tx: &mut Burst<B>,
    obs: &mut O,
) -> (usize, usize) {
    // Pass 0, the established prefix: while the packets are of tracked flows whose cached
    // decision is current and an allow, run them through conntrack one by one, in order, with
    // nothing staged (what pass 3's fast path would do for them, since passes 1 and 2 only
    // read the table and a fast-path packet inserts and removes nothing). The first packet
    // that is anything else ends the prefix; it and the rest take passes 1 to 3.
    let mut verdicts = [Verdict::Forward; BURST];
    let (prefix, handover) = established_prefix(table, state, port, peer, rx, &mut verdicts, obs);
    let (mut rx_bytes, mut tx_bytes) = (0, 0);
    for (pkt, verdict) in rx.drain(..prefix).zip(verdicts) {
        let len = pkt.data().len();
        rx_bytes += len;
        match verdict {
            Verdict::Forward => {
                tx_bytes += len;
                tx.push(pkt);
            }
            Verdict::Drop(reason) => counters.dropped(reason, 1),
        }
    }
    if !rx.is_empty() {
        let (r, t) = staged_burst(table, state, counters, port, peer, rx, tx, handover, obs);
        rx_bytes += r;
        tx_bytes += t;
    }
    (rx_bytes, tx_bytes)
}

/// Passes 1 to 3 of [`stateful_burst`] over the packets after the established prefix; `first`
/// is what the direct pass learnt of the first of them.
#[allow(clippy::too_many_arguments)]
#[inline]
fn staged_burst<B: PacketBuf, O: Observer>(
    table: Option<&RuleTable>,
    state: &mut WorkerState,
    counters: &WorkerCounters,
    port: PortId,
    peer: Option<PortId>,
    rx: &mut Burst<B>,
    tx: &mut Burst<B>,
    mut first: Option<Handover>,
    obs: &mut O,
) -> (usize, usize) {
    // Parsed in place (the parse result is not moved again).
    let mut parsed: [Result<ParsedPacket, DropReason>; BURST] =
        [Err(DropReason::MalformedL2); BURST];
    // `None`: an IP packet for the state machine; `Some`: decided already.
    let mut early: [Option<Verdict>; BURST] = [None; BURST];
    let mut slot = [NO_KEY; BURST];
    let mut found: [Option<Found>; BURST] = [None; BURST];
    let mut keys = [FlowKey::default(); BURST];
    let mut n_keys = 0;
    // Pass 1a: parse in place; hash the flow keys of the packets looked up under their own key
    // (no table memory touched yet).
    let mut hashed: ArrayVec<(u8, HashedKey), BURST> = ArrayVec::new();
    for (i, pkt) in rx.iter().enumerate() {
        let mut probed = None;
        parsed[i] = match first.take() {
            Some((p, f)) => {
                probed = f;
                p.unwrap_or_else(|| parse(pkt.data()))
            }
            None => parse(pkt.data()),
        };
        match &mut parsed[i] {
            Err(reason) => early[i] = Some(Verdict::Drop(*reason)),
            Ok(p) => {
                p.key.in_port = port;
                if peer.is_none() {
                    early[i] = Some(Verdict::Drop(DropReason::NoPeerPort));
                } else if !p.is_ip() {
                    early[i] = Some(non_ip_verdict(p.l3));
                } else if let Some(f) = probed {
                    // Looked up by the direct pass (at this generation).
                    found[i] = Some(f);
                } else if conntrack::keyed_by_packet(p) {
                    // i < BURST = 32, so it fits in a byte.
                    hashed.push((i as u8, state.flows.hash_key(&p.key)));
                } else if let Ok(Some(f)) = conntrack::find(&state.flows, p, pkt.data()) {
                    // ICMP: errors are looked up by the flow they quote.
                    found[i] = Some(f);
                }
            }
        }
    }
    // Pass 1b: probe the index for every hashed key (independent loads the CPU overlaps) and
    // see which flows need a classification and which packets take the fast path. Pass 3
    // reuses these lookups while no flow is inserted or removed.
    let mut next_hashed = hashed.iter().peekable();
    for i in 0..rx.len() {
        if let Some((_, h)) = next_hashed.next_if(|(j, _)| usize::from(*j) == i) {
            found[i] = Some(Found::hashed(&state.flows, h, false));
        }
        if let (Some(t), Some(f), Ok(p)) = (table, &found[i], &parsed[i]) {
            match wanted_key(&state.flows, p, f, t.epoch()) {
                Wanted::Key(k) => {
                    keys[n_keys] = k;
                    // n_keys < BURST = 32 < FAST, so the slot fits in a byte.
                    slot[i] = n_keys as u8;
                    n_keys += 1;
                }
                Wanted::Fast => slot[i] = FAST,
                Wanted::Nothing => {}
            }
        }
    }
    // Pass 1's lookups are exact while the table stays at this generation.
    let generation = state.flows.generation();
    // First-match rule indices (4 bytes a key); pass 3 resolves the ones it uses.
    let mut matched = [NO_RULE; BURST];
    if let Some(t) = table
        && n_keys > 0
    {
        t.match_burst(&keys[..n_keys], &mut matched[..n_keys]);
    }

    let (mut rx_bytes, mut tx_bytes) = (0, 0);
    for (i, pkt) in rx.drain(..).enumerate() {
        let len = pkt.data().len();
        rx_bytes += len;
        let p = parsed[i].as_ref().ok();
        let (verdict, rule) = match (early[i], p) {
            (Some(v), _) => (v, None),
            (None, Some(p))
                if slot[i] == FAST
                    && state.flows.generation() == generation
                    && let Some(f) = &found[i]
                    && let Some(id) = f.at.id() =>
            {
                // Established flow, current allow (see `WorkerState::established`).
                match state.established(id, f.at.dir(), p, pkt.data()) {
                    Ok(()) => (
                        Verdict::Forward,
                        Some(uncache(&state.flows.entry(id).decision)),
                    ),
                    Err(reason) => (Verdict::Drop(reason), None),
                }
            }
            (None, Some(p)) => {
                let s = usize::from(slot[i]);
                let decide = |k: &FlowKey| match table {
                    Some(t) if s < n_keys && keys[s] == *k => *t.decision_at(matched[s]),
                    Some(t) => t.classify(k),
                    None => RuleDecision::default(),
                };
                state.packet(table, p, pkt.data(), found[i], &decide, counters)
            }
            (None, None) => unreachable!("a packet without an early verdict parsed"),
        };
        if verdict == Verdict::Forward && p.is_some_and(|p| !p.is_ip()) {
            counters.non_ip();
        }
        obs.packet(port, len, p, verdict, rule.as_ref());
        match verdict {
            Verdict::Forward => {
                tx_bytes += len;
                tx.push(pkt);
            }
            Verdict::Drop(reason) => counters.dropped(reason, 1),
        }
    }
    (rx_bytes, tx_bytes)
}

/// IP bytes of a parsed packet, for deny records.
#[inline]
fn ip_bytes(pkt: &ParsedPacket) -> u32 {
    u32::try_from(pkt.l3_end - pkt.l3_offset).unwrap_or(u32::MAX)
}
