//! Security behaviour that needs more than one request: login throttling per client address,
//! sessions that survive a restart (and revocations that do too), and the aggregation of
//! unauthenticated access denials into one audit record per source per interval.

mod api_support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use api_support::{Harness, NullPublisher, Reply};
use septa_control::api::{ApiOptions, AppState, DynPublisher, PasswordCost, app};
use septa_control::lifecycle::{PolicyService, ServiceConfig};

/// A request as if it came over a connection from `peer`.
async fn from(
    h: &Harness,
    peer: &str,
    method: Method,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let addr: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    h.send(req).await
}

async fn login(h: &Harness, peer: &str, user: &str, password: &str) -> Reply {
    from(
        h,
        peer,
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"user": user, "password": password})),
        &[],
    )
    .await
}

/// The last `n` audit records, oldest first.
async fn last_records(h: &Harness, n: u64) -> Vec<Value> {
    let head = h.audit_head();
    let r = h
        .call(
            Method::GET,
            &format!("/api/v1/audit/records?cursor={}", head - n),
            Some(&h.token(septa_control::api::Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

/// Drops the app and the service and opens both again on the same data directory (a restart).
fn restart(h: Harness) -> Harness {
    let Harness {
        tmp,
        clock,
        state,
        app: old_app,
        admin_password,
    } = h;
    drop(old_app);
    drop(state);
    let svc = PolicyService::open(
        ServiceConfig::new(tmp.path()),
        DynPublisher(Arc::new(NullPublisher)),
        clock.clone(),
    )
    .unwrap();
    let mut opts = ApiOptions::new(tmp.path());
    opts.password_cost = PasswordCost::insecure_fast_for_tests();
    let (state, pw) = AppState::new(svc, clock.clone(), opts).unwrap();
    assert!(pw.is_none(), "the admin exists already");
    Harness {
        app: app(state.clone()),
        tmp,
        clock,
        state,
        admin_password,
    }
}

fn session_of(r: &Reply) -> (String, String) {
    let cookie = r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (cookie, r.body["csrf_token"].as_str().unwrap().to_owned())
}

async fn me(h: &Harness, cookie: &str) -> StatusCode {
    from(
        h,
        "192.0.2.9:1",
        Method::GET,
        "/api/v1/auth/me",
        None,
        &[("cookie", cookie)],
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_throttled_per_address_with_retry_after_and_one_audit_record_per_window() {
    let h = Harness::new();
    let a = "192.0.2.1:40000";
    // Unknown names, so the per-name lockout never applies: only the address bucket counts.
    for i in 0..10 {
        let r = login(&h, a, &format!("nobody-{i}"), "wrong password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let before = h.audit_head();
    let r = login(&h, a, "admin", &h.admin_password).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.headers[header::RETRY_AFTER], "6");
    assert_eq!(h.audit_head(), before + 1, "the first refusal is audited");
    let rec = &last_records(&h, 1).await[0];
    assert_eq!(rec["action"], "auth.login");
    assert_eq!(rec["object"], "address/192.0.2.1");
    assert!(rec["result"].as_str().unwrap().starts_with("refused"));
    // More refusals in the same window: answered, not audited again.
    for _ in 0..20 {
        let r = login(&h, "192.0.2.1:40001", "admin", "x").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(h.audit_head(), before + 1);
    // Another address is not affected.
    let r = login(&h, "198.51.100.7:1", "admin", &h.admin_password).await;
    assert_eq!(r.status, StatusCode::OK);
    // One attempt more per 6 s.
    h.clock.advance(6_000);
    let r = login(&h, a, "admin", &h.admin_password).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        login(&h, a, "admin", "x").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // After the window (a drained bucket's refill time, 60 s), the next refusal is audited
    // again and says how many were not.
    h.clock.advance(60_000);
    for _ in 0..10 {
        login(&h, a, "nobody", "x").await;
    }
    let before = h.audit_head();
    assert_eq!(
        login(&h, a, "admin", "x").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(h.audit_head(), before + 1);
    let rec = &last_records(&h, 1).await[0];
    assert!(
        rec["detail"]
            .as_str()
            .unwrap()
            .contains("21 earlier refusals from this address were not audited"),
        "{rec}"
    );
    // IPv6 clients are throttled per /64.
    for i in 0..10 {
        let peer = format!("[2001:db8::{i}]:1");
        login(&h, &peer, "nobody", "x").await;
    }
    let r = login(&h, "[2001:db8::ffff]:1", "admin", &h.admin_password).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = login(&h, "[2001:db8:0:1::1]:1", "admin", &h.admin_password).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_so_do_logout_and_revocation() {
    let h = Harness::new();
    let peer = "192.0.2.1:1";
    let (c1, csrf1) = session_of(&login(&h, peer, "admin", &h.admin_password).await);
    let (c2, _) = session_of(&login(&h, peer, "admin", &h.admin_password).await);
    let (c3, csrf3) = session_of(&login(&h, peer, "admin", &h.admin_password).await);
    // Only hashes of session ids are stored.
    let id1 = c1.split_once('=').unwrap().1.to_owned();
    let db = std::fs::read(h.tmp.path().join("septa.db")).unwrap();
    let wal = std::fs::read(h.tmp.path().join("septa.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(id1.len()).any(|w| w == id1.as_bytes()),
            "a session id is stored in clear"
        );
    }

    let h = restart(h);
    assert_eq!(h.state.auth.session_count(), 3);
    assert_eq!(me(&h, &c1).await, StatusCode::OK, "session 1 survives");
    assert_eq!(me(&h, &c2).await, StatusCode::OK, "session 2 survives");
    // Its CSRF token too: a cookie-authenticated mutation works after the restart.
    let r = from(
        &h,
        peer,
        Method::POST,
        "/api/v1/auth/logout",
        None,
        &[("cookie", &c3), ("x-csrf-token", &csrf3)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // A password change through session 1 revokes session 2 (and keeps 1).
    let r = from(
        &h,
        peer,
        Method::POST,
        "/api/v1/auth/password",
        Some(
            json!({"current_password": h.admin_password, "new_password": "a much better password"}),
        ),
        &[("cookie", &c1), ("x-csrf-token", &csrf1)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(me(&h, &c2).await, StatusCode::UNAUTHORIZED);

    let h = restart(h);
    assert_eq!(
        me(&h, &c1).await,
        StatusCode::OK,
        "the changing session stays"
    );
    assert_eq!(
        me(&h, &c2).await,
        StatusCode::UNAUTHORIZED,
        "revoked by the password change"
    );
    assert_eq!(
        me(&h, &c3).await,
        StatusCode::UNAUTHORIZED,
        "logged out before the restart"
    );
    // Expiry: past the lifetime, a restart deletes the rows.
    h.clock.advance(h.state.auth.session_ttl_ms + 1);
    assert_eq!(me(&h, &c1).await, StatusCode::UNAUTHORIZED);
    let h = restart(h);
    assert_eq!(h.state.auth.session_count(), 0);
    let conn = rusqlite::Connection::open(h.tmp.path().join("septa.db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_revokes_their_sessions_durably() {
    let h = Harness::new();
    let admin = h.token(septa_control::api::Role::Admin);
    let r = h
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": "alice", "role": "viewer", "password": "alice's long password"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (alice, _) = session_of(&login(&h, "192.0.2.1:1", "alice", "alice's long password").await);
    assert_eq!(me(&h, &alice).await, StatusCode::OK);
    let r = h
        .call(Method::DELETE, "/api/v1/users/alice", Some(&admin), None)
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let h = restart(h);
    assert_eq!(me(&h, &alice).await, StatusCode::UNAUTHORIZED);
    assert_eq!(h.state.auth.session_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_denials_are_one_audit_record_per_source_per_interval() {
    let h = Harness::new();
    let before = h.audit_head();
    for _ in 0..100 {
        let r = from(&h, "192.0.2.1:5", Method::GET, "/api/v1/policy", None, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..50 {
        let r = from(
            &h,
            "[2001:db8::1]:5",
            Method::GET,
            "/api/v1/flows",
            None,
            &[("authorization", "Bearer septa_not_a_token")],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(h.audit_head(), before, "no record per request");
    assert_eq!(h.state.flush_denials().await.unwrap(), 2);
    assert_eq!(h.audit_head(), before + 2);
    let recs = last_records(&h, 2).await;
    let details: Vec<&str> = recs.iter().map(|r| r["detail"].as_str().unwrap()).collect();
    assert!(
        details[0].starts_with("source 192.0.2.1: 100 refused requests"),
        "{details:?}"
    );
    assert!(
        details[1].starts_with("source 2001:db8::/64: 50 refused requests"),
        "{details:?}"
    );
    assert_eq!(recs[0]["object"], "route/GET /api/v1/policy");
    assert_eq!(recs[1]["reason"], "unknown or revoked token");
    assert!(
        recs.iter()
            .all(|r| r["action"] == "access.denied" && r["actor"]["name"] == "unauthenticated")
    );
    // Nothing more until the next denial; every refusal is still counted in the metrics.
    assert_eq!(h.state.flush_denials().await.unwrap(), 0);
    let m = h
        .call(
            Method::GET,
            "/metrics",
            Some(&h.token(septa_control::api::Role::Viewer)),
            None,
        )
        .await;
    let text = String::from_utf8_lossy(&m.raw);
    assert!(text.contains("septa_api_access_denied_total 150"), "{text}");
    // A flood from many addresses stays bounded: at most 256 itemised sources plus one group.
    for i in 0..1000u32 {
        let peer = format!("10.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255);
        from(&h, &peer, Method::GET, "/api/v1/policy", None, &[]).await;
    }
    assert_eq!(h.state.flush_denials().await.unwrap(), 257);
}
