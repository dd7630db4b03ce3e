//! The behaviour watch through the gateway's doors: `context.risk` reaches policies at the
//! proxy; a leaked key used from a new network is alerted, the alert is in the decision
//! record, in `GET /v1/alerts` and at the webhook, and its identity is quarantined; alerts
//! are acknowledged and resolved with who and why; baselines survive a restart; and every
//! bad input to the alert endpoints is refused clearly.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use remit_gateway::watch::Watch;
use remit_gateway::{AdminState, admin_router};
use remit_store::SqliteStore;
use serde_json::{Value, json};

use super::proxy::{proxy_config, recording_upstream, serve_upstream};

const POLICY: &str = r#"
permit (principal == Identity::"bot", action in [Action::"items.read", Action::"items.write"], resource);
"#;

/// Watching after 20 requests, at once.
const LEARN_FAST: &str = "[anomaly]\nlearning_requests = 20\nlearning_duration_s = 0\n";

/// A gateway as `remit serve` builds it: store, watch, proxy and admin listeners.
struct Gateway {
    admin: SocketAddr,
    proxy: SocketAddr,
    store: SqliteStore,
    watch: Arc<Watch>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start(config: &str, policy: &str, dir: &Path) -> Gateway {
    let config = remit_core::Config::parse(config, "test.toml").unwrap();
    let policies = [remit_policy::PolicySource {
        file: "test.cedar".into(),
        text: policy.into(),
    }];
    let engine = Arc::new(remit_engine::Engine::new(config, &policies).unwrap());
    let store = SqliteStore::open(dir).await.unwrap();
    let watch = Watch::start(engine.clone(), &store).await.unwrap();
    let sink: Arc<dyn remit_core::RecordSink> = Arc::new(store.clone());
    let proxy_state = remit_gateway::proxy::ProxyState::new(engine.clone(), sink.clone())
        .unwrap()
        .with_watch(watch.clone());
    let admin_state = AdminState {
        engine,
        sink,
        watch: Some(watch.clone()),
    };
    let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (admin, proxy) = (admin_l.local_addr().unwrap(), proxy_l.local_addr().unwrap());
    let app = remit_gateway::proxy::proxy_router(proxy_state)
        .into_make_service_with_connect_info::<SocketAddr>();
    let tasks = vec![
        tokio::spawn(async move {
            let _ = axum::serve(admin_l, admin_router(admin_state)).await;
        }),
        tokio::spawn(async move {
            let _ = axum::serve(proxy_l, app).await;
        }),
    ];
    Gateway {
        admin,
        proxy,
        store,
        watch,
        tasks,
    }
}

impl Gateway {
    /// A graceful stop as `serve` does it: baselines saved, then the store shut down.
    async fn stop(self) {
        self.watch.save(&self.store).await.unwrap();
        for t in &self.tasks {
            t.abort();
        }
        self.store.shutdown().await.unwrap();
    }
}

/// A loopback webhook receiver; returns its URL and what it received.
async fn hook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |Json(v): Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(v);
                StatusCode::NO_CONTENT
            }
        }),
    );
    (format!("{}/hook", serve_upstream(app).await), got)
}

/// `bot` asks the decision API for `method path` from `ip` with client `ua`.
async fn decide(g: &Gateway, method: &str, path: &str, ip: &str, ua: &str) -> Value {
    let req = json!({"method": method, "path": path, "source_ip": ip,
        "headers": {"Authorization": "Bearer rk_bot", "Remit-Purpose": "sync", "User-Agent": ua}});
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/decide", g.admin))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The usual traffic: `n` reads from one network and one client.
async fn learn(g: &Gateway, n: u32) {
    for i in 0..n {
        let v = decide(
            g,
            "GET",
            &format!("/items/{i}"),
            "10.1.2.3",
            "sync-client/1.0",
        )
        .await;
        assert_eq!(v["decision"], "allow", "{v}");
    }
}

async fn alerts(g: &Gateway, query: &str) -> (u16, Value) {
    let r = reqwest::get(format!("http://{}/v1/alerts{query}", g.admin))
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn change(g: &Gateway, id: &str, verb: &str, body: &str, ctype: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/alerts/{id}/{verb}", g.admin))
        .header("content-type", ctype)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn eventually<T>(mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 5 s");
}

#[tokio::test]
async fn a_leaked_key_from_a_new_network_is_alerted_recorded_sent_and_quarantined() {
    let (hook, received) = hook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{LEARN_FAST}[alerts]\nwebhook = \"{hook}\"\nquarantine = true\n");
    let g = start(
        &proxy_config("http://127.0.0.1:9", &extra),
        POLICY,
        dir.path(),
    )
    .await;
    learn(&g, 25).await;
    assert_eq!(
        alerts(&g, "").await.1["alerts"],
        json!([]),
        "no alert while learning"
    );

    // The key, from a network and client it never used, probing a write.
    let leak = decide(&g, "POST", "/items/7", "203.0.113.50", "curl/8.5.0").await;
    let id = leak["decision_id"].as_str().unwrap();
    assert_eq!(leak["decision"], "deny", "{leak}");
    assert_eq!(leak["policies"], json!(["remit.quarantine"]), "{leak}");
    let record: Value = serde_json::from_str(&g.store.record(id).await.unwrap().unwrap()).unwrap();
    let noted: Vec<&str> = record["alerts"]
        .as_array()
        .expect("the record carries its alerts")
        .iter()
        .map(|a| a["detector"].as_str().unwrap())
        .collect();
    assert!(noted.contains(&"new_origin"), "{record}");
    assert!(noted.contains(&"scope_expansion"), "{record}");

    // Quarantined: the usual traffic is refused too.
    let after = decide(&g, "GET", "/items/1", "10.1.2.3", "sync-client/1.0").await;
    assert_eq!(after["policies"], json!(["remit.quarantine"]), "{after}");
    assert!(
        after["reasons"][0]
            .as_str()
            .unwrap()
            .contains("quarantined"),
        "{after}"
    );

    // Stored off the request path, so listed within moments.
    let origin = eventually(async || {
        let (status, listed) = alerts(&g, "?identity=bot").await;
        assert_eq!(status, 200, "{listed}");
        listed["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["detector"] == "new_origin")
            .cloned()
    })
    .await;
    assert_eq!(origin["decision_id"], id);
    assert_eq!(origin["state"], "open");
    assert_eq!(origin["severity"], "high");
    assert_eq!(origin["quarantined"], true);
    assert_eq!(origin["credential"], "bot-key");
    let evidence = origin["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("203.0.113.0/24") && evidence.contains("curl"),
        "{evidence}"
    );

    let sent = eventually(async || {
        received
            .lock()
            .unwrap()
            .iter()
            .find(|v| v["detector"] == "new_origin")
            .cloned()
    })
    .await;
    assert_eq!(sent["id"], origin["id"]);
    assert_eq!(sent["decision_id"], id);
    assert_eq!(sent["quarantined"], true);
    assert_eq!(sent["type"], "remit.alert");

    // Worked with who and why.
    let aid = origin["id"].as_str().unwrap();
    let body = json!({"by": "alice", "reason": "looking into the new network"}).to_string();
    let (s, acked) = change(&g, aid, "ack", &body, "application/json").await;
    assert_eq!(
        (s, acked["state"].as_str()),
        (200, Some("acknowledged")),
        "{acked}"
    );
    assert_eq!(acked["acknowledged"]["by"], "alice");
    let (s, again) = change(&g, aid, "ack", &body, "application/json").await;
    assert_eq!(s, 409, "{again}");
    assert!(
        again["detail"].as_str().unwrap().contains("acknowledged"),
        "{again}"
    );
    let body = json!({"by": "bob", "reason": "key rotated"}).to_string();
    let (s, done) = change(&g, aid, "resolve", &body, "application/json").await;
    assert_eq!(
        (s, done["state"].as_str()),
        (200, Some("resolved")),
        "{done}"
    );
    assert_eq!(done["resolved"]["reason"], "key rotated");
    assert_eq!(
        done["acknowledged"]["by"], "alice",
        "the acknowledgement is kept"
    );
    let open = alerts(&g, "?state=open").await.1;
    assert!(
        open["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != aid),
        "{open}"
    );
}

#[tokio::test]
async fn risk_reaches_policies_at_the_proxy_and_denials_are_learned() {
    let (url, log) = recording_upstream().await;
    let policy = format!(
        "{POLICY}\n@id(\"risky\")\n@reason(\"behaviour risk is too high\")\nforbid (principal, action, resource) when {{ context.risk >= 50 }};\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let g = start(&proxy_config(&url, LEARN_FAST), &policy, dir.path()).await;
    let http = reqwest::Client::new();
    let get = async |path: &str, ua: &str| {
        http.get(format!("http://{}{path}", g.proxy))
            .header("authorization", "Bearer rk_bot")
            .header("remit-purpose", "sync")
            .header("user-agent", ua)
            .send()
            .await
            .unwrap()
    };
    for i in 0..24 {
        assert_eq!(
            get(&format!("/items/{i}"), "sync-client/1.0")
                .await
                .status(),
            200
        );
    }
    // A refusal while learning is observed like an allow (outside the boundary).
    assert_eq!(get("/secret/1", "sync-client/1.0").await.status(), 403);
    assert_eq!(g.watch.tracked(), 1);
    let forwarded = log.lock().unwrap().len();
    // A client it never used: risk above 50, refused by policy, not forwarded.
    let r = get("/items/1", "other-tool/9").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body.to_string().contains("behaviour risk is too high"),
        "{body}"
    );
    assert_eq!(log.lock().unwrap().len(), forwarded);
    // The risk is remembered (it halves every 15 minutes), so the usual client is refused
    // for now too: by the policy, not by a quarantine (not configured).
    let r = get("/items/2", "sync-client/1.0").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("risky"), "{body}");
    assert!(!body.to_string().contains("remit.quarantine"), "{body}");
}

#[tokio::test]
async fn baselines_survive_a_restart_and_the_detectors_keep_watching() {
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config("http://127.0.0.1:9", LEARN_FAST);
    let g = start(&config, POLICY, dir.path()).await;
    learn(&g, 25).await;
    g.stop().await;

    let g = start(&config, POLICY, dir.path()).await;
    assert_eq!(g.watch.tracked(), 1, "the baseline was loaded");
    // The first request after the restart is watched: no new learning period.
    let v = decide(&g, "GET", "/items/3", "198.51.100.7", "sync-client/1.0").await;
    let listed = eventually(async || {
        let listed = alerts(&g, "").await.1;
        (listed["alerts"][0] != Value::Null).then_some(listed)
    })
    .await;
    let a = listed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["detector"] == "new_origin")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(a["decision_id"], v["decision_id"]);
    assert_eq!(a["quarantined"], false, "quarantine is off by default");

    // The same traffic on a fresh data directory is still learning: no alert.
    let fresh = tempfile::tempdir().unwrap();
    let f = start(&config, POLICY, fresh.path()).await;
    let v = decide(&f, "GET", "/items/3", "198.51.100.7", "sync-client/1.0").await;
    let record: Value = serde_json::from_str(
        &f.store
            .record(v["decision_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(record.get("alerts").is_none(), "{record}");
    assert_eq!(alerts(&f, "").await.1["alerts"], json!([]));
}

#[tokio::test]
async fn a_redirecting_webhook_is_not_followed_is_counted_and_never_holds_a_decision() {
    remit_gateway::metrics::install().unwrap();
    let followed: Arc<Mutex<u32>> = Arc::default();
    let f = followed.clone();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|| async {
                (StatusCode::TEMPORARY_REDIRECT, [("location", "/elsewhere")])
            }),
        )
        .route(
            "/elsewhere",
            axum::routing::post(move || {
                let f = f.clone();
                async move {
                    *f.lock().unwrap() += 1;
                    StatusCode::OK
                }
            }),
        );
    let hook = format!("{}/hook", serve_upstream(app).await);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{LEARN_FAST}[alerts]\nwebhook = \"{hook}\"\nformat = \"slack\"\ntimeout_ms = 500\n"
    );
    let g = start(
        &proxy_config("http://127.0.0.1:9", &extra),
        POLICY,
        dir.path(),
    )
    .await;
    learn(&g, 25).await;
    let started = std::time::Instant::now();
    let v = decide(&g, "GET", "/items/1", "203.0.113.9", "curl/8").await;
    assert_eq!(v["decision"], "allow", "quarantine is off: {v}");
    assert!(started.elapsed() < Duration::from_millis(400));
    eventually(async || {
        let listed = alerts(&g, "?identity=bot").await.1;
        let found = listed["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["detector"] == "new_origin");
        found.then_some(())
    })
    .await;
    let metrics = eventually(async || {
        let m = reqwest::get(format!("http://{}/metrics", g.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let failed = m
            .lines()
            .find_map(|l| l.strip_prefix("remit_alert_webhook_failures_total "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        failed.is_some_and(|n| n >= 1.0).then_some(m)
    })
    .await;
    assert!(
        metrics.contains("remit_alerts_total{detector=\"new_origin\"}"),
        "{metrics}"
    );
    assert_eq!(*followed.lock().unwrap(), 0, "redirects are not followed");
}

#[test]
fn the_slack_payload_names_the_alert_and_its_evidence() {
    let alert = remit_store::alerts::NewAlert {
        id: remit_store::alerts::AlertId::parse("al-1").unwrap(),
        identity: "bot".into(),
        credential: Some("bot-key".into()),
        detector: "new_origin".into(),
        confidence: 95,
        evidence: "credential `bot-key` was used from 203.0.113.0/24".into(),
        decision_id: "d-1".into(),
        time: "2026-01-01T00:00:00Z".into(),
        quarantined: true,
    };
    let slack =
        remit_gateway::webhook::payload(&alert, "r1", remit_core::config::WebhookFormat::Slack);
    let text = slack["text"].as_str().unwrap();
    assert_eq!(slack.as_object().unwrap().len(), 1, "{slack}");
    for part in [
        "al-1",
        "[high]",
        "`new_origin`",
        "`bot`",
        "203.0.113.0/24",
        "quarantined",
        "d-1",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let plain =
        remit_gateway::webhook::payload(&alert, "r1", remit_core::config::WebhookFormat::Json);
    assert_eq!(plain["replica"], "r1");
    assert_eq!(plain["severity"], "high");
}

#[tokio::test]
async fn the_alert_endpoints_refuse_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let g = start(&proxy_config("http://127.0.0.1:9", ""), POLICY, dir.path()).await;
    for (query, says) in [
        ("?state=closed", "not a state"),
        ("?limit=0", "between 1 and 500"),
        ("?limit=501", "between 1 and 500"),
        ("?limit=ten", "whole number"),
        ("?state=open&state=open", "duplicate field"),
        ("?colour=red", "unknown field"),
        ("?identity=a%20b", "identity"),
        ("?before=xyz", "not an alert id"),
    ] {
        let (status, body) = alerts(&g, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    let ok = json!({"by": "alice", "reason": "checked"}).to_string();
    let big = json!({"by": "alice", "reason": "x".repeat(9000)}).to_string();
    let long_reason = json!({"by": "alice", "reason": "x".repeat(2000)}).to_string();
    let cases: Vec<(&str, &str, String, &str, u16, &str)> = vec![
        (
            "bad-id",
            "ack",
            ok.clone(),
            "application/json",
            400,
            "not an alert id",
        ),
        (
            "al-1",
            "close",
            ok.clone(),
            "application/json",
            404,
            "`/ack` or `/resolve`",
        ),
        (
            "al-1",
            "ack",
            ok.clone(),
            "text/plain",
            415,
            "application/json",
        ),
        (
            "al-1",
            "ack",
            "{".into(),
            "application/json",
            400,
            "invalid request JSON",
        ),
        (
            "al-1",
            "ack",
            json!({"by": "a"}).to_string(),
            "application/json",
            400,
            "missing field `reason`",
        ),
        (
            "al-1",
            "ack",
            json!({"by": "a", "reason": "r", "x": 1}).to_string(),
            "application/json",
            400,
            "unknown field",
        ),
        (
            "al-1",
            "ack",
            r#"{"by":"a","by":"b","reason":"r"}"#.into(),
            "application/json",
            400,
            "duplicate field",
        ),
        (
            "al-1",
            "ack",
            json!({"by": " ", "reason": "r"}).to_string(),
            "application/json",
            400,
            "by: must not be empty",
        ),
        (
            "al-1",
            "ack",
            json!({"by": "a\u{1b}[31m", "reason": "r"}).to_string(),
            "application/json",
            400,
            "control characters",
        ),
        (
            "al-1",
            "ack",
            long_reason,
            "application/json",
            400,
            "reason: is longer than 1024",
        ),
        ("al-1", "ack", big, "application/json", 413, "larger than"),
        (
            "al-1",
            "resolve",
            ok.clone(),
            "application/json",
            404,
            "no alert `al-1`",
        ),
    ];
    for (id, verb, body, ctype, status, says) in cases {
        let (s, b) = change(&g, id, verb, &body, ctype).await;
        assert_eq!(s, status, "{id}/{verb} {body:.60}: {b}");
        assert!(
            b["detail"].as_str().unwrap_or_default().contains(says),
            "{id}/{verb}: {b}"
        );
    }

    // A gateway without a watch keeps no alerts, and says so.
    let engine = remit_engine::load::load_engine(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/remit.toml"),
    )
    .unwrap();
    let state = AdminState {
        engine: Arc::new(engine),
        sink: Arc::new(g.store.clone()),
        watch: None,
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, admin_router(state)).await });
    let r = reqwest::get(format!("http://{addr}/v1/alerts"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("does not keep behaviour alerts")
    );
}

struct AckSink;

impl remit_core::RecordSink for AckSink {
    fn append(&self, _: remit_core::AuditRecord) -> remit_core::decision::SinkFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn baselines_are_saved_in_chunks_and_every_identity_is_kept() {
    // More identities than one save chunk, each with one request.
    let n = remit_gateway::watch::SAVE_CHUNK + 100;
    let mut config = proxy_config("http://127.0.0.1:9", "");
    for i in 0..n {
        config.push_str(&format!(
            "\n[[identity]]\nid = \"svc-{i}\"\nkind = \"service_account\"\nowner = \"team\"\npurposes = [\"sync\"]\nboundary = [\"items.read\"]\n\n[[identity.credential]]\ntype = \"api_key\"\nid = \"svc-{i}-key\"\nsha256 = \"{}\"\n",
            crate::key_sha256(&format!("rk_svc_{i}"))
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let g = start(&config, POLICY, dir.path()).await;
    let engine = {
        let c = remit_core::Config::parse(&config, "test.toml").unwrap();
        let p = [remit_policy::PolicySource {
            file: "test.cedar".into(),
            text: POLICY.into(),
        }];
        remit_engine::Engine::new(c, &p).unwrap()
    };
    for i in 0..n {
        let auth = format!("Bearer rk_svc_{i}");
        let headers: Vec<(&str, &[u8])> = vec![("authorization", auth.as_bytes())];
        let facts =
            remit_core::RequestFacts::parse("GET", "/items/1", headers, None, Some("10.0.0.1"))
                .unwrap();
        let (p, w) =
            remit_gateway::watch::begin(&engine, Some(&g.watch), &facts, format!("d-{i}")).unwrap();
        // Recorded (dry runs learn nothing), into a sink that acknowledges at once.
        remit_gateway::watch::finish(&engine, p, w, &facts, &AckSink, false).await;
    }
    assert_eq!(g.watch.tracked(), n);
    let saved = g.watch.save(&g.store).await.unwrap();
    assert_eq!(saved, n + 1, "every identity and one counters row");
    let rows = g.store.load_baselines().await.unwrap();
    assert_eq!(rows.len(), n + 1);
    assert_eq!(
        rows.iter()
            .filter(|(id, _)| id == remit_anomaly::baseline::COUNTERS_ROW)
            .count(),
        1
    );
}
