//! Single-use claims in a real Redis (127.0.0.1:6379, or a `redis-server` these tests
//! start and stop themselves): one claim of an id wins among many clients, the key leaves
//! when the token can no longer be accepted, and a Redis that stops answering refuses
//! claims instead of admitting them.

use std::sync::Arc;
use std::time::Duration;

use remit_core::config::RedisSettings;
use remit_core::single_use::{ClaimError, ClaimStore};
use remit_store::redis_claims::{RedisClaims, RedisError};

const REDIS: &str = "127.0.0.1:6379";

/// The shared Redis of this machine; a test that needs it says so when it is missing.
pub(crate) fn require_redis() {
    if std::net::TcpStream::connect_timeout(&REDIS.parse().unwrap(), Duration::from_secs(1))
        .is_err()
    {
        panic!(
            "Redis is not running on {REDIS}: these tests need a real Redis \
             (apt-get install redis-server && redis-server --daemonize yes)"
        );
    }
}

/// Settings with a prefix of this run's own, so runs never see each other's keys.
pub(crate) fn settings(url: &str) -> RedisSettings {
    RedisSettings {
        url: url.into(),
        password_env: None,
        prefix: format!("remit-test:{}:", uuid::Uuid::now_v7()),
        timeout_ms: 300,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn redis_cmd(args: &[&str]) -> redis::Value {
    let client = redis::Client::open(format!("redis://{REDIS}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_claim_wins_among_a_hundred_from_two_replicas() {
    require_redis();
    let s = settings(&format!("redis://{REDIS}"));
    // Two replicas: two clients with their own connections to the same server.
    let a = Arc::new(RedisClaims::connect(&s).await.unwrap());
    let b = Arc::new(RedisClaims::connect(&s).await.unwrap());
    let (t, exp) = (now(), now() + 120);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { c.claim("remit", "jti-1", exp, t).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(ClaimError::Replayed(id)) => assert_eq!(id, "jti-1"),
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert_eq!(won, 1);
    // Another issuer's id of the same text is another claim.
    a.claim("other-issuer", "jti-1", exp, t).await.unwrap();
    // The key is gone when the token can no longer be accepted: Redis holds its deadline.
    let keys = redis_cmd(&["KEYS", &format!("{}jti:*", s.prefix)]).await;
    let redis::Value::Array(keys) = keys else {
        panic!("KEYS answered {keys:?}")
    };
    assert_eq!(keys.len(), 2);
    for k in keys {
        let redis::Value::BulkString(k) = k else {
            panic!("a key is {k:?}")
        };
        let key = String::from_utf8(k).unwrap();
        // Fixed-length keys: the prefix and a SHA-256, never the token's id.
        assert!(!key.contains("jti-1"), "{key}");
        let at = redis_cmd(&["EXPIRETIME", &key]).await;
        assert_eq!(at, redis::Value::Int(exp), "{key}");
    }
}

#[tokio::test]
async fn a_token_past_its_deadline_is_never_claimed() {
    require_redis();
    let c = RedisClaims::connect(&settings(&format!("redis://{REDIS}")))
        .await
        .unwrap();
    let t = now();
    assert!(matches!(
        c.claim("remit", "late", t, t).await,
        Err(ClaimError::Replayed(_))
    ));
    // A hostile id is only hashed into the key; it is shown back at most 64 characters.
    let long = "x\r\n*3\r\n$3\r\nDEL".repeat(400);
    c.claim("remit", &long, t + 60, t).await.unwrap();
    match c.claim("remit", &long, t + 60, t).await {
        Err(ClaimError::Replayed(shown)) => assert_eq!(shown.chars().count(), 64),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_at_start() {
    // Nothing listens on port 1 of loopback.
    let s = settings("redis://127.0.0.1:1");
    let e = RedisClaims::connect(&s).await.unwrap_err();
    assert!(matches!(e, RedisError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("redis://127.0.0.1:1"), "{e}");
    let missing = RedisSettings {
        password_env: Some("REMIT_TEST_NO_SUCH_PASSWORD_VAR".into()),
        ..s
    };
    let e = RedisClaims::connect(&missing).await.unwrap_err();
    assert!(
        e.to_string().contains("REMIT_TEST_NO_SUCH_PASSWORD_VAR"),
        "{e}"
    );
}

/// A `redis-server` of this test's own on a free loopback port, stopped on drop.
pub(crate) struct OwnRedis {
    child: std::process::Child,
    pub(crate) url: String,
}

impl OwnRedis {
    pub(crate) fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server could not be started ({e}): apt-get install redis-server")
            });
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Self {
                    child,
                    url: format!("redis://{addr}"),
                };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not listen on {addr} within 5 s");
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn a_redis_that_stops_answering_refuses_claims() {
    let mut server = OwnRedis::start();
    let c = RedisClaims::connect(&settings(&server.url)).await.unwrap();
    let t = now();
    c.claim("remit", "before", t + 60, t).await.unwrap();
    server.stop();
    let started = std::time::Instant::now();
    match c.claim("remit", "after", t + 60, t).await {
        Err(ClaimError::Unavailable(why)) => assert!(!why.is_empty()),
        other => panic!("a claim without Redis must be refused, got {other:?}"),
    }
    // Refused within the bound, not after an unbounded wait.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        c.claim("remit", "before", t + 60, t).await,
        Err(ClaimError::Unavailable(_))
    ));
}
