//! Stateful sessions are bounded: per caller (the least recently used goes), in all (503), and in
//! time (the idle timeout). Driven in-process through the router, as a client would.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use serde_json::json;

use crate::util::*;

/// In-process app in stateful mode with `extra` flags.
fn stateful_app(extra: &[&str]) -> Router {
    let mut args = vec!["--sk-env-url", ISSUER, "--audience", AUDIENCE];
    args.extend_from_slice(extra);
    app(&args, keys("jwks-all.json"))
}

fn token_of(subject: &str) -> String {
    let mut claims = good_claims();
    claims["sub"] = json!(subject);
    mint(&claims)
}

/// Whether session `id` still answers a tool call (200 with the greeting) or is gone (404).
async fn answers(app: &Router, token: &str, id: &str) -> bool {
    let reply = in_session(app, token, id, &call_greet("Ada")).await;
    match reply.status {
        200 => {
            assert_eq!(tool_text(&reply.rpc()), "Hi Ada, welcome to Scalekit!");
            true
        }
        404 => false,
        other => panic!("session {id}: unexpected {other}: {}", reply.body),
    }
}

#[tokio::test]
async fn a_caller_opening_300_sessions_keeps_only_its_newest_100() {
    let app = stateful_app(&[]);
    let token = token_of("looping-client");
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(open_session(&app, &token).await.expect("a session"));
    }
    let mut alive = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        if answers(&app, &token, id).await {
            alive.push(index);
        }
    }
    assert_eq!(
        alive,
        (200..300).collect::<Vec<_>>(),
        "exactly the newest 100 (--max-sessions-per-caller's default) answer"
    );
    // Another caller is not affected by this one's sessions.
    let other = token_of("someone-else");
    let id = open_session(&app, &other).await.expect("a session");
    assert!(answers(&app, &other, &id).await);
}

#[tokio::test]
async fn a_session_used_again_is_not_the_one_closed() {
    let app = stateful_app(&["--max-sessions-per-caller", "2"]);
    let token = token_of("alice");
    let first = open_session(&app, &token).await.unwrap();
    let second = open_session(&app, &token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(answers(&app, &token, &first).await);
    let third = open_session(&app, &token).await.unwrap();
    assert!(
        answers(&app, &token, &first).await,
        "used most recently but one"
    );
    assert!(
        !answers(&app, &token, &second).await,
        "least recently used: closed"
    );
    assert!(answers(&app, &token, &third).await);
}

#[tokio::test]
async fn over_max_sessions_an_initialize_gets_503_until_one_ends() {
    let app = stateful_app(&["--max-sessions", "3"]);
    let mut open = Vec::new();
    for subject in ["a", "b", "c"] {
        let token = token_of(subject);
        let id = open_session(&app, &token).await.unwrap();
        open.push((token, id));
    }
    let late = token_of("d");
    let refused = open_session(&app, &late).await.expect_err("over the cap");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("10"));
    assert_eq!(refused.json()["error"], "too_many_sessions");
    assert!(
        refused.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("maximum of 3"),
        "{}",
        refused.body
    );
    // The open sessions keep working.
    let (token, id) = &open[0];
    assert!(answers(&app, token, id).await);

    // DELETE ends one, and its place is free again.
    let request = mcp_post(Some(token))
        .method("DELETE")
        .header("mcp-session-id", id)
        .body(Body::empty())
        .unwrap();
    let deleted = send(&app, request).await;
    assert!(deleted.status < 300, "{} {}", deleted.status, deleted.body);
    let id = open_session(&app, &late)
        .await
        .expect("room after a DELETE");
    assert!(answers(&app, &late, &id).await);
}

#[tokio::test]
async fn an_idle_session_ends_after_the_idle_timeout_and_frees_its_place() {
    let app = stateful_app(&["--max-sessions", "1", "--session-idle-timeout", "300ms"]);
    let token = token_of("alice");
    let opened = Instant::now();
    let idle = open_session(&app, &token).await.unwrap();
    // Poll with initialize, which answers 503 (without touching the idle session) until the
    // idle session has ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        match open_session(&app, &token).await {
            Ok(id) => break id,
            Err(refused) => assert_eq!(refused.status, 503, "{}", refused.body),
        }
        assert!(Instant::now() < deadline, "the idle session never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        opened.elapsed() >= Duration::from_millis(300),
        "ended before its idle timeout"
    );
    assert!(
        !answers(&app, &token, &idle).await,
        "the idle session is gone"
    );
    assert!(answers(&app, &token, &fresh).await);
}

#[tokio::test]
async fn stateless_mode_has_no_sessions_to_cap() {
    let app = app(
        &[
            "--sk-env-url",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--stateless",
            "--max-sessions",
            "1",
        ],
        keys("jwks-all.json"),
    );
    let token = token_of("alice");
    for _ in 0..3 {
        let reply = post(&app, Some(&token), &call_greet("Ada")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

/// A session used only through the direct path (which rmcp's session worker does not see) is
/// kept alive by it, and still ends once it is idle.
#[tokio::test]
async fn a_session_answered_directly_lives_while_used_and_ends_when_idle() {
    let app = stateful_app(&["--max-sessions", "1", "--session-idle-timeout", "2s"]);
    let token = token_of("busy-client");
    let id = open_session(&app, &token).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let reply = in_session(&app, &token, &id, &call_greet("Ada")).await;
        assert_eq!(reply.status, 200, "ended while in use: {}", reply.body);
        assert!(
            reply.body.starts_with("data: \nid: direct-"),
            "not answered directly: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Poll with initialize (503 while the busy session holds the only place), which does not
    // touch the session, until it has ended.
    let idle_since = Instant::now();
    let deadline = idle_since + Duration::from_secs(30);
    loop {
        match open_session(&app, &token).await {
            Ok(_) => break,
            Err(refused) => assert_eq!(refused.status, 503, "{}", refused.body),
        }
        assert!(Instant::now() < deadline, "the idle session never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At least seven eighths of the idle timeout (see `sessions::NUDGE_EVERY`).
    assert!(idle_since.elapsed() >= Duration::from_millis(1750));
    assert!(
        !answers(&app, &token, &id).await,
        "the idle session is gone"
    );
}

/// Issue 22 saw one stateful session stall for seconds under load, once, right after a load run
/// whose 64 connections had closed with requests in flight. Not reproduced since; this pins what
/// it would take: 64 clients leave one session mid-request (some before the answer starts, some
/// after its first bytes; plain calls, which the direct path answers, and calls with a progress
/// token and pings, which go through rmcp's session worker), and then every request on that
/// session is still answered, none waiting behind what the others left.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_whose_clients_left_mid_request_answers_the_next_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, _jwks) = Server::start_with_keys(&[], &[]);
    let token = mint(&good_claims());
    let url = server.url("/");
    let opened = http_post(&url, Some(&token), &initialize()).await;
    let session = opened
        .header("mcp-session-id")
        .expect("a session")
        .to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let sent = post_in_session(&url, &token, &session, &initialized).await;
    assert_eq!(sent.status(), 202);

    // Each request its own id, as a session's ids must be.
    let message = |number: usize| {
        let mut message = match number % 3 {
            0 => call_greet("Ada"),
            1 => json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "greet_user",
                "arguments": {"name": "Ada"}, "_meta": {"progressToken": number}}}),
            _ => json!({"jsonrpc": "2.0", "method": "ping"}),
        };
        message["id"] = json!(number);
        message
    };
    let leaving = (0..64).map(|number| {
        let body = message(number).to_string();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\
             mcp-session-id: {session}\r\naccept: application/json, text/event-stream\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let address = format!("127.0.0.1:{}", server.port);
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            if number % 2 == 0 {
                // Gone once the answer has begun.
                let mut first = [0u8; 16];
                let _ = stream.read(&mut first).await;
            }
            // Dropped: the connection closes with the request in flight or half read.
        })
    });
    for left in futures::future::join_all(leaving).await {
        left.unwrap();
    }

    // Ten seconds is no speed target (an answer here takes about a millisecond): it tells an
    // answer from a session held up behind the requests its clients left.
    let next = (100..164).map(|number| {
        let message = message(number);
        let (url, token, session) = (&url, &token, &session);
        async move {
            let reply = tokio::time::timeout(Duration::from_secs(10), async {
                let response = post_in_session(url, token, session, &message).await;
                (response.status().as_u16(), response.text().await.unwrap())
            })
            .await
            .expect("answered, not held up behind the requests left in flight");
            (message, reply)
        }
    });
    for (message, (status, body)) in futures::future::join_all(next).await {
        assert_eq!(status, 200, "{message}: {body}");
        let answer = body
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter(|data| !data.is_empty())
            .map(|data| serde_json::from_str::<serde_json::Value>(data).unwrap())
            .find(|event| event.get("id").is_some())
            .unwrap_or_else(|| panic!("an answer: {body}"));
        assert_eq!(answer["id"], message["id"], "{body}");
        if message["method"] == "tools/call" {
            assert_eq!(tool_text(&answer), "Hi Ada, welcome to Scalekit!", "{body}");
        } else {
            assert_eq!(answer["result"], json!({}), "{body}");
        }
    }
}
