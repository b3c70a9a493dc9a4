//! Evidence packs: what the appliance enforced and observed over a window, as statements an
//! auditor can check, each mapped to controls and linked to the audit-log records (and the
//! signed checkpoint) that prove it.
//!
//! A pack is a directory with `evidence.json` (machine-readable) and `report.html` (the same
//! statements for people). Sections: the zone/conduit matrix of the policy in force, the
//! observed data-flow map, deny and would-deny statistics, the policy change history with
//! reasons and approvers, the anomaly summary, model versions and the audit-log integrity.
//!
//! Reading only: generating a pack opens the revision store, the flow history and the audit
//! log directory without writing to any of them (safe while `septa run` runs).
//!
//! [`verify`] re-checks a pack against the log: every statement's data hash, the report's
//! hash, each cited audit record (present in the log with the same hash; the log itself
//! verifies end to end), each cited checkpoint (present, signature valid under the log's key,
//! covering the record), and the policy-change statements re-derived from the log records. The
//! pack itself is not signed: its trust comes from the log. Flow-derived statements are checked
//! for internal consistency only (history is pruned by retention, so it cannot be re-derived
//! later).

pub mod html;

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::log::{CHECKPOINT_FILE, parse_segment_name};
use crate::audit::record::sha256_hex;
use crate::audit::{Checkpoint, Record, read_public_key, verify as verify_log};
use crate::history::{FlowHistory, HISTORY_DB_FILE, HistoryConfig};
use crate::policy::ValidatedPolicy;
use crate::store::{RevisionKind, RevisionStore};

/// The machine-readable file of a pack.
pub const EVIDENCE_JSON: &str = "evidence.json";
/// The human-readable report of a pack.
pub const REPORT_HTML: &str = "report.html";
/// Pack format version.
pub const FORMAT: u32 = 1;

/// Generating or verifying a pack failed.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A file could not be read or written.
    #[error("evidence: {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The revision store could not be read.
    #[error("evidence: reading the revision store")]
    Store(#[from] crate::error::StoreError),
    /// The flow history could not be read.
    #[error("evidence: reading the flow history")]
    History(#[from] crate::history::HistoryError),
    /// The audit log does not verify (a pack is never built on a broken log).
    #[error("evidence: the audit log does not verify")]
    Log(#[from] crate::error::VerifyError),
    /// A file is not what it should be.
    #[error("evidence: {path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The window is empty or reversed.
    #[error("evidence: the window is empty (from {from_ms} is not before to {to_ms})")]
    Window {
        /// Start.
        from_ms: i64,
        /// End.
        to_ms: i64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A control a statement supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = EvidenceControl)]
pub struct Control {
    /// Stable id, e.g. `IEC62443-3-3:SR5.1`.
    pub id: &'static str,
    /// Framework.
    pub framework: &'static str,
    /// What the control asks for, in short.
    pub title: &'static str,
}

/// The controls statements map to.
pub const CONTROLS: &[Control] = &[
    Control {
        id: "NIST800-207:T1",
        framework: "NIST SP 800-207",
        title: "Tenet 1: all data sources and computing services are resources",
    },
    Control {
        id: "NIST800-207:T4",
        framework: "NIST SP 800-207",
        title: "Tenet 4: access is determined by dynamic policy",
    },
    Control {
        id: "NIST800-207:T5",
        framework: "NIST SP 800-207",
        title: "Tenet 5: the enterprise monitors and measures the integrity and security posture of assets",
    },
    Control {
        id: "NIST800-207:T6",
        framework: "NIST SP 800-207",
        title: "Tenet 6: authorization is dynamic and strictly enforced before access",
    },
    Control {
        id: "NIST800-207:T7",
        framework: "NIST SP 800-207",
        title: "Tenet 7: the enterprise collects information on assets, network and communications to improve its posture",
    },
    Control {
        id: "HIPAA:164.312(a)(1)",
        framework: "HIPAA Security Rule",
        title: "Access control",
    },
    Control {
        id: "HIPAA:164.312(b)",
        framework: "HIPAA Security Rule",
        title: "Audit controls",
    },
    Control {
        id: "HIPAA:164.312(c)(1)",
        framework: "HIPAA Security Rule",
        title: "Integrity",
    },
    Control {
        id: "HIPAA:164.312(e)(1)",
        framework: "HIPAA Security Rule",
        title: "Transmission security",
    },
    Control {
        id: "IEC62443-3-3:SR5.1",
        framework: "IEC 62443-3-3",
        title: "SR 5.1 Network segmentation",
    },
    Control {
        id: "IEC62443-3-3:SR5.2",
        framework: "IEC 62443-3-3",
        title: "SR 5.2 Zone boundary protection",
    },
    Control {
        id: "NIS2:Art21(2)(a)",
        framework: "NIS2 Directive",
        title: "Art. 21(2)(a) policies on risk analysis and information system security",
    },
    Control {
        id: "NIS2:Art21(2)(b)",
        framework: "NIS2 Directive",
        title: "Art. 21(2)(b) incident handling",
    },
    Control {
        id: "NIS2:Art21(2)(f)",
        framework: "NIS2 Directive",
        title: "Art. 21(2)(f) assessing the effectiveness of risk-management measures",
    },
    Control {
        id: "NIS2:Art21(2)(i)",
        framework: "NIS2 Directive",
        title: "Art. 21(2)(i) access control policies and asset management",
    },
];

/// A cited audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRecord {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// The first signed checkpoint covering it; `None` when it is in the unsigned tail.
    pub checkpoint: Option<Checkpoint>,
}

/// One statement of the pack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EvidenceStatement)]
pub struct Statement {
    /// `S1`, `S2`, ...
    pub id: String,
    /// Section (`matrix`, `flow-map`, `verdicts`, `changes`, `anomalies`, `models`, `log`).
    pub section: String,
    /// The claim, in words.
    pub text: String,
    /// Control ids it supports.
    pub controls: Vec<String>,
    /// Audit records that prove it.
    pub sources: Vec<SourceRecord>,
    /// The supporting data. Free-form in the OpenAPI document: its fields depend on `section`
    /// (e.g. `changes` holds the policy changes re-derived from the audit records); `sha256`
    /// covers it, so readers check it rather than rely on a shape.
    #[schema(value_type = Value)]
    pub data: Value,
    /// sha256 of the canonical JSON of `[section, text, controls, sources, data]`.
    pub sha256: String,
}

/// The whole pack (`evidence.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidencePack {
    /// [`FORMAT`].
    pub format: u32,
    /// Window start (Unix ms).
    pub from_ms: i64,
    /// Window end (Unix ms).
    pub to_ms: i64,
    /// When it was generated (Unix ms).
    pub generated_ms: i64,
    /// The Septa build.
    pub septa_version: String,
    /// The audit log's public key (hex).
    pub audit_public_key: String,
    /// The controls referenced, with titles.
    #[schema(value_type = Vec<Control>)]
    pub controls: Vec<Value>,
    /// The statements.
    pub statements: Vec<Statement>,
    /// Things the reader should know (unsigned tail, missing history, ...).
    pub caveats: Vec<String>,
    /// sha256 of `report.html`.
    pub report_sha256: String,
}

/// Where the appliance keeps its state.
#[derive(Clone, Debug)]
pub struct DataDir {
    /// The data directory.
    pub root: PathBuf,
}

impl DataDir {
    fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }
}

/// Every record of the log in `dir`, in order.
pub fn read_records(dir: &Path) -> Result<Vec<Record>, EvidenceError> {
    let mut segs: Vec<(u64, PathBuf)> = Vec::new();
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        if let Some(first) = e.file_name().to_str().and_then(parse_segment_name) {
            segs.push((first, e.path()));
        }
    }
    segs.sort();
    let mut out = Vec::new();
    for (_, p) in segs {
        let text = fs::read_to_string(&p).map_err(io(&p))?;
        for (i, line) in text.lines().enumerate() {
            let r: Record = serde_json::from_str(line).map_err(|e| EvidenceError::Malformed {
                path: p.clone(),
                message: format!("line {}: {e}", i + 1),
            })?;
            out.push(r);
        }
    }
    Ok(out)
}

/// Every checkpoint of the log in `dir`, in order.
pub fn read_checkpoints(dir: &Path) -> Result<Vec<Checkpoint>, EvidenceError> {
    let p = dir.join(CHECKPOINT_FILE);
    let text = fs::read_to_string(&p).map_err(io(&p))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| EvidenceError::Malformed {
                path: p.clone(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

fn cite(r: &Record, cps: &[Checkpoint]) -> SourceRecord {
    SourceRecord {
        seq: r.seq,
        hash: r.hash.clone(),
        checkpoint: cps.iter().find(|c| c.seq >= r.seq).cloned(),
    }
}

fn statement(
    section: &str,
    text: String,
    controls: &[&str],
    sources: Vec<SourceRecord>,
    data: Value,
) -> Statement {
    let mut s = Statement {
        id: String::new(),
        section: section.into(),
        text,
        controls: controls.iter().map(|c| (*c).to_owned()).collect(),
        sources,
        data,
        sha256: String::new(),
    };
    s.sha256 = statement_hash(&s);
    s
}

fn statement_hash(s: &Statement) -> String {
    let v = json!([s.section, s.text, s.controls, s.sources, s.data]);
    sha256_hex(&serde_json::to_vec(&v).unwrap_or_default())
}

fn zone_of(policy: &ValidatedPolicy, a: IpAddr) -> String {
    policy
        .zones()
        .iter()
        .find(|z| z.prefixes.iter().any(|n| n.contains(&a)))
        .map_or_else(|| "(no zone)".to_owned(), |z| z.name.clone())
}

/// The policy-change entries the log holds for the window (what the `changes` statement shows
/// and what [`verify`] re-derives).
fn change_entries(records: &[Record], from_ms: i64, to_ms: i64) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| r.action.starts_with("policy.") && r.ts_ms >= from_ms && r.ts_ms <= to_ms)
        .collect()
}

fn change_data(r: &Record) -> Value {
    json!({
        "seq": r.seq,
        "ts_ms": r.ts_ms,
        "action": r.action,
        "object": r.object,
        "actor": format!("{}:{}", serde_json::to_value(r.actor.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(), r.actor.name),
        "reason": r.reason,
        "result": r.result,
        "before": r.before,
        "after": r.after,
        "detail": r.detail,
    })
}

/// Builds the pack for `[from_ms, to_ms]` from the data directory.
pub fn generate(
    data: &DataDir,
    from_ms: i64,
    to_ms: i64,
    generated_ms: i64,
) -> Result<EvidencePack, EvidenceError> {
    if from_ms >= to_ms {
        return Err(EvidenceError::Window { from_ms, to_ms });
    }
    let audit_dir = data.audit_dir();
    let report = verify_log(&audit_dir)?;
    let records = read_records(&audit_dir)?;
    let cps = read_checkpoints(&audit_dir)?;
    let mut caveats = Vec::new();
    let mut statements = Vec::new();

    // The policy in force at the end of the window: the latest published revision made by then.
    let store = RevisionStore::open(&data.root)?;
    let published = store
        .list()?
        .into_iter()
        .rfind(|r| r.kind != RevisionKind::Stage && r.created_ms <= to_ms);
    let policy = match &published {
        Some(info) => Some((info.clone(), store.get(info.id)?.policy()?)),
        None => None,
    };
    let policy_record = policy.as_ref().and_then(|(info, _)| {
        records.iter().rev().find(|r| {
            r.after.as_deref() == Some(info.hash.as_str())
                && (r.action == "policy.commit" || r.action == "policy.rollback")
                && r.result == "ok"
        })
    });
    let policy_sources: Vec<SourceRecord> =
        policy_record.map(|r| cite(r, &cps)).into_iter().collect();

    // 1. Zone/conduit matrix.
    match &policy {
        Some((info, p)) => {
            let zones: Vec<Value> = p
                .zones()
                .iter()
                .map(|z| json!({"name": z.name, "mode": format!("{:?}", z.mode).to_lowercase(), "prefixes": z.prefixes.iter().map(ToString::to_string).collect::<Vec<_>>()}))
                .collect();
            let mut matrix: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
            for c in p.conduits() {
                for &f in &c.from {
                    for &t in &c.to {
                        matrix
                            .entry((p.zone_name(f).to_owned(), p.zone_name(t).to_owned()))
                            .or_default()
                            .push(json!({
                                "conduit": c.name,
                                "action": serde_json::to_value(c.action).unwrap_or(Value::Null),
                                "mode": format!("{:?}", p.pair_mode(c, f, t)).to_lowercase(),
                                "services": serde_json::to_value(&p.document().spec.conduits[c.index].services).unwrap_or(Value::Null),
                            }));
                    }
                }
            }
            let cells: Vec<Value> = matrix
                .into_iter()
                .map(|((f, t), cs)| json!({"from": f, "to": t, "conduits": cs}))
                .collect();
            statements.push(statement(
                "matrix",
                format!(
                    "Policy '{}' (revision {}, hash {}) divides the network into {} zone(s); traffic between zones is denied by default and allowed only through the {} listed zone pair(s).",
                    p.name(), info.id, info.hash, p.zones().len(), cells.len()
                ),
                &["IEC62443-3-3:SR5.1", "IEC62443-3-3:SR5.2", "NIST800-207:T1", "NIST800-207:T6", "HIPAA:164.312(a)(1)", "NIS2:Art21(2)(i)"],
                policy_sources.clone(),
                json!({"revision": info.id, "hash": info.hash, "default": "deny", "default_mode": format!("{:?}", p.default_mode()).to_lowercase(), "zones": zones, "cells": cells}),
            ));
            if policy_sources.is_empty() {
                caveats.push(format!("no audit record of the commit of revision {} was found", info.id));
            }
        }
        None => statements.push(statement(
            "matrix",
            "No policy was published by the end of the window: the gateway dropped all traffic (fail closed).".into(),
            &["IEC62443-3-3:SR5.2", "NIST800-207:T6"],
            vec![],
            json!({"revision": null}),
        )),
    }

    // 2 and 3. Observed flow map and verdict statistics, from the flow history.
    if data.root.join(HISTORY_DB_FILE).exists() {
        let history = FlowHistory::open(&data.root, HistoryConfig::default())?;
        let mut edges: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        let (mut allowed, mut denied, mut would) = (0u64, 0u64, 0u64);
        let mut top_denied: BTreeMap<(String, String, u8, u16), u64> = BTreeMap::new();
        history.for_each(from_ms, to_ms, |a| {
            let (zs, zd) = match &policy {
                Some((_, p)) => (zone_of(p, a.key.src), zone_of(p, a.key.dst)),
                None => (a.key.src.to_string(), a.key.dst.to_string()),
            };
            let e = edges.entry((zs, zd)).or_default();
            e.0 += a.flows;
            e.1 += a.bytes;
            allowed += a.allowed;
            denied += a.denied;
            would += a.would_deny;
            if a.denied + a.would_deny > 0 {
                *top_denied
                    .entry((
                        a.key.src.to_string(),
                        a.key.dst.to_string(),
                        a.key.proto,
                        a.key.dport,
                    ))
                    .or_default() += a.denied + a.would_deny;
            }
        })?;
        let map: Vec<Value> = edges
            .iter()
            .map(|((f, t), (n, b))| json!({"from": f, "to": t, "flows": n, "bytes": b}))
            .collect();
        statements.push(statement(
            "flow-map",
            format!("{} zone-to-zone data flow(s) were observed in the window (from the appliance's local flow history).", map.len()),
            &["NIST800-207:T5", "NIST800-207:T7", "HIPAA:164.312(b)", "NIS2:Art21(2)(f)", "NIS2:Art21(2)(i)"],
            policy_sources.clone(),
            json!({"edges": map}),
        ));
        let mut top: Vec<(u64, (String, String, u8, u16))> =
            top_denied.into_iter().map(|(k, n)| (n, k)).collect();
        top.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let top: Vec<Value> = top
            .into_iter()
            .take(20)
            .map(|(n, (s, d, p, port))| json!({"src": s, "dst": d, "proto": p, "dport": port, "count": n}))
            .collect();
        statements.push(statement(
            "verdicts",
            format!("In the window {allowed} flow record(s) were allowed, {denied} denied (enforce) and {would} would have been denied (monitor mode)."),
            &["IEC62443-3-3:SR5.2", "NIST800-207:T6", "HIPAA:164.312(a)(1)", "HIPAA:164.312(b)", "NIS2:Art21(2)(f)"],
            policy_sources.clone(),
            json!({"allowed": allowed, "denied": denied, "would_deny": would, "top_denied": top}),
        ));
    } else {
        caveats.push(
            "no flow history in the data directory: the flow map and verdict statistics are absent"
                .into(),
        );
    }

    // 4. Policy change history.
    let changes = change_entries(&records, from_ms, to_ms);
    statements.push(statement(
        "changes",
        format!(
            "{} policy change(s) were recorded in the window, each with its author or approver and a mandatory reason; refused changes are recorded too.",
            changes.len()
        ),
        &["HIPAA:164.312(b)", "HIPAA:164.312(c)(1)", "NIST800-207:T4", "NIS2:Art21(2)(a)", "NIS2:Art21(2)(f)"],
        changes.iter().map(|r| cite(r, &cps)).collect(),
        json!({"changes": changes.iter().map(|r| change_data(r)).collect::<Vec<_>>()}),
    ));

    // 5. Anomaly summary.
    let alerts: Vec<&Record> = records
        .iter()
        .filter(|r| {
            (r.action.starts_with("alert.") || r.action.starts_with("anomaly."))
                && r.ts_ms >= from_ms
                && r.ts_ms <= to_ms
        })
        .collect();
    let text = if alerts.is_empty() {
        "No ML anomaly alerts were recorded in the window: the audit log holds no alert records for it (either no anomaly detector was configured or it raised none).".to_owned()
    } else {
        format!(
            "{} anomaly alert(s) were recorded in the window.",
            alerts.len()
        )
    };
    statements.push(statement(
        "anomalies",
        text,
        &["NIST800-207:T5", "NIST800-207:T7", "NIS2:Art21(2)(b)"],
        alerts.iter().map(|r| cite(r, &cps)).collect(),
        json!({"alerts": alerts.iter().map(|r| change_data(r)).collect::<Vec<_>>()}),
    ));

    // 6. Model versions: files under DATA/models, by hash.
    let models_dir = data.root.join("models");
    let mut models = Vec::new();
    if let Ok(rd) = fs::read_dir(&models_dir) {
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for p in paths {
            let bytes = fs::read(&p).map_err(io(&p))?;
            models.push(json!({"file": p.file_name().map(|n| n.to_string_lossy().into_owned()), "sha256": sha256_hex(&bytes), "bytes": bytes.len()}));
        }
    }
    statements.push(statement(
        "models",
        if models.is_empty() {
            "No ML model files are installed in the data directory (models/).".to_owned()
        } else {
            format!(
                "{} ML model file(s) are installed, identified by sha256.",
                models.len()
            )
        },
        &["NIST800-207:T5", "NIS2:Art21(2)(f)"],
        vec![],
        json!({"models": models}),
    ));

    // 7. The audit log itself.
    let head = records.last();
    statements.push(statement(
        "log",
        format!(
            "The audit log verifies end to end: {} record(s), hash-chained, {} signed checkpoint(s); {} record(s) after the last checkpoint are chained but not yet signed.",
            report.records, report.checkpoints, report.unsigned_tail
        ),
        &["HIPAA:164.312(b)", "HIPAA:164.312(c)(1)", "NIST800-207:T7", "NIS2:Art21(2)(f)"],
        head.map(|r| cite(r, &cps)).into_iter().collect(),
        serde_json::to_value(&report).unwrap_or(Value::Null),
    ));
    if report.unsigned_tail > 0 {
        caveats.push(format!(
            "{} audit record(s) after the last checkpoint are not yet covered by a signature; statements citing them show no checkpoint",
            report.unsigned_tail
        ));
    }

    for (i, s) in statements.iter_mut().enumerate() {
        s.id = format!("S{}", i + 1);
    }
    let used: std::collections::BTreeSet<&str> = statements
        .iter()
        .flat_map(|s| s.controls.iter().map(String::as_str))
        .collect();
    let controls = CONTROLS
        .iter()
        .filter(|c| used.contains(c.id))
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .collect();
    let mut pack = EvidencePack {
        format: FORMAT,
        from_ms,
        to_ms,
        generated_ms,
        septa_version: env!("CARGO_PKG_VERSION").into(),
        audit_public_key: report.public_key,
        controls,
        statements,
        caveats,
        report_sha256: String::new(),
    };
    pack.report_sha256 = sha256_hex(html::render(&pack).as_bytes());
    Ok(pack)
}

/// Writes `evidence.json` and `report.html` into `out` (created if missing).
pub fn write(pack: &EvidencePack, out: &Path) -> Result<(), EvidenceError> {
    fs::create_dir_all(out).map_err(io(out))?;
    let html = html::render(pack);
    let json = serde_json::to_vec_pretty(pack).unwrap_or_default();
    let p = out.join(REPORT_HTML);
    fs::write(&p, html).map_err(io(&p))?;
    let p = out.join(EVIDENCE_JSON);
    fs::write(&p, json).map_err(io(&p))?;
    Ok(())
}

/// What verification found: empty `problems` means the pack checks out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PackCheck {
    /// Statements checked.
    pub statements: usize,
    /// Audit records checked against the log.
    pub records: usize,
    /// Checkpoint signatures checked.
    pub checkpoints: usize,
    /// Everything that failed, one line each.
    pub problems: Vec<String>,
}

/// Re-checks the pack in `pack_dir` against the audit log of `data` (see the module docs).
/// `Err` only when something cannot be read; a pack that fails a check returns `Ok` with
/// `problems`.
pub fn verify(pack_dir: &Path, data: &DataDir) -> Result<PackCheck, EvidenceError> {
    let mut chk = PackCheck::default();
    let jp = pack_dir.join(EVIDENCE_JSON);
    let text = fs::read(&jp).map_err(io(&jp))?;
    let pack: EvidencePack = match serde_json::from_slice(&text) {
        Ok(p) => p,
        Err(e) => {
            chk.problems
                .push(format!("{EVIDENCE_JSON} is not a valid pack: {e}"));
            return Ok(chk);
        }
    };
    let hp = pack_dir.join(REPORT_HTML);
    let html = fs::read(&hp).map_err(io(&hp))?;
    if sha256_hex(&html) != pack.report_sha256 {
        chk.problems.push(format!(
            "{REPORT_HTML} does not match the hash recorded in {EVIDENCE_JSON}"
        ));
    }
    if html::render(&pack).as_bytes() != html.as_slice() {
        chk.problems.push(format!(
            "{REPORT_HTML} is not the rendering of {EVIDENCE_JSON}"
        ));
    }
    let audit_dir = data.audit_dir();
    match verify_log(&audit_dir) {
        Ok(r) if r.public_key == pack.audit_public_key => {}
        Ok(r) => chk.problems.push(format!(
            "the pack names audit key {} but the log's key is {}",
            pack.audit_public_key, r.public_key
        )),
        Err(e) => chk
            .problems
            .push(format!("the audit log does not verify: {e}")),
    }
    let key = read_public_key(&audit_dir.join(crate::audit::log::PUBLIC_KEY_FILE))?;
    let records = read_records(&audit_dir)?;
    let by_seq: BTreeMap<u64, &Record> = records.iter().map(|r| (r.seq, r)).collect();
    let cps = read_checkpoints(&audit_dir)?;
    for s in &pack.statements {
        chk.statements += 1;
        if statement_hash(s) != s.sha256 {
            chk.problems
                .push(format!("{}: its content does not match its hash", s.id));
        }
        for c in &s.controls {
            if !CONTROLS.iter().any(|k| k.id == c) {
                chk.problems.push(format!("{}: unknown control {c}", s.id));
            }
        }
        for src in &s.sources {
            chk.records += 1;
            match by_seq.get(&src.seq) {
                Some(r) if r.hash == src.hash => {}
                Some(_) => chk.problems.push(format!(
                    "{}: audit record {} has a different hash in the log",
                    s.id, src.seq
                )),
                None => chk.problems.push(format!(
                    "{}: audit record {} is not in the log",
                    s.id, src.seq
                )),
            }
            if let Some(cp) = &src.checkpoint {
                chk.checkpoints += 1;
                if !cp.verify(&key) {
                    chk.problems.push(format!(
                        "{}: checkpoint {} has an invalid signature",
                        s.id, cp.seq
                    ));
                } else if !cps.contains(cp) {
                    chk.problems
                        .push(format!("{}: checkpoint {} is not in the log", s.id, cp.seq));
                } else if cp.seq < src.seq || by_seq.get(&cp.seq).is_none_or(|r| r.hash != cp.hash)
                {
                    chk.problems.push(format!(
                        "{}: checkpoint {} does not cover record {}",
                        s.id, cp.seq, src.seq
                    ));
                }
            }
        }
        if s.section == "changes" {
            let want: Vec<Value> = change_entries(&records, pack.from_ms, pack.to_ms)
                .iter()
                .map(|r| change_data(r))
                .collect();
            if s.data.get("changes") != Some(&Value::Array(want)) {
                chk.problems.push(format!(
                    "{}: the change history differs from the audit log",
                    s.id
                ));
            }
        }
    }
    if !pack.statements.iter().any(|s| s.section == "changes") {
        chk.problems
            .push("the pack has no policy change history".into());
    }
    Ok(chk)
}

#[cfg(test)]
mod tests;
