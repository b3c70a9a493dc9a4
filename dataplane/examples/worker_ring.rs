//! Per-packet cost of the worker without DPDK: 64 IPv4/UDP frames circulate between two
//! in-memory ring ports through an allow-all bridge. Prints packets per second; run it under
//! `valgrind --tool=callgrind` for an instruction count per packet that does not depend on how
//! busy the machine is:
//!
//! ```sh
//! cargo build --release --example worker_ring -p septa-dataplane
//! valgrind --tool=callgrind target/release/examples/worker_ring 20000
//! ```

use std::time::Instant;

use septa_dataplane::io::memory::MemoryIo;
use septa_dataplane::testgen::FrameBuilder;
use septa_dataplane::{Bridge, Decision, Worker};

fn main() {
    let polls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let mut io = MemoryIo::new(2);
    io.ring(0, 1, 64);
    for i in 0..64u16 {
        let frame = FrameBuilder::new()
            .ipv4([198, 18, 0, 1].into(), [198, 18, 0, 2].into())
            .udp(1024 + i, 9)
            .seq(u64::from(i))
            .payload_len(18)
            .build();
        io.push_rx(i % 2, frame);
    }
    let mut worker = Worker::new(Bridge::consecutive_pairs(2), Decision::AllowAll);
    let start = Instant::now();
    let mut packets = 0;
    for _ in 0..polls {
        packets += worker.poll(&mut io, &mut ());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "packets={packets} seconds={secs:.3} mpps={:.2}",
        packets as f64 / secs / 1e6
    );
}
