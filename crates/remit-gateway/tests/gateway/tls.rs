//! The proxy listener over TLS and mutual TLS with X.509-SVIDs, against real TLS clients
//! (tokio-rustls with hyper's client, HTTP/1.1 and HTTP/2) and a recording upstream, with
//! certificate authorities and SVIDs made by `rcgen` for each test: a verified SVID
//! authenticates its identity, a key from another workload is refused, certificates that
//! do not verify never complete a connection, a verified certificate that is not an SVID is
//! refused, and replaced files are picked up without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use remit_gateway::tls::{Reload, ServerTls, TlsLimits};
use remit_store::SqliteStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::proxy::{Log, recording_upstream};

const SUPPORT: &str = "spiffe://remit.test/ns/support/sa/support";
const INVENTORY: &str = "spiffe://remit.test/ns/ops/sa/inventory";
const STRANGER: &str = "spiffe://remit.test/ns/other/sa/stranger";

/// A certificate authority made for a test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn(name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Self {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A leaf with `sans`, valid from `from` to `until`, for `usage`: its chain (PEM) and key.
    fn leaf(
        &self,
        name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        valid: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn(name);
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (p.not_before, p.not_after) = valid;
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// A client X.509-SVID (or not quite one) with these URI SANs, valid now.
    fn client(&self, uris: &[&str]) -> Leaf {
        let sans = uris
            .iter()
            .map(|u| SanType::URI((*u).to_owned().try_into().unwrap()))
            .collect();
        self.leaf(
            "workload",
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
            now_valid(),
        )
    }

    /// The server's certificate for `localhost`.
    fn server(&self) -> Leaf {
        self.leaf(
            "remit",
            vec![SanType::DnsName("localhost".try_into().unwrap())],
            ExtendedKeyUsagePurpose::ServerAuth,
            now_valid(),
        )
    }
}

fn dn(name: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, name);
    d
}

fn now_valid() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (
        now - time::Duration::hours(1),
        now + time::Duration::hours(1),
    )
}

#[derive(Clone)]
struct Leaf {
    der: Vec<u8>,
    pem: String,
    key_pem: String,
    key_der: Vec<u8>,
}

/// The server's files in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(server: &Leaf, client_ca: &Ca) -> Self {
        let f = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        f.write_server(server);
        f.write("bundle.pem", &client_ca.cert.pem());
        f
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }
    fn write_server(&self, leaf: &Leaf) {
        self.write("server.pem", &leaf.pem);
        self.write("server.key", &leaf.key_pem);
    }
}

const CONFIG: &str = r#"
[gateway]
TLS_KEYS

[[route]]
method = "GET"
path = "/items/{id}"
action = "items.read"
resource = "Item::{id}"
sensitive = true

[[identity]]
id = "support"
kind = "integration"
owner = "team"
purposes = ["sync"]
boundary = ["items.read"]

[[identity.credential]]
type = "api_key"
id = "support-key"
sha256 = "SUPPORT_SHA256"

[[identity.credential]]
type = "spiffe"
id = "support-svid"
spiffe_id = "spiffe://remit.test/ns/support/sa/support"

[[identity]]
id = "inventory"
kind = "integration"
owner = "team"
purposes = ["sync"]
boundary = ["items.read"]

[[identity.credential]]
type = "spiffe"
id = "inventory-svid"
spiffe_id = "spiffe://remit.test/ns/ops/sa/inventory"
"#;

const POLICY: &str = r#"
permit (principal == Identity::"support", action == Action::"items.read", resource);
permit (principal == Identity::"inventory", action == Action::"items.read", resource);
"#;

/// The TLS proxy started in-process on loopback.
struct Tls {
    addr: SocketAddr,
    log: Log,
    store: SqliteStore,
    tls: Arc<ServerTls>,
    _data: tempfile::TempDir,
}

async fn start(files: &Files, client_auth: Option<&str>, limits: TlsLimits) -> Tls {
    start_with(files, client_auth, limits, CONFIG).await
}

async fn start_with(
    files: &Files,
    client_auth: Option<&str>,
    limits: TlsLimits,
    config: &str,
) -> Tls {
    let (url, log) = recording_upstream().await;
    let p = |n: &str| files.path(n).display().to_string().replace('\\', "/");
    let mut keys = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nclient_ca_file = \"{}\"\nclient_trust_domain = \"remit.test\"",
        p("server.pem"),
        p("server.key"),
        p("bundle.pem")
    );
    if let Some(a) = client_auth {
        keys.push_str(&format!("\nclient_auth = \"{a}\""));
    }
    let text = format!(
        "{}\n[[upstream]]\nname = \"rec\"\nurl = \"{url}\"\nprefix = \"/\"\n",
        config
            .replace("TLS_KEYS", &keys)
            .replace("SUPPORT_SHA256", &crate::key_sha256("rk_support"))
    );
    let config = remit_core::Config::parse(&text, "tls.toml").unwrap();
    let settings = config.gateway.tls.clone().unwrap();
    let policies = [remit_policy::PolicySource {
        file: "tls.cedar".into(),
        text: POLICY.into(),
    }];
    let engine = Arc::new(remit_engine::Engine::new(config, &policies).unwrap());
    let data = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path()).await.unwrap();
    let state = remit_gateway::proxy::ProxyState::new(engine, Arc::new(store.clone())).unwrap();
    let tls = Arc::new(ServerTls::load(&settings).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = remit_gateway::proxy::proxy_router(state);
    let t = tls.clone();
    tokio::spawn(async move {
        remit_gateway::tls::serve(listener, app, t, limits, std::future::pending()).await
    });
    Tls {
        addr,
        log,
        store,
        tls,
        _data: data,
    }
}

/// A TLS client trusting `server_ca`, presenting `cert` if given, offering `alpn`.
fn client(server_ca: &Ca, cert: Option<&Leaf>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.cert.der().to_vec()))
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut c = match cert {
        None => b.with_no_client_auth(),
        Some(l) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(l.der.clone())],
                PrivateKeyDer::try_from(l.key_der.clone()).unwrap(),
            )
            .unwrap(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// What one request over a new TLS connection got.
#[derive(Debug)]
struct Got {
    status: u16,
    body: Value,
    alpn: Option<Vec<u8>>,
    server_leaf: Vec<u8>,
    http2: bool,
}

/// The error and every source under it, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(e) = next {
        s.push_str(": ");
        s.push_str(&e.to_string());
        next = e.source();
    }
    s
}

/// `GET path` with `headers` over a new connection; an error is the whole error chain.
/// Asserts that the listener ends the handshake of a client presenting `cert` with an
/// error naming `why`, and that nothing has reached the upstream or the audit log.
async fn refused_at_handshake(s: &Tls, w: &World, cert: &Leaf, why: &str) {
    let e = get(
        s.addr,
        client(&w.server_ca, Some(cert), &[b"http/1.1"]),
        "/items/1",
        &[PURPOSE],
    )
    .await
    .unwrap_err();
    assert!(e.contains(why), "{e}");
    assert!(s.log.lock().unwrap().is_empty());
    assert_eq!(s.store.count().await.unwrap(), 0);
}

/// A GET over HTTP/1.1 to the world's listener, with `cert` as the client certificate;
/// the handshake must succeed.
async fn get_h1(
    s: &Tls,
    w: &World,
    cert: Option<&Leaf>,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    get(
        s.addr,
        client(&w.server_ca, cert, &[b"http/1.1"]),
        path,
        headers,
    )
    .await
    .unwrap()
}

async fn get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Got, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| chain(&e))?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let server_leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let http2 = alpn.as_deref() == Some(b"h2");
    let mut req = http::Request::get(format!("https://localhost{path}"));
    if !http2 {
        req = req.header("host", "localhost");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let io = TokioIo::new(tls);
    let resp = if http2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| chain(&e))?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| chain(&e))?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| chain(&e))?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| chain(&e))?
    };
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| chain(&e))?
        .to_bytes();
    Ok(Got {
        status,
        body: serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        alpn,
        server_leaf,
        http2,
    })
}

const PURPOSE: (&str, &str) = ("remit-purpose", "sync");

struct World {
    server_ca: Ca,
    client_ca: Ca,
    files: Files,
}

fn world() -> World {
    let server_ca = Ca::new("remit test server CA");
    let client_ca = Ca::new("remit test trust domain");
    let files = Files::new(&server_ca.server(), &client_ca);
    World {
        server_ca,
        client_ca,
        files,
    }
}

#[tokio::test]
async fn an_api_key_over_tls_without_a_client_certificate_is_served() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    let c = client(&w.server_ca, None, &[b"http/1.1"]);
    let got = get(
        s.addr,
        c.clone(),
        "/items/1",
        &[("authorization", "Bearer rk_support"), PURPOSE],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let seen = s.log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("remit-identity"), Some("support"));
    // No certificate and no credential: unclassified, refused by policy.
    let got = get(s.addr, c, "/items/1", &[PURPOSE]).await.unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert_eq!(s.log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_svid_of_a_registered_identity_authenticates_it_without_a_key() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    let svid = w.client_ca.client(&[INVENTORY]);
    let got = get_h1(&s, &w, Some(&svid), "/items/7", &[PURPOSE]).await;
    assert_eq!(got.status, 200, "{got:?}");
    let seen = s.log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("remit-identity"), Some("inventory"));
    let id = seen[0].header("remit-decision-id").unwrap().to_owned();
    let record = s.store.record(&id).await.unwrap().expect("durable");
    assert!(
        record.contains("\"credential_id\":\"inventory-svid\""),
        "{record}"
    );
    assert!(
        record.contains(&format!("\"peer_spiffe_id\":\"{INVENTORY}\"")),
        "{record}"
    );
}

#[tokio::test]
async fn a_key_of_another_identity_from_an_svid_holder_is_refused() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    let svid = w.client_ca.client(&[INVENTORY]);
    let c = client(&w.server_ca, Some(&svid), &[b"http/1.1"]);
    let got = get(
        s.addr,
        c,
        "/items/7",
        &[("authorization", "Bearer rk_support"), PURPOSE],
    )
    .await
    .unwrap();
    assert_eq!(got.status, 403, "{got:?}");
    assert_eq!(got.body["decision"], "deny");
    assert!(
        got.body["policies"]
            .to_string()
            .contains("remit.peer-identity"),
        "{got:?}"
    );
    assert!(
        got.body["reasons"]
            .to_string()
            .contains("is identity `inventory`'s"),
        "{got:?}"
    );
    assert!(s.log.lock().unwrap().is_empty());
    // The key from its own workload's SVID passes.
    let own = w.client_ca.client(&[SUPPORT]);
    let got = get_h1(
        &s,
        &w,
        Some(&own),
        "/items/7",
        &[("authorization", "Bearer rk_support"), PURPOSE],
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
}

#[tokio::test]
async fn an_svid_of_no_registered_identity_is_unclassified_and_refused() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    let svid = w.client_ca.client(&[STRANGER]);
    let got = get_h1(&s, &w, Some(&svid), "/items/7", &[PURPOSE]).await;
    assert_eq!(got.status, 403, "{got:?}");
    assert_eq!(got.body["decision"], "deny");
    assert!(
        got.body["reasons"]
            .to_string()
            .contains("unclassified traffic never performs sensitive actions"),
        "{got:?}"
    );
    let id = got.body["decision_id"].as_str().unwrap();
    let record = s.store.record(id).await.unwrap().expect("recorded");
    assert!(record.contains("\"class\":\"unclassified\""), "{record}");
    assert!(record.contains(STRANGER), "{record}");
    assert!(s.log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn certificates_that_do_not_verify_never_complete_a_connection() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    // Signed by a CA outside the trust bundle.
    let foreign = Ca::new("another trust domain").client(&[SUPPORT]);
    refused_at_handshake(&s, &w, &foreign, "UnknownCA").await;
    // Expired an hour ago.
    let now = time::OffsetDateTime::now_utc();
    let expired = w.client_ca.leaf(
        "workload",
        vec![SanType::URI(SUPPORT.to_owned().try_into().unwrap())],
        ExtendedKeyUsagePurpose::ClientAuth,
        (
            now - time::Duration::hours(2),
            now - time::Duration::hours(1),
        ),
    );
    refused_at_handshake(&s, &w, &expired, "CertificateExpired").await;
    // A server certificate, not one for clients.
    let server_usage = w.client_ca.leaf(
        "workload",
        vec![SanType::URI(SUPPORT.to_owned().try_into().unwrap())],
        ExtendedKeyUsagePurpose::ServerAuth,
        now_valid(),
    );
    refused_at_handshake(&s, &w, &server_usage, "alert").await;
}

#[tokio::test]
async fn an_svid_of_another_trust_domain_is_refused_even_from_the_trusted_ca() {
    // The listener trusts `remit.test`. Its own CA signs an SVID claiming an identity of
    // `other.test`, registered to an identity that may read: the handshake ends there.
    let w = world();
    let mut config_with_other = CONFIG.to_owned();
    config_with_other.push_str(
        "\n[[identity.credential]]\ntype = \"spiffe\"\nid = \"inventory-elsewhere\"\nspiffe_id = \"spiffe://other.test/ns/ops/sa/inventory\"\n",
    );
    let s = start_with(&w.files, None, TlsLimits::default(), &config_with_other).await;
    let elsewhere = w
        .client_ca
        .client(&["spiffe://other.test/ns/ops/sa/inventory"]);
    refused_at_handshake(&s, &w, &elsewhere, "alert").await;
    // The same CA's SVID of the trusted domain is served.
    let inventory = w.client_ca.client(&[INVENTORY]);
    let got = get_h1(&s, &w, Some(&inventory), "/items/1", &[PURPOSE]).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
}

#[tokio::test]
async fn a_verified_certificate_that_is_not_an_svid_is_refused_not_ignored() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    for (uris, says) in [
        (
            &["spiffe://remit.test/ns/support/sa/support", INVENTORY][..],
            "2 URI SANs",
        ),
        (&["https://remit.test/support"][..], "not a SPIFFE ID"),
        (&[][..], "no URI SAN"),
    ] {
        let leaf = w.client_ca.client(uris);
        // Even with a valid key of a registered identity, over HTTP/1.1 and HTTP/2.
        for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
            let got = get(
                s.addr,
                client(&w.server_ca, Some(&leaf), &[alpn]),
                "/items/1",
                &[("authorization", "Bearer rk_support"), PURPOSE],
            )
            .await
            .unwrap();
            assert_eq!(got.status, 403, "{uris:?}: {got:?}");
            assert!(
                got.body["reason"].as_str().unwrap().contains(says),
                "{uris:?}: {got:?}"
            );
            assert!(
                got.body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("not an X.509-SVID"),
                "{got:?}"
            );
        }
    }
    assert!(s.log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn required_client_auth_refuses_a_client_without_a_certificate() {
    let w = world();
    let s = start(&w.files, Some("required"), TlsLimits::default()).await;
    let e = get(
        s.addr,
        client(&w.server_ca, None, &[b"http/1.1"]),
        "/items/1",
        &[("authorization", "Bearer rk_support"), PURPOSE],
    )
    .await
    .unwrap_err();
    assert!(e.contains("CertificateRequired"), "{e}");
    assert!(s.log.lock().unwrap().is_empty());
    let svid = w.client_ca.client(&[SUPPORT]);
    let got = get_h1(&s, &w, Some(&svid), "/items/1", &[PURPOSE]).await;
    assert_eq!(got.status, 200, "{got:?}");
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_and_carries_the_svid() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    let svid = w.client_ca.client(&[SUPPORT]);
    let got = get(
        s.addr,
        client(&w.server_ca, Some(&svid), &[b"h2", b"http/1.1"]),
        "/items/3",
        &[PURPOSE],
    )
    .await
    .unwrap();
    assert!(got.http2, "{got:?}");
    assert_eq!(got.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        s.log.lock().unwrap()[0].header("remit-identity"),
        Some("support")
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_not_served() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(
        b"GET /items/1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer rk_support\r\nRemit-Purpose: sync\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
        .await
        .expect("the server closes the connection");
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(s.log.lock().unwrap().is_empty());
    assert_eq!(s.store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_off_and_handshakes_in_flight_are_bounded() {
    let w = world();
    let limits = TlsLimits {
        handshake_timeout: Duration::from_millis(600),
        max_handshakes: 1,
        ..TlsLimits::default()
    };
    let s = start(&w.files, None, limits).await;
    // A client that connects and says nothing holds the only handshake slot...
    let mut idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    // ...so a real client waits for it to be cut off, then is served.
    let got = get_h1(
        &s,
        &w,
        None,
        "/items/1",
        &[("authorization", "Bearer rk_support"), PURPOSE],
    )
    .await;
    assert_eq!(got.status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the stalled connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// Reading the files again: a changed server certificate, key or trust bundle is used by
/// new connections; a set that does not load changes nothing and is counted.
#[tokio::test]
async fn replaced_files_are_used_by_new_connections_and_broken_ones_are_not() {
    let w = world();
    let s = start(&w.files, None, TlsLimits::default()).await;
    let svid = w.client_ca.client(&[SUPPORT]);
    let c = client(&w.server_ca, Some(&svid), &[b"http/1.1"]);
    let before = get(s.addr, c.clone(), "/items/1", &[PURPOSE])
        .await
        .unwrap();
    assert_eq!(before.status, 200);
    assert_eq!(s.tls.reload().unwrap(), Reload::Unchanged);

    // A renewed server certificate.
    let renewed = w.server_ca.server();
    w.files.write_server(&renewed);
    assert_eq!(s.tls.reload().unwrap(), Reload::Replaced);
    let after = get(s.addr, c.clone(), "/items/1", &[PURPOSE])
        .await
        .unwrap();
    assert_eq!(after.server_leaf, renewed.der);
    assert_ne!(after.server_leaf, before.server_leaf);
    assert_eq!(s.tls.reload().unwrap(), Reload::Unchanged);

    // Half a rotation (a new certificate, the old key): refused, counted, and the renewed
    // pair stays in use.
    let next = w.server_ca.server();
    w.files.write("server.pem", &next.pem);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let e = metrics::with_local_recorder(&recorder, || s.tls.reload()).unwrap_err();
    assert!(
        e.to_string().contains("does not match the certificate"),
        "{e}"
    );
    assert!(e.to_string().contains("server.key"), "{e}");
    assert!(
        handle
            .render()
            .contains("remit_tls_reload_failures_total 1"),
        "{}",
        handle.render()
    );
    let still = get(s.addr, c.clone(), "/items/1", &[PURPOSE])
        .await
        .unwrap();
    assert_eq!(still.server_leaf, renewed.der);
    // Garbage, and a missing file: the same.
    w.files
        .write("server.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n");
    assert!(s.tls.reload().is_err());
    std::fs::remove_file(w.files.path("server.key")).unwrap();
    assert!(s.tls.reload().is_err());
    let still = get(s.addr, c.clone(), "/items/1", &[PURPOSE])
        .await
        .unwrap();
    assert_eq!(still.server_leaf, renewed.der);
    // The rest of the rotation lands.
    w.files.write("server.key", &next.key_pem);
    assert_eq!(s.tls.reload().unwrap(), Reload::Replaced);
    let got = get(s.addr, c.clone(), "/items/1", &[PURPOSE])
        .await
        .unwrap();
    assert_eq!(got.server_leaf, next.der);

    // A new trust bundle: SVIDs of the old trust domain CA no longer connect, the new
    // one's do.
    let new_ca = Ca::new("remit test trust domain, renewed");
    w.files.write("bundle.pem", &new_ca.cert.pem());
    assert_eq!(s.tls.reload().unwrap(), Reload::Replaced);
    let e = get(s.addr, c, "/items/1", &[PURPOSE]).await.unwrap_err();
    assert!(e.contains("UnknownCA"), "{e}");
    let fresh = new_ca.client(&[SUPPORT]);
    let got = get_h1(&s, &w, Some(&fresh), "/items/1", &[PURPOSE]).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        s.log
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .header("remit-identity"),
        Some("support")
    );
}

#[tokio::test]
async fn the_listener_checks_its_files_on_its_own() {
    let w = world();
    let limits = TlsLimits {
        reload_every: Duration::from_millis(100),
        ..TlsLimits::default()
    };
    let s = start(&w.files, None, limits).await;
    let c = client(&w.server_ca, None, &[b"http/1.1"]);
    let renewed = w.server_ca.server();
    w.files.write_server(&renewed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = get(s.addr, c.clone(), "/items/1", &[PURPOSE])
            .await
            .unwrap();
        if got.server_leaf == renewed.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never used"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ServerTls::load` names the configuration line and the file it could not use.
#[test]
fn files_that_do_not_load_are_named() {
    let w = world();
    let text = |dir: &Path| {
        format!(
            "[gateway]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        )
    };
    let settings = || {
        remit_core::Config::parse(&text(w.files.dir.path()), "remit.toml")
            .unwrap()
            .gateway
            .tls
            .unwrap()
    };
    assert!(ServerTls::load(&settings()).is_ok());
    w.files.write("server.key", &w.server_ca.server().key_pem);
    let e = ServerTls::load(&settings()).unwrap_err().to_string();
    assert!(
        e.starts_with("remit.toml:3:16: field `gateway.tls_key_file`: "),
        "{e}"
    );
    assert!(e.contains("does not match"), "{e}");
}
