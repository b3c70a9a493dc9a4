//! The submitted policy text kept with each revision (store migration 5) and served by
//! `GET /api/v1/revisions/{id}/source`: byte-identical YAML with its comments after stage and
//! commit, carried over by a rollback, rendered YAML (marked `origin: rendered`) for revisions
//! without text, and a store from before the migration opened and served.

mod api_support;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use api_support::{DEMO, Harness, NullPublisher, demo_v2};
use septa_control::api::{DynPublisher, Role};
use septa_control::audit::Actor;
use septa_control::clock::ManualClock;
use septa_control::lifecycle::{CommitOptions, PolicyService, ServiceConfig};
use septa_control::{Format, parse_policy};

/// The demo with operator comments and layout that a canonical rendering would lose.
fn commented() -> String {
    format!("# Plant policy, reviewed by the OT team.\n\n{DEMO}\n# end of policy   \n")
}

async fn source(h: &Harness, token: &str, id: i64) -> Value {
    let r = h
        .call(
            Method::GET,
            &format!("/api/v1/revisions/{id}/source"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_yaml_comes_back_byte_identical_and_rollback_carries_it() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    let viewer = h.token(Role::Viewer);
    let text = commented();

    let r = h
        .call(
            Method::POST,
            "/api/v1/policy/stage",
            Some(&author),
            Some(json!({"policy": text, "format": "yaml", "reason": "draft"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let staged = r.body["revision"]["id"].as_i64().unwrap();
    let s = source(&h, &viewer, staged).await;
    assert_eq!(s["text"].as_str().unwrap(), text);
    assert_eq!(
        (s["origin"].as_str(), s["format"].as_str()),
        (Some("submitted"), Some("yaml"))
    );

    let r = h.commit(&author, &text, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let first = r.body["revision"]["id"].as_i64().unwrap();
    let s = source(&h, &viewer, first).await;
    assert_eq!(s["text"].as_str().unwrap().as_bytes(), text.as_bytes());
    assert_eq!(s["revision"], first);

    // A second version in JSON keeps its JSON text.
    let v2 = parse_policy(&demo_v2(), Format::Yaml).unwrap();
    let json_text = String::from_utf8(v2.canonical_json()).unwrap();
    let json_text = format!("  {json_text}\n");
    let r = h.commit(&author, &json_text, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let second = r.body["revision"]["id"].as_i64().unwrap();
    let s = source(&h, &viewer, second).await;
    assert_eq!(
        (s["text"].as_str().unwrap(), s["format"].as_str()),
        (json_text.as_str(), Some("json"))
    );

    // Rolling back to the first revision brings its text back with its content.
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/rollback",
            Some(&h.token(Role::Operator)),
            Some(json!({"to": first, "reason": "back"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let back = r.body["revision"]["id"].as_i64().unwrap();
    let s = source(&h, &viewer, back).await;
    assert_eq!(s["text"].as_str().unwrap(), text);
    assert_eq!(s["origin"], "submitted");

    // Unknown and malformed ids are problems, not 5xx.
    let r = h
        .call(
            Method::GET,
            "/api/v1/revisions/999/source",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .call(
            Method::GET,
            "/api/v1/revisions/x/source",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_sent_as_an_object_is_rendered_as_yaml_that_parses_back() {
    let h = Harness::new();
    let author = h.token(Role::PolicyAuthor);
    let doc: Value =
        serde_json::from_slice(&parse_policy(DEMO, Format::Yaml).unwrap().canonical_json())
            .unwrap();
    let r = h
        .call_with(
            Method::POST,
            "/api/v1/policy/commit",
            Some(&author),
            Some(json!({"policy": doc, "reason": "object form"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["revision"]["id"].as_i64().unwrap();
    let hash = r.body["revision"]["hash"].as_str().unwrap().to_owned();
    let s = source(&h, &author, id).await;
    assert_eq!(
        (s["origin"].as_str(), s["format"].as_str()),
        (Some("rendered"), Some("yaml"))
    );
    let back = parse_policy(s["text"].as_str().unwrap(), Format::Yaml).unwrap();
    assert_eq!(
        septa_control::audit::record::sha256_hex(&back.canonical_json()),
        hash,
        "the rendering is the same policy"
    );
}

#[test]
fn a_store_from_before_migration_5_opens_and_serves_rendered_text() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let open = || {
        PolicyService::open(
            ServiceConfig::new(tmp.path()),
            DynPublisher(Arc::new(NullPublisher)),
            clock.clone(),
        )
        .unwrap()
    };
    let mut svc = open();
    let info = svc
        .commit(
            &commented(),
            Format::Yaml,
            &Actor::user("alice"),
            "old build",
            CommitOptions::default(),
        )
        .unwrap();
    drop(svc);
    // Turn the database back into what the previous build wrote: no source columns, version 4.
    let conn = rusqlite::Connection::open(tmp.path().join("septa.db")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER revisions_no_update;
         ALTER TABLE revisions DROP COLUMN source_format;
         ALTER TABLE revisions DROP COLUMN source;
         CREATE TRIGGER revisions_no_update BEFORE UPDATE ON revisions
           BEGIN SELECT RAISE(ABORT, 'revisions are immutable'); END;
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(conn);

    let mut svc = open();
    assert_eq!(
        svc.running().unwrap().id,
        info.id,
        "still running after the migration"
    );
    let (src, rendered) = svc.source(info.id).unwrap();
    assert!(rendered);
    assert_eq!(src.format, Format::Yaml);
    let back = parse_policy(&src.text, Format::Yaml).unwrap();
    assert_eq!(
        septa_control::audit::record::sha256_hex(&back.canonical_json()),
        info.hash
    );
    // New revisions on the migrated store keep their text.
    let next = svc
        .commit(
            &commented(),
            Format::Yaml,
            &Actor::user("alice"),
            "new build",
            CommitOptions::default(),
        )
        .unwrap();
    assert_eq!(
        svc.source(next.id).unwrap(),
        (
            septa_control::store::RevisionSource {
                text: commented(),
                format: Format::Yaml
            },
            false
        )
    );
}
