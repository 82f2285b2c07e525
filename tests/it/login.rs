//! `login`, `logout`, `status` and `token` against `serve --dev --dev-auto-approve`, with the test
//! playing the browser: it reads the login URL the command prints, follows the authorization
//! server's redirect to the command's loopback listener, and checks what was stored.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};

use serde_json::{Value, json};

use crate::util::*;

fn dev_server(extra: &[&str]) -> Server {
    let mut args = vec!["--dev", "--dev-auto-approve", "--stateless"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Starts `login <server> --no-browser --insecure-storage extra…` in `home`.
fn start_login(server: &Server, home: &Path, extra: &[&str]) -> Child {
    binary(home)
        .args([
            "login",
            &server.url("/"),
            "--no-browser",
            "--insecure-storage",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the login URL from the command's stderr; the rest of stderr is collected by a thread
/// and returned when the handle is joined.
pub(crate) fn login_url(child: &mut Child) -> (String, std::thread::JoinHandle<String>) {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.trim().strip_prefix("http") {
            let rest = std::thread::spawn(move || {
                lines.map_while(Result::ok).collect::<Vec<_>>().join("\n")
            });
            return (format!("http{url}"), rest);
        }
        seen.push(line);
    }
    panic!("no login URL on stderr: {seen:?}");
}

/// Plays the browser: GETs the authorization URL, and follows its redirect to the listener.
pub(crate) async fn browse(url: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(url).send().await.unwrap();
    assert_eq!(
        response.status(),
        302,
        "authorize: {:?}",
        response.text().await
    );
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    client.get(location).send().await.unwrap()
}

/// A whole browser login; returns the command's output.
async fn login(server: &Server, home: &Path, extra: &[&str]) -> Output {
    let mut child = start_login(server, home, extra);
    let (url, rest) = login_url(&mut child);
    let page = browse(&url).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Logged in"));
    let mut output = child.wait_with_output().unwrap();
    output.stderr = rest.join().unwrap().into_bytes();
    output
}

fn run(home: &Path, args: &[&str]) -> Output {
    binary(home).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn status_json(home: &Path) -> Value {
    serde_json::from_slice(&run(home, &["status", "--json"]).stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_login_with_dynamic_registration_stores_a_working_token() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let output = login(&server, home.path(), &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains(&format!("Logged in to {} as dev-user", server.url("/"))),
        "{printed}"
    );
    assert!(printed.contains("mcp:tools"), "{printed}");

    let token = stdout(&run(home.path(), &["token"])).trim().to_owned();
    let reply = http_post(&server.url("/"), Some(&token), &call_greet("Saif")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(tool_text(&reply.rpc()), "Hi Saif, welcome to Scalekit!");

    let status = status_json(home.path());
    let entry = &status["servers"][0];
    assert_eq!(entry["server"], server.url("/"));
    assert_eq!(entry["subject"], "dev-user");
    assert_eq!(entry["default"], true);
    assert_eq!(
        entry["refreshable"], true,
        "offline_access was requested: {status}"
    );
    assert_eq!(entry["storage"], "file");

    // Secrets only in the 0600 credentials file; state.json and the output carry none.
    let state = std::fs::read_to_string(home.path().join(".scalekit-mcp/state.json")).unwrap();
    assert!(!state.contains(&token));
    assert!(!printed.contains(&token) && !stderr(&output).contains(&token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let credentials = home.path().join(".scalekit-mcp/credentials.json");
        let mode = std::fs::metadata(credentials).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registration_is_remembered_and_reused() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    assert!(login(&server, home.path(), &[]).await.status.success());
    let state = || -> Value {
        serde_json::from_slice(
            &std::fs::read(home.path().join(".scalekit-mcp/state.json")).unwrap(),
        )
        .unwrap()
    };
    let first = state()["registrations"].clone();
    assert_eq!(first.as_object().unwrap().len(), 1, "{first}");
    assert!(login(&server, home.path(), &[]).await.status.success());
    assert_eq!(
        state()["registrations"],
        first,
        "the second login reused the registration"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_registration_is_replaced_once() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    assert!(login(&server, home.path(), &[]).await.status.success());
    let path = home.path().join(".scalekit-mcp/state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let issuer = state["registrations"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    state["registrations"][&issuer]["client_id"] = json!("forgotten-client");
    std::fs::write(&path, state.to_string()).unwrap();

    let output = login(&server, home.path(), &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_ne!(
        state["registrations"][&issuer]["client_id"],
        "forgotten-client"
    );
}

/// Registers a client with the development authorization server (RFC 7591).
pub(crate) async fn register(server: &Server, metadata: Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.url("/dev-auth/register"))
        .json(&metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pre_registered_client_logs_in_with_its_id() {
    let server = dev_server(&[]);
    let client = register(&server, json!({
        "client_name": "ci", "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
    }))
    .await;
    let client_id = client["client_id"].as_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut child = start_login(
        &server,
        home.path(),
        &["--client-id", client_id, "--callback-port", &port],
    );
    let (url, rest) = login_url(&mut child);
    let redirect = format!("redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Fcallback");
    assert!(
        url.contains(&redirect),
        "the pinned callback port is used: {url}"
    );
    assert!(url.contains(&format!("client_id={client_id}")), "{url}");
    assert_eq!(browse(&url).await.status(), 200);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", rest.join().unwrap());
    assert_eq!(
        status_json(home.path())["servers"][0]["client_id"],
        client_id
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_log_in_without_a_browser() {
    let server = dev_server(&[]);
    let client = register(
        &server,
        json!({
            "client_name": "ci-bot", "token_endpoint_auth_method": "client_secret_post",
            "grant_types": ["client_credentials"], "redirect_uris": [],
        }),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    let output = binary(home.path())
        .args([
            "login",
            &server.url("/"),
            "--client-credentials",
            "--insecure-storage",
        ])
        .args(["--client-id", client["client_id"].as_str().unwrap()])
        .env("SK_CLIENT_SECRET", secret)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stdout(&output).contains(secret) && !stderr(&output).contains(secret));
    let token = stdout(&run(home.path(), &["token"])).trim().to_owned();
    let reply = http_post(&server.url("/"), Some(&token), &call_greet("bot")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let state = std::fs::read_to_string(home.path().join(".scalekit-mcp/state.json")).unwrap();
    assert!(
        !state.contains(secret),
        "the client secret is not in the state file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_token_is_refreshed_and_concurrent_refreshes_both_work() {
    let server = dev_server(&["--dev-token-ttl", "8s"]);
    let home = tempfile::tempdir().unwrap();
    assert!(login(&server, home.path(), &[]).await.status.success());
    let logged_in = std::time::Instant::now();
    let first = stdout(&run(home.path(), &["token"])).trim().to_owned();
    let again = stdout(&run(home.path(), &["token"])).trim().to_owned();
    assert_eq!(again, first, "a fresh token is not refreshed");

    // In the last quarter of its lifetime (for an 8 s token, its last 2 s), `token` refreshes;
    // two at once must both succeed (the second re-reads the rotated refresh token under the
    // lock instead of reusing the old one, which the server would treat as theft and revoke).
    let stale = std::time::Duration::from_secs(6);
    tokio::time::sleep(stale.saturating_sub(logged_in.elapsed())).await;
    let spawn = || {
        binary(home.path())
            .arg("token")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    for token in [stdout(&a), stdout(&b)] {
        let token = token.trim();
        assert_ne!(token, first, "a new token after refresh");
        let reply = http_post(&server.url("/"), Some(token), &call_greet("x")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

/// Runs a login whose redirect has `param` replaced by `value`; returns the exit code and stderr.
async fn login_with_tampered_redirect(param: &str, value: &str) -> (Option<i32>, String) {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let mut child = start_login(&server, home.path(), &[]);
    let (url, rest) = login_url(&mut child);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(&url).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let mut tampered = url::Url::parse(&location).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let replaced = if k == param {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), replaced)
        })
        .collect();
    assert!(
        pairs.iter().any(|(k, _)| k == param),
        "the redirect has no {param}: {location}"
    );
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    client.get(tampered).send().await.unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.code(), rest.join().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_state_is_refused() {
    let (code, message) = login_with_tampered_redirect("state", "forged").await;
    assert_eq!(code, Some(3), "{message}");
    assert!(message.contains("state does not match"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_from_another_issuer_is_refused() {
    // RFC 9207: the `iss` of the authorization response must be the server we started with.
    let (code, message) = login_with_tampered_redirect("iss", "https://evil.example").await;
    assert_eq!(code, Some(3), "{message}");
    assert!(message.to_lowercase().contains("issuer"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_redirect_is_shown_as_sent() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let mut child = start_login(&server, home.path(), &[]);
    let (url, rest) = login_url(&mut child);
    let redirect_uri = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    reqwest::get(format!(
        "{redirect_uri}?error=access_denied&error_description=the+user+said+no"
    ))
    .await
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let message = rest.join().unwrap();
    assert_eq!(output.status.code(), Some(3), "{message}");
    assert!(
        message.contains("access_denied: the user said no"),
        "{message}"
    );
}

#[test]
fn waiting_for_the_browser_times_out() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let output = run(
        home.path(),
        &[
            "login",
            &server.url("/"),
            "--no-browser",
            "--insecure-storage",
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("timed out after 1s"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn without_a_keyring_login_explains_the_choices() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let output = run(home.path(), &["login", &server.url("/"), "--no-browser"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("no OS keyring is reachable"), "{message}");
    assert!(
        message.contains("--insecure-storage") && message.contains("SCALEKIT_MCP_STORAGE=file"),
        "{message}"
    );
    assert!(
        !home.path().join(".scalekit-mcp/credentials.json").exists(),
        "no silent plaintext fallback"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_revokes_and_forgets() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    assert!(login(&server, home.path(), &[]).await.status.success());
    let token = stdout(&run(home.path(), &["token"])).trim().to_owned();
    let output = run(home.path(), &["logout"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("revoked"), "{}", stdout(&output));
    assert_eq!(status_json(home.path())["servers"], json!([]));
    let credentials =
        std::fs::read_to_string(home.path().join(".scalekit-mcp/credentials.json")).unwrap();
    assert!(!credentials.contains(&token));
    let output = run(home.path(), &["token"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("scalekit-mcp login"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn with_token_stores_a_token_from_stdin() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let issuer = jwks.url();
    let server = Server::start(&[
        "--sk-env-url",
        &issuer,
        "--audience",
        AUDIENCE,
        "--stateless",
    ]);
    let home = tempfile::tempdir().unwrap();
    let mut claims = good_claims();
    claims["iss"] = json!(issuer);
    let token = mint(&claims);
    let mut child = binary(home.path())
        .args([
            "login",
            &server.url("/"),
            "--with-token",
            "--insecure-storage",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "Bearer {token}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("as usr_42"), "{}", stdout(&output));
    assert_eq!(
        stdout(&run(home.path(), &["token", &server.url("/")])).trim(),
        token
    );
}

#[test]
fn status_without_logins_says_how_to_log_in() {
    let home = tempfile::tempdir().unwrap();
    let output = run(home.path(), &["status"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("scalekit-mcp login <SERVER_URL>"));
    let output = run(home.path(), &["token"]);
    assert_eq!(output.status.code(), Some(3));
}

#[test]
fn status_fails_when_a_login_is_dead() {
    let home = tempfile::tempdir().unwrap();
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 60);
    let mut child = binary(home.path())
        .args([
            "login",
            "http://127.0.0.1:9/",
            "--with-token",
            "--insecure-storage",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{}", mint(&claims)).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let output = run(home.path(), &["status"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "an expired token without refresh is dead"
    );
    assert!(
        stdout(&output).contains("log in again: scalekit-mcp login http://127.0.0.1:9/"),
        "{}",
        stdout(&output)
    );
    assert_eq!(status_json(home.path())["servers"][0]["expired"], true);
    let output = run(home.path(), &["token"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("scalekit-mcp login http://127.0.0.1:9/"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_token_reads_the_stored_token_of_a_server() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    assert!(login(&server, home.path(), &[]).await.status.success());
    let token = stdout(&run(home.path(), &["token"])).trim().to_owned();
    let issuer = format!(
        "{}dev-auth",
        server.url("/").replace("127.0.0.1", "localhost")
    );
    let output = run(
        home.path(),
        &[
            "check-token",
            "--server",
            &server.url("/"),
            "--json",
            "--issuer",
            &issuer,
            "--audience",
            &server.url("/").replace("127.0.0.1", "localhost"),
        ],
    );
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["claims"]["sub"], "dev-user");
    assert!(
        !stdout(&output).contains(&token),
        "check-token never prints the token"
    );

    let output = run(
        home.path(),
        &["check-token", "--server", "http://127.0.0.1:9/"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("scalekit-mcp login http://127.0.0.1:9/"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verbose_login_prints_the_discovery_trace() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let mut child = binary(home.path())
        .args([
            "login",
            &server.url("/"),
            "--no-browser",
            "--insecure-storage",
            "-v",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut trace = Vec::new();
    let mut url = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.trim().starts_with("http") {
            url = Some(line.trim().to_owned());
            break;
        }
        trace.push(line);
    }
    let trace = trace.join("\n");
    assert!(
        trace.contains(&format!(
            "discovery: POST {} (no token) → 401",
            server.url("/")
        )),
        "{trace}"
    );
    assert!(
        trace.contains("/.well-known/oauth-protected-resource → protected resource metadata"),
        "{trace}"
    );
    assert!(
        trace.contains(
            "/.well-known/oauth-authorization-server/dev-auth → authorization server metadata"
        ),
        "{trace}"
    );
    browse(&url.expect("a login URL")).await;
    assert!(child.wait().unwrap().success());
}

#[test]
fn discovery_failures_name_the_urls_tried() {
    let jwks = JwksServer::start("{}");
    let home = tempfile::tempdir().unwrap();
    // Answers 404 everywhere but /keys: no challenge, no metadata.
    let output = run(
        home.path(),
        &[
            "login",
            &format!("{}/mcp", jwks.url()),
            "--insecure-storage",
        ],
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("could not find the protected resource metadata"),
        "{message}"
    );
    assert!(
        message.contains("/.well-known/oauth-protected-resource/mcp: HTTP 404"),
        "{message}"
    );
    assert!(
        message.contains("/.well-known/oauth-protected-resource: HTTP 404"),
        "{message}"
    );
}

/// OpenID Connect Core §11: OpenID Providers (oidc-provider, found by tests/interop) drop
/// `offline_access` — and so the refresh token — unless the request says `prompt=consent`.
#[tokio::test(flavor = "multi_thread")]
async fn offline_access_is_requested_with_prompt_consent() {
    let server = dev_server(&[]);
    let home = tempfile::tempdir().unwrap();
    let mut child = start_login(&server, home.path(), &[]);
    let (url, rest) = login_url(&mut child);
    let query: std::collections::HashMap<String, String> = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert!(
        query["scope"].split(' ').any(|s| s == "offline_access"),
        "{url}"
    );
    assert_eq!(query.get("prompt").map(String::as_str), Some("consent"));
    assert_eq!(browse(&url).await.status(), 200);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", rest.join().unwrap());
    assert_eq!(status_json(home.path())["servers"][0]["refreshable"], true);
}
