//! RFC 9457 problem details: the one error shape of the REST API, and the extractors that turn
//! every malformed body, query or path parameter into one that names the offending field.
//!
//! Each problem has a stable `type` (`urn:septa:problem:<slug>`) that clients may match on; the
//! `detail` is for people. Internal errors (SQLite, I/O) are logged with `tracing` and answered
//! with a generic detail: no paths, SQL or stack traces leave the process.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::error::{Diagnostic, LifecycleError, StoreError};

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field a problem is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the field in the request (`policy.spec.zones[2].subnets[0]`, `reason`,
    /// `limit`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// 1-based line inside a policy text, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based column inside a policy text, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

impl FieldError {
    /// A field error without a text location.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }

    fn from_diagnostic(prefix: &str, d: &Diagnostic) -> Self {
        let field = match (prefix.is_empty(), d.path.is_empty()) {
            (true, _) => d.path.clone(),
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", d.path),
        };
        FieldError {
            field,
            message: d.message.clone(),
            line: d.line,
            column: d.column,
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, `urn:septa:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The fields at fault, when the request was at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem with a slug, status, title and detail.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:septa:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// A request field is invalid (422).
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let e = FieldError::new(field, message);
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "Invalid request",
            format!("{}: {}", e.field, e.message),
        );
        p.errors.push(e);
        p
    }

    /// A query or path parameter is invalid (400).
    pub fn bad_param(field: impl Into<String>, message: impl Into<String>) -> Self {
        let e = FieldError::new(field, message);
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-parameter",
            "Invalid parameter",
            format!("{}: {}", e.field, e.message),
        );
        p.errors.push(e);
        p
    }

    /// Something failed inside; the detail stays generic (the cause goes to the log).
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(context, %cause, "internal error answering an API request");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            format!("{context} failed; see the appliance log"),
        )
    }

    /// Not found (404).
    pub fn not_found(what: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", what)
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.title, self.status, self.detail)
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut res = (status, Json(self)).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

/// Maps a lifecycle error to a problem. `policy_field` is the request field that carried the
/// policy text (`policy`), so diagnostics name `policy.spec...`.
pub fn lifecycle_problem(e: LifecycleError, policy_field: &str) -> Problem {
    match e {
        LifecycleError::Policy(pe) => {
            let diags = pe.diagnostics();
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-policy",
                "Invalid policy",
                format!("the policy has {} problem(s)", diags.len()),
            );
            p.errors = diags
                .iter()
                .map(|d| FieldError::from_diagnostic(policy_field, d))
                .collect();
            p
        }
        LifecycleError::Compile(c) => {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy-does-not-compile",
                "Policy does not compile",
                c.to_string(),
            );
            p.errors.push(FieldError::new(policy_field, c.to_string()));
            p
        }
        LifecycleError::ManagementPath(m) => {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "management-path",
                "Policy would cut the management path",
                m.clone(),
            );
            p.errors.push(FieldError::new(policy_field, m));
            p
        }
        LifecycleError::MissingField(f) => Problem::invalid_field(f, "must not be empty"),
        LifecycleError::ConfirmState(m) => Problem::new(
            StatusCode::CONFLICT,
            "confirm-state",
            "Commit-confirm state does not allow this",
            m,
        ),
        LifecycleError::Publish(m) => {
            tracing::error!(cause = %m, "publishing to the data plane failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "publish-failed",
                "Publishing to the data plane failed",
                "the data plane refused the table; the previous policy stays in force",
            )
        }
        LifecycleError::Store(StoreError::NoSuchRevision(id)) => {
            Problem::not_found(format!("no revision {id}"))
        }
        other @ (LifecycleError::Store(_)
        | LifecycleError::Audit(_)
        | LifecycleError::Inconsistent(_)) => Problem::internal("the policy lifecycle", &other),
    }
}

/// A JSON request body deserialised with the path of the first offending field.
///
/// Rejections: a missing or wrong `Content-Type` is 415, a body over the limit 413, malformed
/// JSON 400 and a body of the wrong shape 422; every one is problem+json naming the field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    status,
                    "body-too-large",
                    "Request body too large",
                    "the request body exceeds the configured limit",
                )
            } else {
                Problem::new(status, "bad-body", "Unreadable body", r.body_text())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Deserialises JSON, naming the path of the first field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            de.end().map_err(|e| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    "Malformed JSON",
                    e.to_string(),
                )
            })?;
            Ok(v)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    "Malformed JSON",
                    inner.to_string(),
                ));
            }
            // serde names a missing field in the message, at the parent's path (an unknown
            // field is already the last segment of the path).
            let msg = inner.to_string();
            let field = match (msg.strip_prefix("missing field `"), path.as_str()) {
                (Some(rest), p) => {
                    let name = rest.split('`').next().unwrap_or_default();
                    if p == "." || p.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{p}.{name}")
                    }
                }
                (None, ".") => String::new(),
                (None, p) => p.to_owned(),
            };
            Err(Problem::invalid_field(field, strip_position(&msg)))
        }
    }
}

/// serde_json appends " at line L column C" (of the request body); the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Query parameters, checked one by one so a bad one is named; unknown names are refused.
#[derive(Debug, Default)]
pub struct QueryParams(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut map = HashMap::new();
        if let Some(q) = parts.uri.query() {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = percent_decode(k).ok_or_else(|| Problem::bad_param(k, "bad encoding"))?;
                let v = percent_decode(v).ok_or_else(|| Problem::bad_param(&k, "bad encoding"))?;
                if map.insert(k.clone(), v).is_some() {
                    return Err(Problem::bad_param(k, "given more than once"));
                }
            }
        }
        Ok(QueryParams(map))
    }
}

impl QueryParams {
    /// Refuses parameters other than `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), Problem> {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        match names.into_iter().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Problem::bad_param(
                k.as_str(),
                format!("unknown parameter (allowed: {})", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// An optional parameter parsed as `T` (an empty value counts as absent, as forms send it).
    pub fn opt<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Problem> {
        match self.0.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Problem::bad_param(name, format!("{v:?} is not a valid {name}"))),
        }
    }

    /// A required parameter parsed as `T`.
    pub fn req<T: std::str::FromStr>(&self, name: &str) -> Result<T, Problem> {
        self.opt(name)?
            .ok_or_else(|| Problem::bad_param(name, "required parameter is missing"))
    }

    /// An optional string parameter (empty counts as absent).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a path segment, naming the parameter when it is not a `T`.
pub fn path_param<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, Problem> {
    raw.parse()
        .map_err(|_| Problem::bad_param(name, format!("{raw:?} is not a valid {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        reason: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        limit: u32,
    }

    #[test]
    fn body_errors_name_the_field() {
        let e = parse_json::<Outer>(br#"{"reason":"x","inner":{"limit":"no"}}"#).unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(e.errors[0].field, "inner.limit");
        let e = parse_json::<Outer>(br#"{"inner":{"limit":1}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "reason");
        let e = parse_json::<Outer>(br#"{"reason":"x","inner":{}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "inner.limit");
        let e =
            parse_json::<Outer>(br#"{"reason":"x","inner":{"limit":1},"extra":1}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "extra", "{e:?}");
        let e = parse_json::<Outer>(br#"{"reason":"x","inner":{"limit":1,"more":2}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "inner.more", "{e:?}");
        let e = parse_json::<Outer>(b"{not json").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
