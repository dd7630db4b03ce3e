//! Key sets: what a JWKS may hold, rotation by `kid`, and failing closed without keys.

use jsonwebtoken::Algorithm;
use remit_core::tokens::JwtAlg;
use remit_token::jwt::{KeySet, MAX_KEYS_PER_SET};

use crate::support::{AUD, ISS, config, idp_token, keys, now, sign_raw, verifier};

#[test]
fn unusable_keys_are_skipped_and_usable_ones_kept() {
    let set = KeySet::from_jwks(
        keys().jwks.as_bytes(),
        &[JwtAlg::Rs256, JwtAlg::Es256, JwtAlg::EdDsa],
    )
    .expect("parses");
    // The `oct` key and the encryption key are never signing keys.
    assert_eq!(set.kids(), vec!["ec-1", "ed-1", "rsa-1"]);
    let only_ec = KeySet::from_jwks(keys().jwks.as_bytes(), &[JwtAlg::Es256]).expect("parses");
    assert_eq!(only_ec.kids(), vec!["ec-1"]);
}

#[test]
fn hostile_key_sets_are_refused() {
    let algs = [JwtAlg::Rs256];
    let big = vec![b' '; 70 * 1024];
    assert!(
        KeySet::from_jwks(&big, &algs)
            .unwrap_err()
            .to_string()
            .contains("larger")
    );
    for bad in [
        &b"null"[..],
        b"{}",
        b"{\"keys\":{}}",
        b"[1]",
        b"{\"keys\":[]}",
        b"\xff",
    ] {
        assert!(
            KeySet::from_jwks(bad, &algs).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let n = &keys().rsa_n;
    let many: Vec<_> = (0..=MAX_KEYS_PER_SET)
        .map(|i| serde_json::json!({"kty":"RSA","kid":format!("k{i}"),"n":n,"e":"AQAB"}))
        .collect();
    let doc = serde_json::json!({ "keys": many }).to_string();
    assert!(
        KeySet::from_jwks(doc.as_bytes(), &algs)
            .unwrap_err()
            .to_string()
            .contains("more than")
    );
    let dup = serde_json::json!({"keys":[
        {"kty":"RSA","kid":"a","n":n,"e":"AQAB"},{"kty":"RSA","kid":"a","n":n,"e":"AQAB"}]})
    .to_string();
    assert!(
        KeySet::from_jwks(dup.as_bytes(), &algs)
            .unwrap_err()
            .to_string()
            .contains("two keys")
    );
    // Injection-shaped kids and short RSA moduli are never kept.
    let weird = serde_json::json!({"keys":[
        {"kty":"RSA","kid":"../etc/passwd","n":n,"e":"AQAB"},
        {"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"}]})
    .to_string();
    assert!(
        KeySet::from_jwks(weird.as_bytes(), &algs)
            .unwrap_err()
            .to_string()
            .contains("no signing key")
    );
}

#[test]
fn rotation_by_kid_and_fail_closed_without_keys() {
    let v = verifier();
    let now = now();
    let t =
        idp_token(&serde_json::json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 60}));
    assert!(v.verify(&t, now).is_ok());
    // The issuer rotates to a set without `ec-1`: the old key's tokens stop verifying.
    let rsa_only =
        serde_json::json!({"keys":[{"kty":"RSA","kid":"rsa-2","n":keys().rsa_n,"e":"AQAB"}]});
    let algs = &config().tokens.issuers[0].algorithms;
    v.set_keys(
        "idp",
        KeySet::from_jwks(rsa_only.to_string().as_bytes(), algs).expect("parses"),
    );
    assert!(
        v.verify(&t, now)
            .unwrap_err()
            .to_string()
            .contains("no key `ec-1`")
    );
    let t2 = sign_raw(
        r#"{"alg":"RS256","kid":"rsa-2"}"#,
        &serde_json::json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 60}).to_string(),
        &keys().rsa,
        Algorithm::RS256,
    );
    assert!(v.verify(&t2, now).is_ok());
    // The key set becomes unavailable: every token of the issuer is refused.
    v.clear_keys("idp");
    assert!(
        v.verify(&t2, now)
            .unwrap_err()
            .to_string()
            .contains("unavailable")
    );
}
