//! Resource limits in front of everything else, each answered with its own status rather than a
//! dropped connection or a crash:
//!
//! | limit | flag | answer |
//! |---|---|---|
//! | header section size | `--max-header-bytes` | 431 Request Header Fields Too Large |
//! | request body size | `--max-body-bytes` | 413 Content Too Large |
//! | time to produce a response | `--request-timeout` | 408 Request Timeout |
//! | open connections | `--max-connections` | 503 Service Unavailable + Retry-After, then close |
//!
//! The header check runs before authentication, so an oversized `Authorization` header (a 64 KiB
//! "token") is refused without being decoded. hyper's own buffer (~400 KiB) bounds memory before
//! that; beyond it hyper answers 431 itself. A declared `Content-Length` over the limit is refused
//! here before authentication; a chunked body is counted by rmcp as it is read (also 413).
//!
//! The timeout covers producing the response head only: a Server-Sent Events stream (a GET
//! stream, or a stateful POST answered as SSE) has its head sent at once and is never cut.

use std::convert::Infallible;
use std::future::{self, Ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

/// Sizes checked per request.
#[derive(Debug, Clone, Copy)]
pub struct SizeLimits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
}

impl SizeLimits {
    /// The refusal for a request whose header section or declared body is over the limit.
    fn refusal(&self, request: &Request) -> Option<Response> {
        let header_bytes: usize = request
            .headers()
            .iter()
            // "name: value\r\n"
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if header_bytes > self.max_header_bytes {
            return Some(refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request_header_fields_too_large",
                format!(
                    "the request headers are larger than {} bytes",
                    self.max_header_bytes
                ),
            ));
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        declared
            .is_some_and(|length| length > self.max_body_bytes as u64)
            .then(|| body_too_large(self.max_body_bytes))
    }
}

/// The size checks as a tower layer, applied around the whole router (see `server::build_app`
/// for why not with `Router::layer`).
impl<S> Layer<S> for SizeLimits {
    type Service = SizeChecked<S>;

    fn layer(&self, inner: S) -> SizeChecked<S> {
        SizeChecked {
            limits: *self,
            inner,
        }
    }
}

/// `inner`, behind the size checks: an oversized request is answered here and never reaches it.
#[derive(Clone)]
pub struct SizeChecked<S> {
    limits: SizeLimits,
    inner: S,
}

impl<S> Service<Request> for SizeChecked<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.limits.refusal(&request) {
            Some(refusal) => Either::Left(future::ready(Ok(refusal))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}

/// The 413 for a body over `--max-body-bytes`, declared or counted while read.
pub(crate) fn body_too_large(max_body_bytes: usize) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!("the request body is larger than {max_body_bytes} bytes"),
    )
}

pub(crate) fn refuse(status: StatusCode, error: &str, description: String) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A TCP listener that holds at most `max` connections open. Over the limit, a connection gets a
/// short 503 with `Retry-After` and is closed: the server sheds load instead of queueing it or
/// running out of file descriptors.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 91\r\n\r\n\
{\"error\":\"temporarily_unavailable\",\"error_description\":\"too many open connections; retry\"}\n";

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (mut stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    // Small JSON-RPC responses: send them at once, not after Nagle's delay.
                    let _ = stream.set_nodelay(true);
                    return (
                        LimitedStream {
                            stream,
                            permit: Some(permit),
                        },
                        addr,
                    );
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, "too many open connections: answering 503");
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                            let _ = stream.write_all(OVERLOADED).await;
                            let _ = stream.shutdown().await;
                        })
                        .await;
                    });
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; its slot is freed when the server starts closing it.
pub struct LimitedStream {
    // Declared first so it is dropped first: on paths that close without a shutdown (a
    // timeout, a reset), the slot is free before the socket closes too.
    permit: Option<OwnedSemaphorePermit>,
    stream: TcpStream,
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Free the slot before the FIN goes out: a client that has read to the end of a
        // `Connection: close` response may connect again at once and must find the slot free,
        // not wait for the connection task to be dropped.
        self.permit = None;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overload_answer_declares_its_length() {
        let text = std::str::from_utf8(OVERLOADED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    /// The release does not wait for the connection task to be dropped (a race a busy machine
    /// loses when a client connects again the moment it has read a response to its end).
    #[tokio::test]
    async fn shutting_down_a_connection_frees_its_slot_while_it_is_still_open() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let permits = Arc::new(Semaphore::new(1));
        let mut stream = LimitedStream {
            stream: accepted.unwrap().0,
            permit: Some(permits.clone().try_acquire_owned().unwrap()),
        };
        assert_eq!(permits.available_permits(), 0);
        stream.shutdown().await.unwrap();
        assert_eq!(
            permits.available_permits(),
            1,
            "the slot waits for the drop"
        );
        drop((stream, client));
    }

    /// End to end: hyper shuts a `Connection: close` connection down, so a client that has read
    /// the response to its end finds the slot free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_connection_frees_its_slot_before_the_client_sees_the_end() {
        use tokio::io::AsyncReadExt;

        let inner = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = inner.local_addr().unwrap();
        let permits = Arc::new(Semaphore::new(1));
        let listener = LimitedListener {
            inner,
            permits: permits.clone(),
        };
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });

        for _ in 0..20 {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert_eq!(permits.available_permits(), 1, "the slot is still held");
        }
    }
}
