//! One replica's chain: entries that each commit to the one before, appended to the
//! replica's Merkle tree.

use crate::hash::Hash;
use crate::merkle::{Frontier, leaf_hash};
use crate::{CanonicalError, canonical};

/// One entry, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the replica's chain, from 0.
    pub seq: u64,
    /// The canonical JSON bytes that are hashed and stored.
    pub bytes: Vec<u8>,
    /// `SHA-256(0x00 || bytes)`: its leaf hash, which the next entry names as `prev`.
    pub leaf: Hash,
}

/// A replica's chain state: the next position, the last entry's hash and the Merkle
/// frontier. Only the replica's one writer holds it.
#[derive(Debug, Clone)]
pub struct Chain {
    replica: String,
    replica_json: Vec<u8>,
    prev: Hash,
    frontier: Frontier,
}

impl Chain {
    /// A new, empty chain for `replica`.
    pub fn new(replica: &str) -> Result<Self, CanonicalError> {
        Self::resume(replica, Hash::ZERO, Frontier::new())
    }

    /// Resumes a chain from its stored state: the last entry's hash and the frontier
    /// (whose size is the next position).
    pub fn resume(replica: &str, prev: Hash, frontier: Frontier) -> Result<Self, CanonicalError> {
        Ok(Self {
            replica: replica.to_owned(),
            replica_json: canonical(&replica)?,
            prev,
            frontier,
        })
    }

    /// The replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// How many entries the chain holds.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The last entry's hash ([`Hash::ZERO`] when empty).
    pub fn prev(&self) -> Hash {
        self.prev
    }

    /// The Merkle frontier.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// The tree head over every entry so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends a record given as canonical JSON (an object). The entry is built by
    /// concatenation, which is canonical because the entry's keys are already in order
    /// (`prev` < `record` < `replica` < `seq`) and `record` is canonical itself.
    pub fn append(&mut self, record_canonical: &[u8]) -> Entry {
        let seq = self.frontier.size();
        let mut bytes = Vec::with_capacity(record_canonical.len() + self.replica_json.len() + 120);
        bytes.extend_from_slice(b"{\"prev\":\"");
        bytes.extend_from_slice(self.prev.to_hex().as_bytes());
        bytes.extend_from_slice(b"\",\"record\":");
        bytes.extend_from_slice(record_canonical);
        bytes.extend_from_slice(b",\"replica\":");
        bytes.extend_from_slice(&self.replica_json);
        bytes.extend_from_slice(b",\"seq\":");
        bytes.extend_from_slice(seq.to_string().as_bytes());
        bytes.push(b'}');
        let leaf = leaf_hash(&bytes);
        self.frontier.push(leaf);
        self.prev = leaf;
        Entry { seq, bytes, leaf }
    }
}
