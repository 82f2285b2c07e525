//! The stateful gateway in front of an HTTP upstream (`gateway::pass_through`): each session is
//! passed through to an upstream session of its own, seen here from the upstream's side.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::util::*;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    headers: HeaderMap,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn session(&self) -> Option<&str> {
        self.header("mcp-session-id")
    }
}

#[derive(Default)]
struct Record {
    seen: Vec<Seen>,
    opened: usize,
    /// Upstream sessions answered 404 from now on (the upstream "restarted").
    forgotten: Vec<String>,
}

/// A stateful MCP server that gives out sessions `upstream-1`, `upstream-2`… to the tests'
/// clients (and `probe` to the gateway's readiness probe), and records every request (a call of
/// the tool `slow` only after 3 s). A tool call is answered with an event stream: a log message (event id 41), then the
/// result (id 42) naming the caller the upstream saw in `_meta`. The `GET` stream sends one
/// list-changed notification (event id 9) and ends.
struct Recorder {
    url: String,
    record: Arc<Mutex<Record>>,
}

impl Recorder {
    fn start() -> Self {
        let record: Arc<Mutex<Record>> = Arc::default();
        let state = record.clone();
        let addr = serve_on_a_thread(move |_| {
            Router::new().route(
                "/mcp",
                axum::routing::any(move |method: Method, headers: HeaderMap, body: String| {
                    let state = state.clone();
                    async move {
                        // A call of the tool `slow` is answered after 3 s.
                        if body.contains(r#""name":"slow""#) {
                            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                        }
                        answer(&state, method, headers, &body)
                    }
                }),
            )
        });
        let url = format!("http://{addr}/mcp");
        Self { url, record }
    }

    fn seen(&self) -> Vec<Seen> {
        self.record.lock().unwrap().seen.clone()
    }

    fn deleted(&self, upstream_session: &str) -> bool {
        self.seen()
            .iter()
            .any(|seen| seen.method == Method::DELETE && seen.session() == Some(upstream_session))
    }

    fn forget(&self, upstream_session: &str) {
        let mut record = self.record.lock().unwrap();
        record.forgotten.push(upstream_session.to_owned());
    }
}

fn answer(record: &Mutex<Record>, method: Method, headers: HeaderMap, body: &str) -> Response {
    let message: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut record = record.lock().unwrap();
    record.seen.push(Seen {
        method: method.clone(),
        headers: headers.clone(),
        body: message.clone(),
    });
    let session = headers
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok());
    if session.is_some_and(|session| record.forgotten.iter().any(|gone| gone == session)) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let event_stream =
        |events: &str| ([("content-type", "text/event-stream")], events.to_owned()).into_response();
    match method {
        Method::DELETE => StatusCode::OK.into_response(),
        Method::GET => event_stream(
            "id: 9\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n",
        ),
        _ if message["method"] == "initialize" => {
            // The gateway's own readiness probes open sessions too: named apart.
            let session = match message["params"]["clientInfo"]["name"] == "tests" {
                true => {
                    record.opened += 1;
                    format!("upstream-{}", record.opened)
                }
                false => "probe".to_owned(),
            };
            let result = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "recorder", "version": "1"}}});
            ([("mcp-session-id", session)], axum::Json(result)).into_response()
        }
        _ if message.get("id").is_none() || message.get("method").is_none() => {
            StatusCode::ACCEPTED.into_response()
        }
        _ => {
            let caller = &message["params"]["_meta"]["scalekit-mcp/caller"]["sub"];
            let result = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                "content": [{"type": "text", "text": format!("caller {caller}")}]}});
            event_stream(&format!(
                "id: 41\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":\"working\"}}}}\n\nid: 42\ndata: {result}\n\n"
            ))
        }
    }
}

/// `serve --upstream` in front of `recorder` with `flags`; the gateway's own token for it is
/// `gateway-secret`.
fn gateway(recorder: &Recorder, flags: &[&str]) -> (Server, JwksServer) {
    let mut args = flags.to_vec();
    args.extend([
        "--upstream",
        &recorder.url,
        "--upstream-bearer-env",
        "UPSTREAM_TOKEN",
    ]);
    Server::start_with_keys(&args, &[("UPSTREAM_TOKEN", "gateway-secret")])
}

async fn request(
    method: Method,
    url: &str,
    token: &str,
    session: Option<&str>,
    headers: &[(&str, &str)],
    message: Option<&Value>,
) -> Reply {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(message) = message {
        request = request
            .header("content-type", "application/json")
            .body(message.to_string());
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// Opens a session: its id at the gateway.
async fn open(url: &str, token: &str) -> String {
    let opened = request(Method::POST, url, token, None, &[], Some(&initialize())).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(opened.json()["result"]["serverInfo"]["name"], "recorder");
    opened.header("mcp-session-id").unwrap().to_owned()
}

async fn post(url: &str, token: &str, session: &str, message: &Value) -> Reply {
    request(Method::POST, url, token, Some(session), &[], Some(message)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_session_has_an_upstream_session_of_its_own_that_never_meets_the_clients_id() {
    let recorder = Recorder::start();
    let (server, _keys) = gateway(&recorder, &[]);
    let url = server.url("/");
    let token = mint(&good_claims());
    let first = open(&url, &token).await;
    let second = open(&url, &token).await;
    assert_ne!(first, second);

    // A tool call, with a spoofed caller in a header and in `_meta`: the upstream's event stream
    // comes back event for event, ids included, and the upstream saw the real caller.
    let mut call = call_greet("Ada");
    call["params"]["_meta"] =
        json!({"scalekit-mcp/caller": {"sub": "mallory"}, "progressToken": 5});
    let called = request(
        Method::POST,
        &url,
        &token,
        Some(&first),
        &[
            ("x-forwarded-user", "mallory"),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        Some(&call),
    )
    .await;
    assert_eq!(called.status, 200, "{}", called.body);
    assert_eq!(called.header("content-type"), Some("text/event-stream"));
    let log = called.body.find("id: 41\ndata: ").expect(&called.body);
    let result = called.body.find("id: 42\ndata: ").expect(&called.body);
    assert!(log < result, "{}", called.body);
    assert!(
        called.body.contains(r#"caller \"usr_42\""#),
        "{}",
        called.body
    );
    let seen = recorder.seen();
    let upstream_call = seen.last().unwrap();
    assert_eq!(upstream_call.session(), Some("upstream-1"));
    assert_eq!(upstream_call.header("x-forwarded-user"), Some("usr_42"));
    assert_eq!(
        upstream_call.header("authorization"),
        Some("Bearer gateway-secret")
    );
    assert_eq!(
        upstream_call.header("mcp-protocol-version"),
        Some("2025-06-18")
    );
    assert_eq!(upstream_call.body["id"], call["id"]);
    assert_eq!(upstream_call.body["params"]["_meta"]["progressToken"], 5);

    // The client's answer to a request of the upstream's goes on as written.
    let answer = json!({"jsonrpc": "2.0", "id": "upstream-asked-7", "result": {"roots": []}});
    let answered = post(&url, &token, &second, &answer).await;
    assert_eq!(answered.status, 202, "{}", answered.body);
    let seen = recorder.seen();
    assert_eq!(seen.last().unwrap().session(), Some("upstream-2"));
    assert_eq!(seen.last().unwrap().body, answer);

    // The GET stream is the upstream's, resumed where the client says.
    let streamed = request(
        Method::GET,
        &url,
        &token,
        Some(&first),
        &[("last-event-id", "5")],
        None,
    )
    .await;
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    assert!(
        streamed.body.contains(
            "id: 9\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}"
        ),
        "{}",
        streamed.body
    );
    let seen = recorder.seen();
    assert_eq!(seen.last().unwrap().header("last-event-id"), Some("5"));
    assert_eq!(seen.last().unwrap().session(), Some("upstream-1"));

    // DELETE ends the session here and upstream; it is then unknown, and not asked about.
    let deleted = request(Method::DELETE, &url, &token, Some(&first), &[], None).await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    assert!(recorder.deleted("upstream-1"));
    let asked = recorder.seen().len();
    assert_eq!(
        post(&url, &token, &first, &call_greet("Ada")).await.status,
        404
    );
    assert_eq!(recorder.seen().len(), asked);

    // Neither side ever saw the other's session ids, nor the client's token.
    for seen in recorder.seen() {
        for value in seen.headers.values() {
            let value = value.to_str().unwrap_or_default();
            assert!(
                !value.contains(&first) && !value.contains(&second) && !value.contains(&token),
                "{seen:?}"
            );
        }
    }
    assert!(!first.contains("upstream") && !second.contains("upstream"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_ends_here_ends_upstream_and_one_the_upstream_forgot_ends_here() {
    let recorder = Recorder::start();
    let (server, _keys) = gateway(
        &recorder,
        &[
            "--max-sessions-per-caller",
            "1",
            "--session-idle-timeout",
            "2s",
        ],
    );
    let url = server.url("/");
    let token = mint(&good_claims());

    // One too many for its caller: the least recently used one ends, upstream too.
    let evicted = open(&url, &token).await;
    let kept = open(&url, &token).await;
    server.wait_until(|| recorder.deleted("upstream-1"));
    assert_eq!(
        post(&url, &token, &evicted, &call_greet("Ada"))
            .await
            .status,
        404
    );

    // Another caller cannot use it, and the upstream is not asked.
    let asked = recorder.seen().len();
    let mut other = good_claims();
    other["sub"] = json!("someone-else");
    let refused = post(&url, &mint(&other), &kept, &call_greet("Ada")).await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(recorder.seen().len(), asked);

    // Idle for --session-idle-timeout: it ends, upstream too.
    server.wait_until(|| recorder.deleted("upstream-2"));
    let ended = post(&url, &token, &kept, &call_greet("Ada")).await;
    assert_eq!(
        ended.status,
        404,
        "{:#?}\n{}",
        recorder.seen(),
        server.stderr()
    );

    // The upstream forgot one (it restarted): the client hears 404 and starts again.
    let forgotten = open(&url, &token).await;
    recorder.forget("upstream-3");
    assert_eq!(
        post(&url, &token, &forgotten, &call_greet("Ada"))
            .await
            .status,
        404
    );
    let asked = recorder.seen().len();
    assert_eq!(
        post(&url, &token, &forgotten, &call_greet("Ada"))
            .await
            .status,
        404
    );
    assert_eq!(
        recorder.seen().len(),
        asked,
        "an ended session was asked about"
    );
    let again = open(&url, &token).await;
    let called = post(&url, &token, &again, &call_greet("Ada")).await;
    assert_eq!(called.status, 200, "{}", called.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn at_shutdown_the_upstream_sessions_are_deleted() {
    let recorder = Recorder::start();
    let (mut server, _keys) = gateway(&recorder, &[]);
    let url = server.url("/");
    let token = mint(&good_claims());
    open(&url, &token).await;
    open(&url, &token).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = server.child.wait().unwrap();
    assert!(exited.success(), "{exited:?}\n{}", server.stderr());
    assert!(recorder.deleted("upstream-1"), "{:?}", recorder.seen());
    assert!(recorder.deleted("upstream-2"), "{:?}", recorder.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_gateway_stops_waiting_for_is_cancelled_in_its_upstream_session() {
    let recorder = Recorder::start();
    let (server, _keys) = gateway(&recorder, &["--upstream-timeout", "1"]);
    let url = server.url("/");
    let token = mint(&good_claims());
    let session = open(&url, &token).await;
    let slow = json!({"jsonrpc": "2.0", "id": "call-7", "method": "tools/call",
        "params": {"name": "slow", "arguments": {}}});
    let reply = post(&url, &token, &session, &slow).await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["id"], "call-7", "{}", reply.body);
    let cancellation = |seen: &Seen| seen.body["method"] == "notifications/cancelled";
    server.wait_until(|| recorder.seen().iter().any(cancellation));
    let seen = recorder.seen();
    let cancelled: Vec<&Seen> = seen.iter().filter(|seen| cancellation(seen)).collect();
    assert_eq!(cancelled.len(), 1, "{seen:?}");
    // The session's own at the upstream (the call itself is never recorded: the upstream
    // records a call when it answers, and the gateway had hung up by then).
    assert_eq!(cancelled[0].session(), Some("upstream-1"), "{seen:?}");
    let params = &cancelled[0].body["params"];
    assert_eq!(params["requestId"], "call-7", "{seen:?}");
    assert_eq!(params["reason"], "the gateway's --upstream-timeout passed");
    assert_eq!(
        cancelled[0].header("authorization"),
        Some("Bearer gateway-secret")
    );
}
