//! The reverse proxy: every request passes the pipeline, and only an allowed one reaches an
//! upstream, after its decision record is durable.
//!
//! The request body is buffered (up to `gateway.max_body_bytes`) because the decision reads
//! it (MCP messages) and the record commits to its digest before anything is forwarded.
//! Responses stream back unbuffered, so SSE passes through as it is produced.
//!
//! What is forwarded is rebuilt, not copied: the canonical path that was authorised, the
//! client's headers minus hop-by-hop headers, `Host`, `Authorization` and every `Remit-*`
//! header, plus remit's attribution headers and the upstream's own credential.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use remit_core::config::{Upstream, UpstreamKind};
use remit_core::mcp::McpMessage;
use remit_core::{Class, Decision, RecordSink, RequestFacts, Verdict};
use remit_engine::Engine;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

use crate::outcome::Outcome;
use crate::{DECIDE_TIMEOUT, MAX_CONCURRENT, Problem, approvals, inspect, mcp, records};

/// Headers that describe one connection, never the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// An upstream credential's environment variable is unset or unusable.
    #[error("upstream `{upstream}`: environment variable `{env}` {why}")]
    Credential {
        /// The upstream.
        upstream: String,
        /// The variable.
        env: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// What the proxy's handler shares: one `Arc`, so the clone each request's handler takes
/// is one reference count, not one per field.
#[derive(Clone)]
pub struct ProxyState(Arc<ProxyShared>);

impl std::ops::Deref for ProxyState {
    type Target = ProxyShared;
    fn deref(&self) -> &ProxyShared {
        &self.0
    }
}

/// The fields of [`ProxyState`].
#[derive(Clone)]
pub struct ProxyShared {
    engine: Arc<Engine>,
    sink: Arc<dyn RecordSink>,
    client: Client<HttpConnector, Full<Bytes>>,
    credentials: Arc<HashMap<String, (HeaderName, HeaderValue)>>,
    sessions: Arc<mcp::Sessions>,
    watch: Option<Arc<crate::watch::Watch>>,
    /// Per class with an `in_flight` budget: the room its requests share at the upstreams.
    class_room: Arc<Vec<(Class, Arc<Semaphore>, u32)>>,
}

impl std::fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyState").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ProxyShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyShared").finish_non_exhaustive()
    }
}

impl ProxyState {
    /// Where the proxy's records go (the token endpoint beside it records there too).
    pub fn sink(&self) -> Arc<dyn RecordSink> {
        self.sink.clone()
    }

    /// Builds the proxy's state, reading upstream credentials from the environment.
    pub fn new(engine: Arc<Engine>, sink: Arc<dyn RecordSink>) -> Result<Self, ProxyError> {
        let mut credentials = HashMap::new();
        for u in engine.config().upstreams.iter() {
            let Some(c) = &u.credential else { continue };
            let err = |why| ProxyError::Credential {
                upstream: u.name.clone(),
                env: c.env.clone(),
                why,
            };
            let value = std::env::var(&c.env).map_err(|_| err("is not set"))?;
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| err("is not a valid header value"))?;
            value.set_sensitive(true);
            let name = HeaderName::from_bytes(c.header.as_bytes())
                .map_err(|_| err("names an invalid header"))?;
            credentials.insert(u.name.clone(), (name, value));
        }
        let client = upstream_client();
        let class_room = engine
            .config()
            .budgets
            .iter()
            .filter_map(|(c, b)| {
                let n = b.in_flight?;
                Some((c, Arc::new(Semaphore::new(n as usize)), n))
            })
            .collect();
        Ok(Self(Arc::new(ProxyShared {
            engine,
            sink,
            client,
            credentials: Arc::new(credentials),
            sessions: Arc::default(),
            watch: None,
            class_room: Arc::new(class_room),
        })))
    }

    /// Decides with the behaviour watch: risk scores, learning and alerts.
    #[must_use]
    pub fn with_watch(mut self, watch: Arc<crate::watch::Watch>) -> Self {
        Arc::make_mut(&mut self.0).watch = Some(watch);
        self
    }
}

/// The pooled HTTP client the proxy reaches upstreams with (keep-alive, `TCP_NODELAY`);
/// `examples/bare_proxy.rs` measures the same client with nothing of remit around it.
pub fn upstream_client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector)
}

/// The proxy listener's service: one fallback handler behind load shedding.
pub fn proxy_router(state: ProxyState) -> Router {
    Router::new().fallback(proxy).with_state(state).layer(
        ServiceBuilder::new()
            // Shed load beyond a fixed number of requests in flight (a limit, answered 503).
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: tower::BoxError| async {
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "remit is overloaded; the request was not forwarded",
                    )
                },
            ))
            .load_shed()
            .concurrency_limit(MAX_CONCURRENT),
    )
}

/// Serves the proxy until `shutdown` resolves.
pub async fn serve_proxy(
    listener: tokio::net::TcpListener,
    state: ProxyState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = proxy_router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(crate::nodelay(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Header names listed in `Connection`, which are hop-by-hop for this message.
fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Decides a request once: the engine's decision, this door's MCP ceilings (origin,
/// routing headers, the session's owner) and the durable record. A refusal this door
/// answers itself comes back as `Err`; a session refusal is the status to answer with.
async fn decide(
    st: &ProxyState,
    headers: &HeaderMap,
    facts: &RequestFacts,
    is_mcp: bool,
    session: Option<&str>,
) -> Result<(remit_engine::Finished, Option<StatusCode>), Response> {
    let id = uuid::Uuid::now_v7().to_string();
    let (mut pending, watching) =
        match crate::watch::begin(&st.engine, st.watch.as_ref(), facts, id.clone()) {
            Ok(p) => p,
            Err(bad) => {
                return Err(Problem::new(StatusCode::BAD_REQUEST, bad.to_string()).into_response());
            }
        };
    if is_mcp {
        // DNS rebinding: a browser page from another origin must not reach an MCP server.
        if let Some(origin) = headers.get(header::ORIGIN) {
            let allowed = &st.engine.config().gateway.allowed_origins;
            if !origin
                .to_str()
                .is_ok_and(|o| mcp::origin_allowed(o, allowed))
            {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "this `Origin` may not call MCP endpoints",
                )
                .into_response());
            }
        }
        if let Err(e) = mcp::check_routing_headers(headers, pending.mcp()) {
            return Err(Problem::new(StatusCode::BAD_REQUEST, e).into_response());
        }
    }
    // An MCP session belongs to the identity that opened it: a ceiling of this front door,
    // applied before the record so the record shows it.
    let owner = mcp::session_owner(pending.decision());
    let mut session_refused = None;
    if is_mcp
        && pending.decision().verdict == Verdict::Allow
        && let Some(s) = session
        && let Err(why) = st.sessions.check(s, &owner)
    {
        let (status, reason) = match why {
            mcp::SessionRefusal::Unknown => (
                StatusCode::NOT_FOUND,
                "remit does not know this MCP session: initialize a new one",
            ),
            mcp::SessionRefusal::Foreign => (
                StatusCode::FORBIDDEN,
                "this MCP session belongs to another identity",
            ),
        };
        pending.decision().refuse(mcp::SESSION_POLICY, reason);
        session_refused = Some(status);
    }
    // Boxed: the recording future is the largest part of a request's state, and the
    // handler's future (which the router boxes, by copying it) stays small without it.
    let work = Box::pin(crate::watch::finish(
        &st.engine,
        pending,
        watching,
        facts,
        st.sink.as_ref(),
        false,
    ));
    match tokio::time::timeout(DECIDE_TIMEOUT, work).await {
        Ok(finished) => Ok((finished, session_refused)),
        Err(_) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the decision timed out; the request was not forwarded",
        )
        .with("decision_id", json!(id))
        .into_response()),
    }
}

/// Whether a header is hop-by-hop by its name alone (`HOP_BY_HOP`).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named = connection_named(headers);
    // A pass over the names per header to strip (often none, or `Connection`), rather
    // than a lookup by name for every hop-by-hop header there could be. Each pass removes
    // every value of one name, so the loop ends.
    while let Some(name) = headers
        .keys()
        .find(|k| is_hop_by_hop(k) || named.iter().any(|n| n == k.as_str()))
        .cloned()
    {
        headers.remove(name);
    }
}

/// Whether a client header stays out of the upstream request: hop-by-hop (by name or
/// named in `Connection`), `Host`, `Content-Length` (remit re-frames the body),
/// `Authorization` (the client's credential) and every `Remit-*` header.
fn withheld_upstream(name: &HeaderName, connection_named: &[String]) -> bool {
    let s = name.as_str();
    is_hop_by_hop(name)
        || name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::AUTHORIZATION
        || s.starts_with("remit-")
        || connection_named.iter().any(|n| n == s)
}

/// The client's headers as they go upstream: the redacted values in place of the
/// originals (a value that cannot be a header any more is dropped, never sent as it was),
/// minus every header [`withheld_upstream`] names. Built in one pass, not cloned and then
/// pruned.
fn upstream_headers(client: &HeaderMap, redacted: &[(String, Vec<u8>)]) -> HeaderMap {
    if !redacted.is_empty() {
        let mut headers = client.clone();
        for (name, value) in redacted {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            match HeaderValue::from_bytes(value) {
                Ok(v) => headers.insert(name, v),
                Err(_) => headers.remove(name),
            };
        }
        return upstream_headers(&headers, &[]);
    }
    let named = connection_named(client);
    // Room for remit's attribution headers and the upstream's credential.
    let mut headers = HeaderMap::with_capacity(client.len() + 6);
    for (name, value) in client {
        if !withheld_upstream(name, &named) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

async fn proxy(
    State(st): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    // Protected-resource metadata (RFC 9728) is public and decided by no one.
    if parts.method == http::Method::GET
        && let Some(rest) = parts.uri.path().strip_prefix(mcp::METADATA_PREFIX)
        && let Some(resp) = mcp::metadata(&st.engine, rest)
    {
        return resp;
    }
    let limit = st.engine.config().gateway.max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
        .into_response();
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()));
    let body_vec = (!body.is_empty()).then(|| body.to_vec());
    let facts = match RequestFacts::parse(parts.method.as_str(), target, headers, body_vec, None) {
        Ok(f) => f,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let upstream = st.engine.config().upstreams.select(facts.path.decoded());
    let is_mcp = upstream.is_some_and(|u| u.kind == UpstreamKind::Mcp);
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut facts = facts;
    // The peer's address as it is, not written out and read back.
    facts.source_ip = Some(peer.ip().to_canonical());
    // The SPIFFE ID of the client's X.509-SVID, when the TLS listener verified one.
    facts.peer_spiffe_id = crate::tls::peer_spiffe_id(&parts.extensions);
    let (mut finished, mut session_refused) =
        match decide(&st, &parts.headers, &facts, is_mcp, session.as_deref()).await {
            Ok(d) => d,
            Err(resp) => return resp,
        };
    // `Prefer: wait=N`: hold a request that needs an approval until a person answers it,
    // then decide it again as if it had come with `Remit-Approval`.
    let mut waited = None;
    if finished.decision.verdict == Verdict::ApprovalRequired
        && let Some(store) = st.sink.approvals()
        && let Some(wait) =
            approvals::prefer_wait(&parts.headers, st.engine.config().approvals.max_wait_s)
        && let Some(aid) = finished
            .decision
            .approval
            .as_ref()
            .and_then(|a| a.id.as_deref())
            .and_then(|a| remit_core::approval::ApprovalId::parse(a).ok())
    {
        waited = Some(wait.as_secs());
        if let Some(a) = Box::pin(approvals::await_answer(store, &aid, wait)).await
            && a.state == remit_core::approval::ApprovalState::Granted
        {
            facts.approval = Some(aid.to_string());
            (finished, session_refused) = match Box::pin(decide(
                &st,
                &parts.headers,
                &facts,
                is_mcp,
                session.as_deref(),
            ))
            .await
            {
                Ok(d) => d,
                Err(resp) => return resp,
            };
        }
    }
    let remit_engine::Finished {
        decision,
        mcp: msg,
        rewrite,
        ..
    } = finished;
    let owner = mcp::session_owner(&decision);
    if let Some(status) = session_refused {
        return Problem::new(status, decision.reasons.join("; "))
            .with("decision_id", json!(decision.decision_id))
            .with("decision", json!(decision.verdict))
            .into_response();
    }
    if decision.verdict != Verdict::Allow {
        let mut refusal = refusal_for(
            &st.engine,
            &decision,
            msg.as_ref(),
            is_mcp,
            facts.path.decoded(),
        );
        if let Some(s) = waited
            && let Ok(v) = HeaderValue::from_str(&format!("wait={s}"))
        {
            refusal.headers.insert("preference-applied", v);
        }
        return refusal.into_response();
    }
    let Some(upstream) = upstream else {
        return Problem::new(StatusCode::BAD_GATEWAY, "no upstream serves this path")
            .with("decision_id", json!(decision.decision_id))
            .into_response();
    };
    let mut outcome = Outcome::new(st.sink.clone(), st.engine.clone(), &decision, started);
    // The class's room at the upstreams: wait for a slot, held until the response ends.
    if let Some((_, room, n)) = st.class_room.iter().find(|(c, ..)| *c == decision.class) {
        let timeout = Duration::from_secs(st.engine.config().gateway.upstream_timeout_s);
        match tokio::time::timeout(timeout, room.clone().acquire_owned()).await {
            Ok(Ok(slot)) => outcome.hold(slot),
            _ => {
                let why = format!(
                    "class `{}` already has {n} requests at the upstreams (its `in_flight` budget), and none finished within {} s",
                    decision.class,
                    timeout.as_secs()
                );
                outcome.failed(StatusCode::SERVICE_UNAVAILABLE.as_u16(), why.clone());
                let mut resp = Problem::new(StatusCode::SERVICE_UNAVAILABLE, why)
                    .with("decision_id", json!(decision.decision_id))
                    .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return resp;
            }
        }
    }
    // Under `redact`, what is forwarded is the request with its secrets replaced.
    let rewrite = rewrite.unwrap_or_default();
    let body = rewrite.body.map_or(body, Bytes::from);
    let resp = forward(
        &st,
        upstream,
        (&parts.headers, &rewrite.headers),
        &facts,
        body,
        &decision,
        outcome,
    )
    .await;
    if !is_mcp {
        return resp;
    }
    let method = msg.as_ref().and_then(|m| m.method.as_deref());
    if let Some(created) = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        && session.is_none()
        && method == Some("initialize")
    {
        st.sessions.bind(created, owner);
    }
    if parts.method == http::Method::DELETE
        && let Some(s) = &session
    {
        st.sessions.end(s);
    }
    if method == Some("tools/list") && resp.status().is_success() {
        return Box::pin(mcp::filter_tools_list(&st.engine, &facts, resp)).await;
    }
    resp
}

async fn forward(
    st: &ProxyState,
    upstream: &Upstream,
    (client_headers, redacted): (&HeaderMap, &[(String, Vec<u8>)]),
    facts: &RequestFacts,
    body: Bytes,
    decision: &Decision,
    outcome: Outcome,
) -> Response {
    let mut uri = format!("{}{}", upstream.origin, facts.path.encoded());
    if let Some(q) = facts.path.query() {
        uri.push('?');
        uri.push_str(q);
    }
    let mut headers = upstream_headers(client_headers, redacted);
    for (k, v) in attribution(decision) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    // A response limited to record sets must be readable: ask for it uncompressed.
    if !decision.record_sets.is_empty() {
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    if let Some((name, value)) = st.credentials.get(&upstream.name) {
        headers.insert(name.clone(), value.clone());
    }
    // The method that was authorised, byte for byte.
    let Ok(method) = http::Method::from_bytes(facts.method.as_bytes()) else {
        return Problem::new(StatusCode::BAD_REQUEST, "the method cannot be forwarded")
            .into_response();
    };
    let mut req = match http::Request::builder()
        .method(method)
        .uri(&uri)
        .body(Full::new(body))
    {
        Ok(r) => r,
        Err(e) => {
            let why = format!("the upstream request could not be built: {e}");
            outcome.failed(StatusCode::BAD_GATEWAY.as_u16(), why.clone());
            return Problem::new(StatusCode::BAD_GATEWAY, why).into_response();
        }
    };
    *req.headers_mut() = headers;
    let timeout = Duration::from_secs(st.engine.config().gateway.upstream_timeout_s);
    match tokio::time::timeout(timeout, st.client.request(req)).await {
        Ok(Ok(resp)) => {
            let (mut parts, incoming) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let mut outcome = outcome;
            let mut incoming = Body::new(incoming);
            if !decision.record_sets.is_empty() {
                let mcp = upstream.kind == UpstreamKind::Mcp;
                match Box::pin(records::limit(decision, &mut parts, incoming, mcp)).await {
                    records::Limit::Pass(body, notes) => {
                        outcome.limited(notes);
                        incoming = body;
                    }
                    records::Limit::Refuse(resp, notes) => {
                        outcome.limited(notes);
                        outcome.failed(
                            resp.status().as_u16(),
                            "remit refused the upstream's response".into(),
                        );
                        return resp;
                    }
                }
            }
            let (body, stream_scan) = match inspect::mode(&st.engine, decision, &parts) {
                inspect::Mode::Stream(action) => (incoming, Some(action)),
                inspect::Mode::Whole(action) => {
                    match Box::pin(inspect::whole(
                        &st.engine, decision, &mut parts, incoming, action,
                    ))
                    .await
                    {
                        inspect::Inspected::Pass(body, report) => {
                            outcome.scanned(report);
                            (body, None)
                        }
                        inspect::Inspected::Refuse(resp, report) => {
                            outcome.scanned(Some(report));
                            outcome.failed(
                                resp.status().as_u16(),
                                "remit refused the upstream's response".into(),
                            );
                            return resp;
                        }
                    }
                }
            };
            let encoding = parts
                .headers
                .get(header::CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap_or("unreadable"));
            let body = outcome.observe(parts.status.as_u16(), encoding, body, stream_scan);
            Response::from_parts(parts, body)
        }
        Ok(Err(e)) => {
            tracing::warn!(upstream = %upstream.name, error = %e, "upstream request failed");
            let why = format!("upstream `{}` could not be reached", upstream.name);
            outcome.failed(StatusCode::BAD_GATEWAY.as_u16(), why.clone());
            Problem::new(StatusCode::BAD_GATEWAY, why)
                .with("decision_id", json!(decision.decision_id))
                .into_response()
        }
        Err(_) => {
            let why = format!("upstream `{}` did not answer in time", upstream.name);
            outcome.failed(StatusCode::GATEWAY_TIMEOUT.as_u16(), why.clone());
            Problem::new(StatusCode::GATEWAY_TIMEOUT, why)
                .with("decision_id", json!(decision.decision_id))
                .into_response()
        }
    }
}

/// A refusal, rendered once: the status, headers and body every front door sends (the
/// proxy as a response, ext_authz as a `DeniedHttpResponse`).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The status.
    pub status: StatusCode,
    /// Headers: `Content-Type`, and `Retry-After` or `WWW-Authenticate` where they apply.
    pub headers: HeaderMap,
    /// The body: problem+json, or for an MCP request with an id a JSON-RPC answer.
    pub body: String,
}

impl From<Problem> for Refusal {
    fn from(p: Problem) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::problem::PROBLEM_JSON),
        );
        Self {
            status: p.status(),
            headers,
            body: p.to_json(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        resp.headers_mut().extend(self.headers);
        resp
    }
}

/// The answer to a request that was not allowed: problem+json for HTTP, and for an MCP
/// request with an id, a JSON-RPC answer the client shows its model and user.
pub fn refusal(decision: &Decision, mcp: Option<&McpMessage>) -> Response {
    render_refusal(decision, mcp).into_response()
}

/// The refusal of a decision at a door in front of an MCP server or an HTTP API: a missing
/// or refused credential at an MCP endpoint is a 401 with a challenge pointing at the
/// endpoint's protected-resource metadata (MCP authorization, RFC 9728 §5.1); anything else
/// is [`render_refusal`].
pub fn refusal_for(
    engine: &Engine,
    decision: &Decision,
    mcp: Option<&McpMessage>,
    is_mcp: bool,
    decoded_path: &str,
) -> Refusal {
    if is_mcp && decision.class == Class::Unclassified {
        let mut r = render_refusal(decision, None);
        r.status = StatusCode::UNAUTHORIZED;
        let public = &engine.config().gateway.public_url;
        r.headers.insert(
            header::WWW_AUTHENTICATE,
            mcp::challenge(public, decoded_path),
        );
        return r;
    }
    render_refusal(decision, mcp)
}

/// The headers remit sends upstream with an allowed request: `Remit-Decision-Id`, and
/// `Remit-Identity`, `Remit-On-Behalf-Of` and `Remit-Purpose` where the decision has them.
pub fn attribution(decision: &Decision) -> Vec<(&'static str, String)> {
    let mut out = vec![("remit-decision-id", decision.decision_id.clone())];
    if let Some(i) = &decision.identity {
        out.push(("remit-identity", i.to_string()));
    }
    if let Some(h) = &decision.authority.on_behalf_of {
        out.push(("remit-on-behalf-of", h.clone()));
    }
    if let Some(p) = &decision.purpose {
        out.push(("remit-purpose", p.to_string()));
    }
    out
}

/// Renders a refusal: problem+json (403, or 429 with `Retry-After`), or for an MCP request
/// with an id, a JSON-RPC answer (200) the client shows its model and user.
pub fn render_refusal(decision: &Decision, mcp: Option<&McpMessage>) -> Refusal {
    let reasons = decision.reasons.join("; ");
    let sentence = match decision.verdict {
        Verdict::ApprovalRequired => match decision
            .approval
            .as_ref()
            .and_then(|a| a.id.as_deref().zip(a.decide.as_deref()))
        {
            // Said in full so that an MCP client shows its user what to do.
            Some((id, url)) => format!(
                "remit requires an approval for this request: {reasons}. Approval `{id}` is pending: an approver decides it at {url} (or `remit approval grant {id}`); then send the same request again with `Remit-Approval: {id}`"
            ),
            None => format!("remit requires an approval for this request: {reasons}"),
        },
        Verdict::RateLimited => format!("remit rate-limited this request: {reasons}"),
        _ => format!("remit denied this request: {reasons}"),
    };
    let details = json!({
        "decision": decision.verdict,
        "decision_id": decision.decision_id,
        "reasons": decision.reasons,
        "policies": decision.policies,
        "approval": decision.approval,
    });
    if let Some(m) = mcp
        && let Some(id) = &m.id
    {
        let body = if m.method.as_deref() == Some("tools/call") {
            json!({"jsonrpc": "2.0", "id": id, "result": {
                "content": [{"type": "text", "text": format!("{sentence} (decision {})", decision.decision_id)}],
                "isError": true,
                "_meta": {"remit/decision": details},
            }})
        } else {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32003, "message": sentence, "data": details}})
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Refusal {
            status: StatusCode::OK,
            headers,
            body: body.to_string(),
        };
    }
    let status = match decision.verdict {
        Verdict::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::FORBIDDEN,
    };
    let mut problem = Problem::new(status, sentence);
    if let Value::Object(m) = details {
        for (k, v) in m {
            problem = problem.with(&k, v);
        }
    }
    let mut r = Refusal::from(problem);
    if let Some(s) = decision.retry_after_s
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers.insert(header::RETRY_AFTER, v);
    }
    // The cap as RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-10 §5-6):
    // the policy's quota `q` per window `w` seconds, and none remaining `r` until `t`.
    if let (Some(cap), Some(s)) = (&decision.rate_limit, decision.retry_after_s) {
        let name = cap.source.replace(['"', '\\'], "");
        let policy = format!("\"{name}\";q={};w={}", cap.rate.count, cap.rate.per_s);
        let now = format!("\"{name}\";r=0;t={s}");
        for (k, v) in [("ratelimit-policy", policy), ("ratelimit", now)] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers.insert(k, v);
            }
        }
    }
    r
}
