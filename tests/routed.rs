//! Routed mode through the real `septa` binary on `net_pcap` vdevs (`--features dpdk`; each
//! run is a subprocess with its own EAL, `--no-huge` and its own `--file-prefix`, so neither
//! hugepages nor root are needed).
//!
//! Host A (10.1.0.10) sits behind port 0, host B (10.2.0.20) behind port 1; the gateway owns
//! 10.1.0.1 and 10.2.0.1 and enforces a policy that allows A → B TCP/80 only. Port 0 receives
//! A's frames: an ARP request and pings for the gateway (enough of them to fill the first
//! receive bursts, so that B's ARP request on port 1 is learnt before any transit frame), then
//! a datagram to an address nobody answers, an allowed TCP SYN, two denied flows and a TTL-1
//! datagram. The test checks, frame by frame, the ARP replies, the echo replies, the forwarded
//! SYN with rewritten MACs, TTL and checksum, the ARP request for the silent address, the time
//! exceeded error, and the drop counters (`policy`, `ttl_exceeded`, `neighbour_unresolved`).
//! Without the `dpdk` feature the test says it is skipped.

#[cfg(not(feature = "dpdk"))]
#[test]
fn routed_golden_needs_dpdk() {
    eprintln!(
        "routed golden test skipped: this build has no DPDK support (cargo test --features dpdk \
         --test routed, after `sudo bash dpdk-build/setup.sh`)"
    );
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::net::Ipv4Addr;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    use septa_dataplane::testgen::{self, FrameBuilder, MAC_A, MAC_B, arp_request};

    const GW0: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x10];
    const GW1: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x11];
    const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
    const B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
    const SILENT: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 99);
    const GW0_4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const GW1_4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
    /// Pings of the gateway ahead of the transit frames: more than one receive burst.
    const PINGS: u16 = 40;

    const POLICY: &str = r#"apiVersion: septa.io/v1
kind: Policy
metadata:
  name: routed-golden
spec:
  defaults:
    action: deny
    mode: enforce
  zones:
    - name: a
      subnets: [10.1.0.0/24]
    - name: b
      subnets: [10.2.0.0/24]
  conduits:
    - name: a-to-b-web
      from: [a]
      to: [b]
      services:
        - proto: tcp
          ports: [80]
"#;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("septa-routed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config(dir: &Path, prefix: &str, lcores: &str, extra: &str) -> PathBuf {
        let text = format!(
            r#"[dpdk]
eal_args = ["-l", "{lcores}", "--no-huge", "-m", "256", "--no-pci", "--no-telemetry", "--file-prefix", "{prefix}",
            "--vdev=net_pcap0,rx_pcap={in0},tx_pcap={out0}", "--vdev=net_pcap1,rx_pcap={in1},tx_pcap={out1}"]
mempool_size = 4095
mempool_cache = 64
rx_descriptors = 256
tx_descriptors = 256

[[ports]]
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

[dataplane]
policy = "policy.yaml"
{extra}
"#,
            in0 = dir.join("in0.pcap").display(),
            in1 = dir.join("in1.pcap").display(),
            out0 = dir.join("out0.pcap").display(),
            out1 = dir.join("out1.pcap").display(),
        );
        std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
        let path = dir.join("gw.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn septa_run(config: &Path, prefix: &str) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_septa"))
            .args(["run", "--json", "--until-idle", "400", "--config"])
            .arg(config)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
        out
    }

    fn text(o: &Output) -> String {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    fn to_gw(frame: Vec<u8>) -> Vec<u8> {
        let mut f = frame;
        f[..6].copy_from_slice(&GW0);
        f
    }

    /// One's-complement sum of `bytes` (a valid checksummed header sums to 0xffff).
    fn ones_sum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// An untagged IPv4 frame without options: (src, dst, ttl, protocol, payload), with the
    /// header checksum checked.
    fn ipv4(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, u8, &[u8])> {
        if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[14] != 0x45 {
            return None;
        }
        let ip = &frame[14..];
        assert_eq!(
            ones_sum(&ip[..20]),
            0xffff,
            "IPv4 header checksum of {frame:02x?}"
        );
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
        Some((addr(12), addr(16), ip[8], ip[9], &ip[20..total]))
    }

    /// An ARP frame: (operation, sender MAC, sender IP, target MAC, target IP).
    type Arp = (u16, [u8; 6], Ipv4Addr, [u8; 6], Ipv4Addr);

    fn arp(frame: &[u8]) -> Option<Arp> {
        if frame.len() < 42 || frame[12..14] != [0x08, 0x06] {
            return None;
        }
        let a = &frame[14..];
        let mac = |at: usize| <[u8; 6]>::try_from(&a[at..at + 6]).unwrap();
        let ip = |at: usize| Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]);
        Some((
            u16::from_be_bytes([a[6], a[7]]),
            mac(8),
            ip(14),
            mac(18),
            ip(24),
        ))
    }

    const ARP_REQUEST: u16 = 1;
    const ARP_REPLY: u16 = 2;
    const ECHO_REPLY: u8 = 0;
    const TIME_EXCEEDED: u8 = 11;

    /// The ICMP type of an IPv4 ICMP frame, its checksum checked.
    fn icmp_type(frame: &[u8]) -> Option<u8> {
        let (_, _, _, proto, payload) = ipv4(frame)?;
        (proto == 1).then(|| {
            assert_eq!(ones_sum(payload), 0xffff, "ICMP checksum");
            payload[0]
        })
    }

    #[test]
    fn routed_gateway_answers_forwards_rewritten_and_enforces_the_policy() {
        let dir = scratch("golden");
        let prefix = format!("septa-routed-golden-{}", std::process::id());
        let mut in0 = vec![arp_request(MAC_A, A, GW0_4)];
        for id in 0..PINGS {
            in0.push(
                FrameBuilder::new()
                    .macs(MAC_A, GW0)
                    .ipv4(A, GW0_4)
                    .icmp(8, 0)
                    .seq(u64::from(id))
                    .payload_len(56)
                    .build(),
            );
        }
        let syn = to_gw(
            FrameBuilder::new()
                .ipv4(A, B)
                .tcp(40000, 80, 0x02)
                .ttl(64)
                .build(),
        );
        in0.extend([
            to_gw(FrameBuilder::new().ipv4(A, SILENT).udp(5000, 80).build()),
            syn.clone(),
            to_gw(FrameBuilder::new().ipv4(A, B).tcp(40001, 22, 0x02).build()),
            to_gw(FrameBuilder::new().ipv4(A, B).udp(5000, 9999).build()),
            to_gw(
                FrameBuilder::new()
                    .ipv4(A, B)
                    .tcp(40002, 80, 0x02)
                    .ttl(1)
                    .build(),
            ),
        ]);
        testgen::write_pcap(&dir.join("in0.pcap"), in0).unwrap();
        testgen::write_pcap(&dir.join("in1.pcap"), vec![arp_request(MAC_B, B, GW1_4)]).unwrap();
        let cfg = config(&dir, &prefix, "0", "");
        let out = septa_run(&cfg, &prefix);
        assert!(out.status.success(), "septa run failed:\n{}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON counters");
        let out0 = septa_dataplane::io::pcap::read_frames(&dir.join("out0.pcap")).unwrap();
        let out1 = septa_dataplane::io::pcap::read_frames(&dir.join("out1.pcap")).unwrap();

        // Port 0: the ARP reply, one echo reply per ping, one time exceeded.
        let arp_replies: Vec<_> = out0.iter().filter_map(|f| arp(f)).collect();
        assert_eq!(
            arp_replies,
            [(ARP_REPLY, GW0, GW0_4, MAC_A, A)],
            "{}",
            text(&out)
        );
        let echo: Vec<_> = out0
            .iter()
            .filter(|f| icmp_type(f) == Some(ECHO_REPLY))
            .collect();
        assert_eq!(
            echo.len(),
            usize::from(PINGS),
            "echo replies\n{}",
            text(&out)
        );
        for f in &echo {
            assert_eq!(
                (&f[..6], &f[6..12]),
                (&MAC_A[..], &GW0[..]),
                "echo reply MACs"
            );
            let (src, dst, ..) = ipv4(f).unwrap();
            assert_eq!((src, dst), (GW0_4, A));
        }
        let exceeded: Vec<_> = out0
            .iter()
            .filter(|f| icmp_type(f) == Some(TIME_EXCEEDED))
            .collect();
        assert_eq!(exceeded.len(), 1, "time exceeded\n{}", text(&out));
        let (src, dst, ..) = ipv4(exceeded[0]).unwrap();
        assert_eq!((src, dst), (GW0_4, A));
        assert_eq!(&exceeded[0][..6], &MAC_A[..], "back to the sender's MAC");
        assert_eq!(
            out0.len(),
            1 + usize::from(PINGS) + 1,
            "nothing else on port 0"
        );

        // Port 1: the ARP reply to B, the ARP request for the silent address, the SYN.
        let arps: Vec<_> = out1.iter().filter_map(|f| arp(f)).collect();
        assert!(
            arps.contains(&(ARP_REPLY, GW1, GW1_4, MAC_B, B)),
            "ARP reply to B: {arps:?}"
        );
        assert!(
            arps.iter()
                .any(|a| a.0 == ARP_REQUEST && (a.1, a.2, a.4) == (GW1, GW1_4, SILENT)),
            "ARP request for {SILENT}: {arps:?}"
        );
        assert_eq!(arps.len(), 2, "{arps:?}");
        let forwarded: Vec<_> = out1.iter().filter(|f| arp(f).is_none()).collect();
        assert_eq!(
            forwarded.len(),
            1,
            "only the allowed SYN is routed\n{}",
            text(&out)
        );
        let fwd = forwarded[0];
        assert_eq!(&fwd[..6], &MAC_B[..], "next hop's MAC");
        assert_eq!(&fwd[6..12], &GW1[..], "egress port's MAC");
        let (src, dst, ttl, proto, _) = ipv4(fwd).unwrap();
        assert_eq!((src, dst, proto), (A, B, 6));
        assert_eq!(ttl, 63, "TTL decremented");
        assert_eq!(&fwd[34..], &syn[34..], "the transport layer is untouched");

        let drops = &json["drops"];
        assert_eq!(drops["policy"], 2, "{json:#}");
        assert_eq!(drops["ttl_exceeded"], 1, "{json:#}");
        assert_eq!(drops["neighbour_unresolved"], 1, "{json:#}");
        assert_eq!(json["dropped"], 4, "{json:#}");
        // The router's own counters (what /metrics and /api/v1/health publish per worker),
        // printed when the worker stops: every ping answered, the two ARP requests too.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let router = stderr
            .lines()
            .find(|l| l.starts_with("septa: router: "))
            .unwrap_or_else(|| panic!("no router line in\n{stderr}"));
        assert!(
            router.contains(&format!(
                "({PINGS} echo replies, 2 ARP replies, 0 neighbour"
            )),
            "{router}"
        );
        assert!(
            router.contains(" 1 time exceeded sent (0 suppressed)"),
            "{router}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn routed_pairs_refuse_more_than_one_worker() {
        let dir = scratch("workers");
        testgen::write_pcap(&dir.join("in0.pcap"), Vec::<Vec<u8>>::new()).unwrap();
        testgen::write_pcap(&dir.join("in1.pcap"), Vec::<Vec<u8>>::new()).unwrap();
        // Two lcores named in the configuration: rejected when it is read, with the key.
        let prefix = format!("septa-routed-workers-{}", std::process::id());
        let cfg = config(&dir, &prefix, "0", "worker_lcores = [0, 1]");
        let out = septa_run(&cfg, &prefix);
        let msg = text(&out);
        assert!(!out.status.success(), "two routed workers started:\n{msg}");
        assert!(
            msg.contains("dataplane.worker_lcores") && msg.contains("one worker"),
            "unclear error:\n{msg}"
        );
        // Two EAL worker lcores (both on CPU 0) and no worker_lcores: rejected by `septa run`.
        let cfg = config(&dir, &prefix, "0", "");
        let text_cfg = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(r#""-l", "0""#, r#""--lcores", "0@0,1@0,2@0""#);
        std::fs::write(&cfg, text_cfg).unwrap();
        let out = septa_run(&cfg, &prefix);
        let msg = text(&out);
        assert!(!out.status.success(), "two routed workers started:\n{msg}");
        assert!(
            msg.contains("routed pairs") && msg.contains("one worker") && msg.contains("[1, 2]"),
            "unclear error:\n{msg}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
