//! `septa-bench ml`: inference rows/s of the committed models at batch 1, 32 and 256 (tract,
//! `Model::run`), the full engine (featurize + both models + explanations) at batch 256, and the
//! worker's packet rate with feature sampling on and off (`septa-bench pipeline`, same run).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use septa_features::{N_FEATURES, featurize};
use septa_ml::{Engine, MlConfig, MlEvent, Model, heldout};

#[derive(clap::Args)]
pub struct Args {
    /// Directory with the model metadata, `.onnx` files and `heldout-v1.json`.
    #[arg(long, default_value = "configs/models")]
    model_dir: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Only the data-plane cost of sampling (`septa-bench pipeline` with its defaults; no
    /// models needed).
    #[arg(long)]
    sampler_only: bool,
}

/// Runs `f` (which processes `per_call` items) repeatedly for `secs`; items per second.
fn rate(secs: f64, per_call: usize, mut f: impl FnMut()) -> f64 {
    f();
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        calls += 16;
    }
    (calls as f64 * per_call as f64) / start.elapsed().as_secs_f64()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.sampler_only {
        models(&args)?;
    }
    // The sampler's cost is measured where it is paid: in the worker (`septa-bench pipeline`).
    crate::pipeline::run(crate::pipeline::Args::defaults())
}

fn models(args: &Args) -> anyhow::Result<()> {
    let rows = heldout::load(&args.model_dir.join("heldout-v1.json"))
        .context("held-out rows (run from the repository root or pass --model-dir)")?;
    let feats: Vec<[f32; N_FEATURES]> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| featurize(&r.record(i)))
        .collect();
    for name in ["septa-flow-mlp-v1.json", "septa-flow-ae-v1.json"] {
        let m = Model::load(&args.model_dir.join(name))?;
        let mut line = format!("bench=ml model={}", m.meta.model_id);
        for batch in [1usize, 32, 256] {
            let mut out = Vec::with_capacity(batch * N_FEATURES);
            let mut at = 0;
            let r = rate(args.seconds, batch, || {
                if at + batch > feats.len() {
                    at = 0;
                }
                out.clear();
                m.run(&feats[at..at + batch], &mut out).expect("inference");
                black_box(&out);
                at += batch;
            });
            line += &format!(" rows_per_s_b{batch}={r:.0}");
        }
        println!("{line}");
    }
    let recs: Vec<_> = rows.iter().enumerate().map(|(i, r)| r.record(i)).collect();
    let mut engine = Engine::load(MlConfig::new(&args.model_dir))?;
    let mut events: Vec<MlEvent> = Vec::new();
    let mut at = 0;
    let mut alerts = 0usize;
    let r = rate(args.seconds, 256, || {
        if at + 256 > recs.len() {
            at = 0;
        }
        events.clear();
        engine
            .score_batch(&recs[at..at + 256], &mut events)
            .expect("score");
        alerts += events.len();
        at += 256;
    });
    println!(
        "bench=ml engine=both_models_with_explanations batch=256 records_per_s={r:.0} attack_share_of_rows={:.2}",
        rows.iter().filter(|r| r.label == 1).count() as f64 / rows.len() as f64
    );
    black_box(alerts);
    Ok(())
}
