//! Shared fixture of the API tests: a fresh data directory, a service over it, the app, tokens
//! for every role, and a `oneshot` request helper (no socket, no DPDK).

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use septa_control::CompiledPolicy;
use septa_control::api::auth::TokenInfo;
use septa_control::api::{ApiOptions, AppState, DynPublisher, Limits, PasswordCost, Role, app};
use septa_control::clock::ManualClock;
use septa_control::lifecycle::{PolicyService, Publisher, ServiceConfig};

pub const DEMO: &str = include_str!("../../../configs/policies/demo.yaml");

/// The demo with one more allowed port, as a second version.
pub fn demo_v2() -> String {
    DEMO.replace(
        "ports: [443]\n    - name: hmi-to-plc",
        "ports: [443, 8443]\n    - name: hmi-to-plc",
    )
}

/// Accepts every table.
pub struct NullPublisher;

impl Publisher for NullPublisher {
    fn publish(&self, _: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        Ok(())
    }
}

pub struct Harness {
    pub tmp: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub app: Router,
    pub admin_password: String,
}

/// A response, its body parsed as JSON when it is JSON.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn field(&self) -> &str {
        self.body["errors"][0]["field"].as_str().unwrap_or("")
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self::with_options(|opts| opts.limits = limits)
    }

    /// A harness whose API options `edit` adjusts after the test defaults are set.
    pub fn with_options(edit: impl FnOnce(&mut ApiOptions)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let svc = PolicyService::open(
            ServiceConfig::new(tmp.path()),
            DynPublisher(Arc::new(NullPublisher)),
            clock.clone(),
        )
        .unwrap();
        let mut opts = ApiOptions::new(tmp.path());
        opts.password_cost = PasswordCost::insecure_fast_for_tests();
        edit(&mut opts);
        let (state, pw) = AppState::new(svc, clock.clone(), opts).unwrap();
        let app = app(state.clone());
        Harness {
            tmp,
            clock,
            state,
            app,
            admin_password: pw.expect("first start creates the admin"),
        }
    }

    /// A bearer token for `role` (created directly in the store, not through the API).
    pub fn token(&self, role: Role) -> String {
        let secret = format!("septa_test_{}", role.as_str());
        let info = TokenInfo {
            id: format!("test-{}", role.as_str()),
            role,
            created_by: "test".into(),
            created_ms: 0,
            expires_ms: None,
        };
        self.state
            .auth
            .insert_token(info, &secret, || Ok(()))
            .unwrap();
        secret
    }

    /// Number of the last audit record.
    pub fn audit_head(&self) -> u64 {
        self.state
            .core
            .run_blocking(|svc| svc.audit_log().head().seq)
            .unwrap()
    }

    /// Sends a request; reads the body unless it is an event stream.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let is_stream = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let raw = if is_stream {
            Vec::new()
        } else {
            res.into_body().collect().await.unwrap().to_bytes().to_vec()
        };
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    /// A request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, uri, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    /// Commits `policy` (YAML) as `token`, with `If-Match: *`.
    pub async fn commit(&self, token: &str, policy: &str, confirm_s: Option<u32>) -> Reply {
        let mut body = serde_json::json!({"policy": policy, "reason": "test commit"});
        if let Some(s) = confirm_s {
            body["confirm_within_s"] = s.into();
        }
        self.call_with(
            Method::POST,
            "/api/v1/policy/commit",
            Some(token),
            Some(body),
            &[("if-match", "*")],
        )
        .await
    }
}

/// An anomaly report as the inference thread would push it.
pub fn anomaly() -> septa_control::api::anomalies::NewAnomaly {
    use septa_control::api::anomalies::{AnomalyFlow, FeatureContribution, NewAnomaly};
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
        score: 0.9,
        threshold: 0.5,
        model_id: "test-model".into(),
        model_hash: "00".into(),
        summary: "test".into(),
        explanation: vec![FeatureContribution {
            feature: "timing".into(),
            contribution: 1.0,
            text: "test".into(),
        }],
    }
}

/// Writes a small flow history (clients of 10.1.0.0/24 using a web server on 10.2.0.10) into
/// the harness's data directory, for the recommendation routes.
pub fn seed_history(h: &Harness) {
    use septa_control::history::{FlowHistory, FlowVerdict, HistoryConfig, ObservedFlow};
    let mut hist = FlowHistory::open(h.tmp.path(), HistoryConfig::default()).unwrap();
    let batch: Vec<ObservedFlow> = (1..=4u8)
        .map(|c| ObservedFlow {
            ts_ms: 500_000,
            src: std::net::IpAddr::from([10, 1, 0, c]),
            dst: std::net::IpAddr::from([10, 2, 0, 10]),
            proto: 6,
            dport: 443,
            l7: String::new(),
            verdict: FlowVerdict::WouldDeny,
            rule: u32::MAX,
            revision: "none".into(),
            flows: 1,
            packets: 1,
            bytes: 60,
        })
        .collect();
    hist.ingest(&batch).unwrap();
}
