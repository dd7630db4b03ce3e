//! A traffic simulator: realistic mixed traffic for the quickstart identities over
//! simulated days, with injected incidents, run against the real pipeline
//! (`Engine::decide_with_risk` at a simulated clock) feeding the detectors.
//!
//! Benign traffic: `inventory-sync` runs hourly a few minutes past the hour; people work
//! through `support-assistant` in sessions on weekdays; `codegen-workflow` runs in bursts
//! from a pool of runners, sometimes for a developer; `retrieval-agent` opens MCP sessions
//! and searches, now and then over its page-size cap and refused. Incidents: a leaked key
//! used from a new network (probing, then a burst); an identity expanding its scope; a job
//! running off schedule; an assistant used without its human.
//!
//! Each request carries a ground-truth label (`incident`) used only to score the alerts;
//! the detectors never see it.

use std::fmt::Write as _;
use std::net::IpAddr;

use remit_core::{RequestFacts, Verdict};
use remit_engine::Engine;
use time::OffsetDateTime;

use crate::baseline::Baselines;
use crate::detect::{Alert, Detectors};
use crate::observe::{Edge, Observation, UnixSeconds};
use crate::score::{Scorer, record_decided};

/// Monday 2026-01-05 00:00 UTC: the simulated clock's day 0.
pub const START: u64 = 1_767_571_200;
/// Most simulated days in one scenario.
pub const MAX_DAYS: u32 = 60;
const DAY: u64 = 86_400;

/// SplitMix64: a small deterministic generator, so a seed always gives the same traffic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x005e_ed0f_7e57)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next_u64() % xs.len().max(1) as u64) as usize]
    }
}

/// The kinds of incident the simulator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    /// The identity's key, leaked, used from a new network: probing, then a burst.
    LeakedKey,
    /// The identity's key, leaked, used from a new network with a copy of its own client
    /// and purpose: no probing, straight to a burst of what the identity usually does.
    LeakedKeyQuiet,
    /// The identity starts using an action or tool it never used.
    ScopeExpansion,
    /// The scheduled job runs at an unusual time.
    OffSchedule,
    /// The assistant is used with its own authority, without a human.
    NoHuman,
}

impl IncidentKind {
    /// Its name in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeakedKey => "leaked key, new network, probe then burst",
            Self::LeakedKeyQuiet => "leaked key, new network, copied client, burst only",
            Self::ScopeExpansion => "scope expansion",
            Self::OffSchedule => "job off schedule",
            Self::NoHuman => "assistant without its human",
        }
    }
}

/// One injected incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incident {
    /// What happens.
    pub kind: IncidentKind,
    /// To which quickstart identity.
    pub target: &'static str,
}

/// Every incident variant the simulator knows.
pub fn incident_variants() -> Vec<Incident> {
    use IncidentKind::*;
    [
        (LeakedKey, "support-assistant"),
        (LeakedKey, "codegen-workflow"),
        (LeakedKey, "retrieval-agent"),
        (LeakedKeyQuiet, "support-assistant"),
        (LeakedKeyQuiet, "codegen-workflow"),
        (ScopeExpansion, "codegen-workflow"),
        (ScopeExpansion, "inventory-sync"),
        (ScopeExpansion, "retrieval-agent"),
        (OffSchedule, "inventory-sync"),
        (NoHuman, "support-assistant"),
    ]
    .into_iter()
    .map(|(kind, target)| Incident { kind, target })
    .collect()
}

/// One simulated run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Simulated days (at most [`MAX_DAYS`]).
    pub days: u32,
    /// Days at the start with no incident (the learning period and a margin).
    pub quiet_days: u32,
    /// The incident, if any.
    pub incident: Option<Incident>,
}

/// One simulated request.
#[derive(Debug, Clone)]
pub struct SimRequest {
    /// When (Unix seconds).
    pub at: u64,
    /// The method.
    pub method: &'static str,
    /// The path.
    pub path: String,
    /// The API key presented.
    pub key: &'static str,
    /// `Remit-Purpose`, if sent.
    pub purpose: Option<&'static str>,
    /// `User-Agent`.
    pub user_agent: &'static str,
    /// The client's address.
    pub source_ip: IpAddr,
    /// A JSON body.
    pub body: Option<String>,
    /// The human behind a delegated credential.
    pub on_behalf_of: Option<&'static str>,
    /// Actors in the delegation chain.
    pub chain_depth: u8,
    /// Ground truth, for scoring only.
    pub incident: bool,
}

struct Who {
    key: &'static str,
    purpose: &'static str,
    user_agent: &'static str,
}

const INVENTORY: Who = Who {
    key: "rk_demo_inventory_sync",
    purpose: "inventory-refresh",
    user_agent: "inventory-sync/2.3.1 (python-httpx/0.27)",
};
const SUPPORT: Who = Who {
    key: "rk_demo_support_assistant",
    purpose: "case-summary",
    user_agent: "support-console/4.1 (assistant)",
};
const CODEGEN: Who = Who {
    key: "rk_demo_codegen_workflow",
    purpose: "code-change",
    user_agent: "codegen-runner/1.8.2",
};
const RETRIEVAL: Who = Who {
    key: "rk_demo_retrieval_agent",
    purpose: "doc-retrieval",
    user_agent: "retrieval-agent/0.9 rmcp/0.3",
};

const HUMANS: &[&str] = &["alice@example.com", "bob@example.com", "chen@example.com"];
const DEVELOPERS: &[&str] = &[
    "dana@example.com",
    "eli@example.com",
    "fatima@example.com",
    "goran@example.com",
    "hana@example.com",
];
const REPOS: &[&str] = &["web", "api", "infra", "docs"];

fn ip(a: u8, b: u8, c: u8, d: u64) -> IpAddr {
    IpAddr::from([a, b, c, (d % 250) as u8 + 1])
}

/// A request builder for one identity.
fn req(at: u64, who: &Who, method: &'static str, path: String, ip: IpAddr) -> SimRequest {
    SimRequest {
        at,
        method,
        path,
        key: who.key,
        purpose: Some(who.purpose),
        user_agent: who.user_agent,
        source_ip: ip,
        body: None,
        on_behalf_of: None,
        chain_depth: 0,
        incident: false,
    }
}

fn mcp_body(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
}

fn search(rng: &mut Rng, limit: u64) -> String {
    let q = rng.pick(&["deploy", "rollback", "oncall", "sso", "billing", "quota"]);
    mcp_body(
        "tools/call",
        &format!(r#"{{"name":"search_docs","arguments":{{"query":"{q}","limit":{limit}}}}}"#),
    )
}

/// One hourly inventory run beginning at `start`; `deletes` extra deletions at its end.
fn inventory_run(rng: &mut Rng, start: u64, deletes: u64, label: bool, out: &mut Vec<SimRequest>) {
    let host = IpAddr::from([127, 0, 0, 1]);
    let mut t = start;
    for _ in 0..rng.range(4, 12) {
        let sku = rng.range(100, 999);
        let mut r = req(t, &INVENTORY, "GET", format!("/inventory/sku-{sku}"), host);
        r.incident = label;
        out.push(r);
        t += rng.range(1, 4);
    }
    for _ in 0..rng.range(1, 4) {
        let sku = rng.range(100, 999);
        let mut r = req(t, &INVENTORY, "PUT", format!("/inventory/sku-{sku}"), host);
        r.body = Some(format!(r#"{{"qty":{}}}"#, rng.range(0, 500)));
        r.incident = label;
        out.push(r);
        t += rng.range(1, 4);
    }
    for _ in 0..deletes {
        let sku = rng.range(100, 999);
        let mut r = req(
            t,
            &INVENTORY,
            "DELETE",
            format!("/inventory/sku-{sku}"),
            host,
        );
        r.incident = true;
        out.push(r);
        t += rng.range(1, 4);
    }
}

/// One support-assistant session for `human` (or, for the incident, for nobody).
fn support_session(
    rng: &mut Rng,
    start: u64,
    human: Option<&'static str>,
    label: bool,
    out: &mut Vec<SimRequest>,
) {
    let host = ip(10, 30, 0, rng.range(10, 14));
    let mut t = start;
    let ticket = rng.range(1000, 9999);
    for i in 0..rng.range(3, 10) {
        let path = match rng.range(0, 99) {
            0..=4 => "/status".to_owned(),
            5..=44 => format!("/tickets/{ticket}/history"),
            _ if i % 3 == 2 => format!("/tickets/{}", rng.range(1000, 9999)),
            _ => format!("/tickets/{ticket}"),
        };
        let mut r = req(t, &SUPPORT, "GET", path, host);
        r.on_behalf_of = human;
        r.chain_depth = u8::from(human.is_some());
        r.incident = label;
        out.push(r);
        t += rng.range(8, 90);
    }
}

/// One codegen burst; `deploys` deployments (the incident) after the builds.
fn codegen_burst(rng: &mut Rng, start: u64, deploys: u64, out: &mut Vec<SimRequest>) {
    let host = ip(10, 20, u8::from(rng.chance(0.5)), rng.range(5, 40));
    let (human, depth) = if rng.chance(0.5) {
        (None, 0)
    } else {
        (
            Some(*rng.pick(DEVELOPERS)),
            if rng.chance(0.2) { 2 } else { 1 },
        )
    };
    let repo = *rng.pick(REPOS);
    let mut t = start;
    let push = |r: SimRequest, rng: &mut Rng, t: &mut u64, out: &mut Vec<SimRequest>| {
        let mut r = r;
        r.on_behalf_of = human;
        r.chain_depth = depth;
        out.push(r);
        *t += rng.range(0, 3);
    };
    push(
        req(t, &CODEGEN, "GET", "/status".into(), host),
        rng,
        &mut t,
        out,
    );
    for _ in 0..rng.range(3, 15) {
        let p = format!("/repos/{repo}/builds/{}", rng.range(1, 99_999));
        push(req(t, &CODEGEN, "GET", p, host), rng, &mut t, out);
    }
    for _ in 0..rng.range(0, 2) {
        let mut r = req(t, &CODEGEN, "POST", format!("/repos/{repo}/pulls"), host);
        r.body = Some(r#"{"title":"chore: bump dependencies"}"#.into());
        push(r, rng, &mut t, out);
    }
    for _ in 0..deploys {
        let mut r = req(
            t,
            &CODEGEN,
            "POST",
            format!("/repos/{repo}/deployments"),
            host,
        );
        r.body = Some(r#"{"ref":"main"}"#.into());
        r.incident = true;
        push(r, rng, &mut t, out);
    }
}

/// One retrieval MCP session; `reindex` admin calls (the incident) among the searches.
fn retrieval_session(rng: &mut Rng, start: u64, reindex: u64, out: &mut Vec<SimRequest>) {
    let host = ip(10, 40, 0, rng.range(2, 9));
    let mut t = start;
    let init = mcp_body(
        "initialize",
        r#"{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"retrieval-agent","version":"0.9"}}"#,
    );
    let mut r = req(t, &RETRIEVAL, "POST", "/mcp/docs".into(), host);
    r.body = Some(init);
    out.push(r);
    t += 1;
    let mut r = req(t, &RETRIEVAL, "POST", "/mcp/docs".into(), host);
    r.body = Some(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into());
    out.push(r);
    let searches = rng.range(1, 8);
    for i in 0..searches {
        t += rng.range(1, 6);
        // Now and then the agent asks for more than its page-size cap; it is refused and
        // sometimes retries within the cap.
        let over = rng.chance(0.03);
        let mut r = req(t, &RETRIEVAL, "POST", "/mcp/docs".into(), host);
        let limit = if over {
            rng.range(20, 50)
        } else {
            rng.range(3, 10)
        };
        r.body = Some(search(rng, limit));
        out.push(r);
        if over && rng.chance(0.5) {
            t += rng.range(1, 3);
            let mut r = req(t, &RETRIEVAL, "POST", "/mcp/docs".into(), host);
            r.body = Some(search(rng, 10));
            out.push(r);
        }
        if reindex > 0 && i + 1 == searches.div_ceil(2) {
            for _ in 0..reindex {
                t += rng.range(1, 4);
                let mut r = req(t, &RETRIEVAL, "POST", "/mcp/docs".into(), host);
                r.body = Some(mcp_body(
                    "tools/call",
                    r#"{"name":"admin_reindex","arguments":{}}"#,
                ));
                r.incident = true;
                out.push(r);
            }
        }
    }
}

/// Builds one request of an identity's main capability: method, path, body.
type MainCapability = fn(&mut Rng) -> (&'static str, String, Option<String>);

/// A leaked key in someone else's hands: a few probes of other capabilities (unless
/// `quiet`), then a burst of the identity's own main capability.
fn leaked_key(rng: &mut Rng, start: u64, target: &str, quiet: bool, out: &mut Vec<SimRequest>) {
    let (who, main): (&Who, MainCapability) = match target {
        "support-assistant" => (&SUPPORT, |rng| {
            ("GET", format!("/tickets/{}", rng.range(1000, 9999)), None)
        }),
        "codegen-workflow" => (&CODEGEN, |rng| {
            (
                "GET",
                format!("/repos/{}/builds/{}", rng.pick(REPOS), rng.range(1, 99_999)),
                None,
            )
        }),
        _ => (&RETRIEVAL, |rng| {
            ("POST", "/mcp/docs".to_owned(), Some(search(rng, 10)))
        }),
    };
    let host = match rng.range(0, 2) {
        0 => ip(203, 0, 113, rng.next_u64()),
        1 => ip(198, 51, 100, rng.next_u64()),
        _ => IpAddr::from([
            0x2001,
            0xdb8,
            0xbeef,
            0,
            0,
            0,
            0,
            (rng.next_u64() % 0xffff) as u16 + 1,
        ]),
    };
    let user_agent = match rng.range(0, 9) {
        _ if quiet => who.user_agent, // copied from the victim's client
        0..=3 => "python-requests/2.32.3",
        4..=6 => "curl/8.5.0",
        _ => who.user_agent,
    };
    let with_purpose = quiet || rng.chance(0.7);
    let probes: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/inventory/sku-1", None),
        ("POST", "/repos/web/deployments", Some(r#"{"ref":"main"}"#)),
        ("POST", "/tickets/1001/comments", Some(r#"{"text":"hi"}"#)),
        ("DELETE", "/inventory/sku-2", None),
        ("GET", "/tickets/1001", None),
        (
            "POST",
            "/mcp/docs",
            Some(
                r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"admin_reindex","arguments":{}}}"#,
            ),
        ),
        ("GET", "/status", None),
    ];
    let mut t = start;
    let mut push = |method: &'static str, path: String, body: Option<String>, t: u64| {
        out.push(SimRequest {
            at: t,
            method,
            path,
            key: who.key,
            purpose: with_purpose.then_some(who.purpose),
            user_agent,
            source_ip: host,
            body,
            on_behalf_of: None,
            chain_depth: 0,
            incident: true,
        });
    };
    for _ in 0..if quiet { 0 } else { rng.range(3, 6) } {
        let (m, p, b) = *rng.pick(probes);
        push(m, p.to_owned(), b.map(str::to_owned), t);
        t += rng.range(3, 25);
    }
    for _ in 0..rng.range(40, 120) {
        let (m, p, b) = main(rng);
        push(m, p, b, t);
        t += rng.range(0, 1);
    }
}

/// The scenario's requests, in time order.
pub fn generate(s: &Scenario) -> Vec<SimRequest> {
    let mut rng = Rng::new(s.seed);
    let days = u64::from(s.days.min(MAX_DAYS));
    let quiet = u64::from(s.quiet_days).min(days.saturating_sub(1));
    // The incident's onset: a random time after the quiet days, before the last day.
    let onset_day = rng.range(quiet, days.saturating_sub(2).max(quiet));
    let onset = START + onset_day * DAY + rng.range(9 * 3600, 17 * 3600);
    let onset_hour = onset / 3600;
    let kind = s.incident.map(|i| (i.kind, i.target));
    let mut out = Vec::new();
    for d in 0..days {
        let day = START + d * DAY;
        let weekday = d % 7 < 5;
        // inventory-sync: hourly, about five minutes past the hour.
        for h in 0..24 {
            if rng.chance(0.01) {
                continue;
            }
            let start = day + h * 3600 + 300 + rng.range(0, 180) - 90;
            let expand = kind == Some((IncidentKind::ScopeExpansion, "inventory-sync"))
                && start / 3600 == onset_hour;
            let deletes = if expand { rng.range(1, 3) } else { 0 };
            inventory_run(&mut rng, start, deletes, false, &mut out);
        }
        // support-assistant: people, in sessions, in working hours (some weekend use).
        for &human in HUMANS {
            let sessions = if weekday {
                rng.range(2, 6)
            } else if rng.chance(0.05) {
                1
            } else {
                0
            };
            for _ in 0..sessions {
                let start = day + rng.range(8 * 3600, 17 * 3600 + 1800);
                support_session(&mut rng, start, Some(human), false, &mut out);
            }
        }
        // codegen-workflow: CI-driven bursts, mostly in working hours.
        for _ in 0..if weekday {
            rng.range(6, 14)
        } else {
            rng.range(0, 3)
        } {
            let start = if rng.chance(0.9) {
                day + rng.range(9 * 3600, 19 * 3600)
            } else {
                day + rng.range(0, DAY - 1)
            };
            codegen_burst(&mut rng, start, 0, &mut out);
        }
        // retrieval-agent: MCP sessions through the day, busier in working hours.
        for _ in 0..if weekday {
            rng.range(10, 30)
        } else {
            rng.range(2, 6)
        } {
            let start = if rng.chance(0.8) {
                day + rng.range(7 * 3600, 20 * 3600)
            } else {
                day + rng.range(0, DAY - 1)
            };
            retrieval_session(&mut rng, start, 0, &mut out);
        }
    }
    match kind {
        Some((IncidentKind::LeakedKey, target)) => {
            leaked_key(&mut rng, onset, target, false, &mut out)
        }
        Some((IncidentKind::LeakedKeyQuiet, target)) => {
            leaked_key(&mut rng, onset, target, true, &mut out)
        }
        Some((IncidentKind::ScopeExpansion, "codegen-workflow")) => {
            let n = rng.range(1, 3);
            codegen_burst(&mut rng, onset, n, &mut out);
        }
        Some((IncidentKind::ScopeExpansion, "retrieval-agent")) => {
            let n = rng.range(1, 2);
            retrieval_session(&mut rng, onset, n, &mut out);
        }
        Some((IncidentKind::OffSchedule, _)) => {
            // A run twenty to fifty minutes past the hour, from the job's own host.
            let start = onset_hour * 3600 + rng.range(20 * 60, 50 * 60);
            inventory_run(&mut rng, start, 0, true, &mut out);
        }
        Some((IncidentKind::NoHuman, _)) => support_session(&mut rng, onset, None, true, &mut out),
        _ => {}
    }
    out.sort_by_key(|r| r.at);
    out
}

/// Why a simulated request could not be run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The request could not be parsed or its scope read.
    #[error("simulated request {index} (`{method} {path}`): {message}")]
    Request {
        /// Its position in the run.
        index: usize,
        /// Its method.
        method: String,
        /// Its path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// How one scenario went.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Requests without the incident label.
    pub benign: u64,
    /// Requests with it.
    pub incident_requests: u64,
    /// Alerts raised on benign requests.
    pub false_alerts: Vec<Alert>,
    /// The first alert on an incident request, and how many incident requests (from the
    /// onset, 1-based) it took.
    pub detection: Option<(u64, Alert)>,
    /// Every alert raised on incident requests, with the request's number from onset.
    pub incident_alerts: Vec<(u64, Alert)>,
    /// Verdicts of benign requests: allow, deny, approval_required, rate_limited.
    pub benign_verdicts: [u64; 4],
    /// Verdicts of incident requests.
    pub incident_verdicts: [u64; 4],
    /// The highest risk score of a benign request.
    pub max_benign_risk: u8,
    /// The highest risk score of an incident request.
    pub max_incident_risk: u8,
}

fn verdict_index(v: Verdict) -> usize {
    match v {
        Verdict::Allow => 0,
        Verdict::Deny => 1,
        Verdict::ApprovalRequired => 2,
        Verdict::RateLimited => 3,
    }
}

/// Runs a scenario's requests through the pipeline and the detectors, from empty baselines.
pub fn run(
    engine: &Engine,
    detectors: &Detectors,
    requests: &[SimRequest],
) -> Result<RunReport, SimError> {
    let mut state = Baselines::default();
    run_with(engine, detectors, &mut state, requests)
}

/// Runs requests through the pipeline and the detectors on an existing state.
pub fn run_with(
    engine: &Engine,
    detectors: &Detectors,
    state: &mut Baselines,
    requests: &[SimRequest],
) -> Result<RunReport, SimError> {
    let mut report = RunReport::default();
    let mut incident_seen = 0u64;
    for (index, r) in requests.iter().enumerate() {
        let fail = |message: String| SimError::Request {
            index,
            method: r.method.to_owned(),
            path: r.path.clone(),
            message,
        };
        let auth = format!("Bearer {}", r.key);
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("authorization", auth.as_bytes()),
            ("user-agent", r.user_agent.as_bytes()),
        ];
        if let Some(p) = r.purpose {
            headers.push(("remit-purpose", p.as_bytes()));
        }
        if r.body.is_some() {
            headers.push(("content-type", b"application/json"));
        }
        let source = r.source_ip.to_string();
        let facts = RequestFacts::parse(
            r.method,
            &r.path,
            headers,
            r.body.as_ref().map(|b| b.as_bytes().to_vec()),
            Some(&source),
        )
        .map_err(|e| fail(e.to_string()))?;
        let now = i64::try_from(r.at)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| fail("time out of range".into()))?;
        let edge = Edge {
            source_ip: Some(r.source_ip),
            user_agent: Some(r.user_agent),
            on_behalf_of: r.on_behalf_of,
            chain_depth: r.chain_depth,
        };
        let time = UnixSeconds(r.at);
        let scorer = Scorer::new(detectors, state, edge, time);
        let decided = engine
            .decide_with_risk(&facts, format!("sim-{index}"), now, &scorer)
            .map_err(|e| fail(e.to_string()))?;
        let assessment = scorer.into_assessment();
        let verdict = decided.decision.verdict;
        if r.incident {
            incident_seen += 1;
            report.incident_requests += 1;
            report.incident_verdicts[verdict_index(verdict)] += 1;
        } else {
            report.benign += 1;
            report.benign_verdicts[verdict_index(verdict)] += 1;
        }
        let Some(identity) = decided
            .decision
            .identity
            .as_ref()
            .and_then(|id| engine.config().registry.get(id))
        else {
            continue;
        };
        let tool = decided.mcp.as_ref().and_then(|m| m.tool.as_deref());
        let Some(obs) = Observation::from_decision(&decided.decision, identity, tool, edge, now)
        else {
            continue;
        };
        let (assessment, alerts) = record_decided(detectors, state, &obs, assessment, verdict);
        let risk = assessment.risk.get();
        if r.incident {
            report.max_incident_risk = report.max_incident_risk.max(risk);
            if report.detection.is_none()
                && let Some(first) = alerts.first()
            {
                report.detection = Some((incident_seen, first.clone()));
            }
            report
                .incident_alerts
                .extend(alerts.into_iter().map(|a| (incident_seen, a)));
        } else {
            report.max_benign_risk = report.max_benign_risk.max(risk);
            report.false_alerts.extend(alerts);
        }
    }
    Ok(report)
}

/// One row of the detection table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// Its report.
    pub report: RunReport,
}

/// Runs every incident variant for each seed and returns the rows.
pub fn run_matrix(
    engine: &Engine,
    detectors: &Detectors,
    seeds: &[u64],
    days: u32,
    quiet_days: u32,
) -> Result<Vec<Row>, SimError> {
    let mut rows = Vec::new();
    for &seed in seeds {
        for (i, incident) in incident_variants().into_iter().enumerate() {
            let scenario = Scenario {
                seed: seed.wrapping_mul(131).wrapping_add(i as u64),
                days,
                quiet_days,
                incident: Some(incident),
            };
            let report = run(engine, detectors, &generate(&scenario))?;
            rows.push(Row { scenario, report });
        }
    }
    Ok(rows)
}

/// The totals over a set of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Incidents run.
    pub incidents: u64,
    /// Incidents detected at all.
    pub detected: u64,
    /// Incidents detected within `within` incident requests of onset.
    pub detected_within: u64,
    /// Benign requests.
    pub benign: u64,
    /// Alerts on benign requests.
    pub false_alerts: u64,
}

impl Totals {
    /// Totals of `rows`, counting detection within `within` requests.
    pub fn of(rows: &[Row], within: u64) -> Self {
        let mut t = Self::default();
        for r in rows {
            t.incidents += 1;
            t.benign += r.report.benign;
            t.false_alerts += r.report.false_alerts.len() as u64;
            if let Some((n, _)) = &r.report.detection {
                t.detected += 1;
                if *n <= within {
                    t.detected_within += 1;
                }
            }
        }
        t
    }

    /// False alerts per 10,000 benign requests.
    pub fn false_per_10k(&self) -> f64 {
        if self.benign == 0 {
            0.0
        } else {
            self.false_alerts as f64 * 10_000.0 / self.benign as f64
        }
    }
}

/// The detection table as Markdown.
pub fn render(rows: &[Row], within: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| seed | incident | target | detected | requests to detection | alerts during the incident: detector #request (confidence) | incident risk max | benign requests | false alerts | benign risk max |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let Some(inc) = r.scenario.incident else {
            continue;
        };
        let (det, n) = match &r.report.detection {
            Some((n, _)) => ("yes", n.to_string()),
            None => ("**no**", "–".into()),
        };
        // Every detector that alerted during the incident: first request, detector, confidence.
        let mut by: Vec<String> = Vec::new();
        for (n, a) in &r.report.incident_alerts {
            by.push(format!(
                "{} #{n} ({}%)",
                a.detector.as_str(),
                a.confidence.get()
            ));
        }
        let by = if by.is_empty() {
            "–".to_owned()
        } else {
            by.join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {det} | {n} of {} | {by} | {} | {} | {} | {} |",
            r.scenario.seed,
            inc.kind.as_str(),
            inc.target,
            r.report.incident_requests,
            r.report.max_incident_risk,
            r.report.benign,
            r.report.false_alerts.len(),
            r.report.max_benign_risk,
        );
    }
    let t = Totals::of(rows, within);
    let _ = writeln!(
        s,
        "\n**{} of {} incidents detected within {within} requests of onset ({:.1}%); {} detected at all. {} false alerts in {} benign requests ({:.2} per 10,000).**",
        t.detected_within,
        t.incidents,
        if t.incidents == 0 {
            0.0
        } else {
            100.0 * t.detected_within as f64 / t.incidents as f64
        },
        t.detected,
        t.false_alerts,
        t.benign,
        t.false_per_10k(),
    );
    s
}

/// Evidence of the first alert per incident and of every false alert, for reading.
pub fn render_evidence(rows: &[Row]) -> String {
    let mut s = String::new();
    for r in rows {
        let Some(inc) = r.scenario.incident else {
            continue;
        };
        for (n, a) in &r.report.incident_alerts {
            let _ = writeln!(
                s,
                "- seed {} {} / {}: request {n}: {}: {}",
                r.scenario.seed,
                inc.kind.as_str(),
                inc.target,
                a.detector.as_str(),
                a.evidence
            );
        }
        for a in &r.report.false_alerts {
            let _ = writeln!(
                s,
                "- seed {} FALSE ALERT at {}: {}: {}",
                r.scenario.seed,
                a.time.rfc3339(),
                a.detector.as_str(),
                a.evidence
            );
        }
    }
    s
}
