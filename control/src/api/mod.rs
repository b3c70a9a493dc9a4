//! The REST API (`/api/v1`, axum): policy lifecycle, revisions, what-if, flows, counters, audit,
//! users and tokens, with OpenAPI 3.1 at `/api/v1/openapi.json`, Swagger UI at `/api/v1/docs`,
//! Prometheus `/metrics`, `/healthz` and `/readyz`.
//!
//! Shape: one `router()` per resource, merged by [`app`]; every route passes the access check
//! ([`auth::authorize`]) driven by the table in [`routes`] (deny by default). Errors are RFC 9457
//! problem+json ([`problem`]). The synchronous [`PolicyService`] sits behind one mutex and is
//! only ever called from `spawn_blocking` ([`Core::run`]), so SQLite fsyncs and argon2 never
//! block the runtime. Every mutating route appends exactly one audit record (the core does it
//! for policy operations; this module for users, tokens and sessions), and every denied request
//! appends an `access.denied` record.
//!
//! Bounds: request bodies ([`Limits::body_bytes`], 413), requests in flight
//! ([`Limits::concurrent_requests`], 503 beyond), live SSE streams, page sizes, sessions.

pub mod anomalies;
pub mod audit;
pub mod auth;
pub mod console;
pub mod flows;
pub mod health;
pub mod learn;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod principals;
pub mod problem;
pub mod routes;
pub mod serve;
pub mod throttle;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tower_http::trace::TraceLayer;

use crate::CompiledPolicy;
use crate::audit::AuditEntry;
use crate::clock::Clock;
use crate::lifecycle::{PolicyService, Publisher};
use crate::store::{PendingConfirm, RevisionInfo};

pub use auth::{AuthStore, PasswordCost, Principal};
pub use flows::{FlowFilter, FlowKind, FlowRecord, FlowSlice, FlowSource, FlowStore, NoFlows};
pub use health::{
    FlowTableHealth, HealthSource, HealthTracker, InferenceSample, L7FunctionHealth, L7Health,
    L7MalformedHealth, ModelInfo, NoHealth, RouterHealth, WorkerSample,
};
pub use metrics::{CountersSnapshot, CountersSource, DropCount, NoCounters, PortCounters};
pub use problem::Problem;
pub use routes::{Access, ROUTES, Role, RouteSpec};
pub use serve::{ServeConfig, TlsMode, serve};

/// A publisher behind an `Arc`, so the service type does not depend on the data plane's type.
#[derive(Clone)]
pub struct DynPublisher(pub Arc<dyn Publisher + Send + Sync>);

impl Publisher for DynPublisher {
    fn publish(&self, table: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        self.0.publish(table)
    }
}

/// The policy service as the API holds it.
pub type Service = PolicyService<DynPublisher>;

/// The policy core behind one mutex, reached only from blocking tasks, plus a read view of what
/// the read-only routes show (running revision and document, pending confirmation, revision
/// list). The view is rebuilt under the lock whenever the service's
/// [`generation`](PolicyService::generation) moved, so those routes never wait for a commit's
/// compile or fsyncs, nor for audit appends, and still read their own writes.
#[derive(Clone)]
pub struct Core {
    svc: Arc<Mutex<Service>>,
    view: Arc<RwLock<Option<Arc<ReadView>>>>,
}

/// What the read-only policy routes show, as of one service generation.
#[derive(Debug)]
pub struct ReadView {
    /// The running revision (`None` before the first commit).
    pub running: Option<RevisionInfo>,
    /// The commit awaiting confirmation.
    pub pending: Option<PendingConfirm>,
    /// Every revision, oldest first.
    pub revisions: Vec<RevisionInfo>,
    /// The running revision's canonical content, parsed on first use (by a reader, not by the
    /// commit that made the view: a large policy's document costs milliseconds).
    content: Vec<u8>,
    document: OnceLock<serde_json::Value>,
    generation: u64,
}

impl ReadView {
    fn build(svc: &Service) -> Result<ReadView, Problem> {
        let store = |e| problem::lifecycle_problem(e, "policy");
        let (running, content) = match svc.running() {
            Some(info) => (Some(info.clone()), svc.get(info.id).map_err(store)?.content),
            None => (None, Vec::new()),
        };
        Ok(ReadView {
            running,
            pending: svc.state().map_err(store)?.pending,
            revisions: svc.list().map_err(store)?,
            content,
            document: OnceLock::new(),
            generation: svc.generation(),
        })
    }

    /// The running revision's document (`None` before the first commit).
    pub fn document(&self) -> Result<Option<&serde_json::Value>, Problem> {
        if self.running.is_none() {
            return Ok(None);
        }
        if let Some(d) = self.document.get() {
            return Ok(Some(d));
        }
        let d = serde_json::from_slice(&self.content)
            .map_err(|e| Problem::internal("reading the running revision", &e))?;
        Ok(Some(self.document.get_or_init(|| d)))
    }
}

impl Core {
    /// Wraps a service.
    pub fn new(svc: Service) -> Self {
        let view = ReadView::build(&svc).ok().map(Arc::new);
        Core {
            svc: Arc::new(Mutex::new(svc)),
            view: Arc::new(RwLock::new(view)),
        }
    }

    /// Runs `f` on the service in the calling (blocking) thread. A panic while the lock was held
    /// poisons it; the core then refuses work (503) rather than guess at its state.
    pub fn run_blocking<T>(&self, f: impl FnOnce(&mut Service) -> T) -> Result<T, Problem> {
        let mut guard = self.svc.lock().map_err(|_| core_unavailable())?;
        let out = f(&mut guard);
        self.refresh_view(&guard);
        Ok(out)
    }

    /// Rebuilds the read view if the service changed since it was built (under the core lock).
    /// A view that cannot be built is dropped, so readers take the locked path and see the error.
    fn refresh_view(&self, svc: &Service) {
        let fresh = self
            .current_view()
            .is_some_and(|v| v.generation == svc.generation());
        if !fresh {
            let view = ReadView::build(svc).ok().map(Arc::new);
            *self.view.write().unwrap_or_else(PoisonError::into_inner) = view;
        }
    }

    fn current_view(&self) -> Option<Arc<ReadView>> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The read view, without waiting for the core lock unless there is none yet (then it is
    /// built, or the error that prevents it returned).
    pub async fn view(&self) -> Result<Arc<ReadView>, Problem> {
        if self.svc.is_poisoned() {
            // As the locked path: a core that failed serves nothing.
            return Err(core_unavailable());
        }
        if let Some(v) = self.current_view() {
            return Ok(v);
        }
        self.run(|svc| ReadView::build(svc).map(Arc::new)).await?
    }

    /// Runs `f` on the service in a blocking task.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Problem>
    where
        F: FnOnce(&mut Service) -> T + Send + 'static,
        T: Send + 'static,
    {
        let core = self.clone();
        tokio::task::spawn_blocking(move || core.run_blocking(f))
            .await
            .map_err(|e| Problem::internal("a policy-core task", &e))?
    }

    /// Appends an audit record (blocking; fsynced on return).
    pub fn append_blocking(&self, entry: AuditEntry) -> Result<(), Problem> {
        self.run_blocking(|svc| svc.audit_log().append(entry))?
            .map(|_| ())
            .map_err(|e| Problem::internal("writing the audit log", &e))
    }

    /// Appends an audit record from async code.
    pub async fn append(&self, entry: AuditEntry) -> Result<(), Problem> {
        let core = self.clone();
        tokio::task::spawn_blocking(move || core.append_blocking(entry))
            .await
            .map_err(|e| Problem::internal("an audit task", &e))?
    }
}

fn core_unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "core-unavailable",
        "Policy core unavailable",
        "the policy core failed earlier; restart the control plane",
    )
}

/// Resource bounds of the API.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body accepted (413 beyond).
    pub body_bytes: usize,
    /// Requests handled at once (503 with `Retry-After` beyond).
    pub concurrent_requests: usize,
    /// Live flow streams (SSE) at once.
    pub concurrent_streams: usize,
    /// Largest page of a listing.
    pub max_page: usize,
    /// Most flows in one impact preview.
    pub max_impact_flows: usize,
    /// Login attempts per client address (429 with `Retry-After` beyond).
    pub login: throttle::ThrottlePolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 1 << 20,
            concurrent_requests: 64,
            concurrent_streams: 16,
            max_page: 1000,
            max_impact_flows: 10_000,
            login: throttle::ThrottlePolicy::default(),
        }
    }
}

/// What [`AppState::new`] needs besides the service.
pub struct ApiOptions {
    /// The data directory the service was opened on.
    pub data_dir: PathBuf,
    /// Password hashing cost.
    pub password_cost: PasswordCost,
    /// Bounds.
    pub limits: Limits,
    /// Recent flows and the live stream.
    pub flows: Arc<dyn FlowSource>,
    /// Data-plane counters.
    pub counters: Arc<dyn CountersSource>,
    /// Anomalies pushed by the inference thread (see [`anomalies::AnomalyStore`]).
    pub anomalies: Arc<anomalies::AnomalyStore>,
    /// The learning feed's counters and the configured exports (`/learn/status`).
    pub learn: Arc<learn::LearnState>,
    /// Workers and inference thread (`/api/v1/health`).
    pub health: Arc<dyn HealthSource>,
    /// A worker whose poll counter stands still this long is reported stalled.
    pub stall_after: std::time::Duration,
}

impl ApiOptions {
    /// Production defaults with no data plane attached ([`NoFlows`], [`NoCounters`]).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ApiOptions {
            data_dir: data_dir.into(),
            password_cost: PasswordCost::default(),
            limits: Limits::default(),
            flows: Arc::new(NoFlows),
            counters: Arc::new(NoCounters),
            anomalies: Arc::new(anomalies::AnomalyStore::default()),
            learn: Arc::new(learn::LearnState::default()),
            health: Arc::new(NoHealth),
            stall_after: std::time::Duration::from_secs(3),
        }
    }
}

/// Errors starting the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The principal store failed.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// Creating the first administrator failed.
    #[error("creating the first administrator: {0}")]
    Bootstrap(String),
    /// TLS material could not be created or loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Listening or serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything a handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The policy core.
    pub core: Core,
    /// Users, tokens, sessions.
    pub auth: Arc<AuthStore>,
    /// Flow records.
    pub flows: Arc<dyn FlowSource>,
    /// Data-plane counters.
    pub counters: Arc<dyn CountersSource>,
    /// Time (sessions, token expiry).
    pub clock: Arc<dyn Clock>,
    /// Prometheus registry.
    pub metrics: Arc<metrics::ApiMetrics>,
    /// Bounds.
    pub limits: Limits,
    /// The audit log directory (read by the audit routes without the core lock).
    pub audit_dir: PathBuf,
    /// The data directory (scratch space for exports).
    pub data_dir: PathBuf,
    /// Anomalies (pushed by the inference thread, triaged through the API).
    pub anomalies: Arc<anomalies::AnomalyStore>,
    /// Recommendations and the learning feed's status.
    pub learn: Arc<learn::LearnState>,
    /// Worker and inference-thread health.
    pub health: Arc<HealthTracker>,
    requests: Arc<Semaphore>,
    streams: Arc<Semaphore>,
}

impl AppState {
    /// Builds the state over an opened service. If there are no users yet, creates the first
    /// administrator (`admin`) and returns its password, which the caller prints once.
    pub fn new(
        mut svc: Service,
        clock: Arc<dyn Clock>,
        opts: ApiOptions,
    ) -> Result<(AppState, Option<String>), ApiError> {
        let audit_dir = svc.audit_log().dir().to_owned();
        let auth = AuthStore::open(
            &opts.data_dir,
            opts.password_cost,
            opts.limits.login,
            clock.now_ms(),
        )?;
        let health = Arc::new(HealthTracker::new(
            opts.health,
            Arc::clone(&clock),
            opts.stall_after,
        ));
        let state = AppState {
            core: Core::new(svc),
            auth: Arc::new(auth),
            metrics: Arc::new(
                metrics::ApiMetrics::new(Arc::clone(&opts.counters))
                    .with_health(Arc::clone(&health)),
            ),
            health,
            flows: opts.flows,
            counters: opts.counters,
            clock,
            limits: opts.limits,
            audit_dir,
            data_dir: opts.data_dir,
            anomalies: opts.anomalies,
            learn: opts.learn,
            requests: Arc::new(Semaphore::new(opts.limits.concurrent_requests.max(1))),
            streams: Arc::new(Semaphore::new(opts.limits.concurrent_streams.max(1))),
        };
        let password = auth::bootstrap_admin(&state).map_err(|p| ApiError::Bootstrap(p.detail))?;
        Ok((state, password))
    }
}

/// The whole HTTP application: every resource router, the access check on every route, the
/// body and concurrency limits, and problem+json for unknown paths.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(policy::router())
        .merge(principals::router())
        .merge(audit::router())
        .merge(flows::router())
        .merge(metrics::counters_router())
        .merge(health::router())
        .merge(learn::router())
        .merge(anomalies::router());
    Router::new()
        .nest("/api/v1", v1)
        .merge(metrics::router())
        .merge(openapi::router())
        .route_layer(from_fn_with_state(state.clone(), auth::authorize))
        // Public static files of the web console, outside the access table (see `console`).
        .merge(console::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.limits.body_bytes))
        .layer(from_fn_with_state(state.clone(), limit_concurrency))
        // Logs method and path only: no headers (credentials), no bodies.
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

async fn limit_concurrency(State(st): State<AppState>, req: Request, next: Next) -> Response {
    match Arc::clone(&st.requests).try_acquire_owned() {
        Ok(permit) => {
            let res = next.run(req).await;
            drop(permit);
            res
        }
        Err(_) => {
            let mut res = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many requests in flight",
                "the API is at its concurrency limit; retry shortly",
            )
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
    }
}

impl AppState {
    /// Appends the aggregated unauthenticated `access.denied` records of the interval that ends
    /// now (one per source; `serve` calls this every `denial_interval` and at shutdown).
    /// Returns how many records were written.
    pub async fn flush_denials(&self) -> Result<usize, Problem> {
        let entries = self.auth.take_denials();
        if entries.is_empty() {
            return Ok(0);
        }
        let n = entries.len();
        self.core
            .run(move |svc| {
                svc.audit_log()
                    .append_all(entries)
                    .map_err(|e| Problem::internal("writing the audit log", &e))
            })
            .await??;
        Ok(n)
    }

    /// A permit for one live stream, if any is left.
    pub fn stream_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.streams).try_acquire_owned().ok()
    }

    /// Holds every request permit (tests of the concurrency limit).
    pub async fn hold_all_request_permits(&self) -> tokio::sync::OwnedSemaphorePermit {
        let n = u32::try_from(self.limits.concurrent_requests.max(1)).unwrap_or(u32::MAX);
        Arc::clone(&self.requests)
            .acquire_many_owned(n)
            .await
            .expect("semaphore is never closed")
    }
}
