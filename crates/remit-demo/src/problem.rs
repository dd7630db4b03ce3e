//! RFC 9457 problem details (`application/problem+json`) for the demo HTTP API.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header::CONTENT_TYPE};
use serde::Serialize;

use crate::echo::SeenByUpstream;

const PROBLEM_JSON: &str = "application/problem+json";

/// An error response: status, human-readable detail and the header echo.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    status: StatusCode,
    detail: String,
    seen_by_upstream: SeenByUpstream,
}

impl Problem {
    pub(crate) fn new(
        status: StatusCode,
        detail: impl Into<String>,
        seen_by_upstream: SeenByUpstream,
    ) -> Self {
        Self {
            status,
            detail: detail.into(),
            seen_by_upstream,
        }
    }
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    seen_by_upstream: &'a SeenByUpstream,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        // `about:blank` means the status code says it all, so the title is
        // the status's reason phrase (RFC 9457, section 4.2.1).
        let body = ProblemBody {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            seen_by_upstream: &self.seen_by_upstream,
        };
        match serde_json::to_vec(&body) {
            Ok(bytes) => (
                self.status,
                [(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
                bytes,
            )
                .into_response(),
            Err(error) => {
                tracing::error!(%error, "failed to serialize problem details");
                self.status.into_response()
            }
        }
    }
}
