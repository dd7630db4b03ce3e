//! The proxy's HTTP stack with nothing of remit in it, for `bench/proxy.sh`: the same
//! listener (`axum::serve` with `TCP_NODELAY`), the same router shape (one fallback handler
//! behind load shedding), the same upstream client (hyper-util's pooled client), and no
//! classification, decision, record or header rewriting. The benchmark runs it beside
//! nginx and remit so the cost of the HTTP stack itself is measured, not guessed: what remit
//! adds is the difference between it and remit.
//!
//! With a third argument `hyper`, the same client behind hyper-util's server with a plain
//! `service_fn` and no axum at all: how much of the stack's cost is axum's.
//!
//! It runs on the runtime `remit serve` builds ([`remit_gateway::runtime`]): the
//! single-threaded scheduler when it may use one core, as in the benchmark. With a fourth
//! argument `multi`, on tokio's multi-threaded scheduler with one worker instead (what
//! remit ran on before it chose by cores): the scheduler's own cost, side by side.
//!
//! Usage: `bare_proxy LISTEN_ADDR UPSTREAM_AUTHORITY [axum|hyper] [multi]` (loopback in the
//! benchmark).

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

async fn forward(State(bare): State<Bare>, req: Request) -> Response {
    forward_one(&bare, req).await
}

async fn forward_one(bare: &Bare, mut req: Request) -> Response {
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

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, authority, rest @ ..] = args.as_slice() else {
        eprintln!("usage: bare_proxy LISTEN_ADDR UPSTREAM_AUTHORITY [axum|hyper] [multi]");
        std::process::exit(2);
    };
    let plain_hyper = rest.first().map(String::as_str) == Some("hyper");
    let runtime = if rest.get(1).map(String::as_str) == Some("multi") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
    } else {
        // remit's runtime, chosen as `remit serve` chooses it with `worker_threads` unset.
        remit_gateway::runtime::build(None)?
    };
    runtime.block_on(run(listen, authority, plain_hyper))
}

async fn run(listen: &str, authority: &str, plain_hyper: bool) -> std::io::Result<()> {
    let client = remit_gateway::proxy::upstream_client();
    let bare = Bare {
        client,
        authority: authority.into(),
    };
    if plain_hyper {
        return serve_hyper(listen, bare).await;
    }
    let app = Router::new().fallback(forward).with_state(bare).layer(
        ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: tower::BoxError| async { StatusCode::SERVICE_UNAVAILABLE },
            ))
            .load_shed()
            .concurrency_limit(4096),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(remit_gateway::nodelay(listener), app).await
}

/// One task per connection, hyper-util's HTTP/1.1-or-2 server, a `service_fn`.
async fn serve_hyper(listen: &str, bare: Bare) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let bare = bare.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let bare = bare.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            forward_one(&bare, req.map(Body::new)).await,
                        )
                    }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}
