//! The admin API's alerts: `GET /v1/alerts` (newest first; `state`, `identity`, `limit`
//! up to 500, `before` for the next page) and `POST /v1/alerts/{id}/ack|resolve` with a
//! JSON body `{"by": "...", "reason": "..."}` (unknown or repeated members refused). Inputs are read by remit-store's parsed
//! types, so the API and `remit alerts` accept exactly the same things; anything else is a
//! 400 problem+json naming the input.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use remit_core::IdentityId;
use remit_store::alerts::{Actor, AlertError, AlertFilter, AlertId, Note, PageSize, Transition};
use serde::Deserialize;
use serde_json::json;

use crate::{AdminState, Problem, is_json};

/// Largest body of an acknowledge or resolve request.
pub const MAX_CHANGE_BYTES: usize = 8 * 1024;

/// `GET /v1/alerts`'s query. Unknown and repeated parameters are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    identity: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    by: String,
    reason: String,
}

fn problem(e: &AlertError) -> Response {
    let status = match e {
        AlertError::Invalid { .. } => StatusCode::BAD_REQUEST,
        AlertError::NotFound(_) => StatusCode::NOT_FOUND,
        AlertError::Conflict { .. } => StatusCode::CONFLICT,
        AlertError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(error = %e, "the alerts table could not be read or written");
        return Problem::new(status, "the alert store is unavailable").into_response();
    }
    Problem::new(status, e.to_string()).into_response()
}

fn not_kept() -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "this gateway does not keep behaviour alerts",
    )
    .into_response()
}

fn filter(q: ListQuery) -> Result<AlertFilter, AlertError> {
    let bad = |field: &'static str, why: String| AlertError::Invalid { field, why };
    let identity = match q.identity {
        None => None,
        Some(i) => Some(
            IdentityId::parse(&i)
                .map_err(|e| bad("identity", e.to_string()))?
                .as_str()
                .to_owned(),
        ),
    };
    let limit = match q.limit {
        None => PageSize::default(),
        Some(l) => PageSize::new(
            l.parse::<u64>()
                .map_err(|_| bad("limit", "must be a whole number from 1 to 500".into()))?,
        )?,
    };
    Ok(AlertFilter {
        state: q.state.as_deref().map(str::parse).transpose()?,
        identity,
        before: q.before.as_deref().map(AlertId::parse).transpose()?,
        limit,
    })
}

/// `GET /v1/alerts`.
pub(crate) async fn list(
    State(st): State<AdminState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Some(watch) = &st.watch else {
        return not_kept();
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}; the parameters are `state`, `identity`, `limit` and `before`, each at most once",
                    e.body_text()
                ),
            )
            .into_response();
        }
    };
    let f = match filter(q) {
        Ok(f) => f,
        Err(e) => return problem(&e),
    };
    match watch.book().list(&f).await {
        Ok(alerts) => {
            let next = (alerts.len() == f.limit.get() as usize)
                .then(|| alerts.last().map(|a| a.id.clone()))
                .flatten();
            Json(json!({ "alerts": alerts, "next_before": next })).into_response()
        }
        Err(e) => problem(&e),
    }
}

/// `POST /v1/alerts/{id}/ack` and `/resolve`.
pub(crate) async fn change(
    State(st): State<AdminState>,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(watch) = &st.watch else {
        return not_kept();
    };
    let to = match verb.as_str() {
        "ack" => Transition::Acknowledge,
        "resolve" => Transition::Resolve,
        _ => {
            return Problem::new(
                StatusCode::NOT_FOUND,
                "an alert is changed with `/ack` or `/resolve`",
            )
            .into_response();
        }
    };
    let id = match AlertId::parse(&id) {
        Ok(id) => id,
        Err(e) => return problem(&e),
    };
    if !is_json(&headers) {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send `{\"by\": ..., \"reason\": ...}` as `application/json`",
        )
        .into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_CHANGE_BYTES).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request is larger than {MAX_CHANGE_BYTES} bytes"),
        )
        .into_response();
    };
    let change: ChangeBody = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                format!("invalid request JSON: {e}"),
            )
            .into_response();
        }
    };
    let parsed = Actor::parse(&change.by).and_then(|by| Ok((by, Note::parse(&change.reason)?)));
    let (by, reason) = match parsed {
        Ok(p) => p,
        Err(e) => return problem(&e),
    };
    match watch.book().transition(&id, to, &by, &reason).await {
        Ok(alert) => {
            tracing::info!(alert = %id, state = alert.state.as_str(), by = %change.by.trim(), "alert changed");
            Json(alert).into_response()
        }
        Err(e) => problem(&e),
    }
}
