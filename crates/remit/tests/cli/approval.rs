//! `remit approval` against a running `remit serve` on the quickstart: the deploy request
//! opens an approval, the CLI lists it, a release manager grants it with their own demo
//! token, and malformed, hostile and refused answers exit 2 or 1 with a clear message.

use std::path::Path;

use serde_json::Value;

use crate::{demo_token, remit, serving_world, spawn_serving, text, with_demo_issuer};

#[tokio::test]
async fn approvals_are_listed_granted_and_shown_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = serving_world(dir.path(), "");
    with_demo_issuer(dir.path());
    let data_s = data.display().to_string();
    let (_server, admin, proxy) =
        spawn_serving(&["serve", "--config", &cfg, "--data-dir", &data_s]);
    let admin = format!("http://{admin}");
    let r = reqwest::Client::new()
        .post(format!("http://{proxy}/repos/web/deployments"))
        .bearer_auth("rk_demo_codegen_workflow")
        .header("remit-purpose", "code-change")
        .body("{\"ref\":\"v1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let refusal: Value = r.json().await.unwrap();
    let id = refusal["approval"]["id"].as_str().unwrap().to_owned();

    let o = remit(&["approval", "list", "--url", &admin, "--state", "pending"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let listed = text(&o);
    assert!(
        listed.contains(&id)
            && listed.contains("codegen-workflow")
            && listed.contains("repos.deploy"),
        "{listed}"
    );

    // Refused by remit: exit 1, naming why.
    let alice = demo_token(&cfg, "alice", "support");
    let o = remit(&[
        "approval", "grant", &id, "--reason", "ok", "--token", &alice, "--url", &admin,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("not in an approver group"),
        "{}",
        text(&o)
    );

    let bob = demo_token(&cfg, "bob", "release-managers");
    let o = remit(&[
        "approval",
        "grant",
        &id,
        "--reason",
        "release v1, CHG-7",
        "--token",
        &bob,
        "--url",
        &admin,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("granted by bob"), "{}", text(&o));
    let o = remit(&[
        "approval", "grant", &id, "--reason", "again", "--token", &bob, "--url", &admin,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("409"), "{}", text(&o));
    let o = remit(&["approval", "show", &id, "--url", &admin]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (shown["status"].as_str(), shown["reason"].as_str()),
        (Some("granted"), Some("release v1, CHG-7"))
    );

    // Malformed and hostile input: exit 2 before anything is sent.
    let long = "x".repeat(5000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "approval",
                "grant",
                "apr_../../admin",
                "--reason",
                "r",
                "--token",
                &bob,
                "--url",
                &admin,
            ],
            "not an approval id",
        ),
        (
            vec!["approval", "show", "", "--url", &admin],
            "not an approval id",
        ),
        (
            vec![
                "approval", "grant", &id, "--reason", "  ", "--token", &bob, "--url", &admin,
            ],
            "--reason",
        ),
        (
            vec![
                "approval", "deny", &id, "--reason", &long, "--token", &bob, "--url", &admin,
            ],
            "--reason",
        ),
        (
            vec![
                "approval", "grant", &id, "--reason", "r", "--token", "  ", "--url", &admin,
            ],
            "--token is empty",
        ),
        (
            vec!["approval", "list", "--url", &admin, "--state", "maybe"],
            "not one of",
        ),
        (
            vec!["approval", "list", "--url", &admin, "--limit", "0"],
            "--limit",
        ),
        (vec!["approval", "list", "--url", "ftp://x"], "--url"),
        (
            vec!["approval", "list", "--url", "http://127.0.0.1:1"],
            "reaching",
        ),
    ];
    for (args, says) in cases {
        let o = remit(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    let o = remit(&["approval", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(Path::new(&data_s).exists());
}
