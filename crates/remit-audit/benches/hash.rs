//! The audit log's hashing, side by side with its peer: an entry's RFC 9162 leaf hash as
//! remit computes it (aws-lc-rs) against the `sha2` crate on the same bytes, for entries of
//! the sizes the proxy writes (a decision record is ~700 bytes, an outcome ~400).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

fn hashes(c: &mut Criterion) {
    let mut g = c.benchmark_group("leaf_hash");
    for size in [400usize, 700, 4096] {
        let entry: Vec<u8> = (0..size)
            .map(|i| b"{\"a\":\"0123456789\"}"[i % 18])
            .collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("remit (aws-lc-rs)", size),
            &entry,
            |b, e| b.iter(|| remit_audit::merkle::leaf_hash(std::hint::black_box(e))),
        );
        g.bench_with_input(BenchmarkId::new("sha2 crate", size), &entry, |b, e| {
            b.iter(|| {
                let mut h = Sha256::new();
                h.update([0x00]);
                h.update(std::hint::black_box(e));
                let out: [u8; 32] = h.finalize().into();
                out
            })
        });
    }
    g.finish();
}

criterion_group!(benches, hashes);
criterion_main!(benches);
