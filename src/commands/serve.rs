//! `scalekit-mcp serve`: the OAuth-protected MCP server, over Streamable HTTP or stdio.
//!
//! Every setting is a flag that names its environment variable ([`ServeArgs`], in `config`); the
//! seed's variables (SK_ENV_URL, EXPECTED_AUDIENCE, PROTECTED_RESOURCE_METADATA, PORT,
//! LOG_LEVEL…) are read under their own names, from the environment or a `.env` in the working
//! directory, so a team running the Python pattern can point this binary at the same `.env`.

use crate::config::ServeArgs;
use crate::logging;
use crate::auth::tool_scopes::ToolScopes;
use crate::tools::ScalekitTools;

/// Runs the server with the built-in tools until SIGINT / SIGTERM.
/// With an upstream (`--upstream URL`, or a command after `--`), its tools instead.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let upstream = crate::gateway::upstream_of(&args)?;
    logging::init(args.log_format, args.log_level.as_deref(), "info");
    match upstream {
        Some(upstream) => {
            tracing::info!("serving {} behind OAuth", upstream.describe());
            let gateway = crate::gateway::Gateway::new(std::sync::Arc::new(upstream));
            crate::server::run(&args, gateway, ToolScopes::default()).await
        }
        None => crate::server::run(&args, ScalekitTools::new(), ToolScopes::default()).await,
    }
}
