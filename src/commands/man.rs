//! `scalekit-mcp man`: the man pages, generated from the same clap definitions as `--help`, one
//! page per subcommand (`scalekit-mcp.1`, `scalekit-mcp-serve.1`, …). They are also committed
//! under `man/`, and a test fails when they fall behind the CLI, as for the completions.
//!
//! `cargo install` installs only the binary, so the binary can write its own pages:
//! `scalekit-mcp man --out-dir ~/.local/share/man/man1`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::error::ExitError;

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (e.g. serve); without it, the main page.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,

    /// Write every page into this directory instead (created if missing).
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out_dir: Option<PathBuf>,
}

/// Every man page of `command`, as (file name, roff text): the main page, then one page per
/// visible subcommand, named `{name}-{subcommand}.1`.
pub fn pages(mut command: clap::Command) -> Vec<(String, Vec<u8>)> {
    // Built first: subcommands then carry their full usage (`scalekit-mcp serve [OPTIONS]`) and
    // the propagated version.
    command.build();
    let name = command.get_name().to_owned();
    let mut pages = vec![(format!("{name}.1"), render(command.clone()))];
    for subcommand in command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
    {
        let page_name = format!("{name}-{}", subcommand.get_name());
        let page = subcommand.clone().name(page_name.clone());
        pages.push((format!("{page_name}.1"), render(page)));
    }
    pages
}

fn render(command: clap::Command) -> Vec<u8> {
    let mut page = Vec::new();
    // Writing into memory cannot fail.
    let _ = clap_mangen::Man::new(command).render(&mut page);
    page
}

pub fn run(args: &ManArgs, command: clap::Command) -> anyhow::Result<()> {
    let name = command.get_name().to_owned();
    let pages = pages(command);
    if let Some(dir) = &args.out_dir {
        return write_pages(dir, &pages);
    }
    let wanted = match &args.command {
        Some(subcommand) => format!("{name}-{subcommand}.1"),
        None => format!("{name}.1"),
    };
    let Some((_, page)) = pages.iter().find(|(file, _)| *file == wanted) else {
        let known: Vec<&str> = pages
            .iter()
            .skip(1)
            .filter_map(|(file, _)| file.strip_prefix(&format!("{name}-"))?.strip_suffix(".1"))
            .collect();
        return Err(ExitError::usage(format!(
            "no man page for {:?}: pick one of {}",
            args.command.as_deref().unwrap_or_default(),
            known.join(", ")
        ))
        .into());
    };
    match std::io::stdout().lock().write_all(page) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

fn write_pages(dir: &Path, pages: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, page) in pages {
        let path = dir.join(file);
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut stderr = std::io::stderr();
    let _ = writeln!(
        stderr,
        "wrote {} man pages to {} (try: man {})",
        pages.len(),
        dir.display(),
        pages[0].0.trim_end_matches(".1")
    );
    Ok(())
}
