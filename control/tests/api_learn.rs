//! The learning and anomaly routes end to end through the app (no socket): recommendations from
//! a seeded flow history (generate, list, show with evidence flows, approve into a staged
//! revision that the impact preview and commit accept, reject), rule usage, evidence packs,
//! anomaly triage, the policy dry-run and the caller's permissions. Each mutation's audit
//! record is counted.

mod api_support;

use std::net::IpAddr;

use axum::http::{Method, StatusCode};
use serde_json::json;

use api_support::{DEMO, Harness};
use septa_control::api::Role;
use septa_control::api::anomalies::{AnomalyFlow, FeatureContribution, NewAnomaly};
use septa_control::history::{FlowHistory, FlowVerdict, HistoryConfig, ObservedFlow};

fn flow(ts: i64, src: [u8; 4], dst: [u8; 4], dport: u16) -> ObservedFlow {
    ObservedFlow {
        ts_ms: ts,
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        proto: 6,
        dport,
        l7: String::new(),
        verdict: FlowVerdict::WouldDeny,
        rule: u32::MAX,
        revision: "none".into(),
        flows: 1,
        packets: 4,
        bytes: 400,
    }
}

/// Six clients of 10.1.0.0/24 use a web server on 10.2.0.10; the web server uses a database.
fn seed_history(h: &Harness) {
    let mut hist = FlowHistory::open(h.tmp.path(), HistoryConfig::default()).unwrap();
    let mut batch = Vec::new();
    for round in 0..5 {
        for c in 1..=6u8 {
            batch.push(flow(
                100_000 + round * 1000,
                [10, 1, 0, c],
                [10, 2, 0, 10],
                443,
            ));
        }
        batch.push(flow(
            100_500 + round * 1000,
            [10, 2, 0, 10],
            [10, 3, 0, 5],
            5432,
        ));
    }
    hist.ingest(&batch).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendations_are_generated_reviewed_and_staged_through_the_lifecycle() {
    let h = Harness::new();
    seed_history(&h);
    let author = h.token(Role::PolicyAuthor);
    let viewer = h.token(Role::Viewer);

    let before = h.audit_head();
    let r = h
        .call(
            Method::POST,
            "/api/v1/recommendations",
            Some(&author),
            Some(json!({"reason": "least privilege for the web tier", "from_ms": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(h.audit_head(), before + 1);
    let id = r.body["id"].as_u64().unwrap();
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["observed_flows"], 35);
    assert_eq!(r.body["coverage_pct"], 100.0);
    assert!(
        r.body["caveats"][0].as_str().unwrap().contains("periodic"),
        "a short window is flagged: {}",
        r.body
    );

    let list = h
        .call(Method::GET, "/api/v1/recommendations", Some(&viewer), None)
        .await;
    assert_eq!(list.body[0]["id"].as_u64(), Some(id));

    let d = h
        .call(
            Method::GET,
            &format!("/api/v1/recommendations/{id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(d.status, StatusCode::OK);
    let conduits = d.body["conduits"].as_array().unwrap();
    assert_eq!(conduits.len(), 2, "{}", d.body);
    let web = conduits
        .iter()
        .find(|c| c["services"] == json!(["tcp/443"]))
        .expect("a web conduit");
    assert_eq!(web["flows"], 30);
    assert_eq!(web["evidence"].as_array().unwrap().len(), 6);
    assert_eq!(web["evidence"][0]["dst"], "10.2.0.10");
    let db = conduits
        .iter()
        .find(|c| c["services"] == json!(["tcp/5432"]))
        .expect("a database conduit");
    assert!(d.body["endpoints"].as_array().unwrap().len() >= 8);
    assert!(d.body["zones"][0]["reason"].as_str().is_some());

    // A rejected name that the proposal lacks is named.
    let before = h.audit_head();
    let bad = h
        .call(
            Method::POST,
            &format!("/api/v1/recommendations/{id}/approve"),
            Some(&author),
            Some(json!({"reason": "ok", "rejected": ["no-such-conduit"]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.field(), "rejected[0]");
    assert_eq!(h.audit_head(), before, "nothing was attempted");

    // Approve without the database conduit: a staged revision, audited once by the core.
    let before = h.audit_head();
    let ok = h
        .call(
            Method::POST,
            &format!("/api/v1/recommendations/{id}/approve"),
            Some(&author),
            Some(json!({"reason": "web only for now", "rejected": [db["name"]]})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(h.audit_head(), before + 1);
    assert_eq!(ok.body["revision"]["kind"], "stage");
    assert!(
        ok.body["revision"]["reason"]
            .as_str()
            .unwrap()
            .contains("web only for now")
    );
    let rev = ok.body["revision"]["id"].as_i64().unwrap();
    let staged = h
        .call(
            Method::GET,
            &format!("/api/v1/revisions/{rev}"),
            Some(&viewer),
            None,
        )
        .await;
    let staged_conduits = staged.body["policy"]["spec"]["conduits"]
        .as_array()
        .unwrap();
    assert_eq!(staged_conduits.len(), 1);
    assert_eq!(staged_conduits[0]["name"], web["name"]);

    // The staged revision goes through the normal path: what-if and impact preview.
    let what_if = h
        .call(
            Method::POST,
            "/api/v1/policy/decide",
            Some(&viewer),
            Some(json!({"src": "10.1.0.3", "dst": "10.2.0.10", "proto": "tcp", "port": 443, "revision": rev})),
        )
        .await;
    assert_eq!(what_if.status, StatusCode::OK, "{}", what_if.body);
    assert_eq!(what_if.body["action"], "allow");
    let db_flow = h
        .call(
            Method::POST,
            "/api/v1/policy/decide",
            Some(&viewer),
            Some(json!({"src": "10.2.0.10", "dst": "10.3.0.5", "proto": "tcp", "port": 5432, "revision": rev})),
        )
        .await;
    assert_eq!(
        db_flow.body["action"], "deny",
        "the rejected conduit is absent"
    );

    // Reviewed once only.
    let again = h
        .call(
            Method::POST,
            &format!("/api/v1/recommendations/{id}/reject"),
            Some(&author),
            Some(json!({"reason": "changed my mind"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Reject a second proposal.
    let r2 = h
        .call(
            Method::POST,
            "/api/v1/recommendations",
            Some(&author),
            Some(json!({"reason": "again", "from_ms": 0, "mode": "monitor"})),
        )
        .await;
    let id2 = r2.body["id"].as_u64().unwrap();
    let before = h.audit_head();
    let rej = h
        .call(
            Method::POST,
            &format!("/api/v1/recommendations/{id2}/reject"),
            Some(&author),
            Some(json!({"reason": "too broad"})),
        )
        .await;
    assert_eq!(rej.status, StatusCode::OK);
    assert_eq!(rej.body["status"], "rejected");
    assert_eq!(h.audit_head(), before + 1);

    // An unknown proposal: 404, and the refusal is audited.
    let before = h.audit_head();
    let missing = h
        .call(
            Method::POST,
            "/api/v1/recommendations/999/approve",
            Some(&author),
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(h.audit_head(), before + 1);

    // Invalid windows and modes are named.
    for (body, field) in [
        (json!({"reason": "x", "from_ms": 10, "to_ms": 5}), "from_ms"),
        (json!({"reason": "x", "mode": "sometimes"}), "mode"),
        (json!({"reason": " "}), "reason"),
        (
            json!({"reason": "x", "policy_name": "Bad Name"}),
            "policy_name",
        ),
    ] {
        let r = h
            .call(
                Method::POST,
                "/api/v1/recommendations",
                Some(&author),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.field(), field);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_hits_with_paths_and_unused_clauses() {
    let h = Harness::new();
    let admin = h.token(Role::Admin);
    assert_eq!(
        h.commit(&admin, DEMO, None).await.status,
        StatusCode::CREATED
    );
    let (compiled, hash) = h
        .state
        .core
        .run_blocking(|svc| {
            (
                svc.running_table().cloned().unwrap(),
                svc.running().unwrap().hash.clone(),
            )
        })
        .unwrap();
    // One flow decided by the running revision: an it client to the EHR app servers.
    let key = septa_classifier::FlowKey::v4(
        "10.10.1.20".parse().unwrap(),
        "10.10.5.10".parse().unwrap(),
        6,
        40000,
        443,
    );
    let e = septa_control::decide(&compiled, &hash, &key);
    let mut f = flow(900_000, [10, 10, 1, 20], [10, 10, 5, 10], 443);
    f.rule = e.rule;
    f.revision = hash.clone();
    f.verdict = FlowVerdict::from_action(e.action, e.mode).unwrap();
    let mut hist = FlowHistory::open(h.tmp.path(), HistoryConfig::default()).unwrap();
    hist.record_usage(&compiled, &hash, &[f]).unwrap();

    let viewer = h.token(Role::Viewer);
    let r = h
        .call(Method::GET, "/api/v1/usage?since_ms=0", Some(&viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let counters = r.body["counters"].as_array().unwrap();
    assert_eq!(counters.len(), 1, "{}", r.body);
    assert_eq!(counters[0]["hits"], 1);
    assert!(
        counters[0]["path"]
            .as_str()
            .unwrap()
            .starts_with("spec.conduits[")
    );
    let unused = r.body["unused"].as_array().unwrap();
    assert!(!unused.is_empty());
    assert!(
        unused.iter().all(|u| u["clause"] != counters[0]["clause"]),
        "the used clause is not unused"
    );
    let bad = h
        .call(Method::GET, "/api/v1/usage?since_ms=x", Some(&viewer), None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_pack_downloads_as_json_or_html() {
    let h = Harness::new();
    seed_history(&h);
    let admin = h.token(Role::Admin);
    assert_eq!(
        h.commit(&admin, DEMO, None).await.status,
        StatusCode::CREATED
    );
    let auditor = h.token(Role::Auditor);
    let r = h
        .call(
            Method::GET,
            "/api/v1/evidence?from_ms=0&to_ms=2000000",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.raw)
    );
    assert_eq!(r.body["from_ms"], 0);
    assert!(r.body["statements"].as_array().unwrap().len() >= 5);
    let html = h
        .call(
            Method::GET,
            "/api/v1/evidence?from_ms=0&to_ms=2000000&format=html",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(html.content_type().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&html.raw).contains("<html"));
    for q in ["from_ms=5&to_ms=1", "to_ms=1", "from_ms=0&format=pdf"] {
        let r = h
            .call(
                Method::GET,
                &format!("/api/v1/evidence?{q}"),
                Some(&auditor),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
    }
}

fn report(score: f32) -> NewAnomaly {
    NewAnomaly {
        ts_ms: 1_000_000,
        flow: AnomalyFlow {
            src: "10.30.2.5".parse().unwrap(),
            dst: "10.30.1.10".parse().unwrap(),
            proto: 6,
            sport: 40000,
            dport: 502,
            l7: "modbus".into(),
        },
        score,
        threshold: 0.5,
        model_id: "iforest-v3".into(),
        model_hash: "ab12".into(),
        summary: "Modbus writes from a new peer".into(),
        explanation: vec![
            FeatureContribution {
                feature: "l7".into(),
                contribution: 0.6,
                text: "function 6 never seen from this HMI".into(),
            },
            FeatureContribution {
                feature: "timing".into(),
                contribution: 0.3,
                text: "outside the polling cadence".into(),
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_are_listed_acknowledged_and_dismissed_with_audit() {
    let h = Harness::new();
    let id = h.state.anomalies.push(report(0.9));
    h.state.anomalies.push(report(0.6));
    let viewer = h.token(Role::Viewer);
    let operator = h.token(Role::Operator);

    let l = h
        .call(Method::GET, "/api/v1/anomalies", Some(&viewer), None)
        .await;
    assert_eq!(l.status, StatusCode::OK);
    assert_eq!(
        (l.body["total"].as_u64(), l.body["open"].as_u64()),
        (Some(2), Some(2))
    );
    let a = &l.body["items"][1];
    assert_eq!(a["id"].as_u64(), Some(id));
    assert_eq!(a["model_id"], "iforest-v3");
    assert_eq!(a["flow"]["dport"], 502);
    assert_eq!(a["explanation"][0]["feature"], "l7");
    assert_eq!(a["state"], "open");

    let before = h.audit_head();
    let ack = h
        .call(
            Method::POST,
            &format!("/api/v1/anomalies/{id}/ack"),
            Some(&operator),
            Some(json!({"reason": "looking"})),
        )
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.body);
    assert_eq!(ack.body["state"], "acknowledged");
    assert_eq!(ack.body["state_by"], "token:test-operator");
    assert_eq!(h.audit_head(), before + 1);

    let no_reason = h
        .call(
            Method::POST,
            &format!("/api/v1/anomalies/{id}/dismiss"),
            Some(&operator),
            Some(json!({"reason": ""})),
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_reason.field(), "reason");
    let dis = h
        .call(
            Method::POST,
            &format!("/api/v1/anomalies/{id}/dismiss"),
            Some(&operator),
            Some(json!({"reason": "maintenance window"})),
        )
        .await;
    assert_eq!(dis.body["state"], "dismissed");
    assert_eq!(dis.body["state_reason"], "maintenance window");
    let open = h
        .call(
            Method::GET,
            "/api/v1/anomalies?state=open",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(open.body["items"].as_array().unwrap().len(), 1);
    let bad = h
        .call(
            Method::GET,
            "/api/v1/anomalies?state=weird",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let before = h.audit_head();
    let missing = h
        .call(
            Method::POST,
            "/api/v1/anomalies/77/ack",
            Some(&operator),
            Some(json!({})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(h.audit_head(), before + 1, "the refusal is audited");
    let one = h
        .call(
            Method::GET,
            &format!("/api/v1/anomalies/{id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(one.body["state"], "dismissed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_is_a_dry_run_and_permissions_follow_the_route_table() {
    let h = Harness::new();
    let viewer = h.token(Role::Viewer);
    let before = h.audit_head();
    let ok = h
        .call(
            Method::POST,
            "/api/v1/policy/validate",
            Some(&viewer),
            Some(json!({"policy": DEMO})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["valid"], true);
    assert!(ok.body["zones"].as_u64().unwrap() >= 5);
    let bad = DEMO.replace("subnets: [10.20.0.0/24]", "subnets: [10.20.0.0/33]");
    let r = h
        .call(
            Method::POST,
            "/api/v1/policy/validate",
            Some(&viewer),
            Some(json!({"policy": bad, "format": "yaml"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["valid"], false);
    let e = &r.body["errors"][0];
    assert!(
        e["field"]
            .as_str()
            .unwrap()
            .starts_with("policy.spec.zones"),
        "{e}"
    );
    assert!(e["line"].as_u64().is_some(), "{e}");
    assert_eq!(h.audit_head(), before, "a dry run writes nothing");
    let running = h
        .call(Method::GET, "/api/v1/revisions", Some(&viewer), None)
        .await;
    assert_eq!(running.body["items"].as_array().unwrap().len(), 0);

    let p = h
        .call(Method::GET, "/api/v1/auth/permissions", Some(&viewer), None)
        .await;
    assert_eq!(p.body["role"], "viewer");
    let allowed: Vec<String> = p.body["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["method"].as_str().unwrap(),
                a["path"].as_str().unwrap()
            )
        })
        .collect();
    assert!(allowed.contains(&"GET /api/v1/policy".to_owned()));
    assert!(!allowed.contains(&"POST /api/v1/policy/commit".to_owned()));
    assert!(!allowed.contains(&"GET /api/v1/users".to_owned()));
    let admin = h.token(Role::Admin);
    let p = h
        .call(Method::GET, "/api/v1/auth/permissions", Some(&admin), None)
        .await;
    assert!(
        p.body["allowed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["path"] == "/api/v1/users" && a["method"] == "POST")
    );
}
