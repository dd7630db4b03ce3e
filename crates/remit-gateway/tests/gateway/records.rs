//! Approved record sets end to end over real HTTP, on the quickstart: the support assistant
//! acting for alice (group `support`) lists tickets from the demo API, which returns every
//! queue's tickets; remit passes only the `support` queue's, notes what it removed in the
//! outcome record, and refuses a request that asks for another queue. A hostile upstream
//! shows that what cannot be limited (not JSON, compressed, too large, malformed, another
//! shape) is refused, never passed.

use axum::extract::Query;
use axum::response::IntoResponse;
use remit_store::SqliteStore;
use serde_json::{Value, json};

use crate::proxy::outcome_of;
use crate::token::{human_token, serve_quickstart};

const ASSISTANT_KEY: &str = "rk_demo_support_assistant";

struct Remit {
    proxy: String,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

/// remit on the quickstart, in front of `upstream`, with `edit` applied to the config.
async fn start(upstream: &str, edit: impl Fn(String) -> String) -> Remit {
    let (proxy, store, dir) = serve_quickstart(upstream, edit).await;
    Remit {
        proxy,
        store,
        _dir: dir,
    }
}

/// The quickstart's demo HTTP API, on a free loopback port.
async fn demo_api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(remit_demo::serve_http_api(listener));
    url
}

/// The support assistant's token acting for alice (group `support`).
async fn alice_token(r: &Remit) -> String {
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
         &subject_token={}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
         &actor_token={ASSISTANT_KEY}&actor_token_type=urn%3Aremit%3Aparams%3Aoauth%3Atoken-type%3Aapi_key\
         &purpose=case-summary",
        human_token("alice", &["support"])
    );
    let v: Value = reqwest::Client::new()
        .post(format!("{}/oauth2/token", r.proxy))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

async fn list(r: &Remit, token: &str, query: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}/tickets{query}", r.proxy))
        .bearer_auth(token)
        .header("remit-purpose", "case-summary")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn an_agent_acting_for_alice_sees_only_her_queues_tickets() {
    let r = start(&demo_api().await, |t| t).await;
    let token = alice_token(&r).await;
    let (status, text) = list(&r, &token, "").await;
    assert_eq!(status, 200, "{text}");
    // The demo API returned all five tickets; two lie in other queues.
    for outside in ["Lukas Berger", "Oak & Ivy", "billing", "escalations"] {
        assert!(
            !text.contains(outside),
            "`{outside}` reached the client: {text}"
        );
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<u64> = body["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 5]);
    assert_eq!(body["seen_by_upstream"]["remit-on-behalf-of"], "alice");
    // The decision record names the set and its values; the outcome what was removed.
    let id = body["seen_by_upstream"]["remit-decision-id"]
        .as_str()
        .unwrap();
    let record: Value = serde_json::from_str(&r.store.record(id).await.unwrap().unwrap()).unwrap();
    assert_eq!(
        record["record_sets"],
        json!([{"name": "my-queues", "field": "/queue", "items": "/tickets",
                "values": ["support"], "on_excess": "filter", "max_body_bytes": 1048576}]),
        "{record}"
    );
    let outcome = outcome_of(&r.store, id).await;
    assert_eq!(
        outcome["record_sets"],
        json!([{"set": "my-queues", "kept": 3, "removed": 2,
                "removed_ids": ["billing", "escalations"]}]),
        "{outcome}"
    );
    assert_eq!(
        outcome["response_bytes"].as_u64().unwrap() as usize,
        text.len(),
        "the outcome digests what the client got"
    );

    // Asking for one queue: hers passes, another is refused before the upstream.
    let (status, text) = list(&r, &token, "?queue=support").await;
    assert_eq!(status, 200, "{text}");
    for q in ["?queue=billing", "?queue=support&queue=billing", "?queue="] {
        let (status, text) = list(&r, &token, q).await;
        assert_eq!(status, 403, "{q}: {text}");
        let p: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(p["policies"], json!(["remit.record-set"]), "{q}: {p}");
    }
}

#[tokio::test]
async fn without_a_person_behind_it_the_set_is_empty() {
    let r = start(&demo_api().await, |t| t).await;
    let (status, text) = list(&r, ASSISTANT_KEY, "").await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["tickets"], json!([]), "{body}");
    // Every other route of the assistant is as it was: no set covers `tickets.read`.
    let resp = reqwest::Client::new()
        .get(format!("{}/tickets/3", r.proxy))
        .bearer_auth(ASSISTANT_KEY)
        .header("remit-purpose", "case-summary")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn on_excess_refuse_withholds_the_whole_response() {
    let r = start(&demo_api().await, |t| {
        t.replace("on_excess = \"filter\" ", "on_excess = \"refuse\" ")
    })
    .await;
    let token = alice_token(&r).await;
    let (status, text) = list(&r, &token, "").await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("2 record(s) outside the approved set `my-queues`"),
        "{text}"
    );
    assert!(
        !text.contains("Dana Whitfield"),
        "nothing of the response passes: {text}"
    );
    let (status, text) = list(&r, &token, "?queue=support").await;
    assert_eq!(
        status, 200,
        "only her queue asked for, nothing to refuse: {text}"
    );
}

#[derive(serde::Deserialize)]
struct Mode {
    mode: String,
}

/// An upstream whose `/tickets` answers in the shape `?mode=` asks for.
async fn hostile_upstream() -> String {
    async fn tickets(Query(m): Query<Mode>) -> axum::response::Response {
        let outside =
            json!({"tickets": [{"id": 3, "queue": "billing", "customer": "Lukas Berger"}]});
        let json_ct = [("content-type", "application/json")];
        match m.mode.as_str() {
            "text" => ([("content-type", "text/plain")], outside.to_string()).into_response(),
            "none" => outside.to_string().into_response(),
            "sse" => (
                [("content-type", "text/event-stream")],
                format!("data: {outside}\n\n"),
            )
                .into_response(),
            "gzip" => {
                use std::io::Write as _;
                let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                z.write_all(outside.to_string().as_bytes()).unwrap();
                (
                    [("content-type", "application/json"), ("content-encoding", "gzip")],
                    z.finish().unwrap(),
                )
                    .into_response()
            }
            "huge" => {
                let pad = "Lukas Berger ".repeat(100_000);
                (json_ct, json!({"tickets": [], "pad": pad}).to_string()).into_response()
            }
            "malformed" => (json_ct, "{\"tickets\": [{\"queue\": \"billing\", \"customer\": \"Lukas Berger\"").into_response(),
            "shape" => (json_ct, json!({"items": outside["tickets"]}).to_string()).into_response(),
            "object-id" => (
                json_ct,
                json!({"tickets": [{"queue": {"name": "support"}, "customer": "Lukas Berger"}]})
                    .to_string(),
            )
                .into_response(),
            "duplicate-key" => (
                json_ct,
                // The last `queue` wins for serde_json; the item stays outside either way.
                "{\"tickets\": [{\"queue\": \"support\", \"queue\": \"billing\", \"customer\": \"Lukas Berger\"}]}",
            )
                .into_response(),
            "error" => (
                axum::http::StatusCode::NOT_FOUND,
                json_ct,
                "{\"error\": \"no such queue\"}",
            )
                .into_response(),
            _ => (json_ct, outside.to_string()).into_response(),
        }
    }
    let app = axum::Router::new().route("/tickets", axum::routing::get(tickets));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_response_that_cannot_be_limited_is_refused_never_passed() {
    let r = start(&hostile_upstream().await, |t| t).await;
    let token = alice_token(&r).await;
    for (mode, want) in [
        ("text", 502),
        ("none", 502),
        ("sse", 502),
        ("gzip", 502),
        ("huge", 502),
        ("malformed", 502),
        ("shape", 502),
    ] {
        let (status, text) = list(&r, &token, &format!("?mode={mode}")).await;
        assert_eq!(status, want, "{mode}: {text}");
        assert!(!text.contains("Lukas Berger"), "{mode}: {text}");
        let p: Value = serde_json::from_str(&text).unwrap();
        let id = p["decision_id"].as_str().unwrap();
        let outcome = outcome_of(&r.store, id).await;
        assert!(
            outcome["record_sets"][0]["refused"].is_string(),
            "{mode}: {outcome}"
        );
    }
    // Items whose record id is not a plain value, or whose id a duplicate key changes,
    // are removed.
    for mode in ["object-id", "duplicate-key", "plain"] {
        let (status, text) = list(&r, &token, &format!("?mode={mode}")).await;
        assert_eq!(status, 200, "{mode}: {text}");
        assert!(!text.contains("Lukas Berger"), "{mode}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["tickets"],
            json!([])
        );
    }
    // An error answers no request for records: it passes as it is.
    let (status, text) = list(&r, &token, "?mode=error").await;
    assert_eq!(
        (status, text.as_str()),
        (404, "{\"error\": \"no such queue\"}")
    );
}
