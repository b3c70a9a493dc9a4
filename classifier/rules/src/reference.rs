//! The naive reference: a linear first-match scan. It defines what a correct lookup returns; the
//! compiled tables are tested against it.

use crate::key::FlowKey;
use crate::rule::Rule;
use crate::table::Decision;

/// Index of the first rule matching `key`, `None` when none does.
pub fn first_match(rules: &[Rule], key: &FlowKey) -> Option<usize> {
    rules.iter().position(|r| r.matches(key))
}

/// The decision for `key`: the first matching rule's, or `default` when none matches.
pub fn classify(rules: &[Rule], default: Decision, key: &FlowKey) -> Decision {
    first_match(rules, key).map_or(default, |i| Decision::from_rule(&rules[i]))
}
