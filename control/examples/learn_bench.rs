//! Runs the `septa-bench recommend` / `septa-bench history` measurements (the same code,
//! `bench/src/learn_core.rs`) without building the data-plane crates.
//!
//! `cargo run --release -p septa-control --example learn_bench -- recommend [ZONES HOSTS RECORDS]`
//! `cargo run --release -p septa-control --example learn_bench -- history [RECORDS BATCH]`
//! `cargo run --release -p septa-control --example learn_bench -- feed [RECORDS RATE]`: the
//! learning feed of `septa run` (bounded queue → batches → history + rule usage) offered
//! `RECORDS` at `RATE` records/s (0: as fast as one thread can), against direct ingest of the same
//! records in the feed's batch size, in the same run.

#[path = "../../bench/src/learn_core.rs"]
mod learn_core;

use std::time::{Duration, Instant};

use septa_control::history::feed::{self, FeedConfig, FeedTargets};
use septa_control::history::{FlowHistory, HistoryConfig};
use septa_control::recommend::synth::Scenario;

fn feed_line(records: usize, rate: u64) -> Result<String, Box<dyn std::error::Error>> {
    let s = Scenario::tiered(50, 100);
    let flows = s.flows(records, 0, 14 * 86_400_000, 1);
    let dir = tempfile::tempdir()?;
    let cfg = FeedConfig::default();

    // Baseline: the same records ingested directly in the feed's batch size.
    let mut h = FlowHistory::open(&dir.path().join("direct"), HistoryConfig::default())?;
    let t = Instant::now();
    for chunk in flows.chunks(cfg.batch) {
        h.ingest(chunk)?;
    }
    let direct = records as f64 / t.elapsed().as_secs_f64();
    drop(h);

    let targets = FeedTargets {
        history: Some(FlowHistory::open(
            &dir.path().join("feed"),
            HistoryConfig::default(),
        )?),
        revisions: Box::new(|_: &str| None),
        sinks: Vec::new(),
    };
    let (tx, handle) = feed::spawn(targets, cfg)?;
    let stats = std::sync::Arc::clone(handle.stats());
    let t = Instant::now();
    let mut offer_ns = 0u128;
    for (i, f) in flows.into_iter().enumerate() {
        if rate > 0 && i % 1000 == 0 {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(t.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let o = Instant::now();
        tx.offer(f);
        offer_ns += o.elapsed().as_nanos();
    }
    let offered_s = t.elapsed().as_secs_f64();
    drop(tx);
    handle.stop();
    let total_s = t.elapsed().as_secs_f64();
    let st = stats.snapshot();
    let end_to_end = st.ingested as f64 / total_s;
    Ok(format!(
        "records={records} target_rate={rate} offered_in_s={offered_s:.2} offer_ns_mean={:.0} dropped={} ingested={} feed_records_per_s={end_to_end:.0} direct_ingest_records_per_s={direct:.0} ratio_vs_direct={:.2}",
        offer_ns as f64 / records.max(1) as f64,
        st.dropped,
        st.ingested,
        end_to_end / direct
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args.get(i).map(|s| s.parse()).transpose()?.unwrap_or(d))
    };
    let line = match args.first().map(String::as_str) {
        Some("recommend") => learn_core::recommend_line(
            num(1, 50)?,
            u8::try_from(num(2, 100)?)?,
            num(3, 1_000_000)?,
            1,
        )?,
        Some("feed") => feed_line(num(1, 1_000_000)?, num(2, 0)? as u64)?,
        Some("history") => {
            learn_core::history_line(50, 100, num(1, 1_000_000)?, num(2, 10_000)?, 1)?
        }
        _ => {
            return Err(
                "usage: learn_bench recommend [ZONES HOSTS RECORDS] | history [RECORDS BATCH] | feed [RECORDS RATE]"
                    .into(),
            );
        }
    };
    println!("{line}");
    Ok(())
}
