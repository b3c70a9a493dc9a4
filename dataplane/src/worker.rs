//! The worker poll loop: rx burst → parse → decide → tx burst to the bridge peer.
//!
//! A worker owns its counters (single writer) and its bridge pairing, and is generic over the
//! port backend and the observer, so each combination is monomorphised: the DPDK path with the
//! `()` observer carries no `dyn` call and no observer cost. Per packet it allocates nothing,
//! takes no lock and logs nothing; every packet it receives is either handed to a tx burst or
//! dropped and counted under one [`DropReason`].
//!
//! Bridge mode is a bump in the wire: a packet received on one port of a pair leaves on the
//! other, unmodified. The policy is applied in exactly one place, [`Decision::decide`], so the
//! classifier can replace the placeholder without touching the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::counters::WorkerCounters;
use crate::drop::DropReason;
use crate::error::BridgeError;
use crate::io::{Burst, PacketBuf, PacketIo, PortId};
use crate::parse::{L3, ParsedPacket, parse};

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Send it out on the peer port.
    Forward,
    /// Drop it, counted under this reason.
    Drop(DropReason),
}

/// Placeholder policy until the classifier's rule tables arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decision {
    /// Forward everything that parses.
    #[default]
    AllowAll,
    /// Drop every IP packet and every non-IP frame except ARP, under `policy`.
    ///
    /// ARP passes so that hosts on both sides keep resolving each other: dropping it would
    /// break L2 adjacency across the bridge and turn a policy into an outage of everything,
    /// including what a later allow rule would permit. Other non-IP ethertypes are dropped
    /// (fail closed), since PPPoE, MPLS or unknown tunnels could carry IP past the policy.
    DenyAll,
}

impl Decision {
    /// The verdict for one parsed packet (whose `key.in_port` is set).
    #[inline]
    pub fn decide(&self, pkt: &ParsedPacket) -> Verdict {
        match (self, pkt.l3) {
            (Decision::AllowAll, _) => Verdict::Forward,
            (Decision::DenyAll, L3::Arp) => Verdict::Forward,
            (Decision::DenyAll, _) => Verdict::Drop(DropReason::Policy),
        }
    }
}

/// Sees every packet a worker handles. The `()` implementation does nothing and compiles away.
pub trait Observer {
    /// Called once per received packet with its parse result (`None` if parsing failed) and
    /// the verdict. A forwarded packet may still be dropped as `tx_full`, reported through
    /// [`Observer::tx_failed`].
    fn packet(&mut self, port: PortId, len: usize, parsed: Option<&ParsedPacket>, verdict: Verdict);

    /// `frames` forwarded packets that `port` did not accept.
    fn tx_failed(&mut self, _port: PortId, _frames: usize) {}
}

impl Observer for () {
    #[inline(always)]
    fn packet(&mut self, _: PortId, _: usize, _: Option<&ParsedPacket>, _: Verdict) {}
}

/// Which port forwards to which: pairs of ports, each direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    peer: Vec<Option<PortId>>,
}

impl Bridge {
    /// A bridge over `port_count` ports with the given pairs. Ports in no pair drop what they
    /// receive (`no_peer_port`).
    pub fn new(port_count: u16, pairs: &[(PortId, PortId)]) -> Result<Self, BridgeError> {
        let mut peer = vec![None; usize::from(port_count)];
        for &(a, b) in pairs {
            if a == b {
                return Err(BridgeError::SelfPair(a));
            }
            for p in [a, b] {
                if p >= port_count {
                    return Err(BridgeError::NoSuchPort {
                        port: p,
                        count: port_count,
                    });
                }
                if peer[usize::from(p)].is_some() {
                    return Err(BridgeError::Duplicate(p));
                }
            }
            peer[usize::from(a)] = Some(b);
            peer[usize::from(b)] = Some(a);
        }
        Ok(Bridge { peer })
    }

    /// Ports 0↔1, 2↔3, ... (an odd last port stays unpaired).
    pub fn consecutive_pairs(port_count: u16) -> Self {
        let pairs: Vec<_> = (0..port_count / 2).map(|i| (2 * i, 2 * i + 1)).collect();
        Self::new(port_count, &pairs)
            .unwrap_or_else(|_| unreachable!("consecutive pairs are valid"))
    }

    /// Number of ports.
    pub fn port_count(&self) -> u16 {
        self.peer.len() as u16
    }

    /// The port that `port` forwards to.
    #[inline]
    pub fn peer(&self, port: PortId) -> Option<PortId> {
        self.peer.get(usize::from(port)).copied().flatten()
    }
}

/// One poll-loop worker.
#[derive(Debug)]
pub struct Worker {
    counters: Arc<WorkerCounters>,
    bridge: Bridge,
    decision: Decision,
}

impl Worker {
    /// A worker forwarding across `bridge` under `decision`, with fresh counters.
    pub fn new(bridge: Bridge, decision: Decision) -> Self {
        Worker {
            counters: Arc::new(WorkerCounters::new(bridge.port_count())),
            bridge,
            decision,
        }
    }

    /// The worker's counters; clone the `Arc` to read them from a stats thread.
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    /// Replace the decision (between polls).
    pub fn set_decision(&mut self, decision: Decision) {
        self.decision = decision;
    }

    /// Receive one burst on every port of the bridge, process it and transmit to the peers.
    /// Returns the number of packets received.
    pub fn poll<IO: PacketIo, O: Observer>(&mut self, io: &mut IO, obs: &mut O) -> usize {
        let mut received = 0;
        for port in 0..self.bridge.port_count() {
            let mut rx: Burst<IO::Buf> = Burst::new();
            if io.rx_burst(port, &mut rx) == 0 {
                continue;
            }
            let received_here = rx.len();
            received += received_here;
            let peer = self.bridge.peer(port);
            let mut tx: Burst<IO::Buf> = Burst::new();
            let (mut rx_bytes, mut tx_bytes) = (0, 0);
            for pkt in &rx {
                pkt.prefetch();
            }
            for pkt in rx.drain(..) {
                rx_bytes += pkt.data().len();
                let verdict = self.classify(port, peer, pkt.data(), obs);
                match verdict {
                    Verdict::Forward => {
                        tx_bytes += pkt.data().len();
                        tx.push(pkt);
                    }
                    Verdict::Drop(reason) => self.counters.dropped(reason, 1),
                }
            }
            self.counters.rx(port, received_here, rx_bytes);
            if let Some(peer) = peer.filter(|_| !tx.is_empty()) {
                let sent = io.tx_burst(peer, &mut tx);
                let unsent_bytes: usize = tx.iter().map(|p| p.data().len()).sum();
                self.counters.tx(peer, sent, tx_bytes - unsent_bytes);
                if !tx.is_empty() {
                    self.counters.dropped(DropReason::TxFull, tx.len());
                    obs.tx_failed(peer, tx.len());
                    tx.clear();
                }
            }
        }
        received
    }

    #[inline]
    fn classify<O: Observer>(
        &self,
        port: PortId,
        peer: Option<PortId>,
        frame: &[u8],
        obs: &mut O,
    ) -> Verdict {
        let mut parsed = match parse(frame) {
            Ok(p) => p,
            Err(reason) => {
                let v = Verdict::Drop(reason);
                obs.packet(port, frame.len(), None, v);
                return v;
            }
        };
        parsed.key.in_port = port;
        let verdict = match peer {
            // The single policy call site.
            Some(_) => self.decision.decide(&parsed),
            None => Verdict::Drop(DropReason::NoPeerPort),
        };
        if verdict == Verdict::Forward && !parsed.is_ip() {
            self.counters.non_ip();
        }
        obs.packet(port, frame.len(), Some(&parsed), verdict);
        verdict
    }

    /// Poll until `stop` is set (checked between polls).
    pub fn run<IO: PacketIo>(&mut self, io: &mut IO, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if self.poll(io, &mut ()) == 0 {
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests;
