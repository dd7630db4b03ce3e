//! Secret scanning through the proxy: a secret in a request is blocked (naming the rule,
//! never the secret), redacted or recorded as the configuration and policy say; responses
//! and event streams are redacted before the client sees them; a leaked remit key marks its
//! credential exposed and quarantines its identity; and no secret of the scanner's corpus
//! is ever written to the data directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use serde_json::Value;

use super::proxy::{decision_ids, outcome_of, proxy_config, recording_upstream, serve_upstream};

/// An AWS access key id of the documented shape (not a real key).
const AWS_KEY: &str = "AKIAQ7LZ3TNB4XK2WJ6D";
/// A GitHub classic token of the documented shape (not a real token).
const GH_TOKEN: &str = "ghp_R3m1tT3stT0k3nN0tR34lXyZ9aBcDeFgHiJk";
/// A second identity's remit API key: what a leak of a registered credential looks like.
const OTHER_KEY: &str = "rk_TyLE158iPGHrflqA6ezlARmgtoaWvHAiwfB9ILQKe6s";

/// Bot may read and write items.
const POLICY: &str = r#"
permit (principal == Identity::"bot", action in [Action::"items.read", Action::"items.write"], resource);
permit (principal == Identity::"other", action in [Action::"items.read", Action::"items.write"], resource);
"#;

/// The proxy's test configuration plus a second identity, `other`, holding `OTHER_KEY`.
fn config(url: &str, extra: &str) -> String {
    format!(
        "{}\n[[identity]]\nid = \"other\"\nkind = \"service_account\"\nowner = \"team\"\npurposes = [\"sync\"]\nboundary = [\"items.read\", \"items.write\"]\n\n[[identity.credential]]\ntype = \"api_key\"\nid = \"other-key\"\nsha256 = \"{}\"\n",
        proxy_config(url, extra),
        crate::key_sha256(OTHER_KEY)
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn record(store: &remit_store::SqliteStore, id: &str) -> Value {
    serde_json::from_str(&store.record(id).await.unwrap().unwrap()).unwrap()
}

async fn get(addr: std::net::SocketAddr, key: &str, path: &str) -> reqwest::Response {
    client()
        .get(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap()
}

async fn post(
    addr: std::net::SocketAddr,
    key: &str,
    path: &str,
    body: String,
) -> reqwest::Response {
    client()
        .post(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("remit-purpose", "sync")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_secret_in_a_request_is_blocked_naming_the_rule_and_never_forwarded() {
    let (url, log) = recording_upstream().await;
    let proxy = crate::start_proxy(&config(&url, ""), POLICY).await;
    let body = format!(r#"{{"tool":"configure","arguments":{{"access_key_id":"{AWS_KEY}"}}}}"#);
    let resp = post(proxy.addr, "rk_bot", "/items/1", body).await;
    assert_eq!(resp.status(), 403);
    let problem: Value = resp.json().await.unwrap();
    let text = problem.to_string();
    assert!(
        text.contains("aws-access-key-id"),
        "the reason names the rule: {text}"
    );
    assert!(
        !text.contains(AWS_KEY),
        "the answer never holds the secret: {text}"
    );
    assert_eq!(problem["policies"], serde_json::json!(["remit.secrets"]));
    assert!(log.lock().unwrap().is_empty(), "nothing was forwarded");
    let id = problem["decision_id"].as_str().unwrap();
    let rec = record(&proxy.store, id).await;
    let f = &rec["scan"]["findings"][0];
    assert_eq!(f["rule"], "aws-access-key-id", "{rec}");
    assert_eq!(f["location"], "request.body");
    assert_eq!(f["fingerprint"].as_str().unwrap().len(), 16, "{f}");
    assert_eq!(rec["scan"]["action"], "block");
    assert!(!rec.to_string().contains(AWS_KEY), "{rec}");

    // A secret in a header that should not carry one is blocked the same way.
    let resp = client()
        .get(format!("http://{}/items/2", proxy.addr))
        .header("authorization", "Bearer rk_bot")
        .header("x-debug-token", GH_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("`github-pat` in request.header.x-debug-token"),
        "{text}"
    );
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn under_a_redact_obligation_the_upstream_receives_the_request_redacted() {
    let (url, log) = recording_upstream().await;
    let proxy = crate::start_proxy(
        &config(&url, ""),
        r#"@obligation("redact")
permit (principal == Identity::"bot", action == Action::"items.write", resource);"#,
    )
    .await;
    let body = format!(r#"{{"prompt":"use key {AWS_KEY} and token \"{GH_TOKEN}\""}}"#);
    let resp = client()
        .post(format!("http://{}/items/1", proxy.addr))
        .header("authorization", "Bearer rk_bot")
        .header("remit-purpose", "sync")
        .header("x-debug-token", GH_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = log.lock().unwrap()[0].clone();
    let forwarded = String::from_utf8(seen.body.clone()).unwrap();
    assert_eq!(
        forwarded,
        r#"{"prompt":"use key [REDACTED:aws-access-key-id] and token \"[REDACTED:github-pat]\""}"#
    );
    assert_eq!(seen.header("x-debug-token"), Some("[REDACTED:github-pat]"));
    let ids = decision_ids(&proxy.store).await;
    let rec = record(&proxy.store, &ids[0]).await;
    assert_eq!(rec["scan"]["action"], "redact", "{rec}");
    assert_eq!(rec["scan"]["findings"].as_array().unwrap().len(), 3);

    // A secret that cannot be redacted in place (inside base64) is refused instead.
    let wrapped = STANDARD.encode(format!("aws_access_key_id={AWS_KEY}"));
    let resp = post(
        proxy.addr,
        "rk_bot",
        "/items/1",
        format!(r#"{{"blob":"{wrapped}"}}"#),
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("cannot be redacted in place")
    );
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "the refused one was not forwarded"
    );

    // Regression: a secret inside a compressed body cannot be redacted in place either; it
    // is refused, never forwarded compressed as it came.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, format!("key {AWS_KEY}").as_bytes()).unwrap();
    let resp = client()
        .post(format!("http://{}/items/1", proxy.addr))
        .header("authorization", "Bearer rk_bot")
        .header("remit-purpose", "sync")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("cannot be redacted in place")
    );
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "the compressed one was not forwarded"
    );
}

#[tokio::test]
async fn under_alert_the_request_passes_and_the_record_names_the_finding() {
    let (url, log) = recording_upstream().await;
    let proxy = crate::start_proxy(&config(&url, "[scan]\nrequest = \"alert\""), POLICY).await;
    let body = format!(r#"{{"access_key_id":"{AWS_KEY}"}}"#);
    let resp = post(proxy.addr, "rk_bot", "/items/1", body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(log.lock().unwrap()[0].body, body.as_bytes());
    let ids = decision_ids(&proxy.store).await;
    let rec = record(&proxy.store, &ids[0]).await;
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["scan"]["action"], "alert", "{rec}");
    assert_eq!(rec["scan"]["findings"][0]["rule"], "aws-access-key-id");
}

#[tokio::test]
async fn policies_see_the_rules_found_in_the_request() {
    let (url, log) = recording_upstream().await;
    let policy = format!(
        "{POLICY}\n@id(\"no-cloud-keys\")\n@reason(\"cloud keys never go to items\")\nforbid (principal, action, resource) when {{ context.secrets.contains(\"aws-access-key-id\") }};"
    );
    let proxy = crate::start_proxy(&config(&url, "[scan]\nrequest = \"alert\""), &policy).await;
    let resp = post(proxy.addr, "rk_bot", "/items/1", format!("key {AWS_KEY}")).await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["policies"], serde_json::json!(["no-cloud-keys"]), "{v}");
    let resp = post(
        proxy.addr,
        "rk_bot",
        "/items/1",
        format!("token {GH_TOKEN}"),
    )
    .await;
    assert_eq!(
        resp.status(),
        200,
        "other rules are only recorded under alert"
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn responses_are_redacted_or_withheld_before_the_client_sees_them() {
    let app = axum::Router::new()
        .route(
            "/items/{id}",
            axum::routing::get(|| async { format!("{{\"note\":\"token {GH_TOKEN} leaked\"}}") }),
        )
        .route(
            "/items/{id}/wrapped",
            axum::routing::get(|| async {
                let wrapped = STANDARD.encode(format!("github_token={GH_TOKEN}"));
                format!("{{\"blob\":\"{wrapped}\"}}")
            }),
        );
    let url = serve_upstream(app).await;
    let extra = "[[route]]\nmethod = \"GET\"\npath = \"/items/{id}/wrapped\"\naction = \"items.read\"\nresource = \"Item::{id}\"\nsensitive = false\n";
    let proxy = crate::start_proxy(&config(&url, extra), POLICY).await;
    let get = |path: String| {
        client()
            .get(format!("http://{}{path}", proxy.addr))
            .header("authorization", "Bearer rk_bot")
            .send()
    };
    let resp = get("/items/1".into()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(text, "{\"note\":\"token [REDACTED:github-pat] leaked\"}");
    let ids = decision_ids(&proxy.store).await;
    let o = outcome_of(&proxy.store, &ids[0]).await;
    assert_eq!(o["scan"]["findings"][0]["location"], "response.body", "{o}");
    assert_eq!(o["scan"]["action"], "redact");

    // What cannot be redacted in place is withheld: a 502 naming the rule.
    let resp = get("/items/1/wrapped".into()).await.unwrap();
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("github-pat") && !text.contains(GH_TOKEN),
        "{text}"
    );
}

#[tokio::test]
async fn a_secret_split_across_event_stream_chunks_is_redacted_in_the_stream() {
    let app = axum::Router::new().route(
        "/items/{id}",
        axum::routing::get(|| async {
            let (a, b) = GH_TOKEN.split_at(17);
            let chunks: Vec<String> = vec![
                "event: progress\ndata: {\"step\":1}\n\n".into(),
                format!("data: {{\"result\":\"token {a}"),
                format!("{b} done\"}}\n\n"),
                "data: {\"step\":3}\n\n".into(),
            ];
            let stream = futures_util::stream::iter(chunks).then(|c| async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok::<_, std::io::Error>(c)
            });
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(stream),
            )
        }),
    );
    let url = serve_upstream(app).await;
    let proxy = crate::start_proxy(&config(&url, ""), POLICY).await;
    let resp = get(proxy.addr, "rk_bot", "/items/1").await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(
        text,
        "event: progress\ndata: {\"step\":1}\n\ndata: {\"result\":\"token [REDACTED:github-pat] done\"}\n\ndata: {\"step\":3}\n\n"
    );
    let ids = decision_ids(&proxy.store).await;
    let o = outcome_of(&proxy.store, &ids[0]).await;
    assert_eq!(o["scan"]["findings"][0]["rule"], "github-pat", "{o}");
    assert_eq!(o["complete"], true);

    // Under `block`, the stream ends before the event that carries the secret.
    let proxy = crate::start_proxy(&config(&url, "[scan]\nresponse = \"block\""), POLICY).await;
    let resp = get(proxy.addr, "rk_bot", "/items/1").await;
    let text = resp.text().await.unwrap_or_default();
    assert!(!text.contains(&GH_TOKEN[..17]), "{text}");
    assert!(text.starts_with("event: progress"), "{text}");
}

#[tokio::test]
async fn a_leaked_remit_key_is_marked_exposed_and_its_identity_quarantined() {
    let (url, log) = recording_upstream().await;
    let proxy = crate::start_proxy(
        &config(
            &url,
            "[scan]\nrequest = \"alert\"\nquarantine_on_exposure = true",
        ),
        POLICY,
    )
    .await;
    // `other` can act before the leak.
    let resp = post(proxy.addr, OTHER_KEY, "/items/1", "{}".into()).await;
    assert_eq!(resp.status(), 200);
    // `bot` carries `other`'s key in a prompt.
    let resp = post(
        proxy.addr,
        "rk_bot",
        "/items/2",
        format!(r#"{{"prompt":"here is the key: {OTHER_KEY}"}}"#),
    )
    .await;
    assert_eq!(resp.status(), 200, "alert lets it pass");
    let ids = decision_ids(&proxy.store).await;
    let rec = record(&proxy.store, &ids[1]).await;
    assert_eq!(
        rec["scan"]["findings"][0]["credential"], "other-key",
        "the finding names the exposed credential: {rec}"
    );
    assert!(!rec.to_string().contains(OTHER_KEY));
    // From now on `other` is quarantined, even for what it could do before.
    let resp = get(proxy.addr, OTHER_KEY, "/items/3").await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["policies"],
        serde_json::json!(["remit.quarantine"]),
        "{v}"
    );
    let reasons = v["reasons"].to_string();
    assert!(
        reasons.contains("quarantined") && reasons.contains("other-key"),
        "{reasons}"
    );
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn without_quarantine_an_exposed_credential_loses_sensitive_actions_only() {
    let (url, _log) = recording_upstream().await;
    let proxy = crate::start_proxy(&config(&url, "[scan]\nrequest = \"alert\""), POLICY).await;
    // The leak is in a response this time: the upstream echoes a key back.
    let resp = post(proxy.addr, "rk_bot", "/items/2", format!("k={OTHER_KEY}")).await;
    assert_eq!(resp.status(), 200);
    let resp = post(proxy.addr, OTHER_KEY, "/items/1", "{}".into()).await;
    assert_eq!(resp.status(), 403, "items.write is sensitive");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["policies"],
        serde_json::json!(["baseline.exposed-credential"]),
        "{v}"
    );
    let resp = get(proxy.addr, OTHER_KEY, "/items/3").await;
    assert_eq!(resp.status(), 200, "items.read is not sensitive");
}

#[tokio::test]
async fn a_body_over_the_scan_limit_is_refused_on_sensitive_actions_only() {
    let (url, log) = recording_upstream().await;
    let proxy = crate::start_proxy(&config(&url, "[scan]\nmax_body_bytes = 1024"), POLICY).await;
    let big = "x".repeat(2000);
    let resp = post(proxy.addr, "rk_bot", "/items/1", big.clone()).await;
    assert_eq!(resp.status(), 403);
    let text = resp.text().await.unwrap();
    assert!(text.contains("cannot be checked for secrets"), "{text}");
    assert!(log.lock().unwrap().is_empty());
    // items.read is not sensitive: passed, recorded as unscanned.
    let resp = client()
        .get(format!("http://{}/items/1", proxy.addr))
        .header("authorization", "Bearer rk_bot")
        .body(big)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let ids = decision_ids(&proxy.store).await;
    let rec = record(&proxy.store, &ids[1]).await;
    assert!(
        rec["scan"]["incomplete"]
            .as_str()
            .unwrap()
            .contains("not scanned"),
        "{rec}"
    );
    // A compressed body that does not decompress cannot be checked either.
    let resp = client()
        .post(format!("http://{}/items/1", proxy.addr))
        .header("authorization", "Bearer rk_bot")
        .header("remit-purpose", "sync")
        .header("content-encoding", "gzip")
        .body("not gzip at all")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// A corpus case: its body as sent and its `Content-Encoding`.
struct Case {
    body: Vec<u8>,
    encoding: Option<String>,
}

fn corpus() -> (Vec<Case>, BTreeSet<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../remit-scan/tests/corpus");
    let text = std::fs::read_to_string(dir.join("corpus.jsonl")).unwrap();
    let scanner = remit_scan::Scanner::builtin();
    let mut cases = Vec::new();
    let mut secrets = BTreeSet::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["expect"].as_array().unwrap().is_empty() {
            continue;
        }
        let body = match (&v["body"], &v["body_b64"]) {
            (Value::String(s), _) => s.as_bytes().to_vec(),
            (_, Value::String(b)) => STANDARD.decode(b).unwrap(),
            _ => panic!("corpus line without a body"),
        };
        let encoding = v["encoding"]
            .as_str()
            .filter(|e| *e != "identity")
            .map(str::to_owned);
        // The secrets themselves: where the scanner's span holds exactly the secret, the
        // bytes there (and, inside JSON strings, their unescaped text).
        if encoding.is_none() {
            for f in scanner
                .scan(&body, remit_scan::ContentEncoding::Identity)
                .unwrap()
                .items
            {
                if f.exact {
                    let raw = String::from_utf8_lossy(&body[f.span.clone()]).into_owned();
                    if let Ok(Value::String(s)) = serde_json::from_str(&format!("\"{raw}\"")) {
                        secrets.insert(s);
                    }
                    secrets.insert(raw);
                }
            }
        }
        cases.push(Case { body, encoding });
    }
    secrets.retain(|s| s.len() >= 12);
    (cases, secrets)
}

/// Every true positive of the scanner's corpus goes through remit both ways — in a request
/// that is let through (`alert`) to an upstream that echoes it back, with `log_output`
/// keeping review copies — and afterwards no secret appears in any file of the data
/// directory: records hold fingerprints, review copies are redacted or withheld.
#[tokio::test]
async fn no_secret_of_the_corpus_is_written_to_the_data_directory() {
    let (cases, secrets) = corpus();
    assert!(
        cases.len() >= 600 && secrets.len() >= 300,
        "{} cases, {} secrets",
        cases.len(),
        secrets.len()
    );
    let echo = axum::Router::new().fallback(|req: Request| async move {
        let ctype = req.headers().get("content-type").cloned();
        let encoding = req.headers().get("content-encoding").cloned();
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap();
        let mut resp = axum::response::Response::new(Body::from(body));
        if let Some(c) = ctype {
            resp.headers_mut().insert("content-type", c);
        }
        if let Some(e) = encoding {
            resp.headers_mut().insert("content-encoding", e);
        }
        resp
    });
    let url = serve_upstream(echo).await;
    let policy = "@obligation(\"log_output\")\npermit (principal == Identity::\"bot\", action in [Action::\"items.read\", Action::\"items.write\"], resource);";
    let text = config(&url, "[scan]\nrequest = \"alert\"\nresponse = \"alert\"")
        .replace("max_body_bytes = 4096", "max_body_bytes = 65536");
    let proxy = crate::start_proxy(&text, policy).await;
    let dir = proxy.data_dir().to_owned();
    for (i, case) in cases.iter().enumerate() {
        let mut req = client()
            .post(format!("http://{}/items/{i}", proxy.addr))
            .header("authorization", "Bearer rk_bot")
            .header("remit-purpose", "sync")
            .body(case.body.clone());
        if let Some(e) = &case.encoding {
            req = req.header("content-encoding", e);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "case {i}");
        resp.bytes().await.unwrap();
    }
    // Every outcome (and its review copy) is written before looking.
    let ids = decision_ids(&proxy.store).await;
    assert!(!ids.is_empty());
    for id in ids.iter().take(5) {
        outcome_of(&proxy.store, id).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 2, "{files:?}");
    let mut leaks = Vec::new();
    for f in &files {
        // Secrets are ASCII, which a lossy UTF-8 reading keeps byte for byte.
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for s in &secrets {
            if text.contains(s.as_str()) {
                leaks.push(format!("{}: a `{}…` secret", f.display(), &s[..6]));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks: {leaks:?}", leaks.len());
}
