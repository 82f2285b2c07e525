//! The command-line interface: the clap definitions, and `main`, which dispatches to `commands/`.
//! Each subcommand's arguments live with its implementation in `commands/`; this file assembles
//! them (and is what completions and man pages are made from).

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::error::exit_code_for;
use crate::gateway::launcher;

use crate::commands::{
    call::CallArgs, check_token::CheckTokenArgs, completions::CompletionsArgs, login::LoginArgs,
    logout::LogoutArgs, man::ManArgs, proxy::ProxyArgs, status::StatusArgs, token::TokenArgs,
    tools::ToolsArgs,
};
use crate::config::ServeArgs;

/// An OAuth-protected MCP server for Scalekit and any standards-compliant authorization server.
#[derive(Debug, Parser)]
#[command(
    name = "scalekit-mcp",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MCP server; every MCP request needs a valid bearer token.
    Serve(Box<ServeArgs>),
    /// Log in to an MCP server (OAuth discovery, PKCE, registration) and store the token in the OS keyring.
    Login(Box<LoginArgs>),
    /// Remove (and revoke) the stored credentials of a server.
    Logout(LogoutArgs),
    /// Show the stored logins: subject, scopes, expiry; never a token.
    Status(StatusArgs),
    /// Print a valid access token for a server, refreshing it when needed.
    Token(TokenArgs),
    /// Call a tool and print its result (key=value arguments checked against its schema).
    Call(Box<CallArgs>),
    /// List a server's tools with their parameters.
    Tools(ToolsArgs),
    /// Bridge a desktop MCP client (stdio) to a protected server (HTTP) with the stored login,
    /// logging in first when needed.
    ///
    /// Desktop clients run it as a stdio server: stdin and stdout carry MCP, logs go to stderr.
    /// Print the configuration to paste with --print-config claude|cursor|vscode.
    Proxy(Box<ProxyArgs>),
    /// Explain an access token offline: header, claims, and every check serve would make.
    ///
    /// The expected issuers, audiences, scopes and algorithms are serve's: the flags below, else
    /// serve's settings read as serve reads them (environment, then .env in this directory).
    ///
    /// Exit status: 0 every check performed passed, 1 a check failed, 2 usage error or not a JWT.
    CheckToken(Box<CheckTokenArgs>),
    /// Print a shell completion script to stdout.
    Completions(CompletionsArgs),
    /// Print a man page (roff) to stdout, or write every page into a directory.
    Man(ManArgs),
}

impl Cli {
    /// The clap command, for completions and help snapshots.
    pub fn command() -> clap::Command {
        <Self as clap::CommandFactory>::command()
    }
}

/// Whether `serve` holds MCP sessions in rmcp (the built-in tools, a library handler), whose
/// memory should go back to the system as they end: then it gives freed memory back at once
/// (`allocator`). `--stateless` holds no session, and a gateway passes its sessions through
/// below rmcp (1–5 KiB each, a command's beside its process); both free a request's buffers at
/// a rate where giving pages back at once cost the gateway about a tenth of its throughput
/// (docs/performance.md), so they keep mimalloc's default. (A gateway speaking stdio has one
/// session.)
fn holds_sessions_of_rmcp(args: &ServeArgs) -> bool {
    let http_upstream = args
        .gateway
        .upstream
        .as_deref()
        .is_some_and(|url| !url.trim().is_empty());
    let gateway = http_upstream || !args.gateway.upstream_command.is_empty();
    !args.stateless && !gateway
}

/// Loads `.env`, parses the command line, runs the command and turns its error into a message on
/// stderr and an exit code. Nothing else exits the process.
pub fn main() -> ExitCode {
    // Before anything else: a launcher becomes the upstream command it starts, with the
    // environment the gateway gave it.
    if let Some(failed) = launcher::run_if_asked(&std::env::args_os().collect::<Vec<_>>()) {
        return failed;
    }
    launcher::launch_through_this_binary();
    // `.env` in the working directory, as the seed's python-dotenv does; real environment
    // variables win, and flags win over both (clap reads the environment).
    let _ = dotenvy::dotenv();
    let matches = Cli::command().get_matches();
    // Whether `serve --max-sessions` was set (flag or environment) rather than defaulted: the
    // default depends on what is served (see `commands::serve`).
    let max_sessions_set = matches.subcommand_matches("serve").is_some_and(|serve| {
        serve.value_source("max_sessions") != Some(clap::parser::ValueSource::DefaultValue)
    });
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    if let Command::Serve(args) = &cli.command
        && holds_sessions_of_rmcp(args)
    {
        // Still one thread: becoming itself again (`exec`) is safe here.
        crate::allocator::purge_freed_memory_promptly();
    }
    crate::allocator::disable_huge_pages();
    match run(cli, max_sessions_set) {
        Ok(code) => code,
        Err(error) => {
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            let _ = writeln!(std::io::stderr(), "scalekit-mcp: error: {error:#}");
            exit_code_for(&error).into()
        }
    }
}

fn run(cli: Cli, max_sessions_set: bool) -> anyhow::Result<ExitCode> {
    // `proxy` sets up its own logging (info, and --log-file).
    if !matches!(cli.command, Command::Serve(_) | Command::Proxy(_)) {
        // Client commands log warnings only; RUST_LOG raises it for debugging.
        // `call` and `tools` report rmcp's failures themselves, as their exit codes and messages
        // (one JSON line with --json), so rmcp's own error lines are not repeated on stderr.
        let default = if matches!(cli.command, Command::Call(_) | Command::Tools(_)) {
            "warn,rmcp=off"
        } else {
            "warn"
        };
        crate::logging::init(crate::logging::LogFormat::Text, None, default);
    }
    let runtime = crate::logging::runtime()?;
    let success = |()| ExitCode::SUCCESS;
    match cli.command {
        Command::CheckToken(args) => commands::check_token::run(&args),
        Command::Completions(args) => {
            commands::completions::run(&args, Cli::command()).map(success)
        }
        Command::Man(args) => commands::man::run(&args, Cli::command()).map(success),
        Command::Serve(args) => runtime
            .block_on(commands::serve::run(*args, max_sessions_set))
            .map(success),
        Command::Login(args) => runtime.block_on(commands::login::run(*args)).map(success),
        Command::Logout(args) => runtime.block_on(commands::logout::run(&args)).map(success),
        Command::Status(args) => commands::status::run(&args),
        Command::Token(args) => runtime.block_on(commands::token::run(&args)).map(success),
        Command::Call(args) => runtime.block_on(commands::call::run(&args)),
        Command::Tools(args) => runtime.block_on(commands::tools::run(&args)),
        Command::Proxy(args) => runtime.block_on(commands::proxy::run(*args)).map(success),
    }
}

#[cfg(test)]
mod tests {
    /// `check-token` must read serve's settings exactly as `serve` does: every flag the two share
    /// has the same environment variable, default, separator and aliases (the help wording may
    /// differ: "accepted" in one, "expected" in the other).
    #[test]
    fn check_token_reads_the_settings_it_shares_with_serve_as_serve_does() {
        let cli = super::Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let check_token = cli.find_subcommand("check-token").unwrap();
        let mut shared = 0;
        for flag in check_token.get_arguments() {
            let Some(long) = flag.get_long() else {
                continue;
            };
            let Some(serves) = serve.get_arguments().find(|a| a.get_long() == Some(long)) else {
                continue;
            };
            shared += 1;
            assert_eq!(
                flag.get_env(),
                serves.get_env(),
                "--{long}: environment variable"
            );
            assert_eq!(
                flag.get_default_values(),
                serves.get_default_values(),
                "--{long}: default"
            );
            assert_eq!(
                flag.get_value_delimiter(),
                serves.get_value_delimiter(),
                "--{long}: separator"
            );
            assert_eq!(
                flag.get_all_aliases(),
                serves.get_all_aliases(),
                "--{long}: aliases"
            );
        }
        // issuer, audience, required-scope, algorithms, leeway, sk-env-url, metadata,
        // authorization-server, resource, tool-scope, allowed-org.
        assert_eq!(
            shared, 11,
            "the flags the two commands share changed: update this count"
        );
    }
}
