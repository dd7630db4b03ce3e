//! `remit serve` with the behaviour watch, as a user runs it: the quickstart's support
//! assistant learns, its key is used from a new network and quarantined, the webhook hears
//! of it, `remit alerts` lists, acknowledges and resolves it (and refuses malformed input
//! clearly), and after a graceful restart the baselines are still there: the first request
//! from another new network is alerted at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{remit, spawn_serving, text};

fn support(ip: &str, ua: &str, path: &str) -> Value {
    json!({"method": "GET", "path": path, "source_ip": ip,
        "headers": {"Authorization": "Bearer rk_demo_support_assistant",
                    "Remit-Purpose": "case-summary", "User-Agent": ua}})
}

async fn decide(admin: &str, req: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{admin}/v1/decide"))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn hook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(receive(listener, got.clone()));
    (url, got)
}

/// A minimal HTTP/1.1 receiver on a raw socket (the binary's tests have no web framework):
/// reads one request per connection, keeps its JSON body, answers 204.
async fn receive(listener: tokio::net::TcpListener, got: Arc<Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut sock, _)) = listener.accept().await {
        let got = got.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Bounded: a test receiver reads at most 64 KiB.
            while buf.len() < 65_536 {
                let Ok(n) = sock.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    continue;
                };
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() < len {
                    continue;
                }
                if let Ok(v) = serde_json::from_str(&body[..len]) {
                    got.lock().unwrap().push(v);
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
                return;
            }
        });
    }
}

/// The open alert of `detector` raised by decision `decision_id`, once it is listed
/// (alerts are stored off the request path, within moments).
async fn alert_for(admin: &str, decision_id: &Value, detector: &str) -> Value {
    for _ in 0..100 {
        let v: Value = reqwest::get(format!("http://{admin}/v1/alerts?state=open"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = v["alerts"].as_array().and_then(|all| {
            all.iter()
                .find(|a| a["decision_id"] == *decision_id && a["detector"] == detector)
                .cloned()
        });
        if let Some(a) = found {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no `{detector}` alert for decision {decision_id} within 5 s");
}

#[tokio::test]
async fn serve_alerts_quarantines_and_keeps_watching_across_a_restart() {
    let (hook, received) = hook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = crate::serving_world(
        dir.path(),
        &format!(
            "\n[anomaly]\nlearning_requests = 20\nlearning_duration_s = 0\ncooldown_s = 0\nsave_interval_s = 3600\n\n[alerts]\nwebhook = \"{hook}\"\nquarantine = true\n"
        ),
    );
    let data_s = data.display().to_string();
    let (server, admin, _) = spawn_serving(&["serve", "--config", &cfg, "--data-dir", &data_s]);
    for i in 0..25 {
        let v = decide(
            &admin,
            support("10.20.30.40", "support-ui/3.1", &format!("/tickets/{i}")),
        )
        .await;
        assert_eq!(v["decision"], "allow", "{v}");
    }
    let leak = decide(
        &admin,
        support("203.0.113.77", "python-requests/2.32", "/tickets/1"),
    )
    .await;
    assert_eq!(leak["policies"], json!(["remit.quarantine"]), "{leak}");
    let alert = alert_for(&admin, &leak["decision_id"], "new_origin").await;
    assert_eq!(alert["identity"], "support-assistant");
    assert_eq!(alert["quarantined"], true, "{alert}");
    let id = alert["id"].as_str().unwrap().to_owned();
    let sent = |r: &Mutex<Vec<Value>>| r.lock().unwrap().iter().any(|v| v["id"] == id.as_str());
    for _ in 0..100 {
        if sent(&received) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent(&received), "the webhook received the alert");
    server.stop();

    // `remit alerts` on the stopped gateway's data directory.
    let list = remit(&["alerts", "list", "--data-dir", &data_s]);
    assert!(list.status.success(), "{}", text(&list));
    let out = text(&list);
    assert!(
        out.contains(&id) && out.contains("new_origin") && out.contains("(quarantined)"),
        "{out}"
    );
    let ack = remit(&[
        "alerts",
        "ack",
        &id,
        "--data-dir",
        &data_s,
        "--by",
        "alice",
        "--reason",
        "investigating",
    ]);
    assert!(ack.status.success(), "{}", text(&ack));
    assert!(
        text(&ack).contains("acknowledged by alice: investigating"),
        "{}",
        text(&ack)
    );
    for (args, says) in [
        (
            vec!["alerts", "ack", "42", "--by", "a", "--reason", "r"],
            "`42` is not an alert id",
        ),
        (
            vec!["alerts", "list", "--state", "closed"],
            "--state: state: `closed` is not a state",
        ),
        (vec!["alerts", "list", "--limit", "0"], "--limit"),
        (
            vec!["alerts", "ack", &id, "--by", "", "--reason", "r"],
            "--by: by: must not be empty",
        ),
        (
            vec!["alerts", "ack", &id, "--by", "a", "--reason", "r"],
            "is acknowledged; it cannot be acknowledged",
        ),
        (
            vec!["alerts", "resolve", "al-0", "--by", "a", "--reason", "r"],
            "no alert `al-0`",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["--data-dir", &data_s]);
        let o = remit(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    let o = remit(&["alerts", "list"]);
    assert!(
        text(&o).contains("--data-dir DIR or --config FILE"),
        "{}",
        text(&o)
    );

    // Restarted: the baseline was saved at the stop, so the assistant is still watched.
    let (server, admin, _) = spawn_serving(&["serve", "--config", &cfg, "--data-dir", &data_s]);
    let again = decide(
        &admin,
        support("198.51.100.20", "support-ui/3.1", "/tickets/2"),
    )
    .await;
    let alert = alert_for(&admin, &again["decision_id"], "new_origin").await;
    assert_eq!(
        alert["quarantined"], false,
        "confidence 75 is below the quarantine's 90"
    );
    let resolve = remit(&[
        "alerts",
        "resolve",
        &id,
        "--config",
        &cfg,
        "--data-dir",
        &data_s,
        "--by",
        "bob",
        "--reason",
        "key rotated",
    ]);
    assert!(
        resolve.status.success(),
        "beside a running gateway: {}",
        text(&resolve)
    );
    assert!(
        text(&resolve).contains("resolved by bob: key rotated"),
        "{}",
        text(&resolve)
    );
    server.stop();
}
