//! Slicing: which policies can apply to a request, and which context attributes they read.
//!
//! A policy whose scope cannot match a request can neither be satisfied nor raise an error,
//! so evaluating a request against only the policies whose scope can match gives the same
//! answer as the whole set. Policies are grouped by action, then by principal: equality on
//! one identity, any identity, or unclassified traffic.
//!
//! Each group also knows which `context` attributes its policies read (from the policies'
//! JSON form); the request's context carries only those. A policy that does not name an
//! attribute cannot observe whether it is present, so leaving it out changes nothing. A
//! policy that uses `context` any other way than `context.x` or `context has x` makes the
//! group carry every attribute.

use std::collections::HashMap;

use cedar_policy::{ActionConstraint, EntityUid, Policy, PolicySet, PrincipalConstraint};
use remit_core::{ActionName, IdentityId, Principal};
use serde_json::Value;

use crate::PolicyError;
use crate::schema::{IDENTITY_TYPE, UNCLASSIFIED_TYPE};

/// Context attributes, in the order of their bits in [`Needs`].
pub(crate) const CONTEXT_ATTRS: [&str; 15] = [
    "class",
    "authority",
    "purpose",
    "sensitive",
    "method",
    "path",
    "source_ip",
    "risk",
    "approved",
    "chain_depth",
    "mcp",
    "params",
    "arguments",
    "credential",
    "secrets",
];

/// A set of context attributes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs(u16);

impl Needs {
    /// Every attribute.
    pub(crate) const ALL: Needs = Needs(u16::MAX);

    /// Whether the attribute named `CONTEXT_ATTRS[i]` is needed.
    pub(crate) fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    fn add(&mut self, attr: &str) {
        match CONTEXT_ATTRS.iter().position(|a| *a == attr) {
            Some(i) => self.0 |= 1 << i,
            None => *self = Needs::ALL,
        }
    }

    fn union(self, other: Needs) -> Needs {
        Needs(self.0 | other.0)
    }

    /// The attributes `policy` reads.
    pub(crate) fn of(policy: &Policy) -> Needs {
        let mut needs = Needs::default();
        match policy.to_json() {
            Ok(v) => walk(&v, &mut needs),
            Err(_) => needs = Needs::ALL,
        }
        needs
    }
}

fn is_context_var(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Object(m)) if m.len() == 1 && m.get("Var").and_then(Value::as_str) == Some("context"))
}

fn walk(v: &Value, needs: &mut Needs) {
    match v {
        Value::Object(m) => {
            for op in [".", "has"] {
                if let Some(Value::Object(inner)) = m.get(op)
                    && is_context_var(inner.get("left"))
                {
                    match inner.get("attr").and_then(Value::as_str) {
                        Some(attr) => needs.add(attr),
                        None => *needs = Needs::ALL,
                    }
                    return;
                }
            }
            if m.get("Var").and_then(Value::as_str) == Some("context") {
                *needs = Needs::ALL;
                return;
            }
            m.values().for_each(|x| walk(x, needs));
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, needs)),
        _ => {}
    }
}

/// A policy set with the context attributes its policies read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sliced {
    pub(crate) set: PolicySet,
    pub(crate) needs: Needs,
}

impl Sliced {
    fn add(&mut self, p: &Policy, needs: Needs) -> Result<(), PolicyError> {
        self.needs = self.needs.union(needs);
        self.set
            .add(p.clone())
            .map_err(|e| PolicyError::Schema(e.to_string()))
    }
}

#[derive(Debug, Default)]
struct ActionSlice {
    /// Policies that can match unclassified traffic.
    unclassified: Sliced,
    /// Policies that can match any identity.
    identity: Sliced,
    /// `identity` plus the policies for one identity by equality.
    by_identity: HashMap<IdentityId, Sliced>,
}

/// Whom a principal constraint can match.
enum Reach {
    Both,
    Identities,
    Unclassified,
    One(IdentityId),
    Nobody,
}

fn type_reach(t: &str) -> Reach {
    match t {
        IDENTITY_TYPE => Reach::Identities,
        UNCLASSIFIED_TYPE => Reach::Unclassified,
        _ => Reach::Nobody,
    }
}

fn reach(p: &Policy) -> Reach {
    match p.principal_constraint() {
        PrincipalConstraint::Any => Reach::Both,
        PrincipalConstraint::Eq(u) => {
            let t = u.type_name().to_string();
            match t.as_str() {
                IDENTITY_TYPE => match IdentityId::parse(u.id().unescaped()) {
                    Ok(id) => Reach::One(id),
                    Err(_) => Reach::Nobody,
                },
                _ => type_reach(&t),
            }
        }
        PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => type_reach(&t.to_string()),
        // `in` also matches descendants; stay general rather than reason about hierarchy.
        PrincipalConstraint::In(_) => Reach::Both,
    }
}

/// Policies grouped by action and principal.
#[derive(Debug, Default)]
pub(crate) struct Slices {
    by_action: HashMap<ActionName, ActionSlice>,
}

impl Slices {
    /// Groups `all` for every action in `actions`.
    pub(crate) fn build(
        all: &PolicySet,
        actions: &HashMap<ActionName, EntityUid>,
    ) -> Result<Self, PolicyError> {
        let policies: Vec<(&Policy, Needs, Reach)> = all
            .policies()
            .map(|p| (p, Needs::of(p), reach(p)))
            .collect();
        let mut by_action = HashMap::with_capacity(actions.len());
        for (name, auid) in actions {
            let mut slice = ActionSlice::default();
            let mut specific: Vec<(&IdentityId, &Policy, Needs)> = Vec::new();
            for (p, needs, reach) in &policies {
                let applies = match p.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => &a == auid,
                    // The generated schema has no action groups, so `in` is membership.
                    ActionConstraint::In(list) => list.contains(auid),
                };
                if !applies {
                    continue;
                }
                match reach {
                    Reach::Both => {
                        slice.unclassified.add(p, *needs)?;
                        slice.identity.add(p, *needs)?;
                    }
                    Reach::Identities => slice.identity.add(p, *needs)?,
                    Reach::Unclassified => slice.unclassified.add(p, *needs)?,
                    Reach::One(id) => specific.push((id, p, *needs)),
                    Reach::Nobody => {}
                }
            }
            for (id, p, needs) in specific {
                let entry = slice
                    .by_identity
                    .entry(id.clone())
                    .or_insert_with(|| slice.identity.clone());
                entry.add(p, needs)?;
            }
            by_action.insert(name.clone(), slice);
        }
        Ok(Self { by_action })
    }

    /// The policies that can apply to `principal` doing `action`.
    pub(crate) fn get(&self, action: &ActionName, principal: &Principal) -> Option<&Sliced> {
        let slice = self.by_action.get(action)?;
        Some(match principal {
            Principal::Unclassified => &slice.unclassified,
            Principal::Identity(id) => slice.by_identity.get(id).unwrap_or(&slice.identity),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn needs(src: &str) -> Needs {
        let p = Policy::from_str(src).unwrap();
        Needs::of(&p)
    }

    fn names(n: Needs) -> Vec<&'static str> {
        (0..CONTEXT_ATTRS.len())
            .filter(|&i| n.has(i))
            .map(|i| CONTEXT_ATTRS[i])
            .collect()
    }

    #[test]
    fn reads_are_found() {
        assert_eq!(
            names(needs("permit(principal, action, resource);")),
            Vec::<&str>::new()
        );
        assert_eq!(
            names(needs(
                "permit(principal, action, resource) when { context has purpose && context.purpose == \"x\" && context.params.id == \"1\" };"
            )),
            ["purpose", "params"]
        );
        assert_eq!(
            names(needs(
                "forbid(principal, action, resource) unless { context.approved };"
            )),
            ["approved"]
        );
    }

    #[test]
    fn every_context_attribute_has_a_bit() {
        assert!(CONTEXT_ATTRS.len() <= 16);
        assert_eq!(
            names(needs(
                "permit(principal, action, resource) when { context.arguments has limit && context.arguments.limit > 1 };"
            )),
            ["arguments"]
        );
    }

    #[test]
    fn other_uses_of_context_need_everything() {
        assert_eq!(
            needs("permit(principal, action, resource) when { context == {} };"),
            Needs::ALL
        );
        assert_eq!(
            needs("permit(principal, action, resource) when { context[\"purpose\"] == \"x\" };").0
                & 0b100,
            0b100
        );
    }
}
