//! Class budgets at the proxy, on the quickstart: with `[budgets] automation = { in_flight
//! = 1 }`, a batch job's second request waits while its first is at the upstream, and an
//! assistant's request passes meanwhile — the batch class's room is its own, not the
//! assistant's. A request that finds no room within the upstream timeout is answered 503.

use std::sync::Arc;
use std::time::Duration;

use remit_store::SqliteStore;
use tokio::sync::{Notify, mpsc};

use crate::authz::quickstart_engine;
use crate::proxy::serve_upstream;

async fn start(upstream: &str, budgets: &str) -> String {
    let (upstream, budgets) = (upstream.to_owned(), budgets.to_owned());
    let engine = Arc::new(quickstart_engine(move |t| {
        format!(
            "{budgets}\n{}",
            t.replace(
                "url = \"http://127.0.0.1:8450\"",
                &format!("url = \"{upstream}\""),
            )
            .replace("upstream_timeout_s = 30", "upstream_timeout_s = 2")
        )
    }));
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let state = remit_gateway::proxy::ProxyState::new(engine, Arc::new(store)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _dir = dir;
        remit_gateway::proxy::serve_proxy(listener, state, std::future::pending()).await
    });
    url
}

async fn get(url: String, key: &'static str, purpose: &'static str) -> u16 {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(key)
        .header("remit-purpose", purpose)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_batch_class_waits_for_its_own_room_and_never_takes_the_assistants() {
    // The upstream: inventory reads wait until released; tickets answer at once. Every
    // request that arrives is reported.
    let release = Arc::new(Notify::new());
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    let (r, s1, s2) = (release.clone(), seen_tx.clone(), seen_tx);
    let app = axum::Router::new()
        .route(
            "/inventory/{sku}",
            axum::routing::get(
                move |axum::extract::Path(sku): axum::extract::Path<String>| {
                    let (r, s) = (r.clone(), s1.clone());
                    async move {
                        s.send(format!("inventory/{sku}")).unwrap();
                        r.notified().await;
                        "{}"
                    }
                },
            ),
        )
        .route(
            "/tickets/{id}",
            axum::routing::get(move || {
                let s = s2.clone();
                async move {
                    s.send("tickets".into()).unwrap();
                    "{}"
                }
            }),
        );
    let upstream = serve_upstream(app).await;
    let remit = start(&upstream, "[budgets]\nautomation = { in_flight = 1 }").await;
    let batch = |sku: &str| {
        tokio::spawn(get(
            format!("{remit}/inventory/{sku}"),
            "rk_demo_inventory_sync",
            "inventory-refresh",
        ))
    };
    let first = batch("a");
    assert_eq!(seen.recv().await.unwrap(), "inventory/a");
    let second = batch("b");
    // The assistant is answered while the batch class's one slot is taken.
    let assistant = tokio::time::timeout(
        Duration::from_secs(5),
        get(
            format!("{remit}/tickets/1"),
            "rk_demo_support_assistant",
            "case-summary",
        ),
    )
    .await
    .expect("the assistant is not held behind the batch class");
    assert_eq!(assistant, 200);
    assert_eq!(seen.recv().await.unwrap(), "tickets");
    // The batch job's second request has not reached the upstream: it waits for the slot.
    assert!(seen.try_recv().is_err());
    release.notify_one();
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(seen.recv().await.unwrap(), "inventory/b");
    release.notify_one();
    assert_eq!(second.await.unwrap(), 200);
}

#[tokio::test]
async fn a_request_that_finds_no_room_in_time_is_answered_503() {
    // The upstream answers at once and then streams its events slowly: the slot is held
    // until the response ends, not only until its headers.
    let app = axum::Router::new().route(
        "/inventory/{sku}",
        axum::routing::get(|| async {
            let chunks = futures_util::stream::unfold(0u8, |n| async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                (n < 2).then(|| {
                    (
                        Ok::<_, std::io::Error>(axum::body::Bytes::from("data: {}\n\n")),
                        n + 1,
                    )
                })
            });
            // An event stream passes as it comes (other bodies are scanned whole first).
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(chunks),
            )
        }),
    );
    let upstream = serve_upstream(app).await;
    let remit = start(
        &upstream,
        "[budgets]\nautomation = { rate = \"100/s\", in_flight = 1 }",
    )
    .await;
    let url = format!("{remit}/inventory/a");
    let client = reqwest::Client::new();
    let request = || {
        client
            .get(&url)
            .bearer_auth("rk_demo_inventory_sync")
            .header("remit-purpose", "inventory-refresh")
            .send()
    };
    let first = request().await.unwrap();
    assert_eq!(first.status(), 200, "its body is still streaming");
    let second = request().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    let text = second.text().await.unwrap();
    assert!(
        text.contains("class `automation` already has 1 requests at the upstreams"),
        "{text}"
    );
    // When the first response goes away, its slot is free again.
    drop(first);
    let mut third = 0;
    for _ in 0..50 {
        let r = request().await.unwrap();
        third = r.status().as_u16();
        if third == 200 {
            break;
        }
    }
    assert_eq!(third, 200);
}
