//! One module per subcommand: each owns its arguments and its `run`.

pub mod check_token;
pub mod completions;
pub mod serve;
