//! `serve`'s policies: the scopes each tool needs (`--tool-scope`: refused before the tool runs,
//! left out of `tools/list`), the organizations whose tokens are accepted (`--allowed-org`), and
//! `check-token --tool` reading the same settings.

use axum::Router;
use axum::body::Body;
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
    let tools: Vec<(String, String)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["name"] == "tool")
        .map(|check| {
            (
                check["status"].as_str().unwrap().to_owned(),
                check["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
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
