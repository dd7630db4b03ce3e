//! OCSF export: a decision record as an OCSF 1.1 Web Resource Access Activity event
//! (class 6004, category 6 Application Activity). Activity: 1 Access Grant (allow),
//! 2 Access Deny (any refusal); `type_uid` is `class_uid * 100 + activity_id`. remit's own
//! fields and the record's integrity fields (replica, position, leaf hash, previous hash)
//! go under `unmapped.remit`, so an event can be traced back to its place in the log.

use remit_store::audit::StoredEntry;
use serde_json::{Value, json};

const CLASS_UID: u64 = 6004;
const CATEGORY_UID: u64 = 6;

/// The OCSF event for a decision entry; `None` for other kinds of entry.
pub fn event(e: &StoredEntry) -> Option<Value> {
    let entry: Value = serde_json::from_str(&e.entry).ok()?;
    let r = entry.get("record")?;
    if r.get("kind")?.as_str()? != "decision" {
        return None;
    }
    let allow = r.get("decision")?.as_str()? == "allow";
    let activity_id = if allow { 1 } else { 2 };
    let time_ms = r
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)?;
    let leaf = remit_audit::merkle::leaf_hash(e.entry.as_bytes());
    let get = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let authority = get("authority");
    let mut user = json!({
        "uid": get("identity"),
        "name": get("identity"),
        "type": "Service",
        "type_id": 99,
        "credential_uid": get("credential_id"),
    });
    if let Some(h) = authority.get("on_behalf_of").filter(|h| !h.is_null()) {
        user["account"] = json!({ "name": h });
    }
    Some(json!({
        "class_uid": CLASS_UID,
        "class_name": "Web Resource Access Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": if allow { "Access Grant" } else { "Access Deny" },
        "type_uid": CLASS_UID * 100 + activity_id,
        "time": time_ms,
        "severity_id": if allow { 1 } else { 3 },
        "status_id": if allow { 1 } else { 2 },
        "status": if allow { "Success" } else { "Failure" },
        "message": r.get("reasons").and_then(Value::as_array).map(|rs| {
            rs.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; ")
        }),
        "metadata": {
            "version": "1.1.0",
            "uid": get("decision_id"),
            "product": { "name": "remit", "vendor_name": "remit", "version": env!("CARGO_PKG_VERSION") },
            "log_name": "remit audit",
        },
        "actor": { "user": user },
        "src_endpoint": { "ip": get("source_ip") },
        "http_request": { "http_method": get("method"), "url": { "path": get("path") } },
        "web_resources": [{ "type": get("resource").get("type").cloned(), "uid": get("resource").get("id").cloned(), "name": get("action") }],
        "unmapped": { "remit": {
            "decision": get("decision"),
            "class": get("class"),
            "authority": authority,
            "purpose": get("purpose"),
            "policies": get("policies"),
            "obligations": get("obligations"),
            "mcp_method": get("mcp_method"),
            "mcp_tool": get("mcp_tool"),
            "integrity": {
                "replica": entry.get("replica"),
                "seq": entry.get("seq"),
                "prev": entry.get("prev"),
                "leaf_sha256": leaf.to_hex(),
            },
        }},
    }))
}
