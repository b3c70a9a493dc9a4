//! Policy routes: the running policy (with its ETag), zones and conduits, commit (If-Match),
//! stage, rollback (If-Match), confirm, what-if decisions, impact previews, revisions (cursor
//! pagination) and diffs. Every write goes through [`crate::lifecycle::PolicyService`], which
//! validates, compiles, publishes, stores and audits; a refused write leaves the running
//! revision byte-identical and is itself audited by the core.
//!
//! The ETag of the policy resource is the running revision's content hash in quotes (`"none"`
//! before the first commit). Commit and rollback require `If-Match` (428 without, 412 on a
//! mismatch); the comparison happens under the core's lock, so two writers cannot both win.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Principal;
use super::problem::{FieldError, JsonBody, Problem, QueryParams, lifecycle_problem, path_param};
use crate::decide::{Explanation, parse_flow};
use crate::diff::PolicyDiff;
use crate::lifecycle::{CommitOptions, PolicyInput};
use crate::policy::{Format, PolicyDocument, dto};
use crate::store::{PendingConfirm, RevisionInfo, RevisionKind};

/// Policy, revision and diff routes (under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/policy", get(get_policy))
        .route("/policy/zones", get(get_zones))
        .route("/policy/conduits", get(get_conduits))
        .route("/policy/commit", post(commit))
        .route("/policy/stage", post(stage))
        .route("/policy/rollback", post(rollback))
        .route("/policy/confirm", post(confirm))
        .route("/policy/decide", post(decide))
        .route("/policy/impact", post(impact))
        .route("/revisions", get(list_revisions))
        .route("/revisions/{id}", get(get_revision))
        .route("/revisions/{id}/source", get(get_revision_source))
        .route("/diff", get(get_diff))
}

/// A revision's metadata.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RevisionView {
    /// 1, 2, ... in commit order.
    pub id: i64,
    /// sha256 of the canonical content (also the policy ETag when running).
    pub hash: String,
    /// The revision running when this one was made.
    pub parent: Option<i64>,
    /// `user:<name>` or `token:<id>`.
    pub author: String,
    /// Why it was made.
    pub reason: String,
    /// Unix ms.
    pub created_ms: i64,
    /// `commit`, `rollback` or `stage`.
    pub kind: String,
}

impl From<RevisionInfo> for RevisionView {
    fn from(i: RevisionInfo) -> Self {
        let kind = match i.kind {
            RevisionKind::Commit => "commit",
            RevisionKind::Rollback => "rollback",
            RevisionKind::Stage => "stage",
        };
        RevisionView {
            id: i.id,
            hash: i.hash,
            parent: i.parent,
            author: i.author,
            reason: i.reason,
            created_ms: i.created_ms,
            kind: kind.into(),
        }
    }
}

/// A commit awaiting confirmation.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PendingView {
    /// The unconfirmed running revision.
    pub revision: i64,
    /// When it reverts unless confirmed (Unix ms).
    pub deadline_ms: i64,
    /// What it reverts to.
    pub revert_to: i64,
}

impl From<PendingConfirm> for PendingView {
    fn from(p: PendingConfirm) -> Self {
        PendingView {
            revision: p.revision,
            deadline_ms: p.deadline_ms,
            revert_to: p.revert_to,
        }
    }
}

/// The running policy.
#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    /// The running revision (`null` before the first commit: everything is dropped).
    pub revision: Option<RevisionView>,
    /// A commit awaiting confirmation.
    pub pending: Option<PendingView>,
    /// The policy document (canonical JSON form).
    #[schema(value_type = Option<PolicyDocument>)]
    pub policy: Option<Value>,
}

/// How a policy text is written.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// How a policy is submitted: the schema of `policy` in commit and stage requests
/// (the handlers read a JSON value and report errors at their line, or at their field path).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "a schema; the handlers read a serde_json::Value")]
pub(crate) enum PolicySubmission {
    /// The YAML or JSON text.
    Text(String),
    /// The document as a JSON object.
    Document(PolicyDocument),
}

/// A policy to commit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The policy: its YAML or JSON text (string), or the document as a JSON object.
    #[schema(value_type = PolicySubmission)]
    pub policy: Value,
    /// Format of a text policy (default: JSON if it starts with `{`, else YAML).
    #[serde(default)]
    pub format: Option<PolicyFormat>,
    /// Why (mandatory, recorded in the revision and the audit log).
    #[schema(pattern = r"\S")]
    pub reason: String,
    /// Commit-confirm: revert unless confirmed within this many seconds (1..=86400).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub confirm_within_s: Option<u32>,
}

/// A policy to stage (store without enforcing).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    /// The policy: its YAML or JSON text (string), or the document as a JSON object.
    #[schema(value_type = PolicySubmission)]
    pub policy: Value,
    /// Format of a text policy.
    #[serde(default)]
    pub format: Option<PolicyFormat>,
    /// Why.
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// Roll back to a stored revision (as a new revision).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision whose content to run again.
    pub to: i64,
    /// Why.
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// Confirm the pending commit-confirm.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// Why.
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// A flow to decide.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// `tcp`, `udp`, `icmp` or a protocol number.
    pub proto: String,
    /// Destination port (ICMP: the message type).
    #[serde(default)]
    #[schema(maximum = 65535)]
    pub port: u16,
    /// Source port.
    #[serde(default)]
    #[schema(maximum = 65535)]
    pub sport: u16,
}

/// A what-if question.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// `tcp`, `udp`, `icmp` or a protocol number.
    pub proto: String,
    /// Destination port (ICMP: the message type).
    #[serde(default)]
    #[schema(maximum = 65535)]
    pub port: u16,
    /// Source port.
    #[serde(default)]
    #[schema(maximum = 65535)]
    pub sport: u16,
    /// The revision to ask (default: the running one; staged revisions allowed).
    #[serde(default)]
    pub revision: Option<i64>,
}

/// An impact preview: which of these flows would be decided differently by `revision`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImpactRequest {
    /// The candidate revision (typically a staged one).
    pub revision: i64,
    /// The flows to evaluate.
    pub flows: Vec<FlowSpec>,
}

/// A flow decided differently.
#[derive(Serialize, ToSchema)]
pub struct ImpactItem {
    /// Decision of the running revision.
    #[schema(value_type = Object)]
    pub running: Explanation,
    /// Decision of the candidate.
    #[schema(value_type = Object)]
    pub candidate: Explanation,
}

/// A page of revisions.
#[derive(Serialize, ToSchema)]
pub struct RevisionPage {
    /// Oldest first.
    pub items: Vec<RevisionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A revision with its content.
#[derive(Serialize, ToSchema)]
pub struct RevisionDetail {
    /// Metadata.
    pub revision: RevisionView,
    /// The document (canonical JSON).
    #[schema(value_type = PolicyDocument)]
    pub policy: Value,
}

/// Where a revision's text comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceOrigin {
    /// The text as submitted, byte for byte (comments and layout kept).
    Submitted,
    /// No text was kept (a revision older than the store's source column, or a policy sent as
    /// a JSON object): the canonical document rendered as YAML.
    Rendered,
}

/// The policy text a revision was made from.
#[derive(Serialize, ToSchema)]
pub struct RevisionSourceView {
    /// The revision.
    pub revision: i64,
    /// `yaml` or `json`.
    #[schema(value_type = String, example = "yaml")]
    pub format: &'static str,
    /// `submitted` or `rendered`.
    pub origin: SourceOrigin,
    /// The text.
    pub text: String,
}

/// The difference between two revisions.
#[derive(Serialize, ToSchema)]
pub struct DiffView {
    /// From.
    pub from: i64,
    /// To.
    pub to: i64,
    /// One line.
    pub summary: String,
    /// Structured changes.
    pub diff: PolicyDiff,
}

/// The result of a commit, stage, rollback or confirm.
#[derive(Serialize, ToSchema)]
pub struct WriteResult {
    /// The revision made (or confirmed).
    pub revision: RevisionView,
    /// A pending confirmation, if the commit asked for one.
    pub pending: Option<PendingView>,
}

/// The ETag of a running revision.
pub fn etag_of(info: Option<&RevisionInfo>) -> String {
    match info {
        Some(i) => format!("\"{}\"", i.hash),
        None => "\"none\"".into(),
    }
}

fn with_etag(mut res: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

fn required_if_match(headers: &HeaderMap) -> Result<String, Problem> {
    let v = headers.get(header::IF_MATCH).ok_or_else(|| {
        Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if-match-required",
            "If-Match required",
            "send If-Match with the ETag of GET /api/v1/policy",
        )
    })?;
    v.to_str()
        .map(str::to_owned)
        .map_err(|_| Problem::bad_param("If-Match", "not a valid header value"))
}

fn matches(if_match: &str, current: &str) -> bool {
    if_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current)
}

fn precondition_failed(current: &str) -> Problem {
    Problem::new(
        StatusCode::PRECONDITION_FAILED,
        "etag-mismatch",
        "Precondition failed",
        format!("the running policy changed; its ETag is now {current}"),
    )
}

/// A request's `policy` field: text with its syntax, or the document itself.
#[derive(Debug)]
enum Submitted {
    Text(String, Format),
    Document(Value),
}

impl Submitted {
    fn input(&self) -> PolicyInput<'_> {
        match self {
            Submitted::Text(t, f) => PolicyInput::Text(t, *f),
            Submitted::Document(v) => PolicyInput::Document(v),
        }
    }
}

/// The policy of a request's `policy` field (an object is used as parsed: no text round trip).
fn policy_text(policy: Value, format: Option<PolicyFormat>) -> Result<Submitted, Problem> {
    match (policy, format) {
        (Value::String(s), f) => {
            let fmt = match f {
                Some(PolicyFormat::Json) => Format::Json,
                Some(PolicyFormat::Yaml) => Format::Yaml,
                None if s.trim_start().starts_with('{') => Format::Json,
                None => Format::Yaml,
            };
            Ok(Submitted::Text(s, fmt))
        }
        (Value::Object(_), Some(PolicyFormat::Yaml)) => Err(Problem::invalid_field(
            "format",
            "a policy given as a JSON object is JSON",
        )),
        (v @ Value::Object(_), _) => Ok(Submitted::Document(v)),
        _ => Err(Problem::invalid_field(
            "policy",
            "must be the policy text (string) or the policy document (object)",
        )),
    }
}

/// The running policy, with its ETag.
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy",
    responses((status = 200, body = PolicyView, headers(("ETag" = String)))))]
pub async fn get_policy(State(st): State<AppState>) -> Result<Response, Problem> {
    // The core's read view: no wait for a commit in progress.
    let v = st.core.view().await?;
    let etag = etag_of(v.running.as_ref());
    let view = PolicyView {
        revision: v.running.clone().map(Into::into),
        pending: v.pending.map(Into::into),
        policy: v.document()?.cloned(),
    };
    Ok(with_etag(Json(view).into_response(), &etag))
}

async fn spec_list(st: AppState, key: &'static str) -> Result<Response, Problem> {
    let v = st.core.view().await?;
    let etag = etag_of(v.running.as_ref());
    let items = v
        .document()?
        .and_then(|d| d.get("spec").and_then(|s| s.get(key)).cloned())
        .unwrap_or(Value::Array(Vec::new()));
    Ok(with_etag(Json(items).into_response(), &etag))
}

/// The running policy's zones (empty before the first commit).
#[utoipa::path(get, path = "/api/v1/policy/zones", tag = "policy",
    responses((status = 200, body = Vec<dto::Zone>)))]
pub async fn get_zones(State(st): State<AppState>) -> Result<Response, Problem> {
    spec_list(st, "zones").await
}

/// The running policy's conduits (empty before the first commit).
#[utoipa::path(get, path = "/api/v1/policy/conduits", tag = "policy",
    responses((status = 200, body = Vec<dto::Conduit>)))]
pub async fn get_conduits(State(st): State<AppState>) -> Result<Response, Problem> {
    spec_list(st, "conduits").await
}

fn written(info: RevisionInfo, pending: Option<PendingConfirm>, status: StatusCode) -> Response {
    let etag = etag_of(Some(&info));
    let body = WriteResult {
        revision: info.into(),
        pending: pending.map(Into::into),
    };
    with_etag((status, Json(body)).into_response(), &etag)
}

/// Validates, compiles and enforces a new policy. Requires `If-Match`.
#[utoipa::path(post, path = "/api/v1/policy/commit", tag = "policy", request_body = CommitRequest,
    params(("If-Match" = String, Header, description = "ETag of the running policy, or *")),
    responses((status = 201, body = WriteResult), (status = 409, body = Problem),
        (status = 412, body = Problem), (status = 422, body = Problem), (status = 428, body = Problem)))]
pub async fn commit(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CommitRequest>,
) -> Result<Response, Problem> {
    let if_match = required_if_match(&headers)?;
    let confirm_within_ms = match req.confirm_within_s {
        None => None,
        Some(s @ 1..=86_400) => Some(i64::from(s) * 1000),
        Some(_) => {
            return Err(Problem::invalid_field(
                "confirm_within_s",
                "must be between 1 and 86400 seconds",
            ));
        }
    };
    let submitted = policy_text(req.policy, req.format)?;
    let reason = req.reason;
    let (info, pending) = st
        .core
        .run(move |svc| {
            let current = etag_of(svc.running());
            if !matches(&if_match, &current) {
                return Err(precondition_failed(&current));
            }
            let info = svc
                .commit_input(
                    submitted.input(),
                    &who.actor,
                    &reason,
                    CommitOptions { confirm_within_ms },
                )
                .map_err(|e| lifecycle_problem(e, "policy"))?;
            let pending = svc.state().ok().and_then(|s| s.pending);
            Ok((info, pending))
        })
        .await??;
    Ok(written(info, pending, StatusCode::CREATED))
}

/// Validates and stores a policy without enforcing it (for decide/impact).
#[utoipa::path(post, path = "/api/v1/policy/stage", tag = "policy", request_body = StageRequest,
    responses((status = 201, body = WriteResult), (status = 422, body = Problem)))]
pub async fn stage(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    JsonBody(req): JsonBody<StageRequest>,
) -> Result<Response, Problem> {
    let submitted = policy_text(req.policy, req.format)?;
    let reason = req.reason;
    let info = st
        .core
        .run(move |svc| {
            svc.stage_input(submitted.input(), &who.actor, &reason)
                .map_err(|e| lifecycle_problem(e, "policy"))
        })
        .await??;
    let body = WriteResult {
        revision: info.into(),
        pending: None,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Runs an older revision's content again, as a new revision. Requires `If-Match`.
#[utoipa::path(post, path = "/api/v1/policy/rollback", tag = "policy", request_body = RollbackRequest,
    params(("If-Match" = String, Header, description = "ETag of the running policy, or *")),
    responses((status = 201, body = WriteResult), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 412, body = Problem), (status = 428, body = Problem)))]
pub async fn rollback(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> Result<Response, Problem> {
    let if_match = required_if_match(&headers)?;
    let info = st
        .core
        .run(move |svc| {
            let current = etag_of(svc.running());
            if !matches(&if_match, &current) {
                return Err(precondition_failed(&current));
            }
            svc.rollback(req.to, &who.actor, &req.reason)
                .map_err(|e| match e {
                    crate::LifecycleError::Store(crate::StoreError::NoSuchRevision(id)) => {
                        let mut p = Problem::not_found(format!("no revision {id}"));
                        p.errors.push(FieldError::new("to", "no such revision"));
                        p
                    }
                    e => lifecycle_problem(e, "to"),
                })
        })
        .await??;
    Ok(written(info, None, StatusCode::CREATED))
}

/// Confirms the pending commit-confirm before its deadline.
#[utoipa::path(post, path = "/api/v1/policy/confirm", tag = "policy", request_body = ConfirmRequest,
    responses((status = 200, body = WriteResult), (status = 409, body = Problem)))]
pub async fn confirm(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    JsonBody(req): JsonBody<ConfirmRequest>,
) -> Result<Response, Problem> {
    let info = st
        .core
        .run(move |svc| {
            svc.confirm(&who.actor, &req.reason)
                .map_err(|e| lifecycle_problem(e, "policy"))
        })
        .await??;
    Ok(written(info, None, StatusCode::OK))
}

fn flow_key(f: &FlowSpec, at: &str) -> Result<septa_classifier::FlowKey, Problem> {
    let field = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    if f.src.parse::<std::net::IpAddr>().is_err() {
        return Err(Problem::invalid_field(field("src"), "not an IP address"));
    }
    if f.dst.parse::<std::net::IpAddr>().is_err() {
        return Err(Problem::invalid_field(field("dst"), "not an IP address"));
    }
    parse_flow(&f.src, &f.dst, &f.proto, f.port, f.sport)
        .map_err(|m| Problem::invalid_field(field("proto"), m))
}

/// What-if: how the running (or a given) revision decides a flow, and why.
#[utoipa::path(post, path = "/api/v1/policy/decide", tag = "policy", request_body = DecideRequest,
    responses((status = 200, body = Object), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
pub async fn decide(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<DecideRequest>,
) -> Result<Response, Problem> {
    let spec = FlowSpec {
        src: req.src,
        dst: req.dst,
        proto: req.proto,
        port: req.port,
        sport: req.sport,
    };
    let key = flow_key(&spec, "")?;
    let rev = req.revision;
    let e = st
        .core
        .run(move |svc| svc.decide(rev, &key).map_err(revision_problem))
        .await??;
    Ok(Json(e).into_response())
}

/// A lifecycle error of a call that names a revision: an unknown one is a 404 on `revision`.
fn revision_problem(e: crate::LifecycleError) -> Problem {
    match e {
        crate::LifecycleError::Store(crate::StoreError::NoSuchRevision(id)) => {
            let mut p = Problem::not_found(format!("no revision {id}"));
            p.errors
                .push(FieldError::new("revision", "no such revision"));
            p
        }
        e => lifecycle_problem(e, "revision"),
    }
}

/// Impact preview: the flows a revision would decide differently from the running one.
#[utoipa::path(post, path = "/api/v1/policy/impact", tag = "policy", request_body = ImpactRequest,
    responses((status = 200, body = Vec<ImpactItem>), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn impact(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<ImpactRequest>,
) -> Result<Response, Problem> {
    if req.flows.len() > st.limits.max_impact_flows {
        return Err(Problem::invalid_field(
            "flows",
            format!("at most {} flows per preview", st.limits.max_impact_flows),
        ));
    }
    let keys = req
        .flows
        .iter()
        .enumerate()
        .map(|(i, f)| flow_key(f, &format!("flows[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let rev = req.revision;
    let out = st
        .core
        .run(move |svc| svc.impact(rev, &keys).map_err(revision_problem))
        .await??;
    let items: Vec<ImpactItem> = out
        .into_iter()
        .map(|(running, candidate)| ImpactItem { running, candidate })
        .collect();
    Ok(Json(items).into_response())
}

/// Revisions, oldest first, `limit` per page (default 100), after `cursor`.
#[utoipa::path(get, path = "/api/v1/revisions", tag = "revisions",
    params(("cursor" = Option<u64>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "page size")),
    responses((status = 200, body = RevisionPage), (status = 400, body = Problem)))]
pub async fn list_revisions(
    State(st): State<AppState>,
    q: QueryParams,
) -> Result<Response, Problem> {
    q.only(&["cursor", "limit"])?;
    let after = i64::try_from(q.opt::<u64>("cursor")?.unwrap_or(0))
        .map_err(|_| Problem::bad_param("cursor", "out of range"))?;
    let limit: usize = q.opt("limit")?.unwrap_or(100);
    if limit == 0 || limit > st.limits.max_page {
        return Err(Problem::bad_param(
            "limit",
            format!("must be between 1 and {}", st.limits.max_page),
        ));
    }
    let view = st.core.view().await?;
    let mut items: Vec<RevisionView> = view
        .revisions
        .iter()
        .filter(|r| r.id > after)
        .take(limit + 1)
        .cloned()
        .map(Into::into)
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Json(RevisionPage { items, next_cursor }).into_response())
}

/// One revision with its content.
#[utoipa::path(get, path = "/api/v1/revisions/{id}", tag = "revisions",
    params(("id" = i64, Path, description = "revision id")),
    responses((status = 200, body = RevisionDetail), (status = 404, body = Problem)))]
pub async fn get_revision(
    State(st): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    let id: i64 = path_param("id", &raw)?;
    let rev = st
        .core
        .run(move |svc| svc.get(id).map_err(|e| lifecycle_problem(e, "id")))
        .await??;
    let policy = serde_json::from_slice(&rev.content)
        .map_err(|e| Problem::internal("reading a revision", &e))?;
    Ok(Json(RevisionDetail {
        revision: rev.info.into(),
        policy,
    })
    .into_response())
}

/// The policy text revision `id` was made from: as submitted (YAML or JSON, comments kept), or,
/// for a revision without one, its canonical document rendered as YAML (`origin: rendered`).
#[utoipa::path(get, path = "/api/v1/revisions/{id}/source", tag = "revisions",
    params(("id" = i64, Path, description = "revision id")),
    responses((status = 200, body = RevisionSourceView), (status = 404, body = Problem)))]
pub async fn get_revision_source(
    State(st): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    let id: i64 = path_param("id", &raw)?;
    let (src, rendered) = st
        .core
        .run(move |svc| svc.source(id).map_err(|e| lifecycle_problem(e, "id")))
        .await??;
    Ok(Json(RevisionSourceView {
        revision: id,
        format: match src.format {
            Format::Yaml => "yaml",
            Format::Json => "json",
        },
        origin: if rendered {
            SourceOrigin::Rendered
        } else {
            SourceOrigin::Submitted
        },
        text: src.text,
    })
    .into_response())
}

/// The difference between revisions `from` and `to`.
#[utoipa::path(get, path = "/api/v1/diff", tag = "revisions",
    params(("from" = i64, Query), ("to" = i64, Query)),
    responses((status = 200, body = DiffView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get_diff(State(st): State<AppState>, q: QueryParams) -> Result<Response, Problem> {
    q.only(&["from", "to"])?;
    let from: i64 = q.req("from")?;
    let to: i64 = q.req("to")?;
    let d = st
        .core
        .run(move |svc| svc.diff(from, to).map_err(|e| lifecycle_problem(e, "from")))
        .await??;
    Ok(Json(DiffView {
        from,
        to,
        summary: d.summary(),
        diff: d,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_lists_and_wildcards() {
        assert!(matches("\"a\"", "\"a\""));
        assert!(matches("\"b\", \"a\"", "\"a\""));
        assert!(matches("*", "\"a\""));
        // If-Match compares strongly: a weak tag never matches.
        assert!(!matches("W/\"a\"", "\"a\""));
        assert!(!matches("\"b\"", "\"a\""));
        assert!(!matches("a", "\"a\""));
    }

    #[test]
    fn policy_text_forms() {
        let Submitted::Text(t, f) = policy_text(Value::String("{}".into()), None).unwrap() else {
            panic!("text")
        };
        assert_eq!((t.as_str(), f), ("{}", Format::Json));
        let Submitted::Text(_, f) = policy_text(Value::String("a: 1".into()), None).unwrap() else {
            panic!("text")
        };
        assert_eq!(f, Format::Yaml);
        let obj = serde_json::json!({"apiVersion": "septa.io/v1"});
        assert!(matches!(
            policy_text(obj, None).unwrap(),
            Submitted::Document(_)
        ));
        let e = policy_text(Value::Bool(true), None).unwrap_err();
        assert_eq!(e.errors[0].field, "policy");
    }
}
