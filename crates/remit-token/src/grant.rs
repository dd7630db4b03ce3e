//! What remit issues, decided purely: client credentials for an identity, and RFC 8693
//! token exchange for an actor acting for a human. Never broader, never longer-lived than
//! every input allows: scope is the intersection of what was asked, the human's groups,
//! every actor's boundary and any earlier token's scope; lifetime is the least of the
//! identity's maximum, the service's maximum and the subject token's remaining life.

use remit_core::identity::Identity;
use remit_core::tokens::{Subjects, TokenSettings};
use remit_core::{IdentityId, Purpose, Registry};
use serde::Serialize;

use crate::jwt::{OWN_ISSUER_ID, SubjectKind, VerifiedToken};
use crate::scope::ScopeSet;

/// An OAuth error (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 8707 §2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Malformed or missing parameters.
    #[error("{0}")]
    InvalidRequest(String),
    /// The client could not be authenticated.
    #[error("{0}")]
    InvalidClient(String),
    /// The subject or actor token is not acceptable.
    #[error("{0}")]
    InvalidGrant(String),
    /// Nothing would be left of the scope.
    #[error("{0}")]
    InvalidScope(String),
    /// The resource or audience is not this one.
    #[error("{0}")]
    InvalidTarget(String),
    /// Policy refuses (a disabled human, a chain too long, `may_act`).
    #[error("{0}")]
    AccessDenied(String),
    /// remit cannot issue now (a token that could not be signed or recorded).
    #[error("{0}")]
    Unavailable(String),
}

impl GrantError {
    /// The OAuth `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::AccessDenied(_) => "access_denied",
            Self::Unavailable(_) => "temporarily_unavailable",
        }
    }
}

/// A nested actor claim (RFC 8693 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Act {
    /// The actor.
    pub sub: String,
    /// The actor before it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Act>>,
}

impl Act {
    /// The chain `actors` (outermost first) as nested claims.
    pub fn chain(actors: &[String]) -> Option<Self> {
        let mut out: Option<Act> = None;
        for a in actors.iter().rev() {
            out = Some(Act {
                sub: a.clone(),
                act: out.map(Box::new),
            });
        }
        out
    }
}

/// The claims of an access token remit issues (RFC 9068).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessClaims {
    /// remit.
    pub iss: String,
    /// The identity, or for delegation the human.
    pub sub: String,
    /// This resource.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Not before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
    /// A unique id.
    pub jti: String,
    /// The identity the token was issued to (the presenter).
    pub client_id: String,
    /// Space-separated actions.
    pub scope: String,
    /// The declared purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The actor chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<Act>,
    /// For delegation: the issuer of humans that vouched for `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remit_human_issuer: Option<String>,
    /// For delegation: the human's groups, as that issuer stated them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

/// What a client asked for besides its credentials.
#[derive(Debug, Clone, Default)]
pub struct GrantRequest<'a> {
    /// `scope`.
    pub scope: Option<&'a str>,
    /// `purpose` (a remit extension).
    pub purpose: Option<&'a str>,
    /// `resource` (RFC 8707).
    pub resource: Option<&'a str>,
    /// `audience` (RFC 8693).
    pub audience: Option<&'a str>,
}

/// A decided grant: the claims to sign and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The claims.
    pub claims: AccessClaims,
    /// The granted scope.
    pub scope: ScopeSet,
    /// Lifetime in seconds.
    pub expires_in: i64,
}

fn own_issuer(settings: &TokenSettings) -> Result<&str, GrantError> {
    settings.issuer.as_deref().ok_or_else(|| {
        GrantError::InvalidRequest("remit issues no tokens: `tokens.issuer` is not set".into())
    })
}

fn audience(settings: &TokenSettings, req: &GrantRequest<'_>) -> Result<String, GrantError> {
    for asked in [req.resource, req.audience].into_iter().flatten() {
        if asked != settings.audience {
            return Err(GrantError::InvalidTarget(format!(
                "`{}` is not a resource remit issues tokens for",
                asked.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(settings.audience.clone())
}

fn requested_scope(req: &GrantRequest<'_>) -> Result<ScopeSet, GrantError> {
    match req.scope {
        None => Ok(ScopeSet::all()),
        Some(s) => ScopeSet::parse(s).map_err(|e| GrantError::InvalidScope(e.to_string())),
    }
}

fn purpose(identity: &Identity, asked: Option<&str>) -> Result<Option<String>, GrantError> {
    let Some(p) = asked else { return Ok(None) };
    let parsed =
        Purpose::parse(p).map_err(|e| GrantError::InvalidRequest(format!("purpose: {e}")))?;
    if !identity.purposes.contains(&parsed) {
        return Err(GrantError::InvalidScope(format!(
            "purpose `{parsed}` is not one identity `{}` may declare",
            identity.id
        )));
    }
    Ok(Some(parsed.to_string()))
}

/// The longest lifetime a token for `identity` may have.
pub fn max_lifetime(settings: &TokenSettings, identity: &Identity) -> i64 {
    let own = identity.limits.token_ttl_s.unwrap_or(settings.max_ttl_s);
    i64::from(settings.default_ttl_s.min(own).min(settings.max_ttl_s))
}

fn active(identity: &Identity, now: i64) -> Result<(), GrantError> {
    let at = time::OffsetDateTime::from_unix_timestamp(now)
        .map_err(|_| GrantError::InvalidRequest("bad clock".into()))?;
    match identity.inactive_reason(at) {
        Some(why) => Err(GrantError::InvalidClient(why)),
        None => Ok(()),
    }
}

/// Why a human may not act now, if they may not: unknown issuer of humans, or disabled.
pub fn human_refusal(settings: &TokenSettings, issuer_id: &str, human: &str) -> Option<String> {
    let Some(issuer) = settings.issuers.iter().find(|i| i.id == issuer_id) else {
        return Some(format!(
            "issuer `{issuer_id}` is not an issuer of humans remit trusts"
        ));
    };
    match &issuer.subjects {
        Subjects::Humans { disabled, .. } if disabled.contains(human) => {
            Some(format!("human `{human}` is disabled"))
        }
        Subjects::Humans { .. } => None,
        Subjects::Identities { .. } => Some(format!(
            "issuer `{issuer_id}` speaks for identities, not humans"
        )),
    }
}

/// The actions a human may reach: the union of their groups' boundaries.
pub fn human_scope(settings: &TokenSettings, issuer_id: &str, groups: &[String]) -> ScopeSet {
    let Some(Subjects::Humans { groups: known, .. }) = settings
        .issuers
        .iter()
        .find(|i| i.id == issuer_id)
        .map(|i| &i.subjects)
    else {
        return ScopeSet::default();
    };
    let mut entries = Vec::new();
    for g in groups {
        if let Some(b) = known.get(g) {
            entries.extend(ScopeSet::from_boundary(b).entries());
        }
    }
    ScopeSet::parse(&entries.join(" ")).unwrap_or_default()
}

/// Client credentials (RFC 6749 §4.4) for an authenticated `identity`.
pub fn client_credentials(
    settings: &TokenSettings,
    identity: &Identity,
    req: &GrantRequest<'_>,
    now: i64,
    jti: String,
) -> Result<Grant, GrantError> {
    let iss = own_issuer(settings)?;
    active(identity, now)?;
    let aud = audience(settings, req)?;
    let scope = requested_scope(req)?.intersect(&ScopeSet::from_boundary(&identity.boundary));
    if scope.is_empty() {
        return Err(GrantError::InvalidScope(format!(
            "nothing asked for is inside identity `{}`'s boundary",
            identity.id
        )));
    }
    let purpose = purpose(identity, req.purpose)?;
    let ttl = max_lifetime(settings, identity);
    Ok(Grant {
        claims: AccessClaims {
            iss: iss.to_owned(),
            sub: identity.id.to_string(),
            aud,
            exp: now + ttl,
            nbf: now,
            iat: now,
            jti,
            client_id: identity.id.to_string(),
            scope: scope.to_string(),
            purpose,
            act: None,
            remit_human_issuer: None,
            groups: None,
        },
        scope,
        expires_in: ttl,
    })
}

/// Token exchange (RFC 8693): `actor` acts for the human in `subject`.
///
/// `subject` is a human's token from a trusted issuer of humans, or a delegated token remit
/// issued earlier (the chain grows by one). `actor_token` is the actor's own verified token
/// when it presented one rather than an API key; its scope narrows the result too.
#[allow(clippy::too_many_arguments)]
pub fn exchange(
    settings: &TokenSettings,
    registry: &Registry,
    subject: &VerifiedToken,
    actor: &Identity,
    actor_token: Option<&VerifiedToken>,
    req: &GrantRequest<'_>,
    now: i64,
    jti: String,
) -> Result<Grant, GrantError> {
    let iss = own_issuer(settings)?;
    active(actor, now)?;
    let SubjectKind::Human {
        issuer: human_issuer,
        groups,
    } = &subject.kind
    else {
        return Err(GrantError::InvalidGrant(
            "the subject token does not name a human".into(),
        ));
    };
    if let Some(why) = human_refusal(settings, human_issuer, &subject.subject) {
        return Err(GrantError::AccessDenied(why));
    }
    if let Some(allowed) = &subject.may_act
        && allowed != actor.id.as_str()
    {
        return Err(GrantError::AccessDenied(format!(
            "the subject token allows only `{}` to act for `{}`",
            allowed.chars().take(64).collect::<String>(),
            subject.subject
        )));
    }
    let mut actors = Vec::with_capacity(subject.actors.len() + 1);
    actors.push(actor.id.to_string());
    actors.extend(subject.actors.iter().cloned());
    if actors.len() > usize::from(settings.max_chain_depth) {
        return Err(GrantError::AccessDenied(format!(
            "the actor chain would be {} long; at most {} is allowed",
            actors.len(),
            settings.max_chain_depth
        )));
    }
    // Every earlier actor must still be registered and active: suspending one ends the chain.
    let mut scope = requested_scope(req)?
        .intersect(&human_scope(settings, human_issuer, groups))
        .intersect(&ScopeSet::from_boundary(&actor.boundary));
    for prior in &subject.actors {
        let id = IdentityId::parse(prior).map_err(|_| {
            GrantError::InvalidGrant(format!("actor `{prior}` is not an identity id"))
        })?;
        let identity = registry
            .get(&id)
            .ok_or_else(|| GrantError::InvalidGrant(format!("actor `{id}` is not registered")))?;
        active(identity, now).map_err(|e| GrantError::InvalidGrant(e.to_string()))?;
        scope = scope.intersect(&ScopeSet::from_boundary(&identity.boundary));
    }
    // A token remit issued carries a scope that bounds everything derived from it.
    if subject.issuer_id == OWN_ISSUER_ID {
        let prior = ScopeSet::parse(&subject.scope.clone().unwrap_or_default().join(" "))
            .map_err(|e| GrantError::InvalidGrant(e.to_string()))?;
        scope = scope.intersect(&prior);
    }
    if let Some(t) = actor_token
        && t.issuer_id == OWN_ISSUER_ID
    {
        let own = ScopeSet::parse(&t.scope.clone().unwrap_or_default().join(" "))
            .map_err(|e| GrantError::InvalidGrant(e.to_string()))?;
        scope = scope.intersect(&own);
    }
    if scope.is_empty() {
        return Err(GrantError::InvalidScope(format!(
            "nothing asked for is within both `{}`'s groups and `{}`'s boundary",
            subject.subject, actor.id
        )));
    }
    let purpose = purpose(actor, req.purpose)?;
    if subject.issuer_id == OWN_ISSUER_ID
        && let Some(prior) = &subject.purpose
        && purpose.as_ref().is_some_and(|p| p != prior)
    {
        return Err(GrantError::InvalidScope(format!(
            "the delegation was for purpose `{prior}`; a later actor cannot change it"
        )));
    }
    let purpose = purpose.or_else(|| {
        subject
            .purpose
            .clone()
            .filter(|_| subject.issuer_id == OWN_ISSUER_ID)
    });
    let remaining = subject.exp - now;
    let ttl = max_lifetime(settings, actor).min(remaining);
    if ttl <= 0 {
        return Err(GrantError::InvalidGrant(
            "the subject token has expired".into(),
        ));
    }
    Ok(Grant {
        claims: AccessClaims {
            iss: iss.to_owned(),
            sub: subject.subject.clone(),
            aud: audience(settings, req)?,
            exp: now + ttl,
            nbf: now,
            iat: now,
            jti,
            client_id: actor.id.to_string(),
            scope: scope.to_string(),
            purpose,
            act: Act::chain(&actors),
            remit_human_issuer: Some(human_issuer.clone()),
            groups: Some(groups.clone()),
        },
        scope,
        expires_in: ttl,
    })
}
