//! Every error the control-plane library returns, in one place.
//!
//! Errors are typed (no `anyhow` in this crate) and carry what a caller needs to act: policy
//! errors carry every [`Diagnostic`] with its path and, for YAML, its line and column; audit
//! verification errors name the file and record; lifecycle errors say which step refused and
//! guarantee (documented per variant) that nothing was applied.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a policy document.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Dotted path of the offending field, e.g. `spec.zones[2].subnets[0]` (empty for the document).
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
    /// 1-based line in the source, when known (YAML and JSON).
    pub line: Option<u64>,
    /// 1-based column in the source, when known.
    pub column: Option<u64>,
}

impl Diagnostic {
    /// A diagnostic without a source location.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "{l}:{c}: ")?;
        }
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A list of diagnostics, displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A policy document that could not be read or is not valid. Nothing was applied.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not well-formed YAML/JSON or does not have the document's shape (wrong type,
    /// unknown or missing field). Deserialisation stops at the first such problem.
    #[error("policy syntax: {0}")]
    Syntax(Diagnostic),
    /// The document has the right shape but breaks one or more rules; every problem is listed.
    #[error("policy invalid ({} problem(s)):\n{}", .0.0.len(), .0)]
    Invalid(Diagnostics),
}

impl PolicyError {
    /// Every diagnostic of the error.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            PolicyError::Syntax(d) => vec![d.clone()],
            PolicyError::Invalid(ds) => ds.0.clone(),
        }
    }
}

/// The classifier refused the compiled rule list (a bug in the policy compiler or a size budget).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The rule list was refused by `septa_classifier::compile`.
    #[error("classifier refused the compiled rules: {0}")]
    Classifier(#[from] septa_classifier::CompileError),
    /// The policy expands to more rules than the budget allows.
    #[error("policy expands to more than {limit} rules")]
    TooManyRules {
        /// The budget.
        limit: usize,
    },
}

/// Writing or reading the audit log failed. A failed append was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A filesystem operation failed.
    #[error("audit log I/O on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The signing key file exists but is not a key.
    #[error("audit signing key {path} is malformed")]
    BadKey {
        /// The key file.
        path: PathBuf,
    },
    /// The existing log does not verify, so appending to it would extend a broken chain.
    #[error("existing audit log does not verify: {0}")]
    Corrupt(#[from] VerifyError),
    /// An export range that does not exist in the log.
    #[error("export range {from}..={to} is outside the log (last record {last})")]
    BadRange {
        /// First requested sequence number.
        from: u64,
        /// Last requested sequence number.
        to: u64,
        /// Last sequence number present.
        last: u64,
    },
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Io { path, source }
    }
}

/// Why an audit log does not verify. Any single flipped bit, removed, reordered or truncated
/// record (up to the last signed checkpoint) produces one of these.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory holds no log.
    #[error("no audit segments in {0}")]
    Empty(PathBuf),
    /// The public key file is missing or malformed.
    #[error("public key {path}: {reason}")]
    BadPublicKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A line is not a record in canonical form (flipped bit, edited field, partial write).
    #[error("{file}: line {line}: malformed record: {reason}")]
    Malformed {
        /// Segment or checkpoint file name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file does not end with a complete line (truncated or torn write).
    #[error("{file}: truncated (no final newline)")]
    Truncated {
        /// File name.
        file: String,
    },
    /// A sequence number is not the successor of the previous one (deleted or reordered record,
    /// missing segment).
    #[error("{file}: line {line}: expected seq {expected}, found {found}")]
    Sequence {
        /// Segment file name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The expected sequence number.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// `prev_hash` does not equal the previous record's hash.
    #[error("seq {seq}: chain broken (prev_hash does not match the previous record)")]
    Chain {
        /// Sequence number of the record.
        seq: u64,
    },
    /// The stored hash is not the hash of the record's contents.
    #[error("seq {seq}: hash mismatch (record altered)")]
    Hash {
        /// Sequence number of the record.
        seq: u64,
    },
    /// The first record is not the genesis record.
    #[error("first record is not a genesis record: {0}")]
    Genesis(String),
    /// A checkpoint's signature does not verify under the given public key.
    #[error("checkpoint {index} (seq {seq}): bad signature")]
    Signature {
        /// 0-based index in the checkpoint file.
        index: usize,
        /// The sequence number it covers.
        seq: u64,
    },
    /// A checkpoint refers to a record that does not exist or has another hash.
    #[error("checkpoint {index} (seq {seq}): {reason}")]
    Checkpoint {
        /// 0-based index in the checkpoint file.
        index: usize,
        /// The sequence number it covers.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// Records past the last checkpoint exceed the checkpoint interval (checkpoints removed).
    #[error("{unsigned} records after the last checkpoint, more than the interval {interval}")]
    MissingCheckpoint {
        /// Records not covered by any checkpoint.
        unsigned: u64,
        /// The interval declared by the genesis record.
        interval: u64,
    },
    /// The log ends before a head the auditor knows about.
    #[error("log ends at seq {last}, before the expected head seq {expected}")]
    BehindExpectedHead {
        /// Last record present.
        last: u64,
        /// The head the auditor expected.
        expected: u64,
    },
}

/// The SQLite revision store failed. A failed write was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("revision store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be prepared.
    #[error("revision store I/O on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database was written by a newer Septa.
    #[error("revision store schema version {found} is newer than this build ({supported})")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// No revision with this id.
    #[error("no revision {0}")]
    NoSuchRevision(i64),
    /// A stored revision whose content no longer matches its hash (fail closed: not loaded).
    #[error("revision {id}: stored content does not match its hash")]
    Corrupt {
        /// The revision id.
        id: i64,
    },
    /// Stored content that is not a policy document.
    #[error("revision {id}: stored content is not a policy: {reason}")]
    BadContent {
        /// The revision id.
        id: i64,
        /// Why.
        reason: String,
    },
}

/// A lifecycle operation (commit, rollback, confirm, revert) was refused or failed.
///
/// Unless a variant says otherwise, the running revision, the published table and the store are
/// exactly as they were before the call.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The policy does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The policy would cut the management path.
    #[error("policy refused: it would cut the management path: {0}")]
    ManagementPath(String),
    /// Commits need a non-empty reason (and a non-empty author).
    #[error("{0} must not be empty")]
    MissingField(&'static str),
    /// Publishing to the data plane failed; the store was not changed.
    #[error("publish failed: {0}")]
    Publish(String),
    /// The store failed. If publishing had already happened, the previous table was re-published.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log failed. The mutation was undone (store rolled back, previous table
    /// re-published) because an unaudited mutation must not stand.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Confirm or commit while another commit awaits confirmation, or confirm with none pending.
    #[error("commit-confirm: {0}")]
    ConfirmState(String),
    /// Undoing a failed step also failed: the state is described in the message; operators must
    /// look (this is the only variant that does not promise an unchanged state).
    #[error("undo after a failed step also failed: {0}")]
    Inconsistent(String),
}
