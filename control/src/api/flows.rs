//! Flow records: recent flows (filterable) and a live stream over server-sent events.
//!
//! The data comes from a [`FlowSource`] the composition root supplies. The data plane's event
//! rings arrive in a later issue; until then [`NoFlows`] is a stub that returns no records and a
//! stream that stays open with keep-alives and never carries an event. It invents nothing.

use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::AppState;
use super::problem::{Problem, QueryParams};

/// One flow as the data plane reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FlowRecord {
    /// When the record was made (Unix ms).
    pub ts_ms: i64,
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// IP protocol number.
    pub proto: u8,
    /// Source port (ICMP: type).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// `allow`, `deny` or `inspect`.
    pub action: String,
    /// `enforce` or `monitor`.
    pub mode: String,
    /// Deciding rule.
    pub rule: u32,
    /// Content hash of the deciding revision.
    pub revision: String,
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
}

/// Which flows to return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Source address.
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: Option<IpAddr>,
    /// Protocol number.
    pub proto: Option<u8>,
    /// Destination port.
    pub port: Option<u16>,
    /// Action.
    pub action: Option<String>,
}

impl FlowFilter {
    /// Whether `r` passes the filter.
    pub fn matches(&self, r: &FlowRecord) -> bool {
        self.src.is_none_or(|a| r.src == a.to_string())
            && self.dst.is_none_or(|a| r.dst == a.to_string())
            && self.proto.is_none_or(|p| r.proto == p)
            && self.port.is_none_or(|p| r.dport == p)
            && self.action.as_ref().is_none_or(|a| &r.action == a)
    }
}

/// Supplies flow records; implemented by the composition root over the data plane's rings.
pub trait FlowSource: Send + Sync + 'static {
    /// The most recent flows that pass `filter`, newest first, at most `limit`.
    fn recent(&self, filter: &FlowFilter, limit: usize) -> Vec<FlowRecord>;
    /// A live feed of new flow records; `None` when there is no live source.
    fn subscribe(&self) -> Option<broadcast::Receiver<FlowRecord>>;
}

/// **Stub** flow source, used until the data plane's event rings exist: no records, no live
/// feed. Never returns made-up data.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFlows;

impl FlowSource for NoFlows {
    fn recent(&self, _: &FlowFilter, _: usize) -> Vec<FlowRecord> {
        Vec::new()
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<FlowRecord>> {
        None
    }
}

/// Flow routes (under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/flows", get(recent))
        .route("/flows/stream", get(live))
}

fn filter_of(q: &QueryParams) -> Result<FlowFilter, Problem> {
    let proto = match q.str("proto") {
        None => None,
        Some("tcp") => Some(6),
        Some("udp") => Some(17),
        Some("icmp") => Some(1),
        Some("icmpv6") => Some(58),
        Some(_) => Some(q.req::<u8>("proto")?),
    };
    let action = match q.str("action") {
        None => None,
        Some(a @ ("allow" | "deny" | "inspect")) => Some(a.to_owned()),
        Some(_) => {
            return Err(Problem::bad_param(
                "action",
                "must be allow, deny or inspect",
            ));
        }
    };
    Ok(FlowFilter {
        src: q.opt("src")?,
        dst: q.opt("dst")?,
        proto,
        port: q.opt("port")?,
        action,
    })
}

/// A page of flows.
#[derive(Serialize, ToSchema)]
pub struct FlowPage {
    /// Newest first.
    pub items: Vec<FlowRecord>,
}

/// Recent flows, newest first (filter by `src`, `dst`, `proto`, `port`, `action`).
#[utoipa::path(get, path = "/api/v1/flows", tag = "observation",
    params(("src" = Option<String>, Query), ("dst" = Option<String>, Query),
        ("proto" = Option<String>, Query), ("port" = Option<u16>, Query, maximum = 65535),
        ("action" = Option<String>, Query), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000)),
    responses((status = 200, body = FlowPage), (status = 400, body = Problem)))]
pub async fn recent(State(st): State<AppState>, q: QueryParams) -> Result<Response, Problem> {
    q.only(&["src", "dst", "proto", "port", "action", "limit"])?;
    let filter = filter_of(&q)?;
    let limit: usize = q.opt("limit")?.unwrap_or(100);
    if limit == 0 || limit > st.limits.max_page {
        return Err(Problem::bad_param(
            "limit",
            format!("must be between 1 and {}", st.limits.max_page),
        ));
    }
    let src = st.flows.clone();
    let items = tokio::task::spawn_blocking(move || src.recent(&filter, limit))
        .await
        .map_err(|e| Problem::internal("reading flows", &e))?;
    Ok(Json(FlowPage { items }).into_response())
}

/// New flows as they are reported, as server-sent events (`event: flow`, JSON data; `event:
/// lagged` when the stream fell behind and records were skipped).
#[utoipa::path(get, path = "/api/v1/flows/stream", tag = "observation",
    params(("src" = Option<String>, Query), ("dst" = Option<String>, Query),
        ("proto" = Option<String>, Query), ("port" = Option<u16>, Query, maximum = 65535),
        ("action" = Option<String>, Query)),
    responses((status = 200, content_type = "text/event-stream", description = "flow events"),
        (status = 503, body = Problem)))]
pub async fn live(State(st): State<AppState>, q: QueryParams) -> Result<Response, Problem> {
    q.only(&["src", "dst", "proto", "port", "action"])?;
    let filter = filter_of(&q)?;
    let permit = st.stream_permit().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-streams",
            "Too many live streams",
            "the live-stream limit is reached; retry later",
        )
    })?;
    let events: BoxStream<'static, Result<Event, Infallible>> = match st.flows.subscribe() {
        // No live source: keep the connection (and its permit) open with keep-alives only.
        None => stream::unfold(permit, |permit| async move {
            std::future::pending::<()>().await;
            drop(permit);
            None
        })
        .boxed(),
        Some(rx) => stream::unfold(
            (rx, filter, permit),
            |(mut rx, filter, permit)| async move {
                loop {
                    match rx.recv().await {
                        Ok(r) if filter.matches(&r) => {
                            let data = serde_json::to_string(&r).unwrap_or_default();
                            let ev = Event::default().event("flow").data(data);
                            return Some((Ok(ev), (rx, filter, permit)));
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let ev = Event::default().event("lagged").data(n.to_string());
                            return Some((Ok(ev), (rx, filter, permit)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )
        .boxed(),
    };
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(dport: u16, action: &str) -> FlowRecord {
        FlowRecord {
            ts_ms: 1,
            src: "10.0.0.1".into(),
            dst: "10.0.0.2".into(),
            proto: 6,
            sport: 40000,
            dport,
            action: action.into(),
            mode: "enforce".into(),
            rule: 1,
            revision: "x".into(),
            packets: 1,
            bytes: 60,
        }
    }

    #[test]
    fn filter_matches_each_field() {
        let f = FlowFilter {
            port: Some(502),
            action: Some("deny".into()),
            src: Some("10.0.0.1".parse().unwrap()),
            ..FlowFilter::default()
        };
        assert!(f.matches(&rec(502, "deny")));
        assert!(!f.matches(&rec(80, "deny")));
        assert!(!f.matches(&rec(502, "allow")));
        assert!(FlowFilter::default().matches(&rec(1, "allow")));
    }
}
