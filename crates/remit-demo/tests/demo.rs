//! End-to-end tests of the demo upstreams: both servers run on
//! `127.0.0.1:0` and are exercised with real HTTP and MCP clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use http::{HeaderName, HeaderValue};
use reqwest::{Client, Response, StatusCode};
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ClientConfig},
    service::{RoleClient, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Starts the HTTP API and returns its base URL.
async fn start_http_api() -> Result<String, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(remit_demo::serve_http_api(listener));
    Ok(format!("http://{addr}"))
}

/// Starts the docs MCP server and returns its endpoint URL.
async fn start_docs_mcp() -> Result<String, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(remit_demo::serve_docs_mcp(listener));
    Ok(format!("http://{addr}{}", remit_demo::DOCS_MCP_PATH))
}

async fn json_of(response: Response) -> Result<Value, reqwest::Error> {
    response.json::<Value>().await
}

/// Asserts `response` is an RFC 9457 problem with `status` and returns it.
async fn expect_problem(response: Response, status: StatusCode) -> Result<Value, reqwest::Error> {
    assert_eq!(response.status(), status);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
        Some("application/problem+json")
    );
    let problem = json_of(response).await?;
    assert_eq!(problem["type"], "about:blank");
    assert_eq!(problem["status"], status.as_u16());
    assert_eq!(
        problem["title"],
        status.canonical_reason().unwrap_or("Error")
    );
    assert!(problem["detail"].is_string(), "{problem}");
    Ok(problem)
}

#[tokio::test]
async fn status_echoes_the_gateway_headers() -> TestResult {
    let base = start_http_api().await?;
    let client = Client::new();

    let plain = json_of(client.get(format!("{base}/status")).send().await?).await?;
    assert_eq!(plain, json!({"status": "ok", "seen_by_upstream": {}}));

    let response = client
        .get(format!("{base}/status"))
        .header("remit-identity", "agent:support-triage")
        .header("remit-on-behalf-of", "user:dana")
        .header("remit-purpose", "answer ticket 1")
        .header("remit-decision-id", "dec_0123")
        .header("authorization", "Bearer not-echoed")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await?,
        json!({
            "status": "ok",
            "seen_by_upstream": {
                "remit-identity": "agent:support-triage",
                "remit-on-behalf-of": "user:dana",
                "remit-purpose": "answer ticket 1",
                "remit-decision-id": "dec_0123",
            }
        })
    );
    Ok(())
}

#[tokio::test]
async fn tickets_history_and_comments() -> TestResult {
    let base = start_http_api().await?;
    let client = Client::new();

    let ticket = json_of(client.get(format!("{base}/tickets/1")).send().await?).await?;
    assert_eq!(ticket["id"], 1);
    assert_eq!(ticket["subject"], "Order #1042 arrived damaged");
    assert_eq!(ticket["status"], "open");
    assert!(ticket["customer"].is_string());

    let before = json_of(
        client
            .get(format!("{base}/tickets/1/history"))
            .send()
            .await?,
    )
    .await?;
    let seeded = before["events"].as_array().map_or(0, Vec::len);
    assert!(seeded >= 1, "{before}");

    let response = client
        .post(format!("{base}/tickets/1/comments"))
        .header("remit-on-behalf-of", "user:dana")
        .json(&json!({"body": "Replacement shipped today."}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    let comment = json_of(response).await?;
    assert_eq!(comment["ticket_id"], 1);
    assert_eq!(comment["body"], "Replacement shipped today.");
    assert_eq!(comment["author"], "user:dana");
    assert_eq!(
        comment["seen_by_upstream"]["remit-on-behalf-of"],
        "user:dana"
    );

    let after = json_of(
        client
            .get(format!("{base}/tickets/1/history"))
            .send()
            .await?,
    )
    .await?;
    let events = after["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), seeded + 1);
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["kind"], "comment");
    assert_eq!(last["detail"], "Replacement shipped today.");
    Ok(())
}

#[tokio::test]
async fn unknown_tickets_and_routes_are_404_problems() -> TestResult {
    let base = start_http_api().await?;
    let client = Client::new();

    let response = client
        .get(format!("{base}/tickets/99"))
        .header("remit-decision-id", "dec_404")
        .send()
        .await?;
    let problem = expect_problem(response, StatusCode::NOT_FOUND).await?;
    assert_eq!(problem["seen_by_upstream"]["remit-decision-id"], "dec_404");

    for path in ["/tickets/abc", "/tickets/99/history", "/no/such/route"] {
        let response = client.get(format!("{base}{path}")).send().await?;
        expect_problem(response, StatusCode::NOT_FOUND).await?;
    }
    let response = client
        .post(format!("{base}/tickets/99/comments"))
        .json(&json!({"body": "hello?"}))
        .send()
        .await?;
    expect_problem(response, StatusCode::NOT_FOUND).await?;
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_problems() -> TestResult {
    let base = start_http_api().await?;
    let client = Client::new();

    let response = client
        .post(format!("{base}/tickets/1/comments"))
        .header("content-type", "application/json")
        .header("remit-identity", "agent:clumsy")
        .body("{\"body\": ")
        .send()
        .await?;
    let problem = expect_problem(response, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        problem["seen_by_upstream"]["remit-identity"],
        "agent:clumsy"
    );

    // Valid JSON of the wrong shape is a bad request too.
    let response = client
        .put(format!("{base}/inventory/WIDGET-001"))
        .json(&json!({"quantity": -3}))
        .send()
        .await?;
    expect_problem(response, StatusCode::BAD_REQUEST).await?;

    let response = client
        .post(format!("{base}/tickets/1/comments"))
        .json(&json!({"body": "   "}))
        .send()
        .await?;
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await?;

    let huge = "x".repeat(remit_demo::MAX_BODY_BYTES + 1);
    let response = client
        .post(format!("{base}/tickets/1/comments"))
        .json(&json!({ "body": huge }))
        .send()
        .await?;
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await?;

    let response = client.delete(format!("{base}/tickets/1")).send().await?;
    assert!(response.headers().contains_key(reqwest::header::ALLOW));
    expect_problem(response, StatusCode::METHOD_NOT_ALLOWED).await?;
    Ok(())
}

#[tokio::test]
async fn pulls_builds_and_deployments() -> TestResult {
    let base = start_http_api().await?;
    let client = Client::new();

    for expected in [1, 2] {
        let response = client
            .post(format!("{base}/repos/storefront/pulls"))
            .json(&json!({"title": "Fix VAT rounding", "head": "fix/vat", "base": "main"}))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::CREATED);
        let pull = json_of(response).await?;
        assert_eq!(pull["number"], expected);
        assert_eq!(pull["repo"], "storefront");
        assert_eq!(pull["state"], "open");
    }

    let build = json_of(
        client
            .get(format!("{base}/repos/storefront/builds/42"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(build["id"], 42);
    assert!(build["status"].is_string());
    let steps = build["steps"].as_array().cloned().unwrap_or_default();
    assert!(!steps.is_empty());
    let total: u64 = steps
        .iter()
        .filter_map(|step| step["duration_s"].as_u64())
        .sum();
    assert_eq!(build["duration_s"], total);

    let response = client
        .post(format!("{base}/repos/storefront/deployments"))
        .json(&json!({"ref": "v1.4.2", "environment": "staging"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    let deployment = json_of(response).await?;
    assert_eq!(deployment["ref"], "v1.4.2");
    assert_eq!(deployment["environment"], "staging");
    assert_eq!(deployment["status"], "queued");
    assert!(deployment["id"].is_u64());
    Ok(())
}

#[tokio::test]
async fn inventory_get_put_delete() -> TestResult {
    let base = start_http_api().await?;
    let client = Client::new();

    let item = json_of(
        client
            .get(format!("{base}/inventory/WIDGET-001"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(item["quantity"], 42);

    let response = client
        .put(format!("{base}/inventory/WIDGET-001"))
        .json(&json!({"quantity": 40}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await?["quantity"], 40);

    let response = client
        .put(format!("{base}/inventory/NEW-SKU"))
        .json(&json!({"quantity": 3}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CREATED);

    let response = client
        .delete(format!("{base}/inventory/NEW-SKU"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await?["deleted"], true);

    let response = client
        .get(format!("{base}/inventory/NEW-SKU"))
        .send()
        .await?;
    expect_problem(response, StatusCode::NOT_FOUND).await?;
    let response = client
        .delete(format!("{base}/inventory/NEW-SKU"))
        .send()
        .await?;
    expect_problem(response, StatusCode::NOT_FOUND).await?;
    Ok(())
}

async fn connect_mcp(
    url: &str,
) -> Result<RunningService<RoleClient, ClientConfig>, Box<dyn std::error::Error>> {
    let headers = HashMap::from([(
        HeaderName::from_static("remit-identity"),
        HeaderValue::from_static("agent:docs-bot"),
    )]);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    Ok(ClientConfig::default().serve(transport).await?)
}

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

#[tokio::test]
async fn mcp_lists_tools_and_searches_docs() -> TestResult {
    let url = start_docs_mcp().await?;
    let client = connect_mcp(&url).await?;

    let server = client
        .peer_info()
        .ok_or("no server info after initialize")?;
    let server_name = server.server_info.as_ref().map(|info| info.name.as_str());
    assert_eq!(server_name, Some("remit-demo-docs"));

    let tools = client.list_all_tools().await?;
    let search = tools
        .iter()
        .find(|tool| tool.name == "search_docs")
        .ok_or("search_docs missing")?;
    let reindex = tools
        .iter()
        .find(|tool| tool.name == "admin_reindex")
        .ok_or("admin_reindex missing")?;
    let search_hints = search.annotations.clone().ok_or("no annotations")?;
    assert_eq!(search_hints.read_only_hint, Some(true));
    let reindex_hints = reindex.annotations.clone().ok_or("no annotations")?;
    assert_eq!(reindex_hints.destructive_hint, Some(true));
    assert_eq!(reindex_hints.read_only_hint, Some(false));

    let result = client
        .call_tool(
            CallToolRequestParams::new("search_docs")
                .with_arguments(arguments(json!({"query": "INVENTORY sync", "limit": 2}))),
        )
        .await?;
    assert_ne!(result.is_error, Some(true));
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|block| block.as_text())
        .map(|text| text.text.as_str())
        .collect();
    assert!(!texts.is_empty() && texts.len() <= 2, "{texts:?}");
    assert!(
        texts[0].starts_with("Inventory sync between warehouse and storefront"),
        "{texts:?}"
    );
    let meta = result.meta.clone().ok_or("no _meta on the tool result")?;
    assert_eq!(
        meta.get("seen_by_upstream"),
        Some(&json!({"remit-identity": "agent:docs-bot"}))
    );

    let result = client
        .call_tool(
            CallToolRequestParams::new("search_docs")
                .with_arguments(arguments(json!({"query": "zeppelin"}))),
        )
        .await?;
    let text = result
        .content
        .first()
        .and_then(|block| block.as_text())
        .map(|text| text.text.clone())
        .unwrap_or_default();
    assert!(text.starts_with("No documents matched"), "{text}");

    let empty = client
        .call_tool(
            CallToolRequestParams::new("search_docs")
                .with_arguments(arguments(json!({"query": "  "}))),
        )
        .await;
    assert!(empty.is_err(), "an empty query should be invalid params");

    let result = client
        .call_tool(CallToolRequestParams::new("admin_reindex"))
        .await?;
    let text = result
        .content
        .first()
        .and_then(|block| block.as_text())
        .map(|text| text.text.clone())
        .unwrap_or_default();
    assert_eq!(text, "reindexed 8 documents");

    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn mcp_initialize_opens_a_session() -> TestResult {
    let url = start_docs_mcp().await?;
    let response = Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "curl", "version": "0"}
            }
        }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(!session.is_empty(), "no Mcp-Session-Id header");
    let body = response.text().await?;
    assert!(body.contains("remit-demo-docs"), "{body}");
    Ok(())
}
