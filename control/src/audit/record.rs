//! Audit records and checkpoints: their fields, their one canonical encoding, their hashes and
//! signatures.
//!
//! Encoding: one JSON object per line (`serde_json`, fields in declaration order, no spaces),
//! terminated by `\n`. A line is valid only if re-serialising the parsed record reproduces the
//! line byte for byte, so there is exactly one encoding per record and any changed byte is either
//! a parse error, a non-canonical line or a different value (caught by the hash).
//!
//! `hash = sha256("septa-audit-record-v1\0" || canonical JSON of the record with hash = "")`,
//! hex, lowercase; `prev_hash` is the previous record's hash (64 zeros for the genesis record).
//! A checkpoint signs `"septa-audit-checkpoint-v1\0" || seq (u64 BE) || ts_ms (i64 BE) || hash`
//! with ed25519.
//!
//! Never: accept uppercase hex or any other alternative spelling (that would allow a flipped bit
//! to go unnoticed).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the genesis record.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `action` of the genesis record.
pub const GENESIS_ACTION: &str = "audit.genesis";

/// Who did it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AuditActor)]
pub struct Actor {
    /// `user`, `token` or `system`.
    pub kind: ActorKind,
    /// User name, token id, or the subsystem's name.
    pub name: String,
}

impl Actor {
    /// A signed-in user.
    pub fn user(name: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::User,
            name: name.into(),
        }
    }
    /// An API token (by id, never the secret).
    pub fn token(id: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::Token,
            name: id.into(),
        }
    }
    /// Septa itself (e.g. a commit-confirm revert).
    pub fn system(name: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::System,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            ActorKind::User => "user",
            ActorKind::Token => "token",
            ActorKind::System => "system",
        };
        write!(f, "{k}:{}", self.name)
    }
}

/// Kinds of actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = AuditActorKind)]
pub enum ActorKind {
    /// A person signed in to the console or API.
    User,
    /// An API token.
    Token,
    /// Septa itself.
    System,
}

/// What a caller asks to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who.
    pub actor: Actor,
    /// What kind of operation, e.g. `policy.commit`, `policy.rollback`, `access.decide`.
    pub action: String,
    /// What it was applied to, e.g. `policy/demo-hospital`.
    pub object: String,
    /// Revision hash before, if any.
    pub before: Option<String>,
    /// Revision hash after, if any.
    pub after: Option<String>,
    /// Why (mandatory for mutations).
    pub reason: String,
    /// `ok`, or `refused: ...` / `failed: ...`.
    pub result: String,
    /// What changed, human-readable (a diff summary), or other detail.
    pub detail: String,
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AuditRecord)]
pub struct Record {
    /// 0 for genesis, then +1 per record, across segments.
    pub seq: u64,
    /// Unix milliseconds when it was written.
    pub ts_ms: i64,
    /// Who.
    pub actor: Actor,
    /// What kind of operation.
    pub action: String,
    /// On what.
    pub object: String,
    /// Revision hash before.
    pub before: Option<String>,
    /// Revision hash after.
    pub after: Option<String>,
    /// Why.
    pub reason: String,
    /// Outcome.
    pub result: String,
    /// What changed.
    pub detail: String,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// Hash of this record (see the module docs).
    pub hash: String,
}

impl Record {
    /// Builds the record for `entry` at `seq` after `prev_hash`, with its hash filled in.
    pub fn new(seq: u64, ts_ms: i64, entry: AuditEntry, prev_hash: String) -> Self {
        let mut r = Record {
            seq,
            ts_ms,
            actor: entry.actor,
            action: entry.action,
            object: entry.object,
            before: entry.before,
            after: entry.after,
            reason: entry.reason,
            result: entry.result,
            detail: entry.detail,
            prev_hash,
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        r
    }

    /// The hash the record should carry.
    pub fn compute_hash(&self) -> String {
        let body = Record {
            hash: String::new(),
            ..self.clone()
        };
        let mut h = Sha256::new();
        h.update(b"septa-audit-record-v1\0");
        h.update(canonical(&body));
        hex(&h.finalize())
    }

    /// The canonical line, with its trailing newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = canonical(self);
        v.push(b'\n');
        v
    }
}

/// A signed statement "the log up to `seq` has head `hash`".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AuditCheckpoint)]
pub struct Checkpoint {
    /// Sequence number of the covered head record.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Unix milliseconds when signed.
    pub ts_ms: i64,
    /// ed25519 signature, hex.
    pub sig: String,
}

impl Checkpoint {
    fn message(seq: u64, ts_ms: i64, hash: &str) -> Vec<u8> {
        let mut m = b"septa-audit-checkpoint-v1\0".to_vec();
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&ts_ms.to_be_bytes());
        m.extend_from_slice(hash.as_bytes());
        m
    }

    /// Signs a checkpoint for the head (`seq`, `hash`).
    pub fn sign(key: &SigningKey, seq: u64, ts_ms: i64, hash: String) -> Self {
        let sig = key.sign(&Self::message(seq, ts_ms, &hash));
        Checkpoint {
            seq,
            hash,
            ts_ms,
            sig: hex(&sig.to_bytes()),
        }
    }

    /// True when the signature is valid under `key` (strict verification).
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Some(bytes) = unhex::<64>(&self.sig) else {
            return false;
        };
        let sig = Signature::from_bytes(&bytes);
        key.verify_strict(&Self::message(self.seq, self.ts_ms, &self.hash), &sig)
            .is_ok()
    }

    /// The canonical line, with its trailing newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = canonical(self);
        v.push(b'\n');
        v
    }
}

fn canonical<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs to a Vec cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Strict lowercase-hex decoding of exactly `N` bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(b[2 * i])? << 4 | nib(b[2 * i + 1])?;
    }
    Some(out)
}

/// sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            actor: Actor::user("alice"),
            action: "policy.commit".into(),
            object: "policy/demo".into(),
            before: None,
            after: Some("ab".repeat(32)),
            reason: "initial \"policy\"\n".into(),
            result: "ok".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn record_line_vector() {
        let r = Record::new(1, 1_700_000_000_000, entry(), ZERO_HASH.into());
        let line = String::from_utf8(r.to_line()).unwrap();
        let expected_prefix = r#"{"seq":1,"ts_ms":1700000000000,"actor":{"kind":"user","name":"alice"},"action":"policy.commit","object":"policy/demo","before":null,"after":"abab"#;
        assert!(line.starts_with(expected_prefix), "{line}");
        assert!(
            line.contains(r#""reason":"initial \"policy\"\n""#),
            "{line}"
        );
        assert!(line.ends_with(&format!("\"hash\":\"{}\"}}\n", r.hash)));
        let back: Record = serde_json::from_str(line.trim_end_matches('\n')).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.compute_hash(), r.hash);
    }

    #[test]
    fn hash_covers_every_field() {
        let r = Record::new(1, 5, entry(), ZERO_HASH.into());
        let variants = [
            Record {
                seq: 2,
                ..r.clone()
            },
            Record {
                ts_ms: 6,
                ..r.clone()
            },
            Record {
                actor: Actor::token("alice"),
                ..r.clone()
            },
            Record {
                action: "x".into(),
                ..r.clone()
            },
            Record {
                object: "x".into(),
                ..r.clone()
            },
            Record {
                before: Some(String::new()),
                ..r.clone()
            },
            Record {
                after: None,
                ..r.clone()
            },
            Record {
                reason: "x".into(),
                ..r.clone()
            },
            Record {
                result: "x".into(),
                ..r.clone()
            },
            Record {
                detail: "x".into(),
                ..r.clone()
            },
            Record {
                prev_hash: "1".repeat(64),
                ..r.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.compute_hash(), r.hash, "{v:?}");
        }
    }

    #[test]
    fn hex_is_strict() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(unhex::<3>("00abff"), Some([0x00, 0xab, 0xff]));
        assert_eq!(unhex::<3>("00ABff"), None);
        assert_eq!(unhex::<3>("00abf"), None);
        assert_eq!(unhex::<3>("00abfg"), None);
    }

    #[test]
    fn checkpoint_signature_round_trip() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let c = Checkpoint::sign(&key, 9, 100, "cd".repeat(32));
        assert!(c.verify(&key.verifying_key()));
        assert!(
            !Checkpoint {
                seq: 10,
                ..c.clone()
            }
            .verify(&key.verifying_key())
        );
        assert!(
            !Checkpoint {
                ts_ms: 101,
                ..c.clone()
            }
            .verify(&key.verifying_key())
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(!c.verify(&other.verifying_key()));
    }
}
