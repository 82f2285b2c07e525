//! `scalekit-mcp serve`: the OAuth-protected MCP server, over Streamable HTTP or stdio.
//!
//! Every setting is a flag that names its environment variable; the seed's variables (SK_ENV_URL,
//! EXPECTED_AUDIENCE, PROTECTED_RESOURCE_METADATA, PORT, LOG_LEVEL…) are read under their own
//! names, from the environment or a `.env` in the working directory, so a team running the Python
//! pattern can point this binary at the same `.env`.

use clap::{Args, ValueEnum};

use crate::config::{self, Duration};
use crate::logging::{self, LogFormat};

/// Which transport `serve` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// MCP Streamable HTTP, with OAuth bearer tokens.
    Http,
    /// MCP over stdin/stdout for a local client; no OAuth (per the MCP spec).
    Stdio,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Transport to serve.
    #[arg(
        long,
        value_enum,
        env = "SCALEKIT_MCP_TRANSPORT",
        default_value = "http"
    )]
    pub transport: Transport,

    /// Address to listen on. Use 0.0.0.0 to accept connections from other machines.
    #[arg(long, env = "SCALEKIT_MCP_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3002)]
    pub port: u16,

    /// The URL clients use to reach this server, when it differs from the listen address (behind
    /// a proxy). Defaults to the origin of the resource (the metadata's, or --resource), else
    /// http://localhost:PORT.
    #[arg(long, env = "SCALEKIT_MCP_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Path of the MCP endpoint.
    #[arg(
        long,
        env = "SCALEKIT_MCP_PATH",
        default_value = "/",
        value_name = "PATH"
    )]
    pub mcp_path: String,

    /// Serve without in-memory sessions, answering with plain JSON: for several instances
    /// behind a load balancer.
    #[arg(long, env = "SCALEKIT_MCP_STATELESS")]
    pub stateless: bool,

    /// Scalekit environment URL. Tokens issued by it (and by the metadata's authorization
    /// servers) are accepted, and its JWKS is read from {SK_ENV_URL}/keys.
    #[arg(long, env = "SK_ENV_URL", value_name = "URL")]
    pub sk_env_url: Option<String>,

    /// Accepted token issuer (repeatable, or comma-separated). Replaces SK_ENV_URL and the
    /// metadata's authorization servers as the accepted issuers.
    #[arg(
        long = "issuer",
        env = "SCALEKIT_MCP_ISSUERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub issuers: Vec<String>,

    /// Accepted token audience (repeatable, or comma-separated). Defaults to the metadata's
    /// `resource`. Compared exactly, trailing slash included.
    #[arg(
        long = "audience",
        env = "EXPECTED_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    pub audiences: Vec<String>,

    /// JWKS URL. Defaults to {SK_ENV_URL}/keys, else the `jwks_uri` in the issuer's RFC 8414 or
    /// OpenID Connect metadata.
    #[arg(long, env = "SCALEKIT_MCP_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// OAuth protected resource metadata (RFC 9728), as JSON, served as given. Must name
    /// `resource` and `authorization_servers`. Without it, the metadata is generated from
    /// --resource, --authorization-server and --scopes-supported.
    #[arg(long, env = "PROTECTED_RESOURCE_METADATA", value_name = "JSON")]
    pub protected_resource_metadata: Option<String>,

    /// Absolute URL of the protected resource metadata, as sent in challenges. Defaults to the
    /// public URL's /.well-known/oauth-protected-resource.
    #[arg(long, env = "RESOURCE_METADATA_URL", value_name = "URL")]
    pub resource_metadata_url: Option<String>,

    /// The resource identifier for generated metadata. Defaults to the public URL of the MCP path.
    #[arg(long, env = "SCALEKIT_MCP_RESOURCE", value_name = "URL")]
    pub resource: Option<String>,

    /// Authorization server for generated metadata (repeatable, or comma-separated). Defaults
    /// to the accepted issuers.
    #[arg(
        long = "authorization-server",
        env = "SCALEKIT_MCP_AUTHORIZATION_SERVERS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub authorization_servers: Vec<String>,

    /// Scopes listed in generated metadata (repeatable, or comma-separated). With --dev, the
    /// scopes its authorization server grants (default: mcp:tools).
    #[arg(
        long = "scopes-supported",
        env = "SCALEKIT_MCP_SCOPES_SUPPORTED",
        value_delimiter = ',',
        value_name = "SCOPE"
    )]
    pub scopes_supported: Vec<String>,

    /// Scope every request's token must carry (repeatable, or comma-separated). A token without
    /// it gets 403 insufficient_scope.
    #[arg(
        long = "required-scope",
        alias = "require-scope",
        env = "SCALEKIT_MCP_REQUIRED_SCOPES",
        value_delimiter = ',',
        value_name = "SCOPE"
    )]
    pub required_scopes: Vec<String>,

    /// Allowed signature algorithms (comma-separated): RS256, RS384, RS512, PS256, PS384,
    /// PS512, ES256, ES384, EdDSA. HMAC and `none` are never allowed.
    #[arg(
        long,
        env = "SCALEKIT_MCP_ALGORITHMS",
        value_delimiter = ',',
        default_value = config::DEFAULT_ALGORITHMS,
        value_name = "ALG"
    )]
    pub algorithms: Vec<String>,

    /// Clock skew tolerated on exp, nbf and iat (e.g. 30s, 2m).
    #[arg(
        long,
        env = "SCALEKIT_MCP_LEEWAY",
        default_value = config::DEFAULT_LEEWAY,
        value_name = "DURATION"
    )]
    pub leeway: Duration,

    /// JWKS refresh interval when the response has no Cache-Control max-age.
    #[arg(
        long,
        env = "SCALEKIT_MCP_JWKS_TTL",
        default_value = "10m",
        value_name = "DURATION"
    )]
    pub jwks_ttl: Duration,

    /// Minimum time between JWKS refetches caused by tokens with an unknown kid.
    #[arg(
        long,
        env = "SCALEKIT_MCP_JWKS_COOLDOWN",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub jwks_cooldown: Duration,

    /// More Host values to accept (repeatable, `host` or `host:port`; `*` accepts any, which
    /// disables DNS-rebinding protection). Loopback names and the public URL's host are always
    /// accepted.
    #[arg(
        long = "allowed-host",
        env = "SCALEKIT_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allowed_hosts: Vec<String>,

    /// Browser origin allowed by CORS (repeatable, e.g. https://app.example.com). None by
    /// default.
    #[arg(
        long = "cors-origin",
        env = "SCALEKIT_MCP_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SCALEKIT_MCP_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,

    /// Largest accepted request header section, in bytes (431 beyond). Access tokens are refused
    /// beyond 16 KiB anyway.
    #[arg(long, env = "SCALEKIT_MCP_MAX_HEADER_BYTES", default_value_t = 32 * 1024, value_name = "BYTES")]
    pub max_header_bytes: usize,

    /// Time allowed to answer a request (408 beyond). Counts until the response starts, so
    /// Server-Sent Events streams are never cut.
    #[arg(
        long,
        env = "SCALEKIT_MCP_REQUEST_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    pub request_timeout: Duration,

    /// Time a connection may wait for its next request head (from the moment it opened or its
    /// last response ended) before it is closed: idle and slow connections free their slot.
    #[arg(
        long,
        env = "SCALEKIT_MCP_IDLE_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    pub idle_timeout: Duration,

    /// Connections held open at once; beyond it a new connection gets 503 with Retry-After.
    #[arg(
        long,
        env = "SCALEKIT_MCP_MAX_CONNECTIONS",
        default_value_t = 512,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// How long in-flight requests get to finish after SIGINT / SIGTERM.
    #[arg(
        long,
        env = "SCALEKIT_MCP_SHUTDOWN_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub shutdown_timeout: Duration,

    /// Development mode: also serve an OAuth 2.1 authorization server at {public URL}/dev-auth,
    /// on the same port, that issues tokens this server accepts. No account, no network. For
    /// development only: it logs anyone in as --dev-user and listens on loopback only.
    #[arg(long, env = "SCALEKIT_MCP_DEV")]
    pub dev: bool,

    /// PEM RSA private key the development authorization server signs with, kept across restarts
    /// so tokens stay valid (created on first use). Default: a fresh key at each start.
    #[arg(long, env = "SCALEKIT_MCP_DEV_KEY", value_name = "FILE")]
    pub dev_key: Option<std::path::PathBuf>,

    /// Approve every authorization request without showing the consent page (scripts, tests).
    #[arg(long, env = "SCALEKIT_MCP_DEV_AUTO_APPROVE")]
    pub dev_auto_approve: bool,

    /// The user the development authorization server logs in (the tokens' `sub`).
    #[arg(
        long,
        env = "SCALEKIT_MCP_DEV_USER",
        default_value = "dev-user",
        value_name = "NAME"
    )]
    pub dev_user: String,

    /// Lifetime of the development authorization server's access tokens.
    #[arg(
        long,
        env = "SCALEKIT_MCP_DEV_TOKEN_TTL",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub dev_token_ttl: Duration,

    /// Log level (error, warn, info, debug, trace; Python names work). RUST_LOG overrides it.
    #[arg(long, env = "LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log line format.
    #[arg(
        long,
        value_enum,
        env = "SCALEKIT_MCP_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    logging::init(args.log_format, args.log_level.as_deref(), "info");
    match args.transport {
        Transport::Stdio => crate::server::stdio::run().await,
        Transport::Http => {
            let config = config::ServeConfig::from_args(&args)?;
            crate::server::run(config).await
        }
    }
}
