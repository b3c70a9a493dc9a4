//! Incremental edits agree with a full compile of the edited list (and so with the reference).

use proptest::prelude::*;
use septa_classifier::synth::{self, Profile};
use septa_classifier::{
    CompileOptions, Decision, Edit, Rule, RuleId, Strategy as Layout, compile_with, reference,
};

fn check(
    rules: &[Rule],
    table: &septa_classifier::RuleTable,
    seed: u64,
) -> Result<(), TestCaseError> {
    let keys = synth::trace(rules, 300, seed);
    let mut burst = vec![Decision::default(); keys.len()];
    table.classify_burst(&keys, &mut burst);
    for (k, b) in keys.iter().zip(&burst) {
        let want = reference::classify(rules, table.default_decision(), k);
        prop_assert_eq!(table.classify(k), want, "key {}", k);
        prop_assert_eq!(*b, want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn edits_agree_with_the_reference(seed in any::<u64>(), profile in 0u8..3, edits in prop::collection::vec((any::<bool>(), any::<u16>()), 1..12)) {
        let profile = [Profile::Acl, Profile::Fw, Profile::Ipc][usize::from(profile)];
        let mut rules = synth::classbench_like(profile, 300, seed);
        let pool = synth::classbench_like(profile, 64, seed ^ 0x55);
        let opts = CompileOptions { strategy: Layout::Tree, ..CompileOptions::default() };
        let mut table = compile_with(&rules, &opts).unwrap();
        for (n, (insert, at)) in edits.into_iter().enumerate() {
            let edit = if insert || rules.is_empty() {
                let rule = Rule { id: RuleId(10_000 + n as u32), ..pool[n % pool.len()].clone() };
                Edit::Insert { index: usize::from(at) % (rules.len() + 1), rule }
            } else {
                Edit::Remove { index: usize::from(at) % rules.len() }
            };
            table = table.apply(&rules, &edit, &opts).unwrap();
            rules = edit.applied_to(&rules).unwrap();
            check(&rules, &table, seed ^ n as u64)?;
        }
    }
}

#[test]
fn bad_edits_are_rejected_and_leave_the_table_alone() {
    let rules = synth::classbench_like(Profile::Acl, 50, 1);
    let opts = CompileOptions::default();
    let table = compile_with(&rules, &opts).unwrap();
    let dup = Edit::Insert {
        index: 3,
        rule: rules[7].clone(),
    };
    let e = table.apply(&rules, &dup, &opts).unwrap_err();
    assert_eq!(e.field(), septa_classifier::Field::Id);
    assert!(
        table
            .apply(&rules, &Edit::Remove { index: 50 }, &opts)
            .is_err()
    );
    check(&rules, &table, 9).unwrap();
}
