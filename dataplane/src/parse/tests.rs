//! Byte-vector tests for [`parse`]: each frozen vector was produced by [`crate::testgen`] and
//! checked with `tcpdump -vv` (headers and checksums decode as intended). "Construct" asserts
//! the builder still emits the vector, "deconstruct" asserts what the parser reads from it.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use septa_classifier::{Family, FlowKey};

use super::*;
use crate::testgen::{FrameBuilder, Ipv6Ext, MAC_A, arp_request};

pub(crate) fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const A4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

const V4_TCP: &str = "02000000000b02000000000a08004500003400010000400665c10a0000010a0001029c4001bb00000001000000005002ffff593d0000534550540000000000000001";
const V4_UDP_VLAN: &str = "02000000000b02000000000a8100006408004500002800020000401165c10a0000010a00010214e900350014320a534550540000000000000002";
const V4_ICMP_QINQ: &str = "02000000000b02000000000a88a800c88100012c08004500002800030000400165d00a0000010a0001020800546300000000534550540000000000000003";
const V6_UDP: &str = "02000000000b02000000000a86dd600000000014114020010db800000000000000000000000120010db800000000000000000000000203e807d00014f4fb534550540000000000000004";
const V6_ICMP: &str = "02000000000b02000000000a86dd6000000000143a4020010db800000000000000000000000120010db80000000000000000000000028000809d00000000534550540000000000000005";
const V6_HBH_TCP: &str = "02000000000b02000000000a86dd600000000028004020010db800000000000000000000000120010db800000000000000000000000206000104000000000001000200000006000000005010ffffb0ab0000534550540000000000000006";
const V6_ROUTING_UDP: &str = "02000000000b02000000000a86dd60000000001c2b4020010db800000000000000000000000120010db80000000000000000000000021100fd000000000000010002001400ae534550540000000000000007";
const V6_FRAG_FIRST_UDP: &str = "02000000000b02000000000a86dd60000000001c2c4020010db800000000000000000000000120010db8000000000000000000000002110000015e97000100010002001400ad534550540000000000000008";
const V6_DSTOPT_UDP: &str = "02000000000b02000000000a86dd60000000001c3c4020010db800000000000000000000000120010db8000000000000000000000002110001040000000000010002001400ac534550540000000000000009";
const V6_AH_TCP: &str = "02000000000b02000000000a86dd600000000038334020010db800000000000000000000000120010db8000000000000000000000002060400000000010000000001000000000000000000000000000100020000000a000000005018ffffb09b000053455054000000000000000a";
const ARP: &str =
    "ffffffffffff02000000000a0806000108000604000102000000000a0a0000010000000000000a000102";
const V4_FRAG_NONFIRST: &str =
    "02000000000b02000000000a080045000020000b00b9401165070a0000010a00010253455054000000000000000b";

fn key4(proto: u8, sport: u16, dport: u16, vlan: u16) -> FlowKey {
    FlowKey {
        vlan,
        ..FlowKey::v4(A4, B4, proto, sport, dport)
    }
}

fn key6(proto: u8, sport: u16, dport: u16) -> FlowKey {
    FlowKey::v6(A6, B6, proto, sport, dport)
}

/// (name, frozen vector, builder that must produce it, expected key, l4 offset).
type Vector = (
    &'static str,
    &'static str,
    Vec<u8>,
    Option<FlowKey>,
    Option<usize>,
);

fn vectors() -> Vec<Vector> {
    vec![
        (
            "v4_tcp",
            V4_TCP,
            FrameBuilder::new()
                .ipv4(A4, B4)
                .tcp(40000, 443, 0x02)
                .seq(1)
                .build(),
            Some(key4(6, 40000, 443, 0)),
            Some(34),
        ),
        (
            "v4_udp_vlan",
            V4_UDP_VLAN,
            FrameBuilder::new()
                .vlan(100)
                .ipv4(A4, B4)
                .udp(5353, 53)
                .seq(2)
                .build(),
            Some(key4(17, 5353, 53, 100)),
            Some(38),
        ),
        (
            "v4_icmp_qinq",
            V4_ICMP_QINQ,
            FrameBuilder::new()
                .qinq(200, 300)
                .ipv4(A4, B4)
                .icmp(8, 0)
                .seq(3)
                .build(),
            Some(key4(1, 8, 0, 200)),
            Some(42),
        ),
        (
            "v6_udp",
            V6_UDP,
            FrameBuilder::new()
                .ipv6(A6, B6)
                .udp(1000, 2000)
                .seq(4)
                .build(),
            Some(key6(17, 1000, 2000)),
            Some(54),
        ),
        (
            "v6_icmp",
            V6_ICMP,
            FrameBuilder::new().ipv6(A6, B6).icmp(128, 0).seq(5).build(),
            Some(key6(58, 128, 0)),
            Some(54),
        ),
        (
            "v6_hbh_tcp",
            V6_HBH_TCP,
            FrameBuilder::new()
                .ipv6(A6, B6)
                .ext(Ipv6Ext::HopByHop)
                .tcp(1, 2, 0x10)
                .seq(6)
                .build(),
            Some(key6(6, 1, 2)),
            Some(62),
        ),
        (
            "v6_routing_udp",
            V6_ROUTING_UDP,
            FrameBuilder::new()
                .ipv6(A6, B6)
                .ext(Ipv6Ext::Routing)
                .udp(1, 2)
                .seq(7)
                .build(),
            Some(key6(17, 1, 2)),
            Some(62),
        ),
        (
            "v6_frag_first_udp",
            V6_FRAG_FIRST_UDP,
            FrameBuilder::new()
                .ipv6(A6, B6)
                .udp(1, 2)
                .fragment(0, true)
                .seq(8)
                .build(),
            Some(key6(17, 1, 2)),
            Some(62),
        ),
        (
            "v6_dstopt_udp",
            V6_DSTOPT_UDP,
            FrameBuilder::new()
                .ipv6(A6, B6)
                .ext(Ipv6Ext::DestinationOptions)
                .udp(1, 2)
                .seq(9)
                .build(),
            Some(key6(17, 1, 2)),
            Some(62),
        ),
        (
            "v6_ah_tcp",
            V6_AH_TCP,
            FrameBuilder::new()
                .ipv6(A6, B6)
                .ext(Ipv6Ext::Auth)
                .tcp(1, 2, 0x18)
                .seq(10)
                .build(),
            Some(key6(6, 1, 2)),
            Some(78),
        ),
        ("arp", ARP, arp_request(MAC_A, A4, B4), None, None),
        (
            "v4_frag_nonfirst",
            V4_FRAG_NONFIRST,
            FrameBuilder::new()
                .ipv4(A4, B4)
                .udp(1, 2)
                .fragment(1480, false)
                .seq(11)
                .build(),
            Some(key4(17, 0, 0, 0)),
            None,
        ),
    ]
}

#[test]
fn construct_matches_frozen_vectors() {
    for (name, frozen, built, _, _) in vectors() {
        assert_eq!(hex(frozen), built, "{name}: builder output changed");
    }
}

#[test]
fn deconstruct_frozen_vectors() {
    for (name, frozen, _, key, l4) in vectors() {
        let frame = hex(frozen);
        let p = parse(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.flow_key().copied(), key, "{name}");
        assert_eq!(p.l4_offset, l4, "{name}");
        if p.is_ip() {
            assert_eq!(p.l3_end, frame.len(), "{name}: no padding in vectors");
        }
    }
}

#[test]
fn vlan_and_qinq_ids() {
    let p = parse(&hex(V4_UDP_VLAN)).unwrap();
    assert_eq!((p.vlans.count, p.vlans.ids), (1, [100, 0]));
    assert_eq!((p.l3_offset, p.ethertype), (18, 0x0800));
    let p = parse(&hex(V4_ICMP_QINQ)).unwrap();
    assert_eq!((p.vlans.count, p.vlans.ids), (2, [200, 300]));
    assert_eq!(p.l3_offset, 22);
    assert_eq!(p.key.vlan, 200, "the flow key holds the outer id");
}

#[test]
fn three_tags_are_too_deep() {
    let f = FrameBuilder::new()
        .qinq(1, 2)
        .vlan(3)
        .ipv4(A4, B4)
        .udp(1, 2)
        .build();
    assert_eq!(parse(&f), Err(DropReason::VlanTooDeep));
}

#[test]
fn tcp_flags_and_payload_offset() {
    let p = parse(&hex(V4_TCP)).unwrap();
    assert_eq!(p.tcp_flags, TcpFlags(TcpFlags::SYN));
    assert_eq!(p.payload_offset, Some(54));
    assert_eq!(p.fragment, Fragment::None);
    let p = parse(&hex(V6_AH_TCP)).unwrap();
    assert!(p.tcp_flags.has(TcpFlags::ACK | TcpFlags::PSH));
    let all = FrameBuilder::new().ipv4(A4, B4).tcp(1, 2, 0xff).build();
    assert_eq!(parse(&all).unwrap().tcp_flags, TcpFlags(0xff));
}

#[test]
fn arp_and_other_ethertypes_are_not_errors() {
    let p = parse(&hex(ARP)).unwrap();
    assert_eq!(p.l3, L3::Arp);
    assert!(p.flow_key().is_none());
    let lldp = FrameBuilder::new().ethertype(0x88cc).build();
    assert_eq!(parse(&lldp).unwrap().l3, L3::Other);
    // ARP for another protocol than IPv4.
    let mut arp = hex(ARP);
    arp[16..18].copy_from_slice(&0x86ddu16.to_be_bytes());
    assert_eq!(parse(&arp), Err(DropReason::MalformedArp));
    // Bogus address lengths are malformed, not truncated.
    let mut arp = hex(ARP);
    arp[18] = 0xff;
    assert_eq!(parse(&arp), Err(DropReason::MalformedArp));
}

#[test]
fn fragments() {
    let p = parse(&hex(V4_FRAG_NONFIRST)).unwrap();
    assert_eq!(p.fragment, Fragment::NonFirst);
    assert_eq!((p.key.sport, p.key.dport), (0, 0));
    let first = FrameBuilder::new()
        .ipv4(A4, B4)
        .udp(7, 8)
        .fragment(0, true)
        .build();
    let p = parse(&first).unwrap();
    assert_eq!(
        (p.fragment, p.key.sport, p.key.dport),
        (Fragment::First, 7, 8)
    );
    let p = parse(&hex(V6_FRAG_FIRST_UDP)).unwrap();
    assert_eq!(p.fragment, Fragment::First);
    let v6_later = FrameBuilder::new()
        .ipv6(A6, B6)
        .tcp(1, 2, 0)
        .fragment(1448, false)
        .build();
    let p = parse(&v6_later).unwrap();
    assert_eq!(
        (p.fragment, p.key.proto, p.key.sport),
        (Fragment::NonFirst, 6, 0)
    );
    assert_eq!(p.l4_offset, None);
}

#[test]
fn tiny_fragments_are_dropped() {
    // RFC 1858: TCP fragment at offset 8 overlaps the first fragment's header.
    let overlap = FrameBuilder::new()
        .ipv4(A4, B4)
        .tcp(1, 2, 0)
        .fragment(8, false)
        .build();
    assert_eq!(parse(&overlap), Err(DropReason::TinyFragment));
    // A first fragment too short for the TCP header.
    let mut f = FrameBuilder::new()
        .ipv4(A4, B4)
        .tcp(1, 2, 0)
        .fragment(0, true)
        .build();
    shrink_ipv4(&mut f, 14 + 20 + 10);
    assert_eq!(parse(&f), Err(DropReason::TinyFragment));
    // Same size, not a fragment: the TCP header is malformed.
    let mut f = FrameBuilder::new().ipv4(A4, B4).tcp(1, 2, 0).build();
    shrink_ipv4(&mut f, 14 + 20 + 10);
    assert_eq!(parse(&f), Err(DropReason::MalformedL4));
    // RFC 7112: an IPv6 first fragment must hold the whole chain and the upper-layer header.
    let mut f = FrameBuilder::new()
        .ipv6(A6, B6)
        .tcp(1, 2, 0)
        .fragment(0, true)
        .build();
    shrink_ipv6(&mut f, 14 + 40 + 8 + 12);
    assert_eq!(parse(&f), Err(DropReason::TinyFragment));
}

/// Cut an IPv4 frame to `len` bytes and fix the total length and checksum.
fn shrink_ipv4(f: &mut Vec<u8>, len: usize) {
    f.truncate(len);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_total_len((len - 14) as u16);
    ip.fill_checksum();
}

fn shrink_ipv6(f: &mut Vec<u8>, len: usize) {
    f.truncate(len);
    Ipv6Packet::new_unchecked(&mut f[14..]).set_payload_len((len - 14 - 40) as u16);
}

#[test]
fn ipv4_header_checks() {
    let good = hex(V4_TCP);
    let mut bad = good.clone();
    bad[14] = 0x44; // IHL 4
    assert_eq!(parse(&bad), Err(DropReason::MalformedIpv4));
    let mut bad = good.clone();
    bad[14] = 0x65; // version 6 under ethertype IPv4
    assert_eq!(parse(&bad), Err(DropReason::MalformedIpv4));
    let mut bad = good.clone();
    bad[16..18].copy_from_slice(&19u16.to_be_bytes()); // total length < header length
    assert_eq!(parse(&bad), Err(DropReason::MalformedIpv4));
    let mut bad = good.clone();
    bad[16..18].copy_from_slice(&1500u16.to_be_bytes()); // longer than the frame
    assert_eq!(parse(&bad), Err(DropReason::Truncated));
    let mut bad = good.clone();
    bad[24] ^= 0xff; // checksum
    assert_eq!(parse(&bad), Err(DropReason::Ipv4Checksum));
    let multicast_src = FrameBuilder::new()
        .ipv4(Ipv4Addr::new(224, 0, 0, 1), B4)
        .udp(1, 2)
        .build();
    assert_eq!(parse(&multicast_src), Err(DropReason::MalformedIpv4));
    // Ethernet padding after the IP packet is ignored.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 10]);
    let p = parse(&padded).unwrap();
    assert_eq!(p.l3_end, good.len());
}

#[test]
fn ipv4_options_are_skipped() {
    let plain = FrameBuilder::new().ipv4(A4, B4).udp(9, 10).build();
    // Insert 4 bytes of options (NOP x3, EOL) and fix the header.
    let mut f = plain[..34].to_vec();
    f.extend_from_slice(&[1, 1, 1, 0]);
    f.extend_from_slice(&plain[34..]);
    let total = (f.len() - 14) as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_header_len(24);
    ip.set_total_len(total);
    ip.fill_checksum();
    let p = parse(&f).unwrap();
    assert_eq!((p.key.sport, p.key.dport, p.l4_offset), (9, 10, Some(38)));
}

#[test]
fn ipv6_header_checks() {
    let mut bad = hex(V6_UDP);
    bad[14] = 0x40;
    assert_eq!(parse(&bad), Err(DropReason::MalformedIpv6));
    let mut bad = hex(V6_UDP);
    bad[18..20].copy_from_slice(&100u16.to_be_bytes()); // payload length beyond the frame
    assert_eq!(parse(&bad), Err(DropReason::Truncated));
    let mcast: Ipv6Addr = "ff02::1".parse().unwrap();
    let f = FrameBuilder::new().ipv6(mcast, B6).udp(1, 2).build();
    assert_eq!(parse(&f), Err(DropReason::MalformedIpv6));
}

#[test]
fn ipv6_extension_chain_rules() {
    // Hop-by-hop anywhere but first.
    let f = FrameBuilder::new()
        .ipv6(A6, B6)
        .ext(Ipv6Ext::DestinationOptions)
        .ext(Ipv6Ext::HopByHop)
        .udp(1, 2)
        .build();
    assert_eq!(parse(&f), Err(DropReason::MalformedIpv6));
    // Two fragment headers.
    let f = FrameBuilder::new()
        .ipv6(A6, B6)
        .ext(Ipv6Ext::Fragment {
            offset: 0,
            more: true,
        })
        .ext(Ipv6Ext::Fragment {
            offset: 0,
            more: true,
        })
        .udp(1, 2)
        .build();
    assert_eq!(parse(&f), Err(DropReason::MalformedIpv6));
    // All kinds in RFC 8200 order.
    let f = FrameBuilder::new()
        .ipv6(A6, B6)
        .ext(Ipv6Ext::HopByHop)
        .ext(Ipv6Ext::DestinationOptions)
        .ext(Ipv6Ext::Routing)
        .ext(Ipv6Ext::Auth)
        .ext(Ipv6Ext::DestinationOptions)
        .udp(3, 4)
        .build();
    let p = parse(&f).unwrap();
    assert_eq!((p.key.proto, p.key.sport, p.key.dport), (17, 3, 4));
    assert_eq!(p.l4_offset, Some(14 + 40 + 8 + 8 + 8 + 24 + 8));
    // An extension header that overruns the declared payload.
    let mut f = FrameBuilder::new()
        .ipv6(A6, B6)
        .ext(Ipv6Ext::Routing)
        .udp(1, 2)
        .build();
    f[14 + 40 + 1] = 9; // routing header length: 80 bytes
    assert_eq!(parse(&f), Err(DropReason::MalformedIpv6));
    // No next header: no ports, no error.
    let f = FrameBuilder::new().ipv6(A6, B6).ip_proto(59).build();
    let p = parse(&f).unwrap();
    assert_eq!((p.key.proto, p.l4_offset), (59, None));
}

#[test]
fn ipv6_extension_chain_is_bounded() {
    let mut b = FrameBuilder::new().ipv6(A6, B6);
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        b = b.ext(Ipv6Ext::DestinationOptions);
    }
    assert!(parse(&b.clone().udp(1, 2).build()).is_ok());
    let f = b.ext(Ipv6Ext::DestinationOptions).udp(1, 2).build();
    assert_eq!(parse(&f), Err(DropReason::Ipv6ExtChainTooLong));
}

#[test]
fn malformed_l4() {
    // UDP length field larger than the IP payload.
    let mut f = hex(V6_UDP);
    f[14 + 40 + 4..14 + 40 + 6].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(parse(&f), Err(DropReason::MalformedL4));
    // TCP data offset below 5.
    let mut f = hex(V4_TCP);
    f[14 + 20 + 12] = 0x40;
    assert_eq!(parse(&f), Err(DropReason::MalformedL4));
    // SCTP ports.
    let mut f = FrameBuilder::new().ipv4(A4, B4).ip_proto(132).build();
    f[34..38].copy_from_slice(&[0x0b, 0x59, 0x0b, 0x59]);
    let p = parse(&f).unwrap();
    assert_eq!((p.key.proto, p.key.sport, p.key.dport), (132, 2905, 2905));
}

#[test]
fn l2_checks() {
    let mut f = hex(V4_TCP);
    f[6] |= 1; // multicast source MAC
    assert_eq!(parse(&f), Err(DropReason::MalformedL2));
}

#[test]
fn flow_key_family_and_addresses() {
    let p = parse(&hex(V6_UDP)).unwrap();
    assert_eq!(p.key.family, Family::V6);
    assert_eq!(p.key.src_addr(), std::net::IpAddr::V6(A6));
    let p = parse(&hex(V4_TCP)).unwrap();
    assert_eq!(p.key.family, Family::V4);
    assert_eq!(p.key.dst, u128::from(u32::from(B4)));
    assert_eq!(p.key.in_port, 0, "the worker sets the port");
}

#[test]
fn every_prefix_is_an_error_or_a_shorter_parse() {
    for (name, frozen, _, _, _) in vectors() {
        let frame = hex(frozen);
        for n in 0..frame.len() {
            if let Ok(p) = parse(&frame[..n]) {
                // A prefix can only parse if it ends after every declared length.
                assert!(p.l3_end <= n, "{name}[..{n}]");
            }
        }
        // The IP frames have no trailing bytes, so any cut inside them is truncated.
        let p = parse(&frame).unwrap();
        if p.is_ip() {
            for n in 0..frame.len() {
                assert_eq!(
                    parse(&frame[..n]),
                    Err(DropReason::Truncated),
                    "{name}[..{n}]"
                );
            }
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_vectors_never_panic(
        which in 0usize..12,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let (_, frozen, _, _, _) = vectors()[which];
        let mut f = hex(frozen);
        for (pos, val) in flips {
            let i = pos % f.len();
            f[i] = val;
        }
        let n = cut % (f.len() + 1);
        if let Ok(p) = parse(&f[..n]) {
            prop_assert!(p.l3_offset <= n && p.l3_end <= n);
            if let Some(o) = p.payload_offset { prop_assert!(o <= p.l3_end); }
        }
    }
}

proptest! {
    /// Our word-wise IPv4 header checksum agrees with smoltcp's reference implementation.
    #[test]
    fn ipv4_checksum_matches_smoltcp(words in proptest::collection::vec(any::<u32>(), 5..=15), fix in any::<bool>()) {
        let mut hdr: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        // Version 4 and an IHL matching the buffer, so smoltcp sums exactly these bytes.
        hdr[0] = 0x40 | (hdr.len() / 4) as u8;
        if fix {
            smoltcp::wire::Ipv4Packet::new_unchecked(&mut hdr[..]).fill_checksum();
        }
        let reference = smoltcp::wire::Ipv4Packet::new_unchecked(&hdr[..]).verify_checksum();
        prop_assert_eq!(ipv4_header_checksum_ok(&hdr), reference);
    }
}

/// Frames the fast path should take, and variations around its edges.
fn fast_path_candidates() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        0usize..64,
    )
        .prop_map(|(v6, tcp, sp, dp, flags, pay)| {
            let b = FrameBuilder::new();
            let b = if v6 { b.ipv6(A6, B6) } else { b.ipv4(A4, B4) }.payload_len(pay);
            if tcp {
                b.tcp(sp, dp, flags)
            } else {
                b.udp(sp, dp)
            }
            .build()
        })
}

proptest! {
    /// The fast path never disagrees with the general parser: on well-formed frames, and on the
    /// same frames with bytes overwritten or cut short.
    #[test]
    fn fast_path_agrees_with_general_parser(
        frame in fast_path_candidates(),
        flips in proptest::collection::vec((0usize..100, any::<u8>()), 0..4),
        cut in proptest::option::of(0usize..130),
    ) {
        let mut f = frame;
        for (i, v) in flips {
            if let Some(b) = f.get_mut(i) { *b = v; }
        }
        if let Some(c) = cut { f.truncate(c); }
        if let Some(fast) = parse_fast(&f) {
            prop_assert_eq!(Ok(fast), parse_general(&f));
        }
    }

    /// Well-formed IPv4 and IPv6 TCP/UDP frames take the fast path.
    #[test]
    fn plain_tcp_udp_take_the_fast_path(frame in fast_path_candidates()) {
        prop_assert!(parse_fast(&frame).is_some());
    }
}
