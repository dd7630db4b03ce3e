//! Secret scanning in the pipeline: the request's body and the headers that should not
//! carry secrets are scanned before policy, so policies see `context.secrets` (the rule
//! ids found) and `context.credential.exposed`; after an allow the `[scan]` action (or a
//! permit's `redact` obligation) blocks, redacts or only records what was found.
//!
//! The closed loop lives here too: a finding that is one of remit's own credentials (the
//! registry's API-key digests, [`KnownSecrets`]) marks that credential exposed and, when
//! `scan.quarantine_on_exposure` is set, quarantines the identity it belongs to. Both are
//! runtime state with fixed bounds; what happens at a bound is stated on the constant.

use std::collections::HashMap;
use std::sync::RwLock;

use remit_core::scan::location;
use remit_core::{
    CredentialId, IdentityId, Oversize, Registry, RequestFacts, ScanAction, ScanReport,
    ScanSettings, SecretFinding,
};
use remit_scan::{ContentEncoding, Findings, KnownSecrets, Limits, RuleSet, ScanError, Scanner};
use time::OffsetDateTime;

/// The pseudo-policy id reported when a secret in a request refuses it.
pub const SECRETS_POLICY: &str = "remit.secrets";
/// The pseudo-policy id reported when the identity is quarantined.
pub const QUARANTINE_POLICY: &str = "remit.quarantine";

/// Most credentials remembered as exposed. At the bound a new exposure is still alerted
/// and still quarantines its identity (when configured), but is not remembered.
pub const MAX_EXPOSED: usize = 100_000;

/// A credential seen in traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The credential that leaked.
    pub credential: CredentialId,
    /// The identity it belongs to.
    pub owner: Option<IdentityId>,
    /// The identity whose traffic carried it (`None`: unauthenticated traffic).
    pub seen_from: Option<IdentityId>,
    /// Where: `request.body`, `request.header.<name>` or `response.body`.
    pub location: String,
    /// The decision whose traffic carried it.
    pub decision_id: String,
    /// When.
    pub at: OffsetDateTime,
    /// Whether the owner was quarantined because of it.
    pub quarantined: bool,
}

/// What scanning a request asks of the door that forwards it.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// The body with secrets replaced, when the body had any.
    pub body: Option<Vec<u8>>,
    /// Headers whose values had secrets, with the redacted values.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The scan of one request, before the action is chosen.
#[derive(Debug, Default)]
pub(crate) struct RequestScan {
    pub(crate) report: Option<ScanReport>,
    pub(crate) rules: Vec<String>,
    pub(crate) too_large: Option<String>,
}

/// The scanner, the known credentials and the runtime state they feed.
#[derive(Debug)]
pub struct Secrets {
    scanner: Scanner,
    known: KnownSecrets,
    owners: HashMap<CredentialId, IdentityId>,
    settings: ScanSettings,
    exposed: RwLock<HashMap<CredentialId, Exposure>>,
    quarantined: RwLock<HashMap<IdentityId, String>>,
}

impl Secrets {
    /// Builds the scanner from `rules` and the known credentials from the registry.
    pub fn new(rules: RuleSet, settings: &ScanSettings, registry: &Registry) -> Self {
        let max = usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX);
        let limits = Limits {
            max_body_bytes: max,
            max_decoded_bytes: max.saturating_mul(4),
            ..Limits::default()
        };
        let mut known = KnownSecrets::new();
        let mut owners = HashMap::new();
        for identity in registry.iter() {
            for c in &identity.credentials {
                known.insert(c.sha256, c.id.as_str());
                owners.insert(c.id.clone(), identity.id.clone());
            }
        }
        Self {
            scanner: Scanner::with_limits(rules, limits),
            known,
            owners,
            settings: settings.clone(),
            exposed: RwLock::default(),
            quarantined: RwLock::default(),
        }
    }

    /// The scanner, for front doors that scan responses.
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// The `[scan]` settings.
    pub fn settings(&self) -> &ScanSettings {
        &self.settings
    }

    /// Turns a scan's findings into record entries, naming known credentials.
    pub fn report(&self, mut findings: Findings, at: &str, action: ScanAction) -> ScanReport {
        self.known.mark(&mut findings);
        ScanReport {
            findings: findings
                .items
                .iter()
                .map(|f| SecretFinding {
                    rule: f.rule.to_string(),
                    location: at.to_owned(),
                    layers: f.layer_name(),
                    span: [f.span.start, f.span.end],
                    fingerprint: f.fingerprint.to_string(),
                    credential: f.credential.as_deref().map(str::to_owned),
                })
                .collect(),
            action,
            incomplete: findings.incomplete.map(|i| format!("{i:?}")),
        }
    }

    /// Scans the request's body and the headers that should not carry secrets.
    pub(crate) fn scan_request(&self, facts: &RequestFacts) -> RequestScan {
        let mut out = RequestScan::default();
        let mut report: Option<ScanReport> = None;
        let mut merge = |r: ScanReport| match &mut report {
            None => report = Some(r),
            Some(all) => {
                all.findings.extend(r.findings);
                if all.incomplete.is_none() {
                    all.incomplete = r.incomplete;
                }
            }
        };
        if let Some(body) = facts.body.as_deref() {
            let encoding = facts
                .content_encoding
                .as_deref()
                .map_or(Ok(ContentEncoding::Identity), ContentEncoding::parse);
            let scanned = encoding.and_then(|e| self.scanner.scan(body, e));
            match scanned {
                Ok(f) if !f.is_clean() => {
                    merge(self.report(f, location::REQUEST_BODY, self.settings.request));
                }
                Ok(_) => {}
                Err(e @ ScanError::TooLarge { .. }) => out.too_large = Some(e.to_string()),
                Err(e) => {
                    // A body that does not decode as it claims cannot be checked: as over
                    // the limit, it is a decision, never a silent pass.
                    out.too_large = Some(e.to_string());
                }
            }
        }
        for (name, value) in facts.scanned_headers() {
            if let Ok(f) = self.scanner.scan(value, ContentEncoding::Identity)
                && !f.is_clean()
            {
                let at = format!("{}{name}", location::REQUEST_HEADER);
                merge(self.report(f, &at, self.settings.request));
            }
        }
        if let Some(r) = &report {
            out.rules = r.rule_ids().into_iter().map(str::to_owned).collect();
        }
        out.report = report;
        out
    }

    /// Whether a body over the scan limit (or undecodable) is refused for a request to a
    /// sensitive (or not) action, as `scan.oversize` says.
    pub fn refuses_unscanned(&self, sensitive: bool) -> bool {
        match self.settings.oversize {
            Oversize::Deny => true,
            Oversize::DenySensitive => sensitive,
            Oversize::Allow => false,
        }
    }

    /// Redacts the request in place. `None` when something found cannot be replaced in
    /// place (inside base64, or a compressed body): the caller blocks instead.
    pub(crate) fn redact_request(&self, facts: &RequestFacts) -> Option<Rewrite> {
        let mut rewrite = Rewrite::default();
        if let Some(body) = facts.body.as_deref() {
            if facts.content_encoding.is_some() {
                let f = self.scanner.scan(body, ContentEncoding::Identity).ok()?;
                if !f.items.is_empty() {
                    return None;
                }
            }
            let r = self.scanner.redact(body).ok()?;
            if !r.is_complete() {
                return None;
            }
            if !r.findings.items.is_empty() {
                rewrite.body = Some(r.body);
            }
        }
        for (name, value) in facts.scanned_headers() {
            let r = self.scanner.redact(value).ok()?;
            if !r.is_complete() {
                return None;
            }
            if !r.findings.items.is_empty() {
                rewrite.headers.push((name.to_owned(), r.body));
            }
        }
        Some(rewrite)
    }

    /// Whether `credential` has been seen in traffic.
    pub fn is_exposed(&self, credential: &CredentialId) -> bool {
        self.exposed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(credential)
    }

    /// Why `identity` is quarantined, if it is.
    pub fn quarantine_reason(&self, identity: &IdentityId) -> Option<String> {
        self.quarantined
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(identity)
            .cloned()
    }

    /// Acts on the known credentials in a report: marks each exposed, quarantines its
    /// identity when configured, raises an alert naming who leaked it where. Returns the
    /// exposures, newest last.
    pub fn expose(
        &self,
        report: &ScanReport,
        seen_from: Option<&IdentityId>,
        decision_id: &str,
        at: OffsetDateTime,
    ) -> Vec<Exposure> {
        let mut out = Vec::new();
        for f in &report.findings {
            let Some(id) = &f.credential else { continue };
            let Ok(credential) = CredentialId::parse(id) else {
                continue;
            };
            let owner = self.owners.get(&credential).cloned();
            let quarantined = self.settings.quarantine_on_exposure && owner.is_some();
            let exposure = Exposure {
                credential: credential.clone(),
                owner: owner.clone(),
                seen_from: seen_from.cloned(),
                location: f.location.clone(),
                decision_id: decision_id.to_owned(),
                at,
                quarantined,
            };
            tracing::warn!(
                target: "remit::alert",
                alert = "credential_exposed",
                credential = %credential,
                owner = owner.as_ref().map_or("", IdentityId::as_str),
                seen_from = seen_from.map_or("unclassified", IdentityId::as_str),
                location = %f.location,
                rule = %f.rule,
                decision_id,
                quarantined,
                "a known credential was seen in traffic"
            );
            metrics::counter!("remit_credentials_exposed_total").increment(1);
            {
                let mut map = self
                    .exposed
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if map.len() < MAX_EXPOSED || map.contains_key(&credential) {
                    map.entry(credential.clone())
                        .or_insert_with(|| exposure.clone());
                }
            }
            if quarantined && let Some(owner) = &owner {
                metrics::counter!("remit_identities_quarantined_total").increment(1);
                self.quarantined
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(owner.clone())
                    .or_insert_with(|| {
                        format!(
                            "credential `{credential}` was seen in {} of decision {decision_id}",
                            f.location
                        )
                    });
            }
            out.push(exposure);
        }
        out
    }
}
