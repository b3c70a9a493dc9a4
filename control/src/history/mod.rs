//! Flow history: what the appliance observed, aggregated per (source endpoint, destination
//! endpoint, protocol, destination port, L7 label), kept on the box in SQLite.
//!
//! Each aggregate holds first/last seen, flow/packet/byte counts, per-verdict counts (allowed,
//! denied, would-deny) and the rule id and revision of its latest verdict. Rule usage (hits and
//! last hit per policy clause, see [`usage`]) lives in the same database.
//!
//! **Storage decision.** History lives in its own file, `DATA/history.db`, not in the revision
//! store's `septa.db`: it is high-volume, pruned continuously and observational (it runs with
//! `synchronous=NORMAL`: a power loss may lose the last batch, never corrupts the file), whereas
//! `septa.db` holds acknowledged, immutable revisions with `synchronous=FULL`. Separate files also
//! keep ingest off the revision store's write lock. The schema uses the same scheme as
//! [`crate::store`]: a `MIGRATIONS` list applied by `PRAGMA user_version`, and a database from a
//! newer build is refused.
//!
//! **Layout: append-only batch aggregates.** An ingest batch is aggregated in memory and its
//! aggregates are *appended* (one row per key per batch); reads merge the rows of a key. Each
//! batch's row-id range is kept in `flow_batch` (one row per batch) for retention, so rows carry
//! no index besides their row id (an index on the batch time cost about a fifth of each
//! insert). Updating
//! one row per key in place was measured first: with high-cardinality traffic each batch then
//! rewrites pages all over the B-tree (WAL write amplification) and ingest ran at ~20 k
//! records/s; appending keeps writes sequential. The cost moves to reads (a sort and merge), which
//! serve offline work (recommendations, evidence).
//!
//! Bounds, applied at the end of every batch: rows of batches older than `retention_ms` before
//! the newest record are dropped, then beyond `max_rows` rows the oldest batches go first. Nothing
//! here sends data anywhere (data residency): exports are separate and off unless configured.
//!
//! Input is [`ObservedFlow`]; the API's [`crate::api::flows::FlowRecord`] converts into it.

pub mod feed;
pub mod usage;

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::Path;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::api::flows::FlowRecord;

/// The history database file name inside the data directory.
pub const HISTORY_DB_FILE: &str = "history.db";

/// Schema migrations; entry `i` moves `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: flow aggregates and rule usage.
    "CREATE TABLE flow_agg (
        id          INTEGER PRIMARY KEY,
        batch_ms    INTEGER NOT NULL,
        src         BLOB    NOT NULL,
        dst         BLOB    NOT NULL,
        proto       INTEGER NOT NULL,
        dport       INTEGER NOT NULL,
        l7          TEXT    NOT NULL,
        first_ms    INTEGER NOT NULL,
        last_ms     INTEGER NOT NULL,
        flows       INTEGER NOT NULL,
        packets     INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        allowed     INTEGER NOT NULL,
        denied      INTEGER NOT NULL,
        would_deny  INTEGER NOT NULL,
        last_rule   INTEGER NOT NULL,
        last_revision TEXT  NOT NULL
     );
     CREATE INDEX flow_agg_batch ON flow_agg (batch_ms);
     CREATE TABLE rule_usage (
        policy      TEXT    NOT NULL,
        clause      TEXT    NOT NULL,
        text        TEXT    NOT NULL,
        hits        INTEGER NOT NULL,
        first_ms    INTEGER NOT NULL,
        last_ms     INTEGER NOT NULL,
        last_revision TEXT  NOT NULL,
        PRIMARY KEY (policy, clause)
     ) WITHOUT ROWID;",
    // 2: retention finds batches in a small table of row-id ranges instead of an index on every
    // row (the index cost about a fifth of each insert). Existing rows are grouped by batch.
    "CREATE TABLE flow_batch (
        first_id    INTEGER PRIMARY KEY,
        last_id     INTEGER NOT NULL,
        batch_ms    INTEGER NOT NULL
     );
     INSERT INTO flow_batch (first_id, last_id, batch_ms)
        SELECT min(id), max(id), batch_ms FROM flow_agg GROUP BY batch_ms;
     CREATE INDEX flow_batch_ms ON flow_batch (batch_ms);
     DROP INDEX flow_agg_batch;",
];

/// A history (or rule-usage) database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite reported an error.
    #[error("flow history: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be prepared.
    #[error("flow history I/O on {path}: {source}")]
    Io {
        /// The path involved.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database was written by a newer Septa.
    #[error("flow history schema version {found} is newer than this build ({supported})")]
    SchemaTooNew {
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
}

/// What the data plane did with a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowVerdict {
    /// Forwarded by an allow (or inspect) clause.
    Allowed,
    /// Dropped by an enforce-mode deny.
    Denied,
    /// Forwarded, but a monitor-mode deny would have dropped it.
    WouldDeny,
}

impl FlowVerdict {
    /// From the data plane's `action` (`allow`/`deny`/`inspect`) and `mode` (`enforce`/`monitor`).
    pub fn from_action(action: &str, mode: &str) -> Option<Self> {
        match (action, mode) {
            ("allow" | "inspect", "enforce" | "monitor") => Some(FlowVerdict::Allowed),
            ("deny", "enforce") => Some(FlowVerdict::Denied),
            ("deny", "monitor") => Some(FlowVerdict::WouldDeny),
            _ => None,
        }
    }
}

/// One observed flow, as history ingests it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedFlow {
    /// When it was reported (Unix ms).
    pub ts_ms: i64,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Destination port (0 for protocols without ports).
    pub dport: u16,
    /// L7 label (e.g. `modbus:read_coils`); empty when none.
    pub l7: String,
    /// The verdict.
    pub verdict: FlowVerdict,
    /// The deciding rule id.
    pub rule: u32,
    /// Content hash of the deciding revision.
    pub revision: String,
    /// Flows this record counts: 1 for a new flow or a refusal, 0 for a record that only
    /// reports the counters of a flow already counted (its end).
    pub flows: u64,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Why a [`FlowRecord`] could not become an [`ObservedFlow`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlowRecordError {
    /// An address did not parse.
    #[error("flow record field {field}: {value:?} is not an IP address")]
    Address {
        /// `src` or `dst`.
        field: &'static str,
        /// What was there.
        value: String,
    },
    /// Action/mode pair not known.
    #[error("flow record: unknown action/mode {action:?}/{mode:?}")]
    Verdict {
        /// Action.
        action: String,
        /// Mode.
        mode: String,
    },
}

impl TryFrom<&FlowRecord> for ObservedFlow {
    type Error = FlowRecordError;

    fn try_from(r: &FlowRecord) -> Result<Self, Self::Error> {
        let addr = |field: &'static str, v: &str| {
            v.parse::<IpAddr>().map_err(|_| FlowRecordError::Address {
                field,
                value: v.to_owned(),
            })
        };
        Ok(ObservedFlow {
            ts_ms: r.ts_ms,
            src: addr("src", &r.src)?,
            dst: addr("dst", &r.dst)?,
            proto: r.proto,
            dport: r.dport,
            l7: r.l7.clone(),
            verdict: FlowVerdict::from_action(&r.action, &r.mode).ok_or_else(|| {
                FlowRecordError::Verdict {
                    action: r.action.clone(),
                    mode: r.mode.clone(),
                }
            })?,
            rule: r.rule,
            revision: r.revision.clone(),
            flows: 1,
            packets: r.packets,
            bytes: r.bytes,
        })
    }
}

/// The aggregation key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FlowKeyAgg {
    /// Source endpoint.
    pub src: IpAddr,
    /// Destination endpoint.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Destination port.
    pub dport: u16,
    /// L7 label (empty when none).
    pub l7: String,
}

/// One aggregate row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowAggregate {
    /// Its key.
    #[serde(flatten)]
    pub key: FlowKeyAgg,
    /// First seen (Unix ms).
    pub first_ms: i64,
    /// Last seen (Unix ms).
    pub last_ms: i64,
    /// Flows counted (records with `flows` = 1; an end-of-flow record adds only counters).
    pub flows: u64,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Records with verdict allowed.
    pub allowed: u64,
    /// Records with verdict denied.
    pub denied: u64,
    /// Records with verdict would-deny.
    pub would_deny: u64,
    /// Rule of the latest verdict.
    pub last_rule: u32,
    /// Revision of the latest verdict.
    pub last_revision: String,
}

impl FlowAggregate {
    fn merge(&mut self, o: &FlowAggregate) {
        self.first_ms = self.first_ms.min(o.first_ms);
        if o.last_ms >= self.last_ms {
            self.last_ms = o.last_ms;
            self.last_rule = o.last_rule;
            self.last_revision.clone_from(&o.last_revision);
        }
        self.flows = self.flows.saturating_add(o.flows);
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.allowed = self.allowed.saturating_add(o.allowed);
        self.denied = self.denied.saturating_add(o.denied);
        self.would_deny = self.would_deny.saturating_add(o.would_deny);
    }
}

/// Aggregates flow records in memory, in key order (what one ingest batch writes; also the
/// recommender's input when flows come from elsewhere than the database).
pub fn aggregate(flows: &[ObservedFlow]) -> Vec<FlowAggregate> {
    let mut w = Window::default();
    for f in flows {
        w.add(f);
    }
    w.aggregates()
}

/// The aggregation key inside a [`Window`]: L7 labels interned, so a key is `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct WindowKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    dport: u16,
    /// Index into [`Window::labels`] (0: no label).
    l7: u32,
}

#[derive(Clone, Copy, Debug)]
struct Acc {
    first_ms: i64,
    last_ms: i64,
    flows: u64,
    packets: u64,
    bytes: u64,
    allowed: u64,
    denied: u64,
    would_deny: u64,
    last_rule: u32,
    /// Index into [`Window::revisions`].
    last_revision: u32,
}

/// An in-memory aggregation window: flow records folded per key as they arrive, written to
/// the history as one batch ([`FlowHistory::write`]) and reused ([`Window::clear`] keeps the
/// map's capacity).
///
/// No allocation per record: the key is a copy of the record's addresses, protocol and port
/// with its L7 label and revision interned (a window sees a handful of each); only a label or
/// revision not seen before is copied. Rule hits are summed per (revision, rule id) alongside,
/// for rule usage.
#[derive(Debug, Default)]
pub struct Window {
    map: HashMap<WindowKey, Acc>,
    /// Interned L7 labels; index 0 is the empty label.
    labels: Vec<String>,
    /// Interned revision hashes.
    revisions: Vec<String>,
    /// Decisions per (revision index, rule id).
    hits: HashMap<(u32, u32), usage::RuleHits>,
    records: u64,
    newest: i64,
}

fn intern(list: &mut Vec<String>, s: &str) -> u32 {
    let i = match list.iter().rposition(|x| x == s) {
        Some(i) => i,
        None => {
            list.push(s.to_owned());
            list.len() - 1
        }
    };
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl Window {
    /// An empty window with room for `keys` keys (no rehashing while it fills).
    pub fn with_capacity(keys: usize) -> Self {
        Window {
            map: HashMap::with_capacity(keys),
            ..Window::default()
        }
    }

    /// Folds one record in.
    pub fn add(&mut self, f: &ObservedFlow) {
        if self.labels.is_empty() {
            self.labels.push(String::new());
        }
        let l7 = if f.l7.is_empty() {
            0
        } else {
            intern(&mut self.labels, &f.l7)
        };
        let rev = match self.revisions.last() {
            Some(r) if *r == f.revision => u32::try_from(self.revisions.len() - 1).unwrap_or(0),
            _ => intern(&mut self.revisions, &f.revision),
        };
        if self.records == 0 || f.ts_ms > self.newest {
            self.newest = f.ts_ms;
        }
        self.records += 1;
        let key = WindowKey {
            src: f.src,
            dst: f.dst,
            proto: f.proto,
            dport: f.dport,
            l7,
        };
        let a = self.map.entry(key).or_insert(Acc {
            first_ms: f.ts_ms,
            last_ms: f.ts_ms,
            flows: 0,
            packets: 0,
            bytes: 0,
            allowed: 0,
            denied: 0,
            would_deny: 0,
            last_rule: f.rule,
            last_revision: rev,
        });
        a.first_ms = a.first_ms.min(f.ts_ms);
        if f.ts_ms >= a.last_ms {
            a.last_ms = f.ts_ms;
            a.last_rule = f.rule;
            a.last_revision = rev;
        }
        a.flows = a.flows.saturating_add(f.flows);
        a.packets = a.packets.saturating_add(f.packets);
        a.bytes = a.bytes.saturating_add(f.bytes);
        let n = f.flows;
        match f.verdict {
            FlowVerdict::Allowed => a.allowed = a.allowed.saturating_add(n),
            FlowVerdict::Denied => a.denied = a.denied.saturating_add(n),
            FlowVerdict::WouldDeny => a.would_deny = a.would_deny.saturating_add(n),
        }
        // Records that only report a counted flow's end are not decisions: not hits.
        if f.flows > 0 {
            self.hits
                .entry((rev, f.rule))
                .or_insert(usage::RuleHits {
                    rule: f.rule,
                    hits: 0,
                    first_ms: f.ts_ms,
                    last_ms: f.ts_ms,
                })
                .add(f.ts_ms, 1);
        }
    }

    /// Distinct keys held.
    pub fn keys(&self) -> usize {
        self.map.len()
    }

    /// Records folded in since the last [`Window::clear`].
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether no record was folded in.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The newest record's timestamp (Unix ms), if any.
    pub fn newest_ms(&self) -> Option<i64> {
        (self.records > 0).then_some(self.newest)
    }

    /// Rule hits per revision hash: `(revision, hits per rule id)`.
    pub fn rule_hits(&self) -> Vec<(&str, Vec<usage::RuleHits>)> {
        let mut out: Vec<(&str, Vec<usage::RuleHits>)> = Vec::new();
        for (&(rev, _), h) in &self.hits {
            let name = self.revisions[rev as usize].as_str();
            match out.iter_mut().find(|(r, _)| *r == name) {
                Some((_, v)) => v.push(*h),
                None => out.push((name, vec![*h])),
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (_, v) in &mut out {
            v.sort_unstable_by_key(|h| h.rule);
        }
        out
    }

    /// Empties the window, keeping its allocations.
    pub fn clear(&mut self) {
        self.map.clear();
        self.hits.clear();
        self.revisions.clear();
        self.labels.truncate(1);
        self.records = 0;
        self.newest = 0;
    }

    /// The keys in order (deterministic; also keeps B-tree inserts local).
    fn sorted(&self) -> Vec<(WindowKey, Acc)> {
        let mut rows: Vec<(WindowKey, Acc)> = self.map.iter().map(|(k, a)| (*k, *a)).collect();
        // Same order as `FlowKeyAgg`'s: the label's text, not its index.
        rows.sort_unstable_by(|a, b| {
            (a.0.src, a.0.dst, a.0.proto, a.0.dport)
                .cmp(&(b.0.src, b.0.dst, b.0.proto, b.0.dport))
                .then_with(|| self.labels[a.0.l7 as usize].cmp(&self.labels[b.0.l7 as usize]))
        });
        rows
    }

    /// The aggregates, in key order.
    pub fn aggregates(&self) -> Vec<FlowAggregate> {
        self.sorted()
            .into_iter()
            .map(|(k, a)| FlowAggregate {
                key: FlowKeyAgg {
                    src: k.src,
                    dst: k.dst,
                    proto: k.proto,
                    dport: k.dport,
                    l7: self.labels[k.l7 as usize].clone(),
                },
                first_ms: a.first_ms,
                last_ms: a.last_ms,
                flows: a.flows,
                packets: a.packets,
                bytes: a.bytes,
                allowed: a.allowed,
                denied: a.denied,
                would_deny: a.would_deny,
                last_rule: a.last_rule,
                last_revision: self.revisions[a.last_revision as usize].clone(),
            })
            .collect()
    }
}

/// Bounds of the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Most rows kept (one per key per ingest batch).
    pub max_rows: u64,
    /// Rows of batches older than this (relative to the newest record) are dropped.
    pub retention_ms: i64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_rows: 2_000_000,
            retention_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

/// What one ingest did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Records taken in.
    pub records: u64,
    /// Aggregate rows written (one per distinct key in the batch).
    pub rows: u64,
    /// Rows dropped by retention.
    pub expired: u64,
    /// Rows dropped by the row bound (oldest batches first).
    pub evicted: u64,
}

/// The flow history database.
#[derive(Debug)]
pub struct FlowHistory {
    conn: Connection,
    cfg: HistoryConfig,
    rows: u64,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn open_db(data_dir: &Path) -> Result<Connection, HistoryError> {
    fs::create_dir_all(data_dir).map_err(|e| HistoryError::Io {
        path: data_dir.to_path_buf(),
        source: e,
    })?;
    let mut conn = Connection::open(data_dir.join(HISTORY_DB_FILE))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Ingest touches aggregates all over the key space: keep the hot B-tree pages in memory.
    conn.pragma_update(None, "cache_size", -65_536)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(HistoryError::SchemaTooNew {
            found: version,
            supported: latest,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(conn)
}

/// Addresses are stored as 4 (IPv4) or 16 (IPv6) raw octets: small keys, no formatting.
fn octets(a: IpAddr, buf: &mut [u8; 16]) -> &[u8] {
    match a {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.octets());
            &buf[..4]
        }
        IpAddr::V6(a) => {
            *buf = a.octets();
            &buf[..]
        }
    }
}

fn addr_of_blob(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn row_agg(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlowAggregate> {
    let parse = |i: usize| -> rusqlite::Result<IpAddr> {
        let b: Vec<u8> = r.get(i)?;
        addr_of_blob(&b).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Blob,
                format!("{} bytes is not an IPv4 or IPv6 address", b.len()).into(),
            )
        })
    };
    Ok(FlowAggregate {
        key: FlowKeyAgg {
            src: parse(0)?,
            dst: parse(1)?,
            proto: r.get(2)?,
            dport: r.get(3)?,
            l7: r.get(4)?,
        },
        first_ms: r.get(5)?,
        last_ms: r.get(6)?,
        flows: u64_of(r.get(7)?),
        packets: u64_of(r.get(8)?),
        bytes: u64_of(r.get(9)?),
        allowed: u64_of(r.get(10)?),
        denied: u64_of(r.get(11)?),
        would_deny: u64_of(r.get(12)?),
        last_rule: r.get(13)?,
        last_revision: r.get(14)?,
    })
}

const SELECT: &str = "SELECT src, dst, proto, dport, l7, first_ms, last_ms, flows, packets, bytes,
    allowed, denied, would_deny, last_rule, last_revision FROM flow_agg";

impl FlowHistory {
    /// Opens (creating or migrating) `DATA/history.db`.
    pub fn open(data_dir: &Path, cfg: HistoryConfig) -> Result<Self, HistoryError> {
        let conn = open_db(data_dir)?;
        let rows: i64 = conn.query_row("SELECT count(*) FROM flow_agg", [], |r| r.get(0))?;
        Ok(FlowHistory {
            conn,
            cfg,
            rows: u64_of(rows),
        })
    }

    /// The bounds in force.
    pub fn config(&self) -> HistoryConfig {
        self.cfg
    }

    /// Rows stored (one per key per ingest batch; the size bound counts these).
    pub fn len(&self) -> u64 {
        self.rows
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Ingests a batch in one transaction: records are aggregated in memory first (a
    /// [`Window`]), then written with [`FlowHistory::write`].
    pub fn ingest(&mut self, batch: &[ObservedFlow]) -> Result<IngestReport, HistoryError> {
        let mut w = Window::default();
        for f in batch {
            w.add(f);
        }
        self.write(&w)
    }

    /// Writes a window in one transaction: one appended row per key (prepared statement, keys
    /// in order), then retention and the row bound are applied.
    pub fn write(&mut self, w: &Window) -> Result<IngestReport, HistoryError> {
        let mut rep = IngestReport {
            records: w.records(),
            ..IngestReport::default()
        };
        let Some(newest) = w.newest_ms() else {
            return Ok(rep);
        };
        let rows = w.sorted();
        let tx = self.conn.transaction()?;
        let mut first_id = None;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO flow_agg (batch_ms, src, dst, proto, dport, l7, first_ms, last_ms,
                    flows, packets, bytes, allowed, denied, would_deny, last_rule, last_revision)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            let (mut sb, mut db) = ([0u8; 16], [0u8; 16]);
            for (i, (k, a)) in rows.iter().enumerate() {
                insert.execute(params![
                    newest,
                    octets(k.src, &mut sb),
                    octets(k.dst, &mut db),
                    k.proto,
                    k.dport,
                    w.labels[k.l7 as usize],
                    a.first_ms,
                    a.last_ms,
                    i64_of(a.flows),
                    i64_of(a.packets),
                    i64_of(a.bytes),
                    i64_of(a.allowed),
                    i64_of(a.denied),
                    i64_of(a.would_deny),
                    a.last_rule,
                    w.revisions[a.last_revision as usize],
                ])?;
                if i == 0 {
                    first_id = Some(tx.last_insert_rowid());
                }
            }
        }
        rep.rows = rows.len() as u64;
        if let Some(first) = first_id {
            tx.prepare_cached(
                "INSERT INTO flow_batch (first_id, last_id, batch_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![first, tx.last_insert_rowid(), newest])?;
        }
        let cutoff = newest.saturating_sub(self.cfg.retention_ms);
        {
            let mut expired =
                tx.prepare_cached("SELECT first_id, last_id FROM flow_batch WHERE batch_ms < ?1")?;
            let ranges = expired
                .query_map([cutoff], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut delete =
                tx.prepare_cached("DELETE FROM flow_agg WHERE id BETWEEN ?1 AND ?2")?;
            for (a, b) in ranges {
                rep.expired += delete.execute([a, b])? as u64;
            }
        }
        tx.execute("DELETE FROM flow_batch WHERE batch_ms < ?1", [cutoff])?;
        let rows_now = (self.rows + rep.rows).saturating_sub(rep.expired);
        if rows_now > self.cfg.max_rows {
            let excess = i64_of(rows_now - self.cfg.max_rows);
            rep.evicted = tx.execute(
                "DELETE FROM flow_agg WHERE id IN (SELECT id FROM flow_agg ORDER BY id LIMIT ?1)",
                [excess],
            )? as u64;
            tx.execute(
                "DELETE FROM flow_batch
                 WHERE last_id < (SELECT coalesce(min(id), 9223372036854775807) FROM flow_agg)",
                [],
            )?;
        }
        tx.commit()?;
        self.rows = rows_now - rep.evicted;
        Ok(rep)
    }

    /// Aggregates overlapping `[from_ms, to_ms]`, in key order, at most `limit`.
    pub fn query(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<FlowAggregate>, HistoryError> {
        let mut out = Vec::new();
        self.merged(from_ms, to_ms, |a| {
            out.push(a);
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Every aggregate overlapping `[from_ms, to_ms]`, streamed to `f` in key order.
    pub fn for_each(
        &self,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(FlowAggregate),
    ) -> Result<(), HistoryError> {
        self.merged(from_ms, to_ms, |a| {
            f(a);
            true
        })
    }

    /// Rows of the same key (one per ingest batch) merged in write order; `f` returns false to
    /// stop.
    fn merged(
        &self,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(FlowAggregate) -> bool,
    ) -> Result<(), HistoryError> {
        let mut st = self.conn.prepare_cached(&format!(
            "{SELECT} WHERE last_ms >= ?1 AND first_ms <= ?2 ORDER BY src, dst, proto, dport, l7, id"
        ))?;
        let mut cur: Option<FlowAggregate> = None;
        for r in st.query_map(params![from_ms, to_ms], row_agg)? {
            let r = r?;
            match &mut cur {
                Some(c) if c.key == r.key => c.merge(&r),
                _ => {
                    if let Some(done) = cur.replace(r)
                        && !f(done)
                    {
                        return Ok(());
                    }
                }
            }
        }
        if let Some(done) = cur {
            f(done);
        }
        Ok(())
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests;
