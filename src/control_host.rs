//! The control plane inside `septa run`: the `[control]` section of `gateway.toml`, the policy
//! service over its data directory, the REST API on a tokio runtime of its own, and the glue to
//! the data plane (the publisher into the workers' [`PolicySlot`] and the counters source).
//!
//! **Threads.** [`ControlHost::start`] runs before the EAL is initialised, so the runtime's
//! threads (`septa-api`, two of them, plus tokio's blocking pool spawned from them) keep the
//! process's original CPU affinity: they are never pinned to a worker lcore and never run on an
//! EAL thread. Workers share nothing with them but the [`TableCell`] (an RCU swap per publish)
//! and their relaxed counters (summed at scrape time).
//!
//! **Fail-closed start.** `start` opens the store and, before any port is set up, installs the
//! last running revision into the slot (and reverts a commit-confirm whose deadline passed while
//! the gateway was down). Workers therefore see that revision from their first poll. With an
//! empty store and no `dataplane.policy`, nothing is installed: new flows are dropped under
//! `no_policy` until a commit arrives (or admitted under `dataplane.fail_open = true`).
//!
//! **Precedence.** The store is authoritative. `dataplane.policy` only seeds an empty store on
//! first start (committed as revision 1 by `system:septa-run`); on later starts it is ignored,
//! with a notice when it differs from the running revision. `dataplane.decision` (a fixed
//! decision) cannot be combined with `[control]`: there would be nothing to publish into.
//!
//! **Publishing.** [`SlotPublisher`]: the first table installs a [`TableCell`] into the slot,
//! later ones are RCU swaps into that cell (workers pick them up at their next burst, no
//! restart). `publish(None)` (fail closed) swaps in an empty table whose default is deny.
//!
//! **Flows.** [`FlowAdapter`] turns the data plane's event-ring records
//! (`septa_dataplane::events::FlowEvent`) into the API's [`FlowRecord`]s in the bounded
//! [`FlowStore`] behind `/api/v1/flows` and its SSE stream. It runs on the thread that drains
//! the rings (`septa-monitor`), never on a worker. Table epochs are resolved to revision content
//! hashes through a map the API runtime refreshes under the policy-core lock.

// Only the DPDK build runs workers: without it the data-plane half of this glue is unused.
#![cfg_attr(not(feature = "dpdk"), allow(dead_code))]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Deserialize;

use septa_classifier::{Family, FlowKey, SourceRef, TableCell};
use septa_control::api::anomalies::{AnomalyJournal, AnomalyStore, DEFAULT_ANOMALY_CAPACITY};
use septa_control::api::learn::LearnState;
use septa_control::api::{
    self, ApiOptions, AppState, CountersSnapshot, CountersSource, DropCount, DynPublisher,
    FlowKind, FlowRecord, FlowStore, PortCounters, ServeConfig, TlsMode,
};
use septa_control::audit::{AccessDecision, Actor, DecisionAggregator, DecisionKind};
use septa_control::clock::SystemClock;
use septa_control::export::audit_tail::{AlertSource, SyslogFeed};
use septa_control::export::ipfix::IpfixExporter;
use septa_control::export::{ExportConfig, FlowLog};
use septa_control::history::feed::{self, FeedConfig, FeedHandle, FeedTargets, FlowFeed, FlowSink};
use septa_control::history::{FlowHistory, HistoryConfig, ObservedFlow};
use septa_control::lifecycle::{CommitOptions, PolicyService, Publisher, ServiceConfig};
use septa_control::{CompiledPolicy, Format};
use septa_dataplane::PolicySlot;
use septa_dataplane::counters::{Stats, WorkerCounters};
use septa_dataplane::drop::DropReason;
use septa_dataplane::events::{EventAction, EventDecision, FlowEvent};
use septa_dataplane::flow::{FlowTableSnapshot, SharedFlowTableStats};
use septa_dataplane::l7::{L7Counters, SharedL7Counters};
use septa_dataplane::route::{RouterSnapshot, SharedRouterStats};
use septa_dataplane::worker::TICKS_PER_SECOND;

/// Records `/api/v1/flows` holds (most recent first; older ones are evicted).
pub const FLOW_STORE_CAPACITY: usize = 100_000;
/// Distinct (flow, clause) groups itemised per audit interval; the rest are counted.
pub const MAX_DECISION_GROUPS: usize = 256;
/// Deny records of one (flow, epoch) kept per this many ms (a denied flow reports every packet).
const DENY_RECORD_INTERVAL_MS: i64 = 1000;

/// Default `control.listen`: loopback only; set `0.0.0.0:8443` to manage from the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default `control.data_dir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/septa";

/// `[control]` as written in `gateway.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// `false` turns the control plane off while keeping the section (default `true`).
    #[serde(default)]
    enabled: Option<bool>,
    /// Listen address (`host:port`).
    #[serde(default)]
    listen: Option<String>,
    /// Data directory: revisions (SQLite), audit log, keys, users, the generated certificate.
    /// Relative paths are resolved against the configuration file's directory.
    #[serde(default)]
    data_dir: Option<PathBuf>,
    /// Certificate chain (PEM); with `tls_key`. Without both, a self-signed certificate is
    /// generated into `data_dir/tls/` on first start.
    #[serde(default)]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM); with `tls_cert`.
    #[serde(default)]
    tls_key: Option<PathBuf>,
    /// Plain HTTP instead of HTTPS (behind a TLS-terminating proxy only). Default `false`.
    #[serde(default)]
    plain_http: bool,
    /// Names (DNS names or addresses) the self-signed certificate is issued for.
    #[serde(default)]
    cert_names: Option<Vec<String>>,
    /// Audit one admitted flow in this many (0: none). Denies and would-denies are all audited.
    #[serde(default)]
    audit_allow_sample: Option<u64>,
    /// Seconds over which access decisions are aggregated into one record per (flow, clause).
    #[serde(default)]
    audit_interval: Option<u64>,
    /// Seconds without a poll after which `/api/v1/health` reports a worker stalled.
    #[serde(default)]
    worker_stall_after: Option<u64>,
}

/// The checked `[control]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory (absolute or relative to the working directory).
    pub data_dir: PathBuf,
    /// How the API speaks.
    pub tls: TlsMode,
    /// Names of the self-signed certificate.
    pub cert_names: Vec<String>,
    /// One admitted flow in this many is audited (0: none).
    pub audit_allow_sample: u64,
    /// Aggregation interval of access-decision audit records.
    pub audit_interval: Duration,
    /// A worker whose poll counter stands still this long is reported stalled.
    pub worker_stall_after: Duration,
    /// The checked `[export]` section (set by the configuration loader; none by default).
    pub export: ExportConfig,
}

impl ControlConfig {
    /// Checks `raw`; relative paths are resolved against `dir`. `Ok(None)` when disabled.
    /// Errors are `(dotted key, message)`.
    pub fn from_raw(raw: RawControl, dir: Option<&Path>) -> Result<Option<Self>, (String, String)> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let resolve = |p: PathBuf| match dir {
            Some(d) if p.is_relative() => d.join(p),
            _ => p,
        };
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|e| {
            (
                "control.listen".to_owned(),
                format!("`{listen_text}` is not an address:port ({e})"),
            )
        })?;
        let tls = match (raw.tls_cert, raw.tls_key, raw.plain_http) {
            (Some(_), _, true) | (_, Some(_), true) => {
                return Err((
                    "control.plain_http".into(),
                    "plain_http = true cannot be combined with tls_cert/tls_key".into(),
                ));
            }
            (None, None, true) => TlsMode::PlainHttp,
            (None, None, false) => TlsMode::SelfSigned,
            (Some(cert), Some(key), false) => TlsMode::Files {
                cert: resolve(cert),
                key: resolve(key),
            },
            (Some(_), None, _) => {
                return Err((
                    "control.tls_key".into(),
                    "tls_cert is set but tls_key is not: give both, or neither for a \
                     self-signed certificate"
                        .into(),
                ));
            }
            (None, Some(_), _) => {
                return Err((
                    "control.tls_cert".into(),
                    "tls_key is set but tls_cert is not: give both, or neither for a \
                     self-signed certificate"
                        .into(),
                ));
            }
        };
        let cert_names = raw.cert_names.unwrap_or_else(|| {
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
            if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
                names.push(listen.ip().to_string());
            }
            names
        });
        if cert_names.is_empty() || cert_names.iter().any(|n| n.trim().is_empty()) {
            return Err((
                "control.cert_names".into(),
                "must list at least one non-empty name".into(),
            ));
        }
        let data_dir = resolve(raw.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()));
        let interval = raw.audit_interval.unwrap_or(10);
        if !(1..=3600).contains(&interval) {
            return Err((
                "control.audit_interval".into(),
                format!("{interval} s is outside 1..=3600"),
            ));
        }
        let stall = raw.worker_stall_after.unwrap_or(3);
        if !(1..=600).contains(&stall) {
            return Err((
                "control.worker_stall_after".into(),
                format!("{stall} s is outside 1..=600"),
            ));
        }
        Ok(Some(ControlConfig {
            listen,
            data_dir,
            tls,
            cert_names,
            audit_allow_sample: raw.audit_allow_sample.unwrap_or(1000),
            audit_interval: Duration::from_secs(interval),
            worker_stall_after: Duration::from_secs(stall),
            export: ExportConfig::default(),
        }))
    }

    /// The scheme the API answers on.
    pub fn scheme(&self) -> &'static str {
        if self.tls == TlsMode::PlainHttp {
            "http"
        } else {
            "https"
        }
    }
}

/// Checks `[export]`: every export needs `[control]` (the control plane feeds them), relative
/// flow-log paths follow the configuration file, and destinations must be concrete. Errors are
/// `(dotted key, message)`.
pub fn check_export(
    raw: Option<ExportConfig>,
    dir: Option<&Path>,
    control: bool,
) -> Result<ExportConfig, (String, String)> {
    let Some(mut e) = raw else {
        return Ok(ExportConfig::default());
    };
    if e != ExportConfig::default() && !control {
        return Err((
            "export".into(),
            "exports are fed by the control plane: add a [control] section (or remove [export])"
                .into(),
        ));
    }
    let concrete = |key: &str, a: &SocketAddr| {
        if a.port() == 0 || a.ip().is_unspecified() {
            Err((
                key.to_owned(),
                format!("{a} is not a concrete destination (address and port required)"),
            ))
        } else {
            Ok(())
        }
    };
    if let Some(i) = &e.ipfix {
        concrete("export.ipfix.collector", &i.collector)?;
    }
    if let Some(s) = &mut e.syslog {
        concrete("export.syslog.target", &s.target)?;
        s.check(dir)?;
    }
    e.inherit_enterprise_number();
    if let Some(f) = &mut e.flow_log {
        if f.path.as_os_str().is_empty() {
            return Err(("export.flow_log.path".into(), "must not be empty".into()));
        }
        if f.max_bytes < 4096 {
            return Err((
                "export.flow_log.max_bytes".into(),
                format!("{} is below 4096", f.max_bytes),
            ));
        }
        if let (Some(d), true) = (dir, f.path.is_relative()) {
            f.path = d.join(&f.path);
        }
    }
    Ok(e)
}

/// The configured exports in words; `["none (nothing leaves the appliance)"]` without any.
pub fn describe_exports(e: &ExportConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(i) = &e.ipfix {
        out.push(format!(
            "ipfix -> {} (domain {}, enterprise number {})",
            i.collector, i.domain, i.enterprise_number
        ));
    }
    if let Some(s) = &e.syslog {
        out.push(format!(
            "syslog -> {} ({:?}, {:?})",
            s.target, s.transport, s.format
        ));
    }
    if let Some(f) = &e.flow_log {
        out.push(format!("flow log -> {}", f.path.display()));
    }
    if out.is_empty() {
        out.push("none (nothing leaves the appliance)".into());
    }
    out
}

/// The learning pipeline of a running control plane: the feed thread (history, rule usage,
/// IPFIX, flow log) and the syslog thread.
struct Learning {
    feed: Option<FlowFeed>,
    handle: Option<FeedHandle>,
    syslog: Option<SyslogFeed>,
}

impl Learning {
    fn start(
        cfg: &ControlConfig,
        labels: &EpochLabels,
        anomalies: &Arc<AnomalyStore>,
        audit_dir: &Path,
    ) -> anyhow::Result<(Learning, LearnState)> {
        let history = FlowHistory::open(&cfg.data_dir, HistoryConfig::default())
            .context("opening the flow history (control.data_dir/history.db)")?;
        let mut sinks: Vec<Box<dyn FlowSink>> = Vec::new();
        if let Some(i) = &cfg.export.ipfix {
            sinks.push(Box::new(
                IpfixExporter::from_config(i).context("export.ipfix")?,
            ));
        }
        if let Some(f) = &cfg.export.flow_log {
            sinks.push(Box::new(FlowLog::open(f).context("export.flow_log")?));
        }
        let labels = labels.clone();
        let targets = FeedTargets {
            history: Some(history),
            revisions: Box::new(move |rev: &str| labels.compiled_by_hash(rev)),
            sinks,
        };
        let (flow_feed, handle) =
            feed::spawn(targets, FeedConfig::default()).context("starting the learning feed")?;
        let syslog = match &cfg.export.syslog {
            Some(s) => Some(
                SyslogFeed::spawn(
                    s.clone(),
                    audit_dir,
                    Some(Arc::clone(anomalies) as Arc<dyn AlertSource>),
                    hostname(),
                    Duration::from_secs(1),
                )
                .context("export.syslog")?,
            ),
            None => None,
        };
        let state = LearnState::new(
            Some(Arc::clone(flow_feed.stats())),
            syslog.as_ref().map(|s| Arc::clone(s.stats())),
            describe_exports(&cfg.export),
        );
        Ok((
            Learning {
                feed: Some(flow_feed),
                handle: Some(handle),
                syslog,
            },
            state,
        ))
    }

    /// Writes what is queued, then stops the threads.
    fn stop(&mut self) {
        self.feed = None;
        if let Some(h) = self.handle.take() {
            h.stop();
        }
        self.syslog = None;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "septa".into())
}

/// Publishes compiled policies into the workers' [`PolicySlot`].
pub struct SlotPublisher {
    slot: PolicySlot,
}

impl SlotPublisher {
    /// A publisher into `slot`.
    pub fn new(slot: PolicySlot) -> Self {
        SlotPublisher { slot }
    }
}

impl Publisher for SlotPublisher {
    fn publish(&self, table: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        let table = match table {
            Some(c) => (**c.table()).clone(),
            None => {
                if self.slot.cell().is_none() {
                    // Nothing was ever installed: workers are already fail-closed (no_policy).
                    return Ok(());
                }
                septa_classifier::compile(&[]).map_err(|e| e.to_string())?
            }
        };
        match self.slot.cell() {
            Some(cell) => {
                cell.publish(table);
            }
            None => {
                // Only the policy core publishes (under its lock), so the slot cannot be filled
                // concurrently; `install` is all-or-nothing either way.
                if !self.slot.install(TableCell::new(table)) {
                    return Err("the policy slot was filled concurrently".into());
                }
            }
        }
        Ok(())
    }
}

/// The workers' counters, summed when the API asks (once per scrape).
pub struct WorkerCountersSource {
    ports: Vec<String>,
    workers: OnceLock<Vec<Arc<WorkerCounters>>>,
}

impl WorkerCountersSource {
    fn new(ports: Vec<String>) -> Self {
        WorkerCountersSource {
            ports,
            workers: OnceLock::new(),
        }
    }

    /// The summed counters, or `None` before the workers exist.
    pub fn stats(&self) -> Option<Stats> {
        self.workers
            .get()
            .map(|w| Stats::collect(w.iter().map(|c| &**c)))
    }
}

impl CountersSource for WorkerCountersSource {
    fn snapshot(&self) -> CountersSnapshot {
        let stats = self.stats().unwrap_or_default();
        let ports = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let p = stats.ports.get(i).copied().unwrap_or_default();
                PortCounters {
                    port: name.clone(),
                    rx_packets: p.rx_packets,
                    rx_bytes: p.rx_bytes,
                    tx_packets: p.tx_packets,
                    tx_bytes: p.tx_bytes,
                }
            })
            .collect();
        let drops = DropReason::ALL
            .iter()
            .map(|r| DropCount {
                reason: r.as_str().to_owned(),
                packets: stats.drops(*r),
            })
            .collect();
        CountersSnapshot { ports, drops }
    }
}

/// A probe of the inference thread for `/api/v1/health` (see `ml_host::MlProbe`).
pub type InferenceProbe = Box<dyn Fn() -> api::InferenceSample + Send + Sync>;

/// A worker's flow-table, router and L7 counters as the worker publishes them (every
/// `counters::PUBLISH_US` of its clock, the L7 counters every `l7::L7_PUBLISH_US`), for
/// `/api/v1/health` and `/metrics`.
pub struct WorkerTables {
    /// Its flow table's counters and occupancy.
    pub flows: Arc<SharedFlowTableStats>,
    /// Its router's counters (routed mode only).
    pub router: Option<Arc<SharedRouterStats>>,
    /// Its L7 inspector's messages, refusals and malformed messages.
    pub l7: Arc<SharedL7Counters>,
}

/// The non-zero L7 counts of a worker, with protocol and function names.
fn l7_health(c: &L7Counters) -> api::L7Health {
    api::L7Health {
        functions: septa_dataplane::replay::l7_function_counts(c)
            .into_iter()
            .map(|f| api::L7FunctionHealth {
                protocol: f.proto.into(),
                function: f.function,
                name: f.name.map(str::to_owned),
                messages: f.messages,
                denied: f.denied,
            })
            .collect(),
        malformed: septa_dataplane::l7::L7Proto::ALL
            .into_iter()
            .filter(|p| c.malformed[*p as usize] > 0)
            .map(|p| api::L7MalformedHealth {
                protocol: p.name().into(),
                malformed: c.malformed[p as usize],
            })
            .collect(),
    }
}

fn flow_table_health(s: FlowTableSnapshot) -> api::FlowTableHealth {
    api::FlowTableHealth {
        active: s.active,
        half_open: s.half_open,
        capacity: s.capacity,
        inserted: s.stats.inserted,
        expired: s.stats.expired,
        evicted_half_open: s.stats.evicted_half_open,
    }
}

fn router_health(s: RouterSnapshot) -> api::RouterHealth {
    let r = s.stats;
    api::RouterHealth {
        local_frames: r.local,
        echo_replies: r.echo_replies,
        arp_replies: r.arp_replies,
        neighbour_adverts: r.neighbour_adverts,
        time_exceeded_sent: r.icmp_errors,
        time_exceeded_suppressed: r.icmp_suppressed,
        solicitations: r.solicitations,
        tx_ring_full: r.tx_ring_full,
        neighbours_learnt: r.neighbours_learnt,
        neighbours: s.neighbours,
        neighbour_capacity: s.neighbour_capacity,
    }
}

/// `/api/v1/health` over the workers' poll counters and the inference thread's probe.
pub struct HostHealth {
    counters: Arc<WorkerCountersSource>,
    lcores: OnceLock<Vec<u32>>,
    inference: OnceLock<Option<InferenceProbe>>,
    /// Per worker, in the order of the counters.
    tables: OnceLock<Vec<WorkerTables>>,
}

impl api::HealthSource for HostHealth {
    fn workers(&self) -> Option<Vec<api::WorkerSample>> {
        let lcores = self.lcores.get();
        let workers = self.counters.workers.get().map_or(&[][..], Vec::as_slice);
        let tables = self.tables.get().map_or(&[][..], Vec::as_slice);
        Some(
            workers
                .iter()
                .enumerate()
                .map(|(i, c)| api::WorkerSample {
                    id: u16::try_from(i).unwrap_or(u16::MAX),
                    lcore: lcores.and_then(|l| l.get(i).copied()),
                    polls: c.polls(),
                    stopped: c.is_stopped(),
                    flows: tables.get(i).map(|t| flow_table_health(t.flows.load())),
                    router: tables
                        .get(i)
                        .and_then(|t| t.router.as_ref())
                        .map(|r| router_health(r.load())),
                    l7: tables.get(i).map(|t| l7_health(&t.l7.load())),
                })
                .collect(),
        )
    }

    fn inference(&self) -> Option<api::InferenceSample> {
        self.inference.get()?.as_ref().map(|probe| probe())
    }
}

/// The running control plane. Dropping it stops the API (in-flight requests get two seconds).
pub struct ControlHost {
    slot: PolicySlot,
    counters: Arc<WorkerCountersSource>,
    health: Arc<HostHealth>,
    flows: Arc<FlowStore>,
    labels: EpochLabels,
    decisions: Arc<Mutex<DecisionAggregator>>,
    anomalies: Arc<AnomalyStore>,
    learning: Learning,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ControlHost {
    /// Opens the data directory, installs the running revision (or seeds the store from
    /// `seed`, the configuration's `dataplane.policy`), and starts serving. Call it before the
    /// EAL is initialised (see the module documentation).
    pub fn start(
        cfg: &ControlConfig,
        ports: Vec<String>,
        seed: Option<&Path>,
    ) -> anyhow::Result<ControlHost> {
        create_private_dir(&cfg.data_dir)?;
        let slot = PolicySlot::new();
        let clock = Arc::new(SystemClock);
        let publisher = Arc::new(SlotPublisher::new(slot.clone()));
        let dyn_publisher =
            DynPublisher(Arc::clone(&publisher) as Arc<dyn Publisher + Send + Sync>);
        let mut svc = PolicyService::open(
            ServiceConfig::new(&cfg.data_dir),
            dyn_publisher,
            clock.clone(),
        )
        .with_context(|| {
            format!(
                "opening the control data directory {} (control.data_dir); the gateway \
                     does not start without its last committed policy",
                cfg.data_dir.display()
            )
        })?;
        install_running(&mut svc, &publisher, seed)?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(8)
            .thread_name("septa-api")
            .enable_all()
            .build()
            .context("starting the control plane's runtime")?;
        let counters = Arc::new(WorkerCountersSource::new(ports));
        let flows = Arc::new(FlowStore::new(FLOW_STORE_CAPACITY));
        let labels = EpochLabels::default();
        labels.refresh(&svc, &slot);
        let anomalies = Arc::new(AnomalyStore::default());
        // Anomalies persist in data_dir/anomalies.db and reach the audit log (issue 6).
        let journal = AnomalyJournal::open(&cfg.data_dir, DEFAULT_ANOMALY_CAPACITY)
            .context("opening the anomaly journal (control.data_dir/anomalies.db)")?;
        journal
            .restore(&anomalies)
            .context("reading the anomaly journal (control.data_dir/anomalies.db)")?;
        let audit_dir = svc.audit_log().dir().to_owned();
        let (learning, learn_state) = Learning::start(cfg, &labels, &anomalies, &audit_dir)?;
        let mut opts = ApiOptions::new(&cfg.data_dir);
        opts.counters = Arc::clone(&counters) as Arc<dyn CountersSource>;
        opts.flows = Arc::clone(&flows) as Arc<dyn api::FlowSource>;
        opts.anomalies = Arc::clone(&anomalies);
        opts.learn = Arc::new(learn_state);
        let health = Arc::new(HostHealth {
            counters: Arc::clone(&counters),
            lcores: OnceLock::new(),
            inference: OnceLock::new(),
            tables: OnceLock::new(),
        });
        opts.health = Arc::clone(&health) as Arc<dyn api::HealthSource>;
        opts.stall_after = cfg.worker_stall_after;
        let (state, first_password) = {
            let _guard = runtime.enter();
            AppState::new(svc, clock, opts).context("starting the control API")?
        };
        let serve_cfg = ServeConfig {
            tls: cfg.tls.clone(),
            cert_names: cfg.cert_names.clone(),
            grace: Duration::from_secs(2),
            ..ServeConfig::new(cfg.listen, &cfg.data_dir)
        };
        let tls = api::serve::tls_config(&serve_cfg).context("control API TLS (control.tls_*)")?;
        let listener = std::net::TcpListener::bind(cfg.listen)
            .with_context(|| format!("control.listen = {}: cannot listen", cfg.listen))?;
        let listen = listener.local_addr().unwrap_or(cfg.listen);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(label_epochs(state.clone(), slot.clone(), labels.clone()));
        let decisions = Arc::new(Mutex::new(DecisionAggregator::new(
            cfg.audit_allow_sample,
            MAX_DECISION_GROUPS,
        )));
        runtime.spawn(journal_anomalies(
            state.clone(),
            Arc::clone(&anomalies),
            journal,
            cfg.audit_interval,
        ));
        runtime.spawn(audit_decisions(
            state.clone(),
            Arc::clone(&decisions),
            cfg.audit_interval,
        ));
        runtime.spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) =
                api::serve::serve_listener(listener, tls, &serve_cfg, state, shutdown).await
            {
                eprintln!("septa: control API stopped: {e}");
            }
        });
        let cert = match &cfg.tls {
            TlsMode::SelfSigned => format!(
                ", self-signed certificate {}",
                cfg.data_dir.join("tls").join("cert.pem").display()
            ),
            TlsMode::Files { cert, .. } => format!(", certificate {}", cert.display()),
            TlsMode::PlainHttp => " (PLAIN HTTP: control.plain_http = true)".to_owned(),
        };
        eprintln!(
            "septa: control API on {}://{listen}/api/v1 (data {}{cert})",
            cfg.scheme(),
            cfg.data_dir.display()
        );
        if let Some(pw) = first_password {
            // Shown once: only its argon2 hash is stored.
            eprintln!(
                "septa: first start: created user `admin` with password {pw} (shown once; \
                 change it with POST /api/v1/auth/password)"
            );
        }
        Ok(ControlHost {
            slot,
            counters,
            health,
            flows,
            labels,
            decisions,
            anomalies,
            learning,
            shutdown: Some(tx),
            runtime: Some(runtime),
        })
    }

    /// The slot workers read their table from (clone it into every worker's decision).
    pub fn slot(&self) -> PolicySlot {
        self.slot.clone()
    }

    /// Hands the workers' counters to `/metrics` and `/api/v1/counters` (once; later calls are
    /// ignored).
    pub fn attach_counters(&self, workers: &[Arc<WorkerCounters>]) {
        let _ = self.counters.workers.set(workers.to_vec());
    }

    /// Hands `/api/v1/health` and `/metrics` the workers' flow-table and router counters (in
    /// the order of [`Self::attach_counters`]). Once; later calls are ignored.
    pub fn attach_tables(&self, tables: Vec<WorkerTables>) {
        let _ = self.health.tables.set(tables);
    }

    /// Hands `/api/v1/health` the workers' lcores (in the order of [`Self::attach_counters`])
    /// and the inference thread's probe (`None`: ML not configured). Once; later calls are
    /// ignored.
    pub fn attach_health(&self, lcores: &[u32], inference: Option<InferenceProbe>) {
        let _ = self.health.lcores.set(lcores.to_vec());
        let _ = self.health.inference.set(inference);
    }

    /// The adapter from the workers' event rings into the flow store. Make it right before the
    /// workers: their event clocks start at 0 when they are made.
    pub fn flow_adapter(&self) -> FlowAdapter {
        let mut a = FlowAdapter::new(Arc::clone(&self.flows), self.labels.clone(), now_ms());
        a.decisions = Some(Arc::clone(&self.decisions));
        a.learn = self.learning.feed.clone();
        a
    }

    /// Where the inference thread pushes its alerts (`/api/v1/anomalies`, syslog when
    /// configured).
    #[allow(
        dead_code,
        reason = "the inference thread's wiring into `septa run` is in progress and will call it"
    )]
    pub fn anomalies(&self) -> Arc<AnomalyStore> {
        Arc::clone(&self.anomalies)
    }
}

/// Table epoch → content hash and compiled policy of the revision it was published for.
#[derive(Clone, Default)]
pub struct EpochLabels(Arc<Mutex<HashMap<u64, Label>>>);

#[derive(Clone)]
struct Label {
    hash: String,
    compiled: Option<Arc<CompiledPolicy>>,
}

impl EpochLabels {
    /// Records the cell's current epoch for the service's running revision. Call it with the
    /// service locked, so no publish can come between the two reads.
    fn refresh<P: Publisher>(&self, svc: &PolicyService<P>, slot: &PolicySlot) {
        let Some(cell) = slot.cell() else { return };
        let epoch = cell.current().epoch();
        let label = Label {
            hash: svc
                .running()
                .map_or_else(|| "none".to_owned(), |r| r.hash.clone()),
            compiled: svc.running_table().cloned(),
        };
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > 4096 {
            map.clear();
        }
        map.entry(epoch).or_insert(label);
    }

    /// The compiled policy of the revision with content hash `hash`, if an epoch was published
    /// for it.
    fn compiled_by_hash(&self, hash: &str) -> Option<Arc<CompiledPolicy>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .find(|l| l.hash == hash)
            .and_then(|l| l.compiled.clone())
    }

    fn label(&self, epoch: u64) -> String {
        if epoch == 0 {
            return "none".into();
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&epoch)
            .map_or_else(|| format!("epoch:{epoch}"), |l| l.hash.clone())
    }

    /// The deciding clause of `d`, as text.
    fn clause(&self, d: &EventDecision) -> String {
        if d.epoch == 0 {
            return "no policy installed (fail-open admission)".into();
        }
        let Some(source) = d.source else {
            return "default (no rule matched)".into();
        };
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&d.epoch)
            .and_then(|l| l.compiled.as_ref())
            .and_then(|c| {
                c.clause_of_source(SourceRef(source))
                    .map(ToString::to_string)
            })
            .unwrap_or_else(|| format!("clause {source} of table epoch {}", d.epoch))
    }

    /// The L7 protocol of an inspect decision (`modbus`), empty for other actions.
    fn l7(&self, d: &EventDecision) -> String {
        let EventAction::Inspect(hook) = d.action else {
            return String::new();
        };
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&d.epoch)
            .and_then(|l| l.compiled.as_ref())
            .and_then(|c| c.l7_constraint(septa_classifier::HookId(hook)))
            .map(|c| c.proto.name().to_owned())
            .unwrap_or_default()
    }
}

/// Appends the aggregated access decisions every `interval` (one record per (flow, clause)
/// group, at most [`MAX_DECISION_GROUPS`] + 1 per interval, written with one fsync per batch).
async fn audit_decisions(state: AppState, agg: Arc<Mutex<DecisionAggregator>>, interval: Duration) {
    let mut t = tokio::time::interval(interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t.tick().await;
    loop {
        t.tick().await;
        let entries = agg.lock().unwrap_or_else(PoisonError::into_inner).take();
        if entries.is_empty() {
            continue;
        }
        let r = state
            .core
            .run(move |svc| svc.audit_log().append_all(entries).map(|_| ()))
            .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("septa: control: appending access decisions: {e}"),
            Err(p) => eprintln!("septa: control: appending access decisions: {}", p.detail),
        }
    }
}

/// Audit records per interval for raised anomalies (groups beyond are counted in one record).
const MAX_ANOMALY_AUDIT_GROUPS: usize = 20;

/// Every `interval`: writes new and triaged anomalies to the journal and appends the audit
/// records of the alerts raised since the last round (see `AnomalyJournal::sync`).
async fn journal_anomalies(
    state: AppState,
    store: Arc<AnomalyStore>,
    journal: AnomalyJournal,
    interval: Duration,
) {
    let journal = Arc::new(Mutex::new(journal));
    let mut t = tokio::time::interval(interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        let (j, s) = (Arc::clone(&journal), Arc::clone(&store));
        let synced = tokio::task::spawn_blocking(move || {
            j.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sync(&s, MAX_ANOMALY_AUDIT_GROUPS)
        })
        .await;
        let (entries, upto) = match synced {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                eprintln!("septa: control: {e}");
                continue;
            }
            Err(_) => continue,
        };
        if !entries.is_empty() {
            let r = state
                .core
                .run(move |svc| svc.audit_log().append_all(entries).map(|_| ()))
                .await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    eprintln!("septa: control: appending anomaly audit records: {e}");
                    continue;
                }
                Err(p) => {
                    eprintln!(
                        "septa: control: appending anomaly audit records: {}",
                        p.detail
                    );
                    continue;
                }
            }
        }
        let j = Arc::clone(&journal);
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = j
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .audited(upto)
            {
                eprintln!("septa: control: {e}");
            }
        })
        .await;
    }
}

/// Labels newly published epochs twice a second (under the policy-core lock).
async fn label_epochs(state: AppState, slot: PolicySlot, labels: EpochLabels) {
    let mut t = tokio::time::interval(Duration::from_millis(500));
    loop {
        t.tick().await;
        let (slot, labels) = (slot.clone(), labels.clone());
        let _ = state.core.run(move |svc| labels.refresh(svc, &slot)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Turns the workers' [`FlowEvent`]s into [`FlowRecord`]s in the [`FlowStore`].
///
/// * a flow start becomes a `start` record with no packets yet;
/// * a flow update (the data plane's running totals: at a TCP close, and periodically while
///   the flow carries traffic) becomes an `update` record whose `packets` and `bytes` are what
///   the flow carried since its previous report (both directions summed; an update that adds
///   nothing makes no record), `total_*` the totals; the end an `end` record with the rest, so
///   each byte is reported once. Both are stamped with the flow's last packet;
/// * the learning feed (history, rule usage, exports) gets starts, denies and each flow's
///   totals at its end, never updates, so nothing there is counted twice;
/// * a deny or would-deny becomes a `deny` record (mode `monitor` for would-deny); a denied
///   flow reports every packet, so one record per (flow, epoch) and second is kept;
/// * `rule` is `u32::MAX` when the table's default decided; `revision` is the content hash of
///   the revision whose table decided (`none` without a policy, `epoch:N` if not yet known).
pub struct FlowAdapter {
    store: Arc<FlowStore>,
    labels: EpochLabels,
    start_ms: i64,
    /// Per (flow, epoch): when its last deny record was kept, and the L7 reason that blocked it.
    last_deny: HashMap<(FlowKey, u64), LastDeny>,
    decisions: Option<Arc<Mutex<DecisionAggregator>>>,
    /// The learning feed (history, rule usage, flow exports); offers never block.
    learn: Option<FlowFeed>,
    /// Per open flow that sent an update (key, first-seen tick): the totals reported so far and
    /// when (ms), so the next update or the end reports only the difference.
    reported: HashMap<(FlowKey, u64), Reported>,
}

/// A (flow, epoch)'s last deny record: when it was kept, the L7 reason that blocked the flow,
/// and the refused packets and bytes since (reported by its next record).
#[derive(Clone, Copy, Debug)]
struct LastDeny {
    at_ms: i64,
    why: Option<septa_dataplane::l7::DenyReason>,
    packets: u64,
    bytes: u64,
}

/// What [`FlowAdapter`] reported of an open flow.
#[derive(Clone, Copy, Debug, Default)]
struct Reported {
    packets: u64,
    bytes: u64,
    at_ms: i64,
}

/// Open flows whose reported totals [`FlowAdapter`] remembers. Beyond it the oldest half is
/// forgotten (ends lost to a full ring leave entries behind); a forgotten flow's next report
/// counts its whole traffic again.
const REPORTED_FLOWS: usize = 1 << 18;

/// Drains every worker's event ring into `events` and, with `[control]`, into the flow records
/// and the learning feed (history, rule usage, exports): the monitor's passes while forwarding,
/// its passes during the workers' final flush, and once more after the workers stopped.
pub fn drain_events(
    drain: &mut septa_dataplane::events::EventDrain,
    events: &mut septa_dataplane::events::EventCounts,
    mut flows: Option<&mut FlowAdapter>,
) {
    drain.drain(usize::MAX, |_, ev| {
        events.add(&ev);
        if let Some(f) = &mut flows {
            f.on_event(&ev);
        }
    });
}

impl FlowAdapter {
    fn new(store: Arc<FlowStore>, labels: EpochLabels, start_ms: i64) -> Self {
        FlowAdapter {
            store,
            labels,
            start_ms,
            last_deny: HashMap::new(),
            decisions: None,
            learn: None,
            reported: HashMap::new(),
        }
    }

    /// The packets and bytes of a flow since its previous report, with its totals, and
    /// remembers (for an update) or forgets (at the end) the totals.
    fn since_reported(
        &mut self,
        flow: (FlowKey, u64),
        packets: u64,
        bytes: u64,
        at_ms: i64,
        ended: bool,
    ) -> (u64, u64) {
        let prev = if ended {
            self.reported.remove(&flow)
        } else {
            self.reported.get(&flow).copied()
        }
        .unwrap_or_default();
        if !ended {
            if self.reported.len() >= REPORTED_FLOWS && !self.reported.contains_key(&flow) {
                let mut ats: Vec<i64> = self.reported.values().map(|r| r.at_ms).collect();
                let mid = ats.len() / 2;
                let cut = *ats.select_nth_unstable(mid).1;
                self.reported.retain(|_, r| r.at_ms > cut);
            }
            self.reported.insert(
                flow,
                Reported {
                    packets,
                    bytes,
                    at_ms,
                },
            );
        }
        (
            packets.saturating_sub(prev.packets),
            bytes.saturating_sub(prev.bytes),
        )
    }

    fn wall_ms(&self, ticks: u64) -> i64 {
        let ms = ticks / (TICKS_PER_SECOND / 1000).max(1);
        self.start_ms
            .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// Converts and stores one event (and counts its access decision for the audit log).
    pub fn on_event(&mut self, ev: &FlowEvent) {
        self.audit(ev);
        let rec = match ev {
            FlowEvent::Start(s) => self.record(FlowKind::Start, &s.key, s.at, &s.decision, 0, 0),
            FlowEvent::Update(u) => {
                let (packets, bytes) = (u.packets[0] + u.packets[1], u.bytes[0] + u.bytes[1]);
                let at = self.wall_ms(u.last_seen);
                let delta = self.since_reported((u.key, u.first_seen), packets, bytes, at, false);
                if delta.0 == 0 {
                    // The same totals again (the sweep repeats a report after a stall).
                    return;
                }
                let mut r = self.record(
                    FlowKind::Update,
                    &u.key,
                    u.last_seen,
                    &u.decision,
                    delta.0,
                    delta.1,
                );
                (r.total_packets, r.total_bytes) = (packets, bytes);
                if u.l7 != septa_dataplane::l7::L7Proto::Unknown {
                    u.l7.name().clone_into(&mut r.l7);
                }
                r
            }
            FlowEvent::End(e) => {
                let (packets, bytes) = (e.packets[0] + e.packets[1], e.bytes[0] + e.bytes[1]);
                let at = self.wall_ms(e.last_seen);
                let delta = self.since_reported((e.key, e.first_seen), packets, bytes, at, true);
                // Stamped with its last packet: the removal comes an idle timeout (or TCP's
                // TIME_WAIT) later and says nothing about the traffic.
                let mut r = self.record(
                    FlowKind::End,
                    &e.key,
                    e.last_seen,
                    &e.decision,
                    delta.0,
                    delta.1,
                );
                (r.total_packets, r.total_bytes) = (packets, bytes);
                // The protocol the data plane identified on the flow, when it did.
                if e.l7 != septa_dataplane::l7::L7Proto::Unknown {
                    e.l7.name().clone_into(&mut r.l7);
                }
                r
            }
            FlowEvent::Deny(d) => {
                let at = self.wall_ms(d.at);
                let k = (d.key, d.decision.epoch);
                let prev = self.last_deny.get(&k).copied();
                if let Some(p) = prev
                    && at - p.at_ms < DENY_RECORD_INTERVAL_MS
                {
                    if let Some(e) = self.last_deny.get_mut(&k) {
                        e.why = e.why.or(d.l7);
                        // Counted in the flow's next deny record.
                        e.packets += 1;
                        e.bytes += u64::from(d.bytes);
                    }
                    return;
                }
                if self.last_deny.len() >= 65_536 {
                    self.last_deny.clear();
                }
                // Later packets of a flow the L7 inspector blocked (TCP retransmitting the refused
                // write, the FIN) carry no reason of their own: repeat the one that blocked it.
                let why = d.l7.or(prev.and_then(|p| p.why));
                self.last_deny.insert(
                    k,
                    LastDeny {
                        at_ms: at,
                        why,
                        packets: 0,
                        bytes: 0,
                    },
                );
                // This packet and those refused since the previous record.
                let (held_p, held_b) = prev.map_or((0, 0), |p| (p.packets, p.bytes));
                let mut r = self.record(
                    FlowKind::Deny,
                    &d.key,
                    d.at,
                    &d.decision,
                    1 + held_p,
                    u64::from(d.bytes) + held_b,
                );
                r.action = "deny".into();
                if let Some(why) = why {
                    r.l7_reason = why.to_string();
                }
                if d.would_deny {
                    r.mode = "monitor".into();
                }
                r
            }
        };
        if let Some(feed) = &self.learn
            && !matches!(ev, FlowEvent::Update(_))
            && let Ok(mut o) = ObservedFlow::try_from(&rec)
        {
            // A flow's end reports the counters of a flow its start already counted: all of
            // them (the feed never sees updates).
            if matches!(ev, FlowEvent::End(_)) {
                o.flows = 0;
                (o.packets, o.bytes) = (rec.total_packets, rec.total_bytes);
            }
            feed.offer(o);
        }
        self.store.push(rec);
    }

    fn audit(&self, ev: &FlowEvent) {
        let Some(agg) = &self.decisions else { return };
        let (kind, key, at, d) = match ev {
            FlowEvent::Start(s) => (DecisionKind::Allow, &s.key, s.at, &s.decision),
            FlowEvent::Deny(x) if x.would_deny => {
                (DecisionKind::WouldDeny, &x.key, x.at, &x.decision)
            }
            FlowEvent::Deny(x) => (DecisionKind::Deny, &x.key, x.at, &x.decision),
            FlowEvent::Update(_) | FlowEvent::End(_) => return,
        };
        let decision = AccessDecision {
            kind,
            flow: format!(
                "{} {} -> {}",
                proto_name(key.proto),
                endpoint(key.family, key.src, key.sport),
                endpoint(key.family, key.dst, key.dport)
            ),
            clause: self.labels.clause(d),
            rule: d.rule,
            revision: self.labels.label(d.epoch),
            ts_ms: self.wall_ms(at),
        };
        agg.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(decision);
    }

    fn record(
        &self,
        kind: FlowKind,
        key: &FlowKey,
        at: u64,
        d: &EventDecision,
        packets: u64,
        bytes: u64,
    ) -> FlowRecord {
        FlowRecord {
            ts_ms: self.wall_ms(at),
            kind,
            src: addr(key.family, key.src).to_string(),
            dst: addr(key.family, key.dst).to_string(),
            proto: key.proto,
            sport: key.sport,
            dport: key.dport,
            action: match d.action {
                EventAction::Allow => "allow",
                EventAction::Deny => "deny",
                EventAction::Inspect(_) => "inspect",
            }
            .into(),
            mode: if d.monitor { "monitor" } else { "enforce" }.into(),
            rule: d.rule.unwrap_or(u32::MAX),
            revision: self.labels.label(d.epoch),
            packets,
            bytes,
            total_packets: 0,
            total_bytes: 0,
            clause: self.labels.clause(d),
            l7: self.labels.l7(d),
            l7_reason: String::new(),
        }
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        p => format!("proto {p}"),
    }
}

fn endpoint(family: Family, a: u128, port: u16) -> String {
    match addr(family, a) {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn addr(family: Family, a: u128) -> IpAddr {
    match family {
        // IPv4 addresses live in the low 32 bits.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(
            u32::try_from(a & u128::from(u32::MAX)).unwrap_or(0),
        )),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(a)),
    }
}

impl Drop for ControlHost {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(3));
        }
        self.learning.stop();
    }
}

/// Publishes the store's running revision, or seeds an empty store from `seed`, then reverts a
/// commit-confirm that expired while the gateway was down.
fn install_running(
    svc: &mut PolicyService<DynPublisher>,
    publisher: &SlotPublisher,
    seed: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(table) = svc.running_table().cloned() {
        let info = svc.running().cloned();
        publisher
            .publish(Some(&table))
            .map_err(|e| anyhow::anyhow!("installing the running revision: {e}"))?;
        if let Some(info) = info {
            eprintln!(
                "septa: control: enforcing revision {} ({}) from the store",
                info.id,
                info.hash.get(..12).unwrap_or(&info.hash)
            );
        }
        if let Some(file) = seed {
            eprintln!(
                "septa: control: dataplane.policy = {} only seeds an empty store and is ignored \
                 now; commit it through the API to enforce it",
                file.display()
            );
        }
    } else if let Some(file) = seed {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading dataplane.policy = {}", file.display()))?;
        let info = svc
            .commit(
                &text,
                Format::from_path(file),
                &Actor::system("septa-run"),
                &format!(
                    "seeded from dataplane.policy {} on first start",
                    file.display()
                ),
                CommitOptions::default(),
            )
            .map_err(|e| anyhow::anyhow!("dataplane.policy = {}: {e}", file.display()))?;
        eprintln!(
            "septa: control: empty store seeded from {}: revision {} is enforced",
            file.display(),
            info.id
        );
    }
    if let Some(rev) = svc
        .tick()
        .context("reverting a commit-confirm that expired while the gateway was down")?
    {
        eprintln!(
            "septa: control: an unconfirmed commit expired while stopped: reverted to revision {}",
            rev.id
        );
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).with_context(|| {
        format!(
            "creating the control data directory {} (control.data_dir)",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use septa_dataplane::events::{FlowUpdate, UpdateCause};

    fn raw(text: &str) -> RawControl {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_https_self_signed_on_loopback() {
        let c = ControlConfig::from_raw(raw(""), Some(Path::new("/etc/septa")))
            .unwrap()
            .unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.tls, TlsMode::SelfSigned);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.scheme(), "https");
        assert!(c.cert_names.contains(&"localhost".to_owned()));
        assert_eq!(c.worker_stall_after, Duration::from_secs(3));
    }

    #[test]
    fn relative_paths_follow_the_config_file_and_disable_works() {
        let c = ControlConfig::from_raw(
            raw("data_dir = \"state\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nlisten = \"10.0.0.1:9443\""),
            Some(Path::new("/etc/septa")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/septa/state"));
        assert_eq!(
            c.tls,
            TlsMode::Files {
                cert: "/etc/septa/c.pem".into(),
                key: "/etc/septa/k.pem".into()
            }
        );
        assert!(c.cert_names.contains(&"10.0.0.1".to_owned()));
        assert_eq!(
            ControlConfig::from_raw(raw("enabled = false"), None).unwrap(),
            None
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("listen = \"nope\"", "control.listen"),
            ("tls_cert = \"c.pem\"", "control.tls_key"),
            ("tls_key = \"k.pem\"", "control.tls_cert"),
            (
                "plain_http = true\ntls_cert = \"c\"\ntls_key = \"k\"",
                "control.plain_http",
            ),
            ("cert_names = []", "control.cert_names"),
            ("worker_stall_after = 0", "control.worker_stall_after"),
        ] {
            let (k, msg) = ControlConfig::from_raw(raw(text), None).unwrap_err();
            assert_eq!(k, key, "{text}: {msg}");
        }
        assert!(toml::from_str::<RawControl>("lisen = \"x\"").is_err());
    }

    #[test]
    fn export_is_off_by_default_needs_control_and_names_bad_keys() {
        let parse = |t: &str| toml::from_str::<ExportConfig>(t).unwrap();
        assert_eq!(
            check_export(None, None, true).unwrap(),
            ExportConfig::default()
        );
        assert_eq!(
            describe_exports(&ExportConfig::default()),
            ["none (nothing leaves the appliance)"]
        );
        let ok = check_export(
            Some(parse(
                "ipfix = { collector = \"127.0.0.1:4739\" }\nflow_log = { path = \"f.jsonl\" }",
            )),
            Some(Path::new("/etc/septa")),
            true,
        )
        .unwrap();
        assert_eq!(
            ok.flow_log.as_ref().unwrap().path,
            PathBuf::from("/etc/septa/f.jsonl")
        );
        assert_eq!(describe_exports(&ok).len(), 2);
        for (text, control, key) in [
            (
                "ipfix = { collector = \"127.0.0.1:4739\" }",
                false,
                "export",
            ),
            (
                "ipfix = { collector = \"127.0.0.1:0\" }",
                true,
                "export.ipfix.collector",
            ),
            (
                "syslog = { target = \"[::]:514\", transport = \"tcp\", format = \"json\" }",
                true,
                "export.syslog.target",
            ),
            (
                "flow_log = { path = \"f\", max_bytes = 1 }",
                true,
                "export.flow_log.max_bytes",
            ),
        ] {
            let (k, msg) = check_export(Some(parse(text)), None, control).unwrap_err();
            assert_eq!(k, key, "{text}: {msg}");
        }
    }

    #[test]
    fn publisher_installs_then_swaps_and_fails_closed() {
        let slot = PolicySlot::new();
        let p = SlotPublisher::new(slot.clone());
        // Fail closed before anything was installed: stays empty (workers drop under no_policy).
        p.publish(None).unwrap();
        assert!(slot.cell().is_none());
        let text = "apiVersion: septa.io/v1\nkind: Policy\nmetadata:\n  name: t\nspec:\n  zones:\n    - name: a\n      subnets: [10.1.0.0/24]\n    - name: b\n      subnets: [10.2.0.0/24]\n  conduits:\n    - name: a-to-b\n      from: [a]\n      to: [b]\n      services:\n        - proto: udp\n          ports: [5000]\n";
        let (_, compiled) =
            septa_control::lifecycle::check_policy(text, Format::Yaml, None).unwrap();
        let compiled = Arc::new(compiled);
        p.publish(Some(&compiled)).unwrap();
        let cell = Arc::clone(slot.cell().expect("installed"));
        assert_eq!(cell.current().epoch(), 1);
        assert_eq!(cell.current().len(), compiled.table().len());
        p.publish(Some(&compiled)).unwrap();
        assert_eq!(cell.current().epoch(), 2, "an RCU swap into the same cell");
        p.publish(None).unwrap();
        let t = cell.current();
        assert_eq!(t.epoch(), 3);
        assert!(t.is_empty());
        assert_eq!(
            t.default_decision().action,
            septa_classifier::Action::Deny,
            "fail closed"
        );
    }

    #[test]
    fn health_reads_each_workers_polls_lcore_and_stop_and_the_inference_probe() {
        use septa_control::api::HealthSource;
        let counters = Arc::new(WorkerCountersSource::new(vec!["p0".into()]));
        let health = HostHealth {
            counters: Arc::clone(&counters),
            lcores: OnceLock::new(),
            inference: OnceLock::new(),
            tables: OnceLock::new(),
        };
        assert_eq!(
            health.workers(),
            Some(Vec::new()),
            "before the workers exist"
        );
        assert_eq!(health.inference(), None);
        let w: Vec<_> = (0..2).map(|_| Arc::new(WorkerCounters::new(1))).collect();
        let _ = counters.workers.set(w.clone());
        let _ = health.lcores.set(vec![3, 5]);
        let probe: InferenceProbe = Box::new(|| api::InferenceSample {
            mode: "shadow".into(),
            batches: 7,
            ..api::InferenceSample::default()
        });
        let _ = health.inference.set(Some(probe));
        w[0].polled();
        w[0].polled();
        w[1].set_stopped();
        let got = health.workers().unwrap();
        assert_eq!(
            got.iter()
                .map(|s| (s.id, s.lcore, s.polls, s.stopped))
                .collect::<Vec<_>>(),
            [(0, Some(3), 2, false), (1, Some(5), 0, true)]
        );
        assert_eq!(health.inference().unwrap().batches, 7);
        assert_eq!(got[0].flows, None, "no tables attached yet");

        // Each worker's flow table as published; a router on worker 0 only.
        use septa_dataplane::flow::{FlowTable, FlowTableConfig, Lookup, TimeoutClass};
        use septa_dataplane::route::{RoutedPort, Router, RouterConfig};
        let tables: Vec<FlowTable<u8>> = (0..2)
            .map(|i| {
                let mut t = FlowTable::new(&FlowTableConfig::new(16, 1000), [1, 2]).unwrap();
                for port in 0..=i {
                    let key = FlowKey::v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, port, 53);
                    let Lookup::Miss(v) = t.lookup(&key) else {
                        panic!("new key")
                    };
                    t.insert(v, 0, TimeoutClass::Other, 0).unwrap();
                }
                t.publish(0, 100);
                t
            })
            .collect();
        let port = RoutedPort {
            port: 0,
            mac: [2, 0, 0, 0, 0, 1],
            v4: Some("10.0.0.1/24".parse().unwrap()),
            v6: None,
        };
        let mut router = Router::new(&RouterConfig::new(vec![port], Vec::new()), 0).unwrap();
        router.poll(0);
        let _ = health.tables.set(vec![
            WorkerTables {
                flows: tables[0].shared_stats(),
                router: Some(router.shared_stats()),
                l7: Arc::default(),
            },
            WorkerTables {
                flows: tables[1].shared_stats(),
                router: None,
                l7: Arc::default(),
            },
        ]);
        let got = health.workers().unwrap();
        let flows = |i: usize| got[i].flows.clone().unwrap();
        assert_eq!(
            (flows(0).active, flows(0).inserted, flows(0).capacity),
            (1, 1, 16)
        );
        assert_eq!((flows(1).active, flows(1).inserted), (2, 2));
        let r = got[0].router.clone().expect("worker 0 routes");
        assert_eq!(r.neighbour_capacity, router.neighbours().capacity() as u64);
        assert_eq!(got[1].router, None, "worker 1 does not route");
        assert_eq!(
            got[1].l7,
            Some(api::L7Health::default()),
            "nothing inspected yet"
        );
    }

    /// A worker's L7 counts as the health report and `/metrics` show them: non-zero ones only,
    /// with protocol and function names.
    #[test]
    fn l7_counts_are_named_and_only_what_is_not_zero() {
        use septa_dataplane::l7::L7Proto;
        let mut c = L7Counters::boxed();
        c.messages[L7Proto::Modbus as usize][3] = 10;
        c.messages[L7Proto::Modbus as usize][6] = 2;
        c.denied[L7Proto::Modbus as usize][6] = 2;
        c.denied_other[L7Proto::S7comm as usize] = 1;
        c.malformed[L7Proto::Dnp3 as usize] = 4;
        let h = l7_health(&c);
        let f = |proto: &str, function: Option<u8>, name: Option<&str>, m: u64, d: u64| {
            api::L7FunctionHealth {
                protocol: proto.into(),
                function,
                name: name.map(str::to_owned),
                messages: m,
                denied: d,
            }
        };
        assert_eq!(
            h.functions,
            [
                f("modbus", Some(3), Some("read_holding_registers"), 10, 0),
                f("modbus", Some(6), Some("write_single_register"), 2, 2),
                f("s7comm", None, None, 0, 1),
            ]
        );
        assert_eq!(
            h.malformed,
            [api::L7MalformedHealth {
                protocol: "dnp3".into(),
                malformed: 4
            }]
        );
    }

    #[test]
    fn counters_are_summed_over_workers_per_port_and_reason() {
        let src = WorkerCountersSource::new(vec!["p0".into(), "p1".into()]);
        assert_eq!(
            src.snapshot().ports[1].rx_packets,
            0,
            "zeros before workers exist"
        );
        let w: Vec<_> = (0..2).map(|_| Arc::new(WorkerCounters::new(2))).collect();
        w[0].rx(0, 3, 300);
        w[1].rx(0, 2, 200);
        w[1].tx(1, 5, 500);
        w[0].dropped(DropReason::Policy, 4);
        w[1].dropped(DropReason::Policy, 1);
        src.workers.set(w).unwrap();
        let s = src.snapshot();
        assert_eq!(s.ports[0].rx_packets, 5);
        assert_eq!(s.ports[0].rx_bytes, 500);
        assert_eq!(s.ports[1].tx_packets, 5);
        let policy = s.drops.iter().find(|d| d.reason == "policy").unwrap();
        assert_eq!(policy.packets, 5);
        assert_eq!(s.drops.len(), DropReason::ALL.len());
    }

    #[test]
    fn later_denies_of_an_l7_blocked_flow_repeat_its_reason() {
        use septa_control::api::{FlowFilter, FlowSource};
        use septa_dataplane::events::DenyRecord;
        let store = Arc::new(FlowStore::new(100));
        let mut a = FlowAdapter::new(Arc::clone(&store), EpochLabels::default(), 1_000_000);
        let blocked = FlowKey::v4([10, 1, 0, 1].into(), [10, 2, 0, 1].into(), 6, 40000, 502);
        let other = FlowKey::v4([10, 1, 0, 2].into(), [10, 2, 0, 1].into(), 6, 40001, 502);
        let decision = EventDecision {
            rule: Some(3),
            source: Some(0),
            epoch: 2,
            action: EventAction::Deny,
            monitor: false,
        };
        let tps = TICKS_PER_SECOND;
        let deny = |key, at, l7| {
            FlowEvent::Deny(DenyRecord {
                key,
                at,
                decision,
                reason: DropReason::L7Denied,
                would_deny: false,
                bytes: 60,
                l7,
            })
        };
        let refused = septa_dataplane::l7::DenyReason::Function {
            proto: septa_dataplane::l7::L7Proto::Modbus,
            code: 6,
        };
        let write = Some(refused);
        a.on_event(&deny(blocked, tps, write));
        // TCP retransmits the refused write, inside and after the record interval.
        a.on_event(&deny(blocked, tps + 1, None));
        a.on_event(&deny(blocked, 3 * tps, None));
        a.on_event(&deny(other, 3 * tps, None));
        let got = store.recent(&FlowFilter::default(), 100);
        assert_eq!(got.len(), 3, "{got:#?}");
        let reasons: Vec<(u16, &str)> = got
            .iter()
            .map(|r| (r.sport, r.l7_reason.as_str()))
            .collect();
        let why = refused.to_string();
        assert_eq!(
            reasons,
            [(40001, ""), (40000, why.as_str()), (40000, why.as_str())]
        );
    }

    #[test]
    fn flow_events_become_records_with_revision_labels_and_throttled_denies() {
        use septa_control::api::{FlowFilter, FlowSource};
        use septa_dataplane::events::{DenyRecord, EndReason, FlowEnd, FlowStart};
        let store = Arc::new(FlowStore::new(100));
        let labels = EpochLabels::default();
        labels.0.lock().unwrap().insert(
            3,
            Label {
                hash: "abc".into(),
                compiled: None,
            },
        );
        let mut a = FlowAdapter::new(Arc::clone(&store), labels, 1_000_000);
        let agg = Arc::new(Mutex::new(DecisionAggregator::new(1, 16)));
        a.decisions = Some(Arc::clone(&agg));
        let key = FlowKey::v4([10, 1, 0, 1].into(), [10, 2, 0, 1].into(), 17, 4000, 5000);
        let allow = EventDecision {
            rule: Some(2),
            source: Some(0),
            epoch: 3,
            action: EventAction::Allow,
            monitor: false,
        };
        let tps = TICKS_PER_SECOND;
        a.on_event(&FlowEvent::Start(FlowStart {
            key,
            at: tps,
            decision: allow,
        }));
        a.on_event(&FlowEvent::End(FlowEnd {
            key,
            first_seen: tps,
            last_seen: 2 * tps,
            at: 3 * tps,
            packets: [3, 2],
            bytes: [300, 200],
            reason: EndReason::Timeout,
            decision: allow,
            l7: septa_dataplane::l7::L7Proto::Modbus,
        }));
        let deny = EventDecision {
            rule: None,
            source: None,
            epoch: 4,
            action: EventAction::Deny,
            monitor: false,
        };
        for i in 0..5 {
            a.on_event(&FlowEvent::Deny(DenyRecord {
                key,
                at: 4 * tps + i,
                decision: deny,
                reason: DropReason::Policy,
                would_deny: false,
                bytes: 60,
                l7: None,
            }));
        }
        a.on_event(&FlowEvent::Deny(DenyRecord {
            key,
            at: 6 * tps,
            decision: deny,
            reason: DropReason::Policy,
            would_deny: true,
            bytes: 80,
            l7: Some(septa_dataplane::l7::DenyReason::Function {
                proto: septa_dataplane::l7::L7Proto::Modbus,
                code: 6,
            }),
        }));
        let got = store.recent(&FlowFilter::default(), 100);
        assert_eq!(
            got.len(),
            4,
            "five denies within a second make one record: {got:#?}"
        );
        let (would, deny_rec, end, start) = (&got[0], &got[1], &got[2], &got[3]);
        assert_eq!(start.ts_ms, 1_001_000);
        assert_eq!(
            (start.src.as_str(), start.dst.as_str()),
            ("10.1.0.1", "10.2.0.1")
        );
        assert_eq!((start.proto, start.sport, start.dport), (17, 4000, 5000));
        assert_eq!(
            (start.action.as_str(), start.rule, start.revision.as_str()),
            ("allow", 2, "abc")
        );
        // Stamped with its last packet (2 s), not its removal (3 s).
        assert_eq!((end.packets, end.bytes, end.ts_ms), (5, 500, 1_002_000));
        assert_eq!((end.total_packets, end.total_bytes), (5, 500));
        // Each record says what it reports, so a start's 0 bytes read as "not yet counted".
        assert_eq!(
            [start.kind, end.kind, deny_rec.kind, would.kind],
            [
                FlowKind::Start,
                FlowKind::End,
                FlowKind::Deny,
                FlowKind::Deny
            ]
        );
        assert_eq!((start.packets, start.bytes), (0, 0));
        assert_eq!(
            (deny_rec.action.as_str(), deny_rec.mode.as_str()),
            ("deny", "enforce")
        );
        assert_eq!(deny_rec.rule, u32::MAX, "the table default decided");
        assert_eq!(
            deny_rec.revision, "epoch:4",
            "unknown epochs are named, not guessed"
        );
        assert_eq!(would.mode, "monitor");
        // A deny record reports its packet's size; the four denies held back within the second
        // are reported by the flow's next record.
        assert_eq!((deny_rec.packets, deny_rec.bytes), (1, 60));
        assert_eq!((would.packets, would.bytes), (5, 4 * 60 + 80));
        // The data plane's L7 reason code and identified protocol, rendered off the worker.
        assert!(
            would.l7_reason.starts_with("modbus function 6"),
            "{}",
            would.l7_reason
        );
        assert_eq!(
            (deny_rec.l7_reason.as_str(), end.l7.as_str()),
            ("", "modbus")
        );
        assert_eq!(start.l7, "", "an allow conduit names no L7 protocol");
        assert_eq!(deny_rec.clause, "default (no rule matched)");
        // Every deny counted (not throttled) in one audit record per (flow, clause).
        let audit = agg.lock().unwrap().take();
        let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["access.deny", "access.would_deny", "access.allow"]
        );
        assert_eq!(audit[0].object, "udp 10.1.0.1:4000 -> 10.2.0.1:5000");
        assert!(
            audit[0].detail.starts_with("5 observation(s)"),
            "{}",
            audit[0].detail
        );
        assert_eq!(audit[0].reason, "default (no rule matched)");
        assert_eq!(audit[2].after.as_deref(), Some("abc"));
    }

    #[test]
    fn the_workers_final_flush_reaches_the_history_after_the_monitor_stopped() {
        use septa_dataplane::events::{
            self, EndReason, EventCounts, EventDrain, FlowEnd, FlowStart,
        };
        let dir = std::env::temp_dir().join(format!("septa-final-flush-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let targets = FeedTargets {
            history: Some(FlowHistory::open(&dir, HistoryConfig::default()).unwrap()),
            revisions: Box::new(|_: &str| None),
            sinks: Vec::new(),
        };
        let (feed, handle) = feed::spawn(targets, FeedConfig::default()).unwrap();
        let mut a = FlowAdapter::new(
            Arc::new(FlowStore::new(10)),
            EpochLabels::default(),
            1_000_000,
        );
        a.learn = Some(feed.clone());
        let (sink, source) = events::ring(16);
        let mut drain = EventDrain::default();
        drain.push(source);
        let key = FlowKey::v4([10, 1, 0, 1].into(), [10, 2, 0, 1].into(), 6, 4000, 443);
        let allow = EventDecision {
            rule: Some(2),
            source: Some(0),
            epoch: 0,
            action: EventAction::Allow,
            monitor: false,
        };
        // The flow's start reaches the monitor's last pass ...
        sink.emit(FlowEvent::Start(FlowStart {
            key,
            at: 0,
            decision: allow,
        }));
        drain.drain(usize::MAX, |_, ev| a.on_event(&ev));
        // ... its end comes from the worker's final flush, after the monitor stopped.
        sink.emit(FlowEvent::End(FlowEnd {
            key,
            first_seen: 0,
            last_seen: 1,
            at: 2,
            packets: [3, 2],
            bytes: [300, 200],
            reason: EndReason::Flushed,
            decision: allow,
            l7: septa_dataplane::l7::L7Proto::Unknown,
        }));
        let mut counts = EventCounts::default();
        drain_events(&mut drain, &mut counts, Some(&mut a));
        assert_eq!(counts.flow_end, 1);
        drop(a);
        drop(feed);
        handle.stop();
        let h = FlowHistory::open(&dir, HistoryConfig::default()).unwrap();
        let aggs = h.query(0, i64::MAX, 10).unwrap();
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(aggs.len(), 1, "{aggs:?}");
        assert_eq!(
            (aggs[0].flows, aggs[0].packets, aggs[0].bytes),
            (1, 5, 500),
            "the final flush's flow end (packets, bytes) reached the history"
        );
    }

    #[test]
    fn the_adapter_feeds_learning_counting_a_flow_once_and_never_blocking() {
        use septa_control::export::ExportError;
        use septa_dataplane::events::{EndReason, FlowEnd, FlowStart};
        struct Collect(Arc<Mutex<Vec<ObservedFlow>>>);
        impl FlowSink for Collect {
            fn name(&self) -> &'static str {
                "collect"
            }
            fn write(&mut self, f: &[ObservedFlow]) -> Result<(), ExportError> {
                self.0.lock().unwrap().extend_from_slice(f);
                Ok(())
            }
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let targets = FeedTargets {
            history: None,
            revisions: Box::new(|_: &str| None),
            sinks: vec![Box::new(Collect(Arc::clone(&got)))],
        };
        let (feed, handle) = feed::spawn(targets, FeedConfig::default()).unwrap();
        let mut a = FlowAdapter::new(
            Arc::new(FlowStore::new(10)),
            EpochLabels::default(),
            1_000_000,
        );
        a.learn = Some(feed.clone());
        let key = FlowKey::v4([10, 1, 0, 1].into(), [10, 2, 0, 1].into(), 17, 4000, 5000);
        let allow = EventDecision {
            rule: Some(2),
            source: Some(0),
            epoch: 0,
            action: EventAction::Allow,
            monitor: false,
        };
        a.on_event(&FlowEvent::Start(FlowStart {
            key,
            at: 0,
            decision: allow,
        }));
        // Two interim updates: the feed never sees them.
        for (p, b) in [([1, 1], [100, 100]), ([2, 2], [200, 200])] {
            a.on_event(&FlowEvent::Update(FlowUpdate {
                key,
                first_seen: 0,
                last_seen: 1,
                at: 1,
                packets: p,
                bytes: b,
                cause: UpdateCause::Interval,
                decision: allow,
                l7: septa_dataplane::l7::L7Proto::Unknown,
            }));
        }
        a.on_event(&FlowEvent::End(FlowEnd {
            key,
            first_seen: 0,
            last_seen: 1,
            at: 2,
            packets: [3, 2],
            bytes: [300, 200],
            reason: EndReason::Timeout,
            decision: allow,
            l7: septa_dataplane::l7::L7Proto::Unknown,
        }));
        drop(a);
        drop(feed);
        handle.stop();
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 2, "a start and an end, no update: {got:?}");
        assert_eq!(
            (got[0].flows, got[0].packets),
            (1, 0),
            "the start counts the flow"
        );
        assert_eq!(
            (got[1].flows, got[1].packets),
            (0, 5),
            "the end adds counters only, all of them (the updates reported some before)"
        );
        assert_eq!(got[1].bytes, 500);
        assert_eq!(got[1].dst, IpAddr::from([10, 2, 0, 1]));
    }

    #[test]
    fn updates_become_records_of_the_traffic_since_the_previous_report() {
        use septa_control::api::{FlowFilter, FlowSource};
        use septa_dataplane::events::{EndReason, FlowEnd, FlowStart};
        let store = Arc::new(FlowStore::new(100));
        let mut a = FlowAdapter::new(Arc::clone(&store), EpochLabels::default(), 1_000_000);
        let agg = Arc::new(Mutex::new(DecisionAggregator::new(1, 16)));
        a.decisions = Some(Arc::clone(&agg));
        let tps = TICKS_PER_SECOND;
        let key = FlowKey::v4([10, 1, 0, 1].into(), [10, 2, 0, 1].into(), 6, 4000, 5432);
        let other = FlowKey::v4([10, 1, 0, 2].into(), [10, 2, 0, 1].into(), 6, 4001, 5432);
        let allow = EventDecision {
            rule: Some(2),
            source: Some(0),
            epoch: 0,
            action: EventAction::Allow,
            monitor: false,
        };
        let update = |key, last: u64, packets, bytes, cause| {
            FlowEvent::Update(FlowUpdate {
                key,
                first_seen: tps,
                last_seen: last * tps,
                at: last * tps + 1,
                packets,
                bytes,
                cause,
                decision: allow,
                l7: septa_dataplane::l7::L7Proto::Smb,
            })
        };
        a.on_event(&FlowEvent::Start(FlowStart {
            key,
            at: tps,
            decision: allow,
        }));
        a.on_event(&update(
            key,
            10,
            [10, 10],
            [1_000, 9_000],
            UpdateCause::Interval,
        ));
        a.on_event(&update(other, 11, [1, 1], [60, 60], UpdateCause::Interval));
        // The same totals again (a repeated visit): no record.
        a.on_event(&update(
            key,
            10,
            [10, 10],
            [1_000, 9_000],
            UpdateCause::Interval,
        ));
        a.on_event(&update(
            key,
            20,
            [15, 16],
            [1_500, 12_000],
            UpdateCause::Closed,
        ));
        a.on_event(&FlowEvent::End(FlowEnd {
            key,
            first_seen: tps,
            last_seen: 21 * tps,
            at: 141 * tps,
            packets: [16, 16],
            bytes: [1_540, 12_000],
            reason: EndReason::Closed,
            decision: allow,
            l7: septa_dataplane::l7::L7Proto::Smb,
        }));
        // The same key started again later (another first packet) is a new flow.
        a.on_event(&FlowEvent::End(FlowEnd {
            key,
            first_seen: 200 * tps,
            last_seen: 201 * tps,
            at: 231 * tps,
            packets: [2, 0],
            bytes: [100, 0],
            reason: EndReason::Timeout,
            decision: allow,
            l7: septa_dataplane::l7::L7Proto::Unknown,
        }));
        let mut got = store.recent(&FlowFilter::default(), 100);
        got.reverse();
        let rows: Vec<(FlowKind, u16, i64, u64, u64, u64, u64)> = got
            .iter()
            .map(|r| {
                let t = (r.ts_ms - 1_000_000) / 1000;
                (
                    r.kind,
                    r.sport,
                    t,
                    r.packets,
                    r.bytes,
                    r.total_packets,
                    r.total_bytes,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (FlowKind::Start, 4000, 1, 0, 0, 0, 0),
                (FlowKind::Update, 4000, 10, 20, 10_000, 20, 10_000),
                (FlowKind::Update, 4001, 11, 2, 120, 2, 120),
                (FlowKind::Update, 4000, 20, 11, 3_500, 31, 13_500),
                (FlowKind::End, 4000, 21, 1, 40, 32, 13_540),
                (FlowKind::End, 4000, 201, 2, 100, 2, 100),
            ]
        );
        // Each flow's records sum to its totals.
        let sum: u64 = got
            .iter()
            .filter(|r| r.sport == 4000 && r.ts_ms < 1_100_000)
            .map(|r| r.bytes)
            .sum();
        assert_eq!(sum, 13_540);
        assert_eq!(got[1].l7, septa_dataplane::l7::L7Proto::Smb.name());
        assert!(
            a.reported.contains_key(&(other, tps)),
            "an open flow is remembered"
        );
        assert_eq!(a.reported.len(), 1, "ended flows are forgotten");
        // Updates are no access decisions: only the start is audited.
        let audit = agg.lock().unwrap().take();
        assert_eq!(audit.len(), 1, "{audit:?}");
    }

    #[test]
    fn gateway_config_reads_control_and_refuses_a_fixed_decision_with_it() {
        let dir = std::env::temp_dir().join(format!("septa-control-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = "[dpdk]\neal_args = []\n[[ports]]\nname = \"a\"\n[[ports]]\nname = \"b\"\n\
                    [[pairs]]\nports = [\"a\", \"b\"]\n";
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ok = write("ok.toml", format!("{base}[control]\ndata_dir = \"st\"\n"));
        let c = crate::config::GatewayConfig::load(&ok).unwrap();
        let ctl = c.control.as_ref().expect("[control] read");
        assert_eq!(ctl.data_dir, dir.join("st"));
        assert_eq!(ctl.audit_interval, Duration::from_secs(10));
        assert_eq!(ctl.audit_allow_sample, 1000);
        let off = write("off.toml", format!("{base}[control]\nenabled = false\n"));
        assert!(
            crate::config::GatewayConfig::load(&off)
                .unwrap()
                .control
                .is_none()
        );
        let fixed = write(
            "fixed.toml",
            format!("{base}[dataplane]\ndecision = \"allow-all\"\n[control]\n"),
        );
        let e = crate::config::GatewayConfig::load(&fixed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dataplane.decision"), "{e}");
        let bad = write("bad.toml", format!("{base}[control]\naudit_interval = 0\n"));
        let e = crate::config::GatewayConfig::load(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("control.audit_interval"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
