//! Accepting and serving HTTP/1.1 connections: hyper's settings per connection, the idle
//! timeout, and graceful shutdown.
//!
//! `axum::serve` gives hyper no timer, so a connection that never sends a request (or sends half
//! a request head) stays open forever and holds one of the `--max-connections` slots: a few
//! hundred idle sockets were enough to lock everyone else out. Here hyper gets tokio's timer and
//! a header-read timeout: a connection whose next request head has not arrived within
//! `--idle-timeout` (from the moment it opened or its last response ended) is closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::limits::{LimitedListener, LimitedStream};

/// Serves connections from `listener` with `app` until `shutdown` is cancelled, then stops
/// accepting and returns once every open connection has finished its request in flight.
pub async fn serve(
    mut listener: LimitedListener,
    app: Router,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) {
    // Each connection holds a receiver; `closed()` resolves when the last one is dropped.
    let (open_connections, _) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let open = open_connections.subscribe();
        // A child token per connection: each connection task waits on its own token, not on
        // one shared by all (whose lock every connection would take at every request).
        let closing = shutdown.child_token();
        let service = TowerToHyperService::new(WithPeer {
            inner: app.clone(),
            peer: PeerAddr(peer),
        });
        tokio::spawn(async move {
            serve_connection(stream, service, idle_timeout, closing).await;
            drop(open);
        });
    }
    open_connections.closed().await;
}

/// One connection, until the client closes it, it idles past `idle_timeout`, or `closing` is
/// cancelled (then the request in flight finishes and the connection closes).
async fn serve_connection(
    stream: LimitedStream,
    service: TowerToHyperService<WithPeer>,
    idle_timeout: Duration,
    closing: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        biased;
        result = connection.as_mut() => result,
        () = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // A client that goes away mid-request, or an idle connection closed: nothing to act on.
        tracing::debug!(%error, "connection ended");
    }
}

/// The address a request's connection came from, in the request's extensions: the client, or the
/// proxy in front of it (see `client_ip`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The application, with each request marked with its connection's peer.
#[derive(Clone)]
pub struct WithPeer {
    inner: Router,
    peer: PeerAddr,
}

type Incoming = http::Request<hyper::body::Incoming>;

impl Service<Incoming> for WithPeer {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <Router as Service<Incoming>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        <Router as Service<Incoming>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: Incoming) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        self.inner.call(request)
    }
}
