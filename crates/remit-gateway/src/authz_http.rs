//! The HTTP authorization endpoint, on its own listener (`gateway.authz_listen`), for
//! Envoy's HTTP ext_authz and nginx `auth_request`.
//!
//! Two shapes, told apart by the path:
//!
//! - nginx: `<any method> /v1/authz` with `X-Original-Method` and `X-Original-URI` naming
//!   the original request (both required, each at most once);
//! - Envoy (`path_prefix: /v1/authz`): `<original method> /v1/authz<original path>`; the
//!   `X-Original-*` headers must then be absent.
//!
//! Every other header is the original request's. The client's address is the peer's, or
//! `X-Real-IP`, or the right-most `X-Forwarded-For` entry that is not a trusted proxy. Only
//! peers in `gateway.trusted_proxies` are answered (a tower layer refuses everyone else),
//! because only they may state what the original request was.
//!
//! `200` allows, with the attribution headers for the proxy to copy upstream and
//! `x-envoy-auth-headers-to-remove` naming what it must drop. A refusal is never a 2xx:
//! `401`, `403` or `429` (with `Retry-After`), `400`/`413` for malformed requests, `503`
//! when remit cannot decide, each `application/problem+json` with `Remit-Decision-Id`.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;

use crate::authz::{Answer, AuthzState, Described, Door, authorize};
use crate::{MAX_CONCURRENT, Problem};

/// The endpoint's path (nginx) and path prefix (Envoy).
pub const AUTHZ_PATH: &str = "/v1/authz";
/// Most `X-Forwarded-For` entries read.
pub const MAX_FORWARDED_FOR: usize = 32;
/// The Envoy HTTP ext_authz response header naming request headers to remove upstream.
pub const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The endpoint's routes and layers.
pub fn authz_router(st: AuthzState) -> Router {
    Router::new().fallback(authz).with_state(st.clone()).layer(
        ServiceBuilder::new()
            // Shed load beyond a fixed number of requests in flight (503: a deny to both
            // Envoy and nginx).
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: tower::BoxError| async {
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "remit is overloaded; the request is denied",
                    )
                },
            ))
            .load_shed()
            .concurrency_limit(MAX_CONCURRENT)
            // Only configured proxies may describe a request: everyone else gets 403.
            .layer(axum::middleware::from_fn_with_state(st, trusted_peers_only)),
    )
}

/// Serves the endpoint until `shutdown` resolves.
pub async fn serve_authz(
    listener: tokio::net::TcpListener,
    st: AuthzState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = authz_router(st).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(crate::nodelay(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn trusted_peers_only(
    State(st): State<AuthzState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !st.trusts(peer.ip()) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "this peer is not in `gateway.trusted_proxies`; only a trusted proxy may ask for \
             an authorization",
        )
        .into_response();
    }
    next.run(req).await
}

/// A header that may appear at most once, as text.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Problem> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("header `{name}` appears more than once"),
        ));
    }
    first
        .map(|v| {
            v.to_str().map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("header `{name}` is not ASCII"),
                )
            })
        })
        .transpose()
}

/// The original client's address, from a trusted peer: `X-Real-IP`, else the right-most
/// `X-Forwarded-For` entry that is not a trusted proxy, else the peer itself.
pub fn client_ip(st: &AuthzState, headers: &HeaderMap, peer: IpAddr) -> Result<IpAddr, Problem> {
    let parse = |s: &str, name: &str| {
        s.trim().parse::<IpAddr>().map_err(|_| {
            let shown: String = s.chars().take(64).collect();
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("`{shown}` in `{name}` is not an IP address"),
            )
        })
    };
    if let Some(v) = single(headers, "x-real-ip")? {
        return parse(v, "X-Real-IP");
    }
    let mut entries = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let v = v
            .to_str()
            .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "`X-Forwarded-For` is not ASCII"))?;
        for e in v.split(',') {
            if entries.len() >= MAX_FORWARDED_FOR {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("`X-Forwarded-For` has more than {MAX_FORWARDED_FOR} entries"),
                ));
            }
            entries.push(parse(e, "X-Forwarded-For")?);
        }
    }
    let Some(&leftmost) = entries.first() else {
        return Ok(peer);
    };
    Ok(entries
        .iter()
        .rev()
        .find(|ip| !st.trusts(**ip))
        .copied()
        .unwrap_or(leftmost))
}

async fn authz(
    State(st): State<AuthzState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    match described(&st, &parts, peer.ip()) {
        Err(p) => p.into_response(),
        Ok((method, target, source_ip)) => {
            let limit = st.engine.config().gateway.max_body_bytes;
            let Ok(body) = axum::body::to_bytes(Body::new(body), limit).await else {
                return Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than {limit} bytes"),
                )
                .into_response();
            };
            let d = Described {
                method: &method,
                target: &target,
                headers: &parts.headers,
                body: (!body.is_empty()).then(|| body.to_vec()),
                source_ip: Some(source_ip),
                peer_spiffe_id: None,
            };
            answer(authorize(&st, d, Door::Http).await)
        }
    }
}

/// Reads the original method, target and client address from a trusted peer's request.
fn described(
    st: &AuthzState,
    parts: &axum::http::request::Parts,
    peer: IpAddr,
) -> Result<(String, String, IpAddr), Problem> {
    let path = parts.uri.path();
    let original_uri = single(&parts.headers, "x-original-uri")?;
    let original_method = single(&parts.headers, "x-original-method")?;
    let (method, target) = if path == AUTHZ_PATH {
        let uri = original_uri.ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "`/v1/authz` needs `X-Original-URI` and `X-Original-Method` (nginx \
                 `auth_request`), or the original path appended (Envoy `path_prefix`)",
            )
        })?;
        let method = original_method.ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, "`X-Original-Method` is missing")
        })?;
        (method.to_owned(), uri.to_owned())
    } else if let Some(rest) = path.strip_prefix(AUTHZ_PATH)
        && rest.starts_with('/')
    {
        if original_uri.is_some() || original_method.is_some() {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "`X-Original-URI`/`X-Original-Method` with a path after `/v1/authz` names \
                 two requests; send one",
            ));
        }
        let target = match parts.uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        (parts.method.as_str().to_owned(), target)
    } else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "no such endpoint"));
    };
    let source = client_ip(st, &parts.headers, peer.to_canonical())?;
    Ok((method, target, source))
}

fn answer(a: Answer) -> Response {
    match a {
        Answer::Allow { set, remove, .. } => {
            let mut resp = StatusCode::OK.into_response();
            let h = resp.headers_mut();
            for (k, v) in set {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
            if let Ok(v) = HeaderValue::from_str(&remove.join(",")) {
                h.insert(HEADERS_TO_REMOVE, v);
            }
            resp
        }
        Answer::Refuse { refusal, .. } => refusal.into_response(),
    }
}
