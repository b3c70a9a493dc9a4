//! `septa replay`: the offline runtime over a capture file.

use std::path::Path;

use anyhow::Context;
use septa_dataplane::replay::replay as run_replay;

use crate::config::DecisionConfig;

/// Replays `input` through the data-plane code and prints the report.
pub fn replay(
    input: &Path,
    output: Option<&Path>,
    json: bool,
    decision: DecisionConfig,
) -> anyhow::Result<()> {
    let report = run_replay(input, output, decision.into())
        .with_context(|| format!("replay of {}", input.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

impl From<DecisionConfig> for septa_dataplane::worker::Decision {
    fn from(d: DecisionConfig) -> Self {
        match d {
            DecisionConfig::AllowAll => Self::AllowAll,
            DecisionConfig::DenyAll => Self::DenyAll,
        }
    }
}
