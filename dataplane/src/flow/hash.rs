//! The keyed hashes of the per-core tables.
//!
//! **Flow table: foldhash, keyed per table.** The flow table is indexed by header fields an
//! attacker chooses, so its hash must be keyed (an unkeyed hash lets precomputed colliding
//! 5-tuples pile into one probe run: hash flooding). It is also computed for every packet, so
//! it must be cheap: keyed SipHash-1-3 (nine rounds over five words, ~150 instructions) was the
//! largest single cost of the established-flow path. [`FlowHasher`] is foldhash's `fast`
//! variant (three 64×64→128-bit folded multiplies for a canonical key) with both of foldhash's
//! seeds drawn per table from the caller's 128-bit key (the worker draws it from the OS at
//! start-up, so no key is shared between cores or processes). foldhash makes no PRF claim; what
//! bounds a flood is that the key never leaves the worker and that collisions only lengthen one
//! worker's probe runs (the index stays at most half full). The fragment table, off the
//! per-packet fast path, keeps SipHash-1-3.
//!
//! **Fragment table: keyed SipHash-1-3** over a fixed number of 64-bit words (a PRF designed
//! for exactly this threat; the 1-3 round variant is the one the Rust standard library and the
//! Linux kernel settled on for table lookups). The input is a fixed-length word array, so the
//! byte-stream buffering of a general hasher is not needed.

use std::hash::Hasher;

use foldhash::SharedSeed;
use foldhash::fast::FoldHasher;

/// foldhash under a per-table key (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct FlowHasher {
    per_table: u64,
    shared: SharedSeed,
}

impl FlowHasher {
    /// A hasher keyed by `key` (draw it from a random source).
    pub(crate) fn new(key: [u64; 2]) -> Self {
        FlowHasher {
            per_table: key[0],
            shared: SharedSeed::from_u64(key[1]),
        }
    }

    /// The 32-bit hash of two 128-bit words and one 64-bit word (a canonical flow key).
    #[inline(always)]
    pub(crate) fn hash(&self, a: u128, b: u128, c: u64) -> u32 {
        let mut h = FoldHasher::with_seed(self.per_table, &self.shared);
        h.write_u128(a);
        h.write_u128(b);
        h.write_u64(c);
        let h = h.finish();
        (h ^ (h >> 32)) as u32
    }
}

/// One SipRound.
#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash with `C` compression and `D` finalisation rounds over `words` read as little-endian
/// bytes (so the result equals SipHash of the `8 * N` byte message).
#[inline(always)]
fn siphash<const C: usize, const D: usize, const N: usize>(key: [u64; 2], words: &[u64; N]) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    for &m in words {
        v[3] ^= m;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= m;
    }
    // Last block: message length in the top byte, no tail bytes (the length is a multiple of 8).
    let b = ((8 * N) as u64) << 56;
    v[3] ^= b;
    for _ in 0..C {
        round(&mut v);
    }
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// SipHash-1-3 of `words` under `key`.
#[inline]
pub fn siphash13<const N: usize>(key: [u64; 2], words: &[u64; N]) -> u64 {
    siphash::<1, 3, N>(key, words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    /// The round function and padding are checked against the standard library's SipHash-2-4
    /// (deprecated for hashing maps, still a faithful reference implementation).
    #[test]
    #[allow(deprecated)]
    fn matches_std_siphash24_on_whole_words() {
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        let words = [1u64, 0xdead_beef_cafe_f00d, u64::MAX, 0, 42];
        let mut std = std::hash::SipHasher::new_with_keys(key[0], key[1]);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std.write(&bytes);
        assert_eq!(siphash::<2, 4, 5>(key, &words), std.finish());
    }

    #[test]
    fn flow_hasher_key_changes_the_hash() {
        let (a, b) = (1u128 << 100 | 7, 42u128);
        let one = FlowHasher::new([1, 2]);
        assert_eq!(one.hash(a, b, 3), FlowHasher::new([1, 2]).hash(a, b, 3));
        assert_ne!(one.hash(a, b, 3), FlowHasher::new([1, 3]).hash(a, b, 3));
        assert_ne!(one.hash(a, b, 3), FlowHasher::new([2, 2]).hash(a, b, 3));
        assert_ne!(one.hash(a, b, 3), one.hash(a, b, 4));
        assert_ne!(one.hash(a, b, 3), one.hash(b, a, 3));
    }

    #[test]
    fn key_changes_the_hash() {
        let words = [1u64, 2, 3, 4, 5];
        assert_ne!(siphash13([1, 2], &words), siphash13([1, 3], &words));
        assert_eq!(siphash13([1, 2], &words), siphash13([1, 2], &words));
    }
}
