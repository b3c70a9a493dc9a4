//! Access decisions as audit records, aggregated so that a flood cannot turn into one fsynced
//! append per packet.
//!
//! The composition root feeds every deny, every would-deny (monitor mode) and a sample of the
//! allowed flows ([`DecisionAggregator::observe`]); every interval it takes one record per
//! (kind, flow, clause, revision) seen ([`DecisionAggregator::take`]) with the number of
//! observations and the first/last time, and appends them. At most `max_groups` groups are kept
//! per interval; observations beyond are counted in one `access.overflow` record, so the records
//! per interval are bounded whatever the traffic.
//!
//! Actions: `access.deny`, `access.would_deny`, `access.allow` (sampled: one flow in
//! `allow_sample`), `access.overflow`. Actor `system:dataplane`; `after` is the content hash of
//! the deciding revision; `reason` the deciding clause.

use std::collections::BTreeMap;

use super::record::{Actor, AuditEntry};

/// What was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DecisionKind {
    /// Refused (enforce mode).
    Deny,
    /// Would have been refused (monitor mode; forwarded).
    WouldDeny,
    /// Admitted (sampled).
    Allow,
}

impl DecisionKind {
    /// The audit action.
    pub const fn action(self) -> &'static str {
        match self {
            DecisionKind::Deny => "access.deny",
            DecisionKind::WouldDeny => "access.would_deny",
            DecisionKind::Allow => "access.allow",
        }
    }
}

/// One access decision of the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessDecision {
    /// What was decided.
    pub kind: DecisionKind,
    /// The flow, e.g. `udp 10.1.0.1:4000 -> 10.2.0.1:5000`.
    pub flow: String,
    /// The deciding clause (its text and path), or what decided without one.
    pub clause: String,
    /// The deciding rule id, if a rule decided.
    pub rule: Option<u32>,
    /// Content hash of the deciding revision (`none` without a policy).
    pub revision: String,
    /// When (Unix ms).
    pub ts_ms: i64,
}

#[derive(Debug)]
struct Group {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    rule: Option<u32>,
}

type GroupKey = (DecisionKind, String, String, String);

/// Aggregates [`AccessDecision`]s per (kind, flow, clause, revision) over an interval.
#[derive(Debug)]
pub struct DecisionAggregator {
    allow_sample: u64,
    allows_seen: u64,
    max_groups: usize,
    groups: BTreeMap<GroupKey, Group>,
    overflow: u64,
}

impl DecisionAggregator {
    /// Keeps one allowed flow in `allow_sample` (0: none) and at most `max_groups` groups per
    /// interval.
    pub fn new(allow_sample: u64, max_groups: usize) -> Self {
        DecisionAggregator {
            allow_sample,
            allows_seen: 0,
            max_groups: max_groups.max(1),
            groups: BTreeMap::new(),
            overflow: 0,
        }
    }

    /// Counts one decision (allows are sampled first).
    pub fn observe(&mut self, d: AccessDecision) {
        if d.kind == DecisionKind::Allow {
            if self.allow_sample == 0 {
                return;
            }
            self.allows_seen += 1;
            if !(self.allows_seen - 1).is_multiple_of(self.allow_sample) {
                return;
            }
        }
        let key = (d.kind, d.flow, d.clause, d.revision);
        if let Some(g) = self.groups.get_mut(&key) {
            g.count += 1;
            g.first_ms = g.first_ms.min(d.ts_ms);
            g.last_ms = g.last_ms.max(d.ts_ms);
        } else if self.groups.len() < self.max_groups {
            self.groups.insert(
                key,
                Group {
                    count: 1,
                    first_ms: d.ts_ms,
                    last_ms: d.ts_ms,
                    rule: d.rule,
                },
            );
        } else {
            self.overflow += 1;
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.overflow == 0
    }

    /// The records of the interval (one per group, then the overflow count), and a fresh one.
    pub fn take(&mut self) -> Vec<AuditEntry> {
        let groups = std::mem::take(&mut self.groups);
        let mut out: Vec<AuditEntry> = groups
            .into_iter()
            .map(|((kind, flow, clause, revision), g)| AuditEntry {
                actor: Actor::system("dataplane"),
                action: kind.action().into(),
                object: flow,
                before: None,
                after: Some(revision),
                reason: clause,
                result: "ok".into(),
                detail: format!(
                    "{} observation(s) from {} to {} ms; rule {}",
                    g.count,
                    g.first_ms,
                    g.last_ms,
                    g.rule
                        .map_or_else(|| "none (table default)".into(), |r| r.to_string())
                ),
            })
            .collect();
        if self.overflow > 0 {
            out.push(AuditEntry {
                actor: Actor::system("dataplane"),
                action: "access.overflow".into(),
                object: "access decisions".into(),
                before: None,
                after: None,
                reason: format!(
                    "more than {} distinct (flow, clause) groups",
                    self.max_groups
                ),
                result: "ok".into(),
                detail: format!("{} decision(s) not itemised this interval", self.overflow),
            });
            self.overflow = 0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: DecisionKind, flow: &str, ts: i64) -> AccessDecision {
        AccessDecision {
            kind,
            flow: flow.into(),
            clause: "conduit x".into(),
            rule: Some(3),
            revision: "h".into(),
            ts_ms: ts,
        }
    }

    #[test]
    fn a_flood_is_one_record_per_flow_and_clause() {
        let mut a = DecisionAggregator::new(0, 10);
        for t in 0..10_000 {
            a.observe(d(DecisionKind::Deny, "udp a -> b", t));
        }
        a.observe(d(DecisionKind::WouldDeny, "udp a -> b", 5));
        a.observe(d(DecisionKind::Allow, "udp a -> b", 5));
        let out = a.take();
        assert_eq!(out.len(), 2, "allows are off with a sample rate of 0");
        assert_eq!(out[0].action, "access.deny");
        assert!(
            out[0]
                .detail
                .starts_with("10000 observation(s) from 0 to 9999")
        );
        assert_eq!(out[0].after.as_deref(), Some("h"));
        assert_eq!(out[0].reason, "conduit x");
        assert_eq!(out[1].action, "access.would_deny");
        assert!(a.is_empty() && a.take().is_empty(), "taken once");
    }

    #[test]
    fn groups_are_bounded_and_allows_sampled() {
        let mut a = DecisionAggregator::new(10, 3);
        for i in 0..100 {
            a.observe(d(DecisionKind::Allow, &format!("f{}", i % 2), i));
        }
        let out = a.take();
        let allows: u64 = out
            .iter()
            .map(|e| e.detail.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(allows, 10, "one in ten");
        for i in 0..10 {
            a.observe(d(DecisionKind::Deny, &format!("f{i}"), i));
        }
        let out = a.take();
        assert_eq!(out.len(), 4);
        assert_eq!(out[3].action, "access.overflow");
        assert!(out[3].detail.starts_with("7 decision(s)"));
    }
}
