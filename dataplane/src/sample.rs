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
//! `now` is the worker's clock ([`crate::worker::Clock`], microseconds). The ring is a
//! `std::sync::mpsc::sync_channel` of `FeatureRecord`s (same choice and cost profile as
//! [`crate::events`]); `septa_ml::rings` makes them and hands the receivers to the inference
//! thread.
//!
//! Cost: `septa-bench pipeline` (the worker's packet rate with sampling on and off, same run;
//! numbers in `docs/ml.md`). Under a flood of new sources the spread sketches are the cost
//! (four cold cache lines per new flow), hence their updates wait in a batch
//! ([`Sampler::flush`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};

use arrayvec::ArrayVec;
use septa_classifier::{Family, FlowKey};
use septa_features::{
    EmitReason, FUNCTION_CLASSES, FeatureRecord, FunctionClass, HEAD_PACKETS, HeadStats, L7Proto,
    SCHEMA_VERSION, Spread, TcpFlagCounts,
};

use crate::counters::{PublishTimer, PublishedWords};
use crate::flow::{Direction, FlowEntry, L7Slot};
use crate::hint::prefetch_write;
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

pub use crate::counters::PUBLISH_US;

/// A sampler's counters as other threads read them (the control side's health and metrics):
/// relaxed atomics on cache lines of their own, which the worker stores every [`PUBLISH_US`]
/// ([`Sampler::publish`], called between polls), never per packet. A reader sees values at
/// most that old (plus up to [`PENDING`] new flows for `sketch_evictions`).
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
            sketch_evictions,
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
            sketch_evictions,
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
            c.sketch_evictions,
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
    /// Spread-sketch slots taken over by another key before their window ended.
    pub sketch_evictions: u64,
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

/// Words of the per-source sketch slot: 512 bits of destination hosts, 448 of destination ports
/// (with the 8-byte header, two cache lines).
const SRC_WORDS: usize = 15;
/// Words of the destination and source+port slots: 448 bits (with the header, one cache line).
const ONE_WORDS: usize = 7;
/// The split of a per-source slot: hosts in words `0..SRC_HOST_WORDS`, ports after.
const SRC_HOST_WORDS: usize = 8;

/// One direct-mapped sketch slot: a key tag, its window and `W` words of linear-counting
/// bitmaps, cache-line aligned so that an update touches one line (two for the per-source slot).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct SketchSlot<const W: usize> {
    /// High half of the key's hash, never 0 (0: empty slot).
    tag: u32,
    /// Window number (`now / window_us`, truncated).
    window: u32,
    bits: [u64; W],
}

impl<const W: usize> Default for SketchSlot<W> {
    fn default() -> Self {
        Self {
            tag: 0,
            window: 0,
            bits: [0; W],
        }
    }
}

/// A direct-mapped table of per-key sketches. Per new flow each table takes one update: find
/// the key's slot (reset it when it holds another key or an older window), set one or two bits.
struct SketchTable<const W: usize> {
    slots: Box<[SketchSlot<W>]>,
    mask: usize,
}

/// The slot index and tag of a hashed key (index from the low half, tag from the high half).
#[inline]
fn place(h: u64) -> (usize, u32) {
    (h as usize, ((h >> 32) as u32) | 1)
}

/// A bit in `0..m` from the high half of a hash (multiply-shift range reduction).
#[inline]
fn bit_of(h: u64, m: u32) -> usize {
    (((h >> 32) * u64::from(m)) >> 32) as usize
}

#[inline]
fn set(bits: &mut [u64], b: usize) {
    bits[b / 64] |= 1 << (b % 64);
}

impl<const W: usize> SketchTable<W> {
    fn new(n: usize) -> Self {
        Self {
            slots: vec![SketchSlot::default(); n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// The slot of hashed key `h` for `window`, reset if it held another key or window;
    /// also whether a live slot of another key was evicted.
    #[inline]
    fn slot(&mut self, h: u64, window: u32) -> (&mut [u64; W], bool) {
        let (i, tag) = place(h);
        let s = &mut self.slots[i & self.mask];
        let mut evicted = false;
        if s.tag != tag || s.window != window {
            evicted = s.window == window && s.tag != 0;
            *s = SketchSlot {
                tag,
                window,
                bits: [0; W],
            };
        }
        (&mut s.bits, evicted)
    }

    /// Loads the first and the last word of hashed key `h`'s slot (every cache line of a slot
    /// of up to two lines), so that the lines are on their way before the update needs them.
    #[inline]
    fn touch(&self, h: u64) -> u64 {
        let (i, _) = place(h);
        let s = &self.slots[i & self.mask];
        u64::from(s.tag) ^ s.bits[W - 1]
    }

    /// Asks for every cache line of hashed key `h`'s slot, for writing (a slot spans one line,
    /// or two for the per-source slot: its first and its last word), without waiting for them:
    /// issued when a new flow is queued, so the lines arrive while the worker goes on with its
    /// burst, and the batch's update finds them loaded.
    #[inline]
    fn prefetch(&self, h: u64) {
        let (i, _) = place(h);
        let s = &self.slots[i & self.mask];
        prefetch_write(&s.tag);
        if size_of::<SketchSlot<W>>() > 64 {
            prefetch_write(&s.bits[W - 1]);
        }
    }

    /// The bitmap words of hashed key `h` in `window` (`None` when its slot holds another key
    /// or another window).
    fn get(&self, h: u64, window: u32) -> Option<&[u64; W]> {
        let (i, tag) = place(h);
        let s = &self.slots[i & self.mask];
        (s.tag == tag && s.window == window).then_some(&s.bits)
    }
}

/// Linear-counting estimate of the distinct items set in a bitmap of `m` bits with `zero` bits
/// clear.
fn linear_count(m: u32, zero: u32) -> u32 {
    let mf = f64::from(m);
    // All bits set: the sketch saturated; report its ceiling.
    let z = f64::from(zero.max(1)) / mf;
    (-mf * z.ln()).round() as u32
}

/// [`linear_count`] for every clear-bit count of an `m`-bit bitmap, computed once, so that a
/// record's four estimates are table lookups instead of four logarithms.
struct Estimates(Box<[u32]>);

impl Estimates {
    fn new(m: usize) -> Self {
        let m = m as u32;
        Self((0..=m).map(|zero| linear_count(m, zero)).collect())
    }

    /// The estimate of the distinct items set in `bits` (all of its `64 × len` bits, which
    /// must be the table's `m`).
    fn of(&self, bits: &[u64]) -> u32 {
        let set: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
        debug_assert_eq!(self.0.len(), bits.len() * 64 + 1);
        self.0[self.0.len() - 1 - set]
    }

    fn memory_bytes(&self) -> usize {
        self.0.len() * size_of::<u32>()
    }
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

/// One word of an address: `mix(low ^ mix(high))`. For IPv4 (and any address whose high half is
/// 0) that is `mix(low)`, since `mix(0) == 0`: the second mix is skipped, same value.
#[inline]
fn addr_word(a: u128) -> u64 {
    let hi = (a >> 64) as u64;
    mix((a as u64) ^ if hi == 0 { 0 } else { mix(hi) })
}

/// Hashes of a flow key for the spread sketches: source, destination, destination
/// port+protocol, and source+port.
#[derive(Clone, Copy)]
struct SpreadKeys {
    src: u64,
    dst: u64,
    port: u64,
    src_port: u64,
}

#[inline]
fn spread_keys(key: &FlowKey) -> SpreadKeys {
    let src = addr_word(key.src);
    let dst = addr_word(key.dst);
    // A full mix (linear counting assumes random bits: a multiplicative hash spreads sequential
    // ports too evenly and overstates the count).
    let port = mix(u64::from(key.dport) | u64::from(key.proto) << 16);
    SpreadKeys {
        src,
        dst,
        port,
        src_port: mix(src ^ port),
    }
}

/// New flows whose sketch updates wait in a batch ([`Sampler::flush`]).
const PENDING: usize = 64;

/// A new flow's sketch update, deferred until the batch is full or a record reads the sketches.
#[derive(Clone, Copy)]
struct Pending {
    keys: SpreadKeys,
    window: u32,
}

/// The three spread tables of a sampler: fan-out per source (hosts and ports), fan-in per
/// destination (sources), fan-out per source and destination port (hosts).
struct Spread3 {
    by_src: SketchTable<SRC_WORDS>,
    by_dst: SketchTable<ONE_WORDS>,
    by_src_port: SketchTable<ONE_WORDS>,
    /// Estimates of the per-source host and port bitmaps and of the one-line slots.
    hosts: Estimates,
    ports: Estimates,
    one: Estimates,
}

impl Spread3 {
    fn new(n: usize) -> Self {
        Self {
            by_src: SketchTable::new(n),
            by_dst: SketchTable::new(n),
            by_src_port: SketchTable::new(n),
            hosts: Estimates::new(SRC_HOST_WORDS * 64),
            ports: Estimates::new((SRC_WORDS - SRC_HOST_WORDS) * 64),
            one: Estimates::new(ONE_WORDS * 64),
        }
    }

    fn memory_bytes(&self) -> usize {
        self.by_src.slots.len() * size_of::<SketchSlot<SRC_WORDS>>()
            + 2 * self.by_dst.slots.len() * size_of::<SketchSlot<ONE_WORDS>>()
            + self.hosts.memory_bytes()
            + self.ports.memory_bytes()
            + self.one.memory_bytes()
    }

    /// Prefetches the four cache lines a new flow's [`Self::add`] will write.
    #[inline]
    fn prefetch(&self, k: SpreadKeys) {
        self.by_src.prefetch(k.src);
        self.by_dst.prefetch(k.dst);
        self.by_src_port.prefetch(k.src_port);
    }

    /// One new flow: three slot updates (four bits). Returns the evictions.
    #[inline]
    fn add(&mut self, k: SpreadKeys, window: u32) -> u64 {
        let (b, e1) = self.by_src.slot(k.src, window);
        let (hosts, ports) = b.split_at_mut(SRC_HOST_WORDS);
        set(hosts, bit_of(k.dst, (SRC_HOST_WORDS * 64) as u32));
        set(
            ports,
            bit_of(k.port, ((SRC_WORDS - SRC_HOST_WORDS) * 64) as u32),
        );
        let (b, e2) = self.by_dst.slot(k.dst, window);
        set(b, bit_of(k.src, (ONE_WORDS * 64) as u32));
        let (b, e3) = self.by_src_port.slot(k.src_port, window);
        set(b, bit_of(k.dst, (ONE_WORDS * 64) as u32));
        u64::from(e1) + u64::from(e2) + u64::from(e3)
    }

    /// The new flows of `batch`, in order: the same result as one [`Self::add`] after another.
    /// All their slots are loaded first (independent loads of a short loop: their cache misses
    /// overlap instead of following one another), then updated. Returns the evictions.
    fn add_batch(&mut self, batch: &[Pending]) -> u64 {
        let mut lines = 0;
        for p in batch {
            lines ^= self.by_src.touch(p.keys.src)
                ^ self.by_dst.touch(p.keys.dst)
                ^ self.by_src_port.touch(p.keys.src_port);
        }
        std::hint::black_box(lines);
        batch.iter().map(|p| self.add(p.keys, p.window)).sum()
    }

    /// `[src_hosts, src_ports, src_hosts_on_port, dst_sources]` of a flow key in `window`
    /// (0 where the key's slot was taken over).
    fn estimates(&self, k: SpreadKeys, window: u32) -> [u32; 4] {
        let (h, p) = self.by_src.get(k.src, window).map_or((0, 0), |b| {
            let (hosts, ports) = b.split_at(SRC_HOST_WORDS);
            (self.hosts.of(hosts), self.ports.of(ports))
        });
        let on_port = self
            .by_src_port
            .get(k.src_port, window)
            .map_or(0, |b| self.one.of(b));
        let d = self.by_dst.get(k.dst, window).map_or(0, |b| self.one.of(b));
        [h, p, on_port, d]
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
    spread: Spread3,
    /// New flows not yet in the spread sketches ([`Self::flush`]).
    pending: ArrayVec<Pending, PENDING>,
    ring: SyncSender<FeatureRecord>,
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
    /// Allocates all state up front: `flows × size_of::<FlowSample>()` plus the spread tables,
    /// `spread_slots × 256` bytes (a 128-byte per-source slot, 64-byte per-destination and
    /// per-source+port slots).
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
            countdown: 1,
            spread: Spread3::new(cfg.spread_slots),
            pending: ArrayVec::new(),
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

    /// Counters (single writer: the worker; read them between polls). `sketch_evictions`
    /// counts the sketch updates applied so far: up to [`PENDING`] new flows wait in a batch
    /// ([`Self::flush`]).
    pub fn counters(&self) -> SamplerCounters {
        self.counters
    }

    /// Flows being sampled now.
    pub fn active(&self) -> usize {
        self.slab.len() - self.free_len
    }

    /// Bytes of state held (fixed after construction).
    pub fn memory_bytes(&self) -> usize {
        self.slab.len() * (size_of::<FlowSample>() + size_of::<u32>()) + self.spread.memory_bytes()
    }

    /// The spread window of tick `now`.
    #[inline]
    fn window(&self, now: u64) -> u32 {
        (now / self.cfg.window_us) as u32
    }

    /// A new flow for the spread sketches in the window of `now`: queued, applied by
    /// [`Self::flush`] when the batch is full or before a record reads the sketches.
    #[inline]
    fn spread_add(&mut self, key: &FlowKey, now: u64) {
        if self.pending.is_full() {
            self.flush();
        }
        let p = Pending {
            keys: spread_keys(key),
            window: self.window(now),
        };
        // The update waits in the batch: its lines can be on their way meanwhile.
        self.spread.prefetch(p.keys);
        // Not full: flushed above.
        let _ = self.pending.try_push(p);
    }

    /// Applies the queued sketch updates, in their order. Each new flow updates three slots
    /// (four cache lines) spread over the tables, which a worker under a flood of new sources
    /// finds cold: added one by one, every flow waits for its own misses; added in a batch,
    /// the misses of up to [`PENDING`] flows overlap. Every record flushes before it reads the
    /// sketches, so what it reads is what one update per flow would give.
    #[inline]
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.counters.sketch_evictions += self.spread.add_batch(&self.pending);
            self.pending.clear();
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

    /// Builds the record of `f` for `flow` and offers it to the ring.
    fn offer(&mut self, f: &FlowSample, flow: &FlowView, reason: EmitReason) {
        self.flush();
        let key = &flow.key;
        let [hosts, ports, on_port, sources] = self
            .spread
            .estimates(spread_keys(key), self.window(flow.last_seen));
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
            spread: Spread {
                src_hosts: hosts.max(1),
                src_ports: ports.max(1),
                src_hosts_on_port: on_port.clamp(1, hosts.max(1)),
                dst_sources: sources.max(1),
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
