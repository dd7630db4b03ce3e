//! `private_key_jwt` client authentication (RFC 7523 §2.2) at the token endpoint over real
//! HTTP, and the `token` records every issued token leaves in the audit log before it is
//! returned: success (client credentials and the actor of an exchange), a replayed `jti`,
//! a foreign audience, expired and too-long-lived assertions, the wrong key, `alg: none`
//! and HS256, forbidden headers, two authentication methods at once, malformed
//! assertions; a store that cannot record means no token.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use remit_gateway::token::{TokenService, serve_proxy_with_tokens};
use remit_token::mint::SigningKey;
use serde_json::{Value, json};

use crate::authz::quickstart_engine;
use crate::token::{exchange_form, human_token, post_form, serve_quickstart};

const CLIENT: &str = "support-assistant";
const TOKEN_URL: &str = "http://127.0.0.1:8440/oauth2/token";
const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

/// A client key pair: the private half stays in the test, the public half goes in config.
struct ClientKey {
    key: SigningKey,
}

impl ClientKey {
    fn new() -> Self {
        Self {
            key: SigningKey::generate().unwrap(),
        }
    }

    fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The `[[identity.credential]]` that registers the public key to the support assistant.
    fn credential(&self) -> String {
        format!(
            "\n[[identity.credential]]\ntype = \"client_key\"\nid = \"support-assistant-jwt\"\njwk = '{}'\n",
            self.key.jwk()
        )
    }

    /// The private key as a JWK (for the Python client): the public JWK with `d`, the
    /// Ed25519 seed from the PKCS#8 document (`04 22 04 20` then 32 bytes).
    fn private_jwk(&self) -> Value {
        let der = self.key.pkcs8();
        let at = der
            .windows(4)
            .position(|w| w == [0x04, 0x22, 0x04, 0x20])
            .unwrap()
            + 4;
        let mut jwk = self.key.jwk();
        jwk["d"] = json!(URL_SAFE_NO_PAD.encode(&der[at..at + 32]));
        jwk
    }

    /// An assertion signed with this key: `claims` over the defaults (a `null` removes one).
    fn sign(&self, claims: Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(self.kid().to_owned());
        h.typ = Some("JWT".into());
        self.sign_with(&h, claims)
    }

    fn sign_with(&self, h: &jsonwebtoken::Header, claims: Value) -> String {
        let enc = jsonwebtoken::EncodingKey::from_ed_der(self.key.pkcs8());
        jsonwebtoken::encode(h, &with_defaults(claims), &enc).unwrap()
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn with_defaults(claims: Value) -> Value {
    let now = now();
    let mut c = json!({
        "iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "iat": now, "exp": now + 60,
        "jti": uuid::Uuid::now_v7().to_string(),
    });
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A token with a hand-made header (what no library would sign): `header` and the default
/// claims, with `signature` as its third segment.
fn forged(header: Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(with_defaults(json!({})).to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn cc_form(assertion: &str, extra: &str) -> String {
    format!(
        "grant_type=client_credentials&scope=tickets.read&purpose=case-summary\
         &client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}{extra}"
    )
}

/// The quickstart with `key` registered to the support assistant: URL, store, directory.
async fn serve(key: &ClientKey) -> (String, remit_store::SqliteStore, tempfile::TempDir) {
    let cred = key.credential();
    serve_quickstart("http://127.0.0.1:9", move |t| {
        t.replacen(
            "# rk_demo_support_assistant\n",
            &format!("# rk_demo_support_assistant\n{cred}"),
            1,
        )
    })
    .await
}

fn claims_of(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn private_key_jwt_issues_a_token_recorded_before_it_is_returned() {
    let key = ClientKey::new();
    let (url, store, dir) = serve(&key).await;
    let meta: Value = reqwest::get(format!("{url}/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods = meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&json!("private_key_jwt")), "{meta}");
    let algs = meta["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    for a in ["EdDSA", "ES256", "RS256", "PS256"] {
        assert!(algs.contains(&json!(a)), "{meta}");
    }
    for a in ["none", "HS256"] {
        assert!(!algs.contains(&json!(a)), "{meta}");
    }

    let assertion = key.sign(json!({}));
    let (status, body, headers) = post_form(&url, cc_form(&assertion, ""), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["scope"], "tickets.read");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&token);
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some(CLIENT), Some(CLIENT))
    );
    let jti = claims["jti"].as_str().unwrap();

    // The record was durable before the answer: it names the grant, the client, how it
    // authenticated, the scope, audience, lifetime and `jti` — never the token.
    let text = store
        .token_record(jti)
        .await
        .unwrap()
        .expect("the token was recorded before it was returned");
    let rec: Value = serde_json::from_str(&text).unwrap();
    let want = json!({
        "kind": "token", "decision": "allow", "grant_type": "client_credentials",
        "identity": CLIENT, "client_auth": "private_key_jwt",
        "credential_id": "support-assistant-jwt", "scope": "tickets.read",
        "requested_scope": "tickets.read", "purpose": "case-summary",
        "audience": "http://127.0.0.1:8440", "jti": jti, "decision_id": jti,
        "exp": claims["exp"], "iat": claims["iat"], "expires_in": 300,
        "authority": {"kind": "own", "on_behalf_of": null},
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&rec[k], v, "`{k}` in {rec}");
    }
    assert!(rec["signing_kid"].is_string(), "{rec}");
    assert!(rec["source_ip"] == "127.0.0.1", "{rec}");
    // Nothing secret anywhere in the data directory: not the token, not its signature,
    // not the assertion.
    let signature = token.rsplit('.').next().unwrap();
    for (path, bytes) in files_under(dir.path()) {
        for secret in [token.as_str(), signature, assertion.as_str()] {
            assert!(
                !contains(&bytes, secret),
                "{} holds a secret",
                path.display()
            );
        }
    }
    // The same assertion again is a replay: refused, though everything else still holds.
    let (status, body, headers) = post_form(&url, cc_form(&assertion, ""), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(headers.contains_key("www-authenticate"));
    // A fresh assertion works again, and its `client_id` may be named beside it.
    let (status, body, _) = post_form(
        &url,
        cc_form(
            &key.sign(json!({"aud": "http://127.0.0.1:8440"})),
            "&client_id=support-assistant",
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "the issuer is an audience too: {body}");
}

/// One assertion presented 50 times at once: exactly one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_assertion_raced_in_parallel_issues_exactly_one_token() {
    let key = ClientKey::new();
    let (url, store, _dir) = serve(&key).await;
    let form = cc_form(&key.sign(json!({})), "");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (url, form) = (url.clone(), form.clone());
            tokio::spawn(async move { post_form(&url, form, None).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(
        store.reader().after(0, 100).await.unwrap().len(),
        1,
        "one token, one record"
    );
}

#[tokio::test]
async fn hostile_client_assertions_are_refused_without_saying_why() {
    let key = ClientKey::new();
    let (url, store, _dir) = serve(&key).await;
    let other = ClientKey::new();
    let now = now();
    let kid = key.kid().to_owned();
    let eddsa = |extra: Value| {
        let mut h = json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    };
    // The wrong key, claiming the right key's id.
    let mut wrong_kid = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    wrong_kid.kid = Some(kid.clone());
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid.clone());
        let secret = key.key.jwk()["x"].as_str().unwrap().to_owned();
        jsonwebtoken::encode(
            &h,
            &with_defaults(json!({})),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "foreign audience",
            key.sign(json!({"aud": "https://other.example/oauth2/token"})),
        ),
        (
            "audience is the resource",
            key.sign(json!({"aud": ["https://elsewhere.example"]})),
        ),
        ("no audience", key.sign(json!({"aud": null}))),
        (
            "expired",
            key.sign(json!({"iat": now - 200, "exp": now - 100})),
        ),
        ("lives an hour", key.sign(json!({"exp": now + 3600}))),
        (
            "issued long ago",
            key.sign(json!({"iat": now - 400, "exp": now + 30})),
        ),
        (
            "issued in the future",
            key.sign(json!({"iat": now + 600, "exp": now + 700})),
        ),
        ("not yet valid", key.sign(json!({"nbf": now + 600}))),
        (
            "string exp",
            key.sign(json!({"exp": (now + 60).to_string()})),
        ),
        ("no exp", key.sign(json!({"exp": null}))),
        ("no jti", key.sign(json!({"jti": null}))),
        ("numeric jti", key.sign(json!({"jti": 7}))),
        (
            "iss is not sub",
            key.sign(json!({"iss": "codegen-workflow"})),
        ),
        (
            "another client",
            key.sign(json!({"iss": "codegen-workflow", "sub": "codegen-workflow"})),
        ),
        (
            "unknown client",
            key.sign(json!({"iss": "nobody", "sub": "nobody"})),
        ),
        ("wrong key", other.sign_with(&wrong_kid, json!({}))),
        ("unknown kid", other.sign(json!({}))),
        ("alg none", forged(json!({"alg": "none", "kid": kid}), b"")),
        (
            "alg none, no signature",
            format!(
                "{}.",
                forged(json!({"alg": "none"}), b"x")
                    .rsplit_once('.')
                    .unwrap()
                    .0
            ),
        ),
        ("HS256 with the public key", hs256),
        (
            "jku",
            forged(eddsa(json!({"jku": "https://evil.example/jwks"})), &[0; 64]),
        ),
        (
            "x5u",
            forged(eddsa(json!({"x5u": "https://evil.example/cert"})), &[0; 64]),
        ),
        (
            "embedded jwk",
            forged(eddsa(json!({"jwk": other.key.jwk()})), &[0; 64]),
        ),
        (
            "kid path",
            forged(eddsa(json!({"kid": "../../keys/x"})), &[0; 64]),
        ),
        ("access token typ", {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            h.kid = Some(kid.clone());
            h.typ = Some("at+jwt".into());
            key.sign_with(&h, json!({}))
        }),
        ("tampered payload", {
            let t = key.sign(json!({}));
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(with_defaults(json!({"scope": "x"})).to_string());
            parts.join(".")
        }),
        ("zero signature", forged(eddsa(json!({})), &[0; 64])),
        ("not a JWT", "abc".into()),
        ("two segments", "eyJhbGciOiJFZERTQSJ9.e30".into()),
        ("garbage base64", "eyJ!!!.e30.abc".into()),
        ("huge", format!("eyJ{}.e30.abc", "A".repeat(9000))),
    ];
    for (what, assertion) in cases {
        let (status, body, _) = post_form(&url, cc_form(&assertion, ""), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{what}: {body}"
        );
        let said = body["error_description"].as_str().unwrap_or_default();
        assert_eq!(
            said, "client authentication failed: the client assertion is refused",
            "{what}"
        );
    }
    // `client_id` beside the assertion must name the assertion's client.
    let (status, body, _) = post_form(
        &url,
        cc_form(&key.sign(json!({})), "&client_id=codegen-workflow"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // One client authentication method per request; half a method is malformed.
    let a = key.sign(json!({}));
    let basic = Some((CLIENT, "rk_demo_support_assistant"));
    #[allow(clippy::type_complexity)]
    let requests: Vec<(&str, String, Option<(&str, &str)>)> = vec![
        ("assertion and Basic", cc_form(&a, ""), basic),
        (
            "assertion and a posted secret",
            cc_form(
                &a,
                "&client_id=support-assistant&client_secret=rk_demo_support_assistant",
            ),
            None,
        ),
        (
            "assertion without its type",
            format!("grant_type=client_credentials&client_assertion={a}"),
            None,
        ),
        (
            "type without an assertion",
            format!("grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}"),
            None,
        ),
        (
            "another assertion type",
            format!(
                "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Asaml2-bearer&client_assertion={a}"
            ),
            None,
        ),
        (
            "the assertion twice",
            format!("{}&client_assertion={a}", cc_form(&a, "")),
            None,
        ),
    ];
    for (what, form, basic) in requests {
        let (status, body, _) = post_form(&url, form, basic).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{what}: {body}"
        );
    }
    // The assertion refused for carrying two methods was never spent: it still works alone.
    let (status, body, _) = post_form(&url, cc_form(&a, ""), None).await;
    assert_eq!(status, 200, "{body}");
    // No refusal above authenticated a client, so none was recorded: the log holds the one
    // token issued.
    let all = store.reader().after(0, 100).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].entry.contains(r#""decision":"allow""#), "{all:?}");
    assert_eq!(store.count().await.unwrap(), 0, "no decision either");
}

#[tokio::test]
async fn the_actor_of_an_exchange_authenticates_with_its_key_and_the_record_names_the_chain() {
    let key = ClientKey::new();
    let (url, store, _dir) = serve(&key).await;
    let alice = human_token("alice", &["support"]);
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
         &subject_token={alice}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
         &purpose=case-summary&client_assertion_type={ASSERTION_TYPE}&client_assertion={}",
        key.sign(json!({}))
    );
    let (status, body, _) = post_form(&url, form, None).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["act"], json!({"sub": CLIENT}));
    let rec: Value = serde_json::from_str(
        &store
            .token_record(claims["jti"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rec["grant_type"], "token_exchange");
    assert_eq!(rec["client_auth"], "private_key_jwt");
    assert_eq!(rec["identity"], CLIENT);
    assert_eq!(
        rec["authority"],
        json!({"kind": "delegated", "on_behalf_of": "alice", "actors": [CLIENT]})
    );
    assert_eq!(rec["human_issuer"], "demo-humans");
    assert_eq!(
        rec["scope"],
        "tickets.history.read tickets.list tickets.read"
    );
    assert!(!text_has_token(&rec, token) && !text_has_token(&rec, &alice));

    // A refusal after the client authenticated is recorded too, with its error.
    let (status, body, _) = post_form(
        &url,
        "grant_type=client_credentials&scope=repos.deploy".into(),
        Some((CLIENT, "rk_demo_support_assistant")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let reader = store.reader();
    let search = |human: Option<&str>, verdict: Option<&str>| remit_store::audit::Search {
        kind: Some("token".into()),
        identity: Some(CLIENT.into()),
        human: human.map(str::to_owned),
        verdict: verdict.map(str::to_owned),
        limit: 10,
        ..Default::default()
    };
    let found = reader.search(&search(Some("alice"), None)).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "the exchange is found by the human it acted for"
    );
    assert_eq!(reader.search(&search(None, None)).await.unwrap().len(), 2);
    let refused = reader.search(&search(None, Some("deny"))).await.unwrap();
    let denied: Vec<Value> = refused
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.entry).unwrap()["record"].clone())
        .collect();
    assert_eq!(denied.len(), 1, "{refused:?}");
    assert_eq!(
        (denied[0]["kind"].as_str(), denied[0]["decision"].as_str()),
        (Some("token"), Some("deny"))
    );
    let decisions = remit_store::audit::Search {
        limit: 10,
        ..Default::default()
    };
    assert!(
        reader.search(&decisions).await.unwrap().is_empty(),
        "decisions by default"
    );
    assert_eq!(denied[0]["error"], "invalid_scope");
    assert_eq!(denied[0]["client_auth"], "client_secret_basic");
    assert_eq!(denied[0]["credential_id"], "support-assistant-demo");
    assert!(denied[0].get("jti").is_none(), "no token, no jti");
    // And an exchange whose actor presented only its key is recorded under that actor.
    let (status, body, _) = post_form(
        &url,
        exchange_form(&alice, "rk_demo_support_assistant", ""),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jti = claims_of(body["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let rec: Value =
        serde_json::from_str(&store.token_record(&jti).await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (rec["client_auth"].as_str(), rec["credential_id"].as_str()),
        (Some("actor_token"), Some("support-assistant-demo"))
    );
}

fn text_has_token(rec: &Value, token: &str) -> bool {
    rec.to_string().contains(token)
}

/// A sink that cannot make anything durable.
struct BrokenSink;

impl remit_core::RecordSink for BrokenSink {
    fn append(&self, _: remit_core::AuditRecord) -> remit_core::decision::SinkFuture<'_> {
        Box::pin(async { Err(remit_core::SinkError::Store("disk on fire".into())) })
    }
}

#[tokio::test]
async fn a_token_that_cannot_be_recorded_is_not_issued() {
    let key = ClientKey::new();
    let cred = key.credential();
    let engine = Arc::new(quickstart_engine(move |t| {
        t.replacen(
            "# rk_demo_support_assistant\n",
            &format!("# rk_demo_support_assistant\n{cred}"),
            1,
        )
    }));
    let dir = tempfile::tempdir().unwrap();
    let state =
        remit_gateway::proxy::ProxyState::new(engine.clone(), Arc::new(BrokenSink)).unwrap();
    let svc = Arc::new(TokenService::open(engine, dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_proxy_with_tokens(
        listener,
        state,
        svc,
        std::future::pending(),
    ));
    for (what, form, basic) in [
        (
            "secret",
            "grant_type=client_credentials".to_owned(),
            Some((CLIENT, "rk_demo_support_assistant")),
        ),
        ("assertion", cc_form(&key.sign(json!({})), ""), None),
    ] {
        let (status, body, headers) = post_form(&url, form, basic).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("temporarily_unavailable")),
            "{what}: {body}"
        );
        assert!(body.get("access_token").is_none(), "{what}: {body}");
        assert_eq!(headers["cache-control"], "no-store");
    }
    // A refusal stays a refusal.
    let (status, body, _) = post_form(
        &url,
        "grant_type=client_credentials&scope=repos.deploy".into(),
        Some((CLIENT, "rk_demo_support_assistant")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
}

/// A client key in a file beside the configuration (`jwk_file`), read at start-up; a bad
/// file stops start-up with an error naming the configuration file, line and field.
#[tokio::test]
async fn client_keys_in_files_load_and_bad_ones_name_where_they_are_configured() {
    let key = ClientKey::new();
    let q = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    for f in std::fs::read_dir(q.join("policies")).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, dir.path().join("policies").join(f.file_name().unwrap())).unwrap();
        }
    }
    let text = std::fs::read_to_string(q.join("remit.toml")).unwrap().replacen(
        "# rk_demo_support_assistant\n",
        "# rk_demo_support_assistant\n\n[[identity.credential]]\ntype = \"client_key\"\nid = \"sa-file\"\njwk_file = \"keys/sa.jwk.json\"\n",
        1,
    );
    let config = dir.path().join("remit.toml");
    std::fs::write(&config, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("jwk_file"))
        .unwrap()
        + 1;
    let key_file = dir.path().join("keys/sa.jwk.json");
    let load = || remit_engine::load::load_engine(&config);

    let missing = load().unwrap_err().to_string();
    assert!(
        missing.contains(&format!("remit.toml:{line}:")),
        "{missing}"
    );
    assert!(
        missing.contains("identity[0].credential[1].jwk_file"),
        "{missing}"
    );
    assert!(missing.contains("sa.jwk.json"), "{missing}");
    for (bad, says) in [
        ("{", "not a JSON document".to_owned()),
        (
            r#"{"kty":"oct","k":"c2VjcmV0","kid":"a"}"#,
            "symmetric".to_owned(),
        ),
        (
            &*format!("{{\"keys\":[{}]}}", key.key.jwk()),
            "key set".to_owned(),
        ),
        (&*"x".repeat(9000), "larger than".to_owned()),
    ] {
        std::fs::write(&key_file, bad).unwrap();
        let e = load().unwrap_err().to_string();
        assert!(
            e.contains(&format!("remit.toml:{line}:")) && e.contains(&says),
            "{e}"
        );
    }
    std::fs::write(&key_file, key.key.jwk().to_string()).unwrap();
    let engine = load().unwrap();
    assert!(
        engine
            .client_keys()
            .has_keys(&remit_core::IdentityId::parse(CLIENT).unwrap())
    );
    // The loaded key authenticates the client.
    let v = engine
        .client_keys()
        .verify(
            &key.sign(json!({})),
            None,
            &["http://127.0.0.1:8440", TOKEN_URL],
            5,
            now(),
        )
        .unwrap()
        .spend(engine.claims(), now())
        .await;
    assert_eq!(v.unwrap().credential.as_str(), "sa-file");
}

/// A real OAuth client library (Python `authlib`'s `PrivateKeyJWT`) authenticates with a
/// client assertion and gets a client-credentials token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_authenticates_with_private_key_jwt() {
    const NEED: &str =
        "this test needs python3 with `python3 -m pip install -r e2e/requirements.txt`";
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import authlib, requests, joserfc"])
        .output()
        .unwrap_or_else(|e| panic!("{NEED}: python3 is not runnable ({e})"));
    assert!(
        probe.status.success(),
        "{NEED}: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let key = ClientKey::new();
    let (url, store, dir) = serve(&key).await;
    let pem = dir.path().join("client-key.jwk.json");
    std::fs::write(&pem, key.private_jwk().to_string()).unwrap();
    let mut child = std::process::Command::new("python3")
        .arg(e2e.join("authlib_client.py"))
        .arg(format!("{url}/oauth2/token"))
        .arg("--private-key-jwt")
        .arg(&pem)
        .arg(key.kid())
        .arg(TOKEN_URL)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("authlib_client.py did not finish within 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "authlib_client.py failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let cc = &v["private_key_jwt"];
    assert_eq!(
        (cc["token_type"].as_str(), cc["scope"].as_str()),
        (Some("Bearer"), Some("tickets.read")),
        "{v}"
    );
    let jti = claims_of(cc["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let rec: Value =
        serde_json::from_str(&store.token_record(&jti).await.unwrap().unwrap()).unwrap();
    assert_eq!(rec["client_auth"], "private_key_jwt");
    // An assertion authlib made once and sent twice: the second is a replay, refused.
    assert_eq!(v["replay"]["first"], "tickets.read", "{v}");
    assert_eq!(v["replay"]["second"], "invalid_client", "{v}");
}
