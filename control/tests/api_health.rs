//! `GET /api/v1/health` over the router (`oneshot`, no socket, no DPDK): workers and the
//! inference thread from a scripted [`HealthSource`], stalled detection on the manual clock,
//! the degraded and down cases with their reasons, the viewer's access, `/metrics`, and the
//! schema in the OpenAPI document.

mod api_support;

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use serde_json::json;

use api_support::Harness;
use septa_control::api::{
    FlowTableHealth, HealthSource, InferenceSample, L7FunctionHealth, L7Health, L7MalformedHealth,
    ModelInfo, Role, RouterHealth, WorkerSample,
};

#[derive(Default)]
struct Scripted(Mutex<(Vec<WorkerSample>, Option<InferenceSample>)>);

impl HealthSource for Scripted {
    fn workers(&self) -> Option<Vec<WorkerSample>> {
        Some(self.0.lock().unwrap().0.clone())
    }
    fn inference(&self) -> Option<InferenceSample> {
        self.0.lock().unwrap().1.clone()
    }
}

impl Scripted {
    fn set(&self, polls: [u64; 2], inference: Option<InferenceSample>) {
        let workers = polls
            .iter()
            .enumerate()
            .map(|(i, &p)| WorkerSample {
                id: i as u16,
                lcore: Some(i as u32 + 1),
                polls: p,
                stopped: false,
                flows: Some(flow_table(i as u64)),
                // Only worker 0 routes.
                router: (i == 0).then(router),
                // Worker 1 inspected nothing yet.
                l7: Some(if i == 0 { l7() } else { L7Health::default() }),
            })
            .collect();
        *self.0.lock().unwrap() = (workers, inference);
    }
}

/// Worker 0's L7 counts: a read-only Modbus conduit that refused writes, a wrong protocol on
/// the S7 port, malformed DNP3.
fn l7() -> L7Health {
    let f = |protocol: &str, function: Option<u8>, name: Option<&str>, messages, denied| {
        L7FunctionHealth {
            protocol: protocol.into(),
            function,
            name: name.map(str::to_owned),
            messages,
            denied,
        }
    };
    L7Health {
        functions: vec![
            f("modbus", Some(3), Some("read_holding_registers"), 120, 0),
            f("modbus", Some(16), Some("write_multiple_registers"), 3, 3),
            f("s7comm", None, None, 0, 1),
        ],
        malformed: vec![L7MalformedHealth {
            protocol: "dnp3".into(),
            malformed: 2,
        }],
    }
}

/// Worker `i`'s flow table: distinct numbers per worker and field.
fn flow_table(i: u64) -> FlowTableHealth {
    FlowTableHealth {
        active: 100 + i,
        half_open: 10 + i,
        capacity: 65536,
        inserted: 5000 + i,
        expired: 4000 + i,
        evicted_half_open: 7 + i,
    }
}

fn router() -> RouterHealth {
    RouterHealth {
        local_frames: 41,
        echo_replies: 40,
        arp_replies: 1,
        neighbour_adverts: 2,
        time_exceeded_sent: 3,
        time_exceeded_suppressed: 4,
        solicitations: 5,
        tx_ring_full: 6,
        neighbours_learnt: 7,
        neighbours: 8,
        neighbour_capacity: 1024,
    }
}

fn harness(source: Arc<Scripted>) -> Harness {
    Harness::with_options(|opts| {
        opts.health = source;
        opts.stall_after = std::time::Duration::from_secs(5);
    })
}

fn inference() -> InferenceSample {
    InferenceSample {
        mode: "shadow".into(),
        models: vec![ModelInfo {
            id: "flow-if-v1".into(),
            hash: "0".repeat(64),
            threshold: 0.6,
        }],
        records: 1000,
        batches: 10,
        repeats: 12,
        calibrations: 2,
        ..InferenceSample::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_running_then_a_stalled_worker_and_a_missing_model() {
    let src = Arc::new(Scripted::default());
    let h = harness(Arc::clone(&src));
    src.set([100, 100], Some(inference()));
    assert_eq!(
        h.call(Method::GET, "/api/v1/health", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let viewer = h.token(Role::Viewer);
    let r = h
        .call(Method::GET, "/api/v1/health", Some(&viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "ok", "{}", r.body);
    assert_eq!(r.body["reasons"], json!([]));
    assert_eq!(r.body["dataplane"], true);
    assert_eq!(r.body["stall_after_ms"], 5000);
    assert_eq!(r.body["workers"][1]["state"], "running");
    assert_eq!(r.body["workers"][1]["lcore"], 2);
    assert_eq!(r.body["inference"]["state"], "running");
    assert_eq!(r.body["inference"]["mode"], "shadow");
    assert_eq!(r.body["inference"]["models"][0]["id"], "flow-if-v1");
    assert_eq!(r.body["inference"]["repeats"], 12);
    assert_eq!(r.body["inference"]["calibrations"], 2);
    // Each worker's flow table; the router only on the routed worker.
    let flows = &r.body["workers"][1]["flows"];
    assert_eq!(
        flows,
        &json!({"active": 101, "half_open": 11, "capacity": 65536, "inserted": 5001,
                "expired": 4001, "evicted_half_open": 8}),
        "{}",
        r.body
    );
    assert_eq!(r.body["workers"][0]["router"]["echo_replies"], 40);
    assert_eq!(r.body["workers"][0]["router"]["neighbour_capacity"], 1024);
    assert_eq!(r.body["workers"][1]["router"], json!(null));

    // Worker 0 keeps polling, worker 1 does not; 7 s later it is stalled.
    h.clock.advance(7000);
    src.set([9000, 100], Some(inference()));
    let r = h
        .call(Method::GET, "/api/v1/health", Some(&viewer), None)
        .await;
    assert_eq!(r.body["status"], "degraded", "{}", r.body);
    assert_eq!(
        r.body["reasons"],
        json!(["worker 1 (lcore 2) has not polled for 7 s"])
    );
    assert_eq!(r.body["workers"][0]["state"], "running");
    assert_eq!(r.body["workers"][1]["state"], "stalled");
    assert_eq!(r.body["workers"][1]["last_progress_age_ms"], 7000);
    assert_eq!(r.body["inference"]["last_inference_age_ms"], 7000);

    // Both stand still: down. The inference thread lost its model: named too.
    h.clock.advance(6000);
    let mut no_model = inference();
    no_model.models.clear();
    src.set([9000, 100], Some(no_model));
    let r = h
        .call(Method::GET, "/api/v1/health", Some(&viewer), None)
        .await;
    assert_eq!(r.body["status"], "down", "{}", r.body);
    let reasons: Vec<&str> = r.body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"worker 0 (lcore 1) has not polled for 6 s"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"inference thread: no model loaded"),
        "{reasons:?}"
    );
    assert_eq!(r.body["inference"]["state"], "degraded");

    let m = h.call(Method::GET, "/metrics", Some(&viewer), None).await;
    let text = String::from_utf8(m.raw).unwrap();
    assert!(text.contains("septa_health_status 2"), "{text}");
    assert!(
        text.contains("septa_worker_polls_total{worker=\"0\",lcore=\"1\"} 9000"),
        "{text}"
    );
    assert!(text.contains("septa_inference_models_loaded 0"), "{text}");
    for line in [
        "septa_flow_table_flows{worker=\"0\",lcore=\"1\"} 100",
        "septa_flow_table_flows{worker=\"1\",lcore=\"2\"} 101",
        "septa_flow_table_half_open_flows{worker=\"1\",lcore=\"2\"} 11",
        "septa_flow_table_capacity_flows{worker=\"0\",lcore=\"1\"} 65536",
        "septa_flow_table_inserted_total{worker=\"1\",lcore=\"2\"} 5001",
        "septa_flow_table_expired_total{worker=\"0\",lcore=\"1\"} 4000",
        "septa_flow_table_evicted_half_open_total{worker=\"1\",lcore=\"2\"} 8",
        "septa_router_local_frames_total{worker=\"0\",lcore=\"1\"} 41",
        "septa_router_echo_replies_total{worker=\"0\",lcore=\"1\"} 40",
        "septa_router_arp_replies_total{worker=\"0\",lcore=\"1\"} 1",
        "septa_router_neighbour_adverts_total{worker=\"0\",lcore=\"1\"} 2",
        "septa_router_time_exceeded_sent_total{worker=\"0\",lcore=\"1\"} 3",
        "septa_router_time_exceeded_suppressed_total{worker=\"0\",lcore=\"1\"} 4",
        "septa_router_solicitations_total{worker=\"0\",lcore=\"1\"} 5",
        "septa_router_tx_ring_full_total{worker=\"0\",lcore=\"1\"} 6",
        "septa_router_neighbours_learnt_total{worker=\"0\",lcore=\"1\"} 7",
        "septa_router_neighbours{worker=\"0\",lcore=\"1\"} 8",
        "septa_router_neighbour_capacity{worker=\"0\",lcore=\"1\"} 1024",
        "septa_l7_messages_total{worker=\"0\",lcore=\"1\",protocol=\"modbus\",function=\"3\",name=\"read_holding_registers\"} 120",
        "septa_l7_messages_total{worker=\"0\",lcore=\"1\",protocol=\"modbus\",function=\"16\",name=\"write_multiple_registers\"} 3",
        "septa_l7_denied_total{worker=\"0\",lcore=\"1\",protocol=\"modbus\",function=\"16\",name=\"write_multiple_registers\"} 3",
        "septa_l7_denied_total{worker=\"0\",lcore=\"1\",protocol=\"s7comm\",function=\"none\",name=\"\"} 1",
        "septa_l7_malformed_total{worker=\"0\",lcore=\"1\",protocol=\"dnp3\"} 2",
        "# TYPE septa_l7_denied counter",
        "septa_inference_repeats_total 12",
        "septa_inference_calibrations_total 2",
        "# HELP septa_router_echo_replies Echo replies",
        "# TYPE septa_flow_table_flows gauge",
        "# TYPE septa_flow_table_expired counter",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(
        !text.contains("septa_router_echo_replies_total{worker=\"1\""),
        "worker 1 does not route:\n{text}"
    );
    assert!(
        !text.contains(
            "septa_l7_denied_total{worker=\"0\",lcore=\"1\",protocol=\"modbus\",function=\"3\""
        ),
        "no series for what is zero:\n{text}"
    );
    assert!(
        !text.contains("septa_l7_messages_total{worker=\"1\""),
        "worker 1 inspected nothing:\n{text}"
    );
    let l7 = &r.body["workers"][0]["l7"];
    assert_eq!(
        l7["functions"][1]["name"], "write_multiple_registers",
        "{l7}"
    );
    assert_eq!(
        l7["functions"][2]["function"],
        serde_json::Value::Null,
        "{l7}"
    );
    assert_eq!(l7["malformed"][0]["protocol"], "dnp3", "{l7}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_data_plane_health_is_ok_and_the_schema_is_documented() {
    let h = Harness::new();
    let viewer = h.token(Role::Viewer);
    let r = h
        .call(Method::GET, "/api/v1/health", Some(&viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["dataplane"], false);
    assert_eq!(r.body["inference"]["state"], "off");
    // No workers, so no per-worker flow-table or router series (not even their HELP lines).
    let m = h.call(Method::GET, "/metrics", Some(&viewer), None).await;
    let text = String::from_utf8(m.raw).unwrap();
    assert!(
        !text.contains("septa_flow_table_") && !text.contains("septa_router_"),
        "{text}"
    );
    assert!(text.contains("septa_inference_repeats_total 0"), "{text}");

    let doc = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .body;
    let op = &doc["paths"]["/api/v1/health"]["get"];
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/HealthReport",
        "{op}"
    );
    let schemas = &doc["components"]["schemas"];
    for s in [
        "HealthReport",
        "WorkerHealth",
        "InferenceHealth",
        "ModelInfo",
        "FlowTableHealth",
        "RouterHealth",
    ] {
        assert!(schemas[s].is_object(), "{s} missing");
    }
    assert_eq!(
        schemas["HealthStatus"]["enum"],
        json!(["ok", "degraded", "down"]),
        "{}",
        schemas["HealthStatus"]
    );
}
