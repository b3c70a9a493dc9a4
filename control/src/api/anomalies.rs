//! Anomaly routes and the store the inference thread pushes into, plus small routes the web
//! console needs: a policy dry-run validation and the caller's permissions.
//!
//! **The store.** [`AnomalyStore`] is a bounded in-memory list of [`Anomaly`] records (oldest
//! evicted first, counted), written by the inference thread through [`AnomalyStore::push`]
//! (one short lock, no I/O: the thread never waits on the API) and read and triaged by the API:
//! acknowledge, or dismiss with a reason. Triage is audited (one record per call). Alerts are
//! also sent to syslog when one is configured.
//!
//! **Persistence and audit.** [`AnomalyJournal`] (`septa run` with `[control]`) keeps the store
//! in `data_dir/anomalies.db` (SQLite, at most the store's capacity rows, oldest pruned) and
//! turns raised alerts into tamper-evident audit records: [`AnomalyJournal::sync`] writes the
//! anomalies added or triaged since the last call in one transaction, and returns one
//! `anomaly.raise` audit entry per group of new alerts (same model, source host and lead
//! feature) — at most `max_groups` per call plus one `anomaly.suppressed` entry counting the
//! rest, so an alert storm costs a bounded number of audit records per interval. The audited
//! position is stored with the rows ([`AnomalyJournal::audited`]) after the entries are appended,
//! so a crash between the two repeats a batch rather than losing it. On start
//! [`AnomalyJournal::restore`] refills the store (ids continue).
//!
//! Routes: `GET /anomalies` (filter by state), `GET /anomalies/{id}`,
//! `POST /anomalies/{id}/ack`, `POST /anomalies/{id}/dismiss`, `POST /policy/validate`
//! (validate + compile without storing anything), `GET /auth/permissions` (the routes the
//! caller's role may call, from the route table).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Principal;
use super::problem::{FieldError, JsonBody, Problem, QueryParams, lifecycle_problem, path_param};
use super::routes::{Access, ROUTES, Role};
use crate::audit::{Actor, AuditEntry};
use crate::export::audit_tail::AlertSource;
use crate::export::syslog::Alert;
use crate::policy::Format;

/// Anomalies the store keeps by default.
pub const DEFAULT_ANOMALY_CAPACITY: usize = 10_000;

/// Routes of this module (under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/anomalies", get(list))
        .route("/anomalies/{id}", get(get_one))
        .route("/anomalies/{id}/ack", post(ack))
        .route("/anomalies/{id}/dismiss", post(dismiss))
        .route("/policy/validate", post(validate))
        .route("/auth/permissions", get(permissions))
}

/// The flow an anomaly was raised on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyFlow {
    /// Source address.
    #[schema(value_type = String)]
    pub src: IpAddr,
    /// Destination address.
    #[schema(value_type = String)]
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port (ICMP: 0).
    pub sport: u16,
    /// Destination port (ICMP: 0).
    pub dport: u16,
    /// Application protocol the data plane identified (`modbus`, `smb`, …: the labels of flow
    /// records); empty when none was (and in records journaled before it was reported).
    #[serde(default)]
    pub l7: String,
}

/// One feature's part in a score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureContribution {
    /// Feature or feature group name (e.g. `timing`, `fan_out`).
    pub feature: String,
    /// Share of the score it explains (0..=1).
    pub contribution: f32,
    /// In an operator's words.
    pub text: String,
}

/// What the inference thread reports (the input of [`AnomalyStore::push`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewAnomaly {
    /// When it was scored (Unix ms).
    pub ts_ms: i64,
    /// The flow.
    pub flow: AnomalyFlow,
    /// The model's score.
    pub score: f32,
    /// The threshold it exceeded.
    pub threshold: f32,
    /// Model id.
    pub model_id: String,
    /// sha256 of the model file.
    pub model_hash: String,
    /// One line: the top reasons joined.
    pub summary: String,
    /// Top features with their contributions, largest first.
    pub explanation: Vec<FeatureContribution>,
}

/// Where an anomaly is in triage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyState {
    /// Not looked at yet.
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Not a problem (with a reason).
    Dismissed,
}

impl AnomalyState {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(AnomalyState::Open),
            "acknowledged" => Some(AnomalyState::Acknowledged),
            "dismissed" => Some(AnomalyState::Dismissed),
            _ => None,
        }
    }
}

/// A stored anomaly.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Anomaly {
    /// 1, 2, ... in arrival order.
    pub id: u64,
    /// What was reported.
    #[serde(flatten)]
    pub report: NewAnomaly,
    /// Triage state.
    pub state: AnomalyState,
    /// Who last changed the state (`user:<name>` / `token:<id>`).
    pub state_by: Option<String>,
    /// Why.
    pub state_reason: Option<String>,
    /// When (Unix ms).
    pub state_ms: Option<i64>,
}

#[derive(Debug)]
struct Inner {
    items: VecDeque<Anomaly>,
    next_id: u64,
    evicted: u64,
    /// Ids added or triaged since the journal last took them (bounded by the capacity: evicted
    /// ids are dropped when taken).
    dirty: BTreeSet<u64>,
}

/// Bounded store of anomalies (see the module docs).
#[derive(Debug)]
pub struct AnomalyStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Default for AnomalyStore {
    fn default() -> Self {
        AnomalyStore::new(DEFAULT_ANOMALY_CAPACITY)
    }
}

impl AnomalyStore {
    /// A store keeping at most `capacity` anomalies.
    pub fn new(capacity: usize) -> Self {
        AnomalyStore {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                next_id: 1,
                evicted: 0,
                dirty: BTreeSet::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a report as an open anomaly; returns its id. The oldest is evicted when full.
    pub fn push(&self, a: NewAnomaly) -> u64 {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        if g.items.len() >= self.capacity
            && let Some(old) = g.items.pop_front()
        {
            g.evicted += 1;
            g.dirty.remove(&old.id);
        }
        g.dirty.insert(id);
        g.items.push_back(Anomaly {
            id,
            report: a,
            state: AnomalyState::Open,
            state_by: None,
            state_reason: None,
            state_ms: None,
        });
        id
    }

    /// One anomaly.
    pub fn get(&self, id: u64) -> Option<Anomaly> {
        let g = self.lock();
        find(&g.items, id).map(|i| g.items[i].clone())
    }

    /// Newest first, optionally only in `state`, at most `limit`; plus the counts.
    pub fn list(&self, state: Option<AnomalyState>, limit: usize) -> AnomalyPage {
        let g = self.lock();
        let items = g
            .items
            .iter()
            .rev()
            .filter(|a| state.is_none_or(|s| a.state == s))
            .take(limit)
            .cloned()
            .collect();
        AnomalyPage {
            items,
            total: g.items.len() as u64,
            open: g
                .items
                .iter()
                .filter(|a| a.state == AnomalyState::Open)
                .count() as u64,
            evicted: g.evicted,
        }
    }

    /// Moves an anomaly to `state`; `None` when there is no such anomaly.
    pub fn set_state(
        &self,
        id: u64,
        state: AnomalyState,
        by: &str,
        reason: Option<String>,
        now_ms: i64,
    ) -> Option<Anomaly> {
        let mut g = self.lock();
        let i = find(&g.items, id)?;
        g.dirty.insert(id);
        let a = &mut g.items[i];
        a.state = state;
        a.state_by = Some(by.to_owned());
        a.state_reason = reason;
        a.state_ms = Some(now_ms);
        Some(a.clone())
    }

    /// The anomalies added or triaged since the last call (oldest first).
    fn take_dirty(&self) -> Vec<Anomaly> {
        let mut g = self.lock();
        let dirty = std::mem::take(&mut g.dirty);
        dirty
            .into_iter()
            .filter_map(|id| find(&g.items, id).map(|i| g.items[i].clone()))
            .collect()
    }

    /// Anomalies with an id above `after`, oldest first, at most `max`.
    fn after(&self, after: u64, max: usize) -> Vec<Anomaly> {
        let g = self.lock();
        g.items
            .iter()
            .filter(|a| a.id > after)
            .take(max)
            .cloned()
            .collect()
    }

    /// Puts back anomalies read from the journal (ids increasing); later ids continue after
    /// the largest.
    fn restore(&self, items: Vec<Anomaly>) {
        let mut g = self.lock();
        for a in items {
            g.next_id = g.next_id.max(a.id + 1);
            if g.items.back().is_some_and(|b| b.id >= a.id) {
                continue;
            }
            if g.items.len() >= self.capacity {
                g.items.pop_front();
            }
            g.items.push_back(a);
        }
    }
}

/// File name of the anomaly journal in the control data directory.
pub const ANOMALY_DB_FILE: &str = "anomalies.db";

/// The anomaly journal could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyDbError {
    /// SQLite failed.
    #[error("anomaly journal {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: rusqlite::Error,
    },
    /// A stored row does not decode.
    #[error("anomaly journal {path}: row {id}: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The row.
        id: i64,
        /// Why.
        detail: String,
    },
}

/// Durable copy of an [`AnomalyStore`] and the source of its audit records (module docs).
#[derive(Debug)]
pub struct AnomalyJournal {
    conn: rusqlite::Connection,
    path: PathBuf,
    capacity: usize,
    audited: u64,
}

const JOURNAL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS anomalies (
    id INTEGER PRIMARY KEY,
    report TEXT NOT NULL,
    state TEXT NOT NULL,
    state_by TEXT,
    state_reason TEXT,
    state_ms INTEGER
);
CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

fn state_str(s: AnomalyState) -> &'static str {
    match s {
        AnomalyState::Open => "open",
        AnomalyState::Acknowledged => "acknowledged",
        AnomalyState::Dismissed => "dismissed",
    }
}

impl AnomalyJournal {
    /// Opens (creating) `dir/anomalies.db`, keeping at most `capacity` anomalies.
    pub fn open(dir: &FsPath, capacity: usize) -> Result<Self, AnomalyDbError> {
        let path = dir.join(ANOMALY_DB_FILE);
        let err = |source| AnomalyDbError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = rusqlite::Connection::open(&path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(JOURNAL_SCHEMA).map_err(err)?;
        let audited: i64 = conn
            .query_row(
                "SELECT COALESCE((SELECT value FROM journal_meta WHERE key = 'audited'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        Ok(AnomalyJournal {
            conn,
            path,
            capacity: capacity.max(1),
            audited: u64::try_from(audited).unwrap_or(0),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> AnomalyDbError + '_ {
        |source| AnomalyDbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Refills `store` with the stored anomalies (the newest `capacity`).
    pub fn restore(&self, store: &AnomalyStore) -> Result<usize, AnomalyDbError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, report, state, state_by, state_reason, state_ms FROM anomalies \
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([i64::try_from(self.capacity).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .map_err(self.err())?;
        let mut items = Vec::new();
        for row in rows {
            let (id, report, state, state_by, state_reason, state_ms) = row.map_err(self.err())?;
            let corrupt = |detail: String| AnomalyDbError::Corrupt {
                path: self.path.clone(),
                id,
                detail,
            };
            let report: NewAnomaly =
                serde_json::from_str(&report).map_err(|e| corrupt(e.to_string()))?;
            let state = AnomalyState::parse(&state)
                .ok_or_else(|| corrupt(format!("unknown state {state:?}")))?;
            items.push(Anomaly {
                id: u64::try_from(id).map_err(|_| corrupt("negative id".into()))?,
                report,
                state,
                state_by,
                state_reason,
                state_ms,
            });
        }
        items.reverse();
        let n = items.len();
        store.restore(items);
        Ok(n)
    }

    /// Writes what changed in `store` since the last call (one transaction, oldest rows beyond
    /// the capacity pruned) and returns the audit entries of the alerts raised since the last
    /// [`Self::audited`] call: one per (model, source host, lead feature) group, at most
    /// `max_groups`, plus one `anomaly.suppressed` entry for the rest. Returns the entries and
    /// the id to pass to [`Self::audited`] once they are appended.
    pub fn sync(
        &mut self,
        store: &AnomalyStore,
        max_groups: usize,
    ) -> Result<(Vec<AuditEntry>, u64), AnomalyDbError> {
        let changed = store.take_dirty();
        if !changed.is_empty() {
            let tx = self
                .conn
                .transaction()
                .map_err(|source| AnomalyDbError::Sqlite {
                    path: self.path.clone(),
                    source,
                })?;
            let path = self.path.clone();
            let err = |source| AnomalyDbError::Sqlite {
                path: path.clone(),
                source,
            };
            {
                let mut put = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO anomalies \
                         (id, report, state, state_by, state_reason, state_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(err)?;
                for a in &changed {
                    let report = serde_json::to_string(&a.report).unwrap_or_default();
                    put.execute(rusqlite::params![
                        i64::try_from(a.id).unwrap_or(i64::MAX),
                        report,
                        state_str(a.state),
                        a.state_by,
                        a.state_reason,
                        a.state_ms,
                    ])
                    .map_err(err)?;
                }
            }
            let newest = changed.iter().map(|a| a.id).max().unwrap_or(0);
            let keep_from = newest.saturating_sub(self.capacity as u64 - 1);
            tx.execute(
                "DELETE FROM anomalies WHERE id < ?1",
                [i64::try_from(keep_from).unwrap_or(i64::MAX)],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        let fresh = store.after(self.audited, self.capacity);
        let upto = fresh.last().map_or(self.audited, |a| a.id);
        Ok((audit_entries(&fresh, max_groups), upto))
    }

    /// The audit entries up to anomaly `upto` were appended: remember it (survives restart).
    pub fn audited(&mut self, upto: u64) -> Result<(), AnomalyDbError> {
        if upto <= self.audited {
            return Ok(());
        }
        self.conn
            .execute(
                "INSERT OR REPLACE INTO journal_meta (key, value) VALUES ('audited', ?1)",
                [i64::try_from(upto).unwrap_or(i64::MAX)],
            )
            .map_err(self.err())?;
        self.audited = upto;
        Ok(())
    }
}

/// One audit entry per (model, source, lead feature) group of `fresh` alerts (oldest first),
/// at most `max_groups`, then one entry counting the alerts of the groups left out.
fn audit_entries(fresh: &[Anomaly], max_groups: usize) -> Vec<AuditEntry> {
    let mut groups: BTreeMap<(String, IpAddr, String), Vec<&Anomaly>> = BTreeMap::new();
    let mut order = Vec::new();
    for a in fresh {
        let lead = a
            .report
            .explanation
            .first()
            .map_or_else(String::new, |c| c.feature.clone());
        let k = (a.report.model_id.clone(), a.report.flow.src, lead);
        let g = groups.entry(k.clone()).or_default();
        if g.is_empty() {
            order.push(k);
        }
        g.push(a);
    }
    let mut out = Vec::new();
    let mut suppressed = (0usize, 0usize);
    for (i, k) in order.iter().enumerate() {
        let g = &groups[k];
        if i >= max_groups {
            suppressed.0 += 1;
            suppressed.1 += g.len();
            continue;
        }
        let (first, last) = (g[0], g[g.len() - 1]);
        let top = g
            .iter()
            .max_by(|a, b| a.report.score.total_cmp(&b.report.score))
            .unwrap_or(&first);
        let r = &top.report;
        let ids = if g.len() == 1 {
            format!("anomaly {}", first.id)
        } else {
            format!("{} anomalies, ids {}..{}", g.len(), first.id, last.id)
        };
        out.push(AuditEntry {
            actor: Actor::system("ml"),
            action: "anomaly.raise".into(),
            object: format!("anomaly/{}", first.id),
            before: None,
            after: None,
            reason: r.summary.clone(),
            result: "alert".into(),
            detail: format!(
                "{ids}; model {} sha256 {}; top score {:.3} > threshold {:.3} on {} {}:{} -> {}:{}{}",
                r.model_id,
                r.model_hash,
                r.score,
                r.threshold,
                r.flow.proto,
                r.flow.src,
                r.flow.sport,
                r.flow.dst,
                r.flow.dport,
                if r.flow.l7.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.flow.l7)
                }
            ),
        });
    }
    if suppressed.1 > 0 {
        out.push(AuditEntry {
            actor: Actor::system("ml"),
            action: "anomaly.suppressed".into(),
            object: "anomalies".into(),
            before: None,
            after: None,
            reason: "alert storm: audit records per interval are capped".into(),
            result: "aggregated".into(),
            detail: format!(
                "{} more alerts in {} groups (model, source, lead feature) beyond the {} audited \
                 this interval; all are in the anomaly list",
                suppressed.1, suppressed.0, max_groups
            ),
        });
    }
    out
}

/// Ids are increasing, so the position is found by binary search.
fn find(items: &VecDeque<Anomaly>, id: u64) -> Option<usize> {
    items.binary_search_by_key(&id, |a| a.id).ok()
}

impl AlertSource for AnomalyStore {
    fn alerts_after(&self, after: u64) -> Vec<(u64, Alert)> {
        let g = self.lock();
        g.items
            .iter()
            .filter(|a| a.id > after)
            .take(1000)
            .map(|a| {
                let r = &a.report;
                (
                    a.id,
                    Alert {
                        ts_ms: r.ts_ms,
                        kind: "anomaly".into(),
                        severity: severity(r.score, r.threshold),
                        src: r.flow.src.to_string(),
                        dst: r.flow.dst.to_string(),
                        message: format!(
                            "{} (model {}, score {:.3} > {:.3}, proto {} {} -> {}{}{})",
                            r.summary,
                            r.model_id,
                            r.score,
                            r.threshold,
                            r.flow.proto,
                            r.flow.sport,
                            r.flow.dport,
                            if r.flow.l7.is_empty() { "" } else { " " },
                            r.flow.l7
                        ),
                    },
                )
            })
            .collect()
    }
}

/// CEF-style 0..=10 severity: how far above its threshold the score is.
fn severity(score: f32, threshold: f32) -> u8 {
    let over = if threshold > 0.0 {
        score / threshold
    } else {
        2.0
    };
    match over {
        x if x >= 2.0 => 9,
        x if x >= 1.5 => 7,
        x if x >= 1.2 => 5,
        _ => 3,
    }
}

/// A page of anomalies.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AnomalyPage {
    /// Newest first.
    pub items: Vec<Anomaly>,
    /// Anomalies stored.
    pub total: u64,
    /// Of which open.
    pub open: u64,
    /// Anomalies evicted because the store was full.
    pub evicted: u64,
}

/// Acknowledge an anomaly.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Optional note.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Dismiss an anomaly.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DismissRequest {
    /// Why it is not a problem (mandatory).
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// Anomalies, newest first.
#[utoipa::path(get, path = "/api/v1/anomalies", operation_id = "list_anomalies", tag = "anomalies",
    params(("state" = Option<String>, Query, description = "open, acknowledged or dismissed"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "most items (default 200)")),
    responses((status = 200, body = AnomalyPage), (status = 400, body = Problem)))]
pub async fn list(State(st): State<AppState>, q: QueryParams) -> Result<Response, Problem> {
    q.only(&["state", "limit"])?;
    let state = match q.str("state") {
        None => None,
        Some(s) => Some(AnomalyState::parse(s).ok_or_else(|| {
            Problem::bad_param("state", "must be open, acknowledged or dismissed")
        })?),
    };
    let limit: usize = q.opt("limit")?.unwrap_or(200);
    if limit == 0 || limit > st.limits.max_page {
        return Err(Problem::bad_param(
            "limit",
            format!("must be between 1 and {}", st.limits.max_page),
        ));
    }
    Ok(Json(st.anomalies.list(state, limit)).into_response())
}

fn no_anomaly(id: u64) -> Problem {
    Problem::not_found(format!("no anomaly {id}"))
}

/// One anomaly.
#[utoipa::path(get, path = "/api/v1/anomalies/{id}", operation_id = "get_anomaly", tag = "anomalies",
    params(("id" = u64, Path, description = "anomaly id")),
    responses((status = 200, body = Anomaly), (status = 404, body = Problem)))]
pub async fn get_one(
    State(st): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    let id: u64 = path_param("id", &raw)?;
    let a = st.anomalies.get(id).ok_or_else(|| no_anomaly(id))?;
    Ok(Json(a).into_response())
}

async fn triage(
    st: AppState,
    who: Principal,
    raw: String,
    state: AnomalyState,
    reason: Option<String>,
) -> Result<Response, Problem> {
    let id: u64 = path_param("id", &raw)?;
    let action = match state {
        AnomalyState::Dismissed => "anomaly.dismiss",
        _ => "anomaly.ack",
    };
    let now = st.clock.now_ms();
    let by = who.actor.to_string();
    let updated = st.anomalies.set_state(id, state, &by, reason.clone(), now);
    let (result, detail) = match &updated {
        Some(a) => (
            "ok".to_owned(),
            format!(
                "model {} score {:.3}: {}",
                a.report.model_id, a.report.score, a.report.summary
            ),
        ),
        None => ("refused: no such anomaly".to_owned(), String::new()),
    };
    st.core
        .append(AuditEntry {
            actor: who.actor.clone(),
            action: action.into(),
            object: format!("anomaly/{id}"),
            before: None,
            after: None,
            reason: reason.unwrap_or_else(|| "(no reason given)".into()),
            result,
            detail,
        })
        .await?;
    let a = updated.ok_or_else(|| no_anomaly(id))?;
    Ok(Json(a).into_response())
}

/// Acknowledges an anomaly (audited).
#[utoipa::path(post, path = "/api/v1/anomalies/{id}/ack", operation_id = "ack_anomaly", tag = "anomalies", request_body = AckRequest,
    params(("id" = u64, Path, description = "anomaly id")),
    responses((status = 200, body = Anomaly), (status = 404, body = Problem)))]
pub async fn ack(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(raw): Path<String>,
    JsonBody(req): JsonBody<AckRequest>,
) -> Result<Response, Problem> {
    let reason = req.reason.filter(|r| !r.trim().is_empty());
    triage(st, who, raw, AnomalyState::Acknowledged, reason).await
}

/// Dismisses an anomaly with a reason (audited).
#[utoipa::path(post, path = "/api/v1/anomalies/{id}/dismiss", operation_id = "dismiss_anomaly", tag = "anomalies", request_body = DismissRequest,
    params(("id" = u64, Path, description = "anomaly id")),
    responses((status = 200, body = Anomaly), (status = 404, body = Problem)))]
pub async fn dismiss(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(raw): Path<String>,
    JsonBody(req): JsonBody<DismissRequest>,
) -> Result<Response, Problem> {
    if req.reason.trim().is_empty() {
        return Err(Problem::invalid_field("reason", "must not be empty"));
    }
    triage(st, who, raw, AnomalyState::Dismissed, Some(req.reason)).await
}

/// A policy to check without storing it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// The policy text (YAML or JSON).
    pub policy: String,
    /// `yaml` or `json` (default: JSON if the text starts with `{`, else YAML).
    #[serde(default)]
    pub format: Option<String>,
}

/// The outcome of a dry run.
#[derive(Serialize, ToSchema)]
pub struct ValidateResult {
    /// Whether the policy would be accepted by commit.
    pub valid: bool,
    /// What is wrong, field by field (`policy.spec...`, with line and column when known).
    pub errors: Vec<FieldError>,
    /// Zones in the policy (valid policies only).
    pub zones: usize,
    /// Conduits in the policy (valid policies only).
    pub conduits: usize,
    /// Compiled classifier rules (valid policies only).
    pub rules: usize,
}

/// Validates and compiles a policy like commit does, without storing, publishing or auditing.
/// An invalid policy is a 200 with `valid: false` and the errors.
#[utoipa::path(post, path = "/api/v1/policy/validate", operation_id = "validate_policy", tag = "policy", request_body = ValidateRequest,
    responses((status = 200, body = ValidateResult)))]
pub async fn validate(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<ValidateRequest>,
) -> Result<Response, Problem> {
    let format = match req.format.as_deref() {
        Some("yaml") => Format::Yaml,
        Some("json") => Format::Json,
        Some(_) => return Err(Problem::invalid_field("format", "must be yaml or json")),
        None if req.policy.trim_start().starts_with('{') => Format::Json,
        None => Format::Yaml,
    };
    let text = req.policy;
    let r = st
        .core
        .run(move |svc| svc.check(&text, format).map(|(v, c)| (v, c.table().len())))
        .await?;
    let out = match r {
        Ok((v, rules)) => ValidateResult {
            valid: true,
            errors: Vec::new(),
            zones: v.zones().len(),
            conduits: v.conduits().len(),
            rules,
        },
        Err(e) => {
            let p = lifecycle_problem(e, "policy");
            if p.status_code().is_server_error() {
                return Err(p);
            }
            let mut errors = p.errors;
            if errors.is_empty() {
                errors.push(FieldError::new("policy", p.detail));
            }
            ValidateResult {
                valid: false,
                errors,
                zones: 0,
                conduits: 0,
                rules: 0,
            }
        }
    };
    Ok((StatusCode::OK, Json(out)).into_response())
}

/// One route the caller may call.
#[derive(Serialize, ToSchema)]
pub struct Permission {
    /// HTTP method.
    pub method: String,
    /// Route path as in the OpenAPI document.
    pub path: String,
    /// Whether it changes state (and is audited).
    pub mutating: bool,
}

/// The caller's role and the routes it may call.
#[derive(Serialize, ToSchema)]
pub struct Permissions {
    /// The role.
    pub role: Role,
    /// Routes of `/api/v1` open to the role (from the same table the access check uses).
    pub allowed: Vec<Permission>,
}

/// The caller's permissions, from the route table that enforces them.
#[utoipa::path(get, path = "/api/v1/auth/permissions", operation_id = "my_permissions", tag = "auth",
    responses((status = 200, body = Permissions)))]
pub async fn permissions(Extension(who): Extension<Principal>) -> Json<Permissions> {
    let allowed = ROUTES
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/") && r.access != Access::Public)
        .filter(|r| r.access.allows(who.role))
        .map(|r| Permission {
            method: r.method.to_string(),
            path: r.path.to_owned(),
            mutating: r.mutating,
        })
        .collect();
    Json(Permissions {
        role: who.role,
        allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(score: f32) -> NewAnomaly {
        NewAnomaly {
            ts_ms: 5,
            flow: AnomalyFlow {
                src: "10.1.0.1".parse().unwrap(),
                dst: "10.2.0.1".parse().unwrap(),
                proto: 6,
                sport: 40000,
                dport: 502,
                l7: "modbus".into(),
            },
            score,
            threshold: 0.5,
            model_id: "m1".into(),
            model_hash: "ab".into(),
            summary: "new peer".into(),
            explanation: vec![FeatureContribution {
                feature: "fan_out".into(),
                contribution: 0.7,
                text: "talks to 40 new hosts".into(),
            }],
        }
    }

    /// A report journaled before alerts carried the protocol label reads back with an empty
    /// one; a current report keeps it.
    #[test]
    fn reports_without_a_protocol_label_still_read() {
        let mut old = serde_json::to_value(report(0.9)).unwrap();
        old["flow"].as_object_mut().unwrap().remove("l7");
        let back: NewAnomaly = serde_json::from_value(old).unwrap();
        assert_eq!(back.flow.l7, "");
        assert_eq!(back.flow.dport, 502);
        let now: NewAnomaly =
            serde_json::from_value(serde_json::to_value(report(0.9)).unwrap()).unwrap();
        assert_eq!(now.flow.l7, "modbus");
    }

    /// Alerts to the exports name the flow's protocol when it was identified.
    #[test]
    fn exported_alerts_name_the_protocol() {
        let s = AnomalyStore::new(4);
        s.push(report(0.9));
        let mut bare = report(0.8);
        bare.flow.l7.clear();
        s.push(bare);
        let got: Vec<String> = s
            .alerts_after(0)
            .into_iter()
            .map(|(_, a)| a.message)
            .collect();
        assert!(got[0].ends_with("proto 6 40000 -> 502 modbus)"), "{got:?}");
        assert!(got[1].ends_with("proto 6 40000 -> 502)"), "{got:?}");
    }

    #[test]
    fn store_is_bounded_newest_first_and_triage_changes_state() {
        let s = AnomalyStore::new(3);
        for i in 0..5 {
            assert_eq!(s.push(report(0.6 + i as f32)), i + 1);
        }
        let p = s.list(None, 10);
        assert_eq!(p.items.iter().map(|a| a.id).collect::<Vec<_>>(), [5, 4, 3]);
        assert_eq!((p.total, p.open, p.evicted), (3, 3, 2));
        assert!(s.get(1).is_none(), "evicted");
        let a = s
            .set_state(
                4,
                AnomalyState::Dismissed,
                "user:x",
                Some("known scanner".into()),
                9,
            )
            .unwrap();
        assert_eq!(a.state, AnomalyState::Dismissed);
        assert!(
            s.set_state(1, AnomalyState::Acknowledged, "u", None, 9)
                .is_none()
        );
        let open = s.list(Some(AnomalyState::Open), 10);
        assert_eq!(open.items.iter().map(|a| a.id).collect::<Vec<_>>(), [5, 3]);
        assert_eq!(open.open, 2);
        // Syslog reads by id.
        let after: Vec<u64> = s.alerts_after(3).into_iter().map(|(id, _)| id).collect();
        assert_eq!(after, [4, 5]);
        let (_, alert) = &s.alerts_after(4)[0];
        assert_eq!(alert.severity, 9);
        assert!(alert.message.contains("model m1"));
    }

    fn from(src: &str, feature: &str) -> NewAnomaly {
        let mut r = report(0.9);
        r.flow.src = src.parse().unwrap();
        r.explanation[0].feature = feature.into();
        r
    }

    #[test]
    fn the_journal_survives_a_restart_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = AnomalyStore::new(3);
        let mut j = AnomalyJournal::open(dir.path(), 3).unwrap();
        for i in 0..4 {
            s.push(report(0.6 + i as f32));
        }
        s.set_state(
            4,
            AnomalyState::Acknowledged,
            "user:ann",
            Some("on it".into()),
            7,
        );
        let (entries, upto) = j.sync(&s, 10).unwrap();
        assert_eq!(upto, 4);
        assert_eq!(
            entries.len(),
            1,
            "one group: same model, source, lead feature"
        );
        j.audited(upto).unwrap();
        // Triaged after the sync: written by the next one.
        s.set_state(
            2,
            AnomalyState::Dismissed,
            "user:bob",
            Some("test".into()),
            8,
        );
        let (entries, _) = j.sync(&s, 10).unwrap();
        assert!(entries.is_empty(), "nothing new to audit");
        drop(j);

        let restored = AnomalyStore::new(3);
        let mut j = AnomalyJournal::open(dir.path(), 3).unwrap();
        assert_eq!(
            j.restore(&restored).unwrap(),
            3,
            "bounded: the oldest was pruned"
        );
        let p = restored.list(None, 10);
        assert_eq!(p.items.iter().map(|a| a.id).collect::<Vec<_>>(), [4, 3, 2]);
        assert_eq!(p.items[0].state, AnomalyState::Acknowledged);
        assert_eq!(p.items[0].state_reason.as_deref(), Some("on it"));
        assert_eq!(p.items[2].state, AnomalyState::Dismissed);
        assert_eq!(p.items[1].report, report(2.6));
        // Ids continue; the audited position survived (only the new alert is audited).
        assert_eq!(restored.push(report(0.7)), 5);
        let (entries, upto) = j.sync(&restored, 10).unwrap();
        assert_eq!((entries.len(), upto), (1, 5));
        assert_eq!(entries[0].object, "anomaly/5");
    }

    #[test]
    fn an_alert_storm_costs_a_bounded_number_of_audit_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = AnomalyStore::new(10_000);
        let mut j = AnomalyJournal::open(dir.path(), 10_000).unwrap();
        // 2,000 alerts from 200 scanning hosts, plus 3 from one host on another feature.
        for i in 0..2_000 {
            s.push(from(
                &format!("10.9.{}.{}", i % 200 / 250, i % 200),
                "fan_out",
            ));
        }
        for _ in 0..3 {
            s.push(from("10.9.0.1", "industrial functions"));
        }
        let (entries, upto) = j.sync(&s, 20).unwrap();
        assert_eq!(upto, 2_003);
        assert_eq!(entries.len(), 21, "20 groups and one suppressed record");
        let first = &entries[0];
        assert_eq!(first.action, "anomaly.raise");
        assert_eq!(first.object, "anomaly/1");
        assert!(
            first
                .detail
                .starts_with("10 anomalies, ids 1..1801; model m1 sha256 ab"),
            "{}",
            first.detail
        );
        assert!(
            first.detail.ends_with(":40000 -> 10.2.0.1:502 (modbus)"),
            "the flow and its protocol: {}",
            first.detail
        );
        let last = &entries[20];
        assert_eq!(last.action, "anomaly.suppressed");
        assert!(
            last.detail.starts_with("1803 more alerts in 181 groups"),
            "{}",
            last.detail
        );
        // A single alert is named by its id.
        let one = audit_entries(&s.after(2_002, 10), 20);
        assert_eq!(one.len(), 1);
        assert!(
            one[0].detail.starts_with("anomaly 2003;"),
            "{}",
            one[0].detail
        );
    }
}
