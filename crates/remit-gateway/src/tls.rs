//! TLS on the proxy listener, and mutual TLS with X.509-SVIDs: rustls (on aws-lc-rs) through
//! tokio-rustls, with hyper-util serving HTTP/1.1 or HTTP/2 (ALPN `h2`, `http/1.1`) to the
//! same axum router as the plain listener.
//!
//! With `client_ca_file`, client certificates are verified against its trust anchors
//! (`WebPkiClientVerifier`); under `client_auth = "optional"` a client without one connects
//! and uses a bearer credential as over plain HTTP. A verified leaf is read once per
//! connection by [`remit_token::svid::spiffe_id_of`]: its SPIFFE ID reaches the handlers as
//! the request extension [`PeerSpiffeId`], and a verified certificate that is not an
//! X.509-SVID remit accepts has every request of its connection refused (403), never served
//! as if there were no certificate.
//!
//! The files are read again every [`RELOAD_EVERY`] and a changed set (by content) becomes
//! the configuration of new connections; a set that does not load keeps the old one, with a
//! warning and `remit_tls_reload_failures_total`. Handshakes have a deadline and a bound on
//! how many run at once.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use remit_core::ConfigError;
use remit_core::SpiffeId;
use remit_core::config::{ClientAuth, NamedFile, TlsSettings};
use remit_token::svid::{SvidError, spiffe_id_of};
use remit_token::tls::{MAX_TLS_FILE_BYTES, ServerCertificate, trust_anchors};
use rustls::ServerConfig;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::Problem;

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once; the listener accepts no more connections until
/// one finishes.
pub const MAX_HANDSHAKES: usize = 256;
/// How often the certificate, key and trust bundle files are checked for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The listener's limits and reload interval.
#[derive(Debug, Clone, Copy)]
pub struct TlsLimits {
    /// See [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`MAX_HANDSHAKES`].
    pub max_handshakes: usize,
    /// See [`RELOAD_EVERY`].
    pub reload_every: Duration,
}

impl Default for TlsLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_handshakes: MAX_HANDSHAKES,
            reload_every: RELOAD_EVERY,
        }
    }
}

/// Why the listener's TLS files cannot be used: the configuration's file, line and field
/// that name the file, the file, and what is wrong with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct TlsError(#[from] pub ConfigError);

/// The SPIFFE ID of the X.509-SVID the client of this connection presented, verified
/// against `client_ca_file`: a request extension, present only on such connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpiffeId(pub SpiffeId);

/// The peer's verified SPIFFE ID among a request's extensions, if its connection has one.
pub fn peer_spiffe_id(extensions: &http::Extensions) -> Option<SpiffeId> {
    extensions.get::<PeerSpiffeId>().map(|p| p.0.clone())
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files are as they were.
    Unchanged,
    /// New connections use the files as they are now.
    Replaced,
}

/// The files' bytes as last read.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Files {
    fn read(settings: &TlsSettings) -> Result<Self, TlsError> {
        Ok(Self {
            cert: read(&settings.cert_file)?,
            key: read(&settings.key_file)?,
            client_ca: settings
                .client_ca
                .as_ref()
                .map(|c| read(&c.file))
                .transpose()?,
        })
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()] {
            let part = part.map_or(&[][..], Vec::as_slice);
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

fn read(f: &NamedFile) -> Result<Vec<u8>, TlsError> {
    remit_engine::load::read_bytes_limited(&f.path, MAX_TLS_FILE_BYTES)
        .map_err(|m| TlsError(f.error(m)))
}

/// The rustls configuration of the files.
fn build(settings: &TlsSettings, files: &Files) -> Result<ServerConfig, TlsError> {
    let provider = remit_token::tls::provider();
    let server = ServerCertificate::from_pem(&files.cert, &files.key)
        .map_err(|(which, e)| TlsError(which.of(settings).error(e)))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(settings.cert_file.error(e)))?;
    let verified_clients = match (&settings.client_ca, &files.client_ca) {
        (Some(ca), Some(bundle)) => {
            let fail = |e: &dyn std::fmt::Display| TlsError(ca.file.error(e));
            let roots = trust_anchors(bundle).map_err(|e| fail(&e))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match ca.auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            let inner = verifier.build().map_err(|e| fail(&e))?;
            Some(Arc::new(TrustDomainVerifier {
                inner,
                trust_domain: ca.trust_domain.clone(),
            }) as Arc<dyn ClientCertVerifier>)
        }
        _ => None,
    };
    let resumable = verified_clients.is_none();
    let builder = match verified_clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(server.chain, server.key)
        .map_err(|e| TlsError(settings.key_file.error(e)))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if !resumable {
        // A resumed session would skip verifying the client's certificate again (against a
        // bundle that may have changed, at a time it may have expired): every connection
        // of a client with a certificate makes a full handshake.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

/// The listener's TLS configuration, replaced whenever its files change.
pub struct ServerTls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    digest: Mutex<[u8; 32]>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files `settings` names (paths as `load` resolved them) and builds the
    /// configuration.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let files = Files::read(settings)?;
        let config = build(settings, &files)?;
        Ok(Self {
            settings: settings.clone(),
            current: RwLock::new(Arc::new(config)),
            digest: Mutex::new(files.digest()),
        })
    }

    /// The configuration a new connection uses.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again; when their content changed and loads, new connections use it.
    /// A set that does not load changes nothing: it is logged, counted in
    /// `remit_tls_reload_failures_total` and returned.
    pub fn reload(&self) -> Result<Reload, TlsError> {
        let outcome = Files::read(&self.settings).and_then(|files| {
            let digest = files.digest();
            let mut held = self.digest.lock().unwrap_or_else(PoisonError::into_inner);
            if *held == digest {
                return Ok(Reload::Unchanged);
            }
            let config = build(&self.settings, &files)?;
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
            *held = digest;
            Ok(Reload::Replaced)
        });
        match &outcome {
            Ok(Reload::Replaced) => {
                metrics::counter!("remit_tls_reloads_total").increment(1);
                tracing::info!("the proxy listener's TLS files changed: new connections use them");
            }
            Ok(Reload::Unchanged) => {}
            Err(e) => {
                metrics::counter!("remit_tls_reload_failures_total").increment(1);
                tracing::warn!(error = %e, "the proxy listener's TLS files do not load; keeping the ones loaded before");
            }
        }
        outcome
    }
}

/// The client-certificate check: the chain must verify against `client_ca_file`'s anchors
/// (WebPKI), and an X.509-SVID must be of the trust domain those anchors vouch for
/// (`client_trust_domain`), so that an authority of one trust domain cannot present
/// another's identities. A verified certificate that is not an SVID passes here and is
/// refused per request ([`Peer::Refused`]), with the reason.
#[derive(Debug)]
struct TrustDomainVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: remit_core::TrustDomain,
}

impl ClientCertVerifier for TrustDomainVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Ok(id) = spiffe_id_of(end_entity.as_ref())
            && id.trust_domain() != self.trust_domain.as_str()
        {
            // Counted with the handshake's other failures; said here, with the claim.
            tracing::warn!(spiffe_id = %id, trusted = %self.trust_domain, "a client certificate of another trust domain chains to the client CA; refused");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What a connection's client certificate says, read once per connection.
#[derive(Debug, Clone)]
enum Peer {
    /// No client certificate.
    Anonymous,
    /// A verified X.509-SVID.
    Svid(PeerSpiffeId),
    /// A verified certificate that is not an X.509-SVID remit accepts.
    Refused(SvidError),
}

impl Peer {
    fn of(conn: &rustls::ServerConnection) -> Self {
        match conn.peer_certificates().and_then(|c| c.first()) {
            None => Self::Anonymous,
            Some(leaf) => match spiffe_id_of(leaf.as_ref()) {
                Ok(id) => Self::Svid(PeerSpiffeId(id)),
                Err(e) => Self::Refused(e),
            },
        }
    }
}

/// One connection's service: the router, with the peer's address (`ConnectInfo`) and
/// verified SPIFFE ID set on every request, or a refusal of every request when the
/// client's certificate is not an X.509-SVID.
#[derive(Debug, Clone)]
struct PeerService<S> {
    inner: S,
    addr: SocketAddr,
    peer: Peer,
}

impl<S, B> tower::Service<Request<B>> for PeerService<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match &self.peer {
            Peer::Anonymous => {}
            Peer::Svid(id) => {
                req.extensions_mut().insert(id.clone());
            }
            Peer::Refused(e) => {
                return Either::Right(ready(Ok(Problem::new(
                    StatusCode::FORBIDDEN,
                    format!("the client certificate is not an X.509-SVID remit accepts: {e}"),
                )
                .with("reason", json!(e.to_string()))
                .into_response())));
            }
        }
        req.extensions_mut().insert(ConnectInfo(self.addr));
        Either::Left(self.inner.call(req))
    }
}

/// Aborts the reload task when the listener stops (or its future is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then stops accepting and
/// waits for open connections to finish, as the plain listener does. The files are
/// reloaded every `limits.reload_every`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Arc<ServerTls>,
    limits: TlsLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _reloader = AbortOnDrop(tokio::spawn({
        let tls = tls.clone();
        async move {
            let mut tick = tokio::time::interval(limits.reload_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let tls = tls.clone();
                // Reading files blocks; the outcome is logged and counted by `reload`.
                let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
            }
        }
    }));
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A bound on handshakes in progress: wait for room before accepting.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = handshakes.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, addr) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.config());
        let watcher = graceful.watcher();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    metrics::counter!("remit_tls_handshake_failures_total", "reason" => "error")
                        .increment(1);
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics::counter!("remit_tls_handshake_failures_total", "reason" => "timeout")
                        .increment(1);
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            };
            drop(permit);
            let service = PeerService {
                inner: app,
                addr,
                peer: Peer::of(stream.get_ref().1),
            };
            let mut builder = Builder::new(TokioExecutor::new());
            // As `axum::serve`: the CONNECT protocol for HTTP/2 WebSockets.
            builder.http2().enable_connect_protocol();
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(peer = %addr, error = %e, "TLS connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// As `axum::serve`: a connection that failed before it was accepted is skipped; anything
/// else (such as running out of file descriptors) pauses accepting for a second.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection on the TLS listener failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
