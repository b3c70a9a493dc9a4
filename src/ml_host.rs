//! `[ml]` in `gateway.toml` and the ML side of `septa run`: the inference service (`septa-ml`:
//! tract models, supervised thread) fed by the workers' feature samplers over per-worker rings,
//! and a drain thread that turns its alerts into anomalies for the control plane
//! (`/api/v1/anomalies`, syslog) — the [`AnomalyStore`] the control host owns, or a private one
//! when `[control]` is off (then alerts are only counted and printed).
//!
//! Failure handling: a missing or mismatched model stops ML with a clear message and the
//! workers run without samplers (forwarding and enforcement are untouched); a panicking or
//! stalled inference thread is restarted by the service's supervisor and reported here.
//!
//! `act` mode: the engine proposes a quarantine of a host (`QuarantineRequest`); it is recorded
//! as an anomaly for an operator to turn into a policy change through the normal path
//! (validation, revision, audit, commit-confirm). Nothing here changes policy, and `act` is
//! refused without `[control]`, where there would be no policy path at all.

// Only the DPDK build runs workers (and so the service); the settings are checked in every build.
#![cfg_attr(not(feature = "dpdk"), allow(dead_code))]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use septa_control::api::anomalies::{AnomalyFlow, AnomalyStore, FeatureContribution, NewAnomaly};
use septa_control::api::{InferenceSample, ModelInfo};
use septa_dataplane::sample::{Sampler, SamplerConfig, SharedSamplerCounters};
use septa_features::spread::SampleSender;
use septa_ml::{
    Alert, Engine, Health, MlConfig, MlEvent, Mode, QuarantineRequest, Service, ServiceStats,
};
use serde::Deserialize;

/// `[ml]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMl {
    /// `off`, `monitor` (learn the site's calibration), `shadow` (alerts only, the default) or
    /// `act` (alerts and quarantine proposals).
    #[serde(default)]
    mode: Option<String>,
    /// Model metadata and `.onnx` files; relative to the configuration file (default:
    /// `configs/models` under the working directory).
    #[serde(default)]
    model_dir: Option<PathBuf>,
    /// Where per-site calibrations are read and written (default: none, model thresholds).
    #[serde(default)]
    calibration_dir: Option<PathBuf>,
    /// Classifier score at or above which act mode proposes a quarantine (0..1).
    #[serde(default)]
    act_threshold: Option<f32>,
    /// Sample one new flow in this many.
    #[serde(default)]
    sample_one_in: Option<u32>,
    /// Flows each worker samples at once.
    #[serde(default)]
    sample_flows: Option<u64>,
    /// Records each worker's ring holds.
    #[serde(default)]
    ring: Option<u64>,
    /// Shadow/act mode: records scored before the site calibration is derived (0: never).
    #[serde(default)]
    warmup_records: Option<u64>,
    /// A site calibration lifts a model's threshold at most this many times (1..=100).
    #[serde(default)]
    max_threshold_lift: Option<f32>,
    /// Seconds during which a flow that alerted does not alert again with the same model.
    #[serde(default)]
    repeat_window_s: Option<u64>,
}

/// `[ml]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MlSettings {
    /// The engine's configuration (models, mode, calibration, act threshold).
    pub engine: MlConfig,
    /// Sampling of each worker.
    pub sampler: SamplerConfig,
    /// Records per worker ring.
    pub ring: usize,
}

impl MlSettings {
    /// Checks `[ml]`; `Ok(None)` for `mode = "off"`. Errors are (key, message).
    pub fn from_raw(
        raw: RawMl,
        dir: Option<&Path>,
        flow_capacity: usize,
        control: bool,
    ) -> Result<Option<Self>, (String, String)> {
        let mode = match raw.mode.as_deref().unwrap_or("shadow") {
            "off" => return Ok(None),
            "monitor" => Mode::Monitor,
            "shadow" => Mode::Shadow,
            "act" if control => Mode::Act,
            "act" => {
                return Err((
                    "ml.mode".into(),
                    "\"act\" needs [control]: quarantine proposals go through the policy path \
                     (validation, revision, audit, commit-confirm), never around it"
                        .into(),
                ));
            }
            other => {
                return Err((
                    "ml.mode".into(),
                    format!("{other:?} is not one of off, monitor, shadow, act"),
                ));
            }
        };
        let relative = |p: PathBuf| match dir {
            Some(d) if p.is_relative() => d.join(p),
            _ => p,
        };
        let mut engine = MlConfig::new(
            raw.model_dir
                .map_or_else(|| PathBuf::from("configs/models"), relative),
        );
        engine.mode = mode;
        engine.calibration_dir = raw.calibration_dir.map(relative);
        if let Some(t) = raw.act_threshold {
            if !(t > 0.0 && t <= 1.0) {
                return Err(("ml.act_threshold".into(), format!("{t} is outside (0, 1]")));
            }
            engine.act_threshold = t;
        }
        if let Some(n) = raw.warmup_records {
            if n > 100_000_000 {
                return Err((
                    "ml.warmup_records".into(),
                    format!("{n} is outside 0..=100000000"),
                ));
            }
            engine.warmup_records = n;
        }
        if let Some(x) = raw.max_threshold_lift {
            if !(1.0..=100.0).contains(&x) {
                return Err((
                    "ml.max_threshold_lift".into(),
                    format!("{x} is outside 1..=100"),
                ));
            }
            engine.max_threshold_lift = x;
        }
        if let Some(n) = raw.repeat_window_s {
            if n > 86_400 {
                return Err((
                    "ml.repeat_window_s".into(),
                    format!("{n} is outside 0..=86400"),
                ));
            }
            engine.repeat_window_s = n;
        }
        let mut sampler = SamplerConfig::new((flow_capacity / 8).max(1));
        if let Some(k) = raw.sample_one_in {
            if !(1..=1 << 20).contains(&k) {
                return Err((
                    "ml.sample_one_in".into(),
                    format!("{k} is outside 1..=1048576"),
                ));
            }
            sampler.one_in = k;
        }
        if let Some(n) = raw.sample_flows {
            if !(1..=flow_capacity as u64).contains(&n) {
                return Err((
                    "ml.sample_flows".into(),
                    format!("{n} is outside 1..=dataplane.flow_capacity ({flow_capacity})"),
                ));
            }
            sampler.flows = n as usize;
        }
        let ring = raw.ring.unwrap_or(4096);
        if !(1..=1 << 20).contains(&ring) {
            return Err(("ml.ring".into(), format!("{ring} is outside 1..=1048576")));
        }
        Ok(Some(MlSettings {
            engine,
            sampler,
            ring: ring as usize,
        }))
    }

    /// One line for `septa check-config`.
    pub fn describe(&self) -> String {
        format!(
            "{:?} with models from {} (act threshold {}), sampling 1 new flow in {} ({} at once per worker), ring {}",
            self.engine.mode,
            self.engine.model_dir.display(),
            self.engine.act_threshold,
            self.sampler.one_in,
            self.sampler.flows,
            self.ring
        )
        .to_lowercase()
    }
}

/// What the drain thread has seen.
#[derive(Debug, Default)]
pub struct MlTally {
    /// Alerts stored as anomalies.
    pub alerts: AtomicU64,
    /// Quarantine proposals stored as anomalies (never applied here).
    pub proposals: AtomicU64,
    /// Health reports (restarts, stalls, panics).
    pub health: AtomicU64,
    /// The models of the engine built last (at start and after each restart).
    pub models: Mutex<Vec<ModelInfo>>,
    /// Why the last restart failed, until one succeeds.
    pub restart_error: Mutex<Option<String>>,
}

/// What `/api/v1/health` shows of the inference thread: a running service's counters and
/// models, or why it did not start.
#[derive(Clone)]
pub struct MlProbe {
    mode: String,
    running: Option<(Arc<ServiceStats>, Arc<MlTally>)>,
    start_error: Option<String>,
    /// The workers' sampler counters (published by the workers every `counters::PUBLISH_US`).
    samplers: Vec<Arc<SharedSamplerCounters>>,
}

impl MlProbe {
    /// The inference thread's state now (relaxed loads and two short locks).
    pub fn sample(&self) -> InferenceSample {
        let mut s = InferenceSample {
            mode: self.mode.clone(),
            error: self.start_error.clone(),
            ..InferenceSample::default()
        };
        if let Some((stats, tally)) = &self.running {
            let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
            s.records = n(&stats.records);
            s.batches = n(&stats.batches);
            s.events_dropped = n(&stats.events_dropped);
            s.lost_records = n(&stats.lost_records);
            s.score_errors = n(&stats.score_errors);
            s.panics = n(&stats.panics);
            s.stalls = n(&stats.stalls);
            s.restarts = n(&stats.restarts);
            s.repeats = n(&stats.repeats);
            s.calibrations = n(&stats.calibrations);
            s.sampler_sketch_evictions = n(&stats.spread_evictions);
            for c in &self.samplers {
                let c = c.load();
                s.sampler_records += c.emitted;
                s.sampler_ring_full += c.ring_full;
                s.sampler_spread_lost += c.spread_lost;
                s.sampler_slab_full += c.slab_full;
            }
            s.models = tally
                .models
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            s.error = tally
                .restart_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|e| format!("restart failed: {e}"));
        }
        s
    }
}

fn mode_name(m: Mode) -> String {
    format!("{m:?}").to_lowercase()
}

/// The running ML side: the service, the samplers for the workers, the drain thread.
pub struct MlHost {
    service: Service,
    samplers: Vec<Sampler>,
    /// Their counters as the workers publish them (kept after the samplers are taken).
    sampler_counters: Vec<Arc<SharedSamplerCounters>>,
    drain: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    tally: Arc<MlTally>,
}

impl MlHost {
    /// Loads the models and starts the service for `workers` workers; alerts go to `store`.
    /// A model that does not load is an error (the caller reports it and runs without ML).
    pub fn start(
        s: &MlSettings,
        workers: usize,
        store: Arc<AnomalyStore>,
    ) -> Result<Self, septa_ml::MlError> {
        let (senders, rings) = septa_ml::rings(workers, s.ring);
        Self::start_on(s, senders, rings, store)
    }

    /// [`Self::start`] over rings made by the caller: a sampler for each of `senders`.
    fn start_on(
        s: &MlSettings,
        senders: Vec<SampleSender>,
        rings: septa_ml::Rings,
        store: Arc<AnomalyStore>,
    ) -> Result<Self, septa_ml::MlError> {
        let (events_tx, events_rx) = sync_channel(1024);
        let cfg = s.engine.clone();
        let tally = Arc::new(MlTally::default());
        let loaded = Arc::clone(&tally);
        let service = Service::start(
            rings,
            Box::new(move || {
                let engine = Engine::load(cfg.clone())?;
                *loaded.models.lock().unwrap_or_else(PoisonError::into_inner) = engine
                    .models()
                    .into_iter()
                    .map(|(id, hash, threshold)| ModelInfo {
                        id,
                        hash,
                        threshold,
                    })
                    .collect();
                Ok(Box::new(engine) as _)
            }),
            events_tx,
            septa_ml::ServiceConfig::default(),
        )?;
        let samplers = senders
            .into_iter()
            .enumerate()
            .map(|(i, tx)| Sampler::new(i as u16, s.sampler.clone(), tx))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| septa_ml::MlError::Config(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let drain = {
            let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
            std::thread::Builder::new()
                .name("septa-ml-events".into())
                .spawn(move || drain_events(&events_rx, &store, &tally, &stop))
                .map_err(septa_ml::MlError::Spawn)?
        };
        Ok(MlHost {
            service,
            sampler_counters: samplers.iter().map(Sampler::shared_counters).collect(),
            samplers,
            drain: Some(drain),
            stop,
            tally,
        })
    }

    /// For `/api/v1/health`: the service's counters and models.
    pub fn probe(&self, mode: Mode) -> MlProbe {
        MlProbe {
            mode: mode_name(mode),
            running: Some((self.service.stats(), Arc::clone(&self.tally))),
            start_error: None,
            samplers: self.sampler_counters.clone(),
        }
    }

    /// The samplers, one per worker, in worker order (taken once).
    pub fn take_samplers(&mut self) -> Vec<Sampler> {
        std::mem::take(&mut self.samplers)
    }

    /// Stops the service and the drain thread; one line of totals.
    pub fn stop(mut self) -> String {
        let stats = self.service.stats();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        let line = format!(
            "ml: {} records scored in {} batches, {} alerts, {} quarantine proposals (not applied), {} restarts, {} records lost",
            stats.records.load(Ordering::Relaxed),
            stats.batches.load(Ordering::Relaxed),
            self.tally.alerts.load(Ordering::Relaxed),
            self.tally.proposals.load(Ordering::Relaxed),
            stats.restarts.load(Ordering::Relaxed),
            stats.lost_records.load(Ordering::Relaxed),
        );
        self.service.stop();
        line
    }
}

/// Starts ML for `septa run` when `[ml]` is configured: alerts go to the control plane's store
/// (`control`), else to a private one. A model that does not load turns ML off with a message;
/// the workers then run without samplers. The probe (`Some` when `[ml]` is configured) is what
/// `/api/v1/health` reads; it carries the reason when ML did not start.
pub fn start_for_run_probed(
    settings: Option<&MlSettings>,
    workers: usize,
    control: Option<Arc<AnomalyStore>>,
) -> (Option<MlHost>, Option<MlProbe>) {
    let Some(s) = settings else {
        return (None, None);
    };
    let store = control.unwrap_or_else(|| Arc::new(AnomalyStore::default()));
    match MlHost::start(s, workers, store) {
        Ok(h) => {
            eprintln!("septa: ml: {}", s.describe());
            let probe = h.probe(s.engine.mode);
            (Some(h), Some(probe))
        }
        Err(e) => {
            eprintln!("septa: ml is off: {e} (forwarding and enforcement are unaffected)");
            let probe = MlProbe {
                mode: mode_name(s.engine.mode),
                running: None,
                start_error: Some(format!("did not start: {e}")),
                samplers: Vec::new(),
            };
            (None, Some(probe))
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An alert as the control plane's anomaly record.
pub fn anomaly_of(a: &Alert, ts_ms: i64) -> NewAnomaly {
    NewAnomaly {
        ts_ms,
        flow: AnomalyFlow {
            src: a.src,
            dst: a.dst,
            proto: a.proto,
            sport: a.src_port,
            dport: a.dst_port,
            l7: a.l7.clone(),
        },
        score: a.score,
        threshold: a.threshold,
        model_id: a.model_id.clone(),
        model_hash: a.model_hash.clone(),
        summary: a.summary.clone(),
        explanation: a
            .reasons
            .iter()
            .map(|r| FeatureContribution {
                feature: r.group.clone(),
                contribution: r.weight,
                text: r.text.clone(),
            })
            .collect(),
    }
}

/// A quarantine proposal as an anomaly record: the host, the model and the justification, for an
/// operator to act on through the policy path.
pub fn proposal_of(q: &QuarantineRequest, ts_ms: i64) -> NewAnomaly {
    NewAnomaly {
        ts_ms,
        flow: AnomalyFlow {
            src: q.host,
            dst: q.host,
            proto: 0,
            sport: 0,
            dport: 0,
            l7: String::new(),
        },
        score: q.score,
        threshold: q.score,
        model_id: q.model_id.clone(),
        model_hash: q.model_hash.clone(),
        summary: format!(
            "quarantine of {} proposed (act mode; apply it as a policy change): {}",
            q.host, q.justification
        ),
        explanation: Vec::new(),
    }
}

fn drain_events(rx: &Receiver<MlEvent>, store: &AnomalyStore, tally: &MlTally, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(MlEvent::Alert(a)) => {
                store.push(anomaly_of(&a, now_ms()));
                tally.alerts.fetch_add(1, Ordering::Relaxed);
            }
            Ok(MlEvent::Quarantine(q)) => {
                store.push(proposal_of(&q, now_ms()));
                tally.proposals.fetch_add(1, Ordering::Relaxed);
            }
            Ok(MlEvent::Health(h)) => {
                tally.health.fetch_add(1, Ordering::Relaxed);
                let mut failed = tally
                    .restart_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match h {
                    Health::Restarted { .. } => *failed = None,
                    Health::RestartFailed { error } => {
                        eprintln!("septa: ml: restart failed: {error}");
                        *failed = Some(error);
                    }
                    other => eprintln!("septa: ml: {other:?}"),
                }
            }
            Ok(MlEvent::Calibrated(c)) => {
                // The health page shows the threshold in force.
                let mut models = tally.models.lock().unwrap_or_else(PoisonError::into_inner);
                let mut was = None;
                for m in models.iter_mut().filter(|m| m.id == c.model_id) {
                    was = Some(m.threshold);
                    m.threshold = c.threshold;
                }
                eprintln!(
                    "septa: ml: site calibration of {} from {} scores: threshold {} (model {}; site median {}, quantile {})",
                    c.model_id,
                    c.samples,
                    c.threshold,
                    was.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                    c.median,
                    c.quantile
                );
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawMl {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn ml_settings_have_defaults_and_bad_values_name_the_key() {
        let s = MlSettings::from_raw(raw(""), Some(Path::new("/etc/septa")), 1 << 20, false)
            .unwrap()
            .unwrap();
        assert_eq!(s.engine.mode, Mode::Shadow);
        assert_eq!(s.engine.model_dir, PathBuf::from("configs/models"));
        assert_eq!(
            (s.sampler.one_in, s.sampler.flows, s.ring),
            (16, 1 << 17, 4096)
        );
        let s = MlSettings::from_raw(
            raw("mode = \"monitor\"\nmodel_dir = \"models\"\nsample_one_in = 4\nsample_flows = 10"),
            Some(Path::new("/etc/septa")),
            1000,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.engine.mode, Mode::Monitor);
        assert_eq!(s.engine.model_dir, PathBuf::from("/etc/septa/models"));
        assert_eq!((s.sampler.one_in, s.sampler.flows), (4, 10));
        let t = MlSettings::from_raw(
            raw("warmup_records = 50\nmax_threshold_lift = 2.5\nrepeat_window_s = 0"),
            None,
            1000,
            false,
        )
        .unwrap()
        .unwrap();
        let e = &t.engine;
        assert_eq!(
            (e.warmup_records, e.max_threshold_lift, e.repeat_window_s),
            (50, 2.5, 0)
        );
        assert!(s.describe().contains("monitor"), "{}", s.describe());
        assert_eq!(
            MlSettings::from_raw(raw("mode = \"off\""), None, 10, false),
            Ok(None)
        );
        for (bad, key) in [
            ("mode = \"maybe\"", "ml.mode"),
            ("mode = \"act\"", "ml.mode"),
            ("act_threshold = 1.5", "ml.act_threshold"),
            ("sample_one_in = 0", "ml.sample_one_in"),
            ("sample_flows = 11", "ml.sample_flows"),
            ("ring = 0", "ml.ring"),
            ("warmup_records = 100000001", "ml.warmup_records"),
            ("max_threshold_lift = 0.5", "ml.max_threshold_lift"),
            ("repeat_window_s = 90000", "ml.repeat_window_s"),
        ] {
            let e = MlSettings::from_raw(raw(bad), None, 10, false).unwrap_err();
            assert_eq!(e.0, key, "{bad}: {e:?}");
        }
        assert!(toml::from_str::<RawMl>("bogus = 1").is_err());
        // With a policy path, act mode is accepted (proposals only).
        let s = MlSettings::from_raw(raw("mode = \"act\""), None, 10, true).unwrap();
        assert_eq!(s.unwrap().engine.mode, Mode::Act);
    }

    #[test]
    fn a_missing_model_is_a_clear_error() {
        let s = MlSettings::from_raw(raw("model_dir = \"/nonexistent/models\""), None, 100, false)
            .unwrap()
            .unwrap();
        let e = MlHost::start(&s, 1, Arc::new(AnomalyStore::new(8)))
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/models"), "{e}");
        // The health probe carries the reason; no settings, no probe.
        let (host, probe) = start_for_run_probed(Some(&s), 1, None);
        assert!(host.is_none());
        let sample = probe.unwrap().sample();
        assert_eq!(sample.mode, "shadow");
        assert!(sample.models.is_empty());
        let error = sample.error.unwrap();
        assert!(
            error.starts_with("did not start: ") && error.contains("/nonexistent/models"),
            "{error}"
        );
        assert!(start_for_run_probed(None, 1, None).1.is_none());
    }

    /// The committed models, fed by a worker-side sampler through the real rings: held-out
    /// attack rows become anomalies in the store with their explanation. Skips if the models
    /// are absent (they are committed, so only a stripped checkout lacks them).
    #[test]
    fn alerts_reach_the_anomaly_store() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models");
        let Ok(rows) = septa_ml::heldout::load(&dir.join("heldout-v1.json")) else {
            eprintln!("skipped: no committed models in {}", dir.display());
            return;
        };
        let mut s = MlSettings::from_raw(raw(""), None, 1024, false)
            .unwrap()
            .unwrap();
        s.engine.model_dir = dir;
        // The site calibration (shadow mode's warm-up) lands in the second pass below.
        s.engine.warmup_records = rows.len() as u64 * 3 / 2;
        let store = Arc::new(AnomalyStore::new(10_000));
        // Two rings: one for the worker's sampler, one this test writes held-out records into.
        let (mut senders, rings) = septa_ml::rings(2, rows.len());
        let mut tx = senders.pop().unwrap();
        let host = MlHost::start_on(&s, senders, rings, Arc::clone(&store)).unwrap();
        assert_eq!(host.samplers.len(), 1);
        let probe = host.probe(s.engine.mode);
        let before = probe.sample();
        assert!(
            !before.models.is_empty() && before.error.is_none(),
            "{before:?}"
        );
        assert!(
            before.models.iter().all(|m| m.hash.len() == 64),
            "{before:?}"
        );
        let attacks = rows.iter().filter(|r| r.label == 1).count();
        for (i, r) in rows.iter().enumerate() {
            tx.try_send_record(r.record(i).into()).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while host.tally.alerts.load(Ordering::Relaxed) < (attacks / 2) as u64
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let scored = probe.sample();
        assert!(scored.records > 0 && scored.batches > 0, "{scored:?}");
        assert_eq!((scored.repeats, scored.calibrations), (0, 0), "{scored:?}");
        // The same flows again within repeat_window_s: the alerts are counted as repeats, not
        // raised; the warm-up ends half-way and each model's site calibration is counted.
        let total = 2 * rows.len() as u64;
        let wait = |what: &str, done: &dyn Fn(&InferenceSample) -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let s = probe.sample();
                if done(&s) {
                    return s;
                }
                assert!(std::time::Instant::now() < deadline, "{what}: {s:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait("the first pass scored", &|s| s.records == rows.len() as u64);
        for (i, r) in rows.iter().enumerate() {
            tx.try_send_record(r.record(i).into()).unwrap();
        }
        let again = wait("the second pass scored", &|s| s.records == total);
        assert!(again.repeats > 0, "{again:?}");
        assert_eq!(again.calibrations, again.models.len() as u64, "{again:?}");
        let line = host.stop();
        let listed = store.list(None, usize::MAX).items;
        assert!(
            again.repeats <= listed.len() as u64,
            "a repeat is of an alert raised: {again:?}, {} raised",
            listed.len()
        );
        assert!(
            listed.len() >= attacks / 2,
            "{line}: {} anomalies",
            listed.len()
        );
        let a = &listed[0];
        assert!(!a.report.summary.is_empty() && !a.report.explanation.is_empty());
        assert!(a.report.model_hash.len() == 64, "{:?}", a.report.model_hash);
    }
}
