//! `septa-control`: the control plane — zone/conduit policy model, validation and compilation to
//! classifier rules, revisions with diff/rollback/commit-confirm, the SQLite store, the tamper-evident
//! audit log and the axum REST API.
//!
//! **Placeholder.** The control-plane issue fills this crate; until then it only reserves its place
//! in the workspace map of `ARCHITECTURE.md`. It runs on tokio threads that are never EAL lcores and
//! must never depend on `septa-dpdk` (the layering test in `tests/layering.rs` enforces this).
