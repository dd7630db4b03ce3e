//! The demo MCP upstream: an internal-docs server built on `rmcp`, served
//! over Streamable HTTP at [`DOCS_MCP_PATH`] with stateful sessions
//! (`Mcp-Session-Id`).
//!
//! Tools:
//! - `search_docs` (read-only): case-insensitive term search over the
//!   built-in runbook corpus.
//! - `admin_reindex` (destructive): pretends to rebuild the search index.
//!
//! Tool results carry the gateway-added `remit-*` headers in their `_meta`
//! under `seen_by_upstream`.

use std::sync::Arc;

use axum::Router;
use http::request::Parts;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ContentBlock, Implementation, JsonObject, MetaObject, ServerCapabilities,
        ServerConfig,
    },
    schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    corpus::{self, CORPUS},
    echo::SeenByUpstream,
    http_api::MAX_BODY_BYTES,
};

/// Where the docs MCP server answers.
pub const DOCS_MCP_PATH: &str = "/mcp/docs";

const DEFAULT_LIMIT: u32 = 5;
const MAX_LIMIT: u32 = 20;

/// Serves the docs MCP server on `listener` until the listener fails.
///
/// Open MCP sessions are closed when this future ends or is dropped.
pub async fn serve_docs_mcp(listener: TcpListener) -> std::io::Result<()> {
    let shutdown = CancellationToken::new();
    let _close_sessions = shutdown.clone().drop_guard();
    axum::serve(listener, docs_mcp_router(shutdown)).await
}

/// The docs MCP server as an axum router, mounted at [`DOCS_MCP_PATH`].
///
/// Cancelling `shutdown` closes every open session. As the SDK does by
/// default, only requests whose `Host` is a loopback name or address
/// (`localhost`, `127.0.0.1`, `::1`, any port) are accepted, as a guard
/// against DNS rebinding.
pub fn docs_mcp_router(shutdown: CancellationToken) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    let service = StreamableHttpService::new(
        || Ok(DocsServer::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new().nest_service(DOCS_MCP_PATH, service)
}

/// Arguments of `search_docs`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SearchDocsArgs {
    /// Words to look for; a document matches if it contains any of them
    /// (case-insensitive).
    query: String,
    /// How many documents to return at most (default 5, at most 20).
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    limit: Option<u32>,
}

/// One MCP session's server; every session gets its own.
#[derive(Debug, Clone)]
struct DocsServer {
    tool_router: ToolRouter<Self>,
}

impl DocsServer {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl DocsServer {
    #[tool(
        name = "search_docs",
        description = "Search Fernhill Outfitters' internal runbooks (deploys, rollbacks, on-call, \
                       incident severity, inventory sync, support escalation, refunds, credential \
                       rotation). A document matches if it contains any of the query's words \
                       (case-insensitive). Returns one text block per match: title, URL and text.",
        annotations(
            title = "Search internal docs",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn search_docs(
        &self,
        Parameters(args): Parameters<SearchDocsArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let terms = corpus::terms(&args.query);
        if terms.is_empty() {
            return Err(ErrorData::invalid_params(
                "`query` must contain at least one word",
                None,
            ));
        }
        let limit = args.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let hits = corpus::search(&terms, limit as usize);
        let content = if hits.is_empty() {
            vec![ContentBlock::text(format!(
                "No documents matched {:?}.",
                args.query
            ))]
        } else {
            hits.into_iter()
                .map(|doc| {
                    ContentBlock::text(format!("{}\n{}\n\n{}", doc.title, doc.url, doc.text))
                })
                .collect()
        };
        Ok(CallToolResult::success(content).with_meta(echo_meta(&context)))
    }

    #[tool(
        name = "admin_reindex",
        description = "Rebuild the docs search index from scratch. Administrators only: the \
                       current index is dropped while it rebuilds.",
        annotations(
            title = "Rebuild the docs index",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn admin_reindex(&self, context: RequestContext<RoleServer>) -> CallToolResult {
        let message = format!("reindexed {} documents", CORPUS.len());
        CallToolResult::success(vec![ContentBlock::text(message)]).with_meta(echo_meta(&context))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DocsServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "remit-demo-docs",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Internal docs of Fernhill Outfitters (a demo). Use search_docs to find \
                 runbooks; admin_reindex is for administrators.",
            )
    }
}

/// The `_meta` of a tool result: the echoed `remit-*` headers of the HTTP
/// request that carried the call (`None` if it did not come over HTTP).
fn echo_meta(context: &RequestContext<RoleServer>) -> Option<MetaObject> {
    let parts = context.extensions.get::<Parts>()?;
    let seen = SeenByUpstream::from_headers(&parts.headers);
    let mut meta = JsonObject::new();
    meta.insert("seen_by_upstream".to_owned(), seen.to_json());
    Some(MetaObject::from(meta))
}
