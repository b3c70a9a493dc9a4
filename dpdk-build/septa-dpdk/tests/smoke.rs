//! DPDK smoke tests on vdevs. The EAL initialises once per process, so each scenario runs in a
//! child process: the parent test re-executes this test binary with `--exact child_...` and
//! `SEPTA_DPDK_SMOKE_CHILD` set, and checks the child's exit status and its `SMOKE-OK` line.
//! Each child has its own `--file-prefix` and uses hugepages when usable, else `--no-huge`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use septa_dpdk::{DpdkError, Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig};

const CHILD_ENV: &str = "SEPTA_DPDK_SMOKE_CHILD";
const PREFIX_ENV: &str = "SEPTA_DPDK_SMOKE_PREFIX";
const BURST: usize = 32;

/// Counts heap allocations, to prove the burst path allocates nothing.
struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator, which upholds GlobalAlloc's
// contract; counting has no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours: layout has non-zero size (caller's obligation).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was returned by System.alloc with this layout (caller's obligation).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `child` in a fresh process and asserts that it reached its end.
fn run_child(child: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let prefix = format!("septa-smoke-{}-{child}", std::process::id());
    let out = Command::new(exe)
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, child)
        .env(PREFIX_ENV, &prefix)
        .output()
        .expect("spawn child test process");
    // The EAL leaves its runtime directory behind (config, sockets); hugepage files are gone
    // thanks to --huge-unlink.
    for run_dir in ["/var/run/dpdk", "/run/dpdk"] {
        let _ = std::fs::remove_dir_all(format!("{run_dir}/{prefix}"));
    }
    if let Ok(xdg) = std::env::var("XDG_RUNTIME_DIR") {
        let _ = std::fs::remove_dir_all(format!("{xdg}/dpdk/{prefix}"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {child} stdout ---\n{stdout}\n--- {child} stderr ---\n{stderr}");
    assert!(out.status.success(), "{child} failed: {}", out.status);
    assert!(
        stdout.contains(&format!("SMOKE-OK {child}")),
        "{child} did not run to its end"
    );
}

/// True in the child process that should run `child`.
fn is_child(child: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == child)
}

fn eal_args(lcores: &str, vdevs: &[&str]) -> Vec<String> {
    let prefix = std::env::var(PREFIX_ENV).expect("run by run_child");
    let mut args = vec![
        "-l".to_owned(),
        lcores.to_owned(),
        "--file-prefix".to_owned(),
        prefix,
        "--no-pci".to_owned(),
        "--no-telemetry".to_owned(),
    ];
    args.extend(septa_dpdk::eal_memory_args());
    args.extend(vdevs.iter().map(|v| format!("--vdev={v}")));
    println!("EAL args: {args:?}");
    args
}

fn pool(eal: &Eal, name: &str, mbufs: u32) -> Mempool {
    Mempool::create(
        eal,
        &MempoolConfig {
            name: name.into(),
            mbufs,
            cache_size: 32,
            data_room: Mempool::DEFAULT_DATA_ROOM,
            socket: None,
        },
    )
    .expect("mempool")
}

/// A 60-byte Ethernet frame (local experimental ethertype) carrying `seq`.
fn frame(seq: u32) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
    f
}

#[test]
fn ring_loopback_exact_counts_and_ownership() {
    run_child("child_ring_loopback");
}

#[test]
fn null_rss_and_worker_lcore() {
    run_child("child_null_rss_lcore");
}

#[test]
fn pcap_vdev_reads_and_writes_files() {
    run_child("child_pcap_files");
}

#[test]
fn bad_eal_argument_is_an_error_with_text() {
    run_child("child_bad_eal_arg");
}

#[test]
fn child_ring_loopback() {
    if !is_child("child_ring_loopback") {
        return;
    }
    let eal = Eal::init(&eal_args("0", &["net_ring0", "net_ring1"])).expect("EAL init");
    assert_eq!(
        Eal::init(&[]).unwrap_err(),
        DpdkError::EalAlreadyInitialised
    );
    assert_eq!(Port::count(&eal), 2);
    let pool = pool(&eal, "smoke_ring", 2047);

    let ring0 = Port::by_name(&eal, "net_ring0").expect("net_ring0");
    let ring1 = Port::by_name(&eal, "net_ring1").expect("net_ring1");
    assert_eq!(Port::by_index(&eal, ring1.id()).unwrap(), ring1);
    assert!(matches!(
        Port::by_name(&eal, "net_ring9"),
        Err(DpdkError::PortNotFound(_))
    ));
    assert!(Port::by_index(&eal, 31).is_err());
    let caps = ring0.capabilities().expect("caps");
    println!("net_ring caps: {caps:?}");
    assert_eq!(caps.driver, "net_ring");

    let cfg = PortConfig {
        queues: 1,
        rx_desc: 512,
        tx_desc: 512,
        pool,
    };
    let mut c0 = ring0.configure(&cfg).expect("configure ring0");
    let mut c1 = ring1.configure(&cfg).expect("configure ring1");
    assert!(matches!(
        ring0.configure(&cfg),
        Err(DpdkError::PortAlreadyConfigured(_))
    ));
    assert!(!c0.rss, "RSS with one queue");
    for p in [ring0, ring1] {
        p.start().expect("start");
        println!(
            "promiscuous supported: {}",
            p.enable_promiscuous().expect("promisc")
        );
        println!(
            "link: {:?} mac: {:02x?}",
            p.link().expect("link"),
            p.mac_addr().expect("mac")
        );
    }
    let mut q0 = c0.queues.remove(0);
    let mut q1 = c1.queues.remove(0);
    let idle = pool.avail_count();
    println!(
        "pool: {} avail, {} in use after setup",
        idle,
        pool.in_use_count()
    );

    // Offer more than the ring holds, without receiving: the PMD accepts what fits and the rest
    // must come back to us, in order.
    const OFFERED: u32 = 1100;
    let mut accepted = 0u32;
    let mut returned = 0u32;
    let mut seq = 0u32;
    while seq < OFFERED {
        let mut burst = ArrayVec::<Mbuf, BURST>::new();
        while !burst.is_full() && seq < OFFERED {
            burst.push(Mbuf::from_slice(&pool, &frame(seq)).expect("alloc"));
            seq += 1;
        }
        let len = burst.len();
        let sent = q0.tx_burst(&mut burst);
        assert_eq!(sent + burst.len(), len);
        if let Some(first) = burst.first() {
            // The leftovers are the tail of what we offered, still in order.
            let first_seq = u32::from_be_bytes(first.data()[14..18].try_into().unwrap());
            assert_eq!(first_seq, seq - len as u32 + sent as u32);
        }
        accepted += sent as u32;
        returned += burst.len() as u32;
    }
    println!("net_ring accepted {accepted} of {OFFERED}, returned {returned}");
    assert_eq!(accepted + returned, OFFERED);
    assert!(returned > 0, "net_ring's ring should fill up");
    assert_eq!(
        pool.avail_count(),
        idle - accepted,
        "rejected mbufs went back to the pool"
    );

    // net_ring created by --vdev loops tx back into rx of the same port, not the other port.
    let mut got = Vec::new();
    loop {
        let mut burst = ArrayVec::<Mbuf, BURST>::new();
        let n = q0.rx_burst(&mut burst);
        assert_eq!(n, burst.len());
        if n == 0 {
            break;
        }
        got.extend(burst);
    }
    let mut other = ArrayVec::<Mbuf, BURST>::new();
    assert_eq!(q1.rx_burst(&mut other), 0, "nothing crosses to net_ring1");
    assert_eq!(got.len() as u32, accepted);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.data(), &frame(i as u32), "payload of packet {i}");
        assert_eq!(m.len(), 60);
    }
    // data_mut writes in place.
    got[0].data_mut()[0] = 0xff;
    assert_eq!(got[0].data()[0], 0xff);
    assert_eq!(pool.avail_count(), idle - accepted);
    drop(got);
    assert_eq!(
        pool.avail_count(),
        idle,
        "dropping Mbufs returns them to the pool"
    );

    let tooth = vec![0u8; 4000];
    assert!(matches!(
        Mbuf::from_slice(&pool, &tooth),
        Err(DpdkError::MbufTooSmall { .. })
    ));
    assert_eq!(pool.avail_count(), idle);

    let stats = ring0.stats().expect("stats");
    println!("ring0 stats: {stats:?}");
    assert_eq!(stats.tx_packets, u64::from(accepted));
    assert_eq!(stats.rx_packets, u64::from(accepted));
    let xstats = ring0.xstats().expect("xstats");
    println!("ring0 xstats: {xstats:?}");
    assert!(
        xstats
            .iter()
            .any(|(n, v)| n == "rx_good_packets" && *v == u64::from(accepted))
    );

    // Steady state: alloc, tx, rx and free 32 frames per round, with no heap allocation.
    let probe = ALLOCATIONS.load(Ordering::Relaxed);
    drop(std::hint::black_box(vec![0u8; 1]));
    assert!(
        ALLOCATIONS.load(Ordering::Relaxed) > probe,
        "the counter counts"
    );
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut rounds_ok = 0;
    for round in 0..1000u32 {
        let mut burst = ArrayVec::<Mbuf, BURST>::new();
        while !burst.is_full() {
            match Mbuf::from_slice(&pool, &frame(round)) {
                Ok(m) => burst.push(m),
                Err(_) => break,
            }
        }
        let sent = q0.tx_burst(&mut burst);
        let mut back = ArrayVec::<Mbuf, BURST>::new();
        let got = q0.rx_burst(&mut back);
        if sent == BURST && got == BURST && burst.is_empty() {
            rounds_ok += 1;
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(rounds_ok, 1000);
    assert_eq!(allocations, 0, "heap allocations in 1000 burst rounds");
    assert_eq!(pool.avail_count(), idle);

    assert!(matches!(
        ring0.stop(),
        Err(DpdkError::PortBusy { port: _, live: 1 })
    ));
    drop(q0);
    drop(q1);
    for p in [ring0, ring1] {
        p.stop().expect("stop");
        p.close().expect("close");
    }
    println!("SMOKE-OK child_ring_loopback");
}

#[test]
fn child_null_rss_lcore() {
    if !is_child("child_null_rss_lcore") {
        return;
    }
    let eal = Eal::init(&eal_args("0-1", &["net_null0"])).expect("EAL init");
    assert_eq!(eal.worker_lcores(), vec![1]);
    assert_eq!(septa_dpdk::current_lcore(), Some(eal.main_lcore()));
    assert!(
        eal.launch(eal.main_lcore(), || 0).is_err(),
        "main lcore cannot be launched on"
    );
    let pool = pool(&eal, "smoke_null", 4095);
    let port = Port::by_name(&eal, "net_null0").expect("net_null0");
    let caps = port.capabilities().expect("caps");
    println!("net_null caps: {caps:?}");
    let mut cfg = port
        .configure(&PortConfig {
            queues: 2,
            rx_desc: 256,
            tx_desc: 256,
            pool,
        })
        .expect("configure 2 queues");
    println!("net_null rss enabled: {}", cfg.rss);
    assert_eq!(cfg.rss, caps.rss_offloads != 0);
    port.start().expect("start");
    if cfg.rss {
        let rss = port.rss_hash_config().expect("rss conf");
        println!("net_null rss conf: {rss:02x?}");
        assert!(
            rss.key.chunks(2).all(|c| c == [0x6d, 0x5a]),
            "symmetric key reached the PMD"
        );
        assert_ne!(rss.hash_types, 0);
    }
    let mut q1 = cfg.queues.pop().expect("queue 1");
    let q0 = cfg.queues.pop().expect("queue 0");
    assert_eq!((q0.queue(), q1.queue()), (0, 1));

    // A worker on lcore 1 polls queue 1: net_null's rx generates frames from the pool, tx
    // consumes them.
    eal.launch(1, move || {
        let lcore = septa_dpdk::current_lcore().map_or(-1, |l| l as i32);
        let mut received = 0;
        for _ in 0..10 {
            let mut burst = ArrayVec::<Mbuf, BURST>::new();
            received += q1.rx_burst(&mut burst);
            q1.tx_burst(&mut burst);
        }
        if lcore == 1 {
            i32::try_from(received).unwrap_or(-2)
        } else {
            -1
        }
    })
    .expect("launch");
    let received = eal.wait(1);
    println!("worker on lcore 1 received {received}");
    assert_eq!(received, 10 * BURST as i32);
    assert!(matches!(
        port.stop(),
        Err(DpdkError::PortBusy { live: 1, .. })
    ));
    drop(q0);
    eal.wait_all();
    port.stop().expect("stop");
    println!("stats: {:?}", port.stats().expect("stats"));
    port.close().expect("close");
    println!("SMOKE-OK child_null_rss_lcore");
}

#[test]
fn child_bad_eal_arg() {
    if !is_child("child_bad_eal_arg") {
        return;
    }
    let mut args = eal_args("0", &[]);
    args.push("--definitely-not-an-eal-option".into());
    let err = Eal::init(&args).expect_err("bad argument must fail");
    println!("error: {err}");
    match &err {
        DpdkError::EalInit { errno, message } => {
            assert!(*errno > 0);
            assert!(!message.is_empty());
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        Eal::init(&[]).unwrap_err(),
        DpdkError::EalAlreadyInitialised
    );
    assert!(matches!(
        Eal::init(&["a\0b".into()]),
        Err(DpdkError::InvalidArgument(_))
    ));
    println!("SMOKE-OK child_bad_eal_arg");
}

/// A classic pcap file (microsecond timestamps, Ethernet) holding `frames`.
fn pcap_bytes(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]); // thiszone, sigfigs
    out.extend(65535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend((i as u32).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(f);
    }
    out
}

/// The frames of a classic little-endian pcap file (any timestamp resolution).
fn pcap_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        frames.push(bytes[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    frames
}

#[test]
fn child_pcap_files() {
    if !is_child("child_pcap_files") {
        return;
    }
    let dir = std::env::temp_dir().join(std::env::var(PREFIX_ENV).expect("prefix"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (rx_file, tx_file) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let frames: Vec<Vec<u8>> = (0..100u32).map(|seq| frame(seq).to_vec()).collect();
    std::fs::write(&rx_file, pcap_bytes(&frames)).expect("write pcap");
    let vdev = format!(
        "net_pcap0,rx_pcap={},tx_pcap={}",
        rx_file.display(),
        tx_file.display()
    );
    let eal = Eal::init(&eal_args("0", &[&vdev])).expect("EAL init");
    let pool = pool(&eal, "smoke_pcap", 1023);
    let port = Port::by_name(&eal, "net_pcap0").expect("net_pcap0");
    println!("net_pcap caps: {:?}", port.capabilities().expect("caps"));
    let mut cfg = port
        .configure(&PortConfig {
            queues: 1,
            rx_desc: 256,
            tx_desc: 256,
            pool,
        })
        .expect("configure");
    port.start().expect("start");
    let mut q = cfg.queues.remove(0);
    let mut seen = 0;
    for _ in 0..100 {
        let mut burst = ArrayVec::<Mbuf, BURST>::new();
        if q.rx_burst(&mut burst) == 0 {
            break;
        }
        for m in &burst {
            assert_eq!(
                m.data(),
                frames[seen].as_slice(),
                "frame {seen} read from the file"
            );
            seen += 1;
        }
        let n = burst.len();
        assert_eq!(q.tx_burst(&mut burst), n, "net_pcap takes every frame");
    }
    assert_eq!(
        seen,
        frames.len(),
        "net_pcap delivers the file once, in order"
    );
    drop(q);
    port.stop().expect("stop");
    port.close().expect("close");
    let written = pcap_frames(&std::fs::read(&tx_file).expect("read tx pcap"));
    assert_eq!(
        written, frames,
        "net_pcap wrote every transmitted frame, in order"
    );
    let _ = std::fs::remove_dir_all(&dir);
    println!("SMOKE-OK child_pcap_files");
}
