//! The scoring engine: featurize a batch of records, run every model, explain what crosses a
//! threshold, and (in act mode) propose quarantines. Runs on the inference thread only.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use septa_features::{
    FEATURE_GROUPS, FeatureRecord, L7Proto, N_FEATURES, SCHEMA_VERSION, featurize,
};
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, MlEvent, Mode, QuarantineRequest, Reason};
use crate::calibration::{Learner, SiteCalibration};
use crate::error::MlError;
use crate::explain::{Context, describe};
use crate::model::{Model, ModelKind};

/// Hosts whose fan-out baseline is remembered; beyond this, new hosts get none (bounded memory).
pub const MAX_BASELINE_HOSTS: usize = 65_536;
/// Hosts for which a quarantine was already proposed in this run.
pub const MAX_PROPOSED_HOSTS: usize = 4_096;
/// Flows remembered for repeat suppression (bounded memory; see [`MlConfig::repeat_window_s`]).
pub const MAX_RECENT_ALERTS: usize = 65_536;

fn default_models() -> Vec<String> {
    vec![
        "septa-flow-mlp-v1.json".into(),
        "septa-flow-ae-v1.json".into(),
    ]
}
fn default_act_threshold() -> f32 {
    0.95
}
fn default_min_samples() -> u64 {
    10_000
}
fn default_max_reasons() -> usize {
    3
}
fn default_warmup() -> u64 {
    1_000
}
fn default_max_lift() -> f32 {
    4.0
}
fn default_repeat_window() -> u64 {
    60
}

/// The `[ml]` section of the gateway config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlConfig {
    /// Directory holding the model metadata JSON and `.onnx` files (e.g. `configs/models`).
    pub model_dir: PathBuf,
    /// Metadata files to load from `model_dir`.
    #[serde(default = "default_models")]
    pub models: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Where per-site calibrations live (`<model_id>.calibration.json`); none: model thresholds.
    #[serde(default)]
    pub calibration_dir: Option<PathBuf>,
    /// Classifier score at or above which act mode proposes a quarantine.
    #[serde(default = "default_act_threshold")]
    pub act_threshold: f32,
    /// Scores needed before a monitor-mode calibration is written (and again each time this
    /// many more were seen: monitor mode keeps refining it).
    #[serde(default = "default_min_samples")]
    pub min_calibration_samples: u64,
    #[serde(default = "default_max_reasons")]
    pub max_reasons: usize,
    /// Shadow and act mode, for a model without a stored site calibration: after this many
    /// scored records (the warm-up; alerts use the model's threshold meanwhile) the site's
    /// calibration is derived from them, applied and, with `calibration_dir`, written. 0: never.
    #[serde(default = "default_warmup")]
    pub warmup_records: u64,
    /// A site calibration never lifts a threshold above this multiple of the model's own (an
    /// attack under way during the warm-up cannot teach the engine to ignore attacks).
    #[serde(default = "default_max_lift")]
    pub max_threshold_lift: f32,
    /// An alert of a model on a flow (5-tuple) that already alerted with that model within this
    /// many seconds is counted (`EngineCounters::repeats`), not raised again: a flow's first-
    /// packets, periodic and final records are one finding. 0: every record alerts.
    #[serde(default = "default_repeat_window")]
    pub repeat_window_s: u64,
}

impl MlConfig {
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            models: default_models(),
            mode: Mode::default(),
            calibration_dir: None,
            act_threshold: default_act_threshold(),
            min_calibration_samples: default_min_samples(),
            max_reasons: default_max_reasons(),
            warmup_records: default_warmup(),
            max_threshold_lift: default_max_lift(),
            repeat_window_s: default_repeat_window(),
        }
    }
}

struct Slot {
    model: Model,
    threshold: f32,
    learner: Learner,
    /// A site calibration is in force (loaded, or derived after the warm-up).
    calibrated: bool,
}

/// A flow that alerted, per model slot (repeat suppression).
type RecentKey = (usize, IpAddr, IpAddr, u16, u16, u8);

/// Counters the engine keeps (read by the service for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub scored: u64,
    pub alerts: u64,
    pub wrong_schema: u64,
    pub quarantine_proposals: u64,
    /// Alerts not raised again: the same model on the same flow within `repeat_window_s`.
    pub repeats: u64,
    /// Site calibrations derived and applied in this run (warm-up or monitor mode).
    pub calibrations: u64,
}

/// Scores batches of records. Not `Sync`: it lives on the inference thread.
pub struct Engine {
    slots: Vec<Slot>,
    cfg: MlConfig,
    baselines: HashMap<IpAddr, f32>,
    proposed: HashSet<IpAddr>,
    recent: HashMap<RecentKey, Instant>,
    pub counters: EngineCounters,
    feats: Vec<[f32; N_FEATURES]>,
    out: Vec<f32>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field(
                "models",
                &self.slots.iter().map(|s| &s.model).collect::<Vec<_>>(),
            )
            .field("mode", &self.cfg.mode)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads every model named in `cfg` and its site calibration. Any error leaves ML off.
    pub fn load(cfg: MlConfig) -> Result<Self, MlError> {
        if cfg.models.is_empty() {
            return Err(MlError::Config("no models configured".into()));
        }
        if !(cfg.act_threshold > 0.0 && cfg.act_threshold <= 1.0) {
            return Err(MlError::Config(format!(
                "act_threshold {} is outside (0, 1]",
                cfg.act_threshold
            )));
        }
        let models = cfg
            .models
            .iter()
            .map(|m| Model::load(&cfg.model_dir.join(m)))
            .collect::<Result<Vec<_>, _>>()?;
        Self::with_models(models, cfg)
    }

    /// Builds an engine from already loaded models (tests, benches).
    pub fn with_models(models: Vec<Model>, cfg: MlConfig) -> Result<Self, MlError> {
        if !(cfg.max_threshold_lift >= 1.0 && cfg.max_threshold_lift.is_finite()) {
            return Err(MlError::Config(format!(
                "max_threshold_lift {} is not a finite number >= 1",
                cfg.max_threshold_lift
            )));
        }
        let mut slots = Vec::with_capacity(models.len());
        for model in models {
            let mut threshold = model.meta.threshold;
            let mut calibrated = false;
            if let Some(dir) = &cfg.calibration_dir
                && let Some(cal) = SiteCalibration::load(
                    &Self::calibration_path(dir, &model.meta.model_id),
                    &model.meta.model_id,
                    model.hash(),
                )?
            {
                threshold = cal.threshold;
                calibrated = true;
            }
            slots.push(Slot {
                model,
                threshold,
                learner: Learner::default(),
                calibrated,
            });
        }
        Ok(Self {
            slots,
            cfg,
            baselines: HashMap::new(),
            proposed: HashSet::new(),
            recent: HashMap::new(),
            counters: EngineCounters::default(),
            feats: Vec::new(),
            out: Vec::new(),
        })
    }

    fn calibration_path(dir: &std::path::Path, model_id: &str) -> PathBuf {
        dir.join(format!("{model_id}.calibration.json"))
    }

    /// `(model_id, model_hash, threshold in force)` of each loaded model.
    pub fn models(&self) -> Vec<(String, String, f32)> {
        self.slots
            .iter()
            .map(|s| {
                (
                    s.model.meta.model_id.clone(),
                    s.model.hash().to_owned(),
                    s.threshold,
                )
            })
            .collect()
    }

    /// The calibrations learned so far (those with at least `min_calibration_samples` scores),
    /// written to `calibration_dir` when one is configured; they take effect immediately.
    /// Monitor mode calls it each time another `min_calibration_samples` scores were seen.
    pub fn finish_calibration(&mut self) -> Result<Vec<SiteCalibration>, MlError> {
        let mut done = Vec::new();
        for si in 0..self.slots.len() {
            if let Some(cal) = self.calibrate(si, self.cfg.min_calibration_samples)? {
                done.push(cal);
            }
        }
        Ok(done)
    }

    /// Derives slot `si`'s site calibration from its learner (if it saw `min_samples` scores),
    /// capped at `max_threshold_lift` times the model's threshold, applies it and writes it.
    fn calibrate(
        &mut self,
        si: usize,
        min_samples: u64,
    ) -> Result<Option<SiteCalibration>, MlError> {
        let s = &mut self.slots[si];
        let m = &s.model.meta;
        let Some(mut cal) = s.learner.finish(
            &m.model_id,
            &m.onnx_sha256,
            m.threshold,
            m.target_fpr,
            min_samples,
        ) else {
            return Ok(None);
        };
        cal.threshold = cal.threshold.min(m.threshold * self.cfg.max_threshold_lift);
        s.threshold = cal.threshold;
        s.calibrated = true;
        self.counters.calibrations += 1;
        if let Some(dir) = &self.cfg.calibration_dir {
            cal.save(&Self::calibration_path(dir, &m.model_id))?;
        }
        Ok(Some(cal))
    }

    /// Learns `scores` of slot `si` and derives the site calibration when it is due: monitor
    /// mode every `min_calibration_samples` scores; shadow/act mode once, after the warm-up, for
    /// a model that had no stored calibration.
    fn learn_site(
        &mut self,
        si: usize,
        scores: &[f32],
    ) -> Result<Option<SiteCalibration>, MlError> {
        let (monitor, warmup) = (self.cfg.mode == Mode::Monitor, self.cfg.warmup_records);
        let every = if monitor {
            self.cfg.min_calibration_samples.max(1)
        } else if warmup > 0 && !self.slots[si].calibrated {
            warmup
        } else {
            return Ok(None);
        };
        let learner = &mut self.slots[si].learner;
        let before = learner.seen() / every;
        scores.iter().for_each(|&s| learner.learn(s));
        if learner.seen() / every > before {
            return self.calibrate(si, every);
        }
        Ok(None)
    }

    /// Whether an alert of slot `si` on `r`'s flow repeats one raised within the window (and if
    /// not, remembers this one).
    fn repeated(&mut self, si: usize, r: &FeatureRecord, now: Instant) -> bool {
        let window = Duration::from_secs(self.cfg.repeat_window_s);
        if window.is_zero() {
            return false;
        }
        let k = r.key;
        let key = (si, k.src, k.dst, k.src_port, k.dst_port, k.proto);
        if let Some(t) = self.recent.get_mut(&key) {
            if now.duration_since(*t) < window {
                return true;
            }
            *t = now;
            return false;
        }
        if self.recent.len() >= MAX_RECENT_ALERTS {
            self.recent.retain(|_, t| now.duration_since(*t) < window);
            if self.recent.len() >= MAX_RECENT_ALERTS {
                self.recent.clear();
            }
        }
        self.recent.insert(key, now);
        false
    }

    /// Scores `records`, appending alerts and quarantine proposals to `events`.
    pub fn score_batch(
        &mut self,
        records: &[FeatureRecord],
        events: &mut Vec<MlEvent>,
    ) -> Result<(), MlError> {
        let mut recs: Vec<&FeatureRecord> = Vec::with_capacity(records.len());
        for r in records {
            if r.schema_version == SCHEMA_VERSION {
                recs.push(r);
            } else {
                self.counters.wrong_schema += 1;
            }
        }
        self.feats.clear();
        self.feats.extend(recs.iter().map(|r| featurize(r)));
        self.counters.scored += recs.len() as u64;
        let mut alarmed = vec![false; recs.len()];
        for si in 0..self.slots.len() {
            self.out.clear();
            let slot = &self.slots[si];
            slot.model.run(&self.feats, &mut self.out)?;
            let width = slot.model.meta.output_width;
            let kind = slot.model.meta.kind;
            let scores: Vec<f32> = self
                .out
                .chunks_exact(width)
                .map(|c| slot.model.score_of(c))
                .collect();
            // The threshold in force for this batch (a calibration derived from it applies to
            // the next one).
            let threshold = self.slots[si].threshold;
            if let Some(cal) = self.learn_site(si, &scores)? {
                events.push(MlEvent::Calibrated(cal));
            }
            if self.cfg.mode == Mode::Monitor {
                continue;
            }
            let now = Instant::now();
            let mut hits = Vec::new();
            for i in 0..scores.len() {
                if scores[i] > threshold {
                    // Counted as alarmed either way: a repeat stays out of the host baselines.
                    alarmed[i] = true;
                    if self.repeated(si, recs[i], now) {
                        self.counters.repeats += 1;
                    } else {
                        hits.push(i);
                    }
                }
            }
            if hits.is_empty() {
                continue;
            }
            let weights = match kind {
                ModelKind::Classifier => self.classifier_weights(si, &hits)?,
                ModelKind::Autoencoder => hits
                    .iter()
                    .map(|&i| group_shares(&self.out[i * width..(i + 1) * width]))
                    .collect(),
            };
            for (&i, w) in hits.iter().zip(weights) {
                let alert = self.alert(si, recs[i], scores[i], threshold, &w);
                if self.cfg.mode == Mode::Act
                    && kind == ModelKind::Classifier
                    && scores[i] >= self.cfg.act_threshold
                    && self.proposed.len() < MAX_PROPOSED_HOSTS
                    && self.proposed.insert(alert.src)
                {
                    self.counters.quarantine_proposals += 1;
                    events.push(MlEvent::Quarantine(QuarantineRequest {
                        host: alert.src,
                        model_id: alert.model_id.clone(),
                        model_hash: alert.model_hash.clone(),
                        score: alert.score,
                        justification: alert.summary.clone(),
                    }));
                }
                self.counters.alerts += 1;
                events.push(MlEvent::Alert(alert));
            }
        }
        for (r, a) in recs.iter().zip(alarmed) {
            if !a {
                self.learn_baseline(r);
            }
        }
        Ok(())
    }

    /// Classifier explanation: re-score each alerting row with one feature group at a time set to
    /// the normal training median; a group's weight is how much log-odds that removes.
    fn classifier_weights(
        &self,
        si: usize,
        hits: &[usize],
    ) -> Result<Vec<[f32; FEATURE_GROUPS.len()]>, MlError> {
        let model = &self.slots[si].model;
        let medians = &model.meta.feature_medians;
        let mut variants = Vec::with_capacity(hits.len() * FEATURE_GROUPS.len());
        for &i in hits {
            for g in FEATURE_GROUPS {
                let mut v = self.feats[i];
                g.features.iter().for_each(|&f| v[f] = medians[f]);
                variants.push(v);
            }
        }
        let mut rescored = Vec::with_capacity(variants.len());
        model.run(&variants, &mut rescored)?;
        Ok(hits
            .iter()
            .zip(rescored.chunks_exact(FEATURE_GROUPS.len()))
            .map(|(&i, alt)| {
                let base = self.out[i];
                let mut w = [0f32; FEATURE_GROUPS.len()];
                alt.iter()
                    .zip(w.iter_mut())
                    .for_each(|(&a, w)| *w = (base - a).max(0.0));
                normalise(&mut w);
                w
            })
            .collect())
    }

    fn alert(
        &self,
        si: usize,
        r: &FeatureRecord,
        score: f32,
        threshold: f32,
        weights: &[f32; FEATURE_GROUPS.len()],
    ) -> Alert {
        let meta = &self.slots[si].model.meta;
        let ctx = Context {
            medians: &meta.feature_medians,
            host_fan_out: self.baselines.get(&r.key.src).copied(),
        };
        let mut order: Vec<usize> = (0..FEATURE_GROUPS.len()).collect();
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
        let reasons: Vec<Reason> = order
            .into_iter()
            .take(self.cfg.max_reasons.max(1))
            .filter(|&g| weights[g] >= 0.05)
            .map(|g| Reason {
                group: FEATURE_GROUPS[g].name.to_owned(),
                weight: weights[g],
                text: describe(g, r, &ctx),
            })
            .collect();
        let summary = if reasons.is_empty() {
            format!(
                "{} scored {score:.3} (no single feature group stands out)",
                meta.model_id
            )
        } else {
            reasons
                .iter()
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        Alert {
            model_id: meta.model_id.clone(),
            model_hash: meta.onnx_sha256.clone(),
            mode: self.cfg.mode,
            score,
            threshold,
            src: r.key.src,
            dst: r.key.dst,
            src_port: r.key.src_port,
            dst_port: r.key.dst_port,
            proto: r.key.proto,
            l7: match r.l7 {
                L7Proto::Unknown => String::new(),
                l => l.name().to_owned(),
            },
            worker: r.worker,
            summary,
            reasons,
        }
    }

    fn learn_baseline(&mut self, r: &FeatureRecord) {
        let now = r.spread.src_hosts_on_port as f32;
        if let Some(b) = self.baselines.get_mut(&r.key.src) {
            *b += 0.1 * (now - *b);
        } else if self.baselines.len() < MAX_BASELINE_HOSTS {
            self.baselines.insert(r.key.src, now);
        }
    }
}

fn normalise(w: &mut [f32]) {
    let total: f32 = w.iter().sum();
    if total > 0.0 {
        w.iter_mut().for_each(|x| *x /= total);
    }
}

/// Autoencoder explanation: each group's share of the reconstruction error.
fn group_shares(sq_err: &[f32]) -> [f32; FEATURE_GROUPS.len()] {
    let mut w = [0f32; FEATURE_GROUPS.len()];
    for (g, w) in FEATURE_GROUPS.iter().zip(w.iter_mut()) {
        *w = g.features.iter().map(|&f| sq_err[f]).sum();
    }
    normalise(&mut w);
    w
}
