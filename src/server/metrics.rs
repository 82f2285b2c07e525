//! Prometheus metrics (`serve --metrics-addr`): what the server records while it answers, and
//! the `/metrics` endpoint a scraper reads on its own listener, never on the MCP port.
//!
//! Names follow the OpenTelemetry semantic conventions where they have one (HTTP server, MCP),
//! the Prometheus conventions for the process, and `scalekit_mcp_*` for the rest. Every label
//! value comes from a fixed set or from the server's own configuration: a route the server does
//! not serve is `other`, an unknown method `other`, a tool the handler does not know `other`.
//! Nothing a client sends can add a series.
//!
//! Recording costs a label-set lookup and a histogram update per request (see
//! docs/performance.md for the measured cost); without `--metrics-addr` nothing is recorded.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, header};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use rustc_hash::FxHashMap;
use tower::{Layer, Service};

use super::sessions::Sessions;
use crate::auth::challenge::AuthFailure;
use crate::auth::jwks::JwksCache;
use crate::auth::validate::Rejection;

/// The label value for anything outside a metric's known set of values.
const OTHER: &str = "other";

/// Request durations, in seconds: OpenTelemetry's advice for `http.server.request.duration`,
/// with finer steps below 5 ms, where this server answers most requests.
const HTTP_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
    5.0, 10.0,
];

/// MCP operation durations, in seconds: OpenTelemetry's advice for
/// `mcp.server.operation.duration` (tools may run for minutes), with the same fine start.
const MCP_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    300.0,
];

/// The MCP methods a request can name (2025-03-26 to 2026-07-28 revisions); any other is
/// counted as `other`.
const MCP_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// The label value for an MCP method: itself when it is a known one.
pub fn method_label(method: &str) -> &'static str {
    MCP_METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or(OTHER)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    http_request_method: &'static str,
    http_route: Arc<String>,
    http_response_status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct McpLabels {
    mcp_method_name: &'static str,
    gen_ai_tool_name: Arc<String>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// Whether a tool name is one of the handler's own (`ServerHandler::get_tool`), so that it may
/// become a label value.
pub type KnownTool = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// [`KnownTool`] for `handler`: the tools its `get_tool` knows (every `#[tool_handler]` does).
pub fn known_tools_of<H>(handler: H) -> KnownTool
where
    H: rmcp::ServerHandler + Send + Sync + 'static,
{
    Arc::new(move |name| handler.get_tool(name).is_some())
}

/// Everything recorded, and the registry `/metrics` is written from.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Histogram>,
    mcp_operations: Family<McpLabels, Histogram>,
    auth_refusals: Family<ReasonLabel, Counter>,
    rate_limited: Family<LimitLabel, Counter>,
    routes: Vec<Arc<String>>,
    other_route: Arc<String>,
    known_tool: KnownTool,
    /// The handler's tools seen so far, as label values: asked of `known_tool` once each.
    tool_labels: RwLock<FxHashMap<String, Arc<String>>>,
    /// The histograms of label sets seen before, by the addresses of their label values (every
    /// one a `&'static str` or an `Arc` kept here): a pointer-keyed lookup instead of hashing
    /// the label strings through `Family` on every request.
    http_cache: RwLock<FxHashMap<(StrKey, usize, u16), Histogram>>,
    mcp_cache: RwLock<FxHashMap<(StrKey, usize, StrKey), Histogram>>,
    no_tool: Arc<String>,
    other_tool: Arc<String>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What the scrape-time collectors read: the key cache and the sessions.
pub struct Sources {
    pub keys: Arc<JwksCache>,
    pub sessions: Option<Arc<Sessions>>,
    /// The Redis stores' failures (`--session-store`, `--rate-limit-store`), if there are any.
    #[cfg(feature = "redis")]
    pub store_errors: Option<Counter>,
}

impl Metrics {
    /// The metrics of a server whose routes are `routes` (paths, as configured) and whose own
    /// tools `known_tool` recognises.
    pub fn new(routes: &[String], known_tool: KnownTool, sources: Sources) -> Self {
        let http_requests =
            Family::<HttpLabels, Histogram>::new_with_constructor(|| Histogram::new(HTTP_BUCKETS));
        let mcp_operations =
            Family::<McpLabels, Histogram>::new_with_constructor(|| Histogram::new(MCP_BUCKETS));
        let auth_refusals = Family::<ReasonLabel, Counter>::default();
        let rate_limited = Family::<LimitLabel, Counter>::default();
        let mut registry = Registry::default();
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP requests until the response head, by method, route and status",
            Unit::Seconds,
            http_requests.clone(),
        );
        registry.register_with_unit(
            "mcp_server_operation_duration",
            "Duration of MCP requests and notifications until the answer was sent, by method, tool \
             and outcome (ok, tool_error, error, denied, rate_limited)",
            Unit::Seconds,
            mcp_operations.clone(),
        );
        registry.register(
            "scalekit_mcp_auth_refusals",
            "Requests refused for their token, by the check that failed",
            auth_refusals.clone(),
        );
        registry.register(
            "scalekit_mcp_rate_limited",
            "Requests refused with 429, by limit (caller, client_ip, tool)",
            rate_limited.clone(),
        );
        #[cfg(feature = "redis")]
        if let Some(errors) = sources.store_errors {
            registry.register(
                "scalekit_mcp_store_errors",
                "Redis commands that failed (sessions and rate limits go on: see the ERROR lines)",
                errors,
            );
        }
        registry.register_collector(Box::new(KeysCollector(sources.keys)));
        if let Some(sessions) = sources.sessions {
            registry.register_collector(Box::new(SessionsCollector(sessions)));
        }
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            http_requests,
            mcp_operations,
            auth_refusals,
            rate_limited,
            routes: routes.iter().cloned().map(Arc::new).collect(),
            other_route: Arc::new(OTHER.to_owned()),
            known_tool,
            tool_labels: Default::default(),
            http_cache: Default::default(),
            mcp_cache: Default::default(),
            no_tool: Arc::new(String::new()),
            other_tool: Arc::new(OTHER.to_owned()),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a collector.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "could not encode the metrics");
        }
        text
    }

    fn route_label(&self, path: &str) -> Arc<String> {
        self.routes
            .iter()
            .find(|route| route.as_str() == path)
            .unwrap_or(&self.other_route)
            .clone()
    }

    /// One HTTP request answered.
    fn record_http(&self, method: &Method, route: Arc<String>, status: u16, elapsed: Duration) {
        let method = http_method_label(method);
        let key = (str_key(method), Arc::as_ptr(&route) as usize, status);
        let labels = || HttpLabels {
            http_request_method: method,
            http_route: route.clone(),
            http_response_status_code: status,
        };
        observe(&self.http_cache, key, &self.http_requests, labels, elapsed);
    }

    /// One MCP request or notification answered. `tool` is the called tool's name (for
    /// `tools/call`): a label only when the handler knows it.
    pub fn record_operation(
        &self,
        method: &'static str,
        tool: Option<&str>,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let tool = self.tool_label(tool);
        self.record_labelled(method, tool, outcome, elapsed);
    }

    /// [`Metrics::record_operation`] with the tool's label already found ([`Metrics::tool_label`]).
    pub fn record_labelled(
        &self,
        method: &'static str,
        tool: Arc<String>,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let key = (
            str_key(method),
            Arc::as_ptr(&tool) as usize,
            str_key(outcome),
        );
        let labels = || McpLabels {
            mcp_method_name: method,
            gen_ai_tool_name: tool.clone(),
            outcome,
        };
        observe(&self.mcp_cache, key, &self.mcp_operations, labels, elapsed);
    }

    /// The label of a called tool: its name when the handler knows it, else `other`; empty for
    /// an operation that calls none.
    pub fn tool_label(&self, name: Option<&str>) -> Arc<String> {
        let Some(name) = name else {
            return self.no_tool.clone();
        };
        let known = self
            .tool_labels
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(name)
            .cloned();
        if let Some(label) = known {
            return label;
        }
        if !(self.known_tool)(name) {
            return self.other_tool.clone();
        }
        let label = Arc::new(name.to_owned());
        self.tool_labels
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(name.to_owned(), label.clone());
        label
    }

    /// One request refused for its token.
    pub fn record_refusal(&self, failure: &AuthFailure) {
        let labels = ReasonLabel {
            reason: refusal_reason(failure),
        };
        self.auth_refusals.get_or_create(&labels).inc();
    }

    /// One request refused for a rate limit (`caller`, `client_ip` or `tool`).
    pub fn record_rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&LimitLabel { limit }).inc();
    }
}

/// A static label value by address and length (two literals may start at the same address).
type StrKey = (usize, usize);

fn str_key(value: &'static str) -> StrKey {
    (value.as_ptr() as usize, value.len())
}

/// Observes `elapsed` in the histogram of a label set: found by `key` in `cache`, else taken
/// from `family` (which creates it) and kept there.
fn observe<K, S>(
    cache: &RwLock<FxHashMap<K, Histogram>>,
    key: K,
    family: &Family<S, Histogram>,
    labels: impl FnOnce() -> S,
    elapsed: Duration,
) where
    K: std::hash::Hash + Eq,
    S: Clone + std::hash::Hash + Eq,
{
    let seconds = elapsed.as_secs_f64();
    let cached = cache.read().unwrap_or_else(|poison| poison.into_inner());
    if let Some(histogram) = cached.get(&key) {
        histogram.observe(seconds);
        return;
    }
    drop(cached);
    let histogram = family.get_or_create_owned(&labels());
    histogram.observe(seconds);
    cache
        .write()
        .unwrap_or_else(|poison| poison.into_inner())
        .insert(key, histogram);
}

/// The `reason` label of a refused token: which check failed.
pub fn refusal_reason(failure: &AuthFailure) -> &'static str {
    match failure {
        AuthFailure::NoCredentials => "missing",
        AuthFailure::BadCredentials(_) => "malformed",
        AuthFailure::KeysUnavailable => "keys_unavailable",
        AuthFailure::Rejected(rejection) => match rejection {
            Rejection::Malformed(_)
            | Rejection::CriticalHeader(_)
            | Rejection::MissingClaim(_)
            | Rejection::ClaimType { .. } => "malformed",
            Rejection::Algorithm { .. } | Rejection::KeyMismatch { .. } => "algorithm",
            Rejection::MissingKid(_) | Rejection::UnknownKey(_) => "unknown_kid",
            Rejection::Signature => "signature",
            Rejection::Expired { .. } => "expired",
            Rejection::NotYetValid { .. } | Rejection::IssuedInFuture { .. } => "not_yet_valid",
            Rejection::Issuer { .. } => "issuer",
            Rejection::Audience { .. } => "audience",
            Rejection::Organization { .. } => "org",
            Rejection::InsufficientScope { .. } | Rejection::ToolScope { .. } => "scope",
        },
    }
}

/// The OpenTelemetry `http.request.method` value: the method when it is a standard one, else
/// `_OTHER`.
fn http_method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The `/metrics` endpoint, for the metrics listener.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    )],
                    metrics.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let served = axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the metrics listener failed");
    }
}

/// Records every request's duration, route and status (`http_server_request_duration_seconds`).
#[derive(Clone)]
pub struct MeasuredLayer(pub Arc<Metrics>);

impl<S> Layer<S> for MeasuredLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured {
            metrics: self.0.clone(),
            inner,
        }
    }
}

/// The service [`MeasuredLayer`] wraps.
#[derive(Clone)]
pub struct Measured<S> {
    metrics: Arc<Metrics>,
    inner: S,
}

impl<S> Service<Request> for Measured<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = MeasuredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        MeasuredFuture {
            started: Instant::now(),
            method: request.method().clone(),
            route: self.metrics.route_label(request.uri().path()),
            metrics: self.metrics.clone(),
            answer: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of the service below, recorded when it is ready. Not boxed: the future below
    /// is the whole application's, and boxing it would copy it on every request.
    pub struct MeasuredFuture<F> {
        started: Instant,
        method: Method,
        route: Arc<String>,
        metrics: Arc<Metrics>,
        #[pin]
        answer: F,
    }
}

impl<F> std::future::Future for MeasuredFuture<F>
where
    F: std::future::Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(Ok(response)) = this.answer.poll(cx) else {
            return Poll::Pending;
        };
        let status = response.status().as_u16();
        let route = this.route.clone();
        this.metrics
            .record_http(this.method, route, status, this.started.elapsed());
        Poll::Ready(Ok(response))
    }
}

/// Writes one counter or gauge family for a collector: each value with at most one label.
fn encode_family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: &[(Option<(&str, &str)>, M)],
) -> Result<(), std::fmt::Error> {
    let Some((_, first)) = values.first() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, unit, first.metric_type())?;
    for (label, value) in values {
        match label {
            Some(label) => value.encode(metric.encode_family(&[*label])?)?,
            None => {
                let no_labels: [(&str, &str); 0] = [];
                value.encode(metric.encode_family(&no_labels)?)?;
            }
        }
    }
    Ok(())
}

/// The signing keys: fetches by outcome, keys held, age of the key set.
struct KeysCollector(Arc<JwksCache>);

impl std::fmt::Debug for KeysCollector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("KeysCollector")
    }
}

impl Collector for KeysCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        encode_family(
            &mut encoder,
            "scalekit_mcp_jwks_fetches",
            "Fetches of the signing keys (JWKS), by outcome.",
            None,
            &[
                (Some(("outcome", "ok")), ConstCounter::new(stats.fetched)),
                (Some(("outcome", "error")), ConstCounter::new(stats.failed)),
            ],
        )?;
        encode_family(
            &mut encoder,
            "scalekit_mcp_jwks_keys",
            "Signing keys held.",
            None,
            &[(None, ConstGauge::new(stats.keys as i64))],
        )?;
        if let Some(age) = stats.age {
            encode_family(
                &mut encoder,
                "scalekit_mcp_jwks_age",
                "Time since the signing keys were last fetched.",
                Some(&Unit::Seconds),
                &[(None, ConstGauge::new(age.as_secs_f64()))],
            )?;
        }
        Ok(())
    }
}

/// Open MCP sessions (stateful mode), and how many of them sleep.
struct SessionsCollector(Arc<Sessions>);

impl std::fmt::Debug for SessionsCollector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SessionsCollector")
    }
}

impl Collector for SessionsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_family(
            &mut encoder,
            "scalekit_mcp_sessions_active",
            "Open MCP sessions.",
            None,
            &[(None, ConstGauge::new(self.0.len() as i64))],
        )?;
        encode_family(
            &mut encoder,
            "scalekit_mcp_sessions_asleep",
            "Open MCP sessions that sleep: held without a session worker (--session-sleep-after).",
            None,
            &[(None, ConstGauge::new(self.0.asleep() as i64))],
        )
    }
}

/// The process: resident and virtual memory, CPU time, file descriptors, start time, read from
/// /proc at each scrape (Linux; elsewhere these series are absent).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(process) = process::read() else {
            return Ok(());
        };
        let gauge = |encoder: &mut DescriptorEncoder, name, help, unit, value: f64| {
            encode_family(encoder, name, help, unit, &[(None, ConstGauge::new(value))])
        };
        let bytes = Some(&Unit::Bytes);
        let seconds = Some(&Unit::Seconds);
        encode_family(
            &mut encoder,
            "process_cpu",
            "User and system CPU time spent.",
            seconds,
            &[(None, ConstCounter::new(process.cpu_seconds))],
        )?;
        gauge(
            &mut encoder,
            "process_resident_memory",
            "Resident memory size.",
            bytes,
            process.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory",
            "Virtual memory size.",
            bytes,
            process.virtual_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors.",
            None,
            process.open_fds,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            None,
            process.max_fds,
        )?;
        gauge(
            &mut encoder,
            "process_start_time",
            "Start time of the process since the Unix epoch.",
            seconds,
            process.start_time_seconds,
        )
    }
}

/// Reading the process's own figures from /proc.
mod process {
    /// One reading; `None` where /proc is not there (not Linux).
    pub struct Process {
        pub cpu_seconds: f64,
        pub resident_bytes: f64,
        pub virtual_bytes: f64,
        pub open_fds: f64,
        pub max_fds: f64,
        pub start_time_seconds: f64,
    }

    /// Clock ticks per second in /proc/*/stat: the kernel's USER_HZ, 100 on every architecture
    /// Linux exposes to user space this way (it is part of the ABI, unlike the kernel's HZ).
    const TICKS_PER_SECOND: f64 = 100.0;

    pub fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: fields after it are
        // counted from the last ')'.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // After the name, field 3 (state) is index 0: utime is field 14, stime 15, starttime 22.
        let field = |number: usize| fields.get(number - 3)?.parse::<f64>().ok();
        let cpu_seconds = (field(14)? + field(15)?) / TICKS_PER_SECOND;
        let started_after_boot = field(22)? / TICKS_PER_SECOND;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<f64>().ok())
                .map(|value| value * 1024.0)
        };
        Some(Process {
            cpu_seconds,
            resident_bytes: kib("VmRSS:")?,
            virtual_bytes: kib("VmSize:")?,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as f64,
            max_fds: max_open_files().unwrap_or(f64::NAN),
            start_time_seconds: boot_time()? + started_after_boot,
        })
    }

    /// The soft limit on open files, from /proc/self/limits.
    fn max_open_files() -> Option<f64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// When the machine booted, in seconds since the Unix epoch (`btime` in /proc/stat).
    fn boot_time() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_and_routes_are_other() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("x/anything-a-client-sends"), "other");
        assert_eq!(
            http_method_label(&Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_the_process_figures() {
        let process = process::read().expect("/proc is readable on Linux");
        assert!(process.resident_bytes > 1_000_000.0);
        assert!(process.virtual_bytes >= process.resident_bytes);
        assert!(process.open_fds >= 3.0);
        assert!(process.max_fds >= process.open_fds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started within the last day, and not in the future (ticks round down to 10 ms).
        assert!(process.start_time_seconds <= now + 1.0);
        assert!(process.start_time_seconds > now - 86_400.0);
    }
}
