//! Approvals on the admin listener, and `Prefer: wait` for the proxy.
//!
//! - `GET /v1/approvals?state=&identity=&limit=`: approvals, newest first.
//! - `GET /v1/approvals/{id}`: one approval.
//! - `POST /v1/approvals/{id}/grant` and `/deny`, with the approver's own token as
//!   `Authorization: Bearer` and `{"reason": "..."}`: the engine checks that a person in an
//!   approver group answers, not the requester (separation of duties), and records the step.
//!
//! A client that sends `Prefer: wait=N` (RFC 7240 §4.3) with a request that needs an
//! approval is held until it is answered or N seconds (at most `approvals.max_wait_s`)
//! pass; a grant then admits the request as if it had been presented with
//! `Remit-Approval`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use remit_core::approval::{
    Approval, ApprovalFilter, ApprovalId, ApprovalState, ApprovalStore, MAX_LIST, Resolution,
};
use remit_core::{BearerToken, IdentityId};
use remit_engine::approvals::AnswerError;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::{AdminState, Problem, is_json};

/// Largest answer body (`{"reason": ...}`), in bytes.
const MAX_ANSWER_BYTES: usize = 8 * 1024;
/// Default page of a listing.
const DEFAULT_LIMIT: u32 = 100;
/// How often a held request looks at its approval again.
const POLL: Duration = Duration::from_millis(200);

/// The approval routes, for the admin listener.
pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/grant", post(grant))
        .route("/v1/approvals/{id}/deny", post(deny))
}

/// An approval as the API shows it: the stored fields, the state a reader should act on
/// (`expired` past expiry), and where to decide it.
pub fn view(a: &Approval, decide: String) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        m.insert("status".into(), json!(a.effective_state(now)));
        m.insert("decide".into(), json!(decide));
    }
    v
}

/// The answer where the store behind the sink keeps no approvals.
fn no_approvals() -> Response {
    Problem::new(
        StatusCode::NOT_IMPLEMENTED,
        "this deployment keeps no approvals",
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    identity: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(st): State<AdminState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "query parameters: `state` (pending|granted|denied|used), `identity`, `limit` (1-1000), each once",
        )
        .into_response();
    };
    let state = match q.state.as_deref().map(|s| ApprovalState::parse(s).ok_or(s)) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(s)) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "`state={}` is not one of pending, granted, denied, used",
                    s.escape_default()
                ),
            )
            .into_response();
        }
    };
    let identity = match q.identity.as_deref().map(IdentityId::parse) {
        None => None,
        Some(Ok(i)) => Some(i),
        Some(Err(e)) => {
            return Problem::new(StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIST).contains(&limit) {
        return Problem::new(StatusCode::BAD_REQUEST, "`limit` is 1 to 1000").into_response();
    }
    let Some(store) = st.sink.approvals() else {
        return no_approvals();
    };
    let filter = ApprovalFilter {
        state,
        identity,
        limit,
    };
    match store.list(&filter).await {
        Ok(all) => {
            let items: Vec<Value> = all
                .iter()
                .map(|a| view(a, st.engine.decide_url(&a.id)))
                .collect();
            axum::Json(json!({ "approvals": items })).into_response()
        }
        Err(e) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn show(State(st): State<AdminState>, Path(id): Path<String>) -> Response {
    let id = match ApprovalId::parse(&id) {
        Ok(id) => id,
        Err(e) => return Problem::new(StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let Some(store) = st.sink.approvals() else {
        return no_approvals();
    };
    match store.get(&id).await {
        Ok(Some(a)) => axum::Json(view(&a, st.engine.decide_url(&a.id))).into_response(),
        Ok(None) => {
            Problem::new(StatusCode::NOT_FOUND, format!("no approval `{id}`")).into_response()
        }
        Err(e) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    reason: String,
}

async fn grant(
    st: State<AdminState>,
    id: Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer(st, id, headers, body, Resolution::Grant).await
}

async fn deny(st: State<AdminState>, id: Path<String>, headers: HeaderMap, body: Body) -> Response {
    answer(st, id, headers, body, Resolution::Deny).await
}

async fn answer(
    State(st): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
    resolution: Resolution,
) -> Response {
    if !is_json(&headers) {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send `{\"reason\": \"...\"}` as `application/json`",
        )
        .into_response();
    }
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let token = match (auth.next(), auth.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Problem::new(StatusCode::BAD_REQUEST, "send one `Authorization` header")
                .into_response();
        }
        (Some(v), None) => match v
            .to_str()
            .map_err(|_| "not text".to_owned())
            .and_then(BearerToken::from_authorization)
        {
            Ok(t) => Some(t),
            Err(e) => {
                return Problem::new(StatusCode::BAD_REQUEST, format!("`Authorization`: {e}"))
                    .into_response();
            }
        },
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
        )
        .into_response();
    };
    // An object, and only `reason` in it (serde would also read a struct from an array).
    let parsed = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
        .and_then(|v| serde_json::from_value::<Answer>(v).ok());
    let Some(Answer { reason }) = parsed else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "the answer is `{\"reason\": \"...\"}` and nothing else",
        )
        .into_response();
    };
    let step = uuid::Uuid::now_v7().to_string();
    let work = st.engine.answer_approval(
        &id,
        token.as_ref(),
        resolution,
        &reason,
        st.sink.as_ref(),
        step.clone(),
    );
    match work.await {
        Ok(a) => {
            let mut v = view(&a, st.engine.decide_url(&a.id));
            if let Value::Object(m) = &mut v {
                m.insert("decision_id".into(), json!(step));
            }
            axum::Json(v).into_response()
        }
        Err(e) => {
            let status = match e {
                AnswerError::BadRequest(_) => StatusCode::BAD_REQUEST,
                AnswerError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                AnswerError::Forbidden(_) => StatusCode::FORBIDDEN,
                AnswerError::NotFound(_) => StatusCode::NOT_FOUND,
                AnswerError::Conflict(_) => StatusCode::CONFLICT,
                AnswerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            Problem::new(status, e.to_string())
                .with("decision_id", json!(step))
                .into_response()
        }
    }
}

/// The `wait` preference of a request's `Prefer` headers (RFC 7240 §4.3), bounded by
/// `max_s`; `None` when absent or unreadable (a preference is a hint: one that cannot be
/// read is ignored, as §2 asks).
pub fn prefer_wait(headers: &HeaderMap, max_s: u64) -> Option<Duration> {
    let mut wait = None;
    for v in headers.get_all("prefer") {
        let Ok(v) = v.to_str() else { continue };
        for pref in v.split(',') {
            let token = pref.split(';').next().unwrap_or("").trim();
            let Some((name, value)) = token.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("wait") {
                continue;
            }
            let value = value.trim().trim_matches('"');
            if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            // The first readable `wait` counts (RFC 7240 §2: later ones are ignored).
            if wait.is_none() {
                wait = value.parse::<u64>().ok();
            }
        }
    }
    wait.filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s.min(max_s)))
}

/// Waits until approval `id` is answered (or has expired), at most `wait`; the approval as
/// it then stands.
pub async fn await_answer(
    store: &dyn ApprovalStore,
    id: &ApprovalId,
    wait: Duration,
) -> Option<Approval> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let current = store.get(id).await.ok().flatten()?;
        if current.state != ApprovalState::Pending || current.is_expired(now) {
            return Some(current);
        }
        if tokio::time::Instant::now() + POLL > deadline {
            return Some(current);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn prefer_wait_is_read_leniently_and_bounded() {
        let h = |vals: &[&str]| {
            let mut m = HeaderMap::new();
            for v in vals {
                m.append("prefer", v.parse().unwrap());
            }
            prefer_wait(&m, 60)
        };
        assert_eq!(h(&[]), None);
        assert_eq!(h(&["wait=5"]), Some(Duration::from_secs(5)));
        assert_eq!(
            h(&["respond-async, WAIT = 7"]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(h(&["wait=\"3\"; foo=bar"]), Some(Duration::from_secs(3)));
        assert_eq!(h(&["wait=3600"]), Some(Duration::from_secs(60)), "bounded");
        assert_eq!(h(&["wait=99999999999"]), None, "too long to read");
        assert_eq!(h(&["wait=-1", "wait=abc", "wait="]), None);
        assert_eq!(h(&["wait=0"]), None);
        assert_eq!(
            h(&["wait=2", "wait=9"]),
            Some(Duration::from_secs(2)),
            "the first counts"
        );
    }
}
