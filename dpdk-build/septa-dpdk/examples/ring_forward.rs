//! Measures the wrapper's forwarding cost: frames circulate between two `net_ring` ports (each
//! port loops tx back into its own rx) while one lcore moves every burst received on one port
//! to the other, like testpmd's io forwarding.
//!
//! `cargo run --release -p septa-dpdk --example ring_forward [seconds]`

use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use septa_dpdk::{DpdkError, Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig};

const BURST: usize = 32;
const IN_FLIGHT: u32 = 512;

fn main() -> Result<(), DpdkError> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let prefix = septa_dpdk::unique_file_prefix("ring-forward");
    let mut args = vec![
        "-l".to_owned(),
        "0".to_owned(),
        "--no-pci".to_owned(),
        "--no-telemetry".to_owned(),
        "--file-prefix".to_owned(),
        prefix.clone(),
        "--vdev=net_ring0".to_owned(),
        "--vdev=net_ring1".to_owned(),
    ];
    args.extend(septa_dpdk::eal_memory_args());
    let eal = Eal::init(&args)?;
    let pool = Mempool::create(
        &eal,
        &MempoolConfig {
            name: "fwd".into(),
            mbufs: 4095,
            cache_size: 256,
            data_room: Mempool::DEFAULT_DATA_ROOM,
            socket: None,
        },
    )?;
    let ports = [
        Port::by_name(&eal, "net_ring0")?,
        Port::by_name(&eal, "net_ring1")?,
    ];
    let mut queues = Vec::new();
    for port in ports {
        let mut cfg = port.configure(&PortConfig {
            queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            pool,
        })?;
        port.start()?;
        queues.push(cfg.queues.remove(0));
    }
    // Seed the loop.
    let mut seed = ArrayVec::<Mbuf, BURST>::new();
    for _ in 0..IN_FLIGHT / BURST as u32 {
        while !seed.is_full() {
            seed.push(Mbuf::from_slice(&pool, &[0u8; 64])?);
        }
        queues[0].tx_burst(&mut seed);
        seed.clear();
    }

    let (mut moved, mut dropped) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut burst = ArrayVec::<Mbuf, BURST>::new();
    while Instant::now() < deadline {
        for _ in 0..1024 {
            for from in 0..2 {
                let got = queues[from].rx_burst(&mut burst);
                let sent = queues[1 - from].tx_burst(&mut burst);
                moved += sent as u64;
                dropped += (got - sent) as u64;
                burst.clear();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "forwarded={moved} dropped={dropped} seconds={secs:.2} mpps={:.1} ns_per_pkt={:.2}",
        moved as f64 / secs / 1e6,
        secs * 1e9 / moved.max(1) as f64
    );
    drop(queues);
    for port in ports {
        port.stop()?;
        port.close()?;
    }
    // The EAL's runtime directory (config and sockets) outlives the process otherwise.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    Ok(())
}
