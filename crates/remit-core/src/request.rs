//! Request facts: one HTTP-shaped request, parsed once at the edge into typed values.
//!
//! Every front door (decision API, proxy, ext_authz) builds a [`RequestFacts`] through
//! [`RequestFacts::parse`], so header rules are the same whichever door a request used.

use std::fmt;
use std::net::IpAddr;

use crate::names::{Purpose, SpiffeId};
use crate::path::{CanonicalPath, PathError};

/// Most headers accepted on one request.
pub const MAX_HEADERS: usize = 128;
/// Longest header name.
pub const MAX_HEADER_NAME: usize = 256;
/// Longest header value.
pub const MAX_HEADER_VALUE: usize = 16 * 1024;
/// Longest bearer credential.
pub const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// Headers that must appear at most once: a second copy could be read by remit and the
/// upstream differently.
pub const SINGLETON_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "remit-purpose",
    "remit-approval",
    "content-length",
];

/// Why a request could not be parsed into facts (a 400, not a decision).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The method is not an HTTP token.
    #[error("`{0}` is not an HTTP method")]
    BadMethod(String),
    /// The path cannot be read one way.
    #[error("bad path: {0}")]
    Path(#[from] PathError),
    /// A header that must be unique was repeated.
    #[error("header `{0}` appears more than once")]
    Duplicate(String),
    /// Too many headers.
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// A header name is not a token.
    #[error("`{0}` is not a valid header name")]
    BadHeaderName(String),
    /// A header value remit reads is malformed.
    #[error("header `{name}`: {why}")]
    BadHeaderValue {
        /// Lower-case header name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// Both `Content-Length` and `Transfer-Encoding`: two framings, a smuggling shape.
    #[error("`Content-Length` and `Transfer-Encoding` together are ambiguous framing")]
    ConflictingFraming,
    /// The source address is not an IP address.
    #[error("`{0}` is not an IP address")]
    BadSourceIp(String),
}

/// A bearer credential as presented. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

impl BearerToken {
    /// Parses the value of an `Authorization` header: `Bearer <b64token>` (RFC 6750 §2.1).
    pub fn from_authorization(value: &str) -> Result<Self, String> {
        let (scheme, token) = value
            .split_once(' ')
            .ok_or_else(|| "expected `Bearer <credential>`".to_owned())?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("only the `Bearer` scheme is accepted".into());
        }
        let token = token.trim_matches(' ');
        let body = token.trim_end_matches('=');
        if body.is_empty()
            || token.len() > MAX_CREDENTIAL_LEN
            || !body.bytes().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
            })
        {
            return Err(
                "the credential is empty, too long or has characters a bearer token cannot have"
                    .into(),
            );
        }
        Ok(Self(token.to_owned()))
    }

    /// The secret. Callers hash it; they never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

/// The facts of one request that every stage of the pipeline reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFacts {
    /// The method, exactly as sent.
    pub method: String,
    /// The canonical path.
    pub path: CanonicalPath,
    /// The bearer credential, if one was presented.
    pub credential: Option<BearerToken>,
    /// The purpose declared in `Remit-Purpose`.
    pub purpose: Option<Purpose>,
    /// An approval reference from `Remit-Approval`.
    pub approval: Option<String>,
    /// The request body, if the caller has it.
    pub body: Option<Vec<u8>>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// The SPIFFE ID of the peer that sent the request, when a front door verified it (Envoy
    /// ext_authz from a trusted proxy reports the mTLS peer's URI SAN). Recorded, and it
    /// authenticates the identity whose `spiffe` credential holds it. Only a door that
    /// verified the peer sets it; no client-supplied header or body field ever does.
    pub peer_spiffe_id: Option<SpiffeId>,
    /// The body's `Content-Encoding`, lowercased, unless `identity`.
    pub content_encoding: Option<String>,
    /// The headers that should not carry secrets, kept for the secret scan.
    pub scanned: ScannedHeaders,
    /// The first `User-Agent` value (lossy UTF-8, at most [`MAX_USER_AGENT`] bytes of it),
    /// for the behaviour baselines' client software.
    pub user_agent: Option<String>,
}

/// Header values a secret scan looks at: every header except those that carry credentials
/// by design (`Authorization`, `Proxy-Authorization`, `Cookie`) and values too short to
/// hold one, kept as one text (each value followed by a newline) so one scan reads them all.
/// `Debug` shows names only, since a value may be a leaked secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ScannedHeaders {
    text: Vec<u8>,
    /// Each header's lowercase name and the span of its value in `text`.
    spans: Vec<(String, std::ops::Range<usize>)>,
}

impl std::fmt::Debug for ScannedHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.spans.iter().map(|(k, _)| k))
            .finish()
    }
}

impl ScannedHeaders {
    fn push(&mut self, name: String, value: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(value);
        self.spans.push((name, start..self.text.len()));
        self.text.push(b'\n');
    }

    /// Every kept value, one per line.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The name of the header whose value holds offset `at` of [`Self::text`].
    pub fn name_at(&self, at: usize) -> Option<&str> {
        self.spans
            .iter()
            .find(|(_, r)| r.contains(&at))
            .map(|(k, _)| k.as_str())
    }
}

/// Headers whose values carry credentials by design: a secret there is not a leak.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Header values shorter than this are not kept for scanning: no secret is that short.
pub const MIN_SCANNED_HEADER: usize = 16;
/// Bytes of a `User-Agent` value kept.
pub const MAX_USER_AGENT: usize = 256;

impl RequestFacts {
    /// The headers a secret scan looks at, as lowercase name and value.
    pub fn scanned_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.scanned
            .spans
            .iter()
            .map(|(k, r)| (k.as_str(), &self.scanned.text[r.clone()]))
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

fn utf8<'a>(name: &str, v: &'a [u8]) -> Result<&'a str, RequestError> {
    std::str::from_utf8(v).map_err(|_| RequestError::BadHeaderValue {
        name: name.to_owned(),
        why: "not valid UTF-8".into(),
    })
}

impl RequestFacts {
    /// Parses a request from its parts. Header names are matched case-insensitively.
    pub fn parse<'a>(
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        body: Option<Vec<u8>>,
        source_ip: Option<&str>,
    ) -> Result<Self, RequestError> {
        if !is_token(method) || method.len() > 32 {
            return Err(RequestError::BadMethod(
                method
                    .chars()
                    .take(32)
                    .flat_map(char::escape_default)
                    .collect(),
            ));
        }
        // Methods are case-sensitive (RFC 9110 §9.1): `get` is not `GET`, and what is
        // authorised is what is forwarded, so the method is kept exactly as sent.
        let method = method.to_owned();
        let path = CanonicalPath::parse(target)?;
        let mut seen = [false; SINGLETON_HEADERS.len()];
        let (mut credential, mut purpose, mut approval) = (None, None, None);
        let mut transfer_encoding = false;
        let mut content_encoding = None;
        let mut scanned = ScannedHeaders::default();
        let mut user_agent = None;
        for (count, (name, value)) in headers.into_iter().enumerate() {
            if count >= MAX_HEADERS {
                return Err(RequestError::TooManyHeaders);
            }
            if name.len() > MAX_HEADER_NAME || !is_token(name) {
                return Err(RequestError::BadHeaderName(
                    name.chars()
                        .take(64)
                        .flat_map(char::escape_default)
                        .collect(),
                ));
            }
            let lower = name.to_ascii_lowercase();
            if value.len() > MAX_HEADER_VALUE {
                return Err(RequestError::BadHeaderValue {
                    name: lower,
                    why: format!("longer than {MAX_HEADER_VALUE} bytes"),
                });
            }
            if let Some(i) = SINGLETON_HEADERS.iter().position(|h| *h == lower)
                && std::mem::replace(&mut seen[i], true)
            {
                return Err(RequestError::Duplicate(lower));
            }
            if value.len() >= MIN_SCANNED_HEADER && !CREDENTIAL_HEADERS.contains(&lower.as_str()) {
                scanned.push(lower.clone(), value);
            }
            match lower.as_str() {
                "user-agent" if user_agent.is_none() => {
                    let kept = &value[..value.len().min(MAX_USER_AGENT)];
                    user_agent = Some(String::from_utf8_lossy(kept).into_owned());
                }
                "transfer-encoding" => transfer_encoding = true,
                "content-encoding" => {
                    let v = utf8(&lower, value)?.trim().to_ascii_lowercase();
                    if v != "identity" {
                        content_encoding = Some(v);
                    }
                }
                "authorization" => {
                    let v = utf8(&lower, value)?;
                    credential = Some(BearerToken::from_authorization(v).map_err(|why| {
                        RequestError::BadHeaderValue {
                            name: lower.clone(),
                            why,
                        }
                    })?);
                }
                "remit-purpose" => {
                    let v = utf8(&lower, value)?.trim();
                    purpose =
                        Some(Purpose::parse(v).map_err(|e| RequestError::BadHeaderValue {
                            name: lower.clone(),
                            why: e.to_string(),
                        })?);
                }
                "remit-approval" => {
                    let v = utf8(&lower, value)?.trim();
                    if v.is_empty()
                        || v.len() > 128
                        || !v
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                    {
                        return Err(RequestError::BadHeaderValue {
                            name: lower,
                            why: "not an approval id".into(),
                        });
                    }
                    approval = Some(v.to_owned());
                }
                _ => {}
            }
        }
        let content_length = SINGLETON_HEADERS
            .iter()
            .position(|h| *h == "content-length")
            .is_some_and(|i| seen[i]);
        if transfer_encoding && content_length {
            return Err(RequestError::ConflictingFraming);
        }
        let source_ip = match source_ip {
            None => None,
            Some(s) => Some(
                s.parse()
                    .map_err(|_| RequestError::BadSourceIp(s.chars().take(64).collect()))?,
            ),
        };
        Ok(Self {
            method,
            path,
            credential,
            purpose,
            approval,
            body,
            source_ip,
            peer_spiffe_id: None,
            content_encoding,
            scanned,
            user_agent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(headers: &[(&str, &str)]) -> Result<RequestFacts, RequestError> {
        RequestFacts::parse(
            "get",
            "/x",
            headers.iter().map(|(k, v)| (*k, v.as_bytes())),
            None,
            None,
        )
    }

    #[test]
    fn reads_remit_headers() {
        let f = parse(&[
            ("Authorization", "Bearer rk_abc"),
            ("Remit-Purpose", "case-summary"),
        ])
        .unwrap();
        assert_eq!(f.method, "get", "methods keep their case");
        assert_eq!(f.credential.unwrap().expose_secret(), "rk_abc");
        assert_eq!(f.purpose.unwrap().as_str(), "case-summary");
    }

    #[test]
    fn repeated_singletons_are_rejected_case_insensitively() {
        for h in ["Authorization", "Remit-Purpose", "Host", "Content-Length"] {
            let v = if h == "Authorization" {
                "Bearer a"
            } else if h == "Remit-Purpose" {
                "p"
            } else {
                "1"
            };
            let e = parse(&[(h, v), (&h.to_uppercase(), v)]).unwrap_err();
            assert_eq!(e, RequestError::Duplicate(h.to_ascii_lowercase()));
        }
    }

    #[test]
    fn malformed_values_are_rejected() {
        assert!(matches!(
            parse(&[("Authorization", "Basic Zm9v")]),
            Err(RequestError::BadHeaderValue { .. })
        ));
        assert!(matches!(
            parse(&[("Authorization", "Bearer ")]),
            Err(RequestError::BadHeaderValue { .. })
        ));
        assert!(matches!(
            parse(&[("Authorization", "Bearer a\"b")]),
            Err(RequestError::BadHeaderValue { .. })
        ));
        assert!(matches!(
            parse(&[("Remit-Purpose", "Not A Purpose")]),
            Err(RequestError::BadHeaderValue { .. })
        ));
        assert!(matches!(
            parse(&[("Bad Name", "x")]),
            Err(RequestError::BadHeaderName(_))
        ));
        let bad_utf8 =
            RequestFacts::parse("GET", "/", [("remit-purpose", &b"\xff"[..])], None, None);
        assert!(matches!(bad_utf8, Err(RequestError::BadHeaderValue { .. })));
        let many: Vec<(String, String)> = (0..=MAX_HEADERS)
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        let e = RequestFacts::parse(
            "GET",
            "/",
            many.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
            None,
            None,
        );
        assert_eq!(e, Err(RequestError::TooManyHeaders));
        assert!(matches!(
            RequestFacts::parse("G T", "/", [], None, None),
            Err(RequestError::BadMethod(_))
        ));
        assert!(matches!(
            RequestFacts::parse("GET", "/", [], None, Some("nope")),
            Err(RequestError::BadSourceIp(_))
        ));
    }

    #[test]
    fn conflicting_framing_is_rejected() {
        let e = parse(&[("Content-Length", "4"), ("Transfer-Encoding", "chunked")]);
        assert_eq!(e, Err(RequestError::ConflictingFraming));
    }

    #[test]
    fn debug_never_shows_the_credential() {
        let f = parse(&[("Authorization", "Bearer rk_secret_value")]).unwrap();
        assert!(!format!("{f:?}").contains("rk_secret_value"));
    }
}
