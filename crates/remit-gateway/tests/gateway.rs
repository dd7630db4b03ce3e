//! The admin listener over real HTTP with a real SQLite store: the decision API's contract,
//! hostile input, and failing closed when the store is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use remit_gateway::{AdminState, admin_router};
use remit_store::SqliteStore;
use serde_json::{Value, json};

/// A proxy started in-process for a test, with its store in a temporary directory.
#[derive(Debug)]
pub struct TestProxy {
    /// Where the proxy listens.
    pub addr: std::net::SocketAddr,
    /// The decision store behind it.
    pub store: SqliteStore,
    _dir: tempfile::TempDir,
}

/// Starts remit's proxy on loopback for `config` (TOML) and one policy file.
pub async fn start_proxy(config: &str, policy: &str) -> TestProxy {
    let config = remit_core::Config::parse(config, "test.toml").unwrap();
    let policies = [remit_policy::PolicySource {
        file: "test.cedar".into(),
        text: policy.into(),
    }];
    let engine = Arc::new(remit_engine::Engine::new(config, &policies).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let state = remit_gateway::proxy::ProxyState::new(engine, Arc::new(store.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = remit_gateway::proxy::proxy_router(state)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestProxy {
        addr,
        store,
        _dir: dir,
    }
}

impl TestProxy {
    /// The proxy's data directory.
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }
}

/// SHA-256 of an API key, hex: what `remit.toml` stores.
pub fn key_sha256(key: &str) -> String {
    hex::encode(remit_token::hash_key(key))
}

struct Server {
    url: String,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let q = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/remit.toml");
    let engine = remit_engine::load::load_engine(&q).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let state = AdminState {
        engine: Arc::new(engine),
        sink: Arc::new(store.clone()),
        watch: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, admin_router(state)).await });
    Server {
        url,
        store,
        _dir: dir,
    }
}

fn support_read() -> Value {
    json!({
        "method": "GET", "path": "/tickets/42",
        "headers": {"Authorization": "Bearer rk_demo_support_assistant", "Remit-Purpose": "case-summary"},
        "source_ip": "127.0.0.1"
    })
}

async fn post(
    s: &Server,
    query: &str,
    body: impl Into<reqwest::Body>,
    ctype: &str,
) -> (u16, String, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/decide{query}", s.url))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    (
        status,
        ct,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn decide_answers_the_contract_and_records_it() {
    let s = start().await;
    let (status, _, body) = post(&s, "", support_read().to_string(), "application/json").await;
    assert_eq!(status, 200, "{body}");
    for field in [
        "decision",
        "decision_id",
        "identity",
        "class",
        "authority",
        "purpose",
        "action",
        "resource",
        "reasons",
        "policies",
        "obligations",
    ] {
        assert!(body.get(field).is_some(), "missing `{field}` in {body}");
    }
    assert_eq!(body["decision"], "allow");
    assert_eq!(
        body["authority"],
        json!({"kind": "own", "on_behalf_of": null})
    );
    assert_eq!(body["obligations"], json!([{"kind": "log_output"}]));
    let id = body["decision_id"].as_str().unwrap();
    let record = s
        .store
        .record(id)
        .await
        .unwrap()
        .expect("the decision was recorded before the answer");
    assert!(record.contains("\"path\":\"/tickets/42\""), "{record}");
    assert!(
        !record.contains("rk_demo"),
        "no secret in the record: {record}"
    );
}

#[tokio::test]
async fn dry_run_writes_no_record() {
    let s = start().await;
    let (status, _, body) = post(
        &s,
        "?dry_run=true",
        support_read().to_string(),
        "application/json",
    )
    .await;
    assert_eq!((status, body["decision"].as_str()), (200, Some("allow")));
    assert_eq!(s.store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn verdicts_other_than_allow_are_answers_not_errors() {
    let s = start().await;
    let req = json!({"method": "POST", "path": "/repos/web/deployments",
        "headers": {"Authorization": "Bearer rk_demo_codegen_workflow", "Remit-Purpose": "code-change"}});
    let (status, _, body) = post(&s, "", req.to_string(), "application/json").await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], "approval_required");
    assert_eq!(
        body["approval"]["required_by"],
        json!(["codegen.deploy-needs-approval"])
    );
}

#[tokio::test]
async fn hostile_input_gets_problem_json() {
    let s = start().await;
    let big = format!(
        "{{\"method\":\"GET\",\"path\":\"/\",\"body\":\"{}\"}}",
        "a".repeat(300 * 1024)
    );
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        ("", "{".into(), "application/json", 400, "invalid request JSON"),
        ("", "[]".into(), "application/json", 400, "invalid request JSON"),
        ("", json!({"method": "GET", "path": "/", "extra": 1}).to_string(), "application/json", 400, "unknown field"),
        ("", json!({"method": "GET"}).to_string(), "application/json", 400, "missing field `path`"),
        ("", big, "application/json", 413, "larger than"),
        ("", support_read().to_string(), "text/plain", 415, "application/json"),
        ("?dry_run=maybe", support_read().to_string(), "application/json", 400, "dry_run"),
        ("?colour=blue", support_read().to_string(), "application/json", 400, "dry_run"),
        ("", json!({"method": "GET", "path": "/tickets/1",
            "headers": {"Authorization": ["Bearer a", "Bearer b"]}}).to_string(), "application/json", 400, "more than once"),
        ("", r#"{"method":"GET","path":"/tickets/1","headers":{"Remit-Purpose":"a","remit-purpose":"b"}}"#.into(), "application/json", 400, "more than once"),
        ("", json!({"method": "GET", "path": "/tickets/%2e%2e/1"}).to_string(), "application/json", 400, "encodes `.`"),
        ("", json!({"method": "GET", "path": "/x", "source_ip": "not-an-ip"}).to_string(), "application/json", 400, "not an IP"),
        ("", json!({"method": "POST", "path": "/mcp/docs", "body": "{\"jsonrpc\":"}).to_string(), "application/json", 400, "JSON-RPC"),
    ];
    for (query, body, ctype, want_status, want_detail) in cases {
        let (status, ct, problem) = post(&s, query, body.clone(), ctype).await;
        let shown = &body[..body.len().min(120)];
        assert_eq!(status, want_status, "{shown}: {problem}");
        assert_eq!(ct, "application/problem+json", "{shown}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(want_detail),
            "{shown}: detail {detail:?} lacks {want_detail:?}"
        );
    }
    assert_eq!(
        s.store.count().await.unwrap(),
        0,
        "bad input is never recorded as a decision"
    );
}

#[tokio::test]
async fn unknown_endpoints_and_methods_are_problems() {
    let s = start().await;
    let c = reqwest::Client::new();
    let r = c.get(format!("{}/v1/nope", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = c.get(format!("{}/v1/decide", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn an_unavailable_store_fails_closed() {
    let s = start().await;
    s.store.close().await;
    let (status, _, body) = post(&s, "", support_read().to_string(), "application/json").await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], "deny", "{body}");
    assert!(
        body["reasons"].to_string().contains("could not be written"),
        "{body}"
    );
}

#[path = "gateway/proxy.rs"]
mod proxy;

#[path = "gateway/secrets.rs"]
mod secrets;

#[path = "gateway/mcp_e2e.rs"]
mod mcp_e2e;

#[path = "gateway/mcp.rs"]
mod mcp;

#[path = "gateway/authz.rs"]
mod authz;

#[path = "gateway/nginx.rs"]
mod nginx;

#[path = "gateway/token.rs"]
mod token;

#[path = "gateway/oidc_e2e.rs"]
mod oidc_e2e;

#[path = "gateway/alerts.rs"]
mod alerts;
#[path = "gateway/approvals.rs"]
mod approvals;
#[path = "gateway/budgets.rs"]
mod budgets;
#[path = "gateway/client_assertion.rs"]
mod client_assertion;
#[path = "gateway/jwt_svid.rs"]
mod jwt_svid;
#[path = "gateway/records.rs"]
mod records;
#[path = "gateway/spiffe.rs"]
mod spiffe;
#[path = "gateway/tls.rs"]
mod tls;
