//! Inspecting responses for secrets, the pipeline's "inspect response" step: what an
//! upstream answers an allowed request is scanned before the client sees it, and the
//! `[scan]` response action (or the permit's `redact` obligation) blocks, redacts or only
//! records what was found.
//!
//! A `text/event-stream` response is scanned event by event as it streams
//! ([`crate::outcome`] holds the stream scanner), so SSE is never buffered whole. Any other
//! body is buffered up to `scan.max_body_bytes` and scanned once; a larger one is passed
//! unscanned or refused as `scan.oversize` says (never a silent pass: the outcome record
//! says it was not scanned). Known credentials found here are exposures like those found
//! in requests.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use remit_core::scan::location;
use remit_core::{Decision, Obligation, ScanAction, ScanReport};
use remit_engine::Engine;
use remit_scan::ContentEncoding;
use serde_json::json;

use crate::Problem;

/// The media type of a server-sent-event stream.
const SSE: &str = "text/event-stream";

/// How a response is to be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Buffered and scanned whole.
    Whole(ScanAction),
    /// Scanned event by event as it streams.
    Stream(ScanAction),
}

/// The action for a response to `decision`: `redact` under a `redact` obligation, else
/// the configured response action.
pub(crate) fn mode(engine: &Engine, decision: &Decision, parts: &http::response::Parts) -> Mode {
    let action = if decision.obligations.contains(&Obligation::Redact) {
        ScanAction::Redact
    } else {
        engine.secrets().settings().response
    };
    let sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().get(..SSE.len()))
        .is_some_and(|v| v.eq_ignore_ascii_case(SSE));
    if sse {
        Mode::Stream(action)
    } else {
        Mode::Whole(action)
    }
}

/// What inspecting a whole body decided.
pub(crate) enum Inspected {
    /// Forward this body; the report (if anything was found or skipped) joins the outcome.
    Pass(Body, Option<ScanReport>),
    /// Refuse the response; the report says why.
    Refuse(Response, ScanReport),
}

/// Buffers and scans a whole response body, applying `action`.
pub(crate) async fn whole(
    engine: &Arc<Engine>,
    decision: &Decision,
    parts: &mut http::response::Parts,
    body: Body,
    action: ScanAction,
) -> Inspected {
    let secrets = engine.secrets();
    let limit = usize::try_from(secrets.settings().max_body_bytes).unwrap_or(usize::MAX);
    let encoding_header = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("unreadable").to_owned());
    let refuse = |why: String, report: ScanReport| {
        let resp = Problem::new(StatusCode::BAD_GATEWAY, why)
            .with("decision_id", json!(decision.decision_id))
            .into_response();
        Inspected::Refuse(resp, report)
    };
    let unscanned = |why: String| ScanReport {
        findings: Vec::new(),
        action,
        incomplete: Some(format!("not scanned: {why}")),
    };
    // Read up to the limit; past it the body streams on unscanned, or is refused.
    let mut held: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let why = format!("the upstream's response failed: {e}");
                return refuse(why.clone(), unscanned(why));
            }
        };
        size = size.saturating_add(chunk.len());
        held.push(chunk);
        if size > limit {
            let why = format!("the response is larger than the scan limit of {limit} bytes");
            if secrets.refuses_unscanned(decision.sensitive) {
                return refuse(
                    format!("{why}, so remit did not pass it unchecked"),
                    unscanned(why),
                );
            }
            let rest = futures_util::stream::iter(held.into_iter().map(Ok::<_, axum::Error>))
                .chain(stream);
            return Inspected::Pass(Body::from_stream(rest), Some(unscanned(why)));
        }
    }
    // One chunk (the common case) is used as it is, not copied.
    let bytes: Bytes = if held.len() == 1 {
        held.swap_remove(0)
    } else {
        Bytes::from(held.concat())
    };
    let encoding = match encoding_header.as_deref().map(ContentEncoding::parse) {
        None => Ok(ContentEncoding::Identity),
        Some(r) => r,
    };
    let found = encoding.and_then(|e| secrets.scanner().scan(&bytes, e));
    let findings = match found {
        Ok(f) => f,
        Err(e) => {
            let why = format!("the response could not be scanned: {e}");
            if secrets.refuses_unscanned(decision.sensitive) {
                return refuse(why.clone(), unscanned(why));
            }
            return Inspected::Pass(Body::from(bytes), Some(unscanned(why)));
        }
    };
    if findings.is_clean() {
        return Inspected::Pass(Body::from(bytes), None);
    }
    let mut report = secrets.report(findings, location::RESPONSE_BODY, action);
    let named = report
        .rule_ids()
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match action {
        ScanAction::Alert => Inspected::Pass(Body::from(bytes), Some(report)),
        ScanAction::Block => refuse(
            format!("the upstream's response carried a secret ({named}); remit withheld it"),
            report,
        ),
        ScanAction::Redact => {
            let redacted = match encoding_header {
                None => secrets.scanner().redact(&bytes).ok(),
                // A compressed body cannot be redacted in place.
                Some(_) => None,
            };
            match redacted {
                Some(r) if r.is_complete() => {
                    parts.headers.remove(header::CONTENT_LENGTH);
                    Inspected::Pass(Body::from(r.body), Some(report))
                }
                _ => {
                    report.action = ScanAction::Block;
                    refuse(
                        format!(
                            "the upstream's response carried a secret that cannot be redacted in place ({named}); remit withheld it"
                        ),
                        report,
                    )
                }
            }
        }
    }
}
