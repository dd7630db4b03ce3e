//! Scans every `bench4k.jsonl` body ROUNDS times and nothing else: a steady loop for
//! profilers (`perf record`, `valgrind --tool=callgrind`; a run of N rounds minus a run of
//! fewer gives the per-round cost without the loading).
//!
//! ```sh
//! cargo build --release -p remit-scan --example scan_loop
//! valgrind --tool=callgrind target/release/examples/scan_loop 6
//! ```

use std::path::PathBuf;

use remit_scan::{ContentEncoding, Scanner};
use serde_json::Value;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bench4k.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bodies: Vec<Vec<u8>> = text
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("JSON line");
            v["body"].as_str().expect("body").as_bytes().to_vec()
        })
        // FILTER=text keeps only the bodies holding it (to profile one kind of body).
        .filter(|b: &Vec<u8>| {
            std::env::var("FILTER").map_or(true, |f| String::from_utf8_lossy(b).contains(&f))
        })
        .collect();
    let scanner = Scanner::builtin();
    let mut findings = 0usize;
    for _ in 0..rounds {
        for b in &bodies {
            let f = scanner
                .scan(std::hint::black_box(b), ContentEncoding::Identity)
                .expect("scan");
            findings += f.items.len();
        }
    }
    println!(
        "{findings} findings in {rounds} rounds of {} bodies",
        bodies.len()
    );
}
