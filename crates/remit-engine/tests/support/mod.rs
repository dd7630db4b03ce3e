//! A deterministic synthetic world for the agreement test and the `decide` benchmark.
//!
//! From one seed it builds 20 routes over a few resource types, 1,000 identities (each with
//! one API key `rk_synth_<n>`, purposes drawn from ten, and the boundary `*` so that the
//! boundary ceiling never differs from plain policy evaluation), and 200 policies. The
//! policies are kept as a small structured model and rendered three ways: as Cedar text for
//! remit and for bare `cedar-policy`, as an equivalent Rego module (one rule body per Cedar
//! policy, plus the baseline pack's three rules) for `regorus`, and as a plain Rust oracle.
//! Requests are generated the same way and rendered as request facts for the pipeline, a
//! prebuilt Cedar `Request`, and a Rego `input` document.
#![allow(dead_code)] // the test and the bench each use part of it

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression,
};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use remit_core::{Config, RequestFacts};
use remit_engine::Engine;
use remit_policy::PolicySource;
use serde_json::{Value, json};

/// Identities in the world.
pub const IDENTITIES: usize = 1_000;
/// Operator policies (the baseline pack's three come on top).
pub const POLICIES: usize = 200;
/// Forbids among [`POLICIES`].
pub const FORBIDS: usize = 20;
/// Generic permits (no principal constraint) among [`POLICIES`].
pub const GENERIC_PERMITS: usize = 30;
/// The Rego rule the peers evaluate.
pub const REGO_ENTRYPOINT: &str = "data.remit.allow";

/// One route of the synthetic API.
#[derive(Debug, Clone, Copy)]
pub struct RouteDef {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Action.
    pub action: &'static str,
    /// Resource type.
    pub rtype: &'static str,
    /// Resource id: `{param}` or a literal.
    pub rid: &'static str,
    /// Sensitive?
    pub sensitive: bool,
}

const fn r(
    method: &'static str,
    path: &'static str,
    action: &'static str,
    rtype: &'static str,
    rid: &'static str,
    sensitive: bool,
) -> RouteDef {
    RouteDef {
        method,
        path,
        action,
        rtype,
        rid,
        sensitive,
    }
}

/// The route table: 20 actions over eight resource types, 13 of them sensitive.
#[rustfmt::skip]
pub const ROUTES: [RouteDef; 20] = [
    r("GET", "/status", "status.read", "Service", "api", false),
    r("GET", "/search", "search.query", "Service", "search", false),
    r("GET", "/tickets/{id}", "tickets.read", "Ticket", "{id}", true),
    r("GET", "/tickets/{id}/history", "tickets.history.read", "Ticket", "{id}", true),
    r("POST", "/tickets/{id}/comments", "tickets.comment", "Ticket", "{id}", true),
    r("PUT", "/tickets/{id}", "tickets.update", "Ticket", "{id}", true),
    r("GET", "/repos/{repo}", "repos.read", "Repo", "{repo}", false),
    r("POST", "/repos/{repo}/pulls", "repos.pulls.create", "Repo", "{repo}", true),
    r("GET", "/repos/{repo}/builds/{id}", "repos.builds.read", "Repo", "{repo}", false),
    r("POST", "/repos/{repo}/deployments", "repos.deploy", "Repo", "{repo}", true),
    r("GET", "/inventory/{sku}", "inventory.read", "Sku", "{sku}", false),
    r("PUT", "/inventory/{sku}", "inventory.write", "Sku", "{sku}", true),
    r("DELETE", "/inventory/{sku}", "inventory.delete", "Sku", "{sku}", true),
    r("GET", "/docs/{doc}", "docs.read", "Doc", "{doc}", false),
    r("PUT", "/docs/{doc}", "docs.write", "Doc", "{doc}", true),
    r("GET", "/invoices/{id}", "invoices.read", "Invoice", "{id}", true),
    r("POST", "/invoices/{id}/payments", "invoices.pay", "Invoice", "{id}", true),
    r("GET", "/customers/{id}", "customers.read", "Customer", "{id}", true),
    r("DELETE", "/customers/{id}", "customers.delete", "Customer", "{id}", true),
    r("GET", "/metrics/{name}", "metrics.read", "Metric", "{name}", false),
];

/// Identity kinds and the class each maps to.
pub const KINDS: [(&str, &str); 5] = [
    ("service_account", "automation"),
    ("scheduled_job", "automation"),
    ("integration", "automation"),
    ("assistant", "assistant"),
    ("agent", "agent"),
];

/// The purposes identities are given and requests declare.
pub const PURPOSES: [&str; 10] = [
    "case-summary",
    "code-change",
    "doc-retrieval",
    "inventory-refresh",
    "billing-run",
    "analytics",
    "incident-response",
    "onboarding",
    "audit",
    "reporting",
];

/// A purpose no identity has.
pub const FOREIGN_PURPOSE: &str = "exfiltration";

const CLASSES: [&str; 3] = ["automation", "assistant", "agent"];

/// One synthetic identity.
#[derive(Debug, Clone)]
pub struct SynthIdentity {
    /// `id-<n>`.
    pub id: String,
    /// Its kind (index into [`KINDS`]).
    pub kind: usize,
    /// Its owner.
    pub owner: String,
    /// Its purposes.
    pub purposes: Vec<&'static str>,
}

impl SynthIdentity {
    /// Its API key.
    pub fn key(n: usize) -> String {
        format!("rk_synth_{n}")
    }

    /// Its class.
    pub fn class(&self) -> &'static str {
        KINDS[self.kind].1
    }
}

/// A policy's principal scope.
#[derive(Debug, Clone)]
pub enum PrincipalScope {
    /// `principal`
    Any,
    /// `principal is Identity`
    IsIdentity,
    /// `principal == Identity::"id-<n>"`
    Eq(usize),
}

/// A policy's action scope (indices into [`ROUTES`]).
#[derive(Debug, Clone)]
pub enum ActionScope {
    /// `action`
    Any,
    /// `action == Action::"a"`
    Eq(usize),
    /// `action in [..]`
    In(Vec<usize>),
}

/// One conjunct of a policy's `when`.
#[derive(Debug, Clone)]
pub enum Cond {
    /// `context has purpose && context.purpose == "p"`
    PurposeIs(&'static str),
    /// `context.class == "c"`
    ClassIs(&'static str),
    /// `context.sensitive` or `!context.sensitive`
    Sensitive(bool),
    /// `context.risk > n`
    RiskAbove(i64),
    /// `principal.kind == "k"` (only with `principal is Identity`)
    KindIs(&'static str),
}

/// One synthetic policy.
#[derive(Debug, Clone)]
pub struct SynthPolicy {
    /// Permit or forbid.
    pub permit: bool,
    /// Principal scope.
    pub principal: PrincipalScope,
    /// Action scope.
    pub action: ActionScope,
    /// `when` conjuncts.
    pub when: Vec<Cond>,
}

/// One synthetic request.
#[derive(Debug, Clone)]
pub struct SynthRequest {
    /// The authenticated identity, if the key is registered.
    pub identity: Option<usize>,
    /// The bearer key presented, if any.
    pub key: Option<String>,
    /// Index into [`ROUTES`].
    pub route: usize,
    /// The concrete path.
    pub path: String,
    /// Captured path parameters.
    pub params: Vec<(String, String)>,
    /// The resource id.
    pub resource_id: String,
    /// The declared purpose.
    pub purpose: Option<&'static str>,
}

impl SynthRequest {
    /// The route.
    pub fn route(&self) -> &'static RouteDef {
        &ROUTES[self.route]
    }

    /// The request's headers, as a front door would see them.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("Host", "api.internal".to_owned()),
            ("Accept", "application/json".to_owned()),
        ];
        if let Some(k) = &self.key {
            h.push(("Authorization", format!("Bearer {k}")));
        }
        if let Some(p) = self.purpose {
            h.push(("Remit-Purpose", p.to_owned()));
        }
        h
    }

    /// Parses the request into facts, as every front door does.
    pub fn facts(&self) -> RequestFacts {
        let headers = self.headers();
        RequestFacts::parse(
            self.route().method,
            &self.path,
            headers.iter().map(|(k, v)| (*k, v.as_bytes())),
            None,
            None,
        )
        .expect("synthetic requests parse")
    }
}

/// The whole synthetic world.
#[derive(Debug, Clone)]
pub struct World {
    /// The identities.
    pub identities: Vec<SynthIdentity>,
    /// The operator policies (the baseline pack is implicit).
    pub policies: Vec<SynthPolicy>,
}

fn pick_distinct<T: Copy>(rng: &mut StdRng, from: &[T], n: usize) -> Vec<T> {
    from.choose_multiple(rng, n).copied().collect()
}

fn non_sensitive() -> Vec<usize> {
    (0..ROUTES.len())
        .filter(|&i| !ROUTES[i].sensitive)
        .collect()
}

fn action_scope(actions: Vec<usize>) -> ActionScope {
    if actions.len() == 1 {
        ActionScope::Eq(actions[0])
    } else {
        ActionScope::In(actions)
    }
}

impl World {
    /// Generates the world from `seed`.
    pub fn generate(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let identities: Vec<SynthIdentity> = (0..IDENTITIES)
            .map(|n| {
                let count = rng.random_range(1..=3);
                SynthIdentity {
                    id: format!("id-{n}"),
                    kind: rng.random_range(0..KINDS.len()),
                    owner: format!("team-{}", rng.random_range(0..40)),
                    purposes: pick_distinct(&mut rng, &PURPOSES, count),
                }
            })
            .collect();
        let all_actions: Vec<usize> = (0..ROUTES.len()).collect();
        let open = non_sensitive();
        let mut policies = Vec::with_capacity(POLICIES);
        for i in 0..FORBIDS {
            let action = *all_actions.choose(&mut rng).expect("routes");
            let class = *CLASSES.choose(&mut rng).expect("classes");
            let p = match (i, i % 4) {
                (0, _) => SynthPolicy {
                    permit: false,
                    principal: PrincipalScope::Any,
                    action: ActionScope::Any,
                    when: vec![Cond::RiskAbove(80)],
                },
                (_, 0) => SynthPolicy {
                    permit: false,
                    principal: PrincipalScope::Any,
                    action: ActionScope::Eq(action),
                    when: vec![Cond::ClassIs(class)],
                },
                (_, 1) => {
                    let n = rng.random_range(2..=3);
                    SynthPolicy {
                        permit: false,
                        principal: PrincipalScope::Any,
                        action: action_scope(pick_distinct(&mut rng, &all_actions, n)),
                        when: vec![Cond::Sensitive(true), Cond::ClassIs(class)],
                    }
                }
                (_, 2) => SynthPolicy {
                    permit: false,
                    principal: PrincipalScope::Any,
                    action: ActionScope::Eq(action),
                    when: vec![Cond::PurposeIs(
                        PURPOSES.choose(&mut rng).expect("purposes"),
                    )],
                },
                _ => {
                    let n = rng.random_range(1..=2);
                    SynthPolicy {
                        permit: false,
                        principal: PrincipalScope::IsIdentity,
                        action: action_scope(pick_distinct(&mut rng, &all_actions, n)),
                        when: vec![Cond::KindIs(KINDS.choose(&mut rng).expect("kinds").0)],
                    }
                }
            };
            policies.push(p);
        }
        for i in 0..GENERIC_PERMITS {
            let n = rng.random_range(1..=3);
            let actions = pick_distinct(&mut rng, &open, n);
            let p = match (i, i % 3) {
                (0, _) => SynthPolicy {
                    permit: true,
                    principal: PrincipalScope::Any,
                    action: ActionScope::Eq(0),
                    when: Vec::new(),
                },
                (_, 0) => SynthPolicy {
                    permit: true,
                    principal: PrincipalScope::Any,
                    action: action_scope(actions),
                    when: vec![Cond::ClassIs(CLASSES.choose(&mut rng).expect("classes"))],
                },
                (_, 1) => SynthPolicy {
                    permit: true,
                    principal: PrincipalScope::IsIdentity,
                    action: action_scope(actions),
                    when: vec![Cond::KindIs(KINDS.choose(&mut rng).expect("kinds").0)],
                },
                _ => SynthPolicy {
                    permit: true,
                    principal: PrincipalScope::Any,
                    action: action_scope(actions),
                    when: vec![
                        Cond::Sensitive(false),
                        Cond::PurposeIs(PURPOSES.choose(&mut rng).expect("purposes")),
                    ],
                },
            };
            policies.push(p);
        }
        while policies.len() < POLICIES {
            let n = rng.random_range(0..IDENTITIES);
            let id = &identities[n];
            let count = rng.random_range(1..=4);
            let actions = pick_distinct(&mut rng, &all_actions, count);
            // Mostly one of the identity's own purposes; sometimes one it cannot declare,
            // which the baseline pack then overrides.
            let purpose = if rng.random_bool(0.9) {
                id.purposes.choose(&mut rng).expect("purposes")
            } else {
                PURPOSES.choose(&mut rng).expect("purposes")
            };
            policies.push(SynthPolicy {
                permit: true,
                principal: PrincipalScope::Eq(n),
                action: action_scope(actions),
                when: vec![Cond::PurposeIs(purpose)],
            });
        }
        policies.shuffle(&mut rng);
        Self {
            identities,
            policies,
        }
    }

    /// The `remit.toml` text.
    pub fn config_toml(&self) -> String {
        let mut out = String::from("[gateway]\nreplica_id = \"bench\"\n\n");
        for r in &ROUTES {
            let _ = writeln!(
                out,
                "[[route]]\nmethod = \"{}\"\npath = \"{}\"\naction = \"{}\"\nresource = \"{}::{}\"\nsensitive = {}\n",
                r.method, r.path, r.action, r.rtype, r.rid, r.sensitive
            );
        }
        for (n, id) in self.identities.iter().enumerate() {
            let purposes: Vec<String> = id.purposes.iter().map(|p| format!("\"{p}\"")).collect();
            let _ = writeln!(
                out,
                "[[identity]]\nid = \"{}\"\nkind = \"{}\"\nowner = \"{}\"\npurposes = [{}]\nboundary = [\"*\"]",
                id.id,
                KINDS[id.kind].0,
                id.owner,
                purposes.join(", ")
            );
            if KINDS[id.kind].0 == "scheduled_job" {
                out.push_str("schedule = \"hourly\"\n");
            }
            let _ = writeln!(
                out,
                "\n[[identity.credential]]\ntype = \"api_key\"\nid = \"synth-{n}\"\nsha256 = \"{}\"\n",
                hex::encode(remit_token::hash_key(&SynthIdentity::key(n)))
            );
        }
        out
    }

    /// The parsed configuration.
    pub fn config(&self) -> Config {
        Config::parse(&self.config_toml(), "synth.toml").expect("the synthetic config parses")
    }

    /// The operator policies as Cedar text.
    pub fn cedar_text(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.policies.iter().enumerate() {
            let principal = match &p.principal {
                PrincipalScope::Any => "principal".to_owned(),
                PrincipalScope::IsIdentity => "principal is Identity".to_owned(),
                PrincipalScope::Eq(n) => {
                    format!("principal == Identity::\"{}\"", self.identities[*n].id)
                }
            };
            let action = match &p.action {
                ActionScope::Any => "action".to_owned(),
                ActionScope::Eq(a) => format!("action == Action::\"{}\"", ROUTES[*a].action),
                ActionScope::In(list) => format!(
                    "action in [{}]",
                    list.iter()
                        .map(|a| format!("Action::\"{}\"", ROUTES[*a].action))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let conds: Vec<String> = p
                .when
                .iter()
                .map(|c| match c {
                    Cond::PurposeIs(v) => {
                        format!("(context has purpose && context.purpose == \"{v}\")")
                    }
                    Cond::ClassIs(v) => format!("context.class == \"{v}\""),
                    Cond::Sensitive(true) => "context.sensitive".to_owned(),
                    Cond::Sensitive(false) => "!context.sensitive".to_owned(),
                    Cond::RiskAbove(n) => format!("context.risk > {n}"),
                    Cond::KindIs(v) => format!("principal.kind == \"{v}\""),
                })
                .collect();
            let effect = if p.permit { "permit" } else { "forbid" };
            let _ = write!(
                out,
                "@id(\"synth.{i}\")\n{effect} (\n  {principal},\n  {action},\n  resource\n)"
            );
            if !conds.is_empty() {
                let _ = write!(out, "\nwhen {{ {} }}", conds.join(" && "));
            }
            out.push_str(";\n\n");
        }
        out
    }

    /// The baseline pack followed by the operator policies: what bare Cedar evaluates.
    pub fn cedar_full_text(&self) -> String {
        format!("{}\n{}", remit_policy::BASELINE, self.cedar_text())
    }

    /// The equivalent Rego module: one rule body per Cedar policy, baseline included.
    ///
    /// `baseline.purpose-not-allowed` tests `input.context.purpose` explicitly rather than
    /// binding it first (`p := input.context.purpose; not p in ...`): regorus 0.14.1's RVM
    /// does not stop at an assignment from an undefined value, so the bound form wrongly
    /// fires there when no purpose is declared (the interpreter gets it right).
    pub fn rego_text(&self) -> String {
        let mut out = String::from(
            "package remit\n\n\
             import rego.v1\n\n\
             default allow := false\n\n\
             allow if {\n\tpermitted\n\tnot forbidden\n}\n\n\
             # baseline.unclassified-sensitive\n\
             forbidden if {\n\
             \tinput.context.class == \"unclassified\"\n\
             \tinput.context.sensitive == true\n\
             }\n\n\
             # baseline.purpose-required\n\
             forbidden if {\n\
             \tinput.context.sensitive == true\n\
             \tnot input.context.purpose\n\
             }\n\n\
             # baseline.purpose-not-allowed\n\
             forbidden if {\n\
             \tinput.principal.type == \"Identity\"\n\
             \tinput.context.purpose\n\
             \tnot input.context.purpose in data.identities[input.principal.id].purposes\n\
             }\n\n",
        );
        for (i, p) in self.policies.iter().enumerate() {
            let head = if p.permit { "permitted" } else { "forbidden" };
            let _ = write!(out, "# synth.{i}\n{head} if {{\n");
            let mut lines: Vec<String> = Vec::new();
            match &p.principal {
                PrincipalScope::Any => {}
                PrincipalScope::IsIdentity => {
                    lines.push("input.principal.type == \"Identity\"".into());
                }
                PrincipalScope::Eq(n) => {
                    lines.push("input.principal.type == \"Identity\"".into());
                    lines.push(format!(
                        "input.principal.id == \"{}\"",
                        self.identities[*n].id
                    ));
                }
            }
            match &p.action {
                ActionScope::Any => {}
                ActionScope::Eq(a) => {
                    lines.push(format!("input.action == \"{}\"", ROUTES[*a].action))
                }
                ActionScope::In(list) => lines.push(format!(
                    "input.action in {{{}}}",
                    list.iter()
                        .map(|a| format!("\"{}\"", ROUTES[*a].action))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
            for c in &p.when {
                lines.push(match c {
                    Cond::PurposeIs(v) => format!("input.context.purpose == \"{v}\""),
                    Cond::ClassIs(v) => format!("input.context.class == \"{v}\""),
                    Cond::Sensitive(b) => format!("input.context.sensitive == {b}"),
                    Cond::RiskAbove(n) => format!("input.context.risk > {n}"),
                    Cond::KindIs(v) => {
                        format!("data.identities[input.principal.id].kind == \"{v}\"")
                    }
                });
            }
            if lines.is_empty() {
                lines.push("true".into());
            }
            for l in lines {
                let _ = writeln!(out, "\t{l}");
            }
            out.push_str("}\n\n");
        }
        out
    }

    /// The Rego `data` document: the identities' attributes, as Cedar's entities hold them.
    pub fn rego_data(&self) -> Value {
        let ids: serde_json::Map<String, Value> = self
            .identities
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    json!({ "kind": KINDS[i.kind].0, "owner": i.owner, "purposes": i.purposes }),
                )
            })
            .collect();
        json!({ "identities": ids })
    }

    /// The remit pipeline over this world.
    pub fn engine(&self) -> Engine {
        self.engine_from(self.config())
    }

    /// The same pipeline without the decision cache: Cedar runs for every request.
    pub fn engine_uncached(&self) -> Engine {
        let text =
            self.config_toml()
                .replacen("[gateway]\n", "[gateway]\ndecision_cache_bytes = 0\n", 1);
        let config = Config::parse(&text, "synth.toml").expect("the synthetic config parses");
        assert_eq!(config.gateway.decision_cache_bytes, 0);
        self.engine_from(config)
    }

    fn engine_from(&self, config: Config) -> Engine {
        let source = PolicySource {
            file: "synth.cedar".into(),
            text: self.cedar_text(),
        };
        Engine::new(config, &[source]).expect("the synthetic policies load")
    }

    /// `n` random requests from `seed`.
    pub fn requests(&self, seed: u64, n: usize) -> Vec<SynthRequest> {
        let mut rng = StdRng::seed_from_u64(seed);
        let targeted: Vec<&SynthPolicy> = self
            .policies
            .iter()
            .filter(|p| matches!(p.principal, PrincipalScope::Eq(_)))
            .collect();
        (0..n)
            .map(|_| {
                let roll: f64 = rng.random();
                let mut route = rng.random_range(0..ROUTES.len());
                let (identity, key) = if roll < 0.07 {
                    (None, None)
                } else if roll < 0.14 {
                    let k = format!("rk_synth_unknown_{}", rng.random_range(0..10_000));
                    (None, Some(k))
                } else {
                    let n = rng.random_range(0..IDENTITIES);
                    (Some(n), Some(SynthIdentity::key(n)))
                };
                let mut purpose = match rng.random_range(0..100) {
                    0..25 => None,
                    25..28 => Some(FOREIGN_PURPOSE),
                    28..55 => Some(*PURPOSES.choose(&mut rng).expect("purposes")),
                    _ => match identity {
                        Some(n) => Some(
                            *self.identities[n]
                                .purposes
                                .choose(&mut rng)
                                .expect("purposes"),
                        ),
                        None => Some(*PURPOSES.choose(&mut rng).expect("purposes")),
                    },
                };
                let (mut identity, mut key) = (identity, key);
                // Half of the authenticated traffic is what some permit was written for.
                if roll >= 0.55 {
                    let p = targeted.choose(&mut rng).expect("targeted permits");
                    if let PrincipalScope::Eq(n) = p.principal {
                        identity = Some(n);
                        key = Some(SynthIdentity::key(n));
                    }
                    route = match &p.action {
                        ActionScope::Eq(a) => *a,
                        ActionScope::In(list) => *list.choose(&mut rng).expect("actions"),
                        ActionScope::Any => route,
                    };
                    if let Some(Cond::PurposeIs(v)) = p.when.first() {
                        purpose = Some(v);
                    }
                }
                let def = &ROUTES[route];
                let mut params = Vec::new();
                let segments: Vec<String> = def
                    .path
                    .split('/')
                    .map(
                        |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => {
                                let v = format!("{}{}", &name[..1], rng.random_range(0..100_000));
                                params.push((name.to_owned(), v.clone()));
                                v
                            }
                            None => seg.to_owned(),
                        },
                    )
                    .collect();
                let resource_id = match def.rid.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                {
                    Some(name) => params
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .expect("the resource's parameter is captured"),
                    None => def.rid.to_owned(),
                };
                SynthRequest {
                    identity,
                    key,
                    route,
                    path: segments.join("/"),
                    params,
                    resource_id,
                    purpose,
                }
            })
            .collect()
    }

    /// The context class of a request.
    pub fn class(&self, r: &SynthRequest) -> &'static str {
        r.identity
            .map_or("unclassified", |n| self.identities[n].class())
    }

    fn cond(&self, c: &Cond, r: &SynthRequest) -> bool {
        match c {
            Cond::PurposeIs(v) => r.purpose == Some(*v),
            Cond::ClassIs(v) => self.class(r) == *v,
            Cond::Sensitive(b) => r.route().sensitive == *b,
            Cond::RiskAbove(n) => 0 > *n,
            Cond::KindIs(v) => r
                .identity
                .is_some_and(|n| KINDS[self.identities[n].kind].0 == *v),
        }
    }

    fn matches(&self, p: &SynthPolicy, r: &SynthRequest) -> bool {
        let principal = match p.principal {
            PrincipalScope::Any => true,
            PrincipalScope::IsIdentity => r.identity.is_some(),
            PrincipalScope::Eq(n) => r.identity == Some(n),
        };
        let action = match &p.action {
            ActionScope::Any => true,
            ActionScope::Eq(a) => *a == r.route,
            ActionScope::In(list) => list.contains(&r.route),
        };
        principal && action && p.when.iter().all(|c| self.cond(c, r))
    }

    /// The oracle: what every evaluator should answer, computed directly from the model.
    pub fn expected(&self, r: &SynthRequest) -> bool {
        let sensitive = r.route().sensitive;
        // The baseline pack's three forbids, one by one.
        let unclassified_sensitive = r.identity.is_none() && sensitive;
        let purpose_required = sensitive && r.purpose.is_none();
        let purpose_not_allowed = r.identity.is_some_and(|n| {
            r.purpose
                .is_some_and(|p| !self.identities[n].purposes.contains(&p))
        });
        let baseline_forbids = unclassified_sensitive || purpose_required || purpose_not_allowed;
        let permitted = self.policies.iter().any(|p| p.permit && self.matches(p, r));
        let forbidden = self
            .policies
            .iter()
            .any(|p| !p.permit && self.matches(p, r));
        permitted && !forbidden && !baseline_forbids
    }

    fn context_parts(&self, r: &SynthRequest) -> (&'static str, &'static str) {
        let class = self.class(r);
        let authority = if r.identity.is_some() { "own" } else { "none" };
        (class, authority)
    }

    /// The request as a bare Cedar `Request` (the same context remit builds).
    pub fn cedar_request(&self, r: &SynthRequest) -> Request {
        let principal = match r.identity {
            Some(n) => uid("Identity", &self.identities[n].id),
            None => uid("Unclassified", "anonymous"),
        };
        let def = r.route();
        let action = uid("Action", def.action);
        let resource = uid(def.rtype, &r.resource_id);
        let (class, authority) = self.context_parts(r);
        let mut ctx: Vec<(String, RestrictedExpression)> = vec![
            (
                "class".into(),
                RestrictedExpression::new_string(class.into()),
            ),
            (
                "authority".into(),
                RestrictedExpression::new_string(authority.into()),
            ),
        ];
        if let Some(p) = r.purpose {
            ctx.push(("purpose".into(), RestrictedExpression::new_string(p.into())));
        }
        ctx.extend([
            (
                "sensitive".into(),
                RestrictedExpression::new_bool(def.sensitive),
            ),
            (
                "method".into(),
                RestrictedExpression::new_string(def.method.into()),
            ),
            (
                "path".into(),
                RestrictedExpression::new_string(r.path.clone()),
            ),
            ("risk".into(), RestrictedExpression::new_long(0)),
            ("approved".into(), RestrictedExpression::new_bool(false)),
            ("chain_depth".into(), RestrictedExpression::new_long(0)),
            (
                "params".into(),
                RestrictedExpression::new_record(
                    r.params
                        .iter()
                        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
                )
                .expect("params record"),
            ),
        ]);
        let context = Context::from_pairs(ctx).expect("context");
        Request::new(principal, action, resource, context, None).expect("request")
    }

    /// The request as a Rego `input` document.
    pub fn rego_input(&self, r: &SynthRequest) -> Value {
        let def = r.route();
        let (class, authority) = self.context_parts(r);
        let principal = match r.identity {
            Some(n) => json!({ "type": "Identity", "id": self.identities[n].id }),
            None => json!({ "type": "Unclassified", "id": "anonymous" }),
        };
        let params: serde_json::Map<String, Value> = r
            .params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut context = json!({
            "class": class,
            "authority": authority,
            "sensitive": def.sensitive,
            "method": def.method,
            "path": r.path,
            "risk": 0,
            "approved": false,
            "chain_depth": 0,
            "params": params,
        });
        if let Some(p) = r.purpose {
            context["purpose"] = Value::String(p.to_owned());
        }
        json!({
            "principal": principal,
            "action": def.action,
            "resource": { "type": def.rtype, "id": r.resource_id },
            "context": context,
        })
    }

    /// Cedar entities for every identity, with the attributes remit gives them.
    pub fn cedar_entities(&self) -> Entities {
        let entities = self.identities.iter().map(|i| {
            let attrs = HashMap::from([
                (
                    "kind".to_owned(),
                    RestrictedExpression::new_string(KINDS[i.kind].0.to_owned()),
                ),
                (
                    "owner".to_owned(),
                    RestrictedExpression::new_string(i.owner.clone()),
                ),
                (
                    "purposes".to_owned(),
                    RestrictedExpression::new_set(
                        i.purposes
                            .iter()
                            .map(|p| RestrictedExpression::new_string((*p).to_owned())),
                    ),
                ),
            ]);
            Entity::new(uid("Identity", &i.id), attrs, HashSet::new()).expect("entity")
        });
        Entities::from_entities(entities, None).expect("entities")
    }

    /// How many policies (baseline included) remit's slice for `r` holds: those whose
    /// action scope admits the action and whose principal scope is not another identity.
    pub fn slice_size(&self, r: &SynthRequest) -> usize {
        let applies = |p: &&SynthPolicy| {
            let action = match &p.action {
                ActionScope::Any => true,
                ActionScope::Eq(a) => *a == r.route,
                ActionScope::In(list) => list.contains(&r.route),
            };
            let principal = match p.principal {
                PrincipalScope::Any | PrincipalScope::IsIdentity => true,
                PrincipalScope::Eq(n) => r.identity == Some(n),
            };
            action && principal
        };
        3 + self.policies.iter().filter(applies).count()
    }

    /// Distinct actions, for reporting.
    pub fn actions(&self) -> BTreeSet<&'static str> {
        ROUTES.iter().map(|r| r.action).collect()
    }
}

fn uid(t: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(t).expect("type name"),
        EntityId::new(id),
    )
}

/// The peers remit is compared against: bare Cedar over the whole policy set, and regorus
/// on the equivalent Rego, interpreted and compiled to its VM (RVM).
pub struct Peers {
    /// Baseline pack plus the 200 operator policies, unsliced.
    pub policies: PolicySet,
    /// Every identity, built once.
    pub entities: Entities,
    /// Cedar's authorizer.
    pub authorizer: Authorizer,
    /// regorus' interpreter, policy and data loaded.
    pub interpreter: regorus::Engine,
    /// regorus' VM with the compiled program and data loaded.
    pub vm: regorus::rvm::vm::RegoVM,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").finish_non_exhaustive()
    }
}

impl Peers {
    /// Loads the peers for `world`.
    pub fn new(world: &World) -> Self {
        let policies =
            PolicySet::from_str(&world.cedar_full_text()).expect("the Cedar text parses");
        let data = regorus::Value::from(world.rego_data());
        let mut interpreter = regorus::Engine::new();
        interpreter
            .add_policy("remit.rego".into(), world.rego_text())
            .expect("the Rego parses");
        interpreter.add_data(data.clone()).expect("data");
        let compiled = interpreter
            .compile_with_entrypoint(&regorus::Rc::from(REGO_ENTRYPOINT))
            .expect("the Rego compiles");
        let program = regorus::languages::rego::compiler::Compiler::compile_from_policy(
            &compiled,
            &[REGO_ENTRYPOINT],
        )
        .expect("the Rego compiles to RVM");
        let mut vm = regorus::rvm::vm::RegoVM::new();
        vm.load_program(program);
        vm.set_data(data).expect("RVM data");
        vm.set_max_instructions(usize::MAX);
        Self {
            policies,
            entities: world.cedar_entities(),
            authorizer: Authorizer::new(),
            interpreter,
            vm,
        }
    }

    /// Bare Cedar over the whole set.
    pub fn cedar(&self, request: &Request) -> bool {
        self.authorizer
            .is_authorized(request, &self.policies, &self.entities)
            .decision()
            == Decision::Allow
    }

    /// regorus' interpreter.
    pub fn interpret(&mut self, input: regorus::Value) -> bool {
        self.interpreter.set_input(input);
        let v = self
            .interpreter
            .eval_rule(REGO_ENTRYPOINT.to_owned())
            .expect("the interpreter evaluates");
        as_bool(&v)
    }

    /// regorus' VM.
    pub fn rvm(&mut self, input: regorus::Value) -> bool {
        self.vm.set_input(input);
        let v = self.vm.execute().expect("the VM executes");
        as_bool(&v)
    }
}

fn as_bool(v: &regorus::Value) -> bool {
    match v {
        regorus::Value::Bool(b) => *b,
        other => panic!("`{REGO_ENTRYPOINT}` is not a boolean: {other:?}"),
    }
}
