//! Driven by the route table that enforces access (`septa_control::api::ROUTES`), so a new route
//! cannot skip these: the authorization matrix (every route × every role, plus no credentials;
//! every denial audited) and "every mutating route writes exactly one audit record".

mod api_support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use api_support::{DEMO, Harness, demo_v2};
use septa_control::api::{Access, ROUTES, Role};

/// A concrete URI for a route pattern.
fn uri(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{name}", "nobody")
        .replace("{*rest}", "index.html")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_over_every_route_and_role() {
    let h = Harness::new();
    let tokens: Vec<(Role, String)> = Role::ALL.iter().map(|&r| (r, h.token(r))).collect();
    let mut checked = 0;
    for route in ROUTES {
        let u = uri(route.path);
        let body =
            (route.method != Method::GET && route.method != Method::DELETE).then(|| json!({}));
        // Without credentials.
        let before = h.audit_head();
        let r = h.call(route.method.clone(), &u, None, body.clone()).await;
        if route.access == Access::Public {
            assert_ne!(r.status, StatusCode::NOT_FOUND, "{} not served", route.path);
            assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&r.status),
                "{} {} is public but answered {}",
                route.method,
                route.path,
                r.status
            );
        } else {
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{} {}",
                route.method,
                route.path
            );
            assert_eq!(r.content_type(), "application/problem+json");
            // Unauthenticated denials are aggregated per source and interval: nothing yet,
            // one record when the interval ends.
            assert_eq!(h.audit_head(), before, "401 on {} aggregated", route.path);
            assert_eq!(h.state.flush_denials().await.unwrap(), 1);
            assert_eq!(h.audit_head(), before + 1, "401 on {} audited", route.path);
        }
        if route.access == Access::Public {
            continue;
        }
        for (role, token) in &tokens {
            let before = h.audit_head();
            let r = h
                .call(route.method.clone(), &u, Some(token), body.clone())
                .await;
            if route.access.allows(*role) {
                assert_ne!(
                    r.body["detail"], "no such route",
                    "{} {} is in the table but not served",
                    route.method, route.path
                );
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&r.status),
                    "{role} must reach {} {} (got {})",
                    route.method,
                    route.path,
                    r.status
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role} must not reach {} {}",
                    route.method,
                    route.path
                );
                assert_eq!(r.content_type(), "application/problem+json");
                assert_eq!(
                    h.audit_head(),
                    before + 1,
                    "denial of {role} on {} audited",
                    route.path
                );
                let rec = h
                    .call(
                        Method::GET,
                        &format!("/api/v1/audit/records?cursor={before}"),
                        Some(&tokens[5].1),
                        None,
                    )
                    .await;
                assert_eq!(rec.body["items"][0]["action"], "access.denied");
            }
            checked += 1;
        }
    }
    assert!(checked >= 6 * 25, "{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_problem_404() {
    let h = Harness::new();
    let r = h
        .call(Method::GET, "/api/v1/nothing-here", None, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type(), "application/problem+json");
}

/// Marker in a fixture's headers: authenticate with the fixture's cookie, not the admin token.
const NO_TOKEN: &str = "x-test-no-token";

/// Prepares the state a mutating route needs and returns its request (method, uri, body,
/// extra headers, whether to authenticate as admin).
async fn fixture(
    h: &Harness,
    admin: &str,
    method: &Method,
    path: &str,
) -> (String, Option<Value>, Vec<(&'static str, String)>) {
    match (method.as_str(), path) {
        ("POST", "/api/v1/auth/login") => (
            path.into(),
            Some(json!({"user": "admin", "password": h.admin_password})),
            vec![],
        ),
        ("POST", "/api/v1/auth/logout") => (path.into(), None, vec![]),
        ("POST", "/api/v1/auth/password") => {
            let r = h
                .call(
                    Method::POST,
                    "/api/v1/auth/login",
                    None,
                    Some(json!({"user": "admin", "password": h.admin_password})),
                )
                .await;
            let cookie = r.headers["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let csrf = r.body["csrf_token"].as_str().unwrap().to_owned();
            (
                path.into(),
                Some(
                    json!({"current_password": h.admin_password, "new_password": "a much better password"}),
                ),
                vec![
                    ("cookie", cookie),
                    ("x-csrf-token", csrf),
                    (NO_TOKEN, String::new()),
                ],
            )
        }
        ("POST", "/api/v1/policy/commit") => (
            path.into(),
            Some(json!({"policy": DEMO, "reason": "first"})),
            vec![("if-match", "\"none\"".into())],
        ),
        ("POST", "/api/v1/policy/stage") => (
            path.into(),
            Some(json!({"policy": DEMO, "reason": "try"})),
            vec![],
        ),
        ("POST", "/api/v1/policy/rollback") => {
            assert_eq!(
                h.commit(admin, DEMO, None).await.status,
                StatusCode::CREATED
            );
            let r = h.commit(admin, &demo_v2(), None).await;
            let etag = r.headers["etag"].to_str().unwrap().to_owned();
            (
                path.into(),
                Some(json!({"to": 1, "reason": "back"})),
                vec![("if-match", etag)],
            )
        }
        ("POST", "/api/v1/policy/confirm") => {
            assert_eq!(
                h.commit(admin, DEMO, None).await.status,
                StatusCode::CREATED
            );
            assert_eq!(
                h.commit(admin, &demo_v2(), Some(60)).await.status,
                StatusCode::CREATED
            );
            (path.into(), Some(json!({"reason": "looks good"})), vec![])
        }
        ("POST", "/api/v1/users") => (
            path.into(),
            Some(json!({"name": "bob", "role": "viewer", "password": "correct horse battery"})),
            vec![],
        ),
        ("DELETE", "/api/v1/users/{name}") => {
            let r = h
                .call(
                    Method::POST,
                    "/api/v1/users",
                    Some(admin),
                    Some(json!({"name": "bob", "role": "viewer", "password": "correct horse battery"})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED);
            ("/api/v1/users/bob".into(), None, vec![])
        }
        ("POST", "/api/v1/tokens") => (
            path.into(),
            Some(json!({"id": "ci", "role": "policy-author"})),
            vec![],
        ),
        ("DELETE", "/api/v1/tokens/{id}") => {
            let r = h
                .call(
                    Method::POST,
                    "/api/v1/tokens",
                    Some(admin),
                    Some(json!({"id": "ci", "role": "viewer"})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED);
            ("/api/v1/tokens/ci".into(), None, vec![])
        }
        ("POST", "/api/v1/recommendations") => (
            path.into(),
            Some(json!({"reason": "least privilege"})),
            vec![],
        ),
        (
            "POST",
            "/api/v1/recommendations/{id}/approve" | "/api/v1/recommendations/{id}/reject",
        ) => {
            api_support::seed_history(h);
            let r = h
                .call(
                    Method::POST,
                    "/api/v1/recommendations",
                    Some(admin),
                    Some(json!({"reason": "least privilege"})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED);
            let id = r.body["id"].as_u64().unwrap();
            (
                path.replace("{id}", &id.to_string()),
                Some(json!({"reason": "reviewed"})),
                vec![],
            )
        }
        ("POST", "/api/v1/anomalies/{id}/ack" | "/api/v1/anomalies/{id}/dismiss") => {
            let id = h.state.anomalies.push(api_support::anomaly());
            (
                path.replace("{id}", &id.to_string()),
                Some(json!({"reason": "triaged"})),
                vec![],
            )
        }
        _ => panic!("mutating route {method} {path} has no fixture here: add one"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_route_writes_exactly_one_audit_record() {
    let mut n = 0;
    for route in ROUTES.iter().filter(|r| r.mutating) {
        let h = Harness::new();
        let admin = h.token(Role::Admin);
        let (u, body, extra) = fixture(&h, &admin, &route.method, route.path).await;
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let use_token =
            route.access != Access::Public && !extra.iter().any(|(k, _)| *k == NO_TOKEN);
        let extra: Vec<(&str, &str)> = extra.into_iter().filter(|(k, _)| *k != NO_TOKEN).collect();
        let token = use_token.then_some(admin.as_str());
        let before = h.audit_head();
        let r = h
            .call_with(route.method.clone(), &u, token, body, &extra)
            .await;
        assert!(
            r.status.is_success(),
            "{} {}: {} {}",
            route.method,
            route.path,
            r.status,
            r.body
        );
        assert_eq!(
            h.audit_head(),
            before + 1,
            "{} {} must write exactly one audit record",
            route.method,
            route.path
        );
        n += 1;
    }
    assert!(n >= 10, "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_also_writes_exactly_one_record() {
    let h = Harness::new();
    let admin = h.token(Role::Admin);
    let before = h.audit_head();
    let bad = DEMO.replace("subnets: [10.20.0.0/24]", "subnets: [10.20.0.0/33]");
    let r = h.commit(&admin, &bad, None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(h.audit_head(), before + 1);
}
