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

pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod hash;
pub mod merkle;
pub mod proof;
pub mod verify;

pub use canonical::{CanonicalError, canonical};
pub use chain::{Chain, Entry};
pub use checkpoint::{AuditKey, Checkpoint, KeyError, PublicKey, SignedCheckpoint};
pub use hash::Hash;
pub use merkle::Frontier;
pub use proof::{InclusionProof, ProofError};
pub use verify::{Summary, Tamper, Verifier};
