//! Approved record sets in the pipeline. After an allow, every `[[record_set]]` covering
//! the action, and every set a determining permit names with `@record_set`, is resolved to
//! its values: the configured list, the delegating human's groups, or the permits'
//! `@record_values`. A request that names a record (the set's `param`, as a path parameter,
//! a query parameter or a tool argument) outside a set is refused as `remit.record-set`;
//! otherwise the decision carries the resolved sets, and the door filters the response.

use std::collections::BTreeSet;
use std::sync::Arc;

use remit_core::records::{ApprovedSet, RecordSetSpec, RecordSets, RecordSource};
use remit_core::route::ArgValue;
use remit_core::{ActionName, Obligation, RequestFacts, Scope};

/// The pseudo-policy of a request for a record outside its approved set.
pub const RECORD_SET_POLICY: &str = "remit.record-set";

/// The sets that apply to an allow of `action` with `obligations`, resolved. `human_groups`
/// are the groups of the human an agent acts for, when it acts for one.
pub(crate) fn resolve(
    sets: &RecordSets,
    action: &ActionName,
    obligations: &[Obligation],
    human_groups: Option<&[String]>,
) -> Vec<ApprovedSet> {
    let mut specs: Vec<&RecordSetSpec> = sets.for_action(action).collect();
    for o in obligations {
        if let Obligation::RecordSet { set, .. } = o
            && let Some(spec) = sets.get(set)
            && !specs.iter().any(|s| s.name == spec.name)
        {
            specs.push(spec);
        }
    }
    specs
        .into_iter()
        .map(|spec| {
            let values: Arc<BTreeSet<String>> = match &spec.source {
                RecordSource::Values(v) => Arc::clone(v),
                // No human, no approved records: fail closed.
                RecordSource::HumanGroups => human_groups
                    .unwrap_or_default()
                    .iter()
                    .take(remit_core::records::MAX_VALUES)
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into(),
                RecordSource::Policy => obligations
                    .iter()
                    .filter_map(|o| match o {
                        Obligation::RecordSet { set, values } if *set == spec.name => {
                            values.as_deref()
                        }
                        _ => None,
                    })
                    .flatten()
                    .take(remit_core::records::MAX_VALUES)
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into(),
            };
            ApprovedSet {
                name: spec.name.clone(),
                field: spec.field.clone(),
                items: spec.items.clone(),
                values,
                on_excess: spec.on_excess,
                max_body_bytes: spec.max_body_bytes,
            }
        })
        .collect()
}

/// Why the request itself asks for a record outside a set: a sentence naming the record
/// and the set. A parameter given twice in the query is refused, never guessed.
pub(crate) fn refuses(
    sets: &RecordSets,
    approved: &[ApprovedSet],
    scope: &Scope,
    facts: &RequestFacts,
) -> Option<String> {
    for a in approved {
        let Some(param) = sets.get(&a.name).and_then(|s| s.param.as_deref()) else {
            continue;
        };
        let asked = match requested(param, scope, facts) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(why) => return Some(why),
        };
        if !a.admits(&asked) {
            return Some(format!(
                "record `{}` is outside the approved record set `{}`",
                asked.escape_default(),
                a.name
            ));
        }
    }
    None
}

/// The record a request names with `param`: a path parameter, else a tool argument, else a
/// query parameter.
fn requested(param: &str, scope: &Scope, facts: &RequestFacts) -> Result<Option<String>, String> {
    if let Some((_, v)) = scope.params.iter().find(|(k, _)| k == param) {
        return Ok(Some(v.clone()));
    }
    if let Some((_, v)) = scope.arguments.iter().find(|(k, _)| k == param) {
        return Ok(Some(match v {
            ArgValue::String(s) => s.clone(),
            ArgValue::Long(n) => n.to_string(),
            ArgValue::Bool(b) => b.to_string(),
        }));
    }
    let Some(query) = facts.path.query() else {
        return Ok(None);
    };
    let mut found: Option<String> = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == param {
            if found.is_some() {
                return Err(format!(
                    "query parameter `{param}` is given more than once, so the record asked for is ambiguous"
                ));
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}
