//! `septa-bench classbench`: build time, memory, lookup rate and reference mismatches of the rule
//! classifier on ClassBench files (or on generated ClassBench-like sets).
//!
//! Prints one line: `rules= build_ms= mem_bytes= lookups= lookups_per_s= mismatches=` (plus
//! extra keys after those). `bench/scripts/classbench-vs-acl.sh` runs dpdk-test-acl on the same
//! files in the same run and prints the ratio.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use septa_classifier::synth::{self, Profile};
use septa_classifier::{
    CompileOptions, Decision, FlowKey, Rule, Strategy, compile_with, reference,
};

// Declared here rather than in main.rs so the ClassBench files stay together.
#[path = "classbench_load.rs"]
mod load;
#[path = "classbench_rcu.rs"]
mod rcu;

use load::{parse_rules, parse_trace, write_rules, write_trace};

/// Arguments of `septa-bench classbench`.
#[derive(clap::Args)]
pub struct Args {
    /// ClassBench filter file (with `--generate`: where to write the generated rules).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// ClassBench trace file (with `--generate`: where to write the generated trace).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Use a generated ClassBench-like set instead of files: `acl|fw|ipc|zone:<rules>`.
    #[arg(long)]
    generate: Option<String>,
    /// Seed of the generated set.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Trace length of a generated set (default: 10 headers per rule, 10,000 to 100,000).
    #[arg(long)]
    trace_len: Option<usize>,
    /// With `--generate`: write the set to `--rules`/`--trace` in ClassBench format and exit.
    #[arg(long)]
    write: bool,
    /// Seconds of lookups to measure.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Keys per `classify_burst` call (the data plane uses 32).
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Lookup structure: auto, tree or zone.
    #[arg(long, default_value = "auto")]
    strategy: String,
    /// Check only the first N trace headers against the reference (default: all).
    #[arg(long)]
    check_limit: Option<usize>,
    /// Decision-tree leaf size (default: the compiler's).
    #[arg(long)]
    leaf_size: Option<usize>,
    /// Print the shape of the compiled structures on stderr.
    #[arg(long)]
    describe: bool,
    /// Also time N incremental edits (remove a rule, insert it back at the same place) against
    /// the full build, and check the edited table against the reference.
    #[arg(long, default_value_t = 0)]
    edits: usize,
    /// Instead of lookups: publish N tables while a worker classifies bursts, and report the
    /// publish-to-visible latency.
    #[arg(long)]
    rcu: Option<usize>,
    /// Also measure one-key-at-a-time `classify` (no burst interleaving).
    #[arg(long)]
    single: bool,
}

fn generated(
    spec: &str,
    seed: u64,
    trace_len: Option<usize>,
) -> anyhow::Result<(Vec<Rule>, Vec<FlowKey>)> {
    let (kind, n) = spec
        .split_once(':')
        .context("--generate wants kind:rules, e.g. fw:100000")?;
    let n: usize = n.parse().context("rule count")?;
    let rules = match kind {
        "acl" => synth::classbench_like(Profile::Acl, n, seed),
        "fw" => synth::classbench_like(Profile::Fw, n, seed),
        "ipc" => synth::classbench_like(Profile::Ipc, n, seed),
        "zone" => synth::zone_policy((n / 8).clamp(4, 2000), n, seed),
        other => bail!("unknown generator {other:?} (acl, fw, ipc, zone)"),
    };
    let keys = synth::trace(
        &rules,
        trace_len.unwrap_or((10 * n).clamp(10_000, 100_000)),
        seed ^ 0xabcd,
    );
    Ok((rules, keys))
}

/// Runs the benchmark and prints its line.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (rules, keys) = match &args.generate {
        Some(spec) => {
            let (rules, mut keys) = generated(spec, args.seed, args.trace_len)?;
            if args.write {
                keys.retain(|k| k.family == septa_classifier::Family::V4);
                let (r, t) = (args.rules.as_ref(), args.trace.as_ref());
                let (r, t) = r
                    .zip(t)
                    .context("--write needs --rules and --trace paths")?;
                // The filter column is informational (dpdk-test-acl ignores it); the compiled table
                // fills it, and the benchmark run checks every header against the reference.
                let table = septa_classifier::compile(&rules)?;
                let matches: Vec<Option<usize>> =
                    keys.iter().map(|k| table.first_match(k)).collect();
                std::fs::write(r, write_rules(&rules)?)
                    .with_context(|| format!("writing {}", r.display()))?;
                std::fs::write(t, write_trace(&keys, &matches)?)
                    .with_context(|| format!("writing {}", t.display()))?;
                println!("wrote rules={} headers={}", rules.len(), keys.len());
                return Ok(());
            }
            (rules, keys)
        }
        None => {
            let r = args
                .rules
                .as_ref()
                .context("--rules FILE is required (or --generate)")?;
            let t = args
                .trace
                .as_ref()
                .context("--trace FILE is required (or --generate)")?;
            let rt =
                std::fs::read_to_string(r).with_context(|| format!("reading {}", r.display()))?;
            let tt =
                std::fs::read_to_string(t).with_context(|| format!("reading {}", t.display()))?;
            (
                parse_rules(&rt).with_context(|| r.display().to_string())?,
                parse_trace(&tt).with_context(|| t.display().to_string())?,
            )
        }
    };
    if keys.is_empty() {
        bail!("the trace is empty");
    }
    let strategy = match args.strategy.as_str() {
        "auto" => Strategy::Auto,
        "tree" => Strategy::Tree,
        "zone" => Strategy::Zone,
        other => bail!("unknown strategy {other:?}"),
    };
    let mut opts = CompileOptions {
        strategy,
        ..CompileOptions::default()
    };
    if let Some(l) = args.leaf_size {
        opts.leaf_size = l;
    }

    let t0 = Instant::now();
    let table = compile_with(&rules, &opts)?;
    let build = t0.elapsed();
    if args.describe {
        eprintln!("{}", table.describe());
    }

    if let Some(count) = args.rcu {
        let other = compile_with(&rules[..rules.len() / 2], &opts)?;
        rcu::publish_latency(&table, &other, &keys, count.max(1), args.burst.max(1));
        return Ok(());
    }

    let edit_line = if args.edits > 0 {
        edits(&rules, &keys, &table, &opts, args.edits)?
    } else {
        String::new()
    };

    let check = args.check_limit.unwrap_or(keys.len()).min(keys.len());
    let mismatches = keys[..check]
        .iter()
        .filter(|k| table.first_match(k) != reference::first_match(&rules, k))
        .count();
    let burst_mismatches = burst_disagreements(&table, &keys);

    let burst = args.burst.max(1);
    let mut out = vec![Decision::default(); burst];
    let (lookups, elapsed, cpu) = measure(args.secs, keys.len(), || {
        for chunk in keys.chunks(burst) {
            table.classify_burst(chunk, &mut out[..chunk.len()]);
            std::hint::black_box(&out);
        }
    });
    let mut line = format!(
        "rules={} build_ms={:.1} mem_bytes={} lookups={} lookups_per_s={:.0} mismatches={}",
        rules.len(),
        build.as_secs_f64() * 1e3,
        table.mem_bytes(),
        lookups,
        lookups as f64 / elapsed.as_secs_f64(),
        mismatches + burst_mismatches,
    );
    // On-CPU time of this thread, so time spent descheduled by other load does not count.
    if let Some(cpu) = cpu {
        line += &format!(
            " cpu_lookups_per_s={:.0}",
            lookups as f64 / cpu.as_secs_f64()
        );
    }
    // The index form (`match_burst`): one u32 per key, like rte_acl's userdata result.
    let mut idx = vec![0u32; burst];
    let (n, e, c) = measure(args.secs, keys.len(), || {
        for chunk in keys.chunks(burst) {
            table.match_burst(chunk, &mut idx[..chunk.len()]);
            std::hint::black_box(&idx);
        }
    });
    line += &format!(" idx_lookups_per_s={:.0}", n as f64 / e.as_secs_f64());
    if let Some(c) = c {
        line += &format!(" cpu_idx_lookups_per_s={:.0}", n as f64 / c.as_secs_f64());
    }
    line += &format!(
        " checked={check} engine={} burst={burst}",
        table.engine_name()
    );
    line += &edit_line;
    if args.single {
        let (n, e, _) = measure(args.secs, keys.len(), || {
            for k in &keys {
                std::hint::black_box(table.classify(std::hint::black_box(k)));
            }
        });
        line += &format!(" single_lookups_per_s={:.0}", n as f64 / e.as_secs_f64());
    }
    println!("{line}");
    Ok(())
}

/// Removes and re-inserts `n` rules one edit at a time; returns ` edit_us_avg= edit_us_max=
/// edit_mismatches=` (mismatches of the final table against the reference on the trace).
fn edits(
    rules: &[Rule],
    keys: &[FlowKey],
    table: &septa_classifier::RuleTable,
    opts: &CompileOptions,
    n: usize,
) -> anyhow::Result<String> {
    use septa_classifier::Edit;
    let mut rules = rules.to_vec();
    let mut table = table.clone();
    let (mut total, mut max) = (Duration::ZERO, Duration::ZERO);
    for i in 0..n {
        let index = (i * 7919) % rules.len();
        let rule = rules[index].clone();
        for edit in [
            Edit::Remove { index },
            Edit::Insert {
                index,
                rule: rule.clone(),
            },
        ] {
            let t0 = Instant::now();
            table = table.apply(&rules, &edit, opts)?;
            let e = t0.elapsed();
            total += e;
            max = max.max(e);
            rules = edit.applied_to(&rules).context("edit out of range")?;
        }
    }
    let wrong = keys
        .iter()
        .take(20_000)
        .filter(|k| table.first_match(k) != reference::first_match(&rules, k))
        .count();
    Ok(format!(
        " edit_us_avg={:.0} edit_us_max={:.0} edit_mismatches={wrong}",
        total.as_secs_f64() * 1e6 / (2 * n) as f64,
        max.as_secs_f64() * 1e6
    ))
}

/// Keys where a burst API (`classify_burst` or `match_burst`) disagrees with single-key
/// `classify`/`first_match` (counted as mismatches too).
fn burst_disagreements(table: &septa_classifier::RuleTable, keys: &[FlowKey]) -> usize {
    let mut out = vec![Decision::default(); keys.len()];
    table.classify_burst(keys, &mut out);
    let mut idx = vec![0u32; keys.len()];
    table.match_burst(keys, &mut idx);
    keys.iter()
        .zip(out.iter().zip(&idx))
        .filter(|&(k, (d, &m))| {
            let single = table
                .first_match(k)
                .map_or(septa_classifier::NO_RULE, |i| i as u32);
            table.classify(k) != *d || single != m || table.decision_at(m) != d
        })
        .count()
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat), `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `pass` (one pass over `per_pass` keys) until `secs` have elapsed; returns lookups, wall
/// time and on-CPU time.
fn measure(
    secs: f64,
    per_pass: usize,
    mut pass: impl FnMut(),
) -> (u64, Duration, Option<Duration>) {
    pass(); // warm caches
    let target = Duration::from_secs_f64(secs);
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < target {
        pass();
        n += per_pass as u64;
    }
    let wall = t0.elapsed();
    let cpu = cpu0
        .zip(thread_cpu_ns())
        .map(|(a, b)| Duration::from_nanos(b.saturating_sub(a)));
    (n, wall, cpu)
}
