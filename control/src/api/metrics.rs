//! Prometheus `/metrics`, `/healthz`, `/readyz` and the JSON `/api/v1/counters`.
//!
//! Data-plane counters arrive through [`CountersSource`], which the composition root implements
//! over the workers' per-core counters: [`CountersSource::snapshot`] sums them when called, i.e.
//! once per scrape, never per packet. Names follow Prometheus conventions: `septa_` prefix, base
//! units, `_total` on counters.

use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::problem::Problem;

/// Counters of one port, summed over cores.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PortCounters {
    /// Port name as configured.
    pub port: String,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// Packets dropped for one reason (the data plane's drop-reason table), summed over cores.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DropCount {
    /// The drop reason's stable name.
    pub reason: String,
    /// Packets dropped.
    pub packets: u64,
}

/// The data plane's counters at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct CountersSnapshot {
    /// Per port.
    pub ports: Vec<PortCounters>,
    /// Per drop reason (every reason, zeros included).
    pub drops: Vec<DropCount>,
}

/// Supplies data-plane counters; implemented by the composition root.
pub trait CountersSource: Send + Sync + 'static {
    /// Sums the per-core counters now. Called once per scrape or API read.
    fn snapshot(&self) -> CountersSnapshot;
}

/// A source for when no data plane is attached (tests, `septa` without ports): no ports, no
/// drop reasons. It never invents numbers.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCounters;

impl CountersSource for NoCounters {
    fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot::default()
    }
}

struct DataplaneCollector(Arc<dyn CountersSource>);

impl fmt::Debug for DataplaneCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataplaneCollector")
    }
}

type PortField = fn(&PortCounters) -> u64;

impl Collector for DataplaneCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snap = self.0.snapshot();
        let fields: [(&str, &str, PortField); 4] = [
            ("port_rx_packets", "Packets received per port.", |p| {
                p.rx_packets
            }),
            ("port_rx_bytes", "Bytes received per port.", |p| p.rx_bytes),
            ("port_tx_packets", "Packets sent per port.", |p| {
                p.tx_packets
            }),
            ("port_tx_bytes", "Bytes sent per port.", |p| p.tx_bytes),
        ];
        for (name, help, get) in fields {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for p in &snap.ports {
                let labels = [("port", p.port.as_str())];
                let mut fam = m.encode_family(&labels)?;
                fam.encode_counter::<NoLabelSet, _, u64>(&get(p), None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "dropped_packets",
            "Packets dropped, by reason.",
            None,
            MetricType::Counter,
        )?;
        for d in &snap.drops {
            let labels = [("reason", d.reason.as_str())];
            let mut fam = m.encode_family(&labels)?;
            fam.encode_counter::<NoLabelSet, _, u64>(&d.packets, None)?;
        }
        Ok(())
    }
}

/// The API's own metrics plus the data-plane collector.
pub struct ApiMetrics {
    registry: Registry,
    denied: Counter,
}

impl fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl ApiMetrics {
    /// A registry with the `septa_` prefix over `counters`.
    pub fn new(counters: Arc<dyn CountersSource>) -> Self {
        let mut registry = Registry::with_prefix("septa");
        let denied = Counter::default();
        registry.register(
            "api_access_denied",
            "API requests refused by authentication or authorization.",
            denied.clone(),
        );
        registry.register_collector(Box::new(DataplaneCollector(counters)));
        ApiMetrics { registry, denied }
    }

    /// Adds the workers' and the inference thread's health (`septa_health_status`,
    /// `septa_worker_*`, `septa_inference_*`).
    pub fn with_health(mut self, health: Arc<super::health::HealthTracker>) -> Self {
        self.registry
            .register_collector(Box::new(super::health::HealthCollector(health)));
        self
    }

    /// Counts one refused request.
    pub fn denied(&self) {
        self.denied.inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `/metrics`, `/healthz`, `/readyz`, `/api/v1/counters`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `/api/v1/counters` (nested under `/api/v1`).
pub fn counters_router() -> Router<AppState> {
    Router::new().route("/counters", get(counters))
}

/// Prometheus metrics (OpenMetrics text): `septa_` prefix, base units, `_total` counters.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub async fn prometheus(State(st): State<AppState>) -> Response {
    let metrics = Arc::clone(&st.metrics);
    match tokio::task::spawn_blocking(move || metrics.encode()).await {
        Ok(Ok(text)) => {
            let mut res = text.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            res
        }
        Ok(Err(e)) => Problem::internal("encoding metrics", &e).into_response(),
        Err(e) => Problem::internal("encoding metrics", &e).into_response(),
    }
}

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// Readiness.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// Whether the policy core answers.
    pub ready: bool,
    /// Whether a policy is enforced (without one the data plane drops everything).
    pub policy_running: bool,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the policy core answers (its lock is free and its store readable).
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    match st
        .core
        .run(|svc| svc.state().map(|s| s.running.is_some()))
        .await
    {
        Ok(Ok(running)) => Json(Readiness {
            ready: true,
            policy_running: running,
        })
        .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                ready: false,
                policy_running: false,
            }),
        )
            .into_response(),
    }
}

/// The data plane's counters (summed over cores at call time).
#[utoipa::path(get, path = "/api/v1/counters", tag = "observation",
    responses((status = 200, body = CountersSnapshot)))]
pub async fn counters(State(st): State<AppState>) -> Response {
    let src = Arc::clone(&st.counters);
    match tokio::task::spawn_blocking(move || src.snapshot()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => Problem::internal("reading counters", &e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl CountersSource for Fixed {
        fn snapshot(&self) -> CountersSnapshot {
            CountersSnapshot {
                ports: vec![PortCounters {
                    port: "p0".into(),
                    rx_packets: 3,
                    rx_bytes: 180,
                    tx_packets: 2,
                    tx_bytes: 120,
                }],
                drops: vec![DropCount {
                    reason: "policy_deny".into(),
                    packets: 1,
                }],
            }
        }
    }

    #[test]
    fn exposition_uses_prefix_base_units_and_total() {
        let m = ApiMetrics::new(Arc::new(Fixed));
        m.denied();
        let text = m.encode().unwrap();
        for line in [
            "septa_api_access_denied_total 1",
            "septa_port_rx_packets_total{port=\"p0\"} 3",
            "septa_port_rx_bytes_total{port=\"p0\"} 180",
            "septa_port_tx_bytes_total{port=\"p0\"} 120",
            "septa_dropped_packets_total{reason=\"policy_deny\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
