//! The learning feed: observed flows from the data plane's event drain into the flow history,
//! the rule-usage counters and the configured flow exporters (IPFIX, JSON-lines flow log), on
//! one thread of its own (`septa-learn`).
//!
//! **Never slows the data plane.** Producers (the thread draining the workers' event rings)
//! call [`FlowFeed::offer`], a `try_send` into a bounded channel: when the feed thread falls
//! behind (slow disk, slow collector) records are dropped and counted
//! ([`FeedStats::dropped`]), never queued without bound and never waited for.
//!
//! **Batches.** The thread collects up to [`FeedConfig::batch`] records or
//! [`FeedConfig::flush`] worth of time, then writes the batch in one history transaction,
//! counts the hits of its decisions per policy clause (through a [`RevisionSource`] that maps
//! a revision hash to its compiled policy), and hands it to every [`FlowSink`]. A failing
//! sink is counted and retried with the next batch; it never stops the others.
//!
//! **Stopping.** [`FeedHandle::stop`] (or dropping every [`FlowFeed`]) makes the thread write
//! what it holds and exit; [`FeedHandle::stop`] then joins it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{FlowHistory, ObservedFlow};
use crate::CompiledPolicy;
use crate::export::ipfix::IpfixExporter;
use crate::export::{ExportError, FlowLog};

/// Bounds and pacing of the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// Records the channel holds; beyond, offers are dropped and counted.
    pub capacity: usize,
    /// Most records per batch.
    pub batch: usize,
    /// Longest a record waits before its batch is written.
    pub flush: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            capacity: 65_536,
            batch: 8192,
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

/// The feed thread.
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

    /// Writes what is queued and joins the thread.
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

/// What the feed thread writes to.
pub struct FeedTargets {
    /// The history (`None`: exporters only).
    pub history: Option<FlowHistory>,
    /// Compiled policies by revision hash, for rule usage.
    pub revisions: Box<dyn RevisionSource>,
    /// Exporters.
    pub sinks: Vec<Box<dyn FlowSink>>,
}

/// Starts the feed thread; returns its producing end and its handle.
pub fn spawn(targets: FeedTargets, cfg: FeedConfig) -> std::io::Result<(FlowFeed, FeedHandle)> {
    let (tx, rx) = sync_channel(cfg.capacity.max(1));
    let stats = Arc::new(FeedStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut worker = Consumer {
        rx,
        targets,
        cfg,
        stats: Arc::clone(&stats),
        stop: Arc::clone(&stop),
    };
    let thread = std::thread::Builder::new()
        .name("septa-learn".into())
        .spawn(move || worker.run())?;
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

struct Consumer {
    rx: Receiver<ObservedFlow>,
    targets: FeedTargets,
    cfg: FeedConfig,
    stats: Arc<FeedStats>,
    stop: Arc<AtomicBool>,
}

impl Consumer {
    fn run(&mut self) {
        let batch_max = self.cfg.batch.max(1);
        let mut batch = Vec::with_capacity(batch_max);
        let mut since = Instant::now();
        // Short waits so a stop request is seen promptly even with a long flush interval.
        let tick = self.cfg.flush.min(Duration::from_millis(100));
        loop {
            let closed = match self.rx.recv_timeout(tick) {
                Ok(f) => {
                    batch.push(f);
                    while batch.len() < batch_max {
                        match self.rx.try_recv() {
                            Ok(f) => batch.push(f),
                            Err(_) => break,
                        }
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let stopping = closed || self.stop.load(Ordering::Relaxed);
            if batch.len() >= batch_max || since.elapsed() >= self.cfg.flush || stopping {
                if stopping {
                    while let Ok(f) = self.rx.try_recv() {
                        batch.push(f);
                        if batch.len() >= batch_max {
                            self.write(&mut batch);
                        }
                    }
                }
                self.write(&mut batch);
                since = Instant::now();
            }
            if stopping {
                return;
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<ObservedFlow>) {
        if batch.is_empty() {
            return;
        }
        let stats = Arc::clone(&self.stats);
        if let Some(h) = &mut self.targets.history {
            match h.ingest(batch) {
                Ok(rep) => {
                    stats.ingested.fetch_add(rep.records, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => stats.error(&stats.history_errors, format!("history: {e}")),
            }
            // Decisions grouped by the revision that made them.
            let mut by_rev: BTreeMap<&str, Vec<ObservedFlow>> = BTreeMap::new();
            for f in batch.iter().filter(|f| f.flows > 0) {
                by_rev.entry(&f.revision).or_default().push(f.clone());
            }
            for (rev, flows) in by_rev {
                let Some(compiled) = self.targets.revisions.compiled(rev) else {
                    stats
                        .usage_unattributed
                        .fetch_add(flows.len() as u64, Ordering::Relaxed);
                    continue;
                };
                match h.record_usage(&compiled, rev, &flows) {
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
        for s in &mut self.targets.sinks {
            match s.write(batch) {
                Ok(()) => {
                    stats.exported.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => stats.error(&stats.export_errors, format!("{}: {e}", s.name())),
            }
        }
        batch.clear();
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
        // At most the queue plus the batch the blocked thread holds.
        assert!(accepted <= 4 + 1, "{accepted}");
        let s = feed.stats().snapshot();
        assert_eq!(s.offered + s.dropped, 100);
        assert_eq!(s.dropped, 100 - accepted);
        drop(held);
        drop(feed);
        handle.stop();
    }
}
