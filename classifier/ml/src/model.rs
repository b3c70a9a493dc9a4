//! Loading a model: metadata JSON → hash check → schema check → tract load with a symbolic batch
//! dimension → shape validation → optimised plan. Scoring runs one batch through the plan.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use septa_features::{FEATURE_NAMES, N_FEATURES, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use crate::error::MlError;

/// What a model's output means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Output `[N, 1]`: log-odds that the flow is an attack (score = sigmoid of it).
    Classifier,
    /// Output `[N, 32]`: per-feature squared reconstruction error (score = mean).
    Autoencoder,
}

/// Test-set metrics recorded by the training pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub roc_auc: f64,
    pub fpr: f64,
    pub tpr: f64,
}

/// The metadata JSON committed beside each `.onnx` (written by `training/train.py`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelMeta {
    pub model_id: String,
    pub kind: ModelKind,
    pub onnx_file: String,
    pub onnx_sha256: String,
    pub schema_version: u16,
    pub feature_names: Vec<String>,
    pub input_name: String,
    pub output_name: String,
    pub output_width: usize,
    /// Alert threshold chosen on validation data at `target_fpr`.
    pub threshold: f32,
    pub target_fpr: f64,
    /// Medians of the normal training rows, per feature (classifier explanations, operator words).
    pub feature_medians: Vec<f32>,
    pub metrics_test: Metrics,
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub alert_rate_by_profile: serde_json::Value,
}

/// A loaded, validated, optimised model.
pub struct Model {
    pub meta: ModelMeta,
    plan: Arc<TypedSimplePlan>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("model_id", &self.meta.model_id)
            .field("kind", &self.meta.kind)
            .finish_non_exhaustive()
    }
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mismatch(meta: &ModelMeta, what: String) -> MlError {
    MlError::Mismatch {
        model_id: meta.model_id.clone(),
        what,
    }
}

impl Model {
    /// Loads `meta_path` (the JSON) and the `.onnx` it names, from the same directory.
    pub fn load(meta_path: &Path) -> Result<Self, MlError> {
        let text = std::fs::read(meta_path).map_err(|source| MlError::Io {
            path: meta_path.to_path_buf(),
            source,
        })?;
        let meta: ModelMeta =
            serde_json::from_slice(&text).map_err(|source| MlError::Metadata {
                path: meta_path.to_path_buf(),
                source,
            })?;
        let onnx_path: PathBuf = meta_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&meta.onnx_file);
        let bytes = std::fs::read(&onnx_path).map_err(|source| MlError::Io {
            path: onnx_path.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if actual != meta.onnx_sha256 {
            return Err(MlError::HashMismatch {
                path: onnx_path,
                expected: meta.onnx_sha256.clone(),
                actual,
            });
        }
        Self::from_bytes(meta, &bytes)
    }

    /// Validates `meta` against this build's feature schema, then loads `onnx` (already hash-checked).
    pub fn from_bytes(meta: ModelMeta, onnx: &[u8]) -> Result<Self, MlError> {
        if meta.schema_version != SCHEMA_VERSION {
            return Err(mismatch(
                &meta,
                format!(
                    "trained for feature schema v{}, this build produces v{SCHEMA_VERSION}",
                    meta.schema_version
                ),
            ));
        }
        if meta.feature_names.len() != N_FEATURES
            || meta
                .feature_names
                .iter()
                .zip(FEATURE_NAMES)
                .any(|(a, b)| a != b)
        {
            return Err(mismatch(
                &meta,
                "feature_names differ from this build's schema".into(),
            ));
        }
        if meta.feature_medians.len() != N_FEATURES {
            return Err(mismatch(
                &meta,
                format!(
                    "feature_medians has {} values, expected {N_FEATURES}",
                    meta.feature_medians.len()
                ),
            ));
        }
        let width = match meta.kind {
            ModelKind::Classifier => 1,
            ModelKind::Autoencoder => N_FEATURES,
        };
        if meta.output_width != width {
            return Err(mismatch(
                &meta,
                format!(
                    "output_width {} but a {:?} must output {width}",
                    meta.output_width, meta.kind
                ),
            ));
        }
        let plan = build_plan(&meta, onnx).map_err(|e| match e {
            PlanError::Shape(what) => mismatch(&meta, what),
            PlanError::Tract(detail) => MlError::Tract {
                model_id: meta.model_id.clone(),
                detail,
            },
        })?;
        Ok(Self { meta, plan })
    }

    /// Output values per row (`output_width` of them) for `rows`, appended to `out`.
    pub fn run(&self, rows: &[[f32; N_FEATURES]], out: &mut Vec<f32>) -> Result<(), MlError> {
        if rows.is_empty() {
            return Ok(());
        }
        let fail = |e: TractError| MlError::Inference {
            model_id: self.meta.model_id.clone(),
            detail: format!("{e:#}"),
        };
        let input =
            Tensor::from_shape(&[rows.len(), N_FEATURES], rows.as_flattened()).map_err(fail)?;
        let result = self.plan.run(tvec!(input.into())).map_err(fail)?;
        let view = result[0].to_plain_array_view::<f32>().map_err(fail)?;
        let want = [rows.len(), self.meta.output_width];
        if view.shape() != want {
            return Err(MlError::Inference {
                model_id: self.meta.model_id.clone(),
                detail: format!("output shape {:?}, expected {want:?}", view.shape()),
            });
        }
        out.extend(view.iter().copied());
        Ok(())
    }

    /// One score per row: the attack probability (classifier) or the mean squared reconstruction
    /// error (autoencoder).
    pub fn scores(&self, rows: &[[f32; N_FEATURES]], out: &mut Vec<f32>) -> Result<(), MlError> {
        let mut raw = Vec::with_capacity(rows.len() * self.meta.output_width);
        self.run(rows, &mut raw)?;
        out.extend(
            raw.chunks_exact(self.meta.output_width)
                .map(|c| self.score_of(c)),
        );
        Ok(())
    }

    /// The score of one row's raw output.
    pub fn score_of(&self, raw: &[f32]) -> f32 {
        match self.meta.kind {
            ModelKind::Classifier => sigmoid(raw[0]),
            ModelKind::Autoencoder => raw.iter().sum::<f32>() / raw.len() as f32,
        }
    }

    /// sha256 of the `.onnx` file (as recorded in, and checked against, the metadata).
    pub fn hash(&self) -> &str {
        &self.meta.onnx_sha256
    }
}

enum PlanError {
    Shape(String),
    Tract(String),
}

fn build_plan(meta: &ModelMeta, onnx: &[u8]) -> Result<Arc<TypedSimplePlan>, PlanError> {
    let t = |e: TractError| PlanError::Tract(format!("{e:#}"));
    let mut reader = onnx;
    let model = tract_onnx::onnx().model_for_read(&mut reader).map_err(t)?;
    let inputs = model.input_outlets().map_err(t)?.len();
    let outputs = model.output_outlets().map_err(t)?.len();
    if inputs != 1 || outputs != 1 {
        return Err(PlanError::Shape(format!(
            "graph has {inputs} inputs and {outputs} outputs, expected 1 and 1"
        )));
    }
    let input_name = model
        .node(model.input_outlets().map_err(t)?[0].node)
        .name
        .clone();
    if input_name != meta.input_name {
        return Err(PlanError::Shape(format!(
            "graph input is named {input_name:?}, metadata says {:?}",
            meta.input_name
        )));
    }
    let batch = model.sym("N");
    let model = model
        .with_input_fact(
            0,
            f32::fact([TDim::from(batch.clone()), TDim::from(N_FEATURES as i64)]).into(),
        )
        .map_err(t)?;
    let typed = model.into_optimized().map_err(t)?;
    let input = typed.input_fact(0).map_err(t)?;
    let output = typed.output_fact(0).map_err(t)?;
    let out_dims: Vec<TDim> = output.shape.iter().cloned().collect();
    let batch_dim = TDim::from(batch);
    if output.datum_type != f32::datum_type()
        || out_dims.len() != 2
        || out_dims[0] != batch_dim
        || out_dims[1] != TDim::from(meta.output_width as i64)
    {
        return Err(PlanError::Shape(format!(
            "output fact is {output:?} for input {input:?}; expected f32 [N, {}]",
            meta.output_width
        )));
    }
    typed.into_runnable().map_err(t)
}
