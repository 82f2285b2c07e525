//! The `scalekit-mcp` binary: loads `.env`, parses the command line, runs the command and turns
//! its error into a message on stderr and an exit code. Nothing else exits the process.

use std::process::ExitCode;

use clap::Parser;
use scalekit_mcp::cli::{Cli, Command};
use scalekit_mcp::commands;
use scalekit_mcp::error::exit_code_for;

fn main() -> ExitCode {
    // `.env` in the working directory, as the seed's python-dotenv does; real environment
    // variables win, and flags win over both (clap reads the environment).
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("scalekit-mcp: error: {error:#}");
            exit_code_for(&error).into()
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckToken(args) => commands::check_token::run(&args),
        Command::Completions(args) => commands::completions::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(commands::serve::run(*args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
