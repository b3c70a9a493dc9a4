//! The lifecycle facade end to end over a real data directory: commits, refusals, a failing
//! publisher, rollback, staging, commit-confirm (confirm, revert, revert after restart), restart
//! (fail closed on a corrupt store), and "every mutation appends exactly one audit record".

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use septa_classifier::FlowKey;
use septa_control::audit::{Actor, VerifyOptions, read_public_key, verify_with};
use septa_control::clock::ManualClock;
use septa_control::lifecycle::{CommitOptions, PolicyService, Publisher, ServiceConfig};
use septa_control::mgmt::ManagementPath;
use septa_control::{CompiledPolicy, Format, LifecycleError, parse_flow};

const DEMO: &str = include_str!("../../configs/policies/demo.yaml");

/// Records what was published; can be told to fail.
#[derive(Clone, Default)]
struct TestPublisher {
    published: Arc<Mutex<Vec<Option<usize>>>>,
    fail: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Publisher for TestPublisher {
    fn publish(&self, table: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err("data plane unavailable".into());
        }
        self.published
            .lock()
            .unwrap()
            .push(table.map(|t| t.rules().len()));
        Ok(())
    }
}

struct Env {
    tmp: tempfile::TempDir,
    clock: Arc<ManualClock>,
    publisher: TestPublisher,
}

impl Env {
    fn new() -> Self {
        Env {
            tmp: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(1_000_000)),
            publisher: TestPublisher::default(),
        }
    }

    fn config(&self) -> ServiceConfig {
        let mut c = ServiceConfig::new(self.tmp.path());
        c.management = Some(ManagementPath {
            source: "10.99.0.0/24".parse().unwrap(),
            api: "10.99.0.1:443".parse().unwrap(),
        });
        c
    }

    fn open(&self) -> PolicyService<TestPublisher> {
        PolicyService::open(self.config(), self.publisher.clone(), self.clock.clone()).unwrap()
    }

    fn audit_records(&self) -> u64 {
        let dir = self.tmp.path().join("audit");
        let key = read_public_key(&dir.join("audit.pub")).unwrap();
        verify_with(
            &dir,
            &VerifyOptions {
                public_key: Some(key),
                expected_head: None,
            },
        )
        .unwrap()
        .records
    }
}

fn alice() -> Actor {
    Actor::user("alice")
}

fn flow(s: &str, d: &str, proto: &str, port: u16) -> FlowKey {
    parse_flow(s, d, proto, port, 40000).unwrap()
}

/// The demo with one more allowed port, as a second version.
fn demo_v2() -> String {
    DEMO.replace(
        "ports: [443]\n    - name: hmi-to-plc",
        "ports: [443, 8443]\n    - name: hmi-to-plc",
    )
}

#[test]
fn commit_publishes_stores_and_audits() {
    let env = Env::new();
    let mut svc = env.open();
    assert!(svc.running().is_none());
    let before = env.audit_records();
    let info = svc
        .commit(
            DEMO,
            Format::Yaml,
            &alice(),
            "initial policy",
            CommitOptions::default(),
        )
        .unwrap();
    assert_eq!(
        (info.id, info.parent, info.author.as_str()),
        (1, None, "user:alice")
    );
    assert_eq!(env.audit_records(), before + 1);
    assert_eq!(env.publisher.published.lock().unwrap().len(), 1);
    let e = svc
        .decide(None, &flow("10.10.1.5", "10.10.5.10", "tcp", 443))
        .unwrap();
    assert_eq!(
        (e.action, e.revision.as_str()),
        ("allow", info.hash.as_str())
    );
}

#[test]
fn bad_input_is_refused_named_audited_and_changes_nothing() {
    let env = Env::new();
    let mut svc = env.open();
    let first = svc
        .commit(
            DEMO,
            Format::Yaml,
            &alice(),
            "initial",
            CommitOptions::default(),
        )
        .unwrap();
    let content = svc.get(first.id).unwrap().content;
    let table = Arc::clone(svc.running_table().unwrap());
    let bad = DEMO.replace("subnets: [10.20.0.0/24]", "subnets: [10.20.0.0/33]");
    let cases: Vec<(String, &str, &str)> = vec![
        (bad, "because", "spec.zones[2].subnets[0]"),
        (
            DEMO.replace("  conduits:", "  condiuts:"),
            "because",
            "condiuts",
        ),
        (DEMO.to_owned(), "  ", "reason"),
        // Cuts the management path: the admin conduit's source zone is gone.
        (
            DEMO.replace("from: [management]", "from: [it]"),
            "because",
            "management path",
        ),
    ];
    for (text, reason, needle) in cases {
        let records = env.audit_records();
        let err = svc
            .commit(
                &text,
                Format::Yaml,
                &alice(),
                reason,
                CommitOptions::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(
            env.audit_records(),
            records + 1,
            "a refusal is audited once"
        );
        assert_eq!(svc.running().unwrap(), &first);
        assert_eq!(
            svc.get(first.id).unwrap().content,
            content,
            "byte-identical"
        );
        assert!(Arc::ptr_eq(svc.running_table().unwrap(), &table));
        assert_eq!(svc.list().unwrap().len(), 1);
    }
    assert_eq!(
        env.publisher.published.lock().unwrap().len(),
        1,
        "nothing else was published"
    );
}

#[test]
fn a_failing_publisher_leaves_everything_untouched() {
    let env = Env::new();
    let mut svc = env.open();
    let first = svc
        .commit(
            DEMO,
            Format::Yaml,
            &alice(),
            "initial",
            CommitOptions::default(),
        )
        .unwrap();
    env.publisher.fail.store(true, Ordering::SeqCst);
    let records = env.audit_records();
    let err = svc
        .commit(
            &demo_v2(),
            Format::Yaml,
            &alice(),
            "open 8443",
            CommitOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, LifecycleError::Publish(_)), "{err}");
    assert_eq!(svc.running().unwrap(), &first);
    assert_eq!(svc.list().unwrap().len(), 1);
    assert_eq!(env.audit_records(), records + 1);
    let text = std::fs::read_to_string(
        env.tmp
            .path()
            .join("audit/segment-00000000000000000000.jsonl"),
    )
    .unwrap();
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("refused: publish failed: data plane unavailable")
    );
    // The data plane recovers; the same commit now succeeds.
    env.publisher.fail.store(false, Ordering::SeqCst);
    let second = svc
        .commit(
            &demo_v2(),
            Format::Yaml,
            &alice(),
            "open 8443",
            CommitOptions::default(),
        )
        .unwrap();
    assert_eq!(second.parent, Some(first.id));
}

#[test]
fn rollback_diff_and_stage() {
    let env = Env::new();
    let mut svc = env.open();
    let v1 = svc
        .commit(
            DEMO,
            Format::Yaml,
            &alice(),
            "initial",
            CommitOptions::default(),
        )
        .unwrap();
    let v2 = svc
        .commit(
            &demo_v2(),
            Format::Yaml,
            &Actor::token("ci"),
            "open 8443",
            CommitOptions::default(),
        )
        .unwrap();
    let d = svc.diff(v1.id, v2.id).unwrap();
    assert_eq!(d.summary(), "conduits +0 -0 ~1");
    assert!(d.to_string().contains("it-to-ehr-app: services"), "{d}");
    let k = flow("10.10.1.5", "10.10.5.10", "tcp", 8443);
    assert_eq!(svc.decide(None, &k).unwrap().action, "allow");
    assert_eq!(svc.decide(Some(v1.id), &k).unwrap().action, "deny");

    let v3 = svc.rollback(v1.id, &alice(), "8443 was a mistake").unwrap();
    assert_eq!(v3.hash, v1.hash, "same content, same hash");
    assert_eq!((v3.id, v3.parent), (3, Some(v2.id)));
    assert_eq!(svc.decide(None, &k).unwrap().action, "deny");
    assert!(svc.rollback(99, &alice(), "no such").is_err());

    let staged = svc
        .stage(&demo_v2(), Format::Yaml, &alice(), "try 8443 again")
        .unwrap();
    assert_eq!(svc.running().unwrap().id, v3.id, "staging does not publish");
    let e = svc.decide(Some(staged.id), &k).unwrap();
    assert_eq!(
        (e.action, e.revision.as_str()),
        ("allow", staged.hash.as_str())
    );
    // Recorded flows against the staged revision: only the 8443 one changes.
    let recorded = [
        k,
        flow("10.10.1.5", "10.10.5.10", "tcp", 443),
        flow("10.10.1.5", "10.20.0.7", "tcp", 5432),
    ];
    let changed = svc.impact(staged.id, &recorded).unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].0.action, changed[0].1.action),
        ("deny", "allow")
    );
}

#[test]
fn commit_confirm_reverts_in_place_unless_confirmed() {
    let env = Env::new();
    let mut svc = env.open();
    let v1 = svc
        .commit(
            DEMO,
            Format::Yaml,
            &alice(),
            "initial",
            CommitOptions::default(),
        )
        .unwrap();
    let opts = CommitOptions {
        confirm_within_ms: Some(60_000),
    };
    let v2 = svc
        .commit(&demo_v2(), Format::Yaml, &alice(), "try 8443", opts)
        .unwrap();
    assert_eq!(svc.state().unwrap().pending.unwrap().revert_to, v1.id);
    // Another commit must wait.
    assert!(matches!(
        svc.commit(DEMO, Format::Yaml, &alice(), "x", CommitOptions::default()),
        Err(LifecycleError::ConfirmState(_))
    ));
    env.clock.advance(59_999);
    assert_eq!(svc.tick().unwrap(), None);
    env.clock.advance(1);
    let reverted = svc.tick().unwrap().unwrap();
    assert_eq!(reverted.id, v1.id);
    assert_eq!(
        svc.running().unwrap().id,
        v1.id,
        "reverted in place, no new revision"
    );
    assert_eq!(svc.list().unwrap().len(), 2);
    assert!(svc.state().unwrap().pending.is_none());
    assert!(matches!(
        svc.confirm(&alice(), "too late"),
        Err(LifecycleError::ConfirmState(_))
    ));
    assert_eq!(svc.tick().unwrap(), None);
    let published = env.publisher.published.lock().unwrap().clone();
    assert_eq!(published.len(), 3, "v1, v2, v1 again");
    assert_eq!(published[0], published[2]);
    drop(published);

    // Confirmed in time: stays.
    let v3 = svc
        .commit(&demo_v2(), Format::Yaml, &alice(), "try 8443 again", opts)
        .unwrap();
    env.clock.advance(1_000);
    svc.confirm(&alice(), "works").unwrap();
    env.clock.advance(120_000);
    assert_eq!(svc.tick().unwrap(), None);
    assert_eq!(svc.running().unwrap().id, v3.id);
    let _ = v2;
}

#[test]
fn restart_loads_the_running_revision_and_pending_confirm_survives() {
    let env = Env::new();
    let v1;
    {
        let mut svc = env.open();
        v1 = svc
            .commit(
                DEMO,
                Format::Yaml,
                &alice(),
                "initial",
                CommitOptions::default(),
            )
            .unwrap();
        svc.commit(
            &demo_v2(),
            Format::Yaml,
            &alice(),
            "try",
            CommitOptions {
                confirm_within_ms: Some(10),
            },
        )
        .unwrap();
    }
    env.clock.advance(11);
    let mut svc = env.open();
    assert_eq!(svc.running().unwrap().id, 2);
    assert_eq!(
        svc.tick().unwrap().unwrap().id,
        v1.id,
        "the deadline still applies after a restart"
    );
    drop(svc);
    let svc = env.open();
    assert_eq!(svc.running().unwrap(), &v1);
    assert_eq!(svc.running_table().unwrap().rules().len(), {
        let (_, c) = svc.check(DEMO, Format::Yaml).unwrap();
        c.rules().len()
    });
}

#[test]
fn a_corrupt_store_fails_closed() {
    let env = Env::new();
    {
        let mut svc = env.open();
        svc.commit(
            DEMO,
            Format::Yaml,
            &alice(),
            "initial",
            CommitOptions::default(),
        )
        .unwrap();
    }
    let conn = rusqlite::Connection::open(env.tmp.path().join("septa.db")).unwrap();
    conn.execute_batch("DROP TRIGGER revisions_no_update; UPDATE revisions SET content = CAST(replace(CAST(content AS TEXT), '5432', '5433') AS BLOB);")
        .unwrap();
    drop(conn);
    let err = PolicyService::open(env.config(), env.publisher.clone(), env.clock.clone())
        .err()
        .unwrap();
    assert!(err.to_string().contains("does not match its hash"), "{err}");
}

#[test]
fn every_mutation_appends_exactly_one_audit_record() {
    let env = Env::new();
    let mut svc = env.open();
    type Op = Box<dyn Fn(&mut PolicyService<TestPublisher>) -> bool>;
    let confirm = CommitOptions {
        confirm_within_ms: Some(5_000),
    };
    let clock = env.clock.clone();
    let ops: Vec<(&str, Op)> = vec![
        (
            "commit",
            Box::new(|s| {
                s.commit(DEMO, Format::Yaml, &alice(), "r", CommitOptions::default())
                    .is_ok()
            }),
        ),
        (
            "commit invalid",
            Box::new(|s| {
                s.commit(
                    "kind: x",
                    Format::Yaml,
                    &alice(),
                    "r",
                    CommitOptions::default(),
                )
                .is_ok()
            }),
        ),
        (
            "commit json",
            Box::new(|s| {
                let json = String::from_utf8(s.get(1).unwrap().content).unwrap();
                s.commit(&json, Format::Json, &alice(), "r", CommitOptions::default())
                    .is_ok()
            }),
        ),
        (
            "stage",
            Box::new(|s| s.stage(&demo_v2(), Format::Yaml, &alice(), "r").is_ok()),
        ),
        (
            "stage invalid",
            Box::new(|s| s.stage("{}", Format::Json, &alice(), "r").is_ok()),
        ),
        (
            "rollback",
            Box::new(|s| s.rollback(1, &alice(), "r").is_ok()),
        ),
        (
            "rollback missing",
            Box::new(|s| s.rollback(42, &alice(), "r").is_ok()),
        ),
        (
            "confirm none pending",
            Box::new(|s| s.confirm(&alice(), "r").is_ok()),
        ),
        (
            "commit-confirm",
            Box::new(move |s| {
                s.commit(&demo_v2(), Format::Yaml, &alice(), "r", confirm)
                    .is_ok()
            }),
        ),
        ("confirm", Box::new(|s| s.confirm(&alice(), "r").is_ok())),
        (
            "commit-confirm again",
            Box::new(move |s| s.commit(DEMO, Format::Yaml, &alice(), "r", confirm).is_ok()),
        ),
        (
            "revert",
            Box::new(move |s| {
                clock.advance(5_000);
                s.tick().unwrap().is_some()
            }),
        ),
        (
            "no reason",
            Box::new(|s| {
                s.commit(DEMO, Format::Yaml, &alice(), "", CommitOptions::default())
                    .is_ok()
            }),
        ),
    ];
    let expected_ok = [
        true, false, true, true, false, true, false, false, true, true, true, true, false,
    ];
    for ((name, op), ok) in ops.iter().zip(expected_ok) {
        let before = env.audit_records();
        assert_eq!(op(&mut svc), ok, "{name}");
        assert_eq!(env.audit_records(), before + 1, "{name}");
    }
}

#[test]
fn an_audited_commit_the_store_lost_is_reconciled_on_open() {
    let env = Env::new();
    let hash;
    {
        let mut svc = env.open();
        let v1 = svc
            .commit(
                DEMO,
                Format::Yaml,
                &alice(),
                "initial",
                CommitOptions::default(),
            )
            .unwrap();
        hash = v1.hash.clone();
        // As if the process died after step 4 (audit) and before step 5 (store commit).
        svc.audit_log()
            .append(septa_control::audit::AuditEntry {
                actor: alice(),
                action: "policy.commit".into(),
                object: "policy/demo-hospital".into(),
                before: Some(v1.hash.clone()),
                after: Some("f".repeat(64)),
                reason: "never committed".into(),
                result: "ok".into(),
                detail: "revision 2 (commit): conduits ~1".into(),
            })
            .unwrap();
    }
    let records = env.audit_records();
    let svc = env.open();
    assert_eq!(env.audit_records(), records + 1);
    assert_eq!(svc.running().unwrap().hash, hash);
    let text = std::fs::read_to_string(
        env.tmp
            .path()
            .join("audit/segment-00000000000000000000.jsonl"),
    )
    .unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("policy.lost") && last.contains("did not take effect"),
        "{last}"
    );
    drop(svc);
    let _ = env.open();
    assert_eq!(
        env.audit_records(),
        records + 1,
        "reconciled once, not on every open"
    );
}
