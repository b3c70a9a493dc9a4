//! Flow feature sampling for the ML inference thread (`septa-ml`).
//!
//! **What it is.** A [`Sampler`] per worker follows one new flow in [`SamplerConfig::one_in`]
//! (every K-th admitted flow) in a bounded slab of [`FlowSample`]s indexed from the flow entry
//! ([`L7Slot::sample`]), and reports *every* new flow to the inference side's spread sketches
//! (fan-out, fan-in over a tumbling window, [`septa_features::spread`]) on a ring, so scans and
//! sweeps show in the spread of whichever of their flows is sampled. A sampled flow emits a
//! [`septa_features::FeatureRecord`] into the worker's bounded ring after its first
//! [`HEAD_PACKETS`] packets, every [`SamplerConfig::periodic_us`] while it lasts, and when it
//! ends. Packet and byte counts, first/last seen and the identified protocol come from the flow
//! entry when the record is built, so per packet a sampled flow only updates its head sizes and
//! gaps (first packets) and TCP flag counts; an unsampled flow costs one test of its entry.
//!
//! **What it never does.** Allocate, lock or log after [`Sampler::new`]; block on a full ring:
//! the record is dropped and counted ([`SamplerCounters::ring_full`]), and so is a new flow
//! ([`SamplerCounters::spread_lost`]). A full slab skips the flow (counted in
//! [`SamplerCounters::slab_full`]).
//!
//! **Where the worker calls it** (`worker/state.rs`, when a sampler is set):
//! 1. [`Sampler::flow_start`] right after a flow-table insert (spread sketches, sampling choice);
//! 2. [`Sampler::on_packet`] for every *forwarded* packet of a tracked flow, after conntrack
//!    accepted it and the verdict is known (packets dropped by policy or L7 stay out of the head
//!    statistics; the entry's packet/byte counters, which records also carry, include them);
//! 3. [`Sampler::functions`] with the request messages L7 inspection counted by function class
//!    (refused requests included: an attempted write is the signal);
//! 4. [`Sampler::evicted`] for a half-open flow evicted to make room, which frees its sample slot
//!    (nothing else reclaims it);
//! 5. [`Sampler::flow_end`] when the entry is removed (expiry or flush), before the slot is reused;
//! 6. [`Sampler::denied`] for the first packet of a new flow the policy refused (no entry).
//!
//! `now` is the worker's clock ([`crate::worker::Clock`], microseconds). The rings are a
//! [`septa_features::spread::SampleSender`]: two single-producer, single-consumer rings (`rtrb`),
//! one of records, one of new flows; `septa_ml::rings` makes them and hands the receivers to
//! the inference thread, which fills each record's spread after applying the new flows sent
//! before it.
//!
//! Cost: `septa-bench pipeline` (the worker's packet rate with sampling on and off, same run;
//! numbers in `docs/ml.md`). A new flow costs the worker a 48-byte write into the flow ring and
//! one release store (no hashing, no sketch line touched, nothing to send later); a record, a
//! 208-byte write into the record ring and one release store.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use septa_classifier::{Family, FlowKey};
use septa_features::spread::{NewFlow, SampleSender, Sampled, SendFailed, SpreadQuery};
use septa_features::{
    EmitReason, FUNCTION_CLASSES, FeatureRecord, FunctionClass, HEAD_PACKETS, HeadStats, L7Proto,
    SCHEMA_VERSION, Spread, TcpFlagCounts,
};

use crate::counters::{PublishTimer, PublishedWords};
use crate::flow::{Direction, FlowEntry, L7Slot};
use crate::l7::FunctionTally;
use crate::l7::inspect::{IDENTIFY_TRIES, identify_into};
use crate::parse::ParsedPacket;

/// Sampler tuning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// Flows followed at once (the slab of [`FlowSample`]s).
    pub flows: usize,
    /// Follow every `one_in`-th new flow (1: every flow).
    pub one_in: u32,
    /// Snapshot interval of long flows, microseconds (0: never).
    pub periodic_us: u64,
}

impl SamplerConfig {
    /// `flows` sampled flows at once, one new flow in 16, a snapshot of long flows every 60 s.
    pub fn new(flows: usize) -> Self {
        Self {
            flows,
            one_in: 16,
            periodic_us: 60_000_000,
        }
    }
}

/// Invalid [`SamplerConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplerConfigError {
    #[error("sampler: flows must be between 1 and 2^31, got {0}")]
    Flows(usize),
    #[error("sampler: one_in must be at least 1")]
    OneIn,
}

pub use crate::counters::PUBLISH_US;

/// A sampler's counters as other threads read them (the control side's health and metrics):
/// relaxed atomics on cache lines of their own, which the worker stores every [`PUBLISH_US`]
/// ([`Sampler::publish`], called between polls), never per packet. A reader sees values at
/// most that old.
#[derive(Debug, Default)]
pub struct SharedSamplerCounters(PublishedWords<9>);

impl SharedSamplerCounters {
    /// The counters last published.
    pub fn load(&self) -> SamplerCounters {
        let [
            flows,
            sampled,
            slab_full,
            emitted,
            ring_full,
            spread_lost,
            evicted,
            denied,
            reopened,
        ] = self.0.load();
        SamplerCounters {
            flows,
            sampled,
            slab_full,
            emitted,
            ring_full,
            spread_lost,
            evicted,
            denied,
            reopened,
        }
    }

    fn store(&self, c: &SamplerCounters) {
        self.0.store(&[
            c.flows,
            c.sampled,
            c.slab_full,
            c.emitted,
            c.ring_full,
            c.spread_lost,
            c.evicted,
            c.denied,
            c.reopened,
        ]);
    }
}

/// Counters of one sampler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerCounters {
    /// New flows seen (all of them feed the spread sketches).
    pub flows: u64,
    /// New flows chosen for sampling.
    pub sampled: u64,
    /// Flows chosen but skipped because every slab entry was in use.
    pub slab_full: u64,
    /// Records pushed to the ring.
    pub emitted: u64,
    /// Records dropped because the ring was full (or the inference side went away).
    pub ring_full: u64,
    /// New flows the flow ring refused (full, or the inference side gone): the spread estimates
    /// of that window are low by them (the inference side counts slots taken over,
    /// `septa_ml::ServiceStats::spread_evictions`).
    pub spread_lost: u64,
    /// Sampled flows that left the flow table without an end (evicted half-open flows): their
    /// slab entries were freed without a record ([`Sampler::evicted`]).
    pub evicted: u64,
    /// New flows refused at their first packet (never admitted): they feed the spread sketches
    /// too, and the sampled ones are emitted at once ([`Sampler::denied`]).
    pub denied: u64,
    /// Sampled flows whose entry a new connection reopened ([`Sampler::reopened`]): the earlier
    /// connection's final record was emitted and sampling started again.
    pub reopened: u64,
}

/// Per-flow feature state of a sampled flow, fixed size. What the flow entry already has
/// (counts, first/last seen, protocol) is not repeated here, except where the entry's counts of
/// this connection start: after a reopen ([`Sampler::reopened`]) the entry goes on counting
/// from the earlier connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowSample {
    last_emit: u64,
    /// Tick of the latest head packet (for gaps).
    head_last: u64,
    /// Tick of the latest packet.
    last: u64,
    head: HeadStats,
    tcp: TcpFlagCounts,
    functions: [u32; FUNCTION_CLASSES],
    head_emitted: bool,
    /// The entry's packet and byte counts and the tick where this connection began, when it
    /// reopened the entry (0 otherwise).
    base_packets: [u64; 2],
    base_bytes: [u64; 2],
    base_first_seen: u64,
}

impl FlowSample {
    /// One forwarded (or, for [`Sampler::denied`], refused first) packet: head statistics while
    /// the head lasts, TCP flag counts always.
    #[inline]
    fn count(&mut self, l3_len: u16, tcp_flags: u8, now: u64) {
        self.last = now;
        let h = &mut self.head;
        if h.count < HEAD_PACKETS {
            if h.count > 0 {
                let gap = now.saturating_sub(self.head_last);
                h.iat_sum_us = h.iat_sum_us.saturating_add(gap);
                h.iat_sumsq_us2 = h.iat_sumsq_us2.saturating_add(gap.saturating_mul(gap));
            }
            self.head_last = now;
            h.count += 1;
            h.size_sum = h.size_sum.saturating_add(u32::from(l3_len));
            h.size_sumsq = h
                .size_sumsq
                .saturating_add(u64::from(l3_len) * u64::from(l3_len));
            h.size_max = h.size_max.max(l3_len);
        }
        if tcp_flags != 0 {
            let t = &mut self.tcp;
            let syn = tcp_flags & 0x02 != 0;
            let ack = tcp_flags & 0x10 != 0;
            t.syn += u32::from(syn);
            t.syn_ack += u32::from(syn && ack);
            t.fin += u32::from(tcp_flags & 0x01 != 0);
            t.rst += u32::from(tcp_flags & 0x04 != 0);
            t.psh += u32::from(tcp_flags & 0x08 != 0);
        }
    }
}

/// What a record takes from the flow entry (or, in tests, from the caller).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowView {
    /// Original-direction key.
    pub key: FlowKey,
    /// Packets `[original, reply]`.
    pub packets: [u64; 2],
    /// L3 bytes `[original, reply]`.
    pub bytes: [u64; 2],
    /// Tick of the first packet.
    pub first_seen: u64,
    /// Tick of the latest packet.
    pub last_seen: u64,
    /// Identified protocol (`septa_l7::L7Proto as u8`).
    pub l7: u8,
}

impl FlowView {
    /// The view of a flow entry.
    pub fn of<S>(e: &FlowEntry<S>) -> Self {
        FlowView {
            key: e.key(),
            packets: [e.packets(Direction::Original), e.packets(Direction::Reply)],
            bytes: [e.bytes(Direction::Original), e.bytes(Direction::Reply)],
            first_seen: e.first_seen(),
            last_seen: e.last_seen(),
            l7: e.l7.proto,
        }
    }
}

/// The feature sampler of one worker.
pub struct Sampler {
    worker: u16,
    cfg: SamplerConfig,
    slab: Box<[FlowSample]>,
    free: Box<[u32]>,
    free_len: usize,
    /// New flows until the next sampled one.
    countdown: u32,
    ring: SampleSender,
    counters: SamplerCounters,
    /// Where [`Self::publish`] stores the counters for other threads.
    shared: Arc<SharedSamplerCounters>,
    /// When [`Self::publish`] stores them next.
    publish_timer: PublishTimer,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("worker", &self.worker)
            .field("cfg", &self.cfg)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn ip(a: u128, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(a as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(a)),
    }
}

impl Sampler {
    /// Allocates all state up front: `flows × size_of::<FlowSample>()` (the rings are
    /// `ring`'s, allocated when the channel was made).
    pub fn new(
        worker: u16,
        cfg: SamplerConfig,
        ring: SampleSender,
    ) -> Result<Self, SamplerConfigError> {
        if !(1..=1 << 31).contains(&cfg.flows) {
            return Err(SamplerConfigError::Flows(cfg.flows));
        }
        if cfg.one_in == 0 {
            return Err(SamplerConfigError::OneIn);
        }
        Ok(Self {
            worker,
            slab: vec![FlowSample::default(); cfg.flows].into_boxed_slice(),
            // Popped from the end: lowest index first.
            free: (0..cfg.flows as u32).rev().collect(),
            free_len: cfg.flows,
            countdown: 1,
            cfg,
            ring,
            counters: SamplerCounters::default(),
            shared: Arc::default(),
            publish_timer: PublishTimer::default(),
        })
    }

    /// The counters as other threads read them (published by [`Self::publish`]).
    pub fn shared_counters(&self) -> Arc<SharedSamplerCounters> {
        Arc::clone(&self.shared)
    }

    /// Stores the counters into [`Self::shared_counters`] when [`PUBLISH_US`] have passed since
    /// the last time (the worker calls it between polls: one comparison when not due).
    #[inline]
    pub fn publish(&mut self, now: u64) {
        if self.publish_timer.due(now, PUBLISH_US) {
            self.shared.store(&self.counters);
        }
    }

    /// [`Self::publish`] now, due or not (at stop: the counts of the last interval too).
    pub fn publish_now(&mut self, now: u64) {
        self.publish_timer.force();
        self.publish(now);
    }

    /// Counters (single writer: the worker; read them between polls).
    pub fn counters(&self) -> SamplerCounters {
        self.counters
    }

    /// Flows being sampled now.
    pub fn active(&self) -> usize {
        self.slab.len() - self.free_len
    }

    /// Bytes of state held (fixed after construction).
    pub fn memory_bytes(&self) -> usize {
        self.slab.len() * (size_of::<FlowSample>() + size_of::<u32>())
    }

    /// A new flow for the spread sketches, first packet at `now`: put on the flow ring.
    #[inline]
    fn spread_add(&mut self, key: &FlowKey, now: u64) {
        let f = NewFlow {
            src: key.src,
            dst: key.dst,
            tick: now,
            dport: key.dport,
            proto: key.proto,
        };
        if self.ring.try_send_flow(f).is_err() {
            self.counters.spread_lost += 1;
        }
    }

    /// A flow was inserted into the flow table: it feeds the spread sketches and, one in
    /// [`SamplerConfig::one_in`], is sampled from now on (`slot.sample` set).
    #[inline]
    pub fn start(&mut self, slot: &mut L7Slot, key: &FlowKey, now: u64) {
        self.spread_add(key, now);
        self.counters.flows += 1;
        slot.sample = 0;
        self.countdown -= 1;
        if self.countdown > 0 {
            return;
        }
        self.countdown = self.cfg.one_in;
        self.counters.sampled += 1;
        if self.free_len == 0 {
            self.counters.slab_full += 1;
            return;
        }
        self.free_len -= 1;
        let i = self.free[self.free_len];
        self.slab[i as usize] = FlowSample {
            last_emit: now,
            head_last: now,
            ..FlowSample::default()
        };
        slot.sample = i + 1;
    }

    /// One packet of a sampled flow (`slot.sample != 0`), going `dir`, `l3_len` bytes with TCP
    /// flags `tcp_flags` (0 for non-TCP). Returns the reason a record is due now, if one is.
    #[inline]
    pub fn packet(
        &mut self,
        slot: &L7Slot,
        l3_len: u16,
        tcp_flags: u8,
        now: u64,
    ) -> Option<EmitReason> {
        let periodic = self.cfg.periodic_us;
        let f = self.slab.get_mut(slot.sample.wrapping_sub(1) as usize)?;
        f.count(l3_len, tcp_flags, now);
        let h = &f.head;
        let reason = if !f.head_emitted && h.count == HEAD_PACKETS {
            f.head_emitted = true;
            EmitReason::FirstPackets
        } else if periodic != 0 && now.saturating_sub(f.last_emit) >= periodic {
            EmitReason::Periodic
        } else {
            return None;
        };
        f.last_emit = now;
        Some(reason)
    }

    /// A SYN without ACK going `dir` (`l3_len` bytes, already in `flow`'s counts) on sampled
    /// flow `slot`, before [`Self::packet`] counts it. If the flow's connection had closed (a
    /// FIN or RST seen), conntrack reopened the entry for a new connection on the same
    /// addresses and ports (clients reuse a port the server closed first): the earlier
    /// connection gets its final record, and the sample starts again for the new one, its
    /// counts taken from here on. Otherwise (a retransmitted SYN) nothing happens.
    pub fn reopened(
        &mut self,
        slot: &L7Slot,
        flow: &FlowView,
        dir: Direction,
        l3_len: u16,
        now: u64,
    ) {
        let Some(&f) = self.slab.get(slot.sample.wrapping_sub(1) as usize) else {
            return;
        };
        if f.tcp.fin == 0 && f.tcp.rst == 0 {
            return;
        }
        let mut before = *flow;
        let d = dir.index();
        before.packets[d] = before.packets[d].saturating_sub(1);
        before.bytes[d] = before.bytes[d].saturating_sub(u64::from(l3_len));
        before.last_seen = f.last;
        self.counters.reopened += 1;
        self.offer(&f, &before, EmitReason::FlowEnd);
        self.slab[slot.sample as usize - 1] = FlowSample {
            last_emit: now,
            head_last: now,
            base_packets: before.packets,
            base_bytes: before.bytes,
            base_first_seen: now,
            ..FlowSample::default()
        };
    }

    /// L7 inspection counted request messages of a sampled flow by function class (allowed or
    /// refused: an attempted write is what the model looks for).
    #[inline]
    pub fn functions(&mut self, slot: &L7Slot, tally: &FunctionTally) {
        if let Some(f) = self.slab.get_mut(slot.sample.wrapping_sub(1) as usize) {
            for (c, n) in f.functions.iter_mut().zip(tally.0) {
                *c = c.saturating_add(n);
            }
        }
    }

    /// Builds the record of the sampled flow `slot` and offers it to the ring.
    pub fn emit(&mut self, slot: &L7Slot, flow: &FlowView, reason: EmitReason) {
        let Some(&f) = self.slab.get(slot.sample.wrapping_sub(1) as usize) else {
            return;
        };
        self.offer(&f, flow, reason);
    }

    /// The first packet of a new flow that the policy (or L7 inspection of a first datagram)
    /// refused, so it never got a flow entry: it feeds the spread sketches like an admitted flow
    /// (a blocked scan or sweep still shows its fan-out), and one in
    /// [`SamplerConfig::one_in`] new flows is emitted at once as what the sender saw: a flow of
    /// one packet, no reply, ended ([`EmitReason::FlowEnd`]). Repeated attempts of the same
    /// 5-tuple count again as flows, but the sketches count distinct hosts and ports, so the
    /// spread features do not grow with them. No allocation.
    pub fn denied(&mut self, key: &FlowKey, l3_len: u16, tcp_flags: u8, now: u64) {
        self.spread_add(key, now);
        self.counters.flows += 1;
        self.counters.denied += 1;
        self.countdown -= 1;
        if self.countdown > 0 {
            return;
        }
        self.countdown = self.cfg.one_in;
        self.counters.sampled += 1;
        let mut f = FlowSample::default();
        f.count(l3_len, tcp_flags, now);
        let flow = FlowView {
            key: *key,
            packets: [1, 0],
            bytes: [u64::from(l3_len), 0],
            first_seen: now,
            last_seen: now,
            l7: septa_l7::L7Proto::Unknown as u8,
        };
        self.offer(&f, &flow, EmitReason::FlowEnd);
    }

    /// Builds the record of `f` for `flow` and offers it to the ring; the inference side fills
    /// its spread (window of the flow's latest packet) after the new flows sent before it.
    fn offer(&mut self, f: &FlowSample, flow: &FlowView, reason: EmitReason) {
        let key = &flow.key;
        let l7 = septa_l7::L7Proto::from_u8(flow.l7).map_or(L7Proto::Unknown, feature_l7);
        let rec = FeatureRecord {
            schema_version: SCHEMA_VERSION,
            reason,
            worker: self.worker,
            key: septa_features::FlowKey {
                src: ip(key.src, key.family),
                dst: ip(key.dst, key.family),
                src_port: key.sport,
                dst_port: key.dport,
                proto: key.proto,
            },
            l7,
            duration_us: flow
                .last_seen
                .saturating_sub(flow.first_seen.max(f.base_first_seen)),
            packets: [0, 1].map(|d| {
                u32::try_from(flow.packets[d].saturating_sub(f.base_packets[d])).unwrap_or(u32::MAX)
            }),
            bytes: [0, 1].map(|d| flow.bytes[d].saturating_sub(f.base_bytes[d])),
            head: f.head,
            tcp: f.tcp,
            functions: f.functions,
            spread: Spread::default(),
        };
        let query = SpreadQuery {
            tick: flow.last_seen,
            flows: self.ring.flows_sent(),
        };
        match self.ring.try_send_record(Sampled {
            record: rec,
            spread: Some(query),
        }) {
            Ok(()) => self.counters.emitted += 1,
            Err(SendFailed) => self.counters.ring_full += 1,
        }
    }

    /// The sampled flow `slot` ended: its final record, then its slab entry is free. Clears
    /// `slot.sample`.
    pub fn end(&mut self, slot: &mut L7Slot, flow: &FlowView) {
        if slot.sample == 0 {
            return;
        }
        self.emit(slot, flow, EmitReason::FlowEnd);
        let i = slot.sample - 1;
        slot.sample = 0;
        self.release(i);
    }

    /// A half-open flow was evicted from the flow table to make room (`Inserted::evicted_l7`):
    /// it ends without an expiry callback and without a record; its slab entry is freed.
    #[inline]
    pub fn evicted(&mut self, slot: L7Slot) {
        if slot.sample != 0 {
            self.counters.evicted += 1;
            self.release(slot.sample - 1);
        }
    }

    fn release(&mut self, i: u32) {
        if (i as usize) < self.slab.len() && self.free_len < self.free.len() {
            self.free[self.free_len] = i;
            self.free_len += 1;
        }
    }

    /// [`Self::start`] for a flow just inserted into the flow table from `pkt`, its first packet.
    /// The entry's key is the packet's (same originator), except for ICMP, whose ports
    /// conntrack rewrites to its pairing ids: only then is the entry's key rebuilt.
    #[inline]
    pub fn flow_start<S>(&mut self, e: &mut FlowEntry<S>, pkt: &ParsedPacket, now: u64) {
        if matches!(pkt.key.proto, 1 | 58) {
            let key = e.key();
            self.start(&mut e.l7, &key, now);
        } else {
            self.start(&mut e.l7, &pkt.key, now);
        }
    }

    /// A forwarded packet of a tracked flow, after conntrack accepted it and the verdict is known
    /// (the entry's counters include it). Costs one test for a flow that is not sampled.
    #[inline(always)]
    pub fn on_packet<S>(
        &mut self,
        e: &mut FlowEntry<S>,
        pkt: &ParsedPacket,
        frame: &[u8],
        now: u64,
    ) {
        if e.l7.sample != 0 {
            self.sampled_packet(e, pkt, frame, now);
        }
    }

    #[inline(never)]
    fn sampled_packet<S>(
        &mut self,
        e: &mut FlowEntry<S>,
        pkt: &ParsedPacket,
        frame: &[u8],
        now: u64,
    ) {
        // The entry's key (some 40 instructions to rebuild) only when it is needed: an ICMP
        // packet may be an error about the flow (another protocol), and identification wants
        // the original direction until it is done. Any other packet found the flow by its own
        // protocol.
        // Identification only looks at packets with a payload (`identify_into`).
        let identifying = e.l7.proto == 0
            && e.l7.tries < IDENTIFY_TRIES
            && pkt.payload_offset.is_some_and(|o| o < pkt.l3_end);
        if identifying || matches!(pkt.key.proto, 1 | 58) {
            let key = e.key();
            if pkt.key.proto != key.proto {
                return; // an ICMP error about the flow
            }
            identify_into(&mut e.l7, &key, pkt, frame);
        }
        let len = u16::try_from(pkt.l3_end - pkt.l3_offset).unwrap_or(u16::MAX);
        if pkt.tcp_flags.0 & 0x12 == 0x02 && pkt.key.proto == 6 {
            // A SYN: a new connection on a closed one's addresses and ports?
            let view = FlowView::of(e);
            let dir = if pkt.key.src == view.key.src && pkt.key.sport == view.key.sport {
                Direction::Original
            } else {
                Direction::Reply
            };
            self.reopened(&e.l7, &view, dir, len, now);
        }
        if let Some(reason) = self.packet(&e.l7, len, pkt.tcp_flags.0, now) {
            self.emit(&e.l7, &FlowView::of(e), reason);
        }
    }

    /// The flow's entry is being removed (expiry, flush): the final record of a sampled flow.
    /// The entry's slot is about to be reused, so only the slab entry is freed here.
    #[inline]
    pub fn flow_end<S>(&mut self, e: &FlowEntry<S>) {
        if e.l7.sample != 0 {
            let mut slot = e.l7;
            self.end(&mut slot, &FlowView::of(e));
        }
    }
}

/// The feature schema's protocol for an identified L7 protocol.
pub fn feature_l7(p: septa_l7::L7Proto) -> L7Proto {
    use septa_l7::L7Proto as P;
    match p {
        P::Unknown => L7Proto::Unknown,
        P::Modbus => L7Proto::Modbus,
        P::Dnp3 => L7Proto::Dnp3,
        P::S7comm | P::S7commPlus => L7Proto::S7comm,
        P::EnipCip => L7Proto::EtherNetIp,
        P::Bacnet => L7Proto::Bacnet,
        P::Iec104 => L7Proto::Iec104,
        P::OpcUa => L7Proto::OpcUa,
        P::Http => L7Proto::Http,
        P::Tls => L7Proto::Tls,
        P::Dns => L7Proto::Dns,
        P::Ssh => L7Proto::Ssh,
        P::Smb => L7Proto::Smb,
        P::Rdp => L7Proto::Rdp,
        P::Kerberos => L7Proto::Kerberos,
    }
}

/// The feature schema's class of a parsed function code. `septa_l7` puts operate and restart in
/// one `Control` class; the model needs them apart, so disruptive codes are picked out here:
/// DNP3 cold/warm restart (13, 14), stop application (18); S7 PLC control/stop (0x28, 0x29);
/// IEC-104 reset process (105); BACnet reinitialize-device (20); CIP reset (0x05). Program
/// transfers (S7 download, DNP3 file transfer) are disruptive too.
pub fn feature_function_class(
    proto: septa_l7::L7Proto,
    code: u8,
    class: septa_l7::functions::Class,
) -> FunctionClass {
    use septa_l7::L7Proto as P;
    use septa_l7::functions::Class as C;
    let disruptive = matches!(
        (proto, code),
        (P::Dnp3, 13 | 14 | 18)
            | (P::S7comm, 0x28 | 0x29)
            | (P::Iec104, 105)
            | (P::Bacnet, 20)
            | (P::EnipCip, 0x05)
    );
    match class {
        _ if disruptive => FunctionClass::Disruptive,
        C::Program => FunctionClass::Disruptive,
        C::Read | C::Monitor => FunctionClass::Read,
        C::Write => FunctionClass::Write,
        C::Control => FunctionClass::Control,
        C::Diagnostics | C::Session | C::Response | C::Other => FunctionClass::Other,
    }
}

#[cfg(test)]
mod tests;
