use super::*;
use crate::compile::compile;
use crate::policy::{Format, parse_policy};

fn flow(
    ts: i64,
    src: &str,
    dst: &str,
    dport: u16,
    verdict: FlowVerdict,
    rule: u32,
) -> ObservedFlow {
    ObservedFlow {
        ts_ms: ts,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        dport,
        l7: String::new(),
        verdict,
        rule,
        revision: "rev-a".into(),
        flows: 1,
        packets: 3,
        bytes: 300,
    }
}

fn open(dir: &Path, cfg: HistoryConfig) -> FlowHistory {
    FlowHistory::open(dir, cfg).unwrap()
}

#[test]
fn ingest_aggregates_per_key_with_verdicts_and_last_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open(dir.path(), HistoryConfig::default());
    let rep = h
        .ingest(&[
            flow(1_000, "10.0.0.1", "10.0.0.2", 443, FlowVerdict::Allowed, 1),
            flow(
                3_000,
                "10.0.0.1",
                "10.0.0.2",
                443,
                FlowVerdict::WouldDeny,
                7,
            ),
            flow(2_000, "10.0.0.1", "10.0.0.2", 443, FlowVerdict::Denied, 5),
            flow(2_000, "10.0.0.1", "10.0.0.2", 80, FlowVerdict::Allowed, 2),
        ])
        .unwrap();
    assert_eq!((rep.records, rep.rows), (4, 2));
    let rows = h.query(0, i64::MAX, 10).unwrap();
    assert_eq!(rows.len(), 2);
    let a = rows.iter().find(|r| r.key.dport == 443).unwrap();
    assert_eq!((a.first_ms, a.last_ms), (1_000, 3_000));
    assert_eq!((a.flows, a.packets, a.bytes), (3, 9, 900));
    assert_eq!((a.allowed, a.denied, a.would_deny), (1, 1, 1));
    assert_eq!(a.last_rule, 7, "the latest verdict's rule is kept");

    // A second batch merges with the first on read; an older record does not move last-rule, a
    // newer one does.
    let rep = h
        .ingest(&[flow(
            500,
            "10.0.0.1",
            "10.0.0.2",
            443,
            FlowVerdict::Allowed,
            9,
        )])
        .unwrap();
    assert_eq!(rep.rows, 1);
    let all = h.query(0, i64::MAX, 10).unwrap();
    assert_eq!(all.len(), 2, "still one aggregate per key");
    let a = &all[1];
    assert_eq!(
        (a.first_ms, a.last_ms, a.flows, a.last_rule),
        (500, 3_000, 4, 7)
    );
    assert_eq!(
        (a.allowed, a.denied, a.would_deny, a.bytes),
        (2, 1, 1, 1_200)
    );
    assert_eq!(h.len(), 3, "rows: one per key per batch");
    h.ingest(&[flow(
        4_000,
        "10.0.0.1",
        "10.0.0.2",
        443,
        FlowVerdict::Denied,
        11,
    )])
    .unwrap();
    let a = h.query(0, i64::MAX, 10).unwrap().remove(1);
    assert_eq!((a.last_ms, a.last_rule, a.flows), (4_000, 11, 5));
    // A window that only overlaps the first batch's rows sees only them.
    let early = h.query(0, 900, 10).unwrap();
    assert_eq!(early.len(), 1);
    assert_eq!((early[0].flows, early[0].first_ms), (1, 500));
    assert_eq!(h.query(0, i64::MAX, 1).unwrap().len(), 1, "limit");
}

#[test]
fn history_survives_reopen_and_l7_label_splits_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut h = open(dir.path(), HistoryConfig::default());
        let mut read = flow(10, "10.3.0.1", "10.3.0.9", 502, FlowVerdict::Allowed, 1);
        read.l7 = "modbus:read_coils".into();
        let mut write = read.clone();
        write.l7 = "modbus:write_single_coil".into();
        h.ingest(&[read.clone(), read, write]).unwrap();
    }
    let h = open(dir.path(), HistoryConfig::default());
    assert_eq!(h.len(), 2);
    let rows = h.query(0, i64::MAX, 10).unwrap();
    assert_eq!(rows[0].key.l7, "modbus:read_coils");
    assert_eq!(rows[0].flows, 2);
    assert_eq!(rows[1].key.l7, "modbus:write_single_coil");
}

#[test]
fn retention_and_row_bound_are_enforced_on_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = HistoryConfig {
        max_rows: 3,
        retention_ms: 1_000,
    };
    let mut h = open(dir.path(), cfg);
    for i in 0..5u16 {
        let rep = h
            .ingest(&[flow(
                100 + i64::from(i),
                "10.0.0.1",
                "10.0.0.2",
                1000 + i,
                FlowVerdict::Allowed,
                1,
            )])
            .unwrap();
        assert_eq!(rep.evicted, u64::from(i >= 3), "batch {i}");
    }
    assert_eq!(h.len(), 3);
    let ports: Vec<u16> = h
        .query(0, i64::MAX, 10)
        .unwrap()
        .iter()
        .map(|r| r.key.dport)
        .collect();
    assert_eq!(ports, vec![1002, 1003, 1004], "oldest batches go first");

    // Much later: everything older than the retention expires.
    let rep = h
        .ingest(&[flow(
            5_000,
            "10.0.0.1",
            "10.0.0.2",
            22,
            FlowVerdict::Denied,
            1,
        )])
        .unwrap();
    assert_eq!(rep.expired, 3);
    assert_eq!(h.len(), 1);
    let count: i64 = h
        .conn()
        .query_row("SELECT count(*) FROM flow_agg", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1, "the in-memory row count matches the table");
    drop(h);
    assert_eq!(open(dir.path(), cfg).len(), 1, "and survives reopening");
}

#[test]
fn a_version_1_database_is_migrated_and_its_batches_still_expire() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A history written by the previous schema: rows indexed by batch time, no batch table.
        let conn = Connection::open(dir.path().join(HISTORY_DB_FILE)).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let (src, dst): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for (ts, port) in [(100, 1), (100, 2), (200, 3)] {
            let (mut sb, mut db) = ([0u8; 16], [0u8; 16]);
            conn.execute(
                "INSERT INTO flow_agg (batch_ms, src, dst, proto, dport, l7, first_ms, last_ms,
                    flows, packets, bytes, allowed, denied, would_deny, last_rule, last_revision)
                 VALUES (?1, ?2, ?3, 6, ?4, '', ?1, ?1, 1, 3, 300, 1, 0, 0, 1, 'rev-a')",
                params![ts, octets(src, &mut sb), octets(dst, &mut db), port],
            )
            .unwrap();
        }
    }
    let cfg = HistoryConfig {
        max_rows: 100,
        retention_ms: 1_000,
    };
    let mut h = open(dir.path(), cfg);
    assert_eq!(h.len(), 3);
    let version: i64 = h
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let batches: i64 = h
        .conn()
        .query_row("SELECT count(*) FROM flow_batch", [], |r| r.get(0))
        .unwrap();
    assert_eq!(batches, 2, "the old rows grouped into their two batches");
    // 1,150: the batch of 100 is beyond the retention, the one of 200 is not.
    let rep = h
        .ingest(&[flow(
            1_150,
            "10.0.0.1",
            "10.0.0.2",
            4,
            FlowVerdict::Allowed,
            1,
        )])
        .unwrap();
    assert_eq!((rep.rows, rep.expired), (1, 2));
    let ports: Vec<u16> = h
        .query(0, i64::MAX, 10)
        .unwrap()
        .iter()
        .map(|r| r.key.dport)
        .collect();
    assert_eq!(ports, vec![3, 4]);
    assert_eq!(h.len(), 2);
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), HistoryConfig::default()));
    let conn = Connection::open(dir.path().join(HISTORY_DB_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        FlowHistory::open(dir.path(), HistoryConfig::default()),
        Err(HistoryError::SchemaTooNew { found: 99, .. })
    ));
}

#[test]
fn flow_records_convert_and_bad_ones_are_named() {
    let mut r = FlowRecord {
        ts_ms: 7,
        kind: crate::api::FlowKind::Deny,
        src: "10.0.0.1".into(),
        dst: "fd00::2".into(),
        proto: 17,
        sport: 5353,
        dport: 53,
        action: "deny".into(),
        mode: "monitor".into(),
        rule: 4,
        revision: "h".into(),
        packets: 1,
        bytes: 80,
        total_packets: 0,
        total_bytes: 0,
        clause: "default (no rule matched)".into(),
        l7: "dns".into(),
        l7_reason: String::new(),
    };
    let f = ObservedFlow::try_from(&r).unwrap();
    assert_eq!(f.verdict, FlowVerdict::WouldDeny);
    assert_eq!(f.dst, "fd00::2".parse::<IpAddr>().unwrap());
    assert_eq!(f.l7, "dns", "the record's L7 label keys the history");
    r.src = "10.0.0.300".into();
    assert_eq!(
        ObservedFlow::try_from(&r),
        Err(FlowRecordError::Address {
            field: "src",
            value: "10.0.0.300".into()
        })
    );
    r.src = "10.0.0.1".into();
    r.action = "drop".into();
    assert!(matches!(
        ObservedFlow::try_from(&r),
        Err(FlowRecordError::Verdict { .. })
    ));
}

const POLICY_V1: &str = "apiVersion: septa.io/v1
kind: Policy
metadata: {name: usage}
spec:
  zones:
    - {name: web, subnets: [10.1.0.0/24]}
    - {name: db, subnets: [10.2.0.0/24]}
  conduits:
    - name: web-to-db
      from: [web]
      to: [db]
      services: [{proto: tcp, ports: [5432]}]
    - name: web-ssh
      from: [web]
      to: [db]
      services: [{proto: tcp, ports: [22]}]
";

// The same clauses in another order, plus a new conduit first: rule ids all move.
const POLICY_V2: &str = "apiVersion: septa.io/v1
kind: Policy
metadata: {name: usage}
spec:
  zones:
    - {name: web, subnets: [10.1.0.0/24]}
    - {name: db, subnets: [10.2.0.0/24]}
  conduits:
    - name: db-backup
      from: [db]
      to: [web]
      services: [{proto: tcp, ports: [873]}]
    - name: web-ssh
      from: [web]
      to: [db]
      services: [{proto: tcp, ports: [22]}]
    - name: web-to-db
      from: [web]
      to: [db]
      services: [{proto: tcp, ports: [5432]}]
";

fn decided(compiled: &CompiledPolicy, rev: &str, ts: i64, dport: u16) -> ObservedFlow {
    let key = septa_classifier::FlowKey::v4(
        "10.1.0.5".parse().unwrap(),
        "10.2.0.7".parse().unwrap(),
        6,
        40000,
        dport,
    );
    let e = crate::decide(compiled, rev, &key);
    ObservedFlow {
        ts_ms: ts,
        src: key.src_addr(),
        dst: key.dst_addr(),
        proto: 6,
        dport,
        l7: String::new(),
        verdict: FlowVerdict::from_action(e.action, e.mode).unwrap(),
        rule: e.rule,
        revision: rev.into(),
        flows: 1,
        packets: 1,
        bytes: 60,
    }
}

use crate::compile::CompiledPolicy;

#[test]
fn rule_usage_survives_revisions_and_restarts_and_reports_unused_clauses() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = compile(&parse_policy(POLICY_V1, Format::Yaml).unwrap()).unwrap();
    let v2 = compile(&parse_policy(POLICY_V2, Format::Yaml).unwrap()).unwrap();
    {
        let mut h = open(dir.path(), HistoryConfig::default());
        let flows = [
            decided(&v1, "r1", 100, 5432),
            decided(&v1, "r1", 200, 5432),
            decided(&v1, "r1", 150, 22),
            decided(&v2, "r2", 300, 5432), // another revision's decision: not attributed to v1
        ];
        let rep = h.record_usage(&v1, "r1", &flows).unwrap();
        assert_eq!((rep.attributed, rep.unattributed), (3, 1));
    }
    let mut h = open(dir.path(), HistoryConfig::default());
    let rep = h
        .record_usage(&v2, "r2", &[decided(&v2, "r2", 1_000, 5432)])
        .unwrap();
    assert_eq!(rep.attributed, 1);
    let usage = h.usage().unwrap();
    let db = usage
        .iter()
        .find(|u| u.clause == "conduit/web-to-db/web->db/service[0]")
        .unwrap();
    assert_eq!((db.hits, db.first_ms, db.last_ms), (3, 100, 1_000));
    assert_eq!(db.last_revision, "r2");

    // Since 500 only web-to-db was hit; db-backup never, web-ssh before the window.
    let unused = h.unused(&v2, 500).unwrap();
    let keys: Vec<(&str, Option<i64>)> = unused
        .iter()
        .map(|u| (u.clause.as_str(), u.last_hit_ms))
        .collect();
    assert!(keys.contains(&("conduit/db-backup/db->web/service[0]", None)));
    assert!(keys.contains(&("conduit/web-ssh/web->db/service[0]", Some(150))));
    assert!(!keys.iter().any(|(k, _)| k.starts_with("conduit/web-to-db")));
    assert!(
        !keys.contains(&("default", None)),
        "the default deny is never 'unused'"
    );
}
