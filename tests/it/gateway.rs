//! `serve -- <command>` and `serve --upstream <url>`: the OAuth checks in front of an MCP server
//! this crate did not build into itself, its answers passed through, and the caller forwarded.

use serde_json::{Value, json};

use crate::util::*;

/// A gateway started with `upstream` (flags, or `--` and a command), and a token for it.
fn gateway(upstream: &[&str]) -> (Server, JwksServer, String) {
    let (server, jwks) = Server::start_with_keys(upstream, &[]);
    (server, jwks, mint(&good_claims()))
}

/// The pid a session's child wrote to `pid_file` (see the scripts below), once it has.
fn child_pid(server: &Server, pid_file: &str) -> String {
    server.wait_until(|| std::fs::read_to_string(pid_file).is_ok_and(|pid| !pid.trim().is_empty()));
    std::fs::read_to_string(pid_file).unwrap().trim().to_owned()
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// A gateway with `flags` in front of the HTTP upstream at `url`, which accepts `bearer` (sent as
/// `--upstream-bearer-env`).
fn gateway_to(url: &str, bearer: &str, flags: &[&str]) -> (Server, JwksServer) {
    let mut args = flags.to_vec();
    args.extend(["--upstream", url, "--upstream-bearer-env", "UPSTREAM_TOKEN"]);
    Server::start_with_keys(&args, &[("UPSTREAM_TOKEN", bearer)])
}

/// The tool names a `tools/list` answer gives.
fn tool_names(listed: &Reply) -> Vec<String> {
    listed.rpc()["result"]["tools"]
        .as_array()
        .expect("a tool list")
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_upstream_answers_through_the_gateway_and_only_with_a_token() {
    let ours = env!("CARGO_BIN_EXE_scalekit-mcp");
    let (server, _jwks, token) = gateway(&["--", ours, "serve", "--transport", "stdio"]);
    let url = server.url("/");

    let refused = http_post(&url, None, &initialize()).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer ")
    );

    let greeted = http_session_call(&url, &token, &call_greet("Ada")).await;
    assert_eq!(greeted.status, 200, "{}", greeted.body);
    assert_eq!(tool_text(&greeted.rpc()), "Hi Ada, welcome to Scalekit!");

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let listed = http_session_call(&url, &token, &list).await;
    let names = tool_names(&listed);
    assert_eq!(names, ["greet_user", "whoami"], "{}", listed.body);

    // The upstream's own JSON-RPC errors come back as they are.
    let unknown = http_session_call(&url, &token, &tool_call("no_such_tool", json!({}))).await;
    assert_eq!(unknown.status, 200, "{}", unknown.body);
    assert_eq!(
        unknown.rpc()["error"],
        json!({"code": -32602, "message": "tool not found"}),
        "{}",
        unknown.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_caller_reaches_a_command_upstream_in_its_environment_and_in_meta() {
    let upstream = example_path("forwarded_identity");
    let upstream = upstream.to_str().unwrap();
    let (server, _jwks, _) = gateway(&["--", upstream]);
    let mut claims = good_claims();
    claims["scope"] = json!("mcp:tools admin");
    let token = mint(&claims);

    // A client cannot speak for someone else: its own value under the key is replaced.
    let mut call = tool_call("identity", json!({}));
    call["params"]["_meta"] = json!({"scalekit-mcp/caller": {"sub": "spoofed"}});
    let reply = http_session_call(&server.url("/"), &token, &call).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let identity: Value = serde_json::from_str(tool_text(&reply.rpc())).unwrap();
    assert_eq!(
        identity,
        json!({
            "session": {
                "user": "usr_42",
                "org_id": "org_7",
                "client_id": "skc_client",
                "scopes": "mcp:tools admin",
            },
            "request": {
                "sub": "usr_42",
                "org_id": "org_7",
                "client_id": "skc_client",
                "scopes": ["mcp:tools", "admin"],
            },
        })
    );
    // The gateway's own settings and the client's token stay with the gateway.
    assert!(!server.stderr().contains(&token));
}

#[test]
fn gateway_flags_that_cannot_work_are_refused_with_the_fix() {
    let refused = |args: &[&str], env: &[(&str, &str)]| {
        let output = binary(tempfile::tempdir().unwrap().path())
            .args(["serve", "--sk-env-url", ISSUER])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refused(&["--upstream", "ftp://example.com/"], &[]);
    assert!(
        stderr.contains("must be an http:// or https:// URL"),
        "{stderr}"
    );
    let stderr = refused(
        &[
            "--upstream",
            "http://127.0.0.1:9/mcp",
            "--upstream-bearer-env",
            "NOT_SET_7F3A",
        ],
        &[],
    );
    assert!(
        stderr.contains("the variable NOT_SET_7F3A is not set"),
        "{stderr}"
    );
    let stderr = refused(
        &[
            "--upstream",
            "http://127.0.0.1:9/mcp",
            "--upstream-header",
            "Authorization: Bearer s3cret",
        ],
        &[],
    );
    assert!(stderr.contains("--upstream-bearer-env"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let stderr = refused(&["--upstream-header", "X-Key: 1"], &[]);
    assert!(stderr.contains("need --upstream URL"), "{stderr}");
    let stderr = refused(&["--", "no-such-mcp-server-7f3a", "--stdio"], &[]);
    assert!(
        stderr.contains("\"no-such-mcp-server-7f3a\" is not a file nor on PATH"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_child_gets_no_gateway_secrets_and_stops_when_the_session_ends() {
    let ours = env!("CARGO_BIN_EXE_scalekit-mcp");
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("child.env");
    let env_file = env_file.to_str().unwrap().to_owned();
    // The child records its environment and pid, then becomes a stdio MCP server.
    let script = r#"env > "$0"; echo $$ > "$0.pid"; exec "$1" serve --transport stdio"#;
    let (server, _jwks) = Server::start_with_keys(
        &["--", "sh", "-c", script, &env_file, ours],
        &[
            ("SK_CLIENT_SECRET", "gateway-secret-5e1"),
            ("SCALEKIT_MCP_TOKEN", "gateway-token-5e1"),
        ],
    );
    let token = mint(&good_claims());
    let url = server.url("/");

    let opened = http_post(&url, Some(&token), &initialize()).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let session = opened.header("mcp-session-id").unwrap().to_owned();
    let pid = child_pid(&server, &format!("{env_file}.pid"));
    assert!(alive(&pid), "the session's child runs");

    let environment = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        environment.contains("MCP_FORWARDED_USER=usr_42"),
        "{environment}"
    );
    assert!(!environment.contains("gateway-secret-5e1"), "{environment}");
    assert!(!environment.contains("gateway-token-5e1"), "{environment}");
    // The allocator setting `serve` gives itself stays with it.
    assert!(
        !environment.contains("MIMALLOC_PURGE_DELAY"),
        "{environment}"
    );

    let closed = reqwest::Client::new()
        .delete(&url)
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success(), "{}", closed.status());
    server.wait_until(|| !alive(&pid));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_upstream_gets_the_gateways_token_never_the_clients() {
    // The upstream is another `serve`, with OAuth of its own: it accepts the gateway's token.
    let (upstream, _upstream_keys) = Server::start_with_keys(&[], &[]);
    let mut service = good_claims();
    service["sub"] = json!("svc-gateway");
    let gateway_token = mint(&service);
    let upstream_url = upstream.url("/");
    let (server, _keys) = gateway_to(&upstream_url, &gateway_token, &[]);
    let client_token = mint(&good_claims());

    let reply = http_session_call(
        &server.url("/"),
        &client_token,
        &tool_call("whoami", json!({})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let whoami = &reply.rpc()["result"]["structuredContent"];
    assert_eq!(
        whoami["sub"], "svc-gateway",
        "the upstream saw the gateway's token: {}",
        reply.body
    );
    let greeted = http_session_call(&server.url("/"), &client_token, &call_greet("Ada")).await;
    assert_eq!(tool_text(&greeted.rpc()), "Hi Ada, welcome to Scalekit!");
    for log in [server.stderr(), upstream.stderr()] {
        assert!(
            !log.contains(&client_token) && !log.contains(&gateway_token),
            "{log}"
        );
    }
}

/// A gateway killed outright cannot stop its children, but it cannot orphan a stdio server either:
/// the child's stdin closes with the gateway, and an MCP stdio server exits then.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_gateway_leaves_no_stdio_child_running() {
    let ours = env!("CARGO_BIN_EXE_scalekit-mcp");
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let pid_file = pid_file.to_str().unwrap().to_owned();
    let script = r#"echo $$ > "$0"; exec "$1" serve --transport stdio"#;
    let (mut server, _jwks, token) = gateway(&["--", "sh", "-c", script, &pid_file, ours]);
    let opened = http_post(&server.url("/"), Some(&token), &initialize()).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let pid = child_pid(&server, &pid_file);
    assert!(alive(&pid));

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    server.wait_until(|| !alive(&pid));
}

#[test]
fn in_front_of_a_command_sessions_are_capped_at_100_unless_set() {
    let ours = env!("CARGO_BIN_EXE_scalekit-mcp");
    let stdio = ["--", ours, "serve", "--transport", "stdio"];
    let (server, _keys) = Server::start_with_keys(&stdio, &[]);
    let log = server.stderr();
    assert!(
        log.contains("at most 100 sessions (one process each) (--max-sessions)"),
        "{log}"
    );
    drop(server);

    let mut capped = vec!["--max-sessions", "7"];
    capped.extend_from_slice(&stdio);
    let (server, _keys) = Server::start_with_keys(&capped, &[]);
    let log = server.stderr();
    assert!(
        log.contains("at most 7 sessions (one process each)"),
        "{log}"
    );
    drop(server);

    // The environment sets it too; an HTTP upstream keeps the default of plain sessions.
    let (server, _keys) = Server::start_with_keys(&stdio, &[("SCALEKIT_MCP_MAX_SESSIONS", "9")]);
    assert!(
        server.stderr().contains("at most 9 sessions"),
        "{}",
        server.stderr()
    );
    let (server, _keys) =
        Server::start_with_keys_unready(&["--upstream", "http://127.0.0.1:9/mcp"], &[]);
    assert!(
        server
            .stderr()
            .contains("at most 1000 sessions (--max-sessions)"),
        "{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_policies_apply_to_the_upstreams_tools() {
    // A command upstream, and the same server over HTTP (whose sessions are passed through).
    let ours = env!("CARGO_BIN_EXE_scalekit-mcp");
    let (command_gateway, _keys) = Server::start_with_keys(
        &[
            "--tool-scope",
            "greet_user=admin",
            "--",
            ours,
            "serve",
            "--transport",
            "stdio",
        ],
        &[],
    );
    let (upstream, _upstream_keys) = Server::start_with_keys(&[], &[]);
    let (http_gateway, _http_keys) = gateway_to(
        &upstream.url("/"),
        &gateway_credentials(),
        &["--tool-scope", "greet_user=admin"],
    );
    let token = mint(&good_claims());
    for server in [&command_gateway, &http_gateway] {
        let url = server.url("/");
        let refused = http_session_call(&url, &token, &call_greet("Ada")).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        let challenge = refused.header("www-authenticate").unwrap();
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(challenge.contains("scope=\"admin\""), "{challenge}");

        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        let listed = http_session_call(&url, &token, &list).await;
        let names = tool_names(&listed);
        assert_eq!(names, ["whoami"], "greet_user is hidden: {}", listed.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_progress_reaches_the_client_in_order_and_before_the_answer() {
    let upstream = example_path("forwarded_identity");
    let (server, _jwks, token) = gateway(&["--", upstream.to_str().unwrap()]);
    // The upstream answers straight after its last notification, the order a relay loses most
    // easily; a few rounds, since losing it depends on timing.
    for round in 0..5 {
        let mut call = tool_call("steps", json!({"count": 40}));
        call["params"]["_meta"] = json!({"progressToken": format!("round-{round}")});
        let reply = http_session_call(&server.url("/"), &token, &call).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let messages: Vec<Value> = reply
            .body
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter(|data| data.trim_start().starts_with('{'))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        let (answer, progress) = messages.split_last().expect("an answer");
        assert_eq!(
            tool_text(answer),
            "sent 40 progress notifications",
            "{}",
            reply.body
        );
        let steps: Vec<(f64, &Value)> = progress
            .iter()
            .map(|message| {
                assert_eq!(message["method"], "notifications/progress", "{message}");
                (
                    message["params"]["progress"].as_f64().unwrap(),
                    &message["params"]["progressToken"],
                )
            })
            .collect();
        let expected: Vec<(f64, Value)> = (1..=40)
            .map(|step| (f64::from(step), json!(format!("round-{round}"))))
            .collect();
        let expected: Vec<(f64, &Value)> = expected
            .iter()
            .map(|(step, token)| (*step, token))
            .collect();
        assert_eq!(steps, expected, "round {round}: {}", reply.body);
    }
}

/// A POST of `message` with `token`, outside any session (as to a `--stateless` server).
async fn stateless_post(server: &Server, token: &str, message: &Value) -> Reply {
    let reply = http_post(&server.url("/"), Some(token), message).await;
    assert!(
        reply.header("mcp-session-id").is_none(),
        "a stateless gateway gave a session: {}",
        reply.body
    );
    reply
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_gateway_forwards_every_caller_on_one_upstream_session() {
    // The upstream is a stateful `serve` that forgets an idle session after 1 s.
    let (upstream, _upstream_keys) =
        Server::start_with_keys(&["--session-idle-timeout", "1s"], &[]);
    let mut service = good_claims();
    service["sub"] = json!("svc-gateway");
    let gateway_token = mint(&service);
    let (server, _keys) = gateway_to(&upstream.url("/"), &gateway_token, &["--stateless"]);
    let token = mint(&good_claims());

    // initialize is answered with the upstream's own answer, in the client's version.
    let mut initialize = initialize();
    initialize["params"]["protocolVersion"] = json!("2025-03-26");
    let init = stateless_post(&server, &token, &initialize).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let result = &init.rpc()["result"];
    assert_eq!(result["protocolVersion"], "2025-03-26", "{}", init.body);
    assert_eq!(
        result["serverInfo"]["name"], "scalekit-mcp",
        "{}",
        init.body
    );

    // Callers' ids may collide on the shared session: each gets its own answer under its own id.
    let calls = (0..12).map(|n| {
        let server = &server;
        let token = &token;
        async move {
            let mut call = call_greet(&format!("caller {n}"));
            call["id"] = json!(if n % 2 == 0 { json!(1) } else { json!("same") });
            (n, stateless_post(server, token, &call).await)
        }
    });
    for (n, reply) in futures::future::join_all(calls).await {
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answer = reply.rpc();
        assert_eq!(
            answer["id"],
            if n % 2 == 0 { json!(1) } else { json!("same") }
        );
        assert_eq!(
            tool_text(&answer),
            format!("Hi caller {n}, welcome to Scalekit!")
        );
    }

    // The upstream sees the gateway's token, never the client's.
    let whoami = stateless_post(&server, &token, &tool_call("whoami", json!({}))).await;
    assert_eq!(
        whoami.rpc()["result"]["structuredContent"]["sub"],
        "svc-gateway",
        "{}",
        whoami.body
    );

    // Once the upstream forgot the session (404), the gateway opens another and goes on.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let again = stateless_post(&server, &token, &call_greet("Ada")).await;
    assert_eq!(
        tool_text(&again.rpc()),
        "Hi Ada, welcome to Scalekit!",
        "{}",
        again.body
    );
    let log = server.stderr_with("opened the shared session", 2);
    assert_eq!(log.matches("opened the shared session").count(), 2, "{log}");
    assert_eq!(server.get_blocking("/ready").unwrap().0, 200);
    // GET and DELETE have no session to serve.
    let get = reqwest::Client::new()
        .get(server.url("/"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    for log in [server.stderr(), upstream.stderr()] {
        assert!(
            !log.contains(&token) && !log.contains(&gateway_token),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_gateway_shares_one_child_and_names_the_caller_in_meta() {
    let upstream = example_path("forwarded_identity");
    let (server, _jwks, token) = gateway(&["--stateless", "--", upstream.to_str().unwrap()]);
    let mut call = tool_call("identity", json!({}));
    call["params"]["_meta"] = json!({"scalekit-mcp/caller": {"sub": "spoofed"}});
    let reply = stateless_post(&server, &token, &call).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.rpc()["id"], 3);
    let identity: Value = serde_json::from_str(tool_text(&reply.rpc())).unwrap();
    // One child serves every caller, so its environment names none of them.
    assert_eq!(identity["session"]["user"], Value::Null, "{identity}");
    assert_eq!(identity["request"]["sub"], "usr_42", "{identity}");

    let second = stateless_post(&server, &mint(&good_claims()), &call).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        server
            .stderr_with("started the shared upstream command", 1)
            .matches("started the shared upstream command")
            .count(),
        1,
        "{}",
        server.stderr()
    );
    let unknown = stateless_post(&server, &token, &tool_call("no_such_tool", json!({}))).await;
    assert_eq!(unknown.rpc()["error"]["code"], -32602, "{}", unknown.body);
    assert_eq!(server.get_blocking("/ready").unwrap().0, 200);
}

/// A `notifications/cancelled` naming the request id `id`.
fn cancel(id: Value, reason: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": id, "reason": reason}})
}

/// A stateless gateway with `flags` in front of a shared child that records every line it reads
/// in a file, and answers only `initialize`; the lines recorded, once one contains `wanted`.
fn recording_stateless_gateway(flags: &[&str]) -> (Server, JwksServer, String, Recording) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("lines").to_str().unwrap().to_owned();
    let initialized = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true,"listChanged":true},"prompts":{"listChanged":true},"logging":{},"tasks":{"list":{},"cancel":{},"requests":{"tools":{"call":{}}}}},"serverInfo":{"name":"recording","version":"1"}}}"#;
    let script = format!(
        r#"while read -r line; do
  echo "$line" >> "$0"
  case "$line" in *'"method":"initialize"'*) echo '{initialized}' ;; esac
done"#
    );
    let mut args = vec!["--stateless"];
    args.extend(flags);
    args.extend(["--", "sh", "-c", &script, &record]);
    let (server, jwks, token) = gateway(&args);
    (server, jwks, token, Recording { _dir: dir, record })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_child_that_asks_the_gateway_is_answered() {
    // Once initialized, the child pings its client and asks it for a form; it records the lines
    // it reads.
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("lines").to_str().unwrap().to_owned();
    let initialized = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"asking","version":"1"}}}"#;
    let ping = r#"{"jsonrpc":"2.0","id":"p-1","method":"ping"}"#;
    let ask = r#"{"jsonrpc":"2.0","id":"e-1","method":"elicitation/create","params":{"message":"who?","requestedSchema":{"type":"object"}}}"#;
    let script = format!(
        r#"while read -r line; do
  echo "$line" >> "$0"
  case "$line" in
    *'"method":"initialize"'*) echo '{initialized}' ;;
    *'"method":"notifications/initialized"'*) echo '{ping}'; echo '{ask}' ;;
  esac
done"#
    );
    let (server, _jwks, _token) = gateway(&["--stateless", "--", "sh", "-c", &script, &record]);
    let recording = Recording { _dir: dir, record };

    recording.once(&server, r#""p-1""#);
    let lines = recording.once(&server, r#""e-1""#);
    let answer = |id: &str| {
        lines
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|message| message["id"] == id)
            .unwrap()
    };
    assert_eq!(
        answer("p-1"),
        json!({"jsonrpc": "2.0", "id": "p-1", "result": {}})
    );
    let declined = answer("e-1");
    assert_eq!(declined["error"]["code"], -32601, "{lines}");
    let message = declined["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("elicitation/create"), "{message}");
}

/// The file a recording child writes each line it reads to.
struct Recording {
    _dir: tempfile::TempDir,
    record: String,
}

impl Recording {
    /// The lines recorded, once one contains `wanted`.
    fn once(&self, server: &Server, wanted: &str) -> String {
        let read = || std::fs::read_to_string(&self.record);
        server.wait_until(|| read().is_ok_and(|lines| lines.contains(wanted)));
        read().unwrap()
    }
}

/// The messages among `lines` (JSON, one a line) with the method `method`.
fn recorded_messages(lines: &str, method: &str) -> Vec<Value> {
    lines
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|message| message["method"] == method)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_gateway_offers_no_more_than_its_shared_session_can_deliver() {
    let (server, _jwks, token, recording) = recording_stateless_gateway(&[]);

    // No resource updates or list changes: they could reach no client.
    let init = stateless_post(&server, &token, &initialize()).await;
    assert_eq!(init.status, 200, "{}", init.body);
    assert_eq!(
        init.json()["result"]["capabilities"],
        json!({"tools": {}, "resources": {}, "prompts": {}, "logging": {}}),
    );

    // The shared session's log level is not one caller's to set for everyone.
    let set_level = json!({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel",
        "params": {"level": "debug"}});
    let reply = stateless_post(&server, &token, &set_level).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"jsonrpc": "2.0", "id": 2, "result": {}})
    );

    for (id, method) in [(3, "resources/subscribe"), (4, "resources/unsubscribe")] {
        let subscribe = json!({"jsonrpc": "2.0", "id": id, "method": method,
            "params": {"uri": "file:///doc"}});
        let reply = stateless_post(&server, &token, &subscribe).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["code"], -32601, "{}", reply.body);
        let message = error["message"].as_str().unwrap();
        assert!(message.starts_with(method), "{message}");
        assert!(message.contains("without --stateless"), "{message}");
    }

    // Tasks would be every caller's on the one session: none are offered, none are made.
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/list"});
    let reply = stateless_post(&server, &token, &list).await;
    assert_eq!(reply.json()["error"]["code"], -32601, "{}", reply.body);
    let call = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"task": "an argument"}, "task": {"ttl": 60000}}});
    let waiting = {
        let (url, token) = (server.url("/"), token.clone());
        tokio::spawn(async move { http_post(&url, Some(&token), &call).await })
    };

    // None of the refused went up, and the call went as a plain one.
    let lines = recording.once(&server, "tools/call");
    for method in [
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
        "tasks/list",
    ] {
        assert!(recorded_messages(&lines, method).is_empty(), "{lines}");
    }
    let params = &recorded_messages(&lines, "tools/call")[0]["params"];
    assert!(params.get("task").is_none(), "{lines}");
    assert_eq!(
        params["arguments"],
        json!({"task": "an argument"}),
        "{lines}"
    );
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_gateway_passes_a_cancellation_on_for_the_callers_own_request_only() {
    let (server, _jwks, alice, recording) = recording_stateless_gateway(&[]);

    // Alice's call waits: the child never answers it.
    let url = server.url("/");
    let waiting = {
        let (url, alice) = (url.clone(), alice.clone());
        let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "slow", "arguments": {}}});
        tokio::spawn(async move { http_post(&url, Some(&alice), &call).await })
    };
    let lines = recording.once(&server, "tools/call");
    let ours = recorded_messages(&lines, "tools/call")[0]["id"].clone();
    assert_ne!(ours, json!(5), "the gateway's own id upstream: {lines}");

    // Mallory names Alice's id, and the gateway's; Alice names an id she has not in flight.
    let mut claims = good_claims();
    claims["sub"] = json!("mallory");
    let mallory = mint(&claims);
    for (token, id) in [
        (&mallory, json!(5)),
        (&mallory, ours.clone()),
        (&alice, json!(6)),
    ] {
        let reply = stateless_post(&server, token, &cancel(id, "not mine")).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    // Alice's own cancellation reaches her request, under the gateway's id for it.
    let reply = stateless_post(&server, &alice, &cancel(json!(5), "changed my mind")).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let lines = recording.once(&server, "notifications/cancelled");
    let cancelled = recorded_messages(&lines, "notifications/cancelled");
    assert_eq!(cancelled.len(), 1, "only Alice's own: {lines}");
    assert_eq!(cancelled[0]["params"]["requestId"], ours, "{lines}");
    assert_eq!(
        cancelled[0]["params"]["reason"], "changed my mind",
        "{lines}"
    );
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_gateway_cancels_upstream_what_it_stops_waiting_for() {
    let (server, _jwks, token, recording) =
        recording_stateless_gateway(&["--upstream-timeout", "1"]);
    let call = tool_call("slow", json!({}));
    let reply = stateless_post(&server, &token, &call).await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.rpc()["id"], 3, "{}", reply.body);
    let lines = recording.once(&server, "notifications/cancelled");
    let ours = &recorded_messages(&lines, "tools/call")[0]["id"];
    let cancelled = recorded_messages(&lines, "notifications/cancelled");
    assert_eq!(cancelled.len(), 1, "{lines}");
    assert_eq!(&cancelled[0]["params"]["requestId"], ours, "{lines}");
    assert_eq!(
        cancelled[0]["params"]["reason"], "the gateway's --upstream-timeout passed",
        "{lines}"
    );
}

/// An HTTP upstream, stateful, whose tool call first asks the client (an elicitation, id
/// `up-1`, on the call's event stream) and then answers with the `content` of the answer it got.
/// Every answer it receives is kept in the returned list.
fn asking_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::response::IntoResponse;
    use futures::StreamExt;
    use std::sync::{Arc, Mutex};
    type Waiting = Arc<Mutex<Option<tokio::sync::oneshot::Sender<Value>>>>;
    let answers: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = answers.clone();
    let waiting: Waiting = Arc::default();
    let addr = serve_on_a_thread(move |_| {
        axum::Router::new().route(
            "/mcp",
            axum::routing::post(move |body: String| {
                let (answers, waiting) = (answers.clone(), waiting.clone());
                async move {
                    let message: Value = serde_json::from_str(&body).unwrap();
                    let id = message["id"].clone();
                    let session = [("mcp-session-id", "s-1")];
                    match message["method"].as_str() {
                        Some("initialize") => (session, axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
                            "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                            "serverInfo": {"name": "asking", "version": "1"}}})))
                            .into_response(),
                        Some("tools/call") => {
                            let (answered, answer) = tokio::sync::oneshot::channel();
                            *waiting.lock().unwrap() = Some(answered);
                            let ask = json!({"jsonrpc": "2.0", "id": "up-1", "method": "elicitation/create",
                                "params": {"message": "who?", "requestedSchema": {"type": "object"}}});
                            let first = format!("data: {ask}\n\n");
                            let then = async move {
                                let answer = answer.await.unwrap_or(Value::Null);
                                let result = json!({"jsonrpc": "2.0", "id": id, "result": {
                                    "content": [{"type": "text", "text": answer["result"]["content"]["name"]}]}});
                                Ok::<_, std::io::Error>(format!("data: {result}\n\n"))
                            };
                            let events = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
                                .chain(futures::stream::once(then));
                            let body = axum::body::Body::from_stream(events);
                            ([("content-type", "text/event-stream")], body).into_response()
                        }
                        Some("ping") => axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {}}))
                            .into_response(),
                        Some(_) => http::StatusCode::ACCEPTED.into_response(),
                        None => {
                            answers.lock().unwrap().push(message.clone());
                            if let Some(waiting) = waiting.lock().unwrap().take() {
                                let _ = waiting.send(message);
                            }
                            http::StatusCode::ACCEPTED.into_response()
                        }
                    }
                }
            }),
        )
    });
    (format!("http://{addr}/mcp"), kept)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_gateway_takes_an_answer_to_the_upstreams_request_only_from_the_caller_asked() {
    use futures::StreamExt;
    let (upstream, answers) = asking_upstream();
    let (server, _jwks, alice) = gateway(&["--stateless", "--upstream", &upstream]);
    let mut claims = good_claims();
    claims["sub"] = json!("mallory");
    let mallory = mint(&claims);
    let url = server.url("/");
    let call = tool_call("ask", json!({}));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&alice)
        .header("accept", "application/json, text/event-stream")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut chunks = response.bytes_stream();
    let mut body = String::new();
    while !body.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), chunks.next());
        body.push_str(std::str::from_utf8(&chunk.await.unwrap().unwrap().unwrap()).unwrap());
    }
    assert!(body.contains(r#""method":"elicitation/create""#), "{body}");
    let answer = |name: &str| json!({"jsonrpc": "2.0", "id": "up-1", "result": {"action": "accept", "content": {"name": name}}});
    // Mallory answers first, in Alice's place: the upstream never sees it.
    let reply = stateless_post(&server, &mallory, &answer("mallory")).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let reply = stateless_post(&server, &alice, &answer("alice")).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    while let Some(chunk) = chunks.next().await {
        body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let last = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .next_back()
        .unwrap();
    let last: Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["id"], 3, "the client's own id: {body}");
    assert_eq!(tool_text(&last), "alice", "{body}");
    let received = answers.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["result"]["content"]["name"], "alice");
    // Once answered (and once its stream is over), the request takes no further answer.
    let reply = stateless_post(&server, &alice, &answer("again")).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(answers.lock().unwrap().len(), 1);
}

/// An HTTP upstream that a proxy in the environment intercepts is reached through it (reqwest's
/// path), and the log says so; the gateway's own connections are only for upstreams reached
/// directly.
#[test]
fn an_upstream_behind_a_proxy_from_the_environment_is_reached_through_it() {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let (first_line, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (stream, _) = proxy.accept().unwrap();
        let mut reader = std::io::BufReader::new(&stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        first_line.send(line.trim_end().to_owned()).unwrap();
        let refusal = "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let _ = (&stream).write_all(refusal.as_bytes());
    });
    let upstream = "http://upstream.invalid:8000/mcp";
    // NO_PROXY keeps the signing keys' fetch from the test's JWKS server (127.0.0.1) direct.
    let (server, _jwks) = Server::start_with_keys_unready(
        &["--stateless", "--upstream", upstream],
        &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")],
    );
    let line = received
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(line, format!("POST {upstream} HTTP/1.1"));
    server.wait_until(|| {
        server
            .stderr()
            .contains("requests to the upstream go through the proxy named in the environment")
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_or_refusing_upstream_is_502_and_not_ready() {
    let closed = format!("http://127.0.0.1:{}/mcp", free_port());
    for mode in [&["--stateless"][..], &[]] {
        let mut args = mode.to_vec();
        args.extend(["--upstream", &closed]);
        let (server, _jwks) = Server::start_with_keys_unready(&args, &[]);
        // Not ready, with the reason, until the upstream answers.
        server.wait_until(|| {
            server
                .get_blocking("/ready")
                .is_some_and(|(status, body)| status == 503 && body.contains("is unreachable"))
        });
        if mode.is_empty() {
            continue;
        }
        let token = mint(&good_claims());
        let reply = stateless_post(&server, &token, &call_greet("Ada")).await;
        assert_eq!(reply.status, 502, "{}", reply.body);
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with(&format!("upstream {closed} is unreachable")),
            "{message}"
        );
        assert_eq!(reply.json()["id"], 1, "the client's own id");
    }

    // An upstream that refuses the gateway's credentials is the gateway's problem, not the
    // client's: 502, never a 401 that would send the client to log in again.
    let (upstream, _upstream_keys) = Server::start_with_keys(&[], &[]);
    let (server, _jwks) =
        Server::start_with_keys_unready(&["--stateless", "--upstream", &upstream.url("/")], &[]);
    let token = mint(&good_claims());
    let reply = stateless_post(&server, &token, &call_greet("Ada")).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("refused this gateway's credentials (HTTP 401)"),
        "{}",
        reply.body
    );
    assert!(reply.header("www-authenticate").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_child_that_writes_garbage_is_stopped_with_the_reason() {
    let (server, _jwks) = Server::start_with_keys_unready(
        &[
            "--stateless",
            "--",
            "sh",
            "-c",
            "echo hello there; sleep 30",
        ],
        &[],
    );
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, body)| status == 503 && body.contains("not JSON-RPC"))
    });
    let reply = stateless_post(&server, &mint(&good_claims()), &call_greet("Ada")).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with(
            "upstream command sh wrote something that is not JSON-RPC on stdout: \"hello there\"; stopped it"
        ),
        "{message}"
    );
}

/// A child that answers `initialize`, then ignores stdin (and its end: not every MCP server exits
/// then) until SIGTERM, which it records. It writes its pid to `<$0>.pid`, a session's child
/// (with a caller in its environment) to `<$0>.session.pid`, apart from the readiness check's and
/// the stateless gateway's shared child.
fn stubborn_child_script() -> String {
    let initialized = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"stubborn","version":"1"}}}"#;
    format!(
        r#"r="$0${{MCP_FORWARDED_USER:+.session}}"; trap 'echo term > "$r.signal"; exit 0' TERM; echo $$ > "$r.pid"; read line; echo '{initialized}'; while :; do sleep 0.1; done"#
    )
}

/// A gateway (stateless or not) in front of [`stubborn_child_script`], its child started; the
/// child's pid, and where it records a SIGTERM.
async fn gateway_with_a_stubborn_child(
    stateless: bool,
    dir: &std::path::Path,
) -> (Server, JwksServer, String, String) {
    let child = dir.join("child").to_str().unwrap().to_owned();
    let record = match stateless {
        true => child.clone(),
        false => format!("{child}.session"),
    };
    let script = stubborn_child_script();
    let mut args = if stateless {
        vec!["--stateless"]
    } else {
        vec![]
    };
    args.extend(["--", "sh", "-c", &script, &child]);
    let (server, jwks) = Server::start_with_keys(&args, &[]);
    if !stateless {
        let opened = http_post(&server.url("/"), Some(&mint(&good_claims())), &initialize()).await;
        assert_eq!(opened.status, 200, "{}", opened.body);
    }
    let pid = child_pid(&server, &format!("{record}.pid"));
    (server, jwks, pid, format!("{record}.signal"))
}

/// Sends `signal` (as `kill` names it) to process `pid`.
fn signal(name: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A child that ignores its closed stdin still stops when the gateway shuts down: SIGTERM
/// first, so that it can clean up; in both modes.
#[tokio::test(flavor = "multi_thread")]
async fn at_shutdown_children_get_sigterm_first() {
    for stateless in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (server, _jwks, pid, signal_record) =
            gateway_with_a_stubborn_child(stateless, dir.path()).await;
        signal("TERM", &server.child.id().to_string());
        server.wait_until(|| !alive(&pid));
        assert_eq!(
            std::fs::read_to_string(&signal_record).ok().as_deref(),
            Some("term\n"),
            "stateless={stateless}: the child was stopped without SIGTERM\n{}",
            server.stderr()
        );
    }
}

/// A child that ignores its closed stdin dies with a gateway killed outright, which can stop
/// nothing itself: the binary starts each command through its launcher, which has the kernel
/// send it SIGKILL when the gateway dies (`gateway::launcher`); in both modes.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn children_die_with_a_gateway_killed_outright() {
    for stateless in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (server, _jwks, pid, _) = gateway_with_a_stubborn_child(stateless, dir.path()).await;
        // The command itself, as it was named: the launcher became it.
        let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            command_line.starts_with(b"sh\0-c\0"),
            "{:?}",
            String::from_utf8_lossy(&command_line)
        );
        let left_running = kill_when_dropped(pid.clone());
        signal("KILL", &server.child.id().to_string());
        server.wait_until(|| !alive(&pid));
        drop(left_running);
    }
}

/// Kills process `pid` when dropped, so that a failing test leaves no child running.
fn kill_when_dropped(pid: String) -> impl Drop {
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0])
                .status();
        }
    }
    Kill(pid)
}

/// `serve --stateless --max-body-bytes 400` in front of `upstream`, with a token for it.
fn stateless_gateway_with_400_byte_messages(upstream: &Server) -> (Server, JwksServer) {
    let bearer = mint(&good_claims());
    gateway_to(
        &upstream.url("/"),
        &bearer,
        &["--stateless", "--max-body-bytes", "400"],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_answer_beyond_max_body_bytes_is_502() {
    // A stateless upstream answers in JSON, read whole (an event stream is cut instead).
    let (upstream, _upstream_keys) = Server::start_with_keys(&["--stateless"], &[]);
    let (server, _keys) = stateless_gateway_with_400_byte_messages(&upstream);
    let token = mint(&good_claims());
    let greeted = stateless_post(&server, &token, &call_greet("Ada")).await;
    assert_eq!(tool_text(&greeted.rpc()), "Hi Ada, welcome to Scalekit!");
    // The tool list, with its schemas, is larger than 400 bytes.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let listed = stateless_post(&server, &token, &list).await;
    assert_eq!(listed.status, 502, "{}", listed.body);
    assert!(
        listed
            .body
            .contains("sent an answer larger than 400 bytes (--max-body-bytes)"),
        "{}",
        listed.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_event_beyond_max_body_bytes_ends_the_stream_without_it() {
    // A stateful upstream answers with an event stream, passed on as it comes.
    let (upstream, _upstream_keys) = Server::start_with_keys(&[], &[]);
    let (server, _keys) = stateless_gateway_with_400_byte_messages(&upstream);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let response = reqwest::Client::new()
        .post(server.url("/"))
        .bearer_auth(mint(&good_claims()))
        .header("accept", "application/json, text/event-stream")
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The stream breaks off before the oversized answer: the client never gets half of it.
    match response.text().await {
        Ok(body) => assert!(!body.contains("greet_user"), "{body}"),
        Err(error) => assert!(error.is_body() || error.is_decode(), "{error}"),
    }
}

/// A session's child that exits mid-session: the request it leaves unanswered gets a 502 whose
/// error names the upstream, the exit status and the child's last stderr line, which usually
/// says why; the session ends with the child.
#[tokio::test(flavor = "multi_thread")]
async fn a_child_that_exits_is_reported_with_its_last_stderr_line() {
    let initialized = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"fragile","version":"1"}}}"#;
    // The readiness check's child (no caller) stays up; a session's child dies on its first call.
    let script = format!(
        r#"read line; echo '{initialized}'; read line; [ -z "$MCP_FORWARDED_USER" ] && exec sleep 60; read line; echo "boom: database unreachable" >&2; exit 3"#
    );
    let (server, _jwks, token) = gateway(&["--", "sh", "-c", &script]);
    let url = server.url("/");
    let init = http_post(&url, Some(&token), &initialize()).await;
    assert_eq!(init.status, 200, "initialize: {}", init.body);
    let session = init.header("mcp-session-id").expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        session_post(&url, &token, session, &initialized)
            .await
            .status,
        202
    );
    let reply = session_post(&url, &token, session, &call_greet("Ada")).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    let error = &reply.rpc()["error"];
    assert_eq!(
        error["message"],
        "upstream command sh exited (exit status: 3); its last stderr line: boom: database unreachable",
        "{}",
        reply.body
    );
    let after = session_post(&url, &token, session, &call_greet("Ada")).await;
    assert_eq!(
        after.status, 404,
        "the session ended with its child: {}",
        after.body
    );
}

/// A token for an upstream that is another `serve`: the gateway's own, in `UPSTREAM_TOKEN`.
fn gateway_credentials() -> String {
    let mut service = good_claims();
    service["sub"] = json!("svc-gateway");
    mint(&service)
}

/// A POST of `message` on `session` with `token`.
async fn session_post(url: &str, token: &str, session: &str, message: &Value) -> Reply {
    let response = post_in_session(url, token, session, message).await;
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// Asserts that `reply` is a 502 (or `status`) with a JSON-RPC error for request `id` whose
/// message starts with `start`, and gives no session.
fn assert_bad_gateway(reply: &Reply, status: u16, id: Value, start: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert!(
        reply.header("mcp-session-id").is_none(),
        "{:?}",
        reply.headers
    );
    let answer = reply.json();
    assert_eq!(answer["id"], id, "{}", reply.body);
    assert_eq!(answer["error"]["code"], -32603, "{}", reply.body);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(start), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn initialize_is_502_while_the_http_upstream_is_down_and_leaves_no_session() {
    let port = free_port().to_string();
    let upstream_url = format!("http://127.0.0.1:{port}/");
    let upstream_token = gateway_credentials();
    let metrics = format!("127.0.0.1:{}", free_port());
    // One session at most: a failed initialize must give its place back.
    let (server, _keys) = Server::start_with_keys_unready(
        &[
            "--metrics-addr",
            &metrics,
            "--max-sessions",
            "1",
            "--upstream",
            &upstream_url,
            "--upstream-bearer-env",
            "UPSTREAM_TOKEN",
        ],
        &[("UPSTREAM_TOKEN", &upstream_token)],
    );
    let token = mint(&good_claims());
    let url = server.url("/");
    for _ in 0..2 {
        let refused = http_post(&url, Some(&token), &initialize()).await;
        assert_bad_gateway(
            &refused,
            502,
            initialize()["id"].clone(),
            &format!("upstream {upstream_url} is unreachable"),
        );
    }
    let scraped = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scraped
            .lines()
            .any(|line| line == "scalekit_mcp_sessions_active 0"),
        "{scraped}"
    );

    let (_upstream, _upstream_keys) = Server::start_with_keys(&[], &[("PORT", &port)]);
    let opened = http_post(&url, Some(&token), &initialize()).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert!(opened.header("mcp-session-id").is_some());
    assert_eq!(opened.rpc()["result"]["serverInfo"]["name"], "scalekit-mcp");
}

#[tokio::test(flavor = "multi_thread")]
async fn initialize_is_502_when_the_upstream_command_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("upstream");
    std::fs::write(&program, "#!/bin/sh\nexit 1\n").unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&program, mode).unwrap();
    let program = program.to_str().unwrap();
    // The command is there when the gateway starts, and gone by the time a session needs it.
    let (server, _jwks) = Server::start_with_keys_unready(&["--", program], &[]);
    std::fs::remove_file(program).unwrap();
    let token = mint(&good_claims());
    let refused = http_post(&server.url("/"), Some(&token), &initialize()).await;
    assert_bad_gateway(
        &refused,
        502,
        initialize()["id"].clone(),
        &format!("cannot start upstream command {program}: No such file or directory"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn initialize_is_504_when_the_upstream_does_not_answer_in_time() {
    let (server, _jwks) =
        Server::start_with_keys_unready(&["--upstream-timeout", "1s", "--", "sleep", "60"], &[]);
    let token = mint(&good_claims());
    let refused = http_post(&server.url("/"), Some(&token), &initialize()).await;
    assert_bad_gateway(
        &refused,
        504,
        initialize()["id"].clone(),
        "upstream command sleep did not answer initialize within 1 s (--upstream-timeout)",
    );
}

/// An HTTP upstream that goes away while no request comes: `/ready` says so within the gateway's
/// recheck interval (10 s), in both modes, and turns 200 again once it is back.
#[test]
fn an_http_upstream_gone_while_idle_makes_the_gateway_unready() {
    for flags in [&[][..], &["--stateless"][..]] {
        let port = free_port().to_string();
        let (upstream, upstream_keys) = Server::start_with_keys(&[], &[("PORT", &port)]);
        let (server, _keys) = gateway_to(&upstream.url("/"), &gateway_credentials(), flags);
        assert_eq!(server.get_blocking("/ready").unwrap().0, 200, "{flags:?}");

        drop(upstream);
        drop(upstream_keys);
        server.wait_until(|| {
            server
                .get_blocking("/ready")
                .is_some_and(|(status, body)| status == 503 && body.contains("is unreachable"))
        });

        let (_upstream, _upstream_keys) = Server::start_with_keys(&[], &[("PORT", &port)]);
        server.wait_until(|| {
            server
                .get_blocking("/ready")
                .is_some_and(|(status, _)| status == 200)
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_gets_502_while_its_http_upstream_is_known_down() {
    let port = free_port().to_string();
    let (upstream, _upstream_keys) = Server::start_with_keys(&[], &[("PORT", &port)]);
    let upstream_url = upstream.url("/");
    let upstream_token = gateway_credentials();
    let (server, _keys) = gateway_to(&upstream_url, &upstream_token, &[]);
    let token = mint(&good_claims());
    let url = server.url("/");
    let opened = http_post(&url, Some(&token), &initialize()).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let session = opened.header("mcp-session-id").unwrap().to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        session_post(&url, &token, &session, &initialized)
            .await
            .status,
        202
    );
    let greeted = session_post(&url, &token, &session, &call_greet("Ada")).await;
    assert_eq!(tool_text(&greeted.rpc()), "Hi Ada, welcome to Scalekit!");

    drop(upstream);
    // A request that finds the upstream gone has its 200 started already: the error comes in the
    // stream. Once one could not connect at all, the gateway knows, and says so before any
    // stream starts.
    let started = std::time::Instant::now();
    loop {
        let found = session_post(&url, &token, &session, &call_greet("Ada")).await;
        if found.status == 502 {
            break;
        }
        assert_eq!(found.status, 200, "{}", found.body);
        let message = found.rpc()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with(&format!("upstream {upstream_url}")),
            "{message}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{}",
            server.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, ready) = server.get_blocking("/ready").unwrap();
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("is unreachable"), "{ready}");

    let refused = session_post(&url, &mint(&good_claims()), &session, &call_greet("Ada")).await;
    assert_bad_gateway(
        &refused,
        502,
        json!(1),
        &format!("upstream {upstream_url} is unreachable"),
    );
    // A bad token is still refused first.
    let unauthenticated = session_post(&url, "not-a-token", &session, &call_greet("Ada")).await;
    assert_eq!(unauthenticated.status, 401, "{}", unauthenticated.body);

    // Once the background check reaches the upstream again: the restarted upstream has
    // forgotten the session, so the client is told so (404, as the upstream said) and starts a
    // new one, instead of going on in an upstream session that lost whatever it held.
    let (_upstream, _upstream_keys) = Server::start_with_keys(&[], &[("PORT", &port)]);
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    let forgotten = session_post(&url, &token, &session, &call_greet("Ada")).await;
    assert_eq!(forgotten.status, 404, "{}", forgotten.body);
    let gone = session_post(&url, &token, &session, &call_greet("Ada")).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    let reopened = http_post(&url, Some(&token), &initialize()).await;
    assert_eq!(reopened.status, 200, "{}", reopened.body);
    let session = reopened.header("mcp-session-id").unwrap().to_owned();
    session_post(&url, &token, &session, &initialized).await;
    let again = session_post(&url, &token, &session, &call_greet("Ada")).await;
    assert_eq!(tool_text(&again.rpc()), "Hi Ada, welcome to Scalekit!");
}
