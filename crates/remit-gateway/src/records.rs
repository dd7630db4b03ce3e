//! Limiting responses to approved record sets: an allowed request whose decision carries
//! record sets gets its successful response buffered (bounded by the sets' limit),
//! filtered by each set ([`ApprovedSet::filter`]) and passed on re-serialised, or refused.
//! Whatever cannot be limited — a body that is not JSON, compressed, larger than the limit,
//! malformed — is refused, never passed unchecked. Responses that are not successes pass as
//! they are: they answer no request for records.
//!
//! For an MCP server the body is a JSON-RPC message, or an event stream of them. A tool
//! result's `structuredContent` is what a set's `items` points into, and the result's
//! `content` is replaced by the filtered structured content as JSON text (what MCP asks a
//! tool with structured output to send as well), so the removed records do not travel on
//! in the text. A result without structured content must be JSON text blocks, each limited
//! the same way; anything else (prose, images, embedded resources) cannot be limited, and
//! the response is refused. Errors and notifications pass.
//!
//! The upstream is asked for an uncompressed body (`Accept-Encoding: identity`, set by the
//! proxy), so a compliant upstream never forces a refusal by compressing.

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, Limited};
use remit_core::Decision;
use remit_core::records::{ApprovedSet, Excess, Filtered, MAX_NOTED_IDS, RecordSetNote};
use serde_json::{Value, json};

use crate::Problem;

/// What limiting a response decided.
pub(crate) enum Limit {
    /// Forward this body; the notes join the outcome record.
    Pass(Body, Vec<RecordSetNote>),
    /// Refuse the response; the notes say why.
    Refuse(Response, Vec<RecordSetNote>),
}

/// Why a response is refused: the status the client gets, and the reason.
type Refused = (StatusCode, String);

/// The media type of an event stream.
const SSE: &str = "text/event-stream";

/// The essence of a `Content-Type`, lower-cased.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a `Content-Type` is JSON: `application/json` or a `+json` suffix (RFC 6839).
fn is_json(content_type: &str) -> bool {
    let e = essence(content_type);
    e == "application/json" || e.ends_with("+json")
}

/// Limits `body` to the record sets of `decision` (which has at least one); `mcp` when the
/// upstream is an MCP server.
pub(crate) async fn limit(
    decision: &Decision,
    parts: &mut http::response::Parts,
    body: Body,
    mcp: bool,
) -> Limit {
    let sets = &decision.record_sets;
    if !parts.status.is_success() || parts.status == StatusCode::NO_CONTENT {
        return Limit::Pass(body, Vec::new());
    }
    let mut filtered = vec![Filtered::default(); sets.len()];
    let outcome = limited(sets, parts, body, mcp, &mut filtered).await;
    let notes = |refused: Option<&str>| -> Vec<RecordSetNote> {
        sets.iter()
            .zip(filtered.iter().cloned())
            .map(|(s, filtered)| RecordSetNote {
                set: s.name.clone(),
                filtered,
                refused: refused.map(str::to_owned),
            })
            .collect()
    };
    match outcome {
        Ok((bytes, changed)) => {
            if changed {
                parts.headers.remove(header::CONTENT_LENGTH);
                parts.headers.remove(header::ETAG);
            }
            Limit::Pass(Body::from(bytes), notes(None))
        }
        Err((status, why)) => {
            let why = format!("{why}; remit withheld the response");
            let notes = notes(Some(&why));
            let resp = Problem::new(status, why)
                .with("decision_id", json!(decision.decision_id))
                .into_response();
            Limit::Refuse(resp, notes)
        }
    }
}

/// Buffers, parses and filters; the body to pass and whether it changed, or why not.
async fn limited(
    sets: &[ApprovedSet],
    parts: &http::response::Parts,
    body: Body,
    mcp: bool,
    filtered: &mut [Filtered],
) -> Result<(Bytes, bool), Refused> {
    let names = sets
        .iter()
        .map(|s| format!("`{}`", s.name))
        .collect::<Vec<_>>()
        .join(", ");
    let bad = |what: String| {
        (
            StatusCode::BAD_GATEWAY,
            format!(
                "the upstream's response {what}, so it cannot be limited to the approved record set(s) {names}"
            ),
        )
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""));
    let sse = mcp && content_type.is_some_and(|t| essence(t) == SSE);
    if !sse && !content_type.is_some_and(is_json) {
        return Err(bad(format!(
            "is not JSON ({})",
            content_type.unwrap_or("no Content-Type")
        )));
    }
    if let Some(e) = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .filter(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(bad(format!(
            "is encoded ({})",
            e.to_str().unwrap_or("unreadable")
        )));
    }
    let max = sets.iter().map(|s| s.max_body_bytes).min().unwrap_or(0);
    let bytes = match Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(bad(format!("is larger than {max} bytes")));
        }
        Err(e) => return Err(bad(format!("failed ({e})"))),
    };
    let excess = |e: Excess| {
        // Records outside the set are withheld (403); a response without what the set
        // describes is the upstream's fault (502).
        let status = match e {
            Excess::Shape { .. } => StatusCode::BAD_GATEWAY,
            Excess::Outside { .. } | Excess::Single { .. } => StatusCode::FORBIDDEN,
        };
        (status, e.to_string())
    };
    if sse {
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("is not UTF-8".into()))?;
        let out = limit_event_stream(sets, text, filtered).map_err(|e| {
            e.map_or_else(|| bad("carries an event that is not JSON".into()), excess)
        })?;
        let changed = out.as_bytes() != &bytes[..];
        return Ok((Bytes::from(out), changed));
    }
    let mut value: Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not valid JSON ({e})")))?;
    if mcp {
        limit_mcp(sets, &mut value, filtered).map_err(excess)?;
    } else {
        apply(sets, &mut value, filtered).map_err(excess)?;
    }
    if filtered.iter().all(|f| f.removed == 0) && !mcp {
        return Ok((bytes, false));
    }
    let out = serde_json::to_vec(&value).map_err(|e| bad(format!("could not be written ({e})")))?;
    let changed = out != bytes;
    Ok((Bytes::from(out), changed))
}

/// Filters `value` by every set in turn, adding to `filtered`.
fn apply(sets: &[ApprovedSet], value: &mut Value, filtered: &mut [Filtered]) -> Result<(), Excess> {
    for (s, total) in sets.iter().zip(filtered.iter_mut()) {
        let f = s.filter(value)?;
        total.kept += f.kept;
        total.removed += f.removed;
        let room = MAX_NOTED_IDS.saturating_sub(total.removed_ids.len());
        total
            .removed_ids
            .extend(f.removed_ids.into_iter().take(room));
    }
    Ok(())
}

/// Limits one JSON-RPC message from an MCP server. Only a result carries records.
fn limit_mcp(
    sets: &[ApprovedSet],
    msg: &mut Value,
    filtered: &mut [Filtered],
) -> Result<(), Excess> {
    let Some(result) = msg.get_mut("result").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let shape = || Excess::Shape {
        set: sets.first().map(|s| s.name.clone()).unwrap_or_default(),
        items: "the tool result's structured content or JSON text".into(),
    };
    if let Some(structured) = result.get_mut("structuredContent") {
        apply(sets, structured, filtered)?;
        let text = serde_json::to_string(structured).map_err(|_| shape())?;
        result.insert("content".into(), json!([{"type": "text", "text": text}]));
        return Ok(());
    }
    let Some(Value::Array(blocks)) = result.get_mut("content") else {
        return Err(shape());
    };
    for block in blocks {
        if block.get("type").and_then(Value::as_str) != Some("text") {
            return Err(shape());
        }
        let mut parsed: Value = block
            .get("text")
            .and_then(Value::as_str)
            .and_then(|t| serde_json::from_str(t).ok())
            .ok_or_else(shape)?;
        apply(sets, &mut parsed, filtered)?;
        block["text"] = Value::String(serde_json::to_string(&parsed).map_err(|_| shape())?);
    }
    Ok(())
}

/// Limits every JSON-RPC message in an MCP event stream and writes the stream again: other
/// fields (`event`, `id`, `retry`, comments) as they were, each message as one `data` line.
/// `Err(None)`: an event's data is not JSON.
fn limit_event_stream(
    sets: &[ApprovedSet],
    text: &str,
    filtered: &mut [Filtered],
) -> Result<String, Option<Excess>> {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len());
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let mut data: Vec<&str> = Vec::new();
        for line in event.split('\n') {
            match line.strip_prefix("data:") {
                Some(d) => data.push(d.strip_prefix(' ').unwrap_or(d)),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        if !data.is_empty() {
            let mut msg: Value = serde_json::from_str(&data.join("\n")).map_err(|_| None)?;
            limit_mcp(sets, &mut msg, filtered).map_err(Some)?;
            out.push_str("data: ");
            out.push_str(&msg.to_string());
            out.push('\n');
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use remit_core::records::OnExcess;

    fn sets() -> Vec<ApprovedSet> {
        vec![ApprovedSet {
            name: "queues".into(),
            field: "/queue".into(),
            items: "/tickets".into(),
            values: std::sync::Arc::new(["support".to_owned()].into()),
            on_excess: OnExcess::Filter,
            max_body_bytes: 1 << 20,
        }]
    }

    #[test]
    fn json_media_types() {
        for t in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json(t), "{t}");
        }
        for t in ["text/plain", "text/event-stream", "application/jsonx", ""] {
            assert!(!is_json(t), "{t}");
        }
    }

    #[test]
    fn an_mcp_result_keeps_only_the_set_in_structured_content_and_its_text() {
        let tickets =
            json!({"tickets": [{"queue": "support", "id": 1}, {"queue": "billing", "id": 3}]});
        let mut msg = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "structuredContent": tickets,
            "content": [{"type": "text", "text": tickets.to_string()}, {"type": "text", "text": "billing: 3"}],
        }});
        let mut f = vec![Filtered::default()];
        limit_mcp(&sets(), &mut msg, &mut f).unwrap();
        assert_eq!((f[0].kept, f[0].removed), (1, 1));
        let text = msg.to_string();
        assert!(!text.contains("billing"), "{text}");
        assert_eq!(
            msg["result"]["content"],
            json!([{"type": "text", "text": "{\"tickets\":[{\"queue\":\"support\",\"id\":1}]}"}])
        );
    }

    #[test]
    fn an_mcp_result_without_structured_content_must_be_json_text() {
        let mut f = vec![Filtered::default()];
        let mut json_text = json!({"result": {"content": [
            {"type": "text", "text": "{\"tickets\": [{\"queue\": \"billing\"}]}"}]}});
        limit_mcp(&sets(), &mut json_text, &mut f).unwrap();
        assert_eq!(f[0].removed, 1);
        assert!(!json_text.to_string().contains("billing"));
        for mut bad in [
            json!({"result": {"content": [{"type": "text", "text": "ticket 3 is billing's"}]}}),
            json!({"result": {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}]}}),
            json!({"result": {}}),
        ] {
            assert!(
                matches!(
                    limit_mcp(&sets(), &mut bad, &mut f),
                    Err(Excess::Shape { .. })
                ),
                "{bad}"
            );
        }
        // Errors and notifications carry no records.
        for mut pass in [
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "billing"}}),
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}),
        ] {
            let before = pass.clone();
            limit_mcp(&sets(), &mut pass, &mut f).unwrap();
            assert_eq!(pass, before);
        }
    }

    #[test]
    fn an_event_stream_is_limited_message_by_message() {
        let result = json!({"jsonrpc": "2.0", "id": 2, "result": {"structuredContent":
            {"tickets": [{"queue": "billing"}, {"queue": "support"}]}}});
        let stream = format!(
            ": keep-alive\r\n\r\nevent: message\r\nid: 7\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1}}}}\r\n\r\nevent: message\ndata: {}\n\n",
            result
        );
        let mut f = vec![Filtered::default()];
        let out = limit_event_stream(&sets(), &stream, &mut f).unwrap();
        assert_eq!((f[0].kept, f[0].removed), (1, 1));
        assert!(!out.contains("billing"), "{out}");
        assert!(
            out.starts_with(": keep-alive\n\nevent: message\nid: 7\ndata: {"),
            "{out}"
        );
        assert!(out.ends_with("\n\n"));
        // A data line split over two `data:` fields is one message.
        let split = "data: {\"result\": {\"structuredContent\":\ndata: {\"tickets\": []}}}\n\n";
        assert!(limit_event_stream(&sets(), split, &mut f).is_ok());
        assert!(matches!(
            limit_event_stream(&sets(), "data: not json\n\n", &mut f),
            Err(None)
        ));
    }
}
