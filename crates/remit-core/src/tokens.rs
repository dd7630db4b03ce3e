//! Token settings as types: remit's own token service (`[tokens]`), the external JWT
//! issuers it trusts (`[[issuer]]`) and the SPIFFE trust domains whose JWT-SVIDs it accepts
//! (`[[trust_domain]]`), with the limits every token reader keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use crate::identity::Boundary;
use crate::names::TrustDomain;

/// Most external issuers.
pub const MAX_ISSUERS: usize = 64;
/// Most SPIFFE trust domains whose JWT-SVIDs are accepted.
pub const MAX_TRUST_DOMAINS: usize = 64;
/// Most groups one issuer of humans maps to boundaries.
pub const MAX_GROUPS: usize = 256;
/// Longest URL accepted for an issuer, audience or key set.
pub const MAX_URL_LEN: usize = 512;
/// Longest string claim read from a token (`sub`, `jti`, a group, `purpose`).
pub const MAX_CLAIM_LEN: usize = 256;
/// The most actors a chain may ever hold, whatever the configuration says.
pub const MAX_CHAIN_DEPTH: usize = 8;
/// The largest clock skew an issuer may be granted, in seconds.
pub const MAX_SKEW_S: u32 = 300;

/// An asymmetric JWS algorithm an issuer may sign with. Symmetric (`HS*`) and `none` are
/// not representable: a verifier holding only public keys can never be tricked into
/// treating one as an HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

impl JwtAlg {
    /// The algorithms an RSA key signs with.
    pub const RSA: &'static [Self] = &[
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
    ];

    /// Every algorithm.
    pub const ALL: &'static [Self] = &[
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
    ];

    /// The JOSE name (`RS256`, `EdDSA`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE name, refusing `none` and every symmetric algorithm.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not an accepted algorithm: use one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA")
            })
    }
}

impl fmt::Display for JwtAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a JWT claim (`sub`, `client_id`, `groups`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimName(String);

impl ClaimName {
    /// Parses a claim name: 1 to 64 letters, digits, `_`, `-`, `.`, `:` or `/`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty()
            || s.len() > 64
            || !s
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_-.:/".contains(&c))
        {
            return Err(format!("`{s}` is not a claim name"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who an issuer's tokens speak for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subjects {
    /// Registered identities: `claim` holds the identity id.
    Identities {
        /// The claim naming the identity (default `sub`).
        claim: ClaimName,
    },
    /// Humans: `sub` is the human, `groups_claim` lists their groups, and each group's
    /// boundary is what its members may reach.
    Humans {
        /// The claim listing groups (default `groups`).
        groups_claim: ClaimName,
        /// Group name → the most its members may do.
        groups: BTreeMap<String, Boundary>,
        /// Humans whose tokens fail at once, whatever their expiry.
        disabled: BTreeSet<String>,
    },
}

/// Where an issuer's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS file, relative to the configuration file's directory, read at start-up.
    File(PathBuf),
    /// A JWKS document written in the configuration itself (`jwks = '''{...}'''`).
    Inline(String),
    /// A JWKS URL, fetched and refreshed by the gateway.
    Uri(String),
    /// OpenID Connect discovery at `{issuer}/.well-known/openid-configuration`.
    Discovery,
}

/// One external issuer remit trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// The issuer's short id, used in records and errors.
    pub id: String,
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must carry: this resource.
    pub audience: String,
    /// The algorithms it signs with.
    pub algorithms: Vec<JwtAlg>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub skew_s: u32,
    /// Whom its tokens name.
    pub subjects: Subjects,
    /// Where its keys come from.
    pub keys: KeySource,
    /// Whether `nbf` must be present.
    pub require_nbf: bool,
    /// Whether each `jti` may be presented once only.
    pub single_use_jti: bool,
}

/// Where a trust domain's SPIFFE bundle (its JWT authorities) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// A SPIFFE bundle (a JWKS) in a file, relative to the configuration file's directory,
    /// read at start-up.
    File(PathBuf),
    /// A SPIFFE bundle endpoint, fetched and refreshed by the gateway.
    Url(String),
}

/// A SPIFFE trust domain whose JWT-SVIDs remit accepts as credentials of the identities
/// holding their SPIFFE IDs (`[[trust_domain]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomainSettings {
    /// The trust domain (`example.org`): a JWT-SVID whose `sub` is in it is checked with
    /// its bundle.
    pub name: TrustDomain,
    /// The `aud` its JWT-SVIDs must carry: this resource.
    pub audience: String,
    /// The algorithms its JWT authorities sign with.
    pub algorithms: Vec<JwtAlg>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub skew_s: u32,
    /// Where its bundle comes from.
    pub bundle: BundleSource,
}

impl TrustDomainSettings {
    /// The name its key set goes by in errors and records: `spiffe://<trust domain>`,
    /// which no `[[issuer]]` id can be.
    pub fn key_set_id(&self) -> String {
        format!("spiffe://{}", self.name)
    }
}

/// remit's own token service and the issuers it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// remit's own `iss`; `None` turns the token endpoint off.
    pub issuer: Option<String>,
    /// This resource: the `aud` every token must carry (default `gateway.public_url`).
    pub audience: String,
    /// Lifetime of issued tokens when the identity sets none.
    pub default_ttl_s: u32,
    /// The longest lifetime any issued token may have.
    pub max_ttl_s: u32,
    /// The longest actor chain an exchange may produce.
    pub max_chain_depth: u8,
    /// Clock skew allowed on remit's own tokens.
    pub skew_s: u32,
    /// Whether remit's own tokens are single-use.
    pub single_use: bool,
    /// External issuers.
    pub issuers: Vec<IssuerSettings>,
    /// SPIFFE trust domains whose JWT-SVIDs are accepted.
    pub trust_domains: Vec<TrustDomainSettings>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: String::new(),
            default_ttl_s: 300,
            max_ttl_s: 3600,
            max_chain_depth: 3,
            skew_s: 60,
            single_use: false,
            issuers: Vec::new(),
            trust_domains: Vec::new(),
        }
    }
}
