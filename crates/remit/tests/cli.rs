//! The `remit` binary as a user runs it: exit codes, messages naming file and line, the
//! quickstart corpus, key generation, and `serve` and `demo` answering real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "cli/alerts.rs"]
mod alerts;
#[path = "cli/approval.rs"]
mod approval;
#[path = "cli/audit.rs"]
mod audit;
#[path = "cli/simulate.rs"]
mod simulate;
#[path = "cli/token.rs"]
mod token;

fn remit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remit"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart")
}

fn config() -> String {
    quickstart().join("remit.toml").display().to_string()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

#[test]
fn check_exit_codes_follow_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let allow = write(dir.path(), "allow.json", &json!({"method": "GET", "path": "/tickets/1",
        "headers": {"Authorization": "Bearer rk_demo_support_assistant", "Remit-Purpose": "case-summary"}}).to_string());
    let o = remit(&["check", "--config", &config(), "--request", &allow]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decision"], "allow");

    let deny = write(
        dir.path(),
        "deny.json",
        &json!({"method": "GET", "path": "/tickets/1"}).to_string(),
    );
    let o = remit(&["check", "--config", &config(), "--request", &deny]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    for (name, content, want) in [
        ("bad.json", "{\"method\":", "invalid request JSON"),
        (
            "unknown.json",
            "{\"method\":\"GET\",\"path\":\"/\",\"x\":1}",
            "unknown field",
        ),
        (
            "dup.json",
            "{\"method\":\"GET\",\"path\":\"/\",\"headers\":{\"Authorization\":\"Bearer a\",\"authorization\":\"Bearer b\"}}",
            "more than once",
        ),
        (
            "path.json",
            "{\"method\":\"GET\",\"path\":\"/a%2fb\"}",
            "encodes `/`",
        ),
    ] {
        let f = write(dir.path(), name, content);
        let o = remit(&["check", "--config", &config(), "--request", &f]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        assert!(
            text(&o).contains(want) && text(&o).contains(name),
            "{name}: {}",
            text(&o)
        );
    }
    let o = remit(&[
        "check",
        "--config",
        &config(),
        "--request",
        "/nonexistent.json",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn config_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(quickstart().join("remit.toml")).unwrap();
    let broken = original.replace(
        "kind = \"assistant\"",
        "kind = \"assistant\"\ncolour = \"blue\"",
    );
    let cfg = write(dir.path(), "remit.toml", &broken);
    let line = broken
        .lines()
        .position(|l| l.starts_with("colour"))
        .unwrap()
        + 1;
    let o = remit(&["policy", "validate", "--config", &cfg]);
    assert_eq!(o.status.code(), Some(2));
    let out = text(&o);
    assert!(out.contains(&format!("remit.toml:{line}:")), "{out}");
    assert!(out.contains("unknown field `colour`"), "{out}");
}

#[test]
fn policy_validate_reports_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        quickstart().join("remit.toml"),
        dir.path().join("remit.toml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let cfg = dir.path().join("remit.toml").display().to_string();
    let o = remit(&["policy", "validate", "--config", &cfg]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "an empty policy directory is valid: {}",
        text(&o)
    );
    write(
        &dir.path().join("policies"),
        "bad.cedar",
        "permit (principal, action, resource)\nwhen { context.nope };\n",
    );
    let o = remit(&["policy", "validate", "--config", &cfg]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("bad.cedar:2:"), "{}", text(&o));
}

#[test]
fn policy_test_runs_the_quickstart_corpus() {
    let cases = quickstart().join("cases").display().to_string();
    let o = remit(&["policy", "test", &cases]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(" passed, 0 failed"),
        "{}",
        text(&o)
    );

    // A case that expects the wrong verdict fails the run with exit code 1.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "wrong.json",
        &json!({"request": {"method": "GET", "path": "/status"}, "expect": {"decision": "deny"}})
            .to_string(),
    );
    let o = remit(&[
        "policy",
        "test",
        &dir.path().display().to_string(),
        "--config",
        &config(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("expected \"deny\", got \"allow\""),
        "{}",
        text(&o)
    );
}

#[test]
fn key_new_prints_a_key_and_its_hash() {
    let o = remit(&["key", "new", "--id", "bot-key"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("rk_"))
        .unwrap();
    let hash = out
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .unwrap()
        .trim_end_matches('"');
    assert_eq!(hash, remit_hash(key));
    assert!(out.contains("id = \"bot-key\""));
    let o = remit(&["key", "new", "--id", "bad id"]);
    assert_eq!(o.status.code(), Some(2));
}

fn remit_hash(key: &str) -> String {
    // The binary must print SHA-256(key); check with the system's sha256sum.
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), key.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

pub(crate) struct Running(pub(crate) Child);

impl Running {
    /// Stops the server as an operator would (SIGTERM) and asserts it exited cleanly: a
    /// graceful stop signs a last checkpoint and releases the data directory.
    pub(crate) fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.0.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `remit` with `args` and waits for the log line naming the admin and proxy
/// addresses.
fn spawn_serving(args: &[&str]) -> (Running, String, String) {
    let (running, admin, proxy, _) = spawn_serving_line(args);
    (running, admin, proxy)
}

/// [`spawn_serving`], with the whole log line that named the addresses.
fn spawn_serving_line(args: &[&str]) -> (Running, String, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_remit"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let field = |name: &str| {
                line.split(name)
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_owned)
            };
            if let (Some(admin), Some(proxy)) = (field("admin="), field("proxy=")) {
                let _ = tx.send((admin, proxy, line.clone()));
            }
        }
    });
    let (admin, proxy, line) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("remit started serving");
    (running, admin, proxy, line)
}

/// The quickstart world in `dir` with every listener on an ephemeral port and `extra`
/// appended to its configuration; returns the configuration path and a data directory.
pub(crate) fn serving_world(dir: &Path, extra: &str) -> (String, PathBuf) {
    let mut text = std::fs::read_to_string(quickstart().join("remit.toml")).unwrap();
    for port in ["8440", "8441", "8442", "8443"] {
        text = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
    }
    text.push_str(extra);
    std::fs::write(dir.join("remit.toml"), text).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::copy(
        quickstart().join("policies/quickstart.cedar"),
        dir.join("policies/q.cedar"),
    )
    .unwrap();
    (
        dir.join("remit.toml").display().to_string(),
        dir.join("state"),
    )
}

/// Copies the quickstart's demo issuer (its DEMO-ONLY key and key set) into a served world
/// in `dir`, for `remit token demo-login`, which signs with the key beside the configuration.
pub(crate) fn with_demo_issuer(dir: &Path) {
    std::fs::create_dir_all(dir.join("demo-issuer")).unwrap();
    for f in ["DEMO-ONLY-private-key.pem", "jwks.json"] {
        std::fs::copy(
            quickstart().join("demo-issuer").join(f),
            dir.join("demo-issuer").join(f),
        )
        .unwrap();
    }
}

/// A demo human's token for the served world (whose audience is its own).
pub(crate) fn demo_token(cfg: &str, human: &str, group: &str) -> String {
    let o = remit(&[
        "token",
        "demo-login",
        human,
        "--groups",
        group,
        "--config",
        cfg,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

async fn decide(addr: &str, req: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/decide"))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn serve_decides_and_keeps_records_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = serving_world(dir.path(), "");
    let (_server, addr, _proxy) = spawn_serving(&[
        "serve",
        "--config",
        &cfg,
        "--data-dir",
        &data.display().to_string(),
    ]);
    let v = decide(&addr, json!({"method": "GET", "path": "/status"})).await;
    assert_eq!(v["decision"], "allow", "{v}");
    assert!(
        data.join("remit.db").is_file(),
        "the store lives in --data-dir"
    );
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("remit_decisions_total{verdict=\"allow\"} 1"),
        "{metrics}"
    );
}

/// `gateway.worker_threads` decides the runtime `serve` runs on: one thread is the
/// single-threaded scheduler, and it serves, decides and stops as the multi-threaded does.
#[tokio::test]
async fn serve_runs_on_the_worker_threads_configured() {
    for (threads, want) in [
        (1, "workers=1 scheduler=\"single_threaded\""),
        (3, "workers=3 scheduler=\"multi_threaded\""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, data) = serving_world(dir.path(), "");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(
            text.contains("[gateway]\n"),
            "the quickstart has a [gateway] table"
        );
        let text = text.replacen(
            "[gateway]\n",
            &format!("[gateway]\nworker_threads = {threads}\n"),
            1,
        );
        std::fs::write(&cfg, text).unwrap();
        let (server, addr, proxy, line) = spawn_serving_line(&[
            "serve",
            "--config",
            &cfg,
            "--data-dir",
            &data.display().to_string(),
        ]);
        assert!(line.contains(want), "{threads} threads: {line}");
        let v = decide(&addr, json!({"method": "GET", "path": "/status"})).await;
        assert_eq!(v["decision"], "allow", "{threads} threads: {v}");
        // The proxy listener answers on the same runtime: a request without a
        // credential is decided (a deny, 403) before any upstream is asked (none runs
        // here: forwarding would be a 502).
        let r = reqwest::get(format!("http://{proxy}/api/tickets/1"))
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{threads} threads");
        server.stop();
    }
}

/// The quickstart as the README runs it: `remit demo`, then each scenario.
#[tokio::test]
async fn demo_runs_the_quickstart_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, addr, proxy) =
        spawn_serving(&["demo", "--data-dir", &dir.path().display().to_string()]);
    let bearer = |k: &str| format!("Bearer rk_demo_{k}");
    let scenarios = [
        (
            json!({"method": "GET", "path": "/tickets/42", "headers": {"Authorization": bearer("support_assistant"), "Remit-Purpose": "case-summary"}}),
            "allow",
        ),
        (
            json!({"method": "POST", "path": "/tickets/42/comments", "headers": {"Authorization": bearer("support_assistant"), "Remit-Purpose": "case-summary"}}),
            "deny",
        ),
        (
            json!({"method": "POST", "path": "/repos/web/pulls", "headers": {"Authorization": bearer("codegen_workflow"), "Remit-Purpose": "code-change"}}),
            "allow",
        ),
        (
            json!({"method": "POST", "path": "/repos/web/deployments", "headers": {"Authorization": bearer("codegen_workflow"), "Remit-Purpose": "code-change"}}),
            "approval_required",
        ),
        (
            json!({"method": "POST", "path": "/mcp/docs", "headers": {"Authorization": bearer("retrieval_agent"), "Remit-Purpose": "doc-retrieval"},
            "body": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_docs", "arguments": {"query": "deploy"}}}}),
            "allow",
        ),
        (
            json!({"method": "PUT", "path": "/inventory/sku-1", "headers": {"Authorization": bearer("inventory_sync"), "Remit-Purpose": "inventory-refresh"}, "source_ip": "127.0.0.1"}),
            "allow",
        ),
        (
            json!({"method": "GET", "path": "/tickets/42", "headers": {"Authorization": "Bearer rk_somebody_else"}}),
            "deny",
        ),
    ];
    for (req, want) in scenarios {
        let v = decide(&addr, req.clone()).await;
        assert_eq!(v["decision"], want, "{req} -> {v}");
    }
    // The demo upstreams are up too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match reqwest::get("http://127.0.0.1:8450/status").await {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("the demo API did not answer: {other:?}"),
        }
    }

    // Through the proxy: an allowed read reaches the upstream with remit's attribution and
    // without the client's key; a write the boundary refuses never does.
    let c = reqwest::Client::new();
    let r = c
        .get(format!("http://{proxy}/tickets/42"))
        .header("Authorization", bearer("support_assistant"))
        .header("Remit-Purpose", "case-summary")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "ticket 42 does not exist upstream, so the upstream answered"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["seen_by_upstream"]["remit-identity"], "support-assistant",
        "{v}"
    );
    assert_eq!(
        v["seen_by_upstream"]["remit-purpose"], "case-summary",
        "{v}"
    );
    assert!(
        v["seen_by_upstream"]["remit-decision-id"].is_string(),
        "{v}"
    );
    let r = c
        .post(format!("http://{proxy}/tickets/1/comments"))
        .header("Authorization", bearer("support_assistant"))
        .header("Remit-Purpose", "case-summary")
        .json(&json!({"body": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("boundary"), "{v}");
    let history: Value = c
        .get(format!("http://{proxy}/tickets/1/history"))
        .header("Authorization", bearer("support_assistant"))
        .header("Remit-Purpose", "case-summary")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !history.to_string().contains("hello"),
        "the refused comment never reached the upstream: {history}"
    );

    // MCP through the proxy: a refused tool call comes back as a tool error the client shows.
    let r = c
        .post(format!("http://{proxy}/mcp/docs"))
        .header("Authorization", bearer("retrieval_agent"))
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "admin_reindex", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("boundary"),
        "{v}"
    );
}

#[test]
fn hostile_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(quickstart().join("remit.toml")).unwrap();

    // A key written twice in one table.
    let dup = original.replace(
        "kind = \"assistant\"",
        "kind = \"assistant\"\nkind = \"agent\"",
    );
    let cfg = write(dir.path(), "dup.toml", &dup);
    let o = remit(&["policy", "validate", "--config", &cfg]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("dup.toml:") && text(&o).contains("duplicate key"),
        "{}",
        text(&o)
    );

    // An oversized configuration is refused before it is parsed.
    let big = write(dir.path(), "big.toml", &"#".repeat(17 * 1024 * 1024));
    let o = remit(&["policy", "validate", "--config", &big]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("big.toml") && text(&o).contains("larger than"),
        "{}",
        text(&o)
    );

    // A configuration that is not UTF-8.
    let bin = dir.path().join("bin.toml");
    std::fs::write(&bin, b"[gateway]\nreplica_id = \"\xff\"\n").unwrap();
    let o = remit(&["policy", "validate", "--config", &bin.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("not UTF-8"), "{}", text(&o));

    // An oversized request file for `check`.
    let req = write(
        dir.path(),
        "huge.json",
        &format!(
            "{{\"method\":\"GET\",\"path\":\"/\",\"body\":\"{}\"}}",
            "a".repeat(300 * 1024)
        ),
    );
    let o = remit(&["check", "--config", &config(), "--request", &req]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("larger than"), "{}", text(&o));

    // A case file that is not a case fails that case by name, and the run.
    let cases = dir.path().join("cases");
    std::fs::create_dir(&cases).unwrap();
    write(&cases, "broken.json", "{\"request\": 1}");
    let o = remit(&[
        "policy",
        "test",
        &cases.display().to_string(),
        "--config",
        &config(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("broken.json") && text(&o).contains("not a case file"),
        "{}",
        text(&o)
    );

    // A policy directory that does not exist.
    let nodir = original.replace("policy_dir = \"policies\"", "policy_dir = \"nowhere\"");
    let cfg = write(dir.path(), "nodir.toml", &nodir);
    let o = remit(&["policy", "validate", "--config", &cfg]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("nowhere") && text(&o).contains("policy directory"),
        "{}",
        text(&o)
    );
}

#[test]
fn identity_list_and_show_read_the_registry() {
    let o = remit(&["identity", "list", "--config", &config()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for id in [
        "support-assistant",
        "codegen-workflow",
        "retrieval-agent",
        "inventory-sync",
    ] {
        assert!(out.contains(id), "{out}");
    }
    let o = remit(&["identity", "show", "retrieval-agent", "--config", &config()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["class"], "agent");
    assert_eq!(
        v["boundary"]["actions"],
        json!(["docs.search", "docs.session"])
    );
    assert_eq!(v["rate"], json!({"count": 30, "per_s": 60}));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("sha256"),
        "no key hashes in the output"
    );
    // An identity's SPIFFE IDs are listed beside its credentials.
    let o = remit(&[
        "identity",
        "show",
        "support-assistant",
        "--config",
        &config(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["spiffe_ids"],
        json!([{"id": "support-assistant-svid", "spiffe_id": "spiffe://remit.example/ns/support/sa/support-assistant"}])
    );
    for (id, want) in [
        ("nobody", "no identity `nobody`"),
        ("Bad Id", "not a valid identity id"),
    ] {
        let o = remit(&["identity", "show", id, "--config", &config()]);
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o).contains(want), "{}", text(&o));
    }
}
#[path = "cli/tls.rs"]
mod tls;
