//! The gateway's HTTP client for an HTTP upstream.
//!
//! A plain `http://` upstream that no proxy setting of the environment intercepts (the common
//! case: the server beside the gateway, on loopback or in the same pod) is reached on kept-alive
//! HTTP/1.1 connections of the gateway's own, over hyper's connection API. They are opened by
//! hyper-util's connector, as reqwest opens its own: the system's resolver, IPv6 and IPv4 raced,
//! no Nagle delay. Anything else (`https://`, a URL with credentials, or a proxy named by
//! `HTTP_PROXY`/`ALL_PROXY` and not excluded by `NO_PROXY`) goes through reqwest, which brings
//! TLS, basic authentication and proxies. Which one is decided once, from the URL and the
//! environment, by the rules reqwest applies (hyper-util's proxy matcher, which reqwest uses).
//!
//! Why not reqwest for everything: on the gateway's hot path it costs a bare HTTP/1.1 proxy
//! about 15 % of its throughput. Per request it clones its connector and its header map, and
//! parses the URL again for every answer. See docs/performance.md.
//!
//! Either way, an answer is an [`UpstreamResponse`]: its head, and its body as it comes. A direct
//! connection goes back to the pool once its answer's body has been read to the end; one whose
//! answer is dropped unread is closed, since HTTP/1.1 cannot skip the rest of it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use tower::ServiceExt;

use crate::error::error_chain;

/// An upstream's answer: its head, and its body as it comes.
pub type UpstreamResponse = http::Response<Body>;

/// The `User-Agent` of every request to the upstream.
const USER_AGENT: HeaderValue = HeaderValue::from_static(concat!(
    "scalekit-mcp/",
    env!("CARGO_PKG_VERSION"),
    " gateway"
));

/// Idle connections kept at most (more are closed when their answer ends).
const MAX_IDLE: usize = 256;

/// How long an idle connection is kept for reuse.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Sends requests to one upstream URL: see the module documentation.
pub struct UpstreamClient {
    url: reqwest::Url,
    way: Way,
}

enum Way {
    Direct(Arc<Pool>),
    /// Built on first use: loading the TLS roots takes a while.
    Reqwest(OnceLock<reqwest::Client>),
}

impl UpstreamClient {
    /// The client for `url`, direct when the URL and the environment allow it.
    pub fn new(url: reqwest::Url) -> Self {
        let proxies = Matcher::from_system();
        let way = match Pool::for_url(&url, &proxies) {
            Some(pool) => Way::Direct(Arc::new(pool)),
            None => {
                if url.scheme() == "http" && !has_credentials(&url) {
                    tracing::info!(
                        "requests to the upstream go through the proxy named in the environment \
                         (HTTP_PROXY or ALL_PROXY; NO_PROXY lists the hosts reached directly)"
                    );
                }
                Way::Reqwest(OnceLock::new())
            }
        };
        Self { url, way }
    }

    /// Sends a request with `headers` (and a `User-Agent`) and `body` to the URL, and returns
    /// the answer's head. An error is the reason, naming no URL (one may hold a password).
    pub async fn send(
        &self,
        method: Method,
        mut headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<UpstreamResponse, String> {
        headers.insert(header::USER_AGENT, USER_AGENT);
        match &self.way {
            Way::Direct(pool) => pool.send(method, headers, body.unwrap_or_default()).await,
            Way::Reqwest(client) => {
                let client = client.get_or_init(|| {
                    reqwest::Client::builder()
                        .pool_max_idle_per_host(MAX_IDLE)
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap_or_default()
                });
                // The builder, not a bare `reqwest::Request`: it turns a URL's user and password
                // into basic authentication (which `headers` may replace).
                let mut request = client.request(method, self.url.clone()).headers(headers);
                if let Some(body) = body {
                    request = request.body(body);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|error| error_chain(&error.without_url()))?;
                Ok(http::Response::from(response)
                    .map(|body| Body::new(body.map_err(reqwest::Error::without_url))))
            }
        }
    }
}

/// Whether `url` carries a user name or password (which reqwest sends as basic authentication).
fn has_credentials(url: &reqwest::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Kept-alive connections to a plain HTTP upstream, the most recently used first.
struct Pool {
    connector: HttpConnector,
    /// `http://host:port`, to connect to.
    origin: Uri,
    /// The request target: the URL's path and query.
    target: Uri,
    /// The `Host` header: the URL's host, and its port if it names one.
    host: HeaderValue,
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    connection: SendRequest<Full<Bytes>>,
    since: Instant,
}

impl Pool {
    /// The pool for `url`, if it is plain HTTP that none of `proxies` intercepts.
    fn for_url(url: &reqwest::Url, proxies: &Matcher) -> Option<Self> {
        if url.scheme() != "http" || has_credentials(url) {
            return None;
        }
        let uri: Uri = url.as_str().parse().ok()?;
        if proxies.intercept(&uri).is_some() {
            return None;
        }
        let authority = uri.authority()?;
        let port = url.port_or_known_default()?;
        let mut connector = HttpConnector::new();
        // Each message is written whole: no waiting for more to fill a segment.
        connector.set_nodelay(true);
        Some(Self {
            connector,
            origin: format!("http://{}:{port}", authority.host()).parse().ok()?,
            target: uri.path_and_query()?.as_str().parse().ok()?,
            host: HeaderValue::from_str(authority.as_str()).ok()?,
            idle: Mutex::default(),
        })
    }

    async fn send(
        self: &Arc<Self>,
        method: Method,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, String> {
        headers.insert(header::HOST, self.host.clone());
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.target.clone();
        *request.headers_mut() = headers;
        loop {
            let (mut connection, reused) = match self.idle_connection().await {
                Some(connection) => (connection, true),
                None => (self.connect().await?, false),
            };
            match connection.try_send_request(request).await {
                Ok(response) => {
                    let pool = self.clone();
                    return Ok(response.map(|incoming| {
                        Body::new(PooledBody {
                            incoming,
                            connection: Some((connection, pool)),
                        })
                    }));
                }
                Err(mut error) => match error.take_message() {
                    // A kept-alive connection the upstream closed before the request went out
                    // (its idle timeout): the request is whole, so it goes on a fresh one.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(error_chain(&error.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open; older ones past
    /// [`IDLE_TIMEOUT`] are closed on the way.
    async fn idle_connection(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let mut connection = {
                let mut idle = self.lock();
                let now = Instant::now();
                while idle
                    .front()
                    .is_some_and(|oldest| now.duration_since(oldest.since) > IDLE_TIMEOUT)
                {
                    idle.pop_front();
                }
                idle.pop_back()?.connection
            };
            // Ready at once but for the moment hyper takes to finish the previous exchange.
            if connection.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = self
            .connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(|error| error_chain(&error))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(|error| error_chain(&error))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error_chain(&error), "a connection to the upstream ended");
            }
        });
        Ok(sender)
    }

    fn give_back(&self, connection: SendRequest<Full<Bytes>>) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE && !connection.is_closed() {
            idle.push_back(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// An answer's body on a direct connection, which goes back to the pool when the body ends.
struct PooledBody {
    incoming: Incoming,
    connection: Option<(SendRequest<Full<Bytes>>, Arc<Pool>)>,
}

impl PooledBody {
    fn ended(&mut self) {
        if let Some((connection, pool)) = self.connection.take() {
            pool.give_back(connection);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.incoming).poll_frame(context);
        match &polled {
            Poll::Ready(None) => self.ended(),
            // The connection is broken: it goes with this body.
            Poll::Ready(Some(Err(_))) => self.connection = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (a 202, say) need not be read for the connection to be reusable.
        if self.incoming.is_end_stream() {
            self.ended();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::ConnectInfo;
    use axum::response::IntoResponse;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    fn no_proxies() -> Matcher {
        Matcher::builder().build()
    }

    #[test]
    fn plain_http_is_direct_and_the_rest_goes_through_reqwest() {
        let direct = Pool::for_url(&url("http://127.0.0.1:8080/mcp?x=1"), &no_proxies()).unwrap();
        assert_eq!(direct.origin, "http://127.0.0.1:8080/");
        assert_eq!(direct.target, "/mcp?x=1");
        assert_eq!(direct.host, "127.0.0.1:8080");
        let default_port = Pool::for_url(&url("http://localhost/"), &no_proxies()).unwrap();
        assert_eq!(default_port.origin, "http://localhost:80/");
        assert_eq!(default_port.host, "localhost");
        let v6 = Pool::for_url(&url("http://[::1]:9000/"), &no_proxies()).unwrap();
        assert_eq!(v6.origin, "http://[::1]:9000/");
        assert!(Pool::for_url(&url("https://example.com/mcp"), &no_proxies()).is_none());
        // Credentials in the URL are reqwest's to send (as basic authentication).
        let with_password = url("http://user:secret@127.0.0.1:8080/");
        assert!(Pool::for_url(&with_password, &no_proxies()).is_none());
    }

    #[test]
    fn a_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host() {
        let proxies = Matcher::builder()
            .http("http://proxy.internal:3128")
            .no("localhost,127.0.0.1")
            .build();
        assert!(Pool::for_url(&url("http://upstream.internal:8080/mcp"), &proxies).is_none());
        assert!(Pool::for_url(&url("http://127.0.0.1:8080/mcp"), &proxies).is_some());
        assert!(Pool::for_url(&url("http://localhost:8080/mcp"), &proxies).is_some());
    }

    /// A server answering each request with its `Host`, target, `User-Agent` and the client's
    /// port (one port: one connection); `POST /empty` gets an empty 202.
    async fn echo_server() -> SocketAddr {
        let echo = |ConnectInfo(peer): ConnectInfo<SocketAddr>, request: axum::extract::Request| async move {
            if request.uri().path() == "/empty" {
                return http::StatusCode::ACCEPTED.into_response();
            }
            let header = |name| {
                let value = request.headers().get(name).and_then(|v| v.to_str().ok());
                value.unwrap_or_default().to_owned()
            };
            axum::Json(serde_json::json!({
                "host": header(header::HOST),
                "target": request.uri().to_string(),
                "agent": header(header::USER_AGENT),
                "authorization": header(header::AUTHORIZATION),
                "port": peer.port(),
            }))
            .into_response()
        };
        let app = axum::Router::new().fallback(echo);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await });
        address
    }

    async fn echoed(client: &UpstreamClient) -> serde_json::Value {
        let response = client.send(Method::POST, HeaderMap::new(), Some(Bytes::from("{}")));
        let body = response.await.unwrap().into_body();
        serde_json::from_slice(&axum::body::to_bytes(body, 1 << 16).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_direct_connection_is_kept_alive_and_names_the_host_and_target() {
        let address = echo_server().await;
        let client = UpstreamClient::new(url(&format!("http://{address}/mcp?x=1")));
        assert!(matches!(client.way, Way::Direct(_)));
        let first = echoed(&client).await;
        assert_eq!(first["host"], address.to_string());
        assert_eq!(first["target"], "/mcp?x=1");
        assert!(
            first["agent"]
                .as_str()
                .unwrap()
                .starts_with("scalekit-mcp/"),
            "{first}"
        );
        for _ in 0..3 {
            assert_eq!(echoed(&client).await["port"], first["port"]);
        }
    }

    #[tokio::test]
    async fn a_user_and_password_in_the_url_go_through_reqwest_as_basic_authentication() {
        let address = echo_server().await;
        let client = UpstreamClient::new(url(&format!("http://ada:pa%20ss@{address}/mcp")));
        assert!(matches!(client.way, Way::Reqwest(_)));
        let echoed = echoed(&client).await;
        assert_eq!(echoed["authorization"], "Basic YWRhOnBhIHNz", "ada:pa ss");
        assert_eq!(echoed["target"], "/mcp");
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_closes_its_connection_and_an_empty_one_does_not() {
        let address = echo_server().await;
        let client = UpstreamClient::new(url(&format!("http://{address}/")));
        let first = echoed(&client).await;
        let unread = client
            .send(Method::POST, HeaderMap::new(), None)
            .await
            .unwrap();
        drop(unread);
        let after_unread = echoed(&client).await;
        assert_ne!(after_unread["port"], first["port"]);
        let empty_client = UpstreamClient::new(url(&format!("http://{address}/empty")));
        for _ in 0..2 {
            let accepted = empty_client
                .send(Method::POST, HeaderMap::new(), None)
                .await
                .unwrap();
            assert_eq!(accepted.status(), http::StatusCode::ACCEPTED);
        }
        let Way::Direct(pool) = &empty_client.way else {
            unreachable!()
        };
        assert_eq!(pool.lock().len(), 1, "both 202s went on one connection");
    }

    /// A server that closes each connection once it has answered, without saying so first
    /// (as one whose keep-alive timeout has just run out).
    async fn closing_server(accepted: Arc<AtomicUsize>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::Relaxed);
                let mut request = Vec::new();
                let mut buffer = [0; 4096];
                while !request.ends_with(b"\r\n\r\n{}") {
                    let Ok(read @ 1..) = stream.read(&mut buffer).await else {
                        break;
                    };
                    request.extend_from_slice(&buffer[..read]);
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                let _ = stream.write_all(answer).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_used_again() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let address = closing_server(accepted.clone()).await;
        let client = UpstreamClient::new(url(&format!("http://{address}/")));
        for _ in 0..5 {
            let sent = client.send(Method::POST, HeaderMap::new(), Some(Bytes::from("{}")));
            let body = sent.await.unwrap().into_body();
            assert_eq!(axum::body::to_bytes(body, 64).await.unwrap(), "{}");
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 5);
    }
}
