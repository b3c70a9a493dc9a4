//! `/api/v1/flows` records say what their counters report (`kind`): a flow's `start` carries no
//! counters yet (0 is "not yet counted", not "no traffic"), its `update`s what it carried since
//! its previous report, its `end` the rest, so summing a host's records counts every byte once
//! and a console can tell which flows are pending.

mod api_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use api_support::Harness;
use septa_control::api::{FlowKind, FlowRecord, FlowStore, Role};

fn rec(ts_ms: i64, kind: FlowKind, src: &str, sport: u16, packets: u64, bytes: u64) -> FlowRecord {
    FlowRecord {
        ts_ms,
        kind,
        src: src.into(),
        dst: "10.20.1.20".into(),
        proto: 6,
        sport,
        dport: 80,
        action: if kind == FlowKind::Deny {
            "deny"
        } else {
            "allow"
        }
        .into(),
        mode: "enforce".into(),
        rule: 1,
        revision: "abc".into(),
        packets,
        bytes,
        total_packets: if kind == FlowKind::Deny { 0 } else { packets },
        total_bytes: if kind == FlowKind::Deny { 0 } else { bytes },
        clause: String::new(),
        l7: String::new(),
        l7_reason: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_records_carry_their_kind_and_counters() {
    let store = Arc::new(FlowStore::new(100));
    // Two web fetches by .10 (one of 13 MB), one by .11, a live one by .12, a refused packet.
    for r in [
        rec(1_000, FlowKind::Start, "10.10.1.10", 40000, 0, 0),
        rec(1_100, FlowKind::Start, "10.10.1.11", 40001, 0, 0),
        rec(1_200, FlowKind::Start, "10.10.1.10", 40002, 0, 0),
        rec(1_300, FlowKind::Start, "10.10.1.12", 40003, 0, 0),
        rec(1_400, FlowKind::End, "10.10.1.10", 40000, 12, 1_500),
        rec(1_500, FlowKind::End, "10.10.1.11", 40001, 9_000, 13_000_000),
        rec(1_600, FlowKind::End, "10.10.1.10", 40002, 10, 1_200),
        rec(1_700, FlowKind::Deny, "10.10.1.13", 40004, 1, 0),
    ] {
        store.push(r);
    }
    let flows = Arc::clone(&store);
    let h = Harness::with_options(move |o| o.flows = flows);
    let viewer = h.token(Role::Viewer);
    let r = h
        .call(Method::GET, "/api/v1/flows?since=1000", Some(&viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    assert_eq!(
        items[0],
        json!({
            "ts_ms": 1_700, "kind": "deny", "src": "10.10.1.13", "dst": "10.20.1.20", "proto": 6,
            "sport": 40004, "dport": 80, "action": "deny", "mode": "enforce", "rule": 1,
            "revision": "abc", "packets": 1, "bytes": 0, "total_packets": 0, "total_bytes": 0,
            "clause": "", "l7": "", "l7_reason": "",
        })
    );
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "deny", "end", "end", "end", "start", "start", "start", "start"
        ]
    );
    // Every start reports nothing yet; the ends carry the traffic.
    assert!(
        items
            .iter()
            .filter(|i| i["kind"] == "start")
            .all(|i| i["bytes"] == 0 && i["packets"] == 0)
    );
    // A host's bytes are the sum of its records; a host with only a start is still pending.
    let mut bytes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut pending: Vec<&str> = Vec::new();
    for i in items {
        let src = i["src"].as_str().unwrap();
        *bytes.entry(src).or_default() += i["bytes"].as_u64().unwrap();
        let sport = &i["sport"];
        let counted = items
            .iter()
            .any(|j| j["sport"] == *sport && j["kind"] != "start");
        if !counted {
            pending.push(src);
        }
    }
    assert_eq!(bytes["10.10.1.11"], 13_000_000);
    assert_eq!(bytes["10.10.1.10"], 2_700);
    assert_eq!(pending, ["10.10.1.12"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_names_the_record_kinds() {
    let h = Harness::new();
    let r = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let schemas = &r.body["components"]["schemas"];
    assert_eq!(
        schemas["FlowKind"]["enum"],
        json!(["start", "update", "end", "deny"]),
        "{}",
        schemas["FlowKind"]
    );
    let required: Vec<&Value> = schemas["FlowRecord"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    for field in ["kind", "total_packets", "total_bytes"] {
        assert!(required.contains(&&json!(field)), "{field}: {required:?}");
    }
    let kind_doc = schemas["FlowKind"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(kind_doc.contains("reported once"), "{kind_doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_report_a_live_flows_traffic_once_and_the_end_only_the_rest() {
    let store = Arc::new(FlowStore::new(100));
    // A long database session by .10: started, two updates (deltas), then its end carries
    // only what came after the last update. A second flow by .11 is still open.
    let up = |ts, src, sport, p, b, tp, tb| FlowRecord {
        total_packets: tp,
        total_bytes: tb,
        ..rec(ts, FlowKind::Update, src, sport, p, b)
    };
    let mut end = rec(40_000, FlowKind::End, "10.10.1.10", 40000, 5, 500);
    (end.total_packets, end.total_bytes) = (125, 1_000_500);
    for r in [
        rec(1_000, FlowKind::Start, "10.10.1.10", 40000, 0, 0),
        rec(2_000, FlowKind::Start, "10.10.1.11", 40001, 0, 0),
        up(11_000, "10.10.1.10", 40000, 100, 800_000, 100, 800_000),
        up(12_000, "10.10.1.11", 40001, 7, 7_000, 7, 7_000),
        up(21_000, "10.10.1.10", 40000, 20, 200_000, 120, 1_000_000),
        end,
    ] {
        store.push(r);
    }
    let flows = Arc::clone(&store);
    let h = Harness::with_options(move |o| o.flows = flows);
    let viewer = h.token(Role::Viewer);
    let r = h
        .call(Method::GET, "/api/v1/flows", Some(&viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["end", "update", "update", "update", "start", "start"]
    );
    // Summing a flow's records gives its totals, as its last record says.
    let mut sum: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for i in items {
        let e = sum.entry(i["sport"].as_u64().unwrap()).or_default();
        e.0 += i["packets"].as_u64().unwrap();
        e.1 += i["bytes"].as_u64().unwrap();
    }
    assert_eq!(sum[&40000], (125, 1_000_500));
    assert_eq!(sum[&40001], (7, 7_000), "an open flow's traffic so far");
    assert_eq!(items[0]["total_bytes"], 1_000_500);
    // A window sees the traffic reported in it: the last 20 s of the session.
    let r = h
        .call(
            Method::GET,
            "/api/v1/flows?since=20000",
            Some(&viewer),
            None,
        )
        .await;
    let bytes: u64 = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(bytes, 200_500);
}
