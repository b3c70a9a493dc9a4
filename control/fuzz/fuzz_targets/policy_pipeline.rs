//! Fuzz the policy pipeline: arbitrary bytes as YAML (first byte even) or JSON (odd) through
//! parse, validation, compilation and decisions. `septa_control::fuzzing::check_policy_bytes`
//! panics on any broken invariant: a panic in the parser, an unlocated diagnostic, a policy that
//! validates but does not compile or round-trip, or a compiled decision that differs from the
//! classifier's reference scan or from the policy's meaning. The stable test
//! `control/tests/parse_robustness.rs` runs the same function over mutated policies in CI.
//!
//! `cd control/fuzz && cargo +nightly fuzz run policy_pipeline seeds/policy_pipeline`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    septa_control::fuzzing::check_policy_bytes(data);
});
