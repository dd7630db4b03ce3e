//! Credentials: API keys (stored only as SHA-256 hashes), peers' SPIFFE IDs verified by a
//! front door (mTLS; `svid` reads an X.509-SVID's SPIFFE ID, `tls` a TLS listener's PEM
//! files), JWT bearer tokens from trusted issuers (`jwt`), and the tokens remit
//! issues (`mint`, `grant`, `scope`, `jti`).
//!
//! Authentication never fails open: a credential that is unknown, malformed, expired or
//! belongs to a suspended identity yields [`Authn::Refused`], which classifies as
//! `unclassified` with authority `none`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod assertion;
pub mod grant;
pub mod jti;
pub mod jwt;
pub mod mint;
pub mod scope;
pub mod svid;
pub mod tls;

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use remit_core::{Authn, BearerToken, CredentialId, IdentityId, Registry, SpiffeId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// The prefix of every API key remit generates.
pub const API_KEY_PREFIX: &str = "rk_";

/// SHA-256 of a key: what the registry stores.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A public fingerprint of a credential nobody registered: 64 bits of its SHA-256.
/// It lets records and detectors correlate repeated use of one unknown key without
/// storing the key.
pub fn fingerprint(key: &str) -> CredentialId {
    let h = hash_key(key);
    CredentialId::parse(&format!("unknown:{}", hex::encode(&h[..8])))
        .unwrap_or_else(|_| unreachable!("hex is a valid credential id"))
}

/// Whether `secret` is one of `identity`'s API keys: a client secret at the token endpoint
/// is the identity's key, stored only as its SHA-256 and compared in constant time.
pub fn is_identity_secret(identity: &remit_core::Identity, secret: &str) -> bool {
    let h = hash_key(secret);
    identity
        .credentials
        .iter()
        .fold(false, |found, c| found | bool::from(c.sha256.ct_eq(&h)))
}

/// The id of `identity`'s API key that `secret` is, if it is one (every key compared, in
/// constant time).
pub fn identity_secret_id<'i>(
    identity: &'i remit_core::Identity,
    secret: &str,
) -> Option<&'i CredentialId> {
    let h = hash_key(secret);
    identity.credentials.iter().fold(None, |found, c| {
        if bool::from(c.sha256.ct_eq(&h)) {
            Some(&c.id)
        } else {
            found
        }
    })
}

/// The identity whose API key `secret` is, if any (an actor token of the API-key type).
pub fn identity_by_secret<'r>(
    registry: &'r Registry,
    secret: &str,
) -> Option<&'r remit_core::Identity> {
    registry.iter().find(|i| is_identity_secret(i, secret))
}

/// A freshly generated API key: `rk_` followed by 256 random bits, base64url.
#[derive(Debug)]
pub struct NewKey {
    /// The key. Shown once, never stored.
    pub key: String,
    /// Its SHA-256, hex: what goes in `remit.toml`.
    pub sha256_hex: String,
}

/// Generates a new API key from the thread-local CSPRNG (seeded from the operating system).
pub fn new_api_key() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let sha256_hex = hex::encode(hash_key(&key));
    NewKey { key, sha256_hex }
}

/// What authentication found, with the credential's public id for the record.
#[derive(Debug, Clone, Copy)]
pub struct AuthnResult<'r> {
    /// The outcome.
    pub authn: Authn<'r>,
    /// The credential's registered id, or a fingerprint of an unknown one.
    pub credential: Option<&'r CredentialId>,
}

struct Entry {
    sha256: [u8; 32],
    identity: IdentityId,
    credential: CredentialId,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("identity", &self.identity)
            .field("credential", &self.credential)
            .finish()
    }
}

/// Maps presented API keys, and peers' verified SPIFFE IDs, to identities.
///
/// Keys are bucketed by the first 8 bytes of their hash; inside a bucket the full 32-byte
/// hashes are compared in constant time (`subtle`), so the comparison itself reveals
/// nothing about how close a guess was. A SPIFFE ID is public (it is a certificate's name,
/// not a secret), so it is looked up directly.
#[derive(Debug, Default)]
pub struct Authenticator {
    buckets: HashMap<[u8; 8], Vec<Entry>>,
    spiffe: HashMap<SpiffeId, (IdentityId, CredentialId)>,
}

/// Who a peer's SPIFFE ID names.
#[derive(Debug, Clone, Copy)]
pub enum PeerIdentity<'r> {
    /// No identity holds this SPIFFE ID: the peer is unclassified.
    Unknown,
    /// The identity holding it, and the `spiffe` credential's id.
    Registered {
        /// The identity's id.
        identity: &'r IdentityId,
        /// The credential's id.
        credential: &'r CredentialId,
    },
}

fn bucket(h: &[u8; 32]) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    b
}

impl Authenticator {
    /// Indexes every API key in the registry.
    pub fn new(registry: &Registry) -> Self {
        let mut buckets: HashMap<[u8; 8], Vec<Entry>> = HashMap::new();
        let mut spiffe = HashMap::new();
        for identity in registry.iter() {
            for s in &identity.spiffe_ids {
                // The configuration refuses a SPIFFE ID held twice; the first would win.
                spiffe
                    .entry(s.spiffe_id.clone())
                    .or_insert_with(|| (identity.id.clone(), s.id.clone()));
            }
            for c in &identity.credentials {
                buckets.entry(bucket(&c.sha256)).or_default().push(Entry {
                    sha256: c.sha256,
                    identity: identity.id.clone(),
                    credential: c.id.clone(),
                });
            }
        }
        Self { buckets, spiffe }
    }

    /// Which identity, if any, holds `spiffe_id` as a `spiffe` credential.
    pub fn peer_identity(&self, spiffe_id: &SpiffeId) -> PeerIdentity<'_> {
        match self.spiffe.get(spiffe_id) {
            None => PeerIdentity::Unknown,
            Some((identity, credential)) => PeerIdentity::Registered {
                identity,
                credential,
            },
        }
    }

    /// Authenticates a peer by the SPIFFE ID a front door verified (mTLS), for a request
    /// that presents no bearer credential, at `now`.
    ///
    /// An unregistered SPIFFE ID is [`Authn::Anonymous`] (unclassified, no credential): it
    /// is no error and admits no one. A registered one whose identity is suspended,
    /// quarantined or expired is [`Authn::Refused`], with the credential id and why.
    pub fn authenticate_peer<'r>(
        &'r self,
        registry: &'r Registry,
        spiffe_id: &SpiffeId,
        now: OffsetDateTime,
    ) -> (AuthnResult<'r>, Option<String>) {
        let Some((id, credential)) = self.spiffe.get(spiffe_id) else {
            return (
                AuthnResult {
                    authn: Authn::Anonymous,
                    credential: None,
                },
                Some(format!(
                    "the peer's SPIFFE ID `{spiffe_id}` is not registered to any identity"
                )),
            );
        };
        let refused = |why: String| {
            (
                AuthnResult {
                    authn: Authn::Refused,
                    credential: Some(credential),
                },
                Some(why),
            )
        };
        let Some(identity) = registry.get(id) else {
            return refused(format!("identity `{id}` is no longer registered"));
        };
        if let Some(why) = identity.inactive_reason(now) {
            return refused(why);
        }
        (
            AuthnResult {
                authn: Authn::Identity {
                    identity,
                    credential,
                },
                credential: Some(credential),
            },
            None,
        )
    }

    /// Authenticates a presented credential against `registry` at `now`.
    ///
    /// `unknown` receives the fingerprint of an unregistered key so the caller can record it.
    pub fn authenticate<'r>(
        &'r self,
        registry: &'r Registry,
        token: Option<&BearerToken>,
        now: OffsetDateTime,
        unknown: &'r mut Option<CredentialId>,
    ) -> (AuthnResult<'r>, Option<String>) {
        let Some(token) = token else {
            return (
                AuthnResult {
                    authn: Authn::Anonymous,
                    credential: None,
                },
                None,
            );
        };
        let secret = token.expose_secret();
        let h = hash_key(secret);
        let found = self
            .buckets
            .get(&bucket(&h))
            .and_then(|entries| entries.iter().find(|e| bool::from(e.sha256.ct_eq(&h))));
        let Some(entry) = found else {
            *unknown = Some(fingerprint(secret));
            let note = "the credential is not registered to any identity".to_owned();
            return (
                AuthnResult {
                    authn: Authn::Refused,
                    credential: unknown.as_ref(),
                },
                Some(note),
            );
        };
        let credential = Some(&entry.credential);
        let Some(identity) = registry.get(&entry.identity) else {
            let note = format!("identity `{}` is no longer registered", entry.identity);
            return (
                AuthnResult {
                    authn: Authn::Refused,
                    credential,
                },
                Some(note),
            );
        };
        if let Some(why) = identity.inactive_reason(now) {
            return (
                AuthnResult {
                    authn: Authn::Refused,
                    credential,
                },
                Some(why),
            );
        }
        (
            AuthnResult {
                authn: Authn::Identity {
                    identity,
                    credential: &entry.credential,
                },
                credential,
            },
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remit_core::Config;

    fn registry(extra: &str) -> Registry {
        let key = hex::encode(hash_key("rk_test"));
        let text = format!(
            "[[route]]\nmethod = \"GET\"\npath = \"/a\"\naction = \"a.read\"\nresource = \"A::x\"\n\
             [[identity]]\nid = \"bot\"\nkind = \"agent\"\nowner = \"t\"\n{extra}\n\
             [[identity.credential]]\ntype = \"api_key\"\nid = \"bot-key\"\nsha256 = \"{key}\"\n"
        );
        Config::parse(&text, "t.toml").unwrap().registry
    }

    fn run(reg: &Registry, key: Option<&str>) -> (bool, Option<String>, Option<String>) {
        let auth = Authenticator::new(reg);
        let token = key.map(|k| BearerToken::from_authorization(&format!("Bearer {k}")).unwrap());
        let mut unknown = None;
        let (r, note) =
            auth.authenticate(reg, token.as_ref(), OffsetDateTime::now_utc(), &mut unknown);
        (
            matches!(r.authn, Authn::Identity { .. }),
            r.credential.map(|c| c.to_string()),
            note,
        )
    }

    #[test]
    fn known_key_authenticates() {
        let reg = registry("");
        assert_eq!(
            run(&reg, Some("rk_test")),
            (true, Some("bot-key".into()), None)
        );
    }

    #[test]
    fn unknown_key_is_refused_with_a_fingerprint() {
        let reg = registry("");
        let (ok, cred, note) = run(&reg, Some("rk_other"));
        assert!(!ok);
        assert!(cred.unwrap().starts_with("unknown:"));
        assert!(note.unwrap().contains("not registered"));
    }

    #[test]
    fn suspended_and_expired_identities_are_refused() {
        let (ok, _, note) = run(&registry("status = \"suspended\""), Some("rk_test"));
        assert!(!ok && note.unwrap().contains("suspended"));
        let (ok, _, note) = run(
            &registry("expires = \"2000-01-01T00:00:00Z\""),
            Some("rk_test"),
        );
        assert!(!ok && note.unwrap().contains("expired"));
    }

    const SVID: &str = "[[identity.credential]]\ntype = \"spiffe\"\nid = \"bot-svid\"\nspiffe_id = \"spiffe://example.org/bot\"\n";

    fn peer(reg: &Registry, spiffe: &str) -> (&'static str, Option<String>, Option<String>) {
        let auth = Authenticator::new(reg);
        let id = SpiffeId::parse(spiffe).unwrap();
        let (r, note) = auth.authenticate_peer(reg, &id, OffsetDateTime::now_utc());
        let kind = match r.authn {
            Authn::Identity { identity, .. } => {
                assert_eq!(identity.id.as_str(), "bot");
                "identity"
            }
            Authn::Anonymous => "anonymous",
            Authn::Refused => "refused",
        };
        (kind, r.credential.map(ToString::to_string), note)
    }

    #[test]
    fn a_registered_spiffe_id_authenticates_its_identity() {
        let reg = registry(SVID);
        let (kind, cred, note) = peer(&reg, "spiffe://example.org/bot");
        assert_eq!(
            (kind, cred.as_deref(), note),
            ("identity", Some("bot-svid"), None)
        );
        let auth = Authenticator::new(&reg);
        assert!(matches!(
            auth.peer_identity(&SpiffeId::parse("spiffe://example.org/bot").unwrap()),
            PeerIdentity::Registered { identity, credential }
                if identity.as_str() == "bot" && credential.as_str() == "bot-svid"
        ));
    }

    #[test]
    fn an_unknown_spiffe_id_is_anonymous_never_an_identity() {
        let reg = registry(SVID);
        // Near misses: another path, a prefix, a longer path, another trust domain.
        for other in [
            "spiffe://example.org/bot2",
            "spiffe://example.org/bo",
            "spiffe://example.org/bot/x",
            "spiffe://example.com/bot",
            "spiffe://example.org",
        ] {
            let (kind, cred, note) = peer(&reg, other);
            assert_eq!((kind, cred), ("anonymous", None), "{other}");
            assert!(note.unwrap().contains("not registered"), "{other}");
        }
    }

    #[test]
    fn a_spiffe_id_of_a_suspended_quarantined_or_expired_identity_is_refused() {
        for (extra, says) in [
            ("status = \"suspended\"", "suspended"),
            ("status = \"quarantined\"", "quarantined"),
            ("expires = \"2000-01-01T00:00:00Z\"", "expired"),
        ] {
            let reg = registry(&format!("{extra}\n{SVID}"));
            let (kind, cred, note) = peer(&reg, "spiffe://example.org/bot");
            assert_eq!(
                (kind, cred.as_deref()),
                ("refused", Some("bot-svid")),
                "{extra}"
            );
            assert!(note.unwrap().contains(says), "{extra}");
        }
    }

    #[test]
    fn generated_keys_are_unique_and_hash_as_stored() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(API_KEY_PREFIX) && a.key.len() == 46);
        assert_eq!(a.sha256_hex, hex::encode(hash_key(&a.key)));
    }
}
