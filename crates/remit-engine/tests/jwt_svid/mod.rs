//! JWT-SVIDs in the pipeline with a trust domain whose bundle is a file that `load` reads:
//! the JWT-SVID authenticates the identity holding its SPIFFE ID (authority `own`, the
//! `spiffe` credential recorded), a verified peer of another identity makes it a deny like a
//! key would, and a bundle file that is missing or not a bundle stops start-up naming the
//! file and the trust domain.

use std::path::Path;

use base64::Engine as _;
use remit_core::{AuthorityKind, SpiffeId, Verdict};
use remit_engine::load::{LoadError, load_engine};
use remit_engine::{Engine, PEER_IDENTITY_POLICY};

use crate::{facts, quickstart};

const SUPPORT: &str = "spiffe://remit.example/ns/support/sa/support-assistant";
const INVENTORY: &str = "spiffe://remit.example/ns/ops/sa/inventory-sync";
/// The quickstart's published demo-only Ed25519 key, here a JWT authority of `remit.example`.
const KID: &str = "demo--FIfA-wfyNCC9BEi";

/// The quickstart copied to `dir`, trusting `remit.example` by the bundle file `bundle`
/// (written there unless `None`).
fn world(dir: &Path, bundle: Option<&str>) -> Result<Engine, LoadError> {
    let q = quickstart();
    let text = std::fs::read_to_string(q.join("remit.toml")).unwrap()
        + "\n[[trust_domain]]\nname = \"remit.example\"\nalgorithms = [\"EdDSA\"]\nbundle_file = \"bundles/remit.example.json\"\n";
    std::fs::write(dir.join("remit.toml"), text).unwrap();
    std::fs::create_dir(dir.join("policies")).unwrap();
    std::fs::copy(
        q.join("policies/quickstart.cedar"),
        dir.join("policies/quickstart.cedar"),
    )
    .unwrap();
    std::fs::create_dir(dir.join("bundles")).unwrap();
    if let Some(b) = bundle {
        std::fs::write(dir.join("bundles/remit.example.json"), b).unwrap();
    }
    load_engine(&dir.join("remit.toml"))
}

/// The demo key's public JWK as a `jwt-svid` authority, beside an X.509 authority.
fn bundle() -> String {
    let jwks: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(quickstart().join("demo-issuer/jwks.json")).unwrap(),
    )
    .unwrap();
    let mut jwk = jwks["keys"][0].clone();
    jwk["use"] = "jwt-svid".into();
    serde_json::json!({
        "spiffe_sequence": 1,
        "keys": [jwk, {"kty": "EC", "kid": "x509", "use": "x509-svid", "crv": "P-256",
                       "x": "AA", "y": "AA", "x5c": ["AA=="]}],
    })
    .to_string()
}

fn svid(sub: &str) -> String {
    let pem = std::fs::read_to_string(quickstart().join("demo-issuer/DEMO-ONLY-private-key.pem"))
        .unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some(KID.into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "sub": sub, "aud": "http://127.0.0.1:8440", "exp": now + 300, "iat": now
    });
    jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&der)).unwrap()
}

#[test]
fn a_jwt_svid_from_a_bundle_file_authenticates_its_workload() {
    let dir = tempfile::tempdir().unwrap();
    let e = world(dir.path(), Some(&bundle())).expect("the world loads");
    let bearer = format!("Bearer {}", svid(SUPPORT));
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Remit-Purpose", "case-summary"),
    ];
    let now = time::OffsetDateTime::now_utc();
    let d = e
        .decide(&facts("GET", "/tickets/7", &headers), "t".into(), now)
        .unwrap()
        .decision;
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    assert_eq!(
        d.identity.as_ref().map(|i| i.as_str()),
        Some("support-assistant")
    );
    assert_eq!(d.authority.kind, AuthorityKind::Own);
    assert_eq!(
        d.credential_id.as_ref().map(|c| c.as_str()),
        Some("support-assistant-svid")
    );
    // The same JWT-SVID from a peer verified as another workload: refused, as a key is.
    let mut f = facts("GET", "/tickets/7", &headers);
    f.peer_spiffe_id = Some(SpiffeId::parse(INVENTORY).unwrap());
    let d = e.decide(&f, "t".into(), now).unwrap().decision;
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.policies.iter().any(|p| p == PEER_IDENTITY_POLICY),
        "{:?}",
        d.policies
    );
    // From its own workload it passes.
    f.peer_spiffe_id = Some(SpiffeId::parse(SUPPORT).unwrap());
    let d = e.decide(&f, "t".into(), now).unwrap().decision;
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    // Another registered workload's JWT-SVID is that workload, not the support assistant.
    let bearer = format!("Bearer {}", svid(INVENTORY));
    let d = e
        .decide(
            &facts("GET", "/tickets/7", &[("Authorization", bearer.as_str())]),
            "t".into(),
            now,
        )
        .unwrap()
        .decision;
    assert_eq!(
        d.identity.as_ref().map(|i| i.as_str()),
        Some("inventory-sync")
    );
    assert_eq!(
        d.credential_id.as_ref().map(|c| c.as_str()),
        Some("inventory-sync-svid")
    );
}

#[test]
fn a_missing_or_hostile_bundle_file_stops_start_up_naming_it() {
    for (bundle, says) in [
        (None, "No such file"),
        (Some("{\"keys\": []}"), "no signing key"),
        (Some("not json"), "not a JWKS document"),
        (
            Some("{\"keys\": [], \"spiffe_sequence\": \"1\"}"),
            "`spiffe_sequence` is not a whole number",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let e = world(dir.path(), bundle).expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("remit.example.json"), "{text}");
        assert!(text.contains(says), "{bundle:?}: {text}");
        if bundle.is_some() {
            assert!(text.contains("trust domain `remit.example`"), "{text}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let huge = format!(
        "{{\"keys\": [], \"pad\": \"{}\"}}",
        "x".repeat(remit_token::jwt::MAX_BUNDLE_BYTES)
    );
    let e = world(dir.path(), Some(&huge)).expect_err("refused");
    assert!(e.to_string().contains("larger than"), "{e}");
}
