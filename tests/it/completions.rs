//! The committed completion scripts under completions/ and man pages under man/ must match what
//! the CLI generates. Regenerate both with `SCALEKIT_MCP_UPDATE_COMPLETIONS=1 cargo test completions`.

use std::path::Path;

use clap_complete::Shell;
use scalekit_mcp::cli::Cli;
use scalekit_mcp::commands::{completions, man};

const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "scalekit-mcp.bash"),
    (Shell::Zsh, "_scalekit-mcp"),
    (Shell::Fish, "scalekit-mcp.fish"),
    (Shell::PowerShell, "_scalekit-mcp.ps1"),
    (Shell::Elvish, "scalekit-mcp.elv"),
];

const REGENERATE: &str = "SCALEKIT_MCP_UPDATE_COMPLETIONS=1 cargo test completions";

fn updating() -> bool {
    std::env::var_os("SCALEKIT_MCP_UPDATE_COMPLETIONS").is_some()
}

/// Compares `generated` with the committed `dir/file`, or writes it when regenerating.
fn check_committed(dir: &Path, file: &str, generated: &[u8]) {
    let path = dir.join(file);
    if updating() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run {REGENERATE}",
        path.display()
    );
}

fn project_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[test]
fn committed_completions_are_current() {
    let dir = project_dir("completions");
    for (shell, file) in SHELLS {
        check_committed(&dir, file, &completions::generate(*shell, Cli::command()));
    }
}

#[test]
fn committed_man_pages_are_current_and_none_is_left_over() {
    let dir = project_dir("man");
    let pages = man::pages(Cli::command());
    for (file, page) in &pages {
        check_committed(&dir, file, page);
    }
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    let mut expected: Vec<String> = pages.into_iter().map(|(file, _)| file).collect();
    expected.sort();
    assert_eq!(
        committed, expected,
        "man/ holds a page of a command that no longer exists (or misses one): run {REGENERATE}"
    );
}

#[test]
fn there_is_a_man_page_per_subcommand_with_every_serve_flag() {
    let pages = man::pages(Cli::command());
    let names: Vec<&str> = pages.iter().map(|(file, _)| file.as_str()).collect();
    for expected in [
        "scalekit-mcp.1",
        "scalekit-mcp-serve.1",
        "scalekit-mcp-check-token.1",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let serve = String::from_utf8(
        pages[names
            .iter()
            .position(|n| *n == "scalekit-mcp-serve.1")
            .unwrap()]
        .1
        .clone(),
    )
    .unwrap();
    let command = Cli::command();
    let serve_command = command.find_subcommand("serve").unwrap();
    for flag in serve_command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
    {
        // roff escapes every '-' in option names.
        let escaped = format!("\\-\\-{}", flag.replace('-', "\\-"));
        assert!(
            serve.contains(&escaped),
            "--{flag} is missing from the serve man page"
        );
    }
}

#[test]
fn completions_command_prints_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let output = crate::util::binary(dir.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        output.stdout == completions::generate(Shell::Bash, Cli::command()),
        "`completions bash` differs from the generated script"
    );
}

#[test]
fn man_command_prints_a_page_and_writes_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let output = crate::util::binary(dir.path())
        .args(["man", "serve"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let committed = std::fs::read(project_dir("man").join("scalekit-mcp-serve.1")).unwrap();
    assert!(
        output.stdout == committed,
        "`man serve` differs from man/scalekit-mcp-serve.1"
    );

    let out_dir = dir.path().join("man1");
    let output = crate::util::binary(dir.path())
        .args(["man", "--out-dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        man::pages(Cli::command()).len()
    );

    let output = crate::util::binary(dir.path())
        .args(["man", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no man page for \"nonsense\"") && stderr.contains("serve"),
        "{stderr}"
    );
}
