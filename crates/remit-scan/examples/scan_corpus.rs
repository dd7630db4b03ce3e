//! Scans the labelled corpora with the built-in rules and prints throughput and recall:
//! `bench4k.jsonl` (400 chat-completion bodies of about 4 KB, half with one secret) for
//! MB/s on one core (median round) and per-body latency (p50, p99 of bodies timed one by
//! one), and `corpus.jsonl` for recall over every wrapper. `bench/scan.sh`
//! runs it beside detect-secrets.
//!
//! ```sh
//! cargo run --release -p remit-scan --example scan_corpus [-- ROUNDS]
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use remit_scan::{ContentEncoding, Scanner, SseScanner};
use serde_json::Value;

struct Case {
    body: Vec<u8>,
    encoding: ContentEncoding,
    chunks: Option<Vec<usize>>,
    expect: BTreeSet<String>,
}

fn load(file: &str) -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("JSON line");
            let body = match (v.get("body"), v.get("body_b64")) {
                (Some(Value::String(s)), _) => s.as_bytes().to_vec(),
                (_, Some(Value::String(b))) => STANDARD.decode(b).expect("body_b64"),
                _ => panic!("line without body"),
            };
            Case {
                body,
                encoding: ContentEncoding::parse(v["encoding"].as_str().unwrap_or(""))
                    .expect("encoding"),
                chunks: v.get("chunks").and_then(Value::as_array).map(|a| {
                    a.iter()
                        .filter_map(Value::as_u64)
                        .map(|n| n as usize)
                        .collect()
                }),
                expect: v["expect"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn found(scanner: &Scanner, case: &Case) -> BTreeSet<String> {
    let findings = match &case.chunks {
        Some(sizes) => {
            let mut sse = SseScanner::new(scanner, false);
            let mut items = Vec::new();
            let mut at = 0;
            for n in sizes {
                items.extend(
                    sse.push(&case.body[at..at + n])
                        .expect("push")
                        .findings
                        .items,
                );
                at += n;
            }
            items.extend(sse.finish().expect("finish").findings.items);
            items
        }
        None => scanner.scan(&case.body, case.encoding).expect("scan").items,
    };
    findings.iter().map(|f| f.rule.to_string()).collect()
}

/// (bodies with a secret detected, bodies with a secret, bodies without one flagged)
fn recall(scanner: &Scanner, cases: &[Case]) -> (usize, usize, usize) {
    let (mut hit, mut pos, mut fp) = (0, 0, 0);
    for c in cases {
        let f = found(scanner, c);
        if c.expect.is_empty() {
            fp += usize::from(!f.is_empty());
        } else {
            pos += 1;
            hit += usize::from(c.expect.iter().all(|id| f.contains(id)));
        }
    }
    (hit, pos, fp)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let scanner = Scanner::builtin();
    let bench = load("bench4k.jsonl");
    let corpus = load("corpus.jsonl");
    let bytes: usize = bench.iter().map(|c| c.body.len()).sum();

    // Throughput: each round scans all bench bodies; the median round is reported.
    for c in &bench {
        std::hint::black_box(scanner.scan(&c.body, c.encoding).expect("scan"));
    }
    let mut rates = Vec::with_capacity(rounds);
    let mut per_body_us = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        for c in &bench {
            std::hint::black_box(
                scanner
                    .scan(std::hint::black_box(&c.body), c.encoding)
                    .expect("scan"),
            );
        }
        let s = t.elapsed().as_secs_f64();
        rates.push(bytes as f64 / s / 1e6);
        per_body_us.push(s * 1e6 / bench.len() as f64);
    }
    rates.sort_by(f64::total_cmp);
    per_body_us.sort_by(f64::total_cmp);
    let mbps = rates[rates.len() / 2];
    let us = per_body_us[per_body_us.len() / 2];
    // Latency: every body timed on its own, over a few rounds.
    let mut each: Vec<f64> = Vec::with_capacity(bench.len() * 5);
    for _ in 0..5 {
        for c in &bench {
            let t = Instant::now();
            std::hint::black_box(
                scanner
                    .scan(std::hint::black_box(&c.body), c.encoding)
                    .expect("scan"),
            );
            each.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    each.sort_by(f64::total_cmp);
    let p50 = each[each.len() / 2];
    let p99 = each[each.len() * 99 / 100];

    let (bh, bp, bfp) = recall(&scanner, &bench);
    let (ch, cp, cfp) = recall(&scanner, &corpus);
    println!(
        "remit-scan bench4k: bodies={} bytes={} mean_body={} MB/s={mbps:.1} us/body={us:.2} p50_us={p50:.2} p99_us={p99:.2} recall={:.4} ({bh}/{bp}) false_positive_bodies={bfp}",
        bench.len(),
        bytes,
        bytes / bench.len(),
        bh as f64 / bp as f64
    );
    println!(
        "remit-scan corpus: bodies={} recall={:.4} ({ch}/{cp}) false_positive_bodies={cfp}",
        corpus.len(),
        ch as f64 / cp as f64
    );
}
