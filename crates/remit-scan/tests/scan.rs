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
