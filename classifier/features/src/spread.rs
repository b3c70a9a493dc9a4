//! Spread sketches (fan-out, fan-in) and the per-worker sample channel that feeds them.
//!
//! **Who does what.** A worker's sampler does not count spread itself: it puts every new flow
//! (addresses, destination port, protocol, tick: a [`NewFlow`], no hashing) on the flow ring of
//! its [`SampleSender`], a single-producer ring (`rtrb`) the flow is written into in place and
//! published by one release store. The inference side owns one [`SpreadSketches`] for all workers
//! (a scan whose flows RSS spreads over several workers shows its whole fan-out) and fills a
//! record's [`Spread`] when it receives the record ([`SampleReceiver::try_recv`]), after applying
//! every new flow its worker sent before it. The worker thus pays a 48-byte store per new flow,
//! instead of hashing into three tables and four cold cache lines per new flow. (New flows
//! used to go in batches of 16 through a `std::sync::mpsc::sync_channel`, sent when full and
//! before every record: each send copied the whole 784-byte batch across cores, which cost the
//! worker about three times what a ring write per flow does; `docs/ml.md` has the numbers.)
//!
//! **Ordering.** A record carries the number of new flows its worker had put on the flow ring
//! before it ([`SpreadQuery::flows`]; refused flows are not counted). The worker wrote them
//! before the record, and the record ring's release and acquire order those writes before the
//! receiver's read of the record, so the receiver applies at least that many before filling the
//! record's spread: a record counts every flow that started before it.
//! [`SampleReceiver::drain_spread`] applies what waits when no record needs it, so the flow ring
//! is emptied on every pass of the inference loop and fills only when new flows outrun that
//! thread (the flows it refuses are the sender's [`SampleSender::try_send_flow`] errors,
//! counted by the worker: estimates are then low, never wrong). A record read after such a
//! drain may also count flows that started after it (the newest of its window, as a scan across
//! workers would anyway); the inference loop reads the waiting records before it drains, so
//! only records beyond one scoring batch can.
//!
//! **Sketches.** Per source: a linear-counting bitmap of destination hosts (512 bits) and one of
//! destination ports (448 bits); per destination: one of sources (448 bits); per source and
//! destination port/protocol: one of destination hosts (448 bits). Direct-mapped slots
//! (`slots` of each table, a power of two), each for one key and one tumbling window of
//! `window_us`; a key that finds its slot held by another key of the same window takes it over
//! and the eviction is counted ([`SpreadSketches::evictions`]). Workers' clocks start at slightly
//! different instants, so a flow whose window is older than its slot's (a worker a few
//! milliseconds behind at a window's edge) is counted in the slot's window when the slot is its
//! key's, and skipped when the slot is another key's: an old flow never evicts a current slot.
//!
//! Memory: `slots × 256` bytes of sketches plus three estimate tables of about 2 KB; fixed at
//! construction, no allocation after it.

use std::net::IpAddr;

use crate::{FeatureRecord, FlowKey, Spread};

/// New flows applied together: their sketch slots are loaded first, so the cache misses overlap.
const APPLY_CHUNK: usize = 16;

/// A new flow as the spread sketches need it. Addresses are `u128`s; an IPv4 address is the
/// 32-bit value in the low bits (as `septa_classifier::FlowKey` holds it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlow {
    pub src: u128,
    pub dst: u128,
    /// The worker's clock at the flow's first packet, microseconds.
    pub tick: u64,
    pub dport: u16,
    pub proto: u8,
}

/// Where the receiver finds a record's spread: the window of `tick` (the flow's latest packet,
/// worker clock), after the first `flows` new flows its worker put on the flow ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpreadQuery {
    pub tick: u64,
    pub flows: u64,
}

/// What a worker's record ring carries: a record and, when its [`Spread`] is still to be
/// filled, where to look it up (`None`: the record is complete as it is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampled {
    pub record: FeatureRecord,
    pub spread: Option<SpreadQuery>,
}

impl From<FeatureRecord> for Sampled {
    fn from(record: FeatureRecord) -> Self {
        Self {
            record,
            spread: None,
        }
    }
}

/// The worker's end of its sample channel.
#[derive(Debug)]
pub struct SampleSender {
    records: rtrb::Producer<Sampled>,
    flows: rtrb::Producer<NewFlow>,
    /// New flows put on the flow ring so far (refused ones not counted).
    sent: u64,
}

/// Why a send did not happen: the ring is full or the receiver is gone. Either way the item is
/// dropped and the sender counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendFailed;

impl SampleSender {
    /// Offers a record without blocking.
    #[inline]
    pub fn try_send_record(&mut self, s: Sampled) -> Result<(), SendFailed> {
        if self.records.push(s).is_err() || self.records.is_abandoned() {
            return Err(SendFailed);
        }
        Ok(())
    }

    /// Puts a new flow on the flow ring without blocking (written in place, visible to the
    /// receiver at once). Refused when the ring is full or the receiver is gone.
    #[inline]
    pub fn try_send_flow(&mut self, f: NewFlow) -> Result<(), SendFailed> {
        if self.flows.push(f).is_err() || self.flows.is_abandoned() {
            return Err(SendFailed);
        }
        self.sent += 1;
        Ok(())
    }

    /// New flows put on the flow ring so far: what a record's [`SpreadQuery::flows`] says.
    #[inline]
    pub fn flows_sent(&self) -> u64 {
        self.sent
    }
}

/// The inference side's end of one worker's sample channel.
#[derive(Debug)]
pub struct SampleReceiver {
    records: rtrb::Consumer<Sampled>,
    flows: rtrb::Consumer<NewFlow>,
    /// New flows of this worker applied so far.
    applied: u64,
}

/// A sample channel: a ring of `records` records and one of `flows` new flows, both allocated
/// here (`records × 208 + flows × 48` bytes).
pub fn sample_channel(records: usize, flows: usize) -> (SampleSender, SampleReceiver) {
    let (rt, rr) = rtrb::RingBuffer::new(records.max(1));
    let (ft, fr) = rtrb::RingBuffer::new(flows.max(1));
    (
        SampleSender {
            records: rt,
            flows: ft,
            sent: 0,
        },
        SampleReceiver {
            records: rr,
            flows: fr,
            applied: 0,
        },
    )
}

impl SampleReceiver {
    /// The next record, its [`Spread`] filled from `sketches` once the new flows its worker
    /// sent before it are applied; `None` when the ring is empty.
    pub fn try_recv(&mut self, sketches: &mut SpreadSketches) -> Option<FeatureRecord> {
        let Sampled { mut record, spread } = self.records.pop().ok()?;
        if let Some(q) = spread {
            let behind = q.flows.saturating_sub(self.applied);
            self.apply(sketches, usize::try_from(behind).unwrap_or(usize::MAX));
            record.spread = sketches.estimate(&record.key, q.tick);
        }
        Some(record)
    }

    /// Applies every new flow waiting on the flow ring; returns how many.
    pub fn drain_spread(&mut self, sketches: &mut SpreadSketches) -> usize {
        self.apply(sketches, usize::MAX)
    }

    /// Applies the next `n` new flows, or as many as wait if fewer; returns how many.
    fn apply(&mut self, sketches: &mut SpreadSketches, n: usize) -> usize {
        let n = n.min(self.flows.slots());
        if n == 0 {
            return 0;
        }
        let Ok(chunk) = self.flows.read_chunk(n) else {
            return 0; // not reached: `slots` said they were there
        };
        let (a, b) = chunk.as_slices();
        sketches.apply(a);
        sketches.apply(b);
        chunk.commit_all();
        self.applied += n as u64;
        n
    }
}

/// A sample channel's receiving end with spread sketches of its own: the records of one worker
/// as the inference side would fill them if no other worker fed the sketches (tests, benches,
/// tools; `septa_ml`'s service shares one set of sketches between all workers instead).
#[derive(Debug)]
pub struct SoloReceiver {
    pub rx: SampleReceiver,
    pub sketches: SpreadSketches,
}

impl SoloReceiver {
    pub fn new(rx: SampleReceiver, cfg: SpreadConfig) -> Result<Self, SpreadConfigError> {
        Ok(Self {
            rx,
            sketches: SpreadSketches::new(cfg)?,
        })
    }

    /// [`SampleReceiver::try_recv`].
    pub fn try_recv(&mut self) -> Option<FeatureRecord> {
        self.rx.try_recv(&mut self.sketches)
    }

    /// Every record waiting, in order.
    pub fn try_iter(&mut self) -> impl Iterator<Item = FeatureRecord> + '_ {
        std::iter::from_fn(move || self.try_recv())
    }

    /// [`SampleReceiver::drain_spread`].
    pub fn drain_spread(&mut self) -> usize {
        self.rx.drain_spread(&mut self.sketches)
    }
}

/// Spread sketch sizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpreadConfig {
    /// Slots of each table (sources, destinations, source+port); a power of two.
    pub slots: usize,
    /// Window, microseconds.
    pub window_us: u64,
}

impl Default for SpreadConfig {
    /// 4096 slots (1 MiB), a 10 s window.
    fn default() -> Self {
        Self {
            slots: 4096,
            window_us: 10_000_000,
        }
    }
}

/// An invalid [`SpreadConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpreadConfigError {
    Slots(usize),
    Window(u64),
}

impl std::fmt::Display for SpreadConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Slots(n) => write!(
                f,
                "spread sketches: slots {n} must be a power of two between 16 and 1048576"
            ),
            Self::Window(w) => write!(
                f,
                "spread sketches: window_us must be at least 1000000 (1 s), got {w}"
            ),
        }
    }
}

impl std::error::Error for SpreadConfigError {}

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
    /// Window number (`tick / window_us`, truncated).
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

/// A direct-mapped table of per-key sketches.
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

/// What a flow found in a table slot.
enum Slot<'a, const W: usize> {
    /// Its key's bitmap in the flow's window (or a later one); `evicted`: a live slot of another
    /// key was taken over.
    Bits(&'a mut [u64; W], bool),
    /// Another key's slot in a later window: the flow is too old to take it.
    Stale,
}

impl<const W: usize> SketchTable<W> {
    fn new(n: usize) -> Self {
        Self {
            slots: vec![SketchSlot::default(); n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// The slot of hashed key `h` for a flow of `window` (see the module's rule for older
    /// windows).
    #[inline]
    fn slot(&mut self, h: u64, window: u32) -> Slot<'_, W> {
        let (i, tag) = place(h);
        let s = &mut self.slots[i & self.mask];
        if s.tag == tag && s.window >= window {
            return Slot::Bits(&mut s.bits, false);
        }
        if s.tag != 0 && s.window > window {
            return Slot::Stale;
        }
        let evicted = s.tag != 0 && s.window == window;
        *s = SketchSlot {
            tag,
            window,
            bits: [0; W],
        };
        Slot::Bits(&mut s.bits, evicted)
    }

    /// Loads the first and the last word of hashed key `h`'s slot (every cache line of a slot
    /// of up to two lines), so that a batch's misses overlap.
    #[inline]
    fn touch(&self, h: u64) -> u64 {
        let (i, _) = place(h);
        let s = &self.slots[i & self.mask];
        u64::from(s.tag) ^ s.bits[W - 1]
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

/// [`linear_count`] for every clear-bit count of an `m`-bit bitmap, computed once.
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
/// 0) that is `mix(low)`, since `mix(0) == 0`.
#[inline]
fn addr_word(a: u128) -> u64 {
    let hi = (a >> 64) as u64;
    mix((a as u64) ^ if hi == 0 { 0 } else { mix(hi) })
}

/// An address as a [`NewFlow`] holds it.
pub fn addr_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Hashes of a flow for the sketches: source, destination, destination port+protocol, and
/// source+port.
#[derive(Clone, Copy, Default)]
struct SpreadKeys {
    src: u64,
    dst: u64,
    port: u64,
    src_port: u64,
}

#[inline]
fn spread_keys(src: u128, dst: u128, dport: u16, proto: u8) -> SpreadKeys {
    let src = addr_word(src);
    let dst = addr_word(dst);
    // A full mix (linear counting assumes random bits: a multiplicative hash spreads sequential
    // ports too evenly and overstates the count).
    let port = mix(u64::from(dport) | u64::from(proto) << 16);
    SpreadKeys {
        src,
        dst,
        port,
        src_port: mix(src ^ port),
    }
}

/// The spread sketches of the appliance (all workers), owned by the inference side.
pub struct SpreadSketches {
    cfg: SpreadConfig,
    by_src: SketchTable<SRC_WORDS>,
    by_dst: SketchTable<ONE_WORDS>,
    by_src_port: SketchTable<ONE_WORDS>,
    /// Estimates of the per-source host and port bitmaps and of the one-line slots.
    hosts: Estimates,
    ports: Estimates,
    one: Estimates,
    flows: u64,
    evictions: u64,
    stale: u64,
}

impl std::fmt::Debug for SpreadSketches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpreadSketches")
            .field("cfg", &self.cfg)
            .field("flows", &self.flows)
            .field("evictions", &self.evictions)
            .finish_non_exhaustive()
    }
}

impl SpreadSketches {
    /// Allocates every table (`slots × 256` bytes).
    pub fn new(cfg: SpreadConfig) -> Result<Self, SpreadConfigError> {
        if !cfg.slots.is_power_of_two() || !(16..=1 << 20).contains(&cfg.slots) {
            return Err(SpreadConfigError::Slots(cfg.slots));
        }
        if cfg.window_us < 1_000_000 {
            return Err(SpreadConfigError::Window(cfg.window_us));
        }
        Ok(Self {
            cfg,
            by_src: SketchTable::new(cfg.slots),
            by_dst: SketchTable::new(cfg.slots),
            by_src_port: SketchTable::new(cfg.slots),
            hosts: Estimates::new(SRC_HOST_WORDS * 64),
            ports: Estimates::new((SRC_WORDS - SRC_HOST_WORDS) * 64),
            one: Estimates::new(ONE_WORDS * 64),
            flows: 0,
            evictions: 0,
            stale: 0,
        })
    }

    pub fn config(&self) -> SpreadConfig {
        self.cfg
    }

    /// Bytes held (fixed after construction).
    pub fn memory_bytes(&self) -> usize {
        self.by_src.slots.len() * size_of::<SketchSlot<SRC_WORDS>>()
            + 2 * self.by_dst.slots.len() * size_of::<SketchSlot<ONE_WORDS>>()
            + self.hosts.memory_bytes()
            + self.ports.memory_bytes()
            + self.one.memory_bytes()
    }

    /// New flows added so far.
    pub fn flows(&self) -> u64 {
        self.flows
    }

    /// Slots taken over by another key before their window ended.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Table updates skipped because the flow's window was older than another key's slot.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    #[inline]
    fn window(&self, tick: u64) -> u32 {
        (tick / self.cfg.window_us) as u32
    }

    /// One new flow: three slot updates (four bits).
    pub fn add(&mut self, f: &NewFlow) {
        self.add_keys(spread_keys(f.src, f.dst, f.dport, f.proto), f.tick);
    }

    /// [`Self::add`] of a flow whose keys are hashed already.
    fn add_keys(&mut self, k: SpreadKeys, tick: u64) {
        let window = self.window(tick);
        self.flows += 1;
        match self.by_src.slot(k.src, window) {
            Slot::Bits(b, e) => {
                let (hosts, ports) = b.split_at_mut(SRC_HOST_WORDS);
                set(hosts, bit_of(k.dst, (SRC_HOST_WORDS * 64) as u32));
                set(
                    ports,
                    bit_of(k.port, ((SRC_WORDS - SRC_HOST_WORDS) * 64) as u32),
                );
                self.evictions += u64::from(e);
            }
            Slot::Stale => self.stale += 1,
        }
        match self.by_dst.slot(k.dst, window) {
            Slot::Bits(b, e) => {
                set(b, bit_of(k.src, (ONE_WORDS * 64) as u32));
                self.evictions += u64::from(e);
            }
            Slot::Stale => self.stale += 1,
        }
        match self.by_src_port.slot(k.src_port, window) {
            Slot::Bits(b, e) => {
                set(b, bit_of(k.dst, (ONE_WORDS * 64) as u32));
                self.evictions += u64::from(e);
            }
            Slot::Stale => self.stale += 1,
        }
    }

    /// New flows, in order, [`APPLY_CHUNK`] at a time: the slots of a chunk are loaded first
    /// (independent loads: the cache misses overlap), then updated.
    pub fn apply(&mut self, flows: &[NewFlow]) {
        for chunk in flows.chunks(APPLY_CHUNK) {
            self.apply_chunk(chunk);
        }
    }

    #[inline]
    fn apply_chunk(&mut self, flows: &[NewFlow]) {
        let mut keys = [SpreadKeys::default(); APPLY_CHUNK];
        for (k, f) in keys.iter_mut().zip(flows) {
            *k = spread_keys(f.src, f.dst, f.dport, f.proto);
        }
        let keys = &keys[..flows.len()];
        let mut lines = 0;
        for k in keys {
            lines ^= self.by_src.touch(k.src)
                ^ self.by_dst.touch(k.dst)
                ^ self.by_src_port.touch(k.src_port);
        }
        std::hint::black_box(lines);
        for (k, f) in keys.iter().zip(flows) {
            self.add_keys(*k, f.tick);
        }
    }

    /// The spread of flow `key` in the window of `tick`: distinct destination hosts and ports
    /// of its source, destination hosts of its source on its destination port, sources of its
    /// destination. Each at least 1 (the flow itself; 1 also where a slot was taken over).
    pub fn estimate(&self, key: &FlowKey, tick: u64) -> Spread {
        let k = spread_keys(
            addr_u128(key.src),
            addr_u128(key.dst),
            key.dst_port,
            key.proto,
        );
        let window = self.window(tick);
        let (hosts, ports) = self.by_src.get(k.src, window).map_or((0, 0), |b| {
            let (h, p) = b.split_at(SRC_HOST_WORDS);
            (self.hosts.of(h), self.ports.of(p))
        });
        let on_port = self
            .by_src_port
            .get(k.src_port, window)
            .map_or(0, |b| self.one.of(b));
        let sources = self.by_dst.get(k.dst, window).map_or(0, |b| self.one.of(b));
        Spread {
            src_hosts: hosts.max(1),
            src_ports: ports.max(1),
            src_hosts_on_port: on_port.clamp(1, hosts.max(1)),
            dst_sources: sources.max(1),
            window_s: u32::try_from(self.cfg.window_us / 1_000_000).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests;
