//! Echo of the gateway-added `remit-*` request headers.
//!
//! Every demo response carries a `seen_by_upstream` object with the values of
//! these headers as the upstream received them, so the quickstart shows what
//! the gateway injected.

use std::{collections::BTreeMap, convert::Infallible};

use axum::extract::FromRequestParts;
use http::{HeaderMap, request::Parts};
use serde::Serialize;

/// Request headers whose values the demo upstreams echo back.
pub const ECHOED_HEADERS: [&str; 4] = [
    "remit-identity",
    "remit-on-behalf-of",
    "remit-purpose",
    "remit-decision-id",
];

/// The echoed headers present on one request, keyed by header name.
///
/// Serializes as a JSON object; absent headers are left out. Also an axum
/// extractor that never fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct SeenByUpstream(BTreeMap<&'static str, String>);

impl SeenByUpstream {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        Self(
            ECHOED_HEADERS
                .iter()
                .filter_map(|&name| {
                    let value = headers.get(name)?;
                    Some((name, String::from_utf8_lossy(value.as_bytes()).into_owned()))
                })
                .collect(),
        )
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(&name, value)| (name.to_owned(), value.clone().into()))
                .collect(),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SeenByUpstream {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn keeps_only_present_remit_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("remit-identity", HeaderValue::from_static("agent:triage"));
        headers.insert("remit-purpose", HeaderValue::from_static("support"));
        headers.insert("authorization", HeaderValue::from_static("Bearer secret"));

        let seen = SeenByUpstream::from_headers(&headers);

        assert_eq!(
            seen.to_json(),
            serde_json::json!({"remit-identity": "agent:triage", "remit-purpose": "support"})
        );
    }
}
