//! RCU publication measurements for `septa-bench classbench --rcu N`: publish-to-visible latency
//! seen by a worker that loads the table once per burst, and the per-burst cost of `load()`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use septa_classifier::{Decision, FlowKey, RuleTable, TableCell};

/// Publishes `count` tables (alternating between `a` and `b`) while one worker classifies bursts
/// of `keys`; prints `publishes= p50_us= p99_us= max_us= load_ns=`.
pub fn publish_latency(a: &RuleTable, b: &RuleTable, keys: &[FlowKey], count: usize, burst: usize) {
    let cell = TableCell::new(a.clone());
    let stop = Arc::new(AtomicBool::new(false));
    // The worker writes the epoch it sees and when, the publisher reads it.
    let seen = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    let seen_at = Arc::new(AtomicU64::new(0));
    // Bursts the worker has started, and the burst count when it first saw the newest epoch.
    let bursts_done = Arc::new(AtomicU64::new(0));
    let seen_burst = Arc::new(AtomicU64::new(0));
    let worker = {
        let (cell, stop, seen, seen_at) = (
            Arc::clone(&cell),
            Arc::clone(&stop),
            Arc::clone(&seen),
            Arc::clone(&seen_at),
        );
        let (bursts_done, seen_burst) = (Arc::clone(&bursts_done), Arc::clone(&seen_burst));
        let keys = keys.to_vec();
        std::thread::spawn(move || {
            let mut reader = cell.reader();
            let mut out = vec![Decision::default(); burst];
            let mut last = 0;
            let mut bursts = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for chunk in keys.chunks(burst) {
                    let n = bursts_done.fetch_add(1, Ordering::AcqRel) + 1;
                    let t = reader.load();
                    if t.epoch() != last {
                        last = t.epoch();
                        seen_at.store(origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        seen_burst.store(n, Ordering::Relaxed);
                        seen.store(last, Ordering::Release);
                    }
                    t.classify_burst(chunk, &mut out[..chunk.len()]);
                    bursts += 1;
                }
            }
            bursts
        })
    };
    let tables = [a.clone(), b.clone()];
    let mut lat = Vec::with_capacity(count);
    let mut late = Vec::with_capacity(count);
    for i in 0..count {
        let next = tables[i % 2].clone();
        let t0 = origin.elapsed().as_nanos() as u64;
        let epoch = cell.publish(next);
        // Bursts already started when the publish completed (the one in flight may use the old
        // table); visible "within one burst" means the next burst sees it.
        let b0 = bursts_done.load(Ordering::Acquire);
        let deadline = Instant::now() + Duration::from_secs(1);
        while seen.load(Ordering::Acquire) < epoch && Instant::now() < deadline {
            // Sleep rather than spin: on two shared cores a spinning publisher steals the worker's CPU.
            std::thread::sleep(Duration::from_micros(20));
        }
        lat.push(seen_at.load(Ordering::Relaxed).saturating_sub(t0));
        late.push(seen_burst.load(Ordering::Relaxed).saturating_sub(b0));
        std::thread::sleep(Duration::from_micros(200));
    }
    late.sort_unstable();
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1e3;

    // Per-burst cost of the worker's quiescent point when nothing changed.
    let mut reader = cell.reader();
    let n = 20_000_000u64;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(reader.load().epoch());
    }
    let load_ns = t.elapsed().as_nanos() as f64 / n as f64;
    let swap = arc_swap::ArcSwap::from_pointee(a.clone());
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(swap.load().epoch());
    }
    let guard_ns = t.elapsed().as_nanos() as f64 / n as f64;
    let shared = Arc::new(a.clone());
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(Arc::clone(&shared).epoch());
    }
    let clone_ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "publishes={} p50_us={:.1} p99_us={:.1} max_us={:.1} bursts_to_visible_p99={} bursts_to_visible_max={} burst={burst} reader_load_ns={load_ns:.2} arcswap_guard_load_ns={guard_ns:.2} arc_clone_ns={clone_ns:.2}",
        lat.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        late[(late.len() - 1) * 99 / 100],
        late[late.len() - 1],
    );
}
