//! The worker's side of function-code conduits: which packets of an inspected flow are fed to
//! the stream state, where that state lives, and what a conduit's answer does to the packet.
//!
//! **Memory.** Only TCP flows need state across packets. It lives in a per-worker slab of
//! [`L7Inspector::capacity`] entries (64-byte [`L7State`] plus the next expected sequence
//! number per direction), allocated once; the flow entry holds only the slab index
//! ([`L7Slot::state`]). A TCP flow gets an entry at its SYN-ACK, which carries both initial
//! sequence numbers (its own, and the client's + 1 as its acknowledgement), so the stream knows
//! where each direction's bytes begin. The entry is freed at flow end or eviction
//! ([`L7Inspector::release`]); a SYN that reopens a closed connection frees it too (a new
//! connection is a new stream). When the slab is full the flow's payload fails closed under
//! `l7_unavailable` (monitor mode: forwarded, would-deny), counted in
//! [`L7FlowStats::slab_full`]. UDP datagrams are judged whole with a fresh state each (no slab
//! entry).
//!
//! **Ordering.** A TCP segment is fed only once and in order, from the initial sequence number
//! on: a segment wholly before the expected sequence number (a retransmission of inspected
//! bytes) is forwarded without being fed again; one that overlaps it is fed from the first new
//! byte; one beyond it (a gap: a segment was lost or reordered) is dropped under
//! `l7_unavailable` in enforce mode (the sender retransmits in order) and, in monitor mode,
//! forwarded and fed as if the missing bytes were lost (the stream may then read as malformed).
//! In enforce mode a payload-carrying segment must also carry a valid TCP checksum (otherwise a
//! corrupt segment could be inspected, dropped by the server, and its valid twin pass as a
//! "retransmission"), and a flow whose handshake the inspector did not see (it became inspected
//! by a policy change mid-connection, or the slab was full at its SYN-ACK) cannot tell where its
//! bytes begin: its payload fails closed under `l7_unavailable` and the client reconnects. In
//! monitor mode such a stream starts at its first payload. A denied segment does not move the
//! expected sequence number, so after a policy change its retransmission is judged again.
//!
//! **Verdicts.** An allowed message forwards. In enforce mode a deny drops the packet under
//! `l7_denied` or `l7_malformed` and blocks the TCP flow: its later payload-carrying packets,
//! including retransmissions of the denied write, are dropped under the same reason, while bare
//! ACK/FIN/RST segments still pass so that the connection can close. In monitor mode every deny
//! forwards and is counted as would-deny. A new rule table that decides the flow again resets a
//! blocked stream (the new policy judges the retransmission) and frees the state of a flow that
//! is no longer inspected.

use std::sync::Arc;

use septa_classifier::{Family, FlowKey, Mode};
use septa_l7::{DenyReason, L7Constraint, L7Proto, L7Verdict, Sender};

use super::{
    FunctionTally, L7_PUBLISH_US, L7Counters, L7State, SharedL7Counters, Side, Transport, identify,
};
use crate::counters::PublishTimer;
use crate::drop::DropReason;
use crate::flow::L7Slot;
use crate::parse::{Fragment, ParsedPacket};
use crate::worker::{Verdict, judge_l7};

const SEQ_KNOWN: [u8; 2] = [1 << 0, 1 << 1];
const BLOCKED_DENIED: u8 = 1 << 2;
const BLOCKED_MALFORMED: u8 = 1 << 3;
const REPORTED: u8 = 1 << 4;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// Payload-carrying packets [`identify_into`] looks at before giving up.
pub const IDENTIFY_TRIES: u8 = 4;

/// The state of one inspected TCP flow in the slab.
#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    state: L7State,
    next: [u32; 2],
    flags: u8,
}

/// Event counts of one worker's inspector (single writer; read between bursts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L7FlowStats {
    /// Payload-carrying packets fed to a conduit check.
    pub inspected: u64,
    /// Payload-carrying packets of an inspected TCP flow that found no free slab entry.
    pub slab_full: u64,
    /// TCP segments beyond the expected sequence number (dropped in enforce mode).
    pub out_of_order: u64,
    /// TCP segments wholly retransmitting inspected bytes (forwarded, not fed again).
    pub retransmitted: u64,
    /// Payload-carrying packets dropped because an earlier message blocked their flow.
    pub blocked: u64,
    /// Fragments of inspected flows (the check needs the whole segment or datagram).
    pub fragments: u64,
    /// Inspect decisions whose hook has no conduit in the running table.
    pub no_conduit: u64,
    /// Payload of an enforced TCP flow whose handshake was not seen (failed closed).
    pub unseeded: u64,
    /// Payload-carrying TCP segments of an enforced flow with a bad checksum (dropped).
    pub bad_checksum: u64,
}

/// What one packet of an inspected flow gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L7Judgement {
    /// Forward or drop (under `l7_denied`, `l7_malformed` or `l7_unavailable`).
    pub verdict: Verdict,
    /// Monitor mode: the reason enforcing would have dropped the packet under.
    pub would: Option<DropReason>,
    /// The conduit's refusal, when this packet's message was denied (or would have been).
    pub deny: Option<DenyReason>,
    /// The first refusal of this flow (record it; later ones of a monitored flow are counted
    /// only).
    pub first: bool,
}

const FORWARD: L7Judgement = L7Judgement {
    verdict: Verdict::Forward,
    would: None,
    deny: None,
    first: false,
};

/// No state or conduit to inspect with: fail closed (monitor: forward, would-deny).
fn unavailable(mode: Mode) -> L7Judgement {
    match mode {
        Mode::Enforce => L7Judgement {
            verdict: Verdict::Drop(DropReason::L7Unavailable),
            ..FORWARD
        },
        Mode::Monitor => L7Judgement {
            would: Some(DropReason::L7Unavailable),
            ..FORWARD
        },
    }
}

/// One worker's function-code conduit state: the stream slab, the L7 counters and the stats.
/// Allocated once ([`L7Inspector::new`]); nothing after that allocates.
#[derive(Debug)]
pub struct L7Inspector {
    slab: Box<[Stream]>,
    free: Box<[u32]>,
    free_len: usize,
    counters: Box<L7Counters>,
    stats: L7FlowStats,
    /// Where [`Self::publish`] stores the counters for other threads.
    shared: Arc<SharedL7Counters>,
    publish_timer: PublishTimer,
}

impl L7Inspector {
    /// An inspector for at most `capacity` inspected TCP flows at once (`64 + 12` bytes each,
    /// plus the 64 KiB of [`L7Counters`] and as much for their published copy).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(u32::MAX as usize - 1);
        L7Inspector {
            slab: vec![Stream::default(); capacity].into_boxed_slice(),
            // Popped from the end: lowest index first.
            free: (0..capacity as u32).rev().collect(),
            free_len: capacity,
            counters: L7Counters::boxed(),
            stats: L7FlowStats::default(),
            shared: Arc::default(),
            publish_timer: PublishTimer::default(),
        }
    }

    /// The counters as other threads read them (published by [`Self::publish`]).
    pub fn shared_counters(&self) -> Arc<SharedL7Counters> {
        Arc::clone(&self.shared)
    }

    /// Stores the counters into [`Self::shared_counters`] when [`L7_PUBLISH_US`] have passed
    /// since the last time (the worker calls it between polls: one comparison when not due).
    #[inline]
    pub fn publish(&mut self, now: u64) {
        if self.publish_timer.due(now, L7_PUBLISH_US) {
            self.shared.store(&self.counters);
        }
    }

    /// [`Self::publish`] now, due or not (at stop: the counts of the last interval too).
    pub fn publish_now(&mut self, now: u64) {
        self.publish_timer.force();
        self.publish(now);
    }

    /// Most TCP flows inspected at once.
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }

    /// TCP flows holding a slab entry now.
    pub fn active(&self) -> usize {
        self.slab.len() - self.free_len
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slab)
            + std::mem::size_of_val(&*self.free)
            + std::mem::size_of::<L7Counters>()
            + self.shared.memory_bytes()
    }

    /// Messages, denies and malformed messages per protocol and function.
    pub fn counters(&self) -> &L7Counters {
        &self.counters
    }

    /// Event counts.
    pub fn stats(&self) -> &L7FlowStats {
        &self.stats
    }

    /// The flow's slab entry goes back to the free list (flow end, reopen, no longer
    /// inspected). Clears `slot.state`.
    #[inline]
    pub fn release(&mut self, slot: &mut L7Slot) {
        if slot.state != 0 {
            self.free_slab(slot.state);
            slot.state = 0;
        }
    }

    /// [`Self::release`] for an entry that is going away (the caller only has it by reference).
    #[inline]
    pub fn release_ended(&mut self, slot: L7Slot) {
        if slot.state != 0 {
            self.free_slab(slot.state);
        }
    }

    /// Takes a free slab entry for `slot` (the caller checked one is free).
    fn alloc(&mut self, slot: &mut L7Slot, conduit: &L7Constraint) {
        self.free_len -= 1;
        let i = self.free[self.free_len];
        self.slab[i as usize] = Stream {
            state: L7State::new(conduit.proto),
            ..Stream::default()
        };
        slot.state = i + 1;
    }

    /// A SYN-ACK from `side`: its sequence number + 1 is where that side's bytes begin, its
    /// acknowledgement where the other side's begin. No free entry: the flow's payload finds
    /// none either and is counted there.
    fn seed(
        &mut self,
        slot: &mut L7Slot,
        conduit: &L7Constraint,
        side: Side,
        pkt: &ParsedPacket,
        frame: &[u8],
    ) {
        let (Some(seq), Some(ack)) = (tcp_seq(pkt, frame), tcp_ack(pkt, frame)) else {
            return;
        };
        if self.free_len == 0 {
            return;
        }
        self.alloc(slot, conduit);
        let s = &mut self.slab[(slot.state - 1) as usize];
        let own = side as usize;
        s.next[own] = seq.wrapping_add(1);
        s.next[1 - own] = ack;
        s.flags |= SEQ_KNOWN[0] | SEQ_KNOWN[1];
    }

    fn free_slab(&mut self, state: u32) {
        let i = state - 1;
        debug_assert!(self.free_len < self.free.len(), "slab entry freed twice");
        if (i as usize) < self.slab.len() && self.free_len < self.free.len() {
            self.free[self.free_len] = i;
            self.free_len += 1;
        }
    }

    /// A rule table decided the flow again (a new epoch): `conduit` is its new function-code
    /// conduit (`None`: no longer inspected). A flow that stays inspected as the same protocol
    /// keeps its stream (so framing survives a policy change), unless it was blocked: the new
    /// policy then judges it from a fresh state.
    #[inline]
    pub fn reclassified(&mut self, slot: &mut L7Slot, conduit: Option<&L7Constraint>) {
        if slot.state == 0 {
            return;
        }
        let Some(c) = conduit else {
            return self.release(slot);
        };
        let s = &mut self.slab[(slot.state - 1) as usize];
        if s.state.proto() != c.proto || s.flags & (BLOCKED_DENIED | BLOCKED_MALFORMED) != 0 {
            // The sequence bookkeeping stays: where each direction's uninspected bytes begin
            // does not depend on the policy.
            *s = Stream {
                state: L7State::new(c.proto),
                next: s.next,
                flags: s.flags & (SEQ_KNOWN[0] | SEQ_KNOWN[1]),
            };
        }
    }

    /// One packet of a flow whose rule-table decision inspects it with `conduit` (`None`: the
    /// hook has no conduit in the running table) in `mode`. `orig` is the flow's original key;
    /// `slot` its entry's slot (`None` for a first packet not admitted yet: UDP only needs none,
    /// and a TCP opening SYN carries no payload).
    #[inline]
    pub fn packet(
        &mut self,
        slot: Option<&mut L7Slot>,
        conduit: Option<&L7Constraint>,
        mode: Mode,
        orig: &FlowKey,
        pkt: &ParsedPacket,
        frame: &[u8],
    ) -> L7Judgement {
        self.packet_tallied(slot, conduit, mode, orig, pkt, frame, None)
    }

    /// [`Self::packet`], also counting the request messages it inspects (allowed or denied)
    /// by function class into `tally` (the worker passes one for flows the ML sampler follows).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn packet_tallied(
        &mut self,
        slot: Option<&mut L7Slot>,
        conduit: Option<&L7Constraint>,
        mode: Mode,
        orig: &FlowKey,
        pkt: &ParsedPacket,
        frame: &[u8],
        tally: Option<&mut FunctionTally>,
    ) -> L7Judgement {
        if pkt.key.proto != orig.proto {
            // An ICMP error about the flow: not a message of the stream.
            return FORWARD;
        }
        let tcp = match pkt.key.proto {
            6 => true,
            17 => false,
            // Only TCP and UDP carry conduit protocols; anything else cannot be inspected.
            _ => return unavailable(mode),
        };
        let Some(conduit) = conduit else {
            self.stats.no_conduit += 1;
            return unavailable(mode);
        };
        let mut slot = slot;
        let syn = tcp && pkt.tcp_flags.0 & TCP_SYN != 0;
        if syn && let Some(s) = slot.as_deref_mut() {
            // A (re)opening SYN starts a new stream; a SYN-ACK names where both directions'
            // bytes begin.
            self.release(s);
            if pkt.tcp_flags.0 & TCP_ACK != 0 {
                self.seed(s, conduit, side_of(orig, pkt), pkt, frame);
            }
        }
        let payload = payload(pkt, frame);
        if tcp
            && let Some(s) = slot.as_deref()
            && s.state != 0
        {
            let flags = self.slab[(s.state - 1) as usize].flags;
            if flags & (BLOCKED_DENIED | BLOCKED_MALFORMED) != 0 && !payload.is_empty() {
                self.stats.blocked += 1;
                let r = if flags & BLOCKED_MALFORMED != 0 {
                    DropReason::L7Malformed
                } else {
                    DropReason::L7Denied
                };
                return L7Judgement {
                    verdict: Verdict::Drop(r),
                    ..FORWARD
                };
            }
        }
        if payload.is_empty() {
            return FORWARD; // handshakes, bare acknowledgements, FIN/RST
        }
        if pkt.fragment != Fragment::None {
            self.stats.fragments += 1;
            return unavailable(mode);
        }
        let side = side_of(orig, pkt);
        let sender = Sender {
            v6: pkt.key.family == Family::V6,
            addr: pkt.key.src,
        };
        if let Some(s) = slot.as_deref_mut()
            && s.proto == 0
        {
            s.proto = conduit.proto as u8;
        }
        if !tcp {
            self.stats.inspected += 1;
            let mut st = L7State::new(conduit.proto);
            let v = st.inspect_tallied(
                side,
                Transport::Udp,
                payload,
                conduit,
                sender,
                &mut self.counters,
                tally,
            );
            return judged(mode, v, true);
        }
        let Some(slot) = slot else {
            // Cannot happen: conntrack opens TCP flows only with a SYN, which carries no payload.
            return unavailable(mode);
        };
        if slot.state == 0 {
            if self.free_len == 0 {
                self.stats.slab_full += 1;
                return unavailable(mode);
            }
            if mode == Mode::Enforce {
                // Without the handshake, bytes before this segment may have gone uninspected.
                self.stats.unseeded += 1;
                return unavailable(mode);
            }
            self.alloc(slot, conduit);
        }
        if mode == Mode::Enforce && !tcp_checksum_ok(pkt, frame) {
            self.stats.bad_checksum += 1;
            return unavailable(mode);
        }
        let Some(seq) = tcp_seq(pkt, frame).map(|q| q.wrapping_add(u32::from(syn))) else {
            return unavailable(mode);
        };
        let s = &mut self.slab[(slot.state - 1) as usize];
        let d = side as usize;
        if mode == Mode::Enforce && s.flags & SEQ_KNOWN[d] == 0 {
            self.stats.unseeded += 1;
            return unavailable(mode);
        }
        let len = payload.len() as u32;
        let before = s.next[d];
        let data = if s.flags & SEQ_KNOWN[d] == 0 {
            s.flags |= SEQ_KNOWN[d];
            s.next[d] = seq.wrapping_add(len);
            payload
        } else {
            let ahead = seq.wrapping_sub(s.next[d]) as i32;
            if ahead > 0 {
                self.stats.out_of_order += 1;
                if mode == Mode::Enforce {
                    return unavailable(mode);
                }
                s.next[d] = seq.wrapping_add(len);
                payload
            } else {
                let seen = ahead.unsigned_abs() as usize;
                if seen >= payload.len() {
                    self.stats.retransmitted += 1;
                    return FORWARD;
                }
                s.next[d] = seq.wrapping_add(len);
                &payload[seen..]
            }
        };
        self.stats.inspected += 1;
        let v = s.state.inspect_tallied(
            side,
            Transport::Tcp,
            data,
            conduit,
            sender,
            &mut self.counters,
            tally,
        );
        let first = s.flags & REPORTED == 0;
        if let L7Verdict::Deny(r) = v {
            s.flags |= REPORTED;
            if mode == Mode::Enforce {
                // Dropped, so not delivered: a retransmission after a policy change is judged
                // again from here.
                s.next[d] = before;
                s.flags |= if matches!(r, DenyReason::Malformed { .. }) {
                    BLOCKED_MALFORMED
                } else {
                    BLOCKED_DENIED
                };
            }
        }
        judged(mode, v, first)
    }
}

/// Names the flow's protocol from this packet's payload into `slot.proto`, for flow records
/// and features: at most [`IDENTIFY_TRIES`] payload-carrying packets are looked at; the
/// well-known port decides when no signature matches. `orig` is the flow's original key.
#[inline]
pub fn identify_into(slot: &mut L7Slot, orig: &FlowKey, pkt: &ParsedPacket, frame: &[u8]) {
    if slot.proto != 0 || slot.tries >= IDENTIFY_TRIES {
        return;
    }
    let transport = match pkt.key.proto {
        6 => Transport::Tcp,
        17 => Transport::Udp,
        _ => return,
    };
    let payload = payload(pkt, frame);
    if payload.is_empty() || pkt.key.proto != orig.proto {
        return;
    }
    slot.tries += 1;
    let side = side_of(orig, pkt);
    let ports = (pkt.key.sport, pkt.key.dport);
    let p = identify(side, transport, ports, payload);
    if p != L7Proto::Unknown {
        slot.proto = p as u8;
    }
}

fn judged(mode: Mode, v: L7Verdict, first: bool) -> L7Judgement {
    let (verdict, would) = judge_l7(mode, &v);
    match v {
        L7Verdict::Allow => FORWARD,
        L7Verdict::Deny(r) => L7Judgement {
            verdict,
            would,
            deny: Some(r),
            first,
        },
    }
}

/// The transport payload of an IP packet (empty when there is none).
#[inline]
fn payload<'a>(pkt: &ParsedPacket, frame: &'a [u8]) -> &'a [u8] {
    match pkt.payload_offset {
        Some(o) if o < pkt.l3_end && pkt.l3_end <= frame.len() => &frame[o..pkt.l3_end],
        _ => &[],
    }
}

/// Which end sent the packet: the client opened the flow `orig`.
#[inline]
fn side_of(orig: &FlowKey, pkt: &ParsedPacket) -> Side {
    if pkt.key.src == orig.src && pkt.key.sport == orig.sport {
        Side::Client
    } else {
        Side::Server
    }
}

/// The TCP sequence number of a parsed TCP packet.
#[inline]
fn tcp_seq(pkt: &ParsedPacket, frame: &[u8]) -> Option<u32> {
    tcp_word(pkt, frame, 4)
}

/// The TCP acknowledgement number of a parsed TCP packet.
#[inline]
fn tcp_ack(pkt: &ParsedPacket, frame: &[u8]) -> Option<u32> {
    tcp_word(pkt, frame, 8)
}

fn tcp_word(pkt: &ParsedPacket, frame: &[u8], at: usize) -> Option<u32> {
    let o = pkt.l4_offset?;
    let b = frame.get(o + at..o + at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether a TCP segment's checksum verifies (inspected flows only: a few packets per second
/// on an industrial conduit, not the forwarding path).
fn tcp_checksum_ok(pkt: &ParsedPacket, frame: &[u8]) -> bool {
    use core::net::{Ipv4Addr, Ipv6Addr};
    use smoltcp::wire::{IpAddress, TcpPacket};
    let Some(segment) = pkt.l4_offset.and_then(|o| frame.get(o..pkt.l3_end)) else {
        return false;
    };
    let Ok(tcp) = TcpPacket::new_checked(segment) else {
        return false;
    };
    let (src, dst) = match pkt.key.family {
        // IPv4 addresses are kept in the low 32 bits of the key.
        Family::V4 => (
            IpAddress::Ipv4(Ipv4Addr::from(pkt.key.src as u32)),
            IpAddress::Ipv4(Ipv4Addr::from(pkt.key.dst as u32)),
        ),
        Family::V6 => (
            IpAddress::Ipv6(Ipv6Addr::from(pkt.key.src)),
            IpAddress::Ipv6(Ipv6Addr::from(pkt.key.dst)),
        ),
    };
    tcp.verify_checksum(&src, &dst)
}
