//! Structured and human-readable differences between two policy documents (two revisions).
//!
//! Named items (IP sets, endpoints, zones, conduits) are matched by name: added, removed, or
//! changed with the list of changed fields (before/after values) and, for conduits, a move in
//! the order (order decides precedence among conduits of the same action). Metadata and
//! defaults are compared field by field. Pure; output order is document order, so it is stable.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use serde::Serialize;
use serde_json::Value;

use crate::policy::PolicyDocument;

/// One changed field.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    /// Field name (camelCase, as written).
    pub field: String,
    /// Value before (`null` when absent). Free-form: the field's value as the policy document
    /// writes it (a string, number, list or object, depending on `field`).
    #[schema(value_type = Value)]
    pub before: Value,
    /// Value after (`null` when absent). Free-form, as `before`.
    #[schema(value_type = Value)]
    pub after: Value,
}

/// A named item present in both documents but different.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ItemChange {
    /// The item's name.
    pub name: String,
    /// Changed fields.
    pub fields: Vec<FieldChange>,
    /// Position before and after (`[before, after]`, 0-based), when it moved.
    #[schema(value_type = Option<[u64; 2]>, min_items = 2, max_items = 2)]
    pub moved: Option<(usize, usize)>,
}

/// Changes to one list of named items.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ItemChanges {
    /// Names only in the new document.
    pub added: Vec<String>,
    /// Names only in the old document.
    pub removed: Vec<String>,
    /// Names in both, different.
    pub changed: Vec<ItemChange>,
}

impl ItemChanges {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Everything that differs between two policies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PolicyDiff {
    /// `metadata` fields.
    pub metadata: Vec<FieldChange>,
    /// `spec.defaults` fields.
    pub defaults: Vec<FieldChange>,
    /// `spec.ipSets`.
    pub ip_sets: ItemChanges,
    /// `spec.endpoints`.
    pub endpoints: ItemChanges,
    /// `spec.zones`.
    pub zones: ItemChanges,
    /// `spec.conduits`.
    pub conduits: ItemChanges,
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn field_changes(a: &Value, b: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let (ma, mb) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (
                ma.get(k).unwrap_or(&Value::Null),
                mb.get(k).unwrap_or(&Value::Null),
            );
            (x != y).then(|| FieldChange {
                field: k.clone(),
                before: x.clone(),
                after: y.clone(),
            })
        })
        .collect()
}

fn items<'d, T: Serialize + PartialEq>(
    a: &'d [T],
    b: &'d [T],
    name: impl Fn(&T) -> &str,
    track_moves: bool,
) -> ItemChanges {
    // Index both sides by name (first occurrence wins, as a linear `position` would), then
    // precompute, for each prefix, how many of its items survive on the other side: the rank
    // of an item among the survivors is then a lookup. O(n) hashing instead of nested scans.
    let index = |xs: &'d [T]| {
        let mut m: HashMap<&str, usize> = HashMap::with_capacity(xs.len());
        for (i, x) in xs.iter().enumerate() {
            m.entry(name(x)).or_insert(i);
        }
        m
    };
    let (index_a, index_b) = (index(a), index(b));
    let surviving_prefix = |xs: &'d [T], other: &HashMap<&'d str, usize>| {
        let mut counts = Vec::with_capacity(xs.len() + 1);
        let mut n = 0usize;
        counts.push(n);
        for x in xs {
            n += usize::from(other.contains_key(name(x)));
            counts.push(n);
        }
        counts
    };
    let (rank_in_a, rank_in_b) = (surviving_prefix(a, &index_b), surviving_prefix(b, &index_a));
    let mut out = ItemChanges::default();
    for (j, y) in b.iter().enumerate() {
        match index_a.get(name(y)) {
            None => out.added.push(name(y).to_owned()),
            Some(&i) => {
                // Equal DTOs serialise equally: only build JSON values for changed items.
                let fields = if a[i] == *y {
                    Vec::new()
                } else {
                    field_changes(&to_value(&a[i]), &to_value(y))
                };
                // Order matters only relative to the surviving items; compare ranks among them.
                let moved = (track_moves && rank_in_a[i] != rank_in_b[j]).then_some((i, j));
                if !fields.is_empty() || moved.is_some() {
                    out.changed.push(ItemChange {
                        name: name(y).to_owned(),
                        fields,
                        moved,
                    });
                }
            }
        }
    }
    out.removed = a
        .iter()
        .filter(|x| !index_b.contains_key(name(x)))
        .map(|x| name(x).to_owned())
        .collect();
    out
}

/// The difference from `a` (old) to `b` (new).
pub fn diff(a: &PolicyDocument, b: &PolicyDocument) -> PolicyDiff {
    PolicyDiff {
        metadata: field_changes(&to_value(&a.metadata), &to_value(&b.metadata)),
        defaults: field_changes(&to_value(&a.spec.defaults), &to_value(&b.spec.defaults)),
        ip_sets: items(&a.spec.ip_sets, &b.spec.ip_sets, |s| &s.name, false),
        endpoints: items(&a.spec.endpoints, &b.spec.endpoints, |e| &e.name, false),
        zones: items(&a.spec.zones, &b.spec.zones, |z| &z.name, false),
        conduits: items(&a.spec.conduits, &b.spec.conduits, |c| &c.name, true),
    }
}

/// Counts of one list's changes: (added, removed, changed).
type Counts = (usize, usize, usize);

/// [`diff`]`(a, b).`[`summary`](PolicyDiff::summary)`()` without building the structured diff:
/// items are compared as DTOs (equal DTOs serialise equally, and the DTOs have no two encodings
/// of one value), so no JSON values are made. The audit record of every commit uses it.
pub fn summary(a: &PolicyDocument, b: &PolicyDocument) -> String {
    fn counts<'d, T: PartialEq>(
        a: &'d [T],
        b: &'d [T],
        name: impl Fn(&T) -> &str,
        track_moves: bool,
    ) -> Counts {
        let index = |xs: &'d [T]| {
            let mut m: HashMap<&str, usize> = HashMap::with_capacity(xs.len());
            for (i, x) in xs.iter().enumerate() {
                m.entry(name(x)).or_insert(i);
            }
            m
        };
        let (index_a, index_b) = (index(a), index(b));
        let (mut added, mut changed) = (0, 0);
        // Ranks among the items both sides keep, as in `items`.
        let (mut rank_a, mut n) = (Vec::with_capacity(a.len()), 0usize);
        for x in a {
            rank_a.push(n);
            n += usize::from(index_b.contains_key(name(x)));
        }
        let mut rank_b = 0usize;
        for y in b {
            match index_a.get(name(y)) {
                None => added += 1,
                Some(&i) => {
                    let moved = track_moves && rank_a[i] != rank_b;
                    changed += usize::from(moved || a[i] != *y);
                    rank_b += 1;
                }
            }
        }
        let removed = a.iter().filter(|x| !index_b.contains_key(name(x))).count();
        (added, removed, changed)
    }
    let sections = [
        (
            "ipSets",
            counts(&a.spec.ip_sets, &b.spec.ip_sets, |s| &s.name, false),
        ),
        (
            "endpoints",
            counts(&a.spec.endpoints, &b.spec.endpoints, |e| &e.name, false),
        ),
        (
            "zones",
            counts(&a.spec.zones, &b.spec.zones, |z| &z.name, false),
        ),
        (
            "conduits",
            counts(&a.spec.conduits, &b.spec.conduits, |c| &c.name, true),
        ),
    ];
    render_summary(
        a.metadata != b.metadata,
        a.spec.defaults != b.spec.defaults,
        &sections,
    )
}

fn render_summary(metadata: bool, defaults: bool, sections: &[(&str, Counts)]) -> String {
    let mut parts = Vec::new();
    if metadata {
        parts.push("metadata ~".to_owned());
    }
    if defaults {
        parts.push("defaults ~".to_owned());
    }
    for (name, (added, removed, changed)) in sections {
        if added + removed + changed > 0 {
            parts.push(format!("{name} +{added} -{removed} ~{changed}"));
        }
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join("; ")
    }
}

impl PolicyDiff {
    /// True when the documents are equal.
    pub fn is_empty(&self) -> bool {
        self.metadata.is_empty()
            && self.defaults.is_empty()
            && self.ip_sets.is_empty()
            && self.endpoints.is_empty()
            && self.zones.is_empty()
            && self.conduits.is_empty()
    }

    fn sections(&self) -> [(&'static str, &ItemChanges); 4] {
        [
            ("ipSets", &self.ip_sets),
            ("endpoints", &self.endpoints),
            ("zones", &self.zones),
            ("conduits", &self.conduits),
        ]
    }

    /// One line for audit records: `zones +1 -0 ~2; conduits +0 -1 ~0`.
    pub fn summary(&self) -> String {
        let sections = self
            .sections()
            .map(|(name, c)| (name, (c.added.len(), c.removed.len(), c.changed.len())));
        render_summary(
            !self.metadata.is_empty(),
            !self.defaults.is_empty(),
            &sections,
        )
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes\n");
        }
        let mut out = String::new();
        for (name, fields) in [("metadata", &self.metadata), ("defaults", &self.defaults)] {
            for c in fields {
                let _ = writeln!(out, "~ {name}.{}: {} -> {}", c.field, c.before, c.after);
            }
        }
        for (name, c) in self.sections() {
            if c.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{name}:");
            for a in &c.added {
                let _ = writeln!(out, "  + {a}");
            }
            for r in &c.removed {
                let _ = writeln!(out, "  - {r}");
            }
            for ch in &c.changed {
                if let Some((i, j)) = ch.moved {
                    let _ = writeln!(out, "  ~ {}: moved from position {i} to {j}", ch.name);
                }
                for fc in &ch.fields {
                    let _ = writeln!(
                        out,
                        "  ~ {}: {}: {} -> {}",
                        ch.name, fc.field, fc.before, fc.after
                    );
                }
            }
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Format, dto, parse_document};

    const A: &str = r#"{"apiVersion":"septa.io/v1","kind":"Policy","metadata":{"name":"p"},
      "spec":{"zones":[{"name":"a","subnets":["10.0.0.0/8"]},{"name":"b","subnets":["10.1.0.0/16"]}],
      "conduits":[{"name":"c1","from":["a"],"to":["b"],"services":[{"proto":"tcp","ports":[22]}]},
                  {"name":"c2","from":["b"],"to":["a"],"services":[{"proto":"any"}]}]}}"#;

    #[test]
    fn structured_and_rendered_diff() {
        let a = parse_document(A, Format::Json).unwrap();
        let b_text = A
            .replace(
                r#"{"name":"b","subnets":["10.1.0.0/16"]}"#,
                r#"{"name":"c","subnets":["10.2.0.0/16"]}"#,
            )
            .replace(r#""to":["b"]"#, r#""to":["c"]"#)
            .replace(r#""from":["b"]"#, r#""from":["c"]"#)
            .replace(r#""ports":[22]"#, r#""ports":[22,443]"#);
        let b = parse_document(&b_text, Format::Json).unwrap();
        let d = diff(&a, &b);
        assert_eq!(d.zones.added, ["c"]);
        assert_eq!(d.zones.removed, ["b"]);
        assert_eq!(d.conduits.changed.len(), 2);
        assert_eq!(
            d.conduits.changed[0]
                .fields
                .iter()
                .map(|f| f.field.as_str())
                .collect::<Vec<_>>(),
            ["services", "to"]
        );
        assert_eq!(d.summary(), "zones +1 -1 ~0; conduits +0 -0 ~2");
        let text = d.to_string();
        assert!(text.contains("zones:\n  + c\n  - b\n"), "{text}");
        assert!(text.contains(r#"  ~ c1: to: ["b"] -> ["c"]"#), "{text}");
        assert!(diff(&a, &a).is_empty());
        assert_eq!(diff(&a, &a).to_string(), "no changes\n");
    }

    #[test]
    fn reordering_conduits_is_a_change() {
        let a = parse_document(A, Format::Json).unwrap();
        let mut b = a.clone();
        b.spec.conduits.swap(0, 1);
        let d = diff(&a, &b);
        assert_eq!(d.conduits.changed.len(), 2);
        assert_eq!(d.conduits.changed[0].moved, Some((1, 0)));
        assert!(d.to_string().contains("c2: moved from position 1 to 0"));
    }

    /// The original nested-scan algorithm (cubic in the number of items), kept as the oracle.
    fn items_reference<T: Serialize>(
        a: &[T],
        b: &[T],
        name: impl Fn(&T) -> &str,
        track_moves: bool,
    ) -> ItemChanges {
        let mut out = ItemChanges::default();
        for (j, y) in b.iter().enumerate() {
            match a.iter().position(|x| name(x) == name(y)) {
                None => out.added.push(name(y).to_owned()),
                Some(i) => {
                    let fields = field_changes(&to_value(&a[i]), &to_value(y));
                    let rank_a = a[..i]
                        .iter()
                        .filter(|x| b.iter().any(|y2| name(y2) == name(x)))
                        .count();
                    let rank_b = b[..j]
                        .iter()
                        .filter(|y2| a.iter().any(|x| name(x) == name(y2)))
                        .count();
                    let moved = (track_moves && rank_a != rank_b).then_some((i, j));
                    if !fields.is_empty() || moved.is_some() {
                        out.changed.push(ItemChange {
                            name: name(y).to_owned(),
                            fields,
                            moved,
                        });
                    }
                }
            }
        }
        out.removed = a
            .iter()
            .filter(|x| !b.iter().any(|y| name(x) == name(y)))
            .map(|x| name(x).to_owned())
            .collect();
        out
    }

    /// One random edit of a document: which list, which kind of edit, which items.
    fn edit(doc: &mut PolicyDocument, (what, kind, i, j): (u8, u8, usize, usize)) {
        fn list<T: Clone>(v: &mut Vec<T>, kind: u8, i: usize, j: usize, touch: impl Fn(&mut T)) {
            if v.is_empty() {
                return;
            }
            let (i, j) = (i % v.len(), j % v.len());
            match kind % 4 {
                0 => {
                    v.remove(i);
                }
                1 => v.swap(i, j),
                2 => {
                    let x = v[i].clone();
                    v.insert(j, x);
                }
                _ => touch(&mut v[i]),
            }
        }
        match what % 5 {
            0 => list(&mut doc.spec.conduits, kind, i, j, |c| {
                c.name.push('x');
            }),
            1 => list(&mut doc.spec.conduits, kind, i, j, |c| {
                c.services.pop();
            }),
            2 => list(&mut doc.spec.zones, kind, i, j, |z| {
                z.subnets.reverse();
            }),
            3 => {
                doc.metadata.labels.insert(format!("k{i}"), "v".into());
            }
            _ => doc.spec.defaults.mode = dto::ModeName::Monitor,
        }
    }

    proptest::proptest! {
        /// The fast summary (DTO comparisons) says exactly what the structured diff says.
        #[test]
        fn fast_summary_matches_the_structured_diff(
            edits_a in proptest::collection::vec((0u8..5, 0u8..4, 0usize..64, 0usize..64), 0..4),
            edits_b in proptest::collection::vec((0u8..5, 0u8..4, 0usize..64, 0usize..64), 0..6),
        ) {
            let demo = parse_document(include_str!("../../configs/policies/demo.yaml"), Format::Yaml).unwrap();
            let (mut a, mut b) = (demo.clone(), demo);
            for e in edits_a { edit(&mut a, e); }
            for e in edits_b { edit(&mut b, e); }
            proptest::prop_assert_eq!(summary(&a, &b), diff(&a, &b).summary());
            // (Not "no change" in general: duplicated names, which validation refuses, count
            // as moves in both.)
            proptest::prop_assert_eq!(summary(&a, &a), diff(&a, &a).summary());
        }

        /// Indexed diff == nested-scan diff on random lists (names drawn from a small alphabet
        /// so that duplicates, adds, removes, moves and value changes all occur).
        #[test]
        fn indexed_items_match_reference(
            a in proptest::collection::vec((0u8..12, 0u8..3), 0..16),
            b in proptest::collection::vec((0u8..12, 0u8..3), 0..16),
            track in proptest::bool::ANY,
        ) {
            fn name(x: &(String, u8)) -> &str {
                x.0.as_str()
            }
            let conv = |v: &[(u8, u8)]| v.iter().map(|&(n, x)| (format!("n{n}"), x)).collect::<Vec<_>>();
            let (a, b) = (conv(&a), conv(&b));
            proptest::prop_assert_eq!(
                items(&a, &b, name, track),
                items_reference(&a, &b, name, track)
            );
        }
    }

    /// 50,000 conduits, reversed, a tenth removed and a tenth added. The old nested scans do
    /// ~n^3 = 10^14 name comparisons here (the suite would hang for days); the indexed diff is
    /// linear. Also checks the result against the expected counts.
    #[test]
    fn large_conduit_lists_diff_in_linear_time() {
        const N: usize = 50_000;
        let base = parse_document(A, Format::Json).unwrap();
        let template = base.spec.conduits[0].clone();
        let conduit = |i: usize| {
            let mut c = template.clone();
            c.name = format!("c{i}");
            c
        };
        let mut a = base.clone();
        a.spec.conduits = (0..N).map(conduit).collect();
        let mut b = base;
        b.spec.conduits = (N / 10..N + N / 10).rev().map(conduit).collect();
        let d = diff(&a, &b);
        assert_eq!(d.conduits.added.len(), N / 10);
        assert_eq!(d.conduits.removed.len(), N / 10);
        assert_eq!(d.conduits.removed[0], "c0");
        // Reversed: survivor c{k} has rank k - N/10 before and N-1-k after; never equal here.
        let survivors = N - N / 10;
        assert_eq!(d.conduits.changed.len(), survivors);
        assert!(d.conduits.changed.iter().all(|c| c.fields.is_empty()));
        assert_eq!(
            d.summary(),
            format!("conduits +{} -{} ~{survivors}", N / 10, N / 10)
        );
    }
}
