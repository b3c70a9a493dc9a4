//! The policy pipeline on hostile input, in stable Rust so CI runs it: the same function the
//! cargo-fuzz target `control/fuzz` (`policy_pipeline`) runs
//! (`septa_control::fuzzing::check_policy_bytes`), over random bytes, byte edits and line edits
//! of the shipped policies (YAML and their canonical JSON), and the fuzz seeds. It panics on any
//! broken invariant: a parser panic, an unlocated diagnostic, an accepted policy that does not
//! compile or round-trip, a compiled decision that differs from the reference scan or from the
//! policy's meaning.

use proptest::prelude::*;
use septa_control::fuzzing::{check_policy_bytes, check_policy_text};
use septa_control::{Format, parse_policy};

const DEMO: &str = include_str!("../../configs/policies/demo.yaml");

fn canonical(yaml: &str) -> String {
    String::from_utf8(parse_policy(yaml, Format::Yaml).unwrap().canonical_json()).unwrap()
}

/// Byte edits: (position, kind: replace/delete/insert, byte).
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

/// Line edits, which keep YAML mostly well-formed and so reach validation and compilation:
/// (line, kind: duplicate/delete/swap with another/copy another over it, other line).
fn mutate_lines(base: &str, edits: &[(usize, u8, usize)]) -> String {
    let mut lines: Vec<&str> = base.lines().collect();
    for &(at, kind, other) in edits {
        if lines.is_empty() {
            break;
        }
        let (i, j) = (at % lines.len(), other % lines.len());
        match kind % 4 {
            0 => lines.insert(i, lines[i]),
            1 => {
                lines.remove(i);
            }
            2 => lines.swap(i, j),
            _ => lines[i] = lines[j],
        }
    }
    lines.join("\n")
}

fn edit() -> impl Strategy<Value = (usize, u8, u8)> {
    let bytes = prop::sample::select(b"0123456789abz:-[]{}\",./ \n#&*!".to_vec());
    (any::<usize>(), any::<u8>(), bytes)
}

fn line_edit() -> impl Strategy<Value = (usize, u8, usize)> {
    (any::<usize>(), any::<u8>(), any::<usize>())
}

#[test]
fn shipped_policies_and_fuzz_seeds_pass_every_check() {
    assert!(check_policy_text(DEMO, Format::Yaml));
    assert!(check_policy_text(&canonical(DEMO), Format::Json));
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/policy_pipeline");
    let mut n = 0;
    for e in std::fs::read_dir(&seeds).expect("fuzz seeds are in the repository") {
        check_policy_bytes(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 2, "{n} seeds");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_break_an_invariant(data in prop::collection::vec(any::<u8>(), 0..512)) {
        check_policy_bytes(&data);
    }

    #[test]
    fn edited_yaml_never_breaks_an_invariant(edits in prop::collection::vec(edit(), 1..4)) {
        check_policy_text(&mutate(DEMO, &edits), Format::Yaml);
    }

    #[test]
    fn edited_json_never_breaks_an_invariant(edits in prop::collection::vec(edit(), 1..4)) {
        check_policy_text(&mutate(&canonical(DEMO), &edits), Format::Json);
    }

    #[test]
    fn line_edited_policies_never_break_an_invariant(
        edits in prop::collection::vec(line_edit(), 1..4),
    ) {
        check_policy_text(&mutate_lines(DEMO, &edits), Format::Yaml);
    }
}
