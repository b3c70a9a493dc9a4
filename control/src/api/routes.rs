//! The route table: every route the API serves, with who may call it and whether it mutates.
//!
//! The access check ([`super::auth::authorize`]) looks each request's matched route up here and
//! refuses any route that is missing (deny by default), so a handler added to a router without
//! a row here is unreachable. The authorization-matrix and one-audit-record-per-mutation tests
//! are driven from this same table.

use axum::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The roles a user or token can hold (one each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads policy, revisions, flows and counters; asks what-if questions.
    Viewer,
    /// A viewer who may also roll back (the on-call action).
    Operator,
    /// Writes policies: stage and commit.
    PolicyAuthor,
    /// Confirms commit-confirm commits and may roll back.
    Approver,
    /// Reads, verifies and exports the audit log.
    Auditor,
    /// Everything, including users and tokens.
    Admin,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Operator,
        Role::PolicyAuthor,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];

    /// The wire name (`policy-author`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::PolicyAuthor => "policy-author",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed (health, login, the API description).
    Public,
    /// Any signed-in user or valid token.
    AnyRole,
    /// Only these roles.
    Roles(&'static [Role]),
}

impl Access {
    /// Whether `role` may call a route with this access.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::AnyRole => true,
            Access::Roles(rs) => rs.contains(&role),
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: Method,
    /// The path as registered in the router (`/api/v1/revisions/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Whether a successful or refused call writes exactly one audit record.
    pub mutating: bool,
}

const READERS: &[Role] = &Role::ALL;
const AUTHORS: &[Role] = &[Role::PolicyAuthor, Role::Admin];
const ROLLBACK: &[Role] = &[Role::Operator, Role::Approver, Role::Admin];
const APPROVERS: &[Role] = &[Role::Approver, Role::Admin];
const AUDITORS: &[Role] = &[Role::Auditor, Role::Admin];
const ADMINS: &[Role] = &[Role::Admin];
/// Who triages anomalies: the on-call roles and policy authors.
const TRIAGE: &[Role] = &[
    Role::Operator,
    Role::PolicyAuthor,
    Role::Approver,
    Role::Admin,
];

const fn r(method: Method, path: &'static str, access: Access, mutating: bool) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        mutating,
    }
}

/// Every route of [`super::app`].
pub const ROUTES: &[RouteSpec] = &[
    // health and description
    r(Method::GET, "/healthz", Access::Public, false),
    r(Method::GET, "/readyz", Access::Public, false),
    r(Method::GET, "/metrics", Access::Roles(READERS), false),
    r(Method::GET, "/api/v1/openapi.json", Access::Public, false),
    r(Method::GET, "/api/v1/docs", Access::Public, false),
    r(Method::GET, "/api/v1/docs/", Access::Public, false),
    r(Method::GET, "/api/v1/docs/{*rest}", Access::Public, false),
    // sessions
    r(Method::POST, "/api/v1/auth/login", Access::Public, true),
    r(Method::POST, "/api/v1/auth/logout", Access::AnyRole, true),
    r(Method::GET, "/api/v1/auth/me", Access::AnyRole, false),
    r(Method::POST, "/api/v1/auth/password", Access::AnyRole, true),
    // policy
    r(Method::GET, "/api/v1/policy", Access::Roles(READERS), false),
    r(
        Method::GET,
        "/api/v1/policy/zones",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/policy/conduits",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::POST,
        "/api/v1/policy/commit",
        Access::Roles(AUTHORS),
        true,
    ),
    r(
        Method::POST,
        "/api/v1/policy/stage",
        Access::Roles(AUTHORS),
        true,
    ),
    r(
        Method::POST,
        "/api/v1/policy/rollback",
        Access::Roles(ROLLBACK),
        true,
    ),
    r(
        Method::POST,
        "/api/v1/policy/confirm",
        Access::Roles(APPROVERS),
        true,
    ),
    r(
        Method::POST,
        "/api/v1/policy/decide",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::POST,
        "/api/v1/policy/impact",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/revisions",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/revisions/{id}",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/revisions/{id}/source",
        Access::Roles(READERS),
        false,
    ),
    r(Method::GET, "/api/v1/diff", Access::Roles(READERS), false),
    // observation
    r(Method::GET, "/api/v1/flows", Access::Roles(READERS), false),
    r(
        Method::GET,
        "/api/v1/flows/stream",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/counters",
        Access::Roles(READERS),
        false,
    ),
    r(Method::GET, "/api/v1/health", Access::Roles(READERS), false),
    // audit
    r(
        Method::GET,
        "/api/v1/audit/records",
        Access::Roles(AUDITORS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/audit/verify",
        Access::Roles(AUDITORS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/audit/export",
        Access::Roles(AUDITORS),
        false,
    ),
    // principals
    r(Method::GET, "/api/v1/users", Access::Roles(ADMINS), false),
    r(Method::POST, "/api/v1/users", Access::Roles(ADMINS), true),
    r(
        Method::DELETE,
        "/api/v1/users/{name}",
        Access::Roles(ADMINS),
        true,
    ),
    r(Method::GET, "/api/v1/tokens", Access::Roles(ADMINS), false),
    r(Method::POST, "/api/v1/tokens", Access::Roles(ADMINS), true),
    r(
        Method::DELETE,
        "/api/v1/tokens/{id}",
        Access::Roles(ADMINS),
        true,
    ),
    // learning (api/learn.rs)
    r(
        Method::GET,
        "/api/v1/recommendations",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::POST,
        "/api/v1/recommendations",
        Access::Roles(AUTHORS),
        true,
    ),
    r(
        Method::GET,
        "/api/v1/recommendations/{id}",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::POST,
        "/api/v1/recommendations/{id}/approve",
        Access::Roles(AUTHORS),
        true,
    ),
    r(
        Method::POST,
        "/api/v1/recommendations/{id}/reject",
        Access::Roles(AUTHORS),
        true,
    ),
    r(Method::GET, "/api/v1/usage", Access::Roles(READERS), false),
    r(
        Method::GET,
        "/api/v1/evidence",
        Access::Roles(AUDITORS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/learn/status",
        Access::Roles(READERS),
        false,
    ),
    // anomalies and console helpers (api/anomalies.rs)
    r(
        Method::GET,
        "/api/v1/anomalies",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/anomalies/{id}",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::POST,
        "/api/v1/anomalies/{id}/ack",
        Access::Roles(TRIAGE),
        true,
    ),
    r(
        Method::POST,
        "/api/v1/anomalies/{id}/dismiss",
        Access::Roles(TRIAGE),
        true,
    ),
    r(
        Method::POST,
        "/api/v1/policy/validate",
        Access::Roles(READERS),
        false,
    ),
    r(
        Method::GET,
        "/api/v1/auth/permissions",
        Access::AnyRole,
        false,
    ),
];

/// The row for a matched route, if any.
pub fn lookup(method: &Method, path: &str) -> Option<&'static RouteSpec> {
    ROUTES.iter().find(|r| r.method == method && r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_unique_and_roles_round_trip() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{a:?}");
            }
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert!(lookup(&Method::GET, "/api/v1/nowhere").is_none());
    }
}
