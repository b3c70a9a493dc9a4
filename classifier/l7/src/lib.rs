//! `septa-l7`: the shared L7 vocabulary of the policy compiler and the data plane.
//!
//! * [`L7Proto`] names every protocol the data plane identifies.
//! * [`functions`] holds, per industrial protocol, the table of function codes with their names
//!   and classes (read, write, diagnostics, control, ...), and resolves the names, class groups and
//!   `prefix_*` patterns that operators write in a conduit's `l7:` constraint.
//! * [`L7Constraint`] is a compiled function-code conduit (bitsets and short lists, built off the
//!   hot path); [`check`] decides one parsed [`Message`] against it and returns an [`L7Verdict`]
//!   whose deny reason names the function.
//!
//! This crate sits beside `septa-classifier` so that `septa-control` (which compiles constraints)
//! and `septa-dataplane` (which parses messages and enforces) share one table without depending on
//! each other. Invariants: no I/O, no clock, no dependencies; [`check`] never allocates or panics.

mod constraint;
pub mod functions;
mod proto;

pub use constraint::{
    AddrRange, DenyReason, FnSet, L7Constraint, L7Verdict, MAX_MASTERS, MAX_RANGES, Message, Net,
    Role, Sender, check,
};
pub use functions::{Class, Function};
pub use proto::L7Proto;
