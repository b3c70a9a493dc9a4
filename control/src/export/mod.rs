//! Exports: flow records as IPFIX ([`ipfix`]) and as JSON lines ([`FlowLog`]), audit records
//! and alerts over syslog ([`syslog`]).
//!
//! Every export is off unless configured ([`ExportConfig::default`] configures none): data
//! residency means nothing observed leaves the appliance by default. Exporters run on control
//! threads, never on the data path; a failing receiver is an error for the caller to count,
//! never a reason to block a worker.

pub mod audit_tail;
pub mod ipfix;
pub mod syslog;

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::history::ObservedFlow;

pub use syslog::{SyslogFormat, SyslogTransport};

/// An export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A socket or file operation failed.
    #[error("export: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A setting is unusable (a certificate file, a missing companion key).
    #[error("{key}: {message}")]
    Config {
        /// The configuration key, e.g. `export.syslog.ca_file`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl ExportError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ExportError::Io {
            what: what.into(),
            source,
        }
    }
}

/// What to export where; every part optional and absent by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// IPFIX collector.
    #[serde(default)]
    pub ipfix: Option<IpfixConfig>,
    /// Syslog receiver.
    #[serde(default)]
    pub syslog: Option<SyslogConfig>,
    /// JSON-lines flow log.
    #[serde(default)]
    pub flow_log: Option<FlowLogConfig>,
}

/// IPFIX settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfixConfig {
    /// Collector address (UDP).
    pub collector: SocketAddr,
    /// Observation domain id.
    #[serde(default)]
    pub domain: u32,
    /// Private enterprise number of the Septa elements (verdict, rule id); default
    /// [`ipfix::SEPTA_PEN`] (32473, RFC 5612's documentation number) until the project registers
    /// one. Zero is rejected.
    #[serde(default = "default_pen")]
    pub enterprise_number: NonZeroU32,
}

fn default_pen() -> NonZeroU32 {
    NonZeroU32::new(ipfix::SEPTA_PEN).unwrap_or(NonZeroU32::MIN)
}

/// Syslog settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Receiver address.
    pub target: SocketAddr,
    /// `udp`, `tcp` or `tls` (RFC 5425).
    pub transport: SyslogTransport,
    /// `cef` or `json`.
    pub format: SyslogFormat,
    /// TLS: the CA certificate(s) the receiver's certificate must chain to (PEM); required
    /// with `tls`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// TLS: the appliance's certificate chain (PEM), for receivers that authenticate clients.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// TLS: the private key of `client_cert` (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// TLS: the name the receiver's certificate must carry (default: the target's address).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Private enterprise number of the RFC 5424 SD-ID (`[septa@PEN ...]`). Default: the
    /// `[export.ipfix]` `enterprise_number` when IPFIX is configured (see
    /// [`ExportConfig::inherit_enterprise_number`]), else [`ipfix::SEPTA_PEN`] (32473, RFC
    /// 5612's documentation number) until the project registers one. Zero is rejected.
    #[serde(default)]
    pub enterprise_number: Option<NonZeroU32>,
}

impl ExportConfig {
    /// Gives `[export.syslog]` without an `enterprise_number` the one of `[export.ipfix]`, so
    /// both exports name the same enterprise. Called when the configuration is checked.
    pub fn inherit_enterprise_number(&mut self) {
        if let (Some(s), Some(i)) = (&mut self.syslog, &self.ipfix) {
            s.enterprise_number.get_or_insert(i.enterprise_number);
        }
    }
}

impl SyslogConfig {
    /// The SD-ID's private enterprise number: the configured one, else [`ipfix::SEPTA_PEN`].
    pub fn enterprise_number(&self) -> NonZeroU32 {
        self.enterprise_number.unwrap_or_else(default_pen)
    }

    /// Checks the settings when the configuration is loaded: relative certificate paths are
    /// made relative to `dir` (the configuration file's folder), TLS settings without `tls` are
    /// refused, and with `tls` the files are read once. `Err((key, message))` names the key.
    pub fn check(&mut self, dir: Option<&Path>) -> Result<(), (String, String)> {
        for p in [
            &mut self.ca_file,
            &mut self.client_cert,
            &mut self.client_key,
        ]
        .into_iter()
        .flatten()
        {
            if let (Some(d), true) = (dir, p.is_relative()) {
                *p = d.join(&*p);
            }
        }
        if self.transport != SyslogTransport::Tls {
            let set = [
                ("ca_file", self.ca_file.is_some()),
                ("client_cert", self.client_cert.is_some()),
                ("client_key", self.client_key.is_some()),
                ("server_name", self.server_name.is_some()),
            ];
            if let Some((k, _)) = set.iter().find(|(_, s)| *s) {
                return Err((
                    format!("export.syslog.{k}"),
                    "is a TLS setting: set transport = \"tls\" (or remove it)".into(),
                ));
            }
            return Ok(());
        }
        match syslog::SyslogTls::from_config(self) {
            Ok(_) => Ok(()),
            Err(ExportError::Config { key, message }) => Err((key.to_owned(), message)),
            Err(e) => Err(("export.syslog".into(), e.to_string())),
        }
    }
}

/// Flow log settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLogConfig {
    /// The file; rotated to `<path>.1` when it reaches `max_bytes`.
    pub path: PathBuf,
    /// Rotation size.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_max_bytes() -> u64 {
    256 << 20
}

/// A JSON-lines flow log: one [`ObservedFlow`] object per line, appended, rotated by size (one
/// previous file kept).
#[derive(Debug)]
pub struct FlowLog {
    path: PathBuf,
    max_bytes: u64,
    out: BufWriter<File>,
    size: u64,
}

fn open_append(path: &Path) -> Result<(BufWriter<File>, u64), ExportError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .map_err(|e| ExportError::io(format!("creating {}", dir.display()), e))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ExportError::io(format!("opening {}", path.display()), e))?;
    let size = f
        .metadata()
        .map_err(|e| ExportError::io(format!("reading {}", path.display()), e))?
        .len();
    Ok((BufWriter::new(f), size))
}

impl FlowLog {
    /// Opens (appending to) the configured file.
    pub fn open(cfg: &FlowLogConfig) -> Result<Self, ExportError> {
        let (out, size) = open_append(&cfg.path)?;
        Ok(FlowLog {
            path: cfg.path.clone(),
            max_bytes: cfg.max_bytes.max(1),
            out,
            size,
        })
    }

    /// Appends `flows` and flushes; rotates first when the file is full.
    pub fn write(&mut self, flows: &[ObservedFlow]) -> Result<(), ExportError> {
        let err = |e| ExportError::io("writing the flow log", e);
        for f in flows {
            if self.size >= self.max_bytes {
                self.out.flush().map_err(err)?;
                let mut old = self.path.clone().into_os_string();
                old.push(".1");
                fs::rename(&self.path, &old)
                    .map_err(|e| ExportError::io("rotating the flow log", e))?;
                (self.out, self.size) = open_append(&self.path)?;
            }
            let mut line = serde_json::to_vec(f).unwrap_or_default();
            line.push(b'\n');
            self.out.write_all(&line).map_err(err)?;
            self.size += line.len() as u64;
        }
        self.out.flush().map_err(err)
    }
}

/// RFC 3339 UTC timestamp with milliseconds (`2026-11-25T20:47:05.123Z`).
pub fn rfc3339_ms(ts_ms: i64) -> String {
    let secs = ts_ms.div_euclid(1000);
    let ms = ts_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests;
