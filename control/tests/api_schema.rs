//! The OpenAPI contract: no body in the document is left untyped unless an allow-list entry says
//! why, and real answers (and the requests that made them) validate against the document's
//! schemas (JSON Schema 2020-12, as OpenAPI 3.1 uses), with every field the server sends
//! documented.

mod api_support;

use api_support::{DEMO, Harness, demo_v2, seed_history};
use axum::http::{Method, StatusCode};
use septa_control::api::Role;
use serde_json::{Value, json};

/// Schemas that are deliberately free-form, and why. A key is a body (`METHOD path status
/// media type`, or `... request media type`) or a component property (`#Schema.property`).
const FREE_FORM: &[(&str, &str)] = &[
    (
        "GET /api/v1/flows/stream 200 text/event-stream",
        "server-sent events: each event's data is a FlowRecord; SSE framing has no JSON schema",
    ),
    (
        "#FieldChange.before",
        "a changed policy field's old value: string, number, list or object depending on the field",
    ),
    ("#FieldChange.after", "the new value, as before"),
    (
        "#PolicyService.l7",
        "an L7 constraint: one protocol key with that protocol's grammar, validated field by field",
    ),
    (
        "#EvidenceStatement.data",
        "depends on the statement's section; covered by the statement's sha256",
    ),
];

/// Keys of a schema that only annotate it.
const ANNOTATIONS: &[&str] = &[
    "description",
    "example",
    "examples",
    "title",
    "default",
    "deprecated",
];

/// Whether `s` says nothing about the shape of a value: no keyword at all beyond annotations,
/// or an object without properties, additional-property schema or composition.
fn untyped(s: &Value) -> bool {
    let Some(m) = s.as_object() else {
        return false;
    };
    if m.contains_key("$ref") {
        return false;
    }
    if m.keys().all(|k| ANNOTATIONS.contains(&k.as_str())) {
        return true;
    }
    if ["oneOf", "anyOf", "allOf"]
        .iter()
        .any(|k| m.contains_key(*k))
    {
        return false;
    }
    let is_object = match &m.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => false,
    };
    is_object && !m.contains_key("properties") && !m.contains_key("additionalProperties")
}

/// Every untyped schema under `s`, named from `at`.
fn walk(s: &Value, at: &str, out: &mut Vec<String>) {
    if untyped(s) {
        out.push(at.to_owned());
    }
    let Some(m) = s.as_object() else { return };
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(v, &format!("{at}.{k}"), out);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(v) = m.get(k) {
            walk(v, &format!("{at}[{k}]"), out);
        }
    }
    for k in ["oneOf", "anyOf", "allOf", "prefixItems"] {
        for (i, v) in m
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            walk(v, &format!("{at}|{k}{i}"), out);
        }
    }
}

/// Every untyped request body, response body and component schema of the document. A media
/// type without a schema counts as untyped.
fn untyped_schemas(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let absent = Value::Object(Default::default());
    let content = |c: &Value, at: String, out: &mut Vec<String>| {
        for (media, m) in c.as_object().into_iter().flatten() {
            walk(
                m.get("schema").unwrap_or(&absent),
                &format!("{at} {media}"),
                out,
            );
        }
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            content(
                &op["requestBody"]["content"],
                format!("{at} request"),
                &mut out,
            );
            for (code, r) in op["responses"].as_object().into_iter().flatten() {
                content(&r["content"], format!("{at} {code}"), &mut out);
            }
        }
    }
    for (name, s) in doc["components"]["schemas"].as_object().unwrap() {
        walk(s, &format!("#{name}"), &mut out);
    }
    out.sort();
    out
}

async fn document(h: &Harness) -> Value {
    let r = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_is_untyped_without_a_reason() {
    let doc = document(&Harness::new()).await;
    let found = untyped_schemas(&doc);
    let allowed: Vec<String> = {
        let mut v: Vec<String> = FREE_FORM.iter().map(|(k, _)| (*k).to_owned()).collect();
        v.sort();
        v
    };
    let unexplained: Vec<&String> = found.iter().filter(|f| !allowed.contains(f)).collect();
    assert!(
        unexplained.is_empty(),
        "untyped schemas (give them a schema, or add them to FREE_FORM with a reason): {unexplained:?}"
    );
    let stale: Vec<&String> = allowed.iter().filter(|a| !found.contains(a)).collect();
    assert!(
        stale.is_empty(),
        "FREE_FORM entries no longer untyped: {stale:?}"
    );
    // A free-form property says so to the document's readers too.
    for (key, _) in FREE_FORM {
        if let Some((schema, prop)) = key.strip_prefix('#').and_then(|k| k.split_once('.')) {
            let d = doc["components"]["schemas"][schema]["properties"][prop]["description"]
                .as_str()
                .unwrap_or_default();
            assert!(
                d.contains("ree-form"),
                "{key} has no free-form description: {d:?}"
            );
        }
    }
}

#[test]
fn the_walk_finds_untyped_schemas() {
    let doc = json!({
        "paths": {"/x": {"get": {"responses": {
            "200": {"content": {"application/json": {}}},
            "201": {"content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
            "202": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}
        }}}},
        "components": {"schemas": {
            "A": {"type": "object", "properties": {
                "typed": {"type": "string"},
                "any": {"description": "anything"},
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
                "nullable": {"type": ["object", "null"]},
                "union": {"oneOf": [{"type": "string"}, {}]}
            }}
        }}
    });
    assert_eq!(
        untyped_schemas(&doc),
        [
            "#A.any",
            "#A.nullable",
            "#A.union|oneOf1",
            "GET /x 200 application/json",
            "GET /x 201 application/json[items]",
        ]
    );
}

/// Closes every object schema that lists its properties (`additionalProperties: false`), so a
/// field the server sends without documenting it fails validation.
fn closed(s: &mut Value) {
    match s {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in m.values_mut() {
                closed(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(closed),
        _ => {}
    }
}

/// Validates JSON bodies against the schemas the document gives them.
struct Contract {
    doc: Value,
    components: Value,
}

impl Contract {
    fn new(doc: Value) -> Self {
        let mut components = doc["components"].clone();
        closed(&mut components);
        Contract { doc, components }
    }

    /// The operation of the document serving `uri` (templates such as `{id}` match a segment).
    fn operation(&self, method: &Method, uri: &str) -> &Value {
        let path = uri.split('?').next().unwrap();
        let segs: Vec<&str> = path.split('/').collect();
        let (_, item) = self.doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(t, _)| {
                let ts: Vec<&str> = t.split('/').collect();
                ts.len() == segs.len()
                    && ts
                        .iter()
                        .zip(&segs)
                        .all(|(t, s)| t == s || t.starts_with('{'))
            })
            .unwrap_or_else(|| panic!("{path} is not in the document"));
        let op = &item[method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in the document");
        op
    }

    fn check(&self, schema: &Value, instance: &Value, what: &str) {
        let mut schema = schema.clone();
        closed(&mut schema);
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.components,
            "allOf": [schema],
        });
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} does not fit its schema: {errors:#?}\n{instance:#}"
        );
    }

    /// Checks a response body against its documented schema (and its request body, if any).
    fn response(&self, method: &Method, uri: &str, status: StatusCode, body: &Value) {
        let op = self.operation(method, uri);
        let r = &op["responses"][status.as_str()];
        let content = r["content"].as_object().unwrap_or_else(|| {
            panic!("{method} {uri}: status {status} has no documented content: {r}")
        });
        let (media, c) = content
            .iter()
            .find(|(m, _)| m.ends_with("json"))
            .unwrap_or_else(|| panic!("{method} {uri} {status}: no JSON content documented"));
        let schema = c
            .get("schema")
            .unwrap_or_else(|| panic!("{method} {uri} {status} {media}: no schema"));
        self.check(schema, body, &format!("{method} {uri} {status}"));
    }

    fn request(&self, method: &Method, uri: &str, body: &Value) {
        let op = self.operation(method, uri);
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {uri}: no request schema");
        self.check(schema, body, &format!("{method} {uri} request"));
    }
}

/// Calls the API and checks the request and the answer against the document.
async fn checked(
    h: &Harness,
    c: &Contract,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Value {
    if let Some(b) = &body {
        c.request(&method, uri, b);
    }
    let r = h
        .call_with(method.clone(), uri, Some(token), body, extra)
        .await;
    assert!(
        r.status.is_success(),
        "{method} {uri}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.raw)
    );
    c.response(&method, uri, r.status, &r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_fit_the_documented_schemas() {
    let h = Harness::new();
    seed_history(&h);
    let c = Contract::new(document(&h).await);
    let admin = h.token(Role::Admin);
    let star = [("if-match", "*")];

    // Before any commit: no policy, empty lists.
    let p = checked(&h, &c, Method::GET, "/api/v1/policy", &admin, None, &[]).await;
    assert_eq!(p["policy"], Value::Null);
    // A text commit, then the same policy as a document (the demo has an L7 service), then v2.
    let commit = |policy: Value| json!({"policy": policy, "reason": "schema test"});
    checked(
        &h,
        &c,
        Method::POST,
        "/api/v1/policy/commit",
        &admin,
        Some(commit(json!(DEMO))),
        &star,
    )
    .await;
    let p = checked(&h, &c, Method::GET, "/api/v1/policy", &admin, None, &[]).await;
    let doc = p["policy"].clone();
    assert!(
        doc["spec"]["conduits"].as_array().unwrap().len() > 1,
        "{doc}"
    );
    let w = checked(
        &h,
        &c,
        Method::POST,
        "/api/v1/policy/stage",
        &admin,
        Some(json!({"policy": doc, "reason": "schema test"})),
        &[],
    )
    .await;
    let staged = w["revision"]["id"].as_i64().unwrap();
    checked(
        &h,
        &c,
        Method::POST,
        "/api/v1/policy/commit",
        &admin,
        Some(commit(json!(demo_v2()))),
        &star,
    )
    .await;
    let zones = checked(
        &h,
        &c,
        Method::GET,
        "/api/v1/policy/zones",
        &admin,
        None,
        &[],
    )
    .await;
    assert!(!zones.as_array().unwrap().is_empty());
    let conduits = checked(
        &h,
        &c,
        Method::GET,
        "/api/v1/policy/conduits",
        &admin,
        None,
        &[],
    )
    .await;
    assert!(
        conduits
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["services"][0]["l7"].is_object()),
        "{conduits}"
    );
    let latest =
        checked(&h, &c, Method::GET, "/api/v1/revisions", &admin, None, &[]).await["items"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["id"]
            .as_i64()
            .unwrap();
    checked(
        &h,
        &c,
        Method::GET,
        &format!("/api/v1/revisions/{latest}"),
        &admin,
        None,
        &[],
    )
    .await;

    // A diff with a changed field (ports of a conduit): before/after are lists.
    let d = checked(
        &h,
        &c,
        Method::GET,
        &format!("/api/v1/diff?from={staged}&to={latest}"),
        &admin,
        None,
        &[],
    )
    .await;
    let changed = &d["diff"]["conduits"]["changed"][0];
    assert_eq!(changed["fields"][0]["field"], "services", "{d}");
    // A diff with added, removed and moved items and a metadata change: the first two conduits
    // swapped, the last one renamed.
    let mut edited = doc.clone();
    let list = edited["spec"]["conduits"].as_array_mut().unwrap();
    list.swap(0, 1);
    let last = list.last_mut().unwrap();
    last["name"] = json!(format!("{}-renamed", last["name"].as_str().unwrap()));
    edited["metadata"]["description"] = json!("edited");
    let w = checked(
        &h,
        &c,
        Method::POST,
        "/api/v1/policy/stage",
        &admin,
        Some(json!({"policy": edited, "reason": "schema test"})),
        &[],
    )
    .await;
    let edited_id = w["revision"]["id"].as_i64().unwrap();
    let d = checked(
        &h,
        &c,
        Method::GET,
        &format!("/api/v1/diff?from={staged}&to={edited_id}"),
        &admin,
        None,
        &[],
    )
    .await;
    let conduits = &d["diff"]["conduits"];
    assert_eq!(conduits["added"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(conduits["removed"].as_array().unwrap().len(), 1, "{d}");
    assert!(conduits["changed"][0]["moved"].is_array(), "{d}");
    assert_eq!(d["diff"]["metadata"][0]["after"], "edited", "{d}");

    // Audit: records (with before/after hashes), verify, export.
    let page = checked(
        &h,
        &c,
        Method::GET,
        "/api/v1/audit/records?limit=1000",
        &admin,
        None,
        &[],
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert!(items.iter().any(|r| r["after"].is_string()), "{page}");
    let last = items.last().unwrap()["seq"].as_u64().unwrap();
    let v = checked(
        &h,
        &c,
        Method::GET,
        "/api/v1/audit/verify",
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["report"]["last_seq"], last);
    let e = checked(
        &h,
        &c,
        Method::GET,
        &format!("/api/v1/audit/export?from=1&to={last}"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(e["manifest"]["from"], 1, "{e}");

    // A recommendation in full (its policy document) and an evidence pack.
    let r = checked(
        &h,
        &c,
        Method::POST,
        "/api/v1/recommendations",
        &admin,
        Some(json!({"reason": "schema test", "from_ms": 0})),
        &[],
    )
    .await;
    let id = r["id"].as_u64().unwrap();
    let detail = checked(
        &h,
        &c,
        Method::GET,
        &format!("/api/v1/recommendations/{id}"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(detail["document"]["kind"], "Policy", "{detail}");
    let pack = checked(
        &h,
        &c,
        Method::GET,
        "/api/v1/evidence?from_ms=0&to_ms=2000000",
        &admin,
        None,
        &[],
    )
    .await;
    assert!(!pack["controls"].as_array().unwrap().is_empty(), "{pack}");
}

/// The checks fail on what they must catch: an undocumented field, a wrong type, a request
/// whose policy is neither text nor a document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_check_refuses_what_the_document_does_not_describe() {
    let h = Harness::new();
    let c = Contract::new(document(&h).await);
    let fails =
        |f: Box<dyn FnOnce() + std::panic::UnwindSafe>| std::panic::catch_unwind(f).is_err();
    let page = |items: Value| json!({"items": items, "next_cursor": null});
    let record = json!({"seq": 0, "ts_ms": 1, "actor": {"kind": "system", "name": "audit"},
        "action": "audit.genesis", "object": "log", "before": null, "after": null, "reason": "",
        "result": "ok", "detail": "", "prev_hash": "00", "hash": "11"});
    let get = Method::GET;
    c.response(
        &get,
        "/api/v1/audit/records",
        StatusCode::OK,
        &page(json!([record.clone()])),
    );
    let mut extra = record.clone();
    extra["surprise"] = json!(1);
    let mut wrong = record.clone();
    wrong["actor"]["kind"] = json!("robot");
    let c = std::sync::Arc::new(c);
    for bad in [
        page(json!([extra])),
        page(json!([wrong])),
        page(json!([{"seq": 0}])),
    ] {
        let c = c.clone();
        assert!(
            fails(Box::new(move || c.response(
                &Method::GET,
                "/api/v1/audit/records",
                StatusCode::OK,
                &bad
            ))),
            "accepted"
        );
    }
    let cc = c.clone();
    assert!(fails(Box::new(move || cc.request(
        &Method::POST,
        "/api/v1/policy/commit",
        &json!({"policy": {"kind": "Policy"}, "reason": "r"})
    ))));
    c.request(
        &Method::POST,
        "/api/v1/policy/commit",
        &json!({"policy": DEMO, "reason": "r"}),
    );
}
