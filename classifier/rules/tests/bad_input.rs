//! Rejected rule lists name the rule index and field, and never replace the running table.

use std::net::{Ipv4Addr, Ipv6Addr};

use septa_classifier::{
    Action, AddrMatch, CompileError, CompileOptions, Field, FlowKey, PortRange, Prefix, Rule,
    RuleId, TableCell, compile, compile_with,
};

fn ok_rule(id: u32) -> Rule {
    Rule {
        dst: AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(10, 0, 0, 0), 8)),
        dport: PortRange::exact(443),
        proto: Some(6),
        ..Rule::any(id, Action::Allow)
    }
}

fn rejected(bad: Rule) -> CompileError {
    compile(&[ok_rule(0), ok_rule(1), bad]).unwrap_err()
}

#[test]
fn malformed_prefixes_are_rejected_with_index_and_field() {
    let host_bits = Rule {
        src: AddrMatch::prefix(Prefix::v4(Ipv4Addr::new(10, 0, 0, 1), 8)),
        ..ok_rule(2)
    };
    let e = rejected(host_bits);
    assert_eq!((e.index(), e.field()), (2, Field::Src));
    assert!(
        e.to_string()
            .contains("rule 2: field src: malformed prefix"),
        "{e}"
    );
    let too_long = Rule {
        dst: AddrMatch::prefix(Prefix::v6(Ipv6Addr::LOCALHOST, 129)),
        ..ok_rule(2)
    };
    assert_eq!(
        (rejected(too_long).index(), rejected(ok_rule(0)).field()),
        (2, Field::Id)
    );
}

#[test]
fn empty_ranges_and_unmatchable_rules_are_rejected() {
    let e = rejected(Rule {
        sport: PortRange { lo: 9, hi: 1 },
        ..ok_rule(2)
    });
    assert_eq!((e.index(), e.field()), (2, Field::Sport));
    let e = rejected(Rule {
        dst: AddrMatch::Prefixes(vec![]),
        ..ok_rule(2)
    });
    assert!(
        matches!(
            e,
            CompileError::NeverMatches {
                index: 2,
                field: Field::Dst,
                ..
            }
        ),
        "{e}"
    );
    let mixed = Rule {
        src: AddrMatch::prefix(Prefix::v6(Ipv6Addr::LOCALHOST, 128)),
        ..ok_rule(2)
    };
    assert!(matches!(
        rejected(mixed),
        CompileError::NeverMatches { index: 2, .. }
    ));
    let dup = rejected(ok_rule(1));
    assert!(
        matches!(
            dup,
            CompileError::DuplicateId {
                index: 2,
                id: 1,
                first: 1
            }
        ),
        "{dup}"
    );
}

#[test]
fn budgets_are_enforced() {
    let rules: Vec<Rule> = (0..10).map(ok_rule).collect();
    let opts = CompileOptions {
        max_rules: 8,
        ..CompileOptions::default()
    };
    let e = compile_with(&rules, &opts).unwrap_err();
    assert_eq!((e.index(), e.field()), (8, Field::Rules));
    let set = AddrMatch::Prefixes(
        (0..4)
            .map(|i| Prefix::v4(Ipv4Addr::new(10, i, 0, 0), 16))
            .collect(),
    );
    let wide: Vec<Rule> = (0..3)
        .map(|i| Rule {
            src: set.clone(),
            dst: set.clone(),
            ..ok_rule(i)
        })
        .collect();
    let opts = CompileOptions {
        max_boxes: 40,
        ..CompileOptions::default()
    };
    assert_eq!(compile_with(&wide, &opts).unwrap_err().index(), 2);
}

#[test]
fn a_rejected_list_leaves_the_running_table_live() {
    let cell = TableCell::new(compile(&[ok_rule(7)]).unwrap());
    let mut reader = cell.reader();
    let key = FlowKey::v4(
        Ipv4Addr::new(1, 2, 3, 4),
        Ipv4Addr::new(10, 9, 9, 9),
        6,
        5000,
        443,
    );
    assert_eq!(reader.load().classify(&key).rule, Some(RuleId(7)));
    let bad = [Rule {
        dport: PortRange { lo: 2, hi: 1 },
        ..ok_rule(8)
    }];
    if let Ok(t) = compile(&bad) {
        cell.publish(t);
    }
    let t = reader.load();
    assert_eq!((t.epoch(), t.classify(&key).rule), (1, Some(RuleId(7))));
}

#[test]
fn default_action_applies_when_nothing_matches() {
    let opts = CompileOptions {
        default_action: Action::Allow,
        ..CompileOptions::default()
    };
    let t = compile_with(&[ok_rule(1)], &opts).unwrap();
    let d = t.classify(&FlowKey::v4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        17,
        1,
        1,
    ));
    assert_eq!((d.rule, d.action, d.source), (None, Action::Allow, None));
    assert!(compile(&[]).unwrap().is_empty());
}
