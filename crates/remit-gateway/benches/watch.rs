//! What the behaviour watch adds to a decision in the gateway's path: `watch::begin` (score
//! under the baselines' read lock, `Engine::begin_with_risk`) and `watch::finish` (learn
//! under the write lock, alerts into the record) against the same path without a watch, on
//! the quickstart world with every identity watched, and a sink that acknowledges at once
//! (so the store's fsync is not in the figure). Each decision is timed on its own; the two
//! variants alternate in rounds. `cargo bench -p remit-gateway --bench watch [-- DECISIONS]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use remit_core::decision::SinkFuture;
use remit_core::{AuditRecord, RecordSink, RequestFacts};
use remit_engine::Engine;
use remit_gateway::watch::{self, Watch};

/// Most decisions timed per variant (a bound on the loop).
const MAX_DECISIONS: usize = 1_000_000;
/// Rounds the variants alternate in.
const ROUNDS: usize = 10;

struct AckSink;

impl RecordSink for AckSink {
    fn append(&self, _: AuditRecord) -> SinkFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// A mix of the quickstart's identities from their usual networks and clients.
fn requests() -> Vec<RequestFacts> {
    let mut out = Vec::new();
    for i in 0..64u32 {
        let (key, purpose, path) = match i % 3 {
            0 => (
                "rk_demo_support_assistant",
                "case-summary",
                format!("/tickets/{i}"),
            ),
            1 => (
                "rk_demo_codegen_workflow",
                "code-change",
                format!("/repos/web/builds/{i}"),
            ),
            _ => (
                "rk_demo_support_assistant",
                "case-summary",
                format!("/tickets/{i}/history"),
            ),
        };
        let auth = format!("Bearer {key}");
        let headers: Vec<(&str, &[u8])> = vec![
            ("authorization", auth.as_bytes()),
            ("remit-purpose", purpose.as_bytes()),
            ("user-agent", b"bench-client/1.0"),
        ];
        let ip = format!("10.0.{}.7", i % 2);
        out.push(RequestFacts::parse("GET", &path, headers, None, Some(&ip)).unwrap());
    }
    out
}

fn world(dir: &Path) -> Engine {
    let q = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let mut text = std::fs::read_to_string(q.join("remit.toml")).unwrap();
    text.push_str("\n[anomaly]\nlearning_requests = 50\nlearning_duration_s = 0\n");
    std::fs::write(dir.join("remit.toml"), text).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::copy(
        q.join("policies/quickstart.cedar"),
        dir.join("policies/q.cedar"),
    )
    .unwrap();
    remit_engine::load::load_engine(&dir.join("remit.toml")).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000)
        .min(MAX_DECISIONS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(world(dir.path()));
    let store = rt
        .block_on(remit_store::SqliteStore::open(&dir.path().join("data")))
        .unwrap();
    let w = rt.block_on(Watch::start(engine.clone(), &store)).unwrap();
    let reqs = requests();
    let sink = AckSink;
    let one = |watch: Option<&Arc<Watch>>, facts: &RequestFacts, i: usize| {
        let started = Instant::now();
        rt.block_on(async {
            let (pending, watching) =
                watch::begin(&engine, watch, facts, format!("b-{i}")).unwrap();
            watch::finish(&engine, pending, watching, facts, &sink, false).await
        });
        started.elapsed()
    };
    // Learn first, so every identity is watched while timed.
    for (i, f) in reqs.iter().cycle().take(2_000).enumerate() {
        one(Some(&w), f, i);
    }
    let (mut with, mut without) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let per_round = (n / ROUNDS).max(1);
    for round in 0..ROUNDS {
        for i in 0..per_round {
            let f = &reqs[(round * per_round + i) % reqs.len()];
            without.push(one(None, f, i));
            with.push(one(Some(&w), f, i));
        }
    }
    with.sort();
    without.sort();
    let (w50, w99) = (percentile(&with, 0.5), percentile(&with, 0.99));
    let (o50, o99) = (percentile(&without, 0.5), percentile(&without, 0.99));
    println!("decisions per variant: {}", with.len());
    println!("without the watch: p50 {o50:.2} µs, p99 {o99:.2} µs");
    println!("with the watch:    p50 {w50:.2} µs, p99 {w99:.2} µs");
    println!("added by the watch: p50 {:.2} µs", w50 - o50);
    println!("identities tracked: {}", w.tracked());
}
