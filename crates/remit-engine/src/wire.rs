//! The decision API's wire format: `POST /v1/decide` bodies and `remit check` request files.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use remit_core::{RequestError, RequestFacts};

/// A header value: one string, or a list of strings for a repeated header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum HeaderValue {
    One(String),
    Many(Vec<String>),
}

/// Headers as written in JSON, keeping repeats: both a key written twice and a list value
/// count as a repeated header, so duplicates are seen, not silently merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireHeaders(Vec<(String, String)>);

impl<'de> Deserialize<'de> for WireHeaders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to strings or lists of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireHeaders, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, HeaderValue>()? {
                    if out.len() > remit_core::request::MAX_HEADERS {
                        return Err(de::Error::custom(format!(
                            "more than {} headers",
                            remit_core::request::MAX_HEADERS
                        )));
                    }
                    match v {
                        HeaderValue::One(s) => out.push((k, s)),
                        HeaderValue::Many(list) => {
                            out.extend(list.into_iter().map(|s| (k.clone(), s)))
                        }
                    }
                }
                Ok(WireHeaders(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// An HTTP-request-shaped JSON object, as `POST /v1/decide` and `remit check` take it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireRequest {
    /// The method.
    pub method: String,
    /// The request target: path and optional query.
    pub path: String,
    /// Headers.
    #[serde(default)]
    pub headers: WireHeaders,
    /// The body: a string is taken as is, any other JSON value as its serialisation.
    #[serde(default)]
    pub body: Option<Value>,
    /// The client's address.
    #[serde(default)]
    pub source_ip: Option<String>,
}

impl WireRequest {
    /// Parses a JSON request, naming line and column on error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("invalid request JSON: {e}"))
    }

    /// Turns the wire request into request facts.
    pub fn into_facts(self) -> Result<RequestFacts, RequestError> {
        let body = match self.body {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.into_bytes()),
            Some(v) => Some(serde_json::to_vec(&v).unwrap_or_default()),
        };
        let headers = self
            .headers
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()));
        RequestFacts::parse(
            &self.method,
            &self.path,
            headers,
            body,
            self.source_ip.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_kept_and_rejected() {
        let w = WireRequest::from_json(
            br#"{"method":"GET","path":"/","headers":{"Authorization":"Bearer a","Authorization":"Bearer b"}}"#,
        )
        .unwrap();
        assert_eq!(
            w.into_facts(),
            Err(RequestError::Duplicate("authorization".into()))
        );
        let w = WireRequest::from_json(
            br#"{"method":"GET","path":"/","headers":{"Remit-Purpose":["a","b"]}}"#,
        )
        .unwrap();
        assert_eq!(
            w.into_facts(),
            Err(RequestError::Duplicate("remit-purpose".into()))
        );
    }

    #[test]
    fn unknown_fields_and_bad_json_are_errors() {
        assert!(
            WireRequest::from_json(br#"{"method":"GET","path":"/","colour":1}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(WireRequest::from_json(b"{").is_err());
        assert!(
            WireRequest::from_json(br#"{"method":"GET"}"#)
                .unwrap_err()
                .contains("missing field `path`")
        );
        assert!(
            WireRequest::from_json(br#"{"method":"GET","path":"/","headers":{"a":1}}"#).is_err()
        );
    }
}
