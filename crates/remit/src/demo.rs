//! `remit demo`: the quickstart world in one command. Writes the quickstart configuration
//! into a fresh data directory, starts the demo upstreams (an HTTP API and an MCP docs
//! server) and serves the gateway on it.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use remit_engine::load::load_engine;

const CONFIG: &str = include_str!("../../../examples/quickstart/remit.toml");
const POLICY: &str = include_str!("../../../examples/quickstart/policies/quickstart.cedar");

/// Where the demo HTTP API listens.
pub const DEMO_API: &str = "127.0.0.1:8450";
/// Where the demo MCP docs server listens.
pub const DEMO_MCP: &str = "127.0.0.1:8451";

pub async fn run(data_dir: Option<PathBuf>) -> Result<()> {
    let temp;
    let root = match data_dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new()
                .prefix("remit-demo-")
                .tempdir()
                .context("creating a temporary data directory")?;
            temp.path().to_path_buf()
        }
    };
    let world = root.join("quickstart");
    std::fs::create_dir_all(world.join("policies"))
        .with_context(|| format!("creating {}", world.display()))?;
    std::fs::write(world.join("remit.toml"), CONFIG)?;
    std::fs::write(world.join("policies/quickstart.cedar"), POLICY)?;
    let engine = load_engine(&world.join("remit.toml"))?;
    let gw = &engine.config().gateway;
    let doors = (gw.grpc_listen, gw.authz_listen);

    let api = tokio::net::TcpListener::bind(DEMO_API)
        .await
        .with_context(|| format!("binding the demo API on {DEMO_API}"))?;
    let mcp = tokio::net::TcpListener::bind(DEMO_MCP)
        .await
        .with_context(|| format!("binding the demo MCP server on {DEMO_MCP}"))?;
    tokio::spawn(async move {
        if let Err(e) = remit_demo::serve_http_api(api).await {
            tracing::error!(error = %e, "demo API stopped");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = remit_demo::serve_docs_mcp(mcp).await {
            tracing::error!(error = %e, "demo MCP server stopped");
        }
    });

    let (tx, rx) = tokio::sync::oneshot::channel();
    let data = root.join("data");
    let server = tokio::spawn(crate::serve(engine, data, Some(tx)));
    if let Ok((admin, proxy)) = rx.await {
        print_guide(admin, proxy, doors, &world);
    }
    server.await.context("the gateway task failed")?
}

fn print_guide(
    admin: std::net::SocketAddr,
    proxy: std::net::SocketAddr,
    (grpc, authz): (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>),
    world: &std::path::Path,
) {
    let off =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let (grpc, authz) = (off(grpc), off(authz));
    println!(
        r#"
remit demo is running.

  proxy          http://{proxy}   (every request is decided, recorded, then forwarded)
  decision API   http://{admin}/v1/decide
  ext_authz gRPC {grpc}   (Envoy: envoy.service.auth.v3.Authorization/Check)
  authz HTTP     http://{authz}/v1/authz   (Envoy HTTP ext_authz, nginx auth_request)
  demo API       http://{DEMO_API}   (tickets, repos, inventory; behind the proxy)
  demo MCP       http://{DEMO_MCP}/mcp/docs   (behind the proxy at http://{proxy}/mcp/docs)
  configuration  {world}/remit.toml

The demo keys are published and for this demo only.

Through the proxy (the support assistant reads a ticket, then tries to write):

  curl -s http://{proxy}/tickets/1 \
       -H 'Authorization: Bearer rk_demo_support_assistant' -H 'Remit-Purpose: case-summary'
  curl -s -X POST http://{proxy}/tickets/1/comments -d '{{"body":"hi"}}' \
       -H 'Authorization: Bearer rk_demo_support_assistant' -H 'Remit-Purpose: case-summary'

Ask the decision API without forwarding anything:

  curl -s http://{admin}/v1/decide -H 'content-type: application/json' -d '{{
    "method": "GET", "path": "/tickets/42",
    "headers": {{"Authorization": "Bearer rk_demo_support_assistant", "Remit-Purpose": "marketing"}}}}'

Try also: key rk_demo_codegen_workflow with POST /repos/web/deployments and purpose
code-change (approval_required); no key at all (unclassified); ?dry_run=true on /v1/decide.

Ask as nginx's auth_request would (200 allows, with the headers to send upstream):

  curl -si http://{authz}/v1/authz -H 'X-Original-Method: GET' -H 'X-Original-URI: /tickets/1' \
       -H 'Authorization: Bearer rk_demo_support_assistant' -H 'Remit-Purpose: case-summary'

Press Ctrl-C to stop.
"#,
        world = world.display()
    );
}
