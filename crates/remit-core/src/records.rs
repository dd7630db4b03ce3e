//! Approved record sets: the records an allowed request may see. A `[[record_set]]` names
//! the actions it covers, the JSON member that identifies an item's record (an RFC 6901
//! pointer such as `/customer`), where a response's items are (`/tickets`, or the body
//! itself), and where the approved values come from: a list in the configuration, the
//! delegating human's groups (their team), or the permits that allowed the request
//! (`@record_values`). The engine resolves the values into an [`ApprovedSet`] carried by the
//! decision; a request that names a record outside it is denied, and [`ApprovedSet::filter`]
//! removes (or, under `on_excess = "refuse"`, refuses) the response items outside it.
//!
//! Filtering is pure: the door buffers and parses the body, this module decides.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::names::ActionName;

/// Most record sets in one configuration.
pub const MAX_RECORD_SETS: usize = 256;
/// Most values listed for one set (and most an approved set carries).
pub const MAX_VALUES: usize = 4096;
/// Longest value.
pub const MAX_VALUE_BYTES: usize = 256;
/// Most removed record ids an outcome record lists (the count is always complete).
pub const MAX_NOTED_IDS: usize = 64;

/// Where a set's approved values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSource {
    /// A fixed list in the configuration (shared with every decision it approves, never
    /// copied per request).
    Values(Arc<BTreeSet<String>>),
    /// The groups of the human an agent acts for (a request without one approves nothing).
    HumanGroups,
    /// The `@record_values` of the permits that allowed the request, united.
    Policy,
}

/// What happens when a response holds items outside the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExcess {
    /// Remove them; the client gets the rest.
    Filter,
    /// Refuse the whole response.
    Refuse,
}

/// One `[[record_set]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSetSpec {
    /// Its name, as `@record_set` names it.
    pub name: String,
    /// The actions whose requests it covers (besides permits that name it).
    pub actions: BTreeSet<ActionName>,
    /// RFC 6901 pointer, within an item, to the member naming the item's record.
    pub field: String,
    /// RFC 6901 pointer to the list of items in a response (`""`: the body).
    pub items: String,
    /// The path parameter, query parameter or tool argument naming the record a request asks
    /// for, when the request names one.
    pub param: Option<String>,
    /// Where the approved values come from.
    pub source: RecordSource,
    /// What a response with items outside the set gets.
    pub on_excess: OnExcess,
    /// Largest response body that is filtered; a larger one is refused.
    pub max_body_bytes: u64,
}

/// Every configured set, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSets(Vec<RecordSetSpec>);

impl RecordSets {
    /// The sets, checked by the parser: names unique, at most [`MAX_RECORD_SETS`].
    pub fn new(sets: Vec<RecordSetSpec>) -> Self {
        Self(sets)
    }

    /// The set named `name`.
    pub fn get(&self, name: &str) -> Option<&RecordSetSpec> {
        self.0.iter().find(|s| s.name == name)
    }

    /// The sets covering `action`.
    pub fn for_action<'a>(
        &'a self,
        action: &'a ActionName,
    ) -> impl Iterator<Item = &'a RecordSetSpec> + 'a {
        self.0.iter().filter(move |s| s.actions.contains(action))
    }

    /// Whether no set is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A set resolved for one allowed request: what the door enforces on the response and what
/// the decision record shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovedSet {
    /// The set's name.
    pub name: String,
    /// The member naming an item's record.
    pub field: String,
    /// Where a response's items are.
    pub items: String,
    /// The approved values.
    pub values: Arc<BTreeSet<String>>,
    /// What a response with items outside the set gets.
    pub on_excess: OnExcess,
    /// Largest response body that is filtered.
    pub max_body_bytes: u64,
}

/// What filtering did to one response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filtered {
    /// Items kept.
    pub kept: u64,
    /// Items removed.
    pub removed: u64,
    /// The record ids of the first [`MAX_NOTED_IDS`] removed items (`null` for an item
    /// without one).
    pub removed_ids: Vec<Option<String>>,
}

/// What an outcome record says one set did to a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordSetNote {
    /// The set.
    pub set: String,
    /// Items kept and removed.
    #[serde(flatten)]
    pub filtered: Filtered,
    /// Why the response was refused instead, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Why a response is refused rather than passed filtered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Excess {
    /// `on_excess = "refuse"` and items lie outside the set.
    #[error("the response holds {removed} record(s) outside the approved set `{set}`")]
    Outside {
        /// The set.
        set: String,
        /// How many.
        removed: u64,
    },
    /// The response is one record, and it lies outside the set.
    #[error("the response is a record outside the approved set `{set}`")]
    Single {
        /// The set.
        set: String,
    },
    /// The response has no list or record where the set says.
    #[error("the response has no list of records at `{items}` for the approved set `{set}`")]
    Shape {
        /// The set.
        set: String,
        /// The pointer.
        items: String,
    },
}

impl ApprovedSet {
    /// Whether `value` (a request's record id) is in the set.
    pub fn admits(&self, value: &str) -> bool {
        self.values.contains(value)
    }

    /// The record id an item names: a string as it is, an integer in decimal; anything
    /// else (absent, `null`, a fraction, an object) names no record and is never admitted.
    pub fn record_id(&self, item: &Value) -> Option<String> {
        match item.pointer(&self.field)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            _ => None,
        }
    }

    /// Removes from `body` every item outside the set, or refuses the response. The items
    /// are the array at `items`; an object there is one record, passed only if admitted.
    pub fn filter(&self, body: &mut Value) -> Result<Filtered, Excess> {
        let set = || self.name.clone();
        let Some(target) = body.pointer_mut(&self.items) else {
            return Err(Excess::Shape {
                set: set(),
                items: self.items.clone(),
            });
        };
        let mut out = Filtered::default();
        match target {
            Value::Array(items) => {
                items.retain(|item| {
                    let id = self.record_id(item);
                    let keep = id.as_deref().is_some_and(|v| self.admits(v));
                    if keep {
                        out.kept += 1;
                    } else {
                        out.removed += 1;
                        if out.removed_ids.len() < MAX_NOTED_IDS {
                            out.removed_ids.push(id);
                        }
                    }
                    keep
                });
                if out.removed > 0 && self.on_excess == OnExcess::Refuse {
                    return Err(Excess::Outside {
                        set: set(),
                        removed: out.removed,
                    });
                }
                Ok(out)
            }
            item @ Value::Object(_) => {
                if self
                    .record_id(item)
                    .as_deref()
                    .is_some_and(|v| self.admits(v))
                {
                    out.kept = 1;
                    Ok(out)
                } else {
                    Err(Excess::Single { set: set() })
                }
            }
            _ => Err(Excess::Shape {
                set: set(),
                items: self.items.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(on_excess: OnExcess) -> ApprovedSet {
        ApprovedSet {
            name: "queues".into(),
            field: "/queue".into(),
            items: "/tickets".into(),
            values: Arc::new(["support".to_owned(), "7".to_owned()].into()),
            on_excess,
            max_body_bytes: 1 << 20,
        }
    }

    #[test]
    fn removes_items_outside_the_set_and_notes_them() {
        let mut body = json!({"tickets": [
            {"id": 1, "queue": "support"},
            {"id": 2, "queue": "billing"},
            {"id": 3, "queue": 7},
            {"id": 4},
            {"id": 5, "queue": null},
            {"id": 6, "queue": ["support"]},
            {"id": 7, "queue": 7.5},
            "support",
        ], "total": 8});
        let f = set(OnExcess::Filter).filter(&mut body).unwrap();
        assert_eq!(f.kept, 2);
        assert_eq!(f.removed, 6);
        assert_eq!(
            f.removed_ids,
            vec![Some("billing".into()), None, None, None, None, None]
        );
        assert_eq!(
            body,
            json!({"tickets": [{"id": 1, "queue": "support"}, {"id": 3, "queue": 7}], "total": 8})
        );
    }

    #[test]
    fn refuses_instead_when_configured() {
        let mut body = json!({"tickets": [{"queue": "support"}, {"queue": "billing"}]});
        let e = set(OnExcess::Refuse).filter(&mut body).unwrap_err();
        assert_eq!(
            e,
            Excess::Outside {
                set: "queues".into(),
                removed: 1
            }
        );
        let mut inside = json!({"tickets": [{"queue": "support"}]});
        assert_eq!(set(OnExcess::Refuse).filter(&mut inside).unwrap().kept, 1);
    }

    #[test]
    fn a_single_record_passes_only_inside_the_set() {
        let mut s = set(OnExcess::Filter);
        s.items = String::new();
        assert!(s.filter(&mut json!({"queue": "support"})).is_ok());
        assert_eq!(
            s.filter(&mut json!({"queue": "billing"})).unwrap_err(),
            Excess::Single {
                set: "queues".into()
            }
        );
        // A top-level list is the items when `items` is empty.
        let mut list = json!([{"queue": "billing"}, {"queue": "support"}]);
        assert_eq!(s.filter(&mut list).unwrap().removed, 1);
        assert_eq!(list, json!([{"queue": "support"}]));
    }

    #[test]
    fn a_response_of_another_shape_is_refused() {
        let s = set(OnExcess::Filter);
        for mut body in [json!({"other": []}), json!({"tickets": "x"}), json!(3)] {
            assert!(matches!(s.filter(&mut body), Err(Excess::Shape { .. })));
        }
    }

    #[test]
    fn an_empty_set_removes_everything() {
        let mut s = set(OnExcess::Filter);
        s.values = Arc::default();
        let mut body = json!({"tickets": [{"queue": "support"}, {"queue": ""}]});
        assert_eq!(s.filter(&mut body).unwrap().removed, 2);
        assert_eq!(body, json!({"tickets": []}));
    }

    #[test]
    fn noted_ids_are_bounded() {
        let s = set(OnExcess::Filter);
        let items: Vec<Value> = (0..1000)
            .map(|i| json!({"queue": format!("q{i}")}))
            .collect();
        let mut body = json!({ "tickets": items });
        let f = s.filter(&mut body).unwrap();
        assert_eq!(f.removed, 1000);
        assert_eq!(f.removed_ids.len(), MAX_NOTED_IDS);
    }
}
