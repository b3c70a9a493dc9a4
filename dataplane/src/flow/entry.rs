//! The flow entry and the small types around it.

use septa_classifier::{Family, FlowKey};

use super::{TimeoutClass, Timeouts};

/// The worker's per-flow L7 and sampling slot: indices into per-worker side slabs (so the
/// entry does not carry the 64-byte stream state of the few inspected flows) and the
/// identified protocol. All zero for a new entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct L7Slot {
    /// Index + 1 of the flow's stream state in the worker's L7 slab; 0 = none.
    pub state: u32,
    /// Index + 1 of the flow's feature sample in the worker's sampler; 0 = not sampled.
    pub sample: u32,
    /// The identified application protocol (`septa_l7::L7Proto as u8`; 0 = not known).
    pub proto: u8,
    /// Payload-carrying packets identification has looked at (it gives up after a few).
    pub tries: u8,
}

/// Which way a packet goes, relative to the packet that created the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// Same direction as the flow's first packet.
    Original = 0,
    /// The other way.
    Reply = 1,
}

impl Direction {
    /// 0 for original, 1 for reply (index into per-direction arrays).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The opposite direction.
    #[inline]
    pub const fn reverse(self) -> Self {
        match self {
            Direction::Original => Direction::Reply,
            Direction::Reply => Direction::Original,
        }
    }
}

/// The policy decision cached in a flow entry. The classifier's decision is mapped into it by
/// the worker; `epoch` is the epoch of the rule table that produced it (rule-table epochs start
/// at 1, so epoch 0 means "not classified yet").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct CachedDecision {
    /// Epoch of the producing rule table; 0 = none.
    pub epoch: u64,
    /// Matching rule id (`u32::MAX` for the default action, by the worker's convention).
    pub rule: u32,
    /// L7 hook for an inspect action, 0 otherwise.
    pub hook: u32,
    /// Action code (the worker's mapping of the classifier action).
    pub action: u8,
    /// Mode code (enforce/monitor).
    pub mode: u8,
    /// The rule's policy-clause back-reference (`u64::MAX` for none, by the worker's convention).
    pub source: u64,
}

impl CachedDecision {
    /// Was this decision made by the rule table of `epoch`?
    #[inline]
    pub const fn is_current(&self, epoch: u64) -> bool {
        self.epoch != 0 && self.epoch == epoch
    }
}

/// Handle to a live entry. Valid until that entry is removed (by [`FlowTable::remove`],
/// [`FlowTable::expire`] or an eviction in [`FlowTable::insert`]); use it within the processing
/// of one packet and look the flow up again for the next.
///
/// [`FlowTable::remove`]: super::FlowTable::remove
/// [`FlowTable::expire`]: super::FlowTable::expire
/// [`FlowTable::insert`]: super::FlowTable::insert
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId(pub(super) u32);

impl FlowId {
    /// The slot number (dense, `< capacity`), e.g. for per-flow side arrays.
    #[inline]
    pub const fn slot(self) -> usize {
        self.0 as usize
    }
}

/// One flow. The index fields are private; state, decision and the L7 slot are the caller's.
///
/// **Layout** (`repr(C)`, 8-byte aligned, 200 bytes with the conntrack state): the fields an
/// established flow's packet reads or writes (key, visit time, direction flag, timeout class,
/// cached decision, last seen, counters, state, half-open flag) come first, in 160 contiguous
/// bytes; the timer and half-open links, the L7 slot and first-seen follow. The key is stored
/// as five words (addresses split in halves, then ports/protocol/family/VLAN), so an entry is
/// 8-byte aligned (no padding to 16) and a probe compares five words.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct FlowEntry<S> {
    pub(super) key: KeyWords,
    /// Slot time (slot units, low 32 bits) at which the wheel visits the entry: within one
    /// revolution of the cursor when linked, so wrapping comparisons on it are exact.
    pub(super) sched: u32,
    pub(super) orig_in_port: u16,
    pub(super) orig_swapped: bool,
    pub(super) class: TimeoutClass,
    /// Cached policy decision.
    pub decision: CachedDecision,
    /// Tick of the latest packet. The expiry is not stored: it is always
    /// `last_seen + timeouts.get(class)` (saturating), see [`FlowEntry::expires_with`].
    pub(super) last_seen: u64,
    pub(super) packets: [u64; 2],
    pub(super) bytes: [u64; 2],
    /// Connection-tracking state.
    pub state: S,
    pub(super) embryonic: bool,
    pub(super) live: bool,
    /// The worker's L7 and sampling slot.
    pub l7: L7Slot,
    pub(super) hash: u32,
    pub(super) wheel_next: u32,
    pub(super) wheel_prev: u32,
    pub(super) half_next: u32,
    pub(super) half_prev: u32,
    pub(super) first_seen: u64,
}

/// A canonical key as an entry stores it: source and destination address (low, then high 64
/// bits each) and the tail word (ports, protocol, family, VLAN; see `flow::key_tail`).
pub(super) type KeyWords = [u64; 5];

/// The canonical key `w` holds (`in_port` 0).
pub(super) fn key_from_words(w: &KeyWords) -> FlowKey {
    let t = w[4];
    FlowKey {
        src: u128::from(w[0]) | u128::from(w[1]) << 64,
        dst: u128::from(w[2]) | u128::from(w[3]) << 64,
        sport: t as u16,
        dport: (t >> 16) as u16,
        proto: (t >> 32) as u8,
        family: if (t >> 40) as u8 == Family::V6 as u8 {
            Family::V6
        } else {
            Family::V4
        },
        vlan: (t >> 48) as u16,
        in_port: 0,
    }
}

impl<S> FlowEntry<S> {
    /// The key of the flow's first packet (originator → responder), `in_port` included.
    pub fn key(&self) -> FlowKey {
        let k = key_from_words(&self.key);
        let mut k = if self.orig_swapped { k.reversed() } else { k };
        k.in_port = self.orig_in_port;
        k
    }

    /// Port the first packet arrived on.
    pub const fn orig_in_port(&self) -> u16 {
        self.orig_in_port
    }

    /// Packets seen in `dir`.
    pub const fn packets(&self, dir: Direction) -> u64 {
        self.packets[dir.index()]
    }

    /// Bytes seen in `dir`.
    pub const fn bytes(&self, dir: Direction) -> u64 {
        self.bytes[dir.index()]
    }

    /// Tick of the first packet.
    pub const fn first_seen(&self) -> u64 {
        self.first_seen
    }

    /// The hash of its key in its table (see [`super::Before::hash`]).
    pub const fn key_hash(&self) -> u32 {
        self.hash
    }

    /// Tick of the latest packet.
    pub const fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// Tick at which the flow expires unless refreshed, under `timeouts` (the table's: see
    /// [`FlowTable::expires`](super::FlowTable::expires)).
    #[inline]
    pub fn expires_with(&self, timeouts: &Timeouts) -> u64 {
        self.last_seen.saturating_add(timeouts.get(self.class))
    }

    /// The timeout class in force.
    pub const fn timeout_class(&self) -> TimeoutClass {
        self.class
    }

    /// Still half-open (evictable)?
    pub const fn is_embryonic(&self) -> bool {
        self.embryonic
    }
}
