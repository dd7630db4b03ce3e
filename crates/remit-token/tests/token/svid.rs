//! JWT-SVIDs (the SPIFFE JWT-SVID standard) from a configured trust domain: signed here by
//! an independent signer (`jsonwebtoken` with keys made by aws-lc-rs), checked with the
//! trust domain's SPIFFE bundle, refused in every hostile shape, and never read both as an
//! issuer's token and as a JWT-SVID.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use remit_core::Config;
use remit_core::tokens::JwtAlg;
use remit_token::jwt::{
    JwtError, KeySet, KeySetError, MAX_BUNDLE_ENTRIES, SubjectKind, VerifiedToken, Verifier,
};
use serde_json::{Value, json};

use crate::support::{AUD, CONFIG, ISS, keys, now, sign_raw};

const TD: &str = "example.org";
const WORKLOAD: &str = "spiffe://example.org/ns/prod/sa/billing";

/// [`CONFIG`] with two trust domains: `example.org` (ES256, RS256) and `other.test`
/// (ES256, whose JWT-SVIDs name `spiffe://remit.test/api` as their audience).
fn config() -> Config {
    let text = format!(
        "{CONFIG}\n[[trust_domain]]\nname = \"{TD}\"\nalgorithms = [\"ES256\", \"RS256\"]\n\
         bundle_file = \"example.org.json\"\n\n[[trust_domain]]\nname = \"other.test\"\n\
         algorithms = [\"ES256\"]\nbundle_url = \"https://other.test/bundle\"\n\
         audience = \"spiffe://remit.test/api\"\n"
    );
    Config::parse(&text, "remit.toml").expect("the configuration parses")
}

struct Ec {
    key: EncodingKey,
    x: String,
    y: String,
}

fn ec() -> Ec {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("key");
    let p = pair.public_key().as_ref();
    Ec {
        key: EncodingKey::from_ec_der(doc.as_ref()),
        x: URL_SAFE_NO_PAD.encode(&p[1..33]),
        y: URL_SAFE_NO_PAD.encode(&p[33..]),
    }
}

fn ec_jwk(kid: &str, k: &Ec, use_: Option<&str>) -> Value {
    let mut j = json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": k.x, "y": k.y});
    if let Some(u) = use_ {
        j["use"] = json!(u);
    }
    j
}

struct World {
    v: Verifier,
    /// `example.org`'s JWT authority (`svid-ec`, `use: jwt-svid`).
    jwt: Ec,
    /// A key `example.org`'s bundle lists only as an X.509 authority (`x509-ec`).
    x509: Ec,
    /// `other.test`'s JWT authority (`other-ec`).
    other: Ec,
}

/// `example.org`'s bundle: an EC JWT authority, an RSA key with no `use` (remit's test RSA
/// key, `svid-rsa`), an X.509 authority, a `sig` key and an encryption key.
fn bundle(w: &World) -> String {
    json!({
        "spiffe_sequence": 7,
        "spiffe_refresh_hint": 300,
        "keys": [
            ec_jwk("svid-ec", &w.jwt, Some("jwt-svid")),
            {"kty": "RSA", "kid": "svid-rsa", "n": keys().rsa_n, "e": "AQAB"},
            ec_jwk("x509-ec", &w.x509, Some("x509-svid")),
            ec_jwk("sig-ec", &w.x509, Some("sig")),
            ec_jwk("enc-ec", &w.x509, Some("enc")),
        ]
    })
    .to_string()
}

fn world() -> World {
    let c = config();
    let v = Verifier::new(&c.tokens);
    // The issuer of humans keeps its keys beside the trust domains' bundles.
    v.set_keys(
        "idp",
        KeySet::from_jwks(keys().jwks.as_bytes(), &c.tokens.issuers[0].algorithms)
            .expect("the issuer's key set parses"),
    );
    let w = World {
        v,
        jwt: ec(),
        x509: ec(),
        other: ec(),
    };
    let b = KeySet::from_spiffe_bundle(bundle(&w).as_bytes(), &[JwtAlg::Es256, JwtAlg::Rs256])
        .expect("the bundle parses");
    w.v.set_bundle(TD, b.keys);
    let other = json!({"keys": [ec_jwk("other-ec", &w.other, Some("jwt-svid"))]}).to_string();
    let b = KeySet::from_spiffe_bundle(other.as_bytes(), &[JwtAlg::Es256]).expect("parses");
    w.v.set_bundle("other.test", b.keys);
    w
}

fn claims(now: i64) -> Value {
    json!({"sub": WORKLOAD, "aud": [AUD], "exp": now + 300, "iat": now})
}

fn es(header: &str, payload: &Value, key: &Ec) -> String {
    sign_raw(header, &payload.to_string(), &key.key, Algorithm::ES256)
}

const H: &str = r#"{"alg":"ES256","kid":"svid-ec","typ":"JWT"}"#;

fn ok(v: &Verifier, token: &str, now: i64) -> VerifiedToken {
    v.verify(token, now).expect("the JWT-SVID verifies")
}

fn refused(v: &Verifier, token: &str, now: i64) -> JwtError {
    v.verify(token, now).expect_err("the JWT-SVID is refused")
}

#[test]
fn a_jwt_svid_verifies_as_its_spiffe_id() {
    let w = world();
    let now = now();
    let t = ok(&w.v, &es(H, &claims(now), &w.jwt), now);
    assert_eq!(t.subject, WORKLOAD);
    assert_eq!(t.issuer_id, "spiffe://example.org");
    assert!(matches!(&t.kind, SubjectKind::Spiffe { spiffe_id } if spiffe_id.as_str() == WORKLOAD));
    assert!(t.actors.is_empty() && !t.single_use);
    // No `typ`, `typ: JOSE`, a string `aud`, an `iss` no issuer has, and the RSA key whose
    // `use` is absent: all are JWT-SVIDs too.
    let mut c = claims(now);
    c["aud"] = json!(AUD);
    c["iss"] = json!("https://spire.example.org");
    ok(
        &w.v,
        &es(r#"{"alg":"ES256","kid":"svid-ec"}"#, &c, &w.jwt),
        now,
    );
    ok(
        &w.v,
        &es(
            r#"{"alg":"ES256","kid":"svid-ec","typ":"JOSE"}"#,
            &c,
            &w.jwt,
        ),
        now,
    );
    let rsa = sign_raw(
        r#"{"alg":"RS256","kid":"svid-rsa","typ":"JWT"}"#,
        &claims(now).to_string(),
        &keys().rsa,
        Algorithm::RS256,
    );
    ok(&w.v, &rsa, now);
    // Within the skew after `exp`, not past it.
    let mut c = claims(now);
    c["exp"] = json!(now - 59);
    ok(&w.v, &es(H, &c, &w.jwt), now);
    c["exp"] = json!(now - 60);
    assert_eq!(refused(&w.v, &es(H, &c, &w.jwt), now), JwtError::Expired);
}

#[test]
fn a_trust_domain_with_its_own_audience_and_keys() {
    let w = world();
    let now = now();
    let mut c = claims(now);
    c["sub"] = json!("spiffe://other.test/web");
    let h = r#"{"alg":"ES256","kid":"other-ec"}"#;
    // `other.test` names its own audience; this resource's URL is not it.
    assert!(matches!(
        refused(&w.v, &es(h, &c, &w.other), now),
        JwtError::WrongAudience(_)
    ));
    c["aud"] = json!(["spiffe://remit.test/api"]);
    ok(&w.v, &es(h, &c, &w.other), now);
    // One trust domain's key never vouches for another's SPIFFE IDs, even under a `kid`
    // the other's bundle holds.
    assert!(matches!(
        refused(&w.v, &es(h, &c, &w.jwt), now),
        JwtError::BadSignature
    ));
    assert!(matches!(
        refused(&w.v, &es(H, &c, &w.jwt), now),
        JwtError::UnknownKey { .. }
    ));
}

#[test]
fn every_hostile_jwt_svid_is_refused() {
    let w = world();
    let now = now();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(now);
        f(&mut c);
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"svid-ec"}"#),
                URL_SAFE_NO_PAD.encode(claims(now).to_string())
            ),
            "malformed",
        ),
        (
            "alg none with a signature",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"svid-ec"}"#),
                URL_SAFE_NO_PAD.encode(claims(now).to_string()),
                URL_SAFE_NO_PAD.encode([0x41u8; 32])
            ),
            "algorithm `none` is not accepted",
        ),
        (
            "HS256 keyed with the bundle's RSA public key",
            sign_raw(
                r#"{"alg":"HS256","kid":"svid-rsa"}"#,
                &claims(now).to_string(),
                &EncodingKey::from_secret(keys().rsa_n.as_bytes()),
                Algorithm::HS256,
            ),
            "algorithm `HS256` is not accepted",
        ),
        (
            "an algorithm the trust domain does not sign with",
            sign_raw(
                r#"{"alg":"EdDSA","kid":"svid-ec"}"#,
                &claims(now).to_string(),
                &keys().ed,
                Algorithm::EdDSA,
            ),
            "does not sign with `EdDSA`",
        ),
        (
            "a foreign trust domain",
            es(
                H,
                &with(&|c| c["sub"] = json!("spiffe://evil.test/ns/prod/sa/billing")),
                &w.jwt,
            ),
            "trust domain `evil.test` is not trusted",
        ),
        (
            "a trust domain that differs only in case",
            es(
                H,
                &with(&|c| c["sub"] = json!("spiffe://Example.org/ns/prod/sa/billing")),
                &w.jwt,
            ),
            "`sub` claim is not a SPIFFE ID",
        ),
        (
            "a sub with a dot-dot segment",
            es(
                H,
                &with(&|c| c["sub"] = json!("spiffe://example.org/ns/../admin")),
                &w.jwt,
            ),
            "`sub` claim is not a SPIFFE ID",
        ),
        (
            "a sub with a query",
            es(
                H,
                &with(&|c| c["sub"] = json!("spiffe://example.org/x?y=1")),
                &w.jwt,
            ),
            "`sub` claim is not a SPIFFE ID",
        ),
        (
            "a sub too long to be a claim",
            es(
                H,
                &with(&|c| c["sub"] = json!(format!("spiffe://example.org/{}", "a".repeat(300)))),
                &w.jwt,
            ),
            "`sub` claim is not a SPIFFE ID",
        ),
        (
            "a sub that is not a SPIFFE ID, and no iss",
            es(H, &with(&|c| c["sub"] = json!("billing")), &w.jwt),
            "no `iss` claim",
        ),
        (
            "a sub that is a number",
            es(H, &with(&|c| c["sub"] = json!(7)), &w.jwt),
            "no `iss` claim",
        ),
        (
            "no sub",
            es(
                H,
                &with(&|c| {
                    c.as_object_mut().map(|o| o.remove("sub"));
                }),
                &w.jwt,
            ),
            "no `iss` claim",
        ),
        (
            "an iss that is not a string",
            es(H, &with(&|c| c["iss"] = json!(["x"])), &w.jwt),
            "`iss` claim is not a string",
        ),
        (
            "no aud",
            es(
                H,
                &with(&|c| {
                    c.as_object_mut().map(|o| o.remove("aud"));
                }),
                &w.jwt,
            ),
            "no `aud` claim",
        ),
        (
            "an empty aud",
            es(H, &with(&|c| c["aud"] = json!([])), &w.jwt),
            "audience is not this resource",
        ),
        (
            "a foreign aud",
            es(
                H,
                &with(&|c| c["aud"] = json!(["spiffe://example.org/reports"])),
                &w.jwt,
            ),
            "audience is not this resource",
        ),
        (
            "an aud of this resource as a prefix",
            es(
                H,
                &with(&|c| c["aud"] = json!(format!("{AUD}.evil"))),
                &w.jwt,
            ),
            "audience is not this resource",
        ),
        (
            "no exp",
            es(
                H,
                &with(&|c| {
                    c.as_object_mut().map(|o| o.remove("exp"));
                }),
                &w.jwt,
            ),
            "no `exp` claim",
        ),
        (
            "expired",
            es(H, &with(&|c| c["exp"] = json!(now - 1000)), &w.jwt),
            "expired",
        ),
        (
            "exp as a string",
            es(
                H,
                &with(&|c| c["exp"] = json!((now + 300).to_string())),
                &w.jwt,
            ),
            "`exp` claim is not a number",
        ),
        (
            "exp as a fraction",
            es(H, &with(&|c| c["exp"] = json!(now as f64 + 300.5)), &w.jwt),
            "`exp` claim is not a whole number",
        ),
        (
            "nbf in the future",
            es(H, &with(&|c| c["nbf"] = json!(now + 1000)), &w.jwt),
            "not valid yet",
        ),
        (
            "a key the bundle lists only as an X.509 authority",
            es(r#"{"alg":"ES256","kid":"x509-ec"}"#, &claims(now), &w.x509),
            "has no key `x509-ec`",
        ),
        (
            "a key the bundle lists with use sig",
            es(r#"{"alg":"ES256","kid":"sig-ec"}"#, &claims(now), &w.x509),
            "has no key `sig-ec`",
        ),
        (
            "a kid the bundle does not hold",
            es(r#"{"alg":"ES256","kid":"k9"}"#, &claims(now), &w.jwt),
            "`spiffe://example.org` has no key `k9`",
        ),
        (
            "no kid",
            es(r#"{"alg":"ES256"}"#, &claims(now), &w.jwt),
            "`kid` is missing",
        ),
        (
            "an attacker's key under the bundle's kid",
            es(H, &claims(now), &w.x509),
            "signature does not verify",
        ),
        (
            "jku",
            es(
                r#"{"alg":"ES256","kid":"svid-ec","jku":"https://evil.test/jwks"}"#,
                &claims(now),
                &w.jwt,
            ),
            "carries `jku`",
        ),
        (
            "x5u",
            es(
                r#"{"alg":"ES256","kid":"svid-ec","x5u":"https://evil.test/c.pem"}"#,
                &claims(now),
                &w.jwt,
            ),
            "carries `x5u`",
        ),
        (
            "an embedded jwk",
            es(
                &format!(
                    r#"{{"alg":"ES256","kid":"svid-ec","jwk":{}}}"#,
                    ec_jwk("a", &w.x509, None)
                ),
                &claims(now),
                &w.x509,
            ),
            "carries `jwk`",
        ),
        (
            "typ at+jwt",
            es(
                r#"{"alg":"ES256","kid":"svid-ec","typ":"at+jwt"}"#,
                &claims(now),
                &w.jwt,
            ),
            "`typ` `at+jwt` is not accepted",
        ),
        (
            "a duplicated sub",
            sign_raw(
                H,
                &format!(
                    r#"{{"sub":"spiffe://example.org/a","sub":"{WORKLOAD}","aud":"{AUD}","exp":{}}}"#,
                    now + 300
                ),
                &w.jwt.key,
                Algorithm::ES256,
            ),
            "repeats the member `sub`",
        ),
    ];
    let mut failures = Vec::new();
    for (name, token, expect) in &cases {
        match w.v.verify(token, now) {
            Err(e) if e.to_string().contains(expect) => {}
            got => failures.push(format!(
                "{name}: expected {expect:?}, got {:?}",
                got.map(|t| t.subject).map_err(|e| e.to_string())
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_token_is_read_one_way_only() {
    let w = world();
    let now = now();
    // An `iss` of a configured issuer makes it that issuer's token, whatever `sub` says:
    // the bundle's key does not vouch for it...
    let mut c = claims(now);
    c["iss"] = json!(ISS);
    assert!(matches!(
        refused(&w.v, &es(H, &c, &w.jwt), now),
        JwtError::UnknownKey { issuer, .. } if issuer == "idp"
    ));
    // ...and the issuer's own key makes it the issuer's token (a human's), never a JWT-SVID.
    let t = ok(
        &w.v,
        &sign_raw(
            r#"{"alg":"ES256","kid":"ec-1"}"#,
            &c.to_string(),
            &keys().ec,
            Algorithm::ES256,
        ),
        now,
    );
    assert!(matches!(t.kind, SubjectKind::Human { .. }), "{t:?}");
    assert_eq!(t.issuer_id, "idp");
    // remit's own `iss` likewise: never a JWT-SVID.
    c["iss"] = json!("https://remit.test");
    assert!(matches!(
        refused(&w.v, &es(H, &c, &w.jwt), now),
        JwtError::BadType(_) | JwtError::AlgNotAllowed { .. } | JwtError::UnknownKey { .. }
    ));
    // The issuer's key under its own kid does not make a JWT-SVID of an `iss`-less token.
    let t = sign_raw(
        r#"{"alg":"ES256","kid":"ec-1"}"#,
        &claims(now).to_string(),
        &keys().ec,
        Algorithm::ES256,
    );
    assert!(
        matches!(refused(&w.v, &t, now), JwtError::UnknownKey { issuer, .. } if issuer == "spiffe://example.org")
    );
}

#[test]
fn without_a_bundle_a_trust_domains_jwt_svids_are_refused() {
    let w = world();
    let now = now();
    let token = es(H, &claims(now), &w.jwt);
    ok(&w.v, &token, now);
    w.v.clear_bundle(TD);
    assert_eq!(
        refused(&w.v, &token, now),
        JwtError::KeysUnavailable("spiffe://example.org".into())
    );
    // A verifier with no trust domain configured reads it as no one's.
    let plain = Verifier::new(&crate::support::config().tokens);
    assert_eq!(
        refused(&plain, &token, now),
        JwtError::UnknownTrustDomain(TD.into())
    );
}

#[test]
fn a_spiffe_bundle_keeps_only_its_jwt_authorities() {
    let w = world();
    let b = KeySet::from_spiffe_bundle(bundle(&w).as_bytes(), &[JwtAlg::Es256, JwtAlg::Rs256])
        .expect("parses");
    assert_eq!(b.keys.kids(), vec!["svid-ec", "svid-rsa"]);
    assert_eq!((b.sequence, b.refresh_hint_s), (Some(7), Some(300)));
    let only_ec = KeySet::from_spiffe_bundle(bundle(&w).as_bytes(), &[JwtAlg::Es256]).unwrap();
    assert_eq!(only_ec.keys.kids(), vec!["svid-ec"]);
    // A JWKS reader does not take a bundle's JWT authorities as signing keys.
    let as_jwks = KeySet::from_jwks(bundle(&w).as_bytes(), &[JwtAlg::Es256]).unwrap();
    assert_eq!(as_jwks.kids(), vec!["sig-ec"]);
}

#[test]
fn hostile_spiffe_bundles_are_refused() {
    let w = world();
    let algs = [JwtAlg::Es256];
    let jwt = ec_jwk("svid-ec", &w.jwt, Some("jwt-svid"));
    let x509 = ec_jwk("x509-ec", &w.x509, Some("x509-svid"));
    let refused = |doc: String| {
        KeySet::from_spiffe_bundle(doc.as_bytes(), &algs)
            .expect_err(&doc)
            .to_string()
    };
    for (doc, says) in [
        (json!({"keys": [x509]}).to_string(), "no signing key"),
        (json!({"keys": []}).to_string(), "no signing key"),
        (json!({"keys": {}}).to_string(), "no `keys` array"),
        (json!({"spiffe_sequence": 1}).to_string(), "no `keys` array"),
        ("null".into(), "not a JWKS document"),
        ("[1]".into(), "not a JWKS document"),
        ("{\"keys\":[".into(), "not a JWKS document"),
        (
            json!({"keys": [jwt], "spiffe_sequence": "7"}).to_string(),
            "`spiffe_sequence` is not a whole number",
        ),
        (
            json!({"keys": [jwt], "spiffe_sequence": -1}).to_string(),
            "`spiffe_sequence` is not a whole number",
        ),
        (
            json!({"keys": [jwt], "spiffe_refresh_hint": 1.5}).to_string(),
            "`spiffe_refresh_hint` is not a whole number",
        ),
        (
            format!(r#"{{"keys":[],"keys":[{jwt}]}}"#),
            "the member `keys` appears twice",
        ),
        (
            json!({"keys": [jwt, jwt]}).to_string(),
            "two keys `svid-ec`",
        ),
        (
            json!({"keys": vec![x509.clone(); MAX_BUNDLE_ENTRIES + 1]}).to_string(),
            "the bundle lists more than 128 keys",
        ),
        (
            json!({"keys": [jwt], "pad": "x".repeat(300 * 1024)}).to_string(),
            "larger than 262144 bytes",
        ),
    ] {
        let got = refused(doc.clone());
        assert!(got.contains(says), "{says:?}: got {got:?}");
    }
    // Up to the entry limit, X.509 authorities beside the JWT one are fine.
    let mut many = vec![x509; MAX_BUNDLE_ENTRIES - 1];
    many.push(jwt);
    let b = KeySet::from_spiffe_bundle(json!({"keys": many}).to_string().as_bytes(), &algs)
        .expect("within the limit");
    assert_eq!(b.keys.kids(), vec!["svid-ec"]);
    // More usable keys than a key set holds.
    let usable: Vec<Value> = (0..=remit_token::jwt::MAX_KEYS_PER_SET)
        .map(|i| ec_jwk(&format!("k{i}"), &w.jwt, Some("jwt-svid")))
        .collect();
    assert!(matches!(
        KeySet::from_spiffe_bundle(json!({"keys": usable}).to_string().as_bytes(), &algs),
        Err(KeySetError::TooManyKeys)
    ));
}
