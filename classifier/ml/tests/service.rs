//! The inference service end to end: rings in, events out; a panicking or stalling scorer is
//! detected and replaced without losing the rings.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use septa_features::FeatureRecord;
use septa_features::spread::{NewFlow, SampleSender, Sampled, SpreadQuery};
use septa_ml::{
    Engine, Health, MlConfig, MlError, MlEvent, Scorer, Service, ServiceConfig, heldout, rings,
};

fn fast() -> ServiceConfig {
    ServiceConfig {
        batch_max: 32,
        idle: Duration::from_millis(1),
        stall_after: Duration::from_millis(800),
        check_every: Duration::from_millis(20),
    }
}

fn wait_for(rx: &Receiver<MlEvent>, what: &str, pred: impl Fn(&MlEvent) -> bool) -> Vec<MlEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(ev) = rx.recv_timeout(Duration::from_millis(50)) {
            let done = pred(&ev);
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }
    panic!("timed out waiting for {what}; saw {seen:?}");
}

/// Counts records; panics or blocks on its first batch when it carries a fault.
struct Faulty {
    seen: Arc<AtomicU32>,
    fault: Option<Fault>,
}

#[derive(Clone, Copy)]
enum Fault {
    PanicOnFirstBatch,
    StallOnFirstBatch,
    /// Silent past `stall_after`, then a panic.
    StallThenPanic,
}

impl Scorer for Faulty {
    fn score(&mut self, batch: &[FeatureRecord], events: &mut Vec<MlEvent>) -> Result<(), MlError> {
        match self.fault.take() {
            Some(Fault::PanicOnFirstBatch) => panic!("injected fault"),
            Some(Fault::StallOnFirstBatch) => std::thread::sleep(Duration::from_secs(5)),
            Some(Fault::StallThenPanic) => {
                std::thread::sleep(Duration::from_millis(1500));
                panic!("late fault");
            }
            None => {}
        }
        self.seen.fetch_add(batch.len() as u32, Ordering::Relaxed);
        events.push(MlEvent::Health(Health::Restarted { generation: 999 }));
        Ok(())
    }
}

/// Starts a service whose first scorer carries `fault`, with `preload` records already waiting
/// in ring `ring` (so the first batch holds exactly them).
fn faulty_service(
    fault: Fault,
    ring: usize,
    preload: usize,
) -> (
    Service,
    Vec<SampleSender>,
    Receiver<MlEvent>,
    Arc<AtomicU32>,
) {
    let (mut producers, rings) = rings(2, 64);
    push(&mut producers[ring], preload);
    let (tx, rx) = sync_channel(1024);
    let seen = Arc::new(AtomicU32::new(0));
    let s = Arc::clone(&seen);
    // Only the first scorer built carries the fault.
    let builds = Arc::new(Mutex::new(0u32));
    let cfg = match fault {
        // A panicking thread prints its message (and, with RUST_BACKTRACE set as in CI, a
        // symbolised backtrace) before it finishes: on a loaded machine that took longer than
        // 800 ms once, and the watchdog reported a stall first. The panic is what is tested here.
        Fault::PanicOnFirstBatch => ServiceConfig {
            stall_after: Duration::from_secs(60),
            ..fast()
        },
        Fault::StallOnFirstBatch | Fault::StallThenPanic => fast(),
    };
    let svc = Service::start(
        rings,
        Box::new(move || {
            let mut n = builds.lock().unwrap();
            *n += 1;
            Ok(Box::new(Faulty {
                seen: Arc::clone(&s),
                fault: (*n == 1).then_some(fault),
            }) as Box<dyn Scorer>)
        }),
        tx,
        cfg,
    )
    .unwrap();
    (svc, producers, rx, seen)
}

fn push(p: &mut SampleSender, n: usize) {
    for _ in 0..n {
        p.try_send_record(FeatureRecord::default().into()).unwrap();
    }
}

#[test]
fn panicking_inference_thread_is_restarted() {
    let (svc, mut producers, rx, seen) = faulty_service(Fault::PanicOnFirstBatch, 0, 10);
    let ev = wait_for(&rx, "restart", |e| {
        matches!(e, MlEvent::Health(Health::Restarted { generation: 0 }))
    });
    assert!(ev.iter().any(|e| matches!(
        e,
        MlEvent::Health(Health::Panicked { message, lost_records: 10 }) if message == "injected fault"
    )), "{ev:?}");
    // the replacement drains both rings
    push(&mut producers[0], 5);
    push(&mut producers[1], 7);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.load(Ordering::Relaxed) < 12 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(seen.load(Ordering::Relaxed), 12);
    let stats = svc.stats();
    assert_eq!(stats.panics.load(Ordering::Relaxed), 1);
    assert_eq!(stats.restarts.load(Ordering::Relaxed), 1);
    assert_eq!(stats.lost_records.load(Ordering::Relaxed), 10);
    svc.stop();
}

#[test]
fn a_thread_replaced_as_stalled_that_panics_later_is_reported() {
    let (svc, mut producers, rx, seen) = faulty_service(Fault::StallThenPanic, 0, 3);
    let ev = wait_for(&rx, "the late panic", |e| {
        matches!(e, MlEvent::Health(Health::Panicked { .. }))
    });
    let stalled = ev.iter().position(|e| {
        matches!(
            e,
            MlEvent::Health(Health::Stalled {
                lost_records: 3,
                ..
            })
        )
    });
    let restarted = ev
        .iter()
        .position(|e| matches!(e, MlEvent::Health(Health::Restarted { .. })));
    assert!(stalled.is_some() && restarted > stalled, "{ev:?}");
    assert!(
        matches!(ev.last(), Some(MlEvent::Health(Health::Panicked { message, lost_records: 0 })) if message == "late fault"),
        "{ev:?}"
    );
    // The replacement works.
    push(&mut producers[0], 4);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.load(Ordering::Relaxed) < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(seen.load(Ordering::Relaxed), 4);
    let stats = svc.stats();
    assert_eq!(stats.stalls.load(Ordering::Relaxed), 1);
    assert_eq!(stats.panics.load(Ordering::Relaxed), 1);
    assert_eq!(stats.restarts.load(Ordering::Relaxed), 1);
    assert_eq!(stats.lost_records.load(Ordering::Relaxed), 3);
    svc.stop();
}

#[test]
fn stalled_inference_thread_is_replaced() {
    let (svc, mut producers, rx, seen) = faulty_service(Fault::StallOnFirstBatch, 1, 4);
    let ev = wait_for(&rx, "restart after stall", |e| {
        matches!(e, MlEvent::Health(Health::Restarted { .. }))
    });
    assert!(
        ev.iter().any(|e| matches!(
            e,
            MlEvent::Health(Health::Stalled {
                lost_records: 4,
                ..
            })
        )),
        "{ev:?}"
    );
    push(&mut producers[1], 6);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.load(Ordering::Relaxed) < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // the stalled thread's 4 records are lost (and counted), the new one scored the 6
    assert_eq!(seen.load(Ordering::Relaxed), 6);
    assert_eq!(svc.stats().stalls.load(Ordering::Relaxed), 1);
    assert_eq!(svc.stats().lost_records.load(Ordering::Relaxed), 4);
    // when the stalled thread wakes up it exits: its batch is neither counted nor emitted
    let emitted_before = svc.stats().events.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(5500));
    assert_eq!(
        seen.load(Ordering::Relaxed),
        10,
        "the stalled scorer did finish its batch"
    );
    assert_eq!(svc.stats().records.load(Ordering::Relaxed), 6);
    assert_eq!(svc.stats().events.load(Ordering::Relaxed), emitted_before);
    svc.stop();
}

#[test]
fn missing_model_keeps_ml_off() {
    let (_producers, rings) = rings(1, 8);
    let (tx, _rx) = sync_channel(8);
    let cfg = MlConfig::new("/nonexistent/models");
    let e = Service::start(
        rings,
        Box::new(move || Ok(Box::new(Engine::load(cfg.clone())?) as Box<dyn Scorer>)),
        tx,
        fast(),
    )
    .err()
    .expect("no model, no service");
    assert!(
        e.to_string()
            .contains("/nonexistent/models/septa-flow-mlp-v1.json"),
        "{e}"
    );
}

#[test]
fn records_from_rings_become_explained_alerts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/models");
    let rows = heldout::load(&dir.join("heldout-v1.json")).unwrap();
    let (mut producers, rings) = rings(2, 1024);
    let (tx, rx) = sync_channel(4096);
    let cfg = MlConfig::new(&dir);
    let svc = Service::start(
        rings,
        Box::new(move || Ok(Box::new(Engine::load(cfg.clone())?) as Box<dyn Scorer>)),
        tx,
        ServiceConfig::default(),
    )
    .unwrap();
    let mut attacks = 0;
    for (i, r) in rows.iter().enumerate().take(600) {
        producers[i % 2]
            .try_send_record(r.record(i).into())
            .unwrap();
        attacks += usize::from(r.label);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while svc.stats().records.load(Ordering::Relaxed) < 600 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(svc.stats().records.load(Ordering::Relaxed), 600);
    svc.stop();
    let alerts: Vec<_> = rx
        .try_iter()
        .filter_map(|e| match e {
            MlEvent::Alert(a) if a.model_id == "septa-flow-mlp-v1" => Some(a),
            _ => None,
        })
        .collect();
    assert!(
        alerts.len() >= attacks * 9 / 10 && alerts.len() <= attacks + 10,
        "{} alerts for {attacks} attacks",
        alerts.len()
    );
    assert!(
        alerts
            .iter()
            .all(|a| !a.reasons.is_empty() && !a.summary.is_empty())
    );
}

/// Reports a repeat per record and one calibration, like an engine would; the first one built
/// panics on its second batch.
struct Repeating {
    counters: septa_ml::EngineCounters,
    batches: u32,
    panics_on_second: bool,
}

impl Scorer for Repeating {
    fn score(&mut self, batch: &[FeatureRecord], _: &mut Vec<MlEvent>) -> Result<(), MlError> {
        self.batches += 1;
        if self.panics_on_second && self.batches == 2 {
            panic!("injected fault");
        }
        self.counters.repeats += batch.len() as u64;
        self.counters.calibrations = 1;
        Ok(())
    }

    fn counters(&self) -> septa_ml::EngineCounters {
        self.counters
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn engine_repeats_and_calibrations_are_summed_across_a_restart() {
    let (mut producers, rings) = rings(1, 64);
    // Waiting before the start: the first batch holds exactly these.
    push(&mut producers[0], 5);
    let (tx, rx) = sync_channel(1024);
    let builds = Arc::new(Mutex::new(0u32));
    let svc = Service::start(
        rings,
        Box::new(move || {
            let mut n = builds.lock().unwrap();
            *n += 1;
            Ok(Box::new(Repeating {
                counters: septa_ml::EngineCounters::default(),
                batches: 0,
                panics_on_second: *n == 1,
            }) as Box<dyn Scorer>)
        }),
        tx,
        fast(),
    )
    .unwrap();
    let stats = svc.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    wait_until("the first batch's counters", || load(&stats.batches) == 1);
    assert_eq!((load(&stats.repeats), load(&stats.calibrations)), (5, 1));
    // The next batch kills the first engine; its replacement counts from zero again and scores
    // what the dead one did not take.
    push(&mut producers[0], 3);
    wait_for(&rx, "restart", |e| {
        matches!(e, MlEvent::Health(Health::Restarted { .. }))
    });
    push(&mut producers[0], 4);
    wait_until("every record scored or lost", || {
        load(&stats.records) + load(&stats.lost_records) == 5 + 3 + 4
    });
    assert!(load(&stats.lost_records) >= 1, "the panicking batch");
    assert_eq!(
        (load(&stats.repeats), load(&stats.calibrations)),
        (load(&stats.records), 2),
        "the totals keep what the first engine counted and add the second's"
    );
    svc.stop();
}

/// Keeps the spread of every record it scores.
struct Spreads(Arc<Mutex<Vec<septa_features::Spread>>>);

impl Scorer for Spreads {
    fn score(&mut self, batch: &[FeatureRecord], _: &mut Vec<MlEvent>) -> Result<(), MlError> {
        self.0
            .lock()
            .unwrap()
            .extend(batch.iter().map(|r| r.spread));
        Ok(())
    }
}

/// The service fills each record's spread from the sketches every worker's new flows
/// feed: a sweep whose flows two workers saw shows whole in a record of either.
#[test]
fn records_get_their_spread_from_every_workers_new_flows() {
    let (mut producers, rings) = rings(2, 64);
    let spreads = Arc::new(Mutex::new(Vec::new()));
    let (tx, _rx) = sync_channel(64);
    let kept = Arc::clone(&spreads);
    let svc = Service::start(
        rings,
        Box::new(move || Ok(Box::new(Spreads(Arc::clone(&kept))) as Box<dyn Scorer>)),
        tx,
        fast(),
    )
    .unwrap();
    // 10.0.0.9 reaches 40 hosts on 445/tcp: 20 through each worker.
    let flow = |h: u32| NewFlow {
        src: 0x0a00_0009,
        dst: u128::from(0x0a01_0000 + h),
        tick: 2_000_000,
        dport: 445,
        proto: 6,
    };
    for (w, p) in producers.iter_mut().enumerate() {
        for h in 0..20 {
            p.try_send_flow(flow(w as u32 * 20 + h)).unwrap();
        }
    }
    let stats = svc.stats();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.spread_flows.load(Ordering::Relaxed) < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(stats.spread_flows.load(Ordering::Relaxed), 40);
    let mut record = FeatureRecord::default();
    record.key.src = "10.0.0.9".parse().unwrap();
    record.key.dst = "10.1.0.0".parse().unwrap();
    record.key.dst_port = 445;
    record.key.proto = 6;
    producers[1]
        .try_send_record(Sampled {
            record,
            spread: Some(SpreadQuery {
                tick: 2_000_000,
                flows: 20,
            }),
        })
        .unwrap();
    while stats.records.load(Ordering::Relaxed) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    svc.stop();
    let got = spreads.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!((38..=42).contains(&got[0].src_hosts_on_port), "{got:?}");
    assert_eq!(got[0].window_s, 10);
    assert_eq!(stats.spread_evictions.load(Ordering::Relaxed), 0);
}

#[test]
fn a_bad_spread_config_is_refused_when_the_rings_are_made() {
    let bad = septa_features::spread::SpreadConfig {
        slots: 3000,
        window_us: 10_000_000,
    };
    match septa_ml::rings_with(2, 16, bad) {
        Err(MlError::Config(m)) => assert!(m.contains("slots 3000 must be a power of two"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("3000 slots accepted"),
    }
}
