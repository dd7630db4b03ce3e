//! The pipeline end to end without a network: the quickstart decision corpus, policy
//! diagnostics, and failing closed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod delegation;
mod jwt_svid;
mod spiffe;
mod support;

use std::path::{Path, PathBuf};

use remit_core::decision::{SinkError, SinkFuture};
use remit_core::{AuditRecord, RecordSink, RequestFacts, Verdict};
use remit_engine::load::{LoadError, load_engine};
use remit_engine::{Engine, cases};
use remit_policy::PolicyError;

pub(crate) fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart")
}

fn engine() -> Engine {
    load_engine(&quickstart().join("remit.toml")).expect("the quickstart loads")
}

#[test]
fn quickstart_corpus() {
    let results = cases::run_dir(&engine(), &quickstart().join("cases")).unwrap();
    assert!(
        results.len() >= 30,
        "the corpus has {} cases",
        results.len()
    );
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}:\n  {}", r.file.display(), r.failures.join("\n  ")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A copy of the quickstart with one extra policy file, loaded.
fn with_policy(text: &str) -> Result<Engine, LoadError> {
    let dir = tempfile::tempdir().unwrap();
    let q = quickstart();
    std::fs::copy(q.join("remit.toml"), dir.path().join("remit.toml")).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(
        q.join("policies/quickstart.cedar"),
        dir.path().join("policies/quickstart.cedar"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policies/extra.cedar"), text).unwrap();
    load_engine(&dir.path().join("remit.toml"))
}

fn diagnostics(text: &str) -> String {
    match with_policy(text) {
        Err(LoadError::Policy(PolicyError::Invalid(d))) => d
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => panic!("expected policy diagnostics, got {e}"),
        Ok(_) => panic!("expected the policy to be rejected"),
    }
}

#[test]
fn unparsable_policy_names_file_and_line() {
    let d = diagnostics(
        "// first line\n\npermit (principal, action, resource) when { context.class == };\n",
    );
    assert!(d.contains("extra.cedar:3:"), "{d}");
    assert!(d.contains("error"), "{d}");
}

#[test]
fn policy_failing_validation_names_file_line_and_policy() {
    let d = diagnostics(
        "@id(\"ok\")\npermit (principal, action == Action::\"status.read\", resource);\n\n\
         @id(\"typo\")\npermit (principal, action == Action::\"tickets.read\", resource)\nwhen { context.purpse == \"x\" };\n",
    );
    assert!(d.contains("extra.cedar:6:"), "{d}");
    assert!(d.contains("policy `typo`"), "{d}");
}

#[test]
fn params_not_captured_by_the_route_fail_validation() {
    let d = diagnostics(
        "permit (principal, action == Action::\"status.read\", resource) when { context.params.id == \"1\" };\n",
    );
    assert!(d.contains("extra.cedar:1:"), "{d}");
}

#[test]
fn bad_annotations_and_reserved_ids_are_rejected() {
    let d = diagnostics("@obligation(\"teleport\")\npermit (principal, action, resource);\n");
    assert!(d.contains("is not an obligation"), "{d}");
    let d = diagnostics("@id(\"baseline.mine\")\nforbid (principal, action, resource);\n");
    assert!(d.contains("reserved"), "{d}");
    let d = diagnostics("@id(\"status.public\")\nforbid (principal, action, resource);\n");
    assert!(d.contains("already used at"), "{d}");
    let d = diagnostics("@remedy(\"approval\")\npermit (principal, action, resource);\n");
    assert!(d.contains("belongs on a forbid"), "{d}");
    let d = diagnostics("permit (principal == ?principal, action, resource);\n");
    assert!(d.contains("templates"), "{d}");
    let d = diagnostics("@approvers(\"sre\")\nforbid (principal, action, resource);\n");
    assert!(d.contains("has no such remedy"), "{d}");
    for bad in ["", " , ", "release managers", "sre, a/b", "sre,a\\u{0}b"] {
        let d = diagnostics(&format!(
            "@remedy(\"approval\")\n@approvers(\"{bad}\")\nforbid (principal, action, resource) unless {{ context.approved }};\n"
        ));
        assert!(d.contains("`@approvers`"), "{bad}: {d}");
    }
}

pub(crate) fn facts(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestFacts {
    RequestFacts::parse(
        method,
        path,
        headers.iter().map(|(k, v)| (*k, v.as_bytes())),
        None,
        None,
    )
    .unwrap()
}

fn support_read() -> RequestFacts {
    facts(
        "GET",
        "/tickets/1",
        &[
            ("Authorization", "Bearer rk_demo_support_assistant"),
            ("Remit-Purpose", "case-summary"),
        ],
    )
}

/// A forbid that raises an error must deny: Cedar alone would skip it.
#[test]
fn regression_erroring_forbid_fails_closed() {
    let e = with_policy(
        "@id(\"no-big-ids\")\nforbid (principal, action == Action::\"tickets.read\", resource)\n\
         when { context.params.id like \"*\" && (9223372036854775807 + context.risk + 1) > 0 };\n",
    )
    .unwrap();
    let d = e
        .decide(&support_read(), "t".into(), time::OffsetDateTime::now_utc())
        .unwrap()
        .decision;
    assert_eq!(d.verdict, Verdict::Deny, "{d:?}");
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("could not be evaluated")),
        "{:?}",
        d.reasons
    );
}

struct FailingSink;
impl RecordSink for FailingSink {
    fn append(&self, _: AuditRecord) -> SinkFuture<'_> {
        Box::pin(async { Err(SinkError::Store("disk full".into())) })
    }
}

pub(crate) struct CountingSink(pub(crate) std::sync::Mutex<Vec<AuditRecord>>);
impl RecordSink for CountingSink {
    fn append(&self, r: AuditRecord) -> SinkFuture<'_> {
        self.0.lock().unwrap().push(r);
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn an_unwritable_record_turns_allow_into_deny() {
    let e = engine();
    let d = e
        .decide_and_record(&support_read(), "t".into(), &FailingSink, false)
        .await
        .unwrap();
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.obligations.is_empty());
    assert!(
        d.reasons.iter().any(|r| r.contains("could not be written")),
        "{:?}",
        d.reasons
    );
}

#[tokio::test]
async fn dry_run_writes_no_record_and_records_never_hold_the_key() {
    let e = engine();
    let sink = CountingSink(Default::default());
    let d = e
        .decide_and_record(&support_read(), "a".into(), &sink, true)
        .await
        .unwrap();
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(sink.0.lock().unwrap().is_empty());
    e.decide_and_record(&support_read(), "b".into(), &sink, false)
        .await
        .unwrap();
    let records = sink.0.lock().unwrap();
    assert_eq!(records.len(), 1);
    let json = serde_json::to_string(&records[0]).unwrap();
    assert!(!json.contains("rk_demo_support_assistant"), "{json}");
    assert!(
        json.contains("support-assistant-demo"),
        "the credential id is recorded: {json}"
    );
}

#[test]
fn expired_identity_is_unclassified() {
    let text = std::fs::read_to_string(quickstart().join("remit.toml"))
        .unwrap()
        .replace(
            "id = \"support-assistant\"\n",
            "id = \"support-assistant\"\nexpires = \"2026-01-01T00:00:00Z\"\n",
        );
    let config = remit_core::Config::parse(&text, "remit.toml").unwrap();
    let policies = remit_engine::load::read_policies(&quickstart().join("policies")).unwrap();
    let e = Engine::new(config, &policies).unwrap();
    let d = e
        .decide(&support_read(), "t".into(), time::OffsetDateTime::now_utc())
        .unwrap()
        .decision;
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.class, remit_core::Class::Unclassified);
    assert!(
        d.reasons.iter().any(|r| r.contains("expired")),
        "{:?}",
        d.reasons
    );
}

/// The decision cache changes no decision: over random requests, each decided twice (the
/// second time from the cache), an engine with the cache and one without give the same
/// verdict, reasons, policies and obligations; and the cache is used.
#[test]
fn cached_decisions_equal_fresh_ones() {
    let world = support::World::generate(7);
    let cached = world.engine();
    let fresh = world.engine_uncached();
    let now = time::OffsetDateTime::now_utc();
    let requests = world.requests(13, 1_500);
    for round in 0..2 {
        for (i, r) in requests.iter().enumerate() {
            let id = format!("cache-{round}-{i}");
            let a = cached.decide(&r.facts(), id.clone(), now).unwrap().decision;
            let b = fresh.decide(&r.facts(), id, now).unwrap().decision;
            assert_eq!(
                (&a.verdict, &a.reasons, &a.policies, &a.obligations),
                (&b.verdict, &b.reasons, &b.policies, &b.obligations),
                "round {round}, request {i} {r:?}"
            );
        }
    }
    assert!(cached.policy().cached_answers() > 0, "the cache was used");
    assert_eq!(
        fresh.policy().cached_answers(),
        0,
        "`decision_cache_bytes = 0` keeps nothing"
    );
}

/// Regression guard for the decision cache's key: requests that differ only in a context
/// value a policy reads (a tool argument, the declared purpose) are answered apart,
/// whichever is decided first, and a repeat gets the same answer as the first time.
#[test]
fn the_decision_cache_tells_requests_apart_by_context() {
    let search = |limit: u32, purpose: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"search_docs","arguments":{{"query":"deploy","limit":{limit}}}}}}}"#
        );
        RequestFacts::parse(
            "POST",
            "/mcp/docs",
            [
                (
                    "Authorization",
                    b"Bearer rk_demo_retrieval_agent".as_slice(),
                ),
                ("Remit-Purpose", purpose.as_bytes()),
                ("Content-Type", b"application/json".as_slice()),
            ],
            Some(body.into_bytes()),
            None,
        )
        .unwrap()
    };
    let now = time::OffsetDateTime::now_utc();
    for order in [[5, 50, 5, 50], [50, 5, 50, 5]] {
        let e = engine();
        for limit in order {
            let d = e
                .decide(&search(limit, "doc-retrieval"), "t".into(), now)
                .unwrap()
                .decision;
            let want = if limit <= 10 {
                Verdict::Allow
            } else {
                Verdict::Deny
            };
            assert_eq!(
                d.verdict, want,
                "limit {limit} in order {order:?}: {:?}",
                d.reasons
            );
        }
        assert!(e.policy().cached_answers() >= 2, "both answers are kept");
        let d = e
            .decide(&search(5, "case-summary"), "t".into(), now)
            .unwrap()
            .decision;
        assert_eq!(d.verdict, Verdict::Deny, "another purpose: {:?}", d.reasons);
    }
}

/// The pipeline, bare Cedar over the whole policy set, regorus' interpreter and regorus' VM
/// agree on thousands of random requests over a world of 1,000 identities and 200 policies
/// (and so does a plain-Rust oracle computed from the policies' model).
#[test]
fn pipeline_cedar_and_rego_agree_on_random_requests() {
    let world = support::World::generate(7);
    let engine = world.engine();
    // The baseline pack has four policies; the fourth (exposed credentials) never applies
    // here, since no credential of this world is ever seen exposed, so the peers leave it out.
    assert_eq!(engine.policy().len(), support::POLICIES + 4);
    let mut peers = support::Peers::new(&world);
    let now = time::OffsetDateTime::now_utc();
    let requests = world.requests(11, 3_000);
    let (mut allow, mut deny) = (0usize, 0usize);
    let mut disagreements = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let decided = engine
            .decide(&r.facts(), format!("agree-{i}"), now)
            .expect("synthetic requests are well formed");
        let pipeline = decided.decision.verdict == Verdict::Allow;
        let cedar = peers.cedar(&world.cedar_request(r));
        let input = regorus::Value::from(world.rego_input(r));
        let interpreted = peers.interpret(input.clone());
        let vm = peers.rvm(input);
        let oracle = world.expected(r);
        if [cedar, interpreted, vm, oracle]
            .iter()
            .any(|v| *v != pipeline)
        {
            disagreements.push(format!(
                "request {i} {r:?}: pipeline {pipeline} ({:?}), cedar {cedar}, rego {interpreted}, rvm {vm}, oracle {oracle}",
                decided.decision.reasons
            ));
        }
        if pipeline {
            allow += 1;
        } else {
            deny += 1;
        }
    }
    println!(
        "{} requests: {allow} allowed, {deny} denied (by all five evaluators)",
        requests.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s), first ones:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(5)].join("\n")
    );
    assert!(
        allow * 10 > requests.len() && deny * 10 > requests.len(),
        "the mix is lopsided: {allow} allowed, {deny} denied"
    );
}

fn retrieval_call() -> RequestFacts {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"deploy"},"_meta":{"remit/purpose":"doc-retrieval"}}}"#;
    RequestFacts::parse(
        "POST",
        "/mcp/docs",
        [
            ("Authorization", &b"Bearer rk_demo_retrieval_agent"[..]),
            ("Content-Type", b"application/json"),
            ("Accept", b"application/json, text/event-stream"),
        ],
        Some(body.to_vec()),
        Some("127.0.0.1"),
    )
    .unwrap()
}

/// The quickstart's retrieval agent may call its tool 30 times a minute: the 31st call
/// is `rate_limited` with a time to retry, and the record says so; dry runs spend nothing;
/// another identity's budget is untouched.
#[tokio::test]
async fn the_31st_call_in_a_minute_is_rate_limited_and_budgets_are_per_identity() {
    let e = engine();
    let sink = CountingSink(Default::default());
    for i in 0..40 {
        let d = e
            .decide_and_record(&retrieval_call(), format!("dry-{i}"), &sink, true)
            .await
            .unwrap();
        assert_eq!(d.verdict, Verdict::Allow, "dry runs spend no quota");
    }
    for i in 0..30 {
        let d = e
            .decide_and_record(&retrieval_call(), format!("r-{i}"), &sink, false)
            .await
            .unwrap();
        assert_eq!(d.verdict, Verdict::Allow, "call {}: {:?}", i + 1, d.reasons);
    }
    let d = e
        .decide_and_record(&retrieval_call(), "r-30".into(), &sink, false)
        .await
        .unwrap();
    assert_eq!(d.verdict, Verdict::RateLimited, "{:?}", d.reasons);
    assert!(
        d.retry_after_s.is_some_and(|s| (1..=2).contains(&s)),
        "{:?}",
        d.retry_after_s
    );
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("retrieval-agent") && r.contains("30 requests per 60 s")),
        "{:?}",
        d.reasons
    );
    assert!(d.obligations.is_empty());
    let last = serde_json::to_value(sink.0.lock().unwrap().last().unwrap()).unwrap();
    assert_eq!(
        (last["decision"].as_str(), last["retry_after_s"].as_u64()),
        (Some("rate_limited"), d.retry_after_s)
    );
    // The support assistant has no cap of the agent's.
    let d = e
        .decide_and_record(&support_read(), "s".into(), &sink, false)
        .await
        .unwrap();
    assert_eq!(d.verdict, Verdict::Allow);
}

/// `scan.rules` names a gitleaks-format file beside the configuration: its rules replace
/// the built-ins, and an unparsable rule stops the start naming the file, rule and line.
#[test]
fn a_gitleaks_rule_file_replaces_the_built_in_rules_and_bad_rules_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(quickstart().join("remit.toml")).unwrap();
    let text = text.replace("# rules = \"secrets.toml\"", "rules = \"secrets.toml\"");
    assert!(text.contains("\nrules = \"secrets.toml\""));
    std::fs::write(dir.path().join("remit.toml"), &text).unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for p in std::fs::read_dir(quickstart().join("policies")).unwrap() {
        let p = p.unwrap().path();
        std::fs::copy(&p, policies.join(p.file_name().unwrap())).unwrap();
    }
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../remit-scan/tests/rules/gitleaks.toml");
    std::fs::copy(&rules, dir.path().join("secrets.toml")).unwrap();
    let engine = remit_engine::load::load_engine(&dir.path().join("remit.toml")).unwrap();
    let mut f = support_read();
    f.body = Some(b"{\"note\":\"acme_0123456789abcdefghijklmnopqrstuv\"}".to_vec());
    let d = engine
        .decide(&f, "r".into(), time::OffsetDateTime::now_utc())
        .unwrap()
        .decision;
    let scan = d.scan.expect("the custom rule found the token");
    assert_eq!(scan.rule_ids(), ["acme-internal-token"]);

    // A rule whose regex does not compile is reported by id and line.
    let bad = std::fs::read_to_string(&rules).unwrap().replacen(
        "regex = '''\\b(acme_[a-z0-9]{32})\\b'''",
        "regex = '''(acme_[a-z'''",
        1,
    );
    std::fs::write(dir.path().join("secrets.toml"), bad).unwrap();
    let e = remit_engine::load::load_engine(&dir.path().join("remit.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("secrets.toml") && e.contains("acme-internal-token") && e.contains("line 16"),
        "{e}"
    );
}

/// The proxy listener's TLS files are read and checked at load, relative to the
/// configuration's directory: a missing, malformed or mismatched file stops the start naming
/// the configuration's line and field and the file.
#[test]
fn tls_files_are_checked_at_load_naming_the_line_field_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(
        quickstart().join("policies/quickstart.cedar"),
        policies.join("quickstart.cedar"),
    )
    .unwrap();
    let text = std::fs::read_to_string(quickstart().join("remit.toml")).unwrap();
    let text = text.replacen(
        "[gateway]\n",
        "[gateway]\ntls_cert_file = \"tls/cert.pem\"\ntls_key_file = \"tls/key.pem\"\nclient_ca_file = \"tls/bundle.pem\"\nclient_trust_domain = \"example.org\"\n",
        1,
    );
    std::fs::write(dir.path().join("remit.toml"), text).unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let new_key = || rcgen::KeyPair::generate().unwrap();
    let key = new_key();
    let cert = rcgen::CertificateParams::new(vec!["remit.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let write = |name: &str, text: &str| std::fs::write(tls.join(name), text).unwrap();
    write("cert.pem", &cert.pem());
    write("key.pem", &key.serialize_pem());
    write("bundle.pem", &cert.pem());
    let config = dir.path().join("remit.toml");
    let engine = load_engine(&config).unwrap();
    let loaded = engine.config().gateway.tls.as_ref().unwrap();
    assert_eq!(loaded.cert_file.path, dir.path().join("tls/cert.pem"));
    assert_eq!(
        loaded.client_ca.as_ref().unwrap().file.path,
        dir.path().join("tls/bundle.pem")
    );
    let fails = |line: usize, field: &str, says: &str| {
        let Err(e) = load_engine(&config) else {
            panic!("loaded")
        };
        let LoadError::Config(c) = &e else {
            panic!("{e}")
        };
        assert_eq!((c.line, c.field.as_str()), (line, field), "{e}");
        assert!(c.message.contains(says), "{e}");
        assert!(c.file.ends_with("remit.toml"), "{e}");
    };
    write("key.pem", &new_key().serialize_pem());
    fails(7, "gateway.tls_key_file", "does not match the certificate");
    write("key.pem", "not a key\n");
    fails(7, "gateway.tls_key_file", "no PEM private key");
    write("key.pem", &key.serialize_pem());
    write("cert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    fails(6, "gateway.tls_cert_file", "not valid PEM");
    std::fs::remove_file(tls.join("cert.pem")).unwrap();
    fails(6, "gateway.tls_cert_file", "cert.pem");
    write("cert.pem", &cert.pem());
    write("bundle.pem", "");
    fails(8, "gateway.client_ca_file", "no PEM certificate");
    std::fs::remove_file(tls.join("bundle.pem")).unwrap();
    std::fs::create_dir(tls.join("bundle.pem")).unwrap();
    fails(8, "gateway.client_ca_file", "not a regular file");
}

/// Read-only holds whatever the policy says: for an identity marked `read_only`, for a
/// purpose in its `read_only_purposes`, and under a permit's `read_only` obligation; a
/// write is an unsafe HTTP method or a destructive MCP tool.
#[test]
fn read_only_identities_purposes_and_permits_never_write() {
    let key = |k: &str| hex::encode(remit_token::hash_key(k));
    let config = format!(
        r#"
[[route]]
method = "GET"
path = "/items/{{id}}"
action = "items.read"
resource = "Item::{{id}}"

[[route]]
method = "POST"
path = "/items/{{id}}"
action = "items.write"
resource = "Item::{{id}}"

[[mcp_server]]
name = "ops"
path = "/mcp/ops"
session_action = "ops.session"
[[mcp_server.tool]]
name = "lookup"
action = "ops.lookup"
destructive = false
[[mcp_server.tool]]
name = "restart"
action = "ops.restart"

[[identity]]
id = "viewer"
kind = "assistant"
owner = "team"
purposes = ["review"]
boundary = ["items.*", "ops.*"]
read_only = true
[[identity.credential]]
type = "api_key"
sha256 = "{}"

[[identity]]
id = "worker"
kind = "agent"
owner = "team"
purposes = ["audit", "fix"]
read_only_purposes = ["audit"]
boundary = ["items.*", "ops.*"]
[[identity.credential]]
type = "api_key"
sha256 = "{}"
"#,
        key("rk_viewer"),
        key("rk_worker")
    );
    let config = remit_core::Config::parse(&config, "remit.toml").unwrap();
    let policy = r#"
permit (principal, action, resource);
@id("careful")
@obligation("read_only")
permit (principal == Identity::"worker", action == Action::"items.write", resource);
"#;
    let policies = [remit_policy::PolicySource {
        file: "p.cedar".into(),
        text: policy.into(),
    }];
    let e = Engine::new(config, &policies).unwrap();
    let decide = |method: &str, path: &str, who: &str, purpose: &str, body: Option<&str>| {
        let auth = format!("Bearer rk_{who}");
        let mut f = facts(
            method,
            path,
            &[("Authorization", auth.as_str()), ("Remit-Purpose", purpose)],
        );
        f.body = body.map(|b| b.as_bytes().to_vec());
        let d = e
            .decide(&f, "ro".into(), time::OffsetDateTime::now_utc())
            .unwrap()
            .decision;
        (d.verdict, d.policies.join(","))
    };
    let tool = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
        )
    };
    let ro = (Verdict::Deny, "remit.read-only".to_owned());
    assert_eq!(
        decide("GET", "/items/1", "viewer", "review", None).0,
        Verdict::Allow
    );
    assert_eq!(
        decide("POST", "/items/1", "viewer", "review", Some("{}")),
        ro
    );
    assert_eq!(
        decide(
            "POST",
            "/mcp/ops",
            "viewer",
            "review",
            Some(&tool("lookup"))
        )
        .0,
        Verdict::Allow
    );
    assert_eq!(
        decide(
            "POST",
            "/mcp/ops",
            "viewer",
            "review",
            Some(&tool("restart"))
        ),
        ro
    );
    // A purpose can be read-only for an identity that may otherwise write.
    assert_eq!(
        decide("POST", "/items/1", "worker", "audit", Some("{}")),
        ro
    );
    assert_eq!(
        decide("POST", "/mcp/ops", "worker", "fix", Some(&tool("restart"))).0,
        Verdict::Allow
    );
    // A permit's `read_only` obligation refuses an unsafe method on the action it permits,
    // even beside a broader permit.
    assert_eq!(decide("POST", "/items/1", "worker", "fix", Some("{}")), ro);
    assert_eq!(
        decide("GET", "/items/1", "worker", "fix", None).0,
        Verdict::Allow
    );

    // Configuration errors name the field.
    let bad = |extra: &str, purposes: &str| {
        remit_core::Config::parse(
            &format!("[[identity]]\nid = \"x\"\nkind = \"agent\"\nowner = \"t\"\npurposes = [\"a\"]\n{purposes}{extra}"),
            "remit.toml",
        )
        .unwrap_err()
    };
    let err = bad("", "read_only_purposes = [\"b\"]\n");
    assert_eq!(err.field, "identity[0].read_only_purposes", "{err}");
    let err = bad("read_only = \"yes\"\n", "");
    assert!(err.message.contains("invalid type"), "{err}");
}

/// `limits.per_purpose` and `limits.per_action` cap each purpose and each action apart:
/// flooding one leaves the others their budget, and the refusal names the cap.
#[tokio::test]
async fn per_purpose_and_per_action_caps_keep_separate_budgets() {
    let key = hex::encode(remit_token::hash_key("rk_multi"));
    let config = format!(
        r#"
[[route]]
method = "GET"
path = "/a/{{id}}"
action = "a.read"
resource = "Item::{{id}}"
sensitive = false

[[route]]
method = "GET"
path = "/b/{{id}}"
action = "b.read"
resource = "Item::{{id}}"
sensitive = false

[[identity]]
id = "multi"
kind = "agent"
owner = "team"
purposes = ["one", "two"]
boundary = ["a.read", "b.read"]
limits = {{ per_purpose = "3/min", per_action = "4/min" }}
[[identity.credential]]
type = "api_key"
sha256 = "{key}"
"#
    );
    let config = remit_core::Config::parse(&config, "remit.toml").unwrap();
    let policies = [remit_policy::PolicySource {
        file: "p.cedar".into(),
        text: "permit (principal, action, resource);".into(),
    }];
    let e = Engine::new(config, &policies).unwrap();
    let sink = CountingSink(Default::default());
    let call = |path: &str, purpose: &str| {
        facts(
            "GET",
            path,
            &[
                ("Authorization", "Bearer rk_multi"),
                ("Remit-Purpose", purpose),
            ],
        )
    };
    let mut verdicts = Vec::new();
    for (i, (path, purpose)) in [
        ("/a/1", "one"),
        ("/a/1", "one"),
        ("/a/1", "one"),
        ("/a/1", "one"), // purpose `one`'s 4th: over 3/min
        ("/a/1", "two"),
        ("/a/1", "two"), // a.read's 4th that passed the purpose cap... (3 + 2 = 5 attempts)
        ("/b/1", "two"), // purpose `two`'s 3rd, b.read's 1st
        ("/b/1", "two"), // purpose `two`'s 4th: over
    ]
    .iter()
    .enumerate()
    {
        let d = e
            .decide_and_record(&call(path, purpose), format!("m-{i}"), &sink, false)
            .await
            .unwrap();
        verdicts.push((d.verdict, d.reasons.join(" ")));
    }
    use Verdict::{Allow, RateLimited};
    let got: Vec<Verdict> = verdicts.iter().map(|v| v.0).collect();
    // Every attempt spends from the caps it passed before the one that refused it, as GCRA
    // checks are taken in order; the 4th `a.read` is over the per-action cap.
    assert_eq!(
        got,
        [
            Allow,
            Allow,
            Allow,
            RateLimited,
            Allow,
            RateLimited,
            Allow,
            RateLimited
        ],
        "{verdicts:?}"
    );
    assert!(verdicts[3].1.contains("for purpose `one`"), "{verdicts:?}");
    assert!(verdicts[5].1.contains("for `a.read`"), "{verdicts:?}");
    assert!(verdicts[7].1.contains("for purpose `two`"), "{verdicts:?}");
}

/// Approved record sets in the pipeline: values from policy (`@record_values`), a set a
/// permit names with `@record_set`, the record a request asks for as a path parameter, a
/// query parameter (once only) or a tool argument, and a policy naming a set that does not
/// exist refused at load.
#[test]
fn record_sets_resolve_from_policy_and_refuse_records_outside_them() {
    let key = |k: &str| hex::encode(remit_token::hash_key(k));
    let config = format!(
        r#"
[[route]]
method = "GET"
path = "/accounts/{{account}}/orders"
action = "orders.list"
resource = "Account::{{account}}"

[[route]]
method = "GET"
path = "/orders"
action = "orders.search"
resource = "Orders::all"

[[mcp_server]]
name = "crm"
path = "/mcp/crm"
session_action = "crm.session"
[[mcp_server.tool]]
name = "account_notes"
action = "crm.notes"
destructive = false
arguments = {{ account = "string" }}

[[record_set]]
name = "accounts"
actions = ["orders.list", "orders.search"]
field = "/account"
param = "account"
from = "policy"

[[record_set]]
name = "regions"
actions = []
field = "/region"
from = "values"
values = ["eu"]
param = "account"

[[identity]]
id = "agent"
kind = "agent"
owner = "team"
purposes = ["care"]
boundary = ["orders.*", "crm.*"]
[[identity.credential]]
type = "api_key"
sha256 = "{}"
"#,
        key("rk_agent")
    );
    let config = || remit_core::Config::parse(&config, "remit.toml").unwrap();
    let policy = r#"
@id("orders")
@record_set("accounts")
@record_values("acme, globex")
permit (principal, action in [Action::"orders.list", Action::"orders.search"], resource);
@id("notes")
@record_set("regions")
permit (principal, action == Action::"crm.notes", resource);
"#;
    let source = |text: &str| {
        [remit_policy::PolicySource {
            file: "p.cedar".into(),
            text: text.into(),
        }]
    };
    let e = Engine::new(config(), &source(policy)).unwrap();
    let decide = |method: &str, path: &str, body: Option<String>| {
        let mut f = facts(
            method,
            path,
            &[
                ("Authorization", "Bearer rk_agent"),
                ("Remit-Purpose", "care"),
            ],
        );
        f.body = body.map(String::into_bytes);
        e.decide(&f, "rs".into(), time::OffsetDateTime::now_utc())
            .unwrap()
            .decision
    };
    let outside =
        |d: &remit_core::Decision| d.verdict == Verdict::Deny && d.policies == ["remit.record-set"];
    let d = decide("GET", "/accounts/acme/orders", None);
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    assert_eq!(d.record_sets.len(), 1);
    assert_eq!(
        d.record_sets[0].values,
        std::sync::Arc::new(["acme".to_owned(), "globex".to_owned()].into())
    );
    let d = decide("GET", "/accounts/initech/orders", None);
    assert!(outside(&d), "{d:?}");
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("record `initech` is outside the approved record set `accounts`")),
        "{:?}",
        d.reasons
    );
    assert!(d.record_sets.is_empty(), "a refusal carries no set");
    assert_eq!(decide("GET", "/orders", None).verdict, Verdict::Allow);
    assert_eq!(
        decide("GET", "/orders?account=globex&x=1", None).verdict,
        Verdict::Allow
    );
    assert!(outside(&decide("GET", "/orders?account=initech", None)));
    assert!(outside(&decide(
        "GET",
        "/orders?account=acme&account=initech",
        None
    )));
    // The query is decoded before it is compared.
    assert_eq!(
        decide("GET", "/orders?account=glob%65x", None).verdict,
        Verdict::Allow
    );
    let notes = |account: &str| {
        Some(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"account_notes","arguments":{{"account":"{account}"}}}}}}"#
        ))
    };
    let d = decide("POST", "/mcp/crm", notes("eu"));
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    assert_eq!(d.record_sets[0].name, "regions");
    assert!(outside(&decide("POST", "/mcp/crm", notes("us"))));

    // A policy naming a set the configuration lacks does not load.
    let err = Engine::new(
        config(),
        &source("@id(\"x\")\n@record_set(\"nope\")\npermit (principal, action, resource);"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("p.cedar:1:")
            && err.contains("`@record_set(\"nope\")` names no `[[record_set]]`"),
        "{err}"
    );
    for (text, want) in [
        (
            "@record_values(\"a\")\npermit (principal, action, resource);",
            "beside the `@record_set`",
        ),
        (
            "@record_set(\"accounts\")\nforbid (principal, action, resource);",
            "belongs on a permit",
        ),
    ] {
        let err = Engine::new(config(), &source(text))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
}
