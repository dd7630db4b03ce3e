//! The seam through which a behaviour risk score (0–100) reaches the policy context as
//! `context.risk`. The engine knows nothing of baselines: a [`RiskSource`] (remit-anomaly's
//! scorer) is asked once per authenticated request, after the scope is resolved and
//! before Cedar; unauthenticated requests have risk 0. And the seam back: an [`Observer`]
//! learns from each decided request once its verdict is final, before its record is made
//! durable, so the record carries the alerts it raised.

use remit_core::mcp::McpMessage;
use remit_core::{
    ActionName, AlertNote, Class, CredentialId, Decision, Identity, Purpose, ResourceRef,
};

/// What a risk source may see of a request before its decision.
#[derive(Debug, Clone, Copy)]
pub struct RiskView<'a> {
    /// The authenticated identity.
    pub identity: &'a Identity,
    /// The credential it presented.
    pub credential: &'a CredentialId,
    /// How the request is treated.
    pub class: Class,
    /// The action asked for.
    pub action: &'a ActionName,
    /// On what.
    pub resource: &'a ResourceRef,
    /// Whether the action or resource is sensitive.
    pub sensitive: bool,
    /// The MCP tool, for `tools/call`.
    pub tool: Option<&'a str>,
    /// The declared purpose.
    pub purpose: Option<&'a Purpose>,
    /// The human a delegated request acts for.
    pub on_behalf_of: Option<&'a str>,
}

/// Scores a request's risk, 0–100. Must be pure and quick: it runs inside `decide`.
pub trait RiskSource {
    /// The risk of the request in `view`; values above 100 are read as 100.
    fn risk(&self, view: &RiskView<'_>) -> u8;
}

/// No behaviour scoring: every request has risk 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRisk;

impl RiskSource for NoRisk {
    fn risk(&self, _: &RiskView<'_>) -> u8 {
        0
    }
}

/// Learns from a decided request. Called by `Engine::finish` once the verdict is final
/// (rate caps applied) and before the record is written; never on a dry run. Must be quick
/// and do no IO: it runs on the request path.
pub trait Observer {
    /// Observes `decision`; returns the alert notes its record carries. It may refuse the
    /// request (with [`Decision::refuse`]), for example when an alert quarantines the
    /// identity; the record then shows the refusal.
    fn observe(&mut self, decision: &mut Decision, mcp: Option<&McpMessage>) -> Vec<AlertNote>;
}
