//! OAuth scopes as sets of actions: exact action names and prefixes written `tickets.*`,
//! the same language as an identity's boundary, so scopes and boundaries intersect exactly.

use std::collections::BTreeSet;
use std::fmt;

use remit_core::identity::Boundary;

/// Most entries in one scope.
pub const MAX_SCOPE_ENTRIES: usize = 64;
/// Longest scope entry.
pub const MAX_SCOPE_ENTRY_LEN: usize = 128;

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Too many entries.
    #[error("a scope has at most {MAX_SCOPE_ENTRIES} entries")]
    TooMany,
    /// An entry that is not an action name or prefix.
    #[error("`{0}` is not an action or a prefix such as `tickets.*`")]
    Bad(String),
}

/// A set of actions: exact names plus prefixes (stored without their `*`). Kept normal:
/// no exact entry under a prefix, no prefix under a shorter one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    exact: BTreeSet<String>,
    prefixes: BTreeSet<String>,
}

fn valid_entry(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SCOPE_ENTRY_LEN
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':'))
}

impl ScopeSet {
    /// Every action: the scope of a request that names none.
    pub fn all() -> Self {
        let mut prefixes = BTreeSet::new();
        prefixes.insert(String::new());
        Self {
            exact: BTreeSet::new(),
            prefixes,
        }
    }

    /// Parses a space-separated scope. An empty string is the empty set.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let mut out = Self::default();
        let mut n = 0;
        for entry in s.split(' ').filter(|e| !e.is_empty()) {
            n += 1;
            if n > MAX_SCOPE_ENTRIES {
                return Err(ScopeError::TooMany);
            }
            match entry.strip_suffix('*') {
                Some(p) if p.is_empty() || valid_entry(p) => {
                    out.prefixes.insert(p.to_owned());
                }
                None if valid_entry(entry) => {
                    out.exact.insert(entry.to_owned());
                }
                _ => return Err(ScopeError::Bad(entry.chars().take(64).collect())),
            }
        }
        Ok(out.normal())
    }

    /// The actions inside an identity's boundary.
    pub fn from_boundary(b: &Boundary) -> Self {
        Self {
            exact: b.exact().map(|a| a.as_str().to_owned()).collect(),
            prefixes: b.prefixes().map(str::to_owned).collect(),
        }
        .normal()
    }

    fn normal(mut self) -> Self {
        let all: Vec<String> = self.prefixes.iter().cloned().collect();
        self.prefixes
            .retain(|p| !all.iter().any(|q| q != p && p.starts_with(q.as_str())));
        let prefixes = &self.prefixes;
        self.exact
            .retain(|e| !prefixes.iter().any(|p| e.starts_with(p.as_str())));
        self
    }

    /// Whether `action` is inside the set.
    pub fn allows(&self, action: &str) -> bool {
        self.exact.contains(action) || self.prefixes.iter().any(|p| action.starts_with(p.as_str()))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// The actions in both sets, exactly: an action is in the result if and only if both
    /// sets allow it.
    pub fn intersect(&self, other: &Self) -> Self {
        let mut out = Self::default();
        for e in &self.exact {
            if other.allows(e) {
                out.exact.insert(e.clone());
            }
        }
        for e in &other.exact {
            if self.allows(e) {
                out.exact.insert(e.clone());
            }
        }
        for p in &self.prefixes {
            for q in &other.prefixes {
                if p.starts_with(q.as_str()) {
                    out.prefixes.insert(p.clone());
                } else if q.starts_with(p.as_str()) {
                    out.prefixes.insert(q.clone());
                }
            }
        }
        out.normal()
    }

    /// Every entry, exact names then prefixes (`tickets.*`).
    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.exact
            .iter()
            .cloned()
            .chain(self.prefixes.iter().map(|p| format!("{p}*")))
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v: Vec<String> = self.entries().collect();
        f.write_str(&v.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersections_are_exact() {
        let a = ScopeSet::parse("tickets.* billing.read").unwrap();
        let b = ScopeSet::parse("tickets.read tickets.reply* billing.*").unwrap();
        assert_eq!(
            a.intersect(&b).to_string(),
            "billing.read tickets.read tickets.reply*"
        );
        assert!(
            ScopeSet::parse("a b")
                .unwrap()
                .intersect(&ScopeSet::parse("c").unwrap())
                .is_empty()
        );
        assert_eq!(ScopeSet::all().intersect(&a), a);
    }

    #[test]
    fn hostile_scopes_are_refused() {
        for bad in [
            "a/b",
            "a'--",
            "tick*ets",
            "**",
            &"x ".repeat(65),
            &"y".repeat(200),
        ] {
            assert!(ScopeSet::parse(bad).is_err(), "{bad}");
        }
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }
}
