//! `septa-bench`: benchmark drivers. Each prints one line of `key=value` pairs (ARCHITECTURE.md §5)
//! so scripts can parse it; ratios are always against a baseline measured in the same run.

use clap::{Parser, Subcommand};

mod classbench;
mod forward;
mod learn;
mod ml;
mod pipeline;

#[derive(Parser)]
#[command(name = "septa-bench", about = "Septa benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classifier throughput and build time on ClassBench rule and trace files.
    Classbench(classbench::Args),
    /// Forwarding rate of `septa run` against `dpdk-testpmd` on the same vdevs.
    Forward(forward::Args),
    /// Policy recommendations from generated traffic (5,000 endpoints, 1 M records by default).
    Recommend(learn::RecommendArgs),
    /// Flow-history ingest rate (SQLite) against plain inserts.
    History(learn::HistoryArgs),
    /// The worker's packet rate with and without the learning feed (flow history) behind it.
    LearnFeed(learn::FeedArgs),
    /// ML inference rows/s at batch 1/32/256 and the feature sampler's per-packet cost.
    Ml(ml::Args),
    /// The stateful worker's packet rate with L7 inspection and feature sampling on vs off.
    Pipeline(pipeline::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Classbench(args) => classbench::run(args),
        Command::Forward(args) => forward::run(args),
        Command::Recommend(args) => learn::recommend_run(args),
        Command::History(args) => learn::history_run(args),
        Command::LearnFeed(args) => learn::learn_feed_run(args),
        Command::Ml(args) => ml::run(args),
        Command::Pipeline(args) => pipeline::run(args),
    }
}
