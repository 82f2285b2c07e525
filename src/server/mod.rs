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

pub mod auth;
pub mod connections;
pub mod dev_auth;
pub mod direct;
pub mod hosts;
pub mod limits;
pub mod mcp_path;
pub mod sessions;
pub mod stdio;
pub mod timer_floor;
pub mod tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::util::Either;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::auth::challenge::ChallengeParams;
use crate::auth::jwks::{HttpFetcher, JwksCache};
use crate::auth::validate::TokenPolicy;
use crate::auth::verdicts::VerdictCache;
use crate::config::{ServeConfig, well_known_url};
use auth::LoggedSubject;
use dev_auth::DevAuth;
use mcp_path::McpPath;
use sessions::{SessionLimits, Sessions};
use tools::ScalekitTools;

/// What the middleware and handlers share.
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
}

/// Builds the application. `keys` is the JWKS cache (already maintained by the caller);
/// `shutdown` ends open MCP streams when cancelled.
pub fn router(config: &ServeConfig, keys: Arc<JwksCache>, shutdown: CancellationToken) -> Router {
    app(config, keys, None, shutdown)
}

/// [`router`], plus the development authorization server's routes in `--dev` mode
/// ([`DevAuth::router`]).
pub fn app(
    config: &ServeConfig,
    keys: Arc<JwksCache>,
    dev_auth: Option<Router>,
    shutdown: CancellationToken,
) -> Router {
    build_app(config, keys, dev_auth, shutdown, Authentication::Required)
}

/// Whether the MCP routes sit behind the bearer-token check ([`auth::Guarded`]). Only
/// [`run_without_auth_for_benchmarks`] says `Off`: no flag, setting or environment variable of
/// the `scalekit-mcp` binary reaches it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Authentication {
    Required,
    Off,
}

fn build_app(
    config: &ServeConfig,
    keys: Arc<JwksCache>,
    dev_auth: Option<Router>,
    shutdown: CancellationToken,
    authentication: Authentication,
) -> Router {
    let sessions = Arc::new(Sessions::new(SessionLimits {
        max_sessions: config.max_sessions,
        max_per_caller: config.max_sessions_per_caller,
        idle_timeout: config.session_idle_timeout,
    }));
    let state = Arc::new(AppState {
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
        sessions: (!config.stateless).then(|| sessions.clone()),
    });

    let mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_legacy_session_mode(!config.stateless)
        .with_json_response(config.stateless)
        // Host and Origin are checked by `hosts::refusal` (in `auth::Guarded`), with the public
        // URL's host included, before authentication.
        .disable_allowed_hosts()
        .disable_allowed_origins();
    // Built once: the tool router (and its JSON schemas) is cloned per session, not rebuilt,
    // which matters with --stateless where every request is a session.
    let tools = ScalekitTools::new();
    let rmcp: direct::RmcpService = StreamableHttpService::new(
        {
            let tools = tools.clone();
            move || Ok(tools.clone())
        },
        sessions,
        mcp_config,
    );

    // Host/Origin first, then the bearer token (`auth::Guarded`, around every path that is not
    // public), then the MCP endpoint or 404. With --stateless, plain tool calls are answered
    // without rmcp's per-request service (`direct`); everything else reaches rmcp.
    let mcp = if config.stateless {
        Either::Left(direct::DirectOrRmcp::new(
            tools,
            config.max_body_bytes,
            rmcp,
        ))
    } else {
        Either::Right(ServiceExt::<Request>::map_response(rmcp, |response| {
            response.map(Body::new)
        }))
    };
    let protected = McpPath::new(&config.mcp_path, mcp);
    let guarded = auth::Guarded::new(state.clone(), authentication, protected);
    let mut public = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/.well-known/oauth-protected-resource", get(metadata));
    if config.mcp_path != "/" {
        let suffixed = well_known_url(&config.public_url, &config.mcp_path);
        let path = url::Url::parse(&suffixed)
            .map(|url| url.path().to_owned())
            .unwrap_or_default();
        public = public.route(&path, get(metadata));
    }

    // The layers that apply to every route wrap the router as a whole, as one service, instead
    // of through `Router::layer`: that wraps each route in its own boxed service, and a boxed
    // route is cloned, with everything below it, on each request it serves. Layered route by
    // route, every request paid for a dozen such clones.
    let routes = public.fallback_service(guarded).with_state(state);
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
    // is fixed when logging starts (before this is built, in `run`), so without the request line
    // the layer is left out rather than run and skipped on every request.
    let outer = ServiceBuilder::new()
        .option_layer(request_log_enabled().then(|| middleware::from_fn(log_request)))
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
    match state.keys.readiness() {
        Ok(keys) => axum::Json(json!({ "status": "ready", "signing_keys": keys })).into_response(),
        Err(reason) => (
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

/// Whether [`log_request`] writes its line: the auth middleware asks too, so that it does no
/// work for the line when the level is off (one callsite, so both always agree).
pub(crate) fn request_log_enabled() -> bool {
    tracing::enabled!(tracing::Level::INFO)
}

/// One line per request: method, path (never the query string, which could hold a token), status,
/// latency and the authenticated subject.
async fn log_request(request: Request, next: Next) -> Response {
    if !request_log_enabled() {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let subject = response
        .extensions()
        .get::<LoggedSubject>()
        .and_then(|subject| subject.0.sub.as_deref())
        .unwrap_or("-");
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        latency_ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        subject,
        "request"
    );
    response
}

/// Runs the HTTP server until SIGINT / SIGTERM, then lets in-flight requests finish within the
/// configured bound.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    run_with(config, Authentication::Required).await
}

/// [`run`] with the bearer-token middleware left out, and nothing else changed: the benchmark's
/// "auth off" row (`examples/bench_no_auth.rs`), which measures what authentication costs.
/// The `scalekit-mcp` binary never calls it.
#[doc(hidden)]
pub async fn run_without_auth_for_benchmarks(config: ServeConfig) -> anyhow::Result<()> {
    tracing::warn!("benchmark build: MCP requests are NOT authenticated");
    run_with(config, Authentication::Off).await
}

async fn run_with(config: ServeConfig, authentication: Authentication) -> anyhow::Result<()> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .user_agent(concat!("scalekit-mcp/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client for the JWKS")?;
    let dev_auth = DevAuth::start(&config)?;
    let fetcher = match &dev_auth {
        Some(dev_auth) => dev_auth.key_fetcher(),
        None => Box::new(HttpFetcher::new(client, config.jwks.clone())),
    };
    let keys = Arc::new(JwksCache::new(fetcher, config.cache));
    let shutdown = CancellationToken::new();
    tokio::spawn(keys.clone().maintain(shutdown.child_token()));
    // Before the first request: see `timer_floor` for why the request timeout needs it.
    tokio::spawn(timer_floor::hold(
        config.request_timeout.min(config.idle_timeout),
        shutdown.child_token(),
    ));

    // Before the port opens: a SIGTERM sent as soon as the server answers must find the handler
    // in place, or its default action kills the process mid-request.
    let shutdown_requested = shutdown_signal();
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
    let app = build_app(
        &config,
        keys,
        dev_auth.as_ref().map(DevAuth::router),
        shutdown.clone(),
        authentication,
    );
    let listener = limits::LimitedListener::new(listener, config.max_connections);
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_requested.await;
            tracing::info!("shutting down: finishing in-flight requests");
            shutdown.cancel();
        }
    });
    let server = connections::serve(listener, app, config.idle_timeout, shutdown.clone());
    tokio::select! {
        () = server => {}
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(config.shutdown_timeout).await;
        } => tracing::warn!("in-flight requests did not finish within the shutdown timeout; exiting"),
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (container stop). The handlers are installed when
/// this is called, not when the future is first polled.
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
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
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
