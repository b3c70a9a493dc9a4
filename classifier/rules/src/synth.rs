//! Synthetic rule sets and traces shaped like ClassBench's acl/fw/ipc families, and zone policies,
//! so tests and benchmarks need no external files. Deterministic: the same seed gives the same set.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::key::{Family, FlowKey};
use crate::rule::{Action, AddrMatch, HookId, Mode, PortRange, Prefix, Rule, RuleId, SourceRef};

/// A small deterministic generator (SplitMix64); no dependency, same numbers everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Which ClassBench seed family a synthetic set imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Access lists: specific source and destination prefixes, exact destination ports, mostly TCP.
    Acl,
    /// Firewalls: many wildcards and port ranges, both sides often short prefixes.
    Fw,
    /// IP chains: a mix of both.
    Ipc,
}

const PORT_RANGES: &[(u16, u16)] = &[
    (0, 1023),
    (1024, 65535),
    (6000, 6063),
    (1300, 1350),
    (7500, 7599),
    (2200, 2210),
];
const WELL_KNOWN: &[u16] = &[
    20, 21, 22, 23, 25, 53, 80, 110, 123, 137, 139, 143, 161, 443, 445, 1433, 1521, 3306, 3389,
    8080,
];

/// Prefix-length classes: 0 = wildcard, 1 = /1../15, 2 = /16../23, 3 = /24../32.
fn len_of_class(rng: &mut Rng, class: u8) -> u8 {
    match class {
        0 => 0,
        1 => 8 + rng.below(8) as u8,
        2 => 16 + rng.below(8) as u8,
        _ => rng.pick(&[24, 24, 28, 30, 32, 32, 32, 32]),
    }
}

/// Joint (source class, destination class) weights per profile, calibrated on the acl1/fw1/ipc1
/// 10K sets (e.g. fw1: 60% wildcard source with a /24+ destination).
fn class_weights(profile: Profile) -> &'static [(u8, u8, u32)] {
    match profile {
        Profile::Acl => &[
            (3, 3, 842),
            (3, 2, 74),
            (2, 3, 52),
            (2, 2, 16),
            (2, 1, 12),
            (1, 0, 2),
            (2, 0, 1),
            (0, 1, 1),
        ],
        Profile::Fw => &[
            (0, 3, 601),
            (3, 0, 208),
            (3, 3, 120),
            (2, 0, 31),
            (3, 2, 25),
            (0, 0, 8),
            (1, 0, 7),
        ],
        Profile::Ipc => &[
            (3, 3, 638),
            (2, 3, 149),
            (3, 2, 70),
            (0, 3, 56),
            (3, 0, 41),
            (2, 2, 28),
            (2, 0, 9),
            (0, 2, 5),
        ],
    }
}

/// Joint (source port, destination port) kinds per profile: 0 = any, 1 = exact, 2 = range.
fn port_weights(profile: Profile) -> &'static [(u8, u8, u32)] {
    match profile {
        Profile::Acl => &[(0, 1, 590), (0, 0, 295), (0, 2, 115)],
        Profile::Fw => &[
            (0, 1, 585),
            (0, 0, 192),
            (1, 0, 100),
            (2, 2, 65),
            (2, 1, 20),
            (1, 1, 20),
            (1, 2, 18),
        ],
        Profile::Ipc => &[
            (0, 1, 382),
            (0, 0, 349),
            (1, 0, 152),
            (0, 2, 84),
            (2, 0, 27),
            (1, 1, 4),
            (1, 2, 2),
        ],
    }
}

fn weighted(rng: &mut Rng, table: &[(u8, u8, u32)]) -> (u8, u8) {
    let total: u64 = table.iter().map(|&(_, _, w)| u64::from(w)).sum();
    let mut x = rng.below(total);
    for &(a, b, w) in table {
        if x < u64::from(w) {
            return (a, b);
        }
        x -= u64::from(w);
    }
    (table[0].0, table[0].1)
}

fn port_of_kind(rng: &mut Rng, kind: u8) -> PortRange {
    match kind {
        0 => PortRange::ANY,
        1 if rng.chance(0.7) => PortRange::exact(rng.pick(WELL_KNOWN)),
        1 => PortRange::exact(rng.below(65536) as u16),
        _ => {
            let (lo, hi) = rng.pick(PORT_RANGES);
            PortRange { lo, hi }
        }
    }
}

/// An address prefix drawn near one of `bases`, so prefixes nest and overlap like real sets.
fn near(rng: &mut Rng, bases: &[u32], len: u8) -> Prefix {
    let base = rng.pick(bases);
    let addr = if rng.chance(0.8) {
        base ^ (rng.below(1 << 16) as u32)
    } else {
        rng.next_u64() as u32
    };
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    Prefix::v4(Ipv4Addr::from(addr & mask), len)
}

/// `n` ClassBench-like IPv4 rules (first match wins), ids 0..n, actions allow/deny/inspect.
pub fn classbench_like(profile: Profile, n: usize, seed: u64) -> Vec<Rule> {
    let mut rng = Rng::new(seed);
    let nbases = (n as f64).sqrt() as usize + 4;
    let bases: Vec<u32> = (0..nbases)
        .map(|_| (rng.next_u64() as u32) & 0xffff_0000)
        .collect();
    let mut rules = Vec::with_capacity(n + 1);
    for i in 0..n {
        let (sc, dc) = weighted(&mut rng, class_weights(profile));
        let (sl, dl) = (len_of_class(&mut rng, sc), len_of_class(&mut rng, dc));
        let proto = match rng.below(20) {
            0..=11 => Some(6),
            12..=15 => Some(17),
            16 => Some(1),
            17 => Some(47),
            _ => None,
        };
        let (sport, dport) = if matches!(proto, Some(6 | 17) | None) {
            let (sk, dk) = weighted(&mut rng, port_weights(profile));
            (port_of_kind(&mut rng, sk), port_of_kind(&mut rng, dk))
        } else {
            (PortRange::ANY, PortRange::ANY)
        };
        rules.push(Rule {
            id: RuleId(i as u32),
            src: any_or(near(&mut rng, &bases, sl)),
            dst: any_or(near(&mut rng, &bases, dl)),
            sport,
            dport,
            proto,
            in_port: None,
            vlan: None,
            action: action(&mut rng),
            mode: if rng.chance(0.1) {
                Mode::Monitor
            } else {
                Mode::Enforce
            },
            source: SourceRef(i as u64),
        });
    }
    rules
}

fn any_or(p: Prefix) -> AddrMatch {
    if p.len == 0 {
        AddrMatch::Any
    } else {
        AddrMatch::prefix(p)
    }
}

fn action(rng: &mut Rng) -> Action {
    match rng.below(10) {
        0..=5 => Action::Allow,
        6..=8 => Action::Deny,
        _ => Action::Inspect(HookId(rng.below(4) as u32)),
    }
}

/// The same rules with every IPv4 prefix mapped into `2001:db8::/32`-style IPv6 space (address
/// bits kept in the low 32 bits, one of two /96 networks chosen by rule id). Any stays Any.
pub fn to_v6(rules: &[Rule]) -> Vec<Rule> {
    let map = |m: &AddrMatch, id: u32| -> AddrMatch {
        match m {
            AddrMatch::Any => AddrMatch::Any,
            AddrMatch::Prefixes(ps) => AddrMatch::Prefixes(
                ps.iter()
                    .map(|p| {
                        let net = 0x2001_0db8u128 << 96 | u128::from(id % 2) << 64;
                        let len = if p.len == 0 { 33 } else { 96 + p.len };
                        Prefix::v6(Ipv6Addr::from(net | p.addr), len)
                    })
                    .collect(),
            ),
        }
    };
    rules
        .iter()
        .map(|r| Rule {
            src: map(&r.src, r.id.0),
            dst: map(&r.dst, r.id.0),
            ..r.clone()
        })
        .collect()
}

fn point_in(rng: &mut Rng, m: &AddrMatch, family: Family) -> u128 {
    let random = match family {
        Family::V4 => u128::from(rng.next_u64() as u32),
        Family::V6 => u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()),
    };
    match m {
        AddrMatch::Any => random,
        AddrMatch::Prefixes(ps) => {
            let cands: Vec<&Prefix> = ps.iter().filter(|p| p.family == family).collect();
            match cands.len() {
                0 => random,
                n => {
                    let (lo, hi) = cands[rng.below(n as u64) as usize].range();
                    lo | (random & (hi - lo))
                }
            }
        }
    }
}

fn port_in(rng: &mut Rng, r: PortRange) -> u16 {
    r.lo + rng.below(u64::from(r.hi - r.lo) + 1) as u16
}

/// `n` keys: most drawn inside a random rule (like ClassBench's trace generator), some random.
pub fn trace(rules: &[Rule], n: usize, seed: u64) -> Vec<FlowKey> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            if rules.is_empty() || rng.chance(0.1) {
                let mut k = FlowKey::v4(
                    Ipv4Addr::from(rng.next_u64() as u32),
                    Ipv4Addr::from(rng.next_u64() as u32),
                    rng.pick(&[6, 17, 1, 47, 0]),
                    rng.next_u64() as u16,
                    rng.next_u64() as u16,
                );
                if rng.chance(0.2) {
                    k.family = Family::V6;
                    k.src |= u128::from(rng.next_u64()) << 64;
                }
                return k;
            }
            let r = &rules[rng.below(rules.len() as u64) as usize];
            let family = match (&r.src, &r.dst) {
                (AddrMatch::Prefixes(ps), _) | (_, AddrMatch::Prefixes(ps)) => ps[0].family,
                _ => Family::V4,
            };
            FlowKey {
                src: point_in(&mut rng, &r.src, family),
                dst: point_in(&mut rng, &r.dst, family),
                sport: port_in(&mut rng, r.sport),
                dport: port_in(&mut rng, r.dport),
                proto: r.proto.unwrap_or_else(|| rng.below(256) as u8),
                family,
                vlan: r.vlan.unwrap_or(0),
                in_port: r.in_port.unwrap_or(0),
            }
        })
        .collect()
}

/// A zone policy: `zones` zones of 1–4 prefixes each (IPv4, some IPv6), and `conduits` rules
/// allowing one service (protocol + destination port range) from one zone to another, followed by
/// a few zone-wide denies. Every rule is zone-shaped, so it compiles to the fast path.
pub fn zone_policy(zones: usize, conduits: usize, seed: u64) -> Vec<Rule> {
    let mut rng = Rng::new(seed);
    let zone_sets: Vec<Vec<Prefix>> = (0..zones)
        .map(|z| {
            let k = 1 + rng.below(4) as usize;
            (0..k)
                .map(|i| {
                    // Every zone has an IPv4 prefix, so any two zones share a family.
                    if i > 0 && rng.chance(0.3) {
                        let net = 0xfd00u128 << 112 | u128::from(z as u64) << 64;
                        Prefix::v6(Ipv6Addr::from(net), 64)
                    } else {
                        let len = rng.pick(&[16u8, 20, 24, 24, 28, 32]);
                        near(&mut rng, &[0x0a00_0000, 0xac10_0000, 0xc0a8_0000], len)
                    }
                })
                .collect()
        })
        .collect();
    let mut rules = Vec::with_capacity(conduits);
    for i in 0..conduits {
        let (s, d) = (
            rng.below(zones as u64) as usize,
            rng.below(zones as u64) as usize,
        );
        let dport = if rng.chance(0.8) {
            PortRange::exact(rng.pick(WELL_KNOWN))
        } else {
            PortRange {
                lo: 1024,
                hi: 65535,
            }
        };
        let last = i + 3 >= conduits;
        rules.push(Rule {
            id: RuleId(i as u32),
            src: AddrMatch::Prefixes(zone_sets[s].clone()),
            dst: if last {
                AddrMatch::Any
            } else {
                AddrMatch::Prefixes(zone_sets[d].clone())
            },
            dport: if last { PortRange::ANY } else { dport },
            proto: if last {
                None
            } else {
                Some(rng.pick(&[6, 6, 17]))
            },
            action: if last { Action::Deny } else { action(&mut rng) },
            source: SourceRef(i as u64),
            ..Rule::default()
        });
    }
    rules
}
