//! What behaviour detection adds to a decision, beside the bare decision in the same run.
//!
//! Run with `cargo bench -p remit-anomaly --bench observe`. The detectors first learn a
//! quiet week of the simulator's quickstart traffic through the real pipeline; then the
//! next day's requests (a Monday: all four identities) are timed as:
//!
//! - `decide_bare`: `Engine::decide` on prebuilt `RequestFacts`;
//! - `decide_scored_recorded`: `Engine::decide_with_risk` with the detectors' `Scorer`
//!   (assess inside `decide`, risk into `context.risk`), then the observation and
//!   `record_decided` (alerts and baseline update) — everything detection adds;
//! - `assess_record`: the detectors alone on a prebuilt observation.
//!
//! After the criterion groups, a plain table gives p50 and p99 per request from
//! individually timed, interleaved runs of the first two, their p50 difference, and the
//! detectors alone.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use remit_anomaly::sim::{self, Scenario, SimRequest};
use remit_anomaly::{
    Baselines, Detectors, Edge, Observation, Scorer, Settings, UnixSeconds, record_decided,
};
use remit_core::RequestFacts;
use remit_engine::{Decided, Engine};
use time::OffsetDateTime;

struct Prepared {
    facts: RequestFacts,
    edge: Edge<'static>,
    at: u64,
    now: OffsetDateTime,
    decided: Decided,
}

fn prepare(engine: &Engine, r: &'static SimRequest) -> Prepared {
    let auth = format!("Bearer {}", r.key);
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("authorization", auth.as_bytes()),
        ("user-agent", r.user_agent.as_bytes()),
    ];
    if let Some(p) = r.purpose {
        headers.push(("remit-purpose", p.as_bytes()));
    }
    let facts = RequestFacts::parse(
        r.method,
        &r.path,
        headers,
        r.body.as_ref().map(|b| b.as_bytes().to_vec()),
        Some(&r.source_ip.to_string()),
    )
    .expect("simulated requests parse");
    let now = OffsetDateTime::from_unix_timestamp(r.at as i64).expect("in range");
    let decided = engine.decide(&facts, "bench".into(), now).expect("decides");
    Prepared {
        facts,
        edge: Edge {
            source_ip: Some(r.source_ip),
            user_agent: Some(r.user_agent),
            on_behalf_of: r.on_behalf_of,
            chain_depth: r.chain_depth,
        },
        at: r.at,
        now,
        decided,
    }
}

fn scored(engine: &Engine, detectors: &Detectors, state: &mut Baselines, p: &Prepared) -> u8 {
    let scorer = Scorer::new(detectors, state, p.edge, UnixSeconds(p.at));
    let decided = engine
        .decide_with_risk(&p.facts, "bench".into(), p.now, &scorer)
        .expect("decides");
    let assessment = scorer.into_assessment();
    let Some(identity) = decided
        .decision
        .identity
        .as_ref()
        .and_then(|id| engine.config().registry.get(id))
    else {
        return 0;
    };
    let tool = decided.mcp.as_ref().and_then(|m| m.tool.as_deref());
    let Some(obs) = Observation::from_decision(&decided.decision, identity, tool, p.edge, p.now)
    else {
        return 0;
    };
    let (a, alerts) = record_decided(detectors, state, &obs, assessment, decided.decision.verdict);
    black_box(alerts);
    a.risk.get()
}

fn assess_record(
    engine: &Engine,
    detectors: &Detectors,
    state: &mut Baselines,
    p: &Prepared,
) -> u8 {
    let d = &p.decided;
    let Some(identity) = d
        .decision
        .identity
        .as_ref()
        .and_then(|id| engine.config().registry.get(id))
    else {
        return 0;
    };
    let tool = d.mcp.as_ref().and_then(|m| m.tool.as_deref());
    let Some(obs) = Observation::from_decision(&d.decision, identity, tool, p.edge, p.now) else {
        return 0;
    };
    let (a, alerts) = detectors.observe(state, &obs, d.decision.verdict);
    black_box(alerts);
    a.risk.get()
}

fn percentiles(mut xs: Vec<u64>) -> (u64, u64) {
    xs.sort_unstable();
    (xs[xs.len() / 2], xs[xs.len() * 99 / 100])
}

fn main() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/remit.toml");
    let engine = remit_engine::load::load_engine(&config).expect("the quickstart loads");
    let detectors = Detectors::new(Settings::default()).expect("valid");
    let all = sim::generate(&Scenario {
        seed: 9,
        days: 8,
        quiet_days: 8,
        incident: None,
    });
    let split = sim::START + 7 * 86_400;
    let (learn, pool): (Vec<SimRequest>, Vec<SimRequest>) =
        all.into_iter().partition(|r| r.at < split);
    let mut state = Baselines::default();
    sim::run_with(&engine, &detectors, &mut state, &learn).expect("learns");
    let pool: &'static [SimRequest] = Box::leak(pool.into_boxed_slice());
    let prepared: Vec<Prepared> = pool.iter().map(|r| prepare(&engine, r)).collect();
    println!(
        "learned from {} requests; timing a pool of {} (day 8, a Monday)",
        learn.len(),
        prepared.len()
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40);
    let mut g = c.benchmark_group("anomaly");
    let mut i = 0usize;
    g.bench_function("decide_bare", |b| {
        b.iter(|| {
            let p = &prepared[i % prepared.len()];
            i += 1;
            black_box(
                engine
                    .decide(&p.facts, "bench".into(), p.now)
                    .expect("decides"),
            )
        })
    });
    let mut s = state.clone();
    g.bench_function("decide_scored_recorded", |b| {
        b.iter(|| {
            let p = &prepared[i % prepared.len()];
            i += 1;
            black_box(scored(&engine, &detectors, &mut s, p))
        })
    });
    let mut s = state.clone();
    g.bench_function("assess_record", |b| {
        b.iter(|| {
            let p = &prepared[i % prepared.len()];
            i += 1;
            black_box(assess_record(&engine, &detectors, &mut s, p))
        })
    });
    g.finish();
    c.final_summary();

    // Interleaved, individually timed: the bare decision and the scored one on the same
    // request, one after the other, so both see the same machine.
    const ROUNDS: usize = 10;
    let (mut bare, mut with, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    let (mut s1, mut s2) = (state.clone(), state.clone());
    for _ in 0..ROUNDS {
        for p in &prepared {
            let t = Instant::now();
            black_box(
                engine
                    .decide(&p.facts, "bench".into(), p.now)
                    .expect("decides"),
            );
            bare.push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            black_box(scored(&engine, &detectors, &mut s1, p));
            with.push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            black_box(assess_record(&engine, &detectors, &mut s2, p));
            alone.push(t.elapsed().as_nanos() as u64);
        }
    }
    let n = bare.len();
    let (b50, b99) = percentiles(bare);
    let (w50, w99) = percentiles(with);
    let (a50, a99) = percentiles(alone);
    println!("\nper request, {n} interleaved samples each (ns):");
    println!("| loop | p50 | p99 |");
    println!("|---|---:|---:|");
    println!("| Engine::decide (bare) | {b50} | {b99} |");
    println!("| decide_with_risk + observe + record | {w50} | {w99} |");
    println!(
        "| added by detection (p50 difference) | {} | |",
        w50.saturating_sub(b50)
    );
    println!("| detectors alone (assess + record) | {a50} | {a99} |");
    println!(
        "\nmemory: at most {} bytes per tracked identity (baseline heap at most {}, inline {})",
        Baselines::MAX_BYTES_PER_IDENTITY,
        remit_anomaly::IdentityBaseline::MAX_HEAP_BYTES,
        std::mem::size_of::<remit_anomaly::IdentityBaseline>()
    );
}
