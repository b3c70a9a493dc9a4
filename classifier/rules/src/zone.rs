//! Zone fast path: for policies shaped as (source zone × destination zone × service), a lookup is
//! two address lookups (source class, destination class) plus one small service table.
//!
//! The address space of each family is cut into elementary ranges at every prefix boundary; all
//! addresses of one range match exactly the same rules, so a range maps to a *class* (the set of
//! rules whose address condition holds there). This is longest-prefix match in range-table form:
//! the range containing an address is the one of its longest matching prefix. The pair
//! (source class, destination class) selects the rules that can still match; their (protocol,
//! destination port) conditions are precomputed into disjoint first-match intervals.

use std::collections::{BTreeMap, HashMap};

use crate::key::{Family, FlowKey};
use crate::rule::{AddrMatch, PortRange, Prefix, Rule};
use crate::tree::NO_MATCH;

/// Work limits past which the fast path is not worth it and the trees are used instead.
const MAX_MEMBERSHIP: usize = 4_000_000;
const MAX_CELLS: usize = 1 << 18;
const MAX_PAIR_WORK: usize = 24_000_000;
const MAX_SERVICE_WORK: usize = 4_000_000;
/// Distinct (source class, destination class) rule lists, each of which gets a service table.
const MAX_LISTS: usize = 16_384;
const _: () = assert!(MAX_LISTS <= 1 << 16, "cell lists are stored in 16 bits");
/// Larger rule lists are never zone policies in practice; the trees serve them.
const MAX_RULES: usize = 4096;

#[derive(Clone, Debug, Default)]
struct AddrMap<T> {
    /// Sorted starts of elementary ranges; the first is always 0.
    starts: Vec<T>,
    class: Vec<u32>,
}

impl<T: Ord + Copy> AddrMap<T> {
    #[inline]
    fn lookup(&self, a: T) -> u32 {
        self.class[last_at_most(&self.starts, a)]
    }
}

/// IPv4 address → class in at most three loads: strides of 16, 8 and 8 bits. An entry is a class,
/// or (`CHUNK` set) the index of a 256-entry chunk of the next level. Entries are 16 bits (the
/// top level is 128 KiB); maps whose classes or chunks do not fit are not built.
#[derive(Clone, Debug, Default)]
struct StrideMap {
    top: Vec<u16>,
    chunks: Vec<u16>,
}

const CHUNK: u16 = 1 << 15;

impl StrideMap {
    fn build(m: &AddrMap<u32>) -> Option<StrideMap> {
        if m.class.iter().any(|&c| c >= u32::from(CHUNK)) {
            return None;
        }
        let mut t = StrideMap {
            top: Vec::with_capacity(1 << 16),
            chunks: Vec::new(),
        };
        // `j`: the range holding the block's first address (starts are sorted, blocks ascend).
        let mut j = 0;
        for block in 0u32..1 << 16 {
            let (lo, hi) = (block << 16, (block << 16) | 0xffff);
            while j + 1 < m.starts.len() && m.starts[j + 1] <= lo {
                j += 1;
            }
            let e = if j + 1 < m.starts.len() && m.starts[j + 1] <= hi {
                t.entry(m, lo, 16)?
            } else {
                // Fits: checked above.
                m.class[j] as u16
            };
            t.top.push(e);
        }
        Some(t)
    }

    /// The entry for the aligned block of `2^bits` addresses at `lo`.
    fn entry(&mut self, m: &AddrMap<u32>, lo: u32, bits: u32) -> Option<u16> {
        let hi = lo | ((1u32 << bits) - 1);
        let first = last_at_most(&m.starts, lo);
        if first + 1 >= m.starts.len() || m.starts[first + 1] > hi {
            // Fits: `build` checked every class.
            return Some(m.class[first] as u16);
        }
        // Several classes inside: a chunk of 256 sub-blocks.
        let sub = bits - 8;
        let at = self.chunks.len();
        self.chunks.resize(at + 256, 0);
        for i in 0..256u32 {
            let e = self.entry(m, lo | (i << sub), sub)?;
            self.chunks[at + i as usize] = e;
        }
        let index = u16::try_from(at / 256).ok().filter(|&i| i < CHUNK)?;
        Some(CHUNK | index)
    }

    #[inline(always)]
    fn lookup(&self, a: u32) -> u32 {
        let mut e = self.top[(a >> 16) as usize];
        if e & CHUNK != 0 {
            e = self.chunks[usize::from(e & !CHUNK) * 256 + ((a >> 8) & 0xff) as usize];
            if e & CHUNK != 0 {
                e = self.chunks[usize::from(e & !CHUNK) * 256 + (a & 0xff) as usize];
            }
        }
        u32::from(e)
    }
}

/// Index of the last element `<= x` in sorted `s`, whose first element is `<= x`. Branch-free
/// (the compiler emits conditional moves), so a burst of lookups does not stall on mispredicts.
#[inline(always)]
fn last_at_most<T: Ord + Copy>(s: &[T], x: T) -> usize {
    let mut base = 0usize;
    let mut len = s.len();
    while len > 1 {
        let half = len / 2;
        base += usize::from(s[base + half] <= x) * half;
        len -= half;
    }
    base
}

/// The compiled fast path.
#[derive(Clone, Debug)]
pub(crate) struct ZoneTable {
    src4: StrideMap,
    dst4: StrideMap,
    src6: AddrMap<u128>,
    dst6: AddrMap<u128>,
    n_dst: usize,
    /// `cells[src_class * n_dst + dst_class]`: the cell list (index of a service table), 16 bits
    /// because there are at most [`MAX_LISTS`].
    cells: Vec<u16>,
    /// Per service table: offset and length in `svc_starts` / `svc_rules`. `svc_rules[i]` is the
    /// offset in `cands` of the interval's candidates: a count, then (rule, source port range
    /// packed `lo << 16 | hi`) pairs in priority order, ending at the first rule whose source
    /// ports are "any" (zone policies: exactly one candidate).
    svc: Vec<(u32, u32)>,
    /// Interval starts over `proto << 16 | dport`.
    svc_starts: Vec<u32>,
    svc_rules: Vec<u32>,
    cands: Vec<u32>,
    /// Service classes (when the cross product fits its budget): `svc_class` maps
    /// `(proto << 16 | dport) << 8` to a class, and `pairs[list * n_svc + class]` is the answer
    /// for that cell list and service: [`NO_MATCH`], `DIRECT | rule` when one rule with "any"
    /// source port decides, else the offset of its candidates in `cands`. Empty otherwise, and
    /// the per-list service tables above are searched instead.
    svc_class: StrideMap,
    n_svc: usize,
    pairs: Vec<u32>,
}

/// Marks a [`ZoneTable::pairs`] entry that is a rule index rather than an offset in `cands`.
const DIRECT: u32 = 1 << 31;
/// Largest cross product of cell lists and service classes (entries of `pairs`, 4 bytes each),
/// and the bitset work allowed to fill it.
const MAX_PAIRS: usize = 1 << 20;
const MAX_PAIRS_WORK: usize = 48_000_000;

fn zone_shaped(r: &Rule) -> bool {
    r.vlan.is_none() && r.in_port.is_none()
}

struct Classes {
    ids: BTreeMap<Vec<u32>, u32>,
    work: usize,
}

impl Classes {
    /// Elementary ranges of one family's address condition and the class of each.
    fn map(
        &mut self,
        rules: &[Rule],
        f: Family,
        pick: impl Fn(&Rule) -> &AddrMatch,
    ) -> Option<(Vec<u128>, Vec<u32>)> {
        let (_, fam_hi) = match f {
            Family::V4 => (0u128, u128::from(u32::MAX)),
            Family::V6 => (0, u128::MAX),
        };
        let ranges = |m: &AddrMatch| -> Vec<(u128, u128)> {
            match m {
                AddrMatch::Any => vec![(0, fam_hi)],
                AddrMatch::Prefixes(ps) => ps
                    .iter()
                    .filter(|p| p.family == f)
                    .map(Prefix::range)
                    .collect(),
            }
        };
        let mut starts = vec![0u128];
        for r in rules {
            for (lo, hi) in ranges(pick(r)) {
                starts.push(lo);
                if hi < fam_hi {
                    starts.push(hi + 1);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); starts.len()];
        for (i, r) in rules.iter().enumerate() {
            for (lo, hi) in ranges(pick(r)) {
                let a = starts.partition_point(|&s| s < lo);
                let b = starts.partition_point(|&s| s <= hi);
                self.work += b - a;
                if self.work > MAX_MEMBERSHIP {
                    return None;
                }
                for m in &mut members[a..b] {
                    // Several prefixes of one rule may cover the same range.
                    if m.last() != Some(&(i as u32)) {
                        m.push(i as u32);
                    }
                }
            }
        }
        let mut class = Vec::with_capacity(members.len());
        for m in members {
            let n = self.ids.len() as u32;
            class.push(*self.ids.entry(m).or_insert(n));
        }
        Some((starts, class))
    }
}

fn merge<T: Copy>(starts: Vec<T>, class: Vec<u32>) -> AddrMap<T> {
    let mut m = AddrMap {
        starts: Vec::new(),
        class: Vec::new(),
    };
    for (s, c) in starts.into_iter().zip(class) {
        if m.class.last() != Some(&c) {
            m.starts.push(s);
            m.class.push(c);
        }
    }
    m
}

fn v4_map(starts: Vec<u128>, class: Vec<u32>) -> AddrMap<u32> {
    // Truncation is intended: IPv4 starts are below 2^32.
    merge(starts.into_iter().map(|s| s as u32).collect(), class)
}

impl ZoneTable {
    /// The fast path for `rules`, or `None` when they are not zone-shaped or too large for it.
    pub fn build(rules: &[Rule]) -> Option<ZoneTable> {
        Self::build_with(rules, true)
    }

    /// [`ZoneTable::build`]; `cross` false skips the service-class cross product and always uses
    /// the per-list service tables (what a cross product over its budget falls back to).
    fn build_with(rules: &[Rule], cross: bool) -> Option<ZoneTable> {
        if rules.len() > MAX_RULES || !rules.iter().all(zone_shaped) {
            return None;
        }
        let mut src = Classes {
            ids: BTreeMap::new(),
            work: 0,
        };
        let (s4, c4) = src.map(rules, Family::V4, |r| &r.src)?;
        let (s6, c6) = src.map(rules, Family::V6, |r| &r.src)?;
        let mut dst = Classes {
            ids: BTreeMap::new(),
            work: 0,
        };
        let (d4, e4) = dst.map(rules, Family::V4, |r| &r.dst)?;
        let (d6, e6) = dst.map(rules, Family::V6, |r| &r.dst)?;
        let (n_src, n_dst) = (src.ids.len(), dst.ids.len());
        if n_src.checked_mul(n_dst)? > MAX_CELLS {
            return None;
        }
        let mut src_sets = vec![Vec::new(); n_src];
        for (set, id) in src.ids {
            src_sets[id as usize] = set;
        }
        let mut dst_sets = vec![Vec::new(); n_dst];
        for (set, id) in dst.ids {
            dst_sets[id as usize] = set;
        }
        // Cell lists are intersections of a source and a destination class, done on bitsets.
        let words = rules.len().div_ceil(64).max(1);
        if n_src.saturating_mul(n_dst).saturating_mul(words) > MAX_PAIR_WORK {
            return None;
        }
        let bits = |set: &[u32]| {
            let mut b = vec![0u64; words];
            for &r in set {
                b[r as usize / 64] |= 1 << (r % 64);
            }
            b
        };
        let src_bits: Vec<Vec<u64>> = src_sets.iter().map(|s| bits(s)).collect();
        let dst_bits: Vec<Vec<u64>> = dst_sets.iter().map(|d| bits(d)).collect();
        // Ids are handed out in insertion order and every list lands at its id below, so the
        // hash order cannot leak into the table.
        let mut lists: HashMap<Vec<u64>, u32> = HashMap::with_capacity(1024);
        let mut cells = Vec::with_capacity(n_src * n_dst);
        let mut both = vec![0u64; words];
        for s in &src_bits {
            for d in &dst_bits {
                for ((o, a), b) in both.iter_mut().zip(s).zip(d) {
                    *o = a & b;
                }
                let n = lists.len() as u32;
                let id = match lists.get(&both) {
                    Some(&id) => id,
                    None if lists.len() >= MAX_LISTS => return None,
                    None => {
                        lists.insert(both.clone(), n);
                        n
                    }
                };
                // Fits: ids stay below MAX_LISTS.
                cells.push(id as u16);
            }
        }
        let mut by_id = vec![Vec::new(); lists.len()];
        let mut list_bits = vec![Vec::new(); lists.len()];
        for (l, id) in lists {
            let mut list = Vec::new();
            for (w, &word) in l.iter().enumerate() {
                let mut word = word;
                while word != 0 {
                    list.push((w * 64) as u32 + word.trailing_zeros());
                    word &= word - 1;
                }
            }
            by_id[id as usize] = list;
            list_bits[id as usize] = l;
        }
        let mut t = ZoneTable {
            src4: StrideMap::build(&v4_map(s4, c4))?,
            dst4: StrideMap::build(&v4_map(d4, e4))?,
            src6: merge(s6, c6),
            dst6: merge(d6, e6),
            n_dst,
            cells,
            svc: Vec::with_capacity(by_id.len()),
            svc_starts: Vec::new(),
            svc_rules: Vec::new(),
            cands: Vec::new(),
            svc_class: StrideMap::default(),
            n_svc: 0,
            pairs: Vec::new(),
        };
        if cross && t.service_classes(rules, &list_bits, words).is_some() {
            return Some(t);
        }
        t.cands.clear();
        t.pairs.clear();
        let mut budget = MAX_SERVICE_WORK;
        for l in &by_id {
            let off = t.svc_starts.len() as u32;
            service_table(rules, l, &mut t, &mut budget)?;
            t.svc.push((off, t.svc_starts.len() as u32 - off));
        }
        Some(t)
    }

    /// Fills `svc_class`, `pairs` and `cands` (the cross product of cell lists and service
    /// classes); `None` when it exceeds its budget.
    fn service_classes(&mut self, rules: &[Rule], lists: &[Vec<u64>], words: usize) -> Option<()> {
        let ivs: Vec<Vec<(u32, u32)>> = rules.iter().map(service_intervals).collect();
        let mut starts = vec![0u32];
        for iv in &ivs {
            for &(lo, hi) in iv {
                starts.push(lo);
                if hi < (1 << 24) - 1 {
                    starts.push(hi + 1);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut members = vec![vec![0u64; words]; starts.len()];
        let mut work = 0usize;
        for (i, iv) in ivs.iter().enumerate() {
            for &(lo, hi) in iv {
                let a = starts.partition_point(|&s| s < lo);
                let b = starts.partition_point(|&s| s <= hi);
                work += b - a;
                if work > MAX_MEMBERSHIP {
                    return None;
                }
                for m in &mut members[a..b] {
                    m[i / 64] |= 1 << (i % 64);
                }
            }
        }
        // Classes in order of first appearance (deterministic); ranges with equal rule sets merge.
        let mut ids: HashMap<&[u64], u32> = HashMap::new();
        let mut classes: Vec<&[u64]> = Vec::new();
        let mut map = AddrMap {
            starts: Vec::new(),
            class: Vec::new(),
        };
        for (&start, m) in starts.iter().zip(&members) {
            let id = *ids.entry(m.as_slice()).or_insert_with(|| {
                classes.push(m.as_slice());
                (classes.len() - 1) as u32
            });
            if map.class.last() != Some(&id) {
                // Service values are below 2^24, so the shifted start fits in 32 bits.
                map.starts.push(start << 8);
                map.class.push(id);
            }
        }
        let n_svc = classes.len();
        let cells = lists.len().checked_mul(n_svc)?;
        if cells > MAX_PAIRS || cells.saturating_mul(words) > MAX_PAIRS_WORK {
            return None;
        }
        self.svc_class = StrideMap::build(&map)?;
        self.n_svc = n_svc;
        self.pairs = Vec::with_capacity(cells);
        // Candidate lists are shared; offsets are handed out in first-use order.
        let mut offsets: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut cand = Vec::new();
        for l in lists {
            for c in &classes {
                cand.clear();
                'words: for (w, (&a, &b)) in l.iter().zip(c.iter()).enumerate() {
                    let mut word = a & b;
                    while word != 0 {
                        let i = (w * 64) as u32 + word.trailing_zeros();
                        word &= word - 1;
                        let sport = rules[i as usize].sport;
                        cand.push(i);
                        cand.push((u32::from(sport.lo) << 16) | u32::from(sport.hi));
                        if sport == PortRange::ANY {
                            break 'words;
                        }
                    }
                }
                let e = match cand.as_slice() {
                    [] => NO_MATCH,
                    [r, any] if *any == u32::from(u16::MAX) => DIRECT | r,
                    _ => match offsets.get(&cand) {
                        Some(&o) => o,
                        None => {
                            let o = self.cands.len() as u32;
                            self.cands.push((cand.len() / 2) as u32);
                            self.cands.extend_from_slice(&cand);
                            offsets.insert(cand.clone(), o);
                            o
                        }
                    },
                };
                self.pairs.push(e);
            }
        }
        Some(())
    }

    pub fn describe(&self) -> String {
        format!(
            "zone src4_chunks={} dst4_chunks={} src6={} dst6={} cells={} service_tables={} service_intervals={} service_classes={} pairs={} cands={}",
            self.src4.chunks.len() / 256,
            self.dst4.chunks.len() / 256,
            self.src6.starts.len(),
            self.dst6.starts.len(),
            self.cells.len(),
            self.svc.len(),
            self.svc_starts.len(),
            self.n_svc,
            self.pairs.len(),
            self.cands.len()
        )
    }

    pub fn mem_bytes(&self) -> usize {
        (self.src4.top.len()
            + self.src4.chunks.len()
            + self.dst4.top.len()
            + self.dst4.chunks.len())
            * 2
            + self.src6.starts.len() * 20
            + self.dst6.starts.len() * 20
            + self.cells.len() * 2
            + self.svc.len() * 8
            + self.svc_starts.len() * 8
            + self.cands.len() * 4
            + (self.svc_class.top.len() + self.svc_class.chunks.len()) * 2
            + self.pairs.len() * 4
    }

    /// Index of the first matching rule or [`NO_MATCH`].
    #[inline]
    pub fn lookup(&self, k: &FlowKey) -> u32 {
        let (s, d) = match k.family {
            // Truncation is intended: IPv4 lives in the low 32 bits.
            Family::V4 => (
                self.src4.lookup(k.src as u32),
                self.dst4.lookup(k.dst as u32),
            ),
            Family::V6 => (self.src6.lookup(k.src), self.dst6.lookup(k.dst)),
        };
        let cell = u32::from(self.cells[s as usize * self.n_dst + d as usize]);
        if !self.pairs.is_empty() {
            return self.pair(cell, self.svc_class.lookup(service(k)), k.sport);
        }
        let (off, len) = self.svc[cell as usize];
        let starts = &self.svc_starts[off as usize..(off + len) as usize];
        let x = (u32::from(k.proto) << 16) | u32::from(k.dport);
        self.first_candidate(
            self.svc_rules[off as usize + last_at_most(starts, x)],
            k.sport,
        )
    }

    /// The answer of cell list `list` for service class `class`.
    #[inline(always)]
    fn pair(&self, list: u32, class: u32, sport: u16) -> u32 {
        let e = self.pairs[list as usize * self.n_svc + class as usize];
        if e & DIRECT != 0 {
            // NO_MATCH has the bit set and passes through unchanged.
            if e == NO_MATCH { e } else { e & !DIRECT }
        } else {
            self.first_candidate(e, sport)
        }
    }

    /// The first candidate at `off` in `cands` whose source port range holds `sport`.
    #[inline(always)]
    fn first_candidate(&self, off: u32, sport: u16) -> u32 {
        let off = off as usize;
        let n = self.cands[off] as usize;
        let sport = u32::from(sport);
        for c in self.cands[off + 1..off + 1 + 2 * n].chunks_exact(2) {
            if (c[1] >> 16) <= sport && sport <= (c[1] & 0xffff) {
                return c[0];
            }
        }
        NO_MATCH
    }
}

/// The key's service value as the service-class map indexes it: `(proto << 16 | dport) << 8`.
#[inline(always)]
fn service(k: &FlowKey) -> u32 {
    (u32::from(k.proto) << 24) | (u32::from(k.dport) << 8)
}

/// Intervals over `proto << 16 | dport` of one rule (protocol "any" spans every protocol).
fn service_intervals(r: &Rule) -> Vec<(u32, u32)> {
    let (lo, hi) = (u32::from(r.dport.lo), u32::from(r.dport.hi));
    match r.proto {
        Some(p) => vec![((u32::from(p) << 16) | lo, (u32::from(p) << 16) | hi)],
        None if r.dport == PortRange::ANY => vec![(0, (1 << 24) - 1)],
        None => (0..256u32)
            .map(|p| ((p << 16) | lo, (p << 16) | hi))
            .collect(),
    }
}

/// Appends the first-match intervals of `list` (rule indices in priority order) to `t`; `None`
/// when the work budget runs out.
fn service_table(
    rules: &[Rule],
    list: &[u32],
    t: &mut ZoneTable,
    budget: &mut usize,
) -> Option<()> {
    let ivs: Vec<(u32, Vec<(u32, u32)>)> = list
        .iter()
        .map(|&i| (i, service_intervals(&rules[i as usize])))
        .collect();
    let mut cuts = vec![0u32];
    for (_, iv) in &ivs {
        for &(lo, hi) in iv {
            cuts.push(lo);
            if hi < (1 << 24) - 1 {
                cuts.push(hi + 1);
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut last: Option<Vec<u32>> = None;
    for &c in &cuts {
        let mut cand = Vec::new();
        for (i, iv) in &ivs {
            *budget = budget.checked_sub(iv.len() + 1)?;
            if iv.iter().any(|&(lo, hi)| lo <= c && c <= hi) {
                let sport = rules[*i as usize].sport;
                cand.push(*i);
                cand.push((u32::from(sport.lo) << 16) | u32::from(sport.hi));
                if sport == PortRange::ANY {
                    break;
                }
            }
        }
        if last.as_ref() != Some(&cand) {
            t.svc_starts.push(c);
            t.svc_rules.push(t.cands.len() as u32);
            t.cands.push((cand.len() / 2) as u32);
            t.cands.extend_from_slice(&cand);
            last = Some(cand);
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use crate::synth::{self, Profile};

    /// Both service layouts (the cross product and the per-list tables it falls back to over
    /// budget) against the reference, IPv4 and IPv6.
    #[test]
    fn both_service_layouts_agree_with_reference() {
        let acl = synth::classbench_like(Profile::Acl, 300, 3);
        let sets = [
            synth::to_v6(&acl),
            acl,
            synth::classbench_like(Profile::Ipc, 300, 4),
            synth::classbench_like(Profile::Fw, 200, 6),
            synth::zone_policy(12, 80, 5),
        ];
        for (n, rules) in sets.iter().enumerate() {
            let keys = synth::trace(rules, 2000, n as u64);
            for cross in [true, false] {
                let Some(z) = ZoneTable::build_with(rules, cross) else {
                    // The per-list tables have a smaller budget: ipc/fw-like sets may exceed it.
                    assert!(
                        !cross && (n == 2 || n == 3),
                        "set {n} (cross {cross}) not built"
                    );
                    continue;
                };
                assert_eq!(z.pairs.is_empty(), !cross, "set {n}");
                for k in &keys {
                    let want = reference::first_match(rules, k).map_or(NO_MATCH, |i| i as u32);
                    assert_eq!(z.lookup(k), want, "set {n}, cross {cross}, key {k}");
                }
            }
        }
    }
}
