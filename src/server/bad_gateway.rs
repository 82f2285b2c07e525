//! HTTP 502 (504 past a timeout) for a server the gateway cannot reach: [`Unreachable`] and the
//! JSON-RPC error body it answers with, shared by every gateway endpoint; and [`DownCheck`], with
//! which the guard (`server::auth`) answers a request on an existing session 502 at once while the
//! upstream is known down, without reaching the endpoint.
//!
//! A server that relays nothing (the built-in tools, a library user's handler) pays nothing: the
//! guard looks only when [`Extras`](super::Extras) asks it to.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
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

/// Whether the server behind the handler is known to be down now, and why.
pub type DownCheck = Arc<dyn Fn() -> Option<Unreachable> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

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
