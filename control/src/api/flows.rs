//! Flow records: recent flows (filterable) and a live stream over server-sent events.
//!
//! The data comes from a [`FlowSource`] the composition root supplies. [`FlowStore`] is the
//! real one: a bounded in-memory ring of the most recent records (oldest evicted first, counted)
//! with a sequence number per record for cursor paging, and a broadcast feed for the live
//! stream. The composition root pushes records into it ([`FlowStore::push`]) from the thread
//! that drains the data plane's event rings, never from a worker. [`NoFlows`] (no data plane
//! attached) returns no records and a stream that stays open with keep-alives only.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
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

/// Which data-plane event a [`FlowRecord`] reports, and so what its counters mean. A flow's
/// `packets` and `bytes` are reported once: summing its `update` and `end` records gives its
/// totals, and summing the records of a time window gives the traffic reported in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// The flow was admitted (its first packet): nothing counted yet, `packets` and `bytes` are
    /// 0; its traffic comes in its `update` and `end` records.
    Start,
    /// The flow is still open and reported its running totals: when its TCP connection closed
    /// (FIN or RST), and periodically (`dataplane.flow_update_interval`, default 10 s) while it
    /// carries traffic. `packets` and `bytes` are what it carried since its previous report;
    /// `total_packets` and `total_bytes` its totals so far.
    Update,
    /// The flow left the flow table (idle timeout, or the lingering after a FIN/RST close, e.g.
    /// TCP's 120 s TIME_WAIT): `packets` and `bytes` are what it carried since its last
    /// `update` (its whole traffic if it had none), `total_packets` and `total_bytes` its
    /// totals; both directions summed.
    End,
    /// A refused (or, in monitor mode, would-be refused) packet: one record per flow and
    /// second, whose `packets` and `bytes` are the refused packets since the flow's previous
    /// deny record (this one included).
    Deny,
}

impl FlowKind {
    /// Whether records of this kind carry traffic counters (`false`: the flow's traffic is
    /// reported by a later record).
    pub const fn counted(self) -> bool {
        !matches!(self, FlowKind::Start)
    }
}

/// One flow as the data plane reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FlowRecord {
    /// When it happened (Unix ms): a `start`'s first packet; the last packet an `update` or
    /// `end` counts; a `deny`'s refused packet.
    pub ts_ms: i64,
    /// What this record reports: a flow's `start` (no counters yet), an `update` (traffic since
    /// its previous report, the flow still open), its `end` (traffic since its last update) or
    /// a `deny`. Summing a flow's records gives its totals once it has ended.
    pub kind: FlowKind,
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
    /// Packets this record reports (see `kind`): 0 on a `start` record, those since the
    /// flow's previous report on an `update` or `end` record, the refused ones since the
    /// previous deny record on a `deny` record.
    pub packets: u64,
    /// IP bytes this record reports (see `kind`): 0 on a `start` record (not yet counted, not
    /// "no traffic"), those since the flow's previous report on an `update` or `end` record,
    /// those of the refused packets on a `deny` record.
    pub bytes: u64,
    /// The flow's packets so far on an `update` or `end` record (both directions); 0 otherwise.
    pub total_packets: u64,
    /// The flow's IP bytes so far on an `update` or `end` record (both directions); 0 otherwise.
    pub total_bytes: u64,
    /// The deciding clause in words (`conduit hmi-to-plc (hmi → plc): tcp/502 …`, or `default
    /// (no rule matched)`), resolved when the record is made; empty when the revision's
    /// compiled policy is not known.
    pub clause: String,
    /// L7 protocol and function label (`modbus`, `modbus write_single_register`) when an L7
    /// conduit decided or the data plane reported one; empty otherwise.
    pub l7: String,
    /// Why a function-code conduit refused the flow, from the data plane's L7 reason code
    /// (`modbus function 6 (write_single_register) not allowed`); empty otherwise.
    pub l7_reason: String,
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
    /// Records made at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Records made at or before this time (Unix ms).
    pub until: Option<i64>,
}

impl FlowFilter {
    /// Whether `r` passes the filter.
    pub fn matches(&self, r: &FlowRecord) -> bool {
        self.src.is_none_or(|a| r.src == a.to_string())
            && self.dst.is_none_or(|a| r.dst == a.to_string())
            && self.proto.is_none_or(|p| r.proto == p)
            && self.port.is_none_or(|p| r.dport == p)
            && self.action.as_ref().is_none_or(|a| &r.action == a)
            && self.since.is_none_or(|t| r.ts_ms >= t)
            && self.until.is_none_or(|t| r.ts_ms <= t)
    }
}

/// Supplies flow records; implemented by the composition root over the data plane's rings.
pub trait FlowSource: Send + Sync + 'static {
    /// The most recent flows that pass `filter`, newest first, at most `limit`.
    fn recent(&self, filter: &FlowFilter, limit: usize) -> Vec<FlowRecord>;
    /// A live feed of new flow records; `None` when there is no live source.
    fn subscribe(&self) -> Option<broadcast::Receiver<FlowRecord>>;
    /// One page, newest first: records older than the cursor `before` (all when `None`) that
    /// pass `filter`, at most `limit`, and the cursor of the next page (`None`: no more). The
    /// default pages only once (sources without sequence numbers).
    fn page(&self, filter: &FlowFilter, before: Option<u64>, limit: usize) -> FlowSlice {
        FlowSlice {
            items: if before.is_none() {
                self.recent(filter, limit)
            } else {
                Vec::new()
            },
            next: None,
        }
    }
}

/// One page from [`FlowSource::page`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowSlice {
    /// Newest first.
    pub items: Vec<FlowRecord>,
    /// Cursor of the next (older) page.
    pub next: Option<u64>,
}

/// The recent-flows store: a bounded ring (most recent `capacity` records) plus a live feed.
/// Records carry a sequence number (1, 2, ...) used as the paging cursor; a cursor that has
/// been evicted meanwhile simply continues with what is still held.
#[derive(Debug)]
pub struct FlowStore {
    ring: Mutex<Ring>,
    capacity: usize,
    live: broadcast::Sender<FlowRecord>,
    evicted: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    next_seq: u64,
    items: VecDeque<(u64, FlowRecord)>,
}

/// Records a live subscriber may fall behind by before it gets a `lagged` event.
const LIVE_BACKLOG: usize = 1024;

impl FlowStore {
    /// A store holding the most recent `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        FlowStore {
            ring: Mutex::new(Ring {
                next_seq: 1,
                items: VecDeque::with_capacity(capacity.min(1 << 16)),
            }),
            capacity,
            live: broadcast::channel(LIVE_BACKLOG).0,
            evicted: AtomicU64::new(0),
        }
    }

    /// Adds a record (evicting the oldest when full) and sends it to live subscribers.
    pub fn push(&self, r: FlowRecord) {
        {
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            if ring.items.len() == self.capacity {
                ring.items.pop_front();
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
            let seq = ring.next_seq;
            ring.next_seq += 1;
            ring.items.push_back((seq, r.clone()));
        }
        // No subscriber is not an error.
        let _ = self.live.send(r);
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .items
            .len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records evicted to make room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

impl FlowSource for FlowStore {
    fn recent(&self, filter: &FlowFilter, limit: usize) -> Vec<FlowRecord> {
        self.page(filter, None, limit).items
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<FlowRecord>> {
        Some(self.live.subscribe())
    }

    fn page(&self, filter: &FlowFilter, before: Option<u64>, limit: usize) -> FlowSlice {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let mut items = Vec::with_capacity(limit.min(1024));
        let mut last = None;
        let mut more = false;
        for (seq, r) in ring.items.iter().rev() {
            if before.is_some_and(|b| *seq >= b) || !filter.matches(r) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(r.clone());
            last = Some(*seq);
        }
        FlowSlice {
            items,
            next: if more { last } else { None },
        }
    }
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
    let since: Option<i64> = q.opt("since")?;
    let until: Option<i64> = q.opt("until")?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(Problem::bad_param("until", "must not be before since"));
    }
    Ok(FlowFilter {
        src: q.opt("src")?,
        dst: q.opt("dst")?,
        proto,
        port: q.opt("port")?,
        action,
        since,
        until,
    })
}

/// A page of flows.
#[derive(Serialize, ToSchema)]
pub struct FlowPage {
    /// Newest first.
    pub items: Vec<FlowRecord>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Recent flows, newest first (filter by `src`, `dst`, `proto`, `port`, `action` and the time
/// window `since`..=`until`; page with `cursor`).
#[utoipa::path(get, path = "/api/v1/flows", tag = "observation",
    params(("src" = Option<String>, Query), ("dst" = Option<String>, Query),
        ("proto" = Option<String>, Query), ("port" = Option<u16>, Query, maximum = 65535),
        ("action" = Option<String>, Query),
        ("since" = Option<i64>, Query, description = "records made at or after (Unix ms)"),
        ("until" = Option<i64>, Query, description = "records made at or before (Unix ms)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = FlowPage), (status = 400, body = Problem)))]
pub async fn recent(State(st): State<AppState>, q: QueryParams) -> Result<Response, Problem> {
    q.only(&[
        "src", "dst", "proto", "port", "action", "since", "until", "limit", "cursor",
    ])?;
    let filter = filter_of(&q)?;
    let before = match q.str("cursor") {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| Problem::bad_param("cursor", "not a cursor from next_cursor"))?,
        ),
    };
    let limit: usize = q.opt("limit")?.unwrap_or(100);
    if limit == 0 || limit > st.limits.max_page {
        return Err(Problem::bad_param(
            "limit",
            format!("must be between 1 and {}", st.limits.max_page),
        ));
    }
    let src = st.flows.clone();
    let slice = tokio::task::spawn_blocking(move || src.page(&filter, before, limit))
        .await
        .map_err(|e| Problem::internal("reading flows", &e))?;
    Ok(Json(FlowPage {
        items: slice.items,
        next_cursor: slice.next.map(|n| n.to_string()),
    })
    .into_response())
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
            kind: FlowKind::End,
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
            total_packets: 1,
            total_bytes: 60,
            clause: String::new(),
            l7: String::new(),
            l7_reason: String::new(),
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
        let mut late = rec(502, "deny");
        late.ts_ms = 5_000;
        let window = |since, until| FlowFilter {
            since,
            until,
            ..FlowFilter::default()
        };
        assert!(
            window(Some(5_000), Some(5_000)).matches(&late),
            "bounds included"
        );
        assert!(!window(Some(5_001), None).matches(&late));
        assert!(!window(None, Some(4_999)).matches(&late));
        assert!(window(None, Some(i64::MAX)).matches(&late));
    }

    #[test]
    fn store_is_bounded_newest_first_and_pages_with_a_cursor() {
        let store = FlowStore::new(5);
        let mut live = store.subscribe().unwrap();
        for port in 1..=7 {
            store.push(rec(port, if port % 2 == 0 { "deny" } else { "allow" }));
        }
        assert_eq!(store.len(), 5);
        assert_eq!(store.evicted(), 2);
        let all = FlowFilter::default();
        let ports = |v: &[FlowRecord]| v.iter().map(|r| r.dport).collect::<Vec<_>>();
        assert_eq!(ports(&store.recent(&all, 100)), [7, 6, 5, 4, 3]);
        let p1 = store.page(&all, None, 2);
        assert_eq!(ports(&p1.items), [7, 6]);
        let p2 = store.page(&all, p1.next, 2);
        assert_eq!(ports(&p2.items), [5, 4]);
        let p3 = store.page(&all, p2.next, 2);
        assert_eq!(ports(&p3.items), [3]);
        assert_eq!(p3.next, None, "last page");
        let deny = FlowFilter {
            action: Some("deny".into()),
            ..FlowFilter::default()
        };
        assert_eq!(ports(&store.recent(&deny, 100)), [6, 4]);
        let d1 = store.page(&deny, None, 1);
        assert_eq!(ports(&store.page(&deny, d1.next, 1).items), [4]);
        // The live feed got every record, evicted ones included.
        let got: Vec<u16> = (0..7).map(|_| live.try_recv().unwrap().dport).collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7]);
    }
}
