//! Issuance and token exchange end to end inside the crate: decide a grant, sign it with
//! remit's keys, verify it back, and refuse what must be refused. Single-use claims race.

use std::sync::Arc;

use remit_core::IdentityId;
use remit_token::grant::{GrantRequest, client_credentials, exchange};
use remit_token::jti::{JtiError, JtiLedger};
use remit_token::jwt::{SubjectKind, Verifier};
use remit_token::mint::{KeyRing, SigningKey};

use crate::support::{AUD, ISS, config, idp_token, now, verifier};

pub struct World {
    pub config: remit_core::Config,
    pub verifier: Verifier,
    pub ring: KeyRing,
}

pub fn world() -> World {
    let ring = KeyRing::new(vec![SigningKey::generate().expect("a key")]);
    let verifier = verifier();
    verifier.set_keys("remit", ring.key_set().expect("own keys"));
    World {
        config: config(),
        verifier,
        ring,
    }
}

impl World {
    fn identity(&self, id: &str) -> &remit_core::Identity {
        self.config
            .registry
            .get(&IdentityId::parse(id).expect("id"))
            .expect("registered")
    }

    fn alice(&self, now: i64, extra: serde_json::Value) -> remit_token::jwt::VerifiedToken {
        let mut claims = serde_json::json!({
            "iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 600, "groups": ["support"]
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        self.verifier
            .verify(&idp_token(&claims), now)
            .expect("alice's token verifies")
    }

    /// Exchanges `subject` for `actor`, signs the result and verifies it back.
    fn exchange(
        &self,
        subject: &remit_token::jwt::VerifiedToken,
        actor: &str,
        req: &GrantRequest<'_>,
        now: i64,
    ) -> Result<remit_token::jwt::VerifiedToken, String> {
        let grant = exchange(
            &self.config.tokens,
            &self.config.registry,
            subject,
            self.identity(actor),
            None,
            req,
            now,
            format!("j-{actor}-{}", subject.actors.len()),
        )
        .map_err(|e| format!("{}: {e}", e.code()))?;
        let token = self.ring.sign(&grant.claims).expect("signs");
        Ok(self
            .verifier
            .verify(&token, now)
            .expect("remit's token verifies"))
    }
}

#[test]
fn client_credentials_stay_inside_the_boundary_and_the_identity_lifetime() {
    let w = world();
    let now = now();
    let sa = w.identity("support-assistant");
    let req = GrantRequest {
        scope: Some("tickets.read billing.read"),
        purpose: Some("case-summary"),
        resource: Some(AUD),
        audience: None,
    };
    let g = client_credentials(&w.config.tokens, sa, &req, now, "j1".into()).expect("granted");
    assert_eq!(g.scope.to_string(), "tickets.read");
    assert_eq!(
        g.expires_in, 120,
        "the identity's token_ttl_s caps the default 300"
    );
    let t = w
        .verifier
        .verify(&w.ring.sign(&g.claims).expect("signs"), now)
        .expect("verifies");
    assert_eq!(
        (t.subject.as_str(), &t.kind),
        ("support-assistant", &SubjectKind::Identity)
    );
    assert_eq!(t.purpose.as_deref(), Some("case-summary"));
    // Refusals, each with its OAuth error code.
    let cases = [
        (
            GrantRequest {
                scope: Some("billing.read"),
                ..Default::default()
            },
            "invalid_scope",
        ),
        (
            GrantRequest {
                purpose: Some("exfiltrate"),
                ..Default::default()
            },
            "invalid_scope",
        ),
        (
            GrantRequest {
                resource: Some("https://other.example"),
                ..Default::default()
            },
            "invalid_target",
        ),
        (
            GrantRequest {
                scope: Some("tickets/../admin"),
                ..Default::default()
            },
            "invalid_scope",
        ),
    ];
    for (req, code) in cases {
        let e = client_credentials(&w.config.tokens, sa, &req, now, "j".into()).unwrap_err();
        assert_eq!(e.code(), code, "{e}");
    }
    let parked = w.identity("parked");
    let e = client_credentials(
        &w.config.tokens,
        parked,
        &GrantRequest::default(),
        now,
        "j".into(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("suspended"), "{e}");
}

#[test]
fn exchange_names_the_human_and_the_actor_and_intersects_scopes() {
    let w = world();
    let now = now();
    let alice = w.alice(now, serde_json::json!({}));
    let t = w
        .exchange(&alice, "support-assistant", &GrantRequest::default(), now)
        .expect("exchanged");
    assert_eq!(t.subject, "alice");
    assert_eq!(t.actors, vec!["support-assistant"]);
    // support's group (read, reply) ∩ the assistant's boundary (tickets.*).
    assert_eq!(
        t.scope.as_ref().map(|s| s.join(" ")).as_deref(),
        Some("tickets.read tickets.reply")
    );
    assert!(t.exp - now <= 120);
    assert_eq!(
        t.kind,
        SubjectKind::Human {
            issuer: "idp".into(),
            groups: vec!["support".into()]
        }
    );
    // A chain: the triage agent acts on the assistant's delegated token.
    let t2 = w
        .exchange(&t, "triage-agent", &GrantRequest::default(), now)
        .expect("chained");
    assert_eq!(t2.actors, vec!["triage-agent", "support-assistant"]);
    assert_eq!(
        t2.scope.as_ref().map(|s| s.join(" ")).as_deref(),
        Some("tickets.read")
    );
    let t3 = w
        .exchange(&t2, "sub-agent", &GrantRequest::default(), now)
        .expect("depth 3");
    assert_eq!(t3.actors.len(), 3);
    let e = w
        .exchange(&t3, "fourth-agent", &GrantRequest::default(), now)
        .unwrap_err();
    assert!(
        e.starts_with("access_denied") && e.contains("at most 3"),
        "{e}"
    );
}

#[test]
fn exchange_refusals() {
    let w = world();
    let now = now();
    let alice = w.alice(now, serde_json::json!({}));
    // Finance is not alice's group: nothing is left.
    let e = w
        .exchange(
            &alice,
            "support-assistant",
            &GrantRequest {
                scope: Some("billing.read"),
                ..Default::default()
            },
            now,
        )
        .unwrap_err();
    assert!(e.starts_with("invalid_scope"), "{e}");
    // may_act names someone else.
    let picky = w.alice(now, serde_json::json!({"may_act": {"sub": "triage-agent"}}));
    let e = w
        .exchange(&picky, "support-assistant", &GrantRequest::default(), now)
        .unwrap_err();
    assert!(
        e.starts_with("access_denied") && e.contains("only `triage-agent`"),
        "{e}"
    );
    assert!(
        w.exchange(&picky, "triage-agent", &GrantRequest::default(), now)
            .is_ok()
    );
    // A disabled human.
    let mallory = w
        .verifier
        .verify(
            &idp_token(&serde_json::json!({"iss": ISS, "aud": AUD, "sub": "mallory", "exp": now + 600, "groups": ["support"]})),
            now,
        )
        .expect("verifies");
    let e = w
        .exchange(&mallory, "support-assistant", &GrantRequest::default(), now)
        .unwrap_err();
    assert!(e.contains("disabled"), "{e}");
    // A suspended actor.
    let e = w
        .exchange(&alice, "parked", &GrantRequest::default(), now)
        .unwrap_err();
    assert!(e.contains("suspended"), "{e}");
    // An identity's own token is not a human's.
    let sa_token = {
        let g = client_credentials(
            &w.config.tokens,
            w.identity("support-assistant"),
            &GrantRequest::default(),
            now,
            "x".into(),
        )
        .expect("granted");
        w.verifier
            .verify(&w.ring.sign(&g.claims).expect("signs"), now)
            .expect("verifies")
    };
    let e = w
        .exchange(&sa_token, "triage-agent", &GrantRequest::default(), now)
        .unwrap_err();
    assert!(e.starts_with("invalid_grant"), "{e}");
    // The exchanged token never outlives the subject token.
    let short = w.alice(now, serde_json::json!({"exp": now + 30}));
    let t = w
        .exchange(&short, "support-assistant", &GrantRequest::default(), now)
        .expect("ok");
    assert!(t.exp <= now + 30);
}

#[test]
fn keys_rotate_and_the_previous_key_still_verifies() {
    let mut w = world();
    let now = now();
    let g = client_credentials(
        &w.config.tokens,
        w.identity("support-assistant"),
        &GrantRequest::default(),
        now,
        "r".into(),
    )
    .expect("granted");
    let old = w.ring.sign(&g.claims).expect("signs");
    for _ in 0..2 {
        w.ring.rotate(SigningKey::generate().expect("key"));
    }
    w.verifier
        .set_keys("remit", w.ring.key_set().expect("keys"));
    assert!(
        w.verifier.verify(&old, now).is_ok(),
        "the previous keys stay published"
    );
    let new = w.ring.sign(&g.claims).expect("signs");
    assert_ne!(
        old.split('.').next(),
        new.split('.').next(),
        "a new kid signs"
    );
    w.ring.rotate(SigningKey::generate().expect("key"));
    w.verifier
        .set_keys("remit", w.ring.key_set().expect("keys"));
    assert_eq!(w.ring.jwks()["keys"].as_array().map(Vec::len), Some(3));
    assert!(
        w.verifier.verify(&old, now).is_err(),
        "a retired key's tokens are refused"
    );
}

#[test]
fn a_hundred_parallel_presentations_of_a_single_use_token_admit_exactly_one() {
    let ledger = Arc::new(JtiLedger::default());
    let now = now();
    let barrier = Arc::new(std::sync::Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (l, b) = (ledger.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                l.claim("remit", "jti-1", now + 60, now)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(JtiError::Replayed(_))))
    );
    // Another issuer's same id is another token.
    assert!(ledger.claim("idp", "jti-1", now + 60, now).is_ok());
    // A full ledger refuses rather than forgets.
    let small = JtiLedger::with_capacity(2);
    small.claim("r", "a", now + 60, now).expect("a");
    small.claim("r", "b", now + 1, now).expect("b");
    assert_eq!(small.claim("r", "c", now + 60, now), Err(JtiError::Full));
    // Once `b` expires its slot is reused; `a` is still a replay.
    small
        .claim("r", "c", now + 60, now + 5)
        .expect("c after b expired");
    assert!(matches!(
        small.claim("r", "a", now + 60, now + 5),
        Err(JtiError::Replayed(_))
    ));
}
