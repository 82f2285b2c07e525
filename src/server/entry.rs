//! The standard entry point of a library user's server binary: [`main`] is `scalekit-mcp serve`
//! with their handler, command line, `.env`, logging, exit codes and all.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use rmcp::ServerHandler;

use crate::auth::tool_scopes::ToolScopes;
use crate::config::ServeCommand;
use crate::error::exit_code_for;
use crate::logging;

/// Runs `handler` as `scalekit-mcp serve` runs its own tools: the same flags (every `serve` flag
/// is a flag of your binary), environment variables and `.env` file (the seed's `SK_ENV_URL`,
/// `EXPECTED_AUDIENCE`, `PROTECTED_RESOURCE_METADATA`, `PORT`…), `--dev`, `--stateless`,
/// `--transport stdio`, limits, logging to stderr, graceful shutdown on SIGINT / SIGTERM, and
/// the exit codes (2 for a bad configuration, with every problem listed).
///
/// ```no_run
/// # use rmcp::ServerHandler;
/// # #[derive(Clone)] struct MyTools;
/// # impl ServerHandler for MyTools {}
/// fn main() -> std::process::ExitCode {
///     scalekit_mcp::main(MyTools)
/// }
/// ```
pub fn main<H>(handler: H) -> ExitCode
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    main_with_tool_scopes(handler, ToolScopes::default())
}

/// [`main`], with the scopes each tool needs (refused with 403 before the tool runs).
pub fn main_with_tool_scopes<H>(handler: H, tool_scopes: ToolScopes) -> ExitCode
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    // `.env` in the working directory, as the seed's python-dotenv does; real environment
    // variables win, and flags win over both (clap reads the environment).
    let _ = dotenvy::dotenv();
    let name = program_name();
    // clap prints --help, and usage errors with exit code 2, itself.
    let matches = ServeCommand::command()
        .name(name.clone())
        .about("An MCP server whose every request needs a valid OAuth bearer token")
        .get_matches();
    let args = match ServeCommand::from_arg_matches(&matches) {
        Ok(command) => command.args,
        Err(error) => error.exit(),
    };
    logging::init(args.log_format, args.log_level.as_deref(), "info");
    let result = logging::runtime()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(super::run(&args, handler, tool_scopes)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            let _ = writeln!(std::io::stderr(), "{name}: error: {error:#}");
            exit_code_for(&error).into()
        }
    }
}

/// The name this program was started as, for its help and error messages.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|path| {
            std::path::Path::new(&path)
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "mcp-server".to_owned())
}
