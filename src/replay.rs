//! `septa replay`: the offline runtime over a capture file, under a policy file or a fixed
//! decision.

use std::path::Path;

use anyhow::Context;
use septa_classifier::{SourceRef, TableCell};
use septa_dataplane::replay::replay as run_replay;
use septa_dataplane::worker::Decision;

use crate::config::DecisionConfig;
use crate::policy_cli;

/// What `septa replay` runs the capture under.
pub enum ReplayPolicy<'a> {
    /// `--decision`.
    Fixed(DecisionConfig),
    /// `--policy FILE`.
    File(&'a Path),
}

/// Replays `input` through the data-plane code and prints the report.
pub fn replay(
    input: &Path,
    output: Option<&Path>,
    json: bool,
    policy: ReplayPolicy<'_>,
) -> anyhow::Result<()> {
    let (decision, compiled) = match policy {
        ReplayPolicy::Fixed(d) => (d.into(), None),
        ReplayPolicy::File(file) => {
            let (p, c) = policy_cli::load(file)?;
            // The same publication path as the appliance: a cell, read by the worker per burst.
            let cell = TableCell::new((**c.table()).clone());
            (Decision::Table(cell.reader()), Some((file, (p, c))))
        }
    };
    let mut report = run_replay(input, output, decision)
        .with_context(|| format!("replay of {}", input.display()))?;
    if let Some((_, (_, c))) = &compiled {
        for flow in &mut report.flows {
            flow.clause = flow
                .source
                .and_then(|s| c.clause_of_source(SourceRef(s)))
                .map(ToString::to_string);
        }
    }
    if json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some((file, (p, c))), Some(obj)) = (&compiled, v.as_object_mut()) {
            obj.insert(
                "policy".into(),
                serde_json::json!({
                    "file": file.display().to_string(),
                    "revision": p.content_hash(),
                    "rules": c.table().len(),
                }),
            );
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if let Some((file, (p, c))) = &compiled {
            println!(
                "policy       {} (content hash {}, {} rules)",
                file.display(),
                p.content_hash(),
                c.table().len()
            );
        }
        print!("{report}");
    }
    Ok(())
}

impl From<DecisionConfig> for Decision {
    fn from(d: DecisionConfig) -> Self {
        match d {
            DecisionConfig::AllowAll => Self::AllowAll,
            DecisionConfig::DenyAll => Self::DenyAll,
        }
    }
}
