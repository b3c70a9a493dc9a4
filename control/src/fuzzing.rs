//! The policy pipeline on arbitrary input, with its invariants checked: the one function the
//! cargo-fuzz target (`control/fuzz`, `policy_pipeline`) and the stable proptest
//! (`control/tests/parse_robustness.rs`) both run, so CI exercises what the fuzzer explores.
//!
//! Invariants (a violation panics, which is what a fuzzer reports):
//! * the fast YAML path (`policy::yaml_fast`) either declines or reads a text exactly
//!   as serde-saphyr does;
//! * parsing never panics; a rejection has at least one diagnostic, each with a message and a
//!   path or a position, and semantic errors always name a path;
//! * an accepted policy compiles (or exceeds [`crate::compile::MAX_RULES`], a typed error);
//!   rule ids are 1..=n in order and every rule's clause exists;
//! * its canonical JSON parses back to the same policy with the same content hash;
//! * for probe flows built from the policy's own prefixes, ports and protocols, the compiled
//!   table, the classifier's naive reference scan and [`crate::semantics::evaluate`] (the
//!   policy's meaning walked directly) agree on action, mode and deciding clause.

use std::net::IpAddr;

use serde::Deserialize;

use septa_classifier::{Action, Decision, FlowKey, Mode, reference};

use crate::compile::compile;
use crate::error::{CompileError, PolicyError};
use crate::policy::{Format, ValidatedPolicy, parse_policy};
use crate::semantics::{self, Verdict};

/// Most probe flows checked per accepted policy (keeps one fuzz iteration fast).
pub const MAX_PROBES: usize = 256;

/// Runs parse → validate → compile → decide on `data` and checks every invariant of the module
/// docs. The first byte picks the syntax (even: YAML, odd: JSON); the rest is the text (invalid
/// UTF-8 replaced). Returns whether the policy was accepted.
///
/// # Panics
/// On any violated invariant (that is the point).
pub fn check_policy_bytes(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let format = if sel % 2 == 0 {
        Format::Yaml
    } else {
        Format::Json
    };
    check_policy_text(&String::from_utf8_lossy(rest), format)
}

/// [`check_policy_bytes`] on a text of known syntax.
///
/// # Panics
/// On any violated invariant.
pub fn check_policy_text(text: &str, format: Format) -> bool {
    if format == Format::Yaml
        && let Some(fast) = crate::policy::yaml_fast::parse(text)
    {
        let saphyr = serde_saphyr::with_deserializer_from_str(text, |de| {
            crate::policy::PolicyDocument::deserialize(de)
        });
        assert_eq!(
            saphyr.ok().as_ref(),
            Some(&fast),
            "the fast YAML path read {text:?} differently from serde-saphyr"
        );
    }
    match parse_policy(text, format) {
        Ok(p) => {
            check_accepted(&p);
            true
        }
        Err(e) => {
            check_rejection(&e);
            false
        }
    }
}

fn check_rejection(e: &PolicyError) {
    let ds = e.diagnostics();
    assert!(!ds.is_empty(), "a rejection without diagnostics: {e:?}");
    for d in &ds {
        assert!(
            !d.message.is_empty(),
            "a diagnostic without a message: {e:?}"
        );
        assert!(
            !d.path.is_empty() || d.line.is_some(),
            "an unlocated diagnostic {d} in {e:?}"
        );
        if matches!(e, PolicyError::Invalid(_)) {
            assert!(!d.path.is_empty(), "a semantic error without a path: {d}");
        }
    }
}

fn check_accepted(p: &ValidatedPolicy) {
    let json = p.canonical_json();
    let text = std::str::from_utf8(&json).expect("canonical JSON is UTF-8");
    let again = parse_policy(text, Format::Json)
        .unwrap_or_else(|e| panic!("the canonical form of an accepted policy is rejected: {e}"));
    assert_eq!(
        again.content_hash(),
        p.content_hash(),
        "canonical round trip"
    );
    assert!(again == *p, "canonical round trip changes the policy");

    let compiled = match compile(p) {
        Ok(c) => c,
        Err(CompileError::TooManyRules { .. }) => return,
        Err(e) => panic!("an accepted policy does not compile: {e}"),
    };
    for (i, r) in compiled.rules().iter().enumerate() {
        assert_eq!(
            usize::try_from(r.id.0).ok(),
            Some(i + 1),
            "rule ids are dense"
        );
        assert!(
            compiled.clause_of_source(r.source).is_some(),
            "rule {} has no clause",
            r.id.0
        );
    }
    let fallback = Decision::fallback(Action::Deny, Mode::Enforce);
    for k in probes(p) {
        let table = compiled.table().classify(&k);
        let naive = reference::classify(compiled.rules(), fallback, &k);
        assert_eq!(table, naive, "compiled table vs reference scan for {k}");
        let (want_v, want_m, want_clause) = semantics::evaluate(p, &k);
        let clause = table
            .source
            .and_then(|s| compiled.clause_of_source(s))
            .map(|c| c.kind.clone());
        let got_v = match table.action {
            Action::Allow => Verdict::Allow,
            Action::Deny => Verdict::Deny,
            Action::Inspect(_) => Verdict::Inspect,
        };
        assert_eq!(
            (got_v, table.mode, clause),
            (want_v, want_m, Some(want_clause)),
            "compiled decision vs the policy's meaning for {k}"
        );
    }
}

/// Flows at the edges of the policy: first and last address of zone prefixes (and just
/// outside), the policy's ports and their neighbours, every protocol the model names, paired
/// in a fixed spread so that large policies are sampled across all their zones.
fn probes(p: &ValidatedPolicy) -> Vec<FlowKey> {
    let mut v4: Vec<IpAddr> = vec![IpAddr::from([192, 0, 2, 1])];
    let mut v6: Vec<IpAddr> = vec![IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1u16])];
    for z in p.zones() {
        for n in z.prefixes.iter().take(4) {
            let list = if n.addr().is_ipv4() { &mut v4 } else { &mut v6 };
            list.extend([n.network(), n.broadcast(), step(n.broadcast())]);
        }
    }
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();
    let mut ports: Vec<u16> = vec![0, 22, 443, 65535];
    for c in p.conduits() {
        for s in &c.services {
            for r in s.ports.iter().chain(&s.source_ports).take(4) {
                ports.extend([r.lo, r.hi, r.lo.wrapping_sub(1), r.hi.wrapping_add(1)]);
            }
            ports.extend(s.icmp_types.iter().take(2).map(|&t| u16::from(t)));
        }
    }
    ports.sort_unstable();
    ports.dedup();
    let protos = [6u8, 17, 1, 58, 47, 6, 17];
    let pairs = (v4.len() * v4.len() + v6.len() * v6.len()).min(MAX_PROBES);
    (0..pairs)
        .map(|i| {
            let (proto, sport, dport) = (
                protos[i % protos.len()],
                ports[(i / 5) % ports.len()],
                ports[(i * 7 + 1) % ports.len()],
            );
            let list = if i % 2 == 0 { &v4 } else { &v6 };
            let s = list[(i / 2) % list.len()];
            let d = list[(i / 2 * 13 + i / (2 * list.len()) + 1) % list.len()];
            match (s, d) {
                (IpAddr::V4(s), IpAddr::V4(d)) => FlowKey::v4(s, d, proto, sport, dport),
                (IpAddr::V6(s), IpAddr::V6(d)) => FlowKey::v6(s, d, proto, sport, dport),
                // Each list holds one family only.
                _ => FlowKey::v4(
                    std::net::Ipv4Addr::UNSPECIFIED,
                    std::net::Ipv4Addr::UNSPECIFIED,
                    proto,
                    sport,
                    dport,
                ),
            }
        })
        .collect()
}

/// The next address, wrapping within its family.
fn step(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(x) => IpAddr::from(u32::from(x).wrapping_add(1).to_be_bytes()),
        IpAddr::V6(x) => IpAddr::from(u128::from(x).wrapping_add(1).to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_policy_passes_every_check_in_both_syntaxes() {
        let demo = include_str!("../../configs/policies/demo.yaml");
        assert!(check_policy_text(demo, Format::Yaml));
        let json = parse_policy(demo, Format::Yaml).unwrap().canonical_json();
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&json);
        assert!(check_policy_bytes(&bytes));
        assert!(!check_policy_bytes(b"\0kind: [broken"));
        assert!(!check_policy_bytes(b""));
    }

    #[test]
    fn probes_sit_on_prefix_edges() {
        let demo = include_str!("../../configs/policies/demo.yaml");
        let p = parse_policy(demo, Format::Yaml).unwrap();
        let ps = probes(&p);
        assert!(!ps.is_empty() && ps.len() <= MAX_PROBES);
        let z = &p.zones()[0].prefixes[0];
        assert!(
            ps.iter().any(|k| k.src_addr() == z.network()),
            "the first address of a zone is probed"
        );
    }
}
