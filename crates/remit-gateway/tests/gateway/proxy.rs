//! The proxy against a recording upstream: a table of hostile requests, each either
//! rejected before anything is forwarded or forwarded with exactly the path that was
//! authorised (Architecture Invariant 3), and nothing denied ever forwarded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use remit_store::SqliteStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

pub(crate) async fn recording_upstream() -> (String, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let l = l.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default()
                .to_vec();
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let target = parts
                .uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned());
            l.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                target,
                headers,
                body,
            });
            "recorded"
        }
    });
    let url = serve_upstream(app).await;
    (url, log)
}

/// Serves `app` on loopback as an upstream; returns its URL.
pub(crate) async fn serve_upstream(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The test configuration with `extra` settings and one upstream at `url` for every path.
pub(crate) fn proxy_config(url: &str, extra: &str) -> String {
    format!(
        "{}\n{extra}\n[[upstream]]\nname = \"rec\"\nurl = \"{url}\"\nprefix = \"/\"\n",
        CONFIG.replace("KEY_SHA256", &crate::key_sha256("rk_bot"))
    )
}

/// Reads of items carry `log_output`.
pub(crate) const LOG_OUTPUT_POLICY: &str = "@obligation(\"log_output\")\npermit (principal == Identity::\"bot\", action == Action::\"items.read\", resource);\n";

const CONFIG: &str = r#"
[gateway]
max_body_bytes = 4096

[[route]]
method = "GET"
path = "/items/{id}"
action = "items.read"
resource = "Item::{id}"
sensitive = false

[[route]]
method = "POST"
path = "/items/{id}"
action = "items.write"
resource = "Item::{id}"
sensitive = true

[[route]]
method = "GET"
path = "/secret/{id}"
action = "secret.read"
resource = "Secret::{id}"
sensitive = true

[[identity]]
id = "bot"
kind = "integration"
owner = "team"
purposes = ["sync"]
boundary = ["items.read", "items.write"]

[[identity.credential]]
type = "api_key"
id = "bot-key"
sha256 = "KEY_SHA256"
"#;

const POLICY: &str = r#"
permit (principal == Identity::"bot", action in [Action::"items.read", Action::"items.write"], resource);
"#;

struct Proxy {
    addr: SocketAddr,
    log: Log,
    store: SqliteStore,
    _proxy: crate::TestProxy,
}

async fn start(upstream_url: &str, log: Log) -> Proxy {
    let proxy = crate::start_proxy(&proxy_config(upstream_url, ""), POLICY).await;
    Proxy {
        addr: proxy.addr,
        log,
        store: proxy.store.clone(),
        _proxy: proxy,
    }
}

/// Sends raw bytes and returns the response's status code (0 if the connection closed
/// without a status line) and the raw response.
pub(crate) async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

const AUTH: &str = "Authorization: Bearer rk_bot\r\n";

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: gw\r\n{AUTH}{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// What must happen to one request.
#[derive(Debug)]
enum Want {
    /// Refused as bad input (this status), nothing forwarded.
    Rejected(u16),
    /// Decided and refused (403), nothing forwarded.
    Denied,
    /// Forwarded once, with exactly this target.
    Forwarded(&'static str),
}

fn cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    use Want::*;
    let mut c: Vec<(&'static str, Vec<u8>, Want)> = vec![
        ("plain", get("/items/1", ""), Forwarded("/items/1")),
        ("dot segment", get("/items/./1", ""), Forwarded("/items/1")),
        ("dot-dot inside", get("/items/../items/1", ""), Forwarded("/items/1")),
        ("dot-dot from another tree", get("/secret/../items/1", ""), Forwarded("/items/1")),
        ("repeated slashes", get("//items//1", ""), Forwarded("/items/1")),
        ("encoded digit", get("/items/%31", ""), Forwarded("/items/1")),
        ("encoded space", get("/items/a%20b", ""), Forwarded("/items/a%20b")),
        ("lower-case escape normalised", get("/items/%c3%a9", ""), Forwarded("/items/%C3%A9")),
        ("encoded percent kept encoded", get("/items/%2561", ""), Forwarded("/items/%2561")),
        ("plus and colon raw", get("/items/a+b:c@d", ""), Forwarded("/items/a+b:c@d")),
        ("query kept", get("/items/1?x=1&y=%20", ""), Forwarded("/items/1?x=1&y=%20")),
        ("absolute-form target", get("http://evil.example/items/1", ""), Forwarded("/items/1")),
        ("trailing slash is another route", get("/items/1/", ""), Denied),
        ("dot-dot to a parent route", get("/items/1/..", ""), Denied),
        ("outside the boundary", get("/secret/1", ""), Denied),
        ("dot-dot into the secret", get("/items/../secret/1", ""), Denied),
        ("encoded dot-dot", get("/items/%2e%2e/secret/1", ""), Rejected(400)),
        ("encoded dot", get("/items/%2E", ""), Rejected(400)),
        ("mixed encoded dot-dot", get("/items/.%2e/secret/1", ""), Rejected(400)),
        ("encoded slash", get("/items/1%2f2", ""), Rejected(400)),
        ("encoded upper slash", get("/items/1%2F..%2Fsecret", ""), Rejected(400)),
        ("encoded backslash", get("/items/1%5c2", ""), Rejected(400)),
        ("raw backslash", get("/items\\1", ""), Rejected(400)),
        ("encoded NUL", get("/items/1%00", ""), Rejected(400)),
        ("encoded newline", get("/items/1%0a", ""), Rejected(400)),
        ("encoded DEL", get("/items/1%7f", ""), Rejected(400)),
        ("bad escape", get("/items/%zz", ""), Rejected(400)),
        ("truncated escape", get("/items/%4", ""), Rejected(400)),
        ("invalid UTF-8", get("/items/%e9", ""), Rejected(400)),
        ("overlong UTF-8 slash", get("/items/%c0%af", ""), Rejected(400)),
        ("semicolon parameter", get("/items/1;x=y", ""), Rejected(400)),
        ("semicolon dot-dot", get("/items/..;/secret/1", ""), Rejected(400)),
        ("climb above the root", get("/../items/1", ""), Rejected(400)),
        ("asterisk form", b"OPTIONS * HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".to_vec(), Rejected(400)),
        ("over-long path", get(&format!("/items/{}", "a".repeat(9000)), ""), Rejected(400)),
        ("lower-case method is not GET", b"get /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nConnection: close\r\n\r\n".to_vec(), Denied),
        ("unknown method", b"PROPFIND /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nConnection: close\r\n\r\n".to_vec(), Denied),
        ("no credential on a sensitive route", b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), Denied),
        ("unknown key", b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_nobody\r\nRemit-Purpose: sync\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), Denied),
        ("write without purpose", b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), Denied),
        ("write for a foreign purpose", b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: billing\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), Denied),
        ("write with purpose", b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: sync\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_vec(), Forwarded("/items/1")),
        ("repeated Authorization", get("/items/1", "Authorization: Bearer rk_bot\r\n"), Rejected(400)),
        ("Authorization in another case", get("/items/1", "authorization: Bearer rk_other\r\n"), Rejected(400)),
        ("repeated Host", get("/items/1", "Host: other\r\n"), Rejected(400)),
        ("repeated Remit-Purpose", get("/items/1", "Remit-Purpose: sync\r\nremit-purpose: sync\r\n"), Rejected(400)),
        ("Basic credentials", b"GET /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic Ym90OmJvdA==\r\nConnection: close\r\n\r\n".to_vec(), Rejected(400)),
        ("quote in bearer", b"GET /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer a\"b\r\nConnection: close\r\n\r\n".to_vec(), Rejected(400)),
        ("malformed purpose", get("/items/1", "Remit-Purpose: Sync Now\r\n"), Rejected(400)),
        ("non-UTF-8 purpose", b"GET /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: s\xffnc\r\nConnection: close\r\n\r\n".to_vec(), Rejected(400)),
        ("obsolete line folding", get("/items/1", "X-Folded: a\r\n b\r\n"), Rejected(400)),
        ("space before colon", get("/items/1", "X-Spaced : a\r\n"), Rejected(400)),
        ("NUL in a header", get("/items/1", "X-Nul: a\0b\r\n"), Rejected(400)),
        ("two Content-Lengths", b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: sync\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!".to_vec(), Rejected(400)),
        // hyper folds identical Content-Length values into one before remit sees the
        // request (RFC 9112 §6.3 allows it); the body is framed by that one value and
        // remit re-frames what it forwards, so there is nothing left to disagree about.
        ("same Content-Length twice", b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: sync\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_vec(), Forwarded("/items/1")),
        ("body over the limit", format!("POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: sync\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n{}", "x".repeat(5000)).into_bytes(), Rejected(413)),
        ("Remit-Identity spoof", get("/items/1", "Remit-Identity: admin\r\n"), Forwarded("/items/1")),
        ("Remit-On-Behalf-Of spoof", get("/items/1", "Remit-On-Behalf-Of: ceo\r\n"), Forwarded("/items/1")),
        ("Remit-Decision-Id spoof", get("/items/1", "Remit-Decision-Id: forged\r\n"), Forwarded("/items/1")),
        ("header named in Connection", b"GET /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nX-Secret: 1\r\nConnection: close, X-Secret\r\n\r\n".to_vec(), Forwarded("/items/1")),
        ("hop-by-hop headers", get("/items/1", "Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\n"), Forwarded("/items/1")),
    ];
    // Request smuggling shapes: the smuggled request must never reach the upstream as part
    // of another. hyper applies RFC 9112 §6.3 before remit sees the request (chunked wins,
    // Content-Length is dropped), so remit cannot refuse the conflict itself; what it
    // guarantees is that the hidden request is either never parsed (Connection: close) or
    // decided on its own, and that every forwarded request is re-framed by remit.
    c.push((
        "Content-Length with chunked",
        b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: sync\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /secret/1 HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
        Forwarded("/items/1"),
    ));
    c.push((
        "smuggled request on a kept-alive connection",
        b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: sync\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /secret/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nConnection: close\r\n\r\n".to_vec(),
        Forwarded("/items/1"),
    ));
    c.push((
        "chunked then identity",
        b"POST /items/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: sync\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n0\r\n\r\n".to_vec(),
        Rejected(400),
    ));
    c
}

/// Headers the upstream must never see, whatever the client sent.
const NEVER_UPSTREAM: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-connection",
    "x-secret",
    "remit-on-behalf-of",
];

#[tokio::test]
async fn hostile_requests_are_rejected_or_forwarded_exactly_as_authorised() {
    let (url, log) = recording_upstream().await;
    let p = start(&url, log).await;
    let cases = cases();
    assert!(cases.len() >= 60, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, request, want) in &cases {
        let before = p.log.lock().unwrap().len();
        let (status, response) = raw(p.addr, request).await;
        let seen: Vec<Seen> = p.log.lock().unwrap()[before..].to_vec();
        let ok = match want {
            Want::Rejected(code) => status == *code && seen.is_empty(),
            Want::Denied => status == 403 && seen.is_empty(),
            Want::Forwarded(target) => {
                let decision_id = seen
                    .first()
                    .and_then(|s| s.header("remit-decision-id"))
                    .unwrap_or_default()
                    .to_owned();
                let recorded = p
                    .store
                    .record(&decision_id)
                    .await
                    .unwrap()
                    .unwrap_or_default();
                status == 200
                    && seen.len() == 1
                    && seen[0].target == *target
                    && recorded.contains(&format!(
                        "\"path\":\"{}\"",
                        target.split('?').next().unwrap_or_default()
                    ))
                    && seen[0].header("remit-identity") == Some("bot")
                    && NEVER_UPSTREAM.iter().all(|h| seen[0].header(h).is_none())
                    && seen[0]
                        .header("host")
                        .is_some_and(|h| h.starts_with("127.0.0.1:"))
            }
        };
        let smuggled = seen.iter().any(|s| s.target.starts_with("/secret"));
        if !ok || smuggled {
            let head = response.lines().next().unwrap_or_default().to_owned();
            failures.push(format!(
                "{name}: want {want:?}, got status {status} ({head}), upstream saw {seen:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The one write that was allowed arrived with its body intact.
    let log = p.log.lock().unwrap();
    let write = log
        .iter()
        .find(|s| s.method == "POST")
        .expect("the allowed write was forwarded");
    assert_eq!(write.body, b"hello");
}

#[tokio::test]
async fn an_unavailable_store_forwards_nothing() {
    let (url, log) = recording_upstream().await;
    let p = start(&url, log).await;
    p.store.close().await;
    let (status, body) = raw(p.addr, &get("/items/1", "")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("could not be written"), "{body}");
    assert!(p.log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_bad_gateway_after_the_record() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let p = start(&dead, Arc::default()).await;
    let (status, body) = raw(p.addr, &get("/items/1", "")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("decision_id"), "{body}");
}

/// SSE passes through as it is produced: the client reads the first event while the
/// upstream still holds the second.
#[tokio::test]
async fn server_sent_events_stream_through_unbuffered() {
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release = Arc::new(Mutex::new(Some(release_rx)));
    let app = axum::Router::new().fallback(move || {
        let release = release.clone();
        async move {
            let rx = release.lock().unwrap().take();
            let stream = futures_util::stream::unfold((0, rx), |(n, rx)| async move {
                match n {
                    0 => Some((
                        Ok::<_, std::io::Error>(axum::body::Bytes::from("data: one\n\n")),
                        (1, rx),
                    )),
                    1 => {
                        if let Some(rx) = rx {
                            let _ = rx.await;
                        }
                        Some((Ok(axum::body::Bytes::from("data: two\n\n")), (2, None)))
                    }
                    _ => None,
                }
            });
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from_stream(stream))
                .unwrap()
        }
    });
    let url = serve_upstream(app).await;
    let p = start(&url, Arc::default()).await;
    let mut resp = reqwest::Client::new()
        .get(format!("http://{}/items/stream", p.addr))
        .header("authorization", "Bearer rk_bot")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("the first event arrives before the second is sent");
    assert_eq!(first.unwrap().unwrap(), "data: one\n\n");
    release_tx.send(()).unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second, "data: two\n\n");
}

/// Clients may speak HTTP/2 (prior knowledge, as service meshes do on loopback).
#[tokio::test]
async fn http2_clients_are_served() {
    let (url, log) = recording_upstream().await;
    let p = start(&url, log).await;
    let tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/items/7", p.addr))
        .header("authorization", "Bearer rk_bot")
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(p.log.lock().unwrap().last().unwrap().target, "/items/7");
}

/// The ids of the decisions recorded so far, oldest first.
pub(crate) async fn decision_ids(store: &SqliteStore) -> Vec<String> {
    let found = store
        .reader()
        .search(&remit_store::audit::Search {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    found
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.entry).unwrap();
            v["record"]["decision_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Waits (bounded) for the outcome record of `id`, written after the response ends.
pub(crate) async fn outcome_of(store: &SqliteStore, id: &str) -> serde_json::Value {
    for _ in 0..100 {
        if let Some(json) = store.outcome(id).await.unwrap() {
            return serde_json::from_str(&json).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no outcome record for {id}");
}

#[tokio::test]
async fn a_forwarded_response_gets_an_outcome_record_and_log_output_keeps_a_bounded_copy() {
    let (url, log) = recording_upstream().await;
    let text = proxy_config(&url, "[audit]\nreview_limit_bytes = 5");
    let policy = r#"
@obligation("log_output")
permit (principal == Identity::"bot", action == Action::"items.read", resource);
permit (principal == Identity::"bot", action == Action::"items.write", resource);
"#;
    let proxy = crate::start_proxy(&text, policy).await;
    let (status, body) = raw(proxy.addr, &get("/items/1", "")).await;
    assert_eq!(status, 200, "{body}");
    let id = log.lock().unwrap()[0]
        .header("remit-decision-id")
        .unwrap()
        .to_owned();
    let o = outcome_of(&proxy.store, &id).await;
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"recorded"));
    assert_eq!(o["status"], 200);
    assert_eq!(o["response_sha256"], digest.as_str());
    assert_eq!(
        (o["response_bytes"].as_u64(), o["complete"].as_bool()),
        (Some(8), Some(true))
    );
    assert_eq!(o["review"]["stored_bytes"], 5);
    assert_eq!(o["review"]["truncated"], true);
    let (kept, total, truncated) = proxy
        .store
        .reader()
        .review_body(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (kept.as_slice(), total, truncated),
        (&b"recor"[..], 8, true)
    );

    // Without log_output: an outcome, no copy.
    let (status, _) = raw(proxy.addr, b"POST /items/2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer rk_bot\r\nRemit-Purpose: sync\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").await;
    assert_eq!(status, 200);
    let id = log.lock().unwrap()[1]
        .header("remit-decision-id")
        .unwrap()
        .to_owned();
    let o = outcome_of(&proxy.store, &id).await;
    assert!(o.get("review").is_none(), "{o}");
    assert!(
        proxy
            .store
            .reader()
            .review_body(&id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_unreachable_upstream_is_recorded_as_the_outcome() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let p = start(&dead, Arc::default()).await;
    let (status, body) = raw(p.addr, &get("/items/1", "")).await;
    assert_eq!(status, 502, "{body}");
    let v: serde_json::Value =
        serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let o = outcome_of(&p.store, v["decision_id"].as_str().unwrap()).await;
    assert_eq!(o["status"], 502);
    assert!(
        o["error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{o}"
    );
}

/// A review copy never stores a secret: it is redacted, or withheld when it cannot be.
#[tokio::test]
async fn review_copies_are_redacted_or_withheld_never_stored_with_a_secret() {
    const TOKEN: &str = "ghp_R3m1tT3stT0k3nN0tR34lXyZ9aBcDeFgHiJk";
    let app = axum::Router::new()
        .route(
            "/items/plain",
            axum::routing::get(|| async { format!("{{\"note\":\"token {TOKEN} leaked\"}}") }),
        )
        .route(
            "/items/gzip",
            axum::routing::get(|| async {
                (
                    [("content-encoding", "gzip")],
                    vec![0x1fu8, 0x8b, 8, 0, 0, 0, 0, 0],
                )
            }),
        );
    let url = serve_upstream(app).await;
    // Responses pass unredacted (`alert`), so only the review copy's own redaction is at work.
    let text = proxy_config(&url, "[scan]\nresponse = \"alert\"");
    let proxy = crate::start_proxy(&text, LOG_OUTPUT_POLICY).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        http.get(format!("http://{}{path}", proxy.addr))
            .header("authorization", "Bearer rk_bot")
            .send()
    };
    let resp = get("/items/plain").await.unwrap();
    assert_eq!(resp.status(), 200);
    // The client gets the response as the upstream sent it; only the stored copy is redacted.
    assert!(resp.text().await.unwrap().contains(TOKEN));
    let resp = get("/items/gzip").await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let ids = decision_ids(&proxy.store).await;
    assert_eq!(ids.len(), 2);
    let plain = outcome_of(&proxy.store, &ids[0]).await;
    assert_eq!(plain["review"]["redacted"], 1, "{plain}");
    let (kept, _, _) = proxy
        .store
        .reader()
        .review_body(&ids[0])
        .await
        .unwrap()
        .unwrap();
    let kept = String::from_utf8(kept).unwrap();
    assert!(
        kept.contains("[REDACTED:") && !kept.contains(TOKEN),
        "{kept}"
    );
    let gz = outcome_of(&proxy.store, &ids[1]).await;
    assert!(
        gz["review"]["withheld"].as_str().unwrap().contains("gzip"),
        "{gz}"
    );
    let (kept, _, _) = proxy
        .store
        .reader()
        .review_body(&ids[1])
        .await
        .unwrap()
        .unwrap();
    assert!(kept.is_empty());
}

/// Over its rate, an identity gets 429 with `Retry-After`, and the upstream sees nothing.
#[tokio::test]
async fn over_its_rate_an_identity_gets_429_with_retry_after_and_nothing_is_forwarded() {
    let (url, log) = recording_upstream().await;
    let text = proxy_config(&url, "").replace(
        "boundary = [\"items.read\", \"items.write\"]",
        "boundary = [\"items.read\", \"items.write\"]\nlimits = { rate = \"2/min\" }",
    );
    let proxy = crate::start_proxy(&text, POLICY).await;
    for _ in 0..2 {
        assert_eq!(raw(proxy.addr, &get("/items/1", "")).await.0, 200);
    }
    let (status, resp) = raw(proxy.addr, &get("/items/1", "")).await;
    assert_eq!(status, 429, "{resp}");
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("retry-after: "), "{resp}");
    assert!(
        lower.contains("ratelimit-policy: \"identity\";q=2;w=60\r\n")
            && lower.contains("ratelimit: \"identity\";r=0;t="),
        "RateLimit header fields name the cap: {resp}"
    );
    assert!(
        resp.contains("\"decision\":\"rate_limited\"")
            && resp.contains("rate of 2 requests per 60 s"),
        "{resp}"
    );
    assert_eq!(
        log.lock().unwrap().len(),
        2,
        "the third request never reached the upstream"
    );
}

/// A secret that straddles the review limit is redacted whole, not cut in half and kept.
#[tokio::test]
async fn a_secret_across_the_review_limit_is_not_stored_in_part() {
    const TOKEN: &str = "ghp_R3m1tT3stT0k3nN0tR34lXyZ9aBcDeFgHiJk";
    let app = axum::Router::new().route(
        "/items/1",
        axum::routing::get(|| async { format!("0123456789 token {TOKEN} trailing") }),
    );
    let url = serve_upstream(app).await;
    // The limit falls in the middle of the token.
    let text = proxy_config(
        &url,
        "[audit]\nreview_limit_bytes = 40\n[scan]\nresponse = \"alert\"",
    );
    let proxy = crate::start_proxy(&text, LOG_OUTPUT_POLICY).await;
    let (status, _) = raw(proxy.addr, &get("/items/1", "")).await;
    assert_eq!(status, 200);
    let ids = decision_ids(&proxy.store).await;
    let id = ids[0].as_str();
    let o = outcome_of(&proxy.store, id).await;
    assert_eq!(
        (
            o["review"]["redacted"].as_u64(),
            o["review"]["truncated"].as_bool()
        ),
        (Some(1), Some(true)),
        "{o}"
    );
    let (kept, _, _) = proxy.store.reader().review_body(id).await.unwrap().unwrap();
    let kept = String::from_utf8_lossy(&kept).into_owned();
    assert_eq!(kept.len(), 40, "{kept}");
    assert!(
        !kept.contains(&TOKEN[..12]),
        "no part of the secret is kept: {kept}"
    );
}
