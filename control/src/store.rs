//! The revision store: SQLite (bundled) in the data directory, WAL journal, `synchronous=FULL`
//! so that a committed transaction is on disk before the call returns.
//!
//! Revisions are immutable rows (triggers refuse UPDATE and DELETE): id, content hash (sha256 of
//! the canonical policy JSON), parent, author, mandatory non-empty reason, timestamp, kind and the
//! canonical content. A one-row `state` table holds the running revision and any pending
//! commit-confirm. The schema is migrated by `PRAGMA user_version`; a database from a newer
//! build is refused rather than guessed at.
//!
//! Never: change a stored revision; load a revision whose content does not match its hash
//! (fail closed).

use std::fs;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::audit::record::sha256_hex;
use crate::error::StoreError;
use crate::policy::{Format, ValidatedPolicy, parse_policy};

/// The database file name inside the data directory.
pub const DB_FILE: &str = "septa.db";

/// Schema migrations; entry `i` moves `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: revisions and the running state.
    "CREATE TABLE revisions (
        id          INTEGER PRIMARY KEY,
        hash        TEXT    NOT NULL CHECK (length(hash) = 64),
        parent      INTEGER REFERENCES revisions(id),
        author      TEXT    NOT NULL CHECK (length(author) > 0),
        reason      TEXT    NOT NULL CHECK (length(trim(reason)) > 0),
        created_ms  INTEGER NOT NULL,
        kind        TEXT    NOT NULL CHECK (kind IN ('commit', 'rollback', 'stage')),
        content     BLOB    NOT NULL
     );
     CREATE TRIGGER revisions_no_update BEFORE UPDATE ON revisions
       BEGIN SELECT RAISE(ABORT, 'revisions are immutable'); END;
     CREATE TRIGGER revisions_no_delete BEFORE DELETE ON revisions
       BEGIN SELECT RAISE(ABORT, 'revisions are immutable'); END;
     CREATE TABLE state (
        singleton            INTEGER PRIMARY KEY CHECK (singleton = 1),
        running              INTEGER REFERENCES revisions(id),
        pending              INTEGER REFERENCES revisions(id),
        confirm_deadline_ms  INTEGER,
        revert_to            INTEGER REFERENCES revisions(id)
     );
     INSERT INTO state (singleton) VALUES (1);",
    // 2: listing by time.
    "CREATE INDEX revisions_created ON revisions (created_ms);",
    // 3: API principals (`crate::api::auth`): local users (argon2 PHC strings) and API tokens
    // (sha256 of the secret only; the secret is shown once and never stored).
    "CREATE TABLE users (
        name         TEXT    PRIMARY KEY CHECK (length(name) > 0),
        role         TEXT    NOT NULL,
        password     TEXT    NOT NULL,
        created_ms   INTEGER NOT NULL
     );
     CREATE TABLE api_tokens (
        id           TEXT    PRIMARY KEY CHECK (length(id) > 0),
        secret_hash  TEXT    NOT NULL UNIQUE CHECK (length(secret_hash) = 64),
        role         TEXT    NOT NULL,
        created_by   TEXT    NOT NULL,
        created_ms   INTEGER NOT NULL,
        expires_ms   INTEGER
     );",
    // 4: console sessions (`crate::api::auth`), so a restart does not sign everyone out. Only the
    // sha256 of the session id is stored (the cookie value never is); rows past `expires_ms` are
    // deleted on open and whenever a session starts.
    "CREATE TABLE sessions (
        key          TEXT    PRIMARY KEY CHECK (length(key) = 64),
        user         TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        role         TEXT    NOT NULL,
        csrf         TEXT    NOT NULL,
        created_ms   INTEGER NOT NULL,
        expires_ms   INTEGER NOT NULL
     );
     CREATE INDEX sessions_user ON sessions (user);",
    // 5: the policy text as submitted (YAML or JSON, the operator's comments kept) next to the
    // canonical content. NULL for revisions made before this migration and for policies sent as
    // a JSON object; the immutability triggers cover these columns too.
    "ALTER TABLE revisions ADD COLUMN source BLOB;
     ALTER TABLE revisions ADD COLUMN source_format TEXT
        CHECK (source_format IS NULL OR source_format IN ('yaml', 'json'));",
];

/// How a revision came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevisionKind {
    /// A new policy, published.
    Commit,
    /// A copy of an older revision's content, published.
    Rollback,
    /// Stored for evaluation, not published.
    Stage,
}

impl RevisionKind {
    fn as_str(self) -> &'static str {
        match self {
            RevisionKind::Commit => "commit",
            RevisionKind::Rollback => "rollback",
            RevisionKind::Stage => "stage",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "commit" => Some(RevisionKind::Commit),
            "rollback" => Some(RevisionKind::Rollback),
            "stage" => Some(RevisionKind::Stage),
            _ => None,
        }
    }
}

/// A revision's metadata.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RevisionInfo {
    /// 1, 2, ... in commit order.
    pub id: i64,
    /// sha256 of the canonical content, hex.
    pub hash: String,
    /// The revision that was running when this one was made.
    pub parent: Option<i64>,
    /// Who made it (`user:alice`, `token:ci`).
    pub author: String,
    /// Why.
    pub reason: String,
    /// When (Unix ms).
    pub created_ms: i64,
    /// How.
    pub kind: RevisionKind,
}

/// A revision with its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// Metadata.
    pub info: RevisionInfo,
    /// Canonical JSON of the policy.
    pub content: Vec<u8>,
}

impl Revision {
    /// Re-validates the stored content, refusing content that does not match its hash.
    pub fn policy(&self) -> Result<ValidatedPolicy, StoreError> {
        if sha256_hex(&self.content) != self.info.hash {
            return Err(StoreError::Corrupt { id: self.info.id });
        }
        let text = std::str::from_utf8(&self.content).map_err(|_| StoreError::BadContent {
            id: self.info.id,
            reason: "not UTF-8".into(),
        })?;
        parse_policy(text, Format::Json).map_err(|e| StoreError::BadContent {
            id: self.info.id,
            reason: e.to_string(),
        })
    }
}

/// The policy text a revision was made from, byte for byte as submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionSource {
    /// The text.
    pub text: String,
    /// Its syntax.
    pub format: Format,
}

fn format_str(f: Format) -> &'static str {
    match f {
        Format::Yaml => "yaml",
        Format::Json => "json",
    }
}

/// A commit waiting for confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PendingConfirm {
    /// The unconfirmed (running) revision.
    pub revision: i64,
    /// When it reverts (Unix ms).
    pub deadline_ms: i64,
    /// What it reverts to.
    pub revert_to: i64,
}

/// The running revision and any pending confirmation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct State {
    /// The revision the data plane enforces.
    pub running: Option<i64>,
    /// A commit awaiting confirmation.
    pub pending: Option<PendingConfirm>,
}

/// A revision to insert.
#[derive(Clone, Debug)]
pub struct NewRevision {
    /// Canonical content.
    pub content: Vec<u8>,
    /// Parent (the running revision).
    pub parent: Option<i64>,
    /// Author.
    pub author: String,
    /// Reason (non-empty).
    pub reason: String,
    /// Timestamp.
    pub created_ms: i64,
    /// Kind.
    pub kind: RevisionKind,
    /// The submitted text, when there was one.
    pub source: Option<RevisionSource>,
}

/// The store. One writer (the lifecycle) owns it.
#[derive(Debug)]
pub struct RevisionStore {
    conn: Connection,
}

fn row_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<RevisionInfo> {
    let kind: String = row.get(6)?;
    Ok(RevisionInfo {
        id: row.get(0)?,
        hash: row.get(1)?,
        parent: row.get(2)?,
        author: row.get(3)?,
        reason: row.get(4)?,
        created_ms: row.get(5)?,
        kind: RevisionKind::parse(&kind).unwrap_or(RevisionKind::Stage),
    })
}

const INFO_COLS: &str = "id, hash, parent, author, reason, created_ms, kind";

impl RevisionStore {
    /// Opens (creating and migrating as needed) `DATA_DIR/septa.db`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = RevisionStore { conn };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let current: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let supported = Self::schema_version();
        if current > supported {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Starts a write transaction; nothing is visible or durable until [`StoreTx::commit`].
    pub fn begin(&mut self) -> Result<StoreTx<'_>, StoreError> {
        Ok(StoreTx {
            tx: self.conn.transaction()?,
        })
    }

    /// The running revision and pending confirmation.
    pub fn state(&self) -> Result<State, StoreError> {
        read_state(&self.conn)
    }

    /// One revision with its content.
    pub fn get(&self, id: i64) -> Result<Revision, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {INFO_COLS}, content FROM revisions WHERE id = ?1"),
                [id],
                |row| {
                    Ok(Revision {
                        info: row_info(row)?,
                        content: row.get(7)?,
                    })
                },
            )
            .optional()?
            .ok_or(StoreError::NoSuchRevision(id))
    }

    /// The text revision `id` was made from; `None` when it predates migration 5 or was
    /// submitted as a JSON object. A missing revision is [`StoreError::NoSuchRevision`].
    pub fn source(&self, id: i64) -> Result<Option<RevisionSource>, StoreError> {
        let (text, format): (Option<Vec<u8>>, Option<String>) = self
            .conn
            .query_row(
                "SELECT source, source_format FROM revisions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or(StoreError::NoSuchRevision(id))?;
        let (Some(text), Some(format)) = (text, format) else {
            return Ok(None);
        };
        let text = String::from_utf8(text).map_err(|_| StoreError::BadContent {
            id,
            reason: "source text is not UTF-8".into(),
        })?;
        let format = match format.as_str() {
            "json" => Format::Json,
            _ => Format::Yaml,
        };
        Ok(Some(RevisionSource { text, format }))
    }

    /// Every revision's metadata, oldest first.
    pub fn list(&self) -> Result<Vec<RevisionInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {INFO_COLS} FROM revisions ORDER BY id"))?;
        let rows = stmt.query_map([], row_info)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The running revision and its validated policy; `None` before the first commit. Content
    /// that does not match its hash or no longer validates is an error (fail closed).
    pub fn load_running(&self) -> Result<Option<(Revision, ValidatedPolicy)>, StoreError> {
        let Some(id) = self.state()?.running else {
            return Ok(None);
        };
        let rev = self.get(id)?;
        let policy = rev.policy()?;
        Ok(Some((rev, policy)))
    }
}

fn read_state(conn: &Connection) -> Result<State, StoreError> {
    Ok(conn.query_row(
        "SELECT running, pending, confirm_deadline_ms, revert_to FROM state WHERE singleton = 1",
        [],
        |r| {
            let pending: Option<i64> = r.get(1)?;
            let deadline: Option<i64> = r.get(2)?;
            let revert: Option<i64> = r.get(3)?;
            Ok(State {
                running: r.get(0)?,
                pending: match (pending, deadline, revert) {
                    (Some(revision), Some(deadline_ms), Some(revert_to)) => Some(PendingConfirm {
                        revision,
                        deadline_ms,
                        revert_to,
                    }),
                    _ => None,
                },
            })
        },
    )?)
}

/// An open write transaction.
pub struct StoreTx<'a> {
    tx: Transaction<'a>,
}

impl StoreTx<'_> {
    /// Inserts a revision and returns its metadata.
    pub fn insert(&self, new: &NewRevision) -> Result<RevisionInfo, StoreError> {
        let hash = sha256_hex(&new.content);
        self.tx.execute(
            "INSERT INTO revisions
                (hash, parent, author, reason, created_ms, kind, content, source, source_format)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                hash,
                new.parent,
                new.author,
                new.reason,
                new.created_ms,
                new.kind.as_str(),
                new.content,
                new.source.as_ref().map(|s| s.text.as_bytes()),
                new.source.as_ref().map(|s| format_str(s.format)),
            ],
        )?;
        Ok(RevisionInfo {
            id: self.tx.last_insert_rowid(),
            hash,
            parent: new.parent,
            author: new.author.clone(),
            reason: new.reason.clone(),
            created_ms: new.created_ms,
            kind: new.kind,
        })
    }

    /// Replaces the running state.
    pub fn set_state(&self, s: &State) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE state SET running = ?1, pending = ?2, confirm_deadline_ms = ?3, revert_to = ?4 WHERE singleton = 1",
            params![
                s.running,
                s.pending.map(|p| p.revision),
                s.pending.map(|p| p.deadline_ms),
                s.pending.map(|p| p.revert_to)
            ],
        )?;
        Ok(())
    }

    /// Makes the transaction durable (fsynced, `synchronous=FULL`).
    pub fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_rev(content: &[u8], reason: &str) -> NewRevision {
        NewRevision {
            content: content.to_vec(),
            parent: None,
            author: "user:alice".into(),
            reason: reason.into(),
            created_ms: 1,
            kind: RevisionKind::Commit,
            source: None,
        }
    }

    #[test]
    fn revisions_are_immutable_and_reasons_mandatory() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = RevisionStore::open(tmp.path()).unwrap();
        let tx = s.begin().unwrap();
        let info = tx.insert(&new_rev(b"{}", "first")).unwrap();
        tx.set_state(&State {
            running: Some(info.id),
            pending: None,
        })
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(info.hash, sha256_hex(b"{}"));
        assert!(
            s.conn
                .execute("UPDATE revisions SET reason = 'x'", [])
                .is_err()
        );
        assert!(s.conn.execute("DELETE FROM revisions", []).is_err());
        let tx = s.begin().unwrap();
        assert!(
            tx.insert(&new_rev(b"{}", "  ")).is_err(),
            "blank reason refused by the schema"
        );
        drop(tx);
        assert_eq!(s.list().unwrap().len(), 1);
        assert_eq!(s.state().unwrap().running, Some(1));
    }

    #[test]
    fn uncommitted_transactions_leave_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = RevisionStore::open(tmp.path()).unwrap();
        {
            let tx = s.begin().unwrap();
            let info = tx.insert(&new_rev(b"{}", "r")).unwrap();
            tx.set_state(&State {
                running: Some(info.id),
                pending: None,
            })
            .unwrap();
        }
        assert!(s.list().unwrap().is_empty());
        assert_eq!(s.state().unwrap(), State::default());
    }

    #[test]
    fn migrations_are_versioned_and_newer_schemas_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(RevisionStore::open(tmp.path()).unwrap());
        let conn = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, RevisionStore::schema_version());
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // Reopening does not re-run migrations.
        drop(RevisionStore::open(tmp.path()).unwrap());
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            RevisionStore::open(tmp.path()),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn an_older_schema_is_migrated_forward_keeping_its_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let conn = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO revisions (hash, parent, author, reason, created_ms, kind, content)
             VALUES (?1, NULL, 'user:old', 'from v1', 5, 'commit', x'7b7d')",
            [sha256_hex(b"{}")],
        )
        .unwrap();
        drop(conn);
        let s = RevisionStore::open(tmp.path()).unwrap();
        let v: i64 = s
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, RevisionStore::schema_version());
        let index: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'revisions_created'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
        assert_eq!(s.list().unwrap()[0].reason, "from v1");
    }

    #[test]
    fn migration_3_adds_the_api_principal_tables() {
        let dir = tempfile::tempdir().unwrap();
        let _store = RevisionStore::open(dir.path()).unwrap();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        for table in ["users", "api_tokens"] {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{table}");
        }
        // Only hashes of token secrets fit the column.
        let err = conn.execute(
            "INSERT INTO api_tokens (id, secret_hash, role, created_by, created_ms) VALUES ('t', 'short', 'viewer', 'x', 0)",
            [],
        );
        assert!(err.is_err());
    }

    #[test]
    fn migration_5_keeps_old_rows_without_source_and_stores_new_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let conn = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO revisions (hash, parent, author, reason, created_ms, kind, content)
             VALUES (?1, NULL, 'user:old', 'from v4', 5, 'commit', x'7b7d')",
            [sha256_hex(b"{}")],
        )
        .unwrap();
        drop(conn);
        let mut s = RevisionStore::open(tmp.path()).unwrap();
        assert_eq!(s.source(1).unwrap(), None);
        let text = "# why this zone exists\nkind: Policy\n";
        let tx = s.begin().unwrap();
        let mut new = new_rev(b"{}", "with text");
        new.source = Some(RevisionSource {
            text: text.into(),
            format: Format::Yaml,
        });
        let info = tx.insert(&new).unwrap();
        tx.commit().unwrap();
        let src = s.source(info.id).unwrap().unwrap();
        assert_eq!((src.text.as_str(), src.format), (text, Format::Yaml));
        assert!(matches!(s.source(99), Err(StoreError::NoSuchRevision(99))));
        // The immutability triggers cover the new columns.
        assert!(
            s.conn
                .execute("UPDATE revisions SET source = NULL", [])
                .is_err()
        );
    }

    #[test]
    fn corrupt_content_is_not_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = RevisionStore::open(tmp.path()).unwrap();
        let tx = s.begin().unwrap();
        let info = tx
            .insert(&new_rev(b"{\"not\": \"a policy\"}", "r"))
            .unwrap();
        tx.set_state(&State {
            running: Some(info.id),
            pending: None,
        })
        .unwrap();
        tx.commit().unwrap();
        assert!(matches!(
            s.load_running(),
            Err(StoreError::BadContent { .. })
        ));
        // Tamper with the content behind the triggers' back.
        s.conn
            .execute_batch(
                "DROP TRIGGER revisions_no_update; UPDATE revisions SET content = x'7b7d';",
            )
            .unwrap();
        assert!(matches!(
            s.load_running(),
            Err(StoreError::Corrupt { id: 1 })
        ));
    }
}
