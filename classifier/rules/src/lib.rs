//! `septa-classifier`: decides which rule of the running policy applies to a flow.
//!
//! * [`Rule`] is the IR: an ordered list, first match wins, over source/destination prefixes (or
//!   prefix sets), port ranges, protocol, VLAN and input port, IPv4 and IPv6.
//! * [`compile`] turns up to hundreds of thousands of rules into a [`RuleTable`]: zone-shaped
//!   policies get a fast path of two address-class lookups and one small service table; anything
//!   else gets decision trees whose leaves hold a handful of rules (design in `docs/classifier.md`).
//! * [`RuleTable::classify_burst`] is what the data plane calls per burst of flow misses; it
//!   interleaves the tree walks of several keys to overlap their memory loads;
//!   [`RuleTable::match_burst`] is the same walk returning a `u32` rule index per key (resolved
//!   on demand with [`RuleTable::decision_at`]), which saves copying a `Decision` per key.
//! * [`reference::classify`] is the naive linear scan that defines the right answer.
//! * [`RuleTable::apply`] inserts or removes one rule, rebuilding only what the rule touches.
//! * [`TableCell`] publishes new tables to running workers (RCU; see `docs/rcu.md`).
//! * [`synth`] generates ClassBench-like rule sets and traces for tests and benchmarks.
//!
//! Invariants: nothing here performs I/O or reads a clock; compilation is deterministic (no
//! hash-order dependence); lookups never allocate or lock; a rejected rule list never replaces the
//! running table.

mod cell;
mod compile;
mod error;
mod key;
pub mod reference;
mod rule;
pub mod synth;
mod table;
mod tree;
mod update;
mod zone;

pub use cell::{TableCell, TableReader};
pub use compile::{CompileOptions, Strategy, compile, compile_with};
pub use error::{CompileError, Field};
pub use key::{Family, FlowKey};
pub use rule::{Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, RuleId, SourceRef};
pub use table::{Decision, NO_RULE, RuleTable};
pub use update::Edit;
