//! `septa lab`: the whole appliance on one machine. Network namespaces for an office IT subnet,
//! the clinical EHR application and database subnets, an OT cell (a Modbus/TCP PLC simulator and
//! an HMI poller) and a management subnet, with Septa routing between them on `net_af_packet`
//! vdevs, the lab policy and the API + console on https://127.0.0.1:8080.
//!
//! The plumbing is the script `configs/lab/lab.sh` (namespaces, veths, servers, traffic); this
//! module checks the prerequisites and explains what is missing before anything is touched, runs
//! the script with this binary as the gateway and prints the first-login credential.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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
    /// netcat) and set up DPDK and hugepages with dpdk-build/setup.sh (configs/lab/setup.sh).
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
/// missing and how to get it. `restart` does not count free hugepages: the Septa it replaces
/// holds the lab's share until it stops (the new one's EAL says so if they do not come back).
fn check_prerequisites(router: Router, count_hugepages: bool) -> Result<()> {
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
        if count_hugepages && pages < 128 && !no_huge() {
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

/// The lock of lab `name`: `/run/septa-lab-NAME.lock`, held (`flock`) by whoever changes the lab
/// (`up`, `down`, `restart`, and the end-to-end test for its whole run), with the holder's pid
/// and command line written in it. The kernel releases the lock when its holder exits, however
/// it ends, so a lock file left by a dead process never blocks: it is taken over. The file is
/// never removed (removing a lock file races with its next holder); /run is emptied at boot. It
/// is not in the state directory, which `down` removes.
pub fn lock_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/septa-lab-{name}.lock"))
}

/// A held lab lock; released on drop (the file stays, with the last holder's pid).
pub struct LabLock {
    _file: File,
}

/// The outcome of [`lock`].
pub enum Locked {
    /// The lock is ours; `taken_over` names the dead process that held it last, if any.
    Held {
        lock: LabLock,
        taken_over: Option<u32>,
    },
    /// An ancestor of this process holds it (a `septa lab` command run by the lab test, which
    /// holds the lock for its whole run): this command runs under its lock.
    Nested,
}

fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The parent of `pid`, from `/proc/PID/stat` (the field after the parenthesised name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is a proper ancestor of this process.
fn is_ancestor(pid: u32) -> bool {
    let mut cur = parent_of(std::process::id());
    while let Some(p) = cur {
        if p == pid {
            return true;
        }
        if p <= 1 {
            return false;
        }
        cur = parent_of(p);
    }
    false
}

/// The command line of `pid`, for messages.
fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The pid written in a lock file (its first line), if any.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Takes the lock at `path` for lab `name`, or explains who holds it. `nests(pid)` says whether a
/// holder may run this command under its lock (production: [`is_ancestor`]).
pub fn lock(path: &Path, name: &str, nests: impl Fn(u32) -> bool) -> Result<Locked> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lab lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            let previous = holder_pid(&mut file);
            let me = std::process::id();
            file.set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)))
                .and_then(|_| writeln!(file, "{me}\n{}", command_line(me)))
                .with_context(|| format!("cannot write the lab lock {}", path.display()))?;
            Ok(Locked::Held {
                lock: LabLock { _file: file },
                // flock is released only when its holder is gone: a pid left in the file
                // belongs to a process that has exited (or to another lock of our own).
                taken_over: previous.filter(|&p| p != me && !is_alive(p)),
            })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            // The holder writes its pid right after taking the lock: give it a moment.
            let mut holder = holder_pid(&mut file);
            for _ in 0..20 {
                if holder.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
                holder = holder_pid(&mut file);
            }
            match holder {
                Some(pid) if nests(pid) => Ok(Locked::Nested),
                Some(pid) => bail!(
                    "lab `{name}` is in use by pid {pid} ({}): another `septa lab` command or \
                     lab test is changing it (lock {}); wait for it to finish or stop it, or use \
                     another lab name (SEPTA_LAB_NAME)",
                    match command_line(pid) {
                        c if c.is_empty() => "exited just now".to_owned(),
                        c => c,
                    },
                    path.display()
                ),
                None => bail!(
                    "lab `{name}` is in use by a process that wrote no pid into {}; wait for \
                     it to finish",
                    path.display()
                ),
            }
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Takes the lab's lock for a command that changes the lab; prints a takeover.
fn lock_lab(name: &str) -> Result<Option<LabLock>> {
    match lock(&lock_path(name), name, is_ancestor)? {
        Locked::Held { lock, taken_over } => {
            if let Some(pid) = taken_over {
                println!("lab: took over the lock of pid {pid}, which is no longer running");
            }
            Ok(Some(lock))
        }
        Locked::Nested => Ok(None),
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
    let name = lab_name()?;
    let state = state_dir(&name);
    let lab_sh = |args: &[&str]| script(&dir, &state, args);
    // Commands that change the lab hold its lock until they return: two of them at once on the
    // same lab (two test runs, say) would tear down or rebuild each other's namespaces.
    let _lock = match command {
        LabCommand::Up { .. } | LabCommand::Down | LabCommand::Restart => lock_lab(&name)?,
        LabCommand::Setup | LabCommand::Status | LabCommand::Traffic { .. } => None,
    };
    match command {
        LabCommand::Setup => {
            // configs/lab/setup.sh: the Debian packages, then dpdk-build/setup.sh.
            let setup = dir.join("setup.sh");
            let dpdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("dpdk-build/setup.sh");
            let status = Command::new("bash")
                .arg(&setup)
                .env("SEPTA_DPDK_SETUP", dpdk)
                .status()
                .with_context(|| format!("cannot run {}", setup.display()))?;
            if !status.success() {
                bail!("{} failed ({status})", setup.display());
            }
            Ok(())
        }
        LabCommand::Up { router } => {
            check_prerequisites(router, true)?;
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
            check_prerequisites(Router::Septa, false)?;
            lab_sh(&["restart"])
        }
        LabCommand::Traffic { scenario } => lab_sh(&["traffic", scenario.arg()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh lock path under the system temp directory.
    fn temp_lock(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("septa-lab-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("lab.lock")
    }

    #[test]
    fn a_held_lock_is_refused_naming_its_holder_and_freed_on_drop() {
        let path = temp_lock("held");
        let first = match lock(&path, "t", |_| false).unwrap() {
            Locked::Held { lock, taken_over } => {
                assert_eq!(taken_over, None);
                lock
            }
            Locked::Nested => panic!("nested on a fresh lock"),
        };
        let me = std::process::id();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next(), Some(me.to_string().as_str()));
        // A second open file description conflicts with the first, as another process would.
        let err = lock(&path, "t", |_| false)
            .err()
            .expect("a held lock was taken twice");
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("in use by pid {me} (")) && msg.contains("lab `t`"),
            "{msg}"
        );
        // A command run by the holder runs under its lock.
        assert!(matches!(
            lock(&path, "t", |p| p == me).unwrap(),
            Locked::Nested
        ));
        drop(first);
        assert!(matches!(
            lock(&path, "t", |_| false).unwrap(),
            Locked::Held {
                taken_over: None,
                ..
            }
        ));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let path = temp_lock("stale");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A child that has exited and been reaped: its pid names no process any more.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(!is_alive(dead));
        std::fs::write(&path, format!("{dead}\nsepta lab up\n")).unwrap();
        match lock(&path, "t", |_| false).unwrap() {
            Locked::Held { taken_over, lock } => {
                assert_eq!(taken_over, Some(dead));
                let text = std::fs::read_to_string(&path).unwrap();
                assert_eq!(
                    text.lines().next(),
                    Some(std::process::id().to_string().as_str()),
                    "the lock file still names the dead holder: {text}"
                );
                drop(lock);
            }
            Locked::Nested => panic!("nested under a dead holder"),
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn ancestors_are_found_through_proc() {
        let parent = parent_of(std::process::id()).expect("a parent in /proc");
        assert!(is_ancestor(parent));
        assert!(!is_ancestor(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_ancestor(pid));
    }
}
