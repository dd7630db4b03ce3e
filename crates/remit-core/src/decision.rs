//! Decisions and decision records, and the seam through which records are made durable.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use serde::Serialize;

use crate::names::{ActionName, CredentialId, IdentityId, Purpose, SpiffeId};
use crate::route::ResourceRef;
use crate::vocab::{Authority, Class, Obligation, Verdict};

/// What an `approval_required` verdict asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRequest {
    /// The policies whose `@remedy("approval")` an approval would lift.
    pub required_by: Vec<String>,
    /// A pending approval's id, once approvals are stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One verdict with everything that explains it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The verdict.
    #[serde(rename = "decision")]
    pub verdict: Verdict,
    /// A unique id, also sent upstream as `Remit-Decision-Id`.
    pub decision_id: String,
    /// The identity, when one was authenticated.
    pub identity: Option<IdentityId>,
    /// The credential that was presented (a public id or fingerprint, never the secret).
    pub credential_id: Option<CredentialId>,
    /// How the request was treated.
    pub class: Class,
    /// Whose authority it exercised.
    pub authority: Authority,
    /// Its declared purpose.
    pub purpose: Option<Purpose>,
    /// What it asked to do.
    pub action: ActionName,
    /// To what.
    pub resource: ResourceRef,
    /// Whether the action or resource is sensitive.
    pub sensitive: bool,
    /// Why, in sentences a person can act on.
    pub reasons: Vec<String>,
    /// The determining policy ids.
    pub policies: Vec<String>,
    /// What must happen for an allow to stand.
    pub obligations: Vec<Obligation>,
    /// For `approval_required`: what approval would lift the refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRequest>,
    /// For `rate_limited`: when to retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

impl Decision {
    /// Turns the decision into a deny that keeps its attribution, adding `reason`.
    /// Used when something after the policy decision fails (fail closed).
    pub fn fail_closed(&mut self, reason: impl Into<String>) {
        self.verdict = Verdict::Deny;
        self.obligations.clear();
        self.approval = None;
        self.retry_after_s = None;
        self.reasons.push(reason.into());
    }

    /// Turns the decision into a deny by a ceiling outside policy (a front door's own rule,
    /// such as an MCP session's owner), naming it as the determining policy.
    pub fn refuse(&mut self, policy: &str, reason: impl Into<String>) {
        self.fail_closed(reason);
        self.policies = vec![policy.to_owned()];
    }
}

/// Version of the decision record schema.
pub const RECORD_VERSION: u32 = 1;

/// The audit entry for one verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// Schema version.
    pub v: u32,
    /// RFC 3339 time of the decision.
    pub time: String,
    /// The replica that decided.
    pub replica: String,
    /// The decision itself.
    #[serde(flatten)]
    pub decision: Decision,
    /// The request method.
    pub method: String,
    /// The canonical path that was authorised.
    pub path: String,
    /// The route that matched.
    pub route: Option<String>,
    /// The MCP method, for MCP requests.
    pub mcp_method: Option<String>,
    /// The MCP tool, for `tools/call`.
    pub mcp_tool: Option<String>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// SHA-256 of the request body, hex.
    pub body_sha256: Option<String>,
    /// The SPIFFE ID of the peer that sent the request, when the front door knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_spiffe_id: Option<SpiffeId>,
    /// Time spent deciding, in microseconds.
    pub decide_us: u64,
}

/// Why a record could not be made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The write queue is full (a limit, decided as deny).
    #[error("the decision record queue is full")]
    Full,
    /// The store refused or failed the write.
    #[error("the decision store failed: {0}")]
    Store(String),
    /// The store is shut down.
    #[error("the decision store is closed")]
    Closed,
}

/// A boxed future, so the sink trait stays object-safe without an async runtime here.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Where decision records go. `append` resolves only once the record is durable.
pub trait RecordSink: Send + Sync {
    /// Appends a record; resolves when it is durable.
    fn append(&self, record: DecisionRecord) -> SinkFuture<'_>;
}
