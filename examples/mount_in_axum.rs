//! MCP tools added to an existing axum application, which keeps its own routes.
//!
//! - `GET /api/hello`: public, untouched by OAuth.
//! - `GET /api/me`: protected by the same token validation as the MCP endpoint, as a plain route.
//! - `/mcp`: the MCP endpoint (one tool, `hello`), with its RFC 9728 metadata at
//!   `/.well-known/oauth-protected-resource/mcp`.
//! - `/health` and `/ready` from the MCP server, since this app has none of its own.
//!
//! Configuration comes from the same environment variables and `.env` as `scalekit-mcp serve`
//! (`SK_ENV_URL`, `EXPECTED_AUDIENCE`, `PROTECTED_RESOURCE_METADATA`, `SCALEKIT_MCP_DEV`…); the
//! port from `--port` (default 3000).
//!
//! ```sh
//! SCALEKIT_MCP_DEV=1 cargo run --example mount_in_axum -- --port 3000   # offline
//! ```

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use scalekit_mcp::{Authenticated, ConfigBuilder, McpServer};
use serde_json::{Value, json};

/// The MCP side of the application: one tool.
#[derive(Clone)]
struct Hello {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Hello {
    #[tool(description = "Says hello to the authenticated caller.")]
    async fn hello(&self, caller: Authenticated) -> String {
        format!(
            "hello, {}",
            caller.sub.as_deref().unwrap_or("whoever you are")
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Hello {}

/// The application's own public route.
async fn hello() -> &'static str {
    "hello from the app"
}

/// The application's own protected route: the caller from the validated token.
async fn me(caller: Authenticated) -> Json<Value> {
    Json(json!({
        "sub": caller.sub,
        "org_id": caller.org_id,
        "scopes": caller.scopes,
    }))
}

/// `--port N` (or `--port=N`) from the command line; 3000 without it.
fn port() -> anyhow::Result<u16> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = match args.as_slice() {
        [] => return Ok(3000),
        [flag, value] if flag == "--port" => value.clone(),
        [flag] if flag.starts_with("--port=") => flag["--port=".len()..].to_owned(),
        _ => anyhow::bail!("unexpected arguments {args:?}: the only flag is --port N"),
    };
    value
        .parse()
        .with_context(|| format!("--port {value:?} is not a port number"))
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mount_in_axum: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let port = port()?;
    let config = ConfigBuilder::from_env()?
        .port(port)
        .mcp_path("/mcp")
        .build()?;
    let mcp = McpServer::new(
        config,
        Hello {
            tool_router: Hello::tool_router(),
        },
    )?;

    let app = Router::new()
        .route("/api/hello", get(hello))
        .route("/api/me", get(me).layer(mcp.auth_layer()))
        .merge(mcp.router())
        .merge(mcp.health_router());

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let shutdown = mcp.shutdown_token();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Ends open MCP streams, so the server can finish.
            shutdown.cancel();
        })
        .await?;
    Ok(())
}
