//! `proxy` as a desktop client runs it: JSON-RPC lines on its stdin, answers read from its
//! stdout, against `serve --dev` (the test plays the browser for the login and the step-up, as
//! the login tests do), `serve` with fixture keys (restarts), the scripted server (given tokens,
//! refusals) and a server that records the headers it gets (`--header`).
//! Every proxy's stdout must hold protocol messages only, and no output or log file may hold a
//! token.

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

/// The scopes of the stored login, as `status --json` shows them.
fn stored_scopes(home: &Path) -> Vec<String> {
    let output = binary(home)
        .args(["status", "--json"])
        .env("SCALEKIT_MCP_STORAGE", "file")
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    serde_json::from_value(status["servers"][0]["scopes"].clone()).unwrap()
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

/// After its login: the proxy answers the `initialize` it was sent (id 0), then lists the tools.
fn finishes_initialize_and_lists_tools(proxy: &mut Proxy) {
    let answer = proxy.answer(&json!(0));
    assert!(answer.get("result").is_some(), "{answer}");
    proxy.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let tools = proxy.request(1, "tools/list", json!({}));
    assert!(tool_names(&tools).contains(&"greet_user".to_owned()));
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
        restarted.stderr_with("DELETE", 1).contains("DELETE"),
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
        finishes_initialize_and_lists_tools(proxy);
    }
    let mut logins = 0;
    for proxy in proxies {
        let (code, stderr) = proxy.close();
        assert_eq!(code, Some(0), "{stderr}");
        logins += stderr.matches("Open this URL").count();
    }
    assert_eq!(logins, 1, "one browser login for three proxies");
    let approved = "dev-auth: approved an authorization request";
    let approvals = server.stderr_with(approved, 1).matches(approved).count();
    assert_eq!(approvals, 1, "{}", server.stderr());
}

/// Two servers, two proxies started at once, one fixed `--callback-port`: the second login waits
/// for the first to free the port instead of failing on it, and both proxies get their tools.
#[tokio::test(flavor = "multi_thread")]
async fn two_logins_through_one_fixed_callback_port_take_turns() {
    let servers = [dev_server(&[]), dev_server(&[])];
    let home = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut proxies: Vec<Proxy> = servers
        .iter()
        .map(|server| {
            let url = server.url("/");
            let args = [url.as_str(), "--no-browser", "--callback-port", &port];
            Proxy::start(home.path(), &args, &[])
        })
        .collect();
    for proxy in &mut proxies {
        proxy.send(&initialize());
    }
    // The logins run one after the other, in whichever order the proxies took the port.
    let mut finished = [false, false];
    let started = std::time::Instant::now();
    while finished.contains(&false) {
        for (index, proxy) in proxies.iter().enumerate() {
            if !finished[index] && proxy.stderr().contains("Open this URL") {
                finish_login(proxy).await;
                finished[index] = true;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "logins did not both start: {finished:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for proxy in &mut proxies {
        finishes_initialize_and_lists_tools(proxy);
    }
    for proxy in proxies {
        let (code, stderr) = proxy.close();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("in use"), "{stderr}");
    }
}

/// A tool that needs a scope the login lacks: the server answers the call 403
/// `insufficient_scope`. With --no-login the client gets a JSON-RPC error naming the login that
/// gets the scope; otherwise the proxy authorizes again for the union of the scopes (the test
/// plays the browser a second time) and sends the call again, which the client sees succeed.
#[tokio::test(flavor = "multi_thread")]
async fn a_403_insufficient_scope_steps_up_and_the_call_goes_again() {
    let server = dev_server(&[
        "--required-scope",
        "mcp:tools",
        "--tool-scope",
        "greet_*=greet:write",
    ]);
    let home = tempfile::tempdir().unwrap();
    let url = server.url("/");

    // A narrow login, made by the proxy on first use: greet_user is not listed to it.
    let mut proxy = Proxy::start(
        home.path(),
        &[&url, "--no-browser", "--scope", "mcp:tools"],
        &[],
    );
    proxy.send(&initialize());
    finish_login(&proxy).await;
    assert!(proxy.answer(&json!(0)).get("result").is_some());
    proxy.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(
        tool_names(&proxy.request(1, "tools/list", json!({}))),
        ["whoami"]
    );
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");
    let narrow = stored_token(home.path());
    let held = stored_scopes(home.path());
    assert!(
        held.contains(&"mcp:tools".to_owned()) && !held.contains(&"greet:write".to_owned()),
        "{held:?}"
    );

    // --no-login: the refusal becomes the client's error, with the command that fixes it: the
    // scopes the login has, then the one it lacks.
    let mut proxy = Proxy::start(home.path(), &[&url, "--no-login"], &[]);
    proxy.initialize();
    let refused = proxy.request(
        2,
        "tools/call",
        json!({"name": "greet_user", "arguments": {"name": "Ada"}}),
    );
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    let flags: String = held
        .iter()
        .chain(["greet:write".to_owned()].iter())
        .map(|scope| format!(" --scope {scope}"))
        .collect();
    assert!(
        message.contains("--no-login forbids logging in here")
            && message.ends_with(&format!("run scalekit-mcp login {url}{flags}")),
        "{message}"
    );
    assert!(proxy.child.try_wait().unwrap().is_none(), "the proxy stays");
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("Open this URL"), "{stderr}");

    // Allowed to log in: one step-up, to the union, and the call goes again.
    let mut proxy = Proxy::start(home.path(), &[&url, "--no-browser"], &[]);
    proxy.initialize();
    proxy.send(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "greet_user", "arguments": {"name": "Ada"}}}));
    finish_login(&proxy).await;
    let answer = proxy.answer(&json!(3));
    assert_eq!(
        tool_text(&answer),
        "Hi Ada, welcome to Scalekit!",
        "{answer}"
    );
    // The wider token serves the rest of the session: greet_user is listed now.
    let mut names = tool_names(&proxy.request(4, "tools/list", json!({})));
    names.sort();
    assert_eq!(names, ["greet_user", "whoami"]);
    assert_eq!(proxy.greet(5, "Grace"), "Hi Grace, welcome to Scalekit!");
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{url} asks for the scope mcp:tools greet:write; authorizing again with"
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Open this URL").count(),
        1,
        "one step-up:\n{stderr}"
    );
    let approved = "dev-auth: approved an authorization request";
    let approvals = server.stderr_with(approved, 2).matches(approved).count();
    assert_eq!(approvals, 2, "the first login and the step-up");
    let wide = stored_token(home.path());
    assert_ne!(wide, narrow, "the step-up's token is stored");
    let mut wider = held.clone();
    wider.push("greet:write".to_owned());
    assert_eq!(stored_scopes(home.path()), wider, "the union of the scopes");
    let mut secrets = stored_secrets(home.path());
    secrets.extend([narrow, wide]);
    assert_no_secret(&format!("{refused}{stderr}"), &secrets);
}

/// `--log-file`: the proxy's log lines go to the file (appended, no colours) as well as to
/// stderr, at debug level too, and no token is among them, not even while the token is
/// refreshed.
#[tokio::test(flavor = "multi_thread")]
async fn the_log_file_gets_the_log_lines_and_no_token() {
    let server = dev_server(&["--dev-token-ttl", "3s"]);
    let home = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let log = home.path().join("proxy.log");
    std::fs::write(&log, "a line from an earlier run\n").unwrap();
    let mut proxy = Proxy::start(
        home.path(),
        &[&url, "--no-browser", "--log-file", log.to_str().unwrap()],
        &[("RUST_LOG", "debug")],
    );
    proxy.send(&initialize());
    finish_login(&proxy).await;
    proxy.answer(&json!(0));
    proxy.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(proxy.greet(1, "Ada"), "Hi Ada, welcome to Scalekit!");
    let first = stored_token(home.path());
    // Outlive the token: the next call refreshes it first.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(proxy.greet(2, "Ada"), "Hi Ada, welcome to Scalekit!");
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("a line from an earlier run\n"),
        "appended:\n{text}"
    );
    for expected in [
        format!("proxying stdio to {url}"),
        format!("refreshed the access token of {url} before it expired"),
        "ended the MCP session (HTTP 2".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} is not in:\n{text}");
    }
    assert!(!text.contains('\u{1b}'), "no colours in a file:\n{text}");
    // The same lines went to stderr (a desktop client keeps that too).
    for line in text.lines().skip(1) {
        assert!(
            stderr.contains(line),
            "{line:?} is not on stderr:\n{stderr}"
        );
    }
    let refreshed = stored_token(home.path());
    assert_ne!(refreshed, first, "the token was refreshed");
    let mut secrets = stored_secrets(home.path());
    secrets.extend([first, refreshed]);
    assert_no_secret(&text, &secrets);
    assert_no_secret(&stderr, &secrets);
}

/// What [`HeaderRecorder`] saw: each request's method and headers.
type Seen = Arc<Mutex<Vec<(http::Method, http::HeaderMap)>>>;

/// An MCP server (stateful, JSON answers, no GET stream) that records every request's headers.
struct HeaderRecorder {
    addr: std::net::SocketAddr,
    seen: Seen,
}

impl HeaderRecorder {
    fn start() -> Self {
        let seen: Seen = Arc::default();
        let recorded = seen.clone();
        let addr = serve_on_a_thread(move |_| {
            axum::Router::new().route(
                "/mcp",
                axum::routing::any(
                    move |method: http::Method, headers: http::HeaderMap, body: String| {
                        let seen = recorded.clone();
                        async move {
                            seen.lock().unwrap().push((method.clone(), headers));
                            recorded_answer(&method, &body)
                        }
                    },
                ),
            )
        });
        HeaderRecorder { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    fn seen(&self) -> Vec<(http::Method, http::HeaderMap)> {
        self.seen.lock().unwrap().clone()
    }
}

fn recorded_answer(method: &http::Method, body: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    match *method {
        http::Method::POST => {}
        http::Method::DELETE => return http::StatusCode::OK.into_response(),
        _ => return http::StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
    let message: Value = serde_json::from_str(body).unwrap();
    let Some(id) = message.get("id").cloned() else {
        return http::StatusCode::ACCEPTED.into_response();
    };
    let result = match message["method"].as_str().unwrap_or_default() {
        "initialize" => json!({
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "recorder", "version": "1"}
        }),
        "tools/list" => json!({"tools": [{"name": "noop", "inputSchema": {"type": "object"}}]}),
        _ => json!({}),
    };
    let answer = axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    if message["method"] == "initialize" {
        return ([("mcp-session-id", "recorded-session")], answer).into_response();
    }
    answer.into_response()
}

/// `--header 'Name: value'` (repeatable, the same name twice, a value with colons) reaches the
/// server on every request the proxy makes: the POSTs, the GET stream and the closing DELETE,
/// next to the headers the proxy sets itself.
#[test]
fn extra_headers_reach_the_server_on_every_request() {
    let recorder = HeaderRecorder::start();
    let home = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::start(
        home.path(),
        &[
            &recorder.url(),
            "--header",
            "X-Tenant: acme",
            "--header",
            "X-Trace: one",
            "--header",
            "x-trace:two",
            "--header",
            "X-Origin-Url: https://desk.example:8443/a",
        ],
        &[("SCALEKIT_MCP_TOKEN", "header-test-token-0000000")],
    );
    proxy.initialize();
    assert_eq!(
        tool_names(&proxy.request(1, "tools/list", json!({}))),
        ["noop"]
    );
    // The GET stream opens once the session is ready; wait for it before closing.
    let started = std::time::Instant::now();
    while !recorder
        .seen()
        .iter()
        .any(|(method, _)| method == http::Method::GET)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no GET stream was tried; stderr:\n{}",
            proxy.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");

    let seen = recorder.seen();
    let methods: Vec<&http::Method> = seen.iter().map(|(method, _)| method).collect();
    assert_eq!(
        seen.iter()
            .filter(|(method, _)| method == http::Method::POST)
            .count(),
        3,
        "initialize, initialized, tools/list: {methods:?}"
    );
    assert!(
        methods.contains(&&http::Method::DELETE),
        "the session was ended: {methods:?}"
    );
    let values = |headers: &http::HeaderMap, name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    };
    for (method, headers) in &seen {
        assert_eq!(values(headers, "x-tenant"), ["acme"], "{method}");
        assert_eq!(values(headers, "x-trace"), ["one", "two"], "{method}");
        assert_eq!(
            values(headers, "x-origin-url"),
            ["https://desk.example:8443/a"],
            "{method}"
        );
        assert_eq!(
            values(headers, "authorization"),
            ["Bearer header-test-token-0000000"],
            "{method}"
        );
    }
    // The proxy's own headers are still its own: the session id after initialize.
    let with_session = seen
        .iter()
        .filter(|(_, headers)| values(headers, "mcp-session-id") == ["recorded-session"])
        .count();
    assert_eq!(
        with_session,
        seen.len() - 1,
        "all but initialize: {methods:?}"
    );
    assert_no_secret(&stderr, &["header-test-token-0000000".into()]);
}

/// A 403 whose challenge names only the scope that is missing: the command --no-login gives
/// keeps the scopes the stored login has (a login replaces the token, and the new one must still
/// do what the old one did), as `call --no-login` does.
#[tokio::test(flavor = "multi_thread")]
async fn the_no_login_step_up_hint_keeps_the_scopes_already_held() {
    use rmcp::transport::auth::OAuthTokenResponse;
    use scalekit_mcp::client::credentials::ServerCredentials;
    use scalekit_mcp::client::home::{Home, ServerRecord};
    use scalekit_mcp::client::vault::Vault;

    let fake = FakeMcp::start();
    {
        let mut state = fake.state();
        state.required_token = Some("seeded-access-token-000".into());
        state.forbidden_scope = Some("reports:write".into());
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url();
    let home = Home::at(dir.path().join(".scalekit-mcp"));
    let store = ServerCredentials {
        vault: Vault::File(home.path("credentials.json")),
        home: home.clone(),
        template: ServerRecord {
            server_url: url.clone(),
            resource: url.clone(),
            issuer: Some(fake.base()),
            authorization_server: Some(json!({
                "issuer": fake.base(),
                "authorization_endpoint": format!("{}/authorize", fake.base()),
                "token_endpoint": format!("{}/token", fake.base()),
            })),
            grant: "authorization_code".into(),
            storage: "file".into(),
            ..ServerRecord::default()
        },
    };
    let response: OAuthTokenResponse = serde_json::from_value(json!({
        "access_token": "seeded-access-token-000",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "seeded-refresh-token-000",
        "scope": "reports:read",
    }))
    .unwrap();
    store
        .store_token("client-1", &response, &[], now() as u64)
        .await
        .unwrap();

    let mut proxy = Proxy::start(dir.path(), &[&url, "--no-login"], &[]);
    proxy.send(&initialize());
    let answer = proxy.answer(&json!(0));
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "run scalekit-mcp login {url} --scope reports:read --scope reports:write"
        )),
        "{answer}"
    );
    let (code, stderr) = proxy.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        fake.state().token_requests.is_empty(),
        "a 403 is not refreshed"
    );
    assert_no_secret(
        &format!("{answer}{stderr}"),
        &[
            "seeded-access-token-000".into(),
            "seeded-refresh-token-000".into(),
        ],
    );
}
