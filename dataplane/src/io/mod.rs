//! Port backends. A backend instance belongs to exactly one worker (for DPDK: one rx and one tx
//! queue on every port), so its methods take `&mut self` and need no synchronisation.

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod memory;
pub mod pcap;

/// Packets moved per rx or tx call (DPDK l3fwd's burst size).
pub const BURST: usize = 32;

/// Index of a port as configured (0-based, dense).
pub type PortId = u16;

/// A packet buffer owned by the worker while it is processed. Dropping it frees it (for DPDK:
/// returns the mbuf to its pool).
pub trait PacketBuf {
    /// The frame, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The frame, writable in place (for header rewrites such as TTL decrement or MAC swap).
    fn data_mut(&mut self) -> &mut [u8];
    /// Start loading the frame's first cache line; a no-op where buffers are already hot.
    #[inline]
    fn prefetch(&self) {}
}

/// A burst of packets: fixed capacity, lives on the worker's stack, never allocates.
pub type Burst<B> = arrayvec::ArrayVec<B, BURST>;

/// A set of ports as seen by one worker.
pub trait PacketIo {
    /// The buffer type of this backend.
    type Buf: PacketBuf;

    /// Number of ports this backend serves.
    fn port_count(&self) -> u16;

    /// Receive up to `BURST - out.len()` packets from `port`, appending them to `out`.
    /// Returns how many were appended.
    fn rx_burst(&mut self, port: PortId, out: &mut Burst<Self::Buf>) -> usize;

    /// Transmit the packets of `pkts` on `port`. Sent packets are removed from the front of `pkts`;
    /// those the port could not take stay in `pkts` for the caller to drop and count.
    /// Returns how many were sent.
    fn tx_burst(&mut self, port: PortId, pkts: &mut Burst<Self::Buf>) -> usize;

    /// A new buffer for transmission on `port` holding a copy of `frame`, for frames the
    /// gateway originates itself (routed mode: ARP and neighbour-discovery answers, echo
    /// replies, time-exceeded errors, solicitations). `None` when no buffer is available or
    /// `frame` does not fit one; the caller keeps the frame queued and tries again later.
    /// DPDK takes an mbuf from the port's pool (no heap allocation); the file and in-memory
    /// backends allocate a `Vec` (they are not the forwarding path).
    fn alloc_tx(&mut self, port: PortId, frame: &[u8]) -> Option<Self::Buf>;
}
