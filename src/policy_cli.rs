//! `septa policy check`, `septa decide` and `septa audit verify`: the control-plane core from the
//! command line, for operators and for CI pipelines that keep policy as code.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use septa_control::audit::verify::{VerifyOptions, read_public_key, verify_with};
use septa_control::lifecycle::check_policy;
use septa_control::{CompiledPolicy, Format, LifecycleError, ValidatedPolicy, decide, parse_flow};

/// Reads, validates and compiles a policy file for the data plane. On any problem the error
/// lists every diagnostic with the file, its field path and line (callers refuse to start).
pub fn load(file: &Path) -> anyhow::Result<(ValidatedPolicy, CompiledPolicy)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read policy {}", file.display()))?;
    check_policy(&text, Format::from_path(file), None).map_err(|e| {
        let diags = match &e {
            LifecycleError::Policy(p) => p.diagnostics(),
            _ => Vec::new(),
        };
        let mut msg = format!(
            "{}: policy rejected ({} problem(s)), refusing to forward",
            file.display(),
            diags.len().max(1)
        );
        if diags.is_empty() {
            msg.push_str(&format!("\n  {}: {e}", file.display()));
        }
        for d in &diags {
            msg.push_str(&format!("\n  {}: {d}", file.display()));
        }
        anyhow::anyhow!(msg)
    })
}

/// Validates and compiles a policy file; prints every problem with its location.
pub fn check(file: &Path, json: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match check_policy(&text, Format::from_path(file), None) {
        Ok((policy, compiled)) => {
            if json {
                let v = serde_json::json!({
                    "file": file.display().to_string(),
                    "valid": true,
                    "revision": policy.content_hash(),
                    "rules": compiled.table().len(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}: ok, content hash {}, {} classifier rules",
                    file.display(),
                    policy.content_hash(),
                    compiled.table().len()
                );
            }
            Ok(())
        }
        Err(e) => {
            let diags = match &e {
                LifecycleError::Policy(p) => p.diagnostics(),
                _ => Vec::new(),
            };
            if json {
                let v = serde_json::json!({
                    "file": file.display().to_string(),
                    "valid": false,
                    "errors": diags,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if diags.is_empty() {
                eprintln!("{}: {e}", file.display());
            } else {
                for d in &diags {
                    eprintln!("{}: {d}", file.display());
                }
            }
            bail!(
                "{}: policy rejected ({} problem(s))",
                file.display(),
                diags.len().max(1)
            )
        }
    }
}

/// Answers "would SRC → DST PROTO/PORT pass, and which clause decides" against a policy file.
pub fn decide_cmd(
    policy: &Path,
    src: &str,
    dst: &str,
    proto: &str,
    port: u16,
    json: bool,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(policy)
        .with_context(|| format!("cannot read {}", policy.display()))?;
    let (validated, compiled) = check_policy(&text, Format::from_path(policy), None)
        .map_err(|e| anyhow::anyhow!("{}: policy rejected:\n{e}", policy.display()))?;
    let key = parse_flow(src, dst, proto, port, 0).map_err(anyhow::Error::msg)?;
    let e = decide(&compiled, &validated.content_hash(), &key);
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        println!("{e}");
    }
    Ok(())
}

/// Verifies an audit log directory; exits non-zero on any problem.
pub fn verify(dir: &Path, key: Option<&PathBuf>, json: bool) -> anyhow::Result<()> {
    let public_key = match key {
        Some(p) => Some(read_public_key(p).with_context(|| format!("public key {}", p.display()))?),
        None => None,
    };
    let report = verify_with(
        dir,
        &VerifyOptions {
            public_key,
            expected_head: None,
        },
    )
    .with_context(|| format!("audit log {} does NOT verify", dir.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: ok, {} records (seq {}..={}), {} checkpoints, head {}, {} record(s) after the last signed \
             checkpoint, key {} ({})",
            dir.display(),
            report.records,
            report.first_seq,
            report.last_seq,
            report.checkpoints,
            report.head_hash,
            report.unsigned_tail,
            report.public_key,
            if report.key_trusted {
                "supplied by you"
            } else {
                "read from the log directory: pass --key to pin it"
            }
        );
    }
    Ok(())
}
