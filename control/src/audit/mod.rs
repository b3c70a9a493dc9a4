//! The tamper-evident audit log: every mutation (and, later, access decisions) as a record in an
//! append-only, hash-chained log with periodic ed25519-signed checkpoints; a verifier for
//! auditors; exports of a range with its checkpoints.
//!
//! [`record`] defines the encoding, [`log`] the writer and export, [`mod@verify`] the checker. The
//! log never rewrites a record; its only repair is cutting a torn final line that a crash left,
//! which it records.

pub mod decisions;
pub mod log;
pub mod record;
pub mod verify;

pub use decisions::{AccessDecision, DecisionAggregator, DecisionKind};
pub use log::{AuditConfig, AuditLog, ExportManifest, RecordRef, export, segment_name};
pub use record::{Actor, ActorKind, AuditEntry, Checkpoint, Record};
pub use verify::{VerifyOptions, VerifyReport, read_public_key, verify, verify_with};
