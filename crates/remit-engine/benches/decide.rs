//! The decision pipeline against its peers, on a synthetic world of 1,000 identities and
//! 200 policies (plus remit's three-policy baseline pack).
//!
//! Run with `cargo bench -p remit-engine --bench decide`. Criterion measures five loops that
//! rotate through a pool of 1,000 pre-generated random requests:
//!
//! - `pipeline`: `Engine::decide` (authenticate, classify, sliced Cedar decision) on
//!   prebuilt `RequestFacts`, with the decision cache off (`decision_cache_bytes = 0`), so
//!   Cedar runs for every request;
//! - `pipeline_cached`: the same with the decision cache on, every request a repeat (the
//!   pool was decided once before), as when a job calls the same thing again;
//! - `pipeline+parse`: the same, parsing the request's method, path and headers first;
//! - `cedar_full_set`: bare `cedar-policy` `Authorizer::is_authorized` over all 203
//!   policies, with a prebuilt `Request` and entities;
//! - `regorus_interpreter`: `set_input` + `eval_rule` on the equivalent Rego;
//! - `regorus_rvm`: `set_input` + `execute` on the same Rego compiled for regorus' VM.
//!
//! Before timing, every evaluator (and a plain-Rust oracle) must agree on 3,000 random
//! requests. After the criterion groups, a plain table gives p50 and p99 per decision from
//! 20,000 individually timed decisions per evaluator.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use remit_core::{
    ActionName, AuthorityKind, Class, IdentityId, Principal, Purpose, RequestFacts, ResourceRef,
    ResourceType, Verdict,
};
use remit_engine::Engine;
use remit_policy::PolicyInput;
use support::{Peers, SynthRequest, World};
use time::OffsetDateTime;

/// Requests the timed loops rotate through.
const POOL: usize = 1_000;
/// Requests every evaluator must agree on before anything is timed.
const AGREE: usize = 3_000;
/// Individually timed decisions per evaluator in the percentile table.
const TIMED: usize = 20_000;
/// Untimed decisions before those.
const WARM_UP: usize = 2_000;

/// One request, prepared for every evaluator.
struct Prepared {
    synth: SynthRequest,
    headers: Vec<(&'static str, String)>,
    facts: RequestFacts,
    cedar: cedar_policy::Request,
    rego: regorus::Value,
    policy: PolicyParts,
}

/// The policy layer's input, owned (for the breakdown rows of the table).
struct PolicyParts {
    principal: Principal,
    action: ActionName,
    resource: ResourceRef,
    class: Class,
    authority: AuthorityKind,
    purpose: Option<Purpose>,
    sensitive: bool,
    method: String,
    path: String,
    params: Vec<(String, String)>,
}

impl PolicyParts {
    fn new(world: &World, r: &SynthRequest) -> Self {
        let def = r.route();
        let (principal, class, authority) = match r.identity {
            Some(n) => (
                Principal::Identity(
                    IdentityId::parse(&world.identities[n].id).expect("identity id"),
                ),
                match world.identities[n].class() {
                    "automation" => Class::Automation,
                    "assistant" => Class::Assistant,
                    _ => Class::Agent,
                },
                AuthorityKind::Own,
            ),
            None => (
                Principal::Unclassified,
                Class::Unclassified,
                AuthorityKind::None,
            ),
        };
        Self {
            principal,
            action: ActionName::parse(def.action).expect("action"),
            resource: ResourceRef {
                rtype: ResourceType::parse(def.rtype).expect("resource type"),
                id: r.resource_id.clone(),
            },
            class,
            authority,
            purpose: r.purpose.map(|p| Purpose::parse(p).expect("purpose")),
            sensitive: def.sensitive,
            method: def.method.to_owned(),
            path: r.path.clone(),
            params: r.params.clone(),
        }
    }

    fn input(&self) -> PolicyInput<'_> {
        PolicyInput {
            principal: &self.principal,
            action: &self.action,
            resource: &self.resource,
            class: self.class,
            authority: self.authority,
            purpose: self.purpose.as_ref(),
            sensitive: self.sensitive,
            method: &self.method,
            path: &self.path,
            source_ip: None,
            params: &self.params,
            mcp_method: None,
            mcp_tool: None,
            mcp_name: None,
            arguments: &[],
            risk: 0,
            chain_depth: 0,
            credential_exposed: false,
            secrets: &[],
            approved: false,
        }
    }
}

fn parse(p: &Prepared) -> RequestFacts {
    RequestFacts::parse(
        p.synth.route().method,
        &p.synth.path,
        p.headers.iter().map(|(k, v)| (*k, v.as_bytes())),
        None,
        None,
    )
    .expect("synthetic requests parse")
}

fn pipeline(engine: &Engine, facts: &RequestFacts, now: OffsetDateTime) -> bool {
    engine
        .decide(facts, String::new(), now)
        .expect("synthetic requests are well formed")
        .decision
        .verdict
        == Verdict::Allow
}

/// Asserts that every evaluator agrees on `requests`; returns (allowed, denied).
fn agree(
    world: &World,
    engine: &Engine,
    peers: &mut Peers,
    requests: &[SynthRequest],
    now: OffsetDateTime,
) -> (usize, usize) {
    let (mut allow, mut deny) = (0, 0);
    for (i, r) in requests.iter().enumerate() {
        let remit = pipeline(engine, &r.facts(), now);
        let cedar = peers.cedar(&world.cedar_request(r));
        let input = regorus::Value::from(world.rego_input(r));
        let interpreted = peers.interpret(input.clone());
        let vm = peers.rvm(input);
        let oracle = world.expected(r);
        assert!(
            [cedar, interpreted, vm, oracle].iter().all(|v| *v == remit),
            "request {i} {r:?}: pipeline {remit}, cedar {cedar}, rego {interpreted}, rvm {vm}, oracle {oracle}"
        );
        if remit {
            allow += 1;
        } else {
            deny += 1;
        }
    }
    (allow, deny)
}

/// `TIMED` individually timed calls of `f`, rotating through the pool, in nanoseconds
/// (call `i` used `pool[i % pool.len()]`).
fn time_each(pool: &[Prepared], mut f: impl FnMut(&Prepared) -> bool) -> Vec<u64> {
    for i in 0..WARM_UP {
        black_box(f(&pool[i % pool.len()]));
    }
    let mut ns: Vec<u64> = Vec::with_capacity(TIMED);
    for i in 0..TIMED {
        let p = &pool[i % pool.len()];
        let t = Instant::now();
        black_box(f(p));
        ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    ns
}

/// p50, p99 and mean, in nanoseconds.
fn summary(mut ns: Vec<u64>) -> (u64, u64, u64) {
    let mean = ns.iter().sum::<u64>() / ns.len().max(1) as u64;
    ns.sort_unstable();
    (ns[ns.len() / 2], ns[ns.len() * 99 / 100], mean)
}

fn percentiles(pool: &[Prepared], f: impl FnMut(&Prepared) -> bool) -> (u64, u64, u64) {
    summary(time_each(pool, f))
}

fn us(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1000.0)
}

fn main() {
    // The table runs under `cargo bench`, not under `cargo test --benches` (criterion's
    // test mode) nor with criterion's `--profile-time` (for profilers).
    let args: Vec<String> = std::env::args().collect();
    let bench_mode =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--profile-time");
    let world = World::generate(7);
    let started = Instant::now();
    let engine = world.engine_uncached();
    let engine_load = started.elapsed();
    let cached = world.engine();
    let started = Instant::now();
    let mut peers = Peers::new(&world);
    let peers_load = started.elapsed();
    let now = OffsetDateTime::now_utc();
    let requests = world.requests(2024, AGREE);
    let (allow, deny) = agree(&world, &engine, &mut peers, &requests, now);
    eprintln!(
        "world: {} identities, {} policies ({} with the baseline pack), {} actions; \
         remit loads in {:.0?}, the peers in {:.0?}",
        world.identities.len(),
        world.policies.len(),
        engine.policy().len(),
        world.actions().len(),
        engine_load,
        peers_load,
    );
    eprintln!(
        "agreement: all evaluators agree on {AGREE} random requests ({allow} allowed, {deny} denied)"
    );
    let pool: Vec<Prepared> = requests
        .into_iter()
        .take(POOL)
        .map(|r| Prepared {
            headers: r.headers(),
            facts: r.facts(),
            cedar: world.cedar_request(&r),
            rego: regorus::Value::from(world.rego_input(&r)),
            policy: PolicyParts::new(&world, &r),
            synth: r,
        })
        .collect();

    let slice_sizes: Vec<usize> = pool.iter().map(|p| world.slice_size(&p.synth)).collect();
    eprintln!(
        "slices: remit evaluates {:.1} policies per request on average (max {}), bare Cedar {}",
        slice_sizes.iter().sum::<usize>() as f64 / POOL as f64,
        slice_sizes.iter().max().copied().unwrap_or(0),
        engine.policy().len()
    );

    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .without_plots()
        .configure_from_args();
    {
        let mut g = c.benchmark_group("decide");
        g.bench_function("pipeline", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % POOL;
                pipeline(&engine, &pool[i].facts, now)
            });
        });
        for p in &pool {
            pipeline(&cached, &p.facts, now);
        }
        g.bench_function("pipeline_cached", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % POOL;
                pipeline(&cached, &pool[i].facts, now)
            });
        });
        g.bench_function("pipeline+parse", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % POOL;
                pipeline(&engine, &parse(&pool[i]), now)
            });
        });
        g.bench_function("cedar_full_set", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % POOL;
                peers.cedar(&pool[i].cedar)
            });
        });
        g.bench_function("regorus_interpreter", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % POOL;
                peers.interpret(pool[i].rego.clone())
            });
        });
        g.bench_function("regorus_rvm", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % POOL;
                peers.rvm(pool[i].rego.clone())
            });
        });
        g.finish();
    }
    c.final_summary();
    if !bench_mode {
        return;
    }

    let remit_ns = time_each(&pool, |p| pipeline(&engine, &p.facts, now));
    let rows: Vec<(&str, (u64, u64, u64))> = vec![
        ("remit pipeline (Engine::decide)", summary(remit_ns.clone())),
        (
            "remit pipeline, decision cache on, a repeat",
            percentiles(&pool, |p| pipeline(&cached, &p.facts, now)),
        ),
        (
            "remit pipeline + RequestFacts::parse",
            percentiles(&pool, |p| pipeline(&engine, &parse(p), now)),
        ),
        (
            "bare cedar-policy, full set (203)",
            percentiles(&pool, |p| peers.cedar(&p.cedar)),
        ),
        (
            "regorus interpreter",
            percentiles(&pool, |p| peers.interpret(p.rego.clone())),
        ),
        (
            "regorus RVM",
            percentiles(&pool, |p| peers.rvm(p.rego.clone())),
        ),
    ];
    let breakdown: Vec<(&str, (u64, u64, u64))> = vec![
        (
            "policy layer only, sliced (evaluate_uncached)",
            percentiles(&pool, |p| {
                engine.policy().evaluate_uncached(&p.policy.input()).verdict
                    == remit_policy::PolicyVerdict::Allow
            }),
        ),
        (
            "policy layer only, unsliced",
            percentiles(&pool, |p| {
                engine.policy().evaluate_unsliced(&p.policy.input()).verdict
                    == remit_policy::PolicyVerdict::Allow
            }),
        ),
        (
            "bare cedar, full set, building the Request",
            percentiles(&pool, |p| peers.cedar(&world.cedar_request(&p.synth))),
        ),
    ];
    println!();
    println!(
        "per decision, {TIMED} individually timed decisions each (after {WARM_UP} warm-up), µs:"
    );
    println!("| evaluator | p50 | p99 | mean |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, (p50, p99, mean)) in rows.iter().chain(&breakdown) {
        println!("| {name} | {} | {} | {} |", us(*p50), us(*p99), us(*mean));
    }
    // How the pipeline's time follows the size of the slice Cedar evaluates.
    let mut by_size: std::collections::BTreeMap<usize, Vec<u64>> = Default::default();
    for (i, ns) in remit_ns.iter().enumerate() {
        by_size.entry(slice_sizes[i % POOL]).or_default().push(*ns);
    }
    println!();
    println!("remit pipeline by slice size (policies Cedar evaluates, baseline included):");
    println!("| slice size | share of requests | p50 µs | p99 µs |");
    println!("| ---: | ---: | ---: | ---: |");
    for (size, ns) in by_size {
        let share = 100.0 * ns.len() as f64 / TIMED as f64;
        let (p50, p99, _) = summary(ns);
        println!("| {size} | {share:.1}% | {} | {} |", us(p50), us(p99));
    }
    let (remit50, remit99, _) = rows[0].1;
    println!();
    println!("| peer | peer p50 / pipeline p50 | peer p99 / pipeline p99 |");
    println!("| --- | ---: | ---: |");
    for (name, (p50, p99, _)) in &rows[2..] {
        println!(
            "| {name} | {:.2}x | {:.2}x |",
            *p50 as f64 / remit50 as f64,
            *p99 as f64 / remit99 as f64
        );
    }
    println!();
    println!(
        "budget: pipeline p50 {} µs (budget 15 µs): {}",
        us(remit50),
        if remit50 <= 15_000 { "met" } else { "NOT met" }
    );
}
