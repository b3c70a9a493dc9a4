//! `gateway.toml`: the appliance configuration read by `septa run`.
//!
//! Parsed with `deny_unknown_fields` into DTOs, then checked into a [`GatewayConfig`] whose
//! invariants (ports exist, pairs are disjoint, sizes in range) the rest of the binary relies on.
//! Every error names the file and the key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use septa_dataplane::flow::TimeoutClass;
use serde::Deserialize;

/// Errors reading or checking a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown or missing key, wrong type).
    #[error("invalid config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and key.
        message: String,
    },
    /// The file parses but a value is not acceptable.
    #[error("invalid config file {path}: key `{key}`: {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Forwarding mode of a port pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PairMode {
    /// Transparent bridge (bump in the wire): frames from one port leave on the other unchanged.
    #[default]
    Bridge,
    /// The gateway is the IP router between the pair's subnets: each port needs `address`
    /// and/or `address6` in its `[[ports]]` entry; `[[routes]]` adds static routes (see
    /// docs/routed.md).
    Routed,
}

/// A fixed decision, for tests and bring-up when no policy file is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionConfig {
    /// Forward every IP packet.
    AllowAll,
    /// Drop every IP packet with reason `policy` (non-IP frames such as ARP still pass).
    #[default]
    DenyAll,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    dpdk: RawDpdk,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default)]
    pairs: Vec<RawPair>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    control: Option<crate::control_host::RawControl>,
    #[serde(default)]
    ml: Option<crate::ml_host::RawMl>,
    #[serde(default)]
    export: Option<septa_control::export::ExportConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpdk {
    eal_args: Vec<String>,
    #[serde(default = "default_mempool_size")]
    mempool_size: u32,
    #[serde(default = "default_mempool_cache")]
    mempool_cache: u32,
    #[serde(default = "default_rx_desc")]
    rx_descriptors: u16,
    #[serde(default = "default_tx_desc")]
    tx_descriptors: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: String,
    /// Routed mode: the gateway's IPv4 address with prefix length.
    #[serde(default)]
    address: Option<String>,
    /// Routed mode: the gateway's IPv6 address with prefix length.
    #[serde(default)]
    address6: Option<String>,
    /// Routed mode: the gateway's MAC on the port (default: the port's own).
    #[serde(default)]
    mac: Option<String>,
}

/// Routed mode: a static route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    via: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    ports: [String; 2],
    #[serde(default)]
    mode: PairMode,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    #[serde(default)]
    worker_lcores: Option<Vec<u32>>,
    #[serde(default)]
    decision: Option<DecisionConfig>,
    #[serde(default)]
    policy: Option<PathBuf>,
    #[serde(default)]
    flow_capacity: Option<u64>,
    #[serde(default)]
    max_half_open: Option<u64>,
    #[serde(default)]
    fragment_capacity: Option<u64>,
    #[serde(default)]
    fragment_timeout: Option<u64>,
    #[serde(default)]
    fail_open: bool,
    #[serde(default)]
    event_ring: Option<u64>,
    /// TCP flows under a function-code (`l7:`) conduit inspected at once per worker.
    #[serde(default)]
    l7_flows: Option<u64>,
    /// Seconds between two flow-update reports of a live flow with traffic (0: off).
    #[serde(default)]
    flow_update_interval: Option<u64>,
    #[serde(default)]
    timeouts: RawTimeouts,
}

/// `[dataplane.timeouts]`: idle timeouts in seconds per connection-tracking state.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp_syn_sent: Option<u64>,
    tcp_syn_recv: Option<u64>,
    tcp_established: Option<u64>,
    tcp_fin_wait: Option<u64>,
    tcp_close_wait: Option<u64>,
    tcp_last_ack: Option<u64>,
    tcp_time_wait: Option<u64>,
    tcp_close: Option<u64>,
    udp: Option<u64>,
    udp_stream: Option<u64>,
    icmp: Option<u64>,
    other: Option<u64>,
}

impl RawTimeouts {
    /// `(key, class, value)` for every timeout set.
    fn set(&self) -> impl Iterator<Item = (&'static str, TimeoutClass, u64)> {
        use TimeoutClass as C;
        [
            ("tcp_syn_sent", C::TcpSynSent, self.tcp_syn_sent),
            ("tcp_syn_recv", C::TcpSynRecv, self.tcp_syn_recv),
            ("tcp_established", C::TcpEstablished, self.tcp_established),
            ("tcp_fin_wait", C::TcpFinWait, self.tcp_fin_wait),
            ("tcp_close_wait", C::TcpCloseWait, self.tcp_close_wait),
            ("tcp_last_ack", C::TcpLastAck, self.tcp_last_ack),
            ("tcp_time_wait", C::TcpTimeWait, self.tcp_time_wait),
            ("tcp_close", C::TcpClose, self.tcp_close),
            ("udp", C::Udp, self.udp),
            ("udp_stream", C::UdpStream, self.udp_stream),
            ("icmp", C::Icmp, self.icmp),
            ("other", C::Other, self.other),
        ]
        .into_iter()
        .filter_map(|(k, c, v)| v.map(|v| (k, c, v)))
    }
}

/// Default `dataplane.flow_capacity`: flows per worker (about 56 MiB of flow table each).
pub const DEFAULT_FLOW_CAPACITY: usize = 1 << 18;
/// Largest `dataplane.flow_update_interval` (seconds): an hour.
const MAX_FLOW_UPDATE_INTERVAL_S: u64 = 3600;
/// Largest `dataplane.flow_capacity`.
const MAX_FLOW_CAPACITY: u64 = 1 << 26;
/// Largest idle timeout, in seconds (30 days).
const MAX_TIMEOUT_SECS: u64 = 30 * 86_400;

/// What the workers enforce: `[dataplane] decision` or `[dataplane] policy` (never both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerPolicy {
    /// A fixed decision (`decision = "allow-all" | "deny-all"`).
    Fixed(DecisionConfig),
    /// A zone/conduit policy file (`policy = "FILE"`), resolved against the configuration's
    /// directory.
    File(PathBuf),
    /// Neither key: no policy until the control plane installs one. New flows are dropped under
    /// `no_policy` (or admitted with `dataplane.fail_open = true`).
    Awaiting,
}

fn default_mempool_size() -> u32 {
    8191
}
fn default_mempool_cache() -> u32 {
    256
}
fn default_rx_desc() -> u16 {
    1024
}
fn default_tx_desc() -> u16 {
    1024
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// EAL arguments (vdevs, lcores, memory), passed through unchanged except that `{config_dir}`
    /// is replaced by the directory of the configuration file.
    pub eal_args: Vec<String>,
    /// Mbufs in the packet pool.
    pub mempool_size: u32,
    /// Per-lcore mempool cache.
    pub mempool_cache: u32,
    /// Rx descriptors per queue.
    pub rx_descriptors: u16,
    /// Tx descriptors per queue.
    pub tx_descriptors: u16,
    /// DPDK device names, in port-index order (index = position).
    pub ports: Vec<String>,
    /// Port pairs as indices into `ports`.
    pub pairs: Vec<(u16, u16, PairMode)>,
    /// Lcores to run workers on; `None` = every EAL worker lcore (or the main lcore if there are none).
    pub worker_lcores: Option<Vec<u32>>,
    /// What the workers enforce.
    pub decision: WorkerPolicy,
    /// Each worker's connection state: flow table (`dataplane.flow_capacity`,
    /// `dataplane.max_half_open`, `[dataplane.timeouts]`), fragment table
    /// (`dataplane.fragment_capacity`, `dataplane.fragment_timeout`), `dataplane.fail_open`.
    pub state: septa_dataplane::StateConfig,
    /// Records per worker event ring (`dataplane.event_ring`).
    pub event_ring: usize,
    /// The control plane (`[control]`): policy store, audit log and REST API; `None` without
    /// the section or with `enabled = false`.
    pub control: Option<crate::control_host::ControlConfig>,
    /// Exports (`[export]`): IPFIX, syslog, JSON-lines flow log, fed by the control plane.
    /// Nothing by default: nothing observed leaves the appliance unless configured here.
    pub export: septa_control::export::ExportConfig,
    /// Routed mode: `Some` when a pair has `mode = "routed"`.
    pub routing: Option<RoutingConfig>,
    /// Flow scoring (`[ml]`): `None` without the section or with `mode = "off"`.
    pub ml: Option<crate::ml_host::MlSettings>,
}

impl std::fmt::Display for GatewayConfig {
    /// What `septa check-config` prints: every setting after defaults and substitutions.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: ok", self.path.display())?;
        writeln!(f, "  eal_args        {}", self.eal_args.join(" "))?;
        writeln!(
            f,
            "  mempool         {} mbufs, cache {}; descriptors rx {} / tx {}",
            self.mempool_size, self.mempool_cache, self.rx_descriptors, self.tx_descriptors
        )?;
        for (i, p) in self.ports.iter().enumerate() {
            writeln!(f, "  port {i:<10} {p}")?;
        }
        for (a, b, mode) in &self.pairs {
            let (a, b) = (&self.ports[usize::from(*a)], &self.ports[usize::from(*b)]);
            writeln!(f, "  pair            {a} <-> {b} ({mode:?})")?;
        }
        match &self.worker_lcores {
            Some(l) => writeln!(f, "  worker lcores   {l:?}")?,
            None => writeln!(
                f,
                "  worker lcores   every EAL worker lcore (or the main lcore)"
            )?,
        }
        match &self.decision {
            WorkerPolicy::Fixed(d) => writeln!(f, "  decision        {d:?}")?,
            WorkerPolicy::File(p) => writeln!(f, "  policy          {}", p.display())?,
            WorkerPolicy::Awaiting => writeln!(
                f,
                "  policy          none until installed: new flows {}",
                if self.state.fail_open {
                    "ADMITTED (fail_open = true)"
                } else {
                    "dropped (no_policy)"
                }
            )?,
        }
        let st = &self.state;
        writeln!(
            f,
            "  flows           {} per worker, {} half-open at most; fragments {} for {} s; event ring {}",
            st.flows.capacity,
            st.flows.max_half_open,
            st.frags.capacity,
            st.frags.timeout / septa_dataplane::worker::TICKS_PER_SECOND,
            self.event_ring
        )?;
        writeln!(
            f,
            "  l7 flows        {} inspected TCP flows per worker (function-code conduits)",
            st.l7_flows
        )?;
        match st.update_interval / septa_dataplane::worker::TICKS_PER_SECOND {
            0 => writeln!(
                f,
                "  flow updates    off (flows report their counters when TCP closes and at their end)"
            )?,
            s => writeln!(
                f,
                "  flow updates    every {s} s for flows with traffic, and when TCP closes"
            )?,
        }
        let secs: Vec<String> = st
            .flows
            .timeouts
            .ticks
            .iter()
            .map(|t| (t / septa_dataplane::worker::TICKS_PER_SECOND).to_string())
            .collect();
        writeln!(
            f,
            "  timeouts (s)    tcp syn_sent/syn_recv/established/fin_wait/close_wait/last_ack/time_wait/close, udp/udp_stream, icmp, other: {}",
            secs.join("/")
        )?;
        if let Some(m) = &self.ml {
            writeln!(f, "  ml              {}", m.describe())?;
        }
        if let Some(r) = &self.routing {
            for p in &r.ports {
                let mac = p
                    .mac
                    .map_or_else(|| "the port's own".to_owned(), |m| format_mac(&m));
                let show = |a: Option<String>| a.unwrap_or_else(|| "-".into());
                writeln!(
                    f,
                    "  routed port     {}: address {}, address6 {}, mac {}",
                    self.ports[usize::from(p.port)],
                    show(p.v4.map(|n| n.to_string())),
                    show(p.v6.map(|n| n.to_string())),
                    mac
                )?;
            }
            for rt in &r.routes {
                writeln!(f, "  route           {} via {}", rt.prefix, rt.via)?;
            }
        }
        match &self.control {
            Some(c) => writeln!(
                f,
                "  control API     {}://{} (data {})",
                c.scheme(),
                c.listen,
                c.data_dir.display()
            ),
            None => writeln!(f, "  control API     off"),
        }?;
        writeln!(
            f,
            "  exports         {}",
            crate::control_host::describe_exports(&self.export).join(", ")
        )
    }
}

impl GatewayConfig {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Absolute, so that "{config_dir}" in EAL arguments works from any working directory.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        Self::parse(&path, &text)
    }

    /// Parse and check configuration text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let value_err = |key: String, message: String| ConfigError::Value {
            path: path.to_owned(),
            key,
            message,
        };

        if raw.dpdk.mempool_size < 64 {
            return Err(value_err(
                "dpdk.mempool_size".into(),
                format!("{} is too small (at least 64 mbufs)", raw.dpdk.mempool_size),
            ));
        }
        if raw.dpdk.mempool_cache > 512 || raw.dpdk.mempool_cache > raw.dpdk.mempool_size / 2 {
            return Err(value_err(
                "dpdk.mempool_cache".into(),
                "must be at most 512 and at most half of dpdk.mempool_size".into(),
            ));
        }
        for (key, v) in [
            ("dpdk.rx_descriptors", raw.dpdk.rx_descriptors),
            ("dpdk.tx_descriptors", raw.dpdk.tx_descriptors),
        ] {
            if !(32..=16384).contains(&v) {
                return Err(value_err(key.into(), format!("{v} is outside 32..=16384")));
            }
        }
        if raw.ports.is_empty() {
            return Err(value_err(
                "ports".into(),
                "at least one [[ports]] entry is required".into(),
            ));
        }
        let mut names = Vec::with_capacity(raw.ports.len());
        for (i, p) in raw.ports.iter().enumerate() {
            if p.name.trim().is_empty() {
                return Err(value_err(
                    format!("ports[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if names.contains(&p.name) {
                return Err(value_err(
                    format!("ports[{i}].name"),
                    format!("port `{}` is listed twice", p.name),
                ));
            }
            names.push(p.name.clone());
        }
        if names.len() > usize::from(u16::MAX) {
            return Err(value_err("ports".into(), "too many ports".into()));
        }
        let mut used = BTreeSet::new();
        let mut pairs = Vec::with_capacity(raw.pairs.len());
        for (i, pair) in raw.pairs.iter().enumerate() {
            let mut idx = [0u16; 2];
            for (j, name) in pair.ports.iter().enumerate() {
                let Some(pos) = names.iter().position(|n| n == name) else {
                    return Err(value_err(
                        format!("pairs[{i}].ports[{j}]"),
                        format!(
                            "`{name}` is not one of the [[ports]] names ({})",
                            names.join(", ")
                        ),
                    ));
                };
                if !used.insert(pos) {
                    return Err(value_err(
                        format!("pairs[{i}].ports[{j}]"),
                        format!("port `{name}` is already in another pair"),
                    ));
                }
                // Bounded by the check on names.len() above.
                idx[j] = u16::try_from(pos).unwrap_or(u16::MAX);
            }
            pairs.push((idx[0], idx[1], pair.mode));
        }
        let routing = check_routing(&raw.ports, &raw.routes, &pairs)
            .map_err(|(key, message)| value_err(key, message))?;
        if pairs.is_empty() {
            return Err(value_err(
                "pairs".into(),
                "at least one [[pairs]] entry is required (which port forwards to which)".into(),
            ));
        }
        if let Some(l) = &raw.dataplane.worker_lcores {
            if l.is_empty() {
                return Err(value_err(
                    "dataplane.worker_lcores".into(),
                    "must list at least one lcore (or be left out to use every EAL worker lcore)"
                        .into(),
                ));
            }
            let set: BTreeSet<_> = l.iter().collect();
            if set.len() != l.len() {
                return Err(value_err(
                    "dataplane.worker_lcores".into(),
                    "lists an lcore twice".into(),
                ));
            }
            if routing.is_some() && l.len() > 1 {
                // `septa run` also checks the lcores the EAL gives when this key is left out.
                return Err(value_err(
                    "dataplane.worker_lcores".into(),
                    "routed pairs run on one worker for now (the neighbour table is per worker; \
                     see docs/routed.md): list a single lcore"
                        .into(),
                ));
            }
        }
        let decision = match (raw.dataplane.decision, raw.dataplane.policy.clone()) {
            (Some(_), Some(_)) => {
                return Err(value_err(
                    "dataplane.policy".into(),
                    "`dataplane.decision` and `dataplane.policy` are mutually exclusive: a policy \
                     file replaces the fixed decision, so remove one of them"
                        .into(),
                ));
            }
            (_, Some(p)) if p.as_os_str().is_empty() => {
                return Err(value_err(
                    "dataplane.policy".into(),
                    "must name a policy file".into(),
                ));
            }
            (_, Some(p)) => WorkerPolicy::File(match path.parent() {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p,
            }),
            (Some(d), None) => WorkerPolicy::Fixed(d),
            (None, None) => WorkerPolicy::Awaiting,
        };
        let dp = &raw.dataplane;
        let capacity = dp.flow_capacity.unwrap_or(DEFAULT_FLOW_CAPACITY as u64);
        if !(1..=MAX_FLOW_CAPACITY).contains(&capacity) {
            return Err(value_err(
                "dataplane.flow_capacity".into(),
                format!("{capacity} is outside 1..={MAX_FLOW_CAPACITY}"),
            ));
        }
        let mut state = septa_dataplane::StateConfig::new(capacity as usize);
        if let Some(h) = dp.max_half_open {
            if !(1..=capacity).contains(&h) {
                return Err(value_err(
                    "dataplane.max_half_open".into(),
                    format!("{h} is outside 1..=dataplane.flow_capacity ({capacity})"),
                ));
            }
            state.flows.max_half_open = h as usize;
        }
        if let Some(c) = dp.fragment_capacity {
            if !(1..=1 << 24).contains(&c) {
                return Err(value_err(
                    "dataplane.fragment_capacity".into(),
                    format!("{c} is outside 1..=16777216"),
                ));
            }
            state.frags.capacity = c as usize;
        }
        let tps = septa_dataplane::worker::TICKS_PER_SECOND;
        if let Some(t) = dp.fragment_timeout {
            if !(1..=120).contains(&t) {
                return Err(value_err(
                    "dataplane.fragment_timeout".into(),
                    format!("{t} s is outside 1..=120"),
                ));
            }
            state.frags.timeout = t * tps;
        }
        for (key, class, secs) in dp.timeouts.set() {
            if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
                return Err(value_err(
                    format!("dataplane.timeouts.{key}"),
                    format!("{secs} s is outside 1..={MAX_TIMEOUT_SECS}"),
                ));
            }
            state.flows.timeouts.set(class, secs * tps);
        }
        state.fail_open = dp.fail_open;
        if let Some(n) = dp.l7_flows {
            if !(1..=capacity).contains(&n) {
                return Err(value_err(
                    "dataplane.l7_flows".into(),
                    format!("{n} is outside 1..=dataplane.flow_capacity ({capacity})"),
                ));
            }
            state.l7_flows = n as usize;
        }
        if let Some(s) = dp.flow_update_interval {
            if s > MAX_FLOW_UPDATE_INTERVAL_S {
                return Err(value_err(
                    "dataplane.flow_update_interval".into(),
                    format!(
                        "{s} is outside 0..={MAX_FLOW_UPDATE_INTERVAL_S} seconds (0: no periodic flow updates)"
                    ),
                ));
            }
            state.update_interval = s * tps;
        }
        let event_ring = dp
            .event_ring
            .unwrap_or(septa_dataplane::events::DEFAULT_RING_CAPACITY as u64);
        if !(1..=1 << 20).contains(&event_ring) {
            return Err(value_err(
                "dataplane.event_ring".into(),
                format!("{event_ring} is outside 1..=1048576"),
            ));
        }
        let control = match raw.control {
            None => None,
            Some(c) => crate::control_host::ControlConfig::from_raw(c, path.parent())
                .map_err(|(key, message)| value_err(key, message))?,
        };
        let export =
            crate::control_host::check_export(raw.export, path.parent(), control.is_some())
                .map_err(|(key, message)| value_err(key, message))?;
        let control = control.map(|mut c| {
            c.export = export.clone();
            c
        });
        let ml = match raw.ml {
            None => None,
            Some(m) => crate::ml_host::MlSettings::from_raw(
                m,
                path.parent(),
                capacity as usize,
                control.is_some(),
            )
            .map_err(|(key, message)| value_err(key, message))?,
        };
        if control.is_some() && matches!(decision, WorkerPolicy::Fixed(_)) {
            return Err(value_err(
                "dataplane.decision".into(),
                "a fixed decision cannot be combined with [control]: the control plane publishes \
                 committed policies (use `dataplane.policy` to seed its store, or nothing)"
                    .into(),
            ));
        }
        let config_dir = path
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let config_dir = if config_dir.is_empty() {
            ".".to_owned()
        } else {
            config_dir
        };
        let eal_args = raw
            .dpdk
            .eal_args
            .iter()
            .map(|a| a.replace("{config_dir}", &config_dir))
            .collect();
        Ok(GatewayConfig {
            path: path.to_owned(),
            eal_args,
            mempool_size: raw.dpdk.mempool_size,
            mempool_cache: raw.dpdk.mempool_cache,
            rx_descriptors: raw.dpdk.rx_descriptors,
            tx_descriptors: raw.dpdk.tx_descriptors,
            ports: names,
            pairs,
            worker_lcores: raw.dataplane.worker_lcores,
            decision,
            state,
            event_ring: event_ring as usize,
            control,
            export,
            routing,
            ml,
        })
    }
}

/// Routed mode (`mode = "routed"` pairs): the gateway's addresses per port and the static routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// The ports of routed pairs.
    pub ports: Vec<RoutedPortConfig>,
    /// `[[routes]]`.
    pub routes: Vec<septa_dataplane::route::StaticRoute>,
}

/// One port of a routed pair (`[[ports]]` `address`, `address6`, `mac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedPortConfig {
    /// Index into [`GatewayConfig::ports`].
    pub port: u16,
    /// `mac`; `None`: the port's own MAC, known once the port is up.
    pub mac: Option<[u8; 6]>,
    /// `address`.
    pub v4: Option<septa_dataplane::route::Ipv4Net>,
    /// `address6`.
    pub v6: Option<septa_dataplane::route::Ipv6Net>,
}

impl RoutingConfig {
    /// The data plane's router configuration; `port_mac(port)` gives the MAC of ports without a
    /// `mac` key.
    pub fn router_config(
        &self,
        port_mac: impl Fn(u16) -> [u8; 6],
    ) -> septa_dataplane::route::RouterConfig {
        let ports = self
            .ports
            .iter()
            .map(|p| septa_dataplane::route::RoutedPort {
                port: p.port,
                mac: p.mac.unwrap_or_else(|| port_mac(p.port)),
                v4: p.v4,
                v6: p.v6,
            })
            .collect();
        septa_dataplane::route::RouterConfig::new(ports, self.routes.clone())
    }
}

fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Check the routed-mode keys: addresses only on ports of routed pairs and present on each of
/// them, well-formed MACs and routes, and (through the data plane's own checks) no overlapping
/// subnets and every next hop on a connected subnet. Errors are (key, message).
fn check_routing(
    ports: &[RawPort],
    routes: &[RawRoute],
    pairs: &[(u16, u16, PairMode)],
) -> Result<Option<RoutingConfig>, (String, String)> {
    use septa_dataplane::RouteError;
    use septa_dataplane::route::{IpNet, Ipv4Net, Ipv6Net, Router, StaticRoute};
    let routed: BTreeSet<u16> = pairs
        .iter()
        .filter(|p| p.2 == PairMode::Routed)
        .flat_map(|p| [p.0, p.1])
        .collect();
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        // Bounded by the port-count check of the caller.
        let idx = u16::try_from(i).unwrap_or(u16::MAX);
        let set = [
            ("address", p.address.is_some()),
            ("address6", p.address6.is_some()),
            ("mac", p.mac.is_some()),
        ];
        if !routed.contains(&idx) {
            if let Some((key, _)) = set.iter().find(|(_, s)| *s) {
                return Err((
                    format!("ports[{i}].{key}"),
                    "only ports of a `mode = \"routed\"` pair take routed-mode settings".into(),
                ));
            }
            continue;
        }
        if p.address.is_none() && p.address6.is_none() {
            return Err((
                format!("ports[{i}].address"),
                format!(
                    "port `{}` is in a routed pair and needs `address` and/or `address6`",
                    p.name
                ),
            ));
        }
        let v4 = match &p.address {
            None => None,
            Some(a) => Some(a.parse::<Ipv4Net>().map_err(|_| {
                (
                    format!("ports[{i}].address"),
                    format!("`{a}` is not an IPv4 address with prefix length (e.g. 10.1.0.1/24)"),
                )
            })?),
        };
        let v6 = match &p.address6 {
            None => None,
            Some(a) => Some(a.parse::<Ipv6Net>().map_err(|_| {
                (
                    format!("ports[{i}].address6"),
                    format!("`{a}` is not an IPv6 address with prefix length (e.g. fd00:1::1/64)"),
                )
            })?),
        };
        let mac = match &p.mac {
            None => None,
            Some(m) => match parse_mac(m) {
                Some(mac) if mac[0] & 1 == 0 && mac != [0; 6] => Some(mac),
                _ => {
                    return Err((
                        format!("ports[{i}].mac"),
                        format!("`{m}` is not a unicast MAC address (e.g. 02:00:00:00:01:01)"),
                    ));
                }
            },
        };
        out.push(RoutedPortConfig {
            port: idx,
            mac,
            v4,
            v6,
        });
    }
    let mut static_routes = Vec::with_capacity(routes.len());
    for (i, r) in routes.iter().enumerate() {
        if routed.is_empty() {
            return Err((
                format!("routes[{i}]"),
                "static routes need a `mode = \"routed\"` pair".into(),
            ));
        }
        let prefix = r.prefix.parse::<IpNet>().map_err(|_| {
            (
                format!("routes[{i}].prefix"),
                format!("`{}` is not a prefix (e.g. 192.0.2.0/24)", r.prefix),
            )
        })?;
        let via = r.via.parse::<std::net::IpAddr>().map_err(|_| {
            (
                format!("routes[{i}].via"),
                format!("`{}` is not an IP address", r.via),
            )
        })?;
        static_routes.push(StaticRoute { prefix, via });
    }
    if routed.is_empty() {
        return Ok(None);
    }
    let cfg = RoutingConfig {
        ports: out,
        routes: Vec::new(),
    };
    // The data plane's own checks, with stand-in MACs: first the ports, then each route in turn,
    // so that an error names its key.
    let stand_in = |p: u16| [0x02, 0, 0, 0, (p >> 8) as u8, p as u8];
    let port_key = |port: u16, addr: Option<IpNet>| {
        let i = usize::from(port);
        match addr {
            Some(IpNet::V6(_)) => format!("ports[{i}].address6"),
            _ => format!("ports[{i}].address"),
        }
    };
    if let Err(e) = Router::new(&cfg.router_config(stand_in), 0) {
        let key = match &e {
            RouteError::BadAddress { port, addr } => port_key(*port, Some(*addr)),
            RouteError::Overlap { port, prefix, .. } => port_key(*port, Some(*prefix)),
            RouteError::NoAddress(port) | RouteError::DuplicatePort(port) => port_key(*port, None),
            RouteError::BadMac(port) => format!("ports[{port}].mac"),
            _ => "ports".into(),
        };
        return Err((key, e.to_string()));
    }
    for i in 0..static_routes.len() {
        let mut c = cfg.router_config(stand_in);
        c.routes = static_routes[..=i].to_vec();
        if let Err(e) = Router::new(&c, 0) {
            let key = match e {
                RouteError::ShadowsConnected { .. } => format!("routes[{i}].prefix"),
                _ => format!("routes[{i}].via"),
            };
            return Err((key, e.to_string()));
        }
    }
    Ok(Some(RoutingConfig {
        routes: static_routes,
        ..cfg
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[dpdk]
eal_args = ["-l", "0", "--no-huge", "-m", "256", "--vdev=net_ring0", "--vdev=net_ring1"]

[[ports]]
name = "net_ring0"
[[ports]]
name = "net_ring1"

[[pairs]]
ports = ["net_ring0", "net_ring1"]

[dataplane]
decision = "allow-all"
"#;

    fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::parse(Path::new("gw.toml"), text)
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.ports, ["net_ring0", "net_ring1"]);
        assert_eq!(c.pairs, [(0, 1, PairMode::Bridge)]);
        assert_eq!(c.mempool_size, 8191);
        assert_eq!(c.decision, WorkerPolicy::Fixed(DecisionConfig::AllowAll));
        assert!(c.worker_lcores.is_none());
    }

    #[test]
    fn unknown_key_is_named_with_file() {
        let text = GOOD.replace("decision = \"allow-all\"", "decison = \"allow-all\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("gw.toml"), "{e}");
        assert!(e.contains("decison"), "{e}");
    }

    #[test]
    fn missing_section_is_named() {
        let e = parse("[[ports]]\nname = \"a\"\n").unwrap_err().to_string();
        assert!(e.contains("dpdk"), "{e}");
    }

    #[test]
    fn pair_with_unknown_port_names_the_key() {
        let text = GOOD.replace(
            "ports = [\"net_ring0\", \"net_ring1\"]",
            "ports = [\"net_ring0\", \"eth9\"]",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("pairs[0].ports[1]") && e.contains("eth9"), "{e}");
    }

    #[test]
    fn port_in_two_pairs_is_rejected() {
        let text = format!("{GOOD}\n[[pairs]]\nports = [\"net_ring1\", \"net_ring0\"]\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("pairs[1].ports[0]") && e.contains("already"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_rejected_with_key() {
        let text = GOOD.replace("[dpdk]", "[dpdk]\nmempool_size = 10");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("dpdk.mempool_size")
        );
        let text = GOOD.replace("[dpdk]", "[dpdk]\nrx_descriptors = 8");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("dpdk.rx_descriptors")
        );
        let text = GOOD.replace("decision = \"allow-all\"", "worker_lcores = []");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("dataplane.worker_lcores")
        );
        let text = GOOD.replace("decision = \"allow-all\"", "decision = \"maybe\"");
        assert!(parse(&text).unwrap_err().to_string().contains("maybe"));
    }

    #[test]
    fn flow_update_interval_defaults_is_shown_and_bad_values_name_the_key() {
        let c = parse(GOOD).unwrap();
        assert_eq!(
            c.state.update_interval,
            septa_dataplane::worker::DEFAULT_UPDATE_INTERVAL_S * 1_000_000
        );
        let with = |v: &str| {
            GOOD.replace(
                "decision = \"allow-all\"",
                &format!("decision = \"allow-all\"\nflow_update_interval = {v}"),
            )
        };
        let c = parse(&with("30")).unwrap();
        assert_eq!(c.state.update_interval, 30_000_000);
        assert!(c.to_string().contains("flow updates    every 30 s"), "{c}");
        let c = parse(&with("0")).unwrap();
        assert_eq!(c.state.update_interval, 0);
        assert!(c.to_string().contains("flow updates    off"), "{c}");
        for bad in ["3601", "-1", "\"10s\""] {
            let e = parse(&with(bad)).unwrap_err().to_string();
            assert!(e.contains("flow_update_interval"), "{bad}: {e}");
        }
    }

    #[test]
    fn state_keys_have_defaults_and_bad_values_name_the_key() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.state.flows.capacity, DEFAULT_FLOW_CAPACITY);
        assert!(!c.state.fail_open);
        let text = GOOD.replace(
            "decision = \"allow-all\"",
            "flow_capacity = 1000\nmax_half_open = 10\nfail_open = true\nevent_ring = 8\n\
             fragment_timeout = 5\nl7_flows = 100\n[dataplane.timeouts]\nudp = 7\ntcp_established = 3600",
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.decision, WorkerPolicy::Awaiting);
        assert_eq!(c.state.flows.capacity, 1000);
        assert_eq!(c.state.flows.max_half_open, 10);
        assert!(c.state.fail_open);
        assert_eq!(c.event_ring, 8);
        assert_eq!(c.state.l7_flows, 100);
        assert_eq!(c.state.frags.timeout, 5_000_000);
        assert_eq!(c.state.flows.timeouts.get(TimeoutClass::Udp), 7_000_000);
        assert!(c.to_string().contains("ADMITTED"), "{c}");
        for (bad, key) in [
            ("flow_capacity = 0", "dataplane.flow_capacity"),
            ("max_half_open = 0", "dataplane.max_half_open"),
            ("fragment_capacity = 0", "dataplane.fragment_capacity"),
            ("fragment_timeout = 0", "dataplane.fragment_timeout"),
            ("event_ring = 0", "dataplane.event_ring"),
            ("l7_flows = 0", "dataplane.l7_flows"),
            ("flow_capacity = 10\nl7_flows = 11", "dataplane.l7_flows"),
            ("[dataplane.timeouts]\nudp = 0", "dataplane.timeouts.udp"),
            ("[dataplane.timeouts]\nbogus = 1", "bogus"),
        ] {
            let text = GOOD.replace("decision = \"allow-all\"", bad);
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn policy_is_relative_to_the_config_file() {
        let text = GOOD.replace(
            "decision = \"allow-all\"",
            "policy = \"policies/demo.yaml\"",
        );
        let c = GatewayConfig::parse(Path::new("/etc/septa/gw.toml"), &text).unwrap();
        assert_eq!(
            c.decision,
            WorkerPolicy::File("/etc/septa/policies/demo.yaml".into())
        );
        let text = GOOD.replace("decision = \"allow-all\"", "policy = \"/p/x.yaml\"");
        let c = GatewayConfig::parse(Path::new("/etc/septa/gw.toml"), &text).unwrap();
        assert_eq!(c.decision, WorkerPolicy::File("/p/x.yaml".into()));
        let text = GOOD.replace("decision = \"allow-all\"", "");
        assert_eq!(
            parse(&text).unwrap().decision,
            WorkerPolicy::Awaiting,
            "fail closed by default"
        );
    }

    #[test]
    fn decision_and_policy_are_mutually_exclusive() {
        let text = GOOD.replace(
            "decision = \"allow-all\"",
            "decision = \"allow-all\"\npolicy = \"demo.yaml\"",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("gw.toml") && e.contains("dataplane.policy") && e.contains("exclusive"),
            "{e}"
        );
        let text = GOOD.replace("decision = \"allow-all\"", "policy = \"\"");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("dataplane.policy")
        );
    }

    #[test]
    fn config_dir_is_substituted() {
        let text = GOOD.replace(
            "\"--vdev=net_ring0\"",
            "\"--vdev=net_pcap0,rx_pcap={config_dir}/a.pcap\"",
        );
        let c = GatewayConfig::parse(Path::new("/etc/septa/gw.toml"), &text).unwrap();
        assert!(
            c.eal_args
                .contains(&"--vdev=net_pcap0,rx_pcap=/etc/septa/a.pcap".to_owned()),
            "{:?}",
            c.eal_args
        );
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                GatewayConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n > 0, "no configs/*.toml found");
    }
    const ROUTED: &str = r#"
[dpdk]
eal_args = ["-l", "0", "--no-huge", "-m", "256", "--vdev=net_ring0", "--vdev=net_ring1"]

[[ports]]
name = "net_ring0"
address = "10.1.0.1/24"
address6 = "fd00:1::1/64"
mac = "02:00:00:00:01:01"
[[ports]]
name = "net_ring1"
address = "10.2.0.1/24"

[[pairs]]
ports = ["net_ring0", "net_ring1"]
mode = "routed"

[[routes]]
prefix = "192.0.2.0/24"
via = "10.2.0.254"

[dataplane]
decision = "allow-all"
"#;

    #[test]
    fn routed_pair_parses_and_check_config_prints_it() {
        let c = parse(ROUTED).unwrap();
        assert_eq!(c.pairs, [(0, 1, PairMode::Routed)]);
        let r = c.routing.as_ref().unwrap();
        assert_eq!(r.ports.len(), 2);
        assert_eq!(r.ports[0].mac, Some([2, 0, 0, 0, 1, 1]));
        assert_eq!(r.ports[1].mac, None);
        assert_eq!(r.ports[1].v6, None);
        let rc = r.router_config(|p| [2, 0, 0, 0, 9, p as u8]);
        assert_eq!(rc.ports[1].mac, [2, 0, 0, 0, 9, 1]);
        assert_eq!(rc.routes.len(), 1);
        let shown = c.to_string();
        for want in [
            "(Routed)",
            "routed port     net_ring0: address 10.1.0.1/24, address6 fd00:1::1/64, mac 02:00:00:00:01:01",
            "routed port     net_ring1: address 10.2.0.1/24, address6 -, mac the port's own",
            "route           192.0.2.0/24 via 10.2.0.254",
        ] {
            assert!(shown.contains(want), "{want} missing from\n{shown}");
        }
        assert!(parse(GOOD).unwrap().routing.is_none());
    }

    #[test]
    fn routed_settings_errors_name_the_key() {
        let cases = [
            (
                "address = \"10.1.0.1/24\"",
                "address = \"10.1.0.300/24\"",
                "ports[0].address",
            ),
            (
                "address6 = \"fd00:1::1/64\"",
                "address6 = \"fd00:1::1\"",
                "ports[0].address6",
            ),
            (
                "mac = \"02:00:00:00:01:01\"",
                "mac = \"01:00:00:00:01:01\"",
                "ports[0].mac",
            ),
            (
                "address = \"10.2.0.1/24\"",
                "address = \"10.1.0.2/16\"",
                "ports[1].address",
            ),
            (
                "address = \"10.2.0.1/24\"",
                "address = \"10.2.0.0/24\"",
                "ports[1].address",
            ),
            (
                "via = \"10.2.0.254\"",
                "via = \"10.9.0.1\"",
                "routes[0].via",
            ),
            ("via = \"10.2.0.254\"", "via = \"nope\"", "routes[0].via"),
            (
                "prefix = \"192.0.2.0/24\"",
                "prefix = \"10.2.0.0/24\"",
                "routes[0].prefix",
            ),
            (
                "prefix = \"192.0.2.0/24\"",
                "prefix = \"192.0.2.0\"",
                "routes[0].prefix",
            ),
            ("mode = \"routed\"", "mode = \"bridge\"", "ports[0].address"),
            ("address = \"10.2.0.1/24\"", "", "ports[1].address"),
        ];
        for (from, to, key) in cases {
            assert!(ROUTED.contains(from), "{from}");
            let e = parse(&ROUTED.replacen(from, to, 1))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{key}`")), "{to}: {e}");
        }
        let e = parse(&format!(
            "{GOOD}\n[[routes]]\nprefix = \"10.0.0.0/8\"\nvia = \"10.1.0.9\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`routes[0]`"), "{e}");
        let e = parse(&ROUTED.replace("via = ", "gw = "))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gw"), "{e}");
        let one = ROUTED.replace(
            "decision = \"allow-all\"",
            "decision = \"allow-all\"\nworker_lcores = [1]",
        );
        assert!(parse(&one).is_ok(), "one routed worker is fine");
        let e = parse(&one.replace("[1]", "[1, 2]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`dataplane.worker_lcores`") && e.contains("one worker"),
            "{e}"
        );
    }
}
