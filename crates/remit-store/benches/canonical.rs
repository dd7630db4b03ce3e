//! The record's canonical JSON (RFC 8785), which the proxy writes twice per allowed request
//! (the decision and the outcome): remit's writer, straight from the structs, beside the
//! JCS crate `serde_json_canonicalizer` (through `serde_json::Value`) and, as the floor,
//! `serde_json::to_vec` (not canonical: members in declaration order), on the same records
//! in one run.
//!
//! `cargo bench -p remit-store --bench canonical`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

mod common;

fn writers(c: &mut Criterion) {
    let mut g = c.benchmark_group("canonical");
    for (name, record) in [
        ("decision", common::record(7)),
        ("outcome", common::outcome(7)),
    ] {
        // The three agree on what they write, up to member order for the floor.
        let ours = remit_audit::canonical(&record).unwrap();
        assert_eq!(ours, serde_json_canonicalizer::to_vec(&record).unwrap());
        g.bench_with_input(BenchmarkId::new("remit", name), &record, |b, r| {
            b.iter(|| remit_audit::canonical(black_box(r)).unwrap());
        });
        g.bench_with_input(
            BenchmarkId::new("serde_json_canonicalizer", name),
            &record,
            |b, r| b.iter(|| serde_json_canonicalizer::to_vec(black_box(r)).unwrap()),
        );
        g.bench_with_input(
            BenchmarkId::new("serde_json (not canonical)", name),
            &record,
            |b, r| {
                b.iter(|| serde_json::to_vec(black_box(r)).unwrap());
            },
        );
    }
    g.finish();
}

criterion_group!(benches, writers);
criterion_main!(benches);
