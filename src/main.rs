//! `septa`: the appliance binary and the composition root of the workspace.
//!
//! It parses the command line and the configuration, wires the crates together and owns the
//! thread layout. It is the only crate (with the benchmark driver) allowed to use `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod control_host;
mod evidence_cli;
mod lab;
mod ml_host;
mod policy_cli;
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
        /// The zone/conduit policy (YAML or JSON) to enforce; each flow is reported with the
        /// rule and clause that decided it.
        #[arg(long, value_name = "FILE", conflicts_with = "decision")]
        policy: Option<PathBuf>,
        /// A fixed decision instead of a policy (default allow-all when no --policy is given).
        #[arg(long, value_enum)]
        decision: Option<DecisionConfig>,
    },
    /// Check a gateway configuration file and print what it sets up.
    CheckConfig {
        /// The gateway configuration (TOML).
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
    /// Zone/conduit policies as code.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Which rule of a policy decides SRC -> DST PROTO/DPORT, and why.
    Decide {
        /// The policy file (YAML or JSON).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Source address.
        src: String,
        /// Destination address.
        dst: String,
        /// tcp, udp, icmp, icmpv6 or a protocol number.
        proto: String,
        /// Destination port (for ICMP: the message type).
        dport: u16,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Audit evidence packs (HTML + JSON) from a data directory, and their verification.
    Evidence(evidence_cli::EvidenceArgs),
    /// The whole appliance on one machine: subnets in network namespaces with Septa between.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate and compile a policy file; every problem is printed with its path and line.
    Check {
        /// The policy file (YAML or JSON).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and the signed checkpoints of an audit log directory; exits
    /// non-zero on any flipped bit, removed, reordered or truncated record.
    Verify {
        /// The audit log directory (or an export of a range).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The public key to trust (hex file); by default the one stored with the log.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
            policy,
            decision,
        } => replay::replay(
            &pcap,
            out.as_deref(),
            json,
            match &policy {
                Some(file) => replay::ReplayPolicy::File(file),
                None => replay::ReplayPolicy::Fixed(decision.unwrap_or(DecisionConfig::AllowAll)),
            },
        ),
        Command::CheckConfig { config } => config::GatewayConfig::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|settings| write_stdout(&settings.to_string())),
        Command::Policy {
            command: PolicyCommand::Check { file, json },
        } => policy_cli::check(&file, json),
        Command::Decide {
            policy,
            src,
            dst,
            proto,
            dport,
            json,
        } => policy_cli::decide_cmd(&policy, &src, &dst, &proto, dport, json),
        Command::Audit {
            command: AuditCommand::Verify { dir, key, json },
        } => policy_cli::verify(&dir, key.as_ref(), json),
        Command::Evidence(args) => evidence_cli::run(args),
        Command::Lab { command } => lab::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("septa: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes to standard output; a reader that went away (`septa check-config FILE | head`) is not an
/// error, any other write failure is.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
