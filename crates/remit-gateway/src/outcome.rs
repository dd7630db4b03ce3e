//! Outcome records: what came back for an allowed request. The response body is wrapped
//! so that, as it streams to the client (SSE included, never buffered), remit hashes it,
//! counts it and, under `log_output`, keeps a bounded review copy; when the body ends (or
//! the client goes away) an outcome record joins the audit log beside the decision.
//!
//! The decision record is durable before anything is forwarded (invariant 2); the outcome
//! is written after the response, so it cannot hold the response back.
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
use remit_core::{AuditRecord, Obligation, OutcomeRecord, RecordSink, ReviewNote};
use remit_scan::Scanner;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What an outcome record needs from the request.
#[derive(Clone)]
pub struct Outcome {
    sink: Arc<dyn RecordSink>,
    replica: String,
    decision_id: String,
    started: Instant,
    review_limit: Option<u64>,
    scanner: Arc<Scanner>,
    encoding: Option<String>,
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
        replica: &str,
        decision: &remit_core::Decision,
        started: Instant,
        review_limit: u64,
        scanner: Arc<Scanner>,
    ) -> Self {
        let log_output = decision.obligations.contains(&Obligation::LogOutput);
        Self {
            sink,
            replica: replica.to_owned(),
            decision_id: decision.decision_id.clone(),
            started,
            review_limit: log_output.then_some(review_limit),
            scanner,
            encoding: None,
        }
    }

    /// Records an answer that had no upstream body (the upstream failed or timed out).
    pub fn failed(self, status: u16, error: String) {
        Observing::new(self, status).finish(false, Some(error));
    }

    /// Wraps a response body so its outcome is recorded when it ends; `encoding` is the
    /// response's `Content-Encoding`, if any.
    pub fn observe(mut self, status: u16, encoding: Option<&str>, body: Body) -> Body {
        self.encoding = encoding
            .map(str::trim)
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
            .map(str::to_owned);
        Body::new(Observed {
            inner: body,
            state: Observing::new(self, status),
        })
    }
}

struct Observing {
    outcome: Option<Outcome>,
    status: u16,
    hasher: Sha256,
    bytes: u64,
    review: Vec<u8>,
    truncated: bool,
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

    /// Writes the outcome record once, in the background.
    fn finish(&mut self, complete: bool, error: Option<String>) {
        let Some(o) = self.outcome.take() else { return };
        let hasher = std::mem::take(&mut self.hasher);
        let review = o.review_limit.map(|limit| {
            let kept = std::mem::take(&mut self.review);
            let truncated = self.truncated || kept.len() as u64 > limit;
            let (body, redacted, withheld) =
                redact_for_review(&o.scanner, o.encoding.as_deref(), kept, limit);
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
        };
        let sink = o.sink;
        // Outside a runtime (never in the gateway) there is nowhere to write from.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let id = record.decision_id.clone();
                if let Err(e) = sink.append(AuditRecord::Outcome(record)).await {
                    tracing::error!(decision_id = %id, error = %e, "an outcome record was not written");
                }
            });
        }
    }
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

/// A response body that records its outcome when it ends or is dropped.
struct Observed {
    inner: Body,
    state: Observing,
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(chunk) = frame.data_ref() {
                    this.state.data(chunk);
                }
                // hyper stops polling once the body says it has ended.
                if this.inner.is_end_stream() {
                    this.state.finish(true, None);
                }
            }
            Poll::Ready(Some(Err(e))) => this.state.finish(false, Some(e.to_string())),
            Poll::Ready(None) => this.state.finish(true, None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
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
