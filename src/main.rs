//! The `scalekit-mcp` binary: loads `.env`, parses the command line, runs the command and turns
//! its error into a message on stderr and an exit code. Nothing else exits the process.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use scalekit_mcp::cli::{Cli, Command};
use scalekit_mcp::commands;
use scalekit_mcp::error::exit_code_for;

fn main() -> ExitCode {
    scalekit_mcp::allocator::disable_huge_pages();
    // `.env` in the working directory, as the seed's python-dotenv does; real environment
    // variables win, and flags win over both (clap reads the environment).
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            let _ = writeln!(std::io::stderr(), "scalekit-mcp: error: {error:#}");
            exit_code_for(&error).into()
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Serve(_)) {
        // Client commands log warnings only; RUST_LOG raises it for debugging.
        // `call` and `tools` report rmcp's failures themselves, as their exit codes and messages
        // (one JSON line with --json), so rmcp's own error lines are not repeated on stderr.
        let default = if matches!(cli.command, Command::Call(_) | Command::Tools(_)) {
            "warn,rmcp=off"
        } else {
            "warn"
        };
        scalekit_mcp::logging::init(scalekit_mcp::logging::LogFormat::Text, None, default);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let success = |()| ExitCode::SUCCESS;
    match cli.command {
        Command::CheckToken(args) => commands::check_token::run(&args),
        Command::Completions(args) => {
            commands::completions::run(&args, Cli::command()).map(success)
        }
        Command::Man(args) => commands::man::run(&args, Cli::command()).map(success),
        Command::Serve(args) => runtime.block_on(commands::serve::run(*args)).map(success),
        Command::Login(args) => runtime.block_on(commands::login::run(*args)).map(success),
        Command::Logout(args) => runtime.block_on(commands::logout::run(&args)).map(success),
        Command::Status(args) => commands::status::run(&args),
        Command::Token(args) => runtime.block_on(commands::token::run(&args)).map(success),
        Command::Call(args) => runtime.block_on(commands::call::run(&args)),
        Command::Tools(args) => runtime.block_on(commands::tools::run(&args)),
    }
}
