//! `serve --stateless` in front of an upstream: each request forwarded on its own, on one
//! upstream session that every caller shares.
//!
//! No MCP session exists on the client's side, so there is nothing to hold per client: the
//! gateway opens one session upstream (once, again when the upstream forgets it), answers the
//! client's `initialize` with the upstream's own answer, and forwards everything else at the
//! JSON-RPC level, below rmcp: the body is read, the caller put under
//! `_meta["scalekit-mcp/caller"]`, the request id replaced by one of the gateway's own (two
//! callers may both send id 1 on the one upstream session), and the answer — JSON, or an event
//! stream with progress before it — goes back with the client's id restored. A client's
//! `notifications/cancelled` reaches its own request under the gateway's id, and nobody else's
//! ([`InFlight`]); a client's answer to a request of the upstream's goes up only from a caller
//! that request was passed to ([`Asked`]). A client hears from the upstream only in its own
//! requests' streams, so what needs a session of its own (resource subscriptions, list changes,
//! a log level, tasks) is not offered or not passed on. The caller reaches
//! an HTTP upstream in `X-Forwarded-*` headers as well; a shared child has one environment for
//! everyone, so a command upstream learns the caller from `_meta` only.
//!
//! A failure to reach the upstream is HTTP 502 with a JSON-RPC error naming it, and `/ready`
//! reports it ([`Health`]) until the upstream answers again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::Upstream;
use super::http_client::UpstreamResponse;
use super::link::{
    Exchange, GAVE_UP, Link, LinkError, Routing, cancelled_notification, pass_events,
};
use super::message::Message;
use crate::auth::validate::Caller;
use crate::server::bad_gateway::rpc_error_response;

/// The newest protocol version the gateway asks the upstream for.
pub const REQUESTED_VERSION: &str = "2025-11-25";

/// The protocol versions a client may name in `initialize`, oldest first.
const KNOWN_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The MCP endpoint of a stateless gateway: see the module documentation. Clones share
/// everything.
#[derive(Clone)]
pub struct Forwarder {
    shared: Arc<Shared>,
}

struct Shared {
    link: Link,
    /// The gateway's own request ids, unique on the shared upstream session.
    next_id: AtomicU64,
    in_flight: InFlight,
    asked: Asked,
    max_body_bytes: usize,
}

impl Forwarder {
    /// A forwarder to `upstream`, whose reachability it reports in `upstream.health`.
    pub fn new(upstream: Arc<Upstream>, max_body_bytes: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                link: Link::new(upstream, max_body_bytes),
                next_id: AtomicU64::new(1),
                in_flight: InFlight::default(),
                asked: Asked::default(),
                max_body_bytes,
            }),
        }
    }

    /// Opens the upstream session now, retrying until it answers or `shutdown`; `/ready` says
    /// 503 with the reason meanwhile.
    pub async fn connect_in_background(self, shutdown: tokio_util::sync::CancellationToken) {
        self.shared.link.keep_trying(shutdown, true).await;
    }

    /// Ends the shared upstream session at shutdown: see [`Link::shut_down`].
    pub async fn shut_down(self) {
        self.shared.link.shut_down().await;
    }

    /// For a stateful gateway, whose sessions each have their own upstream connection: checks
    /// the upstream in the background while it does not answer, opening and closing a session
    /// (or child) each time, so that `/ready` follows it.
    pub async fn probe_until_reachable(self, shutdown: tokio_util::sync::CancellationToken) {
        self.shared.link.keep_trying(shutdown, false).await;
    }
}

impl Forwarder {
    /// The MCP endpoint this answers at, below the guard.
    pub fn endpoint(&self) -> crate::server::OwnEndpoint {
        super::own_endpoint(self.shared.clone(), |shared, request| async move {
            shared.answer(request).await
        })
    }
}

impl Shared {
    async fn answer(&self, request: Request) -> Response {
        if request.method() != Method::POST {
            return no_streams();
        }
        let caller = request.extensions().get::<Arc<Caller>>().cloned();
        let caller = caller.as_ref();
        let body = match read_message(request.into_body(), self.max_body_bytes).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let Some(message) = Message::parse(&body) else {
            return parse_error();
        };
        let method = message.method();
        let id = message.get("id");
        match (method.as_deref(), id) {
            (Some("initialize"), Some(id)) => self.initialize(id, &message).await,
            // The shared upstream session was initialized by the gateway itself.
            (Some("notifications/initialized"), None) => accepted(),
            (Some(method), Some(id)) => self.client_request(id, message, method, caller).await,
            (Some("notifications/cancelled"), None) => {
                self.cancel(&message, caller.map(Arc::as_ref)).await
            }
            // The client's answer to a request of the upstream's: only from the one asked.
            (None, Some(id)) if !self.asked.take(caller.map(Arc::as_ref), id) => {
                tracing::debug!("an answer to no request passed to its caller: dropped");
                accepted()
            }
            // A notification, or the client's answer to a request of the upstream's: as it is.
            _ => match self
                .link
                .send(body.clone(), None, caller.map(Arc::as_ref))
                .await
            {
                Ok(_) => accepted(),
                Err(error) => error.response(Value::Null),
            },
        }
    }

    /// A client's request: forwarded, unless it needs a session of the client's own (see
    /// [`shared_session_capabilities`]).
    async fn client_request(
        &self,
        id: &RawValue,
        message: Message<'_>,
        method: &str,
        caller: Option<&Arc<Caller>>,
    ) -> Response {
        match method {
            // The shared session's log level is everyone's: no caller sets it for the others.
            // As with any stateless server, the level lasts no longer than the request.
            "logging/setLevel" => {
                axum::Json(json!({"jsonrpc": "2.0", "id": value_of(id), "result": {}}))
                    .into_response()
            }
            "resources/subscribe" | "resources/unsubscribe" => not_stateless(
                method,
                id,
                "resource updates need an MCP session to reach a client",
            ),
            _ if method.starts_with("tasks/") => not_stateless(
                method,
                id,
                "the upstream keeps tasks in its session, which every caller of this gateway shares",
            ),
            _ => {
                let lists_tools = method == "tools/list";
                // A receiver that declares no tasks takes a task-augmented request as a plain one
                // (MCP 2025-11-25): the upstream must not make a task every caller could read.
                match message.without_param("task") {
                    Some(plain) => match Message::parse(&plain) {
                        Some(plain) => self.request(id, plain, caller, lists_tools).await,
                        None => parse_error(),
                    },
                    None => self.request(id, message, caller, lists_tools).await,
                }
            }
        }
    }

    /// The upstream's `initialize` answer under the client's id, in the protocol version both
    /// can speak.
    async fn initialize(&self, id: &RawValue, message: &Message<'_>) -> Response {
        let id = value_of(id);
        let session = match self.link.session().await {
            Ok(session) => session,
            Err(error) => return error.response(id),
        };
        let mut result = session.initialize.clone();
        let params: Option<Value> = message
            .get("params")
            .and_then(|params| serde_json::from_str(params.get()).ok());
        let asked = params
            .as_ref()
            .and_then(|params| params.get("protocolVersion"))
            .and_then(Value::as_str);
        let version = negotiated(asked, &session.protocol_version);
        result["protocolVersion"] = Value::String(version.to_owned());
        if let Some(capabilities) = result.get_mut("capabilities") {
            shared_session_capabilities(capabilities);
        }
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
    }

    /// A request, under an id of the gateway's own and with the caller in `_meta`, and its
    /// answer under the client's id.
    /// `lists_tools`: a `tools/list`, whose answer tells the metrics the upstream's tool names.
    async fn request(
        &self,
        client_id: &RawValue,
        message: Message<'_>,
        shared_caller: Option<&Arc<Caller>>,
        lists_tools: bool,
    ) -> Response {
        let our_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let in_flight = self.in_flight.enter(our_id, shared_caller, client_id);
        let caller = shared_caller.map(Arc::as_ref);
        let Some(upstream_message) = message.with_caller(Some(our_id), caller) else {
            return rpc_error_response(
                StatusCode::BAD_REQUEST,
                value_of(client_id),
                -32602,
                "invalid params: params and params._meta must be objects".into(),
            );
        };
        match self.link.send(upstream_message, Some(our_id), caller).await {
            Ok(Exchange::Answer(status, answer)) => {
                if lists_tools {
                    self.link.learn_tools(&answer);
                }
                match with_id(&answer, client_id) {
                    Some(answer) => (status, [(header::CONTENT_TYPE, "application/json")], answer)
                        .into_response(),
                    None => rpc_error_response(
                        StatusCode::BAD_GATEWAY,
                        value_of(client_id),
                        -32603,
                        "the upstream answered with something that is not a JSON-RPC message"
                            .into(),
                    ),
                }
            }
            Ok(Exchange::Stream(response)) => restore_id_in_stream(
                response,
                (our_id, in_flight),
                client_id.to_owned(),
                self.asked.of(shared_caller),
                self.max_body_bytes,
            ),
            Ok(Exchange::Accepted) => accepted(),
            Err(error) => {
                if error.is_timeout() {
                    // As a client does with a request it stops waiting for (the MCP spec), so the
                    // upstream does not go on with it for nobody.
                    let reason = Value::from(GAVE_UP);
                    let _ = self.cancel_upstream(our_id, Some(&reason), caller).await;
                }
                error.response(value_of(client_id))
            }
        }
    }

    /// A client's `notifications/cancelled`: passed on for each of the caller's requests in flight
    /// that its client gave the id it names, under the gateway's id for it. Naming none, it is
    /// dropped: as written, it would name whichever request has that id upstream, someone else's.
    async fn cancel(&self, message: &Message<'_>, caller: Option<&Caller>) -> Response {
        let params = message
            .get("params")
            .and_then(|params| Message::parse(params.get().as_bytes()));
        let named = params.as_ref().and_then(|params| params.get("requestId"));
        let ours = named.map_or_else(Vec::new, |id| self.in_flight.ours(caller, id));
        if ours.is_empty() {
            tracing::debug!("a cancellation names no request of its caller's in flight: dropped");
        }
        let reason = params
            .as_ref()
            .and_then(|params| params.get("reason"))
            .map(value_of);
        for id in ours {
            if let Err(error) = self.cancel_upstream(id, reason.as_ref(), caller).await {
                return error.response(Value::Null);
            }
        }
        accepted()
    }

    /// Tells the upstream that the gateway's request `ours` is cancelled.
    async fn cancel_upstream(
        &self,
        ours: u64,
        reason: Option<&Value>,
        caller: Option<&Caller>,
    ) -> Result<Exchange, LinkError> {
        let cancelled = cancelled_notification(ours.into(), reason.cloned());
        self.link.send(cancelled, None, caller).await
    }
}

/// The requests on their way upstream, by the gateway's id: whose each is, and the id its client
/// gave it. A client's cancellation is passed on only for its own requests, found here, since on
/// the one upstream session every caller's requests are side by side.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<u64, Sent>>>);

struct Sent {
    caller: Option<Arc<Caller>>,
    client_id: Box<str>,
}

impl InFlight {
    /// Enters the request the gateway sends as `ours`, until the returned entry is dropped.
    fn enter(&self, ours: u64, caller: Option<&Arc<Caller>>, client_id: &RawValue) -> Entered {
        let sent = Sent {
            caller: caller.cloned(),
            client_id: client_id.get().into(),
        };
        self.lock().insert(ours, sent);
        Entered {
            in_flight: self.clone(),
            ours,
        }
    }

    /// The gateway's ids of the requests in flight that `caller` (or another token of the same
    /// principal) sent under `client_id`.
    fn ours(&self, caller: Option<&Caller>, client_id: &RawValue) -> Vec<u64> {
        let principal = caller.map(Caller::principal);
        self.lock()
            .iter()
            .filter(|(_, sent)| {
                *sent.client_id == *client_id.get()
                    && sent.caller.as_deref().map(Caller::principal) == principal
            })
            .map(|(ours, _)| *ours)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sent>> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// A request's place in [`InFlight`], left when its answer has gone back (or its stream ended,
/// or the client went away).
struct Entered {
    in_flight: InFlight,
    ours: u64,
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.in_flight.lock().remove(&self.ours);
    }
}

/// The upstream's own requests (a `ping`, or sampling, elicitation or roots from an upstream
/// that asks although the shared session declares no such capability), passed to a client in the
/// event stream of one of its requests, by the upstream's id: whose each is. On the one upstream
/// session, a client's answer goes up only for a request passed to the same principal, so that
/// no caller answers in another's place.
#[derive(Clone, Default)]
struct Asked(Arc<Mutex<HashMap<String, Option<Arc<Caller>>>>>);

impl Asked {
    /// The requests asked in the stream of a request of `caller`'s.
    fn of(&self, caller: Option<&Arc<Caller>>) -> AskedInStream {
        AskedInStream {
            asked: self.clone(),
            caller: caller.cloned(),
            ids: Vec::new(),
        }
    }

    /// Whether the upstream's request `id` was passed to `caller` (or another token of the same
    /// principal) and is still open; if so, it is answered now.
    fn take(&self, caller: Option<&Caller>, id: &RawValue) -> bool {
        let key = value_of(id).to_string();
        let mut asked = self.lock();
        let asked_of = asked
            .get(&key)
            .map(|asked| asked.as_deref().map(Caller::principal));
        match asked_of {
            Some(principal) if principal == caller.map(Caller::principal) => {
                asked.remove(&key);
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Arc<Caller>>>> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The upstream's requests passed on in one event stream; those still unanswered are forgotten
/// when the stream ends (the upstream has then answered the request the stream was for, or
/// given up on it).
struct AskedInStream {
    asked: Asked,
    caller: Option<Arc<Caller>>,
    ids: Vec<String>,
}

impl AskedInStream {
    fn note(&mut self, id: &Value) {
        let key = id.to_string();
        self.asked.lock().insert(key.clone(), self.caller.clone());
        self.ids.push(key);
    }
}

impl Drop for AskedInStream {
    fn drop(&mut self) {
        let mut asked = self.asked.lock();
        for id in &self.ids {
            asked.remove(id);
        }
    }
}

/// A request's body, read whole: 413 past `max_bytes` (`--max-body-bytes`), 400 for a batch.
pub(super) async fn read_message(body: Body, max_bytes: usize) -> Result<Bytes, Response> {
    let Ok(body) = axum::body::to_bytes(body, max_bytes).await else {
        return Err(rpc_error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            -32600,
            format!("the request body is larger than {max_bytes} bytes (--max-body-bytes)"),
        ));
    };
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(rpc_error_response(
            StatusCode::BAD_REQUEST,
            Value::Null,
            -32600,
            "a JSON-RPC batch is not accepted: send one message per request".into(),
        ));
    }
    Ok(body)
}

/// 400 for a body that is not a JSON object.
pub(super) fn parse_error() -> Response {
    rpc_error_response(
        StatusCode::BAD_REQUEST,
        Value::Null,
        -32700,
        "parse error: the body is not a JSON object".into(),
    )
}

pub(super) fn value_of(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// The upstream's capabilities less what one shared session cannot offer each caller: a client
/// hears from it only in the event stream of a request of its own, so no resource update and no
/// list change would ever reach it; and its tasks would be every caller's.
fn shared_session_capabilities(capabilities: &mut Value) {
    if let Some(resources) = capabilities
        .get_mut("resources")
        .and_then(Value::as_object_mut)
    {
        resources.remove("subscribe");
    }
    for kind in ["tools", "prompts", "resources"] {
        if let Some(kind) = capabilities.get_mut(kind).and_then(Value::as_object_mut) {
            kind.remove("listChanged");
        }
    }
    if let Some(capabilities) = capabilities.as_object_mut() {
        capabilities.remove("tasks");
    }
}

/// The answer to a request the shared session cannot serve (see
/// [`shared_session_capabilities`]), `because` of what. Passed on, a subscription would stay on
/// the upstream's session for good with updates for no one, and `tasks/list` would show every
/// caller's tasks.
fn not_stateless(method: &str, id: &RawValue, because: &str) -> Response {
    rpc_error_response(
        StatusCode::OK,
        value_of(id),
        -32601,
        format!(
            "{method} is not available through a --stateless gateway ({because}); run the \
             gateway without --stateless"
        ),
    )
}

/// A JSON-RPC message (`answer`, as the upstream wrote it) with its id replaced by `id`.
fn with_id(answer: &[u8], id: &RawValue) -> Option<Bytes> {
    Message::parse(answer)?.with_id(id)
}

/// The version to answer a client that asked for `asked`, on an upstream session in `ours`:
/// the client's if the gateway knows it and it is not newer than the upstream's, else the
/// upstream's (the client then decides whether it can speak it).
fn negotiated<'a>(asked: Option<&'a str>, ours: &'a str) -> &'a str {
    match asked {
        Some(asked) if KNOWN_VERSIONS.contains(&asked) && asked <= ours => asked,
        _ => ours,
    }
}

/// An event stream from upstream, passed on as it comes, with `our_id` replaced by the client's
/// id in the answer. Progress, log messages and the upstream's own requests before it pass
/// unchanged; those requests are noted as asked of this caller (`asked`) while the stream lasts,
/// as is the request itself as in flight (cancellable). An event larger than `max_bytes`
/// (`--max-body-bytes`) ends the stream.
fn restore_id_in_stream(
    response: UpstreamResponse,
    (our_id, in_flight): (u64, Entered),
    client_id: Box<RawValue>,
    mut asked: AskedInStream,
    max_bytes: usize,
) -> Response {
    pass_events(response, max_bytes, move |data| {
        let _in_flight = &in_flight;
        // Read once for both questions: most events are progress, passed as they are.
        let routing = Routing::read(data.as_bytes())?;
        if routing.is_answer_to(our_id) {
            let restored = with_id(data.as_bytes(), &client_id)?;
            return String::from_utf8(restored.to_vec()).ok();
        }
        if let Some(request) = routing.into_request_id() {
            asked.note(&request);
        }
        None
    })
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// 405 for GET and DELETE: a stateless gateway has no session and no stream to give.
fn no_streams() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("POST"))],
        "this server is stateless (--stateless): send each message as a POST; there is no session to \
         stream from or to delete",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_own_version_unless_it_is_newer_or_unknown() {
        assert_eq!(negotiated(Some("2025-03-26"), "2025-11-25"), "2025-03-26");
        assert_eq!(negotiated(Some("2025-11-25"), "2025-06-18"), "2025-06-18");
        assert_eq!(negotiated(Some("1999-01-01"), "2025-06-18"), "2025-06-18");
        assert_eq!(negotiated(None, "2025-06-18"), "2025-06-18");
    }

    #[test]
    fn a_cancellation_finds_only_its_principals_requests() {
        let caller = |issuer: &str, sub: &str| {
            Arc::new(Caller {
                issuer: Some(issuer.into()),
                sub: Some(sub.into()),
                ..Caller::default()
            })
        };
        let id = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        let (alice, bob) = (caller("https://a", "alice"), caller("https://a", "bob"));
        let in_flight = InFlight::default();
        let first = in_flight.enter(1, Some(&alice), &id("5"));
        let _second = in_flight.enter(2, Some(&bob), &id("5"));
        let _third = in_flight.enter(3, Some(&alice), &id(r#""x""#));
        let _anonymous = in_flight.enter(4, None, &id("5"));
        assert_eq!(in_flight.ours(Some(&alice), &id("5")), [1]);
        // Another token of Alice's is Alice; the same subject from another issuer is not.
        assert_eq!(
            in_flight.ours(Some(&caller("https://a", "alice")), &id("5")),
            [1]
        );
        assert!(
            in_flight
                .ours(Some(&caller("https://b", "alice")), &id("5"))
                .is_empty()
        );
        assert_eq!(in_flight.ours(Some(&bob), &id("5")), [2]);
        assert_eq!(in_flight.ours(Some(&alice), &id(r#""x""#)), [3]);
        assert_eq!(in_flight.ours(None, &id("5")), [4]);
        drop(first);
        assert!(in_flight.ours(Some(&alice), &id("5")).is_empty());
    }
}
