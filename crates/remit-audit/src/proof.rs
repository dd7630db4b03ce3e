//! Inclusion proofs: that one record is entry `seq` of a replica's tree whose head a
//! signed checkpoint asserts. A proof is self-contained JSON; checking it needs only the
//! replica's public key (or, to check inclusion alone, nothing at all).

use serde::{Deserialize, Serialize};

use crate::checkpoint::{KeyError, PublicKey, SignedCheckpoint};
use crate::hash::Hash;
use crate::merkle::{inclusion_path, leaf_hash, verify_inclusion};
use crate::verify::EntryHead;

/// The proof format's version.
pub const PROOF_VERSION: u32 = 1;

/// A self-contained inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Format version.
    pub v: u32,
    /// The entry's position.
    pub seq: u64,
    /// The entry, exactly the bytes that were hashed (canonical JSON).
    pub entry: String,
    /// The audit path, leaf first (RFC 9162 §2.1.3.1).
    pub path: Vec<Hash>,
    /// The signed checkpoint whose tree contains the entry.
    pub checkpoint: SignedCheckpoint,
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof's version is not understood.
    #[error("proof version {0} is not supported")]
    Version(u32),
    /// The entry is not a readable entry.
    #[error("the entry is not readable: {0}")]
    Entry(String),
    /// The entry's position or replica disagrees with the proof.
    #[error(
        "the entry says it is record {entry_seq} of `{entry_replica}`, the proof says record {seq} of `{replica}`"
    )]
    Mismatch {
        /// The entry's own position.
        entry_seq: u64,
        /// The entry's replica.
        entry_replica: String,
        /// The proof's position.
        seq: u64,
        /// The checkpoint's replica.
        replica: String,
    },
    /// The audit path does not lead to the checkpoint's root.
    #[error("the audit path does not lead from the entry to the checkpoint's root")]
    Path,
    /// The checkpoint's signature does not hold.
    #[error("the checkpoint: {0}")]
    Checkpoint(#[from] KeyError),
    /// The entry is not inside the checkpoint's tree.
    #[error("record {seq} is not inside a tree of {tree_size} records")]
    Outside {
        /// The entry's position.
        seq: u64,
        /// The tree's size.
        tree_size: u64,
    },
}

impl InclusionProof {
    /// Builds the proof that `entry` (entry `seq`) is in the tree of `leaves` (exactly
    /// the leaves the checkpoint covers).
    pub fn build(
        leaves: &[Hash],
        seq: u64,
        entry: String,
        checkpoint: SignedCheckpoint,
    ) -> Result<Self, ProofError> {
        let outside = ProofError::Outside {
            seq,
            tree_size: checkpoint.checkpoint.tree_size,
        };
        if leaves.len() as u64 != checkpoint.checkpoint.tree_size {
            return Err(outside);
        }
        let index = usize::try_from(seq).map_err(|_| outside.clone())?;
        let path = inclusion_path(leaves, index).ok_or(outside)?;
        Ok(Self {
            v: PROOF_VERSION,
            seq,
            entry,
            path,
            checkpoint,
        })
    }

    /// Checks that the entry is in the checkpoint's tree, without checking the
    /// checkpoint's signature. Returns the entry's leaf hash.
    pub fn verify_inclusion(&self) -> Result<Hash, ProofError> {
        if self.v != PROOF_VERSION {
            return Err(ProofError::Version(self.v));
        }
        let cp = &self.checkpoint.checkpoint;
        let head: EntryHead<'_> =
            serde_json::from_str(&self.entry).map_err(|e| ProofError::Entry(e.to_string()))?;
        if head.seq != self.seq || head.replica != cp.replica {
            return Err(ProofError::Mismatch {
                entry_seq: head.seq,
                entry_replica: head.replica.into_owned(),
                seq: self.seq,
                replica: cp.replica.clone(),
            });
        }
        if self.seq >= cp.tree_size {
            return Err(ProofError::Outside {
                seq: self.seq,
                tree_size: cp.tree_size,
            });
        }
        let leaf = leaf_hash(self.entry.as_bytes());
        if !verify_inclusion(&leaf, self.seq, cp.tree_size, &self.path, &cp.root) {
            return Err(ProofError::Path);
        }
        Ok(leaf)
    }

    /// Checks inclusion and the checkpoint's signature against `keys`.
    pub fn verify(&self, keys: &[PublicKey]) -> Result<Hash, ProofError> {
        let leaf = self.verify_inclusion()?;
        self.checkpoint.verify(keys)?;
        Ok(leaf)
    }
}
