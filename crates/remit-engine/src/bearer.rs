//! JWT bearer credentials in the pipeline: verify (pure, against key sets already held),
//! map the token to the identity that presents it and, for a delegated token, to the human
//! it acts for, and keep what later ceilings need (the token's scope, the human's reach, the
//! actor chain, a single-use `jti`). A JWT-SVID names a SPIFFE ID: the identity holding it
//! as a `spiffe` credential presents it, with authority `own`, recorded by that credential's
//! id — as a peer's verified SPIFFE ID is.
//!
//! Standing is checked at every request against the current registry and issuer settings,
//! so suspending an identity or disabling a human makes their tokens fail at once.

use remit_core::tokens::TokenSettings;
use remit_core::{ActionName, Authn, BearerToken, CredentialId, IdentityId, Purpose, Registry};
use remit_token::grant::{human_refusal, human_scope};
use remit_token::jwt::{SubjectKind, Verifier};
use remit_token::scope::ScopeSet;
use remit_token::{Authenticator, AuthnResult, PeerIdentity};
use time::OffsetDateTime;

/// The pseudo-policy id when an action is outside the token's scope.
pub const TOKEN_SCOPE_POLICY: &str = "remit.token_scope";
/// The pseudo-policy id when an action is outside what the human (or an earlier actor in
/// the chain) may reach: delegated authority never exceeds the human's.
pub const DELEGATION_POLICY: &str = "remit.delegation";

/// What a verified token adds to a request's facts.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    /// The token's scope, when it carries one.
    pub scope: Option<ScopeSet>,
    /// For delegation: the human.
    pub on_behalf_of: Option<String>,
    /// For delegation: the actors, the presenter first.
    pub actors: Vec<String>,
    /// For delegation: what the human may reach now.
    pub human_scope: Option<ScopeSet>,
    /// For delegation: the human's groups, as their issuer stated them (their team, for an
    /// approved record set drawn from `human_groups`).
    pub human_groups: Option<Vec<String>>,
    /// The purpose the token was issued for.
    pub purpose: Option<Purpose>,
    /// A single-use token's issuer, `jti` and the last second it can be accepted (its expiry
    /// plus the most skew), claimed when the request is recorded.
    pub single_use: Option<(String, String, i64)>,
}

impl TokenFacts {
    /// Why the token's own limits refuse `action`, with the pseudo-policy that refuses it.
    pub fn refuses(
        &self,
        action: &ActionName,
        registry: &Registry,
    ) -> Option<(&'static str, String)> {
        if let Some(scope) = &self.scope
            && !scope.allows(action.as_str())
        {
            return Some((
                TOKEN_SCOPE_POLICY,
                format!("`{action}` is outside the token's scope"),
            ));
        }
        if let (Some(human), Some(reach)) = (&self.on_behalf_of, &self.human_scope)
            && !reach.allows(action.as_str())
        {
            return Some((
                DELEGATION_POLICY,
                format!(
                    "`{action}` is beyond what `{human}` may do, so no one acting for them may do it"
                ),
            ));
        }
        for a in self.actors.iter().skip(1) {
            let allowed = IdentityId::parse(a)
                .ok()
                .and_then(|id| registry.get(&id))
                .is_some_and(|i| i.boundary.allows(action));
            if !allowed {
                return Some((
                    DELEGATION_POLICY,
                    format!(
                        "`{action}` is outside the boundary of `{a}`, earlier in the actor chain"
                    ),
                ));
            }
        }
        None
    }
}

/// A token's public id for the record: `jwt:<issuer>:<jti>`, or a fingerprint.
fn credential_id(issuer: &str, jti: Option<&str>, secret: &str) -> CredentialId {
    jti.and_then(|j| CredentialId::parse(&format!("jwt:{issuer}:{j}")).ok())
        .unwrap_or_else(|| remit_token::fingerprint(secret))
}

/// Authenticates a JWT. `slot` holds the credential id the result refers to; `authn`
/// knows which identity holds a JWT-SVID's SPIFFE ID.
pub fn authenticate<'r>(
    verifier: &Verifier,
    settings: &TokenSettings,
    authn: &Authenticator,
    registry: &'r Registry,
    token: &BearerToken,
    now: OffsetDateTime,
    slot: &'r mut Option<CredentialId>,
) -> (AuthnResult<'r>, Option<String>, Option<TokenFacts>) {
    let secret = token.expose_secret();
    let refused = |slot: &'r mut Option<CredentialId>, id: CredentialId, why: String| {
        *slot = Some(id);
        (
            AuthnResult {
                authn: Authn::Refused,
                credential: slot.as_ref(),
            },
            Some(why),
            None,
        )
    };
    let v = match verifier.verify(secret, now.unix_timestamp()) {
        Ok(v) => v,
        Err(e) => {
            return refused(
                slot,
                remit_token::fingerprint(secret),
                format!("the bearer token is refused: {e}"),
            );
        }
    };
    let mut cred = credential_id(&v.issuer_id, v.jti.as_deref(), secret);
    // The presenter: the outermost actor of a delegation, else the subject itself.
    let (presenter, on_behalf_of, human_reach, human_groups) = match (&v.kind, v.actors.first()) {
        (SubjectKind::Identity, None) => (v.subject.clone(), None, None, None),
        // A JWT-SVID: the identity holding its SPIFFE ID, recorded by the `spiffe`
        // credential's id; an unregistered SPIFFE ID is refused like any unknown credential.
        (SubjectKind::Spiffe { spiffe_id }, None) => match authn.peer_identity(spiffe_id) {
            PeerIdentity::Registered {
                identity,
                credential,
            } => {
                cred = credential.clone();
                (identity.to_string(), None, None, None)
            }
            PeerIdentity::Unknown => {
                return refused(
                    slot,
                    remit_token::fingerprint(secret),
                    format!(
                        "the JWT-SVID's SPIFFE ID `{spiffe_id}` is not registered to any identity"
                    ),
                );
            }
        },
        (SubjectKind::Spiffe { .. }, Some(_)) => {
            return refused(slot, cred, "a JWT-SVID cannot carry an actor chain".into());
        }
        (SubjectKind::Human { issuer, groups }, Some(first)) => {
            if let Some(why) = human_refusal(settings, issuer, &v.subject) {
                return refused(slot, cred, why);
            }
            (
                first.clone(),
                Some(v.subject.clone()),
                Some(human_scope(settings, issuer, groups)),
                Some(groups.clone()),
            )
        }
        (SubjectKind::Human { .. }, None) => {
            return refused(
                slot,
                cred,
                format!(
                    "`{}` is a human's token; an agent acting for them exchanges it at `/oauth2/token` first",
                    v.subject
                ),
            );
        }
        (SubjectKind::Identity, Some(_)) => {
            return refused(
                slot,
                cred,
                "an identity's token cannot carry an actor chain".into(),
            );
        }
    };
    for actor in v.actors.iter().chain(std::iter::once(&presenter)) {
        let found = IdentityId::parse(actor)
            .ok()
            .and_then(|id| registry.get(&id));
        let Some(identity) = found else {
            return refused(slot, cred, format!("identity `{actor}` is not registered"));
        };
        if let Some(why) = identity.inactive_reason(now) {
            return refused(slot, cred, why);
        }
    }
    let purpose = match v.purpose.as_deref().map(Purpose::parse) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return refused(slot, cred, format!("the token's purpose: {e}")),
    };
    let scope = match &v.scope {
        None => None,
        Some(items) => match ScopeSet::parse(&items.join(" ")) {
            Ok(s) => Some(s),
            // An issuer's scopes that are not actions (`openid`) grant no action.
            Err(_) => Some(ScopeSet::default()),
        },
    };
    let single_use = match (&v.jti, v.single_use) {
        // Claimed until the token can no longer be accepted: its expiry plus the most clock
        // skew any issuer may be given, so a late presentation within the skew is still a
        // replay.
        (Some(j), true) => Some((
            v.issuer_id.clone(),
            j.clone(),
            v.exp
                .saturating_add(i64::from(remit_core::tokens::MAX_SKEW_S)),
        )),
        _ => None,
    };
    let facts = TokenFacts {
        scope,
        on_behalf_of,
        actors: v.actors.clone(),
        human_scope: human_reach,
        human_groups,
        purpose,
        single_use,
    };
    let Some(identity) = IdentityId::parse(&presenter)
        .ok()
        .and_then(|id| registry.get(&id))
    else {
        return refused(
            slot,
            cred,
            format!("identity `{presenter}` is not registered"),
        );
    };
    let credential: &'r CredentialId = slot.insert(cred);
    (
        AuthnResult {
            authn: Authn::Identity {
                identity,
                credential,
            },
            credential: Some(credential),
        },
        None,
        Some(facts),
    )
}

/// Reads the person answering an approval from their token: a human's token from an issuer
/// of humans, verified like any other, whose human is not disabled. A delegated token (an
/// agent acting for the human) is returned marked as such, for the approval to refuse.
/// On refusal, the credential id to record and why.
pub fn approver(
    verifier: &Verifier,
    settings: &TokenSettings,
    token: &BearerToken,
    now: OffsetDateTime,
) -> Result<remit_core::approval::Approver, (CredentialId, String)> {
    let secret = token.expose_secret();
    let v = verifier.verify(secret, now.unix_timestamp()).map_err(|e| {
        (
            remit_token::fingerprint(secret),
            format!("the approver's token is refused: {e}"),
        )
    })?;
    let credential = credential_id(&v.issuer_id, v.jti.as_deref(), secret);
    let SubjectKind::Human { issuer, groups } = v.kind else {
        return Err((
            credential,
            format!(
                "`{}` is an identity: an approval is given by a person, with a token from an issuer of humans",
                v.subject
            ),
        ));
    };
    if let Some(why) = human_refusal(settings, &issuer, &v.subject) {
        return Err((credential, why));
    }
    Ok(remit_core::approval::Approver {
        human: v.subject,
        issuer,
        groups,
        credential,
        delegated: !v.actors.is_empty(),
    })
}
