//! The standard entry point of a library user's server binary: [`main`] is `scalekit-mcp serve`
//! with their handler, command line, `.env`, logging, exit codes and all; [`Main`] is the same
//! with options.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use rmcp::ServerHandler;

use crate::auth::tool_scopes::ToolScopes;
use crate::config::ServeCommand;
use crate::error::exit_code_for;
use crate::logging;
use crate::server::Extras;

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
    Main::new(handler).run()
}

/// [`main`], with the scopes each tool needs (refused with 403 before the tool runs).
pub fn main_with_tool_scopes<H>(handler: H, tool_scopes: ToolScopes) -> ExitCode
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    Main::new(handler).with_tool_scopes(tool_scopes).run()
}

/// [`main`] with options: the scopes each tool needs, and what the handler allows the server
/// to do for speed and memory (as [`McpServer`](crate::McpServer) offers them).
///
/// ```no_run
/// # use rmcp::ServerHandler;
/// # #[derive(Clone)] struct MyTools;
/// # impl ServerHandler for MyTools {}
/// use scalekit_mcp::{Main, ToolScopes};
///
/// fn main() -> std::process::ExitCode {
///     Main::new(MyTools)
///         .with_tool_scopes(ToolScopes::new().require("add_todo", ["todo:write"]))
///         .with_direct_tool_calls()
///         .with_sleeping_sessions()
///         .run()
/// }
/// ```
pub struct Main<H> {
    handler: H,
    tool_scopes: ToolScopes,
    extras: Extras,
}

impl<H> Main<H>
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    /// `handler` with no tool scopes, and neither direct tool calls nor sleeping sessions.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            tool_scopes: ToolScopes::default(),
            extras: Extras::default(),
        }
    }

    /// The scopes each tool needs (refused with 403 before the tool runs).
    pub fn with_tool_scopes(mut self, tool_scopes: ToolScopes) -> Self {
        self.tool_scopes = tool_scopes;
        self
    }

    /// Plain tool calls on sessions answered in the request's own task; only for a handler
    /// that never uses its peer while it answers them. See
    /// [`McpServer::with_direct_tool_calls`](crate::McpServer::with_direct_tool_calls).
    pub fn with_direct_tool_calls(mut self) -> Self {
        self.extras.direct_tool_calls = true;
        self
    }

    /// Idle sessions give up their worker until a request needs it; only for a handler that
    /// keeps no per-session state. See
    /// [`McpServer::with_sleeping_sessions`](crate::McpServer::with_sleeping_sessions).
    pub fn with_sleeping_sessions(mut self) -> Self {
        self.extras.sessions_may_sleep = true;
        self
    }

    /// Runs the server, as [`main`] does: the exit code for `main` to return.
    pub fn run(self) -> ExitCode {
        run(self.handler, self.tool_scopes, self.extras)
    }
}

fn run<H>(handler: H, tool_scopes: ToolScopes, extras: Extras) -> ExitCode
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
        .and_then(|runtime| {
            runtime.block_on(super::run_with_extras(&args, handler, tool_scopes, extras))
        });
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
