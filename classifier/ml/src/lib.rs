//! `septa-ml`: the flow feature schema and the inference thread that scores sampled flows with
//! tract-onnx models and explains each score.
//!
//! **Placeholder.** The AI issue fills this crate; until then it only reserves its place in the
//! workspace map of `ARCHITECTURE.md`. It will depend on `septa-classifier` types and `tract-onnx`,
//! and must never depend on DPDK or on the control plane.
