//! The stateful gateway in front of a command (`gateway::child_sessions`): a child per session,
//! its messages routed to the right stream, its end and the session's tied together.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::util::*;

/// A child that writes each line it reads to the file `$0`, and its pid to `$0.pid`; answers
/// `initialize` (id 0); and runs `on_call` (shell) for each `tools/call`. The readiness check's
/// child (without a caller) records nothing.
fn recording_child(on_call: &str) -> String {
    let initialized = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"logging":{}},"serverInfo":{"name":"recording","version":"1"}}}"#;
    format!(
        r#"r="$0"; [ -z "$MCP_FORWARDED_USER" ] && r="$0.probe"; echo $$ > "$r.pid"
while read -r line; do
  echo "$line" >> "$r"
  case "$line" in
    *'"method":"initialize"'*) echo '{initialized}' ;;
    *'"method":"tools/call"'*) {on_call} ;;
  esac
done"#
    )
}

/// A gateway with `flags` in front of `script` (run by `sh -c`, `$0` being `record`), a session
/// opened and initialized on it; the session id and a token.
async fn session_on(
    script: &str,
    record: &str,
    flags: &[&str],
) -> (Server, JwksServer, String, String) {
    let mut args = flags.to_vec();
    args.extend(["--", "sh", "-c", script, record]);
    let (server, jwks) = Server::start_with_keys(&args, &[]);
    let token = mint(&good_claims());
    let url = server.url("/");
    let opened = http_post(&url, Some(&token), &initialize()).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(
        opened.rpc()["result"]["serverInfo"]["name"],
        "recording",
        "the child's own answer: {}",
        opened.body
    );
    let session = opened
        .header("mcp-session-id")
        .expect("a session id")
        .to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let sent = post_in_session(&url, &token, &session, &initialized).await;
    assert_eq!(sent.status(), 202);
    (server, jwks, session, token)
}

/// The JSON messages of an event stream's `data:` lines.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

/// The lines the child recorded, once one of them contains `wanted`.
fn recorded_once(server: &Server, record: &str, wanted: &str) -> String {
    server.wait_until(|| std::fs::read_to_string(record).is_ok_and(|lines| lines.contains(wanted)));
    std::fs::read_to_string(record).unwrap()
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn call_with_progress(id: u64, token: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "slow", "arguments": {}, "_meta": {"progressToken": token}}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_child_leaves_unanswered_ends_with_an_error_and_is_cancelled_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("lines").to_str().unwrap().to_owned();
    // Progress for the call, then nothing: no answer ever comes.
    let progress = r#"echo '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p-1","progress":1,"total":2}}'"#;
    let script = recording_child(progress);
    let (server, _jwks, session, token) =
        session_on(&script, &record, &["--upstream-timeout", "1"]).await;

    let response = post_in_session(
        &server.url("/"),
        &token,
        &session,
        &call_with_progress(7, "p-1"),
    )
    .await;
    assert_eq!(
        response.status(),
        200,
        "the stream starts with the progress"
    );
    let body = response.text().await.unwrap();
    let events = events(&body);
    assert_eq!(events.len(), 2, "{body}");
    assert_eq!(events[0]["method"], "notifications/progress", "{body}");
    assert_eq!(
        events[0]["params"]["progressToken"], "p-1",
        "the client's own token: {body}"
    );
    assert_eq!(events[1]["id"], 7, "{body}");
    assert_eq!(
        events[1]["error"]["message"],
        "upstream command sh did not answer within 1 s (--upstream-timeout)",
        "{body}"
    );
    let lines = recorded_once(&server, &record, "notifications/cancelled");
    let cancelled: Value = lines
        .lines()
        .find(|line| line.contains("notifications/cancelled"))
        .map(|line| serde_json::from_str(line).unwrap())
        .unwrap();
    assert_eq!(cancelled["params"]["requestId"], 7, "{lines}");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_child_sends_on_its_own_waits_for_the_get_stream() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("lines").to_str().unwrap().to_owned();
    // Each call is answered at once, after a log message sent before the answer; a second log
    // message follows the answer, when no request is in flight.
    let on_call = r#"echo '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"during"}}'; echo '{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"done"}]}}'; echo '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"after"}}'"#;
    let script = recording_child(on_call);
    let (server, _jwks, session, token) = session_on(&script, &record, &[]).await;
    let url = server.url("/");

    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "t", "arguments": {}}});
    let answered = post_in_session(&url, &token, &session, &call)
        .await
        .text()
        .await
        .unwrap();
    let on_the_call = events(&answered);
    assert_eq!(
        on_the_call.len(),
        2,
        "the message during the call, then its answer: {answered}"
    );
    assert_eq!(on_the_call[0]["params"]["data"], "during");
    assert_eq!(on_the_call[1]["result"]["content"][0]["text"], "done");

    // The later message was kept until the client opened its GET stream.
    let stream = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut chunks = stream.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(30), chunks.next())
        .await
        .expect("an event on the GET stream")
        .unwrap()
        .unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert_eq!(events(&first)[0]["params"]["data"], "after", "{first}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_request_with_an_id_in_flight_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("lines").to_str().unwrap().to_owned();
    let script = recording_child("true");
    let (server, _jwks, session, token) = session_on(&script, &record, &[]).await;
    let url = server.url("/");
    let first = {
        let (url, token, session) = (url.clone(), token.clone(), session.clone());
        tokio::spawn(async move {
            post_in_session(&url, &token, &session, &call_with_progress(5, "a")).await
        })
    };
    // The first call has reached the child (which never answers it) before the second is sent.
    recorded_once(&server, &record, "tools/call");
    let second = post_in_session(&url, &token, &session, &call_with_progress(5, "b")).await;
    assert_eq!(second.status(), 400);
    let refusal: Value = second.json().await.unwrap();
    assert_eq!(
        refusal["error"]["message"],
        "a request with id 5 is already in flight in this session"
    );
    first.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_sessions_child_stops_and_the_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("lines").to_str().unwrap().to_owned();
    let script = recording_child("true");
    let (server, _jwks, session, token) =
        session_on(&script, &record, &["--session-idle-timeout", "1s"]).await;
    let pid = std::fs::read_to_string(format!("{record}.pid"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(alive(&pid));
    server.wait_until(|| !alive(&pid));
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    let after = post_in_session(&server.url("/"), &token, &session, &ping).await;
    assert_eq!(after.status(), 404, "the session ended with its child");
}

/// A session's child that writes `on_call` when called: the call gets a 502 whose error starts
/// with `start`, and the session ends with the child (it was stopped).
async fn assert_a_bad_line_ends_the_session(on_call: &str, flags: &[&str], start: &str) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("lines").to_str().unwrap().to_owned();
    let script = recording_child(on_call);
    let (server, _jwks, session, token) = session_on(&script, &record, flags).await;
    let url = server.url("/");
    let call = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "t", "arguments": {}}});
    let reply = post_in_session(&url, &token, &session, &call).await;
    assert_eq!(reply.status(), 502);
    let answer: Value = reply.json().await.unwrap();
    assert_eq!(answer["id"], 4, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(start), "{message}");
    assert!(message.ends_with("stopped it"), "{message}");
    let pid = std::fs::read_to_string(format!("{record}.pid"))
        .unwrap()
        .trim()
        .to_owned();
    server.wait_until(|| !alive(&pid));
    let after = post_in_session(&url, &token, &session, &call).await;
    assert_eq!(after.status(), 404, "the session ended with its child");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_child_that_writes_garbage_is_stopped_with_the_reason() {
    assert_a_bad_line_ends_the_session(
        "echo 'Listening on stdio'",
        &[],
        r#"upstream command sh wrote something that is not JSON-RPC on stdout: "Listening on stdio""#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_childs_line_beyond_max_body_bytes_stops_it() {
    assert_a_bad_line_ends_the_session(
        "head -c 1000 /dev/zero | tr '\\0' x; echo",
        &["--max-body-bytes", "600"],
        "upstream command sh wrote a line it should not have (max line length exceeded)",
    )
    .await;
}
