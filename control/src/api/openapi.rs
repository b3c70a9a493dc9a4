//! The OpenAPI 3.1 description, generated from the handlers' types and `#[utoipa::path]`
//! annotations, served at `/api/v1/openapi.json` with Swagger UI at `/api/v1/docs` (assets
//! vendored into the binary; nothing is fetched at build or run time).

use axum::Router;
use serde::Deserialize;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use super::auth::SESSION_COOKIE;
use super::problem::PROBLEM_JSON;
use super::{AppState, anomalies, audit, flows, health, learn, metrics, policy, principals};

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

// The policy core's `decide::Explanation` does not depend on utoipa: this mirror describes it,
// `TypedDecisions` puts it in place of the handlers' `Object`, and a test checks real answers
// against it field by field.
/// How a revision decides a flow, and why.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schema(as = Explanation)]
#[allow(
    dead_code,
    reason = "a schema; deserialized only by the test that checks it"
)]
pub(crate) struct ExplanationSchema {
    /// The flow asked about (`tcp 10.0.0.1:40000 -> 10.0.0.2:502`).
    flow: String,
    /// The action.
    action: ActionSchema,
    /// The mode of the deciding rule.
    mode: ModeSchema,
    /// Whether the data plane forwards the flow (monitor mode forwards what it would deny).
    forwarded: bool,
    /// The deciding rule id.
    rule: u32,
    /// The deciding policy clause; absent (null) when the default decided without a clause.
    clause: Option<ClauseSchema>,
    /// Content hash of the revision the table was compiled from.
    revision: String,
    /// One sentence an operator can read.
    reason: String,
}

/// Decision action.
#[derive(ToSchema, Deserialize)]
#[serde(rename_all = "lowercase")]
#[schema(as = DecisionAction)]
#[allow(dead_code, reason = "a schema")]
pub(crate) enum ActionSchema {
    /// Forward.
    Allow,
    /// Refuse.
    Deny,
    /// Forward through L7 inspection.
    Inspect,
}

/// Decision mode.
#[derive(ToSchema, Deserialize)]
#[serde(rename_all = "lowercase")]
#[schema(as = DecisionMode)]
#[allow(dead_code, reason = "a schema")]
pub(crate) enum ModeSchema {
    /// Refusals are enforced.
    Enforce,
    /// Refusals are only recorded.
    Monitor,
}

/// What kind of clause decided.
#[derive(ToSchema, Deserialize)]
#[serde(rename_all = "snake_case")]
#[schema(as = ClauseKind)]
#[allow(dead_code, reason = "a schema")]
pub(crate) enum ClauseKindSchema {
    /// A conduit's service (`name`, `index`, `service`, `from`, `to` are set).
    Conduit,
    /// The default deny of a zone whose mode differs from the defaults (`zone` is set).
    ZoneDefault,
    /// The final default deny.
    Default,
}

/// `compile::Clause`: the policy clause behind a rule.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schema(as = Clause)]
#[allow(dead_code, reason = "a schema")]
pub(crate) struct ClauseSchema {
    /// `metadata.name` of the policy.
    policy: String,
    /// Which kind of clause.
    kind: ClauseKindSchema,
    /// Conduit name (conduit).
    #[serde(default)]
    name: Option<String>,
    /// Position in `spec.conduits` (conduit).
    #[serde(default)]
    index: Option<u32>,
    /// Position in the conduit's `services` (conduit).
    #[serde(default)]
    service: Option<u32>,
    /// Source zone (conduit).
    #[serde(default)]
    from: Option<String>,
    /// Destination zone (conduit).
    #[serde(default)]
    to: Option<String>,
    /// Zone (zone_default).
    #[serde(default)]
    zone: Option<String>,
    /// Field path of the clause in the document (`spec.conduits[3].services[0]`).
    path: String,
    /// One-line rendering.
    text: String,
}

/// Replaces the `Object` the policy handlers declare for decisions with [`ExplanationSchema`]:
/// the decide answer and both sides of an impact item.
struct TypedDecisions;

impl Modify for TypedDecisions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let explanation = || RefOr::Ref(Ref::from_schema_name("Explanation"));
        if let Some(op) = doc
            .paths
            .paths
            .get_mut("/api/v1/policy/decide")
            .and_then(|p| p.post.as_mut())
            && let Some(RefOr::T(r)) = op.responses.responses.get_mut("200")
            && let Some(c) = r.content.get_mut("application/json")
        {
            c.schema = Some(explanation());
        }
        if let Some(c) = doc.components.as_mut()
            && let Some(RefOr::T(Schema::Object(o))) = c.schemas.get_mut("ImpactItem")
        {
            for side in ["running", "candidate"] {
                if let Some(p) = o.properties.get_mut(side) {
                    *p = explanation();
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
        metrics::healthz, metrics::readyz, metrics::prometheus, metrics::counters, health::health,
        policy::get_policy, policy::get_zones, policy::get_conduits, policy::commit,
        policy::stage, policy::rollback, policy::confirm, policy::decide, policy::impact,
        policy::list_revisions, policy::get_revision, policy::get_revision_source, policy::get_diff,
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
    components(schemas(ExplanationSchema, ActionSchema, ModeSchema, ClauseSchema, ClauseKindSchema)),
    modifiers(&Security, &CommonResponses, &TypedDecisions),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "policy", description = "The running policy and its lifecycle"),
        (name = "revisions", description = "Stored revisions and diffs"),
        (name = "observation", description = "Flows and counters"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "auth", description = "Sessions"),
        (name = "users", description = "Local users"),
        (name = "tokens", description = "API tokens"),
        (name = "health", description = "Liveness, readiness, metrics, worker and inference-thread health"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::decide::{decide, parse_flow};
    use crate::policy::{Format, parse_policy};

    /// Real answers of every clause kind (conduit, inspect conduit, zone default, default) fit
    /// the documented schema exactly: a field added to `Explanation` or `Clause` without the
    /// schema fails here.
    #[test]
    fn explanations_match_the_documented_schema() {
        let p = parse_policy(
            include_str!("../../../configs/policies/demo.yaml"),
            Format::Yaml,
        )
        .unwrap();
        let c = compile(&p).unwrap();
        let mut kinds = std::collections::BTreeSet::new();
        for (src, dst, proto, port) in [
            ("10.10.1.1", "10.10.5.10", "tcp", 443),
            ("10.30.2.5", "10.30.1.10", "tcp", 502),
            ("10.30.2.5", "10.10.1.1", "tcp", 80),
            ("10.10.1.1", "192.0.2.1", "udp", 9),
        ] {
            let e = decide(
                &c,
                "0123456789abcdef",
                &parse_flow(src, dst, proto, port, 40000).unwrap(),
            );
            let json = serde_json::to_value(&e).unwrap();
            if let Err(err) = serde_json::from_value::<ExplanationSchema>(json.clone()) {
                panic!("{json} does not fit the Explanation schema: {err}");
            }
            kinds.insert(format!("{}/{}", json["action"], json["clause"]["kind"]));
        }
        assert_eq!(kinds.len(), 4, "four different decisions: {kinds:?}");
    }

    #[test]
    fn decide_and_impact_answers_are_typed_in_the_document() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let explanation = serde_json::json!({"$ref": "#/components/schemas/Explanation"});
        assert_eq!(
            doc["paths"]["/api/v1/policy/decide"]["post"]["responses"]["200"]["content"]["application/json"]
                ["schema"],
            explanation
        );
        let item = &doc["components"]["schemas"]["ImpactItem"]["properties"];
        assert_eq!(item["running"], explanation);
        assert_eq!(item["candidate"], explanation);
        let e = &doc["components"]["schemas"]["Explanation"];
        assert_eq!(
            e["properties"]["action"]["$ref"],
            "#/components/schemas/DecisionAction"
        );
        assert!(doc["components"]["schemas"]["Clause"]["properties"]["kind"].is_object());
    }
}
