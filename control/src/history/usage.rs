//! Rule usage: hit counters and first/last hit per policy clause, persisted in the history
//! database, and the unused-rule report over a window.
//!
//! Counters are keyed by `(policy name, clause key)`, where the clause key names the clause by
//! what it *is* (conduit name, zone pair and service position; zone default by zone; the final
//! default), not by rule id or document path: rule ids and paths move when a policy is edited,
//! names do not, so counters survive revisions and restarts. A data-plane rule id is mapped to
//! its clause with the compiled policy of the revision that made the decision.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;
use septa_classifier::RuleId;
use serde::Serialize;

use super::{FlowHistory, HistoryError, ObservedFlow};
use crate::compile::{Clause, ClauseKind, CompiledPolicy};

/// The stable key of a clause (see the module docs).
pub fn clause_key(kind: &ClauseKind) -> String {
    match kind {
        ClauseKind::Conduit {
            name,
            service,
            from,
            to,
            ..
        } => format!("conduit/{name}/{from}->{to}/service[{service}]"),
        ClauseKind::ZoneDefault { zone } => format!("zone-default/{zone}"),
        ClauseKind::Default => "default".to_owned(),
    }
}

/// What recording hits did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// Flows attributed to a clause.
    pub attributed: u64,
    /// Flows decided by another revision or an unknown rule id (not counted).
    pub unattributed: u64,
}

/// Hits of one rule id over a span of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleHits {
    /// The data plane's rule id.
    pub rule: u32,
    /// Decisions it made.
    pub hits: u64,
    /// First of them (Unix ms).
    pub first_ms: i64,
    /// Last of them (Unix ms).
    pub last_ms: i64,
}

impl RuleHits {
    /// Adds `n` hits at `ts_ms`.
    pub fn add(&mut self, ts_ms: i64, n: u64) {
        self.hits = self.hits.saturating_add(n);
        self.first_ms = self.first_ms.min(ts_ms);
        self.last_ms = self.last_ms.max(ts_ms);
    }
}

/// One clause's usage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClauseUsage {
    /// Policy name.
    pub policy: String,
    /// Stable clause key.
    pub clause: String,
    /// The clause as text (from the latest revision that hit it).
    pub text: String,
    /// Hits (flows decided by it).
    pub hits: u64,
    /// First hit (Unix ms).
    pub first_ms: i64,
    /// Last hit (Unix ms).
    pub last_ms: i64,
    /// Revision of the last hit.
    pub last_revision: String,
}

/// A clause of the current policy with no hit in the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnusedClause {
    /// Stable clause key.
    pub clause: String,
    /// Field path in the current document.
    pub path: String,
    /// The clause as text.
    pub text: String,
    /// Last hit ever, if any (before the window).
    pub last_hit_ms: Option<i64>,
}

impl FlowHistory {
    /// Counts the flows that `revision` decided against the clauses of `compiled` (the compiled
    /// form of that revision), in one transaction.
    pub fn record_usage(
        &mut self,
        compiled: &CompiledPolicy,
        revision: &str,
        flows: &[ObservedFlow],
    ) -> Result<UsageReport, HistoryError> {
        let mut by_rule: HashMap<u32, RuleHits> = HashMap::new();
        let mut other = 0;
        // Records that only report a counted flow's end are not decisions: not hits.
        for f in flows.iter().filter(|f| f.flows > 0) {
            if f.revision != revision {
                other += 1;
                continue;
            }
            by_rule
                .entry(f.rule)
                .or_insert(RuleHits {
                    rule: f.rule,
                    hits: 0,
                    first_ms: f.ts_ms,
                    last_ms: f.ts_ms,
                })
                .add(f.ts_ms, 1);
        }
        let mut rep = self.record_rule_hits(compiled, revision, by_rule.values())?;
        rep.unattributed += other;
        Ok(rep)
    }

    /// Counts hits already summed per rule id (what the learning feed's window keeps) against
    /// the clauses of `compiled`, the compiled form of `revision`, in one transaction. Rule ids
    /// `compiled` does not know are counted as unattributed.
    pub fn record_rule_hits<'a>(
        &mut self,
        compiled: &CompiledPolicy,
        revision: &str,
        rules: impl IntoIterator<Item = &'a RuleHits>,
    ) -> Result<UsageReport, HistoryError> {
        let mut rep = UsageReport::default();
        // (policy, key) -> (clause, hits, first, last)
        let mut hits: BTreeMap<(String, String), (&Clause, u64, i64, i64)> = BTreeMap::new();
        for r in rules {
            let Some(c) = compiled.clause_of(RuleId(r.rule)) else {
                rep.unattributed += r.hits;
                continue;
            };
            rep.attributed += r.hits;
            let e = hits
                .entry((c.policy.clone(), clause_key(&c.kind)))
                .or_insert((c, 0, r.first_ms, r.last_ms));
            e.1 += r.hits;
            e.2 = e.2.min(r.first_ms);
            e.3 = e.3.max(r.last_ms);
        }
        let tx = self.conn_mut().transaction()?;
        {
            let mut up = tx.prepare_cached(
                "INSERT INTO rule_usage (policy, clause, text, hits, first_ms, last_ms, last_revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (policy, clause) DO UPDATE SET
                    hits = hits + excluded.hits,
                    first_ms = min(first_ms, excluded.first_ms),
                    text = CASE WHEN excluded.last_ms >= last_ms THEN excluded.text ELSE text END,
                    last_revision = CASE WHEN excluded.last_ms >= last_ms
                        THEN excluded.last_revision ELSE last_revision END,
                    last_ms = max(last_ms, excluded.last_ms)",
            )?;
            for ((policy, key), (c, n, first, last)) in &hits {
                up.execute(params![
                    policy,
                    key,
                    c.text,
                    i64::try_from(*n).unwrap_or(i64::MAX),
                    first,
                    last,
                    revision
                ])?;
            }
        }
        tx.commit()?;
        Ok(rep)
    }

    /// Every counter, ordered by policy and clause key.
    pub fn usage(&self) -> Result<Vec<ClauseUsage>, HistoryError> {
        let mut st = self.conn().prepare_cached(
            "SELECT policy, clause, text, hits, first_ms, last_ms, last_revision FROM rule_usage
             ORDER BY policy, clause",
        )?;
        let rows = st.query_map([], |r| {
            Ok(ClauseUsage {
                policy: r.get(0)?,
                clause: r.get(1)?,
                text: r.get(2)?,
                hits: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                first_ms: r.get(4)?,
                last_ms: r.get(5)?,
                last_revision: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The clauses of `compiled` (the current policy) with no hit at or after `since_ms`, in
    /// clause order. The final default deny is never reported (it cannot be removed).
    pub fn unused(
        &self,
        compiled: &CompiledPolicy,
        since_ms: i64,
    ) -> Result<Vec<UnusedClause>, HistoryError> {
        let last: BTreeMap<(String, String), i64> = self
            .usage()?
            .into_iter()
            .map(|u| ((u.policy, u.clause), u.last_ms))
            .collect();
        let mut out = Vec::new();
        for c in compiled.clauses() {
            if c.kind == ClauseKind::Default {
                continue;
            }
            let key = clause_key(&c.kind);
            let last_hit = last.get(&(c.policy.clone(), key.clone())).copied();
            if last_hit.is_none_or(|t| t < since_ms) {
                out.push(UnusedClause {
                    clause: key,
                    path: c.path.clone(),
                    text: c.text.clone(),
                    last_hit_ms: last_hit,
                });
            }
        }
        Ok(out)
    }
}
