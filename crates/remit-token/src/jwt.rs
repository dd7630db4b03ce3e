//! JWT bearer tokens: a pure verifier over key sets handed to it.
//!
//! The verifier does no network IO (Architecture Invariant 6): key sets arrive through
//! [`Verifier::set_keys`], from a file read at start-up, from the gateway's refresher, or
//! from remit's own signing keys. An issuer with no key set is a deny (fail closed).
//!
//! What it refuses, before any signature is checked: a token over [`MAX_TOKEN_BYTES`], a
//! header with anything but `alg`, `typ` and `kid` (so `jku`, `x5u`, `x5c` and an embedded
//! `jwk` never choose the key), `alg: none` and every symmetric algorithm (only asymmetric
//! [`JwtAlg`]s exist), a `kid` outside `[A-Za-z0-9._-]`, duplicated JSON members, and
//! non-canonical base64. After the signature: `iss`, `aud` and `exp` required and typed
//! (integers, not strings), `nbf` and `iat` typed when present, a bounded clock skew, and
//! the audience this resource.
//!
//! JWT-SVIDs (the SPIFFE JWT-SVID standard) take the same path with one difference: who
//! vouches for them. A token whose `iss` is remit's or a configured issuer's is that
//! issuer's, whatever its `sub`; only a token whose `iss` is absent or no issuer's, and
//! whose `sub` is a SPIFFE ID in a configured trust domain, is a JWT-SVID, checked with that
//! trust domain's bundle ([`Verifier::set_bundle`], [`KeySet::from_spiffe_bundle`]), with
//! `typ` `JWT` or `JOSE` when present. Everything else — header allow-list, `kid` (remit
//! requires one, though the standard makes it optional), typed `exp`, `aud` — is shared.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use remit_core::SpiffeId;
use remit_core::tokens::{
    IssuerSettings, JwtAlg, MAX_CHAIN_DEPTH, MAX_CLAIM_LEN, MAX_SKEW_S, Subjects, TokenSettings,
    TrustDomainSettings,
};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest decoded JOSE header, in bytes.
pub const MAX_HEADER_BYTES: usize = 1024;
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Largest SPIFFE bundle accepted, in bytes (its X.509 authorities carry certificates).
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// Most keys of any use a SPIFFE bundle may list (at most [`MAX_KEYS_PER_SET`] are kept).
pub const MAX_BUNDLE_ENTRIES: usize = 128;
/// Most keys kept from one key set.
pub const MAX_KEYS_PER_SET: usize = 32;
/// Longest `kid`.
pub const MAX_KID_LEN: usize = 128;
/// Most audiences in `aud`, groups in a groups claim, or entries in `scope`.
pub const MAX_LIST: usize = 64;
/// The issuer id under which remit's own signing keys are held.
pub const OWN_ISSUER_ID: &str = "remit";

/// `typ` values of an access token (RFC 9068), compared case-insensitively.
const AT_JWT: &[&str] = &["at+jwt", "application/at+jwt"];

/// Why a token was refused. Messages never hold the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url segments of JSON.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// A JSON member appears twice.
    #[error("the token's {part} repeats the member `{name}`")]
    Duplicate {
        /// `header` or `payload`.
        part: &'static str,
        /// The member.
        name: String,
    },
    /// A header member that could choose the key or change processing.
    #[error("the token's header carries `{0}`, which remit never honours")]
    ForbiddenHeader(String),
    /// `alg` is `none`, symmetric or unknown.
    #[error("algorithm `{0}` is not accepted")]
    UnsupportedAlg(String),
    /// `alg` is not one the issuer signs with.
    #[error("issuer `{issuer}` does not sign with `{alg}`")]
    AlgNotAllowed {
        /// The issuer's id.
        issuer: String,
        /// The algorithm.
        alg: JwtAlg,
    },
    /// `kid` missing or outside its alphabet.
    #[error("the token's `kid` is missing or not a key id")]
    BadKid,
    /// `typ` is not a JWT access token type.
    #[error("the token's `typ` `{0}` is not accepted")]
    BadType(String),
    /// No configured issuer has this `iss`.
    #[error("issuer `{0}` is not trusted")]
    UnknownIssuer(String),
    /// A JWT-SVID whose `sub` is in a trust domain that is not configured.
    #[error("trust domain `{0}` is not trusted")]
    UnknownTrustDomain(String),
    /// The issuer's key set is missing or could not be fetched (fail closed).
    #[error("the key set of issuer `{0}` is unavailable, so its tokens are refused")]
    KeysUnavailable(String),
    /// The key set has no key with this `kid`.
    #[error("issuer `{issuer}` has no key `{kid}`")]
    UnknownKey {
        /// The issuer's id.
        issuer: String,
        /// The key id.
        kid: String,
    },
    /// The key with this `kid` does not sign with the header's `alg`.
    #[error("key `{kid}` does not sign with `{alg}`")]
    KeyAlgMismatch {
        /// The key id.
        kid: String,
        /// The algorithm.
        alg: JwtAlg,
    },
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// A required claim is absent.
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or is out of bounds.
    #[error("the token's `{claim}` claim {why}")]
    BadClaim {
        /// The claim.
        claim: String,
        /// What is wrong.
        why: &'static str,
    },
    /// `exp` has passed.
    #[error("the token expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `aud` does not name this resource.
    #[error("the token's audience is not this resource (`{0}`)")]
    WrongAudience(String),
    /// The `act` chain is deeper than any chain remit accepts.
    #[error("the token's actor chain is deeper than {MAX_CHAIN_DEPTH}")]
    ChainTooLong,
}

/// Shows attacker-supplied text in an error: at most 64 printable characters.
pub(crate) fn shown(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect::<String>()
}

fn jws_alg(a: JwtAlg) -> Algorithm {
    match a {
        JwtAlg::Rs256 => Algorithm::RS256,
        JwtAlg::Rs384 => Algorithm::RS384,
        JwtAlg::Rs512 => Algorithm::RS512,
        JwtAlg::Ps256 => Algorithm::PS256,
        JwtAlg::Ps384 => Algorithm::PS384,
        JwtAlg::Ps512 => Algorithm::PS512,
        JwtAlg::Es256 => Algorithm::ES256,
        JwtAlg::Es384 => Algorithm::ES384,
        JwtAlg::EdDsa => Algorithm::EdDSA,
    }
}

/// A JSON object whose members are each present once: duplicated members are how two
/// parsers are made to disagree about one token.
struct UniqueObject(Map<String, Value>, Option<String>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<UniqueObject, A::Error> {
                let mut map = Map::new();
                let mut dup = None;
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if map.contains_key(&k) && dup.is_none() {
                        dup = Some(k.clone());
                    }
                    map.insert(k, v);
                }
                Ok(UniqueObject(map, dup))
            }
        }
        d.deserialize_map(V)
    }
}

fn b64(segment: &str, max: usize) -> Result<Vec<u8>, JwtError> {
    if segment.len() > max.div_ceil(3) * 4 {
        return Err(JwtError::TooLarge);
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed("a segment is not canonical base64url"))
}

fn object(bytes: &[u8], part: &'static str) -> Result<Map<String, Value>, JwtError> {
    let UniqueObject(map, dup) = serde_json::from_slice(bytes)
        .map_err(|_| JwtError::Malformed("a segment is not a JSON object"))?;
    match dup {
        Some(name) => Err(JwtError::Duplicate {
            part,
            name: shown(&name),
        }),
        None => Ok(map),
    }
}

/// Whether `kid` is a key id remit will look up: 1 to [`MAX_KID_LEN`] of `[A-Za-z0-9._-]`,
/// so it can never be a path, a query or a quote.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid != "."
        && kid != ".."
        && kid
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// One verification key and the algorithms it may sign with.
#[derive(Clone)]
struct KeyEntry {
    key: DecodingKey,
    algs: Vec<JwtAlg>,
}

/// Why a JWKS document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// Over [`MAX_JWKS_BYTES`] (a SPIFFE bundle: [`MAX_BUNDLE_BYTES`]).
    #[error("the key set is larger than {0} bytes")]
    TooLarge(usize),
    /// A SPIFFE bundle listing more than [`MAX_BUNDLE_ENTRIES`] keys of any use.
    #[error("the bundle lists more than {MAX_BUNDLE_ENTRIES} keys")]
    TooManyEntries,
    /// Not a JWKS document.
    #[error("the key set is not a JWKS document: {0}")]
    Malformed(String),
    /// More than [`MAX_KEYS_PER_SET`] keys.
    #[error("the key set has more than {MAX_KEYS_PER_SET} keys")]
    TooManyKeys,
    /// Two keys share a `kid`.
    #[error("the key set has two keys `{0}`")]
    DuplicateKid(String),
    /// No key is usable with the issuer's algorithms.
    #[error("the key set has no signing key for the allowed algorithms")]
    NoUsableKey,
}

/// An issuer's verification keys, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, KeyEntry>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

fn rsa_modulus_bits(n: &str) -> usize {
    URL_SAFE_NO_PAD.decode(n).map_or(0, |b| {
        let lead = b.iter().take_while(|&&x| x == 0).count();
        (b.len() - lead) * 8
    })
}

/// Which keys of a document a verifier may use, by their `use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    /// A JWKS: `use` absent or `sig`.
    Signature,
    /// A SPIFFE bundle's JWT authorities: `use` absent or `jwt-svid` (never `x509-svid`,
    /// never an unknown use, which the SPIFFE bundle format says to ignore).
    JwtSvid,
}

/// A SPIFFE bundle (SPIFFE Trust Domain and Bundle, section 4): a trust domain's JWT
/// authorities as a [`KeySet`], with the bundle's sequence number and refresh hint.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The keys whose `use` is `jwt-svid` (or absent) and that sign with an allowed algorithm.
    pub keys: KeySet,
    /// `spiffe_sequence`, when present.
    pub sequence: Option<u64>,
    /// `spiffe_refresh_hint` in seconds, when present.
    pub refresh_hint_s: Option<u64>,
}

fn document(bytes: &[u8], limit: usize) -> Result<Map<String, Value>, KeySetError> {
    if bytes.len() > limit {
        return Err(KeySetError::TooLarge(limit));
    }
    let UniqueObject(doc, dup) =
        serde_json::from_slice(bytes).map_err(|e| KeySetError::Malformed(e.to_string()))?;
    if let Some(name) = dup {
        return Err(KeySetError::Malformed(format!(
            "the member `{}` appears twice",
            shown(&name)
        )));
    }
    Ok(doc)
}

fn keys_array(
    doc: &Map<String, Value>,
    limit: usize,
    over: KeySetError,
) -> Result<&Vec<Value>, KeySetError> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| KeySetError::Malformed("no `keys` array".into()))?;
    if keys.len() > limit {
        return Err(over);
    }
    Ok(keys)
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys usable with `allowed` and skipping the rest
    /// (encryption keys, symmetric keys, unknown curves, RSA under 2048 bits).
    pub fn from_jwks(bytes: &[u8], allowed: &[JwtAlg]) -> Result<Self, KeySetError> {
        let doc = document(bytes, MAX_JWKS_BYTES)?;
        Self::from_keys(
            keys_array(&doc, MAX_KEYS_PER_SET, KeySetError::TooManyKeys)?,
            allowed,
            KeyUse::Signature,
        )
    }

    /// Parses a SPIFFE bundle (a JWKS whose keys say which SVIDs they vouch for), keeping
    /// its JWT authorities — keys with `use` `jwt-svid` or no `use` — usable with
    /// `allowed`. X.509 authorities (`x509-svid`) and keys of unknown use are skipped. The
    /// bundle may list up to [`MAX_BUNDLE_ENTRIES`] keys of any use, and must be at most
    /// [`MAX_BUNDLE_BYTES`]; `spiffe_sequence` and `spiffe_refresh_hint`, when present,
    /// must be whole numbers.
    pub fn from_spiffe_bundle(bytes: &[u8], allowed: &[JwtAlg]) -> Result<Bundle, KeySetError> {
        let doc = document(bytes, MAX_BUNDLE_BYTES)?;
        let number = |name: &str| match doc.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| KeySetError::Malformed(format!("`{name}` is not a whole number"))),
        };
        let sequence = number("spiffe_sequence")?;
        let refresh_hint_s = number("spiffe_refresh_hint")?;
        let keys = Self::from_keys(
            keys_array(&doc, MAX_BUNDLE_ENTRIES, KeySetError::TooManyEntries)?,
            allowed,
            KeyUse::JwtSvid,
        )?;
        Ok(Bundle {
            keys,
            sequence,
            refresh_hint_s,
        })
    }

    fn from_keys(keys: &[Value], allowed: &[JwtAlg], key_use: KeyUse) -> Result<Self, KeySetError> {
        let mut out = HashMap::new();
        for k in keys {
            let Some(kid) = k.get("kid").and_then(Value::as_str) else {
                continue;
            };
            if !valid_kid(kid) {
                continue;
            }
            let usable = match (key_use, k.get("use")) {
                (_, None) => true,
                (KeyUse::Signature, Some(u)) => u.as_str() == Some("sig"),
                (KeyUse::JwtSvid, Some(u)) => u.as_str() == Some("jwt-svid"),
            };
            if !usable {
                continue;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            let by_type: Vec<JwtAlg> = match &jwk.algorithm {
                AlgorithmParameters::RSA(p) if rsa_modulus_bits(&p.n) >= 2048 => {
                    JwtAlg::RSA.to_vec()
                }
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => vec![JwtAlg::Es256],
                    EllipticCurve::P384 => vec![JwtAlg::Es384],
                    _ => vec![],
                },
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    vec![JwtAlg::EdDsa]
                }
                _ => vec![],
            };
            let named = k
                .get("alg")
                .map(|a| a.as_str().and_then(|s| JwtAlg::parse(s).ok()));
            let algs: Vec<JwtAlg> = by_type
                .into_iter()
                .filter(|a| allowed.contains(a))
                .filter(|a| match &named {
                    None => true,
                    Some(n) => *n == Some(*a),
                })
                .collect();
            if algs.is_empty() {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            if out.insert(kid.to_owned(), KeyEntry { key, algs }).is_some() {
                return Err(KeySetError::DuplicateKid(shown(kid)));
            }
            if out.len() > MAX_KEYS_PER_SET {
                return Err(KeySetError::TooManyKeys);
            }
        }
        if out.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(Self { keys: out })
    }

    /// Adds `other`'s keys to this set; a `kid` both hold is refused and nothing is added.
    pub fn merge(&mut self, other: KeySet) -> Result<(), KeySetError> {
        if let Some(kid) = other.keys.keys().find(|k| self.keys.contains_key(*k)) {
            return Err(KeySetError::DuplicateKid(shown(kid)));
        }
        if self.keys.len() + other.keys.len() > MAX_KEYS_PER_SET {
            return Err(KeySetError::TooManyKeys);
        }
        self.keys.extend(other.keys);
        Ok(())
    }

    /// The key ids held.
    pub fn kids(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Whom a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectKind {
    /// A registered identity (its id as the token states it; the caller looks it up).
    Identity,
    /// A human from an issuer of humans.
    Human {
        /// The id of the issuer of humans that vouches for the human.
        issuer: String,
        /// The human's groups.
        groups: Vec<String>,
    },
    /// A workload's JWT-SVID: the subject is its SPIFFE ID (the caller finds the identity
    /// holding it as a `spiffe` credential).
    Spiffe {
        /// The SPIFFE ID, parsed.
        spiffe_id: SpiffeId,
    },
}

/// A token that verified: signature, issuer, audience and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The id of the issuer that signed it (`remit` for remit's own).
    pub issuer_id: String,
    /// The subject: an identity id or a human.
    pub subject: String,
    /// What the subject is.
    pub kind: SubjectKind,
    /// `exp`, Unix seconds.
    pub exp: i64,
    /// `iat`, Unix seconds, when present.
    pub iat: Option<i64>,
    /// `jti`, when present.
    pub jti: Option<String>,
    /// Whether `jti` may be presented once only.
    pub single_use: bool,
    /// `scope`, split on spaces.
    pub scope: Option<Vec<String>>,
    /// `purpose`, when present.
    pub purpose: Option<String>,
    /// `client_id`, when present.
    pub client_id: Option<String>,
    /// The actor chain from `act`, outermost (the presenter) first.
    pub actors: Vec<String>,
    /// `may_act.sub`: who the subject allows to act for it.
    pub may_act: Option<String>,
}

struct IssuerEntry {
    settings: IssuerSettings,
}

/// remit's own issuer, as the verifier sees it.
#[derive(Debug, Clone)]
struct OwnIssuer {
    issuer: String,
    audience: String,
    skew_s: u32,
    single_use: bool,
}

/// The token verifier: trusted issuers by `iss`, their key sets by issuer id; trusted SPIFFE
/// trust domains by name, their bundles' JWT authorities by name.
pub struct Verifier {
    issuers: HashMap<String, IssuerEntry>,
    own: Option<OwnIssuer>,
    keys: RwLock<HashMap<String, Arc<KeySet>>>,
    trust_domains: HashMap<String, TrustDomainEntry>,
    bundles: RwLock<HashMap<String, Arc<KeySet>>>,
}

/// A trusted trust domain and the name its key set goes by (`spiffe://<name>`).
struct TrustDomainEntry {
    settings: TrustDomainSettings,
    key_set_id: String,
}

/// Who vouches for a token, chosen once from its claims before any key is used: remit, an
/// `[[issuer]]` (by exact `iss`), or a trust domain (a JWT-SVID, by its `sub`).
enum Vouch<'v> {
    Own(&'v OwnIssuer),
    Issuer(&'v IssuerSettings),
    TrustDomain(&'v TrustDomainEntry, SpiffeId),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self
            .issuers
            .values()
            .map(|e| e.settings.id.as_str())
            .collect();
        ids.sort_unstable();
        let mut domains: Vec<&str> = self.trust_domains.keys().map(String::as_str).collect();
        domains.sort_unstable();
        f.debug_struct("Verifier")
            .field("issuers", &ids)
            .field("trust_domains", &domains)
            .field("own", &self.own.as_ref().map(|o| &o.issuer))
            .finish_non_exhaustive()
    }
}

pub(crate) fn str_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_CLAIM_LEN => Ok(Some(s)),
        Some(Value::String(_)) => Err(JwtError::BadClaim {
            claim: name.to_owned(),
            why: "is empty or too long",
        }),
        Some(_) => Err(JwtError::BadClaim {
            claim: name.to_owned(),
            why: "is not a string",
        }),
    }
}

/// A NumericDate: a JSON integer, nothing else (a string `exp` is CVE-2026-25537's shape).
pub(crate) fn time_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|t| (0..=253_402_300_799).contains(t))
            .map(Some)
            .ok_or(JwtError::BadClaim {
                claim: name.to_owned(),
                why: "is not a whole number of seconds",
            }),
        Some(_) => Err(JwtError::BadClaim {
            claim: name.to_owned(),
            why: "is not a number",
        }),
    }
}

pub(crate) fn str_list(v: &Value, claim: &str) -> Result<Vec<String>, JwtError> {
    let bad = |why| JwtError::BadClaim {
        claim: claim.to_owned(),
        why,
    };
    let items = v.as_array().ok_or(bad("is not a list of strings"))?;
    if items.len() > MAX_LIST {
        return Err(bad("has too many entries"));
    }
    items
        .iter()
        .map(|i| match i.as_str() {
            Some(s) if !s.is_empty() && s.len() <= MAX_CLAIM_LEN => Ok(s.to_owned()),
            _ => Err(bad("holds an entry that is not a short string")),
        })
        .collect()
}

/// The `act` chain, outermost first.
fn actors(claims: &Map<String, Value>) -> Result<Vec<String>, JwtError> {
    let mut out = Vec::new();
    let mut cur = claims.get("act");
    while let Some(act) = cur {
        if out.len() >= MAX_CHAIN_DEPTH {
            return Err(JwtError::ChainTooLong);
        }
        let obj = act.as_object().ok_or(JwtError::BadClaim {
            claim: "act".into(),
            why: "is not an object",
        })?;
        let sub = str_claim(obj, "sub")?.ok_or(JwtError::BadClaim {
            claim: "act".into(),
            why: "has no `sub`",
        })?;
        out.push(sub.to_owned());
        cur = obj.get("act");
    }
    Ok(out)
}

impl Verifier {
    /// A verifier for the issuers in `settings`. No issuer has keys until [`Self::set_keys`].
    pub fn new(settings: &TokenSettings) -> Self {
        let issuers = settings
            .issuers
            .iter()
            .map(|s| {
                (
                    s.issuer.clone(),
                    IssuerEntry {
                        settings: s.clone(),
                    },
                )
            })
            .collect();
        let own = settings.issuer.as_ref().map(|iss| OwnIssuer {
            issuer: iss.clone(),
            audience: settings.audience.clone(),
            skew_s: settings.skew_s.min(MAX_SKEW_S),
            single_use: settings.single_use,
        });
        let trust_domains = settings
            .trust_domains
            .iter()
            .map(|t| {
                let entry = TrustDomainEntry {
                    settings: t.clone(),
                    key_set_id: t.key_set_id(),
                };
                (t.name.as_str().to_owned(), entry)
            })
            .collect();
        Self {
            issuers,
            own,
            keys: RwLock::default(),
            trust_domains,
            bundles: RwLock::default(),
        }
    }

    /// Whether any issuer or trust domain is configured (otherwise no bearer credential is
    /// a JWT).
    pub fn is_enabled(&self) -> bool {
        self.own.is_some() || !self.issuers.is_empty() || !self.trust_domains.is_empty()
    }

    /// Installs (or replaces) a trust domain's JWT authorities, from its SPIFFE bundle. A
    /// bundle refresher calls this; so does start-up.
    pub fn set_bundle(&self, trust_domain: &str, keys: KeySet) {
        let mut map = self.bundles.write().unwrap_or_else(|p| p.into_inner());
        map.insert(trust_domain.to_owned(), Arc::new(keys));
    }

    /// Removes a trust domain's JWT authorities: its JWT-SVIDs are refused until they return.
    pub fn clear_bundle(&self, trust_domain: &str) {
        let mut map = self.bundles.write().unwrap_or_else(|p| p.into_inner());
        map.remove(trust_domain);
    }

    /// Every configured trust domain.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomainSettings> {
        self.trust_domains.values().map(|t| &t.settings)
    }

    fn bundle_of(&self, trust_domain: &str) -> Option<Arc<KeySet>> {
        let map = self.bundles.read().unwrap_or_else(|p| p.into_inner());
        map.get(trust_domain).cloned()
    }

    /// Who vouches for a token with these claims. The rule, in order:
    /// 1. `iss` is remit's own issuer or a configured `[[issuer]]`'s: that issuer, and only
    ///    its keys — whatever `sub` holds;
    /// 2. otherwise (`iss` absent or no issuer's), `sub` is a SPIFFE ID in a configured
    ///    trust domain: a JWT-SVID, and only that trust domain's bundle;
    /// 3. anything else is refused.
    ///
    /// So a token is read one way only: no token is tried against an issuer's keys and then
    /// a bundle's, or the other way round.
    fn vouch(&self, claims: &Map<String, Value>) -> Result<Vouch<'_>, JwtError> {
        let iss = str_claim(claims, "iss")?;
        if let Some(iss) = iss {
            if let Some(o) = self.own.as_ref().filter(|o| o.issuer == iss) {
                return Ok(Vouch::Own(o));
            }
            if let Some(e) = self.issuers.get(iss) {
                return Ok(Vouch::Issuer(&e.settings));
            }
        }
        let spiffe = match claims.get("sub") {
            Some(Value::String(s)) if s.starts_with("spiffe://") => Some(
                SpiffeId::parse(s)
                    .ok()
                    .filter(|_| s.len() <= MAX_CLAIM_LEN)
                    .ok_or(JwtError::BadClaim {
                        claim: "sub".into(),
                        why: "is not a SPIFFE ID of at most 256 bytes",
                    })?,
            ),
            _ => None,
        };
        match (spiffe, iss) {
            (Some(id), _) => match self.trust_domains.get(id.trust_domain()) {
                Some(td) => Ok(Vouch::TrustDomain(td, id)),
                None => Err(JwtError::UnknownTrustDomain(shown(id.trust_domain()))),
            },
            (None, Some(iss)) => Err(JwtError::UnknownIssuer(shown(iss))),
            (None, None) => Err(JwtError::MissingClaim("iss")),
        }
    }

    /// Installs (or replaces) an issuer's key set. A refresher calls this; so does start-up.
    pub fn set_keys(&self, issuer_id: &str, keys: KeySet) {
        let mut map = self.keys.write().unwrap_or_else(|p| p.into_inner());
        map.insert(issuer_id.to_owned(), Arc::new(keys));
    }

    /// Removes an issuer's key set: its tokens are refused until keys return.
    pub fn clear_keys(&self, issuer_id: &str) {
        let mut map = self.keys.write().unwrap_or_else(|p| p.into_inner());
        map.remove(issuer_id);
    }

    /// The issuer of humans or identities with this id.
    pub fn issuer(&self, id: &str) -> Option<&IssuerSettings> {
        self.issuers
            .values()
            .map(|e| &e.settings)
            .find(|s| s.id == id)
    }

    /// Every configured external issuer.
    pub fn issuers(&self) -> impl Iterator<Item = &IssuerSettings> {
        self.issuers.values().map(|e| &e.settings)
    }

    fn keys_of(&self, issuer_id: &str) -> Option<Arc<KeySet>> {
        let map = self.keys.read().unwrap_or_else(|p| p.into_inner());
        map.get(issuer_id).cloned()
    }

    /// Verifies `token` at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, JwtError> {
        let parsed = Parsed::parse(token)?;
        let (alg, claims) = (parsed.alg, &parsed.claims);
        let typ = parsed.typ.as_deref();

        // Who vouches for the token chooses the key set and every rule after it.
        let vouch = self.vouch(claims)?;
        let (own, ext) = match &vouch {
            Vouch::Own(o) => (Some(*o), None),
            Vouch::Issuer(e) => (None, Some(*e)),
            Vouch::TrustDomain(..) => (None, None),
        };
        let (issuer_id, audience, skew, allowed): (&str, &str, u32, &[JwtAlg]) = match &vouch {
            Vouch::Own(o) => (
                OWN_ISSUER_ID,
                &o.audience,
                o.skew_s,
                &[JwtAlg::EdDsa, JwtAlg::Es256],
            ),
            Vouch::Issuer(e) => (&e.id, &e.audience, e.skew_s.min(MAX_SKEW_S), &e.algorithms),
            Vouch::TrustDomain(t, _) => (
                &t.key_set_id,
                &t.settings.audience,
                t.settings.skew_s.min(MAX_SKEW_S),
                &t.settings.algorithms,
            ),
        };
        if !allowed.contains(&alg) {
            return Err(JwtError::AlgNotAllowed {
                issuer: issuer_id.to_owned(),
                alg,
            });
        }
        // `typ`: remit's own tokens are access tokens (RFC 9068); an issuer's are JWTs or
        // access tokens; a JWT-SVID's is `JWT` or `JOSE` when present (JWT-SVID 2.3).
        let typ_ok = |t: &str| match &vouch {
            Vouch::Own(_) => AT_JWT.iter().any(|a| t.eq_ignore_ascii_case(a)),
            Vouch::Issuer(_) => {
                t.eq_ignore_ascii_case("JWT") || AT_JWT.iter().any(|a| t.eq_ignore_ascii_case(a))
            }
            Vouch::TrustDomain(..) => {
                t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("JOSE")
            }
        };
        match typ {
            Some(t) if !typ_ok(t) => return Err(JwtError::BadType(shown(t))),
            None if own.is_some() => return Err(JwtError::BadType("(missing)".into())),
            _ => {}
        }
        let keys = match &vouch {
            Vouch::TrustDomain(t, _) => self.bundle_of(t.settings.name.as_str()),
            _ => self.keys_of(issuer_id),
        }
        .ok_or_else(|| JwtError::KeysUnavailable(issuer_id.to_owned()))?;
        parsed.check_signature(&keys, issuer_id)?;

        // Claims, typed, at `now`.
        let exp = time_claim(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        let nbf = time_claim(claims, "nbf")?;
        let iat = time_claim(claims, "iat")?;
        let skew = i64::from(skew);
        if now >= exp.saturating_add(skew) {
            return Err(JwtError::Expired);
        }
        let require_nbf = ext.is_some_and(|e| e.require_nbf) || own.is_some();
        match nbf {
            None if require_nbf => return Err(JwtError::MissingClaim("nbf")),
            Some(t) if t > now.saturating_add(skew) => return Err(JwtError::NotYetValid),
            _ => {}
        }
        if iat.is_some_and(|t| t > now.saturating_add(skew)) {
            return Err(JwtError::NotYetValid);
        }
        let auds = match claims.get("aud") {
            None => return Err(JwtError::MissingClaim("aud")),
            Some(Value::String(s)) if s.len() <= MAX_CLAIM_LEN * 2 => vec![s.clone()],
            Some(v @ Value::Array(_)) => str_list(v, "aud")?,
            Some(_) => {
                return Err(JwtError::BadClaim {
                    claim: "aud".into(),
                    why: "is not a string or a list of strings",
                });
            }
        };
        if !auds.iter().any(|a| a == audience) {
            return Err(JwtError::WrongAudience(shown(
                auds.first().map_or("", String::as_str),
            )));
        }
        let actors = actors(claims)?;
        let scope = match str_claim_long(claims, "scope")? {
            None => None,
            Some(s) => {
                let items: Vec<String> = s
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect();
                if items.len() > MAX_LIST {
                    return Err(JwtError::BadClaim {
                        claim: "scope".into(),
                        why: "has too many entries",
                    });
                }
                Some(items)
            }
        };
        let may_act = match claims.get("may_act") {
            None => None,
            Some(Value::Object(m)) => Some(
                str_claim(m, "sub")?
                    .ok_or(JwtError::BadClaim {
                        claim: "may_act".into(),
                        why: "has no `sub`",
                    })?
                    .to_owned(),
            ),
            Some(_) => {
                return Err(JwtError::BadClaim {
                    claim: "may_act".into(),
                    why: "is not an object",
                });
            }
        };
        let jti = str_claim(claims, "jti")?.map(str::to_owned);
        let purpose = str_claim(claims, "purpose")?.map(str::to_owned);
        let client_id = str_claim(claims, "client_id")?.map(str::to_owned);
        let sub = str_claim(claims, "sub")?;
        let (subject, kind, single_use) = match (vouch, ext) {
            (Vouch::TrustDomain(_, spiffe_id), _) => (
                spiffe_id.as_str().to_owned(),
                SubjectKind::Spiffe { spiffe_id },
                false,
            ),
            (_, Some(e)) => {
                let (subject, kind) = match &e.subjects {
                    Subjects::Identities { claim } => (
                        str_claim(claims, claim.as_str())?.ok_or(JwtError::MissingClaim("sub"))?,
                        SubjectKind::Identity,
                    ),
                    Subjects::Humans { groups_claim, .. } => (
                        sub.ok_or(JwtError::MissingClaim("sub"))?,
                        SubjectKind::Human {
                            issuer: e.id.clone(),
                            groups: match claims.get(groups_claim.as_str()) {
                                None => Vec::new(),
                                Some(v) => str_list(v, groups_claim.as_str())?,
                            },
                        },
                    ),
                };
                (subject.to_owned(), kind, e.single_use_jti)
            }
            (_, None) => {
                // remit's own: a delegated token names a human (and the issuer that vouched
                // for them); any other names the identity it was issued to.
                let sub = sub.ok_or(JwtError::MissingClaim("sub"))?;
                let kind = match str_claim(claims, "remit_human_issuer")? {
                    Some(h) if !actors.is_empty() => SubjectKind::Human {
                        issuer: h.to_owned(),
                        groups: match claims.get("groups") {
                            None => Vec::new(),
                            Some(v) => str_list(v, "groups")?,
                        },
                    },
                    None if actors.is_empty() => SubjectKind::Identity,
                    _ => {
                        return Err(JwtError::BadClaim {
                            claim: "act".into(),
                            why: "and `remit_human_issuer` must come together",
                        });
                    }
                };
                (sub.to_owned(), kind, own.is_some_and(|o| o.single_use))
            }
        };
        if single_use && jti.is_none() {
            return Err(JwtError::MissingClaim("jti"));
        }
        Ok(VerifiedToken {
            issuer_id: issuer_id.to_owned(),
            subject,
            kind,
            exp,
            iat,
            jti,
            single_use,
            scope,
            purpose,
            client_id,
            actors,
            may_act,
        })
    }
}

/// A compact JWS split, its header read and its payload parsed: the checks every JWT
/// remit reads gets before a key is chosen — size, three canonical base64url segments of
/// JSON objects without duplicated members, a header of `alg`, `typ` and `kid` only (no
/// `jku`, `x5u`, `x5c` or `jwk` ever chooses the key), an asymmetric `alg` (never `none`
/// or `HS*`), and a `kid` that is a key id. Shared by access tokens ([`Verifier::verify`])
/// and client assertions ([`crate::assertion`]).
pub(crate) struct Parsed<'t> {
    /// The header's algorithm.
    pub(crate) alg: JwtAlg,
    /// The header's `typ`, when present.
    pub(crate) typ: Option<String>,
    /// The header's `kid`.
    pub(crate) kid: String,
    /// The payload.
    pub(crate) claims: Map<String, Value>,
    signed: &'t str,
    signature: &'t str,
}

impl<'t> Parsed<'t> {
    /// Splits and reads `token`; no signature is checked yet.
    pub(crate) fn parse(token: &'t str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("a JWT has three segments"));
        };
        if h64.is_empty() || p64.is_empty() || s64.is_empty() {
            return Err(JwtError::Malformed("a segment is empty"));
        }
        let header = object(&b64(h64, MAX_HEADER_BYTES)?, "header")?;
        if let Some(name) = header
            .keys()
            .find(|k| !matches!(k.as_str(), "alg" | "typ" | "kid"))
        {
            return Err(JwtError::ForbiddenHeader(shown(name)));
        }
        let alg = match header.get("alg") {
            Some(Value::String(s)) => {
                JwtAlg::parse(s).map_err(|_| JwtError::UnsupportedAlg(shown(s)))?
            }
            _ => return Err(JwtError::UnsupportedAlg("(missing)".into())),
        };
        let typ = match header.get("typ") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(JwtError::BadType("(not a string)".into())),
        };
        let kid = match header.get("kid") {
            Some(Value::String(k)) if valid_kid(k) => k.clone(),
            _ => return Err(JwtError::BadKid),
        };
        let claims = object(&b64(p64, MAX_TOKEN_BYTES)?, "payload")?;
        Ok(Self {
            alg,
            typ,
            kid,
            claims,
            signed: &token[..h64.len() + 1 + p64.len()],
            signature: s64,
        })
    }

    /// Checks the signature with the key `kid` of `keys`, which must sign with `alg`.
    /// `issuer_id` names the key set's owner in errors.
    pub(crate) fn check_signature(&self, keys: &KeySet, issuer_id: &str) -> Result<(), JwtError> {
        let entry = keys
            .keys
            .get(&self.kid)
            .ok_or_else(|| JwtError::UnknownKey {
                issuer: issuer_id.to_owned(),
                kid: self.kid.clone(),
            })?;
        if !entry.algs.contains(&self.alg) {
            return Err(JwtError::KeyAlgMismatch {
                kid: self.kid.clone(),
                alg: self.alg,
            });
        }
        let ok = jsonwebtoken::crypto::verify(
            self.signature,
            self.signed.as_bytes(),
            &entry.key,
            jws_alg(self.alg),
        )
        .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(JwtError::BadSignature)
        }
    }
}

/// A string claim that may be long (a `scope` of many entries), still bounded.
fn str_claim_long<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_CLAIM_LEN * MAX_LIST => Ok(Some(s)),
        Some(Value::String(_)) => Err(JwtError::BadClaim {
            claim: name.to_owned(),
            why: "is too long",
        }),
        Some(_) => Err(JwtError::BadClaim {
            claim: name.to_owned(),
            why: "is not a string",
        }),
    }
}

/// Whether a bearer credential has the shape of a JWT (three base64url segments, the first
/// a JSON object), so it is verified as one rather than looked up as an API key.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.starts_with("eyJ") && credential.bytes().filter(|&c| c == b'.').count() == 2
}
