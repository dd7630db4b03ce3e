//! The authorization doors over real sockets with a real SQLite store: ext_authz gRPC
//! conformance with a `tonic` client on the same `envoy-types` protos, and the HTTP
//! endpoint (nginx and Envoy shapes) against hostile input and untrusted peers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::config::core::v3::{
    self as core, HeaderMap as PbHeaderMap, HeaderValue as PbHeaderValue, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::value::Kind;
use remit_gateway::authz::AuthzState;
use remit_store::SqliteStore;
use serde_json::Value;

/// Both authorization doors started in-process on loopback, on the quickstart world.
pub(crate) struct Doors {
    pub(crate) grpc: std::net::SocketAddr,
    pub(crate) http: std::net::SocketAddr,
    pub(crate) store: SqliteStore,
    _dir: tempfile::TempDir,
}

/// The quickstart configuration with `edit` applied to its text.
pub(crate) fn quickstart_engine(edit: impl Fn(String) -> String) -> remit_engine::Engine {
    let q = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let text = edit(std::fs::read_to_string(q.join("remit.toml")).unwrap());
    let config = remit_core::Config::parse(&text, "remit.toml").unwrap();
    let policies = [remit_policy::PolicySource {
        file: "quickstart.cedar".into(),
        text: std::fs::read_to_string(q.join("policies/quickstart.cedar")).unwrap(),
    }];
    remit_engine::Engine::new(config, &policies).unwrap()
}

pub(crate) async fn start_doors(edit: impl Fn(String) -> String) -> Doors {
    let engine = Arc::new(quickstart_engine(edit));
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let st = AuthzState::new(engine, Arc::new(store.clone()));
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let g = st.clone();
    tokio::spawn(async move {
        remit_gateway::ext_authz::serve_ext_authz(grpc, g, std::future::pending()).await
    });
    tokio::spawn(async move {
        remit_gateway::authz_http::serve_authz(http, st, std::future::pending()).await
    });
    Doors {
        grpc: grpc_addr,
        http: http_addr,
        store,
        _dir: dir,
    }
}

/// A `CheckRequest` as Envoy sends it (headers as a map, lower-case keys).
pub(crate) fn check(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> CheckRequest {
    let mut map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
        .collect();
    map.insert(":method".into(), method.into());
    map.insert(":path".into(), path.into());
    map.insert(":authority".into(), "api.example".into());
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(core::Address {
                    address: Some(Address::SocketAddress(SocketAddress {
                        address: "127.0.0.1".into(),
                        ..Default::default()
                    })),
                }),
                principal: "spiffe://example.org/ns/prod/sa/support".into(),
                ..Default::default()
            }),
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "api.example".into(),
                    headers: map,
                    size: if body.is_empty() {
                        -1
                    } else {
                        body.len() as i64
                    },
                    body: body.into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

fn support() -> Vec<(&'static str, &'static str)> {
    vec![
        ("authorization", "Bearer rk_demo_support_assistant"),
        ("remit-purpose", "case-summary"),
    ]
}

async fn client(addr: std::net::SocketAddr) -> AuthorizationClient<tonic::transport::Channel> {
    AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(8 << 20)
}

pub(crate) async fn ask(addr: std::net::SocketAddr, req: CheckRequest) -> CheckResponse {
    client(addr).await.check(req).await.unwrap().into_inner()
}

pub(crate) fn meta(r: &CheckResponse, key: &str) -> Option<String> {
    match r
        .dynamic_metadata
        .as_ref()?
        .fields
        .get(key)?
        .kind
        .as_ref()?
    {
        Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// The denied response's status, header map and JSON body.
pub(crate) fn denied(r: &CheckResponse) -> (i32, HashMap<String, String>, Value) {
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else {
        panic!("expected a denied response, got {r:?}");
    };
    assert_ne!(r.status.as_ref().unwrap().code, 0, "a deny is not OK");
    let headers = d
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    (
        d.status.as_ref().unwrap().code,
        headers,
        serde_json::from_str(&d.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn grpc_allow_sets_attribution_removes_the_credential_and_is_recorded_first() {
    let d = start_doors(|t| t).await;
    let mut h = support();
    h.push(("remit-on-behalf-of", "mallory"));
    h.push(("remit-approval", "forged-1"));
    let r = ask(d.grpc, check("GET", "/tickets/1?x=1", &h, "")).await;
    assert_eq!(r.status.as_ref().unwrap().code, 0, "{r:?}");
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("{r:?}")
    };
    let set: HashMap<&str, &str> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(set["remit-identity"], "support-assistant");
    assert_eq!(set["remit-purpose"], "case-summary");
    assert!(!set.contains_key("remit-on-behalf-of"));
    let id = set["remit-decision-id"];
    let mut removed = ok.headers_to_remove.clone();
    removed.sort();
    assert_eq!(
        removed,
        ["authorization", "remit-approval", "remit-on-behalf-of"]
    );
    assert_eq!(meta(&r, "decision").as_deref(), Some("allow"));
    assert_eq!(meta(&r, "decision_id").as_deref(), Some(id));
    assert_eq!(meta(&r, "class").as_deref(), Some("assistant"));
    assert_eq!(meta(&r, "identity").as_deref(), Some("support-assistant"));
    assert_eq!(meta(&r, "purpose").as_deref(), Some("case-summary"));
    let record = d
        .store
        .record(id)
        .await
        .unwrap()
        .expect("durable before OK");
    assert!(record.contains("\"path\":\"/tickets/1\""), "{record}");
    assert!(record.contains("\"source_ip\":\"127.0.0.1\""), "{record}");
    assert!(
        record.contains("\"peer_spiffe_id\":\"spiffe://example.org/ns/prod/sa/support\""),
        "the peer's SPIFFE ID is a recorded fact: {record}"
    );
    assert!(!record.contains("rk_demo"), "{record}");
}

#[tokio::test]
async fn grpc_deny_approval_and_unclassified_mcp_answers() {
    let d = start_doors(|t| t).await;
    // deny: the support assistant may not write.
    let r = ask(
        d.grpc,
        check("POST", "/tickets/1/comments", &support(), "{}"),
    )
    .await;
    let (status, headers, body) = denied(&r);
    assert_eq!(status, 403);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["decision"], "deny");
    assert_eq!(
        headers["remit-decision-id"],
        body["decision_id"].as_str().unwrap()
    );
    assert_eq!(meta(&r, "decision").as_deref(), Some("deny"));
    assert_eq!(meta(&r, "identity").as_deref(), Some("support-assistant"));
    // approval_required: a deploy.
    let cg = [
        ("authorization", "Bearer rk_demo_codegen_workflow"),
        ("remit-purpose", "code-change"),
    ];
    let r = ask(d.grpc, check("POST", "/repos/web/deployments", &cg, "{}")).await;
    let (status, _, body) = denied(&r);
    assert_eq!(
        (status, body["decision"].as_str()),
        (403, Some("approval_required"))
    );
    assert_eq!(r.status.as_ref().unwrap().code, 7, "PERMISSION_DENIED");
    // No credential at an MCP endpoint: 401 with the RFC 9728 challenge, as the proxy says.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"x"}}}"#;
    let r = ask(
        d.grpc,
        check(
            "POST",
            "/mcp/docs",
            &[("content-type", "application/json")],
            call,
        ),
    )
    .await;
    let (status, headers, _) = denied(&r);
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"].contains("resource_metadata="),
        "{headers:?}"
    );
    assert_eq!(r.status.as_ref().unwrap().code, 16, "UNAUTHENTICATED");
}

#[tokio::test]
async fn grpc_mcp_bodies_are_understood_as_in_the_proxy() {
    let d = start_doors(|t| t).await;
    let h = [
        ("authorization", "Bearer rk_demo_retrieval_agent"),
        ("content-type", "application/json"),
    ];
    let call = |tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"query":"deploy"}},"_meta":{{"remit/purpose":"doc-retrieval"}}}}}}"#
        )
    };
    let r = ask(d.grpc, check("POST", "/mcp/docs", &h, &call("search_docs"))).await;
    assert!(
        matches!(r.http_response, Some(HttpResponse::OkResponse(_))),
        "{r:?}"
    );
    assert_eq!(meta(&r, "purpose").as_deref(), Some("doc-retrieval"));
    // A refused tool call is the JSON-RPC answer the proxy gives, inside a deny.
    let r = ask(
        d.grpc,
        check("POST", "/mcp/docs", &h, &call("admin_reindex")),
    )
    .await;
    let (status, _, body) = denied(&r);
    assert_eq!(
        status, 200,
        "the MCP client reads a tool error; Envoy still denies"
    );
    assert_eq!(body["id"], 7);
    assert_eq!(body["result"]["isError"], true, "{body}");
    // Routing headers must agree with the body, as at the proxy.
    let mut h2 = h.to_vec();
    h2.push(("mcp-name", "search_docs"));
    let r = ask(
        d.grpc,
        check("POST", "/mcp/docs", &h2, &call("admin_reindex")),
    )
    .await;
    assert_eq!(denied(&r).0, 400);
}

#[tokio::test]
async fn grpc_malformed_requests_are_denied_and_never_recorded() {
    let d = start_doors(|t| t).await;
    let mut dup = check("GET", "/tickets/1", &[], "");
    // Envoy's raw header map (`encode_raw_headers`) keeps repeats.
    let http = dup
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.header_map = Some(PbHeaderMap {
        headers: [
            "Bearer rk_demo_support_assistant",
            "Bearer rk_demo_codegen_workflow",
        ]
        .iter()
        .map(|v| PbHeaderValue {
            key: "authorization".into(),
            value: String::new(),
            raw_value: v.as_bytes().to_vec(),
        })
        .collect(),
    });
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut partial = check("POST", "/tickets/1/comments", &support(), "{\"a\":");
    partial
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .size = 4096;
    let mut no_http = check("GET", "/", &[], "");
    no_http.attributes.as_mut().unwrap().request = None;
    let mut bad_source = check("GET", "/tickets/1", &support(), "");
    if let Some(Address::SocketAddress(s)) = bad_source
        .attributes
        .as_mut()
        .unwrap()
        .source
        .as_mut()
        .unwrap()
        .address
        .as_mut()
        .unwrap()
        .address
        .as_mut()
    {
        s.address = "not-an-ip".into();
    }
    let big = "a".repeat(1024 * 1024 + 1);
    let cases: Vec<(&str, CheckRequest, i32, &str)> = vec![
        (
            "encoded dot",
            check("GET", "/tickets/%2e%2e/admin", &support(), ""),
            400,
            "bad path",
        ),
        (
            "encoded slash",
            check("GET", "/tickets/1%2fcomments", &support(), ""),
            400,
            "bad path",
        ),
        (
            "relative path",
            check("GET", "tickets/1", &support(), ""),
            400,
            "bad path",
        ),
        (
            "empty path",
            check("GET", "", &support(), ""),
            400,
            "no path",
        ),
        (
            "bad method",
            check("G T", "/tickets/1", &support(), ""),
            400,
            "not an HTTP method",
        ),
        ("duplicate authorization", dup, 400, "more than once"),
        (
            "too many headers",
            check("GET", "/tickets/1", &many_refs, ""),
            400,
            "more than 128 headers",
        ),
        (
            "bad header name",
            check("GET", "/tickets/1", &[("bad name", "v")], ""),
            400,
            "not a valid header name",
        ),
        ("partial body", partial, 413, "part of the body"),
        (
            "oversized body",
            check("POST", "/tickets/1/comments", &support(), &big),
            413,
            "larger than",
        ),
        ("no http attributes", no_http, 400, "no HTTP request"),
        ("bad source", bad_source, 400, "not an IP address"),
        (
            "basic auth",
            check("GET", "/tickets/1", &[("authorization", "Basic Zm9v")], ""),
            400,
            "Bearer",
        ),
    ];
    for (name, req, want, detail) in cases {
        let r = ask(d.grpc, req).await;
        let (status, headers, body) = denied(&r);
        assert_eq!(status, want, "{name}: {body}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{name}"
        );
        let got = body["detail"].as_str().unwrap_or_default();
        assert!(got.contains(detail), "{name}: {got:?} lacks {detail:?}");
        assert_eq!(meta(&r, "decision").as_deref(), Some("deny"), "{name}");
    }
    // Beyond the message limit tonic refuses the call itself: an error Envoy denies on.
    let huge = "a".repeat(2 * 1024 * 1024);
    let err = client(d.grpc)
        .await
        .check(check("POST", "/tickets/1/comments", &support(), &huge))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    assert_eq!(
        d.store.count().await.unwrap(),
        0,
        "nothing malformed is recorded"
    );
}

#[tokio::test]
async fn grpc_store_failure_denies() {
    let d = start_doors(|t| t).await;
    d.store.close().await;
    let r = ask(d.grpc, check("GET", "/tickets/1", &support(), "")).await;
    let (status, _, body) = denied(&r);
    assert_eq!(status, 403);
    assert!(
        body["reasons"].to_string().contains("could not be written"),
        "{body}"
    );
}

#[tokio::test]
async fn grpc_untrusted_peers_are_denied() {
    let d = start_doors(|t| {
        t.replace(
            r#"trusted_proxies = ["127.0.0.1/32", "::1/128"]"#,
            r#"trusted_proxies = ["10.9.9.9"]"#,
        )
    })
    .await;
    let r = ask(d.grpc, check("GET", "/tickets/1", &support(), "")).await;
    let (status, _, body) = denied(&r);
    assert_eq!(status, 403);
    assert!(
        body["detail"].as_str().unwrap().contains("trusted_proxies"),
        "{body}"
    );
    assert_eq!(d.store.count().await.unwrap(), 0);
}

// ---- The HTTP endpoint -------------------------------------------------------------------

async fn authz(
    d: &Doors,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("http://{}{path}", d.http),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        h,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn nginx<'a>(method: &'a str, uri: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut h = support();
    h.push(("x-original-method", method));
    h.push(("x-original-uri", uri));
    h
}

#[tokio::test]
async fn http_allows_in_both_shapes_and_names_what_to_remove() {
    let d = start_doors(|t| t).await;
    let mut h = nginx("GET", "/tickets/1");
    h.push(("remit-on-behalf-of", "mallory"));
    let (status, headers, _) = authz(&d, "GET", "/v1/authz", &h).await;
    assert_eq!(status, 200);
    assert_eq!(headers["remit-identity"], "support-assistant");
    assert_eq!(headers["remit-purpose"], "case-summary");
    assert_eq!(
        headers["x-envoy-auth-headers-to-remove"],
        "authorization,remit-on-behalf-of"
    );
    let id = headers["remit-decision-id"].to_str().unwrap();
    assert!(
        d.store.record(id).await.unwrap().is_some(),
        "durable before 200"
    );
    // Envoy's shape: the original path after the prefix, the original method as the method.
    let (status, headers, _) = authz(&d, "GET", "/v1/authz/tickets/1?page=2", &support()).await;
    assert_eq!(status, 200);
    let record = d
        .store
        .record(headers["remit-decision-id"].to_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(record.contains("\"path\":\"/tickets/1\""), "{record}");
    // A write is refused in both shapes, never with a 2xx.
    let (status, headers, body) = authz(
        &d,
        "GET",
        "/v1/authz",
        &nginx("POST", "/tickets/1/comments"),
    )
    .await;
    assert_eq!((status, body["decision"].as_str()), (403, Some("deny")));
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.contains_key("remit-decision-id"));
    let (status, _, _) = authz(&d, "POST", "/v1/authz/tickets/1/comments", &support()).await;
    assert_eq!(status, 403);
    let cg = [
        ("authorization", "Bearer rk_demo_codegen_workflow"),
        ("remit-purpose", "code-change"),
    ];
    let (status, _, body) = authz(&d, "POST", "/v1/authz/repos/web/deployments", &cg).await;
    assert_eq!(
        (status, body["decision"].as_str()),
        (403, Some("approval_required"))
    );
    // No credential at an MCP endpoint: 401 with the challenge, as at the proxy.
    let (status, headers, _) = authz(&d, "GET", "/v1/authz/mcp/docs", &[]).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn http_client_address_comes_from_trusted_forwarding_headers_only() {
    let d = start_doors(|t| t).await;
    // inventory-sync may act from loopback only (its origins).
    let inv = |extra: &[(&'static str, &'static str)]| {
        let mut h = vec![
            ("authorization", "Bearer rk_demo_inventory_sync"),
            ("remit-purpose", "inventory-refresh"),
            ("x-original-method", "PUT"),
            ("x-original-uri", "/inventory/sku-123"),
        ];
        h.extend_from_slice(extra);
        h
    };
    let (status, _, _) = authz(&d, "GET", "/v1/authz", &inv(&[])).await;
    assert_eq!(status, 200, "the trusted peer itself is on loopback");
    let (status, _, body) = authz(
        &d,
        "GET",
        "/v1/authz",
        &inv(&[("x-real-ip", "203.0.113.9")]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reasons"].to_string().contains("203.0.113.9"),
        "{body}"
    );
    // The right-most untrusted entry is the client; a spoofed left entry does not help.
    let (status, _, body) = authz(
        &d,
        "GET",
        "/v1/authz",
        &inv(&[("x-forwarded-for", "127.0.0.1, 203.0.113.9")]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = authz(
        &d,
        "GET",
        "/v1/authz",
        &inv(&[("x-forwarded-for", "203.0.113.9, 127.0.0.1")]),
    )
    .await;
    assert_eq!(
        status, 403,
        "127.0.0.1 is a trusted proxy, so the client is 203.0.113.9"
    );
}

#[tokio::test]
async fn http_hostile_input_is_refused_and_never_recorded() {
    let d = start_doors(|t| t).await;
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = support();
        h.extend_from_slice(extra);
        h
    };
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/v1/authz",
            "no original uri",
            with(&[("x-original-method", "GET")]),
            400,
            "X-Original-URI",
        ),
        (
            "/v1/authz",
            "no original method",
            with(&[("x-original-uri", "/tickets/1")]),
            400,
            "X-Original-Method",
        ),
        (
            "/v1/authz",
            "duplicate original uri",
            with(&[
                ("x-original-method", "GET"),
                ("x-original-uri", "/tickets/1"),
                ("x-original-uri", "/status"),
            ]),
            400,
            "more than once",
        ),
        (
            "/v1/authz/tickets/1",
            "two requests named",
            with(&[("x-original-uri", "/status")]),
            400,
            "two requests",
        ),
        (
            "/v1/authz",
            "encoded dot",
            with(&[
                ("x-original-method", "GET"),
                ("x-original-uri", "/tickets/%2e%2e/admin"),
            ]),
            400,
            "bad path",
        ),
        (
            "/v1/authz",
            "encoded slash",
            with(&[
                ("x-original-method", "GET"),
                ("x-original-uri", "/tickets%2F1"),
            ]),
            400,
            "bad path",
        ),
        (
            "/v1/authz",
            "absolute uri",
            with(&[
                ("x-original-method", "GET"),
                ("x-original-uri", "http://evil/tickets/1"),
            ]),
            400,
            "bad path",
        ),
        (
            "/v1/authz",
            "bad method",
            with(&[
                ("x-original-method", "G(T"),
                ("x-original-uri", "/tickets/1"),
            ]),
            400,
            "not an HTTP method",
        ),
        (
            "/v1/authz/tickets/1%2Fcomments",
            "envoy encoded slash",
            support(),
            400,
            "bad path",
        ),
        (
            "/v1/authz/tickets/1;x=1",
            "envoy parameter",
            support(),
            400,
            "bad path",
        ),
        (
            "/v1/authz",
            "duplicate authorization",
            vec![
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b"),
                ("x-original-method", "GET"),
                ("x-original-uri", "/tickets/1"),
            ],
            400,
            "more than once",
        ),
        (
            "/v1/authz",
            "duplicate purpose",
            with(&[
                ("remit-purpose", "other"),
                ("x-original-method", "GET"),
                ("x-original-uri", "/tickets/1"),
            ]),
            400,
            "more than once",
        ),
        (
            "/v1/authz",
            "bad forwarded-for",
            with(&[
                ("x-original-method", "GET"),
                ("x-original-uri", "/tickets/1"),
                ("x-forwarded-for", "1.2.3.4, nope"),
            ]),
            400,
            "not an IP",
        ),
        (
            "/v1/authz",
            "duplicate real-ip",
            with(&[
                ("x-original-method", "GET"),
                ("x-original-uri", "/tickets/1"),
                ("x-real-ip", "1.2.3.4"),
                ("x-real-ip", "1.2.3.5"),
            ]),
            400,
            "more than once",
        ),
        (
            "/v1/authzz",
            "no such endpoint",
            support(),
            404,
            "no such endpoint",
        ),
    ];
    for (path, name, headers, want, detail) in cases {
        let (status, h, body) = authz(&d, "GET", path, &headers).await;
        assert_eq!(status, want, "{name}: {body}");
        assert_eq!(h["content-type"], "application/problem+json", "{name}");
        let got = body["detail"].as_str().unwrap_or_default();
        assert!(got.contains(detail), "{name}: {got:?} lacks {detail:?}");
    }
    let xff: String = (0..40)
        .map(|i| format!("10.0.0.{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut h = nginx("GET", "/tickets/1");
    h.push(("x-forwarded-for", &xff));
    let (status, _, _) = authz(&d, "GET", "/v1/authz", &h).await;
    assert_eq!(status, 400, "X-Forwarded-For is bounded");
    assert_eq!(
        d.store.count().await.unwrap(),
        0,
        "nothing malformed is recorded"
    );
}

#[tokio::test]
async fn http_untrusted_peer_naming_an_original_uri_is_refused() {
    let d = start_doors(|t| {
        t.replace(
            r#"trusted_proxies = ["127.0.0.1/32", "::1/128"]"#,
            r#"trusted_proxies = ["10.9.9.0/24"]"#,
        )
    })
    .await;
    for (path, h) in [
        ("/v1/authz", nginx("GET", "/tickets/1")),
        ("/v1/authz/tickets/1", support()),
    ] {
        let (status, _, body) = authz(&d, "GET", path, &h).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("trusted_proxies"),
            "{body}"
        );
    }
    assert_eq!(d.store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn http_store_failure_denies() {
    let d = start_doors(|t| t).await;
    d.store.close().await;
    let (status, _, body) = authz(&d, "GET", "/v1/authz", &nginx("GET", "/tickets/1")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reasons"].to_string().contains("could not be written"),
        "{body}"
    );
}

/// Over its rate an identity gets a `DeniedHttpResponse` with 429 and `Retry-After`.
#[tokio::test]
async fn grpc_rate_limited_is_a_429_with_retry_after() {
    // The support assistant, capped at 2 requests a minute for this test.
    let d = start_doors(|t| {
        t.replacen(
            "id = \"support-assistant\"",
            "id = \"support-assistant\"\nlimits = { rate = \"2/min\" }",
            1,
        )
    })
    .await;
    for _ in 0..2 {
        let r = ask(d.grpc, check("GET", "/tickets/1", &support(), "")).await;
        assert_eq!(meta(&r, "decision").as_deref(), Some("allow"));
    }
    let r = ask(d.grpc, check("GET", "/tickets/1", &support(), "")).await;
    let (status, headers, body) = denied(&r);
    assert_eq!(
        (status, body["decision"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(
        headers["retry-after"].parse::<u64>().unwrap() >= 1,
        "{headers:?}"
    );
    assert_eq!(meta(&r, "decision").as_deref(), Some("rate_limited"));
}

/// A body Envoy sends with the check is scanned as at the proxy: a secret in a tool's
/// arguments is refused naming the rule, and under `redact` (which this door cannot apply
/// to a body it does not forward) it is refused too.
#[tokio::test]
async fn grpc_secrets_in_the_body_are_refused_naming_the_rule() {
    const KEY: &str = "AKIAQ7LZ3TNB4XK2WJ6D";
    let h = [
        ("authorization", "Bearer rk_demo_retrieval_agent"),
        ("content-type", "application/json"),
    ];
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"search_docs","arguments":{{"query":"{KEY}"}},"_meta":{{"remit/purpose":"doc-retrieval"}}}}}}"#
    );
    for (action, says) in [
        ("block", "remove it and retry"),
        ("redact", "cannot redact at this door"),
    ] {
        let d = start_doors(|t| {
            let edited = t.replacen("request = \"block\"", &format!("request = \"{action}\""), 1);
            assert!(edited.contains(&format!("request = \"{action}\"")));
            edited
        })
        .await;
        let r = ask(d.grpc, check("POST", "/mcp/docs", &h, &call)).await;
        let (_, _, body) = denied(&r);
        let text = body.to_string();
        assert!(
            text.contains("aws-access-key-id") && text.contains(says),
            "{text}"
        );
        assert!(!text.contains(KEY), "{text}");
        assert_eq!(meta(&r, "decision").as_deref(), Some("deny"), "{r:?}");
    }
}
