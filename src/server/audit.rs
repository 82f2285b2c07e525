//! The audit log: one line per `tools/call`, at INFO under the target `audit`, with who called
//! which tool, how it ended and how long it took. Never the arguments, the result or the token.
//! With `--metrics-addr`, the same moment records every MCP operation's duration and outcome
//! (`mcp_server_operation_duration_seconds`).
//!
//! Both are written when the answer's body has been sent in full (or dropped, when the client
//! goes away), so the duration covers the tool's run, and the outcome reads the answer as it
//! streams past (the direct path, `super::direct`, knows both when its answer is ready, and
//! writes them then): `ok`, `tool_error` (a result with `"isError": true`), `error` (a JSON-RPC error
//! or a failed answer), `denied` (a missing tool scope) or `rate_limited`. A batch's operations
//! share one outcome.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::StatusCode;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::metrics::Metrics;
use super::tool_calls::Operation;
use crate::auth::validate::Caller;
use crate::logging::Milliseconds;
use crate::logging::plain::Value::{self, Shown, Text};

/// Whether audit lines are written: decided once logging has started, like the request line.
pub fn enabled() -> bool {
    tracing::enabled!(target: "audit", tracing::Level::INFO)
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    ToolError,
    Error,
    Denied,
    RateLimited,
}

impl Outcome {
    /// The metrics' and the audit line's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// What an endpoint that read the request itself (the direct path) says it answered: the
/// operations, and their outcome when the answer is complete already (else it is read from the
/// answer as it is sent). Left on the response for the guard, which then reads no body.
#[derive(Clone)]
pub struct Reported {
    pub operations: Vec<Operation>,
    pub outcome: Option<Outcome>,
}

/// One request's operations being followed to their answer: who, which operations, since
/// when, and where they are reported (audit lines, metrics).
pub struct Record {
    caller: Arc<Caller>,
    operations: Vec<Operation>,
    started: Instant,
    audit: bool,
    metrics: Option<Arc<Metrics>>,
}

impl Record {
    /// `None` when there is nothing to report: no tool call to audit and no metrics.
    pub fn new(
        caller: Arc<Caller>,
        operations: Vec<Operation>,
        audit: bool,
        metrics: Option<Arc<Metrics>>,
    ) -> Option<Self> {
        let audit = audit && operations.iter().any(|operation| operation.tool.is_some());
        let measured = metrics.is_some() && !operations.is_empty();
        (audit || measured).then(|| Self {
            caller,
            operations,
            started: Instant::now(),
            audit,
            metrics,
        })
    }

    /// Reports now: for an answer given before the handler (a refusal).
    pub fn finish(self, outcome: Outcome) {
        let elapsed = self.started.elapsed();
        if let Some(metrics) = &self.metrics {
            for operation in &self.operations {
                // Only a tool call can end in a tool error; the others of a batch went well.
                let outcome = match outcome {
                    Outcome::ToolError if operation.tool.is_none() => Outcome::Ok,
                    outcome => outcome,
                };
                metrics.record_operation(
                    operation.method,
                    operation.called_tool(),
                    outcome.as_str(),
                    elapsed,
                );
            }
        }
        if !self.audit {
            return;
        }
        let duration = crate::logging::milliseconds(elapsed);
        for tool in self.operations.iter().filter_map(Operation::called_tool) {
            audit_line(&self.caller, tool, outcome, &duration);
        }
    }

    /// The handler's answer, whose body writes the line when it has been sent.
    pub fn follow(self, response: Response) -> Response {
        let status = response.status();
        let (parts, body) = response.into_parts();
        let outcome = match status {
            status if status.is_success() => Outcome::Ok,
            StatusCode::FORBIDDEN => Outcome::Denied,
            StatusCode::TOO_MANY_REQUESTS => Outcome::RateLimited,
            _ => Outcome::Error,
        };
        let body = Audited {
            inner: body,
            call: Some(self),
            outcome,
            scan: Scan::default(),
            finished: false,
        };
        Response::from_parts(parts, Body::new(body))
    }
}

/// Looks for the marks of a failed call in an answer that arrives in pieces.
#[derive(Default)]
struct Scan {
    /// The end of the previous piece (its last `SEAM` bytes), so that a mark split between two
    /// pieces is seen.
    tail: [u8; SEAM],
    tail_len: usize,
    tool_error: bool,
    rpc_error: bool,
    /// An answer (a result or an error) has begun…
    answer_started: bool,
    /// …and the event carrying it has been sent whole: a client that closes its stream now has
    /// its answer (clients often do, without waiting for the stream's end).
    answered: bool,
}

const TOOL_ERROR: &[u8] = br#""isError":true"#;
const RPC_ERROR: &[u8] = br#""error":{"#;
const RESULT: &[u8] = br#""result":{"#;
/// The end of a server-sent event.
const EVENT_END: &[u8] = b"\n\n";
/// The most of a mark that can sit at the end of one piece: the longest mark less a byte.
const SEAM: usize = TOOL_ERROR.len() - 1;

impl Scan {
    fn feed(&mut self, piece: &[u8]) {
        if self.answer_started && piece.ends_with(EVENT_END) {
            self.answered = true;
        }
        if self.tool_error && self.rpc_error {
            return;
        }
        if self.tail_len > 0 {
            let mut seam = [0u8; 2 * SEAM];
            let head = piece.len().min(SEAM);
            seam[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            seam[self.tail_len..self.tail_len + head].copy_from_slice(&piece[..head]);
            self.look(&seam[..self.tail_len + head]);
        }
        self.look(piece);
        if self.answer_started && piece.ends_with(EVENT_END) {
            self.answered = true;
        }
        // What the next piece's seam needs: the end of this piece, after the earlier tail when
        // this piece is shorter than a seam.
        let mut joined = [0u8; 2 * SEAM];
        joined[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        let added = piece.len().min(SEAM);
        joined[self.tail_len..self.tail_len + added].copy_from_slice(&piece[piece.len() - added..]);
        let total = self.tail_len + added;
        let kept = total.min(SEAM);
        self.tail[..kept].copy_from_slice(&joined[total - kept..total]);
        self.tail_len = kept;
    }

    /// Both marks start with a quote: each quote is a place to compare (an answer has a few
    /// dozen), which costs less than setting up a substring search for a short answer.
    fn look(&mut self, bytes: &[u8]) {
        for at in memchr::memchr_iter(b'"', bytes) {
            let rest = &bytes[at..];
            self.tool_error |= rest.starts_with(TOOL_ERROR);
            self.rpc_error |= rest.starts_with(RPC_ERROR);
            self.answer_started |= rest.starts_with(RESULT) || rest.starts_with(RPC_ERROR);
        }
    }

    fn outcome(&self, by_status: Outcome) -> Outcome {
        match by_status {
            Outcome::Ok if self.rpc_error => Outcome::Error,
            Outcome::Ok if self.tool_error => Outcome::ToolError,
            other => other,
        }
    }
}

/// A response body that writes the audit line once it has been sent, or dropped.
struct Audited {
    inner: Body,
    call: Option<Record>,
    outcome: Outcome,
    scan: Scan,
    finished: bool,
}

impl Audited {
    fn write_line(&mut self) {
        if let Some(call) = self.call.take() {
            let outcome = if self.finished || self.scan.answered {
                self.scan.outcome(self.outcome)
            } else {
                // The client went away before the answer was complete.
                Outcome::Error
            };
            call.finish(outcome);
        }
    }
}

impl HttpBody for Audited {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.scan.feed(data);
                }
            }
            Poll::Ready(None) => {
                this.finished = true;
                this.write_line();
            }
            Poll::Ready(Some(Err(_))) => this.write_line(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.finished = true;
        }
        self.write_line();
    }
}

/// A tool call's audit line, written by hand when nothing but the plain text format sees it
/// ([`crate::logging::plain`]).
pub(super) fn audit_line(caller: &Caller, tool: &str, outcome: Outcome, duration: &Milliseconds) {
    if crate::logging::plain::by_hand() {
        crate::logging::plain::info("tool call", &audit_fields(caller, tool, outcome, duration));
    } else {
        tracing::info!(
            target: "audit",
            subject = caller.sub.as_deref().unwrap_or("-"),
            org = caller.org_id.as_deref().unwrap_or("-"),
            client_id = caller.client_id.as_deref().unwrap_or("-"),
            tool,
            outcome = outcome.as_str(),
            duration_ms = %duration,
            "tool call"
        );
    }
}

/// The audit line's fields, as [`audit_line`] gives them to tracing.
fn audit_fields<'a>(
    caller: &'a Caller,
    tool: &'a str,
    outcome: Outcome,
    duration: &'a Milliseconds,
) -> [(&'static str, Value<'a>); 6] {
    [
        ("subject", Text(caller.sub.as_deref().unwrap_or("-"))),
        ("org", Text(caller.org_id.as_deref().unwrap_or("-"))),
        (
            "client_id",
            Text(caller.client_id.as_deref().unwrap_or("-")),
        ),
        ("tool", Text(tool)),
        ("outcome", Text(outcome.as_str())),
        ("duration_ms", Shown(duration)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_line_by_hand_is_tracings_own() {
        use crate::logging::plain::{by_hand_text, traced};
        let mut caller = Caller {
            sub: Some("usr_1".into()),
            org_id: Some("org_1".into()),
            ..Caller::default()
        };
        let duration = crate::logging::milliseconds(std::time::Duration::from_micros(15_049));
        for tool in ["greet_user", "we\"ird tool\t"] {
            let traced = traced(|| audit_line(&caller, tool, Outcome::ToolError, &duration));
            let fields = audit_fields(&caller, tool, Outcome::ToolError, &duration);
            assert_eq!(by_hand_text("tool call", &fields), traced);
            caller.sub = None;
        }
        let traced = traced(|| audit_line(&caller, "t", Outcome::Ok, &duration));
        assert_eq!(
            traced,
            " INFO tool call subject=\"-\" org=\"org_1\" client_id=\"-\" tool=\"t\" \
             outcome=\"ok\" duration_ms=15.0\n"
        );
    }

    #[test]
    fn marks_split_between_pieces_are_seen() {
        let mut scan = Scan::default();
        scan.feed(br#"data: {"jsonrpc":"2.0","id":1,"result":{"content":[],"isErr"#);
        scan.feed(br#"or":true}}"#);
        assert_eq!(scan.outcome(Outcome::Ok), Outcome::ToolError);

        let mut scan = Scan::default();
        scan.feed(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}}"#);
        assert_eq!(scan.outcome(Outcome::Ok), Outcome::Ok);

        // A mark spread over three pieces, one shorter than the mark.
        let mut scan = Scan::default();
        scan.feed(br#"data: {"jsonrpc":"2.0","id":1,"result":{"content":[],"is"#);
        scan.feed(br#"Err"#);
        scan.feed(br#"or":true}}"#);
        assert_eq!(scan.outcome(Outcome::Ok), Outcome::ToolError);

        let mut scan = Scan::default();
        scan.feed(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602}}"#);
        assert_eq!(scan.outcome(Outcome::Ok), Outcome::Error);
        assert_eq!(scan.outcome(Outcome::Denied), Outcome::Denied);
    }

    #[test]
    fn an_answer_event_sent_whole_counts_as_answered() {
        let mut scan = Scan::default();
        scan.feed(b"data: \nid: 0\nretry: 3000\n\n");
        scan.feed(br#"data: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#);
        scan.feed(b"\n\n");
        assert!(
            !scan.answered,
            "priming and progress events are not the answer"
        );
        scan.feed(br#"data: {"jsonrpc":"2.0","id":1,"result":{"content":[]"#);
        assert!(!scan.answered, "the answer's event is not complete yet");
        scan.feed(b"}}\nid: 2\n\n");
        assert!(scan.answered);
        assert_eq!(scan.outcome(Outcome::Ok), Outcome::Ok);
    }

    /// A client that closes its event stream once it has its answer (the Python SDK does) was
    /// logged as `error`: the stream had not reached its end.
    #[test]
    fn a_stream_closed_after_its_answer_is_not_an_error() {
        use futures::StreamExt;
        let answer = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n";
        // The answer, then a stream that stays open.
        let events = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(answer))])
            .chain(futures::stream::pending());
        let mut audited = Audited {
            inner: Body::from_stream(events),
            call: None,
            outcome: Outcome::Ok,
            scan: Scan::default(),
            finished: false,
        };
        let waker = futures::task::noop_waker();
        let mut context = Context::from_waker(&waker);
        let frame = Pin::new(&mut audited).poll_frame(&mut context);
        assert!(matches!(frame, Poll::Ready(Some(Ok(_)))));
        assert!(audited.scan.answered);
        assert!(
            !audited.finished,
            "the stream is still open: the client closes it"
        );
    }
}
