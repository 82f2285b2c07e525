//! [`McpServer`]: any rmcp handler behind OAuth, as a whole server or as routes of an axum app.
//!
//! It owns what every request shares: the checked configuration, the signing-key cache (loaded
//! and refreshed in the background), the accepted-token cache, the sessions and the tool scopes.
//! [`McpServer::serve`] is `scalekit-mcp serve` with the given handler; [`McpServer::router`]
//! and [`McpServer::auth_layer`] put the same endpoint and the same checks into an application
//! that serves itself.

use std::sync::{Arc, Once};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use rmcp::ServerHandler;
use tokio_util::sync::CancellationToken;
use tower::Layer;

use super::auth::BearerAuth;
use super::dev_auth::DevAuth;
use super::{AppState, Authentication, Extras};
use crate::auth::jwks::{HttpFetcher, JwksCache};
use crate::auth::tool_scopes::ToolScopes;
use crate::config::ServeConfig;

/// An MCP server for handler `H` whose every request needs a valid bearer token.
///
/// `H` is any rmcp [`ServerHandler`] (typically a `#[tool_router]` struct) that is `Clone`: it
/// is built once and cloned for each session (with `--stateless`, each request), so shared
/// state belongs behind an `Arc` inside it.
///
/// Whole server, with every `serve` flag, environment variable and `.env` (see
/// [`crate::main`] for the one-line version):
///
/// ```no_run
/// # use rmcp::ServerHandler;
/// # #[derive(Clone)] struct MyTools;
/// # impl ServerHandler for MyTools {}
/// # async fn run() -> anyhow::Result<()> {
/// let config = scalekit_mcp::Config::from_env()?;
/// scalekit_mcp::McpServer::new(config, MyTools)?.serve().await
/// # }
/// ```
///
/// Mounted in an axum application, next to its own routes:
///
/// ```no_run
/// # use rmcp::ServerHandler;
/// # #[derive(Clone)] struct MyTools;
/// # impl ServerHandler for MyTools {}
/// # async fn run() -> anyhow::Result<()> {
/// use axum::{Router, routing::get};
/// use scalekit_mcp::{Authenticated, Config, McpServer};
///
/// let config = Config::builder()
///     .issuer("https://acme.scalekit.dev")
///     .resource("https://api.example.com/mcp")
///     .mcp_path("/mcp")
///     .build()?;
/// let mcp = McpServer::new(config, MyTools)?;
/// let app = Router::new()
///     .route("/api/hello", get(|| async { "hello" }))
///     .route(
///         "/api/me",
///         get(|caller: Authenticated| async move { caller.sub.clone().unwrap_or_default() })
///             .layer(mcp.auth_layer()),
///     )
///     .merge(mcp.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
pub struct McpServer<H> {
    config: ServeConfig,
    handler: H,
    state: Arc<AppState>,
    dev_auth: Option<Arc<DevAuth>>,
    shutdown: CancellationToken,
    started: Arc<Once>,
    extras: Extras,
}

impl<H> McpServer<H>
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    /// The server for `config` and `handler` (with the configuration's tool scopes). Nothing is
    /// fetched or bound yet. Fails only when `--dev`'s key file cannot be read or written.
    pub fn new(config: ServeConfig, handler: H) -> anyhow::Result<Self> {
        Self::with_tool_scopes(config, handler, ToolScopes::default())
    }

    /// [`McpServer::new`] with the scopes each tool needs, on top of the configuration's
    /// ([`ConfigBuilder::tool_scope`](crate::ConfigBuilder::tool_scope), which also lists them in
    /// the metadata): a `tools/call` of a tool whose scopes the token lacks is refused with 403
    /// `insufficient_scope` before the handler sees it, and `tools/list` leaves it out.
    pub fn with_tool_scopes(
        config: ServeConfig,
        handler: H,
        tool_scopes: ToolScopes,
    ) -> anyhow::Result<Self> {
        Self::with_extras(config, handler, tool_scopes, Extras::default())
    }

    /// [`McpServer::with_tool_scopes`] with what a server of this crate adds ([`Extras`]).
    pub(crate) fn with_extras(
        config: ServeConfig,
        handler: H,
        tool_scopes: ToolScopes,
        extras: Extras,
    ) -> anyhow::Result<Self> {
        let dev_auth = DevAuth::start(&config)?;
        let fetcher = match &dev_auth {
            Some(dev_auth) => dev_auth.key_fetcher(),
            None => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .user_agent(concat!("scalekit-mcp/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .context("building the HTTP client for the JWKS")?;
                Box::new(HttpFetcher::new(client, config.jwks.clone()))
            }
        };
        let keys = Arc::new(JwksCache::new(fetcher, config.cache));
        let tool_scopes = config.tool_scopes.clone().and(&tool_scopes);
        let known_tool = super::metrics::known_tools_of(handler.clone());
        let state = AppState::new(&config, keys, tool_scopes, known_tool, &extras)?;
        Ok(Self {
            config,
            handler,
            state,
            dev_auth,
            shutdown: CancellationToken::new(),
            started: Arc::new(Once::new()),
            extras,
        })
    }

    /// Lets plain `tools/call` and `tools/list` requests on an established session be answered
    /// in the request's own task, as `--stateless` answers them, instead of through rmcp's
    /// session worker: about twice the throughput of the default (stateful) mode.
    ///
    /// Only for a handler that **never uses its peer** (`context.peer`, not even `peer_info()`)
    /// while it answers those two requests: no logging or other notifications, no sampling,
    /// elicitation or roots requests to the client, no [`ResponseStream`](crate::ResponseStream).
    /// On this path the peer is an idle one that delivers nothing and knows no client, and
    /// there is no stream to end. Progress stays
    /// available: a request with `_meta` (a progress token) always goes through rmcp, as does
    /// every other method, so resources, prompts, subscriptions and notifications outside tool
    /// calls work as before. The answers are rmcp's, framed as rmcp frames them and written at
    /// once; their streams are not kept for a resume (a client cut off inside that one write
    /// sends the request again).
    pub fn with_direct_tool_calls(mut self) -> Self {
        self.extras.direct_tool_calls = true;
        self
    }

    /// Lets idle sessions sleep (`--session-sleep-after`, 30 s): a session without a request or
    /// an open stream for that long gives up rmcp's session worker (about 67 KiB) and keeps only
    /// its owner and the client's `initialize` parameters. The next request that needs a worker
    /// wakes it: rmcp starts a **new handler** (a clone of the one you gave) and replays the
    /// client's `initialize` and `notifications/initialized` to it.
    ///
    /// Only for a handler that keeps **no per-session state** of its own (state shared through
    /// an `Arc`, a database or the like is fine) and sends the client nothing outside a request
    /// while none is in flight (a notification to a sleeping session has no peer to go to).
    /// Most clients never end their sessions, so this is what bounds the memory of sessions
    /// whose clients have gone.
    pub fn with_sleeping_sessions(mut self) -> Self {
        self.extras.sessions_may_sleep = true;
        self
    }

    /// The checked configuration.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// Cancelled when the server shuts down; cancel it to end open MCP streams and sessions
    /// (for a mounted router, do so in your own graceful shutdown).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Loads the signing keys and keeps them fresh, forgets idle rate-limit state, and serves
    /// `/metrics` (on `metrics_listener`, or on the configured address, bound now), in the
    /// background, once.
    fn start_background(&self, metrics_listener: Option<tokio::net::TcpListener>) {
        self.started.call_once(|| {
            for warning in &self.config.warnings {
                tracing::warn!("{warning}");
            }
            tokio::spawn(
                self.state
                    .keys
                    .clone()
                    .maintain(self.shutdown.child_token()),
            );
            #[cfg(feature = "redis")]
            for store in &self.state.redis {
                tracing::info!(redis = %store.describe(), "sessions or rate limits are shared in Redis");
                store.watch(self.shutdown.child_token());
            }
            if !self.state.rate_limits.is_empty() {
                tokio::spawn(forget_idle_rate_limit_keys(
                    self.state.clone(),
                    self.shutdown.child_token(),
                ));
            }
            if let (Some(metrics), Some(address)) = (&self.state.metrics, self.config.metrics_addr)
            {
                tokio::spawn(serve_metrics(
                    metrics_listener,
                    address,
                    metrics.clone(),
                    self.shutdown.child_token(),
                ));
            }
        });
    }

    /// [`McpServer::start_background`] for a mounted server: the metrics address is bound in
    /// the background (a failure is logged).
    fn start_key_refresh(&self) {
        self.start_background(None);
    }

    /// The routes to merge into an axum application: the MCP endpoint at the configured MCP path,
    /// behind the Host/Origin check and the bearer token; its RFC 9728 metadata at
    /// `/.well-known/oauth-protected-resource` and that path followed by the MCP path; and with
    /// `--dev`, the development authorization server. The application's other routes are left
    /// alone. Must be called inside a Tokio runtime: the signing keys start loading then.
    pub fn router(&self) -> Router {
        self.start_key_refresh();
        super::mountable_routes(
            &self.config,
            self.state.clone(),
            self.handler.clone(),
            &self.extras,
            self.dev_auth.as_ref().map(DevAuth::router),
            self.shutdown.clone(),
        )
    }

    /// `/health` (liveness) and `/ready` (200 once the signing keys are loaded, else 503 with
    /// the reason), to merge as well when the application has none of its own. Must be called
    /// inside a Tokio runtime.
    pub fn health_router(&self) -> Router {
        self.start_key_refresh();
        super::health_routes().with_state(self.state.clone())
    }

    /// A layer that gives any other route the MCP endpoint's token validation and challenges,
    /// with the caller available to the handler as [`Authenticated`](crate::Authenticated).
    /// Must be called inside a Tokio runtime: the signing keys start loading then.
    pub fn auth_layer(&self) -> BearerAuthLayer {
        self.start_key_refresh();
        BearerAuthLayer {
            state: self.state.clone(),
        }
    }

    /// Serves on the configured address until SIGINT or SIGTERM, then lets in-flight requests
    /// finish within the shutdown timeout: what `scalekit-mcp serve` does.
    pub async fn serve(self) -> anyhow::Result<()> {
        self.serve_with(Authentication::Required).await
    }

    /// [`McpServer::serve`] with the bearer-token check left out, and nothing else changed, for
    /// test fixtures only: the benchmark's "auth off" row, which measures what authentication
    /// costs, and the server the MCP conformance suite grades (its harness sends no token).
    /// Never for use.
    #[doc(hidden)]
    pub async fn serve_without_auth_for_benchmarks(self) -> anyhow::Result<()> {
        tracing::warn!("test fixture: MCP requests are NOT authenticated");
        self.serve_with(Authentication::Off).await
    }

    async fn serve_with(self, authentication: Authentication) -> anyhow::Result<()> {
        let config = &self.config;
        // Bound before anything starts, so that a taken port stops `serve` with its reason.
        let metrics_listener = match config.metrics_addr {
            Some(address) => Some(bind_metrics(address).await?),
            None => None,
        };
        self.start_background(metrics_listener);
        let shutdown = self.shutdown.clone();
        // Before the first request: see `timer_floor` for why the request timeout needs it.
        tokio::spawn(super::timer_floor::hold(
            config.request_timeout.min(config.idle_timeout),
            shutdown.child_token(),
        ));

        // Before the port opens: a SIGTERM sent as soon as the server answers must find the
        // handler in place, or its default action kills the process mid-request.
        let shutdown_requested = super::shutdown_signal();
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| {
                format!(
                    "listening on {} (is another server using the port? set PORT or --port)",
                    config.bind
                )
            })?;
        let local = listener.local_addr()?;
        tracing::info!(
            address = %local,
            mcp = %crate::config::join_path(&config.public_url, &config.mcp_path),
            issuers = %config.policy.issuers.join(", "),
            audiences = %config.policy.audiences.join(", "),
            "scalekit-mcp listening"
        );
        let app = super::standalone_app(
            config,
            self.state.clone(),
            self.handler.clone(),
            &self.extras,
            self.dev_auth.as_ref().map(DevAuth::router),
            shutdown.clone(),
            authentication,
        );
        let listener = super::limits::LimitedListener::new(listener, config.max_connections);
        tokio::spawn({
            let shutdown = shutdown.clone();
            let before = self.extras.before_sessions_end.clone();
            let grace = config.shutdown_timeout;
            async move {
                shutdown_requested.await;
                if let Some(before) = before {
                    let _ = tokio::time::timeout(grace, before()).await;
                }
                tracing::info!("shutting down: finishing in-flight requests");
                shutdown.cancel();
            }
        });
        let server =
            super::connections::serve(listener, app, config.idle_timeout, shutdown.clone());
        let hook = self.extras.after_requests.clone();
        let server_then_hook = async move {
            server.await;
            if let Some(hook) = hook {
                hook().await;
            }
        };
        tokio::select! {
            () = server_then_hook => {}
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(config.shutdown_timeout).await;
            } => tracing::warn!("in-flight requests did not finish within the shutdown timeout; exiting"),
        }
        Ok(())
    }
}

/// The metrics listener at `address`.
async fn bind_metrics(address: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!(
                "listening for metrics on {address} (is another process using the port? set \
             --metrics-addr / SCALEKIT_MCP_METRICS_ADDR)"
            )
        })
}

/// Serves `/metrics` until `shutdown`, on `listener` or else on `address`, bound now.
async fn serve_metrics(
    listener: Option<tokio::net::TcpListener>,
    address: std::net::SocketAddr,
    metrics: Arc<super::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let listener = match listener {
        Some(listener) => listener,
        None => match bind_metrics(address).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!("{}", crate::error::error_chain(error.as_ref()));
                return;
            }
        },
    };
    if let Ok(local) = listener.local_addr() {
        tracing::info!(address = %local, "serving metrics at /metrics");
    }
    super::metrics::serve(listener, metrics, shutdown).await;
}

/// Every minute until shutdown, drops the rate-limit state of callers idle long enough to be
/// back at a full burst, so that memory follows the callers of the last minute or so.
async fn forget_idle_rate_limit_keys(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => state.rate_limits.forget_idle(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// The bearer-token check for routes that are not MCP: see [`McpServer::auth_layer`].
#[derive(Clone)]
pub struct BearerAuthLayer {
    state: Arc<AppState>,
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth::new(self.state.clone(), inner)
    }
}
