//! `GET /api/v1/health`: the liveness of the data-plane workers and of the inference thread,
//! with an overall status (`ok`, `degraded`, `down`) and the reasons behind it.
//!
//! The composition root supplies raw samples through [`HealthSource`] (each worker's poll
//! counter, whether its loop has returned; the inference service's counters and models). The
//! [`HealthTracker`] turns them into states: a worker whose poll counter has not moved for
//! `stall_after` is `stalled`. It remembers when each counter last moved, as observed at its
//! reads (the API's, `/metrics`' and the console's polls), on the API's [`Clock`], so tests
//! drive it with a manual clock and never sleep.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::problem::Problem;
use crate::clock::Clock;

/// One worker as the composition root reads it (relaxed loads of its counters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSample {
    /// Worker index (the order workers were started in).
    pub id: u16,
    /// The lcore (CPU) it runs on, when known.
    pub lcore: Option<u32>,
    /// Poll-loop iterations so far.
    pub polls: u64,
    /// Its run loop has returned.
    pub stopped: bool,
    /// Its flow table, as the worker last published it; `None` when not attached.
    pub flows: Option<FlowTableHealth>,
    /// Its router's counters (routed mode only; `None` otherwise).
    pub router: Option<RouterHealth>,
    /// Its L7 inspection counts, as the worker last published them; `None` when not attached.
    pub l7: Option<L7Health>,
}

/// A worker's L7 inspection counts (function-code conduits and identification) as the worker
/// last published them (every second of its clock); only what is not zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct L7Health {
    /// Messages and refusals per protocol and function code.
    pub functions: Vec<L7FunctionHealth>,
    /// Malformed messages and unfollowable streams per protocol.
    pub malformed: Vec<L7MalformedHealth>,
}

/// One function's messages and refusals on a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct L7FunctionHealth {
    /// Protocol (`modbus`, `dnp3`, `s7comm`, ...: the names policies use).
    pub protocol: String,
    /// Function code; `null` for refusals that name no function (a wrong protocol on a
    /// conduit's port, S7comm-plus, a malformed message).
    pub function: Option<u8>,
    /// The function's name (`write_single_register`); `null` when the code is not in the
    /// protocol's table or `function` is `null`.
    pub name: Option<String>,
    /// Messages inspected (requests and responses).
    pub messages: u64,
    /// Messages refused (enforce: dropped; monitor: would-deny).
    pub denied: u64,
}

/// Malformed messages of one protocol on a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct L7MalformedHealth {
    /// Protocol.
    pub protocol: String,
    /// Malformed messages and unfollowable streams.
    pub malformed: u64,
}

/// A worker's flow table as the worker last published it (every 100 ms of its clock).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct FlowTableHealth {
    /// Flows tracked now.
    pub active: u64,
    /// Of them, half-open (embryonic) flows.
    pub half_open: u64,
    /// Most flows the table holds.
    pub capacity: u64,
    /// Flows created since start.
    pub inserted: u64,
    /// Flows ended by their idle timeout (and by the flush at shutdown).
    pub expired: u64,
    /// Half-open flows evicted to make room for a new flow (full table or half-open cap).
    /// New flows refused because nothing was evictable are the drop reason `flow_table_full`.
    pub evicted_half_open: u64,
}

/// A routed-mode worker's router as the worker last published it (every 100 ms of its clock).
/// Its drops (`ttl_exceeded`, `no_route`, `neighbour_unresolved`, ...) are drop reasons.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct RouterHealth {
    /// Frames addressed to the gateway queued for its own stack (ARP, neighbour discovery,
    /// pings of its addresses).
    pub local_frames: u64,
    /// Echo replies (ICMP and ICMPv6) sent: pings of the gateway answered.
    pub echo_replies: u64,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Neighbour advertisements sent.
    pub neighbour_adverts: u64,
    /// ICMP time-exceeded errors sent.
    pub time_exceeded_sent: u64,
    /// Time-exceeded errors not sent (rate limit, or no address to send from).
    pub time_exceeded_suppressed: u64,
    /// ARP requests and neighbour solicitations sent for next hops.
    pub solicitations: u64,
    /// Frames the gateway generated but could not queue (its transmit ring was full).
    pub tx_ring_full: u64,
    /// Neighbour entries learnt or refreshed.
    pub neighbours_learnt: u64,
    /// Neighbour entries in use now (resolved or being resolved).
    pub neighbours: u64,
    /// Most neighbour entries.
    pub neighbour_capacity: u64,
}

/// A loaded model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct ModelInfo {
    /// The model's id.
    pub id: String,
    /// SHA-256 of the model file.
    pub hash: String,
    /// The score threshold in force.
    pub threshold: f32,
}

/// The inference service as the composition root reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InferenceSample {
    /// `monitor`, `shadow` or `act`.
    pub mode: String,
    /// Models loaded (empty: none).
    pub models: Vec<ModelInfo>,
    /// Why the service is not running (it did not start, or a restart failed); `None` while
    /// it runs.
    pub error: Option<String>,
    /// Records scored.
    pub records: u64,
    /// Batches scored.
    pub batches: u64,
    /// Alerts and proposals the event queue could not take.
    pub events_dropped: u64,
    /// Records lost with a thread that panicked or stalled.
    pub lost_records: u64,
    /// Batches the model failed to score.
    pub score_errors: u64,
    /// Inference-thread panics.
    pub panics: u64,
    /// Inference-thread stalls (replaced by the supervisor).
    pub stalls: u64,
    /// Threads started after a panic or stall.
    pub restarts: u64,
    /// The workers' feature samplers, summed: records sent to the inference thread.
    pub sampler_records: u64,
    /// Records the samplers dropped because a ring was full.
    pub sampler_ring_full: u64,
    /// Spread-sketch slots taken over by another key within their window.
    pub sampler_sketch_evictions: u64,
    /// New flows the samplers could not report to the spread sketches: their rings of new
    /// flows were full (the fan-out and fan-in estimates of that window are low by them).
    pub sampler_spread_lost: u64,
    /// New flows picked for sampling but skipped: every sampling slot was in use.
    pub sampler_slab_full: u64,
    /// Alerts not raised again: the same model on the same flow within `repeat_window_s`.
    pub repeats: u64,
    /// Site calibrations derived and applied (warm-up or monitor mode).
    pub calibrations: u64,
}

/// Raw health samples; implemented by the composition root over the running workers and
/// inference service. Both calls must be cheap (relaxed loads): they run on every read.
pub trait HealthSource: Send + Sync + 'static {
    /// The workers, or `None` when this process has no data plane (the API alone).
    fn workers(&self) -> Option<Vec<WorkerSample>>;
    /// The inference service, or `None` when ML is not configured.
    fn inference(&self) -> Option<InferenceSample>;
}

/// No data plane and no inference thread (tests, the API alone).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHealth;

impl HealthSource for NoHealth {
    fn workers(&self) -> Option<Vec<WorkerSample>> {
        None
    }
    fn inference(&self) -> Option<InferenceSample> {
        None
    }
}

/// Overall status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything that is configured runs.
    Ok,
    /// Something is wrong but packets are still handled (a stalled or stopped worker among
    /// running ones, the inference thread without a model).
    Degraded,
    /// No worker handles packets.
    Down,
}

impl HealthStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Down => "down",
        }
    }
}

/// A worker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Its poll counter moved within `stall_after`.
    Running,
    /// Its poll counter has not moved for `stall_after` or longer.
    Stalled,
    /// Its run loop returned (shutdown).
    Stopped,
}

/// One worker's health.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct WorkerHealth {
    /// Worker index.
    pub id: u16,
    /// The lcore it runs on, when known.
    pub lcore: Option<u32>,
    /// Derived state.
    pub state: WorkerState,
    /// Poll-loop iterations so far.
    pub polls: u64,
    /// Poll iterations per second over the last measured window (≥ 1 s); `null` until one.
    pub polls_per_s: Option<f64>,
    /// Milliseconds since its poll counter was last seen to move.
    pub last_progress_age_ms: u64,
    /// Its flow table (published by the worker every 100 ms); `null` when not known.
    pub flows: Option<FlowTableHealth>,
    /// Its router (published every 100 ms); `null` unless the worker routes (routed mode).
    pub router: Option<RouterHealth>,
    /// Its L7 inspection counts (published every second), only what is not zero; `null` when
    /// not known.
    pub l7: Option<L7Health>,
}

/// The inference thread's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InferenceState {
    /// Not configured (`[ml]` absent or `mode = "off"`).
    Off,
    /// Running with at least one model.
    Running,
    /// Running without a model, or restarting after a failure.
    Degraded,
    /// Not running (it did not start; forwarding is unaffected).
    Failed,
}

/// The inference thread's health.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct InferenceHealth {
    /// Derived state.
    pub state: InferenceState,
    /// `monitor`, `shadow` or `act` (empty when off).
    pub mode: String,
    /// Models loaded.
    pub models: Vec<ModelInfo>,
    /// Why it is not running, when it is not.
    pub error: Option<String>,
    /// Records scored.
    pub records: u64,
    /// Batches scored.
    pub batches: u64,
    /// Records scored per second over the last measured window (≥ 1 s); `null` until one.
    pub records_per_s: Option<f64>,
    /// Milliseconds since a batch was last seen scored; `null` if none was seen yet.
    pub last_inference_age_ms: Option<u64>,
    /// Alerts and proposals dropped because the event queue was full.
    pub events_dropped: u64,
    /// Records lost with a thread that panicked or stalled.
    pub lost_records: u64,
    /// Batches the model failed to score.
    pub score_errors: u64,
    /// Thread panics.
    pub panics: u64,
    /// Thread stalls.
    pub stalls: u64,
    /// Thread restarts.
    pub restarts: u64,
    /// The workers' feature samplers, summed (published every 100 ms): records sent to the
    /// inference thread.
    pub sampler_records: u64,
    /// Records the samplers dropped because a ring was full.
    pub sampler_ring_full: u64,
    /// Spread-sketch slots taken over by another key within their window.
    pub sampler_sketch_evictions: u64,
    /// New flows the samplers could not report to the spread sketches: their rings of new
    /// flows were full (the fan-out and fan-in estimates of that window are low by them).
    pub sampler_spread_lost: u64,
    /// New flows picked for sampling but skipped: every sampling slot was in use.
    pub sampler_slab_full: u64,
    /// Alerts not raised again: the same model on the same flow within `repeat_window_s`.
    pub repeats: u64,
    /// Site calibrations derived and applied (warm-up or monitor mode) since start.
    pub calibrations: u64,
}

impl InferenceHealth {
    fn off() -> Self {
        InferenceHealth {
            state: InferenceState::Off,
            mode: String::new(),
            models: Vec::new(),
            error: None,
            records: 0,
            batches: 0,
            records_per_s: None,
            last_inference_age_ms: None,
            events_dropped: 0,
            lost_records: 0,
            score_errors: 0,
            panics: 0,
            stalls: 0,
            restarts: 0,
            sampler_records: 0,
            sampler_ring_full: 0,
            sampler_sketch_evictions: 0,
            sampler_spread_lost: 0,
            sampler_slab_full: 0,
            repeats: 0,
            calibrations: 0,
        }
    }
}

/// `GET /api/v1/health`.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct HealthReport {
    /// Overall status: `down` when no worker runs, `degraded` when a worker is stalled or
    /// stopped or the inference thread is not healthy, else `ok`.
    pub status: HealthStatus,
    /// Why the status is not `ok`, one sentence each ("worker 1 (lcore 3) has not polled for
    /// 7 s").
    pub reasons: Vec<String>,
    /// Whether this process runs a data plane (false: the API alone; `workers` is empty).
    pub dataplane: bool,
    /// Each worker.
    pub workers: Vec<WorkerHealth>,
    /// The inference thread.
    pub inference: InferenceHealth,
    /// A worker or the inference thread is `stalled` after this long without progress.
    pub stall_after_ms: u64,
    /// When this report was made (Unix ms).
    pub ts_ms: i64,
}

/// What the tracker remembers of one counter.
#[derive(Clone, Copy, Debug)]
struct Seen {
    value: u64,
    moved_ms: i64,
    window_value: u64,
    window_ms: i64,
    rate: Option<f64>,
}

impl Seen {
    fn new(value: u64, now: i64) -> Self {
        Seen {
            value,
            moved_ms: now,
            window_value: value,
            window_ms: now,
            rate: None,
        }
    }

    /// Records an observation; returns the age of the last movement in ms.
    fn observe(&mut self, value: u64, now: i64) -> u64 {
        if value != self.value {
            self.value = value;
            self.moved_ms = now;
        }
        let span = now - self.window_ms;
        if span >= 1000 {
            let delta = value.saturating_sub(self.window_value);
            self.rate = Some(delta as f64 * 1000.0 / span as f64);
            self.window_value = value;
            self.window_ms = now;
        }
        u64::try_from(now - self.moved_ms).unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Memory {
    workers: HashMap<u16, Seen>,
    batches: Option<Seen>,
    records: Option<Seen>,
    scored_once: bool,
}

/// Derives states from samples over time (see the module documentation).
pub struct HealthTracker {
    source: Arc<dyn HealthSource>,
    clock: Arc<dyn Clock>,
    stall_after: Duration,
    memory: Mutex<Memory>,
}

impl fmt::Debug for HealthTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthTracker")
            .field("stall_after", &self.stall_after)
            .finish_non_exhaustive()
    }
}

fn secs(ms: u64) -> String {
    format!("{} s", ms / 1000)
}

impl HealthTracker {
    /// A tracker over `source` on `clock`; a worker is stalled after `stall_after` without a
    /// poll.
    pub fn new(
        source: Arc<dyn HealthSource>,
        clock: Arc<dyn Clock>,
        stall_after: Duration,
    ) -> Self {
        HealthTracker {
            source,
            clock,
            stall_after,
            memory: Mutex::new(Memory::default()),
        }
    }

    /// Samples the source now and derives the report.
    pub fn report(&self) -> HealthReport {
        let now = self.clock.now_ms();
        let workers = self.source.workers();
        let inference = self.source.inference();
        let mut mem = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        derive(&mut mem, now, self.stall_after, workers, inference)
    }
}

fn derive(
    mem: &mut Memory,
    now: i64,
    stall_after: Duration,
    workers: Option<Vec<WorkerSample>>,
    inference: Option<InferenceSample>,
) -> HealthReport {
    let stall_ms = u64::try_from(stall_after.as_millis()).unwrap_or(u64::MAX);
    let mut reasons = Vec::new();
    let dataplane = workers.is_some();
    let workers: Vec<WorkerHealth> = workers
        .unwrap_or_default()
        .into_iter()
        .map(|w| {
            let seen = mem
                .workers
                .entry(w.id)
                .or_insert_with(|| Seen::new(w.polls, now));
            let age = seen.observe(w.polls, now);
            let state = if w.stopped {
                WorkerState::Stopped
            } else if age >= stall_ms {
                WorkerState::Stalled
            } else {
                WorkerState::Running
            };
            let name = match w.lcore {
                Some(l) => format!("worker {} (lcore {l})", w.id),
                None => format!("worker {}", w.id),
            };
            match state {
                WorkerState::Stalled => {
                    reasons.push(format!("{name} has not polled for {}", secs(age)));
                }
                WorkerState::Stopped => reasons.push(format!("{name} has stopped")),
                WorkerState::Running => {}
            }
            WorkerHealth {
                id: w.id,
                lcore: w.lcore,
                state,
                polls: w.polls,
                polls_per_s: seen.rate,
                last_progress_age_ms: age,
                flows: w.flows,
                router: w.router,
                l7: w.l7,
            }
        })
        .collect();
    let running = workers
        .iter()
        .filter(|w| w.state == WorkerState::Running)
        .count();
    let mut status = if dataplane && running == 0 {
        if workers.is_empty() {
            reasons.push("the data plane has no workers".to_owned());
        }
        HealthStatus::Down
    } else if reasons.is_empty() {
        HealthStatus::Ok
    } else {
        HealthStatus::Degraded
    };

    let inference = match inference {
        None => InferenceHealth::off(),
        Some(s) => {
            let batches = mem.batches.get_or_insert_with(|| Seen::new(s.batches, now));
            let batch_age = batches.observe(s.batches, now);
            if s.batches > 0 && batch_age == 0 {
                mem.scored_once = true;
            }
            let records = mem.records.get_or_insert_with(|| Seen::new(s.records, now));
            records.observe(s.records, now);
            let state = if s.error.is_some() && s.models.is_empty() {
                InferenceState::Failed
            } else if s.error.is_some() || s.models.is_empty() {
                InferenceState::Degraded
            } else {
                InferenceState::Running
            };
            match (&s.error, s.models.is_empty()) {
                (Some(e), _) => reasons.push(format!("inference thread: {e}")),
                (None, true) => reasons.push("inference thread: no model loaded".to_owned()),
                (None, false) => {}
            }
            if state != InferenceState::Running {
                status = status.max(HealthStatus::Degraded);
            }
            InferenceHealth {
                state,
                mode: s.mode,
                models: s.models,
                error: s.error,
                records: s.records,
                batches: s.batches,
                records_per_s: records.rate,
                last_inference_age_ms: mem.scored_once.then_some(batch_age),
                events_dropped: s.events_dropped,
                lost_records: s.lost_records,
                score_errors: s.score_errors,
                panics: s.panics,
                stalls: s.stalls,
                restarts: s.restarts,
                sampler_records: s.sampler_records,
                sampler_ring_full: s.sampler_ring_full,
                sampler_sketch_evictions: s.sampler_sketch_evictions,
                sampler_spread_lost: s.sampler_spread_lost,
                sampler_slab_full: s.sampler_slab_full,
                repeats: s.repeats,
                calibrations: s.calibrations,
            }
        }
    };
    HealthReport {
        status,
        reasons,
        dataplane,
        workers,
        inference,
        stall_after_ms: stall_ms,
        ts_ms: now,
    }
}

/// `/api/v1/health` (nested under `/api/v1`).
pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/health", get(health))
}

/// The health of the data-plane workers and of the inference thread, with an overall status
/// and its reasons. Always 200: the status is in the body (`/healthz` is the liveness probe).
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    responses((status = 200, body = HealthReport)))]
pub async fn health(State(st): State<AppState>) -> Response {
    let tracker = Arc::clone(&st.health);
    match tokio::task::spawn_blocking(move || tracker.report()).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => Problem::internal("reading health", &e).into_response(),
    }
}

/// `/metrics` part: the same report as gauges and counters.
pub(crate) struct HealthCollector(pub(crate) Arc<HealthTracker>);

impl fmt::Debug for HealthCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HealthCollector")
    }
}

impl Collector for HealthCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let r = self.0.report();
        let status = match r.status {
            HealthStatus::Ok => 0i64,
            HealthStatus::Degraded => 1,
            HealthStatus::Down => 2,
        };
        let mut m = enc.encode_descriptor(
            "health_status",
            "Overall health: 0 ok, 1 degraded, 2 down (reasons: GET /api/v1/health).",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&status)?;
        let worker_label = |w: &WorkerHealth| {
            [
                ("worker", w.id.to_string()),
                ("lcore", w.lcore.map_or_else(String::new, |l| l.to_string())),
            ]
        };
        let mut m = enc.encode_descriptor(
            "worker_polls",
            "Poll-loop iterations per worker (moves on an idle worker too).",
            None,
            MetricType::Counter,
        )?;
        for w in &r.workers {
            let labels = worker_label(w);
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&w.polls, None)?;
        }
        let mut m = enc.encode_descriptor(
            "worker_up",
            "1 while a worker polls, 0 when stalled or stopped.",
            None,
            MetricType::Gauge,
        )?;
        for w in &r.workers {
            let labels = worker_label(w);
            m.encode_family(&labels)?
                .encode_gauge(&i64::from(w.state == WorkerState::Running))?;
        }
        let mut m = enc.encode_descriptor(
            "worker_last_progress_age_seconds",
            "Seconds since a worker's poll counter was last seen to move.",
            None,
            MetricType::Gauge,
        )?;
        for w in &r.workers {
            let labels = worker_label(w);
            m.encode_family(&labels)?
                .encode_gauge(&(w.last_progress_age_ms as f64 / 1000.0))?;
        }
        let inf = &r.inference;
        let mut m = enc.encode_descriptor(
            "inference_up",
            "1 while the inference thread runs with a model, 0 otherwise (also when ML is off).",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&i64::from(inf.state == InferenceState::Running))?;
        let mut m = enc.encode_descriptor(
            "inference_models_loaded",
            "Models the inference thread has loaded.",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&(inf.models.len() as i64))?;
        encode_flow_tables(&mut enc, &r.workers, &worker_label)?;
        encode_routers(&mut enc, &r.workers, &worker_label)?;
        encode_l7(&mut enc, &r.workers, &worker_label)?;
        let counters: [(&str, &str, u64); 15] = [
            ("inference_records", "Records scored.", inf.records),
            ("inference_batches", "Batches scored.", inf.batches),
            (
                "inference_events_dropped",
                "Alerts and proposals dropped because the event queue was full.",
                inf.events_dropped,
            ),
            (
                "inference_lost_records",
                "Records lost with an inference thread that panicked or stalled.",
                inf.lost_records,
            ),
            (
                "inference_score_errors",
                "Batches the model failed to score.",
                inf.score_errors,
            ),
            ("inference_panics", "Inference-thread panics.", inf.panics),
            ("inference_stalls", "Inference-thread stalls.", inf.stalls),
            (
                "inference_restarts",
                "Inference threads started after a panic or stall.",
                inf.restarts,
            ),
            (
                "sampler_records",
                "Feature records the workers' samplers sent to the inference thread.",
                inf.sampler_records,
            ),
            (
                "sampler_ring_full",
                "Feature records dropped because a worker's ring was full.",
                inf.sampler_ring_full,
            ),
            (
                "sampler_sketch_evictions",
                "Spread-sketch slots taken over by another key within their window.",
                inf.sampler_sketch_evictions,
            ),
            (
                "sampler_spread_lost",
                "New flows not reported to the spread sketches because a worker's ring of new flows was full.",
                inf.sampler_spread_lost,
            ),
            (
                "sampler_slab_full",
                "New flows picked for sampling but skipped: every sampling slot was in use.",
                inf.sampler_slab_full,
            ),
            (
                "inference_repeats",
                "Alerts not raised again: the same model on the same flow within repeat_window_s.",
                inf.repeats,
            ),
            (
                "inference_calibrations",
                "Site calibrations derived and applied (warm-up or monitor mode).",
                inf.calibrations,
            ),
        ];
        for (name, help, v) in counters {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            m.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
        Ok(())
    }
}

/// `worker` and `lcore` labels of a worker's series.
type WorkerLabels = [(&'static str, String); 2];

/// A per-worker series: name, help, type and how to read it from the worker's part.
type Field<P> = (&'static str, &'static str, MetricType, fn(&P) -> u64);

/// One metric family per field, one series per worker that has the part (`part` picks it).
fn encode_per_worker<P>(
    enc: &mut DescriptorEncoder,
    workers: &[WorkerHealth],
    labels: &dyn Fn(&WorkerHealth) -> WorkerLabels,
    part: fn(&WorkerHealth) -> Option<&P>,
    fields: &[Field<P>],
) -> Result<(), fmt::Error> {
    if !workers.iter().any(|w| part(w).is_some()) {
        return Ok(());
    }
    for (name, help, kind, get) in fields {
        let mut m = enc.encode_descriptor(name, help, None, *kind)?;
        for w in workers {
            let Some(p) = part(w) else { continue };
            let labels = labels(w);
            let mut fam = m.encode_family(&labels)?;
            match kind {
                MetricType::Counter => fam.encode_counter::<NoLabelSet, _, u64>(&get(p), None)?,
                _ => fam.encode_gauge(&i64::try_from(get(p)).unwrap_or(i64::MAX))?,
            }
        }
    }
    Ok(())
}

/// The workers' flow tables, per worker.
fn encode_flow_tables(
    enc: &mut DescriptorEncoder,
    workers: &[WorkerHealth],
    labels: &dyn Fn(&WorkerHealth) -> WorkerLabels,
) -> Result<(), fmt::Error> {
    let fields: [Field<FlowTableHealth>; 6] = [
        (
            "flow_table_flows",
            "Flows a worker's flow table tracks now.",
            MetricType::Gauge,
            |f| f.active,
        ),
        (
            "flow_table_half_open_flows",
            "Half-open (embryonic) flows a worker's flow table tracks now.",
            MetricType::Gauge,
            |f| f.half_open,
        ),
        (
            "flow_table_capacity_flows",
            "Most flows a worker's flow table holds.",
            MetricType::Gauge,
            |f| f.capacity,
        ),
        (
            "flow_table_inserted",
            "Flows a worker's flow table created.",
            MetricType::Counter,
            |f| f.inserted,
        ),
        (
            "flow_table_expired",
            "Flows ended by their idle timeout (and by the flush at shutdown).",
            MetricType::Counter,
            |f| f.expired,
        ),
        (
            "flow_table_evicted_half_open",
            "Half-open flows evicted to make room for a new flow (new flows refused because \
             nothing was evictable are dropped under the reason flow_table_full).",
            MetricType::Counter,
            |f| f.evicted_half_open,
        ),
    ];
    encode_per_worker(enc, workers, labels, |w| w.flows.as_ref(), &fields)
}

/// How an L7 series reads its value from a function's counts.
type L7Field = fn(&L7FunctionHealth) -> u64;

/// The workers' L7 inspection counts: one series per worker and function (or protocol, for
/// malformed messages) that counted something.
fn encode_l7(
    enc: &mut DescriptorEncoder,
    workers: &[WorkerHealth],
    labels: &dyn Fn(&WorkerHealth) -> WorkerLabels,
) -> Result<(), fmt::Error> {
    let functions: [(&str, &str, L7Field); 2] = [
        (
            "l7_messages",
            "Messages L7 inspection framed, per protocol and function code (requests and \
             responses).",
            |f| f.messages,
        ),
        (
            "l7_denied",
            "Messages a function-code conduit refused, per protocol and function code \
             (function \"none\": refusals that name no function).",
            |f| f.denied,
        ),
    ];
    let parts = || workers.iter().filter_map(|w| Some((w, w.l7.as_ref()?)));
    for (name, help, get) in functions {
        if !parts().any(|(_, l)| l.functions.iter().any(|f| get(f) > 0)) {
            continue;
        }
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (w, l) in parts() {
            let [worker, lcore] = labels(w);
            for f in l.functions.iter().filter(|f| get(f) > 0) {
                let set = [
                    worker.clone(),
                    lcore.clone(),
                    ("protocol", f.protocol.clone()),
                    (
                        "function",
                        f.function.map_or("none".into(), |c| c.to_string()),
                    ),
                    ("name", f.name.clone().unwrap_or_default()),
                ];
                m.encode_family(&set)?
                    .encode_counter::<NoLabelSet, _, u64>(&get(f), None)?;
            }
        }
    }
    if parts().any(|(_, l)| !l.malformed.is_empty()) {
        let mut m = enc.encode_descriptor(
            "l7_malformed",
            "Malformed messages and unfollowable streams L7 inspection counted, per protocol.",
            None,
            MetricType::Counter,
        )?;
        for (w, l) in parts() {
            let [worker, lcore] = labels(w);
            for p in &l.malformed {
                let set = [
                    worker.clone(),
                    lcore.clone(),
                    ("protocol", p.protocol.clone()),
                ];
                m.encode_family(&set)?
                    .encode_counter::<NoLabelSet, _, u64>(&p.malformed, None)?;
            }
        }
    }
    Ok(())
}

/// Routed-mode workers' routers, per worker (nothing without routed mode).
fn encode_routers(
    enc: &mut DescriptorEncoder,
    workers: &[WorkerHealth],
    labels: &dyn Fn(&WorkerHealth) -> WorkerLabels,
) -> Result<(), fmt::Error> {
    let c = MetricType::Counter;
    let fields: [Field<RouterHealth>; 11] = [
        (
            "router_local_frames",
            "Frames addressed to the gateway queued for its own stack (ARP, neighbour \
             discovery, pings of its addresses).",
            c,
            |r| r.local_frames,
        ),
        (
            "router_echo_replies",
            "Echo replies (ICMP and ICMPv6) the gateway sent: pings of its addresses answered.",
            c,
            |r| r.echo_replies,
        ),
        (
            "router_arp_replies",
            "ARP replies the gateway sent.",
            c,
            |r| r.arp_replies,
        ),
        (
            "router_neighbour_adverts",
            "IPv6 neighbour advertisements the gateway sent.",
            c,
            |r| r.neighbour_adverts,
        ),
        (
            "router_time_exceeded_sent",
            "ICMP time-exceeded errors sent (the expired packets are dropped under the reason \
             ttl_exceeded).",
            c,
            |r| r.time_exceeded_sent,
        ),
        (
            "router_time_exceeded_suppressed",
            "Time-exceeded errors not sent: rate limit, or no address to send from.",
            c,
            |r| r.time_exceeded_suppressed,
        ),
        (
            "router_solicitations",
            "ARP requests and neighbour solicitations sent for next hops.",
            c,
            |r| r.solicitations,
        ),
        (
            "router_tx_ring_full",
            "Frames the gateway generated but could not queue (its transmit ring was full).",
            c,
            |r| r.tx_ring_full,
        ),
        (
            "router_neighbours_learnt",
            "Neighbour entries learnt or refreshed.",
            c,
            |r| r.neighbours_learnt,
        ),
        (
            "router_neighbours",
            "Neighbour entries in use now (resolved or being resolved).",
            MetricType::Gauge,
            |r| r.neighbours,
        ),
        (
            "router_neighbour_capacity",
            "Most neighbour entries.",
            MetricType::Gauge,
            |r| r.neighbour_capacity,
        ),
    ];
    encode_per_worker(enc, workers, labels, |w| w.router.as_ref(), &fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Samples set by the test.
    #[derive(Default)]
    struct Fake(Mutex<(Option<Vec<WorkerSample>>, Option<InferenceSample>)>);

    impl HealthSource for Fake {
        fn workers(&self) -> Option<Vec<WorkerSample>> {
            self.0.lock().unwrap().0.clone()
        }
        fn inference(&self) -> Option<InferenceSample> {
            self.0.lock().unwrap().1.clone()
        }
    }

    fn w(id: u16, polls: u64) -> WorkerSample {
        WorkerSample {
            id,
            lcore: Some(u32::from(id) + 1),
            polls,
            stopped: false,
            flows: None,
            router: None,
            l7: None,
        }
    }

    fn setup() -> (Arc<Fake>, Arc<ManualClock>, HealthTracker) {
        let src = Arc::new(Fake::default());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let t = HealthTracker::new(src.clone(), clock.clone(), Duration::from_secs(3));
        (src, clock, t)
    }

    #[test]
    fn a_worker_whose_polls_stand_still_is_stalled_after_the_threshold_then_recovers() {
        let (src, clock, t) = setup();
        src.0.lock().unwrap().0 = Some(vec![w(0, 10), w(1, 10)]);
        let r = t.report();
        assert_eq!(r.status, HealthStatus::Ok, "{:?}", r.reasons);
        assert!(r.reasons.is_empty() && r.dataplane);
        assert_eq!(r.workers[0].polls_per_s, None, "no window measured yet");

        // Worker 0 keeps polling, worker 1 stands still.
        for step in 1..=7u64 {
            clock.advance(1000);
            src.0.lock().unwrap().0 = Some(vec![w(0, 10 + step * 500), w(1, 10)]);
            let r = t.report();
            assert_eq!(r.workers[0].state, WorkerState::Running);
            assert_eq!(r.workers[0].polls_per_s, Some(500.0));
            assert_eq!(r.workers[1].last_progress_age_ms, step * 1000);
            let stalled = step >= 3;
            assert_eq!(
                r.workers[1].state == WorkerState::Stalled,
                stalled,
                "step {step}"
            );
            assert_eq!(
                r.status,
                if stalled {
                    HealthStatus::Degraded
                } else {
                    HealthStatus::Ok
                }
            );
        }
        let r = t.report();
        assert_eq!(r.reasons, ["worker 1 (lcore 2) has not polled for 7 s"]);

        // One poll later it runs again.
        clock.advance(200);
        src.0.lock().unwrap().0 = Some(vec![w(0, 4000), w(1, 11)]);
        let r = t.report();
        assert_eq!(r.workers[1].state, WorkerState::Running);
        assert_eq!(r.workers[1].last_progress_age_ms, 0);
        assert_eq!(r.status, HealthStatus::Ok);
    }

    #[test]
    fn no_running_worker_is_down_and_a_stopped_one_is_named() {
        let (src, clock, t) = setup();
        let mut stopped = w(0, 5);
        stopped.stopped = true;
        src.0.lock().unwrap().0 = Some(vec![stopped.clone(), w(1, 5)]);
        let r = t.report();
        assert_eq!(r.workers[0].state, WorkerState::Stopped);
        assert_eq!(r.status, HealthStatus::Degraded);
        assert_eq!(r.reasons, ["worker 0 (lcore 1) has stopped"]);
        clock.advance(5000);
        let r = t.report();
        assert_eq!(r.status, HealthStatus::Down, "{:?}", r.reasons);
        assert_eq!(r.reasons.len(), 2);

        src.0.lock().unwrap().0 = Some(Vec::new());
        let r = t.report();
        assert_eq!(r.status, HealthStatus::Down);
        assert_eq!(r.reasons, ["the data plane has no workers"]);
    }

    #[test]
    fn without_a_data_plane_or_ml_the_report_is_ok_and_says_so() {
        let (_src, _clock, t) = setup();
        let r = t.report();
        assert_eq!(r.status, HealthStatus::Ok);
        assert!(!r.dataplane && r.workers.is_empty());
        assert_eq!(r.inference.state, InferenceState::Off);
    }

    #[test]
    fn inference_states_rates_and_last_inference_age() {
        let (src, clock, t) = setup();
        src.0.lock().unwrap().0 = Some(vec![w(0, 1)]);
        let model = ModelInfo {
            id: "flow-if-v1".into(),
            hash: "ab".repeat(32),
            threshold: 0.5,
        };
        let mut s = InferenceSample {
            mode: "shadow".into(),
            models: vec![model],
            ..InferenceSample::default()
        };
        src.0.lock().unwrap().1 = Some(s.clone());
        let r = t.report();
        assert_eq!(r.inference.state, InferenceState::Running);
        assert_eq!(
            r.inference.last_inference_age_ms, None,
            "nothing scored yet"
        );
        clock.advance(1000);
        src.0.lock().unwrap().0 = Some(vec![w(0, 2)]);
        s.batches = 2;
        s.records = 300;
        s.sampler_records = 310;
        s.sampler_ring_full = 10;
        src.0.lock().unwrap().1 = Some(s.clone());
        let r = t.report();
        assert_eq!(r.status, HealthStatus::Ok);
        assert_eq!(
            (r.inference.sampler_records, r.inference.sampler_ring_full),
            (310, 10)
        );
        assert_eq!(r.inference.last_inference_age_ms, Some(0));
        assert_eq!(r.inference.records_per_s, Some(300.0));
        clock.advance(2500);
        src.0.lock().unwrap().0 = Some(vec![w(0, 3)]);
        let r = t.report();
        assert_eq!(r.inference.last_inference_age_ms, Some(2500));

        // No model: degraded with the reason; did not start: failed.
        s.models.clear();
        src.0.lock().unwrap().1 = Some(s.clone());
        let r = t.report();
        assert_eq!(r.inference.state, InferenceState::Degraded);
        assert_eq!(r.status, HealthStatus::Degraded);
        assert_eq!(r.reasons, ["inference thread: no model loaded"]);
        s.error = Some("model directory /x: not found".into());
        src.0.lock().unwrap().1 = Some(s);
        let r = t.report();
        assert_eq!(r.inference.state, InferenceState::Failed);
        assert_eq!(
            r.reasons,
            ["inference thread: model directory /x: not found"]
        );
        assert_eq!(
            r.status,
            HealthStatus::Degraded,
            "forwarding goes on without ML"
        );
    }

    #[test]
    fn metrics_carry_the_health() {
        let (src, clock, t) = setup();
        src.0.lock().unwrap().0 = Some(vec![w(0, 10), w(1, 10)]);
        let t = Arc::new(t);
        let m = super::super::metrics::ApiMetrics::new(Arc::new(super::super::NoCounters))
            .with_health(Arc::clone(&t));
        t.report();
        clock.advance(4000);
        src.0.lock().unwrap().0 = Some(vec![w(0, 99), w(1, 10)]);
        let text = m.encode().unwrap();
        for line in [
            "septa_health_status 1",
            "septa_worker_polls_total{worker=\"0\",lcore=\"1\"} 99",
            "septa_worker_up{worker=\"0\",lcore=\"1\"} 1",
            "septa_worker_up{worker=\"1\",lcore=\"2\"} 0",
            "septa_worker_last_progress_age_seconds{worker=\"1\",lcore=\"2\"} 4.0",
            "septa_inference_up 0",
            "septa_inference_records_total 0",
            "septa_sampler_ring_full_total 0",
            "# HELP septa_worker_polls Poll-loop iterations",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
