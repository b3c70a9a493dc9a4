//! Router tests with `oneshot` (no socket, no DPDK): the policy lifecycle over HTTP, ETag and
//! If-Match, problem+json that names the field (and leaves the running revision byte-identical),
//! body and concurrency limits, pagination, sessions with CSRF, tokens hashed at rest, the first
//! administrator, OpenAPI and Swagger UI, metrics, health, audit query/verify/export, flows.

mod api_support;

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

use api_support::{DEMO, Harness, demo_v2};
use septa_control::api::{
    Access, ApiOptions, AppState, DynPublisher, Limits, PasswordCost, ROUTES, Role,
};
use septa_control::lifecycle::{PolicyService, ServiceConfig};

/// The running policy's ETag and exact bytes.
async fn running(h: &Harness, token: &str) -> (String, Vec<u8>) {
    let r = h
        .call(Method::GET, "/api/v1/policy", Some(token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    (r.headers[header::ETAG].to_str().unwrap().to_owned(), r.raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_with_etag_then_read_back() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    let (etag, _) = running(&h, &author).await;
    assert_eq!(etag, "\"none\"");
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/commit",
            Some(&author),
            Some(json!({"policy": DEMO, "reason": "initial"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["revision"]["id"], 1);
    assert_eq!(r.body["revision"]["author"], "token:test-policy-author");
    let (etag2, body) = running(&h, &author).await;
    assert_eq!(
        etag2,
        format!("\"{}\"", r.body["revision"]["hash"].as_str().unwrap())
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["policy"]["metadata"]["name"], "demo-hospital");
    let zones = h
        .call(Method::GET, "/api/v1/policy/zones", Some(&author), None)
        .await;
    assert!(
        zones
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|z| z["name"] == "ehr-db")
    );
    let conduits = h
        .call(Method::GET, "/api/v1/policy/conduits", Some(&author), None)
        .await;
    assert!(conduits.body.as_array().unwrap().len() >= 5);
    // A policy given as a JSON object is accepted too.
    let doc = &v["policy"];
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/commit",
            Some(&author),
            Some(json!({"policy": doc, "reason": "same, as JSON"})),
            &[("if-match", &etag2)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// The read-only policy routes answer from the core's read view while the policy core is busy
/// (a commit's compile and fsyncs, an audit batch), and still show every committed change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_wait_for_the_policy_core() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    let viewer = h.token(Role::Viewer);
    let r = h.commit(&author, DEMO, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (etag, before) = running(&h, &viewer).await;
    // Hold the core lock until released, as a long commit would.
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let core = h.state.core.clone();
    let holder = std::thread::spawn(move || {
        core.run_blocking(|_| {
            held_tx.send(()).unwrap();
            hold_rx.recv().unwrap();
        })
        .unwrap();
    });
    held_rx.recv().unwrap();
    let reads = async {
        let (etag_busy, during) = running(&h, &viewer).await;
        let revs = h
            .call(Method::GET, "/api/v1/revisions", Some(&viewer), None)
            .await;
        let zones = h
            .call(Method::GET, "/api/v1/policy/zones", Some(&viewer), None)
            .await;
        (etag_busy, during, revs, zones)
    };
    let (etag_busy, during, revs, zones) =
        tokio::time::timeout(std::time::Duration::from_secs(10), reads)
            .await
            .expect("reads answered while the core was held");
    hold_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!((etag_busy, during), (etag.clone(), before));
    assert_eq!(revs.status, StatusCode::OK);
    assert_eq!(revs.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(zones.status, StatusCode::OK);
    // Every change is visible to the next read (stage adds a revision, commit a running one).
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/stage",
            Some(&author),
            Some(json!({"policy": demo_v2(), "reason": "staged"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let revs = h
        .call(Method::GET, "/api/v1/revisions", Some(&viewer), None)
        .await;
    assert_eq!(revs.body["items"].as_array().unwrap().len(), 2);
    let r = h.commit(&author, &demo_v2(), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (etag2, _) = running(&h, &viewer).await;
    assert_ne!(etag2, etag);
    assert_eq!(
        etag2,
        format!("\"{}\"", r.body["revision"]["hash"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_or_missing_if_match_is_refused_and_changes_nothing() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    assert_eq!(
        h.commit(&author, DEMO, None).await.status,
        StatusCode::CREATED
    );
    let (etag, before) = running(&h, &author).await;
    let body = json!({"policy": demo_v2(), "reason": "v2"});
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/commit",
            Some(&author),
            Some(body.clone()),
            &[("if-match", "\"0000\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.body["type"], "urn:septa:problem:etag-mismatch");
    let r = h
        .call(
            Method::POST,
            "/api/v1/policy/commit",
            Some(&author),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(running(&h, &author).await, (etag.clone(), before));
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/commit",
            Some(&author),
            Some(body),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Rollback with the old ETag is stale now.
    let ops = h.token(Role::Operator);
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/rollback",
            Some(&ops),
            Some(json!({"to": 1, "reason": "back"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_problem_json_naming_the_field_and_running_is_unchanged() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    assert_eq!(
        h.commit(&author, DEMO, None).await.status,
        StatusCode::CREATED
    );
    let before = running(&h, &author).await;
    let bad_subnet = DEMO.replace("subnets: [10.20.0.0/24]", "subnets: [10.20.0.0/33]");
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"policy": bad_subnet, "reason": "x"}),
            422,
            "policy.spec.zones",
        ),
        (json!({"policy": DEMO, "reason": ""}), 422, "reason"),
        (json!({"policy": DEMO}), 422, "reason"),
        (json!({"reason": "x"}), 422, "policy"),
        (json!({"policy": DEMO, "reason": 5}), 422, "reason"),
        (json!({"policy": 5, "reason": "x"}), 422, "policy"),
        (
            json!({"policy": DEMO, "reason": "x", "confirm_within_s": 0}),
            422,
            "confirm_within_s",
        ),
        (
            json!({"policy": DEMO, "reason": "x", "confirm_within_s": -1}),
            422,
            "confirm_within_s",
        ),
        (
            json!({"policy": DEMO, "reason": "x", "colour": "red"}),
            422,
            "colour",
        ),
        (
            json!({"policy": "apiVersion: [", "reason": "x"}),
            422,
            "policy",
        ),
    ];
    for (body, status, field) in cases {
        let r = h
            .call_with(
                Method::POST,
                "/api/v1/policy/commit",
                Some(&author),
                Some(body.clone()),
                &[("if-match", "*")],
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.body);
        assert_eq!(r.content_type(), "application/problem+json", "{body}");
        assert!(
            r.body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:septa:problem:")
        );
        assert_eq!(r.body["status"], status);
        assert!(
            r.field().starts_with(field),
            "{body}: field {:?} should start with {field:?}",
            r.field()
        );
        if body.get("colour").is_some() {
            assert!(
                r.body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("colour")
            );
        }
        assert_eq!(
            running(&h, &author).await,
            before,
            "{body} changed the running policy"
        );
    }
    // Malformed JSON, wrong media type.
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/policy/commit")
        .header(header::AUTHORIZATION, format!("Bearer {author}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("if-match", "*")
        .body(axum::body::Body::from("{\"policy\": "))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.content_type(), "application/problem+json");
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/policy/stage")
        .header(header::AUTHORIZATION, format!("Bearer {author}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(axum::body::Body::from("x"))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Parameters.
    let v = h.token(Role::Viewer);
    for (uri, field) in [
        ("/api/v1/revisions?limit=abc", "limit"),
        ("/api/v1/revisions?limit=0", "limit"),
        ("/api/v1/revisions?colour=red", "colour"),
        ("/api/v1/revisions?cursor=-1", "cursor"),
        ("/api/v1/revisions/abc", "id"),
        ("/api/v1/diff?from=1", "to"),
        ("/api/v1/diff?from=x&to=1", "from"),
        ("/api/v1/flows?src=nope", "src"),
        ("/api/v1/flows?action=maybe", "action"),
    ] {
        let r = h.call(Method::GET, uri, Some(&v), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(r.field(), field, "{uri}");
        assert_eq!(r.content_type(), "application/problem+json");
    }
    // What-if fields.
    let r = h
        .call(
            Method::POST,
            "/api/v1/policy/decide",
            Some(&v),
            Some(json!({"src": "10.10.1.5", "dst": "x", "proto": "tcp", "port": 443})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, "dst"));
    let r = h
        .call(
            Method::POST,
            "/api/v1/policy/impact",
            Some(&v),
            Some(json!({"revision": 1, "flows": [{"src": "10.10.1.5", "dst": "10.20.0.7", "proto": "tcp", "port": 70000}]})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, "flows[0].port"));
    // Bad token.
    let r = h
        .call(Method::GET, "/api/v1/policy", Some("septa_nope"), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.field(), "Authorization");
    // A known path with another method is 405 with Allow, not an access decision.
    let before_405 = h.audit_head();
    let r = h.call(Method::TRACE, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers[header::ALLOW], "GET, HEAD");
    let r = h
        .call(Method::PUT, "/api/v1/policy/commit", Some(&v), None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.audit_head(), before_405);
    // HEAD needs what GET needs.
    let r = h.call(Method::HEAD, "/api/v1/policy", Some(&v), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(running(&h, &author).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413() {
    let h = Harness::with_limits(Limits {
        body_bytes: 4096,
        ..Limits::default()
    });
    let author = h.token(Role::PolicyAuthor);
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/stage",
            Some(&author),
            Some(json!({"policy": "x".repeat(10_000), "reason": "big"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.body["type"], "urn:septa:problem:body-too-large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_limit_get_503() {
    let h = Harness::with_limits(Limits {
        concurrent_requests: 2,
        ..Limits::default()
    });
    let held = h.state.hold_all_request_permits().await;
    let r = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    drop(held);
    assert_eq!(
        h.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_stage_decide_impact_rollback_confirm_diff_and_pages() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    let approver = h.token(Role::Approver);
    let viewer = h.token(Role::Viewer);
    assert_eq!(
        h.commit(&author, DEMO, None).await.status,
        StatusCode::CREATED
    );
    let r = h
        .call(
            Method::POST,
            "/api/v1/policy/stage",
            Some(&author),
            Some(json!({"policy": demo_v2(), "reason": "try 8443"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let staged = r.body["revision"]["id"].as_i64().unwrap();
    let flow = json!({"src": "10.10.1.5", "dst": "10.10.5.10", "proto": "tcp", "port": 8443});
    let now = h
        .call(
            Method::POST,
            "/api/v1/policy/decide",
            Some(&viewer),
            Some(flow.clone()),
        )
        .await;
    assert_eq!(now.status, StatusCode::OK, "{}", now.body);
    assert_eq!(now.body["action"], "deny");
    let mut asked = flow.clone();
    asked["revision"] = staged.into();
    let then = h
        .call(
            Method::POST,
            "/api/v1/policy/decide",
            Some(&viewer),
            Some(asked),
        )
        .await;
    assert_eq!(then.body["action"], "allow");
    let imp = h
        .call(
            Method::POST,
            "/api/v1/policy/impact",
            Some(&viewer),
            Some(json!({"revision": staged, "flows": [flow, {"src": "10.10.1.5", "dst": "10.10.5.10", "proto": "tcp", "port": 443}]})),
        )
        .await;
    assert_eq!(imp.status, StatusCode::OK);
    assert_eq!(imp.body.as_array().unwrap().len(), 1);
    assert_eq!(imp.body[0]["candidate"]["action"], "allow");
    // A large preview compiles the candidate once; an unknown candidate is named.
    let many: Vec<Value> = (0..5000u32)
        .map(|i| json!({"src": "10.10.1.5", "dst": "10.10.5.10", "proto": "tcp", "port": 8000 + (i % 1000)}))
        .collect();
    let imp = h
        .call(
            Method::POST,
            "/api/v1/policy/impact",
            Some(&viewer),
            Some(json!({"revision": staged, "flows": many})),
        )
        .await;
    assert_eq!(imp.status, StatusCode::OK);
    assert_eq!(
        imp.body.as_array().unwrap().len(),
        5,
        "port 8443 five times"
    );
    let imp = h
        .call(
            Method::POST,
            "/api/v1/policy/impact",
            Some(&viewer),
            Some(json!({"revision": 77, "flows": []})),
        )
        .await;
    assert_eq!(
        (imp.status, imp.field()),
        (StatusCode::NOT_FOUND, "revision")
    );
    // Commit-confirm, confirmed by an approver.
    let r = h.commit(&author, &demo_v2(), Some(60)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["pending"]["deadline_ms"].is_i64());
    let r = h
        .call(
            Method::POST,
            "/api/v1/policy/confirm",
            Some(&approver),
            Some(json!({"reason": "ok"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = h
        .call(
            Method::POST,
            "/api/v1/policy/confirm",
            Some(&approver),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Diff and rollback.
    let d = h
        .call(Method::GET, "/api/v1/diff?from=1&to=3", Some(&viewer), None)
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    assert_eq!(
        d.body["diff"]["conduits"]["changed"][0]["name"],
        "it-to-ehr-app"
    );
    assert_eq!(d.body["summary"], "conduits +0 -0 ~1");
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/rollback",
            Some(&approver),
            Some(json!({"to": 1, "reason": "back"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["revision"]["kind"], "rollback");
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/rollback",
            Some(&approver),
            Some(json!({"to": 99, "reason": "nowhere"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!((r.status, r.field()), (StatusCode::NOT_FOUND, "to"));
    // Pages: 4 revisions, 3 per page.
    let p1 = h
        .call(
            Method::GET,
            "/api/v1/revisions?limit=3",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(p1.body["items"].as_array().unwrap().len(), 3);
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_owned();
    let p2 = h
        .call(
            Method::GET,
            &format!("/api/v1/revisions?limit=3&cursor={cursor}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(p2.body["items"].as_array().unwrap().len(), 1);
    assert!(p2.body["next_cursor"].is_null());
    let one = h
        .call(Method::GET, "/api/v1/revisions/2", Some(&viewer), None)
        .await;
    assert_eq!(one.body["revision"]["kind"], "stage");
    assert_eq!(one.body["policy"]["kind"], "Policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_need_csrf_for_mutations_and_cookies_are_locked_down() {
    let h = Harness::new();
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"user": "admin", "password": "wrong password"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"user": "admin", "password": h.admin_password})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "__Host-"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let csrf = r.body["csrf_token"].as_str().unwrap().to_owned();
    let me = h
        .call_with(
            Method::GET,
            "/api/v1/auth/me",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(me.body["actor"], "user:admin");
    let body = json!({"id": "ci", "role": "viewer"});
    let before = h.audit_head();
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/tokens",
            None,
            Some(body.clone()),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(h.audit_head(), before + 1, "CSRF refusal audited");
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/tokens",
            None,
            Some(body.clone()),
            &[("cookie", &cookie), ("x-csrf-token", "0000")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/tokens",
            None,
            Some(body),
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let secret = r.body["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("septa_"));
    // The new token works, and only its hash is stored.
    let me = h
        .call(Method::GET, "/api/v1/auth/me", Some(&secret), None)
        .await;
    assert_eq!(me.body["role"], "viewer");
    let db = std::fs::read(h.tmp.path().join("septa.db")).unwrap();
    let wal = std::fs::read(h.tmp.path().join("septa.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    // Logout ends the session.
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            None,
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let me = h
        .call_with(
            Method::GET,
            "/api/v1/auth/me",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    // Revoked tokens stop working; expired ones too.
    let admin = h.token(Role::Admin);
    let r = h
        .call(Method::DELETE, "/api/v1/tokens/ci", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let me = h
        .call(Method::GET, "/api/v1/auth/me", Some(&secret), None)
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    let r = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"id": "short", "role": "viewer", "expires_in_s": 10})),
        )
        .await;
    let short = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call(Method::GET, "/api/v1/auth/me", Some(&short), None)
            .await
            .status,
        StatusCode::OK
    );
    h.clock.advance(11_000);
    assert_eq!(
        h.call(Method::GET, "/api/v1/auth/me", Some(&short), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // The document declares expires_in_s int32: one past it is refused.
    let r = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"id": "long", "role": "viewer", "expires_in_s": 2_147_483_648_u64})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "expires_in_s", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_argon2_hashed_and_the_last_admin_stays() {
    let h = Harness::new();
    let admin = h.token(Role::Admin);
    let r = h
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": "Bad Name", "role": "viewer", "password": "long enough password"})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, "name"));
    let r = h
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": "carol", "role": "viewer", "password": "short"})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, "password"));
    let r = h
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": "carol", "role": "overlord", "password": "long enough password"})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, "role"));
    let r = h
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": "carol", "role": "auditor", "password": "long enough password"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let conn = rusqlite::Connection::open(h.tmp.path().join("septa.db")).unwrap();
    let stored: String = conn
        .query_row("SELECT password FROM users WHERE name = 'carol'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("long enough password"));
    let r = h
        .call(Method::DELETE, "/api/v1/users/admin", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let list = h
        .call(Method::GET, "/api/v1/users", Some(&admin), None)
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_is_created_once() {
    let h = Harness::new();
    assert_eq!(h.admin_password.len(), 32);
    drop(h.app);
    let dir = h.tmp.path().to_owned();
    drop(h.state);
    let svc = PolicyService::open(
        ServiceConfig::new(&dir),
        DynPublisher(std::sync::Arc::new(api_support::NullPublisher)),
        h.clock.clone(),
    )
    .unwrap();
    let mut opts = ApiOptions::new(&dir);
    opts.password_cost = PasswordCost::insecure_fast_for_tests();
    let (_, again) = AppState::new(svc, h.clock.clone(), opts).unwrap();
    assert!(again.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route_and_swagger_is_served() {
    let h = Harness::new();
    let r = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = r.body["paths"].as_object().unwrap();
    for route in ROUTES {
        if route.path.starts_with("/api/v1/docs") || route.path == "/api/v1/openapi.json" {
            continue;
        }
        let op = &paths
            .get(route.path)
            .unwrap_or_else(|| panic!("{} missing from the OpenAPI document", route.path))
            [route.method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} not described",
            route.method,
            route.path
        );
    }
    let ui = h.call(Method::GET, "/api/v1/docs/", None, None).await;
    assert_eq!(ui.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&ui.raw).contains("<html"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_counters() {
    let h = Harness::new();
    assert_eq!(
        h.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    let r = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.body, json!({"ready": true, "policy_running": false}));
    assert_eq!(
        h.call(Method::GET, "/metrics", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let viewer = h.token(Role::Viewer);
    let r = h.call(Method::GET, "/metrics", Some(&viewer), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.raw).unwrap();
    assert!(text.contains("septa_api_access_denied_total 1"), "{text}");
    assert!(text.ends_with("# EOF\n"));
    let r = h
        .call(Method::GET, "/api/v1/counters", Some(&viewer), None)
        .await;
    assert_eq!(r.body, json!({"ports": [], "drops": []}));
    let r = h
        .call(
            Method::GET,
            "/api/v1/flows?proto=tcp&port=502",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(r.body, json!({"items": []}));
    let r = h
        .call(Method::GET, "/api/v1/flows/stream", Some(&viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("text/event-stream"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_verify_and_export() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    let auditor = h.token(Role::Auditor);
    assert_eq!(
        h.commit(&author, DEMO, None).await.status,
        StatusCode::CREATED
    );
    let r = h
        .call(
            Method::GET,
            "/api/v1/audit/records?action=policy.commit",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["actor"]["name"], "test-policy-author");
    let r = h
        .call(
            Method::GET,
            "/api/v1/audit/records?limit=1&actor=system:bootstrap",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(r.body["items"][0]["action"], "user.create");
    let r = h
        .call(
            Method::GET,
            "/api/v1/audit/records?limit=2",
            Some(&auditor),
            None,
        )
        .await;
    let c = r.body["next_cursor"].as_str().unwrap().to_owned();
    let r2 = h
        .call(
            Method::GET,
            &format!("/api/v1/audit/records?limit=2&cursor={c}"),
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(
        r2.body["items"][0]["seq"],
        r.body["items"][1]["seq"].as_u64().unwrap() + 1
    );
    // The document declares the cursor int64: one past it is refused, not read as a u64.
    let r = h
        .call(
            Method::GET,
            "/api/v1/audit/records?cursor=9223372036854775808",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = h
        .call(Method::GET, "/api/v1/audit/verify", Some(&auditor), None)
        .await;
    assert_eq!(v.body["ok"], true, "{}", v.body);
    assert_eq!(v.body["report"]["key_trusted"], true);
    let head = h.audit_head();
    let e = h
        .call(
            Method::GET,
            &format!("/api/v1/audit/export?from=1&to={head}"),
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.body);
    assert_eq!(e.body["manifest"]["from"], 1);
    let files = e.body["files"].as_object().unwrap();
    assert!(files.keys().any(|k| k.starts_with("segment-")));
    // The bundle verifies on its own.
    let out = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(out.path().join(name), text.as_str().unwrap()).unwrap();
    }
    septa_control::audit::verify(out.path()).unwrap();
    let e = h
        .call(
            Method::GET,
            "/api/v1/audit/export?from=5&to=1",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!((e.status, e.field()), (StatusCode::BAD_REQUEST, "to"));
    // Auditors cannot write policy; authors cannot read the audit log.
    assert_eq!(
        h.commit(&auditor, DEMO, None).await.status,
        StatusCode::FORBIDDEN
    );
    let r = h
        .call(Method::GET, "/api/v1/audit/records", Some(&author), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(ROUTES.iter().any(|r| r.access == Access::Public));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticker_reverts_an_unconfirmed_commit() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    assert_eq!(
        h.commit(&author, DEMO, None).await.status,
        StatusCode::CREATED
    );
    let (first, _) = running(&h, &author).await;
    assert_eq!(
        h.commit(&author, &demo_v2(), Some(30)).await.status,
        StatusCode::CREATED
    );
    assert_ne!(running(&h, &author).await.0, first);
    let ticker = septa_control::api::serve::spawn_ticker(
        h.state.clone(),
        std::time::Duration::from_millis(10),
    );
    h.clock.advance(31_000);
    let mut reverted = false;
    for _ in 0..200 {
        if running(&h, &author).await.0 == first {
            reverted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    ticker.abort();
    assert!(reverted, "the ticker did not revert the unconfirmed commit");
    let r = h
        .call(
            Method::GET,
            "/api/v1/audit/records?action=policy.revert",
            Some(&h.token(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(r.body["items"][0]["actor"]["name"], "commit-confirm");
}

/// The real listener: HTTPS with the self-signed certificate made on first start (via curl when
/// it is installed; the router itself is covered by the oneshot tests above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_https_with_a_generated_certificate() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed; skipping the socket test");
        return;
    }
    let h = Harness::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let cfg = septa_control::api::ServeConfig::new(addr, h.tmp.path());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(septa_control::api::serve(
        cfg,
        h.state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    let url = format!("https://127.0.0.1:{port}/healthz");
    let mut out = None;
    for _ in 0..100 {
        let o = curl(&["-sk", "--max-time", "5", &url]).await;
        if o.status.success() {
            out = Some(String::from_utf8_lossy(&o.stdout).into_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(out.as_deref(), Some(r#"{"status":"ok"}"#));
    assert!(h.tmp.path().join("tls/cert.pem").exists());
    // Plain HTTP on the TLS port is not served.
    let o = curl(&[
        "-s",
        "--max-time",
        "5",
        &format!("http://127.0.0.1:{port}/healthz"),
    ])
    .await;
    assert!(!String::from_utf8_lossy(&o.stdout).contains("ok"));
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

async fn curl(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_pause_the_name() {
    let h = Harness::new();
    let login = |pw: String| json!({"user": "admin", "password": pw});
    for _ in 0..5 {
        let r = h
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(login("wrong".into())),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let before = h.audit_head();
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login(h.admin_password.clone())),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[header::RETRY_AFTER], "2");
    assert_eq!(h.audit_head(), before + 1, "throttled login audited");
    h.clock.advance(1_001);
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login(h.admin_password.clone())),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_change_their_own_password() {
    let h = Harness::new();
    let login = |pw: &str| json!({"user": "admin", "password": pw});
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login(&h.admin_password)),
        )
        .await;
    let cookie = r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = r.body["csrf_token"].as_str().unwrap().to_owned();
    let session = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let change = |cur: &str, new: &str| json!({"current_password": cur, "new_password": new});
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/auth/password",
            None,
            Some(change("wrong", "a much better password")),
            &session,
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, "current_password"));
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/auth/password",
            None,
            Some(change(&h.admin_password, "short")),
            &session,
        )
        .await;
    assert_eq!((r.status.as_u16(), r.field()), (422, "new_password"));
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/auth/password",
            None,
            Some(change(&h.admin_password, "a much better password")),
            &session,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // The session that changed it stays; the old password is gone.
    let me = h
        .call_with(Method::GET, "/api/v1/auth/me", None, None, &session)
        .await;
    assert_eq!(me.status, StatusCode::OK);
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login(&h.admin_password)),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(login("a much better password")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Tokens have no password.
    let t = h.token(Role::Viewer);
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&t),
            Some(change("x", "a much better password")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}
