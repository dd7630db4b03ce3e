//! Does a batch job flooding its budget delay an assistant? Five phases in one run, on
//! loopback, through remit's real proxy (API key, Cedar decision, a durable record per
//! request in a SQLite data directory) to one upstream that serves 4 requests at a time
//! with 2 ms of work each (so it has room for ~2,000 requests/s, and no more):
//!
//! 1. **alone** — the assistant makes its calls one after another, nothing else runs;
//! 2. **4× flood, class budgets** — a batch job (`automation`) sends 2,000 requests/s, four
//!    times its class's `[budgets] automation = { rate = "500/s", in_flight = 2 }` (2 of
//!    the upstream's 4 slots at most);
//! 3. **4× flood, no budgets** — the same with no class budget, the identity's own cap as
//!    loose as a batch job's usually is;
//! 4. **unbounded flood, class budgets** — 32 connections, each sending again as soon as it
//!    is answered (the flood takes whatever the gateway can answer);
//! 5. **unbounded flood, no budgets**.
//!
//! For each phase: the assistant's median and 99th-percentile latency and how many of its
//! calls were refused, and the batch job's answered and refused requests per second.
//! remit, the upstream and the load each get their own runtime. Every phase is bounded in
//! time. `cargo bench -p remit-gateway --bench budgets [-- SECONDS_PER_PHASE]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use remit_store::SqliteStore;

const POLICY: &str = r#"
@id("items.read")
permit (principal, action == Action::"items.read", resource);
"#;

/// The configuration, with `budgets` as the `[budgets]` table's body.
fn config(upstream: &str, budgets: &str) -> String {
    let key = |k: &str| hex_sha256(k);
    format!(
        r#"
[budgets]
{budgets}

[[upstream]]
name = "items"
url = "{upstream}"
prefix = "/"

[[route]]
method = "GET"
path = "/items/{{id}}"
action = "items.read"
resource = "Item::{{id}}"
sensitive = false

[[identity]]
id = "batch-job"
kind = "integration"
owner = "team-ops"
purposes = ["refresh"]
boundary = ["items.read"]
limits = {{ rate = "100000/s" }}

[[identity.credential]]
type = "api_key"
id = "batch-key"
sha256 = "{}"

[[identity]]
id = "assistant"
kind = "assistant"
owner = "team-support"
purposes = ["case-summary"]
boundary = ["items.read"]

[[identity.credential]]
type = "api_key"
id = "assistant-key"
sha256 = "{}"
"#,
        key("rk_bench_batch"),
        key("rk_bench_assistant")
    )
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A runtime on the calling thread.
fn one_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An upstream with room for 4 requests at a time, 2 ms each.
fn start_upstream() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = one_thread();
        rt.block_on(async move {
            let room = Arc::new(tokio::sync::Semaphore::new(4));
            let app = axum::Router::new().route(
                "/items/{id}",
                axum::routing::get(move || {
                    let room = room.clone();
                    async move {
                        let _held = room.acquire().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        "{\"ok\": true}"
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", l.local_addr().unwrap()))
                .unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// remit's proxy on its own runtime (two workers, as `remit serve` on this machine).
fn start_remit(config_text: String, data: std::path::PathBuf) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let config = remit_core::Config::parse(&config_text, "bench.toml").unwrap();
            let policies = [remit_policy::PolicySource {
                file: "bench.cedar".into(),
                text: POLICY.into(),
            }];
            let engine = Arc::new(remit_engine::Engine::new(config, &policies).unwrap());
            let store = SqliteStore::open(&data).await.unwrap();
            let state = remit_gateway::proxy::ProxyState::new(engine, Arc::new(store)).unwrap();
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", l.local_addr().unwrap()))
                .unwrap();
            remit_gateway::proxy::serve_proxy(l, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Rounds of the three phases.
const ROUNDS: usize = 3;

#[derive(Default)]
struct Phase {
    assistant_us: Vec<u64>,
    assistant_refused: u64,
    batch_ok: u64,
    batch_refused: u64,
    seconds: f64,
}

/// A batch job's load.
#[derive(Debug, Clone, Copy)]
enum Flood {
    /// None.
    Off,
    /// This many requests a second over 32 connections, each on a fixed schedule.
    Paced(u32),
    /// 32 connections, each sending again as soon as it is answered.
    Unbounded,
}

/// Runs one phase against `remit` for `secs`: the assistant's calls, and the batch job's
/// `flood` on a runtime (and thread) of its own, so the assistant's timings never wait
/// behind the flood's client work in one runtime.
fn run_phase(remit: &str, secs: f64, flood: Flood) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flooding = !matches!(flood, Flood::Off);
    let flooder = flooding.then(|| {
        let (remit, stop, ok, refused) =
            (remit.to_owned(), stop.clone(), ok.clone(), refused.clone());
        std::thread::spawn(move || {
            let rt = one_thread();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for c in 0..32 {
                    let client = reqwest::Client::new();
                    let url = format!("{remit}/items/{c}");
                    let (stop, ok, refused) = (stop.clone(), ok.clone(), refused.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut tick = match flood {
                            Flood::Paced(per_s) => Some(tokio::time::interval(
                                Duration::from_secs_f64(32.0 / f64::from(per_s.max(1))),
                            )),
                            _ => None,
                        };
                        while !stop.load(Ordering::Relaxed) {
                            if let Some(t) = tick.as_mut() {
                                t.tick().await;
                            }
                            let r = client
                                .get(&url)
                                .bearer_auth("rk_bench_batch")
                                .header("remit-purpose", "refresh")
                                .send()
                                .await;
                            match answered(r).await {
                                Some(200) => ok.fetch_add(1, Ordering::Relaxed),
                                _ => refused.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    });
    if flooding {
        // Let the flood reach its pace before the assistant is measured.
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok0, refused0) = (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    let rt = one_thread();
    let mut phase = rt.block_on(async move {
        let client = reqwest::Client::new();
        let url = format!("{remit}/items/a");
        let mut phase = Phase::default();
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        while Instant::now() < deadline {
            let t = Instant::now();
            let r = client
                .get(&url)
                .bearer_auth("rk_bench_assistant")
                .header("remit-purpose", "case-summary")
                .send()
                .await;
            let status = answered(r).await;
            phase.assistant_us.push(t.elapsed().as_micros() as u64);
            if status != Some(200) {
                phase.assistant_refused += 1;
            }
            // A person's assistant calls now and then, not in a tight loop.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        phase.seconds = started.elapsed().as_secs_f64();
        phase
    });
    phase.batch_ok = ok.load(Ordering::Relaxed) - ok0;
    phase.batch_refused = refused.load(Ordering::Relaxed) - refused0;
    stop.store(true, Ordering::Relaxed);
    if let Some(f) = flooder {
        let _ = f.join();
    }
    phase
}

/// The status of a response read to its end (so its connection is reused), if any.
async fn answered(r: reqwest::Result<reqwest::Response>) -> Option<u16> {
    let r = r.ok()?;
    let status = r.status().as_u16();
    r.bytes().await.ok()?;
    Some(status)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<f64>().ok())
        .unwrap_or(5.0)
        .clamp(1.0, 60.0);
    let upstream = start_upstream();
    let dir = tempfile::tempdir().unwrap();
    let with = start_remit(
        config(
            &upstream,
            "automation = { rate = \"500/s\", in_flight = 2 }",
        ),
        dir.path().join("with"),
    );
    let without = start_remit(config(&upstream, ""), dir.path().join("without"));
    println!(
        "{secs} s per phase, {ROUNDS} rounds (phases alternate; medians of the rounds); upstream: 4 at a time, 2 ms each; assistant: one call every ~5 ms\n"
    );
    let phases = [
        ("alone", &with, Flood::Off),
        ("4× flood, class budgets", &with, Flood::Paced(2000)),
        ("4× flood, no budgets", &without, Flood::Paced(2000)),
        ("unbounded flood, class budgets", &with, Flood::Unbounded),
        ("unbounded flood, no budgets", &without, Flood::Unbounded),
    ];
    // Per phase, per round: assistant p50, p99, calls, refused; batch answered/s, refused/s.
    let mut rows = vec![Vec::new(); phases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, remit, flood)) in phases.iter().enumerate() {
            let mut p = run_phase(remit, secs, *flood);
            p.assistant_us.sort_unstable();
            rows[i].push([
                pct(&p.assistant_us, 0.5),
                pct(&p.assistant_us, 0.99),
                p.assistant_us.len() as f64,
                p.assistant_refused as f64,
                p.batch_ok as f64 / p.seconds,
                p.batch_refused as f64 / p.seconds,
            ]);
        }
    }
    println!(
        "| phase | assistant p50 | assistant p99 | assistant calls | assistant refused | batch answered /s | batch refused /s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut p50 = Vec::new();
    for ((name, ..), runs) in phases.iter().zip(&rows) {
        let m = |k: usize| {
            let mut v: Vec<f64> = runs.iter().map(|r| r[k]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        p50.push(m(0));
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.0} | {:.0} | {:.0} | {:.0} |",
            m(0),
            m(1),
            m(2),
            m(3),
            m(4),
            m(5)
        );
    }
    println!(
        "\nassistant p50 ÷ alone: 4× flood {:.2}× with class budgets, {:.2}× without; unbounded flood {:.2}× with, {:.2}× without",
        p50[1] / p50[0],
        p50[2] / p50[0],
        p50[3] / p50[0],
        p50[4] / p50[0]
    );
}
