//! An upstream MCP server for the gateway (`scalekit-mcp serve -- <command>`): a stdio server
//! with no OAuth of its own, that reads who is calling from what the gateway forwards.
//!
//! - `MCP_FORWARDED_USER`, `MCP_FORWARDED_ORG_ID`, `MCP_FORWARDED_CLIENT_ID` and
//!   `MCP_FORWARDED_SCOPES` in its environment: the caller who opened the session (the gateway
//!   starts one process per session);
//! - `_meta["scalekit-mcp/caller"]` on every request: the caller of that request.
//!
//! ```sh
//! cargo build --example forwarded_identity
//! scalekit-mcp serve --dev -- target/debug/examples/forwarded_identity
//! ```

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{Implementation, RequestMetaObject, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde_json::{Value, json};

#[derive(Clone)]
struct ForwardedIdentity {
    tool_router: ToolRouter<Self>,
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
