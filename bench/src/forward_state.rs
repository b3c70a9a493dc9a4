//! Inputs of `septa-bench forward --mode stateful`: a generated zone policy of about 10K
//! compiled rules that allows the benchmark's flows, the established-flow captures (a warm-up
//! capture with the TCP handshakes and the first UDP queries, then a capture of data segments
//! and replies that stays valid when `net_pcap` replays it forever) and the new-flow capture.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::Context;
use septa_dataplane::testgen::{FrameBuilder, Side, TcpSession, write_pcap};

/// Client address of flow `f` (as in `testgen::mixed_frame`: every fourth flow is IPv6).
fn is_v6(f: u32) -> bool {
    f % 4 == 3
}

fn v4_client(f: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | (f & 0x00ff_ffff))
}

fn v6_client(f: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (f >> 16) as u16, f as u16)
}

const V4_SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const V6_SERVER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1);

/// A zone policy whose compiled table has at least `rules` rules: filler zones
/// (172.16.0.0/12, /24 each) joined by conduits of four ports each (a policy holds at most
/// 4096 conduits), placed before the conduits that
/// allow the benchmark's traffic (clients 10.0.0.0/8 and fd00::/64 to 192.168.0.1 and
/// fd00:0:0:1::1 on tcp/443 and udp/53; the ring seed 198.18.0.1 → 198.18.0.2 on udp/9).
/// Returns the YAML and the number of compiled rules.
pub fn policy(rules: usize) -> anyhow::Result<(String, usize)> {
    let zones = 200usize;
    let mut conduits = rules.saturating_sub(3) / PORTS_PER_CONDUIT + 1;
    loop {
        let text = policy_text(zones, conduits);
        let validated = septa_control::parse_policy(&text, septa_control::Format::Yaml)
            .map_err(|e| anyhow::anyhow!("generated policy is invalid: {e}"))?;
        let compiled = septa_control::compile(&validated)
            .map_err(|e| anyhow::anyhow!("generated policy does not compile: {e}"))?;
        let n = compiled.rules().len();
        if n >= rules || conduits > 4 * rules {
            return Ok((text, n));
        }
        conduits += (rules - n) / PORTS_PER_CONDUIT + 1;
    }
}

const PORTS_PER_CONDUIT: usize = 4;

fn policy_text(zones: usize, conduits: usize) -> String {
    let mut y = String::from(
        "apiVersion: septa.io/v1\nkind: Policy\nmetadata:\n  name: bench-10k\nspec:\n  defaults:\n    action: deny\n    mode: enforce\n  zones:\n",
    );
    for z in 0..zones {
        let _ = writeln!(
            y,
            "    - name: z{z}\n      subnets: [172.{}.{}.0/24]",
            16 + z / 256,
            z % 256
        );
    }
    y.push_str(
        "    - name: bench-clients\n      subnets: [10.0.0.0/8, \"fd00::/64\"]\n\
         \x20   - name: bench-servers\n      subnets: [192.168.0.1/32, \"fd00:0:0:1::1/128\"]\n\
         \x20   - name: ring-a\n      subnets: [198.18.0.1/32]\n\
         \x20   - name: ring-b\n      subnets: [198.18.0.2/32]\n  conduits:\n",
    );
    for c in 0..conduits {
        let (a, b) = (c % zones, (c / zones + 1 + c % zones) % zones);
        let proto = if c % 3 == 0 { "udp" } else { "tcp" };
        let _ = writeln!(
            y,
            "    - name: c{c}\n      from: [z{a}]\n      to: [z{b}]\n      services:\n        - proto: {proto}\n          ports: [{}, {}, {}, {}]",
            1 + c % 16_000,
            16_001 + c % 16_000,
            32_001 + c % 16_000,
            48_001 + c % 16_000
        );
    }
    y.push_str(
        "    - name: bench-tcp\n      from: [bench-clients]\n      to: [bench-servers]\n      services:\n        - proto: tcp\n          ports: [443]\n\
         \x20   - name: bench-udp\n      from: [bench-clients]\n      to: [bench-servers]\n      services:\n        - proto: udp\n          ports: [53]\n\
         \x20   - name: ring\n      from: [ring-a]\n      to: [ring-b]\n      services:\n        - proto: udp\n          ports: [9]\n",
    );
    y
}

/// Writes the established-flow captures for `flows` flows (half TCP to port 443, half UDP to
/// port 53, a quarter IPv6): `warm` holds each TCP handshake and each first UDP query (played
/// once); `steady` holds, per flow and in rounds, a client and a server segment (TCP data with
/// consistent numbers, UDP query and reply) until it has at least `packets` frames. Replayed
/// from the start, the TCP segments are retransmissions inside the window, so every frame of
/// `steady` is an allowed packet of an established flow, forever. Returns the frame counts.
pub fn write_established(
    warm: &Path,
    steady: &Path,
    flows: usize,
    packets: usize,
) -> anyhow::Result<(usize, usize)> {
    let flows = flows.max(1) as u32;
    let mut sessions: Vec<Option<TcpSession>> = Vec::new();
    let mut warm_frames = Vec::new();
    for f in 0..flows {
        let sport = 1024 + (f % 60_000) as u16;
        if f % 2 == 0 {
            let mut s = if is_v6(f) {
                TcpSession::v6(v6_client(f), sport, V6_SERVER, 443)
            } else {
                TcpSession::v4(v4_client(f), sport, V4_SERVER, 443)
            };
            warm_frames.extend(s.handshake());
            sessions.push(Some(s));
        } else {
            warm_frames.push(udp(f, sport, Side::Client));
            sessions.push(None);
        }
    }
    let mut steady_frames = Vec::new();
    while steady_frames.len() < packets.max(2) {
        for (f, s) in sessions.iter_mut().enumerate() {
            let f = f as u32;
            let sport = 1024 + (f % 60_000) as u16;
            match s {
                Some(s) => {
                    steady_frames.push(s.data(Side::Client, 8));
                    steady_frames.push(s.data(Side::Server, 8));
                }
                None => {
                    steady_frames.push(udp(f, sport, Side::Client));
                    steady_frames.push(udp(f, sport, Side::Server));
                }
            }
        }
    }
    let (w, s) = (warm_frames.len(), steady_frames.len());
    write_pcap(warm, warm_frames).context("write the warm-up capture")?;
    write_pcap(steady, steady_frames).context("write the established capture")?;
    Ok((w, s))
}

fn udp(f: u32, sport: u16, side: Side) -> Vec<u8> {
    let b = FrameBuilder::new();
    let b = match (is_v6(f), side) {
        (true, Side::Client) => b.ipv6(v6_client(f), V6_SERVER),
        (true, Side::Server) => b.ipv6(V6_SERVER, v6_client(f)),
        (false, Side::Client) => b.ipv4(v4_client(f), V4_SERVER),
        (false, Side::Server) => b.ipv4(V4_SERVER, v4_client(f)),
    };
    match side {
        Side::Client => b.udp(sport, 53),
        Side::Server => b.udp(53, sport),
    }
    .payload_len(8)
    .build()
}

/// Writes `packets` TCP SYNs, each opening a different connection (connections `first..`;
/// clients over 10.0.0.0/8 and fd00::/64, ports 1024..), to an Ethernet pcap. Returns the
/// frame count.
pub fn write_new_flows(path: &Path, first: usize, packets: usize) -> anyhow::Result<usize> {
    let frames = (first as u32..(first + packets) as u32).map(|i| {
        let (f, sport) = (i >> 6, 1024 + (i & 63) as u16);
        let b = FrameBuilder::new();
        let b = if is_v6(i) {
            b.ipv6(v6_client(f), V6_SERVER)
        } else {
            b.ipv4(v4_client(f), V4_SERVER)
        };
        b.tcp(sport, 443, septa_dataplane::parse::TcpFlags::SYN)
            .build()
    });
    write_pcap(path, frames).context("write the new-flow capture")?;
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use septa_classifier::TableCell;
    use septa_dataplane::events::EventSink;
    use septa_dataplane::io::memory::MemoryIo;
    use septa_dataplane::{Bridge, Decision, StateConfig, Stats, Worker, WorkerState};

    fn worker(
        table: septa_classifier::RuleTable,
        cfg: &StateConfig,
    ) -> (Worker, std::sync::Arc<TableCell>) {
        let cell = TableCell::new(table);
        let w = Worker::with_state(
            Bridge::new(2, &[(0, 1)]).unwrap(),
            Decision::Table(cell.reader()),
            WorkerState::new(cfg, EventSink::disabled()).unwrap(),
        );
        (w, cell)
    }

    fn table(yaml: &str) -> septa_classifier::RuleTable {
        let v = septa_control::parse_policy(yaml, septa_control::Format::Yaml).unwrap();
        let (rules, _) = septa_control::compile::compile_rules(&v).unwrap();
        septa_classifier::compile(&rules).unwrap()
    }

    /// The policy has the asked-for size and, with the warm-up played once, the established
    /// capture replayed three times is forwarded whole (no conntrack or policy drop): what the
    /// benchmark relies on when it reports only forwarded packets.
    #[test]
    fn established_capture_replays_without_drops_under_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let (warm, steady) = (dir.path().join("w.pcap"), dir.path().join("s.pcap"));
        let (w, s) = write_established(&warm, &steady, 64, 256).unwrap();
        assert_eq!(w, 32 * 3 + 32);
        assert!(s >= 256);
        let (yaml, rules) = policy(500).unwrap();
        assert!(rules >= 500, "{rules}");
        let (mut wk, _cell) = worker(table(&yaml), &StateConfig::new(1 << 12));
        let mut io = MemoryIo::new(2);
        let frames = |p: &Path| septa_dataplane::io::pcap::read_frames(p).unwrap();
        for f in frames(&warm) {
            io.push_rx(0, f);
        }
        for _ in 0..3 {
            for f in frames(&steady) {
                io.push_rx(0, f);
            }
        }
        while wk.poll(&mut io, &mut ()) > 0 {}
        let st = Stats::collect([&**wk.counters()]);
        assert_eq!(st.total_drops(), 0, "{st}");
        assert_eq!(st.tx_packets(), (w + 3 * s) as u64);
        assert_eq!(wk.state().flows().len(), 64);
    }

    /// Every SYN of the new-flow capture is a new, allowed flow; with a half-open cap below
    /// the capture's size, a second replay finds none of them (each is a new flow again).
    #[test]
    fn new_flow_capture_opens_a_flow_per_packet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.pcap");
        write_new_flows(&path, 0, 512).unwrap();
        let (yaml, _) = policy(100).unwrap();
        let mut cfg = StateConfig::new(1 << 12);
        cfg.flows.max_half_open = 128;
        let (mut wk, _cell) = worker(table(&yaml), &cfg);
        let mut io = MemoryIo::new(2);
        for _ in 0..2 {
            for f in septa_dataplane::io::pcap::read_frames(&path).unwrap() {
                io.push_rx(0, f);
            }
        }
        while wk.poll(&mut io, &mut ()) > 0 {}
        let st = Stats::collect([&**wk.counters()]);
        assert_eq!(st.total_drops(), 0, "{st}");
        assert_eq!(wk.state().flows().stats().inserted, 1024);
    }
}
