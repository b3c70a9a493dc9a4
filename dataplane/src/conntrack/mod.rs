//! Connection tracking: the TCP state machine with sequence-window checks, UDP/ICMP/other
//! pseudo-state, and the relation of ICMP errors to tracked flows.
//!
//! **What it is.** Pure functions and small `Copy` state ([`Conn`], 40 bytes) stored in the
//! per-core [`FlowTable`]. [`begin`] takes a parsed packet and either advances the state of its
//! flow, prepares a new flow for the caller to [`commit`] once policy allows it, reports an ICMP
//! error as related to a flow, or says the packet is not tracked (non-IP, non-first fragment).
//! Every refusal is a [`DropReason`].
//!
//! **What it never does.** No allocation, no clock (the caller's `now` tick), no logging, no
//! buffering or reordering of segments, no payload inspection, no checksum verification, no
//! NAT/sequence rewriting, no mid-stream pickup.
//!
//! **Invariants.** A flow exists only after an opening packet (TCP: a plain SYN; ICMP: an echo
//! request or a non-echo, non-error message; UDP/other: any packet). A refused packet leaves
//! the flow's state untouched. Flows become non-evictable ("established") when the TCP
//! handshake completes, or when a UDP/ICMP/other flow sees a reply.
//!
//! **TCP, compared with nftables/Linux conntrack** (`nf_conntrack_proto_tcp.c`, with
//! `nf_conntrack_tcp_loose = 0`, `tcp_be_liberal = 0`):
//! * *Flags*: the same valid-combination table as `tcp_valid_flags` (PSH/ECE/CWR ignored; SYN,
//!   SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK, ACK+URG); anything else is
//!   `tcp_invalid_flags`, before any state lookup.
//! * *No pickup*: a non-SYN packet without a flow is `tcp_no_flow` (Linux with `loose = 0`
//!   marks it INVALID too). Data or a bare ACK before the handshake completes is
//!   `tcp_invalid_state`.
//! * *States*: SYN_SENT, SYN_SENT2 (simultaneous open: a SYN answered by a SYN, then a SYN-ACK
//!   from either side), SYN_RECV, ESTABLISHED, FIN_WAIT (first FIN), CLOSE_WAIT (first FIN
//!   acknowledged), LAST_ACK (second FIN), TIME_WAIT (second FIN acknowledged), CLOSE (RST).
//!   Stricter than Linux: the SYN-ACK must acknowledge exactly ISN+1 of the SYN (Linux flags a
//!   wrong one only through the window check); a SYN or SYN-ACK on an open or closing
//!   connection is dropped as `tcp_invalid_state` (Linux lets it through unchanged so the end
//!   host can answer with a challenge ACK), except an exact retransmission of the handshake's
//!   SYN or SYN-ACK. *SYN after FIN*: while the close is in progress (FIN_WAIT, CLOSE_WAIT,
//!   LAST_ACK) a SYN is `tcp_invalid_state`; once closed (TIME_WAIT, CLOSE) an originator's
//!   SYN reopens the flow as a new connection (as Linux does), reported as `reopened`.
//! * *Window* ([`tcp::TcpPeer`] per side: `end`, `maxend`, `maxwin`, `scale`, as Linux's
//!   `td_end`, `td_maxend`, `td_maxwin`, `td_scale`). For a segment from S to R with
//!   `end = seq + len (+1 for SYN, +1 for FIN)` and `ack` (R.end when ACK is absent), it passes
//!   iff, in wrapping sequence arithmetic:
//!   1. `seq <= S.maxend` (not beyond what R's ACK + window allowed),
//!   2. `end >= S.end - R.maxwin` (not older than one maximum window),
//!   3. `ack <= R.end` (does not acknowledge data R never sent), and
//!   4. `ack >= R.end - max(S.maxwin, 66000)`;
//!
//!   3 and 4 are skipped while R has sent nothing (SYN_SENT). A segment without data, SYN or
//!   FIN (a pure ACK, not a RST) has its `seq` and `end` taken as `S.end`, so only its ACK is
//!   really checked, as in Linux. This is Linux's `tcp_in_window` test, except that SACK
//!   blocks are not read (so check 4 uses the cumulative ACK: slightly stricter for SACK-heavy
//!   paths with very old ACKs). Window scaling is taken from the SYNs' options and applied only
//!   when both sides offered it (RFC 7323). A failure is `tcp_out_of_window`; nothing is
//!   updated. Not modelled: Linux's shorter timeouts for retransmitting or unacknowledged
//!   connections (`timeout_max_retrans`, `timeout_unacknowledged`) and its "ignore" path that
//!   lets an unexpected SYN through to resynchronise.
//! * *RST*: must pass checks 1–2 (its `seq` inside `[S.end - R.maxwin, S.maxend]`), and 3–4
//!   when it carries an ACK. In SYN_SENT a RST from the responder is accepted iff it
//!   acknowledges ISN+1 (RFC 9293), whatever its seq. RFC 5961's exact-match rule is left to
//!   the end host. An out-of-window RST is `tcp_out_of_window`.
//! * A TCP segment split over IP fragments has an unknown length: it is assumed to extend to
//!   `S.maxend`, so the ACK that covers it later passes check 3.
//!
//! **UDP, ICMP and other protocols** have pseudo-state: a flow is "new" until a packet travels
//! in the reply direction, which makes it established (UDP: the longer `udp_stream` timeout).
//! ICMP echo request and reply meet in one flow keyed by the echo identifier (`sport = dport =
//! id`); an echo reply with no flow is `icmp_no_flow`. ICMP errors are never flows: the header
//! they embed is parsed by [`icmp_error_relation`] and looked up; related errors pass with the
//! flow (path-MTU discovery, traceroute), unrelated ones are `icmp_error_unrelated`.

mod icmp;
mod tcp;

#[cfg(test)]
mod tests;

use septa_classifier::FlowKey;

use crate::drop::DropReason;
use crate::flow::{
    Direction, FlowId, FlowTable, HashedKey, L7Slot, Located, Refresh, TimeoutClass, Vacant,
};

/// A TCP connection that just closed, as [`advance_found`]'s `on_close` sees it: its flow and
/// new state, and its counters with the closing packet counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The flow.
    pub id: FlowId,
    /// TIME_WAIT (closed by FINs) or CLOSE (reset).
    pub state: TcpState,
    /// Packets `[original, reply]`, the closing one included.
    pub packets: [u64; 2],
    /// IP bytes `[original, reply]`, the closing packet included.
    pub bytes: [u64; 2],
    /// Tick of the closing packet.
    pub at: u64,
    /// The flow's first-packet tick and key hash (to tell it from a later flow in its slot).
    pub first_seen: u64,
    /// See `first_seen`.
    pub hash: u32,
}
use crate::parse::{Fragment, ParsedPacket};
pub use icmp::icmp_error_relation;
use icmp::{IcmpKind, icmp_conn_ports, icmp_kind, is_icmp};
pub use tcp::{TcpConn, TcpPeer, TcpSegment, TcpState, TcpTracked};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Non-TCP protocol families with pseudo-state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PseudoProto {
    /// UDP.
    Udp,
    /// ICMP or ICMPv6 (echo, or other non-error messages).
    Icmp,
    /// Anything else (SCTP, GRE, ESP...).
    #[default]
    Other,
}

/// Pseudo-state of a UDP/ICMP/other flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pseudo {
    /// Protocol family.
    pub proto: PseudoProto,
    /// A packet went in the reply direction.
    pub replied: bool,
}

impl Pseudo {
    /// The idle timeout in force.
    pub const fn timeout_class(&self) -> TimeoutClass {
        match (self.proto, self.replied) {
            (PseudoProto::Udp, false) => TimeoutClass::Udp,
            (PseudoProto::Udp, true) => TimeoutClass::UdpStream,
            (PseudoProto::Icmp, _) => TimeoutClass::Icmp,
            (PseudoProto::Other, _) => TimeoutClass::Other,
        }
    }
}

/// Per-flow conntrack state (the flow table's `S`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conn {
    /// TCP.
    Tcp(TcpConn),
    /// UDP, ICMP, other.
    Pseudo(Pseudo),
}

impl Default for Conn {
    fn default() -> Self {
        Conn::Pseudo(Pseudo::default())
    }
}

impl Conn {
    /// The state a flow's first packet creates, with its timeout class.
    pub fn open(pkt: &ParsedPacket, frame: &[u8]) -> Result<(Conn, TimeoutClass), DropReason> {
        let key = &pkt.key;
        if key.proto == PROTO_TCP {
            let seg = TcpSegment::from_packet(pkt, frame).ok_or(DropReason::MalformedL4)?;
            let c = TcpConn::open(&seg)?;
            return Ok((Conn::Tcp(c), c.state.timeout_class()));
        }
        let proto = if key.proto == PROTO_UDP {
            PseudoProto::Udp
        } else if is_icmp(key.family, key.proto) {
            if icmp_kind(key.family, key.sport) == IcmpKind::EchoReply {
                return Err(DropReason::IcmpNoFlow);
            }
            PseudoProto::Icmp
        } else {
            PseudoProto::Other
        };
        let p = Pseudo {
            proto,
            replied: false,
        };
        Ok((Conn::Pseudo(p), p.timeout_class()))
    }

    /// Track a packet of an existing flow going in `dir`. Returns the timeout class to apply
    /// and whether the flow is now established (non-evictable). State is unchanged on `Err`.
    #[inline(always)]
    pub fn advance(
        &mut self,
        dir: Direction,
        pkt: &ParsedPacket,
        frame: &[u8],
    ) -> Result<Advanced, DropReason> {
        match self {
            Conn::Tcp(c) => {
                let seg = TcpSegment::from_packet(pkt, frame).ok_or(DropReason::MalformedL4)?;
                Ok(Advanced::tcp(c.track(dir, &seg)?))
            }
            Conn::Pseudo(p) => Ok(p.advance(dir)),
        }
    }
}

impl Pseudo {
    /// A packet in `dir`: a reply makes the flow established.
    #[inline(always)]
    fn advance(&mut self, dir: Direction) -> Advanced {
        if dir == Direction::Reply {
            self.replied = true;
        }
        Advanced {
            class: self.timeout_class(),
            established: self.replied,
            reopened: false,
        }
    }
}

impl Advanced {
    #[inline(always)]
    fn tcp(t: TcpTracked) -> Self {
        Advanced {
            class: t.state.timeout_class(),
            established: t.state.is_established(),
            reopened: t.reopened,
        }
    }
}

/// Result of [`Conn::advance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advanced {
    /// Idle timeout to restart.
    pub class: TimeoutClass,
    /// The flow is established (leaves the evictable half-open list).
    pub established: bool,
    /// A SYN reopened a closed TCP connection with the same addresses and ports.
    pub reopened: bool,
}

/// The flow-table key of an IP packet (not an ICMP error, not a non-first fragment): the parsed
/// key, with ICMP ports rewritten (echo: `sport = dport = identifier`; other messages: `sport =
/// type`, `dport = code + 256`).
pub fn conn_key(pkt: &ParsedPacket, frame: &[u8]) -> Result<FlowKey, DropReason> {
    let mut key = pkt.key;
    if is_icmp(key.family, key.proto) {
        let l4 = pkt
            .l4_offset
            .and_then(|o| frame.get(o..pkt.l3_end))
            .ok_or(DropReason::MalformedL4)?;
        let kind = icmp_kind(key.family, key.sport);
        let (s, d) =
            icmp_conn_ports(kind, l4, key.sport, key.dport).ok_or(DropReason::MalformedL4)?;
        key.sport = s;
        key.dport = d;
    }
    Ok(key)
}

/// A new flow that passed conntrack's opening checks; [`commit`] it once policy allows it.
#[derive(Debug)]
pub struct NewFlow {
    vacant: Vacant,
    conn: Conn,
    class: TimeoutClass,
    bytes: usize,
}

impl NewFlow {
    /// Its initial state.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }
}

/// What [`begin`] found.
#[derive(Debug)]
pub enum Begun {
    /// Packet of a tracked flow, accepted; state, counters and timer updated.
    Tracked {
        /// The flow.
        id: FlowId,
        /// Packet direction.
        dir: Direction,
        /// A SYN reopened a closed TCP connection (the caller may want to reclassify).
        reopened: bool,
    },
    /// First packet of a new flow, acceptable to conntrack. Nothing inserted yet.
    New(NewFlow),
    /// An ICMP/ICMPv6 error about flow `id`; it travels in `dir` of that flow. Not counted
    /// against the flow and does not refresh its timer.
    Related {
        /// The flow.
        id: FlowId,
        /// Direction the error travels in, relative to the flow's originator.
        dir: Direction,
    },
    /// Not tracked: non-IP frames and non-first IP fragments (see [`crate::frag`]).
    Untracked,
}

/// The flow-table lookup [`begin`] makes for a packet, made ahead of time (read-only) by
/// [`find`] so a burst hashes each packet once; [`begin_found`] reuses it while the table's
/// generation is unchanged. Compact (24 bytes): a burst keeps one per packet.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    /// The packet's own flow or, for an ICMP error, the flow it is about.
    pub at: Located,
    /// The packet is an ICMP/ICMPv6 error and `at` is of its embedded flow.
    pub error: bool,
    generation: u64,
}

impl Found {
    /// The packet's own tracked flow and its direction, if this lookup found one and is still
    /// exact (no flow inserted or removed since) and the packet is not an ICMP error.
    #[inline]
    pub fn current_hit(&self, table: &FlowTable<Conn>) -> Option<(FlowId, Direction)> {
        if self.error || self.generation != table.generation() {
            return None;
        }
        self.at.id().map(|id| (id, self.at.dir()))
    }
}

impl Found {
    #[inline(always)]
    fn of(table: &FlowTable<Conn>, key: &FlowKey, error: bool) -> Self {
        Self::hashed(table, &table.hash_key(key), error)
    }

    /// The lookup of a key hashed ahead of time with [`FlowTable::hash_key`] (a burst hashes
    /// all its keys first, then probes: the probes of different packets are independent
    /// loads, which the CPU overlaps). For a packet that is not ICMP and not a non-first
    /// fragment, `hashed(table, &table.hash_key(&pkt.key), false)` is what [`find`] returns.
    #[inline(always)]
    pub fn hashed(table: &FlowTable<Conn>, key: &HashedKey, error: bool) -> Self {
        Found {
            at: table.find_hashed(key),
            error,
            generation: table.generation(),
        }
    }
}

/// Does [`find`] look `pkt` up under its own parsed key (an IP packet, not ICMP, not a
/// non-first fragment), so its key can be hashed ahead with [`FlowTable::hash_key`]?
#[inline(always)]
pub fn keyed_by_packet(pkt: &ParsedPacket) -> bool {
    pkt.is_ip() && pkt.fragment != Fragment::NonFirst && !is_icmp(pkt.key.family, pkt.key.proto)
}

/// The lookup [`begin`] would make for `pkt`: `None` for untracked packets (non-IP, non-first
/// fragments); the same errors as `begin`'s key checks.
#[inline(always)]
pub fn find(
    table: &FlowTable<Conn>,
    pkt: &ParsedPacket,
    frame: &[u8],
) -> Result<Option<Found>, DropReason> {
    if keyed_by_packet(pkt) {
        // TCP, UDP and the rest: the parsed key as it is.
        return Ok(Some(Found::of(table, &pkt.key, false)));
    }
    if !pkt.is_ip() || pkt.fragment == Fragment::NonFirst {
        return Ok(None);
    }
    Ok(Some(match icmp_error_relation(pkt, frame)? {
        Some(inner) => Found::of(table, &inner, true),
        None => Found::of(table, &conn_key(pkt, frame)?, false),
    }))
}

/// Conntrack for one parsed packet at tick `now`.
#[inline]
pub fn begin(
    table: &mut FlowTable<Conn>,
    pkt: &ParsedPacket,
    frame: &[u8],
    now: u64,
) -> Result<Begun, DropReason> {
    begin_found(table, pkt, frame, now, None, |_| {})
}

/// [`begin`], reusing `found` (from [`find`] on the same packet and table) when no flow was
/// inserted or removed since; `on_close` as for [`advance_found`].
#[inline]
pub fn begin_found(
    table: &mut FlowTable<Conn>,
    pkt: &ParsedPacket,
    frame: &[u8],
    now: u64,
    found: Option<Found>,
    on_close: impl FnOnce(Closed),
) -> Result<Begun, DropReason> {
    let found = match found {
        Some(f) if f.generation == table.generation() => f,
        _ => match find(table, pkt, frame)? {
            Some(f) => f,
            None => return Ok(Begun::Untracked),
        },
    };
    if found.error {
        return match found.at.id() {
            Some(id) => Ok(Begun::Related {
                id,
                dir: found.at.dir().reverse(),
            }),
            None => Err(DropReason::IcmpErrorUnrelated),
        };
    }
    match found.at.id() {
        Some(id) => {
            let dir = found.at.dir();
            let reopened = advance_found(table, id, dir, pkt, frame, now, on_close)?;
            Ok(Begun::Tracked { id, dir, reopened })
        }
        None => {
            let key = conn_key(pkt, frame)?;
            let Some(vacant) = table.vacant(&key, &found.at) else {
                unreachable!("a miss has a vacancy");
            };
            let (conn, class) = Conn::open(pkt, frame)?;
            let bytes = pkt.l3_end - pkt.l3_offset;
            Ok(Begun::New(NewFlow {
                vacant,
                conn,
                class,
                bytes,
            }))
        }
    }
}

/// Track a packet of flow `id` going in `dir` (found by [`find`] at the current generation):
/// advance its state, account it, restart its timer, move it on or off the half-open list.
/// Returns whether a SYN reopened a closed connection. State is unchanged on `Err`.
/// `on_close` runs when a TCP segment closes an open connection (→ TIME_WAIT or CLOSE), from
/// the out-of-line general path only, with the counters the flow has once the packet is
/// accounted.
#[inline(always)]
pub fn advance_found(
    table: &mut FlowTable<Conn>,
    id: FlowId,
    dir: Direction,
    pkt: &ParsedPacket,
    frame: &[u8],
    now: u64,
    on_close: impl FnOnce(Closed),
) -> Result<bool, DropReason> {
    let bytes = pkt.l3_end - pkt.l3_offset;
    let r = table.track(
        id,
        dir,
        bytes,
        now,
        #[inline(always)]
        |conn, before| {
            let a = match conn {
                Conn::Tcp(c) => {
                    let seg = TcpSegment::from_packet(pkt, frame).ok_or(DropReason::MalformedL4)?;
                    // The inline ACK path builds nothing for `on_close`: everything the close
                    // report needs is gathered on the out-of-line path only.
                    let t = match c.track_fast(dir, &seg) {
                        Some(t) => t?,
                        None => {
                            let (mut packets, mut sizes) = (*before.packets, *before.bytes);
                            packets[dir.index()] += 1;
                            sizes[dir.index()] += bytes as u64;
                            let closed = Closed {
                                id,
                                state: TcpState::Close,
                                packets,
                                bytes: sizes,
                                at: now,
                                first_seen: *before.first_seen,
                                hash: *before.hash,
                            };
                            c.track_slow(dir, &seg, move |state| {
                                on_close(Closed { state, ..closed })
                            })?
                        }
                    };
                    Advanced::tcp(t)
                }
                Conn::Pseudo(p) => p.advance(dir),
            };
            Ok::<_, DropReason>(Refresh {
                class: a.class,
                established: a.established,
                reopened: a.reopened,
            })
        },
    )?;
    Ok(r.reopened)
}

/// Insert a new flow from [`begin`] (same table, no other insert in between) and account its
/// first packet. `flow_table_full` when there is no room.
pub fn commit(table: &mut FlowTable<Conn>, new: NewFlow, now: u64) -> Result<FlowId, DropReason> {
    commit_evicting(table, new, now).map(|(id, _)| id)
}

/// [`commit`], also returning the side-state slots of a half-open flow evicted to make room
/// (zero when none), for the caller to free.
pub fn commit_evicting(
    table: &mut FlowTable<Conn>,
    new: NewFlow,
    now: u64,
) -> Result<(FlowId, L7Slot), DropReason> {
    let r = table.insert(new.vacant, new.conn, new.class, now)?;
    table.touch(r.id, Direction::Original, new.bytes, new.class, now);
    Ok((r.id, r.evicted_l7))
}

/// [`begin`] then, for a new flow, [`commit`]: conntrack when every new flow is allowed (tests,
/// monitor-only deployments). Returns the flow and the packet's direction, `None` for
/// untracked packets.
pub fn track(
    table: &mut FlowTable<Conn>,
    pkt: &ParsedPacket,
    frame: &[u8],
    now: u64,
) -> Result<Option<(FlowId, Direction)>, DropReason> {
    match begin(table, pkt, frame, now)? {
        Begun::Tracked { id, dir, .. } | Begun::Related { id, dir } => Ok(Some((id, dir))),
        Begun::New(n) => Ok(Some((commit(table, n, now)?, Direction::Original))),
        Begun::Untracked => Ok(None),
    }
}
