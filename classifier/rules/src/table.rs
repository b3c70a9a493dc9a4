//! The compiled table and its lookups.

use std::sync::Arc;

use septa_l7::L7Constraint;

use crate::key::{Family, FlowKey};
use crate::rule::{Action, HookId, Mode, Rule, RuleId, SourceRef};
use crate::tree::{D_DPORT, D_INPORT, D_PROTO, D_SPORT, D_VLAN, NO_MATCH, Point, Tree};
use crate::zone::ZoneTable;

/// The outcome of a lookup: which rule decided (or the default), and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The matching rule, `None` when the default action applied.
    pub rule: Option<RuleId>,
    /// Action to take.
    pub action: Action,
    /// Enforce or monitor.
    pub mode: Mode,
    /// Policy clause of the matching rule, `None` for the default.
    pub source: Option<SourceRef>,
}

impl Decision {
    /// The decision a rule makes when it matches.
    pub fn from_rule(r: &Rule) -> Self {
        Decision {
            rule: Some(r.id),
            action: r.action,
            mode: r.mode,
            source: Some(r.source),
        }
    }

    /// The decision when no rule matches.
    pub fn fallback(action: Action, mode: Mode) -> Self {
        Decision {
            rule: None,
            action,
            mode,
            source: None,
        }
    }
}

impl Default for Decision {
    /// Fail closed: no rule, deny, enforce.
    fn default() -> Self {
        Decision::fallback(Action::Deny, Mode::Enforce)
    }
}

/// Decision trees per family; a key consults the trees of its family in order of their best rule.
#[derive(Clone, Debug)]
pub(crate) struct TreeSet {
    pub v4: Vec<Tree>,
    pub v6: Vec<Tree>,
}

#[derive(Clone, Debug)]
pub(crate) enum Engine {
    Trees(TreeSet),
    Zone(Box<ZoneTable>),
}

/// An immutable compiled rule table, published to workers through [`crate::TableCell`].
#[derive(Clone, Debug)]
pub struct RuleTable {
    epoch: u64,
    pub(crate) decisions: Vec<Decision>,
    default: Decision,
    pub(crate) engine: Engine,
    /// The function-code conduits that [`Action::Inspect`] hook ids index, published with the
    /// rules so that one load yields both (hook ids mean nothing across policies).
    l7: Arc<[L7Constraint]>,
}

/// What [`RuleTable::match_burst`] reports for a key no rule matches.
pub const NO_RULE: u32 = NO_MATCH;

/// Keys per interleaved group in [`RuleTable::classify_burst`] over trees.
const LANES: usize = 8;

pub(crate) fn point(k: &FlowKey) -> Point {
    if k.family == Family::V4 {
        return point_v4(k);
    }
    let (src, dst) = match k.family {
        Family::V4 => (k.src & u128::from(u32::MAX), k.dst & u128::from(u32::MAX)),
        Family::V6 => (k.src, k.dst),
    };
    let mut p = [0u32; 16];
    for w in 0..4 {
        let shift = 96 - 32 * w;
        // Truncation is intended: one 32-bit word of the address.
        p[w] = (src >> shift) as u32;
        p[4 + w] = (dst >> shift) as u32;
    }
    p[D_SPORT] = u32::from(k.sport);
    p[D_DPORT] = u32::from(k.dport);
    p[D_PROTO] = u32::from(k.proto);
    p[D_VLAN] = u32::from(k.vlan);
    p[D_INPORT] = u32::from(k.in_port);
    p
}

/// [`point`] of an IPv4 key: only the low address words and the scalar fields are non-zero.
#[inline(always)]
fn point_v4(k: &FlowKey) -> Point {
    let mut p = [0u32; 16];
    set_v4(&mut p, k);
    p
}

/// Writes the words of an IPv4 key's point that can be non-zero (the others are left as they
/// are: 0 in every buffer this is used on).
#[inline(always)]
fn set_v4(p: &mut Point, k: &FlowKey) {
    // Truncation is intended: an IPv4 key keeps its address in the low 32 bits.
    p[3] = k.src as u32;
    p[7] = k.dst as u32;
    p[D_SPORT] = u32::from(k.sport);
    p[D_DPORT] = u32::from(k.dport);
    p[D_PROTO] = u32::from(k.proto);
    p[D_VLAN] = u32::from(k.vlan);
    p[D_INPORT] = u32::from(k.in_port);
}

impl RuleTable {
    pub(crate) fn new(decisions: Vec<Decision>, default: Decision, engine: Engine) -> Self {
        RuleTable {
            epoch: 0,
            decisions,
            default,
            engine,
            l7: Arc::default(),
        }
    }

    /// This table with `l7` as its function-code conduits: hook `i` of an
    /// [`Action::Inspect`] decision indexes `l7[i]`. The policy compiler attaches them before
    /// the table is published, so a publish swaps rules and conduits together.
    pub fn with_l7_constraints(mut self, l7: Arc<[L7Constraint]>) -> Self {
        self.l7 = l7;
        self
    }

    /// The function-code conduits of this table's inspect actions (empty unless attached).
    #[inline]
    pub fn l7_constraints(&self) -> &[L7Constraint] {
        &self.l7
    }

    /// The conduit of inspect hook `hook`, if this table has one.
    #[inline]
    pub fn l7_constraint(&self, hook: HookId) -> Option<&L7Constraint> {
        self.l7.get(hook.0 as usize)
    }

    /// The publish epoch: 0 until [`crate::TableCell::publish`] stamps it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// Number of rules compiled into the table.
    pub fn len(&self) -> usize {
        self.decisions.len()
    }

    /// True when the table has no rules (every key gets the default).
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty()
    }

    /// The decision for keys no rule matches.
    pub fn default_decision(&self) -> Decision {
        self.default
    }

    /// Which structure the compiler chose: `"zone"` or `"trees"`.
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Trees(_) => "trees",
            Engine::Zone(_) => "zone",
        }
    }

    /// A description of the compiled structures, one line per part (for benchmarks and tuning).
    pub fn describe(&self) -> String {
        match &self.engine {
            Engine::Trees(t) => {
                let v4 = t.v4.iter().map(|x| format!("v4 {}", x.describe()));
                let v6 = t.v6.iter().map(|x| format!("v6 {}", x.describe()));
                v4.chain(v6).collect::<Vec<_>>().join("\n")
            }
            Engine::Zone(z) => z.describe(),
        }
    }

    /// Approximate bytes of the lookup structures (what a lookup may touch).
    pub fn mem_bytes(&self) -> usize {
        let engine = match &self.engine {
            Engine::Trees(t) => t.v4.iter().chain(&t.v6).map(Tree::mem_bytes).sum(),
            Engine::Zone(z) => z.mem_bytes(),
        };
        engine + self.decisions.len() * std::mem::size_of::<Decision>()
    }

    /// Index (in the compiled rule list) of the first matching rule, `None` when none matches.
    pub fn first_match(&self, key: &FlowKey) -> Option<usize> {
        let m = match &self.engine {
            Engine::Trees(t) => {
                let p = point(key);
                let mut best = NO_MATCH;
                for tree in t.for_family(key.family) {
                    if tree.min_rule < best {
                        best = best.min(tree.lookup(&p));
                    }
                }
                best
            }
            Engine::Zone(z) => z.lookup(key),
        };
        (m != NO_MATCH).then_some(m as usize)
    }

    /// The decision for one key.
    pub fn classify(&self, key: &FlowKey) -> Decision {
        match self.first_match(key) {
            Some(i) => self.decisions[i],
            None => self.default,
        }
    }

    /// Decisions for a burst: `out[i]` receives the decision for `keys[i]`. Extra entries of
    /// `out` are left untouched; extra keys (when `out` is shorter) are not classified.
    ///
    /// Same walk as [`RuleTable::match_burst`], then each index is resolved to its 40-byte
    /// [`Decision`]. A caller that only needs the action and mode per packet can call
    /// `match_burst` and resolve with [`RuleTable::decision_at`] when it needs the rest.
    pub fn classify_burst(&self, keys: &[FlowKey], out: &mut [Decision]) {
        let n = keys.len().min(out.len());
        self.burst(&keys[..n], |i, m| out[i] = *self.decision_at(m));
    }

    /// Rule indices for a burst: `out[i]` receives the index (in the compiled rule list) of the
    /// first rule matching `keys[i]`, or [`NO_RULE`]. Extra entries of `out` are left untouched;
    /// extra keys (when `out` is shorter) are not classified. This is the cheapest lookup: four
    /// bytes per key, like `rte_acl_classify`'s userdata; [`RuleTable::decision_at`] resolves an
    /// index to its decision.
    ///
    /// On the zone path every key is a fixed sequence of table loads, looked up in a plain loop.
    /// On trees, keys are grouped by family into groups of eight whose walks advance in
    /// lockstep, so the memory loads of different keys overlap; leftovers are looked up one by
    /// one. (A pipeline where a finished lane takes the next key at once measured 1.5–2.5×
    /// slower: its per-lane branches mispredict.)
    pub fn match_burst(&self, keys: &[FlowKey], out: &mut [u32]) {
        let n = keys.len().min(out.len());
        self.burst(&keys[..n], |i, m| out[i] = m);
    }

    /// The decision of rule index `m` as returned by [`RuleTable::match_burst`]; the default
    /// decision for [`NO_RULE`] (or any index past the end).
    #[inline]
    pub fn decision_at(&self, m: u32) -> &Decision {
        self.decisions.get(m as usize).unwrap_or(&self.default)
    }

    /// Calls `put(i, m)` with the first-match index `m` of every `keys[i]`.
    #[inline(always)]
    fn burst(&self, keys: &[FlowKey], put: impl FnMut(usize, u32)) {
        match &self.engine {
            Engine::Zone(z) => {
                let mut put = put;
                // Independent fixed-length lookups: the processor overlaps consecutive keys by
                // itself, so they need no interleaving.
                for (i, k) in keys.iter().enumerate() {
                    put(i, z.lookup(k));
                }
            }
            Engine::Trees(t) => self.burst_trees::<LANES>(t, keys, put),
        }
    }

    /// [`RuleTable::burst`] over trees: keys grouped by family into `N` lanes walked in lockstep.
    #[inline(always)]
    fn burst_trees<const N: usize>(
        &self,
        t: &TreeSet,
        keys: &[FlowKey],
        mut put: impl FnMut(usize, u32),
    ) {
        // Points are written straight into per-family lane buffers as keys arrive. An IPv4
        // point only ever sets the same seven words, so its buffer is zeroed once per burst.
        let mut groups = [([0usize; N], 0usize); 2];
        let mut v4 = [[0u32; 16]; N];
        let mut v6 = [[0u32; 16]; N];
        for (i, k) in keys.iter().enumerate() {
            let v6_key = k.family == Family::V6;
            let (idx, len) = &mut groups[usize::from(v6_key)];
            let slot = *len % N;
            idx[slot] = i;
            if v6_key {
                v6[slot] = point(k);
            } else {
                set_v4(&mut v4[slot], k);
            }
            *len = slot + 1;
            if *len == N {
                let best = t.match_points(k.family, if v6_key { &v6 } else { &v4 });
                for (&i, &m) in idx.iter().zip(&best) {
                    put(i, m);
                }
                *len = 0;
            }
        }
        for (idx, len) in &groups {
            for &i in &idx[..*len] {
                put(i, self.first_match(&keys[i]).map_or(NO_RULE, |m| m as u32));
            }
        }
    }
}

impl TreeSet {
    /// The trees of each family in walk order: by the rule a key typically gets from them, so
    /// that a tree of broad early rules (a catch-all group) answers first and most keys then skip
    /// the buckets of the large trees; ties by lowest rule. (By lowest rule alone, keys of the
    /// generated fw 100K set walked both large partition trees although a 7-node tree of broad
    /// rules decided most of them.)
    pub(crate) fn new(mut v4: Vec<Tree>, mut v6: Vec<Tree>) -> Self {
        for set in [&mut v4, &mut v6] {
            set.sort_by_key(|t| (t.typical, t.min_rule));
        }
        TreeSet { v4, v6 }
    }

    fn for_family(&self, f: Family) -> &[Tree] {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// First-match indices of the points `pts` (keys of family `family`), in lockstep.
    #[inline(always)]
    fn match_points<const N: usize>(&self, family: Family, pts: &[Point; N]) -> [u32; N] {
        let mut best = [NO_MATCH; N];
        for tree in self.for_family(family) {
            if best.iter().any(|&b| tree.min_rule < b) {
                tree.lookup_lanes(pts, &mut best);
            }
        }
        best
    }
}
