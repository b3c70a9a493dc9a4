//! What-if decisions: "would this flow pass, which clause decides, in which revision?", answered
//! with the very [`septa_classifier::RuleTable`] the data plane runs, so the answer cannot drift
//! from what is enforced.
//!
//! Never: re-evaluate the policy some other way here (the oracle in [`crate::semantics`] is for
//! tests). Pure apart from reading the table.

use std::fmt;
use std::net::IpAddr;

use septa_classifier::{Action, FlowKey, Mode, RuleId};

use crate::compile::{Clause, CompiledPolicy};

/// The answer to a what-if question.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// The flow asked about.
    #[serde(serialize_with = "display")]
    pub flow: FlowKey,
    /// `allow`, `deny` or `inspect`.
    pub action: &'static str,
    /// `enforce` or `monitor`.
    pub mode: &'static str,
    /// Whether the data plane forwards the flow (monitor mode forwards what it would deny).
    pub forwarded: bool,
    /// The deciding rule.
    pub rule: u32,
    /// The deciding policy clause.
    pub clause: Option<Clause>,
    /// Content hash of the revision the table was compiled from.
    pub revision: String,
    /// One sentence an operator can read.
    pub reason: String,
}

fn display<S: serde::Serializer>(k: &FlowKey, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(k)
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Decides `flow` against a compiled policy (the table the data plane runs), naming the clause.
pub fn decide(compiled: &CompiledPolicy, revision_hash: &str, flow: &FlowKey) -> Explanation {
    let d = compiled.table().classify(flow);
    let rule = d.rule.unwrap_or(RuleId(0));
    let clause = d.source.and_then(|s| compiled.clause_of_source(s)).cloned();
    let action = match d.action {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Inspect(_) => "inspect",
    };
    let mode = match d.mode {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    };
    let forwarded = d.action != Action::Deny || d.mode == Mode::Monitor;
    let outcome = match (d.action, d.mode) {
        (Action::Deny, Mode::Monitor) => "would be denied (monitor mode: forwarded and reported)",
        (Action::Deny, Mode::Enforce) => "is denied",
        (Action::Allow, _) => "is allowed",
        (Action::Inspect(_), _) => "is allowed subject to L7 inspection",
    };
    let short = revision_hash.get(..12).unwrap_or(revision_hash);
    let by = match &clause {
        Some(c) => format!("{c}, rule {}", rule.0),
        None => format!("the table's fallback (no rule matched; rule {})", rule.0),
    };
    let reason = format!("{flow} {outcome} by {by}, revision {short}");
    Explanation {
        flow: *flow,
        action,
        mode,
        forwarded,
        rule: rule.0,
        clause,
        revision: revision_hash.to_owned(),
        reason,
    }
}

/// Builds a flow key from CLI-style words: addresses, a protocol (`tcp`, `udp`, `icmp` or a
/// number) and a port. For ICMP the port is the message type (the key's source-port slot).
pub fn parse_flow(
    src: &str,
    dst: &str,
    proto: &str,
    port: u16,
    sport: u16,
) -> Result<FlowKey, String> {
    let s: IpAddr = src
        .parse()
        .map_err(|_| format!("{src:?} is not an IP address"))?;
    let d: IpAddr = dst
        .parse()
        .map_err(|_| format!("{dst:?} is not an IP address"))?;
    let v6 = matches!(s, IpAddr::V6(_));
    let p: u8 = match proto.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" | "icmp6" => 58,
        other => other
            .parse()
            .map_err(|_| format!("{proto:?} is not tcp, udp, icmp or a protocol number"))?,
    };
    let p = if p == 1 && v6 { 58 } else { p };
    let (sp, dp) = if p == 1 || p == 58 {
        (port, 0)
    } else {
        (sport, port)
    };
    match (s, d) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Ok(FlowKey::v4(a, b, p, sp, dp)),
        (IpAddr::V6(a), IpAddr::V6(b)) => Ok(FlowKey::v6(a, b, p, sp, dp)),
        _ => Err("source and destination must be of the same address family".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{ClauseKind, compile};
    use crate::policy::{Format, parse_policy};

    fn demo() -> CompiledPolicy {
        let p = parse_policy(
            include_str!("../../configs/policies/demo.yaml"),
            Format::Yaml,
        )
        .unwrap();
        compile(&p).unwrap()
    }

    fn ask(c: &CompiledPolicy, src: &str, dst: &str, proto: &str, port: u16) -> Explanation {
        decide(
            c,
            "0123456789abcdef",
            &parse_flow(src, dst, proto, port, 40000).unwrap(),
        )
    }

    fn conduit_name(e: &Explanation) -> Option<&str> {
        match &e.clause.as_ref()?.kind {
            ClauseKind::Conduit { name, .. } => Some(name),
            _ => None,
        }
    }

    /// (src, dst, proto, port) -> (action, mode, forwarded, deciding conduit).
    type Vector = (
        &'static str,
        &'static str,
        &'static str,
        u16,
        &'static str,
        &'static str,
        bool,
        Option<&'static str>,
    );

    #[test]
    fn demo_vectors() {
        let c = demo();
        // (src, dst, proto, port) -> (action, mode, forwarded, deciding conduit or None)
        let vectors: &[Vector] = &[
            (
                "10.10.1.5",
                "10.10.5.10",
                "tcp",
                443,
                "allow",
                "enforce",
                true,
                Some("it-to-ehr-app"),
            ),
            (
                "10.10.5.10",
                "10.20.0.7",
                "tcp",
                5432,
                "allow",
                "enforce",
                true,
                Some("ehr-app-to-db"),
            ),
            (
                "10.10.1.5",
                "10.20.0.7",
                "tcp",
                5432,
                "deny",
                "enforce",
                false,
                None,
            ),
            (
                "10.10.1.5",
                "10.30.1.10",
                "tcp",
                502,
                "deny",
                "enforce",
                false,
                Some("no-it-to-ot"),
            ),
            (
                "10.30.2.4",
                "10.30.1.10",
                "tcp",
                502,
                "inspect",
                "monitor",
                true,
                Some("hmi-to-plc"),
            ),
            (
                "10.30.2.4",
                "10.30.1.90",
                "tcp",
                502,
                "deny",
                "monitor",
                true,
                None,
            ),
            (
                "10.99.0.5",
                "10.30.1.11",
                "tcp",
                22,
                "allow",
                "enforce",
                true,
                Some("admin"),
            ),
            (
                "10.99.0.5",
                "10.30.1.11",
                "icmp",
                8,
                "allow",
                "enforce",
                true,
                Some("admin"),
            ),
            (
                "10.99.0.5",
                "10.30.1.11",
                "icmp",
                0,
                "deny",
                "enforce",
                false,
                None,
            ),
            (
                "10.10.1.5",
                "10.99.0.1",
                "udp",
                53,
                "allow",
                "enforce",
                true,
                Some("dns"),
            ),
            (
                "172.16.0.1",
                "10.99.0.1",
                "udp",
                53,
                "deny",
                "enforce",
                false,
                None,
            ),
        ];
        for &(s, d, p, port, action, mode, fwd, conduit) in vectors {
            let e = ask(&c, s, d, p, port);
            assert_eq!(
                (e.action, e.mode, e.forwarded, conduit_name(&e)),
                (action, mode, fwd, conduit),
                "{e}"
            );
            assert!(e.rule > 0 && e.clause.is_some(), "{e}");
        }
    }

    #[test]
    fn explanation_names_clause_rule_and_revision() {
        let e = ask(&demo(), "10.10.1.5", "10.30.1.10", "tcp", 502);
        assert!(
            e.reason
                .contains("is denied by conduit no-it-to-ot (deny) it -> ot-plc"),
            "{e}"
        );
        assert!(e.reason.contains("spec.conduits[0].services[0]"), "{e}");
        assert!(e.reason.ends_with("revision 0123456789ab"), "{e}");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["clause"]["kind"], "conduit");
        assert_eq!(json["flow"], "10.10.1.5:40000 -> 10.30.1.10:502 proto 6");
    }

    #[test]
    fn zone_default_in_monitor_mode_is_explained() {
        let e = ask(&demo(), "10.30.2.4", "10.20.0.7", "tcp", 5432);
        assert_eq!(
            e.clause.as_ref().unwrap().kind,
            ClauseKind::ZoneDefault {
                zone: "ot-hmi".into()
            }
        );
        assert!(e.reason.contains("would be denied (monitor mode"), "{e}");
    }

    #[test]
    fn parse_flow_rejects_nonsense() {
        assert!(parse_flow("10.0.0.1", "::1", "tcp", 1, 1).is_err());
        assert!(parse_flow("10.0.0.1", "10.0.0.2", "tcpp", 1, 1).is_err());
        assert!(parse_flow("10.0.0.300", "10.0.0.2", "tcp", 1, 1).is_err());
        let k = parse_flow("::1", "::2", "icmp", 128, 0).unwrap();
        assert_eq!((k.proto, k.sport, k.dport), (58, 128, 0));
        assert_eq!(
            parse_flow("10.0.0.1", "10.0.0.2", "47", 0, 0)
                .unwrap()
                .proto,
            47
        );
    }

    #[test]
    fn every_rule_has_a_clause() {
        let c = demo();
        assert_eq!(c.source_map().count(), c.rules().len());
        assert!(c.source_map().all(|(id, cl)| c.clause_of(id) == Some(cl)));
    }
}
