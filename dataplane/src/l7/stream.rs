//! The bounded per-flow L7 state and the per-worker L7 counters.
//!
//! [`L7State`] is 64 bytes with no heap. It frames each direction of a TCP stream into
//! messages: a message whose leading bytes (the [`super::summary_len`] the summary needs) are
//! split across segments is copied into a [`WINDOW`]-byte buffer until complete; a message's
//! remaining body is skipped by count, never stored. Summaries are checked against the
//! conduit. A message whose header does not frame makes its direction unfollowable (there is no
//! way to find the next message boundary), which denies every later segment of that direction;
//! a framed message whose content does not parse is counted and denied, and the stream goes on.
//!
//! Preconditions (the worker's job): segments are given in sequence order, each once
//! (conntrack drops or holds out-of-window and retransmitted data before inspection); UDP
//! datagrams are given whole.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use septa_l7::{DenyReason, L7Constraint, L7Proto, L7Verdict, Message, Sender, check};

use super::{Side, Transport, frame_len, opcua, summarize, summary_len};

/// Bytes of the split-header window.
pub const WINDOW: usize = 48;

const F_BUF_IN_USE: u8 = 1 << 0;
const F_BUF_SERVER: u8 = 1 << 1;
const F_LOST: [u8; 2] = [1 << 2, 1 << 3];
const F_MID_CHUNK: [u8; 2] = [1 << 4, 1 << 5];

/// The L7 state of one flow: 64 bytes, `Copy`, no heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L7State {
    proto: L7Proto,
    flags: u8,
    have: u8,
    _reserved: u8,
    malformed: u16,
    messages: u16,
    skip: [u32; 2],
    buf: [u8; WINDOW],
}

impl Default for L7State {
    fn default() -> Self {
        Self::new(L7Proto::Unknown)
    }
}

impl L7State {
    /// A fresh state for a flow inspected as `proto` (the conduit's protocol).
    pub const fn new(proto: L7Proto) -> Self {
        L7State {
            proto,
            flags: 0,
            have: 0,
            _reserved: 0,
            malformed: 0,
            messages: 0,
            skip: [0; 2],
            buf: [0; WINDOW],
        }
    }

    /// The protocol this flow is inspected as.
    pub fn proto(&self) -> L7Proto {
        self.proto
    }

    /// Malformed messages seen on this flow (saturating).
    pub fn malformed(&self) -> u16 {
        self.malformed
    }

    /// Messages summarised on this flow (saturating).
    pub fn messages(&self) -> u16 {
        self.messages
    }

    /// Whether the direction sent by `side` could no longer be followed.
    pub fn lost(&self, side: Side) -> bool {
        self.flags & F_LOST[side as usize] != 0
    }

    /// Inspects one segment (TCP) or datagram (UDP) sent by `side` (from IP `sender`):
    /// every message in it is summarised, counted and checked. Returns the first deny, or
    /// allow. Never allocates.
    pub fn inspect(
        &mut self,
        side: Side,
        transport: Transport,
        payload: &[u8],
        conduit: &L7Constraint,
        sender: Sender,
        counters: &mut L7Counters,
    ) -> L7Verdict {
        self.inspect_tallied(side, transport, payload, conduit, sender, counters, None)
    }

    /// [`Self::inspect`], also counting every request message (allowed or denied) into `tally`
    /// by feature function class (for the ML sampler: only sampled flows pass one, since
    /// classifying a code looks it up in the protocol's function table; the exception is a new
    /// UDP flow's first datagram, judged before the sampler has chosen whether to sample it).
    #[allow(clippy::too_many_arguments)]
    pub fn inspect_tallied(
        &mut self,
        side: Side,
        transport: Transport,
        payload: &[u8],
        conduit: &L7Constraint,
        sender: Sender,
        counters: &mut L7Counters,
        mut tally: Option<&mut FunctionTally>,
    ) -> L7Verdict {
        let mut verdict = L7Verdict::Allow;
        if payload.is_empty() {
            return verdict; // handshakes, bare acknowledgements
        }
        let mut on_message = |m: Result<Message, ()>, state: &mut L7State| {
            let v = match m {
                Ok(m) => {
                    state.messages = state.messages.saturating_add(1);
                    counters.message(&m);
                    if let Some(t) = tally.as_deref_mut() {
                        t.request(&m);
                    }
                    check(conduit, &m, sender)
                }
                Err(()) => {
                    state.malformed = state.malformed.saturating_add(1);
                    counters.malformed(state.proto);
                    L7Verdict::Deny(DenyReason::Malformed { proto: state.proto })
                }
            };
            if let L7Verdict::Deny(r) = v {
                counters.denied(&r);
                if verdict == L7Verdict::Allow {
                    verdict = v;
                }
            }
        };
        match transport {
            Transport::Udp => self.datagram(side, payload, &mut on_message),
            Transport::Tcp => self.segment(side, payload, &mut on_message),
        }
        verdict
    }

    fn datagram(
        &mut self,
        side: Side,
        mut d: &[u8],
        emit: &mut impl FnMut(Result<Message, ()>, &mut Self),
    ) {
        if self.proto == L7Proto::Bacnet {
            let m = summarize(self.proto, side, d).map_err(|_| ());
            return emit(m, self);
        }
        // Datagram-framed protocols that may pack several frames (DNP3 over UDP).
        while !d.is_empty() {
            match frame_len(self.proto, d) {
                Ok(Some(total)) if total <= d.len() => {
                    let m = summarize(self.proto, side, &d[..total]).map_err(|_| ());
                    let bad = m.is_err();
                    emit(m, self);
                    if bad {
                        return;
                    }
                    d = &d[total..];
                }
                _ => return emit(Err(()), self),
            }
        }
    }

    fn segment(
        &mut self,
        side: Side,
        mut data: &[u8],
        emit: &mut impl FnMut(Result<Message, ()>, &mut Self),
    ) {
        let s = side as usize;
        if self.flags & F_LOST[s] != 0 {
            if !data.is_empty() {
                emit(Err(()), self);
            }
            return;
        }
        let k = summary_len(self.proto).clamp(1, WINDOW);
        loop {
            let skip = self.skip[s] as usize;
            if skip > 0 {
                let n = skip.min(data.len());
                self.skip[s] -= n as u32;
                data = &data[n..];
            }
            if data.is_empty() {
                return;
            }
            let buffered = self.flags & F_BUF_IN_USE != 0
                && (self.flags & F_BUF_SERVER != 0) == (side == Side::Server);
            // The window is copied out of the state so the state can change while it is read.
            let mut local = [0u8; WINDOW];
            let (old, window): (usize, &[u8]) = if buffered {
                let old = usize::from(self.have);
                let take = (WINDOW - old).min(data.len());
                self.buf[old..old + take].copy_from_slice(&data[..take]);
                local[..old + take].copy_from_slice(&self.buf[..old + take]);
                (old, &local[..old + take])
            } else {
                (0, data)
            };
            let have = window.len();
            let total = match frame_len(self.proto, window) {
                Err(_) => return self.lose(side, emit),
                Ok(None) => {
                    if buffered && have < WINDOW {
                        self.have = have as u8;
                        return;
                    }
                    return self.stash_or_lose(side, data, emit);
                }
                Ok(Some(t)) => t,
            };
            let wanted = total.min(k);
            if have < wanted {
                if buffered {
                    self.have = have as u8;
                    return;
                }
                return self.stash_or_lose(side, data, emit);
            }
            let m = self.summarize_at(side, &window[..have.min(total)]);
            // Bytes of this message taken from `data` now; the rest of its body is skipped.
            let in_data = total - old;
            let n = in_data.min(data.len());
            self.skip[s] = (in_data - n) as u32;
            data = &data[n..];
            if buffered {
                self.flags &= !(F_BUF_IN_USE | F_BUF_SERVER);
                self.have = 0;
            }
            // A framed message that does not parse is counted and denied; its length is known,
            // so the stream stays followable.
            emit(m, self);
        }
    }

    /// Summarises one message; OPC UA continuation chunks carry no service and pass as such.
    fn summarize_at(&mut self, side: Side, msg: &[u8]) -> Result<Message, ()> {
        let s = side as usize;
        if self.proto == L7Proto::OpcUa && msg.starts_with(b"MSG") {
            let mid = self.flags & F_MID_CHUNK[s] != 0;
            match opcua::chunk_type(msg) {
                Some(b'C') => self.flags |= F_MID_CHUNK[s],
                _ => self.flags &= !F_MID_CHUNK[s],
            }
            if mid {
                return Ok(Message {
                    proto: L7Proto::OpcUa,
                    ..Message::default()
                });
            }
        }
        summarize(self.proto, side, msg).map_err(|_| ())
    }

    fn stash_or_lose(
        &mut self,
        side: Side,
        data: &[u8],
        emit: &mut impl FnMut(Result<Message, ()>, &mut Self),
    ) {
        if self.flags & F_BUF_IN_USE != 0 || data.len() > WINDOW {
            // The window holds the other direction's split header: this one cannot be followed.
            return self.lose(side, emit);
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.have = data.len() as u8;
        self.flags |= F_BUF_IN_USE;
        if side == Side::Server {
            self.flags |= F_BUF_SERVER;
        } else {
            self.flags &= !F_BUF_SERVER;
        }
    }

    fn lose(&mut self, side: Side, emit: &mut impl FnMut(Result<Message, ()>, &mut Self)) {
        emit(Err(()), self);
        self.lose_quiet(side);
    }

    fn lose_quiet(&mut self, side: Side) {
        self.flags |= F_LOST[side as usize];
        let buf_side = if self.flags & F_BUF_SERVER != 0 {
            Side::Server
        } else {
            Side::Client
        };
        if self.flags & F_BUF_IN_USE != 0 && buf_side == side {
            self.flags &= !(F_BUF_IN_USE | F_BUF_SERVER);
            self.have = 0;
        }
    }
}

/// Request messages of one segment or datagram by feature function class
/// ([`septa_features::FunctionClass`] index), for the ML sampler's per-flow histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionTally(pub [u32; septa_features::FUNCTION_CLASSES]);

impl FunctionTally {
    /// Counts `m` if it is a request (responses and connection management are not functions
    /// a peer asked for).
    #[inline]
    pub fn request(&mut self, m: &Message) {
        if m.role != septa_l7::Role::Request {
            return;
        }
        let class = septa_l7::functions::lookup(m.proto, m.function)
            .map_or(septa_l7::functions::Class::Other, |f| f.class);
        let c = crate::sample::feature_function_class(m.proto, m.function, class) as usize;
        self.0[c] = self.0[c].saturating_add(1);
    }

    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }
}

/// Per-worker L7 counters: messages and denies per protocol and function code, malformed
/// messages per protocol. Summed across workers at scrape time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L7Counters {
    /// Messages summarised, `[protocol][function]` (requests and responses).
    pub messages: [[u64; 256]; L7Proto::COUNT],
    /// Messages denied, `[protocol][function]`; denies that name no function (wrong protocol,
    /// S7comm-plus, malformed) are in [`Self::denied_other`].
    pub denied: [[u64; 256]; L7Proto::COUNT],
    /// Denies that name no function, per protocol.
    pub denied_other: [u64; L7Proto::COUNT],
    /// Malformed messages and unfollowable streams, per protocol.
    pub malformed: [u64; L7Proto::COUNT],
}

impl Default for L7Counters {
    fn default() -> Self {
        L7Counters {
            messages: [[0; 256]; L7Proto::COUNT],
            denied: [[0; 256]; L7Proto::COUNT],
            denied_other: [0; L7Proto::COUNT],
            malformed: [0; L7Proto::COUNT],
        }
    }
}

impl L7Counters {
    /// Zeroed counters on the heap (they are 64 KiB; allocate once per worker at start).
    pub fn boxed() -> Box<Self> {
        Box::default()
    }

    fn message(&mut self, m: &Message) {
        self.messages[m.proto as usize][usize::from(m.function)] += 1;
    }

    fn malformed(&mut self, p: L7Proto) {
        self.malformed[p as usize] += 1;
    }

    fn denied(&mut self, r: &DenyReason) {
        match r.function() {
            Some((p, code)) => self.denied[p as usize][usize::from(code)] += 1,
            None => {
                let p = match *r {
                    DenyReason::WrongProtocol { expected, .. } => expected,
                    DenyReason::Malformed { proto } => proto,
                    _ => L7Proto::S7comm,
                };
                self.denied_other[p as usize] += 1;
            }
        }
    }
}

/// Words of [`L7Counters`] (`messages`, `denied`, `denied_other`, `malformed`).
const L7_WORDS: usize = 2 * 256 * L7Proto::COUNT + 2 * L7Proto::COUNT;

/// A worker's [`L7Counters`] as other threads read them (the control side's `/metrics` and
/// health report): relaxed atomics the worker stores every [`L7_PUBLISH_US`] of its clock
/// ([`crate::l7::L7Inspector::publish`], called between polls), never per packet. A reader
/// sees values at most that old; each word is whole, a read across words may mix two
/// publications (counters only grow, so nothing goes backwards).
#[derive(Debug)]
pub struct SharedL7Counters(Box<[AtomicU64]>);

/// How often a worker publishes its L7 counters: once a second (64 KiB of stores; the
/// counters are scraped every few seconds at most).
pub const L7_PUBLISH_US: u64 = 1_000_000;

impl Default for SharedL7Counters {
    fn default() -> Self {
        Self((0..L7_WORDS).map(|_| AtomicU64::new(0)).collect())
    }
}

impl SharedL7Counters {
    /// The counters last published (zeros before the first publication).
    pub fn load(&self) -> Box<L7Counters> {
        let mut c = L7Counters::boxed();
        let mut w = self.0.iter().map(|a| a.load(Relaxed));
        for row in c.messages.iter_mut().chain(c.denied.iter_mut()) {
            row.fill_with(|| w.next().unwrap_or(0));
        }
        c.denied_other.fill_with(|| w.next().unwrap_or(0));
        c.malformed.fill_with(|| w.next().unwrap_or(0));
        c
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.0)
    }

    /// Publish `c` (the owning worker only).
    pub(crate) fn store(&self, c: &L7Counters) {
        let words = c
            .messages
            .iter()
            .chain(c.denied.iter())
            .flatten()
            .chain(c.denied_other.iter())
            .chain(c.malformed.iter());
        for (a, v) in self.0.iter().zip(words) {
            a.store(*v, Relaxed);
        }
    }
}
