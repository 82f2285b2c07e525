//! [`Config`](super::ServeConfig) from code and from the environment, for library users.
//!
//! Both start from `serve`'s flags ([`ServeArgs`]) and end in the same check
//! ([`ServeConfig::from_args`]), so a configuration built in code obeys exactly the rules the
//! binary's does, and reports every problem at once.

use clap::{Args, FromArgMatches, Parser};

use super::{ServeArgs, ServeConfig};
use crate::error::ExitError;

/// A configuration that does not hold together: every problem, each with how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl From<ExitError> for ConfigError {
    fn from(error: ExitError) -> Self {
        Self {
            message: error.message,
        }
    }
}

impl From<clap::Error> for ConfigError {
    fn from(error: clap::Error) -> Self {
        Self {
            message: error.to_string().trim_end().to_owned(),
        }
    }
}

/// `serve`'s command line alone, as the top-level command of a library user's binary.
#[derive(Debug, Parser)]
#[command(max_term_width = 100)]
pub(crate) struct ServeCommand {
    #[command(flatten)]
    pub args: ServeArgs,
}

impl ServeArgs {
    /// The settings `scalekit-mcp serve` would read with no flags: environment variables (and
    /// whatever `.env` put there), else the defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(ServeCommand::try_parse_from(["serve"])?.args)
    }

    /// The defaults alone: no flag, and no environment variable read.
    pub fn defaults() -> Self {
        let command = ServeArgs::augment_args(clap::Command::new("serve"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command.get_matches_from(["serve"]);
        // Every field has a default or is optional, so the defaults always parse.
        ServeArgs::from_arg_matches(&matches).expect("serve's defaults parse")
    }
}

impl ServeConfig {
    /// The configuration `scalekit-mcp serve` would run with, from the environment variables
    /// and a `.env` file in the working directory (real variables win over it), as the seed's
    /// python-dotenv does.
    pub fn from_env() -> Result<Self, ConfigError> {
        ConfigBuilder::from_env()?.build()
    }

    /// A configuration from code, starting from the defaults (no environment read).
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            args: ServeArgs::defaults(),
        }
    }
}

/// Builds a [`Config`](super::ServeConfig) in code. Each setter is the `serve` flag of the same
/// name; [`ConfigBuilder::args`] reaches every other one. Problems are reported by
/// [`ConfigBuilder::build`], all at once.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    args: ServeArgs,
}

impl ConfigBuilder {
    /// Starts from the environment and `.env`, as [`ServeConfig::from_env`], to override some
    /// settings in code.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Ok(Self {
            args: ServeArgs::from_env()?,
        })
    }

    /// Starts from settings parsed elsewhere (a command line of your own).
    pub fn from_args(args: ServeArgs) -> Self {
        Self { args }
    }

    /// Every setting, to change what has no setter here.
    pub fn args(mut self, change: impl FnOnce(&mut ServeArgs)) -> Self {
        change(&mut self.args);
        self
    }

    /// `--sk-env-url`: a Scalekit environment, whose tokens are accepted.
    pub fn sk_env_url(self, url: impl Into<String>) -> Self {
        self.args(|args| args.policy.sk_env_url = Some(url.into()))
    }

    /// `--issuer` (repeatable): an accepted token issuer.
    pub fn issuer(self, issuer: impl Into<String>) -> Self {
        self.args(|args| args.policy.issuers.push(issuer.into()))
    }

    /// `--audience` (repeatable): an accepted token audience (default: the resource).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.args(|args| args.policy.audiences.push(audience.into()))
    }

    /// `--required-scope` (repeatable): a scope every request's token must carry.
    pub fn required_scope(self, scope: impl Into<String>) -> Self {
        self.args(|args| args.policy.required_scopes.push(scope.into()))
    }

    /// `--tool-scope` (repeatable): tools named `pattern` (`*` matches any run of characters)
    /// need every scope in `scopes`.
    pub fn tool_scope<S: AsRef<str>>(
        self,
        pattern: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        let pattern = pattern.into();
        let scopes: Vec<String> = scopes.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self.args(|args| {
            args.policy
                .tool_scopes
                .push(format!("{pattern}={}", scopes.join(" ")))
        })
    }

    /// `--allowed-org` (repeatable): an organization whose tokens are accepted (default: any).
    pub fn allowed_org(self, org: impl Into<String>) -> Self {
        self.args(|args| args.policy.allowed_orgs.push(org.into()))
    }

    /// `--resource`: the protected resource's identifier, usually the MCP endpoint's public URL.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.args(|args| args.policy.resource = Some(resource.into()))
    }

    /// `--protected-resource-metadata`: the RFC 9728 document as JSON, served as given.
    pub fn protected_resource_metadata(self, json: impl Into<String>) -> Self {
        self.args(|args| args.policy.protected_resource_metadata = Some(json.into()))
    }

    /// `--scopes-supported` (repeatable): a scope listed in the generated metadata.
    pub fn scope_supported(self, scope: impl Into<String>) -> Self {
        self.args(|args| args.scopes_supported.push(scope.into()))
    }

    /// `--jwks-url`: where the signing keys are (default: from the issuer).
    pub fn jwks_url(self, url: impl Into<String>) -> Self {
        self.args(|args| args.jwks_url = Some(url.into()))
    }

    /// `--mcp-path`: the MCP endpoint's path (default `/`).
    pub fn mcp_path(self, path: impl Into<String>) -> Self {
        self.args(|args| args.mcp_path = path.into())
    }

    /// `--public-url`: the URL clients reach this server at.
    pub fn public_url(self, url: impl Into<String>) -> Self {
        self.args(|args| args.public_url = Some(url.into()))
    }

    /// `--host`: the address [`McpServer::serve`](crate::McpServer::serve) listens on.
    pub fn host(self, host: impl Into<String>) -> Self {
        self.args(|args| args.host = host.into())
    }

    /// `--port`: the port [`McpServer::serve`](crate::McpServer::serve) listens on.
    pub fn port(self, port: u16) -> Self {
        self.args(|args| args.port = port)
    }

    /// `--stateless`: no sessions, plain JSON answers.
    pub fn stateless(self, stateless: bool) -> Self {
        self.args(|args| args.stateless = stateless)
    }

    /// `--metrics-addr`: serve Prometheus metrics at `http://ADDRESS/metrics`, on a listener of
    /// their own (started by [`McpServer::serve`](crate::McpServer::serve), or by the first
    /// [`McpServer::router`](crate::McpServer::router) of a mounted server).
    pub fn metrics_addr(self, address: impl Into<String>) -> Self {
        self.args(|args| args.metrics_addr = Some(address.into()))
    }

    /// `--dev`: also run the offline development authorization server (loopback only).
    pub fn dev(self, dev: bool) -> Self {
        self.args(|args| args.dev = dev)
    }

    /// The checked configuration, or every problem at once.
    pub fn build(self) -> Result<ServeConfig, ConfigError> {
        ServeConfig::from_args(&self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_flags_defaults() {
        let args = ServeArgs::defaults();
        assert_eq!(args.port, 3002);
        assert_eq!(args.mcp_path, "/");
        assert_eq!(args.max_sessions_per_caller, 100);
        assert!(args.policy.issuers.is_empty());
    }

    #[test]
    fn a_builder_reports_every_problem_and_builds_what_holds_together() {
        let error = ServeConfig::builder()
            .mcp_path("mcp")
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--mcp-path \"mcp\" must start with '/'"),
            "{error}"
        );
        assert!(error.contains("no accepted token issuer"), "{error}");

        let config = ServeConfig::builder()
            .issuer("https://acme.scalekit.dev")
            .resource("https://api.example.com/mcp")
            .mcp_path("/mcp")
            .build()
            .unwrap();
        assert_eq!(config.policy.issuers, ["https://acme.scalekit.dev"]);
        assert_eq!(config.policy.audiences, ["https://api.example.com/mcp"]);
        assert_eq!(config.public_url.as_str(), "https://api.example.com/");
    }
}
