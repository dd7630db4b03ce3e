//! The Cedar schema, generated from the identity registry's shape and the route table.
//!
//! Every action in the route table becomes a Cedar action whose context carries the common
//! request attributes plus a `params` record of exactly the path parameters its routes
//! capture, so a policy that reads a parameter the route does not capture fails validation.

use serde_json::{Value, json};

use remit_core::RouteTable;
use remit_core::route::ArgType;

/// The principal type of registered identities.
pub const IDENTITY_TYPE: &str = "Identity";
/// The principal type of requests without a registered identity.
pub const UNCLASSIFIED_TYPE: &str = "Unclassified";
/// The one unclassified principal's id.
pub const UNCLASSIFIED_ID: &str = "anonymous";

fn string() -> Value {
    json!({ "type": "String" })
}

fn optional(mut v: Value) -> Value {
    v["required"] = Value::Bool(false);
    v
}

/// The context attributes every action shares.
fn common_context() -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("class".into(), string());
    m.insert("authority".into(), string());
    m.insert("purpose".into(), optional(string()));
    m.insert("sensitive".into(), json!({ "type": "Boolean" }));
    m.insert("method".into(), string());
    m.insert("path".into(), string());
    m.insert(
        "source_ip".into(),
        optional(json!({ "type": "Extension", "name": "ipaddr" })),
    );
    m.insert("risk".into(), json!({ "type": "Long" }));
    m.insert("approved".into(), json!({ "type": "Boolean" }));
    m.insert("chain_depth".into(), json!({ "type": "Long" }));
    m.insert(
        "credential".into(),
        json!({ "type": "Record", "attributes": { "exposed": { "type": "Boolean" } } }),
    );
    m.insert(
        "secrets".into(),
        json!({ "type": "Set", "element": string() }),
    );
    m.insert(
        "mcp".into(),
        optional(json!({
            "type": "Record",
            "attributes": { "method": string(), "tool": optional(string()), "name": optional(string()) }
        })),
    );
    m
}

/// Builds the schema (Cedar's JSON schema format) for a route table.
pub fn schema_json(routes: &RouteTable) -> Value {
    let mut entity_types = serde_json::Map::new();
    entity_types.insert(
        IDENTITY_TYPE.into(),
        json!({ "shape": { "type": "Record", "attributes": {
            "kind": string(),
            "owner": string(),
            "purposes": { "type": "Set", "element": string() },
        }}}),
    );
    entity_types.insert(UNCLASSIFIED_TYPE.into(), json!({}));
    for t in routes.resource_types() {
        entity_types.insert(t, json!({}));
    }
    let principals = json!([IDENTITY_TYPE, UNCLASSIFIED_TYPE]);
    let mut actions = serde_json::Map::new();
    for (name, info) in routes.actions() {
        let mut ctx = common_context();
        let params: serde_json::Map<String, Value> =
            info.params.iter().map(|p| (p.clone(), string())).collect();
        ctx.insert(
            "params".into(),
            json!({ "type": "Record", "attributes": params }),
        );
        // Declared tool arguments; each may be absent from a call, so each is optional.
        let arguments: serde_json::Map<String, Value> = info
            .arguments
            .iter()
            .map(|(name, ty)| {
                let t = match ty {
                    ArgType::String => "String",
                    ArgType::Long => "Long",
                    ArgType::Bool => "Boolean",
                };
                (name.clone(), optional(json!({ "type": t })))
            })
            .collect();
        ctx.insert(
            "arguments".into(),
            json!({ "type": "Record", "attributes": arguments }),
        );
        let resources: Vec<String> = info
            .resource_types
            .iter()
            .map(ToString::to_string)
            .collect();
        actions.insert(
            name.to_string(),
            json!({ "appliesTo": {
                "principalTypes": principals,
                "resourceTypes": resources,
                "context": { "type": "Record", "attributes": ctx },
            }}),
        );
    }
    let mut ctx = common_context();
    ctx.insert(
        "params".into(),
        json!({ "type": "Record", "attributes": {} }),
    );
    ctx.insert(
        "arguments".into(),
        json!({ "type": "Record", "attributes": {} }),
    );
    actions.insert(
        "unmapped".into(),
        json!({ "appliesTo": {
            "principalTypes": principals,
            "resourceTypes": [remit_core::route::UNMAPPED_RESOURCE_TYPE, remit_core::route::MCP_RESOURCE_TYPE],
            "context": { "type": "Record", "attributes": ctx },
        }}),
    );
    json!({ "": { "entityTypes": entity_types, "actions": actions } })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: an attribute in the schema but not in the request builder's list is
    /// never sent, so every policy reading it errors (and, being fail-closed, denies).
    #[test]
    fn the_request_builder_knows_every_context_attribute() {
        let schema = schema_json(&RouteTable::default());
        let ctx = &schema[""]["actions"]["unmapped"]["appliesTo"]["context"]["attributes"];
        let mut in_schema: Vec<&str> = ctx
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut built: Vec<&str> = crate::slice::CONTEXT_ATTRS.to_vec();
        in_schema.sort_unstable();
        built.sort_unstable();
        assert_eq!(in_schema, built);
    }
}
