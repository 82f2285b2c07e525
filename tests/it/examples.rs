//! The library's examples, run as their users run them and driven over HTTP with tokens from
//! the test JWKS: `examples/todo_server.rs` (a whole server: tenants, per-tool scopes) and
//! `examples/mount_in_axum.rs` (MCP mounted in an existing axum application).

use serde_json::{Value, json};

use crate::util::*;

/// The example `name` on a free port (`--port`), with the test JWKS as its key source and the
/// usual issuer and audience, by flags or, for an example without `serve`'s flags, by
/// environment.
fn start_example(name: &str, jwks: &JwksServer, extra: &[&str], by_env: bool) -> Server {
    let jwks_url = format!("{}/keys", jwks.url());
    let program = example_path(name);
    let dir = tempfile::tempdir().unwrap();
    if by_env {
        let env = [
            ("SCALEKIT_MCP_ISSUERS", ISSUER),
            ("SCALEKIT_MCP_JWKS_URL", jwks_url.as_str()),
            ("EXPECTED_AUDIENCE", AUDIENCE),
        ];
        Server::start_program(&program, &[], dir, extra, &env)
    } else {
        let mut args = vec![
            "--issuer",
            ISSUER,
            "--jwks-url",
            jwks_url.as_str(),
            "--audience",
            AUDIENCE,
        ];
        args.extend_from_slice(extra);
        Server::start_program(&program, &[], dir, &args, &[])
    }
}

/// A token for `sub` in organization `org` (none: the token names no organization) with
/// `scopes`.
fn token(sub: &str, org: Option<&str>, scopes: &str) -> String {
    let mut claims = good_claims();
    claims["sub"] = json!(sub);
    claims["scope"] = json!(scopes);
    let object = claims.as_object_mut().unwrap();
    object.remove("oid");
    if let Some(org) = org {
        object.insert("org_id".into(), json!(org));
    }
    mint(&claims)
}

fn call(tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// A tool call in a fresh session (or, `stateless`, on its own): its structured result.
async fn call_tool(
    server: &Server,
    stateless: bool,
    token: &str,
    tool: &str,
    args: Value,
) -> Reply {
    let url = server.url("/");
    if stateless {
        http_post(&url, Some(token), &call(tool, args)).await
    } else {
        http_session_call(&url, token, &call(tool, args)).await
    }
}

fn structured(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let rpc = reply.rpc();
    assert_eq!(rpc["result"]["isError"], false, "{rpc}");
    rpc["result"]["structuredContent"].clone()
}

fn titles(list: &Value) -> Vec<String> {
    list["todos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|todo| todo["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn todo_tenants_are_apart(stateless: bool) {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let extra: &[&str] = if stateless { &["--stateless"] } else { &[] };
    let server = start_example("todo_server", &jwks, extra, false);
    let rw = "todo:read todo:write";
    let alice = token("alice", Some("org_a"), rw);
    let alice_colleague = token("carol", Some("org_a"), rw);
    let bob = token("bob", Some("org_b"), rw);
    let solo = token("dave", None, rw);

    let reply = call_tool(
        &server,
        stateless,
        &alice,
        "add_todo",
        json!({"title": "ship it"}),
    )
    .await;
    if !stateless {
        // The example allows it: a plain call on its session is answered directly.
        assert!(
            reply.body.starts_with("data: \nid: direct-"),
            "{}",
            reply.body
        );
    }
    let added = structured(&reply);
    assert_eq!(added["title"], "ship it");
    let id = added["id"].clone();
    structured(
        &call_tool(
            &server,
            stateless,
            &solo,
            "add_todo",
            json!({"title": "mine alone"}),
        )
        .await,
    );

    let list = |token: String| {
        let server = &server;
        async move { structured(&call_tool(server, stateless, &token, "list_todos", json!({})).await) }
    };
    assert_eq!(titles(&list(alice.clone()).await), ["ship it"]);
    let colleague = list(alice_colleague).await;
    assert_eq!(colleague["tenant"], "org:org_a");
    assert_eq!(
        titles(&colleague),
        ["ship it"],
        "one organization, one list"
    );
    let other = list(bob.clone()).await;
    assert_eq!(other["tenant"], "org:org_b");
    assert!(
        titles(&other).is_empty(),
        "another organization sees nothing: {other}"
    );
    let personal = list(solo).await;
    assert_eq!(personal["tenant"], "user:dave");
    assert_eq!(
        titles(&personal),
        ["mine alone"],
        "no organization: a list of one's own"
    );

    // Another tenant's id is as unknown as an id that does not exist.
    let refused = call_tool(&server, stateless, &bob, "complete_todo", json!({"id": id})).await;
    let rpc = refused.rpc();
    assert!(
        rpc["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no to-do with id"),
        "{rpc}"
    );
    let done = structured(
        &call_tool(
            &server,
            stateless,
            &alice,
            "complete_todo",
            json!({"id": id}),
        )
        .await,
    );
    assert_eq!(done["done"], true);
}

#[tokio::test]
async fn todo_server_keeps_each_tenants_todos_apart() {
    todo_tenants_are_apart(false).await;
}

#[tokio::test]
async fn todo_server_keeps_tenants_apart_when_stateless_too() {
    todo_tenants_are_apart(true).await;
}

async fn a_missing_tool_scope_is_a_403_before_the_tool_runs(stateless: bool) {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let extra: &[&str] = if stateless { &["--stateless"] } else { &[] };
    let server = start_example("todo_server", &jwks, extra, false);
    let reader = token("rita", Some("org_r"), "todo:read");

    let refused = call_tool(
        &server,
        stateless,
        &reader,
        "add_todo",
        json!({"title": "sneaky"}),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let challenge = refused.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"OAuth\", resource_metadata=\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"todo:write\""), "{challenge}");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(
        challenge_description(challenge),
        "tool add_todo needs scope todo:write; the token lacks todo:write"
    );
    assert_eq!(refused.json()["error"], "insufficient_scope");

    // It never ran: the organization's list is still empty, and reading is allowed.
    let list = structured(&call_tool(&server, stateless, &reader, "list_todos", json!({})).await);
    assert!(titles(&list).is_empty(), "{list}");

    // An expired token is refused as expired (401) first, whatever its scopes.
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 3600);
    let expired = http_post(
        &server.url("/"),
        Some(&mint(&claims)),
        &call("add_todo", json!({"title": "x"})),
    )
    .await;
    assert_eq!(expired.status, 401, "{}", expired.body);
}

#[tokio::test]
async fn todo_server_refuses_a_missing_tool_scope_with_a_challenge() {
    a_missing_tool_scope_is_a_403_before_the_tool_runs(false).await;
}

#[tokio::test]
async fn todo_server_refuses_a_missing_tool_scope_when_stateless_too() {
    a_missing_tool_scope_is_a_403_before_the_tool_runs(true).await;
}

#[tokio::test]
async fn todo_server_advertises_its_tools_scopes() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = start_example("todo_server", &jwks, &[], false);
    let metadata: Value = reqwest::get(server.url("/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["scopes_supported"],
        json!(["todo:write", "todo:read"])
    );
}

#[tokio::test]
async fn an_axum_app_keeps_its_routes_and_gets_mcp_beside_them() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    // Started with `--port <a free port>`, its only flag.
    let server = start_example("mount_in_axum", &jwks, &[], true);
    let port = server.port;
    let client = reqwest::Client::new();

    let hello = client.get(server.url("/api/hello")).send().await.unwrap();
    assert_eq!(hello.status(), 200, "a public route needs no token");
    assert_eq!(hello.text().await.unwrap(), "hello from the app");

    let me = client.get(server.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 401);
    let me_challenge = me.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let mcp = http_post(&server.url("/mcp"), None, &initialize()).await;
    assert_eq!(mcp.status, 401);
    assert_eq!(
        me_challenge,
        mcp.header("www-authenticate").unwrap(),
        "the app's protected route and MCP challenge alike"
    );
    let metadata_url = format!("http://localhost:{port}/.well-known/oauth-protected-resource/mcp");
    assert!(me_challenge.contains(&metadata_url), "{me_challenge}");

    let metadata: Value = client
        .get(server.url("/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], format!("http://localhost:{port}/mcp"));

    let alice = token("alice", Some("org_a"), "mcp:tools");
    let me: Value = client
        .get(server.url("/api/me"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["org_id"], "org_a");

    let reply = http_session_call(&server.url("/mcp"), &alice, &call("hello", json!({}))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(tool_text(&reply.rpc()), "hello, alice");

    let mut expired = good_claims();
    expired["exp"] = json!(now() - 3600);
    let refused = client
        .get(server.url("/api/me"))
        .bearer_auth(mint(&expired))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

async fn listed_tools(server: &Server, stateless: bool, token: &str) -> Vec<String> {
    let list = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"});
    let url = server.url("/");
    let reply = if stateless {
        http_post(&url, Some(token), &list).await
    } else {
        http_session_call(&url, token, &list).await
    };
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut names: Vec<String> = reply.rpc()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn todo_server_lists_only_the_tools_a_caller_may_call() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    for stateless in [false, true] {
        let extra: &[&str] = if stateless { &["--stateless"] } else { &[] };
        let server = start_example("todo_server", &jwks, extra, false);
        let all = token("w", Some("o"), "todo:read todo:write");
        assert_eq!(
            listed_tools(&server, stateless, &all).await,
            ["add_todo", "complete_todo", "list_todos"]
        );
        let reader = token("r", Some("o"), "todo:read");
        assert_eq!(
            listed_tools(&server, stateless, &reader).await,
            ["list_todos"]
        );
        let nobody = token("n", Some("o"), "mcp:tools");
        assert!(listed_tools(&server, stateless, &nobody).await.is_empty());
    }
}
