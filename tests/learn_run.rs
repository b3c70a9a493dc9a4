//! `septa run` with `[control]` and `[export]`: observed flows reach the flow history and the
//! rule-usage counters, and the configured exporters send IPFIX and syslog to collectors on
//! loopback and write the JSON-lines flow log.
//!
//! Port 0 is a `net_pcap` vdev replaying UDP flows forever: three sources to 10.2.0.1:5000
//! (allowed by the seed policy's conduit) and one to port 6000 (default deny). Two UDP sockets
//! of the test are the IPFIX collector and the syslog receiver.
//!
//! Needs the `dpdk` feature (DPDK's pcap PMD); without it the file compiles to nothing.

#![cfg(feature = "dpdk")]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use septa_control::history::{FlowHistory, HistoryConfig};
use septa_dataplane::testgen::{self, FrameBuilder};

const ALLOW: &str = "apiVersion: septa.io/v1
kind: Policy
metadata:
  name: lab
spec:
  zones:
    - name: a
      subnets: [10.1.0.0/24]
    - name: b
      subnets: [10.2.0.0/24]
  conduits:
    - name: a-to-b
      from: [a]
      to: [b]
      services:
        - proto: udp
          ports: [5000]
";

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("learn-run-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Datagrams received until `done` says enough or `timeout` passes.
fn collect(sock: &UdpSocket, timeout: Duration, done: impl Fn(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline && !done(&got) {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

/// The (set id, set body) pairs of an IPFIX message.
fn ipfix_sets(msg: &[u8]) -> Vec<(u16, &[u8])> {
    assert!(msg.len() >= 16, "short IPFIX message");
    assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), 10, "IPFIX version");
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    assert_eq!(len, msg.len(), "message length field");
    let mut out = Vec::new();
    let mut at = 16;
    while at + 4 <= len {
        let id = u16::from_be_bytes([msg[at], msg[at + 1]]);
        let l = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
        assert!(l >= 4 && at + l <= len, "set length");
        out.push((id, &msg[at + 4..at + l]));
        at += l;
    }
    out
}

/// `septa run --json --config CFG` in the background: its stderr lines collected, its JSON report
/// read when it exits; killed (and its DPDK runtime directory removed) when dropped.
struct Septa {
    child: std::process::Child,
    prefix: String,
    stderr: Arc<Mutex<Vec<String>>>,
    started: std::sync::mpsc::Receiver<()>,
    report: Option<std::thread::JoinHandle<String>>,
}

impl Septa {
    /// Starts septa on `cfg`, whose EAL arguments use `--file-prefix PREFIX`.
    fn run(cfg: &Path, prefix: String) -> Septa {
        let mut child = Command::new(env!("CARGO_BIN_EXE_septa"))
            .args(["run", "--json", "--config"])
            .arg(cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        let (started_tx, started) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let started = line.contains("worker(s) on lcore(s)");
                // Into the log first: whoever `wait_started` wakes reads the log with this line.
                lines.lock().unwrap().push(line);
                if started {
                    let _ = started_tx.send(());
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let report = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
        Septa {
            child,
            prefix,
            stderr,
            started,
            report: Some(report),
        }
    }

    /// What septa wrote to stderr so far.
    fn log(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the workers are running.
    fn wait_started(&self) {
        self.started
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("septa did not start: {:#?}", self.log()));
    }

    /// SIGTERM, then the exit (which must be a success) and the JSON report.
    fn stop(&mut self) -> serde_json::Value {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}: {:#?}", self.log());
        let report = self.report.take().unwrap().join().unwrap();
        serde_json::from_str(&report).unwrap_or_else(|e| panic!("report: {e}: {report}"))
    }
}

impl Drop for Septa {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

#[test]
fn run_feeds_history_usage_ipfix_syslog_and_the_flow_log() {
    let dir = scratch("exports");
    let mut frames = Vec::new();
    for seq in 0..40u64 {
        let i = (seq % 4) as u8;
        let dport = if i == 3 { 6000 } else { 5000 };
        frames.push(
            FrameBuilder::new()
                .ipv4([10, 1, 0, 1 + i].into(), [10, 2, 0, 1].into())
                .udp(4000 + u16::from(i), dport)
                .seq(seq)
                .build(),
        );
    }
    testgen::write_pcap(&dir.join("in.pcap"), frames).unwrap();
    testgen::write_pcap(&dir.join("empty.pcap"), Vec::<Vec<u8>>::new()).unwrap();
    std::fs::write(dir.join("seed.yaml"), ALLOW).unwrap();
    let ipfix = UdpSocket::bind("127.0.0.1:0").unwrap();
    let syslog = UdpSocket::bind("127.0.0.1:0").unwrap();
    let prefix = format!("septa-learn-{}-{}", std::process::id(), free_port());
    let config = format!(
        r#"[dpdk]
eal_args = ["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-telemetry", "--file-prefix", "{prefix}",
            "--vdev=net_pcap0,rx_pcap={inp},infinite_rx=1", "--vdev=net_pcap1,rx_pcap={empty}"]
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
policy = "seed.yaml"

[control]
listen = "127.0.0.1:{port}"
data_dir = "state"
plain_http = true
audit_interval = 1
audit_allow_sample = 1

[export]
ipfix = {{ collector = "{ipfix}", domain = 7, enterprise_number = 4242 }}
syslog = {{ target = "{syslog}", transport = "udp", format = "json" }}
flow_log = {{ path = "flows.jsonl" }}
"#,
        inp = dir.join("in.pcap").display(),
        empty = dir.join("empty.pcap").display(),
        port = free_port(),
        ipfix = ipfix.local_addr().unwrap(),
        syslog = syslog.local_addr().unwrap(),
    );
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, config).unwrap();

    // check-config shows the exports.
    let out = Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ipfix -> 127.0.0.1"), "{text}");

    let mut septa = Septa::run(&cfg, prefix);

    // IPFIX: a template set and data records for the allowed and the denied flows.
    let msgs = collect(&ipfix, Duration::from_secs(60), |got| {
        got.iter()
            .flat_map(|m| ipfix_sets(m))
            .filter(|(id, _)| *id >= 256)
            .count()
            >= 2
    });
    assert!(
        !msgs.is_empty(),
        "no IPFIX from septa run: {:#?}",
        septa.log()
    );
    let sets: Vec<(u16, Vec<u8>)> = msgs
        .iter()
        .flat_map(|m| ipfix_sets(m).into_iter().map(|(i, b)| (i, b.to_vec())))
        .collect();
    assert!(sets.iter().any(|(id, _)| *id == 2), "a template set");
    // The configured enterprise number carries the Septa elements (verdict, rule id).
    assert!(
        sets.iter()
            .any(|(id, b)| *id == 2 && b.windows(4).any(|w| w == 4242u32.to_be_bytes())),
        "the template names enterprise number 4242"
    );
    let data: Vec<u8> = sets
        .iter()
        .filter(|(id, _)| *id == 256)
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert!(
        data.windows(4).any(|w| w == [10, 2, 0, 1]),
        "records carry the destination address"
    );

    // Syslog: the access decisions appended to the audit log while running (aggregated every
    // second), as RFC 5424 JSON messages.
    let logs = collect(&syslog, Duration::from_secs(60), |got| {
        got.iter()
            .any(|m| String::from_utf8_lossy(m).contains("access."))
    });
    let logs: Vec<String> = logs
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("<") && l.contains(" septa - audit ") && l.contains("access.")),
        "{logs:#?}"
    );

    septa.stop();

    // History: every flow, with the right verdicts; usage: the conduit's hits.
    let h = FlowHistory::open(&dir.join("state"), HistoryConfig::default()).unwrap();
    let aggs = h.query(0, i64::MAX, 100).unwrap();
    let dst: IpAddr = [10, 2, 0, 1].into();
    for i in 0..4u8 {
        let src: IpAddr = [10, 1, 0, 1 + i].into();
        let a = aggs
            .iter()
            .find(|a| a.key.src == src && a.key.dst == dst)
            .unwrap_or_else(|| panic!("no history for {src}: {aggs:#?}"));
        if i == 3 {
            assert_eq!(a.key.dport, 6000);
            assert!(a.denied >= 1 && a.allowed == 0, "{a:?}");
        } else {
            assert_eq!(a.key.dport, 5000);
            assert_eq!((a.allowed, a.flows, a.denied), (1, 1, 0), "{a:?}");
            // Flow ends (at stop, the workers' flush) reach the history with their counts.
            assert!(a.packets > 0 && a.bytes > 0, "flow ends in history: {a:?}");
        }
    }
    let usage = h.usage().unwrap();
    let conduit = usage
        .iter()
        .find(|u| u.clause.starts_with("conduit/a-to-b/"))
        .unwrap_or_else(|| panic!("no usage for the conduit: {usage:#?}"));
    assert_eq!(conduit.hits, 3, "{usage:#?}");

    // The flow log: JSON lines of the same flows.
    let log = std::fs::read_to_string(dir.join("flows.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["dst"], "10.2.0.1");
    assert!(log.lines().count() >= 4);
}

#[test]
fn export_without_control_is_refused_with_its_key() {
    let dir = scratch("refused");
    let base = "[dpdk]\neal_args = []\n[[ports]]\nname = \"a\"\n[[ports]]\nname = \"b\"\n\
                [[pairs]]\nports = [\"a\", \"b\"]\n";
    for (extra, key) in [
        (
            "[export]\nipfix = { collector = \"127.0.0.1:4739\" }\n",
            "`export`",
        ),
        (
            "[control]\n[export]\nsyslog = { target = \"0.0.0.0:514\", transport = \"udp\", format = \"cef\" }\n",
            "export.syslog.target",
        ),
        (
            "[control]\n[export]\nflow_log = { path = \"f.jsonl\", max_bytes = 10 }\n",
            "export.flow_log.max_bytes",
        ),
        ("[control]\n[export]\nipfx = {}\n", "ipfx"),
        (
            "[control]\n[export]\nsyslog = { target = \"127.0.0.1:514\", transport = \"tls\", format = \"cef\" }\n",
            "export.syslog.ca_file",
        ),
        (
            "[control]\n[export]\nsyslog = { target = \"127.0.0.1:6514\", transport = \"tls\", format = \"cef\", ca_file = \"no-such-ca.pem\" }\n",
            "export.syslog.ca_file",
        ),
        (
            "[control]\n[export]\nipfix = { collector = \"127.0.0.1:4739\", enterprise_number = 0 }\n",
            "enterprise_number",
        ),
    ] {
        let cfg = dir.join("gw.toml");
        std::fs::write(&cfg, format!("{base}{extra}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_septa"))
            .args(["check-config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}");
        assert!(err.contains(key), "{extra}: {err}");
    }
}

/// A worker on an EAL lcore of its own (not the main one) ends its flows at stop while the
/// denied flow keeps its tiny event ring full: the flow ends still reach the history, because
/// the worker writes them only as the monitor makes room and the monitor drains until every
/// worker's final flush is done. (Before, the lcore worker flushed into the full ring as the
/// monitor exited, and the ends were lost: counted, but missing from the history.)
#[test]
fn a_worker_on_its_own_lcore_gets_its_flow_ends_into_the_history_past_a_full_ring() {
    let dir = scratch("lcore");
    let mut frames = Vec::new();
    // Mostly the denied flow (one deny record per packet), a few packets of three allowed ones.
    for seq in 0..400u64 {
        let i = if seq % 20 < 3 { (seq % 20) as u8 } else { 3 };
        let dport = if i == 3 { 6000 } else { 5000 };
        frames.push(
            FrameBuilder::new()
                .ipv4([10, 1, 0, 1 + i].into(), [10, 2, 0, 1].into())
                .udp(4000 + u16::from(i), dport)
                .seq(seq)
                .build(),
        );
    }
    testgen::write_pcap(&dir.join("in.pcap"), frames).unwrap();
    testgen::write_pcap(&dir.join("empty.pcap"), Vec::<Vec<u8>>::new()).unwrap();
    std::fs::write(dir.join("seed.yaml"), ALLOW).unwrap();
    let prefix = format!("septa-lcore-{}-{}", std::process::id(), free_port());
    let config = format!(
        r#"[dpdk]
eal_args = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--no-telemetry", "--file-prefix", "{prefix}",
            "--vdev=net_pcap0,rx_pcap={inp},infinite_rx=1", "--vdev=net_pcap1,rx_pcap={empty}"]
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
policy = "seed.yaml"
worker_lcores = [1]
event_ring = 16

[control]
listen = "127.0.0.1:{port}"
data_dir = "state"
plain_http = true
"#,
        inp = dir.join("in.pcap").display(),
        empty = dir.join("empty.pcap").display(),
        port = free_port(),
    );
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut septa = Septa::run(&cfg, prefix);
    septa.wait_started();
    let log = septa.log();
    assert!(
        log.iter().any(|l| l.contains("worker(s) on lcore(s) [1]")),
        "the worker runs on lcore 1: {log:#?}"
    );
    // Let the capture loop many times: the ring overflows with denies long before the stop.
    std::thread::sleep(Duration::from_millis(1500));
    let report = septa.stop();
    let events = &report["events"];
    // The scenario did what it is for: the ring was full (denies lost and counted).
    assert!(events["lost"].as_u64().unwrap() > 0, "{events}");
    assert!(events["flow_end"].as_u64().unwrap() >= 3, "{events}");

    let h = FlowHistory::open(&dir.join("state"), HistoryConfig::default()).unwrap();
    let aggs = h.query(0, i64::MAX, 100).unwrap();
    let dst: IpAddr = [10, 2, 0, 1].into();
    for i in 0..3u8 {
        let src: IpAddr = [10, 1, 0, 1 + i].into();
        let a = aggs
            .iter()
            .find(|a| a.key.src == src && a.key.dst == dst)
            .unwrap_or_else(|| panic!("no history for {src}: {aggs:#?}"));
        assert_eq!((a.allowed, a.flows), (1, 1), "{a:?}");
        assert!(
            a.packets > 0 && a.bytes > 0,
            "flow end of {src} in history: {a:?}"
        );
    }
}
