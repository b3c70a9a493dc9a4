//! `septa run`: the appliance on DPDK ports.
//!
//! Thread layout: one poll-mode worker per configured lcore (EAL worker lcores through
//! `rte_eal_remote_launch`; a worker configured on the main lcore runs on the main thread), plus one
//! plain monitor thread that turns SIGINT/SIGTERM and `--until-idle` into the workers' stop flag.
//! Workers check the flag once per poll; nothing else is shared with them but their counters
//! and, under a policy file, the [`TableCell`] that each reads through its own reader.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use septa_classifier::TableCell;
use septa_dataplane::worker::{Decision, PolicySlot};

use crate::config::{DecisionConfig, GatewayConfig, WorkerPolicy};
use crate::control_host::ControlHost;
use crate::policy_cli;

/// Command-line options of `septa run` beyond the configuration file.
#[derive(Debug, Clone, Default)]
// Only the DPDK build runs workers; without it `run` explains how to get one and reads nothing.
#[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
pub struct RunOptions {
    /// Stop once no packet arrived for this many milliseconds after the first one.
    pub until_idle: Option<u64>,
    /// Print the final counters as JSON.
    pub json: bool,
    /// Transmit this capture's packets on the first port before forwarding starts.
    pub seed_pcap: Option<PathBuf>,
}

/// What the workers enforce, ready to hand each worker its decision.
enum Enforced {
    Fixed(DecisionConfig),
    /// No policy configured: the control plane installs one into the slot (fail-closed start).
    Awaiting(PolicySlot),
    Table {
        cell: Arc<TableCell>,
        file: PathBuf,
        revision: String,
        rules: usize,
    },
}

impl Enforced {
    /// Compiles the configured policy file, if any. An invalid policy is an error: the
    /// appliance never starts forwarding without the policy it was told to enforce.
    fn load(config: &GatewayConfig) -> anyhow::Result<Self> {
        Ok(match &config.decision {
            WorkerPolicy::Fixed(d) => Enforced::Fixed(*d),
            WorkerPolicy::Awaiting => Enforced::Awaiting(PolicySlot::new()),
            WorkerPolicy::File(file) => {
                let (policy, compiled) = policy_cli::load(file).map_err(|e| {
                    e.context(format!(
                        "{}: dataplane.policy = {}",
                        config.path.display(),
                        file.display()
                    ))
                })?;
                Enforced::Table {
                    cell: TableCell::new((**compiled.table()).clone()),
                    file: file.clone(),
                    revision: policy.content_hash(),
                    rules: compiled.table().len(),
                }
            }
        })
    }

    /// A decision for one more worker.
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    fn decision(&self) -> Decision {
        match self {
            Enforced::Fixed(d) => (*d).into(),
            Enforced::Awaiting(slot) => Decision::Awaiting(slot.clone()),
            Enforced::Table { cell, .. } => Decision::Table(cell.reader()),
        }
    }

    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    fn describe(&self) -> String {
        match self {
            Enforced::Fixed(d) => format!("decision {d:?}"),
            Enforced::Awaiting(slot) if slot.cell().is_some() => {
                "the control plane's running revision".to_owned()
            }
            Enforced::Awaiting(_) => "no policy yet".to_owned(),
            Enforced::Table {
                file,
                revision,
                rules,
                ..
            } => format!(
                "policy {} (content hash {}, {rules} rules)",
                file.display(),
                revision.get(..12).unwrap_or(revision)
            ),
        }
    }
}

/// Loads the configuration and the policy, and runs the appliance until stopped.
///
/// With `[control]`, the control plane starts first (before the EAL, see `control_host`) and
/// installs the store's running revision into the slot the workers read: `dataplane.policy`
/// then only seeds an empty store.
pub fn run(path: &Path, opts: RunOptions) -> anyhow::Result<()> {
    let config = GatewayConfig::load(path)?;
    let control = match &config.control {
        // Without DPDK `imp::run` refuses at once: do not create a store or print a password.
        Some(c) if cfg!(feature = "dpdk") => {
            let seed = match &config.decision {
                WorkerPolicy::File(f) => Some(f.as_path()),
                _ => None,
            };
            Some(ControlHost::start(c, config.ports.clone(), seed)?)
        }
        _ => None,
    };
    let enforced = match &control {
        Some(c) => Enforced::Awaiting(c.slot()),
        None => Enforced::load(&config)?,
    };
    imp::run(&config, &enforced, &opts, control.as_ref())
}

#[cfg(not(feature = "dpdk"))]
mod imp {
    use super::*;

    pub fn run(
        config: &GatewayConfig,
        _enforced: &Enforced,
        _opts: &RunOptions,
        _control: Option<&ControlHost>,
    ) -> anyhow::Result<()> {
        anyhow::bail!(
            "{}: this septa binary was built without DPDK support. Install DPDK with \
             `sudo bash dpdk-build/setup.sh`, then rebuild with `cargo build --release --features dpdk`",
            config.path.display()
        )
    }
}

#[cfg(feature = "dpdk")]
mod imp {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use septa_dataplane::counters::{Stats, WorkerCounters};
    use septa_dataplane::events::{self, EventCounts, EventDrain, RingWatch};
    use septa_dataplane::io::dpdk::{
        DpdkIo, DpdkPorts, Eal, Mbuf, Mempool, MempoolConfig, PortInfo, PortSetup, PortSpec,
        close_ports, mbufs_needed, setup_ports, stop_ports,
    };
    use septa_dataplane::io::{Burst, PacketIo};
    use septa_dataplane::route::Router;
    use septa_dataplane::worker::{Bridge, Worker, WorkerState};

    use super::*;

    pub fn run(
        config: &GatewayConfig,
        enforced: &Enforced,
        opts: &RunOptions,
        control: Option<&ControlHost>,
    ) -> anyhow::Result<()> {
        let eal = Eal::init(&config.eal_args).map_err(|e| {
            anyhow::anyhow!(
                "{e}\nhint: the EAL arguments come from `dpdk.eal_args` in {}. If hugepages are missing, run \
                 `sudo bash dpdk-build/setup.sh`, or add \"--no-huge\", \"-m\", \"512\" to eal_args",
                config.path.display()
            )
        })?;

        let lcores = worker_lcores(config, &eal)?;
        if config.routing.is_some() && lcores.len() > 1 {
            // Each router learns neighbours from the ARP/ND frames its own queue receives, and
            // RSS steers those to one queue: routed pairs need a shared neighbour table first.
            bail!(
                "{}: routed pairs (`mode = \"routed\"`) run on one worker, but {} worker lcores \
                 {lcores:?} are configured; set dataplane.worker_lcores = [{}] or give \
                 dpdk.eal_args `-l` a single lcore (see docs/routed.md, \"Several workers\")",
                config.path.display(),
                lcores.len(),
                lcores[0]
            );
        }
        let workers = u16::try_from(lcores.len()).context("too many workers")?;
        let ports = u16::try_from(config.ports.len()).context("too many ports")?;
        let needed = mbufs_needed(
            ports,
            workers,
            config.rx_descriptors,
            config.tx_descriptors,
            config.mempool_cache,
        );
        if config.mempool_size < needed {
            bail!(
                "{}: dpdk.mempool_size = {} is too small for {ports} ports x {workers} workers with \
                 {}/{} descriptors: at least {needed} mbufs are needed",
                config.path.display(),
                config.mempool_size,
                config.rx_descriptors,
                config.tx_descriptors
            );
        }
        let pool = Mempool::create(
            &eal,
            &MempoolConfig {
                name: "septa_pkts".into(),
                mbufs: config.mempool_size,
                cache_size: config.mempool_cache,
                data_room: Mempool::DEFAULT_DATA_ROOM,
                socket: None,
            },
        )
        .context("creating the packet mempool (dpdk.mempool_size)")?;

        let mut setup = PortSetup::new(
            config
                .ports
                .iter()
                .map(|p| p.parse::<PortSpec>().unwrap_or_else(|e| match e {}))
                .collect(),
            workers,
            pool,
        );
        setup.rx_desc = config.rx_descriptors;
        setup.tx_desc = config.tx_descriptors;
        let DpdkPorts {
            ports: infos,
            workers: mut ios,
        } = setup_ports(&eal, &setup)
            .with_context(|| format!("setting up the ports of {}", config.path.display()))?;
        for info in &infos {
            eprintln!(
                "septa: port {} = {} ({}), mac {}, rss {}, {} rx / {} tx descriptors",
                info.index,
                info.name,
                info.driver,
                mac(&info.mac),
                if info.rss { "on" } else { "off" },
                info.rx_desc,
                info.tx_desc
            );
        }

        if let Some(seed) = &opts.seed_pcap {
            let sent = seed_port(&mut ios[0], &pool, seed)?;
            eprintln!(
                "septa: seeded {sent} packets from {} on port 0",
                seed.display()
            );
        }

        // Routed mode: the gateway's MAC on a port without `mac` is the port's own.
        let router_config = config
            .routing
            .as_ref()
            .map(|r| r.router_config(|p| infos.get(usize::from(p)).map_or([0; 6], |i| i.mac)));
        if let Some(rc) = &router_config {
            for p in &rc.ports {
                let addrs: Vec<String> =
                    p.v4.map(|n| n.to_string())
                        .into_iter()
                        .chain(p.v6.map(|n| n.to_string()))
                        .collect();
                eprintln!(
                    "septa: routed port {}: gateway {} at mac {}",
                    p.port,
                    addrs.join(", "),
                    mac(&p.mac)
                );
            }
        }
        let pairs: Vec<_> = config.pairs.iter().map(|&(a, b, _)| (a, b)).collect();
        let bridge = Bridge::new(ports, &pairs).context("port pairs")?;
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("installing signal handlers")?;
        }

        if matches!(enforced, Enforced::Awaiting(slot) if slot.cell().is_none()) {
            if config.state.fail_open {
                eprintln!(
                    "septa: WARNING: FAIL-OPEN START: no policy is installed and \
                     dataplane.fail_open = true in {}: every new flow is ADMITTED until a policy \
                     arrives (flows are re-evaluated then)",
                    config.path.display()
                );
            } else {
                eprintln!(
                    "septa: no policy installed: new flows are dropped (no_policy) until one is"
                );
            }
        }
        let mut counters: Vec<Arc<WorkerCounters>> = Vec::with_capacity(lcores.len());
        let mut tables = Vec::with_capacity(lcores.len());
        let mut drain = EventDrain::default();
        // Made right before the workers, whose event clocks start at 0 when they are made.
        let flows = control.map(ControlHost::flow_adapter);
        let mut inline_worker: Option<(Worker, DpdkIo, RingWatch, FlushDone)> = None;
        let (mut ml, ml_probe) = crate::ml_host::start_for_run_probed(
            config.ml.as_ref(),
            lcores.len(),
            control.map(ControlHost::anomalies),
        );
        let mut samplers = ml
            .as_mut()
            .map(crate::ml_host::MlHost::take_samplers)
            .unwrap_or_default()
            .into_iter();
        let started = Instant::now();
        // Workers whose final flush is not done yet: the monitor drains until it reaches 0.
        let flushing = Arc::new(AtomicUsize::new(lcores.len()));
        for (lcore, mut io) in lcores.iter().copied().zip(ios.drain(..)) {
            let (sink, source) = events::ring(config.event_ring);
            let watch = sink.watch();
            drain.push(source);
            let mut state = WorkerState::new(&config.state, sink).with_context(|| {
                format!(
                    "{}: dataplane flow/fragment table settings",
                    config.path.display()
                )
            })?;
            if let Some(s) = samplers.next() {
                state.set_sampler(s);
            }
            let mut worker = Worker::with_state(bridge.clone(), enforced.decision(), state);
            if let Some(rc) = &router_config {
                let router = Router::new(rc, worker.state().now())
                    .with_context(|| format!("{}: routed-mode settings", config.path.display()))?;
                worker.set_router(router);
            }
            counters.push(Arc::clone(worker.counters()));
            tables.push(crate::control_host::WorkerTables {
                flows: worker.state().flows().shared_stats(),
                router: worker.router().map(Router::shared_stats),
                l7: worker.state().l7().shared_counters(),
            });
            let done = FlushDone(Arc::clone(&flushing));
            if lcore == eal.main_lcore() {
                inline_worker = Some((worker, io, watch, done));
                continue;
            }
            let stop = Arc::clone(&stop);
            eal.launch(lcore, move || {
                worker.run(&mut io, &stop);
                report_router(&worker);
                final_flush(&mut worker, &watch);
                drop(done);
                0
            })
            .with_context(|| format!("launching the worker on lcore {lcore}"))?;
        }
        if let Some(c) = control {
            c.attach_counters(&counters);
            c.attach_tables(tables);
            let probe = ml_probe
                .map(|p| -> crate::control_host::InferenceProbe { Box::new(move || p.sample()) });
            c.attach_health(&lcores, probe);
        }
        eprintln!(
            "septa: {} worker(s) on lcore(s) {:?}, {} pair(s), {}; stop with Ctrl-C",
            lcores.len(),
            lcores,
            pairs.len(),
            enforced.describe()
        );

        let monitor = {
            let stop = Arc::clone(&stop);
            let counters = counters.clone();
            let idle = opts.until_idle.map(Duration::from_millis);
            let flushing = Arc::clone(&flushing);
            std::thread::Builder::new()
                .name("septa-monitor".into())
                .spawn(move || monitor(&stop, &flushing, &counters, idle, drain, flows))
                .context("starting the monitor thread")?
        };
        if let Some((mut worker, mut io, watch, done)) = inline_worker {
            worker.run(&mut io, &stop);
            report_router(&worker);
            final_flush(&mut worker, &watch);
            drop(done);
        }
        // The monitor returns once `stop` is set and every worker's final flush is drained.
        // Only then wait for the lcores: DPDK's wait spins, and a spinning main lcore would
        // steal cycles from a worker on a sibling hyperthread.
        let (mut drain, mut events, mut flows) = monitor
            .join()
            .map_err(|_| anyhow::anyhow!("the monitor thread panicked"))?;
        eal.wait_all();
        let forwarding = started.elapsed();
        // The workers' final flush (flow ends at stop) reaches the flow records and the learning
        // feed (history, rule usage, exports) like every other event.
        crate::control_host::drain_events(&mut drain, &mut events, flows.as_mut());
        events.lost = drain.lost();

        stop_ports(&infos).context("stopping the ports")?;
        let stats = Stats::collect(counters.iter().map(|c| &**c));
        report(&stats, &infos, forwarding, &events, opts.json)?;
        if let Some(m) = ml {
            eprintln!("septa: {}", m.stop());
        }
        close_ports(&infos).context("closing the ports")?;
        Ok(())
    }

    /// Routed mode: the worker's slow-path counters, once it stopped.
    fn report_router(worker: &Worker) {
        if let Some(r) = worker.router() {
            let s = r.stats();
            eprintln!(
                "septa: router: {} frames to the gateway ({} echo replies, {} ARP replies, {} \
                 neighbour advertisements sent), {} time exceeded sent ({} suppressed), \
                 {} solicitations, {} neighbours learnt, {} generated frames lost (ring full)",
                s.local,
                s.echo_replies,
                s.arp_replies,
                s.neighbour_adverts,
                s.icmp_errors,
                s.icmp_suppressed,
                s.solicitations,
                s.neighbours_learnt,
                s.tx_ring_full
            );
        }
    }

    /// The lcores to run workers on: as configured (each must be enabled in the EAL), else every
    /// EAL worker lcore, else the main lcore.
    fn worker_lcores(config: &GatewayConfig, eal: &Eal) -> anyhow::Result<Vec<u32>> {
        let available = eal.worker_lcores();
        let main = eal.main_lcore();
        match &config.worker_lcores {
            Some(list) => {
                for l in list {
                    if *l != main && !available.contains(l) {
                        bail!(
                            "{}: dataplane.worker_lcores names lcore {l}, which the EAL arguments do not \
                             enable (enabled: main {main}, workers {available:?}); adjust `-l` in dpdk.eal_args",
                            config.path.display()
                        );
                    }
                }
                Ok(list.clone())
            }
            None if available.is_empty() => Ok(vec![main]),
            None => Ok(available),
        }
    }

    /// How long a stopping worker waits in all for room in its event ring during its final
    /// flush, and (plus a second) how long the monitor keeps draining for the workers' flushes.
    const FINAL_FLUSH_WAIT: Duration = Duration::from_secs(10);

    /// Counts a worker's final flush as done when dropped (also when its launch failed).
    struct FlushDone(Arc<AtomicUsize>);

    impl Drop for FlushDone {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Release);
        }
    }

    /// Ends every flow of a stopped worker (flow-end records with their counters, which the
    /// history, rule usage and exports need), in parts of at most the ring's capacity, each
    /// written once the monitor has made room for it: a ring still full of the last denies
    /// would otherwise lose them (counted, but missing from the history). After
    /// [`FINAL_FLUSH_WAIT`] it stops waiting and what does not fit is lost and counted.
    fn final_flush(worker: &mut Worker, watch: &RingWatch) {
        let budget = match watch.capacity() {
            0 => 1024,
            c => c.min(1024),
        };
        let give_up = Instant::now() + FINAL_FLUSH_WAIT;
        loop {
            watch.wait_for_room(budget, give_up);
            if worker.flush(budget) == 0 {
                break;
            }
        }
    }

    /// Sets `stop` on a signal (already wired to the flag) or after `idle` without new packets,
    /// and consumes the workers' events meanwhile (counted, and with `[control]` fed to the
    /// API's recent-flows store through `flows`); after `stop`, keeps consuming until every
    /// worker's final flush is done (`flushing` at 0, bounded by [`FINAL_FLUSH_WAIT`]).
    /// Returns the drain and what it counted.
    fn monitor(
        stop: &AtomicBool,
        flushing: &AtomicUsize,
        counters: &[Arc<WorkerCounters>],
        idle: Option<Duration>,
        mut drain: EventDrain,
        mut flows: Option<crate::control_host::FlowAdapter>,
    ) -> (
        EventDrain,
        EventCounts,
        Option<crate::control_host::FlowAdapter>,
    ) {
        let tick = Duration::from_millis(20);
        let mut last = 0;
        let mut last_change = Instant::now();
        let mut events = EventCounts::default();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            crate::control_host::drain_events(&mut drain, &mut events, flows.as_mut());
            let Some(idle) = idle else { continue };
            let rx = Stats::collect(counters.iter().map(|c| &**c)).rx_packets();
            if rx != last {
                last = rx;
                last_change = Instant::now();
            } else if rx > 0 && last_change.elapsed() >= idle {
                stop.store(true, Ordering::Relaxed);
            }
        }
        let give_up = Instant::now() + FINAL_FLUSH_WAIT + Duration::from_secs(1);
        loop {
            let done = flushing.load(Ordering::Acquire) == 0;
            crate::control_host::drain_events(&mut drain, &mut events, flows.as_mut());
            if done || Instant::now() >= give_up {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (drain, events, flows)
    }

    /// Transmits the frames of a capture on port 0 of `io`; returns how many the port took.
    fn seed_port(io: &mut DpdkIo, pool: &Mempool, path: &Path) -> anyhow::Result<usize> {
        let frames = septa_dataplane::io::pcap::read_frames(path)
            .with_context(|| format!("reading the seed capture {}", path.display()))?;
        let mut sent = 0;
        for chunk in frames.chunks(septa_dataplane::io::BURST) {
            let mut burst: Burst<Mbuf> = Burst::new();
            for f in chunk {
                burst.push(Mbuf::from_slice(pool, f).context("allocating a seed mbuf")?);
            }
            sent += io.tx_burst(0, &mut burst);
        }
        Ok(sent)
    }

    fn mac(m: &[u8; 6]) -> String {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn report(
        stats: &Stats,
        infos: &[PortInfo],
        forwarding: Duration,
        events: &EventCounts,
        json: bool,
    ) -> anyhow::Result<()> {
        let mut dpdk = Vec::with_capacity(infos.len());
        for info in infos {
            let s = info
                .port
                .stats()
                .with_context(|| format!("stats of {}", info.name))?;
            let x = info
                .port
                .xstats()
                .with_context(|| format!("xstats of {}", info.name))?;
            dpdk.push((info, s, x));
        }
        if json {
            let ports: Vec<_> = stats
                .ports
                .iter()
                .zip(&dpdk)
                .map(|(p, (info, s, x))| {
                    serde_json::json!({
                        "index": info.index,
                        "name": info.name,
                        "driver": info.driver,
                        "rx_packets": p.rx_packets,
                        "rx_bytes": p.rx_bytes,
                        "tx_packets": p.tx_packets,
                        "tx_bytes": p.tx_bytes,
                        "dpdk": {
                            "rx_packets": s.rx_packets, "tx_packets": s.tx_packets,
                            "rx_missed": s.rx_missed, "rx_errors": s.rx_errors, "tx_errors": s.tx_errors,
                            "rx_nombuf": s.rx_nombuf,
                            "xstats": x.iter().filter(|(_, v)| *v != 0)
                                .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
                                .collect::<serde_json::Map<_, _>>(),
                        },
                    })
                })
                .collect();
            let drops: serde_json::Map<_, _> = stats
                .nonzero_drops()
                .map(|(r, n)| (r.as_str().to_owned(), n.into()))
                .collect();
            let v = serde_json::json!({
                "forwarding_seconds": forwarding.as_secs_f64(),
                "rx_packets": stats.rx_packets(),
                "tx_packets": stats.tx_packets(),
                "dropped": stats.total_drops(),
                "non_ip_forwarded": stats.non_ip_forwarded,
                "would_deny": stats.would_deny,
                "drops": drops,
                "events": events,
                "ports": ports,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("septa: stopped after {:.3} s", forwarding.as_secs_f64());
            print!("{stats}");
            println!(
                "events flow_start {} flow_end {} deny {} would_deny {} lost {}",
                events.flow_start, events.flow_end, events.deny, events.would_deny, events.lost
            );
            for (info, s, x) in &dpdk {
                println!(
                    "dpdk {}: rx {} tx {} missed {} rx_errors {} tx_errors {} rx_nombuf {}",
                    info.name,
                    s.rx_packets,
                    s.tx_packets,
                    s.rx_missed,
                    s.rx_errors,
                    s.tx_errors,
                    s.rx_nombuf
                );
                for (k, v) in x.iter().filter(|(_, v)| *v != 0) {
                    println!("  {k} {v}");
                }
            }
        }
        Ok(())
    }
}
