//! `septa-dataplane`: the packet path of the appliance.
//!
//! Port backends sit behind [`io::PacketIo`] (DPDK behind the `dpdk` feature, pcap files, memory);
//! the worker poll loop is generic over it and monomorphised, so no packet goes through `dyn`.
//!
//! Invariants of the per-packet path: no allocation, no locks, no logging; every dropped packet is
//! counted under exactly one drop reason.

pub mod io;
