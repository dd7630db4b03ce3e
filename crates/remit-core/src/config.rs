//! `remit.toml`: parsed into the registry, the route table and gateway settings.
//!
//! Parsing is pure (text in, typed configuration out); the caller reads files. Every error
//! names the file, line, column and field. Unknown fields are errors.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_spanned::Spanned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::approval::ApprovalSettings;
use crate::identity::{
    ApiKeyCredential, Boundary, ClientJwk, ClientKeyCredential, ClientKeySource, Identity, Limits,
    Registry, Schedule, SpiffeCredential,
};
use crate::names::{ActionName, CredentialId, IdentityId, Owner, Purpose, SpiffeId};
use crate::route::{HttpRoute, McpServer, McpTool, ResourceTemplate, RouteTable};
use crate::scan::{Oversize, ScanAction, ScanSettings};
use crate::vocab::{Kind, Rate, Status};

mod alerts;
mod records;
mod store;
mod tls;
mod tokens;
mod trust_domains;

pub use alerts::{AlertSettings, AnomalySettings, MAX_WEBHOOK_URL, WebhookFormat, WebhookUrl};
pub use store::{MAX_REDIS_PREFIX, MAX_REDIS_URL, RedisSettings, StoreSettings};
pub use tls::{ClientAuth, ClientCa, NamedFile, TlsSettings};

/// Largest configuration file accepted.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;
/// Most identities in one registry.
pub const MAX_IDENTITIES: usize = 100_000;
/// Most routes (HTTP routes plus MCP tools).
pub const MAX_ROUTES: usize = 10_000;
/// Most purposes, boundary entries, credentials or origins on one identity.
pub const MAX_PER_IDENTITY: usize = 256;
/// Longest file path a configuration names (a client's `jwk_file`, a TLS file).
pub const MAX_PATH_LEN: usize = 1024;
/// Default limit on a `/v1/decide` body.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Hard ceiling on `max_request_bytes`.
pub const MAX_REQUEST_BYTES_CEILING: usize = 16 * 1024 * 1024;
/// Most entries in `gateway.trusted_proxies`.
pub const MAX_TRUSTED_PROXIES: usize = 256;
/// The most requests the proxy has in flight, and so the most one class's `in_flight`
/// budget may allow.
pub const MAX_IN_FLIGHT_CEILING: u64 = 1024;

/// A configuration error: file, line, column, field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field, as a path such as `identity[2].boundary`, or the key found there.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "field `{}`: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Settings of the gateway process itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    /// The admin listener: decision API, health.
    pub admin_listen: SocketAddr,
    /// The policy directory, relative to the configuration file's directory.
    pub policy_dir: PathBuf,
    /// Largest request body the decision API accepts.
    pub max_request_bytes: usize,
    /// This replica's id, written to every record.
    pub replica_id: String,
    /// The proxy listener.
    pub proxy_listen: SocketAddr,
    /// Largest request body the proxy buffers for a decision.
    pub max_body_bytes: usize,
    /// How long the proxy waits for an upstream's response headers.
    pub upstream_timeout_s: u64,
    /// The proxy's public base URL, for protected-resource metadata.
    pub public_url: String,
    /// Browser origins allowed to call MCP endpoints besides loopback ones.
    pub allowed_origins: Vec<String>,
    /// Commit decision records without fsync: they survive a crash of remit but not of the
    /// machine. Off by default; named `danger_` because it weakens invariant 2.
    pub danger_skip_fsync: bool,
    /// The Envoy ext_authz gRPC listener (`envoy.service.auth.v3.Authorization/Check`), if any.
    pub grpc_listen: Option<SocketAddr>,
    /// The HTTP authorization listener (Envoy HTTP ext_authz, nginx `auth_request`), if any.
    pub authz_listen: Option<SocketAddr>,
    /// The proxies the authorization listeners answer: only they may state a request's
    /// original method, URI and client address. Everyone else is refused.
    pub trusted_proxies: Vec<IpNet>,
    /// TLS on the proxy listener (and mutual TLS with `client_ca_file`); plain HTTP without.
    pub tls: Option<TlsSettings>,
    /// The most memory the policy layer's cache of Cedar answers may hold; 0 turns it off.
    pub decision_cache_bytes: u64,
    /// The threads that serve the listeners, at most [`WORKER_THREADS_MAX`]. `None`: one per
    /// core remit may run on. One runs every listener on a single-threaded scheduler. Read
    /// at start-up only.
    pub worker_threads: Option<std::num::NonZeroUsize>,
}

/// The most threads `gateway.worker_threads` accepts.
pub const WORKER_THREADS_MAX: u64 = 1024;

/// The default budget of the policy layer's decision cache: tens of thousands of answers.
pub const DECISION_CACHE_DEFAULT_BYTES: u64 = 4 * 1024 * 1024;
/// The largest budget `gateway.decision_cache_bytes` accepts.
pub const DECISION_CACHE_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// How the audit log is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Sign a checkpoint after this many entries...
    pub checkpoint_every: u64,
    /// ...or this many milliseconds after the last one, whichever comes first. Entries
    /// after the last checkpoint are chained but not yet under a signature.
    pub checkpoint_interval_ms: u64,
    /// The most response-body bytes a `log_output` review copy keeps.
    pub review_limit_bytes: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval_ms: 1000,
            review_limit_bytes: 64 * 1024,
        }
    }
}

/// What an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    /// A plain HTTP API.
    Http,
    /// An MCP server (Streamable HTTP).
    Mcp,
}

/// A credential remit adds to requests it forwards to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCredential {
    /// The header to set, lower-case.
    pub header: String,
    /// The environment variable holding its value (read at start-up; never in the file).
    pub env: String,
}

/// One upstream behind the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its name.
    pub name: String,
    /// `http://host:port`, no path.
    pub origin: String,
    /// Requests whose decoded path is this prefix (on a segment boundary) go here.
    pub prefix: String,
    /// HTTP or MCP.
    pub kind: UpstreamKind,
    /// A credential to add.
    pub credential: Option<UpstreamCredential>,
}

/// The upstreams, chosen by longest path prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams(Vec<Upstream>);

impl Upstreams {
    /// The upstream for a decoded path: the longest prefix that ends on a segment boundary.
    pub fn select(&self, decoded_path: &str) -> Option<&Upstream> {
        self.0
            .iter()
            .filter(|u| {
                decoded_path.starts_with(u.prefix.as_str())
                    && (u.prefix.ends_with('/')
                        || decoded_path.len() == u.prefix.len()
                        || decoded_path.as_bytes()[u.prefix.len()] == b'/')
            })
            .max_by_key(|u| u.prefix.len())
    }

    /// Every upstream.
    pub fn iter(&self) -> impl Iterator<Item = &Upstream> {
        self.0.iter()
    }
}

/// A whole parsed configuration.
#[derive(Debug)]
pub struct Config {
    /// Process settings.
    pub gateway: GatewaySettings,
    /// The audit log.
    pub audit: AuditSettings,
    /// Secret scanning.
    pub scan: ScanSettings,
    /// Approvals.
    pub approvals: ApprovalSettings,
    /// The identity registry.
    pub registry: Registry,
    /// The route table.
    pub routes: RouteTable,
    /// The proxy's upstreams.
    pub upstreams: Upstreams,
    /// remit's token service and the JWT issuers it trusts.
    pub tokens: crate::tokens::TokenSettings,
    /// The behaviour detectors.
    pub anomaly: AnomalySettings,
    /// What happens to alerts: the webhook and automatic quarantine.
    pub alerts: AlertSettings,
    /// Approved record sets.
    pub record_sets: crate::records::RecordSets,
    /// Rate budgets per class.
    pub budgets: crate::identity::ClassBudgets,
    /// State shared by several replicas (`[store]`).
    pub store: StoreSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    gateway: Option<RawGateway>,
    #[serde(default)]
    audit: Option<RawAudit>,
    #[serde(default)]
    scan: Option<RawScan>,
    #[serde(default)]
    approvals: Option<RawApprovals>,
    #[serde(default)]
    anomaly: Option<alerts::RawAnomaly>,
    #[serde(default)]
    alerts: Option<alerts::RawAlerts>,
    #[serde(default, rename = "identity")]
    identities: Vec<Spanned<RawIdentity>>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default, rename = "mcp_server")]
    mcp_servers: Vec<Spanned<RawMcpServer>>,
    #[serde(default, rename = "upstream")]
    upstreams: Vec<Spanned<RawUpstream>>,
    #[serde(default)]
    tokens: Option<tokens::RawTokens>,
    #[serde(default, rename = "issuer")]
    issuers: Vec<Spanned<tokens::RawIssuer>>,
    #[serde(default, rename = "trust_domain")]
    trust_domains: Vec<Spanned<trust_domains::RawTrustDomain>>,
    #[serde(default, rename = "record_set")]
    record_sets: Vec<Spanned<records::RawRecordSet>>,
    #[serde(default)]
    budgets: Option<std::collections::BTreeMap<String, Spanned<toml::Value>>>,
    #[serde(default)]
    store: Option<store::RawStore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Spanned<String>,
    url: Spanned<String>,
    prefix: Spanned<String>,
    #[serde(default)]
    kind: Option<UpstreamKind>,
    credential: Option<Spanned<RawUpstreamCredential>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamCredential {
    header: String,
    env: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_every: Option<Spanned<u64>>,
    checkpoint_interval_ms: Option<Spanned<u64>>,
    review_limit_bytes: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    ttl_s: Option<Spanned<u64>>,
    max_wait_s: Option<Spanned<u64>>,
    max_pending_per_identity: Option<Spanned<u64>>,
    #[serde(default)]
    default_approvers: Vec<Spanned<String>>,
    decide_url: Option<Spanned<String>>,
    webhook: Option<Spanned<String>>,
    format: Option<WebhookFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    rules: Option<Spanned<String>>,
    request: Option<ScanAction>,
    response: Option<ScanAction>,
    max_body_bytes: Option<Spanned<u64>>,
    oversize: Option<Oversize>,
    #[serde(default)]
    quarantine_on_exposure: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    admin_listen: Option<Spanned<String>>,
    policy_dir: Option<String>,
    max_request_bytes: Option<Spanned<u64>>,
    replica_id: Option<Spanned<String>>,
    proxy_listen: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<u64>>,
    upstream_timeout_s: Option<Spanned<u64>>,
    public_url: Option<Spanned<String>>,
    #[serde(default)]
    allowed_origins: Vec<Spanned<String>>,
    #[serde(default)]
    danger_skip_fsync: bool,
    grpc_listen: Option<Spanned<String>>,
    authz_listen: Option<Spanned<String>>,
    #[serde(default)]
    trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    tls_cert_file: Option<Spanned<String>>,
    tls_key_file: Option<Spanned<String>>,
    client_ca_file: Option<Spanned<String>>,
    client_trust_domain: Option<Spanned<String>>,
    client_auth: Option<Spanned<String>>,
    decision_cache_bytes: Option<Spanned<u64>>,
    worker_threads: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    id: IdentityId,
    kind: Kind,
    owner: Owner,
    #[serde(default)]
    purposes: Vec<Spanned<Purpose>>,
    #[serde(default)]
    boundary: Vec<Spanned<String>>,
    #[serde(default, rename = "credential")]
    credentials: Vec<Spanned<RawCredential>>,
    #[serde(default)]
    limits: Option<RawLimits>,
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    origins: Vec<Spanned<String>>,
    expires: Option<Spanned<String>>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    read_only_purposes: Vec<Spanned<Purpose>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    #[serde(rename = "type")]
    ctype: Spanned<String>,
    id: Option<CredentialId>,
    sha256: Option<Spanned<String>>,
    jwk: Option<Spanned<String>>,
    jwk_file: Option<Spanned<String>>,
    spiffe_id: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    rate: Option<Spanned<String>>,
    per_purpose: Option<Spanned<String>>,
    per_action: Option<Spanned<String>>,
    token_ttl_s: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: Spanned<String>,
    path: Spanned<String>,
    action: ActionName,
    resource: Spanned<String>,
    #[serde(default)]
    sensitive: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcpServer {
    name: Spanned<String>,
    path: Spanned<String>,
    session_action: Option<ActionName>,
    #[serde(default, rename = "tool")]
    tools: Vec<Spanned<RawTool>>,
    #[serde(default, rename = "prompt")]
    prompts: Vec<Spanned<RawTool>>,
    #[serde(default, rename = "resource")]
    resources: Vec<Spanned<RawResource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    uri_prefix: Spanned<String>,
    action: ActionName,
    #[serde(default)]
    sensitive: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    name: Spanned<String>,
    action: ActionName,
    #[serde(default)]
    sensitive: Option<bool>,
    #[serde(default)]
    arguments: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    /// Whether calling the tool changes anything (MCP's `destructiveHint`; a tool is
    /// destructive unless declared otherwise).
    #[serde(default)]
    destructive: Option<Spanned<bool>>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let at = span.start.min(self.text.len());
        let before = &self.text[..at];
        let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..at].chars().count() + 1;
        let mut field = field.into();
        if field.is_empty() {
            field = key_on_line(self.text, line_start);
        }
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field,
            message: message.into(),
        }
    }
}

/// The key (or table header) written on the line that starts at `line_start`.
fn key_on_line(text: &str, line_start: usize) -> String {
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if let Some(h) = line.strip_prefix('[') {
        return h.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
    }
    match line.split_once('=') {
        Some((k, _)) => k.trim().to_owned(),
        None => String::new(),
    }
}

fn is_method(m: &str) -> bool {
    !m.is_empty() && m.len() <= 16 && m.bytes().all(|c| c.is_ascii_uppercase())
}

impl Config {
    /// Parses a configuration from `text`; `file` is used only to name it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cx = Ctx { file, text };
        if text.len() > MAX_CONFIG_BYTES {
            return Err(cx.err(
                0..0,
                "",
                format!("the file is larger than {MAX_CONFIG_BYTES} bytes"),
            ));
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end_matches('\n').to_owned();
            cx.err(e.span().unwrap_or(0..0), "", msg)
        })?;
        let gateway = parse_gateway(&cx, raw.gateway)?;
        let audit = parse_audit(&cx, raw.audit)?;
        let scan = parse_scan(&cx, raw.scan)?;
        let approvals = parse_approvals(&cx, raw.approvals)?;
        let anomaly = alerts::parse_anomaly(&cx, raw.anomaly)?;
        let alerts = alerts::parse_alerts(&cx, raw.alerts)?;
        let routes = parse_routes(&cx, raw.routes, raw.mcp_servers)?;
        let registry = parse_identities(&cx, raw.identities, &routes)?;
        let upstreams = parse_upstreams(&cx, raw.upstreams)?;
        let record_sets = records::parse_record_sets(&cx, raw.record_sets, &routes)?;
        let budgets = parse_budgets(&cx, raw.budgets.unwrap_or_default())?;
        let store = store::parse_store(&cx, raw.store)?;
        let tokens = tokens::parse_tokens(
            &cx,
            raw.tokens,
            raw.issuers,
            raw.trust_domains,
            &routes,
            &gateway.public_url,
        )?;
        Ok(Config {
            gateway,
            audit,
            scan,
            approvals,
            registry,
            routes,
            upstreams,
            tokens,
            anomaly,
            alerts,
            record_sets,
            budgets,
            store,
        })
    }
}

/// `[budgets]`: `class = "count/period"`, or `class = { rate = "...", in_flight = N }`,
/// for any of the classes.
fn parse_budgets(
    cx: &Ctx<'_>,
    raw: std::collections::BTreeMap<String, Spanned<toml::Value>>,
) -> Result<crate::identity::ClassBudgets, ConfigError> {
    let mut out = Vec::new();
    for (name, budget) in raw {
        let field = format!("budgets.{name}");
        let span = budget.span();
        let Some(class) = crate::vocab::Class::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == name)
        else {
            let names: Vec<&str> = crate::vocab::Class::ALL
                .iter()
                .map(|c| c.as_str())
                .collect();
            return Err(cx.err(
                span,
                field,
                format!(
                    "`{}` is not a class: use {}",
                    name.escape_default(),
                    names.join(", ")
                ),
            ));
        };
        let shape = || {
            cx.err(
                span.clone(),
                field.clone(),
                "a budget is a rate such as \"500/s\", or a table `{ rate = \"500/s\", in_flight = 8 }`",
            )
        };
        // Read by hand from the TOML value: serde's untagged enums lose the reason.
        let (rate, in_flight) = match budget.into_inner() {
            toml::Value::String(r) => (Some(r), None),
            toml::Value::Table(t) => {
                let mut rate = None;
                let mut in_flight = None;
                for (k, v) in t {
                    match (k.as_str(), v) {
                        ("rate", toml::Value::String(r)) => rate = Some(r),
                        ("in_flight", toml::Value::Integer(n)) => {
                            in_flight = Some(u64::try_from(n).unwrap_or(0));
                        }
                        _ => return Err(shape()),
                    }
                }
                (rate, in_flight)
            }
            _ => return Err(shape()),
        };
        if rate.is_none() && in_flight.is_none() {
            return Err(cx.err(span, field, "a budget sets `rate`, `in_flight` or both"));
        }
        let rate = match rate {
            None => None,
            Some(r) => Some(Rate::parse(&r).map_err(|m| cx.err(span.clone(), field.clone(), m))?),
        };
        let in_flight = match in_flight {
            None => None,
            Some(n) if (1..=MAX_IN_FLIGHT_CEILING).contains(&n) => Some(n as u32),
            Some(_) => {
                return Err(cx.err(
                    span,
                    format!("{field}.in_flight"),
                    format!("must be between 1 and {MAX_IN_FLIGHT_CEILING}"),
                ));
            }
        };
        out.push((class, crate::identity::ClassBudget { rate, in_flight }));
    }
    Ok(crate::identity::ClassBudgets::new(out))
}

/// A number from the file within `range`, or `default` when absent.
fn bounded(
    cx: &Ctx<'_>,
    v: Option<Spanned<u64>>,
    field: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if range.contains(n.get_ref()) => Ok(*n.get_ref()),
        Some(n) => Err(cx.err(
            n.span(),
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        )),
    }
}

fn parse_audit(cx: &Ctx<'_>, raw: Option<RawAudit>) -> Result<AuditSettings, ConfigError> {
    let d = AuditSettings::default();
    let Some(raw) = raw else { return Ok(d) };
    Ok(AuditSettings {
        checkpoint_every: bounded(
            cx,
            raw.checkpoint_every,
            "audit.checkpoint_every",
            d.checkpoint_every,
            1..=1_000_000,
        )?,
        checkpoint_interval_ms: bounded(
            cx,
            raw.checkpoint_interval_ms,
            "audit.checkpoint_interval_ms",
            d.checkpoint_interval_ms,
            10..=3_600_000,
        )?,
        review_limit_bytes: bounded(
            cx,
            raw.review_limit_bytes,
            "audit.review_limit_bytes",
            d.review_limit_bytes,
            0..=16 * 1024 * 1024,
        )?,
    })
}

/// The longest approver group name, and the most default approver groups.
const MAX_GROUP_BYTES: usize = 128;
const MAX_DEFAULT_APPROVERS: usize = 32;

fn parse_approvals(
    cx: &Ctx<'_>,
    raw: Option<RawApprovals>,
) -> Result<ApprovalSettings, ConfigError> {
    let d = ApprovalSettings::default();
    let Some(raw) = raw else { return Ok(d) };
    if raw.default_approvers.len() > MAX_DEFAULT_APPROVERS {
        return Err(cx.err(
            raw.default_approvers[MAX_DEFAULT_APPROVERS].span(),
            "approvals.default_approvers",
            format!("at most {MAX_DEFAULT_APPROVERS} groups"),
        ));
    }
    let mut default_approvers: Vec<String> = Vec::new();
    for g in raw.default_approvers {
        let name = g.get_ref();
        if !is_group_name(name) {
            return Err(cx.err(
                g.span(),
                "approvals.default_approvers",
                format!("a group is 1 to {MAX_GROUP_BYTES} letters, digits, `-`, `_`, `.` or `:`"),
            ));
        }
        if default_approvers.contains(name) {
            return Err(cx.err(
                g.span(),
                "approvals.default_approvers",
                format!("group `{name}` is listed twice"),
            ));
        }
        default_approvers.push(g.into_inner());
    }
    // Both URLs follow a webhook's rules: http(s), a host, no credentials, no spaces.
    let url = |v: Option<Spanned<String>>, field: &str| match v {
        None => Ok(None),
        Some(u) => WebhookUrl::parse(u.get_ref())
            .map(Some)
            .map_err(|why| cx.err(u.span(), field, format!("must be an http(s) URL ({why})"))),
    };
    let decide_url = url(raw.decide_url, "approvals.decide_url")?.map(|u| u.as_str().to_owned());
    let webhook = url(raw.webhook, "approvals.webhook")?;
    Ok(ApprovalSettings {
        webhook,
        format: raw.format.unwrap_or(d.format),
        ttl_s: bounded(cx, raw.ttl_s, "approvals.ttl_s", d.ttl_s, 1..=7 * 24 * 3600)?,
        max_wait_s: bounded(
            cx,
            raw.max_wait_s,
            "approvals.max_wait_s",
            d.max_wait_s,
            0..=600,
        )?,
        max_pending_per_identity: bounded(
            cx,
            raw.max_pending_per_identity,
            "approvals.max_pending_per_identity",
            u64::from(d.max_pending_per_identity),
            1..=10_000,
        )? as u32,
        default_approvers,
        decide_url,
    })
}

/// Whether `s` can name an approver group: what `@approvers` and tokens' `groups` use.
pub fn is_group_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_GROUP_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn parse_scan(cx: &Ctx<'_>, raw: Option<RawScan>) -> Result<ScanSettings, ConfigError> {
    let d = ScanSettings::default();
    let Some(raw) = raw else { return Ok(d) };
    let rules = match raw.rules {
        None => None,
        Some(r) if r.get_ref().trim().is_empty() || r.get_ref().len() > 4096 => {
            return Err(cx.err(
                r.span(),
                "scan.rules",
                "must name a rule file (at most 4096 bytes of path)",
            ));
        }
        Some(r) => Some(r.into_inner()),
    };
    Ok(ScanSettings {
        rules,
        request: raw.request.unwrap_or(d.request),
        response: raw.response.unwrap_or(d.response),
        max_body_bytes: bounded(
            cx,
            raw.max_body_bytes,
            "scan.max_body_bytes",
            d.max_body_bytes,
            1024..=64 * 1024 * 1024,
        )?,
        oversize: raw.oversize.unwrap_or(d.oversize),
        quarantine_on_exposure: raw.quarantine_on_exposure,
    })
}

fn parse_gateway(cx: &Ctx<'_>, raw: Option<RawGateway>) -> Result<GatewaySettings, ConfigError> {
    let raw = raw.unwrap_or(RawGateway {
        admin_listen: None,
        policy_dir: None,
        max_request_bytes: None,
        replica_id: None,
        proxy_listen: None,
        max_body_bytes: None,
        upstream_timeout_s: None,
        public_url: None,
        allowed_origins: Vec::new(),
        danger_skip_fsync: false,
        grpc_listen: None,
        authz_listen: None,
        trusted_proxies: None,
        tls_cert_file: None,
        tls_key_file: None,
        client_ca_file: None,
        client_trust_domain: None,
        client_auth: None,
        decision_cache_bytes: None,
        worker_threads: None,
    });
    let tls = tls::parse_tls(
        cx,
        tls::RawTls {
            cert_file: raw.tls_cert_file,
            key_file: raw.tls_key_file,
            client_ca_file: raw.client_ca_file,
            client_trust_domain: raw.client_trust_domain,
            client_auth: raw.client_auth,
        },
    )?;
    let addr = |v: Option<Spanned<String>>, field: &str, default: u16| match v {
        None => Ok(SocketAddr::from(([127, 0, 0, 1], default))),
        Some(s) => s.get_ref().parse().map_err(|_| {
            cx.err(
                s.span(),
                field,
                format!(
                    "`{}` is not an address such as `127.0.0.1:{default}`",
                    s.get_ref()
                ),
            )
        }),
    };
    let admin_listen = addr(raw.admin_listen, "gateway.admin_listen", 8441)?;
    let proxy_listen = addr(raw.proxy_listen, "gateway.proxy_listen", 8440)?;
    let bounded = |v, field: &str, default, range| bounded(cx, v, field, default, range);
    let ceiling = MAX_REQUEST_BYTES_CEILING as u64;
    let max_body_bytes = bounded(
        raw.max_body_bytes,
        "gateway.max_body_bytes",
        1024 * 1024,
        1024..=ceiling,
    )? as usize;
    let upstream_timeout_s = bounded(
        raw.upstream_timeout_s,
        "gateway.upstream_timeout_s",
        30,
        1..=3600,
    )?;
    let decision_cache_bytes = bounded(
        raw.decision_cache_bytes,
        "gateway.decision_cache_bytes",
        DECISION_CACHE_DEFAULT_BYTES,
        0..=DECISION_CACHE_MAX_BYTES,
    )?;
    // 0 (the default) is "one per core": the runtime asks the OS when it starts.
    let worker_threads = bounded(
        raw.worker_threads,
        "gateway.worker_threads",
        0,
        0..=WORKER_THREADS_MAX,
    )?;
    let worker_threads = usize::try_from(worker_threads)
        .ok()
        .and_then(std::num::NonZeroUsize::new);
    let web_origin = |s: &Spanned<String>, field: &str| {
        let v = s.get_ref().trim_end_matches('/');
        let ok = (v.starts_with("http://") || v.starts_with("https://"))
            && v.len() <= 256
            && !v.split_once("://").is_some_and(|(_, rest)| {
                rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@'])
            });
        if ok {
            Ok(v.to_owned())
        } else {
            Err(cx.err(
                s.span(),
                field,
                format!(
                    "`{}` is not an origin such as `https://gateway.example.com`",
                    s.get_ref()
                ),
            ))
        }
    };
    let public_url = match &raw.public_url {
        None if tls.is_some() => format!("https://{proxy_listen}"),
        None => format!("http://{proxy_listen}"),
        Some(s) => web_origin(s, "gateway.public_url")?,
    };
    let allowed_origins = raw
        .allowed_origins
        .iter()
        .map(|o| web_origin(o, "gateway.allowed_origins"))
        .collect::<Result<Vec<_>, _>>()?;
    let max_request_bytes = match raw.max_request_bytes {
        None => DEFAULT_MAX_REQUEST_BYTES,
        Some(n) => usize::try_from(*n.get_ref())
            .ok()
            .filter(|n| (1024..=MAX_REQUEST_BYTES_CEILING).contains(n))
            .ok_or_else(|| {
                cx.err(
                    n.span(),
                    "gateway.max_request_bytes",
                    format!("must be between 1024 and {MAX_REQUEST_BYTES_CEILING}"),
                )
            })?,
    };
    let optional_addr = |v: Option<Spanned<String>>, field: &str, example: u16| {
        v.map(|s| {
            s.get_ref().parse::<SocketAddr>().map_err(|_| {
                cx.err(
                    s.span(),
                    field,
                    format!(
                        "`{}` is not an address such as `127.0.0.1:{example}`",
                        s.get_ref()
                    ),
                )
            })
        })
        .transpose()
    };
    let grpc_listen = optional_addr(raw.grpc_listen, "gateway.grpc_listen", 8442)?;
    let authz_listen = optional_addr(raw.authz_listen, "gateway.authz_listen", 8443)?;
    let mut trusted_proxies = Vec::new();
    let mut proxies_span = 0..0;
    if let Some(list) = raw.trusted_proxies {
        proxies_span = list.span();
        let list = list.into_inner();
        if list.len() > MAX_TRUSTED_PROXIES {
            return Err(cx.err(
                proxies_span,
                "gateway.trusted_proxies",
                format!("more than {MAX_TRUSTED_PROXIES} entries"),
            ));
        }
        for p in list {
            let v = p.get_ref().trim();
            let net = v
                .parse::<IpNet>()
                .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    cx.err(
                        p.span(),
                        "gateway.trusted_proxies",
                        format!(
                            "`{}` is not a network such as `10.0.0.0/8` or an address",
                            p.get_ref()
                        ),
                    )
                })?;
            trusted_proxies.push(net.trunc());
        }
    }
    if (grpc_listen.is_some() || authz_listen.is_some()) && trusted_proxies.is_empty() {
        return Err(cx.err(
            proxies_span,
            "gateway.trusted_proxies",
            "`grpc_listen` or `authz_listen` is set but no proxy is trusted: list the proxies' \
             addresses (such as `127.0.0.1/32`) in `trusted_proxies`",
        ));
    }
    let replica_id = match raw.replica_id {
        None => "replica-1".to_owned(),
        Some(s) => {
            IdentityId::parse(s.get_ref())
                .map_err(|e| cx.err(s.span(), "gateway.replica_id", e.to_string()))?;
            s.into_inner()
        }
    };
    Ok(GatewaySettings {
        admin_listen,
        policy_dir: PathBuf::from(raw.policy_dir.unwrap_or_else(|| "policies".to_owned())),
        max_request_bytes,
        replica_id,
        proxy_listen,
        max_body_bytes,
        upstream_timeout_s,
        public_url,
        allowed_origins,
        danger_skip_fsync: raw.danger_skip_fsync,
        grpc_listen,
        authz_listen,
        trusted_proxies,
        tls,
        decision_cache_bytes,
        worker_threads,
    })
}

fn parse_upstreams(cx: &Ctx<'_>, raw: Vec<Spanned<RawUpstream>>) -> Result<Upstreams, ConfigError> {
    let mut out: Vec<Upstream> = Vec::new();
    for (i, u) in raw.into_iter().enumerate() {
        let span = u.span();
        let u = u.into_inner();
        let field = |f: &str| format!("upstream[{i}].{f}");
        let name = u.name.get_ref().clone();
        IdentityId::parse(&name).map_err(|e| {
            cx.err(
                u.name.span(),
                field("name"),
                e.to_string().replace("identity id", "upstream name"),
            )
        })?;
        let url = u.url.get_ref().trim_end_matches('/');
        let Some(authority) = url.strip_prefix("http://") else {
            return Err(cx.err(
                u.url.span(),
                field("url"),
                format!(
                    "`{url}` must be `http://host:port`: TLS to upstreams is not supported yet"
                ),
            ));
        };
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(cx.err(
                u.url.span(),
                field("url"),
                format!("`{url}` must be `http://host:port` with no path, user or query"),
            ));
        }
        let prefix = u.prefix.get_ref().clone();
        let canonical = crate::path::CanonicalPath::parse(&prefix)
            .map_err(|e| cx.err(u.prefix.span(), field("prefix"), e.to_string()))?;
        if canonical.decoded() != prefix {
            return Err(cx.err(
                u.prefix.span(),
                field("prefix"),
                format!(
                    "`{prefix}` is not canonical: write `{}`",
                    canonical.decoded()
                ),
            ));
        }
        let credential = match u.credential {
            None => None,
            Some(c) => {
                let cspan = c.span();
                let c = c.into_inner();
                let header = c.header.to_ascii_lowercase();
                let valid = !header.is_empty()
                    && header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !valid || header == "host" || header.starts_with("remit-") {
                    return Err(cx.err(
                        cspan,
                        field("credential.header"),
                        format!("`{}` cannot carry an upstream credential", c.header),
                    ));
                }
                if c.env.is_empty()
                    || !c
                        .env
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(cx.err(
                        cspan,
                        field("credential.env"),
                        "name an environment variable such as `DOCS_TOKEN`",
                    ));
                }
                Some(UpstreamCredential { header, env: c.env })
            }
        };
        if out.iter().any(|o| o.name == name || o.prefix == prefix) {
            return Err(cx.err(
                span,
                field("prefix"),
                format!("upstream `{name}` repeats another upstream's name or prefix"),
            ));
        }
        out.push(Upstream {
            name,
            origin: url.to_owned(),
            prefix,
            kind: u.kind.unwrap_or(UpstreamKind::Http),
            credential,
        });
    }
    Ok(Upstreams(out))
}

fn parse_routes(
    cx: &Ctx<'_>,
    raw: Vec<Spanned<RawRoute>>,
    servers: Vec<Spanned<RawMcpServer>>,
) -> Result<RouteTable, ConfigError> {
    let mut table = RouteTable::default();
    let tools: usize = servers.iter().map(|s| s.get_ref().tools.len()).sum();
    if raw.len() + tools > MAX_ROUTES {
        return Err(cx.err(0..0, "route", format!("more than {MAX_ROUTES} routes")));
    }
    for (i, r) in raw.into_iter().enumerate() {
        let span = r.span();
        let r = r.into_inner();
        let field = |f: &str| format!("route[{i}].{f}");
        let method = r.method.get_ref().clone();
        if !is_method(&method) {
            return Err(cx.err(
                r.method.span(),
                field("method"),
                format!("`{method}` is not an upper-case HTTP method"),
            ));
        }
        let path = r.path.get_ref().clone();
        if !path.starts_with('/')
            || path.len() > 1024
            || path.bytes().any(|c| !(0x21..=0x7e).contains(&c))
        {
            return Err(cx.err(
                r.path.span(),
                field("path"),
                format!(
                    "`{}` is not a path template such as `/tickets/{{id}}`",
                    path.escape_default()
                ),
            ));
        }
        let resource = ResourceTemplate::parse(r.resource.get_ref())
            .map_err(|m| cx.err(r.resource.span(), field("resource"), m))?;
        let captured: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|s| s.trim_start_matches('*'))
            .collect();
        if let Some(p) = resource.params().find(|p| !captured.contains(p)) {
            return Err(cx.err(
                r.resource.span(),
                field("resource"),
                format!("`{{{p}}}` is not captured by path `{path}`"),
            ));
        }
        let route = HttpRoute {
            method,
            path,
            action: r.action,
            resource,
            sensitive: r.sensitive.unwrap_or(true),
        };
        table
            .add_http(route)
            .map_err(|m| cx.err(span.clone(), field("path"), m))?;
    }
    for (i, s) in servers.into_iter().enumerate() {
        let span = s.span();
        let s = s.into_inner();
        let field = |f: &str| format!("mcp_server[{i}].{f}");
        let name = s.name.get_ref().clone();
        if let Err(e) = IdentityId::parse(&name) {
            return Err(cx.err(
                s.name.span(),
                field("name"),
                e.to_string().replace("identity id", "server name"),
            ));
        }
        let session_action = match s.session_action {
            Some(a) => a,
            None => ActionName::parse(&format!("mcp.{name}.session"))
                .map_err(|e| cx.err(s.name.span(), field("name"), e.to_string()))?,
        };
        let tools = parse_named(cx, s.tools, &field, "tool")?;
        let prompts = parse_named(cx, s.prompts, &field, "prompt")?;
        let mut resources: Vec<McpTool> = Vec::new();
        for (j, r) in s.resources.into_iter().enumerate() {
            let r = r.into_inner();
            let prefix = r.uri_prefix.get_ref().clone();
            if prefix.is_empty() || prefix.len() > 1024 || prefix.chars().any(char::is_control) {
                return Err(cx.err(
                    r.uri_prefix.span(),
                    field(&format!("resource[{j}].uri_prefix")),
                    "a URI prefix must be 1 to 1024 printable characters",
                ));
            }
            if resources.iter().any(|e| e.name == prefix) {
                return Err(cx.err(
                    r.uri_prefix.span(),
                    field(&format!("resource[{j}].uri_prefix")),
                    format!("URI prefix `{prefix}` is listed twice"),
                ));
            }
            resources.push(McpTool {
                name: prefix,
                action: r.action,
                sensitive: r.sensitive.unwrap_or(true),
                arguments: std::collections::BTreeMap::new(),
                destructive: false,
            });
        }
        let server = McpServer {
            name,
            path: s.path.get_ref().clone(),
            session_action,
            tools,
            prompts,
            resources,
        };
        table
            .add_mcp(server)
            .map_err(|m| cx.err(span, field("path"), m))?;
    }
    Ok(table)
}

/// Tools or prompts of one MCP server, by name.
fn parse_named(
    cx: &Ctx<'_>,
    raw: Vec<Spanned<RawTool>>,
    field: &dyn Fn(&str) -> String,
    what: &str,
) -> Result<HashMap<String, McpTool>, ConfigError> {
    let mut out = HashMap::new();
    for (j, t) in raw.into_iter().enumerate() {
        let tspan = t.span();
        let t = t.into_inner();
        let name = t.name.get_ref().clone();
        let f = field(&format!("{what}[{j}].name"));
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(cx.err(
                t.name.span(),
                f,
                format!("a {what} name must be 1 to 128 printable characters"),
            ));
        }
        let mut arguments = std::collections::BTreeMap::new();
        if let Some(args) = t.arguments {
            let af = field(&format!("{what}[{j}].arguments"));
            if what != "tool" {
                return Err(cx.err(args.span(), af, "arguments are declared for tools only"));
            }
            if args.get_ref().len() > crate::route::MAX_TOOL_ARGUMENTS {
                let max = crate::route::MAX_TOOL_ARGUMENTS;
                return Err(cx.err(args.span(), af, format!("more than {max} arguments")));
            }
            for (arg, ty) in args.into_inner() {
                if arg.is_empty()
                    || arg.len() > 64
                    || !arg.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    let msg = format!(
                        "`{}` is not an argument name Cedar can read (letters, digits, `_`)",
                        arg.escape_default()
                    );
                    return Err(cx.err(ty.span(), af.clone(), msg));
                }
                let parsed = crate::route::ArgType::parse(ty.get_ref())
                    .map_err(|m| cx.err(ty.span(), af.clone(), m))?;
                arguments.insert(arg, parsed);
            }
        }
        let destructive = match t.destructive {
            Some(d) if what != "tool" => {
                return Err(cx.err(
                    d.span(),
                    field(&format!("{what}[{j}].destructive")),
                    "only tools are destructive; prompts and resources are reads",
                ));
            }
            Some(d) => *d.get_ref(),
            None => what == "tool",
        };
        let entry = McpTool {
            name: name.clone(),
            action: t.action,
            sensitive: t.sensitive.unwrap_or(true),
            arguments,
            destructive,
        };
        if out.insert(name.clone(), entry).is_some() {
            return Err(cx.err(tspan, f, format!("{what} `{name}` is listed twice")));
        }
    }
    Ok(out)
}

fn parse_boundary(
    cx: &Ctx<'_>,
    entries: Vec<Spanned<String>>,
    routes: &RouteTable,
    field: &str,
) -> Result<Boundary, ConfigError> {
    let mut exact = BTreeSet::new();
    let mut prefixes = Vec::new();
    for e in entries {
        let s = e.get_ref();
        if let Some(prefix) = s.strip_suffix('*') {
            if !routes
                .actions()
                .keys()
                .any(|a| a.as_str().starts_with(prefix))
            {
                return Err(cx.err(
                    e.span(),
                    field,
                    format!("`{s}` matches no action in the route table"),
                ));
            }
            prefixes.push(prefix.to_owned());
        } else {
            let a = ActionName::parse(s).map_err(|m| cx.err(e.span(), field, m.to_string()))?;
            if a.is_unmapped() {
                return Err(cx.err(e.span(), field, "`unmapped` can never be inside a boundary"));
            }
            if !routes.actions().contains_key(&a) {
                return Err(cx.err(
                    e.span(),
                    field,
                    format!("`{s}` is not an action in the route table"),
                ));
            }
            exact.insert(a);
        }
    }
    Ok(Boundary::new(exact, prefixes))
}

fn parse_identities(
    cx: &Ctx<'_>,
    raw: Vec<Spanned<RawIdentity>>,
    routes: &RouteTable,
) -> Result<Registry, ConfigError> {
    if raw.len() > MAX_IDENTITIES {
        return Err(cx.err(
            0..0,
            "identity",
            format!("more than {MAX_IDENTITIES} identities"),
        ));
    }
    let mut seen_ids = HashSet::new();
    let mut seen_creds = HashSet::new();
    let mut seen_hashes = HashSet::new();
    let mut seen_client_keys: HashSet<String> = HashSet::new();
    let mut seen_spiffe: HashSet<SpiffeId> = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let span = r.span();
        let r = r.into_inner();
        let field = |f: &str| format!("identity[{i}].{f}");
        if !seen_ids.insert(r.id.clone()) {
            return Err(cx.err(
                span,
                field("id"),
                format!("identity `{}` is defined twice", r.id),
            ));
        }
        for (list, name) in [
            (r.purposes.len(), "purposes"),
            (r.boundary.len(), "boundary"),
            (r.credentials.len(), "credential"),
            (r.origins.len(), "origins"),
        ] {
            if list > MAX_PER_IDENTITY {
                return Err(cx.err(
                    span.clone(),
                    field(name),
                    format!("more than {MAX_PER_IDENTITY} entries"),
                ));
            }
        }
        let mut purposes = BTreeSet::new();
        for p in r.purposes {
            let ps = p.span();
            if !purposes.insert(p.into_inner()) {
                return Err(cx.err(ps, field("purposes"), "a purpose is listed twice"));
            }
        }
        let boundary = parse_boundary(cx, r.boundary, routes, &field("boundary"))?;
        let mut credentials = Vec::new();
        let mut client_keys: Vec<ClientKeyCredential> = Vec::new();
        let mut spiffe_ids: Vec<SpiffeCredential> = Vec::new();
        for (j, c) in r.credentials.into_iter().enumerate() {
            let cspan = c.span();
            let c = c.into_inner();
            let cf = |f: &str| field(&format!("credential[{j}].{f}"));
            if matches!(c.ctype.get_ref().as_str(), "api_key" | "client_key")
                && let Some(s) = &c.spiffe_id
            {
                return Err(cx.err(
                    s.span(),
                    cf("spiffe_id"),
                    "a SPIFFE ID belongs to a `spiffe` credential",
                ));
            }
            match c.ctype.get_ref().as_str() {
                "spiffe" => {
                    for (extra, name) in [
                        (&c.sha256, "sha256"),
                        (&c.jwk, "jwk"),
                        (&c.jwk_file, "jwk_file"),
                    ] {
                        if let Some(x) = extra {
                            return Err(cx.err(
                                x.span(),
                                cf(name),
                                "a `spiffe` credential is a SPIFFE ID (`spiffe_id`), not a key",
                            ));
                        }
                    }
                    let Some(id) = c.id else {
                        return Err(cx.err(
                            cspan,
                            cf("id"),
                            "a `spiffe` credential needs an `id`, written to records",
                        ));
                    };
                    let Some(raw) = c.spiffe_id else {
                        return Err(cx.err(
                            cspan,
                            cf("spiffe_id"),
                            "a `spiffe` credential needs `spiffe_id` (`spiffe://trust-domain/path`)",
                        ));
                    };
                    let spiffe_id = SpiffeId::parse(raw.get_ref())
                        .map_err(|e| cx.err(raw.span(), cf("spiffe_id"), e.to_string()))?;
                    if !seen_spiffe.insert(spiffe_id.clone()) {
                        return Err(cx.err(
                            raw.span(),
                            cf("spiffe_id"),
                            format!("SPIFFE ID `{spiffe_id}` is already registered to an identity"),
                        ));
                    }
                    if !seen_creds.insert(id.clone()) {
                        return Err(cx.err(
                            cspan,
                            cf("id"),
                            format!("credential id `{id}` is used twice"),
                        ));
                    }
                    spiffe_ids.push(SpiffeCredential { id, spiffe_id });
                }
                "api_key" => {
                    if let Some(extra) = c.jwk.as_ref().or(c.jwk_file.as_ref()) {
                        return Err(cx.err(
                            extra.span(),
                            cf(if c.jwk.is_some() { "jwk" } else { "jwk_file" }),
                            "an `api_key` credential is a hash; a public key belongs to a `client_key`",
                        ));
                    }
                    let Some(sha) = c.sha256 else {
                        return Err(cx.err(
                            cspan,
                            cf("sha256"),
                            "an `api_key` credential needs `sha256`, as `remit key new` prints it",
                        ));
                    };
                    let hex_str = sha.get_ref();
                    let mut sha256 = [0u8; 32];
                    if hex_str.len() != 64 || hex::decode_to_slice(hex_str, &mut sha256).is_err() {
                        return Err(cx.err(
                            sha.span(),
                            cf("sha256"),
                            "must be 64 hex digits: the SHA-256 of the key, as `remit key new` prints it",
                        ));
                    }
                    if !seen_hashes.insert(sha256) {
                        return Err(cx.err(
                            sha.span(),
                            cf("sha256"),
                            "this key is already registered to an identity",
                        ));
                    }
                    let id = match c.id {
                        Some(id) => id,
                        None => CredentialId::parse(&format!("key:{}", &hex_str[..16]))
                            .map_err(|e| cx.err(cspan.clone(), cf("id"), e.to_string()))?,
                    };
                    if !seen_creds.insert(id.clone()) {
                        return Err(cx.err(
                            cspan,
                            cf("id"),
                            format!("credential id `{id}` is used twice"),
                        ));
                    }
                    credentials.push(ApiKeyCredential { id, sha256 });
                }
                "client_key" => {
                    if client_keys.len() >= crate::identity::MAX_CLIENT_KEYS {
                        return Err(cx.err(
                            cspan,
                            cf("type"),
                            format!(
                                "more than {} `client_key` credentials",
                                crate::identity::MAX_CLIENT_KEYS
                            ),
                        ));
                    }
                    if let Some(sha) = &c.sha256 {
                        return Err(cx.err(
                            sha.span(),
                            cf("sha256"),
                            "a `client_key` credential is a public key (`jwk` or `jwk_file`), not a hash",
                        ));
                    }
                    let Some(id) = c.id else {
                        return Err(cx.err(
                            cspan,
                            cf("id"),
                            "a `client_key` credential needs an `id`, written to records",
                        ));
                    };
                    if !seen_creds.insert(id.clone()) {
                        return Err(cx.err(
                            cspan,
                            cf("id"),
                            format!("credential id `{id}` is used twice"),
                        ));
                    }
                    let key = match (c.jwk, c.jwk_file) {
                        (Some(j), None) => {
                            let jwk = ClientJwk::parse(j.get_ref())
                                .map_err(|m| cx.err(j.span(), cf("jwk"), format!("the key {m}")))?;
                            if client_keys.iter().any(|k| {
                                matches!(&k.key, ClientKeySource::Jwk(o) if o.kid() == jwk.kid())
                            }) {
                                return Err(cx.err(
                                    j.span(),
                                    cf("jwk"),
                                    format!("key id `{}` is used twice by this identity", jwk.kid()),
                                ));
                            }
                            if !seen_client_keys.insert(jwk.material().to_owned()) {
                                return Err(cx.err(
                                    j.span(),
                                    cf("jwk"),
                                    "this public key is already registered to an identity",
                                ));
                            }
                            ClientKeySource::Jwk(jwk)
                        }
                        (None, Some(f)) => {
                            let path = f.get_ref();
                            if path.is_empty()
                                || path.len() > MAX_PATH_LEN
                                || path.chars().any(char::is_control)
                            {
                                return Err(cx.err(
                                    f.span(),
                                    cf("jwk_file"),
                                    format!("is not a file path of at most {MAX_PATH_LEN} bytes"),
                                ));
                            }
                            ClientKeySource::File {
                                path: std::path::PathBuf::from(path),
                                at: Box::new(cx.err(f.span(), cf("jwk_file"), "")),
                            }
                        }
                        (Some(j), Some(_)) => {
                            return Err(cx.err(
                                j.span(),
                                cf("jwk"),
                                "give one of `jwk` or `jwk_file`, not both",
                            ));
                        }
                        (None, None) => {
                            return Err(cx.err(
                                cspan,
                                cf("jwk"),
                                "a `client_key` credential needs its public key: `jwk` (a JWK, inline) or `jwk_file`",
                            ));
                        }
                    };
                    client_keys.push(ClientKeyCredential { id, key });
                }
                other => {
                    return Err(cx.err(
                        c.ctype.span(),
                        cf("type"),
                        format!(
                            "`{other}` is not a credential type this version reads: use `api_key`, `client_key` or `spiffe`"
                        ),
                    ));
                }
            }
        }
        let limit = |v: Option<Spanned<String>>, name: &str| match v {
            None => Ok(None),
            Some(s) => Rate::parse(s.get_ref())
                .map(Some)
                .map_err(|m| cx.err(s.span(), field(&format!("limits.{name}")), m)),
        };
        let (rate, per_purpose, per_action, token_ttl_s) = match r.limits {
            None => (None, None, None, None),
            Some(l) => (
                limit(l.rate, "rate")?,
                limit(l.per_purpose, "per_purpose")?,
                limit(l.per_action, "per_action")?,
                l.token_ttl_s,
            ),
        };
        let token_ttl_s = match token_ttl_s {
            None => None,
            Some(n) => {
                Some(bounded(cx, Some(n), &field("limits.token_ttl_s"), 0, 10..=86_400)? as u32)
            }
        };
        let schedule = match &r.schedule {
            None if r.kind == Kind::ScheduledJob => {
                return Err(cx.err(
                    span,
                    field("schedule"),
                    "a `scheduled_job` needs a `schedule` such as `hourly`",
                ));
            }
            None => None,
            Some(s) => Some(
                Schedule::parse(s.get_ref()).map_err(|m| cx.err(s.span(), field("schedule"), m))?,
            ),
        };
        let mut origins = Vec::new();
        for o in r.origins {
            let s = o.get_ref();
            let net = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    cx.err(
                        o.span(),
                        field("origins"),
                        format!("`{s}` is not an address or network such as `10.0.0.0/8`"),
                    )
                })?;
            origins.push(net.trunc());
        }
        let expires = match r.expires {
            None => None,
            Some(s) => Some(OffsetDateTime::parse(s.get_ref(), &Rfc3339).map_err(|_| {
                cx.err(
                    s.span(),
                    field("expires"),
                    format!(
                        "`{}` is not an RFC 3339 time such as `2027-01-31T00:00:00Z`",
                        s.get_ref()
                    ),
                )
            })?),
        };
        let _ = r.description;
        let mut read_only_purposes = BTreeSet::new();
        for p in r.read_only_purposes {
            if !purposes.contains(p.get_ref()) {
                return Err(cx.err(
                    p.span(),
                    field("read_only_purposes"),
                    format!("`{}` is not one of this identity's purposes", p.get_ref()),
                ));
            }
            read_only_purposes.insert(p.into_inner());
        }
        out.push(Identity {
            id: r.id,
            kind: r.kind,
            owner: r.owner,
            purposes,
            boundary,
            credentials,
            client_keys,
            spiffe_ids,
            limits: Limits {
                rate,
                per_purpose,
                per_action,
                token_ttl_s,
            },
            schedule,
            origins,
            expires,
            status: r.status.unwrap_or(Status::Active),
            read_only: r.read_only,
            read_only_purposes,
        });
    }
    Ok(Registry::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[route]]
method = "GET"
path = "/tickets/{id}"
action = "tickets.read"
resource = "Ticket::{id}"

[[identity]]
id = "a"
kind = "assistant"
owner = "team"
purposes = ["p"]
boundary = ["tickets.read"]
"#;

    fn err(extra: &str) -> ConfigError {
        Config::parse(&format!("{BASE}{extra}"), "remit.toml").unwrap_err()
    }

    #[test]
    fn parses_the_minimal_config() {
        let c = Config::parse(BASE, "remit.toml").unwrap();
        assert_eq!(c.registry.len(), 1);
        assert_eq!(c.gateway.admin_listen.port(), 8441);
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let e = err("colour = \"blue\"\n");
        assert_eq!(e.line, 14);
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        assert!(e.to_string().starts_with("remit.toml:14:"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let e = Config::parse(
            &BASE.replace("[\"tickets.read\"]", "[\"tickets.write\"]"),
            "f.toml",
        )
        .unwrap_err();
        assert_eq!(e.field, "identity[0].boundary");
        assert_eq!(e.line, 13);
        let e = err("[[identity]]\nid = \"a\"\nkind = \"agent\"\nowner = \"t\"\n");
        assert!(e.message.contains("defined twice"), "{e}");
        let e = err("expires = \"tomorrow\"\n");
        assert_eq!(e.field, "identity[0].expires");
        let e = err("kind2 = 1\n");
        assert!(e.message.contains("unknown field"));
        let e = Config::parse(&BASE.replace("assistant", "robot"), "f.toml").unwrap_err();
        assert!(e.message.contains("unknown variant `robot`"), "{e}");
        assert_eq!(e.line, 10);
    }

    #[test]
    fn credentials_are_checked() {
        let cred =
            |h: &str| format!("[[identity.credential]]\ntype = \"api_key\"\nsha256 = \"{h}\"\n");
        let e = err(&cred("abc"));
        assert_eq!(e.field, "identity[0].credential[0].sha256");
        let h = "a".repeat(64);
        let e = err(&format!("{}{}", cred(&h), cred(&h)));
        assert!(e.message.contains("already registered"), "{e}");
    }

    #[test]
    fn spiffe_credentials_are_checked() {
        let svid = |id: &str, spiffe: &str| {
            format!(
                "[[identity.credential]]\ntype = \"spiffe\"\nid = \"{id}\"\nspiffe_id = \"{spiffe}\"\n"
            )
        };
        let ok = svid("a-svid", "spiffe://example.org/ns/prod/sa/a");
        let c = Config::parse(&format!("{BASE}{ok}"), "remit.toml").unwrap();
        let who = c.registry.iter().next().unwrap();
        assert_eq!(who.spiffe_ids.len(), 1);
        assert_eq!(who.spiffe_ids[0].id.as_str(), "a-svid");
        assert_eq!(
            who.spiffe_ids[0].spiffe_id.as_str(),
            "spiffe://example.org/ns/prod/sa/a"
        );
        assert!(who.credentials.is_empty() && who.client_keys.is_empty());
        // The same SPIFFE ID on a second identity: refused at the second one's line.
        let other = "[[identity]]\nid = \"b\"\nkind = \"agent\"\nowner = \"t\"\n";
        let text = format!(
            "{BASE}{ok}{other}{}",
            svid("b-svid", "spiffe://example.org/ns/prod/sa/a")
        );
        let e = Config::parse(&text, "remit.toml").unwrap_err();
        assert_eq!(e.field, "identity[1].credential[0].spiffe_id");
        assert!(e.message.contains("already registered"), "{e}");
        assert_eq!(e.line, text.lines().count());
        // A different SPIFFE ID on the second identity is fine.
        let text = format!(
            "{BASE}{ok}{other}{}",
            svid("b-svid", "spiffe://example.org/ns/prod/sa/b")
        );
        assert_eq!(
            Config::parse(&text, "remit.toml").unwrap().registry.len(),
            2
        );
        let long = format!("spiffe://example.org/{}", "a".repeat(2100));
        let cases: Vec<(String, &str, &str)> = vec![
            (svid("s", "https://example.org/a"), "spiffe_id", "does not start with `spiffe://`"),
            (svid("s", "spiffe://Example.org/a"), "spiffe_id", "trust domain"),
            (svid("s", "spiffe:///a"), "spiffe_id", "trust domain"),
            (svid("s", "spiffe://example.org/a/../b"), "spiffe_id", "path"),
            (svid("s", "spiffe://example.org/a?x=1"), "spiffe_id", "path"),
            (svid("s", "spiffe://example.org/a#f"), "spiffe_id", "path"),
            (svid("s", "spiffe://example.org/a//b"), "spiffe_id", "path"),
            (svid("s", "spiffe://example.org/a/"), "spiffe_id", "path"),
            (svid("s", "spiffe://u@example.org/a"), "spiffe_id", "trust domain"),
            (svid("s", "spiffe://example.org:8443/a"), "spiffe_id", "trust domain"),
            (svid("s", ""), "spiffe_id", "does not start"),
            (svid("s", &long), "spiffe_id", "longer than 2048"),
            (
                format!("{}{}", ok, svid("a-svid2", "spiffe://example.org/ns/prod/sa/a")),
                "spiffe_id",
                "already registered",
            ),
            (
                format!("{}{}", ok, svid("a-svid", "spiffe://example.org/ns/prod/sa/z")),
                "id",
                "used twice",
            ),
            (
                format!(
                    "[[identity.credential]]\ntype = \"api_key\"\nid = \"a-svid\"\nsha256 = \"{}\"\n{ok}",
                    "a".repeat(64)
                ),
                "id",
                "used twice",
            ),
            (
                "[[identity.credential]]\ntype = \"spiffe\"\nspiffe_id = \"spiffe://e/a\"\n".into(),
                "id",
                "needs an `id`",
            ),
            (
                "[[identity.credential]]\ntype = \"spiffe\"\nid = \"s\"\n".into(),
                "spiffe_id",
                "needs `spiffe_id`",
            ),
            (
                format!(
                    "[[identity.credential]]\ntype = \"spiffe\"\nid = \"s\"\nspiffe_id = \"spiffe://e/a\"\nsha256 = \"{}\"\n",
                    "a".repeat(64)
                ),
                "sha256",
                "not a key",
            ),
            (
                "[[identity.credential]]\ntype = \"spiffe\"\nid = \"s\"\nspiffe_id = \"spiffe://e/a\"\njwk_file = \"k.jwk\"\n".into(),
                "jwk_file",
                "not a key",
            ),
            (
                format!(
                    "[[identity.credential]]\ntype = \"api_key\"\nsha256 = \"{}\"\nspiffe_id = \"spiffe://e/a\"\n",
                    "a".repeat(64)
                ),
                "spiffe_id",
                "belongs to a `spiffe` credential",
            ),
            (
                "[[identity.credential]]\ntype = \"SPIFFE\"\nid = \"s\"\nspiffe_id = \"spiffe://e/a\"\n".into(),
                "type",
                "`spiffe`",
            ),
        ];
        for (extra, field, says) in cases {
            let e = err(&extra);
            assert!(
                e.field.starts_with("identity[0].credential[") && e.field.ends_with(field),
                "{extra}: {e}"
            );
            assert!(e.message.contains(says), "{extra}: {e}");
            assert!(e.line > 1, "{extra}: {e}");
            assert!(
                e.message.len() < 600,
                "the error quotes a bounded excerpt: {e}"
            );
        }
        // Hostile text never reaches the error raw.
        let e = err(&svid("s", "spiffe://e/\\u001b[31mred"));
        assert!(!e.message.contains('\u{1b}'), "{e}");
        // A SPIFFE ID that is not a string, and an unknown field, are refused by shape.
        let e = err("[[identity.credential]]\ntype = \"spiffe\"\nid = \"s\"\nspiffe_id = 7\n");
        assert!(e.message.contains("invalid type"), "{e}");
        let e = err(
            "[[identity.credential]]\ntype = \"spiffe\"\nid = \"s\"\nspiffe_id = \"spiffe://e/a\"\ntrust_bundle = \"x\"\n",
        );
        assert!(e.message.contains("unknown field"), "{e}");
        // A limit on how many: the identity's credential list is bounded.
        let many: String = (0..=MAX_PER_IDENTITY)
            .map(|i| svid(&format!("s{i}"), &format!("spiffe://e/w{i}")))
            .collect();
        let e = err(&many);
        assert!(e.message.contains("more than"), "{e}");
    }

    #[test]
    fn client_keys_are_checked() {
        const JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA"}"#;
        let key = |id: &str, jwk: &str| {
            format!(
                "[[identity.credential]]\ntype = \"client_key\"\nid = \"{id}\"\njwk = '{jwk}'\n"
            )
        };
        let c = Config::parse(&format!("{BASE}{}", key("c1", JWK)), "remit.toml").unwrap();
        let id = IdentityId::parse("support-assistant").unwrap();
        let who = c
            .registry
            .get(&id)
            .or_else(|| c.registry.iter().next())
            .unwrap();
        assert_eq!(who.client_keys.len(), 1);
        assert!(matches!(&who.client_keys[0].key, ClientKeySource::Jwk(j) if j.kid() == "k1"));
        let file = Config::parse(
            &format!(
                "{BASE}[[identity.credential]]\ntype = \"client_key\"\nid = \"c1\"\njwk_file = \"keys/c1.jwk\"\n"
            ),
            "remit.toml",
        )
        .unwrap();
        let who = file.registry.iter().next().unwrap();
        match &who.client_keys[0].key {
            ClientKeySource::File { path, at } => {
                assert_eq!(path, &PathBuf::from("keys/c1.jwk"));
                assert_eq!(
                    (at.file.as_str(), at.field.as_str()),
                    ("remit.toml", "identity[0].credential[0].jwk_file")
                );
                assert!(at.line > 1);
            }
            other => panic!("{other:?}"),
        }
        let private = JWK.replace(r#""alg""#, r#""d":"c2VjcmV0","alg""#);
        let hs = r#"{"kty":"oct","k":"c2VjcmV0","kid":"k1"}"#;
        let wrong_alg = JWK.replace("EdDSA", "RS256");
        let hs_alg = JWK.replace("EdDSA", "HS256");
        let no_kid = JWK.replace(r#","kid":"k1""#, "");
        let bad_kid = JWK.replace(r#""k1""#, r#""../../etc""#);
        let jku = JWK.replace(r#""alg""#, r#""jku":"https://evil.example/jwks","alg""#);
        let big = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"k1"}}"#,
            "A".repeat(9000)
        );
        let dup_id = format!(
            "{}{}",
            key("c1", JWK),
            key("c1", &JWK.replace("11qY", "22qY").replace("k1", "k2"))
        );
        let dup_kid = format!(
            "{}{}",
            key("c1", JWK),
            key("c2", &JWK.replace("11qY", "22qY"))
        );
        let dup_key = format!("{}{}", key("c1", JWK), key("c2", &JWK.replace("k1", "k2")));
        let cases: Vec<(String, &str, &str)> = vec![
            (key("c1", "{"), "jwk", "not a JSON document"),
            (key("c1", "[1]"), "jwk", "not a JWK"),
            (key("c1", r#"{"keys":[]}"#), "jwk", "key set"),
            (key("c1", &private), "jwk", "private"),
            (key("c1", hs), "jwk", "private or symmetric"),
            (key("c1", &wrong_alg), "jwk", "cannot sign"),
            (key("c1", &hs_alg), "jwk", "not an accepted algorithm"),
            (key("c1", &no_kid), "jwk", "no `kid`"),
            (key("c1", &bad_kid), "jwk", "`kid`"),
            (key("c1", &jku), "jwk", "never follows"),
            (key("c1", &big), "jwk", "larger than"),
            (
                key("c1", &JWK.replace("OKP", "EC")),
                "jwk",
                "not an Ed25519",
            ),
            (dup_id, "id", "used twice"),
            (dup_kid, "jwk", "key id `k1` is used twice"),
            (dup_key, "jwk", "already registered"),
            (
                "[[identity.credential]]\ntype = \"client_key\"\njwk = '{}'\n".into(),
                "id",
                "needs an `id`",
            ),
            (
                "[[identity.credential]]\ntype = \"client_key\"\nid = \"c\"\n".into(),
                "jwk",
                "needs its public key",
            ),
            (
                format!(
                    "[[identity.credential]]\ntype = \"client_key\"\nid = \"c\"\njwk = '{JWK}'\njwk_file = \"k.jwk\"\n"
                ),
                "jwk",
                "not both",
            ),
            (
                format!(
                    "[[identity.credential]]\ntype = \"client_key\"\nid = \"c\"\nsha256 = \"{}\"\n",
                    "a".repeat(64)
                ),
                "sha256",
                "not a hash",
            ),
            (
                format!(
                    "[[identity.credential]]\ntype = \"api_key\"\nsha256 = \"{}\"\njwk = '{JWK}'\n",
                    "a".repeat(64)
                ),
                "jwk",
                "belongs to a `client_key`",
            ),
            (
                "[[identity.credential]]\ntype = \"api_key\"\n".into(),
                "sha256",
                "needs `sha256`",
            ),
            (
                "[[identity.credential]]\ntype = \"client_key\"\nid = \"c\"\njwk_file = \"\"\n"
                    .into(),
                "jwk_file",
                "not a file path",
            ),
            (
                "[[identity.credential]]\ntype = \"x509\"\nid = \"c\"\n".into(),
                "type",
                "`client_key`",
            ),
        ];
        for (extra, field, says) in cases {
            let e = err(&extra);
            assert!(
                e.field.starts_with("identity[0].credential[") && e.field.ends_with(field),
                "{extra}: {e}"
            );
            assert!(e.message.contains(says), "{extra}: {e}");
            assert!(e.line > 1, "{extra}: {e}");
        }
        let many: String = (0..33)
            .map(|i| {
                key(
                    &format!("c{i}"),
                    &JWK.replace("k1", &format!("k{i}"))
                        .replace("11qY", &format!("{i:04}")),
                )
            })
            .collect();
        assert!(
            err(&many).message.contains("more than 32"),
            "{}",
            err(&many)
        );
    }

    #[test]
    fn scan_settings_parse_with_defaults_and_reject_what_they_cannot_read() {
        let scan = |t: &str| Config::parse(&format!("[scan]\n{t}\n{BASE}"), "remit.toml");
        let c = Config::parse(BASE, "remit.toml").unwrap();
        assert_eq!(c.scan, ScanSettings::default());
        assert_eq!(c.scan.request, ScanAction::Block);
        assert_eq!(c.scan.response, ScanAction::Redact);
        let c = scan(
            "rules = \"secrets.toml\"\nrequest = \"redact\"\nresponse = \"alert\"\nmax_body_bytes = 4096\noversize = \"deny\"\nquarantine_on_exposure = true",
        )
        .unwrap();
        assert_eq!(c.scan.rules.as_deref(), Some("secrets.toml"));
        assert_eq!(
            (c.scan.request, c.scan.response, c.scan.oversize),
            (ScanAction::Redact, ScanAction::Alert, Oversize::Deny)
        );
        assert!(c.scan.quarantine_on_exposure);
        for (bad, line, says) in [
            ("request = \"drop\"", 2, "unknown variant `drop`"),
            ("response = 1", 2, "wanted string"),
            ("max_body_bytes = 10", 2, "must be between"),
            ("max_body_bytes = 99999999999", 2, "must be between"),
            ("oversize = \"maybe\"", 2, "unknown variant `maybe`"),
            ("rules = \"  \"", 2, "must name a rule file"),
            (
                "request = \"block\"\nrequest = \"alert\"",
                3,
                "duplicate key",
            ),
            ("colour = \"red\"", 2, "unknown field `colour`"),
        ] {
            let e = scan(bad).unwrap_err();
            assert_eq!(e.line, line, "{bad}: {e}");
            assert!(e.message.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn decision_cache_budget_parses_with_a_default_and_a_ceiling() {
        let gw = |t: &str| Config::parse(&format!("[gateway]\n{t}\n{BASE}"), "remit.toml");
        let c = Config::parse(BASE, "remit.toml").unwrap();
        assert_eq!(c.gateway.decision_cache_bytes, DECISION_CACHE_DEFAULT_BYTES);
        assert_eq!(
            gw("decision_cache_bytes = 0")
                .unwrap()
                .gateway
                .decision_cache_bytes,
            0
        );
        assert_eq!(
            gw("decision_cache_bytes = 65536")
                .unwrap()
                .gateway
                .decision_cache_bytes,
            65536
        );
        for (bad, says) in [
            (
                "decision_cache_bytes = 1073741825",
                "must be between 0 and 1073741824",
            ),
            ("decision_cache_bytes = -1", "expected u64"),
            ("decision_cache_bytes = \"4MB\"", "expected u64"),
            (
                "decision_cache_bytes = 1\ndecision_cache_bytes = 2",
                "duplicate key",
            ),
        ] {
            let e = gw(bad).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn worker_threads_parse_with_one_per_core_by_default_and_a_ceiling() {
        let gw = |t: &str| Config::parse(&format!("[gateway]\n{t}\n{BASE}"), "remit.toml");
        assert_eq!(
            Config::parse(BASE, "remit.toml")
                .unwrap()
                .gateway
                .worker_threads,
            None
        );
        let threads = |t: &str| gw(t).unwrap().gateway.worker_threads.map(|n| n.get());
        assert_eq!(threads("worker_threads = 0"), None);
        assert_eq!(threads("worker_threads = 1"), Some(1));
        assert_eq!(threads("worker_threads = 1024"), Some(1024));
        for (bad, says) in [
            ("worker_threads = 1025", "must be between 0 and 1024"),
            (
                "worker_threads = 18446744073709551615",
                "must be between 0 and 1024",
            ),
            ("worker_threads = -1", "expected u64"),
            ("worker_threads = 1.5", "expected u64"),
            ("worker_threads = \"auto\"", "expected u64"),
            ("worker_threads = 2\nworker_threads = 2", "duplicate key"),
        ] {
            let e = gw(bad).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn approval_settings_parse_with_defaults_and_reject_what_they_cannot_read() {
        let ap = |t: &str| Config::parse(&format!("[approvals]\n{t}\n{BASE}"), "remit.toml");
        let c = Config::parse(BASE, "remit.toml").unwrap();
        assert_eq!(c.approvals, ApprovalSettings::default());
        assert_eq!((c.approvals.ttl_s, c.approvals.max_wait_s), (900, 60));
        let c = ap("ttl_s = 60\nmax_wait_s = 5\nmax_pending_per_identity = 3\ndefault_approvers = [\"release-managers\", \"sre\"]\ndecide_url = \"https://remit.example/approvals\"").unwrap();
        assert_eq!(c.approvals.ttl_s, 60);
        assert_eq!(c.approvals.max_pending_per_identity, 3);
        assert_eq!(c.approvals.default_approvers, ["release-managers", "sre"]);
        assert_eq!(
            c.approvals.decide_url.as_deref(),
            Some("https://remit.example/approvals")
        );
        let many = format!(
            "default_approvers = [{}]",
            (0..40)
                .map(|i| format!("\"g{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (bad, line, says) in [
            ("ttl_s = 0", 2, "must be between"),
            ("ttl_s = 99999999", 2, "must be between"),
            ("max_wait_s = 601", 2, "must be between"),
            ("max_pending_per_identity = 0", 2, "must be between"),
            (
                "default_approvers = [\"release managers\"]",
                2,
                "a group is",
            ),
            ("default_approvers = [\"\"]", 2, "a group is"),
            ("default_approvers = [\"sre\", \"sre\"]", 2, "listed twice"),
            (many.as_str(), 2, "at most 32 groups"),
            ("decide_url = \"ftp://x\"", 2, "http(s) URL"),
            ("decide_url = \"http://x/a b\"", 2, "http(s) URL"),
            ("ttl_s = 60\nttl_s = 61", 3, "duplicate key"),
            ("ttl = 60", 2, "unknown field `ttl`"),
            (
                "webhook = \"http://user:pw@hooks.example/x\"",
                2,
                "credentials",
            ),
            ("webhook = \"file:///etc/passwd\"", 2, "http"),
            ("format = \"xml\"", 2, "unknown variant"),
        ] {
            let e = ap(bad).unwrap_err();
            assert_eq!(e.line, line, "{bad}: {e}");
            assert!(e.message.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn anomaly_and_alert_settings_parse_and_refuse_what_they_cannot_read() {
        let c = Config::parse(BASE, "remit.toml").unwrap();
        assert_eq!(c.anomaly, AnomalySettings::default());
        assert_eq!(c.alerts, AlertSettings::default());
        let c = Config::parse(
            &format!(
                "[anomaly]\nlearning_requests = 5\nlearning_duration_s = 0\nsave_interval_s = 2\n\
                 [alerts]\nwebhook = \"http://127.0.0.1:9/hook\"\nformat = \"slack\"\nquarantine = true\n{BASE}"
            ),
            "remit.toml",
        )
        .unwrap();
        assert_eq!(
            (
                c.anomaly.learning_requests,
                c.anomaly.learning_duration_s,
                c.anomaly.save_interval_s
            ),
            (5, 0, 2)
        );
        assert_eq!(
            c.alerts.webhook.as_ref().map(WebhookUrl::as_str),
            Some("http://127.0.0.1:9/hook")
        );
        assert_eq!(c.alerts.format, WebhookFormat::Slack);
        assert!(c.alerts.quarantine);
        for (table, bad, line, says) in [
            (
                "alerts",
                "webhook = \"ftp://x/\"",
                2,
                "`http://` or `https://`",
            ),
            ("alerts", "webhook = \"http://\"", 2, "must name a host"),
            ("alerts", "webhook = \"http://u:p@h/\"", 2, "credentials"),
            ("alerts", "webhook = \"http://h/a b\"", 2, "whitespace"),
            ("alerts", "format = \"xml\"", 2, "unknown variant `xml`"),
            ("alerts", "queue = 0", 2, "must be between"),
            ("alerts", "timeout_ms = 10", 2, "must be between"),
            ("alerts", "quarantine = \"yes\"", 2, "expected a boolean"),
            (
                "alerts",
                "quarantine_confidence = 101",
                2,
                "must be between",
            ),
            (
                "alerts",
                "quarantine = true\nquarantine = false",
                3,
                "duplicate key",
            ),
            ("alerts", "hook = \"http://h/\"", 2, "unknown field `hook`"),
            ("anomaly", "alert_threshold = 0", 2, "must be between"),
            ("anomaly", "learning_requests = -1", 2, "invalid value"),
            ("anomaly", "save_interval_s = 0", 2, "must be between"),
            (
                "anomaly",
                "max_identities = 99999999999",
                2,
                "must be between",
            ),
        ] {
            let e = Config::parse(&format!("[{table}]\n{bad}\n{BASE}"), "remit.toml").unwrap_err();
            assert_eq!(e.line, line, "{bad}: {e}");
            assert!(e.message.contains(says), "{bad}: {e}");
        }
        let long = format!("webhook = \"http://h/{}\"", "a".repeat(MAX_WEBHOOK_URL));
        let e = Config::parse(&format!("[alerts]\n{long}\n{BASE}"), "remit.toml").unwrap_err();
        assert!(e.message.contains("longer than"), "{e}");
        assert_eq!(e.field, "alerts.webhook");
    }

    #[test]
    fn authz_listeners_and_trusted_proxies() {
        let gw = |g: &str| Config::parse(&format!("[gateway]\n{g}\n{BASE}"), "remit.toml");
        let c = gw("").unwrap();
        assert_eq!(
            (c.gateway.grpc_listen, c.gateway.authz_listen),
            (None, None)
        );
        assert!(c.gateway.trusted_proxies.is_empty());
        let c = gw(r#"grpc_listen = "127.0.0.1:8442"
authz_listen = "[::1]:8443"
trusted_proxies = ["127.0.0.1", "10.1.2.3/8", "::1/128"]"#)
        .unwrap();
        assert_eq!(c.gateway.grpc_listen.unwrap().port(), 8442);
        assert_eq!(c.gateway.authz_listen.unwrap().port(), 8443);
        let nets: Vec<String> = c
            .gateway
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let e = gw(r#"grpc_listen = "localhost""#).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.line),
            ("gateway.grpc_listen", 2),
            "{e}"
        );
        let e = gw(r#"authz_listen = "127.0.0.1:99999""#).unwrap_err();
        assert_eq!(e.field, "gateway.authz_listen", "{e}");
        let e = gw(r#"authz_listen = "127.0.0.1:8443""#).unwrap_err();
        assert_eq!(e.field, "gateway.trusted_proxies", "{e}");
        assert!(e.message.contains("no proxy is trusted"), "{e}");
        let e = gw(r#"trusted_proxies = ["127.0.0.1", "10.0.0.0/33"]"#).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.line, e.column),
            ("gateway.trusted_proxies", 2, 33),
            "{e}"
        );
        assert!(e.message.contains("`10.0.0.0/33`"), "{e}");
        let e = gw(r#"trusted_proxies = ["nginx.internal"]"#).unwrap_err();
        assert!(e.message.contains("not a network"), "{e}");
        let many: Vec<String> = (0..=MAX_TRUSTED_PROXIES)
            .map(|i| format!("\"10.0.{}.{}\"", i / 256, i % 256))
            .collect();
        let e = gw(&format!("trusted_proxies = [{}]", many.join(", "))).unwrap_err();
        assert!(e.message.contains("more than"), "{e}");
        let e = gw("grpc_port = 1").unwrap_err();
        assert!(e.message.contains("unknown field `grpc_port`"), "{e}");
    }

    #[test]
    fn proxy_tls_is_both_files_or_neither_and_client_certificates_only_with_it() {
        let gw = |g: &str| Config::parse(&format!("[gateway]\n{g}\n{BASE}"), "remit.toml");
        let c = gw("").unwrap();
        assert_eq!(c.gateway.tls, None);
        assert!(c.gateway.public_url.starts_with("http://"));
        let c = gw("tls_cert_file = \"tls/server.pem\"\ntls_key_file = \"/etc/remit/key.pem\"")
            .unwrap();
        let tls = c.gateway.tls.unwrap();
        assert_eq!(tls.cert_file.path, PathBuf::from("tls/server.pem"));
        assert_eq!(tls.key_file.path, PathBuf::from("/etc/remit/key.pem"));
        assert_eq!(tls.client_ca, None);
        let at = &tls.key_file.at;
        assert_eq!(
            (at.file.as_str(), at.line, at.field.as_str()),
            ("remit.toml", 3, "gateway.tls_key_file")
        );
        let e = tls.cert_file.error("no certificate in the file");
        assert_eq!(
            e.to_string(),
            "remit.toml:2:17: field `gateway.tls_cert_file`: `tls/server.pem`: no certificate in the file"
        );
        // With TLS the default public URL is https.
        assert_eq!(c.gateway.public_url, "https://127.0.0.1:8440");
        let both = "tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n";
        let td = "client_trust_domain = \"example.org\"\n";
        let c = gw(&format!("{both}{td}client_ca_file = \"bundle.pem\"")).unwrap();
        let ca = c.gateway.tls.unwrap().client_ca.unwrap();
        assert_eq!(
            (
                ca.file.path.to_str().unwrap(),
                ca.auth,
                ca.trust_domain.as_str()
            ),
            ("bundle.pem", ClientAuth::Optional, "example.org")
        );
        let c = gw(&format!(
            "{both}{td}client_ca_file = \"bundle.pem\"\nclient_auth = \"required\""
        ))
        .unwrap();
        assert_eq!(
            c.gateway.tls.unwrap().client_ca.unwrap().auth,
            ClientAuth::Required
        );
        for (bad, field, line, says) in [
            (
                "tls_cert_file = \"c.pem\"",
                "gateway.tls_cert_file",
                2,
                "without `tls_key_file`",
            ),
            (
                "tls_key_file = \"k.pem\"",
                "gateway.tls_key_file",
                2,
                "without `tls_cert_file`",
            ),
            (
                "client_ca_file = \"bundle.pem\"",
                "gateway.client_ca_file",
                2,
                "need TLS",
            ),
            (
                "tls_key_file = \"k.pem\"\nclient_ca_file = \"bundle.pem\"",
                "gateway.tls_key_file",
                2,
                "without `tls_cert_file`",
            ),
            (
                "client_auth = \"required\"",
                "gateway.client_auth",
                2,
                "without `client_ca_file`",
            ),
            (
                &format!("{both}client_auth = \"required\""),
                "gateway.client_auth",
                4,
                "without `client_ca_file`",
            ),
            (
                &format!("{both}client_ca_file = \"b.pem\"\nclient_auth = \"Required\""),
                "gateway.client_auth",
                5,
                "not `optional` or `required`",
            ),
            (
                &format!("{both}client_ca_file = \"b.pem\"\nclient_auth = \"\""),
                "gateway.client_auth",
                5,
                "not `optional` or `required`",
            ),
            (
                "tls_cert_file = \"\"\ntls_key_file = \"k.pem\"",
                "gateway.tls_cert_file",
                2,
                "not a file path",
            ),
            (
                &format!(
                    "tls_cert_file = \"c.pem\"\ntls_key_file = \"{}\"",
                    "k".repeat(MAX_PATH_LEN + 1)
                ),
                "gateway.tls_key_file",
                3,
                "not a file path",
            ),
            (
                &format!("{both}client_ca_file = \"a\\u0000b\""),
                "gateway.client_ca_file",
                4,
                "not a file path",
            ),
            // Anchors vouch for one trust domain, named.
            (
                &format!("{both}client_ca_file = \"b.pem\""),
                "gateway.client_ca_file",
                4,
                "needs `client_trust_domain`",
            ),
            (
                &format!("{both}client_trust_domain = \"example.org\""),
                "gateway.client_trust_domain",
                4,
                "without `client_ca_file`",
            ),
            (
                "client_trust_domain = \"example.org\"",
                "gateway.client_trust_domain",
                2,
                "without `client_ca_file`",
            ),
            (
                &format!(
                    "{both}client_ca_file = \"b.pem\"\nclient_trust_domain = \"spiffe://example.org/x\""
                ),
                "gateway.client_trust_domain",
                5,
                "",
            ),
            (
                &format!(
                    "{both}client_ca_file = \"b.pem\"\nclient_trust_domain = \"{}\"",
                    "a".repeat(300)
                ),
                "gateway.client_trust_domain",
                5,
                "",
            ),
        ] {
            let e = gw(bad).unwrap_err();
            assert_eq!((e.field.as_str(), e.line), (field, line), "{bad}: {e}");
            assert!(e.message.contains(says), "{bad}: {e}");
        }
        for hostile in [
            "tls_cert_file = 1\ntls_key_file = \"k.pem\"",
            "tls_cert_file = [\"c.pem\"]\ntls_key_file = \"k.pem\"",
            "tls_cert_file = \"c.pem\"\ntls_cert_file = \"d.pem\"\ntls_key_file = \"k.pem\"",
            "tls_cert = \"c.pem\"",
            "client_auth = true",
        ] {
            assert!(gw(hostile).is_err(), "{hostile}");
        }
    }

    #[test]
    fn scheduled_jobs_need_a_schedule() {
        let e = Config::parse(&BASE.replace("assistant", "scheduled_job"), "f.toml").unwrap_err();
        assert_eq!(e.field, "identity[0].schedule");
    }

    #[test]
    fn hostile_toml_is_an_error_not_a_panic() {
        for text in [
            "[[[",
            "a = \"\u{0}\"",
            "identity = 5",
            "[gateway]\nmax_request_bytes = -1",
            "[gateway]\nmax_request_bytes = 99999999999",
            "[gateway]\ngrpc_listen = 8442",
            "[gateway]\ntrusted_proxies = \"127.0.0.1\"",
            "[gateway]\ntrusted_proxies = [1]",
        ] {
            assert!(Config::parse(text, "f.toml").is_err(), "{text:?}");
        }
    }
}

#[cfg(test)]
mod record_set_tests {
    use super::*;
    use crate::records::{OnExcess, RecordSource};

    const BASE: &str = r#"
[[route]]
method = "GET"
path = "/tickets"
action = "tickets.list"
resource = "TicketList::all"

[[identity]]
id = "a"
kind = "assistant"
owner = "team"
purposes = ["p"]
boundary = ["tickets.list"]
"#;

    const SET: &str = r#"
[[record_set]]
name = "queues"
actions = ["tickets.list"]
field = "/queue"
items = "/tickets"
param = "queue"
from = "values"
values = ["support", "billing"]
"#;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{extra}"), "remit.toml")
    }

    #[test]
    fn a_record_set_parses_with_its_defaults() {
        let c = parse(SET).unwrap();
        let s = c.record_sets.get("queues").unwrap();
        assert_eq!(s.field, "/queue");
        assert_eq!(s.items, "/tickets");
        assert_eq!(s.param.as_deref(), Some("queue"));
        assert_eq!(s.on_excess, OnExcess::Filter);
        assert_eq!(s.max_body_bytes, 1024 * 1024);
        assert_eq!(
            s.source,
            RecordSource::Values(std::sync::Arc::new(
                ["billing".to_owned(), "support".to_owned()].into()
            ))
        );
        let action = ActionName::parse("tickets.list").unwrap();
        assert_eq!(c.record_sets.for_action(&action).count(), 1);
        for (from, want) in [
            ("human_groups", RecordSource::HumanGroups),
            ("policy", RecordSource::Policy),
        ] {
            let text = SET
                .replace("from = \"values\"", &format!("from = \"{from}\""))
                .replace("values = [\"support\", \"billing\"]\n", "");
            assert_eq!(
                parse(&text)
                    .unwrap()
                    .record_sets
                    .get("queues")
                    .unwrap()
                    .source,
                want
            );
        }
    }

    #[test]
    fn bad_record_sets_name_the_field_and_line() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "name = \"queues\"",
                "name = \"que ues\"",
                "record_set[0].name",
                "letters, digits",
            ),
            (
                "[\"tickets.list\"]",
                "[\"tickets.gone\"]",
                "record_set[0].actions",
                "not an action",
            ),
            (
                "[\"tickets.list\"]",
                "[\"tickets.list\", \"tickets.list\"]",
                "record_set[0].actions",
                "listed twice",
            ),
            (
                "field = \"/queue\"",
                "field = \"queue\"",
                "record_set[0].field",
                "JSON pointer",
            ),
            (
                "field = \"/queue\"",
                "field = \"\"",
                "record_set[0].field",
                "JSON pointer",
            ),
            (
                "field = \"/queue\"",
                "field = \"/a~2b\"",
                "record_set[0].field",
                "JSON pointer",
            ),
            (
                "items = \"/tickets\"",
                "items = \"tickets\"",
                "record_set[0].items",
                "JSON pointer",
            ),
            (
                "param = \"queue\"",
                "param = \"\"",
                "record_set[0].param",
                "1 to 64",
            ),
            (
                "from = \"values\"",
                "from = \"ldap\"",
                "record_set[0].values",
                "only with",
            ),
            (
                "values = [\"support\", \"billing\"]",
                "values = [\"support\", \"support\"]",
                "record_set[0].values",
                "listed twice",
            ),
            (
                "values = [\"support\", \"billing\"]",
                "values = [\"\"]",
                "record_set[0].values",
                "printable",
            ),
            (
                "\nvalues = [\"support\", \"billing\"]",
                "",
                "record_set[0].values",
                "needs the list",
            ),
            (
                "from = \"values\"",
                "from = \"values\"\nmax_body_bytes = 10",
                "record_set[0].max_body_bytes",
                "",
            ),
            (
                "from = \"values\"",
                "from = \"values\"\non_excess = \"ignore\"",
                "",
                "unknown variant",
            ),
            (
                "from = \"values\"",
                "from = \"values\"\ncolour = 1",
                "",
                "unknown field",
            ),
        ];
        for (from, to, field, message) in cases {
            assert!(SET.contains(from), "{from}");
            let e = parse(&SET.replacen(from, to, 1)).unwrap_err();
            assert_eq!(
                e.field.as_str(),
                if field.is_empty() {
                    e.field.as_str()
                } else {
                    field
                },
                "{to}: {e}"
            );
            assert!(e.message.contains(message), "{to}: {e}");
            assert!(e.line > 13, "{to}: {e}");
        }
        // `ldap` without values: not a source.
        let e = parse(
            &SET.replace("from = \"values\"", "from = \"ldap\"")
                .replace("values = [\"support\", \"billing\"]\n", ""),
        )
        .unwrap_err();
        assert!(e.message.contains("not a source"), "{e}");
        let twice = format!("{SET}{SET}");
        assert!(parse(&twice).unwrap_err().message.contains("defined twice"));
        let many: String = (0..=crate::records::MAX_RECORD_SETS)
            .map(|i| SET.replace("name = \"queues\"", &format!("name = \"q{i}\"")))
            .collect();
        assert!(parse(&many).unwrap_err().message.contains("more than 256"));
    }

    #[test]
    fn budgets_parse_per_class_and_refuse_what_is_not_one() {
        let c = parse("[budgets]\nautomation = \"100/s\"\nassistant = \"30/min\"\n").unwrap();
        assert_eq!(
            c.budgets.get(crate::vocab::Class::Automation),
            Some(Rate::parse("100/s").unwrap())
        );
        assert_eq!(c.budgets.get(crate::vocab::Class::Agent), None);
        let e = parse("[budgets]\nbatch = \"100/s\"\n").unwrap_err();
        assert_eq!(e.field, "budgets.batch");
        assert!(e.message.contains("not a class: use automation"), "{e}");
        let e = parse("[budgets]\nagent = \"lots\"\n").unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("budgets.agent", 15));
        let e = parse("[budgets]\nagent = \"1/s\"\nagent = \"2/s\"\n").unwrap_err();
        assert!(e.message.contains("duplicate key"), "{e}");
        // A table sets the room at the upstreams too.
        let c = parse("[budgets]\nautomation = { rate = \"100/s\", in_flight = 2 }\nagent = { in_flight = 8 }\n").unwrap();
        let b = c.budgets.budget(crate::vocab::Class::Automation).unwrap();
        assert_eq!(
            (b.rate, b.in_flight),
            (Some(Rate::parse("100/s").unwrap()), Some(2))
        );
        assert_eq!(c.budgets.get(crate::vocab::Class::Agent), None);
        assert_eq!(
            c.budgets
                .budget(crate::vocab::Class::Agent)
                .unwrap()
                .in_flight,
            Some(8)
        );
        for (bad, want) in [
            ("agent = { in_flight = 0 }", "between 1 and 1024"),
            ("agent = { in_flight = 5000 }", "between 1 and 1024"),
            ("agent = { }", "sets `rate`, `in_flight` or both"),
            (
                "agent = { rate = \"1/s\", burst = 3 }",
                "a budget is a rate",
            ),
            ("agent = { in_flight = \"8\" }", "a budget is a rate"),
            ("agent = 5", "a budget is a rate"),
            ("agent = { rate = \"often\" }", ""),
        ] {
            let e = parse(&format!("[budgets]\n{bad}\n")).unwrap_err();
            assert!(e.field.starts_with("budgets"), "{bad}: {e}");
            assert!(e.message.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn a_registry_finds_the_slot_of_its_own_identities_only() {
        let text = format!(
            "{BASE}{}",
            BASE.split("[[identity]]")
                .nth(1)
                .map(|i| format!("[[identity]]{}", i.replace("id = \"a\"", "id = \"b\"")))
                .unwrap()
        );
        let c = Config::parse(&text, "remit.toml").unwrap();
        for (i, id) in ["a", "b"].into_iter().enumerate() {
            let found = c.registry.get(&IdentityId::parse(id).unwrap()).unwrap();
            assert_eq!(c.registry.slot_of(found), Some(i));
            let copy = found.clone();
            assert_eq!(
                c.registry.slot_of(&copy),
                None,
                "a copy is not the registry's"
            );
        }
    }

    #[test]
    fn store_parses_redis_and_refuses_what_is_not_usable() {
        let c = parse("[store]\nredis_url = \"redis://127.0.0.1:6379/2\"\n").unwrap();
        let r = c.store.redis.unwrap();
        assert_eq!(
            (
                r.url.as_str(),
                r.prefix.as_str(),
                r.timeout_ms,
                r.password_env
            ),
            ("redis://127.0.0.1:6379/2", "remit:", 250, None)
        );
        assert_eq!(parse("").unwrap().store, StoreSettings::default());
        let c = parse("[store]\nredis_url = \"rediss://cache.internal\"\nredis_password_env = \"REMIT_REDIS_PASSWORD\"\nredis_prefix = \"prod:\"\nredis_timeout_ms = 50\n").unwrap();
        let r = c.store.redis.unwrap();
        assert_eq!(
            (r.prefix.as_str(), r.timeout_ms, r.password_env.as_deref()),
            ("prod:", 50, Some("REMIT_REDIS_PASSWORD"))
        );
        let long = format!("redis://{}", "h".repeat(600));
        for (bad, field, want) in [
            (
                "redis_url = \"http://127.0.0.1:6379\"",
                "store.redis_url",
                "must start with",
            ),
            (
                "redis_url = \"redis://\"",
                "store.redis_url",
                "must name a host",
            ),
            (
                "redis_url = \"redis://a b\"",
                "store.redis_url",
                "must name a host",
            ),
            (
                "redis_url = \"redis://user:hunter2@cache\"",
                "store.redis_url",
                "must not hold a password",
            ),
            (
                "redis_url = \"redis://:hunter2@cache/0\"",
                "store.redis_url",
                "must not hold a password",
            ),
            (
                &format!("redis_url = \"{long}\""),
                "store.redis_url",
                "longer than 512",
            ),
            (
                "redis_url = \"redis://c\"\nredis_timeout_ms = 0",
                "store.redis_timeout_ms",
                "between 10 and 10000",
            ),
            (
                "redis_url = \"redis://c\"\nredis_prefix = \"\"",
                "store.redis_prefix",
                "printable",
            ),
            (
                "redis_url = \"redis://c\"\nredis_prefix = \"a b\"",
                "store.redis_prefix",
                "printable",
            ),
            (
                "redis_url = \"redis://c\"\nredis_password_env = \"$(rm -rf)\"",
                "store.redis_password_env",
                "environment variable name",
            ),
            (
                "redis_prefix = \"x:\"",
                "store.redis_prefix",
                "without `store.redis_url`",
            ),
        ] {
            let e = parse(&format!("[store]\n{bad}\n")).unwrap_err();
            assert_eq!(e.field, field, "{bad}: {e}");
            assert!(e.message.contains(want), "{bad}: {e}");
            // The password never reaches the error.
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let e =
            parse("[store]\nredis_url = \"redis://a\"\nredis_url = \"redis://b\"\n").unwrap_err();
        assert!(e.message.contains("duplicate key"), "{e}");
        let e = parse("[store]\npostgres = \"x\"\n").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }
}

#[cfg(test)]
mod mcp_tests {
    use super::*;
    use crate::path::CanonicalPath;

    const MCP: &str = r#"
[[mcp_server]]
name = "kb"
path = "/mcp/kb"

[[mcp_server.tool]]
name = "search"
action = "kb.search"
sensitive = false

[[mcp_server.prompt]]
name = "summarise"
action = "kb.prompt"
sensitive = false

[[mcp_server.resource]]
uri_prefix = "kb://public/"
action = "kb.read-public"
sensitive = false

[[mcp_server.resource]]
uri_prefix = "kb://public/hr/"
action = "kb.read-hr"
"#;

    fn action(body: &str) -> (String, bool) {
        let c = Config::parse(MCP, "mcp.toml").unwrap();
        let s = c
            .routes
            .resolve(
                "POST",
                &CanonicalPath::parse("/mcp/kb").unwrap(),
                Some(body.as_bytes()),
            )
            .unwrap();
        (s.action.to_string(), s.sensitive)
    }

    #[test]
    fn tools_prompts_and_resources_map_to_actions() {
        let call = |m: &str, params: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}","params":{params}}}"#)
        };
        assert_eq!(
            action(&call("tools/call", r#"{"name":"search"}"#)),
            ("kb.search".into(), false)
        );
        assert_eq!(
            action(&call("prompts/get", r#"{"name":"summarise"}"#)),
            ("kb.prompt".into(), false)
        );
        assert_eq!(
            action(&call("resources/read", r#"{"uri":"kb://public/faq"}"#)),
            ("kb.read-public".into(), false)
        );
        assert_eq!(
            action(&call(
                "resources/read",
                r#"{"uri":"kb://public/hr/salaries"}"#
            )),
            ("kb.read-hr".into(), true),
            "the longest prefix wins"
        );
        assert_eq!(
            action(&call("resources/read", r#"{"uri":"kb://private/x"}"#)),
            ("unmapped".into(), true)
        );
        assert_eq!(
            action(&call("prompts/get", r#"{"name":"other"}"#)),
            ("unmapped".into(), true)
        );
        assert_eq!(
            action(&call("tools/list", "{}")),
            ("mcp.kb.session".into(), false)
        );
    }

    #[test]
    fn repeated_entries_are_errors() {
        let twice =
            format!("{MCP}\n[[mcp_server.prompt]]\nname = \"summarise\"\naction = \"kb.prompt\"\n");
        let e = Config::parse(&twice, "mcp.toml").unwrap_err();
        assert!(e.message.contains("listed twice"), "{e}");
        assert_eq!(e.field, "mcp_server[0].prompt[1].name");
    }
}
