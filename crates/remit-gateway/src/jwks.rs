//! The key-set refresher: the network side of JWT verification. For every issuer whose keys
//! come from a URL (`jwks_uri`) or OpenID Connect discovery, a task fetches the JWKS,
//! parses it with `remit_token::jwt::KeySet` and hands it to the engine's pure verifier.
//!
//! Failing closed: until a first fetch succeeds the issuer has no keys, so its tokens are
//! refused; after failures the last good set is kept for at most [`MAX_STALE`], then
//! removed. Responses are bounded ([`remit_token::jwt::MAX_JWKS_BYTES`]), redirects are
//! not followed, and discovery must name exactly the configured issuer.
//!
//! SPIFFE trust domains with a `bundle_url` are kept fresh the same way, by the same
//! client: the bundle endpoint's SPIFFE bundle (bounded by
//! [`remit_token::jwt::MAX_BUNDLE_BYTES`]) gives the trust domain's JWT authorities; the
//! next fetch follows the bundle's `spiffe_refresh_hint`, held between
//! [`BUNDLE_REFRESH_MIN`] and [`BUNDLE_REFRESH_MAX`]; a bundle whose `spiffe_sequence` is
//! lower than the one installed is refused (an old bundle replayed), keeping the current one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use remit_core::tokens::{
    BundleSource, IssuerSettings, KeySource, MAX_URL_LEN, TrustDomainSettings,
};
use remit_engine::Engine;
use remit_token::jwt::{KeySet, MAX_BUNDLE_BYTES, MAX_JWKS_BYTES};

/// How often key sets are fetched.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// How long a key set may go unrefreshed before its issuer's tokens are refused.
pub const MAX_STALE: Duration = Duration::from_secs(3600);
/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest discovery document accepted.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// The soonest a bundle is fetched again, whatever its refresh hint says.
pub const BUNDLE_REFRESH_MIN: Duration = Duration::from_secs(10);
/// The latest a bundle is fetched again, whatever its refresh hint says (well inside
/// [`MAX_STALE`], so a failing endpoint is retried before its keys go stale).
pub const BUNDLE_REFRESH_MAX: Duration = Duration::from_secs(600);

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
    /// The bundle is older than the one installed.
    #[error("`{url}` served bundle sequence {got}, older than {had}: the installed bundle is kept")]
    Rollback {
        /// The bundle endpoint.
        url: String,
        /// The installed bundle's sequence.
        had: u64,
        /// The served bundle's sequence.
        got: u64,
    },
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

/// What one bundle refresh installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleRefreshed {
    /// How many JWT authorities the bundle holds.
    pub keys: usize,
    /// The bundle's `spiffe_sequence`, when it has one.
    pub sequence: Option<u64>,
    /// When to fetch it again: its refresh hint, held within bounds.
    pub refresh_after: Duration,
}

/// When to fetch a bundle again: its `spiffe_refresh_hint` (or `default` without one), held
/// between [`BUNDLE_REFRESH_MIN`] and [`BUNDLE_REFRESH_MAX`].
pub fn bundle_refresh_after(hint_s: Option<u64>, default: Duration) -> Duration {
    hint_s
        .map_or(default, Duration::from_secs)
        .clamp(BUNDLE_REFRESH_MIN, BUNDLE_REFRESH_MAX)
}

/// Fetches a trust domain's SPIFFE bundle from its `bundle_url` once and installs its JWT
/// authorities. `installed` is the sequence of the bundle installed before, if any: a bundle
/// with a lower sequence is refused and the installed one kept. A trust domain whose bundle
/// is a file installs nothing here (`keys` is 0).
pub async fn refresh_bundle_once(
    engine: &Engine,
    client: &reqwest::Client,
    td: &TrustDomainSettings,
    installed: Option<u64>,
) -> Result<BundleRefreshed, RefreshError> {
    let BundleSource::Url(url) = &td.bundle else {
        return Ok(BundleRefreshed {
            keys: 0,
            sequence: None,
            refresh_after: BUNDLE_REFRESH_MAX,
        });
    };
    let bundle =
        KeySet::from_spiffe_bundle(&fetch(client, url, MAX_BUNDLE_BYTES).await?, &td.algorithms)?;
    if let (Some(had), Some(got)) = (installed, bundle.sequence)
        && got < had
    {
        return Err(RefreshError::Rollback {
            url: url.clone(),
            had,
            got,
        });
    }
    let out = BundleRefreshed {
        keys: bundle.keys.len(),
        sequence: bundle.sequence.or(installed),
        refresh_after: bundle_refresh_after(bundle.refresh_hint_s, REFRESH_EVERY),
    };
    engine.tokens().set_bundle(td.name.as_str(), bundle.keys);
    Ok(out)
}

/// Keeps one trust domain's bundle fresh until the task is dropped: fetched at once, then
/// as its refresh hint says (`every` without one), within bounds. After failures the last
/// good bundle is kept for at most [`MAX_STALE`], then removed (fail closed).
pub async fn refresh_bundle_forever(engine: Arc<Engine>, td: TrustDomainSettings, every: Duration) {
    let client = client();
    let mut last_good: Option<Instant> = None;
    let mut installed: Option<u64> = None;
    let mut wait = bundle_refresh_after(None, every);
    loop {
        match refresh_bundle_once(&engine, &client, &td, installed).await {
            Ok(r) => {
                last_good = Some(Instant::now());
                installed = r.sequence;
                wait = r.refresh_after;
                tracing::debug!(trust_domain = %td.name, keys = r.keys, sequence = ?r.sequence, "bundle refreshed");
            }
            Err(e) => {
                metrics::counter!("remit_spiffe_bundle_refresh_failures_total").increment(1);
                tracing::warn!(trust_domain = %td.name, error = %e, "bundle not refreshed");
                if last_good.is_none_or(|t| t.elapsed() > MAX_STALE) {
                    engine.tokens().clear_bundle(td.name.as_str());
                    // Nothing installed: whatever the endpoint serves next may start afresh.
                    installed = None;
                }
                wait = wait.min(bundle_refresh_after(None, every));
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// Starts a refresher for every issuer whose keys, and every trust domain whose bundle,
/// come from the network.
pub fn spawn_refreshers(engine: &Arc<Engine>, every: Duration) -> Vec<tokio::task::JoinHandle<()>> {
    let tokens = &engine.config().tokens;
    let issuers = tokens
        .issuers
        .iter()
        .filter(|i| matches!(i.keys, KeySource::Uri(_) | KeySource::Discovery))
        .map(|i| tokio::spawn(refresh_forever(engine.clone(), i.clone(), every)));
    let bundles = tokens
        .trust_domains
        .iter()
        .filter(|t| matches!(t.bundle, BundleSource::Url(_)))
        .map(|t| tokio::spawn(refresh_bundle_forever(engine.clone(), t.clone(), every)));
    issuers.chain(bundles).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_hint_is_honoured_within_bounds() {
        let d = REFRESH_EVERY;
        assert_eq!(bundle_refresh_after(None, d), d);
        assert_eq!(bundle_refresh_after(Some(300), d), Duration::from_secs(300));
        assert_eq!(bundle_refresh_after(Some(0), d), BUNDLE_REFRESH_MIN);
        assert_eq!(bundle_refresh_after(Some(1), d), BUNDLE_REFRESH_MIN);
        assert_eq!(bundle_refresh_after(Some(u64::MAX), d), BUNDLE_REFRESH_MAX);
        assert_eq!(bundle_refresh_after(Some(86_400), d), BUNDLE_REFRESH_MAX);
        assert!(BUNDLE_REFRESH_MAX < MAX_STALE);
    }
}
