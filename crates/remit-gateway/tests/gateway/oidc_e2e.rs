//! End-to-end against a real external OpenID provider: `oidc-provider` (npm, pinned in
//! `e2e/package-lock.json`) runs on loopback (`e2e/oidc-provider.mjs`); remit discovers it,
//! fetches its JWKS with the gateway's refresher, accepts its client-credentials access
//! tokens for this resource, refuses them for another audience, survives its key rotation,
//! and refuses everything while it has no key set (fail closed).
//!
//! Needs Node.js and `e2e/node_modules` (`npm ci --prefix e2e`); without them the test fails
//! saying so rather than passing.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use remit_core::{Config, RequestFacts, Verdict};
use remit_engine::Engine;
use remit_policy::PolicySource;

const AUD: &str = "https://api.test";

struct Provider {
    child: Child,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

fn start_provider(port: u16, keys: &std::path::Path, kids: &str) -> Provider {
    let dir = e2e_dir();
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "e2e/node_modules/oidc-provider is missing: run `npm ci --prefix e2e`"
    );
    let mut child = Command::new("node")
        .arg(dir.join("oidc-provider.mjs"))
        .arg(port.to_string())
        .arg(keys)
        .arg(kids)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node is on PATH");
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    BufReader::new(out)
        .read_line(&mut line)
        .expect("the provider prints a line");
    assert!(
        line.starts_with("ready "),
        "the provider did not start: {line}"
    );
    Provider { child }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn engine(issuer: &str) -> Engine {
    let config = format!(
        r#"
[gateway]
public_url = "{AUD}"

[[route]]
method = "GET"
path = "/tickets/{{id}}"
action = "tickets.read"
resource = "Ticket::{{id}}"
sensitive = false

[[issuer]]
id = "oidc"
issuer = "{issuer}"
algorithms = ["ES256", "RS256"]
subjects = "identities"
claim = "client_id"
discovery = true

[[identity]]
id = "svc-bot"
kind = "integration"
owner = "team"
boundary = ["tickets.read"]
"#
    );
    let config = Config::parse(&config, "remit.toml").unwrap();
    let policy = PolicySource {
        file: "p.cedar".into(),
        text: r#"permit (principal == Identity::"svc-bot", action == Action::"tickets.read", resource);"#.into(),
    };
    Engine::new(config, &[policy]).unwrap()
}

async fn token(issuer: &str, resource: &str) -> String {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("svc-bot", Some("e2e-secret-for-svc-bot"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope=tickets.read&resource={}",
            resource.replace(':', "%3A").replace('/', "%2F")
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {r}"))
        .to_owned()
}

fn decide(e: &Engine, token: &str) -> remit_core::Decision {
    let auth = format!("Bearer {token}");
    let facts = RequestFacts::parse(
        "GET",
        "/tickets/1",
        [("authorization", auth.as_bytes())],
        None,
        None,
    )
    .unwrap();
    e.decide(&facts, "d".into(), time::OffsetDateTime::now_utc())
        .unwrap()
        .decision
}

#[tokio::test]
async fn oidc_provider_tokens_are_discovered_verified_rotated_and_audience_bound() {
    let keys = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let e = Arc::new(engine(&issuer));
    let settings = e.config().tokens.issuers[0].clone();
    let client = remit_gateway::jwks::client();

    let p = start_provider(port, keys.path(), "k1");
    let t1 = token(&issuer, AUD).await;
    // No key set fetched yet: fail closed.
    let d = decide(&e, &t1);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.reasons.iter().any(|r| r.contains("unavailable")),
        "{:?}",
        d.reasons
    );
    assert_eq!(
        remit_gateway::jwks::refresh_once(&e, &client, &settings)
            .await
            .unwrap(),
        1
    );
    let d = decide(&e, &t1);
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    assert_eq!(d.identity.as_ref().map(|i| i.as_str()), Some("svc-bot"));
    // A token the provider issued for another resource is refused.
    let foreign = token(&issuer, "https://other.example").await;
    let d = decide(&e, &foreign);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("audience is not this resource")),
        "{:?}",
        d.reasons
    );

    // Rotation: the provider signs with k2 and still publishes k1.
    drop(p);
    let p = start_provider(port, keys.path(), "k2,k1");
    let t2 = token(&issuer, AUD).await;
    assert_eq!(
        decide(&e, &t2).verdict,
        Verdict::Deny,
        "k2 is not known before the refresh"
    );
    assert_eq!(
        remit_gateway::jwks::refresh_once(&e, &client, &settings)
            .await
            .unwrap(),
        2
    );
    assert_eq!(decide(&e, &t2).verdict, Verdict::Allow);
    assert_eq!(
        decide(&e, &t1).verdict,
        Verdict::Allow,
        "k1 is still published"
    );
    // k1 retired: its tokens stop verifying; k2's go on.
    drop(p);
    let p = start_provider(port, keys.path(), "k2");
    remit_gateway::jwks::refresh_once(&e, &client, &settings)
        .await
        .unwrap();
    let d = decide(&e, &t1);
    assert!(
        d.reasons.iter().any(|r| r.contains("no key `k1`")),
        "{:?}",
        d.reasons
    );
    assert_eq!(decide(&e, &t2).verdict, Verdict::Allow);
    // The provider goes away: a refresh fails and says so (the loop drops stale keys).
    drop(p);
    assert!(
        remit_gateway::jwks::refresh_once(&e, &client, &settings)
            .await
            .is_err()
    );
}
