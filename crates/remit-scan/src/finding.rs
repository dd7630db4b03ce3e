//! Findings: what a scan reports. A finding names the rule, where the secret is and through
//! which decodings it was seen, and a fingerprint of it — never the secret itself.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::decode::Decoding;

/// The first 64 bits of a secret's SHA-256: enough to correlate repeated sightings of one
/// secret, too little to confirm a guess of a low-entropy one offline with certainty.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 8]);

impl Fingerprint {
    /// The fingerprint of a secret.
    pub fn of(secret: &[u8]) -> Self {
        Self::from_digest(&Sha256::digest(secret).into())
    }

    pub(crate) fn from_digest(d: &[u8; 32]) -> Self {
        let mut f = [0u8; 8];
        f.copy_from_slice(&d[..8]);
        Self(f)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// One secret found in a body.
#[derive(Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule that found it.
    pub rule: Arc<str>,
    /// Byte span in the scanned body (after `Content-Encoding` is undone). When
    /// [`exact`](Self::exact), the span holds exactly the secret (in its encoded form, such
    /// as with JSON escapes); otherwise it is the encoded segment (a base64 run) holding it.
    pub span: Range<usize>,
    /// The decodings the secret was seen through, outermost first; empty for raw text.
    pub layers: Vec<Decoding>,
    /// Whether [`span`](Self::span) is exactly the secret, so it can be redacted in place.
    pub exact: bool,
    /// The secret's fingerprint.
    pub fingerprint: Fingerprint,
    /// The id of a known credential this secret is (see [`crate::KnownSecrets`]):
    /// "credential exposed".
    pub credential: Option<Arc<str>>,
    /// The secret's SHA-256. Private: it is only compared with known digests.
    pub(crate) digest: [u8; 32],
}

impl Finding {
    /// The layers as one name: `raw`, or the decodings joined with `+` (`base64+json`).
    pub fn layer_name(&self) -> String {
        if self.layers.is_empty() {
            return "raw".to_owned();
        }
        self.layers
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join("+")
    }
}

impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finding")
            .field("rule", &self.rule)
            .field("span", &self.span)
            .field("layer", &self.layer_name())
            .field("exact", &self.exact)
            .field("fingerprint", &self.fingerprint)
            .field("credential", &self.credential)
            .finish()
    }
}

/// Why a scan stopped before looking at everything. The caller decides (remit treats an
/// incomplete scan under a `block` action as a block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// [`crate::Limits::max_findings`] was reached.
    FindingsLimit,
    /// The decoding budget ([`crate::Limits::max_decoded_bytes`], `max_layers` or
    /// `max_base64_len`) ran out.
    DecodeBudget,
    /// A plausible encoded layer was nested deeper than [`crate::Limits::max_depth`].
    NestingDepth,
}

/// What one scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The findings, in the order found (raw layer first; a match put off for a decoded
    /// layer that then did not report it comes last).
    pub items: Vec<Finding>,
    /// Set when the scan stopped early.
    pub incomplete: Option<Incomplete>,
}

impl Findings {
    /// Whether nothing was found and the scan was complete.
    pub fn is_clean(&self) -> bool {
        self.items.is_empty() && self.incomplete.is_none()
    }

    /// The findings that name a known credential.
    pub fn exposed(&self) -> impl Iterator<Item = &Finding> {
        self.items.iter().filter(|f| f.credential.is_some())
    }

    /// The distinct rule ids found, sorted.
    pub fn rule_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.items.iter().map(|f| &*f.rule).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Shannon entropy of bytes, in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in s {
        counts[*b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}
