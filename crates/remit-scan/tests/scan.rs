//! remit-scan's one integration-test binary: the labelled corpus (precision and recall per
//! rule), the gitleaks-format loader, decoding layers, SSE, redaction, known secrets and
//! hostile input.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use remit_scan::{
    Action, ContentEncoding, Findings, Incomplete, KnownSecrets, Limits, RuleSet, RulesError,
    ScanError, Scanner, SseScanner,
};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

struct Case {
    name: String,
    body: Vec<u8>,
    encoding: ContentEncoding,
    chunks: Option<Vec<usize>>,
    expect: BTreeSet<String>,
}

fn load(file: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(corpus_dir().join(file)).expect("corpus file");
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("corpus line is JSON");
            let body = match (v.get("body"), v.get("body_b64")) {
                (Some(Value::String(s)), _) => s.as_bytes().to_vec(),
                (_, Some(Value::String(b))) => STANDARD.decode(b).expect("body_b64"),
                _ => panic!("corpus line without body"),
            };
            let encoding = ContentEncoding::parse(v["encoding"].as_str().unwrap_or("identity"))
                .expect("encoding");
            let chunks = v.get("chunks").map(|c| {
                c.as_array()
                    .expect("chunks")
                    .iter()
                    .map(|n| n.as_u64().expect("size") as usize)
                    .collect()
            });
            let expect = v["expect"]
                .as_array()
                .expect("expect")
                .iter()
                .map(|s| s.as_str().expect("id").to_owned())
                .collect();
            Case {
                name: v["name"].as_str().expect("name").to_owned(),
                body,
                encoding,
                chunks,
                expect,
            }
        })
        .collect()
}

/// Scans a case the way the gateway would: SSE streams chunk by chunk, others whole.
fn scan_case(scanner: &Scanner, case: &Case) -> Findings {
    match &case.chunks {
        Some(sizes) => {
            let mut sse = SseScanner::new(scanner, false);
            let mut all = Findings::default();
            let mut at = 0;
            for n in sizes {
                let out = sse.push(&case.body[at..at + n]).expect("sse push");
                all.items.extend(out.findings.items);
                at += n;
            }
            all.items
                .extend(sse.finish().expect("sse finish").findings.items);
            all
        }
        None => scanner.scan(&case.body, case.encoding).expect("scan"),
    }
}

/// A scanner keeps the buffers of finished scans (decoded layers, byte maps, keyword lists)
/// for later ones: whatever it scanned before, and whichever thread scans, a body's
/// findings are those a fresh scanner reports.
#[test]
fn reused_buffers_change_no_finding() {
    let cases = load("corpus.jsonl");
    let scanner = Scanner::builtin();
    let forward: Vec<Findings> = cases.iter().map(|c| scan_case(&scanner, c)).collect();
    // In reverse, large layers' buffers come back for small ones and the other way round.
    let mut backward: Vec<Findings> = cases.iter().rev().map(|c| scan_case(&scanner, c)).collect();
    backward.reverse();
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(forward[i], backward[i], "case {i}: {:?}", case.expect);
    }
    // Each of these on a scanner that has scanned nothing yet.
    for i in (0..cases.len()).step_by(97) {
        let fresh = Scanner::builtin();
        assert_eq!(
            scan_case(&fresh, &cases[i]),
            forward[i],
            "case {i}, fresh scanner"
        );
    }
    // Two threads sharing the scanner (and its buffers).
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    cases
                        .iter()
                        .map(|c| scan_case(&scanner, c))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for run in runs {
            assert!(
                run.join().expect("thread") == forward,
                "findings differ across threads"
            );
        }
    });
}

/// A decoded layer with more keyword occurrences than a layer keeps (its parent's, moved,
/// and as many that only decoding makes) gives its buffers back within the pool's
/// accounting, and the next scans reuse them.
#[test]
fn a_layer_over_the_occurrence_limit_gives_its_buffers_back() {
    let scanner = Scanner::builtin();
    // 40,000 `key` in the body and 40,000 more once `\u0065` is decoded: 80,000 in the
    // JSON layer, over the 65,536 a layer keeps.
    let body = "key k\\u0065y ".repeat(40_000).into_bytes();
    let first = scanner
        .scan(&body, ContentEncoding::Identity)
        .expect("scan");
    for _ in 0..2 {
        assert_eq!(
            scanner
                .scan(&body, ContentEncoding::Identity)
                .expect("scan"),
            first
        );
        let _ = scanner
            .scan(b"{\"a\": \"x\\\"y\"}", ContentEncoding::Identity)
            .expect("scan");
    }
}

#[derive(Default)]
struct Tally {
    tp: usize,
    fp: usize,
    fn_: usize,
}

#[test]
fn corpus_recall_at_least_99_percent_and_no_false_positive() {
    let scanner = Scanner::builtin();
    let mut per_rule: BTreeMap<String, Tally> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut false_positives = Vec::new();
    let cases = load("corpus.jsonl");
    for case in &cases {
        let findings = scan_case(&scanner, case);
        let found: BTreeSet<String> = findings.rule_ids().into_iter().map(str::to_owned).collect();
        for id in case.expect.union(&found) {
            let t = per_rule.entry(id.clone()).or_default();
            match (case.expect.contains(id), found.contains(id)) {
                (true, true) => t.tp += 1,
                (true, false) => {
                    t.fn_ += 1;
                    misses.push(format!("{}: missed {id}", case.name));
                }
                (false, true) => {
                    t.fp += 1;
                    false_positives.push(format!("{}: {id} {:?}", case.name, findings.items));
                }
                (false, false) => {}
            }
        }
    }
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    println!(
        "{:<28} {:>5} {:>4} {:>4} {:>9} {:>9}",
        "rule", "tp", "fp", "fn", "precision", "recall"
    );
    for (id, t) in &per_rule {
        let precision = t.tp as f64 / (t.tp + t.fp).max(1) as f64;
        let recall = t.tp as f64 / (t.tp + t.fn_).max(1) as f64;
        println!(
            "{id:<28} {:>5} {:>4} {:>4} {:>9.3} {:>9.3}",
            t.tp, t.fp, t.fn_, precision, recall
        );
        tp += t.tp;
        fp += t.fp;
        fn_ += t.fn_;
    }
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    println!(
        "{:<28} {tp:>5} {fp:>4} {fn_:>4} {precision:>9.3} {recall:>9.3}  ({} bodies)",
        "overall",
        cases.len()
    );
    for m in &misses {
        println!("miss: {m}");
    }
    for f in &false_positives {
        println!("false positive: {f}");
    }
    assert!(recall >= 0.99, "recall {recall:.4} < 0.99");
    assert!(
        false_positives.is_empty(),
        "{} false positives",
        false_positives.len()
    );
}

// ---- the gitleaks-format loader ----

fn rules_file() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rules/gitleaks.toml"),
    )
    .expect("rule file")
}

fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle in text");
    text[..at].matches('\n').count() + 1
}

fn load_err(text: &str) -> RulesError {
    match RuleSet::from_toml(text, "gitleaks.toml") {
        Ok(_) => panic!("rule file should not load"),
        Err(e) => e,
    }
}

#[test]
fn loader_reads_a_realistic_gitleaks_file() {
    let set = RuleSet::from_toml(&rules_file(), "gitleaks.toml").expect("loads");
    assert_eq!(set.len(), 20);
    let scanner = Scanner::new(set);
    let found = |body: &str| {
        scanner
            .scan(body.as_bytes(), ContentEncoding::Identity)
            .expect("scan")
            .rule_ids()
            .join(",")
    };
    assert_eq!(
        found(r#"{"token":"acme_0f3k9x2m7q1w8e4r6t5y3u2i9o0p1a7s"}"#),
        "acme-internal-token"
    );
    assert_eq!(found("ACME_PASSWORD=Zk81!pq0xLm"), "acme-legacy-password");
    // Rule-level allowlist (regex and stopword) and the global one.
    assert_eq!(found("acme_password = ${ACME_PASSWORD}"), "");
    assert_eq!(found("acme_password = changeme123"), "");
    assert_eq!(found("acme_password = test-1234567"), "");
    assert_eq!(
        found("heroku_api_key: 01234567-89ab-4cde-8f01-23456789abcd"),
        "heroku-api-key"
    );
    assert_eq!(found("NRAK-ABCDEFGHIJKLMNOPQRSTUVWXYZ1"), "new-relic-key");
    // A singular [rules.allowlist] works too: hex-only values are allowed.
    assert_eq!(
        found("acme.client.secret = 0123456789abcdef0123456789abcdef"),
        ""
    );
    assert_eq!(
        found("acme.client.secret = Q9vX2kLm8PzR4tYw7NcB1dFh"),
        "generic-acme-secret"
    );
}

#[test]
fn an_unparsable_rule_is_reported_by_id_and_line() {
    let good = rules_file();
    let broken = good.replace(r"\b(key-[0-9a-z]{32})\b", r"\b(key-[0-9a-z{32})\b");
    let line = line_of(&broken, r"\b(key-[0-9a-z{32})\b");
    let msg = load_err(&broken).to_string();
    assert!(
        msg.starts_with(&format!(
            "`gitleaks.toml` line {line}: rule `mailgun-key`: invalid `regex`: "
        )),
        "{msg}"
    );
}

#[test]
fn loader_errors_name_the_rule_and_line() {
    let good = rules_file();
    // Duplicate id: reported at the second definition, naming the first.
    let dup = good.replace(r#"id = "pulumi-token""#, r#"id = "linear-api-key""#);
    let first = line_of(&dup, r#"id = "linear-api-key""#);
    let second = dup
        .rfind(r#"id = "linear-api-key""#)
        .map(|at| dup[..at].matches('\n').count() + 1)
        .expect("second");
    assert_eq!(
        load_err(&dup).to_string(),
        format!(
            "`gitleaks.toml` line {second}: rule `linear-api-key`: duplicate id, first defined at line {first}"
        )
    );
    // Missing id.
    let no_id = good.replace("id = \"okta-token\"\n", "");
    let msg = load_err(&no_id).to_string();
    assert!(msg.contains("rule `?`: missing `id`"), "{msg}");
    // A field gitleaks does not define (a typo) is refused, naming the rule and line.
    let typo = good.replace("keywords = [\"dapi\"]", "keyword = [\"dapi\"]");
    let line = line_of(&typo, "keyword = [\"dapi\"]");
    let msg = load_err(&typo).to_string();
    assert!(
        msg.starts_with(&format!(
            "`gitleaks.toml` line {line}: rule `databricks-token`: unknown field `keyword`"
        )),
        "{msg}"
    );
    // secretGroup beyond the regex's groups.
    let group = good.replace(
        "secretGroup = 1\nkeywords = [\"okta\"]",
        "secretGroup = 3\nkeywords = [\"okta\"]",
    );
    let msg = load_err(&group).to_string();
    assert!(
        msg.contains("rule `okta-token`: `secretGroup` 3 but the regex has 1 groups"),
        "{msg}"
    );
    // Plain TOML errors have a line too.
    let msg = load_err("[[rules]]\nid = \"x\"\nregex = '''a\n").to_string();
    assert!(msg.starts_with("`gitleaks.toml` line "), "{msg}");
}

#[test]
fn loader_limits_are_decisions() {
    let big = "#".repeat(remit_scan::MAX_RULE_FILE_BYTES + 1);
    assert!(matches!(load_err(&big), RulesError::FileTooLarge { .. }));
    let many: String = (0..=remit_scan::MAX_RULES)
        .map(|i| format!("[[rules]]\nid = \"r{i}\"\nregex = 'x{i}y'\n"))
        .collect();
    assert!(matches!(load_err(&many), RulesError::TooManyRules { .. }));
    // A regex whose compiled size is over the limit is refused, by id.
    let huge = "[[rules]]\nid = \"huge\"\nregex = '''(?:[a-z0-9]{1000}){1000}'''\n";
    let msg = load_err(huge).to_string();
    assert!(msg.contains("rule `huge`: invalid `regex`"), "{msg}");
}

#[test]
fn extend_use_default_adds_the_builtin_rules() {
    let text = "[extend]\nuseDefault = true\ndisabledRules = [\"jwt\"]\n[[rules]]\nid = \"acme\"\nregex = '''acme_[a-z]{8}'''\nkeywords = [\"acme_\"]\n";
    let set = RuleSet::from_toml(text, "t.toml").expect("loads");
    assert_eq!(set.len(), RuleSet::builtin().len());
    assert!(set.rules().iter().any(|r| r.id() == "acme"));
    assert!(!set.rules().iter().any(|r| r.id() == "jwt"));
}

#[test]
fn a_rule_without_keywords_searches_decoded_layers_without_keywords_too() {
    let text = "[extend]\nuseDefault = true\n[[rules]]\nid = \"zq\"\nregex = '''zq[0-9]{6}'''\n";
    let scanner = Scanner::new(RuleSet::from_toml(text, "t.toml").expect("loads"));
    // `zq123456` only once the JSON escapes are undone, in a layer holding no keyword.
    let body = br#"{"note": "id zq\u0031\u0032\u0033\u0034\u0035\u0036 ok"}"#;
    let found = scanner.scan(body, ContentEncoding::Identity).expect("scan");
    let zq: Vec<_> = found.items.iter().filter(|f| &*f.rule == "zq").collect();
    assert_eq!(zq.len(), 1, "{found:?}");
    assert_eq!(zq[0].layer_name(), "json");
}

// ---- decoding layers, limits, hostile input ----

fn fake_github() -> String {
    "ghp_".to_owned() + "Zq3K9vT1xLmP8rW2yN6bC4dF7gH0jS5aE1uI"
}

#[test]
fn content_encodings_are_undone_and_bombs_are_too_large() {
    use flate2::Compression;
    let scanner = Scanner::builtin();
    let body = format!(r#"{{"token":"{}"}}"#, fake_github());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(body.as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let f = scanner.scan(&gz, ContentEncoding::Gzip).expect("scan");
    assert_eq!(f.rule_ids(), ["github-pat"]);
    assert_eq!(f.items[0].layer_name(), "gzip");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Compression::fast());
    z.write_all(body.as_bytes()).expect("zlib");
    let z = z.finish().expect("zlib");
    assert_eq!(
        scanner
            .scan(&z, ContentEncoding::Deflate)
            .expect("scan")
            .rule_ids(),
        ["github-pat"]
    );
    let mut br = Vec::new();
    brotli::BrotliCompress(&mut body.as_bytes(), &mut br, &Default::default()).expect("br");
    let f = scanner.scan(&br, ContentEncoding::Brotli).expect("scan");
    assert_eq!(f.rule_ids(), ["github-pat"]);
    assert_eq!(f.items[0].layer_name(), "br");

    // A zip bomb: 64 MiB of zeros in ~64 KiB. TooLarge, not an OOM.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..64 {
        bomb.write_all(&zeros).expect("bomb");
    }
    let bomb = bomb.finish().expect("bomb");
    assert!(bomb.len() < scanner.limits().max_body_bytes);
    assert!(matches!(
        scanner.scan(&bomb, ContentEncoding::Gzip),
        Err(ScanError::TooLarge { .. })
    ));
    let mut br_bomb = Vec::new();
    brotli::BrotliCompress(
        &mut &vec![b'a'; 8 * 1024 * 1024][..],
        &mut br_bomb,
        &Default::default(),
    )
    .expect("br");
    assert!(matches!(
        scanner.scan(&br_bomb, ContentEncoding::Brotli),
        Err(ScanError::TooLarge { .. })
    ));
    // A gzip bomb inside base64 inside JSON: the decode budget runs out, and says so.
    let mut inner = flate2::write::GzEncoder::new(Vec::new(), Compression::best());
    for _ in 0..8 {
        inner.write_all(&zeros).expect("bomb");
    }
    let inner = STANDARD.encode(inner.finish().expect("bomb"));
    let f = scanner
        .scan(
            format!(r#"{{"blob":"{inner}"}}"#).as_bytes(),
            ContentEncoding::Identity,
        )
        .expect("scan");
    assert_eq!(f.incomplete, Some(Incomplete::DecodeBudget));

    // Garbage that claims to be gzip is an error for the caller, not a pass.
    assert!(matches!(
        scanner.scan(b"not gzip", ContentEncoding::Gzip),
        Err(ScanError::Malformed { .. })
    ));
    assert!(matches!(
        ContentEncoding::parse("gzip, br"),
        Err(ScanError::UnsupportedEncoding { .. })
    ));
}

#[test]
fn a_body_over_the_limit_is_too_large_never_a_pass() {
    let scanner = Scanner::with_limits(
        RuleSet::builtin(),
        Limits {
            max_body_bytes: 1024,
            ..Limits::default()
        },
    );
    let body = vec![b'a'; 1025];
    assert_eq!(
        scanner.scan(&body, ContentEncoding::Identity),
        Err(ScanError::TooLarge {
            what: "body",
            limit: 1024
        })
    );
    assert!(scanner.redact(&body).is_err());
}

#[test]
fn nested_base64_is_decoded_and_too_deep_nesting_is_reported() {
    let scanner = Scanner::builtin();
    let mut payload = format!("token: {}", fake_github());
    for _ in 0..3 {
        payload = STANDARD.encode(payload.as_bytes());
    }
    let f = scanner
        .scan(
            format!(r#"{{"a":"{payload}"}}"#).as_bytes(),
            ContentEncoding::Identity,
        )
        .expect("scan");
    assert_eq!(f.rule_ids(), ["github-pat"]);
    assert_eq!(f.items[0].layer_name(), "base64+base64+base64");
    assert!(!f.items[0].exact);
    for _ in 0..20 {
        payload = STANDARD.encode(payload.as_bytes());
    }
    let f = scanner
        .scan(payload.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    assert!(f.items.is_empty());
    assert_eq!(f.incomplete, Some(Incomplete::NestingDepth));
}

#[test]
fn pathological_input_is_bounded() {
    let scanner = Scanner::builtin();
    let started = std::time::Instant::now();
    let bodies: Vec<Vec<u8>> = vec![
        "password=".repeat(100_000).into_bytes(),
        "-----BEGIN PRIVATE KEY-----".repeat(30_000).into_bytes(),
        "\\\"".repeat(400_000).into_bytes(),
        "\\u00".repeat(200_000).into_bytes(),
        "%2".repeat(400_000).into_bytes(),
        "A".repeat(1_000_000).into_bytes(),
        "eyJ.".repeat(200_000).into_bytes(),
        "postgres://a:".repeat(70_000).into_bytes(),
        (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect(),
    ];
    for body in &bodies {
        let f = scanner.scan(body, ContentEncoding::Identity).expect("scan");
        assert!(f.items.len() <= scanner.limits().max_findings);
        let _ = scanner.redact(body).expect("redact");
    }
    let elapsed = started.elapsed();
    assert!(elapsed.as_secs() < 60, "hostile bodies took {elapsed:?}");
}

#[test]
fn findings_are_capped_and_the_cap_is_reported() {
    let scanner = Scanner::builtin();
    const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let body: String = (0..300u64)
        .map(|i| {
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let id: String = (0..16)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    B32[(x % 32) as usize] as char
                })
                .collect();
            format!("AKIA{id} ")
        })
        .collect();
    let f = scanner
        .scan(body.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    assert_eq!(f.items.len(), scanner.limits().max_findings);
    assert_eq!(f.incomplete, Some(Incomplete::FindingsLimit));
}

#[test]
fn invalid_utf8_around_a_secret_is_scanned() {
    let scanner = Scanner::builtin();
    let mut body = vec![0xff, 0xfe, 0x80, b' '];
    body.extend_from_slice(fake_github().as_bytes());
    body.extend_from_slice(&[b' ', 0xc3, 0x28, 0xa0]);
    let f = scanner
        .scan(&body, ContentEncoding::Identity)
        .expect("scan");
    assert_eq!(f.rule_ids(), ["github-pat"]);
    assert_eq!(f.items[0].span, 4..44);
}

// ---- findings, redaction, SSE, known secrets ----

#[test]
fn findings_locate_the_secret_and_never_hold_it() {
    let scanner = Scanner::builtin();
    let secret = fake_github();
    let body = format!(
        r#"{{"args":"{{\"token\":\"{secret}\"}}","b64":"{}"}}"#,
        STANDARD.encode(format!("t={secret}"))
    );
    let f = scanner
        .scan(body.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    assert_eq!(f.items.len(), 2, "{f:?}");
    let raw = &f.items[0];
    assert_eq!(&body[raw.span.clone()], secret);
    assert!(raw.exact);
    assert_eq!(
        raw.fingerprint,
        remit_scan::Fingerprint::of(secret.as_bytes())
    );
    assert_eq!(raw.fingerprint.to_string().len(), 16);
    let b64 = &f.items[1];
    assert_eq!(b64.layer_name(), "base64");
    assert!(!b64.exact);
    // The secret itself is nowhere in what a finding shows.
    let shown = format!("{f:?}");
    assert!(
        !shown.contains(&secret) && !shown.contains(&secret[4..]),
        "{shown}"
    );
}

#[test]
fn redact_replaces_raw_and_escaped_secrets_and_reports_what_it_cannot() {
    let scanner = Scanner::builtin();
    let secret = fake_github();
    let escaped = secret.replacen('q', "\\u0071", 1);
    let body = format!(
        r#"{{"a":"{secret}","b":"{{\"k\":\"{escaped}\"}}","c":"pw%3D{}","d":"AKIAIOSFODNN7EXAMPLE"}}"#,
        "postgres%3A%2F%2Fapp%3AZk81pq0xLmQ7rT%40db%2Fapp"
    );
    let r = scanner.redact(body.as_bytes()).expect("redact");
    let out = String::from_utf8(r.body.clone()).expect("utf8");
    assert_eq!(
        out,
        r#"{"a":"[REDACTED:github-pat]","b":"{\"k\":\"[REDACTED:github-pat]\"}","c":"pw%3Dpostgres%3A%2F%2Fapp%3A[REDACTED:database-url]%40db%2Fapp","d":"AKIAIOSFODNN7EXAMPLE"}"#
    );
    assert!(r.is_complete());
    assert!(!format!("{r:?}").contains(&secret));

    let b64 = format!(
        r#"{{"x":"{}"}}"#,
        STANDARD.encode(format!("token {secret}"))
    );
    let r = scanner.redact(b64.as_bytes()).expect("redact");
    assert_eq!(r.unredacted, 1);
    assert!(
        !r.is_complete(),
        "a secret behind base64 must make the caller block"
    );
    assert_eq!(Action::parse("redact"), Some(Action::Redact));
    assert_eq!(Action::Block.name(), "block");
}

#[test]
fn sse_finds_secrets_split_across_chunks_and_redacts_per_event() {
    let scanner = Scanner::builtin();
    let secret = fake_github();
    let stream = format!(
        "event: message\ndata: {{\"progress\":1}}\n\nevent: message\ndata: {{\"text\":\"use {secret} now\"}}\n\ndata: done\r\n\r\n"
    );
    let at = stream.find(&secret).expect("secret");
    // One byte at a time: every boundary, including inside the secret.
    let mut sse = SseScanner::new(&scanner, true);
    let mut forwarded = Vec::new();
    let mut found = Vec::new();
    for b in stream.as_bytes() {
        let out = sse.push(std::slice::from_ref(b)).expect("push");
        forwarded.extend(out.forward);
        found.extend(out.findings.items);
    }
    let out = sse.finish().expect("finish");
    forwarded.extend(out.forward);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].span, at..at + secret.len());
    let text = String::from_utf8(forwarded).expect("utf8");
    assert_eq!(text, stream.replace(&secret, "[REDACTED:github-pat]"));
    // An event that never ends is bounded.
    let small = Scanner::with_limits(
        RuleSet::builtin(),
        Limits {
            max_body_bytes: 4096,
            ..Limits::default()
        },
    );
    let mut sse = SseScanner::new(&small, false);
    let r = (0..10).try_for_each(|_| sse.push(&[b'x'; 1000]).map(drop));
    assert!(matches!(r, Err(ScanError::TooLarge { .. })));
}

#[test]
fn a_remit_key_in_traffic_names_the_exposed_credential() {
    let scanner = Scanner::builtin();
    let minted = remit_token::new_api_key();
    let mut known = KnownSecrets::new();
    assert!(known.insert_hex(&minted.sha256_hex, "ci-bot-key"));
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"my key is {} ok"}}]}}"#,
        minted.key
    );
    let mut f = scanner
        .scan(body.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    assert_eq!(f.rule_ids(), ["remit-api-key"]);
    assert_eq!(known.mark(&mut f), 1);
    let exposed: Vec<_> = f.exposed().map(|x| x.credential.as_deref()).collect();
    assert_eq!(exposed, [Some("ci-bot-key")]);
    assert_eq!(
        known.check(minted.key.as_bytes()).map(|c| &**c),
        Some("ci-bot-key")
    );
    // An unknown remit-shaped key is still a finding, with no credential named.
    let other = remit_token::new_api_key();
    let mut f = scanner
        .scan(other.key.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    assert_eq!(known.mark(&mut f), 0);
    assert_eq!(f.rule_ids(), ["remit-api-key"]);
}

/// A fake PEM key: 16 lines of base64-shaped text between the armour lines, with newlines.
fn fake_pem() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let line: String = (0..64usize)
        .map(|i| char::from(ALPHABET[(i * 37 + 11) % 64]))
        .collect();
    let lines: Vec<String> = (0..16)
        .map(|k| line[k % 7..].to_owned() + &line[..k % 7])
        .collect();
    format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

#[test]
fn a_secret_seen_through_several_layers_is_one_finding_the_most_decoded() {
    use sha2::Digest as _;
    let scanner = Scanner::builtin();
    let pem = fake_pem();
    // The key as a JSON string inside a tool result that is itself a JSON string: the raw
    // text holds `\\n`, the first JSON layer `\n`, the second real newlines. Each layer's
    // match lands on the same place in the body.
    let inner = serde_json::json!({ "private_key": pem }).to_string();
    let body = serde_json::json!({ "role": "tool", "content": inner }).to_string();
    let f = scanner
        .scan(body.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    let keys: Vec<_> = f
        .items
        .iter()
        .filter(|x| &*x.rule == "private-key")
        .collect();
    assert_eq!(keys.len(), 1, "one finding per occurrence: {f:?}");
    let key = keys[0];
    assert_eq!(key.layer_name(), "json+json");
    assert!(key.exact);
    let at = &body[key.span.clone()];
    assert!(
        at.starts_with("-----BEGIN RSA PRIVATE KEY-----\\\\n"),
        "{at}"
    );
    assert!(at.ends_with("-----END RSA PRIVATE KEY-----"), "{at}");
    // The fingerprint and digest are the key's as written, so a known key is recognised.
    let written = pem.trim_end();
    assert_eq!(
        key.fingerprint,
        remit_scan::Fingerprint::of(written.as_bytes())
    );
    let mut known = KnownSecrets::new();
    assert!(known.insert(sha2::Sha256::digest(written).into(), "deploy-key"));
    let mut marked = f.clone();
    assert_eq!(known.mark(&mut marked), 1);
    // Redaction still replaces the whole key in the body.
    let r = scanner.redact(body.as_bytes()).expect("redact");
    assert!(r.is_complete());
    let out = String::from_utf8(r.body).expect("utf8");
    assert!(
        out.contains("[REDACTED:private-key]") && !out.contains("PRIVATE KEY-----"),
        "{out}"
    );

    // With no room to decode the second layer, the first layer's match is the finding.
    let shallow = Scanner::with_limits(
        RuleSet::builtin(),
        Limits {
            max_depth: 1,
            ..Limits::default()
        },
    );
    let f = shallow
        .scan(body.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    let keys: Vec<_> = f
        .items
        .iter()
        .filter(|x| &*x.rule == "private-key")
        .collect();
    assert_eq!(keys.len(), 1, "{f:?}");
    assert_eq!(keys[0].layer_name(), "json");

    // A match that no longer matches once its escapes are undone is reported from where
    // it matched.
    let text = "[[rules]]\nid = \"esc\"\nregex = '''esc_[a-z\\\\]{12,}'''\nkeywords = [\"esc_\"]\n";
    let scanner = Scanner::new(RuleSet::from_toml(text, "t.toml").expect("loads"));
    let body = br#"{"note": "esc_abcdef\nghijkl end"}"#;
    let f = scanner.scan(body, ContentEncoding::Identity).expect("scan");
    assert_eq!(f.items.len(), 1, "{f:?}");
    assert_eq!(f.items[0].layer_name(), "raw");
    assert_eq!(&body[f.items[0].span.clone()], br"esc_abcdef\nghijkl");
}

#[test]
fn escaped_json_that_can_hold_nothing_is_not_decoded() {
    // Two tool results as escaped JSON: the first holds only `\"` escapes and no keyword,
    // so its decoded layer could find nothing and is not made; the second holds a value
    // only its decoded layer reads as an assignment. With room for one decoded layer,
    // that one layer goes to the second.
    let filler = "the pipeline owner looked at the nightly report and the billing job ".repeat(5);
    let body = format!(
        r#"{{"messages":[{{"role":"tool","content":"{{\"rows\": 36, \"next\": \"827e0c66-aa62-4394-a651-aa5e55b34de5\"}}"}},{{"role":"user","content":"{filler}"}},{{"role":"tool","content":"{{\"api_key\": \"Zk81pq0xLmQ7rT9vW2yN\"}}"}}]}}"#
    );
    let scanner = Scanner::with_limits(
        RuleSet::builtin(),
        Limits {
            max_layers: 2,
            ..Limits::default()
        },
    );
    let f = scanner
        .scan(body.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    assert_eq!(f.incomplete, None, "{f:?}");
    assert_eq!(f.items.len(), 1, "{f:?}");
    assert_eq!(&*f.items[0].rule, "generic-secret");
    assert_eq!(f.items[0].layer_name(), "json");
    assert_eq!(&body[f.items[0].span.clone()], "Zk81pq0xLmQ7rT9vW2yN");
    // A window with any other escape is decoded: with no room, the scan says so.
    let other = body.replacen(r#"\"rows\""#, r#"\"ro\/ws\""#, 1);
    let f = scanner
        .scan(other.as_bytes(), ContentEncoding::Identity)
        .expect("scan");
    assert_eq!(f.incomplete, Some(Incomplete::DecodeBudget), "{f:?}");
}

#[test]
fn builtin_rules_load_and_every_rule_has_keywords() {
    let set = RuleSet::builtin();
    assert!(set.len() >= 30);
    for r in set.rules() {
        assert!(!r.keywords().is_empty(), "{} has no keywords", r.id());
    }
}

// ---- properties ----

const SHAPES: &[(&str, &str, usize)] = &[
    (
        "ghp_",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        36,
    ),
    ("AKIA", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
    (
        "xoxb-123456789012-",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        24,
    ),
    (
        "sk_live_",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        30,
    ),
    (
        "glpat-",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        20,
    ),
];

fn shaped_secret() -> impl Strategy<Value = String> {
    (0..SHAPES.len(), proptest::collection::vec(any::<u8>(), 40)).prop_filter_map(
        "low entropy",
        |(i, bytes)| {
            let (prefix, alphabet, n) = SHAPES[i];
            let a = alphabet.as_bytes();
            let s: String = prefix
                .chars()
                .chain(
                    bytes
                        .iter()
                        .take(n)
                        .map(|b| a[*b as usize % a.len()] as char),
                )
                .collect();
            let low = s.to_ascii_lowercase();
            (remit_scan::shannon_entropy(s.as_bytes()) > 3.5
                && !["example", "xxxxxx", "dummy", "lorem", "your", "redacted"]
                    .iter()
                    .any(|w| low.contains(w)))
            .then_some(s)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn scanning_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..2048) {
        let scanner = Scanner::builtin();
        let _ = scanner.scan(&body, ContentEncoding::Identity);
        let _ = scanner.scan(&body, ContentEncoding::Gzip);
        let _ = scanner.scan(&body, ContentEncoding::Brotli);
        let _ = scanner.redact(&body);
        let mut sse = SseScanner::new(&scanner, true);
        let cut = cut.min(body.len());
        let _ = sse.push(&body[..cut]);
        let _ = sse.push(&body[cut..]);
        let _ = sse.finish();
    }

    #[test]
    fn redaction_never_leaves_a_detected_secret(
        secret in shaped_secret(),
        prefix in "[a-z {}\":,=\\\\]{0,40}",
        suffix in "[a-z {}\":,]{0,40}",
        escape in any::<bool>(),
    ) {
        let scanner = Scanner::builtin();
        let inner = if escape { format!("{{\\\"v\\\":\\\"{secret}\\\"}}") } else { secret.clone() };
        let body = format!("{prefix} {inner} {suffix}");
        let r = scanner.redact(body.as_bytes()).expect("redact");
        prop_assert!(!r.findings.items.is_empty(), "not detected: {body}");
        let out = String::from_utf8_lossy(&r.body);
        prop_assert!(!out.contains(&secret), "left in: {out}");
        // And the redacted body scans clean of that secret.
        let again = scanner.scan(&r.body, ContentEncoding::Identity).expect("scan");
        let fp = remit_scan::Fingerprint::of(secret.as_bytes());
        prop_assert!(again.items.iter().all(|f| f.fingerprint != fp));
    }
}
