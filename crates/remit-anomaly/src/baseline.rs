//! Baselines: what each identity and each of its credentials usually does, in bounded
//! memory, serialisable so they survive a restart.
//!
//! Every set has a fixed capacity (the `MAX_*` constants). At a set's capacity a new value
//! is not learned and is still reported as new: a full baseline errs towards alerting, not
//! towards accepting. An identity keeps at most [`MAX_CREDENTIALS`] credential baselines; a
//! further credential evicts the one used least recently.

use std::collections::HashMap;

use remit_core::IdentityId;
use remit_core::identity::Schedule;
use serde::{Deserialize, Serialize};

use crate::detect::Detector;
use crate::observe::UnixSeconds;
use crate::set::{BoundedSet, Fingerprint};
use crate::settings::Settings;

/// Distinct actions remembered per identity.
pub const MAX_ACTIONS: usize = 48;
/// Distinct actions remembered as refused while learning (known friction) per identity.
pub const MAX_REFUSED: usize = 16;
/// Distinct MCP tools remembered per identity.
pub const MAX_TOOLS: usize = 32;
/// Distinct resource kinds remembered per identity.
pub const MAX_RESOURCE_TYPES: usize = 16;
/// Distinct purposes remembered per identity.
pub const MAX_PURPOSES: usize = 8;
/// Distinct source networks (/24, /64) remembered per identity.
pub const MAX_NETWORKS: usize = 16;
/// Distinct client families remembered per identity.
pub const MAX_CLIENTS: usize = 8;
/// Distinct delegating humans remembered per identity.
pub const MAX_HUMANS: usize = 32;
/// Credentials with a baseline of their own per identity.
pub const MAX_CREDENTIALS: usize = 4;
/// Distinct source networks remembered per credential.
pub const MAX_CREDENTIAL_NETWORKS: usize = 8;
/// Phase bins of a scheduled job's period.
pub const SCHEDULE_BINS: u64 = 64;

/// Requests per active minute, as an EWMA for each hour of the day (UTC), and the busiest
/// minute seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateBaseline {
    /// The minute being counted (minutes since the epoch).
    pub minute: u64,
    /// Requests so far in that minute.
    pub count: u32,
    /// Whether that minute was flagged as a spike (its count is then not learned as a peak).
    pub spiked: bool,
    /// EWMA of requests per active minute, by hour of day.
    pub ewma: [f32; 24],
    /// Bit `h` is set once hour `h` has an EWMA.
    pub hours: u32,
    /// The busiest unflagged minute.
    pub peak: u32,
}

/// The EWMA's weight of a new minute.
const EWMA_ALPHA: f32 = 0.2;

impl RateBaseline {
    /// Requests in the current minute if one more arrives at `t`.
    pub fn projected(&self, t: UnixSeconds) -> u32 {
        if t.minute() == self.minute {
            self.count.saturating_add(1)
        } else {
            1
        }
    }

    /// The usual requests per active minute at `hour`: that hour's EWMA, or the busiest
    /// hour's when this hour has none yet.
    pub fn usual(&self, hour: usize) -> f32 {
        if self.hours & (1 << hour) != 0 {
            self.ewma[hour]
        } else {
            (0..24)
                .filter(|h| self.hours & (1 << h) != 0)
                .map(|h| self.ewma[h])
                .fold(0.0, f32::max)
        }
    }

    fn record(&mut self, t: UnixSeconds, spiked: bool) {
        let minute = t.minute();
        if minute != self.minute {
            if self.count > 0 {
                // Below 24, so the cast cannot truncate.
                let hour = ((self.minute / 60) % 24) as usize;
                let c = self.count as f32;
                if self.hours & (1 << hour) == 0 {
                    self.ewma[hour] = c;
                    self.hours |= 1 << hour;
                } else {
                    self.ewma[hour] += EWMA_ALPHA * (c - self.ewma[hour]);
                }
                if !self.spiked {
                    self.peak = self.peak.max(self.count);
                }
            }
            self.minute = minute;
            self.count = 0;
            self.spiked = false;
        }
        self.count = self.count.saturating_add(1);
        self.spiked |= spiked;
    }
}

/// When a scheduled job's runs begin within its period, and how long they last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleBaseline {
    /// When the current run began.
    pub run_start: UnixSeconds,
    /// The last request.
    pub last: UnixSeconds,
    /// Bit `b` is set once a run began in phase bin `b` of the period.
    pub phases: u64,
    /// Runs seen.
    pub runs: u32,
    /// The longest completed run, in seconds.
    pub max_run_s: u32,
}

impl ScheduleBaseline {
    /// The quiet time that separates two runs of a job with this period.
    pub fn run_gap_s(period_s: u32) -> u64 {
        (u64::from(period_s) / 6).clamp(60, 1800)
    }

    /// The phase bin of `t` within the period.
    pub fn bin(t: UnixSeconds, period_s: u32) -> u64 {
        let p = u64::from(period_s.max(1));
        (t.0 % p) * SCHEDULE_BINS / p
    }

    /// Whether a request at `t` begins a new run.
    pub fn starts_run(&self, t: UnixSeconds, period_s: u32) -> bool {
        self.runs == 0 || t.since(self.last) > Self::run_gap_s(period_s)
    }

    /// Whether a run beginning in `bin` is at a phase seen before (within two bins).
    pub fn phase_known(&self, bin: u64) -> bool {
        (0..=4).any(|d| {
            let b = (bin + SCHEDULE_BINS + d - 2) % SCHEDULE_BINS;
            self.phases & (1 << b) != 0
        })
    }

    fn record(&mut self, t: UnixSeconds, schedule: Schedule) {
        let Schedule::Every { seconds } = schedule;
        if self.starts_run(t, seconds) {
            if self.runs > 0 {
                let len = u32::try_from(self.last.since(self.run_start)).unwrap_or(u32::MAX);
                self.max_run_s = self.max_run_s.max(len);
            }
            self.run_start = t;
            self.runs = self.runs.saturating_add(1);
            self.phases |= 1 << Self::bin(t, seconds);
        }
        self.last = t;
    }
}

/// Unusual denials and first uses of capabilities in the current probe window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeState {
    /// When the window began.
    pub window_start: UnixSeconds,
    /// Denials and first uses in the window.
    pub events: u16,
    /// Consecutive denials up to the last request.
    pub deny_run: u16,
    /// When probing was last signalled (0: never).
    pub flagged_at: UnixSeconds,
}

/// What one credential usually does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialBaseline {
    /// The credential id's fingerprint.
    pub credential: Fingerprint,
    /// Requests made with it.
    pub requests: u64,
    /// Its first use.
    pub first_seen: UnixSeconds,
    /// Its last use.
    pub last_seen: UnixSeconds,
    /// Networks it was used from.
    pub networks: BoundedSet<MAX_CREDENTIAL_NETWORKS>,
    /// The network of its last request and when.
    pub last_network: Option<(Fingerprint, UnixSeconds)>,
    /// Whether it was used from two networks at once while learning (then that is usual).
    pub concurrent_usual: bool,
}

/// What one identity usually does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdentityBaseline {
    /// Requests seen.
    pub requests: u64,
    /// Of which denied.
    pub denied: u64,
    /// Of which on behalf of a human.
    pub delegated: u64,
    /// The first request.
    pub first_seen: UnixSeconds,
    /// The last request.
    pub last_seen: UnixSeconds,
    /// The longest gap between two requests, in seconds.
    pub max_gap_s: u64,
    /// Actions used.
    pub actions: BoundedSet<MAX_ACTIONS>,
    /// Actions denied while learning: friction that is usual, so not probing.
    pub refused: BoundedSet<MAX_REFUSED>,
    /// MCP tools used.
    pub tools: BoundedSet<MAX_TOOLS>,
    /// Resource kinds used.
    pub resource_types: BoundedSet<MAX_RESOURCE_TYPES>,
    /// Purposes declared.
    pub purposes: BoundedSet<MAX_PURPOSES>,
    /// Source networks.
    pub networks: BoundedSet<MAX_NETWORKS>,
    /// Client families.
    pub clients: BoundedSet<MAX_CLIENTS>,
    /// Delegating humans.
    pub humans: BoundedSet<MAX_HUMANS>,
    /// The deepest delegation chain seen.
    pub max_chain_depth: u8,
    /// Request rate.
    pub rate: RateBaseline,
    /// Schedule adherence (scheduled jobs).
    pub schedule: ScheduleBaseline,
    /// Probing.
    pub probe: ProbeState,
    /// Per-credential baselines, at most [`MAX_CREDENTIALS`].
    pub credentials: Vec<CredentialBaseline>,
    /// When each detector last alerted (0: never), indexed by [`Detector::index`].
    pub last_alert: [UnixSeconds; Detector::COUNT],
    /// The risk remembered from the last request.
    pub risk: u8,
    /// When it was remembered.
    pub risk_at: UnixSeconds,
}

impl IdentityBaseline {
    /// The most memory one identity's baseline can use, inline and on the heap, in bytes.
    pub const MAX_BYTES: usize = std::mem::size_of::<Self>() + Self::MAX_HEAP_BYTES;

    /// The most heap memory one identity's baseline can use, in bytes.
    pub const MAX_HEAP_BYTES: usize = BoundedSet::<MAX_ACTIONS>::MAX_HEAP_BYTES
        + BoundedSet::<MAX_REFUSED>::MAX_HEAP_BYTES
        + BoundedSet::<MAX_TOOLS>::MAX_HEAP_BYTES
        + BoundedSet::<MAX_RESOURCE_TYPES>::MAX_HEAP_BYTES
        + BoundedSet::<MAX_PURPOSES>::MAX_HEAP_BYTES
        + BoundedSet::<MAX_NETWORKS>::MAX_HEAP_BYTES
        + BoundedSet::<MAX_CLIENTS>::MAX_HEAP_BYTES
        + BoundedSet::<MAX_HUMANS>::MAX_HEAP_BYTES
        + MAX_CREDENTIALS
            * (std::mem::size_of::<CredentialBaseline>()
                + BoundedSet::<MAX_CREDENTIAL_NETWORKS>::MAX_HEAP_BYTES);

    /// Heap bytes in use now.
    pub fn heap_bytes(&self) -> usize {
        self.actions.heap_bytes()
            + self.refused.heap_bytes()
            + self.tools.heap_bytes()
            + self.resource_types.heap_bytes()
            + self.purposes.heap_bytes()
            + self.networks.heap_bytes()
            + self.clients.heap_bytes()
            + self.humans.heap_bytes()
            + self.credentials.capacity() * std::mem::size_of::<CredentialBaseline>()
            + self
                .credentials
                .iter()
                .map(|c| c.networks.heap_bytes())
                .sum::<usize>()
    }

    /// Whether the learning period is over at `t`.
    pub fn watching(&self, settings: &Settings, t: UnixSeconds) -> bool {
        self.requests >= u64::from(settings.learning.requests)
            && t.since(self.first_seen) >= settings.learning.duration_s
    }

    /// The baseline of a credential, by fingerprint.
    pub fn credential(&self, fp: Fingerprint) -> Option<&CredentialBaseline> {
        self.credentials.iter().find(|c| c.credential == fp)
    }

    /// The baseline of a credential, created (evicting the least recently used at the
    /// limit) if new.
    pub(crate) fn credential_mut(
        &mut self,
        fp: Fingerprint,
        t: UnixSeconds,
    ) -> &mut CredentialBaseline {
        let at = match self.credentials.iter().position(|c| c.credential == fp) {
            Some(i) => i,
            None => {
                let fresh = CredentialBaseline {
                    credential: fp,
                    first_seen: t,
                    ..CredentialBaseline::default()
                };
                if self.credentials.len() >= MAX_CREDENTIALS {
                    let lru = self
                        .credentials
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, c)| c.last_seen)
                        .map_or(0, |(i, _)| i);
                    self.credentials[lru] = fresh;
                    lru
                } else {
                    self.credentials.reserve_exact(1);
                    self.credentials.push(fresh);
                    self.credentials.len() - 1
                }
            }
        };
        &mut self.credentials[at]
    }

    /// The risk remembered at `t`, halved every `half_life_s`.
    pub fn remembered_risk(&self, t: UnixSeconds, half_life_s: u64) -> f32 {
        if self.risk == 0 {
            return 0.0;
        }
        let halves = t.since(self.risk_at) as f32 / half_life_s.max(1) as f32;
        f32::from(self.risk) * 0.5f32.powf(halves)
    }
}

/// Everyone's baselines: the detectors' whole state. Keyed by identity; at most
/// [`Settings::max_identities`] entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Each identity's baseline.
    pub identities: HashMap<IdentityId, IdentityBaseline>,
    /// Observations of identities not tracked because the limit was reached.
    pub untracked: u64,
    /// Alerts issued so far (the next alert's sequence number).
    pub alerts_issued: u64,
}

impl Baselines {
    /// The most memory one tracked identity can cost the state, in bytes: its baseline's
    /// heap, its id (at most 128 bytes), and its hash-map slot (the table holds at most
    /// 16/7 slots per entry, plus a control byte each, right after it grows).
    pub const MAX_BYTES_PER_IDENTITY: usize = IdentityBaseline::MAX_HEAP_BYTES
        + remit_core::names::MAX_NAME_LEN
        + (std::mem::size_of::<(IdentityId, IdentityBaseline)>() + 1) * 16 / 7
        + 1;

    /// Heap bytes in use now (the table, the ids and every baseline).
    pub fn heap_bytes(&self) -> usize {
        self.identities.capacity() * (std::mem::size_of::<(IdentityId, IdentityBaseline)>() + 1)
            + self
                .identities
                .iter()
                .map(|(k, v)| k.as_str().len() + v.heap_bytes())
                .sum::<usize>()
    }

    /// Serialises the state (JSON), for the store.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Reads a state written by [`Baselines::to_json`]; refuses sets over their bound.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let state: Self = serde_json::from_slice(bytes)?;
        Ok(state)
    }
}

/// The row name under which [`Baselines::to_rows`] keeps the state's counters. An identity
/// id cannot begin with `_`, so it never collides with one.
pub const COUNTERS_ROW: &str = "_counters";

/// Why saved baselines could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A row is not a baseline (or breaks a set's bound).
    #[error("the saved baseline of `{row}` cannot be read: {source}")]
    Row {
        /// The row's identity (or [`COUNTERS_ROW`]).
        row: String,
        /// What is wrong with it.
        source: serde_json::Error,
    },
    /// A row names no valid identity.
    #[error("a saved baseline names `{0}`, which is not an identity id")]
    Identity(String),
    /// More rows than identities may be tracked.
    #[error("more than {0} saved baselines")]
    TooMany(usize),
}

#[derive(Serialize, Deserialize)]
struct Counters {
    untracked: u64,
    alerts_issued: u64,
}

impl Baselines {
    /// Each identity's baseline as JSON, plus the counters' row: what a store keeps, one
    /// row per identity, so a restart resumes where it stopped.
    pub fn to_rows(&self) -> Result<Vec<(String, String)>, serde_json::Error> {
        let mut rows = Vec::with_capacity(self.identities.len() + 1);
        rows.push((
            COUNTERS_ROW.to_owned(),
            serde_json::to_string(&Counters {
                untracked: self.untracked,
                alerts_issued: self.alerts_issued,
            })?,
        ));
        for (id, b) in &self.identities {
            rows.push((id.as_str().to_owned(), serde_json::to_string(b)?));
        }
        Ok(rows)
    }

    /// Reads rows written by [`Baselines::to_rows`]; refuses more than `max_identities`
    /// identities, bad ids and sets over their bounds.
    pub fn from_rows(
        rows: impl IntoIterator<Item = (String, String)>,
        max_identities: usize,
    ) -> Result<Self, StateError> {
        let mut state = Self::default();
        for (row, json) in rows {
            let bad = |source| StateError::Row {
                row: row.clone(),
                source,
            };
            if row == COUNTERS_ROW {
                let c: Counters = serde_json::from_str(&json).map_err(bad)?;
                state.untracked = c.untracked;
                state.alerts_issued = c.alerts_issued;
                continue;
            }
            if state.identities.len() >= max_identities {
                return Err(StateError::TooMany(max_identities));
            }
            let id = IdentityId::parse(&row).map_err(|_| StateError::Identity(row.clone()))?;
            let b: IdentityBaseline = serde_json::from_str(&json).map_err(bad)?;
            state.identities.insert(id, b);
        }
        Ok(state)
    }
}

pub(crate) mod learn {
    //! Updating a baseline with one observed request (after its verdict).

    use remit_core::Verdict;

    use super::{CredentialBaseline, IdentityBaseline};
    use crate::observe::{Observation, domain};
    use crate::set::Fingerprint;
    use crate::settings::Settings;

    /// What the assessment found that learning needs to know.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Flags {
        pub spiked: bool,
        pub probing: bool,
    }

    pub fn learn(
        b: &mut IdentityBaseline,
        settings: &Settings,
        obs: &Observation<'_>,
        verdict: Verdict,
        flags: Flags,
    ) {
        let t = obs.time;
        let watching = b.watching(settings, t);
        let denied = verdict == Verdict::Deny;
        if b.requests == 0 {
            b.first_seen = t;
        } else {
            b.max_gap_s = b.max_gap_s.max(t.since(b.last_seen));
        }
        b.requests = b.requests.saturating_add(1);
        b.last_seen = b.last_seen.max(t);
        if denied {
            b.denied = b.denied.saturating_add(1);
        }
        if obs.on_behalf_of.is_some() {
            b.delegated = b.delegated.saturating_add(1);
        }

        // Capabilities: learned from all traffic while learning, and afterwards only from
        // what was allowed, so a refused probe never becomes usual.
        let action = Fingerprint::of(domain::ACTION, obs.action.as_str().as_bytes());
        let tool = obs
            .tool
            .map(|x| Fingerprint::of(domain::TOOL, x.as_bytes()));
        let novel = !b.actions.contains(action) || tool.is_some_and(|fp| !b.tools.contains(fp));
        if denied && !watching {
            b.refused.insert(action);
        }
        // A denial counts towards probing unless the identity was refused that action
        // while learning (usual friction, such as an agent over a page-size cap).
        let probe_event = novel || (denied && !b.refused.contains(action));
        if !watching || verdict == Verdict::Allow {
            b.actions.insert(action);
            if let Some(fp) = tool {
                b.tools.insert(fp);
            }
            b.resource_types.insert(Fingerprint::of(
                domain::RESOURCE_TYPE,
                obs.resource_type.as_str().as_bytes(),
            ));
            if let Some(p) = obs.purpose {
                b.purposes
                    .insert(Fingerprint::of(domain::PURPOSE, p.as_str().as_bytes()));
            }
        }
        if let Some(n) = obs.network {
            b.networks.insert(n.fingerprint());
        }
        if let Some(c) = &obs.client {
            b.clients.insert(c.fingerprint());
        }
        if let Some(h) = obs.on_behalf_of {
            b.humans
                .insert(Fingerprint::of(domain::HUMAN, h.as_bytes()));
        }
        b.max_chain_depth = b.max_chain_depth.max(obs.chain_depth);
        b.rate.record(t, flags.spiked);
        if let Some(s) = obs.schedule {
            b.schedule.record(t, s);
        }

        // Probing: a window of denials and first uses.
        let p = &mut b.probe;
        if t.since(p.window_start) > settings.probe_window_s {
            p.window_start = t;
            p.events = 0;
        }
        if watching && probe_event {
            p.events = p.events.saturating_add(1);
        }
        p.deny_run = if denied {
            p.deny_run.saturating_add(1)
        } else {
            0
        };
        if flags.probing {
            p.flagged_at = t;
        }

        if let Some(c) = obs.credential {
            let fp = Fingerprint::of(domain::CREDENTIAL, c.as_str().as_bytes());
            let cred: &mut CredentialBaseline = b.credential_mut(fp, t);
            cred.requests = cred.requests.saturating_add(1);
            cred.last_seen = cred.last_seen.max(t);
            if let Some(n) = obs.network {
                let nfp = n.fingerprint();
                if let Some((last, at)) = cred.last_network
                    && last != nfp
                    && t.since(at) <= settings.concurrent_window_s
                    && !watching
                {
                    cred.concurrent_usual = true;
                }
                cred.networks.insert(nfp);
                cred.last_network = Some((nfp, t));
            }
        }
    }
}
