//! The scoring engine: featurize a batch of records, run every model, explain what crosses a
//! threshold, and (in act mode) propose quarantines. Runs on the inference thread only.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use septa_features::{FEATURE_GROUPS, FeatureRecord, N_FEATURES, SCHEMA_VERSION, featurize};
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
    /// Scores needed before a monitor-mode calibration is written.
    #[serde(default = "default_min_samples")]
    pub min_calibration_samples: u64,
    #[serde(default = "default_max_reasons")]
    pub max_reasons: usize,
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
        }
    }
}

struct Slot {
    model: Model,
    threshold: f32,
    learner: Learner,
}

/// Counters the engine keeps (read by the service for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub scored: u64,
    pub alerts: u64,
    pub wrong_schema: u64,
    pub quarantine_proposals: u64,
}

/// Scores batches of records. Not `Sync`: it lives on the inference thread.
pub struct Engine {
    slots: Vec<Slot>,
    cfg: MlConfig,
    baselines: HashMap<IpAddr, f32>,
    proposed: HashSet<IpAddr>,
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
        let mut slots = Vec::with_capacity(models.len());
        for model in models {
            let mut threshold = model.meta.threshold;
            if let Some(dir) = &cfg.calibration_dir
                && let Some(cal) = SiteCalibration::load(
                    &Self::calibration_path(dir, &model.meta.model_id),
                    &model.meta.model_id,
                    model.hash(),
                )?
            {
                threshold = cal.threshold;
            }
            slots.push(Slot {
                model,
                threshold,
                learner: Learner::default(),
            });
        }
        Ok(Self {
            slots,
            cfg,
            baselines: HashMap::new(),
            proposed: HashSet::new(),
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

    /// Monitor mode: the calibrations learned so far (those with enough samples), written to
    /// `calibration_dir` when one is configured; they take effect immediately.
    pub fn finish_calibration(&mut self) -> Result<Vec<SiteCalibration>, MlError> {
        let mut done = Vec::new();
        for s in &mut self.slots {
            let m = &s.model.meta;
            if let Some(cal) = s.learner.finish(
                &m.model_id,
                &m.onnx_sha256,
                m.threshold,
                m.target_fpr,
                self.cfg.min_calibration_samples,
            ) {
                if let Some(dir) = &self.cfg.calibration_dir {
                    cal.save(&Self::calibration_path(dir, &m.model_id))?;
                }
                s.threshold = cal.threshold;
                done.push(cal);
            }
        }
        Ok(done)
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
            if self.cfg.mode == Mode::Monitor {
                let learner = &mut self.slots[si].learner;
                scores.iter().for_each(|&s| learner.learn(s));
                continue;
            }
            let threshold = self.slots[si].threshold;
            let hits: Vec<usize> = (0..scores.len())
                .filter(|&i| scores[i] > threshold)
                .collect();
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
                alarmed[i] = true;
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
