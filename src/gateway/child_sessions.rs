//! The stateful gateway in front of a command: each of the client's sessions is a child of its
//! own, started at `initialize`, and passed through message by message, without rmcp between.
//!
//! The client's messages go to the child's stdin as they came, each with a method carrying the
//! caller under `_meta["scalekit-mcp/caller"]` (the caller is in the child's environment too:
//! `MCP_FORWARDED_*`). What the child writes on stdout goes to the client on event streams, in
//! the order it was written:
//! - an answer on the stream of the request it answers, which it ends;
//! - progress on the stream of the request whose progress token it carries;
//! - requests and log messages the child sends on its own (sampling, elicitation, roots) on the
//!   stream of the latest request in flight, so that a client without a `GET` stream gets them;
//! - with no request in flight, and always for notifications about the session (list changes,
//!   resource updates), on the session's `GET` stream, kept for it (up to [`BACKLOG`]
//!   messages) until it opens.
//!
//! The protocol version, the capabilities and the ids are the child's and the client's own.
//!
//! A session here costs an entry in [`Sessions`], the child's pipes and one task that reads
//! them. It ends on `DELETE`, after `--session-idle-timeout` without a request or an open
//! stream, when its caller opens one too many, and at shutdown (the child gets SIGTERM, then
//! SIGKILL); and when the child exits: its requests in flight are answered with a JSON-RPC
//! error naming its exit status and its last stderr line, and the client's next request gets
//! 404 (it then starts a new session, with a new child).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderName, HeaderValue, StatusCode, header};
use rmcp::transport::streamable_http_server::session::SessionId;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::AsyncBufReadExt;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use super::Upstream;
use super::link::{GAVE_UP, LinkError, cancelled_notification, learn_tools, stop, write_line};
use super::pass_through::{
    MCP_SESSION_ID, Outgoing, Route, new_session_id, no_session_id, session_not_found,
};
use crate::auth::validate::Caller;
use crate::server::bad_gateway::rpc_error_response;
use crate::server::sessions::Sessions;

/// Messages the child sends on its own while the client has no `GET` stream open, kept for it;
/// past this, the oldest go.
const BACKLOG: usize = 64;

/// Messages waiting for a slow client on its `GET` stream; past this, new ones are dropped (and
/// logged) rather than holding up the answers to the session's requests.
const GET_STREAM_QUEUE: usize = 256;

/// How often an event stream with nothing to say sends a comment, so that proxies between the
/// client and here do not cut it as idle.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The first size of the buffers a child's output is read into (they grow for longer lines, up
/// to `--max-body-bytes`): most of an idle session's memory would otherwise be two 8 KiB buffers.
const READ_BUFFER: usize = 512;

/// The MCP endpoint of a stateful gateway in front of a command: see the module documentation.
/// Clones share everything.
#[derive(Clone)]
pub struct ChildSessions {
    shared: Arc<Shared>,
}

struct Shared {
    upstream: Arc<Upstream>,
    sessions: Arc<Sessions>,
    children: Mutex<HashMap<SessionId, Arc<ChildSession>>>,
    max_body_bytes: usize,
    /// Set at shutdown, when children exiting is expected.
    shutting_down: AtomicBool,
}

/// One session's child, as the client side sees it; the task that reads the child holds the
/// process itself.
struct ChildSession {
    stdin: tokio::sync::Mutex<ChildStdin>,
    routes: Arc<Mutex<Routes>>,
    /// Cancelled when the session ends here (or this is dropped, as when its `initialize`
    /// fails): the reader stops the child.
    stop: CancellationToken,
}

/// Where what the child writes goes.
#[derive(Default)]
struct Routes {
    /// The client's requests waiting for their answers, oldest first.
    waiting: Vec<Waiting>,
    /// The session's `GET` stream, while one is open.
    stream: Option<mpsc::Sender<Bytes>>,
    /// What the child sent on its own while no stream could take it.
    backlog: VecDeque<Bytes>,
    /// Why the child is gone, once it is.
    gone: Option<String>,
}

/// A client request in flight: its id and progress token (each as JSON text), and its stream.
struct Waiting {
    id: String,
    progress_token: Option<String>,
    /// A `tools/list`, whose answer tells the metrics the child's tools.
    lists_tools: bool,
    events: mpsc::UnboundedSender<Event>,
}

/// Why a request cannot wait for an answer.
enum NotExpected {
    /// The child is gone.
    Gone,
    /// Another request with its id is waiting.
    IdInFlight,
}

/// What a request's stream gets.
enum Event {
    /// A message from the child, one line of JSON.
    Message(Bytes),
    /// The child is gone, for this reason, before answering.
    Gone(String),
}

impl Drop for ChildSession {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl ChildSessions {
    /// The endpoint for the command `upstream`, holding its sessions in `sessions`.
    pub fn new(upstream: Arc<Upstream>, sessions: Arc<Sessions>, max_body_bytes: usize) -> Self {
        let shared = Arc::new(Shared {
            upstream,
            sessions: sessions.clone(),
            children: Mutex::default(),
            max_body_bytes,
            shutting_down: AtomicBool::new(false),
        });
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        sessions.when_let_go(Box::new(move |id| {
            if let Some(shared) = weak.upgrade() {
                shared.end(id);
            }
        }));
        Self { shared }
    }

    /// Marks the start of shutdown: the children are about to be stopped, and their exits are
    /// not errors.
    pub fn shutting_down(&self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
    }

    /// The MCP endpoint this answers at, below the guard.
    pub fn endpoint(&self) -> crate::server::OwnEndpoint {
        super::own_endpoint(self.shared.clone(), Shared::answer)
    }
}

impl Shared {
    async fn answer(self: Arc<Self>, request: Request) -> Response {
        match Route::of(&request) {
            Route::Open => self.open(request).await,
            Route::Post(ours) => self.post(&ours, request).await,
            Route::Stream(ours) => self.stream(&ours),
            Route::Delete(ours) => self.delete(&ours).await,
            Route::Refused(refusal) => refusal,
        }
    }

    fn session(&self, ours: &SessionId) -> Option<Arc<ChildSession>> {
        lock(&self.children).get(ours).cloned()
    }

    /// A `POST` without a session: an `initialize` starts a child and, once it has answered,
    /// opens a session.
    async fn open(self: Arc<Self>, request: Request) -> Response {
        let outgoing = match Outgoing::read(request, self.max_body_bytes).await {
            Ok(outgoing) => outgoing,
            Err(refusal) => return refusal,
        };
        if outgoing.method.as_deref() != Some("initialize") || !outgoing.is_request() {
            return rpc_error_response(
                StatusCode::BAD_REQUEST,
                outgoing.id,
                -32600,
                "Bad Request: no session: start one with an initialize request, then send the \
                 Mcp-Session-Id header it answers with"
                    .into(),
            );
        }
        let Some(ours) = new_session_id() else {
            return no_session_id(outgoing.id);
        };
        let deadline = Instant::now() + self.upstream.timeout;
        let opened = match self.start(&ours, outgoing.caller.as_deref()) {
            Ok(child) => child.initialize(&self.upstream, &outgoing, deadline).await,
            Err(error) => Err(error),
        };
        let (child, messages) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                tracing::error!("{}", error.message());
                self.upstream.health.unreachable(error.message());
                return error.response(outgoing.id);
            }
        };
        self.upstream.health.reachable();
        let refused = messages.last().is_some_and(|answer| is_error(answer));
        let mut response = event_stream(futures::stream::iter(messages.into_iter().map(frame)));
        if refused {
            // The child refused to initialize: no session, and the child stops with `child`.
            return response;
        }
        lock(&self.children).insert(ours.clone(), child);
        self.sessions.hold_passed_through(ours.clone());
        if let Ok(value) = HeaderValue::from_str(&ours) {
            response.headers_mut().insert(MCP_SESSION_ID, value);
        }
        response
    }

    /// Starts the command for session `ours`, with `caller` in its environment, and the task
    /// that reads it.
    fn start(
        self: &Arc<Self>,
        ours: &SessionId,
        caller: Option<&Caller>,
    ) -> Result<Arc<ChildSession>, LinkError> {
        let super::upstream::Target::Command { program, args } = &self.upstream.target else {
            return Err(LinkError::bad_gateway(format!(
                "{} is not a command",
                self.upstream.describe()
            )));
        };
        let mut command = super::upstream::command(program, args, caller);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let cannot_start = |error: String| {
            LinkError::bad_gateway(format!(
                "cannot start {}: {error}",
                self.upstream.describe()
            ))
        };
        let mut process = command
            .spawn()
            .map_err(|error| cannot_start(error.to_string()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            return Err(cannot_start("it started without pipes".into()));
        };
        let child = Arc::new(ChildSession {
            stdin: tokio::sync::Mutex::new(stdin),
            routes: Arc::default(),
            stop: CancellationToken::new(),
        });
        let reader = Reader {
            counted: process.id().map(|pid| self.upstream.children.add(pid)),
            process,
            routes: child.routes.clone(),
            stop: child.stop.clone(),
            shared: Arc::downgrade(self),
            ours: ours.clone(),
            number: self.upstream.next_session(),
        };
        tokio::spawn(reader.run(stdout, stderr, self.max_body_bytes));
        Ok(child)
    }

    /// A `POST` in session `ours`: a request gets the child's answer on an event stream;
    /// anything else is written to the child and accepted.
    async fn post(&self, ours: &SessionId, request: Request) -> Response {
        let outgoing = match Outgoing::read(request, self.max_body_bytes).await {
            Ok(outgoing) => outgoing,
            Err(refusal) => return refusal,
        };
        let Some(child) = self.session(ours) else {
            return session_not_found();
        };
        if !outgoing.is_request() {
            return match child.write(&self.upstream, &outgoing.body).await {
                Ok(()) => StatusCode::ACCEPTED.into_response(),
                Err(_) if child.is_gone() => self.ended_with_child(ours).await,
                Err(error) => error.response(Value::Null),
            };
        }
        let events = match child.expect(&outgoing) {
            Ok(events) => events,
            Err(NotExpected::Gone) => return self.ended_with_child(ours).await,
            Err(NotExpected::IdInFlight) => {
                let message = format!(
                    "a request with id {} is already in flight in this session",
                    outgoing.id
                );
                return rpc_error_response(StatusCode::BAD_REQUEST, outgoing.id, -32600, message);
            }
        };
        if let Err(error) = child.write(&self.upstream, &outgoing.body).await {
            return error.response(outgoing.id);
        }
        child
            .answer_stream(&self.upstream, outgoing.id, events)
            .await
    }

    /// 404 for session `ours`, whose child is gone: the session ends now if the child's reader
    /// has not ended it yet (its child exited just as the session opened).
    async fn ended_with_child(&self, ours: &SessionId) -> Response {
        if lock(&self.children).remove(ours).is_some() {
            self.sessions.forget(ours).await;
        }
        session_not_found()
    }

    /// The `GET` stream of session `ours`: what the child sends on its own while no request is
    /// in flight. A new one replaces the one open before (whose connection may be gone).
    fn stream(&self, ours: &SessionId) -> Response {
        let Some(child) = self.session(ours) else {
            return session_not_found();
        };
        let (sender, mut receiver) = mpsc::channel(GET_STREAM_QUEUE);
        {
            let mut routes = lock(&child.routes);
            for message in routes.backlog.drain(..) {
                // A fresh queue is larger than the backlog: this always fits.
                let _ = sender.try_send(message);
            }
            routes.stream = Some(sender);
        }
        let messages = futures::stream::poll_fn(move |context| receiver.poll_recv(context));
        event_stream(with_keep_alive(messages.map(frame)))
    }

    /// `DELETE`: session `ours` ends, and its child stops.
    async fn delete(&self, ours: &SessionId) -> Response {
        let Some(child) = lock(&self.children).remove(ours) else {
            return session_not_found();
        };
        child.stop.cancel();
        self.sessions.forget(ours).await;
        StatusCode::ACCEPTED.into_response()
    }

    /// The end of session `id` here, whatever the cause: its child stops (this runs under the
    /// sessions' lock, and only cancels a token).
    fn end(&self, id: &SessionId) {
        if let Some(child) = lock(&self.children).remove(id) {
            child.stop.cancel();
        }
    }
}

impl ChildSession {
    /// Writes `message` to the child, or says why it cannot take it: a child that stops reading
    /// its stdin holds a write up for `--upstream-timeout` at most.
    async fn write(&self, upstream: &Upstream, message: &[u8]) -> Result<(), LinkError> {
        let written = tokio::time::timeout(upstream.timeout, async {
            let mut stdin = self.stdin.lock().await;
            write_line(&mut stdin, message).await
        });
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                let gone = lock(&self.routes).gone.clone();
                Err(LinkError::bad_gateway(gone.unwrap_or_else(|| {
                    format!("{} closed its stdin", upstream.describe())
                })))
            }
            Err(_) => Err(LinkError::gateway_timeout(format!(
                "{} did not read its stdin within {} s (--upstream-timeout)",
                upstream.describe(),
                upstream.timeout.as_secs()
            ))),
        }
    }

    fn is_gone(&self) -> bool {
        lock(&self.routes).gone.is_some()
    }

    /// Files the client's request `outgoing` as waiting for its answer, which (with whatever
    /// goes on its stream) the returned receiver gets.
    fn expect(&self, outgoing: &Outgoing) -> Result<mpsc::UnboundedReceiver<Event>, NotExpected> {
        let id = outgoing.id.to_string();
        let (events, receiver) = mpsc::unbounded_channel();
        let mut routes = lock(&self.routes);
        if routes.gone.is_some() {
            return Err(NotExpected::Gone);
        }
        // A request whose client left keeps waiting for its answer (leaving is not cancelling),
        // but nothing need reach it any more, and its id may be used again.
        routes.waiting.retain(|waiting| !waiting.events.is_closed());
        if routes.waiting.iter().any(|waiting| waiting.id == id) {
            return Err(NotExpected::IdInFlight);
        }
        routes.waiting.push(Waiting {
            id,
            progress_token: progress_token_of(&outgoing.body),
            lists_tools: outgoing.method.as_deref() == Some("tools/list"),
            events,
        });
        Ok(receiver)
    }

    /// Gives up on request `id`: it leaves the waiting list, and the child hears it is
    /// cancelled (as the MCP spec has a client do with a request it stops waiting for).
    async fn give_up(&self, upstream: &Upstream, id: &Value) {
        let key = id.to_string();
        lock(&self.routes)
            .waiting
            .retain(|waiting| waiting.id != key);
        let cancelled = cancelled_notification(id.clone(), Some(GAVE_UP.into()));
        let _ = self.write(upstream, &cancelled).await;
    }

    /// Sends the client's `initialize` and waits, until `deadline`, for everything the child
    /// sends up to its answer (the last message).
    async fn initialize(
        self: Arc<Self>,
        upstream: &Upstream,
        outgoing: &Outgoing,
        deadline: Instant,
    ) -> Result<(Arc<Self>, Vec<Bytes>), LinkError> {
        let Ok(mut events) = self.expect(outgoing) else {
            let gone = lock(&self.routes).gone.clone();
            return Err(LinkError::bad_gateway(gone.unwrap_or_else(|| {
                format!("{} exited at once", upstream.describe())
            })));
        };
        self.write(upstream, &outgoing.body).await?;
        let mut messages = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Message(message))) => messages.push(message),
                // The answer came, and ended the request's stream.
                Ok(None) => return Ok((self, messages)),
                Ok(Some(Event::Gone(reason))) => return Err(LinkError::bad_gateway(reason)),
                Err(_) => {
                    return Err(LinkError::gateway_timeout(format!(
                        "{} did not answer initialize within {} s (--upstream-timeout)",
                        upstream.describe(),
                        upstream.timeout.as_secs()
                    )));
                }
            }
        }
    }

    /// The answer to request `id`, on an event stream that starts once the child has sent the
    /// first message for it: until then, a failure is the client's 502 (504 past
    /// `--upstream-timeout`). Each later wait is bounded by `--upstream-timeout` too, reset by
    /// every message.
    async fn answer_stream(
        self: Arc<Self>,
        upstream: &Arc<Upstream>,
        id: Value,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> Response {
        let first = match tokio::time::timeout(upstream.timeout, events.recv()).await {
            Ok(Some(Event::Message(message))) => message,
            Ok(Some(Event::Gone(reason))) => return LinkError::bad_gateway(reason).response(id),
            Ok(None) => {
                let gone = lock(&self.routes).gone.clone();
                return LinkError::bad_gateway(
                    gone.unwrap_or_else(|| format!("{} exited", upstream.describe())),
                )
                .response(id);
            }
            Err(_) => {
                self.give_up(upstream, &id).await;
                return LinkError::timed_out(upstream).response(id);
            }
        };
        let rest = Rest {
            events,
            child: Arc::downgrade(&self),
            upstream: upstream.clone(),
            id,
            deadline: Instant::now() + upstream.timeout,
            finished: false,
        };
        let stream = futures::stream::once(async move { frame(first) }).chain(rest.into_stream());
        event_stream(stream)
    }
}

/// The rest of a request's stream, after its first message.
struct Rest {
    events: mpsc::UnboundedReceiver<Event>,
    /// Weak: a stream still open must not keep a session's child running after its end.
    child: Weak<ChildSession>,
    upstream: Arc<Upstream>,
    id: Value,
    /// When the request is given up on, unless the child sends something for it first.
    deadline: Instant,
    finished: bool,
}

impl Rest {
    fn into_stream(self) -> impl futures::Stream<Item = Bytes> + Send {
        futures::stream::unfold(self, |mut rest| async move {
            let event = rest.next_event().await?;
            Some((event, rest))
        })
    }

    /// The next event to send: a message, a keep-alive comment, or a JSON-RPC error for the
    /// request that ends the stream; `None` once it has ended.
    async fn next_event(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let wake = self.deadline.min(Instant::now() + KEEP_ALIVE);
        match tokio::time::timeout_at(wake, self.events.recv()).await {
            Ok(Some(Event::Message(message))) => {
                self.deadline = Instant::now() + self.upstream.timeout;
                Some(frame(message))
            }
            Ok(Some(Event::Gone(reason))) => Some(self.fail(reason)),
            Ok(None) => None,
            Err(_) if Instant::now() < self.deadline => Some(keep_alive()),
            Err(_) => {
                if let Some(child) = self.child.upgrade() {
                    child.give_up(&self.upstream, &self.id).await;
                }
                let message = LinkError::timed_out(&self.upstream).message().to_owned();
                Some(self.fail(message))
            }
        }
    }

    /// The event answering the request with an error, which ends the stream.
    fn fail(&mut self, message: String) -> Bytes {
        self.finished = true;
        let error = serde_json::json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": -32603, "message": message},
        });
        frame(Bytes::from(error.to_string()))
    }
}

/// The task that reads one session's child: its stdout is routed ([`Routes::route`]), its
/// stderr logged under the session's number. It owns the process: it stops it when the
/// session ends here, and when the child exits on its own it answers the requests in flight
/// and ends the session.
struct Reader {
    process: tokio::process::Child,
    /// The child counted among the upstream's, for shutdown.
    counted: Option<super::upstream::Child>,
    routes: Arc<Mutex<Routes>>,
    stop: CancellationToken,
    shared: Weak<Shared>,
    ours: SessionId,
    number: u64,
}

impl Reader {
    async fn run(mut self, stdout: ChildStdout, stderr: ChildStderr, max_line: usize) {
        let mut out = FramedRead::with_capacity(
            stdout,
            LinesCodec::new_with_max_length(max_line),
            READ_BUFFER,
        );
        let mut err = tokio::io::BufReader::with_capacity(READ_BUFFER, stderr).lines();
        let mut err_open = true;
        let mut last_stderr = String::new();
        let upstream = self.shared.upgrade().map(|shared| shared.upstream.clone());
        let mut garbage = None;
        let stopped = loop {
            tokio::select! {
                line = out.next() => match line {
                    None => break false,
                    Some(Err(error)) => {
                        garbage = Some(format!("wrote a line it should not have ({error})"));
                        break false;
                    }
                    Some(Ok(line)) => {
                        if let Err(problem) = lock(&self.routes).route(line, upstream.as_deref()) {
                            garbage = Some(problem);
                            break false;
                        }
                    }
                },
                line = err.next_line(), if err_open => match line {
                    Ok(Some(line)) => self.log_stderr(line, &mut last_stderr),
                    _ => err_open = false,
                },
                () = self.stop.cancelled() => break true,
            }
        };
        if stopped {
            stop(&mut self.process).await;
            tracing::debug!(session = self.number, "stopped a session's child");
            self.counted.take();
            return;
        }
        if garbage.is_some() {
            let _ = self.process.start_kill();
        }
        // A child's last stderr lines can come after its stdout closed.
        if err_open {
            let rest = async {
                while let Ok(Some(line)) = err.next_line().await {
                    self.log_stderr(line, &mut last_stderr);
                }
            };
            let _ = tokio::time::timeout(Duration::from_millis(500), rest).await;
        }
        let reason = self
            .exit_reason(upstream.as_deref(), garbage, &last_stderr)
            .await;
        self.counted.take();
        self.gone(reason).await;
    }

    fn log_stderr(&self, line: String, last: &mut String) {
        tracing::info!(target: "upstream", session = self.number, "{line}");
        *last = line;
    }

    /// Waits for the child, and says how it ended.
    async fn exit_reason(
        &mut self,
        upstream: Option<&Upstream>,
        garbage: Option<String>,
        last_stderr: &str,
    ) -> String {
        let status = self
            .process
            .wait()
            .await
            .map(|status| status.to_string())
            .unwrap_or_else(|error| error.to_string());
        let upstream = upstream.map_or_else(|| "the upstream".into(), Upstream::describe);
        let mut reason = match garbage {
            Some(garbage) => format!("{upstream} {garbage}; stopped it"),
            None => format!("{upstream} exited ({status})"),
        };
        if !last_stderr.is_empty() {
            reason.push_str(&format!("; its last stderr line: {last_stderr}"));
        }
        reason
    }

    /// The child is gone: its requests in flight get `reason`, its `GET` stream ends, and so
    /// does its session.
    async fn gone(self, reason: String) {
        let shared = self.shared.upgrade();
        // Out of the map first: from now on the session's requests get 404.
        let ended = shared
            .as_ref()
            .and_then(|shared| lock(&shared.children).remove(&self.ours));
        {
            let mut routes = lock(&self.routes);
            for waiting in routes.waiting.drain(..) {
                let _ = waiting.events.send(Event::Gone(reason.clone()));
            }
            routes.stream = None;
            routes.backlog.clear();
            routes.gone = Some(reason.clone());
        }
        let Some(shared) = shared else {
            return;
        };
        match shared.shutting_down.load(Ordering::Relaxed) {
            true => tracing::debug!(session = self.number, "{reason}"),
            false => tracing::error!(session = self.number, "{reason}; its session ends"),
        }
        if ended.is_some() {
            shared.sessions.forget(&self.ours).await;
        }
    }
}

/// What the reader needs of a line from the child.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Where a line from the child goes.
enum Destination {
    /// The answer to the client's request with this id (JSON text).
    Answer(String),
    /// Progress, for the request that asked with this token (JSON text), if any did.
    Progress(Option<String>),
    /// A request or log message the child sends on its own: most likely about the request in
    /// flight, if there is one.
    Related,
    /// A notification about the session (a list changed, a resource updated): the `GET`
    /// stream's.
    Unsolicited,
    /// An answer with no id: nobody's.
    Nobody,
}

impl Routes {
    /// Sends `line` where it goes; an error describes a line that is not JSON-RPC.
    fn route(&mut self, line: String, upstream: Option<&Upstream>) -> Result<(), String> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let Some(destination) = destination_of(&line) else {
            let start: String = line.chars().take(80).collect();
            return Err(format!(
                "wrote something that is not JSON-RPC on stdout: {start:?}"
            ));
        };
        let message = Bytes::from(line);
        match destination {
            Destination::Answer(id) => {
                let Some(position) = self.waiting.iter().position(|waiting| waiting.id == id)
                else {
                    tracing::debug!(id, "the upstream answered a request no client waits for");
                    return Ok(());
                };
                let waiting = self.waiting.remove(position);
                if waiting.lists_tools
                    && let Some(upstream) = upstream
                {
                    learn_tools(upstream, &message);
                }
                let _ = waiting.events.send(Event::Message(message));
            }
            Destination::Progress(token) => {
                // Progress for no request the client asked to follow is not the client's
                // business.
                let waiting = self
                    .waiting
                    .iter()
                    .find(|waiting| token.is_some() && waiting.progress_token == token);
                if let Some(waiting) = waiting {
                    let _ = waiting.events.send(Event::Message(message));
                }
            }
            Destination::Related => self.send_related(message),
            Destination::Unsolicited => self.send_unsolicited(message),
            Destination::Nobody => {
                tracing::debug!("the upstream sent an answer without an id");
            }
        }
        Ok(())
    }

    /// A request or log message the child sent on its own: on the stream of the latest request
    /// in flight (it most likely belongs to it), so that a client without a `GET` stream gets
    /// it too; with none in flight, as [`Self::send_unsolicited`].
    fn send_related(&mut self, message: Bytes) {
        let message = match self.waiting.last() {
            Some(latest) => match latest.events.send(Event::Message(message)) {
                Ok(()) => return,
                Err(mpsc::error::SendError(Event::Message(message))) => message,
                Err(_) => return,
            },
            None => message,
        };
        self.send_unsolicited(message);
    }

    /// A message for the `GET` stream, kept for one while none is open.
    fn send_unsolicited(&mut self, message: Bytes) {
        let message = match &self.stream {
            Some(stream) => match stream.try_send(message) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        "a client reads its GET stream too slowly: dropped a message the \
                         upstream sent on its own"
                    );
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(message)) => {
                    self.stream = None;
                    message
                }
            },
            None => message,
        };
        if self.backlog.len() == BACKLOG {
            self.backlog.pop_front();
            tracing::debug!("no GET stream took the oldest message the upstream sent on its own");
        }
        self.backlog.push_back(message);
    }
}

/// Where `line` goes, or `None` if it is not a JSON-RPC message.
fn destination_of(line: &str) -> Option<Destination> {
    let head: Head = serde_json::from_str(line).ok()?;
    Some(match (head.method.as_deref(), head.id) {
        (None, Some(id)) => Destination::Answer(json_text(id)),
        (None, None) => Destination::Nobody,
        (Some("notifications/progress"), _) => {
            #[derive(Deserialize)]
            struct Progress<'a> {
                #[serde(borrow, rename = "progressToken")]
                progress_token: &'a RawValue,
            }
            let token = head
                .params
                .and_then(|params| serde_json::from_str::<Progress>(params.get()).ok())
                .map(|progress| json_text(progress.progress_token));
            Destination::Progress(token)
        }
        // Server-to-client requests need an answer from the client now; log messages are most
        // often the request's own.
        (Some(_), Some(_)) | (Some("notifications/message"), None) => Destination::Related,
        (Some(_), None) => Destination::Unsolicited,
    })
}

/// A JSON value as compact text, the same however it was spaced: ids and progress tokens are
/// compared by it.
fn json_text(raw: &RawValue) -> String {
    serde_json::from_str::<Value>(raw.get())
        .map(|value| value.to_string())
        .unwrap_or_else(|_| raw.get().to_owned())
}

/// The progress token a client's message asks for (`params._meta.progressToken`), as JSON text.
fn progress_token_of(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        params: Params<'a>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Meta<'a>,
    }
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, rename = "progressToken")]
        progress_token: &'a RawValue,
    }
    let message: Message = serde_json::from_slice(message).ok()?;
    Some(json_text(message.params.meta.progress_token))
}

/// Whether `answer` is a JSON-RPC error.
fn is_error(answer: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Answer>(answer).is_ok_and(|answer| answer.error.is_some())
}

/// One message as a server-sent event.
fn frame(message: Bytes) -> Bytes {
    let mut event = Vec::with_capacity(message.len() + 8);
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(&message);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

/// `events`, with a keep-alive comment whenever [`KEEP_ALIVE`] passes without one.
fn with_keep_alive(
    events: impl futures::Stream<Item = Bytes> + Send + Unpin + 'static,
) -> impl futures::Stream<Item = Bytes> + Send {
    futures::stream::unfold(events, |mut events| async move {
        match tokio::time::timeout(KEEP_ALIVE, events.next()).await {
            Ok(Some(event)) => Some((event, events)),
            Ok(None) => None,
            Err(_) => Some((keep_alive(), events)),
        }
    })
}

/// A `200` event stream of `events`.
fn event_stream(events: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response {
    let body = Body::from_stream(events.map(Ok::<Bytes, std::convert::Infallible>));
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_the_request_they_answer_or_follow() {
        let answer = r#"{"jsonrpc":"2.0","id": "a","result":{}}"#;
        assert!(matches!(destination_of(answer), Some(Destination::Answer(id)) if id == r#""a""#));
        let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":1}}"#;
        assert!(
            matches!(destination_of(progress), Some(Destination::Progress(Some(token))) if token == "7")
        );
        let sampling = r#"{"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{}}"#;
        assert!(matches!(
            destination_of(sampling),
            Some(Destination::Related)
        ));
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;
        assert!(matches!(destination_of(log), Some(Destination::Related)));
        let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        assert!(matches!(
            destination_of(changed),
            Some(Destination::Unsolicited)
        ));
        let nobody = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#;
        assert!(matches!(destination_of(nobody), Some(Destination::Nobody)));
        assert!(destination_of("Listening on stdio").is_none());
    }

    #[test]
    fn a_progress_token_is_read_from_the_requests_meta() {
        let request = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"progressToken": "p-1"}}}"#;
        assert_eq!(progress_token_of(request).as_deref(), Some(r#""p-1""#));
        let without = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
        assert_eq!(progress_token_of(without), None);
    }

    #[test]
    fn messages_sent_on_its_own_wait_for_a_stream_and_the_oldest_give_way() {
        let mut routes = Routes::default();
        for number in 0..BACKLOG + 3 {
            routes.send_related(Bytes::from(number.to_string()));
        }
        assert_eq!(routes.backlog.len(), BACKLOG);
        assert_eq!(routes.backlog.front().unwrap(), &Bytes::from("3"));
        let (events, mut receiver) = mpsc::unbounded_channel();
        routes.waiting.push(Waiting {
            id: "1".into(),
            progress_token: None,
            lists_tools: false,
            events,
        });
        routes.send_related(Bytes::from_static(b"log"));
        assert!(
            matches!(receiver.try_recv(), Ok(Event::Message(message)) if message == "log"),
            "a request in flight takes it"
        );
        routes.send_unsolicited(Bytes::from_static(b"changed"));
        assert!(
            receiver.try_recv().is_err(),
            "a notification about the session is not the request's"
        );
        assert_eq!(routes.backlog.back().unwrap(), &Bytes::from("changed"));
    }
}
