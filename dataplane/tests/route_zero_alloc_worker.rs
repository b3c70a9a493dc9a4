//! The worker in routed mode allocates nothing per packet once it is built: routing, the
//! stateful policy path (tracked TCP flows, denied UDP), per-egress tx bursts, and the gateway's
//! own frames (ARP replies, echo replies, time exceeded) copied into transmit buffers from a
//! preallocated pool (`MemoryIo::set_tx_pool`, as DPDK takes mbufs from its mempool). A
//! counting global allocator (own test binary) must not move.

use std::alloc::System;
use std::net::Ipv4Addr;

use septa_classifier::{Action, AddrMatch, PortRange, Prefix, Rule, TableCell, compile};
use septa_dataplane::events::EventSink;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::parse::TcpFlags;
use septa_dataplane::route::{RoutedPort, Router, RouterConfig};
use septa_dataplane::testgen::{FrameBuilder, MAC_A, MAC_B, Side, TcpSession, arp_request};
use septa_dataplane::{Bridge, Decision, DropReason, StateConfig, Stats, Worker, WorkerState};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const GW0: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x10];
const GW1: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x11];
const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
const GW0_4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const GW1_4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
/// Rounds of the frame mix per measured window.
const ROUNDS: usize = 40;

fn to(mac: [u8; 6], mut frame: Vec<u8>) -> Vec<u8> {
    frame[..6].copy_from_slice(&mac);
    frame
}

/// One round: ARP and ping of the gateway, a denied UDP datagram, a TTL-1 segment, 8 data
/// segments each way of an allowed TCP connection. (port, frame).
fn round(s: &mut TcpSession) -> Vec<(u16, Vec<u8>)> {
    let mut v = vec![
        (0, arp_request(MAC_A, A, GW0_4)),
        (
            0,
            FrameBuilder::new()
                .macs(MAC_A, GW0)
                .ipv4(A, GW0_4)
                .icmp(8, 0)
                .payload_len(56)
                .build(),
        ),
        (
            0,
            to(GW0, FrameBuilder::new().ipv4(A, B).udp(5000, 9999).build()),
        ),
        (
            0,
            to(
                GW0,
                FrameBuilder::new()
                    .ipv4(A, B)
                    .tcp(1, 80, 0x10)
                    .ttl(1)
                    .build(),
            ),
        ),
    ];
    // Generated in the order the worker sees them (port 0's burst, then port 1's), so no
    // segment acknowledges data the gateway has not forwarded yet.
    for _ in 0..8 {
        v.push((0, to(GW0, s.segment(Side::Client, TcpFlags::ACK, 64))));
    }
    for _ in 0..8 {
        v.push((1, to(GW1, s.segment(Side::Server, TcpFlags::ACK, 64))));
    }
    v
}

#[test]
fn routed_worker_does_not_allocate_per_packet() {
    let ten = AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(10, 0, 0, 0), 8));
    let table = compile(&[
        Rule {
            dst: ten,
            proto: Some(6),
            dport: PortRange { lo: 80, hi: 80 },
            ..Rule::any(1, Action::Allow)
        },
        Rule::any(9, Action::Deny),
    ])
    .unwrap();
    let cell = TableCell::new(table);
    let port = |port, mac, v4: &str| RoutedPort {
        port,
        mac,
        v4: Some(v4.parse().unwrap()),
        v6: None,
    };
    let cfg = RouterConfig::new(
        vec![port(0, GW0, "10.1.0.1/24"), port(1, GW1, "10.2.0.1/24")],
        vec![],
    );
    let state = WorkerState::new(&StateConfig::new(1024), EventSink::disabled()).unwrap();
    let mut w = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).unwrap(),
        Decision::Table(cell.reader()),
        state,
    );
    w.set_router(Router::new(&cfg, 0).unwrap());
    let mut io = MemoryIo::new(2);

    // Set up: neighbours learnt, the connection established, the table reader's first load.
    let mut s = TcpSession::v4(A, 40000, B, 80);
    io.push_rx(1, arp_request(MAC_B, B, GW1_4));
    io.push_rx(0, arp_request(MAC_A, A, GW0_4));
    w.poll(&mut io, &mut ());
    io.push_rx(0, to(GW0, s.segment(Side::Client, TcpFlags::SYN, 0)));
    w.poll(&mut io, &mut ());
    io.push_rx(
        1,
        to(
            GW1,
            s.segment(Side::Server, TcpFlags::SYN | TcpFlags::ACK, 0),
        ),
    );
    w.poll(&mut io, &mut ());
    io.push_rx(0, to(GW0, s.segment(Side::Client, TcpFlags::ACK, 0)));
    w.poll(&mut io, &mut ());
    let _ = (io.take_tx(0), io.take_tx(1));
    assert_eq!(w.state().flows().len(), 1, "the connection is tracked");

    let mut now = w.state().now() + 1_000_000;
    std::thread::sleep(std::time::Duration::from_millis(200));
    for window in 0..3 {
        // Prepared outside the measured region: the frames (moved, never copied, by the
        // worker), room for what the ports send and a pool for the gateway's own frames.
        let frames: Vec<Vec<(u16, Vec<u8>)>> = (0..ROUNDS).map(|_| round(&mut s)).collect();
        io.reserve_tx(0, 64 * ROUNDS);
        io.reserve_tx(1, 64 * ROUNDS);
        io.set_tx_pool(8 * ROUNDS, 2048);
        io.reserve_rx(0, 32);
        io.reserve_rx(1, 32);
        let before = Stats::collect([&**w.counters()]);
        let region = Region::new(GLOBAL);
        for r in frames {
            // 100 ms per round: the ICMP error rate limit (100/s) never bites.
            now += 100_000;
            w.state_mut().set_now(now);
            for (port, f) in r {
                io.push_rx(port, f);
            }
            while io.rx_pending(0) + io.rx_pending(1) > 0 {
                w.poll(&mut io, &mut ());
            }
        }
        let change = region.change();
        assert_eq!(change.allocations, 0, "window {window}: {change:?}");
        assert_eq!(change.reallocations, 0, "window {window}: {change:?}");
        let after = Stats::collect([&**w.counters()]);
        let (sent0, sent1) = (io.take_tx(0), io.take_tx(1));
        // Every path ran: answers and time exceeded out of port 0 with the data to A, data to
        // B out of port 1, the denied and expired datagrams dropped.
        assert_eq!(
            sent1.len(),
            8 * ROUNDS,
            "window {window}: {:?}",
            after.nonzero_drops().collect::<Vec<_>>()
        );
        assert_eq!(sent0.len(), (8 + 3) * ROUNDS, "window {window}");
        let drops = |r| after.drops(r) - before.drops(r);
        assert_eq!(drops(DropReason::Policy), ROUNDS as u64);
        assert_eq!(drops(DropReason::TtlExceeded), ROUNDS as u64);
        assert_eq!(
            after.total_drops() - before.total_drops(),
            2 * ROUNDS as u64
        );
    }
}
