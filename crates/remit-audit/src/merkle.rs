//! RFC 9162 Merkle trees: leaf and node hashes (§2.1.1), the tree head of a list of leaves,
//! an incremental [`Frontier`] for an append-only log, and inclusion proofs (§2.1.3).
//!
//! Written here rather than taken from a crate because the few Rust Merkle crates either
//! hash differently from RFC 9162 (no 0x00/0x01 domain separation, or duplicated last
//! nodes) or bring a storage layer; the algorithms below are the RFC's, a few dozen lines.

use crate::hash::Hash;

/// `SHA-256(0x00 || entry)`: the hash of one leaf.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    Hash::of_parts(&[&[0x00], entry])
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(&[&[0x01], &left.0, &right.0])
}

/// The hash of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Hash::of(&[])
}

/// The largest power of two strictly less than `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree head of `leaves` (RFC 9162 §2.1.1).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1), or
/// `None` if `index` is outside the tree.
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut m) = (0usize, leaves.len(), index);
    // Walk down from the root, collecting the sibling subtree at each level; the RFC
    // lists them leaf first, so reverse at the end.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < k {
            path.push(root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(root(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
        }
    }
    path.reverse();
    Some(path)
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` is leaf `index` of the tree
/// of `size` leaves whose head is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// The right edge of an append-only tree: the roots of its perfect subtrees, largest
/// first, one per set bit of the size. Appending is O(log n) hashes amortised O(1); the
/// head is O(log n). At most 64 hashes, whatever the size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

/// A stored frontier whose hashes do not match its size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a frontier of size {size} has {got} subtree hashes, not {want}")]
pub struct BadFrontier {
    /// The size it claimed.
    pub size: u64,
    /// How many hashes it had.
    pub got: usize,
    /// How many the size needs.
    pub want: usize,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its size and subtree hashes (as [`Frontier::nodes`] gave).
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Result<Self, BadFrontier> {
        let want = size.count_ones() as usize;
        if nodes.len() != want {
            return Err(BadFrontier {
                size,
                got: nodes.len(),
                want,
            });
        }
        Ok(Self { size, nodes })
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees' roots, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // A set low bit is a perfect subtree of the same height as `h`: merge them.
            match self.nodes.pop() {
                Some(left) => h = node_hash(&left, &h),
                None => break,
            }
            s >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The tree head.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}
