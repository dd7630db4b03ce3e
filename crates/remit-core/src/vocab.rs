//! The vocabulary of DESIGN.md as types: kind, class, authority, status, verdict, obligation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::IdentityId;

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name used on the wire, in Cedar context and in records.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// What a registered identity is.
    Kind {
        /// A long-running service's own account.
        ServiceAccount => "service_account",
        /// A job that runs on a schedule.
        ScheduledJob => "scheduled_job",
        /// A third-party or internal integration.
        Integration => "integration",
        /// Semi-autonomous assistance for a person who is present.
        Assistant => "assistant",
        /// Agentic execution authority: chains tools and actions.
        Agent => "agent",
    }
);

wire_enum!(
    /// How a request is treated.
    Class {
        /// Benign automation: jobs, integrations, service accounts.
        Automation => "automation",
        /// Assistance for a person who is present.
        Assistant => "assistant",
        /// Agentic execution authority.
        Agent => "agent",
        /// A human (from an external issuer).
        Human => "human",
        /// No registered identity.
        Unclassified => "unclassified",
    }
);

impl Kind {
    /// The class a request from an identity of this kind starts in.
    pub fn class(self) -> Class {
        match self {
            Kind::ServiceAccount | Kind::ScheduledJob | Kind::Integration => Class::Automation,
            Kind::Assistant => Class::Assistant,
            Kind::Agent => Class::Agent,
        }
    }
}

wire_enum!(
    /// Whose authority a request exercises.
    AuthorityKind {
        /// The identity's own grant.
        Own => "own",
        /// On behalf of a human; effective privilege is an intersection.
        Delegated => "delegated",
        /// No authority at all.
        None => "none",
    }
);

wire_enum!(
    /// An identity's administrative status.
    Status {
        /// May authenticate.
        Active => "active",
        /// Switched off by an operator.
        Suspended => "suspended",
        /// Switched off automatically after a signal (leaked credential, anomaly).
        Quarantined => "quarantined",
    }
);

wire_enum!(
    /// The outcome of a decision.
    Verdict {
        /// Forward the request, under the obligations.
        Allow => "allow",
        /// Refuse the request.
        Deny => "deny",
        /// Refuse until an approver confirms intent and authority.
        ApprovalRequired => "approval_required",
        /// Refuse for now: a rate cap is exhausted.
        RateLimited => "rate_limited",
    }
);

/// Whose authority a request exercises, with the human behind a delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    /// `own`, `delegated` or `none`.
    pub kind: AuthorityKind,
    /// The human a delegated request acts for.
    pub on_behalf_of: Option<String>,
    /// For delegated authority, the actors between the human and the request, the one
    /// presenting the token first (the token's `act`, then its nested `act`s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actors: Vec<String>,
}

impl Authority {
    /// No authority: unauthenticated or refused credentials.
    pub fn none() -> Self {
        Self {
            kind: AuthorityKind::None,
            on_behalf_of: None,
            actors: Vec::new(),
        }
    }

    /// The identity's own grant.
    pub fn own() -> Self {
        Self {
            kind: AuthorityKind::Own,
            on_behalf_of: None,
            actors: Vec::new(),
        }
    }

    /// Delegated authority: `actors` act for the human `on_behalf_of`.
    pub fn delegated(on_behalf_of: String, actors: Vec<String>) -> Self {
        Self {
            kind: AuthorityKind::Delegated,
            on_behalf_of: Some(on_behalf_of),
            actors,
        }
    }
}

/// A rate: `count` events per `per_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    /// How many requests.
    pub count: u32,
    /// In how many seconds.
    pub per_s: u32,
}

impl Rate {
    /// Parses `N/s`, `N/sec`, `N/min`, `N/minute`, `N/h`, `N/hour`, `N/day`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (n, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a rate: write it as `30/min`"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` is not a whole number of requests"))?;
        if count == 0 {
            return Err("a rate of zero requests would deny everything: remove the identity's boundary instead".into());
        }
        let per_s = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "day" => 86_400,
            other => {
                return Err(format!(
                    "`{other}` is not a rate unit: use s, min, hour or day"
                ));
            }
        };
        Ok(Self { count, per_s })
    }
}

/// What must happen for an allow to stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Obligation {
    /// Keep the response for review beside the decision record.
    LogOutput,
    /// Redact secrets and sensitive data in transit.
    Redact,
    /// Only non-mutating methods and non-destructive tools.
    ReadOnly,
    /// A rate cap applies to this request.
    Rate {
        /// The cap.
        #[serde(flatten)]
        rate: Rate,
        /// Where the cap came from: `identity` (the registry) or a policy id.
        source: String,
    },
    /// Results must be limited to an approved record set.
    RecordSet {
        /// The approved set's name.
        set: String,
        /// The values the permit approves (`@record_values`), for a set whose values come
        /// from policy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<Vec<String>>,
    },
    /// A human approval must be attached.
    Approval,
}

impl Obligation {
    /// The obligation's kind as written in policy annotations.
    pub fn kind(&self) -> &'static str {
        match self {
            Obligation::LogOutput => "log_output",
            Obligation::Redact => "redact",
            Obligation::ReadOnly => "read_only",
            Obligation::Rate { .. } => "rate",
            Obligation::RecordSet { .. } => "record_set",
            Obligation::Approval => "approval",
        }
    }
}

/// The principal a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A registered, active identity.
    Identity(IdentityId),
    /// No registered identity (no credential, or one that was refused).
    Unclassified,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_reject() {
        assert_eq!(
            Rate::parse("30/min"),
            Ok(Rate {
                count: 30,
                per_s: 60
            })
        );
        assert_eq!(Rate::parse("5 / s"), Ok(Rate { count: 5, per_s: 1 }));
        for bad in [
            "30",
            "0/min",
            "-1/min",
            "30/fortnight",
            "x/min",
            "99999999999/min",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_map_to_classes() {
        assert_eq!(Kind::ScheduledJob.class(), Class::Automation);
        assert_eq!(Kind::Agent.class(), Class::Agent);
        assert_eq!(Kind::Assistant.class(), Class::Assistant);
    }
}
