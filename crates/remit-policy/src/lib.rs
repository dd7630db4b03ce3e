//! The policy layer: the only crate that imports `cedar-policy`.
//!
//! It generates a Cedar schema from the route table, loads the baseline pack and the
//! operator's policy files, validates them strictly, reads obligations and remedies from
//! annotations, and evaluates requests.
//!
//! Speed comes from doing work once: entities are built at load, and policies are sliced by
//! action and by principal, so a request is evaluated only against the policies whose scope
//! could match it. Slicing is exact, not a heuristic: a policy whose scope does not match a
//! request can neither be satisfied nor raise an error, so leaving it out cannot change the
//! answer (the `agree` test checks this against the full set).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
mod diag;
pub mod schema;
mod slice;

use cache::{Answer, Answers, ContextValue, RequestParts};
use slice::{CONTEXT_ATTRS, Needs, Sliced, Slices};

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Request, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use remit_core::route::ArgValue;
use remit_core::{
    ActionName, AuthorityKind, Class, IdentityId, Obligation, Principal, Purpose, Rate, Registry,
    ResourceRef, RouteTable,
};

pub use diag::{Diagnostic, Severity};

/// The baseline pack's text: always loaded before the operator's policies.
pub const BASELINE: &str = include_str!("baseline.cedar");
/// The name the baseline pack is reported under.
pub const BASELINE_FILE: &str = "<baseline>";
/// Most policies across all files.
pub const MAX_POLICIES: usize = 10_000;
/// Largest policy file.
pub const MAX_POLICY_FILE_BYTES: usize = 4 * 1024 * 1024;

/// One policy file's text.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The file's path, as it should appear in diagnostics.
    pub file: String,
    /// Its text.
    pub text: String,
}

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Policies failed to parse or validate; each diagnostic names file and line.
    #[error("{}", diag::render_all(.0))]
    Invalid(Vec<Diagnostic>),
    /// The schema generated from the route table was rejected (a bug, or a route table
    /// Cedar cannot express).
    #[error("the schema generated from the route table is invalid: {0}")]
    Schema(String),
    /// An identity could not be turned into a Cedar entity.
    #[error("building policy entities: {0}")]
    Entities(String),
}

#[derive(Debug, Clone)]
struct PolicyMeta {
    file: String,
    line: usize,
    effect: Effect,
    reason: Option<String>,
    obligations: Vec<Obligation>,
    remedy_approval: bool,
    /// Approver groups (`@approvers`), for a forbid lifted by approval.
    approvers: Option<Vec<String>>,
}

/// What the policy layer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVerdict {
    /// Permitted, no forbid applies.
    Allow,
    /// Denied.
    Deny,
    /// Denied only by forbids that an approval lifts, and permitted once approved.
    ApprovalRequired,
}

/// The outcome of evaluating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The verdict.
    pub verdict: PolicyVerdict,
    /// The determining policy ids.
    pub policies: Vec<String>,
    /// Reasons, from `@reason` annotations or the engine.
    pub reasons: Vec<String>,
    /// Obligations from the determining permits' annotations.
    pub obligations: Vec<Obligation>,
}

/// One request as the policy layer sees it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// The principal.
    pub principal: &'a Principal,
    /// The action.
    pub action: &'a ActionName,
    /// The resource.
    pub resource: &'a ResourceRef,
    /// The class.
    pub class: Class,
    /// The authority.
    pub authority: AuthorityKind,
    /// The declared purpose.
    pub purpose: Option<&'a Purpose>,
    /// Whether the action or resource is sensitive.
    pub sensitive: bool,
    /// The method.
    pub method: &'a str,
    /// The canonical path.
    pub path: &'a str,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Captured path parameters.
    pub params: &'a [(String, String)],
    /// Declared tool arguments present in the call.
    pub arguments: &'a [(String, ArgValue)],
    /// The MCP method.
    pub mcp_method: Option<&'a str>,
    /// The MCP tool.
    pub mcp_tool: Option<&'a str>,
    /// What the MCP message names: tool or prompt name, or resource URI.
    pub mcp_name: Option<&'a str>,
    /// Risk score, 0 to 100.
    pub risk: i64,
    /// Length of the delegation chain.
    pub chain_depth: i64,
    /// Whether the presented credential is known to be exposed (seen in traffic).
    pub credential_exposed: bool,
    /// The rule ids of secrets found in the request, sorted and distinct.
    pub secrets: &'a [&'a str],
    /// Whether a granted approval for exactly this request was presented
    /// (`context.approved`).
    pub approved: bool,
}

/// Loaded, validated policies ready to evaluate requests.
#[derive(Debug)]
pub struct PolicyEngine {
    schema_json: serde_json::Value,
    entities: Entities,
    authorizer: Authorizer,
    all: Sliced,
    slices: Slices,
    empty: Sliced,
    principals: HashMap<IdentityId, EntityUid>,
    unclassified: EntityUid,
    actions: HashMap<ActionName, EntityUid>,
    resource_types: HashMap<String, EntityTypeName>,
    meta: HashMap<PolicyId, PolicyMeta>,
    warnings: Vec<Diagnostic>,
    /// Cedar's answers to requests already evaluated; valid for this engine's policies
    /// and entities, which never change after load.
    answers: Answers,
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let t = EntityTypeName::from_str(type_name).map_err(|e| PolicyError::Schema(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

fn is_policy_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// Reads obligations and remedies from a policy's annotations.
fn read_meta(p: &Policy, file: &str, line: usize) -> Result<PolicyMeta, String> {
    let mut obligations = Vec::new();
    if let Some(list) = p.annotation("obligation") {
        for o in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            obligations.push(match o {
                "log_output" => Obligation::LogOutput,
                "redact" => Obligation::Redact,
                "read_only" => Obligation::ReadOnly,
                "approval" => Obligation::Approval,
                other => {
                    return Err(format!(
                        "`@obligation(\"{other}\")` is not an obligation: use log_output, redact, read_only or approval (rates go in `@rate`)"
                    ));
                }
            });
        }
    }
    if let Some(r) = p.annotation("rate") {
        let rate = Rate::parse(r).map_err(|e| format!("`@rate`: {e}"))?;
        obligations.push(Obligation::Rate {
            rate,
            source: p.id().to_string(),
        });
    }
    match (p.annotation("record_set"), p.annotation("record_values")) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(
                "`@record_values` belongs beside the `@record_set` it approves them for".into(),
            );
        }
        (Some(_), _) if p.effect() != Effect::Permit => {
            return Err(
                "`@record_set` belongs on a permit: it limits what the allow may see".into(),
            );
        }
        (Some(set), values) => {
            let values = match values {
                None => None,
                Some(list) => {
                    let v: Vec<String> = list
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if v.len() > remit_core::records::MAX_VALUES
                        || v.iter()
                            .any(|s| s.len() > remit_core::records::MAX_VALUE_BYTES)
                    {
                        return Err(format!(
                            "`@record_values` lists at most {} values of at most {} bytes, separated by commas",
                            remit_core::records::MAX_VALUES,
                            remit_core::records::MAX_VALUE_BYTES
                        ));
                    }
                    Some(v)
                }
            };
            obligations.push(Obligation::RecordSet {
                set: set.trim().to_owned(),
                values,
            });
        }
    }
    let remedy_approval = match p.annotation("remedy") {
        None => false,
        Some("approval") => true,
        Some(other) => {
            return Err(format!(
                "`@remedy(\"{other}\")` is not a remedy: use `approval`"
            ));
        }
    };
    if p.effect() == Effect::Permit && remedy_approval {
        return Err("`@remedy` belongs on a forbid: it names what lifts the refusal".into());
    }
    let approvers = match p.annotation("approvers") {
        None => None,
        Some(_) if !remedy_approval => {
            return Err(
                "`@approvers` names who may lift a `@remedy(\"approval\")` forbid; this policy has no such remedy"
                    .into(),
            );
        }
        Some(list) => {
            let groups: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect();
            if groups.is_empty() || groups.len() > 32 {
                return Err("`@approvers` lists 1 to 32 groups, separated by commas".into());
            }
            if let Some(bad) = groups
                .iter()
                .find(|g| !remit_core::config::is_group_name(g))
            {
                return Err(format!(
                    "`@approvers`: `{}` is not a group name (letters, digits, `-`, `_`, `.`, `:`)",
                    bad.escape_default()
                ));
            }
            Some(groups)
        }
    };
    if p.effect() == Effect::Forbid && !obligations.is_empty() {
        return Err("obligations belong on a permit: a forbid has nothing to oblige".into());
    }
    Ok(PolicyMeta {
        file: file.to_owned(),
        line,
        effect: p.effect(),
        reason: p.annotation("reason").map(str::to_owned),
        obligations,
        remedy_approval,
        approvers,
    })
}

impl PolicyEngine {
    /// Loads the baseline pack and `sources`, validating them against the schema generated
    /// from `routes`, and builds entities for `registry`.
    pub fn load(
        sources: &[PolicySource],
        registry: &Registry,
        routes: &RouteTable,
    ) -> Result<Self, PolicyError> {
        let schema_value = schema::schema_json(routes);
        let schema = Schema::from_json_value(schema_value.clone())
            .map_err(|e| PolicyError::Schema(e.to_string()))?;
        let mut diags = Vec::new();
        let mut all = PolicySet::new();
        let mut meta = HashMap::new();
        let baseline = PolicySource {
            file: BASELINE_FILE.into(),
            text: BASELINE.into(),
        };
        let mut texts: HashMap<String, &str> = HashMap::new();
        for src in std::iter::once(&baseline).chain(sources) {
            texts.insert(src.file.clone(), &src.text);
            if src.text.len() > MAX_POLICY_FILE_BYTES {
                diags.push(Diagnostic::error(
                    &src.file,
                    1,
                    1,
                    None,
                    format!("the file is larger than {MAX_POLICY_FILE_BYTES} bytes"),
                ));
                continue;
            }
            let set = match PolicySet::from_str(&src.text) {
                Ok(s) => s,
                Err(errs) => {
                    diags.extend(errs.iter().map(|e| {
                        Diagnostic::from_miette(&src.file, &src.text, None, Severity::Error, e)
                    }));
                    continue;
                }
            };
            if set.templates().next().is_some() {
                diags.push(Diagnostic::error(
                    &src.file,
                    1,
                    1,
                    None,
                    "policy templates are not supported yet: write static policies".into(),
                ));
                continue;
            }
            let stem = std::path::Path::new(&src.file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("policy")
                .to_owned();
            let mut parsed: Vec<&Policy> = set.policies().collect();
            parsed.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            let mut cursor = 0usize;
            for (n, p) in parsed.into_iter().enumerate() {
                let offset = p
                    .to_cedar()
                    .and_then(|t| src.text[cursor..].find(t.as_str()).map(|i| i + cursor))
                    .unwrap_or(cursor);
                cursor = offset;
                let (line, _) = diag::line_col(&src.text, offset);
                let id = match p.annotation("id") {
                    Some(id) => id.to_owned(),
                    None => format!("{stem}.{n}"),
                };
                if !is_policy_id(&id) {
                    diags.push(Diagnostic::error(
                        &src.file,
                        line,
                        1,
                        None,
                        format!(
                            "`@id(\"{}\")` must be letters, digits, `-`, `_`, `.` or `:`",
                            id.escape_default()
                        ),
                    ));
                    continue;
                }
                if src.file != BASELINE_FILE && id.starts_with("baseline.") {
                    diags.push(Diagnostic::error(
                        &src.file,
                        line,
                        1,
                        Some(&id),
                        "ids starting with `baseline.` are reserved for remit's baseline pack"
                            .into(),
                    ));
                    continue;
                }
                let pid = PolicyId::new(&id);
                if let Some(prev) = meta.get(&pid) {
                    let prev: &PolicyMeta = prev;
                    diags.push(Diagnostic::error(
                        &src.file,
                        line,
                        1,
                        Some(&id),
                        format!(
                            "policy id `{id}` is already used at {}:{}",
                            prev.file, prev.line
                        ),
                    ));
                    continue;
                }
                match read_meta(p, &src.file, line) {
                    Ok(m) => {
                        meta.insert(pid.clone(), m);
                    }
                    Err(msg) => {
                        diags.push(Diagnostic::error(&src.file, line, 1, Some(&id), msg));
                        continue;
                    }
                }
                if let Err(e) = all.add(p.new_id(pid)) {
                    diags.push(Diagnostic::error(
                        &src.file,
                        line,
                        1,
                        Some(&id),
                        e.to_string(),
                    ));
                }
            }
        }
        if meta.len() > MAX_POLICIES {
            diags.push(Diagnostic::error(
                "<policies>",
                1,
                1,
                None,
                format!("more than {MAX_POLICIES} policies"),
            ));
        }
        let mut warnings = Vec::new();
        if diags.is_empty() {
            let result = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
            for e in result.validation_errors() {
                let m = meta.get(e.policy_id());
                let file = m.map_or("<policies>", |m| m.file.as_str());
                let text = texts.get(file).copied().unwrap_or("");
                diags.push(Diagnostic::from_miette(
                    file,
                    text,
                    Some(e.policy_id().as_ref()),
                    Severity::Error,
                    e,
                ));
            }
            for w in result.validation_warnings() {
                let m = meta.get(w.policy_id());
                let file = m.map_or("<policies>", |m| m.file.as_str());
                let text = texts.get(file).copied().unwrap_or("");
                warnings.push(Diagnostic::from_miette(
                    file,
                    text,
                    Some(w.policy_id().as_ref()),
                    Severity::Warning,
                    w,
                ));
            }
        }
        if !diags.is_empty() {
            return Err(PolicyError::Invalid(diags));
        }
        Self::build(schema_value, schema, all, meta, warnings, registry, routes)
    }

    fn build(
        schema_json: serde_json::Value,
        schema: Schema,
        all: PolicySet,
        meta: HashMap<PolicyId, PolicyMeta>,
        warnings: Vec<Diagnostic>,
        registry: &Registry,
        routes: &RouteTable,
    ) -> Result<Self, PolicyError> {
        let mut principals = HashMap::with_capacity(registry.len());
        let mut entities = Vec::with_capacity(registry.len());
        for identity in registry.iter() {
            let u = uid(schema::IDENTITY_TYPE, identity.id.as_str())?;
            let attrs = HashMap::from([
                (
                    "kind".to_owned(),
                    RestrictedExpression::new_string(identity.kind.as_str().to_owned()),
                ),
                (
                    "owner".to_owned(),
                    RestrictedExpression::new_string(identity.owner.to_string()),
                ),
                (
                    "purposes".to_owned(),
                    RestrictedExpression::new_set(
                        identity
                            .purposes
                            .iter()
                            .map(|p| RestrictedExpression::new_string(p.to_string())),
                    ),
                ),
            ]);
            entities.push(
                Entity::new(u.clone(), attrs, HashSet::new())
                    .map_err(|e| PolicyError::Entities(e.to_string()))?,
            );
            principals.insert(identity.id.clone(), u);
        }
        let entities = Entities::from_entities(entities, Some(&schema))
            .map_err(|e| PolicyError::Entities(e.to_string()))?;
        let mut actions = HashMap::new();
        for name in routes
            .actions()
            .keys()
            .cloned()
            .chain(std::iter::once(ActionName::unmapped()))
        {
            let u = uid("Action", name.as_str())?;
            actions.insert(name, u);
        }
        let mut resource_types = HashMap::new();
        for t in routes.resource_types() {
            let n = EntityTypeName::from_str(&t).map_err(|e| PolicyError::Schema(e.to_string()))?;
            resource_types.insert(t, n);
        }
        let slices = Slices::build(&all, &actions)?;
        Ok(Self {
            schema_json,
            entities,
            authorizer: Authorizer::new(),
            all: Sliced {
                set: all,
                needs: Needs::ALL,
            },
            slices,
            empty: Sliced::default(),
            principals,
            unclassified: uid(schema::UNCLASSIFIED_TYPE, schema::UNCLASSIFIED_ID)?,
            actions,
            resource_types,
            meta,
            warnings,
            answers: Answers::new(cache::DEFAULT_BYTES),
        })
    }

    /// Validation warnings (the policies loaded, but something deserves a look).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// How many policies are loaded, the baseline included.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether no policy is loaded (never true: the baseline is always there).
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The generated schema in Cedar's human-readable format.
    pub fn schema_text(&self) -> String {
        cedar_policy::SchemaFragment::from_json_value(self.schema_json.clone())
            .map_err(|e| e.to_string())
            .and_then(|f| f.to_cedarschema().map_err(|e| e.to_string()))
            .unwrap_or_else(|e| format!("// the schema cannot be printed: {e}"))
    }

    /// The approver groups a `@remedy("approval")` policy names with `@approvers`; `None`
    /// when it names none (the configuration's default approvers apply).
    pub fn approvers(&self, id: &str) -> Option<&[String]> {
        self.meta
            .get(&PolicyId::new(id))
            .and_then(|m| m.approvers.as_deref())
    }

    /// Every policy that names an approved record set with `@record_set`, as a diagnostic
    /// to report when the set is not configured: file, line, policy id and message.
    pub fn unknown_record_sets(&self, known: impl Fn(&str) -> bool) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for (id, m) in &self.meta {
            for o in &m.obligations {
                if let Obligation::RecordSet { set, .. } = o
                    && !known(set)
                {
                    out.push(Diagnostic {
                        file: m.file.clone(),
                        line: m.line,
                        column: 1,
                        policy: Some(id.to_string()),
                        severity: diag::Severity::Error,
                        message: format!(
                            "`@record_set(\"{set}\")` names no `[[record_set]]` in the configuration"
                        ),
                        help: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        out
    }

    /// Where a policy was defined, as `file:line`.
    pub fn policy_location(&self, id: &str) -> Option<String> {
        self.meta
            .get(&PolicyId::new(id))
            .map(|m| format!("{}:{}", m.file, m.line))
    }

    fn principal_uid(&self, p: &Principal) -> Option<&EntityUid> {
        match p {
            Principal::Identity(id) => self.principals.get(id),
            Principal::Unclassified => Some(&self.unclassified),
        }
    }

    /// The context attributes in `needs` for `input`, in [`CONTEXT_ATTRS`] order: the one
    /// list both the Cedar request and the decision cache's key are written from.
    fn context<'a>(
        input: &PolicyInput<'a>,
        approved: bool,
        needs: Needs,
    ) -> Result<Vec<(&'static str, ContextValue<'a>)>, String> {
        use ContextValue as V;
        let mut ctx = Vec::with_capacity(CONTEXT_ATTRS.len());
        for (i, name) in CONTEXT_ATTRS.iter().enumerate() {
            if !needs.has(i) {
                continue;
            }
            let value = match *name {
                "class" => V::Str(input.class.as_str()),
                "authority" => V::Str(input.authority.as_str()),
                "purpose" => match input.purpose {
                    Some(p) => V::Str(p.as_str()),
                    None => continue,
                },
                "sensitive" => V::Bool(input.sensitive),
                "method" => V::Str(input.method),
                "path" => V::Str(input.path),
                "source_ip" => match input.source_ip {
                    Some(ip) => V::Ip(ip),
                    None => continue,
                },
                "risk" => V::Long(input.risk),
                "approved" => V::Bool(approved),
                "chain_depth" => V::Long(input.chain_depth),
                "mcp" => {
                    let Some(m) = input.mcp_method else { continue };
                    let mut rec = vec![("method", V::Str(m))];
                    if let Some(t) = input.mcp_tool {
                        rec.push(("tool", V::Str(t)));
                    }
                    if let Some(n) = input.mcp_name {
                        rec.push(("name", V::Str(n)));
                    }
                    V::Record(rec)
                }
                "params" => V::Record(
                    input
                        .params
                        .iter()
                        .map(|(k, v)| (k.as_str(), V::Str(v.as_str())))
                        .collect(),
                ),
                "arguments" => V::Record(
                    input
                        .arguments
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                ArgValue::String(s) => V::Str(s.as_str()),
                                ArgValue::Long(n) => V::Long(*n),
                                ArgValue::Bool(b) => V::Bool(*b),
                            };
                            (k.as_str(), v)
                        })
                        .collect(),
                ),
                "credential" => V::Record(vec![("exposed", V::Bool(input.credential_exposed))]),
                "secrets" => V::Set(input.secrets.iter().map(|r| V::Str(r)).collect()),
                other => return Err(format!("context attribute `{other}` has no value")),
            };
            ctx.push((*name, value));
        }
        Ok(ctx)
    }

    /// Builds the Cedar request for `input` from its context attributes (see [`Self::context`]).
    fn request(
        &self,
        input: &PolicyInput<'_>,
        context: &[(&'static str, ContextValue<'_>)],
    ) -> Result<Request, String> {
        let principal = self
            .principal_uid(input.principal)
            .ok_or("the principal is not registered")?
            .clone();
        let action = self
            .actions
            .get(input.action)
            .ok_or_else(|| format!("action `{}` is not in the schema", input.action))?
            .clone();
        let rtype = self
            .resource_types
            .get(input.resource.rtype.as_str())
            .ok_or_else(|| {
                format!(
                    "resource type `{}` is not in the schema",
                    input.resource.rtype
                )
            })?;
        let resource =
            EntityUid::from_type_name_and_id(rtype.clone(), EntityId::new(&input.resource.id));
        let ctx = context
            .iter()
            .map(|(name, v)| Ok(((*name).to_owned(), v.to_cedar()?)))
            .collect::<Result<Vec<_>, String>>()?;
        // Cedar builds a context by evaluating it as a record expression, which costs as
        // much as a policy; a slice whose policies read no context needs none.
        let context = if ctx.is_empty() {
            Context::empty()
        } else {
            Context::from_pairs(ctx).map_err(|e| e.to_string())?
        };
        Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())
    }

    /// Evaluates `input` against the policies that can apply to it, reusing Cedar's answer
    /// to an identical Cedar request (see [`cache`]).
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> PolicyOutcome {
        self.evaluate_in(input, self.slice(input), true)
    }

    /// As [`Self::evaluate`], but always running Cedar: the reference the decision cache
    /// is tested and benchmarked against.
    pub fn evaluate_uncached(&self, input: &PolicyInput<'_>) -> PolicyOutcome {
        self.evaluate_in(input, self.slice(input), false)
    }

    /// Evaluates `input` against every loaded policy with the full context, without
    /// slicing or the cache: the reference the sliced path is tested and benchmarked
    /// against.
    pub fn evaluate_unsliced(&self, input: &PolicyInput<'_>) -> PolicyOutcome {
        self.evaluate_in(input, &self.all, false)
    }

    /// The same engine with a decision cache of at most `bytes` (0: none), as
    /// `gateway.decision_cache_bytes` asks.
    #[must_use]
    pub fn with_decision_cache(mut self, bytes: u64) -> Self {
        self.answers = Answers::new(bytes);
        self
    }

    /// How many of Cedar's answers the decision cache holds.
    pub fn cached_answers(&self) -> usize {
        self.answers.len()
    }

    fn slice(&self, input: &PolicyInput<'_>) -> &Sliced {
        self.slices
            .get(input.action, input.principal)
            .unwrap_or(&self.empty)
    }

    fn evaluate_in(&self, input: &PolicyInput<'_>, set: &Sliced, cached: bool) -> PolicyOutcome {
        let first = match self.authorize(input, set, input.approved, cached) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if first.decision == CedarDecision::Allow {
            return self.allow(&first.policies);
        }
        // Denied. If every forbid that applied is lifted by an approval, ask whether an
        // approval would change the answer: evaluate again as if approved.
        let forbids = &first.policies;
        if !input.approved
            && !forbids.is_empty()
            && forbids
                .iter()
                .all(|id| self.meta.get(id).is_some_and(|m| m.remedy_approval))
            && self
                .authorize(input, set, true, cached)
                .is_ok_and(|a| a.decision == CedarDecision::Allow)
        {
            return PolicyOutcome {
                verdict: PolicyVerdict::ApprovalRequired,
                reasons: self.reasons(forbids, input),
                policies: forbids.iter().map(ToString::to_string).collect(),
                obligations: Vec::new(),
            };
        }
        let reasons = if forbids.is_empty() {
            vec![format!(
                "no policy permits `{}` on {}",
                input.action,
                display_resource(input.resource)
            )]
        } else {
            self.reasons(forbids, input)
        };
        PolicyOutcome {
            verdict: PolicyVerdict::Deny,
            policies: forbids.iter().map(ToString::to_string).collect(),
            reasons,
            obligations: Vec::new(),
        }
    }

    /// Runs Cedar, or reuses its answer to the same Cedar request when `cached` (see
    /// [`cache`]); a forbid that failed to evaluate is a deny (Cedar itself would skip it).
    fn authorize(
        &self,
        input: &PolicyInput<'_>,
        set: &Sliced,
        approved: bool,
        cached: bool,
    ) -> Result<Arc<Answer>, PolicyOutcome> {
        let built = |e| deny_error(format!("the policy request could not be built: {e}"));
        let context = Self::context(input, approved, set.needs).map_err(built)?;
        let mut key = Vec::new();
        let keep = cached
            && self.answers.is_on()
            && cache::key(
                &RequestParts {
                    principal: match input.principal {
                        Principal::Identity(id) => Some(id.as_str()),
                        Principal::Unclassified => None,
                    },
                    action: input.action.as_str(),
                    resource_type: input.resource.rtype.as_str(),
                    resource_id: &input.resource.id,
                    context: &context,
                },
                &mut key,
            );
        if keep && let Some(answer) = self.answers.get(&key) {
            return Ok(answer);
        }
        let request = self.request(input, &context).map_err(built)?;
        let response = self
            .authorizer
            .is_authorized(&request, &set.set, &self.entities);
        let diagnostics = response.diagnostics();
        let mut clean = true;
        for err in diagnostics.errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = err;
            let id = e.policy_id();
            if self.meta.get(id).is_none_or(|m| m.effect == Effect::Forbid) {
                let mut outcome = deny_error(format!(
                    "forbid policy `{id}` could not be evaluated, so the request is denied: {}",
                    e.inner()
                ));
                outcome.policies.push(id.to_string());
                return Err(outcome);
            }
            clean = false;
        }
        let mut policies: Vec<PolicyId> = diagnostics.reason().cloned().collect();
        policies.sort_unstable_by(|a, b| AsRef::<str>::as_ref(a).cmp(b.as_ref()));
        let answer = Arc::new(Answer {
            decision: response.decision(),
            policies,
        });
        // Only a clean answer is kept: a permit that failed to evaluate is evaluated again.
        if keep && clean {
            self.answers.insert(&key, answer.clone());
        }
        Ok(answer)
    }

    fn allow(&self, permits: &[PolicyId]) -> PolicyOutcome {
        let mut obligations: Vec<Obligation> = Vec::new();
        for id in permits {
            if let Some(m) = self.meta.get(id) {
                for o in &m.obligations {
                    if !obligations.contains(o) {
                        obligations.push(o.clone());
                    }
                }
            }
        }
        PolicyOutcome {
            verdict: PolicyVerdict::Allow,
            policies: permits.iter().map(ToString::to_string).collect(),
            reasons: Vec::new(),
            obligations,
        }
    }

    fn reasons(&self, ids: &[PolicyId], input: &PolicyInput<'_>) -> Vec<String> {
        ids.iter()
            .map(
                |id| match self.meta.get(id).and_then(|m| m.reason.as_deref()) {
                    Some(r) => fill(r, input),
                    None => format!("forbidden by policy `{id}`"),
                },
            )
            .collect()
    }
}

impl ContextValue<'_> {
    /// The value as Cedar takes it.
    fn to_cedar(&self) -> Result<RestrictedExpression, String> {
        Ok(match self {
            Self::Str(s) => RestrictedExpression::new_string((*s).to_owned()),
            Self::Bool(b) => RestrictedExpression::new_bool(*b),
            Self::Long(n) => RestrictedExpression::new_long(*n),
            Self::Ip(ip) => RestrictedExpression::new_ip(ip.to_string()),
            Self::Record(fields) => RestrictedExpression::new_record(
                fields
                    .iter()
                    .map(|(k, v)| Ok(((*k).to_owned(), v.to_cedar()?)))
                    .collect::<Result<Vec<_>, String>>()?,
            )
            .map_err(|e| e.to_string())?,
            Self::Set(items) => RestrictedExpression::new_set(
                items
                    .iter()
                    .map(ContextValue::to_cedar)
                    .collect::<Result<Vec<_>, String>>()?,
            ),
        })
    }
}

fn deny_error(reason: String) -> PolicyOutcome {
    PolicyOutcome {
        verdict: PolicyVerdict::Deny,
        policies: Vec::new(),
        reasons: vec![reason],
        obligations: Vec::new(),
    }
}

fn display_resource(r: &ResourceRef) -> String {
    format!("`{}::\"{}\"`", r.rtype, r.id.escape_default())
}

/// Fills `{identity}`, `{purpose}`, `{action}`, `{resource}` and `{class}` in a reason.
fn fill(template: &str, input: &PolicyInput<'_>) -> String {
    if !template.contains('{') {
        return template.to_owned();
    }
    let identity = match input.principal {
        Principal::Identity(id) => id.as_str(),
        Principal::Unclassified => "unclassified",
    };
    template
        .replace("{identity}", identity)
        .replace("{purpose}", input.purpose.map_or("(none)", |p| p.as_str()))
        .replace("{action}", input.action.as_str())
        .replace(
            "{resource}",
            &format!(
                "{}::{}",
                input.resource.rtype,
                input.resource.id.escape_default()
            ),
        )
        .replace("{class}", input.class.as_str())
}
