//! Shared test fixtures: a trusted issuer of humans with RSA, EC and Ed25519 keys, its JWKS,
//! and a signer that writes any header and payload, honest or hostile.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use remit_core::Config;
use remit_token::jwt::{KeySet, Verifier};

pub const ISS: &str = "https://idp.test";
pub const AUD: &str = "https://api.test";

/// A world with an issuer of humans (`idp`), an issuer of identities with no keys
/// (`nokeys`), and remit's own token service.
pub const CONFIG: &str = r#"
[gateway]
public_url = "https://api.test"

[tokens]
issuer = "https://remit.test"
max_chain_depth = 3

[[route]]
method = "GET"
path = "/tickets/{id}"
action = "tickets.read"
resource = "Ticket::{id}"

[[route]]
method = "POST"
path = "/tickets/{id}/reply"
action = "tickets.reply"
resource = "Ticket::{id}"

[[route]]
method = "DELETE"
path = "/tickets/{id}"
action = "tickets.delete"
resource = "Ticket::{id}"

[[route]]
method = "GET"
path = "/billing/{id}"
action = "billing.read"
resource = "Invoice::{id}"

[[issuer]]
id = "idp"
issuer = "https://idp.test"
algorithms = ["RS256", "ES256", "EdDSA"]
subjects = "humans"
jwks_file = "idp.jwks.json"
disabled_humans = ["mallory"]

[[issuer.group]]
name = "support"
boundary = ["tickets.read", "tickets.reply"]

[[issuer.group]]
name = "finance"
boundary = ["billing.*"]

[[issuer]]
id = "nokeys"
issuer = "https://nokeys.test"
algorithms = ["RS256"]
subjects = "identities"
jwks_uri = "https://nokeys.test/jwks"

[[identity]]
id = "support-assistant"
kind = "assistant"
owner = "support"
purposes = ["case-summary"]
boundary = ["tickets.*"]
limits = { token_ttl_s = 120 }

[[identity.credential]]
type = "api_key"
id = "sa-key"
sha256 = "f79dca79a686679d460415028d1f52bd3c084090e1290fc528c56be96ce84497"

[[identity]]
id = "triage-agent"
kind = "agent"
owner = "support"
purposes = ["case-summary"]
boundary = ["tickets.read", "billing.read"]

[[identity]]
id = "sub-agent"
kind = "agent"
owner = "support"
purposes = ["case-summary"]
boundary = ["tickets.read"]

[[identity]]
id = "fourth-agent"
kind = "agent"
owner = "support"
purposes = ["case-summary"]
boundary = ["tickets.read"]

[[identity]]
id = "parked"
kind = "agent"
owner = "support"
purposes = ["case-summary"]
boundary = ["tickets.read"]
status = "suspended"
"#;

pub fn config() -> Config {
    Config::parse(CONFIG, "remit.toml").expect("the test configuration parses")
}

pub struct Keys {
    pub rsa: EncodingKey,
    pub rsa_other: EncodingKey,
    pub rsa_n: String,
    pub ec: EncodingKey,
    pub ed: EncodingKey,
    pub jwks: String,
}

fn ec_xy(public: &[u8]) -> (String, String) {
    assert_eq!(public.len(), 65, "an uncompressed P-256 point");
    (
        URL_SAFE_NO_PAD.encode(&public[1..33]),
        URL_SAFE_NO_PAD.encode(&public[33..]),
    )
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
        let read = |f: &str| std::fs::read(format!("{dir}{f}")).expect("test key file");
        let rsa_n = String::from_utf8(read("rsa-1.n")).expect("utf-8");
        let rng = SystemRandom::new();
        let ec_doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("ec key");
        let ec_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_doc.as_ref())
            .expect("ec key");
        let (x, y) = ec_xy(ec_pair.public_key().as_ref());
        let ed_doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed key");
        let ed_pair = Ed25519KeyPair::from_pkcs8(ed_doc.as_ref()).expect("ed key");
        let ed_x = URL_SAFE_NO_PAD.encode(ed_pair.public_key().as_ref());
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": rsa_n, "e": "AQAB"},
            {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": x, "y": y},
            {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": ed_x, "alg": "EdDSA"},
            {"kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": rsa_n, "e": "AQAB"}
        ]})
        .to_string();
        Keys {
            rsa: EncodingKey::from_rsa_der(&read("rsa-1.pkcs1.der")),
            rsa_other: EncodingKey::from_rsa_der(&read("rsa-other.pkcs1.der")),
            rsa_n,
            ec: EncodingKey::from_ec_der(ec_doc.as_ref()),
            ed: EncodingKey::from_ed_der(ed_doc.as_ref()),
            jwks,
        }
    })
}

/// A verifier for [`CONFIG`] with the `idp` key set installed.
pub fn verifier() -> Verifier {
    let config = config();
    let v = Verifier::new(&config.tokens);
    let algs = &config.tokens.issuers[0].algorithms;
    v.set_keys(
        "idp",
        KeySet::from_jwks(keys().jwks.as_bytes(), algs).expect("the test JWKS parses"),
    );
    v
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Signs `header` and `payload` (JSON text) as they are, with `key` under `alg`.
pub fn sign_raw(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).expect("signing");
    format!("{msg}.{sig}")
}

/// An honest token from the `idp` issuer for `payload`.
pub fn idp_token(payload: &serde_json::Value) -> String {
    sign_raw(
        r#"{"alg":"ES256","kid":"ec-1","typ":"JWT"}"#,
        &payload.to_string(),
        &keys().ec,
        Algorithm::ES256,
    )
}
