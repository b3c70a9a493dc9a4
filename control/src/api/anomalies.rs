//! Anomaly routes and the store the inference thread pushes into, plus small routes the web
//! console needs: a policy dry-run validation and the caller's permissions.
//!
//! **The store.** [`AnomalyStore`] is a bounded in-memory list of [`Anomaly`] records (oldest
//! evicted first, counted), written by the inference thread through [`AnomalyStore::push`]
//! (one short lock, no I/O: the thread never waits on the API) and read and triaged by the API:
//! acknowledge, or dismiss with a reason. Triage is audited (one record per call). The store
//! does not survive a restart; alerts are also sent to syslog when one is configured.
//!
//! Routes: `GET /anomalies` (filter by state), `GET /anomalies/{id}`,
//! `POST /anomalies/{id}/ack`, `POST /anomalies/{id}/dismiss`, `POST /policy/validate`
//! (validate + compile without storing anything), `GET /auth/permissions` (the routes the
//! caller's role may call, from the route table).

use std::collections::VecDeque;
use std::net::IpAddr;
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
use crate::audit::AuditEntry;
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
        if g.items.len() >= self.capacity {
            g.items.pop_front();
            g.evicted += 1;
        }
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
        let a = &mut g.items[i];
        a.state = state;
        a.state_by = Some(by.to_owned());
        a.state_reason = reason;
        a.state_ms = Some(now_ms);
        Some(a.clone())
    }
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
                            "{} (model {}, score {:.3} > {:.3}, proto {} {} -> {})",
                            r.summary,
                            r.model_id,
                            r.score,
                            r.threshold,
                            r.flow.proto,
                            r.flow.sport,
                            r.flow.dport
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
}
