//! The key-set refresher: the network side of JWT verification. For every issuer whose keys
//! come from a URL (`jwks_uri`) or OpenID Connect discovery, a task fetches the JWKS,
//! parses it with `remit_token::jwt::KeySet` and hands it to the engine's pure verifier.
//!
//! Failing closed: until a first fetch succeeds the issuer has no keys, so its tokens are
//! refused; after failures the last good set is kept for at most [`MAX_STALE`], then
//! removed. Responses are bounded ([`remit_token::jwt::MAX_JWKS_BYTES`]), redirects are
//! not followed, and discovery must name exactly the configured issuer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use remit_core::tokens::{IssuerSettings, KeySource, MAX_URL_LEN};
use remit_engine::Engine;
use remit_token::jwt::{KeySet, MAX_JWKS_BYTES};

/// How often key sets are fetched.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// How long a key set may go unrefreshed before its issuer's tokens are refused.
pub const MAX_STALE: Duration = Duration::from_secs(3600);
/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest discovery document accepted.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// Why a key set could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The request failed.
    #[error("fetching `{url}` failed: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer is over its limit.
    #[error("`{0}` answered more than the limit")]
    TooLarge(String),
    /// The discovery document is unusable.
    #[error("the discovery document of `{issuer}` {why}")]
    Discovery {
        /// The issuer.
        issuer: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The key set is refused.
    #[error(transparent)]
    Keys(#[from] remit_token::jwt::KeySetError),
}

/// An HTTP client for key sets: no redirects, a short timeout, no idle connections.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        // One fetch a minute needs no pool, and a pooled connection may be dead.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

async fn fetch(client: &reqwest::Client, url: &str, limit: usize) -> Result<Vec<u8>, RefreshError> {
    let err = |message: String| RefreshError::Fetch {
        url: url.to_owned(),
        message,
    };
    let mut resp = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("status {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(RefreshError::TooLarge(url.to_owned()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
        if body.len() + chunk.len() > limit {
            return Err(RefreshError::TooLarge(url.to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn acceptable_url(u: &str) -> bool {
    u.len() <= MAX_URL_LEN
        && (u.starts_with("https://")
            || u.starts_with("http://127.0.0.1")
            || u.starts_with("http://localhost")
            || u.starts_with("http://[::1]"))
}

/// The JWKS URL of `issuer`: configured, or from its discovery document.
pub async fn jwks_url(
    client: &reqwest::Client,
    issuer: &IssuerSettings,
) -> Result<Option<String>, RefreshError> {
    match &issuer.keys {
        KeySource::Uri(u) => Ok(Some(u.clone())),
        KeySource::Discovery => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.issuer.trim_end_matches('/')
            );
            let doc: serde_json::Value = serde_json::from_slice(
                &fetch(client, &url, MAX_DISCOVERY_BYTES).await?,
            )
            .map_err(|_| RefreshError::Discovery {
                issuer: issuer.issuer.clone(),
                why: "is not JSON",
            })?;
            let bad = |why| RefreshError::Discovery {
                issuer: issuer.issuer.clone(),
                why,
            };
            if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer.issuer.as_str()) {
                return Err(bad("names another issuer"));
            }
            let jwks = doc
                .get("jwks_uri")
                .and_then(|v| v.as_str())
                .ok_or(bad("has no `jwks_uri`"))?;
            if !acceptable_url(jwks) {
                return Err(bad("has a `jwks_uri` that is not https"));
            }
            Ok(Some(jwks.to_owned()))
        }
        KeySource::File(_) | KeySource::Inline(_) => Ok(None),
    }
}

/// Fetches `issuer`'s key set once and installs it. Returns how many keys it holds.
pub async fn refresh_once(
    engine: &Engine,
    client: &reqwest::Client,
    issuer: &IssuerSettings,
) -> Result<usize, RefreshError> {
    let Some(url) = jwks_url(client, issuer).await? else {
        return Ok(0);
    };
    let keys = KeySet::from_jwks(
        &fetch(client, &url, MAX_JWKS_BYTES).await?,
        &issuer.algorithms,
    )?;
    let n = keys.len();
    engine.tokens().set_keys(&issuer.id, keys);
    Ok(n)
}

/// Keeps one issuer's keys fresh until the task is dropped, every `every`.
pub async fn refresh_forever(engine: Arc<Engine>, issuer: IssuerSettings, every: Duration) {
    let client = client();
    let mut last_good: Option<Instant> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match refresh_once(&engine, &client, &issuer).await {
            Ok(n) => {
                last_good = Some(Instant::now());
                tracing::debug!(issuer = %issuer.id, keys = n, "key set refreshed");
            }
            Err(e) => {
                metrics::counter!("remit_jwks_refresh_failures_total").increment(1);
                tracing::warn!(issuer = %issuer.id, error = %e, "key set not refreshed");
                if last_good.is_none_or(|t| t.elapsed() > MAX_STALE) {
                    engine.tokens().clear_keys(&issuer.id);
                }
            }
        }
    }
}

/// Starts a refresher for every issuer whose keys come from the network.
pub fn spawn_refreshers(engine: &Arc<Engine>, every: Duration) -> Vec<tokio::task::JoinHandle<()>> {
    engine
        .config()
        .tokens
        .issuers
        .iter()
        .filter(|i| matches!(i.keys, KeySource::Uri(_) | KeySource::Discovery))
        .map(|i| tokio::spawn(refresh_forever(engine.clone(), i.clone(), every)))
        .collect()
}
