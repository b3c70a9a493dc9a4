//! `septa run` with `[control]`: the REST API over HTTPS (the generated self-signed certificate
//! as the only trust anchor) drives what the workers enforce.
//!
//! Port 0 is a `net_pcap` vdev replaying one UDP flow forever (`infinite_rx=1`); port 1 drops
//! what it transmits. The policy file seeds the store (allow), a commit over HTTPS denies the
//! flow and the workers' counters (read from `/metrics`) show it: policy drops rise and port 1
//! stops transmitting; a rollback lets it through again. A restart on the same data directory
//! enforces the stored revision (deny) from the first packet, not the seed file.
//!
//! Needs the `dpdk` feature (DPDK's pcap PMD); without it the file compiles to nothing.

#![cfg(feature = "dpdk")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
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

/// [`ALLOW`] without its conduit: default deny.
fn deny() -> String {
    ALLOW[..ALLOW.find("  conduits:").unwrap()].to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("control-api-{name}"));
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

/// A running `septa run` and the lines of its stderr so far.
struct Gateway {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    prefix: String,
}

/// Two ports bridged.
const BRIDGED: &str = r#"[[ports]]
name = "net_pcap0"
[[ports]]
name = "net_pcap1"

[[pairs]]
ports = ["net_pcap0", "net_pcap1"]
"#;

/// Two ports routed: the gateway owns 10.1.0.1 (port 0) and 10.2.0.1 (port 1).
const ROUTED: &str = r#"[[ports]]
name = "net_pcap0"
address = "10.1.0.1/24"
mac = "02:ee:00:00:00:10"
[[ports]]
name = "net_pcap1"
address = "10.2.0.1/24"
mac = "02:ee:00:00:00:11"

[[pairs]]
ports = ["net_pcap0", "net_pcap1"]
mode = "routed"
"#;

impl Gateway {
    fn start(dir: &Path, port: u16) -> Gateway {
        Self::start_with(dir, port, BRIDGED)
    }

    /// `septa run` with `ports` (the `[[ports]]` and `[[pairs]]` sections).
    fn start_with(dir: &Path, port: u16, ports: &str) -> Gateway {
        let prefix = format!("septa-ctl-{}-{}", std::process::id(), free_port());
        let config = format!(
            r#"[dpdk]
eal_args = ["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-telemetry", "--file-prefix", "{prefix}",
            "--vdev=net_pcap0,rx_pcap={inp},infinite_rx=1", "--vdev=net_pcap1,rx_pcap={empty}"]
mempool_size = 4095
mempool_cache = 64
rx_descriptors = 256
tx_descriptors = 256

{ports}
[dataplane]
policy = "seed.yaml"
flow_update_interval = 1

[control]
listen = "127.0.0.1:{port}"
data_dir = "state"
audit_interval = 1
audit_allow_sample = 1
"#,
            inp = dir.join("in.pcap").display(),
            empty = dir.join("empty.pcap").display(),
        );
        let cfg = dir.join("gw.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_septa"))
            .args(["run", "--json", "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Gateway {
            child,
            stderr,
            prefix,
        }
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "septa run exited ({status}): {:#?}",
                    self.stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in {:#?}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the final counters (JSON on stdout).
    fn stop(mut self) -> serde_json::Value {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
        assert!(
            status.success(),
            "{status}: {out}\n{:#?}",
            self.stderr.lock().unwrap()
        );
        serde_json::from_str(&out).expect("JSON counters")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTPS/1.1 client trusting only the gateway's generated certificate.
struct Client {
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    cookie: Option<String>,
    csrf: Option<String>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Client {
    fn new(port: u16, cert: &Path) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Client {
            port,
            tls: Arc::new(tls),
            cookie: None,
            csrf: None,
        }
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let conn = rustls::ClientConnection::new(
            Arc::clone(&self.tls),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if let (Some(t), false) = (&self.csrf, method == "GET") {
            req.push_str(&format!("X-CSRF-Token: {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        if let Err(e) = s.read_to_end(&mut raw) {
            // A peer that closes without close_notify; the response is complete by then.
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        }
        let text = String::from_utf8(raw).unwrap();
        let (head, rest) = text.split_once("\r\n\r\n").expect("a full response");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Logs in as `admin` with the password `gw` printed at its first start.
    fn first_login(gw: &mut Gateway, dir: &Path, port: u16) -> (Client, String) {
        let pw_line = gw.wait_line("created user `admin` with password ");
        let password = pw_line
            .split("password ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        gw.wait_line("worker(s) on lcore(s)");
        let mut c = Client::new(port, &dir.join("state/tls/cert.pem"));
        c.login(&password);
        (c, password)
    }

    fn login(&mut self, password: &str) {
        let r = self.request(
            "POST",
            "/api/v1/auth/login",
            &[],
            &serde_json::json!({"user": "admin", "password": password}).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let cookie = r.header("set-cookie").expect("a session cookie");
        self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
        self.csrf = Some(r.json()["csrf_token"].as_str().unwrap().to_owned());
    }

    /// `septa_port_tx_packets_total` of `port` and `septa_dropped_packets_total{reason}`.
    fn metric(&self, name: &str, label: &str) -> u64 {
        let r = self.request("GET", "/metrics", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        let prefix = format!("{name}{{{label}}} ");
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{}", r.body))
            .trim()
            .parse()
            .unwrap()
    }

    fn tx1(&self) -> u64 {
        self.metric("septa_port_tx_packets_total", "port=\"net_pcap1\"")
    }

    fn policy_drops(&self) -> u64 {
        self.metric("septa_dropped_packets_total", "reason=\"policy\"")
    }

    fn no_policy_drops(&self) -> u64 {
        self.metric("septa_dropped_packets_total", "reason=\"no_policy\"")
    }

    fn etag(&self) -> String {
        let r = self.request("GET", "/api/v1/policy", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        r.header("etag").expect("ETag").to_owned()
    }

    fn commit(&self, policy: &str, reason: &str) -> serde_json::Value {
        let etag = self.etag();
        let r = self.request(
            "POST",
            "/api/v1/policy/commit",
            &[("If-Match", &etag)],
            &serde_json::json!({"policy": policy, "reason": reason}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["revision"].clone()
    }

    /// `/api/v1/flows?{query}`, waiting until it has at least one item.
    fn flows(&self, query: &str) -> Vec<serde_json::Value> {
        let mut items = Vec::new();
        eventually(&format!("flows matching {query}"), || {
            let r = self.request("GET", &format!("/api/v1/flows?{query}"), &[], "");
            assert_eq!(r.status, 200, "{}", r.body);
            items = r.json()["items"].as_array().unwrap().clone();
            !items.is_empty()
        });
        items
    }

    fn rollback(&self, to: i64) {
        let etag = self.etag();
        let r = self.request(
            "POST",
            "/api/v1/policy/rollback",
            &[("If-Match", &etag)],
            &serde_json::json!({"to": to, "reason": "undo the lab deny"}).to_string(),
        );
        assert!(
            r.status == 200 || r.status == 201,
            "{}: {}",
            r.status,
            r.body
        );
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// Polls until `f` holds (the workers apply a publish at their next burst).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether port 1 is still transmitting over `window`.
fn tx_grows(c: &Client) -> bool {
    let a = c.tx1();
    std::thread::sleep(Duration::from_millis(300));
    c.tx1() > a
}

#[test]
fn api_commit_and_rollback_drive_the_workers_and_the_store_wins_on_restart() {
    let dir = scratch("lifecycle");
    let frames: Vec<Vec<u8>> = (0..8)
        .map(|seq| {
            FrameBuilder::new()
                .ipv4([10, 1, 0, 1].into(), [10, 2, 0, 1].into())
                .udp(4000, 5000)
                .seq(seq)
                .build()
        })
        .collect();
    testgen::write_pcap(&dir.join("in.pcap"), frames).unwrap();
    testgen::write_pcap(&dir.join("empty.pcap"), Vec::<Vec<u8>>::new()).unwrap();
    std::fs::write(dir.join("seed.yaml"), ALLOW).unwrap();
    let port = free_port();

    // First start: the seed file becomes revision 1; the admin password is printed once.
    let mut gw = Gateway::start(&dir, port);
    gw.wait_line("control API on https://");
    let seeded = gw.wait_line("empty store seeded");
    assert!(seeded.contains("revision 1"), "{seeded}");
    let (c, password) = Client::first_login(&mut gw, &dir, port);

    eventually("traffic through the seeded allow policy", || c.tx1() > 1000);
    assert_eq!(c.policy_drops(), 0);
    assert_eq!(
        c.no_policy_drops(),
        0,
        "the policy was installed before traffic"
    );
    // The worker's flow table as it publishes it (every 100 ms): the one UDP flow, in
    // /metrics and in /api/v1/health; no router series without routed mode.
    let worker = "worker=\"0\",lcore=\"0\"";
    eventually("the flow table's series", || {
        c.metric("septa_flow_table_flows", worker) == 1
    });
    assert_eq!(c.metric("septa_flow_table_inserted_total", worker), 1);
    // No reply ever comes: the UDP flow stays half-open (evictable).
    assert_eq!(c.metric("septa_flow_table_half_open_flows", worker), 1);
    assert_eq!(
        c.metric("septa_flow_table_evicted_half_open_total", worker),
        0
    );
    assert_eq!(c.metric("septa_flow_table_capacity_flows", worker), 1 << 18);
    let h = c.request("GET", "/api/v1/health", &[], "");
    assert_eq!(h.status, 200, "{}", h.body);
    let w = &h.json()["workers"][0];
    assert_eq!(
        (&w["flows"]["active"], &w["flows"]["inserted"], &w["router"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::Value::Null
        ),
        "{w}"
    );
    let m = c.request("GET", "/metrics", &[], "");
    assert!(!m.body.contains("septa_router_"), "{}", m.body);

    // The workers' event rings feed /api/v1/flows.
    let started = c.flows("port=5000&action=allow");
    let f = &started[0];
    assert_eq!(
        (f["src"].as_str(), f["dst"].as_str()),
        (Some("10.1.0.1"), Some("10.2.0.1"))
    );
    assert_eq!(
        (f["proto"].as_u64(), f["sport"].as_u64()),
        (Some(17), Some(4000))
    );
    // The flow never ends (the capture replays forever), yet its traffic is reported: an
    // `update` record per second with the bytes since the previous one and the running total.
    eventually("two update records of the live flow", || {
        let ups: Vec<(u64, u64)> = c
            .flows("port=5000&action=allow")
            .iter()
            .filter(|f| f["kind"] == "update")
            .map(|f| {
                (
                    f["bytes"].as_u64().unwrap(),
                    f["total_bytes"].as_u64().unwrap(),
                )
            })
            .collect();
        // Newest first: the newer total is the older one plus the newer delta.
        ups.len() >= 2 && ups[0].0 > 0 && ups[0].1 == ups[1].1 + ups[0].0
    });

    // Commit a deny over HTTPS: the workers swap tables without a restart.
    let rev = c.commit(&deny(), "lab: cut a to b");
    assert_eq!(rev["id"], 2, "{rev}");
    eventually("policy drops after the deny commit", || {
        c.policy_drops() > 0
    });
    eventually("port 1 to stop transmitting", || !tx_grows(&c));
    assert!(c.policy_drops() > 1000);
    let hash = rev["hash"].as_str().unwrap().to_owned();
    eventually("a deny record naming revision 2", || {
        c.flows("action=deny&src=10.1.0.1")
            .iter()
            .any(|f| f["revision"] == hash.as_str() && f["dport"] == 5000)
    });
    // ... and the access decision is audited, aggregated per (flow, clause) and interval.
    eventually("an access.deny audit record for revision 2", || {
        let r = c.request("GET", "/api/v1/audit/records?action=access.deny", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["items"].as_array().unwrap().iter().any(|a| {
            a["after"] == hash.as_str() && a["object"] == "udp 10.1.0.1:4000 -> 10.2.0.1:5000"
        })
    });

    // Roll back to revision 1: traffic flows again.
    c.rollback(1);
    eventually("port 1 to transmit again", || tx_grows(&c));

    // Deny again, stop, restart: the store's revision (deny) is enforced from the first packet.
    c.commit(&deny(), "lab: cut a to b again");
    eventually("policy drops after the second deny", || !tx_grows(&c));
    let first = gw.stop();
    assert!(first["drops"]["policy"].as_u64().unwrap() > 0, "{first}");

    let mut gw = Gateway::start(&dir, port);
    let enforcing = gw.wait_line("enforcing revision");
    assert!(enforcing.contains("revision 4"), "{enforcing}");
    gw.wait_line("only seeds an empty store");
    gw.wait_line("worker(s) on lcore(s)");
    assert!(
        !gw.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("created user")),
        "the first password is printed only once"
    );
    let mut c = Client::new(port, &dir.join("state/tls/cert.pem"));
    c.login(&password);
    eventually("policy drops under the stored deny", || {
        c.policy_drops() > 1000
    });
    assert_eq!(c.tx1(), 0, "nothing passed: the seed file did not win");
    assert_eq!(c.no_policy_drops(), 0, "installed before any traffic");
    let second = gw.stop();
    assert_eq!(second["tx_packets"], 0, "{second}");

    // Commits, rollbacks, logins and the aggregated access decisions form a verifiable chain.
    let verify = Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(["audit", "verify"])
        .arg(dir.join("state/audit"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Routed mode: the gateway answers the pings port 0 replays forever, and its worker's router
/// counters reach `/metrics` and `/api/v1/health` (published every 100 ms).
#[test]
fn routed_mode_publishes_the_routers_counters() {
    use septa_dataplane::testgen::{MAC_A, arp_request};
    let dir = scratch("routed");
    let (host, gw4) = ([10, 1, 0, 10].into(), [10, 1, 0, 1].into());
    let mut frames = vec![arp_request(MAC_A, host, gw4)];
    frames.extend((0..4).map(|seq| {
        FrameBuilder::new()
            .macs(MAC_A, [0x02, 0xee, 0, 0, 0, 0x10])
            .ipv4(host, gw4)
            .icmp(8, 0)
            .seq(seq)
            .build()
    }));
    testgen::write_pcap(&dir.join("in.pcap"), frames).unwrap();
    testgen::write_pcap(&dir.join("empty.pcap"), Vec::<Vec<u8>>::new()).unwrap();
    std::fs::write(dir.join("seed.yaml"), ALLOW).unwrap();
    let port = free_port();
    let mut gw = Gateway::start_with(&dir, port, ROUTED);
    let (c, _) = Client::first_login(&mut gw, &dir, port);
    let worker = "worker=\"0\",lcore=\"0\"";
    eventually("pings answered in /metrics", || {
        c.metric("septa_router_echo_replies_total", worker) > 100
    });
    assert!(c.metric("septa_router_arp_replies_total", worker) > 0);
    assert!(c.metric("septa_router_local_frames_total", worker) > 100);
    assert_eq!(
        c.metric("septa_router_neighbours", worker),
        1,
        "the pinging host"
    );
    let h = c.request("GET", "/api/v1/health", &[], "");
    assert_eq!(h.status, 200, "{}", h.body);
    let router = &h.json()["workers"][0]["router"];
    assert!(router["echo_replies"].as_u64().unwrap() > 100, "{router}");
    assert_eq!(router["neighbours"], 1, "{router}");
    let stopped = gw.stop();
    assert!(stopped["rx_packets"].as_u64().unwrap() > 0, "{stopped}");
}
