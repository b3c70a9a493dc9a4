//! `septa-ml`: on-appliance flow scoring. Loads ONNX models (an MLP classifier and an autoencoder)
//! with tract, drains the per-worker rings of [`septa_features::FeatureRecord`]s on one inference
//! thread, scores batches, and emits alerts that say why in an operator's words, with the model id
//! and hash. A supervisor restarts the thread when it panics or stalls.
//!
//! Must never: depend on DPDK, the data plane or the control plane; change policy itself (act mode
//! only proposes a [`QuarantineRequest`] for the control plane's normal policy path); block a
//! worker (rings are lossy and counted on the producer side).
//!
//! A missing or mismatched model is an [`MlError`] from [`Engine::load`] / [`Service::start`]:
//! the caller logs it and runs without ML; forwarding is unaffected.

pub mod alert;
pub mod calibration;
pub mod engine;
pub mod error;
mod explain;
pub mod heldout;
pub mod model;
pub mod service;

pub use alert::{Alert, Health, MlEvent, Mode, QuarantineRequest, Reason};
pub use calibration::SiteCalibration;
pub use engine::{Engine, EngineCounters, MlConfig};
pub use error::MlError;
pub use model::{Model, ModelKind, ModelMeta};
pub use service::{
    Rings, SPREAD_RING, Scorer, ScorerFactory, Service, ServiceConfig, ServiceStats, rings,
    rings_with,
};
