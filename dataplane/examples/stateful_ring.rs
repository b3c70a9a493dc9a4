//! Per-packet cost of the *stateful* worker without DPDK: established UDP flows (a query and a
//! reply each) circulate between two in-memory ring ports while the worker enforces a 10K-rule
//! policy (flow table hit, conntrack, cached decision). Prints packets per second; run it under
//! `valgrind --tool=callgrind` for an instruction count per packet:
//!
//! ```sh
//! cargo build --release --example stateful_ring -p septa-dataplane
//! valgrind --tool=callgrind target/release/examples/stateful_ring 20000 [flows] [allow-all|mixed]
//! ```
//!
//! `mixed` circulates the established traffic of `septa-bench forward --mode stateful` instead:
//! half the flows TCP (handshake in a warm-up, then 8-byte data segments both ways, which stay
//! inside the window when they come round again), half UDP, every fourth flow IPv6.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use septa_classifier::synth::{Profile, classbench_like};
use septa_classifier::{Action, AddrMatch, Prefix, Rule, TableCell, compile};
use septa_dataplane::events::EventSink;
use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::testgen::{FrameBuilder, Side, TcpSession};
use septa_dataplane::{Bridge, Decision, StateConfig, Worker, WorkerState};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1);

/// The bench's established mix: warm-up frames (handshakes, first queries) and the frames that
/// circulate (one data segment or query each way per flow).
fn mixed(flows: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut warm, mut steady) = (Vec::new(), Vec::new());
    for f in 0..flows {
        let sport = 1024 + (f % 60_000) as u16;
        let v6 = f % 4 == 3;
        let c4 = Ipv4Addr::from(0x0a00_0000 + f);
        let c6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (f >> 16) as u16, f as u16);
        if f % 2 == 0 {
            let mut s = if v6 {
                TcpSession::v6(c6, sport, SERVER6, 443)
            } else {
                TcpSession::v4(c4, sport, SERVER, 443)
            };
            warm.extend(s.handshake());
            steady.push(s.data(Side::Client, 8));
            steady.push(s.data(Side::Server, 8));
        } else {
            let (q, r) = if v6 {
                let b = FrameBuilder::new();
                (b.clone().ipv6(c6, SERVER6), b.ipv6(SERVER6, c6))
            } else {
                let b = FrameBuilder::new();
                (b.clone().ipv4(c4, SERVER), b.ipv4(SERVER, c4))
            };
            warm.push(q.clone().udp(sport, 53).payload_len(8).build());
            steady.push(q.udp(sport, 53).payload_len(8).build());
            steady.push(r.udp(53, sport).payload_len(8).build());
        }
    }
    (warm, steady)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let polls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let flows: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let variant = args.next();
    let allow_all = variant.as_deref() == Some("allow-all");
    let mix = variant.as_deref() == Some("mixed");
    let mut rules = vec![
        Rule {
            dst: AddrMatch::prefix(Prefix::v4(SERVER, 32)),
            ..Rule::any(0, Action::Allow)
        },
        Rule {
            dst: AddrMatch::prefix(Prefix::v6(SERVER6, 128)),
            ..Rule::any(1, Action::Allow)
        },
    ];
    rules.extend(
        classbench_like(Profile::Acl, 10_000, 7)
            .into_iter()
            .map(|mut r| {
                r.id.0 += 2;
                r
            }),
    );
    let cell = TableCell::new(compile(&rules).expect("the generated rules compile"));
    let decision = if allow_all {
        Decision::AllowAll
    } else {
        Decision::Table(cell.reader())
    };
    let mut cfg = StateConfig::new(1 << 16);
    cfg.flows.max_half_open = 1 << 16;
    let mut worker = Worker::with_state(
        Bridge::new(2, &[(0, 1)]).expect("a valid pair"),
        decision,
        WorkerState::new(&cfg, EventSink::disabled()).expect("a valid state configuration"),
    );
    let mut io = MemoryIo::new(2);
    if mix {
        let (warm, steady) = mixed(flows);
        for f in warm {
            io.push_rx(0, f);
        }
        while io.rx_pending(0) > 0 {
            worker.poll(&mut io, &mut ());
        }
        io.take_tx(1);
        io.ring(0, 1, 2 * flows as usize);
        for f in steady {
            io.push_rx(0, f);
        }
    } else {
        io.ring(0, 1, 2 * flows as usize);
    }
    for i in (0..flows).filter(|_| !mix) {
        let c = Ipv4Addr::from(0x0a00_0000 + i);
        let sport = 1024 + (i % 60_000) as u16;
        io.push_rx(
            0,
            FrameBuilder::new().ipv4(c, SERVER).udp(sport, 53).build(),
        );
        io.push_rx(
            0,
            FrameBuilder::new().ipv4(SERVER, c).udp(53, sport).build(),
        );
    }
    // Warm the flow table: every flow sees its query and its reply.
    for _ in 0..(2 * flows as usize).div_ceil(32) + 4 {
        worker.poll(&mut io, &mut ());
    }
    let start = Instant::now();
    let mut packets = 0;
    for _ in 0..polls {
        packets += worker.poll(&mut io, &mut ());
    }
    let secs = start.elapsed().as_secs_f64();
    let s = septa_dataplane::Stats::collect([&**worker.counters()]);
    println!(
        "packets={packets} seconds={secs:.3} mpps={:.2} drops={} flows={}",
        packets as f64 / secs / 1e6,
        s.total_drops(),
        worker.state().flows().len()
    );
}
