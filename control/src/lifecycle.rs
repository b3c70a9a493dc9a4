//! The policy lifecycle: validate → compile → management check → publish → store → audit, with
//! rollback, staging, commit-confirm and what-if decisions. [`PolicyService`] is the one facade
//! the CLI and (later) the REST handlers call.
//!
//! Ordering, and why a failure leaves everything as it was:
//! 1. Parse, validate, compile, check the management path: pure; a refusal changes nothing.
//! 2. Publish the new table through [`Publisher`] (all-or-nothing by contract).
//! 3. Open a store transaction: insert the revision, update the running state (not yet visible).
//! 4. Append the audit record and fsync it.
//! 5. Commit the transaction (fsync, `synchronous=FULL`).
//!
//! If 3, 4 or 5 fails, the transaction is dropped (rolled back) and the previous table is
//! published again; if that re-publish fails too, [`LifecycleError::Inconsistent`] says so. A
//! crash between 4 and 5 leaves an audit record of a commit the store does not have (the audit
//! log is never behind the store, so no mutation is ever unaudited); on restart the store's
//! running revision is authoritative. Every call that tries to mutate appends exactly one audit
//! record: the mutation, or its refusal.
//!
//! Never: publish a policy that did not validate and compile; change the running state without
//! an audit record; block on the data plane (publishing is an RCU swap).

use std::path::PathBuf;
use std::sync::Arc;

use septa_classifier::FlowKey;

use crate::audit::record::sha256_hex;
use crate::audit::{Actor, AuditConfig, AuditEntry, AuditLog};
use crate::clock::Clock;
use crate::compile::{CompiledPolicy, compile};
use crate::decide::{Explanation, decide};
use crate::diff::{PolicyDiff, diff, summary as diff_summary};
use crate::error::PolicyError;
use crate::error::{LifecycleError, StoreError};
use crate::mgmt::ManagementPath;
use crate::policy::{Format, ValidatedPolicy, parse_policy, parse_policy_value};
use crate::store::{
    NewRevision, PendingConfirm, Revision, RevisionInfo, RevisionKind, RevisionSource,
    RevisionStore, State,
};

/// Hands compiled tables to the data plane (the composition root implements it over the
/// classifier's `TableCell`).
pub trait Publisher {
    /// Makes `table` the enforced table; `None` means fail closed (no policy: drop everything).
    /// Must be all-or-nothing: after `Err`, the previously published table is still in force.
    fn publish(&self, table: Option<&Arc<CompiledPolicy>>) -> Result<(), String>;
}

/// Where the service keeps its state.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The data directory (SQLite database).
    pub data_dir: PathBuf,
    /// The audit log.
    pub audit: AuditConfig,
    /// The management path that no policy may cut.
    pub management: Option<ManagementPath>,
}

impl ServiceConfig {
    /// Database in `data_dir`, audit log in `data_dir/audit`, key in `data_dir/keys/audit.key`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let audit = AuditConfig::new(
            data_dir.join("audit"),
            data_dir.join("keys").join("audit.key"),
        );
        ServiceConfig {
            data_dir,
            audit,
            management: None,
        }
    }
}

/// A policy as submitted: text in a syntax (files, the console's editor), or a JSON document
/// already parsed (the API's object form, read without a text round trip).
#[derive(Clone, Copy, Debug)]
pub enum PolicyInput<'a> {
    /// Text and its syntax.
    Text(&'a str, Format),
    /// A parsed JSON document.
    Document(&'a serde_json::Value),
}

impl PolicyInput<'_> {
    /// The submitted text to keep with the revision (`None` for a parsed document: there is no
    /// text, and its canonical form says everything it said).
    fn source(self) -> Option<RevisionSource> {
        match self {
            PolicyInput::Text(text, format) => Some(RevisionSource {
                text: text.to_owned(),
                format,
            }),
            PolicyInput::Document(_) => None,
        }
    }

    /// Parses and validates.
    pub fn parse(self) -> Result<ValidatedPolicy, PolicyError> {
        match self {
            PolicyInput::Text(text, format) => parse_policy(text, format),
            PolicyInput::Document(v) => parse_policy_value(v),
        }
    }
}

/// Options of a commit.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommitOptions {
    /// Commit-confirm: revert to the previous revision unless confirmed within this many ms.
    pub confirm_within_ms: Option<i64>,
}

struct Running {
    info: RevisionInfo,
    policy: ValidatedPolicy,
    compiled: Arc<CompiledPolicy>,
}

/// The lifecycle facade. One instance owns the store and the audit log.
pub struct PolicyService<P: Publisher> {
    store: RevisionStore,
    audit: AuditLog,
    publisher: P,
    clock: Arc<dyn Clock>,
    management: Option<ManagementPath>,
    running: Option<Running>,
    /// Bumped by every store transaction (see [`Self::generation`]).
    generation: u64,
}

/// What a mutation is about, for its audit record.
struct Intent<'a> {
    actor: &'a Actor,
    action: &'static str,
    reason: &'a str,
}

impl<P: Publisher> PolicyService<P> {
    /// Opens the store and the audit log and loads the last running revision. A running revision
    /// that does not load (hash mismatch, invalid, does not compile) is an error: the caller
    /// keeps the data plane fail-closed. Nothing is published here; see [`Self::running_table`].
    pub fn open(
        cfg: ServiceConfig,
        publisher: P,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LifecycleError> {
        let store = RevisionStore::open(&cfg.data_dir)?;
        let audit = AuditLog::open(cfg.audit, Arc::clone(&clock))?;
        let running = match store.load_running()? {
            None => None,
            Some((rev, policy)) => {
                let compiled = Arc::new(compile(&policy)?);
                Some(Running {
                    info: rev.info,
                    policy,
                    compiled,
                })
            }
        };
        let mut svc = PolicyService {
            store,
            audit,
            publisher,
            clock,
            management: cfg.management,
            running,
            generation: 0,
        };
        svc.reconcile()?;
        Ok(svc)
    }

    /// After a crash between the audit append and the store commit (steps 4 and 5), the audit
    /// log's last mutation may describe something the store never committed. Say so in the log.
    fn reconcile(&mut self) -> Result<(), LifecycleError> {
        let Some(last) = self.audit.last_mutation().cloned() else {
            return Ok(());
        };
        if last.result != "ok" {
            return Ok(());
        }
        let running_hash = self.running.as_ref().map(|r| r.info.hash.clone());
        let took_effect = match last.action.as_str() {
            "policy.commit" | "policy.rollback" | "policy.revert" => running_hash == last.after,
            "policy.stage" => self.store.list()?.last().map(|r| r.hash.clone()) == last.after,
            "policy.confirm" => self.store.state()?.pending.is_none(),
            _ => true,
        };
        if !took_effect {
            self.audit.append(AuditEntry {
                actor: Actor::system("lifecycle"),
                action: "policy.lost".into(),
                object: last.object.clone(),
                before: last.after.clone(),
                after: running_hash,
                reason: "interrupted before the store commit; the store is authoritative".into(),
                result: "ok".into(),
                detail: format!(
                    "audit record {} ({}) did not take effect",
                    last.seq, last.action
                ),
            })?;
        }
        Ok(())
    }

    /// Changes whenever the running revision, the pending confirmation or the set of revisions
    /// may have changed (every store transaction, committed or not), so readers can cache what
    /// they derive from them.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The running revision.
    pub fn running(&self) -> Option<&RevisionInfo> {
        self.running.as_ref().map(|r| &r.info)
    }

    /// The running revision's compiled policy (what the data plane should enforce).
    pub fn running_table(&self) -> Option<&Arc<CompiledPolicy>> {
        self.running.as_ref().map(|r| &r.compiled)
    }

    /// Running revision and pending confirmation, as stored.
    pub fn state(&self) -> Result<State, LifecycleError> {
        Ok(self.store.state()?)
    }

    /// Every revision, oldest first.
    pub fn list(&self) -> Result<Vec<RevisionInfo>, LifecycleError> {
        Ok(self.store.list()?)
    }

    /// One revision with its canonical content.
    pub fn get(&self, id: i64) -> Result<Revision, LifecycleError> {
        Ok(self.store.get(id)?)
    }

    /// The text revision `id` was made from. Revisions without one (made before the store kept
    /// sources, or submitted as a JSON object) answer their canonical document rendered as YAML,
    /// with `rendered` true; the rendering parses back to the same canonical content.
    pub fn source(&self, id: i64) -> Result<(RevisionSource, bool), LifecycleError> {
        if let Some(src) = self.store.source(id)? {
            return Ok((src, false));
        }
        let rev = self.store.get(id)?;
        // Refuses content that does not match its hash or no longer validates.
        rev.policy()?;
        let bad = |reason: String| StoreError::BadContent { id, reason };
        let doc: serde_json::Value =
            serde_json::from_slice(&rev.content).map_err(|e| bad(e.to_string()))?;
        let text =
            serde_saphyr::to_string(&doc).map_err(|e| bad(format!("rendering as YAML: {e}")))?;
        Ok((
            RevisionSource {
                text,
                format: Format::Yaml,
            },
            true,
        ))
    }

    /// The audit log (for access-decision records and checkpoints on demand).
    pub fn audit_log(&mut self) -> &mut AuditLog {
        &mut self.audit
    }

    /// Validates, compiles and checks the management path without storing anything
    /// (`septa policy check`).
    pub fn check(
        &self,
        text: &str,
        format: Format,
    ) -> Result<(ValidatedPolicy, CompiledPolicy), LifecycleError> {
        check_policy(text, format, self.management.as_ref())
    }

    /// Commits a new policy and publishes it; with `confirm_within_ms`, it reverts at the
    /// deadline unless [`Self::confirm`]ed.
    pub fn commit(
        &mut self,
        text: &str,
        format: Format,
        actor: &Actor,
        reason: &str,
        opts: CommitOptions,
    ) -> Result<RevisionInfo, LifecycleError> {
        self.commit_input(PolicyInput::Text(text, format), actor, reason, opts)
    }

    /// [`Self::commit`] of a policy in either input form.
    pub fn commit_input(
        &mut self,
        input: PolicyInput<'_>,
        actor: &Actor,
        reason: &str,
        opts: CommitOptions,
    ) -> Result<RevisionInfo, LifecycleError> {
        let intent = Intent {
            actor,
            action: "policy.commit",
            reason,
        };
        let checked = self.preflight(&intent, true).and_then(|()| {
            if let Some(ms) = opts.confirm_within_ms {
                if ms <= 0 {
                    return Err(LifecycleError::ConfirmState(
                        "the confirm window must be positive".into(),
                    ));
                }
                if self.running.is_none() {
                    return Err(LifecycleError::ConfirmState(
                        "commit-confirm needs a running revision to revert to".into(),
                    ));
                }
            }
            check_input(input, self.management.as_ref())
        });
        match checked {
            Ok((policy, compiled)) => self.install(
                &intent,
                policy,
                compiled,
                RevisionKind::Commit,
                opts.confirm_within_ms,
                input.source(),
            ),
            Err(e) => Err(self.refused(&intent, None, e)),
        }
    }

    /// Stores a policy for evaluation without publishing it.
    pub fn stage(
        &mut self,
        text: &str,
        format: Format,
        actor: &Actor,
        reason: &str,
    ) -> Result<RevisionInfo, LifecycleError> {
        self.stage_input(PolicyInput::Text(text, format), actor, reason)
    }

    /// [`Self::stage`] of a policy in either input form.
    pub fn stage_input(
        &mut self,
        input: PolicyInput<'_>,
        actor: &Actor,
        reason: &str,
    ) -> Result<RevisionInfo, LifecycleError> {
        let intent = Intent {
            actor,
            action: "policy.stage",
            reason,
        };
        let checked = self
            .preflight(&intent, false)
            .and_then(|()| check_input(input, None));
        match checked {
            Ok((policy, compiled)) => self.install(
                &intent,
                policy,
                compiled,
                RevisionKind::Stage,
                None,
                input.source(),
            ),
            Err(e) => Err(self.refused(&intent, None, e)),
        }
    }

    /// Publishes the content of revision `to` again, as a new revision.
    pub fn rollback(
        &mut self,
        to: i64,
        actor: &Actor,
        reason: &str,
    ) -> Result<RevisionInfo, LifecycleError> {
        let intent = Intent {
            actor,
            action: "policy.rollback",
            reason,
        };
        let checked = self.preflight(&intent, true).and_then(|()| {
            let rev = self.store.get(to)?;
            let policy = rev.policy()?;
            let compiled = compile(&policy)?;
            if let Some(m) = &self.management {
                m.check(&compiled).map_err(LifecycleError::ManagementPath)?;
            }
            // The rolled-back-to text comes back with its content.
            let source = self.store.source(to)?;
            Ok((policy, compiled, source))
        });
        match checked {
            Ok((policy, compiled, source)) => self.install(
                &intent,
                policy,
                compiled,
                RevisionKind::Rollback,
                None,
                source,
            ),
            Err(e) => Err(self.refused(&intent, Some(format!("revision/{to}")), e)),
        }
    }

    /// Confirms the pending commit-confirm.
    pub fn confirm(&mut self, actor: &Actor, reason: &str) -> Result<RevisionInfo, LifecycleError> {
        let intent = Intent {
            actor,
            action: "policy.confirm",
            reason,
        };
        let now = self.clock.now_ms();
        let checked = self.preflight(&intent, false).and_then(|()| {
            let state = self.store.state()?;
            match (state.pending, self.running.as_ref()) {
                (Some(p), Some(r)) if p.revision == r.info.id && now < p.deadline_ms => {
                    Ok((state, p))
                }
                (Some(_), _) => Err(LifecycleError::ConfirmState(
                    "the confirm deadline has passed".into(),
                )),
                (None, _) => Err(LifecycleError::ConfirmState(
                    "no commit awaits confirmation".into(),
                )),
            }
        });
        let (state, pending) = match checked {
            Ok(x) => x,
            Err(e) => return Err(self.refused(&intent, None, e)),
        };
        let info = self
            .running
            .as_ref()
            .map(|r| r.info.clone())
            .ok_or(LifecycleError::ConfirmState("no running revision".into()))?;
        let entry = self.entry(
            &intent,
            Some(info.hash.clone()),
            Some(info.hash.clone()),
            "ok".into(),
            format!(
                "confirmed revision {} before its deadline",
                pending.revision
            ),
        );
        self.generation = self.generation.wrapping_add(1);
        let tx = self.store.begin()?;
        tx.set_state(&State {
            pending: None,
            ..state
        })?;
        self.audit.append(entry)?;
        tx.commit()?;
        Ok(info)
    }

    /// Reverts an unconfirmed commit whose deadline has passed (in place: the previous revision
    /// runs again, no new revision). Call it periodically; returns the revision reverted to.
    pub fn tick(&mut self) -> Result<Option<RevisionInfo>, LifecycleError> {
        let state = self.store.state()?;
        let Some(p) = state.pending else {
            return Ok(None);
        };
        if self.clock.now_ms() < p.deadline_ms {
            return Ok(None);
        }
        let rev = self.store.get(p.revert_to)?;
        let policy = rev.policy()?;
        let compiled = Arc::new(compile(&policy)?);
        self.publisher
            .publish(Some(&compiled))
            .map_err(LifecycleError::Publish)?;
        let actor = Actor::system("commit-confirm");
        let intent = Intent {
            actor: &actor,
            action: "policy.revert",
            reason: "commit-confirm deadline passed without confirmation",
        };
        let before = self.running.as_ref().map(|r| r.info.hash.clone());
        let detail = match &self.running {
            Some(r) => format!(
                "reverted revision {} to {}: {}",
                r.info.id,
                rev.info.id,
                diff_summary(r.policy.document(), policy.document())
            ),
            None => format!("reverted to revision {}", rev.info.id),
        };
        let entry = self.entry(
            &intent,
            before,
            Some(rev.info.hash.clone()),
            "ok".into(),
            detail,
        );
        let result = (|| {
            self.generation = self.generation.wrapping_add(1);
            let tx = self.store.begin()?;
            tx.set_state(&State {
                running: Some(rev.info.id),
                pending: None,
            })?;
            self.audit.append(entry)?;
            tx.commit()?;
            Ok::<(), LifecycleError>(())
        })();
        if let Err(e) = result {
            return Err(self.undo_publish(e));
        }
        self.running = Some(Running {
            info: rev.info.clone(),
            policy,
            compiled,
        });
        Ok(Some(rev.info))
    }

    /// What-if: decides `flow` with the running revision (`None`) or any stored revision,
    /// staged ones included, using the same compiled table the data plane would run.
    pub fn decide(
        &self,
        revision: Option<i64>,
        flow: &FlowKey,
    ) -> Result<Explanation, LifecycleError> {
        match (revision, &self.running) {
            (None, Some(r)) => Ok(decide(&r.compiled, &r.info.hash, flow)),
            (None, None) => Err(LifecycleError::ConfirmState(
                "no policy is running (everything is dropped)".into(),
            )),
            (Some(id), Some(r)) if r.info.id == id => Ok(decide(&r.compiled, &r.info.hash, flow)),
            (Some(id), _) => {
                let rev = self.store.get(id)?;
                let compiled = compile(&rev.policy()?)?;
                Ok(decide(&compiled, &rev.info.hash, flow))
            }
        }
    }

    /// Staged evaluation: the flows whose decision under `revision` differs (action or mode)
    /// from the running revision's, with both explanations (running first).
    pub fn impact(
        &self,
        revision: i64,
        flows: &[FlowKey],
    ) -> Result<Vec<(Explanation, Explanation)>, LifecycleError> {
        let Some(r) = &self.running else {
            return Err(LifecycleError::ConfirmState(
                "no policy is running (everything is dropped)".into(),
            ));
        };
        // Compile the candidate once, not once per flow (previews may carry many flows).
        let (candidate, hash) = if r.info.id == revision {
            (Arc::clone(&r.compiled), r.info.hash.clone())
        } else {
            let rev = self.store.get(revision)?;
            (Arc::new(compile(&rev.policy()?)?), rev.info.hash)
        };
        let mut out = Vec::new();
        for f in flows {
            let now = decide(&r.compiled, &r.info.hash, f);
            let then = decide(&candidate, &hash, f);
            if (now.action, now.mode) != (then.action, then.mode) {
                out.push((now, then));
            }
        }
        Ok(out)
    }

    /// The difference between two stored revisions.
    pub fn diff(&self, from: i64, to: i64) -> Result<PolicyDiff, LifecycleError> {
        let a = self.store.get(from)?.policy()?;
        let b = self.store.get(to)?.policy()?;
        Ok(diff(a.document(), b.document()))
    }

    fn preflight(&self, intent: &Intent<'_>, publishes: bool) -> Result<(), LifecycleError> {
        if intent.actor.name.trim().is_empty() {
            return Err(LifecycleError::MissingField("author"));
        }
        if intent.reason.trim().is_empty() {
            return Err(LifecycleError::MissingField("reason"));
        }
        if publishes && self.store.state()?.pending.is_some() {
            return Err(LifecycleError::ConfirmState(
                "a commit awaits confirmation; confirm it or let it revert first".into(),
            ));
        }
        Ok(())
    }

    fn entry(
        &self,
        intent: &Intent<'_>,
        before: Option<String>,
        after: Option<String>,
        result: String,
        detail: String,
    ) -> AuditEntry {
        let name = self.running.as_ref().map_or("-", |r| r.policy.name());
        AuditEntry {
            actor: intent.actor.clone(),
            action: intent.action.into(),
            object: format!("policy/{name}"),
            before,
            after,
            reason: intent.reason.into(),
            result,
            detail,
        }
    }

    /// Records a refusal (best effort: the refusal stands even if the audit write fails) and
    /// returns the error.
    fn refused(
        &mut self,
        intent: &Intent<'_>,
        object: Option<String>,
        err: LifecycleError,
    ) -> LifecycleError {
        let before = self.running.as_ref().map(|r| r.info.hash.clone());
        let mut entry = self.entry(
            intent,
            before.clone(),
            before,
            format!("refused: {err}"),
            String::new(),
        );
        if let Some(o) = object {
            entry.object = o;
        }
        let _ = self.audit.append(entry);
        err
    }

    /// Publishes the previous table again after a later step failed.
    fn undo_publish(&self, err: LifecycleError) -> LifecycleError {
        match self
            .publisher
            .publish(self.running.as_ref().map(|r| &r.compiled))
        {
            Ok(()) => err,
            Err(e) => LifecycleError::Inconsistent(format!(
                "{err}; re-publishing the previous table also failed ({e}): the data plane runs the new table, the store and audit log do not"
            )),
        }
    }

    fn install(
        &mut self,
        intent: &Intent<'_>,
        policy: ValidatedPolicy,
        compiled: CompiledPolicy,
        kind: RevisionKind,
        confirm_within_ms: Option<i64>,
        source: Option<RevisionSource>,
    ) -> Result<RevisionInfo, LifecycleError> {
        let compiled = Arc::new(compiled);
        let publishes = kind != RevisionKind::Stage;
        if publishes && let Err(e) = self.publisher.publish(Some(&compiled)) {
            return Err(self.refused(intent, None, LifecycleError::Publish(e)));
        }
        // After the publish: the workers need the table, not the stored form.
        let content = policy.canonical_json();
        let before = self.running.as_ref().map(|r| r.info.hash.clone());
        let after = sha256_hex(&content);
        let detail = match &self.running {
            Some(r) => diff_summary(r.policy.document(), policy.document()),
            None => "initial policy".into(),
        };
        let now = self.clock.now_ms();
        let mut entry = self.entry(intent, before, Some(after), "ok".into(), detail);
        entry.object = format!("policy/{}", policy.name());
        let parent = self.running.as_ref().map(|r| r.info.id);
        let result = (|| {
            self.generation = self.generation.wrapping_add(1);
            let tx = self.store.begin()?;
            let info = tx.insert(&NewRevision {
                content,
                parent,
                author: intent.actor.to_string(),
                reason: intent.reason.to_owned(),
                created_ms: now,
                kind,
                source,
            })?;
            if publishes {
                let pending = match (confirm_within_ms, parent) {
                    (Some(ms), Some(revert_to)) => Some(PendingConfirm {
                        revision: info.id,
                        deadline_ms: now.saturating_add(ms),
                        revert_to,
                    }),
                    _ => None,
                };
                tx.set_state(&State {
                    running: Some(info.id),
                    pending,
                })?;
            }
            entry.detail = format!(
                "revision {} ({}): {}",
                info.id,
                kind_word(kind),
                entry.detail
            );
            self.audit.append(entry)?;
            tx.commit()?;
            Ok::<RevisionInfo, LifecycleError>(info)
        })();
        match result {
            Ok(info) => {
                if publishes {
                    self.running = Some(Running {
                        info: info.clone(),
                        policy,
                        compiled,
                    });
                }
                Ok(info)
            }
            Err(e) if publishes => Err(self.undo_publish(e)),
            Err(e) => Err(e),
        }
    }
}

fn kind_word(k: RevisionKind) -> &'static str {
    match k {
        RevisionKind::Commit => "commit",
        RevisionKind::Rollback => "rollback",
        RevisionKind::Stage => "staged",
    }
}

/// Parse, validate, compile and (with a management path) check a policy text.
pub fn check_policy(
    text: &str,
    format: Format,
    management: Option<&ManagementPath>,
) -> Result<(ValidatedPolicy, CompiledPolicy), LifecycleError> {
    check_input(PolicyInput::Text(text, format), management)
}

/// [`check_policy`] of a policy in either input form.
pub fn check_input(
    input: PolicyInput<'_>,
    management: Option<&ManagementPath>,
) -> Result<(ValidatedPolicy, CompiledPolicy), LifecycleError> {
    let policy = input.parse()?;
    let compiled = compile(&policy)?;
    if let Some(m) = management {
        m.check(&compiled).map_err(LifecycleError::ManagementPath)?;
    }
    Ok((policy, compiled))
}
