//! `scalekit-mcp completions <shell>`: prints a completion script. The generated scripts are also
//! committed under `completions/`, and a test fails when they fall behind the CLI.
//!
//! The command line to complete is passed in by the caller (`main` passes `Cli::command()`), so
//! this module never reaches back up to the definitions that include it.

use std::io::Write;

use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The completion script of `command` for `shell`.
pub fn generate(shell: Shell, mut command: clap::Command) -> Vec<u8> {
    let mut script = Vec::new();
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, &mut script);
    script
}

pub fn run(args: &CompletionsArgs, command: clap::Command) -> anyhow::Result<()> {
    std::io::stdout().write_all(&generate(args.shell, command))?;
    Ok(())
}
