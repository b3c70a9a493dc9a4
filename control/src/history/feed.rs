//! The learning feed: observed flows from the data plane's event drain into the flow history,
//! the rule-usage counters and the configured flow exporters (IPFIX, JSON-lines flow log), on
//! two threads of its own: `septa-learn` aggregates, `septa-learn-db` writes.
//!
//! **Never slows the data plane.** Producers (the thread draining the workers' event rings)
//! call [`FlowFeed::offer`], a `try_send` into a bounded channel: when the feed falls behind
//! (slow disk, slow collector) records are dropped and counted ([`FeedStats::dropped`]), never
//! queued without bound and never waited for.
//!
//! **Aggregate in memory, write in windows.** `septa-learn` takes records off the channel and
//! folds them into a [`Window`] (one entry per history key, rule hits per rule id; no
//! allocation per record), and collects them for the exporters. Every [`FeedConfig::flush`],
//! or sooner when the window holds [`FeedConfig::window_keys`] keys, the window goes to
//! `septa-learn-db`, which writes it to the history in one transaction (one appended row per
//! key, a prepared statement) and its rule hits to the usage counters (through a
//! [`RevisionSource`] that maps a revision hash to its compiled policy); exporters get batches
//! of up to [`FeedConfig::batch`] records on the same thread. Meanwhile `septa-learn` keeps
//! draining the channel into a fresh window, so a write never stalls the queue. One window
//! waits at most (a bounded hand-off): if the writer is still busy with the one before,
//! aggregation pauses, the channel fills and further offers are dropped and counted. A
//! failing sink is counted and retried with the next batch; it never stops the others.
//! Memory is bounded: a window takes about 120 bytes a key (some 4 MB at the default 32,768
//! keys) and at most four exist (filling, queued, being written, kept for reuse), plus the
//! channel's records.
//!
//! **Durability.** History is observational, not the audit log: `history.db` runs in WAL mode
//! with `synchronous=NORMAL`, so a crash or power loss loses at most the window in memory (up
//! to one `flush`, 1 s by default) and the transactions not yet checkpointed since the last
//! sync; it never corrupts the file. Stopping writes what is held.
//!
//! **Stopping.** [`FeedHandle::stop`] (or dropping every [`FlowFeed`]) makes the threads write
//! what they hold and exit; [`FeedHandle::stop`] then joins them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{FlowHistory, ObservedFlow, Window};
use crate::CompiledPolicy;
use crate::export::ipfix::IpfixExporter;
use crate::export::{ExportError, FlowLog};

/// Bounds and pacing of the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// Records the channel holds; beyond, offers are dropped and counted.
    pub capacity: usize,
    /// Most records per exporter delivery.
    pub batch: usize,
    /// Most distinct history keys aggregated in memory before the window is written.
    pub window_keys: usize,
    /// Longest a record waits before its window (and its exporter batch) is written.
    pub flush: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            capacity: 65_536,
            batch: 8192,
            window_keys: 32_768,
            flush: Duration::from_secs(1),
        }
    }
}

/// Counters of the feed (relaxed atomics; read them with [`FeedStats::snapshot`]).
#[derive(Debug, Default)]
pub struct FeedStats {
    offered: AtomicU64,
    dropped: AtomicU64,
    ingested: AtomicU64,
    batches: AtomicU64,
    history_errors: AtomicU64,
    usage_attributed: AtomicU64,
    usage_unattributed: AtomicU64,
    exported: AtomicU64,
    export_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`FeedStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FeedStatsSnapshot {
    /// Records accepted into the queue.
    pub offered: u64,
    /// Records dropped because the queue was full (or the feed had stopped).
    pub dropped: u64,
    /// Records written to the history.
    pub ingested: u64,
    /// Batches written.
    pub batches: u64,
    /// Batches the history failed to write.
    pub history_errors: u64,
    /// Decisions counted against a policy clause.
    pub usage_attributed: u64,
    /// Decisions whose revision or rule could not be resolved (not counted).
    pub usage_unattributed: u64,
    /// Batch deliveries to exporters that succeeded.
    pub exported: u64,
    /// Batch deliveries to exporters that failed.
    pub export_errors: u64,
    /// The latest error, if any.
    pub last_error: Option<String>,
}

impl FeedStats {
    /// The current values.
    pub fn snapshot(&self) -> FeedStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FeedStatsSnapshot {
            offered: g(&self.offered),
            dropped: g(&self.dropped),
            ingested: g(&self.ingested),
            batches: g(&self.batches),
            history_errors: g(&self.history_errors),
            usage_attributed: g(&self.usage_attributed),
            usage_unattributed: g(&self.usage_unattributed),
            exported: g(&self.exported),
            export_errors: g(&self.export_errors),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn error(&self, counter: &AtomicU64, msg: String) {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        // The first failure and then one in a thousand reach the log; all are counted.
        if n.is_multiple_of(1000) {
            tracing::warn!("learning feed: {msg}");
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(msg);
    }
}

/// Where batches of observed flows go besides the history.
pub trait FlowSink: Send {
    /// Short name for messages (`ipfix`, `flow_log`).
    fn name(&self) -> &'static str;
    /// Delivers one batch.
    fn write(&mut self, flows: &[ObservedFlow]) -> Result<(), ExportError>;
}

impl FlowSink for FlowLog {
    fn name(&self) -> &'static str {
        "flow_log"
    }
    fn write(&mut self, flows: &[ObservedFlow]) -> Result<(), ExportError> {
        FlowLog::write(self, flows)
    }
}

impl FlowSink for IpfixExporter {
    fn name(&self) -> &'static str {
        "ipfix"
    }
    fn write(&mut self, flows: &[ObservedFlow]) -> Result<(), ExportError> {
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        self.export(flows, now_s).map(|_| ())
    }
}

/// Maps a revision's content hash to its compiled policy (for rule usage).
pub trait RevisionSource: Send {
    /// The compiled policy of `revision`, if known.
    fn compiled(&self, revision: &str) -> Option<Arc<CompiledPolicy>>;
}

impl<F: Fn(&str) -> Option<Arc<CompiledPolicy>> + Send> RevisionSource for F {
    fn compiled(&self, revision: &str) -> Option<Arc<CompiledPolicy>> {
        self(revision)
    }
}

/// The producing end (cheap to clone; never blocks).
#[derive(Clone, Debug)]
pub struct FlowFeed {
    tx: SyncSender<ObservedFlow>,
    stats: Arc<FeedStats>,
}

impl FlowFeed {
    /// Queues `flow`; returns `false` (and counts a drop) when the queue is full or closed.
    pub fn offer(&self, flow: ObservedFlow) -> bool {
        match self.tx.try_send(flow) {
            Ok(()) => {
                self.stats.offered.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The feed's counters.
    pub fn stats(&self) -> &Arc<FeedStats> {
        &self.stats
    }
}

/// The feed's threads.
#[derive(Debug)]
pub struct FeedHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<FeedStats>,
}

impl FeedHandle {
    /// The feed's counters.
    pub fn stats(&self) -> &Arc<FeedStats> {
        &self.stats
    }

    /// Writes what is queued and joins the threads.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FeedHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What the feed writes to.
pub struct FeedTargets {
    /// The history (`None`: exporters only).
    pub history: Option<FlowHistory>,
    /// Compiled policies by revision hash, for rule usage.
    pub revisions: Box<dyn RevisionSource>,
    /// Exporters.
    pub sinks: Vec<Box<dyn FlowSink>>,
}

/// Work for `septa-learn-db`.
enum Job {
    /// A window for the history and rule usage.
    History(Box<Window>),
    /// Records for the exporters.
    Sinks(Vec<ObservedFlow>),
}

/// Starts the feed threads; returns the producing end and the handle.
pub fn spawn(targets: FeedTargets, cfg: FeedConfig) -> std::io::Result<(FlowFeed, FeedHandle)> {
    let (tx, rx) = sync_channel(cfg.capacity.max(1));
    // One job queued while one is written: a bounded hand-off.
    let (jobs_tx, jobs_rx) = sync_channel(1);
    // Written windows come back to be reused (their maps keep their capacity).
    let (spare_tx, spare_rx) = sync_channel(1);
    let stats = Arc::new(FeedStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut aggregator = Aggregator {
        rx,
        jobs: Some(jobs_tx),
        spare: spare_rx,
        history: targets.history.is_some(),
        sinks: !targets.sinks.is_empty(),
        cfg,
        stats: Arc::clone(&stats),
        stop: Arc::clone(&stop),
    };
    let mut writer = Writer {
        jobs: jobs_rx,
        spare: spare_tx,
        targets,
        stats: Arc::clone(&stats),
    };
    let writer = std::thread::Builder::new()
        .name("septa-learn-db".into())
        .spawn(move || writer.run())?;
    let thread = std::thread::Builder::new()
        .name("septa-learn".into())
        .spawn(move || {
            aggregator.run();
            // The writer ends once the aggregator's end of the hand-off is gone.
            drop(aggregator);
            let _ = writer.join();
        })?;
    Ok((
        FlowFeed {
            tx,
            stats: Arc::clone(&stats),
        },
        FeedHandle {
            stop,
            thread: Some(thread),
            stats,
        },
    ))
}

/// `septa-learn`: channel → window (+ exporter records) → hand-off.
struct Aggregator {
    rx: Receiver<ObservedFlow>,
    jobs: Option<SyncSender<Job>>,
    spare: Receiver<Window>,
    history: bool,
    sinks: bool,
    cfg: FeedConfig,
    stats: Arc<FeedStats>,
    stop: Arc<AtomicBool>,
}

impl Aggregator {
    fn run(&mut self) {
        let batch_max = self.cfg.batch.max(1);
        let keys_max = self.cfg.window_keys.max(1);
        let mut window = Window::with_capacity(if self.history { keys_max } else { 0 });
        let mut pending: Vec<ObservedFlow> = Vec::new();
        let mut since = Instant::now();
        // Short waits so a stop request is seen promptly even with a long flush interval.
        let tick = self.cfg.flush.min(Duration::from_millis(100));
        loop {
            let mut closed = false;
            match self.rx.recv_timeout(tick) {
                Ok(f) => {
                    self.take(f, &mut window, &mut pending);
                    // Drain what is there, stopping at a bound to hand work off.
                    while pending.len() < batch_max && window.keys() < keys_max {
                        match self.rx.try_recv() {
                            Ok(f) => self.take(f, &mut window, &mut pending),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closed = true,
            }
            let stopping = closed || self.stop.load(Ordering::Relaxed);
            if stopping {
                while let Ok(f) = self.rx.try_recv() {
                    self.take(f, &mut window, &mut pending);
                    self.hand_off(&mut window, &mut pending, batch_max, keys_max, false);
                }
            }
            let due = since.elapsed() >= self.cfg.flush || stopping;
            self.hand_off(&mut window, &mut pending, batch_max, keys_max, due);
            if due {
                since = Instant::now();
            }
            if stopping {
                return;
            }
        }
    }

    fn take(&self, f: ObservedFlow, window: &mut Window, pending: &mut Vec<ObservedFlow>) {
        if self.history {
            window.add(&f);
        }
        if self.sinks {
            pending.push(f);
        }
    }

    /// Hands full parts (or, when `due`, every non-empty part) to the writer.
    fn hand_off(
        &mut self,
        window: &mut Window,
        pending: &mut Vec<ObservedFlow>,
        batch_max: usize,
        keys_max: usize,
        due: bool,
    ) {
        if pending.len() >= batch_max || (due && !pending.is_empty()) {
            let records = std::mem::replace(pending, Vec::with_capacity(batch_max));
            self.send(Job::Sinks(records));
        }
        if window.keys() >= keys_max || (due && !window.is_empty()) {
            let fresh = self
                .spare
                .try_recv()
                .unwrap_or_else(|_| Window::with_capacity(keys_max));
            self.send(Job::History(Box::new(std::mem::replace(window, fresh))));
        }
    }

    fn send(&mut self, job: Job) {
        let lost = match self.jobs.as_ref().map(|j| j.send(job)) {
            Some(Ok(())) => return,
            Some(Err(e)) => match e.0 {
                Job::History(w) => w.records(),
                Job::Sinks(r) => r.len() as u64,
            },
            None => 0,
        };
        // The writer is gone (it panicked): stop handing off; what it would have written is
        // counted as a history error.
        self.jobs = None;
        self.stats.error(
            &self.stats.history_errors,
            format!("the learning writer stopped; {lost} records not written"),
        );
    }
}

/// `septa-learn-db`: windows → history and rule usage; records → exporters.
struct Writer {
    jobs: Receiver<Job>,
    spare: SyncSender<Window>,
    targets: FeedTargets,
    stats: Arc<FeedStats>,
}

impl Writer {
    fn run(&mut self) {
        while let Ok(job) = self.jobs.recv() {
            match job {
                Job::History(mut w) => {
                    self.history(&w);
                    w.clear();
                    let _ = self.spare.try_send(*w);
                }
                Job::Sinks(records) => self.sinks(&records),
            }
        }
    }

    fn history(&mut self, w: &Window) {
        let stats = &self.stats;
        let Some(h) = &mut self.targets.history else {
            return;
        };
        match h.write(w) {
            Ok(rep) => {
                stats.ingested.fetch_add(rep.records, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.error(&stats.history_errors, format!("history: {e}")),
        }
        // Decisions, summed per rule id, by the revision that made them.
        for (rev, hits) in w.rule_hits() {
            let Some(compiled) = self.targets.revisions.compiled(rev) else {
                let n: u64 = hits.iter().map(|h| h.hits).sum();
                stats.usage_unattributed.fetch_add(n, Ordering::Relaxed);
                continue;
            };
            match h.record_rule_hits(&compiled, rev, &hits) {
                Ok(u) => {
                    stats
                        .usage_attributed
                        .fetch_add(u.attributed, Ordering::Relaxed);
                    stats
                        .usage_unattributed
                        .fetch_add(u.unattributed, Ordering::Relaxed);
                }
                Err(e) => stats.error(&stats.history_errors, format!("rule usage: {e}")),
            }
        }
    }

    fn sinks(&mut self, records: &[ObservedFlow]) {
        let stats = &self.stats;
        for s in &mut self.targets.sinks {
            match s.write(records) {
                Ok(()) => {
                    stats.exported.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => stats.error(&stats.export_errors, format!("{}: {e}", s.name())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, UdpSocket};

    use super::*;
    use crate::history::{FlowVerdict, HistoryConfig};
    use crate::lifecycle::check_policy;
    use crate::policy::Format;

    const POLICY: &str = "apiVersion: septa.io/v1\nkind: Policy\nmetadata:\n  name: t\nspec:\n  zones:\n    - name: a\n      subnets: [10.1.0.0/24]\n    - name: b\n      subnets: [10.2.0.0/24]\n  conduits:\n    - name: a-to-b\n      from: [a]\n      to: [b]\n      services:\n        - proto: udp\n          ports: [5000]\n";

    fn flow(i: u8, rule: u32, flows: u64) -> ObservedFlow {
        ObservedFlow {
            ts_ms: 1_000 + i64::from(i),
            src: IpAddr::from([10, 1, 0, i]),
            dst: IpAddr::from([10, 2, 0, 1]),
            proto: 17,
            dport: 5000,
            l7: String::new(),
            verdict: FlowVerdict::Allowed,
            rule,
            revision: "rev1".into(),
            flows,
            packets: 2,
            bytes: 100,
        }
    }

    struct Failing;
    impl FlowSink for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn write(&mut self, _: &[ObservedFlow]) -> Result<(), ExportError> {
            Err(ExportError::io("test", std::io::Error::other("down")))
        }
    }

    #[test]
    fn batches_reach_history_usage_and_sinks_and_a_failing_sink_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (_, compiled) = check_policy(POLICY, Format::Yaml, None).unwrap();
        let compiled = Arc::new(compiled);
        let key = septa_classifier::FlowKey::v4(
            "10.1.0.1".parse().unwrap(),
            "10.2.0.1".parse().unwrap(),
            17,
            4000,
            5000,
        );
        let rule_id = crate::decide(&compiled, "rev1", &key).rule;
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let ipfix = IpfixExporter::new(collector.local_addr().unwrap(), 7).unwrap();
        let c2 = Arc::clone(&compiled);
        let targets = FeedTargets {
            history: Some(FlowHistory::open(dir.path(), HistoryConfig::default()).unwrap()),
            revisions: Box::new(move |r: &str| (r == "rev1").then(|| Arc::clone(&c2))),
            sinks: vec![Box::new(ipfix), Box::new(Failing)],
        };
        let cfg = FeedConfig {
            capacity: 1000,
            batch: 3,
            window_keys: 4,
            flush: Duration::from_millis(50),
        };
        let (feed, handle) = spawn(targets, cfg).unwrap();
        for i in 1..=5 {
            assert!(feed.offer(flow(i, rule_id, 1)));
        }
        // The end of flow 1: counters only, no second flow and no second hit.
        assert!(feed.offer(flow(1, rule_id, 0)));
        let mut other = flow(9, rule_id, 1);
        other.revision = "unknown".into();
        assert!(feed.offer(other));
        let mut buf = [0u8; 2048];
        let (n, _) = collector.recv_from(&mut buf).expect("an IPFIX message");
        assert_eq!(&buf[..2], &[0, 10], "IPFIX version 10");
        assert!(n > 16);
        drop(feed);
        let stats = Arc::clone(handle.stats());
        handle.stop();
        let s = stats.snapshot();
        assert_eq!((s.offered, s.dropped, s.ingested), (7, 0, 7));
        assert_eq!((s.usage_attributed, s.usage_unattributed), (5, 1));
        assert!(s.export_errors >= 1 && s.exported >= 1, "{s:?}");
        assert!(s.last_error.unwrap().contains("failing"));
        let h = FlowHistory::open(dir.path(), HistoryConfig::default()).unwrap();
        let aggs = h.query(0, i64::MAX, 100).unwrap();
        assert_eq!(aggs.len(), 6);
        let first = aggs
            .iter()
            .find(|a| a.key.src == IpAddr::from([10, 1, 0, 1]))
            .unwrap();
        assert_eq!((first.flows, first.allowed, first.packets), (1, 1, 4));
        let usage = h.usage().unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].hits, 5);
        assert!(usage[0].clause.starts_with("conduit/a-to-b/"));
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        // A feed whose thread is busy: a sink that blocks until released.
        struct Gate(Arc<Mutex<()>>);
        impl FlowSink for Gate {
            fn name(&self) -> &'static str {
                "gate"
            }
            fn write(&mut self, _: &[ObservedFlow]) -> Result<(), ExportError> {
                drop(self.0.lock().unwrap());
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let targets = FeedTargets {
            history: None,
            revisions: Box::new(|_: &str| None),
            sinks: vec![Box::new(Gate(Arc::clone(&gate)))],
        };
        let cfg = FeedConfig {
            capacity: 4,
            batch: 1,
            window_keys: 1,
            flush: Duration::from_millis(1),
        };
        let (feed, handle) = spawn(targets, cfg).unwrap();
        let started = Instant::now();
        let mut accepted = 0;
        for i in 0..100 {
            if feed.offer(flow(i, 0, 1)) {
                accepted += 1;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "offer never waits"
        );
        // At most the queue plus what the two threads hold: the batch the blocked writer has,
        // the one queued for it, and the one the aggregator waits to hand off.
        assert!(accepted <= 4 + 3, "{accepted}");
        let s = feed.stats().snapshot();
        assert_eq!(s.offered + s.dropped, 100);
        assert_eq!(s.dropped, 100 - accepted);
        drop(held);
        drop(feed);
        handle.stop();
    }
}
