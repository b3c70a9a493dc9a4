//! The DPDK port backend (feature `dpdk`): one [`DpdkIo`] per worker, holding that worker's rx/tx
//! queue on every port, and the helpers that bring ports up and down.
//!
//! How `septa run` uses it, on the main thread:
//! 1. `let eal = Eal::init(&config.dpdk.eal_args)?;` — once per process; the args carry `-l`,
//!    `--vdev`s, `--file-prefix` and the memory choice (`septa_dpdk::eal_memory_args()`).
//! 2. `let pool = create_pool(&eal, "septa_mbufs", mbufs_needed(..))?;`
//! 3. `let DpdkPorts { ports, workers } = setup_ports(&eal, &PortSetup::new(specs, n, pool))?;`
//!    with `n = eal.worker_lcores().len()`: each port gets `n` rx and `n` tx queues, symmetric RSS
//!    where the device supports it, promiscuous mode where it exists, and is started.
//! 4. For each `(lcore, io)` in `eal.worker_lcores().into_iter().zip(workers)`:
//!    `eal.launch(lcore, move || run_worker(io, ..))?` — `DpdkIo` is `Send + 'static`; the job
//!    returns an `i32` exit code.
//! 5. Signal stop (e.g. an `AtomicBool` the workers poll once per burst), then `eal.wait_all()`.
//! 6. `stop_ports(&ports)?` — refused (`PortBusy`) while any `DpdkIo` is alive, so it must come
//!    after the workers returned (and dropped their `DpdkIo`).
//! 7. Print `info.port.stats()?` and `info.port.xstats()?` for each `info` in `ports`, then
//!    `close_ports(&ports)?`. The EAL is not cleaned up; process exit releases its memory.
//!
//! Every port gets one rx and one tx queue per worker, so every port must offer that many
//! queues: `net_ring` has 16, `net_null` 1024, but `net_pcap` has one queue per
//! `rx_pcap=`/`tx_pcap=` pair and `net_af_packet` `qpairs=N` (default 1). With fewer, setup
//! fails with a `PortCapability` error naming the limit.
//!
//! Port ids inside [`PacketIo`] are the dense indices of [`PortSetup::ports`] (0, 1, ...), not
//! DPDK port ids; [`PortInfo`] maps one to the other. The burst calls never allocate.

use std::fmt;
use std::str::FromStr;

pub use septa_dpdk;
pub use septa_dpdk::{
    DpdkError, Eal, LinkStatus, Mbuf, Mempool, MempoolConfig, Port, PortStats, eal_memory_args,
};
use septa_dpdk::{PortConfig, PortQueue};

use super::{Burst, PacketBuf, PacketIo, PortId};

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline]
    fn prefetch(&self) {
        Mbuf::prefetch(self)
    }
}

/// One worker's view of the DPDK ports: queue `queue` of every configured port.
#[derive(Debug)]
pub struct DpdkIo {
    queue: u16,
    /// Indexed by the dense port index.
    ports: Vec<PortQueue>,
    /// The pool the rx queues fill from; [`PacketIo::alloc_tx`] takes from it too.
    pool: Mempool,
}

impl DpdkIo {
    /// The rx/tx queue number this worker polls on every port.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// DPDK port ids, in dense-index order.
    pub fn dpdk_port_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().map(PortQueue::port)
    }
}

impl PacketIo for DpdkIo {
    type Buf = Mbuf;

    fn port_count(&self) -> u16 {
        // At most MAX_PORTS (32) entries: setup_ports resolves each to a distinct DPDK port.
        u16::try_from(self.ports.len()).unwrap_or(u16::MAX)
    }

    #[inline]
    fn rx_burst(&mut self, port: PortId, out: &mut Burst<Mbuf>) -> usize {
        self.ports
            .get_mut(usize::from(port))
            .map_or(0, |q| q.rx_burst(out))
    }

    #[inline]
    fn tx_burst(&mut self, port: PortId, pkts: &mut Burst<Mbuf>) -> usize {
        self.ports
            .get_mut(usize::from(port))
            .map_or(0, |q| q.tx_burst(pkts))
    }

    fn alloc_tx(&mut self, port: PortId, frame: &[u8]) -> Option<Mbuf> {
        // An exhausted pool is the rare case; its error (which names the pool) is dropped
        // here and the caller retries on a later poll.
        if usize::from(port) >= self.ports.len() {
            return None;
        }
        Mbuf::from_slice(&self.pool, frame).ok()
    }
}

/// A port as named in the configuration: a DPDK port id or a device name (`net_ring0`,
/// `net_af_packet0`, `0000:01:00.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// DPDK port id.
    Index(u16),
    /// Device name.
    Name(String),
}

impl FromStr for PortSpec {
    type Err = std::convert::Infallible;

    /// All digits: an index; anything else: a name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse::<u16>() {
            Ok(i) if s.bytes().all(|b| b.is_ascii_digit()) => PortSpec::Index(i),
            _ => PortSpec::Name(s.to_owned()),
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Index(i) => write!(f, "port {i}"),
            PortSpec::Name(n) => write!(f, "{n}"),
        }
    }
}

/// What [`setup_ports`] brings up.
#[derive(Debug, Clone)]
pub struct PortSetup {
    /// Ports in dense-index order: `ports[i]` is port `i` for the workers.
    pub ports: Vec<PortSpec>,
    /// Number of workers = rx queues = tx queues per port.
    pub workers: u16,
    /// Rx descriptors per queue (adjusted to the device).
    pub rx_desc: u16,
    /// Tx descriptors per queue (adjusted to the device).
    pub tx_desc: u16,
    /// Pool the rx queues fill from.
    pub pool: Mempool,
}

impl PortSetup {
    /// Default descriptor count per queue (rx and tx).
    pub const DEFAULT_DESC: u16 = 1024;

    /// `ports` with `workers` queues each and default descriptor counts.
    pub fn new(ports: Vec<PortSpec>, workers: u16, pool: Mempool) -> Self {
        PortSetup {
            ports,
            workers,
            rx_desc: Self::DEFAULT_DESC,
            tx_desc: Self::DEFAULT_DESC,
            pool,
        }
    }
}

/// A port that is up.
#[derive(Debug, Clone)]
pub struct PortInfo {
    /// Dense index used in [`PacketIo`] calls.
    pub index: PortId,
    /// The DPDK port (for stats, xstats, link).
    pub port: Port,
    /// DPDK's device name.
    pub name: String,
    /// Driver name (`net_ring`, `net_af_packet`, ...).
    pub driver: String,
    /// MAC address.
    pub mac: [u8; 6],
    /// Symmetric RSS is on (device supports RSS and there is more than one worker).
    pub rss: bool,
    /// Promiscuous mode is on (false where the device has no such mode).
    pub promiscuous: bool,
    /// Descriptors per rx queue after adjustment.
    pub rx_desc: u16,
    /// Descriptors per tx queue after adjustment.
    pub tx_desc: u16,
}

/// Ports that are up, and one I/O handle per worker (`workers[w]` polls queue `w`).
#[derive(Debug)]
pub struct DpdkPorts {
    /// The ports, in dense-index order.
    pub ports: Vec<PortInfo>,
    /// One per worker.
    pub workers: Vec<DpdkIo>,
}

/// Errors while bringing ports up or down.
#[derive(Debug, thiserror::Error)]
pub enum DpdkSetupError {
    /// The setup itself is inconsistent.
    #[error("DPDK port setup: {0}")]
    Invalid(String),
    /// A DPDK call failed for this port.
    #[error("{spec}: {source}")]
    Port {
        /// The port as configured.
        spec: String,
        /// DPDK's error.
        #[source]
        source: DpdkError,
    },
}

/// Mbufs a pool needs so that every rx ring can be filled and every tx ring held, plus per-lcore
/// caches and a burst in flight per worker and port, with 25% slack.
pub fn mbufs_needed(ports: u16, workers: u16, rx_desc: u16, tx_desc: u16, cache: u32) -> u32 {
    let (ports, workers) = (u32::from(ports), u32::from(workers));
    let rings = ports * workers * (u32::from(rx_desc) + u32::from(tx_desc));
    let per_worker = workers * (cache + ports * super::BURST as u32);
    (rings + per_worker).saturating_mul(5) / 4
}

/// Creates the packet pool with DPDK's default data room (fits a 1518-byte frame) and a
/// per-lcore cache of up to 256 mbufs.
pub fn create_pool(eal: &Eal, name: &str, mbufs: u32) -> Result<Mempool, DpdkError> {
    Mempool::create(
        eal,
        &MempoolConfig {
            name: name.to_owned(),
            mbufs,
            cache_size: (mbufs * 2 / 3).min(256),
            data_room: Mempool::DEFAULT_DATA_ROOM,
            socket: None,
        },
    )
}

/// Resolves, configures and starts the ports of `setup`. On error, ports already started are
/// stopped again (best effort) before the error is returned.
pub fn setup_ports(eal: &Eal, setup: &PortSetup) -> Result<DpdkPorts, DpdkSetupError> {
    if setup.workers == 0 {
        return Err(DpdkSetupError::Invalid(
            "at least one worker is needed".into(),
        ));
    }
    if setup.ports.is_empty() {
        return Err(DpdkSetupError::Invalid("no ports configured".into()));
    }
    let mut resolved: Vec<Port> = Vec::with_capacity(setup.ports.len());
    for spec in &setup.ports {
        let port = match spec {
            PortSpec::Index(i) => Port::by_index(eal, *i),
            PortSpec::Name(n) => Port::by_name(eal, n),
        }
        .map_err(|source| DpdkSetupError::Port {
            spec: spec.to_string(),
            source,
        })?;
        if resolved.contains(&port) {
            return Err(DpdkSetupError::Invalid(format!("{spec} is listed twice")));
        }
        resolved.push(port);
    }

    let mut infos = Vec::with_capacity(resolved.len());
    let mut queues_per_port = Vec::with_capacity(resolved.len());
    for ((index, port), spec) in (0..).zip(&resolved).zip(&setup.ports) {
        match bring_up(index, *port, setup) {
            Ok((info, queues)) => {
                infos.push(info);
                queues_per_port.push(queues.into_iter());
            }
            Err(source) => {
                drop(queues_per_port);
                for info in &infos {
                    let _ = info.port.stop();
                }
                return Err(DpdkSetupError::Port {
                    spec: spec.to_string(),
                    source,
                });
            }
        }
    }

    let workers = (0..setup.workers)
        .map(|queue| DpdkIo {
            queue,
            // Port::configure returned exactly `setup.workers` queues per port, in order.
            ports: queues_per_port
                .iter_mut()
                .filter_map(Iterator::next)
                .collect(),
            pool: setup.pool,
        })
        .collect();
    Ok(DpdkPorts {
        ports: infos,
        workers,
    })
}

fn bring_up(
    index: PortId,
    port: Port,
    setup: &PortSetup,
) -> Result<(PortInfo, Vec<PortQueue>), DpdkError> {
    let caps = port.capabilities()?;
    let configured = port.configure(&PortConfig {
        queues: setup.workers,
        rx_desc: setup.rx_desc,
        tx_desc: setup.tx_desc,
        pool: setup.pool,
    })?;
    port.start()?;
    let promiscuous = port.enable_promiscuous()?;
    let info = PortInfo {
        index,
        port,
        name: port.name()?,
        driver: caps.driver,
        mac: port.mac_addr()?,
        rss: configured.rss,
        promiscuous,
        rx_desc: configured.rx_desc,
        tx_desc: configured.tx_desc,
    };
    Ok((info, configured.queues))
}

/// Stops every port (counters stay readable until [`close_ports`]). Must run after all workers
/// returned: a port whose queues are still held by a `DpdkIo` is refused with
/// [`DpdkError::PortBusy`]. Tries every port and returns the first error.
pub fn stop_ports(ports: &[PortInfo]) -> Result<(), DpdkSetupError> {
    for_each_port(ports, Port::stop)
}

/// Closes every port (after [`stop_ports`] and after reading the final counters).
pub fn close_ports(ports: &[PortInfo]) -> Result<(), DpdkSetupError> {
    for_each_port(ports, Port::close)
}

fn for_each_port(
    ports: &[PortInfo],
    op: impl Fn(&Port) -> Result<(), DpdkError>,
) -> Result<(), DpdkSetupError> {
    let mut first_error = None;
    for info in ports {
        if let Err(source) = op(&info.port) {
            first_error.get_or_insert(DpdkSetupError::Port {
                spec: info.name.clone(),
                source,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    //! The EAL initialises once per process: the DPDK scenario runs in a child process (this test
    //! binary re-executed with `--exact`), on `net_ring` vdevs, which loop tx back to rx.

    use super::*;

    const CHILD_ENV: &str = "SEPTA_DATAPLANE_DPDK_CHILD";
    const CHILD_TEST: &str = "io::dpdk::tests::child_two_workers_on_ring_ports";

    #[test]
    fn port_spec_parses_index_or_name() {
        assert_eq!("0".parse(), Ok(PortSpec::Index(0)));
        assert_eq!("17".parse(), Ok(PortSpec::Index(17)));
        assert_eq!("net_ring0".parse(), Ok(PortSpec::Name("net_ring0".into())));
        assert_eq!("+1".parse(), Ok(PortSpec::Name("+1".into())));
        assert_eq!(
            "0000:01:00.0".parse(),
            Ok(PortSpec::Name("0000:01:00.0".into()))
        );
    }

    #[test]
    fn mbufs_needed_covers_rings_and_caches() {
        let n = mbufs_needed(2, 2, 1024, 1024, 256);
        assert!(n >= 2 * 2 * 2048 + 2 * 256);
    }

    #[test]
    fn two_workers_on_ring_ports() {
        let exe = std::env::current_exe().expect("test binary");
        let prefix = format!("septa-dataplane-{}", std::process::id());
        let out = std::process::Command::new(exe)
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &prefix)
            .output()
            .expect("spawn child");
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success());
        assert!(
            stdout.contains("DPDK-IO-OK"),
            "child did not run to its end"
        );
    }

    fn frame(seq: u8) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f[14] = seq;
        f
    }

    #[test]
    fn child_two_workers_on_ring_ports() {
        let Ok(prefix) = std::env::var(CHILD_ENV) else {
            return;
        };
        let mut args: Vec<String> = ["-l", "0-1", "--no-pci", "--no-telemetry", "--file-prefix"]
            .into_iter()
            .map(String::from)
            .collect();
        args.push(prefix);
        args.extend(eal_memory_args());
        args.extend(["--vdev=net_ring0".into(), "--vdev=net_ring1".into()]);
        let eal = Eal::init(&args).expect("EAL init");
        let lcores = eal.worker_lcores();
        assert_eq!(lcores, vec![1]);
        let pool = create_pool(&eal, "dp_test", mbufs_needed(2, 2, 256, 256, 64)).expect("pool");
        let specs = vec!["net_ring1".parse().unwrap(), PortSpec::Index(0)];
        let mut setup = PortSetup::new(specs, 2, pool);
        (setup.rx_desc, setup.tx_desc) = (256, 256);

        let dup = PortSetup::new(
            vec![PortSpec::Index(0), "net_ring0".parse().unwrap()],
            2,
            pool,
        );
        assert!(matches!(
            setup_ports(&eal, &dup),
            Err(DpdkSetupError::Invalid(_))
        ));
        let missing = PortSetup::new(vec![PortSpec::Name("net_nope".into())], 1, pool);
        assert!(matches!(
            setup_ports(&eal, &missing),
            Err(DpdkSetupError::Port { .. })
        ));

        let DpdkPorts { ports, mut workers } = setup_ports(&eal, &setup).expect("setup");
        assert_eq!(ports.len(), 2);
        assert_eq!((ports[0].name.as_str(), ports[0].index), ("net_ring1", 0));
        assert_eq!((ports[1].name.as_str(), ports[1].index), ("net_ring0", 1));
        assert!(!ports[0].rss, "net_ring reports no RSS capability");
        assert_eq!(workers.len(), 2);
        println!("ports: {ports:?}");

        // Worker 1 runs on lcore 1: it transmits on dense port 1 (net_ring0, queue 1) and reads
        // the frames back from the same port and queue.
        let mut w1 = workers.pop().expect("worker 1");
        assert_eq!(w1.queue(), 1);
        assert_eq!(
            w1.dpdk_port_ids().collect::<Vec<_>>(),
            vec![ports[0].port.id(), ports[1].port.id()]
        );
        eal.launch(1, move || {
            let mut burst = Burst::<Mbuf>::new();
            for seq in 0..10 {
                match Mbuf::from_slice(&pool, &frame(seq)) {
                    Ok(m) => burst.push(m),
                    Err(_) => return -1,
                }
            }
            if w1.tx_burst(1, &mut burst) != 10 || w1.tx_burst(7, &mut burst) != 0 {
                return -2;
            }
            let mut back = Burst::<Mbuf>::new();
            let n = w1.rx_burst(1, &mut back);
            let in_order = back
                .iter()
                .zip(0u8..)
                .all(|(m, seq)| PacketBuf::data(m) == frame(seq));
            let other = w1.rx_burst(0, &mut Burst::new());
            if n == 10 && in_order && other == 0 && w1.port_count() == 2 {
                0
            } else {
                -3
            }
        })
        .expect("launch");
        assert_eq!(eal.wait(1), 0, "worker on lcore 1 saw its frames come back");

        // Worker 0 (here on the main lcore): an unknown port sends nothing and keeps the packets.
        let mut w0 = workers.pop().expect("worker 0");
        let mut burst = Burst::<Mbuf>::new();
        burst.push(Mbuf::from_slice(&pool, &frame(1)).expect("mbuf"));
        assert_eq!(w0.tx_burst(9, &mut burst), 0);
        assert_eq!(burst.len(), 1);
        burst[0].data_mut()[0] = 0xee;
        assert_eq!(PacketBuf::data(&burst[0])[0], 0xee);
        assert_eq!(w0.rx_burst(9, &mut burst), 0);
        drop(burst);

        assert!(stop_ports(&ports).is_err(), "w0 still holds queues");
        drop(w0);
        eal.wait_all();
        stop_ports(&ports).expect("stop");
        let stats = ports[1].port.stats().expect("stats");
        assert_eq!((stats.tx_packets, stats.rx_packets), (10, 10));
        close_ports(&ports).expect("close");
        println!("DPDK-IO-OK");
    }
}
