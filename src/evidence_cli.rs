//! `septa evidence`: audit evidence packs from a data directory, and their verification.
//!
//! `septa evidence --data-dir D --from T --to T --out DIR` writes `evidence.json` and
//! `report.html`; `septa evidence verify DIR --data-dir D` re-checks a pack against the audit
//! log and exits non-zero on any problem. Times are Unix milliseconds, `YYYY-MM-DD` (UTC
//! midnight) or `YYYY-MM-DDTHH:MM:SSZ`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use septa_control::evidence::{self, DataDir};

/// Arguments of `septa evidence`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvidenceArgs {
    #[command(subcommand)]
    command: Option<EvidenceCommand>,
    /// The appliance's data directory (revision store, audit log, flow history).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Window start: Unix ms, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Window end (same forms); default now.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Where to write the pack.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Re-check a pack against the audit log; exits non-zero on any problem.
    Verify {
        /// The pack directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The appliance's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || format!("{s:?}: expected Unix ms, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ");
    let num = |r: std::ops::Range<usize>| -> anyhow::Result<i64> {
        s.get(r)
            .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .with_context(bad)
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if s.as_bytes().get(4) != Some(&b'-')
        || s.as_bytes().get(7) != Some(&b'-')
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        bail!(bad());
    }
    let (hh, mm, ss) = match s.len() {
        10 => (0, 0, 0),
        20 if &s[10..11] == "T" && &s[19..20] == "Z" && &s[13..14] == ":" && &s[16..17] == ":" => {
            (num(11..13)?, num(14..16)?, num(17..19)?)
        }
        _ => bail!(bad()),
    };
    if hh > 23 || mm > 59 || ss > 60 {
        bail!(bad());
    }
    Ok((days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss) * 1000)
}

/// Runs `septa evidence ...`.
pub fn run(args: EvidenceArgs) -> anyhow::Result<()> {
    match args.command {
        Some(EvidenceCommand::Verify {
            dir,
            data_dir,
            json,
        }) => {
            let chk = evidence::verify(&dir, &DataDir { root: data_dir })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&chk)?);
            } else {
                for p in &chk.problems {
                    println!("FAIL {p}");
                }
                println!(
                    "{} statement(s), {} audit record(s), {} checkpoint signature(s) checked: {}",
                    chk.statements,
                    chk.records,
                    chk.checkpoints,
                    if chk.problems.is_empty() {
                        "ok"
                    } else {
                        "FAILED"
                    }
                );
            }
            if !chk.problems.is_empty() {
                bail!(
                    "the evidence pack does not verify ({} problem(s))",
                    chk.problems.len()
                );
            }
            Ok(())
        }
        None => {
            let (Some(data_dir), Some(from), Some(out)) = (args.data_dir, args.from, args.out)
            else {
                bail!(
                    "septa evidence needs --data-dir, --from and --out (or the verify subcommand)"
                );
            };
            let from = parse_time(&from)?;
            let now = now_ms();
            let to = args
                .to
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or(now);
            let pack = evidence::generate(&DataDir { root: data_dir }, from, to, now)?;
            evidence::write(&pack, &out)?;
            println!(
                "wrote {} statement(s) to {} ({}, {})",
                pack.statements.len(),
                out.display(),
                evidence::EVIDENCE_JSON,
                evidence::REPORT_HTML
            );
            for c in &pack.caveats {
                println!("caveat: {c}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form_and_bad_ones_are_named() {
        assert_eq!(parse_time("1764103625123").unwrap(), 1_764_103_625_123);
        assert_eq!(parse_time("1970-01-01").unwrap(), 0);
        assert_eq!(
            parse_time("2025-11-25T20:47:05Z").unwrap(),
            1_764_103_625_000
        );
        assert_eq!(parse_time("2000-03-01").unwrap(), 951_868_800_000);
        for bad in [
            "2025-13-01",
            "2025-11-25T20:47:05",
            "yesterday",
            "2025/11/25",
        ] {
            let e = parse_time(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
