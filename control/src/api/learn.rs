//! Learning routes: policy recommendations from the flow history, rule usage, evidence packs and
//! the status of the learning feed and exports.
//!
//! * `POST /recommendations` generates a proposal from the history (`DATA/history.db`) over a
//!   window (default: the last 7 days) and keeps it in a bounded in-memory list (the newest
//!   [`MAX_RECOMMENDATIONS`]; a restart forgets unapproved proposals, the history stays);
//! * `GET /recommendations`, `GET /recommendations/{id}`: the proposals, and one with its zones,
//!   endpoints (confidence and reason) and conduits (services, coverage, example flows, caveats);
//! * `POST /recommendations/{id}/approve` stages the proposal, minus the conduits named in
//!   `rejected`, as a **staged revision** through the normal lifecycle (validate, compile,
//!   store, audit); it is enforced only by a later `POST /policy/commit` after the impact
//!   preview. `POST /recommendations/{id}/reject` closes a proposal;
//! * `GET /usage`: hit counters per policy clause (surviving revisions and restarts) and the
//!   clauses of the running policy without a hit since `since_ms`;
//! * `GET /evidence`: an evidence pack over a window (`evidence.json`, or `report.html` with
//!   `format=html`), generated from the audit log and history exactly like `septa evidence`;
//! * `GET /learn/status`: feed counters (queued, dropped, ingested), syslog counters, the
//!   configured exports.
//!
//! Every mutation appends exactly one audit record: generate and reject here, approve through
//! the core's stage (its record carries the approval reason), and a refused call (unknown id)
//! one `refused` record.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Principal;
use super::policy::RevisionView;
use super::problem::{FieldError, JsonBody, Problem, QueryParams, lifecycle_problem, path_param};
use crate::audit::{Actor, AuditEntry};
use crate::evidence::{self, DataDir};
use crate::export::audit_tail::{SyslogStats, SyslogStatsSnapshot};
use crate::history::feed::{FeedStats, FeedStatsSnapshot};
use crate::history::usage::clause_key;
use crate::history::{FlowHistory, HistoryConfig};
use crate::policy::dto::ModeName;
use crate::policy::{Format, PolicyDocument};
use crate::recommend::{KnownZones, RecommendOptions, Recommendation, recommend};

/// Proposals kept in memory (oldest dropped first).
pub const MAX_RECOMMENDATIONS: usize = 32;
/// Most flow aggregates one proposal reads from the history.
pub const MAX_AGGREGATES: usize = 2_000_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Routes of this module (under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/recommendations", get(list).post(generate))
        .route("/recommendations/{id}", get(show))
        .route("/recommendations/{id}/approve", post(approve))
        .route("/recommendations/{id}/reject", post(reject))
        .route("/usage", get(usage))
        .route("/evidence", get(evidence_pack))
        .route("/learn/status", get(status))
}

/// What the learning routes share: where the history is, the proposals, the feed's counters.
#[derive(Debug, Default)]
pub struct LearnState {
    proposals: Mutex<VecDeque<Stored>>,
    next_id: Mutex<u64>,
    /// Counters of the feed into the history (`None` when nothing feeds it, e.g. in tests).
    pub feed: Option<Arc<FeedStats>>,
    /// Counters of the syslog export, when configured.
    pub syslog: Option<Arc<SyslogStats>>,
    /// The configured exports, in words (`ipfix → 192.0.2.1:4739`); empty: nothing leaves.
    pub exports: Vec<String>,
}

#[derive(Debug)]
struct Stored {
    summary: RecommendationSummary,
    proposal: Arc<Recommendation>,
}

impl LearnState {
    /// A state reporting `feed`, `syslog` and `exports` in `/learn/status`.
    pub fn new(
        feed: Option<Arc<FeedStats>>,
        syslog: Option<Arc<SyslogStats>>,
        exports: Vec<String>,
    ) -> Self {
        LearnState {
            feed,
            syslog,
            exports,
            ..LearnState::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Stored>> {
        self.proposals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, mut summary: RecommendationSummary, proposal: Recommendation) -> u64 {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
            *n += 1;
            *n
        };
        summary.id = id;
        let mut g = self.lock();
        if g.len() >= MAX_RECOMMENDATIONS {
            g.pop_front();
        }
        g.push_back(Stored {
            summary,
            proposal: Arc::new(proposal),
        });
        id
    }

    fn get(&self, id: u64) -> Option<(RecommendationSummary, Arc<Recommendation>)> {
        self.lock()
            .iter()
            .find(|s| s.summary.id == id)
            .map(|s| (s.summary.clone(), Arc::clone(&s.proposal)))
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut RecommendationSummary)) {
        if let Some(s) = self.lock().iter_mut().find(|s| s.summary.id == id) {
            f(&mut s.summary);
        }
    }
}

/// Where a proposal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Waiting for review.
    Pending,
    /// Staged as a revision.
    Approved,
    /// Closed without staging.
    Rejected,
}

/// A proposal at a glance.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RecommendationSummary {
    /// 1, 2, ... since the control plane started.
    pub id: u64,
    /// When it was generated (Unix ms).
    pub created_ms: i64,
    /// Who asked for it.
    pub created_by: String,
    /// Why.
    pub reason: String,
    /// Observation window start (Unix ms).
    pub from_ms: i64,
    /// Observation window end (Unix ms).
    pub to_ms: i64,
    /// Review state.
    pub status: ProposalStatus,
    /// The staged revision, once approved.
    pub staged_revision: Option<i64>,
    /// Proposed zones.
    pub zones: usize,
    /// Proposed conduits.
    pub conduits: usize,
    /// Endpoints placed.
    pub endpoints: usize,
    /// Observed flows (allowed or would-deny) in the window.
    pub observed_flows: u64,
    /// Share of them the proposal permits (percent).
    pub coverage_pct: f64,
    /// Proposal-wide caveats (e.g. a window too short to have seen periodic flows).
    pub caveats: Vec<String>,
}

/// A proposed zone.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ZoneView {
    /// Zone name.
    pub name: String,
    /// What it is written as (CIDR prefixes).
    pub prefixes: Vec<String>,
    /// Observed members.
    pub members: Vec<String>,
    /// Why these endpoints belong together.
    pub reason: String,
    /// Mean member confidence (0..=1).
    pub confidence: f64,
}

/// Where one endpoint was put.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EndpointView {
    /// The address.
    pub address: String,
    /// Its proposed zone.
    pub zone: String,
    /// 0..=1: how typical its behaviour is of the zone.
    pub confidence: f64,
    /// In words.
    pub reason: String,
}

/// An observed flow aggregate a conduit covers.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EvidenceFlow {
    /// Source.
    pub src: String,
    /// Destination.
    pub dst: String,
    /// IP protocol.
    pub proto: u8,
    /// Destination port.
    pub dport: u16,
    /// L7 label (empty when none).
    pub l7: String,
}

/// A proposed conduit.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConduitView {
    /// Name (also what `rejected` names).
    pub name: String,
    /// Source zone.
    pub from: String,
    /// Destination zone.
    pub to: String,
    /// Services, as `tcp/443`, `udp/53`, `icmp`.
    pub services: Vec<String>,
    /// Flows it covers.
    pub flows: u64,
    /// Bytes it covers.
    pub bytes: u64,
    /// Share of observed flows (percent).
    pub coverage_pct: f64,
    /// First seen (Unix ms).
    pub first_ms: i64,
    /// Last seen (Unix ms).
    pub last_ms: i64,
    /// Flows that justify it (up to 10, key order).
    pub evidence: Vec<EvidenceFlow>,
    /// L7 labels seen.
    pub l7_labels: Vec<String>,
    /// What to check before accepting it.
    pub caveats: Vec<String>,
}

/// A proposal in full.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RecommendationDetail {
    /// The summary.
    pub summary: RecommendationSummary,
    /// Zones.
    pub zones: Vec<ZoneView>,
    /// Endpoints.
    pub endpoints: Vec<EndpointView>,
    /// Conduits.
    pub conduits: Vec<ConduitView>,
    /// The policy document approve would stage (all conduits accepted).
    pub document: PolicyDocument,
}

fn detail(summary: RecommendationSummary, r: &Recommendation) -> RecommendationDetail {
    let document = r.document(&BTreeSet::new());
    RecommendationDetail {
        summary,
        zones: r
            .zones
            .iter()
            .map(|z| ZoneView {
                name: z.name.clone(),
                prefixes: z.prefixes.iter().map(ToString::to_string).collect(),
                members: z.members.iter().map(ToString::to_string).collect(),
                reason: z.reason.clone(),
                confidence: z.confidence,
            })
            .collect(),
        endpoints: r
            .endpoints
            .iter()
            .map(|e| EndpointView {
                address: e.address.to_string(),
                zone: e.zone.clone(),
                confidence: e.confidence,
                reason: e.reason.clone(),
            })
            .collect(),
        conduits: r
            .conduits
            .iter()
            .map(|c| ConduitView {
                name: c.name.clone(),
                from: c.from.clone(),
                to: c.to.clone(),
                services: c
                    .services
                    .iter()
                    .flat_map(|s| {
                        let proto = serde_json::to_value(s.proto)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        if s.ports.is_empty() {
                            vec![proto]
                        } else {
                            s.ports.iter().map(|p| format!("{proto}/{p}")).collect()
                        }
                    })
                    .collect(),
                flows: c.flows,
                bytes: c.bytes,
                coverage_pct: c.coverage_pct,
                first_ms: c.first_ms,
                last_ms: c.last_ms,
                evidence: c
                    .examples
                    .iter()
                    .map(|k| EvidenceFlow {
                        src: k.src.to_string(),
                        dst: k.dst.to_string(),
                        proto: k.proto,
                        dport: k.dport,
                        l7: k.l7.clone(),
                    })
                    .collect(),
                l7_labels: c.l7_labels.clone(),
                caveats: c.caveats.clone(),
            })
            .collect(),
        document,
    }
}

/// Generate a proposal.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// Window start (Unix ms; default `to_ms` minus 7 days).
    #[serde(default)]
    pub from_ms: Option<i64>,
    /// Window end (Unix ms; default now).
    #[serde(default)]
    pub to_ms: Option<i64>,
    /// Why (recorded in the audit log).
    #[schema(pattern = r"\S")]
    pub reason: String,
    /// Name of the proposed policy (default `recommended`).
    #[serde(default)]
    pub policy_name: Option<String>,
    /// `enforce` (default) or `monitor`: the proposed policy's default mode.
    #[serde(default)]
    pub mode: Option<String>,
}

/// Approve a proposal: stage it without the rejected conduits.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Why (recorded in the staged revision and the audit log).
    #[schema(pattern = r"\S")]
    pub reason: String,
    /// Names of conduits to leave out.
    #[serde(default)]
    pub rejected: Vec<String>,
}

/// Close a proposal.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Why.
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// The staged revision an approval made.
#[derive(Serialize, ToSchema)]
pub struct ApproveResult {
    /// The proposal.
    pub recommendation: u64,
    /// The staged revision: preview it with `POST /policy/impact`, enforce it with
    /// `POST /policy/commit`.
    pub revision: RevisionView,
}

fn entry(
    actor: &Actor,
    action: &str,
    object: String,
    reason: String,
    result: String,
) -> AuditEntry {
    AuditEntry {
        actor: actor.clone(),
        action: action.into(),
        object,
        before: None,
        after: None,
        reason,
        result,
        detail: String::new(),
    }
}

fn required_reason(r: &str) -> Result<(), Problem> {
    if r.trim().is_empty() {
        return Err(Problem::invalid_field("reason", "must not be empty"));
    }
    Ok(())
}

fn history_dir(st: &AppState) -> PathBuf {
    st.data_dir.clone()
}

/// Generates a proposal from the flow history (audited).
#[utoipa::path(post, path = "/api/v1/recommendations", operation_id = "create_recommendation", tag = "learn", request_body = GenerateRequest,
    responses((status = 201, body = RecommendationSummary), (status = 422, body = Problem)))]
pub async fn generate(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    JsonBody(req): JsonBody<GenerateRequest>,
) -> Result<Response, Problem> {
    required_reason(&req.reason)?;
    let now = st.clock.now_ms();
    let to_ms = req.to_ms.unwrap_or(now);
    let from_ms = req.from_ms.unwrap_or(to_ms.saturating_sub(7 * DAY_MS));
    if from_ms >= to_ms {
        return Err(Problem::invalid_field("from_ms", "must be before to_ms"));
    }
    let mode = match req.mode.as_deref() {
        None | Some("enforce") => ModeName::Enforce,
        Some("monitor") => ModeName::Monitor,
        Some(_) => return Err(Problem::invalid_field("mode", "must be enforce or monitor")),
    };
    let name = req.policy_name.unwrap_or_else(|| "recommended".into());
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Problem::invalid_field(
            "policy_name",
            "lower-case letters, digits and '-', at most 63",
        ));
    }
    let dir = history_dir(&st);
    // The running policy's zones and endpoint labels: placed endpoints keep their zone.
    let running = st
        .core
        .run(|svc| {
            let info = svc.running()?.clone();
            svc.get(info.id).ok().map(|r| r.content)
        })
        .await?;
    let known = running.and_then(|content| {
        let text = String::from_utf8(content).ok()?;
        crate::policy::parse_policy(&text, crate::policy::Format::Json).ok()
    });
    let opts = RecommendOptions {
        from_ms,
        to_ms,
        policy_name: name,
        mode,
        labels: known.as_ref().map(KnownZones::labels).unwrap_or_default(),
        known: known.as_ref().map(KnownZones::from_policy),
        ..RecommendOptions::default()
    };
    let (rec, truncated) = tokio::task::spawn_blocking(move || {
        let h = FlowHistory::open(&dir, HistoryConfig::default())
            .map_err(|e| Problem::internal("opening the flow history", &e))?;
        let mut aggs = h
            .query(from_ms, to_ms, MAX_AGGREGATES + 1)
            .map_err(|e| Problem::internal("reading the flow history", &e))?;
        let truncated = aggs.len() > MAX_AGGREGATES;
        aggs.truncate(MAX_AGGREGATES);
        Ok::<_, Problem>((recommend(&aggs, &opts), truncated))
    })
    .await
    .map_err(|e| Problem::internal("a recommendation task", &e))??;
    let mut caveats = rec.caveats.clone();
    if truncated {
        caveats.push(format!(
            "only the first {MAX_AGGREGATES} flow aggregates of the window were read"
        ));
    }
    let summary = RecommendationSummary {
        id: 0,
        created_ms: now,
        created_by: who.actor.to_string(),
        reason: req.reason.clone(),
        from_ms,
        to_ms,
        status: ProposalStatus::Pending,
        staged_revision: None,
        zones: rec.zones.len(),
        conduits: rec.conduits.len(),
        endpoints: rec.endpoints.len(),
        observed_flows: rec.observed_flows,
        coverage_pct: rec.coverage_pct,
        caveats,
    };
    let id = st.learn.insert(summary, rec);
    let (summary, _) = st
        .learn
        .get(id)
        .ok_or_else(|| Problem::internal("storing a proposal", &"evicted at once"))?;
    let mut e = entry(
        &who.actor,
        "learn.recommend",
        format!("recommendation/{id}"),
        req.reason,
        "ok".into(),
    );
    e.detail = format!(
        "window {from_ms}..{to_ms}: {} zone(s), {} conduit(s), {} observed flow(s), {}% coverage",
        summary.zones, summary.conduits, summary.observed_flows, summary.coverage_pct
    );
    st.core.append(e).await?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

/// The proposals, newest first.
#[utoipa::path(get, path = "/api/v1/recommendations", operation_id = "list_recommendations", tag = "learn",
    responses((status = 200, body = Vec<RecommendationSummary>)))]
pub async fn list(State(st): State<AppState>) -> Json<Vec<RecommendationSummary>> {
    Json(
        st.learn
            .lock()
            .iter()
            .rev()
            .map(|s| s.summary.clone())
            .collect(),
    )
}

fn no_proposal(id: u64) -> Problem {
    Problem::not_found(format!("no recommendation {id}"))
}

/// One proposal with its zones, endpoints, conduits and evidence flows.
#[utoipa::path(get, path = "/api/v1/recommendations/{id}", operation_id = "get_recommendation", tag = "learn",
    params(("id" = u64, Path, description = "recommendation id")),
    responses((status = 200, body = RecommendationDetail), (status = 404, body = Problem)))]
pub async fn show(
    State(st): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    let id: u64 = path_param("id", &raw)?;
    let (summary, rec) = st.learn.get(id).ok_or_else(|| no_proposal(id))?;
    Ok(Json(detail(summary, &rec)).into_response())
}

async fn refuse(st: &AppState, who: &Principal, action: &str, id: u64, reason: String) -> Problem {
    let e = entry(
        &who.actor,
        action,
        format!("recommendation/{id}"),
        reason,
        "refused: no such recommendation".into(),
    );
    match st.core.append(e).await {
        Ok(()) => no_proposal(id),
        Err(p) => p,
    }
}

/// Stages the proposal (minus `rejected` conduits) as a new staged revision.
#[utoipa::path(post, path = "/api/v1/recommendations/{id}/approve", operation_id = "approve_recommendation", tag = "learn", request_body = ApproveRequest,
    params(("id" = u64, Path, description = "recommendation id")),
    responses((status = 201, body = ApproveResult), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn approve(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(raw): Path<String>,
    JsonBody(req): JsonBody<ApproveRequest>,
) -> Result<Response, Problem> {
    let id: u64 = path_param("id", &raw)?;
    required_reason(&req.reason)?;
    let Some((summary, rec)) = st.learn.get(id) else {
        return Err(refuse(&st, &who, "learn.approve", id, req.reason).await);
    };
    if summary.status != ProposalStatus::Pending {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "recommendation-closed",
            "Recommendation already reviewed",
            format!("recommendation {id} is {:?}", summary.status).to_lowercase(),
        ));
    }
    let names: BTreeSet<&str> = rec.conduits.iter().map(|c| c.name.as_str()).collect();
    let mut errors = Vec::new();
    for (i, n) in req.rejected.iter().enumerate() {
        if !names.contains(n.as_str()) {
            errors.push(FieldError::new(
                format!("rejected[{i}]"),
                format!("no conduit `{n}` in recommendation {id}"),
            ));
        }
    }
    if !errors.is_empty() {
        let mut p = Problem::invalid_field("rejected", "names a conduit the proposal lacks");
        p.errors = errors;
        return Err(p);
    }
    let rejected: BTreeSet<String> = req.rejected.into_iter().collect();
    let doc = rec.document(&rejected);
    let text =
        serde_json::to_string(&doc).map_err(|e| Problem::internal("encoding a proposal", &e))?;
    let reason = format!("recommendation {id} approved: {}", req.reason);
    let actor = who.actor.clone();
    let info = st
        .core
        .run(move |svc| {
            svc.stage(&text, Format::Json, &actor, &reason)
                .map_err(|e| lifecycle_problem(e, "recommendation"))
        })
        .await??;
    st.learn.update(id, |s| {
        s.status = ProposalStatus::Approved;
        s.staged_revision = Some(info.id);
    });
    let body = ApproveResult {
        recommendation: id,
        revision: info.into(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Closes a proposal without staging it (audited).
#[utoipa::path(post, path = "/api/v1/recommendations/{id}/reject", operation_id = "reject_recommendation", tag = "learn", request_body = RejectRequest,
    params(("id" = u64, Path, description = "recommendation id")),
    responses((status = 200, body = RecommendationSummary), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn reject(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(raw): Path<String>,
    JsonBody(req): JsonBody<RejectRequest>,
) -> Result<Response, Problem> {
    let id: u64 = path_param("id", &raw)?;
    required_reason(&req.reason)?;
    let Some((summary, _)) = st.learn.get(id) else {
        return Err(refuse(&st, &who, "learn.reject", id, req.reason).await);
    };
    if summary.status != ProposalStatus::Pending {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "recommendation-closed",
            "Recommendation already reviewed",
            format!("recommendation {id} is {:?}", summary.status).to_lowercase(),
        ));
    }
    st.core
        .append(entry(
            &who.actor,
            "learn.reject",
            format!("recommendation/{id}"),
            req.reason,
            "ok".into(),
        ))
        .await?;
    st.learn.update(id, |s| s.status = ProposalStatus::Rejected);
    let (summary, _) = st.learn.get(id).ok_or_else(|| no_proposal(id))?;
    Ok(Json(summary).into_response())
}

/// One clause's hit counter.
#[derive(Serialize, ToSchema)]
pub struct ClauseHits {
    /// Policy name.
    pub policy: String,
    /// Stable clause key (`conduit/<name>/<from>-><to>/service[<i>]`, `zone-default/<zone>`).
    pub clause: String,
    /// Field path in the running policy (`spec.conduits[2].services[0]`), when the clause is
    /// still in it.
    pub path: Option<String>,
    /// The clause in words.
    pub text: String,
    /// Flows it decided.
    pub hits: u64,
    /// First hit (Unix ms).
    pub first_ms: i64,
    /// Last hit (Unix ms).
    pub last_ms: i64,
    /// Revision of the last hit.
    pub last_revision: String,
}

/// A clause of the running policy without a hit in the window.
#[derive(Serialize, ToSchema)]
pub struct UnusedRule {
    /// Stable clause key.
    pub clause: String,
    /// Field path in the running policy.
    pub path: String,
    /// The clause in words.
    pub text: String,
    /// Last hit ever (before the window), if any.
    pub last_hit_ms: Option<i64>,
}

/// Rule usage.
#[derive(Serialize, ToSchema)]
pub struct UsageView {
    /// Start of the unused-rule window (Unix ms).
    pub since_ms: i64,
    /// Every counter, by policy and clause.
    pub counters: Vec<ClauseHits>,
    /// Clauses of the running policy with no hit since `since_ms` (never the final default).
    pub unused: Vec<UnusedRule>,
}

/// Hit counters per policy clause and the unused-rule report.
#[utoipa::path(get, path = "/api/v1/usage", operation_id = "rule_usage", tag = "learn",
    params(("since_ms" = Option<i64>, Query, description = "unused-rule window start (default: 30 days ago)")),
    responses((status = 200, body = UsageView), (status = 400, body = Problem)))]
pub async fn usage(State(st): State<AppState>, q: QueryParams) -> Result<Response, Problem> {
    q.only(&["since_ms"])?;
    let since_ms: i64 = q
        .opt("since_ms")?
        .unwrap_or_else(|| st.clock.now_ms().saturating_sub(30 * DAY_MS));
    let running = st.core.run(|svc| svc.running_table().cloned()).await?;
    let dir = history_dir(&st);
    let view = tokio::task::spawn_blocking(move || {
        let h = FlowHistory::open(&dir, HistoryConfig::default())
            .map_err(|e| Problem::internal("opening the flow history", &e))?;
        let all = h
            .usage()
            .map_err(|e| Problem::internal("reading rule usage", &e))?;
        let paths: std::collections::BTreeMap<(String, String), String> = running
            .as_ref()
            .map(|c| {
                c.clauses()
                    .iter()
                    .map(|cl| ((cl.policy.clone(), clause_key(&cl.kind)), cl.path.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let counters = all
            .into_iter()
            .map(|u| ClauseHits {
                path: paths.get(&(u.policy.clone(), u.clause.clone())).cloned(),
                policy: u.policy,
                clause: u.clause,
                text: u.text,
                hits: u.hits,
                first_ms: u.first_ms,
                last_ms: u.last_ms,
                last_revision: u.last_revision,
            })
            .collect();
        let unused = match &running {
            Some(c) => h
                .unused(c, since_ms)
                .map_err(|e| Problem::internal("reading rule usage", &e))?
                .into_iter()
                .map(|u| UnusedRule {
                    clause: u.clause,
                    path: u.path,
                    text: u.text,
                    last_hit_ms: u.last_hit_ms,
                })
                .collect(),
            None => Vec::new(),
        };
        Ok::<_, Problem>(UsageView {
            since_ms,
            counters,
            unused,
        })
    })
    .await
    .map_err(|e| Problem::internal("a usage task", &e))??;
    Ok(Json(view).into_response())
}

/// An evidence pack over a window: `evidence.json` (default) or `report.html` (`format=html`),
/// generated from the audit log (which must verify) and the flow history.
#[utoipa::path(get, path = "/api/v1/evidence", operation_id = "evidence_pack", tag = "learn",
    params(("from_ms" = i64, Query, description = "window start (Unix ms)"),
        ("to_ms" = Option<i64>, Query, description = "window end (Unix ms; default now)"),
        ("format" = Option<String>, Query, description = "json (default) or html")),
    responses((status = 200, description = "evidence.json or report.html",
            content((evidence::EvidencePack = "application/json"), (String = "text/html"))),
        (status = 400, body = Problem), (status = 422, body = Problem)))]
pub async fn evidence_pack(
    State(st): State<AppState>,
    q: QueryParams,
) -> Result<Response, Problem> {
    q.only(&["from_ms", "to_ms", "format"])?;
    let now = st.clock.now_ms();
    let from_ms: i64 = q.req("from_ms")?;
    let to_ms: i64 = q.opt("to_ms")?.unwrap_or(now);
    let html = match q.str("format") {
        None | Some("json") => false,
        Some("html") => true,
        Some(_) => return Err(Problem::bad_param("format", "must be json or html")),
    };
    if from_ms >= to_ms {
        return Err(Problem::bad_param("from_ms", "must be before to_ms"));
    }
    let data = DataDir {
        root: st.data_dir.clone(),
    };
    let pack = tokio::task::spawn_blocking(move || evidence::generate(&data, from_ms, to_ms, now))
        .await
        .map_err(|e| Problem::internal("an evidence task", &e))?
        .map_err(|e| match e {
            evidence::EvidenceError::Window { .. } => {
                Problem::bad_param("from_ms", "must be before to_ms")
            }
            e => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "evidence-unavailable",
                "Evidence pack could not be made",
                e.to_string(),
            ),
        })?;
    if html {
        let body = evidence::html::render(&pack);
        return Ok((
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"report.html\"",
                ),
            ],
            body,
        )
            .into_response());
    }
    let body =
        serde_json::to_vec_pretty(&pack).map_err(|e| Problem::internal("encoding a pack", &e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"evidence.json\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The learning feed and exports.
#[derive(Serialize, ToSchema)]
pub struct LearnStatus {
    /// Feed into the history (absent when nothing feeds it).
    pub feed: Option<FeedStatsSnapshot>,
    /// Syslog export (absent when not configured).
    pub syslog: Option<SyslogStatsSnapshot>,
    /// Configured exports; empty means nothing observed leaves the appliance.
    pub exports: Vec<String>,
    /// Proposals held.
    pub recommendations: usize,
}

/// Counters of the learning feed and the configured exports.
#[utoipa::path(get, path = "/api/v1/learn/status", operation_id = "learn_status", tag = "learn",
    responses((status = 200, body = LearnStatus)))]
pub async fn status(State(st): State<AppState>) -> Json<LearnStatus> {
    Json(LearnStatus {
        feed: st.learn.feed.as_ref().map(|f| f.snapshot()),
        syslog: st.learn.syslog.as_ref().map(|s| s.snapshot()),
        exports: st.learn.exports.clone(),
        recommendations: st.learn.lock().len(),
    })
}
