//! The token endpoint, served on the proxy listener beside the resource it issues tokens
//! for: `POST /oauth2/token` (client credentials for identities; RFC 8693 token exchange
//! for an agent acting for a human) and `GET /.well-known/jwks.json` (remit's public keys).
//!
//! What is issued is decided by `remit_token::grant` (pure); this module parses the form,
//! authenticates the client (a secret in HTTP Basic or the form, or a `private_key_jwt`
//! assertion — exactly one), signs, records the token in the audit log before returning it
//! (a `token` record; no record, no token), and keeps remit's signing keys in the data
//! directory (`token-keys/`, one PKCS#8 file per key, the newest signing).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use remit_core::decision::RECORD_VERSION;
use remit_core::single_use::ClaimError;
use remit_core::vocab::{Authority, AuthorityKind};
use remit_core::{
    AuditRecord, CredentialId, Identity, IdentityId, Purpose, RecordSink, TokenRecord, Verdict,
};
use remit_engine::Engine;
use remit_token::assertion::{AssertionError, CLIENT_ASSERTION_TYPE};
use remit_token::grant::{self, AccessClaims, GrantError, GrantRequest};
use remit_token::jwt::{SubjectKind, VerifiedToken};
use remit_token::mint::{KeyRing, MAX_SIGNING_KEYS, MintError, SigningKey};
use serde_json::json;
use tower::ServiceBuilder;

/// Largest token request body.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;
/// Most form parameters in one token request.
pub const MAX_FORM_PARAMS: usize = 16;
/// Token requests served at once; more are refused with 503.
pub const MAX_CONCURRENT_TOKEN_REQUESTS: usize = 256;
/// The grant type of RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of an access token (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The token type of a JWT (RFC 8693 §3).
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The token type of an OpenID Connect ID token (RFC 8693 §3).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// remit's token type for an identity's API key used as an actor token.
pub const API_KEY_TYPE: &str = "urn:remit:params:oauth:token-type:api_key";

/// Why the token service could not start.
#[derive(Debug, thiserror::Error)]
pub enum TokenServiceError {
    /// The key directory could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A stored key is not a key.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        source: MintError,
    },
    /// remit issues no tokens (`tokens.issuer` is unset).
    #[error("`tokens.issuer` is not set, so remit issues no tokens")]
    Disabled,
}

/// remit's signing keys and the pipeline they serve.
pub struct TokenService {
    engine: Arc<Engine>,
    ring: RwLock<KeyRing>,
    key_dir: Option<PathBuf>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("key_dir", &self.key_dir)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> TokenServiceError {
    TokenServiceError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl TokenService {
    /// Opens the signing keys in `data_dir/token-keys` (making the first one if there is
    /// none) and hands their public half to the engine's verifier.
    pub fn open(engine: Arc<Engine>, data_dir: &Path) -> Result<Self, TokenServiceError> {
        if engine.config().tokens.issuer.is_none() {
            return Err(TokenServiceError::Disabled);
        }
        let dir = data_dir.join("token-keys");
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pk8"))
            .collect();
        files.sort();
        let mut keys = Vec::new();
        for f in files.iter().rev().take(MAX_SIGNING_KEYS).rev() {
            let meta = std::fs::metadata(f).map_err(|e| io(f, e))?;
            if meta.len() > 1024 {
                return Err(io(f, "larger than a signing key"));
            }
            let bytes = std::fs::read(f).map_err(|e| io(f, e))?;
            keys.push(
                SigningKey::from_pkcs8(&bytes).map_err(|source| TokenServiceError::Key {
                    path: f.display().to_string(),
                    source,
                })?,
            );
        }
        let svc = Self {
            engine,
            ring: RwLock::new(KeyRing::new(keys)),
            key_dir: Some(dir),
        };
        if svc.read_ring().keys().is_empty() {
            svc.rotate()?;
        } else {
            svc.publish();
        }
        Ok(svc)
    }

    /// A service whose keys live only in memory (tests, `remit check`).
    pub fn ephemeral(engine: Arc<Engine>) -> Result<Self, TokenServiceError> {
        let svc = Self {
            engine,
            ring: RwLock::new(KeyRing::default()),
            key_dir: None,
        };
        svc.rotate()?;
        Ok(svc)
    }

    fn read_ring(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self) {
        match self.read_ring().key_set() {
            Ok(keys) => self
                .engine
                .tokens()
                .set_keys(remit_token::jwt::OWN_ISSUER_ID, keys),
            Err(e) => {
                tracing::error!(error = %e, "remit's own key set could not be published");
                self.engine
                    .tokens()
                    .clear_keys(remit_token::jwt::OWN_ISSUER_ID);
            }
        }
    }

    /// Makes a new signing key (stored first, when there is a key directory), keeping the
    /// previous ones published so tokens they signed still verify until they expire.
    pub fn rotate(&self) -> Result<(), TokenServiceError> {
        let key = SigningKey::generate().map_err(|source| TokenServiceError::Key {
            path: "(new key)".into(),
            source,
        })?;
        if let Some(dir) = &self.key_dir {
            let name = format!(
                "{:020}-{}.pk8",
                time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
                &key.kid()[..8]
            );
            let path = dir.join(name);
            write_secret(&path, key.pkcs8()).map_err(|e| io(&path, e))?;
        }
        self.ring
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .rotate(key);
        self.publish();
        Ok(())
    }

    /// The published key set.
    pub fn jwks(&self) -> serde_json::Value {
        self.read_ring().jwks()
    }
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The token endpoint's state: the signing keys and pipeline, and the audit log every
/// issued token is recorded in before it is returned.
struct Endpoint {
    svc: Arc<TokenService>,
    sink: Arc<dyn RecordSink>,
}

/// The token endpoint's routes, to be merged into the proxy listener's router. Every token
/// issued, and every refusal of an authenticated client, is made durable in `sink` before
/// the answer; a token whose record cannot be written is not issued.
pub fn token_router(svc: Arc<TokenService>, sink: Arc<dyn RecordSink>) -> Router {
    let ep = Arc::new(Endpoint { svc, sink });
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(authorization_server_metadata),
        )
        .with_state(ep)
        .layer(
            ServiceBuilder::new()
                // Shed token requests beyond a fixed number in flight (a limit, answered 503).
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async {
                        crate::Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "remit is overloaded; no token was issued",
                        )
                    },
                ))
                .load_shed()
                .concurrency_limit(MAX_CONCURRENT_TOKEN_REQUESTS),
        )
        // Bound the form before it is read (a limit, answered 413).
        .layer(DefaultBodyLimit::max(MAX_TOKEN_REQUEST_BYTES))
}

/// Serves the proxy with the token endpoint beside it until `shutdown` resolves.
pub async fn serve_proxy_with_tokens(
    listener: tokio::net::TcpListener,
    state: crate::proxy::ProxyState,
    svc: Arc<TokenService>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sink = state.sink();
    let app = crate::proxy::proxy_router(state)
        .merge(token_router(svc, sink))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(crate::nodelay(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn jwks(State(ep): State<Arc<Endpoint>>) -> Response {
    let mut r = axum::Json(ep.svc.jwks()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// RFC 8414 authorization server metadata: where remit's token endpoint and keys are and
/// what the endpoint accepts, so that an OAuth client — an MCP client following the
/// protected resource's `authorization_servers` (RFC 9728) — finds them.
async fn authorization_server_metadata(State(ep): State<Arc<Endpoint>>) -> Response {
    let svc = &ep.svc;
    let tokens = &svc.engine.config().tokens;
    // `TokenService::open` refuses a configuration without an issuer; fail closed anyway.
    let Some(issuer) = tokens.issuer.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let base = issuer.trim_end_matches('/');
    let body = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": token_endpoint(issuer),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials", TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported":
            remit_token::assertion::signing_algs().collect::<Vec<_>>(),
        "response_types_supported": [],
        "scopes_supported": svc
            .engine
            .config()
            .routes
            .actions()
            .keys()
            .map(|a| a.as_str())
            .filter(|a| *a != "unmapped")
            .collect::<Vec<_>>(),
    });
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(e: &GrantError) -> Response {
    let status = match e {
        GrantError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        GrantError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut r = (
        status,
        axum::Json(json!({ "error": e.code(), "error_description": e.to_string() })),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"remit\""),
        );
    }
    r
}

fn bad(msg: impl Into<String>) -> GrantError {
    GrantError::InvalidRequest(msg.into())
}

fn hex_val(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Decodes one `application/x-www-form-urlencoded` component. Written here rather than
/// with `form_urlencoded`, which passes a malformed `%` escape through as text: the token
/// endpoint refuses it instead (`invalid_request`).
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_val)?;
                let lo = b.get(i + 2).copied().and_then(hex_val)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The form's parameters. Each may appear once (RFC 6749 §3.2): a repeated one, an empty
/// name, undecodable text or too many parameters is an `invalid_request`.
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, GrantError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("the form is not UTF-8"))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= MAX_FORM_PARAMS {
            return Err(bad(format!("more than {MAX_FORM_PARAMS} parameters")));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (form_decode(k), form_decode(v)) else {
            return Err(bad("a parameter is not valid form encoding"));
        };
        if k.is_empty() {
            return Err(bad("a parameter has no name"));
        }
        if out.iter().any(|(n, _)| *n == k) {
            return Err(bad(format!(
                "parameter `{}` is repeated",
                k.chars().take(32).collect::<String>()
            )));
        }
        out.push((k, v));
    }
    Ok(out)
}

struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// How a client authenticated at the token endpoint (RFC 8414's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthMethod {
    /// The secret in HTTP Basic (RFC 6749 §2.3.1).
    SecretBasic,
    /// The secret in the form.
    SecretPost,
    /// A JWT signed with the client's key (RFC 7523 §2.2).
    PrivateKeyJwt,
    /// No client authentication: the actor of an exchange presented its own token or key.
    ActorToken,
}

impl AuthMethod {
    fn as_str(self) -> &'static str {
        match self {
            Self::SecretBasic => "client_secret_basic",
            Self::SecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::ActorToken => "actor_token",
        }
    }
}

/// The client authentication a request presents: exactly one method, or none.
enum ClientAuth {
    /// A client id and secret, from Basic or the form.
    Secret {
        id: String,
        secret: String,
        method: AuthMethod,
    },
    /// A client assertion, and the `client_id` sent beside it, if any.
    Assertion {
        assertion: String,
        client_id: Option<String>,
    },
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, GrantError> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    match (auth.next(), auth.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(bad("`Authorization` is repeated")),
        (Some(v), None) => {
            let v = v
                .to_str()
                .map_err(|_| GrantError::InvalidClient("unreadable `Authorization`".into()))?;
            let (scheme, b64) = v
                .split_once(' ')
                .ok_or_else(|| GrantError::InvalidClient("expected `Basic` credentials".into()))?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(GrantError::InvalidClient(
                    "only `Basic` client authentication is accepted here".into(),
                ));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    GrantError::InvalidClient("unreadable `Basic` credentials".into())
                })?;
            let (id, secret) = raw.split_once(':').ok_or_else(|| {
                GrantError::InvalidClient("unreadable `Basic` credentials".into())
            })?;
            let (Some(id), Some(secret)) = (form_decode(id), form_decode(secret)) else {
                return Err(GrantError::InvalidClient(
                    "unreadable `Basic` credentials".into(),
                ));
            };
            Ok(Some((id, secret)))
        }
    }
}

/// The client authentication of a request: a secret in HTTP Basic, a secret in the form,
/// or a client assertion (RFC 7523 §2.2). More than one method is an `invalid_request`
/// (RFC 6749 §2.3); so is half of one.
fn client_auth(headers: &HeaderMap, form: &Form) -> Result<Option<ClientAuth>, GrantError> {
    let basic = basic_credentials(headers)?.map(|(id, secret)| ClientAuth::Secret {
        id,
        secret,
        method: AuthMethod::SecretBasic,
    });
    let posted = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Some(ClientAuth::Secret {
            id: id.to_owned(),
            secret: secret.to_owned(),
            method: AuthMethod::SecretPost,
        }),
        (_, Some(_)) => return Err(bad("`client_secret` without `client_id`")),
        _ => None,
    };
    let assertion = match (
        form.get("client_assertion_type"),
        form.get("client_assertion"),
    ) {
        (Some(CLIENT_ASSERTION_TYPE), Some(a)) => Some(ClientAuth::Assertion {
            assertion: a.to_owned(),
            client_id: form.get("client_id").map(str::to_owned),
        }),
        (Some(CLIENT_ASSERTION_TYPE), None) => {
            return Err(bad("`client_assertion_type` without `client_assertion`"));
        }
        (Some(_), _) => {
            return Err(bad(format!(
                "`client_assertion_type` must be `{CLIENT_ASSERTION_TYPE}`"
            )));
        }
        (None, Some(_)) => return Err(bad("`client_assertion` without `client_assertion_type`")),
        (None, None) => None,
    };
    let mut given = [basic, posted, assertion].into_iter().flatten();
    match (given.next(), given.next()) {
        (Some(_), Some(_)) => Err(bad("use one client authentication method, not two")),
        (one, _) => Ok(one),
    }
}

/// The client an authenticated request comes from.
#[derive(Clone)]
struct Client<'e> {
    identity: &'e Identity,
    method: AuthMethod,
    credential: Option<CredentialId>,
}

/// The token endpoint's URL under remit's issuer.
fn token_endpoint(issuer: &str) -> String {
    format!("{}/oauth2/token", issuer.trim_end_matches('/'))
}

/// The audiences a client assertion may name: remit's issuer and its token endpoint.
fn assertion_audiences(issuer: &str) -> [String; 2] {
    [issuer.to_owned(), token_endpoint(issuer)]
}

async fn authenticate_client<'e>(
    engine: &'e Engine,
    auth: &ClientAuth,
    now: i64,
) -> Result<Client<'e>, GrantError> {
    let refused = || GrantError::InvalidClient("client authentication failed".into());
    match auth {
        ClientAuth::Secret { id, secret, method } => {
            let id = IdentityId::parse(id).map_err(|_| refused())?;
            let identity = engine.config().registry.get(&id).ok_or_else(refused)?;
            let credential = remit_token::identity_secret_id(identity, secret)
                .ok_or_else(refused)?
                .clone();
            Ok(Client {
                identity,
                method: *method,
                credential: Some(credential),
            })
        }
        ClientAuth::Assertion {
            assertion,
            client_id,
        } => {
            let settings = &engine.config().tokens;
            let issuer = settings.issuer.as_deref().ok_or_else(refused)?;
            let auds = assertion_audiences(issuer);
            let auds = [auds[0].as_str(), auds[1].as_str()];
            let verified = match engine.client_keys().verify(
                assertion,
                client_id.as_deref(),
                &auds,
                settings.skew_s,
                now,
            ) {
                Ok(unspent) => unspent.spend(engine.claims(), now).await,
                Err(e) => Err(e),
            };
            let verified = verified.map_err(|e| {
                // A claim store that cannot answer is remit's failure, not the client's: no
                // token now (fail closed), and the client may try again.
                if let AssertionError::Replay(ClaimError::Unavailable(why)) = &e {
                    tracing::error!(error = %why, "a client assertion's `jti` could not be claimed");
                    return GrantError::Unavailable(
                        "remit cannot check client assertions now; try again later".into(),
                    );
                }
                // The reason is for the operator; the client learns only that it failed.
                tracing::info!(error = %e, "a client assertion is refused");
                metrics::counter!("remit_client_assertion_refusals_total").increment(1);
                GrantError::InvalidClient(
                    "client authentication failed: the client assertion is refused".into(),
                )
            })?;
            let identity = engine
                .config()
                .registry
                .get(&verified.client)
                .ok_or_else(refused)?;
            Ok(Client {
                identity,
                method: AuthMethod::PrivateKeyJwt,
                credential: Some(verified.credential),
            })
        }
    }
}

fn verify(engine: &Engine, token: &str, what: &str, now: i64) -> Result<VerifiedToken, GrantError> {
    engine
        .tokens()
        .verify(token, now)
        .map_err(|e| GrantError::InvalidGrant(format!("the {what} is refused: {e}")))
}

/// What the record of a token request names, filled in as the request is decided. Only a
/// request whose client (or actor) authenticated is recorded.
#[derive(Default)]
struct Trail<'e> {
    grant_type: Option<&'static str>,
    client: Option<Client<'e>>,
    human: Option<(String, String)>,
    actors: Vec<String>,
    purpose: Option<String>,
    requested_scope: Option<String>,
}

/// A token signed and ready to be returned once its record is durable.
struct Issued {
    body: serde_json::Value,
    claims: AccessClaims,
    signing_kid: Option<String>,
}

fn token_record(
    engine: &Engine,
    id: &str,
    trail: &Trail<'_>,
    client: &Client<'_>,
    outcome: &Result<Issued, GrantError>,
    source_ip: Option<std::net::IpAddr>,
) -> TokenRecord {
    let authority = match &trail.human {
        Some((human, _)) => Authority {
            kind: AuthorityKind::Delegated,
            on_behalf_of: Some(human.clone()),
            actors: trail.actors.clone(),
        },
        None => Authority {
            kind: AuthorityKind::Own,
            on_behalf_of: None,
            actors: Vec::new(),
        },
    };
    let time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut r = TokenRecord {
        v: RECORD_VERSION,
        time,
        replica: engine.config().gateway.replica_id.clone(),
        decision_id: id.to_owned(),
        decision: Verdict::Allow,
        grant_type: trail.grant_type.unwrap_or("unknown").to_owned(),
        identity: client.identity.id.clone(),
        client_auth: client.method.as_str().to_owned(),
        credential_id: client.credential.clone(),
        authority,
        human_issuer: trail.human.as_ref().map(|(_, i)| i.clone()),
        purpose: trail
            .purpose
            .as_deref()
            .and_then(|p| Purpose::parse(p).ok()),
        requested_scope: trail
            .requested_scope
            .as_ref()
            .map(|s| s.chars().take(1024).collect()),
        scope: None,
        audience: None,
        jti: None,
        iat: None,
        exp: None,
        expires_in: None,
        signing_kid: None,
        error: None,
        reasons: Vec::new(),
        source_ip,
    };
    match outcome {
        Ok(i) => {
            r.scope = Some(i.claims.scope.clone());
            r.audience = Some(i.claims.aud.clone());
            r.jti = Some(i.claims.jti.clone());
            r.iat = Some(i.claims.iat);
            r.exp = Some(i.claims.exp);
            r.expires_in = Some(i.claims.exp - i.claims.iat);
            r.signing_kid.clone_from(&i.signing_kid);
            r.purpose = i
                .claims
                .purpose
                .as_deref()
                .and_then(|p| Purpose::parse(p).ok());
        }
        Err(e) => {
            r.decision = Verdict::Deny;
            r.error = Some(e.code().to_owned());
            r.reasons = vec![e.to_string().chars().take(512).collect()];
        }
    }
    r
}

async fn token(
    State(ep): State<Arc<Endpoint>>,
    conn: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let engine = &ep.svc.engine;
    let id = uuid::Uuid::now_v7().to_string();
    let mut trail = Trail::default();
    let mut outcome = issue(&ep.svc, &headers, &body, &id, &mut trail).await;
    // Every token, and every refusal of an authenticated client, is durable in the audit
    // log before the answer: a token whose record cannot be written is never returned.
    if let Some(client) = &trail.client {
        let ip = conn.map(|c| c.0.0.ip());
        let record = token_record(engine, &id, &trail, client, &outcome, ip);
        if let Err(e) = ep.sink.append(AuditRecord::Token(record)).await {
            tracing::error!(error = %e, "a token record could not be written");
            metrics::counter!("remit_token_unrecorded_total").increment(1);
            if outcome.is_ok() {
                outcome = Err(GrantError::Unavailable(
                    "the token could not be recorded, so none was issued".into(),
                ));
            }
        }
    }
    match outcome {
        Ok(issued) => {
            metrics::counter!("remit_tokens_issued_total").increment(1);
            let mut r = axum::Json(issued.body).into_response();
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => {
            metrics::counter!("remit_token_refusals_total", "error" => e.code()).increment(1);
            oauth_error(&e)
        }
    }
}

async fn issue<'e>(
    svc: &'e TokenService,
    headers: &HeaderMap,
    body: &[u8],
    jti: &str,
    trail: &mut Trail<'e>,
) -> Result<Issued, GrantError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(bad(
            "the token request must be `application/x-www-form-urlencoded`",
        ));
    }
    let form = Form(parse_form(body)?);
    let engine = &*svc.engine;
    let settings = &engine.config().tokens;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let req = GrantRequest {
        scope: form.get("scope"),
        purpose: form.get("purpose"),
        resource: form.get("resource"),
        audience: form.get("audience"),
    };
    let grant_type = match form.get("grant_type") {
        Some("client_credentials") => "client_credentials",
        Some(TOKEN_EXCHANGE) => "token_exchange",
        Some(other) => {
            return Err(GrantError::InvalidRequest(format!(
                "grant type `{}` is not supported",
                other.chars().take(64).collect::<String>()
            )));
        }
        None => return Err(bad("`grant_type` is required")),
    };
    let auth = client_auth(headers, &form)?;
    let client = match &auth {
        Some(a) => Some(authenticate_client(engine, a, now).await?),
        None => None,
    };
    trail.grant_type = Some(grant_type);
    trail.client.clone_from(&client);
    trail.purpose = req.purpose.map(str::to_owned);
    trail.requested_scope = req.scope.map(str::to_owned);
    let grant = if grant_type == "client_credentials" {
        let client = client.ok_or_else(|| {
            GrantError::InvalidClient("client credentials need client authentication".into())
        })?;
        grant::client_credentials(settings, client.identity, &req, now, jti.to_owned())?
    } else {
        let subject_token = form
            .get("subject_token")
            .ok_or_else(|| bad("`subject_token` is required"))?;
        match form.get("subject_token_type") {
            Some(ACCESS_TOKEN_TYPE | JWT_TYPE | ID_TOKEN_TYPE) => {}
            Some(_) => {
                return Err(bad(
                    "`subject_token_type` must be an access token, a JWT or an ID token",
                ));
            }
            None => return Err(bad("`subject_token_type` is required")),
        }
        let (actor, actor_credential, actor_token) =
            match (form.get("actor_token"), form.get("actor_token_type")) {
                (Some(t), Some(API_KEY_TYPE)) => {
                    let identity = remit_token::identity_by_secret(&engine.config().registry, t)
                        .ok_or_else(|| {
                            GrantError::InvalidGrant(
                                "the actor token is not an identity's key".into(),
                            )
                        })?;
                    let cred = remit_token::identity_secret_id(identity, t).cloned();
                    (identity, cred, None)
                }
                (Some(t), Some(ACCESS_TOKEN_TYPE | JWT_TYPE)) => {
                    let v = verify(engine, t, "actor token", now)?;
                    if !v.actors.is_empty() {
                        return Err(GrantError::InvalidGrant(
                            "the actor token must be an identity's own token".into(),
                        ));
                    }
                    let unregistered = || {
                        GrantError::InvalidGrant(format!(
                            "actor `{}` is not a registered identity",
                            v.subject
                        ))
                    };
                    let registry = &engine.config().registry;
                    let (identity, credential) = match &v.kind {
                        SubjectKind::Identity => (
                            IdentityId::parse(&v.subject)
                                .ok()
                                .and_then(|id| registry.get(&id))
                                .ok_or_else(unregistered)?,
                            None,
                        ),
                        // A JWT-SVID: the identity holding its SPIFFE ID, recorded by the
                        // `spiffe` credential's id.
                        SubjectKind::Spiffe { spiffe_id } => {
                            match engine.spiffe_holder(spiffe_id) {
                                remit_token::PeerIdentity::Registered {
                                    identity,
                                    credential,
                                } => (
                                    registry.get(identity).ok_or_else(unregistered)?,
                                    Some(credential.clone()),
                                ),
                                remit_token::PeerIdentity::Unknown => return Err(unregistered()),
                            }
                        }
                        SubjectKind::Human { .. } => {
                            return Err(GrantError::InvalidGrant(
                                "the actor token must be an identity's own token".into(),
                            ));
                        }
                    };
                    (identity, credential, Some(v))
                }
                (Some(_), Some(_)) => {
                    return Err(bad(
                        "`actor_token_type` must be an access token, a JWT or remit's API-key type",
                    ));
                }
                (Some(_), None) => return Err(bad("`actor_token_type` is required")),
                (None, Some(_)) => return Err(bad("`actor_token_type` without `actor_token`")),
                (None, None) => {
                    let c = client.as_ref().ok_or_else(|| {
                        GrantError::InvalidRequest(
                            "name the actor with `actor_token` or client authentication".into(),
                        )
                    })?;
                    (c.identity, c.credential.clone(), None)
                }
            };
        if let Some(c) = &client
            && c.identity.id != actor.id
        {
            return Err(GrantError::InvalidGrant(
                "the authenticated client is not the actor".into(),
            ));
        }
        if client.is_none() {
            // The actor authenticated by its own token or key: it is who is recorded.
            trail.client = Some(Client {
                identity: actor,
                method: AuthMethod::ActorToken,
                credential: actor_credential,
            });
        }
        let subject = verify(engine, subject_token, "subject token", now)?;
        if let SubjectKind::Human { issuer, .. } = &subject.kind {
            trail.human = Some((subject.subject.clone(), issuer.clone()));
        }
        trail.actors = std::iter::once(actor.id.to_string())
            .chain(subject.actors.iter().cloned())
            .collect();
        grant::exchange(
            settings,
            &engine.config().registry,
            &subject,
            actor,
            actor_token.as_ref(),
            &req,
            now,
            jti.to_owned(),
        )?
    };
    let ring = svc.read_ring();
    let signing_kid = ring.keys().last().map(|k| k.kid().to_owned());
    let token = ring
        .sign(&grant.claims)
        .map_err(|e| GrantError::Unavailable(format!("no token could be signed: {e}")))?;
    drop(ring);
    let mut out = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "scope": grant.scope.to_string(),
    });
    if grant.claims.act.is_some() {
        out["issued_token_type"] = json!(ACCESS_TOKEN_TYPE);
    }
    Ok(Issued {
        body: out,
        claims: grant.claims,
        signing_kid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_parse_strictly() {
        let f = parse_form(b"grant_type=client_credentials&scope=a+b%2Ec").unwrap();
        assert_eq!(f[1], ("scope".into(), "a b.c".into()));
        for bad in [
            &b"a=1&a=2"[..],
            b"=x",
            b"a=%zz",
            b"a=%4",
            b"a=%ff%fe",
            &b"a=1&".repeat(17),
        ] {
            assert!(
                parse_form(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
