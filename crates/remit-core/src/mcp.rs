//! MCP JSON-RPC messages as far as a decision needs them: method, tool name, arguments,
//! and a purpose declared in `_meta`.

use serde::Deserialize;
use serde_json::Value;

/// The `_meta` key an MCP client uses to declare its purpose.
pub const PURPOSE_META_KEY: &str = "remit/purpose";

/// Why an MCP message could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// Not JSON, or not a JSON-RPC 2.0 object.
    #[error("the body is not a JSON-RPC 2.0 message: {0}")]
    NotJsonRpc(String),
    /// A JSON array: batches were removed from MCP in revision 2025-06-18.
    #[error("JSON-RPC batches are not accepted: send one message per request")]
    Batch,
    /// `tools/call` without a string `params.name`.
    #[error("`tools/call` needs a string `params.name`")]
    MissingToolName,
    /// `_meta` carries a purpose that is not a string.
    #[error("`_meta.{PURPOSE_META_KEY}` must be a string")]
    BadPurposeMeta,
}

/// The parts of one MCP message a decision reads.
#[derive(Debug, Clone, PartialEq)]
pub struct McpMessage {
    /// The JSON-RPC id; `None` for a notification.
    pub id: Option<Value>,
    /// The JSON-RPC method; `None` for a response the client sends to the server.
    pub method: Option<String>,
    /// For `tools/call`: the tool's name.
    pub tool: Option<String>,
    /// For `tools/call`: the tool's arguments.
    pub arguments: Option<Value>,
    /// A purpose declared in `params._meta`.
    pub purpose: Option<String>,
    /// What the message names: `params.name` (tools, prompts) or `params.uri` (resources).
    /// The 2026-07-28 revision's `Mcp-Name` header must agree with it.
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    jsonrpc: String,
    #[serde(default)]
    id: Option<Value>,
    method: Option<String>,
    #[serde(default)]
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    name: Option<Value>,
    uri: Option<Value>,
    arguments: Option<Value>,
    #[serde(rename = "_meta")]
    meta: Option<serde_json::Map<String, Value>>,
}

impl McpMessage {
    /// Parses one JSON-RPC message from a request body.
    pub fn parse(body: &[u8]) -> Result<Self, McpError> {
        if body.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'[') {
            return Err(McpError::Batch);
        }
        let env: Envelope =
            serde_json::from_slice(body).map_err(|e| McpError::NotJsonRpc(e.to_string()))?;
        if env.jsonrpc != "2.0" {
            return Err(McpError::NotJsonRpc("`jsonrpc` must be \"2.0\"".into()));
        }
        let (mut tool, mut arguments, mut purpose, mut name) = (None, None, None, None);
        if let Some(p) = env.params {
            name = match (&p.name, &p.uri) {
                (Some(Value::String(n)), _) => Some(n.clone()),
                (_, Some(Value::String(u))) => Some(u.clone()),
                _ => None,
            };
            if let Some(meta) = p.meta {
                purpose = match meta.get(PURPOSE_META_KEY) {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(McpError::BadPurposeMeta),
                };
            }
            if env.method.as_deref() == Some("tools/call") {
                match p.name {
                    Some(Value::String(s)) => tool = Some(s),
                    _ => return Err(McpError::MissingToolName),
                }
                arguments = p.arguments;
            }
        } else if env.method.as_deref() == Some("tools/call") {
            return Err(McpError::MissingToolName);
        }
        if let Some(id) = &env.id
            && !(id.is_string() || id.is_i64() || id.is_u64())
        {
            return Err(McpError::NotJsonRpc(
                "`id` must be a string or an integer".into(),
            ));
        }
        Ok(Self {
            id: env.id,
            method: env.method,
            tool,
            arguments,
            purpose,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_calls_and_meta() {
        let m = McpMessage::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"x"},"_meta":{"remit/purpose":"doc-retrieval"}}}"#,
        )
        .unwrap();
        assert_eq!(m.tool.as_deref(), Some("search_docs"));
        assert_eq!(m.purpose.as_deref(), Some("doc-retrieval"));
    }

    #[test]
    fn rejects_malformed_messages() {
        assert_eq!(McpMessage::parse(b" [{}]"), Err(McpError::Batch));
        assert!(matches!(
            McpMessage::parse(b"{"),
            Err(McpError::NotJsonRpc(_))
        ));
        assert!(matches!(
            McpMessage::parse(br#"{"jsonrpc":"1.0","method":"x"}"#),
            Err(McpError::NotJsonRpc(_))
        ));
        assert_eq!(
            McpMessage::parse(
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#
            ),
            Err(McpError::MissingToolName)
        );
        assert_eq!(
            McpMessage::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#),
            Err(McpError::MissingToolName)
        );
        assert_eq!(
            McpMessage::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"remit/purpose":1}}}"#),
            Err(McpError::BadPurposeMeta)
        );
    }
}
