//! `septa-bench ml`: inference rows/s of the committed models at batch 1, 32 and 256 (tract,
//! `Model::run`), the full engine (featurize + both models + explanations) at batch 256, and the
//! per-packet cost of the feature sampler against parsing the same packets (baseline, same run).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use anyhow::Context;
use septa_classifier::FlowKey;
use septa_dataplane::flow::Direction;
use septa_dataplane::sample::{Sampler, SamplerConfig};
use septa_dataplane::testgen::FrameBuilder;
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
    /// Only the sampler micro-benchmark (no models needed).
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
    sampler(args.seconds)
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

/// Sampler cost per packet vs parsing the same frames: 4,096 flows × 16 packets, round robin.
fn sampler(secs: f64) -> anyhow::Result<()> {
    const FLOWS: usize = 4096;
    const PKTS: usize = 16;
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            FrameBuilder::new()
                .ipv4(
                    Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8),
                    Ipv4Addr::new(10, 1, 0, (i % 200) as u8),
                )
                .tcp(40000 + (i % 1000) as u16, 445, 0x18)
                .payload_len(64)
                .build()
        })
        .collect();
    let keys: Vec<FlowKey> = frames
        .iter()
        .map(|f| {
            septa_dataplane::parse(f)
                .map(|p| p.key)
                .map_err(|r| anyhow::anyhow!("{r:?}"))
        })
        .collect::<Result<_, _>>()?;
    let (tx, rx) = sync_channel(1 << 16);
    let mut s = Sampler::new(0, SamplerConfig::new(FLOWS), tx)?;
    let mut now = 0u64;
    let per_round = FLOWS * PKTS;
    let parse_rate = rate(secs, per_round, || {
        for _ in 0..PKTS {
            for f in &frames {
                black_box(septa_dataplane::parse(black_box(f)).ok());
            }
        }
    });
    let sample_rate = rate(secs, per_round + 2 * FLOWS, || {
        for (slot, k) in keys.iter().enumerate() {
            s.flow_start(slot, k, now);
        }
        for p in 0..PKTS {
            let dir = if p % 2 == 0 {
                Direction::Original
            } else {
                Direction::Reply
            };
            for (slot, k) in keys.iter().enumerate() {
                s.on_packet(slot, k, dir, 118, 0x18, now + p as u64 * 50);
            }
        }
        for (slot, k) in keys.iter().enumerate() {
            s.flow_end(slot, k, now + 1_000);
        }
        now += 2_000_000;
        while rx.try_recv().is_ok() {}
    });
    // Steady state of established flows: packets only (no flow start/end, no emission).
    for (slot, k) in keys.iter().enumerate() {
        s.flow_start(slot, k, now);
    }
    let mut t = now;
    let packet_rate = rate(secs, per_round, || {
        for p in 0..PKTS {
            let dir = if p % 2 == 0 {
                Direction::Original
            } else {
                Direction::Reply
            };
            for (slot, k) in keys.iter().enumerate() {
                s.on_packet(slot, k, dir, 118, 0x18, t);
            }
            t += 1;
        }
        while rx.try_recv().is_ok() {}
    });
    println!(
        "bench=ml sampler_steady_state packet_ns={:.1} (flow start + 2 emissions per flow excluded)",
        1e9 / packet_rate
    );
    let parse_ns = 1e9 / parse_rate;
    let sample_ns = 1e9 / sample_rate;
    println!(
        "bench=ml sampler flows={FLOWS} packets_per_flow={PKTS} sample_ns_per_packet={sample_ns:.1} parse_ns_per_packet={parse_ns:.1} ratio_sample_to_parse={:.2} share_of_70ns_worker_budget={:.1}% emitted={} ring_full={}",
        sample_ns / parse_ns,
        100.0 * sample_ns / 70.0,
        s.counters().emitted,
        s.counters().ring_full
    );
    Ok(())
}
