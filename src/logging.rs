//! Logging set-up: always to stderr (stdout belongs to command output and to the stdio MCP
//! transport), text or JSON, filtered by RUST_LOG, else the seed's LOG_LEVEL, else `info` (with
//! rmcp's own lines at `warn`).
//!
//! Nothing in this crate logs a token, a client secret or an Authorization header; the request log
//! line records the path without its query string for the same reason.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `level` is LOG_LEVEL (Python names such as `WARNING` work).
pub fn init(format: LogFormat, level: Option<&str>, default_level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| {
            quiet_dependencies(
                &level.map_or_else(|| default_level.to_owned(), python_level_to_filter),
            )
        });
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color_on_stderr());
    // A second init (tests calling commands in-process) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// At `info`, rmcp would log each MCP session's start and end (with `--stateless`, every request
/// that reaches it): lines about the library, not the server. They stay available through
/// `RUST_LOG` or a `debug` level.
fn quiet_dependencies(level: &str) -> String {
    if level == "info" {
        "info,rmcp=warn".to_owned()
    } else {
        level.to_owned()
    }
}

/// Maps Python / uvicorn level names to tracing's (`WARNING` → `warn`, `CRITICAL` → `error`).
fn python_level_to_filter(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        "warning" => "warn".into(),
        "critical" | "fatal" => "error".into(),
        "notset" => "trace".into(),
        other => other.into(),
    }
}

/// Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
pub fn color_on_stderr() -> bool {
    use std::io::IsTerminal;
    no_color_unset() && std::io::stderr().is_terminal()
}

/// The same rule for command output on stdout (`check-token`).
pub fn color_on_stdout() -> bool {
    use std::io::IsTerminal;
    no_color_unset() && std::io::stdout().is_terminal()
}

fn no_color_unset() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn maps_python_levels() {
        assert_eq!(super::python_level_to_filter("WARNING"), "warn");
        assert_eq!(super::python_level_to_filter("INFO"), "info");
        assert_eq!(super::python_level_to_filter("critical"), "error");
    }

    #[test]
    fn rmcp_is_quiet_at_info_only() {
        assert_eq!(super::quiet_dependencies("info"), "info,rmcp=warn");
        assert_eq!(super::quiet_dependencies("debug"), "debug");
        assert_eq!(super::quiet_dependencies("warn"), "warn");
    }
}
