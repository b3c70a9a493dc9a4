//! `septa-classifier`: decides which rule of the running policy applies to a flow.
//!
//! This crate holds the vocabulary shared by the data plane and the control plane for flows
//! ([`FlowKey`]). The rule IR, the compiler, the batch lookup, the naive reference and the RCU
//! publish cell are built by the classifier issue.
//!
//! Invariants: nothing here performs I/O or reads a clock; lookups never allocate or lock.

mod key;

pub use key::{Family, FlowKey};
