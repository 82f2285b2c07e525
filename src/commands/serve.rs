//! `scalekit-mcp serve`: the OAuth-protected MCP server, over Streamable HTTP or stdio.
//!
//! Every setting is a flag that names its environment variable ([`ServeArgs`], in `config`); the
//! seed's variables (SK_ENV_URL, EXPECTED_AUDIENCE, PROTECTED_RESOURCE_METADATA, PORT,
//! LOG_LEVEL…) are read under their own names, from the environment or a `.env` in the working
//! directory, so a team running the Python pattern can point this binary at the same `.env`.

use crate::config::ServeArgs;

/// `--max-sessions` when a command is served and the flag is not given: each session is a
/// process, so the cap is lower than the 1,000 of plain sessions.
const COMMAND_MAX_SESSIONS: usize = 100;
use crate::logging;
use crate::auth::tool_scopes::ToolScopes;
use crate::tools::ScalekitTools;

/// Runs the server with the built-in tools until SIGINT / SIGTERM.
/// With an upstream (`--upstream URL`, or a command after `--`), its tools instead.
/// `max_sessions_set`: whether `--max-sessions` was given, rather than left at its default.
pub async fn run(mut args: ServeArgs, max_sessions_set: bool) -> anyhow::Result<()> {
    let upstream = crate::gateway::upstream_of(&args)?;
    logging::init(args.log_format, args.log_level.as_deref(), "info");
    match upstream {
        Some(upstream) => {
            let command = matches!(upstream.target, crate::gateway::upstream::Target::Command { .. });
            if command && !max_sessions_set {
                args.max_sessions = COMMAND_MAX_SESSIONS;
            }
            let children = if command { " (one process each)" } else { "" };
            tracing::info!(
                "serving {} behind OAuth, at most {} sessions{children} (--max-sessions)",
                upstream.describe(),
                args.max_sessions
            );
            let gateway = crate::gateway::Gateway::new(std::sync::Arc::new(upstream));
            crate::server::run(&args, gateway, ToolScopes::default()).await
        }
        None => crate::server::run(&args, ScalekitTools::new(), ToolScopes::default()).await,
    }
}
