//! The detectors as the engine's [`RiskSource`]: assess a request inside `decide` so its
//! risk reaches `context.risk`, and keep the assessment for [`Detectors::record`] once the
//! verdict is known (one assessment per request, not two).

use std::cell::RefCell;

use remit_core::Verdict;
use remit_engine::risk::{RiskSource, RiskView};

use crate::baseline::Baselines;
use crate::detect::{Alert, Assessment, Detectors};
use crate::observe::{ClientFamily, Edge, Network, Observation, UnixSeconds};

impl<'a> Observation<'a> {
    /// The observation of a request as the engine shows it before its decision.
    pub fn from_view(view: &RiskView<'a>, edge: Edge<'a>, time: UnixSeconds) -> Self {
        Self {
            time,
            identity: &view.identity.id,
            credential: Some(view.credential),
            kind: view.identity.kind,
            class: view.class,
            schedule: view.identity.schedule,
            action: view.action,
            sensitive: view.sensitive,
            tool: view.tool,
            resource_type: &view.resource.rtype,
            purpose: view.purpose,
            network: edge.source_ip.map(Network::of),
            client: edge.user_agent.map(ClientFamily::of),
            on_behalf_of: view.on_behalf_of.or(edge.on_behalf_of),
            chain_depth: edge.chain_depth,
        }
    }
}

/// Scores one request for `Engine::decide_with_risk`, then records it.
#[derive(Debug)]
pub struct Scorer<'s> {
    detectors: &'s Detectors,
    state: &'s Baselines,
    edge: Edge<'s>,
    time: UnixSeconds,
    seen: RefCell<Option<Seen>>,
}

/// What the scorer saw inside `decide`: enough to rebuild the observation afterwards.
#[derive(Debug)]
struct Seen {
    assessment: Assessment,
}

impl<'s> Scorer<'s> {
    /// A scorer for one request at `time`, with what the front door knows of it.
    pub fn new(
        detectors: &'s Detectors,
        state: &'s Baselines,
        edge: Edge<'s>,
        time: UnixSeconds,
    ) -> Self {
        Self {
            detectors,
            state,
            edge,
            time,
            seen: RefCell::new(None),
        }
    }

    /// The assessment made inside `decide`, if the request was authenticated.
    pub fn into_assessment(self) -> Option<Assessment> {
        self.seen.into_inner().map(|s| s.assessment)
    }
}

impl RiskSource for Scorer<'_> {
    fn risk(&self, view: &RiskView<'_>) -> u8 {
        let obs = Observation::from_view(view, self.edge, self.time);
        let assessment = self.detectors.assess(self.state, &obs);
        let risk = assessment.risk.get();
        *self.seen.borrow_mut() = Some(Seen { assessment });
        risk
    }
}

/// Records a decided request with the assessment its scorer made (or a fresh one when the
/// scorer was not asked), returning the alerts.
pub fn record_decided(
    detectors: &Detectors,
    state: &mut Baselines,
    obs: &Observation<'_>,
    assessment: Option<Assessment>,
    verdict: Verdict,
) -> (Assessment, Vec<Alert>) {
    let assessment = assessment.unwrap_or_else(|| detectors.assess(state, obs));
    let alerts = detectors.record(state, obs, &assessment, verdict);
    (assessment, alerts)
}

impl Alert {
    /// The alert as a decision record carries it.
    pub fn note(&self) -> remit_core::AlertNote {
        remit_core::AlertNote {
            id: self.id.as_str().to_owned(),
            detector: self.detector.as_str().to_owned(),
            confidence: self.confidence.get(),
            evidence: self.evidence.clone(),
        }
    }
}
