//! Who is calling, and may they: local users with argon2 password hashes, scoped API tokens
//! (sha256 of the secret at rest), console sessions (cookie + CSRF token), and the access check
//! that every route passes through.
//!
//! Users, tokens and sessions live in the core's SQLite database (tables of store migrations 3
//! and 4); tokens and sessions are also cached in memory (write-through) so checking a
//! credential never touches the disk. Sessions are bounded in number and lifetime and survive a
//! restart; only the sha256 of a session id is stored, and logout, a password change or deleting
//! the user removes the rows (revocation is durable too).
//!
//! Login attempts are throttled per client address ([`super::throttle::LoginThrottle`]), besides
//! the per-name lockout; unauthenticated denials are aggregated per source and interval
//! ([`super::throttle::DenialAggregator`], flushed by [`super::AppState::flush_denials`]).
//!
//! Never: store or log a password, token or session secret (only their hashes are kept); allow a
//! route that is not in [`super::routes::ROUTES`]; let a denial go unaudited.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::AppState;
use super::problem::{FieldError, Problem};
use super::routes::{Access, ROUTES, Role, lookup};
use super::throttle::{DenialAggregator, LoginThrottle, SourceKey, ThrottlePolicy, Throttled};
use crate::audit::record::{hex, sha256_hex};
use crate::audit::{Actor, AuditEntry};
use crate::store::DB_FILE;

/// Name of the session cookie (`__Host-`: Secure, Path=/, no Domain, enforced by browsers).
pub const SESSION_COOKIE: &str = "__Host-septa_session";
/// Header carrying the CSRF token on cookie-authenticated mutations.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Prefix of API token secrets (lets secret scanners recognise them).
pub const TOKEN_PREFIX: &str = "septa_";
/// Name of the first administrator.
pub const FIRST_ADMIN: &str = "admin";
/// Failed logins in a row before a name is locked out for a while.
pub const LOCKOUT_AFTER: u32 = 5;
/// Longest lockout.
pub const LOCKOUT_MAX_MS: i64 = 300_000;
/// Sources itemised per interval in the aggregated `access.denied` records (the rest share one).
pub const MAX_DENIAL_SOURCES: usize = 256;

/// Cost of password hashing.
#[derive(Clone, Debug)]
pub struct PasswordCost(Params);

impl Default for PasswordCost {
    /// argon2id with the `argon2` crate's defaults (19 MiB, 2 passes, 1 lane; the OWASP minimum).
    fn default() -> Self {
        PasswordCost(Params::default())
    }
}

impl PasswordCost {
    /// The cheapest parameters argon2 accepts. **Only for tests**: hashes made with it are weak.
    pub fn insecure_fast_for_tests() -> Self {
        PasswordCost(Params::new(8, 1, 1, None).unwrap_or_default())
    }

    fn hasher(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.0.clone())
    }
}

/// Authentication failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// SQLite failed.
    #[error("principal store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// The OS random source failed.
    #[error("random source: {0}")]
    Random(String),
}

/// Who made a request, once authenticated.
#[derive(Clone, Debug)]
pub struct Principal {
    /// For audit records.
    pub actor: Actor,
    /// What they may do.
    pub role: Role,
    /// Session credentials: the CSRF token mutations must echo, and the session key.
    pub session: Option<(String, String)>,
}

/// A user as listed by the API.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created (Unix ms).
    pub created_ms: i64,
}

/// An API token as listed by the API (never its secret).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Identifier (appears in audit records as `token:<id>`).
    pub id: String,
    /// Role it grants.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// Created (Unix ms).
    pub created_ms: i64,
    /// Expiry (Unix ms), if any.
    pub expires_ms: Option<i64>,
}

struct Session {
    user: String,
    role: Role,
    csrf: String,
    expires_ms: i64,
}

/// Users, tokens and sessions.
pub struct AuthStore {
    conn: Mutex<Connection>,
    tokens: RwLock<HashMap<String, TokenInfo>>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, (u32, i64)>>,
    throttle: Mutex<LoginThrottle>,
    denials: Mutex<DenialAggregator>,
    cost: PasswordCost,
    /// Session lifetime in ms.
    pub session_ttl_ms: i64,
    /// At most this many live sessions (the oldest-expiring is evicted).
    pub max_sessions: usize,
    dummy_hash: String,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore").finish_non_exhaustive()
    }
}

/// Random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, AuthError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex(&b))
}

/// Compares without an early exit, so the time taken does not reveal the common prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AuthStore {
    /// Opens the principal tables in `DATA_DIR/septa.db`. The database must already be migrated,
    /// i.e. `PolicyService::open` has run on the same directory. Sessions that expired by
    /// `now_ms` are deleted; the others are live again.
    pub fn open(
        data_dir: &Path,
        cost: PasswordCost,
        throttle: ThrottlePolicy,
        now_ms: i64,
    ) -> Result<Self, AuthError> {
        let conn = Connection::open(data_dir.join(DB_FILE))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute("DELETE FROM sessions WHERE expires_ms <= ?1", [now_ms])?;
        let mut sessions = HashMap::new();
        {
            let mut st = conn.prepare("SELECT key, user, role, csrf, expires_ms FROM sessions")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            for row in rows {
                let (key, user, role, csrf, expires_ms) = row?;
                if let Some(role) = Role::parse(&role) {
                    sessions.insert(
                        key,
                        Session {
                            user,
                            role,
                            csrf,
                            expires_ms,
                        },
                    );
                }
            }
        }
        let mut tokens = HashMap::new();
        {
            let mut st = conn.prepare(
                "SELECT secret_hash, id, role, created_by, created_ms, expires_ms FROM api_tokens",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })?;
            for row in rows {
                let (h, id, role, created_by, created_ms, expires_ms) = row?;
                if let Some(role) = Role::parse(&role) {
                    tokens.insert(
                        h,
                        TokenInfo {
                            id,
                            role,
                            created_by,
                            created_ms,
                            expires_ms,
                        },
                    );
                }
            }
        }
        let salt = SaltString::encode_b64(b"septa-dummy-salt")
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        let dummy_hash = cost
            .hasher()
            .hash_password(b"not a password", &salt)
            .map_err(|e| AuthError::Hash(e.to_string()))?
            .to_string();
        Ok(AuthStore {
            conn: Mutex::new(conn),
            tokens: RwLock::new(tokens),
            sessions: Mutex::new(sessions),
            failures: Mutex::new(HashMap::new()),
            throttle: Mutex::new(LoginThrottle::new(throttle)),
            denials: Mutex::new(DenialAggregator::new(MAX_DENIAL_SOURCES)),
            cost,
            session_ttl_ms: 8 * 3600 * 1000,
            max_sessions: 10_000,
            dummy_hash,
        })
    }

    /// Hashes a password (argon2id PHC string). Slow by design: call from a blocking task.
    pub fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| AuthError::Random(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
        Ok(self
            .cost
            .hasher()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AuthError::Hash(e.to_string()))?
            .to_string())
    }

    /// Whether any user exists.
    pub fn has_users(&self) -> Result<bool, AuthError> {
        let n: i64 = lock(&self.conn).query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
        Ok(n > 0)
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<UserInfo>, AuthError> {
        let conn = lock(&self.conn);
        let mut st = conn.prepare("SELECT name, role, created_ms FROM users ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, role, created_ms) = row?;
            if let Some(role) = Role::parse(&role) {
                out.push(UserInfo {
                    name,
                    role,
                    created_ms,
                });
            }
        }
        Ok(out)
    }

    /// Inserts a user inside the caller's audit-then-commit sequence; `false` if the name exists.
    pub fn insert_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        now_ms: i64,
        audit: impl FnOnce() -> Result<(), Problem>,
    ) -> Result<bool, Problem> {
        let sql = "INSERT OR IGNORE INTO users (name, role, password, created_ms)
                   VALUES (?1, ?2, ?3, ?4)";
        let row = params![name, role.as_str(), password_hash, now_ms];
        self.audited_change("user store", sql, row, |_| Ok(()), audit, || {})
    }

    /// Replaces a user's password hash and ends their other sessions (all but `keep`, a
    /// session key), in the same transaction; `false` if there is no such user.
    pub fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        keep: Option<&str>,
        audit: impl FnOnce() -> Result<(), Problem>,
    ) -> Result<bool, Problem> {
        self.audited_change(
            "user store",
            "UPDATE users SET password = ?2 WHERE name = ?1",
            params![name, password_hash],
            |tx| {
                tx.execute(
                    "DELETE FROM sessions WHERE user = ?1 AND key IS NOT ?2",
                    params![name, keep],
                )
                .map(drop)
            },
            audit,
            || {
                lock(&self.sessions).retain(|k, s| s.user != name || Some(k.as_str()) == keep);
            },
        )
    }

    /// Deletes a user (and ends their sessions); `false` if there was none.
    pub fn delete_user(
        &self,
        name: &str,
        audit: impl FnOnce() -> Result<(), Problem>,
    ) -> Result<bool, Problem> {
        self.audited_change(
            "user store",
            "DELETE FROM users WHERE name = ?1",
            [name],
            |tx| {
                tx.execute("DELETE FROM sessions WHERE user = ?1", [name])
                    .map(drop)
            },
            audit,
            || {
                lock(&self.sessions).retain(|_, s| s.user != name);
            },
        )
    }

    /// Checks a password; the role on success. Takes as long for unknown users as for known
    /// ones. Slow by design: call from a blocking task.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<Role>, AuthError> {
        let row: Option<(String, String)> = lock(&self.conn)
            .query_row(
                "SELECT role, password FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let stored = row.as_ref().map_or(self.dummy_hash.as_str(), |(_, h)| h);
        let ok = PasswordHash::new(stored)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        Ok(match row {
            Some((role, _)) if ok => Role::parse(&role),
            _ => None,
        })
    }

    /// Until when (Unix ms) password logins for `user` are refused after repeated failures.
    pub fn login_blocked_until(&self, user: &str, now_ms: i64) -> Option<i64> {
        lock(&self.failures)
            .get(user)
            .map(|&(_, until)| until)
            .filter(|&until| until > now_ms)
    }

    /// Counts a failed login: from the fifth in a row, the name is refused for 1 s, doubling
    /// per further failure up to 5 min. Bounded: at most 10 000 names are tracked.
    pub fn record_login_failure(&self, user: &str, now_ms: i64) {
        let mut f = lock(&self.failures);
        if f.len() >= 10_000 && !f.contains_key(user) {
            f.retain(|_, (_, until)| *until > now_ms);
            if f.len() >= 10_000 {
                return;
            }
        }
        let e = f.entry(user.to_owned()).or_insert((0, 0));
        e.0 = e.0.saturating_add(1);
        if e.0 >= LOCKOUT_AFTER {
            let backoff = 1000i64
                .saturating_mul(1 << (e.0 - LOCKOUT_AFTER).min(20))
                .min(LOCKOUT_MAX_MS);
            e.1 = now_ms.saturating_add(backoff);
        }
    }

    /// Forgets the failures of `user` after a successful login.
    pub fn record_login_success(&self, user: &str) {
        lock(&self.failures).remove(user);
    }

    /// Every token.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        let mut v: Vec<TokenInfo> = self
            .tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Stores a new token under the hash of `secret`; `false` if the id exists.
    pub fn insert_token(
        &self,
        info: TokenInfo,
        secret: &str,
        audit: impl FnOnce() -> Result<(), Problem>,
    ) -> Result<bool, Problem> {
        let h = sha256_hex(secret.as_bytes());
        let row = params![
            info.id,
            h,
            info.role.as_str(),
            info.created_by,
            info.created_ms,
            info.expires_ms
        ];
        let sql = "INSERT OR IGNORE INTO api_tokens (id, secret_hash, role, created_by, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
        let cached = (h.clone(), info.clone());
        self.audited_change(
            "token store",
            sql,
            row,
            |_| Ok(()),
            audit,
            move || {
                self.tokens
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(cached.0, cached.1);
            },
        )
    }

    /// Revokes a token; `false` if there was none.
    pub fn delete_token(
        &self,
        id: &str,
        audit: impl FnOnce() -> Result<(), Problem>,
    ) -> Result<bool, Problem> {
        self.audited_change(
            "token store",
            "DELETE FROM api_tokens WHERE id = ?1",
            [id],
            |_| Ok(()),
            audit,
            || {
                self.tokens
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|_, t| t.id != id);
            },
        )
    }

    /// Starts a session and stores it (fsynced before this returns: call from a blocking
    /// task); returns (session id, CSRF token). Expired sessions are dropped, and the
    /// oldest-expiring ones beyond [`Self::max_sessions`].
    pub fn start_session(
        &self,
        user: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<(String, String), AuthError> {
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let key = sha256_hex(id.as_bytes());
        let expires_ms = now_ms.saturating_add(self.session_ttl_ms);
        // Lock order: store, then cache (as in `audited_change`).
        let mut conn = lock(&self.conn);
        let mut sessions = lock(&self.sessions);
        let mut evicted: Vec<String> = Vec::new();
        sessions.retain(|_, s| s.expires_ms > now_ms);
        if sessions.len() >= self.max_sessions.max(1) {
            let mut by_expiry: Vec<(i64, &String)> =
                sessions.iter().map(|(k, s)| (s.expires_ms, k)).collect();
            by_expiry.sort();
            let excess = sessions.len() + 1 - self.max_sessions.max(1);
            evicted = by_expiry
                .into_iter()
                .take(excess)
                .map(|(_, k)| k.clone())
                .collect();
        }
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM sessions WHERE expires_ms <= ?1", [now_ms])?;
        for k in &evicted {
            tx.execute("DELETE FROM sessions WHERE key = ?1", [k])?;
        }
        tx.execute(
            "INSERT INTO sessions (key, user, role, csrf, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, user, role.as_str(), csrf, now_ms, expires_ms],
        )?;
        tx.commit()?;
        for k in &evicted {
            sessions.remove(k);
        }
        sessions.insert(
            key,
            Session {
                user: user.to_owned(),
                role,
                csrf: csrf.clone(),
                expires_ms,
            },
        );
        Ok((id, csrf))
    }

    /// Ends a session (by its key, the hash of its id), durably: call from a blocking task.
    pub fn end_session(&self, key: &str) -> Result<(), AuthError> {
        let conn = lock(&self.conn);
        conn.execute("DELETE FROM sessions WHERE key = ?1", [key])?;
        lock(&self.sessions).remove(key);
        Ok(())
    }

    /// Live sessions (tests, metrics).
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Takes one login attempt for the client at `addr` (token bucket per address).
    pub fn login_attempt(
        &self,
        addr: Option<std::net::IpAddr>,
        now_ms: i64,
    ) -> Result<(), Throttled> {
        lock(&self.throttle).attempt(SourceKey::of(addr), now_ms)
    }

    /// Counts an unauthenticated denial for the aggregated audit record of its source.
    pub fn note_denial(
        &self,
        addr: Option<std::net::IpAddr>,
        object: &str,
        reason: &str,
        now_ms: i64,
    ) {
        lock(&self.denials).note(SourceKey::of(addr), object, reason, now_ms);
    }

    /// The aggregated denial records of the interval that ends now.
    pub fn take_denials(&self) -> Vec<AuditEntry> {
        lock(&self.denials).take()
    }

    /// Authenticates a request: a bearer token, else a session cookie. `Err` carries the
    /// credential's field (`Authorization`, `Cookie`) and why it was refused; `Ok(None)` means
    /// none were presented.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        now_ms: i64,
    ) -> Result<Option<Principal>, (&'static str, &'static str)> {
        const AUTH: &str = "Authorization";
        const COOKIE: &str = "Cookie";
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let secret = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or((AUTH, "not a bearer token"))?;
            let h = sha256_hex(secret.trim().as_bytes());
            let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
            let t = tokens.get(&h).ok_or((AUTH, "unknown or revoked token"))?;
            if t.expires_ms.is_some_and(|e| e <= now_ms) {
                return Err((AUTH, "expired token"));
            }
            return Ok(Some(Principal {
                actor: Actor::token(&t.id),
                role: t.role,
                session: None,
            }));
        }
        let Some(id) = session_cookie(headers) else {
            return Ok(None);
        };
        let key = sha256_hex(id.as_bytes());
        let sessions = lock(&self.sessions);
        let s = sessions
            .get(&key)
            .ok_or((COOKIE, "unknown or ended session"))?;
        if s.expires_ms <= now_ms {
            return Err((COOKIE, "expired session"));
        }
        Ok(Some(Principal {
            actor: Actor::user(&s.user),
            role: s.role,
            session: Some((s.csrf.clone(), key)),
        }))
    }

    /// One row-changing statement and its audit record in one transaction: the change is
    /// committed only once the audit record is written, and `after_commit` (cache updates) runs
    /// while the store is still locked, so concurrent changes apply in the same order to both.
    /// `Ok(false)` when no row matched.
    fn audited_change(
        &self,
        what: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
        also: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
        audit: impl FnOnce() -> Result<(), Problem>,
        after_commit: impl FnOnce(),
    ) -> Result<bool, Problem> {
        let mut conn = lock(&self.conn);
        let tx = conn
            .transaction()
            .map_err(|e| Problem::internal(what, &e))?;
        let n = tx
            .execute(sql, params)
            .map_err(|e| Problem::internal(what, &e))?;
        if n == 0 {
            return Ok(false);
        }
        also(&tx).map_err(|e| Problem::internal(what, &e))?;
        audit()?;
        tx.commit().map_err(|e| Problem::internal(what, &e))?;
        after_commit();
        Ok(true)
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie_header(id: &str, max_age_s: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that clears the session cookie.
pub fn clear_cookie_header() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-septa_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
    )
}

/// Creates the first administrator with a random password if there are no users; returns the
/// password so the caller can print it once (it is not stored anywhere in clear).
pub fn bootstrap_admin(state: &AppState) -> Result<Option<String>, Problem> {
    let auth = &state.auth;
    if auth
        .has_users()
        .map_err(|e| Problem::internal("user store", &e))?
    {
        return Ok(None);
    }
    let password = random_hex(16).map_err(|e| Problem::internal("random source", &e))?;
    let hash = auth
        .hash_password(&password)
        .map_err(|e| Problem::internal("password hashing", &e))?;
    let now = state.clock.now_ms();
    let created = auth.insert_user(FIRST_ADMIN, Role::Admin, &hash, now, || {
        state.core.append_blocking(AuditEntry {
            actor: Actor::system("bootstrap"),
            action: "user.create".into(),
            object: format!("user/{FIRST_ADMIN}"),
            before: None,
            after: None,
            reason: "first start: no users".into(),
            result: "ok".into(),
            detail: "role admin; one-time password shown to the operator".into(),
        })
    })?;
    Ok(created.then_some(password))
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The access check of every route: look the route up (deny if absent), authenticate, check
/// CSRF for cookie-authenticated mutations, check the role; audit every denial.
pub async fn authorize(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    // HEAD is answered by the GET route and needs what GET needs.
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let object = format!("route/{method} {}", path.as_deref().unwrap_or("?"));
    let addr = client_addr(req.extensions());
    if let Some(p) = path.as_deref()
        && lookup(&method, p).is_none()
        && let allowed = allowed_methods(p)
        && !allowed.is_empty()
    {
        // A known path with a method it does not have: not an access decision.
        let mut res = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("allowed: {allowed}"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&allowed) {
            res.headers_mut().insert(header::ALLOW, v);
        }
        return res;
    }
    let Some(spec) = path.as_deref().and_then(|p| lookup(&method, p)) else {
        let why = Denial::new(
            StatusCode::FORBIDDEN,
            "",
            "route is not in the access table",
        );
        return deny(&st, None, addr, &object, why).await;
    };
    if spec.access == Access::Public {
        return next.run(req).await;
    }
    let principal = match st.auth.authenticate(req.headers(), st.clock.now_ms()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            let why = Denial::new(StatusCode::UNAUTHORIZED, "Authorization", "no credentials");
            return deny(&st, None, addr, &object, why).await;
        }
        Err((field, reason)) => {
            let why = Denial::new(StatusCode::UNAUTHORIZED, field, reason);
            return deny(&st, None, addr, &object, why).await;
        }
    };
    if let Some((csrf, _)) = &principal.session
        && !is_safe(&method)
    {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !constant_time_eq(sent, csrf.as_bytes()) {
            let why = Denial::new(
                StatusCode::FORBIDDEN,
                CSRF_HEADER,
                "missing or wrong CSRF token",
            );
            return deny(&st, Some(&principal), addr, &object, why).await;
        }
    }
    if !spec.access.allows(principal.role) {
        let msg = format!("role {} may not call this route", principal.role);
        let why = Denial::new(StatusCode::FORBIDDEN, "", &msg);
        return deny(&st, Some(&principal), addr, &object, why).await;
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The methods the table has for `path`, comma-separated (HEAD with GET).
fn allowed_methods(path: &str) -> String {
    let mut v: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.method.as_str())
        .collect();
    if v.contains(&"GET") {
        v.push("HEAD");
    }
    v.join(", ")
}

/// Why a request is refused: the status, the credential field at fault (if any), the reason.
struct Denial<'a> {
    status: StatusCode,
    field: &'a str,
    reason: &'a str,
}

impl<'a> Denial<'a> {
    fn new(status: StatusCode, field: &'a str, reason: &'a str) -> Self {
        Denial {
            status,
            field,
            reason,
        }
    }
}

/// The TCP peer of the request's connection, when the server recorded it (`serve` does).
pub fn client_addr(ext: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Audits and answers a refused request. A denial with a principal is one record now; one
/// without (no or bad credentials) is counted for its source's aggregated record, written at
/// the end of the interval ([`AppState::flush_denials`]), so a flood costs one fsync per source
/// per interval, not one per request.
async fn deny(
    st: &AppState,
    who: Option<&Principal>,
    addr: Option<std::net::IpAddr>,
    object: &str,
    why: Denial<'_>,
) -> Response {
    st.metrics.denied();
    match who {
        Some(p) => {
            let entry = AuditEntry {
                actor: p.actor.clone(),
                action: "access.denied".into(),
                object: object.into(),
                before: None,
                after: None,
                reason: why.reason.into(),
                result: "refused".into(),
                detail: format!("role {}", p.role),
            };
            if let Err(p) = st.core.append(entry).await {
                tracing::error!(detail = %p.detail, "could not audit an access denial");
            }
        }
        None => st
            .auth
            .note_denial(addr, object, why.reason, st.clock.now_ms()),
    }
    let unauthenticated = why.status == StatusCode::UNAUTHORIZED;
    let (slug, title) = if unauthenticated {
        ("unauthenticated", "Unauthenticated")
    } else {
        ("forbidden", "Forbidden")
    };
    let mut p = Problem::new(why.status, slug, title, why.reason);
    if !why.field.is_empty() {
        p.errors.push(FieldError::new(why.field, why.reason));
    }
    let mut res = p.into_response();
    if unauthenticated {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"septa\""),
        );
    }
    res
}

/// Shared handle type for the auth store.
pub type SharedAuth = Arc<AuthStore>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-septa_session=xyz; b=2"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("xyz"));
        let v = session_cookie_header("id", 60);
        let s = v.to_str().unwrap();
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(s.contains(attr), "{s}");
        }
    }
}
