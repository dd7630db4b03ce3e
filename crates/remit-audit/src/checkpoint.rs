//! Signed checkpoints: a replica's tree size and root hash at a moment, signed with the
//! replica's Ed25519 key (RFC 8032), and the key files.
//!
//! The signed bytes are `remit-audit-checkpoint-v1\n` followed by the checkpoint's
//! canonical JSON (RFC 8785), so a signature can never be replayed as anything else.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::hash::Hash;

/// The domain-separation prefix of signed checkpoint bytes.
pub const SIGNING_CONTEXT: &[u8] = b"remit-audit-checkpoint-v1\n";
/// The checkpoint format's version.
pub const CHECKPOINT_VERSION: u32 = 1;

/// What a checkpoint asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version.
    pub v: u32,
    /// The replica whose tree this is.
    pub replica: String,
    /// How many entries the tree holds.
    pub tree_size: u64,
    /// The RFC 9162 tree head over those entries.
    pub root: Hash,
    /// When it was signed (RFC 3339).
    pub time: String,
    /// Which key signed it ([`PublicKey::key_id`]).
    pub key_id: String,
}

impl Checkpoint {
    /// The bytes that are signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = SIGNING_CONTEXT.to_vec();
        // A struct of strings and integers always has a canonical form.
        out.extend(canonical(self).unwrap_or_default());
        out
    }
}

/// A checkpoint and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// What is asserted.
    pub checkpoint: Checkpoint,
    /// Ed25519 signature over [`Checkpoint::signing_bytes`], hex.
    pub signature: String,
}

impl SignedCheckpoint {
    /// Checks the signature against `keys`, choosing the key by `key_id`.
    pub fn verify(&self, keys: &[PublicKey]) -> Result<(), KeyError> {
        let key = keys
            .iter()
            .find(|k| k.key_id() == self.checkpoint.key_id)
            .ok_or_else(|| KeyError::Untrusted(self.checkpoint.key_id.clone()))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig).map_err(|_| KeyError::BadSignature)?;
        key.0
            .verify(
                &self.checkpoint.signing_bytes(),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| KeyError::BadSignature)
    }
}

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A key file that is not 64 hex digits.
    #[error("not an Ed25519 key (expected 64 hex digits): {0}")]
    Malformed(String),
    /// A signature that does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// A signature by a key that is not trusted.
    #[error("signed by key `{0}`, which is not among the trusted public keys")]
    Untrusted(String),
}

fn parse_32(text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| KeyError::Malformed(format!("{} characters", text.len())))?;
    Ok(out)
}

/// A replica's signing key. Its `Debug` never shows the secret.
pub struct AuditKey(SigningKey);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.public().key_id())
    }
}

impl AuditKey {
    /// A key from a 32-byte seed (callers take the seed from the operating system's RNG).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// Parses a key file: the seed as 64 hex digits.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        Ok(Self::from_seed(parse_32(text)?))
    }

    /// The key file's text.
    pub fn to_file_text(&self) -> String {
        format!("{}\n", hex::encode(self.0.to_bytes()))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs a checkpoint.
    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        let sig = self.0.sign(&checkpoint.signing_bytes());
        SignedCheckpoint {
            checkpoint,
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

/// A public key that verifies checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses a public key file: 64 hex digits.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(&parse_32(text)?)
            .map(Self)
            .map_err(|_| KeyError::Malformed("not a point on Ed25519".into()))
    }

    /// The public key file's text.
    pub fn to_file_text(&self) -> String {
        format!("{}\n", hex::encode(self.0.to_bytes()))
    }

    /// The first 16 hex digits of SHA-256 of the key: how checkpoints name it.
    pub fn key_id(&self) -> String {
        Hash::of(self.0.as_bytes()).to_hex()[..16].to_owned()
    }
}
