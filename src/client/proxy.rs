//! The stdio bridge of `proxy`: a desktop MCP client speaks newline-delimited JSON-RPC on our
//! stdin/stdout, and each of its messages is POSTed to the server's Streamable HTTP endpoint with
//! the stored login's token; what the server answers (a JSON body, or the messages of an SSE
//! stream) and what it sends on its own (the GET stream) is written to stdout, one line each.
//!
//! # Why messages, not rmcp
//! The gateway (`src/gateway/`) solves the mirrored problem with rmcp on both sides, and has to
//! rebuild by hand what that costs: progress tokens renamed and mapped back, notifications put
//! back in order, every request kind routed one by one. A proxy has nothing to add to a message,
//! so it works one level down: bytes in, bytes out. Every request, response and notification,
//! including kinds this build has never heard of and server-to-client requests (sampling,
//! elicitation, roots) with their answers, passes unchanged, in the order each side wrote it.
//! The one rewrite is whitespace: a body pretty-printed over several lines becomes one line
//! (newlines outside strings are insignificant in JSON, and stdio frames by line).
//! What the message level must do itself is what the transport does, and it is here: the session
//! id and protocol version headers, SSE parsing, resuming a broken stream, the GET stream, DELETE.
//!
//! # What the proxy does on its own
//! - **Token**: the stored login's, refreshed before it expires (under the cross-process refresh
//!   lock); after a 401 it is refreshed once and the message sent again; when that cannot help,
//!   the login runs ([`oauth::login_once`]: at most one browser login per server across
//!   processes) and the message goes again. A 403 `insufficient_scope` gets a step-up the same
//!   way. A token given with `--token-env` is sent as is.
//! - **Session**: the `Mcp-Session-Id` and `MCP-Protocol-Version` of the client's `initialize`
//!   are kept here. When the server forgets the session (404 to a request carrying it), the
//!   proxy sends the client's original `initialize` again (its answer is not forwarded: the
//!   client has one), then `notifications/initialized`, and sends the message again, once.
//! - **Failures**: connection failures and 502/503/504 are retried with backoff; then a request
//!   gets a JSON-RPC error (code -32000) naming the URL, and the proxy keeps reading: a desktop
//!   client marks a server that exits as broken until it is restarted. Error messages carry the
//!   HTTP status, never the body (a careless server may echo the Authorization header back).
//! - **End**: stdin closed, the requests in flight get a few seconds, the session is ended with
//!   a DELETE, and the proxy exits 0.
//!
//! Ordering: the client's `initialize` is answered before the next line is read, and each
//! notification or response is POSTed before the next line is read (servers accept those with
//! 202 at once); requests run side by side, so a slow tool call does not hold up a ping or a
//! cancellation.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::home::Home;
use super::oauth::{self, Reauthorize};
use super::secret::Secret;
use crate::error::{Exit, ExitError, error_chain, exit_code_for};

/// The JSON-RPC error code of the errors the proxy makes itself (server unreachable, login
/// failed): the implementation-defined range of JSON-RPC 2.0 §5.1.
pub const PROXY_ERROR: i64 = -32000;

/// How often a connection failure or a 502/503/504 is retried, and the first wait (doubled each
/// time).
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// How long requests in flight may still finish after stdin is closed.
const DRAIN: Duration = Duration::from_secs(5);

/// How the proxy authenticates.
pub enum Credentials {
    /// `--token-env`: sent as is, never stored, never refreshed.
    Given(Secret),
    /// The stored login of the server (possibly none yet), and the token to start with.
    Stored {
        home: Home,
        token: Option<Secret>,
        /// `None` with `--no-login`.
        login: Option<Reauthorize>,
    },
}

/// What `proxy` was asked to do.
pub struct Options {
    /// The server URL, canonical (the key of its stored login).
    pub server_url: String,
    /// `--header`s, sent with every request.
    pub headers: HeaderMap,
    pub credentials: Credentials,
}

fn exit_error(exit: Exit, message: String) -> anyhow::Error {
    ExitError { exit, message }.into()
}

/// Runs the bridge until stdin is closed.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let (out, outgoing) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(write_lines(outgoing));
    let bridge = Arc::new(Bridge::new(options, out)?);
    let listener = tokio::spawn(bridge.clone().listen());

    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut tasks = tokio::task::JoinSet::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!("reading stdin failed ({error}); ending the session");
                break;
            }
        }
        while tasks.try_join_next().is_some() {}
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            bridge.send_line(
                json!({"jsonrpc": "2.0", "id": null, "error": {
                    "code": -32700, "message": "parse error: a line on stdin is not JSON"}})
                .to_string(),
            );
            continue;
        };
        let outline = Outline::of(&message);
        let body = text.to_owned();
        match outline.method.as_deref() {
            Some("initialize") if !outline.requests.is_empty() => {
                bridge.start_session(message.get("params").cloned());
                bridge.deliver(body, outline).await;
            }
            Some("notifications/initialized") => {
                bridge.deliver(body, outline).await;
                bridge.session_ready();
            }
            _ if outline.requests.is_empty() => bridge.deliver(body, outline).await,
            _ => {
                let bridge = bridge.clone();
                tasks.spawn(async move { bridge.deliver(body, outline).await });
            }
        }
    }

    let _ = tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    listener.abort();
    bridge.end_session().await;
    drop(bridge);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(())
}

/// Writes each message on its own line and flushes; ends when every sender is gone or stdout is
/// closed.
async fn write_lines(mut outgoing: mpsc::UnboundedReceiver<String>) {
    let mut stdout = tokio::io::stdout();
    while let Some(line) = outgoing.recv().await {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        if stdout.write_all(&bytes).await.is_err() || stdout.flush().await.is_err() {
            tracing::debug!("stdout is closed; dropping the client's messages");
            return;
        }
    }
}

/// What the proxy needs to know about a message from the client: its method, and the ids of
/// the requests in it (one, or several in a batch), which get an error if it cannot be sent.
#[derive(Debug, Default)]
struct Outline {
    method: Option<String>,
    requests: Vec<Value>,
}

impl Outline {
    fn of(message: &Value) -> Self {
        let request_id = |message: &Value| {
            message
                .get("method")
                .and(message.get("id"))
                .filter(|id| !id.is_null())
                .cloned()
        };
        match message {
            Value::Array(batch) => Outline {
                method: None,
                requests: batch.iter().filter_map(request_id).collect(),
            },
            single => Outline {
                method: single
                    .get("method")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                requests: request_id(single).into_iter().collect(),
            },
        }
    }
}

/// The remote session as the proxy knows it.
#[derive(Debug, Clone, Default)]
struct Session {
    id: Option<String>,
    protocol_version: Option<String>,
    /// Bumped at each new session (the client's `initialize`, a re-initialization).
    generation: u64,
    /// `notifications/initialized` has been sent in this session: the GET stream may open.
    ready: bool,
    /// The `params` of the client's `initialize`, sent again when the server forgets the session.
    initialize: Option<Value>,
}

struct Bridge {
    url: String,
    http: reqwest::Client,
    headers: HeaderMap,
    auth: Auth,
    session: std::sync::Mutex<Session>,
    /// The session generation, each time the session changes (for the GET stream).
    changes: watch::Sender<u64>,
    /// Held while re-initializing, so concurrent 404s re-initialize once.
    reinitializing: tokio::sync::Mutex<()>,
    out: mpsc::UnboundedSender<String>,
}

impl Bridge {
    fn new(options: Options, out: mpsc::UnboundedSender<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "scalekit-mcp/",
                env!("CARGO_PKG_VERSION"),
                " (proxy)"
            ))
            .build()?;
        let (changes, _) = watch::channel(0);
        Ok(Bridge {
            auth: Auth::new(options.server_url.clone(), options.credentials),
            url: options.server_url,
            http,
            headers: options.headers,
            session: std::sync::Mutex::new(Session::default()),
            changes,
            reinitializing: tokio::sync::Mutex::new(()),
            out,
        })
    }

    fn session(&self) -> Session {
        self.session
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn update_session<T>(&self, change: impl FnOnce(&mut Session) -> T) -> T {
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let result = change(&mut session);
        let generation = session.generation;
        drop(session);
        self.changes.send_replace(generation);
        result
    }

    fn send_line(&self, line: String) {
        let _ = self.out.send(line);
    }

    /// The client's `initialize`: a new session (the old one, if any, is left to expire).
    fn start_session(&self, params: Option<Value>) {
        self.update_session(|session| {
            *session = Session {
                generation: session.generation + 1,
                initialize: params,
                ..Session::default()
            };
        });
    }

    fn session_ready(&self) {
        self.update_session(|session| session.ready = true);
    }

    /// Sends one message from the client; a request that cannot be sent gets a JSON-RPC error.
    async fn deliver(&self, body: String, outline: Outline) {
        let initialize = outline.method.as_deref() == Some("initialize");
        if let Err(error) = self.send(&body, &outline.requests, initialize).await {
            tracing::warn!("{error:#}");
            for id in &outline.requests {
                self.send_line(
                    json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": PROXY_ERROR, "message": format!("scalekit-mcp proxy: {error:#}")}})
                    .to_string(),
                );
            }
        }
    }

    /// POSTs `body` and forwards the answer, with the token, session and retry rules of the
    /// module documentation.
    async fn send(&self, body: &str, requests: &[Value], initialize: bool) -> anyhow::Result<()> {
        let mut refusals = 0;
        let mut replayed = false;
        let mut failures = 0;
        loop {
            let (token, token_generation) = self.auth.current().await;
            let session = self.session();
            let session_id = session.id.as_deref().filter(|_| !initialize);
            let request = self
                .request(reqwest::Method::POST, token.as_ref(), session_id, &session)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if failures < RETRIES && is_transient(&error) => {
                    failures += 1;
                    backoff(failures, &self.url, &error_chain(&error)).await;
                    continue;
                }
                Err(error) => {
                    return Err(exit_error(
                        Exit::Unreachable,
                        format!("cannot reach {}: {}", self.url, error_chain(&error)),
                    ));
                }
            };
            let status = response.status();
            match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    let challenge = header_text(response.headers(), http::header::WWW_AUTHENTICATE);
                    let required = required_scopes(status, challenge.as_deref());
                    if status == StatusCode::FORBIDDEN && required.is_empty() {
                        return self.forward_error(response, requests).await;
                    }
                    if refusals >= 2 {
                        return Err(exit_error(
                            Exit::Auth,
                            format!(
                                "{} still refuses the token after a new one was fetched (HTTP {status}): \
                                 not trying again, so this cannot loop",
                                self.url
                            ),
                        ));
                    }
                    refusals += 1;
                    self.auth
                        .refused(token_generation, challenge.as_deref(), &required)
                        .await?;
                }
                StatusCode::NOT_FOUND if session_id.is_some() => {
                    let text = response.text().await.unwrap_or_default();
                    if is_json_rpc(&text) {
                        self.forward_text(&text, initialize);
                        return Ok(());
                    }
                    if replayed {
                        return Err(exit_error(
                            Exit::Unreachable,
                            format!(
                                "{} forgot the session again right after a new one was started",
                                self.url
                            ),
                        ));
                    }
                    replayed = true;
                    tracing::info!(
                        "{} forgot the MCP session (404); initializing again with the client's parameters",
                        self.url
                    );
                    self.reinitialize(session.generation).await?;
                }
                StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
                    if failures < RETRIES =>
                {
                    failures += 1;
                    backoff(failures, &self.url, &format!("HTTP {status}")).await;
                }
                status if status.is_success() => {
                    if initialize {
                        let id = header_text(response.headers(), "mcp-session-id");
                        self.update_session(|session| session.id = id);
                    }
                    return self.forward(response, requests, initialize).await;
                }
                _ => return self.forward_error(response, requests).await,
            }
        }
    }

    /// A request to the MCP endpoint with the headers every request carries.
    fn request(
        &self,
        method: reqwest::Method,
        token: Option<&Secret>,
        session_id: Option<&str>,
        session: &Session,
    ) -> reqwest::RequestBuilder {
        let mut headers = self.headers.clone();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(id) = session_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert("mcp-session-id", id);
        }
        if let Some(version) = session
            .protocol_version
            .as_deref()
            .filter(|_| session_id.is_some())
            .and_then(|version| HeaderValue::from_str(version).ok())
        {
            headers.insert("mcp-protocol-version", version);
        }
        if let Some(token) = token
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        {
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        self.http.request(method, &self.url).headers(headers)
    }

    /// Forwards a successful answer: a JSON body, or an SSE stream read until it has carried the
    /// answer of every request (resumed with `Last-Event-ID` when it breaks before).
    async fn forward(
        &self,
        response: reqwest::Response,
        requests: &[Value],
        initialize: bool,
    ) -> anyhow::Result<()> {
        let is_sse = header_text(response.headers(), http::header::CONTENT_TYPE)
            .is_some_and(|content_type| content_type.starts_with("text/event-stream"));
        if !is_sse {
            let text = response.text().await.map_err(|error| self.broken(&error))?;
            if !text.trim().is_empty() {
                self.forward_text(&text, initialize);
            }
            return Ok(());
        }
        let mut pending: Vec<Value> = requests.to_vec();
        let mut stream = SseReader::default();
        let mut response = response;
        let mut resumptions = 0;
        loop {
            let ended = stream
                .read(response, |data| {
                    self.forward_message(data, initialize, &mut pending);
                })
                .await;
            if pending.is_empty() {
                return Ok(());
            }
            let Some(last_event_id) = stream.last_event_id.clone() else {
                return Err(self.stream_ended(ended));
            };
            if resumptions >= RETRIES {
                return Err(self.stream_ended(ended));
            }
            resumptions += 1;
            tokio::time::sleep(stream.retry.unwrap_or(Duration::from_secs(1))).await;
            let (token, _) = self.auth.current().await;
            let session = self.session();
            let resumed = self
                .request(
                    reqwest::Method::GET,
                    token.as_ref(),
                    session.id.as_deref(),
                    &session,
                )
                .header("last-event-id", last_event_id)
                .send()
                .await;
            match resumed {
                Ok(next) if next.status().is_success() => response = next,
                Ok(next) => {
                    return Err(exit_error(
                        Exit::Unreachable,
                        format!(
                            "{} broke off the answer's stream and refused to resume it (HTTP {})",
                            self.url,
                            next.status()
                        ),
                    ));
                }
                Err(error) => return Err(self.broken(&error)),
            }
        }
    }

    fn stream_ended(&self, error: Option<reqwest::Error>) -> anyhow::Error {
        match error {
            Some(error) => self.broken(&error),
            None => exit_error(
                Exit::Unreachable,
                format!("{} ended the answer's stream without the answer", self.url),
            ),
        }
    }

    fn broken(&self, error: &reqwest::Error) -> anyhow::Error {
        exit_error(
            Exit::Unreachable,
            format!(
                "the connection to {} broke: {}",
                self.url,
                error_chain(error)
            ),
        )
    }

    /// One message of an SSE stream: forwarded, and crossed off `pending` when it answers one of
    /// the requests.
    fn forward_message(&self, data: &str, initialize: bool, pending: &mut Vec<Value>) {
        if let Ok(message) = serde_json::from_str::<Value>(data) {
            if message.get("method").is_none()
                && let Some(id) = message.get("id")
            {
                pending.retain(|pending| pending != id);
            }
            if initialize {
                self.note_initialize_result(&message);
            }
        }
        self.send_line(one_line(data));
    }

    /// A JSON body (one message or a batch), forwarded as one line.
    fn forward_text(&self, text: &str, initialize: bool) {
        if initialize && let Ok(message) = serde_json::from_str::<Value>(text) {
            self.note_initialize_result(&message);
        }
        self.send_line(one_line(text.trim()));
    }

    /// Keeps the protocol version the server chose, for the `MCP-Protocol-Version` header.
    fn note_initialize_result(&self, message: &Value) {
        if let Some(version) = message
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
        {
            let version = version.to_owned();
            self.update_session(|session| session.protocol_version = Some(version));
        }
    }

    /// An answer with an error status: a JSON-RPC body goes to the client as it is (rmcp answers
    /// an unknown method with 404 and the JSON-RPC error); anything else becomes an error naming
    /// the URL and the status.
    async fn forward_error(
        &self,
        response: reqwest::Response,
        requests: &[Value],
    ) -> anyhow::Result<()> {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if is_json_rpc(&text) {
            self.forward_text(&text, false);
            return Ok(());
        }
        let exit = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Exit::Auth,
            _ => Exit::Unreachable,
        };
        let what = if requests.is_empty() {
            "a message"
        } else {
            "the request"
        };
        Err(exit_error(
            exit,
            format!("{} refused {what} with HTTP {}", self.url, status),
        ))
    }

    /// A new session with the client's original `initialize` parameters, after the server
    /// forgot the session of generation `stale` (a restart, an expiry). Its answer stays here.
    async fn reinitialize(&self, stale: u64) -> anyhow::Result<()> {
        let _guard = self.reinitializing.lock().await;
        let session = self.session();
        if session.generation != stale {
            return Ok(());
        }
        let params = session.initialize.clone().ok_or_else(|| {
            exit_error(
                Exit::Unreachable,
                format!(
                    "{} forgot the MCP session, and the client never sent initialize through this proxy",
                    self.url
                ),
            )
        })?;
        let initialize = json!({
            "jsonrpc": "2.0",
            "id": format!("scalekit-mcp-proxy-reinitialize-{}", session.generation + 1),
            "method": "initialize",
            "params": params,
        });
        let mut refusals = 0;
        let response = loop {
            let (token, token_generation) = self.auth.current().await;
            let response = self
                .request(reqwest::Method::POST, token.as_ref(), None, &session)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(initialize.to_string())
                .send()
                .await
                .map_err(|error| self.broken(&error))?;
            if response.status() == StatusCode::UNAUTHORIZED && refusals < 2 {
                refusals += 1;
                let challenge = header_text(response.headers(), http::header::WWW_AUTHENTICATE);
                self.auth
                    .refused(token_generation, challenge.as_deref(), &[])
                    .await?;
                continue;
            }
            if !response.status().is_success() {
                return Err(exit_error(
                    Exit::Unreachable,
                    format!(
                        "{} refused to start a new session (HTTP {})",
                        self.url,
                        response.status()
                    ),
                ));
            }
            break response;
        };
        let id = header_text(response.headers(), "mcp-session-id");
        let mut version = None;
        let is_sse = header_text(response.headers(), http::header::CONTENT_TYPE)
            .is_some_and(|content_type| content_type.starts_with("text/event-stream"));
        let mut note = |text: &str| {
            if let Ok(message) = serde_json::from_str::<Value>(text)
                && let Some(found) = message
                    .pointer("/result/protocolVersion")
                    .and_then(Value::as_str)
            {
                version = Some(found.to_owned());
            }
        };
        if is_sse {
            SseReader::default().read(response, &mut note).await;
        } else {
            note(&response.text().await.unwrap_or_default());
        }
        let fresh = self.update_session(|session| {
            session.id = id;
            session.protocol_version = version.or(session.protocol_version.take());
            session.generation += 1;
            session.ready = false;
            session.clone()
        });
        let (token, _) = self.auth.current().await;
        let initialized = self
            .request(
                reqwest::Method::POST,
                token.as_ref(),
                fresh.id.as_deref(),
                &fresh,
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
            .send()
            .await;
        if let Err(error) = initialized {
            return Err(self.broken(&error));
        }
        self.session_ready();
        tracing::info!("a new MCP session with {} is under way", self.url);
        Ok(())
    }

    /// The GET stream: what the server sends outside any request (list changes, resource
    /// updates, log messages, its own requests). Reopened after a break, and for each new
    /// session; a server without one (405) is not asked again in that session.
    async fn listen(self: Arc<Self>) {
        let mut changes = self.changes.subscribe();
        loop {
            let session = self.session();
            if session.id.is_some() && session.ready {
                self.listen_in(&session).await;
            }
            // Wait for the next session (or a change of this one).
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Keeps the GET stream of one session open until the session changes or the server says
    /// it has none.
    async fn listen_in(&self, session: &Session) {
        let mut failures = 0u32;
        let mut stream = SseReader::default();
        loop {
            if self.session().generation != session.generation {
                return;
            }
            let (token, token_generation) = self.auth.current().await;
            let mut request = self.request(
                reqwest::Method::GET,
                token.as_ref(),
                session.id.as_deref(),
                session,
            );
            if let Some(id) = &stream.last_event_id {
                request = request.header("last-event-id", id.as_str());
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    failures = 0;
                    let mut nothing = Vec::new();
                    stream
                        .read(response, |data| {
                            self.forward_message(data, false, &mut nothing);
                        })
                        .await;
                    tokio::time::sleep(stream.retry.unwrap_or(Duration::from_secs(1))).await;
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && failures == 0 => {
                    failures += 1;
                    let challenge = header_text(response.headers(), http::header::WWW_AUTHENTICATE);
                    if self
                        .auth
                        .refused(token_generation, challenge.as_deref(), &[])
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(response) => {
                    tracing::debug!(
                        "{} keeps no stream for messages outside requests (GET: HTTP {})",
                        self.url,
                        response.status()
                    );
                    return;
                }
                Err(error) => {
                    failures += 1;
                    tracing::debug!(
                        "the GET stream of {} failed: {}",
                        self.url,
                        error_chain(&error)
                    );
                    let wait = FIRST_BACKOFF * 2u32.pow(failures.min(6));
                    tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
                }
            }
        }
    }

    /// Ends the remote session (DELETE), if there is one.
    async fn end_session(&self) {
        let session = self.session();
        let Some(id) = session.id.as_deref() else {
            return;
        };
        let (token, _) = self.auth.current().await;
        let request = self.request(reqwest::Method::DELETE, token.as_ref(), Some(id), &session);
        match tokio::time::timeout(Duration::from_secs(3), request.send()).await {
            Ok(Ok(response)) => {
                tracing::debug!("ended the MCP session (HTTP {})", response.status());
            }
            Ok(Err(error)) => {
                tracing::debug!("ending the MCP session failed: {}", error_chain(&error));
            }
            Err(_) => tracing::debug!("ending the MCP session timed out"),
        }
    }
}

fn header_text(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The scopes a 403 `insufficient_scope` challenge asks for (none for anything else).
fn required_scopes(status: StatusCode, challenge: Option<&str>) -> Vec<String> {
    let Some(challenge) = challenge.filter(|_| status == StatusCode::FORBIDDEN) else {
        return Vec::new();
    };
    if super::mcp::challenge_attribute(challenge, "error").as_deref() != Some("insufficient_scope")
    {
        return Vec::new();
    }
    super::mcp::challenge_attribute(challenge, "scope")
        .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether `text` is a JSON-RPC message or batch (rather than an error page).
fn is_json_rpc(text: &str) -> bool {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(message)) => message.get("jsonrpc").is_some(),
        Ok(Value::Array(batch)) => batch
            .first()
            .is_some_and(|first| first.get("jsonrpc").is_some()),
        _ => false,
    }
}

/// A JSON text on one line: line breaks outside strings are whitespace, and inside strings they
/// are always escaped, so replacing them by spaces keeps the same JSON.
fn one_line(text: &str) -> String {
    if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ")
    } else {
        text.to_owned()
    }
}

/// A failure worth another try: the connection, not the server's answer.
fn is_transient(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request()
}

async fn backoff(failures: u32, url: &str, why: &str) {
    let wait = FIRST_BACKOFF * 2u32.pow(failures - 1);
    tracing::info!(
        "{url} is unreachable ({why}); trying again in {}ms",
        wait.as_millis()
    );
    tokio::time::sleep(wait).await;
}

/// A Server-Sent Events reader (the WHATWG event stream format, as much as MCP uses): the data
/// of each event, and the last event id and retry delay for resuming.
#[derive(Debug, Default)]
struct SseReader {
    last_event_id: Option<String>,
    retry: Option<Duration>,
}

impl SseReader {
    /// Reads `response` to its end, calling `on_data` with each event's data (events without
    /// data, such as priming events, are skipped). Returns the error that ended it, if any.
    async fn read(
        &mut self,
        mut response: reqwest::Response,
        mut on_data: impl FnMut(&str),
    ) -> Option<reqwest::Error> {
        let mut buffer: Vec<u8> = Vec::new();
        let mut data = String::new();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return None,
                Err(error) => return Some(error),
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|&byte| byte == b'\n') {
                let raw: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\n', '\r']);
                self.line(line, &mut data, &mut on_data);
            }
        }
    }

    fn line(&mut self, line: &str, data: &mut String, on_data: &mut impl FnMut(&str)) {
        if line.is_empty() {
            let event = data.trim_end_matches('\n');
            if !event.trim().is_empty() {
                on_data(event);
            }
            data.clear();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id = Some(value.to_owned()),
            "retry" => {
                if let Ok(millis) = value.parse() {
                    self.retry = Some(Duration::from_millis(millis));
                }
            }
            _ => {}
        }
    }
}

/// The token the proxy sends, and what it does when the server refuses it.
struct Auth {
    server_url: String,
    source: Source,
    state: tokio::sync::Mutex<TokenState>,
}

enum Source {
    Given,
    Stored {
        home: Home,
        login: Option<Reauthorize>,
    },
}

#[derive(Default)]
struct TokenState {
    token: Option<Secret>,
    /// Bumped at each new token, so that concurrent refusals of one token renew it once.
    generation: u64,
    /// The token came from a forced refresh: another refusal asks for a login, not a refresh.
    refreshed: bool,
    /// The token came from a login (or step-up): another refusal is reported, not logged in
    /// again, so a server that refuses every token cannot loop the user through the browser.
    logged_in: bool,
}

impl Auth {
    fn new(server_url: String, credentials: Credentials) -> Self {
        let (source, token) = match credentials {
            Credentials::Given(token) => (Source::Given, Some(token)),
            Credentials::Stored { home, token, login } => (Source::Stored { home, login }, token),
        };
        Auth {
            server_url,
            source,
            state: tokio::sync::Mutex::new(TokenState {
                token,
                ..TokenState::default()
            }),
        }
    }

    /// The token to send now and its generation: the stored login's is refreshed when it is
    /// within a minute of expiry (a failed refresh is logged; the server's answer decides).
    async fn current(&self) -> (Option<Secret>, u64) {
        let mut state = self.state.lock().await;
        if let Source::Stored { home, .. } = &self.source
            && state.token.is_some()
        {
            let url = &self.server_url;
            let record = home
                .load()
                .ok()
                .and_then(|stored| stored.servers.get(url).cloned());
            if record.is_some_and(|record| !oauth::is_fresh(&record)) {
                match oauth::valid_access_token(home, url).await {
                    Ok(token) if state.token.as_ref() != Some(&token) => {
                        tracing::info!("refreshed the access token of {url} before it expired");
                        *state = TokenState {
                            token: Some(token),
                            generation: state.generation + 1,
                            ..TokenState::default()
                        };
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!("refreshing the access token of {url} failed: {error:#}")
                    }
                }
            }
        }
        (state.token.clone(), state.generation)
    }

    /// After the server refused the token of `generation` (401, or 403 asking for `required`
    /// scopes): a new token, unless another message got one since. An error says why there is
    /// none, with the command that fixes it.
    async fn refused(
        &self,
        generation: u64,
        challenge: Option<&str>,
        required: &[String],
    ) -> anyhow::Result<()> {
        let mut state = self.state.lock().await;
        if state.generation != generation {
            return Ok(());
        }
        let url = &self.server_url;
        let reason = challenge
            .and_then(|challenge| super::mcp::challenge_attribute(challenge, "error_description"))
            .map(|description| format!(" ({description})"))
            .unwrap_or_default();
        let Source::Stored { home, login } = &self.source else {
            return Err(exit_error(
                Exit::Auth,
                format!(
                    "{url} refused the token given with --token-env / SCALEKIT_MCP_TOKEN{reason} \
                     (a given token is used as is, never refreshed)"
                ),
            ));
        };
        let record = home.load()?.servers.get(url).cloned();
        let stored = record.is_some();
        let mut token = None;
        if required.is_empty() && stored && !state.refreshed && !state.logged_in {
            tracing::info!("{url} refused the access token; refreshing it once");
            match oauth::force_refresh(home, url).await {
                Ok(fresh) => token = Some(fresh),
                Err(error) if login.is_some() && exit_code_for(&error) == Exit::Auth => {
                    tracing::info!("the refresh failed ({error:#}); logging in");
                }
                Err(error) => return Err(error),
            }
        }
        let refreshed = token.is_some();
        let token = match token {
            Some(token) => token,
            None => {
                let Some(options) = login else {
                    // The scopes the login has and those asked for, as a step-up would ask: a
                    // login replaces the token, and the new one must still do what this one did.
                    let held = record.map(|record| record.scopes).unwrap_or_default();
                    let scopes = if required.is_empty() {
                        Vec::new()
                    } else {
                        oauth::scope_union(&held, required)
                    };
                    let command = std::iter::once(format!("scalekit-mcp login {url}"))
                        .chain(scopes.iter().map(|scope| format!("--scope {scope}")))
                        .collect::<Vec<_>>()
                        .join(" ");
                    return Err(exit_error(
                        Exit::Auth,
                        format!(
                            "{url} refused the token{reason}, and --no-login forbids logging in \
                             here: run {command}"
                        ),
                    ));
                };
                if state.logged_in {
                    return Err(exit_error(
                        Exit::Auth,
                        format!(
                            "{url} refused the token of the login made just now{reason}: not \
                             logging in again, so this cannot loop; ask the server's operator"
                        ),
                    ));
                }
                oauth::login_once(
                    home,
                    url,
                    state.token.as_ref(),
                    challenge,
                    required,
                    options,
                )
                .await?
            }
        };
        *state = TokenState {
            token: Some(token),
            generation: state.generation + 1,
            refreshed,
            logged_in: !refreshed,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_with_their_ids() {
        let mut reader = SseReader::default();
        let mut data = String::new();
        let mut seen = Vec::new();
        let stream = "id: 0\nretry: 3000\ndata:\n\n: comment\nevent: message\nid: 1\ndata: {\"a\":\ndata:  1}\n\ndata: {\"b\":2}\r\n\r\n";
        for line in stream.split('\n') {
            reader.line(
                line.trim_end_matches('\r'),
                &mut data,
                &mut |event: &str| seen.push(event.to_owned()),
            );
        }
        assert_eq!(seen, ["{\"a\":\n 1}", "{\"b\":2}"]);
        assert_eq!(reader.last_event_id.as_deref(), Some("1"));
        assert_eq!(reader.retry, Some(Duration::from_secs(3)));
        assert_eq!(one_line(&seen[0]), "{\"a\":  1}");
        assert_eq!(
            serde_json::from_str::<Value>(&one_line(&seen[0])).unwrap(),
            json!({"a": 1})
        );
    }

    #[test]
    fn outlines_find_the_requests() {
        let request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
        let outline = Outline::of(&request);
        assert_eq!(outline.method.as_deref(), Some("tools/list"));
        assert_eq!(outline.requests, [json!(7)]);
        let notification = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(Outline::of(&notification).requests.is_empty());
        let response = json!({"jsonrpc": "2.0", "id": "s-1", "result": {}});
        let outline = Outline::of(&response);
        assert!(outline.requests.is_empty() && outline.method.is_none());
        let batch = json!([request, notification, response, {"jsonrpc": "2.0", "id": "x", "method": "ping"}]);
        assert_eq!(Outline::of(&batch).requests, [json!(7), json!("x")]);
    }

    #[test]
    fn only_json_rpc_bodies_are_forwarded_as_answers() {
        assert!(is_json_rpc(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#
        ));
        assert!(is_json_rpc(r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#));
        assert!(!is_json_rpc("Session not found"));
        assert!(!is_json_rpc(r#"{"error":"not found"}"#));
    }

    #[test]
    fn only_insufficient_scope_asks_for_scopes() {
        let challenge = r#"Bearer error="insufficient_scope", scope="a b""#;
        assert_eq!(
            required_scopes(StatusCode::FORBIDDEN, Some(challenge)),
            ["a", "b"]
        );
        assert!(required_scopes(StatusCode::UNAUTHORIZED, Some(challenge)).is_empty());
        assert!(
            required_scopes(
                StatusCode::FORBIDDEN,
                Some(r#"Bearer error="invalid_token""#)
            )
            .is_empty()
        );
    }
}
