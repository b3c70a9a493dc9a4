//! `septa lab`: the whole appliance on one machine. Network namespaces for an office IT subnet,
//! the clinical EHR application and database subnets, an OT cell (a Modbus/TCP PLC simulator and
//! an HMI poller) and a management subnet, with Septa routing between them on `net_af_packet`
//! vdevs, the lab policy and the API + console on https://127.0.0.1:8080.
//!
//! The plumbing is the script `configs/lab/lab.sh` (namespaces, veths, servers, traffic); this
//! module checks the prerequisites and explains what is missing before anything is touched, runs
//! the script with this binary as the gateway and prints the first-login credential.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};

/// Where the lab keeps its state, logs and the PostgreSQL data directory.
pub const STATE_DIR: &str = "/var/lib/septa-lab";

/// Which lab: `SEPTA_LAB_NAME` (1-8 of `[a-z0-9]`, default `lab`). Another name runs a second,
/// separate lab beside the user's (the tests do): its own namespaces, gateway ends, DPDK file
/// prefix and state directory (`/var/lib/septa-lab-NAME`); `SEPTA_LAB_API` sets its API port.
fn lab_name() -> Result<String> {
    let name = std::env::var("SEPTA_LAB_NAME").unwrap_or_else(|_| "lab".to_owned());
    let ok = (1..=8).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        bail!("SEPTA_LAB_NAME = {name:?}: a lab name is 1 to 8 characters of [a-z0-9]");
    }
    Ok(name)
}

/// The state directory of lab `name`: `SEPTA_LAB_STATE` if set, else [`STATE_DIR`] for the
/// default lab and `/var/lib/septa-lab-NAME` for another.
fn state_dir(name: &str) -> PathBuf {
    match std::env::var_os("SEPTA_LAB_STATE") {
        Some(dir) => PathBuf::from(dir),
        None if name == "lab" => PathBuf::from(STATE_DIR),
        None => PathBuf::from(format!("{STATE_DIR}-{name}")),
    }
}

/// `SEPTA_LAB_NO_HUGE=1`: Septa's EAL runs on plain memory (no hugepages needed).
fn no_huge() -> bool {
    std::env::var("SEPTA_LAB_NO_HUGE").is_ok_and(|v| v == "1")
}

#[derive(Subcommand)]
pub enum LabCommand {
    /// Install what the lab needs from Debian (PostgreSQL, iproute2, ethtool, curl, python3, nmap,
    /// netcat) and set up DPDK and hugepages with dpdk-build/setup.sh.
    Setup,
    /// Build the lab (tears down a previous one first) and start Septa between the subnets.
    Up {
        /// Who routes between the subnets: Septa (the lab) or the Linux kernel (a stand-in that
        /// checks the lab itself; it enforces no policy).
        #[arg(long, value_enum, default_value_t = Router::Septa)]
        router: Router,
    },
    /// Remove everything the lab made: namespaces, veths, processes, DPDK runtime files.
    Down,
    /// What of the lab exists and runs.
    Status,
    /// Restart Septa alone (after a crash or a rebuild), keeping the subnets, the servers and
    /// Septa's state (running policy revision, audit log). Packets are dropped while it is down.
    Restart,
    /// Play a traffic scenario from inside the lab.
    Traffic {
        #[arg(value_enum)]
        scenario: Scenario,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Router {
    Septa,
    Kernel,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Scenario {
    /// Office users on the EHR web app, the EHR app on the database, the HMI reading the PLC.
    Normal,
    /// A port scan from an office host against the PLC.
    Scan,
    /// An SMB/RDP sweep from an office host across the other subnets.
    Lateral,
    /// Modbus writes to the PLC from the HMI and from the office.
    ModbusWrite,
    /// The database host uploading records to the office and the management subnet.
    Exfil,
}

impl Scenario {
    fn arg(self) -> &'static str {
        match self {
            Scenario::Normal => "normal",
            Scenario::Scan => "scan",
            Scenario::Lateral => "lateral",
            Scenario::ModbusWrite => "modbus-write",
            Scenario::Exfil => "exfil",
        }
    }
}

/// The lab's scripts and configuration: `SEPTA_LAB_DIR`, else `configs/lab` of the source tree
/// this binary was built from.
fn assets() -> Result<PathBuf> {
    let dir = std::env::var_os("SEPTA_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lab"));
    if !dir.join("lab.sh").is_file() {
        bail!(
            "the lab's scripts are not at {} (set SEPTA_LAB_DIR to the configs/lab directory)",
            dir.display()
        );
    }
    Ok(dir)
}

/// The effective user id, from `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Free 2 MiB hugepages, from `/proc/meminfo`.
fn free_hugepages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Everything `up` needs, checked before anything is changed; one message lists all that is
/// missing and how to get it.
fn check_prerequisites(router: Router) -> Result<()> {
    let mut missing = Vec::new();
    for (tool, package) in [
        ("ip", "iproute2"),
        ("ethtool", "ethtool"),
        ("python3", "python3"),
        ("curl", "curl"),
        ("ping", "iputils-ping"),
        ("setsid", "util-linux"),
    ] {
        if !have(tool) {
            missing.push(format!("`{tool}` (apt-get install {package})"));
        }
    }
    if let Router::Septa = router {
        if !cfg!(feature = "dpdk") {
            missing.push(
                "DPDK: this septa was built without it (cargo build --features dpdk, after \
                 sudo dpdk-build/setup.sh)"
                    .to_owned(),
            );
        }
        // The lab's EAL asks for 256 MiB of 2 MiB pages.
        let pages = free_hugepages();
        if pages < 128 && !no_huge() {
            missing.push(format!(
                "hugepages: {pages} free 2 MiB pages, the lab needs 128 (sudo dpdk-build/setup.sh)"
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        bail!("the lab cannot start; missing:\n  {}", missing.join("\n  "))
    }
}

fn script(dir: &Path, state: &Path, args: &[&str]) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the septa binary itself")?;
    let status = Command::new("bash")
        .arg(dir.join("lab.sh"))
        .args(args)
        .env("SEPTA", exe)
        .env("SEPTA_LAB_STATE", state)
        .status()
        .context("cannot run bash")?;
    if !status.success() {
        bail!(
            "lab.sh {} failed ({status}); logs in {}/log/",
            args.join(" "),
            state.display()
        );
    }
    Ok(())
}

/// Prints the console address and the first-login credential Septa logged on its first start.
fn print_console(state: &Path) {
    let log = state.join("log/septa.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let port = std::env::var("SEPTA_LAB_API").unwrap_or_else(|_| "8080".to_owned());
    println!("lab: console and API: https://127.0.0.1:{port} (self-signed certificate)");
    match text.lines().find(|l| l.contains("created user")) {
        Some(line) => println!("lab: {}", line.trim_start_matches("septa: ")),
        None => println!("lab: no first-login credential in {}", log.display()),
    }
}

pub fn run(command: LabCommand) -> Result<()> {
    if !is_root() {
        bail!("`septa lab` needs root (it creates network namespaces and veths): sudo septa lab …");
    }
    let dir = assets()?;
    let state = state_dir(&lab_name()?);
    let lab_sh = |args: &[&str]| script(&dir, &state, args);
    match command {
        LabCommand::Setup => {
            let status = Command::new("apt-get")
                .args(["update", "-qq"])
                .status()
                .context("cannot run apt-get")?;
            if !status.success() {
                bail!("apt-get update failed ({status})");
            }
            let status = Command::new("apt-get")
                .args(["install", "-y", "postgresql", "iproute2", "ethtool"])
                .args(["curl", "python3", "iputils-ping", "util-linux"])
                // the attacker's tools of `septa lab traffic` and the end-to-end tests
                .args(["nmap", "netcat-openbsd"])
                .status()
                .context("cannot run apt-get")?;
            if !status.success() {
                bail!("apt-get install failed ({status})");
            }
            let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("dpdk-build/setup.sh");
            let status = Command::new("bash")
                .arg(&setup)
                .status()
                .with_context(|| format!("cannot run {}", setup.display()))?;
            if !status.success() {
                bail!("{} failed ({status})", setup.display());
            }
            Ok(())
        }
        LabCommand::Up { router } => {
            check_prerequisites(router)?;
            let mode = match router {
                Router::Septa => "septa",
                Router::Kernel => "kernel",
            };
            if let Err(e) = lab_sh(&["up", mode]) {
                // Leave nothing half-built behind.
                let _ = lab_sh(&["down"]);
                return Err(e);
            }
            if let Router::Septa = router {
                print_console(&state);
            }
            Ok(())
        }
        LabCommand::Down => lab_sh(&["down"]),
        LabCommand::Status => lab_sh(&["status"]),
        LabCommand::Restart => {
            check_prerequisites(Router::Septa)?;
            lab_sh(&["restart"])
        }
        LabCommand::Traffic { scenario } => lab_sh(&["traffic", scenario.arg()]),
    }
}
