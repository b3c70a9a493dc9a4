//! Memory per flow (always runs) and a quick new-flow setup rate (ignored; run with
//! `cargo test --release -p septa-dataplane --test flow_table_perf -- --ignored --nocapture`).

use std::net::Ipv4Addr;
use std::time::Instant;

use septa_classifier::FlowKey;
use septa_dataplane::conntrack::{self, Conn};
use septa_dataplane::flow::{FlowEntry, FlowTable, FlowTableConfig, Lookup, TimeoutClass};
use septa_dataplane::parse::{TcpFlags, parse};
use septa_dataplane::testgen::FrameBuilder;

#[test]
fn memory_per_flow_is_within_256_bytes() {
    let capacity = 1 << 20;
    let total = FlowTable::<Conn>::memory_for(capacity, 4096);
    let per_flow = total as f64 / capacity as f64;
    println!(
        "flow entry {} B, conntrack state {} B; 2^20 flows: {} MiB total, {per_flow:.1} B/flow",
        std::mem::size_of::<FlowEntry<Conn>>(),
        std::mem::size_of::<Conn>(),
        total >> 20
    );
    assert!(per_flow <= 256.0, "{per_flow} bytes per flow");
    assert!(total <= 256 << 20, "1M flows must fit in 256 MiB");
    // A real (small) table reports the same formula.
    let t: FlowTable<Conn> = FlowTable::new(&FlowTableConfig::new(1024, 1000), [0, 0]).unwrap();
    assert_eq!(t.memory_bytes(), FlowTable::<Conn>::memory_for(1024, 4096));
}

fn keys(n: u32) -> Vec<FlowKey> {
    (0..n)
        .map(|i| {
            FlowKey::v4(
                Ipv4Addr::from(0x0a00_0000 + (i >> 8)),
                Ipv4Addr::new(192, 168, 0, 1),
                6,
                1024 + (i & 0xff) as u16,
                443,
            )
        })
        .collect()
}

#[test]
#[ignore = "timing; run in release"]
fn new_flow_setup_rate() {
    let n = 1u32 << 20;
    let cfg = FlowTableConfig {
        max_half_open: n as usize,
        ..FlowTableConfig::new(n as usize, 1_000_000_000)
    };
    let ks = keys(n);
    // Raw table: lookup miss + insert.
    let mut t: FlowTable<Conn> = FlowTable::new(&cfg, [11, 12]).unwrap();
    let start = Instant::now();
    for (i, k) in ks.iter().enumerate() {
        if let Lookup::Miss(v) = t.lookup(k) {
            t.insert(v, Conn::default(), TimeoutClass::TcpSynSent, i as u64)
                .unwrap();
        }
    }
    let dt = start.elapsed().as_secs_f64();
    println!(
        "flow table: {n} inserts in {:.3} s = {:.2} M inserts/s",
        dt,
        n as f64 / dt / 1e6
    );
    let start = Instant::now();
    let mut hits = 0;
    for k in &ks {
        if let Lookup::Hit { .. } = t.lookup(&k.reversed()) {
            hits += 1;
        }
    }
    let dt = start.elapsed().as_secs_f64();
    assert_eq!(hits, n);
    println!(
        "flow table: {n} reply-direction hits in {:.3} s = {:.2} M lookups/s",
        dt,
        n as f64 / dt / 1e6
    );

    // Conntrack over parsed SYN frames (parse excluded from the timing: frames pre-parsed).
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            FrameBuilder::new()
                .ipv4(
                    Ipv4Addr::from(0x0a00_0000 + (i >> 8)),
                    Ipv4Addr::new(192, 168, 0, 1),
                )
                .tcp(1024 + (i & 0xff) as u16, 443, TcpFlags::SYN)
                .build()
        })
        .collect();
    let parsed: Vec<_> = frames.iter().map(|f| parse(f).unwrap()).collect();
    let mut t: FlowTable<Conn> = FlowTable::new(&cfg, [13, 14]).unwrap();
    let start = Instant::now();
    for (i, (p, f)) in parsed.iter().zip(&frames).enumerate() {
        conntrack::track(&mut t, p, f, i as u64).unwrap();
    }
    let dt = start.elapsed().as_secs_f64();
    println!(
        "conntrack SYN setup: {n} flows in {:.3} s = {:.2} M flows/s",
        dt,
        n as f64 / dt / 1e6
    );
    assert_eq!(t.len(), n as usize);
}
