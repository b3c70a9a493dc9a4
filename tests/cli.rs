//! The control-plane commands of the real binary: `septa policy check`, `septa decide` and
//! `septa audit verify`, with their exit codes (scripts and CI pipelines rely on them).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use septa_control::audit::{Actor, AuditConfig, AuditEntry, AuditLog};
use septa_control::clock::SystemClock;

fn septa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(args)
        .output()
        .unwrap()
}

fn demo_policy() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("configs/policies/demo.yaml")
        .display()
        .to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("septa-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn demo_policy_checks() {
    let out = septa(&["policy", "check", &demo_policy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok, content hash"));
}

#[test]
fn invalid_policy_names_path_line_and_column_and_fails() {
    let dir = scratch("badpolicy");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: septa.io/v1\nkind: Policy\nmetadata:\n  name: x\nspec:\n  zones:\n    - name: a\n      subnets: [10.0.0.0/33]\n",
    )
    .unwrap();
    let out = septa(&["policy", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("8:") && err.contains("spec.zones[0].subnets[0]"),
        "{err}"
    );

    let out = septa(&["policy", "check", "--json", file.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["path"], "spec.zones[0].subnets[0]");
}

#[test]
fn decide_names_the_deciding_clause() {
    let p = demo_policy();
    let out = septa(&[
        "decide",
        "--json",
        "--policy",
        &p,
        "10.10.1.5",
        "10.30.1.10",
        "tcp",
        "502",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "deny");
    assert_eq!(v["clause"]["name"], "no-it-to-ot");

    let out = septa(&[
        "decide",
        "--policy",
        &p,
        "10.10.1.5",
        "10.10.5.10",
        "tcp",
        "443",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("is allowed by conduit it-to-ehr-app"),
        "{text}"
    );

    let out = septa(&[
        "decide",
        "--policy",
        &p,
        "10.10.1.5",
        "not-an-ip",
        "tcp",
        "443",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-ip"));
}

#[test]
fn audit_verify_passes_then_fails_after_tampering() {
    let dir = scratch("audit");
    let log_dir = dir.join("audit");
    {
        let mut log = AuditLog::open(
            AuditConfig::new(&log_dir, dir.join("audit.key")),
            Arc::new(SystemClock),
        )
        .unwrap();
        for i in 0..5 {
            log.append(AuditEntry {
                actor: Actor::user("alice"),
                action: "policy.commit".into(),
                object: "policy/demo".into(),
                before: None,
                after: None,
                reason: format!("change {i}"),
                result: "ok".into(),
                detail: String::new(),
            })
            .unwrap();
        }
    }
    let out = septa(&["audit", "verify", log_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Flip one character of a reason in the first segment.
    let segment = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("change 3")))
        .expect("a segment with the records");
    let text = std::fs::read_to_string(&segment)
        .unwrap()
        .replace("change 3", "change 9");
    std::fs::write(&segment, text).unwrap();
    let out = septa(&["audit", "verify", log_dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does NOT verify"));
}
