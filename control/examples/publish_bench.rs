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
    let mut rules = 0;
    for i in 0..rounds {
        let t = Instant::now();
        let (_, c) = check_policy(&versions[i % 2], Format::Yaml, None).expect("valid policy");
        baseline.push(t.elapsed().as_secs_f64() * 1e3);
        rules = c.table().len();
    }

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
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (cell, seen, seen_at, stop) = (
            Arc::clone(&cell),
            Arc::clone(&seen),
            Arc::clone(&seen_at),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
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
    for i in 0..rounds {
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
        let body = serde_json::json!({"policy": versions[i % 2], "reason": "bench"}).to_string();
        let before = seen.load(Ordering::Acquire);
        let req = Request::post("/api/v1/policy/commit")
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::IF_MATCH, etag)
            .body(Body::from(body))
            .unwrap();
        let t0 = Instant::now();
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
        e2e.push(at.duration_since(t0).as_secs_f64() * 1e3);
        response.push(t_resp.as_secs_f64() * 1e3);
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
        "API commit response (incl. fsyncs):   {}",
        stats(&mut response)
    );
    println!("end-to-end / baseline (median): {ratio:.2}x; target <= 100 ms end to end");
}
