//! `serve` as a process: configuration errors, the seed's `.env`, JWKS loading, rotation,
//! outage and cooldown against a JWKS server the test controls, discovery, stdio, log hygiene
//! and shutdown.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::util::*;

fn claims_for(issuer: &str) -> serde_json::Value {
    let mut claims = good_claims();
    claims["iss"] = json!(issuer);
    claims
}

/// Runs `serve` with `args` expecting a startup failure; returns stderr.
fn startup_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = binary(dir.path())
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "expected exit 2: {output:?}");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn missing_configuration_lists_what_to_set() {
    let stderr = startup_error(&[], &[]);
    assert!(
        stderr.contains("no accepted token issuer: set SK_ENV_URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`scalekit-mcp serve --dev` runs it offline"),
        "a newcomer is told how to try it without an authorization server: {stderr}"
    );
}

#[test]
fn session_caps_of_zero_are_refused() {
    let stderr = startup_error(
        &[
            "--max-sessions",
            "0",
            "--max-sessions-per-caller",
            "0",
            "--session-idle-timeout",
            "0s",
        ],
        &[("SK_ENV_URL", ISSUER)],
    );
    for flag in [
        "--max-sessions (SCALEKIT_MCP_MAX_SESSIONS) must be at least 1",
        "--max-sessions-per-caller (SCALEKIT_MCP_MAX_SESSIONS_PER_CALLER) must be at least 1",
        "--session-idle-timeout (SCALEKIT_MCP_SESSION_IDLE_TIMEOUT) must be longer than 0s",
    ] {
        assert!(stderr.contains(flag), "{flag}: {stderr}");
    }
}

#[test]
fn unusable_session_and_rate_limit_stores_are_refused_with_the_fix() {
    let env = [("SK_ENV_URL", ISSUER)];
    let stderr = startup_error(
        &[
            "--session-store",
            "http://cache:6379",
            "--rate-limit-store",
            "redis//cache",
        ],
        &env,
    );
    assert!(
        stderr.contains("--session-store (SCALEKIT_MCP_SESSION_STORE): the scheme is http; only redis:// and rediss:// (TLS) are supported"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--rate-limit-store (SCALEKIT_MCP_RATE_LIMIT_STORE): not a URL"),
        "{stderr}"
    );
    let stderr = startup_error(
        &[
            "--stateless",
            "--session-store",
            "redis://:s3cret@cache:6379",
        ],
        &env,
    );
    assert!(
        stderr.contains("--session-store keeps stateful sessions, and --stateless has none"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_gateway_refuses_a_session_store_and_names_the_alternatives() {
    let stderr = startup_error(
        &["--session-store", "redis://127.0.0.1:9", "--", "true"],
        &[("SK_ENV_URL", ISSUER)],
    );
    assert!(
        stderr.contains("--session-store cannot move a gateway's sessions between replicas"),
        "{stderr}"
    );
    assert!(stderr.contains("Use --stateless"), "{stderr}");
}

#[test]
fn invalid_metadata_json_names_the_variable() {
    let stderr = startup_error(
        &[],
        &[
            ("SK_ENV_URL", ISSUER),
            ("PROTECTED_RESOURCE_METADATA", "{not json"),
        ],
    );
    assert!(
        stderr.contains("PROTECTED_RESOURCE_METADATA is not valid JSON"),
        "{stderr}"
    );
}

#[test]
fn metadata_without_required_fields_is_refused_at_startup() {
    let stderr = startup_error(
        &[],
        &[
            ("SK_ENV_URL", ISSUER),
            ("PROTECTED_RESOURCE_METADATA", r#"{"scopes_supported":[]}"#),
        ],
    );
    assert!(stderr.contains("no \"resource\""), "{stderr}");
    assert!(stderr.contains("no \"authorization_servers\""), "{stderr}");
}

#[test]
fn symmetric_algorithms_and_bad_values_are_refused() {
    let stderr = startup_error(
        &[
            "--algorithms",
            "HS256",
            "--leeway",
            "30",
            "--idle-timeout",
            "0s",
        ],
        &[("SK_ENV_URL", ISSUER)],
    );
    assert!(
        stderr.contains("symmetric (HMAC) and never allowed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--idle-timeout (SCALEKIT_MCP_IDLE_TIMEOUT) must be longer than 0s"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let output = binary(dir.path())
        .args(["serve", "--leeway", "soon"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a duration"));
}

#[test]
fn contradictory_metadata_sources_are_refused() {
    let metadata = json!({"resource": AUDIENCE, "authorization_servers": [ISSUER]}).to_string();
    let stderr = startup_error(
        &["--resource", "https://x.example/"],
        &[("PROTECTED_RESOURCE_METADATA", &metadata)],
    );
    assert!(stderr.contains("use one or the other"), "{stderr}");
}

/// The seed's `.env`, as a team running the Python pattern has it (SK_ENV_URL pointed at the
/// test's JWKS server, PORT at a free port).
fn seed_env(sk_env_url: &str, port: u16) -> String {
    let metadata = json!({
        "resource": "http://localhost:3002/",
        "authorization_servers": [format!("{sk_env_url}/resources/res_123")],
        "bearer_methods_supported": ["header"],
        "resource_documentation": "http://localhost:3002/docs",
        "scopes_supported": ["user:read"],
    });
    format!(
        "SK_ENV_URL={sk_env_url}\nSK_CLIENT_ID=skc_123\nSK_CLIENT_SECRET=test-secret-value\n\
         EXPECTED_AUDIENCE=http://localhost:3002\nPROTECTED_RESOURCE_METADATA='{metadata}'\nPORT={port}\nLOG_LEVEL=INFO\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_env_file_starts_the_server_unchanged() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join(".env"), seed_env(&jwks.url(), port)).unwrap();
    let server = Server::start_in(dir, &[], &[("PORT", &port.to_string())]);
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });

    let (_, metadata) = server
        .get_blocking("/.well-known/oauth-protected-resource")
        .unwrap();
    assert!(
        metadata.contains("\"resource_documentation\":\"http://localhost:3002/docs\""),
        "{metadata}"
    );

    // The seed's EXPECTED_AUDIENCE lacks the trailing slash its resource has: warned at startup.
    assert!(
        server.stderr().contains("differ only by a trailing slash"),
        "{}",
        server.stderr()
    );

    let url = server.url("/");
    for issuer in [jwks.url(), format!("{}/resources/res_123", jwks.url())] {
        let mut claims = claims_for(&issuer);
        claims["aud"] = json!(["http://localhost:3002", "res_123"]);
        let reply = http_session_call(&url, &mint(&claims), &call_greet("Saif")).await;
        assert_eq!(reply.status, 200, "{issuer}: {}", reply.body);
        assert_eq!(tool_text(&reply.rpc()), "Hi Saif, welcome to Scalekit!");
    }
    assert!(
        !server.stderr().contains("test-secret-value"),
        "the client secret is logged"
    );
}

fn start_against(jwks: &JwksServer, extra: &[&str]) -> Server {
    let issuer = jwks.url();
    let mut args = vec![
        "--sk-env-url",
        issuer.as_str(),
        "--audience",
        AUDIENCE,
        "--stateless",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_down_at_start_means_503_then_recovers_without_restart() {
    let jwks = JwksServer::start("");
    jwks.set(503, "unavailable");
    let server = start_against(&jwks, &[]);
    let token = mint(&claims_for(&jwks.url()));

    let reply = http_post(&server.url("/"), Some(&token), &call_greet("x")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    // /ready names the failure once the first fetch has come back (it may still be in flight).
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, body)| status == 503 && body.contains("HTTP 503"))
    });
    assert_eq!(server.get_blocking("/health").unwrap().0, 200);

    jwks.set(200, &fixture_text("jwks-a.json"));
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    let reply = http_post(&server.url("/"), Some(&token), &call_greet("x")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_after_loading_keeps_the_cached_keys() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = start_against(&jwks, &["--jwks-ttl", "1s"]);
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    jwks.set(500, "down");
    let hits = jwks.hits();
    server.wait_until(|| jwks.hits() > hits);
    jwks.set(200, "{\"keys\": \"malformed\"}");
    let hits = jwks.hits();
    server.wait_until(|| jwks.hits() > hits);
    let reply = http_post(
        &server.url("/"),
        Some(&mint(&claims_for(&jwks.url()))),
        &call_greet("x"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(server.get_blocking("/ready").unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_picked_up_by_one_refetch() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = start_against(&jwks, &["--jwks-cooldown", "0s"]);
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    let old_key_token = mint(&claims_for(&jwks.url()));
    let new_key_token = mint_with(&claims_for(&jwks.url()), "b", Some("key-b"));

    // The old token is accepted (and its verdict cached); key-b is not published yet.
    assert_eq!(
        http_post(&server.url("/"), Some(&old_key_token), &call_greet("x"))
            .await
            .status,
        200
    );
    let reply = http_post(&server.url("/"), Some(&new_key_token), &call_greet("x")).await;
    assert_eq!(reply.status, 401, "key-b is not published yet");

    jwks.set(200, &fixture_text("jwks-b.json"));
    let hits = jwks.hits();
    let reply = http_post(&server.url("/"), Some(&new_key_token), &call_greet("x")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(jwks.hits(), hits + 1, "exactly one refetch");

    // key-a was removed in the rotation: its token is refused now, cached verdict or not.
    let reply = http_post(&server.url("/"), Some(&old_key_token), &call_greet("x")).await;
    assert_eq!(reply.status, 401);
    assert!(challenge_description(reply.header("www-authenticate").unwrap()).contains("key-a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kids_cannot_flood_the_jwks_endpoint() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = start_against(&jwks, &["--jwks-cooldown", "1h"]);
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    let before = jwks.hits();
    for attempt in 0..50 {
        let token = mint_with(
            &claims_for(&jwks.url()),
            "a",
            Some(&format!("random-{attempt}")),
        );
        let reply = http_post(&server.url("/"), Some(&token), &call_greet("x")).await;
        assert_eq!(reply.status, 401);
    }
    assert_eq!(
        jwks.hits(),
        before,
        "unknown kids within the cooldown cause no fetch"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_uri_is_discovered_from_the_issuer_metadata() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = Server::start(&[
        "--issuer",
        &jwks.url(),
        "--audience",
        AUDIENCE,
        "--stateless",
    ]);
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    let reply = http_post(
        &server.url("/"),
        Some(&mint(&claims_for(&jwks.url()))),
        &call_greet("x"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_or_secret_reaches_the_logs_even_at_trace() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let dir = tempfile::tempdir().unwrap();
    let issuer = jwks.url();
    let server = Server::start_in(
        dir,
        &[
            "--sk-env-url",
            &issuer,
            "--audience",
            AUDIENCE,
            "--stateless",
            "--log-format",
            "json",
        ],
        &[
            ("RUST_LOG", "trace"),
            ("SK_CLIENT_SECRET", "client-secret-value"),
        ],
    );
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    let good = mint(&claims_for(&issuer));
    let mut expired = claims_for(&issuer);
    expired["exp"] = json!(now() - 3600);
    let expired = mint(&expired);
    assert_eq!(
        http_post(&server.url("/"), Some(&good), &call_greet("x"))
            .await
            .status,
        200
    );
    assert_eq!(
        http_post(&server.url("/"), Some(&expired), &call_greet("x"))
            .await
            .status,
        401
    );
    assert_eq!(
        http_post(
            &server.url("/"),
            Some("garbage-token-value"),
            &call_greet("x")
        )
        .await
        .status,
        401
    );
    // Every request's line is there before the log is searched for secrets.
    server.stderr_with("\"subject\":\"usr_42\"", 1);
    let logs = server.stderr_with("\"status\":401", 2);
    for secret in [
        good.as_str(),
        expired.as_str(),
        "garbage-token-value",
        "client-secret-value",
    ] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a credential reached the logs");
    }
    assert!(
        !logs.to_ascii_lowercase().contains("bearer ey"),
        "an Authorization header reached the logs"
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let mut server = start_against(&jwks, &[]);
    // An idle keep-alive connection is closed at shutdown; it does not hold the server open
    // until the shutdown timeout.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    std::io::Write::write_all(
        &mut idle,
        b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut idle, &mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stderr().contains("shutting down"));
    assert!(
        !server.stderr().contains("did not finish"),
        "{}",
        server.stderr()
    );
}

#[test]
fn stdio_serves_the_same_tools_with_only_protocol_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = binary(dir.path())
        .args(["serve", "--transport", "stdio"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut read_message = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|err| panic!("not JSON-RPC ({err}): {line:?}"))
    };
    writeln!(stdin, "{}", initialize()).unwrap();
    let init = read_message();
    assert_eq!(init["result"]["serverInfo"]["name"], "scalekit-mcp");
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
    )
    .unwrap();
    writeln!(stdin, "{}", call_greet("Saif")).unwrap();
    assert_eq!(tool_text(&read_message()), "Hi Saif, welcome to Scalekit!");
    let whoami = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    writeln!(stdin, "{whoami}").unwrap();
    assert!(tool_text(&read_message()).starts_with("no HTTP identity"));
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stdout.is_empty(),
        "nothing but protocol messages on stdout"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("stdio"),
        "logs go to stderr"
    );
}

/// `serve` gives itself mimalloc's purge delay of 0, so that the memory of ended sessions goes
/// back to the system (`allocator`), unless the environment sets one: then that one is kept.
/// `--stateless` holds no sessions, and a gateway passes them through: both keep mimalloc's
/// default.
#[cfg(target_os = "linux")]
#[test]
fn serve_returns_freed_memory_promptly_unless_told_otherwise() {
    let environment_of = |server: &Server| {
        let raw = std::fs::read(format!("/proc/{}/environ", server.child.id())).unwrap();
        raw.split(|byte| *byte == 0)
            .map(|pair| String::from_utf8_lossy(pair).into_owned())
            .collect::<Vec<_>>()
    };
    let (server, _jwks) = Server::start_with_keys(&[], &[]);
    let environment = environment_of(&server);
    assert!(
        environment
            .iter()
            .any(|pair| pair == "MIMALLOC_PURGE_DELAY=0"),
        "{environment:?}"
    );
    // Still the server the test started: same pid, and it answers.
    assert_eq!(
        server.get_blocking("/health").map(|(status, _)| status),
        Some(200)
    );
    let ours = env!("CARGO_BIN_EXE_scalekit-mcp");
    let gateway = ["--", ours, "serve", "--transport", "stdio"];
    for passes_sessions_through in [&["--stateless"][..], &gateway] {
        let (server, _jwks) = Server::start_with_keys(passes_sessions_through, &[]);
        let environment = environment_of(&server);
        assert!(
            !environment
                .iter()
                .any(|pair| pair.starts_with("MIMALLOC_PURGE_DELAY")),
            "{passes_sessions_through:?}: {environment:?}"
        );
    }
    let (server, _jwks) = Server::start_with_keys(&[], &[("MIMALLOC_PURGE_DELAY", "25")]);
    let environment = environment_of(&server);
    assert!(
        environment
            .iter()
            .any(|pair| pair == "MIMALLOC_PURGE_DELAY=25"),
        "{environment:?}"
    );
    assert!(
        !environment
            .iter()
            .any(|pair| pair.starts_with("SCALEKIT_MCP_PURGE_DELAY_SET")),
        "{environment:?}"
    );
}

/// `TOKIO_WORKER_THREADS` sets how many threads serve requests (the README suggests 1 for a
/// gateway that shares a small machine with its upstream).
#[cfg(target_os = "linux")]
#[test]
fn the_worker_threads_follow_tokio_worker_threads() {
    let workers_of = |server: &Server| {
        std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "tokio-rt-worker")
            .count()
    };
    for workers in [1, 3] {
        let (server, _jwks) =
            Server::start_with_keys(&[], &[("TOKIO_WORKER_THREADS", &workers.to_string())]);
        assert_eq!(workers_of(&server), workers);
    }
}
