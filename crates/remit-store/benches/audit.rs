//! Durable audit records per second: group commit (the default writer) against one
//! fsync per record (the same writer with batches of one), side by side in one run, with
//! the latency each append waits for at that throughput. Also the caller's own cost per
//! record (canonical JSON + enqueue) and the writer's hash-and-chain cost, single-threaded.
//!
//! `cargo bench -p remit-store --bench audit` (`-- --quick` for a short run). Every
//! append is a full decision record, hashed, chained and appended to the replica's
//! segment file, and resolves only after the `fdatasync` that covers it. The SQLite
//! index follows behind; "until indexed" counts the time until it has caught up too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use remit_core::{AuditRecord, RecordSink};
use remit_store::{SqliteStore, StoreOptions};

mod common;
use common::record;

struct Run {
    per_s: f64,
    /// Records per second counting until the index has caught up too (at shutdown).
    indexed_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    /// The process's CPU time per record, every thread, until indexed: a figure that a
    /// loaded machine moves far less than the rates.
    cpu_us: f64,
}

/// `clients` tasks append `total` records between them as fast as they are answered.
async fn run(max_batch: usize, clients: u64, total: u64) -> Run {
    run_with(max_batch, clients, total, remit_store::Durability::Fsync).await
}

async fn run_with(
    max_batch: usize,
    clients: u64,
    total: u64,
    durability: remit_store::Durability,
) -> Run {
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let store = SqliteStore::open_with(
        dir.path(),
        StoreOptions {
            max_batch,
            durability,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let store = Arc::new(store);
    let per_client = (total / clients).max(1);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_client as usize);
                for i in 0..per_client {
                    let t = Instant::now();
                    store.append(record(c * per_client + i)).await.unwrap();
                    lat.push(t.elapsed().as_micros() as u64);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    store.shutdown().await.unwrap();
    let indexed = started.elapsed();
    let cpu = cpu_seconds() - cpu;
    lat.sort_unstable();
    Run {
        per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        indexed_per_s: lat.len() as f64 / indexed.as_secs_f64(),
        p50_us: lat[lat.len() / 2],
        p99_us: lat[lat.len() * 99 / 100],
        cpu_us: cpu * 1e6 / lat.len() as f64,
    }
}

/// This process's CPU time (user + system) so far, in seconds, from `/proc/self/stat`
/// (Linux; 0 elsewhere). Clock ticks are taken as 100 per second.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The index's own cost per entry: `total` records written (without fsync), the index
/// deleted, then rebuilt from the segments when the store opens again, alone in the
/// process. (wall µs, CPU µs) per entry.
async fn rebuild(total: u64) -> (f64, f64) {
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let options = || StoreOptions {
        durability: remit_store::Durability::DangerSurvivesProcessCrashOnly,
        ..StoreOptions::default()
    };
    let store = Arc::new(SqliteStore::open_with(dir.path(), options()).await.unwrap());
    let tasks: Vec<_> = (0..64u64)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..total / 64 {
                    store.append(record(c * (total / 64) + i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    store.shutdown().await.unwrap();
    drop(store);
    for f in ["remit.db", "remit.db-wal", "remit.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let (cpu, t) = (cpu_seconds(), Instant::now());
    let store = SqliteStore::open_with(dir.path(), options()).await.unwrap();
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    store.shutdown().await.unwrap();
    let n = (total / 64 * 64) as f64;
    (wall * 1e6 / n, cpu * 1e6 / n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a smoke run of every path.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let quick = smoke || std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 3 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The caller's share: canonical JSON of one record.
    let n = if smoke { 200 } else { 20_000u64 };
    let records: Vec<AuditRecord> = (0..n).map(record).collect();
    let t = Instant::now();
    let mut bytes = 0usize;
    for r in &records {
        bytes += remit_audit::canonical(r).unwrap().len();
    }
    let canon_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    // The writer's share per record: chain (hash) only.
    let rec = remit_audit::canonical(&record(1)).unwrap();
    let mut chain = remit_audit::Chain::new("replica-1").unwrap();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(chain.append(&rec));
    }
    let chain_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "per record, one thread: canonical JSON {canon_us:.2} µs ({} bytes), chain+hash {chain_us:.2} µs",
        bytes / n as usize
    );

    // The index thread's work per entry, alone: a rebuild from the segments.
    let rebuild_total = if smoke { 1_024 } else { 200_000 };
    let only_rebuild = std::env::args().any(|a| a == "--rebuild-only");
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..rounds {
        let (wall, cpu) = rt.block_on(rebuild(rebuild_total));
        walls.push(wall);
        cpus.push(cpu);
    }
    println!(
        "index rebuilt from the segments: {:.2} µs per entry ({:.2} µs CPU; {rebuild_total} entries, {:.0} entries/s)",
        median(walls.clone()),
        median(cpus),
        1e6 / median(walls)
    );
    if only_rebuild {
        return;
    }

    // Concurrency decides latency at a given throughput (Little's law), so each mode is
    // run at several numbers of requests in flight.
    let group_total = if smoke {
        1_024
    } else if quick {
        60_000
    } else {
        200_000
    };
    let single_total = if smoke {
        64
    } else if quick {
        1_000
    } else {
        4_000
    };
    for clients in [64u64, 128, 192, 256, 1024] {
        let mut group = Vec::new();
        let mut single = Vec::new();
        let mut indexed = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..rounds {
            let g = rt.block_on(run(remit_store::MAX_BATCH, clients, group_total));
            let s = rt.block_on(run(1, clients, single_total));
            group.push((g.per_s, g.p50_us as f64, g.p99_us as f64));
            indexed.push(g.indexed_per_s);
            cpu.push(g.cpu_us);
            single.push((s.per_s, s.p50_us as f64, s.p99_us as f64));
        }
        let m = |v: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| {
            median(v.iter().map(f).collect())
        };
        let (g, s) = (m(&group, |x| x.0), m(&single, |x| x.0));
        println!(
            "{clients:>5} in flight: group commit {g:>8.0} records/s (append p50 {:>6.0} µs, p99 {:>6.0} µs; {:>6.0}/s until indexed; CPU {:.1} µs/record) | one fsync per record {s:>6.0} records/s (p50 {:>7.0} µs, p99 {:>7.0} µs) | {:.1}x",
            m(&group, |x| x.1),
            m(&group, |x| x.2),
            median(indexed),
            median(cpu),
            m(&single, |x| x.1),
            m(&single, |x| x.2),
            g / s
        );
    }
    // Diagnostic, not durable: the same group commit without `fdatasync`, to show what
    // the CPU allows on this machine and so how much of the rate the disk's sync takes.
    let mut nosync = Vec::new();
    for _ in 0..rounds {
        let r = rt.block_on(run_with(
            remit_store::MAX_BATCH,
            256,
            group_total,
            remit_store::Durability::DangerSurvivesProcessCrashOnly,
        ));
        nosync.push((r.per_s, r.p50_us as f64, r.indexed_per_s, r.cpu_us));
    }
    let m = |f: fn(&(f64, f64, f64, f64)) -> f64| median(nosync.iter().map(f).collect());
    println!(
        "  256 in flight, without fdatasync (diagnostic, not durable): {:>8.0} records/s (append p50 {:>6.0} µs; {:>6.0}/s until indexed; CPU {:.1} µs/record)",
        m(|x| x.0),
        m(|x| x.1),
        m(|x| x.2),
        m(|x| x.3)
    );
}
