//! Errors that choose the process exit code. Everything else is an internal error (exit 1).
//!
//! Commands return `anyhow::Error`; `main` downcasts to [`ExitError`] to pick the code, so a
//! command marks an error's category once, where it knows it, and nothing else calls `exit`.

use std::process::ExitCode;

/// The documented exit codes of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: a bug or an unexpected failure.
    Internal = 1,
    /// 2: bad flags, bad configuration, input that is not what the command takes.
    Usage = 2,
    /// 3: authentication required or failed.
    Auth = 3,
    /// 4: server unreachable, timeout or protocol error.
    Unreachable = 4,
    /// 5: the tool reported an error.
    ToolError = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// An error that carries its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub exit: Exit,
    pub message: String,
}

impl ExitError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            message: message.into(),
        }
    }
}

/// The exit code for an error returned by a command.
pub fn exit_code_for(error: &anyhow::Error) -> Exit {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ExitError>())
        .map_or(Exit::Internal, |exit_error| exit_error.exit)
}

/// An error with its sources on one line: reqwest and hyper keep the useful part (connection
/// refused, certificate, DNS) in the source chain.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
