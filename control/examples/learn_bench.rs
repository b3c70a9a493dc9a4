//! Runs the `septa-bench recommend` / `septa-bench history` measurements (the same code,
//! `bench/src/learn_core.rs`) without building the data-plane crates.
//!
//! `cargo run --release -p septa-control --example learn_bench -- recommend [ZONES HOSTS RECORDS]`
//! `cargo run --release -p septa-control --example learn_bench -- history [RECORDS BATCH]`
//! `cargo run --release -p septa-control --example learn_bench -- feed [RECORDS RATE ENDS]`: the
//! learning feed of `septa run` (bounded queue → in-memory window → history + rule usage on the
//! writer thread) offered `RECORDS` at `RATE` records/s (0: as fast as one thread can), against
//! direct ingest of the same records in batches of 8,192 (the session-3 baseline), in the same
//! run. `ENDS` = 1 offers every flow twice, as `septa run` does (its start, then its end with
//! `flows` = 0, same key); 0 (default) offers each record once: every record a new key, the
//! worst case. Rule usage is resolved against a small compiled policy (every record decided by its conduit). Also
//! prints the feed threads' on-CPU time (`/proc/self/task/*/schedstat`) per record, which a
//! loaded machine does not inflate.

#[path = "../../bench/src/learn_core.rs"]
mod learn_core;

use std::sync::Arc;
use std::time::{Duration, Instant};

use septa_control::Format;
use septa_control::history::feed::{self, FeedConfig, FeedTargets};
use septa_control::history::{FlowHistory, HistoryConfig, ObservedFlow};
use septa_control::lifecycle::check_policy;
use septa_control::recommend::synth::Scenario;

const USAGE_POLICY: &str = "apiVersion: septa.io/v1\nkind: Policy\nmetadata:\n  name: bench\nspec:\n  zones:\n    - name: a\n      subnets: [10.0.0.0/8]\n  conduits:\n    - name: a-to-a\n      from: [a]\n      to: [a]\n      services:\n        - proto: tcp\n          ports: [80]\n";

/// On-CPU nanoseconds of this process's threads whose name starts with `prefix`.
fn threads_cpu_ns(prefix: &str) -> Option<u64> {
    let mut total = None;
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
        *total.get_or_insert(0) += ns;
    }
    total
}

fn feed_line(records: usize, rate: u64, ends: bool) -> Result<String, Box<dyn std::error::Error>> {
    let s = Scenario::tiered(50, 100);
    // Rule usage resolves the records' revision to a compiled policy (every record: its conduit).
    let (_, compiled) = check_policy(USAGE_POLICY, Format::Yaml, None)?;
    let key = septa_classifier::FlowKey::v4("10.0.0.1".parse()?, "10.0.0.2".parse()?, 6, 4000, 80);
    let rule = septa_control::decide(&compiled, "monitor", &key).rule;
    let compiled = Arc::new(compiled);
    let mut flows = s.flows(records, 0, 14 * 86_400_000, 1);
    for f in &mut flows {
        f.rule = rule;
    }
    if ends {
        // Each flow as `septa run` reports it: its start, then its end (same key, flows = 0).
        flows = flows
            .into_iter()
            .flat_map(|f| {
                let end = ObservedFlow {
                    flows: 0,
                    ts_ms: f.ts_ms + 1,
                    ..f.clone()
                };
                let start = ObservedFlow {
                    packets: 0,
                    bytes: 0,
                    ..f
                };
                [start, end]
            })
            .collect();
    }
    let records = flows.len();
    let dir = tempfile::tempdir()?;
    let cfg = FeedConfig::default();

    // Baseline: the same records ingested directly in batches of 8,192.
    let mut h = FlowHistory::open(&dir.path().join("direct"), HistoryConfig::default())?;
    let t = Instant::now();
    for chunk in flows.chunks(8192) {
        h.ingest(chunk)?;
    }
    let direct = records as f64 / t.elapsed().as_secs_f64();
    drop(h);

    let c2 = Arc::clone(&compiled);
    let targets = FeedTargets {
        history: Some(FlowHistory::open(
            &dir.path().join("feed"),
            HistoryConfig::default(),
        )?),
        revisions: Box::new(move |r: &str| (r == "monitor").then(|| Arc::clone(&c2))),
        sinks: Vec::new(),
    };
    let (tx, handle) = feed::spawn(targets, cfg)?;
    let stats = Arc::clone(handle.stats());
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
    // Everything accepted is written within a flush interval or two; wait for it, then read
    // the threads' CPU time before they exit.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = stats.snapshot();
        if st.ingested + st.history_errors >= st.offered || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let total_s = t.elapsed().as_secs_f64();
    let cpu_ns = threads_cpu_ns("septa-learn");
    drop(tx);
    handle.stop();
    let st = stats.snapshot();
    let end_to_end = st.ingested as f64 / total_s;
    let cpu = match cpu_ns {
        Some(ns) => format!(
            "feed_cpu_ms={:.0} feed_cpu_ns_per_record={:.0} feed_records_per_cpu_s={:.0}",
            ns as f64 / 1e6,
            ns as f64 / st.ingested.max(1) as f64,
            st.ingested as f64 / (ns as f64 / 1e9)
        ),
        None => "feed_cpu_ms=n/a".into(),
    };
    Ok(format!(
        "records={records} ends={} target_rate={rate} offered_rate={:.0} offer_ns_mean={:.0} dropped={} ingested={} windows={} usage_attributed={} feed_records_per_s={end_to_end:.0} {cpu} direct_ingest_records_per_s={direct:.0} ratio_vs_direct={:.2}",
        u8::from(ends),
        records as f64 / offered_s,
        offer_ns as f64 / records.max(1) as f64,
        st.dropped,
        st.ingested,
        st.batches,
        st.usage_attributed,
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
        Some("feed") => feed_line(num(1, 1_000_000)?, num(2, 0)? as u64, num(3, 0)? == 1)?,
        Some("history") => {
            learn_core::history_line(50, 100, num(1, 1_000_000)?, num(2, 10_000)?, 1)?
        }
        _ => {
            return Err(
                "usage: learn_bench recommend [ZONES HOSTS RECORDS] | history [RECORDS BATCH] | feed [RECORDS RATE ENDS]"
                    .into(),
            );
        }
    };
    println!("{line}");
    Ok(())
}
