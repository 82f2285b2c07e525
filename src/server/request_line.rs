//! The request line: one INFO line per request, written when its answer's head is ready, with
//! the method, the path (never the query string, which could hold a token), the status, the
//! latency and the authenticated subject (`-` when there is none).
//!
//! A layer of its own rather than an axum `from_fn` middleware: `from_fn` clones everything below
//! it and boxes the application's future on every request, which cost more than the line itself
//! (`bench/log_cost.py`). [`RequestLineFuture`] wraps the future below in place instead, as the
//! metrics' layer does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use http::{Method, Uri};
use tower::{Layer, Service};

use super::auth::LoggedSubject;
use crate::logging::Milliseconds;

/// Whether the request line is written: the auth middleware asks too, so that it does no work
/// for the line when the level is off (one callsite, so both always agree).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(tracing::Level::INFO)
}

/// Writes the request line of every request through the service it wraps.
#[derive(Clone, Copy)]
pub struct RequestLineLayer;

impl<S> Layer<S> for RequestLineLayer {
    type Service = RequestLines<S>;

    fn layer(&self, inner: S) -> RequestLines<S> {
        RequestLines { inner }
    }
}

/// The service [`RequestLineLayer`] wraps.
#[derive(Clone)]
pub struct RequestLines<S> {
    inner: S,
}

impl<S> Service<Request> for RequestLines<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RequestLineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        RequestLineFuture {
            started: Instant::now(),
            method: request.method().clone(),
            // A clone of the parsed request's shared bytes, not a copy of the path.
            uri: request.uri().clone(),
            answer: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of the service below, its line written when it is ready. Not boxed: the future
    /// below is the whole application's, and boxing it would copy it on every request.
    pub struct RequestLineFuture<F> {
        started: Instant,
        method: Method,
        uri: Uri,
        #[pin]
        answer: F,
    }
}

impl<F> Future for RequestLineFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(Ok(response)) = this.answer.poll(cx) else {
            return Poll::Pending;
        };
        let subject = response
            .extensions()
            .get::<LoggedSubject>()
            .and_then(|subject| subject.0.as_deref())
            .unwrap_or("-");
        let latency = crate::logging::milliseconds(this.started.elapsed());
        write(
            this.method,
            this.uri.path(),
            response.status().as_u16(),
            &latency,
            subject,
        );
        Poll::Ready(Ok(response))
    }
}

/// The request line, written by hand when nothing but the plain text format sees it
/// ([`crate::logging::plain`]).
fn write(method: &Method, path: &str, status: u16, latency: &Milliseconds, subject: &str) {
    if crate::logging::plain::by_hand() {
        let fields = fields(method, path, &status, latency, subject);
        crate::logging::plain::info("request", &fields);
    } else {
        tracing::info!(%method, path, status, latency_ms = %latency, subject, "request");
    }
}

/// The request line's fields, as [`write`] gives them to tracing.
fn fields<'a>(
    method: &'a Method,
    path: &'a str,
    status: &'a u16,
    latency: &'a Milliseconds,
    subject: &'a str,
) -> [(&'static str, crate::logging::plain::Value<'a>); 5] {
    use crate::logging::plain::Value::{Shown, Text};
    [
        ("method", Shown(method)),
        ("path", Text(path)),
        ("status", Shown(status)),
        ("latency_ms", Shown(latency)),
        ("subject", Text(subject)),
    ]
}

#[cfg(test)]
mod tests {
    use crate::logging::plain::{by_hand_text, traced};

    #[test]
    fn the_request_line_by_hand_is_tracings_own() {
        let method = http::Method::POST;
        let latency = crate::logging::milliseconds(std::time::Duration::from_micros(1_234));
        for subject in ["usr_1", "-", "quo\"ted\n"] {
            let traced = traced(|| super::write(&method, "/mcp", 200, &latency, subject));
            let fields = super::fields(&method, "/mcp", &200, &latency, subject);
            assert_eq!(by_hand_text("request", &fields), traced);
            assert!(
                traced.starts_with(
                    " INFO request method=POST path=\"/mcp\" status=200 latency_ms=1.2 subject="
                ),
                "{traced}"
            );
        }
    }
}
