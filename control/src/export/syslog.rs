//! Syslog (RFC 5424) export of audit records and alerts, as CEF or JSON, over UDP (one message
//! per datagram, RFC 5426) or TCP (octet-counting framing, RFC 6587 §3.4.1).
//!
//! Header: `<PRI>1 TIMESTAMP HOSTNAME septa - MSGID [septa@32473 seq=".." hash=".."] MSG`, with
//! facility 13 (log audit) for audit records and 14 (log alert) for alerts. The structured data
//! carries the audit record's sequence number and hash so a receiver can match a message to
//! the signed log. TLS (RFC 5425) is not implemented yet.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ExportError, rfc3339_ms};
use crate::audit::Record;

/// The message format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// ArcSight Common Event Format.
    Cef,
    /// The record as one JSON object.
    Json,
}

/// The transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    /// One message per datagram.
    Udp,
    /// Octet-counted frames on one connection.
    Tcp,
}

/// An alert worth sending (anomaly detector, policy violations).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// When (Unix ms).
    pub ts_ms: i64,
    /// Short kind, e.g. `anomaly`.
    pub kind: String,
    /// 0 (lowest) ..= 10 (highest), CEF style.
    pub severity: u8,
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// What and why.
    pub message: String,
}

fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn sd_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The MSG part of an audit record.
pub fn audit_message(r: &Record, format: SyslogFormat) -> String {
    match format {
        SyslogFormat::Json => serde_json::to_string(r).unwrap_or_default(),
        SyslogFormat::Cef => {
            let sev = if r.result == "ok" { 3 } else { 6 };
            format!(
                "CEF:0|Septa|Septa gateway|{}|{}|{}|{sev}|rt={} suser={} act={} cs1Label=object cs1={} outcome={} reason={} externalId={} cs2Label=recordHash cs2={} msg={}",
                version(),
                cef_header(&r.action),
                cef_header(&r.action),
                r.ts_ms,
                cef_value(&r.actor.name),
                cef_value(&r.action),
                cef_value(&r.object),
                cef_value(&r.result),
                cef_value(&r.reason),
                r.seq,
                r.hash,
                cef_value(&r.detail),
            )
        }
    }
}

/// The MSG part of an alert.
pub fn alert_message(a: &Alert, format: SyslogFormat) -> String {
    match format {
        SyslogFormat::Json => serde_json::to_string(a).unwrap_or_default(),
        SyslogFormat::Cef => format!(
            "CEF:0|Septa|Septa gateway|{}|{}|{}|{}|rt={} src={} dst={} msg={}",
            version(),
            cef_header(&a.kind),
            cef_header(&a.kind),
            a.severity.min(10),
            a.ts_ms,
            cef_value(&a.src),
            cef_value(&a.dst),
            cef_value(&a.message),
        ),
    }
}

/// A whole RFC 5424 line (no trailing newline).
pub fn frame(
    facility: u8,
    severity: u8,
    ts_ms: i64,
    hostname: &str,
    msgid: &str,
    sd: &[(&str, String)],
    msg: &str,
) -> String {
    let pri = u16::from(facility) * 8 + u16::from(severity.min(7));
    let host = if hostname.is_empty() { "-" } else { hostname };
    let sd = if sd.is_empty() {
        "-".to_owned()
    } else {
        let params: Vec<String> = sd
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", sd_value(v)))
            .collect();
        format!("[septa@32473 {}]", params.join(" "))
    };
    format!(
        "<{pri}>1 {} {host} septa - {msgid} {sd} {msg}",
        rfc3339_ms(ts_ms)
    )
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// Sends audit records and alerts to one syslog receiver.
pub struct SyslogExporter {
    conn: Conn,
    target: SocketAddr,
    format: SyslogFormat,
    hostname: String,
}

impl SyslogExporter {
    /// Connects (TCP) or binds (UDP).
    pub fn new(
        target: SocketAddr,
        transport: SyslogTransport,
        format: SyslogFormat,
        hostname: &str,
    ) -> Result<Self, ExportError> {
        let conn = match transport {
            SyslogTransport::Udp => {
                let bind = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                Conn::Udp(UdpSocket::bind(bind).map_err(|e| ExportError::io("binding UDP", e))?)
            }
            SyslogTransport::Tcp => {
                let s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                    .map_err(|e| ExportError::io("connecting to syslog", e))?;
                s.set_write_timeout(Some(Duration::from_secs(5)))
                    .map_err(|e| ExportError::io("configuring syslog socket", e))?;
                Conn::Tcp(s)
            }
        };
        Ok(SyslogExporter {
            conn,
            target,
            format,
            hostname: hostname.to_owned(),
        })
    }

    fn send(&mut self, line: &str) -> Result<(), ExportError> {
        match &mut self.conn {
            Conn::Udp(s) => s
                .send_to(line.as_bytes(), self.target)
                .map(|_| ())
                .map_err(|e| ExportError::io("sending syslog", e)),
            Conn::Tcp(s) => s
                .write_all(format!("{} {line}", line.len()).as_bytes())
                .map_err(|e| ExportError::io("sending syslog", e)),
        }
    }

    /// Sends one audit record (facility 13, notice; warning when refused or failed).
    pub fn audit(&mut self, r: &Record) -> Result<(), ExportError> {
        let severity = if r.result == "ok" { 5 } else { 4 };
        let line = frame(
            13,
            severity,
            r.ts_ms,
            &self.hostname,
            "audit",
            &[("seq", r.seq.to_string()), ("hash", r.hash.clone())],
            &audit_message(r, self.format),
        );
        self.send(&line)
    }

    /// Sends one alert (facility 14; severity from the alert's 0..=10 scale).
    pub fn alert(&mut self, a: &Alert) -> Result<(), ExportError> {
        let severity = match a.severity {
            9.. => 1,
            7..=8 => 2,
            5..=6 => 3,
            3..=4 => 4,
            _ => 5,
        };
        let line = frame(
            14,
            severity,
            a.ts_ms,
            &self.hostname,
            "alert",
            &[("kind", a.kind.clone())],
            &alert_message(a, self.format),
        );
        self.send(&line)
    }
}
