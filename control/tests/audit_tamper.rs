//! Tamper tests for the audit log (TESTING.md promise 7): every single flipped bit of a segment,
//! of the checkpoint file and of the public key; every deleted, reordered or duplicated record;
//! every truncation; a removed segment or checkpoint; and crash recovery of a torn final line.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use septa_control::audit::{
    self, Actor, AuditConfig, AuditEntry, AuditLog, VerifyOptions, read_public_key, segment_name,
    verify, verify_with,
};
use septa_control::clock::ManualClock;
use septa_control::error::VerifyError;

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        actor: if i.is_multiple_of(2) {
            Actor::user("alice")
        } else {
            Actor::token("ci-7")
        },
        action: "policy.commit".into(),
        object: "policy/demo".into(),
        before: Some(format!("{i:064x}")),
        after: Some(format!("{:064x}", i + 1)),
        reason: format!("change #{i}"),
        result: "ok".into(),
        detail: "zones +a".into(),
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    opts: VerifyOptions,
}

/// 7 records (genesis + 6) in segments of 4, checkpoints every 4 and at the end.
fn fixture(records: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut cfg = AuditConfig::new(&dir, tmp.path().join("keys/audit.key"));
    cfg.checkpoint_interval = 4;
    cfg.segment_records = 4;
    let mut log = AuditLog::open(cfg, Arc::new(ManualClock::new(1_700_000_000_000))).unwrap();
    for i in 0..records {
        log.append(entry(i)).unwrap();
    }
    log.checkpoint().unwrap();
    let key = read_public_key(&dir.join("audit.pub")).unwrap();
    let opts = VerifyOptions {
        public_key: Some(key),
        expected_head: None,
    };
    verify_with(&dir, &opts).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        opts,
    }
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = fs::read(path).unwrap();
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn write_lines(path: &Path, ls: &[Vec<u8>]) {
    fs::write(path, ls.concat()).unwrap();
}

#[test]
fn fresh_log_verifies_and_reports() {
    let f = fixture(6);
    let r = verify_with(&f.dir, &f.opts).unwrap();
    assert_eq!(
        (r.records, r.first_seq, r.last_seq, r.segments),
        (7, 0, 6, 2)
    );
    assert_eq!(
        (r.checkpoints, r.last_checkpoint_seq, r.unsigned_tail),
        (3, Some(6), 0)
    );
    assert!(r.key_trusted && !r.partial);
    assert!(!verify(&f.dir).unwrap().key_trusted);
}

#[test]
fn key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture(0);
    let key = f.dir.parent().unwrap().join("keys/audit.key");
    assert_eq!(
        fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Flips each bit in place (same length, no truncation: cheap on every filesystem).
fn flip_every_bit(path: &Path, check: impl Fn() -> Result<(), VerifyError>) {
    let original = fs::read(path).unwrap();
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    for (i, &byte) in original.iter().enumerate() {
        let offset = i as u64;
        for bit in 0..8 {
            f.write_at(&[byte ^ (1 << bit)], offset).unwrap();
            assert!(
                check().is_err(),
                "{}: flip of byte {i} bit {bit} went unnoticed",
                path.display()
            );
        }
        f.write_at(&[byte], offset).unwrap();
    }
    check().unwrap();
}

/// Truncates to every shorter length, restoring after each.
fn truncate_everywhere(path: &Path, check: impl Fn(&[u8]) -> Result<(), String>) {
    let original = fs::read(path).unwrap();
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    for len in (0..original.len()).rev() {
        f.set_len(len as u64).unwrap();
        if let Err(e) = check(&original[..len]) {
            panic!("{}: truncation to {len} bytes: {e}", path.display());
        }
    }
    f.write_at(&original, 0).unwrap();
}

#[test]
fn every_flipped_bit_of_a_segment_is_detected() {
    let f = fixture(6);
    for seg in [segment_name(0), segment_name(4)] {
        flip_every_bit(&f.dir.join(seg), || verify_with(&f.dir, &f.opts).map(drop));
    }
}

#[test]
fn every_flipped_bit_of_the_checkpoint_file_is_detected() {
    let f = fixture(2);
    flip_every_bit(&f.dir.join("checkpoints.jsonl"), || {
        verify_with(&f.dir, &f.opts).map(drop)
    });
}

#[test]
fn every_flipped_bit_of_the_directory_key_is_detected() {
    let f = fixture(1);
    flip_every_bit(&f.dir.join("audit.pub"), || verify(&f.dir).map(drop));
}

#[test]
fn deleted_reordered_and_duplicated_records_are_detected() {
    let f = fixture(6);
    for seg in [segment_name(0), segment_name(4)] {
        let path = f.dir.join(seg);
        let original = lines(&path);
        let n = original.len();
        for i in 0..n {
            let mut ls = original.clone();
            ls.remove(i);
            write_lines(&path, &ls);
            assert!(
                verify_with(&f.dir, &f.opts).is_err(),
                "deleting line {i} of {}",
                path.display()
            );
            let mut ls = original.clone();
            ls.insert(i, original[i].clone());
            write_lines(&path, &ls);
            assert!(
                verify_with(&f.dir, &f.opts).is_err(),
                "duplicating line {i}"
            );
            for j in 0..n {
                if i != j {
                    let mut ls = original.clone();
                    ls.swap(i, j);
                    write_lines(&path, &ls);
                    assert!(
                        verify_with(&f.dir, &f.opts).is_err(),
                        "swapping lines {i} and {j}"
                    );
                }
            }
        }
        write_lines(&path, &original);
    }
    // Swapping records across segments.
    let (a, b) = (f.dir.join(segment_name(0)), f.dir.join(segment_name(4)));
    let (mut la, mut lb) = (lines(&a), lines(&b));
    std::mem::swap(&mut la[3], &mut lb[0]);
    write_lines(&a, &la);
    write_lines(&b, &lb);
    assert!(verify_with(&f.dir, &f.opts).is_err());
}

#[test]
fn every_truncation_is_detected() {
    let f = fixture(6);
    for seg in [segment_name(0), segment_name(4)] {
        truncate_everywhere(&f.dir.join(seg), |_| match verify_with(&f.dir, &f.opts) {
            Ok(_) => Err("went unnoticed".into()),
            Err(_) => Ok(()),
        });
    }
    // Cutting whole trailing checkpoints leaves a shorter but consistent signed log (unless the
    // unsigned tail then exceeds the interval); a torn checkpoint line is always detected.
    truncate_everywhere(&f.dir.join("checkpoints.jsonl"), |cut| {
        let torn = !cut.is_empty() && !cut.ends_with(b"\n");
        match verify_with(&f.dir, &f.opts) {
            Ok(_) if torn => Err("torn line went unnoticed".into()),
            _ => Ok(()),
        }
    });
    verify_with(&f.dir, &f.opts).unwrap();
}

#[test]
fn removing_tail_records_is_detected_against_a_known_head() {
    let f = fixture(6);
    let head = verify_with(&f.dir, &f.opts).unwrap();
    let opts = VerifyOptions {
        expected_head: Some((head.last_seq, head.head_hash.clone())),
        ..f.opts.clone()
    };
    let path = f.dir.join(segment_name(4));
    let original = lines(&path);
    // Remove the final checkpoint too, as a careful attacker would.
    let cp = f.dir.join("checkpoints.jsonl");
    let cps = lines(&cp);
    write_lines(&cp, &cps[..cps.len() - 1]);
    for keep in 1..original.len() {
        write_lines(&path, &original[..keep]);
        let err = verify_with(&f.dir, &opts).unwrap_err();
        assert!(
            matches!(err, VerifyError::BehindExpectedHead { .. }),
            "{err}"
        );
    }
}

#[test]
fn missing_segment_or_checkpoints_are_detected() {
    let f = fixture(6);
    let seg = f.dir.join(segment_name(0));
    let saved = fs::read(&seg).unwrap();
    fs::remove_file(&seg).unwrap();
    assert!(verify_with(&f.dir, &f.opts).is_err());
    fs::write(&seg, saved).unwrap();

    let cp = f.dir.join("checkpoints.jsonl");
    let saved = fs::read(&cp).unwrap();
    fs::remove_file(&cp).unwrap();
    assert!(matches!(
        verify_with(&f.dir, &f.opts),
        Err(VerifyError::MissingCheckpoint { .. })
    ));
    // Reordered checkpoints.
    let mut ls: Vec<Vec<u8>> = saved
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    ls.swap(0, 1);
    fs::write(&cp, ls.concat()).unwrap();
    assert!(verify_with(&f.dir, &f.opts).is_err());
    fs::write(&cp, saved).unwrap();
    verify_with(&f.dir, &f.opts).unwrap();
}

#[test]
fn a_foreign_key_does_not_verify() {
    let f = fixture(2);
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    let err = verify_with(
        &f.dir,
        &VerifyOptions {
            public_key: Some(other),
            expected_head: None,
        },
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Genesis(_)), "{err}");
}

#[test]
fn a_batch_append_writes_the_same_chain_shape_as_single_appends() {
    let single = fixture(11);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let key = tmp.path().join("keys/audit.key");
    let cfg = || {
        let mut c = AuditConfig::new(&dir, &key);
        c.checkpoint_interval = 4;
        c.segment_records = 4;
        c
    };
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut log = AuditLog::open(cfg(), clock.clone()).unwrap();
    // Across segment boundaries and checkpoint intervals, in one call.
    let refs = log.append_all((0..11).map(entry).collect()).unwrap();
    assert_eq!(
        refs.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>()
    );
    assert_eq!(log.head(), refs[10]);
    assert_eq!(log.last_mutation().map(|r| r.seq), Some(11));
    log.checkpoint().unwrap();
    let key_pub = read_public_key(&dir.join("audit.pub")).unwrap();
    let opts = VerifyOptions {
        public_key: Some(key_pub),
        expected_head: Some((11, refs[10].hash.clone())),
    };
    let batch = verify_with(&dir, &opts).unwrap();
    let one_by_one = verify_with(&single.dir, &single.opts).unwrap();
    assert_eq!(batch.records, one_by_one.records);
    assert_eq!(batch.segments, one_by_one.segments);
    assert_eq!(batch.checkpoints, one_by_one.checkpoints);
    // An empty batch writes nothing; the chain goes on after a reopen.
    assert!(log.append_all(Vec::new()).unwrap().is_empty());
    drop(log);
    let mut log = AuditLog::open(cfg(), clock).unwrap();
    let more = log.append_all(vec![entry(20), entry(21)]).unwrap();
    assert_eq!(more[0].seq, 12);
    log.checkpoint().unwrap();
    drop(log);
    assert_eq!(verify(&dir).unwrap().last_seq, 13);
}

#[test]
fn reopen_continues_the_chain_and_recovers_a_torn_line() {
    let f = fixture(5);
    let key = f.dir.parent().unwrap().join("keys/audit.key");
    let cfg = || {
        let mut c = AuditConfig::new(&f.dir, &key);
        c.checkpoint_interval = 4;
        c.segment_records = 4;
        c
    };
    let before = verify_with(&f.dir, &f.opts).unwrap();
    // A crash in the middle of an append leaves half a line.
    let last = f.dir.join(segment_name(4));
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(b"{\"seq\":6,\"ts_ms\":17");
    fs::write(&last, &bytes).unwrap();
    assert!(matches!(
        verify_with(&f.dir, &f.opts),
        Err(VerifyError::Truncated { .. })
    ));
    let mut log = AuditLog::open(cfg(), Arc::new(ManualClock::new(1_800_000_000_000))).unwrap();
    let r = log.append(entry(99)).unwrap();
    assert_eq!(r.seq, before.last_seq + 2, "one recovery record, then ours");
    log.checkpoint().unwrap();
    drop(log);
    let after = verify_with(&f.dir, &f.opts).unwrap();
    assert_eq!(after.last_seq, r.seq);
    let text = fs::read_to_string(&last).unwrap();
    assert!(
        text.contains("audit.recovered") && text.contains("dropped 19 bytes"),
        "{text}"
    );
}

#[test]
fn opening_a_tampered_log_fails_closed() {
    let f = fixture(3);
    let key = f.dir.parent().unwrap().join("keys/audit.key");
    let seg = f.dir.join(segment_name(0));
    let text = fs::read_to_string(&seg)
        .unwrap()
        .replace("change #1", "change #2");
    fs::write(&seg, text).unwrap();
    let err = AuditLog::open(
        AuditConfig::new(&f.dir, &key),
        Arc::new(ManualClock::new(0)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
}

#[test]
fn export_of_a_range_verifies_on_its_own() {
    let f = fixture(6);
    let out = f.dir.parent().unwrap().join("export");
    let m = audit::export(&f.dir, 2, 3, &out).unwrap();
    assert_eq!((m.from, m.to), (2, 4), "extended to the next checkpoint");
    let r = verify_with(&out, &f.opts).unwrap();
    assert!(r.partial);
    assert_eq!((r.first_seq, r.last_seq, r.checkpoints), (2, 4, 1));
    // The export is tamper-evident too.
    flip_every_bit(&out.join(segment_name(2)), || {
        verify_with(&out, &f.opts).map(drop)
    });
    assert!(audit::export(&f.dir, 5, 99, &out).is_err());
}
