//! `serve`'s configuration, checked once at startup.
//!
//! [`ServeConfig::from_args`] turns the raw flags (already merged with the environment and `.env`
//! by clap) into a configuration the server can trust: URLs parsed, issuers and audiences
//! resolved, the protected resource metadata validated. Every problem is collected and reported
//! together, each with how to fix it, so a misconfigured deployment fails at startup (exit 2) and
//! not with a 500 on the first request.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use url::Url;

use crate::auth::jwks::{CacheSettings, JwksSource};
use crate::auth::tool_scopes::ToolScopes;
use crate::auth::validate::{ASYMMETRIC_ALGORITHMS, TokenPolicy};
use crate::error::ExitError;

mod args;
mod builder;
mod cidr;
mod rate;
#[cfg(feature = "gateway")]
pub use args::GatewayArgs;
pub use args::{PolicyArgs, ServeArgs, Transport};
pub(crate) use builder::ServeCommand;
pub use builder::{ConfigBuilder, ConfigError};
pub use cidr::Cidr;
pub use rate::Rate;

/// `--algorithms` default, for `serve` and `check-token`.
pub const DEFAULT_ALGORITHMS: &str = "RS256";

/// `--leeway` default (clock skew tolerated on exp, nbf and iat), for `serve` and `check-token`.
pub const DEFAULT_LEEWAY: &str = "30s";

/// A duration flag: `30` (seconds), `30s`, `10m`, `1h`, `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: u64 = number.parse().map_err(|_| {
            format!("{text:?} is not a duration: use a number with s, m, h or ms (e.g. 30s)")
        })?;
        let seconds = |factor: u64| std::time::Duration::from_secs(value.saturating_mul(factor));
        let duration = match unit.trim() {
            "" | "s" => seconds(1),
            "m" => seconds(60),
            "h" => seconds(3600),
            "ms" => std::time::Duration::from_millis(value),
            other => {
                return Err(format!(
                    "unknown duration unit {other:?}: use s, m, h or ms"
                ));
            }
        };
        Ok(Duration(duration))
    }
}

/// The protected resource metadata (RFC 9728) this server publishes.
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    /// The exact bytes served at the well-known URL.
    pub document: bytes::Bytes,
    pub resource: String,
    pub authorization_servers: Vec<String>,
}

/// Path of the development authorization server under the public URL: its issuer is
/// `{public_url}/dev-auth`.
pub const DEV_AUTH_PATH: &str = "/dev-auth";

/// The scope `serve --dev` grants when --scopes-supported is not given.
pub const DEV_DEFAULT_SCOPE: &str = "mcp:tools";

/// The checked configuration of `serve --dev`'s embedded authorization server.
#[derive(Debug, Clone)]
pub struct DevAuthConfig {
    /// `{public_url}/dev-auth`, without a trailing slash.
    pub issuer: String,
    /// The audience put in tokens when the client names no `resource`: the metadata's resource.
    pub resource: String,
    /// The `sub` of every user token.
    pub user: String,
    pub token_ttl: std::time::Duration,
    /// Scopes it grants (`offline_access` comes on top, for refresh tokens).
    pub scopes: Vec<String>,
    pub auto_approve: bool,
    /// PEM private key kept across restarts; `None`: a fresh key at each start.
    pub key_file: Option<std::path::PathBuf>,
}

/// `serve`'s checked configuration: every setting parsed, issuers and audiences resolved, the
/// protected resource metadata validated. Built by [`ServeConfig::from_env`],
/// [`ServeConfig::builder`] or [`ServeConfig::from_args`], which report every problem at once.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) public_url: Url,
    pub(crate) mcp_path: String,
    pub(crate) stateless: bool,
    pub(crate) policy: TokenPolicy,
    pub(crate) jwks: JwksSource,
    pub(crate) cache: CacheSettings,
    pub(crate) metadata: ResourceMetadata,
    /// Absolute URL of the metadata, as put in challenges.
    pub(crate) resource_metadata_url: String,
    /// Accepted Host header values (`host` or `host:port`); empty means any.
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) cors_origins: Vec<String>,
    pub(crate) max_body_bytes: usize,
    /// Largest accepted header section (431 beyond).
    pub(crate) max_header_bytes: usize,
    /// Time allowed to produce a response head (408 beyond).
    pub(crate) request_timeout: std::time::Duration,
    /// Time a connection may wait for its next request head before it is closed.
    pub(crate) idle_timeout: std::time::Duration,
    /// Connections held open at once (503 beyond).
    pub(crate) max_connections: usize,
    /// Stateful sessions open at once (an `initialize` beyond gets 503).
    pub(crate) max_sessions: usize,
    /// Stateful sessions per caller (one more closes the caller's least recently used).
    pub(crate) max_sessions_per_caller: usize,
    /// A session without a request for this long is closed.
    pub(crate) session_idle_timeout: std::time::Duration,
    /// A session without a request or an open stream for this long sleeps (`server::sessions`).
    pub(crate) session_sleep_after: std::time::Duration,
    /// Where sessions are kept besides this process (`--session-store`, a Redis URL).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) session_store: Option<StoreUrl>,
    /// Where rate limits are counted (`--rate-limit-store`, else the session store).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) rate_limit_store: Option<StoreUrl>,
    /// Prefix of every Redis key (`--redis-prefix`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) redis_prefix: String,
    pub(crate) shutdown_timeout: std::time::Duration,
    /// The scopes each tool needs (`--tool-scope`).
    pub(crate) tool_scopes: ToolScopes,
    /// Requests per caller (`--rate-limit`).
    pub(crate) rate_limit: Option<Rate>,
    /// Calls per caller and tool (`--tool-rate-limit`): (tool name or pattern, rate).
    pub(crate) tool_rate_limits: Vec<(String, Rate)>,
    /// Requests that need a token checked, per client IP (`--anonymous-rate-limit`).
    pub(crate) anonymous_rate_limit: Option<Rate>,
    /// Proxies whose forwarding headers name the client (`--trusted-proxy`).
    pub(crate) trusted_proxies: Vec<Cidr>,
    /// Where `/metrics` is served (`--metrics-addr`); `None`: no metrics are recorded.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Problems worth a warning at startup that do not stop the server.
    pub(crate) warnings: Vec<String>,
    /// `--dev`: the embedded development authorization server, the only accepted issuer.
    pub(crate) dev: Option<DevAuthConfig>,
}

impl ServeConfig {
    /// The address `serve` listens on.
    pub fn bind(&self) -> SocketAddr {
        self.bind
    }

    /// Where Prometheus metrics are served (`--metrics-addr`), if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The URL clients reach this server at; challenges and metadata point there.
    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    /// The path of the MCP endpoint.
    pub fn mcp_path(&self) -> &str {
        &self.mcp_path
    }

    /// Whether sessions are off (`--stateless`).
    pub fn is_stateless(&self) -> bool {
        self.stateless
    }

    /// What a token must carry: issuers, audiences, algorithms, scopes, clock leeway.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// The protected resource's identifier, as the metadata names it.
    pub fn resource(&self) -> &str {
        &self.metadata.resource
    }

    /// The RFC 9728 metadata document, exactly as served.
    pub fn metadata_document(&self) -> &[u8] {
        &self.metadata.document
    }

    /// The metadata's URL, as put in challenges.
    pub fn resource_metadata_url(&self) -> &str {
        &self.resource_metadata_url
    }

    /// The scopes each tool needs, from `--tool-scope` ([`ConfigBuilder::tool_scope`]).
    pub fn tool_scopes(&self) -> &ToolScopes {
        &self.tool_scopes
    }

    /// Problems worth a warning that do not stop the server (logged when it starts).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Where the signing keys come from (tests).
    #[cfg(feature = "internals")]
    pub fn jwks_source(&self) -> &JwksSource {
        &self.jwks
    }

    /// How long fetched keys are kept (tests).
    #[cfg(feature = "internals")]
    pub fn cache_settings(&self) -> CacheSettings {
        self.cache
    }
}

/// Collects configuration problems so they are all reported at once.
#[derive(Default)]
struct Problems {
    list: Vec<String>,
    /// A line for a newcomer, after the list.
    hint: Option<String>,
}

impl Problems {
    fn add(&mut self, problem: impl Into<String>) {
        self.list.push(problem.into());
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn into_result(self) -> Result<(), ExitError> {
        self.into_result_titled("the server configuration is incomplete or contradictory")
    }

    fn into_result_titled(self, title: &str) -> Result<(), ExitError> {
        if self.list.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = self
            .list
            .iter()
            .map(|problem| format!("  - {problem}"))
            .collect();
        let mut message = format!("{title}:\n{}", list.join("\n"));
        if let Some(hint) = &self.hint {
            message.push_str(&format!("\n{hint}"));
        }
        Err(ExitError::usage(message))
    }
}

impl ServeConfig {
    /// Checks and resolves the settings `serve` parsed (from flags, the environment, `.env`, or
    /// [`ConfigBuilder`]), collecting every problem with how to fix it.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        Ok(Self::check(args)?)
    }

    /// [`ServeConfig::from_args`], with the error that makes the binary exit with code 2.
    pub(crate) fn check(args: &ServeArgs) -> Result<Self, ExitError> {
        let mut problems = Problems::default();
        let mut warnings = Vec::new();

        let mcp_path = if args.mcp_path.starts_with('/') {
            args.mcp_path.clone()
        } else {
            problems.add(format!(
                "--mcp-path {:?} must start with '/' (e.g. /mcp)",
                args.mcp_path
            ));
            "/".into()
        };
        let bind = bind_address(&args.host, args.port, &mut problems);
        if args.dev {
            check_dev_mode(args, bind, &mcp_path, &mut problems, &mut warnings);
        }
        // In --dev mode the embedded server is the only authorization server: settings naming
        // another one are ignored (check_dev_mode warns about them).
        let sk_env_url = args
            .policy
            .sk_env_url
            .as_deref()
            .filter(|_| !args.dev)
            .and_then(|raw| parse_url(raw.trim_end_matches('/'), "SK_ENV_URL", &mut problems));

        let verbatim = args
            .policy
            .protected_resource_metadata
            .as_deref()
            .filter(|json| !args.dev && !json.trim().is_empty())
            .map(|json| parse_verbatim_metadata(json, &mut problems));
        let verbatim = verbatim.flatten();
        if verbatim.is_some()
            && (args.policy.resource.is_some()
                || !args.policy.authorization_servers.is_empty()
                || !args.scopes_supported.is_empty())
        {
            problems.add(
                "PROTECTED_RESOURCE_METADATA is set together with --resource / --authorization-server / \
                 --scopes-supported: use one or the other",
            );
        }

        // The resource names where clients reach this server, whichever way it is configured; in
        // --dev mode the public URL stays on loopback, where its authorization server answers.
        let resource = match &verbatim {
            Some(metadata) => Some(metadata.resource.as_str()),
            None => args.policy.resource.as_deref().filter(|_| !args.dev),
        };
        let public_url = public_url(args, resource, &mut problems);
        let public_url = match public_url {
            Some(url) => url,
            None => {
                return Err(problems
                    .into_result()
                    .err()
                    .unwrap_or_else(|| ExitError::usage("bad public URL")));
            }
        };

        let metadata_servers: Vec<String> = match &verbatim {
            Some(metadata) => metadata.authorization_servers.clone(),
            None => args.policy.authorization_servers.clone(),
        };
        let dev_issuer = args.dev.then(|| join_path(&public_url, DEV_AUTH_PATH));
        let issuers = match &dev_issuer {
            Some(issuer) => vec![issuer.clone()],
            None => accepted_issuers(&args.policy.issuers, sk_env_url.as_ref(), &metadata_servers),
        };
        if issuers.is_empty() {
            problems.add(
                "no accepted token issuer: set SK_ENV_URL (your Scalekit environment URL), or --issuer, \
                 or authorization_servers in PROTECTED_RESOURCE_METADATA",
            );
            problems.hint = Some(format!(
                "to try it first without any of these: `{}` runs it offline with its own \
                 authorization server",
                dev_command()
            ));
        }

        let tool_scopes = ToolScopes::parse(&args.policy.tool_scopes).unwrap_or_else(|errors| {
            for error in errors {
                problems.add(error);
            }
            ToolScopes::default()
        });
        let scopes_supported = default_scopes_supported(args, &tool_scopes);
        let metadata = match verbatim {
            Some(metadata) => metadata,
            None => generated_metadata(args, &public_url, &mcp_path, &issuers, &scopes_supported),
        };

        warnings.extend(resource_path_mismatch(&metadata.resource, &mcp_path));
        let audiences = accepted_audiences(&args.policy.audiences, Some(&metadata.resource));
        for audience in &audiences {
            if audience != &metadata.resource
                && audience.trim_end_matches('/') == metadata.resource.trim_end_matches('/')
            {
                warnings.push(format!(
                    "the accepted audience {audience:?} and the metadata's resource {:?} differ only by a \
                     trailing slash; Scalekit puts the registered server URL in `aud` exactly, so tokens \
                     may be refused: make EXPECTED_AUDIENCE match the server URL registered in Scalekit",
                    metadata.resource
                ));
            }
        }

        let jwks = match (&args.jwks_url, &sk_env_url, issuers.first()) {
            // The key set the development server publishes; `server::run` reads it in-process.
            _ if args.dev => issuers
                .first()
                .and_then(|issuer| Url::parse(&format!("{issuer}/keys")).ok())
                .map(JwksSource::Url),
            (Some(raw), _, _) => parse_url(raw, "--jwks-url", &mut problems).map(JwksSource::Url),
            (None, Some(env), _) => env
                .join(&format!("{}/keys", env.path().trim_end_matches('/')))
                .ok()
                .map(JwksSource::Url),
            (None, None, Some(issuer)) => {
                parse_url(issuer, "the issuer", &mut problems).map(JwksSource::Discover)
            }
            (None, None, None) => None,
        };

        let algorithms = parse_algorithms(&args.policy.algorithms, &mut problems);
        let resource_metadata_url = match &args.resource_metadata_url {
            Some(url) => parse_url(url, "RESOURCE_METADATA_URL", &mut problems)
                .map(String::from)
                .unwrap_or_default(),
            None => well_known_url(&public_url, &mcp_path),
        };
        let allowed_hosts = allowed_hosts(args, &public_url, &metadata.resource);
        if args.dev && !audiences.contains(&metadata.resource) {
            warnings.push(format!(
                "--dev: the development authorization server puts the requested resource (by default \
                 {:?}) in `aud`, and the accepted audiences ({}) do not include it: its tokens will be \
                 refused unless clients ask for an accepted audience as `resource`",
                metadata.resource,
                audiences.join(", ")
            ));
        }
        let dev = dev_issuer.map(|issuer| DevAuthConfig {
            issuer,
            resource: metadata.resource.clone(),
            user: args.dev_user.clone(),
            token_ttl: args.dev_token_ttl.0,
            scopes: scopes_supported.clone(),
            auto_approve: args.dev_auto_approve,
            key_file: args.dev_key.clone(),
        });
        for origin in &args.cors_origins {
            if Url::parse(origin).map_or(true, |url| url.origin().ascii_serialization() != *origin)
            {
                problems.add(format!(
                    "--cors-origin {origin:?} is not an origin: use scheme://host[:port] without a path"
                ));
            }
        }

        if args.request_timeout.0.is_zero() {
            problems.add("--request-timeout (SCALEKIT_MCP_REQUEST_TIMEOUT) must be longer than 0s");
        }
        if args.idle_timeout.0.is_zero() {
            problems.add("--idle-timeout (SCALEKIT_MCP_IDLE_TIMEOUT) must be longer than 0s");
        }
        if args.max_connections == 0 {
            problems.add("--max-connections (SCALEKIT_MCP_MAX_CONNECTIONS) must be at least 1");
        }
        let (rate_limit, tool_rate_limits) = rate_limits(args, &mut problems);
        let trusted_proxies: Vec<Cidr> = non_blank(&args.trusted_proxies)
            .iter()
            .filter_map(|range| match range.parse() {
                Ok(range) => Some(range),
                Err(error) => {
                    problems.add(format!("--trusted-proxy: {error}"));
                    None
                }
            })
            .collect();
        let anonymous_rate_limit = args
            .anonymous_rate_limit
            .as_deref()
            .filter(|text| !text.trim().is_empty())
            .and_then(|text| match text.parse::<Rate>() {
                Ok(rate) => Some(rate),
                Err(error) => {
                    problems.add(format!("--anonymous-rate-limit: {error}"));
                    None
                }
            });
        if args.max_sessions == 0 {
            problems.add("--max-sessions (SCALEKIT_MCP_MAX_SESSIONS) must be at least 1");
        }
        if args.max_sessions_per_caller == 0 {
            problems.add(
                "--max-sessions-per-caller (SCALEKIT_MCP_MAX_SESSIONS_PER_CALLER) must be at least 1",
            );
        }
        if args.session_idle_timeout.0.is_zero() {
            problems.add(
                "--session-idle-timeout (SCALEKIT_MCP_SESSION_IDLE_TIMEOUT) must be longer than 0s",
            );
        }

        let metrics_addr = metrics_address(args, bind, &mut problems);
        let (session_store, rate_limit_store) = stores(args, &mut problems);

        problems.into_result()?;
        Ok(ServeConfig {
            bind: bind.ok_or_else(|| ExitError::usage("bad listen address"))?,
            public_url,
            mcp_path,
            stateless: args.stateless,
            policy: TokenPolicy {
                issuers,
                audiences,
                algorithms,
                required_scopes: non_blank(&args.policy.required_scopes),
                leeway: args.policy.leeway.0.as_secs(),
                allowed_orgs: non_blank(&args.policy.allowed_orgs),
            },
            jwks: jwks.ok_or_else(|| ExitError::usage("no JWKS source"))?,
            cache: CacheSettings {
                default_ttl: args.jwks_ttl.0,
                unknown_kid_cooldown: args.jwks_cooldown.0,
            },
            metadata,
            resource_metadata_url,
            allowed_hosts,
            cors_origins: args.cors_origins.clone(),
            max_body_bytes: args.max_body_bytes,
            max_header_bytes: args.max_header_bytes,
            request_timeout: args.request_timeout.0,
            idle_timeout: args.idle_timeout.0,
            max_connections: args.max_connections,
            max_sessions: args.max_sessions,
            max_sessions_per_caller: args.max_sessions_per_caller,
            session_idle_timeout: args.session_idle_timeout.0,
            session_sleep_after: args.session_sleep_after.0,
            session_store,
            rate_limit_store,
            redis_prefix: args.redis_prefix.clone(),
            shutdown_timeout: args.shutdown_timeout.0,
            tool_scopes,
            rate_limit,
            tool_rate_limits,
            anonymous_rate_limit,
            trusted_proxies,
            metrics_addr,
            warnings,
            dev,
        })
    }
}

/// A Redis URL (`redis://` or `rediss://`), its password hidden when shown.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(String);

impl StoreUrl {
    /// The URL itself, password included: for the connection only.
    pub fn secret_url(&self) -> &str {
        &self.0
    }

    /// The URL with its password, if any, shown as `***`: for logs, errors and `/ready`.
    pub fn redacted(&self) -> String {
        match Url::parse(&self.0) {
            Ok(mut shown) => {
                if shown.password().is_some() {
                    let _ = shown.set_password(Some("***"));
                }
                shown.to_string()
            }
            // Cannot happen: `parse` checked it. Say nothing of a URL that might hold a secret.
            Err(_) => "(the store URL)".to_owned(),
        }
    }

    /// `text`, checked to be a Redis URL; errors name `flag` and the fix.
    pub(crate) fn parse(flag: &str, text: &str) -> Result<Self, String> {
        let url = Url::parse(text.trim()).map_err(|error| {
            format!("{flag}: not a URL ({error}); write redis://host:port, or rediss:// for TLS")
        })?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(format!(
                "{flag}: the scheme is {}; only redis:// and rediss:// (TLS) are supported",
                url.scheme()
            ));
        }
        if !cfg!(feature = "redis") {
            return Err(format!(
                "{flag}: this build has no Redis support (build with the `redis` feature)"
            ));
        }
        Ok(Self(text.trim().to_owned()))
    }
}

impl std::fmt::Debug for StoreUrl {
    /// Without the password: a configuration may be logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `--session-store` and `--rate-limit-store` (which defaults to the session store), checked.
fn stores(args: &ServeArgs, problems: &mut Problems) -> (Option<StoreUrl>, Option<StoreUrl>) {
    let mut parse = |flag: &str, text: &Option<String>| {
        let text = text.as_deref().filter(|text| !text.trim().is_empty())?;
        StoreUrl::parse(flag, text)
            .map_err(|problem| problems.add(problem))
            .ok()
    };
    let session_store = parse(
        "--session-store (SCALEKIT_MCP_SESSION_STORE)",
        &args.session_store,
    );
    let rate_limit_store = parse(
        "--rate-limit-store (SCALEKIT_MCP_RATE_LIMIT_STORE)",
        &args.rate_limit_store,
    );
    if session_store.is_some() && args.stateless {
        problems.add(
            "--session-store keeps stateful sessions, and --stateless has none (every replica \
             already serves every request): drop one of them",
        );
    }
    if (session_store.is_some() || rate_limit_store.is_some()) && args.transport == Transport::Stdio
    {
        problems.add(
            "--session-store and --rate-limit-store are for HTTP replicas, not --transport stdio",
        );
    }
    let rate_limit_store = rate_limit_store.or_else(|| session_store.clone());
    (session_store, rate_limit_store)
}

/// `--rate-limit` (with `--rate-limit-burst`) and `--tool-rate-limit`, checked.
fn rate_limits(args: &ServeArgs, problems: &mut Problems) -> (Option<Rate>, Vec<(String, Rate)>) {
    let parse = |flag: &str, text: &str, problems: &mut Problems| match text.parse::<Rate>() {
        Ok(rate) => Some(rate),
        Err(error) => {
            problems.add(format!("{flag}: {error}"));
            None
        }
    };
    let mut caller = args
        .rate_limit
        .as_deref()
        .filter(|text| !text.trim().is_empty())
        .and_then(|text| parse("--rate-limit", text, problems));
    if let (Some(rate), Some(burst)) = (&mut caller, args.rate_limit_burst) {
        rate.burst = burst;
    }
    let mut tools = Vec::new();
    for entry in args.tool_rate_limits.iter().map(|entry| entry.trim()) {
        if entry.is_empty() {
            continue;
        }
        match entry.split_once('=') {
            Some((pattern, rate)) if !pattern.trim().is_empty() => {
                if let Some(rate) = parse("--tool-rate-limit", rate, problems) {
                    tools.push((pattern.trim().to_owned(), rate));
                }
            }
            _ => problems.add(format!(
                "--tool-rate-limit {entry:?}: write NAME=N/UNIT (e.g. search_*=30/min)"
            )),
        }
    }
    if args.rate_limit_burst == Some(0) {
        problems.add("--rate-limit-burst (SCALEKIT_MCP_RATE_LIMIT_BURST) must be at least 1");
    }
    (caller, tools)
}

/// `scopes_supported` of generated metadata: `--scopes-supported`; else, when tools need scopes,
/// the scopes every request needs and the tools' (clients ask for the scopes listed there, and
/// `--dev`'s authorization server grants them, so the tools can be called out of the box); else,
/// with `--dev`, the scope it grants by default.
fn default_scopes_supported(args: &ServeArgs, tool_scopes: &ToolScopes) -> Vec<String> {
    if !args.scopes_supported.is_empty() {
        return args.scopes_supported.clone();
    }
    if !tool_scopes.is_empty() {
        let required = non_blank(&args.policy.required_scopes);
        return dedup(required.into_iter().chain(tool_scopes.all()));
    }
    if args.dev {
        return vec![DEV_DEFAULT_SCOPE.to_owned()];
    }
    Vec::new()
}

/// The command that runs this server with `--dev`: `scalekit-mcp serve --dev`, or for a library
/// user's own server binary, its name and `--dev`.
fn dev_command() -> String {
    let program = std::env::args_os()
        .next()
        .and_then(|path| {
            std::path::Path::new(&path)
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    match program.as_str() {
        "scalekit-mcp" | "" => "scalekit-mcp serve --dev".to_owned(),
        name => format!("{name} --dev"),
    }
}

/// The rules of `--dev`: loopback only (it logs anyone in without a password), a known port (the
/// issuer URL contains it), an MCP path that does not shadow its routes, and a warning for each
/// setting naming another authorization server, which it replaces.
fn check_dev_mode(
    args: &ServeArgs,
    bind: Option<SocketAddr>,
    mcp_path: &str,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) {
    if let Some(bind) = bind
        && !bind.ip().is_loopback()
    {
        problems.add(format!(
            "--dev refuses --host {}: its authorization server approves logins without a password, so \
             it listens on loopback only (127.0.0.1, ::1 or localhost); use a real authorization \
             server (SK_ENV_URL) to serve other machines",
            args.host
        ));
    }
    if args.port == 0 && args.public_url.is_none() {
        problems.add(
            "--dev needs a fixed --port (or --public-url): the port is part of its issuer URL, \
             which clients and tokens must agree on",
        );
    }
    if mcp_path == DEV_AUTH_PATH || mcp_path.starts_with(&format!("{DEV_AUTH_PATH}/")) {
        problems.add(format!("--mcp-path {mcp_path:?} collides with --dev's {DEV_AUTH_PATH} routes: pick another path"));
    }
    let replaced: Vec<&str> = [
        ("SK_ENV_URL", args.policy.sk_env_url.is_some()),
        ("--issuer", !args.policy.issuers.is_empty()),
        ("--jwks-url", args.jwks_url.is_some()),
        (
            "--authorization-server",
            !args.policy.authorization_servers.is_empty(),
        ),
        (
            "PROTECTED_RESOURCE_METADATA",
            args.policy
                .protected_resource_metadata
                .as_deref()
                .is_some_and(|json| !json.trim().is_empty()),
        ),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if !replaced.is_empty() {
        warnings.push(format!(
            "--dev: ignoring {}: the development authorization server is the only accepted issuer",
            replaced.join(", ")
        ));
    }
}

/// The accepted issuers, one rule for `serve` and `check-token`: `--issuer` replaces everything;
/// otherwise SK_ENV_URL without its trailing slash (Scalekit's `iss` has none) plus the metadata's
/// authorization servers (`{SK_ENV_URL}/resources/{res_id}`, the form Scalekit is moving to).
pub fn accepted_issuers(
    explicit: &[String],
    sk_env_url: Option<&Url>,
    metadata_servers: &[String],
) -> Vec<String> {
    let explicit = non_blank(explicit);
    if !explicit.is_empty() {
        return explicit;
    }
    let env = sk_env_url.map(|url| url.as_str().trim_end_matches('/').to_owned());
    dedup(env.into_iter().chain(metadata_servers.iter().cloned()))
}

/// The accepted audiences, one rule for `serve` and `check-token`: `--audience` /
/// EXPECTED_AUDIENCE, else the metadata's `resource`. Blank values count as not given, so
/// `EXPECTED_AUDIENCE=" "` can never switch the audience check off.
pub fn accepted_audiences(explicit: &[String], resource: Option<&str>) -> Vec<String> {
    let explicit = non_blank(explicit);
    if !explicit.is_empty() {
        return explicit;
    }
    resource.map(str::to_owned).into_iter().collect()
}

/// Trimmed, non-empty, first occurrence only.
fn non_blank(values: &[String]) -> Vec<String> {
    dedup(
        values
            .iter()
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty()),
    )
}

/// The token policy `serve` would enforce, built without the parts that need a listening server.
///
/// Unlike `serve`, nothing is required: an issuer or audience that cannot be resolved is left
/// empty, and `check-token` reports that check as skipped. The one difference in resolution: when
/// serve generates its metadata without a `resource`, it expects its own public URL as audience;
/// that URL depends on the listening address, so it is not guessed here (`--audience` covers it).
pub fn offline_policy(settings: &PolicyArgs) -> Result<TokenPolicy, ExitError> {
    let mut problems = Problems::default();
    let sk_env_url = settings
        .sk_env_url
        .as_deref()
        .filter(|raw| !raw.trim().is_empty())
        .and_then(|raw| parse_url(raw.trim_end_matches('/'), "SK_ENV_URL", &mut problems));
    let verbatim = settings
        .protected_resource_metadata
        .as_deref()
        .filter(|json| !json.trim().is_empty())
        .and_then(|json| parse_verbatim_metadata(json, &mut problems));
    let (metadata_servers, resource) = match &verbatim {
        Some(metadata) => (
            metadata.authorization_servers.clone(),
            Some(metadata.resource.as_str()),
        ),
        None => (
            settings.authorization_servers.clone(),
            settings.resource.as_deref(),
        ),
    };
    let issuers = accepted_issuers(&settings.issuers, sk_env_url.as_ref(), &metadata_servers);
    let audiences = accepted_audiences(&settings.audiences, resource);
    let algorithms = parse_algorithms(&settings.algorithms, &mut problems);
    problems.into_result_titled(
        "the expected values (flags, or serve's settings from the environment or .env) are invalid",
    )?;
    Ok(TokenPolicy {
        issuers,
        audiences,
        algorithms,
        required_scopes: non_blank(&settings.required_scopes),
        leeway: settings.leeway.0.as_secs(),
        allowed_orgs: non_blank(&settings.allowed_orgs),
    })
}

fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut unique: Vec<String> = Vec::new();
    for item in items {
        if !unique.contains(&item) {
            unique.push(item);
        }
    }
    unique
}

fn parse_url(raw: &str, name: &str, problems: &mut Problems) -> Option<Url> {
    match Url::parse(raw.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        Ok(_) => {
            problems.add(format!("{name} {raw:?} must be an http:// or https:// URL"));
            None
        }
        Err(err) => {
            problems.add(format!("{name} {raw:?} is not a URL ({err})"));
            None
        }
    }
}

/// `--metrics-addr`, checked: HOST:PORT with an IP address (or `localhost`), and never the MCP
/// listener's own address.
fn metrics_address(
    args: &ServeArgs,
    mcp: Option<SocketAddr>,
    problems: &mut Problems,
) -> Option<SocketAddr> {
    let text = args.metrics_addr.as_deref()?.trim();
    if text.is_empty() {
        return None;
    }
    let parsed = text.rsplit_once(':').and_then(|(host, port)| {
        let port = port.parse::<u16>().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            host => host.parse().ok()?,
        };
        Some(SocketAddr::new(ip, port))
    });
    let Some(address) = parsed else {
        problems.add(format!(
            "--metrics-addr {text:?} is not HOST:PORT with an IP address (e.g. 127.0.0.1:9464)"
        ));
        return None;
    };
    let shares_the_mcp_port = mcp.is_some_and(|mcp| {
        mcp.port() == address.port()
            && address.port() != 0
            && (mcp.ip() == address.ip()
                || mcp.ip().is_unspecified()
                || address.ip().is_unspecified())
    });
    if shares_the_mcp_port {
        problems.add(format!(
            "--metrics-addr {address} is the MCP port: metrics need a listener of their own (e.g. \
             127.0.0.1:9464)"
        ));
        return None;
    }
    Some(address)
}

fn bind_address(host: &str, port: u16, problems: &mut Problems) -> Option<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        Err(_) => {
            problems.add(format!(
                "--host {host:?} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)"
            ));
            None
        }
    }
}

/// Parses and checks PROTECTED_RESOURCE_METADATA; the original text is kept to be served as is.
fn parse_verbatim_metadata(json: &str, problems: &mut Problems) -> Option<ResourceMetadata> {
    let object: Map<String, Value> = match serde_json::from_str(json) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            problems.add("PROTECTED_RESOURCE_METADATA must be a JSON object (copy it from the Scalekit dashboard)");
            return None;
        }
        Err(err) => {
            problems.add(format!(
                "PROTECTED_RESOURCE_METADATA is not valid JSON ({err}); in a .env file, wrap it in single quotes"
            ));
            return None;
        }
    };
    let resource = object
        .get("resource")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let servers: Option<Vec<String>> = object
        .get("authorization_servers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        });
    if resource.is_none() {
        problems.add(
            "PROTECTED_RESOURCE_METADATA has no \"resource\" string (RFC 9728 §2 requires it)",
        );
    }
    match &servers {
        Some(list) if !list.is_empty() => {}
        _ => problems.add(
            "PROTECTED_RESOURCE_METADATA has no \"authorization_servers\" array of URLs: clients cannot \
             discover where to log in",
        ),
    }
    Some(ResourceMetadata {
        document: bytes::Bytes::from(json.trim().to_owned()),
        resource: resource?,
        authorization_servers: servers.filter(|list| !list.is_empty())?,
    })
}

/// The metadata generated from flags when PROTECTED_RESOURCE_METADATA is not set.
fn generated_metadata(
    args: &ServeArgs,
    public_url: &Url,
    mcp_path: &str,
    issuers: &[String],
    scopes_supported: &[String],
) -> ResourceMetadata {
    let resource = args
        .policy
        .resource
        .clone()
        .unwrap_or_else(|| join_path(public_url, mcp_path));
    let authorization_servers = if args.dev || args.policy.authorization_servers.is_empty() {
        issuers.to_vec()
    } else {
        args.policy.authorization_servers.clone()
    };
    let mut document = serde_json::json!({
        "resource": resource,
        "authorization_servers": authorization_servers,
        "bearer_methods_supported": ["header"],
    });
    if !scopes_supported.is_empty() {
        document["scopes_supported"] = serde_json::json!(scopes_supported);
    }
    ResourceMetadata {
        document: bytes::Bytes::from(serde_json::to_vec_pretty(&document).unwrap_or_default()),
        resource,
        authorization_servers,
    }
}

/// A warning when the resource's URL path is not the MCP endpoint's path. Clients send MCP
/// requests to the resource, so this is usually a mistake; behind a proxy that rewrites paths it
/// can be deliberate, so it does not stop the server.
fn resource_path_mismatch(resource: &str, mcp_path: &str) -> Option<String> {
    let url = Url::parse(resource).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    // Compared exactly: the endpoint answers its path as sent, trailing slash included.
    (url.path() != mcp_path).then(|| {
        format!(
            "the resource {resource:?} has the path {:?} but the MCP endpoint is at --mcp-path {mcp_path:?}: \
             clients send MCP requests to the resource, so unless a proxy rewrites the path, set \
             --mcp-path (SCALEKIT_MCP_PATH) to {:?}",
            url.path(),
            url.path()
        )
    })
}

/// The public URL: --public-url, else the origin of an http(s) `resource` (from the metadata or
/// --resource), else http://localhost:PORT.
fn public_url(args: &ServeArgs, resource: Option<&str>, problems: &mut Problems) -> Option<Url> {
    if let Some(raw) = &args.public_url {
        return parse_url(raw, "--public-url", problems);
    }
    if let Some(url) = resource.and_then(|resource| Url::parse(resource).ok())
        && matches!(url.scheme(), "http" | "https")
        && url.has_host()
    {
        return Url::parse(&url.origin().ascii_serialization()).ok();
    }
    let host = match args.host.as_str() {
        "0.0.0.0" | "::" | "[::]" | "127.0.0.1" => "localhost".to_owned(),
        other if other.contains(':') => {
            format!("[{}]", other.trim_start_matches('[').trim_end_matches(']'))
        }
        other => other.to_owned(),
    };
    parse_url(
        &format!("http://{host}:{}", args.port),
        "the public URL",
        problems,
    )
}

/// `public_url` with `path` as its path (`/` stays `/`).
pub fn join_path(public_url: &Url, path: &str) -> String {
    let mut url = public_url.clone();
    url.set_path(path);
    url.to_string()
}

/// The RFC 9728 well-known URL for a resource at `mcp_path`: the path is appended after the
/// well-known prefix (`/.well-known/oauth-protected-resource/mcp`).
pub fn well_known_url(public_url: &Url, mcp_path: &str) -> String {
    let suffix = if mcp_path == "/" {
        ""
    } else {
        mcp_path.trim_end_matches('/')
    };
    join_path(
        public_url,
        &format!("/.well-known/oauth-protected-resource{suffix}"),
    )
}

fn parse_algorithms(names: &[String], problems: &mut Problems) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    for name in names {
        match name.trim().parse::<Algorithm>() {
            Ok(alg) if ASYMMETRIC_ALGORITHMS.contains(&alg) => algorithms.push(alg),
            Ok(alg) => problems.add(format!(
                "--algorithms {alg:?} is symmetric (HMAC) and never allowed: a shared secret cannot be \
                 published in a JWKS"
            )),
            Err(_) => problems.add(format!(
                "--algorithms {name:?} is unknown: use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
            )),
        }
    }
    if algorithms.is_empty() && problems.is_empty() {
        problems.add("--algorithms is empty: allow at least RS256");
    }
    algorithms
}

/// Host values accepted for DNS-rebinding protection: loopback names, the public URL's and the
/// resource's hosts, and --allowed-host. `*` among them turns the check off (empty list).
fn allowed_hosts(args: &ServeArgs, public_url: &Url, resource: &str) -> Vec<String> {
    if args.allowed_hosts.iter().any(|host| host.trim() == "*") {
        return Vec::new();
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .map(String::from)
        .to_vec();
    let resource_host = Url::parse(resource)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned));
    hosts.extend(public_url.host_str().map(str::to_owned));
    hosts.extend(resource_host);
    hosts.extend(
        args.allowed_hosts
            .iter()
            .map(|host| host.trim().to_ascii_lowercase()),
    );
    dedup(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!("30".parse::<Duration>().unwrap().0.as_secs(), 30);
        assert_eq!("10m".parse::<Duration>().unwrap().0.as_secs(), 600);
        assert_eq!("1h".parse::<Duration>().unwrap().0.as_secs(), 3600);
        assert_eq!("250ms".parse::<Duration>().unwrap().0.as_millis(), 250);
        assert!("ten".parse::<Duration>().is_err());
        assert!("5d".parse::<Duration>().is_err());
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn issuers_are_the_flag_else_env_url_plus_metadata_servers() {
        let env = Url::parse("https://acme.scalekit.dev/").unwrap();
        let servers = strings(&["https://acme.scalekit.dev/resources/res_1"]);
        assert_eq!(
            accepted_issuers(&[], Some(&env), &servers),
            strings(&[
                "https://acme.scalekit.dev",
                "https://acme.scalekit.dev/resources/res_1"
            ])
        );
        let explicit = strings(&[" https://other.example ", ""]);
        assert_eq!(
            accepted_issuers(&explicit, Some(&env), &servers),
            strings(&["https://other.example"])
        );
        assert!(accepted_issuers(&strings(&[" "]), None, &[]).is_empty());
    }

    #[test]
    fn audiences_are_the_flag_else_the_resource_and_never_blank() {
        assert_eq!(accepted_audiences(&[], Some("res_1")), strings(&["res_1"]));
        assert_eq!(
            accepted_audiences(&strings(&["a", "a", "b"]), Some("res_1")),
            strings(&["a", "b"])
        );
        assert_eq!(
            accepted_audiences(&strings(&[" "]), Some("res_1")),
            strings(&["res_1"])
        );
        assert!(accepted_audiences(&[], None).is_empty());
    }

    #[test]
    fn well_known_url_inserts_the_path() {
        let public = Url::parse("https://mcp.example.com").unwrap();
        assert_eq!(
            well_known_url(&public, "/"),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            well_known_url(&public, "/mcp"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
    }
}
