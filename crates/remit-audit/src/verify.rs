//! Replaying a replica's log against its signed checkpoints, using only public keys.
//!
//! The verifier is fed entries in stored order. It recomputes every hash itself (a stored
//! leaf hash is only a hint that lets it name an edited record exactly) and reports the
//! first thing that is wrong, naming the record by position and id.

use std::borrow::Cow;

use serde::Deserialize;

use crate::checkpoint::{KeyError, PublicKey, SignedCheckpoint};
use crate::hash::Hash;
use crate::merkle::{Frontier, empty_root, leaf_hash};

/// The head of an entry: what the verifier reads besides the hash.
#[derive(Debug, Deserialize)]
pub(crate) struct EntryHead<'a> {
    pub prev: Hash,
    pub seq: u64,
    #[serde(borrow)]
    pub replica: Cow<'a, str>,
}

/// What a tampered (or damaged) log looks like, naming the first bad record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    /// An entry's bytes do not hash to the hash stored beside it.
    #[error("record {seq} (`{id}`) was changed: its content does not match its stored hash")]
    ContentChanged {
        /// Its position.
        seq: u64,
        /// Its record id.
        id: String,
    },
    /// An entry is not a readable entry.
    #[error("record {seq} (`{id}`) is not a readable entry: {message}")]
    Unreadable {
        /// Its stored position.
        seq: u64,
        /// Its record id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// An entry belongs to another replica's chain.
    #[error("record {seq} (`{id}`) belongs to replica `{found}`, not `{replica}`")]
    WrongReplica {
        /// Its position.
        seq: u64,
        /// Its record id.
        id: String,
        /// The replica it names.
        found: String,
        /// The replica being verified.
        replica: String,
    },
    /// The next stored entry is not the next position: something before it was removed
    /// or entries were reordered.
    #[error(
        "record {expected} is missing: the next stored record is {found} (`{id}`); records were removed or reordered"
    )]
    Missing {
        /// The position that should have come next.
        expected: u64,
        /// The position found instead.
        found: u64,
        /// The found record's id.
        id: String,
    },
    /// An entry for a position already seen: inserted, duplicated or reordered.
    #[error(
        "record {found} (`{id}`) appears again after record {after}; records were inserted or reordered"
    )]
    Repeated {
        /// The position it claims.
        found: u64,
        /// Its record id.
        id: String,
        /// The last position verified.
        after: u64,
    },
    /// An entry does not commit to the entry before it: that one was changed (or
    /// replaced).
    #[error(
        "record {seq} (`{id}`) was changed or replaced: record {next} commits to a different hash"
    )]
    ChainBroken {
        /// The position of the changed record.
        seq: u64,
        /// Its record id.
        id: String,
        /// The position whose `prev` disagrees.
        next: u64,
    },
    /// The first entry does not start a chain.
    #[error("record 0 (`{id}`) does not start a chain (its `prev` is not all zeros)")]
    BadGenesis {
        /// Its record id.
        id: String,
    },
    /// The records under a checkpoint do not hash to its root.
    #[error(
        "the checkpoint at tree size {tree_size} does not match records {from}..={to}: one of them was changed, inserted or removed"
    )]
    CheckpointMismatch {
        /// The checkpoint's tree size.
        tree_size: u64,
        /// The first record after the previous checkpoint.
        from: u64,
        /// The last record the checkpoint covers.
        to: u64,
    },
    /// A checkpoint's signature is bad or by an untrusted key.
    #[error("the checkpoint at tree size {tree_size}: {error}")]
    Checkpoint {
        /// The checkpoint's tree size.
        tree_size: u64,
        /// What is wrong.
        error: KeyError,
    },
    /// A checkpoint for another replica was supplied.
    #[error("the checkpoint at tree size {tree_size} is for replica `{found}`, not `{replica}`")]
    CheckpointReplica {
        /// The checkpoint's tree size.
        tree_size: u64,
        /// The replica it names.
        found: String,
        /// The replica being verified.
        replica: String,
    },
    /// Checkpoints cover more records than are stored: the log was truncated.
    #[error(
        "the log ends after {have} records but a signed checkpoint covers {tree_size}: records {have}..{tree_size} were removed"
    )]
    Truncated {
        /// How many records are stored.
        have: u64,
        /// How many the checkpoint covers.
        tree_size: u64,
    },
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The replica.
    pub replica: String,
    /// Entries verified.
    pub entries: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// The tree head over every entry.
    pub root: Hash,
    /// Entries after the last checkpoint: chained, but not yet under a signature.
    pub unanchored: u64,
}

/// Replays one replica's entries against its checkpoints.
#[derive(Debug)]
pub struct Verifier {
    replica: String,
    checkpoints: Vec<SignedCheckpoint>,
    next_checkpoint: usize,
    anchored: u64,
    prev: Hash,
    frontier: Frontier,
    last_id: String,
}

impl Verifier {
    /// Starts verifying `replica`, checking every checkpoint's signature against `keys`
    /// first. Checkpoints may come in any order.
    pub fn new(
        replica: &str,
        keys: &[PublicKey],
        mut checkpoints: Vec<SignedCheckpoint>,
    ) -> Result<Self, Tamper> {
        checkpoints.sort_by_key(|c| c.checkpoint.tree_size);
        for c in &checkpoints {
            let tree_size = c.checkpoint.tree_size;
            if c.checkpoint.replica != replica {
                return Err(Tamper::CheckpointReplica {
                    tree_size,
                    found: c.checkpoint.replica.clone(),
                    replica: replica.to_owned(),
                });
            }
            c.verify(keys)
                .map_err(|error| Tamper::Checkpoint { tree_size, error })?;
            if tree_size == 0 && c.checkpoint.root != empty_root() {
                return Err(Tamper::CheckpointMismatch {
                    tree_size,
                    from: 0,
                    to: 0,
                });
            }
        }
        let next_checkpoint = checkpoints
            .iter()
            .take_while(|c| c.checkpoint.tree_size == 0)
            .count();
        Ok(Self {
            replica: replica.to_owned(),
            checkpoints,
            next_checkpoint,
            anchored: 0,
            prev: Hash::ZERO,
            frontier: Frontier::new(),
            last_id: String::new(),
        })
    }

    /// How many entries have been verified.
    pub fn entries(&self) -> u64 {
        self.frontier.size()
    }

    /// Verifies the next stored entry. `stored_seq` and `id` are the store's columns (used
    /// only to name the record); `stored_leaf` is the hash stored beside it, if any.
    pub fn entry(
        &mut self,
        stored_seq: u64,
        id: &str,
        bytes: &[u8],
        stored_leaf: Option<Hash>,
    ) -> Result<(), Tamper> {
        let leaf = leaf_hash(bytes);
        if stored_leaf.is_some_and(|s| s != leaf) {
            return Err(Tamper::ContentChanged {
                seq: stored_seq,
                id: id.to_owned(),
            });
        }
        let head: EntryHead<'_> =
            serde_json::from_slice(bytes).map_err(|e| Tamper::Unreadable {
                seq: stored_seq,
                id: id.to_owned(),
                message: e.to_string(),
            })?;
        if head.replica != self.replica {
            return Err(Tamper::WrongReplica {
                seq: head.seq,
                id: id.to_owned(),
                found: head.replica.into_owned(),
                replica: self.replica.clone(),
            });
        }
        let expected = self.frontier.size();
        if head.seq > expected {
            return Err(Tamper::Missing {
                expected,
                found: head.seq,
                id: id.to_owned(),
            });
        }
        if head.seq < expected {
            return Err(Tamper::Repeated {
                found: head.seq,
                id: id.to_owned(),
                after: expected - 1,
            });
        }
        if head.prev != self.prev {
            return Err(if expected == 0 {
                Tamper::BadGenesis { id: id.to_owned() }
            } else {
                Tamper::ChainBroken {
                    seq: expected - 1,
                    id: self.last_id.clone(),
                    next: expected,
                }
            });
        }
        self.frontier.push(leaf);
        self.prev = leaf;
        id.clone_into(&mut self.last_id);
        let size = self.frontier.size();
        while let Some(c) = self.checkpoints.get(self.next_checkpoint) {
            if c.checkpoint.tree_size != size {
                break;
            }
            if c.checkpoint.root != self.frontier.root() {
                return Err(Tamper::CheckpointMismatch {
                    tree_size: size,
                    from: self.anchored,
                    to: size - 1,
                });
            }
            self.next_checkpoint += 1;
            self.anchored = size;
        }
        Ok(())
    }

    /// Ends verification: every checkpoint must have been reached.
    pub fn finish(self) -> Result<Summary, Tamper> {
        let have = self.frontier.size();
        if let Some(c) = self.checkpoints.get(self.next_checkpoint) {
            return Err(Tamper::Truncated {
                have,
                tree_size: c.checkpoint.tree_size,
            });
        }
        Ok(Summary {
            replica: self.replica,
            entries: have,
            checkpoints: self.checkpoints.len() as u64,
            root: self.frontier.root(),
            unanchored: have - self.anchored,
        })
    }
}
