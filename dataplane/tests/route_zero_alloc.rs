//! Routed mode allocates nothing per packet once the router is built: forwarding (LPM,
//! neighbour lookup, rewrite), drops that queue an answer (time exceeded, solicitation), the
//! gateway's own stack answering ARP and pings, and draining the transmit rings. A counting
//! global allocator (own test binary) must not move.

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr};

use septa_dataplane::parse;
use septa_dataplane::route::{RouteAction, RoutedPort, Router, RouterConfig, StaticRoute};
use septa_dataplane::testgen::{FrameBuilder, MAC_A, MAC_B, arp_request};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const GW0: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x10];
const GW1: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x11];

#[test]
fn routed_packets_do_not_allocate() {
    let a = Ipv4Addr::new(10, 1, 0, 10);
    let b = Ipv4Addr::new(10, 2, 0, 20);
    let gw0 = Ipv4Addr::new(10, 1, 0, 1);
    let gw1 = Ipv4Addr::new(10, 2, 0, 1);
    let cfg = RouterConfig::new(
        vec![
            RoutedPort {
                port: 0,
                mac: GW0,
                v4: Some("10.1.0.1/24".parse().unwrap()),
                v6: Some("fd00:1::1/64".parse().unwrap()),
            },
            RoutedPort {
                port: 1,
                mac: GW1,
                v4: Some("10.2.0.1/24".parse().unwrap()),
                v6: Some("fd00:2::1/64".parse().unwrap()),
            },
        ],
        vec![StaticRoute {
            prefix: "192.0.2.0/24".parse().unwrap(),
            via: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 254)),
        }],
    );
    let mut router = Router::new(&cfg, 0).unwrap();
    let frames: Vec<Vec<u8>> = vec![
        arp_request(MAC_A, a, gw0),
        FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(a, b)
            .tcp(1000, 80, 0x10)
            .ttl(64)
            .build(),
        FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(a, b)
            .udp(1000, 53)
            .ttl(1)
            .build(),
        FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(a, gw0)
            .icmp(8, 0)
            .payload_len(56)
            .build(),
        FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(a, Ipv4Addr::new(10, 2, 0, 99))
            .udp(1, 2)
            .build(),
        FrameBuilder::new()
            .macs(MAC_A, GW0)
            .ipv4(a, Ipv4Addr::new(198, 51, 100, 1))
            .udp(1, 2)
            .build(),
    ];
    let parsed: Vec<_> = frames.iter().map(|f| parse(f).unwrap()).collect();
    let mut scratch = vec![0u8; 2048];
    let mut drained = 0usize;
    let mut actions = [0usize; 4];
    let learn_b = arp_request(MAC_B, b, gw1);
    let pb = parse(&learn_b).unwrap();
    let mut run = |router: &mut Router, now: u64, actions: &mut [usize; 4], drained: &mut usize| {
        for (f, p) in frames.iter().zip(&parsed) {
            let buf = &mut scratch[..f.len()];
            buf.copy_from_slice(f);
            let slot = match router.process(0, buf, p, now) {
                RouteAction::Forward { .. } => 0,
                RouteAction::Local => 1,
                RouteAction::Drop(_) => 2,
            };
            actions[slot] += 1;
        }
        let mut lb = [0u8; 64];
        lb[..learn_b.len()].copy_from_slice(&learn_b);
        router.process(1, &mut lb[..learn_b.len()], &pb, now);
        router.poll(now);
        for port in 0..2 {
            *drained += router.drain_tx(port, |_| true);
        }
    };
    // Warm up (smoltcp's caches, the neighbour table), then measure.
    for i in 0..10 {
        run(&mut router, i * 10_000, &mut actions, &mut drained);
    }
    // The counter is global: let the test harness's main thread finish its own start-up
    // allocations (it races with the first measured window otherwise).
    std::thread::sleep(std::time::Duration::from_millis(200));
    for w in 0..4u64 {
        let region = Region::new(GLOBAL);
        for i in 10..510 {
            run(
                &mut router,
                (w * 500 + i) * 10_000,
                &mut actions,
                &mut drained,
            );
        }
        let stats = region.change();
        assert_eq!(stats.allocations, 0, "window {w}: {stats:?}");
        assert_eq!(stats.reallocations, 0, "window {w}: {stats:?}");
    }
    // The mix really exercised every path.
    assert!(
        actions[0] > 1000 && actions[1] > 1000 && actions[2] > 1000,
        "{actions:?}"
    );
    assert!(drained > 2000, "{drained}");
}
