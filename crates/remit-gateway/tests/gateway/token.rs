//! The token endpoint over real HTTP on the proxy listener: client credentials and token
//! exchange issue tokens that the proxy then honours (alice's token + the support
//! assistant's key → a token acting for alice → a ticket read, with `Remit-On-Behalf-Of`
//! upstream and never the token); hostile, malformed, duplicated and oversized requests.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use remit_gateway::token::{TokenService, serve_proxy_with_tokens};
use remit_store::SqliteStore;
use serde_json::Value;

use crate::authz::quickstart_engine;
use crate::proxy::{Log, recording_upstream};

const DEMO_ISS: &str = "https://demo-idp.remit.example";
const AUD: &str = "http://127.0.0.1:8440";

struct Remit {
    url: String,
    log: Log,
    _store: SqliteStore,
    _dir: tempfile::TempDir,
}

/// The quickstart served with its token endpoint, its upstream at `upstream` and `edit`
/// applied to its configuration: the proxy's URL, the store and the data directory.
pub(crate) async fn serve_quickstart(
    upstream: &str,
    edit: impl Fn(String) -> String,
) -> (String, SqliteStore, tempfile::TempDir) {
    let upstream = upstream.to_owned();
    let engine = Arc::new(quickstart_engine(move |t| {
        edit(t.replace(
            "url = \"http://127.0.0.1:8450\"",
            &format!("url = \"{upstream}\""),
        ))
    }));
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let state =
        remit_gateway::proxy::ProxyState::new(engine.clone(), Arc::new(store.clone())).unwrap();
    let svc = Arc::new(TokenService::open(engine, &dir.path().join("data")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_proxy_with_tokens(
        listener,
        state,
        svc,
        std::future::pending(),
    ));
    (url, store, dir)
}

async fn start() -> Remit {
    let (upstream, log) = recording_upstream().await;
    let (url, store, dir) = serve_quickstart(&upstream, |t| t).await;
    Remit {
        url,
        log,
        _store: store,
        _dir: dir,
    }
}

/// A demo human's token, signed with the quickstart's published demo-only key.
pub(crate) fn human_token(sub: &str, groups: &[&str]) -> String {
    let q = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/demo-issuer");
    let pem = std::fs::read_to_string(q.join("DEMO-ONLY-private-key.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some("demo--FIfA-wfyNCC9BEi".into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "iss": DEMO_ISS, "aud": AUD, "sub": sub, "groups": groups, "exp": now + 300, "iat": now
    });
    jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&der)).unwrap()
}

pub(crate) async fn post_form(
    url: &str,
    body: String,
    basic: Option<(&str, &str)>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req = req.header("authorization", format!("Basic {b}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

pub(crate) fn exchange_form(subject: &str, actor_key: &str, extra: &str) -> String {
    format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
         &subject_token={subject}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
         &actor_token={actor_key}&actor_token_type=urn%3Aremit%3Aparams%3Aoauth%3Atoken-type%3Aapi_key{extra}"
    )
}

async fn read_ticket(r: &Remit, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/tickets/42", r.url))
        .bearer_auth(token)
        .header("remit-purpose", "case-summary")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn client_credentials_issue_a_token_the_proxy_honours() {
    let r = start().await;
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", r.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert!(jwks["keys"][0].get("d").is_none(), "never the private key");
    // An MCP client finds remit as the authorization server of the MCP endpoint (RFC 9728),
    // and its token endpoint and keys there (RFC 8414). The issuer of humans is not one.
    let get = |path: &str| {
        let url = format!("{}{path}", r.url);
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let resource = get("/.well-known/oauth-protected-resource/mcp/docs").await;
    assert_eq!(
        resource["authorization_servers"],
        serde_json::json!(["http://127.0.0.1:8440"]),
        "{resource}"
    );
    let server = get("/.well-known/oauth-authorization-server").await;
    assert_eq!(server["issuer"], "http://127.0.0.1:8440");
    assert_eq!(
        server["token_endpoint"],
        "http://127.0.0.1:8440/oauth2/token"
    );
    assert_eq!(
        server["jwks_uri"],
        "http://127.0.0.1:8440/.well-known/jwks.json"
    );
    assert_eq!(
        server["grant_types_supported"],
        serde_json::json!([
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    let scopes = server["scopes_supported"].as_array().unwrap();
    assert!(scopes.contains(&Value::from("tickets.read")), "{server}");
    assert!(!scopes.contains(&Value::from("unmapped")), "{server}");
    let (status, body, headers) = post_form(
        &r.url,
        "grant_type=client_credentials&scope=tickets.read+repos.deploy&purpose=case-summary".into(),
        Some(("support-assistant", "rk_demo_support_assistant")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_i64()),
        (Some("Bearer"), Some(300))
    );
    assert_eq!(body["scope"], "tickets.read", "never beyond the boundary");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(read_ticket(&r, token).await, 200);
    let seen = r.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.header("remit-identity"), Some("support-assistant"));
    assert!(
        seen.header("authorization").is_none(),
        "the client's token never goes upstream"
    );
}

#[tokio::test]
async fn alice_and_the_support_assistant_exchange_for_a_token_that_reads_a_ticket_for_alice() {
    let r = start().await;
    let alice = human_token("alice", &["support"]);
    let (status, body, _) = post_form(
        &r.url,
        exchange_form(&alice, "rk_demo_support_assistant", "&purpose=case-summary"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(
        body["scope"],
        "tickets.history.read tickets.list tickets.read"
    );
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(read_ticket(&r, &token).await, 200);
    let seen = r.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.header("remit-on-behalf-of"), Some("alice"));
    assert_eq!(seen.header("remit-identity"), Some("support-assistant"));
    // alice's own token is no agent credential at the proxy.
    assert_eq!(read_ticket(&r, &alice).await, 403);
}

#[tokio::test]
async fn hostile_token_requests_are_refused_with_oauth_errors() {
    let r = start().await;
    let alice = human_token("alice", &["support"]);
    let sa = Some(("support-assistant", "rk_demo_support_assistant"));
    // (form body, basic credentials, status, OAuth error)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(String, Option<(&str, &str)>, u16, &str)> = vec![
        ("grant_type=client_credentials".into(), Some(("support-assistant", "rk_wrong")), 401, "invalid_client"),
        ("grant_type=client_credentials".into(), Some(("nobody", "rk_demo_support_assistant")), 401, "invalid_client"),
        ("grant_type=client_credentials".into(), None, 401, "invalid_client"),
        ("grant_type=client_credentials&grant_type=client_credentials".into(), sa, 400, "invalid_request"),
        ("grant_type=client_credentials&client_id=support-assistant&client_secret=rk_demo_support_assistant".into(), sa, 400, "invalid_request"),
        ("grant_type=password&username=a&password=b".into(), sa, 400, "invalid_request"),
        ("grant_type=client_credentials&scope=repos.deploy".into(), sa, 400, "invalid_scope"),
        ("grant_type=client_credentials&resource=https%3A%2F%2Fevil.example".into(), sa, 400, "invalid_target"),
        ("grant_type=client_credentials&scope=%zz".into(), sa, 400, "invalid_request"),
        (format!("grant_type=client_credentials{}", "&x=1".repeat(20)), sa, 400, "invalid_request"),
        (exchange_form(&human_token("bob", &[]), "rk_demo_support_assistant", ""), None, 400, "invalid_scope"),
        (exchange_form(&human_token("mallory", &["support"]), "rk_demo_support_assistant", ""), None, 400, "access_denied"),
        (exchange_form(&alice, "rk_not_a_key", ""), None, 400, "invalid_grant"),
        (exchange_form(&alice, "rk_demo_codegen_workflow", ""), None, 400, "invalid_scope"),
        (exchange_form("eyJhbGciOiJub25lIn0.e30.", "rk_demo_support_assistant", ""), None, 400, "invalid_grant"),
        (exchange_form(&alice, "rk_demo_support_assistant", "&resource=https%3A%2F%2Fother.example"), None, 400, "invalid_target"),
        (exchange_form(&alice, "rk_demo_support_assistant", "").replace("&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt", ""), None, 400, "invalid_request"),
        // The authenticated client must be the actor.
        (exchange_form(&alice, "rk_demo_support_assistant", ""), Some(("codegen-workflow", "rk_demo_codegen_workflow")), 400, "invalid_grant"),
    ];
    for (i, (form, basic, status, error)) in cases.into_iter().enumerate() {
        let (s, body, _) = post_form(&r.url, form, basic).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (status, Some(error)),
            "case {i}: {body}"
        );
    }
    // Not a form, and too big.
    let c = reqwest::Client::new();
    let s = c
        .post(format!("{}/oauth2/token", r.url))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(s.status().as_u16(), 400);
    let s = c
        .post(format!("{}/oauth2/token", r.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope={}",
            "a".repeat(20_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(s.status().as_u16(), 413);
}

#[tokio::test]
async fn signing_keys_persist_and_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(quickstart_engine(|t| t));
    let svc = TokenService::open(engine.clone(), dir.path()).unwrap();
    let kid = svc.jwks()["keys"][0]["kid"].clone();
    drop(svc);
    let again = TokenService::open(engine, dir.path()).unwrap();
    assert_eq!(
        again.jwks()["keys"][0]["kid"],
        kid,
        "the key survives a restart"
    );
    again.rotate().unwrap();
    let keys = again.jwks()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], kid, "the previous key stays published");
    // A corrupt key file stops start-up rather than minting with a surprise key.
    std::fs::write(
        dir.path().join("token-keys/99999999999999999999-bad.pk8"),
        b"junk",
    )
    .unwrap();
    assert!(TokenService::open(Arc::new(quickstart_engine(|t| t)), dir.path()).is_err());
}

/// A real OAuth client library (Python `authlib`, pinned in `e2e/requirements.txt`)
/// performs client credentials and the RFC 8693 exchange against remit, and the proxy
/// honours what it got: the assistant's own token, and a token acting for alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_performs_client_credentials_and_token_exchange() {
    const NEED: &str =
        "this test needs python3 with `python3 -m pip install -r e2e/requirements.txt`";
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import authlib, requests"])
        .output()
        .unwrap_or_else(|e| panic!("{NEED}: python3 is not runnable ({e})"));
    assert!(
        probe.status.success(),
        "{NEED}: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let r = start().await;
    let alice = human_token("alice", &["support"]);
    let mut child = std::process::Command::new("python3")
        .arg(e2e.join("authlib_client.py"))
        .arg(format!("{}/oauth2/token", r.url))
        .arg(&alice)
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
    let cc = &v["client_credentials"];
    assert_eq!(
        (cc["token_type"].as_str(), cc["scope"].as_str()),
        (Some("Bearer"), Some("tickets.read")),
        "{v}"
    );
    assert_eq!(
        read_ticket(&r, cc["access_token"].as_str().unwrap()).await,
        200
    );
    let seen = r.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.header("remit-identity"), Some("support-assistant"));
    assert_eq!(seen.header("remit-on-behalf-of"), None);
    let ex = &v["exchange"];
    assert_eq!(
        ex["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token",
        "{v}"
    );
    assert_eq!(
        read_ticket(&r, ex["access_token"].as_str().unwrap()).await,
        200
    );
    let seen = r.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.header("remit-on-behalf-of"), Some("alice"));
    assert_eq!(seen.header("remit-identity"), Some("support-assistant"));
}
