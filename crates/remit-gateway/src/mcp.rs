//! MCP awareness at the proxy: DNS-rebinding protection (`Origin`), the 2026-07-28
//! `Mcp-Method`/`Mcp-Name` headers, sessions bound to the identity that opened them,
//! protected-resource metadata (RFC 9728), and `tools/list` answers filtered to the tools
//! the requester may call.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use remit_core::mcp::McpMessage;
use remit_core::{Decision, RequestFacts, Verdict};
use remit_engine::Engine;
use serde_json::{Value, json};

use crate::Problem;

/// Sessions remembered at most; the oldest binding is forgotten first (its client then
/// gets 404 and initialises again, as MCP prescribes for unknown sessions).
pub const MAX_SESSIONS: usize = 100_000;
/// Largest `tools/list` answer remit reads to filter.
pub const MAX_TOOLS_LIST_BYTES: usize = 4 * 1024 * 1024;
/// The path prefix of protected-resource metadata (RFC 9728 §3).
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// Whether an `Origin` may call MCP endpoints: loopback origins, and the configured ones.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let o = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a == o) {
        return true;
    }
    let Some(rest) = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"))
    else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        rest.split(':').next().unwrap_or_default()
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// Checks the 2026-07-28 `Mcp-Method` and `Mcp-Name` headers against the body.
pub fn check_routing_headers(headers: &HeaderMap, msg: Option<&McpMessage>) -> Result<(), String> {
    let read = |name: &str| -> Result<Option<&str>, String> {
        let mut values = headers.get_all(name).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(format!("header `{name}` appears more than once"));
        }
        first
            .map(|v| {
                v.to_str()
                    .map_err(|_| format!("header `{name}` is not UTF-8"))
            })
            .transpose()
    };
    let (method, name) = (read("mcp-method")?, read("mcp-name")?);
    if method.is_none() && name.is_none() {
        return Ok(());
    }
    let Some(msg) = msg else {
        return Err("`Mcp-Method` or `Mcp-Name` sent without a JSON-RPC request body".into());
    };
    if let Some(m) = method
        && Some(m) != msg.method.as_deref()
    {
        return Err(format!(
            "`Mcp-Method: {m}` does not match the body's method"
        ));
    }
    if let Some(n) = name
        && Some(n) != msg.name.as_deref()
    {
        return Err(format!("`Mcp-Name: {n}` does not match the body's name"));
    }
    Ok(())
}

/// The pseudo-policy id reported when a session's owner refuses a request.
pub const SESSION_POLICY: &str = "remit.mcp-session";

/// Who owns a session: the identity, or the unclassified caller.
pub fn session_owner(decision: &Decision) -> String {
    match &decision.identity {
        Some(id) => format!("identity:{id}"),
        None => "unclassified".to_owned(),
    }
}

/// Why a session may not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRefusal {
    /// remit does not know the session.
    Unknown,
    /// Another identity opened it.
    Foreign,
}

/// MCP sessions and the identity that opened each, bounded.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl Sessions {
    /// Binds a session the upstream just created to its owner.
    pub fn bind(&self, session: &str, owner: String) {
        let Ok(mut g) = self.inner.lock() else { return };
        let (map, order) = &mut *g;
        if map.insert(session.to_owned(), owner).is_none() {
            order.push_back(session.to_owned());
        }
        while order.len() > MAX_SESSIONS {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// Whether `owner` may use `session`.
    pub fn check(&self, session: &str, owner: &str) -> Result<(), SessionRefusal> {
        // A poisoned lock means a panic elsewhere: refuse rather than guess.
        let g = self.inner.lock().map_err(|_| SessionRefusal::Unknown)?;
        match g.0.get(session) {
            None => Err(SessionRefusal::Unknown),
            Some(o) if o == owner => Ok(()),
            Some(_) => Err(SessionRefusal::Foreign),
        }
    }

    /// Forgets a session that ended.
    pub fn end(&self, session: &str) {
        if let Ok(mut g) = self.inner.lock() {
            g.0.remove(session);
            g.1.retain(|s| s != session);
        }
    }
}

/// The `WWW-Authenticate` challenge pointing at an MCP endpoint's metadata.
pub fn challenge(public_url: &str, path: &str) -> HeaderValue {
    let v = format!("Bearer resource_metadata=\"{public_url}{METADATA_PREFIX}{path}\"");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// RFC 9728 protected-resource metadata for the MCP endpoint at `path`, if there is one.
pub fn metadata(engine: &Engine, path: &str) -> Option<Response> {
    let server = engine
        .config()
        .routes
        .mcp_servers()
        .find(|s| s.path == path)?;
    let config = engine.config();
    let base = &config.gateway.public_url;
    let mut body = json!({
        "resource": format!("{base}{}", server.path),
        "resource_name": format!("MCP server `{}` behind remit", server.name),
        "bearer_methods_supported": ["header"],
    });
    // Who issues tokens an agent may present here: remit's own token service, and every
    // issuer of identities' tokens (an issuer of humans' tokens is not: a human's token is
    // exchanged at remit first).
    let servers: Vec<&str> = config
        .tokens
        .issuer
        .iter()
        .map(String::as_str)
        .chain(
            config
                .tokens
                .issuers
                .iter()
                .filter_map(|i| match i.subjects {
                    remit_core::tokens::Subjects::Identities { .. } => Some(i.issuer.as_str()),
                    remit_core::tokens::Subjects::Humans { .. } => None,
                }),
        )
        .collect();
    if !servers.is_empty() {
        body["authorization_servers"] = json!(servers);
    }
    Some(axum::Json(body).into_response())
}

/// Whether the requester may call `tool`: the decision a `tools/call` of it would get now
/// (allowed, or allowed once approved). Pure: nothing is recorded.
fn may_call(engine: &Engine, facts: &RequestFacts, tool: &str) -> bool {
    let call = json!({"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let mut probe = facts.clone();
    probe.body = Some(call.to_string().into_bytes());
    matches!(
        engine
            .decide(
                &probe,
                "tools-list-filter".into(),
                time::OffsetDateTime::now_utc()
            )
            .map(|d| d.decision.verdict),
        Ok(Verdict::Allow | Verdict::ApprovalRequired)
    )
}

fn filter_message(engine: &Engine, facts: &RequestFacts, msg: &mut Value) -> bool {
    let Some(tools) = msg
        .pointer_mut("/result/tools")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    tools.retain(|t| {
        t.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| may_call(engine, facts, n))
    });
    true
}

/// Rewrites a `tools/list` answer (JSON or an SSE stream) so it lists only the tools the
/// requester may call. An answer too large to read is refused rather than passed unfiltered.
pub async fn filter_tools_list(
    engine: &Engine,
    facts: &RequestFacts,
    response: Response,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_TOOLS_LIST_BYTES).await else {
        return Problem::new(
            StatusCode::BAD_GATEWAY,
            "the upstream's tools/list answer is too large to filter",
        )
        .into_response();
    };
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let rewritten: Option<Bytes> = if ctype.starts_with("text/event-stream") {
        let text = String::from_utf8_lossy(&bytes);
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let data = line.strip_prefix("data:").map(str::trim);
            let mut msg = data.and_then(|d| serde_json::from_str::<Value>(d).ok());
            let filtered = msg
                .as_mut()
                .is_some_and(|m| filter_message(engine, facts, m));
            match msg {
                Some(m) if filtered => {
                    out.push_str("data: ");
                    out.push_str(&m.to_string());
                    out.push('\n');
                }
                _ => out.push_str(line),
            }
        }
        Some(Bytes::from(out))
    } else {
        let mut msg = serde_json::from_slice::<Value>(&bytes).ok();
        let filtered = msg
            .as_mut()
            .is_some_and(|m| filter_message(engine, facts, m));
        msg.filter(|_| filtered).map(|m| Bytes::from(m.to_string()))
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(rewritten.unwrap_or(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins_pass_and_others_do_not() {
        for o in [
            "http://localhost:6274",
            "http://127.0.0.1",
            "https://[::1]:8443",
            "http://localhost",
        ] {
            assert!(origin_allowed(o, &[]), "{o}");
        }
        for o in [
            "http://evil.example",
            "http://localhost.evil.example",
            "null",
            "http://127.0.0.1.nip.io",
            "file://",
        ] {
            assert!(!origin_allowed(o, &[]), "{o}");
        }
        assert!(origin_allowed(
            "https://console.example.com",
            &["https://console.example.com".into()]
        ));
    }

    #[test]
    fn sessions_are_bound_and_bounded() {
        let s = Sessions::default();
        s.bind("a", "identity:x".into());
        assert_eq!(s.check("a", "identity:x"), Ok(()));
        assert_eq!(s.check("a", "identity:y"), Err(SessionRefusal::Foreign));
        assert_eq!(s.check("b", "identity:x"), Err(SessionRefusal::Unknown));
        s.end("a");
        assert_eq!(s.check("a", "identity:x"), Err(SessionRefusal::Unknown));
        for i in 0..=MAX_SESSIONS {
            s.bind(&i.to_string(), "o".into());
        }
        assert_eq!(
            s.check("0", "o"),
            Err(SessionRefusal::Unknown),
            "the oldest binding was forgotten"
        );
        assert_eq!(s.check(&MAX_SESSIONS.to_string(), "o"), Ok(()));
    }

    #[test]
    fn routing_headers_must_match_the_body() {
        let msg = McpMessage::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"}}"#,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        h.insert("mcp-name", HeaderValue::from_static("search_docs"));
        assert!(check_routing_headers(&h, Some(&msg)).is_ok());
        h.insert("mcp-name", HeaderValue::from_static("admin_reindex"));
        assert!(
            check_routing_headers(&h, Some(&msg))
                .unwrap_err()
                .contains("does not match")
        );
        h.insert("mcp-method", HeaderValue::from_static("tools/list"));
        assert!(check_routing_headers(&h, Some(&msg)).is_err());
        assert!(check_routing_headers(&h, None).is_err());
        assert!(check_routing_headers(&HeaderMap::new(), None).is_ok());
    }
}
