//! The HTTP server behind `serve`: routes, middleware order, startup and graceful shutdown.
//!
//! ```text
//! request ─ log line ─ size limits (431/413) ─ timeout (408) ─┬─ CORS ─┬─ /health, /ready, /.well-known/oauth-protected-resource[/path]   public
//!                                                             │        └─ Host/Origin check ─ bearer auth ─ MCP Streamable HTTP (tools)
//!                                                             │             (--stateless: plain tool calls answered by `direct`, the rest by rmcp)
//!                                                             └─ (--dev) /dev-auth/…, its well-known metadata: public, own CORS (dev_auth)
//! ```
//! [`router`] / [`app`] build the whole application without a socket, so tests drive it in-process.
//! Below all of this: the connection limit (503) in the listener ([`limits::LimitedListener`]) and
//! the idle timeout in the connection loop ([`connections`]).

pub mod audit;
pub mod auth;
pub mod bad_gateway;
pub mod caller;
pub mod client_ip;
pub mod connections;
pub mod dev_auth;
pub mod direct;
pub mod entry;
pub mod hosts;
pub mod limits;
pub mod mcp_path;
pub mod metrics;
pub mod protected;
pub mod rate_limits;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod request_line;
pub mod response_stream;
pub mod sessions;
pub mod stdio;
pub mod timer_floor;
pub mod tool_calls;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::util::Either;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::auth::challenge::ChallengeParams;
use crate::auth::jwks::JwksCache;
use crate::auth::tool_scopes::ToolScopes;
use crate::auth::validate::TokenPolicy;
use crate::auth::verdicts::VerdictCache;
use crate::config::{ServeArgs, ServeConfig, Transport, well_known_url};
use mcp_path::McpPath;
use rate_limits::RateLimits;
use sessions::{SessionLimits, Sessions};

use protected::McpServer;

/// An MCP endpoint of the crate's own in place of rmcp's, below the same guard: the gateway's.
/// The caller is in each request's extensions (`Arc<Caller>`).
pub(crate) type OwnEndpoint = tower::util::BoxCloneSyncService<Request, Response, Infallible>;

/// Builds an [`OwnEndpoint`] on the server's sessions: see [`Extras::session_endpoint`].
pub(crate) type SessionEndpoint = Arc<dyn Fn(Arc<Sessions>) -> OwnEndpoint + Send + Sync>;

/// A readiness check besides the signing keys': details for `/ready`'s answer, or why the
/// server is not ready (the gateway's upstream).
pub(crate) type ReadinessCheck = Arc<dyn Fn() -> Result<serde_json::Value, String> + Send + Sync>;

/// What a server adds to its configuration and handler: the gateway's endpoint, readiness and
/// shutdown hooks (nothing for a library user's server), and whether plain tool calls on
/// sessions may be answered directly.
#[derive(Clone, Default)]
pub(crate) struct Extras {
    /// The handler never uses its peer while it answers `tools/call` or `tools/list`, so the
    /// direct path may answer those on sessions too (see `direct`). The built-in tools say so;
    /// a library user says so with [`McpServer::with_direct_tool_calls`].
    pub direct_tool_calls: bool,
    /// A session's handler may be replaced by a fresh one that sees the handshake again, so idle
    /// sessions may sleep (`sessions::sleep`). The built-in tools say so; a library user says so
    /// with [`McpServer::with_sleeping_sessions`].
    pub sessions_may_sleep: bool,
    pub endpoint: Option<OwnEndpoint>,
    /// An endpoint of the crate's own that keeps its sessions in [`Sessions`] (the stateful
    /// gateway's pass-through), built with them; stateful mode only.
    pub session_endpoint: Option<SessionEndpoint>,
    pub readiness: Option<ReadinessCheck>,
    /// Run when shutdown starts, before the MCP sessions are ended (rmcp kills what a session
    /// holds when it drops it): the gateway gives the sessions' children SIGTERM there.
    pub before_sessions_end: Option<ShutdownHook>,
    /// Run once the in-flight requests are answered, within the shutdown timeout (the
    /// stateless gateway stops its shared child there).
    pub after_requests: Option<ShutdownHook>,
    /// Whether that server is known to be down now: a POST on an existing session then gets 502
    /// without reaching the handler ([`bad_gateway`]).
    pub relay_down: Option<bad_gateway::DownCheck>,
}

/// See [`Extras::before_sessions_end`] and [`Extras::after_requests`].
pub(crate) type ShutdownHook =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// What the guard and the public routes share.
pub struct AppState {
    pub policy: TokenPolicy,
    pub keys: Arc<JwksCache>,
    pub challenge: ChallengeParams,
    pub metadata: bytes::Bytes,
    pub allowed_hosts: Vec<String>,
    pub cors_origins: Vec<String>,
    /// Tokens already accepted, so each signature is verified once.
    pub verdicts: VerdictCache,
    /// The MCP sessions, who opened each and how many there may be (stateful mode only).
    pub sessions: Option<Arc<Sessions>>,
    /// The scopes each tool needs, checked before a `tools/call` reaches the handler.
    pub tool_scopes: ToolScopes,
    /// Requests per caller, and tool calls per caller and tool.
    pub rate_limits: RateLimits,
    /// The largest request body (a `tools/call` is read whole to check its tool's scopes).
    pub max_body_bytes: usize,
    /// Whether each `tools/call` gets an audit line (INFO for the `audit` target).
    pub audit: bool,
    /// What `/metrics` reports (`--metrics-addr`); `None`: nothing is recorded.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// Whether the MCP endpoint records the operations it answers (metrics, audit lines) and
    /// says which it passed on ([`audit::Reported`]): the direct path does (it reads every body
    /// it may answer anyway), when the guard needs no body for a decision (no tool policy).
    pub endpoint_reports: bool,
    /// Checked by `/ready` after the signing keys.
    pub(crate) readiness: Option<ReadinessCheck>,
    /// See [`Extras::relay_down`] (stateful mode only).
    pub(crate) relay_down: Option<bad_gateway::DownCheck>,
    /// The Redis servers sessions and rate limits are kept in (each once), probed in the
    /// background for `/ready`.
    #[cfg(feature = "redis")]
    pub(crate) redis: Vec<Arc<redis_store::RedisStore>>,
}

impl AppState {
    /// Whether a POST's body is read in the guard: for a `tools/call`'s scopes or limits, the
    /// audit line, or the operation metrics (unless the endpoint reports its operations itself:
    /// see [`audit::Reported`]).
    pub fn reads_bodies(&self) -> bool {
        let reports = self.audit || self.metrics.is_some();
        (reports && !self.endpoint_reports) || self.decides_on_tool_calls()
    }

    /// Whether a `tools/call` can be refused for its tool (its scopes or its limit).
    pub fn decides_on_tool_calls(&self) -> bool {
        !self.tool_scopes.is_empty() || self.rate_limits.limits_tools()
    }
}

impl AppState {
    /// The state of a server for `config`; `known_tool` tells which tool names are the
    /// handler's own (a metrics label only for those).
    pub(crate) fn new(
        config: &ServeConfig,
        keys: Arc<JwksCache>,
        tool_scopes: ToolScopes,
        known_tool: metrics::KnownTool,
        extras: &Extras,
    ) -> anyhow::Result<Arc<Self>> {
        #[cfg(feature = "redis")]
        let stores = redis_store::Stores::open(config)?;
        let sessions = (!config.stateless).then(|| {
            let sessions = Sessions::new(SessionLimits {
                max_sessions: config.max_sessions,
                max_per_caller: config.max_sessions_per_caller,
                idle_timeout: config.session_idle_timeout,
                sleep_after: config.session_sleep_after,
            });
            #[cfg(feature = "redis")]
            let sessions = match &stores.sessions {
                Some(store) => sessions.shared_in(redis_store::sessions::SessionRecords::new(
                    store.clone(),
                    config.session_idle_timeout,
                )),
                None => sessions,
            };
            Arc::new(sessions)
        });
        let rate_limits = RateLimits::new(
            config.rate_limit,
            &config.tool_rate_limits,
            config.anonymous_rate_limit,
            &config.trusted_proxies,
        );
        #[cfg(feature = "redis")]
        let rate_limits = match &stores.rate_limits {
            Some(store) => rate_limits.shared_on(store),
            None => rate_limits,
        };
        let metrics = config.metrics_addr.map(|_| {
            let sources = metrics::Sources {
                keys: keys.clone(),
                sessions: sessions.clone(),
                #[cfg(feature = "redis")]
                store_errors: (!stores.all().is_empty()).then(|| stores.errors.clone()),
            };
            Arc::new(metrics::Metrics::new(&routes(config), known_tool, sources))
        });
        let mut state = AppState {
            policy: config.policy.clone(),
            keys,
            challenge: ChallengeParams {
                resource_metadata: config.resource_metadata_url.clone(),
                required_scopes: config.policy.required_scopes.clone(),
            },
            metadata: config.metadata.document.clone(),
            allowed_hosts: config.allowed_hosts.clone(),
            cors_origins: config.cors_origins.clone(),
            verdicts: VerdictCache::default(),
            sessions,
            tool_scopes,
            rate_limits,
            max_body_bytes: config.max_body_bytes,
            audit: audit::enabled(),
            endpoint_reports: false,
            metrics,
            readiness: extras.readiness.clone(),
            relay_down: extras.relay_down.clone(),
            #[cfg(feature = "redis")]
            redis: stores.all(),
        };
        #[cfg(feature = "redis")]
        {
            state.readiness = redis_store::with_readiness(state.readiness.take(), &state.redis);
        }
        // The guard reads a body for a decision anyway, and then reports itself; otherwise the
        // direct path does, where there is one (see `mcp_endpoint`).
        let direct_path =
            extras.endpoint.is_none() && (config.stateless || extras.direct_tool_calls);
        state.endpoint_reports = direct_path
            && (state.metrics.is_some() || state.audit)
            && !state.decides_on_tool_calls();
        Ok(Arc::new(state))
    }

    /// What an endpoint that reports what it answers reports (see `endpoint_reports`).
    fn endpoint_reports(&self) -> direct::Reports {
        if !self.endpoint_reports {
            return direct::Reports::default();
        }
        direct::Reports {
            metrics: self.metrics.clone(),
            audit: self.audit,
        }
    }
}

/// The paths the server answers at, as the metrics' `http_route` values: health, readiness, the
/// metadata and the MCP endpoint.
fn routes(config: &ServeConfig) -> Vec<String> {
    let mut routes = vec![
        "/health".to_owned(),
        "/ready".to_owned(),
        "/.well-known/oauth-protected-resource".to_owned(),
        config.mcp_path.clone(),
    ];
    if let Some(suffixed) = suffixed_metadata_path(config) {
        routes.push(suffixed);
    }
    routes
}

/// The metadata's path with the MCP path appended (RFC 9728 §3.1), when the MCP path is not `/`.
fn suffixed_metadata_path(config: &ServeConfig) -> Option<String> {
    if config.mcp_path == "/" {
        return None;
    }
    let suffixed = well_known_url(&config.public_url, &config.mcp_path);
    url::Url::parse(&suffixed)
        .map(|url| url.path().to_owned())
        .ok()
}

/// The built-in tools' application, for the tests that drive it in-process. `keys` is the JWKS
/// cache (already maintained by the caller); `shutdown` ends open MCP streams when cancelled.
/// Fails only for a session or rate-limit store that cannot be opened.
pub fn router(
    config: &ServeConfig,
    keys: Arc<JwksCache>,
    shutdown: CancellationToken,
) -> anyhow::Result<Router> {
    app(config, keys, None, shutdown)
}

/// [`router`], plus the development authorization server's routes in `--dev` mode
/// ([`DevAuth::router`]).
pub fn app(
    config: &ServeConfig,
    keys: Arc<JwksCache>,
    dev_auth: Option<Router>,
    shutdown: CancellationToken,
) -> anyhow::Result<Router> {
    let tools = crate::tools::ScalekitTools::new();
    let known_tool = metrics::known_tools_of(tools.clone());
    let state = AppState::new(
        config,
        keys,
        config.tool_scopes.clone(),
        known_tool,
        &Extras::default(),
    )?;
    let extras = Extras {
        direct_tool_calls: true,
        sessions_may_sleep: true,
        ..Extras::default()
    };
    Ok(standalone_app(
        config,
        state,
        tools,
        &extras,
        dev_auth,
        shutdown,
        Authentication::Required,
    ))
}

/// Whether the MCP routes sit behind the bearer-token check ([`auth::Guarded`]). Only
/// [`McpServer::serve_without_auth_for_benchmarks`] says `Off`: no flag, setting or environment
/// variable of the `scalekit-mcp` binary reaches it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authentication {
    Required,
    Off,
}

/// The MCP endpoint for `handler`: rmcp's Streamable HTTP service, and the direct path in front
/// of it (`direct`) for plain tool calls, with --stateless or when the handler allows it on
/// sessions; or the extras' own endpoint, when given.
fn mcp_endpoint<H>(
    config: &ServeConfig,
    state: &AppState,
    handler: H,
    extras: &Extras,
    shutdown: CancellationToken,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + 'static
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    if let Some(own) = extras.endpoint.clone() {
        return Either::Left(own);
    }
    if let (Some(build), Some(sessions)) = (&extras.session_endpoint, &state.sessions) {
        return Either::Left(build(sessions.clone()));
    }
    #[allow(unused_mut)]
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_legacy_session_mode(!config.stateless)
        .with_json_response(config.stateless)
        // Host and Origin are checked by `hosts::refusal` (in `auth::Guarded`), with the public
        // URL's host included, before authentication.
        .disable_allowed_hosts()
        .disable_allowed_origins();
    // With --session-store, rmcp restores a session this replica does not hold from its record
    // (the guard has checked the caller against the record's owner first: `auth::take_over`).
    #[cfg(feature = "redis")]
    {
        mcp_config.session_store = state.sessions.as_ref().and_then(|s| s.rmcp_store());
    }
    // Idle sessions sleep when the handler allows it; in memory, rmcp wakes them from the
    // parameters the sessions keep (`sessions::sleep`).
    if let Some(sessions) = state
        .sessions
        .as_ref()
        .filter(|_| extras.sessions_may_sleep)
    {
        sessions.let_sleep();
        if mcp_config.session_store.is_none() {
            mcp_config.session_store = Some(Arc::new(sessions::WakeStore(sessions.clone())));
        }
    }
    // With --stateless rmcp never opens a session; its manager is then just unused.
    let sessions = state.sessions.clone().unwrap_or_else(|| {
        Arc::new(Sessions::new(SessionLimits {
            max_sessions: 1,
            max_per_caller: 1,
            idle_timeout: config.session_idle_timeout,
            sleep_after: config.session_sleep_after,
        }))
    });
    // The handler is built once and cloned per session (with --stateless, per request), so its
    // tool router and JSON schemas are not rebuilt each time.
    let rmcp: direct::RmcpService<H> = StreamableHttpService::new(
        {
            let handler = handler.clone();
            move || Ok(handler.clone())
        },
        sessions,
        mcp_config,
    );
    if config.stateless {
        Either::Right(Either::Left(direct::DirectOrRmcp::new(
            handler,
            config.max_body_bytes,
            state.endpoint_reports(),
            rmcp,
        )))
    } else if let Some(sessions) = state.sessions.clone().filter(|_| extras.direct_tool_calls) {
        Either::Right(Either::Left(direct::DirectOrRmcp::on_sessions(
            handler,
            config.max_body_bytes,
            state.endpoint_reports(),
            rmcp,
            sessions,
        )))
    } else {
        Either::Right(Either::Right(ServiceExt::<Request>::map_response(
            rmcp,
            |response: http::Response<_>| response.map(Body::new),
        )))
    }
}

/// The public routes: health, readiness, and the RFC 9728 metadata at both well-known paths.
fn public_routes(config: &ServeConfig) -> Router<Arc<AppState>> {
    health_routes().merge(metadata_routes(config))
}

fn health_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

/// The metadata at `/.well-known/oauth-protected-resource`, and at that path with the MCP path
/// appended when it is not `/` (RFC 9728 §3.1).
fn metadata_routes(config: &ServeConfig) -> Router<Arc<AppState>> {
    let mut routes = Router::new().route("/.well-known/oauth-protected-resource", get(metadata));
    if let Some(path) = suffixed_metadata_path(config) {
        routes = routes.route(&path, get(metadata));
    }
    routes
}

/// The whole application of a standalone server: every path that is not public needs a token.
fn standalone_app<H>(
    config: &ServeConfig,
    state: Arc<AppState>,
    handler: H,
    extras: &Extras,
    dev_auth: Option<Router>,
    shutdown: CancellationToken,
    authentication: Authentication,
) -> Router
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    let mcp = mcp_endpoint(config, &state, handler, extras, shutdown);
    let state_metrics = state.metrics.clone();
    // Host/Origin first, then the bearer token (`auth::Guarded`, around every path that is not
    // public), then the MCP endpoint or 404.
    let protected = McpPath::new(&config.mcp_path, mcp);
    let guarded = auth::Guarded::new(state.clone(), authentication, protected);

    // The layers that apply to every route wrap the router as a whole, as one service, instead
    // of through `Router::layer`: that wraps each route in its own boxed service, and a boxed
    // route is cloned, with everything below it, on each request it serves. Layered route by
    // route, every request paid for a dozen such clones.
    let routes = public_routes(config)
        .fallback_service(guarded)
        .with_state(state);
    let cors = ServiceBuilder::new()
        .map_response(vary_on_cors_headers)
        .layer(cors_layer(&config.cors_origins))
        .service(routes);
    // Merged outside the CORS layer: the authorization server answers its own preflights.
    // Without it, CORS is served directly, not through one more router.
    let app = match dev_auth {
        Some(dev_auth) => Either::Left(Router::new().fallback_service(cors).merge(dev_auth)),
        None => Either::Right(cors),
    };
    // Outside-in: the log line sees every answer, including the limits' refusals. The log level
    // is fixed when logging starts (before this is built), so without the request line the
    // layer is left out rather than run and skipped on every request.
    let outer = ServiceBuilder::new()
        .option_layer(state_metrics.map(metrics::MeasuredLayer))
        .option_layer(request_line::enabled().then_some(request_line::RequestLineLayer))
        .layer(limits::SizeLimits {
            max_header_bytes: config.max_header_bytes,
            max_body_bytes: config.max_body_bytes,
        })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .service(app);
    // A `Router` again for the callers (the connection loop, tests): one route, cloned cheaply.
    Router::new().fallback_service(outer)
}

/// The routes to mount in another axum application: the guarded MCP endpoint at the MCP path,
/// its metadata, and in --dev mode the development authorization server. No fallback, so they
/// merge with the application's own routes, which stay untouched by our auth.
fn mountable_routes<H>(
    config: &ServeConfig,
    state: Arc<AppState>,
    handler: H,
    extras: &Extras,
    dev_auth: Option<Router>,
    shutdown: CancellationToken,
) -> Router
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    let mcp = mcp_endpoint(config, &state, handler, extras, shutdown);
    let measured = tower::util::option_layer(state.metrics.clone().map(metrics::MeasuredLayer));
    let guarded = auth::Guarded::new(state.clone(), Authentication::Required, mcp);
    let routes = metadata_routes(config)
        .route_service(&config.mcp_path, guarded)
        .with_state(state)
        .layer(cors_layer(&config.cors_origins))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(limits::SizeLimits {
            max_header_bytes: config.max_header_bytes,
            max_body_bytes: config.max_body_bytes,
        })
        .layer(measured);
    match dev_auth {
        Some(dev_auth) => routes.merge(dev_auth),
        None => routes,
    }
}

/// `serve` for `handler`: over the transport `args` names, until SIGINT / SIGTERM (HTTP) or until
/// the client closes stdin (stdio). Logging is the caller's to start.
pub async fn run<H>(args: &ServeArgs, handler: H, tool_scopes: ToolScopes) -> anyhow::Result<()>
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    run_with_extras(args, handler, tool_scopes, Extras::default()).await
}

/// [`run`] with `extras` (over HTTP; stdio has no endpoint nor readiness to replace).
pub(crate) async fn run_with_extras<H>(
    args: &ServeArgs,
    handler: H,
    tool_scopes: ToolScopes,
    extras: Extras,
) -> anyhow::Result<()>
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    match args.transport {
        Transport::Stdio => stdio::run(handler).await,
        Transport::Http => {
            // The scopes declared in code join --tool-scope's, so that the metadata lists them
            // too (see `config::default_scopes_supported`).
            let mut args = args.clone();
            args.policy.tool_scopes.extend(tool_scopes.entries());
            let config = ServeConfig::check(&args)?;
            McpServer::with_extras(config, handler, ToolScopes::default(), extras)?
                .serve()
                .await
        }
    }
}

/// CORS for browser-based MCP clients: only the listed origins; the MCP headers allowed in, and
/// the challenge and session id readable by scripts. Preflights are answered here, before auth.
///
/// The origins are a shared list behind a predicate rather than tower-http's own list, and its
/// `Vary` header is left to [`vary_on_cors_headers`]: tower-http copies its list and builds the
/// `Vary` value again for every request.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Arc<[HeaderValue]> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origins.contains(origin)
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("mcp-protocol-version"),
            header::HeaderName::from_static("mcp-session-id"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::WWW_AUTHENTICATE,
            header::HeaderName::from_static("mcp-session-id"),
        ])
        .max_age(Duration::from_secs(3600))
        .vary([])
}

/// The `Vary` header tower-http's CORS layer would add (its default list), on every response
/// that passed through it: whether a response carries CORS headers depends on these request
/// headers, so caches must key on them.
fn vary_on_cors_headers(mut response: Response) -> Response {
    response.headers_mut().append(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    response
}

/// Liveness: the process answers. Exactly the seed's body, which its tests assert.
async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "healthy" }))
}

/// Readiness: 200 once signing keys are loaded, else 503 with the reason.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let extra = state.readiness.as_ref().map(|check| check());
    match (state.keys.readiness(), extra) {
        (Ok(keys), None) => {
            axum::Json(json!({ "status": "ready", "signing_keys": keys })).into_response()
        }
        (Ok(keys), Some(Ok(detail))) => {
            let mut answer = json!({ "status": "ready", "signing_keys": keys });
            if let (Some(answer), Some(detail)) = (answer.as_object_mut(), detail.as_object()) {
                answer.extend(detail.clone());
            }
            axum::Json(answer).into_response()
        }
        (Err(reason), _) | (Ok(_), Some(Err(reason))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
            axum::Json(json!({ "status": "not_ready", "reason": reason })),
        )
            .into_response(),
    }
}

/// RFC 9728 protected resource metadata, served as configured. Readable from any origin: it is
/// public discovery information that browser-based clients need before they have a token.
async fn metadata(State(state): State<Arc<AppState>>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        state.metadata.clone(),
    )
        .into_response()
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (container stop). The handlers are installed when
/// this is called, not when the future is first polled.
#[cfg(unix)]
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    // A handler that cannot be installed leaves that signal's default action, as before.
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = next_signal(interrupt) => {},
            () = next_signal(terminate) => {},
        }
    }
}

#[cfg(unix)]
async fn next_signal(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
