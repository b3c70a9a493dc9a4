//! The OpenAPI 3.1 description, generated from the handlers' types and `#[utoipa::path]`
//! annotations, served at `/api/v1/openapi.json` with Swagger UI at `/api/v1/docs` (assets
//! vendored into the binary; nothing is fetched at build or run time).

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::auth::SESSION_COOKIE;
use super::problem::PROBLEM_JSON;
use super::{AppState, anomalies, audit, flows, learn, metrics, policy, principals};

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
    }
}

/// Problem responses every operation can give (and the problem+json media type on all error
/// responses), so the description covers what the access check and the limits answer.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = matches!(path.as_str(), "/healthz" | "/readyz" | "/api/v1/auth/login");
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, false),
                (&mut item.patch, true),
            ];
            for (op, has_body) in ops {
                let Some(op) = op.as_mut() else { continue };
                let mut add = vec![
                    ("400", "Invalid parameter or malformed body"),
                    ("500", "Internal error"),
                    ("503", "Overloaded or the policy core is unavailable"),
                ];
                if !public {
                    add.push(("401", "No or invalid credentials"));
                    add.push(("403", "Role not allowed, or CSRF token missing"));
                }
                if has_body {
                    add.push(("413", "Body too large"));
                    add.push(("415", "Body is not application/json"));
                    add.push(("422", "A body field is invalid"));
                }
                for (code, text) in add {
                    op.responses
                        .responses
                        .entry(code.into())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(text)
                                    .content(PROBLEM_JSON, problem())
                                    .build(),
                            )
                        });
                }
                for (code, resp) in op.responses.responses.iter_mut() {
                    if let (true, RefOr::T(r)) = (code.as_str() >= "400", resp)
                        && let Some(c) = r.content.shift_remove("application/json")
                    {
                        r.content.insert(PROBLEM_JSON.into(), c);
                    }
                }
            }
        }
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Septa control-plane API",
        version = "1",
        description = "Policy lifecycle, revisions, what-if, flows, counters, audit, users and tokens. \
            Errors are RFC 9457 problem+json. Cookie-authenticated mutations need X-CSRF-Token."
    ),
    paths(
        metrics::healthz, metrics::readyz, metrics::prometheus, metrics::counters,
        policy::get_policy, policy::get_zones, policy::get_conduits, policy::commit,
        policy::stage, policy::rollback, policy::confirm, policy::decide, policy::impact,
        policy::list_revisions, policy::get_revision, policy::get_diff,
        flows::recent, flows::live,
        audit::records, audit::verify, audit::export_range,
        principals::login, principals::logout, principals::me, principals::change_password,
        principals::list_users, principals::create_user, principals::delete_user,
        principals::list_tokens, principals::create_token, principals::delete_token,
        learn::generate, learn::list, learn::show, learn::approve, learn::reject, learn::usage,
        learn::evidence_pack, learn::status,
        anomalies::list, anomalies::get_one, anomalies::ack, anomalies::dismiss,
        anomalies::validate, anomalies::permissions,
    ),
    modifiers(&Security, &CommonResponses),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "policy", description = "The running policy and its lifecycle"),
        (name = "revisions", description = "Stored revisions and diffs"),
        (name = "observation", description = "Flows and counters"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "auth", description = "Sessions"),
        (name = "users", description = "Local users"),
        (name = "tokens", description = "API tokens"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "learn", description = "Recommendations from flow history, rule usage, evidence packs"),
        (name = "anomalies", description = "Alerts of the inference thread and their triage"),
    )
)]
pub struct ApiDoc;

/// `/api/v1/openapi.json` and `/api/v1/docs`.
pub fn router() -> Router<AppState> {
    SwaggerUi::new("/api/v1/docs")
        .url("/api/v1/openapi.json", ApiDoc::openapi())
        .into()
}
