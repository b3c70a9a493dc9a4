//! Incremental edits: insert or remove one rule without recompiling the whole list.
//!
//! Only the root buckets of the decision trees that the edited rule's boxes overlap are rebuilt
//! (plus a renumbering pass over the leaves, because rule indices are priorities). Replaced nodes
//! stay in the table as unreachable garbage until the next full compile. Tables on the zone fast
//! path, and edits that need a dimension a tree does not check yet, fall back to a full compile.

use crate::compile::{CompileOptions, boxes_of, compile_with, group_of, universe, validate};
use crate::error::CompileError;
use crate::key::Family;
use crate::rule::Rule;
use crate::table::{Decision, Engine, RuleTable, TreeSet};
use crate::tree::{RuleBox, Tree};

/// One edit of an ordered rule list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Insert `rule` so that it becomes `rules[index]` (later rules move down one place).
    Insert {
        /// Position of the new rule, `0..=len`.
        index: usize,
        /// The rule.
        rule: Rule,
    },
    /// Remove `rules[index]`.
    Remove {
        /// Position of the rule to remove.
        index: usize,
    },
}

impl Edit {
    /// The rule list after the edit (`None` when the index is out of range).
    pub fn applied_to(&self, rules: &[Rule]) -> Option<Vec<Rule>> {
        let mut after = rules.to_vec();
        match self {
            Edit::Insert { index, rule } if *index <= after.len() => {
                after.insert(*index, rule.clone())
            }
            Edit::Remove { index } if *index < after.len() => {
                after.remove(*index);
            }
            _ => return None,
        }
        Some(after)
    }
}

impl RuleTable {
    /// The table for `edit` applied to `rules`, the list this table was compiled from (with
    /// `opts`). Equivalent to compiling the edited list, usually much cheaper. On error the table
    /// is untouched; an out-of-range index is reported as an over-budget error on that index.
    pub fn apply(
        &self,
        rules: &[Rule],
        edit: &Edit,
        opts: &CompileOptions,
    ) -> Result<RuleTable, CompileError> {
        let after = edit.applied_to(rules).ok_or_else(|| {
            let index = match edit {
                Edit::Insert { index, .. } | Edit::Remove { index } => *index,
            };
            CompileError::OverBudget {
                index,
                field: crate::Field::Rules,
                what: "index past the end, length",
                limit: rules.len(),
            }
        })?;
        validate(&after, opts)?;
        let Engine::Trees(trees) = &self.engine else {
            return compile_with(&after, opts);
        };
        let mut next = self.clone();
        next.set_epoch(0);
        let mut trees = trees.clone();
        let (index, changed_rules, shift): (usize, Vec<Rule>, i64) = match edit {
            Edit::Insert { index, rule } => (*index, vec![rule.clone()], 1),
            Edit::Remove { index } => (*index, vec![rules[*index].clone()], -1),
        };
        let index32 = index as u32;
        let renumber = |r: u32| -> u32 {
            if r >= index32 && (shift > 0 || r > index32) {
                (i64::from(r) + shift) as u32
            } else {
                r
            }
        };
        for family in [Family::V4, Family::V6] {
            let set = if family == Family::V4 {
                &mut trees.v4
            } else {
                &mut trees.v6
            };
            for t in set.iter_mut() {
                t.remap(renumber);
            }
            // Boxes of the edited rule, numbered as in the list that contains it.
            let changed: Vec<RuleBox> = boxes_of(&changed_rules, family)
                .into_iter()
                .map(|b| RuleBox { rule: index32, ..b })
                .collect();
            if changed.is_empty() {
                continue;
            }
            let all = boxes_of(&after, family);
            let u = universe(family);
            for c in &changed {
                let g = group_of(c, family);
                let group: Vec<RuleBox> = all
                    .iter()
                    .filter(|b| group_of(b, family) == g)
                    .cloned()
                    .collect();
                match set.iter_mut().position(|t| t.group == g) {
                    Some(i) if !group.is_empty() && set[i].patch(&group, c, &u, opts.leaf_size) => {
                    }
                    Some(i) => {
                        // Rebuild the group's tree in full (or drop it when it became empty).
                        set.remove(i);
                        if let Some(t) = Tree::build(&group, &u, opts.leaf_size, usize::MAX) {
                            set.push(t.in_group(g));
                        }
                    }
                    None => {
                        if let Some(t) = Tree::build(&group, &u, opts.leaf_size, usize::MAX) {
                            set.push(t.in_group(g));
                        }
                    }
                }
            }
            // `TreeSet::new` puts the trees back in walk order.
        }
        next.engine = Engine::Trees(TreeSet::new(trees.v4, trees.v6));
        next.decisions = after.iter().map(Decision::from_rule).collect();
        Ok(next)
    }
}
