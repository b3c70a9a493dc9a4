//! `septa-control`: the control plane's core as a synchronous library — the zone/conduit policy
//! model with validation ([`policy`]), the pure compiler to classifier rules with a source map
//! ([`mod@compile`]), what-if decisions ([`mod@decide`]), the tamper-evident audit log ([`audit`]), the
//! SQLite revision store ([`store`]) and the lifecycle that ties validate → compile → publish →
//! store → audit together ([`lifecycle`]).
//!
//! It must never depend on `septa-dpdk`, `dpdk-sys` or `septa-dataplane` (the layering test in
//! `tests/layering.rs` enforces this): the data plane is reached only through the
//! [`lifecycle::Publisher`] trait, implemented by the composition root. The REST API ([`api`],
//! axum) calls the synchronous core from blocking tasks; outside [`api`] nothing spawns threads
//! or needs a runtime.
//!
//! Invariants: only a [`policy::ValidatedPolicy`] is compiled; compilation is pure; every mutation
//! appends exactly one audit record; a failed step leaves the running revision and table as they
//! were; acknowledged writes are on disk (fsync) before a call returns.

pub mod api;
pub mod audit;
pub mod clock;
pub mod compile;
pub mod decide;
pub mod diff;
mod durable;
pub mod error;
pub mod evidence;
pub mod export;
pub mod fuzzing;
pub mod history;
pub mod lifecycle;
pub mod mgmt;
pub mod policy;
pub mod recommend;
pub mod semantics;
pub mod store;

pub use compile::{Clause, ClauseKind, CompiledPolicy, compile};
pub use decide::{Explanation, decide, parse_flow};
pub use error::{
    AuditError, CompileError, Diagnostic, LifecycleError, PolicyError, StoreError, VerifyError,
};
pub use policy::{Format, ValidatedPolicy, parse_policy};
