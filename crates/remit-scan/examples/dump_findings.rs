//! Prints, body by body, everything a scan reports for the labelled corpora (findings with
//! rule, span, layers, exactness and fingerprint; whether the scan is incomplete; and the
//! redacted body's digest), so that two builds can be compared with `diff`: a change meant
//! only to make the scanner faster must leave this output as it was.
//!
//! ```sh
//! cargo run --release -p remit-scan --example dump_findings > findings.txt
//! ```

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use remit_scan::{ContentEncoding, Scanner, SseScanner};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn main() {
    let scanner = Scanner::builtin();
    for file in ["bench4k.jsonl", "corpus.jsonl"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (n, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line).expect("JSON line");
            let body = match (v.get("body"), v.get("body_b64")) {
                (Some(Value::String(s)), _) => s.as_bytes().to_vec(),
                (_, Some(Value::String(b))) => STANDARD.decode(b).expect("body_b64"),
                _ => panic!("line without body"),
            };
            let encoding =
                ContentEncoding::parse(v["encoding"].as_str().unwrap_or("")).expect("encoding");
            println!("== {file}:{n} {}", v["name"]);
            if let Some(sizes) = v.get("chunks").and_then(Value::as_array) {
                let mut sse = SseScanner::new(&scanner, true);
                let mut at = 0;
                for size in sizes.iter().filter_map(Value::as_u64) {
                    let size = size as usize;
                    let out = sse.push(&body[at..at + size]).expect("push");
                    println!(
                        "  push {:?} {} {:x}",
                        out.findings,
                        out.unredacted,
                        Sha256::digest(&out.forward)
                    );
                    at += size;
                }
                let out = sse.finish().expect("finish");
                println!(
                    "  finish {:?} {} {:x}",
                    out.findings,
                    out.unredacted,
                    Sha256::digest(&out.forward)
                );
                continue;
            }
            match scanner.scan(&body, encoding) {
                Ok(f) => println!("  scan {f:?}"),
                Err(e) => println!("  scan error {e}"),
            }
            if encoding == ContentEncoding::Identity {
                match scanner.redact(&body) {
                    Ok(r) => println!("  redact {} {:x}", r.unredacted, Sha256::digest(&r.body)),
                    Err(e) => println!("  redact error {e}"),
                }
            }
        }
    }
}
