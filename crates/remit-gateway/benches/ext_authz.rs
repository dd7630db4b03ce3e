//! ext_authz gRPC load: a bounded number of `Check` calls from a `tonic` client on loopback
//! against remit's server (quickstart world, SQLite store with durable records), reporting
//! decisions/s and p50/p99. The server runs on its own one-thread runtime, the client on
//! another. `cargo bench -p remit-gateway --bench ext_authz [-- REQUESTS CONCURRENCY]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{self as core, SocketAddress, address::Address};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

/// Most requests one run sends (a bound on the load loop).
const MAX_REQUESTS: usize = 1_000_000;

fn check() -> CheckRequest {
    let headers = HashMap::from([
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), "/tickets/1".to_owned()),
        (
            "authorization".to_owned(),
            "Bearer rk_demo_support_assistant".to_owned(),
        ),
        ("remit-purpose".to_owned(), "case-summary".to_owned()),
    ]);
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(core::Address {
                    address: Some(Address::SocketAddress(SocketAddress {
                        address: "127.0.0.1".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/tickets/1".into(),
                    headers,
                    size: -1,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let total = args.first().copied().unwrap_or(20_000).min(MAX_REQUESTS);
    let concurrency = args.get(1).copied().unwrap_or(32).clamp(1, 1024);
    let skip_fsync = std::env::var_os("REMIT_BENCH_SKIP_FSYNC").is_some();

    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let data = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let q =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/remit.toml");
            let engine = remit_engine::load::load_engine(&q).unwrap();
            let durability = if skip_fsync {
                remit_store::Durability::DangerSurvivesProcessCrashOnly
            } else {
                remit_store::Durability::Fsync
            };
            let options = remit_store::StoreOptions {
                durability,
                ..remit_store::StoreOptions::default()
            };
            let store = remit_store::SqliteStore::open_with(&data, options)
                .await
                .unwrap();
            let st = remit_gateway::authz::AuthzState::new(Arc::new(engine), Arc::new(store));
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            remit_gateway::ext_authz::serve_ext_authz(l, st, std::future::pending())
                .await
                .unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
        let client = AuthorizationClient::new(channel);
        let one = |mut c: AuthorizationClient<_>| async move {
            let t = Instant::now();
            let r = c.check(check()).await.unwrap().into_inner();
            assert!(matches!(r.http_response, Some(HttpResponse::OkResponse(_))), "{r:?}");
            t.elapsed()
        };
        for _ in 0..500 {
            one(client.clone()).await;
        }
        let per_task = total.div_ceil(concurrency);
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        lat.push(one(c.clone()).await);
                    }
                    lat
                })
            })
            .collect();
        let mut all: Vec<Duration> = Vec::with_capacity(per_task * concurrency);
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed();
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "ext_authz gRPC: {} checks, {concurrency} in flight, durable records{}: {:.0} decisions/s, p50 {:?}, p99 {:?}",
            all.len(),
            if skip_fsync { " (danger_skip_fsync)" } else { "" },
            all.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
        );
    });
}
