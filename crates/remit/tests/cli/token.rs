//! `remit token demo-login | exchange | inspect` against a served quickstart: alice's demo
//! token and the support assistant's key are exchanged for a token acting for alice, which
//! `inspect` decodes and verifies (its `act`), and which the decision API allows to list
//! only alice's queue. Malformed tokens, a refused exchange and an unreachable server get clear errors and
//! a non-zero exit.

use serde_json::Value;

use crate::{demo_token, remit, serving_world, spawn_serving, text, with_demo_issuer};

#[tokio::test]
async fn a_human_token_is_exchanged_inspected_and_used_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = serving_world(dir.path(), "");
    with_demo_issuer(dir.path());
    let data_s = data.display().to_string();
    let (_server, admin, proxy) =
        spawn_serving(&["serve", "--config", &cfg, "--data-dir", &data_s]);
    let url = format!("http://{proxy}");

    let alice = demo_token(&cfg, "alice", "support");

    let o = remit(&[
        "token",
        "exchange",
        "--url",
        &url,
        "--subject-token",
        &alice,
        "--actor-key",
        "rk_demo_support_assistant",
        "--purpose",
        "case-summary",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let issued: Value = serde_json::from_slice(&o.stdout).unwrap();
    let token = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(issued["token_type"], "Bearer");

    // Decoded without a configuration; verified with one (remit's keys in its data dir).
    let o = remit(&["token", "inspect", &token]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("\"sub\": \"alice\"") && out.contains("support-assistant"),
        "{out}"
    );
    assert!(out.contains("not verified"), "{out}");
    let o = remit(&[
        "token",
        "inspect",
        &token,
        "--config",
        &cfg,
        "--data-dir",
        &data_s,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("verified: issuer `remit`, subject `alice`"),
        "{}",
        text(&o)
    );

    // The decision API: the token may list alice's queue only.
    let decide = |path: &str| {
        let body = serde_json::json!({"method": "GET", "path": path, "headers": {
            "Authorization": format!("Bearer {token}"), "Remit-Purpose": "case-summary"}});
        let admin = format!("http://{admin}/v1/decide");
        async move {
            reqwest::Client::new()
                .post(admin)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let d = decide("/tickets").await;
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["authority"]["on_behalf_of"], "alice", "{d}");
    assert_eq!(
        d["authority"]["actors"],
        serde_json::json!(["support-assistant"]),
        "{d}"
    );
    assert_eq!(
        d["record_sets"][0]["values"],
        serde_json::json!(["support"]),
        "{d}"
    );
    let d = decide("/tickets?queue=billing").await;
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(
        d["policies"],
        serde_json::json!(["remit.record-set"]),
        "{d}"
    );

    // Bad input: clear errors, non-zero exits.
    for (bad, want) in [
        ("a.b", "three segments"),
        ("!!!.e30.x", "not base64url"),
        ("e30.bm90IGpzb24.x", "not JSON"),
        ("", "three segments"),
    ] {
        let o = remit(&["token", "inspect", bad]);
        assert_ne!(o.status.code(), Some(0), "{bad}");
        assert!(text(&o).contains(want), "{bad}: {}", text(&o));
    }
    // A token that does not verify is decoded, and the verdict says why, exit 1.
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let o = remit(&[
        "token",
        "inspect",
        &tampered,
        "--config",
        &cfg,
        "--data-dir",
        &data_s,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // A refused exchange prints the OAuth error and exits 1.
    let o = remit(&[
        "token",
        "exchange",
        "--url",
        &url,
        "--subject-token",
        &alice,
        "--actor-key",
        "rk_not_a_key",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("invalid_"), "{}", text(&o));
    let o = remit(&[
        "token",
        "exchange",
        "--url",
        "http://127.0.0.1:1",
        "--subject-token",
        &alice,
        "--actor-key",
        "rk_demo_support_assistant",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("reaching http://127.0.0.1:1"),
        "{}",
        text(&o)
    );
    // demo-login needs the quickstart's demo issuer.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        "[[route]]\nmethod = \"GET\"\npath = \"/x\"\naction = \"x.read\"\nresource = \"X::x\"\n",
    )
    .unwrap();
    let o = remit(&[
        "token",
        "demo-login",
        "alice",
        "--config",
        other.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("no `demo-humans` issuer"), "{}", text(&o));
}
