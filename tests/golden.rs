//! Golden tests of the real `septa` binary: pcap in, pcap and counters out.
//!
//! * The bundled sample capture (`configs/samples/demo.pcap`) is exactly what the generator makes
//!   (`SEPTA_BLESS=1 cargo test --test golden` rewrites it after a deliberate change).
//! * With the `dpdk` feature, `septa run` forwards through `net_pcap` vdevs
//!   (`rx_pcap=IN,tx_pcap=OUT`) and OUT is compared frame by frame with what must come out; each
//!   run is a subprocess with its own EAL and `--file-prefix`.
//! * `septa replay` (the offline runtime) must agree with the DPDK run on the same input.
//! * Under the demo policy (`configs/policies/demo.yaml`) every flow of a capture addressed into
//!   the demo zones gets the exact verdict, rule and clause expected, offline and on DPDK.

use std::path::{Path, PathBuf};
use std::process::Command;

use septa_dataplane::testgen::{self, FrameBuilder};

fn septa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_septa"))
}

/// `septa run --config PATH`, which must fail; returns what it printed on stderr.
fn run_must_fail(config: &Path) -> String {
    let out = septa()
        .args(["run", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "septa run {} succeeded",
        config.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    replay_json_with(input, &["--decision", decision])
}

fn replay_json_with(input: &Path, args: &[&str]) -> serde_json::Value {
    let out = septa()
        .args(["replay", "--json"])
        .args(args)
        .arg("--pcap")
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

fn demo_policy() -> PathBuf {
    repo().join("configs/policies/demo.yaml")
}

/// One flow of the policy capture and what the demo policy must do with it.
struct PolicyCase {
    frame: FrameBuilder,
    /// Packets of the flow (the frame is repeated).
    packets: usize,
    /// `forward` or `drop(reason)`.
    verdict: &'static str,
    rule: u32,
    action: &'static str,
    mode: &'static str,
    /// The start of the deciding clause's text.
    clause: &'static str,
}

fn v4(src: [u8; 4], dst: [u8; 4]) -> FrameBuilder {
    FrameBuilder::new().ipv4(src.into(), dst.into())
}

/// Flows between the demo zones: it 10.10.0.0/16 (ehr-app 10.10.5.10/11 inside it), ehr-db
/// 10.20.0.0/24, ot-plc 10.30.1.10/11, ot-hmi 10.30.2.0/24 (monitor), management 10.99.0.0/24.
fn policy_cases() -> Vec<PolicyCase> {
    const IT: [u8; 4] = [10, 10, 1, 20];
    const APP: [u8; 4] = [10, 10, 5, 10];
    const APP2: [u8; 4] = [10, 10, 5, 11];
    const DB: [u8; 4] = [10, 20, 0, 5];
    const PLC1: [u8; 4] = [10, 30, 1, 10];
    const PLC2: [u8; 4] = [10, 30, 1, 11];
    const HMI: [u8; 4] = [10, 30, 2, 5];
    const ADMIN: [u8; 4] = [10, 99, 0, 10];
    const DNS: [u8; 4] = [10, 99, 0, 53];
    let case = |frame, packets, verdict, rule, action, mode, clause| PolicyCase {
        frame,
        packets,
        verdict,
        rule,
        action,
        mode,
        clause,
    };
    let (allow, deny, inspect) = ("allow", "deny", "inspect");
    let (enforce, monitor) = ("enforce", "monitor");
    vec![
        case(
            v4(IT, PLC1).tcp(40000, 502, 0x02),
            2,
            "drop(policy)",
            1,
            deny,
            enforce,
            "conduit no-it-to-ot (deny) it -> ot-plc",
        ),
        // The client's SYN, retransmitted twice (same ISN: conntrack passes exact retransmissions).
        case(
            v4(IT, APP).tcp(40001, 443, 0x02).tcp_seq(1000),
            3,
            "forward",
            3,
            allow,
            enforce,
            "conduit it-to-ehr-app (allow) it -> ehr-app: tcp/443",
        ),
        // The reply belongs to the allowed connection (its SYN-ACK acknowledges the SYN and its
        // 12 bytes of sequence marker): the flow's original direction decides, rule 3. Before
        // connection tracking it was a flow of its own, denied by the default (rule 19).
        case(
            v4(APP, IT)
                .tcp(443, 40001, 0x12)
                .tcp_seq(9000)
                .tcp_ack(1013),
            1,
            "forward",
            3,
            allow,
            enforce,
            "conduit it-to-ehr-app (allow) it -> ehr-app: tcp/443",
        ),
        case(
            v4(HMI, PLC2).tcp(40002, 502, 0x02),
            1,
            "forward",
            4,
            inspect,
            monitor,
            "conduit hmi-to-plc (allow) ot-hmi -> ot-plc: tcp/502 l7",
        ),
        case(
            v4(HMI, PLC1).tcp(40003, 80, 0x02),
            1,
            "forward",
            17,
            deny,
            monitor,
            "default deny for zone ot-hmi [monitor]",
        ),
        case(
            v4(APP2, DB).tcp(40004, 5432, 0x02),
            1,
            "forward",
            2,
            allow,
            enforce,
            "conduit ehr-app-to-db (allow) ehr-app -> ehr-db: tcp/5432",
        ),
        case(
            v4(IT, DB).tcp(40005, 5432, 0x02),
            1,
            "drop(policy)",
            19,
            deny,
            enforce,
            "default deny",
        ),
        case(
            v4(ADMIN, PLC1).tcp(40006, 22, 0x02),
            1,
            "forward",
            5,
            allow,
            enforce,
            "conduit admin (allow) management -> any",
        ),
        case(
            v4(IT, DNS).udp(40007, 53),
            1,
            "forward",
            9,
            allow,
            enforce,
            "conduit dns (allow) it -> management: udp/53",
        ),
        case(
            FrameBuilder::new()
                .ipv6(
                    "2001:db8::1".parse().unwrap(),
                    "2001:db8::2".parse().unwrap(),
                )
                .udp(40008, 53),
            1,
            "drop(policy)",
            19,
            deny,
            enforce,
            "default deny",
        ),
    ]
}

/// The policy capture: each case's packets (numbered), then an ARP request and a PPPoE frame.
fn policy_capture() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut frames = Vec::new();
    let mut allowed = Vec::new();
    let mut seq = 0;
    for c in policy_cases() {
        for _ in 0..c.packets {
            let f = c.frame.clone().seq(seq).build();
            seq += 1;
            if c.verdict == "forward" {
                allowed.push(f.clone());
            }
            frames.push(f);
        }
    }
    let arp = testgen::arp_request(
        [2, 0, 0, 0, 0, 1],
        [10, 10, 1, 20].into(),
        [10, 10, 5, 10].into(),
    );
    frames.push(arp.clone());
    allowed.push(arp);
    frames.push(FrameBuilder::new().ethertype(0x8863).build());
    (frames, allowed)
}

#[test]
fn replay_enforces_the_demo_policy_flow_by_flow() {
    let dir = scratch("policy-replay");
    let (input, out) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let (frames, allowed) = policy_capture();
    testgen::write_pcap(&input, frames.clone()).unwrap();
    let policy = demo_policy();
    let v = replay_json_with(
        &input,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let flows = v["flows"].as_array().unwrap();
    let cases = policy_cases();
    assert_eq!(flows.len(), cases.len(), "{flows:#?}");
    for (f, c) in flows.iter().zip(&cases) {
        let verdict = match f["drop_reason"].as_str() {
            Some(r) => format!("drop({r})"),
            None => f["verdict"].as_str().unwrap().to_owned(),
        };
        let what = format!("{} -> {}:{}", f["src"], f["dst"], f["dport"]);
        assert_eq!(verdict, c.verdict, "{what}");
        assert_eq!(f["rule"], c.rule, "{what}");
        assert_eq!(f["action"], c.action, "{what}");
        assert_eq!(f["mode"], c.mode, "{what}");
        assert_eq!(f["packets"], c.packets, "{what}");
        let clause = f["clause"].as_str().unwrap_or_default();
        assert!(clause.starts_with(c.clause), "{what}: clause {clause:?}");
        assert!(clause.contains("demo-hospital: spec."), "{clause}");
    }
    let s = &v["summary"];
    assert_eq!(s["packets_in"], frames.len());
    assert_eq!(s["packets_out"], allowed.len());
    assert_eq!(
        s["would_deny"], 2,
        "the monitor-mode default deny and the monitor-mode inspect conduit"
    );
    assert_eq!(s["non_ip_forwarded"], 1);
    let drops: Vec<_> = s["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap(),
                d["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(drops, [("policy", 5)], "IP denies + PPPoE");
    assert_eq!(v["policy"]["rules"], 19);
    let forwarded = septa_dataplane::io::pcap::read_frames(&out).unwrap();
    assert!(forwarded == allowed, "exactly the allowed frames, in order");

    // The human report says who decided.
    let run = septa()
        .args(["replay", "--policy"])
        .arg(&policy)
        .arg("--pcap")
        .arg(&input)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for want in [
        "denied by conduit no-it-to-ot (deny) it -> ot-plc: any protocol (demo-hospital: spec.conduits[0].services[0]), rule 1 (deny/enforce)",
        "would be denied (monitor mode, forwarded) by default deny for zone ot-hmi",
        "inspected by its L7 conduit: forwarded (monitor mode; refusals counted as would-deny) by conduit hmi-to-plc",
        "would deny            2",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn replay_policy_and_decision_are_mutually_exclusive() {
    let out = septa()
        .args([
            "replay",
            "--pcap",
            "x.pcap",
            "--decision",
            "allow-all",
            "--policy",
        ])
        .arg(demo_policy())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--policy") && err.contains("--decision"),
        "{err}"
    );
}

#[test]
fn an_invalid_policy_is_refused_with_its_diagnostics() {
    let dir = scratch("badpolicy");
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(demo_policy()).unwrap().replace(
        "to: [ot-plc]\n      services:\n        - proto: any",
        "to: [ot-plcc]\n      services:\n        - proto: any",
    );
    std::fs::write(&bad, text).unwrap();
    let input = dir.join("in.pcap");
    testgen::write_pcap(&input, policy_capture().0).unwrap();
    let out = septa()
        .args(["replay", "--policy"])
        .arg(&bad)
        .arg("--pcap")
        .arg(&input)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("ot-plcc"), "{err}");

    // `septa run` refuses to start (before any port is touched, so also without DPDK).
    let cfg = dir.join("gw.toml");
    std::fs::write(
        &cfg,
        "[dpdk]\neal_args = []\n[[ports]]\nname = \"net_ring0\"\n[[ports]]\nname = \"net_ring1\"\n\
         [[pairs]]\nports = [\"net_ring0\", \"net_ring1\"]\n[dataplane]\npolicy = \"bad.yaml\"\n",
    )
    .unwrap();
    let err = run_must_fail(&cfg);
    assert!(
        err.contains("dataplane.policy") && err.contains("gw.toml") && err.contains("ot-plcc"),
        "{err}"
    );
}

#[test]
fn bad_config_names_file_and_key() {
    let dir = scratch("badcfg");
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, "[dpdk]\neal_args = []\nmempol_size = 5\n").unwrap();
    let err = run_must_fail(&cfg);
    assert!(
        err.contains("gw.toml") && err.contains("mempol_size"),
        "{err}"
    );

    assert!(run_must_fail(&dir.join("missing.toml")).contains("missing.toml"));
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
        run_pcap_in(
            &scratch(name),
            name,
            input,
            &format!("decision = \"{decision}\""),
        )
    }

    /// [`run_pcap`] in `dir`, with `dataplane` as the body of the `[dataplane]` table.
    fn run_pcap_in(dir: &Path, name: &str, input: &[Vec<u8>], dataplane: &str) -> Run {
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
{dataplane}
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
    fn policy_run_forwards_exactly_the_allowed_frames_and_agrees_with_replay() {
        let dir = scratch("policy-run");
        // Relative to the configuration file's directory.
        std::fs::copy(demo_policy(), dir.join("demo.yaml")).unwrap();
        let (input, allowed) = policy_capture();
        let run = run_pcap_in(&dir, "policy-run", &input, "policy = \"demo.yaml\"");
        assert!(run.out1 == allowed, "exactly the allowed frames, in order");
        assert!(run.out0.is_empty());
        // 5 since connection tracking: the SYN-ACK reply of the allowed it -> ehr-app
        // connection now passes with its flow instead of being denied by the default.
        assert_eq!(run.json["drops"]["policy"], 5, "{}", run.json);
        assert_eq!(
            run.json["drops"]["l7_unavailable"],
            serde_json::Value::Null,
            "monitor mode never drops"
        );
        assert_eq!(run.json["would_deny"], 2);

        let inp = dir.join("in.pcap");
        let replay = replay_json_with(&inp, &["--policy", demo_policy().to_str().unwrap()]);
        let s = &replay["summary"];
        assert_eq!(s["packets_in"], run.json["rx_packets"]);
        assert_eq!(s["packets_out"], run.json["tx_packets"]);
        assert_eq!(s["dropped"], run.json["dropped"]);
        assert_eq!(s["would_deny"], run.json["would_deny"]);
        assert_eq!(s["non_ip_forwarded"], run.json["non_ip_forwarded"]);
        for d in s["drops"].as_array().unwrap() {
            let reason = d["reason"].as_str().unwrap();
            assert_eq!(run.json["drops"][reason], d["packets"], "{reason}");
        }
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
        let err = run_must_fail(&cfg);
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
        let err = run_must_fail(&cfg);
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
        assert!(err.contains("net_ring7"), "{err}");
    }
}
