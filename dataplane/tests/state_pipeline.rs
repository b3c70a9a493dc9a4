//! The per-packet sequence the worker is meant to run over the state modules (see
//! docs/dataplane-state.md), with a toy policy in place of the classifier: allow TCP to port 80
//! and UDP to port 514, deny the rest. Shows that a denied first packet takes no flow slot, that
//! replies and related ICMP errors follow the flow's cached decision, that a stale epoch is
//! noticed, and that fragments follow their head's verdict.

use std::net::Ipv4Addr;

use septa_dataplane::DropReason;
use septa_dataplane::conntrack::{self, Begun, Conn};
use septa_dataplane::flow::{CachedDecision, Direction, FlowTable, FlowTableConfig};
use septa_dataplane::frag::{FragConfig, FragTable, fragment_info};
use septa_dataplane::parse::{Fragment, ParsedPacket, TcpFlags, parse};
use septa_dataplane::testgen::FrameBuilder;

const ALLOW: u8 = 1;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);

/// The toy classifier.
fn classify(pkt: &ParsedPacket, epoch: u64) -> CachedDecision {
    let allowed = matches!((pkt.key.proto, pkt.key.dport), (6, 80) | (17, 514));
    CachedDecision {
        epoch,
        rule: if allowed { 1 } else { u32::MAX },
        action: u8::from(allowed),
        ..CachedDecision::default()
    }
}

struct Worker {
    flows: FlowTable<Conn>,
    frags: FragTable<u8>,
    epoch: u64,
    reclassified: u32,
}

impl Worker {
    /// The verdict for one frame: `Ok(())` forward, `Err(reason)` drop.
    fn packet(&mut self, frame: &[u8], now: u64) -> Result<(), DropReason> {
        let pkt = parse(frame)?;
        if pkt.fragment == Fragment::NonFirst {
            let info = fragment_info(&pkt, frame).ok_or(DropReason::MalformedL4)?;
            let (_, action) = self.frags.follow(&pkt, &info, now)?;
            return if action == ALLOW {
                Ok(())
            } else {
                Err(DropReason::Policy)
            };
        }
        let action = match conntrack::begin(&mut self.flows, &pkt, frame, now)? {
            Begun::Tracked { id, .. } | Begun::Related { id, .. } => {
                let e = self.flows.entry_mut(id);
                if !e.decision.is_current(self.epoch) {
                    // Stale or never classified: reclassify with the flow's originating key.
                    let orig = e.key();
                    let fake = ParsedPacket { key: orig, ..pkt };
                    e.decision = classify(&fake, self.epoch);
                    self.reclassified += 1;
                }
                e.decision.action
            }
            Begun::New(new) => {
                let d = classify(&pkt, self.epoch);
                // A denied flow takes no slot (a denied first fragment is still recorded
                // below, so its tail is counted under the policy too).
                if d.action == ALLOW {
                    let id = conntrack::commit(&mut self.flows, new, now)?;
                    self.flows.entry_mut(id).decision = d;
                }
                d.action
            }
            Begun::Untracked => classify(&pkt, self.epoch).action,
        };
        if pkt.fragment == Fragment::First {
            let info = fragment_info(&pkt, frame).ok_or(DropReason::MalformedL4)?;
            self.frags.head(&pkt, &info, pkt.key, action, now)?;
        }
        if action == ALLOW {
            Ok(())
        } else {
            Err(DropReason::Policy)
        }
    }
}

/// A TCP frame with real sequence and acknowledgement numbers (the builder writes its frame
/// sequence number as TCP seq and 0 as ack; both are patched; nothing verifies the checksum).
fn tcp(from_client: bool, flags: u8, seq: u32, ack: u32, dport: u16) -> Vec<u8> {
    let b = FrameBuilder::new();
    let b = if from_client {
        b.ipv4(CLIENT, SERVER).tcp(40000, dport, flags)
    } else {
        b.ipv4(SERVER, CLIENT).tcp(dport, 40000, flags)
    };
    let mut f = b.build();
    // SYNs from the builder carry 12 payload bytes (its sequence marker): count them.
    f[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&seq.to_be_bytes());
    f[14 + 20 + 8..14 + 20 + 12].copy_from_slice(&ack.to_be_bytes());
    f
}

#[test]
fn worker_sequence_over_the_state_modules() {
    let mut w = Worker {
        flows: FlowTable::new(&FlowTableConfig::new(64, 1000), [1, 2]).unwrap(),
        frags: FragTable::new(&FragConfig::new(8, 1000), [3, 4]).unwrap(),
        epoch: 1,
        reclassified: 0,
    };
    let (syn, ack, psh) = (TcpFlags::SYN, TcpFlags::ACK, TcpFlags::PSH);
    // Denied SYN: no flow slot taken.
    assert_eq!(
        w.packet(&tcp(true, syn, 100, 0, 22), 1),
        Err(DropReason::Policy)
    );
    assert!(w.flows.is_empty());
    // Allowed handshake (each builder segment carries 12 payload bytes).
    assert_eq!(w.packet(&tcp(true, syn, 100, 0, 80), 2), Ok(()));
    assert_eq!(w.packet(&tcp(false, syn | ack, 700, 113, 80), 3), Ok(()));
    assert_eq!(w.packet(&tcp(true, ack, 113, 713, 80), 4), Ok(()));
    assert_eq!(w.flows.half_open_len(), 0);
    // A spoofed reset outside the window.
    assert_eq!(
        w.packet(&tcp(false, TcpFlags::RST, 9_000_000, 0, 80), 5),
        Err(DropReason::TcpOutOfWindow)
    );
    // A policy publish: the next packet of the flow is reclassified once.
    w.epoch = 2;
    assert_eq!(w.packet(&tcp(false, psh | ack, 713, 125, 80), 6), Ok(()));
    assert_eq!(w.packet(&tcp(true, psh | ack, 125, 725, 80), 7), Ok(()));
    assert_eq!(w.reclassified, 1);
    // Fragmented UDP to an allowed port: the tail follows the head.
    let frag = |off, more, len| {
        FrameBuilder::new()
            .ipv4(CLIENT, SERVER)
            .udp(5000, 514)
            .seq(77)
            .fragment(off, more)
            .payload_len(len)
            .build()
    };
    assert_eq!(w.packet(&frag(0, true, 64), 8), Ok(()));
    assert_eq!(w.packet(&frag(72, false, 30), 9), Ok(()));
    assert_eq!(
        w.packet(&frag(72, false, 30), 10),
        Err(DropReason::FragmentNoHead)
    );
    // Denied fragmented datagram: head and tail dropped under the policy.
    let denied = |off, more, len| {
        FrameBuilder::new()
            .ipv4(CLIENT, SERVER)
            .udp(5000, 515)
            .seq(78)
            .fragment(off, more)
            .payload_len(len)
            .build()
    };
    assert_eq!(w.packet(&denied(0, true, 64), 11), Err(DropReason::Policy));
    assert_eq!(
        w.packet(&denied(72, false, 30), 12),
        Err(DropReason::Policy)
    );
    // The flow's counters saw both directions.
    let key = parse(&tcp(true, ack, 0, 0, 80)).unwrap().key;
    if let septa_dataplane::flow::Lookup::Hit { id, .. } = w.flows.lookup(&key) {
        let e = w.flows.entry(id);
        assert_eq!(e.packets(Direction::Original), 3);
        assert_eq!(e.packets(Direction::Reply), 2);
    } else {
        panic!("flow gone");
    }
}
