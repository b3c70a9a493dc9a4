//! `septa-bench recommend` and `septa-bench history`: the learner's two targets (issue 8).
//!
//! * `recommend`: generated traffic from a known generating policy (`--zones` × `--hosts`
//!   endpoints, `--records` flow records), timed: in-memory aggregation + recommendation, then
//!   validate + compile of the proposal. Baseline in the same run: sorting the same records by
//!   flow key (one pass over the data any analysis needs). Target: 5,000 endpoints and 1 M
//!   records in ≤ 10 s.
//!   Prints `endpoints= records= aggregates= zones= conduits= aggregate_ms= recommend_ms=
//!   validate_compile_ms= total_ms= baseline_sort_ms= ratio_vs_sort=`.
//! * `history`: ingest rate of the SQLite flow history (batches in transactions, aggregation,
//!   retention) against a baseline of plain row inserts of the same records into an unindexed
//!   table in the same kind of database. Target: 200 k records/s.
//!   Prints `records= batch= aggregates= ingest_ms= records_per_s= baseline_records_per_s=
//!   ratio_vs_plain_insert=`.

#[path = "learn_core.rs"]
mod learn_core;
#[path = "learn_feed.rs"]
mod learn_feed;

/// Arguments of `septa-bench recommend`.
#[derive(clap::Args)]
pub struct RecommendArgs {
    /// Zones of the generating policy (hosts in `10.x.y.0/24` each).
    #[arg(long, default_value_t = 50)]
    zones: usize,
    /// Hosts per zone.
    #[arg(long, default_value_t = 100)]
    hosts: u8,
    /// Flow records.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Arguments of `septa-bench history`.
#[derive(clap::Args)]
pub struct HistoryArgs {
    /// Flow records.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Records per ingest batch (one transaction each).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Zones of the generated traffic.
    #[arg(long, default_value_t = 50)]
    zones: usize,
    /// Hosts per zone.
    #[arg(long, default_value_t = 100)]
    hosts: u8,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn recommend_run(a: RecommendArgs) -> anyhow::Result<()> {
    let line = learn_core::recommend_line(a.zones, a.hosts, a.records, a.seed)
        .map_err(|e| anyhow::anyhow!("recommend benchmark: {e}"))?;
    println!("{line}");
    Ok(())
}

pub fn history_run(a: HistoryArgs) -> anyhow::Result<()> {
    let line = learn_core::history_line(a.zones, a.hosts, a.records, a.batch, a.seed)
        .map_err(|e| anyhow::anyhow!("history benchmark: {e}"))?;
    println!("{line}");
    Ok(())
}

/// Arguments of `septa-bench learn-feed` (see `learn_feed.rs`).
#[derive(clap::Args)]
pub struct FeedArgs {
    /// Connections per replay (each a new history key).
    #[arg(long, default_value_t = 8192)]
    flows: usize,
    /// Measured rounds per configuration.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Replays of the traffic per round.
    #[arg(long, default_value_t = 8)]
    repeat: usize,
}

pub fn learn_feed_run(a: FeedArgs) -> anyhow::Result<()> {
    let line = learn_feed::learn_feed_line(a.flows, a.rounds, a.repeat)
        .map_err(|e| anyhow::anyhow!("learn-feed benchmark: {e}"))?;
    println!("{line}");
    Ok(())
}
