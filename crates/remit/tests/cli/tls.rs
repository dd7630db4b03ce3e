//! `remit serve` with its proxy listener on mutual TLS, as a user runs it: TLS files named
//! relative to the configuration, a client presenting the quickstart support assistant's
//! X.509-SVID served as that identity with no key, plain HTTP not served, and a graceful
//! stop on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{serving_world, spawn_serving};

fn params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p
}

/// An upstream on a raw socket that keeps each request's head and answers 200.
async fn upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let h = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Bounded: a test upstream reads at most 64 KiB of head.
                while buf.len() < 65_536 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_lowercase());
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (url, heads)
}

#[tokio::test]
async fn serve_authenticates_an_svid_on_its_mutual_tls_listener() {
    // A server CA and a trust domain CA, the server's certificate and the assistant's SVID.
    let ca = |cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = params(cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (p.self_signed(&key).unwrap(), key)
    };
    let (server_ca, server_ca_key) = ca("test server CA");
    let (domain_ca, domain_ca_key) = ca("remit.example trust domain");
    let server_key = KeyPair::generate().unwrap();
    let mut p = params("remit");
    p.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = p
        .signed_by(&server_key, &server_ca, &server_ca_key)
        .unwrap();
    let svid_key = KeyPair::generate().unwrap();
    let mut p = params("support-assistant");
    p.subject_alt_names = vec![SanType::URI(
        "spiffe://remit.example/ns/support/sa/support-assistant"
            .to_owned()
            .try_into()
            .unwrap(),
    )];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let svid = p.signed_by(&svid_key, &domain_ca, &domain_ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (config, data) = serving_world(dir.path(), "");
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::write(tls.join("remit.pem"), server.pem()).unwrap();
    std::fs::write(tls.join("remit-key.pem"), server_key.serialize_pem()).unwrap();
    std::fs::write(tls.join("bundle.pem"), domain_ca.pem()).unwrap();
    let (url, heads) = upstream().await;
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("http://127.0.0.1:8450", &url)
        .replacen(
            "[gateway]\n",
            "[gateway]\ntls_cert_file = \"tls/remit.pem\"\ntls_key_file = \"tls/remit-key.pem\"\nclient_ca_file = \"tls/bundle.pem\"\nclient_trust_domain = \"remit.example\"\n",
            1,
        );
    std::fs::write(&config, text).unwrap();
    let (server_process, _admin, proxy) = spawn_serving(&[
        "serve",
        "--config",
        &config,
        "--data-dir",
        data.to_str().unwrap(),
    ]);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.der().to_vec()))
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from(svid.der().to_vec())],
        PrivateKeyDer::try_from(svid_key.serialize_der()).unwrap(),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(&proxy).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    stream
        .write_all(b"GET /tickets/1 HTTP/1.1\r\nHost: localhost\r\nRemit-Purpose: case-summary\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    {
        let heads = heads.lock().unwrap();
        assert_eq!(heads.len(), 1);
        assert!(
            heads[0].contains("remit-identity: support-assistant"),
            "{}",
            heads[0]
        );
    }

    // Plain HTTP to the TLS port is not served.
    let mut plain = tokio::net::TcpStream::connect(&proxy).await.unwrap();
    plain
        .write_all(b"GET /tickets/1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer rk_demo_support_assistant\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(heads.lock().unwrap().len(), 1);

    // A graceful stop.
    server_process.stop();
}
