//! Per-site calibration: in monitor mode the engine records each model's scores on this site's
//! traffic (bounded reservoir), then derives the site's baseline (median) and the threshold that
//! keeps the site's alert rate at the model's target false-positive rate. Persisted as a small JSON
//! file per model, bound to the model's hash so a new model never inherits an old calibration.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::MlError;

/// Scores kept for the quantile; older ones are replaced uniformly at random (reservoir sampling).
pub const RESERVOIR: usize = 20_000;

/// The persisted calibration of one model at one site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteCalibration {
    pub model_id: String,
    pub model_hash: String,
    pub samples: u64,
    pub target_fpr: f64,
    /// Median score of the site's traffic.
    pub median: f32,
    /// Score quantile at `1 - target_fpr` on the site's traffic.
    pub quantile: f32,
    /// The threshold in force: never below the model's own.
    pub threshold: f32,
}

/// Collects scores in monitor mode.
#[derive(Clone, Debug, Default)]
pub struct Learner {
    scores: Vec<f32>,
    seen: u64,
    rng: u64,
}

impl Learner {
    pub fn learn(&mut self, score: f32) {
        self.seen += 1;
        if self.scores.len() < RESERVOIR {
            self.scores.push(score);
            return;
        }
        // xorshift64*: deterministic, good enough for reservoir slots.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let slot = x.wrapping_mul(0x2545_F491_4F6C_DD1D) % self.seen;
        if let Ok(slot) = usize::try_from(slot)
            && slot < RESERVOIR
        {
            self.scores[slot] = score;
        }
    }

    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The calibration, once at least `min_samples` scores were seen.
    pub fn finish(
        &self,
        model_id: &str,
        model_hash: &str,
        model_threshold: f32,
        target_fpr: f64,
        min_samples: u64,
    ) -> Option<SiteCalibration> {
        if self.seen < min_samples.max(1) || self.scores.is_empty() {
            return None;
        }
        let mut s = self.scores.clone();
        s.sort_by(f32::total_cmp);
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        let quantile = at(1.0 - target_fpr);
        Some(SiteCalibration {
            model_id: model_id.to_owned(),
            model_hash: model_hash.to_owned(),
            samples: self.seen,
            target_fpr,
            median: at(0.5),
            quantile,
            threshold: quantile.max(model_threshold),
        })
    }
}

impl SiteCalibration {
    /// Writes `path` atomically (tmp + fsync + rename).
    pub fn save(&self, path: &Path) -> Result<(), MlError> {
        let err = |detail: String| MlError::Calibration {
            path: path.to_path_buf(),
            detail,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
        f.write_all(&text).map_err(|e| err(e.to_string()))?;
        f.sync_all().map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Reads `path` if it exists. A calibration for another model (hash) is an error, not silently used.
    pub fn load(path: &Path, model_id: &str, model_hash: &str) -> Result<Option<Self>, MlError> {
        let err = |detail: String| MlError::Calibration {
            path: path.to_path_buf(),
            detail,
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        };
        let cal: Self = serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?;
        if cal.model_hash != model_hash {
            return Err(err(format!(
                "calibrated for {} ({}), not for the loaded {model_id} ({model_hash}); delete it or recalibrate in monitor mode",
                cal.model_id, cal.model_hash
            )));
        }
        if !cal.threshold.is_finite() {
            return Err(err("threshold is not a finite number".into()));
        }
        Ok(Some(cal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_quantile_and_keeps_model_floor() {
        let mut l = Learner::default();
        for i in 0..50_000u32 {
            l.learn((i % 1000) as f32 / 1000.0);
        }
        assert!(l.finish("m", "h", 0.5, 0.01, 100_000).is_none());
        let c = l.finish("m", "h", 0.5, 0.01, 1000).unwrap();
        assert!((c.quantile - 0.99).abs() < 0.01, "{c:?}");
        assert!((c.median - 0.5).abs() < 0.02, "{c:?}");
        assert_eq!(c.threshold, c.quantile);
        let c = l.finish("m", "h", 0.999, 0.01, 1000).unwrap();
        assert_eq!(c.threshold, 0.999);
    }

    #[test]
    fn persisted_and_bound_to_model_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cal.json");
        assert_eq!(SiteCalibration::load(&p, "m", "h").unwrap(), None);
        let mut l = Learner::default();
        (0..100).for_each(|i| l.learn(i as f32));
        let c = l.finish("m", "h", 0.0, 0.05, 10).unwrap();
        c.save(&p).unwrap();
        assert_eq!(SiteCalibration::load(&p, "m", "h").unwrap(), Some(c));
        let e = SiteCalibration::load(&p, "m2", "other").unwrap_err();
        assert!(e.to_string().contains("not for the loaded m2"), "{e}");
    }
}
