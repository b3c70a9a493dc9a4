//! The parser and validator on hostile input: random byte edits of the demo policy (YAML) and of
//! its canonical JSON never panic, and every rejection carries at least one diagnostic that names
//! a field path or a source position.

use proptest::prelude::*;
use septa_control::{Format, PolicyError, parse_policy};

const DEMO: &str = include_str!("../../configs/policies/demo.yaml");

fn check(text: &str, format: Format) -> Result<(), TestCaseError> {
    match parse_policy(text, format) {
        Ok(p) => {
            // Whatever was accepted compiles and round-trips through its canonical form.
            septa_control::compile(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = parse_policy(
                std::str::from_utf8(&p.canonical_json()).unwrap(),
                Format::Json,
            )
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.content_hash(), p.content_hash());
        }
        Err(e) => {
            let ds = e.diagnostics();
            prop_assert!(!ds.is_empty());
            for d in &ds {
                prop_assert!(
                    !d.path.is_empty() || d.line.is_some(),
                    "unlocated diagnostic {} for {:?}",
                    d,
                    e
                );
                prop_assert!(!d.message.is_empty());
            }
            if let PolicyError::Invalid(_) = e {
                prop_assert!(
                    ds.iter().all(|d| !d.path.is_empty()),
                    "semantic errors name a field: {}",
                    e
                );
            }
        }
    }
    Ok(())
}

fn mutate(base: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut b = base.as_bytes().to_vec();
    for &(pos, kind, byte) in edits {
        let i = pos % (b.len() + 1);
        match kind % 3 {
            0 if i < b.len() => b[i] = byte,
            1 if i < b.len() => {
                b.remove(i);
            }
            _ => b.insert(i, byte),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn edit() -> impl Strategy<Value = (usize, u8, u8)> {
    let bytes = prop::sample::select(b"0123456789abz:-[]{}\",./ \n#&*!".to_vec());
    (any::<usize>(), any::<u8>(), bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn edited_yaml_never_panics_and_errors_are_located(edits in prop::collection::vec(edit(), 1..4)) {
        check(&mutate(DEMO, &edits), Format::Yaml)?;
    }

    #[test]
    fn edited_json_never_panics_and_errors_are_located(edits in prop::collection::vec(edit(), 1..4)) {
        let json = String::from_utf8(parse_policy(DEMO, Format::Yaml).unwrap().canonical_json()).unwrap();
        check(&mutate(&json, &edits), Format::Json)?;
    }
}
