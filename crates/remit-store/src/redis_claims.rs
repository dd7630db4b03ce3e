//! Single-use claims shared by every replica, in Redis: a claim is one `SET key 1 NX EXAT
//! exp`, which Redis applies atomically, so exactly one replica's claim of a token id
//! succeeds however many ask at once, and the key leaves when the token can no longer be
//! accepted. A Redis that does not answer within `store.redis_timeout_ms` refuses the
//! claim (fail closed); the connection is re-established in the background.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use remit_core::config::RedisSettings;
use remit_core::single_use::{ClaimError, ClaimFuture, ClaimStore, shown_jti};
use sha2::{Digest, Sha256};

/// Why Redis could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The password's environment variable is unset.
    #[error("environment variable `{0}` (store.redis_password_env) is not set")]
    Password(String),
    /// The URL was refused by the client.
    #[error("`store.redis_url` is not usable: {0}")]
    Url(String),
    /// The server could not be reached or refused remit.
    #[error("Redis at `{url}` could not be reached: {message}")]
    Connect {
        /// The URL, as configured (it never holds a password).
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Single-use claims in Redis.
#[derive(Clone)]
pub struct RedisClaims {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClaims")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisClaims {
    /// Connects to the server `settings` names; fails if it cannot be reached in time.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, RedisError> {
        let mut info: redis::ConnectionInfo = settings
            .url
            .as_str()
            .parse()
            .map_err(|e: redis::RedisError| RedisError::Url(e.to_string()))?;
        if let Some(var) = &settings.password_env {
            let password = std::env::var(var).map_err(|_| RedisError::Password(var.clone()))?;
            let with_password = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(with_password);
        }
        let client = redis::Client::open(info).map_err(|e| RedisError::Url(e.to_string()))?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2);
        let connect = ConnectionManager::new_with_config(client, config);
        let conn = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(RedisError::Connect {
                    url: settings.url.clone(),
                    message: e.to_string(),
                });
            }
            Err(_) => {
                return Err(RedisError::Connect {
                    url: settings.url.clone(),
                    message: format!("no answer within {} ms", settings.timeout_ms),
                });
            }
        };
        Ok(Self {
            conn,
            prefix: settings.prefix.clone(),
            timeout,
        })
    }

    /// The key of a claim: the prefix and a digest of the issuer and id, so a key has a
    /// fixed length whatever a token's `jti` holds.
    fn key(&self, issuer: &str, jti: &str) -> String {
        let mut h = Sha256::new();
        h.update(issuer.as_bytes());
        h.update([0]);
        h.update(jti.as_bytes());
        format!("{}jti:{}", self.prefix, hex::encode(h.finalize()))
    }
}

impl ClaimStore for RedisClaims {
    fn claim<'a>(&'a self, issuer: &'a str, jti: &'a str, exp: i64, now: i64) -> ClaimFuture<'a> {
        Box::pin(async move {
            // A token past its last acceptable second is not claimed: nothing may use it.
            if exp <= now {
                return Err(ClaimError::Replayed(shown_jti(jti)));
            }
            let mut conn = self.conn.clone();
            let mut set = redis::cmd("SET");
            set.arg(self.key(issuer, jti))
                .arg(1)
                .arg("NX")
                .arg("EXAT")
                .arg(exp);
            let set = set.query_async::<Option<String>>(&mut conn);
            match tokio::time::timeout(self.timeout, set).await {
                Ok(Ok(Some(_))) => Ok(()),
                Ok(Ok(None)) => Err(ClaimError::Replayed(shown_jti(jti))),
                Ok(Err(e)) => {
                    metrics::counter!("remit_redis_errors_total").increment(1);
                    Err(ClaimError::Unavailable(e.to_string()))
                }
                Err(_) => {
                    metrics::counter!("remit_redis_errors_total").increment(1);
                    Err(ClaimError::Unavailable(format!(
                        "no answer within {} ms",
                        self.timeout.as_millis()
                    )))
                }
            }
        })
    }
}
