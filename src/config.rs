//! `gateway.toml`: the appliance configuration read by `septa run`.
//!
//! Parsed with `deny_unknown_fields` into DTOs, then checked into a [`GatewayConfig`] whose
//! invariants (ports exist, pairs are disjoint, sizes in range) the rest of the binary relies on.
//! Every error names the file and the key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
    dataplane: RawDataplane,
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
}

/// What the workers enforce: `[dataplane] decision` or `[dataplane] policy` (never both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerPolicy {
    /// A fixed decision (`decision = "allow-all" | "deny-all"`; deny-all when neither key is set).
    Fixed(DecisionConfig),
    /// A zone/conduit policy file (`policy = "FILE"`), resolved against the configuration's
    /// directory.
    File(PathBuf),
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
            WorkerPolicy::Fixed(d) => writeln!(f, "  decision        {d:?}"),
            WorkerPolicy::File(p) => writeln!(f, "  policy          {}", p.display()),
        }
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
        }
        let decision = match (raw.dataplane.decision, raw.dataplane.policy) {
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
            (d, None) => WorkerPolicy::Fixed(d.unwrap_or_default()),
        };
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
        })
    }
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
            WorkerPolicy::Fixed(DecisionConfig::DenyAll),
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
}
