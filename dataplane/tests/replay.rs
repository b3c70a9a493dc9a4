//! Golden-style tests of the offline runtime: generate a capture, replay it through the worker,
//! check the report, the JSON shape and the output capture (sequence numbers make loss and
//! duplication exact).

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use pcap_file::pcap::PcapReader;
use septa_dataplane::testgen::{FrameBuilder, MAC_A, arp_request, sequence_number, write_pcap};
use septa_dataplane::{Decision, DropReason, PcapIoError, ReplayError, replay};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("septa-dp-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

/// 3 packets of a TCP flow, 2 of a UDP/IPv6 flow, 1 ARP, 1 truncated frame, 1 bad checksum.
fn sample() -> Vec<Vec<u8>> {
    let v6a: Ipv6Addr = "2001:db8::a".parse().unwrap();
    let v6b: Ipv6Addr = "2001:db8::b".parse().unwrap();
    let mut bad = FrameBuilder::new().ipv4(A, B).udp(9, 9).seq(7).build();
    bad[24] ^= 0xff;
    vec![
        FrameBuilder::new()
            .ipv4(A, B)
            .tcp(40000, 502, 0x02)
            .seq(0)
            .build(),
        FrameBuilder::new()
            .ipv6(v6a, v6b)
            .udp(5000, 53)
            .seq(1)
            .build(),
        FrameBuilder::new()
            .ipv4(A, B)
            .tcp(40000, 502, 0x10)
            .seq(2)
            .build(),
        arp_request(MAC_A, A, B),
        FrameBuilder::new()
            .ipv4(A, B)
            .tcp(40000, 502, 0x18)
            .seq(4)
            .payload_len(100)
            .build(),
        FrameBuilder::new()
            .ipv4(A, B)
            .tcp(40000, 502, 0x18)
            .seq(5)
            .build()[..20]
            .to_vec(),
        FrameBuilder::new()
            .ipv6(v6a, v6b)
            .udp(5000, 53)
            .seq(6)
            .build(),
        bad,
    ]
}

fn read_pcap(path: &std::path::Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

#[test]
fn allow_all_forwards_every_valid_frame_in_order() {
    let dir = TempDir::new("allow");
    let (input, output) = (dir.path("in.pcap"), dir.path("out.pcap"));
    let frames = sample();
    write_pcap(&input, &frames).unwrap();
    let report = replay(&input, Some(&output), Decision::AllowAll).unwrap();
    let s = &report.summary;
    assert_eq!(s.packets_in, 8);
    assert_eq!(
        s.bytes_in,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(s.packets_out, 6);
    assert_eq!(s.non_ip_forwarded, 1);
    assert_eq!(s.dropped, 2);
    let drops: Vec<_> = s.drops.iter().map(|d| (d.reason, d.packets)).collect();
    assert_eq!(
        drops,
        [(DropReason::Truncated, 1), (DropReason::Ipv4Checksum, 1)]
    );

    let out = read_pcap(&output);
    let seqs: Vec<_> = out.iter().map(|f| sequence_number(f)).collect();
    assert_eq!(seqs, [Some(0), Some(1), Some(2), None, Some(4), Some(6)]);
    assert_eq!(out[0], frames[0], "bytes unchanged");

    assert_eq!(report.flows.len(), 2);
    let tcp = &report.flows[0];
    assert_eq!(
        (tcp.sport, tcp.dport, tcp.proto, tcp.packets),
        (40000, 502, 6, 3)
    );
    assert_eq!((tcp.verdict, tcp.drop_reason), ("forward", None));
    assert_eq!(report.flows[1].family, "ipv6");
    assert_eq!(report.flows[1].packets, 2);
}

#[test]
fn deny_all_drops_ip_and_reports_policy_per_flow() {
    let dir = TempDir::new("deny");
    let (input, output) = (dir.path("in.pcap"), dir.path("out.pcap"));
    write_pcap(&input, sample()).unwrap();
    let report = replay(&input, Some(&output), Decision::DenyAll).unwrap();
    assert_eq!(report.summary.packets_out, 1, "only ARP passes");
    assert_eq!(read_pcap(&output), vec![arp_request(MAC_A, A, B)]);
    assert!(
        report
            .flows
            .iter()
            .all(|f| f.drop_reason == Some(DropReason::Policy))
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["summary"]["drops"][0]["reason"], "truncated");
    assert_eq!(json["flows"][0]["drop_reason"], "policy");
    assert_eq!(json["flows"][0]["src"], "10.0.0.1");
    assert_eq!(json["flows"][0]["verdict"], "drop");
    let text = report.to_string();
    assert!(text.contains("drop(policy)"), "{text}");
    assert!(text.contains("10.0.0.1:40000 -> 10.0.1.2:502"), "{text}");
}

#[test]
fn replay_without_output_and_many_bursts() {
    let dir = TempDir::new("many");
    let input = dir.path("in.pcap");
    let frames: Vec<_> = (0..1000)
        .map(|i| {
            FrameBuilder::new()
                .ipv4(A, B)
                .udp(1000 + (i % 10) as u16, 53)
                .seq(i)
                .build()
        })
        .collect();
    write_pcap(&input, &frames).unwrap();
    let report = replay(&input, None, Decision::AllowAll).unwrap();
    assert_eq!(
        (report.summary.packets_in, report.summary.packets_out),
        (1000, 1000)
    );
    assert_eq!(report.flows.len(), 10);
    assert!(report.flows.iter().all(|f| f.packets == 100));
}

#[test]
fn pcapng_input_is_read() {
    use pcap_file::DataLink;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    let dir = TempDir::new("ng");
    let input = dir.path("in.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&input).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
        .unwrap();
    for f in sample() {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: std::time::Duration::from_secs(1),
            original_len: f.len() as u32,
            data: f.into(),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
    }
    drop(w);
    let report = replay(&input, None, Decision::AllowAll).unwrap();
    assert_eq!(report.summary.packets_in, 8);
    assert_eq!(report.summary.packets_out, 6);
}

#[test]
fn clear_errors_for_bad_inputs() {
    let dir = TempDir::new("err");
    let missing = dir.path("missing.pcap");
    assert!(matches!(
        replay(&missing, None, Decision::AllowAll),
        Err(ReplayError::Pcap(PcapIoError::Open(..)))
    ));
    let text = dir.path("text.pcap");
    std::fs::File::create(&text)
        .unwrap()
        .write_all(b"hello, not a capture")
        .unwrap();
    assert!(matches!(
        replay(&text, None, Decision::AllowAll),
        Err(ReplayError::Pcap(PcapIoError::NotPcap(_)))
    ));
    // A raw-IP capture (link type 101).
    let raw = dir.path("raw.pcap");
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::RAW,
        ..Default::default()
    };
    drop(
        pcap_file::pcap::PcapWriter::with_header(std::fs::File::create(&raw).unwrap(), header)
            .unwrap(),
    );
    let err = replay(&raw, None, Decision::AllowAll).unwrap_err();
    assert!(
        matches!(err, ReplayError::Pcap(PcapIoError::LinkType { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("only Ethernet"), "{err}");
}
