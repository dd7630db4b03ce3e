//! Cedar's answers to requests already evaluated, so that a request identical to an
//! earlier one in everything Cedar reads is not evaluated again.
//!
//! Machine traffic repeats itself: a scheduled job or an agent calls the same action on
//! the same resource, with the same declared purpose, many times. Cedar's evaluation is a
//! pure function of the policy set, the entities and the request (it has no clock and no
//! IO), and a [`PolicyEngine`](crate::PolicyEngine) never changes either of the first two
//! after it is loaded: a reload builds a new engine with an empty cache. So an answer can
//! be reused for a request whose Cedar request is the same, and only then.
//!
//! The key is the whole Cedar request written as bytes: principal, action, resource, and
//! every context attribute the slice's policies read, each value tagged by its type and
//! every string prefixed by its length, so two different requests never share a key
//! ([`key`] is injective; the tests hold it to that). The key is built from the same
//! list of context values the Cedar request itself is built from ([`ContextValue`]), so
//! it cannot leave out anything Cedar sees. Keys are compared whole, never by hash alone.
//!
//! Limits: the cache holds at most its byte budget of keys and answers (S3-FIFO eviction,
//! from `quick_cache`), and a request whose key is longer than [`MAX_KEY_BYTES`] (long
//! tool arguments, say) is evaluated and not kept. Only clean answers are kept: a request
//! on which a policy failed to evaluate is evaluated every time.

use std::net::IpAddr;
use std::sync::Arc;

use cedar_policy::{Decision, PolicyId};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// The longest key the cache keeps; a longer request is evaluated every time.
pub const MAX_KEY_BYTES: usize = 2048;

pub use remit_core::config::{
    DECISION_CACHE_DEFAULT_BYTES as DEFAULT_BYTES, DECISION_CACHE_MAX_BYTES as MAX_BYTES,
};

/// What Cedar answered: the decision and the determining policies, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) decision: Decision,
    pub(crate) policies: Vec<PolicyId>,
}

/// One context value as remit hands it to Cedar, borrowed from the request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ContextValue<'a> {
    Str(&'a str),
    Bool(bool),
    Long(i64),
    Ip(IpAddr),
    Record(Vec<(&'a str, ContextValue<'a>)>),
    Set(Vec<ContextValue<'a>>),
}

/// The parts of a Cedar request, borrowed: what a key is written from.
pub(crate) struct RequestParts<'a, 'b> {
    /// The principal: `None` for unclassified traffic, else the identity's id.
    pub(crate) principal: Option<&'a str>,
    pub(crate) action: &'a str,
    pub(crate) resource_type: &'a str,
    pub(crate) resource_id: &'a str,
    pub(crate) context: &'b [(&'static str, ContextValue<'a>)],
}

/// Writes `parts` as a key into `out` (cleared first). Returns false, leaving `out` in an
/// unspecified state, when the key would be longer than [`MAX_KEY_BYTES`].
pub(crate) fn key(parts: &RequestParts<'_, '_>, out: &mut Vec<u8>) -> bool {
    out.clear();
    match parts.principal {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            string(id, out);
        }
    }
    string(parts.action, out);
    string(parts.resource_type, out);
    string(parts.resource_id, out);
    // The attributes present, then each one: an attribute left out and one present are
    // told apart by the count and the names.
    len(parts.context.len(), out);
    for (name, value) in parts.context {
        string(name, out);
        self::value(value, out);
        if out.len() > MAX_KEY_BYTES {
            return false;
        }
    }
    out.len() <= MAX_KEY_BYTES
}

fn len(n: usize, out: &mut Vec<u8>) {
    // Every length here is below MAX_KEY_BYTES or the key is dropped, but a length is
    // written before it is checked: saturate rather than wrap, so no two lengths alias.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn string(s: &str, out: &mut Vec<u8>) {
    len(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

fn value(v: &ContextValue<'_>, out: &mut Vec<u8>) {
    match v {
        ContextValue::Str(s) => {
            out.push(b's');
            string(s, out);
        }
        ContextValue::Bool(b) => out.extend_from_slice(if *b { b"t" } else { b"f" }),
        ContextValue::Long(n) => {
            out.push(b'l');
            out.extend_from_slice(&n.to_le_bytes());
        }
        ContextValue::Ip(IpAddr::V4(ip)) => {
            out.push(b'4');
            out.extend_from_slice(&ip.octets());
        }
        ContextValue::Ip(IpAddr::V6(ip)) => {
            out.push(b'6');
            out.extend_from_slice(&ip.octets());
        }
        ContextValue::Record(fields) => {
            out.push(b'r');
            len(fields.len(), out);
            for (name, v) in fields {
                string(name, out);
                value(v, out);
            }
        }
        ContextValue::Set(items) => {
            out.push(b'S');
            len(items.len(), out);
            for v in items {
                value(v, out);
            }
        }
    }
}

/// Weighs an entry by the bytes it holds.
#[derive(Debug, Clone, Copy)]
struct Bytes;

impl Weighter<Box<[u8]>, Arc<Answer>> for Bytes {
    fn weight(&self, key: &Box<[u8]>, answer: &Arc<Answer>) -> u64 {
        // The key, the answer's policy ids (a rough size each) and the map's own slot.
        (key.len() + answer.policies.len() * 48 + 96) as u64
    }
}

/// Answers by key, within a byte budget; a budget of zero keeps nothing.
pub(crate) struct Answers {
    cache: Option<Cache<Box<[u8]>, Arc<Answer>, Bytes>>,
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cache {
            None => f.write_str("Answers(off)"),
            Some(c) => write!(f, "Answers({} kept, {} bytes)", c.len(), c.weight()),
        }
    }
}

impl Answers {
    /// A cache of at most `bytes` (capped at [`MAX_BYTES`]); zero turns it off.
    pub(crate) fn new(bytes: u64) -> Self {
        let bytes = bytes.min(MAX_BYTES);
        Self {
            cache: (bytes > 0).then(|| {
                // About 200 bytes an entry is typical (a short key, one policy).
                let items = usize::try_from(bytes / 200).unwrap_or(usize::MAX).max(16);
                Cache::with_weighter(items, bytes, Bytes)
            }),
        }
    }

    /// Whether anything is kept (a budget of zero keeps nothing, and no key is built).
    pub(crate) fn is_on(&self) -> bool {
        self.cache.is_some()
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<Answer>> {
        self.cache.as_ref()?.get(key)
    }

    pub(crate) fn insert(&self, key: &[u8], answer: Arc<Answer>) {
        if let Some(c) = &self.cache {
            c.insert(key.into(), answer);
        }
    }

    /// How many answers are kept.
    pub(crate) fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(parts: &RequestParts<'_, '_>) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(key(parts, &mut out));
        out
    }

    fn parts<'a, 'b>(
        principal: Option<&'a str>,
        resource_id: &'a str,
        context: &'b [(&'static str, ContextValue<'a>)],
    ) -> RequestParts<'a, 'b> {
        RequestParts {
            principal,
            action: "docs.read",
            resource_type: "Doc",
            resource_id,
            context,
        }
    }

    /// Requests that a key written by plain concatenation would confuse get different keys.
    #[test]
    fn keys_of_different_requests_differ() {
        use ContextValue::*;
        let rec = |k: &'static str, v: &'static str| Record(vec![(k, Str(v))]);
        type Case<'a> = (
            Option<&'a str>,
            &'a str,
            Vec<(&'static str, ContextValue<'a>)>,
        );
        let cases: Vec<Case<'_>> = vec![
            (None, "a", vec![]),
            (Some(""), "a", vec![]),
            (Some("a"), "", vec![]),
            (Some("ab"), "", vec![]),
            (Some("a"), "b", vec![]),
            (Some("a"), "b", vec![("purpose", Str(""))]),
            (Some("a"), "b", vec![("purpose", Str("x"))]),
            (Some("a"), "b", vec![("path", Str("x"))]),
            (Some("a"), "b", vec![("risk", Long(0))]),
            (Some("a"), "b", vec![("risk", Long(1))]),
            (Some("a"), "b", vec![("approved", Bool(false))]),
            (Some("a"), "b", vec![("approved", Bool(true))]),
            (Some("a"), "b", vec![("params", rec("a", "b\0c"))]),
            (Some("a"), "b", vec![("params", rec("a\0b", "c"))]),
            (Some("a"), "b", vec![("params", Record(vec![]))]),
            (Some("a"), "b", vec![("secrets", Set(vec![]))]),
            (Some("a"), "b", vec![("secrets", Set(vec![Str("k")]))]),
            (
                Some("a"),
                "b",
                vec![("secrets", Set(vec![Str("k"), Str("")]))],
            ),
            (Some("a"), "b", vec![("secrets", Set(vec![Str("k\0")]))]),
            (
                Some("a"),
                "b",
                vec![("source_ip", Ip("127.0.0.1".parse().unwrap()))],
            ),
            (
                Some("a"),
                "b",
                vec![("source_ip", Ip("::ffff:127.0.0.1".parse().unwrap()))],
            ),
            (
                Some("a"),
                "b",
                vec![("risk", Long(1)), ("approved", Bool(true))],
            ),
            (
                Some("a"),
                "b",
                vec![("approved", Bool(true)), ("risk", Long(1))],
            ),
        ];
        let keys: Vec<Vec<u8>> = cases
            .iter()
            .map(|(p, r, c)| key_of(&parts(*p, r, c)))
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for (j, b) in keys.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "cases {i} and {j} must not share a key");
            }
        }
        // And the same request gives the same key.
        assert_eq!(
            keys[12],
            key_of(&parts(cases[12].0, cases[12].1, &cases[12].2))
        );
    }

    #[test]
    fn a_key_longer_than_the_limit_is_not_kept() {
        let long = "x".repeat(MAX_KEY_BYTES);
        let ctx = [("path", ContextValue::Str(long.as_str()))];
        let mut out = Vec::new();
        assert!(!key(&parts(Some("a"), "b", &ctx), &mut out));
        let short = [("path", ContextValue::Str("/x"))];
        assert!(key(&parts(Some("a"), "b", &short), &mut out));
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let answers = Answers::new(64 * 1024);
        let answer = Arc::new(Answer {
            decision: Decision::Allow,
            policies: vec![PolicyId::new("p")],
        });
        for i in 0..10_000u32 {
            answers.insert(&i.to_le_bytes(), answer.clone());
        }
        let kept = answers.len();
        assert!(kept > 0 && kept < 10_000, "kept {kept}");
        let off = Answers::new(0);
        off.insert(b"k", answer);
        assert!(off.get(b"k").is_none());
        assert_eq!(off.len(), 0);
    }
}
