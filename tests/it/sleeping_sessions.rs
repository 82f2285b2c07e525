//! Idle sessions sleep (`--session-sleep-after`): plain tool calls are answered without waking
//! them, any other request wakes them with the client's own handshake replayed to a fresh
//! handler, an open stream keeps them awake, and a sleeping session still ends when idle.
//! Driven in-process through a library server whose handler records every handshake it sees.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, InitializeRequestParams, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use scalekit_mcp::tools::ScalekitTools;
use scalekit_mcp::{Config, McpServer};
use serde_json::{Value, json};

use crate::util::*;

/// The built-in tools, with every `initialize` the handler sees recorded (the client's name).
#[derive(Clone)]
struct RecordsHandshakes {
    tools: ScalekitTools,
    handshakes: Arc<Mutex<Vec<String>>>,
}

impl ServerHandler for RecordsHandshakes {
    fn get_info(&self) -> ServerConfig {
        self.tools.get_info()
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let client = request.client_info.name.clone();
        self.handshakes.lock().unwrap().push(client);
        self.tools.initialize(request, context).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tools.call_tool(request, context).await
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.tools.list_tools(request, context).await
    }
}

struct Sleepy {
    app: Router,
    handshakes: Arc<Mutex<Vec<String>>>,
    token: String,
    _jwks: JwksServer,
}

/// A server whose sessions sleep after 200 ms (and end after `idle_timeout`, at most
/// `max_sessions` at once), its keys loaded.
async fn sleepy_server(idle_timeout: &str, max_sessions: usize) -> Sleepy {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let idle_timeout = idle_timeout.parse().unwrap();
    let config = Config::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url(format!("{}/keys", jwks.url()))
        .args(|args| {
            args.session_sleep_after = "200ms".parse().unwrap();
            args.session_idle_timeout = idle_timeout;
            args.max_sessions = max_sessions;
        })
        .build()
        .unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let handler = RecordsHandshakes {
        tools: ScalekitTools::new(),
        handshakes: handshakes.clone(),
    };
    let mcp = McpServer::new(config, handler)
        .unwrap()
        .with_direct_tool_calls()
        .with_sleeping_sessions();
    let server = Sleepy {
        app: mcp.router(),
        handshakes,
        token: mint(&good_claims()),
        _jwks: jwks,
    };
    server.wait_for_keys().await;
    server
}

impl Sleepy {
    async fn wait_for_keys(&self) {
        let started = Instant::now();
        loop {
            let reply = post(&self.app, Some(&self.token), &call_greet("Ada")).await;
            if reply.status != 503 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "keys never loaded"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn open(&self) -> String {
        open_session(&self.app, &self.token).await.unwrap()
    }

    fn handshakes(&self) -> Vec<String> {
        self.handshakes.lock().unwrap().clone()
    }

    async fn send(&self, id: &str, message: &Value) -> Reply {
        in_session(&self.app, &self.token, id, message).await
    }

    /// `ping` goes through rmcp's session worker (it is not a plain tool request).
    async fn ping(&self, id: &str) -> Reply {
        self.send(id, &json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}))
            .await
    }
}

/// Longer than the sleep delay, with room for the sweep that puts sessions to sleep.
async fn past_the_sleep_delay() {
    tokio::time::sleep(Duration::from_millis(800)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_sleeps_and_its_next_request_wakes_it_with_the_clients_handshake() {
    let server = sleepy_server("5m", 10).await;
    let id = server.open().await;
    assert_eq!(server.handshakes(), ["tests"]);

    past_the_sleep_delay().await;
    // Plain tool calls are answered while it sleeps, without waking it.
    let reply = server.send(&id, &call_greet("Ada")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(tool_text(&reply.rpc()), "Hi Ada, welcome to Scalekit!");
    assert_eq!(server.handshakes(), ["tests"], "a tool call woke it");

    // Anything else wakes it: a fresh handler sees the client's own handshake again.
    let reply = server.ping(&id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.rpc(),
        json!({"jsonrpc": "2.0", "id": 7, "result": {}})
    );
    assert_eq!(server.handshakes(), ["tests", "tests"]);

    // Awake, it answers on the same worker; asleep again, it wakes again.
    assert_eq!(server.ping(&id).await.status, 200);
    assert_eq!(server.handshakes().len(), 2, "woken twice while awake");
    past_the_sleep_delay().await;
    assert_eq!(server.ping(&id).await.status, 200);
    assert_eq!(server.handshakes().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_session_ends_on_delete_and_gives_back_its_place() {
    let server = sleepy_server("5m", 1).await;
    let id = server.open().await;
    past_the_sleep_delay().await;
    let request = mcp_post(Some(&server.token))
        .method("DELETE")
        .header("mcp-session-id", &id)
        .body(Body::empty())
        .unwrap();
    let reply = send(&server.app, request).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(server.send(&id, &call_greet("Ada")).await.status, 404);
    assert_eq!(server.ping(&id).await.status, 404);
    assert_eq!(server.handshakes().len(), 1, "the DELETE woke it");
    open_session(&server.app, &server.token)
        .await
        .expect("its place under --max-sessions 1 came back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_session_still_ends_after_the_idle_timeout() {
    let server = sleepy_server("2s", 1).await;
    let id = server.open().await;
    let last_used = Instant::now();
    // Poll with initialize, which answers 503 while the sleeping session holds the only place
    // (and does not touch it), until the session has ended.
    let deadline = last_used + Duration::from_secs(30);
    loop {
        match open_session(&server.app, &server.token).await {
            Ok(_) => break,
            Err(refused) => assert_eq!(refused.status, 503, "{}", refused.body),
        }
        assert!(
            Instant::now() < deadline,
            "the sleeping session never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        last_used.elapsed() >= Duration::from_secs(2),
        "ended before its idle timeout"
    );
    assert_eq!(server.ping(&id).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_stream_keeps_its_session_awake() {
    let server = sleepy_server("5m", 10).await;
    let id = server.open().await;
    let request = http::Request::get("/")
        .header("host", "localhost:3002")
        .header("authorization", format!("Bearer {}", server.token))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &id)
        .body(Body::empty())
        .unwrap();
    let stream = tower::ServiceExt::oneshot(server.app.clone(), request)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    past_the_sleep_delay().await;
    assert_eq!(server.ping(&id).await.status, 200);
    assert_eq!(
        server.handshakes().len(),
        1,
        "it slept with its stream open"
    );

    drop(stream);
    past_the_sleep_delay().await;
    assert_eq!(server.ping(&id).await.status, 200);
    assert_eq!(
        server.handshakes().len(),
        2,
        "it never slept once the stream closed"
    );
}
