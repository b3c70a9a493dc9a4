//! `septa-dpdk`: the safe wrapper over DPDK (EAL, lcores, mempools, mbufs, ports, burst I/O).
//!
//! Together with `dpdk-sys` this is Septa's only unsafe perimeter: every other crate forbids
//! `unsafe` and reaches DPDK through the types here. Every `unsafe` block states why it is sound.
//!
//! What it must never do: panic on a DPDK error (every failure is a [`DpdkError`] carrying
//! DPDK's `rte_strerror` text), allocate or lock in the burst calls, or let two threads use one
//! queue.
//!
//! Invariants:
//! - The EAL is initialised at most once per process ([`Eal::init`]; a second call is an error).
//!   The [`Eal`] token is `!Send`: lcore launches happen on the main lcore.
//! - Mempools are never freed and the EAL is never cleaned up by this crate, so no [`Mbuf`] or
//!   [`Mempool`] handle can outlive the memory it points into.
//! - An [`Mbuf`] is the sole owner of a direct, single-segment mbuf; dropping it frees it.
//! - A [`PortQueue`] is the only handle to rx/tx queue `q` of a port (ports configure once per
//!   process), and a port cannot be stopped or closed while any of its `PortQueue`s exists.
//! - `tx_burst` gives DPDK ownership of exactly the packets the PMD accepted; the rest stay with
//!   the caller.
//! - Port control calls (configure, start, stop, stats, ...) are serialised by one lock, because
//!   DPDK's ethdev control path is not thread-safe; the burst path takes no lock.
//! - Symmetric RSS (key 0x6d5a repeated) is enabled only when the device reports RSS hash types
//!   and more than one queue is configured; the key is also set with `rte_eth_dev_rss_hash_update`
//!   because some PMDs ignore the one given at configure time.
//!
//! Typical use, on the main thread:
//! ```no_run
//! use septa_dpdk::{Eal, Mempool, MempoolConfig, Port, PortConfig};
//! # fn main() -> Result<(), septa_dpdk::DpdkError> {
//! let eal = Eal::init(&["-l".into(), "0-1".into(), "--no-huge".into(), "--vdev=net_ring0".into()])?;
//! let pool = Mempool::create(&eal, &MempoolConfig {
//!     name: "pkts".into(), mbufs: 8191, cache_size: 256,
//!     data_room: Mempool::DEFAULT_DATA_ROOM, socket: None,
//! })?;
//! let port = Port::by_name(&eal, "net_ring0")?;
//! let mut cfg = port.configure(&PortConfig { queues: 1, rx_desc: 1024, tx_desc: 1024, pool })?;
//! port.start()?;
//! let mut q = cfg.queues.remove(0);
//! eal.launch(1, move || {
//!     let mut burst = arrayvec::ArrayVec::<septa_dpdk::Mbuf, 32>::new();
//!     q.rx_burst(&mut burst);
//!     q.tx_burst(&mut burst);
//!     0
//! })?;
//! eal.wait_all();
//! port.stop()?;
//! # Ok(()) }
//! ```

mod eal;
mod error;
mod mbuf;
mod memory;
mod mempool;
mod port;
mod queue;

pub use eal::{Eal, current_lcore, current_socket};
pub use error::{DpdkError, strerror};
pub use mbuf::Mbuf;
pub use memory::{
    FORCE_NO_HUGE_ENV, NO_HUGE_MEMORY_MB, eal_memory_args, hugepages_usable, unique_file_prefix,
};
pub use mempool::{Mempool, MempoolConfig};
pub use port::{
    ConfiguredPort, LinkStatus, Port, PortCapabilities, PortConfig, PortStats, RssHashConfig,
};
pub use queue::PortQueue;

/// Maximum number of ports DPDK was built for.
pub const MAX_PORTS: u16 = dpdk_sys::RTE_MAX_ETHPORTS as u16;
