//! Authentication by a peer's verified SPIFFE ID in the pipeline, beyond the quickstart
//! corpus (cases 039–049): a workload whose identity is suspended, quarantined or expired
//! is refused by its SPIFFE ID as by its key, and the decision record names the `spiffe`
//! credential and the peer, never a secret, also when a key and a SPIFFE ID disagree.

use remit_core::{Class, Config, RequestFacts, SpiffeId, Verdict};
use remit_engine::{Engine, PEER_IDENTITY_POLICY};

use crate::{CountingSink, facts, quickstart};

const SUPPORT: &str = "spiffe://remit.example/ns/support/sa/support-assistant";
const INVENTORY: &str = "spiffe://remit.example/ns/ops/sa/inventory-sync";

fn engine_with(edit: impl Fn(String) -> String) -> Engine {
    let text = edit(std::fs::read_to_string(quickstart().join("remit.toml")).unwrap());
    let config = Config::parse(&text, "remit.toml").unwrap();
    let policies = remit_engine::load::read_policies(&quickstart().join("policies")).unwrap();
    Engine::new(config, &policies).unwrap()
}

fn from_peer(peer: &str, headers: &[(&str, &str)]) -> RequestFacts {
    let mut f = facts("GET", "/tickets/7", headers);
    f.peer_spiffe_id = Some(SpiffeId::parse(peer).unwrap());
    f
}

#[test]
fn a_suspended_quarantined_or_expired_workload_is_refused_by_its_spiffe_id() {
    for (line, says) in [
        ("status = \"suspended\"\n", "is suspended"),
        ("status = \"quarantined\"\n", "is quarantined"),
        ("expires = \"2026-01-01T00:00:00Z\"\n", "expired"),
    ] {
        let e = engine_with(|t| {
            t.replace(
                "id = \"support-assistant\"\n",
                &format!("id = \"support-assistant\"\n{line}"),
            )
        });
        let d = e
            .decide(
                &from_peer(SUPPORT, &[("Remit-Purpose", "case-summary")]),
                "t".into(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap()
            .decision;
        assert_eq!(d.verdict, Verdict::Deny, "{line}");
        assert_eq!(d.class, Class::Unclassified, "{line}");
        assert_eq!(d.identity, None, "{line}");
        assert_eq!(
            d.credential_id.as_ref().map(|c| c.as_str()),
            Some("support-assistant-svid"),
            "{line}"
        );
        assert!(
            d.reasons.iter().any(|r| r.contains(says)),
            "{line}: {:?}",
            d.reasons
        );
    }
}

#[test]
fn the_same_engine_admits_the_workload_when_it_is_active() {
    // The control for the test above: the edit, not something else, refuses.
    let e = engine_with(|t| t);
    let d = e
        .decide(
            &from_peer(SUPPORT, &[("Remit-Purpose", "case-summary")]),
            "t".into(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap()
        .decision;
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    assert_eq!(
        d.identity.as_ref().map(|i| i.as_str()),
        Some("support-assistant")
    );
}

#[tokio::test]
async fn records_name_the_spiffe_credential_and_the_peer_never_a_key() {
    let e = engine_with(|t| t);
    let sink = CountingSink(Default::default());
    let by_peer = from_peer(SUPPORT, &[("Remit-Purpose", "case-summary")]);
    let d = e
        .decide_and_record(&by_peer, "a".into(), &sink, false)
        .await
        .unwrap();
    assert_eq!(d.verdict, Verdict::Allow);
    // The support assistant's key from the inventory job's workload.
    let stolen = from_peer(
        INVENTORY,
        &[
            ("Authorization", "Bearer rk_demo_support_assistant"),
            ("Remit-Purpose", "case-summary"),
        ],
    );
    let d = e
        .decide_and_record(&stolen, "b".into(), &sink, false)
        .await
        .unwrap();
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.policies, vec![PEER_IDENTITY_POLICY.to_owned()]);
    let records = sink.0.lock().unwrap();
    assert_eq!(records.len(), 2);
    let allowed = serde_json::to_string(&records[0]).unwrap();
    assert!(allowed.contains("\"support-assistant-svid\""), "{allowed}");
    assert!(allowed.contains(SUPPORT), "{allowed}");
    let refused = serde_json::to_string(&records[1]).unwrap();
    assert!(!refused.contains("rk_demo_support_assistant"), "{refused}");
    assert!(refused.contains("\"support-assistant-demo\""), "{refused}");
    assert!(refused.contains(INVENTORY), "{refused}");
    assert!(refused.contains(PEER_IDENTITY_POLICY), "{refused}");
}
