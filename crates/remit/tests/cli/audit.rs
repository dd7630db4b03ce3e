//! `remit audit` on a real gateway's data directory: verification (and its exit codes),
//! proofs checked by remit and by a Python script with only the standard library, search,
//! tail and exports; and the crash test: SIGKILL under load, fifty times, and every
//! request the client saw answered still has its durable record and the log verifies.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{remit, spawn_serving, text};

/// A serving world: the quickstart on ephemeral ports, checkpoints every `interval_ms`.
fn world(dir: &Path, interval_ms: u64) -> (String, PathBuf) {
    crate::serving_world(
        dir,
        &format!("\n[audit]\ncheckpoint_interval_ms = {interval_ms}\ncheckpoint_every = 200\n"),
    )
}

fn request(i: u64) -> Value {
    let (key, purpose, path) = match i % 3 {
        0 => (
            "rk_demo_support_assistant",
            "case-summary",
            format!("/tickets/{i}"),
        ),
        1 => (
            "rk_demo_support_assistant",
            "marketing",
            format!("/tickets/{i}"),
        ),
        _ => ("rk_unknown_key", "x", "/status".to_owned()),
    };
    json!({"method": "GET", "path": path, "source_ip": "127.0.0.1",
           "headers": {"Authorization": format!("Bearer {key}"), "Remit-Purpose": purpose}})
}

/// `clients` loops sending decisions until `stop` or an error; returns the decision ids
/// of every request answered 200.
async fn load(addr: String, clients: u64, stop: Arc<AtomicBool>) -> Vec<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, addr, stop) = (http.clone(), addr.clone(), stop.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                // Bounded: at most this many requests per client per run.
                for i in 0..100_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(resp) = http
                        .post(format!("http://{addr}/v1/decide"))
                        .json(&request(c * 1_000_000 + i))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if resp.status() != 200 {
                        break;
                    }
                    let Ok(v) = resp.json::<Value>().await else {
                        break;
                    };
                    ids.push(v["decision_id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

fn data_args(data: &Path) -> [String; 2] {
    ["--data-dir".into(), data.display().to_string()]
}

fn run(args: &[&str], data: &Path) -> std::process::Output {
    let d = data_args(data);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(d.iter().map(String::as_str));
    remit(&all)
}

/// Every decision id the log holds.
fn logged_ids(data: &Path) -> HashSet<String> {
    let out = run(&["audit", "export", "--format", "jsonl"], data);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["record"]["kind"] == "decision")
                .then(|| v["record"]["decision_id"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_record_and_the_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = world(dir.path(), 20);
    let data_s = data.display().to_string();
    let mut acknowledged: HashSet<String> = HashSet::new();
    // A fixed sequence of kill delays (a linear congruential generator), 40–250 ms.
    let mut seed: u64 = 0x5eed;
    let runs = 50;
    for run_no in 0..runs {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(40 + (seed >> 33) % 211);
        let (mut server, addr, _) =
            spawn_serving(&["serve", "--config", &cfg, "--data-dir", &data_s]);
        let stop = Arc::new(AtomicBool::new(false));
        let client = tokio::spawn(load(addr, 8, stop.clone()));
        tokio::time::sleep(delay).await;
        // SIGKILL: no shutdown, no last checkpoint, possibly mid-transaction.
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let ids = client.await.unwrap();
        acknowledged.extend(ids);
        let logged = logged_ids(&data);
        let lost: Vec<_> = acknowledged.difference(&logged).take(5).collect();
        assert!(
            lost.is_empty(),
            "run {run_no}: answered but not recorded: {lost:?}"
        );
        let out = run(&["audit", "verify"], &data);
        assert!(out.status.success(), "run {run_no}: {}", text(&out));
    }
    assert!(
        acknowledged.len() > runs * 10,
        "the load really ran: {} answered",
        acknowledged.len()
    );
}

#[tokio::test]
async fn audit_commands_verify_prove_search_tail_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = world(dir.path(), 3_600_000);
    let data_s = data.display().to_string();
    let ids = {
        let (server, addr, _) = spawn_serving(&["serve", "--config", &cfg, "--data-dir", &data_s]);
        let http = reqwest::Client::new();
        let mut ids = Vec::new();
        for i in 0..30 {
            let v: Value = http
                .post(format!("http://{addr}/v1/decide"))
                .json(&request(i))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(v["decision_id"].as_str().unwrap().to_owned());
        }
        // A graceful stop signs a last checkpoint.
        server.stop();
        ids
    };

    let out = run(&["audit", "verify"], &data);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("ok: replica `replica-1`: 30 records") && t.contains("trusting"),
        "{t}"
    );

    // Proofs: by remit, and by Python's standard library alone.
    let proof = run(&["audit", "prove", &ids[15]], &data);
    assert!(proof.status.success(), "{}", text(&proof));
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, &proof.stdout).unwrap();
    let pub_key = data.join("audit-key.pub").display().to_string();
    let proof_s = proof_file.display().to_string();
    let out = run(
        &[
            "audit",
            "verify",
            "--proof",
            &proof_s,
            "--public-key",
            &pub_key,
        ],
        &data,
    );
    assert!(out.status.success(), "{}", text(&out));
    let export = run(&["audit", "export", "--format", "jsonl"], &data);
    let export_file = dir.path().join("log.jsonl");
    std::fs::write(&export_file, &export.stdout).unwrap();
    let py = |args: &[&Path]| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/verify_audit.py");
        let out = std::process::Command::new("python3")
            .arg(script)
            .arg(args[0])
            .args(
                args.get(1)
                    .map(|p| vec![Path::new("--proof"), p])
                    .unwrap_or_default(),
            )
            .output()
            .expect("python3 runs the third-party verifier");
        (out.status.code(), text(&out))
    };
    let (code, t) = py(&[&export_file, &proof_file]);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("ok: chain replica-1: 30 records") && t.contains("ok: record 15"),
        "{t}"
    );

    // A tampered proof fails both checkers; so does a tampered export line.
    let bad = String::from_utf8(proof.stdout.clone()).unwrap().replacen(
        "support-assistant",
        "support-assistent",
        1,
    );
    let bad_file = dir.path().join("bad-proof.json");
    std::fs::write(&bad_file, bad).unwrap();
    let out = run(
        &[
            "audit",
            "verify",
            "--proof",
            &bad_file.display().to_string(),
            "--public-key",
            &pub_key,
        ],
        &data,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("INVALID"), "{}", text(&out));
    assert_eq!(py(&[&export_file, &bad_file]).0, Some(1));
    let lines = String::from_utf8(export.stdout.clone()).unwrap();
    let edited = lines.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
    let edited_file = dir.path().join("edited.jsonl");
    std::fs::write(&edited_file, edited).unwrap();
    let (code, t) = py(&[&edited_file]);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("does not follow record"), "{t}");

    // Another key: exit 1, TAMPERED, naming the checkpoint.
    let other = dir.path().join("other.pub");
    std::fs::write(
        &other,
        "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n",
    )
    .unwrap();
    let out = run(
        &[
            "audit",
            "verify",
            "--public-key",
            &other.display().to_string(),
        ],
        &data,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("TAMPERED") && text(&out).contains("not among the trusted public keys"),
        "{}",
        text(&out)
    );

    // Search, tail, OCSF.
    let out = run(
        &[
            "audit",
            "search",
            "--verdict",
            "deny",
            "--identity",
            "support-assistant",
        ],
        &data,
    );
    assert!(out.status.success(), "{}", text(&out));
    let found: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 10, "{found:?}");
    assert!(
        found
            .iter()
            .all(|r| r["decision"] == "deny" && r["purpose"] == "marketing")
    );
    let out = run(&["audit", "tail", "-n", "3"], &data);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
    let out = run(&["audit", "export", "--format", "ocsf"], &data);
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 30);
    assert!(
        events.iter().all(|e| e["class_uid"] == 6004
            && e["type_uid"] == 600400 + e["activity_id"].as_u64().unwrap())
    );
    assert!(
        events.iter().any(|e| e["activity_id"] == 1)
            && events.iter().any(|e| e["activity_id"] == 2)
    );
    assert!(
        events[0]["unmapped"]["remit"]["integrity"]["leaf_sha256"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
    assert!(
        !lines.contains("rk_demo_support_assistant"),
        "no key in the log"
    );

    // Bad input: clear errors, exit 2.
    for (args, says) in [
        (
            vec!["audit", "search", "--since", "yesterday"],
            "not an RFC 3339 time",
        ),
        (
            vec!["audit", "search", "--verdict", "maybe"],
            "is not one of",
        ),
        (
            vec!["audit", "verify", "--public-key", "/nonexistent.pub"],
            "nonexistent.pub",
        ),
        (
            vec![
                "audit",
                "verify",
                "--proof",
                &export_file.display().to_string(),
                "--public-key",
                &pub_key,
            ],
            "is not an inclusion proof",
        ),
        (
            vec!["audit", "prove", "no-such-id"],
            "no decision record has id `no-such-id`",
        ),
    ] {
        let out = run(&args, &data);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    let out = remit(&[
        "audit",
        "verify",
        "--data-dir",
        &dir.path().join("nowhere").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no audit log here"), "{}", text(&out));
    let out = remit(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("--data-dir DIR or --config FILE"),
        "{}",
        text(&out)
    );
}

/// A token issued at the token endpoint leaves a `token` record that `remit audit search
/// --kind token` finds, that both verifiers accept as part of the chain, and that never
/// holds the token.
#[tokio::test]
async fn issued_tokens_are_in_the_audit_log_and_searchable_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = world(dir.path(), 3_600_000);
    let data_s = data.display().to_string();
    let token = {
        let (server, _, proxy) = spawn_serving(&["serve", "--config", &cfg, "--data-dir", &data_s]);
        let v: Value = reqwest::Client::new()
            .post(format!("http://{proxy}/oauth2/token"))
            .basic_auth("support-assistant", Some("rk_demo_support_assistant"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=tickets.read&purpose=case-summary")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        server.stop();
        v["access_token"].as_str().expect("a token").to_owned()
    };
    let out = run(
        &[
            "audit",
            "search",
            "--kind",
            "token",
            "--identity",
            "support-assistant",
        ],
        &data,
    );
    assert!(out.status.success(), "{}", text(&out));
    let found: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0]["kind"].as_str(),
            found[0]["client_auth"].as_str(),
            found[0]["scope"].as_str()
        ),
        (
            Some("token"),
            Some("client_secret_basic"),
            Some("tickets.read")
        )
    );
    let out = run(
        &["audit", "search", "--identity", "support-assistant"],
        &data,
    );
    assert!(out.stdout.is_empty(), "decisions only by default");
    let out = run(&["audit", "search", "--kind", "tokens"], &data);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(&["audit", "verify"], &data);
    assert!(out.status.success(), "{}", text(&out));
    let export = run(&["audit", "export", "--format", "jsonl"], &data);
    let lines = String::from_utf8(export.stdout).unwrap();
    assert!(!lines.contains(&token) && lines.contains("\"kind\":\"token\""));
    let export_file = dir.path().join("log.jsonl");
    std::fs::write(&export_file, &lines).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/verify_audit.py");
    let py = std::process::Command::new("python3")
        .arg(script)
        .arg(&export_file)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py));
}
