//! Packet-buffer pools (`rte_pktmbuf_pool_create`). Pools live until the process exits.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use crate::eal::Eal;
use crate::error::{DpdkError, last_errno, strerror};

/// What to create: sizes come from the caller (and its config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Pool name, unique in the process, at most 25 bytes.
    pub name: String,
    /// Number of mbufs (DPDK: best as 2^q - 1).
    pub mbufs: u32,
    /// Per-lcore cache size (0..=512, and at most `mbufs / 1.5`).
    pub cache_size: u32,
    /// Data room per mbuf, headroom included (`Mempool::DEFAULT_DATA_ROOM` fits a 1518-byte frame).
    pub data_room: u16,
    /// NUMA socket to allocate on; `None` lets DPDK choose.
    pub socket: Option<u32>,
}

/// A handle to a pool of packet buffers. `Copy`: the pool itself is never freed (mbufs and port
/// rx queues refer to it for the life of the process), so the handle cannot dangle.
#[derive(Debug, Clone, Copy)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe (the default ring ops), with
// per-lcore caches that DPDK selects by the calling thread's lcore id; the pool is never freed.
unsafe impl Send for Mempool {}
// SAFETY: as above: every operation on a shared pool is thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// DPDK's default data room: 2048 bytes of data plus the 128-byte headroom.
    pub const DEFAULT_DATA_ROOM: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

    /// Creates a pktmbuf pool. Errors carry DPDK's reason (e.g. "Cannot allocate memory" when
    /// running with `--no-huge` and too small a `-m`).
    pub fn create(_eal: &Eal, config: &MempoolConfig) -> Result<Mempool, DpdkError> {
        let name = CString::new(config.name.as_str()).map_err(|_| {
            DpdkError::InvalidArgument(format!("mempool name {:?} contains NUL", config.name))
        })?;
        let socket = match config.socket {
            None => dpdk_sys::SOCKET_ID_ANY,
            Some(s) => i32::try_from(s)
                .map_err(|_| DpdkError::InvalidArgument(format!("socket {s} out of range")))?,
        };
        // SAFETY: the EAL is initialised (we hold &Eal); `name` is NUL-terminated and DPDK copies it.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                name.as_ptr(),
                config.mbufs,
                config.cache_size,
                0,
                config.data_room,
                socket,
            )
        };
        NonNull::new(raw).map(|raw| Mempool { raw }).ok_or_else(|| {
            let errno = last_errno();
            DpdkError::Mempool {
                name: config.name.clone(),
                errno,
                message: strerror(errno),
            }
        })
    }

    /// The pool's name.
    pub fn name(&self) -> String {
        // SAFETY: the pool is alive (never freed); `name` is a NUL-terminated array set at
        // creation and never written again.
        let name = unsafe { CStr::from_ptr(self.raw.as_ref().name.as_ptr()) };
        name.to_string_lossy().into_owned()
    }

    /// Mbufs currently free in the pool (including per-lcore caches).
    pub fn avail_count(&self) -> u32 {
        // SAFETY: the pool is alive; the count is a racy-but-safe read of ring and cache lengths.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently taken from the pool (in flight, in rx rings or held by the application).
    pub fn in_use_count(&self) -> u32 {
        // SAFETY: as for avail_count.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }
}
