//! MCP awareness at the proxy, against the rmcp-built demo docs server: sessions bound to
//! their identity, `tools/list` filtered, `Origin` and `Mcp-Method`/`Mcp-Name` checked, and
//! a missing credential answered with 401 and protected-resource metadata.

use serde_json::{Value, json};

struct World {
    proxy: String,
    harness: crate::TestProxy,
}

async fn start() -> World {
    let mcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mcp_addr = mcp.local_addr().unwrap();
    tokio::spawn(remit_demo::serve_docs_mcp(mcp));
    let config = format!(
        r#"
[gateway]
public_url = "https://gw.example"
allowed_origins = ["https://console.example"]

[[mcp_server]]
name = "docs"
path = "/mcp/docs"
session_action = "docs.session"

[[mcp_server.tool]]
name = "search_docs"
action = "docs.search"
sensitive = false

[[mcp_server.tool]]
name = "admin_reindex"
action = "docs.reindex"
sensitive = true

[[upstream]]
name = "docs"
url = "http://{mcp_addr}"
prefix = "/mcp/docs"
kind = "mcp"

[[identity]]
id = "alice-bot"
kind = "agent"
owner = "alice"
purposes = ["research"]
boundary = ["docs.session", "docs.search"]

[[identity.credential]]
type = "api_key"
sha256 = "{a}"

[[identity]]
id = "bob-bot"
kind = "agent"
owner = "bob"
purposes = ["research"]
boundary = ["docs.session", "docs.search"]

[[identity.credential]]
type = "api_key"
sha256 = "{b}"
"#,
        a = crate::key_sha256("rk_alice"),
        b = crate::key_sha256("rk_bob"),
    );
    let policy = r#"permit (principal, action in [Action::"docs.session", Action::"docs.search"], resource);"#;
    let proxy = crate::start_proxy(&config, policy).await;
    let addr = proxy.addr;
    World {
        proxy: format!("http://{addr}/mcp/docs"),
        harness: proxy,
    }
}

async fn post(
    url: &str,
    key: Option<&str>,
    session: Option<&str>,
    extra: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    if let Some(s) = session {
        r = r.header("mcp-session-id", s);
    }
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(body.to_string()).send().await.unwrap()
}

/// The JSON-RPC message in a JSON or SSE answer.
async fn message(resp: reqwest::Response) -> Value {
    let text = resp.text().await.unwrap();
    if let Ok(v) = serde_json::from_str(&text) {
        return v;
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id").is_some())
        .unwrap_or(Value::Null)
}

async fn initialize(url: &str, key: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let resp = post(url, Some(key), None, &[], init).await;
    assert_eq!(resp.status().as_u16(), 200);
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = message(resp).await;
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let resp = post(url, Some(key), Some(&session), &[], note).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    session
}

#[tokio::test]
async fn sessions_belong_to_their_identity_and_tools_list_is_filtered() {
    let w = start().await;
    let session = initialize(&w.proxy, "rk_alice").await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let resp = post(
        &w.proxy,
        Some("rk_alice"),
        Some(&session),
        &[],
        list.clone(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let msg = message(resp).await;
    let names: Vec<&str> = msg["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["search_docs"],
        "admin_reindex is hidden from an identity that may not call it: {msg}"
    );

    let resp = post(&w.proxy, Some("rk_bob"), Some(&session), &[], list.clone()).await;
    assert_eq!(
        resp.status().as_u16(),
        403,
        "another identity may not use alice's session"
    );
    let problem: Value = resp.json().await.unwrap();
    let id = problem["decision_id"].as_str().unwrap();
    let record = w
        .harness
        .store
        .record(id)
        .await
        .unwrap()
        .expect("the refusal is recorded");
    assert!(
        record.contains("\"decision\":\"deny\"") && record.contains("remit.mcp-session"),
        "{record}"
    );
    let resp = post(&w.proxy, Some("rk_alice"), Some("not-a-session"), &[], list).await;
    assert_eq!(
        resp.status().as_u16(),
        404,
        "an unknown session must be re-initialised"
    );

    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search_docs", "arguments": {"query": "deploy"}}});
    let resp = post(
        &w.proxy,
        Some("rk_alice"),
        Some(&session),
        &[("remit-purpose", "research")],
        call,
    )
    .await;
    let msg = message(resp).await;
    assert_eq!(msg["result"]["isError"], json!(false), "{msg}");
    assert_eq!(
        msg["result"]["_meta"]["seen_by_upstream"]["remit-identity"], "alice-bot",
        "{msg}"
    );
}

#[tokio::test]
async fn origin_and_routing_headers_are_checked() {
    let w = start().await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = post(
        &w.proxy,
        Some("rk_alice"),
        None,
        &[("origin", "https://evil.example")],
        ping.clone(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 403);
    let r = post(
        &w.proxy,
        Some("rk_alice"),
        None,
        &[("origin", "https://console.example")],
        ping.clone(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200, "a configured origin may call");
    let r = post(
        &w.proxy,
        Some("rk_alice"),
        None,
        &[("origin", "http://localhost:6274")],
        ping.clone(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200, "loopback origins may call");

    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "admin_reindex", "arguments": {}}});
    let r = post(
        &w.proxy,
        Some("rk_alice"),
        None,
        &[("mcp-method", "tools/call"), ("mcp-name", "search_docs")],
        call.clone(),
    )
    .await;
    assert_eq!(
        r.status().as_u16(),
        400,
        "Mcp-Name must agree with the body"
    );
    let r = post(
        &w.proxy,
        Some("rk_alice"),
        None,
        &[("mcp-method", "tools/list")],
        call,
    )
    .await;
    assert_eq!(
        r.status().as_u16(),
        400,
        "Mcp-Method must agree with the body"
    );
}

#[tokio::test]
async fn a_missing_credential_gets_a_challenge_and_metadata() {
    let w = start().await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "admin_reindex", "arguments": {}}});
    let r = post(&w.proxy, None, None, &[], ping).await;
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(
        challenge,
        "Bearer resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource/mcp/docs\""
    );
    let base = w.proxy.trim_end_matches("/mcp/docs");
    let meta: Value = reqwest::get(format!(
        "{base}/.well-known/oauth-protected-resource/mcp/docs"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(meta["resource"], "https://gw.example/mcp/docs");
    assert_eq!(meta["bearer_methods_supported"], json!(["header"]));
    assert!(
        meta.get("authorization_servers").is_none(),
        "no token issuer is configured here: {meta}"
    );
    let r = reqwest::get(format!(
        "{base}/.well-known/oauth-protected-resource/nothing"
    ))
    .await
    .unwrap();
    assert_ne!(
        r.status().as_u16(),
        200,
        "no metadata for what is not an MCP endpoint"
    );
}
