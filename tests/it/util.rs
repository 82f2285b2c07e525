//! Shared test helpers: fixture keys, token minting, a controllable JWKS server, the in-process
//! router, and the binary with a scrubbed environment.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use scalekit_mcp::auth::jwks::JwksCache;
use scalekit_mcp::auth::keys::KeySet;
use scalekit_mcp::cli::{Cli, Command};
use scalekit_mcp::config::ServeConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub const ISSUER: &str = "https://env.example.scalekit.dev";
pub const RESOURCE_ISSUER: &str = "https://env.example.scalekit.dev/resources/res_123";
pub const AUDIENCE: &str = "http://localhost:3002/";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a valid Scalekit-shaped token; tests change what they need.
pub fn good_claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "res_123"],
        "sub": "usr_42",
        "client_id": "skc_client",
        "oid": "org_7",
        "scope": "mcp:tools user:read",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
        "jti": "tok-1",
    })
}

/// Signs `claims` with RS256 using fixture key `key` ("a" or "b"), header kid `kid`.
pub fn mint_with(claims: &Value, key: &str, kid: Option<&str>) -> String {
    let pem = std::fs::read(fixture(&format!("rsa-{key}.pem"))).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

/// A token signed by key a with kid key-a.
pub fn mint(claims: &Value) -> String {
    mint_with(claims, "a", Some("key-a"))
}

/// A compact JWT with arbitrary header and payload JSON and a given signature segment.
pub fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    use base64::Engine;
    let encode = |value: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    };
    format!("{}.{}.{signature}", encode(header), encode(claims))
}

pub fn keys(name: &str) -> KeySet {
    KeySet::from_jwks_json(fixture_text(name).as_bytes()).unwrap()
}

/// Parses `serve` flags the way the binary does.
pub fn serve_config(args: &[&str]) -> ServeConfig {
    let argv = ["scalekit-mcp", "serve"]
        .into_iter()
        .chain(args.iter().copied());
    let Command::Serve(serve) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not serve");
    };
    ServeConfig::from_args(&serve).unwrap()
}

/// The default flags of in-process tests: Scalekit-style issuer and audience.
pub const BASE_ARGS: &[&str] = &[
    "--sk-env-url",
    ISSUER,
    "--audience",
    AUDIENCE,
    "--stateless",
];

/// The in-process app with `args` and a fixed key set.
pub fn app(args: &[&str], keys: KeySet) -> Router {
    app_with_cache(args, Arc::new(JwksCache::fixed(keys)))
}

pub fn app_with_cache(args: &[&str], cache: Arc<JwksCache>) -> Router {
    let config = serve_config(args);
    scalekit_mcp::server::router(&config, cache, CancellationToken::new()).unwrap()
}

/// A response read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    /// The JSON-RPC message in a JSON body or in the last SSE `data:` line.
    pub fn rpc(&self) -> Value {
        if self
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
        {
            let data = self
                .body
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim)
                .rfind(|data| data.starts_with('{'))
                .unwrap_or_else(|| panic!("no data line in {}", self.body));
            serde_json::from_str(data).unwrap()
        } else {
            self.json()
        }
    }
}

/// Sends a request to the in-process app.
pub async fn send(app: &Router, request: http::Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A POST of a JSON-RPC message to the MCP endpoint at `/`.
pub fn mcp_post(token: Option<&str>) -> http::request::Builder {
    let mut builder = http::Request::post("/")
        .header("host", "localhost:3002")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
}

/// Finishes an MCP POST builder with `message`, replacing its Host header.
pub fn with_host(
    builder: http::request::Builder,
    host: &str,
    message: &Value,
) -> http::Request<Body> {
    let mut request = builder.body(Body::from(message.to_string())).unwrap();
    request
        .headers_mut()
        .insert("host", http::HeaderValue::from_str(host).unwrap());
    request
}

pub fn call_greet(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": "greet_user", "arguments": {"name": name}}})
}

pub fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "tests", "version": "1"}}})
}

/// POSTs `message` with `token` to the in-process app.
pub async fn post(app: &Router, token: Option<&str>, message: &Value) -> Reply {
    let request = mcp_post(token)
        .body(Body::from(message.to_string()))
        .unwrap();
    send(app, request).await
}

/// The text of the first content block of a tools/call result.
pub fn tool_text(rpc: &Value) -> &str {
    rpc["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {rpc}"))
}

/// The `error_description` attribute of a challenge.
pub fn challenge_description(www_authenticate: &str) -> &str {
    www_authenticate
        .split("error_description=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("")
}

/// A JWKS (and metadata) server on 127.0.0.1 whose answers the test controls.
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<JwksState>>,
    hits: Arc<AtomicUsize>,
}

struct JwksState {
    status: u16,
    body: String,
    delay: Duration,
}

impl JwksServer {
    /// Starts serving `body` at `/keys` (and the RFC 8414 metadata pointing at it) on its own
    /// runtime thread, so sync and async tests can both use it.
    pub fn start(body: &str) -> Self {
        let state = Arc::new(Mutex::new(JwksState {
            status: 200,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }));
        let hits = Arc::new(AtomicUsize::new(0));
        let (keys_state, counted) = (state.clone(), hits.clone());
        let addr = serve_on_a_thread(move |addr| {
            Router::new()
                .route(
                    "/keys",
                    axum::routing::get(move || {
                        let state = keys_state.clone();
                        let hits = counted.clone();
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            let (status, body, delay) = {
                                let state = state.lock().unwrap();
                                (state.status, state.body.clone(), state.delay)
                            };
                            tokio::time::sleep(delay).await;
                            (http::StatusCode::from_u16(status).unwrap(), body)
                        }
                    }),
                )
                .route(
                    "/.well-known/oauth-authorization-server",
                    axum::routing::get(move || async move {
                        axum::Json(json!({
                            "issuer": format!("http://{addr}"),
                            "jwks_uri": format!("http://{addr}/keys"),
                        }))
                    }),
                )
        });
        JwksServer { addr, state, hits }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, status: u16, body: &str) {
        let mut state = self.state.lock().unwrap();
        state.status = status;
        state.body = body.to_owned();
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Environment variables the binary reads; cleared so the developer's shell cannot leak in.
pub const SERVE_ENV: &[&str] = &[
    "SK_ENV_URL",
    "SK_CLIENT_ID",
    "SK_CLIENT_SECRET",
    "EXPECTED_AUDIENCE",
    "PROTECTED_RESOURCE_METADATA",
    "PORT",
    "LOG_LEVEL",
    "RUST_LOG",
    "RESOURCE_METADATA_URL",
    "SCALEKIT_MCP_TRANSPORT",
    "SCALEKIT_MCP_HOST",
    "SCALEKIT_MCP_PUBLIC_URL",
    "SCALEKIT_MCP_PATH",
    "SCALEKIT_MCP_STATELESS",
    "SCALEKIT_MCP_ISSUERS",
    "SCALEKIT_MCP_JWKS_URL",
    "SCALEKIT_MCP_RESOURCE",
    "SCALEKIT_MCP_AUTHORIZATION_SERVERS",
    "SCALEKIT_MCP_SCOPES_SUPPORTED",
    "SCALEKIT_MCP_REQUIRED_SCOPES",
    "SCALEKIT_MCP_ALGORITHMS",
    "SCALEKIT_MCP_LEEWAY",
    "SCALEKIT_MCP_JWKS_TTL",
    "SCALEKIT_MCP_JWKS_COOLDOWN",
    "SCALEKIT_MCP_ALLOWED_HOSTS",
    "SCALEKIT_MCP_CORS_ORIGINS",
    "SCALEKIT_MCP_MAX_BODY_BYTES",
    "SCALEKIT_MCP_MAX_HEADER_BYTES",
    "SCALEKIT_MCP_REQUEST_TIMEOUT",
    "SCALEKIT_MCP_IDLE_TIMEOUT",
    "SCALEKIT_MCP_MAX_CONNECTIONS",
    "SCALEKIT_MCP_SHUTDOWN_TIMEOUT",
    "SCALEKIT_MCP_LOG_FORMAT",
    "SCALEKIT_MCP_HOME",
    "SCALEKIT_MCP_SERVER",
    "SCALEKIT_MCP_TOKEN",
    "SCALEKIT_MCP_STORAGE",
    "NO_COLOR",
];

/// The binary, run in `dir` with a scrubbed environment (HOME and config pointed into `dir`).
pub fn binary(dir: &std::path::Path) -> std::process::Command {
    program(
        std::path::Path::new(env!("CARGO_BIN_EXE_scalekit-mcp")),
        dir,
    )
}

/// An example program of this package (`cargo test` builds them next to the test binary).
pub fn example_path(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test` (which builds the examples)",
        path.display()
    );
    path
}

/// `path`, run in `dir` with the same scrubbed environment as [`binary`].
pub fn program(path: &std::path::Path, dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(path);
    for name in SERVE_ENV {
        command.env_remove(name);
    }
    // And any other setting of ours the developer's shell may hold, and any proxy it names:
    // tests reach their own servers on loopback.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("SCALEKIT_MCP_")
            || name_text.to_ascii_uppercase().ends_with("_PROXY")
        {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("SCALEKIT_MCP_HOME", dir.join(".scalekit-mcp"))
        .env("NO_COLOR", "1")
        // Never the developer's keyring: no session bus is reachable from tests.
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/scalekit-mcp-test-bus",
        )
        .env("XDG_RUNTIME_DIR", dir)
        .env_remove("SCALEKIT_MCP_STORAGE")
        .env_remove("SCALEKIT_MCP_SERVER")
        .env_remove("SCALEKIT_MCP_TOKEN")
        .env_remove("SCALEKIT_MCP_CLIENT_ID");
    command
}

/// Serves the router `build` makes (given the address it will have) on a loopback port, from a
/// thread and runtime of its own, so that a test blocking its own thread (waiting on a `serve`
/// process that calls this one) cannot stall it. Returns the address.
pub fn serve_on_a_thread(build: impl FnOnce(SocketAddr) -> Router + Send + 'static) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, build(addr)).await.unwrap();
        });
    });
    addr
}

/// A free port on 127.0.0.1 (bound then released: good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `serve` process, killed on drop; its stderr is collected into a file.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `serve` with the Scalekit-style issuer and audience, keys from a local JWKS (fixture
    /// key a: `mint` signs for it), `args` and `env`, and waits until it is ready.
    pub fn start_with_keys(args: &[&str], env: &[(&str, &str)]) -> (Server, JwksServer) {
        let (server, jwks) = Server::start_with_keys_unready(args, env);
        server.wait_until(|| {
            server
                .get_blocking("/ready")
                .is_some_and(|(status, _)| status == 200)
        });
        (server, jwks)
    }

    /// [`Server::start_with_keys`], without waiting for `/ready` (for a server that is not to
    /// be ready, such as a gateway whose upstream does not answer).
    pub fn start_with_keys_unready(args: &[&str], env: &[(&str, &str)]) -> (Server, JwksServer) {
        let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
        let jwks_url = format!("{}/keys", jwks.url());
        let mut all = vec![
            "--sk-env-url",
            ISSUER,
            "--jwks-url",
            &jwks_url,
            "--audience",
            AUDIENCE,
        ];
        all.extend_from_slice(args);
        let server = Server::start_in(tempfile::tempdir().unwrap(), &all, env);
        (server, jwks)
    }

    /// Starts `serve --port <free> args…` in a temp dir and waits for /health.
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), args, &[])
    }

    /// Starts `serve` with `env`, on a free port unless `env` sets `PORT`. Another test can take
    /// a free port between the probe and the server's bind; then it starts again on another.
    pub fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        let program = std::path::Path::new(env!("CARGO_BIN_EXE_scalekit-mcp"));
        Server::start_program(program, &["serve"], dir, args, env)
    }

    /// Starts `program` with `command` (its subcommand, if any), `--port <free>` unless `env`
    /// sets `PORT`, and `args`, and waits until it logs that it is listening and serves /health.
    pub fn start_program(
        program: &std::path::Path,
        command_words: &[&str],
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let fixed_port = env
            .iter()
            .find(|(name, _)| *name == "PORT")
            .map(|(_, value)| value.parse::<u16>().unwrap());
        let stderr_path = dir.path().join("stderr.log");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = fixed_port.unwrap_or_else(free_port);
            let stderr = std::fs::File::create(&stderr_path).unwrap();
            let mut command = self::program(program, dir.path());
            command.args(command_words);
            if fixed_port.is_none() {
                command.args(["--port", &port.to_string()]);
            }
            command
                .args(args)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(stderr);
            let mut child = command.spawn().unwrap();
            match wait_until_serving(&mut child, port, &stderr_path) {
                Ok(()) => {
                    return Server {
                        child,
                        port,
                        stderr_path,
                        _dir: dir,
                    };
                }
                Err(stderr)
                    if fixed_port.is_none()
                        && attempts < 3
                        && stderr.contains("is another server using the port") => {}
                Err(stderr) => panic!("serve exited before serving; stderr:\n{stderr}"),
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// A GET with a plain TCP client, usable from sync code; `None` when the server is not up.
    pub fn get_blocking(&self, path: &str) -> Option<(u16, String)> {
        get_on_port(self.port, path)
    }

    /// The server's stderr once it holds `count` lines containing `needle`. A line logged while
    /// a request was handled can reach stderr a moment after the answer: the server's workers
    /// write their lines out in batches (see `logging`), so a test waits for the lines it reads.
    pub fn stderr_with(&self, needle: &str, count: usize) -> String {
        self.wait_until(|| self.stderr().matches(needle).count() >= count);
        self.stderr()
    }

    /// Polls `condition` every 50 ms for up to 30 s (generous: CI machines are slow and busy).
    pub fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        let started = Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out; server stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A GET to 127.0.0.1:`port` with a plain TCP client; `None` when nothing answers in 15 s.
fn get_on_port(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

/// Waits (up to 30 s) until the child has bound its port (it logs that after binding, so a
/// /health answer cannot come from another test's server on the same port) and serves /health.
/// `Err(stderr)` when the child exits first.
fn wait_until_serving(
    child: &mut Child,
    port: u16,
    stderr_path: &std::path::Path,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
        if child.try_wait().unwrap().is_some() {
            return Err(stderr);
        }
        if stderr.contains("listening")
            && get_on_port(port, "/health").is_some_and(|(status, _)| status == 200)
        {
            return Ok(());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out; server stderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens a stateful session on a running server (initialize + initialized), then POSTs `message`.
pub async fn http_session_call(url: &str, token: &str, message: &Value) -> Reply {
    let init = http_post(url, Some(token), &initialize()).await;
    assert_eq!(init.status, 200, "initialize: {}", init.body);
    let session = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_owned();
    let client = reqwest::Client::new();
    let send = |body: &Value| {
        client
            .post(url)
            .bearer_auth(token)
            .header("mcp-session-id", &session)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let initialized = send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    assert_eq!(initialized.status(), 202);
    let response = send(message).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

/// POSTs a JSON-RPC message to a running server's MCP endpoint.
pub async fn http_post(url: &str, token: Option<&str>, message: &Value) -> Reply {
    let client = reqwest::Client::new();
    let mut request = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(message.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

/// A scripted MCP server (stateless Streamable HTTP, JSON responses) that is also a tiny
/// authorization server token endpoint, for what `serve` cannot show: typed parameters, tool
/// errors, binary content, pagination, slowness, and token refresh.
///
/// Tools (two pages): `echo` returns its arguments as structured content; `fail` reports an
/// error; `slow` answers after `delay`; `media` returns an image and a resource.
#[derive(Clone)]
pub struct FakeMcp {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
pub struct FakeState {
    /// When set, MCP requests need `Authorization: Bearer <this>`.
    pub required_token: Option<String>,
    /// When set, a wrong token gets a bare 401, without a `WWW-Authenticate` challenge, whose
    /// body echoes the Authorization header.
    pub unchallenged: bool,
    /// When set, a valid token still gets 403 insufficient_scope for this scope.
    pub forbidden_scope: Option<String>,
    pub delay: Duration,
    /// The `params` of every initialize received.
    pub initializations: Vec<Value>,
    /// The `params` of every tools/call received.
    pub calls: Vec<Value>,
    /// The Authorization header of every MCP request (None when absent).
    pub authorizations: Vec<Option<String>>,
    /// The form bodies posted to /token.
    pub token_requests: Vec<String>,
    /// The access token /token issues.
    pub issued_token: String,
}

impl FakeMcp {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            issued_token: "fresh-access-token".into(),
            ..FakeState::default()
        }));
        let (mcp_state, token_state) = (state.clone(), state.clone());
        let addr = serve_on_a_thread(move |_| {
            Router::new()
                .route(
                    "/mcp",
                    axum::routing::post(move |headers: http::HeaderMap, body: String| {
                        fake_mcp(mcp_state.clone(), headers, body)
                    })
                    .get(|| async { http::StatusCode::METHOD_NOT_ALLOWED })
                    .delete(|| async { http::StatusCode::METHOD_NOT_ALLOWED }),
                )
                .route(
                    "/token",
                    axum::routing::post(move |body: String| {
                        let state = token_state.clone();
                        async move {
                            let mut state = state.lock().unwrap();
                            state.token_requests.push(body);
                            axum::Json(json!({
                                "access_token": state.issued_token,
                                "token_type": "Bearer",
                                "expires_in": 3600,
                                "refresh_token": "rotated-refresh-token",
                            }))
                        }
                    }),
                )
        });
        FakeMcp { addr, state }
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }
}

fn fake_tools(page: &str) -> (Value, Option<&'static str>) {
    match page {
        "" => (
            json!([
                {"name": "echo", "description": "Returns its arguments.", "inputSchema": {
                    "type": "object",
                    "properties": {
                        "zip": {"type": "string", "description": "A zip code"},
                        "count": {"type": "integer"},
                        "ratio": {"type": "number"},
                        "flag": {"type": "boolean"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "meta": {"type": "object"}
                    },
                    "required": ["zip"]
                }},
                {"name": "fail", "description": "Always reports an error.",
                 "inputSchema": {"type": "object"}}
            ]),
            Some("page-2"),
        ),
        _ => (
            json!([
                {"name": "slow", "inputSchema": {"type": "object"}},
                {"name": "media", "description": "An image and a resource.",
                 "inputSchema": {"type": "object"}}
            ]),
            None,
        ),
    }
}

async fn fake_mcp(
    state: Arc<Mutex<FakeState>>,
    headers: http::HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let (required, forbidden, delay, unchallenged) = {
        let mut state = state.lock().unwrap();
        state.authorizations.push(authorization.clone());
        (
            state.required_token.clone(),
            state.forbidden_scope.clone(),
            state.delay,
            state.unchallenged,
        )
    };
    if let Some(required) = required {
        if authorization.as_deref() != Some(&format!("Bearer {required}")) && unchallenged {
            // Careless on purpose: the body echoes the credentials it refused.
            let echo = format!("no entry for {}", authorization.as_deref().unwrap_or("-"));
            return (http::StatusCode::UNAUTHORIZED, echo).into_response();
        }
        if authorization.as_deref() != Some(&format!("Bearer {required}")) {
            let challenge = match authorization {
                None => "Bearer realm=\"fake\"".to_owned(),
                Some(_) => "Bearer realm=\"fake\", error=\"invalid_token\", error_description=\"token not accepted\"".to_owned(),
            };
            return (
                http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", challenge)],
            )
                .into_response();
        }
        if let Some(scope) = forbidden {
            let challenge = format!(
                "Bearer realm=\"fake\", scope=\"{scope}\", error=\"insufficient_scope\", error_description=\"missing required scope: {scope}\""
            );
            return (
                http::StatusCode::FORBIDDEN,
                [("www-authenticate", challenge)],
            )
                .into_response();
        }
    }
    let message: Value = serde_json::from_str(&body).unwrap();
    let Some(id) = message.get("id").cloned() else {
        return http::StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").cloned().unwrap_or(json!({}));
    let result = match message["method"].as_str().unwrap_or("") {
        "initialize" => {
            state.lock().unwrap().initializations.push(params.clone());
            json!({
            "protocolVersion": params["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1"}
            })
        }
        "tools/list" => {
            let (tools, next) = fake_tools(params["cursor"].as_str().unwrap_or(""));
            let mut result = json!({ "tools": tools });
            if let Some(next) = next {
                result["nextCursor"] = json!(next);
            }
            result
        }
        "tools/call" => {
            state.lock().unwrap().calls.push(params.clone());
            let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
            match params["name"].as_str().unwrap_or("") {
                "echo" => json!({
                    "content": [{"type": "text", "text": arguments.to_string()}],
                    "structuredContent": arguments,
                    "isError": false
                }),
                "fail" => json!({
                    "content": [{"type": "text", "text": "the widget is broken"}],
                    "isError": true
                }),
                "slow" => {
                    tokio::time::sleep(delay).await;
                    json!({"content": [{"type": "text", "text": "finally"}]})
                }
                "media" => json!({"content": [
                    {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
                    {"type": "resource", "resource": {
                        "uri": "file:///report.txt", "mimeType": "text/plain", "text": "hello"}}
                ]}),
                other => {
                    return axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32602, "message": format!("unknown tool {other}")}}))
                    .into_response();
                }
            }
        }
        _ => json!({}),
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// `initialize` then `notifications/initialized`, as a client opens a session: its id.
pub async fn open_session(app: &Router, token: &str) -> Result<String, Reply> {
    let init = post(app, Some(token), &initialize()).await;
    let Some(id) = init.header("mcp-session-id").map(str::to_owned) else {
        return Err(init);
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let reply = in_session(app, token, &id, &initialized).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    Ok(id)
}

/// POSTs `message` over HTTP in `session` with `token`; the response, its body unread.
pub async fn post_in_session(
    url: &str,
    token: &str,
    session: &str,
    message: &Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("mcp-session-id", session)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(message.to_string())
        .send()
        .await
        .unwrap()
}

pub async fn in_session(app: &Router, token: &str, id: &str, message: &Value) -> Reply {
    let request = mcp_post(Some(token))
        .header("mcp-session-id", id)
        .body(Body::from(message.to_string()))
        .unwrap();
    send(app, request).await
}
