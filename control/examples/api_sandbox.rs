//! A throwaway API server for poking at the REST API by hand or with schemathesis: no data plane
//! (a publisher that accepts every table, no flows, no counters), plain HTTP on loopback, and an
//! admin token printed on start.
//!
//! `cargo run -p septa-control --example api_sandbox -- DATA_DIR [PORT]`

use std::sync::Arc;

use septa_control::CompiledPolicy;
use septa_control::api::auth::TokenInfo;
use septa_control::api::{ApiOptions, AppState, DynPublisher, Role, ServeConfig, TlsMode, serve};
use septa_control::clock::SystemClock;
use septa_control::lifecycle::{PolicyService, Publisher, ServiceConfig};

struct AcceptAll;

impl Publisher for AcceptAll {
    fn publish(&self, _: Option<&Arc<CompiledPolicy>>) -> Result<(), String> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: api_sandbox DATA_DIR [PORT]")?;
    let port: u16 = args.next().map_or(Ok(8080), |p| p.parse())?;
    let clock = Arc::new(SystemClock);
    let svc = PolicyService::open(
        ServiceConfig::new(&dir),
        DynPublisher(Arc::new(AcceptAll)),
        clock.clone(),
    )?;
    let (state, pw) = AppState::new(svc, clock, ApiOptions::new(&dir))?;
    if let Some(pw) = pw {
        println!("first login: admin / {pw}");
    }
    let secret = format!("septa_sandbox_{}", std::process::id());
    let info = TokenInfo {
        id: format!("sandbox-{}", std::process::id()),
        role: Role::Admin,
        created_by: "sandbox".into(),
        created_ms: 0,
        expires_ms: None,
    };
    state.auth.insert_token(info, &secret, || Ok(()))?;
    println!("admin token: {secret}");
    let mut cfg = ServeConfig::new(([127, 0, 0, 1], port).into(), &dir);
    cfg.tls = TlsMode::PlainHttp;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg, state, async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    Ok(())
}
