//! Golden captures of the stateful data plane's edge cases (tracker issue 4): TCP state
//! (out-of-window RST, data before the handshake, SYN after FIN, simultaneous open), ICMP
//! errors related and unrelated to tracked flows (path-MTU discovery), each fragment attack,
//! VLAN traffic and IPv6 extension headers.
//!
//! Each scenario is built with `testgen`, committed under `tests/data/state/NAME.pcap` and
//! compared with a fresh build (`SEPTA_BLESS=1 cargo test --test state_golden` rewrites them
//! after a deliberate change). The committed capture then goes through `septa replay` under
//! the demo policy (`configs/policies/demo.yaml`), and the test checks the exact counters per
//! drop reason and exactly which frames come out, in order. With the `dpdk` feature all
//! scenarios, concatenated, also go through `septa run` on `net_pcap` vdevs, which must
//! forward the same frames and count the same drops.
//!
//! Addresses are in the demo zones: the IT host 10.10.1.20 may open TCP/443 to the EHR
//! application server 10.10.5.10 and query DNS on 10.99.0.53; the management host 10.99.0.10
//! may ping anything; IPv6 is denied by default.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use septa_dataplane::parse::TcpFlags as F;
use septa_dataplane::testgen::{
    self, FrameBuilder, Ipv6Ext, MAC_A, MAC_B, Side, TcpSession, ip_packet,
};

const IT: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 20);
const APP: Ipv4Addr = Ipv4Addr::new(10, 10, 5, 10);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 10, 5, 1);
const ADMIN: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 53);

fn septa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_septa"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("septa-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One capture and what the demo policy must make of it.
struct Scenario {
    name: &'static str,
    /// `(frame, forwarded?)` in capture order.
    frames: Vec<(Vec<u8>, bool)>,
    /// Exact drop counters (every other reason 0).
    drops: &'static [(&'static str, u64)],
}

impl Scenario {
    fn new(name: &'static str, drops: &'static [(&'static str, u64)]) -> Self {
        Scenario {
            name,
            frames: Vec::new(),
            drops,
        }
    }

    fn pass(&mut self, f: Vec<u8>) {
        self.frames.push((f, true));
    }

    fn pass_all(&mut self, fs: Vec<Vec<u8>>) {
        for f in fs {
            self.pass(f);
        }
    }

    fn drop(&mut self, f: Vec<u8>) {
        self.frames.push((f, false));
    }

    fn input(&self) -> Vec<Vec<u8>> {
        self.frames.iter().map(|(f, _)| f.clone()).collect()
    }

    fn forwarded(&self) -> Vec<Vec<u8>> {
        self.frames
            .iter()
            .filter(|(_, p)| *p)
            .map(|(f, _)| f.clone())
            .collect()
    }
}

fn web(cport: u16) -> TcpSession {
    TcpSession::v4(IT, cport, APP, 443)
}

/// Out-of-window RST (a blind reset), then an in-window one.
fn tcp_rst() -> Scenario {
    let mut s = Scenario::new("tcp_out_of_window_rst", &[("tcp_out_of_window", 2)]);
    let mut c = web(41001);
    s.pass_all(c.handshake());
    s.pass(c.data(Side::Client, 100));
    // A RST far outside the server's window: a blind reset attempt.
    let far = c.next_seq(Side::Server).wrapping_add(10_000_000);
    let ack = c.next_seq(Side::Client);
    s.drop(c.raw(Side::Server, F::RST | F::ACK, far, ack));
    // An ACK acknowledging data the server never sent.
    let seq = c.next_seq(Side::Client);
    let bogus_ack = c.next_seq(Side::Server).wrapping_add(5_000_000);
    s.drop(c.raw(Side::Client, F::ACK, seq, bogus_ack));
    // The connection is undisturbed.
    s.pass(c.data(Side::Server, 300));
    s.pass(c.data(Side::Client, 10));
    s.pass(c.rst(Side::Server));
    s
}

/// Data and ACKs before any handshake, and data before the handshake completes.
fn tcp_early_data() -> Scenario {
    let mut s = Scenario::new(
        "tcp_data_before_handshake",
        &[("tcp_no_flow", 2), ("tcp_invalid_state", 1)],
    );
    // Mid-stream pickup is refused: no SYN, no flow.
    let mut c = web(41002);
    s.drop(c.data(Side::Client, 50));
    s.drop(c.segment(Side::Client, F::ACK, 0));
    // SYN, then client data before the SYN-ACK.
    let mut c = web(41003);
    s.pass(c.segment(Side::Client, F::SYN, 0));
    s.drop(c.data(Side::Client, 20));
    s
}

/// A SYN while the close is in progress is refused; after the close completes (TIME_WAIT) a
/// SYN reopens the connection.
fn tcp_syn_after_fin() -> Scenario {
    let mut s = Scenario::new("tcp_syn_after_fin", &[("tcp_invalid_state", 1)]);
    let mut c = web(41004);
    s.pass_all(c.handshake());
    s.pass(c.data(Side::Client, 40));
    s.pass(c.fin(Side::Client));
    let mut early = TcpSession::new(
        FrameBuilder::new().ipv4(IT, APP),
        FrameBuilder::new().macs(MAC_B, MAC_A).ipv4(APP, IT),
        [41004, 443],
        [77_000, 0],
    )
    .with_first_seq(c.next_tag());
    s.drop(early.segment(Side::Client, F::SYN, 0));
    let mut c = c.with_first_seq(early.next_tag());
    s.pass(c.segment(Side::Server, F::ACK, 0));
    s.pass(c.fin(Side::Server));
    s.pass(c.segment(Side::Client, F::ACK, 0));
    // TIME_WAIT: a new SYN with the same ports reopens the flow.
    let mut again = TcpSession::new(
        FrameBuilder::new().ipv4(IT, APP),
        FrameBuilder::new().macs(MAC_B, MAC_A).ipv4(APP, IT),
        [41004, 443],
        [900_000, 3_000_000],
    )
    .with_first_seq(c.next_tag());
    s.pass_all(again.handshake());
    s.pass(again.data(Side::Server, 10));
    s
}

/// Both ends send a SYN (RFC 9293 simultaneous open), then SYN-ACKs, then data.
fn tcp_simultaneous_open() -> Scenario {
    let mut s = Scenario::new("tcp_simultaneous_open", &[]);
    let mut c = web(41005);
    let (a, b) = (c.next_seq(Side::Client), c.next_seq(Side::Server));
    // Each SYN carries the 12-byte marker: it occupies 13 sequence numbers.
    s.pass(c.raw(Side::Client, F::SYN, a, 0));
    s.pass(c.raw(Side::Server, F::SYN, b, 0));
    s.pass(c.raw(Side::Client, F::SYN | F::ACK, a, b.wrapping_add(13)));
    s.pass(c.raw(Side::Server, F::SYN | F::ACK, b, a.wrapping_add(13)));
    let mut c = TcpSession::new(
        FrameBuilder::new().ipv4(IT, APP),
        FrameBuilder::new().macs(MAC_B, MAC_A).ipv4(APP, IT),
        [41005, 443],
        [a.wrapping_add(13), b.wrapping_add(13)],
    )
    .with_first_seq(c.next_tag());
    s.pass(c.data(Side::Client, 30));
    s.pass(c.data(Side::Server, 30));
    s
}

/// ICMP errors quoting a tracked connection pass with it (fragmentation needed: path-MTU
/// discovery); errors quoting unknown flows, or too short to quote one, are dropped.
fn icmp_errors() -> Scenario {
    let mut s = Scenario::new(
        "icmp_errors",
        &[
            ("icmp_error_unrelated", 2),
            ("icmp_error_malformed", 1),
            ("icmp_no_flow", 1),
            ("policy", 1),
        ],
    );
    let mut c = web(41006);
    s.pass_all(c.handshake());
    let big = c.data(Side::Client, 1400);
    s.pass(big.clone());
    let quoted = ip_packet(&big).unwrap();
    let router = || FrameBuilder::new().macs(MAC_B, MAC_A).ipv4(ROUTER, IT);
    // Fragmentation needed (type 3 code 4) from a router on the path, quoting the big segment.
    s.pass(router().icmp(3, 4).body(quoted[..28].to_vec()).build());
    // The same error quoting a connection nobody opened.
    let mut other = web(41099);
    let stray = ip_packet(&other.data(Side::Client, 0)).unwrap();
    s.drop(router().icmp(3, 4).body(stray[..28].to_vec()).build());
    // Quoting the tracked connection but sent to the server, which never sent the quoted packet.
    s.drop(
        FrameBuilder::new()
            .ipv4(ROUTER, APP)
            .icmp(3, 4)
            .body(quoted[..28].to_vec())
            .build(),
    );
    // Too short to hold the quoted IP header and 8 bytes of TCP.
    s.drop(router().icmp(3, 4).body(quoted[..24].to_vec()).build());
    // Time exceeded quoting the tracked connection (traceroute) passes as well.
    s.pass(router().icmp(11, 0).body(quoted[..28].to_vec()).build());
    s.pass(c.data(Side::Server, 5));
    // An echo reply nobody asked for, and an echo request the policy denies.
    s.drop(FrameBuilder::new().ipv4(APP, IT).icmp(0, 0).build());
    s.drop(FrameBuilder::new().ipv4(IT, APP).icmp(8, 0).build());
    // A permitted ping and its reply.
    s.pass(FrameBuilder::new().ipv4(ADMIN, APP).icmp(8, 0).build());
    s.pass(
        FrameBuilder::new()
            .macs(MAC_B, MAC_A)
            .ipv4(APP, ADMIN)
            .icmp(0, 0)
            .build(),
    );
    s
}

fn set_ipv4_total_len(f: &mut [u8], len: u16) {
    f[16..18].copy_from_slice(&len.to_be_bytes());
    f[24] = 0;
    f[25] = 0;
    let mut sum = 0u32;
    for i in (14..34).step_by(2) {
        sum += u32::from(u16::from_be_bytes([f[i], f[i + 1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Fragment attacks: tiny first fragment and TCP header overwrite (RFC 1858/3128), overlap
/// (RFC 1858, RFC 5722), orphan non-first fragments; and a clean fragmented datagram.
fn fragments() -> Scenario {
    let mut s = Scenario::new(
        "fragments",
        &[
            ("tiny_fragment", 2),
            ("fragment_overlap", 2),
            ("fragment_no_head", 1),
        ],
    );
    let dns = |id: u16| FrameBuilder::new().ipv4(IT, DNS).udp(41010, 53).ip_id(id);
    // A clean datagram in two fragments: both pass (the tail follows the head's verdict).
    s.pass(dns(1).fragment(0, true).payload_len(64).build());
    s.pass(dns(1).fragment(72, false).build());
    // Tiny first fragment: a TCP first fragment carrying only 8 bytes of the 20-byte header.
    let mut tiny = FrameBuilder::new()
        .ipv4(IT, APP)
        .tcp(41011, 443, F::SYN)
        .ip_id(2)
        .fragment(0, true)
        .payload_len(100)
        .build();
    set_ipv4_total_len(&mut tiny, 28);
    tiny.truncate(14 + 28);
    s.drop(tiny);
    // A TCP fragment at offset 8, which would overwrite the flags of the header (RFC 3128).
    s.drop(
        FrameBuilder::new()
            .ipv4(IT, APP)
            .tcp(41011, 443, F::SYN)
            .ip_id(2)
            .fragment(8, false)
            .build(),
    );
    // Overlap: head [0, 72), then a piece at 64 that rewrites its last bytes; the datagram
    // is poisoned, so its legitimate tail is dropped too.
    s.pass(dns(3).fragment(0, true).payload_len(64).build());
    s.drop(dns(3).fragment(64, true).payload_len(16).build());
    s.drop(dns(3).fragment(72, false).build());
    // A non-first fragment whose head never came.
    s.drop(dns(4).fragment(72, false).build());
    s
}

/// VLAN-tagged connections (802.1Q and QinQ) are tracked like untagged ones; three tags are
/// refused.
fn vlan() -> Scenario {
    let mut s = Scenario::new("vlan", &[("vlan_too_deep", 1), ("tcp_no_flow", 1)]);
    let mut c = web(41020).map(|b| b.vlan(30));
    s.pass_all(c.handshake());
    s.pass(c.data(Side::Client, 50));
    s.pass(c.data(Side::Server, 500));
    s.pass_all(c.close(Side::Server));
    // The same ports on another VLAN are another flow: without a SYN, no flow.
    let mut other = web(41020).map(|b| b.vlan(31));
    s.drop(other.data(Side::Client, 10));
    let q = FrameBuilder::new()
        .qinq(100, 30)
        .ipv4(IT, DNS)
        .udp(41021, 53);
    s.pass(q.build());
    s.pass(
        FrameBuilder::new()
            .macs(MAC_B, MAC_A)
            .qinq(100, 30)
            .ipv4(DNS, IT)
            .udp(53, 41021)
            .build(),
    );
    s.drop(
        FrameBuilder::new()
            .qinq(100, 30)
            .vlan(7)
            .ipv4(IT, DNS)
            .udp(41022, 53)
            .build(),
    );
    s
}

/// IPv6 extension headers: a permitted chain is walked to the transport header (the policy
/// then decides: IPv6 is denied by default in the demo policy), a chain beyond the parser's
/// bound is refused for that reason, fragments of a denied datagram follow the head's verdict.
fn ipv6_ext() -> Scenario {
    let mut s = Scenario::new("ipv6_ext", &[("policy", 3), ("ipv6_ext_chain_too_long", 1)]);
    let (a, b) = (
        "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
        "2001:db8::2".parse::<Ipv6Addr>().unwrap(),
    );
    s.drop(
        FrameBuilder::new()
            .ipv6(a, b)
            .ext(Ipv6Ext::HopByHop)
            .ext(Ipv6Ext::DestinationOptions)
            .ext(Ipv6Ext::Routing)
            .ext(Ipv6Ext::Auth)
            .udp(41030, 53)
            .build(),
    );
    let mut long = FrameBuilder::new().ipv6(a, b).ext(Ipv6Ext::HopByHop);
    for _ in 0..9 {
        long = long.ext(Ipv6Ext::DestinationOptions);
    }
    s.drop(long.udp(41031, 53).build());
    s.drop(
        FrameBuilder::new()
            .ipv6(a, b)
            .udp(41032, 53)
            .fragment(0, true)
            .payload_len(64)
            .build(),
    );
    s.drop(
        FrameBuilder::new()
            .ipv6(a, b)
            .udp(41032, 53)
            .fragment(72, false)
            .build(),
    );
    s
}

fn scenarios() -> Vec<Scenario> {
    vec![
        tcp_rst(),
        tcp_early_data(),
        tcp_syn_after_fin(),
        tcp_simultaneous_open(),
        icmp_errors(),
        fragments(),
        vlan(),
        ipv6_ext(),
    ]
}

/// The committed capture of `s`, checked against (or, with `SEPTA_BLESS`, rewritten from) a
/// fresh build.
fn committed(s: &Scenario) -> PathBuf {
    let path = repo().join(format!("tests/data/state/{}.pcap", s.name));
    let dir = scratch(&format!("fresh-{}", s.name));
    let fresh = dir.join("fresh.pcap");
    testgen::write_pcap(&fresh, s.input()).unwrap();
    if std::env::var_os("SEPTA_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(&fresh, &path).unwrap();
    }
    let have = std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} missing (SEPTA_BLESS=1 creates it)", path.display()));
    assert!(
        have == std::fs::read(&fresh).unwrap(),
        "{} is stale: rerun with SEPTA_BLESS=1",
        path.display()
    );
    path
}

fn drops_of(summary: &serde_json::Value) -> BTreeMap<String, u64> {
    summary["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap().to_owned(),
                d["packets"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn expected_drops(s: &Scenario) -> BTreeMap<String, u64> {
    s.drops.iter().map(|&(r, n)| (r.to_owned(), n)).collect()
}

fn replay(input: &Path, out: &Path) -> serde_json::Value {
    let policy = repo().join("configs/policies/demo.yaml");
    let run = septa()
        .args(["replay", "--json", "--policy"])
        .arg(&policy)
        .arg("--pcap")
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn state_edge_cases_replay_exactly() {
    let mut failures = Vec::new();
    for s in scenarios() {
        let input = committed(&s);
        let out = scratch(&format!("out-{}", s.name)).join("out.pcap");
        let v = replay(&input, &out);
        let drops = drops_of(&v["summary"]);
        if drops != expected_drops(&s) {
            failures.push(format!("{}: drops {drops:?}", s.name));
        }
        let got = septa_dataplane::io::pcap::read_frames(&out).unwrap();
        let want = s.forwarded();
        if got != want {
            let idx: Vec<usize> = s
                .frames
                .iter()
                .enumerate()
                .filter(|(_, (f, _))| got.contains(f))
                .map(|(i, _)| i)
                .collect();
            failures.push(format!(
                "{}: forwarded frames {idx:?} of {}, want {:?}",
                s.name,
                s.frames.len(),
                s.frames
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, p))| *p)
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>()
            ));
        }
        assert_eq!(
            v["summary"]["packets_in"].as_u64(),
            Some(s.frames.len() as u64)
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[cfg(feature = "dpdk")]
#[test]
fn state_edge_cases_on_dpdk_match_replay() {
    let all = scenarios();
    let input: Vec<Vec<u8>> = all.iter().flat_map(Scenario::input).collect();
    let want: Vec<Vec<u8>> = all.iter().flat_map(Scenario::forwarded).collect();
    let mut drops = BTreeMap::new();
    for s in &all {
        for (r, n) in expected_drops(s) {
            *drops.entry(r).or_insert(0) += n;
        }
    }
    let dir = scratch("dpdk");
    let (inp, out0, out1) = (
        dir.join("in.pcap"),
        dir.join("out0.pcap"),
        dir.join("out1.pcap"),
    );
    testgen::write_pcap(&inp, &input).unwrap();
    std::fs::copy(
        repo().join("configs/policies/demo.yaml"),
        dir.join("demo.yaml"),
    )
    .unwrap();
    let prefix = format!("septa-state-{}", std::process::id());
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
policy = "demo.yaml"
flow_capacity = 4096
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
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = septa_dataplane::io::pcap::read_frames(&out1).unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the same frames as replay, in order");
    let got_drops: BTreeMap<String, u64> = json["drops"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(got_drops, drops);
    let ev = &json["events"];
    assert!(ev["flow_start"].as_u64().unwrap() > 0, "{ev}");
    assert_eq!(
        ev["flow_start"], ev["flow_end"],
        "every flow ends (flushed at stop)"
    );
    assert_eq!(ev["lost"], 0);
}
