//! A tool ends its own response stream mid-call (`ResponseStream::close`), and the client gets
//! the answer on the stream it resumes with `Last-Event-ID` (SEP-1699), through the whole
//! guarded endpoint of a mounted `McpServer`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::Extensions;
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use scalekit_mcp::{Config, McpServer, ResponseStream};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::util::*;

/// One tool that ends its stream, then answers once the test says the client is back.
#[derive(Clone)]
struct Polling {
    client_is_back: Arc<Notify>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Polling {
    #[tool(description = "Ends its stream, then answers on the resumed one")]
    async fn slow(&self, extensions: Extensions) -> String {
        let Some(stream) = ResponseStream::of(&extensions) else {
            return "no stream of its own".to_owned();
        };
        stream.close(Duration::from_millis(100)).await.unwrap();
        self.client_is_back.notified().await;
        "answered on the resumed stream".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Polling {}

/// The mounted server for `Polling`, once its signing keys are loaded.
async fn polling_app(stateless: bool, client_is_back: Arc<Notify>, jwks: &JwksServer) -> Router {
    let config = Config::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url(format!("{}/keys", jwks.url()))
        .stateless(stateless)
        .build()
        .unwrap();
    let handler = Polling {
        client_is_back,
        tool_router: Polling::tool_router(),
    };
    let app = McpServer::new(config, handler).unwrap().router();
    let started = Instant::now();
    while post(&app, Some(&mint(&good_claims())), &initialize())
        .await
        .status
        == 503
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "keys never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app
}

fn call_slow() -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": "slow", "arguments": {}}})
}

/// The `id:` of the last event of an SSE body.
fn last_event_id(body: &str) -> &str {
    body.lines()
        .filter_map(|line| line.strip_prefix("id:"))
        .map(str::trim)
        .next_back()
        .unwrap_or_else(|| panic!("no event id in {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_ends_its_stream_and_answers_on_the_one_the_client_resumes() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let client_is_back = Arc::new(Notify::new());
    let app = polling_app(false, client_is_back.clone(), &jwks).await;
    let token = mint(&good_claims());
    let init = post(&app, Some(&token), &initialize()).await;
    let session = init.header("mcp-session-id").expect("a session").to_owned();
    let in_session = |message: &Value| {
        mcp_post(Some(&token))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(Body::from(message.to_string()))
            .unwrap()
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(send(&app, in_session(&initialized)).await.status, 202);

    // The POST's stream ends without the answer, telling the client when to come back.
    let cut = send(&app, in_session(&call_slow())).await;
    assert_eq!(cut.status, 200, "{}", cut.body);
    assert!(!cut.body.contains("\"result\""), "{}", cut.body);
    assert!(
        cut.body.contains("retry: 100") || cut.body.contains("retry:100"),
        "{}",
        cut.body
    );

    let resume = http::Request::get("/")
        .header("host", "localhost:3002")
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", last_event_id(&cut.body))
        .body(Body::empty())
        .unwrap();
    let resumed = app.clone().oneshot(resume).await.unwrap();
    assert_eq!(resumed.status(), 200);
    client_is_back.notify_one();
    let body = axum::body::to_bytes(resumed.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("answered on the resumed stream"), "{body}");
    assert!(body.contains("\"id\":7"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_sessions_a_request_has_no_stream_to_end() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let app = polling_app(true, Arc::new(Notify::new()), &jwks).await;
    let reply = post(&app, Some(&mint(&good_claims())), &call_slow()).await;
    assert_eq!(tool_text(&reply.rpc()), "no stream of its own");
}
