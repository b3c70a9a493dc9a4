//! The compiler: validates a rule list and turns it into a [`RuleTable`].
//!
//! Pure and deterministic: no clock, no I/O, no hash-ordered iteration; the same rules and
//! options always give the same table.

use crate::error::{CompileError, Field};
use crate::key::Family;
use crate::rule::{Action, AddrMatch, Mode, Prefix, Rule};
use crate::table::{Decision, Engine, RuleTable, TreeSet};
use crate::tree::{D_DPORT, D_INPORT, D_PROTO, D_SPORT, D_VLAN, DIMS, RuleBox, Tree};
use crate::zone::ZoneTable;

/// How [`compile_with`] builds the lookup structure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Zone fast path when the rules have zone shape and fit its budget, decision trees otherwise.
    #[default]
    Auto,
    /// Always decision trees.
    Tree,
    /// Zone fast path, falling back to trees when the rules do not have zone shape.
    Zone,
}

/// Knobs of [`compile_with`]. The defaults suit a gateway policy of up to 100,000 rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Action when no rule matches (fail closed: [`Action::Deny`]).
    pub default_action: Action,
    /// Mode of the default action.
    pub default_mode: Mode,
    /// Largest accepted rule list.
    pub max_rules: usize,
    /// Largest accepted number of (source prefix × destination prefix) products over all rules.
    pub max_boxes: usize,
    /// Structure selection.
    pub strategy: Strategy,
    /// Decision-tree leaves hold at most this many boxes (fewer: deeper trees, shorter scans).
    pub leaf_size: usize,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            default_action: Action::Deny,
            default_mode: Mode::Enforce,
            max_rules: 200_000,
            max_boxes: 1_000_000,
            strategy: Strategy::Auto,
            leaf_size: 4,
        }
    }
}

/// Compiles `rules` (first match wins) with [`CompileOptions::default`].
pub fn compile(rules: &[Rule]) -> Result<RuleTable, CompileError> {
    compile_with(rules, &CompileOptions::default())
}

/// Compiles `rules` (first match wins) with explicit options.
pub fn compile_with(rules: &[Rule], opts: &CompileOptions) -> Result<RuleTable, CompileError> {
    validate(rules, opts)?;
    let decisions: Vec<Decision> = rules.iter().map(Decision::from_rule).collect();
    let default = Decision::fallback(opts.default_action, opts.default_mode);
    let zone = match opts.strategy {
        Strategy::Tree => None,
        Strategy::Auto | Strategy::Zone => ZoneTable::build(rules),
    };
    let engine = match zone {
        Some(z) => Engine::Zone(Box::new(z)),
        None => Engine::Trees(build_trees(rules, opts.leaf_size)),
    };
    Ok(RuleTable::new(decisions, default, engine))
}

pub(crate) fn validate(rules: &[Rule], opts: &CompileOptions) -> Result<(), CompileError> {
    if rules.len() > opts.max_rules {
        return Err(CompileError::OverBudget {
            index: opts.max_rules,
            field: Field::Rules,
            what: "rules, limit",
            limit: opts.max_rules,
        });
    }
    let mut ids = std::collections::BTreeMap::new();
    let mut boxes = 0usize;
    for (index, rule) in rules.iter().enumerate() {
        if let Some(first) = ids.insert(rule.id, index) {
            return Err(CompileError::DuplicateId {
                index,
                id: rule.id.0,
                first,
            });
        }
        for (field, m) in [(Field::Src, &rule.src), (Field::Dst, &rule.dst)] {
            if let AddrMatch::Prefixes(ps) = m {
                if ps.is_empty() {
                    return Err(CompileError::NeverMatches {
                        index,
                        field,
                        reason: "empty prefix set",
                    });
                }
                if let Some(p) = ps.iter().find(|p| !p.is_valid()) {
                    return Err(CompileError::MalformedPrefix {
                        index,
                        field,
                        prefix: prefix_text(p),
                    });
                }
            }
        }
        for (field, r) in [(Field::Sport, rule.sport), (Field::Dport, rule.dport)] {
            if r.lo > r.hi {
                return Err(CompileError::EmptyRange {
                    index,
                    field,
                    lo: r.lo,
                    hi: r.hi,
                });
            }
        }
        let per_rule: usize = [Family::V4, Family::V6]
            .into_iter()
            .map(|f| family_count(&rule.src, f) * family_count(&rule.dst, f))
            .sum();
        if per_rule == 0 {
            return Err(CompileError::NeverMatches {
                index,
                field: Field::Dst,
                reason: "source and destination prefixes share no address family",
            });
        }
        boxes += per_rule;
        if boxes > opts.max_boxes {
            return Err(CompileError::OverBudget {
                index,
                field: Field::Dst,
                what: "prefix products, limit",
                limit: opts.max_boxes,
            });
        }
    }
    Ok(())
}

fn prefix_text(p: &Prefix) -> String {
    match p.family {
        Family::V4 => format!("{:#010x}/{}", p.addr, p.len),
        Family::V6 => format!("{:#034x}/{}", p.addr, p.len),
    }
}

fn family_count(m: &AddrMatch, f: Family) -> usize {
    match m {
        AddrMatch::Any => 1,
        AddrMatch::Prefixes(ps) => ps.iter().filter(|p| p.family == f).count(),
    }
}

/// The region of point space a family's keys live in (IPv4 keys have zero high address words).
pub(crate) fn universe(f: Family) -> [[u32; 2]; DIMS] {
    let mut u = [[0, u32::MAX]; DIMS];
    if f == Family::V4 {
        for w in [0, 1, 2, 4, 5, 6] {
            u[w] = [0, 0];
        }
    }
    u[D_SPORT] = [0, u32::from(u16::MAX)];
    u[D_DPORT] = [0, u32::from(u16::MAX)];
    u[D_PROTO] = [0, u32::from(u8::MAX)];
    u[D_VLAN] = [0, u32::from(u16::MAX)];
    u[D_INPORT] = [0, u32::from(u16::MAX)];
    u
}

/// Writes the address range `[lo, hi]` of a prefix (or the family universe) into four words.
fn set_addr(r: &mut [[u32; 2]; DIMS], first_word: usize, range: (u128, u128)) {
    for w in 0..4 {
        let shift = 96 - 32 * w;
        // Truncation is intended: one 32-bit word of the address.
        r[first_word + w] = [(range.0 >> shift) as u32, (range.1 >> shift) as u32];
    }
}

fn family_range(f: Family) -> (u128, u128) {
    match f {
        Family::V4 => (0, u128::from(u32::MAX)),
        Family::V6 => (0, u128::MAX),
    }
}

fn addr_ranges(m: &AddrMatch, f: Family) -> Vec<(u128, u128)> {
    match m {
        AddrMatch::Any => vec![family_range(f)],
        AddrMatch::Prefixes(ps) => ps
            .iter()
            .filter(|p| p.family == f)
            .map(Prefix::range)
            .collect(),
    }
}

/// Expands rules into the boxes of one family, in rule order.
pub(crate) fn boxes_of(rules: &[Rule], f: Family) -> Vec<RuleBox> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let srcs = addr_ranges(&rule.src, f);
        let dsts = addr_ranges(&rule.dst, f);
        for s in &srcs {
            for d in &dsts {
                let mut r = universe(f);
                set_addr(&mut r, 0, *s);
                set_addr(&mut r, 4, *d);
                r[D_SPORT] = [u32::from(rule.sport.lo), u32::from(rule.sport.hi)];
                r[D_DPORT] = [u32::from(rule.dport.lo), u32::from(rule.dport.hi)];
                if let Some(p) = rule.proto {
                    r[D_PROTO] = [u32::from(p); 2];
                }
                if let Some(v) = rule.vlan {
                    r[D_VLAN] = [u32::from(v); 2];
                }
                if let Some(p) = rule.in_port {
                    r[D_INPORT] = [u32::from(p); 2];
                }
                out.push(RuleBox { rule: i as u32, r });
            }
        }
    }
    out
}

fn build_trees(rules: &[Rule], leaf_size: usize) -> TreeSet {
    let v4 = boxes_of(rules, Family::V4);
    let v6 = boxes_of(rules, Family::V6);
    TreeSet::new(
        trees(&v4, Family::V4, leaf_size),
        trees(&v6, Family::V6, leaf_size),
    )
}

/// One tree per partition group (measured: as fast as a single tree on the 10K ClassBench sets,
/// far less replication on fw-shaped and 100K sets).
fn trees(boxes: &[RuleBox], f: Family, leaf_size: usize) -> Vec<Tree> {
    let u = universe(f);
    partition(boxes, f)
        .iter()
        .filter_map(|(g, p)| Tree::build(p, &u, leaf_size, usize::MAX).map(|t| t.in_group(*g)))
        .collect()
}

/// Splits boxes into groups that cut well separately (CutSplit's idea, see `docs/classifier.md`):
/// boxes with a specific source address, boxes with a specific destination address only, and the
/// rest. Cutting one address dimension of a group never has to replicate wide boxes of another
/// group. Each group becomes a tree; a lookup takes the best answer over the trees.
fn partition(boxes: &[RuleBox], f: Family) -> Vec<(u8, Vec<RuleBox>)> {
    let mut groups: [Vec<RuleBox>; 3] = Default::default();
    for b in boxes {
        groups[usize::from(group_of(b, f))].push(b.clone());
    }
    let mut out: Vec<(u8, Vec<RuleBox>)> = groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .map(|(i, g)| (i as u8, g))
        .collect();
    out.sort_by_key(|(_, g)| g[0].rule);
    out
}

/// The partition group of a box: 0 specific source, 1 specific destination, 2 neither.
pub(crate) fn group_of(b: &RuleBox, f: Family) -> u8 {
    let small = |first: usize| -> bool {
        match f {
            Family::V4 => b.r[first + 3][1] - b.r[first + 3][0] < SMALL_SPAN,
            Family::V6 => {
                b.r[first][0] == b.r[first][1] && b.r[first + 1][1] - b.r[first + 1][0] < SMALL_SPAN
            }
        }
    };
    if small(0) {
        0
    } else if small(4) {
        1
    } else {
        2
    }
}

/// An address range narrower than this (in its deciding 32-bit word) counts as specific.
const SMALL_SPAN: u32 = 1 << 16;
