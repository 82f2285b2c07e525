//! One module per subcommand: each owns its arguments and its `run`.

pub mod call;
pub mod check_token;
pub mod completions;
pub mod login;
pub mod logout;
pub mod man;
pub mod proxy;
pub mod serve;
pub mod status;
pub mod token;
pub mod tools;
