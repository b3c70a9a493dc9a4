//! The measurements behind `septa-bench recommend` and `septa-bench history` (see `learn.rs`),
//! kept free of clap and anyhow so that `control/examples/learn_bench.rs` can run the very same
//! code without the data-plane crates (`#[path]`-included there).

use std::collections::BTreeSet;
use std::error::Error;
use std::time::Instant;

use septa_control::history::{FlowHistory, HistoryConfig, ObservedFlow, aggregate};
use septa_control::recommend::synth::Scenario;
use septa_control::recommend::{RecommendOptions, recommend};

const DAY: i64 = 86_400_000;

type Res = Result<String, Box<dyn Error>>;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Runs the recommender benchmark; returns its `key=value` line.
pub fn recommend_line(zones: usize, hosts: u8, records: usize, seed: u64) -> Res {
    let s = Scenario::tiered(zones, hosts);
    let flows = s.flows(records, 0, 14 * DAY, seed);

    let t = Instant::now();
    let mut sorted: Vec<&ObservedFlow> = flows.iter().collect();
    sorted.sort_unstable_by_key(|f| (f.src, f.dst, f.proto, f.dport));
    let baseline_ms = ms(t);
    drop(sorted);

    let t0 = Instant::now();
    let aggs = aggregate(&flows);
    let aggregate_ms = ms(t0);
    let t = Instant::now();
    let opts = RecommendOptions {
        from_ms: 0,
        to_ms: 14 * DAY,
        ..RecommendOptions::default()
    };
    let rec = recommend(&aggs, &opts);
    let recommend_ms = ms(t);
    let t = Instant::now();
    let policy = rec
        .policy(&BTreeSet::new())
        .map_err(|d| format!("the proposal does not validate: {d:?}"))?;
    septa_control::compile(&policy)?;
    let validate_compile_ms = ms(t);
    let total_ms = ms(t0);
    Ok(format!(
        "endpoints={} records={} aggregates={} zones={} conduits={} coverage_pct={} aggregate_ms={aggregate_ms:.0} recommend_ms={recommend_ms:.0} validate_compile_ms={validate_compile_ms:.0} total_ms={total_ms:.0} baseline_sort_ms={baseline_ms:.0} ratio_vs_sort={:.2}",
        rec.endpoints.len(),
        records,
        aggs.len(),
        rec.zones.len(),
        rec.conduits.len(),
        rec.coverage_pct,
        total_ms / baseline_ms.max(0.001),
    ))
}

/// Runs the history ingest benchmark; returns its `key=value` line.
pub fn history_line(zones: usize, hosts: u8, records: usize, batch: usize, seed: u64) -> Res {
    let s = Scenario::tiered(zones, hosts);
    let flows = s.flows(records, 0, 14 * DAY, seed);
    let dir = tempfile::tempdir()?;
    let batch = batch.max(1);

    // Baseline: plain inserts of the same records, same journal settings, no aggregation.
    let base_dir = dir.path().join("baseline");
    std::fs::create_dir_all(&base_dir)?;
    let mut conn = rusqlite::Connection::open(base_dir.join("plain.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE plain (ts INTEGER, src TEXT, dst TEXT, proto INTEGER, dport INTEGER,
         packets INTEGER, bytes INTEGER)",
    )?;
    let t = Instant::now();
    for chunk in flows.chunks(batch) {
        let tx = conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT INTO plain VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            for f in chunk {
                st.execute(rusqlite::params![
                    f.ts_ms,
                    f.src.to_string(),
                    f.dst.to_string(),
                    f.proto,
                    f.dport,
                    f.packets as i64,
                    f.bytes as i64
                ])?;
            }
        }
        tx.commit()?;
    }
    let base_rate = records as f64 / t.elapsed().as_secs_f64();

    let mut h = FlowHistory::open(&dir.path().join("data"), HistoryConfig::default())?;
    let t = Instant::now();
    for chunk in flows.chunks(batch) {
        h.ingest(chunk)?;
    }
    let ingest_ms = ms(t);
    let rate = records as f64 / (ingest_ms / 1000.0);
    Ok(format!(
        "records={} batch={batch} aggregates={} ingest_ms={ingest_ms:.0} records_per_s={rate:.0} baseline_records_per_s={base_rate:.0} ratio_vs_plain_insert={:.2}",
        records,
        h.len(),
        rate / base_rate
    ))
}
