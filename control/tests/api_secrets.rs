//! Secrets never reach the log: every event and span the API emits, at TRACE level, while
//! passwords, tokens, session ids and CSRF tokens flow through it (successful and failed logins,
//! token creation and use, bad credentials, refused requests, problem responses).

mod api_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode, header};
use serde_json::json;

use api_support::Harness;
use septa_control::api::Role;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the subscriber set for this thread sees every handler and middleware.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_is_ever_logged() {
    let out = Captured::default();
    let sink = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::new();
    let admin = h.token(Role::Admin);
    let pw = h.admin_password.clone();
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"user": "admin", "password": "not-the-password-xyz"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"user": "admin", "password": pw})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    let session = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let csrf = r.body["csrf_token"].as_str().unwrap().to_owned();
    let r = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"id": "ci", "role": "viewer"})),
        )
        .await;
    let minted = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call(Method::GET, "/api/v1/auth/me", Some(&minted), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = h
        .call(
            Method::GET,
            "/api/v1/users",
            Some("septa_guessed_secret_123"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": "dave", "role": "viewer", "password": "dave-secret-password"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let log = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("/api/v1/tokens"),
        "requests are traced:\n{log}"
    );
    for secret in [
        pw.as_str(),
        "not-the-password-xyz",
        "dave-secret-password",
        admin.as_str(),
        minted.as_str(),
        "septa_guessed_secret_123",
        session.as_str(),
        csrf.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}
