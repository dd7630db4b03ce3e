//! The demo HTTP API upstream: support tickets, pull requests, builds,
//! deployments and inventory, kept in bounded in-memory state.
//!
//! Every JSON response, errors included, carries a `seen_by_upstream` object
//! echoing the gateway-added `remit-*` headers. Errors are RFC 9457 problem
//! details. Nothing here persists: each [`router`] starts from the same seed
//! data.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{HeaderMap, StatusCode, request::Parts};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::{net::TcpListener, sync::RwLock};

use crate::{echo::SeenByUpstream, problem::Problem};

/// The largest request body the HTTP API accepts (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The most entries any one in-memory collection holds (ticket events, pull
/// requests, deployments, inventory items). Writes beyond it get `507`.
pub const MAX_ENTRIES: usize = 10_000;

/// Longest repository name or SKU accepted in a path.
const MAX_NAME_LEN: usize = 100;
/// Longest comment body.
const MAX_COMMENT_LEN: usize = 4_096;
/// Longest short text field (titles, branch names, environments).
const MAX_LABEL_LEN: usize = 256;

/// Serves the demo HTTP API on `listener` until the listener fails.
pub async fn serve_http_api(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}

/// The demo HTTP API as an axum router with fresh, seeded state.
pub fn router() -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/tickets", get(list_tickets))
        .route("/tickets/{id}", get(get_ticket))
        .route("/tickets/{id}/history", get(ticket_history))
        .route("/tickets/{id}/comments", post(add_comment))
        .route("/repos/{repo}/pulls", post(create_pull))
        .route("/repos/{repo}/builds/{id}", get(get_build))
        .route("/repos/{repo}/deployments", post(create_deployment))
        .route(
            "/inventory/{sku}",
            get(get_item).put(put_item).delete(delete_item),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState::default())
}

type Shared = Arc<RwLock<Store>>;

#[derive(Debug, Clone, Default)]
struct AppState {
    store: Shared,
}

// ---------------------------------------------------------------------------
// Responses and extractors
// ---------------------------------------------------------------------------

type ApiResult<T> = Result<Reply<T>, Problem>;

/// A JSON success response with the header echo merged into the body.
struct Reply<T> {
    status: StatusCode,
    body: T,
    seen_by_upstream: SeenByUpstream,
}

#[derive(Serialize)]
struct Echoed<'a, T> {
    #[serde(flatten)]
    body: &'a T,
    seen_by_upstream: &'a SeenByUpstream,
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        let body = Echoed {
            body: &self.body,
            seen_by_upstream: &self.seen_by_upstream,
        };
        (self.status, Json(body)).into_response()
    }
}

impl SeenByUpstream {
    fn reply<T>(self, status: StatusCode, body: T) -> Reply<T> {
        Reply {
            status,
            body,
            seen_by_upstream: self,
        }
    }

    fn ok<T>(self, body: T) -> Reply<T> {
        self.reply(StatusCode::OK, body)
    }

    fn problem(&self, status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem::new(status, detail, self.clone())
    }
}

/// Path parameters whose rejections become problem details.
struct ApiPath<T>(T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::new(
                rejection.status(),
                rejection.body_text(),
                SeenByUpstream::from_headers(&parts.headers),
            )),
        }
    }
}

/// A JSON request body whose rejections become problem details.
///
/// The body is parsed as JSON whatever its `Content-Type`, so a quick
/// `curl -d '{...}'` works without extra flags.
struct ApiJson<T>(T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let seen = SeenByUpstream::from_headers(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let detail = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                format!("request body exceeds {MAX_BODY_BYTES} bytes")
            } else {
                rejection.body_text()
            };
            seen.problem(rejection.status(), detail)
        })?;
        serde_json::from_slice(&bytes).map(Self).map_err(|error| {
            seen.problem(StatusCode::BAD_REQUEST, format!("invalid JSON: {error}"))
        })
    }
}

async fn no_route(seen: SeenByUpstream) -> Problem {
    seen.problem(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed(seen: SeenByUpstream) -> Problem {
    seen.problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route; see the Allow header",
    )
}

// ---------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------

/// Checks a repository name or SKU taken from the path.
fn check_name(seen: &SeenByUpstream, what: &str, name: &str) -> Result<(), Problem> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(seen.problem(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid {what} {name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
            ),
        ))
    }
}

/// Checks a required text field from a request body.
fn check_text(seen: &SeenByUpstream, field: &str, value: &str, max: usize) -> Result<(), Problem> {
    if value.trim().is_empty() {
        Err(seen.problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{field}` must not be empty"),
        ))
    } else if value.len() > max {
        Err(seen.problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{field}` must be at most {max} bytes"),
        ))
    } else {
        Ok(())
    }
}

fn collection_full(seen: &SeenByUpstream, what: &str) -> Problem {
    seen.problem(
        StatusCode::INSUFFICIENT_STORAGE,
        format!("the demo keeps at most {MAX_ENTRIES} {what}; restart it to start over"),
    )
}

fn parse_id(seen: &SeenByUpstream, what: &str, raw: &str) -> Result<u64, Problem> {
    raw.parse::<u64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| seen.problem(StatusCode::NOT_FOUND, format!("no {what} with id {raw:?}")))
}

fn now() -> String {
    let now = OffsetDateTime::now_utc();
    now.format(&Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Who did something, as the gateway told us: the principal acted for,
/// else the calling identity.
fn actor(headers: &HeaderMap) -> String {
    ["remit-on-behalf-of", "remit-identity"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned()
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
struct Ticket {
    id: u64,
    subject: String,
    customer: String,
    /// The support queue that owns it (`support`, `billing`, `escalations`).
    queue: &'static str,
    status: &'static str,
    priority: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct TicketEvent {
    seq: u64,
    at: String,
    kind: &'static str,
    actor: String,
    detail: String,
}

#[derive(Debug, Clone, Serialize)]
struct Comment {
    id: u64,
    ticket_id: u64,
    author: String,
    body: String,
    created_at: String,
}

#[derive(Debug, Clone, Serialize)]
struct PullRequest {
    number: u64,
    repo: String,
    title: String,
    head: String,
    base: String,
    state: &'static str,
    author: String,
    created_at: String,
}

#[derive(Debug, Clone, Serialize)]
struct Deployment {
    id: u64,
    repo: String,
    #[serde(rename = "ref")]
    git_ref: String,
    environment: String,
    status: &'static str,
    requested_by: String,
    created_at: String,
}

#[derive(Debug, Clone, Serialize)]
struct InventoryItem {
    sku: String,
    quantity: u32,
    updated_at: String,
}

#[derive(Debug)]
struct Store {
    tickets: BTreeMap<u64, Ticket>,
    /// Events per ticket id; `event_count` totals them against [`MAX_ENTRIES`].
    history: HashMap<u64, Vec<TicketEvent>>,
    event_count: usize,
    next_event_seq: u64,
    next_comment_id: u64,
    /// Pull requests per repository; `pull_count` totals them.
    pulls: HashMap<String, Vec<PullRequest>>,
    pull_count: usize,
    deployments: Vec<Deployment>,
    inventory: BTreeMap<String, InventoryItem>,
}

impl Default for Store {
    fn default() -> Self {
        let seed_time = "2025-01-06T09:00:00Z";
        let tickets = [
            (
                1,
                "Order #1042 arrived damaged",
                "Dana Whitfield",
                "support",
                "open",
                "high",
            ),
            (
                2,
                "Cannot reset my password",
                "Priya Raman",
                "support",
                "pending",
                "normal",
            ),
            (
                3,
                "Invoice shows the wrong VAT number",
                "Lukas Berger",
                "billing",
                "open",
                "normal",
            ),
            (
                4,
                "Bulk order discount not applied",
                "Oak & Ivy Ltd.",
                "escalations",
                "escalated",
                "high",
            ),
            (
                5,
                "Thanks for the quick replacement!",
                "Sam Okafor",
                "support",
                "solved",
                "low",
            ),
        ];
        let mut store = Self {
            tickets: BTreeMap::new(),
            history: HashMap::new(),
            event_count: 0,
            next_event_seq: 1,
            next_comment_id: 1,
            pulls: HashMap::new(),
            pull_count: 0,
            deployments: Vec::new(),
            inventory: BTreeMap::new(),
        };
        for (id, subject, customer, queue, status, priority) in tickets {
            store.tickets.insert(
                id,
                Ticket {
                    id,
                    subject: subject.to_owned(),
                    customer: customer.to_owned(),
                    queue,
                    status,
                    priority,
                },
            );
            store.push_event(id, seed_time.to_owned(), "created", customer, subject);
            if status != "open" {
                store.push_event(
                    id,
                    seed_time.to_owned(),
                    "status_changed",
                    "support-bot",
                    &format!("open -> {status}"),
                );
            }
        }
        for (sku, quantity) in [("WIDGET-001", 42), ("GADGET-002", 7), ("GIZMO-003", 0)] {
            store.inventory.insert(
                sku.to_owned(),
                InventoryItem {
                    sku: sku.to_owned(),
                    quantity,
                    updated_at: seed_time.to_owned(),
                },
            );
        }
        store
    }
}

impl Store {
    fn push_event(
        &mut self,
        ticket_id: u64,
        at: String,
        kind: &'static str,
        actor: &str,
        detail: &str,
    ) {
        let seq = self.next_event_seq;
        self.next_event_seq += 1;
        self.event_count += 1;
        self.history
            .entry(ticket_id)
            .or_default()
            .push(TicketEvent {
                seq,
                at,
                kind,
                actor: actor.to_owned(),
                detail: detail.to_owned(),
            });
    }
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

async fn status(seen: SeenByUpstream) -> Reply<Status> {
    seen.ok(Status { status: "ok" })
}

#[derive(Serialize)]
struct TicketList {
    tickets: Vec<Ticket>,
}

#[derive(Deserialize)]
struct ListQuery {
    queue: Option<String>,
}

/// Every ticket, or those of one queue (`?queue=`). The upstream itself does not limit
/// who sees what: that is remit's approved record set.
async fn list_tickets(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    Query(q): Query<ListQuery>,
) -> ApiResult<TicketList> {
    let store = app.store.read().await;
    let tickets = store
        .tickets
        .values()
        .filter(|t| q.queue.as_deref().is_none_or(|want| t.queue == want))
        .cloned()
        .collect();
    Ok(seen.ok(TicketList { tickets }))
}

async fn get_ticket(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Ticket> {
    let id = parse_id(&seen, "ticket", &id)?;
    let store = app.store.read().await;
    let ticket =
        store.tickets.get(&id).cloned().ok_or_else(|| {
            seen.problem(StatusCode::NOT_FOUND, format!("no ticket with id {id}"))
        })?;
    Ok(seen.ok(ticket))
}

#[derive(Serialize)]
struct History {
    ticket_id: u64,
    events: Vec<TicketEvent>,
}

async fn ticket_history(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<History> {
    let id = parse_id(&seen, "ticket", &id)?;
    let store = app.store.read().await;
    if !store.tickets.contains_key(&id) {
        return Err(seen.problem(StatusCode::NOT_FOUND, format!("no ticket with id {id}")));
    }
    let events = store.history.get(&id).cloned().unwrap_or_default();
    Ok(seen.ok(History {
        ticket_id: id,
        events,
    }))
}

#[derive(Deserialize)]
struct NewComment {
    body: String,
}

async fn add_comment(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(new): ApiJson<NewComment>,
) -> ApiResult<Comment> {
    let id = parse_id(&seen, "ticket", &id)?;
    check_text(&seen, "body", &new.body, MAX_COMMENT_LEN)?;
    let author = actor(&headers);
    let mut store = app.store.write().await;
    if !store.tickets.contains_key(&id) {
        return Err(seen.problem(StatusCode::NOT_FOUND, format!("no ticket with id {id}")));
    }
    if store.event_count >= MAX_ENTRIES {
        return Err(collection_full(&seen, "ticket events"));
    }
    let comment = Comment {
        id: store.next_comment_id,
        ticket_id: id,
        author,
        body: new.body,
        created_at: now(),
    };
    store.next_comment_id += 1;
    store.push_event(
        id,
        comment.created_at.clone(),
        "comment",
        &comment.author,
        &comment.body,
    );
    Ok(seen.reply(StatusCode::CREATED, comment))
}

#[derive(Deserialize)]
struct NewPull {
    title: String,
    head: String,
    base: String,
}

async fn create_pull(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    headers: HeaderMap,
    ApiPath(repo): ApiPath<String>,
    ApiJson(new): ApiJson<NewPull>,
) -> ApiResult<PullRequest> {
    check_name(&seen, "repository", &repo)?;
    check_text(&seen, "title", &new.title, MAX_LABEL_LEN)?;
    check_text(&seen, "head", &new.head, MAX_LABEL_LEN)?;
    check_text(&seen, "base", &new.base, MAX_LABEL_LEN)?;
    if new.head == new.base {
        return Err(seen.problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`head` and `base` must be different branches",
        ));
    }
    let author = actor(&headers);
    let mut store = app.store.write().await;
    if store.pull_count >= MAX_ENTRIES {
        return Err(collection_full(&seen, "pull requests"));
    }
    store.pull_count += 1;
    let pulls = store.pulls.entry(repo.clone()).or_default();
    let pull = PullRequest {
        number: pulls.len() as u64 + 1,
        repo,
        title: new.title,
        head: new.head,
        base: new.base,
        state: "open",
        author,
        created_at: now(),
    };
    pulls.push(pull.clone());
    Ok(seen.reply(StatusCode::CREATED, pull))
}

#[derive(Serialize)]
struct BuildStep {
    name: &'static str,
    status: &'static str,
    duration_s: u64,
}

#[derive(Serialize)]
struct Build {
    id: u64,
    repo: String,
    status: &'static str,
    duration_s: u64,
    steps: Vec<BuildStep>,
}

/// Build telemetry is synthesized from the build id, so any id exists and
/// the same id always reports the same numbers.
async fn get_build(
    seen: SeenByUpstream,
    ApiPath((repo, id)): ApiPath<(String, String)>,
) -> ApiResult<Build> {
    check_name(&seen, "repository", &repo)?;
    let id = parse_id(&seen, "build", &id)?;
    let (status, failing_step) = match id % 10 {
        7 => ("failed", Some(2)),
        9 => ("running", None),
        _ => ("passed", None),
    };
    let mut steps = Vec::new();
    for (index, name) in ["checkout", "build", "test", "package"]
        .into_iter()
        .enumerate()
    {
        let step_status = match (status, failing_step) {
            (_, Some(failed)) if index == failed => "failed",
            (_, Some(failed)) if index > failed => "skipped",
            ("running", _) if index == 2 => "running",
            ("running", _) if index > 2 => "pending",
            _ => "passed",
        };
        let duration_s = if matches!(step_status, "skipped" | "pending") {
            0
        } else {
            (id.wrapping_mul(31).wrapping_add(index as u64 * 17)) % 90 + 5
        };
        steps.push(BuildStep {
            name,
            status: step_status,
            duration_s,
        });
    }
    let duration_s = steps.iter().map(|step| step.duration_s).sum();
    Ok(seen.ok(Build {
        id,
        repo,
        status,
        duration_s,
        steps,
    }))
}

#[derive(Deserialize)]
struct NewDeployment {
    #[serde(rename = "ref")]
    git_ref: String,
    environment: String,
}

async fn create_deployment(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    headers: HeaderMap,
    ApiPath(repo): ApiPath<String>,
    ApiJson(new): ApiJson<NewDeployment>,
) -> ApiResult<Deployment> {
    check_name(&seen, "repository", &repo)?;
    check_text(&seen, "ref", &new.git_ref, MAX_LABEL_LEN)?;
    check_text(&seen, "environment", &new.environment, MAX_LABEL_LEN)?;
    let requested_by = actor(&headers);
    let mut store = app.store.write().await;
    if store.deployments.len() >= MAX_ENTRIES {
        return Err(collection_full(&seen, "deployments"));
    }
    let deployment = Deployment {
        id: store.deployments.len() as u64 + 1,
        repo,
        git_ref: new.git_ref,
        environment: new.environment,
        status: "queued",
        requested_by,
        created_at: now(),
    };
    store.deployments.push(deployment.clone());
    Ok(seen.reply(StatusCode::CREATED, deployment))
}

async fn get_item(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    ApiPath(sku): ApiPath<String>,
) -> ApiResult<InventoryItem> {
    check_name(&seen, "SKU", &sku)?;
    let store = app.store.read().await;
    let item = store.inventory.get(&sku).cloned().ok_or_else(|| {
        seen.problem(
            StatusCode::NOT_FOUND,
            format!("no SKU {sku:?} in inventory"),
        )
    })?;
    Ok(seen.ok(item))
}

#[derive(Deserialize)]
struct SetQuantity {
    quantity: u32,
}

async fn put_item(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    ApiPath(sku): ApiPath<String>,
    ApiJson(update): ApiJson<SetQuantity>,
) -> ApiResult<InventoryItem> {
    check_name(&seen, "SKU", &sku)?;
    let mut store = app.store.write().await;
    let exists = store.inventory.contains_key(&sku);
    if !exists && store.inventory.len() >= MAX_ENTRIES {
        return Err(collection_full(&seen, "inventory items"));
    }
    let item = InventoryItem {
        sku: sku.clone(),
        quantity: update.quantity,
        updated_at: now(),
    };
    store.inventory.insert(sku, item.clone());
    let status = if exists {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(seen.reply(status, item))
}

#[derive(Serialize)]
struct Deleted {
    sku: String,
    deleted: bool,
}

async fn delete_item(
    State(app): State<AppState>,
    seen: SeenByUpstream,
    ApiPath(sku): ApiPath<String>,
) -> ApiResult<Deleted> {
    check_name(&seen, "SKU", &sku)?;
    let mut store = app.store.write().await;
    if store.inventory.remove(&sku).is_none() {
        return Err(seen.problem(
            StatusCode::NOT_FOUND,
            format!("no SKU {sku:?} in inventory"),
        ));
    }
    Ok(seen.ok(Deleted { sku, deleted: true }))
}
