//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect Core §9): a
//! client proves it is an identity with a JWT it signed with its own private key, whose
//! public half is the identity's `client_key` credential.
//!
//! The assertion goes through the same reading as every JWT remit verifies
//! ([`crate::jwt`]: size, canonical segments, no duplicated members, a header of `alg`,
//! `typ` and `kid` only — so `jku`, `x5u`, `x5c` and an embedded `jwk` never choose the key —,
//! asymmetric algorithms only, the key's own algorithms, typed time claims). Then, for an
//! assertion: `iss` = `sub` = the client, `aud` remit's issuer or its token endpoint, `exp`
//! required and at most [`MAX_ASSERTION_LIFETIME_S`] away (beyond the clock skew), `nbf`
//! and `iat` typed and not in the future, a `typ` that is not an access token's, and a `jti`
//! claimed once (a replay is refused) in the engine's claim store — this process's
//! `JtiLedger`, or Redis shared by every replica. [`ClientKeys::verify`] gives an
//! [`Unspent`] assertion, usable only once [`Unspent::spend`] has claimed its `jti`: the
//! claim is made last, after everything else verified, so nobody can spend another client's
//! `jti`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use remit_core::identity::{ClientJwk, ClientKeySource};
use remit_core::tokens::JwtAlg;
use remit_core::{CredentialId, IdentityId, Registry};
use serde_json::Value;

use remit_core::single_use::ClaimStore;

use crate::jti::JtiError;
use crate::jwt::{JwtError, KeySet, KeySetError, Parsed, shown, str_claim, str_list, time_claim};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may live: `exp` at most this far after now (and after `iat`),
/// beyond the clock skew. An assertion is made for one request, not kept.
pub const MAX_ASSERTION_LIFETIME_S: i64 = 300;
/// The `typ` values an assertion may carry (case-insensitive); none at all is accepted too.
/// An access token (`at+jwt`) is never a client assertion.
const ASSERTION_TYPES: &[&str] = &["JWT", "client-authentication+jwt"];

/// Why a client assertion was refused. The token endpoint answers `invalid_client` whatever
/// the reason and logs the reason; messages never hold the assertion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// The JWT itself was refused (shape, header, algorithm, key, signature, claim types).
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// `iss` and `sub` are not both the client's id.
    #[error("the assertion's `iss` and `sub` must both be the client's id")]
    IssuerNotSubject,
    /// `client_id` in the request names another client than the assertion.
    #[error("`client_id` is not the assertion's client")]
    ClientIdMismatch,
    /// The client has no `client_key` credential (or is no identity).
    #[error("client `{0}` has no public key registered")]
    UnknownClient(String),
    /// `exp` is too far away.
    #[error("the assertion lives longer than {MAX_ASSERTION_LIFETIME_S} s")]
    TooLongLived,
    /// The `typ` is an access token's or unknown.
    #[error("the assertion's `typ` `{0}` is not a client assertion's")]
    BadType(String),
    /// `jti` was already used, or the ledger is full.
    #[error(transparent)]
    Replay(#[from] JtiError),
}

/// An assertion that verified, and whose `jti` is now spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The client.
    pub client: IdentityId,
    /// The `client_key` credential whose key signed it.
    pub credential: CredentialId,
    /// The algorithm it was signed with.
    pub alg: JwtAlg,
}

/// An assertion that verified but whose `jti` is not claimed yet: [`Unspent::spend`] claims
/// it and only then gives the [`VerifiedAssertion`].
#[derive(Debug)]
#[must_use = "an assertion authenticates nobody until its `jti` is spent"]
pub struct Unspent {
    verified: VerifiedAssertion,
    /// The claim's issuer: `client-assertion:<client>`, so one client's ids never collide
    /// with another's or with tokens'.
    claim_issuer: String,
    jti: String,
    /// The last second the assertion could be accepted: `exp` plus the skew.
    until: i64,
}

impl Unspent {
    /// Claims the assertion's `jti` in `claims` at `now`; a replay, or a claim store that
    /// cannot answer, refuses it.
    pub async fn spend(
        self,
        claims: &dyn ClaimStore,
        now: i64,
    ) -> Result<VerifiedAssertion, AssertionError> {
        claims
            .claim(&self.claim_issuer, &self.jti, self.until, now)
            .await?;
        Ok(self.verified)
    }
}

/// One identity's client keys: the key set, and which credential each `kid` is.
#[derive(Debug, Default)]
struct ClientKeySet {
    keys: KeySet,
    credentials: HashMap<String, CredentialId>,
}

/// Every identity's `client_key` public keys, by identity.
#[derive(Debug, Default)]
pub struct ClientKeys {
    by_identity: RwLock<HashMap<IdentityId, Arc<ClientKeySet>>>,
}

/// A `client_key` credential that could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identity `{identity}`, credential `{credential}`: {source}")]
pub struct ClientKeyError {
    /// The identity.
    pub identity: IdentityId,
    /// The credential.
    pub credential: CredentialId,
    /// What is wrong with the key.
    pub source: KeySetError,
}

impl ClientKeys {
    /// Installs every client key written in the registry (`jwk`). Keys in files
    /// (`jwk_file`) are read at start-up and installed with [`Self::install`]; a key that
    /// cannot be installed leaves its credential unusable (fail closed) and is returned.
    pub fn new(registry: &Registry) -> (Self, Vec<ClientKeyError>) {
        let keys = Self::default();
        let mut errors = Vec::new();
        for identity in registry.iter() {
            for c in &identity.client_keys {
                if let ClientKeySource::Jwk(jwk) = &c.key
                    && let Err(source) = keys.install(&identity.id, &c.id, jwk)
                {
                    errors.push(ClientKeyError {
                        identity: identity.id.clone(),
                        credential: c.id.clone(),
                        source,
                    });
                }
            }
        }
        (keys, errors)
    }

    /// Adds `jwk` as `identity`'s key for credential `credential`.
    pub fn install(
        &self,
        identity: &IdentityId,
        credential: &CredentialId,
        jwk: &ClientJwk,
    ) -> Result<(), KeySetError> {
        let doc = format!("{{\"keys\":[{}]}}", jwk.text());
        let one = KeySet::from_jwks(doc.as_bytes(), JwtAlg::ALL)?;
        let mut map = self.by_identity.write().unwrap_or_else(|p| p.into_inner());
        let mut set = ClientKeySet::default();
        if let Some(old) = map.get(identity) {
            set.keys = old.keys.clone();
            set.credentials = old.credentials.clone();
        }
        set.keys.merge(one)?;
        set.credentials
            .insert(jwk.kid().to_owned(), credential.clone());
        map.insert(identity.clone(), Arc::new(set));
        Ok(())
    }

    /// Whether `identity` has any client key installed.
    pub fn has_keys(&self, identity: &IdentityId) -> bool {
        self.by_identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(identity)
    }

    /// Verifies a client assertion at `now` (Unix seconds): signed by a key of the client
    /// it names, for one of `audiences`, short-lived and within `skew_s` of the clock, with
    /// a `jti` still to be spent ([`Unspent::spend`]). `client_id`, when the request sent
    /// one, must be the assertion's client.
    pub fn verify(
        &self,
        assertion: &str,
        client_id: Option<&str>,
        audiences: &[&str],
        skew_s: u32,
        now: i64,
    ) -> Result<Unspent, AssertionError> {
        let parsed = Parsed::parse(assertion)?;
        if let Some(t) = &parsed.typ
            && !ASSERTION_TYPES.iter().any(|a| t.eq_ignore_ascii_case(a))
        {
            return Err(AssertionError::BadType(shown(t)));
        }
        let claims = &parsed.claims;
        let iss = str_claim(claims, "iss")?.ok_or(JwtError::MissingClaim("iss"))?;
        let sub = str_claim(claims, "sub")?.ok_or(JwtError::MissingClaim("sub"))?;
        if iss != sub {
            return Err(AssertionError::IssuerNotSubject);
        }
        if client_id.is_some_and(|c| c != iss) {
            return Err(AssertionError::ClientIdMismatch);
        }
        let client =
            IdentityId::parse(iss).map_err(|_| AssertionError::UnknownClient(shown(iss)))?;
        let set = self
            .by_identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&client)
            .cloned()
            .ok_or_else(|| AssertionError::UnknownClient(shown(iss)))?;
        parsed.check_signature(&set.keys, client.as_str())?;
        let credential = set
            .credentials
            .get(&parsed.kid)
            .cloned()
            .ok_or_else(|| AssertionError::UnknownClient(shown(iss)))?;

        // Claims, typed, at `now`.
        let skew = i64::from(skew_s.min(remit_core::tokens::MAX_SKEW_S));
        let exp = time_claim(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        let nbf = time_claim(claims, "nbf")?;
        let iat = time_claim(claims, "iat")?;
        if now >= exp.saturating_add(skew) {
            return Err(JwtError::Expired.into());
        }
        if exp > now.saturating_add(MAX_ASSERTION_LIFETIME_S + skew)
            || iat.is_some_and(|t| exp.saturating_sub(t) > MAX_ASSERTION_LIFETIME_S)
        {
            return Err(AssertionError::TooLongLived);
        }
        if [nbf, iat]
            .iter()
            .flatten()
            .any(|t| *t > now.saturating_add(skew))
        {
            return Err(JwtError::NotYetValid.into());
        }
        let auds = match claims.get("aud") {
            None => return Err(JwtError::MissingClaim("aud").into()),
            Some(Value::String(s)) => vec![s.clone()],
            Some(v @ Value::Array(_)) => str_list(v, "aud")?,
            Some(_) => {
                return Err(JwtError::BadClaim {
                    claim: "aud".into(),
                    why: "is not a string or a list of strings",
                }
                .into());
            }
        };
        if !auds.iter().any(|a| audiences.contains(&a.as_str())) {
            return Err(
                JwtError::WrongAudience(shown(auds.first().map_or("", String::as_str))).into(),
            );
        }
        let jti = str_claim(claims, "jti")?.ok_or(JwtError::MissingClaim("jti"))?;
        // Spent last, and kept until the assertion could no longer be accepted anyway.
        Ok(Unspent {
            claim_issuer: format!("client-assertion:{client}"),
            jti: jti.to_owned(),
            until: exp.saturating_add(skew),
            verified: VerifiedAssertion {
                client,
                credential,
                alg: parsed.alg,
            },
        })
    }
}

/// Every algorithm a client may sign its assertions with (for RFC 8414's
/// `token_endpoint_auth_signing_alg_values_supported`).
pub fn signing_algs() -> impl Iterator<Item = &'static str> {
    JwtAlg::ALL.iter().map(|a| a.as_str())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const AUD: &str = "https://remit.example/oauth2/token";
    const NOW: i64 = 1_800_000_000;

    /// Verifies `a` at `NOW` and spends its `jti` in `ledger`, as the token endpoint does.
    fn spent(
        keys: &ClientKeys,
        a: &str,
        client_id: Option<&str>,
        audiences: &[&str],
        skew_s: u32,
        ledger: &crate::jti::JtiLedger,
    ) -> Result<VerifiedAssertion, AssertionError> {
        let unspent = keys.verify(a, client_id, audiences, skew_s, NOW)?;
        futures_util::FutureExt::now_or_never(unspent.spend(ledger, NOW))
            .expect("the in-process ledger answers at once")
    }

    /// A P-256 client key registered to `bot` (with `alg`, if given), and its signing key.
    fn es256(alg: Option<&str>) -> (ClientKeys, EncodingKey) {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let mut jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "ec-1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        if let Some(a) = alg {
            jwk["alg"] = json!(a);
        }
        let keys = ClientKeys::default();
        keys.install(
            &IdentityId::parse("bot").unwrap(),
            &CredentialId::parse("bot-ec").unwrap(),
            &ClientJwk::parse(&jwk.to_string()).unwrap(),
        )
        .unwrap();
        (keys, EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    fn sign(key: &EncodingKey, alg: Algorithm, jti: &str) -> String {
        let mut h = Header::new(alg);
        h.kid = Some("ec-1".into());
        let claims = json!({"iss": "bot", "sub": "bot", "aud": AUD, "exp": NOW + 60, "jti": jti});
        jsonwebtoken::encode(&h, &claims, key).unwrap()
    }

    #[test]
    fn an_es256_assertion_verifies_once() {
        let (keys, key) = es256(Some("ES256"));
        let ledger = crate::jti::JtiLedger::default();
        let a = sign(&key, Algorithm::ES256, "j1");
        let v = spent(&keys, &a, Some("bot"), &[AUD], 0, &ledger).unwrap();
        assert_eq!(
            (v.client.as_str(), v.credential.as_str(), v.alg),
            ("bot", "bot-ec", JwtAlg::Es256)
        );
        assert!(matches!(
            spent(&keys, &a, None, &[AUD], 0, &ledger),
            Err(AssertionError::Replay(JtiError::Replayed(_)))
        ));
        // Another client's ledger entry is another key: the same `jti` from another
        // client would not collide, and a refused assertion spends nothing.
        let b = sign(&key, Algorithm::ES256, "j2");
        assert!(spent(&keys, &b, None, &["https://elsewhere.example"], 0, &ledger).is_err());
        assert!(spent(&keys, &b, None, &[AUD], 0, &ledger).is_ok());
    }

    #[test]
    fn only_the_keys_own_algorithms_verify() {
        let (keys, key) = es256(None);
        let ledger = crate::jti::JtiLedger::default();
        // The header claims an algorithm the key does not sign with.
        let t = sign(&key, Algorithm::ES256, "x");
        let rest = t.split_once('.').unwrap().1;
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES384","kid":"ec-1"}"#);
        assert!(matches!(
            spent(&keys, &format!("{header}.{rest}"), None, &[AUD], 0, &ledger),
            Err(AssertionError::Jwt(JwtError::KeyAlgMismatch { .. }))
        ));
        // A JWK naming EdDSA for an EC key is no key at all.
        assert!(
            ClientJwk::parse(
                r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","kid":"k","alg":"EdDSA"}"#
            )
            .is_err()
        );
        // The all-zero ECDSA signature (CVE-2022-21449) never verifies.
        let good = sign(&key, Algorithm::ES256, "z");
        let (signed, _) = good.rsplit_once('.').unwrap();
        let zero = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        assert!(matches!(
            spent(&keys, &zero, None, &[AUD], 0, &ledger),
            Err(AssertionError::Jwt(JwtError::BadSignature))
        ));
        assert!(spent(&keys, &good, None, &[AUD], 0, &ledger).is_ok());
    }
}
