//! The stateful gateway in front of an HTTP upstream: each of the client's sessions is passed
//! through to one upstream session of its own, at the HTTP level, without rmcp in between.
//!
//! An upstream session belongs to one client session, so nothing needs rewriting but what the
//! gateway must change: the `Mcp-Session-Id` (the client sees the gateway's, the upstream its
//! own, and neither learns the other's), the caller (put under `_meta["scalekit-mcp/caller"]`
//! of every message with a method, and in `X-Forwarded-*` headers; the client's `Authorization`
//! and `X-Forwarded-*` never pass), and the gateway's own credentials for the upstream.
//! Requests, answers, event streams (a `POST`'s and the `GET` stream, with their event ids for
//! resuming), the upstream's own requests (sampling, elicitation, roots) and the client's
//! answers to them pass as they were written, in the order they were written: the protocol
//! version and capabilities are the upstream's and the client's own.
//!
//! A session here costs an entry in [`Sessions`] and the upstream's id: no rmcp worker, no
//! client. The guard binds it to its caller and counts it against the caps like any other; it
//! ends on `DELETE`, after `--session-idle-timeout` without a request or an open stream, when
//! its caller opens one too many, when the upstream forgets it (a `404` from upstream, which
//! the client gets too and answers by starting a new session), and at shutdown. Each end is
//! passed on as a `DELETE` upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use rmcp::transport::streamable_http_server::session::SessionId;
use serde_json::Value;

use super::Upstream;
use super::http_client::UpstreamResponse;
use super::link::{
    GAVE_UP, Link, Passed, Routing, cancelled_notification, learn_tools, pass_events,
};
use super::message::Message;
use super::stateless::{parse_error, read_message, value_of};
use crate::auth::validate::Caller;
use crate::server::bad_gateway::rpc_error_response;
use crate::server::sessions::Sessions;

pub(super) const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The client's headers that reach the upstream as they are.
const PASSED_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("mcp-protocol-version"),
    HeaderName::from_static("last-event-id"),
];

/// The MCP endpoint of a stateful gateway in front of an HTTP upstream: see the module
/// documentation. Clones share everything.
#[derive(Clone)]
pub struct PassThrough {
    shared: Arc<Shared>,
}

struct Shared {
    link: Link,
    sessions: Arc<Sessions>,
    /// Each session's id at the upstream (`None`: the upstream keeps no sessions).
    upstream_ids: Mutex<HashMap<SessionId, Option<HeaderValue>>>,
    max_body_bytes: usize,
    /// Bounds the `DELETE`s sent upstream at once (many sessions may end in one sweep).
    deletes: tokio::sync::Semaphore,
}

/// Upstream sessions deleted at once, at most.
const DELETES_AT_ONCE: usize = 16;

impl PassThrough {
    /// The endpoint for `upstream`, holding its sessions in `sessions`.
    pub fn new(upstream: Arc<Upstream>, sessions: Arc<Sessions>, max_body_bytes: usize) -> Self {
        let shared = Arc::new(Shared {
            link: Link::new(upstream, max_body_bytes),
            sessions: sessions.clone(),
            upstream_ids: Mutex::default(),
            max_body_bytes,
            deletes: tokio::sync::Semaphore::new(DELETES_AT_ONCE),
        });
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        sessions.when_let_go(Box::new(move |id| {
            if let Some(shared) = weak.upgrade() {
                shared.ended(id);
            }
        }));
        Self { shared }
    }

    /// Deletes every session's upstream session, at shutdown (a courtesy: the upstream would
    /// time them out).
    pub async fn shut_down(&self) {
        let open: Vec<HeaderValue> = self
            .shared
            .lock()
            .drain()
            .filter_map(|(_, upstream_id)| upstream_id)
            .collect();
        let deletes = open
            .iter()
            .map(|upstream_id| self.shared.delete_upstream(upstream_id));
        futures::future::join_all(deletes).await;
    }
}

impl PassThrough {
    /// The MCP endpoint this answers at, below the guard.
    pub fn endpoint(&self) -> crate::server::OwnEndpoint {
        super::own_endpoint(self.shared.clone(), |shared, request| async move {
            shared.answer(request).await
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Option<HeaderValue>>> {
        self.upstream_ids
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    async fn answer(&self, request: Request) -> Response {
        match Route::of(&request) {
            Route::Open => self.open(request).await,
            Route::Post(ours) => self.post(ours, request).await,
            Route::Stream(ours) => self.stream(ours, request).await,
            Route::Delete(ours) => self.delete(&ours).await,
            Route::Refused(refusal) => refusal,
        }
    }

    /// A `POST` without a session: an `initialize` opens one when the upstream accepts it.
    async fn open(&self, request: Request) -> Response {
        let outgoing = match Outgoing::read(request, self.max_body_bytes).await {
            Ok(outgoing) => outgoing,
            Err(refusal) => return refusal,
        };
        let response = match self.link.pass(outgoing.passed(None)).await {
            Ok(response) => response,
            Err(error) => return error.response(outgoing.id),
        };
        let initializes = outgoing.method.as_deref() == Some("initialize");
        if !initializes || !response.status().is_success() {
            return self.relay(response, false).await;
        }
        let upstream_id = response.headers().get(MCP_SESSION_ID).cloned();
        let Some(ours) = new_session_id() else {
            return no_session_id(outgoing.id);
        };
        self.lock().insert(ours.clone(), upstream_id);
        self.sessions.hold_passed_through(ours.clone());
        let mut relayed = self.relay(response, false).await;
        if let Ok(value) = HeaderValue::from_str(&ours) {
            relayed.headers_mut().insert(MCP_SESSION_ID, value);
        }
        relayed
    }

    /// A `POST` in session `ours`.
    async fn post(&self, ours: SessionId, request: Request) -> Response {
        let outgoing = match Outgoing::read(request, self.max_body_bytes).await {
            Ok(outgoing) => outgoing,
            Err(refusal) => return refusal,
        };
        let Some(upstream_id) = self.upstream_id(&ours) else {
            return session_not_found();
        };
        match self.link.pass(outgoing.passed(upstream_id.as_ref())).await {
            Ok(response) => {
                let lists_tools = outgoing.method.as_deref() == Some("tools/list");
                self.relay_in(&ours, response, lists_tools).await
            }
            Err(error) => {
                if error.is_timeout() && outgoing.is_request() {
                    self.give_up(&outgoing, upstream_id.as_ref()).await;
                }
                error.response(outgoing.id)
            }
        }
    }

    /// Tells the upstream session that the client's request is cancelled, once the gateway has
    /// stopped waiting for it and answered 504 (as a client does with a request it gives up on),
    /// so that the upstream does not go on with it for nobody.
    async fn give_up(&self, outgoing: &Outgoing, upstream_id: Option<&HeaderValue>) {
        let passed = Passed {
            method: Method::POST,
            session: upstream_id,
            client_headers: outgoing.client_headers.clone(),
            body: Some(cancelled_notification(
                outgoing.id.clone(),
                Some(GAVE_UP.into()),
            )),
            caller: outgoing.caller.as_deref(),
        };
        let _ = self.link.pass(passed).await;
    }

    /// The `GET` stream of session `ours`: the upstream's, resumed from the client's
    /// `Last-Event-ID` if it sent one.
    async fn stream(&self, ours: SessionId, request: Request) -> Response {
        let (caller, client_headers) = caller_and_headers(&request);
        let Some(upstream_id) = self.upstream_id(&ours) else {
            return session_not_found();
        };
        let passed = Passed {
            method: Method::GET,
            session: upstream_id.as_ref(),
            client_headers,
            body: None,
            caller: caller.as_deref(),
        };
        match self.link.pass(passed).await {
            Ok(response) => self.relay_in(&ours, response, false).await,
            Err(error) => error.response(Value::Null),
        }
    }

    /// `DELETE`: session `ours` ends here, and at the upstream.
    async fn delete(&self, ours: &SessionId) -> Response {
        let upstream_id = self.lock().remove(ours);
        let Some(upstream_id) = upstream_id else {
            return session_not_found();
        };
        // Out of the map first, so that its end here deletes nothing twice.
        self.sessions.forget(ours).await;
        if let Some(upstream_id) = upstream_id {
            self.delete_upstream(&upstream_id).await;
        }
        StatusCode::ACCEPTED.into_response()
    }

    /// Session `ours`'s id at the upstream (inner `None`: it keeps no sessions), or `None` when
    /// the session has ended.
    fn upstream_id(&self, ours: &SessionId) -> Option<Option<HeaderValue>> {
        self.lock().get(ours).cloned()
    }

    /// The end of session `id` here, whatever the cause: its upstream session is deleted, off
    /// the caller's path (this runs under the sessions' lock).
    fn ended(self: Arc<Self>, id: &SessionId) {
        let Some(Some(upstream_id)) = self.lock().remove(id) else {
            return;
        };
        tokio::spawn(async move { self.delete_upstream(&upstream_id).await });
    }

    async fn delete_upstream(&self, upstream_id: &HeaderValue) {
        let Ok(_turn) = self.deletes.acquire().await else {
            return;
        };
        let passed = Passed {
            method: Method::DELETE,
            session: Some(upstream_id),
            client_headers: Vec::new(),
            body: None,
            caller: None,
        };
        if let Err(error) = self.link.pass(passed).await {
            tracing::debug!(
                error = error.message(),
                "an upstream session was not deleted"
            );
        }
    }

    /// [`Self::relay`] for session `ours`, which ends when the upstream no longer knows it.
    async fn relay_in(
        &self,
        ours: &SessionId,
        response: UpstreamResponse,
        lists_tools: bool,
    ) -> Response {
        if response.status() == StatusCode::NOT_FOUND {
            self.lock().remove(ours);
            self.sessions.forget(ours).await;
        }
        self.relay(response, lists_tools).await
    }

    /// The upstream's answer as it came: its status and type, and its body (an event stream
    /// passed on event by event, anything else read whole), each message at most
    /// `--max-body-bytes`. `lists_tools`: a `tools/list`'s answer, whose tools the metrics learn.
    async fn relay(&self, response: UpstreamResponse, lists_tools: bool) -> Response {
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let event_stream = content_type
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        let mut relayed = if event_stream {
            self.relay_events(response, lists_tools)
        } else {
            match self.link.read_whole(response).await {
                Ok(body) => {
                    if lists_tools {
                        self.link.learn_tools(&body);
                    }
                    Response::new(Body::from(body))
                }
                Err(error) => return error.response(Value::Null),
            }
        };
        *relayed.status_mut() = status;
        if let Some(content_type) = content_type {
            relayed
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        relayed
    }

    /// An event stream from upstream, passed on as it comes ([`pass_events`]); a `tools/list`
    /// answer in it tells the metrics the upstream's tools.
    fn relay_events(&self, response: UpstreamResponse, lists_tools: bool) -> Response {
        let mut learns = lists_tools.then(|| self.link.upstream().clone());
        pass_events(response, self.max_body_bytes, move |data| {
            if let Some(upstream) = learns.take_if(|_| Routing::is_answer(data.as_bytes())) {
                learn_tools(&upstream, data.as_bytes());
            }
            None
        })
    }
}

/// What a request to a passed-through session's endpoint asks for.
pub(super) enum Route {
    /// A `POST` without a session: an `initialize`, if anything.
    Open,
    /// A `POST` in a session.
    Post(SessionId),
    /// A session's `GET` stream.
    Stream(SessionId),
    Delete(SessionId),
    /// Nothing an endpoint answers: this is the answer.
    Refused(Response),
}

impl Route {
    pub fn of(request: &Request) -> Self {
        let ours: Option<SessionId> = request
            .headers()
            .get(MCP_SESSION_ID)
            .and_then(|value| value.to_str().ok())
            .map(SessionId::from);
        match (request.method().clone(), ours) {
            (Method::POST, None) => Self::Open,
            (Method::POST, Some(ours)) => Self::Post(ours),
            (Method::GET, Some(ours)) => Self::Stream(ours),
            (Method::DELETE, Some(ours)) => Self::Delete(ours),
            (Method::GET | Method::DELETE, None) => Self::Refused(
                (
                    StatusCode::BAD_REQUEST,
                    "Bad Request: this needs the Mcp-Session-Id header of a session (open one \
                     with an initialize POST)",
                )
                    .into_response(),
            ),
            _ => Self::Refused(
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"))],
                )
                    .into_response(),
            ),
        }
    }
}

/// A client's `POST`, ready to pass on.
pub(super) struct Outgoing {
    pub method: Option<String>,
    /// The request's id (`null` for a notification or an unreadable one), for an error.
    pub id: Value,
    /// The message as it goes upstream.
    pub body: Bytes,
    pub caller: Option<Arc<Caller>>,
    client_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Outgoing {
    /// A client's `POST`, read: 413 past `--max-body-bytes`, 400 for what is not one JSON-RPC
    /// message.
    pub async fn read(request: Request, max_body_bytes: usize) -> Result<Self, Response> {
        let (caller, client_headers) = caller_and_headers(&request);
        let body = read_message(request.into_body(), max_body_bytes).await?;
        let Some(message) = Message::parse(&body) else {
            return Err(parse_error());
        };
        let method = message.method();
        let id = message.get("id").map_or(Value::Null, value_of);
        // A message with a method carries the caller; an answer to the upstream's request
        // (`result` or `error`) goes on as the client wrote it.
        let body = match method {
            Some(_) => match message.with_caller(None, caller.as_deref()) {
                Some(body) => body,
                None => return Err(invalid_params(id)),
            },
            None => body.clone(),
        };
        Ok(Self {
            method,
            id,
            body,
            caller,
            client_headers,
        })
    }

    /// Whether this is a request, which gets an answer (not a notification, nor the client's
    /// answer to the upstream).
    pub fn is_request(&self) -> bool {
        self.method.is_some() && !self.id.is_null()
    }

    /// The message, in the upstream session `session` (none: opening one).
    fn passed<'a>(&'a self, session: Option<&'a HeaderValue>) -> Passed<'a> {
        Passed {
            method: Method::POST,
            session,
            client_headers: self.client_headers.clone(),
            body: Some(self.body.clone()),
            caller: self.caller.as_deref(),
        }
    }
}

/// The caller the guard found, and the client's headers that go on ([`PASSED_HEADERS`]).
fn caller_and_headers(request: &Request) -> (Option<Arc<Caller>>, Vec<(HeaderName, HeaderValue)>) {
    let caller = request.extensions().get::<Arc<Caller>>().cloned();
    let headers = PASSED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = request.headers().get(name)?;
            Some((name.clone(), value.clone()))
        })
        .collect();
    (caller, headers)
}

fn invalid_params(id: Value) -> Response {
    rpc_error_response(
        StatusCode::BAD_REQUEST,
        id,
        -32602,
        "invalid params: params and params._meta must be objects".into(),
    )
}

/// 404, as for any session that does not exist: the client starts a new one.
pub(super) fn session_not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: no such session").into_response()
}

/// A new session id: 144 random bits, URL-safe (nobody can guess another caller's, and the
/// guard binds each to its caller anyway).
pub(super) fn new_session_id() -> Option<SessionId> {
    use base64::Engine;
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(SessionId::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

/// 500 for an `initialize` (with id `id`) when [`new_session_id`] had no randomness.
pub(super) fn no_session_id(id: Value) -> Response {
    rpc_error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        id,
        -32603,
        "no randomness for a session id".into(),
    )
}
