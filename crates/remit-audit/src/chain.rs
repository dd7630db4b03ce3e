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
        let mut bytes = Vec::with_capacity(record_canonical.len() + self.replica_json.len() + 120);
        let (seq, leaf) = self.append_to(record_canonical, &mut bytes);
        Entry { seq, bytes, leaf }
    }

    /// Appends like [`Chain::append`], writing the entry's bytes at the end of `out` (a
    /// writer's batch) rather than into a buffer of its own: its position and leaf hash.
    pub fn append_to(&mut self, record_canonical: &[u8], out: &mut Vec<u8>) -> (u64, Hash) {
        let seq = self.frontier.size();
        let start = out.len();
        let mut prev = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(self.prev.0, &mut prev);
        out.reserve(record_canonical.len() + self.replica_json.len() + 120);
        out.extend_from_slice(b"{\"prev\":\"");
        out.extend_from_slice(&prev);
        out.extend_from_slice(b"\",\"record\":");
        out.extend_from_slice(record_canonical);
        out.extend_from_slice(b",\"replica\":");
        out.extend_from_slice(&self.replica_json);
        out.extend_from_slice(b",\"seq\":");
        let mut digits = [0u8; 20];
        out.extend_from_slice(decimal(seq, &mut digits));
        out.push(b'}');
        let leaf = leaf_hash(&out[start..]);
        self.frontier.push(leaf);
        self.prev = leaf;
        (seq, leaf)
    }
}

/// `n` in decimal, written at the end of `buf` (20 digits hold any `u64`).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        // A digit, 0..=9.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_to_writes_the_same_entry_as_append() {
        let mut a = Chain::new("replica-1").unwrap();
        let mut b = a.clone();
        let mut out = b"before".to_vec();
        for (i, record) in [&b"{}"[..], br#"{"k":"v"}"#]
            .iter()
            .cycle()
            .take(13)
            .enumerate()
        {
            let entry = a.append(record);
            let start = out.len();
            let (seq, leaf) = b.append_to(record, &mut out);
            assert_eq!((seq, leaf), (entry.seq, entry.leaf));
            assert_eq!(&out[start..], entry.bytes.as_slice());
            assert!(entry.bytes.ends_with(format!(",\"seq\":{i}}}").as_bytes()));
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(
            decimal(u64::MAX, &mut [0; 20]),
            u64::MAX.to_string().as_bytes()
        );
        assert_eq!(decimal(0, &mut [0; 20]), b"0");
    }
}
