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
//! * `sample`: the same with a feature sampler (one flow in `--one-in`, records drained by a
//!   consumer thread like the inference service);
//! * `l7`: the rule table inspects tcp/502 with a read-only Modbus conduit (every request and
//!   response framed and checked);
//! * `l7_sample`: both.
//!
//! Each round refills the input queue (untimed) and times the polls that drain it, so the
//! backend's cost is the same in every configuration; ratios are against `base`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use septa_classifier::{Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, TableCell};
use septa_dataplane::flow::TimeoutClass;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::l7::samples::{conversation, modbus, modbus_request};
use septa_dataplane::l7::{L7Constraint, L7Proto, Side};
use septa_dataplane::sample::{Sampler, SamplerConfig};
use septa_dataplane::{Bridge, Decision, StateConfig, Stats, Worker, WorkerState};

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
}

impl Args {
    /// The command-line defaults.
    pub fn defaults() -> Self {
        Args {
            flows: 4096,
            packets_per_flow: 16,
            one_in: 16,
            rounds: 7,
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

/// Frames of `flows` connections in arrival order, each with its receive port.
fn traffic(flows: usize, per_flow: usize) -> Vec<(u16, Vec<u8>)> {
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
        let client = [10, 1, (f >> 8) as u8, f as u8];
        let server = [10, 2, 0, (f % 250) as u8 + 1];
        let (frames, _) = conversation(client, server, (40_000, 502), &msgs, true);
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
    fn new(setup: Setup, flows: usize, one_in: u32) -> anyhow::Result<Self> {
        let cell = TableCell::new(table(setup.l7()));
        let mut cfg = StateConfig::new((flows * 2).next_power_of_two());
        cfg.l7_flows = flows;
        cfg.flows.timeouts.set(TimeoutClass::TcpTimeWait, 1_000);
        cfg.expire_budget = 256;
        let mut state = WorkerState::new(&cfg, septa_dataplane::events::EventSink::disabled())?;
        let stop = Arc::new(AtomicBool::new(false));
        if setup.sample() {
            let (tx, rx) = sync_channel(4096);
            let mut sc = SamplerConfig::new(flows);
            sc.one_in = one_in;
            state.set_sampler(Sampler::new(0, sc, tx)?);
            // The inference thread's side: drain the ring.
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    while rx.try_recv().is_ok() {}
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

    /// Queues `frames` (untimed), then times the polls that process them; packets per second.
    fn round(&mut self, frames: &[(u16, Vec<u8>)]) -> f64 {
        for (port, f) in frames {
            self.io.push_rx(*port, f.clone());
        }
        let start = Instant::now();
        while self.io.rx_pending(0) + self.io.rx_pending(1) > 0 {
            self.now += 1_000;
            self.worker.state_mut().set_now(self.now);
            self.worker.poll(&mut self.io, &mut ());
            self.io.take_tx(0);
            self.io.take_tx(1);
        }
        // Let every connection of this round end (flow-end work is part of the next round).
        self.now += 10_000_000;
        frames.len() as f64 / start.elapsed().as_secs_f64()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let frames = traffic(args.flows, args.packets_per_flow);
    let mut benches = SETUPS
        .iter()
        .map(|&s| Ok((s, Bench::new(s, args.flows, args.one_in)?, Vec::new())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Warm-up round each, then interleaved measured rounds.
    for (_, b, _) in &mut benches {
        b.round(&frames);
    }
    for _ in 0..args.rounds {
        for (_, b, rates) in &mut benches {
            rates.push(b.round(&frames));
        }
    }
    let mut line = format!(
        "bench=pipeline flows={} packets_per_flow={} packets_per_round={} one_in={} rounds={}",
        args.flows,
        frames.len() / args.flows,
        frames.len(),
        args.one_in,
        args.rounds
    );
    let mut base = 0.0;
    for (setup, b, rates) in &mut benches {
        let r = median(rates);
        if *setup == Setup::Base {
            base = r;
        }
        line += &format!(" {}_mpps={:.3}", setup.name(), r / 1e6);
        let s = Stats::collect([&**b.worker.counters()]);
        if s.total_drops() > 0 {
            anyhow::bail!("{}: packets were dropped: {s}", setup.name());
        }
    }
    for (setup, _, rates) in &mut benches {
        if *setup != Setup::Base {
            line += &format!(" ratio_{}={:.3}", setup.name(), median(rates) / base);
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
