//! The verifier behind `septa audit verify DIR`: re-reads every segment and the checkpoint file
//! and checks the whole chain, the canonical encoding of every line, the genesis record, every
//! checkpoint signature, and that checkpoints are no further apart than the declared interval.
//!
//! It only reads. It trusts the public key the auditor passes ([`VerifyOptions::public_key`]);
//! without one it uses `audit.pub` from the directory, which proves integrity only against
//! someone who could not also replace that file (the report says which key was used).
//!
//! What it detects: any flipped bit, edited, inserted, removed or reordered record or checkpoint,
//! a missing segment, a torn or truncated file, and truncation back past the last checkpoint.
//! Removing whole records *after* the last checkpoint is indistinguishable from a crash before
//! they were written; an auditor who knows a later head passes it as
//! [`VerifyOptions::expected_head`] (e.g. from the last export) and then that is detected too.

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::log::{
    CHECKPOINT_FILE, EXPORT_MANIFEST, ExportManifest, PUBLIC_KEY_FILE, parse_segment_name,
};
use super::record::{Checkpoint, GENESIS_ACTION, Record, ZERO_HASH, hex, unhex};
use crate::error::VerifyError;

/// What the auditor brings.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The trusted public key; `None` reads `audit.pub` from the directory.
    pub public_key: Option<VerifyingKey>,
    /// A head (seq, hash) known from earlier; the log must contain it.
    pub expected_head: Option<(u64, String)>,
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = AuditVerifyReport)]
pub struct VerifyReport {
    /// Number of records.
    pub records: u64,
    /// First sequence number (0 unless this is an export).
    pub first_seq: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Hash of the last record.
    pub head_hash: String,
    /// Number of segment files.
    pub segments: usize,
    /// Number of checkpoints.
    pub checkpoints: usize,
    /// Sequence number of the last checkpoint.
    pub last_checkpoint_seq: Option<u64>,
    /// Records after the last checkpoint (chained but not yet signed).
    pub unsigned_tail: u64,
    /// True for an export (a range that does not start at genesis).
    pub partial: bool,
    /// The public key used, hex.
    pub public_key: String,
    /// Whether that key came from the auditor (true) or from the directory (false).
    pub key_trusted: bool,
}

/// Verifies the log in `dir` with the key found in the directory.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    verify_with(dir, &VerifyOptions::default())
}

fn read(path: &Path) -> Result<Vec<u8>, VerifyError> {
    fs::read(path).map_err(|source| VerifyError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a public key file: 64 lowercase hex digits and a newline.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, VerifyError> {
    let bad = |reason: &str| VerifyError::BadPublicKey {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let text = read(path)?;
    let text = std::str::from_utf8(&text).map_err(|_| bad("not text"))?;
    let hexkey = text
        .strip_suffix('\n')
        .ok_or_else(|| bad("no final newline"))?;
    let bytes = unhex::<32>(hexkey).ok_or_else(|| bad("not 64 lowercase hex digits"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an ed25519 public key"))
}

fn lines<'a>(file: &str, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, VerifyError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let body = bytes
        .strip_suffix(b"\n")
        .ok_or_else(|| VerifyError::Truncated {
            file: file.to_owned(),
        })?;
    Ok(body.split(|&b| b == b'\n').collect())
}

fn malformed(file: &str, line: usize, reason: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        file: file.to_owned(),
        line,
        reason: reason.into(),
    }
}

/// Parses one canonical line or explains why it is not one.
fn parse_canonical<T>(
    file: &str,
    line_no: usize,
    line: &[u8],
    encode: impl Fn(&T) -> Vec<u8>,
) -> Result<T, VerifyError>
where
    T: serde::de::DeserializeOwned,
{
    let v: T = serde_json::from_slice(line).map_err(|e| malformed(file, line_no, e.to_string()))?;
    let mut again = encode(&v);
    again.pop(); // the newline
    if again != line {
        return Err(malformed(file, line_no, "not in canonical form"));
    }
    Ok(v)
}

/// Verifies the log in `dir`.
pub fn verify_with(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let (key, key_trusted) = match opts.public_key {
        Some(k) => (k, true),
        None => (read_public_key(&dir.join(PUBLIC_KEY_FILE))?, false),
    };
    let key_hex = hex(key.as_bytes());
    let manifest_path = dir.join(EXPORT_MANIFEST);
    let manifest: Option<ExportManifest> = if manifest_path.exists() {
        let bytes = read(&manifest_path)?;
        Some(parse_canonical(
            EXPORT_MANIFEST,
            1,
            bytes.strip_suffix(b"\n").unwrap_or(&bytes),
            |m: &ExportManifest| m.to_line(),
        )?)
    } else {
        None
    };

    let mut segments: Vec<(u64, PathBuf, String)> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|source| VerifyError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for e in entries {
        let e = e.map_err(|source| VerifyError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(first) = parse_segment_name(&name) {
            segments.push((first, e.path(), name));
        }
    }
    segments.sort();
    if segments.is_empty() {
        return Err(VerifyError::Empty(dir.to_owned()));
    }

    let first_seq = manifest.as_ref().map_or(0, |m| m.from);
    let mut expected = first_seq;
    let mut prev = manifest
        .as_ref()
        .map_or_else(|| ZERO_HASH.to_owned(), |m| m.prev_hash.clone());
    let mut hashes: Vec<String> = Vec::new();
    let mut interval: Option<u64> = None;
    for (seg_first, path, name) in &segments {
        let bytes = read(path)?;
        let ls = lines(name, &bytes)?;
        if ls.is_empty() {
            return Err(VerifyError::Truncated { file: name.clone() });
        }
        for (i, line) in ls.iter().enumerate() {
            let line_no = i + 1;
            let r: Record = parse_canonical(name, line_no, line, Record::to_line)?;
            let want = if i == 0 { *seg_first } else { expected };
            if r.seq != expected || r.seq != want {
                return Err(VerifyError::Sequence {
                    file: name.clone(),
                    line: line_no,
                    expected,
                    found: r.seq,
                });
            }
            if r.prev_hash != prev {
                return Err(VerifyError::Chain { seq: r.seq });
            }
            if r.compute_hash() != r.hash {
                return Err(VerifyError::Hash { seq: r.seq });
            }
            if r.seq == 0 {
                interval = Some(check_genesis(&r, &key_hex)?);
            }
            expected = r.seq + 1;
            prev = r.hash.clone();
            hashes.push(r.hash);
        }
    }
    if manifest.is_none() && interval.is_none() {
        return Err(VerifyError::Genesis("missing".into()));
    }
    let last_seq = expected - 1;
    let hash_at = |seq: u64| -> Option<&String> {
        let i = usize::try_from(seq.checked_sub(first_seq)?).ok()?;
        hashes.get(i)
    };

    let cp_path = dir.join(CHECKPOINT_FILE);
    let cp_bytes = if cp_path.exists() {
        read(&cp_path)?
    } else {
        Vec::new()
    };
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    for (i, line) in lines(CHECKPOINT_FILE, &cp_bytes)?.iter().enumerate() {
        let c: Checkpoint = parse_canonical(CHECKPOINT_FILE, i + 1, line, Checkpoint::to_line)?;
        let fail = |reason: &str| VerifyError::Checkpoint {
            index: i,
            seq: c.seq,
            reason: reason.to_owned(),
        };
        if let Some(p) = checkpoints.last() {
            if c.seq <= p.seq {
                return Err(fail("not after the previous checkpoint (reordered?)"));
            }
            if interval.is_some_and(|n| c.seq - p.seq > n) {
                return Err(fail(
                    "further than the checkpoint interval from the previous one (checkpoint removed?)",
                ));
            }
        }
        match hash_at(c.seq) {
            None if c.seq > last_seq => {
                return Err(fail(
                    "covers a record beyond the end of the log (records truncated?)",
                ));
            }
            None => return Err(fail("covers a record before the start of this log")),
            Some(h) if *h != c.hash => {
                return Err(fail(
                    "hash differs from the record's (record or checkpoint altered)",
                ));
            }
            Some(_) => {}
        }
        checkpoints.push(c);
    }
    // Signatures last: they are the expensive check, and structure already failed fast.
    for (i, c) in checkpoints.iter().enumerate() {
        if !c.verify(&key) {
            return Err(VerifyError::Signature {
                index: i,
                seq: c.seq,
            });
        }
    }
    let last_cp = checkpoints.last().map(|c| c.seq);
    let unsigned_tail = last_cp.map_or(last_seq - first_seq + 1, |s| last_seq - s);
    match (&manifest, interval) {
        // An export always ends at a checkpoint.
        (Some(_), _) if last_cp != Some(last_seq) => {
            return Err(VerifyError::MissingCheckpoint {
                unsigned: unsigned_tail,
                interval: 0,
            });
        }
        (None, Some(n)) if last_cp.is_none() || unsigned_tail > n => {
            return Err(VerifyError::MissingCheckpoint {
                unsigned: unsigned_tail,
                interval: n,
            });
        }
        _ => {}
    }
    if let Some((seq, hash)) = &opts.expected_head {
        match hash_at(*seq) {
            None => {
                return Err(VerifyError::BehindExpectedHead {
                    last: last_seq,
                    expected: *seq,
                });
            }
            Some(h) if h != hash => return Err(VerifyError::Hash { seq: *seq }),
            Some(_) => {}
        }
    }
    Ok(VerifyReport {
        records: last_seq - first_seq + 1,
        first_seq,
        last_seq,
        head_hash: prev,
        segments: segments.len(),
        checkpoints: checkpoints.len(),
        last_checkpoint_seq: last_cp,
        unsigned_tail,
        partial: manifest.is_some(),
        public_key: key_hex,
        key_trusted,
    })
}

/// Checks the genesis record and returns the checkpoint interval it declares.
fn check_genesis(r: &Record, key_hex: &str) -> Result<u64, VerifyError> {
    if r.action != GENESIS_ACTION {
        return Err(VerifyError::Genesis(format!("action is {:?}", r.action)));
    }
    if r.object != format!("ed25519:{key_hex}") {
        return Err(VerifyError::Genesis(
            "names another signing key than the one verifying".into(),
        ));
    }
    r.detail
        .strip_prefix("checkpoint_interval=")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| VerifyError::Genesis("no checkpoint_interval".into()))
}
