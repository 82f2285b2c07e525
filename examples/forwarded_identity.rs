//! An upstream MCP server for the gateway (`scalekit-mcp serve -- <command>`): a stdio server
//! with no OAuth of its own, that reads who is calling from what the gateway forwards.
//!
//! - `MCP_FORWARDED_USER`, `MCP_FORWARDED_ORG_ID`, `MCP_FORWARDED_CLIENT_ID` and
//!   `MCP_FORWARDED_SCOPES` in its environment: the caller who opened the session (the gateway
//!   starts one process per session);
//! - `_meta["scalekit-mcp/caller"]` on every request: the caller of that request.
//!
//! Its second tool, `steps`, sends progress notifications and answers straight after the last
//! one: the gateway's tests use it to see that progress reaches the client in order and before
//! the answer.
//!
//! ```sh
//! cargo build --example forwarded_identity
//! scalekit-mcp serve --dev -- target/debug/examples/forwarded_identity
//! ```

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{
    Implementation, ProgressNotificationParam, RequestMetaObject, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Clone)]
struct ForwardedIdentity {
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Steps {
    /// How many progress notifications to send.
    count: u32,
}

#[tool_router]
impl ForwardedIdentity {
    #[tool(
        description = "Who is calling: the session's caller (environment) and this request's (_meta)."
    )]
    async fn identity(&self, meta: RequestMetaObject) -> String {
        let variable = |name: &str| std::env::var(name).ok();
        json!({
            "session": {
                "user": variable("MCP_FORWARDED_USER"),
                "org_id": variable("MCP_FORWARDED_ORG_ID"),
                "client_id": variable("MCP_FORWARDED_CLIENT_ID"),
                "scopes": variable("MCP_FORWARDED_SCOPES"),
            },
            "request": meta.0.get("scalekit-mcp/caller").cloned().unwrap_or(Value::Null),
        })
        .to_string()
    }

    #[tool(description = "Sends `count` progress notifications, then answers at once.")]
    async fn steps(
        &self,
        Parameters(Steps { count }): Parameters<Steps>,
        context: RequestContext<RoleServer>,
    ) -> String {
        if let Some(token) = context.meta.get_progress_token() {
            for step in 1..=count {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(count));
                let _ = context.peer.notify_progress(progress).await;
            }
        }
        format!("sent {count} progress notifications")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ForwardedIdentity {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("forwarded-identity", "1.0.0"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = ForwardedIdentity {
        tool_router: ForwardedIdentity::tool_router(),
    };
    server
        .serve(rmcp::transport::stdio())
        .await?
        .waiting()
        .await?;
    Ok(())
}
