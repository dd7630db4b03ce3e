//! The identity registry: registered non-human principals and what they may ever do.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;
use time::OffsetDateTime;

use crate::names::{ActionName, CredentialId, IdentityId, Owner, Purpose};
use crate::vocab::{Kind, Rate, Status};

/// An API key as the registry stores it: a public id and the SHA-256 of the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyCredential {
    /// The credential's public id, written to records.
    pub id: CredentialId,
    /// SHA-256 of the key. The key itself is never stored.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for ApiKeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCredential")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The most an identity may ever do: a ceiling no policy can lift.
///
/// Entries are exact action names or prefixes ending in `*` (`tickets.*`). The reserved
/// `unmapped` action is never inside a boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boundary {
    exact: BTreeSet<ActionName>,
    prefixes: Vec<String>,
}

impl Boundary {
    /// Builds a boundary from parsed entries.
    pub fn new(exact: BTreeSet<ActionName>, prefixes: Vec<String>) -> Self {
        Self { exact, prefixes }
    }

    /// Whether `action` lies inside the boundary.
    pub fn allows(&self, action: &ActionName) -> bool {
        !action.is_unmapped()
            && (self.exact.contains(action)
                || self
                    .prefixes
                    .iter()
                    .any(|p| action.as_str().starts_with(p.as_str())))
    }

    /// The exact entries.
    pub fn exact(&self) -> impl Iterator<Item = &ActionName> {
        self.exact.iter()
    }

    /// The prefix entries, without their `*`.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.prefixes.iter().map(String::as_str)
    }
}

/// When a scheduled job is expected to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Once every `seconds`.
    Every {
        /// The period in seconds.
        seconds: u32,
    },
}

impl Schedule {
    /// Parses `hourly`, `daily`, or `every N(s|m|h)`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let seconds = match s.trim() {
            "hourly" => 3600,
            "daily" => 86_400,
            other => {
                let spec = other
                    .strip_prefix("every ")
                    .ok_or_else(|| {
                        format!("`{other}` is not a schedule: use `hourly`, `daily` or `every 15m`")
                    })?
                    .trim();
                let (n, mult) = match spec.char_indices().last() {
                    Some((i, 's')) => (&spec[..i], 1),
                    Some((i, 'm')) => (&spec[..i], 60),
                    Some((i, 'h')) => (&spec[..i], 3600),
                    _ => return Err(format!("`{spec}` needs a unit: s, m or h")),
                };
                let n: u32 = n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a whole number"))?;
                n.checked_mul(mult)
                    .filter(|s| (60..=7 * 86_400).contains(s))
                    .ok_or_else(|| {
                        "a schedule's period must be between 1 minute and 7 days".to_owned()
                    })?
            }
        };
        Ok(Self::Every { seconds })
    }
}

/// Per-identity limits from the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// The identity's overall rate cap.
    pub rate: Option<Rate>,
    /// A cap for each purpose it declares, apart: one purpose's flood leaves the others
    /// their budget.
    pub per_purpose: Option<Rate>,
    /// A cap for each action (or MCP tool) it performs, apart.
    pub per_action: Option<Rate>,
    /// The longest lifetime of a token remit issues to it, in seconds.
    pub token_ttl_s: Option<u32>,
}

/// Budgets per class (`[budgets]`): every identity of a class shares its class's budget,
/// and no class spends another's, so a flood by batch jobs (`automation`) leaves
/// interactive assistants theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassBudgets(Vec<(crate::vocab::Class, Rate)>);

impl ClassBudgets {
    /// Budgets for the classes listed (each at most once; the parser checks).
    pub fn new(budgets: Vec<(crate::vocab::Class, Rate)>) -> Self {
        Self(budgets)
    }

    /// The budget of `class`, if it has one.
    pub fn get(&self, class: crate::vocab::Class) -> Option<Rate> {
        self.0.iter().find(|(c, _)| *c == class).map(|(_, r)| *r)
    }

    /// Every class with a budget.
    pub fn iter(&self) -> impl Iterator<Item = (crate::vocab::Class, Rate)> + '_ {
        self.0.iter().copied()
    }
}

/// A registered non-human principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The identity's id.
    pub id: IdentityId,
    /// What it is.
    pub kind: Kind,
    /// The accountable human or team.
    pub owner: Owner,
    /// The purposes it may declare.
    pub purposes: BTreeSet<Purpose>,
    /// The most it may ever do.
    pub boundary: Boundary,
    /// Its API keys (hashed).
    pub credentials: Vec<ApiKeyCredential>,
    /// Its limits.
    pub limits: Limits,
    /// When a scheduled job is expected to run.
    pub schedule: Option<Schedule>,
    /// Networks it may call from; empty means any.
    pub origins: Vec<IpNet>,
    /// When it stops being valid.
    pub expires: Option<OffsetDateTime>,
    /// Active, suspended or quarantined.
    pub status: Status,
    /// Never performs a write method or a destructive tool, whatever policy says.
    pub read_only: bool,
    /// Purposes under which it is read-only.
    pub read_only_purposes: BTreeSet<Purpose>,
}

impl Identity {
    /// Whether a request under `purpose` is limited to reads.
    pub fn is_read_only(&self, purpose: Option<&Purpose>) -> bool {
        self.read_only || purpose.is_some_and(|p| self.read_only_purposes.contains(p))
    }
}

impl Identity {
    /// Why this identity may not act at `now`, if it may not.
    pub fn inactive_reason(&self, now: OffsetDateTime) -> Option<String> {
        match self.status {
            Status::Suspended => return Some(format!("identity `{}` is suspended", self.id)),
            Status::Quarantined => return Some(format!("identity `{}` is quarantined", self.id)),
            Status::Active => {}
        }
        match self.expires {
            Some(t) if t <= now => Some(format!("identity `{}` expired", self.id)),
            _ => None,
        }
    }
}

/// All registered identities, indexed by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    identities: Vec<Identity>,
    index: HashMap<IdentityId, usize>,
}

impl Registry {
    /// Builds a registry; the caller has already rejected duplicate ids.
    pub fn new(identities: Vec<Identity>) -> Self {
        let index = identities
            .iter()
            .enumerate()
            .map(|(i, id)| (id.id.clone(), i))
            .collect();
        Self { identities, index }
    }

    /// Looks an identity up by id.
    pub fn get(&self, id: &IdentityId) -> Option<&Identity> {
        self.index.get(id).map(|&i| &self.identities[i])
    }

    /// The position of `identity` in the registry, when it is one of the registry's own
    /// (what [`Registry::get`] or authentication returned). Computed from the addresses,
    /// so finding an identity's per-identity state (its rate limiters) costs no second
    /// lookup by id.
    pub fn slot_of(&self, identity: &Identity) -> Option<usize> {
        let base = self.identities.as_ptr() as usize;
        let at = std::ptr::from_ref(identity) as usize;
        let i = at.checked_sub(base)? / std::mem::size_of::<Identity>().max(1);
        self.identities
            .get(i)
            .filter(|found| std::ptr::eq(*found, identity))
            .map(|_| i)
    }

    /// Every identity, in configuration order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Identity> {
        self.identities.iter()
    }

    /// How many identities are registered.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether no identity is registered.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            Schedule::parse("hourly"),
            Ok(Schedule::Every { seconds: 3600 })
        );
        assert_eq!(
            Schedule::parse("every 15m"),
            Ok(Schedule::Every { seconds: 900 })
        );
        for bad in [
            "weekly-ish",
            "every",
            "every 5",
            "every 1s",
            "every 9999999999h",
            "every 30d",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn boundary_never_contains_unmapped() {
        let b = Boundary::new(BTreeSet::new(), vec![String::new()]);
        assert!(!b.allows(&ActionName::unmapped()));
        assert!(b.allows(&ActionName::parse("tickets.read").unwrap()));
    }
}
