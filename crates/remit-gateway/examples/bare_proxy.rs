//! The proxy's HTTP stack with nothing of remit in it, for `bench/proxy.sh`: the same
//! listener (`axum::serve` with `TCP_NODELAY`), the same router shape (one fallback handler
//! behind load shedding), the same upstream client (hyper-util's pooled client), and no
//! classification, decision, record or header rewriting. The benchmark runs it beside
//! nginx and remit so the cost of the HTTP stack itself is measured, not guessed: what remit
//! adds is the difference between it and remit.
//!
//! Usage: `bare_proxy LISTEN_ADDR UPSTREAM_AUTHORITY` (both loopback in the benchmark).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;

type Upstream = Client<HttpConnector, Body>;

#[derive(Clone)]
struct Bare {
    client: Upstream,
    authority: std::sync::Arc<str>,
}

async fn forward(State(bare): State<Bare>, mut req: Request) -> Response {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = Uri::try_from(format!("http://{}{target}", bare.authority)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    *req.uri_mut() = uri;
    match bare.client.request(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(authority)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_proxy LISTEN_ADDR UPSTREAM_AUTHORITY");
        std::process::exit(2);
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector);
    let app = Router::new()
        .fallback(forward)
        .with_state(Bare {
            client,
            authority: authority.into(),
        })
        .layer(
            ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async { StatusCode::SERVICE_UNAVAILABLE },
                ))
                .load_shed()
                .concurrency_limit(4096),
        );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(remit_gateway::nodelay(listener), app).await
}
