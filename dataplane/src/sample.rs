//! Flow feature sampling for the ML inference thread (`septa-ml`).
//!
//! **What it is.** A [`Sampler`] per worker keeps, for every flow-table slot, a fixed-size
//! [`FlowSample`] (counts, sizes and gaps of the first packets, TCP flags, L7 protocol and a
//! function-class histogram), and per-source/per-destination spread sketches over a tumbling
//! window (fan-out, fan-in). It emits a [`septa_features::FeatureRecord`] into the worker's
//! bounded ring after the first [`HEAD_PACKETS`] packets of a flow, every
//! [`SamplerConfig::periodic_us`] for long flows, and when the flow ends.
//!
//! **What it never does.** Allocate, lock or log after [`Sampler::new`]; block on a full ring:
//! the record is dropped and counted ([`SamplerCounters::ring_full`]). Spread memory is fixed at
//! construction (direct-mapped sketch slots; a colliding source takes the slot over and the
//! eviction is counted).
//!
//! **Where the worker calls it** (wired by the worker's owner; this module does not touch the
//! worker):
//! 1. [`Sampler::flow_start`]`(slot, &key, now)` right after a successful flow-table insert, with
//!    `FlowId::slot()` and the flow's original-direction key. This also updates the spread
//!    sketches (a new flow is a new contact).
//! 2. [`Sampler::on_packet`]`(slot, &key, dir, l3_len, tcp_flags, now)` for every packet of a
//!    tracked flow (after the verdict, forwarded or not), with the entry's original-direction key,
//!    the packet's [`Direction`], its L3 length and raw TCP flags (0 for non-TCP).
//! 3. [`Sampler::on_l7`] / [`Sampler::on_function`] from L7 inspection when it identifies the
//!    protocol or parses a function code.
//! 4. [`Sampler::flow_end`]`(slot, &key, now)` when the entry is removed (close or expiry), before
//!    the slot is reused.
//!
//! `now` is the worker's clock ([`crate::worker::Clock`], microseconds). The ring is a
//! `std::sync::mpsc::sync_channel` of `FeatureRecord`s (same choice and cost profile as
//! [`crate::events`]); `septa_ml::rings` makes them and hands the receivers to the inference
//! thread.
//!
//! Cost: see `septa-bench ml --sampler-only` (ns per packet against parsing the same packets).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc::{SyncSender, TrySendError};

use septa_classifier::{Family, FlowKey};
use septa_features::{
    EmitReason, FUNCTION_CLASSES, FeatureRecord, FunctionClass, HEAD_PACKETS, HeadStats, L7Proto,
    SCHEMA_VERSION, Spread, TcpFlagCounts,
};

use crate::flow::Direction;

/// Bits per spread sketch (linear counting; accurate to a few percent up to ~1,500 distinct items).
const SKETCH_WORDS: usize = 8;
const SKETCH_BITS: u32 = (SKETCH_WORDS * 64) as u32;

/// Sampler tuning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// Flow-table capacity (one [`FlowSample`] per slot).
    pub flows: usize,
    /// Slots of each spread table (sources, destinations, source+port); a power of two.
    pub spread_slots: usize,
    /// Spread window, microseconds.
    pub window_us: u64,
    /// Snapshot interval of long flows, microseconds (0: never).
    pub periodic_us: u64,
}

impl SamplerConfig {
    pub fn new(flows: usize) -> Self {
        Self {
            flows,
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
    #[error("sampler: flows must be at least 1")]
    Flows,
}

/// Counters of one sampler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerCounters {
    /// Records pushed to the ring.
    pub emitted: u64,
    /// Records dropped because the ring was full (or the inference side went away).
    pub ring_full: u64,
    /// Spread-sketch slots taken over by another key before their window ended.
    pub sketch_evictions: u64,
    /// Calls with a slot outside the configured flow capacity (a wiring bug), ignored.
    pub bad_slot: u64,
}

/// Per-flow feature state, fixed size.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowSample {
    first_seen: u64,
    last_seen: u64,
    last_emit: u64,
    bytes: [u64; 2],
    packets: [u32; 2],
    head: HeadStats,
    tcp: TcpFlagCounts,
    functions: [u32; FUNCTION_CLASSES],
    spread: Spread,
    l7: Option<L7Proto>,
    head_emitted: bool,
    live: bool,
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

    /// Sets `items` (one per bitmap) for `tag` in `window`; returns the two estimates and whether
    /// a live slot of another key was evicted.
    fn add(&mut self, tag: u64, window: u64, items: [u64; 2]) -> ([u32; 2], bool) {
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
        ([estimate(&s.bits[0]), estimate(&s.bits[1])], evicted)
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

/// The feature sampler of one worker.
pub struct Sampler {
    worker: u16,
    cfg: SamplerConfig,
    flows: Box<[FlowSample]>,
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
    /// of `spread_slots × 144` bytes.
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
        if cfg.flows == 0 {
            return Err(SamplerConfigError::Flows);
        }
        Ok(Self {
            worker,
            flows: vec![FlowSample::default(); cfg.flows].into_boxed_slice(),
            by_src: SketchTable::new(cfg.spread_slots),
            by_dst: SketchTable::new(cfg.spread_slots),
            by_src_port: SketchTable::new(cfg.spread_slots),
            cfg,
            ring,
            counters: SamplerCounters::default(),
        })
    }

    pub fn counters(&self) -> SamplerCounters {
        self.counters
    }

    /// Bytes of state held (fixed after construction).
    pub fn memory_bytes(&self) -> usize {
        self.flows.len() * size_of::<FlowSample>()
            + 3 * self.cfg.spread_slots * size_of::<SketchSlot>()
    }

    fn sample(&mut self, slot: usize) -> Option<&mut FlowSample> {
        match self.flows.get_mut(slot) {
            Some(s) => Some(s),
            None => {
                self.counters.bad_slot += 1;
                None
            }
        }
    }

    /// A flow was inserted into the flow table at `slot`.
    pub fn flow_start(&mut self, slot: usize, key: &FlowKey, now: u64) {
        let window = now / self.cfg.window_us;
        let src = addr_word(key.src);
        let dst = addr_word(key.dst);
        let port = u64::from(key.dport) | u64::from(key.proto) << 16;
        // Tags are never 0 (0 marks an empty slot).
        let (s, e1) = self.by_src.add(src | 1, window, [dst, port]);
        let (d, e2) = self.by_dst.add(dst | 1, window, [src, 0]);
        let (p, e3) = self.by_src_port.add(mix(src ^ port) | 1, window, [dst, 0]);
        self.counters.sketch_evictions += u64::from(e1) + u64::from(e2) + u64::from(e3);
        let window_s = u32::try_from(self.cfg.window_us / 1_000_000).unwrap_or(u32::MAX);
        let Some(f) = self.sample(slot) else { return };
        *f = FlowSample {
            first_seen: now,
            last_seen: now,
            last_emit: now,
            spread: Spread {
                src_hosts: s[0],
                src_ports: s[1],
                src_hosts_on_port: p[0].min(s[0]),
                dst_sources: d[0],
                window_s,
            },
            live: true,
            ..FlowSample::default()
        };
    }

    /// One packet of the flow at `slot`. `key` is the flow's original-direction key.
    #[inline]
    pub fn on_packet(
        &mut self,
        slot: usize,
        key: &FlowKey,
        dir: Direction,
        l3_len: u16,
        tcp_flags: u8,
        now: u64,
    ) {
        let periodic = self.cfg.periodic_us;
        let Some(f) = self.sample(slot) else { return };
        if !f.live {
            return;
        }
        let d = dir.index();
        f.packets[d] = f.packets[d].saturating_add(1);
        f.bytes[d] = f.bytes[d].saturating_add(u64::from(l3_len));
        let h = &mut f.head;
        if h.count < HEAD_PACKETS {
            if h.count > 0 {
                let gap = now.saturating_sub(f.last_seen);
                h.iat_sum_us = h.iat_sum_us.saturating_add(gap);
                h.iat_sumsq_us2 = h.iat_sumsq_us2.saturating_add(gap.saturating_mul(gap));
            }
            h.count += 1;
            h.size_sum = h.size_sum.saturating_add(u32::from(l3_len));
            h.size_sumsq = h
                .size_sumsq
                .saturating_add(u64::from(l3_len) * u64::from(l3_len));
            h.size_max = h.size_max.max(l3_len);
        }
        f.last_seen = now;
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
            Some(EmitReason::FirstPackets)
        } else if periodic != 0 && now.saturating_sub(f.last_emit) >= periodic {
            Some(EmitReason::Periodic)
        } else {
            None
        };
        if let Some(reason) = reason {
            f.last_emit = now;
            self.emit(slot, key, reason);
        }
    }

    /// L7 inspection identified the flow's protocol.
    pub fn on_l7(&mut self, slot: usize, proto: septa_l7::L7Proto) {
        if let Some(f) = self.sample(slot) {
            f.l7 = Some(feature_l7(proto));
        }
    }

    /// L7 inspection parsed a function code of class `class`.
    pub fn on_function(&mut self, slot: usize, class: FunctionClass) {
        if let Some(f) = self.sample(slot) {
            let c = &mut f.functions[class as usize];
            *c = c.saturating_add(1);
        }
    }

    /// The flow at `slot` left the table: emit its final record and free the slot.
    pub fn flow_end(&mut self, slot: usize, key: &FlowKey, _now: u64) {
        let Some(f) = self.sample(slot) else { return };
        if !f.live {
            return;
        }
        self.emit(slot, key, EmitReason::FlowEnd);
        self.flows[slot].live = false;
    }

    fn emit(&mut self, slot: usize, key: &FlowKey, reason: EmitReason) {
        let f = &self.flows[slot];
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
            l7: f.l7.unwrap_or(L7Proto::Unknown),
            duration_us: f.last_seen.saturating_sub(f.first_seen),
            packets: f.packets,
            bytes: f.bytes,
            head: f.head,
            tcp: f.tcp,
            functions: f.functions,
            spread: f.spread,
        };
        match self.ring.try_send(rec) {
            Ok(()) => self.counters.emitted += 1,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.ring_full += 1;
            }
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
