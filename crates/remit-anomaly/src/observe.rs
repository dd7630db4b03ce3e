//! What the detectors see of one request: an [`Observation`], built from the decision and
//! what the front door knows (source address, `User-Agent`, delegation).

use std::fmt;
use std::net::IpAddr;

use remit_core::identity::Schedule;
use remit_core::{
    ActionName, Class, CredentialId, Decision, IdentityId, Kind, Purpose, ResourceType,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::set::Fingerprint;

/// Seconds since the Unix epoch: the detectors' only clock, passed in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixSeconds(pub u64);

impl UnixSeconds {
    /// From a time; times before 1970 are 0.
    pub fn from_time(t: OffsetDateTime) -> Self {
        Self(u64::try_from(t.unix_timestamp()).unwrap_or(0))
    }

    /// Seconds from `earlier` to `self`, 0 if the clock went backwards.
    pub fn since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The hour of the day (UTC), 0–23.
    pub fn hour_of_day(self) -> usize {
        // Below 24, so the cast cannot truncate.
        ((self.0 / 3600) % 24) as usize
    }

    /// The minute index since the epoch.
    pub fn minute(self) -> u64 {
        self.0 / 60
    }

    /// As RFC 3339 (UTC).
    pub fn rfc3339(self) -> String {
        i64::try_from(self.0)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

/// The source network of a request: its IPv4 /24 or IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    prefix: IpAddr,
}

impl Network {
    /// The /24 or /64 holding `ip`.
    pub fn of(ip: IpAddr) -> Self {
        let prefix = match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                IpAddr::from([a, b, c, 0])
            }
            IpAddr::V6(v6) => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::from(s)
            }
        };
        Self { prefix }
    }

    /// Its fingerprint in a baseline.
    pub fn fingerprint(self) -> Fingerprint {
        match self.prefix {
            IpAddr::V4(v4) => Fingerprint::of(4, &v4.octets()[..3]),
            IpAddr::V6(v6) => Fingerprint::of(6, &v6.octets()[..8]),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            IpAddr::V4(_) => write!(f, "{}/24", self.prefix),
            IpAddr::V6(_) => write!(f, "{}/64", self.prefix),
        }
    }
}

/// Longest client family name kept.
pub const MAX_CLIENT_FAMILY: usize = 32;

/// The client software family from a `User-Agent`: its first product token's name
/// (`python-requests/2.32 CPython` → `python-requests`), lowercased; only letters, digits,
/// `-`, `_` and `.`, at most [`MAX_CLIENT_FAMILY`] bytes. An empty or unreadable
/// `User-Agent` is the family `none`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientFamily(String);

impl ClientFamily {
    /// The family of a `User-Agent` value.
    pub fn of(user_agent: &str) -> Self {
        let name: String = user_agent
            .trim_start()
            .split(['/', ' ', '('])
            .next()
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(MAX_CLIENT_FAMILY)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if name.is_empty() {
            Self("none".into())
        } else {
            Self(name)
        }
    }

    /// The family's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its fingerprint in a baseline.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(7, self.0.as_bytes())
    }
}

/// The fingerprint domains of the other dimensions.
pub(crate) mod domain {
    pub const ACTION: u8 = 1;
    pub const TOOL: u8 = 2;
    pub const RESOURCE_TYPE: u8 = 3;
    pub const PURPOSE: u8 = 5;
    pub const HUMAN: u8 = 8;
    pub const CREDENTIAL: u8 = 9;
}

/// One request as the detectors see it. Only authenticated requests (an identity) are
/// observed: unclassified traffic has no baseline.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// When.
    pub time: UnixSeconds,
    /// Who.
    pub identity: &'a IdentityId,
    /// With which credential.
    pub credential: Option<&'a CredentialId>,
    /// What the identity is.
    pub kind: Kind,
    /// How the request was treated.
    pub class: Class,
    /// The identity's declared schedule, for jobs.
    pub schedule: Option<Schedule>,
    /// The action asked for.
    pub action: &'a ActionName,
    /// Whether the action or resource is sensitive.
    pub sensitive: bool,
    /// The MCP tool, for `tools/call`.
    pub tool: Option<&'a str>,
    /// The resource kind.
    pub resource_type: &'a ResourceType,
    /// The declared purpose.
    pub purpose: Option<&'a Purpose>,
    /// The client's network, when known.
    pub network: Option<Network>,
    /// The client's software family, when a `User-Agent` was sent.
    pub client: Option<ClientFamily>,
    /// The human the request acts for, under delegated authority.
    pub on_behalf_of: Option<&'a str>,
    /// Actors in the delegation chain (0 for the identity's own authority).
    pub chain_depth: u8,
}

/// What the front door knows of a request beyond its decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct Edge<'a> {
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// The delegating human, when the credential carries one the decision does not (the
    /// token layer's `act` claim, until the engine reports it in `authority`).
    pub on_behalf_of: Option<&'a str>,
    /// Actors in the delegation chain.
    pub chain_depth: u8,
}

impl<'a> Observation<'a> {
    /// The observation of a decided request, or `None` when no identity was authenticated.
    /// The decision's own `authority.on_behalf_of` wins over the edge's.
    pub fn from_decision(
        decision: &'a Decision,
        identity: &'a remit_core::Identity,
        tool: Option<&'a str>,
        edge: Edge<'a>,
        now: OffsetDateTime,
    ) -> Option<Self> {
        let id = decision.identity.as_ref()?;
        if *id != identity.id {
            return None;
        }
        Some(Self {
            time: UnixSeconds::from_time(now),
            identity: id,
            credential: decision.credential_id.as_ref(),
            kind: identity.kind,
            class: decision.class,
            schedule: identity.schedule,
            action: &decision.action,
            sensitive: decision.sensitive,
            tool,
            resource_type: &decision.resource.rtype,
            purpose: decision.purpose.as_ref(),
            network: edge.source_ip.map(Network::of),
            client: edge.user_agent.map(ClientFamily::of),
            on_behalf_of: decision
                .authority
                .on_behalf_of
                .as_deref()
                .or(edge.on_behalf_of),
            chain_depth: edge.chain_depth,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        let cases = [
            ("203.0.113.77", "203.0.113.0/24"),
            ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ];
        for (ip, net) in cases {
            assert_eq!(Network::of(ip.parse().unwrap()).to_string(), net);
        }
        assert_eq!(
            Network::of("10.0.0.1".parse().unwrap()).fingerprint(),
            Network::of("10.0.0.200".parse().unwrap()).fingerprint()
        );
        assert_ne!(
            Network::of("10.0.0.1".parse().unwrap()).fingerprint(),
            Network::of("10.0.1.1".parse().unwrap()).fingerprint()
        );
    }

    #[test]
    fn client_families() {
        let cases = [
            ("python-requests/2.32.3", "python-requests"),
            ("Mozilla/5.0 (X11; Linux)", "mozilla"),
            ("curl/8.5.0", "curl"),
            ("", "none"),
            ("  (weird)", "none"),
            ("codegen-runner", "codegen-runner"),
            ("x\u{1b}[31m/1", "x"),
        ];
        for (ua, family) in cases {
            assert_eq!(ClientFamily::of(ua).as_str(), family, "{ua:?}");
        }
        assert_eq!(
            ClientFamily::of(&"a".repeat(500)).as_str().len(),
            MAX_CLIENT_FAMILY
        );
    }
}
