//! Unit tests of routed mode: LPM against a naive reference, the TTL rewrite against a full
//! checksum recomputation, ARP / neighbour discovery / echo answered by smoltcp, time-exceeded
//! errors parsed back with `smoltcp::wire`, forwarding, drops, and the neighbour table bounds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Packet, Icmpv4Repr, Icmpv4TimeExceeded as TimeExceeded, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, Ipv4Packet, Ipv6Packet, NdiscRepr,
};

use super::lpm::{NextHop, RouteTable};
use super::neighbour::NeighbourTable;
use super::rewrite::{decrement_ipv4_ttl, ipv4_header_checksum};
use super::*;
use crate::parse::parse;
use crate::testgen::{FrameBuilder, MAC_A, MAC_B, arp_request};

const GW0: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x10];
const GW1: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x11];
const A4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const B4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
const GW0_4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const GW1_4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x20);
const GW0_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
const GW1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
const SEC: u64 = 1_000_000;

fn config() -> RouterConfig {
    RouterConfig::new(
        vec![
            RoutedPort {
                port: 0,
                mac: GW0,
                v4: Some(Ipv4Net::new(GW0_4, 24).unwrap()),
                v6: Some(Ipv6Net::new(GW0_6, 64).unwrap()),
            },
            RoutedPort {
                port: 1,
                mac: GW1,
                v4: Some(Ipv4Net::new(GW1_4, 24).unwrap()),
                v6: Some(Ipv6Net::new(GW1_6, 64).unwrap()),
            },
        ],
        vec![StaticRoute {
            prefix: "192.0.2.0/24".parse().unwrap(),
            via: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 254)),
        }],
    )
}

fn router() -> Router {
    Router::new(&config(), 0).unwrap()
}

fn run(r: &mut Router, port: PortId, mut frame: Vec<u8>, now: u64) -> (RouteAction, Vec<u8>) {
    let parsed = parse(&frame).expect("test frame parses");
    let action = r.process(port, &mut frame, &parsed, now);
    (action, frame)
}

fn drain(r: &mut Router, port: PortId, now: u64) -> Vec<Vec<u8>> {
    r.poll(now);
    let mut out = Vec::new();
    r.drain_tx(port, |f| {
        out.push(f.to_vec());
        true
    });
    out
}

/// Both hosts resolved: A announces itself on port 0, B on port 1 (ARP requests for the gateway).
fn resolved() -> Router {
    let mut r = router();
    let (a, _) = run(&mut r, 0, arp_request(MAC_A, A4, GW0_4), 0);
    let (b, _) = run(&mut r, 1, arp_request(MAC_B, B4, GW1_4), 0);
    assert_eq!((a, b), (RouteAction::Local, RouteAction::Local));
    drain(&mut r, 0, 0);
    drain(&mut r, 1, 0);
    r
}

fn ip4(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    Ipv4Packet::new_checked(&frame[14..]).unwrap()
}

// ---- longest-prefix match -------------------------------------------------------------------

fn naive_v4(routes: &[(Ipv4Net, NextHop)], dst: Ipv4Addr) -> Option<NextHop> {
    // Last insertion of a prefix wins, as in the table.
    let mut best: Option<(u8, NextHop)> = None;
    for (p, h) in routes {
        let p = p.trunc();
        if p.contains(&dst) && best.is_none_or(|(len, _)| p.prefix_len() >= len) {
            best = Some((p.prefix_len(), *h));
        }
    }
    best.map(|(_, h)| h)
}

fn naive_v6(routes: &[(Ipv6Net, NextHop)], dst: Ipv6Addr) -> Option<NextHop> {
    let mut best: Option<(u8, NextHop)> = None;
    for (p, h) in routes {
        let p = p.trunc();
        if p.contains(&dst) && best.is_none_or(|(len, _)| p.prefix_len() >= len) {
            best = Some((p.prefix_len(), *h));
        }
    }
    best.map(|(_, h)| h)
}

proptest! {
    #[test]
    fn lpm_v4_agrees_with_naive_reference(
        // Few distinct top bits so prefixes nest and overlap often.
        // Up to 80 routes: both the linear scan (<= LINEAR_MAX) and the trie are exercised.
        routes in prop::collection::vec((0u32..16, 0u8..=32, 0u16..8), 0..80),
        probes in prop::collection::vec((0u32..16, any::<u32>()), 1..64),
    ) {
        let routes: Vec<(Ipv4Net, NextHop)> = routes
            .into_iter()
            .map(|(hi, len, port)| {
                let addr = Ipv4Addr::from((hi << 28) | ((u32::from(port) * 0x0101_0101) & 0x0fff_ffff));
                (Ipv4Net::new(addr, len).unwrap(), NextHop { port, via: None })
            })
            .collect();
        let mut t = RouteTable::new();
        for (p, h) in &routes {
            t.insert(IpNet::V4(*p), *h);
        }
        for (hi, lo) in probes {
            let dst = Ipv4Addr::from((hi << 28) | (lo & 0x0fff_ffff));
            prop_assert_eq!(t.lookup_v4(dst).map(|(_, h)| *h), naive_v4(&routes, dst));
        }
    }

    #[test]
    fn lpm_v6_agrees_with_naive_reference(
        routes in prop::collection::vec((0u128..8, 0u8..=128, 0u16..8), 0..80),
        probes in prop::collection::vec((0u128..8, any::<u128>()), 1..64),
    ) {
        let mask = u128::MAX >> 3;
        let routes: Vec<(Ipv6Net, NextHop)> = routes
            .into_iter()
            .map(|(hi, len, port)| {
                let addr = Ipv6Addr::from((hi << 125) | (u128::from(port).wrapping_mul(0x0101_0101_0101_0101_0101_0101_0101_0101) & mask));
                (Ipv6Net::new(addr, len).unwrap(), NextHop { port, via: None })
            })
            .collect();
        let mut t = RouteTable::new();
        for (p, h) in &routes {
            t.insert(IpNet::V6(*p), *h);
        }
        for (hi, lo) in probes {
            let dst = Ipv6Addr::from((hi << 125) | (lo & mask));
            prop_assert_eq!(t.lookup_v6(dst).map(|(_, h)| *h), naive_v6(&routes, dst));
        }
    }

    /// The incremental update (RFC 1624) equals a full recomputation on any header with a
    /// valid checksum, options included.
    #[test]
    fn ttl_decrement_checksum_matches_recomputation(
        mut hdr in prop::collection::vec(any::<u8>(), 20..=60),
        ttl in 2u8..=255,
    ) {
        let len = hdr.len() / 4 * 4;
        hdr.truncate(len);
        hdr[0] = 0x40 | (len / 4) as u8;
        hdr[8] = ttl;
        let c = ipv4_header_checksum(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        decrement_ipv4_ttl(&mut hdr);
        prop_assert_eq!(hdr[8], ttl - 1);
        let got = u16::from_be_bytes([hdr[10], hdr[11]]);
        prop_assert_eq!(got, ipv4_header_checksum(&hdr));
        let ip = Ipv4Packet::new_unchecked(&hdr[..]);
        prop_assert!(ip.verify_checksum());
    }
}

#[test]
fn lpm_prefers_longest_prefix_and_static_routes_resolve_their_port() {
    let r = router();
    let t = r.routes();
    let (p, h) = t.lookup_v4(Ipv4Addr::new(10, 2, 0, 99)).unwrap();
    assert_eq!(
        (p.to_string().as_str(), h.port, h.via),
        ("10.2.0.0/24", 1, None)
    );
    let (p, h) = t.lookup_v4(Ipv4Addr::new(192, 0, 2, 7)).unwrap();
    assert_eq!(p.to_string(), "192.0.2.0/24");
    assert_eq!((h.port, h.via), (1, Some("10.2.0.254".parse().unwrap())));
    assert!(t.lookup_v4(Ipv4Addr::new(198, 51, 100, 1)).is_none());
    assert_eq!(t.lookup_v6(B6).unwrap().1.port, 1);
}

// ---- the gateway's own stack (smoltcp) ------------------------------------------------------

#[test]
fn arp_request_for_the_gateway_is_answered_and_sender_learnt() {
    let mut r = router();
    let (action, _) = run(&mut r, 0, arp_request(MAC_A, A4, GW0_4), 0);
    assert_eq!(action, RouteAction::Local);
    let out = drain(&mut r, 0, 0);
    assert_eq!(out.len(), 1, "one ARP reply");
    let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
    assert_eq!(eth.dst_addr(), EthernetAddress(MAC_A));
    assert_eq!(eth.src_addr(), EthernetAddress(GW0));
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(GW0),
            source_protocol_addr: GW0_4,
            target_hardware_addr: EthernetAddress(MAC_A),
            target_protocol_addr: A4,
        }
    );
    let n = r
        .neighbours()
        .lookup(u128::from(u32::from(A4)), false)
        .unwrap();
    assert_eq!((n.mac, n.port), (MAC_A, 0));
    // Nothing for the other port, and an ARP request for another port's address is not answered.
    assert!(drain(&mut r, 1, 0).is_empty());
    let (action, _) = run(&mut r, 0, arp_request(MAC_A, A4, GW1_4), 0);
    assert_eq!(action, RouteAction::Local);
    assert!(drain(&mut r, 0, 0).is_empty());
}

#[test]
fn ping_of_the_gateway_is_answered_v4() {
    let mut r = resolved();
    let req = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A4, GW0_4)
        .icmp(8, 0)
        .payload_len(32)
        .build();
    let (action, _) = run(&mut r, 0, req, SEC);
    assert_eq!(action, RouteAction::Local);
    let out = drain(&mut r, 0, SEC);
    assert_eq!(out.len(), 1, "one echo reply");
    let ip = ip4(&out[0]);
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GW0_4, A4));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(matches!(
        Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap(),
        Icmpv4Repr::EchoReply { .. }
    ));
    assert_eq!(&out[0][..6], &MAC_A);
}

#[test]
fn neighbour_solicitation_and_ping_are_answered_v6() {
    let mut r = router();
    let mut ns = vec![0u8; icmp::MAX_FRAME];
    let n = icmp::neighbour_solicit(&mut ns, MAC_A, A6, GW0_6);
    ns.truncate(n);
    let (action, _) = run(&mut r, 0, ns, 0);
    assert_eq!(action, RouteAction::Local);
    let n = r.neighbours().lookup(u128::from(A6), true).unwrap();
    assert_eq!(
        (n.mac, n.port),
        (MAC_A, 0),
        "learnt from the source link-layer option"
    );
    let out = drain(&mut r, 0, 0);
    assert_eq!(out.len(), 1, "one neighbour advertisement");
    let ip = Ipv6Packet::new_checked(&out[0][14..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GW0_6, A6));
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let repr = Icmpv6Repr::parse(&GW0_6, &A6, &icmp, &ChecksumCapabilities::default()).unwrap();
    let Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        target_addr,
        lladdr,
        ..
    }) = repr
    else {
        panic!("not an NA: {repr:?}");
    };
    assert_eq!(target_addr, GW0_6);
    assert_eq!(lladdr.map(|l| l.as_bytes().to_vec()), Some(GW0.to_vec()));

    let req = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv6(A6, GW0_6)
        .icmp(128, 0)
        .payload_len(16)
        .build();
    let (action, _) = run(&mut r, 0, req, SEC);
    assert_eq!(action, RouteAction::Local);
    let out = drain(&mut r, 0, SEC);
    assert_eq!(out.len(), 1, "one echo reply");
    let ip = Ipv6Packet::new_checked(&out[0][14..]).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(matches!(
        Icmpv6Repr::parse(&GW0_6, &A6, &icmp, &ChecksumCapabilities::default()).unwrap(),
        Icmpv6Repr::EchoReply { .. }
    ));
}

#[test]
fn full_stack_queue_drops_with_its_reason() {
    let mut cfg = config();
    cfg.queue_frames = 2;
    let mut r = Router::new(&cfg, 0).unwrap();
    let actions: Vec<_> = (0..3)
        .map(|_| run(&mut r, 0, arp_request(MAC_A, A4, GW0_4), 0).0)
        .collect();
    assert_eq!(
        actions,
        [
            RouteAction::Local,
            RouteAction::Local,
            RouteAction::Drop(DropReason::GatewayQueueFull)
        ]
    );
    assert_eq!(drain(&mut r, 0, 0).len(), 2);
}

// ---- forwarding -----------------------------------------------------------------------------

#[test]
fn forwarding_rewrites_macs_and_ttl_v4() {
    let mut r = resolved();
    let f = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A4, B4)
        .udp(1000, 53)
        .ttl(64)
        .build();
    let before = f.clone();
    let (action, out) = run(&mut r, 0, f, SEC);
    assert_eq!(action, RouteAction::Forward { port: 1 });
    assert_eq!(&out[..6], &MAC_B);
    assert_eq!(&out[6..12], &GW1);
    let ip = ip4(&out);
    assert_eq!(ip.hop_limit(), 63);
    assert!(ip.verify_checksum());
    // Nothing else changed.
    assert_eq!(&out[14 + 12..], &before[14 + 12..]);
    assert_eq!(&out[14..14 + 8], &before[14..14 + 8]);
}

#[test]
fn forwarding_rewrites_macs_and_hop_limit_v6() {
    let mut r = router();
    for (port, mac, src, gw) in [(0, MAC_A, A6, GW0_6), (1, MAC_B, B6, GW1_6)] {
        let mut ns = vec![0u8; icmp::MAX_FRAME];
        let n = icmp::neighbour_solicit(&mut ns, mac, src, gw);
        ns.truncate(n);
        assert_eq!(run(&mut r, port, ns, 0).0, RouteAction::Local);
    }
    let f = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv6(A6, B6)
        .tcp(1000, 80, 0x02)
        .ttl(2)
        .build();
    let (action, out) = run(&mut r, 0, f, SEC);
    assert_eq!(action, RouteAction::Forward { port: 1 });
    assert_eq!((&out[..6], &out[6..12]), (&MAC_B[..], &GW1[..]));
    assert_eq!(Ipv6Packet::new_checked(&out[14..]).unwrap().hop_limit(), 1);
}

#[test]
fn unresolved_next_hop_is_dropped_and_solicited_at_a_bounded_rate() {
    let mut r = resolved();
    let c = Ipv4Addr::new(10, 2, 0, 30);
    let f = || {
        FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(A4, c)
            .udp(1, 2)
            .build()
    };
    assert_eq!(
        run(&mut r, 0, f(), SEC).0,
        RouteAction::Drop(DropReason::NeighbourUnresolved)
    );
    assert_eq!(
        run(&mut r, 0, f(), SEC + 10).0,
        RouteAction::Drop(DropReason::NeighbourUnresolved)
    );
    let out = drain(&mut r, 1, SEC + 10);
    assert_eq!(out.len(), 1, "one ARP request per interval");
    let arp = ArpRepr::parse(&ArpPacket::new_checked(&out[0][14..]).unwrap()).unwrap();
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(GW1),
            source_protocol_addr: GW1_4,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: c,
        }
    );
    assert_eq!(&out[0][..6], &[0xff; 6]);
    // After the interval, another one; then the reply resolves it and packets flow.
    run(&mut r, 0, f(), 2 * SEC + 20);
    assert_eq!(drain(&mut r, 1, 2 * SEC + 20).len(), 1);
    let mac_c = [0x02, 0, 0, 0, 0, 0x0c];
    run(&mut r, 1, arp_request(mac_c, c, GW1_4), 2 * SEC + 30);
    assert_eq!(
        drain(&mut r, 1, 2 * SEC + 30).len(),
        1,
        "the ARP reply to C"
    );
    assert_eq!(
        run(&mut r, 0, f(), 2 * SEC + 40).0,
        RouteAction::Forward { port: 1 }
    );

    // IPv6: a neighbour solicitation to the solicited-node group.
    let c6 = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x30);
    let f6 = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv6(A6, c6)
        .udp(1, 2)
        .build();
    assert_eq!(
        run(&mut r, 0, f6, 3 * SEC).0,
        RouteAction::Drop(DropReason::NeighbourUnresolved)
    );
    let out = drain(&mut r, 1, 3 * SEC);
    assert_eq!(out.len(), 1);
    let ip = Ipv6Packet::new_checked(&out[0][14..]).unwrap();
    assert_eq!(ip.dst_addr(), icmp::solicited_node(c6));
    assert_eq!(ip.hop_limit(), 255);
    let repr = Icmpv6Repr::parse(
        &GW1_6,
        &ip.dst_addr(),
        &Icmpv6Packet::new_checked(ip.payload()).unwrap(),
        &ChecksumCapabilities::default(),
    )
    .unwrap();
    assert!(matches!(
        repr,
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr, .. }) if target_addr == c6
    ));
}

#[test]
fn static_route_forwards_to_its_gateway() {
    let mut r = resolved();
    let gw = Ipv4Addr::new(10, 2, 0, 254);
    let mac_gw = [0x02, 0, 0, 0, 0, 0xfe];
    run(&mut r, 1, arp_request(mac_gw, gw, GW1_4), 0);
    let f = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A4, Ipv4Addr::new(192, 0, 2, 9))
        .udp(1, 2)
        .build();
    let (action, out) = run(&mut r, 0, f, SEC);
    assert_eq!(action, RouteAction::Forward { port: 1 });
    assert_eq!(&out[..6], &mac_gw);
}

#[test]
fn ttl_exceeded_sends_time_exceeded_v4() {
    let mut r = resolved();
    let f = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A4, B4)
        .udp(4000, 33434)
        .payload_len(40)
        .ttl(1)
        .build();
    let orig_ip = f[14..].to_vec();
    let (action, _) = run(&mut r, 0, f, SEC);
    assert_eq!(action, RouteAction::Drop(DropReason::TtlExceeded));
    let out = drain(&mut r, 0, SEC);
    assert_eq!(out.len(), 1);
    assert_eq!((&out[0][..6], &out[0][6..12]), (&MAC_A[..], &GW0[..]));
    let ip = ip4(&out[0]);
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src_addr(), ip.dst_addr(), ip.next_header()),
        (GW0_4, A4, IpProtocol::Icmp)
    );
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap();
    let Icmpv4Repr::TimeExceeded {
        reason,
        header,
        data,
    } = repr
    else {
        panic!("not time exceeded: {repr:?}");
    };
    assert_eq!(reason, TimeExceeded::TtlExpired);
    assert_eq!(
        (header.src_addr, header.dst_addr, header.hop_limit),
        (A4, B4, 1)
    );
    assert_eq!(data, &orig_ip[20..]);
    // The whole original datagram is quoted (it fits in 576 bytes).
    assert_eq!(icmp.data(), &orig_ip[..]);
}

#[test]
fn ttl_exceeded_sends_time_exceeded_v6_and_quote_is_bounded() {
    let mut r = router();
    let f = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv6(A6, B6)
        .udp(4000, 33434)
        .payload_len(1400)
        .ttl(1)
        .build();
    let orig_ip = f[14..].to_vec();
    let (action, _) = run(&mut r, 0, f, 0);
    assert_eq!(action, RouteAction::Drop(DropReason::TtlExceeded));
    let out = drain(&mut r, 0, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].len(),
        14 + 1280,
        "the error fits the IPv6 minimum MTU"
    );
    let ip = Ipv6Packet::new_checked(&out[0][14..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GW0_6, A6));
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let repr = Icmpv6Repr::parse(&GW0_6, &A6, &icmp, &ChecksumCapabilities::default()).unwrap();
    let Icmpv6Repr::TimeExceeded { reason, header, .. } = repr else {
        panic!("not time exceeded: {repr:?}");
    };
    assert_eq!(reason, smoltcp::wire::Icmpv6TimeExceeded::HopLimitExceeded);
    assert_eq!((header.src_addr, header.dst_addr), (A6, B6));
    assert_eq!(icmp.payload(), &orig_ip[..1280 - 48]);
}

#[test]
fn time_exceeded_is_rate_limited_and_never_about_icmp_errors() {
    let mut cfg = config();
    cfg.icmp_errors_per_second = 10; // burst of 1
    let mut r = Router::new(&cfg, 0).unwrap();
    let f = || {
        FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(A4, B4)
            .udp(1, 2)
            .ttl(1)
            .build()
    };
    for _ in 0..5 {
        assert_eq!(
            run(&mut r, 0, f(), SEC).0,
            RouteAction::Drop(DropReason::TtlExceeded)
        );
    }
    assert_eq!(drain(&mut r, 0, SEC).len(), 1);
    assert_eq!(r.stats().icmp_suppressed, 4);
    // A tenth of a second later, one token more.
    run(&mut r, 0, f(), SEC + SEC / 10);
    assert_eq!(drain(&mut r, 0, SEC + SEC / 10).len(), 1);
    // An ICMP error with TTL 1 is dropped silently.
    let err = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A4, B4)
        .icmp(3, 1)
        .ttl(1)
        .build();
    assert_eq!(
        run(&mut r, 0, err, 5 * SEC).0,
        RouteAction::Drop(DropReason::TtlExceeded)
    );
    assert!(drain(&mut r, 0, 5 * SEC).is_empty());
}

#[test]
fn martians_no_route_and_foreign_frames_are_dropped_with_their_reason() {
    let mut r = resolved();
    let v4 = |src: Ipv4Addr, dst: Ipv4Addr| {
        FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(src, dst)
            .udp(1, 2)
            .build()
    };
    let cases = [
        (v4(Ipv4Addr::LOCALHOST, B4), DropReason::MartianAddress),
        (
            v4(Ipv4Addr::new(0, 1, 2, 3), B4),
            DropReason::MartianAddress,
        ),
        (
            v4(Ipv4Addr::new(169, 254, 1, 1), B4),
            DropReason::MartianAddress,
        ),
        (
            v4(A4, Ipv4Addr::new(127, 0, 0, 1)),
            DropReason::MartianAddress,
        ),
        (
            v4(A4, Ipv4Addr::new(240, 0, 0, 1)),
            DropReason::MartianAddress,
        ),
        (v4(GW1_4, B4), DropReason::MartianAddress),
        (
            v4(A4, Ipv4Addr::new(10, 2, 0, 255)),
            DropReason::MartianAddress,
        ),
        (v4(A4, GW1_4), DropReason::MartianAddress),
        (v4(A4, Ipv4Addr::new(198, 51, 100, 1)), DropReason::NoRoute),
        (
            FrameBuilder::new()
                .macs(MAC_A, MAC_B)
                .ipv4(A4, B4)
                .udp(1, 2)
                .build(),
            DropReason::NotForGateway,
        ),
        (
            FrameBuilder::new()
                .macs(MAC_A, GW0)
                .vlan(5)
                .ipv4(A4, B4)
                .udp(1, 2)
                .build(),
            DropReason::NotForGateway,
        ),
        (
            FrameBuilder::new()
                .macs(MAC_A, GW0)
                .ipv6(A6, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))
                .udp(1, 2)
                .build(),
            DropReason::MartianAddress,
        ),
        (
            FrameBuilder::new()
                .macs(MAC_A, GW0)
                .ipv6(Ipv6Addr::LOCALHOST, B6)
                .udp(1, 2)
                .build(),
            DropReason::MartianAddress,
        ),
        (
            FrameBuilder::new()
                .macs(MAC_A, GW0)
                .ipv6(A6, "2001:db8::1".parse().unwrap())
                .udp(1, 2)
                .build(),
            DropReason::NoRoute,
        ),
    ];
    for (i, (frame, reason)) in cases.into_iter().enumerate() {
        assert_eq!(
            run(&mut r, 0, frame, SEC).0,
            RouteAction::Drop(reason),
            "case {i}"
        );
    }
    // Link broadcast/multicast from an unspecified source (DHCP, duplicate address detection)
    // goes to the stack, not to the martian counter.
    let dhcp = FrameBuilder::new()
        .macs(MAC_A, [0xff; 6])
        .ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        .udp(68, 67)
        .build();
    assert_eq!(run(&mut r, 0, dhcp, SEC).0, RouteAction::Local);
    let mut dad = vec![0u8; icmp::MAX_FRAME];
    let n = icmp::neighbour_solicit(&mut dad, MAC_A, Ipv6Addr::UNSPECIFIED, A6);
    dad.truncate(n);
    assert_eq!(run(&mut r, 0, dad, SEC).0, RouteAction::Local);
    // A port that is not routed.
    let f = v4(A4, B4);
    assert_eq!(
        run(&mut r, 7, f, SEC).0,
        RouteAction::Drop(DropReason::NoPeerPort)
    );
    assert!(!r.is_routed(7) && r.is_routed(0));
}

#[test]
fn bad_configurations_are_rejected() {
    let base = config();
    let with = |f: &dyn Fn(&mut RouterConfig)| {
        let mut c = base.clone();
        f(&mut c);
        Router::new(&c, 0).unwrap_err()
    };
    assert!(matches!(
        with(&|c| c.ports[1].v4 = Some("10.1.0.2/16".parse().unwrap())),
        RouteError::Overlap { port: 1, .. }
    ));
    assert!(matches!(
        with(&|c| c.routes[0].via = "10.9.0.1".parse().unwrap()),
        RouteError::ViaNotConnected { .. }
    ));
    assert!(matches!(
        with(&|c| c.routes[0].via = GW0_6.into()),
        RouteError::FamilyMismatch { .. }
    ));
    assert!(matches!(
        with(&|c| c.routes[0].prefix = "10.2.0.0/24".parse().unwrap()),
        RouteError::ShadowsConnected { .. }
    ));
    assert!(matches!(
        with(&|c| c.ports[0].v4 = Some("10.1.0.0/24".parse().unwrap())),
        RouteError::BadAddress { port: 0, .. }
    ));
    assert!(matches!(
        with(&|c| c.ports[1].port = 0),
        RouteError::DuplicatePort(0)
    ));
    assert!(matches!(
        with(&|c| c.ports[0].mac = [1, 0, 0, 0, 0, 1]),
        RouteError::BadMac(0)
    ));
    assert!(matches!(
        with(&|c| {
            c.ports[0].v4 = None;
            c.ports[0].v6 = None;
        }),
        RouteError::NoAddress(0)
    ));
}

// ---- neighbour table ------------------------------------------------------------------------

#[test]
fn neighbour_table_stays_within_capacity_and_keeps_recent_entries() {
    let mut t = NeighbourTable::new(16);
    assert_eq!(t.capacity(), 16);
    for i in 0..10_000u128 {
        t.learn(i, i % 2 == 0, [2, 0, 0, 0, 0, i as u8], 0, i as u64);
        assert!(t.len() <= t.capacity());
        // The entry just learnt is always found.
        assert_eq!(t.lookup(i, i % 2 == 0).map(|n| n.mac[5]), Some(i as u8));
    }
    assert_eq!(t.len(), 16);
    // Unresolved entries are evicted before resolved ones.
    let mut t = NeighbourTable::new(4);
    for i in 0..4u128 {
        t.learn(i, false, [2, 0, 0, 0, 0, 1], 0, 0);
    }
    assert!(t.should_solicit(100, false, 0, 10, SEC));
    assert!(!t.should_solicit(100, false, 0, 20, SEC), "rate-limited");
    assert!(t.should_solicit(100, false, 0, 10 + SEC, SEC));
    assert_eq!(t.len(), 4);
    assert!(
        t.lookup(100, false).is_none(),
        "unresolved is not a neighbour"
    );
    assert!(t.should_solicit(101, false, 0, 30, SEC));
    let resolved = (0..4u128).filter(|&i| t.lookup(i, false).is_some()).count();
    assert_eq!(
        resolved, 3,
        "the second solicitation replaced the unresolved entry"
    );
}

#[test]
fn neighbour_table_separates_families() {
    let mut t = NeighbourTable::new(8);
    t.learn(0x0a01_000a, false, MAC_A, 0, 0);
    assert!(t.lookup(0x0a01_000a, true).is_none());
    t.learn(0x0a01_000a, true, MAC_B, 1, 0);
    assert_eq!(t.lookup(0x0a01_000a, false).unwrap().mac, MAC_A);
    assert_eq!(t.lookup(0x0a01_000a, true).unwrap().mac, MAC_B);
}

// ---- counters published for the control side ------------------------------------------------

#[test]
fn published_counters_are_what_the_router_counted_at_most_every_publish_us() {
    use crate::counters::PUBLISH_US;
    let mut r = router();
    let shared = r.shared_stats();
    assert_eq!(shared.load(), RouterSnapshot::default(), "nothing yet");
    // ARP: answered, the sender learnt; published at the first poll.
    run(&mut r, 0, arp_request(MAC_A, A4, GW0_4), 0);
    drain(&mut r, 0, 0);
    let first = shared.load();
    assert_eq!(
        (
            first.stats.arp_replies,
            first.stats.local,
            first.stats.echo_replies
        ),
        (1, 1, 0)
    );
    assert_eq!(first.neighbours, 1);
    assert_eq!(first.neighbour_capacity, r.neighbours().capacity() as u64);
    // Three pings of the gateway, an NS and a ping over IPv6, a TTL-1 datagram: counted by the
    // router at once, published only when PUBLISH_US have passed.
    for seq in 0..3 {
        let req = FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(A4, GW0_4)
            .icmp(8, 0)
            .seq(seq)
            .build();
        assert_eq!(run(&mut r, 0, req, 10).0, RouteAction::Local);
    }
    let mut ns = vec![0u8; icmp::MAX_FRAME];
    let n = icmp::neighbour_solicit(&mut ns, MAC_A, A6, GW0_6);
    ns.truncate(n);
    run(&mut r, 0, ns, 10);
    let ping6 = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv6(A6, GW0_6)
        .icmp(128, 0)
        .build();
    run(&mut r, 0, ping6, 10);
    let ttl1 = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A4, B4)
        .udp(5000, 53)
        .ttl(1)
        .build();
    assert_eq!(
        run(&mut r, 0, ttl1, 10).0,
        RouteAction::Drop(DropReason::TtlExceeded)
    );
    assert_eq!(drain(&mut r, 0, 10).len(), 3 + 2 + 1);
    let s = *r.stats();
    assert_eq!(
        (
            s.echo_replies,
            s.neighbour_adverts,
            s.arp_replies,
            s.icmp_errors
        ),
        (4, 1, 1, 1)
    );
    r.poll(PUBLISH_US - 1);
    assert_eq!(shared.load(), first, "not due before PUBLISH_US");
    r.poll(PUBLISH_US);
    let second = shared.load();
    assert_eq!(second.stats, s, "exactly what the router counted");
    assert_eq!(second.neighbours, 2, "A over IPv4 and IPv6");
    // Counted after the publication: visible only at the next one.
    run(&mut r, 0, arp_request(MAC_A, A4, GW0_4), PUBLISH_US + 1);
    drain(&mut r, 0, PUBLISH_US + 1);
    assert_eq!(shared.load().stats.arp_replies, 1);
    r.poll(2 * PUBLISH_US);
    assert_eq!(shared.load().stats.arp_replies, 2);
    // Counted after that, then the worker stops: published at once.
    run(&mut r, 0, arp_request(MAC_A, A4, GW0_4), 2 * PUBLISH_US + 1);
    drain(&mut r, 0, 2 * PUBLISH_US + 1);
    assert_eq!(shared.load().stats.arp_replies, 2, "not due");
    r.publish_now(2 * PUBLISH_US + 1);
    assert_eq!(shared.load().stats.arp_replies, 3);
}

#[test]
fn answers_are_classified_from_their_headers() {
    use icmp::{Answer, classify_answer};
    let mut r = resolved();
    let ping = FrameBuilder::new()
        .macs(MAC_A, GW0)
        .ipv4(A4, GW0_4)
        .icmp(8, 0)
        .build();
    run(&mut r, 0, ping, SEC);
    let reply = drain(&mut r, 0, SEC).remove(0);
    assert_eq!(classify_answer(&reply), Answer::EchoReply);
    let mut arp = vec![0u8; icmp::MAX_FRAME];
    let n = icmp::arp_request(&mut arp, GW0, GW0_4, A4);
    assert_eq!(classify_answer(&arp[..n]), Answer::Other, "a request");
    let request = FrameBuilder::new()
        .macs(GW0, MAC_A)
        .ipv4(GW0_4, A4)
        .icmp(8, 0)
        .build();
    assert_eq!(classify_answer(&request), Answer::Other);
    assert_eq!(classify_answer(&reply[..20]), Answer::Other, "truncated");
    assert_eq!(classify_answer(&[]), Answer::Other);
}
