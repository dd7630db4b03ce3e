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

mod diag;
pub mod schema;
mod slice;

use slice::{CONTEXT_ATTRS, Needs, Sliced, Slices};

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

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

    /// Builds the Cedar request for `input`, with only the context attributes in `needs`.
    fn request(
        &self,
        input: &PolicyInput<'_>,
        approved: bool,
        needs: Needs,
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
        let mut ctx: Vec<(String, RestrictedExpression)> = Vec::with_capacity(CONTEXT_ATTRS.len());
        for (i, name) in CONTEXT_ATTRS.iter().enumerate() {
            if !needs.has(i) {
                continue;
            }
            let value = match *name {
                "class" => RestrictedExpression::new_string(input.class.as_str().into()),
                "authority" => RestrictedExpression::new_string(input.authority.as_str().into()),
                "purpose" => match input.purpose {
                    Some(p) => RestrictedExpression::new_string(p.to_string()),
                    None => continue,
                },
                "sensitive" => RestrictedExpression::new_bool(input.sensitive),
                "method" => RestrictedExpression::new_string(input.method.into()),
                "path" => RestrictedExpression::new_string(input.path.into()),
                "source_ip" => match input.source_ip {
                    Some(ip) => RestrictedExpression::new_ip(ip.to_string()),
                    None => continue,
                },
                "risk" => RestrictedExpression::new_long(input.risk),
                "approved" => RestrictedExpression::new_bool(approved),
                "chain_depth" => RestrictedExpression::new_long(input.chain_depth),
                "mcp" => {
                    let Some(m) = input.mcp_method else { continue };
                    let mut rec = vec![(
                        "method".to_owned(),
                        RestrictedExpression::new_string(m.into()),
                    )];
                    if let Some(t) = input.mcp_tool {
                        rec.push((
                            "tool".to_owned(),
                            RestrictedExpression::new_string(t.into()),
                        ));
                    }
                    if let Some(n) = input.mcp_name {
                        rec.push((
                            "name".to_owned(),
                            RestrictedExpression::new_string(n.into()),
                        ));
                    }
                    RestrictedExpression::new_record(rec).map_err(|e| e.to_string())?
                }
                "params" => {
                    let params = input
                        .params
                        .iter()
                        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
                    RestrictedExpression::new_record(params).map_err(|e| e.to_string())?
                }
                "arguments" => {
                    let args = input.arguments.iter().map(|(k, v)| {
                        let e = match v {
                            ArgValue::String(s) => RestrictedExpression::new_string(s.clone()),
                            ArgValue::Long(n) => RestrictedExpression::new_long(*n),
                            ArgValue::Bool(b) => RestrictedExpression::new_bool(*b),
                        };
                        (k.clone(), e)
                    });
                    RestrictedExpression::new_record(args).map_err(|e| e.to_string())?
                }
                "credential" => RestrictedExpression::new_record([(
                    "exposed".to_owned(),
                    RestrictedExpression::new_bool(input.credential_exposed),
                )])
                .map_err(|e| e.to_string())?,
                "secrets" => RestrictedExpression::new_set(
                    input
                        .secrets
                        .iter()
                        .map(|r| RestrictedExpression::new_string((*r).to_owned())),
                ),
                other => return Err(format!("context attribute `{other}` has no value")),
            };
            ctx.push(((*name).to_owned(), value));
        }
        // Cedar builds a context by evaluating it as a record expression, which costs as
        // much as a policy; a slice whose policies read no context needs none.
        let context = if ctx.is_empty() {
            Context::empty()
        } else {
            Context::from_pairs(ctx).map_err(|e| e.to_string())?
        };
        Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())
    }

    /// Evaluates `input` against the policies that can apply to it.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> PolicyOutcome {
        let slice = self
            .slices
            .get(input.action, input.principal)
            .unwrap_or(&self.empty);
        self.evaluate_in(input, slice)
    }

    /// Evaluates `input` against every loaded policy with the full context, without
    /// slicing: the reference the sliced path is tested and benchmarked against.
    pub fn evaluate_unsliced(&self, input: &PolicyInput<'_>) -> PolicyOutcome {
        self.evaluate_in(input, &self.all)
    }

    fn evaluate_in(&self, input: &PolicyInput<'_>, set: &Sliced) -> PolicyOutcome {
        let first = match self.authorize(input, set, input.approved) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if first.0 == CedarDecision::Allow {
            return self.allow(first.1);
        }
        // Denied. If every forbid that applied is lifted by an approval, ask whether an
        // approval would change the answer: evaluate again as if approved.
        let forbids = first.1;
        if !input.approved
            && !forbids.is_empty()
            && forbids
                .iter()
                .all(|id| self.meta.get(id).is_some_and(|m| m.remedy_approval))
            && let Ok((CedarDecision::Allow, _)) = self.authorize(input, set, true)
        {
            return PolicyOutcome {
                verdict: PolicyVerdict::ApprovalRequired,
                reasons: self.reasons(&forbids, input),
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
            self.reasons(&forbids, input)
        };
        PolicyOutcome {
            verdict: PolicyVerdict::Deny,
            policies: forbids.iter().map(ToString::to_string).collect(),
            reasons,
            obligations: Vec::new(),
        }
    }

    /// Runs Cedar; a forbid that failed to evaluate is a deny (Cedar itself would skip it).
    fn authorize(
        &self,
        input: &PolicyInput<'_>,
        set: &Sliced,
        approved: bool,
    ) -> Result<(CedarDecision, Vec<PolicyId>), PolicyOutcome> {
        let request = self
            .request(input, approved, set.needs)
            .map_err(|e| deny_error(format!("the policy request could not be built: {e}")))?;
        let response = self
            .authorizer
            .is_authorized(&request, &set.set, &self.entities);
        let diagnostics = response.diagnostics();
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
        }
        let mut ids: Vec<PolicyId> = diagnostics.reason().cloned().collect();
        ids.sort_unstable_by(|a, b| AsRef::<str>::as_ref(a).cmp(b.as_ref()));
        Ok((response.decision(), ids))
    }

    fn allow(&self, permits: Vec<PolicyId>) -> PolicyOutcome {
        let mut obligations: Vec<Obligation> = Vec::new();
        for id in &permits {
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
