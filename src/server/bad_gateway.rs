//! HTTP 502 (504 past a timeout) from a stateful MCP endpoint whose handler relays to a server it
//! cannot reach: the gateway's upstream.
//!
//! rmcp answers a request on a session with a 200 event stream that it starts before the handler
//! runs, so a handler's error normally reaches the client inside a 200. Two answers can still be
//! HTTP errors, and the guard (`server::auth`) gives them:
//! - **`initialize`**: rmcp awaits the handler's answer before it writes any header. A handler
//!   that could not reach its server leaves the failure in the request's [`InitializeFailure`];
//!   the guard then answers 502 in place of rmcp's stream, without a session id, and ends the
//!   session rmcp had opened (its `--max-sessions` slot comes back).
//! - **a request on an existing session while the server is known down** ([`DownCheck`]): 502 at
//!   once, without reaching rmcp.
//!
//! A request that finds the server gone only after its 200 has started gets the JSON-RPC error
//! inside the stream: once the status is sent, that is the only honest answer left.
//!
//! A server that relays nothing (the built-in tools, a library user's handler) pays nothing: the
//! guard looks only when [`Extras`](super::Extras) asks it to.

use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rmcp::model::{Extensions, RequestId};
use serde_json::{Value, json};

/// Why the server behind the handler cannot be reached: the HTTP status for the client (502, or
/// 504 when it did not answer in time) and a message naming that server and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub status: StatusCode,
    pub message: String,
}

impl Unreachable {
    pub fn bad_gateway(message: String) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            message,
        }
    }

    pub fn gateway_timeout(message: String) -> Self {
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            message,
        }
    }

    /// The answer to the request with JSON-RPC `id`: an internal error (-32603) with the
    /// message, the body the stateless gateway gives too.
    pub fn response(&self, id: Value) -> Response {
        rpc_error_response(self.status, id, -32603, self.message.clone())
    }

    /// The answer to `request`, under its own JSON-RPC id (null when its body has none).
    pub async fn refuse(&self, request: Request, max_body_bytes: usize) -> Response {
        let body = axum::body::to_bytes(request.into_body(), max_body_bytes).await;
        let id = body.ok().map(|body| id_of(&body)).unwrap_or(Value::Null);
        self.response(id)
    }
}

/// The `id` of a JSON-RPC message, or null.
fn id_of(message: &[u8]) -> Value {
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(default)]
        id: Value,
    }
    serde_json::from_slice::<Id>(message)
        .map(|message| message.id)
        .unwrap_or(Value::Null)
}

/// A JSON-RPC error as the whole answer, with HTTP `status`.
pub fn rpc_error_response(status: StatusCode, id: Value, code: i64, message: String) -> Response {
    (
        status,
        axum::Json(
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        ),
    )
        .into_response()
}

/// Where a relaying handler's `initialize` leaves its failure for the guard: the guard puts one
/// in the extensions of each request that may open a session, and rmcp hands the request's
/// extensions to the handler.
#[derive(Clone, Default)]
pub struct InitializeFailure(Arc<OnceLock<(Value, Unreachable)>>);

impl InitializeFailure {
    /// Records that `initialize` request `id`, with the request context's `extensions`, could not
    /// reach the server; nothing when the guard did not ask (stdio, or the server built
    /// otherwise).
    pub fn report(extensions: &Extensions, id: &RequestId, failure: Unreachable) {
        let slot = extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Self>());
        if let Some(slot) = slot {
            let id = serde_json::to_value(id).unwrap_or(Value::Null);
            let _ = slot.0.set((id, failure));
        }
    }

    /// The failure the handler reported, with the request's JSON-RPC id.
    pub fn take(&self) -> Option<(Value, Unreachable)> {
        self.0.get().cloned()
    }
}

/// Whether the server behind the handler is known to be down now, and why.
pub type DownCheck = Arc<dyn Fn() -> Option<Unreachable> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_failure_reaches_the_guard_through_the_request_parts() {
        let failure = InitializeFailure::default();
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.extensions.insert(failure.clone());
        let mut extensions = Extensions::new();
        extensions.insert(parts);
        let down =
            Unreachable::bad_gateway("upstream http://127.0.0.1:9/mcp is unreachable".into());
        InitializeFailure::report(&extensions, &RequestId::Number(7), down.clone());
        assert_eq!(failure.take(), Some((json!(7), down.clone())));
        // Without a slot (the guard did not ask), nothing happens.
        InitializeFailure::report(&Extensions::new(), &RequestId::Number(8), down);
    }

    #[test]
    fn the_id_is_the_messages_or_null() {
        assert_eq!(
            id_of(br#"{"jsonrpc":"2.0","id":"a-1","method":"ping"}"#),
            "a-1"
        );
        assert_eq!(
            id_of(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#),
            Value::Null
        );
        assert_eq!(id_of(b"[1, 2]"), Value::Null);
    }
}
