//! Fragment tracking: lets the non-first fragments of an IP datagram follow the verdict of its
//! first fragment, without reassembling or buffering anything.
//!
//! **What it is.** A fixed-capacity table keyed by (source, destination, protocol, IP
//! identification / IPv6 fragment identification, VLAN). The first fragment (offset 0, more
//! fragments), which carries the transport header and so was classified like any packet, is
//! recorded with its flow key and the caller's verdict ([`FragTable::head`]). Each later
//! fragment looks the datagram up and gets the same flow key and verdict
//! ([`FragTable::follow`]). The byte ranges seen so far are kept to detect overlaps.
//!
//! **What it never does.** It never reassembles, never buffers or reorders a fragment, never
//! allocates after [`FragTable::new`], never reads a clock. A non-first fragment that arrives
//! before its first fragment is dropped (`fragment_no_head`): RFC-compliant senders emit
//! fragments in order, and the rare reordering costs one retransmission, while holding
//! fragments would give an attacker a memory pool to exhaust. (The issue text's "dropped after
//! a timeout" becomes "dropped at once", which bounds memory by the table alone.)
//!
//! **Invariants and the attacks they stop.**
//! * Tiny fragments (RFC 1858, RFC 3128, RFC 7112): a first fragment too short for the whole
//!   transport header and an IPv4 TCP fragment at offset 8 are already dropped by the parser
//!   (`tiny_fragment`); here a fragment with more following must carry a multiple of 8 bytes
//!   and at least 8 (`fragment_invalid`).
//! * Overlap (RFC 1858 overlapping fragments, RFC 5722 for IPv6): a fragment that overlaps or
//!   duplicates any byte range already seen of its datagram is dropped as `fragment_overlap`,
//!   and the datagram is poisoned: its remaining fragments are dropped too, so the receiver
//!   never gets a complete datagram whose contents depend on its reassembly policy.
//! * A datagram never extends past 65535 bytes (`fragment_oversize`, ping of death) nor past
//!   the end its last fragment declared (`fragment_invalid`).
//! * Capacity: a new datagram when every entry is live is `fragment_table_full` (fail closed);
//!   entries expire `timeout` ticks after their first fragment (no refresh, so insertion order
//!   is expiry order and one FIFO list serves as the timer). A datagram whose ranges become
//!   complete is released at once.
//!
//! **Design choices.** The index is the flow table's open-addressed `SlotIndex` with keyed
//! SipHash-1-3 (the key fields are attacker-chosen here too). Received ranges are at most
//! [`MAX_RANGES`] disjoint intervals per datagram, merged as they touch; in-order delivery
//! keeps exactly one. The verdict is generic (`V: Copy`), so the worker stores whatever it
//! derives from the classifier decision.

#[cfg(test)]
mod tests;

use septa_classifier::{Family, FlowKey};

use crate::drop::DropReason;
use crate::flow::hash::siphash13;
use crate::flow::index::SlotIndex;
use crate::parse::{Fragment, L3, MAX_IPV6_EXT_HEADERS, ParsedPacket};

const NIL: u32 = u32::MAX;
/// Disjoint received ranges tracked per datagram.
pub const MAX_RANGES: usize = 6;
/// Largest IP datagram (IPv4 total length; IPv6 payload without jumbograms).
const MAX_DATAGRAM: u32 = 65_535;

/// Fragment fields of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragInfo {
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    /// IPv4 protocol, or the IPv6 fragment header's next header.
    pub proto: u8,
    /// Byte offset of this fragment's data in the datagram.
    pub offset: u32,
    /// Data bytes in this fragment (after the IPv4 header / the IPv6 fragment header).
    pub len: u32,
    /// More fragments follow.
    pub more: bool,
}

/// The fragment fields of a parsed fragment (`pkt.fragment` is `First` or `NonFirst`), read
/// from the IPv4 header or the IPv6 fragment header. `None` for non-fragments.
pub fn fragment_info(pkt: &ParsedPacket, frame: &[u8]) -> Option<FragInfo> {
    if pkt.fragment == Fragment::None {
        return None;
    }
    let ip = frame.get(pkt.l3_offset..pkt.l3_end)?;
    match pkt.l3 {
        L3::Ipv4 => {
            let ihl = usize::from(*ip.first()? & 0x0f) * 4;
            let field = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            Some(FragInfo {
                id: u32::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?])),
                proto: *ip.get(9)?,
                offset: u32::from(field & 0x1fff) * 8,
                len: ip.len().checked_sub(ihl)? as u32,
                more: field & 0x2000 != 0,
            })
        }
        L3::Ipv6 => {
            // The parser validated the chain; walk it again to the fragment header.
            let mut next = *ip.get(6)?;
            let mut off = 40;
            for _ in 0..=MAX_IPV6_EXT_HEADERS {
                let len = match next {
                    44 => {
                        let h = ip.get(off..off + 8)?;
                        let field = u16::from_be_bytes([h[2], h[3]]);
                        return Some(FragInfo {
                            id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                            proto: h[0],
                            offset: u32::from(field & 0xfff8),
                            len: (ip.len() - off - 8) as u32,
                            more: field & 1 != 0,
                        });
                    }
                    0 | 43 | 60 => 8 + usize::from(*ip.get(off + 1)?) * 8,
                    51 => (usize::from(*ip.get(off + 1)?) + 2) * 4,
                    _ => return None,
                };
                next = *ip.get(off)?;
                off += len;
            }
            None
        }
        _ => None,
    }
}

/// Table sizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragConfig {
    /// Most datagrams tracked at once (`1 ..= 2^24`).
    pub capacity: usize,
    /// Ticks a datagram is tracked after its first fragment.
    pub timeout: u64,
}

impl FragConfig {
    /// `capacity` datagrams, tracked for 30 s (Linux's `ipfrag_time`).
    pub fn new(capacity: usize, ticks_per_second: u64) -> Self {
        FragConfig {
            capacity,
            timeout: 30 * ticks_per_second,
        }
    }
}

/// Invalid [`FragConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fragment table capacity must be in 1..=16777216, got {0}")]
pub struct FragConfigError(pub usize);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FragKey {
    src: u128,
    dst: u128,
    id: u32,
    proto: u8,
    family: Family,
    vlan: u16,
}

impl FragKey {
    fn of(pkt: &ParsedPacket, info: &FragInfo) -> Self {
        FragKey {
            src: pkt.key.src,
            dst: pkt.key.dst,
            id: info.id,
            proto: info.proto,
            family: pkt.key.family,
            vlan: pkt.key.vlan,
        }
    }

    fn words(&self) -> [u64; 5] {
        [
            self.src as u64,
            (self.src >> 64) as u64,
            self.dst as u64,
            (self.dst >> 64) as u64,
            u64::from(self.id)
                | u64::from(self.proto) << 32
                | u64::from(self.family as u8) << 40
                | u64::from(self.vlan) << 48,
        ]
    }
}

#[derive(Clone, Copy, Debug)]
struct FragEntry<V> {
    key: FragKey,
    flow: FlowKey,
    verdict: V,
    /// Received `[start, end)` byte ranges, sorted, disjoint, not touching.
    ranges: [(u32, u32); MAX_RANGES],
    nranges: u8,
    poisoned: bool,
    /// End of the datagram, once the last fragment was seen.
    total: Option<u32>,
    expires: u64,
    hash: u32,
    next: u32,
    prev: u32,
}

/// Event counts (single writer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragStats {
    /// Datagrams whose first fragment was recorded.
    pub heads: u64,
    /// Non-first fragments that followed a head.
    pub followed: u64,
    /// Datagrams released complete.
    pub completed: u64,
    /// Datagrams expired.
    pub expired: u64,
}

/// The table. See the module documentation.
pub struct FragTable<V> {
    entries: Box<[FragEntry<V>]>,
    index: SlotIndex,
    hash_key: [u64; 2],
    free_head: u32,
    /// Oldest live entry (FIFO by first fragment, which is expiry order).
    old_head: u32,
    old_tail: u32,
    len: usize,
    timeout: u64,
    stats: FragStats,
}

impl<V> std::fmt::Debug for FragTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragTable")
            .field("capacity", &self.entries.len())
            .field("len", &self.len)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<V> FragTable<V> {
    /// Heap bytes this table holds.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries) + self.index.bytes()
    }
}

impl<V: Copy + Default> FragTable<V> {
    /// Allocate a table (the only allocation it makes), hashing under `hash_key`.
    pub fn new(cfg: &FragConfig, hash_key: [u64; 2]) -> Result<Self, FragConfigError> {
        if cfg.capacity == 0 || cfg.capacity > 1 << 24 {
            return Err(FragConfigError(cfg.capacity));
        }
        let blank = FragEntry {
            key: FragKey::default(),
            flow: FlowKey::default(),
            verdict: V::default(),
            ranges: [(0, 0); MAX_RANGES],
            nranges: 0,
            poisoned: false,
            total: None,
            expires: 0,
            hash: 0,
            next: NIL,
            prev: NIL,
        };
        let mut entries = vec![blank; cfg.capacity].into_boxed_slice();
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = if i + 1 < cfg.capacity {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        Ok(FragTable {
            entries,
            index: SlotIndex::new(cfg.capacity),
            hash_key,
            free_head: 0,
            old_head: NIL,
            old_tail: NIL,
            len: 0,
            timeout: cfg.timeout,
            stats: FragStats::default(),
        })
    }

    /// Datagrams tracked.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing tracked?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most datagrams.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Event counts.
    pub fn stats(&self) -> &FragStats {
        &self.stats
    }

    fn hash(&self, key: &FragKey) -> u32 {
        let h = siphash13(self.hash_key, &key.words());
        (h ^ (h >> 32)) as u32
    }

    fn find(&self, key: &FragKey, hash: u32) -> Option<u32> {
        self.index
            .find(hash, |s| self.entries[s as usize].key == *key)
    }

    /// Record the first fragment of a datagram (`info.offset == 0`, `info.more`), classified by
    /// the caller as `flow` (normally `pkt.key` with `in_port` set) with `verdict`, which the
    /// later fragments will get.
    pub fn head(
        &mut self,
        pkt: &ParsedPacket,
        info: &FragInfo,
        flow: FlowKey,
        verdict: V,
        now: u64,
    ) -> Result<(), DropReason> {
        debug_assert!(info.offset == 0 && info.more, "not a first fragment");
        check_piece(info)?;
        let key = FragKey::of(pkt, info);
        let hash = self.hash(&key);
        if let Some(slot) = self.find(&key, hash) {
            // A second first fragment (duplicate or rewrite) overlaps the first.
            self.entries[slot as usize].poisoned = true;
            return Err(DropReason::FragmentOverlap);
        }
        if self.len == self.capacity() {
            let oldest = self.old_head;
            if self.entries[oldest as usize].expires > now {
                return Err(DropReason::FragmentTableFull);
            }
            self.release(oldest);
            self.stats.expired += 1;
        }
        let slot = self.free_head;
        let i = slot as usize;
        self.free_head = self.entries[i].next;
        let mut ranges = [(0, 0); MAX_RANGES];
        ranges[0] = (0, info.len);
        self.entries[i] = FragEntry {
            key,
            flow,
            verdict,
            ranges,
            nranges: 1,
            poisoned: false,
            total: None,
            expires: now.saturating_add(self.timeout),
            hash,
            next: NIL,
            prev: self.old_tail,
        };
        if self.old_tail != NIL {
            self.entries[self.old_tail as usize].next = slot;
        } else {
            self.old_head = slot;
        }
        self.old_tail = slot;
        self.index.insert(hash, slot);
        self.len += 1;
        self.stats.heads += 1;
        Ok(())
    }

    /// A non-first fragment: the flow key and verdict recorded from its first fragment, or the
    /// reason to drop it.
    pub fn follow(
        &mut self,
        pkt: &ParsedPacket,
        info: &FragInfo,
        now: u64,
    ) -> Result<(FlowKey, V), DropReason> {
        let key = FragKey::of(pkt, info);
        let hash = self.hash(&key);
        let Some(slot) = self.find(&key, hash) else {
            return Err(DropReason::FragmentNoHead);
        };
        let i = slot as usize;
        if self.entries[i].expires <= now {
            self.release(slot);
            self.stats.expired += 1;
            return Err(DropReason::FragmentNoHead);
        }
        if self.entries[i].poisoned {
            return Err(DropReason::FragmentOverlap);
        }
        let r = self.add_piece(i, info);
        if let Err(reason) = r {
            self.entries[i].poisoned = true;
            return Err(reason);
        }
        let e = &self.entries[i];
        let out = (e.flow, e.verdict);
        self.stats.followed += 1;
        if e.nranges == 1 && Some(e.ranges[0].1) == e.total && e.ranges[0].0 == 0 {
            self.release(slot);
            self.stats.completed += 1;
        }
        Ok(out)
    }

    fn add_piece(&mut self, i: usize, info: &FragInfo) -> Result<(), DropReason> {
        check_piece(info)?;
        let (start, end) = (info.offset, info.offset + info.len);
        let e = &mut self.entries[i];
        if !info.more {
            if e.total.is_some_and(|t| t != end) {
                return Err(DropReason::FragmentInvalid);
            }
            e.total = Some(end);
        }
        let n = usize::from(e.nranges);
        if let Some(t) = e.total
            && e.ranges[..n].iter().any(|r| r.1 > t)
        {
            return Err(DropReason::FragmentInvalid);
        }
        if e.total.is_some_and(|t| end > t) {
            return Err(DropReason::FragmentInvalid);
        }
        if e.ranges[..n].iter().any(|r| r.0 < end && start < r.1) {
            return Err(DropReason::FragmentOverlap);
        }
        // Insert sorted, then merge touching neighbours.
        let pos = e.ranges[..n].iter().position(|r| r.0 > start).unwrap_or(n);
        let touches_prev = pos > 0 && e.ranges[pos - 1].1 == start;
        let touches_next = pos < n && e.ranges[pos].0 == end;
        match (touches_prev, touches_next) {
            (true, true) => {
                e.ranges[pos - 1].1 = e.ranges[pos].1;
                e.ranges.copy_within(pos + 1..n, pos);
                e.nranges -= 1;
            }
            (true, false) => e.ranges[pos - 1].1 = end,
            (false, true) => e.ranges[pos].0 = start,
            (false, false) => {
                if n == MAX_RANGES {
                    return Err(DropReason::FragmentInvalid);
                }
                e.ranges.copy_within(pos..n, pos + 1);
                e.ranges[pos] = (start, end);
                e.nranges += 1;
            }
        }
        Ok(())
    }

    /// Forget datagrams whose timeout passed, oldest first, at most `budget`. Returns how many.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut n = 0;
        while n < budget
            && self.old_head != NIL
            && self.entries[self.old_head as usize].expires <= now
        {
            self.release(self.old_head);
            n += 1;
        }
        self.stats.expired += n as u64;
        n
    }

    fn release(&mut self, slot: u32) {
        let i = slot as usize;
        let (prev, next, hash) = (
            self.entries[i].prev,
            self.entries[i].next,
            self.entries[i].hash,
        );
        self.index.remove(hash, slot);
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.old_head = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        } else {
            self.old_tail = prev;
        }
        let e = &mut self.entries[i];
        e.prev = NIL;
        e.next = self.free_head;
        self.free_head = slot;
        self.len -= 1;
    }
}

/// Per-fragment checks that need no table state.
fn check_piece(info: &FragInfo) -> Result<(), DropReason> {
    if info.offset + info.len > MAX_DATAGRAM {
        return Err(DropReason::FragmentOversize);
    }
    if info.more && (info.len == 0 || !info.len.is_multiple_of(8)) {
        return Err(DropReason::FragmentInvalid);
    }
    Ok(())
}
