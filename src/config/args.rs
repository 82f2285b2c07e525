//! `serve`'s command line, as clap reads it: every flag with its environment variable and
//! default, grouped under the headings `serve --help` shows.
//!
//! These are the raw settings; [`super::ServeConfig::from_args`] checks and resolves them. The
//! flags that decide what a token must carry ([`PolicyArgs`]) are shared with `check-token`, so
//! that, run in the server's directory, it reads the server's settings exactly as `serve` does.
//!
//! Each flag's doc comment opens with a one-line summary (what `-h` shows); the paragraphs after
//! it are for `--help` and the man page. On/off settings read their environment variable as
//! `1`/`0`, `true`/`false`, `yes`/`no` or `on`/`off` (clap's own default takes only `true` and
//! `false`, and `SCALEKIT_MCP_DEV=1` in a `.env` is what people write).

use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

use super::{DEFAULT_ALGORITHMS, DEFAULT_LEEWAY, Duration};
use crate::logging::LogFormat;

/// `serve --help` headings.
pub mod heading {
    pub const LISTENING: &str = "Listening";
    pub const TOKENS: &str = "Tokens and issuers";
    pub const METADATA: &str = "Metadata (RFC 9728)";
    pub const LIMITS: &str = "Limits";
    pub const SESSIONS: &str = "Sessions (stateful mode)";
    pub const POLICY: &str = "Policies";
    pub const LOGGING: &str = "Logging and metrics";
    pub const DEVELOPMENT: &str = "Development (--dev)";
    pub const REPLICAS: &str = "Several replicas (Redis)";
    #[cfg(feature = "gateway")]
    pub const GATEWAY: &str = "Gateway (in front of another MCP server)";
}

/// Which transport `serve` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// MCP Streamable HTTP, with OAuth bearer tokens.
    Http,
    /// MCP over stdin/stdout for a local client; no OAuth (per the MCP spec).
    Stdio,
}

/// The settings that decide which tokens are accepted: issuers, audiences, scopes, algorithms,
/// and the protected resource metadata they may be derived from. Shared by `serve` and
/// `check-token`.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Scalekit environment URL: its tokens are accepted, its JWKS read from {SK_ENV_URL}/keys.
    ///
    /// Tokens issued by it and by the metadata's authorization servers (Scalekit's
    /// {SK_ENV_URL}/resources/{res_id} form) are accepted.
    #[arg(long, env = "SK_ENV_URL", value_name = "URL", help_heading = heading::TOKENS)]
    pub sk_env_url: Option<String>,

    /// Accepted token issuer (repeatable, or comma-separated).
    ///
    /// Replaces SK_ENV_URL and the metadata's authorization servers as the accepted issuers.
    #[arg(
        long = "issuer",
        env = "SCALEKIT_MCP_ISSUERS",
        value_delimiter = ',',
        value_name = "URL",
        help_heading = heading::TOKENS
    )]
    pub issuers: Vec<String>,

    /// Accepted token audience (repeatable, or comma-separated).
    ///
    /// Defaults to the metadata's `resource`. Compared exactly, trailing slash included.
    #[arg(
        long = "audience",
        env = "EXPECTED_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD",
        help_heading = heading::TOKENS
    )]
    pub audiences: Vec<String>,

    /// Scope every token must carry (repeatable, or comma-separated).
    ///
    /// Read from the `scope`, `scp` or `scopes` claim. A valid token without it gets 403
    /// insufficient_scope.
    #[arg(
        long = "required-scope",
        alias = "require-scope",
        env = "SCALEKIT_MCP_REQUIRED_SCOPES",
        value_delimiter = ',',
        value_name = "SCOPE",
        help_heading = heading::TOKENS
    )]
    pub required_scopes: Vec<String>,

    /// Allowed signature algorithms (comma-separated).
    ///
    /// Any of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA. HMAC and `none` are
    /// never allowed.
    #[arg(
        long,
        env = "SCALEKIT_MCP_ALGORITHMS",
        value_delimiter = ',',
        default_value = DEFAULT_ALGORITHMS,
        value_name = "ALG",
        help_heading = heading::TOKENS
    )]
    pub algorithms: Vec<String>,

    /// Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m).
    #[arg(
        long,
        env = "SCALEKIT_MCP_LEEWAY",
        default_value = DEFAULT_LEEWAY,
        value_name = "DURATION",
        help_heading = heading::TOKENS
    )]
    pub leeway: Duration,

    /// Scopes a tool needs (repeatable): NAME=SCOPE[ SCOPE…]; NAME may use * (admin_*=admin).
    ///
    /// A tool matching several entries needs all their scopes. A tools/call without them gets
    /// 403 insufficient_scope naming every scope the tool needs, before the tool runs, and
    /// tools/list shows each caller only the tools its scopes allow. Scopes are compared as exact
    /// strings: there is no hierarchy. In the environment, entries are separated by `;`.
    #[arg(
        long = "tool-scope",
        env = "SCALEKIT_MCP_TOOL_SCOPES",
        value_delimiter = ';',
        value_name = "NAME=SCOPES",
        help_heading = heading::POLICY
    )]
    pub tool_scopes: Vec<String>,

    /// Organization whose tokens are accepted (repeatable, or comma-separated). Default: any.
    ///
    /// Read from the token's org_id claim, else oid. A token of another organization, or of
    /// none, gets 401 invalid_token.
    #[arg(
        long = "allowed-org",
        env = "SCALEKIT_MCP_ALLOWED_ORGS",
        value_delimiter = ',',
        value_name = "ORG",
        help_heading = heading::POLICY
    )]
    pub allowed_orgs: Vec<String>,

    /// Protected resource metadata JSON, served as given.
    ///
    /// The RFC 9728 document, as the Scalekit dashboard shows it. Must name `resource` and
    /// `authorization_servers`: its authorization servers are accepted issuers and its resource
    /// the accepted audience. Without it, the metadata is generated from --resource,
    /// --authorization-server and --scopes-supported.
    #[arg(
        long,
        env = "PROTECTED_RESOURCE_METADATA",
        hide_env_values = true,
        value_name = "JSON",
        help_heading = heading::METADATA
    )]
    pub protected_resource_metadata: Option<String>,

    /// The resource identifier of generated metadata.
    ///
    /// Defaults to the public URL of the MCP path. Also the accepted audience when --audience is
    /// not given, and the origin of the public URL when --public-url is not given.
    #[arg(
        long,
        env = "SCALEKIT_MCP_RESOURCE",
        value_name = "URL",
        help_heading = heading::METADATA
    )]
    pub resource: Option<String>,

    /// Authorization server of generated metadata (repeatable, or comma-separated).
    ///
    /// Defaults to the accepted issuers. Accepted as an issuer when --issuer is not given.
    #[arg(
        long = "authorization-server",
        env = "SCALEKIT_MCP_AUTHORIZATION_SERVERS",
        value_delimiter = ',',
        value_name = "URL",
        help_heading = heading::METADATA
    )]
    pub authorization_servers: Vec<String>,
}

/// `scalekit-mcp serve`: every setting of the server, from flags, the environment or `.env`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Transport to serve.
    #[arg(
        long,
        value_enum,
        env = "SCALEKIT_MCP_TRANSPORT",
        default_value = "http",
        help_heading = heading::LISTENING
    )]
    pub transport: Transport,

    /// Address to listen on (0.0.0.0: every interface).
    #[arg(
        long,
        env = "SCALEKIT_MCP_HOST",
        default_value = "127.0.0.1",
        help_heading = heading::LISTENING
    )]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3002, help_heading = heading::LISTENING)]
    pub port: u16,

    /// The URL clients use to reach this server (behind a proxy).
    ///
    /// Defaults to the origin of the resource (the metadata's, or --resource), else
    /// http://localhost:PORT.
    #[arg(
        long,
        env = "SCALEKIT_MCP_PUBLIC_URL",
        value_name = "URL",
        help_heading = heading::LISTENING
    )]
    pub public_url: Option<String>,

    /// Path of the MCP endpoint.
    #[arg(
        long,
        env = "SCALEKIT_MCP_PATH",
        default_value = "/",
        value_name = "PATH",
        help_heading = heading::LISTENING
    )]
    pub mcp_path: String,

    /// No sessions: plain JSON answers, for several instances behind a load balancer.
    #[arg(
        long,
        env = "SCALEKIT_MCP_STATELESS",
        value_parser = BoolishValueParser::new(),
        help_heading = heading::LISTENING
    )]
    pub stateless: bool,

    /// More Host values to accept (repeatable; `*` turns the check off).
    ///
    /// `host` or `host:port`. Loopback names and the public URL's host are always accepted; `*`
    /// accepts any, which disables the DNS-rebinding protection.
    #[arg(
        long = "allowed-host",
        env = "SCALEKIT_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST",
        help_heading = heading::LISTENING
    )]
    pub allowed_hosts: Vec<String>,

    /// Browser origin allowed by CORS (repeatable). None by default.
    ///
    /// For example <https://app.example.com>.
    #[arg(
        long = "cors-origin",
        env = "SCALEKIT_MCP_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN",
        help_heading = heading::LISTENING
    )]
    pub cors_origins: Vec<String>,

    /// The settings that decide which tokens are accepted (shared with `check-token`).
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// JWKS URL.
    ///
    /// Defaults to {SK_ENV_URL}/keys, else the `jwks_uri` in the issuer's RFC 8414 or OpenID
    /// Connect metadata.
    #[arg(
        long,
        env = "SCALEKIT_MCP_JWKS_URL",
        value_name = "URL",
        help_heading = heading::TOKENS
    )]
    pub jwks_url: Option<String>,

    /// JWKS refresh interval when the response has no Cache-Control max-age.
    #[arg(
        long,
        env = "SCALEKIT_MCP_JWKS_TTL",
        default_value = "10m",
        value_name = "DURATION",
        help_heading = heading::TOKENS
    )]
    pub jwks_ttl: Duration,

    /// Minimum time between JWKS refetches for tokens with an unknown kid.
    #[arg(
        long,
        env = "SCALEKIT_MCP_JWKS_COOLDOWN",
        default_value = "30s",
        value_name = "DURATION",
        help_heading = heading::TOKENS
    )]
    pub jwks_cooldown: Duration,

    /// Absolute URL of the metadata, as sent in challenges.
    ///
    /// Defaults to the public URL's /.well-known/oauth-protected-resource, with the MCP path
    /// appended when it is not /.
    #[arg(
        long,
        env = "RESOURCE_METADATA_URL",
        value_name = "URL",
        help_heading = heading::METADATA
    )]
    pub resource_metadata_url: Option<String>,

    /// Scopes listed in generated metadata (repeatable, or comma-separated).
    ///
    /// With --dev, the scopes its authorization server grants (default: mcp:tools).
    #[arg(
        long = "scopes-supported",
        env = "SCALEKIT_MCP_SCOPES_SUPPORTED",
        value_delimiter = ',',
        value_name = "SCOPE",
        help_heading = heading::METADATA
    )]
    pub scopes_supported: Vec<String>,

    /// Largest request body, in bytes (413 beyond).
    #[arg(
        long,
        env = "SCALEKIT_MCP_MAX_BODY_BYTES",
        default_value_t = 4 * 1024 * 1024,
        value_name = "BYTES",
        help_heading = heading::LIMITS
    )]
    pub max_body_bytes: usize,

    /// Largest request header section, in bytes (431 beyond).
    ///
    /// Access tokens are refused beyond 16 KiB anyway.
    #[arg(
        long,
        env = "SCALEKIT_MCP_MAX_HEADER_BYTES",
        default_value_t = 32 * 1024,
        value_name = "BYTES",
        help_heading = heading::LIMITS
    )]
    pub max_header_bytes: usize,

    /// Time allowed to start answering a request (408 beyond).
    ///
    /// Counts until the response starts, so Server-Sent Events streams are never cut.
    #[arg(
        long,
        env = "SCALEKIT_MCP_REQUEST_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION",
        help_heading = heading::LIMITS
    )]
    pub request_timeout: Duration,

    /// Time a connection may wait for its next request head before it is closed.
    ///
    /// Counted from the moment it opened or its last response ended: idle and slow connections
    /// free their slot.
    #[arg(
        long,
        env = "SCALEKIT_MCP_IDLE_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION",
        help_heading = heading::LIMITS
    )]
    pub idle_timeout: Duration,

    /// Connections held open at once (503 with Retry-After beyond).
    #[arg(
        long,
        env = "SCALEKIT_MCP_MAX_CONNECTIONS",
        default_value_t = 512,
        value_name = "N",
        help_heading = heading::LIMITS
    )]
    pub max_connections: usize,

    /// Time in-flight requests get to finish after SIGINT or SIGTERM.
    #[arg(
        long,
        env = "SCALEKIT_MCP_SHUTDOWN_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION",
        help_heading = heading::LIMITS
    )]
    pub shutdown_timeout: Duration,

    /// Sessions open at once, all callers together (an initialize beyond gets 503).
    ///
    /// Each open session holds memory until it ends: with DELETE, or after
    /// --session-idle-timeout without a request (most clients never send DELETE). In front of a
    /// command (serve -- COMMAND), where each session is a process, the default is 100.
    #[arg(
        long,
        env = "SCALEKIT_MCP_MAX_SESSIONS",
        default_value_t = 1000,
        value_name = "N",
        help_heading = heading::SESSIONS
    )]
    pub max_sessions: usize,

    /// Sessions open at once per caller; one more closes its least recently used.
    ///
    /// A caller is the token's issuer and subject (else client id), as for session binding. The
    /// closed session's client gets 404 and starts a new one, as MCP clients do, so a client
    /// that reconnects in a loop never locks itself out.
    #[arg(
        long,
        env = "SCALEKIT_MCP_MAX_SESSIONS_PER_CALLER",
        default_value_t = 100,
        value_name = "N",
        help_heading = heading::SESSIONS
    )]
    pub max_sessions_per_caller: usize,

    /// A session without a request for this long is closed.
    #[arg(
        long,
        env = "SCALEKIT_MCP_SESSION_IDLE_TIMEOUT",
        default_value = "5m",
        value_name = "DURATION",
        help_heading = heading::SESSIONS
    )]
    pub session_idle_timeout: Duration,

    /// A session without a request or an open stream for this long sleeps.
    ///
    /// A sleeping session keeps its owner and the client's initialize parameters (about 1 KiB)
    /// instead of a whole session worker (about 67 KiB). Plain tool calls are answered without
    /// waking it; any other request wakes it by replaying the handshake. It still ends after
    /// --session-idle-timeout. Set it to the idle timeout or more to keep sessions awake.
    /// Servers in front of another MCP server never sleep.
    #[arg(
        long,
        env = "SCALEKIT_MCP_SESSION_SLEEP_AFTER",
        default_value = "30s",
        value_name = "DURATION",
        help_heading = heading::SESSIONS
    )]
    pub session_sleep_after: Duration,

    /// Keep sessions in Redis, so that every replica serves every session: redis://…
    ///
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. Any replica takes over a
    /// session it does not hold (from the client's initialize parameters), only for the caller
    /// who opened it; DELETE ends it everywhere. While Redis is down, new sessions and
    /// take-overs get 503, sessions held by a replica go on. Default: in this process only.
    #[arg(
        long,
        env = "SCALEKIT_MCP_SESSION_STORE",
        value_name = "URL",
        help_heading = heading::REPLICAS
    )]
    pub session_store: Option<String>,

    /// Count rate limits in Redis, so that they hold across replicas (default: the session store).
    ///
    /// --rate-limit, --tool-rate-limit and --anonymous-rate-limit become totals over every
    /// replica using this Redis, instead of per replica. While Redis is down, requests are
    /// admitted (logged at ERROR and counted in scalekit_mcp_store_errors_total).
    #[arg(
        long,
        env = "SCALEKIT_MCP_RATE_LIMIT_STORE",
        value_name = "URL",
        help_heading = heading::REPLICAS
    )]
    pub rate_limit_store: Option<String>,

    /// Prefix of every Redis key, so that several deployments can share one Redis.
    #[arg(
        long,
        env = "SCALEKIT_MCP_REDIS_PREFIX",
        default_value = "scalekit-mcp:",
        value_name = "PREFIX",
        help_heading = heading::REPLICAS
    )]
    pub redis_prefix: String,

    /// Requests each caller may make: N/UNIT, UNIT s, min or h (e.g. 600/min). Default: none.
    ///
    /// A caller is the token's issuer and subject (else client id). Requests are admitted at
    /// the steady rate with bursts of --rate-limit-burst (GCRA); beyond, 429 with Retry-After
    /// and the RateLimit headers.
    #[arg(
        long,
        env = "SCALEKIT_MCP_RATE_LIMIT",
        value_name = "N/UNIT",
        help_heading = heading::POLICY
    )]
    pub rate_limit: Option<String>,

    /// Requests a caller may make at once after a quiet spell (default: a tenth of N, at least 1).
    #[arg(
        long,
        env = "SCALEKIT_MCP_RATE_LIMIT_BURST",
        value_name = "N",
        help_heading = heading::POLICY
    )]
    pub rate_limit_burst: Option<u32>,

    /// Calls of a tool each caller may make (repeatable): NAME=N/UNIT; NAME may use *.
    ///
    /// Counted per caller and tool, on tools/call, with bursts of a tenth of N (at least 1).
    /// In the environment, entries are separated by `;`.
    #[arg(
        long = "tool-rate-limit",
        env = "SCALEKIT_MCP_TOOL_RATE_LIMITS",
        value_delimiter = ';',
        value_name = "NAME=N/UNIT",
        help_heading = heading::POLICY
    )]
    pub tool_rate_limits: Vec<String>,

    /// Requests each client IP may make that need a token checked: N/UNIT. Default: none.
    ///
    /// Counts requests without a usable token and tokens not seen before (a valid token is
    /// checked once, then remembered), so a flood of bad tokens cannot burn CPU on signature
    /// checks. Off by default: every MCP client's first request is an unauthenticated discovery
    /// probe, and behind a proxy all clients share its IP unless --trusted-proxy is set.
    #[arg(
        long,
        env = "SCALEKIT_MCP_ANONYMOUS_RATE_LIMIT",
        value_name = "N/UNIT",
        help_heading = heading::POLICY
    )]
    pub anonymous_rate_limit: Option<String>,

    /// Proxy whose X-Forwarded-For / Forwarded headers name the client (repeatable; CIDR).
    ///
    /// Only requests whose connection comes from one of these ranges have those headers read;
    /// the right-most address not in a trusted range is the client. Others' headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "SCALEKIT_MCP_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR",
        help_heading = heading::POLICY
    )]
    pub trusted_proxies: Vec<String>,

    /// Log level: error, warn, info, debug, trace (Python names work).
    ///
    /// RUST_LOG overrides it. Default: info.
    #[arg(
        long,
        env = "LOG_LEVEL",
        value_name = "LEVEL",
        help_heading = heading::LOGGING
    )]
    pub log_level: Option<String>,

    /// Log line format (to stderr).
    #[arg(
        long,
        value_enum,
        env = "SCALEKIT_MCP_LOG_FORMAT",
        default_value = "text",
        help_heading = heading::LOGGING
    )]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464). Default: off.
    ///
    /// A listener of its own, never the MCP port, with no authentication: bind it where only
    /// the scraper reaches it. HTTP transport only.
    #[arg(
        long,
        env = "SCALEKIT_MCP_METRICS_ADDR",
        value_name = "HOST:PORT",
        help_heading = heading::LOGGING
    )]
    pub metrics_addr: Option<String>,

    /// Also run a development authorization server, offline, at {public URL}/dev-auth.
    ///
    /// An OAuth 2.1 authorization server on the same port that issues tokens this server
    /// accepts. No account, no network. For development only: it logs anyone in as --dev-user
    /// and listens on loopback only.
    #[arg(
        long,
        env = "SCALEKIT_MCP_DEV",
        value_parser = BoolishValueParser::new(),
        help_heading = heading::DEVELOPMENT
    )]
    pub dev: bool,

    /// PEM RSA private key kept across restarts (created when missing).
    ///
    /// The development authorization server signs with it, so its tokens stay valid across
    /// restarts. Default: a fresh key at each start.
    #[arg(
        long,
        env = "SCALEKIT_MCP_DEV_KEY",
        value_name = "FILE",
        help_heading = heading::DEVELOPMENT
    )]
    pub dev_key: Option<std::path::PathBuf>,

    /// Approve every authorization request without the consent page (scripts, tests).
    #[arg(
        long,
        env = "SCALEKIT_MCP_DEV_AUTO_APPROVE",
        value_parser = BoolishValueParser::new(),
        help_heading = heading::DEVELOPMENT
    )]
    pub dev_auto_approve: bool,

    /// The user the development authorization server logs in (the tokens' `sub`).
    #[arg(
        long,
        env = "SCALEKIT_MCP_DEV_USER",
        default_value = "dev-user",
        value_name = "NAME",
        help_heading = heading::DEVELOPMENT
    )]
    pub dev_user: String,

    /// Lifetime of the development authorization server's access tokens.
    #[arg(
        long,
        env = "SCALEKIT_MCP_DEV_TOKEN_TTL",
        default_value = "1h",
        value_name = "DURATION",
        help_heading = heading::DEVELOPMENT
    )]
    pub dev_token_ttl: Duration,

    /// Serve another MCP server's tools instead of the built-in ones (see the Gateway flags).
    #[cfg(feature = "gateway")]
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// `serve -- <command>` / `serve --upstream <url>`: the MCP server this one stands in front of.
#[cfg(feature = "gateway")]
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// The upstream MCP server's Streamable HTTP URL: serve its tools, resources and prompts.
    ///
    /// Every request still needs a valid token here; the upstream gets the caller in
    /// X-Forwarded-User, -Org-Id, -Client-Id and -Scopes and in _meta, never the client's token.
    #[arg(
        long,
        env = "SCALEKIT_MCP_UPSTREAM",
        value_name = "URL",
        conflicts_with = "upstream_command",
        help_heading = heading::GATEWAY
    )]
    pub upstream: Option<String>,

    /// A header for the HTTP upstream (repeatable): 'Name: value'.
    #[arg(long = "upstream-header", value_name = "NAME: VALUE", help_heading = heading::GATEWAY)]
    pub upstream_headers: Vec<String>,

    /// Send `Authorization: Bearer $VAR` to the HTTP upstream (the name of a variable, so the
    /// secret is never on the command line).
    #[arg(long, value_name = "VAR", help_heading = heading::GATEWAY)]
    pub upstream_bearer_env: Option<String>,

    /// Longest wait for an upstream answer (each progress notification restarts it).
    #[arg(
        long,
        env = "SCALEKIT_MCP_UPSTREAM_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION",
        help_heading = heading::GATEWAY
    )]
    pub upstream_timeout: Duration,

    /// An MCP server to run on stdio, one process per session: everything after `--`.
    #[arg(last = true, value_name = "COMMAND", help_heading = heading::GATEWAY)]
    pub upstream_command: Vec<String>,
}
