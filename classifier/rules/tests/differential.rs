//! The compiled table against the naive reference: random rule lists × random keys, both
//! families, overlapping prefixes, full and empty ranges; each strategy; burst and single lookups.

use proptest::prelude::*;
use septa_classifier::synth::{self, Profile};
use septa_classifier::{
    Action, AddrMatch, CompileOptions, Decision, Family, FlowKey, NO_RULE, PortRange, Prefix, Rule,
    RuleId, Strategy as Layout, compile_with, reference,
};

/// Addresses come from a tiny pool so that prefixes overlap and keys hit them.
fn addr(family: Family) -> impl Strategy<Value = u128> {
    let v4 = prop_oneof![
        Just(0x0a00_0000u128),
        Just(0x0a01_0200),
        Just(0xc0a8_0101),
        Just(0xffff_ffff),
        Just(0)
    ];
    let v6 = prop_oneof![
        Just(0x2001_0db8u128 << 96),
        Just((0x2001_0db8u128 << 96) | 0x1_0000_0001),
        Just(u128::MAX),
        Just(0)
    ];
    let base = match family {
        Family::V4 => v4.boxed(),
        Family::V6 => v6.boxed(),
    };
    (base, any::<u16>()).prop_map(move |(b, jitter)| b ^ u128::from(jitter & 0x1ff))
}

fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![3 => Just(Family::V4), 1 => Just(Family::V6)].prop_flat_map(|f| {
        let width = if f == Family::V4 { 32u8 } else { 128 };
        (addr(f), 0..=width).prop_map(move |(a, len)| {
            let p = Prefix {
                family: f,
                addr: a,
                len,
            };
            let (lo, _) = p.range();
            Prefix { addr: lo, ..p }
        })
    })
}

fn addr_match() -> impl Strategy<Value = AddrMatch> {
    prop_oneof![1 => Just(AddrMatch::Any), 3 => prop::collection::vec(prefix(), 1..3).prop_map(AddrMatch::Prefixes)]
}

fn ports() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        Just(PortRange::ANY),
        (0u16..100).prop_map(PortRange::exact),
        (0u16..100, 0u16..100).prop_map(|(a, b)| PortRange {
            lo: a.min(b),
            hi: a.max(b)
        }),
        Just(PortRange {
            lo: 65535,
            hi: 65535
        }),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        addr_match(),
        addr_match(),
        ports(),
        ports(),
        prop::option::of(prop_oneof![Just(6u8), Just(17), Just(1)]),
        prop::option::weighted(0.1, 0u16..3),
        prop::option::weighted(0.1, 0u16..3),
        0u8..3,
    )
        .prop_map(|(src, dst, sport, dport, proto, vlan, in_port, a)| Rule {
            src,
            dst,
            sport,
            dport,
            proto,
            vlan,
            in_port,
            action: [
                Action::Allow,
                Action::Deny,
                Action::Inspect(septa_classifier::HookId(3)),
            ][a as usize],
            ..Rule::default()
        })
}

/// A key drawn near the rules' own values so that matches are common.
fn key() -> impl Strategy<Value = FlowKey> {
    prop_oneof![3 => Just(Family::V4), 1 => Just(Family::V6)].prop_flat_map(|f| {
        (
            addr(f),
            addr(f),
            0u16..102,
            0u16..102,
            prop_oneof![Just(6u8), Just(17), Just(1), Just(50)],
            0u16..3,
            0u16..3,
        )
            .prop_map(
                move |(src, dst, sport, dport, proto, vlan, in_port)| FlowKey {
                    src,
                    dst,
                    sport,
                    dport,
                    proto,
                    family: f,
                    vlan,
                    in_port,
                },
            )
    })
}

/// Drops rules the compiler rejects by design (no common family), and numbers the rest.
fn acceptable(rules: Vec<Rule>) -> Vec<Rule> {
    let fam = |m: &AddrMatch, f: Family| match m {
        AddrMatch::Any => true,
        AddrMatch::Prefixes(ps) => ps.iter().any(|p| p.family == f),
    };
    rules
        .into_iter()
        .filter(|r| {
            [Family::V4, Family::V6]
                .iter()
                .any(|&f| fam(&r.src, f) && fam(&r.dst, f))
        })
        .enumerate()
        .map(|(i, r)| Rule {
            id: RuleId(i as u32),
            ..r
        })
        .collect()
}

fn check(
    rules: &[Rule],
    keys: &[FlowKey],
    strategy: Layout,
    leaf_size: usize,
) -> Result<(), TestCaseError> {
    let opts = CompileOptions {
        strategy,
        leaf_size,
        ..CompileOptions::default()
    };
    let table = compile_with(rules, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let default = table.default_decision();
    let mut burst = vec![Decision::default(); keys.len()];
    table.classify_burst(keys, &mut burst);
    let mut idx = vec![0u32; keys.len()];
    table.match_burst(keys, &mut idx);
    for ((k, b), &m) in keys.iter().zip(&burst).zip(&idx) {
        let want = reference::classify(rules, default, k);
        let want_idx = reference::first_match(rules, k).map_or(NO_RULE, |i| i as u32);
        prop_assert_eq!(m, want_idx, "match_burst, key {}", k);
        prop_assert_eq!(*table.decision_at(m), want, "decision_at, key {}", k);
        prop_assert_eq!(
            table.classify(k),
            want,
            "key {} engine {}",
            k,
            table.engine_name()
        );
        prop_assert_eq!(*b, want, "burst, key {}", k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn compiled_agrees_with_reference(
        rules in prop::collection::vec(rule(), 0..40),
        keys in prop::collection::vec(key(), 1..64),
        leaf_size in 1usize..6,
    ) {
        let rules = acceptable(rules);
        check(&rules, &keys, Layout::Tree, leaf_size)?;
        check(&rules, &keys, Layout::Auto, leaf_size)?;
    }

    #[test]
    fn zone_path_agrees_with_reference(seed in any::<u64>(), zones in 2usize..12, conduits in 1usize..60) {
        let rules = synth::zone_policy(zones, conduits, seed);
        let keys = synth::trace(&rules, 200, seed ^ 1);
        let table = compile_with(&rules, &CompileOptions::default()).unwrap();
        prop_assert_eq!(table.engine_name(), "zone");
        check(&rules, &keys, Layout::Zone, 4)?;
        check(&rules, &keys, Layout::Tree, 4)?;
    }
}

#[test]
fn generated_classbench_like_sets_agree() {
    for (profile, n) in [
        (Profile::Acl, 1500),
        (Profile::Fw, 1500),
        (Profile::Ipc, 1500),
    ] {
        let rules = synth::classbench_like(profile, n, 7);
        let keys = synth::trace(&rules, 3000, 8);
        check(&rules, &keys, Layout::Auto, 4).unwrap();
        let v6 = synth::to_v6(&rules);
        let keys6 = synth::trace(&v6, 1500, 9);
        check(&v6, &keys6, Layout::Tree, 4).unwrap();
    }
}

#[test]
fn compile_is_deterministic() {
    let rules = synth::classbench_like(Profile::Fw, 300, 3);
    let a = format!(
        "{:?}",
        compile_with(&rules, &CompileOptions::default()).unwrap()
    );
    let b = format!(
        "{:?}",
        compile_with(&rules, &CompileOptions::default()).unwrap()
    );
    assert_eq!(a, b);
}

/// fw-shaped sets put a few broad early rules in a tree of their own, which is walked before the
/// large partition trees although its lowest rule comes after theirs (the walk order is by each
/// tree's typical answer): the answers must not change, in single, burst and incremental form.
#[test]
fn broad_tree_walked_first_agrees() {
    let rules = synth::classbench_like(Profile::Fw, 8000, 11);
    let keys = synth::trace(&rules, 2500, 12);
    let opts = CompileOptions {
        strategy: Layout::Tree,
        ..CompileOptions::default()
    };
    let table = compile_with(&rules, &opts).unwrap();
    let mins: Vec<u32> = table
        .describe()
        .lines()
        .filter(|l| l.starts_with("v4 "))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)?
                .strip_prefix("min_rule=")?
                .parse()
                .ok()
        })
        .collect();
    // The case this test is about: the first tree walked is not the one with the lowest rule.
    assert!(
        mins.len() >= 2 && mins[0] > *mins.iter().min().unwrap(),
        "walk order {mins:?}\n{}",
        table.describe()
    );
    check(&rules, &keys, Layout::Tree, 4).unwrap();
    // An edit keeps the walk order rule (the patched trees are sorted again).
    let edit = septa_classifier::Edit::Remove { index: 5 };
    let edited = table.apply(&rules, &edit, &opts).unwrap();
    let after = edit.applied_to(&rules).unwrap();
    for k in &keys {
        assert_eq!(
            edited.first_match(k),
            reference::first_match(&after, k),
            "after edit, key {k}"
        );
    }
}

/// Burst lookups over trees keep per-family lane buffers (an IPv4 point only sets its own words)
/// and walk a group of lanes either packed or, when more than half of them walk a tree, with the
/// skipping lanes parked on an empty leaf. IPv4 and IPv6 keys interleaved in bursts of every
/// length, over several partition trees (some lanes skip some trees), must give the reference's
/// answers.
#[test]
fn mixed_family_bursts_with_partial_skips_agree() {
    for profile in [Profile::Ipc, Profile::Fw, Profile::Acl] {
        let v4 = synth::classbench_like(profile, 2000, 21);
        let v6 = synth::to_v6(&v4);
        let rules: Vec<Rule> = v4
            .iter()
            .chain(&v6)
            .enumerate()
            .map(|(i, r)| Rule {
                id: RuleId(i as u32),
                ..r.clone()
            })
            .collect();
        let (k4, k6) = (synth::trace(&v4, 1500, 22), synth::trace(&v6, 1500, 23));
        // Irregular interleaving: runs of 1..=3 keys of one family, then the other.
        let mut keys = Vec::new();
        let (mut a, mut b) = (k4.iter(), k6.iter());
        for i in 0.. {
            let run = 1 + i % 3;
            let from = if i % 2 == 0 { &mut a } else { &mut b };
            let got: Vec<FlowKey> = from.take(run).copied().collect();
            if got.is_empty() && keys.len() >= k4.len() + k6.len() {
                break;
            }
            keys.extend(got);
        }
        let opts = CompileOptions {
            strategy: Layout::Tree,
            ..CompileOptions::default()
        };
        let table = compile_with(&rules, &opts).unwrap();
        assert!(
            table.describe().lines().count() >= 4,
            "{}",
            table.describe()
        );
        let want: Vec<u32> = keys
            .iter()
            .map(|k| reference::first_match(&rules, k).map_or(NO_RULE, |i| i as u32))
            .collect();
        for burst in [1, 7, 8, 9, 16, 31, 64, 257] {
            let mut got = vec![0u32; keys.len()];
            for (ks, out) in keys.chunks(burst).zip(got.chunks_mut(burst)) {
                table.match_burst(ks, out);
            }
            for ((k, g), w) in keys.iter().zip(&got).zip(&want) {
                assert_eq!(g, w, "{profile:?}, burst {burst}, key {k}");
            }
        }
    }
}
