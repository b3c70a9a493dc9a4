//! Typed errors of `septa-ml`. Every load error names the file and what was wrong with it, so an
//! operator can tell a missing model from a mismatched one; in all of them ML stays off and the data
//! plane is unaffected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error("ML model file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ML model metadata {path}: {source}")]
    Metadata {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "ML model {path}: sha256 {actual} does not match metadata onnx_sha256 {expected} (wrong or corrupted file)"
    )]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("ML model {model_id}: {what}")]
    Mismatch { model_id: String, what: String },
    #[error("ML model {model_id}: tract could not load or optimise the graph: {detail}")]
    Tract { model_id: String, detail: String },
    #[error("ML model {model_id}: inference failed: {detail}")]
    Inference { model_id: String, detail: String },
    #[error("ML calibration {path}: {detail}")]
    Calibration { path: PathBuf, detail: String },
    #[error("ML config: {0}")]
    Config(String),
    #[error("ML inference thread could not be spawned: {0}")]
    Spawn(std::io::Error),
}
