//! Decisions and decision records, and the seam through which records are made durable.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use serde::Serialize;

use crate::names::{ActionName, CredentialId, IdentityId, Purpose, SpiffeId};
use crate::route::ResourceRef;
use crate::scan::ScanReport;
use crate::vocab::{Authority, Class, Obligation, Verdict};

/// What an `approval_required` verdict asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRequest {
    /// The policies whose `@remedy("approval")` an approval would lift.
    pub required_by: Vec<String>,
    /// The approval's id: opened for this request, or presented with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When it expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Where an approver decides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decide: Option<String>,
}

/// The rate cap that refused a request: where it came from and its quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimitState {
    /// `identity` (the registry's `limits.rate`) or the id of the policy whose `@rate` it is.
    pub source: String,
    /// The quota.
    #[serde(flatten)]
    pub rate: crate::vocab::Rate,
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
    /// For `rate_limited`: the cap that refused the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitState>,
    /// Secrets found in the request and what was done about them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanReport>,
    /// For an allow: the approved record sets its responses are limited to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub record_sets: Vec<crate::records::ApprovedSet>,
}

impl Decision {
    /// Turns the decision into a deny that keeps its attribution, adding `reason`.
    /// Used when something after the policy decision fails (fail closed).
    pub fn fail_closed(&mut self, reason: impl Into<String>) {
        self.verdict = Verdict::Deny;
        self.obligations.clear();
        self.approval = None;
        self.retry_after_s = None;
        self.rate_limit = None;
        self.record_sets.clear();
        self.reasons.push(reason.into());
    }

    /// Turns the decision into a deny by a ceiling outside policy (a front door's own rule,
    /// such as an MCP session's owner), naming it as the determining policy.
    pub fn refuse(&mut self, policy: &str, reason: impl Into<String>) {
        self.fail_closed(reason);
        self.policies = vec![policy.to_owned()];
    }
}

/// Version of the audit record schema. 2: records carry `kind`, and responses have
/// outcome records.
pub const RECORD_VERSION: u32 = 2;

/// One audit record: what the log stores, serialised with a `kind` tag. New kinds
/// (approvals, alerts) join as variants; readers skip kinds they do not know.
///
/// A decision record is serialised by hand, as the derived form would write it (`kind`,
/// the record's fields and its decision's, flattened) but with its members in key order,
/// so that canonical JSON (one per request) neither goes through serde's flattening nor
/// reorders them; `decision_records_serialise_as_the_derived_form` holds the two equal.
/// The other kinds are serialised as derived.
#[derive(Debug, Clone, PartialEq)]
// Moved once per request into the sink; boxing would add an allocation to every decision.
#[allow(clippy::large_enum_variant)]
pub enum AuditRecord {
    /// A verdict, written (durably) before anything is forwarded.
    Decision(DecisionRecord),
    /// What came back for an allowed request, written when the response ends.
    Outcome(OutcomeRecord),
    /// A person granting or denying an approval, or an attempt refused.
    Approval(ApprovalRecord),
    /// A token the token endpoint issued (written before the token is returned), or a
    /// token request refused after its client authenticated.
    Token(TokenRecord),
}

/// [`AuditRecord`] as derived: the reference form, and how the kinds other than
/// decisions are written.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Tagged<'a> {
    /// Written by `SortedDecision` instead; kept as the form it is tested against.
    #[cfg_attr(not(test), allow(dead_code))]
    Decision(&'a DecisionRecord),
    /// Written by `SortedOutcome` instead; kept as the form it is tested against.
    #[cfg_attr(not(test), allow(dead_code))]
    Outcome(&'a OutcomeRecord),
    Approval(&'a ApprovalRecord),
    Token(&'a TokenRecord),
}

impl Serialize for AuditRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Decision(d) => SortedDecision(d).serialize(s),
            Self::Outcome(o) => SortedOutcome(o).serialize(s),
            Self::Approval(a) => Tagged::Approval(a).serialize(s),
            Self::Token(t) => Tagged::Token(t).serialize(s),
        }
    }
}

/// A decision record as `Tagged::Decision` writes it, its members in key order (byte
/// order; every key is ASCII), each skipped where the derived form skips it. The records
/// are taken apart field by field, with no `..`: a field added to [`DecisionRecord`] or
/// [`Decision`] does not compile until it is written here too, so none can be left out
/// of the audit log unnoticed.
struct SortedDecision<'a>(&'a DecisionRecord);

impl Serialize for SortedDecision<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let DecisionRecord {
            v,
            time,
            replica,
            decision,
            method,
            path,
            route,
            mcp_method,
            mcp_tool,
            source_ip,
            body_sha256,
            peer_spiffe_id,
            decide_us,
            alerts,
        } = self.0;
        let Decision {
            verdict,
            decision_id,
            identity,
            credential_id,
            class,
            authority,
            purpose,
            action,
            resource,
            sensitive,
            reasons,
            policies,
            obligations,
            approval,
            retry_after_s,
            rate_limit,
            scan,
            record_sets,
        } = decision;
        let mut m = s.serialize_struct("DecisionRecord", 32)?;
        m.serialize_field("action", action)?;
        if !alerts.is_empty() {
            m.serialize_field("alerts", alerts)?;
        }
        if let Some(a) = approval {
            m.serialize_field("approval", a)?;
        }
        m.serialize_field("authority", authority)?;
        m.serialize_field("body_sha256", body_sha256)?;
        m.serialize_field("class", class)?;
        m.serialize_field("credential_id", credential_id)?;
        m.serialize_field("decide_us", decide_us)?;
        m.serialize_field("decision", verdict)?;
        m.serialize_field("decision_id", decision_id)?;
        m.serialize_field("identity", identity)?;
        m.serialize_field("kind", "decision")?;
        m.serialize_field("mcp_method", mcp_method)?;
        m.serialize_field("mcp_tool", mcp_tool)?;
        m.serialize_field("method", method)?;
        m.serialize_field("obligations", obligations)?;
        m.serialize_field("path", path)?;
        if let Some(p) = peer_spiffe_id {
            m.serialize_field("peer_spiffe_id", p)?;
        }
        m.serialize_field("policies", policies)?;
        m.serialize_field("purpose", purpose)?;
        if let Some(l) = rate_limit {
            m.serialize_field("rate_limit", l)?;
        }
        m.serialize_field("reasons", reasons)?;
        if !record_sets.is_empty() {
            m.serialize_field("record_sets", record_sets)?;
        }
        m.serialize_field("replica", replica)?;
        m.serialize_field("resource", resource)?;
        if let Some(n) = retry_after_s {
            m.serialize_field("retry_after_s", n)?;
        }
        m.serialize_field("route", route)?;
        if let Some(scan) = scan {
            m.serialize_field("scan", scan)?;
        }
        m.serialize_field("sensitive", sensitive)?;
        m.serialize_field("source_ip", source_ip)?;
        m.serialize_field("time", time)?;
        m.serialize_field("v", v)?;
        m.end()
    }
}

/// An outcome record as `Tagged::Outcome` writes it, its members in key order, each
/// skipped where the derived form skips it (`review_body` always: it is stored beside the
/// record, not in it). Taken apart with no `..`, as [`SortedDecision`] is.
struct SortedOutcome<'a>(&'a OutcomeRecord);

impl Serialize for SortedOutcome<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let OutcomeRecord {
            v,
            time,
            replica,
            decision_id,
            status,
            response_sha256,
            response_bytes,
            complete,
            latency_us,
            error,
            review,
            scan,
            record_sets,
            review_body: _,
        } = self.0;
        let mut m = s.serialize_struct("OutcomeRecord", 14)?;
        m.serialize_field("complete", complete)?;
        m.serialize_field("decision_id", decision_id)?;
        if let Some(e) = error {
            m.serialize_field("error", e)?;
        }
        m.serialize_field("kind", "outcome")?;
        m.serialize_field("latency_us", latency_us)?;
        if !record_sets.is_empty() {
            m.serialize_field("record_sets", record_sets)?;
        }
        m.serialize_field("replica", replica)?;
        m.serialize_field("response_bytes", response_bytes)?;
        m.serialize_field("response_sha256", response_sha256)?;
        if let Some(r) = review {
            m.serialize_field("review", r)?;
        }
        if let Some(scan) = scan {
            m.serialize_field("scan", scan)?;
        }
        m.serialize_field("status", status)?;
        m.serialize_field("time", time)?;
        m.serialize_field("v", v)?;
        m.end()
    }
}

impl AuditRecord {
    /// The decision id the record belongs to.
    pub fn decision_id(&self) -> &str {
        match self {
            Self::Decision(d) => &d.decision.decision_id,
            Self::Outcome(o) => &o.decision_id,
            Self::Approval(a) => &a.decision_id,
            Self::Token(t) => &t.decision_id,
        }
    }
}

/// One step of an approval: a person's grant or denial, accepted (`allow`) or refused
/// (`deny`, with the reasons — separation of duties, approver groups, expiry).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRecord {
    /// Schema version.
    pub v: u32,
    /// RFC 3339 time of the step.
    pub time: String,
    /// The replica that took it.
    pub replica: String,
    /// This step's own id.
    pub decision_id: String,
    /// The approval.
    pub approval_id: String,
    /// What the person asked: `grant` or `deny`.
    pub resolution: crate::approval::Resolution,
    /// Whether the step was accepted (`allow`) or refused (`deny`).
    pub decision: Verdict,
    /// Why it was refused, when it was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The person (a human's `sub`), when their token verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// The credential they presented (a public id or fingerprint).
    pub approver_credential: CredentialId,
    /// The reason they gave.
    pub reason: String,
    /// The request the approval is for, when the approval exists.
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub binding: Option<crate::approval::Binding>,
}

/// One token request at `POST /oauth2/token` that got as far as an authenticated client:
/// the token issued (`allow`) or the refusal (`deny`, with the OAuth error and reasons).
/// Names who asked, for whom, what and for how long; never the token or any secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRecord {
    /// Schema version.
    pub v: u32,
    /// RFC 3339 time of the request.
    pub time: String,
    /// The replica that answered.
    pub replica: String,
    /// This request's id; an issued token carries it as its `jti`.
    pub decision_id: String,
    /// `allow` (a token was issued) or `deny`.
    pub decision: Verdict,
    /// `client_credentials` or `token_exchange`.
    pub grant_type: String,
    /// The identity the token is for (the client, or the actor of an exchange).
    pub identity: IdentityId,
    /// How it authenticated: `client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`, or `actor_token` (an exchange whose actor presented a token or key).
    pub client_auth: String,
    /// The credential it authenticated with (a public id, never the secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<CredentialId>,
    /// `own`, or for an exchange `delegated` on behalf of the human with the actor chain
    /// (the presenter first).
    pub authority: Authority,
    /// For an exchange: the issuer that vouched for the human.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human_issuer: Option<String>,
    /// The declared purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
    /// The scope asked for, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_scope: Option<String>,
    /// The scope granted (space-separated actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The token's audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The issued token's `jti` (equal to `decision_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The issued token's `iat`, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The issued token's `exp`, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The issued token's lifetime in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// The key that signed the token (its `kid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_kid: Option<String>,
    /// For a refusal: the OAuth error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a refusal: why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The client's address, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
}

/// What the upstream answered to an allowed request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeRecord {
    /// Schema version.
    pub v: u32,
    /// RFC 3339 time the response ended.
    pub time: String,
    /// The replica that forwarded it.
    pub replica: String,
    /// The decision this is the outcome of.
    pub decision_id: String,
    /// The status the client was answered with.
    pub status: u16,
    /// SHA-256 of the response body as it passed (hex).
    pub response_sha256: String,
    /// Bytes of response body that passed.
    pub response_bytes: u64,
    /// Whether the body ended normally (`false`: the client or upstream went away).
    pub complete: bool,
    /// From the decision to the end of the response, in microseconds.
    pub latency_us: u64,
    /// Why forwarding failed, when it did (the upstream unreachable or too slow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The review copy kept for `log_output`, described.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewNote>,
    /// Secrets found in the response and what was done about them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanReport>,
    /// What each approved record set removed from the response, or why it was refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub record_sets: Vec<crate::records::RecordSetNote>,
    /// The review copy's bytes, stored beside the record (not inside it).
    #[serde(skip)]
    pub review_body: Option<Vec<u8>>,
}

/// How a review copy was kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewNote {
    /// Bytes kept.
    pub stored_bytes: u64,
    /// The limit that applied.
    pub limit: u64,
    /// Whether the body was longer than the limit.
    pub truncated: bool,
    /// SHA-256 of the kept bytes (hex), so the copy is as tamper-evident as the record.
    pub sha256: String,
    /// Secrets replaced by `[REDACTED:rule-id]` in the kept bytes.
    pub redacted: u64,
    /// Why no copy was kept although `log_output` asked for one (a secret that could not
    /// be redacted in place, an encoded body): never store what might hold a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

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
    /// Behaviour alerts raised on this request (remit-anomaly); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertNote>,
}

/// A behaviour alert as a decision record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertNote {
    /// The alert's id.
    pub id: String,
    /// The detector that raised it, e.g. `new_origin`.
    pub detector: String,
    /// Its confidence in percent.
    pub confidence: u8,
    /// One sentence naming the evidence.
    pub evidence: String,
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

/// What became of a record given to [`RecordSink::queue`].
#[derive(Debug)]
pub enum Queued {
    /// In the store's queue.
    Queued,
    /// Refused at once (the queue is full, the store is closed, the record is too large).
    Failed(SinkError),
    /// This sink queues nothing without a waiter: the record, handed back.
    Wait(Box<AuditRecord>),
}

/// A boxed future, so the sink trait stays object-safe without an async runtime here.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Where audit records go. `append` resolves only once the record is durable.
pub trait RecordSink: Send + Sync {
    /// Appends a record; resolves when it is durable.
    fn append(&self, record: AuditRecord) -> SinkFuture<'_>;

    /// Queues a record that nobody waits for — an outcome, written after its response —
    /// with no future and no answer: it becomes durable with the next group like any
    /// other, and a failure to write it is the store's to report. A sink that cannot queue
    /// without a waiter hands the record back (the default), and the caller awaits
    /// [`RecordSink::append`] in a task of its own.
    fn queue(&self, record: AuditRecord) -> Queued {
        Queued::Wait(Box::new(record))
    }

    /// Where approvals are kept, when the store behind this sink keeps them. A pipeline
    /// recording into a sink without one opens no approvals and refuses every
    /// `Remit-Approval`.
    fn approvals(&self) -> Option<&dyn crate::approval::ApprovalStore> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::names::ResourceType;
    use crate::records::{ApprovedSet, OnExcess};
    use crate::scan::ScanAction;
    use crate::vocab::{AuthorityKind, Rate};

    /// A JSON object's keys in the order they are written.
    struct KeyOrder(Vec<String>);

    impl<'de> serde::Deserialize<'de> for KeyOrder {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Keys;
            impl<'de> serde::de::Visitor<'de> for Keys {
                type Value = KeyOrder;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<KeyOrder, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(KeyOrder(keys))
                }
            }
            d.deserialize_map(Keys)
        }
    }

    fn minimal() -> DecisionRecord {
        DecisionRecord {
            v: RECORD_VERSION,
            time: "2026-11-26T00:00:00Z".into(),
            replica: "replica-1".into(),
            decision: Decision {
                verdict: Verdict::Deny,
                decision_id: "d-1".into(),
                identity: None,
                credential_id: None,
                class: Class::Unclassified,
                authority: Authority {
                    kind: AuthorityKind::None,
                    on_behalf_of: None,
                    actors: Vec::new(),
                },
                purpose: None,
                action: ActionName::parse("status.read").unwrap(),
                resource: ResourceRef {
                    rtype: ResourceType::parse("Service").unwrap(),
                    id: "api".into(),
                },
                sensitive: false,
                reasons: vec!["no \"policy\" permits it\n".into()],
                policies: Vec::new(),
                obligations: Vec::new(),
                approval: None,
                retry_after_s: None,
                rate_limit: None,
                scan: None,
                record_sets: Vec::new(),
            },
            method: "GET".into(),
            path: "/status".into(),
            route: None,
            mcp_method: None,
            mcp_tool: None,
            source_ip: None,
            body_sha256: None,
            peer_spiffe_id: None,
            decide_us: 7,
            alerts: Vec::new(),
        }
    }

    /// Every member the derived form can write, set.
    fn full() -> DecisionRecord {
        let mut r = minimal();
        let d = &mut r.decision;
        d.verdict = Verdict::RateLimited;
        d.identity = Some(IdentityId::parse("bench-bot").unwrap());
        d.credential_id = Some(CredentialId::parse("bench-key").unwrap());
        d.class = Class::Agent;
        d.authority = Authority {
            kind: AuthorityKind::Delegated,
            on_behalf_of: Some("alice".into()),
            actors: vec!["agent-1".into()],
        };
        d.purpose = Some(Purpose::parse("bench").unwrap());
        d.sensitive = true;
        d.policies = vec!["p1".into(), "p0".into()];
        d.obligations = vec![Obligation::LogOutput];
        d.approval = Some(ApprovalRequest {
            required_by: vec!["p1".into()],
            id: Some("a-1".into()),
            expires: Some("2026-11-27T00:00:00Z".into()),
            decide: Some("https://remit.example/approvals/a-1".into()),
        });
        d.retry_after_s = Some(3);
        d.rate_limit = Some(RateLimitState {
            source: "identity".into(),
            rate: Rate {
                count: 10,
                per_s: 60,
            },
        });
        d.scan = Some(ScanReport {
            findings: Vec::new(),
            action: ScanAction::Redact,
            incomplete: Some("a body over the limit".into()),
        });
        d.record_sets = vec![ApprovedSet {
            name: "mine".into(),
            field: "/id".into(),
            items: "/items".into(),
            values: Arc::new(BTreeSet::from(["1".to_owned()])),
            on_excess: OnExcess::Filter,
            max_body_bytes: 1024,
        }];
        r.route = Some("GET /status".into());
        r.mcp_method = Some("tools/call".into());
        r.mcp_tool = Some("search".into());
        r.source_ip = Some("10.0.0.1".parse().unwrap());
        r.body_sha256 = Some("ab".repeat(32));
        r.peer_spiffe_id = Some(SpiffeId::parse("spiffe://example.org/bench").unwrap());
        r.alerts = vec![AlertNote {
            id: "al-1".into(),
            detector: "new_origin".into(),
            confidence: 90,
            evidence: "a new network".into(),
        }];
        r
    }

    /// The record as remit writes it holds the members the derived form writes, with the
    /// same values, in key order (so canonical JSON need not reorder them). Returns the
    /// derived form's keys in the order it writes them.
    fn assert_written_as_derived(record: &AuditRecord, derived: &Tagged<'_>) -> Vec<String> {
        let fast = serde_json::to_string(record).unwrap();
        let derived = serde_json::to_string(derived).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&fast).unwrap(),
            serde_json::from_str::<serde_json::Value>(&derived).unwrap(),
        );
        let KeyOrder(keys) = serde_json::from_str(&fast).unwrap();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let KeyOrder(derived_keys) = serde_json::from_str(&derived).unwrap();
        derived_keys
    }

    #[test]
    fn decision_records_serialise_as_the_derived_form() {
        for r in [minimal(), full()] {
            let keys =
                assert_written_as_derived(&AuditRecord::Decision(r.clone()), &Tagged::Decision(&r));
            let mut sorted = keys.clone();
            sorted.sort();
            assert_ne!(keys, sorted, "the key-order check can fail");
        }
        // The full record sets every member there is: a field added to the decision or
        // the record and left out of the ordered form fails the comparison above.
        let full = serde_json::to_value(Tagged::Decision(&full())).unwrap();
        assert_eq!(full.as_object().unwrap().len(), 32);
    }

    fn outcome() -> OutcomeRecord {
        OutcomeRecord {
            v: RECORD_VERSION,
            time: "2026-11-26T00:00:01Z".into(),
            replica: "replica-1".into(),
            decision_id: "d-1".into(),
            status: 200,
            response_sha256: "cd".repeat(32),
            response_bytes: 3,
            complete: true,
            latency_us: 250,
            error: None,
            review: None,
            scan: None,
            record_sets: Vec::new(),
            review_body: None,
        }
    }

    #[test]
    fn outcome_records_serialise_as_the_derived_form() {
        let mut full = outcome();
        full.error = Some("upstream `up` did not answer in time".into());
        full.review = Some(ReviewNote {
            stored_bytes: 3,
            limit: 1024,
            truncated: false,
            sha256: "ef".repeat(32),
            redacted: 0,
            withheld: Some("encoded".into()),
        });
        full.scan = Some(ScanReport {
            findings: Vec::new(),
            action: ScanAction::Alert,
            incomplete: None,
        });
        full.record_sets = vec![crate::records::RecordSetNote {
            set: "mine".into(),
            filtered: crate::records::Filtered::default(),
            refused: None,
        }];
        full.review_body = Some(b"ok\n".to_vec());
        for o in [outcome(), full.clone()] {
            assert_written_as_derived(&AuditRecord::Outcome(o.clone()), &Tagged::Outcome(&o));
        }
        // Every member the derived form writes is set in `full`.
        let all = serde_json::to_value(Tagged::Outcome(&full)).unwrap();
        assert_eq!(all.as_object().unwrap().len(), 14);
    }
}
