//! Forwarding benchmark: `septa run` (allow-all bridge) against `dpdk-testpmd` on the same vdevs,
//! one after the other, several rounds, medians and their ratio.
//!
//! Two setups, both reported:
//! * `pcap`: two `net_pcap` ports replaying the same generated capture of many IPv4/IPv6 TCP/UDP
//!   flows with `infinite_rx=1`, transmitting to `/dev/null`. Realistic packets, PMD-bound.
//! * `ring`: two `net_ring` ports (each loops its tx back into its rx) seeded with a burst of
//!   packets that then circulate; the PMD costs almost nothing, so the forwarder's own work dominates.
//!
//! testpmd runs `--forward-mode=5tswap` (it parses L2–L4 as Septa must) and `io` (no parsing: the
//! upper bound). Each run forwards for `--seconds` on one worker lcore; the rate is transmitted
//! packets over forwarding time.
//!
//! `--mode stateful` runs Septa enforcing a generated zone policy of `--rules` compiled rules
//! (10K by default; `forward_state.rs`) that allows the benchmark's flows, through the flow
//! table, conntrack and cached verdicts, next to testpmd 5tswap on the same packets and vdevs:
//! * `established` (both setups): `pcap` replays a capture of data segments and replies of
//!   `--flows` TCP and UDP flows whose handshakes and first queries a third port (`net_pcap2`,
//!   with an idle `net_pcap3` as its peer: both forwarders get the same four vdevs) delivers
//!   once at start (warm flow table); `ring` circulates the 64 seed frames (UDP flows). Only
//!   the packets forwarded between ports 0 and 1 count.
//! * `new_flows` (`pcap` only): every packet is a TCP SYN of a different connection. The
//!   capture holds 4× more connections than the half-open cap, so each SYN comes back after
//!   its flow was evicted: it is classified, admitted and inserted (evicting the oldest
//!   half-open flow) every time. Reported as M flows/s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[path = "forward_state.rs"]
mod state;

/// Arguments of `septa-bench forward`.
#[derive(clap::Args)]
pub struct Args {
    /// The `septa` binary, built with `--release --features dpdk`.
    #[arg(long, default_value = "target/release/septa")]
    septa: PathBuf,
    /// The testpmd binary.
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// Seconds of forwarding per run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Rounds per forwarder; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Distinct flows in the generated capture.
    #[arg(long, default_value_t = 1024)]
    flows: usize,
    /// Packets in the generated capture. `net_pcap` with `infinite_rx` keeps the whole capture in
    /// mbufs per port, so both forwarders get a pool of `8 * packets` mbufs.
    #[arg(long, default_value_t = 4096)]
    packets: usize,
    /// Which setups to run.
    #[arg(long, value_enum, default_value = "both")]
    setup: Setup,
    /// EAL memory arguments (space separated); default: hugepages with --huge-unlink.
    #[arg(long, default_value = "--huge-unlink")]
    mem_args: String,
    /// Main and worker lcore (the worker forwards; the main lcore idles).
    #[arg(long, default_value = "0,1")]
    lcores: String,
    /// What Septa runs: the allow-all bridge, or the stateful path under a generated policy.
    #[arg(long, value_enum, default_value = "allow-all")]
    mode: Mode,
    /// Compiled rules of the generated policy (`--mode stateful`).
    #[arg(long, default_value_t = 10_000)]
    rules: usize,
}

/// What Septa forwards with.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// `decision = "allow-all"`: stateless.
    AllowAll,
    /// A zone policy through flow table and conntrack: established flows and new flows.
    Stateful,
}

/// Vdev setups.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Setup {
    /// `net_pcap` with `infinite_rx=1`.
    Pcap,
    /// Seeded `net_ring` loops.
    Ring,
    /// Both, one line each.
    Both,
}

/// Runs the benchmark and prints one `key=value` line per setup.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.septa.exists() {
        bail!(
            "{} not found: build it with `cargo build --release --features dpdk`",
            args.septa.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("septa-bench-fwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    if args.mode == Mode::Stateful {
        let r = stateful(&args, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    let capture = dir.join("flows.pcap");
    let seed = dir.join("seed.pcap");
    let written = septa_dataplane::testgen::write_mixed_capture(&capture, args.flows, args.packets)
        .context("generate the capture")?;
    write_seed(&seed).context("generate the seed")?;
    eprintln!(
        "bench: capture of {written} packets over {} flows at {}",
        args.flows,
        capture.display()
    );

    let setups: &[Setup] = match args.setup {
        Setup::Both => &[Setup::Pcap, Setup::Ring],
        s => std::slice::from_ref(match s {
            Setup::Pcap => &Setup::Pcap,
            _ => &Setup::Ring,
        }),
    };
    for &setup in setups {
        let vdevs = match setup {
            Setup::Pcap => {
                let c = capture.display();
                vec![
                    format!("--vdev=net_pcap0,rx_pcap={c},infinite_rx=1,tx_pcap=/dev/null"),
                    format!("--vdev=net_pcap1,rx_pcap={c},infinite_rx=1,tx_pcap=/dev/null"),
                ]
            }
            _ => vec!["--vdev=net_ring0".to_owned(), "--vdev=net_ring1".to_owned()],
        };
        let (mut septa, mut swap, mut io) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..args.rounds {
            // Interleave the forwarders so that a noisy neighbour hurts all of them alike.
            swap.push(testpmd(&args, &vdevs, "5tswap", setup, round)?);
            septa.push(septa_run(&args, &dir, &vdevs, setup, &seed, round)?);
            io.push(testpmd(&args, &vdevs, "io", setup, round)?);
            eprintln!(
                "bench: {setup:?} round {round}: septa {:.2} Mpps, testpmd 5tswap {:.2} Mpps, io {:.2} Mpps",
                septa[round], swap[round], io[round]
            );
        }
        let (s, t, i) = (median(&mut septa), median(&mut swap), median(&mut io));
        println!(
            "setup={} rounds={} seconds={} septa_mpps={s:.3} testpmd_mpps={t:.3} testpmd_io_mpps={i:.3} ratio={:.3}",
            format!("{setup:?}").to_lowercase(),
            args.rounds,
            args.seconds,
            s / t
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `--mode stateful`: established flows (pcap, ring) and new flows (pcap) under a generated
/// policy, each next to testpmd 5tswap on the same vdevs; one line per measurement.
fn stateful(args: &Args, dir: &Path) -> anyhow::Result<()> {
    use septa_dataplane::testgen::write_pcap;
    let (yaml, rules) = state::policy(args.rules)?;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, yaml)?;
    let (warm, steady, empty) = (
        dir.join("warm.pcap"),
        dir.join("steady.pcap"),
        dir.join("empty.pcap"),
    );
    let (w, s) = state::write_established(&warm, &steady, args.flows, args.packets)?;
    write_pcap(&empty, std::iter::empty::<Vec<u8>>())?;
    // Two captures of different connections, one per port (the same SYN on both ports would
    // find the flow the other one opened).
    let (new0, new1) = (dir.join("new0.pcap"), dir.join("new1.pcap"));
    let per_port = args.packets.max(1024);
    state::write_new_flows(&new0, 0, per_port)?;
    state::write_new_flows(&new1, per_port, per_port)?;
    let seed = dir.join("seed.pcap");
    write_seed(&seed)?;
    eprintln!(
        "bench: policy of {rules} compiled rules; established: {w} warm-up and {s} steady packets over {} flows; new flows: 2 x {per_port} SYNs",
        args.flows
    );
    let pcap = |rx: &Path, infinite: bool, i: usize| {
        format!(
            "--vdev=net_pcap{i},rx_pcap={}{},tx_pcap=/dev/null",
            rx.display(),
            if infinite { ",infinite_rx=1" } else { "" }
        )
    };
    let policy_line = format!("policy = {:?}\n", policy.display().to_string());
    let setups: &[Setup] = match args.setup {
        Setup::Both => &[Setup::Pcap, Setup::Ring],
        Setup::Pcap => &[Setup::Pcap],
        Setup::Ring => &[Setup::Ring],
    };
    for &setup in setups {
        let mut cases = Vec::new();
        match setup {
            Setup::Pcap => {
                cases.push(Case {
                    name: "established",
                    vdevs: vec![
                        pcap(&steady, true, 0),
                        pcap(&steady, true, 1),
                        pcap(&warm, false, 2),
                        pcap(&empty, false, 3),
                    ],
                    ports: &["net_pcap0", "net_pcap1", "net_pcap2", "net_pcap3"],
                    dataplane: policy_line.clone(),
                    seed: None,
                });
                cases.push(Case {
                    name: "new_flows",
                    vdevs: vec![pcap(&new0, true, 0), pcap(&new1, true, 1)],
                    ports: &["net_pcap0", "net_pcap1"],
                    dataplane: format!(
                        "{policy_line}flow_capacity = 65536\nmax_half_open = {}\n",
                        per_port / 2
                    ),
                    seed: None,
                });
            }
            _ => cases.push(Case {
                name: "established",
                vdevs: vec!["--vdev=net_ring0".to_owned(), "--vdev=net_ring1".to_owned()],
                ports: &["net_ring0", "net_ring1"],
                dataplane: policy_line.clone(),
                seed: Some(&seed),
            }),
        }
        for case in &cases {
            let (mut septa, mut swap, mut drops) = (Vec::new(), Vec::new(), 0);
            for round in 0..args.rounds {
                swap.push(testpmd(args, &case.vdevs, "5tswap", setup, round)?);
                let run = SeptaRun {
                    vdevs: &case.vdevs,
                    ports: case.ports,
                    dataplane: &case.dataplane,
                    seed: case.seed,
                };
                let v = septa_json(args, dir, &run, &format!("{}-{round}", case.name))?;
                // Ports 0 and 1 only: the warm-up port pair is not part of the measurement.
                let tx: u64 = (0..2)
                    .map(|p| v["ports"][p]["tx_packets"].as_u64().unwrap_or(0))
                    .sum();
                let secs = v["forwarding_seconds"]
                    .as_f64()
                    .context("forwarding_seconds missing")?;
                drops += v["dropped"].as_u64().unwrap_or(0);
                if round == 0 && v["dropped"].as_u64().unwrap_or(0) > 0 {
                    eprintln!("bench: septa drops: {}", v["drops"]);
                }
                septa.push(tx as f64 / secs / 1e6);
                eprintln!(
                    "bench: {setup:?} {} round {round}: septa {:.2} M/s, testpmd 5tswap {:.2} Mpps",
                    case.name, septa[round], swap[round]
                );
            }
            let (sm, t) = (median(&mut septa), median(&mut swap));
            let unit = if case.name == "new_flows" {
                "septa_mflows_per_s"
            } else {
                "septa_mpps"
            };
            println!(
                "setup={} mode={} rules={rules} flows={} rounds={} seconds={} {unit}={sm:.3} testpmd_mpps={t:.3} ratio={:.3} septa_drops={drops}",
                format!("{setup:?}").to_lowercase(),
                case.name,
                if case.name == "new_flows" {
                    2 * per_port
                } else if setup == Setup::Ring {
                    64
                } else {
                    args.flows
                },
                args.rounds,
                args.seconds,
                sm / t
            );
        }
    }
    Ok(())
}

/// One stateful measurement: vdevs (the same for both forwarders) and Septa's configuration.
struct Case<'a> {
    name: &'static str,
    vdevs: Vec<String>,
    ports: &'a [&'a str],
    dataplane: String,
    seed: Option<&'a Path>,
}

/// The `ring` setup's circulating packets. testpmd's `tx_first` seeds its txonly template
/// (64-byte IPv4/UDP frames), so Septa is seeded with the same shape, spread over 64 flows, to
/// compare the same work; the realistic IPv4/IPv6 TCP/UDP mix is what the `pcap` setup measures.
fn write_seed(path: &Path) -> anyhow::Result<()> {
    use septa_dataplane::testgen::{FrameBuilder, write_pcap};
    let frames = (0..64u16).map(|i| {
        FrameBuilder::new()
            .ipv4([198, 18, 0, 1].into(), [198, 18, 0, 2].into())
            .udp(1024 + i, 9)
            .seq(u64::from(i))
            .payload_len(18)
            .build()
    });
    write_pcap(path, frames)?;
    Ok(())
}

fn pool_size(args: &Args) -> usize {
    (8 * args.packets).max(16384)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn eal_args(args: &Args, vdevs: &[String], prefix: &str) -> Vec<String> {
    let mut eal = vec!["-l".to_owned(), args.lcores.clone(), "--no-pci".to_owned()];
    eal.extend(args.mem_args.split_whitespace().map(str::to_owned));
    eal.extend([
        "--file-prefix".to_owned(),
        prefix.to_owned(),
        "--log-level".to_owned(),
        "5".to_owned(),
    ]);
    eal.extend(vdevs.iter().cloned());
    eal
}

/// One testpmd run, driven through its interactive prompt so that forwarding time is measured
/// between `start` and `stop` only. Returns Mpps (transmitted packets of all ports).
fn testpmd(
    args: &Args,
    vdevs: &[String],
    mode: &str,
    setup: Setup,
    round: usize,
) -> anyhow::Result<f64> {
    let prefix = format!("septa-bench-tp-{}-{round}", std::process::id());
    let mut child = Command::new(&args.testpmd)
        .args(eal_args(args, vdevs, &prefix))
        .args(["--", "-i", "--no-flush-rx"])
        .arg(format!("--total-num-mbufs={}", pool_size(args)))
        .arg(format!("--forward-mode={mode}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", args.testpmd.display()))?;
    let mut stdin = child.stdin.take().context("testpmd stdin")?;
    // Give the EAL time to come up before starting; the prompt reads commands in order.
    std::thread::sleep(Duration::from_millis(1500));
    let start_cmd = if setup == Setup::Ring {
        "start tx_first\n"
    } else {
        "start\n"
    };
    stdin.write_all(start_cmd.as_bytes())?;
    stdin.flush()?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stdin.write_all(b"stop\n")?;
    stdin.flush()?;
    let elapsed = t0.elapsed().as_secs_f64();
    stdin.write_all(b"quit\n")?;
    drop(stdin);
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tx = accumulated_tx(&text).with_context(|| {
        format!(
            "testpmd printed no forwarding statistics:\n{}\n{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(tx as f64 / elapsed / 1e6)
}

/// The `TX-packets:` figure of testpmd's "Accumulated forward statistics for all ports" block.
fn accumulated_tx(text: &str) -> Option<u64> {
    let block = &text[text.find("Accumulated forward statistics")?..];
    let after = &block[block.find("TX-packets:")? + "TX-packets:".len()..];
    after.split_whitespace().next()?.parse().ok()
}

/// One `septa run` (allow-all bridge), stopped with SIGINT; its JSON counters give packets and
/// forwarding time.
fn septa_run(
    args: &Args,
    dir: &Path,
    vdevs: &[String],
    setup: Setup,
    seed: &Path,
    round: usize,
) -> anyhow::Result<f64> {
    let names = if setup == Setup::Pcap {
        ["net_pcap0", "net_pcap1"]
    } else {
        ["net_ring0", "net_ring1"]
    };
    let run = SeptaRun {
        vdevs,
        ports: &names,
        dataplane: "decision = \"allow-all\"\n",
        seed: (setup == Setup::Ring).then_some(seed),
    };
    let v = septa_json(args, dir, &run, &format!("allow-{round}"))?;
    let tx = v["tx_packets"].as_u64().context("tx_packets missing")?;
    let secs = v["forwarding_seconds"]
        .as_f64()
        .context("forwarding_seconds missing")?;
    Ok(tx as f64 / secs / 1e6)
}

/// What one `septa run` of the benchmark gets: vdevs, port names (paired 0↔1, 2↔3, ...),
/// extra `[dataplane]` lines and the capture to seed port 0 with.
struct SeptaRun<'a> {
    vdevs: &'a [String],
    ports: &'a [&'a str],
    dataplane: &'a str,
    seed: Option<&'a Path>,
}

/// Runs `septa run --json` for `--seconds`, stops it with SIGINT and returns its JSON
/// counters.
fn septa_json(
    args: &Args,
    dir: &Path,
    run: &SeptaRun<'_>,
    tag: &str,
) -> anyhow::Result<serde_json::Value> {
    let prefix = format!("septa-bench-sp-{}-{tag}", std::process::id());
    let eal = eal_args(args, run.vdevs, &prefix);
    let worker = args.lcores.rsplit(',').next().unwrap_or("1").trim();
    let quoted: Vec<String> = eal.iter().map(|a| format!("{a:?}")).collect();
    let mut config = format!(
        "[dpdk]\neal_args = [{}]\nmempool_size = {}\n\n",
        quoted.join(", "),
        pool_size(args) - 1,
    );
    for p in run.ports {
        config.push_str(&format!("[[ports]]\nname = \"{p}\"\n"));
    }
    for pair in run.ports.chunks(2) {
        config.push_str(&format!(
            "[[pairs]]\nports = [\"{}\", \"{}\"]\n",
            pair[0], pair[1]
        ));
    }
    config.push_str(&format!(
        "\n[dataplane]\nworker_lcores = [{worker}]\n{}",
        run.dataplane
    ));
    let path = dir.join(format!("septa-{tag}.toml"));
    std::fs::write(&path, config)?;
    let mut cmd = Command::new(&args.septa);
    cmd.args(["run", "--json", "--config"]).arg(&path);
    if let Some(seed) = run.seed {
        cmd.arg("--seed-pcap").arg(seed);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start septa")?;
    std::thread::sleep(Duration::from_millis(1500) + Duration::from_secs(args.seconds));
    // SIGINT asks for a clean stop with final counters.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    if !status.success() {
        bail!("could not signal septa");
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("septa run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "septa printed no JSON counters: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_testpmd_accumulated_block() {
        let text = "  RX-packets: 5 TX-packets: 6\n  +++++ Accumulated forward statistics for all ports+++++\n  \
                    RX-packets: 362167808      RX-dropped: 0             RX-total: 362167808\n  \
                    TX-packets: 362167872      TX-dropped: 0             TX-total: 362167872\n";
        assert_eq!(accumulated_tx(text), Some(362_167_872));
        assert_eq!(accumulated_tx("nothing"), None);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
