//! Open-addressed index from a 32-bit hash to a slot number, shared by the flow and fragment
//! tables.
//!
//! Linear probing over a power-of-two bucket array with at least twice as many buckets as
//! slots, so the load factor never exceeds 1/2 and a probe run always ends at an empty bucket
//! (expected probes: 1.5 on a hit, 2.5 on a miss). Deletion shifts later members of the run
//! back (no tombstones), so the table never degrades and never needs a rehash. A bucket packs
//! `hash << 32 | (slot + 1)`; 0 is empty. Storing the hash lets a probe skip most key
//! comparisons and lets deletion find each member's home bucket without rehashing keys.

/// The index. Allocated once in [`SlotIndex::new`], never resized.
#[derive(Debug)]
pub(crate) struct SlotIndex {
    buckets: Box<[u64]>,
    mask: usize,
}

impl SlotIndex {
    /// An index for up to `slots` entries (`1 ..= 2^30`).
    pub(crate) fn new(slots: usize) -> Self {
        let n = (slots.max(1) * 2).next_power_of_two();
        SlotIndex {
            buckets: vec![0u64; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// Bucket count.
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<u64>()
    }

    #[inline]
    fn home(&self, hash: u32) -> usize {
        hash as usize & self.mask
    }

    /// The slot of the first member with this hash for which `eq(slot)` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(hash);
        loop {
            let b = self.buckets[i];
            if b == 0 {
                return None;
            }
            if (b >> 32) as u32 == hash {
                let slot = (b as u32) - 1;
                if eq(slot) {
                    return Some(slot);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Add `slot` under `hash`. The caller keeps at most half the buckets used.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u32, slot: u32) {
        let mut i = self.home(hash);
        while self.buckets[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = (u64::from(hash) << 32) | u64::from(slot + 1);
    }

    /// Remove `slot` (present under `hash`), shifting the rest of its probe run back.
    pub(crate) fn remove(&mut self, hash: u32, slot: u32) {
        let want = (u64::from(hash) << 32) | u64::from(slot + 1);
        let mut i = self.home(hash);
        loop {
            let b = self.buckets[i];
            if b == want {
                break;
            }
            if b == 0 {
                debug_assert!(false, "slot {slot} not in the index");
                return;
            }
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion: move each later member whose home lies cyclically at or
        // before the hole into it, until the run ends.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let b = self.buckets[j];
            if b == 0 {
                break;
            }
            let home = self.home((b >> 32) as u32);
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_hashes_survive_removal_in_any_order() {
        let mut ix = SlotIndex::new(8);
        // All eight share a home bucket, and wrap around the end of the array.
        let h = (ix.buckets() - 2) as u32;
        for s in 0..8 {
            ix.insert(h, s);
        }
        for s in [3, 0, 7, 5] {
            ix.remove(h, s);
            assert_eq!(ix.find(h, |x| x == s), None);
        }
        for s in [1, 2, 4, 6] {
            assert_eq!(ix.find(h, |x| x == s), Some(s));
        }
    }
}
