//! `proxy` as a desktop client runs it: JSON-RPC lines on its stdin, answers read from its
//! stdout, against `serve --dev` (the test plays the browser for the login, as the login tests
//! do), `serve` with fixture keys (restarts), and the scripted server (given tokens, refusals).
//! Every proxy's stdout must hold protocol messages only, and no output may hold a token.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::login::browse;
use crate::util::*;

/// A running proxy: its stdin, its stdout as parsed lines, its stderr collected.
struct Proxy {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Login URLs printed on stderr.
    login_urls: mpsc::Receiver<String>,
}

impl Proxy {
    fn start(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut child = binary(home)
            .arg("proxy")
            .args(args)
            .env("SCALEKIT_MCP_STORAGE", "file")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (url_tx, login_urls) = mpsc::channel();
        let collected = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                // The login URL is alone on its line (other lines may start with the server's).
                let trimmed = line.trim();
                if trimmed.starts_with("http") && !trimmed.contains(' ') {
                    let _ = url_tx.send(trimmed.to_owned());
                }
                let mut all = collected.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let stdin = child.stdin.take();
        Proxy {
            child,
            stdin,
            lines,
            stderr,
            login_urls,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line on stdout, which must be a JSON-RPC message.
    fn next(&self, wait: Duration) -> Value {
        let line = self.lines.recv_timeout(wait).unwrap_or_else(|_| {
            panic!(
                "no message on stdout within {wait:?}; stderr:\n{}",
                self.stderr()
            )
        });
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("stdout holds a non-JSON line ({err}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        message
    }

    /// The answer to request `id`, skipping the notifications before it.
    fn answer(&self, id: &Value) -> Value {
        loop {
            let message = self.next(Duration::from_secs(60));
            if message.get("method").is_none() && message["id"] == *id {
                return message;
            }
        }
    }

    fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.answer(&json!(id))
    }

    /// `initialize` (answered) and `notifications/initialized`.
    fn initialize(&mut self) -> Value {
        self.send(&initialize());
        let answer = self.answer(&json!(0));
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        answer
    }

    fn greet(&mut self, id: i64, name: &str) -> String {
        let answer = self.request(
            id,
            "tools/call",
            json!({"name": "greet_user", "arguments": {"name": name}}),
        );
        tool_text(&answer).to_owned()
    }

    /// Closes stdin and waits for the exit; returns the exit code and stderr.
    fn close(mut self) -> (Option<i32>, String) {
        drop(self.stdin.take());
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the proxy did not exit after stdin closed; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let the reader threads drain.
        std::thread::sleep(Duration::from_millis(100));
        let leftover: Vec<String> = self.lines.try_iter().collect();
        for line in &leftover {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|err| panic!("stdout holds a non-JSON line ({err}): {line}"));
        }
        (status.code(), self.stderr())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool_names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {answer}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The stored access token of `server_url` (file storage), read with `token`.
fn stored_token(home: &Path) -> String {
    let output = binary(home)
        .arg("token")
        .env("SCALEKIT_MCP_STORAGE", "file")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The refresh token in the credentials file, if any.
fn stored_secrets(home: &Path) -> Vec<String> {
    let path = home.join(".scalekit-mcp/credentials.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let document: Value = serde_json::from_str(&text).unwrap();
    let mut secrets = Vec::new();
    collect_strings(&document, &mut secrets);
    secrets.retain(|secret| secret.len() > 16);
    secrets
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(map) => map.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}

fn assert_no_secret(text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret leaked into the output:\n{text}"
        );
    }
}

/// Plays the browser for the login the proxy started, waiting up to 60 s for its URL.
async fn finish_login(proxy: &Proxy) {
    let url = proxy
        .login_urls
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no login URL on stderr:\n{}", proxy.stderr()));
    let page = browse(&url).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Logged in"));
}

fn dev_server(extra: &[&str]) -> Server {
    let mut args = vec!["--dev", "--dev-auto-approve"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_logs_in_on_first_use_then_lists_and_calls_tools() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let mut proxy = Proxy::start(home.path(), &[&url, "--no-browser"], &[]);
    proxy.send(&initialize());
    finish_login(&proxy).await;
    let answer = proxy.answer(&json!(0));
    assert_eq!(
        answer["result"]["serverInfo"]["name"], "scalekit-mcp",
        "{answer}"
    );
    proxy.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let tools = proxy.request(1, "tools/list", json!({}));
    let names = tool_names(&tools);
    assert!(names.contains(&"greet_user".to_owned()), "{names:?}");
    assert_eq!(proxy.greet(2, "Saif"), "Hi Saif, welcome to Scalekit!");
    let whoami = proxy.request(3, "tools/call", json!({"name": "whoami", "arguments": {}}));
    assert!(whoami.to_string().contains("dev-user"), "{whoami}");
    // An unknown method's JSON-RPC error comes back as the server sent it.
    let unknown = proxy.request(4, "no/such/method", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");

    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("asks for a login"), "{stderr}");
    // The session was ended.
    server.wait_until(|| server.stderr().contains("DELETE"));
    // The login is stored for the next proxy (and `call`), and no secret reached the output.
    let token = stored_token(home.path());
    let mut secrets = stored_secrets(home.path());
    secrets.push(token);
    assert_no_secret(&stderr, &secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_tokens_are_refreshed_without_the_client_noticing() {
    let server = dev_server(&["--dev-token-ttl", "3s"]);
    let home = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let mut proxy = Proxy::start(home.path(), &[&url, "--no-browser"], &[]);
    proxy.send(&initialize());
    finish_login(&proxy).await;
    proxy.answer(&json!(0));
    proxy.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let first = stored_token(home.path());
    for round in 1..=3 {
        // Each wait outlives the token.
        std::thread::sleep(Duration::from_millis(3500));
        assert_eq!(
            proxy.greet(round, "Ada"),
            "Hi Ada, welcome to Scalekit!",
            "round {round}"
        );
    }
    assert_ne!(stored_token(home.path()), first, "the token was refreshed");
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("Open this URL").count(),
        1,
        "one login only:\n{stderr}"
    );
    let mut secrets = stored_secrets(home.path());
    secrets.push(first);
    assert_no_secret(&stderr, &secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restart_is_survived_by_initializing_again() {
    let port = free_port().to_string();
    let env = [("PORT", port.as_str())];
    let (server, jwks) = Server::start_with_keys(&[], &env);
    let token = mint(&good_claims());
    let home = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let mut proxy = Proxy::start(
        home.path(),
        &[&url, "--token-env", "DESKTOP_TOKEN"],
        &[("DESKTOP_TOKEN", token.as_str())],
    );
    let answer = proxy.initialize();
    assert!(answer.get("result").is_some(), "{answer}");
    assert_eq!(proxy.greet(1, "before"), "Hi before, welcome to Scalekit!");

    drop(server);
    drop(jwks);
    let (restarted, _jwks) = Server::start_with_keys(&[], &env);
    // The new server knows no session: the proxy initializes again and sends the call again.
    assert_eq!(proxy.greet(2, "after"), "Hi after, welcome to Scalekit!");
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("forgot the MCP session"), "{stderr}");
    assert!(
        restarted.stderr().contains("DELETE"),
        "{}",
        restarted.stderr()
    );
    assert_no_secret(&stderr, &[token]);
}

#[test]
fn no_login_exits_3_before_any_mcp_traffic() {
    let fake = FakeMcp::start();
    let home = tempfile::tempdir().unwrap();
    let url = fake.url();
    let output = binary(home.path())
        .args(["proxy", &url, "--no-login"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains(&format!("run scalekit-mcp login {url}")),
        "{stderr}"
    );
    assert!(
        fake.state().authorizations.is_empty(),
        "no MCP request was sent"
    );
}

#[test]
fn a_token_from_the_environment_is_sent_as_is_and_never_stored() {
    let fake = FakeMcp::start();
    fake.state().required_token = Some("desktop-static-token-123456".into());
    let home = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::start(
        home.path(),
        &[&fake.url(), "--header", "X-Tenant: acme"],
        &[("SCALEKIT_MCP_TOKEN", "desktop-static-token-123456")],
    );
    proxy.initialize();
    let tools = proxy.request(1, "tools/list", json!({}));
    assert_eq!(tool_names(&tools), ["echo", "fail"]);
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert_no_secret(&stderr, &["desktop-static-token-123456".into()]);
    let sent = fake.state().authorizations.clone();
    assert!(sent.len() >= 3, "{sent:?}");
    assert!(
        sent.iter()
            .all(|auth| auth.as_deref() == Some("Bearer desktop-static-token-123456")),
        "{sent:?}"
    );
    assert!(
        !home.path().join(".scalekit-mcp/credentials.json").exists(),
        "a given token is never stored"
    );

    // A given token the server refuses: the client gets a JSON-RPC error saying so, and the
    // proxy stays.
    let other = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::start(
        other.path(),
        &[&fake.url(), "--token-env", "MY_TOKEN"],
        &[("MY_TOKEN", "a-wrong-token-000000000")],
    );
    proxy.send(&initialize());
    let answer = proxy.answer(&json!(0));
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&fake.url()) && message.contains("--token-env"),
        "{answer}"
    );
    assert!(proxy.child.try_wait().unwrap().is_none(), "the proxy stays");
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0));
    assert_no_secret(
        &format!("{answer}{stderr}"),
        &["a-wrong-token-000000000".into()],
    );
}

#[test]
fn an_unset_token_variable_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let output = binary(home.path())
        .args([
            "proxy",
            "http://127.0.0.1:9/",
            "--token-env",
            "NOT_SET_ANYWHERE",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("$NOT_SET_ANYWHERE"));
}

#[test]
fn an_unreachable_server_gets_json_rpc_errors_and_the_proxy_stays() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", free_port());
    let mut proxy = Proxy::start(
        home.path(),
        &[&url],
        &[("SCALEKIT_MCP_TOKEN", "t-000000000000")],
    );
    proxy.send(&initialize());
    let answer = proxy.answer(&json!(0));
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("cannot reach {url}")),
        "{message}"
    );
    assert!(proxy.child.try_wait().unwrap().is_none(), "the proxy stays");
    let (code, _) = proxy.close();
    assert_eq!(code, Some(0));
}

#[test]
fn print_config_names_this_binary_and_the_file() {
    let home = tempfile::tempdir().unwrap();
    let binary_path = std::fs::canonicalize(env!("CARGO_BIN_EXE_scalekit-mcp")).unwrap();
    for (client, key, file) in [
        ("claude", "mcpServers", "claude_desktop_config.json"),
        ("cursor", "mcpServers", ".cursor"),
        ("vscode", "servers", ".vscode"),
    ] {
        let output = binary(home.path())
            .args([
                "proxy",
                "--print-config",
                client,
                "https://mcp.example.com/mcp",
                "--scope",
                "mcp:tools",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{client}");
        let config: Value = serde_json::from_slice(&output.stdout).unwrap();
        let entry = &config[key]["mcp-example-com"];
        let command = entry["command"].as_str().unwrap();
        assert!(Path::new(command).is_absolute(), "{config}");
        assert_eq!(std::fs::canonicalize(command).unwrap(), binary_path);
        assert_eq!(
            entry["args"],
            json!([
                "proxy",
                "https://mcp.example.com/mcp",
                "--scope",
                "mcp:tools"
            ])
        );
        if client == "vscode" {
            assert_eq!(entry["type"], "stdio");
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(file), "{client}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_proxies_at_once_share_one_login() {
    let server = dev_server(&["--stateless"]);
    let home = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let mut proxies: Vec<Proxy> = (0..3)
        .map(|_| Proxy::start(home.path(), &[&url, "--no-browser"], &[]))
        .collect();
    for proxy in &mut proxies {
        proxy.send(&initialize());
    }
    // Exactly one of them prints a login URL.
    let started = std::time::Instant::now();
    let url_of = loop {
        if let Some(found) = proxies
            .iter()
            .position(|proxy| proxy.stderr().contains("Open this URL"))
        {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no login started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    finish_login(&proxies[url_of]).await;
    for proxy in &mut proxies {
        let answer = proxy.answer(&json!(0));
        assert!(answer.get("result").is_some(), "{answer}");
        proxy.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        let tools = proxy.request(1, "tools/list", json!({}));
        assert!(tool_names(&tools).contains(&"greet_user".to_owned()));
    }
    let mut logins = 0;
    for proxy in proxies {
        let (code, stderr) = proxy.close();
        assert_eq!(code, Some(0), "{stderr}");
        logins += stderr.matches("Open this URL").count();
    }
    assert_eq!(logins, 1, "one browser login for three proxies");
    let approvals = server
        .stderr()
        .matches("dev-auth: approved an authorization request")
        .count();
    assert_eq!(approvals, 1, "{}", server.stderr());
}
