//! The `[[record_set]]` tables of `remit.toml`: approved record sets, parsed into
//! [`RecordSets`]. Each names its actions (which must be in the route table), the pointer to
//! an item's record id and to a response's items, and exactly one source of values.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{Ctx, bounded, is_group_name};
use crate::ConfigError;
use crate::names::ActionName;
use crate::records::{
    MAX_RECORD_SETS, MAX_VALUE_BYTES, MAX_VALUES, OnExcess, RecordSetSpec, RecordSets, RecordSource,
};
use crate::route::RouteTable;

/// Longest JSON pointer.
const MAX_POINTER_BYTES: usize = 256;
/// Default largest response body a set filters.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecordSet {
    name: Spanned<String>,
    actions: Spanned<Vec<Spanned<String>>>,
    field: Spanned<String>,
    #[serde(default)]
    items: Option<Spanned<String>>,
    #[serde(default)]
    param: Option<Spanned<String>>,
    from: Spanned<String>,
    #[serde(default)]
    values: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    on_excess: Option<OnExcess>,
    #[serde(default)]
    max_body_bytes: Option<Spanned<u64>>,
}

/// An RFC 6901 pointer: empty, or `/`-separated tokens with `~` only as `~0` or `~1`.
fn is_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    p.starts_with('/')
        && p.len() <= MAX_POINTER_BYTES
        && !p.chars().any(char::is_control)
        && p.split('~').skip(1).all(|t| t.starts_with(['0', '1']))
}

pub(super) fn parse_record_sets(
    cx: &Ctx<'_>,
    raw: Vec<Spanned<RawRecordSet>>,
    routes: &RouteTable,
) -> Result<RecordSets, ConfigError> {
    if raw.len() > MAX_RECORD_SETS {
        return Err(cx.err(
            raw[MAX_RECORD_SETS].span(),
            "record_set",
            format!("more than {MAX_RECORD_SETS} record sets"),
        ));
    }
    let mut sets: Vec<RecordSetSpec> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let r = r.into_inner();
        let field = |f: &str| format!("record_set[{i}].{f}");
        let name = r.name.get_ref().clone();
        if !is_group_name(&name) {
            return Err(cx.err(
                r.name.span(),
                field("name"),
                "a record set's name is 1 to 128 letters, digits, `-`, `_`, `.` or `:`",
            ));
        }
        if sets.iter().any(|s| s.name == name) {
            return Err(cx.err(
                r.name.span(),
                field("name"),
                format!("record set `{name}` is defined twice"),
            ));
        }
        let mut actions = BTreeSet::new();
        for a in r.actions.get_ref() {
            let action = ActionName::parse(a.get_ref())
                .map_err(|e| cx.err(a.span(), field("actions"), e.to_string()))?;
            if !routes.actions().contains_key(&action) {
                return Err(cx.err(
                    a.span(),
                    field("actions"),
                    format!("`{action}` is not an action in the route table"),
                ));
            }
            if !actions.insert(action) {
                return Err(cx.err(a.span(), field("actions"), "an action is listed twice"));
            }
        }
        let pointer = |v: &Spanned<String>, f: &str, may_be_empty: bool| {
            let p = v.get_ref();
            if !is_pointer(p) || (p.is_empty() && !may_be_empty) {
                return Err(cx.err(
                    v.span(),
                    field(f),
                    format!(
                        "`{}` is not a JSON pointer (RFC 6901) such as `/customer`",
                        p.escape_default()
                    ),
                ));
            }
            Ok(p.clone())
        };
        let item_field = pointer(&r.field, "field", false)?;
        let items = match &r.items {
            Some(v) => pointer(v, "items", true)?,
            None => String::new(),
        };
        let param = match r.param {
            None => None,
            Some(p) if p.get_ref().is_empty() || p.get_ref().len() > 64 => {
                return Err(cx.err(
                    p.span(),
                    field("param"),
                    "a parameter name is 1 to 64 bytes",
                ));
            }
            Some(p) => Some(p.into_inner()),
        };
        let source = match (r.from.get_ref().as_str(), r.values) {
            ("values", Some(list)) => {
                if list.get_ref().len() > MAX_VALUES {
                    return Err(cx.err(
                        list.span(),
                        field("values"),
                        format!("at most {MAX_VALUES} values"),
                    ));
                }
                let mut values = BTreeSet::new();
                for v in list.into_inner() {
                    let s = v.get_ref();
                    if s.is_empty() || s.len() > MAX_VALUE_BYTES || s.chars().any(char::is_control)
                    {
                        return Err(cx.err(
                            v.span(),
                            field("values"),
                            format!("a value is 1 to {MAX_VALUE_BYTES} printable bytes"),
                        ));
                    }
                    if !values.insert(v.get_ref().clone()) {
                        return Err(cx.err(
                            v.span(),
                            field("values"),
                            format!("`{s}` is listed twice"),
                        ));
                    }
                }
                RecordSource::Values(std::sync::Arc::new(values))
            }
            ("values", None) => {
                return Err(cx.err(
                    r.from.span(),
                    field("values"),
                    "`from = \"values\"` needs the list in `values`",
                ));
            }
            (_, Some(list)) => {
                return Err(cx.err(
                    list.span(),
                    field("values"),
                    "`values` is read only with `from = \"values\"`",
                ));
            }
            ("human_groups", None) => RecordSource::HumanGroups,
            ("policy", None) => RecordSource::Policy,
            (other, None) => {
                return Err(cx.err(
                    r.from.span(),
                    field("from"),
                    format!(
                        "`{}` is not a source: use `values`, `human_groups` or `policy`",
                        other.escape_default()
                    ),
                ));
            }
        };
        sets.push(RecordSetSpec {
            name,
            actions,
            field: item_field,
            items,
            param,
            source,
            on_excess: r.on_excess.unwrap_or(OnExcess::Filter),
            max_body_bytes: bounded(
                cx,
                r.max_body_bytes,
                &field("max_body_bytes"),
                DEFAULT_MAX_BODY_BYTES,
                1024..=64 * 1024 * 1024,
            )?,
        });
    }
    Ok(RecordSets::new(sets))
}
