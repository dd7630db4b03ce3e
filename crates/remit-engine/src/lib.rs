//! The pipeline: authenticate, classify, decide, record.
//!
//! [`Engine::decide`] is pure and synchronous: request facts and a clock reading in, a
//! decision out. [`Engine::decide_and_record`] adds the one IO step, making the decision
//! record durable through a [`RecordSink`], and turns any failure there into a deny
//! (Architecture Invariants 1 and 2).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod approvals;
pub mod bearer;
pub mod cases;
pub mod load;
pub mod rate;
pub mod records;
pub mod risk;
pub mod secrets;
pub mod wire;

use remit_core::classify::{classify, declared_purpose};
use remit_core::mcp::McpMessage;
use remit_core::route::ScopeError;
use remit_core::{
    ApprovalRequest, AuditRecord, Authn, Class, Config, CredentialId, Decision, DecisionRecord,
    Obligation, Principal, RecordSink, RequestFacts, ScanReport, Verdict,
};
use remit_policy::{PolicyEngine, PolicyError, PolicyInput, PolicySource, PolicyVerdict};
use remit_token::Authenticator;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The pseudo-policy id reported when an identity's boundary refuses an action.
pub const BOUNDARY_POLICY: &str = "remit.boundary";
/// The pseudo-policy id reported when an identity's origins refuse a source address.
pub const ORIGINS_POLICY: &str = "remit.origins";
/// The pseudo-policy id reported when a read-only identity, purpose or obligation refuses
/// a write.
pub const READ_ONLY_POLICY: &str = "remit.read-only";
/// The pseudo-policy id reported when a bearer credential names one identity and the peer's
/// verified SPIFFE ID another: a credential used from another workload does not pass.
pub const PEER_IDENTITY_POLICY: &str = "remit.peer-identity";

/// Why a request was refused before any decision (an HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// The request's parts could not be parsed.
    #[error(transparent)]
    Request(#[from] remit_core::RequestError),
    /// The request's scope could not be read.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The declared purpose could not be read.
    #[error(transparent)]
    Purpose(#[from] remit_core::classify::PurposeError),
}

/// Completes a decision with its reasons and what its record needs from the scope.
fn decided(
    mut decision: Decision,
    reasons: Vec<String>,
    scope: remit_core::Scope,
    token: Option<bearer::TokenFacts>,
) -> Decided {
    decision.reasons = reasons;
    Decided {
        decision,
        route: scope.route,
        mcp: scope.mcp,
        rewrite: None,
        single_use: token.and_then(|t| t.single_use),
        risk: 0,
        rate_slot: None,
    }
}

/// Turns an allow into a deny by one of remit's own rules applied after policy (read-only,
/// secrets), naming the rule as the determining policy. `reasons` become the decision's
/// when it is complete.
fn refuse_after_policy(
    decision: &mut Decision,
    reasons: &mut Vec<String>,
    policy: &str,
    why: String,
) {
    decision.verdict = Verdict::Deny;
    decision.obligations.clear();
    decision.record_sets.clear();
    decision.policies = vec![policy.to_owned()];
    reasons.push(why);
}

/// A decision together with what its record needs from the request.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The decision.
    pub decision: Decision,
    /// The route that matched.
    pub route: Option<String>,
    /// The MCP message, parsed once here for every later reader.
    pub mcp: Option<McpMessage>,
    /// For an allow under `redact`: the request as it may be forwarded.
    pub rewrite: Option<secrets::Rewrite>,
    /// A single-use token's issuer, `jti` and last acceptable second (expiry plus the most
    /// skew): claimed when an allow is recorded.
    pub single_use: Option<(String, String, i64)>,
    /// The behaviour risk score the policy saw (`context.risk`).
    pub risk: u8,
    /// The identity's slot in the registry, where its rate limiters are.
    pub rate_slot: Option<usize>,
}

/// The loaded pipeline: configuration, credentials and policies.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    authn: Authenticator,
    tokens: remit_token::jwt::Verifier,
    client_keys: remit_token::assertion::ClientKeys,
    claims: std::sync::Arc<dyn remit_core::single_use::ClaimStore>,
    policy: PolicyEngine,
    rates: rate::RateCaps,
    secrets: secrets::Secrets,
    announce: std::sync::OnceLock<approvals::Hook>,
}

impl Engine {
    /// Builds the pipeline from a parsed configuration and policy files.
    /// Secrets are scanned with the built-in rules.
    pub fn new(config: Config, policies: &[PolicySource]) -> Result<Self, PolicyError> {
        Self::with_rules(config, policies, remit_scan::RuleSet::builtin())
    }

    /// Builds the pipeline with the secret-scanning rules `rules`.
    pub fn with_rules(
        config: Config,
        policies: &[PolicySource],
        rules: remit_scan::RuleSet,
    ) -> Result<Self, PolicyError> {
        let policy = PolicyEngine::load(policies, &config.registry, &config.routes)?
            .with_decision_cache(config.gateway.decision_cache_bytes);
        let unknown = policy.unknown_record_sets(|s| config.record_sets.get(s).is_some());
        if !unknown.is_empty() {
            return Err(PolicyError::Invalid(unknown));
        }
        let authn = Authenticator::new(&config.registry);
        let rates = rate::RateCaps::new(&config.registry, &config.budgets);
        let secrets = secrets::Secrets::new(rules, &config.scan, &config.registry);
        let tokens = remit_token::jwt::Verifier::new(&config.tokens);
        // Key sets written in the configuration are installed now; a bad one leaves its
        // issuer without keys, so its tokens are refused (`load` reports it at start-up).
        for issuer in &config.tokens.issuers {
            if let remit_core::tokens::KeySource::Inline(text) = &issuer.keys {
                match remit_token::jwt::KeySet::from_jwks(text.as_bytes(), &issuer.algorithms) {
                    Ok(keys) => tokens.set_keys(&issuer.id, keys),
                    Err(e) => {
                        tracing::error!(issuer = %issuer.id, error = %e, "the issuer's key set is refused")
                    }
                }
            }
        }
        // Client keys written in the configuration likewise; `load` reads those in files.
        let (client_keys, refused) = remit_token::assertion::ClientKeys::new(&config.registry);
        for e in refused {
            tracing::error!(error = %e, "the client key is refused");
        }
        Ok(Self {
            config,
            authn,
            tokens,
            client_keys,
            claims: std::sync::Arc::new(remit_token::jti::JtiLedger::default()),
            policy,
            rates,
            secrets,
            announce: std::sync::OnceLock::new(),
        })
    }

    /// Secret scanning and the credentials it found exposed.
    pub fn secrets(&self) -> &secrets::Secrets {
        &self.secrets
    }

    /// The identities' public keys for `private_key_jwt` client authentication.
    pub fn client_keys(&self) -> &remit_token::assertion::ClientKeys {
        &self.client_keys
    }

    /// The JWT verifier: start-up and the key-set refresher install issuers' keys and trust
    /// domains' bundles here.
    pub fn tokens(&self) -> &remit_token::jwt::Verifier {
        &self.tokens
    }

    /// Which identity, if any, holds `spiffe_id` as a `spiffe` credential (a peer's
    /// verified SPIFFE ID, or a JWT-SVID's `sub`).
    pub fn spiffe_holder(&self, spiffe_id: &remit_core::SpiffeId) -> remit_token::PeerIdentity<'_> {
        self.authn.peer_identity(spiffe_id)
    }

    /// Keeps single-use claims in `store` (shared by every replica, such as Redis) instead
    /// of this process's ledger. Set before serving.
    pub fn share_claims(&mut self, store: std::sync::Arc<dyn remit_core::single_use::ClaimStore>) {
        self.claims = store;
    }

    /// Where single-use claims are kept — the `jti`s of single-use tokens and of client
    /// assertions: this process's ledger, or the store every replica shares.
    pub fn claims(&self) -> &dyn remit_core::single_use::ClaimStore {
        self.claims.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The policy layer.
    pub fn policy(&self) -> &PolicyEngine {
        &self.policy
    }

    /// Decides one request. Pure: no IO, no clock but `now`.
    pub fn decide(
        &self,
        facts: &RequestFacts,
        decision_id: String,
        now: OffsetDateTime,
    ) -> Result<Decided, BadRequest> {
        self.decide_with_risk(facts, decision_id, now, &risk::NoRisk)
    }

    /// [`Engine::decide`] with a behaviour risk score from `risk` in `context.risk`.
    pub fn decide_with_risk(
        &self,
        facts: &RequestFacts,
        decision_id: String,
        now: OffsetDateTime,
        risk: &dyn risk::RiskSource,
    ) -> Result<Decided, BadRequest> {
        self.decide_inner(facts, decision_id, now, risk, false)
    }

    /// Decides, with `context.approved` set when a granted approval for exactly this
    /// request was presented (only [`Engine::finish`] knows, after asking the store).
    pub(crate) fn decide_inner(
        &self,
        facts: &RequestFacts,
        decision_id: String,
        now: OffsetDateTime,
        risk: &dyn risk::RiskSource,
        approved: bool,
    ) -> Result<Decided, BadRequest> {
        let registry = &self.config.registry;
        let mut unknown: Option<CredentialId> = None;
        let mut token_facts = None;
        let (mut authn, mut note) = match (facts.credential.as_ref(), facts.peer_spiffe_id.as_ref())
        {
            // No bearer credential: a peer a front door verified (mTLS) is the identity
            // holding its SPIFFE ID; an unregistered one is unclassified.
            (None, Some(peer)) => self.authn.authenticate_peer(registry, peer, now),
            (Some(t), _)
                if self.tokens.is_enabled()
                    && remit_token::jwt::looks_like_jwt(t.expose_secret()) =>
            {
                let (a, note, tf) = bearer::authenticate(
                    &self.tokens,
                    &self.config.tokens,
                    &self.authn,
                    registry,
                    t,
                    now,
                    &mut unknown,
                );
                token_facts = tf;
                (a, note)
            }
            (c, _) => self.authn.authenticate(registry, c, now, &mut unknown),
        };
        // A bearer credential and a verified peer naming different identities: refused, so a
        // credential taken from one workload does not pass from another.
        let mut peer_conflict = false;
        if let (Some(peer), Some(_), Authn::Identity { identity, .. }) =
            (&facts.peer_spiffe_id, &facts.credential, authn.authn)
            && let remit_token::PeerIdentity::Registered {
                identity: holder, ..
            } = self.authn.peer_identity(peer)
            && *holder != identity.id
        {
            peer_conflict = true;
            note = Some(format!(
                "the bearer credential is identity `{}`'s but the peer's SPIFFE ID `{peer}` is identity `{holder}`'s",
                identity.id
            ));
            authn = remit_token::AuthnResult {
                authn: Authn::Refused,
                credential: authn.credential,
            };
            token_facts = None;
        }
        let scope =
            self.config
                .routes
                .resolve(&facts.method, &facts.path, facts.body.as_deref())?;
        let declared = declared_purpose(facts.purpose.as_ref(), scope.mcp.as_ref())?;
        let mut reasons: Vec<String> = note.into_iter().collect();
        // A token issued for a purpose speaks for it; a different declared one is refused.
        let token_purpose = token_facts.as_ref().and_then(|t| t.purpose.clone());
        let mut purpose_conflict = false;
        let purpose = match (declared, token_purpose) {
            (Some(d), Some(t)) if d != t => {
                purpose_conflict = true;
                reasons.push(format!(
                    "the request declares purpose `{d}` but its token was issued for `{t}`"
                ));
                Some(d)
            }
            (d, t) => d.or(t),
        };
        let mut cls = classify(authn.authn, purpose);
        if purpose_conflict {
            cls.purpose_allowed = false;
        }
        if let Some(tf) = &token_facts
            && let (Some(human), Principal::Identity(_)) = (&tf.on_behalf_of, &cls.principal)
        {
            cls.authority = remit_core::Authority::delegated(human.clone(), tf.actors.clone());
        }
        let identity_id = cls.identity.map(|i| i.id.clone());
        let credential = authn.credential.cloned();
        let mut decision = Decision {
            verdict: Verdict::Deny,
            decision_id,
            identity: identity_id,
            credential_id: credential,
            class: cls.class,
            authority: cls.authority.clone(),
            purpose: cls.purpose.clone(),
            action: scope.action.clone(),
            resource: scope.resource.clone(),
            sensitive: scope.sensitive,
            reasons: Vec::new(),
            policies: Vec::new(),
            obligations: Vec::new(),
            approval: None,
            retry_after_s: None,
            rate_limit: None,
            record_sets: Vec::new(),
            scan: None,
        };
        // Scanned before any ceiling, so every refusal still records (and acts on) a
        // secret the request carried.
        let scan = self.secrets.scan_request(facts);
        decision.scan = scan.report.clone();
        let credential_exposed = decision
            .credential_id
            .as_ref()
            .is_some_and(|c| self.secrets.is_exposed(c));
        if let Some(id) = &decision.identity
            && let Some(why) = self.secrets.quarantine_reason(id)
        {
            reasons.push(format!("identity `{id}` is quarantined: {why}"));
            decision.policies.push(secrets::QUARANTINE_POLICY.into());
            return Ok(decided(decision, reasons, scope, None));
        }
        if peer_conflict {
            decision.policies.push(PEER_IDENTITY_POLICY.into());
            return Ok(decided(decision, reasons, scope, None));
        }
        if scope.action.is_unmapped() {
            reasons.push(format!(
                "no route maps `{}`; unmapped requests are sensitive",
                scope.resource.id
            ));
        }
        // The ceilings no policy can lift: the identity's boundary and origins.
        if let (Authn::Identity { identity, .. }, Principal::Identity(_)) =
            (authn.authn, &cls.principal)
        {
            if !identity.boundary.allows(&scope.action) {
                reasons.push(format!(
                    "`{}` is outside identity `{}`'s boundary",
                    scope.action, identity.id
                ));
                decision.policies.push(BOUNDARY_POLICY.into());
                return Ok(decided(decision, reasons, scope, token_facts));
            }
            if let Some(tf) = &token_facts
                && let Some((policy, why)) = tf.refuses(&scope.action, registry)
            {
                reasons.push(why);
                decision.policies.push(policy.into());
                return Ok(decided(decision, reasons, scope, token_facts));
            }
            if purpose_conflict {
                decision.policies.push(bearer::TOKEN_SCOPE_POLICY.into());
                return Ok(decided(decision, reasons, scope, token_facts));
            }
            if !identity.origins.is_empty() {
                let inside = facts
                    .source_ip
                    .is_some_and(|ip| identity.origins.iter().any(|n| n.contains(&ip)));
                if !inside {
                    reasons.push(match facts.source_ip {
                        Some(ip) => format!("source `{ip}` is outside identity `{}`'s origins", identity.id),
                        None => format!("identity `{}` is limited to its origins and the source address is unknown", identity.id),
                    });
                    decision.policies.push(ORIGINS_POLICY.into());
                    return Ok(decided(decision, reasons, scope, token_facts));
                }
            }
        }
        let rules = scan
            .report
            .as_ref()
            .map_or_else(Vec::new, ScanReport::rule_ids);
        let risk_score = match (authn.authn, authn.credential) {
            (Authn::Identity { identity, .. }, Some(credential)) => risk
                .risk(&risk::RiskView {
                    identity,
                    credential,
                    class: cls.class,
                    action: &scope.action,
                    resource: &scope.resource,
                    sensitive: scope.sensitive,
                    tool: scope.mcp.as_ref().and_then(|m| m.tool.as_deref()),
                    purpose: cls.purpose.as_ref(),
                    on_behalf_of: cls.authority.on_behalf_of.as_deref(),
                })
                .min(100),
            _ => 0,
        };
        let input = PolicyInput {
            principal: &cls.principal,
            action: &scope.action,
            resource: &scope.resource,
            class: cls.class,
            authority: cls.authority.kind,
            purpose: cls.purpose.as_ref(),
            sensitive: scope.sensitive,
            method: &facts.method,
            path: facts.path.encoded(),
            source_ip: facts.source_ip,
            params: &scope.params,
            arguments: &scope.arguments,
            mcp_method: scope.mcp.as_ref().and_then(|m| m.method.as_deref()),
            mcp_tool: scope.mcp.as_ref().and_then(|m| m.tool.as_deref()),
            mcp_name: scope.mcp.as_ref().and_then(|m| m.name.as_deref()),
            risk: i64::from(risk_score),
            chain_depth: cls.authority.actors.len() as i64,
            credential_exposed,
            secrets: &rules,
            approved,
        };
        let outcome = self.policy.evaluate(&input);
        decision.policies = outcome.policies;
        reasons.extend(outcome.reasons);
        match outcome.verdict {
            PolicyVerdict::Allow => {
                decision.verdict = Verdict::Allow;
                decision.obligations = outcome.obligations;
                if let Some(i) = cls.identity {
                    let caps = [
                        (i.limits.rate, rate::IDENTITY),
                        (
                            i.limits.per_purpose.filter(|_| cls.purpose.is_some()),
                            rate::PER_PURPOSE,
                        ),
                        (i.limits.per_action, rate::PER_ACTION),
                    ];
                    for (rate, source) in caps {
                        if let Some(rate) = rate {
                            decision.obligations.push(Obligation::Rate {
                                rate,
                                source: source.into(),
                            });
                        }
                    }
                }
                // The class's shared budget, after the identity's own caps.
                if let Some(rate) = self.config.budgets.get(cls.class) {
                    decision.obligations.push(Obligation::Rate {
                        rate,
                        source: rate::CLASS.into(),
                    });
                }
            }
            PolicyVerdict::ApprovalRequired => {
                decision.verdict = Verdict::ApprovalRequired;
                decision.approval = Some(ApprovalRequest {
                    required_by: decision.policies.clone(),
                    id: None,
                    expires: None,
                    decide: None,
                });
            }
            PolicyVerdict::Deny => {}
        }
        // Read-only, whatever else the policy says: the identity, its purpose or the permit's
        // `read_only` obligation.
        if decision.verdict == Verdict::Allow && scope.writes {
            let by_identity = cls
                .identity
                .is_some_and(|i| i.is_read_only(cls.purpose.as_ref()));
            if by_identity || decision.obligations.contains(&Obligation::ReadOnly) {
                let why = format!(
                    "`{}` writes, and this request is read-only ({})",
                    scope.action,
                    if by_identity {
                        "its identity or purpose is marked read-only"
                    } else {
                        "the permit carries `read_only`"
                    }
                );
                refuse_after_policy(&mut decision, &mut reasons, READ_ONLY_POLICY, why);
            }
        }
        // Approved record sets: a request for a record outside one is refused; an allow
        // carries the sets, and the door filters the response to them.
        if decision.verdict == Verdict::Allow && !self.config.record_sets.is_empty() {
            let human_groups = token_facts.as_ref().and_then(|t| t.human_groups.as_deref());
            let sets = records::resolve(
                &self.config.record_sets,
                &decision.action,
                &decision.obligations,
                human_groups,
            );
            if let Some(why) = records::refuses(&self.config.record_sets, &sets, &scope, facts) {
                refuse_after_policy(&mut decision, &mut reasons, records::RECORD_SET_POLICY, why);
            } else {
                decision.record_sets = sets;
            }
        }
        let mut rewrite = None;
        if decision.verdict == Verdict::Allow {
            rewrite = self.enforce_scan(&mut decision, &mut reasons, scan, facts);
        }
        debug_assert!(
            decision.verdict != Verdict::Allow
                || !(decision.class == Class::Unclassified && decision.sensitive),
            "invariant: unclassified traffic never performs a sensitive action"
        );
        let mut done = decided(decision, reasons, scope, token_facts);
        done.rate_slot = cls.identity.and_then(|i| registry.slot_of(i));
        done.rewrite = rewrite;
        done.risk = risk_score;
        Ok(done)
    }

    /// Applies the `[scan]` action (or a permit's `redact` obligation) to an allow:
    /// a secret blocks, is redacted (the returned rewrite), or is only recorded; a body that
    /// could not be scanned is refused where `scan.oversize` says so.
    fn enforce_scan(
        &self,
        decision: &mut Decision,
        reasons: &mut Vec<String>,
        scan: secrets::RequestScan,
        facts: &RequestFacts,
    ) -> Option<secrets::Rewrite> {
        // A body passed unscanned by `scan.oversize` is not also refused as incomplete.
        let passed_unscanned = scan.too_large.is_some();
        if let Some(why) = scan.too_large {
            if self.secrets.refuses_unscanned(decision.sensitive) {
                let why = format!("the request body cannot be checked for secrets ({why})");
                refuse_after_policy(decision, reasons, secrets::SECRETS_POLICY, why);
                return None;
            }
            let report = decision.scan.get_or_insert_with(|| remit_core::ScanReport {
                findings: Vec::new(),
                action: remit_core::ScanAction::Alert,
                incomplete: None,
            });
            report.incomplete = Some(format!("not scanned: {why}"));
        }
        let report = decision.scan.as_mut()?;
        let action = if decision.obligations.contains(&Obligation::Redact) {
            remit_core::ScanAction::Redact
        } else {
            self.secrets.settings().request
        };
        report.action = action;
        let incomplete =
            report.incomplete.is_some() && report.findings.is_empty() && !passed_unscanned;
        let found = || {
            report
                .findings
                .iter()
                .map(|f| format!("`{}` in {}", f.rule, f.location))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // `Ok` passes (with a rewrite under `redact`); `Err` refuses, saying why.
        let outcome = match action {
            _ if report.findings.is_empty() && !incomplete => Ok(None),
            remit_core::ScanAction::Alert => Ok(None),
            remit_core::ScanAction::Block if incomplete => Err(format!(
                "the request could not be fully checked for secrets ({})",
                report.incomplete.as_deref().unwrap_or_default()
            )),
            remit_core::ScanAction::Block => Err(format!(
                "the request carries a secret ({}); remove it and retry",
                found()
            )),
            remit_core::ScanAction::Redact if incomplete => Ok(None),
            remit_core::ScanAction::Redact => self.secrets.redact_request(facts, report).map(Some).ok_or_else(|| {
                format!(
                    "the request carries a secret that cannot be redacted in place ({}); remove it and retry",
                    found()
                )
            }),
        };
        match outcome {
            Ok(rewrite) => rewrite,
            Err(why) => {
                refuse_after_policy(decision, reasons, secrets::SECRETS_POLICY, why);
                None
            }
        }
    }

    /// The audit record for a decision.
    pub fn record(
        &self,
        decided: &Decided,
        facts: &RequestFacts,
        now: OffsetDateTime,
        decide_us: u64,
    ) -> DecisionRecord {
        DecisionRecord {
            v: remit_core::decision::RECORD_VERSION,
            time: now.format(&Rfc3339).unwrap_or_default(),
            replica: self.config.gateway.replica_id.clone(),
            decision: decided.decision.clone(),
            method: facts.method.clone(),
            path: facts.path.encoded().to_owned(),
            route: decided.route.clone(),
            mcp_method: decided.mcp.as_ref().and_then(|m| m.method.clone()),
            mcp_tool: decided.mcp.as_ref().and_then(|m| m.tool.clone()),
            source_ip: facts.source_ip,
            body_sha256: facts.body.as_ref().map(|b| hex::encode(Sha256::digest(b))),
            peer_spiffe_id: facts.peer_spiffe_id.clone(),
            decide_us,
            alerts: Vec::new(),
        }
    }

    /// Decides now and returns the decision before it is recorded, so a front door can
    /// apply its own ceilings (with [`Decision::refuse`]) before [`Engine::finish`].
    pub fn begin(&self, facts: &RequestFacts, decision_id: String) -> Result<Pending, BadRequest> {
        self.begin_with_risk(facts, decision_id, OffsetDateTime::now_utc(), &risk::NoRisk)
    }

    /// [`Engine::begin`] at `now` with a behaviour risk score from `risk` in `context.risk`.
    pub fn begin_with_risk(
        &self,
        facts: &RequestFacts,
        decision_id: String,
        now: OffsetDateTime,
        risk: &dyn risk::RiskSource,
    ) -> Result<Pending, BadRequest> {
        let started = std::time::Instant::now();
        let decided = self.decide_with_risk(facts, decision_id, now, risk)?;
        Ok(Pending {
            decided,
            now,
            started,
        })
    }

    /// Makes the record of a pending decision durable (unless `dry_run`) and returns the
    /// decision with the request's MCP message. If the record cannot be written the verdict
    /// becomes deny (fail closed).
    pub async fn finish(
        &self,
        pending: Pending,
        facts: &RequestFacts,
        sink: &dyn RecordSink,
        dry_run: bool,
    ) -> Finished {
        self.finish_observed(pending, facts, sink, dry_run, None)
            .await
    }

    /// [`Engine::finish`], telling `observer` the final verdict before the record is
    /// written so the record carries the alerts it raised (not on a dry run).
    pub async fn finish_observed(
        &self,
        pending: Pending,
        facts: &RequestFacts,
        sink: &dyn RecordSink,
        dry_run: bool,
        observer: Option<&mut (dyn risk::Observer + Send)>,
    ) -> Finished {
        let Pending {
            decided,
            now,
            started,
        } = pending;
        // The rarer steps' futures are boxed where they are awaited, so that this future
        // (and every front door's around it) stays small: futures are moved by value, and
        // a large one costs a large copy on every request.
        let approvals::Settled {
            mut decided,
            claim,
            opened,
        } = if decided.decision.verdict == Verdict::ApprovalRequired {
            Box::pin(self.settle_approval(decided, facts, sink, now, dry_run)).await
        } else {
            // What `settle_approval` answers at once for any other verdict.
            approvals::Settled {
                decided,
                claim: None,
                opened: None,
            }
        };
        if dry_run {
            return Finished {
                decision: decided.decision,
                mcp: decided.mcp,
                rewrite: decided.rewrite,
            };
        }
        // Rate caps spend quota, so they apply here (never on a dry run), before the record,
        // which then shows the refusal.
        let d = &mut decided.decision;
        // A single-use token admits one recorded allow; every other presentation is a replay.
        if d.verdict == Verdict::Allow
            && let Some((issuer, jti, exp)) = &decided.single_use
            && let Err(e) = self
                .claims
                .claim(issuer, jti, *exp, now.unix_timestamp())
                .await
        {
            d.refuse(bearer::TOKEN_SCOPE_POLICY, e.to_string());
        }
        if d.verdict == Verdict::Allow
            && let Some(limited) = self.rates.check(
                rate::Who {
                    slot: decided.rate_slot,
                    identity: d.identity.as_ref(),
                    class: d.class,
                },
                d.purpose.as_ref(),
                &d.action,
                &d.obligations,
            )
        {
            d.verdict = Verdict::RateLimited;
            d.obligations.clear();
            d.retry_after_s = Some(limited.retry_after.as_secs_f64().ceil().max(1.0) as u64);
            d.rate_limit = Some(limited.cap);
            d.reasons.push(limited.reason);
        }
        // The behaviour watch may refuse the request (an alert that quarantines), so it
        // sees it before an approval is claimed. (Should the claim then fail, the watch
        // has learned one allow that became a deny: a smaller harm than an approval spent
        // on a refused request.)
        let alerts = match observer {
            Some(o) => o.observe(&mut decided.decision, decided.mcp.as_ref()),
            None => Vec::new(),
        };
        // Last before the record: a request refused by anything above spends no approval.
        if decided.decision.verdict == Verdict::Allow
            && let Some(id) = &claim
        {
            Box::pin(self.claim_approval(&mut decided.decision, id, sink, now)).await;
        }
        if let Some(report) = &decided.decision.scan {
            let d = &decided.decision;
            self.secrets
                .expose(report, d.identity.as_ref(), &d.decision_id);
        }
        let decide_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut record = self.record(&decided, facts, now, decide_us);
        record.alerts = alerts;
        let Decided {
            mut decision,
            mcp,
            rewrite,
            ..
        } = decided;
        // The record is moved into the sink's (boxed) future before the await, so no
        // temporary of it is held across the await in this future.
        let append = sink.append(AuditRecord::Decision(record));
        if let Err(e) = append.await {
            metrics::counter!("remit_audit_write_failures_total").increment(1);
            tracing::error!(decision_id = %decision.decision_id, error = %e, "decision record not written; denying");
            decision.fail_closed(format!(
                "the decision record could not be written ({e}), so the request is denied"
            ));
        }
        metrics::counter!("remit_decisions_total", "verdict" => decision.verdict.as_str())
            .increment(1);
        let rewrite = rewrite.filter(|_| decision.verdict == Verdict::Allow);
        // A new approval is announced once its refusal is recorded.
        if let Some(a) = opened.filter(|_| decision.verdict == Verdict::ApprovalRequired) {
            self.announce(&a);
        }
        Finished {
            decision,
            mcp,
            rewrite,
        }
    }

    /// Decides and, unless `dry_run`, makes the record durable before returning.
    pub async fn decide_and_record(
        &self,
        facts: &RequestFacts,
        decision_id: String,
        sink: &dyn RecordSink,
        dry_run: bool,
    ) -> Result<Decision, BadRequest> {
        let pending = self.begin(facts, decision_id)?;
        Ok(self.finish(pending, facts, sink, dry_run).await.decision)
    }
}

/// A decision taken but not yet recorded.
#[derive(Debug)]
pub struct Pending {
    decided: Decided,
    now: OffsetDateTime,
    started: std::time::Instant,
}

impl Pending {
    /// The decision, for a front door's own ceilings.
    pub fn decision(&mut self) -> &mut Decision {
        &mut self.decided.decision
    }

    /// The request's MCP message, if it went to an MCP server.
    pub fn mcp(&self) -> Option<&McpMessage> {
        self.decided.mcp.as_ref()
    }

    /// For an allow under `redact`: the request as it may be forwarded. A door that cannot
    /// rewrite requests must refuse when this is set.
    pub fn rewrite(&self) -> Option<&secrets::Rewrite> {
        self.decided.rewrite.as_ref()
    }
}

/// A recorded decision and the request's MCP message.
#[derive(Debug)]
pub struct Finished {
    /// The decision.
    pub decision: Decision,
    /// The request's MCP message, if it went to an MCP server.
    pub mcp: Option<McpMessage>,
    /// For an allow under `redact`: the request as it may be forwarded.
    pub rewrite: Option<secrets::Rewrite>,
}
