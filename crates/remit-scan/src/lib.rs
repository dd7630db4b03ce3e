//! Secret and sensitive-data scanning of prompts, tool arguments and responses.
//!
//! A pure library: bodies in, [`Findings`] out; no IO. [`Scanner`] holds compiled rules (the
//! built-in set or a gitleaks-format file, see [`RuleSet`]). A scan runs an Aho-Corasick
//! keyword prefilter over every rule's keywords, then only the candidate rules' regexes,
//! an entropy check and the allowlists. It looks through decoding layers: the body's
//! `Content-Encoding`, JSON string escapes, percent-encoding and plausible base64 runs
//! (nested up to [`Limits::max_depth`]). [`SseScanner`] scans a server-sent-event stream
//! event by event, so a secret split across network chunks is still found.
//!
//! Findings name the rule, the span in the body, the decoding layers and a fingerprint of
//! the secret — never the secret. There is one finding per secret occurrence: where several
//! layers read a secret at the same place (a PEM key inside escaped JSON reads `\\n` in
//! the body and newlines once decoded), the most-decoded layer's finding is kept, so its
//! fingerprint is the secret as written. Every limit is a decision for the caller: a body over
//! [`Limits::max_body_bytes`] (or a zip bomb) is [`ScanError::TooLarge`], and a scan that
//! stopped early says so in [`Findings::incomplete`]. The caller applies an [`Action`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
mod engine;
mod finding;
mod keywords;
mod known;
mod rules;
mod sse;

pub use decode::{ContentEncoding, Decoding, decompress};
pub use engine::{Redacted, Scanner};
pub use finding::{Finding, Findings, Fingerprint, Incomplete, shannon_entropy};
pub use known::KnownSecrets;
pub use rules::{
    BUILTIN_RULES, MAX_REGEX_DFA_SIZE, MAX_REGEX_SIZE, MAX_RULE_FILE_BYTES, MAX_RULES, Rule,
    RuleSet, RulesError,
};
pub use sse::{SseOutput, SseScanner};

/// What the caller does with a body that has findings. remit-scan only reports; the
/// gateway applies the action a policy obligation chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Refuse the body.
    Block,
    /// Replace secrets in place ([`Scanner::redact`]); block what cannot be redacted.
    Redact,
    /// Let the body through and record the findings.
    Alert,
}

impl Action {
    /// The action's name: `block`, `redact`, `alert`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Redact => "redact",
            Self::Alert => "alert",
        }
    }

    /// Parses `block`, `redact` or `alert`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "redact" => Some(Self::Redact),
            "alert" => Some(Self::Alert),
            _ => None,
        }
    }
}

/// Limits on one scan. What happens at each is stated on the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body scanned, as received. Larger: [`ScanError::TooLarge`].
    pub max_body_bytes: usize,
    /// Most bytes produced by decompressing the body. More: [`ScanError::TooLarge`].
    /// Also the budget for all decoded layers of one body; past it the scan stops decoding
    /// and reports [`Incomplete::DecodeBudget`].
    pub max_decoded_bytes: usize,
    /// Most findings reported; past it, [`Incomplete::FindingsLimit`].
    pub max_findings: usize,
    /// Most decoding layers on top of the body (JSON, URL, base64 …). A plausible layer
    /// deeper than this is [`Incomplete::NestingDepth`].
    pub max_depth: usize,
    /// Most decoded layers per body; past it, [`Incomplete::DecodeBudget`].
    pub max_layers: usize,
    /// Shortest base64 run decoded (characters).
    pub min_base64_len: usize,
    /// Longest base64 run decoded; a plausible longer one is decoded up to this length and
    /// the scan reports [`Incomplete::DecodeBudget`].
    pub max_base64_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_decoded_bytes: 4 * 1024 * 1024,
            max_findings: 100,
            max_depth: 4,
            max_layers: 64,
            min_base64_len: 24,
            max_base64_len: 256 * 1024,
        }
    }
}

/// A body that could not be scanned. Each is a decision for the caller (remit blocks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The body, or what it decompresses to, is over a limit.
    #[error("{what} is over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The body does not decode as its `Content-Encoding` says.
    #[error("{what} does not decode: {reason}")]
    Malformed {
        /// What did not decode.
        what: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// A `Content-Encoding` remit-scan cannot undo.
    #[error("unsupported content encoding `{encoding}`")]
    UnsupportedEncoding {
        /// The header value (at most 64 characters).
        encoding: String,
    },
}
