//! Approvals in the pipeline: opening one when policy asks for it, admitting the exact
//! request it was granted for once, and a person's grant or denial.
//!
//! The decision itself stays pure: `decide` reports `approval_required` when only
//! `@remedy("approval")` forbids stand in the way. What needs the store happens in
//! [`Engine::finish`](crate::Engine::finish): with no `Remit-Approval` the request opens a
//! pending approval bound to it (or finds the identical one already pending); with one,
//! the approval must be granted, unexpired and bound to exactly this request, and the
//! request is decided again with `context.approved`; an allow then claims the approval
//! (single use) last, just before its record is written.

use remit_core::approval::{
    Approval, ApprovalError, ApprovalId, ApprovalState, ApproverRule, Binding, MAX_REASON_BYTES,
    Resolution,
};
use remit_core::{
    ApprovalRecord, ApprovalRequest, AuditRecord, BearerToken, Decision, RecordSink, RequestFacts,
    Verdict,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Decided, Engine, bearer, risk};

/// The pseudo-policy id when a presented approval does not admit the request, or an
/// approval cannot be opened.
pub const APPROVAL_POLICY: &str = "remit.approval";

/// The exact request a decision is about, as an approval binds it; `None` for a request
/// without a registered identity (nothing an approver could hold to account).
pub fn binding(decision: &Decision, facts: &RequestFacts) -> Option<Binding> {
    Some(Binding {
        identity: decision.identity.clone()?,
        on_behalf_of: decision.authority.on_behalf_of.clone(),
        purpose: decision.purpose.clone(),
        action: decision.action.clone(),
        resource: decision.resource.clone(),
        method: facts.method.clone(),
        path: facts.path.encoded().to_owned(),
        body_sha256: facts.body.as_ref().map(|b| hex::encode(Sha256::digest(b))),
    })
}

fn rfc3339(unix: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

/// A risk source that repeats the score of the first decision, for deciding again.
struct Fixed(u8);

impl risk::RiskSource for Fixed {
    fn risk(&self, _: &risk::RiskView<'_>) -> u8 {
        self.0
    }
}

/// Told of every approval a request opens, once its refusal is recorded, with where to
/// decide it: the door's hook (a webhook queue). It must not block: it runs on the
/// request path.
pub type Announce = Box<dyn Fn(&Approval, &str) + Send + Sync>;

/// The engine's slot for the hook.
pub(crate) struct Hook(Announce);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// What settling an `approval_required` decision produced.
pub(crate) struct Settled {
    /// The decision as it now stands.
    pub decided: Decided,
    /// An approval to claim when the allow is recorded.
    pub claim: Option<ApprovalId>,
    /// An approval opened by this request (not one found already pending).
    pub opened: Option<Approval>,
}

impl Engine {
    /// Sets the hook told of each approval a request opens (once; later calls are
    /// ignored and return `false`).
    pub fn on_approval_opened(&self, announce: Announce) -> bool {
        self.announce.set(Hook(announce)).is_ok()
    }

    /// Tells the hook, if any, of an opened approval.
    pub(crate) fn announce(&self, approval: &Approval) {
        if let Some(Hook(a)) = self.announce.get() {
            a(approval, &self.decide_url(&approval.id));
        }
    }

    /// Where an approver decides `id`.
    pub fn decide_url(&self, id: &ApprovalId) -> String {
        match &self.config.approvals.decide_url {
            Some(base) => format!("{}/{id}", base.trim_end_matches('/')),
            None => format!(
                "http://{}/v1/approvals/{id}",
                self.config.gateway.admin_listen
            ),
        }
    }

    fn approval_request(&self, required_by: Vec<String>, a: &Approval) -> ApprovalRequest {
        ApprovalRequest {
            required_by,
            id: Some(a.id.to_string()),
            expires: rfc3339(a.expires_at),
            decide: Some(self.decide_url(&a.id)),
        }
    }

    /// Opens an approval for, or admits with a presented one, a decision that policy left
    /// at `approval_required`. Everything else passes unchanged.
    pub(crate) async fn settle_approval(
        &self,
        decided: Decided,
        facts: &RequestFacts,
        sink: &dyn RecordSink,
        now: OffsetDateTime,
        dry_run: bool,
    ) -> Settled {
        let mut settled = Settled {
            decided,
            claim: None,
            opened: None,
        };
        if settled.decided.decision.verdict != Verdict::ApprovalRequired {
            return settled;
        }
        let d = &mut settled.decided.decision;
        let required_by = d
            .approval
            .as_ref()
            .map(|a| a.required_by.clone())
            .unwrap_or_default();
        let store = sink.approvals();
        let Some(bound) = binding(d, facts) else {
            d.reasons
                .push("only a registered identity's request can be approved".into());
            return settled;
        };
        match (facts.approval.as_deref(), store) {
            (None, None) => settled,
            (Some(_), None) => {
                d.refuse(
                    APPROVAL_POLICY,
                    "this deployment keeps no approvals, so `Remit-Approval` cannot be honoured",
                );
                settled
            }
            (Some(text), Some(store)) => {
                let unix = now.unix_timestamp();
                let found = match ApprovalId::parse(text) {
                    Err(e) => Err(e.to_string()),
                    Ok(id) => match store.get(&id).await {
                        Ok(Some(a)) => Ok(a),
                        Ok(None) => Err(ApprovalError::NotFound(id).to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                };
                let approval = match found.and_then(|a| a.admits(&bound, unix).map(|()| a)) {
                    Ok(a) => a,
                    Err(why) => {
                        metrics::counter!("remit_approvals_total", "event" => "refused")
                            .increment(1);
                        d.refuse(APPROVAL_POLICY, why);
                        return settled;
                    }
                };
                let id = d.decision_id.clone();
                let risk = Fixed(settled.decided.risk);
                match self.decide_inner(facts, id, now, &risk, true) {
                    Ok(mut again) => {
                        if again.decision.verdict == Verdict::Allow {
                            again.decision.approval =
                                Some(self.approval_request(required_by, &approval));
                            settled.claim = Some(approval.id);
                        }
                        settled.decided = again;
                    }
                    Err(e) => d.refuse(APPROVAL_POLICY, e.to_string()),
                }
                settled
            }
            (None, Some(store)) if !dry_run => {
                let unix = now.unix_timestamp();
                let settings = &self.config.approvals;
                let approvers = required_by
                    .iter()
                    .map(|policy| ApproverRule {
                        policy: policy.clone(),
                        groups: self
                            .policy
                            .approvers(policy)
                            .map_or_else(|| settings.default_approvers.clone(), <[_]>::to_vec),
                    })
                    .collect();
                let asked = Approval {
                    // The store chooses the id.
                    id: ApprovalId::from_random([0; 16]),
                    state: ApprovalState::Pending,
                    binding: bound,
                    credential: d.credential_id.clone(),
                    approvers,
                    requested_by_decision: d.decision_id.clone(),
                    created_at: unix,
                    expires_at: unix.saturating_add_unsigned(settings.ttl_s),
                    decided_by: None,
                    decided_at: None,
                    reason: None,
                    used_by_decision: None,
                    used_at: None,
                };
                match store.open(asked, settings.max_pending_per_identity).await {
                    Ok(a) => {
                        d.approval = Some(self.approval_request(required_by, &a));
                        if a.requested_by_decision == d.decision_id {
                            metrics::counter!("remit_approvals_total", "event" => "opened")
                                .increment(1);
                            settled.opened = Some(a);
                        }
                    }
                    Err(e @ ApprovalError::TooMany(..)) => d.refuse(APPROVAL_POLICY, e.to_string()),
                    Err(e) => d.reasons.push(format!("no approval could be opened: {e}")),
                }
                settled
            }
            (None, Some(_)) => settled,
        }
    }

    /// Claims the approval an allow was admitted with: the first recorded use wins, every
    /// other presentation is refused.
    pub(crate) async fn claim_approval(
        &self,
        decision: &mut Decision,
        id: &ApprovalId,
        sink: &dyn RecordSink,
        now: OffsetDateTime,
    ) {
        let Some(store) = sink.approvals() else {
            return decision.refuse(APPROVAL_POLICY, "approvals are not kept here");
        };
        match store
            .claim(id, &decision.decision_id, now.unix_timestamp())
            .await
        {
            Ok(true) => {
                metrics::counter!("remit_approvals_total", "event" => "used").increment(1);
            }
            Ok(false) => {
                metrics::counter!("remit_approvals_total", "event" => "refused").increment(1);
                decision.refuse(
                    APPROVAL_POLICY,
                    format!("approval `{id}` was already used; an approval admits one request"),
                );
            }
            Err(e) => decision.refuse(
                APPROVAL_POLICY,
                format!("approval `{id}` could not be claimed ({e}), so the request is denied"),
            ),
        }
    }

    /// A person's grant or denial of approval `id`, made with their own token. Every
    /// attempt that presents a token is recorded — accepted (`allow`) or refused (`deny`,
    /// naming why) — and a grant stands only once its record is durable.
    pub async fn answer_approval(
        &self,
        id: &str,
        token: Option<&BearerToken>,
        resolution: Resolution,
        reason: &str,
        sink: &dyn RecordSink,
        step_id: String,
    ) -> Result<Approval, AnswerError> {
        let id = ApprovalId::parse(id).map_err(|e| AnswerError::BadRequest(e.to_string()))?;
        let reason = reason.trim();
        if reason.is_empty()
            || reason.len() > MAX_REASON_BYTES
            || reason.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(AnswerError::BadRequest(format!(
                "give a reason of 1 to {MAX_REASON_BYTES} bytes, without control characters"
            )));
        }
        let Some(store) = sink.approvals() else {
            return Err(AnswerError::Unavailable(
                "this deployment keeps no approvals".into(),
            ));
        };
        let Some(token) = token else {
            return Err(AnswerError::Unauthenticated(
                "send the approver's own token as `Authorization: Bearer <token>`".into(),
            ));
        };
        let now = OffsetDateTime::now_utc();
        let unix = now.unix_timestamp();
        let mut step = ApprovalRecord {
            v: remit_core::decision::RECORD_VERSION,
            time: now.format(&Rfc3339).unwrap_or_default(),
            replica: self.config.gateway.replica_id.clone(),
            decision_id: step_id,
            approval_id: id.to_string(),
            resolution,
            decision: Verdict::Deny,
            reasons: Vec::new(),
            approver: None,
            approver_credential: remit_token::fingerprint(token.expose_secret()),
            reason: reason.to_owned(),
            binding: None,
        };
        let outcome = async {
            let who = bearer::approver(&self.tokens, &self.config.tokens, token, now).map_err(
                |(credential, why)| {
                    step.approver_credential = credential;
                    AnswerError::Unauthenticated(why)
                },
            )?;
            step.approver = Some(who.human.clone());
            step.approver_credential = who.credential.clone();
            let approval = store
                .get(&id)
                .await
                .map_err(|e| AnswerError::Unavailable(e.to_string()))?
                .ok_or_else(|| {
                    AnswerError::NotFound(ApprovalError::NotFound(id.clone()).to_string())
                })?;
            step.binding = Some(approval.binding.clone());
            if approval.state != ApprovalState::Pending || approval.is_expired(unix) {
                return Err(AnswerError::Conflict(format!(
                    "approval `{id}` is {}",
                    approval.effective_state(unix)
                )));
            }
            approval
                .check_approver(&who, unix)
                .map_err(AnswerError::Forbidden)?;
            store
                .resolve(&id, resolution, &who.human, reason, unix)
                .await
                .map_err(|e| match e {
                    ApprovalError::Conflict { .. } => AnswerError::Conflict(e.to_string()),
                    e => AnswerError::Unavailable(e.to_string()),
                })
        }
        .await;
        step.decision = if outcome.is_ok() {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        if let Err(e) = &outcome {
            step.reasons.push(e.to_string());
        }
        let recorded = sink.append(AuditRecord::Approval(step)).await;
        let event = match (&outcome, resolution) {
            (Ok(_), Resolution::Grant) => "granted",
            (Ok(_), Resolution::Deny) => "denied",
            (Err(_), _) => "refused",
        };
        metrics::counter!("remit_approvals_total", "event" => event).increment(1);
        match (outcome, recorded) {
            (Ok(a), Ok(())) => Ok(a),
            (Ok(a), Err(e)) => {
                // The answer has no record, so it does not stand.
                metrics::counter!("remit_audit_write_failures_total").increment(1);
                if let Err(w) = store
                    .withdraw(&a.id, resolution, &a.decided_by.clone().unwrap_or_default())
                    .await
                {
                    tracing::error!(approval = %a.id, error = %w, "an unrecorded answer could not be withdrawn");
                }
                Err(AnswerError::Unavailable(format!(
                    "the answer could not be recorded ({e}), so it does not stand"
                )))
            }
            (Err(e), _) => Err(e),
        }
    }
}

/// Why a person's answer to an approval was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The answer itself is malformed (id, reason).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or a token that does not show a person.
    #[error("{0}")]
    Unauthenticated(String),
    /// The person may not answer this approval.
    #[error("{0}")]
    Forbidden(String),
    /// No such approval.
    #[error("{0}")]
    NotFound(String),
    /// The approval was already answered, used or has expired.
    #[error("{0}")]
    Conflict(String),
    /// The store or the log failed.
    #[error("{0}")]
    Unavailable(String),
}
