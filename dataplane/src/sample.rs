//! Flow feature sampling for the ML inference thread (`septa-ml`).
//!
//! **What it is.** A [`Sampler`] per worker follows one new flow in [`SamplerConfig::one_in`]
//! (every K-th admitted flow) in a bounded slab of [`FlowSample`]s indexed from the flow entry
//! ([`L7Slot::sample`]), and keeps per-source/per-destination spread sketches over a tumbling
//! window (fan-out, fan-in) fed by *every* new flow, so scans and sweeps show in the spread of
//! whichever of their flows is sampled. A sampled flow emits a
//! [`septa_features::FeatureRecord`] into the worker's bounded ring after its first
//! [`HEAD_PACKETS`] packets, every [`SamplerConfig::periodic_us`] while it lasts, and when it
//! ends. Packet and byte counts, first/last seen and the identified protocol come from the flow
//! entry when the record is built, so per packet a sampled flow only updates its head sizes and
//! gaps (first packets) and TCP flag counts; an unsampled flow costs one test of its entry.
//!
//! **What it never does.** Allocate, lock or log after [`Sampler::new`]; block on a full ring:
//! the record is dropped and counted ([`SamplerCounters::ring_full`]). Spread memory is fixed at
//! construction (direct-mapped sketch slots; a colliding source takes the slot over and the
//! eviction is counted). A full slab skips the flow (counted in
//! [`SamplerCounters::slab_full`]).
//!
//! **Where the worker calls it** (`worker/state.rs`, when a sampler is set):
//! 1. [`Sampler::flow_start`] right after a flow-table insert (spread sketches, sampling choice);
//! 2. [`Sampler::on_packet`] for every packet of a tracked flow after conntrack accepted it;
//! 3. [`Sampler::flow_end`] when the entry is removed (expiry or flush), before the slot is reused.
//!
//! `now` is the worker's clock ([`crate::worker::Clock`], microseconds). The ring is a
//! `std::sync::mpsc::sync_channel` of `FeatureRecord`s (same choice and cost profile as
//! [`crate::events`]); `septa_ml::rings` makes them and hands the receivers to the inference
//! thread.
//!
//! Cost: `septa-bench pipeline` (the worker's packet rate with sampling on and off, same run).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc::{SyncSender, TrySendError};

use septa_classifier::{Family, FlowKey};
use septa_features::{
    EmitReason, FUNCTION_CLASSES, FeatureRecord, FunctionClass, HEAD_PACKETS, HeadStats, L7Proto,
    SCHEMA_VERSION, Spread, TcpFlagCounts,
};

use crate::flow::{Direction, FlowEntry, L7Slot};
use crate::l7::inspect::identify_into;
use crate::parse::ParsedPacket;

/// Bits per spread sketch (linear counting; accurate to a few percent up to ~1,500 distinct items).
const SKETCH_WORDS: usize = 8;
const SKETCH_BITS: u32 = (SKETCH_WORDS * 64) as u32;

/// Sampler tuning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// Flows followed at once (the slab of [`FlowSample`]s).
    pub flows: usize,
    /// Follow every `one_in`-th new flow (1: every flow).
    pub one_in: u32,
    /// Slots of each spread table (sources, destinations, source+port); a power of two.
    pub spread_slots: usize,
    /// Spread window, microseconds.
    pub window_us: u64,
    /// Snapshot interval of long flows, microseconds (0: never).
    pub periodic_us: u64,
}

impl SamplerConfig {
    /// `flows` sampled flows at once, one new flow in 16, 4096 spread slots, a 10 s window, a
    /// snapshot of long flows every 60 s.
    pub fn new(flows: usize) -> Self {
        Self {
            flows,
            one_in: 16,
            spread_slots: 4096,
            window_us: 10_000_000,
            periodic_us: 60_000_000,
        }
    }
}

/// Invalid [`SamplerConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamplerConfigError {
    #[error("sampler: spread_slots {0} must be a power of two between 16 and 1048576")]
    SpreadSlots(usize),
    #[error("sampler: window_us must be at least 1000000 (1 s), got {0}")]
    Window(u64),
    #[error("sampler: flows must be between 1 and 2^31, got {0}")]
    Flows(usize),
    #[error("sampler: one_in must be at least 1")]
    OneIn,
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
    /// Spread-sketch slots taken over by another key before their window ended.
    pub sketch_evictions: u64,
    /// Sampled flows that left the flow table without an end (evicted half-open flows): their
    /// slab entries were reclaimed when the table slot was reused, without a record.
    pub evicted: u64,
}

/// Per-flow feature state of a sampled flow, fixed size. What the flow entry already has
/// (counts, first/last seen, protocol) is not repeated here.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowSample {
    /// Flow-table slot of the flow (see [`Sampler::bind`]).
    owner: u32,
    last_emit: u64,
    /// Tick of the latest head packet (for gaps).
    head_last: u64,
    head: HeadStats,
    tcp: TcpFlagCounts,
    functions: [u32; FUNCTION_CLASSES],
    head_emitted: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct SketchSlot {
    tag: u64,
    window: u64,
    bits: [[u64; SKETCH_WORDS]; 2],
}

/// A direct-mapped table of per-key sketches (two bitmaps per key).
struct SketchTable {
    slots: Box<[SketchSlot]>,
    mask: usize,
}

impl SketchTable {
    fn new(n: usize) -> Self {
        Self {
            slots: vec![SketchSlot::default(); n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// Sets `items` (one per bitmap) for `tag` in `window`; returns whether a live slot of
    /// another key was evicted. Estimates are computed only when a record is built.
    #[inline]
    fn add(&mut self, tag: u64, window: u64, items: [u64; 2]) -> bool {
        let s = &mut self.slots[(mix(tag) as usize) & self.mask];
        let mut evicted = false;
        if s.tag != tag || s.window != window {
            evicted = s.window == window && s.tag != tag && s.tag != 0;
            *s = SketchSlot {
                tag,
                window,
                bits: [[0; SKETCH_WORDS]; 2],
            };
        }
        for (b, item) in s.bits.iter_mut().zip(items) {
            let bit = (mix(item) % u64::from(SKETCH_BITS)) as usize;
            b[bit / 64] |= 1 << (bit % 64);
        }
        evicted
    }

    /// The two distinct-item estimates of `tag` in `window` (0 when its slot holds another key
    /// or another window).
    fn estimates(&self, tag: u64, window: u64) -> [u32; 2] {
        let s = &self.slots[(mix(tag) as usize) & self.mask];
        if s.tag != tag || s.window != window {
            return [0, 0];
        }
        [estimate(&s.bits[0]), estimate(&s.bits[1])]
    }
}

/// Linear-counting estimate of the distinct items set in `bits`.
fn estimate(bits: &[u64; SKETCH_WORDS]) -> u32 {
    let set: u32 = bits.iter().map(|w| w.count_ones()).sum();
    let zero = SKETCH_BITS - set;
    let m = f64::from(SKETCH_BITS);
    // All bits set: the sketch saturated; report its ceiling.
    let z = f64::from(zero.max(1)) / m;
    (-m * z.ln()).round() as u32
}

/// 64-bit mixer (splitmix64 finaliser): spreads keys over sketch bits and table slots.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[inline]
fn addr_word(a: u128) -> u64 {
    mix((a as u64) ^ mix((a >> 64) as u64))
}

/// The sketch tags and items of a flow key (tags are never 0: 0 marks an empty slot).
#[inline]
fn spread_keys(key: &FlowKey) -> (u64, u64, u64, u64) {
    let src = addr_word(key.src);
    let dst = addr_word(key.dst);
    let port = u64::from(key.dport) | u64::from(key.proto) << 16;
    (src, dst, port, mix(src ^ port) | 1)
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
    /// Per flow-table slot: index + 1 of the sample of the flow there (0: none). Lets a new
    /// flow reclaim the sample of an evicted one, which ends without an expiry callback.
    by_flow: Box<[u32]>,
    /// New flows until the next sampled one.
    countdown: u32,
    by_src: SketchTable,
    by_dst: SketchTable,
    by_src_port: SketchTable,
    ring: SyncSender<FeatureRecord>,
    counters: SamplerCounters,
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
    /// Allocates all state up front: `flows × size_of::<FlowSample>()` plus three spread tables
    /// of `spread_slots × 144` bytes ([`Self::bind`] adds 4 bytes per flow-table slot).
    pub fn new(
        worker: u16,
        cfg: SamplerConfig,
        ring: SyncSender<FeatureRecord>,
    ) -> Result<Self, SamplerConfigError> {
        if !cfg.spread_slots.is_power_of_two() || !(16..=1 << 20).contains(&cfg.spread_slots) {
            return Err(SamplerConfigError::SpreadSlots(cfg.spread_slots));
        }
        if cfg.window_us < 1_000_000 {
            return Err(SamplerConfigError::Window(cfg.window_us));
        }
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
            by_flow: Box::default(),
            countdown: 1,
            by_src: SketchTable::new(cfg.spread_slots),
            by_dst: SketchTable::new(cfg.spread_slots),
            by_src_port: SketchTable::new(cfg.spread_slots),
            cfg,
            ring,
            counters: SamplerCounters::default(),
        })
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
            + self.by_flow.len() * size_of::<u32>()
            + 3 * self.cfg.spread_slots * size_of::<SketchSlot>()
    }

    /// Sizes the per-flow-slot index for a flow table of `capacity` (the worker does this when
    /// the sampler is set; allocates once).
    pub fn bind(&mut self, capacity: usize) {
        self.by_flow = vec![0; capacity].into_boxed_slice();
    }

    /// A flow was inserted into the flow table at `table_slot` (`FlowId::slot`): it feeds the
    /// spread sketches and, one in [`SamplerConfig::one_in`], is sampled from now on
    /// (`slot.sample` set). A sample still recorded for that table slot belonged to a flow that
    /// was evicted: it is reclaimed.
    #[inline]
    pub fn start(&mut self, table_slot: usize, slot: &mut L7Slot, key: &FlowKey, now: u64) {
        if let Some(prev) = self.by_flow.get_mut(table_slot)
            && *prev != 0
        {
            let i = std::mem::take(prev) - 1;
            self.counters.evicted += 1;
            self.release(i);
        }
        let window = now / self.cfg.window_us;
        let (src, dst, port, src_port) = spread_keys(key);
        let e1 = self.by_src.add(src | 1, window, [dst, port]);
        let e2 = self.by_dst.add(dst | 1, window, [src, 0]);
        let e3 = self.by_src_port.add(src_port, window, [dst, 0]);
        self.counters.sketch_evictions += u64::from(e1) + u64::from(e2) + u64::from(e3);
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
        if let Some(b) = self.by_flow.get_mut(table_slot) {
            *b = i + 1;
        }
        self.slab[i as usize] = FlowSample {
            owner: u32::try_from(table_slot).unwrap_or(u32::MAX),
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
        let h = &mut f.head;
        if h.count < HEAD_PACKETS {
            if h.count > 0 {
                let gap = now.saturating_sub(f.head_last);
                h.iat_sum_us = h.iat_sum_us.saturating_add(gap);
                h.iat_sumsq_us2 = h.iat_sumsq_us2.saturating_add(gap.saturating_mul(gap));
            }
            f.head_last = now;
            h.count += 1;
            h.size_sum = h.size_sum.saturating_add(u32::from(l3_len));
            h.size_sumsq = h
                .size_sumsq
                .saturating_add(u64::from(l3_len) * u64::from(l3_len));
            h.size_max = h.size_max.max(l3_len);
        }
        if tcp_flags != 0 {
            let t = &mut f.tcp;
            let syn = tcp_flags & 0x02 != 0;
            let ack = tcp_flags & 0x10 != 0;
            t.syn += u32::from(syn);
            t.syn_ack += u32::from(syn && ack);
            t.fin += u32::from(tcp_flags & 0x01 != 0);
            t.rst += u32::from(tcp_flags & 0x04 != 0);
            t.psh += u32::from(tcp_flags & 0x08 != 0);
        }
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

    /// L7 inspection parsed a function code of class `class` on a sampled flow.
    pub fn function(&mut self, slot: &L7Slot, class: FunctionClass) {
        if let Some(f) = self.slab.get_mut(slot.sample.wrapping_sub(1) as usize) {
            let c = &mut f.functions[class as usize];
            *c = c.saturating_add(1);
        }
    }

    /// Builds the record of the sampled flow `slot` and offers it to the ring.
    pub fn emit(&mut self, slot: &L7Slot, flow: &FlowView, reason: EmitReason) {
        let Some(f) = self.slab.get(slot.sample.wrapping_sub(1) as usize) else {
            return;
        };
        let key = &flow.key;
        let window = flow.last_seen / self.cfg.window_us;
        let (src, dst, _, src_port) = spread_keys(key);
        let s = self.by_src.estimates(src | 1, window);
        let d = self.by_dst.estimates(dst | 1, window);
        let p = self.by_src_port.estimates(src_port, window);
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
            duration_us: flow.last_seen.saturating_sub(flow.first_seen),
            packets: flow.packets.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            bytes: flow.bytes,
            head: f.head,
            tcp: f.tcp,
            functions: f.functions,
            spread: Spread {
                src_hosts: s[0].max(1),
                src_ports: s[1].max(1),
                src_hosts_on_port: p[0].clamp(1, s[0].max(1)),
                dst_sources: d[0].max(1),
                window_s: u32::try_from(self.cfg.window_us / 1_000_000).unwrap_or(u32::MAX),
            },
        };
        match self.ring.try_send(rec) {
            Ok(()) => self.counters.emitted += 1,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.ring_full += 1;
            }
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
        if let Some(f) = self.slab.get(i as usize)
            && let Some(b) = self.by_flow.get_mut(f.owner as usize)
            && *b == i + 1
        {
            *b = 0;
        }
        self.release(i);
    }

    fn release(&mut self, i: u32) {
        if (i as usize) < self.slab.len() && self.free_len < self.free.len() {
            self.free[self.free_len] = i;
            self.free_len += 1;
        }
    }

    /// [`Self::start`] for a flow just inserted into the flow table at `table_slot`.
    #[inline]
    pub fn flow_start<S>(&mut self, table_slot: usize, e: &mut FlowEntry<S>, now: u64) {
        let key = e.key();
        self.start(table_slot, &mut e.l7, &key, now);
    }

    /// A packet of a tracked flow, after conntrack accepted it (the entry's counters include
    /// it). Costs one test for a flow that is not sampled.
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
        let key = e.key();
        if pkt.key.proto != key.proto {
            return; // an ICMP error about the flow
        }
        identify_into(&mut e.l7, &key, pkt, frame);
        let len = u16::try_from(pkt.l3_end - pkt.l3_offset).unwrap_or(u16::MAX);
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
