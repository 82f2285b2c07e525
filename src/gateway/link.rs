//! The stateless gateway's one upstream session, shared by every caller: over HTTP (one
//! `Mcp-Session-Id`, opened again when the upstream forgets it) or with one long-lived child
//! (restarted, with a growing pause, when it exits).
//!
//! Messages are JSON-RPC values as the client sent them; the gateway has already put its own id
//! on requests. An HTTP upstream's event stream is handed back as it is, to be passed on; a
//! child's answers are matched to the waiting request by that id.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use super::Upstream;
use super::http_client::{UpstreamClient, UpstreamResponse};
use super::stateless::REQUESTED_VERSION;
use super::upstream::{Target, caller_headers, forwarded_headers};
use crate::auth::validate::Caller;
use crate::server::bad_gateway::rpc_error_response;

/// The upstream session: its id (HTTP, if the upstream gave one), the protocol version it
/// speaks, and its `initialize` result, which every client's `initialize` is answered with.
pub struct Session {
    id: Option<HeaderValue>,
    pub protocol_version: String,
    /// `protocol_version` as the `MCP-Protocol-Version` header each HTTP request carries, made
    /// once (`None`: not a valid header value, and not sent).
    version_header: Option<HeaderValue>,
    pub initialize: Value,
}

impl Session {
    fn new(id: Option<HeaderValue>, protocol_version: String, initialize: Value) -> Self {
        Self {
            id,
            version_header: HeaderValue::from_str(&protocol_version).ok(),
            protocol_version,
            initialize,
        }
    }
}

/// What came back for a message.
pub enum Exchange {
    /// One JSON-RPC message (the answer) as the upstream wrote it, with its HTTP status.
    Answer(StatusCode, Bytes),
    /// An HTTP upstream's event stream: progress and the like, then the answer.
    Stream(UpstreamResponse),
    /// Nothing to answer (a notification, or the client's answer to the upstream).
    Accepted,
}

/// Why a message could not be forwarded: HTTP 502 (or 504) for the client, with a JSON-RPC
/// error naming the upstream.
#[derive(Debug)]
pub struct LinkError {
    status: StatusCode,
    message: String,
}

impl LinkError {
    /// Whether the upstream did not answer within `--upstream-timeout`.
    pub fn is_timeout(&self) -> bool {
        self.status == StatusCode::GATEWAY_TIMEOUT
    }

    /// What went wrong, naming the upstream.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(super) fn bad_gateway(message: String) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            message,
        }
    }

    /// 504, for an upstream that did not answer in time.
    pub(super) fn gateway_timeout(message: String) -> Self {
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            message,
        }
    }

    /// 504: the upstream did not answer within `--upstream-timeout`.
    pub(super) fn timed_out(upstream: &Upstream) -> Self {
        Self::gateway_timeout(format!(
            "{} did not answer within {} s (--upstream-timeout)",
            upstream.describe(),
            upstream.timeout.as_secs()
        ))
    }

    /// The answer to the client whose request had `id`.
    pub fn response(&self, id: Value) -> Response {
        rpc_error_response(self.status, id, -32603, self.message.clone())
    }
}

/// The shared upstream session, over whichever transport the upstream speaks.
pub struct Link {
    upstream: Arc<Upstream>,
    transport: Transport,
}

enum Transport {
    Http(HttpLink),
    Command(ChildLink),
}

impl Link {
    /// The link to `upstream`, whose messages (a child's lines) may be `max_message_bytes` long.
    pub fn new(upstream: Arc<Upstream>, max_message_bytes: usize) -> Self {
        let transport = match &upstream.target {
            Target::Http {
                url,
                headers,
                bearer,
            } => Transport::Http(HttpLink {
                client: reqwest::Url::parse(url).ok().map(UpstreamClient::new),
                headers: static_headers(headers, bearer.as_deref()),
                max_message_bytes,
                session: Default::default(),
                opening: Default::default(),
            }),
            Target::Command { program, args } => Transport::Command(ChildLink {
                program: program.clone(),
                args: args.clone(),
                max_message_bytes,
                running: Default::default(),
                restarts: Default::default(),
            }),
        };
        Self {
            upstream,
            transport,
        }
    }

    /// Remembers the tools a `tools/list` answer names ([`super::upstream::KnownTools`]).
    pub fn learn_tools(&self, answer: &[u8]) {
        learn_tools(&self.upstream, answer);
    }

    /// The upstream this links to.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// A response's whole body, up to the link's largest message (`--max-body-bytes`), within
    /// `--upstream-timeout`.
    pub async fn read_whole(&self, response: UpstreamResponse) -> Result<Bytes, LinkError> {
        let max_bytes = match &self.transport {
            Transport::Http(http) => http.max_message_bytes,
            Transport::Command(child) => child.max_message_bytes,
        };
        whole_body(&self.upstream, response, max_bytes).await
    }

    /// The upstream session, opened (or the child started) first if there is none.
    pub async fn session(&self) -> Result<Arc<Session>, LinkError> {
        let opened = match &self.transport {
            Transport::Http(http) => http.session(&self.upstream).await,
            Transport::Command(child) => child
                .running(&self.upstream)
                .await
                .map(|child| child.session.clone()),
        };
        self.note(opened)
    }

    /// Sends `message` upstream with `caller`'s forwarded headers (HTTP); `answer_id` is the
    /// gateway's id on a request, whose answer is awaited.
    pub async fn send(
        &self,
        message: Bytes,
        answer_id: Option<u64>,
        caller: Option<&Caller>,
    ) -> Result<Exchange, LinkError> {
        let sent = match &self.transport {
            Transport::Http(http) => http.send(&self.upstream, &message, answer_id, caller).await,
            Transport::Command(child) => child.send(&self.upstream, &message, answer_id).await,
        };
        self.note(sent)
    }

    /// Passes a client's request on to an HTTP upstream ([`Passed`]).
    pub async fn pass(&self, passed: Passed<'_>) -> Result<UpstreamResponse, LinkError> {
        let sent = match &self.transport {
            Transport::Http(http) => http.pass(&self.upstream, passed).await,
            Transport::Command(_) => Err(LinkError::bad_gateway(format!(
                "{} is a command, not an HTTP server",
                self.upstream.describe()
            ))),
        };
        self.note(sent)
    }

    /// Until `shutdown`: while the upstream does not answer, tries again every few seconds (so
    /// that `/ready` turns 200 without traffic, which a load balancer would not send to a
    /// replica that is not ready). An HTTP upstream that answers is checked again every
    /// [`RECHECK_EVERY`], so that `/ready` also turns 503 when it goes away while no request
    /// comes (a command's child is watched for its exit instead, and starting one more to look
    /// would cost a process). `keep_open`: whether the session (or child) stays open for use
    /// once it answers, rather than closed (a stateful gateway's probe).
    pub async fn keep_trying(&self, shutdown: CancellationToken, keep_open: bool) {
        let mut pause = Duration::from_secs(1);
        loop {
            let reachable = self.upstream.health.is_reachable();
            if !reachable || matches!(self.transport, Transport::Http(_)) {
                pause = match self.probe().await {
                    Ok(_) => Duration::from_secs(1),
                    Err(_) => (pause * 2).min(Duration::from_secs(10)),
                };
                if !keep_open {
                    self.close().await;
                }
            }
            let wait = match self.upstream.health.is_reachable() {
                true => RECHECK_EVERY,
                false => pause,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Whether the upstream answers: opening the session shows it; an open one is pinged.
    async fn probe(&self) -> Result<(), LinkError> {
        let open = match &self.transport {
            Transport::Http(http) => http.current().is_some(),
            Transport::Command(child) => child
                .running
                .lock()
                .await
                .as_ref()
                .is_some_and(|child| !child.exited.is_cancelled()),
        };
        self.session().await?;
        if open {
            let ping = to_bytes(&json!({"jsonrpc": "2.0", "id": OWN_ID, "method": "ping"}));
            self.send(ping, Some(OWN_ID), None).await?;
        }
        Ok(())
    }

    /// Ends the upstream session for good, at shutdown: the child gets SIGTERM (then SIGKILL)
    /// and is waited for; an HTTP session is deleted.
    pub async fn shut_down(&self) {
        match &self.transport {
            Transport::Http(http) => http.delete(&self.upstream).await,
            Transport::Command(child) => {
                let child = child.running.lock().await.take();
                if let Some(child) = child {
                    let exited = child.exited.clone();
                    drop(child);
                    exited.cancelled().await;
                }
            }
        }
    }

    /// Closes the session: the child is stopped, an HTTP session deleted upstream.
    async fn close(&self) {
        match &self.transport {
            Transport::Http(http) => http.delete(&self.upstream).await,
            Transport::Command(child) => {
                child.running.lock().await.take();
            }
        }
    }

    /// Records in the health what an attempt found.
    fn note<T>(&self, outcome: Result<T, LinkError>) -> Result<T, LinkError> {
        match &outcome {
            Ok(_) => self.upstream.health.reachable(),
            Err(error) => self.upstream.health.unreachable(&error.message),
        }
        outcome
    }
}

/// How often an HTTP upstream that answers is checked again (see [`Link::keep_trying`]): a
/// `ping` on the shared session (`--stateless`), or a session opened and deleted.
const RECHECK_EVERY: Duration = Duration::from_secs(10);

/// The id of the gateway's own requests (`initialize`, the readiness `ping`): their answers are
/// read here, never passed on. Forwarded requests get ids from 1 up.
pub const OWN_ID: u64 = 0;

/// The `initialize` request the gateway opens its upstream session with: no client
/// capabilities, since there is no one client to pass the upstream's requests to.
fn initialize_request() -> Bytes {
    to_bytes(&json!({
        "jsonrpc": "2.0",
        "id": OWN_ID,
        "method": "initialize",
        "params": {
            "protocolVersion": REQUESTED_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "scalekit-mcp gateway", "version": env!("CARGO_PKG_VERSION")},
        },
    }))
}

fn initialized_notification() -> Bytes {
    to_bytes(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
}

/// Why the gateway cancels a request upstream that it stopped waiting for (504).
pub const GAVE_UP: &str = "the gateway's --upstream-timeout passed";

/// `notifications/cancelled` for the request `id`, with `reason` if there is one. The gateway
/// sends it for a request it stops waiting for, as the MCP spec has a client do.
pub fn cancelled_notification(id: Value, reason: Option<Value>) -> Bytes {
    let mut params = json!({"requestId": id});
    if let Some(reason) = reason {
        params["reason"] = reason;
    }
    to_bytes(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}))
}

fn to_bytes(message: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(message).unwrap_or_default())
}

/// The members of a JSON-RPC message that say where it goes; the rest is not parsed.
#[derive(serde::Deserialize)]
pub struct Routing {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
}

impl Routing {
    /// The routing members of `message`; `None` when it is not a JSON object.
    pub fn read(message: &[u8]) -> Option<Self> {
        serde_json::from_slice(message).ok()
    }

    /// Whether `message` is an answer (to any request).
    pub fn is_answer(message: &[u8]) -> bool {
        Self::read(message).is_some_and(|routing| routing.method.is_none() && routing.id.is_some())
    }

    /// Whether `message` is the answer to the gateway's request `id`.
    pub fn answers(message: &[u8], id: u64) -> bool {
        Self::read(message).is_some_and(|routing| routing.is_answer_to(id))
    }

    /// Whether this is the answer to the gateway's request `id`.
    pub fn is_answer_to(&self, id: u64) -> bool {
        self.method.is_none() && self.id == Some(Value::from(id))
    }

    /// The id of this message if it is a request (of the upstream's own, in a stream).
    pub fn into_request_id(self) -> Option<Value> {
        self.method.and(self.id)
    }
}

/// Remembers the tools a `tools/list` answer names ([`super::upstream::KnownTools`]).
pub fn learn_tools(upstream: &Upstream, answer: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Listed {
        result: rmcp::model::ListToolsResult,
    }
    if let Ok(listed) = serde_json::from_slice::<Listed>(answer) {
        upstream.tools.learn(listed.result.tools);
    }
}

/// The session an `initialize` answer opens, or why it does not.
fn session_of(
    answer: &[u8],
    id: Option<HeaderValue>,
    upstream: &Upstream,
) -> Result<Session, LinkError> {
    let answer: Value = serde_json::from_slice(answer).unwrap_or_default();
    let Some(result) = answer.get("result") else {
        return Err(LinkError::bad_gateway(format!(
            "{} refused initialize: {}",
            upstream.describe(),
            answer.get("error").unwrap_or(&answer)
        )));
    };
    let protocol_version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(REQUESTED_VERSION)
        .to_owned();
    Ok(Session::new(id, protocol_version, result.clone()))
}

/// An HTTP upstream: one session, opened on first use and again after a 404.
struct HttpLink {
    /// For the URL checked at startup (`None`: not a URL after all, and every request says so).
    client: Option<UpstreamClient>,
    /// `--upstream-header`s and `--upstream-bearer-env`'s token (marked sensitive): never
    /// logged.
    headers: http::HeaderMap,
    /// The largest answer read whole (`--max-body-bytes`).
    max_message_bytes: usize,
    session: RwLock<Option<Arc<Session>>>,
    opening: tokio::sync::Mutex<()>,
}

impl HttpLink {
    /// The configured headers, in a map with room for the ones each request adds (the caller's,
    /// the session's, the content's, the client's), so that adding them does not grow it.
    fn request_headers(&self) -> http::HeaderMap {
        let mut headers = http::HeaderMap::with_capacity(self.headers.len() + 12);
        headers.extend(
            self.headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        headers
    }

    /// The client, or the error every request gets when the URL is not one.
    fn client(&self, upstream: &Upstream) -> Result<&UpstreamClient, LinkError> {
        self.client
            .as_ref()
            .ok_or_else(|| LinkError::bad_gateway(format!("{} is not a URL", upstream.describe())))
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.session
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    async fn session(&self, upstream: &Upstream) -> Result<Arc<Session>, LinkError> {
        if let Some(session) = self.current() {
            return Ok(session);
        }
        let _opening = self.opening.lock().await;
        if let Some(session) = self.current() {
            return Ok(session);
        }
        let session = Arc::new(self.open(upstream).await?);
        *self
            .session
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(session.clone());
        Ok(session)
    }

    /// Deletes the session at the upstream (a courtesy: it would time out anyway).
    async fn delete(&self, upstream: &Upstream) {
        let Some(session) = self.current() else {
            return;
        };
        self.forget(&session);
        let (Some(client), Some(id)) = (&self.client, &session.id) else {
            return;
        };
        let mut headers = self.request_headers();
        headers.insert(MCP_SESSION_ID, id.clone());
        if let Some(version) = &session.version_header {
            headers.insert(MCP_PROTOCOL_VERSION, version.clone());
        }
        let request = client.send(Method::DELETE, headers, None);
        match tokio::time::timeout(upstream.timeout, request).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "the shared upstream session was not deleted")
            }
            Err(_) => tracing::debug!("the shared upstream session was not deleted in time"),
        }
    }

    /// Forgets `session` (the upstream answered 404 for it), unless another replaced it already.
    fn forget(&self, session: &Arc<Session>) {
        let mut current = self
            .session
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, session))
        {
            *current = None;
        }
    }

    async fn open(&self, upstream: &Upstream) -> Result<Session, LinkError> {
        let response = self
            .post(upstream, None, initialize_request(), None)
            .await?;
        let id = response.headers().get("mcp-session-id").cloned();
        let answer = match read_answer(upstream, response, OWN_ID, self.max_message_bytes).await? {
            Exchange::Answer(_, answer) => answer,
            _ => {
                return Err(LinkError::bad_gateway(format!(
                    "{} sent no initialize result",
                    upstream.describe()
                )));
            }
        };
        let session = session_of(&answer, id, upstream)?;
        self.post(upstream, Some(&session), initialized_notification(), None)
            .await?;
        tracing::info!(
            session = session.id.is_some(),
            protocol_version = %session.protocol_version,
            "opened the shared session at {}",
            upstream.describe()
        );
        Ok(session)
    }

    async fn send(
        &self,
        upstream: &Upstream,
        message: &Bytes,
        answer_id: Option<u64>,
        caller: Option<&Caller>,
    ) -> Result<Exchange, LinkError> {
        let mut retried = false;
        loop {
            let session = self.session(upstream).await?;
            let response = self
                .post(upstream, Some(&session), message.clone(), caller)
                .await?;
            if response.status() == StatusCode::NOT_FOUND && session.id.is_some() && !retried {
                // The upstream forgot the session (it restarted, or timed it out): a new one.
                self.forget(&session);
                retried = true;
                continue;
            }
            return match answer_id {
                Some(id) => read_answer(upstream, response, id, self.max_message_bytes).await,
                None => Ok(Exchange::Accepted),
            };
        }
    }

    /// POSTs `message` in `session`, and checks the status: anything the client should not see
    /// as such (the upstream refusing the gateway, failing, not answering) is an error.
    async fn post(
        &self,
        upstream: &Upstream,
        session: Option<&Session>,
        message: Bytes,
        caller: Option<&Caller>,
    ) -> Result<UpstreamResponse, LinkError> {
        let client = self.client(upstream)?;
        let mut headers = self.request_headers();
        headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
        headers.insert(header::ACCEPT, JSON_OR_EVENTS);
        headers.extend(caller_headers(caller));
        if let Some(session) = session {
            if let Some(version) = &session.version_header {
                headers.insert(MCP_PROTOCOL_VERSION, version.clone());
            }
            if let Some(id) = &session.id {
                headers.insert(MCP_SESSION_ID, id.clone());
            }
        }
        exchange(upstream, client.send(Method::POST, headers, Some(message))).await
    }

    /// Sends a client's request on as it is ([`Passed`]), with the gateway's own headers.
    async fn pass(
        &self,
        upstream: &Upstream,
        passed: Passed<'_>,
    ) -> Result<UpstreamResponse, LinkError> {
        let client = self.client(upstream)?;
        let accept = match passed.method {
            Method::GET => HeaderValue::from_static("text/event-stream"),
            _ => JSON_OR_EVENTS,
        };
        let mut headers = self.request_headers();
        headers.insert(header::ACCEPT, accept);
        headers.extend(caller_headers(passed.caller));
        for (name, value) in passed.client_headers {
            headers.append(name, value);
        }
        if let Some(session) = passed.session {
            headers.insert(MCP_SESSION_ID, session.clone());
        }
        if passed.body.is_some() {
            headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
        }
        let sent = client.send(passed.method, headers, passed.body);
        exchange(upstream, sent).await
    }
}

/// A client's request that a stateful gateway passes on to an HTTP upstream as it is, in the
/// upstream session its own session maps to (`super::pass_through`).
pub struct Passed<'a> {
    pub method: Method,
    /// The upstream's id of the session (none for `initialize`, or an upstream without
    /// sessions).
    pub session: Option<&'a HeaderValue>,
    /// The client's headers that go on as they are (`MCP-Protocol-Version`, `Last-Event-ID`).
    pub client_headers: Vec<(HeaderName, HeaderValue)>,
    /// The message, for a `POST`.
    pub body: Option<Bytes>,
    pub caller: Option<&'a Caller>,
}

/// Sends `request` within `--upstream-timeout` (for the answer's head: an event stream is not
/// cut), and checks the status: anything the client should not see as such (the upstream
/// refusing the gateway, failing, not answering) is an error.
async fn exchange(
    upstream: &Upstream,
    request: impl Future<Output = Result<UpstreamResponse, String>>,
) -> Result<UpstreamResponse, LinkError> {
    let sent = tokio::time::timeout(upstream.timeout, request).await;
    let response = match sent {
        Err(_) => {
            return Err(LinkError {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!(
                    "{} did not answer within {} s (--upstream-timeout)",
                    upstream.describe(),
                    upstream.timeout.as_secs()
                ),
            });
        }
        Ok(Err(error)) => {
            return Err(LinkError::bad_gateway(format!(
                "{} is unreachable: {error}",
                upstream.describe(),
            )));
        }
        Ok(Ok(response)) => response,
    };
    match response.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(LinkError::bad_gateway(format!(
            "{} refused this gateway's credentials (HTTP {}): check --upstream-bearer-env and \
             --upstream-header",
            upstream.describe(),
            response.status().as_u16()
        ))),
        status if status.is_server_error() => Err(LinkError::bad_gateway(format!(
            "{} failed: HTTP {}",
            upstream.describe(),
            status.as_u16()
        ))),
        _ => Ok(response),
    }
}

/// The headers every request to an HTTP upstream carries: the configured ones (without any of
/// the caller's `X-Forwarded-*` names, which only the gateway sets) and the bearer token.
fn static_headers(
    configured: &[(HeaderName, HeaderValue)],
    bearer: Option<&str>,
) -> http::HeaderMap {
    let mut headers: http::HeaderMap = forwarded_headers(configured, None).into_iter().collect();
    if let Some(Ok(mut value)) =
        bearer.map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
    {
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    headers
}

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const JSON_OR_EVENTS: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");

/// The answer in an HTTP upstream's response to request `id`: the JSON body, or the event
/// stream to pass on (read here only for the gateway's own requests, whose answer it needs).
/// A JSON answer is read whole, up to `max_bytes` (`--max-body-bytes`).
async fn read_answer(
    upstream: &Upstream,
    response: UpstreamResponse,
    id: u64,
    max_bytes: usize,
) -> Result<Exchange, LinkError> {
    let status = response.status();
    let event_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if event_stream && id != OWN_ID {
        return Ok(Exchange::Stream(response));
    }
    let read = if event_stream {
        tokio::time::timeout(upstream.timeout, answer_in_stream(response, id, max_bytes))
            .await
            .map_err(|_| unfinished(upstream))?
            .map_err(|error| unreadable(upstream, error))?
    } else {
        let body = whole_body(upstream, response, max_bytes).await?;
        (!body.iter().all(u8::is_ascii_whitespace)).then_some(body)
    };
    match read {
        Some(answer) => Ok(Exchange::Answer(status, answer)),
        None if status == StatusCode::ACCEPTED => Ok(Exchange::Accepted),
        None => Err(LinkError::bad_gateway(format!(
            "{} answered HTTP {} without a JSON-RPC message",
            upstream.describe(),
            status.as_u16()
        ))),
    }
}

/// `response`'s whole body, up to `max_bytes` (`--max-body-bytes`), within `--upstream-timeout`.
async fn whole_body(
    upstream: &Upstream,
    response: UpstreamResponse,
    max_bytes: usize,
) -> Result<Bytes, LinkError> {
    let read = tokio::time::timeout(upstream.timeout, body_within(response, max_bytes))
        .await
        .map_err(|_| unfinished(upstream))?
        .map_err(|error| unreadable(upstream, error))?;
    read.ok_or_else(|| {
        LinkError::bad_gateway(format!(
            "{} sent an answer larger than {max_bytes} bytes (--max-body-bytes)",
            upstream.describe()
        ))
    })
}

fn unreadable(upstream: &Upstream, error: axum::Error) -> LinkError {
    LinkError::bad_gateway(format!(
        "{} sent an answer that could not be read: {}",
        upstream.describe(),
        crate::error::error_chain(&error)
    ))
}

fn unfinished(upstream: &Upstream) -> LinkError {
    LinkError::bad_gateway(format!(
        "{} did not finish its answer in time",
        upstream.describe()
    ))
}

/// `response`'s body, or `None` past `max_bytes`.
async fn body_within(
    response: UpstreamResponse,
    max_bytes: usize,
) -> Result<Option<Bytes>, axum::Error> {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(1);
    let mut length = 0;
    let mut body = response.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        length += chunk.len();
        if length > max_bytes {
            return Ok(None);
        }
        chunks.push(chunk);
    }
    Ok(Some(match chunks.len() {
        1 => chunks.remove(0),
        _ => Bytes::from(chunks.concat()),
    }))
}

/// The answer to request `id` in an event stream, read until it comes.
async fn answer_in_stream(
    response: UpstreamResponse,
    id: u64,
    max_bytes: usize,
) -> Result<Option<Bytes>, axum::Error> {
    let mut events = SseEvents::with_limit(max_bytes);
    let mut body = response.into_body().into_data_stream();
    let mut found = None;
    while let Some(chunk) = body.next().await {
        events.push(&chunk?, |data| {
            if Routing::answers(data.as_bytes(), id) {
                found = Some(Bytes::copy_from_slice(data.as_bytes()));
            }
            None
        });
        if found.is_some() || events.oversized() {
            break;
        }
    }
    Ok(found)
}

/// An event stream from upstream, passed on whole event by whole event as it comes, each event's
/// data replaced by what `rewrite` returns for it (unchanged for `None`). An event larger than
/// `max_bytes` (`--max-body-bytes`) ends the stream.
pub fn pass_events(
    response: UpstreamResponse,
    max_bytes: usize,
    mut rewrite: impl FnMut(&str) -> Option<String> + Send + 'static,
) -> Response {
    let mut events = SseEvents::with_limit(max_bytes);
    let stream = response.into_body().into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let complete = events.push(&chunk, &mut rewrite);
        if events.oversized() {
            return Err(std::io::Error::other(format!(
                "an event from upstream is larger than {max_bytes} bytes (--max-body-bytes)"
            )));
        }
        Ok::<Bytes, std::io::Error>(complete)
    });
    let mut response = Response::new(axum::body::Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Server-sent events, cut into whole events as chunks arrive, with a chance to rewrite each
/// event's data.
#[derive(Default)]
pub struct SseEvents {
    pending: String,
    /// The largest event taken; 0: no limit.
    limit: usize,
    oversized: bool,
}

impl SseEvents {
    /// Events of at most `limit` bytes: past it, nothing more is returned, and
    /// [`SseEvents::oversized`] says so.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Whether an event was larger than the limit (the stream is then to be cut).
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    /// Takes `chunk` and returns the events it completes, each event's data replaced by what
    /// `rewrite` returns for it (unchanged when it returns `None`).
    pub fn push(&mut self, chunk: &[u8], mut rewrite: impl FnMut(&str) -> Option<String>) -> Bytes {
        self.pending.push_str(&String::from_utf8_lossy(chunk));
        if self.pending.contains('\r') {
            self.pending = self.pending.replace("\r\n", "\n");
        }
        let mut complete = String::new();
        let too_large = |length: usize| self.limit != 0 && length > self.limit;
        if self.oversized || too_large(self.pending.find("\n\n").unwrap_or(self.pending.len())) {
            self.oversized = true;
            self.pending.clear();
            return Bytes::from(complete);
        }
        while let Some(end) = self.pending.find("\n\n") {
            if self.limit != 0 && end > self.limit {
                self.oversized = true;
                self.pending.clear();
                break;
            }
            let event: String = self.pending.drain(..end + 2).collect();
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            match (!data.is_empty())
                .then(|| rewrite(&data.join("\n")))
                .flatten()
            {
                Some(data) => {
                    for line in event
                        .lines()
                        .filter(|line| !line.is_empty() && !line.starts_with("data:"))
                    {
                        complete.push_str(line);
                        complete.push('\n');
                    }
                    complete.push_str("data: ");
                    complete.push_str(&data);
                    complete.push_str("\n\n");
                }
                None => complete.push_str(&event),
            }
        }
        Bytes::from(complete)
    }
}

/// A command upstream: one child for every caller, started on first use and again after it
/// exits (not sooner than a pause that grows while it keeps exiting).
struct ChildLink {
    program: String,
    args: Vec<String>,
    /// The longest line read from the child (`--max-body-bytes`).
    max_message_bytes: usize,
    running: tokio::sync::Mutex<Option<Arc<Child>>>,
    restarts: Mutex<Restarts>,
}

#[derive(Default)]
struct Restarts {
    last_start: Option<Instant>,
    /// How long after `last_start` the next start may be.
    pause: Duration,
    /// Why the last child exited, or could not start.
    last_failure: Option<String>,
}

/// A running child: its stdin, the requests waiting for an answer, and its session.
struct Child {
    stdin: SharedStdin,
    waiting: Arc<Mutex<Waiting>>,
    session: Arc<Session>,
    exited: CancellationToken,
    /// Cancelled when this is dropped: the process is stopped then.
    stop: CancellationToken,
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Requests sent to a child and not answered yet; once it exits, why.
#[derive(Default)]
struct Waiting {
    answers: HashMap<u64, oneshot::Sender<Bytes>>,
    gone: Option<String>,
}

impl ChildLink {
    /// The running child, started now if there is none; while a child that keeps exiting
    /// waits for its restart, the reason it exited (at once: a request never waits out the
    /// pause, which the background check does).
    async fn running(&self, upstream: &Upstream) -> Result<Arc<Child>, LinkError> {
        let mut running = self.running.lock().await;
        if let Some(child) = running.as_ref() {
            if !child.exited.is_cancelled() {
                return Ok(child.clone());
            }
            self.lock_restarts().last_failure = child.lock_waiting().gone.clone();
        }
        running.take();
        {
            let mut restarts = self.lock_restarts();
            if let (Some(start), Some(failure)) = (restarts.last_start, &restarts.last_failure)
                && start.elapsed() < restarts.pause
            {
                return Err(LinkError::bad_gateway(format!(
                    "{failure} (restarting it in {} s)",
                    (restarts.pause - start.elapsed()).as_secs() + 1
                )));
            }
            // A child that ran a minute has earned a quick restart; one that keeps exiting waits
            // longer each time, up to 30 s.
            restarts.pause = match restarts.last_start {
                Some(start) if start.elapsed() < Duration::from_secs(60) => {
                    (restarts.pause * 2).clamp(Duration::from_millis(250), Duration::from_secs(30))
                }
                _ => Duration::ZERO,
            };
            restarts.last_start = Some(Instant::now());
        }
        let command = super::upstream::command(&self.program, &self.args, None);
        match Child::start(upstream, command, self.max_message_bytes).await {
            Ok(child) => {
                let child = Arc::new(child);
                *running = Some(child.clone());
                Ok(child)
            }
            Err(error) => {
                self.lock_restarts().last_failure = Some(error.message.clone());
                Err(error)
            }
        }
    }

    fn lock_restarts(&self) -> std::sync::MutexGuard<'_, Restarts> {
        self.restarts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    async fn send(
        &self,
        upstream: &Upstream,
        message: &Bytes,
        answer_id: Option<u64>,
    ) -> Result<Exchange, LinkError> {
        let child = self.running(upstream).await?;
        let answer = match answer_id {
            Some(id) => Some(child.expect(id)?),
            None => None,
        };
        child.write(upstream, message).await?;
        let Some(answer) = answer else {
            return Ok(Exchange::Accepted);
        };
        match tokio::time::timeout(upstream.timeout, answer).await {
            Ok(Ok(answer)) => Ok(Exchange::Answer(StatusCode::OK, answer)),
            Ok(Err(_)) => Err(child.gone(upstream)),
            Err(_) => {
                if let Some(id) = answer_id {
                    child.lock_waiting().answers.remove(&id);
                }
                Err(LinkError::timed_out(upstream))
            }
        }
    }
}

/// Numbers the shared children, for their log lines.
static CHILDREN: AtomicU64 = AtomicU64::new(0);

impl Child {
    /// Starts the command and initializes it.
    async fn start(
        upstream: &Upstream,
        mut command: tokio::process::Command,
        max_message_bytes: usize,
    ) -> Result<Self, LinkError> {
        let number = CHILDREN.fetch_add(1, Ordering::Relaxed) + 1;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = command.spawn().map_err(|error| {
            LinkError::bad_gateway(format!("cannot start {}: {error}", upstream.describe()))
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            return Err(LinkError::bad_gateway(format!(
                "{} started without pipes",
                upstream.describe()
            )));
        };
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let exited = CancellationToken::new();
        let stop = CancellationToken::new();
        let last_stderr = Arc::new(Mutex::new(String::new()));
        tokio::spawn(keep_last_stderr(stderr, number, last_stderr.clone()));
        let stdin = Arc::new(tokio::sync::Mutex::new(stdin));
        tokio::spawn(read_answers(
            FramedRead::new(stdout, LinesCodec::new_with_max_length(max_message_bytes)),
            process,
            stdin.clone(),
            waiting.clone(),
            Ends {
                exited: exited.clone(),
                stop: stop.clone(),
            },
            last_stderr,
            upstream.describe(),
        ));
        let mut child = Self {
            stdin,
            waiting,
            session: Arc::new(Session::new(None, REQUESTED_VERSION.into(), Value::Null)),
            exited,
            stop,
        };
        let answer = child.expect(OWN_ID)?;
        child.write(upstream, &initialize_request()).await?;
        let answer = match tokio::time::timeout(upstream.timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(child.gone(upstream)),
            Err(_) => {
                return Err(LinkError::bad_gateway(format!(
                    "{} did not answer initialize within {} s (--upstream-timeout)",
                    upstream.describe(),
                    upstream.timeout.as_secs()
                )));
            }
        };
        child.session = Arc::new(session_of(&answer, None, upstream)?);
        child.write(upstream, &initialized_notification()).await?;
        tracing::info!(child = number, "started the shared {}", upstream.describe());
        Ok(child)
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Registers request `id`, whose answer the returned receiver gets.
    fn expect(&self, id: u64) -> Result<oneshot::Receiver<Bytes>, LinkError> {
        let (sender, receiver) = oneshot::channel();
        let mut waiting = self.lock_waiting();
        if let Some(gone) = &waiting.gone {
            return Err(LinkError::bad_gateway(gone.clone()));
        }
        waiting.answers.insert(id, sender);
        Ok(receiver)
    }

    /// Writes `message` as one line ([`write_line`]).
    async fn write(&self, upstream: &Upstream, message: &[u8]) -> Result<(), LinkError> {
        let mut stdin = self.stdin.lock().await;
        write_line(&mut stdin, message)
            .await
            .map_err(|_| self.gone(upstream))
    }

    /// The error for a request the child will never answer.
    fn gone(&self, upstream: &Upstream) -> LinkError {
        let reason = self.lock_waiting().gone.clone();
        LinkError::bad_gateway(reason.unwrap_or_else(|| format!("{} exited", upstream.describe())))
    }
}

/// A shared child's stdin: the gateway's requests are written to it, and its answers to the
/// child's own requests.
type SharedStdin = Arc<tokio::sync::Mutex<tokio::process::ChildStdin>>;

/// Reads the child's stdout until it closes: answers go to their requests; the child's own
/// requests are answered by the gateway ([`answer_for_child`]: there is no one client to ask);
/// its notifications are logged. Then waits for the child and tells every waiting request why
/// it gets no answer.
async fn read_answers(
    mut lines: FramedRead<tokio::process::ChildStdout, LinesCodec>,
    mut process: tokio::process::Child,
    stdin: SharedStdin,
    waiting: Arc<Mutex<Waiting>>,
    ends: Ends,
    last_stderr: Arc<Mutex<String>>,
    upstream: String,
) {
    let mut garbage = None;
    loop {
        let line = tokio::select! {
            line = lines.next() => line,
            () = ends.stop.cancelled() => {
                stop(&mut process).await;
                break;
            }
        };
        let Some(line) = line else {
            break;
        };
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                garbage = Some(format!("wrote a line it should not have ({error})"));
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(routing) = serde_json::from_str::<Routing>(&line) else {
            let start: String = line.chars().take(80).collect();
            garbage = Some(format!(
                "wrote something that is not JSON-RPC on stdout: {start:?}"
            ));
            break;
        };
        match (routing.method, routing.id.as_ref().and_then(Value::as_u64)) {
            (None, Some(id)) => {
                let answer = waiting
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .answers
                    .remove(&id);
                if let Some(answer) = answer {
                    let _ = answer.send(Bytes::from(line));
                }
            }
            (Some(_), _) => match routing.id {
                Some(id) => {
                    let answer = answer_for_child(&line, id);
                    // Written on its own, so that a child blocked on a full stdin while it
                    // writes stdout is still read here.
                    let stdin = stdin.clone();
                    tokio::spawn(async move {
                        let _ = write_line(&mut *stdin.lock().await, &answer).await;
                    });
                }
                None => tracing::debug!(
                    "{upstream} sent a notification no client of a stateless gateway can take"
                ),
            },
            (None, None) => {
                tracing::debug!("{upstream} sent an answer to no request of the gateway's")
            }
        }
    }
    if garbage.is_some() {
        let _ = process.start_kill();
    }
    let status = process
        .wait()
        .await
        .map(|status| status.to_string())
        .unwrap_or_else(|error| error.to_string());
    let last = last_stderr
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    let mut reason = format!("{upstream} exited ({status})");
    if let Some(garbage) = garbage {
        reason = format!("{upstream} {garbage}; stopped it");
    }
    if !last.is_empty() {
        reason.push_str(&format!("; its last stderr line: {last}"));
    }
    match ends.stop.is_cancelled() {
        true => tracing::debug!("{reason}"),
        false => tracing::error!("{reason}"),
    }
    let mut waiting = waiting.lock().unwrap_or_else(|poison| poison.into_inner());
    waiting.gone = Some(reason);
    // Dropping the senders answers every waiting request with "gone".
    waiting.answers.clear();
    ends.exited.cancel();
}

/// The gateway's answer to a request of a shared child's own: a `ping` is answered; anything
/// else (sampling, elicitation, roots) is declined as by a client without that capability, so
/// that the child does not wait for an answer that would never come.
fn answer_for_child(line: &str, id: Value) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct Asked {
        method: String,
    }
    let method =
        serde_json::from_str::<Asked>(line).map_or_else(|_| String::new(), |asked| asked.method);
    let answer = match method.as_str() {
        "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        _ => {
            tracing::debug!("a shared child asked {method} of the gateway: declined");
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!(
                "{method} is not available: a --stateless gateway's shared session has no one \
                 client to ask"
            )}})
        }
    };
    answer.to_string().into_bytes()
}

/// Writes `message` to a child as one line. A line break in JSON text outside a string is
/// whitespace (inside one it is escaped), so a client's pretty-printed message becomes a space.
pub(super) async fn write_line(
    stdin: &mut tokio::process::ChildStdin,
    message: &[u8],
) -> std::io::Result<()> {
    let mut line: Vec<u8> = message
        .iter()
        .map(|&byte| {
            if byte == b'\n' || byte == b'\r' {
                b' '
            } else {
                byte
            }
        })
        .collect();
    line.push(b'\n');
    stdin.write_all(&line).await?;
    stdin.flush().await
}

/// How a child's reader ends: it cancels `exited` when the child is gone, and stops the child
/// when `stop` is cancelled.
struct Ends {
    exited: CancellationToken,
    stop: CancellationToken,
}

/// How long a child has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Stops the child: SIGTERM, so that it can clean up, then SIGKILL if it is still there after
/// [`STOP_GRACE`].
pub(super) async fn stop(process: &mut tokio::process::Child) {
    let pid = process
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32));
    if let Some(pid) = pid
        && rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        && tokio::time::timeout(STOP_GRACE, process.wait())
            .await
            .is_ok()
    {
        return;
    }
    let _ = process.start_kill();
}

/// Logs the child's stderr (target `upstream`) and keeps its last line for the error that
/// reports its exit.
async fn keep_last_stderr(
    stderr: tokio::process::ChildStderr,
    child: u64,
    last: Arc<Mutex<String>>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "upstream", child, "{line}");
        *last.lock().unwrap_or_else(|poison| poison.into_inner()) = line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_whole_and_only_the_answer_is_rewritten() {
        let mut events = SseEvents::default();
        let rewrite = |data: &str| {
            data.contains("\"id\":7")
                .then(|| data.replace("\"id\":7", "\"id\":\"a\""))
        };
        let first = events.push(
            b"id: 1\ndata: {\"method\":\"notifications/progress\"}\n\nid: 2\nda",
            rewrite,
        );
        assert_eq!(
            first,
            Bytes::from("id: 1\ndata: {\"method\":\"notifications/progress\"}\n\n")
        );
        let second = events.push(b"ta: {\"id\":7,\"result\":{}}\r\n\r\n", rewrite);
        assert_eq!(
            second,
            Bytes::from("id: 2\ndata: {\"id\":\"a\",\"result\":{}}\n\n")
        );
        assert_eq!(events.push(b"", rewrite), Bytes::new());
    }
}
