//! A real nginx (the Debian package) in front of a recording upstream, asking remit with
//! `auth_request`, configured by `examples/nginx/nginx.conf` itself (addresses and paths
//! rewritten for the test): allowed requests arrive with remit's attribution and without the
//! client's credential, refused ones never arrive, and with remit unreachable nginx refuses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::authz::start_doors;
use super::proxy::recording_upstream;

/// The nginx binary, or a failure that says what to install. Never a silent skip.
fn nginx_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is missing: these tests run a real nginx. Install the Debian package \
                 `nginx` (`apt-get install nginx`); .ci/run installs it"
            )
        })
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts nginx with the example configuration, pointed at `remit` and `upstream`.
async fn start_nginx(remit: SocketAddr, upstream: &str) -> Nginx {
    let bin = nginx_binary();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nginx/nginx.conf");
    let mut conf = std::fs::read_to_string(&example).unwrap();
    let port = free_port();
    let upstream = upstream.trim_start_matches("http://");
    for (from, to) in [
        ("127.0.0.1:8443", remit.to_string()),
        ("127.0.0.1:8450", upstream.to_owned()),
        ("listen 127.0.0.1:8080", format!("listen 127.0.0.1:{port}")),
        ("/var/log/nginx/", format!("{d}/")),
        (
            "http {\n",
            format!(
                "http {{\n    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n    \
                 fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n"
            ),
        ),
    ] {
        assert!(
            conf.contains(from),
            "examples/nginx/nginx.conf no longer has `{from}`"
        );
        conf = conf.replace(from, &to);
    }
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new(&bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&file)
        .arg("-g")
        .arg(format!(
            "daemon off; master_process off; pid {d}/nginx.pid;"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut n = Nginx { child, addr, dir };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return n;
        }
        if let Ok(Some(status)) = n.child.try_wait() {
            panic!("nginx exited ({status}): {}", n.error_log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not listen on {addr}: {}", n.error_log());
}

/// One raw HTTP/1.1 request (no client-side path normalisation); the status and the head.
async fn raw(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("nginx answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

const SUPPORT: &[(&str, &str)] = &[
    ("Authorization", "Bearer rk_demo_support_assistant"),
    ("Remit-Purpose", "case-summary"),
];

#[tokio::test]
async fn nginx_auth_request_forwards_only_what_remit_allowed() {
    let doors = start_doors(|t| t).await;
    let (upstream, log) = recording_upstream().await;
    let nginx = start_nginx(doors.http, &upstream).await;

    // Allowed: reaches the upstream with remit's attribution, without the key or forgeries.
    let mut h = SUPPORT.to_vec();
    h.extend([("Remit-Identity", "admin"), ("Remit-Approval", "forged-1")]);
    let (status, head) = raw(nginx.addr, "GET", "/tickets/1?page=2", &h).await;
    assert_eq!(status, 200, "{head}\n{}", nginx.error_log());
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(
        (s.method.as_str(), s.target.as_str()),
        ("GET", "/tickets/1?page=2")
    );
    assert_eq!(s.header("remit-identity"), Some("support-assistant"));
    assert_eq!(s.header("remit-purpose"), Some("case-summary"));
    assert_eq!(s.header("remit-on-behalf-of"), None);
    assert_eq!(
        s.header("remit-approval"),
        None,
        "the client's Remit-* claims are dropped"
    );
    assert_eq!(
        s.header("authorization"),
        None,
        "the client's key never goes upstream"
    );
    let id = s
        .header("remit-decision-id")
        .expect("a decision id")
        .to_owned();
    assert!(
        doors.store.record(&id).await.unwrap().is_some(),
        "recorded before forwarding"
    );

    // Refused in every way: never reaches the upstream.
    let cg = [
        ("Authorization", "Bearer rk_demo_codegen_workflow"),
        ("Remit-Purpose", "code-change"),
    ];
    for (method, target, headers, want) in [
        ("POST", "/tickets/1/comments", SUPPORT, 403), // deny: outside the boundary
        ("POST", "/repos/web/deployments", &cg[..], 403), // approval_required
        ("GET", "/tickets/1", &[][..], 403),           // unclassified, sensitive
        ("GET", "/tickets/%2e%2e/admin", SUPPORT, 500), // ambiguous path: remit 400
        // nginx refuses a repeated Authorization itself (remit would: 400, then nginx 500).
        (
            "GET",
            "/tickets/1",
            &[("Authorization", "Bearer a"), ("authorization", "Bearer b")][..],
            400,
        ),
        (
            "GET",
            "/tickets/1",
            &[("Remit-Purpose", "a"), ("Remit-Purpose", "b")][..],
            500,
        ),
    ] {
        let (status, head) = raw(nginx.addr, method, target, headers).await;
        assert_eq!(status, want, "{method} {target}: {head}");
        if want == 403 {
            assert!(
                head.to_ascii_lowercase().contains("remit-decision-id: "),
                "{head}"
            );
            assert!(head.contains("application/problem+json"), "{head}");
        }
    }
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "nothing refused reached the upstream"
    );
}

#[tokio::test]
async fn nginx_fails_closed_when_remit_is_unreachable() {
    let (upstream, log) = recording_upstream().await;
    // A port nobody listens on: remit is down.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let nginx = start_nginx(dead, &upstream).await;
    let (status, head) = raw(nginx.addr, "GET", "/tickets/1", SUPPORT).await;
    assert_eq!(status, 500, "{head}");
    assert!(head.contains("was not forwarded"), "{head}");
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
}
