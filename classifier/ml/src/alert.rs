//! What the inference thread emits: alerts with their explanation, quarantine proposals, health.
//! All serialisable so the control plane can store them in the audit log and show them as they are.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// How far ML may go. `Shadow` is the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Learn the site's score baseline and threshold (calibration); no alerts.
    Monitor,
    /// Score and alert only.
    #[default]
    Shadow,
    /// Alert, and propose a quarantine of the source host for high-confidence alerts. The request
    /// goes through the control plane's normal policy path (validation, revision, audit,
    /// commit-confirm); ML never changes policy itself.
    Act,
}

/// One reason behind an alert, in an operator's words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Feature group (see `septa_features::FEATURE_GROUPS`).
    pub group: String,
    /// Share of the score this group explains (0..1, summing to at most 1 over the reasons).
    pub weight: f32,
    pub text: String,
}

/// A flow that one model scored above its threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub model_id: String,
    /// sha256 of the model file that produced the score.
    pub model_hash: String,
    pub mode: Mode,
    pub score: f32,
    pub threshold: f32,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// The flow's application protocol as the data plane identified it (`modbus`, `smb`, …, the
    /// labels of flow records); empty when it was not identified.
    pub l7: String,
    pub worker: u16,
    /// One line: the top reasons joined.
    pub summary: String,
    pub reasons: Vec<Reason>,
}

/// A proposed quarantine of one host, for the control plane to validate, revise, audit and commit
/// (with commit-confirm) like any other policy change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineRequest {
    pub host: IpAddr,
    pub model_id: String,
    pub model_hash: String,
    pub score: f32,
    /// The alert summary that motivated the request.
    pub justification: String,
}

/// Health of the inference thread as seen by its supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// The thread panicked; it was restarted and the records it held were lost. A thread
    /// already replaced as stalled that panics later is reported too, with `lost_records` 0
    /// (they were counted with the stall).
    Panicked {
        message: String,
        lost_records: u64,
    },
    /// The thread stopped making progress; a fresh one took over its rings.
    Stalled {
        silent_ms: u64,
        lost_records: u64,
    },
    /// A replacement could not be built (e.g. the model file went away); retried later.
    RestartFailed {
        error: String,
    },
    Restarted {
        generation: u64,
    },
}

/// Everything the inference service emits, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MlEvent {
    Alert(Alert),
    Quarantine(QuarantineRequest),
    Health(Health),
    /// A site calibration was derived and is in force from now on (end of the warm-up, or a
    /// monitor-mode refresh).
    Calibrated(crate::calibration::SiteCalibration),
}
