//! The policy's meaning, evaluated directly on the validated model: the oracle the compiler is
//! tested against (proptest here, fuzzing later).
//!
//! It walks zones, conduits and services as the precedence rules of [`crate::policy`] say, using
//! `ipnet` containment on standard addresses rather than the classifier's integer ranges, so a
//! mistake in the compiler's expansion (families, ICMP numbers, ports, ordering) shows up as a
//! disagreement. Slow and simple on purpose; never used on the data path.

use std::net::IpAddr;

use septa_classifier::{Family, FlowKey, Mode};

use crate::compile::ClauseKind;
use crate::policy::{ConduitAction, ProtoName, Service, ValidatedPolicy, ZoneRef};

/// What the policy does with a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Forward.
    Allow,
    /// Drop.
    Deny,
    /// Forward through the L7 check of the clause.
    Inspect,
}

/// The direct evaluation: verdict, mode and the deciding clause.
pub fn evaluate(p: &ValidatedPolicy, key: &FlowKey) -> (Verdict, Mode, ClauseKind) {
    let (s, d) = (key.src_addr(), key.dst_addr());
    let inside = |z: ZoneRef, a: IpAddr| p.prefixes(z).iter().any(|n| n.contains(&a));
    for pass in [ConduitAction::Deny, ConduitAction::Allow] {
        for c in p.conduits().iter().filter(|c| c.action == pass) {
            for &f in &c.from {
                for &t in &c.to {
                    if !(inside(f, s) && inside(t, d)) {
                        continue;
                    }
                    if let Some(si) = c.services.iter().position(|svc| service_matches(svc, key)) {
                        let verdict = match (c.action, &c.services[si].l7) {
                            (ConduitAction::Deny, _) => Verdict::Deny,
                            (ConduitAction::Allow, None) => Verdict::Allow,
                            (ConduitAction::Allow, Some(_)) => Verdict::Inspect,
                        };
                        let kind = ClauseKind::Conduit {
                            name: c.name.clone(),
                            index: c.index,
                            service: si,
                            from: p.zone_name(f).to_owned(),
                            to: p.zone_name(t).to_owned(),
                        };
                        return (verdict, p.pair_mode(c, f, t), kind);
                    }
                }
            }
        }
    }
    let mut zone_modes = vec![Mode::Monitor];
    if p.default_mode() == Mode::Monitor {
        zone_modes.push(Mode::Enforce);
    }
    for m in zone_modes {
        for z in p.zones().iter().filter(|z| z.mode == m) {
            if z.prefixes.iter().any(|n| n.contains(&s) || n.contains(&d)) {
                return (
                    Verdict::Deny,
                    m,
                    ClauseKind::ZoneDefault {
                        zone: z.name.clone(),
                    },
                );
            }
        }
    }
    (Verdict::Deny, p.default_mode(), ClauseKind::Default)
}

fn service_matches(svc: &Service, key: &FlowKey) -> bool {
    let in_ranges = |rs: &[septa_classifier::PortRange], v: u16| {
        rs.is_empty() || rs.iter().any(|r| r.lo <= v && v <= r.hi)
    };
    match svc.proto {
        ProtoName::Tcp | ProtoName::Udp => {
            let want = if svc.proto == ProtoName::Tcp { 6 } else { 17 };
            key.proto == want
                && in_ranges(&svc.ports, key.dport)
                && in_ranges(&svc.source_ports, key.sport)
        }
        ProtoName::Icmp => {
            let want = match key.family {
                Family::V4 => 1,
                Family::V6 => 58,
            };
            key.proto == want
                && (svc.icmp_types.is_empty()
                    || svc.icmp_types.iter().any(|&t| u16::from(t) == key.sport))
        }
        ProtoName::Any => true,
    }
}
