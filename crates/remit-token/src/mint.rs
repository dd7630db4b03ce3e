//! remit's signing keys (Ed25519, aws-lc-rs) and the RFC 9068 `at+jwt` access tokens it
//! signs with them. Keys rotate: the newest signs, the previous ones stay published in the
//! JWKS until tokens they signed have expired.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use remit_core::tokens::JwtAlg;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::jwt::KeySet;

/// Most signing keys published at once (the current one and those it replaced).
pub const MAX_SIGNING_KEYS: usize = 3;

/// Why a key could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The key bytes are not an Ed25519 PKCS#8 document.
    #[error("the signing key is not an Ed25519 PKCS#8 key")]
    BadKey,
    /// The system's random source failed.
    #[error("no randomness for a new signing key")]
    Random,
    /// The key ring holds no key.
    #[error("remit has no signing key")]
    NoKey,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// One Ed25519 signing key.
pub struct SigningKey {
    kid: String,
    x: String,
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key from the system's random source.
    pub fn generate() -> Result<Self, MintError> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| MintError::Random)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// A key from its PKCS#8 document (as stored in the data directory).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, MintError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| MintError::BadKey)?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        // RFC 7638 thumbprint: the kid names the key, not its position.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Ok(Self {
            kid,
            x,
            pkcs8: pkcs8.to_vec(),
            encoding: EncodingKey::from_ed_der(pkcs8),
        })
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The PKCS#8 document, for storing. Secret.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK (never the private half).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid,
            "alg": "EdDSA", "use": "sig"
        })
    }
}

/// remit's signing keys, oldest first; the last one signs.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// A ring of `keys`, oldest first; only the newest [`MAX_SIGNING_KEYS`] are kept.
    pub fn new(mut keys: Vec<SigningKey>) -> Self {
        if keys.len() > MAX_SIGNING_KEYS {
            keys.drain(..keys.len() - MAX_SIGNING_KEYS);
        }
        Self { keys }
    }

    /// Makes `key` the signing key; the oldest key beyond [`MAX_SIGNING_KEYS`] is retired.
    pub fn rotate(&mut self, key: SigningKey) {
        self.keys.push(key);
        if self.keys.len() > MAX_SIGNING_KEYS {
            self.keys.remove(0);
        }
    }

    /// The keys, oldest first.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The published key set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>() })
    }

    /// The key set the verifier uses for remit's own tokens.
    pub fn key_set(&self) -> Result<KeySet, MintError> {
        KeySet::from_jwks(self.jwks().to_string().as_bytes(), &[JwtAlg::EdDsa])
            .map_err(|_| MintError::NoKey)
    }

    /// Signs `claims` as an RFC 9068 access token (`typ: at+jwt`) with the newest key.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, MintError> {
        let key = self.keys.last().ok_or(MintError::NoKey)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| MintError::Sign(e.to_string()))
    }
}

/// Signs `claims` with an Ed25519 key given as PKCS#8 PEM under `kid` (a `JWT`, not an
/// `at+jwt`): how the quickstart's demo issuer of humans signs in `remit token demo-login`.
/// Only for keys that are published on purpose; remit's own keys never leave the ring.
pub fn sign_with_pem<C: Serialize>(pem: &str, kid: &str, claims: &C) -> Result<String, MintError> {
    let b64: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| MintError::BadKey)?;
    Ed25519KeyPair::from_pkcs8(&der).map_err(|_| MintError::BadKey)?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("JWT".into());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der))
        .map_err(|e| MintError::Sign(e.to_string()))
}
