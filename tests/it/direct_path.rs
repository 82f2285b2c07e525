//! The `--stateless` direct path (`server::direct`) against rmcp: the same requests, sent once so
//! that the direct path answers them and once so that rmcp does, must get byte-identical answers.
//! A request goes to rmcp when its `Accept` header carries a parameter (`;q=1`), which rmcp
//! accepts and the direct path leaves alone; `direct::answers` confirms which path each took.

use axum::body::Body;
use scalekit_mcp::server::direct;
use serde_json::{Value, json};

use crate::util::*;

const BOTH: &str = "application/json, text/event-stream";

/// The `MCP-Protocol-Version` headers both paths are compared under: none, and every version
/// the direct path serves.
const VERSIONS: [Option<&str>; 5] = [
    None,
    Some("2024-11-05"),
    Some("2025-03-26"),
    Some("2025-06-18"),
    Some("2025-11-25"),
];
const BOTH_WITH_WEIGHT: &str = "application/json, text/event-stream;q=1";

fn request(token: &str, accept: &str, version: Option<&str>, body: &str) -> http::Request<Body> {
    let mut builder = http::Request::post("/")
        .header("host", "localhost:3002")
        .header("accept", accept)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"));
    if let Some(version) = version {
        builder = builder.header("mcp-protocol-version", version);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

fn requests() -> Vec<Value> {
    let call = |id: Value, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    vec![
        call(
            json!(1),
            json!({"name": "greet_user", "arguments": {"name": "Saif"}}),
        ),
        call(
            json!("a-string-id"),
            json!({"name": "greet_user", "arguments": {"name": "é 😀 \"q\""}}),
        ),
        call(json!(2), json!({"name": "greet_user", "arguments": {}})),
        call(json!(3), json!({"name": "greet_user"})),
        call(
            json!(4),
            json!({"name": "greet_user", "arguments": {"name": 5}}),
        ),
        call(
            json!(5),
            json!({"name": "greet_user", "arguments": {"name": "x", "extra": true}}),
        ),
        call(json!(6), json!({"name": "no_such_tool", "arguments": {}})),
        call(json!(7), json!({"name": "whoami", "arguments": {}})),
        call(
            json!(8),
            json!({"name": "greet_user", "arguments": {"name": "p"},
                              "_meta": {"progressToken": "tok-1"}}),
        ),
        call(
            json!(9007199254740993_u64),
            json!({"name": "greet_user", "arguments": {"name": "big id"}}),
        ),
        json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 11, "method": "tools/list", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 12, "method": "tools/list", "params": {"cursor": "nope"}}),
    ]
}

#[tokio::test]
async fn the_direct_path_answers_exactly_as_rmcp_does() {
    let app = app(BASE_ARGS, keys("jwks-all.json"));
    let token = mint(&good_claims());
    let mut compared = 0;
    for version in VERSIONS {
        for body in requests() {
            let direct_request = request(&token, BOTH, version, &body.to_string());
            let rmcp_request = request(&token, BOTH_WITH_WEIGHT, version, &body.to_string());
            let bytes = body.to_string().into_bytes();
            assert!(direct::answers(direct_request.headers(), &bytes), "{body}");
            assert!(!direct::answers(rmcp_request.headers(), &bytes), "{body}");

            let direct = send(&app, direct_request).await;
            let rmcp = send(&app, rmcp_request).await;
            let context = format!("version {version:?}, request {body}");
            assert_same_answer(&direct, &rmcp, &context);
            assert_eq!(direct.status, 200, "{context}: {}", direct.body);
            compared += 1;
        }
    }
    assert_eq!(compared, VERSIONS.len() * requests().len());
}

/// Bodies at the edge of what the direct path takes: whichever path answers, the answer must be
/// rmcp's.
fn edge_cases() -> Vec<Value> {
    vec![
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": null}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": null}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"arguments": {}}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet_user", "arguments": null}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet_user", "arguments": []}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet_user", "arguments": {"name": "m"}, "_meta": null}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet_user", "arguments": {"name": "m"}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2025-06-18"}}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "result": {}}),
        json!({"jsonrpc": "2.0", "id": null, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": -1, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "Tools/List"}),
        json!({"jsonrpc": 2, "id": 1, "method": "tools/list"}),
        json!({"id": 1, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": 5}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [null, "c"]}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [null, "greet_user", {"name": "m"}]}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet_user", "_meta": "x"}}),
    ]
}

#[tokio::test]
async fn edge_cases_get_rmcps_answer_whichever_path_takes_them() {
    let app = app(BASE_ARGS, keys("jwks-all.json"));
    let token = mint(&good_claims());
    // Repeated keys and whitespace, which `json!` cannot write.
    let raw_bodies = [
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":\n\t {\"name\":\"greet_user\",\"arguments\":{\"name\":\"w\"}} }",
        r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet_user", "name": "whoami"}}"#,
        r#"{"jsonrpc": "2.0", "id": "s", "method": "tools/call", "params": {"name": "greet_user"}, "id": 2}"#,
        r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}, "params": {"cursor": "c"}}"#,
    ];
    let bodies = edge_cases()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>();
    let spaced = request(&token, BOTH, Some("2025-06-18"), raw_bodies[0]);
    assert!(
        direct::answers(spaced.headers(), raw_bodies[0].as_bytes()),
        "whitespace around the params does not turn the direct path away"
    );
    for body in bodies.iter().map(String::as_str).chain(raw_bodies) {
        let direct = send(&app, request(&token, BOTH, Some("2025-06-18"), body)).await;
        let rmcp = send(
            &app,
            request(&token, BOTH_WITH_WEIGHT, Some("2025-06-18"), body),
        )
        .await;
        assert_same_answer(&direct, &rmcp, body);
    }
}

/// Status, content type and body, byte for byte.
fn assert_same_answer(direct: &Reply, rmcp: &Reply, context: &str) {
    assert_eq!(direct.status, rmcp.status, "{context}");
    assert_eq!(
        direct.header("content-type"),
        rmcp.header("content-type"),
        "{context}"
    );
    assert_eq!(direct.body, rmcp.body, "{context}");
}

#[tokio::test]
async fn the_direct_path_answers_the_greeting_and_tool_errors() {
    let app = app(BASE_ARGS, keys("jwks-all.json"));
    let token = mint(&good_claims());
    let bodies = requests();
    let greeting = send(
        &app,
        request(&token, BOTH, Some("2025-06-18"), &bodies[0].to_string()),
    )
    .await;
    assert_eq!(tool_text(&greeting.rpc()), "Hi Saif, welcome to Scalekit!");
    assert_eq!(greeting.rpc()["id"], 1);
    let unknown = send(
        &app,
        request(&token, BOTH, Some("2025-06-18"), &bodies[6].to_string()),
    )
    .await;
    assert_eq!(unknown.rpc()["id"], 6);
    assert!(unknown.rpc()["error"]["code"].is_i64(), "{}", unknown.body);
    let listed = send(&app, request(&token, BOTH, None, &bodies[10].to_string())).await;
    let listed = listed.rpc();
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert_eq!(names, ["greet_user", "whoami"]);
}

#[tokio::test]
async fn requests_the_direct_path_leaves_alone_still_get_rmcps_answers() {
    let app = app(BASE_ARGS, keys("jwks-all.json"));
    let token = mint(&good_claims());
    // initialize, a notification, a newer protocol version, and a body that is not JSON.
    let init = send(&app, request(&token, BOTH, None, &initialize().to_string())).await;
    assert_eq!(init.status, 200, "{}", init.body);
    assert_eq!(init.rpc()["result"]["serverInfo"]["name"], "scalekit-mcp");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        send(&app, request(&token, BOTH, None, &note.to_string()))
            .await
            .status,
        202
    );
    let unknown_version = send(
        &app,
        request(
            &token,
            BOTH,
            Some("1999-01-01"),
            &call_greet("x").to_string(),
        ),
    )
    .await;
    assert_eq!(unknown_version.status, 400, "{}", unknown_version.body);
    let garbage = send(&app, request(&token, BOTH, None, "{not json")).await;
    // rmcp's own answer to a body that is not JSON, unchanged by the direct path.
    assert_eq!(garbage.status, 415, "{}", garbage.body);
    assert!(
        garbage.body.starts_with("fail to deserialize request body"),
        "{}",
        garbage.body
    );
}

/// The default (stateful) mode's flags: sessions, and the built-in tools, which allow the direct
/// path on them.
const STATEFUL_ARGS: &[&str] = &["--sk-env-url", ISSUER, "--audience", AUDIENCE];

/// A request on session `id` (see [`request`]).
fn session_request(
    token: &str,
    id: &str,
    accept: &str,
    version: Option<&str>,
    body: &str,
) -> http::Request<Body> {
    let mut request = request(token, accept, version, body);
    request
        .headers_mut()
        .insert("mcp-session-id", http::HeaderValue::from_str(id).unwrap());
    request
}

/// The JSON-RPC messages of an event stream's `data` lines, as sent (byte for byte).
fn event_data(body: &str) -> Vec<&str> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| !data.is_empty())
        .collect()
}

/// Whether rmcp's session worker answered: it numbers its events for a resume (`id: 0/3`); the
/// direct path's one id, its priming event's, is `direct-<n>`.
fn numbered(reply: &Reply) -> bool {
    reply
        .body
        .lines()
        .any(|line| line.starts_with("id:") && !line.starts_with("id: direct-"))
}

/// The direct path's answer: a priming event as rmcp's (an id and rmcp's `retry`), then
/// `message`'s event.
fn assert_direct_stream(reply: &Reply, message: &str, context: &str) {
    let (priming, answer) = reply
        .body
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("{context}: {}", reply.body));
    let id = priming
        .strip_prefix("data: \nid: direct-")
        .and_then(|rest| rest.strip_suffix("\nretry: 3000"))
        .unwrap_or_else(|| panic!("{context}: priming event {priming:?}"));
    assert!(id.parse::<u64>().is_ok(), "{context}: {priming:?}");
    assert_eq!(answer, format!("data: {message}\n\n"), "{context}");
}

#[tokio::test]
async fn on_a_session_the_direct_path_answers_as_rmcp_does() {
    let app = app(STATEFUL_ARGS, keys("jwks-all.json"));
    let token = mint(&good_claims());
    let session = open_session(&app, &token).await.expect("a session");
    let mut compared = 0;
    for version in VERSIONS {
        for body in requests() {
            let with_meta = body["params"].get("_meta").is_some();
            let text = body.to_string();
            let direct = send(
                &app,
                session_request(&token, &session, BOTH, version, &text),
            )
            .await;
            let rmcp = send(
                &app,
                session_request(&token, &session, BOTH_WITH_WEIGHT, version, &text),
            )
            .await;
            let context = format!("version {version:?}, request {body}");
            assert_eq!(direct.status, 200, "{context}: {}", direct.body);
            assert_eq!(direct.status, rmcp.status, "{context}");
            for name in ["content-type", "cache-control", "x-accel-buffering"] {
                assert_eq!(direct.header(name), rmcp.header(name), "{context}: {name}");
            }
            assert_eq!(
                event_data(&direct.body),
                event_data(&rmcp.body),
                "{context}"
            );
            assert!(numbered(&rmcp), "{context}: rmcp answered {}", rmcp.body);
            if with_meta {
                // A progress token asks for the request's stream: rmcp's.
                assert!(numbered(&direct), "{context}: {}", direct.body);
            } else {
                let [message] = event_data(&direct.body)[..] else {
                    panic!("{context}: {}", direct.body);
                };
                assert_direct_stream(&direct, message, &context);
            }
            compared += 1;
        }
    }
    assert_eq!(compared, VERSIONS.len() * requests().len());
}

#[tokio::test]
async fn the_direct_path_waits_for_the_handshake_and_leaves_other_sessions_to_the_guard() {
    let app = app(STATEFUL_ARGS, keys("jwks-all.json"));
    let token = mint(&good_claims());
    let call = call_greet("Ada").to_string();
    // Before `notifications/initialized`, rmcp's worker answers (or refuses) as it always did.
    let opened = send(&app, request(&token, BOTH, None, &initialize().to_string())).await;
    let id = opened.header("mcp-session-id").unwrap().to_owned();
    let early = send(&app, session_request(&token, &id, BOTH, None, &call)).await;
    assert!(
        early.status != 200 || numbered(&early),
        "answered directly before the handshake: {}",
        early.body
    );
    // Another caller's session, and one that does not exist: 404 from the guard, as before.
    let session = open_session(&app, &token).await.expect("a session");
    let mut other = good_claims();
    other["sub"] = json!("someone-else");
    let stranger = send(
        &app,
        session_request(&mint(&other), &session, BOTH, None, &call),
    )
    .await;
    assert_eq!(stranger.status, 404, "{}", stranger.body);
    let unknown = send(
        &app,
        session_request(&token, "no-such-session", BOTH, None, &call),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    // The owner's plain call is answered directly; after DELETE, the session is gone.
    let answered = send(&app, session_request(&token, &session, BOTH, None, &call)).await;
    assert_eq!(tool_text(&answered.rpc()), "Hi Ada, welcome to Scalekit!");
    assert!(!numbered(&answered), "{}", answered.body);
    let mut delete = session_request(&token, &session, BOTH, None, "");
    *delete.method_mut() = http::Method::DELETE;
    assert_eq!(send(&app, delete).await.status, 202);
    let gone = send(&app, session_request(&token, &session, BOTH, None, &call)).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
}

/// A stream answered directly is not kept: resuming it from its priming event's id (possible only
/// if the connection broke inside the one write with both events) is refused with the reason,
/// not handed to rmcp, which knows nothing of it.
#[tokio::test]
async fn a_direct_answers_stream_cannot_be_resumed_and_says_so() {
    let app = app(STATEFUL_ARGS, keys("jwks-all.json"));
    let token = mint(&good_claims());
    let session = open_session(&app, &token).await.expect("a session");
    let call = call_greet("Ada").to_string();
    let answered = send(&app, session_request(&token, &session, BOTH, None, &call)).await;
    let priming_id = answered
        .body
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    let mut resume = session_request(&token, &session, "text/event-stream", None, "");
    *resume.method_mut() = http::Method::GET;
    resume.headers_mut().insert(
        "last-event-id",
        http::HeaderValue::from_str(&priming_id).unwrap(),
    );
    let refused = send(&app, resume).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(
        refused.json()["error"],
        "stream_not_resumable",
        "{}",
        refused.body
    );
    assert!(
        refused.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("send the request again"),
        "{}",
        refused.body
    );
    // The session itself goes on.
    let again = send(&app, session_request(&token, &session, BOTH, None, &call)).await;
    assert_eq!(tool_text(&again.rpc()), "Hi Ada, welcome to Scalekit!");
}
