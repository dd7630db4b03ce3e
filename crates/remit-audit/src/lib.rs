//! The tamper-evident audit log, as pure functions and state machines (no IO).
//!
//! Every audit record (a decision, a response outcome, later approvals and alerts) is
//! serialised as canonical JSON (RFC 8785) and wrapped in an **entry** that commits to the
//! entry before it:
//!
//! ```text
//! {"prev":"<hex hash of the previous entry>","record":{…},"replica":"<replica>","seq":<n>}
//! ```
//!
//! The entry's hash is the RFC 9162 leaf hash `SHA-256(0x00 || entry bytes)`, so one hash
//! serves both the per-replica **chain** (each entry names its predecessor's hash) and the
//! replica's **Merkle tree** (RFC 9162 §2.1). Every N entries or T seconds the writer signs a
//! **checkpoint** (replica, tree size, root hash, time) with the replica's Ed25519 key.
//! [`verify::Verifier`] replays a replica's entries against its checkpoints using only
//! public keys; [`proof::InclusionProof`] proves one record is in a signed tree.
//!
//! The byte-level format is documented in `docs/audit-format.md` so that third parties can
//! check a log without remit (`tools/verify_audit.py` does so with Python's standard
//! library only).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod checkpoint;
pub mod hash;
pub mod merkle;
pub mod proof;
pub mod verify;

pub use chain::{Chain, Entry};
pub use checkpoint::{AuditKey, Checkpoint, KeyError, PublicKey, SignedCheckpoint};
pub use hash::Hash;
pub use merkle::Frontier;
pub use proof::{InclusionProof, ProofError};
pub use verify::{Summary, Tamper, Verifier};

/// Serialises a value as RFC 8785 canonical JSON.
///
/// Written here over `serde_json::Value` rather than calling a JCS crate for speed: the
/// crate we compared against costs ~13 µs per decision record, this ~4 µs, and records
/// are serialised on every request. Strings are escaped by `serde_json`, whose escaping
/// is exactly RFC 8785 §3.2.2.2 (the two-character escapes, `\u00xx` in lower case for
/// other controls, everything else as is); object members are sorted by their UTF-16
/// code units (§3.2.3); integers up to 2^53 are written as integers; any other number is written by
/// `serde_json_canonicalizer` (ECMAScript formatting, §3.2.2.3). The test suite checks
/// the whole against that crate on arbitrary values.
pub fn canonical<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value = serde_json::to_value(value).map_err(|e| CanonicalError(e.to_string()))?;
    let mut out = Vec::with_capacity(1024);
    write_canonical(&value, &mut out)?;
    Ok(out)
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    use serde_json::Value;
    let err = |e: serde_json::Error| CanonicalError(e.to_string());
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Integers a double holds exactly; larger ones are doubles in RFC 8785 (§3.2.2.3).
        Value::Number(n) if n.as_i64().is_some_and(|i| i.unsigned_abs() <= 1 << 53) => {
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::Number(n) => out.extend(serde_json_canonicalizer::to_vec(n).map_err(err)?),
        Value::String(s) => serde_json::to_writer(&mut *out, s).map_err(err)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            if members.iter().all(|(k, _)| k.is_ascii()) {
                members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            } else {
                members.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            }
            out.push(b'{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).map_err(err)?;
                out.push(b':');
                write_canonical(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A value that cannot be written as canonical JSON (a non-finite number, a map with
/// non-string keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write canonical JSON: {0}")]
pub struct CanonicalError(pub String);
