//! JWT verification with a cached key beside a bare aws-lc-rs signature check of the same
//! token (the peer: only the signature, over bytes already decoded), for remit's own
//! Ed25519 tokens and an issuer's ES256 tokens; and token exchanges per second (decide the
//! grant and sign it).
//!
//!   cargo bench -p remit-token --bench jwt
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use remit_core::{Config, IdentityId};
use remit_token::grant::{GrantRequest, client_credentials, exchange};
use remit_token::jwt::{KeySet, Verifier};
use remit_token::mint::{KeyRing, SigningKey};

const CONFIG: &str = r#"
[gateway]
public_url = "https://api.test"
[tokens]
issuer = "https://remit.test"
[[route]]
method = "GET"
path = "/tickets/{id}"
action = "tickets.read"
resource = "Ticket::{id}"
[[issuer]]
id = "idp"
issuer = "https://idp.test"
algorithms = ["ES256"]
subjects = "humans"
jwks = '{"keys":[]}'
[[issuer.group]]
name = "support"
boundary = ["tickets.read"]
[[identity]]
id = "support-assistant"
kind = "assistant"
owner = "support"
purposes = ["case-summary"]
boundary = ["tickets.*"]
"#;

fn split(token: &str) -> (Vec<u8>, Vec<u8>) {
    let (msg, sig) = token.rsplit_once('.').unwrap();
    (
        msg.as_bytes().to_vec(),
        URL_SAFE_NO_PAD.decode(sig).unwrap(),
    )
}

fn bench(c: &mut Criterion) {
    let config = Config::parse(CONFIG, "bench.toml").unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verifier = Verifier::new(&config.tokens);
    let ring = KeyRing::new(vec![SigningKey::generate().unwrap()]);
    verifier.set_keys("remit", ring.key_set().unwrap());
    let sa = config
        .registry
        .get(&IdentityId::parse("support-assistant").unwrap())
        .unwrap();
    let grant = client_credentials(
        &config.tokens,
        sa,
        &GrantRequest::default(),
        now,
        "j".into(),
    )
    .unwrap();
    let own = ring.sign(&grant.claims).unwrap();
    let ed_pub = URL_SAFE_NO_PAD
        .decode(ring.jwks()["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let (msg, sig) = split(&own);
    assert!(verifier.verify(&own, now).is_ok());
    let mut g = c.benchmark_group("jwt_verify_ed25519");
    g.bench_function("remit_verify_cached_key", |b| {
        b.iter(|| verifier.verify(black_box(&own), now).unwrap())
    });
    g.bench_function("bare_aws_lc_signature", |b| {
        let key = UnparsedPublicKey::new(&ED25519, &ed_pub);
        b.iter(|| key.verify(black_box(&msg), black_box(&sig)).unwrap())
    });
    g.finish();

    // An issuer's ES256 token.
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let jwks = serde_json::json!({"keys":[{"kty":"EC","crv":"P-256","kid":"ec-1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
    verifier.set_keys(
        "idp",
        KeySet::from_jwks(
            jwks.to_string().as_bytes(),
            &config.tokens.issuers[0].algorithms,
        )
        .unwrap(),
    );
    let claims = serde_json::json!({"iss":"https://idp.test","aud":"https://api.test","sub":"alice",
        "exp": now + 600, "iat": now, "groups": ["support"], "jti": "h1"});
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("ec-1".into());
    let es = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(doc.as_ref()),
    )
    .unwrap();
    let (emsg, esig) = split(&es);
    let mut g = c.benchmark_group("jwt_verify_es256");
    g.bench_function("remit_verify_cached_key", |b| {
        b.iter(|| verifier.verify(black_box(&es), now).unwrap())
    });
    g.bench_function("bare_aws_lc_signature", |b| {
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
        b.iter(|| key.verify(black_box(&emsg), black_box(&esig)).unwrap())
    });
    g.finish();

    let alice = verifier.verify(&es, now).unwrap();
    let mut g = c.benchmark_group("token_exchange");
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("decide_and_sign", |b| {
        b.iter(|| {
            let grant = exchange(
                &config.tokens,
                &config.registry,
                &alice,
                sa,
                None,
                &GrantRequest::default(),
                now,
                "x".into(),
            )
            .unwrap();
            ring.sign(black_box(&grant.claims)).unwrap()
        })
    });
    g.bench_function("verify_subject_decide_and_sign", |b| {
        b.iter(|| {
            let subject = verifier.verify(black_box(&es), now).unwrap();
            let grant = exchange(
                &config.tokens,
                &config.registry,
                &subject,
                sa,
                None,
                &GrantRequest::default(),
                now,
                "x".into(),
            )
            .unwrap();
            ring.sign(&grant.claims).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
