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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

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
    let prefix = format!("septa-bench-sp-{}-{round}", std::process::id());
    let eal = eal_args(args, vdevs, &prefix);
    let worker = args.lcores.rsplit(',').next().unwrap_or("1").trim();
    let names = if setup == Setup::Pcap {
        ["net_pcap0", "net_pcap1"]
    } else {
        ["net_ring0", "net_ring1"]
    };
    let quoted: Vec<String> = eal.iter().map(|a| format!("{a:?}")).collect();
    let config = format!(
        "[dpdk]\neal_args = [{}]\nmempool_size = {pool}\n\n[[ports]]\nname = \"{a}\"\n[[ports]]\nname = \"{b}\"\n\n\
         [[pairs]]\nports = [\"{a}\", \"{b}\"]\n\n[dataplane]\nworker_lcores = [{worker}]\ndecision = \"allow-all\"\n",
        quoted.join(", "),
        pool = pool_size(args) - 1,
        a = names[0],
        b = names[1],
    );
    let path = dir.join(format!("septa-{round}.toml"));
    std::fs::write(&path, config)?;
    let mut cmd = Command::new(&args.septa);
    cmd.args(["run", "--json", "--config"]).arg(&path);
    if setup == Setup::Ring {
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
    let tx = v["tx_packets"].as_u64().context("tx_packets missing")?;
    let secs = v["forwarding_seconds"]
        .as_f64()
        .context("forwarding_seconds missing")?;
    Ok(tx as f64 / secs / 1e6)
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
