//! Fixed-capacity sets of 64-bit fingerprints: how a baseline remembers which actions,
//! networks or clients it has seen in bounded memory.
//!
//! A set stores FNV-1a fingerprints, never the names, so its size does not depend on what
//! a client sends. At its capacity a set stops learning: a value it does not hold is still
//! reported as new (never silently accepted as known) and counted in `dropped`.

use serde::{Deserialize, Deserializer, Serialize};

/// A stable 64-bit fingerprint of a name (FNV-1a with a domain byte), the same across
/// restarts and builds, so persisted baselines stay valid.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fingerprint(pub u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Fingerprint {
    /// Fingerprints `bytes` in the domain `domain` (so an action and a tool with the same
    /// name differ).
    pub fn of(domain: u8, bytes: &[u8]) -> Self {
        let mut h = FNV_OFFSET;
        for &b in std::iter::once(&domain).chain(bytes) {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        Self(h)
    }

    /// Fingerprints bytes ASCII-lowercased, without allocating.
    pub fn of_lowercase(domain: u8, bytes: &[u8]) -> Self {
        let mut h = FNV_OFFSET;
        for b in std::iter::once(domain).chain(bytes.iter().map(u8::to_ascii_lowercase)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        Self(h)
    }
}

/// What [`BoundedSet::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The value was already known.
    Known,
    /// The value was new and is now known.
    Added,
    /// The value was new and the set is full: it was not learned.
    Full,
}

/// A sorted set of at most `N` fingerprints. Its heap use is at most `N * 8` bytes: it grows
/// one slot at a time and never past `N`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BoundedSet<const N: usize> {
    items: Vec<u64>,
    /// New values refused because the set was full.
    dropped: u32,
}

impl<const N: usize> BoundedSet<N> {
    /// The capacity.
    pub const CAPACITY: usize = N;
    /// The most heap memory a set of this capacity uses.
    pub const MAX_HEAP_BYTES: usize = N * std::mem::size_of::<u64>();

    /// Whether the set holds `fp`.
    pub fn contains(&self, fp: Fingerprint) -> bool {
        self.items.binary_search(&fp.0).is_ok()
    }

    /// Learns `fp` unless the set is full.
    pub fn insert(&mut self, fp: Fingerprint) -> Inserted {
        match self.items.binary_search(&fp.0) {
            Ok(_) => Inserted::Known,
            Err(_) if self.items.len() >= N => {
                self.dropped = self.dropped.saturating_add(1);
                Inserted::Full
            }
            Err(at) => {
                // Grow by exactly one slot: the bound is on capacity, not only length.
                self.items.reserve_exact(1);
                self.items.insert(at, fp.0);
                Inserted::Added
            }
        }
    }

    /// How many values are known.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no value is known.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the set has stopped learning.
    pub fn is_full(&self) -> bool {
        self.items.len() >= N
    }

    /// New values refused at the limit.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Heap bytes in use (capacity, not length).
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<u64>()
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedSet<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            items: Vec<u64>,
            #[serde(default)]
            dropped: u32,
        }
        let Raw { mut items, dropped } = Raw::deserialize(d)?;
        if items.len() > N {
            return Err(serde::de::Error::custom(format!(
                "a baseline set holds at most {N} values, found {}",
                items.len()
            )));
        }
        items.sort_unstable();
        items.dedup();
        items.shrink_to_fit();
        Ok(Self { items, dropped })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_full_set_stops_learning_and_keeps_its_bound() {
        let mut s = BoundedSet::<4>::default();
        let outcomes: Vec<Inserted> = (0u8..6)
            .map(|i| s.insert(Fingerprint::of(1, &[i])))
            .collect();
        assert_eq!(
            outcomes,
            [
                Inserted::Added,
                Inserted::Added,
                Inserted::Added,
                Inserted::Added,
                Inserted::Full,
                Inserted::Full
            ]
        );
        assert_eq!(s.insert(Fingerprint::of(1, &[0])), Inserted::Known);
        assert!(!s.contains(Fingerprint::of(1, &[5])));
        assert_eq!(s.dropped(), 2);
        assert!(s.heap_bytes() <= BoundedSet::<4>::MAX_HEAP_BYTES);
    }

    #[test]
    fn domains_and_case_are_distinguished_as_asked() {
        assert_ne!(Fingerprint::of(1, b"x"), Fingerprint::of(2, b"x"));
        assert_eq!(
            Fingerprint::of_lowercase(3, b"Curl"),
            Fingerprint::of(3, b"curl")
        );
    }

    #[test]
    fn an_oversized_set_is_refused_on_load() {
        let too_many = serde_json::json!({"items": [1, 2, 3, 4, 5]});
        assert!(serde_json::from_value::<BoundedSet<4>>(too_many).is_err());
        let ok = serde_json::json!({"items": [3, 1, 3]});
        let s: BoundedSet<4> = serde_json::from_value(ok).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.contains(Fingerprint(1)));
    }
}
