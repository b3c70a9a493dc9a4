//! Audit routes for auditors: query records (filter by action and actor, cursor by sequence
//! number), verify the whole log against the key and head the running process holds, and export
//! a range that verifies on its own.
//!
//! Verify and export run under the core's lock so no append can interleave with the read (a
//! half-written tail would otherwise look like a torn line). Queries read the append-only
//! segments without the lock and ignore an incomplete final line.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::random_hex;
use super::problem::{Problem, QueryParams};
use crate::audit::log::parse_segment_name;
use crate::audit::record::unhex;
use crate::audit::{ExportManifest, Record, VerifyOptions, VerifyReport, export, verify_with};

/// Audit routes (under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/records", get(records))
        .route("/audit/verify", get(verify))
        .route("/audit/export", get(export_range))
}

/// Most records in one export.
pub const MAX_EXPORT: u64 = 100_000;

/// A page of audit records.
#[derive(Serialize, ToSchema)]
pub struct RecordPage {
    /// Records in sequence order.
    pub items: Vec<Record>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The result of verifying the log.
#[derive(Serialize, ToSchema)]
pub struct VerifyResult {
    /// Whether the whole log verifies under the running key, up to the running head.
    pub ok: bool,
    /// The verifier's report, when it verifies.
    pub report: Option<VerifyReport>,
    /// Why it does not verify.
    pub error: Option<String>,
}

/// An export: the files of a self-verifying directory, by name.
#[derive(Serialize, ToSchema)]
pub struct ExportBundle {
    /// First and last record and the chain link before the first.
    pub manifest: ExportManifest,
    /// File name → content (segments, checkpoints, public key, manifest).
    pub files: BTreeMap<String, String>,
}

fn read_records(
    dir: &Path,
    after: Option<u64>,
    limit: usize,
    action: Option<&str>,
    actor: Option<&str>,
) -> Result<(Vec<Record>, bool), std::io::Error> {
    let mut firsts: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_segment_name(&e.file_name().to_string_lossy()))
        .collect();
    firsts.sort_unstable();
    let start = after.map_or(0, |a| a + 1);
    // Skip segments that end before `start` (the next one begins at or before it).
    let skip = firsts.windows(2).take_while(|w| w[1] <= start).count();
    let mut out = Vec::new();
    for first in &firsts[skip..] {
        let bytes = fs::read(dir.join(crate::audit::segment_name(*first)))?;
        for line in bytes.split(|&b| b == b'\n') {
            let Ok(r) = serde_json::from_slice::<Record>(line) else {
                continue;
            };
            if r.seq < start
                || action.is_some_and(|a| r.action != a)
                || actor.is_some_and(|a| r.actor.to_string() != a)
            {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(r);
        }
    }
    Ok((out, false))
}

/// Audit records in sequence order, optionally filtered by `action` and `actor`
/// (`user:alice`, `token:ci`, `system:commit-confirm`).
#[utoipa::path(get, path = "/api/v1/audit/records", tag = "audit",
    params(("cursor" = Option<u64>, Query), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000),
        ("action" = Option<String>, Query), ("actor" = Option<String>, Query)),
    responses((status = 200, body = RecordPage), (status = 400, body = Problem)))]
pub async fn records(State(st): State<AppState>, q: QueryParams) -> Result<Response, Problem> {
    q.only(&["cursor", "limit", "action", "actor"])?;
    let after: Option<u64> = q.opt("cursor")?;
    // The document declares int64, as for /revisions: refuse what it says is out of range.
    if after.is_some_and(|c| i64::try_from(c).is_err()) {
        return Err(Problem::bad_param("cursor", "out of range"));
    }
    let limit: usize = q.opt("limit")?.unwrap_or(100);
    if limit == 0 || limit > st.limits.max_page {
        return Err(Problem::bad_param(
            "limit",
            format!("must be between 1 and {}", st.limits.max_page),
        ));
    }
    let action = q.str("action").map(str::to_owned);
    let actor = q.str("actor").map(str::to_owned);
    let dir = st.audit_dir.clone();
    let (items, more) = tokio::task::spawn_blocking(move || {
        read_records(&dir, after, limit, action.as_deref(), actor.as_deref())
    })
    .await
    .map_err(|e| Problem::internal("reading the audit log", &e))?
    .map_err(|e| Problem::internal("reading the audit log", &e))?;
    let next_cursor = if more {
        items.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Ok(Json(RecordPage { items, next_cursor }).into_response())
}

/// Verifies the whole log: chain, hashes, signed checkpoints, under the key the running process
/// signs with and up to the head it last wrote (so a truncation is detected).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyResult)))]
pub async fn verify(State(st): State<AppState>) -> Result<Response, Problem> {
    let dir = st.audit_dir.clone();
    let result = st
        .core
        .run(move |svc| {
            let log = svc.audit_log();
            let key =
                unhex::<32>(&log.public_key_hex()).and_then(|b| VerifyingKey::from_bytes(&b).ok());
            let head = log.head();
            let opts = VerifyOptions {
                public_key: key,
                expected_head: Some((head.seq, head.hash)),
            };
            verify_with(&dir, &opts)
        })
        .await?;
    let body = match result {
        Ok(report) => VerifyResult {
            ok: true,
            report: Some(report),
            error: None,
        },
        Err(e) => VerifyResult {
            ok: false,
            report: None,
            error: Some(e.to_string()),
        },
    };
    Ok(Json(body).into_response())
}

/// Exports records `from..=to` (extended to the next signed checkpoint) as a bundle of files
/// that verifies on its own (`septa audit verify` on a directory holding them).
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit",
    params(("from" = u64, Query), ("to" = u64, Query)),
    responses((status = 200, body = ExportBundle), (status = 400, body = Problem)))]
pub async fn export_range(State(st): State<AppState>, q: QueryParams) -> Result<Response, Problem> {
    q.only(&["from", "to"])?;
    let from: u64 = q.req("from")?;
    let to: u64 = q.req("to")?;
    if to < from {
        return Err(Problem::bad_param("to", "must not be before from"));
    }
    if to - from >= MAX_EXPORT {
        return Err(Problem::bad_param(
            "to",
            format!("at most {MAX_EXPORT} records per export"),
        ));
    }
    let dir = st.audit_dir.clone();
    let scratch = st.data_dir.join("exports").join(format!(
        "api-{}",
        random_hex(8).map_err(|e| Problem::internal("random source", &e))?
    ));
    let out = scratch.clone();
    let result = st
        .core
        .run(move |svc| {
            if svc.audit_log().head().seq < to {
                return Err(Problem::bad_param("to", "beyond the last record"));
            }
            // Sign the head so the range can end on a checkpoint.
            svc.audit_log()
                .checkpoint()
                .map_err(|e| Problem::internal("checkpointing the audit log", &e))?;
            let manifest = export(&dir, from, to, &out)
                .map_err(|e| Problem::internal("exporting the audit log", &e))?;
            let mut files = BTreeMap::new();
            for entry in
                fs::read_dir(&out).map_err(|e| Problem::internal("reading an export", &e))?
            {
                let entry = entry.map_err(|e| Problem::internal("reading an export", &e))?;
                let text = fs::read_to_string(entry.path())
                    .map_err(|e| Problem::internal("reading an export", &e))?;
                files.insert(entry.file_name().to_string_lossy().into_owned(), text);
            }
            Ok(ExportBundle { manifest, files })
        })
        .await;
    let _ = fs::remove_dir_all(&scratch);
    let bundle = result??;
    Ok((StatusCode::OK, Json(bundle)).into_response())
}
