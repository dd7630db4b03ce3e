//! Approvals end to end over real HTTP, on the quickstart: the proxy (with the token
//! endpoint) and the admin listener share one engine and one SQLite store, and the demo
//! issuer's humans approve. The deploy scenario (approval_required → grant → one retry
//! forwarded → a second refused → expiry → the requester's human cannot approve), 100
//! parallel presentations of one grant, `Prefer: wait`, and hostile input to every route.

use std::sync::Arc;
use std::time::Duration;

use remit_gateway::token::{TokenService, serve_proxy_with_tokens};
use remit_gateway::{AdminState, admin_router};
use remit_store::SqliteStore;
use serde_json::{Value, json};

use crate::authz::quickstart_engine;
use crate::proxy::{Log, recording_upstream};
use crate::token::human_token;

const CODEGEN_KEY: &str = "rk_demo_codegen_workflow";
const DEPLOY: &str = "/repos/web/deployments";

struct Remit {
    proxy: String,
    admin: String,
    log: Log,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

async fn start(extra: &str) -> Remit {
    let extra = extra.to_owned();
    let (upstream, log) = recording_upstream().await;
    let engine = Arc::new(quickstart_engine(move |t| {
        t.replace(
            "url = \"http://127.0.0.1:8450\"",
            &format!("url = \"{upstream}\""),
        )
        .replace("ttl_s = 900", &extra)
    }));
    remit_gateway::webhook::announce_approvals(&engine).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let sink: Arc<dyn remit_core::RecordSink> = Arc::new(store.clone());
    let state = remit_gateway::proxy::ProxyState::new(engine.clone(), sink.clone()).unwrap();
    let svc = Arc::new(TokenService::open(engine.clone(), &dir.path().join("data")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_proxy_with_tokens(
        listener,
        state,
        svc,
        std::future::pending(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = format!("http://{}", listener.local_addr().unwrap());
    let app = admin_router(AdminState {
        engine,
        sink,
        watch: None,
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Remit {
        proxy,
        admin,
        log,
        store,
        _dir: dir,
    }
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The code-generation workflow asks to deploy `body`, with `approval` if given.
async fn deploy(r: &Remit, bearer: &str, body: &str, approval: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{DEPLOY}", r.proxy))
        .bearer_auth(bearer)
        .header("remit-purpose", "code-change")
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(a) = approval {
        req = req.header("remit-approval", a);
    }
    json_of(req.send().await.unwrap()).await
}

async fn answer(r: &Remit, id: &str, verb: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/approvals/{id}/{verb}", r.admin))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    json_of(req.send().await.unwrap()).await
}

fn deploys_seen(r: &Remit) -> usize {
    r.log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.target == DEPLOY)
        .count()
}

fn approval_id(refusal: &Value) -> String {
    refusal["approval"]["id"]
        .as_str()
        .expect("an approval id")
        .to_owned()
}

#[tokio::test]
async fn the_deploy_scenario_grant_once_then_refused_and_never_by_the_requester() {
    let r = start("ttl_s = 900").await;
    let body = r#"{"ref":"v1.4.2","env":"production"}"#;
    // 1. approval_required, with an id and where to decide it.
    let (status, refusal) = deploy(&r, CODEGEN_KEY, body, None).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(refusal["decision"], "approval_required");
    let id = approval_id(&refusal);
    assert!(
        refusal["approval"]["decide"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/approvals/{id}"))
    );
    assert!(
        refusal["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("Remit-Approval: {id}"))
    );
    // The identical request asks for the same approval, not a second one.
    let (_, again) = deploy(&r, CODEGEN_KEY, body, None).await;
    assert_eq!(approval_id(&again), id);
    let (_, listed) = json_of(
        reqwest::get(format!("{}/v1/approvals?state=pending", r.admin))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["approvals"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["approvals"][0]["binding"]["action"], "repos.deploy");
    // Presenting it before anyone answered is refused.
    let (status, early) = deploy(&r, CODEGEN_KEY, body, Some(&id)).await;
    assert_eq!(status, 403);
    assert!(
        early["detail"].as_str().unwrap().contains("still pending"),
        "{early}"
    );

    // 2. Who may not answer: nobody without a token, an agent's key, a person outside the
    // approver group.
    let reason = json!({"reason": "release 1.4.2, change CHG-1"});
    let (s, p) = answer(&r, &id, "grant", None, reason.clone()).await;
    assert_eq!(s, 401, "{p}");
    let (s, p) = answer(&r, &id, "grant", Some(CODEGEN_KEY), reason.clone()).await;
    assert_eq!(s, 401, "{p}");
    let alice = human_token("alice", &["support"]);
    let (s, p) = answer(&r, &id, "grant", Some(&alice), reason.clone()).await;
    assert_eq!(s, 403, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("not in an approver group"),
        "{p}"
    );
    let (s, p) = answer(
        &r,
        &id,
        "grant",
        Some(&human_token("mallory", &["release-managers"])),
        reason.clone(),
    )
    .await;
    assert_eq!(s, 401, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("disabled"), "{p}");

    // 3. A release manager grants; the grant is recorded with who and why.
    let bob = human_token("bob", &["release-managers"]);
    let (s, granted) = answer(&r, &id, "grant", Some(&bob), reason.clone()).await;
    assert_eq!(s, 200, "{granted}");
    assert_eq!(
        (granted["status"].as_str(), granted["decided_by"].as_str()),
        (Some("granted"), Some("bob"))
    );
    let step = r
        .store
        .approval_record(granted["decision_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        step.contains("\"kind\":\"approval\"") && step.contains("\"approver\":\"bob\""),
        "{step}"
    );
    assert!(step.contains("CHG-1") && !step.contains(&bob), "{step}");
    let (s, _) = answer(
        &r,
        &id,
        "deny",
        Some(&human_token("carol", &["release-managers"])),
        reason.clone(),
    )
    .await;
    assert_eq!(s, 409, "an answered approval is not answered again");

    // 4. Another request with the grant is refused and does not use it up.
    let (status, other) = deploy(
        &r,
        CODEGEN_KEY,
        r#"{"ref":"v9.9.9","env":"production"}"#,
        Some(&id),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        other["detail"].as_str().unwrap().contains("body differs"),
        "{other}"
    );
    assert_eq!(deploys_seen(&r), 0, "nothing reached the upstream yet");

    // 5. The identical request with the grant is forwarded, once.
    let (status, ok) = deploy(&r, CODEGEN_KEY, body, Some(&id)).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(deploys_seen(&r), 1);
    let (status, replay) = deploy(&r, CODEGEN_KEY, body, Some(&id)).await;
    assert_eq!(status, 403);
    assert!(
        replay["detail"].as_str().unwrap().contains("already used"),
        "{replay}"
    );
    assert_eq!(deploys_seen(&r), 1);
    let (_, shown) = json_of(
        reqwest::get(format!("{}/v1/approvals/{id}", r.admin))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(shown["status"], "used");
    let used_by = shown["used_by_decision"].as_str().unwrap();
    let record = r.store.record(used_by).await.unwrap().unwrap();
    assert!(
        record.contains(&format!("\"id\":\"{id}\"")) && record.contains("\"decision\":\"allow\""),
        "{record}"
    );

    // 6. Separation of duties: when the workflow acts for bob, bob cannot approve; carol can.
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={bob}\
         &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&actor_token={CODEGEN_KEY}\
         &actor_token_type=urn%3Aremit%3Aparams%3Aoauth%3Atoken-type%3Aapi_key&scope=repos.deploy&purpose=code-change"
    );
    let (s, tok) = json_of(
        reqwest::Client::new()
            .post(format!("{}/oauth2/token", r.proxy))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{tok}");
    let for_bob = tok["access_token"].as_str().unwrap();
    let (status, refusal) = deploy(&r, for_bob, body, None).await;
    assert_eq!(status, 403, "{refusal}");
    let id2 = approval_id(&refusal);
    assert_ne!(id2, id);
    let (s, p) = answer(&r, &id2, "grant", Some(&bob), reason.clone()).await;
    assert_eq!(s, 403, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("acts for `bob`"),
        "{p}"
    );
    let (s, p) = answer(&r, &id2, "grant", Some(for_bob), reason.clone()).await;
    assert!(
        s == 401 || s == 403,
        "the request's own token cannot approve: {s} {p}"
    );
    let (s, p) = answer(
        &r,
        &id2,
        "deny",
        Some(&human_token("carol", &["release-managers"])),
        json!({"reason": "not during the freeze"}),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let (status, denied) = deploy(&r, for_bob, body, Some(&id2)).await;
    assert_eq!(status, 403);
    assert!(
        denied["detail"]
            .as_str()
            .unwrap()
            .contains("denied by `carol`"),
        "{denied}"
    );
    assert_eq!(deploys_seen(&r), 1);
}

#[tokio::test]
async fn an_expired_approval_is_refused_whether_pending_or_granted() {
    let r = start("ttl_s = 2").await;
    let bob = human_token("bob", &["release-managers"]);
    let (_, refusal) = deploy(&r, CODEGEN_KEY, "{\"ref\":\"a\"}", None).await;
    let late = approval_id(&refusal);
    let (_, refusal) = deploy(&r, CODEGEN_KEY, "{\"ref\":\"b\"}", None).await;
    let granted = approval_id(&refusal);
    let (s, p) = answer(&r, &granted, "grant", Some(&bob), json!({"reason": "ok"})).await;
    assert_eq!(s, 200, "{p}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, p) = answer(
        &r,
        &late,
        "grant",
        Some(&bob),
        json!({"reason": "too late"}),
    )
    .await;
    assert_eq!(s, 409, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    let (status, p) = deploy(&r, CODEGEN_KEY, "{\"ref\":\"b\"}", Some(&granted)).await;
    assert_eq!(status, 403);
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    assert_eq!(deploys_seen(&r), 0);
}

#[tokio::test]
async fn a_hundred_parallel_presentations_of_one_grant_forward_exactly_one() {
    let r = Arc::new(start("ttl_s = 900").await);
    let body = "{\"ref\":\"v2\"}";
    let (_, refusal) = deploy(&r, CODEGEN_KEY, body, None).await;
    let id = approval_id(&refusal);
    let (s, _) = answer(
        &r,
        &id,
        "grant",
        Some(&human_token("bob", &["release-managers"])),
        json!({"reason": "go"}),
    )
    .await;
    assert_eq!(s, 200);
    let tries = (0..100).map(|_| {
        let r = Arc::clone(&r);
        let id = id.clone();
        tokio::spawn(async move { deploy(&r, CODEGEN_KEY, body, Some(&id)).await.0 })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        99,
        "{statuses:?}"
    );
    assert_eq!(deploys_seen(&r), 1);
}

#[tokio::test]
async fn prefer_wait_holds_the_request_until_it_is_granted() {
    let r = Arc::new(start("ttl_s = 900").await);
    let held = {
        let r = Arc::clone(&r);
        tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{}{DEPLOY}", r.proxy))
                .bearer_auth(CODEGEN_KEY)
                .header("remit-purpose", "code-change")
                .header("prefer", "wait=20")
                .body("{\"ref\":\"held\"}")
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        })
    };
    let mut id = None;
    for _ in 0..100 {
        let (_, listed) = json_of(
            reqwest::get(format!("{}/v1/approvals?state=pending", r.admin))
                .await
                .unwrap(),
        )
        .await;
        if let Some(a) = listed["approvals"][0]["id"].as_str() {
            id = Some(a.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = id.expect("the held request opened an approval");
    assert!(
        !held.is_finished(),
        "the request is held while the approval is pending"
    );
    let (s, _) = answer(
        &r,
        &id,
        "grant",
        Some(&human_token("bob", &["release-managers"])),
        json!({"reason": "go"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(deploys_seen(&r), 1);
    // Without a grant, the wait ends with the refusal and says it waited.
    let resp = reqwest::Client::new()
        .post(format!("{}{DEPLOY}", r.proxy))
        .bearer_auth(CODEGEN_KEY)
        .header("remit-purpose", "code-change")
        .header("prefer", "wait=1")
        .body("{\"ref\":\"never\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.headers()["preference-applied"], "wait=1");
}

#[tokio::test]
async fn the_approval_routes_refuse_hostile_input_clearly() {
    let r = start("ttl_s = 900").await;
    let (_, refusal) = deploy(&r, CODEGEN_KEY, "{}", None).await;
    let id = approval_id(&refusal);
    let bob = human_token("bob", &["release-managers"]);
    let get = |q: String| async move { json_of(reqwest::get(q).await.unwrap()).await };
    for (query, want) in [
        ("?state=bogus", "not one of"),
        ("?limit=0", "1 to 1000"),
        ("?limit=5000", "1 to 1000"),
        ("?identity=Not%20An%20Id", "identity"),
        ("?colour=red", "query parameters"),
        ("?state=pending&state=used", "query parameters"),
    ] {
        let (s, p) = get(format!("{}/v1/approvals{query}", r.admin)).await;
        assert_eq!(s, 400, "{query}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(want), "{query}: {p}");
    }
    let (s, _) = get(format!("{}/v1/approvals/apr_nothex", r.admin)).await;
    assert_eq!(s, 400);
    let (s, _) = get(format!("{}/v1/approvals/apr_{}", r.admin, "0".repeat(32))).await;
    assert_eq!(s, 404);
    let long = "x".repeat(2000);
    for (body, want) in [
        (json!({}), 400),
        (json!({"reason": ""}), 400),
        (json!({"reason": "  "}), 400),
        (json!({"reason": long}), 400),
        (json!({"reason": "ok", "by": "bob"}), 400),
        (json!({"reason": "a\u{0}b"}), 400),
        (json!(["reason"]), 400),
    ] {
        let (s, p) = answer(&r, &id, "grant", Some(&bob), body.clone()).await;
        assert_eq!(s, want, "{body}: {p}");
    }
    let (s, _) = answer(
        &r,
        &format!("apr_{}", "0".repeat(32)),
        "grant",
        Some(&bob),
        json!({"reason": "ok"}),
    )
    .await;
    assert_eq!(s, 404);
    let c = reqwest::Client::new();
    let url = format!("{}/v1/approvals/{id}/grant", r.admin);
    let big = c
        .post(&url)
        .bearer_auth(&bob)
        .header("content-type", "application/json")
        .body(vec![b' '; 20_000])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);
    let text = c
        .post(&url)
        .bearer_auth(&bob)
        .header("content-type", "text/plain")
        .body("{\"reason\":\"ok\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);
    let two = c
        .post(&url)
        .header("authorization", format!("Bearer {bob}"))
        .header("authorization", "Bearer other")
        .json(&json!({"reason": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(two.status().as_u16(), 400);
    let garbage = c
        .post(&url)
        .header("authorization", "Basic Ym9iOmJvYg==")
        .json(&json!({"reason": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 400);
    // None of it changed the approval.
    let (_, shown) = get(format!("{}/v1/approvals/{id}", r.admin)).await;
    assert_eq!(shown["status"], "pending", "{shown}");
    // A malformed `Remit-Approval` is a bad request at the proxy.
    let (s, _) = deploy(&r, CODEGEN_KEY, "{}", Some("apr_../../x")).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn new_approvals_are_announced_to_the_webhook_once() {
    let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let app = {
        let seen = Arc::clone(&seen);
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push(v);
                    "ok"
                }
            }),
        )
    };
    let hook = crate::proxy::serve_upstream(app).await;
    let r = start(&format!(
        "ttl_s = 900\nwebhook = \"{hook}/hook\"\nformat = \"slack\""
    ))
    .await;
    let (_, refusal) = deploy(&r, CODEGEN_KEY, "{\"ref\":\"w\"}", None).await;
    let id = approval_id(&refusal);
    // The identical request finds the same approval: announced once.
    deploy(&r, CODEGEN_KEY, "{\"ref\":\"w\"}", None).await;
    for _ in 0..100 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let text = seen[0]["text"].as_str().unwrap();
    assert!(
        text.contains(&id) && text.contains("codegen-workflow") && text.contains("repos.deploy"),
        "{text}"
    );
    assert!(
        text.contains("release-managers") && text.contains(&format!("/v1/approvals/{id}")),
        "{text}"
    );
}
