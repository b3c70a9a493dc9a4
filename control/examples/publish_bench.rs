//! End-to-end publish latency of a large zone policy: `POST /api/v1/policy/commit` (through the
//! whole axum app: auth, body parsing, validation, compilation, publish, SQLite fsync, audit
//! fsync) until a worker-style reader of the `TableCell` sees the new table. Compared side by
//! side with the baseline of validating and compiling the same policy alone.
//!
//! `cargo run --release -p septa-control --example publish_bench -- [CONDUITS] [ROUNDS]`
//! (default 2500 conduits of four ports each = 10 000 rules, 10 rounds alternating two versions;
//! a policy has at most 4096 conduits).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use septa_classifier::TableCell;
use septa_control::CompiledPolicy;
use septa_control::Format;
use septa_control::api::auth::TokenInfo;
use septa_control::api::{ApiOptions, AppState, DynPublisher, PasswordCost, Role, app};
use septa_control::clock::SystemClock;
use septa_control::lifecycle::{PolicyService, Publisher, ServiceConfig, check_policy};
use tower::ServiceExt;

struct CellPublisher(Arc<TableCell>);

impl Publisher for CellPublisher {
    fn publish(&self, table: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        let t = match table {
            Some(c) => (**c.table()).clone(),
            None => septa_classifier::compile(&[]).map_err(|e| e.to_string())?,
        };
        self.0.publish(t);
        Ok(())
    }
}

/// Median time of each step of [`check_policy`] and of the commit's bookkeeping, for profiling.
fn stages(versions: &[String], rounds: usize) {
    // Thread CPU time (see `thread_cpu_ns`).
    let ms = |t: u64| (thread_cpu_ns() - t) as f64 / 1e6;
    let mut rows: Vec<(&str, Vec<f64>)> = [
        "parse YAML -> document",
        "  same, serde-saphyr alone",
        "validate",
        "compile rules (septa-control)",
        "build classifier table",
        "canonical JSON + sha256",
        "diff summary vs previous",
        "clone table for publish",
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    let mut prev: Option<septa_control::ValidatedPolicy> = None;
    for i in 0..rounds {
        let text = &versions[i % 2];
        let t = thread_cpu_ns();
        let doc = septa_control::policy::parse_document(text, Format::Yaml).unwrap();
        rows[0].1.push(ms(t));
        // The general path the document takes when the fast one declines (see policy::parse).
        let t = thread_cpu_ns();
        let slow: septa_control::policy::PolicyDocument = serde_saphyr::from_str(text).unwrap();
        rows[1].1.push(ms(t));
        assert_eq!(slow, doc, "both YAML paths read the same document");
        let t = thread_cpu_ns();
        let p = septa_control::policy::validate(doc).unwrap();
        rows[2].1.push(ms(t));
        let t = thread_cpu_ns();
        let (rules, _) = septa_control::compile::compile_rules(&p).unwrap();
        rows[3].1.push(ms(t));
        let t = thread_cpu_ns();
        let table =
            septa_classifier::compile_with(&rules, &septa_classifier::CompileOptions::default())
                .unwrap();
        rows[4].1.push(ms(t));
        let t = thread_cpu_ns();
        let _ = septa_control::audit::record::sha256_hex(&p.canonical_json());
        rows[5].1.push(ms(t));
        let t = thread_cpu_ns();
        if let Some(q) = &prev {
            let _ = septa_control::diff::summary(q.document(), p.document());
        }
        rows[6].1.push(ms(t));
        let t = thread_cpu_ns();
        let _copy = table.clone();
        rows[7].1.push(ms(t));
        prev = Some(p);
    }
    println!("stages, thread CPU time (median of {rounds}):");
    for (name, mut v) in rows {
        v.sort_by(f64::total_cmp);
        println!("  {name:32} {:8.1} ms", v[v.len() / 2]);
    }
}

/// `conduits` conduits between 200 zones, four TCP ports each (so four rules each).
fn policy(conduits: usize, base: usize) -> String {
    let zones = 200;
    let mut s = String::from(
        "apiVersion: septa.io/v1\nkind: Policy\nmetadata:\n  name: bench\nspec:\n  zones:\n",
    );
    for z in 0..zones {
        s.push_str(&format!(
            "    - name: z{z}\n      subnets: [10.{}.{}.0/24]\n",
            z / 256,
            z % 256
        ));
    }
    s.push_str("  conduits:\n");
    for k in 0..conduits {
        let (a, b) = (k % zones, (k * 7 + 1) % zones);
        let p = (base + 8 * k) % 60_000 + 1;
        s.push_str(&format!(
            "    - name: c{k}\n      from: [z{a}]\n      to: [z{b}]\n      services:\n        - proto: tcp\n          ports: [{}, {}, {}, {}]\n",
            p,
            p + 2,
            p + 4,
            p + 6
        ));
    }
    s
}

/// CPU time of the calling thread in ns (Linux `/proc/thread-self/schedstat`; 0 elsewhere).
/// On a shared, overloaded machine wall time mostly measures the neighbours; CPU time does not.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// This thread's id (the last component of `/proc/thread-self`).
fn thread_id() -> String {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// CPU time of every thread of the process except `skip`, in ns.
fn process_cpu_ns_except(skip: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy() != skip)
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn stats(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.1} ms, min {:.1} ms, max {:.1} ms",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let conduits: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_500);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let versions = [policy(conduits, 0), policy(conduits, 30_000)];

    let mut baseline = Vec::new();
    let mut baseline_cpu = Vec::new();
    let mut rules = 0;
    for i in 0..rounds {
        let (t, c0) = (Instant::now(), thread_cpu_ns());
        let (_, c) = check_policy(&versions[i % 2], Format::Yaml, None).expect("valid policy");
        baseline.push(t.elapsed().as_secs_f64() * 1e3);
        baseline_cpu.push((thread_cpu_ns() - c0) as f64 / 1e6);
        rules = c.table().len();
    }
    stages(&versions, rounds);
    // The same policies as JSON documents (what API clients other than the console send).
    let json_versions: Vec<serde_json::Value> = versions
        .iter()
        .map(|v| {
            let p = septa_control::parse_policy(v, Format::Yaml).expect("valid policy");
            serde_json::from_slice(&p.canonical_json()).expect("canonical JSON")
        })
        .collect();

    let tmp = tempfile::tempdir().unwrap();
    let cell = TableCell::new(septa_classifier::compile(&[]).unwrap());
    let clock = Arc::new(SystemClock);
    let svc = PolicyService::open(
        ServiceConfig::new(tmp.path()),
        DynPublisher(Arc::new(CellPublisher(Arc::clone(&cell)))),
        clock.clone(),
    )
    .unwrap();
    let mut opts = ApiOptions::new(tmp.path());
    opts.password_cost = PasswordCost::insecure_fast_for_tests();
    opts.limits.body_bytes = 64 << 20;
    let (state, _) = AppState::new(svc, clock, opts).unwrap();
    let secret = "septa_bench_author";
    state
        .auth
        .insert_token(
            TokenInfo {
                id: "bench".into(),
                role: Role::PolicyAuthor,
                created_by: "bench".into(),
                created_ms: 0,
                expires_ms: None,
            },
            secret,
            || Ok(()),
        )
        .unwrap();
    let router = app(state);

    // A worker-style reader: loads the table in a loop and notes when each epoch appears.
    let seen = Arc::new(AtomicU64::new(1));
    let seen_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let reader_tid: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (cell, seen, seen_at, stop, tid) = (
            Arc::clone(&cell),
            Arc::clone(&seen),
            Arc::clone(&seen_at),
            Arc::clone(&stop),
            Arc::clone(&reader_tid),
        );
        std::thread::spawn(move || {
            *tid.lock().unwrap() = thread_id();
            let mut r = cell.reader();
            while !stop.load(Ordering::Relaxed) {
                let e = r.load().epoch();
                if e != seen.load(Ordering::Relaxed) {
                    *seen_at.lock().unwrap() = Some(Instant::now());
                    seen.store(e, Ordering::Release);
                }
                std::hint::spin_loop();
            }
        })
    };

    let mut e2e = Vec::new();
    let mut response = Vec::new();
    let mut e2e_json = Vec::new();
    let (mut cpu_yaml, mut cpu_json) = (Vec::new(), Vec::new());
    while reader_tid.lock().unwrap().is_empty() {
        std::hint::spin_loop();
    }
    let skip = reader_tid.lock().unwrap().clone();
    for i in 0..2 * rounds {
        // Even rounds: the YAML text; odd rounds: the same policy as a JSON document.
        let yaml = i % 2 == 0;
        let res = router
            .clone()
            .oneshot(
                Request::get("/api/v1/policy")
                    .header(header::AUTHORIZATION, format!("Bearer {secret}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
        let policy = if yaml {
            serde_json::Value::String(versions[(i / 2) % 2].clone())
        } else {
            json_versions[(i / 2 + 1) % 2].clone()
        };
        let body = serde_json::json!({"policy": policy, "reason": "bench"}).to_string();
        let before = seen.load(Ordering::Acquire);
        let req = Request::post("/api/v1/policy/commit")
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::IF_MATCH, etag)
            .body(Body::from(body))
            .unwrap();
        let (t0, c0) = (Instant::now(), process_cpu_ns_except(&skip));
        let res = router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let _ = res.into_body().collect().await.unwrap();
        let t_resp = t0.elapsed();
        assert!(status.is_success(), "commit failed: {status}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.load(Ordering::Acquire) == before {
            assert!(Instant::now() < deadline, "the reader never saw the table");
            std::hint::spin_loop();
        }
        let at = seen_at.lock().unwrap().expect("noted");
        let ms = at.duration_since(t0).as_secs_f64() * 1e3;
        // CPU of the whole commit (to the response), all threads but the spinning reader.
        let cpu = (process_cpu_ns_except(&skip) - c0) as f64 / 1e6;
        if yaml {
            e2e.push(ms);
            response.push(t_resp.as_secs_f64() * 1e3);
            cpu_yaml.push(cpu);
        } else {
            e2e_json.push(ms);
            cpu_json.push(cpu);
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = med(&e2e) / med(&baseline);
    println!("policy: {conduits} conduits -> {rules} rules, {rounds} rounds");
    println!(
        "baseline validate+compile:            {}",
        stats(&mut baseline)
    );
    println!("API commit -> reader sees new table:  {}", stats(&mut e2e));
    println!(
        "  same, policy as a JSON document:     {}",
        stats(&mut e2e_json)
    );
    println!(
        "API commit response (incl. fsyncs):   {}",
        stats(&mut response)
    );
    println!("CPU time (load-independent):");
    println!(
        "  baseline validate+compile:          {}",
        stats(&mut baseline_cpu)
    );
    println!(
        "  API commit, YAML text (all threads): {}",
        stats(&mut cpu_yaml)
    );
    println!(
        "  API commit, JSON document:           {}",
        stats(&mut cpu_json)
    );
    println!("end-to-end / baseline (median): {ratio:.2}x; target <= 100 ms end to end");
}
