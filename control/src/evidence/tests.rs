use std::sync::Arc;

use super::*;
use crate::audit::Actor;
use crate::clock::ManualClock;
use crate::compile::CompiledPolicy;
use crate::history::{FlowVerdict, ObservedFlow};
use crate::lifecycle::{CommitOptions, PolicyService, Publisher, ServiceConfig};
use crate::policy::Format;

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

/// A lab run: two commits (one by alice, one by bob), a refused one, flows; a checkpoint.
fn lab() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let mut svc =
        PolicyService::open(ServiceConfig::new(dir.path()), AcceptAll, clock.clone()).unwrap();
    svc.commit(
        POLICY,
        Format::Yaml,
        &Actor::user("alice"),
        "initial segmentation (CHG-1)",
        CommitOptions::default(),
    )
    .unwrap();
    clock.advance(1_000);
    let wider = POLICY.replace("ports: [5432]", "ports: [5432, 22]");
    svc.commit(
        &wider,
        Format::Yaml,
        &Actor::user("bob"),
        "DBA ssh access (CHG-2, approved by carol)",
        CommitOptions::default(),
    )
    .unwrap();
    clock.advance(1_000);
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
    let mut h = FlowHistory::open(dir.path(), HistoryConfig::default()).unwrap();
    h.ingest(&[
        flow(1_001_500, "10.20.0.7", 5432, FlowVerdict::Allowed),
        flow(1_001_600, "10.20.0.7", 5432, FlowVerdict::Allowed),
        flow(1_001_700, "10.20.0.7", 3389, FlowVerdict::Denied),
        flow(1_001_800, "10.30.0.1", 502, FlowVerdict::WouldDeny),
    ])
    .unwrap();
    dir
}

fn data(dir: &Path) -> DataDir {
    DataDir {
        root: dir.to_path_buf(),
    }
}

fn section<'a>(p: &'a EvidencePack, name: &str) -> &'a Statement {
    p.statements.iter().find(|s| s.section == name).unwrap()
}

#[test]
fn a_pack_from_a_lab_run_has_every_section_mapped_and_linked() {
    let dir = lab();
    let pack = generate(&data(dir.path()), 0, 2_000_000, 3_000_000).unwrap();
    let sections: Vec<&str> = pack.statements.iter().map(|s| s.section.as_str()).collect();
    assert_eq!(
        sections,
        [
            "matrix",
            "flow-map",
            "verdicts",
            "changes",
            "anomalies",
            "models",
            "log"
        ]
    );
    assert!(pack.statements.iter().all(|s| !s.controls.is_empty()));

    let m = section(&pack, "matrix");
    assert!(m.text.contains("revision 2"), "{}", m.text);
    assert!(m.controls.contains(&"IEC62443-3-3:SR5.1".to_owned()));
    assert_eq!(m.sources.len(), 1, "linked to the commit record");
    assert!(
        m.sources[0].checkpoint.is_some(),
        "and to the signed checkpoint covering it"
    );

    let v = section(&pack, "verdicts");
    assert_eq!(
        (
            v.data["allowed"].as_u64(),
            v.data["denied"].as_u64(),
            v.data["would_deny"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let map = section(&pack, "flow-map");
    let edges = map.data["edges"].as_array().unwrap();
    assert!(
        edges
            .iter()
            .any(|e| e["from"] == "it" && e["to"] == "ehr-db" && e["flows"] == 3)
    );
    assert!(edges.iter().any(|e| e["to"] == "(no zone)"));

    let c = section(&pack, "changes");
    let changes = c.data["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "two commits and one refusal");
    assert_eq!(changes[1]["actor"], "user:bob");
    assert_eq!(
        changes[1]["reason"],
        "DBA ssh access (CHG-2, approved by carol)"
    );
    assert!(
        changes[2]["result"]
            .as_str()
            .unwrap()
            .starts_with("refused")
    );
    assert_eq!(c.sources.len(), 3);

    let a = section(&pack, "anomalies");
    assert!(a.text.starts_with("No ML anomaly alerts were recorded"));
    assert!(
        section(&pack, "models")
            .text
            .starts_with("No ML model files")
    );
    assert!(pack.caveats.is_empty(), "{:?}", pack.caveats);

    // A window before anything happened has no changes.
    let early = generate(&data(dir.path()), 0, 999_999, 3_000_000).unwrap();
    assert!(
        section(&early, "matrix")
            .text
            .starts_with("No policy was published")
    );
    assert_eq!(
        section(&early, "changes").data["changes"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn a_written_pack_verifies_and_a_tampered_one_fails() {
    let dir = lab();
    let out = tempfile::tempdir().unwrap();
    let pack = generate(&data(dir.path()), 0, 2_000_000, 3_000_000).unwrap();
    write(&pack, out.path()).unwrap();
    let html = fs::read_to_string(out.path().join(REPORT_HTML)).unwrap();
    assert!(html.contains("DBA ssh access (CHG-2, approved by carol)"));
    assert!(html.contains("IEC62443-3-3:SR5.2"));
    let ok = verify(out.path(), &data(dir.path())).unwrap();
    assert!(ok.problems.is_empty(), "{:?}", ok.problems);
    assert!(ok.records >= 5 && ok.checkpoints >= 5, "{ok:?}");

    let json_path = out.path().join(EVIDENCE_JSON);
    let original = fs::read_to_string(&json_path).unwrap();
    let tamper = |f: &dyn Fn(&mut EvidencePack)| -> Vec<String> {
        let mut p: EvidencePack = serde_json::from_str(&original).unwrap();
        f(&mut p);
        write(&p, out.path()).unwrap();
        verify(out.path(), &data(dir.path())).unwrap().problems
    };
    // 1. A number changed in the JSON (hash not recomputed).
    let probs = tamper(&|p| {
        let v = p
            .statements
            .iter_mut()
            .find(|s| s.section == "verdicts")
            .unwrap();
        v.data["denied"] = 0.into();
    });
    assert!(
        probs.iter().any(|m| m.contains("does not match its hash")),
        "{probs:?}"
    );
    // 2. A reason rewritten and the statement hash recomputed: the log disagrees.
    let probs = tamper(&|p| {
        let c = p
            .statements
            .iter_mut()
            .find(|s| s.section == "changes")
            .unwrap();
        c.data["changes"][1]["reason"] = "routine".into();
        c.sha256 = statement_hash(c);
    });
    assert!(
        probs.contains(&"S4: the change history differs from the audit log".to_owned()),
        "{probs:?}"
    );
    // 3. A cited record's hash swapped.
    let probs = tamper(&|p| {
        let m = p
            .statements
            .iter_mut()
            .find(|s| s.section == "matrix")
            .unwrap();
        m.sources[0].hash = "00".repeat(32);
        m.sha256 = statement_hash(m);
    });
    assert!(
        probs
            .iter()
            .any(|m| m.contains("different hash in the log")),
        "{probs:?}"
    );
    // 4. A forged checkpoint signature.
    let probs = tamper(&|p| {
        let m = p
            .statements
            .iter_mut()
            .find(|s| s.section == "matrix")
            .unwrap();
        let cp = m.sources[0].checkpoint.as_mut().unwrap();
        cp.sig = format!(
            "{}{}",
            if cp.sig.starts_with('0') { "1" } else { "0" },
            &cp.sig[1..]
        );
        m.sha256 = statement_hash(m);
    });
    assert!(
        probs.iter().any(|m| m.contains("invalid signature")),
        "{probs:?}"
    );

    // 5. The HTML edited after generation.
    write(&pack, out.path()).unwrap();
    let edited = html.replacen("DBA ssh access", "Routine access", 1);
    fs::write(out.path().join(REPORT_HTML), edited).unwrap();
    let probs = verify(out.path(), &data(dir.path())).unwrap().problems;
    assert!(probs.iter().any(|m| m.contains("report.html")), "{probs:?}");

    // 6. The log itself edited after the pack was made.
    write(&pack, out.path()).unwrap();
    let seg = dir.path().join("audit").join(crate::audit::segment_name(0));
    let log = fs::read_to_string(&seg).unwrap();
    fs::write(&seg, log.replacen("CHG-2", "CHG-9", 1)).unwrap();
    let probs = verify(out.path(), &data(dir.path())).unwrap().problems;
    assert!(
        probs.iter().any(|m| m.contains("does not verify")),
        "{probs:?}"
    );
}

#[test]
fn an_empty_window_is_refused() {
    let dir = lab();
    assert!(matches!(
        generate(&data(dir.path()), 5, 5, 0),
        Err(EvidenceError::Window { .. })
    ));
}
