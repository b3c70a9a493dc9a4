//! [`PortQueue`]: the unique right to use rx queue `q` and tx queue `q` of one port.

use std::sync::atomic::{AtomicU32, Ordering};

use arrayvec::ArrayVec;

use crate::mbuf::Mbuf;

const MAX_PORTS: usize = dpdk_sys::RTE_MAX_ETHPORTS as usize;

/// Live `PortQueue` handles per port: a port may only be stopped or closed when this is 0, so no
/// worker can be inside a burst call on it (DPDK forbids that race).
static LIVE_QUEUES: [AtomicU32; MAX_PORTS] = [const { AtomicU32::new(0) }; MAX_PORTS];

pub(crate) fn live_queues(port: u16) -> u32 {
    LIVE_QUEUES
        .get(usize::from(port))
        .map_or(0, |n| n.load(Ordering::Acquire))
}

/// Rx and tx queue number `queue` of `port`. Created only by `Port::configure`, once per queue,
/// so two threads can never poll the same queue (DPDK queues are not thread-safe). `Send`, so it
/// can move to its worker lcore; burst calls take `&mut self`.
#[derive(Debug)]
pub struct PortQueue {
    port: u16,
    queue: u16,
}

impl PortQueue {
    /// Only `Port::configure` calls this, once per (port, queue).
    pub(crate) fn new(port: u16, queue: u16) -> PortQueue {
        LIVE_QUEUES[usize::from(port)].fetch_add(1, Ordering::AcqRel);
        PortQueue { port, queue }
    }

    /// DPDK port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queue number (rx and tx).
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `N - out.len()` frames, appending them to `out`; returns how many.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, out: &mut ArrayVec<Mbuf, N>) -> usize {
        let len = out.len();
        let room = u16::try_from(N - len).unwrap_or(u16::MAX);
        if room == 0 {
            return 0;
        }
        // SAFETY: the spare capacity of `out` starts at index len and holds at least `room`
        // slots; Mbuf is repr(transparent) over a non-null *mut rte_mbuf, so DPDK may write raw
        // pointers there. This handle is the only user of (port, queue) (type invariant).
        let got = unsafe {
            let slots = out.as_mut_ptr().add(len).cast::<*mut dpdk_sys::rte_mbuf>();
            dpdk_sys::septa_rte_eth_rx_burst(self.port, self.queue, slots, room)
        };
        let got = usize::from(got).min(usize::from(room));
        // SAFETY: DPDK initialised the first `got` spare slots with valid, non-null, owned mbufs
        // (direct, refcount 1), which become Mbufs.
        unsafe { out.set_len(len + got) };
        got
    }

    /// Transmits the frames of `pkts`. DPDK takes ownership of the ones it accepts, which are
    /// removed from the front of `pkts`; the rest stay in `pkts` (in order) for the caller to
    /// retry or drop. Returns how many were accepted.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, pkts: &mut ArrayVec<Mbuf, N>) -> usize {
        let len = pkts.len();
        if len == 0 {
            return 0;
        }
        let offered = u16::try_from(len).unwrap_or(u16::MAX);
        let base = pkts.as_mut_ptr();
        // SAFETY: `base` points at `len` initialised Mbufs, i.e. valid *mut rte_mbuf values
        // (repr(transparent)); this handle is the only user of (port, queue).
        let sent = unsafe {
            dpdk_sys::septa_rte_eth_tx_burst(self.port, self.queue, base.cast(), offered)
        };
        let sent = usize::from(sent).min(len);
        if sent > 0 {
            // SAFETY: the first `sent` mbufs now belong to DPDK: shrink the vector to 0 without
            // dropping them, then move the unsent tail to the front (bitwise; the old slots are
            // forgotten, so nothing is dropped twice) and set the new length.
            unsafe {
                pkts.set_len(0);
                std::ptr::copy(base.add(sent), base, len - sent);
                pkts.set_len(len - sent);
            }
        }
        sent
    }
}

impl Drop for PortQueue {
    fn drop(&mut self) {
        LIVE_QUEUES[usize::from(self.port)].fetch_sub(1, Ordering::AcqRel);
    }
}
