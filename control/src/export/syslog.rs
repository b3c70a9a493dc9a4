//! Syslog (RFC 5424) export of audit records and alerts, as CEF or JSON, over UDP (one message
//! per datagram, RFC 5426), TCP (octet-counting framing, RFC 6587 §3.4.1) or TLS (RFC 5425: the
//! same octet-counted frames inside TLS 1.2/1.3, rustls; the receiver's certificate is checked
//! against `ca_file`, an optional client certificate authenticates the appliance).
//!
//! Header: `<PRI>1 TIMESTAMP HOSTNAME septa - MSGID [septa@PEN seq=".." hash=".."] MSG`, with
//! facility 13 (log audit) for audit records and 14 (log alert) for alerts. `PEN` is
//! `[export.syslog] enterprise_number`, else `[export.ipfix] enterprise_number`, else 32473
//! (RFC 5612's documentation number, until the project registers one). The structured data
//! carries the audit record's sequence number and hash so a receiver can match a message to
//! the signed log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde::{Deserialize, Serialize};

use super::{ExportError, SyslogConfig, rfc3339_ms};
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
    /// Octet-counted frames on one TLS connection (RFC 5425).
    Tls,
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

/// A whole RFC 5424 line (no trailing newline); the SD-ID is `septa@{pen}`.
#[allow(clippy::too_many_arguments)]
pub fn frame(
    pen: u32,
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
        format!("[septa@{pen} {}]", params.join(" "))
    };
    format!(
        "<{pri}>1 {} {host} septa - {msgid} {sd} {msg}",
        rfc3339_ms(ts_ms)
    )
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// The TLS side of `[export.syslog]`: trust anchors, optional client certificate, the name the
/// receiver's certificate must carry.
pub struct SyslogTls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

fn tls_err(key: &'static str, message: impl Into<String>) -> ExportError {
    ExportError::Config {
        key,
        message: message.into(),
    }
}

impl SyslogTls {
    /// Reads the files `cfg` names; every error names its `export.syslog.*` key.
    pub fn from_config(cfg: &SyslogConfig) -> Result<Self, ExportError> {
        let ca_path = cfg.ca_file.as_ref().ok_or_else(|| {
            tls_err(
                "export.syslog.ca_file",
                "transport \"tls\" needs the CA certificate(s) of the receiver (PEM)",
            )
        })?;
        let pem = |key: &'static str, path: &Path, e: rustls::pki_types::pem::Error| {
            tls_err(key, format!("{}: {e}", path.display()))
        };
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(ca_path)
            .map_err(|e| pem("export.syslog.ca_file", ca_path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem("export.syslog.ca_file", ca_path, e))?;
        if cas.is_empty() {
            return Err(tls_err(
                "export.syslog.ca_file",
                format!("{}: no CERTIFICATE in the file", ca_path.display()),
            ));
        }
        for c in cas {
            roots.add(c).map_err(|e| {
                tls_err(
                    "export.syslog.ca_file",
                    format!("{}: {e}", ca_path.display()),
                )
            })?;
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_err("export.syslog.transport", e.to_string()))?
                .with_root_certificates(roots);
        let config = match (&cfg.client_cert, &cfg.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| pem("export.syslog.client_cert", cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem("export.syslog.client_cert", cert, e))?;
                if chain.is_empty() {
                    return Err(tls_err(
                        "export.syslog.client_cert",
                        format!("{}: no CERTIFICATE in the file", cert.display()),
                    ));
                }
                let k = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| pem("export.syslog.client_key", key, e))?;
                builder
                    .with_client_auth_cert(chain, k)
                    .map_err(|e| tls_err("export.syslog.client_key", e.to_string()))?
            }
            (Some(_), None) => {
                return Err(tls_err(
                    "export.syslog.client_key",
                    "client_cert is set: the client_key (PEM) is needed too",
                ));
            }
            (None, Some(_)) => {
                return Err(tls_err(
                    "export.syslog.client_cert",
                    "client_key is set: the client_cert (PEM) is needed too",
                ));
            }
        };
        let server_name = match &cfg.server_name {
            Some(n) => ServerName::try_from(n.clone())
                .map_err(|e| tls_err("export.syslog.server_name", format!("{n:?}: {e}")))?,
            None => ServerName::IpAddress(cfg.target.ip().into()),
        };
        Ok(SyslogTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

impl Drop for SyslogExporter {
    /// TLS: ends the session with close_notify and reads what the receiver still sends (session
    /// tickets, its own close_notify) for up to a second; closing a socket with unread data
    /// makes the kernel reset the connection, and a reset can discard frames the receiver has
    /// not read yet.
    fn drop(&mut self) {
        if let Conn::Tls(s) = &mut self.conn {
            s.conn.send_close_notify();
            let _ = s.flush();
            let _ = s.sock.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = s.sock.shutdown(std::net::Shutdown::Write);
            let mut buf = [0u8; 4096];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

fn connect(target: SocketAddr) -> Result<TcpStream, ExportError> {
    let s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| ExportError::io("connecting to syslog", e))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| ExportError::io("configuring syslog socket", e))?;
    Ok(s)
}

/// Sends audit records and alerts to one syslog receiver.
pub struct SyslogExporter {
    conn: Conn,
    target: SocketAddr,
    format: SyslogFormat,
    hostname: String,
    /// Private enterprise number of the SD-ID.
    pen: u32,
}

impl SyslogExporter {
    /// Connects (TCP, TLS) or binds (UDP) as `[export.syslog]` says.
    pub fn from_config(cfg: &SyslogConfig, hostname: &str) -> Result<Self, ExportError> {
        let ex = match cfg.transport {
            SyslogTransport::Tls => {
                let tls = SyslogTls::from_config(cfg)?;
                Self::new_tls(cfg.target, &tls, cfg.format, hostname)
            }
            t => Self::new(cfg.target, t, cfg.format, hostname),
        }?;
        Ok(ex.with_enterprise_number(cfg.enterprise_number()))
    }

    /// Names `pen` in the SD-ID (`[septa@PEN ...]`) instead of [`super::ipfix::SEPTA_PEN`].
    pub fn with_enterprise_number(mut self, pen: std::num::NonZeroU32) -> Self {
        self.pen = pen.get();
        self
    }

    /// Connects over TLS and completes the handshake (a certificate the CA does not vouch for
    /// fails here, not on the first message).
    pub fn new_tls(
        target: SocketAddr,
        tls: &SyslogTls,
        format: SyslogFormat,
        hostname: &str,
    ) -> Result<Self, ExportError> {
        let mut tcp = connect(target)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| ExportError::io("configuring syslog socket", e))?;
        let mut conn = ClientConnection::new(Arc::clone(&tls.config), tls.server_name.clone())
            .map_err(|e| tls_err("export.syslog.server_name", e.to_string()))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| ExportError::io("TLS handshake with the syslog receiver", e))?;
        }
        Ok(SyslogExporter {
            conn: Conn::Tls(Box::new(StreamOwned::new(conn, tcp))),
            target,
            format,
            hostname: hostname.to_owned(),
            pen: super::ipfix::SEPTA_PEN,
        })
    }

    /// Connects (TCP) or binds (UDP); TLS needs [`SyslogExporter::from_config`].
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
            SyslogTransport::Tcp => Conn::Tcp(connect(target)?),
            SyslogTransport::Tls => {
                return Err(tls_err(
                    "export.syslog.ca_file",
                    "transport \"tls\" needs its certificates (SyslogExporter::from_config)",
                ));
            }
        };
        Ok(SyslogExporter {
            conn,
            target,
            format,
            hostname: hostname.to_owned(),
            pen: super::ipfix::SEPTA_PEN,
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
            Conn::Tls(s) => s
                .write_all(format!("{} {line}", line.len()).as_bytes())
                .and_then(|()| s.flush())
                .map_err(|e| ExportError::io("sending syslog over TLS", e)),
        }
    }

    /// Sends one audit record (facility 13, notice; warning when refused or failed).
    pub fn audit(&mut self, r: &Record) -> Result<(), ExportError> {
        let severity = if r.result == "ok" { 5 } else { 4 };
        let line = frame(
            self.pen,
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
            self.pen,
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
