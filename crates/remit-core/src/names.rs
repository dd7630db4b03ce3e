//! Validated names: identity ids, purposes, actions, resource types and credential ids.
//!
//! Each name is a newtype that can only be built by parsing, so a value that reaches the
//! decision core is already known to be short, printable and free of separators that could
//! confuse a log line, a Cedar entity id or a header.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest name remit accepts anywhere (identity ids, purposes, actions).
pub const MAX_NAME_LEN: usize = 128;

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}: {why}")]
pub struct NameError {
    /// What kind of name was expected.
    pub what: &'static str,
    /// The rejected input, shortened for display.
    pub value: String,
    /// What rule it broke.
    pub why: &'static str,
}

impl NameError {
    fn new(what: &'static str, value: &str, why: &'static str) -> Self {
        let value: String = value
            .chars()
            .take(64)
            .flat_map(char::escape_default)
            .collect();
        Self { what, value, why }
    }
}

/// Checks the shared name grammar: 1..=MAX_NAME_LEN bytes, first byte from `first`,
/// every byte from `rest`.
fn check(
    what: &'static str,
    s: &str,
    first: fn(u8) -> bool,
    rest: fn(u8) -> bool,
    rule: &'static str,
) -> Result<(), NameError> {
    let b = s.as_bytes();
    match b.first() {
        None => Err(NameError::new(what, s, "it is empty")),
        Some(_) if b.len() > MAX_NAME_LEN => {
            Err(NameError::new(what, s, "it is longer than 128 bytes"))
        }
        Some(&c) if !first(c) => Err(NameError::new(what, s, rule)),
        Some(_) if !b.iter().all(|&c| rest(c)) => Err(NameError::new(what, s, rule)),
        Some(_) => Ok(()),
    }
}

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn slug_byte(c: u8) -> bool {
    lower_alnum(c) || matches!(c, b'-' | b'_' | b'.')
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $first:expr, $rest:expr, $rule:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses a name, rejecting anything outside its grammar.
            pub fn parse(s: &str) -> Result<Self, NameError> {
                check($what, s, $first, $rest, $rule)?;
                Ok(Self(s.to_owned()))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A registered identity's id, e.g. `support-assistant`.
    IdentityId, "identity id", lower_alnum, slug_byte,
    "use lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit"
);
name_type!(
    /// A declared purpose, e.g. `case-summary`.
    Purpose, "purpose", lower_alnum, slug_byte,
    "use lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit"
);
name_type!(
    /// An action from the route table, e.g. `tickets.read`.
    ActionName, "action", |c: u8| c.is_ascii_lowercase(), slug_byte,
    "use lowercase letters, digits, `-`, `_` and `.`, starting with a letter"
);
name_type!(
    /// The accountable human or team behind an identity, e.g. `team-support`.
    Owner, "owner", lower_alnum, |c: u8| slug_byte(c) || c == b'@',
    "use lowercase letters, digits, `-`, `_`, `.` and `@`, starting with a letter or digit"
);
name_type!(
    /// A credential's public id (a fingerprint, never the secret).
    CredentialId, "credential id", |c: u8| c.is_ascii_alphanumeric(),
    |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'),
    "use letters, digits, `-`, `_`, `.` and `:`, starting with a letter or digit"
);
name_type!(
    /// A Cedar entity type for resources, e.g. `Ticket`.
    ResourceType, "resource type", |c: u8| c.is_ascii_uppercase(),
    |c: u8| c.is_ascii_alphanumeric() || c == b'_',
    "use a capitalised identifier such as `Ticket` (letters, digits and `_`)"
);

impl ActionName {
    /// The action every request that no route maps is given. It is sensitive and no
    /// boundary may contain it, so unmapped requests can only ever be denied.
    pub fn unmapped() -> Self {
        Self("unmapped".to_owned())
    }

    /// Whether this is the reserved action for unmapped requests.
    pub fn is_unmapped(&self) -> bool {
        self.0 == "unmapped"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_hostile_input() {
        for bad in [
            "",
            "Upper",
            "-lead",
            "a b",
            "a/b",
            "a\"b",
            "a\nb",
            "ä",
            &"a".repeat(129),
        ] {
            assert!(
                IdentityId::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(IdentityId::parse("support-assistant").is_ok());
        assert!(ActionName::parse("9x").is_err());
        assert!(ResourceType::parse("ticket").is_err());
        assert!(ResourceType::parse("Ticket").is_ok());
    }

    #[test]
    fn error_message_escapes_control_characters() {
        let e = Purpose::parse("a\u{1b}[31m").unwrap_err();
        assert!(!e.to_string().contains('\u{1b}'));
    }
}

/// Longest SPIFFE ID accepted (the SPIFFE ID standard's URI limit).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// A SPIFFE ID (`spiffe://trust-domain/path`) a peer presented, such as the URI SAN of an
/// mTLS client certificate that Envoy reports in ext_authz. It is recorded as a fact, and
/// an identity's `spiffe` credential names the SPIFFE ID that authenticates it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SpiffeId(String);

impl SpiffeId {
    /// Parses a SPIFFE ID: scheme `spiffe`, a trust domain of lower-case letters, digits,
    /// `.`, `-` and `_`, and a path of unreserved characters, with no query or fragment.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        const WHAT: &str = "SPIFFE ID";
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(NameError::new(WHAT, s, "it is longer than 2048 bytes"));
        }
        let Some(rest) = s.strip_prefix("spiffe://") else {
            return Err(NameError::new(
                WHAT,
                s,
                "it does not start with `spiffe://`",
            ));
        };
        let (domain, path) = rest.split_once('/').map_or((rest, ""), |(d, p)| (d, p));
        if !trust_domain_ok(domain) {
            return Err(NameError::new(WHAT, s, "its trust domain is not valid"));
        }
        let segment_ok = |seg: &str| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        };
        if rest.contains('/') && !path.split('/').all(segment_ok) {
            return Err(NameError::new(WHAT, s, "its path is not valid"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's name: what comes between `spiffe://` and the path.
    pub fn trust_domain(&self) -> &str {
        let rest = &self.0["spiffe://".len()..];
        rest.split_once('/').map_or(rest, |(d, _)| d)
    }
}

/// Longest trust domain name accepted (a DNS name's limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

fn trust_domain_ok(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_TRUST_DOMAIN_LEN
        && domain.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_')
        })
}

/// A SPIFFE trust domain's name (`example.org`): lower-case letters, digits, `.`, `-` and
/// `_`, at most [`MAX_TRUST_DOMAIN_LEN`] bytes; the part of a [`SpiffeId`] that chooses
/// whose keys vouch for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a trust domain name (no scheme, no path).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if trust_domain_ok(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::new(
                "trust domain",
                s,
                "a trust domain is 1 to 255 lower-case letters, digits, `.`, `-` or `_`",
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod spiffe_tests {
    use super::SpiffeId;

    #[test]
    fn spiffe_ids_parse_and_hostile_ones_do_not() {
        for ok in ["spiffe://example.org/ns/prod/sa/web", "spiffe://td"] {
            assert_eq!(SpiffeId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "https://example.org/x",
            "spiffe://",
            "spiffe://Example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org/a//b",
            "spiffe://example.org/../x",
            "spiffe://example.org/x?q=1",
            "spiffe://example.org/x\n",
            "spiffe://user@example.org/x",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SpiffeId::parse(&format!("spiffe://td/{}", "a".repeat(2048))).is_err());
    }

    #[test]
    fn a_spiffe_ids_trust_domain_is_what_precedes_its_path() {
        let id = SpiffeId::parse("spiffe://example.org/ns/prod").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(SpiffeId::parse("spiffe://td").unwrap().trust_domain(), "td");
        for ok in ["example.org", "a", "td_1-x.y"] {
            assert_eq!(super::TrustDomain::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Example.org",
            "spiffe://example.org",
            "example.org/x",
            "ex ample",
            "example.org:443",
            &"a".repeat(256),
        ] {
            assert!(super::TrustDomain::parse(bad).is_err(), "{bad:?}");
        }
    }
}
