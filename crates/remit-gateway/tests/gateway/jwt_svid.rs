//! JWT-SVIDs through the real proxy: the quickstart trusts the trust domain `remit.example`,
//! whose SPIFFE bundle a loopback bundle endpoint serves. A JWT-SVID naming the support
//! assistant's SPIFFE ID reaches the upstream as that identity (never the token), recorded
//! by its `spiffe` credential; keys rotate at the next refresh; an older bundle is refused;
//! unregistered, suspended, chained and foreign JWT-SVIDs are refused; a JWT-SVID is an
//! actor token at the token endpoint; the bundle endpoint is never followed elsewhere and
//! never read past its limit.

use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use remit_core::tokens::TrustDomainSettings;
use remit_gateway::jwks::{self, RefreshError};
use remit_gateway::token::{TokenService, serve_proxy_with_tokens};
use remit_store::SqliteStore;
use serde_json::{Value, json};

use crate::authz::quickstart_engine;
use crate::proxy::{Log, recording_upstream, serve_upstream};
use crate::token::{human_token, post_form};

const AUD: &str = "http://127.0.0.1:8440";
const SUPPORT: &str = "spiffe://remit.example/ns/support/sa/support-assistant";

/// A P-256 JWT authority: its signing key and its public JWK in a bundle.
struct Authority {
    kid: &'static str,
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
}

fn authority(kid: &'static str) -> Authority {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let p = pair.public_key().as_ref();
    Authority {
        kid,
        key: jsonwebtoken::EncodingKey::from_ec_der(doc.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "jwt-svid", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..]),
        }),
    }
}

/// A SPIFFE bundle of `keys`, as a bundle endpoint serves it.
fn bundle(sequence: u64, keys: &[&Authority]) -> String {
    json!({
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": 300,
        "keys": keys.iter().map(|a| a.jwk.clone()).collect::<Vec<_>>(),
    })
    .to_string()
}

/// A JWT-SVID signed by `by`, with `extra` claims over the usual ones.
fn svid(by: &Authority, sub: &str, extra: Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(by.kid.into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({"sub": sub, "aud": [AUD], "exp": now + 300, "iat": now});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    jsonwebtoken::encode(&h, &claims, &by.key).unwrap()
}

/// A loopback bundle endpoint: `/bundle` serves the current body, `/moved` redirects to
/// it, `/huge` serves more than a bundle may be.
struct BundleEndpoint {
    base: String,
    body: Arc<Mutex<String>>,
}

async fn bundle_endpoint(first: String) -> BundleEndpoint {
    let body = Arc::new(Mutex::new(first));
    let b = body.clone();
    let app = axum::Router::new()
        .route(
            "/bundle",
            axum::routing::get(move || {
                let b = b.clone();
                async move {
                    let text = b.lock().unwrap().clone();
                    ([("content-type", "application/json")], text)
                }
            }),
        )
        .route(
            "/moved",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "/bundle")],
                    "moved",
                )
            }),
        )
        .route(
            "/huge",
            axum::routing::get(|| async { "x".repeat(remit_token::jwt::MAX_BUNDLE_BYTES + 1) }),
        );
    BundleEndpoint {
        base: serve_upstream(app).await,
        body,
    }
}

struct Remit {
    url: String,
    engine: Arc<remit_engine::Engine>,
    log: Log,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl Remit {
    fn trust_domain(&self) -> TrustDomainSettings {
        self.engine.config().tokens.trust_domains[0].clone()
    }

    async fn refresh(&self, installed: Option<u64>) -> Result<jwks::BundleRefreshed, RefreshError> {
        jwks::refresh_bundle_once(
            &self.engine,
            &jwks::client(),
            &self.trust_domain(),
            installed,
        )
        .await
    }

    async fn read_ticket(&self, bearer: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(format!("{}/tickets/42", self.url))
            .bearer_auth(bearer)
            .header("remit-purpose", "case-summary")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The quickstart, trusting `remit.example` by the bundle endpoint at `bundle_url`, with
/// `edit` applied, served with its token endpoint before a recording upstream.
async fn start(bundle_url: &str, edit: impl Fn(String) -> String) -> Remit {
    let (upstream, log) = recording_upstream().await;
    let td = format!(
        "\n[[trust_domain]]\nname = \"remit.example\"\nalgorithms = [\"ES256\"]\nbundle_url = \"{bundle_url}\"\n"
    );
    let engine = Arc::new(quickstart_engine(move |t| {
        edit(t.replace(
            "url = \"http://127.0.0.1:8450\"",
            &format!("url = \"{upstream}\""),
        )) + &td
    }));
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let state =
        remit_gateway::proxy::ProxyState::new(engine.clone(), Arc::new(store.clone())).unwrap();
    let svc = Arc::new(TokenService::open(engine.clone(), &dir.path().join("data")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_proxy_with_tokens(
        listener,
        state,
        svc,
        std::future::pending(),
    ));
    Remit {
        url,
        engine,
        log,
        store,
        _dir: dir,
    }
}

fn reasons(body: &Value) -> String {
    body["reasons"].to_string()
}

#[tokio::test]
async fn a_jwt_svid_reaches_the_upstream_as_its_identity_and_keys_rotate_at_refresh() {
    let k1 = authority("k1");
    let k2 = authority("k2");
    let ep = bundle_endpoint(bundle(1, &[&k1])).await;
    let r = start(&format!("{}/bundle", ep.base), |t| t).await;
    let t1 = svid(&k1, SUPPORT, json!({}));

    // No bundle fetched yet: fail closed.
    let (status, body) = r.read_ticket(&t1).await;
    assert_eq!(status, 403, "{body}");
    assert!(reasons(&body).contains("unavailable"), "{body}");
    assert!(r.log.lock().unwrap().is_empty());

    let got = r.refresh(None).await.unwrap();
    assert_eq!(got.keys, 1);
    assert_eq!(got.sequence, Some(1));
    assert_eq!(got.refresh_after, std::time::Duration::from_secs(300));
    let (status, body) = r.read_ticket(&t1).await;
    assert_eq!(status, 200, "{body}");
    let seen = r.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.target, "/tickets/42");
    assert_eq!(seen.header("remit-identity"), Some("support-assistant"));
    assert_eq!(seen.header("remit-on-behalf-of"), None, "authority `own`");
    assert!(
        seen.headers.iter().all(|(_, v)| !v.contains(&t1)),
        "the JWT-SVID never goes upstream"
    );
    let id = seen.header("remit-decision-id").unwrap();
    let record = r.store.record(id).await.unwrap().expect("durable");
    assert!(
        record.contains("\"credential_id\":\"support-assistant-svid\""),
        "recorded by the spiffe credential's id, as a peer's SPIFFE ID is: {record}"
    );
    assert!(record.contains("\"kind\":\"own\""), "{record}");
    assert!(!record.contains(&t1), "{record}");

    // Rotation: the endpoint now publishes k2 (and still k1). k2's JWT-SVIDs verify only
    // after the refresh.
    *ep.body.lock().unwrap() = bundle(2, &[&k2, &k1]);
    let t2 = svid(&k2, SUPPORT, json!({}));
    let (status, body) = r.read_ticket(&t2).await;
    assert_eq!(status, 403, "k2 is unknown before the refresh: {body}");
    assert!(reasons(&body).contains("no key `k2`"), "{body}");
    assert_eq!(r.refresh(Some(1)).await.unwrap().keys, 2);
    assert_eq!(r.read_ticket(&t2).await.0, 200);
    assert_eq!(r.read_ticket(&t1).await.0, 200, "k1 is still published");

    // k1 retired: its JWT-SVIDs stop at the next refresh.
    *ep.body.lock().unwrap() = bundle(3, &[&k2]);
    assert_eq!(r.refresh(Some(2)).await.unwrap().sequence, Some(3));
    let (status, body) = r.read_ticket(&t1).await;
    assert_eq!(status, 403);
    assert!(reasons(&body).contains("no key `k1`"), "{body}");

    // An older bundle served again (k1 back) is refused, and the installed one kept.
    *ep.body.lock().unwrap() = bundle(2, &[&k2, &k1]);
    let e = r.refresh(Some(3)).await.unwrap_err();
    assert!(
        matches!(e, RefreshError::Rollback { had: 3, got: 2, .. }),
        "{e}"
    );
    assert_eq!(r.read_ticket(&t1).await.0, 403);
    assert_eq!(r.read_ticket(&t2).await.0, 200);
}

#[tokio::test]
async fn unregistered_chained_and_foreign_jwt_svids_are_refused() {
    let k1 = authority("k1");
    let ep = bundle_endpoint(bundle(1, &[&k1])).await;
    let r = start(&format!("{}/bundle", ep.base), |t| t).await;
    r.refresh(None).await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (name, token, says) in [
        (
            "a SPIFFE ID no identity holds",
            svid(
                &k1,
                "spiffe://remit.example/ns/support/sa/nobody",
                json!({}),
            ),
            "is not registered to any identity",
        ),
        (
            "a SPIFFE ID one segment short",
            svid(&k1, "spiffe://remit.example/ns/support/sa", json!({})),
            "is not registered to any identity",
        ),
        (
            "another trust domain",
            svid(
                &k1,
                "spiffe://evil.example/ns/support/sa/support-assistant",
                json!({}),
            ),
            "trust domain `evil.example` is not trusted",
        ),
        (
            "an actor chain",
            svid(&k1, SUPPORT, json!({"act": {"sub": "codegen-workflow"}})),
            "cannot carry an actor chain",
        ),
        (
            "another audience",
            svid(&k1, SUPPORT, json!({"aud": ["https://elsewhere.example"]})),
            "audience is not this resource",
        ),
        (
            "no exp",
            {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                h.kid = Some("k1".into());
                jsonwebtoken::encode(&h, &json!({"sub": SUPPORT, "aud": AUD}), &k1.key).unwrap()
            },
            "no `exp` claim",
        ),
        (
            "expired",
            svid(&k1, SUPPORT, json!({"exp": now - 1000})),
            "expired",
        ),
    ] {
        let (status, body) = r.read_ticket(&token).await;
        assert_eq!(status, 403, "{name}: {body}");
        assert!(reasons(&body).contains(says), "{name}: {body}");
        assert_eq!(body["decision"], "deny", "{name}: {body}");
    }
    assert!(
        r.log.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn a_suspended_identitys_jwt_svid_is_refused() {
    let k1 = authority("k1");
    let ep = bundle_endpoint(bundle(1, &[&k1])).await;
    let r = start(&format!("{}/bundle", ep.base), |t| {
        t.replace(
            "id = \"support-assistant\"\n",
            "id = \"support-assistant\"\nstatus = \"suspended\"\n",
        )
    })
    .await;
    r.refresh(None).await.unwrap();
    let (status, body) = r.read_ticket(&svid(&k1, SUPPORT, json!({}))).await;
    assert_eq!(status, 403, "{body}");
    assert!(reasons(&body).contains("is suspended"), "{body}");
    assert!(r.log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_jwt_svid_is_the_actor_token_of_an_exchange() {
    let k1 = authority("k1");
    let ep = bundle_endpoint(bundle(1, &[&k1])).await;
    let r = start(&format!("{}/bundle", ep.base), |t| t).await;
    r.refresh(None).await.unwrap();
    let alice = human_token("alice", &["support"]);
    let form = |actor: &str| {
        format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
             &subject_token={alice}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
             &actor_token={actor}&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
             &purpose=case-summary"
        )
    };
    let (status, body, _) = post_form(&r.url, form(&svid(&k1, SUPPORT, json!({}))), None).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(r.read_ticket(&token).await.0, 200);
    let seen = r.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.header("remit-identity"), Some("support-assistant"));
    assert_eq!(seen.header("remit-on-behalf-of"), Some("alice"));
    // An unregistered SPIFFE ID, or one of another trust domain, is no actor.
    for actor in [
        svid(
            &k1,
            "spiffe://remit.example/ns/support/sa/nobody",
            json!({}),
        ),
        svid(&k1, "spiffe://evil.example/x", json!({})),
    ] {
        let (status, body, _) = post_form(&r.url, form(&actor), None).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
}

#[tokio::test]
async fn a_bundle_endpoint_is_not_followed_elsewhere_nor_read_past_its_limit() {
    let k1 = authority("k1");
    let ep = bundle_endpoint(bundle(1, &[&k1])).await;
    for (path, says) in [
        ("/moved", "status 302"),
        ("/huge", "more than the limit"),
        ("/missing", "status 404"),
    ] {
        let r = start(&format!("{}{path}", ep.base), |t| t).await;
        let e = r.refresh(None).await.unwrap_err();
        assert!(e.to_string().contains(says), "{path}: {e}");
        let (status, body) = r.read_ticket(&svid(&k1, SUPPORT, json!({}))).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(reasons(&body).contains("unavailable"), "{path}: {body}");
    }
    // Not a bundle at all, or one with only X.509 authorities: refused, nothing installed.
    for body in [
        "<html>".to_owned(),
        json!({"keys": [{"kty": "EC", "kid": "x", "use": "x509-svid", "crv": "P-256",
                         "x": k1.jwk["x"], "y": k1.jwk["y"]}]})
        .to_string(),
    ] {
        *ep.body.lock().unwrap() = body.clone();
        let r = start(&format!("{}/bundle", ep.base), |t| t).await;
        assert!(r.refresh(None).await.is_err(), "{body}");
        assert_eq!(r.read_ticket(&svid(&k1, SUPPORT, json!({}))).await.0, 403);
    }
}

#[tokio::test]
async fn serves_refresher_fetches_a_bundle_url_at_once() {
    let k1 = authority("k1");
    let ep = bundle_endpoint(bundle(1, &[&k1])).await;
    let r = start(&format!("{}/bundle", ep.base), |t| t).await;
    let token = svid(&k1, SUPPORT, json!({}));
    assert_eq!(r.read_ticket(&token).await.0, 403, "nothing fetched yet");
    // What `serve` starts: a refresher for every bundle endpoint, whose first fetch is at once.
    let tasks = jwks::spawn_refreshers(&r.engine, jwks::REFRESH_EVERY);
    assert_eq!(
        tasks.len(),
        1,
        "the quickstart's issuers have no network keys"
    );
    let mut status = 0;
    for _ in 0..50 {
        status = r.read_ticket(&token).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the bundle was installed");
    for t in tasks {
        t.abort();
    }
}
