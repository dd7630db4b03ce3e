//! The cost of a rate check: remit's `RateCaps::check` (finding the identity's limiter
//! among the obligations and checking it) against a bare `governor` limiter with the same
//! quota, checked directly, side by side in one run. The quota is large enough that no
//! check is refused. `cargo bench -p remit-engine --bench rate`.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use remit_core::{Obligation, Rate};
use remit_engine::rate::{RateCaps, quota};

const CONFIG: &str = r#"
[[route]]
method = "GET"
path = "/items/{id}"
action = "items.read"
resource = "Item::{id}"

[[identity]]
id = "bot"
kind = "integration"
owner = "team"
purposes = ["sync"]
boundary = ["items.read"]
limits = { rate = "1000000000/s" }
"#;

fn bench(c: &mut Criterion) {
    let config = remit_core::Config::parse(CONFIG, "bench.toml").unwrap();
    let rate = Rate::parse("1000000000/s").unwrap();
    let caps = RateCaps::new(&config.registry);
    let id = remit_core::IdentityId::parse("bot").unwrap();
    let action = remit_core::ActionName::parse("items.read").unwrap();
    let obligations = [
        Obligation::LogOutput,
        Obligation::Rate {
            rate,
            source: "identity".into(),
        },
    ];
    let bare = governor::RateLimiter::direct(quota(rate));
    let mut g = c.benchmark_group("rate_check");
    g.bench_function("governor_direct", |b| b.iter(|| bare.check().is_ok()));
    g.bench_function("remit_rate_caps", |b| {
        b.iter(|| caps.check(Some(&id), None, &action, &obligations).is_none())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
