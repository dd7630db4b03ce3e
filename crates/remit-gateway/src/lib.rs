//! The front doors, thin adapters over the same [`remit_engine::Engine`]: the admin listener
//! with the decision API (`POST /v1/decide`) and `GET /healthz`, the reverse proxy
//! ([`proxy`]), Envoy ext_authz over gRPC ([`ext_authz`]) and the HTTP authorization
//! endpoint for Envoy's HTTP ext_authz and nginx `auth_request` ([`authz_http`]), and the
//! token endpoint with remit's key set ([`token`]). The proxy listener serves plain HTTP, or
//! TLS and mutual TLS with X.509-SVIDs ([`tls`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alerts_api;
pub mod approvals;
pub mod authz;
pub mod authz_http;
pub mod ext_authz;
mod inspect;
pub mod jwks;
pub mod mcp;
pub mod metrics;
pub mod outcome;
pub mod problem;
pub mod proxy;
mod records;
pub mod runtime;
pub mod tls;
pub mod token;
pub mod watch;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use remit_core::RecordSink;
use remit_engine::Engine;
use remit_engine::wire::WireRequest;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

pub use problem::Problem;

/// How long one decision may take, recording included, before it is answered as a deny.
pub const DECIDE_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests a listener (admin, proxy, authorization) serves at once; more are refused with 503.
pub const MAX_CONCURRENT: usize = remit_core::config::MAX_IN_FLIGHT_CEILING as usize;

/// What the admin listener's handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The pipeline.
    pub engine: Arc<Engine>,
    /// Where decision records go.
    pub sink: Arc<dyn RecordSink>,
    /// The behaviour watch: risk scores, learning and alerts (`GET /v1/alerts`). Without
    /// one, decisions carry risk 0 and the alert endpoints answer 404.
    pub watch: Option<Arc<watch::Watch>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideQuery {
    #[serde(default)]
    dry_run: bool,
}

/// The admin listener's routes and layers.
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/decide", post(decide))
        .route("/v1/alerts", get(alerts_api::list))
        .route("/v1/alerts/{id}/{verb}", post(alerts_api::change))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::render))
        .merge(approvals::router())
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // Shed load beyond a fixed number of requests in flight (a limit, answered 503).
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async {
                        Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the decision point is overloaded; treat this as a deny",
                        )
                        .with("decision", json!("deny"))
                    },
                ))
                .load_shed()
                .concurrency_limit(MAX_CONCURRENT),
        )
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")),
    }
}

async fn decide(
    State(state): State<AdminState>,
    query: Result<Query<DecideQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Query(query)) = query else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "the only query parameter is `dry_run=true|false`",
        )
        .into_response();
    };
    if !is_json(&headers) {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as `application/json`",
        )
        .into_response();
    }
    let limit = state.engine.config().gateway.max_request_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request is larger than {limit} bytes"),
            )
            .into_response();
        }
    };
    let facts = match WireRequest::from_json(&bytes)
        .and_then(|w| w.into_facts().map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let id = uuid::Uuid::now_v7().to_string();
    let (pending, watching) =
        match watch::begin(&state.engine, state.watch.as_ref(), &facts, id.clone()) {
            Ok(p) => p,
            Err(bad) => {
                return Problem::new(StatusCode::BAD_REQUEST, bad.to_string()).into_response();
            }
        };
    let work = watch::finish(
        &state.engine,
        pending,
        watching,
        &facts,
        state.sink.as_ref(),
        query.dry_run,
    );
    match tokio::time::timeout(DECIDE_TIMEOUT, work).await {
        Ok(finished) => axum::Json(finished.decision).into_response(),
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the decision timed out; treat this as a deny",
        )
        .with("decision", json!("deny"))
        .with("decision_id", json!(id))
        .into_response(),
    }
}

/// A listener whose connections send each write at once (`TCP_NODELAY`). Without it, a
/// small write that follows one not yet acknowledged (the second event of an SSE stream,
/// a response's last chunk) waits for that acknowledgement, which a client may delay by
/// up to 40 ms (Nagle's algorithm meeting delayed ACKs).
pub fn nodelay(
    listener: TcpListener,
) -> axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY was not set on a connection");
        }
    })
}

/// Serves the admin listener until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, admin_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;

    /// Regression: the proxy's connections once kept Nagle's algorithm, so an SSE event
    /// written after an unacknowledged one could wait for the client's delayed ACK.
    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = super::nodelay(listener);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (stream, _) = listener.accept().await;
        assert!(
            stream.nodelay().unwrap(),
            "TCP_NODELAY is set on accepted connections"
        );
        client.await.unwrap().unwrap();
    }
}
