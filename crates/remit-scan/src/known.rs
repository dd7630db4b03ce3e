//! Known secrets: SHA-256 digests of credentials remit knows (its own API keys are stored
//! only as digests), so a finding that is one of them names the exposed credential.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::Findings;

/// The most digests a set holds.
pub const MAX_KNOWN_SECRETS: usize = 1_000_000;

/// A set of known credentials, by the SHA-256 of the secret.
#[derive(Debug, Clone, Default)]
pub struct KnownSecrets {
    by_digest: HashMap<[u8; 32], Arc<str>>,
}

impl KnownSecrets {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a credential by the SHA-256 of its secret. Returns `false` (and registers
    /// nothing) when the set is full.
    pub fn insert(&mut self, sha256: [u8; 32], credential_id: &str) -> bool {
        if self.by_digest.len() >= MAX_KNOWN_SECRETS && !self.by_digest.contains_key(&sha256) {
            return false;
        }
        self.by_digest.insert(sha256, Arc::from(credential_id));
        true
    }

    /// Registers a credential by the hex SHA-256 of its secret (as in `remit.toml`).
    /// Returns `false` if the hex is not 64 hex digits or the set is full.
    pub fn insert_hex(&mut self, sha256_hex: &str, credential_id: &str) -> bool {
        let mut d = [0u8; 32];
        hex::decode_to_slice(sha256_hex, &mut d).is_ok() && self.insert(d, credential_id)
    }

    /// How many credentials are registered.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The credential a candidate token is, if any.
    pub fn check(&self, candidate: &[u8]) -> Option<&Arc<str>> {
        self.by_digest
            .get(&<[u8; 32]>::from(Sha256::digest(candidate)))
    }

    /// Marks the findings that are known credentials (sets [`crate::Finding::credential`]).
    /// Returns how many are.
    pub fn mark(&self, findings: &mut Findings) -> usize {
        let mut n = 0;
        for f in &mut findings.items {
            if let Some(id) = self.by_digest.get(&f.digest) {
                f.credential = Some(id.clone());
                n += 1;
            }
        }
        n
    }
}
