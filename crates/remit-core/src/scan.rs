//! What secret scanning means to the rest of remit: the `[scan]` settings and what a
//! decision record says about secrets found in traffic (rule, location, fingerprint;
//! never the secret). The scanner itself is `remit-scan`; the engine and gateway apply it.

use serde::{Deserialize, Serialize};

/// What remit does when a body or header carries a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanAction {
    /// Refuse the request (or the response); the reason names the rule, never the secret.
    Block,
    /// Replace each secret in place with `[REDACTED:rule-id]`; what cannot be redacted in
    /// place (a secret inside base64 or a compressed body) is blocked.
    Redact,
    /// Let it pass and record the findings.
    Alert,
}

impl ScanAction {
    /// The action's name: `block`, `redact`, `alert`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Redact => "redact",
            Self::Alert => "alert",
        }
    }
}

/// What happens to a body larger than the scan limit: never a silent pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Refuse every body that cannot be scanned whole.
    Deny,
    /// Refuse it on sensitive actions; elsewhere pass it, recorded as unscanned.
    DenySensitive,
    /// Pass it, recorded as unscanned.
    Allow,
}

/// The `[scan]` section of `remit.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSettings {
    /// A gitleaks-format rule file replacing the built-in rules (relative to the config
    /// file's directory); `None` for the built-ins.
    pub rules: Option<String>,
    /// What to do with a secret in a request (body, tool arguments, headers). A permit
    /// carrying `@obligation("redact")` makes it `redact` for that request.
    pub request: ScanAction,
    /// What to do with a secret in a response (API response, tool result, SSE event).
    pub response: ScanAction,
    /// The largest body scanned, in bytes.
    pub max_body_bytes: u64,
    /// What happens to a larger body.
    pub oversize: Oversize,
    /// Whether a known credential seen in traffic quarantines the identity it belongs to
    /// (otherwise the credential is only marked exposed and an alert raised).
    pub quarantine_on_exposure: bool,
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self {
            rules: None,
            request: ScanAction::Block,
            response: ScanAction::Redact,
            max_body_bytes: 1024 * 1024,
            oversize: Oversize::DenySensitive,
            quarantine_on_exposure: false,
        }
    }
}

/// Where in the traffic a secret was seen.
pub mod location {
    /// The request body (prompts, JSON-RPC tool arguments).
    pub const REQUEST_BODY: &str = "request.body";
    /// The response body (API responses, tool results, SSE events).
    pub const RESPONSE_BODY: &str = "response.body";
    /// The prefix of a request header's location: `request.header.<name>`.
    pub const REQUEST_HEADER: &str = "request.header.";
}

/// One secret found in traffic, as a record holds it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretFinding {
    /// The rule that matched.
    pub rule: String,
    /// Where: `request.body`, `request.header.<name>` or `response.body`.
    pub location: String,
    /// The decodings it was seen through (`raw`, `json`, `base64+json`, …).
    pub layers: String,
    /// Byte span in the (decompressed) body.
    pub span: [usize; 2],
    /// A fingerprint of the secret (64 bits of its SHA-256, hex), to correlate sightings.
    pub fingerprint: String,
    /// The known credential the secret is, if remit knows it: "credential exposed".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What scanning found in one direction of one request, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// The findings, in the order found.
    pub findings: Vec<SecretFinding>,
    /// What was done: `block`, `redact` or `alert`.
    pub action: ScanAction,
    /// Set when the scan could not look at everything (a body over the limit, a decoding
    /// budget spent), with why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

impl ScanReport {
    /// The distinct rule ids found, sorted.
    pub fn rule_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.findings.iter().map(|f| f.rule.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}
