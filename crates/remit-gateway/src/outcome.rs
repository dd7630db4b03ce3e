//! Outcome records: what came back for an allowed request. The response body is wrapped
//! so that, as it streams to the client (SSE included, never buffered), remit hashes it,
//! counts it and, under `log_output`, keeps a bounded review copy; when the body ends (or
//! the client goes away) an outcome record joins the audit log beside the decision.
//!
//! The decision record is durable before anything is forwarded (invariant 2); the outcome
//! is written after the response, so it cannot hold the response back.
//!
//! A `text/event-stream` body is scanned here, event by event as it streams (the response
//! action of [`crate::inspect`]): redacted, cut short at the first secret (`block`), or
//! only recorded (`alert`). What was found joins the outcome record.
//!
//! A review copy passes through the secret scanner before it is stored: secrets are
//! replaced by `[REDACTED:rule-id]`, and a copy that cannot be redacted in place (a secret
//! seen only inside base64 or compression, an encoded body) is withheld, with the reason in
//! the record (invariant 4).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use remit_core::decision::RECORD_VERSION;
use remit_core::records::RecordSetNote;
use remit_core::scan::location;
use remit_core::{
    AuditRecord, IdentityId, Obligation, OutcomeRecord, Queued, RecordSink, ReviewNote, ScanAction,
    ScanReport,
};
use remit_engine::Engine;
use remit_scan::{Scanner, SseScanner};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What an outcome record needs from the request.
pub struct Outcome {
    sink: Arc<dyn RecordSink>,
    replica: String,
    decision_id: String,
    started: Instant,
    review_limit: Option<u64>,
    engine: Arc<Engine>,
    identity: Option<IdentityId>,
    encoding: Option<String>,
    scan: Option<ScanReport>,
    record_sets: Vec<RecordSetNote>,
    /// A slot of the class's `in_flight` budget, given back when the outcome is recorded.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The engine's scanner, held by a stream that outlives the request handler.
struct EngineScanner(Arc<Engine>);

impl std::borrow::Borrow<Scanner> for EngineScanner {
    fn borrow(&self) -> &Scanner {
        self.0.secrets().scanner()
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("decision_id", &self.decision_id)
            .finish_non_exhaustive()
    }
}

impl Outcome {
    /// Starts an outcome for an allowed decision; `review_limit` is the review copy's
    /// bound, used only when the decision carries `log_output`.
    pub fn new(
        sink: Arc<dyn RecordSink>,
        engine: Arc<Engine>,
        decision: &remit_core::Decision,
        started: Instant,
    ) -> Self {
        let log_output = decision.obligations.contains(&Obligation::LogOutput);
        let config = engine.config();
        Self {
            sink,
            replica: config.gateway.replica_id.clone(),
            decision_id: decision.decision_id.clone(),
            started,
            review_limit: log_output.then_some(config.audit.review_limit_bytes),
            identity: decision.identity.clone(),
            engine,
            encoding: None,
            scan: None,
            record_sets: Vec::new(),
            slot: None,
        }
    }

    /// Holds a slot of the class's `in_flight` budget until the response ends.
    pub fn hold(&mut self, slot: tokio::sync::OwnedSemaphorePermit) {
        self.slot = Some(slot);
    }

    /// What the approved record sets did to the response, for the outcome record.
    pub fn limited(&mut self, notes: Vec<RecordSetNote>) {
        self.record_sets = notes;
    }

    /// What inspecting the response found, for the outcome record.
    pub fn scanned(&mut self, report: Option<ScanReport>) {
        self.scan = report;
    }

    /// Records an answer that had no upstream body (the upstream failed or timed out, or
    /// remit refused the response).
    pub fn failed(self, status: u16, error: String) {
        Observing::new(self, status).finish(false, Some(error));
    }

    /// Wraps a response body so its outcome is recorded when it ends; `encoding` is the
    /// response's `Content-Encoding`, if any. With `stream_scan`, the body is an event
    /// stream scanned event by event under that action.
    pub fn observe(
        mut self,
        status: u16,
        encoding: Option<&str>,
        body: Body,
        stream_scan: Option<ScanAction>,
    ) -> Body {
        self.encoding = encoding
            .map(str::trim)
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
            .map(str::to_owned);
        let sse = stream_scan.map(|action| StreamScan {
            scanner: SseScanner::new(
                EngineScanner(self.engine.clone()),
                action != ScanAction::Alert,
            ),
            action,
        });
        Body::new(Observed {
            inner: body,
            state: Observing::new(self, status),
            sse,
            done: false,
        })
    }
}

/// An event stream's scanner and the action it applies.
struct StreamScan {
    scanner: SseScanner<EngineScanner>,
    action: ScanAction,
}

struct Observing {
    outcome: Option<Outcome>,
    status: u16,
    hasher: Sha256,
    bytes: u64,
    review: Vec<u8>,
    truncated: bool,
    /// Why an event stream was cut, for the outcome record.
    stream_error: Option<String>,
}

impl Observing {
    fn new(outcome: Outcome, status: u16) -> Self {
        Self {
            outcome: Some(outcome),
            status,
            hasher: Sha256::new(),
            bytes: 0,
            review: Vec::new(),
            truncated: false,
            stream_error: None,
        }
    }

    fn data(&mut self, chunk: &Bytes) {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        if let Some(limit) = self.outcome.as_ref().and_then(|o| o.review_limit) {
            // Keep a margin past the limit so a secret that straddles it is seen whole,
            // and redacted, before the copy is cut.
            let room = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_add(REDACT_MARGIN)
                .saturating_sub(self.review.len());
            let take = room.min(chunk.len());
            self.review.extend_from_slice(&chunk[..take]);
            self.truncated |= take < chunk.len();
        }
    }

    /// Adds what a stream scan found to the outcome's report.
    fn found(&mut self, findings: remit_scan::Findings, action: ScanAction) {
        let Some(o) = self.outcome.as_mut() else {
            return;
        };
        if findings.is_clean() {
            return;
        }
        let r = o
            .engine
            .secrets()
            .report(findings, location::RESPONSE_BODY, action);
        match &mut o.scan {
            None => o.scan = Some(r),
            Some(all) => {
                all.findings.extend(r.findings);
                all.action = action;
                if all.incomplete.is_none() {
                    all.incomplete = r.incomplete;
                }
            }
        }
    }

    /// Writes the outcome record once, in the background.
    fn finish(&mut self, complete: bool, error: Option<String>) {
        let Some(o) = self.outcome.take() else { return };
        if let Some(report) = &o.scan {
            o.engine
                .secrets()
                .expose(report, o.identity.as_ref(), &o.decision_id);
        }
        let hasher = std::mem::take(&mut self.hasher);
        let review = o.review_limit.map(|limit| {
            let kept = std::mem::take(&mut self.review);
            let truncated = self.truncated || kept.len() as u64 > limit;
            let (body, redacted, withheld) = redact_for_review(
                o.engine.secrets().scanner(),
                o.encoding.as_deref(),
                kept,
                limit,
            );
            (
                ReviewNote {
                    stored_bytes: body.len() as u64,
                    limit,
                    truncated,
                    sha256: hex::encode(Sha256::digest(&body)),
                    redacted,
                    withheld,
                },
                body,
            )
        });
        let (review, review_body) = match review {
            Some((n, b)) => (Some(n), Some(b)),
            None => (None, None),
        };
        let record = OutcomeRecord {
            v: RECORD_VERSION,
            time: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            replica: o.replica,
            decision_id: o.decision_id,
            status: self.status,
            response_sha256: hex::encode(hasher.finalize()),
            response_bytes: self.bytes,
            complete,
            latency_us: u64::try_from(o.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            error,
            review,
            review_body,
            scan: o.scan,
            record_sets: o.record_sets,
        };
        let id = record.decision_id.clone();
        match o.sink.queue(AuditRecord::Outcome(record)) {
            Queued::Queued => {}
            Queued::Failed(e) => lost(&id, &e),
            // A sink that needs a waiter gets one of its own. Outside a runtime (never in
            // the gateway) there is nowhere to wait from.
            Queued::Wait(record) => {
                let sink = o.sink;
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            if let Err(e) = sink.append(*record).await {
                                lost(&id, &e);
                            }
                        });
                    }
                    Err(_) => lost(&id, &remit_core::SinkError::Closed),
                }
            }
        }
    }
}

fn lost(decision_id: &str, e: &remit_core::SinkError) {
    tracing::error!(decision_id, error = %e, "an outcome record was not written");
}

/// Bytes kept past the review limit so a secret across the cut is redacted whole (PEM
/// private keys are the longest common secrets, a few KiB).
const REDACT_MARGIN: usize = 8 * 1024;

/// The review copy to store: redacted and cut at `limit`, or nothing with the reason.
fn redact_for_review(
    scanner: &Scanner,
    encoding: Option<&str>,
    kept: Vec<u8>,
    limit: u64,
) -> (Vec<u8>, u64, Option<String>) {
    if let Some(e) = encoding {
        return (
            Vec::new(),
            0,
            Some(format!(
                "the body is `{e}`-encoded and is not stored unscanned"
            )),
        );
    }
    match scanner.redact(&kept) {
        Ok(r) if r.is_complete() => {
            let mut body = r.body;
            body.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            (body, r.findings.items.len() as u64, None)
        }
        Ok(r) => (
            Vec::new(),
            0,
            Some(format!(
                "{} secret(s) could not be redacted in place",
                r.unredacted.max(1)
            )),
        ),
        Err(e) => (
            Vec::new(),
            0,
            Some(format!("the body could not be scanned: {e}")),
        ),
    }
}

/// A response body that records its outcome when it ends or is dropped, scanning an
/// event stream as it passes.
struct Observed {
    inner: Body,
    state: Observing,
    sse: Option<StreamScan>,
    /// Set once the body has ended for the client (a stream cut short by `block`).
    done: bool,
}

impl Observed {
    /// Passes a chunk through the event-stream scan: the events it completes (redacted
    /// under `redact`), or `None` when the stream must end here (`block`, or an event too
    /// large to scan).
    fn through_scan(&mut self, chunk: &Bytes) -> Option<Bytes> {
        let Some(sse) = self.sse.as_mut() else {
            return Some(chunk.clone());
        };
        let action = sse.action;
        match sse.scanner.push(chunk) {
            Ok(out) => self.released(out, action),
            Err(e) => {
                self.state.stream_error = Some(format!("the event stream was cut: {e}"));
                None
            }
        }
    }

    /// What a stream scan released, once its findings are recorded.
    fn released(&mut self, out: remit_scan::SseOutput, action: ScanAction) -> Option<Bytes> {
        let found = !out.findings.items.is_empty();
        let stop = found && (action == ScanAction::Block || out.unredacted > 0);
        let recorded = if stop { ScanAction::Block } else { action };
        self.state.found(out.findings, recorded);
        if stop {
            self.state.stream_error =
                Some("the event stream was cut at an event carrying a secret".into());
            return None;
        }
        Some(Bytes::from(out.forward))
    }

    /// The stream's held tail when the upstream ends it.
    fn tail(&mut self) -> Option<Bytes> {
        let sse = self.sse.take()?;
        let action = sse.action;
        match sse.scanner.finish() {
            Ok(out) if !out.forward.is_empty() || !out.findings.items.is_empty() => {
                self.released(out, action)
            }
            Ok(_) => None,
            Err(e) => {
                self.state.stream_error = Some(format!("the event stream was cut: {e}"));
                None
            }
        }
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let polled = Pin::new(&mut this.inner).poll_frame(cx);
            match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    let ending = this.inner.is_end_stream();
                    let chunk = match frame.into_data() {
                        Ok(chunk) => chunk,
                        Err(other) => {
                            // Trailers pass as they are.
                            if ending {
                                this.done = true;
                                this.state.finish(true, None);
                            }
                            return Poll::Ready(Some(Ok(other)));
                        }
                    };
                    let Some(mut out) = this.through_scan(&chunk) else {
                        this.done = true;
                        let why = this.state.stream_error.take();
                        this.state.finish(false, why);
                        return Poll::Ready(None);
                    };
                    if ending && let Some(tail) = this.tail() {
                        out = [out, tail].concat().into();
                    }
                    if out.is_empty() && !ending {
                        // An event not yet complete is held back: read on.
                        continue;
                    }
                    this.state.data(&out);
                    // hyper stops polling once the body says it has ended.
                    if ending {
                        this.done = true;
                        let why = this.state.stream_error.take();
                        this.state.finish(why.is_none(), why);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.state.finish(false, Some(e.to_string()));
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    let tail = this.tail();
                    let why = this.state.stream_error.take();
                    this.done = true;
                    if let Some(tail) = tail.filter(|t| !t.is_empty()) {
                        this.state.data(&tail);
                        this.state.finish(why.is_none(), why);
                        return Poll::Ready(Some(Ok(Frame::data(tail))));
                    }
                    this.state.finish(why.is_none(), why);
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.sse.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // The client went away (or the body was never read to the end).
        self.state.finish(false, None);
    }
}
