//! Golden tests of the real `septa` binary: pcap in, pcap and counters out.
//!
//! * The bundled sample capture (`configs/samples/demo.pcap`) is exactly what the generator makes
//!   (`SEPTA_BLESS=1 cargo test --test golden` rewrites it after a deliberate change).
//! * With the `dpdk` feature, `septa run` forwards through `net_pcap` vdevs
//!   (`rx_pcap=IN,tx_pcap=OUT`) and OUT is compared frame by frame with what must come out; each
//!   run is a subprocess with its own EAL and `--file-prefix`.
//! * `septa replay` (the offline runtime) must agree with the DPDK run on the same input.

use std::path::{Path, PathBuf};
use std::process::Command;

use septa_dataplane::testgen::{self, FrameBuilder};

fn septa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_septa"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("septa-golden-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Frames every parser must reject, one per drop reason family, with the reason expected.
fn malformed_frames() -> Vec<(Vec<u8>, &'static str)> {
    let good = FrameBuilder::new()
        .ipv4([10, 1, 0, 10].into(), [10, 2, 0, 20].into())
        .udp(40100, 53)
        .seq(1000)
        .build();
    // Ethernet header only, then 10 bytes of an IPv4 header.
    let truncated = good[..24].to_vec();
    // Corrupt the IPv4 header checksum.
    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff;
    // IHL of 4 words (below the minimum of 5).
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    // A first fragment too short to hold the TCP header (RFC 1858).
    let tiny = FrameBuilder::new()
        .ipv4([10, 1, 0, 10].into(), [10, 2, 0, 20].into())
        .tcp(40101, 443, 0x02)
        .fragment(0, true)
        .payload_len(0)
        .build();
    let tiny = {
        // Keep only 8 bytes of the TCP header in the fragment and fix the IPv4 lengths.
        let mut f = tiny[..14 + 20 + 8].to_vec();
        let total = (20u16 + 8).to_be_bytes();
        f[16..18].copy_from_slice(&total);
        fix_ipv4_checksum(&mut f);
        f
    };
    vec![
        (truncated, "truncated"),
        (bad_sum, "ipv4_checksum"),
        (bad_ihl, "malformed_ipv4"),
        (tiny, "tiny_fragment"),
    ]
}

fn fix_ipv4_checksum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let mut sum = 0u32;
    for w in f[14..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// The bundled sample: the demo mix of IT, clinical and OT traffic, then malformed frames.
fn demo_capture() -> Vec<Vec<u8>> {
    let mut frames = testgen::demo_traffic();
    frames.extend(malformed_frames().into_iter().map(|(f, _)| f));
    frames
}

#[test]
fn bundled_sample_capture_is_current() {
    let path = repo().join("configs/samples/demo.pcap");
    let fresh = scratch("sample").join("demo.pcap");
    testgen::write_pcap(&fresh, demo_capture()).unwrap();
    let want = std::fs::read(&fresh).unwrap();
    if std::env::var_os("SEPTA_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read(&path).expect("configs/samples/demo.pcap (SEPTA_BLESS=1 creates it)");
    assert!(
        have == want,
        "configs/samples/demo.pcap is stale: rerun with SEPTA_BLESS=1"
    );
}

#[test]
fn malformed_frames_are_rejected_for_the_stated_reason() {
    for (frame, reason) in malformed_frames() {
        let got = septa_dataplane::parse(&frame).err().map(|r| r.as_str());
        assert_eq!(got, Some(reason), "frame {frame:02x?}");
    }
}

fn replay_json(input: &Path, decision: &str) -> serde_json::Value {
    let out = septa()
        .args(["replay", "--json", "--decision", decision, "--pcap"])
        .arg(input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn replay_counts_every_malformed_frame_under_its_reason() {
    let dir = scratch("replay");
    let input = dir.join("in.pcap");
    let out = dir.join("out.pcap");
    let frames = demo_capture();
    testgen::write_pcap(&input, frames.clone()).unwrap();
    let run = septa()
        .args(["replay", "--decision", "allow-all", "--pcap"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("tiny_fragment") && text.contains("flows"),
        "human summary: {text}"
    );
    let forwarded = septa_dataplane::io::pcap::read_frames(&out).unwrap();
    let valid: Vec<_> = testgen::demo_traffic();
    assert_eq!(
        forwarded, valid,
        "allow-all forwards exactly the valid frames, in order"
    );

    let v = replay_json(&input, "allow-all");
    let drops = &v["summary"]["drops"];
    for (_, reason) in malformed_frames() {
        let n = drops
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["reason"] == reason)
            .map(|d| d["packets"].as_u64().unwrap());
        assert_eq!(n, Some(1), "reason {reason} in {drops}");
    }
    assert_eq!(
        v["summary"]["packets_in"].as_u64(),
        Some(frames.len() as u64)
    );
    assert!(!v["flows"].as_array().unwrap().is_empty());
}

#[test]
fn bad_config_names_file_and_key() {
    let dir = scratch("badcfg");
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, "[dpdk]\neal_args = []\nmempol_size = 5\n").unwrap();
    let out = septa()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gw.toml") && err.contains("mempol_size"),
        "{err}"
    );

    let out = septa()
        .args(["run", "--config"])
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use super::*;

    struct Run {
        json: serde_json::Value,
        out0: Vec<Vec<u8>>,
        out1: Vec<Vec<u8>>,
    }

    /// `septa run` with port 0 reading `input` and both ports writing captures.
    fn run_pcap(name: &str, input: &[Vec<u8>], decision: &str) -> Run {
        let dir = scratch(name);
        let (inp, out0, out1) = (
            dir.join("in.pcap"),
            dir.join("out0.pcap"),
            dir.join("out1.pcap"),
        );
        testgen::write_pcap(&inp, input.to_vec()).unwrap();
        let prefix = format!("septa-golden-{name}-{}", std::process::id());
        let config = format!(
            r#"[dpdk]
eal_args = ["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-telemetry", "--file-prefix", "{prefix}",
            "--vdev=net_pcap0,rx_pcap={inp},tx_pcap={out0}", "--vdev=net_pcap1,tx_pcap={out1}"]
mempool_size = 4095
mempool_cache = 64
rx_descriptors = 256
tx_descriptors = 256

[[ports]]
name = "net_pcap0"
[[ports]]
name = "net_pcap1"

[[pairs]]
ports = ["net_pcap0", "net_pcap1"]

[dataplane]
decision = "{decision}"
"#,
            inp = inp.display(),
            out0 = out0.display(),
            out1 = out1.display(),
        );
        let cfg = dir.join("gw.toml");
        std::fs::write(&cfg, config).unwrap();
        let out = septa()
            .args(["run", "--json", "--until-idle", "300", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
        assert!(
            out.status.success(),
            "septa run failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Run {
            json: serde_json::from_slice(&out.stdout).expect("JSON counters"),
            out0: septa_dataplane::io::pcap::read_frames(&out0).unwrap(),
            out1: septa_dataplane::io::pcap::read_frames(&out1).unwrap(),
        }
    }

    fn sequenced(n: u64) -> Vec<Vec<u8>> {
        (0..n).map(|seq| testgen::mixed_frame(64, seq)).collect()
    }

    #[test]
    fn allow_all_forwards_every_frame_unchanged_and_in_order() {
        let input = sequenced(500);
        let run = run_pcap("allow", &input, "allow-all");
        assert_eq!(run.out1.len(), input.len(), "no loss");
        assert!(run.out1 == input, "identical bytes in the same order");
        assert!(
            run.out0.is_empty(),
            "nothing goes back out of the receiving port"
        );
        assert_eq!(run.json["rx_packets"], 500);
        assert_eq!(run.json["tx_packets"], 500);
        assert_eq!(run.json["dropped"], 0);
    }

    #[test]
    fn deny_all_forwards_only_arp() {
        let mut input = sequenced(100);
        let arp = testgen::arp_request(
            [2, 0, 0, 0, 0, 1],
            [10, 1, 0, 10].into(),
            [10, 1, 0, 53].into(),
        );
        input.insert(50, arp.clone());
        let run = run_pcap("deny", &input, "deny-all");
        assert_eq!(run.out1, vec![arp]);
        assert_eq!(run.json["drops"]["policy"], 100);
        assert_eq!(run.json["non_ip_forwarded"], 1);
    }

    #[test]
    fn malformed_frames_are_dropped_and_counted_like_the_offline_runtime() {
        let input = demo_capture();
        let run = run_pcap("malformed", &input, "allow-all");
        assert!(
            run.out1 == testgen::demo_traffic(),
            "exactly the valid frames pass, in order"
        );
        for (_, reason) in malformed_frames() {
            assert_eq!(
                run.json["drops"][reason], 1,
                "{reason}: {}",
                run.json["drops"]
            );
        }
        // The offline runtime runs the same code: same totals and drop reasons.
        let dir = scratch("malformed-replay");
        let inp = dir.join("in.pcap");
        testgen::write_pcap(&inp, input.clone()).unwrap();
        let replay = replay_json(&inp, "allow-all");
        assert_eq!(replay["summary"]["dropped"], run.json["dropped"]);
        assert_eq!(replay["summary"]["packets_out"], run.json["tx_packets"]);
    }

    #[test]
    fn eal_failure_exits_nonzero_with_dpdk_text() {
        let dir = scratch("ealfail");
        let cfg = dir.join("gw.toml");
        std::fs::write(
            &cfg,
            "[dpdk]\neal_args = [\"--no-huge\", \"--no-such-eal-option\"]\n[[ports]]\nname = \"net_ring0\"\n\
             [[ports]]\nname = \"net_ring1\"\n[[pairs]]\nports = [\"net_ring0\", \"net_ring1\"]\n",
        )
        .unwrap();
        let out = septa()
            .args(["run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("eal_args"), "{err}");
    }

    #[test]
    fn unknown_port_is_named() {
        let dir = scratch("noport");
        let cfg = dir.join("gw.toml");
        let prefix = format!("septa-golden-noport-{}", std::process::id());
        std::fs::write(
            &cfg,
            format!(
                "[dpdk]\neal_args = [\"-l\", \"0\", \"--no-huge\", \"-m\", \"128\", \"--no-pci\", \"--file-prefix\", \"{prefix}\", \
                 \"--vdev=net_ring0\"]\nmempool_size = 4095\nrx_descriptors = 128\ntx_descriptors = 128\n\
                 [[ports]]\nname = \"net_ring0\"\n[[ports]]\nname = \"net_ring7\"\n\
                 [[pairs]]\nports = [\"net_ring0\", \"net_ring7\"]\n"
            ),
        )
        .unwrap();
        let out = septa()
            .args(["run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("net_ring7"), "{err}");
    }
}
