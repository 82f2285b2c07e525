//! `serve --metrics-addr`: the Prometheus metrics after a known sequence of requests, served on a
//! listener of their own, with label values the server chose (never a client's).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::util::*;

/// A running server with metrics, and the port they are served on.
struct Measured {
    server: Server,
    metrics_port: u16,
    _jwks: JwksServer,
}

fn start(extra: &[&str]) -> Measured {
    start_with_env(extra, &[])
}

fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Measured {
    let metrics_port = free_port();
    let address = format!("127.0.0.1:{metrics_port}");
    let mut args = vec!["--metrics-addr", &address];
    args.extend_from_slice(extra);
    let (server, jwks) = Server::start_with_keys(&args, env);
    Measured {
        server,
        metrics_port,
        _jwks: jwks,
    }
}

impl Measured {
    async fn scrape(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        response.text().await.unwrap()
    }
}

/// The value of the series `name` whose labels are exactly `labels`, if it is there.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    text.lines().find_map(|line| {
        let (series, number) = line.rsplit_once(' ')?;
        let (series_name, label_text) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let found: BTreeMap<&str, &str> = label_text
            .split(',')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (key, quoted) = pair.split_once('=')?;
                Some((key, quoted.trim_matches('"')))
            })
            .collect();
        (found == wanted).then(|| number.parse().unwrap())
    })
}

fn tool_call(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": name, "arguments": {}}})
}

fn operations(text: &str, method: &str, tool: &str, outcome: &str) -> Option<f64> {
    value(
        text,
        "mcp_server_operation_duration_seconds_count",
        &[
            ("mcp_method_name", method),
            ("gen_ai_tool_name", tool),
            ("outcome", outcome),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_known_sequence_of_requests() {
    let measured = start(&[
        "--tool-scope",
        "greet_user=admin",
        "--tool-rate-limit",
        "whoami=1/h",
    ]);
    let url = measured.server.url("/");
    // Refused for their tokens: one of each reason.
    let mut expired = good_claims();
    expired["exp"] = json!(now() - 600);
    let mut elsewhere = good_claims();
    elsewhere["aud"] = json!("https://other.example/");
    let refused = [
        (None, "missing"),
        (Some("not-a-jwt".to_owned()), "malformed"),
        (Some(mint(&expired)), "expired"),
        (Some(mint(&elsewhere)), "audience"),
        (
            Some(mint_with(&good_claims(), "b", Some("key-b"))),
            "unknown_kid",
        ),
    ];
    for (token, _) in &refused {
        let reply = http_post(&url, token.as_deref(), &call_greet("x")).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    let token = mint(&good_claims());
    // Three sessions: greet_user denied (no admin scope), whoami ok then over its limit, and a
    // tool the server does not have.
    let denied = http_session_call(&url, &token, &call_greet("Ada")).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let ok = http_session_call(&url, &token, &tool_call("whoami")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let limited = http_session_call(&url, &token, &tool_call("whoami")).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let unknown = http_session_call(&url, &token, &tool_call("no-such-tool-7f3a")).await;
    assert!(unknown.body.contains("error"), "{}", unknown.body);
    // A path the server does not serve.
    let stray = reqwest::Client::new()
        .get(measured.server.url("/probe-9c2e"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 404);

    let text = measured.scrape().await;
    for (_, reason) in &refused {
        assert_eq!(
            value(
                &text,
                "scalekit_mcp_auth_refusals_total",
                &[("reason", reason)]
            ),
            Some(1.0),
            "{reason}:\n{text}"
        );
    }
    let http = |status: &str| {
        value(
            &text,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "POST"),
                ("http_route", "/"),
                ("http_response_status_code", status),
            ],
        )
    };
    assert_eq!(http("401"), Some(5.0), "{text}");
    assert_eq!(http("403"), Some(1.0), "{text}");
    assert_eq!(http("429"), Some(1.0), "{text}");
    // 4 initialize + 1 whoami + 1 unknown tool answered 200; 4 notifications/initialized 202.
    assert_eq!(http("200"), Some(6.0), "{text}");
    assert_eq!(http("202"), Some(4.0), "{text}");
    assert_eq!(
        operations(&text, "tools/call", "greet_user", "denied"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        operations(&text, "tools/call", "whoami", "ok"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        operations(&text, "tools/call", "whoami", "rate_limited"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        operations(&text, "tools/call", "other", "error"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        operations(&text, "initialize", "", "ok"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        operations(&text, "notifications/initialized", "", "ok"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "scalekit_mcp_rate_limited_total",
            &[("limit", "tool")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "scalekit_mcp_sessions_active", &[]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "scalekit_mcp_jwks_keys", &[]),
        Some(1.0),
        "{text}"
    );
    let fetched = value(
        &text,
        "scalekit_mcp_jwks_fetches_total",
        &[("outcome", "ok")],
    );
    assert!(fetched.is_some_and(|count| count >= 1.0), "{text}");
    assert!(
        value(&text, "scalekit_mcp_jwks_age_seconds", &[]).is_some(),
        "{text}"
    );
    assert!(
        value(&text, "process_resident_memory_bytes", &[]).is_some_and(|bytes| bytes > 1e6),
        "{text}"
    );
    assert!(
        value(&text, "process_open_fds", &[]).is_some_and(|fds| fds >= 3.0),
        "{text}"
    );
    // What clients sent never becomes a label: the stray path and the unknown tool are `other`.
    assert_eq!(
        value(
            &text,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "GET"),
                ("http_route", "other"),
                ("http_response_status_code", "404"),
            ],
        ),
        Some(1.0),
        "{text}"
    );
    for sent in ["probe-9c2e", "no-such-tool-7f3a", "not-a-jwt", "usr_42"] {
        assert!(!text.contains(sent), "{sent} in the metrics:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_not_on_the_mcp_port_and_count_stateless_calls() {
    // With the audit line the guard reads each body and records the operations; without it the
    // direct path records what it answers itself. Both count each operation once.
    for level in ["info", "info,audit=off"] {
        let measured = start_with_env(&["--stateless"], &[("RUST_LOG", level)]);
        let token = mint(&good_claims());
        let url = measured.server.url("/");
        let reply = http_post(&url, Some(&token), &call_greet("Ada")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        // Answered by the direct path (a tool the server lacks, a listing) and by rmcp
        // (initialize).
        let unknown = http_post(&url, Some(&token), &tool_call("no-such-tool-7f3a")).await;
        assert!(unknown.body.contains("error"), "{}", unknown.body);
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        assert_eq!(http_post(&url, Some(&token), &list).await.status, 200);
        let initialized = http_post(&url, Some(&token), &initialize()).await;
        assert_eq!(initialized.status, 200, "{}", initialized.body);
        // The MCP port has no /metrics: like any path that is not public, it needs a token.
        let (status, _) = measured.server.get_blocking("/metrics").unwrap();
        assert_eq!(status, 401);

        let text = measured.scrape().await;
        let count = |method, tool, outcome| operations(&text, method, tool, outcome);
        assert_eq!(
            count("tools/call", "greet_user", "ok"),
            Some(1.0),
            "{level}: {text}"
        );
        assert_eq!(
            count("tools/call", "other", "error"),
            Some(1.0),
            "{level}: {text}"
        );
        assert_eq!(count("tools/list", "", "ok"), Some(1.0), "{level}: {text}");
        assert_eq!(count("initialize", "", "ok"), Some(1.0), "{level}: {text}");
        assert!(
            !text.contains("scalekit_mcp_sessions_active"),
            "no sessions in stateless mode:\n{text}"
        );
    }
}

/// `serve` (the built-in tools) lets idle sessions sleep: still open, and counted as asleep.
#[tokio::test(flavor = "multi_thread")]
async fn sleeping_sessions_are_counted_among_the_open_ones() {
    let measured = start(&["--session-sleep-after", "200ms"]);
    let url = measured.server.url("/");
    let token = mint(&good_claims());
    let reply = http_session_call(&url, &token, &call_greet("Ada")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let text = measured.scrape().await;
    assert_eq!(
        value(&text, "scalekit_mcp_sessions_asleep", &[]),
        Some(0.0),
        "{text}"
    );

    let started = std::time::Instant::now();
    let text = loop {
        let text = measured.scrape().await;
        if value(&text, "scalekit_mcp_sessions_asleep", &[]) == Some(1.0) {
            break text;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the idle session never slept:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        value(&text, "scalekit_mcp_sessions_active", &[]),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn a_metrics_address_on_the_mcp_port_or_without_a_port_is_refused() {
    let port = free_port().to_string();
    let same = format!("127.0.0.1:{port}");
    let output = binary(tempfile::tempdir().unwrap().path())
        .args(["serve", "--sk-env-url", ISSUER, "--port", &port])
        .args(["--metrics-addr", &same])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics-addr {same} is the MCP port")),
        "{stderr}"
    );

    let output = binary(tempfile::tempdir().unwrap().path())
        .args([
            "serve",
            "--sk-env-url",
            ISSUER,
            "--metrics-addr",
            "metrics.internal",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--metrics-addr \"metrics.internal\" is not HOST:PORT"),
        "{stderr}"
    );
}

/// Through a gateway, the upstream's tools become labels once a `tools/list` named them (in
/// either mode); a name it never listed stays `other`.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateways_upstream_tools_are_labels_once_listed() {
    let ours = env!("CARGO_BIN_EXE_scalekit-mcp");
    for stateless in [true, false] {
        let mut args = if stateless {
            vec!["--stateless"]
        } else {
            vec![]
        };
        args.extend(["--", ours, "serve", "--transport", "stdio"]);
        let measured = start(&args);
        let token = mint(&good_claims());
        let url = measured.server.url("/");
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        let made_up = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "made_up_tool", "arguments": {}}});
        for message in [list, call_greet("Ada"), made_up] {
            let reply = match stateless {
                true => http_post(&url, Some(&token), &message).await,
                false => http_session_call(&url, &token, &message).await,
            };
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        let text = measured.scrape().await;
        let line = |tool: &str, outcome: &str| {
            format!(
                "mcp_server_operation_duration_seconds_count{{mcp_method_name=\"tools/call\",gen_ai_tool_name=\"{tool}\",outcome=\"{outcome}\"}} 1"
            )
        };
        assert!(
            text.contains(&line("greet_user", "ok")),
            "stateless={stateless}:\n{text}"
        );
        assert!(
            text.contains(&line("other", "error")),
            "stateless={stateless}:\n{text}"
        );
        assert!(!text.contains("made_up_tool"), "{text}");
    }
}
