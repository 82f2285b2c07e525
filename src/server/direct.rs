//! The hot path: plain `tools/call` and `tools/list` requests answered without rmcp's
//! per-request service (`--stateless`) or session worker (the default, stateful mode).
//!
//! rmcp serves every stateless request by starting a whole MCP service for it: a service task,
//! a handler task, channels and cancellation tokens, then a JSON round trip through them. Under
//! load that was about 40 % of the server's CPU (perf, `bench/run`), more than authentication,
//! parsing and HTTP together. This module answers the common requests by calling the same
//! [`rmcp::ServerHandler`] dispatch (`Service::handle_request`) directly, in the request's own
//! task, with the request context rmcp would build.
//!
//! It takes only requests whose answer cannot differ from rmcp's, and hands everything else to
//! rmcp untouched (the body it read is passed on):
//! - `POST` with `Content-Type: application/json` and an `Accept` listing both
//!   `application/json` and `text/event-stream` (no parameters, no `q=` weights);
//! - no `MCP-Protocol-Version`, or a version rmcp knows that is older than `2026-07-28` (newer
//!   versions carry per-request metadata and standard headers that rmcp validates);
//! - a single JSON-RPC request for `tools/call` or `tools/list` without a protocol version in
//!   its `_meta`.
//!
//! What a handler sees here differs in two ways, neither of which this server's tools use: the
//! context's peer is one shared, idle peer (a handler cannot send notifications or requests to
//! the client: nothing does, and such a request would not get here in JSON mode anyway), and
//! `context.protocol_version()` is `None`, which rmcp's dispatch treats like the pre-2026
//! versions this path admits. `tests/it/direct_path.rs` sends the same requests through this
//! path and through rmcp and asserts byte-identical answers.
//!
//! **On sessions** (the default mode), for handlers that allow it
//! ([`McpServer::with_direct_tool_calls`](crate::McpServer::with_direct_tool_calls): the built-in
//! tools do), the same requests are answered the same way, in the request's task instead of a
//! trip through the session's worker, its service task and a task for the handler, and back.
//! That was half of a stateful server's throughput. Taken on top of the rules above only:
//! - on a session held here whose handshake is done ([`Sessions::answers_directly`]; the guard
//!   in front has checked that it is the caller's);
//! - without `_meta` in the params: a progress token asks for notifications on the request's
//!   stream, which only rmcp's worker can route.
//!
//! The answer is written whole, with rmcp's headers, as rmcp frames a request's stream: a priming
//! event (an event id and the `retry` delay, SEP-1699) and then the answer's event. rmcp keeps a
//! stream's events so that a client cut off mid-stream can resume it (`Last-Event-ID`); these are
//! not kept (at full load that would be hundreds of megabytes), so the priming event's id
//! (`direct-<n>`, which neither rmcp nor the Redis event store issues) is refused with 400 and a
//! reason if a client ever resumes from it: it could only do so if the connection broke inside
//! the one write that carries both events. The handler's peer is the idle one: that is the
//! handler's promise.
//!
//! With `--metrics-addr`, and at the default log level for the audit line, this path records the
//! operations it answers (method, tool, outcome, duration) and says which operations it passed
//! to rmcp ([`Reported`]): the body is read here anyway, so the guard in front need not read and
//! parse it a second time (unless a tool policy needs it first: then the guard reports).

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, GetExtensions, GetMeta, JsonRpcRequest,
    JsonRpcVersion2_0, ListToolsRequest, PaginatedRequestParams, ProtocolVersion, RequestId,
    ServerJsonRpcMessage,
};
use rmcp::service::{Peer, RequestContext, RoleServer, RunningService, Service};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::audit::{Outcome, Reported};
use super::metrics::{Metrics, method_label};
use super::sessions::Sessions;
use super::tool_calls::operations_quickly;
use crate::auth::validate::Caller;

/// The newest protocol version this path serves; from this one on, requests carry their own
/// metadata and headers that only rmcp checks.
const FIRST_PER_REQUEST_VERSION: &str = "2026-07-28";

/// The rmcp service behind the MCP route, serving handler `H`.
pub type RmcpService<H> = StreamableHttpService<H, Sessions>;

/// The MCP endpoint's service with `--stateless`: answers what it can, hands the rest to rmcp.
///
/// The guard in front clones its inner service for each request; this clone is one reference
/// count, where rmcp's service (configuration, session manager, factory) costs a few allocations
/// to clone and drop.
pub struct DirectOrRmcp<H: ServerHandler>(Arc<DirectPath<H>>);

impl<H: ServerHandler> Clone for DirectOrRmcp<H> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// What the direct path needs: the tools, the largest body to read, the idle peer, and rmcp for
/// everything else.
struct DirectPath<H: ServerHandler> {
    tools: H,
    max_body_bytes: usize,
    /// With `--metrics-addr`: this path records the operations it answers itself, and says
    /// which operations it passed to rmcp ([`Reported`]). It reads every body anyway, so the
    /// guard need not read it again.
    metrics: Option<Arc<Metrics>>,
    /// Whether this path writes the audit line of each tool call it answers (and says which
    /// operations it passed to rmcp, as for the metrics).
    audit: bool,
    /// Started on first use, inside the runtime: rmcp spawns its service task then.
    idle: OnceLock<RunningService<RoleServer, H>>,
    rmcp: RmcpService<H>,
    /// The default mode's sessions: requests are answered here only on those (see the module
    /// documentation), and as an event stream. `None` with `--stateless`.
    sessions: Option<Arc<Sessions>>,
    /// The `retry` of the priming event on sessions: rmcp's, for its request streams.
    priming_retry: Option<Duration>,
}

impl<H: ServerHandler + Clone> DirectOrRmcp<H> {
    /// The direct path with `--stateless`; `reports`: what it reports itself (see
    /// `AppState::endpoint_reports`).
    pub fn new(tools: H, max_body_bytes: usize, reports: Reports, rmcp: RmcpService<H>) -> Self {
        Self(Arc::new(DirectPath {
            tools,
            max_body_bytes,
            metrics: reports.metrics,
            audit: reports.audit,
            idle: OnceLock::new(),
            rmcp,
            sessions: None,
            priming_retry: None,
        }))
    }

    /// The direct path on `sessions` (the default mode).
    pub fn on_sessions(
        tools: H,
        max_body_bytes: usize,
        reports: Reports,
        rmcp: RmcpService<H>,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self(Arc::new(DirectPath {
            tools,
            max_body_bytes,
            metrics: reports.metrics,
            audit: reports.audit,
            idle: OnceLock::new(),
            rmcp,
            priming_retry: sessions.priming_retry(),
            sessions: Some(sessions),
        }))
    }
}

impl<H: ServerHandler + Clone> tower::Service<Request> for DirectOrRmcp<H> {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let direct = self.0.clone();
        Box::pin(async move { Ok(direct.answer_or_pass(request).await) })
    }
}

impl<H: ServerHandler + Clone> DirectPath<H> {
    /// A peer for request contexts. rmcp only hands out peers of running services, so this is
    /// the peer of one service whose transport never delivers a message and drops what it is
    /// given.
    fn peer(&self) -> Peer<RoleServer> {
        self.idle
            .get_or_init(|| {
                let transport = (
                    futures::sink::drain(),
                    futures::stream::pending::<rmcp::service::RxJsonRpcMessage<RoleServer>>(),
                );
                rmcp::service::serve_directly(self.tools.clone(), transport, None)
            })
            .peer()
            .clone()
    }

    async fn answer_or_pass(&self, request: Request) -> Response {
        if request.method() != Method::POST {
            if self.sessions.is_some() && resumes_a_direct_stream(request.headers()) {
                return not_resumable();
            }
            return self.pass(request).await;
        }
        let plain =
            plain_headers(request.headers()) && self.session_allows(request.headers()).await;
        let report = self.metrics.is_some() || self.audit;
        if !plain && !report {
            return self.pass(request).await;
        }
        let (parts, body) = request.into_parts();
        let bytes = match read_body(body, self.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(refusal) => return refusal,
        };
        match direct_request(&bytes).filter(|request| plain && self.takes(request)) {
            Some(request) => self.answer(request, parts).await,
            None => {
                // rmcp answers; the outcome is read from its answer (see `audit::Record`).
                let operations = report.then(|| operations_quickly(&bytes));
                let mut response = self
                    .pass(Request::from_parts(parts, Body::from(bytes)))
                    .await;
                if let Some(operations) = operations {
                    response.extensions_mut().insert(Reported {
                        operations,
                        outcome: None,
                    });
                }
                response
            }
        }
    }

    /// Whether the request's session lets this path answer: always with `--stateless` (there is
    /// none); on sessions, one held here with its handshake done.
    async fn session_allows(&self, headers: &HeaderMap) -> bool {
        let Some(sessions) = &self.sessions else {
            return true;
        };
        match single_value(headers, "mcp-session-id") {
            Some(id) => sessions.answers_directly(id).await,
            None => false,
        }
    }

    /// Whether this path takes `request`, read from a plain body: on sessions, only without
    /// `_meta` (see the module documentation).
    fn takes(&self, request: &JsonRpcRequest<ClientRequest>) -> bool {
        self.sessions.is_none() || request.request.get_meta().is_empty()
    }

    /// rmcp's answer. Its future is boxed: it is several times the size of the direct path's,
    /// and held inline it would make every request's future that large (and copied that often).
    async fn pass(&self, request: Request) -> Response {
        Box::pin(self.rmcp.handle(request)).await.map(Body::new)
    }

    /// Runs the handler the way rmcp's service loop does (request `_meta` and extensions moved into
    /// the context, the HTTP request parts among the extensions) and writes rmcp's JSON answer.
    async fn answer(
        &self,
        request: JsonRpcRequest<ClientRequest>,
        parts: http::request::Parts,
    ) -> Response {
        let JsonRpcRequest {
            id, mut request, ..
        } = request;
        // Taken before the request moves into the handler, for the audit line.
        let audited = self.audited_call(&request, &parts);
        let mut context = RequestContext::new(id.clone(), self.peer());
        context.meta = std::mem::take(request.get_meta_mut());
        context.extensions = std::mem::take(request.extensions_mut());
        context.extensions.insert(parts);
        let started = Instant::now();
        let operation = self.metrics.as_ref().map(|metrics| {
            let tool = match &request {
                ClientRequest::CallToolRequest(call) => Some(call.params.name.as_ref()),
                _ => None,
            };
            (method_label(request.method()), metrics.tool_label(tool))
        });
        let (message, outcome) = match self.tools.handle_request(request, context).await {
            Ok(result) => {
                let outcome = match &result {
                    rmcp::model::ServerResult::CallToolResult(result)
                        if result.is_error == Some(true) =>
                    {
                        Outcome::ToolError
                    }
                    _ => Outcome::Ok,
                };
                (ServerJsonRpcMessage::response(result, id), outcome)
            }
            Err(error) => (ServerJsonRpcMessage::error(error, Some(id)), Outcome::Error),
        };
        let response = match self.sessions {
            None => json_response(&message),
            Some(_) => event_stream_response(&message, self.priming_retry),
        };
        // One clock read for both reports.
        let elapsed = (operation.is_some() || audited.is_some()).then(|| started.elapsed());
        if let (Some(metrics), Some((method, tool)), Some(elapsed)) =
            (&self.metrics, operation, elapsed)
        {
            metrics.record_labelled(method, tool, outcome.as_str(), elapsed);
        }
        if let (Some((caller, tool)), Some(elapsed)) = (audited, elapsed) {
            let duration = crate::logging::milliseconds(elapsed);
            super::audit::audit_line(&caller, &tool, outcome, &duration);
        }
        response
    }

    /// The caller and the tool of a `tools/call` this path writes the audit line of.
    fn audited_call(
        &self,
        request: &ClientRequest,
        parts: &http::request::Parts,
    ) -> Option<(Arc<Caller>, String)> {
        let ClientRequest::CallToolRequest(call) = request else {
            return None;
        };
        if !self.audit {
            return None;
        }
        let caller = parts.extensions.get::<Arc<Caller>>()?;
        Some((caller.clone(), call.params.name.to_string()))
    }
}

/// What the direct path reports itself, rather than the guard in front: see
/// `AppState::endpoint_reports`.
#[derive(Default)]
pub struct Reports {
    pub metrics: Option<Arc<Metrics>>,
    pub audit: bool,
}

/// The whole body, at most `max_bytes` of it. A body streamed without a length is only counted
/// here (a declared length was checked by `limits::SizeChecked`), and gets the same 413.
pub(super) async fn read_body(body: Body, max_bytes: usize) -> Result<Bytes, Response> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut collected = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            super::limits::refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the request body could not be read: {error}"),
            )
        })?;
        if chunk.len() > max_bytes.saturating_sub(collected.len()) {
            return Err(super::limits::body_too_large(max_bytes));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

/// Whether this path answers a POST with these headers and body (the rest goes to rmcp). For
/// tests, which check that the requests they compare really take each path.
pub fn answers(headers: &HeaderMap, body: &[u8]) -> bool {
    plain_headers(headers) && direct_request(body).is_some()
}

/// The headers rmcp accepts without further checks, for the protocol versions this path serves.
fn plain_headers(headers: &HeaderMap) -> bool {
    let content_type_json = single_value(headers, &header::CONTENT_TYPE)
        .is_some_and(|value| value.eq_ignore_ascii_case("application/json"));
    let accepts_both = single_value(headers, &header::ACCEPT).is_some_and(|accept| {
        let mut json = false;
        let mut sse = false;
        for media_type in accept.split(',').map(str::trim) {
            json |= media_type.eq_ignore_ascii_case("application/json");
            sse |= media_type.eq_ignore_ascii_case("text/event-stream");
            if media_type.contains(';') {
                return false;
            }
        }
        json && sse
    });
    let version_served = match single_value(headers, "mcp-protocol-version") {
        Some(version) => {
            version < FIRST_PER_REQUEST_VERSION
                && ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .any(|known| known.as_str() == version)
        }
        // Absent is served; repeated or not text is rmcp's to refuse.
        None => !headers.contains_key("mcp-protocol-version"),
    };
    content_type_json && accepts_both && version_served
}

/// The value of a header that appears exactly once, as text.
fn single_value(headers: &HeaderMap, name: impl header::AsHeaderName + Copy) -> Option<&str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

/// The body as a request this path answers, or `None` for everything rmcp should see.
///
/// rmcp parses a body as any JSON-RPC message, then as any client request, trying each of its
/// request types in turn, and each of those goes through two layers of `#[serde(flatten)]`,
/// which buffer the whole request as generic values before reading it (callgrind: about a
/// seventh of the instructions per request). Here the envelope is read once (exactly the request
/// keys, each once; anything else is rmcp's to judge) and the params straight into the method's
/// params type. Params with `_meta` are rare; they are parsed the way rmcp does, which moves
/// `_meta` into the request's extensions, and passed on to rmcp when `_meta` names a protocol
/// version.
fn direct_request(body: &[u8]) -> Option<JsonRpcRequest<ClientRequest>> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).ok()?;
    let request = match envelope.method.as_ref() {
        "tools/call" => {
            let params: CallToolRequestParams = parse_object(envelope.params?)?;
            if params.meta.is_some() {
                return request_with_meta(body, envelope.method.as_ref());
            }
            ClientRequest::CallToolRequest(CallToolRequest::new(params))
        }
        "tools/list" => {
            let params: Option<PaginatedRequestParams> = match envelope.params {
                Some(params) => Some(parse_object(params)?),
                None => None,
            };
            if params.as_ref().is_some_and(|params| params.meta.is_some()) {
                return request_with_meta(body, envelope.method.as_ref());
            }
            ClientRequest::ListToolsRequest(ListToolsRequest {
                params,
                ..Default::default()
            })
        }
        _ => return None,
    };
    Some(JsonRpcRequest::new(envelope.id, request))
}

/// Params that are a JSON object. serde would also read a struct from an array of its fields in
/// order, which rmcp's flattened params refuse.
fn parse_object<T: DeserializeOwned>(params: &RawValue) -> Option<T> {
    let json = params.get();
    if !json.starts_with('{') {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// A request whose params carry `_meta`, parsed with rmcp's own types, or `None` when its
/// `_meta` names a protocol version (rmcp checks those).
fn request_with_meta(body: &[u8], method: &str) -> Option<JsonRpcRequest<ClientRequest>> {
    let request = match method {
        "tools/call" => {
            let call: JsonRpcRequest<CallToolRequest> = serde_json::from_slice(body).ok()?;
            JsonRpcRequest::new(call.id, ClientRequest::CallToolRequest(call.request))
        }
        "tools/list" => {
            let list: JsonRpcRequest<ListToolsRequest> = serde_json::from_slice(body).ok()?;
            JsonRpcRequest::new(list.id, ClientRequest::ListToolsRequest(list.request))
        }
        _ => return None,
    };
    request
        .request
        .get_meta()
        .protocol_version()
        .is_none()
        .then_some(request)
}

/// The keys of a JSON-RPC request and nothing else: a body with a `result` or `error` too, a
/// repeated key or an extension member is left to rmcp. The params are kept as raw JSON until
/// the method says what type they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(rename = "jsonrpc")]
    _jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// The prefix of the priming events' ids on this path (see the module documentation).
const DIRECT_EVENT_ID: &str = "direct-";

/// Numbers the priming events, so that each id is unique in its session, as event ids must be.
static DIRECT_STREAMS: AtomicU64 = AtomicU64::new(0);

/// Whether a request resumes a stream this path answered (its `Last-Event-ID`).
fn resumes_a_direct_stream(headers: &HeaderMap) -> bool {
    headers
        .get("last-event-id")
        .and_then(|id| id.to_str().ok())
        .is_some_and(|id| id.starts_with(DIRECT_EVENT_ID))
}

/// The answer to resuming a stream this path answered: its events were not kept.
fn not_resumable() -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({
            "error": "stream_not_resumable",
            "error_description": "this stream's answer was sent whole as soon as it was ready, and its \
                events are not kept; send the request again",
        })),
    )
        .into_response()
}

/// `message` as a request's event stream, with the headers rmcp gives one: a priming event
/// (when rmcp's sessions send one) and the answer's event.
fn event_stream_response(
    message: &ServerJsonRpcMessage,
    priming_retry: Option<Duration>,
) -> Response {
    use std::io::Write;
    let mut event = Vec::with_capacity(256);
    if let Some(retry) = priming_retry {
        let stream = DIRECT_STREAMS.fetch_add(1, Ordering::Relaxed);
        let _ = write!(
            event,
            "data: \nid: {DIRECT_EVENT_ID}{stream}\nretry: {}\n\n",
            retry.as_millis()
        );
    }
    event.extend_from_slice(b"data: ");
    if let Err(error) = serde_json::to_writer(&mut event, message) {
        tracing::error!(%error, "serializing a tool's answer");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    event.extend_from_slice(b"\n\n");
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                http::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Bytes::from(event),
    )
        .into_response()
}

fn json_response(message: &ServerJsonRpcMessage) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            Bytes::from(body),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "serializing a tool's answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ClientJsonRpcMessage, RequestId};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const PLAIN: [(&str, &str); 3] = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    #[test]
    fn takes_plain_headers_only() {
        assert!(plain_headers(&headers(&PLAIN)));
        assert!(plain_headers(&headers(&PLAIN[..2])));
        for (name, value) in [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-protocol-version", "2025-13-45"),
            ("accept", "application/json"),
            ("accept", "application/json, text/event-stream;q=0"),
            ("content-type", "application/json; charset=utf-8"),
            ("content-type", "text/plain"),
        ] {
            let mut map = headers(&PLAIN);
            map.insert(name, HeaderValue::from_static(value));
            assert!(!plain_headers(&map), "{name}: {value}");
        }
        let mut twice = headers(&PLAIN);
        twice.append(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        assert!(!plain_headers(&twice));
    }

    #[test]
    fn takes_tool_requests_only() {
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"greet_user","arguments":{"name":"a"}}}"#;
        assert!(direct_request(call).is_some());
        assert!(direct_request(br#"{"jsonrpc":"2.0","id":"x","method":"tools/list"}"#).is_some());
        for other in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","result":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","x-extension":1}"#,
            br#"{"jsonrpc":"2.0","method":"tools/list"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            b"not json",
        ] {
            assert!(
                direct_request(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn keeps_request_ids_as_sent() {
        let request = direct_request(br#"{"jsonrpc":"2.0","id":"abc","method":"tools/list"}"#);
        assert_eq!(request.unwrap().id, RequestId::String("abc".into()));
    }

    /// Members a JSON-RPC body may be assembled from, valid and not: repeated keys, wrong types,
    /// response members, per-request versions.
    const MEMBERS: &[&str] = &[
        r#""jsonrpc":"2.0""#,
        r#""jsonrpc":2"#,
        r#""id":7"#,
        r#""id":"s""#,
        r#""id":null"#,
        r#""id":1.5"#,
        r#""method":"tools/call""#,
        r#""method":"tools/list""#,
        r#""method":"ping""#,
        r#""params":{"name":"greet_user","arguments":{"name":"a"}}"#,
        r#""params":{"name":"greet_user","arguments":{"name":"a"},"_meta":{"progressToken":1}}"#,
        r#""params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-06-18"}}"#,
        r#""params":null"#,
        r#""params":{}"#,
        r#""params":[]"#,
        r#""params":{"cursor":"c"}"#,
        r#""result":{}"#,
        r#""error":{"code":1,"message":"m"}"#,
        r#""x-extension":1"#,
    ];

    /// A `jsonrpc`, an `id` and a `method` member, then up to three more of any kind, in any order.
    fn body() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        (
            0..2usize,
            2..6usize,
            6..9usize,
            proptest::collection::vec(0..MEMBERS.len(), 0..4),
        )
            .prop_map(|(jsonrpc, id, method, more)| {
                let mut picks = vec![jsonrpc, id, method];
                picks.extend(more);
                picks
            })
            .prop_shuffle()
            .prop_map(|picks| {
                let members: Vec<&str> = picks.iter().map(|pick| MEMBERS[*pick]).collect();
                format!("{{{}}}", members.join(","))
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever the direct path takes, rmcp reads as the same request: same id, method,
        /// params and `_meta`.
        #[test]
        fn takes_only_what_rmcp_reads_the_same_way(body in body()) {
            if let Some(direct) = direct_request(body.as_bytes()) {
                let rmcp: ClientJsonRpcMessage = serde_json::from_str(&body)
                    .unwrap_or_else(|error| panic!("rmcp refuses {body}: {error}"));
                let ClientJsonRpcMessage::Request(rmcp) = rmcp else {
                    panic!("rmcp does not read {body} as a request");
                };
                proptest::prop_assert_eq!(
                    serde_json::to_value(&direct).unwrap(),
                    serde_json::to_value(&rmcp).unwrap(),
                    "{}", body
                );
            }
        }
    }
}
