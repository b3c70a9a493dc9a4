//! The inference service: one thread drains the per-worker SPSC rings, batches, scores and emits
//! events; a supervisor thread watches it and replaces it when it panics or stalls.
//!
//! Races, walked through:
//! - The rings are bounded single-producer, single-consumer `rtrb` rings, two per worker,
//!   records and new flows ([`septa_features::spread::sample_channel`]: preallocated, a push is
//!   a copy into the slot and one release store, it never blocks; a full ring drops and the
//!   sampler counts it). The receivers and the spread sketches (one set for all workers) live in
//!   a mutex that the inference thread takes only while popping a batch of records, filling
//!   their spread and applying the waiting new flows, never while scoring. A thread that stalls inside a model therefore holds no lock, and its replacement
//!   can drain the rings at once; the sketches survive it. Workers never touch this mutex.
//! - Each spawned thread gets a generation number. The supervisor bumps the shared generation
//!   when it gives up on a stalled thread; the old thread, if it ever wakes, sees the change and
//!   exits after its current batch, emitting nothing (its events are discarded).
//! - A panic poisons nothing that matters: a poisoned receiver mutex is recovered (a ring's
//!   read position moves only when a pop or a read chunk completes, so it stays consistent).
//! - Records popped by a thread that then panics or stalls are lost; the supervisor counts them
//!   (`lost_records`) from the thread's published in-flight count.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use septa_features::FeatureRecord;
use septa_features::spread::{
    SampleReceiver, SampleSender, SpreadConfig, SpreadSketches, sample_channel,
};

use crate::alert::{Health, MlEvent};
use crate::engine::{Engine, EngineCounters};
use crate::error::MlError;

/// Scores a batch. [`Engine`] is the real one; tests inject faulty ones.
pub trait Scorer: Send {
    fn score(&mut self, batch: &[FeatureRecord], events: &mut Vec<MlEvent>) -> Result<(), MlError>;

    /// The scorer's own counters since it was built (the service adds what they grew by after
    /// each batch to [`ServiceStats`], so the totals survive a restart). None by default.
    fn counters(&self) -> EngineCounters {
        EngineCounters::default()
    }
}

impl Scorer for Engine {
    fn score(&mut self, batch: &[FeatureRecord], events: &mut Vec<MlEvent>) -> Result<(), MlError> {
        self.score_batch(batch, events)
    }

    fn counters(&self) -> EngineCounters {
        self.counters
    }
}

/// Builds a scorer on the inference thread's behalf (again after each restart).
pub type ScorerFactory = Box<dyn Fn() -> Result<Box<dyn Scorer>, MlError> + Send + Sync>;

/// New flows each worker's flow ring holds (48 bytes each, 768 KiB): 4 ms of a worker taking 4 M
/// new flows a second, while the inference thread sleeps 1 ms when idle.
pub const SPREAD_RING: usize = 16384;

/// The consumer ends of the per-worker rings and the spread sketches they feed.
pub struct Rings {
    inner: Mutex<RingsInner>,
}

struct RingsInner {
    consumers: Vec<SampleReceiver>,
    sketches: SpreadSketches,
}

/// Creates `workers` sample channels of `capacity` records and [`SPREAD_RING`] new flows, and the spread sketches (default size and window, `SpreadConfig::default`): the
/// senders go to the workers' samplers (one each, `septa_dataplane::sample::Sampler::new`), the
/// [`Rings`] to [`Service::start`].
pub fn rings(workers: usize, capacity: usize) -> (Vec<SampleSender>, Rings) {
    rings_with(workers, capacity, SpreadConfig::default()).expect("the default spread config")
}

/// [`rings`] with spread sketches of `spread`.
pub fn rings_with(
    workers: usize,
    capacity: usize,
    spread: SpreadConfig,
) -> Result<(Vec<SampleSender>, Rings), MlError> {
    let sketches = SpreadSketches::new(spread).map_err(|e| MlError::Config(e.to_string()))?;
    let (producers, consumers) = (0..workers)
        .map(|_| sample_channel(capacity, SPREAD_RING))
        .unzip();
    Ok((
        producers,
        Rings {
            inner: Mutex::new(RingsInner {
                consumers,
                sketches,
            }),
        },
    ))
}

/// Tuning of the service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub batch_max: usize,
    /// Sleep when every ring is empty.
    pub idle: Duration,
    /// A thread whose heartbeat does not move for this long is declared stalled.
    pub stall_after: Duration,
    /// How often the supervisor looks.
    pub check_every: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            batch_max: 256,
            idle: Duration::from_millis(1),
            stall_after: Duration::from_secs(5),
            check_every: Duration::from_millis(100),
        }
    }
}

/// Counters of the service, readable at any time.
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub events: AtomicU64,
    /// Events dropped because the event channel was full.
    pub events_dropped: AtomicU64,
    pub score_errors: AtomicU64,
    pub panics: AtomicU64,
    pub stalls: AtomicU64,
    pub restarts: AtomicU64,
    /// Records popped by a thread that then panicked or stalled.
    pub lost_records: AtomicU64,
    /// Alerts not raised again: the same model on the same flow within `repeat_window_s`
    /// (summed over the engines of every thread, see [`Scorer::counters`]).
    pub repeats: AtomicU64,
    /// Site calibrations derived and applied (warm-up or monitor mode), summed likewise.
    pub calibrations: AtomicU64,
    /// New flows added to the spread sketches (every worker's; the workers count those their
    /// full flow ring refused, `SamplerCounters::spread_lost`).
    pub spread_flows: AtomicU64,
    /// Spread-sketch slots taken over by another key before their window ended.
    pub spread_evictions: AtomicU64,
}

struct Shared {
    rings: Rings,
    factory: ScorerFactory,
    events: SyncSender<MlEvent>,
    cfg: ServiceConfig,
    stats: Arc<ServiceStats>,
    stop: AtomicBool,
    generation: AtomicU64,
}

/// Per-thread liveness, published for the supervisor.
#[derive(Default)]
struct Beat {
    count: AtomicU64,
    in_flight: AtomicU64,
}

/// A running service. Dropping it (or [`Service::stop`]) stops both threads.
pub struct Service {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
}

impl Service {
    /// Builds the first scorer on the caller's thread — so a missing or mismatched model is
    /// reported here and ML stays off — then starts the inference and supervisor threads.
    pub fn start(
        rings: Rings,
        factory: ScorerFactory,
        events: SyncSender<MlEvent>,
        cfg: ServiceConfig,
    ) -> Result<Self, MlError> {
        let first = factory()?;
        let shared = Arc::new(Shared {
            rings,
            factory,
            events,
            cfg,
            stats: Arc::new(ServiceStats::default()),
            stop: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        });
        let (handle, beat) = spawn_inference(&shared, first, 0)?;
        let sup_shared = Arc::clone(&shared);
        let supervisor = std::thread::Builder::new()
            .name("septa-ml-supervisor".into())
            .spawn(move || supervise(&sup_shared, handle, beat))
            .map_err(MlError::Spawn)?;
        Ok(Self {
            shared,
            supervisor: Some(supervisor),
        })
    }

    pub fn stats(&self) -> Arc<ServiceStats> {
        Arc::clone(&self.shared.stats)
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(s) = self.supervisor.take() {
            let _ = s.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn_inference(
    shared: &Arc<Shared>,
    scorer: Box<dyn Scorer>,
    generation: u64,
) -> Result<(JoinHandle<()>, Arc<Beat>), MlError> {
    let beat = Arc::new(Beat::default());
    let (s, b) = (Arc::clone(shared), Arc::clone(&beat));
    let handle = std::thread::Builder::new()
        .name(format!("septa-ml-{generation}"))
        .spawn(move || inference_loop(&s, scorer, &b, generation))
        .map_err(MlError::Spawn)?;
    Ok((handle, beat))
}

fn inference_loop(sh: &Shared, mut scorer: Box<dyn Scorer>, beat: &Beat, generation: u64) {
    let mut batch: Vec<FeatureRecord> = Vec::with_capacity(sh.cfg.batch_max);
    let mut events = Vec::new();
    let mut next_ring = 0usize;
    // What this thread's scorer had counted at the last batch (a new scorer starts at zero).
    let mut counted = scorer.counters();
    let current =
        || !sh.stop.load(Ordering::Acquire) && sh.generation.load(Ordering::Acquire) == generation;
    while current() {
        beat.count.fetch_add(1, Ordering::Relaxed);
        batch.clear();
        let mut spread_applied = 0;
        {
            let mut inner = sh
                .rings
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let RingsInner {
                consumers,
                sketches,
            } = &mut *inner;
            let n = consumers.len();
            for k in 0..n {
                let c = &mut consumers[(next_ring + k) % n];
                while batch.len() < sh.cfg.batch_max {
                    match c.try_recv(sketches) {
                        Some(r) => batch.push(r),
                        None => break,
                    }
                }
            }
            // What no record needed yet: the new flows the next records (of any worker) count.
            for c in consumers.iter_mut() {
                spread_applied += c.drain_spread(sketches);
            }
            sh.stats
                .spread_flows
                .store(sketches.flows(), Ordering::Relaxed);
            sh.stats
                .spread_evictions
                .store(sketches.evictions(), Ordering::Relaxed);
            next_ring = next_ring.wrapping_add(1);
        }
        if batch.is_empty() {
            if spread_applied == 0 {
                std::thread::sleep(sh.cfg.idle);
            }
            continue;
        }
        beat.in_flight.store(batch.len() as u64, Ordering::Release);
        events.clear();
        if scorer.score(&batch, &mut events).is_err() {
            sh.stats.score_errors.fetch_add(1, Ordering::Relaxed);
        }
        beat.in_flight.store(0, Ordering::Release);
        if !current() {
            break;
        }
        sh.stats
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        sh.stats.batches.fetch_add(1, Ordering::Relaxed);
        let now = scorer.counters();
        let grew = |a: u64, b: u64| a.saturating_sub(b);
        sh.stats
            .repeats
            .fetch_add(grew(now.repeats, counted.repeats), Ordering::Relaxed);
        sh.stats.calibrations.fetch_add(
            grew(now.calibrations, counted.calibrations),
            Ordering::Relaxed,
        );
        counted = now;
        for ev in events.drain(..) {
            emit(sh, ev);
        }
    }
}

fn emit(sh: &Shared, ev: MlEvent) {
    match sh.events.try_send(ev) {
        Ok(()) => {
            sh.stats.events.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            sh.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

fn supervise(sh: &Arc<Shared>, handle: JoinHandle<()>, beat: Arc<Beat>) {
    let mut current: Option<(JoinHandle<()>, Arc<Beat>)> = Some((handle, beat));
    let mut last_count = 0u64;
    let mut last_move = Instant::now();
    let mut orphans: Vec<JoinHandle<()>> = Vec::new();
    while !sh.stop.load(Ordering::Acquire) {
        std::thread::sleep(sh.cfg.check_every);
        let mut replace = false;
        if let Some((h, b)) = &current {
            if h.is_finished() {
                let lost = b.in_flight.swap(0, Ordering::AcqRel);
                let (h, _) = current.take().expect("checked above");
                let message = match h.join() {
                    Err(p) => panic_message(p.as_ref()),
                    Ok(()) => "inference thread exited".into(),
                };
                sh.stats.panics.fetch_add(1, Ordering::Relaxed);
                sh.stats.lost_records.fetch_add(lost, Ordering::Relaxed);
                emit(
                    sh,
                    MlEvent::Health(Health::Panicked {
                        message,
                        lost_records: lost,
                    }),
                );
                replace = true;
            } else {
                let count = b.count.load(Ordering::Relaxed);
                if count != last_count {
                    last_count = count;
                    last_move = Instant::now();
                } else if last_move.elapsed() >= sh.cfg.stall_after {
                    let lost = b.in_flight.swap(0, Ordering::AcqRel);
                    sh.stats.stalls.fetch_add(1, Ordering::Relaxed);
                    sh.stats.lost_records.fetch_add(lost, Ordering::Relaxed);
                    emit(
                        sh,
                        MlEvent::Health(Health::Stalled {
                            silent_ms: u64::try_from(last_move.elapsed().as_millis())
                                .unwrap_or(u64::MAX),
                            lost_records: lost,
                        }),
                    );
                    // Retire it: it exits when (if) it wakes up; we cannot kill a thread.
                    sh.generation.fetch_add(1, Ordering::AcqRel);
                    let (h, _) = current.take().expect("checked above");
                    orphans.push(h);
                    replace = true;
                }
            }
        } else {
            replace = true;
        }
        // A retired (stalled) thread that finished: if it panicked (its panic message and
        // backtrace can take longer to print than `stall_after` on a loaded machine), say so.
        // Its records were counted lost with the stall, and it was replaced then.
        let (done, running): (Vec<_>, Vec<_>) = orphans.into_iter().partition(|h| h.is_finished());
        orphans = running;
        for h in done {
            if let Err(p) = h.join() {
                sh.stats.panics.fetch_add(1, Ordering::Relaxed);
                emit(
                    sh,
                    MlEvent::Health(Health::Panicked {
                        message: panic_message(p.as_ref()),
                        lost_records: 0,
                    }),
                );
            }
        }
        if replace {
            let generation = sh.generation.load(Ordering::Acquire);
            match (sh.factory)().and_then(|s| spawn_inference(sh, s, generation)) {
                Ok(next) => {
                    sh.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    emit(sh, MlEvent::Health(Health::Restarted { generation }));
                    last_count = 0;
                    last_move = Instant::now();
                    current = Some(next);
                }
                Err(e) => emit(
                    sh,
                    MlEvent::Health(Health::RestartFailed {
                        error: e.to_string(),
                    }),
                ),
            }
        }
    }
    if let Some((h, _)) = current {
        let _ = h.join();
    }
    // Orphans (stalled threads) are not joined: they may never return. They exit on their own
    // once they wake, since `stop` is set.
}
