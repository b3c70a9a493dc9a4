//! Sessions (login, logout, who am I), users and API tokens.
//!
//! Login answers with a session cookie (`HttpOnly; Secure; SameSite=Strict`, `__Host-` prefix)
//! and a CSRF token that cookie-authenticated mutations echo in `X-CSRF-Token`. Token secrets are
//! returned once, at creation; only their sha256 is stored. Each of these mutations appends one
//! audit record; a failed login is recorded as a refused `auth.login`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{
    Principal, TOKEN_PREFIX, TokenInfo, UserInfo, clear_cookie_header, random_hex,
    session_cookie_header,
};
use super::problem::{JsonBody, Problem, QueryParams};
use super::routes::Role;
use crate::audit::{Actor, AuditEntry};

/// Session, user and token routes (under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/password", post(change_password))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{name}", delete(delete_user))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(delete_token))
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// A started session.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// User name.
    pub user: String,
    /// Role.
    pub role: Role,
    /// Echo in `X-CSRF-Token` on every POST/PUT/DELETE made with the session cookie.
    pub csrf_token: String,
}

/// The caller.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// `user:<name>` or `token:<id>`.
    pub actor: String,
    /// Role.
    pub role: Role,
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Login name: 1–64 of `a-z 0-9 . _ -`.
    #[schema(pattern = "^[a-z0-9._-]{1,64}$")]
    pub name: String,
    /// Role.
    pub role: Role,
    /// At least 12 characters.
    #[schema(min_length = 12)]
    pub password: String,
    /// Why (recorded in the audit log).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A new API token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Identifier: 1–64 of `a-z 0-9 . _ -`.
    #[schema(pattern = "^[a-z0-9._-]{1,64}$")]
    pub id: String,
    /// Role the token grants.
    pub role: Role,
    /// Lifetime in seconds (default: no expiry).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub expires_in_s: Option<u32>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A created token: the secret is shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Its metadata.
    pub info: TokenInfo,
}

fn check_name(field: &str, name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid_field(
            field,
            "must be 1-64 characters of a-z, 0-9, '.', '_', '-'",
        ))
    }
}

fn reason_or_default(r: Option<String>) -> String {
    r.filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "(no reason given)".into())
}

fn entry(actor: &Actor, action: &str, object: String, reason: String, result: &str) -> AuditEntry {
    AuditEntry {
        actor: actor.clone(),
        action: action.into(),
        object,
        before: None,
        after: None,
        reason,
        result: result.into(),
        detail: String::new(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal("a blocking task", &e))?
}

/// Signs in with a password; sets the session cookie. Attempts are limited per client address
/// (a token bucket: 10 at once, then one every 6 s; 429 with `Retry-After` beyond, audited once
/// per window), and after five failures in a row a name is paused (429, doubling from 1 s to
/// 5 min).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem),
        (status = 429, body = Problem)))]
pub async fn login(
    State(st): State<AppState>,
    ext: axum::http::Extensions,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, Problem> {
    let shown: String = req.user.chars().take(64).collect();
    let actor = Actor::user(&shown);
    let addr = super::auth::client_addr(&ext);
    if let Err(t) = st.auth.login_attempt(addr, st.clock.now_ms()) {
        st.metrics.denied();
        if let Some(unaudited) = t.audit {
            let source = super::throttle::SourceKey::of(addr);
            let mut e = entry(
                &Actor::system("unauthenticated"),
                "auth.login",
                format!("address/{source}"),
                "password login".into(),
                "refused: too many login attempts from this address",
            );
            e.detail = format!(
                "throttled for {} s (attempt as user {shown:?}); {unaudited} earlier refusals from this address were not audited",
                t.retry_after_s
            );
            st.core.append(e).await?;
        }
        let mut res = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "login-throttled",
            "Too many login attempts",
            format!(
                "too many login attempts from this address; retry in {} s",
                t.retry_after_s
            ),
        )
        .into_response();
        if let Ok(v) = header::HeaderValue::from_str(&t.retry_after_s.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(res);
    }
    if let Some(until) = st.auth.login_blocked_until(&shown, st.clock.now_ms()) {
        st.metrics.denied();
        st.core
            .append(entry(
                &actor,
                "auth.login",
                format!("user/{shown}"),
                "password login".into(),
                "refused: too many failed logins",
            ))
            .await?;
        let wait_s = (until - st.clock.now_ms()).max(0) / 1000 + 1;
        let mut res = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "login-throttled",
            "Too many failed logins",
            format!("logins for this user are paused for {wait_s} s"),
        )
        .into_response();
        if let Ok(v) = header::HeaderValue::from_str(&wait_s.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(res);
    }
    let st2 = st.clone();
    let user = req.user.clone();
    let role = blocking(move || {
        st2.auth
            .verify_password(&user, &req.password)
            .map_err(|e| Problem::internal("checking a password", &e))
    })
    .await?;
    let Some(role) = role else {
        st.auth.record_login_failure(&shown, st.clock.now_ms());
        st.metrics.denied();
        st.core
            .append(entry(
                &actor,
                "auth.login",
                format!("user/{shown}"),
                "password login".into(),
                "refused: invalid credentials",
            ))
            .await?;
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid-credentials",
            "Invalid credentials",
            "unknown user or wrong password",
        ));
    };
    st.auth.record_login_success(&shown);
    let now = st.clock.now_ms();
    let (st2, user) = (st.clone(), req.user.clone());
    let (id, csrf) = blocking(move || {
        st2.auth
            .start_session(&user, role, now)
            .map_err(|e| Problem::internal("starting a session", &e))
    })
    .await?;
    st.core
        .append(entry(
            &actor,
            "auth.login",
            format!("user/{shown}"),
            "password login".into(),
            "ok",
        ))
        .await?;
    let cookie = session_cookie_header(&id, st.auth.session_ttl_ms / 1000);
    let mut res = Json(LoginResponse {
        user: req.user,
        role,
        csrf_token: csrf,
    })
    .into_response();
    res.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(res)
}

/// Ends the caller's session (a no-op, still audited, for tokens).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "signed out")))]
pub async fn logout(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, Problem> {
    if let Some((_, key)) = who.session.clone() {
        let st2 = st.clone();
        blocking(move || {
            st2.auth
                .end_session(&key)
                .map_err(|e| Problem::internal("ending a session", &e))
        })
        .await?;
    }
    let object = match who.actor.kind {
        crate::audit::ActorKind::Token => format!("token/{}", who.actor.name),
        _ => format!("user/{}", who.actor.name),
    };
    st.core
        .append(entry(
            &who.actor,
            "auth.logout",
            object,
            "logout".into(),
            "ok",
        ))
        .await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie_header());
    Ok(res)
}

/// A password change by the signed-in user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    pub current_password: String,
    /// The new password (at least 12 characters).
    #[schema(min_length = 12)]
    pub new_password: String,
}

/// Changes the caller's own password (users only; tokens have none) and ends the user's other
/// sessions. A wrong current password counts as a failed login.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204, description = "changed"), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn change_password(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    JsonBody(req): JsonBody<PasswordChange>,
) -> Result<Response, Problem> {
    if who.actor.kind != crate::audit::ActorKind::User {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "not-a-user",
            "Not a user",
            "API tokens have no password; revoke and create a token instead",
        ));
    }
    if req.new_password.chars().count() < 12 {
        return Err(Problem::invalid_field(
            "new_password",
            "must be at least 12 characters",
        ));
    }
    let name = who.actor.name.clone();
    let now = st.clock.now_ms();
    if st.auth.login_blocked_until(&name, now).is_some() {
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "login-throttled",
            "Too many failed logins",
            "password checks for this user are paused; retry later",
        ));
    }
    let keep = who.session.as_ref().map(|(_, key)| key.clone());
    blocking(move || {
        let ok = st
            .auth
            .verify_password(&name, &req.current_password)
            .map_err(|e| Problem::internal("checking a password", &e))?
            .is_some();
        let mut e = entry(
            &who.actor,
            "user.password",
            format!("user/{name}"),
            "password change by the user".into(),
            "ok",
        );
        if !ok {
            st.auth.record_login_failure(&name, now);
            e.result = "refused: wrong current password".into();
            st.core.append_blocking(e)?;
            return Err(Problem::invalid_field("current_password", "does not match"));
        }
        let hash = st
            .auth
            .hash_password(&req.new_password)
            .map_err(|e| Problem::internal("hashing a password", &e))?;
        match st
            .auth
            .set_password(&name, &hash, keep.as_deref(), || st.core.append_blocking(e))?
        {
            true => Ok(()),
            false => Err(Problem::not_found("no such user")),
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, body = Me)))]
pub async fn me(Extension(who): Extension<Principal>) -> Json<Me> {
    Json(Me {
        actor: who.actor.to_string(),
        role: who.role,
    })
}

/// Every user.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = Vec<UserInfo>)))]
pub async fn list_users(State(st): State<AppState>) -> Result<Json<Vec<UserInfo>>, Problem> {
    let users = blocking(move || {
        st.auth
            .users()
            .map_err(|e| Problem::internal("listing users", &e))
    })
    .await?;
    Ok(Json(users))
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserInfo), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_user(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    JsonBody(req): JsonBody<CreateUser>,
) -> Result<Response, Problem> {
    check_name("name", &req.name)?;
    if req.password.chars().count() < 12 {
        return Err(Problem::invalid_field(
            "password",
            "must be at least 12 characters",
        ));
    }
    let now = st.clock.now_ms();
    let info = UserInfo {
        name: req.name.clone(),
        role: req.role,
        created_ms: now,
    };
    let created = blocking(move || {
        let hash = st
            .auth
            .hash_password(&req.password)
            .map_err(|e| Problem::internal("hashing a password", &e))?;
        let mut e = entry(
            &who.actor,
            "user.create",
            format!("user/{}", req.name),
            reason_or_default(req.reason),
            "ok",
        );
        e.detail = format!("role {}", req.role);
        st.auth.insert_user(&req.name, req.role, &hash, now, || {
            st.core.append_blocking(e)
        })
    })
    .await?;
    if !created {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "exists",
            "Already exists",
            "a user with this name exists",
        ));
    }
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// Deletes a user and ends their sessions. The last administrator cannot be deleted.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path), ("reason" = Option<String>, Query)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_user(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    q: QueryParams,
) -> Result<Response, Problem> {
    q.only(&["reason"])?;
    let reason = reason_or_default(q.str("reason").map(str::to_owned));
    let deleted = blocking(move || {
        let users = st
            .auth
            .users()
            .map_err(|e| Problem::internal("listing users", &e))?;
        let admins = users.iter().filter(|u| u.role == Role::Admin).count();
        if users
            .iter()
            .any(|u| u.name == name && u.role == Role::Admin)
            && admins <= 1
        {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "last-admin",
                "Last administrator",
                "the last administrator cannot be deleted",
            ));
        }
        let e = entry(
            &who.actor,
            "user.delete",
            format!("user/{name}"),
            reason,
            "ok",
        );
        st.auth.delete_user(&name, || st.core.append_blocking(e))
    })
    .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found("no such user"))
    }
}

/// Every API token (never the secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_tokens(State(st): State<AppState>) -> Json<Vec<TokenInfo>> {
    Json(st.auth.tokens())
}

/// Creates an API token; its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_token(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    JsonBody(req): JsonBody<CreateToken>,
) -> Result<Response, Problem> {
    check_name("id", &req.id)?;
    if req.expires_in_s == Some(0) {
        return Err(Problem::invalid_field("expires_in_s", "must be positive"));
    }
    // The document declares int32: refuse what it says is out of range.
    if req.expires_in_s.is_some_and(|s| i32::try_from(s).is_err()) {
        return Err(Problem::invalid_field(
            "expires_in_s",
            "must be at most 2147483647",
        ));
    }
    let now = st.clock.now_ms();
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        random_hex(32).map_err(|e| Problem::internal("random source", &e))?
    );
    let info = TokenInfo {
        id: req.id.clone(),
        role: req.role,
        created_by: who.actor.to_string(),
        created_ms: now,
        expires_ms: req
            .expires_in_s
            .map(|s| now.saturating_add(i64::from(s) * 1000)),
    };
    let (info2, secret2) = (info.clone(), secret.clone());
    let created = blocking(move || {
        let mut e = entry(
            &who.actor,
            "token.create",
            format!("token/{}", req.id),
            reason_or_default(req.reason),
            "ok",
        );
        e.detail = format!("role {}", req.role);
        st.auth
            .insert_token(info2, &secret2, || st.core.append_blocking(e))
    })
    .await?;
    if !created {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "exists",
            "Already exists",
            "a token with this id exists",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: secret,
            info,
        }),
    )
        .into_response())
}

/// Revokes an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path), ("reason" = Option<String>, Query)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_token(
    State(st): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Response, Problem> {
    q.only(&["reason"])?;
    let reason = reason_or_default(q.str("reason").map(str::to_owned));
    let deleted = blocking(move || {
        let e = entry(
            &who.actor,
            "token.revoke",
            format!("token/{id}"),
            reason,
            "ok",
        );
        st.auth.delete_token(&id, || st.core.append_blocking(e))
    })
    .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found("no such token"))
    }
}
