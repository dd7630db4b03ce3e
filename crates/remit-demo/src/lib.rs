//! Built-in demo upstreams that `remit demo` starts for the quickstart.
//!
//! Two small servers stand in for the systems a gateway would normally front:
//!
//! - [`serve_http_api`]: a JSON HTTP API (support tickets, pull requests,
//!   builds, deployments and inventory) with bounded in-memory state.
//! - [`serve_docs_mcp`]: an MCP server over Streamable HTTP at
//!   [`DOCS_MCP_PATH`] exposing a read-only `search_docs` tool and a
//!   destructive `admin_reindex` tool.
//!
//! Both echo the `remit-*` headers the gateway added (see
//! [`ECHOED_HEADERS`]) so someone trying the quickstart can see what reached
//! the upstream. Each server runs on a listener the caller binds, which lets
//! tests use `127.0.0.1:0`.

mod corpus;
mod docs_mcp;
mod echo;
mod http_api;
mod problem;

pub use docs_mcp::{DOCS_MCP_PATH, docs_mcp_router, serve_docs_mcp};
pub use echo::ECHOED_HEADERS;
pub use http_api::{MAX_BODY_BYTES, MAX_ENTRIES, router, serve_http_api};
