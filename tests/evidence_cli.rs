//! `septa evidence` and `septa evidence verify` on a real data directory written by the library
//! (two commits, a refused one, a signed checkpoint, flow history): the pack is written and
//! verifies; a tampered pack and a tampered log fail with a non-zero exit and a named problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use septa_control::audit::Actor;
use septa_control::clock::ManualClock;
use septa_control::compile::CompiledPolicy;
use septa_control::history::{FlowHistory, FlowVerdict, HistoryConfig, ObservedFlow};
use septa_control::lifecycle::{CommitOptions, PolicyService, Publisher, ServiceConfig};
use septa_control::policy::Format;

struct AcceptAll;
impl Publisher for AcceptAll {
    fn publish(&self, _: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        Ok(())
    }
}

const POLICY: &str = "apiVersion: septa.io/v1
kind: Policy
metadata: {name: lab}
spec:
  zones:
    - {name: it, subnets: [10.10.0.0/16]}
    - {name: ehr-db, subnets: [10.20.0.0/24]}
  conduits:
    - name: it-to-ehr
      from: [it]
      to: [ehr-db]
      services: [{proto: tcp, ports: [5432]}]
";

// 2025-11-25T00:00:00Z: the lab run happens during that day.
const T0: i64 = 1_764_028_800_000;

fn septa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_septa"))
        .args(args)
        .output()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("septa-evidence-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn flow(ts: i64, dst: &str, dport: u16, verdict: FlowVerdict) -> ObservedFlow {
    ObservedFlow {
        ts_ms: ts,
        src: "10.10.1.5".parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        dport,
        l7: String::new(),
        verdict,
        rule: 1,
        revision: "x".into(),
        flows: 1,
        packets: 2,
        bytes: 200,
    }
}

/// A lab run written through the library into `dir`.
fn lab(dir: &Path) {
    let clock = Arc::new(ManualClock::new(T0 + 3_600_000));
    let mut svc = PolicyService::open(ServiceConfig::new(dir), AcceptAll, clock.clone()).unwrap();
    svc.commit(
        POLICY,
        Format::Yaml,
        &Actor::user("alice"),
        "initial segmentation (CHG-1)",
        CommitOptions::default(),
    )
    .unwrap();
    clock.advance(60_000);
    svc.commit(
        &POLICY.replace("ports: [5432]", "ports: [5432, 22]"),
        Format::Yaml,
        &Actor::user("bob"),
        "DBA ssh access (CHG-2, approved by carol)",
        CommitOptions::default(),
    )
    .unwrap();
    clock.advance(60_000);
    assert!(
        svc.commit(
            "kind: nope",
            Format::Yaml,
            &Actor::user("mallory"),
            "try",
            CommitOptions::default()
        )
        .is_err()
    );
    svc.audit_log().checkpoint().unwrap();
    drop(svc);
    let t = T0 + 3_700_000;
    let mut h = FlowHistory::open(dir, HistoryConfig::default()).unwrap();
    h.ingest(&[
        flow(t, "10.20.0.7", 5432, FlowVerdict::Allowed),
        flow(t + 100, "10.20.0.7", 5432, FlowVerdict::Allowed),
        flow(t + 200, "10.20.0.7", 3389, FlowVerdict::Denied),
        flow(t + 300, "10.30.0.1", 502, FlowVerdict::WouldDeny),
    ])
    .unwrap();
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn evidence_pack_from_a_data_dir_verifies_and_tampering_exits_non_zero() {
    let root = scratch("pack");
    let data = root.join("data");
    let pack = root.join("pack");
    lab(&data);
    let d = data.to_str().unwrap();
    let p = pack.to_str().unwrap();

    let out = septa(&[
        "evidence",
        "--data-dir",
        d,
        "--from",
        "2025-11-25",
        "--to",
        "2025-11-26T00:00:00Z",
        "--out",
        p,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("statement(s)"), "{}", text(&out));
    let html = std::fs::read_to_string(pack.join("report.html")).unwrap();
    assert!(html.contains("DBA ssh access (CHG-2, approved by carol)"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pack.join("evidence.json")).unwrap())
            .unwrap();
    assert!(json["statements"].as_array().is_some_and(|s| !s.is_empty()));

    let ok = septa(&["evidence", "verify", p, "--data-dir", d]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains(": ok"), "{}", text(&ok));
    let ok_json = septa(&["evidence", "verify", p, "--data-dir", d, "--json"]);
    assert!(ok_json.status.success(), "{}", text(&ok_json));
    let chk: serde_json::Value = serde_json::from_slice(&ok_json.stdout).unwrap();
    assert_eq!(chk["problems"], serde_json::json!([]));

    // The HTML report edited after generation.
    std::fs::write(
        pack.join("report.html"),
        html.replacen("DBA ssh access", "Routine access", 1),
    )
    .unwrap();
    let bad = septa(&["evidence", "verify", p, "--data-dir", d]);
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(text(&bad).contains("FAIL"), "{}", text(&bad));
    assert!(text(&bad).contains("report.html"), "{}", text(&bad));
    assert!(text(&bad).contains("does not verify"), "{}", text(&bad));
    std::fs::write(pack.join("report.html"), &html).unwrap();
    assert!(
        septa(&["evidence", "verify", p, "--data-dir", d])
            .status
            .success()
    );

    // A number in the JSON changed.
    let original = std::fs::read_to_string(pack.join("evidence.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    let verdicts = v["statements"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["section"] == "verdicts")
        .unwrap();
    verdicts["data"]["denied"] = 0.into();
    std::fs::write(pack.join("evidence.json"), v.to_string()).unwrap();
    let bad = septa(&["evidence", "verify", p, "--data-dir", d]);
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(
        text(&bad).contains("does not match its hash"),
        "{}",
        text(&bad)
    );
    std::fs::write(pack.join("evidence.json"), &original).unwrap();

    // The audit log edited after the pack was made.
    let seg = std::fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|s| s.contains("CHG-2")))
        .unwrap();
    let log = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(&seg, log.replacen("CHG-2", "CHG-9", 1)).unwrap();
    let bad = septa(&["evidence", "verify", p, "--data-dir", d]);
    assert!(!bad.status.success(), "{}", text(&bad));

    // Usage errors are named.
    let e = septa(&[
        "evidence",
        "--data-dir",
        d,
        "--from",
        "yesterday",
        "--out",
        p,
    ]);
    assert!(!e.status.success());
    assert!(text(&e).contains("yesterday"), "{}", text(&e));
    let _ = std::fs::remove_dir_all(&root);
}
