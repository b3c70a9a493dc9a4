//! The per-core flow table: one entry per connection, both directions, preallocated.
//!
//! **What it is.** A fixed-capacity table from a canonical bidirectional [`FlowKey`] to a
//! [`FlowEntry`]: connection state (generic `S`, the conntrack state in production), the cached
//! policy decision with the epoch of the rule table that produced it, packet and byte counters
//! per direction, first/last-seen ticks and an opaque L7 slot. It also runs the flows' idle
//! timers (a timer wheel) and keeps the half-open flows in insertion order for eviction.
//!
//! **What it never does.** It never allocates after [`FlowTable::new`] (entries, index, wheel
//! and lists are arrays sized from the configuration; links are `u32` slot numbers), never reads
//! a clock (every call that needs time takes the caller's monotonic `now` tick), never locks
//! (one table per worker core: symmetric RSS keeps both directions on one core), never logs.
//!
//! **Invariants.**
//! * `len() <= capacity()`; at most half of the index buckets are used, so every probe ends.
//! * Both directions of a connection find the same entry: the key is stored with its two
//!   endpoints ordered (`(src, sport) <= (dst, dport)`, `in_port` cleared), and each lookup
//!   reports the packet's [`Direction`] relative to the flow's originator.
//! * Every live entry is on exactly one wheel slot list; an entry is on the half-open list iff
//!   it is embryonic (inserted and not yet [`FlowTable::mark_established`]).
//! * Established entries are never evicted. When the table is full, or the half-open cap is
//!   reached, an insert evicts the *oldest* half-open entry; if there is none the insert fails
//!   with [`FlowTableFull`] (the caller drops the packet as `flow_table_full`: fail closed).
//!
//! **Design choices.**
//! * Entries live in a slab (`Box<[FlowEntry]>` plus a free list); the index is a separate
//!   open-addressed array of `(hash, slot)` words (`flow/index.rs`). Lookups touch one or two index
//!   words and one entry; removal shifts the probe run back, so there are no tombstones.
//! * Hash: foldhash keyed per table from the caller's key (`flow/hash.rs` says why).
//! * Lookups can be split in two steps for a burst: [`FlowTable::hash_key`] (canonicalise and
//!   hash) for every packet, then [`FlowTable::find_hashed`] for every packet, so the index loads
//!   of a burst are independent of each other and overlap in the CPU.
//! * Timers: a single-level wheel of `wheel_slots` lists, each `2^wheel_shift` ticks wide.
//!   Refreshing a flow on a packet only stores its last-seen tick and timeout class (lazy; the
//!   expiry is derived from them, not stored); when the wheel reaches the slot, an entry that
//!   has been refreshed is moved to the slot of its new expiry. Only a refresh that *shortens*
//!   the expiry (e.g. established → closed) relinks eagerly. Timeouts longer than one wheel
//!   revolution are handled by the same re-slotting, once per revolution. An entry keeps the
//!   slot time of its visit in 32 bits, compared with wrapping arithmetic (it is always within
//!   a revolution of the cursor), which is why the wheel has at most [`MAX_WHEEL_SLOTS`] slots.
//! * Expiry work is bounded per call ([`FlowTable::expire`] takes a budget), so the worker can
//!   call it once per burst without a latency spike.
//! * Interim reports of live flows come from a separate, read-only sweep over the slab
//!   ([`UpdateSweep`], `flow/sweep.rs`): time-driven and budgeted like expiry, and it needs no
//!   field in the entry (it compares `last_seen` with the due time of the slot's last visit).

mod entry;
pub(crate) mod hash;
pub(crate) mod index;
mod sweep;
mod timeout;
mod wheel;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use septa_classifier::FlowKey;

use crate::counters::{PublishTimer, PublishedWords};
use crate::drop::DropReason;
use entry::KeyWords;
pub use entry::{CachedDecision, Direction, FlowEntry, FlowId, L7Slot};
use hash::FlowHasher;
use index::SlotIndex;
pub use sweep::UpdateSweep;
pub use timeout::{TimeoutClass, Timeouts};

const NIL: u32 = u32::MAX;
/// Largest supported capacity (the index stores `slot + 1` in 32 bits and needs 2x buckets).
pub const MAX_CAPACITY: usize = 1 << 30;
/// Most timer-wheel slots (entries keep their visit time in 32 bits; see `visits_late`).
pub const MAX_WHEEL_SLOTS: usize = 1 << 30;

/// Table sizing and timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTableConfig {
    /// Most flows (`1 ..= MAX_CAPACITY`).
    pub capacity: usize,
    /// Most half-open flows; reaching it evicts the oldest half-open flow on insert (SYN-flood
    /// cap). `capacity` disables the cap beyond "table full".
    pub max_half_open: usize,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Wheel slot width is `2^wheel_shift` ticks.
    pub wheel_shift: u32,
    /// Number of wheel slots (a power of two, at most [`MAX_WHEEL_SLOTS`]).
    pub wheel_slots: usize,
}

impl FlowTableConfig {
    /// `capacity` flows, a half-open cap of a quarter of it, the nftables timeouts, and a wheel
    /// of 4096 slots of about 1/16 s each (one revolution ≈ 4 minutes).
    pub fn new(capacity: usize, ticks_per_second: u64) -> Self {
        let slot = (ticks_per_second / 16).max(1);
        FlowTableConfig {
            capacity,
            max_half_open: (capacity / 4).max(1),
            timeouts: Timeouts::nftables_defaults(ticks_per_second),
            // Round the slot width down to a power of two.
            wheel_shift: 63 - slot.leading_zeros(),
            wheel_slots: 4096,
        }
    }
}

/// Invalid [`FlowTableConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowConfigError {
    /// Capacity 0 or above [`MAX_CAPACITY`].
    #[error("flow table capacity must be in 1..={MAX_CAPACITY}, got {0}")]
    Capacity(usize),
    /// Half-open cap 0.
    #[error("flow table half-open cap must be at least 1")]
    HalfOpen,
    /// Wheel slots not a power of two or above [`MAX_WHEEL_SLOTS`], or shift ≥ 64.
    #[error(
        "timer wheel needs a power-of-two slot count up to {MAX_WHEEL_SLOTS} and a shift below 64"
    )]
    Wheel,
}

/// No room for a new flow and nothing evictable: drop the packet as
/// [`DropReason::FlowTableFull`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTableFull;

impl From<FlowTableFull> for DropReason {
    fn from(_: FlowTableFull) -> Self {
        DropReason::FlowTableFull
    }
}

impl fmt::Display for FlowTableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("flow table full")
    }
}

/// Result of [`FlowTable::lookup`]; valid while [`FlowTable::generation`] is unchanged.
#[derive(Clone, Copy, Debug)]
pub enum Lookup {
    /// The flow exists; the packet goes in `dir`.
    Hit {
        /// The entry.
        id: FlowId,
        /// Packet direction relative to the originator.
        dir: Direction,
    },
    /// No such flow; pass this to [`FlowTable::insert`] to create it without hashing again.
    Miss(Vacant),
}

/// A key that is not in the table, canonicalised and hashed (for the table that produced it).
#[derive(Clone, Copy, Debug)]
pub struct Vacant {
    key: KeyWords,
    in_port: u16,
    hash: u32,
    swapped: bool,
}

/// A successful insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// The new entry.
    pub id: FlowId,
    /// A half-open flow was evicted to make room.
    pub evicted: bool,
    /// The evicted flow's side-state slots (L7 stream, feature sample), which its owner must
    /// free: an eviction has no expiry callback. All zero when nothing was evicted.
    pub evicted_l7: L7Slot,
}

/// Table event counts (single writer: the owning worker; read them between bursts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTableStats {
    /// Flows inserted.
    pub inserted: u64,
    /// Flows removed by the caller.
    pub removed: u64,
    /// Flows expired by the timer wheel.
    pub expired: u64,
    /// Half-open flows evicted for a new flow.
    pub evicted_half_open: u64,
    /// Inserts refused (table full, nothing evictable).
    pub full: u64,
}

/// A flow table's counters and occupancy as another thread reads them
/// ([`SharedFlowTableStats::load`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTableSnapshot {
    /// Event counts.
    pub stats: FlowTableStats,
    /// Live flows.
    pub active: u64,
    /// Live half-open flows.
    pub half_open: u64,
    /// Most flows.
    pub capacity: u64,
}

/// Words of a [`FlowTableSnapshot`]: one cache line.
const SNAPSHOT_WORDS: usize = 8;

/// A flow table's [`FlowTableSnapshot`] as its owner last published it
/// ([`FlowTable::publish`]): relaxed atomics on a cache line of their own, never written per
/// packet. All zero before the first publication.
#[derive(Debug, Default)]
pub struct SharedFlowTableStats(PublishedWords<SNAPSHOT_WORDS>);

impl SharedFlowTableStats {
    /// The snapshot last published.
    pub fn load(&self) -> FlowTableSnapshot {
        let [
            inserted,
            removed,
            expired,
            evicted_half_open,
            full,
            active,
            half_open,
            capacity,
        ] = self.0.load();
        FlowTableSnapshot {
            stats: FlowTableStats {
                inserted,
                removed,
                expired,
                evicted_half_open,
                full,
            },
            active,
            half_open,
            capacity,
        }
    }
}

/// The table. See the module documentation.
pub struct FlowTable<S> {
    entries: Box<[FlowEntry<S>]>,
    index: SlotIndex,
    hasher: FlowHasher,
    free_head: u32,
    len: usize,
    half_head: u32,
    half_tail: u32,
    half_len: usize,
    max_half_open: usize,
    timeouts: Timeouts,
    wheel: Box<[u32]>,
    wheel_shift: u32,
    wheel_mask: u64,
    /// Next slot time (absolute, slot units) the wheel will process.
    cursor: u64,
    /// Entries detached from the slot being processed, still to visit.
    pending: u32,
    /// Bumped by every insert and removal: a [`Lookup`] made at the same generation is current.
    generation: u64,
    stats: FlowTableStats,
    /// Where [`FlowTable::publish`] copies `stats` and the occupancy for other threads.
    shared: Arc<SharedFlowTableStats>,
    publish_timer: PublishTimer,
}

impl<S> fmt::Debug for FlowTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("capacity", &self.entries.len())
            .field("len", &self.len)
            .field("half_open", &self.half_len)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The last hashed word of a canonical key: ports, protocol, family, VLAN.
#[inline(always)]
fn key_tail(k: &FlowKey) -> u64 {
    u64::from(k.sport)
        | u64::from(k.dport) << 16
        | u64::from(k.proto) << 32
        | u64::from(k.family as u8) << 40
        | u64::from(k.vlan) << 48
}

/// The words an entry stores for canonical key `k` (see `entry::KeyWords`).
#[inline(always)]
fn key_words(k: &FlowKey, tail: u64) -> KeyWords {
    [
        k.src as u64,
        (k.src >> 64) as u64,
        k.dst as u64,
        (k.dst >> 64) as u64,
        tail,
    ]
}

/// A key canonicalised and hashed by [`FlowTable::hash_key`], ready for
/// [`FlowTable::find_hashed`].
#[derive(Clone, Copy, Debug)]
pub struct HashedKey {
    key: KeyWords,
    hash: u32,
    swapped: bool,
}

/// Where a flow is, as [`FlowTable::find_hashed`] found it: compact (12 bytes), so a burst can
/// keep one per packet. Valid while [`FlowTable::generation`] is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    slot: u32,
    hash: u32,
    dir: Direction,
}

impl Located {
    /// The flow, if the key was found.
    #[inline]
    pub fn id(&self) -> Option<FlowId> {
        (self.slot != NIL).then_some(FlowId(self.slot))
    }

    /// Direction of the packet relative to the flow's originator (of a hit; `Original` for a
    /// miss: the packet would create the flow).
    #[inline]
    pub fn dir(&self) -> Direction {
        self.dir
    }
}

/// The canonical form of `key` (endpoints ordered, `in_port` cleared) and whether it was swapped.
#[inline]
pub fn canonical(key: &FlowKey) -> (FlowKey, bool) {
    // `(src, sport) > (dst, dport)`, spelled out: two flag-setting compares instead of the
    // tuple's `Ordering` chain.
    let swapped = key.src > key.dst || (key.src == key.dst && key.sport > key.dport);
    // Field by field (selects, no branch on the copy).
    let (src, dst) = if swapped {
        (key.dst, key.src)
    } else {
        (key.src, key.dst)
    };
    // The ports as one value, swapped by a rotation: a select between the two fields' loads
    // would become a load from a selected address, which keeps the caller's key (and the parse
    // result around it) in memory.
    let ports = u32::from(key.sport) | u32::from(key.dport) << 16;
    let ports = if swapped {
        ports.rotate_left(16)
    } else {
        ports
    };
    let (sport, dport) = (ports as u16, (ports >> 16) as u16);
    let k = FlowKey {
        src,
        dst,
        sport,
        dport,
        proto: key.proto,
        family: key.family,
        vlan: key.vlan,
        in_port: 0,
    };
    (k, swapped)
}

/// Would an entry whose expiry is in slot time `expires_slot` be visited by the wheel only
/// after it (at `sched`, the low 32 bits of its visit time)? Wrapping comparison: `sched` is
/// within one revolution (at most [`MAX_WHEEL_SLOTS`] slots) of the cursor and the expiry of a
/// refresh is not before the cursor's slot, so a true "yes" is never more than a revolution
/// apart; a far-future expiry that wraps can only answer "yes" wrongly, which costs one eager
/// relink and nothing else.
#[inline(always)]
fn visits_late(expires_slot: u64, sched: u32) -> bool {
    sched.wrapping_sub(expires_slot as u32) as i32 > 0
}

/// The flow as it was before the packet [`FlowTable::track`] is tracking, shown to its `update`
/// closure by reference (reading it costs nothing unless the closure does).
#[derive(Clone, Copy, Debug)]
pub struct Before<'a> {
    /// Packets `[original, reply]` before this one.
    pub packets: &'a [u64; 2],
    /// IP bytes `[original, reply]` before this one.
    pub bytes: &'a [u64; 2],
    /// Tick of the flow's first packet.
    pub first_seen: &'a u64,
    /// The key's hash in this table ([`FlowEntry::key_hash`]): with the slot and `first_seen`
    /// it tells the flow from a later one in the same slot.
    pub hash: &'a u32,
}

/// How a packet changed its flow, for [`FlowTable::track`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    /// Idle timeout to restart.
    pub class: TimeoutClass,
    /// The flow is established: it leaves the half-open list ([`FlowTable::mark_established`]).
    pub established: bool,
    /// The flow is half-open again ([`FlowTable::mark_embryonic`]); ignored if `established`.
    pub reopened: bool,
}

impl<S: Copy + Default> FlowTable<S> {
    /// Allocate a table for `cfg`, hashing under `hash_key` (draw it from a random source; see
    /// `flow/hash.rs`). The only allocation the table ever makes.
    pub fn new(cfg: &FlowTableConfig, hash_key: [u64; 2]) -> Result<Self, FlowConfigError> {
        if cfg.capacity == 0 || cfg.capacity > MAX_CAPACITY {
            return Err(FlowConfigError::Capacity(cfg.capacity));
        }
        if cfg.max_half_open == 0 {
            return Err(FlowConfigError::HalfOpen);
        }
        if !cfg.wheel_slots.is_power_of_two()
            || cfg.wheel_slots > MAX_WHEEL_SLOTS
            || cfg.wheel_shift >= 64
        {
            return Err(FlowConfigError::Wheel);
        }
        let blank = FlowEntry {
            key: [0; 5],
            state: S::default(),
            decision: CachedDecision::default(),
            l7: L7Slot::default(),
            packets: [0; 2],
            bytes: [0; 2],
            first_seen: 0,
            last_seen: 0,
            sched: 0,
            hash: 0,
            wheel_next: NIL,
            wheel_prev: NIL,
            half_next: NIL,
            half_prev: NIL,
            orig_in_port: 0,
            orig_swapped: false,
            embryonic: false,
            live: false,
            class: TimeoutClass::Other,
        };
        let mut entries = vec![blank; cfg.capacity].into_boxed_slice();
        // Free list threaded through `wheel_next`, lowest slot first.
        for (i, e) in entries.iter_mut().enumerate() {
            e.wheel_next = if i + 1 < cfg.capacity {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        Ok(FlowTable {
            entries,
            index: SlotIndex::new(cfg.capacity),
            hasher: FlowHasher::new(hash_key),
            free_head: 0,
            len: 0,
            half_head: NIL,
            half_tail: NIL,
            half_len: 0,
            max_half_open: cfg.max_half_open.min(cfg.capacity),
            timeouts: cfg.timeouts,
            wheel: vec![NIL; cfg.wheel_slots].into_boxed_slice(),
            wheel_shift: cfg.wheel_shift,
            wheel_mask: cfg.wheel_slots as u64 - 1,
            cursor: 0,
            pending: NIL,
            generation: 0,
            stats: FlowTableStats::default(),
            shared: Arc::default(),
            publish_timer: PublishTimer::default(),
        })
    }

    /// Heap bytes a table of `capacity` flows holds with `wheel_slots` wheel slots.
    pub fn memory_for(capacity: usize, wheel_slots: usize) -> usize {
        capacity * std::mem::size_of::<FlowEntry<S>>()
            + (capacity.max(1) * 2).next_power_of_two() * std::mem::size_of::<u64>()
            + wheel_slots * std::mem::size_of::<u32>()
    }

    /// Heap bytes this table holds.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries)
            + self.index.bytes()
            + std::mem::size_of_val(&*self.wheel)
    }

    /// Most flows.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No live flows?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live half-open flows.
    pub fn half_open_len(&self) -> usize {
        self.half_len
    }

    /// Event counts.
    pub fn stats(&self) -> &FlowTableStats {
        &self.stats
    }

    /// The counters and occupancy as other threads read them, published by [`Self::publish`].
    pub fn shared_stats(&self) -> Arc<SharedFlowTableStats> {
        Arc::clone(&self.shared)
    }

    /// Copies the event counts and the occupancy into [`Self::shared_stats`] when `interval`
    /// ticks have passed since the last time (the worker calls it once per poll: one
    /// comparison when not due). `now` is the caller's monotonic tick.
    #[inline]
    pub fn publish(&mut self, now: u64, interval: u64) {
        self.publish_due(now, interval);
    }

    /// [`Self::publish`] now, due or not (at stop: the counts of the last interval too).
    pub fn publish_now(&mut self, now: u64) {
        self.publish_timer.force();
        self.publish_due(now, 0);
    }

    #[inline]
    fn publish_due(&mut self, now: u64, interval: u64) {
        if self.publish_timer.due(now, interval) {
            let st = self.stats;
            self.shared.0.store(&[
                st.inserted,
                st.removed,
                st.expired,
                st.evicted_half_open,
                st.full,
                self.len as u64,
                self.half_len as u64,
                self.entries.len() as u64,
            ]);
        }
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Changes whenever a flow is inserted or removed; a [`Lookup`] taken at the current
    /// generation is still exact, so a burst can look its flows up once ahead of time.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Find the flow of a packet with `key` (either direction). `key.in_port` is ignored for
    /// matching; on a miss it is remembered as the originator's port.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Lookup {
        let h = self.hash_key(key);
        let at = self.find_hashed(&h);
        match at.id() {
            Some(id) => Lookup::Hit { id, dir: at.dir },
            None => Lookup::Miss(Vacant {
                key: h.key,
                in_port: key.in_port,
                hash: h.hash,
                swapped: h.swapped,
            }),
        }
    }

    /// First half of [`FlowTable::lookup`]: canonicalise and hash `key` (no table memory read).
    #[inline(always)]
    pub fn hash_key(&self, key: &FlowKey) -> HashedKey {
        let (ck, swapped) = canonical(key);
        let tail = key_tail(&ck);
        HashedKey {
            hash: self.hasher.hash(ck.src, ck.dst, tail),
            key: key_words(&ck, tail),
            swapped,
        }
    }

    /// Second half of [`FlowTable::lookup`]: probe the index for a hashed key.
    #[inline(always)]
    pub fn find_hashed(&self, h: &HashedKey) -> Located {
        // Canonical keys (`in_port` 0) are equal iff their stored words are: five word
        // comparisons without branches instead of one per field.
        let w = &h.key;
        let found = self.index.find(h.hash, |slot| {
            let k = &self.entries[slot as usize].key;
            ((k[0] ^ w[0]) | (k[1] ^ w[1]) | (k[2] ^ w[2]) | (k[3] ^ w[3]) | (k[4] ^ w[4])) == 0
        });
        match found {
            Some(slot) => Located {
                slot,
                hash: h.hash,
                dir: if h.swapped == self.entries[slot as usize].orig_swapped {
                    Direction::Original
                } else {
                    Direction::Reply
                },
            },
            None => Located {
                slot: NIL,
                hash: h.hash,
                dir: Direction::Original,
            },
        }
    }

    /// The [`Vacant`] of a `key` that [`FlowTable::find_hashed`] did not find at `at` (same
    /// generation), without hashing again. `None` if `at` is a hit.
    #[inline]
    pub fn vacant(&self, key: &FlowKey, at: &Located) -> Option<Vacant> {
        if at.slot != NIL {
            return None;
        }
        let (ck, swapped) = canonical(key);
        Some(Vacant {
            key: key_words(&ck, key_tail(&ck)),
            in_port: key.in_port,
            hash: at.hash,
            swapped,
        })
    }

    /// Create the flow that `lookup` missed, as half-open (embryonic), with `state`, timeout
    /// `class`, first/last seen = `now`. Evicts the oldest half-open flow if the table is full
    /// or the half-open cap is reached; fails if the table is full of established flows.
    ///
    /// `vacant` must come from this table's `lookup`, with no insert of the same key since.
    pub fn insert(
        &mut self,
        vacant: Vacant,
        state: S,
        class: TimeoutClass,
        now: u64,
    ) -> Result<Inserted, FlowTableFull> {
        let mut evicted = false;
        let mut evicted_l7 = L7Slot::default();
        if self.len == self.capacity() || self.half_len >= self.max_half_open {
            if self.half_head == NIL {
                self.stats.full += 1;
                return Err(FlowTableFull);
            }
            let victim = self.half_head;
            evicted_l7 = self.entries[victim as usize].l7;
            self.unlink_all(victim);
            self.stats.evicted_half_open += 1;
            evicted = true;
        }
        let slot = self.free_head;
        debug_assert!(slot != NIL, "free list empty with len < capacity");
        let i = slot as usize;
        self.free_head = self.entries[i].wheel_next;
        debug_assert!(
            self.index
                .find(vacant.hash, |s| self.entries[s as usize].key == vacant.key)
                .is_none(),
            "insert of a key already present"
        );
        self.entries[i] = FlowEntry {
            key: vacant.key,
            state,
            decision: CachedDecision::default(),
            l7: L7Slot::default(),
            packets: [0; 2],
            bytes: [0; 2],
            first_seen: now,
            last_seen: now,
            sched: 0,
            hash: vacant.hash,
            wheel_next: NIL,
            wheel_prev: NIL,
            half_next: NIL,
            half_prev: NIL,
            orig_in_port: vacant.in_port,
            orig_swapped: vacant.swapped,
            embryonic: true,
            live: true,
            class,
        };
        self.index.insert(vacant.hash, slot);
        self.wheel_link(slot);
        self.half_push(slot);
        self.len += 1;
        self.generation += 1;
        self.stats.inserted += 1;
        Ok(Inserted {
            id: FlowId(slot),
            evicted,
            evicted_l7,
        })
    }

    /// The entry of a live flow.
    #[inline]
    pub fn entry(&self, id: FlowId) -> &FlowEntry<S> {
        let e = &self.entries[id.slot()];
        debug_assert!(e.live, "stale FlowId");
        e
    }

    /// The entry of a live flow, mutably (state, decision, L7 slot).
    #[inline]
    pub fn entry_mut(&mut self, id: FlowId) -> &mut FlowEntry<S> {
        let e = &mut self.entries[id.slot()];
        debug_assert!(e.live, "stale FlowId");
        e
    }

    /// Tick at which a live flow expires unless refreshed (its last packet plus the timeout
    /// of its class; the entry does not store it).
    #[inline]
    pub fn expires(&self, id: FlowId) -> u64 {
        self.entry(id).expires_with(&self.timeouts)
    }

    /// Account a packet of `bytes` in `dir` at `now` and restart its idle timer with `class`.
    #[inline]
    pub fn touch(
        &mut self,
        id: FlowId,
        dir: Direction,
        bytes: usize,
        class: TimeoutClass,
        now: u64,
    ) {
        let timeout = self.timeouts.get(class);
        let e = &mut self.entries[id.slot()];
        debug_assert!(e.live, "stale FlowId");
        e.packets[dir.index()] += 1;
        e.bytes[dir.index()] += bytes as u64;
        e.last_seen = now;
        e.class = class;
        // Lazy when the expiry moves later; relink now when it moves before the slot it sits on.
        if visits_late(now.saturating_add(timeout) >> self.wheel_shift, e.sched) {
            self.wheel_unlink(id.0);
            self.wheel_link(id.0);
        }
    }

    /// One packet of `bytes` in `dir` at `now` for flow `id`, in one visit of its entry:
    /// `update` advances the flow's state (seeing the flow [`Before`] the packet) and says how
    /// ([`Refresh`]); on `Ok` the packet is
    /// accounted and the timer restarted as by [`Self::touch`], and the flow moved off or onto
    /// the half-open list as by [`Self::mark_established`] / [`Self::mark_embryonic`]. On `Err`
    /// nothing but what `update` did changes.
    #[inline(always)]
    pub fn track<E>(
        &mut self,
        id: FlowId,
        dir: Direction,
        bytes: usize,
        now: u64,
        update: impl FnOnce(&mut S, Before<'_>) -> Result<Refresh, E>,
    ) -> Result<Refresh, E> {
        let e = &mut self.entries[id.slot()];
        debug_assert!(e.live, "stale FlowId");
        let before = Before {
            packets: &e.packets,
            bytes: &e.bytes,
            first_seen: &e.first_seen,
            hash: &e.hash,
        };
        let r = update(&mut e.state, before)?;
        e.packets[dir.index()] += 1;
        e.bytes[dir.index()] += bytes as u64;
        e.last_seen = now;
        e.class = r.class;
        let relink = visits_late(
            now.saturating_add(self.timeouts.get(r.class)) >> self.wheel_shift,
            e.sched,
        );
        let to_half = if r.established {
            e.embryonic
        } else {
            r.reopened && !e.embryonic
        };
        if relink {
            self.wheel_unlink(id.0);
            self.wheel_link(id.0);
        }
        if to_half {
            if r.established {
                self.half_unlink(id.0);
            } else {
                self.entries[id.slot()].embryonic = true;
                self.half_push(id.0);
            }
        }
        Ok(r)
    }

    /// The flow completed its handshake (or saw a reply): it leaves the half-open list and can
    /// no longer be evicted.
    #[inline]
    pub fn mark_established(&mut self, id: FlowId) {
        if self.entries[id.slot()].embryonic {
            self.half_unlink(id.0);
        }
    }

    /// The flow is half-open again (a TCP connection reopened by a SYN after TIME_WAIT): it
    /// goes to the young end of the half-open list and becomes evictable.
    #[inline]
    pub fn mark_embryonic(&mut self, id: FlowId) {
        if !self.entries[id.slot()].embryonic {
            self.entries[id.slot()].embryonic = true;
            self.half_push(id.0);
        }
    }

    /// Remove a live flow.
    pub fn remove(&mut self, id: FlowId) {
        if self.entries[id.slot()].live {
            self.unlink_all(id.0);
            self.stats.removed += 1;
        }
    }

    /// Advance the timer wheel to `now`, removing flows idle past their timeout; `on_expire` sees
    /// each before it goes. Visits at most `budget` entries (and returns early when it runs out;
    /// the next call resumes). Returns the number of flows removed.
    pub fn expire(
        &mut self,
        now: u64,
        budget: usize,
        mut on_expire: impl FnMut(&FlowEntry<S>),
    ) -> usize {
        // Ticks beyond 2^62 (centuries of nanoseconds) are clamped so slot arithmetic cannot
        // overflow.
        let target = now.min(1 << 62) >> self.wheel_shift;
        let slots = self.wheel_mask + 1;
        // After a jump of more than one revolution, one pass over every slot sees every entry.
        if self.pending == NIL && target >= self.cursor + slots {
            self.cursor = target + 1 - slots;
        }
        let mut visited = 0;
        let mut removed = 0;
        loop {
            if self.pending == NIL {
                if self.cursor > target {
                    break;
                }
                let s = (self.cursor & self.wheel_mask) as usize;
                self.pending = std::mem::replace(&mut self.wheel[s], NIL);
                self.cursor += 1;
                continue;
            }
            if visited == budget {
                break;
            }
            visited += 1;
            let slot = self.pending;
            let i = slot as usize;
            self.pending = self.entries[i].wheel_next;
            if self.pending != NIL {
                self.entries[self.pending as usize].wheel_prev = NIL;
            }
            self.entries[i].wheel_next = NIL;
            self.entries[i].wheel_prev = NIL;
            if self.entries[i].expires_with(&self.timeouts) <= now {
                on_expire(&self.entries[i]);
                // Already off the wheel: only the index and the half-open list hold it.
                self.release(slot);
                self.stats.expired += 1;
                removed += 1;
            } else {
                self.wheel_link(slot);
            }
        }
        removed
    }
}
