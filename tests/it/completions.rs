//! The committed completion scripts under completions/ must match what the CLI generates.
//! Regenerate them with `SCALEKIT_MCP_UPDATE_COMPLETIONS=1 cargo test completions`.

use clap_complete::Shell;
use scalekit_mcp::commands::completions::generate;

const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "scalekit-mcp.bash"),
    (Shell::Zsh, "_scalekit-mcp"),
    (Shell::Fish, "scalekit-mcp.fish"),
    (Shell::PowerShell, "_scalekit-mcp.ps1"),
    (Shell::Elvish, "scalekit-mcp.elv"),
];

#[test]
fn committed_completions_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    let update = std::env::var_os("SCALEKIT_MCP_UPDATE_COMPLETIONS").is_some();
    for (shell, file) in SHELLS {
        let generated = generate(*shell);
        let path = dir.join(file);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "completions/{file} is stale: run SCALEKIT_MCP_UPDATE_COMPLETIONS=1 cargo test completions"
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
        output.stdout == generate(Shell::Bash),
        "`completions bash` differs from the generated script"
    );
}
