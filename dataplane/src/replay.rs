//! The offline runtime: the same [`Worker`] code over the pcap backend.
//!
//! The capture is received on port 0, bridged to port 1, and what port 1 transmits is written
//! to the optional output pcap. An observer aggregates per-flow records (allocation is fine
//! here: this is never the DPDK path). Flow records are keyed by (flow key, verdict, rule-table
//! decision) and listed in order of first appearance, so output is deterministic. Under a rule
//! table each record names the deciding rule, its action and mode; the binary adds the policy
//! clause text (the data plane does not know clauses).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use septa_classifier::{Action, Family, FlowKey, Mode};
use serde::Serialize;

use crate::counters::Stats;
use crate::drop::DropReason;
use crate::error::ReplayError;
use crate::events::{self, EventCounts, EventDrain};
use crate::io::PortId;
use crate::io::pcap::{PCAP_PORTS, PcapIo};
use crate::parse::ParsedPacket;
use crate::worker::{
    Bridge, Decision, Observer, RuleDecision, StateConfig, Verdict, Worker, WorkerState,
};

/// Port the capture is received on.
pub const REPLAY_IN_PORT: PortId = 0;
/// Port whose transmissions are written to the output capture.
pub const REPLAY_OUT_PORT: PortId = 1;

/// Packets dropped under one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DropCount {
    /// Stable reason name.
    pub reason: DropReason,
    /// Packets.
    pub packets: u64,
}

/// Totals of a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Frames read from the input.
    pub packets_in: u64,
    /// Bytes read from the input.
    pub bytes_in: u64,
    /// Frames transmitted (written to the output, if any).
    pub packets_out: u64,
    /// Bytes transmitted.
    pub bytes_out: u64,
    /// ARP and other non-IP frames forwarded.
    pub non_ip_forwarded: u64,
    /// IP packets forwarded that a monitor-mode deny would have dropped (not drops).
    pub would_deny: u64,
    /// All drops.
    pub dropped: u64,
    /// Drops by reason (non-zero only, table order).
    pub drops: Vec<DropCount>,
}

/// One flow (IP packets with the same flow key and the same verdict).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// "ipv4" or "ipv6".
    pub family: &'static str,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol (upper-layer protocol for IPv6).
    pub proto: u8,
    /// Source port, or ICMP type.
    pub sport: u16,
    /// Destination port, or ICMP code.
    pub dport: u16,
    /// Outermost VLAN id (0 untagged).
    pub vlan: u16,
    /// Receiving port.
    pub in_port: u16,
    /// Packets.
    pub packets: u64,
    /// Bytes (frame lengths).
    pub bytes: u64,
    /// "forward" or "drop".
    pub verdict: &'static str,
    /// Why, when dropped.
    pub drop_reason: Option<DropReason>,
    /// The deciding rule id (rule tables only; `None` when the table's fallback decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// "allow", "deny" or "inspect", when a rule table decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// "enforce" or "monitor", when a rule table decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// The rule's back-reference to its policy clause (what the binary resolves into `clause`).
    #[serde(skip)]
    pub source: Option<u64>,
    /// The deciding policy clause, in words (filled in by whoever knows the policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clause: Option<String>,
}

impl FlowRecord {
    /// Why the flow got its verdict, in words, when a rule table decided it.
    pub fn explanation(&self) -> Option<String> {
        let action = self.action?;
        let outcome = match (action, self.mode) {
            ("allow", _) => "allowed",
            ("deny", Some("monitor")) => "would be denied (monitor mode, forwarded)",
            ("deny", _) => "denied",
            (_, Some("monitor")) => {
                "inspected by its L7 conduit: forwarded (monitor mode; refusals counted as would-deny)"
            }
            _ => match self.drop_reason {
                None => "allowed message by message by its L7 conduit",
                Some(DropReason::L7Denied) => {
                    "refused by its L7 conduit (a message it does not allow; the flow is blocked)"
                }
                Some(DropReason::L7Malformed) => {
                    "refused by its L7 conduit (a malformed message; the flow is blocked)"
                }
                Some(DropReason::L7Unavailable) => {
                    "needs L7 inspection, which is unavailable (fail closed)"
                }
                Some(_) => "dropped before its L7 conduit was consulted",
            },
        };
        let by = match (&self.clause, self.rule) {
            (Some(c), Some(r)) => format!("{c}, rule {r}"),
            (Some(c), None) => c.clone(),
            (None, Some(r)) => format!("rule {r}"),
            (None, None) => "the table's fallback".to_owned(),
        };
        Some(format!(
            "{outcome} by {by} ({action}/{})",
            self.mode.unwrap_or("enforce")
        ))
    }
}

/// What `septa replay` prints: a summary and the flows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Totals.
    pub summary: ReplaySummary,
    /// Per-flow records in order of first packet.
    pub flows: Vec<FlowRecord>,
    /// Flow and decision events the worker emitted, by kind (the flow table is flushed at the
    /// end, so every admitted flow has a start and an end).
    pub events: EventCounts,
    /// Messages function-code conduits inspected and refused, per protocol and function
    /// (non-zero only).
    pub l7: Vec<L7FunctionCount>,
}

/// Messages of one protocol function that function-code conduits inspected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct L7FunctionCount {
    /// Protocol name (`modbus`, `dnp3`, ...).
    pub proto: &'static str,
    /// Function code; `None` for refusals that name no function (malformed, wrong protocol).
    pub function: Option<u8>,
    /// Function name from the protocol's table.
    pub name: Option<&'static str>,
    /// Messages summarised.
    pub messages: u64,
    /// Messages refused (enforce: dropped; monitor: would-deny).
    pub denied: u64,
}

/// The non-zero entries of a worker's L7 counters, by protocol and function.
pub fn l7_function_counts(c: &crate::l7::L7Counters) -> Vec<L7FunctionCount> {
    let mut out = Vec::new();
    for p in septa_l7::L7Proto::ALL {
        let i = p as usize;
        for code in 0..=255u8 {
            let (m, d) = (
                c.messages[i][usize::from(code)],
                c.denied[i][usize::from(code)],
            );
            if m + d > 0 {
                out.push(L7FunctionCount {
                    proto: p.name(),
                    function: Some(code),
                    name: septa_l7::functions::lookup(p, code).map(|f| f.name),
                    messages: m,
                    denied: d,
                });
            }
        }
        if c.denied_other[i] > 0 {
            out.push(L7FunctionCount {
                proto: p.name(),
                function: None,
                name: None,
                messages: 0,
                denied: c.denied_other[i],
            });
        }
    }
    out
}

/// Aggregates per-flow records from the worker's observer calls.
#[derive(Debug, Default)]
pub struct FlowObserver {
    index: HashMap<FlowIndex, usize>,
    flows: Vec<(FlowIndex, u64, u64)>,
}

type FlowIndex = (FlowKey, Verdict, Option<RuleDecision>);

impl Observer for FlowObserver {
    fn packet(
        &mut self,
        _: PortId,
        len: usize,
        parsed: Option<&ParsedPacket>,
        verdict: Verdict,
        rule: Option<&RuleDecision>,
    ) {
        let Some(key) = parsed.and_then(ParsedPacket::flow_key) else {
            return;
        };
        let id = (*key, verdict, rule.copied());
        let flows = &mut self.flows;
        let i = *self.index.entry(id).or_insert_with(|| {
            flows.push((id, 0, 0));
            flows.len() - 1
        });
        flows[i].1 += 1;
        flows[i].2 += len as u64;
    }
}

impl FlowObserver {
    /// The flow records collected so far.
    pub fn records(&self) -> Vec<FlowRecord> {
        self.flows
            .iter()
            .map(|&((key, verdict, decided), packets, bytes)| FlowRecord {
                family: match key.family {
                    Family::V4 => "ipv4",
                    Family::V6 => "ipv6",
                },
                src: key.src_addr(),
                dst: key.dst_addr(),
                proto: key.proto,
                sport: key.sport,
                dport: key.dport,
                vlan: key.vlan,
                in_port: key.in_port,
                packets,
                bytes,
                verdict: match verdict {
                    Verdict::Forward => "forward",
                    Verdict::Drop(_) => "drop",
                },
                drop_reason: match verdict {
                    Verdict::Forward => None,
                    Verdict::Drop(r) => Some(r),
                },
                rule: decided.and_then(|d| d.rule).map(|r| r.0),
                action: decided.map(|d| match d.action {
                    Action::Allow => "allow",
                    Action::Deny => "deny",
                    Action::Inspect(_) => "inspect",
                }),
                mode: decided.map(|d| match d.mode {
                    Mode::Enforce => "enforce",
                    Mode::Monitor => "monitor",
                }),
                source: decided.and_then(|d| d.source).map(|s| s.0),
                clause: None,
            })
            .collect()
    }
}

impl ReplaySummary {
    /// Summary from a worker's stats.
    pub fn from_stats(stats: &Stats) -> Self {
        let port = |p: PortId| stats.ports.get(usize::from(p)).copied().unwrap_or_default();
        let (rx, tx) = (port(REPLAY_IN_PORT), port(REPLAY_OUT_PORT));
        ReplaySummary {
            packets_in: rx.rx_packets,
            bytes_in: rx.rx_bytes,
            packets_out: tx.tx_packets,
            bytes_out: tx.tx_bytes,
            non_ip_forwarded: stats.non_ip_forwarded,
            would_deny: stats.would_deny,
            dropped: stats.total_drops(),
            drops: stats
                .nonzero_drops()
                .map(|(reason, packets)| DropCount { reason, packets })
                .collect(),
        }
    }
}

/// Run `decision` over the capture `input` (pcap or pcapng, Ethernet), writing forwarded
/// frames to `output` if given. For a rule table, pass a [`Decision::Table`] reader of the cell
/// holding the compiled policy. The worker has the default [`StateConfig`].
pub fn replay(
    input: &Path,
    output: Option<&Path>,
    decision: Decision,
) -> Result<ReplayReport, ReplayError> {
    replay_with(input, output, decision, &StateConfig::default())
}

/// [`replay`] with the worker's connection state sized and timed by `state`. The worker's
/// clock is the capture's: before each burst it is set to the timestamp of the burst's first
/// frame (in microseconds), so flows age as they would have live, deterministically.
pub fn replay_with(
    input: &Path,
    output: Option<&Path>,
    decision: Decision,
    state: &StateConfig,
) -> Result<ReplayReport, ReplayError> {
    let mut io = PcapIo::open(input, output.map(|p| (p, REPLAY_OUT_PORT)))?;
    let bridge = Bridge::new(PCAP_PORTS, &[(REPLAY_IN_PORT, REPLAY_OUT_PORT)])?;
    let (sink, source) = events::ring(events::DEFAULT_RING_CAPACITY);
    let mut drain = EventDrain::new(vec![source]);
    let mut counts = EventCounts::default();
    let mut worker = Worker::with_state(bridge, decision, WorkerState::new(state, sink)?);
    let mut flows = FlowObserver::default();
    while let Some(ts) = io.next_timestamp() {
        worker.state_mut().set_now(ts.as_micros() as u64);
        worker.poll(&mut io, &mut flows);
        // One burst emits at most a few records per packet: the ring never fills between drains.
        drain.drain(usize::MAX, |_, ev| counts.add(&ev));
    }
    while worker.flush(1024) > 0 {
        drain.drain(usize::MAX, |_, ev| counts.add(&ev));
    }
    drain.drain(usize::MAX, |_, ev| counts.add(&ev));
    counts.lost = drain.lost();
    io.finish()?;
    let stats = Stats::collect([&**worker.counters()]);
    Ok(ReplayReport {
        summary: ReplaySummary::from_stats(&stats),
        flows: flows.records(),
        events: counts,
        l7: l7_function_counts(worker.state().l7().counters()),
    })
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        writeln!(
            f,
            "packets in   {:>10}  ({} bytes)",
            s.packets_in, s.bytes_in
        )?;
        writeln!(
            f,
            "packets out  {:>10}  ({} bytes)",
            s.packets_out, s.bytes_out
        )?;
        writeln!(f, "non-IP fwd   {:>10}", s.non_ip_forwarded)?;
        writeln!(f, "would deny   {:>10}", s.would_deny)?;
        writeln!(f, "dropped      {:>10}", s.dropped)?;
        for d in &s.drops {
            writeln!(f, "  {:<24} {:>10}", d.reason.as_str(), d.packets)?;
        }
        let e = &self.events;
        writeln!(
            f,
            "events       flow_start {} flow_end {} deny {} would_deny {} lost {}",
            e.flow_start, e.flow_end, e.deny, e.would_deny, e.lost
        )?;
        for c in &self.l7 {
            let what = match (c.function, c.name) {
                (Some(code), Some(name)) => format!("{} {code} ({name})", c.proto),
                (Some(code), None) => format!("{} {code}", c.proto),
                _ => format!("{} (malformed or other)", c.proto),
            };
            writeln!(
                f,
                "l7           {what:<44} messages {} refused {}",
                c.messages, c.denied
            )?;
        }
        writeln!(f, "flows        {:>10}", self.flows.len())?;
        for r in &self.flows {
            let verdict = match r.drop_reason {
                Some(reason) => format!("drop({reason})"),
                None => r.verdict.to_owned(),
            };
            let (src, dst) = match r.family {
                "ipv6" => (format!("[{}]", r.src), format!("[{}]", r.dst)),
                _ => (r.src.to_string(), r.dst.to_string()),
            };
            let endpoints = if matches!((r.family, r.proto), ("ipv4", 1) | ("ipv6", 58)) {
                format!(
                    "{src} -> {dst} proto {} type {} code {}",
                    r.proto, r.sport, r.dport
                )
            } else {
                format!("{src}:{} -> {dst}:{} proto {}", r.sport, r.dport, r.proto)
            };
            writeln!(
                f,
                "  {verdict:<22} {endpoints} vlan {} port {}  {} pkts {} bytes",
                r.vlan, r.in_port, r.packets, r.bytes
            )?;
            if let Some(why) = r.explanation() {
                writeln!(f, "      {why}")?;
            }
        }
        Ok(())
    }
}
