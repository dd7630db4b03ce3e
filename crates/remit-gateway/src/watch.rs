//! Behaviour watch in the running gateway: every door decides with a risk score from the
//! detectors (`context.risk`), and every recorded decision (allowed or refused) is learned
//! and may raise alerts.
//!
//! ```text
//! begin:  read lock on the baselines ─► Scorer ─► Engine::begin_with_risk     (risk in context)
//! finish: Engine::finish_observed ─► Watching::observe: write lock, learn, alerts,
//!         quarantine on a leaked-credential signal ─► record carries the alerts ─► durable
//! after:  alerts ─► bounded queue ─► alert task: the store's `alerts` table, then the webhook
//! ```
//!
//! The baselines sit behind one `RwLock`: scoring takes a read lock for the length of a
//! decision, learning a write lock for one `record` call (about a microsecond), and nothing
//! that waits (IO, `.await`) ever runs under either. Baselines are loaded at start and saved
//! by [`Watch::save`] (periodically and at a graceful stop).

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use remit_anomaly::{
    Alert, Assessment, Baselines, Detector, Detectors, Edge, Learning, Observation, Scorer,
    Settings, UnixSeconds, record_decided,
};
use remit_core::config::{AlertSettings, AnomalySettings};
use remit_core::mcp::McpMessage;
use remit_core::{AlertNote, Decision, IdentityId, RecordSink, RequestFacts, Verdict};
use remit_engine::risk::Observer;
use remit_engine::{BadRequest, Engine, Finished, Pending};
use remit_store::SqliteStore;
use remit_store::alerts::{AlertBook, AlertId, NewAlert};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::webhook;

/// Identities copied per read lock when the baselines are saved.
pub const SAVE_CHUNK: usize = 1024;

/// Why the watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The detector settings are out of range.
    #[error(transparent)]
    Settings(#[from] remit_anomaly::SettingsError),
    /// The saved baselines could not be read.
    #[error("the saved behaviour baselines cannot be read: {0}")]
    State(#[from] remit_anomaly::StateError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] remit_store::StoreError),
    /// The baselines could not be serialised.
    #[error("serialising the behaviour baselines: {0}")]
    Serialise(#[from] serde_json::Error),
    /// The webhook client could not be built.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
}

/// The detectors' settings from `[anomaly]`.
pub fn detector_settings(a: &AnomalySettings) -> Settings {
    Settings {
        learning: Learning {
            requests: a.learning_requests,
            duration_s: a.learning_duration_s,
        },
        alert_threshold: remit_anomaly::Confidence::percent(a.alert_threshold),
        cooldown_s: a.cooldown_s,
        max_identities: a.max_identities,
        ..Settings::default()
    }
}

/// The detectors, the baselines and where alerts go.
pub struct Watch {
    engine: Arc<Engine>,
    detectors: Detectors,
    baselines: RwLock<Baselines>,
    settings: AlertSettings,
    book: AlertBook,
    alerts: mpsc::Sender<Vec<NewAlert>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    /// Starts the watch: reads `[anomaly]` and `[alerts]`, loads this replica's saved
    /// baselines from `store` (identities keep watching where they left off) and spawns the
    /// alert task. Must run inside a Tokio runtime.
    pub async fn start(engine: Arc<Engine>, store: &SqliteStore) -> Result<Arc<Self>, WatchError> {
        let config = engine.config();
        let detectors = Detectors::new(detector_settings(&config.anomaly))?;
        let rows = store.load_baselines().await?;
        let loaded = rows.len();
        let baselines = Baselines::from_rows(rows, config.anomaly.max_identities)?;
        tracing::info!(
            identities = baselines.identities.len(),
            rows = loaded,
            "behaviour baselines loaded"
        );
        let settings = config.alerts.clone();
        let book = store.alerts();
        let alerts =
            webhook::spawn_alert_task(book.clone(), &settings, config.gateway.replica_id.clone())?;
        Ok(Arc::new(Self {
            engine,
            detectors,
            baselines: RwLock::new(baselines),
            settings,
            book,
            alerts,
        }))
    }

    /// The alerts table, for the admin API.
    pub fn book(&self) -> &AlertBook {
        &self.book
    }

    /// Saves every identity's baseline to `store` (one transaction). The baselines are
    /// copied [`SAVE_CHUNK`] identities at a time under the read lock and serialised
    /// without it, so learning (the write lock, on the request path) never waits for more
    /// than one chunk's copy, however many identities there are.
    pub async fn save(&self, store: &SqliteStore) -> Result<usize, WatchError> {
        let ids: Vec<IdentityId> = self
            .baselines
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .identities
            .keys()
            .cloned()
            .collect();
        let mut rows: Vec<(String, String)> = Vec::with_capacity(ids.len() + 1);
        for (n, chunk) in ids.chunks(SAVE_CHUNK).enumerate() {
            let part = {
                let state = self
                    .baselines
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                Baselines {
                    identities: chunk
                        .iter()
                        .filter_map(|id| Some((id.clone(), state.identities.get(id)?.clone())))
                        .collect(),
                    untracked: state.untracked,
                    alerts_issued: state.alerts_issued,
                }
            };
            // Each part carries the counters' row; the first one is kept.
            rows.extend(
                part.to_rows()?
                    .into_iter()
                    .filter(|(id, _)| n == 0 || id != remit_anomaly::baseline::COUNTERS_ROW),
            );
        }
        if ids.is_empty() {
            rows = self
                .baselines
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .to_rows()?;
        }
        // Collected first: a closure held across the store's awaits would tie the future
        // to one lifetime and keep it from being spawned.
        let borrowed: Vec<(&str, &str)> =
            rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let n = store.save_baselines(borrowed).await?;
        Ok(n)
    }

    /// How many identities have a baseline.
    pub fn tracked(&self) -> usize {
        self.baselines
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .identities
            .len()
    }
}

/// A request on its way through the pipeline with the watch: the assessment made while
/// deciding, and what learning needs afterwards.
#[derive(Debug)]
pub struct Watching {
    watch: Arc<Watch>,
    assessment: Option<Assessment>,
    source_ip: Option<IpAddr>,
    user_agent: Option<String>,
    now: OffsetDateTime,
    raised: Vec<NewAlert>,
}

/// Decides `facts` now, with the watch's risk score when there is a watch.
pub fn begin(
    engine: &Engine,
    watch: Option<&Arc<Watch>>,
    facts: &RequestFacts,
    decision_id: String,
) -> Result<(Pending, Option<Watching>), BadRequest> {
    let now = OffsetDateTime::now_utc();
    let Some(watch) = watch else {
        return engine
            .begin_with_risk(facts, decision_id, now, &remit_engine::risk::NoRisk)
            .map(|p| (p, None));
    };
    let user_agent = facts.user_agent.clone();
    let edge = Edge {
        source_ip: facts.source_ip,
        user_agent: user_agent.as_deref(),
        on_behalf_of: None,
        chain_depth: 0,
    };
    let (pending, assessment) = {
        let state = watch
            .baselines
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let scorer = Scorer::new(&watch.detectors, &state, edge, UnixSeconds::from_time(now));
        let pending = engine.begin_with_risk(facts, decision_id, now, &scorer)?;
        (pending, scorer.into_assessment())
    };
    Ok((
        pending,
        Some(Watching {
            watch: watch.clone(),
            assessment,
            source_ip: facts.source_ip,
            user_agent,
            now,
            raised: Vec::new(),
        }),
    ))
}

/// Records a pending decision (learning from it and attaching its alerts when watched) and
/// hands its alerts to the alert task.
pub async fn finish(
    engine: &Engine,
    pending: Pending,
    mut watching: Option<Watching>,
    facts: &RequestFacts,
    sink: &dyn RecordSink,
    dry_run: bool,
) -> Finished {
    let observer = watching
        .as_mut()
        .filter(|_| !dry_run)
        .map(|w| w as &mut (dyn Observer + Send));
    let finished = engine
        .finish_observed(pending, facts, sink, dry_run, observer)
        .await;
    if let Some(w) = watching {
        w.dispatch();
    }
    finished
}

/// Whether a detector's signal says the credential is in someone else's hands.
fn leaked_credential(d: Detector) -> bool {
    matches!(
        d,
        Detector::NewOrigin | Detector::ConcurrentOrigins | Detector::Probing
    )
}

impl Watching {
    /// Sends the alerts raised to the alert task; when its queue is full they are counted
    /// and logged (the decision record still carries them).
    fn dispatch(self) {
        if self.raised.is_empty() {
            return;
        }
        let n = self.raised.len();
        if let Err(e) = self.watch.alerts.try_send(self.raised) {
            metrics::counter!("remit_alerts_dropped_total").increment(n as u64);
            tracing::error!(alerts = n, error = %e, "the alert queue is full; these alerts are only in their decision record");
        }
    }

    /// Turns one alert into its note, its row and, on a confident leaked-credential signal
    /// with `alerts.quarantine`, a quarantine.
    fn raise(&mut self, alert: &Alert, decision: &Decision) -> (AlertNote, Option<String>) {
        let id = AlertId::new_v7();
        let s = &self.watch.settings;
        let quarantine = (s.quarantine
            && leaked_credential(alert.detector)
            && alert.confidence.get() >= s.quarantine_confidence)
            .then(|| {
                format!(
                    "alert {id} ({}): {}",
                    alert.detector.as_str(),
                    alert.evidence
                )
            })
            .filter(|why| {
                self.watch
                    .engine
                    .secrets()
                    .quarantine(&alert.identity, why.clone())
            });
        metrics::counter!("remit_alerts_total", "detector" => alert.detector.as_str()).increment(1);
        tracing::warn!(
            target: "remit::alert",
            alert = %id,
            detector = alert.detector.as_str(),
            confidence = alert.confidence.get(),
            identity = %alert.identity,
            credential = alert.credential.as_ref().map_or("", |c| c.as_str()),
            decision_id = %decision.decision_id,
            quarantined = quarantine.is_some(),
            "{}", alert.evidence
        );
        self.raised.push(NewAlert {
            id: id.clone(),
            identity: alert.identity.as_str().to_owned(),
            credential: alert.credential.as_ref().map(|c| c.as_str().to_owned()),
            detector: alert.detector.as_str().to_owned(),
            confidence: alert.confidence.get(),
            evidence: alert.evidence.clone(),
            decision_id: decision.decision_id.clone(),
            time: alert.time.rfc3339(),
            quarantined: quarantine.is_some(),
        });
        let note = AlertNote {
            id: id.as_str().to_owned(),
            detector: alert.detector.as_str().to_owned(),
            confidence: alert.confidence.get(),
            evidence: alert.evidence.clone(),
        };
        (note, quarantine)
    }
}

impl Observer for Watching {
    fn observe(&mut self, decision: &mut Decision, mcp: Option<&McpMessage>) -> Vec<AlertNote> {
        let watch = self.watch.clone();
        let alerts = {
            let Some(identity) = decision
                .identity
                .as_ref()
                .and_then(|id| watch.engine.config().registry.get(id))
            else {
                return Vec::new();
            };
            let depth = u8::try_from(decision.authority.actors.len()).unwrap_or(u8::MAX);
            let edge = Edge {
                source_ip: self.source_ip,
                user_agent: self.user_agent.as_deref(),
                on_behalf_of: None,
                chain_depth: depth,
            };
            let tool = mcp.and_then(|m| m.tool.as_deref());
            let Some(obs) = Observation::from_decision(decision, identity, tool, edge, self.now)
            else {
                return Vec::new();
            };
            // The score taken before the decision could not see the delegation chain;
            // a delegated request is assessed again with it.
            let assessment = self.assessment.take().filter(|_| depth == 0);
            let mut state = watch
                .baselines
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            record_decided(
                &watch.detectors,
                &mut state,
                &obs,
                assessment,
                decision.verdict,
            )
            .1
        };
        let mut notes = Vec::with_capacity(alerts.len());
        for alert in &alerts {
            let (note, quarantined) = self.raise(alert, decision);
            notes.push(note);
            if let Some(why) = quarantined
                && decision.verdict != Verdict::Deny
            {
                let id = alert.identity.as_str();
                decision.refuse(
                    remit_engine::secrets::QUARANTINE_POLICY,
                    format!("identity `{id}` is quarantined: {why}"),
                );
            }
        }
        notes
    }
}
