//! Flow and decision events from the workers to the control side (tracker issue 4, item 6).
//!
//! **What it is.** Each worker owns an [`EventSink`], the producing end of a bounded, lossy,
//! preallocated ring; the control side owns one [`EventDrain`] holding the consuming end of
//! every worker's ring and polls it from any thread (no EAL needed, never blocks a worker).
//! Records are small `Copy` values ([`FlowEvent`]):
//!
//! * [`FlowStart`]: a flow entered the worker's flow table (its first packet was admitted);
//! * [`FlowEnd`]: a flow left the table (idle timeout, or the lingering after a FIN/RST
//!   close), with packets and bytes per direction, first/last seen and an [`EndReason`];
//! * [`FlowUpdate`]: a flow still in the table reports its running totals (same counters as
//!   the flow end): when a TCP connection closes (its FIN/RST transition, so a closed flow's
//!   traffic is not reported only after TIME_WAIT), and periodically for flows with packets
//!   since the previous report (see [`crate::flow::UpdateSweep`]). Totals are cumulative:
//!   the consumer subtracts what it was told before;
//! * [`DenyRecord`]: a packet was refused by the policy (`enforce`, dropped) or would have been
//!   (`monitor`, forwarded), with its flow key, rule id, policy-clause back-reference, table
//!   epoch and the drop reason. Would-deny records are emitted once per flow and table epoch
//!   (when the flow is classified), deny records once per refused packet (a denied flow takes
//!   no flow-table slot, so each of its packets is decided afresh).
//!
//! **What it never does.** A full ring never blocks or slows the worker: the record is
//! dropped and counted in [`EventDrain::lost`]. Sending allocates nothing (the ring is an
//! array allocated when the channel is made) and takes no lock (the consumer only ever uses
//! `try_recv`, so no receiver is parked for the sender to wake). Off the packet path, a
//! stopping worker about to write all its flow ends at once waits for room through
//! [`RingWatch`] instead of losing them.
//!
//! **Implementation.** `std::sync::mpsc::sync_channel(capacity)`: for a non-zero capacity it
//! is the bounded array channel (crossbeam-channel's design, vendored into std), a
//! preallocated ring whose `try_send` is a few atomic operations. It avoids a new dependency
//! and has the same cost profile as `crossbeam_queue::ArrayQueue` for one producer.
//!
//! **Time.** `at`, `first_seen` and `last_seen` are in the worker's ticks: microseconds of a
//! monotonic clock that starts at 0 when the worker is made (`septa replay` uses the same
//! clock; see [`crate::worker::Clock`]). The consumer converts them to wall time if it needs to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use crossbeam_utils::CachePadded;
use septa_classifier::FlowKey;

use crate::drop::DropReason;

/// Records each worker's ring holds when nothing else is configured.
pub const DEFAULT_RING_CAPACITY: usize = 4096;

/// What a rule table decided, as carried by events (compact and `Copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventDecision {
    /// The matching rule id; `None` when the table's default decided.
    pub rule: Option<u32>,
    /// The rule's back-reference to its policy clause (resolve it with the compiled policy's
    /// `clause_of_source`); `None` for the default.
    pub source: Option<u64>,
    /// Epoch of the rule table that decided (0: no policy was installed, fail-open).
    pub epoch: u64,
    /// Allow, deny or inspect.
    pub action: EventAction,
    /// The mode of the deciding rule: `true` for monitor (refusals are only recorded).
    pub monitor: bool,
}

/// The action of an [`EventDecision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventAction {
    /// Forward.
    Allow,
    /// Refuse.
    Deny,
    /// Forward through L7 inspection hook `0`.
    Inspect(u32),
}

/// A flow was admitted into a worker's flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowStart {
    /// The flow's key as its first packet had it (originator → responder, `in_port` set).
    /// For ICMP echo flows `sport` and `dport` are the echo identifier.
    pub key: FlowKey,
    /// Tick of the first packet.
    pub at: u64,
    /// The decision that admitted it.
    pub decision: EventDecision,
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Idle past its state's timeout while open (or half-open).
    Timeout,
    /// Closed by FINs in both directions, then aged out of TIME_WAIT.
    Closed,
    /// Closed by a RST, then aged out.
    Reset,
    /// Still open when the worker flushed its table (end of an offline replay, shutdown).
    Flushed,
}

impl EndReason {
    /// Stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Timeout => "timeout",
            EndReason::Closed => "closed",
            EndReason::Reset => "reset",
            EndReason::Flushed => "flushed",
        }
    }
}

/// A flow left a worker's flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEnd {
    /// The flow's key as its first packet had it.
    pub key: FlowKey,
    /// Tick of the first packet.
    pub first_seen: u64,
    /// Tick of the last packet.
    pub last_seen: u64,
    /// Tick at which it was removed.
    pub at: u64,
    /// Packets `[original, reply]`.
    pub packets: [u64; 2],
    /// IP bytes (IP header included, link layer excluded) `[original, reply]`.
    pub bytes: [u64; 2],
    /// Why it ended.
    pub reason: EndReason,
    /// The last decision cached for it (epoch 0 for flows admitted fail-open).
    pub decision: EventDecision,
    /// The application protocol identified, for flows under a function-code conduit (the
    /// conduit's protocol) or sampled for ML; `Unknown` otherwise.
    pub l7: septa_l7::L7Proto,
}

impl FlowEnd {
    /// Ticks between the first and the last packet.
    pub fn duration(&self) -> u64 {
        self.last_seen.saturating_sub(self.first_seen)
    }
}

/// Why a [`FlowUpdate`] was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateCause {
    /// The periodic sweep found packets since its previous visit.
    Interval,
    /// The TCP connection closed by FINs (entered TIME_WAIT); its end follows after it.
    Closed,
    /// The TCP connection was reset; its end follows after the lingering.
    Reset,
}

impl UpdateCause {
    /// Stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            UpdateCause::Interval => "interval",
            UpdateCause::Closed => "closed",
            UpdateCause::Reset => "reset",
        }
    }
}

/// A live flow's running totals (it is still in the table; its [`FlowEnd`] comes later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowUpdate {
    /// The flow's key as its first packet had it.
    pub key: FlowKey,
    /// Tick of the first packet.
    pub first_seen: u64,
    /// Tick of the last packet so far.
    pub last_seen: u64,
    /// Tick at which the update was made.
    pub at: u64,
    /// Packets so far `[original, reply]` (cumulative since the flow started).
    pub packets: [u64; 2],
    /// IP bytes so far `[original, reply]` (cumulative).
    pub bytes: [u64; 2],
    /// Why it was sent.
    pub cause: UpdateCause,
    /// The last decision cached for it.
    pub decision: EventDecision,
    /// The application protocol identified so far (see [`FlowEnd::l7`]).
    pub l7: septa_l7::L7Proto,
}

/// A packet refused (or, in monitor mode, that would have been) by the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenyRecord {
    /// The flow key the policy judged (the flow's original direction for tracked flows).
    pub key: FlowKey,
    /// Tick of the packet.
    pub at: u64,
    /// The deciding rule, clause and epoch.
    pub decision: EventDecision,
    /// `policy` or `l7_unavailable` (enforce: the packet was dropped under it; monitor: it was
    /// forwarded and this is what enforcing would have dropped it as), or `no_policy`.
    pub reason: DropReason,
    /// `true` for a would-deny record (monitor mode: forwarded).
    pub would_deny: bool,
    /// IP bytes of the packet (IP header included, link layer excluded).
    pub bytes: u32,
    /// For a refusal by a function-code conduit (`l7_denied`, `l7_malformed`): the message the
    /// conduit refused, e.g. Modbus function 6. Set on the record of the refused message (and
    /// on a monitored flow's would-deny record); `None` for other reasons and for the later
    /// packets an earlier refusal blocked. A compact `Copy` code (protocol, function, unit or
    /// range); render it off the worker with [`DenyRecord::l7_text`].
    pub l7: Option<septa_l7::DenyReason>,
}

impl DenyRecord {
    /// The conduit's refusal in words, e.g. `modbus function 6 (write_single_register) not
    /// allowed`; the control side appends the conduit (clause) it resolves from `decision`.
    /// Allocates: call it on the control side, never on a worker.
    pub fn l7_text(&self) -> Option<String> {
        self.l7.map(|r| r.to_string())
    }
}

/// One record of a worker's event ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEvent {
    /// See [`FlowStart`].
    Start(FlowStart),
    /// See [`FlowUpdate`].
    Update(FlowUpdate),
    /// See [`FlowEnd`].
    End(FlowEnd),
    /// See [`DenyRecord`].
    Deny(DenyRecord),
}

/// Producing end of one worker's ring. Owned by the worker (single producer).
#[derive(Debug)]
pub struct EventSink {
    tx: Option<SyncSender<FlowEvent>>,
    lost: Arc<CachePadded<AtomicU64>>,
    sent: Arc<CachePadded<AtomicU64>>,
    taken: Arc<CachePadded<AtomicU64>>,
    capacity: usize,
}

impl EventSink {
    /// A sink that discards everything without counting (no consumer configured).
    pub fn disabled() -> Self {
        EventSink {
            tx: None,
            lost: Arc::default(),
            sent: Arc::default(),
            taken: Arc::default(),
            capacity: 0,
        }
    }

    /// A handle that tells how full this ring is (see [`RingWatch`]); take it before the sink
    /// goes to its worker.
    pub fn watch(&self) -> RingWatch {
        RingWatch {
            enabled: self.enabled(),
            sent: Arc::clone(&self.sent),
            taken: Arc::clone(&self.taken),
            capacity: self.capacity,
        }
    }

    /// Is anyone listening?
    #[inline]
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Offer a record; when the ring is full (or the drain is gone) it is counted as lost.
    #[inline]
    pub fn emit(&self, ev: FlowEvent) {
        let Some(tx) = &self.tx else { return };
        // Single writer of both counters: plain load + store, no locked instruction.
        let c = match tx.try_send(ev) {
            Ok(()) => &self.sent,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => &self.lost,
        };
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

impl EventSink {
    /// Count a record lost without offering it (the worker had no room to keep it until it
    /// could be sent).
    #[cold]
    pub fn count_lost(&self) {
        if self.tx.is_some() {
            self.lost
                .store(self.lost.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }
}

/// Consuming end of one worker's ring; give it to an [`EventDrain`].
#[derive(Debug)]
pub struct EventSource {
    rx: Receiver<FlowEvent>,
    lost: Arc<CachePadded<AtomicU64>>,
    sent: Arc<CachePadded<AtomicU64>>,
    taken: Arc<CachePadded<AtomicU64>>,
}

/// A ring of `capacity` records (at least 1): the worker's sink and the control side's source.
pub fn ring(capacity: usize) -> (EventSink, EventSource) {
    let capacity = capacity.max(1);
    let (tx, rx) = sync_channel(capacity);
    let lost = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let sent = Arc::new(CachePadded::new(AtomicU64::new(0)));
    let taken = Arc::new(CachePadded::new(AtomicU64::new(0)));
    (
        EventSink {
            tx: Some(tx),
            lost: Arc::clone(&lost),
            sent: Arc::clone(&sent),
            taken: Arc::clone(&taken),
            capacity,
        },
        EventSource {
            rx,
            lost,
            sent,
            taken,
        },
    )
}

/// How full one worker's ring is, from any thread: records accepted by the ring minus records
/// the drain has taken. Used off the packet path only, by a worker that is about to write many
/// records at once (the flow ends of its final flush at shutdown): it waits for room instead of
/// losing them to a ring still full of the last denies.
#[derive(Clone, Debug)]
pub struct RingWatch {
    enabled: bool,
    sent: Arc<CachePadded<AtomicU64>>,
    taken: Arc<CachePadded<AtomicU64>>,
    capacity: usize,
}

impl RingWatch {
    /// The ring's capacity (0 for a disabled sink).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records in the ring now: exact from the producing thread between its sends, approximate
    /// (off by the records in flight) from any other thread.
    pub fn queued(&self) -> usize {
        let sent = self.sent.load(Ordering::Acquire);
        let taken = self.taken.load(Ordering::Acquire);
        usize::try_from(sent.saturating_sub(taken)).unwrap_or(usize::MAX)
    }

    /// Waits (yielding the CPU) until the ring has room for `n` records (at most its capacity)
    /// or `give_up` has passed. Returns whether there is room; a disabled sink always has.
    pub fn wait_for_room(&self, n: usize, give_up: std::time::Instant) -> bool {
        if !self.enabled {
            return true;
        }
        let n = n.min(self.capacity);
        loop {
            if self.capacity - self.queued().min(self.capacity) >= n {
                return true;
            }
            if std::time::Instant::now() >= give_up {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// The control side's view of every worker's ring. Poll it from any thread, as often as
/// convenient; a slow consumer only loses records (counted), it never slows a worker.
///
/// ```
/// use septa_dataplane::events::{EventDrain, FlowEvent, ring};
/// let (sink, source) = ring(16);
/// let mut drain = EventDrain::new(vec![source]);
/// // ... hand `sink` to a worker (`WorkerState::events`), run it ...
/// # drop(sink);
/// let mut ends = 0;
/// drain.drain(usize::MAX, |worker, ev| {
///     if let FlowEvent::End(e) = ev { ends += 1; let _ = (worker, e.packets); }
/// });
/// assert_eq!(drain.lost(), 0);
/// ```
#[derive(Debug, Default)]
pub struct EventDrain {
    sources: Vec<EventSource>,
}

impl EventDrain {
    /// A drain over these sources; the index of a source is the worker number passed to the
    /// callback of [`EventDrain::drain`].
    pub fn new(sources: Vec<EventSource>) -> Self {
        EventDrain { sources }
    }

    /// Add one more worker's source; returns its worker number.
    pub fn push(&mut self, source: EventSource) -> usize {
        self.sources.push(source);
        self.sources.len() - 1
    }

    /// Take up to `max` records, round-robin over workers in order, calling `f(worker, record)`
    /// for each. Never blocks. Returns how many were taken.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(usize, FlowEvent)) -> usize {
        let mut n = 0;
        for (w, s) in self.sources.iter().enumerate() {
            let before = n;
            while n < max {
                match s.rx.try_recv() {
                    Ok(ev) => {
                        f(w, ev);
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            if n > before {
                // The only writer of `taken`: plain load + store.
                let taken = s.taken.load(Ordering::Relaxed) + (n - before) as u64;
                s.taken.store(taken, Ordering::Release);
            }
        }
        n
    }

    /// Records lost so far because a ring was full, summed over workers.
    pub fn lost(&self) -> u64 {
        self.sources
            .iter()
            .map(|s| s.lost.load(Ordering::Relaxed))
            .sum()
    }

    /// Records lost so far by worker `w`.
    pub fn lost_by(&self, w: usize) -> u64 {
        self.sources
            .get(w)
            .map_or(0, |s| s.lost.load(Ordering::Relaxed))
    }

    /// Records accepted into the rings so far, summed over workers (taken or still queued).
    pub fn sent(&self) -> u64 {
        self.sources
            .iter()
            .map(|s| s.sent.load(Ordering::Relaxed))
            .sum()
    }
}

/// Counts of drained records by kind (what `septa replay --json` prints).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EventCounts {
    /// Flow-start records.
    pub flow_start: u64,
    /// Flow-update records.
    pub flow_update: u64,
    /// Flow-end records.
    pub flow_end: u64,
    /// Deny records (enforce mode, dropped).
    pub deny: u64,
    /// Would-deny records (monitor mode, forwarded).
    pub would_deny: u64,
    /// Records lost to full rings.
    pub lost: u64,
}

impl EventCounts {
    /// Count one record.
    pub fn add(&mut self, ev: &FlowEvent) {
        match ev {
            FlowEvent::Start(_) => self.flow_start += 1,
            FlowEvent::Update(_) => self.flow_update += 1,
            FlowEvent::End(_) => self.flow_end += 1,
            FlowEvent::Deny(d) if d.would_deny => self.would_deny += 1,
            FlowEvent::Deny(_) => self.deny += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end() -> FlowEvent {
        FlowEvent::End(FlowEnd {
            key: FlowKey::default(),
            first_seen: 1,
            last_seen: 5,
            at: 9,
            packets: [1, 2],
            bytes: [3, 4],
            reason: EndReason::Reset,
            decision: EventDecision {
                rule: Some(1),
                source: None,
                epoch: 1,
                action: EventAction::Allow,
                monitor: false,
            },
            l7: septa_l7::L7Proto::Unknown,
        })
    }

    #[test]
    fn the_watch_counts_what_the_ring_holds_and_gives_up_at_the_deadline() {
        let (sink, source) = ring(2);
        let watch = sink.watch();
        let mut drain = EventDrain::new(vec![source]);
        assert_eq!((watch.capacity(), watch.queued()), (2, 0));
        sink.emit(end());
        sink.emit(end());
        assert_eq!(watch.queued(), 2);
        let soon = std::time::Instant::now() + std::time::Duration::from_millis(20);
        assert!(!watch.wait_for_room(1, soon), "a full ring has no room");
        assert_eq!(drain.drain(1, |_, _| {}), 1);
        assert_eq!(watch.queued(), 1);
        assert!(watch.wait_for_room(1, soon));
        // More than the capacity is asked as the capacity: never an endless wait.
        assert_eq!(drain.drain(usize::MAX, |_, _| {}), 1);
        assert!(watch.wait_for_room(100, std::time::Instant::now()));
        assert!(
            EventSink::disabled()
                .watch()
                .wait_for_room(1, std::time::Instant::now())
        );
    }

    #[test]
    fn a_producer_that_waits_for_room_loses_nothing_to_a_slow_drain() {
        const RECORDS: usize = 2_000;
        let (sink, source) = ring(8);
        let watch = sink.watch();
        let producer = std::thread::spawn(move || {
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
            for part in 0..RECORDS / 4 {
                assert!(
                    watch.wait_for_room(4, give_up),
                    "part {part}: the drain stalled"
                );
                for _ in 0..4 {
                    sink.emit(end());
                }
            }
        });
        let mut drain = EventDrain::new(vec![source]);
        let mut got = 0;
        loop {
            // A drain slower than the producer: a few records per pass, with pauses.
            let n = drain.drain(3, |_, _| {});
            got += n;
            if n == 0 && producer.is_finished() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        producer.join().unwrap();
        got += drain.drain(usize::MAX, |_, _| {});
        assert_eq!(
            (got, drain.lost(), drain.sent()),
            (RECORDS, 0, RECORDS as u64)
        );
    }

    #[test]
    fn full_ring_loses_and_counts_never_blocks() {
        let (sink, source) = ring(2);
        let mut drain = EventDrain::new(vec![source]);
        for _ in 0..5 {
            sink.emit(end());
        }
        assert_eq!(drain.lost(), 3);
        assert_eq!(drain.sent(), 2);
        let mut got = Vec::new();
        assert_eq!(drain.drain(usize::MAX, |w, e| got.push((w, e))), 2);
        assert_eq!(got, vec![(0, end()), (0, end())]);
        sink.emit(end());
        assert_eq!(drain.drain(usize::MAX, |_, _| {}), 1);
        assert_eq!(drain.lost_by(0), 3);
    }

    #[test]
    fn drain_respects_max_and_worker_numbers() {
        let (a, sa) = ring(8);
        let (b, sb) = ring(8);
        let mut drain = EventDrain::default();
        assert_eq!(drain.push(sa), 0);
        assert_eq!(drain.push(sb), 1);
        a.emit(end());
        b.emit(end());
        b.emit(end());
        let mut ws = Vec::new();
        assert_eq!(drain.drain(2, |w, _| ws.push(w)), 2);
        assert_eq!(drain.drain(9, |w, _| ws.push(w)), 1);
        assert_eq!(ws, vec![0, 1, 1]);
    }

    #[test]
    fn a_gone_drain_counts_as_lost_and_disabled_sinks_do_nothing() {
        let (sink, source) = ring(4);
        let lost = Arc::clone(&source.lost);
        drop(source);
        sink.emit(end());
        assert_eq!(lost.load(Ordering::Relaxed), 1);
        let off = EventSink::disabled();
        assert!(!off.enabled());
        off.emit(end());
    }

    #[test]
    fn duration_and_counts() {
        let FlowEvent::End(e) = end() else {
            unreachable!()
        };
        assert_eq!(e.duration(), 4);
        let mut c = EventCounts::default();
        c.add(&end());
        assert_eq!(c.flow_end, 1);
    }
}
