//! `septa`: the appliance binary and the composition root of the workspace.
//!
//! It parses the command line and the configuration, wires the crates together and owns the
//! thread layout. It is the only crate (with the benchmark driver) allowed to use `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod replay;
mod run;

use config::DecisionConfig;

#[derive(Parser)]
#[command(name = "septa", version, about = "Septa inline segmentation gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance: DPDK ports and poll-mode workers as configured in FILE.
    Run {
        /// The gateway configuration (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Stop by itself once no packet has arrived for this many milliseconds after the first
        /// one (for finite inputs such as pcap vdevs); otherwise run until SIGINT/SIGTERM.
        #[arg(long, value_name = "MS")]
        until_idle: Option<u64>,
        /// Print the final counters as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Before forwarding starts, transmit the packets of this capture on the first port. With
        /// loopback vdevs such as `net_ring` they then circulate (testpmd's `tx_first`); the
        /// forwarding benchmark uses it.
        #[arg(long, value_name = "FILE")]
        seed_pcap: Option<PathBuf>,
    },
    /// The offline runtime: run the data-plane code over a capture and report verdicts.
    Replay {
        /// Input capture (pcap or pcapng, Ethernet link type).
        #[arg(long, value_name = "IN")]
        pcap: PathBuf,
        /// Write the forwarded packets to this pcap file.
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        /// Print a JSON report with one record per flow instead of the text summary.
        #[arg(long)]
        json: bool,
        /// Placeholder decision until policies are wired in.
        #[arg(long, value_enum, default_value = "allow-all")]
        decision: DecisionConfig,
    },
    /// Check a gateway configuration file and print what it sets up.
    CheckConfig {
        /// The gateway configuration (TOML).
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            until_idle,
            json,
            seed_pcap,
        } => run::run(
            &config,
            run::RunOptions {
                until_idle,
                json,
                seed_pcap,
            },
        ),
        Command::Replay {
            pcap,
            out,
            json,
            decision,
        } => replay::replay(&pcap, out.as_deref(), json, decision),
        Command::CheckConfig { config } => config::GatewayConfig::load(&config)
            .map(|c| {
                println!(
                    "{}: ok ({} ports, {} pairs)",
                    c.path.display(),
                    c.ports.len(),
                    c.pairs.len()
                );
            })
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("septa: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
