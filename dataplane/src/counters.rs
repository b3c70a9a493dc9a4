//! Per-worker counters and the summed [`Stats`] snapshot.
//!
//! Each worker is the only writer of its [`WorkerCounters`]: it updates them with a relaxed
//! load + store (no locked read-modify-write on the hot path). Any thread may read them at any
//! time (relaxed loads: a snapshot is not atomic across counters, each value is exact and
//! monotonic). Per-port blocks and the drop array sit on their own cache lines so that the
//! reader's loads do not bounce the lines the writer is using more than necessary.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::drop::DropReason;
use crate::io::PortId;

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    // Single writer: a plain load and store cannot lose updates and avoids a locked instruction.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Counters of one port, as seen by one worker.
#[derive(Debug, Default)]
pub struct PortCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
}

/// Counters of one worker. Shared as `Arc<WorkerCounters>` between the worker (writer) and
/// stats readers.
#[derive(Debug)]
pub struct WorkerCounters {
    ports: Box<[CachePadded<PortCounters>]>,
    drops: CachePadded<[AtomicU64; DropReason::COUNT]>,
    /// ARP and other non-IP frames forwarded.
    non_ip_forwarded: CachePadded<AtomicU64>,
    /// IP packets a monitor-mode deny forwarded (what enforcing would have dropped).
    would_deny: CachePadded<AtomicU64>,
    /// Poll-loop iterations (the liveness signal: it moves on an idle worker too).
    polls: CachePadded<AtomicU64>,
    /// Set when the worker's run loop has returned.
    stopped: AtomicBool,
}

impl WorkerCounters {
    /// Zeroed counters for `port_count` ports.
    pub fn new(port_count: u16) -> Self {
        WorkerCounters {
            ports: (0..port_count)
                .map(|_| CachePadded::new(PortCounters::default()))
                .collect(),
            drops: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
            non_ip_forwarded: CachePadded::new(AtomicU64::new(0)),
            would_deny: CachePadded::new(AtomicU64::new(0)),
            polls: CachePadded::new(AtomicU64::new(0)),
            stopped: AtomicBool::new(false),
        }
    }

    /// Number of ports counted.
    pub fn port_count(&self) -> u16 {
        self.ports.len() as u16
    }

    /// Count received packets (writer only).
    #[inline]
    pub fn rx(&self, port: PortId, packets: usize, bytes: usize) {
        if let Some(p) = self.ports.get(usize::from(port)) {
            bump(&p.rx_packets, packets as u64);
            bump(&p.rx_bytes, bytes as u64);
        }
    }

    /// Count transmitted packets (writer only).
    #[inline]
    pub fn tx(&self, port: PortId, packets: usize, bytes: usize) {
        if let Some(p) = self.ports.get(usize::from(port)) {
            bump(&p.tx_packets, packets as u64);
            bump(&p.tx_bytes, bytes as u64);
        }
    }

    /// Count dropped packets (writer only).
    #[inline]
    pub fn dropped(&self, reason: DropReason, packets: usize) {
        bump(&self.drops[reason.index()], packets as u64);
    }

    /// Count a forwarded non-IP frame (writer only).
    #[inline]
    pub fn non_ip(&self) {
        bump(&self.non_ip_forwarded, 1);
    }

    /// Count a packet forwarded because its deny rule is in monitor mode (writer only).
    #[inline]
    pub fn would_deny(&self) {
        bump(&self.would_deny, 1);
    }

    /// Drops counted under `reason` so far.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Relaxed)
    }

    /// Count one poll-loop iteration (writer only; once per poll, busy or idle).
    #[inline]
    pub fn polled(&self) {
        bump(&self.polls, 1);
    }

    /// Poll-loop iterations so far: a reader that sees it stand still for seconds knows the
    /// worker is stuck (per-port counters stand still on an idle worker too).
    pub fn polls(&self) -> u64 {
        self.polls.load(Relaxed)
    }

    /// Mark the worker's run loop as returned (writer only, once at exit).
    pub fn set_stopped(&self) {
        self.stopped.store(true, Relaxed);
    }

    /// Whether the worker's run loop has returned.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Relaxed)
    }
}

/// How often (worker clock, microseconds) a worker's flow table, router and feature sampler
/// publish their counters for other threads ([`PublishedWords`], [`PublishTimer`]).
pub const PUBLISH_US: u64 = 100_000;

/// Counters that a single-threaded owner (a worker's flow table, its router) keeps as plain
/// integers and copies here for other threads (the control side's health and metrics): relaxed
/// atomics on cache lines of their own, stored at most once per interval of the owner's clock
/// ([`PublishTimer`]), between polls, never per packet. A reader sees values at most one
/// interval old; each word is exact, a snapshot is not atomic across words.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct PublishedWords<const N: usize> {
    words: [AtomicU64; N],
}

impl<const N: usize> Default for PublishedWords<N> {
    fn default() -> Self {
        PublishedWords {
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl<const N: usize> PublishedWords<N> {
    /// The words last published (zeros before the first publication).
    pub fn load(&self) -> [u64; N] {
        std::array::from_fn(|i| self.words[i].load(Relaxed))
    }

    /// Publish `values` (the owner only).
    pub(crate) fn store(&self, values: &[u64; N]) {
        for (w, v) in self.words.iter().zip(values) {
            w.store(*v, Relaxed);
        }
    }
}

/// When an owner publishes its counters next ([`PublishedWords`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishTimer {
    /// Owner tick of the next publication (0: the first call is due).
    next: u64,
}

impl PublishTimer {
    /// Whether a publication is due at `now`; if so, the next one is due `interval` ticks
    /// later. One comparison when not due.
    #[inline]
    pub fn due(&mut self, now: u64, interval: u64) -> bool {
        if now >= self.next {
            self.next = now.saturating_add(interval);
            true
        } else {
            false
        }
    }

    /// Make the next [`Self::due`] true whatever the time: at stop, so that what was counted
    /// since the last publication reaches the readers too.
    pub fn force(&mut self) {
        self.next = 0;
    }
}

/// Totals of one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received (frame lengths).
    pub rx_bytes: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
}

/// A snapshot summed over workers. Plain data; the binary serialises it as it likes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Per port, indexed by [`PortId`].
    pub ports: Vec<PortStats>,
    /// Drops per reason, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// ARP and other non-IP frames forwarded.
    pub non_ip_forwarded: u64,
    /// IP packets forwarded that a monitor-mode deny would have dropped (not drops).
    pub would_deny: u64,
}

// Written out: `Default` is derived only for arrays of up to 32 elements, and the drop-reason
// table is longer.
impl Default for Stats {
    fn default() -> Self {
        Stats {
            ports: Vec::new(),
            drops: [0; DropReason::COUNT],
            non_ip_forwarded: 0,
            would_deny: 0,
        }
    }
}

impl Stats {
    /// Sum the counters of `workers` (any thread; relaxed reads).
    pub fn collect<'a, I>(workers: I) -> Stats
    where
        I: IntoIterator<Item = &'a WorkerCounters>,
    {
        let mut s = Stats::default();
        for w in workers {
            if s.ports.len() < w.ports.len() {
                s.ports.resize(w.ports.len(), PortStats::default());
            }
            for (sum, p) in s.ports.iter_mut().zip(w.ports.iter()) {
                sum.rx_packets += p.rx_packets.load(Relaxed);
                sum.rx_bytes += p.rx_bytes.load(Relaxed);
                sum.tx_packets += p.tx_packets.load(Relaxed);
                sum.tx_bytes += p.tx_bytes.load(Relaxed);
            }
            for (sum, d) in s.drops.iter_mut().zip(w.drops.iter()) {
                *sum += d.load(Relaxed);
            }
            s.non_ip_forwarded += w.non_ip_forwarded.load(Relaxed);
            s.would_deny += w.would_deny.load(Relaxed);
        }
        s
    }

    /// Drops under one reason.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// `(reason, count)` for every reason with a non-zero count, in table order.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.drops(r)))
            .filter(|&(_, n)| n != 0)
    }

    /// Packets received on all ports.
    pub fn rx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.rx_packets).sum()
    }

    /// Packets transmitted on all ports.
    pub fn tx_packets(&self) -> u64 {
        self.ports.iter().map(|p| p.tx_packets).sum()
    }
}

/// A human-readable table: one line per port, then non-zero drop reasons.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>4} {:>14} {:>16} {:>14} {:>16}",
            "port", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes"
        )?;
        for (i, p) in self.ports.iter().enumerate() {
            writeln!(
                f,
                "{:>4} {:>14} {:>16} {:>14} {:>16}",
                i, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes
            )?;
        }
        writeln!(f, "non_ip_forwarded {}", self.non_ip_forwarded)?;
        writeln!(f, "would_deny {}", self.would_deny)?;
        writeln!(f, "drops {}", self.total_drops())?;
        for (r, n) in self.nonzero_drops() {
            writeln!(f, "  {:<24} {:>14}", r.as_str(), n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers_and_prints() {
        let a = WorkerCounters::new(2);
        let b = WorkerCounters::new(2);
        a.rx(0, 1, 100);
        a.tx(1, 1, 100);
        b.rx(1, 1, 60);
        b.dropped(DropReason::Policy, 1);
        a.dropped(DropReason::Policy, 2);
        a.non_ip();
        a.rx(7, 1, 1); // unknown port: ignored, not a panic
        let s = Stats::collect([&a, &b]);
        assert_eq!(s.ports[0].rx_packets, 1);
        assert_eq!(s.ports[0].rx_bytes, 100);
        assert_eq!(s.ports[1].tx_packets, 1);
        assert_eq!(s.ports[1].rx_bytes, 60);
        assert_eq!(s.drops(DropReason::Policy), 3);
        assert_eq!(s.total_drops(), 3);
        assert_eq!(s.non_ip_forwarded, 1);
        let text = s.to_string();
        assert!(text.contains("policy"), "{text}");
        assert!(
            !text.contains("tx_full"),
            "zero reasons are omitted: {text}"
        );
    }

    #[test]
    fn readable_from_another_thread() {
        let c = std::sync::Arc::new(WorkerCounters::new(1));
        let reader = {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..1000 {
                    let now = Stats::collect([&*c]).ports[0].rx_packets;
                    assert!(now >= last, "counters are monotonic");
                    last = now;
                }
            })
        };
        for _ in 0..10_000 {
            c.rx(0, 1, 64);
        }
        reader.join().unwrap();
        assert_eq!(Stats::collect([&*c]).ports[0].rx_packets, 10_000);
    }

    #[test]
    fn published_words_sit_on_their_own_line_and_the_timer_fires_once_per_interval() {
        let words: PublishedWords<2> = PublishedWords::default();
        assert_eq!(std::mem::align_of::<PublishedWords<2>>(), 64);
        assert_eq!(words.load(), [0, 0], "nothing published yet");
        words.store(&[1, 2]);
        assert_eq!(words.load(), [1, 2]);
        let mut t = PublishTimer::default();
        let fired: Vec<u64> = [5, 6, 50, 104, 105, 106, 204, 205, 1000]
            .into_iter()
            .filter(|&now| t.due(now, 100))
            .collect();
        assert_eq!(fired, [5, 105, 205, 1000]);
        // A clock near its end does not wrap into firing on every call.
        assert!(t.due(u64::MAX - 1, 100));
        assert!(!t.due(u64::MAX - 1, 100));
    }
}
