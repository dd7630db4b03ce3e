//! Approvals: a person confirming intent and authority for one exact request.
//!
//! A request that a `@remedy("approval")` forbid refuses opens a pending [`Approval`] bound
//! to what it asked ([`Binding`]: identity, on-behalf-of human, purpose, action, resource,
//! method, path and body digest). An approver whom policy names (`@approvers`) and who is
//! not the requester grants or denies it ([`Approval::check_approver`]); the identical
//! request presented again with `Remit-Approval: <id>` is then allowed once
//! ([`Approval::admits`], and the store's single-use claim). Everything here is pure; the
//! [`ApprovalStore`] trait is the seam to persistence.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::names::{ActionName, CredentialId, IdentityId, Purpose};
use crate::route::ResourceRef;

/// What every approval id starts with.
pub const APPROVAL_ID_PREFIX: &str = "apr_";
/// Most approvals one listing returns.
pub const MAX_LIST: u32 = 1000;
/// The longest reason an approver may give, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// An approval's id: `apr_` and 32 lowercase hex digits (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ApprovalId(String);

impl ApprovalId {
    /// Parses an id as clients send it in `Remit-Approval` or on the command line.
    pub fn parse(s: &str) -> Result<Self, ApprovalError> {
        match s.strip_prefix(APPROVAL_ID_PREFIX) {
            Some(hex)
                if hex.len() == 32
                    && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(Self(s.to_owned()))
            }
            // Shown shortened: the input may be anything a client sent.
            _ => Err(ApprovalError::BadId(
                s.chars()
                    .take(64)
                    .collect::<String>()
                    .escape_default()
                    .to_string(),
            )),
        }
    }

    /// An id from 16 random bytes.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(format!("{APPROVAL_ID_PREFIX}{}", hex::encode(bytes)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an approval stands. An approval past its expiry is expired whatever its state
/// says ([`Approval::is_expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for an approver.
    Pending,
    /// Granted: the bound request may be presented once.
    Granted,
    /// Denied by an approver.
    Denied,
    /// Granted and used by one allowed request.
    Used,
}

impl ApprovalState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Granted => "granted",
            Self::Denied => "denied",
            Self::Used => "used",
        }
    }

    /// Parses a state name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "granted" => Self::Granted,
            "denied" => Self::Denied,
            "used" => Self::Used,
            _ => return None,
        })
    }
}

/// The exact request an approval is for. Two requests with equal bindings are the same
/// request as far as an approver can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    /// The identity that asked.
    pub identity: IdentityId,
    /// The human it acted for, under delegated authority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Its declared purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
    /// The action.
    pub action: ActionName,
    /// The resource.
    pub resource: ResourceRef,
    /// The method.
    pub method: String,
    /// The canonical path.
    pub path: String,
    /// SHA-256 of the request body (hex), when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

impl Binding {
    /// The first field in which `other` differs from this binding, for a refusal that says
    /// what changed (never the values: a body digest says nothing, the rest is the client's
    /// own request).
    pub fn difference(&self, other: &Binding) -> Option<&'static str> {
        if self.identity != other.identity {
            Some("identity")
        } else if self.on_behalf_of != other.on_behalf_of {
            Some("on-behalf-of human")
        } else if self.purpose != other.purpose {
            Some("purpose")
        } else if self.action != other.action {
            Some("action")
        } else if self.resource != other.resource {
            Some("resource")
        } else if self.method != other.method || self.path != other.path {
            Some("method and path")
        } else if self.body_sha256 != other.body_sha256 {
            Some("body")
        } else {
            None
        }
    }
}

/// Who may approve for one policy: a person in one of `groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproverRule {
    /// The policy whose refusal the approval lifts.
    pub policy: String,
    /// Its approver groups (`@approvers`, or `[approvals] default_approvers`).
    pub groups: Vec<String>,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Its id.
    pub id: ApprovalId,
    /// Its state, as stored.
    pub state: ApprovalState,
    /// The request it is for.
    pub binding: Binding,
    /// The credential that made the request (a public id or fingerprint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialId>,
    /// Who may approve it: a person satisfying every rule.
    pub approvers: Vec<ApproverRule>,
    /// The decision that asked for it.
    pub requested_by_decision: String,
    /// Unix seconds it was opened.
    pub created_at: i64,
    /// Unix seconds after which it can be neither decided nor used.
    pub expires_at: i64,
    /// The person who granted or denied it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<i64>,
    /// The approver's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The decision that used it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_by_decision: Option<String>,
    /// When, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
}

/// A person's answer to an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Allow the bound request once.
    Grant,
    /// Refuse it.
    Deny,
}

impl Resolution {
    /// The state an approval takes.
    pub fn state(self) -> ApprovalState {
        match self {
            Self::Grant => ApprovalState::Granted,
            Self::Deny => ApprovalState::Denied,
        }
    }

    /// `grant` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Deny => "deny",
        }
    }
}

/// The person answering an approval, as their token showed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// The human (`sub` of a token from an issuer of humans).
    pub human: String,
    /// The issuer that vouched for them.
    pub issuer: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// The credential they presented.
    pub credential: CredentialId,
    /// Whether the token was delegated: someone (an agent) acting for the human.
    pub delegated: bool,
}

impl Approval {
    /// Whether the approval is past its expiry at `now` (Unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }

    /// The state as a reader should see it: `expired` for a pending or granted approval
    /// past its expiry.
    pub fn effective_state(&self, now: i64) -> &'static str {
        match self.state {
            ApprovalState::Pending | ApprovalState::Granted if self.is_expired(now) => "expired",
            s => s.as_str(),
        }
    }

    /// Whether this approval lets the request bound by `binding` through at `now`: it is
    /// granted, unexpired, and for exactly this request. The single-use claim is the
    /// store's ([`ApprovalStore::claim`]).
    pub fn admits(&self, binding: &Binding, now: i64) -> Result<(), String> {
        let id = &self.id;
        match self.state {
            ApprovalState::Granted if self.is_expired(now) => {
                Err(format!("approval `{id}` has expired; ask again"))
            }
            ApprovalState::Granted => match self.binding.difference(binding) {
                None => Ok(()),
                Some(what) => Err(format!(
                    "approval `{id}` was given for another request (its {what} differs); an approval admits only the exact request it was given for"
                )),
            },
            ApprovalState::Pending if self.is_expired(now) => Err(format!(
                "approval `{id}` expired before anyone decided it; ask again"
            )),
            ApprovalState::Pending => Err(format!("approval `{id}` is still pending")),
            ApprovalState::Denied => Err(format!(
                "approval `{id}` was denied by `{}`",
                self.decided_by.as_deref().unwrap_or("an approver")
            )),
            ApprovalState::Used => Err(format!(
                "approval `{id}` was already used (decision `{}`); an approval admits one request",
                self.used_by_decision.as_deref().unwrap_or("?")
            )),
        }
    }

    /// Whether `who` may answer this approval at `now`: it must be pending and unexpired;
    /// the approver a person answering directly (not an agent through a delegated token),
    /// neither the requester nor the human it acts for, not holding the credential that
    /// asked (separation of duties), and in an approver group of every policy the
    /// approval lifts.
    pub fn check_approver(&self, who: &Approver, now: i64) -> Result<(), String> {
        let id = &self.id;
        match self.state {
            ApprovalState::Pending if self.is_expired(now) => {
                return Err(format!(
                    "approval `{id}` has expired; the request must be made again"
                ));
            }
            ApprovalState::Pending => {}
            s => return Err(format!("approval `{id}` is already {}", s.as_str())),
        }
        if who.delegated {
            return Err(format!(
                "`{}` presented a delegated token: an approval is given by a person, not by an agent acting for them",
                who.human
            ));
        }
        if who.human == self.binding.identity.as_str() {
            return Err(format!(
                "`{}` made the request and cannot approve it",
                who.human
            ));
        }
        if self.binding.on_behalf_of.as_deref() == Some(who.human.as_str()) {
            return Err(format!(
                "the request acts for `{}`, who therefore cannot approve it",
                who.human
            ));
        }
        if self.credential.as_ref() == Some(&who.credential) {
            return Err("the credential that made the request cannot approve it".into());
        }
        for rule in &self.approvers {
            if rule.groups.is_empty() {
                return Err(format!(
                    "policy `{}` names no approvers (`@approvers`), so nobody can approve this",
                    rule.policy
                ));
            }
            if !rule.groups.iter().any(|g| who.groups.contains(g)) {
                return Err(format!(
                    "`{}` is not in an approver group of policy `{}` ({})",
                    who.human,
                    rule.policy,
                    rule.groups.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Which approvals to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Only these states (stored states; `pending` includes expired pending ones).
    pub state: Option<ApprovalState>,
    /// Only this requester.
    pub identity: Option<IdentityId>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// Why an approval operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// Not an approval id.
    #[error("`{0}` is not an approval id (`apr_` and 32 hex digits)")]
    BadId(String),
    /// No such approval.
    #[error("no approval `{0}`")]
    NotFound(ApprovalId),
    /// The approval is not in a state that allows the change.
    #[error("approval `{id}` is {state}")]
    Conflict {
        /// The approval.
        id: ApprovalId,
        /// Its state as a reader sees it.
        state: String,
    },
    /// The identity has too many pending approvals.
    #[error("identity `{0}` already has {1} pending approvals; decide or let them expire first")]
    TooMany(IdentityId, u32),
    /// The store failed.
    #[error("the approval store failed: {0}")]
    Store(String),
}

/// A boxed future returned by [`ApprovalStore`] methods.
pub type ApprovalFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ApprovalError>> + Send + 'a>>;

/// Where approvals are kept. Every change is conditional on the state it expects, so
/// concurrent grants, denials and claims resolve to exactly one winner.
pub trait ApprovalStore: Send + Sync {
    /// Opens `approval` (state pending) unless a pending, unexpired one with the same
    /// binding exists, which is returned instead. Refuses when the identity already has
    /// `max_pending` pending approvals. The id is the store's to choose.
    fn open(&self, approval: Approval, max_pending: u32) -> ApprovalFuture<'_, Approval>;
    /// One approval.
    fn get<'a>(&'a self, id: &'a ApprovalId) -> ApprovalFuture<'a, Option<Approval>>;
    /// Grants or denies a pending, unexpired approval.
    fn resolve<'a>(
        &'a self,
        id: &'a ApprovalId,
        resolution: Resolution,
        by: &'a str,
        reason: &'a str,
        now: i64,
    ) -> ApprovalFuture<'a, Approval>;
    /// Marks a granted, unexpired approval used by `decision_id`; `false` when another
    /// request used it first (or it expired).
    fn claim<'a>(
        &'a self,
        id: &'a ApprovalId,
        decision_id: &'a str,
        now: i64,
    ) -> ApprovalFuture<'a, bool>;
    /// Takes back an answer whose record could not be written: the approval is pending
    /// again if it still stands as `by` answered it (and is unused).
    fn withdraw<'a>(
        &'a self,
        id: &'a ApprovalId,
        resolution: Resolution,
        by: &'a str,
    ) -> ApprovalFuture<'a, ()>;
    /// Approvals matching `filter`, newest first.
    fn list<'a>(&'a self, filter: &'a ApprovalFilter) -> ApprovalFuture<'a, Vec<Approval>>;
}

/// The `[approvals]` section of `remit.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long an approval lives, from when it is opened, in seconds.
    pub ttl_s: u64,
    /// The longest `Prefer: wait=N` honoured, in seconds.
    pub max_wait_s: u64,
    /// Most pending approvals one identity may have at once.
    pub max_pending_per_identity: u32,
    /// Approver groups for `@remedy("approval")` policies without `@approvers`.
    pub default_approvers: Vec<String>,
    /// Where approvers decide, shown to clients (default: the admin listener's
    /// `/v1/approvals/<id>`).
    pub decide_url: Option<String>,
    /// Where new approvals are announced, if anywhere.
    pub webhook: Option<crate::config::WebhookUrl>,
    /// The announcement's shape.
    pub format: crate::config::WebhookFormat,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            ttl_s: 900,
            max_wait_s: 60,
            max_pending_per_identity: 64,
            default_approvers: Vec::new(),
            decide_url: None,
            webhook: None,
            format: crate::config::WebhookFormat::Json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            identity: IdentityId::parse("codegen-workflow").unwrap(),
            on_behalf_of: Some("alice".into()),
            purpose: Some(Purpose::parse("code-change").unwrap()),
            action: ActionName::parse("repos.deploy").unwrap(),
            resource: ResourceRef {
                rtype: crate::names::ResourceType::parse("Repo").unwrap(),
                id: "web".into(),
            },
            method: "POST".into(),
            path: "/repos/web/deployments".into(),
            body_sha256: Some("ab".repeat(32)),
        }
    }

    fn approval(state: ApprovalState) -> Approval {
        Approval {
            id: ApprovalId::from_random([7; 16]),
            state,
            binding: binding(),
            credential: Some(CredentialId::parse("codegen-workflow-demo").unwrap()),
            approvers: vec![ApproverRule {
                policy: "codegen.deploy-needs-approval".into(),
                groups: vec!["release-managers".into()],
            }],
            requested_by_decision: "d1".into(),
            created_at: 1000,
            expires_at: 1900,
            decided_by: None,
            decided_at: None,
            reason: None,
            used_by_decision: None,
            used_at: None,
        }
    }

    fn person(name: &str, groups: &[&str]) -> Approver {
        Approver {
            human: name.into(),
            issuer: "demo-humans".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            credential: CredentialId::parse(&format!("jwt-{name}")).unwrap(),
            delegated: false,
        }
    }

    #[test]
    fn ids_parse_strictly() {
        let id = ApprovalId::from_random([0xab; 16]);
        assert_eq!(ApprovalId::parse(id.as_str()).unwrap(), id);
        for bad in [
            "",
            "apr_",
            "apr_ABABABABABABABABABABABABABABABAB",
            "apx_abababababababababababababababab",
            "apr_abababababababababababababababa",
            "apr_abababababababababababababababab0",
            "apr_ababababababababababababababab\u{0}b",
        ] {
            assert!(ApprovalId::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn an_approver_must_be_a_person_in_the_group_and_not_the_requester() {
        let a = approval(ApprovalState::Pending);
        assert_eq!(
            a.check_approver(&person("bob", &["release-managers"]), 1100),
            Ok(())
        );
        let cases = [
            (person("carol", &["support"]), "not in an approver group"),
            (person("alice", &["release-managers"]), "acts for `alice`"),
            (
                person("codegen-workflow", &["release-managers"]),
                "made the request",
            ),
            (
                Approver {
                    delegated: true,
                    ..person("bob", &["release-managers"])
                },
                "delegated token",
            ),
            (
                Approver {
                    credential: CredentialId::parse("codegen-workflow-demo").unwrap(),
                    ..person("bob", &["release-managers"])
                },
                "credential that made the request",
            ),
        ];
        for (who, why) in cases {
            let e = a.check_approver(&who, 1100).unwrap_err();
            assert!(e.contains(why), "{}: {e}", who.human);
        }
        let bob = person("bob", &["release-managers"]);
        assert!(
            a.check_approver(&bob, 1900)
                .unwrap_err()
                .contains("expired")
        );
        for s in [
            ApprovalState::Granted,
            ApprovalState::Denied,
            ApprovalState::Used,
        ] {
            assert!(
                approval(s)
                    .check_approver(&bob, 1100)
                    .unwrap_err()
                    .contains(s.as_str())
            );
        }
        let mut nobody = approval(ApprovalState::Pending);
        nobody.approvers[0].groups.clear();
        assert!(
            nobody
                .check_approver(&bob, 1100)
                .unwrap_err()
                .contains("names no approvers")
        );
    }

    #[test]
    fn a_granted_approval_admits_only_its_exact_request_before_expiry() {
        let a = approval(ApprovalState::Granted);
        assert_eq!(a.admits(&binding(), 1100), Ok(()));
        assert!(a.admits(&binding(), 1900).unwrap_err().contains("expired"));
        let mut other = binding();
        other.body_sha256 = Some("cd".repeat(32));
        assert!(a.admits(&other, 1100).unwrap_err().contains("body differs"));
        let mut other = binding();
        other.resource.id = "api".into();
        assert!(
            a.admits(&other, 1100)
                .unwrap_err()
                .contains("resource differs")
        );
        let mut other = binding();
        other.on_behalf_of = None;
        assert!(a.admits(&other, 1100).unwrap_err().contains("on-behalf-of"));
        for (s, why) in [
            (ApprovalState::Pending, "still pending"),
            (ApprovalState::Denied, "denied"),
            (ApprovalState::Used, "already used"),
        ] {
            assert!(
                approval(s)
                    .admits(&binding(), 1100)
                    .unwrap_err()
                    .contains(why)
            );
        }
        assert_eq!(
            approval(ApprovalState::Pending).effective_state(2000),
            "expired"
        );
        assert_eq!(approval(ApprovalState::Used).effective_state(2000), "used");
    }
}
