//! Canonical request paths: decoded and normalised once, or rejected.
//!
//! Architecture Invariant: the path that was authorised is exactly the path that is forwarded.
//! A [`CanonicalPath`] holds both forms of one parse: `decoded` (what routes are matched on)
//! and `encoded` (what a proxy forwards and a record shows). Both come from the same segment
//! list, so they cannot disagree. Anything that could be read two ways is rejected instead of
//! guessed: encoded `/`, `\` or `.`, control bytes, `;` parameters, fragments, invalid
//! percent-encoding or UTF-8, and `..` above the root.

use std::fmt;

/// Longest request target (path and query) accepted.
pub const MAX_TARGET_LEN: usize = 8 * 1024;
/// Most path segments accepted.
pub const MAX_SEGMENTS: usize = 128;

/// Why a request target was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The target is empty or does not start with `/`.
    #[error("the path must start with `/`")]
    NotAbsolute,
    /// The target is too long.
    #[error("the path is longer than {MAX_TARGET_LEN} bytes")]
    TooLong,
    /// Too many segments.
    #[error("the path has more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    /// A fragment (`#`) was sent; fragments never belong in a request.
    #[error("the path contains a fragment (`#`)")]
    Fragment,
    /// A raw byte that may not appear in a request target.
    #[error("the path contains a byte that must be percent-encoded or is not allowed: `{0}`")]
    RawByte(String),
    /// `;` parameters are read differently by different servers.
    #[error("the path contains `;` parameters, which servers read differently")]
    Semicolon,
    /// A `%` not followed by two hex digits.
    #[error("the path has invalid percent-encoding")]
    BadPercent,
    /// An encoded byte that changes how the path is split or normalised.
    #[error("the path encodes `{0}`, which would be ambiguous once decoded")]
    AmbiguousEncoding(&'static str),
    /// An encoded control byte.
    #[error("the path encodes a control byte")]
    EncodedControl,
    /// The decoded bytes are not UTF-8.
    #[error("the decoded path is not valid UTF-8")]
    InvalidUtf8,
    /// `..` would climb above `/`.
    #[error("the path climbs above the root with `..`")]
    AboveRoot,
}

/// A request path decoded and normalised once, with its query kept apart.
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    decoded: String,
    encoded: String,
    query: Option<String>,
}

impl fmt::Debug for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanonicalPath({:?})", self.encoded)
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encoded)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Bytes that may stand raw in a canonical path segment (RFC 3986 pchar without `;`, `%`).
fn is_raw_pchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else {
                return Err(PathError::BadPercent);
            };
            let (Some(h), Some(l)) = (hex_val(h), hex_val(l)) else {
                return Err(PathError::BadPercent);
            };
            let v = h << 4 | l;
            match v {
                b'/' => return Err(PathError::AmbiguousEncoding("/")),
                b'\\' => return Err(PathError::AmbiguousEncoding("\\")),
                b'.' => return Err(PathError::AmbiguousEncoding(".")),
                0..=0x1f | 0x7f => return Err(PathError::EncodedControl),
                _ => out.push(v),
            }
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)
}

fn encode_segment(seg: &str, out: &mut String) {
    use fmt::Write;
    for &c in seg.as_bytes() {
        if is_raw_pchar(c) {
            out.push(c as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{c:02X}");
        }
    }
}

impl CanonicalPath {
    /// Parses a request target (`/path?query`), decoding and normalising the path once.
    pub fn parse(target: &str) -> Result<Self, PathError> {
        if target.len() > MAX_TARGET_LEN {
            return Err(PathError::TooLong);
        }
        if !target.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        if let Some(bad) = target.bytes().find(|c| !(0x21..=0x7e).contains(c)) {
            return Err(PathError::RawByte(
                char::from(bad).escape_default().to_string(),
            ));
        }
        if target.contains('#') {
            return Err(PathError::Fragment);
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        if path.contains('\\') {
            return Err(PathError::RawByte("\\\\".into()));
        }
        if path.contains(';') {
            return Err(PathError::Semicolon);
        }
        let trailing_slash = path.len() > 1 && path.ends_with('/');
        let mut segments: Vec<String> = Vec::new();
        let mut count = 0usize;
        for raw in path.split('/').filter(|s| !s.is_empty()) {
            count += 1;
            if count > MAX_SEGMENTS {
                return Err(PathError::TooManySegments);
            }
            match raw {
                "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::AboveRoot);
                    }
                }
                _ => segments.push(decode_segment(raw)?),
            }
        }
        let mut decoded = String::with_capacity(path.len());
        let mut encoded = String::with_capacity(path.len());
        for seg in &segments {
            decoded.push('/');
            decoded.push_str(seg);
            encoded.push('/');
            encode_segment(seg, &mut encoded);
        }
        if segments.is_empty() || trailing_slash {
            decoded.push('/');
            encoded.push('/');
        }
        Ok(Self {
            decoded,
            encoded,
            query,
        })
    }

    /// The decoded path routes are matched on.
    pub fn decoded(&self) -> &str {
        &self.decoded
    }

    /// The canonical encoded path: what is forwarded and recorded.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// The raw query string, if any (not part of authorisation today).
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dots_and_slashes() {
        let p = CanonicalPath::parse("//tickets/./1/../2//history?x=1").unwrap();
        assert_eq!(p.decoded(), "/tickets/2/history");
        assert_eq!(p.encoded(), "/tickets/2/history");
        assert_eq!(p.query(), Some("x=1"));
        assert_eq!(CanonicalPath::parse("/").unwrap().encoded(), "/");
        assert_eq!(CanonicalPath::parse("/a/").unwrap().encoded(), "/a/");
    }

    #[test]
    fn decoded_and_encoded_forms_agree() {
        let p = CanonicalPath::parse("/tickets/a%20b%c3%a9").unwrap();
        assert_eq!(p.decoded(), "/tickets/a bé");
        assert_eq!(p.encoded(), "/tickets/a%20b%C3%A9");
        let again = CanonicalPath::parse(p.encoded()).unwrap();
        assert_eq!(again, p, "the canonical form is a fixed point");
    }

    #[test]
    fn rejects_what_cannot_be_read_one_way() {
        let cases = [
            ("", PathError::NotAbsolute),
            ("tickets", PathError::NotAbsolute),
            ("/a%2fb", PathError::AmbiguousEncoding("/")),
            ("/a%2Fb", PathError::AmbiguousEncoding("/")),
            ("/a%5cb", PathError::AmbiguousEncoding("\\")),
            ("/a/%2e%2e/b", PathError::AmbiguousEncoding(".")),
            ("/a%00", PathError::EncodedControl),
            ("/a%0d%0a", PathError::EncodedControl),
            ("/a%zz", PathError::BadPercent),
            ("/a%2", PathError::BadPercent),
            ("/a%ff", PathError::InvalidUtf8),
            ("/a;jsessionid=1", PathError::Semicolon),
            ("/a#frag", PathError::Fragment),
            ("/..", PathError::AboveRoot),
            ("/a/../../b", PathError::AboveRoot),
        ];
        for (input, want) in cases {
            assert_eq!(CanonicalPath::parse(input), Err(want), "{input:?}");
        }
        assert!(matches!(
            CanonicalPath::parse("/a b"),
            Err(PathError::RawByte(_))
        ));
        assert!(matches!(
            CanonicalPath::parse("/a\\b"),
            Err(PathError::RawByte(_))
        ));
        assert!(matches!(
            CanonicalPath::parse("/é"),
            Err(PathError::RawByte(_))
        ));
        assert_eq!(
            CanonicalPath::parse(&format!("/{}", "a".repeat(MAX_TARGET_LEN))),
            Err(PathError::TooLong)
        );
        assert_eq!(
            CanonicalPath::parse(&"/a".repeat(MAX_SEGMENTS + 1)),
            Err(PathError::TooManySegments)
        );
    }
}
