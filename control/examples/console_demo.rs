//! A development and end-to-end-test server for the web console: the real API and the embedded
//! console (`webui/dist`) over plain HTTP on loopback, a fresh data directory with the demo
//! policy committed, and a **simulated** data plane: a fixed set of demo hosts talking to each
//! other, each flow decided by the running policy (real verdicts, rules and revisions; only the
//! traffic is made up). Nothing of this is used by `septa` itself.
//!
//! `cargo run -p septa-control --example console_demo -- [--port 8080] [--data DIR] [--fast-hash]
//!  [--policy FILE] [--no-traffic]`
//!
//! Prints `first login: admin / <password>`, `admin token: <secret>` and `listening: <url>`.
//! `--fast-hash` uses the cheapest argon2 parameters (tests only: the hashes are weak).

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use septa_classifier::FlowKey;
use septa_control::CompiledPolicy;
use septa_control::Format;
use septa_control::api::anomalies::{AnomalyFlow, FeatureContribution, NewAnomaly};
use septa_control::api::auth::TokenInfo;
use septa_control::api::{
    ApiOptions, AppState, CountersSnapshot, CountersSource, DropCount, DynPublisher, FlowFilter,
    FlowKind, FlowRecord, FlowSource, FlowTableHealth, HealthSource, InferenceSample, L7Health,
    ModelInfo, PasswordCost, PortCounters, Role, RouterHealth, ServeConfig, TlsMode, WorkerSample,
    serve,
};
use septa_control::audit::Actor;
use septa_control::clock::{Clock, SystemClock};
use septa_control::history::feed::{self, FeedConfig, FeedTargets, FlowFeed};
use septa_control::history::{FlowHistory, HistoryConfig, ObservedFlow};
use septa_control::lifecycle::{CommitOptions, PolicyService, Publisher, ServiceConfig};
use tokio::sync::broadcast;

struct AcceptAll;

impl Publisher for AcceptAll {
    fn publish(&self, _: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        Ok(())
    }
}

/// The simulated data plane's memory: recent flows, a live feed, port and drop counters.
struct Simulated {
    recent: Mutex<VecDeque<FlowRecord>>,
    live: broadcast::Sender<FlowRecord>,
    counters: Mutex<CountersSnapshot>,
}

const KEEP: usize = 2000;

impl Simulated {
    fn new() -> Self {
        let counters = CountersSnapshot {
            ports: ["port0", "port1"]
                .iter()
                .map(|p| PortCounters {
                    port: (*p).into(),
                    ..PortCounters::default()
                })
                .collect(),
            drops: ["policy-deny", "malformed", "flow-table-full"]
                .iter()
                .map(|r| DropCount {
                    reason: (*r).into(),
                    packets: 0,
                })
                .collect(),
        };
        Simulated {
            recent: Mutex::new(VecDeque::new()),
            live: broadcast::channel(1024).0,
            counters: Mutex::new(counters),
        }
    }

    fn record(&self, r: FlowRecord) {
        if let Ok(mut c) = self.counters.lock() {
            let inbound = usize::from(r.src.starts_with("10.10."));
            let forwarded = r.action != "deny" || r.mode == "monitor";
            let p = &mut c.ports[inbound];
            p.rx_packets += r.packets;
            p.rx_bytes += r.bytes;
            if forwarded {
                let o = &mut c.ports[1 - inbound];
                o.tx_packets += r.packets;
                o.tx_bytes += r.bytes;
            } else {
                c.drops[0].packets += r.packets;
            }
        }
        if let Ok(mut q) = self.recent.lock() {
            q.push_front(r.clone());
            q.truncate(KEEP);
        }
        let _ = self.live.send(r);
    }
}

struct Flows(Arc<Simulated>);
impl FlowSource for Flows {
    fn recent(&self, filter: &FlowFilter, limit: usize) -> Vec<FlowRecord> {
        let q = self.0.recent.lock().map(|q| q.clone()).unwrap_or_default();
        q.into_iter()
            .filter(|r| filter.matches(r))
            .take(limit)
            .collect()
    }
    fn subscribe(&self) -> Option<broadcast::Receiver<FlowRecord>> {
        Some(self.0.live.subscribe())
    }
}

struct Counters(Arc<Simulated>);
impl CountersSource for Counters {
    fn snapshot(&self) -> CountersSnapshot {
        self.0
            .counters
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

/// Simulated health: two workers on lcores 1 and 2 polling 1.4 and 1.1 million times a
/// second, each with a flow table of 262,144 flows that fills with the simulated traffic's new
/// flows, worker 0 also routing (its gateway answering pings, ARP and neighbour discovery), and
/// an inference thread in shadow mode with one model scoring batches that grow with the
/// simulated traffic.
struct Health {
    started: std::time::Instant,
    sim: Arc<Simulated>,
}

impl HealthSource for Health {
    fn workers(&self) -> Option<Vec<WorkerSample>> {
        let us = self.started.elapsed().as_micros() as u64;
        Some(
            [(1u32, 14u64), (2, 11)]
                .iter()
                .enumerate()
                .map(|(i, &(lcore, tenths_per_us))| {
                    let s = us / 1_000_000;
                    let inserted = s * (900 + 200 * i as u64);
                    let active = (1_500 + 400 * i as u64 + s * 3).min(262_144);
                    WorkerSample {
                        id: i as u16,
                        lcore: Some(lcore),
                        polls: us * tenths_per_us / 10,
                        stopped: false,
                        flows: Some(FlowTableHealth {
                            active,
                            half_open: 20 + (s % 7),
                            capacity: 262_144,
                            inserted: inserted + active,
                            expired: inserted,
                            evicted_half_open: 0,
                        }),
                        router: (i == 0).then(|| RouterHealth {
                            local_frames: s * 3 + 12,
                            echo_replies: s,
                            arp_replies: s / 30 + 4,
                            neighbour_adverts: s / 30 + 2,
                            time_exceeded_sent: s / 60,
                            time_exceeded_suppressed: 0,
                            solicitations: 6,
                            tx_ring_full: 0,
                            neighbours_learnt: 9,
                            neighbours: 9,
                            neighbour_capacity: 1_024,
                        }),
                        l7: Some(L7Health::default()),
                    }
                })
                .collect(),
        )
    }

    fn inference(&self) -> Option<InferenceSample> {
        // Stands in for sampled flows: grows with the simulated traffic.
        let flows = self.sim.counters.lock().map_or(0, |c| {
            c.ports.iter().map(|p| p.rx_packets).sum::<u64>() / 20
        });
        Some(InferenceSample {
            mode: "shadow".into(),
            models: vec![ModelInfo {
                id: "demo-flow-if-v1".into(),
                hash: "d".repeat(64),
                threshold: 0.62,
            }],
            records: flows / 16 * 16,
            batches: flows / 16,
            // Later records of flows that already alerted, and the one warm-up calibration.
            repeats: flows / 400,
            calibrations: u64::from(flows > 1_000),
            ..InferenceSample::default()
        })
    }
}

/// Demo conversations between the demo policy's hosts: (src, dst, proto, dport).
const TALKS: &[([u8; 4], [u8; 4], u8, u16)] = &[
    ([10, 10, 1, 20], [10, 10, 5, 10], 6, 443), // it -> ehr-app https: allowed
    ([10, 10, 1, 21], [10, 10, 5, 11], 6, 443), // allowed
    ([10, 10, 5, 10], [10, 20, 0, 5], 6, 5432), // ehr-app -> ehr-db: allowed
    ([10, 10, 1, 22], [10, 20, 0, 5], 6, 5432), // it -> ehr-db: default deny
    ([10, 10, 1, 23], [10, 30, 1, 10], 6, 502), // it -> plc: explicit deny
    ([10, 30, 2, 5], [10, 30, 1, 10], 6, 502),  // hmi -> plc modbus: inspect
    ([10, 30, 2, 5], [10, 30, 1, 11], 6, 102),  // hmi -> plc s7: monitor would-deny
    ([10, 99, 0, 2], [10, 30, 1, 10], 6, 22),   // admin ssh: allowed
    ([10, 10, 1, 20], [10, 99, 0, 53], 17, 53), // dns: allowed
    ([10, 20, 0, 5], [10, 10, 1, 20], 6, 3389), // ehr-db -> it rdp: denied
];

/// Conversations (indices into [`TALKS`]) that are long-lived sessions, as a database session or
/// a Modbus poller are: a start, then an update per report (the traffic since the previous
/// one, as `septa run`'s periodic flow updates), and an end after [`SESSION_REPORTS`].
const LONG_LIVED: &[usize] = &[2, 5];
const SESSION_REPORTS: u32 = 40;

/// Two made-up alerts (the demo has no inference thread), so the anomaly page has something to
/// triage; their summaries say they are demo data.
fn demo_anomalies(state: &AppState, now_ms: i64) {
    let a = |src: [u8; 4],
             dst: [u8; 4],
             dport: u16,
             score: f32,
             summary: &str,
             why: &[(&str, f32, &str)]| {
        NewAnomaly {
            ts_ms: now_ms,
            flow: AnomalyFlow {
                src: Ipv4Addr::from(src).into(),
                dst: Ipv4Addr::from(dst).into(),
                proto: 6,
                sport: 40123,
                dport,
                // What the data plane identifies (PostgreSQL is not among its protocols).
                l7: if dport == 502 { "modbus" } else { "" }.into(),
            },
            score,
            threshold: 0.62,
            model_id: "demo-iforest".into(),
            model_hash: "0000000000000000000000000000000000000000000000000000000000000000".into(),
            summary: summary.into(),
            explanation: why
                .iter()
                .map(|(f, c, t)| FeatureContribution {
                    feature: (*f).into(),
                    contribution: *c,
                    text: (*t).into(),
                })
                .collect(),
        }
    };
    state.anomalies.push(a(
        [10, 30, 2, 5],
        [10, 30, 1, 10],
        502,
        0.91,
        "(demo) Modbus write burst from an HMI",
        &[
            (
                "l7",
                0.55,
                "function 16 (write multiple registers) at 40x the usual rate",
            ),
            ("timing", 0.3, "no longer follows the 1 s polling cadence"),
        ],
    ));
    state.anomalies.push(a(
        [10, 10, 1, 23],
        [10, 20, 0, 5],
        5432,
        0.74,
        "(demo) office client probing the EHR database",
        &[
            ("fan_out", 0.6, "contacted 14 new hosts in a minute"),
            ("ports", 0.25, "destination port never used by this client"),
        ],
    ));
}

fn simulate(state: AppState, sim: Arc<Simulated>, clock: Arc<dyn Clock>, learn: FlowFeed) {
    let mut n: u64 = 0;
    // Open sessions: source port, totals so far, reports made.
    let mut sessions: HashMap<usize, (u16, u64, u64, u32)> = HashMap::new();
    for tick in 0u64.. {
        std::thread::sleep(Duration::from_millis(400));
        for (i, (s, d, proto, dport)) in TALKS.iter().enumerate() {
            n = n.wrapping_add(1);
            // Conversations at different rates: every tick, every second, every third.
            if tick % (1 + i as u64 % 3) != 0 {
                continue;
            }
            let mut sport = 40000 + (n % 20000) as u16;
            let session = LONG_LIVED.contains(&i).then(|| {
                let s = sessions.entry(i).or_insert((sport, 0, 0, 0));
                sport = s.0;
                *s
            });
            let key = FlowKey::v4(
                Ipv4Addr::from(*s),
                Ipv4Addr::from(*d),
                *proto,
                sport,
                *dport,
            );
            let Ok(Ok(e)) = state.core.run_blocking(|svc| svc.decide(None, &key)) else {
                continue; // no policy running: the data plane would drop and log nothing here
            };
            let packets = 2 + (n * 7 + i as u64 * 13) % 40;
            let bytes = packets * (60 + (i as u64 * 97) % 1200);
            // Each made-up record is a whole (ended or refused) flow with its counters, or a
            // report of a long-lived session.
            let mut rec = FlowRecord {
                ts_ms: clock.now_ms(),
                kind: if e.action == "deny" {
                    FlowKind::Deny
                } else {
                    FlowKind::End
                },
                src: Ipv4Addr::from(*s).to_string(),
                dst: Ipv4Addr::from(*d).to_string(),
                proto: *proto,
                sport,
                dport: *dport,
                action: e.action.into(),
                mode: e.mode.into(),
                rule: e.rule,
                revision: e.revision,
                packets,
                bytes,
                total_packets: 0,
                total_bytes: 0,
                clause: e
                    .clause
                    .as_ref()
                    .map_or_else(|| "default (no rule matched)".into(), ToString::to_string),
                l7: if e.action == "inspect" {
                    l7_of(*dport).into()
                } else {
                    String::new()
                },
                l7_reason: String::new(),
            };
            match session {
                Some(_) if rec.kind == FlowKind::Deny => {
                    sessions.remove(&i);
                }
                Some((_, p, b, reports)) => {
                    let (p, b) = (p + packets, b + bytes);
                    rec.kind = match reports {
                        0 => FlowKind::Start,
                        r if r >= SESSION_REPORTS => FlowKind::End,
                        _ => FlowKind::Update,
                    };
                    if rec.kind == FlowKind::Start {
                        (rec.packets, rec.bytes) = (0, 0);
                        sessions.insert(i, (sport, 0, 0, 1));
                    } else {
                        (rec.total_packets, rec.total_bytes) = (p, b);
                        if rec.kind == FlowKind::End {
                            sessions.remove(&i);
                        } else {
                            sessions.insert(i, (sport, p, b, reports + 1));
                        }
                    }
                }
                None if rec.kind == FlowKind::End => {
                    (rec.total_packets, rec.total_bytes) = (rec.packets, rec.bytes);
                }
                None => {}
            }
            // History and rule usage, as `septa run` feeds them: never updates; an end with
            // the flow's totals.
            if rec.kind != FlowKind::Update
                && let Ok(mut o) = ObservedFlow::try_from(&rec)
            {
                if rec.kind == FlowKind::End {
                    (o.packets, o.bytes) = (rec.total_packets, rec.total_bytes);
                }
                learn.offer(o);
            }
            sim.record(rec);
        }
    }
}

/// The L7 protocol the demo's inspect conduits speak, by port (the data plane names it in
/// `septa run`).
fn l7_of(port: u16) -> &'static str {
    match port {
        502 => "modbus",
        20000 => "dnp3",
        102 => "s7comm",
        44818 => "enip",
        47808 => "bacnet",
        2404 => "iec104",
        4840 => "opcua",
        _ => "l7",
    }
}

struct Args {
    port: u16,
    data: Option<PathBuf>,
    fast_hash: bool,
    policy: PathBuf,
    traffic: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        port: 8080,
        data: None,
        fast_hash: false,
        policy: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/policies/demo.yaml"),
        traffic: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => a.port = val()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--data" => a.data = Some(val()?.into()),
            "--policy" => a.policy = val()?.into(),
            "--fast-hash" => a.fast_hash = true,
            "--no-traffic" => a.traffic = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let tmp;
    let dir = match &a.data {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut svc = PolicyService::open(
        ServiceConfig::new(&dir),
        DynPublisher(Arc::new(AcceptAll)),
        clock.clone(),
    )?;
    if svc.running().is_none() {
        let text = std::fs::read_to_string(&a.policy)?;
        svc.commit(
            &text,
            Format::Yaml,
            &Actor::system("console-demo"),
            "demo policy",
            CommitOptions::default(),
        )?;
    }
    let sim = Arc::new(Simulated::new());
    let mut opts = ApiOptions::new(&dir);
    if a.fast_hash {
        opts.password_cost = PasswordCost::insecure_fast_for_tests();
    }
    opts.flows = Arc::new(Flows(Arc::clone(&sim)));
    opts.counters = Arc::new(Counters(Arc::clone(&sim)));
    opts.health = Arc::new(Health {
        started: std::time::Instant::now(),
        sim: Arc::clone(&sim),
    });
    let (state, pw) = AppState::new(svc, clock.clone(), opts)?;
    if let Some(pw) = pw {
        println!("first login: admin / {pw}");
    }
    let secret = format!("septa_demo_{}", std::process::id());
    let info = TokenInfo {
        id: format!("demo-{}", std::process::id()),
        role: Role::Admin,
        created_by: "console-demo".into(),
        created_ms: clock.now_ms(),
        expires_ms: None,
    };
    state.auth.insert_token(info, &secret, || Ok(()))?;
    println!("admin token: {secret}");
    // Written out and joined when the server stops.
    let mut learn_thread = None;
    if a.traffic {
        demo_anomalies(&state, clock.now_ms());
        let core = state.core.clone();
        let targets = FeedTargets {
            history: Some(FlowHistory::open(&dir, HistoryConfig::default())?),
            revisions: Box::new(move |rev: &str| {
                core.run_blocking(|svc| {
                    (svc.running().map(|r| r.hash.as_str()) == Some(rev))
                        .then(|| svc.running_table().cloned())
                        .flatten()
                })
                .ok()
                .flatten()
            }),
            sinks: Vec::new(),
        };
        let (learn, handle) = feed::spawn(targets, FeedConfig::default())?;
        learn_thread = Some(handle);
        let (st, sim, clock) = (state.clone(), Arc::clone(&sim), clock.clone());
        std::thread::spawn(move || simulate(st, sim, clock, learn));
    }
    let mut cfg = ServeConfig::new(([127, 0, 0, 1], a.port).into(), &dir);
    cfg.tls = TlsMode::PlainHttp;
    println!("listening: http://127.0.0.1:{}/", a.port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg, state, async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    drop(learn_thread);
    Ok(())
}
