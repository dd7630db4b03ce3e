//! SHA-256 hashes as a newtype that reads and writes as lowercase hex.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A SHA-256 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash: the `prev` of a replica's first entry.
    pub const ZERO: Hash = Hash([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::of_parts(&[bytes])
    }

    /// SHA-256 of `parts`, one after another.
    ///
    /// aws-lc-rs rather than the `sha2` crate: on CPUs without the SHA extensions its
    /// assembly (AVX2) hashes an audit entry in about half the time (`cargo bench -p
    /// remit-audit --bench hash`), and the audit writer hashes every entry.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for p in parts {
            h.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(h.finish().as_ref());
        Self(out)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, BadHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out)
            .map_err(|_| BadHash(text.chars().take(80).collect()))?;
        Ok(Self(out))
    }

    /// Parses a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
}

/// Text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SHA-256 hash in hex (64 hex digits)")]
pub struct BadHash(pub String);

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}
