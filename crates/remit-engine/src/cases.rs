//! Decision cases: files of request JSON and the verdict expected for it.
//!
//! `remit policy test DIR` and the test suites run the same code, so an operator's own
//! cases and remit's quickstart corpus are checked the same way.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::wire::WireRequest;
use crate::{BadRequest, Engine};

/// Most case files in one directory.
pub const MAX_CASES: usize = 10_000;
/// Largest case file.
pub const MAX_CASE_BYTES: u64 = 1024 * 1024;

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows.
    #[serde(default)]
    pub description: Option<String>,
    /// The clock reading to decide at (RFC 3339); default now.
    #[serde(default)]
    pub now: Option<String>,
    /// The request, as `POST /v1/decide` takes it.
    pub request: Value,
    /// The SPIFFE ID a front door verified for the peer (Envoy's mTLS `source.principal`,
    /// or remit's mTLS listener). It stands beside the request because no client can state
    /// it: `POST /v1/decide` never takes one from its body.
    #[serde(default)]
    pub peer_spiffe_id: Option<String>,
    /// What must come out.
    pub expect: Expect,
}

/// The expected outcome; only the fields given are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow`, `deny`, `approval_required` or `rate_limited`.
    pub decision: Option<String>,
    /// The identity id, or null for none.
    #[serde(default, deserialize_with = "some")]
    pub identity: Option<Option<String>>,
    /// The credential id recorded, or null for none.
    #[serde(default, deserialize_with = "some")]
    pub credential: Option<Option<String>>,
    /// The class.
    pub class: Option<String>,
    /// The authority kind.
    pub authority: Option<String>,
    /// The purpose, or null for none.
    #[serde(default, deserialize_with = "some")]
    pub purpose: Option<Option<String>>,
    /// The action.
    pub action: Option<String>,
    /// The resource as `Type::id`.
    pub resource: Option<String>,
    /// Whether the request is sensitive.
    pub sensitive: Option<bool>,
    /// Exactly these obligation kinds, in any order.
    pub obligations: Option<Vec<String>>,
    /// Exactly these determining policies, in any order.
    pub policies: Option<Vec<String>>,
    /// Each of these must be a substring of some reason.
    #[serde(default)]
    pub reasons_contain: Vec<String>,
    /// The request must be rejected as bad input with an error containing this.
    pub error: Option<String>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The result of running one case.
#[derive(Debug)]
pub struct CaseResult {
    /// The case file.
    pub file: PathBuf,
    /// Mismatches; empty when the case passed.
    pub failures: Vec<String>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn check<T: PartialEq + std::fmt::Debug>(
    failures: &mut Vec<String>,
    what: &str,
    want: Option<T>,
    got: T,
) {
    if let Some(w) = want
        && w != got
    {
        failures.push(format!("{what}: expected {w:?}, got {got:?}"));
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Runs one case against `engine`.
pub fn run_case(engine: &Engine, case: &Case) -> Vec<String> {
    let mut failures = Vec::new();
    let now = match &case.now {
        None => OffsetDateTime::now_utc(),
        Some(s) => match OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => t,
            Err(e) => return vec![format!("`now`: {e}")],
        },
    };
    let bytes = serde_json::to_vec(&case.request).unwrap_or_default();
    let result = WireRequest::from_json(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|w| w.into_facts().map_err(|e| BadRequest::from(e).to_string()))
        .and_then(|mut facts| {
            if let Some(s) = &case.peer_spiffe_id {
                facts.peer_spiffe_id =
                    Some(remit_core::SpiffeId::parse(s).map_err(|e| e.to_string())?);
            }
            engine
                .decide(&facts, "case".into(), now)
                .map_err(|e| e.to_string())
        });
    let decided = match (result, &case.expect.error) {
        (Err(e), Some(want)) => {
            if !e.contains(want.as_str()) {
                failures.push(format!(
                    "error: expected one containing {want:?}, got {e:?}"
                ));
            }
            return failures;
        }
        (Err(e), None) => return vec![format!("the request was rejected: {e}")],
        (Ok(d), Some(want)) => {
            return vec![format!(
                "expected an error containing {want:?}, got verdict {}",
                d.decision.verdict
            )];
        }
        (Ok(d), None) => d.decision,
    };
    let e = &case.expect;
    check(
        &mut failures,
        "decision",
        e.decision.clone(),
        decided.verdict.as_str().to_owned(),
    );
    check(
        &mut failures,
        "identity",
        e.identity.clone(),
        decided.identity.as_ref().map(ToString::to_string),
    );
    check(
        &mut failures,
        "credential",
        e.credential.clone(),
        decided.credential_id.as_ref().map(ToString::to_string),
    );
    check(
        &mut failures,
        "class",
        e.class.clone(),
        decided.class.as_str().to_owned(),
    );
    check(
        &mut failures,
        "authority",
        e.authority.clone(),
        decided.authority.kind.as_str().to_owned(),
    );
    check(
        &mut failures,
        "purpose",
        e.purpose.clone(),
        decided.purpose.as_ref().map(ToString::to_string),
    );
    check(
        &mut failures,
        "action",
        e.action.clone(),
        decided.action.to_string(),
    );
    check(
        &mut failures,
        "resource",
        e.resource.clone(),
        format!("{}::{}", decided.resource.rtype, decided.resource.id),
    );
    check(&mut failures, "sensitive", e.sensitive, decided.sensitive);
    let kinds: Vec<String> = decided
        .obligations
        .iter()
        .map(|o| o.kind().to_owned())
        .collect();
    check(
        &mut failures,
        "obligations",
        e.obligations.clone().map(sorted),
        sorted(kinds),
    );
    check(
        &mut failures,
        "policies",
        e.policies.clone().map(sorted),
        sorted(decided.policies.clone()),
    );
    for want in &e.reasons_contain {
        if !decided.reasons.iter().any(|r| r.contains(want.as_str())) {
            failures.push(format!(
                "reasons: none contains {want:?}; got {:?}",
                decided.reasons
            ));
        }
    }
    failures
}

/// Runs every `*.json` case in `dir`, in name order.
pub fn run_dir(engine: &Engine, dir: &Path) -> Result<Vec<CaseResult>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    if files.len() > MAX_CASES {
        return Err(format!("{}: more than {MAX_CASES} cases", dir.display()));
    }
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let failures = match read_case(&file) {
            Ok(case) => run_case(engine, &case),
            Err(e) => vec![e],
        };
        out.push(CaseResult { file, failures });
    }
    Ok(out)
}

fn read_case(file: &Path) -> Result<Case, String> {
    let len = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    if len > MAX_CASE_BYTES {
        return Err(format!(
            "the case file is larger than {MAX_CASE_BYTES} bytes"
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a case file: {e}"))
}
