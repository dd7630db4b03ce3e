//! Criterion benchmark: scanning 4 KB JSON bodies (chat completions, half with one secret
//! in raw, JSON-escaped, base64 or tool-output form) with the built-in rules and all
//! decoding layers, reported as throughput (MB/s) per core.
//!
//! ```sh
//! cargo bench -p remit-scan --bench scan
//! ```

use std::path::PathBuf;

use criterion::{Criterion, Throughput};
use remit_scan::{ContentEncoding, Scanner};

fn bodies() -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bench4k.jsonl");
    let text = std::fs::read_to_string(path).expect("bench4k.jsonl");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["body"].as_str().expect("body").as_bytes().to_vec()
        })
        .collect()
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4))
        .configure_from_args();
    let scanner = Scanner::builtin();
    let bodies = bodies();
    let total: usize = bodies.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("builtin rules, 400 x 4 KB JSON bodies", |b| {
        b.iter(|| {
            for body in &bodies {
                std::hint::black_box(
                    scanner
                        .scan(std::hint::black_box(body), ContentEncoding::Identity)
                        .ok(),
                );
            }
        });
    });
    let one = bodies[1].clone();
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("builtin rules, one 4 KB body without a secret", |b| {
        b.iter(|| {
            std::hint::black_box(
                scanner
                    .scan(std::hint::black_box(&one), ContentEncoding::Identity)
                    .ok(),
            )
        });
    });
    g.finish();
    c.final_summary();
}
