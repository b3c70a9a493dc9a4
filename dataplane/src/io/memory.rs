//! In-memory port backend for tests and benchmarks.
//!
//! Each port has an rx queue (frames to deliver) and a tx side. In *capture* mode transmitted
//! frames are kept per port for the test to inspect. In *ring* mode (like DPDK's `net_ring`)
//! a frame transmitted on port P is appended to the rx queue of P's peer, so a fixed set of
//! buffers circulates forever: once queue capacities are reserved, a steady-state loop
//! allocates nothing. A per-port tx limit simulates a full transmit queue.

use std::collections::VecDeque;

use super::{Burst, PacketBuf, PacketIo, PortId};

/// A heap buffer holding one frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VecBuf(pub Vec<u8>);

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.0
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

#[derive(Debug)]
struct Port {
    rx: VecDeque<VecBuf>,
    tx: Vec<VecBuf>,
    /// Ring mode: where transmitted frames go.
    ring_peer: Option<PortId>,
    /// Most frames accepted per tx call.
    tx_limit: usize,
}

/// The in-memory backend.
#[derive(Debug)]
pub struct MemoryIo {
    ports: Vec<Port>,
    /// Preallocated buffers [`PacketIo::alloc_tx`] hands out, like a mempool; `None`: it
    /// allocates a fresh `Vec` each time.
    tx_pool: Option<Vec<VecBuf>>,
}

impl MemoryIo {
    /// `port_count` ports in capture mode with empty queues.
    pub fn new(port_count: u16) -> Self {
        MemoryIo {
            ports: (0..port_count)
                .map(|_| Port {
                    rx: VecDeque::new(),
                    tx: Vec::new(),
                    ring_peer: None,
                    tx_limit: usize::MAX,
                })
                .collect(),
            tx_pool: None,
        }
    }

    /// Give [`PacketIo::alloc_tx`] a pool of `n` preallocated buffers of `room` bytes: it then
    /// allocates nothing and returns `None` once they are used up (an exhausted mempool;
    /// buffers are not returned). `n = 0` makes every allocation fail.
    pub fn set_tx_pool(&mut self, n: usize, room: usize) {
        self.tx_pool = Some((0..n).map(|_| VecBuf(Vec::with_capacity(room))).collect());
    }

    /// Queue up to `frames` received frames on `port` without reallocating.
    pub fn reserve_rx(&mut self, port: PortId, frames: usize) {
        let rx = &mut self.ports[usize::from(port)].rx;
        rx.reserve(frames.saturating_sub(rx.len()));
    }

    /// Also keep up to `frames` transmitted frames on `port` without reallocating (capture
    /// mode).
    pub fn reserve_tx(&mut self, port: PortId, frames: usize) {
        self.ports[usize::from(port)].tx.reserve(frames);
    }

    /// Ring mode on ports `a` and `b`: tx on one becomes rx on the other. Reserves rx capacity
    /// for `capacity` frames on both so that circulating that many frames never reallocates.
    pub fn ring(&mut self, a: PortId, b: PortId, capacity: usize) {
        for (p, peer) in [(a, b), (b, a)] {
            let port = &mut self.ports[usize::from(p)];
            port.ring_peer = Some(peer);
            port.rx.reserve(capacity.saturating_sub(port.rx.len()));
        }
    }

    /// Queue a frame for reception on `port`.
    pub fn push_rx(&mut self, port: PortId, frame: impl Into<Vec<u8>>) {
        self.ports[usize::from(port)]
            .rx
            .push_back(VecBuf(frame.into()));
    }

    /// Accept at most `limit` frames per tx call on `port` (the rest stay with the caller).
    pub fn set_tx_limit(&mut self, port: PortId, limit: usize) {
        self.ports[usize::from(port)].tx_limit = limit;
    }

    /// Frames captured on `port` so far (capture mode), removing them.
    pub fn take_tx(&mut self, port: PortId) -> Vec<Vec<u8>> {
        self.ports[usize::from(port)]
            .tx
            .drain(..)
            .map(|b| b.0)
            .collect()
    }

    /// Frames still waiting to be received on `port`.
    pub fn rx_pending(&self, port: PortId) -> usize {
        self.ports[usize::from(port)].rx.len()
    }
}

impl PacketIo for MemoryIo {
    type Buf = VecBuf;

    fn port_count(&self) -> u16 {
        self.ports.len() as u16
    }

    fn rx_burst(&mut self, port: PortId, out: &mut Burst<VecBuf>) -> usize {
        let Some(p) = self.ports.get_mut(usize::from(port)) else {
            return 0;
        };
        let mut n = 0;
        while !out.is_full() {
            let Some(buf) = p.rx.pop_front() else { break };
            out.push(buf);
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, port: PortId, pkts: &mut Burst<VecBuf>) -> usize {
        let Some(p) = self.ports.get(usize::from(port)) else {
            return 0;
        };
        let n = pkts.len().min(p.tx_limit);
        match p.ring_peer {
            Some(peer) if usize::from(peer) < self.ports.len() => {
                let rx = &mut self.ports[usize::from(peer)].rx;
                rx.extend(pkts.drain(..n));
            }
            _ => {
                let tx = &mut self.ports[usize::from(port)].tx;
                tx.extend(pkts.drain(..n));
            }
        }
        n
    }

    fn alloc_tx(&mut self, port: PortId, frame: &[u8]) -> Option<VecBuf> {
        if usize::from(port) >= self.ports.len() {
            return None;
        }
        match &mut self.tx_pool {
            None => Some(VecBuf(frame.to_vec())),
            Some(pool) => {
                let mut buf = pool.pop()?;
                if buf.0.capacity() < frame.len() {
                    // Too small for this frame: keep it for a smaller one (no allocation).
                    pool.push(buf);
                    return None;
                }
                buf.0.clear();
                buf.0.extend_from_slice(frame);
                Some(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_mode_and_tx_limit() {
        let mut io = MemoryIo::new(2);
        for i in 0..40u8 {
            io.push_rx(0, vec![i]);
        }
        let mut b = Burst::new();
        assert_eq!(io.rx_burst(0, &mut b), 32);
        assert_eq!(io.rx_pending(0), 8);
        io.set_tx_limit(1, 30);
        assert_eq!(io.tx_burst(1, &mut b), 30);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].data(), &[30]);
        let sent = io.take_tx(1);
        assert_eq!(sent.len(), 30);
        assert_eq!(sent[29], vec![29]);
    }

    #[test]
    fn ring_mode_feeds_peer() {
        let mut io = MemoryIo::new(2);
        io.ring(0, 1, 8);
        io.push_rx(0, vec![1]);
        let mut b = Burst::new();
        io.rx_burst(0, &mut b);
        assert_eq!(io.tx_burst(1, &mut b), 1);
        assert_eq!(io.rx_pending(0), 1, "tx on 1 is rx on its peer 0");
        assert!(io.take_tx(1).is_empty());
    }
}
