//! Secret scanning in the pipeline: the request's body and the headers that should not
//! carry secrets are scanned before policy, so policies see `context.secrets` (the rule
//! ids found) and `context.credential.exposed`; after an allow the `[scan]` action (or a
//! permit's `redact` obligation) blocks, redacts or only records what was found.
//!
//! The closed loop lives here too: a finding that is one of remit's own credentials (the
//! registry's API-key digests, [`KnownSecrets`]) marks that credential exposed and, when
//! `scan.quarantine_on_exposure` is set, quarantines the identity it belongs to. Both are
//! runtime state with fixed bounds; what happens at a bound is stated on the constant.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use remit_core::scan::location;
use remit_core::{
    CredentialId, IdentityId, Oversize, Registry, RequestFacts, ScanAction, ScanReport,
    ScanSettings, SecretFinding,
};
use remit_scan::{ContentEncoding, Findings, KnownSecrets, Limits, RuleSet, Scanner};

/// The pseudo-policy id reported when a secret in a request refuses it.
pub const SECRETS_POLICY: &str = "remit.secrets";
/// The pseudo-policy id reported when the identity is quarantined.
pub const QUARANTINE_POLICY: &str = "remit.quarantine";

/// Most credentials remembered as exposed. At the bound a new exposure is still alerted
/// and still quarantines its identity (when configured), but is not remembered.
pub const MAX_EXPOSED: usize = 100_000;

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
    pub(crate) too_large: Option<String>,
}

/// The scanner, the known credentials and the runtime state they feed.
#[derive(Debug)]
pub struct Secrets {
    scanner: Scanner,
    known: KnownSecrets,
    owners: HashMap<CredentialId, IdentityId>,
    settings: ScanSettings,
    exposed: RwLock<HashSet<CredentialId>>,
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
                // Over the limit, or not decodable as it claims: it cannot be checked, and
                // that is a decision (`scan.oversize`), never a silent pass.
                Err(e) => out.too_large = Some(e.to_string()),
            }
        }
        // Every kept header value in one scan; each finding is placed by its span.
        let headers = facts.scanned.text();
        if !headers.is_empty()
            && let Ok(f) = self.scanner.scan(headers, ContentEncoding::Identity)
            && !f.is_clean()
        {
            let mut r = self.report(f, location::REQUEST_HEADER, self.settings.request);
            for finding in &mut r.findings {
                let name = facts.scanned.name_at(finding.span[0]).unwrap_or("");
                finding.location = format!("{}{name}", location::REQUEST_HEADER);
            }
            merge(r);
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

    /// Redacts what `report` found in the request, in place. `None` when something found
    /// cannot be replaced in place (inside base64, or in a compressed body): the caller
    /// refuses instead.
    pub(crate) fn redact_request(
        &self,
        facts: &RequestFacts,
        report: &ScanReport,
    ) -> Option<Rewrite> {
        let found_in = |at: &str| report.findings.iter().any(|f| f.location == at);
        let mut rewrite = Rewrite::default();
        if found_in(location::REQUEST_BODY) {
            if facts.content_encoding.is_some() {
                return None;
            }
            let r = self.scanner.redact(facts.body.as_deref()?).ok()?;
            if !r.is_complete() {
                return None;
            }
            rewrite.body = Some(r.body);
        }
        for (name, value) in facts.scanned_headers() {
            if !found_in(&format!("{}{name}", location::REQUEST_HEADER)) {
                continue;
            }
            let r = self.scanner.redact(value).ok()?;
            if !r.is_complete() {
                return None;
            }
            rewrite.headers.push((name.to_owned(), r.body));
        }
        Some(rewrite)
    }

    /// Whether `credential` has been seen in traffic.
    pub fn is_exposed(&self, credential: &CredentialId) -> bool {
        self.exposed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(credential)
    }

    /// Why `identity` is quarantined, if it is.
    pub fn quarantine_reason(&self, identity: &IdentityId) -> Option<String> {
        self.quarantined
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(identity)
            .cloned()
    }

    /// Quarantines `identity` (refused as `remit.quarantine` from the next request on) for
    /// `reason`. Returns false when it already was, or when [`MAX_EXPOSED`] identities are
    /// quarantined (the caller still alerts).
    pub fn quarantine(&self, identity: &IdentityId, reason: String) -> bool {
        let mut map = self
            .quarantined
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.contains_key(identity) || map.len() >= MAX_EXPOSED {
            return false;
        }
        metrics::counter!("remit_identities_quarantined_total").increment(1);
        map.insert(identity.clone(), reason);
        true
    }

    /// Acts on the known credentials in a report: marks each exposed, quarantines its
    /// identity when configured, and raises an alert naming who carried it where.
    pub fn expose(&self, report: &ScanReport, seen_from: Option<&IdentityId>, decision_id: &str) {
        for f in &report.findings {
            let Some(id) = &f.credential else { continue };
            let Ok(credential) = CredentialId::parse(id) else {
                continue;
            };
            let owner = self.owners.get(&credential);
            let quarantine = self.settings.quarantine_on_exposure && owner.is_some();
            tracing::warn!(
                target: "remit::alert",
                alert = "credential_exposed",
                credential = %credential,
                owner = owner.map_or("", IdentityId::as_str),
                seen_from = seen_from.map_or("unclassified", IdentityId::as_str),
                location = %f.location,
                rule = %f.rule,
                decision_id,
                quarantined = quarantine,
                "a known credential was seen in traffic"
            );
            metrics::counter!("remit_credentials_exposed_total").increment(1);
            if let (true, Some(owner)) = (quarantine, owner) {
                let mut map = self
                    .quarantined
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !map.contains_key(owner) {
                    metrics::counter!("remit_identities_quarantined_total").increment(1);
                    map.insert(
                        owner.clone(),
                        format!(
                            "credential `{credential}` was seen in {} of decision {decision_id}",
                            f.location
                        ),
                    );
                }
            }
            let mut exposed = self
                .exposed
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if exposed.len() < MAX_EXPOSED {
                exposed.insert(credential);
            }
        }
    }
}
