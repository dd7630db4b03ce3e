//! Properties: an exchanged token's scope is inside every input's, its lifetime never
//! exceeds the maximum, and the actor chain is preserved; scope intersection is exact.

use proptest::prelude::*;
use remit_core::IdentityId;
use remit_token::grant::{GrantRequest, exchange, human_scope, max_lifetime};
use remit_token::scope::ScopeSet;

use crate::exchange::world;
use crate::support::{AUD, ISS, idp_token, now};

const ENTRIES: &[&str] = &[
    "tickets.read",
    "tickets.reply",
    "tickets.delete",
    "billing.read",
    "tickets.*",
    "billing.*",
    "tickets.re*",
    "*",
];
const ACTIONS: &[&str] = &[
    "tickets.read",
    "tickets.reply",
    "tickets.delete",
    "billing.read",
    "billing.write",
    "admin.all",
];
const ACTORS: &[&str] = &[
    "support-assistant",
    "triage-agent",
    "sub-agent",
    "fourth-agent",
];

fn scope() -> impl Strategy<Value = String> {
    proptest::sample::subsequence(ENTRIES.to_vec(), 0..=4).prop_map(|v| v.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn intersection_is_exact(a in scope(), b in scope()) {
        let (a, b) = (ScopeSet::parse(&a).unwrap(), ScopeSet::parse(&b).unwrap());
        let both = a.intersect(&b);
        for act in ACTIONS {
            prop_assert_eq!(both.allows(act), a.allows(act) && b.allows(act), "{}", act);
        }
    }

    #[test]
    fn exchanged_tokens_are_never_broader_longer_or_unattributed(
        asked in scope(),
        groups in proptest::sample::subsequence(vec!["support", "finance"], 0..=2),
        chain in proptest::sample::subsequence(ACTORS.to_vec(), 1..=4),
        life in 1i64..5000,
    ) {
        let w = world();
        let now = now();
        let alice = w.verifier.verify(&idp_token(&serde_json::json!({
            "iss": ISS, "aud": AUD, "sub": "alice", "exp": now + life, "groups": groups
        })), now).unwrap();
        let human = human_scope(&w.config.tokens, "idp", &groups.iter().map(|g| g.to_string()).collect::<Vec<_>>());
        let mut subject = alice;
        let mut expected_chain: Vec<String> = Vec::new();
        for (i, actor_id) in chain.iter().enumerate() {
            let actor = w.config.registry.get(&IdentityId::parse(actor_id).unwrap()).unwrap();
            let req = GrantRequest { scope: Some(&asked), ..Default::default() };
            let got = exchange(&w.config.tokens, &w.config.registry, &subject, actor, None, &req, now, format!("j{i}"));
            let Ok(grant) = got else {
                // A refusal is always allowed; never a broader token.
                break;
            };
            expected_chain.insert(0, actor_id.to_string());
            prop_assert!(expected_chain.len() <= usize::from(w.config.tokens.max_chain_depth));
            let asked_set = ScopeSet::parse(&asked).unwrap();
            let asked_set = if asked.is_empty() { ScopeSet::all() } else { asked_set };
            let prior = subject.scope.clone().map(|s| ScopeSet::parse(&s.join(" ")).unwrap());
            for act in ACTIONS {
                if grant.scope.allows(act) {
                    prop_assert!(asked_set.allows(act) && human.allows(act), "{}", act);
                    prop_assert!(actor.boundary.allows(&remit_core::ActionName::parse(act).unwrap()), "{}", act);
                    if let Some(p) = &prior { prop_assert!(p.allows(act), "{}", act); }
                }
            }
            prop_assert!(grant.expires_in <= max_lifetime(&w.config.tokens, actor));
            prop_assert!(grant.expires_in <= i64::from(w.config.tokens.max_ttl_s));
            prop_assert!(grant.claims.exp <= subject.exp);
            let token = w.ring.sign(&grant.claims).unwrap();
            subject = w.verifier.verify(&token, now).unwrap();
            prop_assert_eq!(&subject.actors, &expected_chain);
            prop_assert_eq!(subject.subject.as_str(), "alice");
        }
    }
}
