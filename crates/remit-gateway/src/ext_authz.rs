//! Envoy ext_authz over gRPC: `envoy.service.auth.v3.Authorization/Check`, served with
//! `tonic` on the `envoy-types` protos.
//!
//! A `CheckRequest`'s attributes (method, path, headers, body when Envoy sends it, source
//! address, the peer's principal) become [`crate::authz::Described`] and go through the
//! shared pipeline. An allow answers an `OkHttpResponse` that sets the attribution headers
//! and removes `authorization` and the client's other `Remit-*` headers; a refusal answers a
//! `DeniedHttpResponse` with the proxy's status, headers and body. Both carry
//! `dynamic_metadata` (`decision`, `decision_id`, `class`, `identity`, `purpose`) for Envoy's
//! access log, under the filter's namespace (`envoy.filters.http.ext_authz`).
//!
//! Only peers in `gateway.trusted_proxies` are answered with anything but a deny. Message
//! size, headers, body, concurrency and time are all bounded; every failure is a deny.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as PbHeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use remit_core::request::MAX_HEADERS;
use remit_core::{Decision, SpiffeId};
use tower::ServiceBuilder;

use crate::authz::{Answer, AuthzState, Described, Door, authorize};
use crate::proxy::Refusal;
use crate::{DECIDE_TIMEOUT, MAX_CONCURRENT, Problem};

/// Room in a `CheckRequest` beyond the body: headers and attributes.
pub const MESSAGE_OVERHEAD_BYTES: usize = 256 * 1024;
/// Largest HTTP/2 header list a gRPC client may send.
pub const MAX_GRPC_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// gRPC status codes (google.rpc.Code) the answers use.
mod code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// The `Authorization` service.
#[derive(Debug, Clone)]
pub struct ExtAuthz {
    st: AuthzState,
}

impl ExtAuthz {
    /// The service over the doors' shared state.
    pub fn new(st: AuthzState) -> Self {
        Self { st }
    }

    /// Answers one `CheckRequest` from a trusted peer.
    pub async fn check_request(&self, check: CheckRequest) -> CheckResponse {
        match describe(check) {
            Err(p) => refused(Refusal::from(p), None),
            Ok(d) => {
                let headers = d.headers;
                let described = Described {
                    method: &d.method,
                    target: &d.target,
                    headers: &headers,
                    body: d.body,
                    source_ip: d.source_ip,
                    peer_spiffe_id: d.spiffe,
                };
                match authorize(&self.st, described, Door::Grpc).await {
                    Answer::Allow {
                        decision,
                        set,
                        remove,
                    } => allowed(&decision, set, remove),
                    Answer::Refuse { refusal, decision } => refused(refusal, decision.as_ref()),
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let peer = request.remote_addr();
        if !peer.is_some_and(|p| self.st.trusts(p.ip())) {
            let p = Problem::new(
                StatusCode::FORBIDDEN,
                "this peer is not in `gateway.trusted_proxies`; the request is denied",
            );
            return Ok(tonic::Response::new(refused(p.into(), None)));
        }
        Ok(tonic::Response::new(
            self.check_request(request.into_inner()).await,
        ))
    }
}

/// A `CheckRequest`, read into owned parts.
struct Parts {
    method: String,
    target: String,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    source_ip: Option<IpAddr>,
    spiffe: Option<SpiffeId>,
}

fn bad(why: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, why)
}

/// Reads a `CheckRequest`'s attributes. Parse, don't validate: the headers become a
/// `HeaderMap` with repeats kept (from `header_map` when Envoy sends raw headers), and
/// [`remit_core::RequestFacts::parse`] then applies the proxy's rules.
fn describe(check: CheckRequest) -> Result<Parts, Problem> {
    let attrs = check
        .attributes
        .ok_or_else(|| bad("the check request has no attributes"))?;
    let http = attrs
        .request
        .and_then(|r| r.http)
        .ok_or_else(|| bad("the check request describes no HTTP request"))?;
    if http.path.is_empty() {
        return Err(bad("the check request has no path"));
    }
    let raw: Vec<(String, Vec<u8>)> = match http.header_map {
        Some(m) if !m.headers.is_empty() => m
            .headers
            .into_iter()
            .map(|h| {
                let v = if h.raw_value.is_empty() {
                    h.value.into_bytes()
                } else {
                    h.raw_value
                };
                (h.key, v)
            })
            .collect(),
        _ => http
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect(),
    };
    if raw.len() > MAX_HEADERS {
        return Err(bad(format!("more than {MAX_HEADERS} headers")));
    }
    let mut headers = HeaderMap::with_capacity(raw.len());
    for (k, v) in raw {
        // Pseudo-headers restate fields read below (`:method`, `:path`, `:authority`).
        if k.starts_with(':') {
            continue;
        }
        let shown: String = k.chars().take(64).flat_map(char::escape_default).collect();
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad(format!("`{shown}` is not a valid header name")))?;
        let value = HeaderValue::from_bytes(&v)
            .map_err(|_| bad(format!("header `{shown}` has an invalid value")))?;
        headers.append(name, value);
    }
    let body = if !http.raw_body.is_empty() {
        Some(http.raw_body)
    } else if !http.body.is_empty() {
        Some(http.body.into_bytes())
    } else {
        None
    };
    // A body cut short (`allow_partial_message`) is not the body that will be forwarded.
    let partial = headers
        .get("x-envoy-auth-partial-body")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if let Some(b) = &body
        && (partial || usize::try_from(http.size).is_ok_and(|n| n > b.len()))
    {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Envoy sent part of the body; remit decides only on whole bodies \
             (raise `max_request_bytes` in Envoy's `with_request_body`)",
        ));
    }
    let source = attrs.source.unwrap_or_default();
    let source_ip = match source.address.and_then(|a| a.address) {
        Some(Address::SocketAddress(s)) => Some(s.address.parse::<IpAddr>().map_err(|_| {
            let shown: String = s.address.chars().take(64).collect();
            bad(format!("the source address `{shown}` is not an IP address"))
        })?),
        _ => None,
    };
    // The peer's principal (the URI SAN of its certificate) is kept when it is a SPIFFE ID;
    // anything else is not a fact remit reads yet, so it is ignored.
    let spiffe = SpiffeId::parse(&source.principal).ok();
    Ok(Parts {
        method: http.method,
        target: http.path,
        headers,
        body,
        source_ip,
        spiffe,
    })
}

fn header_option(key: &str, value: String) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(PbHeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        keep_empty_value: false,
    }
}

fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// What Envoy's access log can show: `%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%`.
fn metadata(verdict: &str, decision: Option<&Decision>) -> Struct {
    let mut fields = HashMap::from([("decision".to_owned(), string(verdict))]);
    if let Some(d) = decision {
        fields.insert("decision_id".into(), string(&d.decision_id));
        fields.insert("class".into(), string(d.class.to_string()));
        if let Some(i) = &d.identity {
            fields.insert("identity".into(), string(i.to_string()));
        }
        if let Some(p) = &d.purpose {
            fields.insert("purpose".into(), string(p.to_string()));
        }
    }
    Struct { fields }
}

fn allowed(
    decision: &Decision,
    set: Vec<(&'static str, String)>,
    remove: Vec<String>,
) -> CheckResponse {
    #[allow(deprecated)]
    let ok = OkHttpResponse {
        headers: set.into_iter().map(|(k, v)| header_option(k, v)).collect(),
        headers_to_remove: remove,
        dynamic_metadata: None,
        response_headers_to_add: Vec::new(),
        query_parameters_to_remove: Vec::new(),
        query_parameters_to_set: Vec::new(),
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: code::OK,
            message: String::new(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::OkResponse(ok)),
        dynamic_metadata: Some(metadata("allow", Some(decision))),
    }
}

fn refused(refusal: Refusal, decision: Option<&Decision>) -> CheckResponse {
    let grpc = match refusal.status {
        StatusCode::UNAUTHORIZED => code::UNAUTHENTICATED,
        StatusCode::TOO_MANY_REQUESTS => code::RESOURCE_EXHAUSTED,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => code::INVALID_ARGUMENT,
        StatusCode::SERVICE_UNAVAILABLE => code::UNAVAILABLE,
        _ => code::PERMISSION_DENIED,
    };
    let headers = refusal
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| header_option(k.as_str(), v.to_owned()))
        })
        .collect();
    let verdict = decision.map_or_else(|| "deny".to_owned(), |d| d.verdict.to_string());
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc,
            message: String::new(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(refusal.status.as_u16()),
            }),
            headers,
            body: refusal.body,
        })),
        dynamic_metadata: Some(metadata(&verdict, decision)),
    }
}

/// The gRPC service with its message-size limits.
pub fn ext_authz_service(st: AuthzState) -> AuthorizationServer<ExtAuthz> {
    let limit = st.engine.config().gateway.max_body_bytes + MESSAGE_OVERHEAD_BYTES;
    AuthorizationServer::new(ExtAuthz::new(st))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
}

/// Why the gRPC listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtAuthzError {
    /// The transport failed.
    #[error("the ext_authz gRPC listener failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves ext_authz on `listener` until `shutdown` resolves.
pub async fn serve_ext_authz(
    listener: tokio::net::TcpListener,
    st: AuthzState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ExtAuthzError> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        // A check that takes longer than a decision may is cancelled; Envoy denies it.
        .timeout(DECIDE_TIMEOUT + Duration::from_secs(1))
        .http2_max_header_list_size(MAX_GRPC_HEADER_LIST_BYTES)
        .layer(
            ServiceBuilder::new()
                // Shed load beyond a fixed number of checks in flight (UNAVAILABLE: Envoy,
                // with `failure_mode_allow: false`, denies).
                .load_shed()
                .concurrency_limit(MAX_CONCURRENT),
        )
        .add_service(ext_authz_service(st))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use remit_core::{ActionName, Authority, Class, ResourceRef, ResourceType, Verdict};

    /// What ext_authz answers for `rate_limited`: 429, `Retry-After`, RESOURCE_EXHAUSTED,
    /// and the decision in the metadata (end to end: `grpc_rate_limited_is_a_429_with_retry_after`).
    #[test]
    fn a_rate_limited_decision_is_a_429_with_retry_after() {
        let decision = Decision {
            verdict: Verdict::RateLimited,
            decision_id: "d-1".into(),
            identity: None,
            credential_id: None,
            class: Class::Agent,
            authority: Authority::none(),
            purpose: None,
            action: ActionName::parse("docs.search").unwrap(),
            resource: ResourceRef {
                rtype: ResourceType::parse("Tool").unwrap(),
                id: "search_docs".into(),
            },
            sensitive: false,
            reasons: vec!["30/min exceeded".into()],
            policies: vec![],
            obligations: vec![],
            approval: None,
            retry_after_s: Some(12),
            rate_limit: None,
            record_sets: Vec::new(),
            scan: None,
        };
        let r = refused(
            crate::proxy::render_refusal(&decision, None),
            Some(&decision),
        );
        assert_eq!(r.status.unwrap().code, code::RESOURCE_EXHAUSTED);
        let Some(HttpResponse::DeniedResponse(d)) = r.http_response else {
            panic!("denied")
        };
        assert_eq!(d.status.unwrap().code, 429);
        let retry = d
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "retry-after")
            .map(|h| h.value.clone());
        assert_eq!(retry.as_deref(), Some("12"));
        assert!(d.body.contains("rate-limited"), "{}", d.body);
        let m = r.dynamic_metadata.unwrap();
        assert!(matches!(
            m.fields["decision"].kind.as_ref(),
            Some(Kind::StringValue(s)) if s == "rate_limited"
        ));
    }
}
