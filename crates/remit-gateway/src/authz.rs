//! What the authorization doors share: Envoy ext_authz (gRPC, [`crate::ext_authz`]) and the
//! HTTP authorization endpoint for Envoy's HTTP ext_authz and nginx `auth_request`
//! ([`crate::authz_http`]).
//!
//! A proxy describes a request (method, target, headers, body, client address); remit parses
//! it with the same [`RequestFacts::parse`] the reverse proxy uses, decides it with
//! [`Engine::begin`]/[`Engine::finish`] (so the record is durable before an allow is
//! answered) and answers either the headers the proxy must set and remove on the upstream
//! request, or a rendered refusal. Anything that goes wrong is a refusal (fail closed).

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use ipnet::IpNet;
use remit_core::config::UpstreamKind;
use remit_core::{Decision, RecordSink, RequestFacts, SpiffeId, Verdict};
use remit_engine::Engine;
use serde_json::json;

use crate::proxy::{Refusal, attribution, refusal_for};
use crate::{DECIDE_TIMEOUT, Problem, mcp};

/// The header carrying the decision id on refusals too, so a proxy can log or show it.
pub const DECISION_ID_HEADER: &str = "remit-decision-id";

/// What the authorization doors' handlers share.
#[derive(Clone)]
pub struct AuthzState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) sink: Arc<dyn RecordSink>,
    trusted: Arc<[IpNet]>,
    watch: Option<Arc<crate::watch::Watch>>,
}

impl std::fmt::Debug for AuthzState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzState")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl AuthzState {
    /// The doors' state; the trusted proxies come from `gateway.trusted_proxies`.
    pub fn new(engine: Arc<Engine>, sink: Arc<dyn RecordSink>) -> Self {
        let trusted = engine.config().gateway.trusted_proxies.clone().into();
        Self {
            engine,
            sink,
            trusted,
            watch: None,
        }
    }

    /// Decides with the behaviour watch: risk scores, learning and alerts.
    #[must_use]
    pub fn with_watch(mut self, watch: Arc<crate::watch::Watch>) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Whether `ip` is one of the configured proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The pipeline.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// A request as a trusted proxy described it.
#[derive(Debug)]
pub struct Described<'a> {
    /// The original method.
    pub method: &'a str,
    /// The original request target (path and query).
    pub target: &'a str,
    /// The original headers, repeats kept.
    pub headers: &'a HeaderMap,
    /// The body, when the proxy sent it.
    pub body: Option<Vec<u8>>,
    /// The original client's address.
    pub source_ip: Option<IpAddr>,
    /// The SPIFFE ID of the peer, when the proxy reports one.
    pub peer_spiffe_id: Option<SpiffeId>,
}

/// How a door can deliver a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// ext_authz gRPC: a refusal is an explicit `DeniedHttpResponse`, so an MCP refusal can
    /// be the JSON-RPC answer the proxy would give (status 200, still a deny).
    Grpc,
    /// The HTTP endpoint: any 2xx is an allow there, so a refusal is always 4xx/5xx.
    Http,
}

/// The answer to one authorization request.
#[derive(Debug)]
pub enum Answer {
    /// Allowed, and recorded durably.
    Allow {
        /// The decision.
        decision: Decision,
        /// Headers to set on the upstream request (overwriting what the client sent).
        set: Vec<(&'static str, String)>,
        /// Headers to remove from the upstream request: the credential and every other
        /// `Remit-*` header the client sent.
        remove: Vec<String>,
    },
    /// Refused: the response the proxy sends the client instead of forwarding.
    Refuse {
        /// The rendered refusal.
        refusal: Refusal,
        /// The decision, when one was taken (not for malformed requests).
        decision: Option<Decision>,
    },
}

impl Answer {
    fn problem(p: Problem) -> Self {
        Answer::Refuse {
            refusal: p.into(),
            decision: None,
        }
    }
}

/// Decides a described request and makes its record durable; every failure is a refusal.
pub async fn authorize(st: &AuthzState, req: Described<'_>, door: Door) -> Answer {
    let limit = st.engine.config().gateway.max_body_bytes;
    if req.body.as_ref().is_some_and(|b| b.len() > limit) {
        return Answer::problem(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        ));
    }
    let source = req.source_ip.map(|ip| ip.to_canonical().to_string());
    let headers = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let mut facts =
        match RequestFacts::parse(req.method, req.target, headers, req.body, source.as_deref()) {
            Ok(f) => f,
            Err(e) => return Answer::problem(Problem::new(StatusCode::BAD_REQUEST, e.to_string())),
        };
    facts.peer_spiffe_id = req.peer_spiffe_id;
    let config = st.engine.config();
    let id = uuid::Uuid::now_v7().to_string();
    let (mut pending, watching) =
        match crate::watch::begin(&st.engine, st.watch.as_ref(), &facts, id.clone()) {
            Ok(p) => p,
            Err(bad) => {
                return Answer::problem(Problem::new(StatusCode::BAD_REQUEST, bad.to_string()));
            }
        };
    // A proxy asking remit cannot have the request rewritten: under `redact`, a secret in
    // it is refused instead (the record says so).
    if pending.rewrite().is_some() {
        let rules = pending
            .decision()
            .scan
            .as_ref()
            .map(|r| r.rule_ids().join("`, `"))
            .unwrap_or_default();
        pending.decision().refuse(
            remit_engine::secrets::SECRETS_POLICY,
            format!(
                "the request carries a secret (`{rules}`) that remit cannot redact at this door; remove it and retry"
            ),
        );
    }
    let is_mcp = pending.mcp().is_some()
        || config
            .upstreams
            .select(facts.path.decoded())
            .is_some_and(|u| u.kind == UpstreamKind::Mcp);
    if is_mcp {
        // DNS rebinding: a browser page from another origin must not reach an MCP server.
        if let Some(origin) = req.headers.get(header::ORIGIN)
            && !origin
                .to_str()
                .is_ok_and(|o| mcp::origin_allowed(o, &config.gateway.allowed_origins))
        {
            return Answer::problem(Problem::new(
                StatusCode::FORBIDDEN,
                "this `Origin` may not call MCP endpoints",
            ));
        }
        if let Err(e) = mcp::check_routing_headers(req.headers, pending.mcp()) {
            return Answer::problem(Problem::new(StatusCode::BAD_REQUEST, e));
        }
    }
    let work = crate::watch::finish(
        &st.engine,
        pending,
        watching,
        &facts,
        st.sink.as_ref(),
        false,
    );
    let Ok(finished) = tokio::time::timeout(DECIDE_TIMEOUT, work).await else {
        return Answer::problem(
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the decision timed out; the request is denied",
            )
            .with("decision", json!("deny"))
            .with("decision_id", json!(id)),
        );
    };
    let decision = finished.decision;
    if decision.verdict == Verdict::Allow {
        let set = attribution(&decision);
        let mut remove = vec!["authorization".to_owned()];
        for name in req.headers.keys() {
            let n = name.as_str();
            if n.starts_with("remit-")
                && !set.iter().any(|(s, _)| *s == n)
                && !remove.iter().any(|r| r == n)
            {
                remove.push(n.to_owned());
            }
        }
        return Answer::Allow {
            decision,
            set,
            remove,
        };
    }
    let msg = match door {
        Door::Grpc => finished.mcp.as_ref(),
        Door::Http => None,
    };
    let mut refusal = refusal_for(&st.engine, &decision, msg, is_mcp, facts.path.decoded());
    if door == Door::Http && refusal.status.is_success() {
        // Never a 2xx for a refusal at a door where a 2xx means allow.
        refusal.status = StatusCode::FORBIDDEN;
    }
    if let Ok(v) = HeaderValue::from_str(&decision.decision_id) {
        refusal.headers.insert(DECISION_ID_HEADER, v);
    }
    Answer::Refuse {
        refusal,
        decision: Some(decision),
    }
}
