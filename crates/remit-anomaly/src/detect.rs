//! The detectors: each reads a learned baseline and one observation and, when the request
//! departs from the baseline, gives a [`Signal`] with a confidence and one sentence naming
//! the evidence. Signals combine into a `risk` score (0–100); those at or above the alert
//! threshold become [`Alert`]s once the verdict is known.

use std::fmt::Write as _;

use remit_core::identity::Schedule;
use remit_core::{Class, CredentialId, IdentityId, Verdict};
use serde::{Deserialize, Serialize};

use crate::baseline::learn::{Flags, learn};
use crate::baseline::{Baselines, IdentityBaseline, ScheduleBaseline};
use crate::observe::{Observation, UnixSeconds, domain};
use crate::set::Fingerprint;
use crate::settings::{Confidence, Settings, SettingsError};

/// The detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// A new action, tool or resource kind (strict for class `automation`).
    ScopeExpansion,
    /// Far more requests in a minute than usual for the hour.
    RateSpike,
    /// A credential used from a network or by client software never seen for it.
    NewOrigin,
    /// One credential used from two networks at once.
    ConcurrentOrigins,
    /// A run of denials or first uses of capabilities, or a burst after one.
    Probing,
    /// A scheduled job active outside its usual run times.
    OffSchedule,
    /// The first request after a long silence.
    Dormancy,
    /// A delegating identity acting without its human, or for a human it never served.
    Delegation,
    /// A delegation chain deeper than usual.
    DeepDelegation,
}

impl Detector {
    /// How many detectors there are.
    pub const COUNT: usize = 9;

    /// Its position, for per-detector arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its name in alerts and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScopeExpansion => "scope_expansion",
            Self::RateSpike => "rate_spike",
            Self::NewOrigin => "new_origin",
            Self::ConcurrentOrigins => "concurrent_origins",
            Self::Probing => "probing",
            Self::OffSchedule => "off_schedule",
            Self::Dormancy => "dormancy",
            Self::Delegation => "delegation",
            Self::DeepDelegation => "deep_delegation",
        }
    }
}

/// One detector's finding on one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// Which detector.
    pub detector: Detector,
    /// How sure it is.
    pub confidence: Confidence,
    /// One sentence naming the evidence.
    pub evidence: String,
}

/// A request's risk, 0–100, for the policy context (`context.risk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Risk(u8);

impl Risk {
    /// The score.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// What the detectors make of one request before its verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// Signals, at most one per detector.
    pub signals: Vec<Signal>,
    /// The combined risk, never below the identity's decayed recent risk.
    pub risk: Risk,
    /// Whether the identity's learning period is over.
    pub watching: bool,
}

/// An alert's id: `al-<unix seconds>-<sequence>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertId(String);

impl AlertId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A signal confident enough to be acted on, about one identity and credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Its id.
    pub id: AlertId,
    /// The identity.
    pub identity: IdentityId,
    /// The credential, when the request presented one.
    pub credential: Option<CredentialId>,
    /// Which detector.
    pub detector: Detector,
    /// How sure.
    pub confidence: Confidence,
    /// One sentence naming the evidence.
    pub evidence: String,
    /// When.
    pub time: UnixSeconds,
}

/// Longest piece of client-supplied text (a tool or human name) quoted in evidence.
const MAX_QUOTED: usize = 64;

/// Quotes client-supplied text for evidence: escaped and shortened.
fn quoted(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_QUOTED)
        .flat_map(char::escape_default)
        .collect();
    if s.chars().count() > MAX_QUOTED {
        out.push('…');
    }
    out
}

/// The detectors and their settings.
#[derive(Debug, Clone)]
pub struct Detectors {
    settings: Settings,
}

impl Detectors {
    /// Detectors with validated settings.
    pub fn new(settings: Settings) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(Self { settings })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Assesses a request against its identity's baseline. Read-only, so it can run before
    /// the policy decision and feed `context.risk`.
    pub fn assess(&self, state: &Baselines, obs: &Observation<'_>) -> Assessment {
        let Some(b) = state.identities.get(obs.identity) else {
            return Assessment::default();
        };
        let s = &self.settings;
        let prior = b.remembered_risk(obs.time, s.risk_half_life_s);
        if !b.watching(s, obs.time) {
            return Assessment {
                signals: Vec::new(),
                risk: Risk(prior.round().clamp(0.0, 100.0) as u8),
                watching: false,
            };
        }
        let mut signals = Vec::new();
        let checks: [Check; Detector::COUNT] = [
            scope_expansion,
            rate_spike,
            new_origin,
            concurrent_origins,
            probing,
            off_schedule,
            dormancy,
            delegation,
            deep_delegation,
        ];
        for check in checks {
            if let Some(sig) = check(s, b, obs) {
                signals.push(sig);
            }
        }
        let clear: f32 = signals
            .iter()
            .map(|sig| 1.0 - sig.confidence.probability())
            .product();
        let now = 100.0 * (1.0 - clear);
        Assessment {
            signals,
            risk: Risk(now.max(prior).round().clamp(0.0, 100.0) as u8),
            watching: true,
        }
    }

    /// Records a decided request: issues alerts for confident signals (once per detector
    /// and identity per cooldown) and updates the baselines.
    pub fn record(
        &self,
        state: &mut Baselines,
        obs: &Observation<'_>,
        assessment: &Assessment,
        verdict: Verdict,
    ) -> Vec<Alert> {
        let s = &self.settings;
        if !state.identities.contains_key(obs.identity) {
            if state.identities.len() >= s.max_identities {
                state.untracked = state.untracked.saturating_add(1);
                return Vec::new();
            }
            state
                .identities
                .insert(obs.identity.clone(), IdentityBaseline::default());
        }
        let mut alerts = Vec::new();
        let Some(b) = state.identities.get_mut(obs.identity) else {
            return alerts;
        };
        let t = obs.time;
        for sig in &assessment.signals {
            let last = b.last_alert[sig.detector.index()];
            let cooled = last.0 == 0 || t.since(last) >= s.cooldown_s;
            if sig.confidence >= s.alert_threshold && cooled {
                b.last_alert[sig.detector.index()] = t;
                state.alerts_issued = state.alerts_issued.saturating_add(1);
                alerts.push(Alert {
                    id: AlertId(format!("al-{}-{}", t.0, state.alerts_issued)),
                    identity: obs.identity.clone(),
                    credential: obs.credential.cloned(),
                    detector: sig.detector,
                    confidence: sig.confidence,
                    evidence: sig.evidence.clone(),
                    time: t,
                });
            }
        }
        let has = |d: Detector| assessment.signals.iter().any(|sig| sig.detector == d);
        let flags = Flags {
            spiked: has(Detector::RateSpike),
            probing: has(Detector::Probing),
        };
        learn(b, s, obs, verdict, flags);
        b.risk = assessment.risk.get();
        b.risk_at = t;
        alerts
    }

    /// [`Detectors::assess`] then [`Detectors::record`], for callers that learn the verdict
    /// before observing.
    pub fn observe(
        &self,
        state: &mut Baselines,
        obs: &Observation<'_>,
        verdict: Verdict,
    ) -> (Assessment, Vec<Alert>) {
        let assessment = self.assess(state, obs);
        let alerts = self.record(state, obs, &assessment, verdict);
        (assessment, alerts)
    }
}

/// One detector: settings, the baseline and the request in, a signal out.
type Check = fn(&Settings, &IdentityBaseline, &Observation<'_>) -> Option<Signal>;

fn signal(detector: Detector, percent: u8, evidence: String) -> Option<Signal> {
    Some(Signal {
        detector,
        confidence: Confidence::percent(percent),
        evidence,
    })
}

fn full_note<const N: usize>(set: &crate::set::BoundedSet<N>, what: &str) -> String {
    if set.is_full() {
        format!(" (its baseline of {N} {what} is full)")
    } else {
        String::new()
    }
}

/// A new action, tool or resource kind. For class `automation` any novelty alerts; for
/// assistants and agents a new non-sensitive action only raises risk.
fn scope_expansion(_: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    let strict = o.class == Class::Automation;
    let mut best = 0u8;
    let mut parts: Vec<String> = Vec::new();
    if !b.actions.contains(Fingerprint::of(
        domain::ACTION,
        o.action.as_str().as_bytes(),
    )) {
        best = best.max(match (strict, o.sensitive) {
            (true, _) => 90,
            (false, true) => 70,
            (false, false) => 40,
        });
        parts.push(format!(
            "the action `{}`{}",
            o.action,
            full_note(&b.actions, "actions")
        ));
    }
    if let Some(tool) = o.tool
        && !b
            .tools
            .contains(Fingerprint::of(domain::TOOL, tool.as_bytes()))
    {
        best = best.max(if strict { 90 } else { 60 });
        parts.push(format!(
            "the tool `{}`{}",
            quoted(tool),
            full_note(&b.tools, "tools")
        ));
    }
    if !b.resource_types.contains(Fingerprint::of(
        domain::RESOURCE_TYPE,
        o.resource_type.as_str().as_bytes(),
    )) {
        best = best.max(if strict { 80 } else { 50 });
        parts.push(format!(
            "the resource kind `{}`{}",
            o.resource_type,
            full_note(&b.resource_types, "resource kinds")
        ));
    }
    if parts.is_empty() {
        return None;
    }
    signal(
        Detector::ScopeExpansion,
        best,
        format!(
            "identity `{}` ({}) asked for {}, not used in its {} earlier requests",
            o.identity,
            o.class,
            parts.join(" and "),
            b.requests
        ),
    )
}

/// More requests this minute than the spike factor times the usual rate for the hour and
/// half again the busiest minute seen.
fn rate_spike(s: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    let n = b.rate.projected(o.time);
    let hour = o.time.hour_of_day();
    let usual = b.rate.usual(hour);
    let threshold = (s.spike_factor * usual)
        .ceil()
        .max(s.min_burst as f32)
        .max(b.rate.peak as f32 * 1.5);
    if (n as f32) <= threshold {
        return None;
    }
    signal(
        Detector::RateSpike,
        if (n as f32) > 2.0 * threshold { 90 } else { 70 },
        format!(
            "identity `{}` made {n} requests in the current minute, against a usual {usual:.1} per active minute at {hour:02}:00 UTC and a busiest minute of {}",
            o.identity, b.rate.peak
        ),
    )
}

/// A network (/24, /64) or client family the identity and credential never used.
fn new_origin(_: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    let cred = o.credential.map(|c| {
        (
            c,
            b.credential(Fingerprint::of(domain::CREDENTIAL, c.as_str().as_bytes())),
        )
    });
    let mut conf = 0u8;
    let mut parts = Vec::new();
    if let Some(net) = o.network {
        let fp = net.fingerprint();
        if !b.networks.contains(fp) {
            conf = if o.class == Class::Automation { 85 } else { 75 };
            parts.push(format!(
                "from {net}, a network identity `{}` has not used{}",
                o.identity,
                full_note(&b.networks, "networks")
            ));
        } else if let Some((_, Some(c))) = cred
            && !c.networks.contains(fp)
        {
            conf = 30;
            parts.push(format!(
                "from {net}, which its identity uses but this credential has not"
            ));
        }
    }
    if let Some(client) = &o.client
        && !b.clients.contains(client.fingerprint())
    {
        conf = if conf >= 75 { 95 } else { conf.max(55) };
        parts.push(format!(
            "by client `{}`, which identity `{}` has not used{}",
            client.as_str(),
            o.identity,
            full_note(&b.clients, "clients")
        ));
    }
    if parts.is_empty() {
        return None;
    }
    let who = match cred {
        Some((c, _)) => format!("credential `{c}`"),
        None => format!("identity `{}`", o.identity),
    };
    signal(
        Detector::NewOrigin,
        conf,
        format!(
            "{who} was used {} (after {} requests)",
            parts.join(" and "),
            b.requests
        ),
    )
}

/// The same credential from two networks within the concurrency window, when it never
/// was while learning.
fn concurrent_origins(s: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    let (c, net) = (o.credential?, o.network?);
    let cred = b.credential(Fingerprint::of(domain::CREDENTIAL, c.as_str().as_bytes()))?;
    let (last, at) = cred.last_network?;
    let gap = o.time.since(at);
    if last == net.fingerprint() || gap > s.concurrent_window_s || cred.concurrent_usual {
        return None;
    }
    // Two networks the credential already uses (a runner pool) are weak evidence; one
    // it never used is strong.
    let known = cred.networks.contains(net.fingerprint());
    signal(
        Detector::ConcurrentOrigins,
        if known { 40 } else { 75 },
        format!(
            "credential `{c}` was used from {net}{} {gap} s after a request from another network; in {} requests it was never used from two networks at once",
            if known {
                ""
            } else {
                ", a network it never used,"
            },
            cred.requests
        ),
    )
}

/// Denials and first uses of capabilities piling up in the probe window; and a burst
/// within `burst_after_probe_s` of probing.
fn probing(s: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    let p = &b.probe;
    let t = o.time;
    if p.flagged_at.0 != 0 && t.since(p.flagged_at) <= s.burst_after_probe_s {
        let n = b.rate.projected(t);
        if n >= s.min_burst / 2 {
            return signal(
                Detector::Probing,
                95,
                format!(
                    "identity `{}` made {n} requests in a minute {} s after probing",
                    o.identity,
                    t.since(p.flagged_at)
                ),
            );
        }
    }
    let novel = !b.actions.contains(Fingerprint::of(
        domain::ACTION,
        o.action.as_str().as_bytes(),
    )) || o.tool.is_some_and(|x| {
        !b.tools
            .contains(Fingerprint::of(domain::TOOL, x.as_bytes()))
    });
    let prior = if t.since(p.window_start) <= s.probe_window_s {
        p.events
    } else {
        0
    };
    let events = prior.saturating_add(u16::from(novel));
    if events < s.probe_events {
        return None;
    }
    // An identity that is often refused anyway makes denials weak evidence.
    let noisy = b.denied.saturating_mul(5) > b.requests;
    let mut evidence = format!(
        "identity `{}` had {events} unusual denials and first uses of capabilities within {} s",
        o.identity,
        t.since(p.window_start).max(1)
    );
    if p.deny_run >= 2 {
        let _ = write!(
            evidence,
            ", its last {} requests denied in a row",
            p.deny_run
        );
    }
    if novel {
        let _ = write!(evidence, ", now asking for `{}`", o.action);
    }
    signal(Detector::Probing, if noisy { 35 } else { 70 }, evidence)
}

/// A job's run beginning at a phase of its period none of its runs began at, or running
/// far longer than its longest run.
fn off_schedule(_: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    let Schedule::Every { seconds } = o.schedule?;
    let sb = &b.schedule;
    if sb.runs < 3 {
        return None;
    }
    let t = o.time;
    let into = t.0 % u64::from(seconds.max(1));
    if sb.starts_run(t, seconds) {
        if sb.phase_known(ScheduleBaseline::bin(t, seconds)) {
            return None;
        }
        return signal(
            Detector::OffSchedule,
            80,
            format!(
                "job `{}` (every {seconds} s) began a run {}m{:02}s into its period, where none of its {} runs began",
                o.identity,
                into / 60,
                into % 60,
                sb.runs
            ),
        );
    }
    let elapsed = t.since(sb.run_start);
    let limit = (2 * u64::from(sb.max_run_s)).max(120);
    if elapsed <= limit {
        return None;
    }
    signal(
        Detector::OffSchedule,
        70,
        format!(
            "job `{}` has been running for {elapsed} s, more than twice its longest run ({} s)",
            o.identity, sb.max_run_s
        ),
    )
}

/// The first request after a gap longer than both the dormancy minimum and the dormancy
/// factor times the longest gap seen.
fn dormancy(s: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    let gap = o.time.since(b.last_seen);
    let threshold = s
        .dormancy_min_s
        .max(b.max_gap_s.saturating_mul(u64::from(s.dormancy_factor)));
    if gap <= threshold {
        return None;
    }
    signal(
        Detector::Dormancy,
        65,
        format!(
            "identity `{}` was used after {:.1} days idle; its longest gap before was {:.1} hours",
            o.identity,
            gap as f64 / 86_400.0,
            b.max_gap_s as f64 / 3600.0
        ),
    )
}

/// Fewer than one in twenty of an identity's requests are normally its own authority; or
/// a human it never acted for.
fn delegation(_: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    match o.on_behalf_of {
        None if b.requests >= 20
            && b.delegated.saturating_mul(20) >= b.requests.saturating_mul(19) =>
        {
            signal(
                Detector::Delegation,
                80,
                format!(
                    "identity `{}` acted on its own authority, without a delegating human, although {} of its {} requests were on behalf of one",
                    o.identity, b.delegated, b.requests
                ),
            )
        }
        Some(h)
            if !b.humans.is_empty()
                && !b
                    .humans
                    .contains(Fingerprint::of(domain::HUMAN, h.as_bytes())) =>
        {
            signal(
                Detector::Delegation,
                30,
                format!(
                    "identity `{}` acted for `{}`, a human it has not acted for before{}",
                    o.identity,
                    quoted(h),
                    full_note(&b.humans, "humans")
                ),
            )
        }
        _ => None,
    }
}

/// A delegation chain deeper than any seen.
fn deep_delegation(_: &Settings, b: &IdentityBaseline, o: &Observation<'_>) -> Option<Signal> {
    if o.chain_depth <= b.max_chain_depth {
        return None;
    }
    signal(
        Detector::DeepDelegation,
        if o.chain_depth > b.max_chain_depth.saturating_add(1) {
            80
        } else {
            60
        },
        format!(
            "identity `{}` acted through a delegation chain of depth {}, deeper than the {} it reached in {} requests",
            o.identity, o.chain_depth, b.max_chain_depth, b.requests
        ),
    )
}
