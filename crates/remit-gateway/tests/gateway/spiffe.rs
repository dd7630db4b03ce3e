//! Authentication by SPIFFE ID through the real ext_authz gRPC door: the principal Envoy
//! verified by mTLS (`source.principal`) authenticates the identity holding it, a key from
//! another workload is refused, an unknown or malformed principal admits no one, and an
//! untrusted peer cannot claim any principal at all.

use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};

use super::authz::{ask, check, denied, meta, start_doors};

const SUPPORT: &str = "spiffe://remit.example/ns/support/sa/support-assistant";
const INVENTORY: &str = "spiffe://remit.example/ns/ops/sa/inventory-sync";

/// A `CheckRequest` from a peer whose certificate Envoy verified as `principal`.
fn from_peer(principal: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut c = check(method, path, headers, "");
    if let Some(source) = c.attributes.as_mut().and_then(|a| a.source.as_mut()) {
        source.principal = principal.into();
    }
    c
}

#[tokio::test]
async fn envoys_verified_principal_authenticates_the_workload_without_a_key() {
    let d = start_doors(|t| t).await;
    let r = ask(
        d.grpc,
        from_peer(
            SUPPORT,
            "GET",
            "/tickets/1",
            &[("remit-purpose", "case-summary")],
        ),
    )
    .await;
    assert_eq!(r.status.as_ref().unwrap().code, 0, "{r:?}");
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("{r:?}")
    };
    let set: std::collections::HashMap<&str, &str> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(set["remit-identity"], "support-assistant");
    assert_eq!(meta(&r, "class").as_deref(), Some("assistant"));
    let id = meta(&r, "decision_id").unwrap();
    let record = d
        .store
        .record(&id)
        .await
        .unwrap()
        .expect("durable before OK");
    assert!(
        record.contains("\"credential_id\":\"support-assistant-svid\""),
        "the spiffe credential is recorded: {record}"
    );
    assert!(record.contains(SUPPORT), "{record}");
}

#[tokio::test]
async fn a_key_used_from_another_workload_is_refused() {
    let d = start_doors(|t| t).await;
    let r = ask(
        d.grpc,
        from_peer(
            INVENTORY,
            "GET",
            "/tickets/1",
            &[
                ("authorization", "Bearer rk_demo_support_assistant"),
                ("remit-purpose", "case-summary"),
            ],
        ),
    )
    .await;
    let (status, _, body) = denied(&r);
    assert_eq!(status, 403, "{body}");
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("is identity `inventory-sync`'s"), "{body}");
    assert!(
        body["policies"].to_string().contains("remit.peer-identity"),
        "{body}"
    );
    let id = body["decision_id"].as_str().unwrap();
    let record = d.store.record(id).await.unwrap().expect("recorded");
    assert!(record.contains("\"support-assistant-demo\""), "{record}");
    assert!(!record.contains("rk_demo"), "{record}");
    // The same key from its own workload passes.
    let r = ask(
        d.grpc,
        from_peer(
            SUPPORT,
            "GET",
            "/tickets/1",
            &[
                ("authorization", "Bearer rk_demo_support_assistant"),
                ("remit-purpose", "case-summary"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status.as_ref().unwrap().code, 0, "{r:?}");
}

#[tokio::test]
async fn unknown_or_malformed_principals_admit_no_one() {
    let d = start_doors(|t| t).await;
    for principal in [
        "spiffe://remit.example/ns/support/sa/support-assistant-2",
        "spiffe://remit.example/ns/support/sa",
        "spiffe://REMIT.example/ns/support/sa/support-assistant",
        "spiffe://remit.example/ns/support/sa/support-assistant/../x",
        "spiffe://remit.example/ns/support/sa/support-assistant?x",
        "https://remit.example/ns/support/sa/support-assistant",
        "CN=support-assistant",
        "",
    ] {
        let r = ask(
            d.grpc,
            from_peer(
                principal,
                "GET",
                "/tickets/1",
                &[("remit-purpose", "case-summary")],
            ),
        )
        .await;
        let (status, _, body) = denied(&r);
        assert_eq!(status, 403, "{principal:?}: {body}");
        assert_eq!(body["decision"], "deny", "{principal:?}: {body}");
        assert!(
            body["reasons"]
                .to_string()
                .contains("unclassified traffic never performs sensitive actions"),
            "{principal:?}: {body}"
        );
    }
}

#[tokio::test]
async fn an_untrusted_peer_cannot_claim_a_principal() {
    let d = start_doors(|t| {
        t.replace(
            r#"trusted_proxies = ["127.0.0.1/32", "::1/128"]"#,
            r#"trusted_proxies = ["10.9.9.9"]"#,
        )
    })
    .await;
    let r = ask(
        d.grpc,
        from_peer(
            SUPPORT,
            "GET",
            "/tickets/1",
            &[("remit-purpose", "case-summary")],
        ),
    )
    .await;
    let (status, _, body) = denied(&r);
    assert_eq!(status, 403, "{body}");
    assert_eq!(d.store.count().await.unwrap(), 0);
}
