//! Delegated authority end to end in the pipeline: alice's token (from the quickstart's
//! demo issuer of humans) and the support assistant's API key are exchanged for a token
//! that acts for alice; the pipeline decides `delegated`, on behalf of alice, with the actor
//! chain in the record, never beyond what alice or the assistant may do, and stops at once
//! when the assistant is suspended or alice disabled.

use std::sync::Arc;

use base64::Engine as _;
use remit_core::{AuthorityKind, Config, RequestFacts, Verdict};
use remit_engine::Engine;
use remit_policy::PolicySource;
use remit_token::grant::{GrantRequest, exchange};
use remit_token::jwt::VerifiedToken;
use remit_token::mint::{KeyRing, SigningKey};

use crate::{CountingSink, facts, quickstart};

const DEMO_ISS: &str = "https://demo-idp.remit.example";
const AUD: &str = "http://127.0.0.1:8440";

fn demo_key() -> jsonwebtoken::EncodingKey {
    let pem = std::fs::read_to_string(quickstart().join("demo-issuer/DEMO-ONLY-private-key.pem"))
        .unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    jsonwebtoken::EncodingKey::from_ed_der(&der)
}

/// A token for a demo human, signed with the demo issuer's published (demo-only) key.
fn human_token(sub: &str, groups: &[&str], now: i64) -> String {
    let kid = "demo--FIfA-wfyNCC9BEi";
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some(kid.into());
    let claims = serde_json::json!({
        "iss": DEMO_ISS, "aud": AUD, "sub": sub, "groups": groups,
        "exp": now + 300, "iat": now, "jti": format!("h-{sub}-{now}")
    });
    jsonwebtoken::encode(&h, &claims, &demo_key()).unwrap()
}

fn engine_with(edit: impl Fn(String) -> String, ring: &KeyRing) -> Engine {
    let text = edit(std::fs::read_to_string(quickstart().join("remit.toml")).unwrap());
    let config = Config::parse(&text, "remit.toml").unwrap();
    let policies = [PolicySource {
        file: "quickstart.cedar".into(),
        text: std::fs::read_to_string(quickstart().join("policies/quickstart.cedar")).unwrap(),
    }];
    let e = Engine::new(config, &policies).unwrap();
    e.tokens().set_keys("remit", ring.key_set().unwrap());
    e
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// alice's token + the assistant's identity → an exchanged token, as `/oauth2/token` does.
fn exchanged(e: &Engine, ring: &KeyRing, scope: Option<&str>) -> String {
    let now = now();
    let alice: VerifiedToken = e
        .tokens()
        .verify(&human_token("alice", &["support"], now), now)
        .unwrap();
    let sa = e
        .config()
        .registry
        .get(&remit_core::IdentityId::parse("support-assistant").unwrap())
        .unwrap();
    let req = GrantRequest {
        scope,
        purpose: Some("case-summary"),
        ..Default::default()
    };
    let g = exchange(
        &e.config().tokens,
        &e.config().registry,
        &alice,
        sa,
        None,
        &req,
        now,
        format!("x-{now}"),
    )
    .unwrap();
    ring.sign(&g.claims).unwrap()
}

fn bearer(method: &str, path: &str, token: &str) -> RequestFacts {
    facts(
        method,
        path,
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Remit-Purpose", "case-summary"),
        ],
    )
}

fn decide(e: &Engine, f: &RequestFacts) -> remit_core::Decision {
    e.decide(f, "d".into(), time::OffsetDateTime::now_utc())
        .unwrap()
        .decision
}

#[test]
fn an_exchanged_token_acts_for_alice_and_never_beyond_her() {
    let ring = KeyRing::new(vec![SigningKey::generate().unwrap()]);
    let e = engine_with(|t| t, &ring);
    let token = exchanged(&e, &ring, None);
    let d = decide(&e, &bearer("GET", "/tickets/42", &token));
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    assert_eq!(d.authority.kind, AuthorityKind::Delegated);
    assert_eq!(d.authority.on_behalf_of.as_deref(), Some("alice"));
    assert_eq!(d.authority.actors, vec!["support-assistant"]);
    assert_eq!(
        d.identity.as_ref().map(|i| i.as_str()),
        Some("support-assistant")
    );
    assert!(
        d.credential_id
            .as_ref()
            .is_some_and(|c| c.as_str().starts_with("jwt:remit:"))
    );
    // The record carries the chain (and never the token).
    let rec = serde_json::to_string(
        &e.record(
            &e.decide(
                &bearer("GET", "/tickets/42", &token),
                "d".into(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap(),
            &bearer("GET", "/tickets/42", &token),
            time::OffsetDateTime::now_utc(),
            1,
        ),
    )
    .unwrap();
    assert!(rec.contains(r#""authority":{"kind":"delegated","on_behalf_of":"alice","actors":["support-assistant"]}"#), "{rec}");
    assert!(!rec.contains(&token));
    // Commenting is alice's (group support) but not the assistant's: the boundary holds.
    let d = decide(&e, &bearer("POST", "/tickets/42/comments", &token));
    assert_eq!(
        (d.verdict, d.policies.as_slice()),
        (Verdict::Deny, &["remit.boundary".to_owned()][..])
    );
    // A token exchanged for `tickets.read` only cannot read history.
    let narrow = exchanged(&e, &ring, Some("tickets.read"));
    let d = decide(&e, &bearer("GET", "/tickets/42/history", &narrow));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.policies, vec!["remit.token_scope"]);
    // A different purpose than the token's is refused.
    let f = facts(
        "GET",
        "/tickets/42",
        &[
            ("Authorization", &format!("Bearer {narrow}")),
            ("Remit-Purpose", "code-change"),
        ],
    );
    let d = decide(&e, &f);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("issued for `case-summary`")),
        "{:?}",
        d.reasons
    );
    // alice's own token is not an agent's credential.
    let d = decide(
        &e,
        &bearer(
            "GET",
            "/tickets/42",
            &human_token("alice", &["support"], now()),
        ),
    );
    assert_eq!(
        (d.verdict, d.class),
        (Verdict::Deny, remit_core::Class::Unclassified)
    );
    assert!(
        d.reasons.iter().any(|r| r.contains("human's token")),
        "{:?}",
        d.reasons
    );
}

#[test]
fn suspending_the_agent_or_disabling_the_human_stops_their_tokens_at_once() {
    let ring = KeyRing::new(vec![SigningKey::generate().unwrap()]);
    let e = engine_with(|t| t, &ring);
    let token = exchanged(&e, &ring, None);
    assert_eq!(
        decide(&e, &bearer("GET", "/tickets/7", &token)).verdict,
        Verdict::Allow
    );
    let suspended = engine_with(
        |t| {
            t.replacen(
                "kind = \"assistant\"",
                "kind = \"assistant\"\nstatus = \"suspended\"",
                1,
            )
        },
        &ring,
    );
    let d = decide(&suspended, &bearer("GET", "/tickets/7", &token));
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.reasons.iter().any(|r| r.contains("suspended")),
        "{:?}",
        d.reasons
    );
    let disabled = engine_with(
        |t| {
            t.replace(
                "disabled_humans = [\"mallory\"]",
                "disabled_humans = [\"mallory\", \"alice\"]",
            )
        },
        &ring,
    );
    let d = decide(&disabled, &bearer("GET", "/tickets/7", &token));
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.reasons.iter().any(|r| r.contains("`alice` is disabled")),
        "{:?}",
        d.reasons
    );
    // Without remit's keys (never installed, or lost), its tokens fail closed.
    e.tokens().clear_keys("remit");
    let d = decide(&e, &bearer("GET", "/tickets/7", &token));
    assert!(
        d.reasons.iter().any(|r| r.contains("unavailable")),
        "{:?}",
        d.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_use_token_is_allowed_once_among_a_hundred_parallel_presentations() {
    let ring = KeyRing::new(vec![SigningKey::generate().unwrap()]);
    let e = Arc::new(engine_with(
        |t| {
            t.replace(
                "max_chain_depth = 3",
                "max_chain_depth = 3\nsingle_use = true",
            )
        },
        &ring,
    ));
    let token = exchanged(&e, &ring, None);
    let sink = Arc::new(CountingSink(Default::default()));
    let f = Arc::new(bearer("GET", "/tickets/9", &token));
    // A dry run spends nothing.
    let dry = e
        .decide_and_record(&f, "dry".into(), sink.as_ref(), true)
        .await
        .unwrap();
    assert_eq!(dry.verdict, Verdict::Allow);
    assert_eq!(allowed_among_a_hundred(&[e], &f, &sink).await, 1);
}

/// Presents `f` a hundred times at once, spread over `replicas`, and counts the allows;
/// every other presentation must be refused as a replay.
async fn allowed_among_a_hundred(
    replicas: &[Arc<Engine>],
    f: &Arc<RequestFacts>,
    sink: &Arc<CountingSink>,
) -> usize {
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let e = replicas[i % replicas.len()].clone();
            let (sink, f) = (sink.clone(), f.clone());
            tokio::spawn(async move {
                e.decide_and_record(&f, format!("d{i}"), sink.as_ref(), false)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        let d = t.await.unwrap();
        if d.verdict == Verdict::Allow {
            allowed += 1;
        } else {
            assert!(
                d.reasons.iter().any(|r| r.contains("already used")),
                "{:?}",
                d.reasons
            );
        }
    }
    allowed
}

/// Two replicas sharing a real Redis (`[store] redis_url`): a single-use token is allowed
/// once among a hundred presentations split between them, and with Redis gone the
/// presentation is refused, never admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_use_token_is_allowed_once_across_replicas_sharing_redis() {
    let redis = "127.0.0.1:6379";
    assert!(
        std::net::TcpStream::connect(redis).is_ok(),
        "Redis is not running on {redis}: this test needs a real Redis \
         (apt-get install redis-server && redis-server --daemonize yes)"
    );
    let prefix = format!(
        "remit-test:{}:",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    let store =
        format!("\n[store]\nredis_url = \"redis://{redis}\"\nredis_prefix = \"{prefix}\"\n");
    let ring = KeyRing::new(vec![SigningKey::generate().unwrap()]);
    let replica = || {
        engine_with(
            |t| {
                t.replace(
                    "max_chain_depth = 3",
                    "max_chain_depth = 3\nsingle_use = true",
                ) + &store
            },
            &ring,
        )
    };
    let (mut a, mut b) = (replica(), replica());
    let settings = a.config().store.redis.clone().expect("[store] parsed");
    assert_eq!(settings.prefix, prefix);
    for e in [&mut a, &mut b] {
        let claims = remit_store::redis_claims::RedisClaims::connect(&settings)
            .await
            .unwrap();
        e.share_claims(Arc::new(claims));
    }
    let (a, b) = (Arc::new(a), Arc::new(b));
    let token = exchanged(&a, &ring, None);
    let sink = Arc::new(CountingSink(Default::default()));
    let f = Arc::new(bearer("GET", "/tickets/9", &token));
    assert_eq!(
        allowed_among_a_hundred(&[a.clone(), b], &f, &sink).await,
        1,
        "exactly one replica admits the token"
    );

    // A Redis that stops answering: the replica refuses the token (fail closed). A
    // `redis-server` of this test's own, on a free loopback port, is stopped under it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server could not be started: apt-get install redis-server");
    let own = format!("127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&own).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let mut c = replica();
    let own = remit_core::config::RedisSettings {
        url: format!("redis://{own}"),
        ..settings
    };
    let claims = remit_store::redis_claims::RedisClaims::connect(&own)
        .await
        .unwrap();
    c.share_claims(Arc::new(claims));
    server.kill().unwrap();
    server.wait().unwrap();
    let fresh = exchanged(&a, &ring, None);
    let d = c
        .decide_and_record(
            &bearer("GET", "/tickets/9", &fresh),
            "u".into(),
            sink.as_ref(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("claim store is unavailable")),
        "{:?}",
        d.reasons
    );
}

/// A stolen token used from another workload does not pass: the exchanged token of the
/// support assistant (acting for alice), presented by a peer verified as the inventory
/// job's SPIFFE ID, is denied; from the assistant's own workload it still acts for alice.
#[test]
fn a_token_presented_from_another_workloads_spiffe_id_is_refused() {
    let ring = KeyRing::new(vec![SigningKey::generate().unwrap()]);
    let e = engine_with(|t| t, &ring);
    let token = exchanged(&e, &ring, None);
    let from = |peer: &str| {
        let mut f = bearer("GET", "/tickets/42", &token);
        f.peer_spiffe_id = Some(remit_core::SpiffeId::parse(peer).unwrap());
        f
    };
    let d = decide(&e, &from("spiffe://remit.example/ns/ops/sa/inventory-sync"));
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", d.reasons);
    assert_eq!(
        d.policies,
        vec![remit_engine::PEER_IDENTITY_POLICY.to_owned()]
    );
    assert_eq!(d.identity, None);
    assert_eq!(d.authority.kind, AuthorityKind::None);
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("identity `support-assistant`'s")
                && r.contains("`inventory-sync`'s")),
        "{:?}",
        d.reasons
    );
    let d = decide(
        &e,
        &from("spiffe://remit.example/ns/support/sa/support-assistant"),
    );
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    assert_eq!(d.authority.on_behalf_of.as_deref(), Some("alice"));
}
