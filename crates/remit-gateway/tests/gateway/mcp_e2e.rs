//! End-to-end MCP tests against real peers that nobody here wrote: the reference server
//! `@modelcontextprotocol/server-everything` as the upstream, driven through remit's proxy by
//! the official MCP TypeScript SDK client over Streamable HTTP (both pinned in
//! `e2e/package-lock.json`; install them with `npm ci --prefix e2e`).
//!
//! ```text
//! node e2e/client.mjs ──HTTP──▶ remit proxy (in-process) ──▶ byte relay ──▶ node server-everything
//! ```
//!
//! The relay between remit and the server records every byte that crosses it, so a test can
//! show that a refused call never reached the server, and that an allowed one did.
//!
//! These tests need Node.js on `PATH` and `e2e/node_modules`; without them they fail with a
//! message saying so rather than silently passing.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use remit_store::SqliteStore;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The endpoint server-everything serves Streamable HTTP on (fixed by the server).
const MCP_PATH: &str = "/mcp";
/// agent-1's API key; the config holds only its SHA-256.
const KEY: &str = "rk_e2e_agent_one";
const ECHO: &str = "echo";
const LONG: &str = "trigger-long-running-operation";
/// Mapped to an action a policy permits but agent-1's boundary leaves out.
const SUM: &str = "get-sum";
/// Mapped to an action no boundary includes.
const ENV: &str = "get-env";
/// How long server-everything may take to start accepting connections.
const STARTUP: Duration = Duration::from_secs(30);
/// How long one client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

const CONFIG: &str = r#"
[gateway]
upstream_timeout_s = 30

[[upstream]]
name = "everything"
url = "UPSTREAM_URL"
prefix = "/mcp"
kind = "mcp"

[[mcp_server]]
name = "everything"
path = "/mcp"
session_action = "everything.session"

[[mcp_server.tool]]
name = "echo"
action = "everything.echo"
sensitive = false

[[mcp_server.tool]]
name = "trigger-long-running-operation"
action = "everything.long"
sensitive = false

[[mcp_server.tool]]
name = "get-sum"
action = "everything.add"
sensitive = true

[[mcp_server.tool]]
name = "get-env"
action = "everything.env"
sensitive = true

[[identity]]
id = "agent-1"
kind = "agent"
owner = "team-e2e"
purposes = ["research"]
boundary = ["everything.session", "everything.echo", "everything.long"]

[[identity.credential]]
type = "api_key"
id = "agent-1-key"
sha256 = "KEY_SHA256"
"#;

const POLICY: &str = r#"
@id("e2e.agent-1")
permit (
  principal == Identity::"agent-1",
  action in [Action::"everything.session", Action::"everything.echo", Action::"everything.long"],
  resource == McpServer::"everything"
);

// Permits what agent-1's boundary leaves out: the boundary is a ceiling no policy lifts.
@id("e2e.agent-1-add")
permit (principal == Identity::"agent-1", action == Action::"everything.add", resource);
"#;

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

/// Fails the test, loudly, when the npm peers cannot run here.
fn require_node() {
    const NEED: &str = "the MCP end-to-end tests need Node.js and `npm ci --prefix e2e`";
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("{NEED}: `node --version` failed: {o:?}"),
        Err(e) => panic!("{NEED}: `node` is not runnable ({e})"),
    }
    let modules = e2e_dir().join("node_modules/@modelcontextprotocol");
    for pkg in ["sdk", "server-everything"] {
        let manifest = modules.join(pkg).join("package.json");
        assert!(
            manifest.is_file(),
            "{NEED}: {} is missing",
            manifest.display()
        );
    }
}

/// Reads a child's pipe line by line into `log`, handing each line to `on_line`.
fn drain(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            on_line(&line);
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    })
}

/// server-everything in Streamable HTTP mode on 127.0.0.1; killed on drop.
struct Everything {
    child: Child,
    addr: SocketAddr,
    #[allow(dead_code)] // kept for debugging a failing test
    log: Arc<Mutex<String>>,
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts server-everything on a free loopback port (the launcher binds port 0 and
/// announces the address) and waits, bounded, until it accepts connections.
fn start_everything() -> Everything {
    let mut child = Command::new("node")
        .arg("serve-everything.mjs")
        .arg("0")
        .current_dir(e2e_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    drain(child.stdout.take().unwrap(), log.clone(), move |line| {
        if let Some(url) = line.strip_prefix("remit-e2e listening ") {
            let _ = tx.send(url.to_owned());
        }
    });
    drain(child.stderr.take().unwrap(), log.clone(), |_| {});
    let url = match rx.recv_timeout(STARTUP) {
        Ok(url) => url,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "server-everything did not start within {STARTUP:?} ({e}); its output:\n{}",
                log.lock().unwrap()
            );
        }
    };
    let hostport = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix(MCP_PATH))
        .unwrap_or_else(|| panic!("unexpected announcement {url:?}"));
    let addr: SocketAddr = hostport.parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    Everything { child, addr, log }
}

/// One TCP connection through the relay: what went to the server and what came back.
#[derive(Default)]
struct Conn {
    to_server: Vec<u8>,
    to_proxy: Vec<u8>,
}

type Conns = Arc<Mutex<Vec<Arc<Mutex<Conn>>>>>;

/// A byte relay in front of `to` that records both directions of every connection.
async fn relay(to: SocketAddr) -> (SocketAddr, Conns) {
    let conns: Conns = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let all = conns.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let conn = Arc::new(Mutex::new(Conn::default()));
            all.lock().unwrap().push(conn.clone());
            let (mut in_r, mut in_w) = inbound.into_split();
            let (mut out_r, mut out_w) = outbound.into_split();
            let c = conn.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = in_r.read(&mut buf).await {
                    if n == 0 || out_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    c.lock().unwrap().to_server.extend_from_slice(&buf[..n]);
                }
                let _ = out_w.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = out_r.read(&mut buf).await {
                    if n == 0 || in_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    conn.lock().unwrap().to_proxy.extend_from_slice(&buf[..n]);
                }
                let _ = in_w.shutdown().await;
            });
        }
    });
    (addr, conns)
}

/// Everything the server was sent, and everything it answered, so far.
fn relayed(conns: &Conns) -> (String, String) {
    let (mut sent, mut answered) = (String::new(), String::new());
    for c in conns.lock().unwrap().iter() {
        let c = c.lock().unwrap();
        sent.push_str(&String::from_utf8_lossy(&c.to_server));
        sent.push_str("\n---\n");
        answered.push_str(&String::from_utf8_lossy(&c.to_proxy));
        answered.push_str("\n---\n");
    }
    (sent, answered)
}

/// The whole chain: server-everything, the relay, and remit's proxy in front.
struct World {
    /// The MCP endpoint on remit's proxy.
    url: String,
    relayed: Conns,
    store: SqliteStore,
    _everything: Everything,
    _proxy: crate::TestProxy,
}

async fn world() -> World {
    require_node();
    let everything = tokio::task::spawn_blocking(start_everything).await.unwrap();
    let (relay_addr, relayed) = relay(everything.addr).await;
    let text = CONFIG
        .replace("UPSTREAM_URL", &format!("http://{relay_addr}"))
        .replace("KEY_SHA256", &crate::key_sha256(KEY));
    let proxy = crate::start_proxy(&text, POLICY).await;
    let (addr, store) = (proxy.addr, proxy.store.clone());
    World {
        url: format!("http://{addr}{MCP_PATH}"),
        relayed,
        store,
        _everything: everything,
        _proxy: proxy,
    }
}

/// One run of `e2e/client.mjs`.
#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The one JSON line a completed exchange prints.
    fn json(&self) -> Value {
        assert!(self.success, "the MCP client failed: {self:#?}");
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one JSON line expected: {self:#?}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}

/// Runs the SDK client against `url` (`bearer` as the API key, purpose `research`), bounded
/// by [`CLIENT_TIMEOUT`].
async fn client(url: &str, bearer: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = Command::new("node");
    cmd.arg(e2e_dir().join("client.mjs"))
        .arg(url)
        .args(args)
        .env_remove("REMIT_E2E_BEARER")
        .env_remove("REMIT_E2E_TRACE")
        .env("REMIT_E2E_PURPOSE", "research")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = bearer {
        cmd.env("REMIT_E2E_BEARER", key);
    }
    let mut child = cmd.spawn().expect("node starts");
    let (out, err) = (Arc::default(), Arc::default());
    let readers = [
        drain(child.stdout.take().unwrap(), Arc::clone(&out), |_| {}),
        drain(child.stderr.take().unwrap(), Arc::clone(&err), |_| {}),
    ];
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`client.mjs {}` did not finish within {CLIENT_TIMEOUT:?}; stderr:\n{}",
                args.join(" "),
                err.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for r in readers {
        r.join().unwrap();
    }
    let take = |s: Arc<Mutex<String>>| std::mem::take(&mut *s.lock().unwrap());
    Run {
        success: status.success(),
        stdout: take(out),
        stderr: take(err),
    }
}

/// The text of a CallToolResult's first content block.
fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_tool_call_reaches_the_server_and_succeeds() {
    let w = world().await;
    let out = client(
        &w.url,
        Some(KEY),
        &["call", ECHO, r#"{"message":"hi from remit"}"#],
    )
    .await
    .json();
    let result = &out["result"];
    assert_ne!(result["isError"], json!(true), "{out}");
    assert_eq!(text(result), "Echo: hi from remit", "{out}");

    let (sent, _) = relayed(&w.relayed);
    assert!(sent.contains(r#""name":"echo""#), "forwarded:\n{sent}");
    assert!(
        sent.to_ascii_lowercase().contains("remit-decision-id:"),
        "attributed:\n{sent}"
    );
    assert!(
        !sent.contains(KEY),
        "the client's credential is never forwarded:\n{sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_tool_call_is_refused_with_a_reason_and_never_reaches_the_server() {
    let w = world().await;
    for (tool, args) in [(SUM, r#"{"a":2,"b":3}"#), (ENV, "{}")] {
        let out = client(&w.url, Some(KEY), &["call", tool, args])
            .await
            .json();
        let result = &out["result"];
        assert_eq!(result["isError"], json!(true), "{tool}: {out}");
        let shown = text(result);
        assert!(shown.contains("remit denied"), "{tool}: {shown}");
        assert!(shown.contains("boundary"), "{tool}: {shown}");
        // The refusal is remit's own answer, not the server's: it carries remit's decision.
        let decision = &result["_meta"]["remit/decision"];
        assert_eq!(decision["decision"], "deny", "{tool}: {out}");
        let id = decision["decision_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{tool}: no decision id in {out}"));
        assert!(shown.contains(id), "{tool}: the text names the decision");
        assert!(
            decision["reasons"].to_string().contains("boundary"),
            "{tool}: {out}"
        );
        let record = w.store.record(id).await.unwrap();
        assert!(record.is_some(), "{tool}: the refusal was recorded");
    }
    // The session itself was forwarded (initialize and friends), the refused calls were not.
    let (sent, _) = relayed(&w.relayed);
    assert!(
        sent.contains(r#""method":"initialize""#),
        "forwarded:\n{sent}"
    );
    for tool in [SUM, ENV] {
        assert!(
            !sent.contains(&format!(r#""name":"{tool}""#)),
            "`{tool}` reached the server:\n{sent}"
        );
    }
    assert!(
        !sent.contains(r#""method":"tools/call""#),
        "no tools/call reached the server:\n{sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_only_the_allowed_tools() {
    let w = world().await;
    let out = client(&w.url, Some(KEY), &["list"]).await.json();
    let mut tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tools.sort_unstable();
    assert_eq!(
        tools,
        [ECHO, LONG],
        "tools/list through remit shows exactly the tools agent-1 may call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_tool_result_arrives_intact_with_its_progress() {
    let w = world().await;
    let out = client(
        &w.url,
        Some(KEY),
        &["call", LONG, r#"{"duration":1.2,"steps":4}"#, "--progress"],
    )
    .await
    .json();
    let result = &out["result"];
    assert_ne!(result["isError"], json!(true), "{out}");
    assert_eq!(
        text(result),
        "Long running operation completed. Duration: 1.2 seconds, Steps: 4.",
        "{out}"
    );
    let progress = out["progress"].as_array().unwrap();
    let steps: Vec<(u64, u64)> = progress
        .iter()
        .map(|p| {
            (
                p["progress"].as_u64().unwrap(),
                p["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [(1, 4), (2, 4), (3, 4), (4, 4)], "{out}");
    // Streamed, not buffered: the first notification arrived well before the result.
    let first = progress[0]["at_ms"].as_u64().unwrap();
    let done = out["result_at_ms"].as_u64().unwrap();
    assert!(
        first + 500 <= done,
        "progress arrived at {first} ms, the result at {done} ms: {out}"
    );
    let (_, answered) = relayed(&w.relayed);
    assert!(
        answered.contains("text/event-stream") && answered.contains("notifications/progress"),
        "the server answered the call over SSE:\n{answered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_credential_nothing_gets_through() {
    let w = world().await;
    for (who, key) in [
        ("no credential", None),
        ("unknown key", Some("rk_e2e_nobody")),
    ] {
        let run = client(&w.url, key, &["call", ECHO, r#"{"message":"hi"}"#]).await;
        assert!(!run.success, "{who}: the client must not succeed: {run:#?}");
        assert!(run.stdout.is_empty(), "{who}: {run:#?}");
        assert!(run.stderr.contains("remit denied"), "{who}: {run:#?}");
    }
    let (sent, _) = relayed(&w.relayed);
    assert!(
        sent.replace("\n---\n", "").is_empty(),
        "nothing reached the server:\n{sent}"
    );
}
