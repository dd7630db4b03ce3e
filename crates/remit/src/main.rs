//! The `remit` command: serve the gateway, run the quickstart demo, check requests offline,
//! validate and test policies, and mint API keys.
#![forbid(unsafe_code)]

/// The process's allocator. The proxy allocates and frees small buffers on every request
/// from several threads (hyper's, the decision's, the audit writer's); glibc's allocator
/// spent about a seventh of the proxy's CPU in `malloc`/`free` and their consolidation
/// under `bench/proxy.sh`, which mimalloc's per-thread free lists avoid (BENCHMARKS.md,
/// "Proxy hop").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod alerts;
mod approval;
mod audit;
mod demo;
mod ocsf;
mod simulate;
mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use remit_engine::Engine;
use remit_engine::load::load_engine;
use remit_engine::wire::WireRequest;

/// remit: a gateway and policy decision point for non-human traffic.
#[derive(Debug, Parser)]
#[command(name = "remit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: the proxy, the admin listener with the decision API, and the
    /// ext_authz gRPC and HTTP authorization listeners when configured.
    Serve {
        /// The configuration file (`remit.toml`).
        #[arg(long)]
        config: PathBuf,
        /// Where state lives (SQLite); default `data/` beside the configuration.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run the quickstart: the gateway on the demo configuration, with demo upstreams.
    Demo {
        /// Where state lives; default a fresh temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Decide one request offline, through the same code as `POST /v1/decide`.
    /// Exit code: 0 allow, 1 any other verdict, 2 bad input.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// A JSON request as `POST /v1/decide` takes it (`-` for standard input).
        #[arg(long)]
        request: PathBuf,
        /// Accepted for symmetry with `serve`; `check` writes no record.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Work with policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Work with API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Verify, prove, follow, search and export the audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// List, show, grant and deny approvals at a running remit.
    Approval {
        #[command(subcommand)]
        command: approval::ApprovalCommand,
    },
    /// List behaviour alerts; acknowledge or resolve them with who and why.
    Alerts {
        #[command(subcommand)]
        command: alerts::AlertsCommand,
    },
    /// Inspect and exchange tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Inspect the identity registry.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Simulate days of the quickstart's traffic with injected incidents through the
    /// pipeline and the behaviour detectors, and print the detection table. Exit code: 0
    /// when the detection goals hold, 1 when not, 2 on bad input.
    Simulate {
        /// The quickstart configuration (`examples/quickstart/remit.toml`).
        #[arg(long)]
        config: PathBuf,
        /// Accepted for symmetry with `serve`; the simulator keeps its state in memory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Simulated days per scenario.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Days before any incident (learning and a margin).
        #[arg(long, default_value_t = 4)]
        quiet_days: u32,
        /// Seeds; each runs every incident variant.
        #[arg(long, default_value_t = 3)]
        seeds: u32,
        /// An incident counts as detected within this many of its requests.
        #[arg(long, default_value_t = 10)]
        within: u64,
        /// Also print every alert's evidence.
        #[arg(long)]
        evidence: bool,
    },
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// One line per identity: id, kind, class, owner, status, purposes.
    List {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Everything the registry says about one identity, as JSON, with its boundary expanded
    /// to the actions of the route table.
    Show {
        /// The identity's id.
        id: String,
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Parse and validate the policy directory against the generated schema.
    Validate {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a directory of decision cases (request JSON -> expected verdict).
    Test {
        /// The directory of `*.json` cases.
        dir: PathBuf,
        /// The configuration file; default `remit.toml` in DIR or its parent.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the Cedar schema generated from the registry and route table.
    Schema {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a new API key; print it once, and the lines to paste into `remit.toml`.
    New {
        /// The credential id to print in the snippet.
        #[arg(long, default_value = "key-1")]
        id: String,
    },
}

/// A failure whose message is already printed and whose exit code is chosen.
#[derive(Debug)]
struct Exit(u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Exit {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code)) => ExitCode::from(*code),
            None => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { config, data_dir } => {
            let engine = load(&config)?;
            let data_dir = data_dir.unwrap_or_else(|| default_data_dir(&config));
            remit_gateway::runtime::build(engine.config().gateway.worker_threads)
                .context("starting the async runtime")?
                .block_on(serve(engine, data_dir, None))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => runtime()?.block_on(audit::run(command)),
        Command::Alerts { command } => runtime()?.block_on(alerts::run(command)),
        Command::Token { command } => token::run(command),
        Command::Approval { command } => approval::run(command),
        Command::Demo { data_dir } => {
            runtime()?.block_on(demo::run(data_dir))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            config,
            request,
            data_dir: _,
        } => check(&config, &request),
        Command::Simulate {
            config,
            data_dir: _,
            days,
            quiet_days,
            seeds,
            within,
            evidence,
        } => simulate::run(&config, days, seeds, quiet_days, within, evidence),
        Command::Policy {
            command: PolicyCommand::Validate { config },
        } => {
            let engine = load(&config)?;
            println!(
                "ok: {} policies valid against the schema (baseline pack included)",
                engine.policy().len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Test { dir, config },
        } => policy_test(&dir, config),
        Command::Policy {
            command: PolicyCommand::Schema { config },
        } => {
            print!("{}", load(&config)?.policy().schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Identity {
            command: IdentityCommand::List { config },
        } => {
            let config = remit_engine::load::read_config(&config)?;
            println!(
                "{:<28} {:<16} {:<13} {:<20} {:<12} purposes",
                "id", "kind", "class", "owner", "status"
            );
            for i in config.registry.iter() {
                let purposes: Vec<&str> = i.purposes.iter().map(|p| p.as_str()).collect();
                println!(
                    "{:<28} {:<16} {:<13} {:<20} {:<12} {}",
                    i.id.as_str(),
                    i.kind.as_str(),
                    i.kind.class().as_str(),
                    i.owner.as_str(),
                    i.status.as_str(),
                    purposes.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Identity {
            command: IdentityCommand::Show { id, config },
        } => {
            let config = remit_engine::load::read_config(&config)?;
            let id = remit_core::IdentityId::parse(&id)?;
            let i = config
                .registry
                .get(&id)
                .with_context(|| format!("no identity `{id}` in the registry"))?;
            let actions: Vec<&str> = config
                .routes
                .actions()
                .keys()
                .filter(|a| i.boundary.allows(a))
                .map(|a| a.as_str())
                .collect();
            let rfc3339 = &time::format_description::well_known::Rfc3339;
            let show = serde_json::json!({
                "id": i.id,
                "kind": i.kind,
                "class": i.kind.class(),
                "owner": i.owner,
                "status": i.status,
                "purposes": i.purposes,
                "boundary": {
                    "exact": i.boundary.exact().collect::<Vec<_>>(),
                    "prefixes": i.boundary.prefixes().map(|p| format!("{p}*")).collect::<Vec<_>>(),
                    "actions": actions,
                },
                "credentials": i.credentials.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
                "client_keys": i.client_keys.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
                "spiffe_ids": i.spiffe_ids.iter().map(|c| serde_json::json!({"id": c.id, "spiffe_id": c.spiffe_id.as_str()})).collect::<Vec<_>>(),
                "rate": i.limits.rate,
                "schedule_s": i.schedule.map(|remit_core::identity::Schedule::Every { seconds }| seconds),
                "origins": i.origins.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "expires": i.expires.and_then(|t| t.format(rfc3339).ok()),
            });
            println!("{}", serde_json::to_string_pretty(&show)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Key {
            command: KeyCommand::New { id },
        } => {
            remit_core::CredentialId::parse(&id)?;
            let k = remit_token::new_api_key();
            println!(
                "key (shown once; give it to the client, store it nowhere else):\n  {}\n",
                k.key
            );
            println!("add to the identity in remit.toml:\n");
            println!(
                "[[identity.credential]]\ntype = \"api_key\"\nid = \"{id}\"\nsha256 = \"{}\"",
                k.sha256_hex
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `data/` beside the configuration file: where `serve` keeps state unless told.
pub(crate) fn default_data_dir(config: &Path) -> PathBuf {
    config.parent().unwrap_or(Path::new(".")).join("data")
}

/// The async runtime of a command other than `serve`: one thread per core remit may use.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    remit_gateway::runtime::build(None).context("starting the async runtime")
}

/// Loads the pipeline, printing policy warnings.
fn load(config: &Path) -> Result<Engine> {
    let engine = load_engine(config)?;
    for w in engine.policy().warnings() {
        eprintln!("{w}");
    }
    Ok(engine)
}

/// Serves the admin and proxy listeners, and the ext_authz gRPC and authorization listeners
/// when configured, until Ctrl-C or SIGTERM. `ready` is told the bound
/// addresses (admin, proxy).
pub(crate) async fn serve(
    mut engine: Engine,
    data_dir: PathBuf,
    ready: Option<tokio::sync::oneshot::Sender<(std::net::SocketAddr, std::net::SocketAddr)>>,
) -> Result<()> {
    remit_gateway::metrics::install()?;
    // Replicas sharing Redis share single-use claims: a token id is admitted once in all.
    if let Some(redis) = engine.config().store.redis.clone() {
        let claims = remit_store::redis_claims::RedisClaims::connect(&redis)
            .await
            .context("connecting to Redis for single-use claims ([store] redis_url)")?;
        engine.share_claims(Arc::new(claims));
    }
    let store =
        remit_store::SqliteStore::open_with(&data_dir, store_options(engine.config())).await?;
    let settings = engine.config().gateway.clone();
    let admin = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener on {}", settings.admin_listen))?;
    let proxy = tokio::net::TcpListener::bind(settings.proxy_listen)
        .await
        .with_context(|| format!("binding the proxy listener on {}", settings.proxy_listen))?;
    let grpc = match settings.grpc_listen {
        None => None,
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("binding the ext_authz gRPC listener on {a}"))?,
        ),
    };
    let authz = match settings.authz_listen {
        None => None,
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("binding the authorization listener on {a}"))?,
        ),
    };
    let proxy_tls = match &settings.tls {
        Some(tls) => Some(Arc::new(
            remit_gateway::tls::ServerTls::load(tls)
                .context("loading the proxy listener's TLS files")?,
        )),
        None => None,
    };
    let (admin_addr, proxy_addr) = (admin.local_addr()?, proxy.local_addr()?);
    let shown = |l: &Option<tokio::net::TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or_else(|| "off".to_owned(), |a| a.to_string())
    };
    let (grpc_shown, authz_shown) = (shown(&grpc), shown(&authz));
    let engine = Arc::new(engine);
    // New approvals are announced to `approvals.webhook`, off the request path.
    remit_gateway::webhook::announce_approvals(&engine)?;
    let sink: Arc<dyn remit_core::RecordSink> = Arc::new(store.clone());
    // Behaviour baselines pick up where the last run left them; alerts go to the store.
    let watch = remit_gateway::watch::Watch::start(engine.clone(), &store).await?;
    let proxy_state = remit_gateway::proxy::ProxyState::new(engine.clone(), sink.clone())?
        .with_watch(watch.clone());
    // Issuers whose keys, and trust domains whose bundles, come from the network are
    // refreshed in the background; until a first fetch succeeds their tokens are refused.
    let _refreshers =
        remit_gateway::jwks::spawn_refreshers(&engine, remit_gateway::jwks::REFRESH_EVERY);
    // The token endpoint joins the proxy listener when remit issues tokens.
    let tokens = match engine.config().tokens.issuer {
        Some(_) => Some(Arc::new(remit_gateway::token::TokenService::open(
            engine.clone(),
            &data_dir,
        )?)),
        None => None,
    };
    let authz_state = remit_gateway::authz::AuthzState::new(engine.clone(), sink.clone())
        .with_watch(watch.clone());
    let save_every = std::time::Duration::from_secs(engine.config().anomaly.save_interval_s);
    let admin_state = remit_gateway::AdminState {
        engine,
        sink,
        watch: Some(watch.clone()),
    };
    let proxy_scheme = match &settings.tls {
        None => "http",
        Some(t) if t.client_ca.is_some() => "https (mutual TLS)",
        Some(_) => "https",
    };
    let rt = tokio::runtime::Handle::current();
    let scheduler = match rt.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "single_threaded",
        _ => "multi_threaded",
    };
    let workers = rt.metrics().num_workers();
    tracing::info!(admin = %admin_addr, proxy = %proxy_addr, proxy_scheme, grpc = %grpc_shown, authz = %authz_shown, data_dir = %data_dir.display(), workers, scheduler, "remit is serving");
    if let Some(tx) = ready {
        let _ = tx.send((admin_addr, proxy_addr));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let (a, p, g, z) = (stop.clone(), stop.clone(), stop.clone(), stop.clone());
    // Baselines are saved every `anomaly.save_interval_s` and once more at a graceful stop.
    let saver = {
        let (watch, store, stop) = (watch.clone(), store.clone(), stop.clone());
        async move {
            let mut tick = tokio::time::interval(save_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = watch.save(&store).await {
                            tracing::error!(error = %e, "behaviour baselines not saved");
                        }
                    }
                    () = stop.cancelled() => break,
                }
            }
        }
    };
    let grpc_state = authz_state.clone();
    let grpc_task = async move {
        match grpc {
            Some(l) => remit_gateway::ext_authz::serve_ext_authz(l, grpc_state, async move {
                g.cancelled().await
            })
            .await
            .context("the ext_authz gRPC listener failed"),
            None => Ok(()),
        }
    };
    let authz_task = async move {
        match authz {
            Some(l) => remit_gateway::authz_http::serve_authz(l, authz_state, async move {
                z.cancelled().await
            })
            .await
            .context("the authorization listener failed"),
            None => Ok(()),
        }
    };
    let admin_task =
        remit_gateway::serve_admin(admin, admin_state, async move { a.cancelled().await });
    let proxy_task = async move {
        // With `tls_cert_file`, the proxy listener speaks TLS (and mutual TLS with
        // `client_ca_file`), reloading its files when they change.
        if let Some(tls) = proxy_tls {
            let sink = proxy_state.sink();
            let mut app = remit_gateway::proxy::proxy_router(proxy_state);
            if let Some(t) = tokens {
                app = app.merge(remit_gateway::token::token_router(t, sink));
            }
            return remit_gateway::tls::serve(
                proxy,
                app,
                tls,
                remit_gateway::tls::TlsLimits::default(),
                async move { p.cancelled().await },
            )
            .await;
        }
        match tokens {
            Some(t) => {
                remit_gateway::token::serve_proxy_with_tokens(proxy, proxy_state, t, async move {
                    p.cancelled().await
                })
                .await
            }
            None => {
                remit_gateway::proxy::serve_proxy(
                    proxy,
                    proxy_state,
                    async move { p.cancelled().await },
                )
                .await
            }
        }
    };
    let signal = async move {
        shutdown_signal().await;
        stop.cancel();
    };
    let (r1, r2, r3, r4, (), ()) =
        tokio::join!(admin_task, proxy_task, grpc_task, authz_task, signal, saver);
    match watch.save(&store).await {
        Ok(n) => tracing::info!(rows = n, "behaviour baselines saved"),
        Err(e) => tracing::error!(error = %e, "behaviour baselines not saved at stop"),
    }
    // Sign a last checkpoint so every record written is under a signature.
    if let Err(e) = store.shutdown().await {
        tracing::error!(error = %e, "the final audit checkpoint was not written");
    }
    r1.context("the admin listener failed")?;
    r2.context("the proxy listener failed")?;
    r3?;
    r4?;
    Ok(())
}

/// The store's options from the configuration.
fn store_options(config: &remit_core::Config) -> remit_store::StoreOptions {
    let durability = if config.gateway.danger_skip_fsync {
        tracing::warn!(
            "danger_skip_fsync is on: decision records survive a crash of remit, not of the machine"
        );
        remit_store::Durability::DangerSurvivesProcessCrashOnly
    } else {
        remit_store::Durability::Fsync
    };
    remit_store::StoreOptions {
        durability,
        replica: config.gateway.replica_id.clone(),
        checkpoint_every: config.audit.checkpoint_every,
        checkpoint_interval: std::time::Duration::from_millis(config.audit.checkpoint_interval_ms),
        max_batch: remit_store::MAX_BATCH,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

fn check(config: &Path, request: &Path) -> Result<ExitCode> {
    let engine = load(config)?;
    let bytes = if request == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(
                std::io::stdin(),
                engine.config().gateway.max_request_bytes as u64 + 1,
            ),
            &mut buf,
        )?;
        buf
    } else {
        std::fs::read(request).with_context(|| format!("reading {}", request.display()))?
    };
    if bytes.len() > engine.config().gateway.max_request_bytes {
        bail!(
            "{}: larger than {} bytes",
            request.display(),
            engine.config().gateway.max_request_bytes
        );
    }
    let facts = WireRequest::from_json(&bytes)
        .and_then(|w| w.into_facts().map_err(|e| e.to_string()))
        .map_err(|e| anyhow::anyhow!("{}: {e}", request.display()))?;
    let decided = engine
        .decide(
            &facts,
            uuid::Uuid::now_v7().to_string(),
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", request.display()))?;
    println!("{}", serde_json::to_string_pretty(&decided.decision)?);
    Ok(if decided.decision.verdict == remit_core::Verdict::Allow {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn policy_test(dir: &Path, config: Option<PathBuf>) -> Result<ExitCode> {
    let config = match config {
        Some(c) => c,
        None => [dir.join("remit.toml"), dir.join("../remit.toml")]
            .into_iter()
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no remit.toml in {} or its parent: pass --config",
                    dir.display()
                )
            })?,
    };
    let engine = load(&config)?;
    let results = remit_engine::cases::run_dir(&engine, dir).map_err(anyhow::Error::msg)?;
    let failed = results.iter().filter(|r| !r.passed()).count();
    for r in &results {
        if r.passed() {
            println!("ok    {}", r.file.display());
        } else {
            println!("FAIL  {}", r.file.display());
            for f in &r.failures {
                println!("        {f}");
            }
        }
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    if results.is_empty() {
        bail!("{}: no *.json cases", dir.display());
    }
    if failed > 0 {
        return Err(Exit(1).into());
    }
    Ok(ExitCode::SUCCESS)
}
