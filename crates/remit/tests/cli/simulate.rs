//! `remit simulate`: the detection table over the quickstart, its exit code, and refusing
//! a world it was not written for.

use super::{config, remit};

#[test]
fn simulate_prints_the_detection_table_and_exits_by_the_goals() {
    let out = remit(&[
        "simulate",
        "--config",
        &config(),
        "--days",
        "6",
        "--quiet-days",
        "4",
        "--seeds",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| seed | incident |"), "{stdout}");
    // One row per incident variant, each detected.
    assert_eq!(stdout.matches("| yes |").count(), 10, "{stdout}");
    assert!(
        stdout.contains("10 of 10 incidents detected within 10 requests"),
        "{stdout}"
    );
}

#[test]
fn simulate_refuses_bad_ranges_and_other_worlds() {
    let out = remit(&["simulate", "--config", &config(), "--seeds", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seeds"));
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("remit.toml");
    std::fs::write(
        &toml,
        "[gateway]\npolicy_dir = \"policies\"\n\n[[identity]]\nid = \"only-one\"\nkind = \"agent\"\nowner = \"team\"\npurposes = [\"x\"]\nboundary = []\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let out = remit(&[
        "simulate",
        "--config",
        toml.to_str().unwrap(),
        "--days",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("quickstart"), "{stderr}");
}
