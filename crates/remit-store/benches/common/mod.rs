//! Records the benchmarks write: a decision record as the proxy writes one for an allowed
//! assistant request, and the outcome record that follows it.
#![allow(dead_code)]

use remit_core::{
    ActionName, AuditRecord, Authority, AuthorityKind, Class, Decision, DecisionRecord, IdentityId,
    Obligation, OutcomeRecord, Purpose, ResourceRef, ResourceType, Verdict,
};

/// The `i`th decision record (ids, resources and paths vary with `i`).
pub fn record(i: u64) -> AuditRecord {
    AuditRecord::Decision(DecisionRecord {
        v: remit_core::decision::RECORD_VERSION,
        time: "2026-11-25T18:00:00.123456Z".into(),
        replica: "replica-1".into(),
        decision: Decision {
            verdict: Verdict::Allow,
            decision_id: format!("019abc00-0000-7000-8000-{i:012}"),
            identity: Some(IdentityId::parse("support-assistant").unwrap()),
            credential_id: Some(remit_core::CredentialId::parse("support-assistant-demo").unwrap()),
            class: Class::Assistant,
            authority: Authority {
                kind: AuthorityKind::Own,
                on_behalf_of: None,
                actors: Vec::new(),
            },
            purpose: Some(Purpose::parse("case-summary").unwrap()),
            action: ActionName::parse("tickets.read").unwrap(),
            resource: ResourceRef {
                rtype: ResourceType::parse("Ticket").unwrap(),
                id: format!("{}", i % 1000),
            },
            sensitive: true,
            reasons: vec!["support-assistant may read tickets for case-summary".into()],
            policies: vec!["support.read".into()],
            obligations: vec![Obligation::LogOutput],
            approval: None,
            retry_after_s: None,
            rate_limit: None,
            record_sets: Vec::new(),
            scan: None,
        },
        method: "GET".into(),
        path: format!("/tickets/{}", i % 1000),
        route: Some("GET /tickets/{id}".into()),
        mcp_method: None,
        mcp_tool: None,
        source_ip: Some("127.0.0.1".parse().unwrap()),
        body_sha256: None,
        decide_us: 11,
        alerts: Vec::new(),
        peer_spiffe_id: None,
    })
}

/// The outcome record of the `i`th decision: a 200 with its digest.
pub fn outcome(i: u64) -> AuditRecord {
    AuditRecord::Outcome(OutcomeRecord {
        v: remit_core::decision::RECORD_VERSION,
        time: "2026-11-25T18:00:00.125001Z".into(),
        replica: "replica-1".into(),
        decision_id: format!("019abc00-0000-7000-8000-{i:012}"),
        status: 200,
        response_sha256: "4f1c1bb2ae7d5b31e6a8b4d1d4d1c6f9a1b0e3e3d5b3f0bde3c5cbbd6c9b0a11".into(),
        response_bytes: 1834,
        complete: true,
        latency_us: 412,
        error: None,
        review: None,
        review_body: None,
        scan: None,
        record_sets: Vec::new(),
    })
}
