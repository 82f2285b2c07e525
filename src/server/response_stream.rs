//! A request's own SSE response stream, which its handler may end before it answers (SEP-1699,
//! in the MCP 2025-11-25 transport: "the server MAY close the connection before sending the
//! response"): the client reconnects after the `retry` it was given, with a GET carrying
//! `Last-Event-ID`, and gets the rest of the request's messages, its answer included, on the
//! resumed stream. A tool that runs for minutes can so give its connection back (and outlive a
//! proxy's idle timeout) without losing its answer.
//!
//! rmcp keeps each request's stream, and what was sent on it, in the request's session, but hands
//! a handler no way to reach it; [`Sessions`](super::sessions::Sessions) puts a
//! [`ResponseStream`] in the extensions of every request it answers on a stream. So only in
//! stateful mode: with `--stateless` (no session to resume in) and over stdio there is none.

use std::time::Duration;

use rmcp::model::Extensions;
use rmcp::transport::streamable_http_server::session::local::LocalSessionHandle;

/// The SSE stream that answers an MCP request: see [`ResponseStream::close`].
///
/// A tool finds it in its `Extensions` (a parameter, or its `RequestContext`'s `extensions`):
///
/// ```
/// use std::time::Duration;
/// use rmcp::model::Extensions;
/// use scalekit_mcp::ResponseStream;
///
/// async fn long_work(extensions: Extensions) -> String {
///     if let Some(stream) = ResponseStream::of(&extensions) {
///         // The client comes back in 5 s and waits there for the answer.
///         let _ = stream.close(Duration::from_secs(5)).await;
///     }
///     // ... work for minutes ...
///     "done".to_owned()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ResponseStream {
    session: LocalSessionHandle,
    /// rmcp's number for the stream within its session (the part after `/` in its event ids).
    stream_id: u64,
}

impl ResponseStream {
    pub(crate) fn new(session: LocalSessionHandle, stream_id: u64) -> Self {
        Self { session, stream_id }
    }

    /// The stream answering the request whose extensions these are (a tool's `Extensions`, or
    /// its `RequestContext`'s `extensions`). `None` when the request has no stream of its own
    /// to resume: with `--stateless`, and over stdio.
    pub fn of(extensions: &Extensions) -> Option<Self> {
        extensions.get::<Self>().cloned()
    }

    /// Ends the stream now, after an event telling the client to reconnect in `retry`. Whatever
    /// the request sends next (progress, its answer) waits for the client on the resumed stream.
    ///
    /// Answer only once the client is back: rmcp forgets a request's stream when the request
    /// answers, so an answer sent while the client is away is lost, and the client's
    /// reconnection then finds nothing. A `retry` well below the work's duration leaves room for
    /// that. Fails when the session or the stream has already ended.
    pub async fn close(&self, retry: Duration) -> std::io::Result<()> {
        self.session
            .close_sse_stream(self.stream_id, Some(retry))
            .await
            .map_err(std::io::Error::from)
    }
}
