//! `scalekit-mcp tools [--json] [-- COMMAND…]`: lists a server's tools with their parameters,
//! following pagination, so `call` is easy to write.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::call::ConnectionArgs;
use crate::client::mcp::with_session;
use crate::client::render;

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Run a stdio MCP server and list its tools instead of an HTTP server's, e.g.
    /// `-- scalekit-mcp serve --transport stdio`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(args: &ToolsArgs) -> anyhow::Result<ExitCode> {
    match list(args).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) if args.connection.json => {
            eprintln!("{}", crate::output::json_error(&error));
            Ok(crate::error::exit_code_for(&error).into())
        }
        Err(error) => Err(error),
    }
}

async fn list(args: &ToolsArgs) -> anyhow::Result<()> {
    let connection = args.connection.connection(&args.command)?;
    let spinner = crate::output::delayed_spinner("listing tools…", Duration::from_millis(300));
    let tools = with_session(&connection, async |peer| Ok(peer.list_all_tools().await?)).await;
    drop(spinner);
    let tools: Vec<serde_json::Value> = tools?
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let mut stdout = std::io::stdout().lock();
    if args.connection.json {
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "tools": tools }))?
        )?;
    } else {
        write!(stdout, "{}", render::tool_list(&tools))?;
    }
    stdout.flush()?;
    Ok(())
}
