//! `septa-bench`: benchmark drivers. Each prints one line of `key=value` pairs (ARCHITECTURE.md §5)
//! so scripts can parse it; ratios are always against a baseline measured in the same run.

use clap::{Parser, Subcommand};

mod classbench;
mod forward;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Classbench(args) => classbench::run(args),
        Command::Forward(args) => forward::run(args),
    }
}
