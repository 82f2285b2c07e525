//! `scalekit-mcp completions <shell>`: prints a completion script. The generated scripts are also
//! committed under `completions/`, and a test fails when they fall behind the CLI.

use std::io::Write;

use clap::Args;
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The completion script for `shell`.
pub fn generate(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "scalekit-mcp", &mut script);
    script
}

pub fn run(args: &CompletionsArgs) -> anyhow::Result<()> {
    std::io::stdout().write_all(&generate(args.shell))?;
    Ok(())
}
