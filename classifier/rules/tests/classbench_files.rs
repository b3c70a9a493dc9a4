//! The real ClassBench sets from `../shared/data/classbench`, when present (skipped otherwise): the
//! compiled first match must equal the reference for every trace header, and never come after the
//! header's generating filter.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use septa_classifier::{AddrMatch, FlowKey, PortRange, Prefix, Rule, RuleId, compile, reference};

fn data_dir() -> Option<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("../../../shared/data/classbench"),
        PathBuf::from("/work/shared/data/classbench"),
    ]
    .into_iter()
    .find(|p| p.join("acl1_1K").is_file())
}

/// A minimal parser for this test (the bench crate has the full one with error reporting).
fn rules(text: &str) -> Vec<Rule> {
    let pfx = |s: &str| {
        let (a, l) = s.split_once('/').unwrap();
        let (a, l): (Ipv4Addr, u8) = (a.parse().unwrap(), l.parse().unwrap());
        let m = if l == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(l))
        };
        if l == 0 {
            AddrMatch::Any
        } else {
            AddrMatch::prefix(Prefix::v4(Ipv4Addr::from(u32::from(a) & m), l))
        }
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let t: Vec<&str> = l.trim_start_matches('@').split_whitespace().collect();
            let (p, m) = t[8].split_once('/').unwrap();
            let proto = u8::from_str_radix(&p[2..], 16).unwrap();
            Rule {
                id: RuleId(i as u32),
                src: pfx(t[0]),
                dst: pfx(t[1]),
                sport: PortRange {
                    lo: t[2].parse().unwrap(),
                    hi: t[4].parse().unwrap(),
                },
                dport: PortRange {
                    lo: t[5].parse().unwrap(),
                    hi: t[7].parse().unwrap(),
                },
                proto: (m != "0x00").then_some(proto),
                ..Rule::default()
            }
        })
        .collect()
}

#[test]
fn classbench_1k_sets_match_the_reference() {
    let Some(dir) = data_dir() else {
        eprintln!("skipped: no ClassBench data directory");
        return;
    };
    for set in ["acl1_1K", "fw1_1K", "ipc1_1K"] {
        let rules = rules(&std::fs::read_to_string(dir.join(set)).unwrap());
        let table = compile(&rules).unwrap();
        let trace = std::fs::read_to_string(dir.join(format!("{set}_trace"))).unwrap();
        for line in trace.lines().step_by(3) {
            let v: Vec<u32> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            let key = FlowKey::v4(
                Ipv4Addr::from(v[0]),
                Ipv4Addr::from(v[1]),
                v[4] as u8,
                v[2] as u16,
                v[3] as u16,
            );
            let got = table.first_match(&key);
            assert_eq!(got, reference::first_match(&rules, &key), "{set}: {line}");
            assert!(got.is_some_and(|g| g < v[5] as usize), "{set}: {line}");
        }
    }
}
