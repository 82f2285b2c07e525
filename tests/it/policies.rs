//! `serve`'s policies: the scopes each tool needs (`--tool-scope`: refused before the tool runs,
//! left out of `tools/list`), the organizations whose tokens are accepted (`--allowed-org`), and
//! `check-token --tool` reading the same settings.

use axum::Router;
use axum::body::Body;
use scalekit_mcp::server::connections::PeerAddr;
use serde_json::{Value, json};

use crate::util::*;

fn policy_app(extra: &[&str]) -> Router {
    let mut args = vec!["--sk-env-url", ISSUER, "--audience", AUDIENCE];
    args.extend_from_slice(extra);
    app(&args, keys("jwks-all.json"))
}

fn token_with_scopes(scopes: &str) -> String {
    let mut claims = good_claims();
    claims["scope"] = json!(scopes);
    mint(&claims)
}

/// A tools/call or tools/list, in a fresh session (stateful) or on its own (stateless).
async fn ask(app: &Router, stateless: bool, token: &str, message: &Value) -> Reply {
    if stateless {
        return post(app, Some(token), message).await;
    }
    let init = post(app, Some(token), &initialize()).await;
    let session = init.header("mcp-session-id").expect("a session").to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    for body in [&initialized, message] {
        let request = mcp_post(Some(token))
            .header("mcp-session-id", &session)
            .body(Body::from(body.to_string()))
            .unwrap();
        let reply = send(app, request).await;
        if std::ptr::eq(body, message) {
            return reply;
        }
    }
    unreachable!()
}

/// The string fields `first` and `second` of each object.
fn field_pairs(objects: &[Value], first: &str, second: &str) -> Vec<(String, String)> {
    let text = |object: &Value, field: &str| object[field].as_str().unwrap_or_default().to_owned();
    objects
        .iter()
        .map(|object| (text(object, first), text(object, second)))
        .collect()
}

fn listed(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.rpc()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_tool_scope_refuses_the_call_before_the_tool_and_hides_it_from_the_list() {
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    for stateless in [false, true] {
        let mut flags = vec!["--tool-scope", "greet_*=greet:write greet:read"];
        if stateless {
            flags.push("--stateless");
        }
        let app = policy_app(&flags);
        let narrow = token_with_scopes("mcp:tools greet:read");

        let refused = ask(&app, stateless, &narrow, &call_greet("Ada")).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        let challenge = refused.header("www-authenticate").unwrap();
        assert_eq!(
            challenge,
            "Bearer realm=\"OAuth\", resource_metadata=\"http://localhost:3002/.well-known/oauth-protected-resource\", \
             scope=\"greet:write greet:read\", error=\"insufficient_scope\", \
             error_description=\"tool greet_user needs scope greet:write greet:read; the token lacks greet:write\"",
            "stateless: {stateless}"
        );
        assert_eq!(
            listed(&ask(&app, stateless, &narrow, &list).await),
            ["whoami"]
        );

        let broad = token_with_scopes("greet:write greet:read");
        let reply = ask(&app, stateless, &broad, &call_greet("Ada")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(tool_text(&reply.rpc()), "Hi Ada, welcome to Scalekit!");
        let mut names = listed(&ask(&app, stateless, &broad, &list).await);
        names.sort();
        assert_eq!(names, ["greet_user", "whoami"]);
    }
}

#[tokio::test]
async fn tool_scopes_join_the_required_ones_in_the_challenge_and_the_metadata() {
    let app = policy_app(&[
        "--required-scope",
        "mcp:tools",
        "--tool-scope",
        "whoami=who offline_access",
    ]);
    let refused = post(
        &app,
        Some(&token_with_scopes("mcp:tools")),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "whoami", "arguments": {}}}),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let challenge = refused.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("scope=\"mcp:tools who\""),
        "every scope the call needs, never offline_access: {challenge}"
    );
    let metadata = send(
        &app,
        http::Request::get("/.well-known/oauth-protected-resource")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        metadata.json()["scopes_supported"],
        json!(["mcp:tools", "who", "offline_access"])
    );
}

#[tokio::test]
async fn an_expired_token_is_401_before_any_tool_scope() {
    let app = policy_app(&["--tool-scope", "*=admin"]);
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 600);
    let reply = post(&app, Some(&mint(&claims)), &call_greet("Ada")).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
}

#[tokio::test]
async fn only_listed_organizations_get_in() {
    let app = policy_app(&["--stateless", "--allowed-org", "org_7,org_9"]);
    // good_claims() carries `oid: org_7`.
    let reply = post(&app, Some(&mint(&good_claims())), &call_greet("Ada")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let mut other = good_claims();
    other["oid"] = json!("org_8");
    let reply = post(&app, Some(&mint(&other)), &call_greet("Ada")).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(
        challenge_description(reply.header("www-authenticate").unwrap()),
        "organization org_8 is not allowed (allowed: org_7, org_9)"
    );

    let mut none = good_claims();
    none.as_object_mut().unwrap().remove("oid");
    let reply = post(&app, Some(&mint(&none)), &call_greet("Ada")).await;
    assert_eq!(reply.status, 401);
    assert!(
        challenge_description(reply.header("www-authenticate").unwrap()).starts_with(
            "organization (none: the token has no org_id or oid claim) is not allowed"
        ),
        "{}",
        reply.body
    );

    let mut by_org_id = none.clone();
    by_org_id["org_id"] = json!("org_9");
    let reply = post(&app, Some(&mint(&by_org_id)), &call_greet("Ada")).await;
    assert_eq!(
        reply.status, 200,
        "org_id counts as well as oid: {}",
        reply.body
    );
}

#[test]
fn a_malformed_tool_scope_stops_serve_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary(dir.path())
        .args([
            "serve",
            "--sk-env-url",
            ISSUER,
            "--tool-scope",
            "greet_user",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--tool-scope \"greet_user\" has no '=': write NAME=SCOPE"),
        "{stderr}"
    );
}

/// check-token reads `--tool-scope` as serve does, here from the environment (entries separated
/// by `;`), and says whether the token may call each tool named with `--tool`.
#[test]
fn check_token_says_whether_a_token_may_call_a_tool() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_with_scopes("mcp:tools greet:read");
    let run = |tools: &[&str], json: bool| {
        let mut command = binary(dir.path());
        command
            .args(["check-token", &token])
            .args(json.then_some("--json"))
            .env(
                "SCALEKIT_MCP_TOOL_SCOPES",
                "greet_*=greet:write;whoami=greet:read",
            );
        for tool in tools {
            command.args(["--tool", tool]);
        }
        command.output().unwrap()
    };
    let output = run(&["whoami", "greet_user", "other"], true);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let tool_checks: Vec<Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["name"] == "tool")
        .cloned()
        .collect();
    let tools = field_pairs(&tool_checks, "status", "detail");
    assert_eq!(
        tools,
        [
            ("pass".into(), "whoami: has greet:read".into()),
            (
                "fail".into(),
                "tool greet_user needs scope greet:write; the token lacks greet:write".into()
            ),
            ("pass".into(), "other needs no scope of its own".into()),
        ]
    );
    assert_eq!(report["valid"], false);

    let human = run(&["greet_user"], false);
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(
        stdout.contains(
            "serve would answer 403 insufficient_scope: tool greet_user needs scope greet:write"
        ),
        "{stdout}"
    );
    assert_eq!(run(&["whoami"], false).status.code(), Some(0));
}

fn token_of(subject: &str) -> String {
    let mut claims = good_claims();
    claims["sub"] = json!(subject);
    mint(&claims)
}

#[tokio::test]
async fn over_the_caller_rate_limit_is_429_with_the_ratelimit_headers() {
    let app = policy_app(&[
        "--stateless",
        "--rate-limit",
        "3/min",
        "--rate-limit-burst",
        "3",
    ]);
    let alice = token_of("alice");
    for n in 1..=3 {
        let reply = post(&app, Some(&alice), &call_greet("Ada")).await;
        assert_eq!(reply.status, 200, "request {n}: {}", reply.body);
    }
    let refused = post(&app, Some(&alice), &call_greet("Ada")).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=20).contains(&retry_after),
        "one request per 20 s, less the time the first three took: {retry_after}"
    );
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"caller\";q=3;w=60")
    );
    assert_eq!(
        refused.header("ratelimit"),
        Some(format!("\"caller\";r=0;t={retry_after}").as_str())
    );
    assert_eq!(refused.json()["error"], "rate_limited");
    assert!(
        refused.json()["error_description"]
            .as_str()
            .unwrap()
            .starts_with("rate limit 3/min per caller exceeded"),
        "{}",
        refused.body
    );

    let bob = token_of("bob");
    let reply = post(&app, Some(&bob), &call_greet("Ada")).await;
    assert_eq!(reply.status, 200, "another caller has its own limit");
    // A refused token is not a caller: it gets its 401, and counts nowhere.
    let reply = post(&app, Some("not-a-token"), &call_greet("Ada")).await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn a_tool_rate_limit_counts_calls_of_that_tool_per_caller_in_a_session_too() {
    for stateless in [false, true] {
        let mut flags = vec!["--tool-rate-limit", "greet_*=2/h"];
        if stateless {
            flags.push("--stateless");
        }
        let app = policy_app(&flags);
        let alice = token_of("alice");
        let first = ask(&app, stateless, &alice, &call_greet("Ada")).await;
        assert_eq!(first.status, 200, "{}", first.body);
        let second = ask(&app, stateless, &alice, &call_greet("Ada")).await;
        assert_eq!(
            second.status, 429,
            "burst of 1 (a tenth of 2, at least 1): {}",
            second.body
        );
        assert_eq!(
            second.header("ratelimit-policy"),
            Some("\"tool-greet_*\";q=2;w=3600")
        );
        let whoami = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                            "params": {"name": "whoami", "arguments": {}}});
        let other_tool = ask(&app, stateless, &alice, &whoami).await;
        assert_eq!(other_tool.status, 200, "whoami is not limited");
        let bob = ask(&app, stateless, &token_of("bob"), &call_greet("Ada")).await;
        assert_eq!(bob.status, 200, "per caller");
    }
}

#[test]
fn malformed_rate_limits_stop_serve_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary(dir.path())
        .args([
            "serve",
            "--sk-env-url",
            ISSUER,
            "--rate-limit",
            "10/day",
            "--tool-rate-limit",
            "greet_user",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--rate-limit: \"10/day\" is not a rate: write N/UNIT"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--tool-rate-limit \"greet_user\": write NAME=N/UNIT"),
        "{stderr}"
    );
}

/// A request from `peer` (as the connection loop marks it), with `headers`.
async fn from_peer(app: &Router, peer: &str, token: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = mcp_post(Some(token));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder
        .body(Body::from(call_greet("Ada").to_string()))
        .unwrap();
    let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    request.extensions_mut().insert(PeerAddr(peer));
    send(app, request).await
}

#[tokio::test]
async fn unverified_requests_are_limited_per_client_ip_trusting_only_listed_proxies() {
    // 60/min: a burst of 6, then one a second.
    let app = policy_app(&[
        "--stateless",
        "--anonymous-rate-limit",
        "60/min",
        "--trusted-proxy",
        "10.0.0.0/8",
    ]);
    let attacker = "198.51.100.7";
    for n in 1..=6 {
        let reply = from_peer(&app, attacker, "bad.token.here", &[]).await;
        assert_eq!(reply.status, 401, "bad token {n}");
    }
    let limited = from_peer(&app, attacker, "bad.token.here", &[]).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some("\"client-ip\";q=60;w=60")
    );
    let spoofed = from_peer(
        &app,
        attacker,
        "bad.token.here",
        &[("x-forwarded-for", "203.0.113.99")],
    )
    .await;
    assert_eq!(
        spoofed.status, 429,
        "an untrusted peer cannot pick its address"
    );
    assert_eq!(
        from_peer(&app, "198.51.100.8", "bad.token.here", &[])
            .await
            .status,
        401,
        "another client has its own budget"
    );

    // Behind a trusted proxy, each forwarded-for client has its own budget.
    for n in 1..=6 {
        let reply = from_peer(
            &app,
            "10.0.0.2",
            "bad",
            &[("x-forwarded-for", "203.0.113.1")],
        )
        .await;
        assert_eq!(reply.status, 401, "forwarded {n}");
    }
    let reply = from_peer(
        &app,
        "10.0.0.2",
        "bad",
        &[("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    assert_eq!(reply.status, 429);
    let reply = from_peer(
        &app,
        "10.0.0.2",
        "bad",
        &[("x-forwarded-for", "203.0.113.2")],
    )
    .await;
    assert_eq!(reply.status, 401);

    // A valid token is checked once and then remembered: its later requests are not counted.
    let token = mint(&good_claims());
    for n in 1..=20 {
        let reply = from_peer(&app, "192.0.2.50", &token, &[]).await;
        assert_eq!(reply.status, 200, "request {n} with a remembered token");
    }
}

/// The connection loop tells the limit who the peer is.
#[tokio::test]
async fn the_served_binary_limits_unverified_requests_by_the_connections_peer() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let jwks_url = format!("{}/keys", jwks.url());
    let server = Server::start(&[
        "--issuer",
        ISSUER,
        "--jwks-url",
        &jwks_url,
        "--audience",
        AUDIENCE,
        "--stateless",
        "--anonymous-rate-limit",
        "60/min",
    ]);
    let url = server.url("/");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            http_post(&url, Some("bad.token.x"), &call_greet("Ada"))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429]);
}

/// One JSON audit line per tools/call, with who, which tool, how it ended and how long it took;
/// never the arguments or the token.
#[tokio::test]
async fn every_tool_call_gets_an_audit_line() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let jwks_url = format!("{}/keys", jwks.url());
    let server = Server::start(&[
        "--issuer",
        ISSUER,
        "--jwks-url",
        &jwks_url,
        "--audience",
        AUDIENCE,
        "--log-format",
        "json",
        "--tool-scope",
        "whoami=who",
        "--tool-rate-limit",
        "greet_user=1/h",
    ]);
    let url = server.url("/");
    let token = mint(&good_claims());
    let secret_name = "Ada-the-argument";
    let ok = http_session_call(&url, &token, &call_greet(secret_name)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let limited = http_session_call(&url, &token, &call_greet(secret_name)).await;
    assert_eq!(limited.status, 429);
    let whoami = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                        "params": {"name": "whoami", "arguments": {}}});
    let denied = http_session_call(&url, &token, &whoami).await;
    assert_eq!(denied.status, 403);
    let bad_arguments = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                               "params": {"name": "unknown_tool", "arguments": {}}});
    let error = http_session_call(&url, &token, &bad_arguments).await;
    assert_eq!(error.status, 200, "a JSON-RPC error: {}", error.body);

    let mut lines = Vec::new();
    server.wait_until(|| {
        lines = server
            .stderr()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["target"] == "audit")
            .collect();
        lines.len() >= 4
    });
    let summary = field_pairs(&lines, "tool", "outcome");
    assert_eq!(
        summary,
        [
            ("greet_user".into(), "ok".into()),
            ("greet_user".into(), "rate_limited".into()),
            ("whoami".into(), "denied".into()),
            ("unknown_tool".into(), "error".into()),
        ]
    );
    for line in &lines {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["subject"], "usr_42");
        assert_eq!(line["org"], "org_7");
        assert_eq!(line["client_id"], "skc_client");
        assert!(
            line["duration_ms"].as_str().unwrap().parse::<f64>().is_ok(),
            "{line}"
        );
    }
    let stderr = server.stderr();
    assert!(!stderr.contains(secret_name), "an argument reached the log");
    assert!(!stderr.contains(&token), "the token reached the log");
}

/// The text format's request and audit lines (written by hand on this path, see
/// `logging::plain`), as an operator's log collector reads them: a tool call answered by the
/// direct path, one passed to rmcp (it asks for progress), and one with `--stateless`, each
/// audited once; a refused request's line, without subject or query string.
#[tokio::test]
async fn text_lines_name_the_request_and_the_tool_call() {
    let token = mint(&good_claims());
    let audit = r#" INFO tool call subject="usr_42" org="org_7" client_id="skc_client" tool="greet_user" outcome="ok" duration_ms="#;
    let request_line = r#" INFO request method=POST path="/" status=200 latency_ms="#;

    let (server, _jwks) = Server::start_with_keys(&[], &[]);
    let direct = http_session_call(&server.url("/"), &token, &call_greet("Ada")).await;
    assert_eq!(direct.status, 200, "{}", direct.body);
    let mut with_progress = call_greet("Ada");
    with_progress["params"]["_meta"] = json!({"progressToken": 7});
    let through_rmcp = http_session_call(&server.url("/"), &token, &with_progress).await;
    assert_eq!(through_rmcp.status, 200, "{}", through_rmcp.body);
    assert!(through_rmcp.body.contains("Ada"), "{}", through_rmcp.body);
    let stderr = server.stderr_with(audit, 2);
    for audit_line in stderr.lines().filter(|line| line.contains(audit)) {
        let (timestamp, duration) = audit_line.split_once(audit).unwrap();
        let timestamp = timestamp.trim_end();
        assert!(
            timestamp.ends_with('Z') && timestamp.len() == 27,
            "{audit_line}"
        );
        assert!(duration.parse::<f64>().is_ok(), "{audit_line}");
    }
    let stderr = server.stderr_with(request_line, 2);
    let request = stderr
        .lines()
        .rfind(|line| line.contains(request_line))
        .unwrap();
    assert!(request.ends_with(r#" subject="usr_42""#), "{request}");
    assert!(!stderr.contains(&token), "the token reached the log");

    // A refused request is in the line too, without a subject and without its query string.
    let refused_url = server.url(&format!("/?access_token={token}"));
    let refused = http_post(&refused_url, None, &call_greet("Ada")).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let refused_line = r#" INFO request method=POST path="/" status=401 latency_ms="#;
    let stderr = server.stderr_with(refused_line, 1);
    let refused = stderr.lines().find(|line| line.contains(refused_line));
    assert!(refused.unwrap().ends_with(r#" subject="-""#), "{stderr}");
    assert!(!stderr.contains(&token), "the token reached the log");

    let (stateless, _stateless_jwks) = Server::start_with_keys(&["--stateless"], &[]);
    let reply = http_post(&stateless.url("/"), Some(&token), &call_greet("Ada")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    stateless.stderr_with(audit, 1);
    stateless.stderr_with(request_line, 1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        server.stderr().matches(audit).count(),
        2,
        "audited once each"
    );
    assert_eq!(stateless.stderr().matches(audit).count(), 1, "audited once");
}
