//! `serve --transport stdio`: the same handler over stdin/stdout for a local MCP client.
//!
//! The MCP spec leaves stdio without OAuth: the client started this process and owns its pipes.
//! stdout carries protocol messages only; logs go to stderr (see `logging`).

use anyhow::Context;
use rmcp::{ServerHandler, ServiceExt};

/// Serves `handler` over stdin/stdout until the client closes them.
pub async fn run<H: ServerHandler>(handler: H) -> anyhow::Result<()> {
    tracing::info!("serving MCP over stdio (no OAuth on stdio)");
    let service = handler
        .serve(rmcp::transport::stdio())
        .await
        .context("starting the stdio MCP session")?;
    service
        .waiting()
        .await
        .context("running the stdio MCP session")?;
    Ok(())
}
