//! The TCP state machine and sequence-window tracking (see the module documentation of
//! [`crate::conntrack`] for what is checked and how strictly).

use crate::drop::DropReason;
use crate::flow::{Direction, TimeoutClass};
use crate::parse::{ParsedPacket, TcpFlags};

/// `nf_conntrack`'s floor for the acknowledgement window (`MAXACKWINCONST`).
const MIN_ACK_WINDOW: u32 = 66_000;
/// Largest window-scale shift (RFC 7323).
const MAX_WSCALE: u8 = 14;

/// Connection state, named after nftables' `ct state` TCP states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// Originator's SYN seen.
    #[default]
    SynSent,
    /// Both sides sent a SYN without ACK (simultaneous open).
    SynSent2,
    /// SYN-ACK seen; waiting for the final ACK.
    SynRecv,
    /// Handshake complete.
    Established,
    /// First FIN seen.
    FinWait,
    /// First FIN acknowledged by the other side.
    CloseWait,
    /// Second FIN seen.
    LastAck,
    /// Second FIN acknowledged.
    TimeWait,
    /// Reset.
    Close,
}

impl TcpState {
    /// The idle timeout for this state.
    pub const fn timeout_class(self) -> TimeoutClass {
        match self {
            TcpState::SynSent | TcpState::SynSent2 => TimeoutClass::TcpSynSent,
            TcpState::SynRecv => TimeoutClass::TcpSynRecv,
            TcpState::Established => TimeoutClass::TcpEstablished,
            TcpState::FinWait => TimeoutClass::TcpFinWait,
            TcpState::CloseWait => TimeoutClass::TcpCloseWait,
            TcpState::LastAck => TimeoutClass::TcpLastAck,
            TcpState::TimeWait => TimeoutClass::TcpTimeWait,
            TcpState::Close => TimeoutClass::TcpClose,
        }
    }

    /// Has the handshake completed (the flow is no longer half-open)?
    pub const fn is_established(self) -> bool {
        matches!(
            self,
            TcpState::Established
                | TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
        )
    }
}

/// What one side of the connection has sent, in that side's sequence space (nftables'
/// `ip_ct_tcp_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpPeer {
    /// Highest `seq + len` sent (`td_end`).
    pub end: u32,
    /// Highest sequence number the other side's ACK + window allows (`td_maxend`).
    pub maxend: u32,
    /// Largest (scaled) window advertised; 0 = side not seen yet (`td_maxwin`).
    pub maxwin: u32,
    /// Window-scale shift in force for this side's advertisements.
    pub scale: u8,
    /// Window-scale option value in this side's SYN, if any.
    pub wscale_offer: Option<u8>,
}

/// Per-connection TCP tracking state (36 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpConn {
    /// Current state.
    pub state: TcpState,
    /// Direction of the first FIN (meaningful from `FinWait` on).
    pub fin_dir: u8,
    /// By [`Direction::index`].
    pub peers: [TcpPeer; 2],
}

/// The fields of a TCP segment that tracking needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    /// Flags byte.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with ACK).
    pub ack: u32,
    /// Raw (unscaled) window.
    pub window: u16,
    /// Payload bytes in this packet.
    pub len: u32,
    /// Window-scale option (SYN segments only).
    pub wscale: Option<u8>,
    /// The segment is split over IP fragments (its true length is unknown).
    pub fragmented: bool,
}

impl TcpSegment {
    /// Read the segment of a parsed TCP packet (not a non-first fragment). `None` if the packet
    /// has no parsed TCP header.
    ///
    /// Inlined, so a caller's parse result is not forced out of registers by taking its address.
    #[inline(always)]
    pub fn from_packet(pkt: &ParsedPacket, frame: &[u8]) -> Option<Self> {
        let l4 = pkt.l4_offset?;
        let payload = pkt.payload_offset?;
        let h = frame.get(l4..payload)?;
        if h.len() < 20 {
            return None;
        }
        let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let flags = h[13];
        let wscale = if flags & TcpFlags::SYN != 0 {
            wscale_option(&h[20..])
        } else {
            None
        };
        Some(TcpSegment {
            flags,
            seq: be32(4),
            ack: be32(8),
            window: u16::from_be_bytes([h[14], h[15]]),
            len: pkt.l3_end.saturating_sub(payload) as u32,
            wscale,
            fragmented: pkt.fragment != crate::parse::Fragment::None,
        })
    }

    #[inline(always)]
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Sequence space the segment occupies (SYN and FIN count one each).
    #[inline(always)]
    fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.len)
            .wrapping_add(u32::from(self.has(TcpFlags::SYN)))
            .wrapping_add(u32::from(self.has(TcpFlags::FIN)))
    }
}

/// The window-scale option among a SYN's TCP options, if present (clamped to
/// [`MAX_WSCALE`]). Bounded by the 40 option bytes; each step advances at least one byte.
#[inline(never)]
fn wscale_option(opts: &[u8]) -> Option<u8> {
    let mut wscale = None;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1).unwrap_or(&0));
                if len < 2 || i + len > opts.len() {
                    break;
                }
                if kind == 3 && len == 3 {
                    wscale = Some(opts[i + 2].min(MAX_WSCALE));
                }
                i += len;
            }
        }
    }
    wscale
}

/// Flag classes the state machine distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
}

/// Valid flag combinations (nftables' `tcp_valid_flags`): PSH, ECE and CWR are ignored; SYN,
/// SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK and ACK+URG are valid; everything
/// else (SYN+FIN, SYN+RST, FIN without ACK, no SYN/ACK/RST at all, ...) is invalid.
fn kind(flags: u8) -> Result<Kind, DropReason> {
    const SYN: u8 = TcpFlags::SYN;
    const SYN_URG: u8 = TcpFlags::SYN | TcpFlags::URG;
    const SYN_ACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
    const RST: u8 = TcpFlags::RST;
    const RST_ACK: u8 = TcpFlags::RST | TcpFlags::ACK;
    const FIN_ACK: u8 = TcpFlags::FIN | TcpFlags::ACK;
    const FIN_ACK_URG: u8 = TcpFlags::FIN | TcpFlags::ACK | TcpFlags::URG;
    const ACK: u8 = TcpFlags::ACK;
    const ACK_URG: u8 = TcpFlags::ACK | TcpFlags::URG;
    match flags & !(TcpFlags::PSH | TcpFlags::ECE | TcpFlags::CWR) {
        SYN | SYN_URG => Ok(Kind::Syn),
        SYN_ACK => Ok(Kind::SynAck),
        RST | RST_ACK => Ok(Kind::Rst),
        FIN_ACK | FIN_ACK_URG => Ok(Kind::Fin),
        ACK | ACK_URG => Ok(Kind::Ack),
        _ => Err(DropReason::TcpInvalidFlags),
    }
}

/// `a` is before `b` in sequence space.
#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

impl TcpPeer {
    fn init(seg: &TcpSegment) -> Self {
        let end = seg.end();
        TcpPeer {
            end,
            maxend: end,
            maxwin: u32::from(seg.window).max(1),
            scale: 0,
            wscale_offer: seg.wscale,
        }
    }
}

/// What [`TcpConn::track`] decided for an accepted segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTracked {
    /// State after the segment.
    pub state: TcpState,
    /// The segment was a SYN that reopened a closed (TIME_WAIT / CLOSE) connection.
    pub reopened: bool,
}

impl TcpConn {
    /// The connection a first packet opens. Only a plain SYN opens one; anything else is
    /// `tcp_invalid_flags` or `tcp_no_flow`.
    pub fn open(seg: &TcpSegment) -> Result<Self, DropReason> {
        if kind(seg.flags)? != Kind::Syn {
            return Err(DropReason::TcpNoFlow);
        }
        Ok(TcpConn {
            state: TcpState::SynSent,
            fin_dir: 0,
            peers: [TcpPeer::init(seg), TcpPeer::default()],
        })
    }

    /// Track one segment travelling in `dir`. On `Err` the state is unchanged.
    ///
    /// The most common segment, an ACK (with or without data, PSH, URG, ECE, CWR) on an
    /// established connection, is handled inline ([`Self::track_fast`]): the state stays, only
    /// the window is checked and advanced, exactly as [`Self::track_general`] does for it.
    #[inline(always)]
    pub fn track(&mut self, dir: Direction, seg: &TcpSegment) -> Result<TcpTracked, DropReason> {
        match self.track_fast(dir, seg) {
            Some(t) => t,
            None => self.track_general(dir, seg),
        }
    }

    /// The inline path of [`Self::track`]: the result for an ACK on an established connection,
    /// `None` (nothing changed) for every other segment.
    #[inline(always)]
    pub fn track_fast(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
    ) -> Option<Result<TcpTracked, DropReason>> {
        let ignored = TcpFlags::PSH | TcpFlags::ECE | TcpFlags::CWR | TcpFlags::URG;
        if self.state == TcpState::Established && seg.flags & !ignored == TcpFlags::ACK {
            let (d, o) = (dir.index(), dir.reverse().index());
            if !in_window(&mut self.peers, d, o, seg) {
                return Some(Err(DropReason::TcpOutOfWindow));
            }
            return Some(Ok(TcpTracked {
                state: TcpState::Established,
                reopened: false,
            }));
        }
        None
    }

    /// [`Self::track`] for a segment [`Self::track_fast`] declined (out of line), calling
    /// `on_close` with the new state when the segment closes an open connection (ESTABLISHED
    /// or a closing state → TIME_WAIT by the last ACK, or → CLOSE by a RST). Only this path can
    /// close a connection.
    #[inline(never)]
    pub fn track_slow(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
        on_close: impl FnOnce(TcpState),
    ) -> Result<TcpTracked, DropReason> {
        let before = self.state;
        let t = self.track_general(dir, seg)?;
        let was_open = matches!(
            before,
            TcpState::Established | TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck
        );
        if was_open && matches!(t.state, TcpState::TimeWait | TcpState::Close) {
            on_close(t.state);
        }
        Ok(t)
    }

    /// [`Self::track`] for every state and segment.
    #[inline(never)]
    fn track_general(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
    ) -> Result<TcpTracked, DropReason> {
        let k = kind(seg.flags)?;
        let d = dir.index();
        let o = dir.reverse().index();
        let state = self.state;
        let mut next = state;
        // Packets that (re)initialise a side before the window checks.
        let mut init_sender = false;
        match (state, k) {
            (TcpState::SynSent, Kind::Rst) if dir == Direction::Reply => {
                // RFC 9293 3.10.7.3: in SYN-SENT a RST is acceptable iff it acknowledges the SYN.
                // The responder's sequence space is unknown, so the window checks are skipped.
                if seg.has(TcpFlags::ACK) && seg.ack == self.peers[o].end {
                    self.state = TcpState::Close;
                    return Ok(TcpTracked {
                        state: TcpState::Close,
                        reopened: false,
                    });
                }
                return Err(DropReason::TcpOutOfWindow);
            }
            (_, Kind::Rst) => next = TcpState::Close,
            (TcpState::SynSent, Kind::Syn) => {
                if dir == Direction::Original {
                    // Retransmission, or a new ISN from a client retrying the port.
                    if seg.end() != self.peers[d].end {
                        init_sender = true;
                    }
                } else {
                    next = TcpState::SynSent2;
                    init_sender = true;
                }
            }
            (TcpState::SynSent, Kind::SynAck) if dir == Direction::Reply => {
                if seg.ack != self.peers[o].end {
                    return Err(DropReason::TcpOutOfWindow);
                }
                next = TcpState::SynRecv;
                init_sender = true;
            }
            (TcpState::SynSent2, Kind::Syn) => {}
            (TcpState::SynSent2, Kind::SynAck) => {
                if seg.ack != self.peers[o].end {
                    return Err(DropReason::TcpOutOfWindow);
                }
                next = TcpState::SynRecv;
            }
            (TcpState::SynRecv | TcpState::Established, Kind::SynAck) => {
                // A retransmitted SYN-ACK (the final ACK was lost after us): exactly the same
                // ISN, passed without touching the window state.
                if seg.end() == self.sender_syn_end(d) {
                    return Ok(TcpTracked {
                        state,
                        reopened: false,
                    });
                }
                return Err(DropReason::TcpInvalidState);
            }
            (TcpState::SynRecv, Kind::Syn) => {
                // Retransmitted SYN of either side (the SYN-ACK was lost).
                if seg.end() != self.sender_syn_end(d) {
                    return Err(DropReason::TcpInvalidState);
                }
                return Ok(TcpTracked {
                    state,
                    reopened: false,
                });
            }
            (TcpState::SynRecv, Kind::Ack) => next = TcpState::Established,
            (TcpState::SynRecv | TcpState::Established, Kind::Fin) => {
                next = TcpState::FinWait;
            }
            (TcpState::Established, Kind::Ack) => {}
            (TcpState::FinWait, Kind::Ack) => {
                if d != usize::from(self.fin_dir) && !before(seg.ack, self.peers[o].end) {
                    next = TcpState::CloseWait;
                }
            }
            (TcpState::FinWait | TcpState::CloseWait, Kind::Fin) => {
                if d != usize::from(self.fin_dir) {
                    next = TcpState::LastAck;
                }
            }
            (TcpState::CloseWait, Kind::Ack) => {}
            (TcpState::LastAck, Kind::Ack) => {
                if d == usize::from(self.fin_dir) && !before(seg.ack, self.peers[o].end) {
                    next = TcpState::TimeWait;
                }
            }
            (TcpState::LastAck | TcpState::TimeWait, Kind::Fin)
            | (TcpState::TimeWait, Kind::Ack) => {}
            (TcpState::TimeWait | TcpState::Close, Kind::Syn) if dir == Direction::Original => {
                // SYN after the close completed: the client reuses the port pair.
                *self = TcpConn::open(seg)?;
                return Ok(TcpTracked {
                    state: TcpState::SynSent,
                    reopened: true,
                });
            }
            // Data or ACK before the handshake, SYN on an open or closing connection, anything
            // after a reset.
            _ => return Err(DropReason::TcpInvalidState),
        }
        if !init_sender && next != TcpState::SynRecv {
            // Most segments (established data and ACKs) leave the window state as it is until
            // the check passes: check and update in place, without a copy to commit.
            if !in_window(&mut self.peers, d, o, seg) {
                return Err(DropReason::TcpOutOfWindow);
            }
            self.state = next;
            if next == TcpState::FinWait && state != TcpState::FinWait {
                self.fin_dir = d as u8;
            }
            return Ok(TcpTracked {
                state: next,
                reopened: false,
            });
        }
        let mut peers = self.peers;
        if init_sender {
            peers[d] = TcpPeer::init(seg);
            if next == TcpState::SynRecv {
                // RFC 7323: scaling applies only if both SYNs carried the option.
                if let (Some(a), Some(b)) = (peers[0].wscale_offer, peers[1].wscale_offer) {
                    peers[0].scale = a;
                    peers[1].scale = b;
                }
            }
        }
        if next == TcpState::SynRecv && !init_sender {
            // Simultaneous open: SYN-ACK from a side already initialised by its SYN.
            if let (Some(a), Some(b)) = (peers[0].wscale_offer, peers[1].wscale_offer) {
                peers[0].scale = a;
                peers[1].scale = b;
            }
        }
        if !in_window(&mut peers, d, o, seg) {
            return Err(DropReason::TcpOutOfWindow);
        }
        self.peers = peers;
        self.state = next;
        if next == TcpState::FinWait && state != TcpState::FinWait {
            self.fin_dir = d as u8;
        }
        Ok(TcpTracked {
            state: next,
            reopened: false,
        })
    }

    /// ISN + 1 of side `d`'s SYN, as far as tracked state tells: `end` equals it until that
    /// side sends data, which is the only time a SYN retransmission is legitimate.
    fn sender_syn_end(&self, d: usize) -> u32 {
        self.peers[d].end
    }
}

/// nftables' `tcp_in_window`: checks first and changes `peers` only if the segment passes.
#[inline(always)]
fn in_window(peers: &mut [TcpPeer; 2], d: usize, o: usize, seg: &TcpSegment) -> bool {
    let is_syn = seg.has(TcpFlags::SYN);
    let (sender, receiver) = (peers[d], peers[o]);
    let mut seq = seg.seq;
    let mut end = seg.end();
    if seq == end && !seg.has(TcpFlags::RST) && !seg.fragmented {
        // No data, SYN or FIN (a pure ACK): as in Linux, only its ACK is checked.
        seq = sender.end;
        end = sender.end;
    }
    // A fragmented segment's length is unknown: assume it fills the window it may use.
    if seg.fragmented && after(sender.maxend, end) {
        end = sender.maxend;
    }
    let win = if is_syn {
        u32::from(seg.window)
    } else {
        u32::from(seg.window) << sender.scale
    };
    // Without ACK (or a RST+ACK with ack 0) nothing is acknowledged: use what the receiver sent.
    let ack = if !seg.has(TcpFlags::ACK) || (seg.has(TcpFlags::RST) && seg.ack == 0) {
        receiver.end
    } else {
        seg.ack
    };
    let max_ack_window = sender.maxwin.max(MIN_ACK_WINDOW);
    let ok = !after(seq, sender.maxend)
        && !before(end, sender.end.wrapping_sub(receiver.maxwin))
        && (receiver.maxwin == 0
            || (!after(ack, receiver.end)
                && !before(ack, receiver.end.wrapping_sub(max_ack_window))));
    if !ok {
        return false;
    }
    let s = &mut peers[d];
    s.maxwin = s.maxwin.max(win);
    if after(end, s.end) {
        s.end = end;
    }
    let sender_maxend = s.maxend;
    let r = &mut peers[o];
    if r.maxwin != 0 && after(end, sender_maxend) {
        r.maxwin = r.maxwin.wrapping_add(end.wrapping_sub(sender_maxend));
    }
    if seg.has(TcpFlags::ACK) {
        let edge = ack.wrapping_add(win.max(1));
        if after(edge, r.maxend) || r.maxwin == 0 {
            r.maxend = edge;
        }
    }
    true
}
