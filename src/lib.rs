//! Your own MCP tools behind OAuth 2.1: every request needs a valid bearer token from
//! [Scalekit](https://docs.scalekit.com/guides/mcp/) or any standards-compliant authorization
//! server, checked against its JWKS, with RFC 9728 discovery metadata and RFC 6750 challenges.
//!
//! This is the library under the `scalekit-mcp` binary: the binary's `serve` is this crate
//! serving two built-in tools. Give it your own [rmcp](https://docs.rs/rmcp) handler instead —
//! `#[tool_router]`, `#[tool]` and `ServerHandler`, exactly as rmcp documents them.
//!
//! # A whole server
//!
//! [`main`] runs your handler as `scalekit-mcp serve` runs its tools: the same flags, environment
//! variables and `.env` (the Python pattern's `SK_ENV_URL`, `EXPECTED_AUDIENCE`,
//! `PROTECTED_RESOURCE_METADATA`, `PORT`…), `--dev` (an offline authorization server for trying
//! it out), `--stateless`, `--transport stdio`, limits, logging, graceful shutdown and exit codes.
//!
//! ```no_run
//! use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
//! use rmcp::{ServerHandler, tool, tool_handler, tool_router};
//! use scalekit_mcp::Authenticated;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Name {
//!     name: String,
//! }
//!
//! #[derive(Clone)]
//! struct Hello {
//!     tool_router: ToolRouter<Self>,
//! }
//!
//! #[tool_router]
//! impl Hello {
//!     #[tool(description = "Greets someone, on behalf of the caller")]
//!     async fn greet(&self, caller: Authenticated, Parameters(n): Parameters<Name>) -> String {
//!         let from = caller.sub.as_deref().unwrap_or("someone");
//!         format!("Hi {}, from {from}", n.name)
//!     }
//! }
//!
//! #[tool_handler(router = self.tool_router)]
//! impl ServerHandler for Hello {}
//!
//! fn main() -> std::process::ExitCode {
//!     scalekit_mcp::main(Hello { tool_router: Hello::tool_router() })
//! }
//! ```
//!
//! `cargo run -- --dev` serves it offline; `cargo run` with the Python pattern's `.env` serves it
//! behind Scalekit.
//!
//! # Mounted in an axum application
//!
//! [`McpServer::router`] gives the MCP endpoint (at the path you choose) and its metadata as
//! routes to `merge` into your application; [`McpServer::auth_layer`] protects any of your other
//! routes with the same validation, and [`Authenticated`] hands them the caller. Configuration
//! comes from code ([`Config::builder`]) or the environment ([`Config::from_env`]). See
//! [`McpServer`] for an example.
//!
//! # The caller, in a tool
//!
//! A tool takes `caller: Authenticated` (subject, client id, organization from `org_id` or `oid`,
//! scopes, issuer, audiences, expiry and every claim: see [`Caller`]), or `extensions: Extensions`
//! and [`Caller::of`] when it must also work over stdio, where there is no token.
//!
//! # Scopes per tool
//!
//! [`ToolScopes`] names the scopes a tool needs; a call without them is answered 403
//! `insufficient_scope`, naming the scopes, before your tool runs ([`main_with_tool_scopes`],
//! [`McpServer::with_tool_scopes`]).
//!
//! # A token, explained
//!
//! [`check_token`] runs every check the server makes and reports each one, in order: the
//! `scalekit-mcp check-token` command as a function, for your own tests and tools.

#![cfg_attr(not(feature = "internals"), allow(dead_code))]
#![cfg_attr(not(feature = "internals"), warn(missing_docs))]

/// Declares the crate's inner modules: public (but hidden from the documentation) with the
/// `internals` feature, which the binary's own tests, benchmarks and fuzz targets turn on, and
/// private otherwise, so that the items re-exported below are the whole public API.
macro_rules! internal_modules {
    ($($module:ident),* $(,)?) => {
        $(
            #[cfg(feature = "internals")]
            #[doc(hidden)]
            pub mod $module;
            #[cfg(not(feature = "internals"))]
            mod $module;
        )*
    };
}

internal_modules!(auth, error);
#[cfg(feature = "server")]
internal_modules!(config, logging, server, tools);
#[cfg(feature = "client")]
internal_modules!(client, output);
#[cfg(feature = "gateway")]
internal_modules!(gateway);
#[cfg(feature = "cli")]
internal_modules!(allocator, cli, commands);

pub use auth::keys::KeySet;
pub use auth::tool_scopes::ToolScopes;
pub use auth::validate::{Caller, CheckName, Outcome, Rejection, Report, TokenPolicy};
#[cfg(feature = "server")]
pub use config::{
    ConfigBuilder, ConfigError, PolicyArgs, ServeArgs, ServeConfig as Config, Transport,
};
#[cfg(feature = "server")]
pub use server::caller::Authenticated;
#[cfg(feature = "server")]
pub use server::entry::{main, main_with_tool_scopes};
#[cfg(feature = "server")]
pub use server::protected::{BearerAuthLayer, McpServer};

/// Runs every check `serve` makes on `token` against `policy` and reports each one, in the order
/// `serve` makes them, without stopping at the first failure: what `scalekit-mcp check-token`
/// prints. `keys` verifies the signature (`None`: that check is skipped); `now` is the time in
/// seconds since the Unix epoch. The first failure ([`Report::first_failure`]) is the verdict
/// `serve` would give.
///
/// ```
/// use clap::Parser;
/// use scalekit_mcp::{PolicyArgs, TokenPolicy, check_token};
///
/// #[derive(Parser)]
/// struct Flags {
///     #[command(flatten)]
///     policy: PolicyArgs,
/// }
///
/// let flags = Flags::parse_from(["check", "--issuer", "https://acme.scalekit.dev"]);
/// let policy = TokenPolicy::from_args(&flags.policy).unwrap();
/// let report = check_token("not-a-jwt", &policy, None, 1_700_000_000);
/// assert_eq!(
///     report.first_failure().unwrap().to_string(),
///     "malformed token: a JWT has 3 dot-separated segments, this token has 1",
/// );
/// ```
pub fn check_token(token: &str, policy: &TokenPolicy, keys: Option<&KeySet>, now: i64) -> Report {
    auth::validate::evaluate(token, policy, keys, now, auth::validate::Mode::Explain).0
}

/// The `scalekit-mcp` binary: its `main`, here so that the modules it runs can stay private.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub fn __binary_main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(feature = "server")]
impl TokenPolicy {
    /// The policy `serve` would enforce with these settings (the way `check-token` resolves
    /// them: issuers, audiences, scopes and algorithms, from flags, the environment or code).
    pub fn from_args(args: &PolicyArgs) -> Result<Self, ConfigError> {
        Ok(config::offline_policy(args)?)
    }
}
