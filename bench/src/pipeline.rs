//! `septa-bench pipeline`: the stateful worker's packet rate with function-code inspection and
//! ML feature sampling on and off, in the same run.
//!
//! Traffic: Modbus/TCP connections of `--packets-per-flow` packets each (handshake, requests and
//! responses, FIN close), built once and replayed through the real worker on the in-memory
//! backend; the clock advances 1 ms per poll and the TIME_WAIT timeout is 1 ms, so connections
//! end (flow-end work, sampler records) inside the measured run. Four configurations, measured
//! in interleaved rounds, medians reported:
//!
//! * `base`: the rule table allows tcp/502;
//! * `sample`: the same with a feature sampler (one flow in `--one-in`; a consumer thread reads
//!   the records and applies the new flows to the spread sketches, as the inference service
//!   does);
//! * `l7`: the rule table inspects tcp/502 with a read-only Modbus conduit (every request and
//!   response framed and checked);
//! * `l7_sample`: both.
//!
//! Each round refills the input queue (untimed) and times the polls that drain it, so the
//! backend's cost is the same in every configuration; ratios are against `base`. Every
//! configuration gets the same frames (same flows, same order), one untimed warm-up round, and
//! the order of the configurations rotates from round to round (no configuration always runs
//! right after the same other one, whose working set it inherits in the caches).
//!
//! Two measures per round: wall-clock (`*_mpps`, `ratio_*`) and the worker thread's on-CPU time
//! (`cpu_ratio_*`, `CLOCK_THREAD_CPUTIME_ID`), which leaves out the time
//! the thread waited for a CPU on a loaded machine. Per-round ratios (each configuration's round
//! against the `base` round of the same interleaving) give the range (`*_min`, `*_max`).
//!
//! Worst case by default: every connection comes from its own client address and each round
//! starts a new spread window, so each new flow finds its per-source sketch slots cold and stale
//! (this is a flood of short connections from many clients; since the sketches moved to the
//! consumer, that cost is the consumer thread's, and the worker's is one write into the ring of
//! new flows per new flow). `--clients N` spreads
//! the connections over N client addresses instead (several connections per client per window,
//! as a site's hosts do). `--only SETUP` runs one configuration alone, for instruction counts
//! (`valgrind --tool=callgrind`, `--only sample` against `--only base`).
//!
//! Threads are pinned as on the appliance: the measured worker thread alone on the last CPU the
//! process may use, the consumer threads on the others (`--no-pin` leaves them to the
//! scheduler; with a single CPU nothing is pinned).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use septa_classifier::{Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, TableCell};
use septa_dataplane::flow::TimeoutClass;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::l7::samples::{conversation, modbus, modbus_request};
use septa_dataplane::l7::{L7Constraint, L7Proto, Side};
use septa_dataplane::sample::{Sampler, SamplerConfig};
use septa_dataplane::{Bridge, Decision, StateConfig, Stats, Worker, WorkerState};
use septa_features::spread::{SoloReceiver, SpreadConfig, sample_channel};

#[derive(clap::Args)]
pub struct Args {
    /// Connections per round.
    #[arg(long, default_value_t = 4096)]
    flows: usize,
    /// Packets per connection (at least 8: handshake, one request and response, close).
    #[arg(long, default_value_t = 16)]
    packets_per_flow: usize,
    /// Sample one new flow in this many.
    #[arg(long, default_value_t = 16)]
    one_in: u32,
    /// Measured rounds per configuration.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Replays of the traffic per measured round (each in a new spread window); a round of a
    /// few milliseconds is too short to measure on a loaded machine.
    #[arg(long, default_value_t = 8)]
    repeat: usize,
    /// Distinct client addresses the connections come from (0: one per connection, the
    /// sampler's worst case).
    #[arg(long, default_value_t = 0)]
    clients: usize,
    /// Run this configuration alone (`base`, `sample`, `l7`, `l7_sample`): for instruction
    /// counts under callgrind, against a run of `base` alone (no on-CPU clock then: valgrind
    /// cannot run the vDSO set-up of the clock call).
    #[arg(long, value_parser = ["base", "sample", "l7", "l7_sample"])]
    only: Option<String>,
    /// Leave the threads unpinned (by default the measured worker thread runs on the last
    /// allowed CPU and the consumer threads on the others, as a worker lcore and the inference
    /// thread do on the appliance).
    #[arg(long)]
    no_pin: bool,
}

impl Args {
    /// The command-line defaults.
    pub fn defaults() -> Self {
        Args {
            flows: 4096,
            packets_per_flow: 16,
            one_in: 16,
            rounds: 7,
            repeat: 8,
            clients: 0,
            only: None,
            no_pin: false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Base,
    Sample,
    L7,
    L7Sample,
}

const SETUPS: [Setup; 4] = [Setup::Base, Setup::Sample, Setup::L7, Setup::L7Sample];

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Base => "base",
            Setup::Sample => "sample",
            Setup::L7 => "l7",
            Setup::L7Sample => "l7_sample",
        }
    }

    fn l7(self) -> bool {
        matches!(self, Setup::L7 | Setup::L7Sample)
    }

    fn sample(self) -> bool {
        matches!(self, Setup::Sample | Setup::L7Sample)
    }
}

/// Frames of `flows` connections in arrival order, each with its receive port; connection `f`
/// comes from client `f % clients` (`clients` 0: every connection from its own client), each
/// connection of a client from its own source port.
fn traffic(flows: usize, per_flow: usize, clients: usize) -> Vec<(u16, Vec<u8>)> {
    let pairs = per_flow.saturating_sub(6).max(2) / 2;
    let mut msgs = Vec::new();
    for i in 0..pairs {
        let tid = i as u16;
        msgs.push((Side::Client, modbus_request(tid, 1, 3, 0, 4)));
        msgs.push((
            Side::Server,
            modbus(tid, 1, 3, &[8, 0, 1, 0, 2, 0, 3, 0, 4]),
        ));
    }
    let mut out = Vec::new();
    for f in 0..flows {
        let c = if clients == 0 { f } else { f % clients };
        let client = [10, 1, (c >> 8) as u8, c as u8];
        let server = [10, 2, 0, (f % 250) as u8 + 1];
        let sport = f.checked_div(clients).map_or(40_000, |n| 20_000 + n as u16);
        let (frames, _) = conversation(client, server, (sport, 502), &msgs, true);
        // Both directions arrive on port 0, in order: per-port queues would reorder a reply
        // before its request (conntrack finds flows by address, not by port).
        out.extend(frames.into_iter().map(|f| (0, f)));
    }
    out
}

fn table(inspect: bool) -> septa_classifier::RuleTable {
    let action = if inspect {
        Action::Inspect(HookId(0))
    } else {
        Action::Allow
    };
    let rule = Rule {
        dst: AddrMatch::prefix(Prefix::v4([10, 2, 0, 0].into(), 16)),
        proto: Some(6),
        dport: PortRange { lo: 502, hi: 502 },
        mode: Mode::Enforce,
        ..Rule::any(1, action)
    };
    let mut conduit = L7Constraint::allow_all(L7Proto::Modbus);
    conduit.functions = septa_l7::functions::resolve(L7Proto::Modbus, "read")
        .expect("a class")
        .into_iter()
        .collect();
    septa_classifier::compile(&[rule, Rule::any(2, Action::Deny)])
        .expect("compiles")
        .with_l7_constraints(Arc::from(vec![conduit]))
}

struct Bench {
    worker: Worker,
    io: MemoryIo,
    now: u64,
    _cell: Arc<TableCell>,
    stop: Arc<AtomicBool>,
}

impl Bench {
    fn new(setup: Setup, flows: usize, one_in: u32, pin: Option<Pinning>) -> anyhow::Result<Self> {
        let cell = TableCell::new(table(setup.l7()));
        let mut cfg = StateConfig::new((flows * 2).next_power_of_two());
        cfg.l7_flows = flows;
        cfg.flows.timeouts.set(TimeoutClass::TcpTimeWait, 1_000);
        cfg.expire_budget = 256;
        let mut state = WorkerState::new(&cfg, septa_dataplane::events::EventSink::disabled())?;
        let stop = Arc::new(AtomicBool::new(false));
        if setup.sample() {
            let (tx, rx) = sample_channel(4096, septa_ml::SPREAD_RING);
            let mut sc = SamplerConfig::new(flows);
            sc.one_in = one_in;
            state.set_sampler(Sampler::new(0, sc, tx)?);
            // The inference thread's side: read the records (filling their spread) and apply
            // the new flows to the spread sketches, as `septa_ml`'s service does.
            let stop = stop.clone();
            let mut rx = SoloReceiver::new(rx, SpreadConfig::default())?;
            let cpu = pin.map(|p| p.others);
            std::thread::spawn(move || {
                if let Some(cpus) = cpu {
                    // Best effort: an unpinned consumer only adds noise.
                    let _ = rustix::thread::sched_setaffinity(None, &cpus);
                }
                while !stop.load(Ordering::Relaxed) {
                    while rx.try_recv().is_some() {}
                    rx.drain_spread();
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
        }
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
        })
    }

    /// `repeat` times: queues `frames` (untimed), then times the polls that process them.
    /// Packets per second of wall-clock time and of the thread's on-CPU time (0 when that is
    /// not readable).
    fn round(&mut self, frames: &[(u16, Vec<u8>)], repeat: usize, cpu_clock: bool) -> (f64, f64) {
        let (mut wall, mut cpu) = (0.0, 0.0);
        for _ in 0..repeat {
            let (w, c) = self.replay(frames, cpu_clock);
            wall += w;
            cpu += c;
        }
        let pps = |t: f64| {
            if t > 0.0 {
                (frames.len() * repeat) as f64 / t
            } else {
                0.0
            }
        };
        (pps(wall), pps(cpu))
    }

    /// One replay of `frames`: seconds of wall-clock and on-CPU time (0 when not readable).
    fn replay(&mut self, frames: &[(u16, Vec<u8>)], cpu_clock: bool) -> (f64, f64) {
        for (port, f) in frames {
            self.io.push_rx(*port, f.clone());
        }
        let cpu0 = cpu_clock.then(thread_cpu_ns).flatten();
        let start = Instant::now();
        while self.io.rx_pending(0) + self.io.rx_pending(1) > 0 {
            self.now += 1_000;
            self.worker.state_mut().set_now(self.now);
            self.worker.poll(&mut self.io, &mut ());
            self.io.take_tx(0);
            self.io.take_tx(1);
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = match (cpu0, cpu_clock.then(thread_cpu_ns).flatten()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 * 1e-9,
            _ => f64::NAN,
        };
        // Let every connection of this round end (flow-end work is part of the next replay).
        self.now += 10_000_000;
        (wall, cpu)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where the threads run: the measured worker thread alone on one CPU, everything else on the
/// others.
#[derive(Clone, Copy)]
struct Pinning {
    others: rustix::thread::CpuSet,
}

impl Pinning {
    /// Pins the calling thread to the last CPU it may run on; `None` (unpinned) with fewer than
    /// two.
    fn apply() -> anyhow::Result<Option<Pinning>> {
        use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
        let allowed = sched_getaffinity(None)?;
        let cpus: Vec<usize> = (0..CpuSet::MAX_CPU)
            .filter(|&c| allowed.is_set(c))
            .collect();
        let Some((&worker, rest)) = cpus.split_last() else {
            return Ok(None);
        };
        if rest.is_empty() {
            return Ok(None);
        }
        let mut one = CpuSet::new();
        one.set(worker);
        let mut others = CpuSet::new();
        for &c in rest {
            others.set(c);
        }
        sched_setaffinity(None, &one)?;
        Ok(Some(Pinning { others }))
    }
}

/// The calling thread's on-CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u64::try_from(t.tv_nsec).ok()?)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Minimum and maximum of the per-round ratios `a[i] / b[i]`.
fn ratio_range(a: &[f64], b: &[f64]) -> (f64, f64) {
    let r = a.iter().zip(b).map(|(x, y)| x / y);
    (
        r.clone().fold(f64::INFINITY, f64::min),
        r.fold(0.0, f64::max),
    )
}

/// One configuration's measured rounds: wall-clock and on-CPU packets per second.
struct Rates {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pin = if args.no_pin { None } else { Pinning::apply()? };
    let frames = traffic(args.flows, args.packets_per_flow, args.clients);
    let setups: Vec<Setup> = SETUPS
        .iter()
        .copied()
        .filter(|s| args.only.as_deref().is_none_or(|o| o == s.name()))
        .collect();
    let mut benches = setups
        .iter()
        .map(|&s| {
            let rates = Rates {
                wall: Vec::new(),
                cpu: Vec::new(),
            };
            Ok((s, Bench::new(s, args.flows, args.one_in, pin)?, rates))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Warm-up round each, then interleaved measured rounds in a rotating order.
    for (_, b, _) in &mut benches {
        b.round(&frames, 1, false);
    }
    let n = benches.len();
    for round in 0..args.rounds {
        for k in 0..n {
            let (_, b, rates) = &mut benches[(round + k) % n];
            let (wall, cpu) = b.round(&frames, args.repeat.max(1), args.only.is_none());
            rates.wall.push(wall);
            rates.cpu.push(cpu);
        }
    }
    let mut line = format!(
        "bench=pipeline flows={} packets_per_flow={} packets_per_round={} one_in={} rounds={} \
         clients={}",
        args.flows,
        frames.len() / args.flows,
        frames.len() * args.repeat.max(1),
        args.one_in,
        args.rounds,
        if args.clients == 0 {
            args.flows
        } else {
            args.clients
        },
    );
    for (setup, b, rates) in &benches {
        line += &format!(" {}_mpps={:.3}", setup.name(), median(&rates.wall) / 1e6);
        let s = Stats::collect([&**b.worker.counters()]);
        if s.total_drops() > 0 {
            anyhow::bail!("{}: packets were dropped: {s}", setup.name());
        }
    }
    let cpu_ok = benches
        .iter()
        .all(|(_, _, r)| r.cpu.iter().all(|&c| c.is_finite() && c > 0.0));
    if let Some((_, _, base)) = benches.iter().find(|(s, _, _)| *s == Setup::Base) {
        for (setup, _, rates) in &benches {
            if *setup == Setup::Base {
                continue;
            }
            let name = setup.name();
            let (lo, hi) = ratio_range(&rates.wall, &base.wall);
            line += &format!(
                " ratio_{name}={:.3} ratio_{name}_min={lo:.3} ratio_{name}_max={hi:.3}",
                median(&rates.wall) / median(&base.wall)
            );
            if cpu_ok {
                let (lo, hi) = ratio_range(&rates.cpu, &base.cpu);
                line += &format!(
                    " cpu_ratio_{name}={:.3} cpu_ratio_{name}_min={lo:.3} \
                     cpu_ratio_{name}_max={hi:.3}",
                    median(&rates.cpu) / median(&base.cpu)
                );
            }
        }
    }
    for (setup, b, _) in &benches {
        let st = b.worker.state();
        if setup.sample()
            && let Some(s) = st.sampler()
        {
            let c = s.counters();
            line += &format!(
                " {}_sampled={} {}_emitted={} {}_ring_full={}",
                setup.name(),
                c.sampled,
                setup.name(),
                c.emitted,
                setup.name(),
                c.ring_full
            );
        }
        if setup.l7() {
            line += &format!(" {}_inspected={}", setup.name(), st.l7().stats().inspected);
        }
    }
    println!("{line}");
    Ok(())
}
