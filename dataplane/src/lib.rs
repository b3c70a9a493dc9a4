//! `septa-dataplane`: the packet path of the appliance.
//!
//! Port backends sit behind [`io::PacketIo`] (DPDK behind the `dpdk` feature, pcap files, memory);
//! the worker poll loop is generic over it and monomorphised, so no packet goes through `dyn`.
//!
//! Invariants of the per-packet path: no allocation, no locks, no logging; every dropped packet is
//! counted under exactly one drop reason ([`DropReason`], the one table). Never depends on tokio,
//! axum or tract.

pub mod conntrack;
pub mod counters;
pub mod drop;
pub mod error;
pub mod events;
pub mod flow;
pub mod frag;
pub mod io;
pub mod l7;
pub mod parse;
pub mod replay;
pub mod route;
pub mod sample;
pub mod testgen;
pub mod worker;

pub use counters::{Stats, WorkerCounters};
pub use drop::DropReason;
pub use error::{BridgeError, PcapIoError, ReplayError, RouteError, StateConfigError};
pub use parse::{ParsedPacket, parse};
pub use replay::{ReplayReport, replay};
pub use worker::{
    Bridge, Decision, Observer, PolicySlot, RuleDecision, StateConfig, Verdict, Worker, WorkerState,
};
