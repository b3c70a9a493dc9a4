//! Follows the audit log and sends each new record (and each new alert) to a syslog receiver.
//!
//! [`AuditTail`] reads the log's segment files incrementally (byte offset into the newest
//! segment; only complete lines), so every record appended by any part of the appliance —
//! policy changes, logins, aggregated access decisions — is sent once, in order, without
//! touching the writer. A failed send stops the pass at that record; the next pass (after a
//! reconnect for TCP) resends from there, so nothing is skipped while the receiver is down and
//! nothing is buffered beyond the log itself.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use super::syslog::{Alert, SyslogExporter};
use super::{ExportError, SyslogConfig};
use crate::audit::Record;
use crate::audit::log::parse_segment_name;

/// Incremental reader of an audit log directory.
#[derive(Debug)]
pub struct AuditTail {
    dir: PathBuf,
    next_seq: u64,
    segment: Option<u64>,
    offset: u64,
}

impl AuditTail {
    /// A tail that delivers records from sequence number `next_seq` on.
    pub fn from_seq(dir: impl Into<PathBuf>, next_seq: u64) -> Self {
        AuditTail {
            dir: dir.into(),
            next_seq,
            segment: None,
            offset: 0,
        }
    }

    /// A tail positioned after the log's current last record (history is not resent).
    pub fn at_end(dir: impl Into<PathBuf>) -> Result<Self, ExportError> {
        let mut t = AuditTail::from_seq(dir, 0);
        t.poll(|_| Ok(()))?;
        Ok(t)
    }

    /// The next sequence number to deliver.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Delivers every complete record at or after the position to `f`, in order. Stops at the
    /// first error of `f` (that record is delivered again by the next call) and returns it;
    /// otherwise returns how many were delivered.
    pub fn poll(
        &mut self,
        mut f: impl FnMut(&Record) -> Result<(), ExportError>,
    ) -> Result<usize, ExportError> {
        let mut segs: Vec<(u64, PathBuf)> = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            // No log yet: nothing to send.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(ExportError::io(
                    format!("reading {}", self.dir.display()),
                    e,
                ));
            }
        };
        for e in rd.flatten() {
            if let Some(first) = e.file_name().to_str().and_then(parse_segment_name) {
                segs.push((first, e.path()));
            }
        }
        segs.sort();
        let mut sent = 0;
        for (first, path) in segs {
            if self.segment.is_some_and(|s| first < s) {
                continue;
            }
            if self.segment != Some(first) {
                self.segment = Some(first);
                self.offset = 0;
            }
            let mut buf = Vec::new();
            let mut file = fs::File::open(&path)
                .map_err(|e| ExportError::io(format!("opening {}", path.display()), e))?;
            file.seek(SeekFrom::Start(self.offset))
                .and_then(|_| file.read_to_end(&mut buf))
                .map_err(|e| ExportError::io(format!("reading {}", path.display()), e))?;
            let mut consumed = 0usize;
            while let Some(nl) = buf[consumed..].iter().position(|b| *b == b'\n') {
                let line = &buf[consumed..consumed + nl];
                if let Ok(r) = serde_json::from_slice::<Record>(line)
                    && r.seq >= self.next_seq
                {
                    f(&r)?;
                    sent += 1;
                    self.next_seq = r.seq + 1;
                }
                consumed += nl + 1;
                self.offset += (nl + 1) as u64;
            }
        }
        Ok(sent)
    }
}

/// New alerts for syslog, read by id (implemented by the API's anomaly store).
pub trait AlertSource: Send + Sync {
    /// Alerts with an id greater than `after`, oldest first, and their ids.
    fn alerts_after(&self, after: u64) -> Vec<(u64, Alert)>;
}

/// Counters of the syslog feed.
#[derive(Debug, Default)]
pub struct SyslogStats {
    /// Audit records sent.
    pub records: AtomicU64,
    /// Alerts sent.
    pub alerts: AtomicU64,
    /// Failed sends or connects (retried).
    pub errors: AtomicU64,
}

/// A snapshot of [`SyslogStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SyslogStatsSnapshot {
    /// Audit records sent.
    pub records: u64,
    /// Alerts sent.
    pub alerts: u64,
    /// Failed sends or connects (retried).
    pub errors: u64,
}

impl SyslogStats {
    /// The current values.
    pub fn snapshot(&self) -> SyslogStatsSnapshot {
        SyslogStatsSnapshot {
            records: self.records.load(Ordering::Relaxed),
            alerts: self.alerts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// The syslog thread (`septa-syslog`); stops and joins on drop.
#[derive(Debug)]
pub struct SyslogFeed {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<SyslogStats>,
}

impl SyslogFeed {
    /// Starts following `audit_dir` (from its current end) and `alerts`, sending every `every`.
    pub fn spawn(
        cfg: SyslogConfig,
        audit_dir: &Path,
        alerts: Option<Arc<dyn AlertSource>>,
        hostname: String,
        every: Duration,
    ) -> Result<SyslogFeed, ExportError> {
        let mut tail = AuditTail::at_end(audit_dir)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SyslogStats::default());
        let (stop2, stats2) = (Arc::clone(&stop), Arc::clone(&stats));
        // Like the audit position, the alert watermark is taken before this returns: what exists
        // now is not resent, anything pushed after `spawn` returns is.
        let mut last_alert = alerts
            .as_ref()
            .and_then(|a| a.alerts_after(0).last().map(|(id, _)| *id))
            .unwrap_or(0);
        let thread = std::thread::Builder::new()
            .name("septa-syslog".into())
            .spawn(move || {
                let mut conn: Option<SyslogExporter> = None;
                loop {
                    let stopping = stop2.load(Ordering::Relaxed);
                    pass(
                        &cfg,
                        &hostname,
                        &mut conn,
                        &mut tail,
                        alerts.as_deref(),
                        &mut last_alert,
                        &stats2,
                    );
                    if stopping {
                        return;
                    }
                    // Sleep in short steps so a stop is seen promptly.
                    let mut slept = Duration::ZERO;
                    while slept < every && !stop2.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                        slept += Duration::from_millis(20);
                    }
                }
            })
            .map_err(|e| ExportError::io("starting the syslog thread", e))?;
        Ok(SyslogFeed {
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// The feed's counters.
    pub fn stats(&self) -> &Arc<SyslogStats> {
        &self.stats
    }
}

/// Counts a failure; the first and then one in a hundred reach the log.
fn failure(stats: &SyslogStats, cfg: &SyslogConfig, e: &ExportError) {
    if stats
        .errors
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(100)
    {
        tracing::warn!("syslog export to {}: {e}", cfg.target);
    }
}

fn pass(
    cfg: &SyslogConfig,
    hostname: &str,
    conn: &mut Option<SyslogExporter>,
    tail: &mut AuditTail,
    alerts: Option<&dyn AlertSource>,
    last_alert: &mut u64,
    stats: &SyslogStats,
) {
    if conn.is_none() {
        match SyslogExporter::from_config(cfg, hostname) {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                failure(stats, cfg, &e);
                return;
            }
        }
    }
    let Some(c) = conn.as_mut() else { return };
    let sent = tail.poll(|r| c.audit(r));
    let mut failed = match sent {
        Ok(n) => {
            stats.records.fetch_add(n as u64, Ordering::Relaxed);
            false
        }
        Err(e) => {
            failure(stats, cfg, &e);
            true
        }
    };
    if let (false, Some(src)) = (failed, alerts) {
        for (id, a) in src.alerts_after(*last_alert) {
            if let Err(e) = c.alert(&a) {
                failure(stats, cfg, &e);
                failed = true;
                break;
            }
            stats.alerts.fetch_add(1, Ordering::Relaxed);
            *last_alert = id;
        }
    }
    if failed {
        // Reconnect on the next pass (a TCP receiver may have restarted).
        *conn = None;
    }
}

impl Drop for SyslogFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
