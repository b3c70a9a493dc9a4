//! Policy recommendations from observed traffic: proposed zones (endpoints grouped by subnet,
//! labels and behaviour) and least-privilege conduits between them, turned into a staged policy
//! in the ordinary policy model, so validation, compile, what-if and the impact preview apply.
//!
//! Algorithm (deterministic: every collection is ordered; no hashing decides anything):
//! 1. Flow aggregates that were only ever denied in enforce mode are left out (they were not
//!    permitted traffic); everything allowed or would-denied (monitor mode) is "observed".
//! 2. Each endpoint gets a behaviour profile: the services (protocol/port) it *serves* (is the
//!    destination of) and *uses* (is the source of).
//! 3. Endpoints are grouped per subnet (`/24` IPv4, `/64` IPv6 by default). Endpoints with labels
//!    are grouped by their labels. The others are clustered greedily, richest profiles first:
//!    an endpoint joins the first cluster of the same kind (server or pure client) whose profile
//!    union shares at least `similarity` of the endpoint's own profile (overlap coefficient),
//!    else it starts a new one. Its confidence is how typical its features are of the cluster
//!    (mean share of members having each of its features; labels give 1.0).
//! 4. Each (source zone, destination zone) pair with observed traffic gets one conduit with
//!    exactly the observed services (single ports, no ranges): least privilege by construction.
//!    Coverage is the share of observed flow records a conduit (or the whole proposal) permits.
//! 5. Caveats: a window shorter than `min_window_ms` (default 7 days) may have missed periodic
//!    flows (weekly backups, monthly patching); conduits seen fewer than three times; flows of
//!    protocols the policy model cannot name narrowly (not TCP/UDP/ICMP) are left uncovered.
//!
//! L7 labels seen on a conduit's flows are listed for the operator; no L7 constraint is written
//! (the operator adds one when editing the staged document).

pub mod synth;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::error::Diagnostic;
use crate::history::{FlowAggregate, FlowKeyAgg};
use crate::policy::dto::{
    Conduit, ConduitAction, DefaultAction, Defaults, Metadata, ModeName, PolicyDocument, PortSpec,
    ProtoName, Service, Spec, Zone,
};
use crate::policy::{ValidatedPolicy, validate};

/// How recommendations are made.
#[derive(Clone, Debug, PartialEq)]
pub struct RecommendOptions {
    /// Start of the observation window (Unix ms).
    pub from_ms: i64,
    /// End of the observation window (Unix ms).
    pub to_ms: i64,
    /// Windows shorter than this get a caveat about periodic flows.
    pub min_window_ms: i64,
    /// IPv4 grouping prefix length.
    pub v4_prefix: u8,
    /// IPv6 grouping prefix length.
    pub v6_prefix: u8,
    /// Overlap needed to join a behaviour cluster (0..=1).
    pub similarity: f64,
    /// Known endpoint labels (e.g. from the running policy's `spec.endpoints`).
    pub labels: BTreeMap<IpAddr, BTreeMap<String, String>>,
    /// Name of the proposed policy.
    pub policy_name: String,
    /// Mode of the proposed policy (`defaults.mode`).
    pub mode: ModeName,
    /// Most example flow keys listed per conduit.
    pub examples: usize,
    /// The running policy's zones: endpoints inside one keep it (see [`KnownZones`]).
    pub known: Option<KnownZones>,
}

/// The zones of the running policy, for endpoints that are already placed: such an endpoint
/// keeps its zone (the most specific one containing it; the first in document order on a tie)
/// with confidence 1 and the reason, and the proposed zone is written with the running zone's
/// own prefixes. Only unplaced endpoints are grouped by subnet, labels and behaviour.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KnownZones {
    zones: Vec<(String, Vec<IpNet>)>,
    endpoints: BTreeMap<IpAddr, String>,
}

impl KnownZones {
    /// From a validated (running) policy: its resolved zones and named endpoints.
    pub fn from_policy(p: &ValidatedPolicy) -> Self {
        let endpoints = p
            .document()
            .spec
            .endpoints
            .iter()
            .filter_map(|e| {
                let a: IpAddr = e.address.parse().ok()?;
                let labels = if e.labels.is_empty() {
                    String::new()
                } else {
                    format!(", labels {}", fmt_labels(&e.labels))
                };
                Some((a, format!("endpoint {}{labels}", e.name)))
            })
            .collect();
        KnownZones {
            zones: p
                .zones()
                .iter()
                .map(|z| (z.name.clone(), z.prefixes.clone()))
                .collect(),
            endpoints,
        }
    }

    /// The zone holding `a` and the prefix that placed it.
    fn zone_of(&self, a: IpAddr) -> Option<(usize, IpNet)> {
        let mut best: Option<(usize, IpNet)> = None;
        for (i, (_, prefixes)) in self.zones.iter().enumerate() {
            for p in prefixes.iter().filter(|p| p.contains(&a)) {
                if best.is_none_or(|(_, b)| p.prefix_len() > b.prefix_len()) {
                    best = Some((i, *p));
                }
            }
        }
        best
    }

    /// Endpoint labels, as the recommender's `labels` option takes them.
    pub fn labels(p: &ValidatedPolicy) -> BTreeMap<IpAddr, BTreeMap<String, String>> {
        p.document()
            .spec
            .endpoints
            .iter()
            .filter(|e| !e.labels.is_empty())
            .filter_map(|e| {
                let a: IpAddr = e.address.parse().ok()?;
                Some((a, e.labels.clone()))
            })
            .collect()
    }
}

impl Default for RecommendOptions {
    fn default() -> Self {
        RecommendOptions {
            from_ms: 0,
            to_ms: 0,
            min_window_ms: 7 * 24 * 3600 * 1000,
            v4_prefix: 24,
            v6_prefix: 64,
            similarity: 0.6,
            labels: BTreeMap::new(),
            policy_name: "recommended".into(),
            mode: ModeName::Enforce,
            examples: 10,
            known: None,
        }
    }
}

/// Where an endpoint was put, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointAssignment {
    /// The endpoint.
    pub address: IpAddr,
    /// Its proposed zone.
    pub zone: String,
    /// 0..=1: how typical its behaviour is of the zone.
    pub confidence: f64,
    /// In words.
    pub reason: String,
}

/// A proposed zone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProposedZone {
    /// Zone name (a valid policy name).
    pub name: String,
    /// The grouping subnet.
    pub subnet: IpNet,
    /// Observed members, sorted.
    pub members: Vec<IpAddr>,
    /// What the zone is written as: the whole subnet when it is the subnet's only group, else
    /// the members as host prefixes.
    pub prefixes: Vec<IpNet>,
    /// Why these endpoints belong together.
    pub reason: String,
    /// Mean member confidence.
    pub confidence: f64,
}

/// One service of a proposed conduit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProposedService {
    /// Protocol.
    pub proto: ProtoName,
    /// Destination ports (empty for ICMP).
    pub ports: Vec<u16>,
}

/// A proposed conduit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProposedConduit {
    /// Conduit name (a valid policy name); also the suggestion id.
    pub name: String,
    /// Source zone.
    pub from: String,
    /// Destination zone.
    pub to: String,
    /// Exactly the observed services.
    pub services: Vec<ProposedService>,
    /// Flow aggregates it covers.
    pub aggregates: u64,
    /// Flow records it covers.
    pub flows: u64,
    /// Bytes it covers.
    pub bytes: u64,
    /// Share of all observed flow records (percent).
    pub coverage_pct: f64,
    /// First and last seen.
    pub first_ms: i64,
    /// Last seen.
    pub last_ms: i64,
    /// Some covered flows (key order).
    pub examples: Vec<FlowKeyAgg>,
    /// L7 labels seen.
    pub l7_labels: Vec<String>,
    /// Things the operator should check.
    pub caveats: Vec<String>,
}

/// The whole proposal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    /// Observation window start.
    pub from_ms: i64,
    /// Observation window end.
    pub to_ms: i64,
    /// Proposal-wide caveats.
    pub caveats: Vec<String>,
    /// Zones, by subnet then cluster.
    pub zones: Vec<ProposedZone>,
    /// Endpoints, by address.
    pub endpoints: Vec<EndpointAssignment>,
    /// Conduits, by (from, to).
    pub conduits: Vec<ProposedConduit>,
    /// Observed flow records (allowed or would-deny).
    pub observed_flows: u64,
    /// Of which the proposal permits.
    pub covered_flows: u64,
    /// `covered / observed` in percent.
    pub coverage_pct: f64,
    /// Flow records left out because they were only ever denied in enforce mode.
    pub excluded_denied: u64,
    /// Name and mode of the staged policy.
    #[serde(skip)]
    opts: RecommendOptions,
}

const SERVE: u32 = 1 << 24;

fn feature(serve: bool, proto: u8, port: u16) -> u32 {
    (if serve { SERVE } else { 0 }) | (u32::from(proto) << 16) | u32::from(port)
}

fn feature_text(f: u32) -> String {
    let verb = if f & SERVE != 0 { "serves" } else { "uses" };
    format!(
        "{verb} {}",
        svc_text(((f >> 16) & 0xff) as u8, (f & 0xffff) as u16)
    )
}

fn svc_text(proto: u8, port: u16) -> String {
    match proto {
        6 => format!("tcp/{port}"),
        17 => format!("udp/{port}"),
        1 | 58 => "icmp".into(),
        p => format!("proto {p}"),
    }
}

/// The service key a flow is covered by; `None` for protocols the model cannot name narrowly.
fn service_of(k: &FlowKeyAgg) -> Option<(ProtoName, u16)> {
    match k.proto {
        6 => Some((ProtoName::Tcp, k.dport)),
        17 => Some((ProtoName::Udp, k.dport)),
        1 | 58 => Some((ProtoName::Icmp, 0)),
        _ => None,
    }
}

fn proto_rank(p: ProtoName) -> u8 {
    match p {
        ProtoName::Tcp => 0,
        ProtoName::Udp => 1,
        ProtoName::Icmp => 2,
        ProtoName::Any => 3,
    }
}

fn proto_of_rank(r: u8) -> ProtoName {
    match r {
        0 => ProtoName::Tcp,
        1 => ProtoName::Udp,
        2 => ProtoName::Icmp,
        _ => ProtoName::Any,
    }
}

fn subnet_of(a: IpAddr, o: &RecommendOptions) -> IpNet {
    let len = match a {
        IpAddr::V4(_) => o.v4_prefix.min(32),
        IpAddr::V6(_) => o.v6_prefix.min(128),
    };
    IpNet::new(a, len)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(a))
}

fn name_part(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

fn fit_name(s: &str) -> String {
    let mut s = name_part(s);
    s.truncate(63);
    s.trim_end_matches('-').to_owned()
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    // Rounded to 0.01 % so that reports are stable text.
    ((part as f64 / whole as f64) * 10_000.0).round() / 100.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

struct Cluster {
    server: bool,
    labels: Option<BTreeMap<String, String>>,
    union: BTreeSet<u32>,
    members: Vec<usize>,
}

/// Makes a recommendation from flow aggregates (any order; duplicates of a key are summed).
pub fn recommend(aggs: &[FlowAggregate], opts: &RecommendOptions) -> Recommendation {
    // 1. Observed traffic and endpoint profiles.
    let mut excluded_denied = 0u64;
    let mut observed: Vec<&FlowAggregate> = Vec::with_capacity(aggs.len());
    for a in aggs {
        if a.allowed + a.would_deny == 0 {
            excluded_denied += a.flows;
        } else {
            observed.push(a);
        }
    }
    observed.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let mut addrs: Vec<IpAddr> = observed
        .iter()
        .flat_map(|a| [a.key.src, a.key.dst])
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    let idx = |a: IpAddr| addrs.binary_search(&a).unwrap_or(0);
    let mut profile: Vec<Vec<u32>> = vec![Vec::new(); addrs.len()];
    for a in &observed {
        if a.key.src == a.key.dst {
            continue;
        }
        profile[idx(a.key.src)].push(feature(false, a.key.proto, a.key.dport));
        profile[idx(a.key.dst)].push(feature(true, a.key.proto, a.key.dport));
    }
    for p in &mut profile {
        p.sort_unstable();
        p.dedup();
    }

    // 2. Endpoints the running policy places keep their zone; the others are grouped per
    //    subnet, then by labels or behaviour.
    let mut zones = Vec::new();
    let mut assign: Vec<(usize, f64, String)> = vec![(0, 0.0, String::new()); addrs.len()];
    let mut used_names = BTreeSet::new();
    let mut by_known: BTreeMap<usize, Vec<(usize, IpNet)>> = BTreeMap::new();
    let mut by_subnet: BTreeMap<IpNet, Vec<usize>> = BTreeMap::new();
    for (i, &a) in addrs.iter().enumerate() {
        match opts.known.as_ref().and_then(|k| k.zone_of(a)) {
            Some((z, p)) => by_known.entry(z).or_default().push((i, p)),
            None => by_subnet.entry(subnet_of(a, opts)).or_default().push(i),
        }
    }
    if let Some(known) = &opts.known {
        // Running zone names are taken even when no endpoint of theirs was observed, so a
        // new zone never shadows one.
        used_names.extend(known.zones.iter().map(|(n, _)| n.clone()));
        for (z, members) in by_known {
            let (name, prefixes) = &known.zones[z];
            let zi = zones.len();
            let mut members_addr = Vec::with_capacity(members.len());
            for &(m, p) in &members {
                let a = addrs[m];
                let endpoint = known
                    .endpoints
                    .get(&a)
                    .map(|e| format!("; {e}"))
                    .unwrap_or_default();
                assign[m] = (
                    zi,
                    1.0,
                    format!("kept in zone {name} of the running policy (prefix {p}{endpoint})"),
                );
                members_addr.push(a);
            }
            members_addr.sort_unstable();
            zones.push(ProposedZone {
                name: name.clone(),
                subnet: members[0].1,
                members: members_addr,
                prefixes: prefixes.clone(),
                reason: format!(
                    "zone {name} of the running policy, kept as it is ({} observed endpoint(s))",
                    members.len()
                ),
                confidence: 1.0,
            });
        }
    }
    for (subnet, mut members) in by_subnet {
        let is_server = |i: usize| profile[i].iter().any(|f| f & SERVE != 0);
        // Richest profiles seed the clusters: servers first, then by profile size, then address.
        members.sort_by_key(|&m| {
            (
                std::cmp::Reverse((is_server(m), profile[m].len())),
                addrs[m],
            )
        });
        let mut clusters: Vec<Cluster> = Vec::new();
        for &m in &members {
            let labels = opts.labels.get(&addrs[m]).filter(|l| !l.is_empty());
            let server = is_server(m);
            let found = clusters.iter().position(|c| match (labels, &c.labels) {
                (Some(l), Some(cl)) => l == cl,
                (None, None) => {
                    let own = &profile[m];
                    let shared = own.iter().filter(|f| c.union.contains(f)).count();
                    c.server == server
                        && !own.is_empty()
                        && shared as f64 / own.len() as f64 >= opts.similarity
                }
                _ => false,
            });
            let ci = found.unwrap_or_else(|| {
                clusters.push(Cluster {
                    server,
                    labels: labels.cloned(),
                    union: BTreeSet::new(),
                    members: Vec::new(),
                });
                clusters.len() - 1
            });
            clusters[ci].union.extend(profile[m].iter().copied());
            clusters[ci].members.push(m);
        }
        let only = clusters.len() == 1;
        for c in clusters {
            // How many members have each feature.
            let mut count: BTreeMap<u32, usize> = BTreeMap::new();
            for &m in &c.members {
                for &f in &profile[m] {
                    *count.entry(f).or_default() += 1;
                }
            }
            let n = c.members.len();
            let mut top: Vec<(u32, usize)> = count.iter().map(|(&f, &k)| (f, k)).collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
            let role = match &c.labels {
                Some(l) => l
                    .iter()
                    .map(|(k, v)| format!("{k}-{v}"))
                    .collect::<Vec<_>>()
                    .join("-"),
                None if c.server => top
                    .iter()
                    .find(|(f, _)| f & SERVE != 0)
                    .map(|&(f, _)| {
                        name_part(&svc_text(((f >> 16) & 0xff) as u8, (f & 0xffff) as u16))
                    })
                    .unwrap_or_default(),
                None => "clients".into(),
            };
            let base = fit_name(&format!("{}-{}", name_part(&subnet.to_string()), role));
            let mut name = base.clone();
            let mut k = 2;
            while !used_names.insert(name.clone()) {
                name = fit_name(&format!("{}-{k}", &base[..base.len().min(58)]));
                k += 1;
            }
            let zi = zones.len();
            let behaviour: Vec<String> = top
                .iter()
                .take(3)
                .map(|&(f, k)| format!("{} ({k}/{n})", feature_text(f)))
                .collect();
            let zone_reason = match &c.labels {
                Some(l) => format!("subnet {subnet}; labels {}", fmt_labels(l)),
                None => format!(
                    "subnet {subnet}; {n} endpoint(s) that {}",
                    behaviour.join(", ")
                ),
            };
            let mut conf_sum = 0.0;
            let mut members_addr: Vec<IpAddr> = Vec::with_capacity(n);
            for &m in &c.members {
                let (conf, why) = if let Some(l) = &c.labels {
                    (1.0, format!("labels {} in subnet {subnet}", fmt_labels(l)))
                } else if n == 1 {
                    (
                        0.5,
                        format!(
                            "only endpoint in subnet {subnet} with this behaviour: {}",
                            profile[m]
                                .iter()
                                .take(3)
                                .map(|&f| feature_text(f))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                } else {
                    let own = &profile[m];
                    let typical = own.iter().map(|f| count[f] as f64 / n as f64).sum::<f64>()
                        / own.len().max(1) as f64;
                    let shared: Vec<String> =
                        own.iter().take(3).map(|&f| feature_text(f)).collect();
                    (
                        round2(typical),
                        format!(
                            "subnet {subnet}; like {} other member(s) it {}",
                            n - 1,
                            shared.join(", ")
                        ),
                    )
                };
                conf_sum += conf;
                assign[m] = (zi, conf, why);
                members_addr.push(addrs[m]);
            }
            members_addr.sort_unstable();
            let prefixes = if only {
                vec![subnet]
            } else {
                members_addr.iter().map(|&a| IpNet::from(a)).collect()
            };
            zones.push(ProposedZone {
                name,
                subnet,
                members: members_addr,
                prefixes,
                reason: zone_reason,
                confidence: round2(conf_sum / n as f64),
            });
        }
    }

    // 3. Conduits between zones, exactly the observed services.
    #[derive(Default)]
    struct Acc<'a> {
        services: BTreeSet<(u8, u16)>,
        aggs: Vec<&'a FlowAggregate>,
    }
    let mut pairs: BTreeMap<(usize, usize), Acc> = BTreeMap::new();
    let mut observed_flows = 0u64;
    let mut uncovered_protos: BTreeMap<u8, u64> = BTreeMap::new();
    for a in &observed {
        observed_flows += a.flows;
        let Some((proto, port)) = service_of(&a.key) else {
            *uncovered_protos.entry(a.key.proto).or_default() += a.flows;
            continue;
        };
        let (zs, zd) = (assign[idx(a.key.src)].0, assign[idx(a.key.dst)].0);
        let acc = pairs.entry((zs, zd)).or_default();
        acc.services.insert((proto_rank(proto), port));
        acc.aggs.push(a);
    }
    let mut conduits = Vec::new();
    let mut covered_flows = 0u64;
    for (n, ((zs, zd), acc)) in pairs.into_iter().enumerate() {
        let mut services: Vec<ProposedService> = Vec::new();
        for (rank, port) in acc.services {
            let proto = proto_of_rank(rank);
            match services.last_mut() {
                Some(s) if s.proto == proto => {
                    if proto != ProtoName::Icmp {
                        s.ports.push(port);
                    }
                }
                _ => services.push(ProposedService {
                    proto,
                    ports: if proto == ProtoName::Icmp {
                        vec![]
                    } else {
                        vec![port]
                    },
                }),
            }
        }
        let flows: u64 = acc.aggs.iter().map(|a| a.flows).sum();
        covered_flows += flows;
        let mut caveats = Vec::new();
        if flows < 3 {
            caveats.push(format!("seen only {flows} time(s): confirm it is needed"));
        }
        for s in &services {
            if s.ports.len() > 32 {
                caveats.push(format!(
                    "{} distinct {:?} ports: check for scanning or dynamic ports",
                    s.ports.len(),
                    s.proto
                ));
            }
        }
        let l7: BTreeSet<&str> = acc
            .aggs
            .iter()
            .map(|a| a.key.l7.as_str())
            .filter(|l| !l.is_empty())
            .collect();
        let (from, to) = (zones[zs].name.clone(), zones[zd].name.clone());
        conduits.push(ProposedConduit {
            name: fit_name(&format!(
                "c{n}-{}-to-{}",
                &from[..from.len().min(27)],
                &to[..to.len().min(27)]
            )),
            from,
            to,
            services,
            aggregates: acc.aggs.len() as u64,
            flows,
            bytes: acc.aggs.iter().map(|a| a.bytes).sum(),
            coverage_pct: 0.0,
            first_ms: acc.aggs.iter().map(|a| a.first_ms).min().unwrap_or(0),
            last_ms: acc.aggs.iter().map(|a| a.last_ms).max().unwrap_or(0),
            examples: acc
                .aggs
                .iter()
                .take(opts.examples)
                .map(|a| a.key.clone())
                .collect(),
            l7_labels: l7.into_iter().map(str::to_owned).collect(),
            caveats,
        });
    }
    for c in &mut conduits {
        c.coverage_pct = pct(c.flows, observed_flows);
    }

    // 4. Proposal-wide caveats.
    let mut caveats = Vec::new();
    let window = opts.to_ms.saturating_sub(opts.from_ms);
    if window < opts.min_window_ms {
        caveats.push(format!(
            "the observation window ({:.1} h) is shorter than {:.1} days: periodic flows (weekly backups, monthly patching, quarter-end jobs) may not have been seen and would be denied",
            window as f64 / 3_600_000.0,
            opts.min_window_ms as f64 / 86_400_000.0
        ));
    }
    for (p, n) in &uncovered_protos {
        caveats.push(format!("{n} flow record(s) of IP protocol {p} are not covered: the policy model names only TCP, UDP and ICMP narrowly"));
    }
    if excluded_denied > 0 {
        caveats.push(format!(
            "{excluded_denied} flow record(s) denied in enforce mode were left out"
        ));
    }

    let endpoints = addrs
        .iter()
        .zip(assign)
        .map(|(&address, (zi, confidence, reason))| EndpointAssignment {
            address,
            zone: zones[zi].name.clone(),
            confidence,
            reason,
        })
        .collect();
    Recommendation {
        from_ms: opts.from_ms,
        to_ms: opts.to_ms,
        caveats,
        zones,
        endpoints,
        conduits,
        observed_flows,
        covered_flows,
        coverage_pct: pct(covered_flows, observed_flows),
        excluded_denied,
        opts: opts.clone(),
    }
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Recommendation {
    /// The proposal as a policy document, without the rejected conduits (by name). Zones that
    /// no accepted conduit names are still written (their members stay known to the policy).
    pub fn document(&self, rejected: &BTreeSet<String>) -> PolicyDocument {
        let zones = self
            .zones
            .iter()
            .map(|z| Zone {
                name: z.name.clone(),
                description: Some(z.reason.clone()),
                mode: None,
                subnets: z.prefixes.iter().map(ToString::to_string).collect(),
                ip_sets: vec![],
                selector: None,
            })
            .collect();
        let conduits = self
            .conduits
            .iter()
            .filter(|c| !rejected.contains(&c.name))
            .map(|c| Conduit {
                name: c.name.clone(),
                description: Some(format!(
                    "observed {} flow(s), {}% of traffic, {}..{}",
                    c.flows, c.coverage_pct, c.first_ms, c.last_ms
                )),
                from: vec![c.from.clone()],
                to: vec![c.to.clone()],
                action: ConduitAction::Allow,
                mode: None,
                services: c
                    .services
                    .iter()
                    .map(|s| Service {
                        proto: s.proto,
                        ports: s
                            .ports
                            .iter()
                            .map(|&p| PortSpec::Number(i64::from(p)))
                            .collect(),
                        source_ports: vec![],
                        icmp_types: vec![],
                        l7: None,
                    })
                    .collect(),
            })
            .collect();
        PolicyDocument {
            api_version: crate::policy::dto::API_VERSION.into(),
            kind: crate::policy::dto::KIND.into(),
            metadata: Metadata {
                name: self.opts.policy_name.clone(),
                description: Some(format!(
                    "recommended from flows observed {}..{}; {}% coverage",
                    self.from_ms, self.to_ms, self.coverage_pct
                )),
                labels: BTreeMap::new(),
            },
            spec: Spec {
                defaults: Defaults {
                    action: DefaultAction::Deny,
                    mode: self.opts.mode,
                },
                ip_sets: vec![],
                endpoints: vec![],
                zones,
                conduits,
            },
        }
    }

    /// [`Self::document`], validated like any policy (stage it through the lifecycle to run the
    /// impact preview before it is enforced).
    pub fn policy(&self, rejected: &BTreeSet<String>) -> Result<ValidatedPolicy, Vec<Diagnostic>> {
        validate(self.document(rejected))
    }
}

#[cfg(test)]
mod tests;
