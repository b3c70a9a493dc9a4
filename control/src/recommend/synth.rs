//! Generated traffic from a known generating policy, for recommender tests and benchmarks.
//!
//! A [`Scenario`] is a set of zones (exact host lists) and allowed services between them; it
//! renders as the generating policy (hosts as host prefixes, so the policy is exactly the
//! scenario) and produces flow records that only use allowed services. [`score`] compares what
//! a recommended policy permits with what the generating policy permits over every
//! (source host, destination host, observed service) triple: precision and recall.
//!
//! Deterministic: a small xorshift generator seeded by the caller, no global randomness.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use septa_classifier::FlowKey;
use serde::Serialize;

use crate::history::{FlowVerdict, ObservedFlow};
use crate::policy::ValidatedPolicy;
use crate::semantics::{Verdict, evaluate};

/// A deterministic xorshift64* generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A zone of the generating policy.
#[derive(Clone, Debug)]
pub struct SynthZone {
    /// Name.
    pub name: String,
    /// Its hosts.
    pub hosts: Vec<IpAddr>,
}

/// Allowed traffic of the generating policy.
#[derive(Clone, Debug)]
pub struct SynthConduit {
    /// Source zone index.
    pub from: usize,
    /// Destination zone index.
    pub to: usize,
    /// (IP protocol, destination port).
    pub services: Vec<(u8, u16)>,
    /// Relative traffic weight.
    pub weight: u32,
}

/// A generating policy.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    /// Zones.
    pub zones: Vec<SynthZone>,
    /// Conduits.
    pub conduits: Vec<SynthConduit>,
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

impl Scenario {
    /// A zone of hosts `10.b.c.first ..` (`count` of them).
    pub fn zone(&mut self, name: &str, b: u8, c: u8, first: u8, count: u8) -> usize {
        self.zones.push(SynthZone {
            name: name.into(),
            hosts: (0..count).map(|i| v4(10, b, c, first + i)).collect(),
        });
        self.zones.len() - 1
    }

    /// Allows `services` from `from` to `to`.
    pub fn allow(&mut self, from: usize, to: usize, services: &[(u8, u16)], weight: u32) {
        self.conduits.push(SynthConduit {
            from,
            to,
            services: services.to_vec(),
            weight,
        });
    }

    /// A large regular scenario: `zones` zones of `hosts` hosts each, zone `i` in
    /// `10.(i/250).(i%250).0/24`; every zone serves its own TCP port to the next two zones, and
    /// zone 0 serves DNS (udp/53) to every zone.
    pub fn tiered(zones: usize, hosts: u8) -> Scenario {
        let mut s = Scenario::default();
        for i in 0..zones {
            s.zone(
                &format!("z{i}"),
                (i / 250) as u8,
                (i % 250) as u8,
                10,
                hosts,
            );
        }
        for i in 0..zones {
            let port = 1000 + i as u16;
            for step in [1, 2] {
                let from = (i + zones - step) % zones;
                if from != i {
                    s.allow(from, i, &[(6, port)], 10);
                }
            }
            if i != 0 {
                s.allow(i, 0, &[(17, 53)], 2);
            }
        }
        s
    }

    /// Every host of the scenario.
    pub fn hosts(&self) -> Vec<IpAddr> {
        let mut h: Vec<IpAddr> = self.zones.iter().flat_map(|z| z.hosts.clone()).collect();
        h.sort_unstable();
        h.dedup();
        h
    }

    /// Every service any conduit allows.
    pub fn services(&self) -> Vec<(u8, u16)> {
        let s: BTreeSet<(u8, u16)> = self
            .conduits
            .iter()
            .flat_map(|c| c.services.clone())
            .collect();
        s.into_iter().collect()
    }

    /// The generating policy as YAML (hosts as host prefixes).
    pub fn policy_yaml(&self, mode: &str) -> String {
        let mut y = format!(
            "apiVersion: septa.io/v1\nkind: Policy\nmetadata: {{name: generating}}\nspec:\n  defaults: {{mode: {mode}}}\n  zones:\n"
        );
        for z in &self.zones {
            let hosts: Vec<String> = z.hosts.iter().map(|h| format!("{h}/32")).collect();
            let _ = writeln!(
                y,
                "    - {{name: {}, subnets: [{}]}}",
                z.name,
                hosts.join(", ")
            );
        }
        y.push_str("  conduits:\n");
        for (i, c) in self.conduits.iter().enumerate() {
            let svcs: Vec<String> = c
                .services
                .iter()
                .map(|&(p, port)| match p {
                    6 => format!("{{proto: tcp, ports: [{port}]}}"),
                    17 => format!("{{proto: udp, ports: [{port}]}}"),
                    _ => "{proto: icmp}".to_owned(),
                })
                .collect();
            let _ = writeln!(
                y,
                "    - {{name: g{i}, from: [{}], to: [{}], services: [{}]}}",
                self.zones[c.from].name,
                self.zones[c.to].name,
                svcs.join(", ")
            );
        }
        y
    }

    /// `n` flow records spread over `[from_ms, to_ms)`, each an allowed service between random
    /// hosts of a conduit's zones (weighted), reported as would-deny (monitor mode, nothing
    /// allowed yet), with rule 0 and revision `monitor`.
    pub fn flows(&self, n: usize, from_ms: i64, to_ms: i64, seed: u64) -> Vec<ObservedFlow> {
        let mut rng = Rng::new(seed);
        let total: u32 = self.conduits.iter().map(|c| c.weight).sum();
        let span = (to_ms - from_ms).max(1) as u64;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let mut w = (rng.next_u64() % u64::from(total.max(1))) as u32;
            let c = self
                .conduits
                .iter()
                .find(|c| {
                    if w < c.weight {
                        true
                    } else {
                        w -= c.weight;
                        false
                    }
                })
                .unwrap_or(&self.conduits[0]);
            let (fz, tz) = (&self.zones[c.from].hosts, &self.zones[c.to].hosts);
            let (proto, dport) = c.services[rng.below(c.services.len())];
            out.push(ObservedFlow {
                ts_ms: from_ms + (rng.next_u64() % span) as i64,
                src: fz[rng.below(fz.len())],
                dst: tz[rng.below(tz.len())],
                proto,
                dport,
                l7: String::new(),
                verdict: FlowVerdict::WouldDeny,
                rule: 0,
                revision: "monitor".into(),
                flows: 1,
                packets: 1 + rng.next_u64() % 20,
                bytes: 64 + rng.next_u64() % 20_000,
            });
        }
        out
    }
}

/// How a recommended policy compares with the generating one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Score {
    /// Triples both permit.
    pub true_positives: u64,
    /// Triples only the recommendation permits.
    pub false_positives: u64,
    /// Triples only the generating policy permits.
    pub false_negatives: u64,
    /// `tp / (tp + fp)`.
    pub precision: f64,
    /// `tp / (tp + fn)`.
    pub recall: f64,
}

/// Compares `recommended` with `generating` over every (source host, destination host,
/// service) triple of the scenario (sources and destinations distinct), using the policy
/// semantics (the compiler's oracle).
pub fn score(s: &Scenario, generating: &ValidatedPolicy, recommended: &ValidatedPolicy) -> Score {
    let hosts = s.hosts();
    let services = s.services();
    let permits = |p: &ValidatedPolicy, k: &FlowKey| evaluate(p, k).0 != Verdict::Deny;
    let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
    for &a in &hosts {
        for &b in &hosts {
            if a == b {
                continue;
            }
            let (IpAddr::V4(a4), IpAddr::V4(b4)) = (a, b) else {
                continue;
            };
            for &(proto, port) in &services {
                let k = FlowKey::v4(a4, b4, proto, 40000, port);
                match (permits(generating, &k), permits(recommended, &k)) {
                    (true, true) => tp += 1,
                    (false, true) => fp += 1,
                    (true, false) => fneg += 1,
                    (false, false) => {}
                }
            }
        }
    }
    let ratio = |x: u64, y: u64| {
        if x + y == 0 {
            1.0
        } else {
            x as f64 / (x + y) as f64
        }
    };
    Score {
        true_positives: tp,
        false_positives: fp,
        false_negatives: fneg,
        precision: ratio(tp, fp),
        recall: ratio(tp, fneg),
    }
}
