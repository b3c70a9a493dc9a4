//! [`Mbuf`]: one owned packet buffer.

use std::ptr::NonNull;

use crate::error::DpdkError;
use crate::mempool::Mempool;

/// An owned, single-segment DPDK packet buffer. Dropping it returns it to its pool.
///
/// Same layout as `*mut rte_mbuf` (`repr(transparent)` over `NonNull`), so bursts of `Mbuf` are
/// handed to and taken from DPDK's pointer arrays without conversion.
///
/// Invariants: the pointer comes from DPDK (rx burst or pool allocation) and this value is its
/// only owner; the mbuf is direct with refcount 1 (this crate never clones or attaches mbufs),
/// so `data_mut` cannot alias another packet. Only the first segment is exposed: ports are
/// configured without scattered rx, so received frames fit one segment.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: an Mbuf is uniquely owned; DPDK allows freeing an mbuf from any thread (the pool is
// multi-producer safe), and its data is only reachable through this value.
unsafe impl Send for Mbuf {}
// SAFETY: &Mbuf only allows reading the header fields and data, which nothing else writes.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    /// Takes an mbuf from `pool` (data length 0, default headroom).
    pub fn alloc(pool: &Mempool) -> Result<Mbuf, DpdkError> {
        // SAFETY: the pool is alive for the process; alloc returns NULL or an owned, reset mbuf.
        let raw = unsafe { dpdk_sys::septa_rte_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(raw)
            .map(Mbuf)
            .ok_or_else(|| DpdkError::MbufExhausted { pool: pool.name() })
    }

    /// Takes an mbuf from `pool` and copies `bytes` into it (for tests and generators).
    pub fn from_slice(pool: &Mempool, bytes: &[u8]) -> Result<Mbuf, DpdkError> {
        let mut mbuf = Mbuf::alloc(pool)?;
        // SAFETY: reads a field of the mbuf we own.
        let room = usize::from(unsafe { dpdk_sys::septa_rte_pktmbuf_tailroom(mbuf.0.as_ptr()) });
        let too_small = || DpdkError::MbufTooSmall {
            len: bytes.len(),
            room,
        };
        let len = u16::try_from(bytes.len()).map_err(|_| too_small())?;
        // SAFETY: the mbuf is ours; append returns NULL (changing nothing) if `len` exceeds the
        // tailroom, else grows data_len/pkt_len by `len` and returns the start of the new bytes.
        let tail = unsafe { dpdk_sys::septa_rte_pktmbuf_append(mbuf.0.as_ptr(), len) };
        if tail.is_null() {
            return Err(too_small());
        }
        mbuf.data_mut().copy_from_slice(bytes);
        Ok(mbuf)
    }

    fn header(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: the pointer is valid and uniquely owned by self (type invariant).
        unsafe { self.0.as_ref() }
    }

    /// Length of the frame in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.header().data_len)
    }

    /// True when the frame has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The port the frame was received on (as set by the PMD).
    #[inline]
    pub fn rx_port(&self) -> u16 {
        self.header().port
    }

    /// The frame, from the Ethernet header on.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.header();
        // SAFETY: DPDK keeps data_off + data_len within the buffer of buf_len bytes at buf_addr;
        // the bytes are initialised (written by the PMD or by us) and owned by self.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// Hints the CPU to pull the first cache line of the frame into L1 (DPDK's
    /// `rte_prefetch0(rte_pktmbuf_mtod(m))`). Issued for a burst before parsing it, so the
    /// header loads of packet i overlap with the memory latency of packets i+1...
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            let m = self.header();
            let p = m
                .buf_addr
                .cast::<u8>()
                .wrapping_add(usize::from(m.data_off));
            // SAFETY: a prefetch is only a hint: it never faults and never changes memory, even
            // for an invalid address (Intel SDM, PREFETCHh); SSE is part of the x86_64 baseline.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
            }
        }
    }

    /// The frame, writable in place.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (addr, off, len) = {
            let m = self.header();
            (
                m.buf_addr.cast::<u8>(),
                usize::from(m.data_off),
                usize::from(m.data_len),
            )
        };
        // SAFETY: as in `data`; `&mut self` and refcount 1 (type invariant) make the bytes
        // exclusively ours.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    /// Gives up ownership, for handing the mbuf to DPDK directly.
    pub fn into_raw(self) -> NonNull<dpdk_sys::rte_mbuf> {
        let raw = self.0;
        std::mem::forget(self);
        raw
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid, direct, single-segment mbuf with refcount 1 that nothing else owns
    /// or uses afterwards (e.g. one just returned by `rte_eth_rx_burst` or `into_raw`).
    pub unsafe fn from_raw(raw: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf(raw)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (type invariant) and never use it again.
        unsafe { dpdk_sys::septa_rte_pktmbuf_free(self.0.as_ptr()) }
    }
}
