//! The JWT attack suite, read from `cases/jwt_attacks.toml`: every hostile token is refused
//! with the reason the case names, and the baselines verify (so the harness can fail).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Deserialize;

use crate::support::{AUD, ISS, keys, now, sign_raw, verifier};

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    header: String,
    payload: String,
    sign: String,
    expect: String,
}

fn fill(text: &str, now: i64) -> String {
    text.replace("{iss}", ISS)
        .replace("{aud}", AUD)
        .replace("{now}", &now.to_string())
        .replace("{exp}", &(now + 300).to_string())
        .replace("{past}", &(now - 1000).to_string())
        .replace("{future}", &(now + 1000).to_string())
}

fn build(case: &Case, now: i64) -> String {
    let k = keys();
    let header = fill(&case.header, now);
    let payload = if case.payload == "VALID" {
        serde_json::json!({
            "iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 300, "iat": now,
            "groups": ["support"], "jti": "j-1"
        })
        .to_string()
    } else {
        fill(&case.payload, now)
    };
    let unsigned = || {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode(&payload)
        )
    };
    match case.sign.as_str() {
        "rs256" => sign_raw(&header, &payload, &k.rsa, Algorithm::RS256),
        "ps256" => sign_raw(&header, &payload, &k.rsa, Algorithm::PS256),
        "rs256-other" => sign_raw(&header, &payload, &k.rsa_other, Algorithm::RS256),
        "es256" => sign_raw(&header, &payload, &k.ec, Algorithm::ES256),
        "eddsa" => sign_raw(&header, &payload, &k.ed, Algorithm::EdDSA),
        "hs256-rsa-pub" => {
            // The classic confusion: the verifier's RSA public key used as an HMAC secret.
            let secret = EncodingKey::from_secret(k.rsa_n.as_bytes());
            sign_raw(&header, &payload, &secret, Algorithm::HS256)
        }
        "zero-es256" => format!("{}.{}", unsigned(), URL_SAFE_NO_PAD.encode([0u8; 64])),
        "none" => format!("{}.", unsigned()),
        "garbage" => format!("{}.{}", unsigned(), URL_SAFE_NO_PAD.encode([0x41u8; 32])),
        "tamper" => {
            let good = sign_raw(&header, &payload, &k.rsa, Algorithm::RS256);
            let forged = payload.replace("\"alice\"", "\"admin\"");
            assert_ne!(forged, payload, "the tamper case must change the payload");
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(forged);
            parts.join(".")
        }
        other => panic!("case `{}`: unknown signing mode `{other}`", case.name),
    }
}

#[test]
fn every_attack_in_the_corpus_is_refused() {
    let text = include_str!("../cases/jwt_attacks.toml");
    let cases: Cases = toml::from_str(text).expect("the attack corpus parses");
    assert!(cases.case.len() >= 35, "the corpus lost cases");
    let v = verifier();
    let now = now();
    let mut failures = Vec::new();
    for case in &cases.case {
        let token = build(case, now);
        let got = v.verify(&token, now);
        match (&got, case.expect.as_str()) {
            (Ok(t), "ok") => assert_eq!(t.subject, "alice", "{}", case.name),
            (Err(e), expect) if expect != "ok" && e.to_string().contains(expect) => {}
            _ => failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name,
                case.expect,
                got.map(|t| t.subject).map_err(|e| e.to_string())
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn oversized_and_malformed_tokens_are_refused_without_panicking() {
    let v = verifier();
    let now = now();
    let huge = format!("eyJ{}.e30.e30", "A".repeat(9000));
    assert!(
        v.verify(&huge, now)
            .unwrap_err()
            .to_string()
            .contains("longer than")
    );
    for bad in [
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln",
        "!!!.???.***",
        "eyJhbGciOiJSUzI1NiJ9..c2ln",
        "bnVsbA.bnVsbA.bnVsbA",
    ] {
        assert!(v.verify(bad, now).is_err(), "{bad:?}");
    }
    // A header within the token limit but over the header limit.
    let long_header = format!(
        "{{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"x\":\"{}\"}}",
        "y".repeat(2000)
    );
    let t = sign_raw(&long_header, "{}", &keys().rsa, Algorithm::RS256);
    assert!(
        v.verify(&t, now)
            .unwrap_err()
            .to_string()
            .contains("longer than")
    );
}

#[test]
fn a_token_that_verifies_names_the_human_and_their_groups() {
    let v = verifier();
    let now = now();
    let t = crate::support::idp_token(&serde_json::json!({
        "iss": ISS, "aud": [AUD, "https://other.example"], "sub": "alice",
        "exp": now + 60, "nbf": now - 5, "groups": ["support"],
        "may_act": {"sub": "support-assistant"}
    }));
    let got = v.verify(&t, now).expect("verifies");
    assert_eq!(got.issuer_id, "idp");
    assert_eq!(
        got.kind,
        remit_token::jwt::SubjectKind::Human {
            issuer: "idp".into(),
            groups: vec!["support".into()]
        }
    );
    assert_eq!(got.may_act.as_deref(), Some("support-assistant"));
    // Within the skew an expired token still passes; beyond it, it does not.
    assert!(v.verify(&t, now + 60 + 59).is_ok());
    assert!(v.verify(&t, now + 60 + 60).is_err());
}
