//! The cost of a rate check, side by side in one run with bare `governor` on the same key
//! and quota: remit's `RateCaps::check` (walking the decision's obligations to the
//! identity's cap, found at the identity's registry slot, and checking it) against
//! `governor` keyed by the identity's id (what a gateway keeping one limiter per identity
//! without remit does: `check_key`), and against one `governor` direct limiter (no key at
//! all: the floor). A second pair adds the class budget behind the identity's cap. The
//! quota is large enough that no check is refused. `cargo bench -p remit-engine --bench rate`.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use remit_core::{Class, Obligation, Rate};
use remit_engine::rate::{RateCaps, Who, quota};

const CONFIG: &str = r#"
[budgets]
automation = "1000000000/s"

[[route]]
method = "GET"
path = "/items/{id}"
action = "items.read"
resource = "Item::{id}"

[[identity]]
id = "other"
kind = "integration"
owner = "team"
purposes = ["sync"]
boundary = ["items.read"]
limits = { rate = "1000000000/s" }

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
    let caps = RateCaps::new(&config.registry, &config.budgets);
    let id = remit_core::IdentityId::parse("bot").unwrap();
    let slot = config.registry.slot_of(config.registry.get(&id).unwrap());
    let who = Who {
        slot,
        identity: Some(&id),
        class: Class::Automation,
    };
    let action = remit_core::ActionName::parse("items.read").unwrap();
    let identity_cap = Obligation::Rate {
        rate,
        source: "identity".into(),
    };
    let class_cap = Obligation::Rate {
        rate,
        source: "class".into(),
    };
    let one = [Obligation::LogOutput, identity_cap.clone()];
    let two = [Obligation::LogOutput, identity_cap, class_cap];
    let direct = governor::RateLimiter::direct(quota(rate));
    let keyed = governor::RateLimiter::<String, _, _>::keyed(quota(rate));
    let class_direct = governor::RateLimiter::direct(quota(rate));

    let mut g = c.benchmark_group("rate_check");
    g.bench_function("governor_keyed_same_key", |b| {
        b.iter(|| keyed.check_key(&id.as_str().to_owned()).is_ok())
    });
    g.bench_function("governor_direct", |b| b.iter(|| direct.check().is_ok()));
    g.bench_function("remit_rate_caps", |b| {
        b.iter(|| caps.check(who, None, &action, &one).is_none())
    });
    g.finish();

    let mut g = c.benchmark_group("rate_check_with_class_budget");
    g.bench_function("governor_keyed_then_direct", |b| {
        b.iter(|| keyed.check_key(&id.as_str().to_owned()).is_ok() && class_direct.check().is_ok())
    });
    g.bench_function("remit_rate_caps", |b| {
        b.iter(|| caps.check(who, None, &action, &two).is_none())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
