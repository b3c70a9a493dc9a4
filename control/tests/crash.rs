//! Crash consistency: a child process commits policies in a loop and prints each acknowledged
//! revision; the parent kills it with SIGKILL at an arbitrary point, several times over the same
//! data directory. After every kill: the store reopens (WAL recovery), every acknowledged
//! revision is there with its hash, the audit log verifies (a torn final line, if any, is the
//! only damage and is repaired and recorded on open), and every stored revision has its audit
//! record (the audit log is never behind the store).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use septa_control::Format;
use septa_control::audit::{Actor, VerifyOptions, read_public_key, verify_with};
use septa_control::clock::SystemClock;
use septa_control::error::VerifyError;
use septa_control::lifecycle::{CommitOptions, PolicyService, Publisher, ServiceConfig};

const DEMO: &str = include_str!("../../configs/policies/demo.yaml");
const CHILD_ENV: &str = "SEPTA_CRASH_CHILD_DIR";

struct Nop;

impl Publisher for Nop {
    fn publish(&self, _: Option<&Arc<septa_control::CompiledPolicy>>) -> Result<(), String> {
        Ok(())
    }
}

fn child(dir: &Path) -> ! {
    let mut svc = PolicyService::open(ServiceConfig::new(dir), Nop, Arc::new(SystemClock)).unwrap();
    let v2 = DEMO.replace("ports: [5432]", "ports: [5432, 5433]");
    for i in 0u64.. {
        let text = if i % 2 == 0 { DEMO } else { v2.as_str() };
        let info = svc
            .commit(
                text,
                Format::Yaml,
                &Actor::token("crash-test"),
                &format!("commit {i}"),
                CommitOptions::default(),
            )
            .unwrap();
        println!("ACK {} {}", info.id, info.hash);
    }
    unreachable!()
}

fn audit_lines(dir: &Path) -> String {
    let mut names: Vec<_> = std::fs::read_dir(dir.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn acknowledged_commits_survive_kill_9() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut acked: Vec<(i64, String)> = Vec::new();
    for round in 0..4 {
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "acknowledged_commits_survive_kill_9",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(c.stdout.take().unwrap());
        let want = 2 + round * 3;
        let mut seen = 0;
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (id, hash) = rest.split_once(' ').unwrap();
                acked.push((id.parse().unwrap(), hash.to_owned()));
                seen += 1;
                if seen == want {
                    break;
                }
            }
        }
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        assert_eq!(seen, want, "child died early in round {round}");

        // Before reopening: the log verifies, or only its final line is torn.
        let adir = tmp.path().join("audit");
        let key = read_public_key(&adir.join("audit.pub")).unwrap();
        let opts = VerifyOptions {
            public_key: Some(key),
            expected_head: None,
        };
        match verify_with(&adir, &opts) {
            Ok(_) | Err(VerifyError::Truncated { .. }) => {}
            Err(e) => panic!("round {round}: audit log damaged beyond a torn line: {e}"),
        }

        let svc = PolicyService::open(ServiceConfig::new(tmp.path()), Nop, Arc::new(SystemClock))
            .unwrap();
        verify_with(&adir, &opts).unwrap();
        let revisions = svc.list().unwrap();
        for (id, hash) in &acked {
            let r = revisions
                .iter()
                .find(|r| r.id == *id)
                .unwrap_or_else(|| panic!("acknowledged revision {id} lost"));
            assert_eq!(&r.hash, hash);
        }
        assert!(svc.running().unwrap().id >= acked.last().unwrap().0);
        let log = audit_lines(tmp.path());
        for r in &revisions {
            assert!(
                log.contains(&format!("\"after\":\"{}\"", r.hash))
                    && log.contains(&format!("revision {} (commit)", r.id)),
                "revision {} has no audit record",
                r.id
            );
        }
    }
}
