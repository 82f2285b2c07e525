//! The `scalekit-mcp` binary's own tools: one rmcp handler like any library user's, given to
//! the server the same way. The same over HTTP and stdio.
//!
//! - `greet_user`: the seed's greeting, word for word.
//! - `whoami`: the caller as the validated token describes them, read from the request
//!   extensions the auth middleware filled in. Over stdio there is no HTTP identity, and it says so.

use std::sync::Arc;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{
    CallToolResult, ContentBlock, Extensions, Implementation, ServerCapabilities, ServerConfig,
};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;

use crate::auth::time::iso8601;
use crate::auth::validate::Caller;

/// Arguments of `greet_user`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GreetArgs {
    /// The name of the person to greet.
    pub name: String,
}

/// The tool set; one instance per MCP session (with `--stateless`, per request), so cloning it
/// must be cheap: the router is built once and shared.
#[derive(Clone)]
pub struct ScalekitTools {
    tool_router: Arc<ToolRouter<Self>>,
}

impl Default for ScalekitTools {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl ScalekitTools {
    pub fn new() -> Self {
        Self {
            tool_router: Arc::new(Self::tool_router()),
        }
    }

    #[tool(description = "Greets the user with a personalized message.")]
    async fn greet_user(&self, Parameters(GreetArgs { name }): Parameters<GreetArgs>) -> String {
        format!("Hi {name}, welcome to Scalekit!")
    }

    #[tool(
        description = "Describes the authenticated caller from their access token: subject, client id, \
                       organization, scopes, issuer and expiry. Over stdio there is no OAuth identity."
    )]
    async fn whoami(&self, extensions: Extensions) -> CallToolResult {
        match Caller::of(&extensions) {
            Some(caller) => CallToolResult::structured(whoami_document(&caller)),
            None => CallToolResult::success(vec![ContentBlock::text(
                "no HTTP identity: this session is served over stdio, where MCP uses no OAuth token",
            )]),
        }
    }
}

fn whoami_document(caller: &Caller) -> serde_json::Value {
    serde_json::json!({
        "sub": caller.sub,
        "client_id": caller.client_id,
        "org_id": caller.org_id,
        "scopes": caller.scopes,
        "issuer": caller.issuer,
        "audience": caller.audiences,
        "expires_at": caller.expires_at.map(iso8601),
    })
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ScalekitTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("scalekit-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools behind Scalekit OAuth: greet_user greets someone by name; whoami describes the \
                 authenticated caller.",
            )
    }
}
