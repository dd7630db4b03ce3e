//! The `[store]` table of `remit.toml`: state shared by several replicas. Today that is
//! Redis for single-use token claims; without it each replica keeps its own claims, which
//! is right for one replica and wrong for several (a token could be used once per replica).

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Ctx, bounded};
use crate::ConfigError;

/// Longest Redis URL accepted.
pub const MAX_REDIS_URL: usize = 512;
/// Longest key prefix.
pub const MAX_REDIS_PREFIX: usize = 64;

/// Where shared state lives, from `[store]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSettings {
    /// Redis, when replicas share single-use claims.
    pub redis: Option<RedisSettings>,
}

/// A Redis server, from `[store] redis_url` and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host[:port][/db]` or `rediss://…` (TLS); never with a password in it.
    pub url: String,
    /// The environment variable holding the password, if the server wants one.
    pub password_env: Option<String>,
    /// Prepended to every key remit writes, so several deployments can share a server.
    pub prefix: String,
    /// How long one command (or a connection attempt) may take before the request it
    /// serves is refused.
    pub timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    redis_url: Option<Spanned<String>>,
    redis_password_env: Option<Spanned<String>>,
    redis_prefix: Option<Spanned<String>>,
    redis_timeout_ms: Option<Spanned<u64>>,
}

/// Parses `[store]`.
pub(super) fn parse_store(
    cx: &Ctx<'_>,
    raw: Option<RawStore>,
) -> Result<StoreSettings, ConfigError> {
    let Some(raw) = raw else {
        return Ok(StoreSettings::default());
    };
    let companions = [
        raw.redis_password_env
            .as_ref()
            .map(|s| (s.span(), "store.redis_password_env")),
        raw.redis_prefix
            .as_ref()
            .map(|s| (s.span(), "store.redis_prefix")),
        raw.redis_timeout_ms
            .as_ref()
            .map(|s| (s.span(), "store.redis_timeout_ms")),
    ];
    let Some(url) = raw.redis_url else {
        if let Some((span, field)) = companions.into_iter().flatten().next() {
            return Err(cx.err(span, field, "is set without `store.redis_url`"));
        }
        return Ok(StoreSettings::default());
    };
    let span = url.span();
    let url = url.into_inner();
    let field = "store.redis_url";
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    let Some(rest) = rest else {
        return Err(cx.err(span, field, "must start with `redis://` or `rediss://`"));
    };
    if url.len() > MAX_REDIS_URL {
        return Err(cx.err(span, field, format!("is longer than {MAX_REDIS_URL} bytes")));
    }
    if rest.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.err(
            span,
            field,
            "must name a host, without spaces or control characters",
        ));
    }
    // A password in the URL would be in every copy of the configuration and its errors.
    let authority = rest.split('/').next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err(cx.err(
            span,
            field,
            "must not hold a password: name an environment variable in `store.redis_password_env`",
        ));
    }
    let password_env = match raw.redis_password_env {
        None => None,
        Some(e) => {
            let ok = !e.get_ref().is_empty()
                && e.get_ref().len() <= 128
                && e.get_ref()
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_');
            if !ok {
                return Err(cx.err(
                    e.span(),
                    "store.redis_password_env",
                    "must be an environment variable name: letters, digits and `_`, at most 128",
                ));
            }
            Some(e.into_inner())
        }
    };
    let prefix = match raw.redis_prefix {
        None => "remit:".to_owned(),
        Some(p) => {
            let ok = !p.get_ref().is_empty()
                && p.get_ref().len() <= MAX_REDIS_PREFIX
                && p.get_ref().bytes().all(|c| c.is_ascii_graphic());
            if !ok {
                return Err(cx.err(
                    p.span(),
                    "store.redis_prefix",
                    format!(
                        "must be 1 to {MAX_REDIS_PREFIX} printable ASCII characters without spaces"
                    ),
                ));
            }
            p.into_inner()
        }
    };
    let timeout_ms = bounded(
        cx,
        raw.redis_timeout_ms,
        "store.redis_timeout_ms",
        250,
        10..=10_000,
    )?;
    Ok(StoreSettings {
        redis: Some(RedisSettings {
            url,
            password_env,
            prefix,
            timeout_ms,
        }),
    })
}
