//! `septa-bench learn-feed`: the data plane with and without the learning feed behind it, side
//! by side in the same run (issue 8: "flow history ingest keeps up with 200 k flow records/s
//! without slowing the data plane").
//!
//! The real stateful worker (in-memory backend) forwards short TCP connections (handshake, one
//! request and response, FIN close), each from its own client address, so every flow is a new
//! history key (the worst case for the history). Flow starts and ends go through the worker's
//! event ring to a drain thread, as in `septa run` (the `septa-monitor` thread), which:
//!
//! * `base`: drains and counts the events;
//! * `history`: also turns each into an `ObservedFlow` and offers it to the learning feed
//!   (`history::feed`: bounded queue → in-memory window → `history.db` + rule usage), as the
//!   control host's `FlowAdapter` does.
//!
//! Interleaved rounds (warm-up first, order alternating), medians: the worker's packet rate in
//! wall-clock time and in its own on-CPU time (`CLOCK_THREAD_CPUTIME_ID`; a loaded machine does
//! not inflate it), the ratio `history / base` of each, and the records the feed was offered per
//! second of the `history` rounds, dropped (counted) and written.
//!
//! Kept free of clap, anyhow and rustix so that `control/examples/learn_feed.rs` runs the very
//! same code (`#[path]`-included) without the ML crates: `cargo run --release -p septa-control
//! --example learn_feed -- [FLOWS ROUNDS REPEAT]`.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use septa_classifier::{Action, AddrMatch, PortRange, Prefix, Rule, TableCell};
use septa_control::history::feed::{self, FeedConfig, FeedHandle, FeedTargets, FlowFeed};
use septa_control::history::{FlowHistory, FlowVerdict, HistoryConfig, ObservedFlow};
use septa_dataplane::events::{self, EventAction, EventDrain, FlowEvent};
use septa_dataplane::flow::TimeoutClass;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::l7::Side;
use septa_dataplane::l7::samples::conversation;
use septa_dataplane::{Bridge, Decision, StateConfig, Stats, Worker, WorkerState};

fn traffic(flows: usize) -> Vec<Vec<u8>> {
    let msgs = [
        (Side::Client, b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        (Side::Server, b"HTTP/1.0 200 OK\r\n\r\n".to_vec()),
    ];
    let mut out = Vec::new();
    for f in 0..flows {
        let client = [10, 1, (f >> 8) as u8, f as u8];
        let server = [10, 2, 0, (f % 250) as u8 + 1];
        out.extend(conversation(client, server, (40_000, 80), &msgs, true).0);
    }
    out
}

fn table() -> septa_classifier::RuleTable {
    let rule = Rule {
        dst: AddrMatch::prefix(Prefix::v4([10, 2, 0, 0].into(), 16)),
        proto: Some(6),
        dport: PortRange { lo: 80, hi: 80 },
        ..Rule::any(1, Action::Allow)
    };
    septa_classifier::compile(&[rule, Rule::any(2, Action::Deny)]).expect("compiles")
}

/// What the drain thread makes of a flow event (the control host's `FlowAdapter`, reduced to
/// what the history keeps; like it, the feed never gets flow updates).
fn observed(ev: &FlowEvent, revision: &str) -> Option<ObservedFlow> {
    let (key, d, flows, packets, bytes, at) = match ev {
        FlowEvent::Update(_) => return None,
        FlowEvent::Start(s) => (s.key, s.decision, 1, 0, 0, s.at),
        FlowEvent::End(e) => (
            e.key,
            e.decision,
            0,
            e.packets[0] + e.packets[1],
            e.bytes[0] + e.bytes[1],
            e.at,
        ),
        FlowEvent::Deny(x) => (x.key, x.decision, 1, 1, 0, x.at),
    };
    let verdict = match (d.action, d.monitor) {
        (EventAction::Deny, false) => FlowVerdict::Denied,
        (EventAction::Deny, true) => FlowVerdict::WouldDeny,
        _ => FlowVerdict::Allowed,
    };
    Some(ObservedFlow {
        ts_ms: i64::try_from(at / 1000).unwrap_or(i64::MAX),
        src: key.src_addr(),
        dst: key.dst_addr(),
        proto: key.proto,
        dport: key.dport,
        l7: String::new(),
        verdict,
        rule: d.rule.unwrap_or(u32::MAX),
        revision: revision.to_owned(),
        flows,
        packets,
        bytes,
    })
}

/// The drain thread: events → counted (and offered to `feed` when set).
fn drainer(
    mut drain: EventDrain,
    feed: Option<FlowFeed>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let revision = "0".repeat(64);
        let mut n = 0u64;
        loop {
            let done = stop.load(Ordering::Relaxed);
            drain.drain(usize::MAX, |_, ev| {
                n += 1;
                if let Some(f) = &feed
                    && let Some(o) = observed(&ev, &revision)
                {
                    f.offer(o);
                }
            });
            if done {
                return n;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

struct Bench {
    worker: Worker,
    io: MemoryIo,
    now: u64,
    _cell: Arc<TableCell>,
    stop: Arc<AtomicBool>,
    drainer: Option<JoinHandle<u64>>,
    feed: Option<(FeedHandle, tempfile::TempDir)>,
}

impl Bench {
    fn new(flows: usize, history: bool) -> Result<Self, Box<dyn Error>> {
        let cell = TableCell::new(table());
        let mut cfg = StateConfig::new((flows * 2).next_power_of_two());
        cfg.flows.timeouts.set(TimeoutClass::TcpTimeWait, 1_000);
        cfg.expire_budget = 256;
        let (sink, source) = events::ring(65_536);
        let state = WorkerState::new(&cfg, sink)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (feed, handle) = if history {
            let dir = tempfile::tempdir()?;
            let targets = FeedTargets {
                history: Some(FlowHistory::open(dir.path(), HistoryConfig::default())?),
                revisions: Box::new(|_: &str| None),
                sinks: Vec::new(),
            };
            let (f, h) = feed::spawn(targets, FeedConfig::default())?;
            (Some(f), Some((h, dir)))
        } else {
            (None, None)
        };
        let drainer = drainer(EventDrain::new(vec![source]), feed, Arc::clone(&stop));
        let worker = Worker::with_state(
            Bridge::new(2, &[(0, 1)])?,
            Decision::Table(cell.reader()),
            state,
        );
        Ok(Bench {
            worker,
            io: MemoryIo::new(2),
            now: 0,
            _cell: cell,
            stop,
            drainer: Some(drainer),
            feed: handle,
        })
    }

    /// `repeat` replays: (packets, wall seconds, on-CPU seconds).
    fn round(&mut self, frames: &[Vec<u8>], repeat: usize) -> (usize, f64, f64) {
        let (mut wall, mut cpu) = (0.0, 0.0);
        for _ in 0..repeat {
            for f in frames {
                self.io.push_rx(0, f.clone());
            }
            let cpu0 = thread_cpu_ns();
            let start = Instant::now();
            while self.io.rx_pending(0) + self.io.rx_pending(1) > 0 {
                self.now += 1_000;
                self.worker.state_mut().set_now(self.now);
                self.worker.poll(&mut self.io, &mut ());
                self.io.take_tx(0);
                self.io.take_tx(1);
            }
            // Let the connections end (their flow-end events come with the next polls).
            self.now += 10_000_000;
            self.worker.state_mut().set_now(self.now);
            self.worker.poll(&mut self.io, &mut ());
            wall += start.elapsed().as_secs_f64();
            cpu += thread_cpu_ns().saturating_sub(cpu0) as f64 * 1e-9;
        }
        (frames.len() * repeat, wall, cpu)
    }

    /// Stops the drain thread and the feed; (events drained, feed counters).
    fn finish(&mut self) -> (u64, Option<feed::FeedStatsSnapshot>) {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.drainer.take().map_or(0, |d| d.join().unwrap_or(0));
        let stats = self.feed.take().map(|(h, _dir)| {
            let s = Arc::clone(h.stats());
            h.stop();
            s.snapshot()
        });
        (n, stats)
    }
}

/// The calling thread's on-CPU nanoseconds (`/proc/thread-self/schedstat`; 0 when unreadable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark: `flows` connections per replay, `rounds` measured rounds per
/// configuration of `repeat` replays each; returns its `key=value` line.
pub fn learn_feed_line(
    flows: usize,
    rounds: usize,
    repeat: usize,
) -> Result<String, Box<dyn Error>> {
    let a = Params {
        flows: flows.max(1),
        rounds: rounds.max(1),
        repeat: repeat.max(1),
    };
    let frames = traffic(a.flows);
    let mut base = Bench::new(a.flows, false)?;
    let mut hist = Bench::new(a.flows, true)?;
    base.round(&frames, 1);
    hist.round(&frames, 1);
    let (mut bw, mut bc, mut hw, mut hc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut hist_wall = 0.0;
    for r in 0..a.rounds.max(1) {
        let one = |b: &mut Bench, w: &mut Vec<f64>, c: &mut Vec<f64>| {
            let (p, wall, cpu) = b.round(&frames, a.repeat.max(1));
            w.push(p as f64 / wall);
            c.push(p as f64 / cpu);
            wall
        };
        if r % 2 == 0 {
            one(&mut base, &mut bw, &mut bc);
            hist_wall += one(&mut hist, &mut hw, &mut hc);
        } else {
            hist_wall += one(&mut hist, &mut hw, &mut hc);
            one(&mut base, &mut bw, &mut bc);
        }
    }
    for (name, b) in [("base", &base), ("history", &hist)] {
        let s = Stats::collect([&**b.worker.counters()]);
        if s.total_drops() > 0 {
            return Err(format!("{name}: packets were dropped: {s}").into());
        }
    }
    let (base_events, _) = base.finish();
    let (hist_events, stats) = hist.finish();
    let st = stats.unwrap_or_default();
    // A start and an end per connection and replay.
    let measured_records = (a.flows * 2 * a.rounds.max(1) * a.repeat.max(1)) as f64;
    let (bwm, bcm, hwm, hcm) = (
        median(&mut bw),
        median(&mut bc),
        median(&mut hw),
        median(&mut hc),
    );
    Ok(format!(
        "bench=learn-feed flows={} packets_per_flow={} rounds={} repeat={} base_mpps={:.3} history_mpps={:.3} ratio_history={:.3} base_cpu_mpps={:.3} history_cpu_mpps={:.3} cpu_ratio_history={:.3} history_records_per_s={:.0} events_base={base_events} events_history={hist_events} feed_offered={} feed_dropped={} feed_ingested={} feed_windows={}",
        a.flows,
        frames.len() / a.flows,
        a.rounds,
        a.repeat,
        bwm / 1e6,
        hwm / 1e6,
        hwm / bwm,
        bcm / 1e6,
        hcm / 1e6,
        hcm / bcm,
        measured_records / hist_wall,
        st.offered,
        st.dropped,
        st.ingested,
        st.batches,
    ))
}

struct Params {
    flows: usize,
    rounds: usize,
    repeat: usize,
}
