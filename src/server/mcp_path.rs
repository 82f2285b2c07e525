//! The routes behind the bearer-token guard: the MCP endpoint, and 404 for every other path.
//!
//! One path compared by hand rather than an axum `Router`: a router boxes its route's service,
//! clones it and boxes its future on every request, which the one endpoint does not need. The
//! comparison is axum's: the request's path exactly as sent (no trailing-slash or
//! percent-decoding equivalence).

use std::convert::Infallible;
use std::future::{self, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use http::StatusCode;
use serde_json::json;
use tower::Service;

/// `inner` at `path`; everything else is answered 404.
#[derive(Clone)]
pub struct McpPath<S> {
    path: Arc<str>,
    inner: S,
}

impl<S> McpPath<S> {
    pub fn new(path: &str, inner: S) -> Self {
        Self {
            path: path.into(),
            inner,
        }
    }
}

impl<S> Service<Request> for McpPath<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.uri().path() == &*self.path {
            Either::Left(self.inner.call(request))
        } else {
            Either::Right(future::ready(Ok(not_found())))
        }
    }
}

/// The answer for a path this server does not serve (after authentication: an unauthenticated
/// caller learns nothing about which paths exist).
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": "not_found", "error_description": "no such endpoint" })),
    )
        .into_response()
}
