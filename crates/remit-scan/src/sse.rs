//! Incremental scanning of a `text/event-stream` response: chunks in as they arrive, each
//! complete event scanned (and redacted) once, so a secret split across network chunks is
//! found as if the event had arrived whole.

use std::borrow::{Borrow, Cow};
use std::fmt;

use crate::{Findings, ScanError, Scanner};

/// What one [`SseScanner::push`] releases.
#[derive(Clone, Default)]
pub struct SseOutput {
    /// Complete events ready to forward (redacted when the scanner redacts). Bytes of an
    /// event not yet complete are held back.
    pub forward: Vec<u8>,
    /// What the released events held. Spans are offsets in the stream as received.
    pub findings: Findings,
    /// Findings in the released events that could not be redacted in place.
    pub unredacted: usize,
}

impl fmt::Debug for SseOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseOutput")
            .field("forward", &format_args!("<{} bytes>", self.forward.len()))
            .field("findings", &self.findings)
            .field("unredacted", &self.unredacted)
            .finish()
    }
}

/// Scans a server-sent-event stream event by event. Holds at most
/// [`crate::Limits::max_body_bytes`] of an incomplete event; an event larger than that is
/// [`ScanError::TooLarge`] (the caller ends the stream). `S` is how the scanner is held:
/// a reference, or an owning handle for a stream that outlives its caller's frame.
pub struct SseScanner<S: Borrow<Scanner>> {
    scanner: S,
    redact: bool,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    offset: usize,
}

impl<S: Borrow<Scanner>> fmt::Debug for SseScanner<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseScanner")
            .field("redact", &self.redact)
            .field("held", &format_args!("<{} bytes>", self.buf.len()))
            .field("offset", &self.offset)
            .finish()
    }
}

impl<S: Borrow<Scanner>> SseScanner<S> {
    /// A stream scanner; with `redact`, released events have their secrets replaced.
    pub fn new(scanner: S, redact: bool) -> Self {
        Self {
            scanner,
            redact,
            buf: Vec::new(),
            offset: 0,
        }
    }

    /// Feeds a chunk; releases every event it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<SseOutput, ScanError> {
        let limit = self.scanner.borrow().limits().max_body_bytes;
        // Look for a boundary only where a new one can be: from just before the new bytes.
        let from = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(chunk);
        let mut out = SseOutput::default();
        let mut start = 0;
        let mut search = from;
        while let Some(end) = event_end(&self.buf, search) {
            self.release(start, end, &mut out)?;
            start = end;
            search = end;
        }
        self.buf.drain(..start);
        self.offset += start;
        if self.buf.len() > limit {
            return Err(ScanError::TooLarge {
                what: "server-sent event",
                limit,
            });
        }
        Ok(out)
    }

    /// Ends the stream: releases what is held (an event the stream cut short).
    pub fn finish(self) -> Result<SseOutput, ScanError> {
        let mut out = SseOutput::default();
        let end = self.buf.len();
        if end > 0 {
            self.release(0, end, &mut out)?;
        }
        Ok(out)
    }

    fn release(&self, start: usize, end: usize, out: &mut SseOutput) -> Result<(), ScanError> {
        let event = &self.buf[start..end];
        let base = self.offset + start;
        let (bytes, mut findings, unredacted) = if self.redact {
            let r = self.scanner.borrow().redact(event)?;
            (Cow::Owned(r.body), r.findings, r.unredacted)
        } else {
            let f = self
                .scanner
                .borrow()
                .scan_text(Cow::Borrowed(event), Vec::new());
            (Cow::Borrowed(event), f, 0)
        };
        for f in &mut findings.items {
            f.span = f.span.start + base..f.span.end + base;
        }
        out.forward.extend_from_slice(&bytes);
        out.unredacted += unredacted;
        out.findings.items.append(&mut findings.items);
        if out.findings.incomplete.is_none() {
            out.findings.incomplete = findings.incomplete;
        }
        Ok(())
    }
}

/// The end (exclusive) of the first event ending at or after `from`: a blank line, in any
/// of the three line-end styles.
fn event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        match buf[i] {
            b'\n' => {
                if buf.get(i + 1) == Some(&b'\n') {
                    return Some(i + 2);
                }
                if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                    return Some(i + 3);
                }
            }
            b'\r' if buf.get(i + 1) == Some(&b'\r') => {
                return Some(i + 2);
            }
            _ => {}
        }
        i += 1;
    }
    None
}
