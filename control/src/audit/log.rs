//! The audit log writer: append-only segment files of canonical JSON lines in one directory,
//! hash-chained, with ed25519-signed checkpoints in `checkpoints.jsonl`.
//!
//! Layout of the directory:
//! * `segment-<first seq, 20 digits>.jsonl`: records, one per line (see [`super::record`]); a new
//!   segment starts every `segment_records` records.
//! * `checkpoints.jsonl`: signed checkpoints; one after genesis, then whenever `checkpoint_interval`
//!   records have been appended since the last, and whenever [`AuditLog::checkpoint`] is called.
//! * `audit.pub`: the public key (hex), for convenience; auditors keep their own copy.
//!
//! The signing key lives at `key_path`, outside the log directory, created on first start with
//! mode 0600. Invariants: [`AuditLog::append`] returns only after the record is on disk (fsync);
//! a failed append leaves no partial line (the file is cut back, or the log refuses further
//! appends); opening a log that does not verify fails (fail closed) except for a torn final line,
//! which a crash can leave and which is cut off and itself recorded.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::record::{Actor, AuditEntry, Checkpoint, GENESIS_ACTION, Record, ZERO_HASH, hex, unhex};
use super::verify::{VerifyOptions, verify_with};
use crate::clock::Clock;
use crate::durable;
use crate::error::{AuditError, VerifyError};

/// Name of the checkpoint file.
pub const CHECKPOINT_FILE: &str = "checkpoints.jsonl";
/// Name of the public key file in the log directory.
pub const PUBLIC_KEY_FILE: &str = "audit.pub";
/// Name of the manifest that marks a directory as an export of a range.
pub const EXPORT_MANIFEST: &str = "export.json";

/// The file name of the segment whose first record is `first`.
pub fn segment_name(first: u64) -> String {
    format!("segment-{first:020}.jsonl")
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".jsonl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Describes an exported range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AuditExportManifest)]
pub struct ExportManifest {
    /// First exported record.
    pub from: u64,
    /// Last exported record (a checkpointed one, at or after the requested end).
    pub to: u64,
    /// `prev_hash` of the first exported record.
    pub prev_hash: String,
}

impl ExportManifest {
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Where and how the log is written.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The log directory.
    pub dir: PathBuf,
    /// The signing key file (created 0600 on first start).
    pub key_path: PathBuf,
    /// Records between automatic checkpoints.
    pub checkpoint_interval: u64,
    /// Records per segment file.
    pub segment_records: u64,
}

impl AuditConfig {
    /// Defaults: a checkpoint every 64 records, 10 000 records per segment.
    pub fn new(dir: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        AuditConfig {
            dir: dir.into(),
            key_path: key_path.into(),
            checkpoint_interval: 64,
            segment_records: 10_000,
        }
    }
}

/// Sequence number and hash of an appended record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordRef {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// An open audit log, ready to append.
pub struct AuditLog {
    cfg: AuditConfig,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    segment: File,
    segment_len: u64,
    next_seq: u64,
    head: String,
    last_checkpoint: Option<u64>,
    checkpoints: File,
    poisoned: bool,
    /// The last record whose action is not `audit.*` (what the lifecycle reconciles against).
    last_mutation: Option<Record>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.cfg.dir)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

fn load_or_create_key(path: &Path) -> Result<SigningKey, AuditError> {
    if path.exists() {
        let text = fs::read_to_string(path).map_err(AuditError::io(path))?;
        let seed = unhex::<32>(text.trim_end()).ok_or_else(|| AuditError::BadKey {
            path: path.to_owned(),
        })?;
        return Ok(SigningKey::from_bytes(&seed));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(AuditError::io(dir))?;
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AuditError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    durable::write_atomic(path, format!("{}\n", hex(&seed)).as_bytes(), 0o600)
        .map_err(AuditError::io(path))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Cuts a torn final line (no newline) off `path`; returns the number of bytes dropped. An empty
/// file is removed when `remove_if_empty`.
fn cut_torn_tail(path: &Path, remove_if_empty: bool) -> Result<u64, AuditError> {
    let bytes = fs::read(path).map_err(AuditError::io(path))?;
    if bytes.is_empty() {
        if remove_if_empty {
            fs::remove_file(path).map_err(AuditError::io(path))?;
        }
        return Ok(0);
    }
    if bytes.ends_with(b"\n") {
        return Ok(0);
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(AuditError::io(path))?;
    f.set_len(keep as u64)
        .and_then(|()| f.sync_all())
        .map_err(AuditError::io(path))?;
    if keep == 0 && remove_if_empty {
        fs::remove_file(path).map_err(AuditError::io(path))?;
    }
    Ok((bytes.len() - keep) as u64)
}

fn segments(dir: &Path) -> Result<Vec<u64>, AuditError> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(AuditError::io(dir))? {
        let e = e.map_err(AuditError::io(dir))?;
        if let Some(first) = parse_segment_name(&e.file_name().to_string_lossy()) {
            v.push(first);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// Scans segments from the newest for the last record that is not `audit.*`.
fn last_mutation(dir: &Path) -> Result<Option<Record>, AuditError> {
    for first in segments(dir)?.into_iter().rev() {
        let path = dir.join(segment_name(first));
        let bytes = fs::read(&path).map_err(AuditError::io(&path))?;
        let found = bytes
            .split(|&b| b == b'\n')
            .rev()
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Record>(l).ok())
            .find(|r| !r.action.starts_with("audit."));
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

impl AuditLog {
    /// Opens (or creates, with a genesis record and a first checkpoint) the log in `cfg.dir`.
    pub fn open(cfg: AuditConfig, clock: Arc<dyn Clock>) -> Result<Self, AuditError> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(AuditError::io(&dir))?;
        let key = load_or_create_key(&cfg.key_path)?;
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        if !pub_path.exists() {
            let text = format!("{}\n", hex(key.verifying_key().as_bytes()));
            durable::write_atomic(&pub_path, text.as_bytes(), 0o644)
                .map_err(AuditError::io(&pub_path))?;
        }
        let cp_path = dir.join(CHECKPOINT_FILE);
        let mut segs = segments(&dir)?;
        if segs.is_empty() {
            return Self::create(cfg, key, clock);
        }
        // A crash can tear only the last line of the last segment or of the checkpoint file.
        let mut torn = Vec::new();
        if let Some(&last) = segs.last() {
            let path = dir.join(segment_name(last));
            let n = cut_torn_tail(&path, segs.len() > 1)?;
            if n > 0 || !path.exists() {
                torn.push(format!("{n} bytes of {}", segment_name(last)));
            }
            if !path.exists() {
                segs.pop();
            }
        }
        if cp_path.exists() {
            let n = cut_torn_tail(&cp_path, false)?;
            if n > 0 {
                torn.push(format!("{n} bytes of {CHECKPOINT_FILE}"));
            }
        }
        let seg0 = dir.join(segment_name(0));
        if segs == [0] && fs::metadata(&seg0).map(|m| m.len() == 0).unwrap_or(false) {
            // A crash while creating the log, before the genesis record was on disk.
            fs::remove_file(&seg0).map_err(AuditError::io(&seg0))?;
            let _ = fs::remove_file(&cp_path);
            durable::sync_dir(&dir).map_err(AuditError::io(&dir))?;
            return Self::create(cfg, key, clock);
        }
        if !torn.is_empty() {
            durable::sync_dir(&dir).map_err(AuditError::io(&dir))?;
        }
        let report = verify_with(
            &dir,
            &VerifyOptions {
                public_key: Some(key.verifying_key()),
                expected_head: None,
            },
        )?;
        let seg_first = segs.last().copied().unwrap_or(0);
        let seg_path = dir.join(segment_name(seg_first));
        let segment = durable::open_append(&seg_path, 0o640).map_err(AuditError::io(&seg_path))?;
        let checkpoints =
            durable::open_append(&cp_path, 0o640).map_err(AuditError::io(&cp_path))?;
        let mut log = AuditLog {
            cfg,
            key,
            clock,
            segment,
            segment_len: report.last_seq + 1 - seg_first,
            next_seq: report.last_seq + 1,
            head: report.head_hash,
            last_checkpoint: report.last_checkpoint_seq,
            checkpoints,
            poisoned: false,
            last_mutation: None,
        };
        log.last_mutation = last_mutation(&dir)?;
        if !torn.is_empty() {
            log.append(AuditEntry {
                actor: Actor::system("audit"),
                action: "audit.recovered".into(),
                object: "audit-log".into(),
                before: None,
                after: None,
                reason: "torn write from an interrupted append (never acknowledged)".into(),
                result: "ok".into(),
                detail: format!("dropped {}", torn.join(", ")),
            })?;
        }
        if log.last_checkpoint != Some(log.next_seq - 1)
            && log.next_seq - 1 - log.last_checkpoint.unwrap_or(0) >= log.cfg.checkpoint_interval
        {
            log.checkpoint()?;
        }
        Ok(log)
    }

    fn create(
        cfg: AuditConfig,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuditError> {
        let seg_path = cfg.dir.join(segment_name(0));
        let cp_path = cfg.dir.join(CHECKPOINT_FILE);
        let segment = durable::open_append(&seg_path, 0o640).map_err(AuditError::io(&seg_path))?;
        let checkpoints =
            durable::open_append(&cp_path, 0o640).map_err(AuditError::io(&cp_path))?;
        let mut log = AuditLog {
            key,
            clock,
            segment,
            segment_len: 0,
            next_seq: 0,
            head: ZERO_HASH.to_owned(),
            last_checkpoint: None,
            checkpoints,
            poisoned: false,
            last_mutation: None,
            cfg,
        };
        let genesis = AuditEntry {
            actor: Actor::system("audit"),
            action: GENESIS_ACTION.into(),
            object: format!("ed25519:{}", log.public_key_hex()),
            before: None,
            after: None,
            reason: "new audit log".into(),
            result: "ok".into(),
            detail: format!("checkpoint_interval={}", log.cfg.checkpoint_interval.max(1)),
        };
        log.append(genesis)?;
        log.checkpoint()?;
        Ok(log)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// The public key, hex (what auditors pin).
    pub fn public_key_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    /// The last record that is not about the log itself (`audit.*`), if any.
    pub fn last_mutation(&self) -> Option<&Record> {
        self.last_mutation.as_ref()
    }

    /// Sequence number and hash of the last record.
    pub fn head(&self) -> RecordRef {
        RecordRef {
            seq: self.next_seq.saturating_sub(1),
            hash: self.head.clone(),
        }
    }

    /// Appends one record and returns once it is on disk.
    pub fn append(&mut self, entry: AuditEntry) -> Result<RecordRef, AuditError> {
        if self.poisoned {
            return Err(AuditError::Io {
                path: self.cfg.dir.clone(),
                source: std::io::Error::other(
                    "an earlier append failed and could not be undone; reopen the log",
                ),
            });
        }
        if self.segment_len >= self.cfg.segment_records.max(1) {
            let path = self.cfg.dir.join(segment_name(self.next_seq));
            self.segment = durable::open_append(&path, 0o640).map_err(AuditError::io(&path))?;
            self.segment_len = 0;
        }
        let record = Record::new(self.next_seq, self.clock.now_ms(), entry, self.head.clone());
        let path = self
            .cfg
            .dir
            .join(segment_name(self.next_seq - self.segment_len));
        if let Err((e, repaired)) = durable::append_synced(&mut self.segment, &record.to_line()) {
            self.poisoned = !repaired;
            return Err(AuditError::Io { path, source: e });
        }
        self.segment_len += 1;
        self.next_seq += 1;
        self.head = record.hash.clone();
        if !record.action.starts_with("audit.") {
            self.last_mutation = Some(record.clone());
        }
        let since = self.last_checkpoint.map_or(u64::MAX, |c| record.seq - c);
        if since >= self.cfg.checkpoint_interval.max(1) && self.last_checkpoint.is_some() {
            self.checkpoint()?;
        }
        Ok(RecordRef {
            seq: record.seq,
            hash: record.hash,
        })
    }

    /// Appends `entries` in order and returns once all of them are on disk: one write and one
    /// fsync per segment file touched instead of one per record (access-decision batches hold
    /// the policy-core lock while they are written). On error, the records of the failed write
    /// are cut off again (as [`Self::append`] does) and those written before it stay.
    pub fn append_all(&mut self, entries: Vec<AuditEntry>) -> Result<Vec<RecordRef>, AuditError> {
        let mut refs = Vec::with_capacity(entries.len());
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            if self.poisoned {
                return Err(AuditError::Io {
                    path: self.cfg.dir.clone(),
                    source: std::io::Error::other(
                        "an earlier append failed and could not be undone; reopen the log",
                    ),
                });
            }
            if self.segment_len >= self.cfg.segment_records.max(1) {
                let path = self.cfg.dir.join(segment_name(self.next_seq));
                self.segment = durable::open_append(&path, 0o640).map_err(AuditError::io(&path))?;
                self.segment_len = 0;
            }
            // The records that fit in this segment and before the next checkpoint is due (the
            // verifier allows no more than the interval between checkpoints), chained from the
            // current head.
            let to_checkpoint = self.last_checkpoint.map_or(u64::MAX, |c| {
                let since = (self.next_seq - 1) - c;
                self.cfg
                    .checkpoint_interval
                    .max(1)
                    .saturating_sub(since)
                    .max(1)
            });
            let room = (self.cfg.segment_records.max(1) - self.segment_len).min(to_checkpoint);
            let mut lines = Vec::new();
            let mut chunk: Vec<Record> = Vec::new();
            let mut head = self.head.clone();
            while (chunk.len() as u64) < room
                && let Some(entry) = entries.next()
            {
                let seq = self.next_seq + chunk.len() as u64;
                let record = Record::new(seq, self.clock.now_ms(), entry, head);
                head = record.hash.clone();
                lines.extend_from_slice(&record.to_line());
                chunk.push(record);
            }
            let path = self
                .cfg
                .dir
                .join(segment_name(self.next_seq - self.segment_len));
            if let Err((e, repaired)) = durable::append_synced(&mut self.segment, &lines) {
                self.poisoned = !repaired;
                return Err(AuditError::Io { path, source: e });
            }
            let n = chunk.len() as u64;
            self.segment_len += n;
            self.next_seq += n;
            self.head = head;
            if let Some(m) = chunk.iter().rev().find(|r| !r.action.starts_with("audit.")) {
                self.last_mutation = Some(m.clone());
            }
            refs.extend(chunk.into_iter().map(|r| RecordRef {
                seq: r.seq,
                hash: r.hash,
            }));
            let since = self
                .last_checkpoint
                .map_or(u64::MAX, |c| (self.next_seq - 1) - c);
            if since >= self.cfg.checkpoint_interval.max(1) && self.last_checkpoint.is_some() {
                self.checkpoint()?;
            }
        }
        Ok(refs)
    }

    /// Signs a checkpoint of the current head (no-op when the head is already checkpointed).
    pub fn checkpoint(&mut self) -> Result<Option<Checkpoint>, AuditError> {
        let head = self.next_seq.saturating_sub(1);
        if self.last_checkpoint == Some(head) {
            return Ok(None);
        }
        let c = Checkpoint::sign(&self.key, head, self.clock.now_ms(), self.head.clone());
        let path = self.cfg.dir.join(CHECKPOINT_FILE);
        if let Err((e, repaired)) = durable::append_synced(&mut self.checkpoints, &c.to_line()) {
            self.poisoned = !repaired;
            return Err(AuditError::Io { path, source: e });
        }
        self.last_checkpoint = Some(head);
        Ok(Some(c))
    }
}

/// Copies records `from..=to` (extended to the next checkpoint, so the range ends signed) with
/// their checkpoints and the public key into `out`, which then verifies on its own.
pub fn export(dir: &Path, from: u64, to: u64, out: &Path) -> Result<ExportManifest, AuditError> {
    let report = super::verify::verify(dir)?;
    let cp_bytes =
        fs::read(dir.join(CHECKPOINT_FILE)).map_err(AuditError::io(dir.join(CHECKPOINT_FILE)))?;
    let checkpoints: Vec<Checkpoint> = cp_bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    let end = checkpoints.iter().map(|c| c.seq).find(|&s| s >= to);
    let end = match end {
        Some(e) if from <= to => e,
        _ => {
            return Err(AuditError::BadRange {
                from,
                to,
                last: report.last_checkpoint_seq.unwrap_or(0),
            });
        }
    };
    let mut records = Vec::new();
    for first in segments(dir)? {
        let path = dir.join(segment_name(first));
        let bytes = fs::read(&path).map_err(AuditError::io(&path))?;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let r: Record = serde_json::from_slice(line).map_err(|e| {
                AuditError::Corrupt(VerifyError::Malformed {
                    file: segment_name(first),
                    line: 0,
                    reason: e.to_string(),
                })
            })?;
            if (from..=end).contains(&r.seq) {
                records.push(r);
            }
        }
    }
    let prev_hash = records
        .first()
        .map(|r| r.prev_hash.clone())
        .unwrap_or_default();
    fs::create_dir_all(out).map_err(AuditError::io(out))?;
    let seg: Vec<u8> = records.iter().flat_map(Record::to_line).collect();
    let cps: Vec<u8> = checkpoints
        .iter()
        .filter(|c| (from..=end).contains(&c.seq))
        .flat_map(Checkpoint::to_line)
        .collect();
    let manifest = ExportManifest {
        from,
        to: end,
        prev_hash,
    };
    let files: [(String, Vec<u8>); 4] = [
        (segment_name(from), seg),
        (CHECKPOINT_FILE.into(), cps),
        (
            PUBLIC_KEY_FILE.into(),
            format!("{}\n", report.public_key).into_bytes(),
        ),
        (EXPORT_MANIFEST.into(), manifest.to_line()),
    ];
    for (name, bytes) in files {
        let p = out.join(name);
        durable::write_atomic(&p, &bytes, 0o644).map_err(AuditError::io(&p))?;
    }
    Ok(manifest)
}
