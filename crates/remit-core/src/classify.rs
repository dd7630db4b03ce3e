//! Classification: class, authority and purpose of a request, from who authenticated it
//! and what it declared.

use crate::identity::Identity;
use crate::mcp::McpMessage;
use crate::names::{CredentialId, Purpose};
use crate::vocab::{Authority, Class, Principal};

/// The outcome of authentication.
#[derive(Debug, Clone, Copy)]
pub enum Authn<'a> {
    /// No credential was presented.
    Anonymous,
    /// A credential was presented and maps to an active identity.
    Identity {
        /// The identity.
        identity: &'a Identity,
        /// The credential that matched.
        credential: &'a CredentialId,
    },
    /// A credential was presented but does not admit an identity.
    Refused,
}

/// How a request is treated, before policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification<'a> {
    /// The Cedar principal.
    pub principal: Principal,
    /// The identity behind it, when authenticated.
    pub identity: Option<&'a Identity>,
    /// The class.
    pub class: Class,
    /// The authority.
    pub authority: Authority,
    /// The declared purpose.
    pub purpose: Option<Purpose>,
    /// Whether the purpose is one the identity may declare.
    pub purpose_allowed: bool,
}

/// Why a request's declared purpose could not be read (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurposeError {
    /// The `Remit-Purpose` header and MCP `_meta` disagree.
    #[error("`Remit-Purpose` says `{header}` but the MCP message's `_meta` says `{meta}`")]
    Conflict {
        /// From the header.
        header: String,
        /// From `_meta`.
        meta: String,
    },
    /// `_meta` carries a purpose that is not a valid name.
    #[error("the MCP message's purpose: {0}")]
    Invalid(String),
}

/// The declared purpose: `Remit-Purpose`, or `_meta` on an MCP message; both must agree.
pub fn declared_purpose(
    header: Option<&Purpose>,
    mcp: Option<&McpMessage>,
) -> Result<Option<Purpose>, PurposeError> {
    let meta = match mcp.and_then(|m| m.purpose.as_deref()) {
        None => None,
        Some(s) => Some(Purpose::parse(s).map_err(|e| PurposeError::Invalid(e.to_string()))?),
    };
    match (header, meta) {
        (Some(h), Some(m)) if *h != m => Err(PurposeError::Conflict {
            header: h.to_string(),
            meta: m.to_string(),
        }),
        (Some(h), _) => Ok(Some(h.clone())),
        (None, m) => Ok(m),
    }
}

/// Classifies an authenticated request.
pub fn classify<'a>(authn: Authn<'a>, purpose: Option<Purpose>) -> Classification<'a> {
    match authn {
        Authn::Identity { identity, .. } => {
            let purpose_allowed = purpose
                .as_ref()
                .is_some_and(|p| identity.purposes.contains(p));
            Classification {
                principal: Principal::Identity(identity.id.clone()),
                identity: Some(identity),
                class: identity.kind.class(),
                authority: Authority::own(),
                purpose,
                purpose_allowed,
            }
        }
        Authn::Anonymous | Authn::Refused => Classification {
            principal: Principal::Unclassified,
            identity: None,
            class: Class::Unclassified,
            authority: Authority::none(),
            purpose,
            purpose_allowed: false,
        },
    }
}
