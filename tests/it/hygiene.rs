//! Secret hygiene: the whole client and server loop at `RUST_LOG=trace` — `login` (browser, and
//! client credentials with a client secret), `token` (with a refresh), `serve` (and its
//! development authorization server, which sees every grant), `check-token` and `logout` — and
//! no access token, refresh token, client secret or Authorization header value may appear in any
//! log line, error, output (except `token`'s stdout, which exists to print one) or file outside
//! the credential store.

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::{Value, json};

use crate::login::{browse, login_url, register};
use crate::util::*;

/// Everything a command said, labelled.
struct Said {
    what: String,
    text: String,
}

fn said(what: &str, output: &Output, include_stdout: bool) -> Vec<Said> {
    let mut all = vec![Said {
        what: format!("{what} stderr"),
        text: String::from_utf8_lossy(&output.stderr).into_owned(),
    }];
    if include_stdout {
        all.push(Said {
            what: format!("{what} stdout"),
            text: String::from_utf8_lossy(&output.stdout).into_owned(),
        });
    }
    all
}

fn traced(home: &Path) -> std::process::Command {
    let mut command = binary(home);
    command.env("RUST_LOG", "trace");
    command
}

/// Every string in the credential store: it holds secrets only.
fn stored_secrets(home: &Path, into: &mut Vec<String>) {
    let path = home.join(".scalekit-mcp/credentials.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    fn walk(value: &Value, into: &mut Vec<String>) {
        match value {
            Value::String(text) if text.len() >= 8 => into.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|item| walk(item, into)),
            Value::Object(map) => map.values().for_each(|item| walk(item, into)),
            _ => {}
        }
    }
    walk(&serde_json::from_str(&text).unwrap(), into);
}

/// Every file under `dir` except the credential store, as text.
fn files_outside_the_store(dir: &Path, into: &mut Vec<Said>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_outside_the_store(&path, into);
        } else if path
            .file_name()
            .is_some_and(|name| name != "credentials.json")
        {
            into.push(Said {
                what: path.display().to_string(),
                text: String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_credential_reaches_a_log_line_an_error_or_a_file_at_trace() {
    let server_dir = tempfile::tempdir().unwrap();
    let server_dir_path = server_dir.path().to_owned();
    let server = Server::start_in(
        server_dir,
        &[
            "--dev",
            "--dev-auto-approve",
            "--stateless",
            "--dev-token-ttl",
            "5s",
        ],
        &[("RUST_LOG", "trace")],
    );
    let url = server.url("/");
    let mut secrets: Vec<String> = Vec::new();
    let mut heard: Vec<Said> = Vec::new();

    // A browser login (public client, refresh token).
    let home = tempfile::tempdir().unwrap();
    let mut child = traced(home.path())
        .args(["login", &url, "--no-browser", "--insecure-storage"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (login_page, rest) = login_url(&mut child);
    assert_eq!(browse(&login_page).await.status(), 200);
    let mut output = child.wait_with_output().unwrap();
    output.stderr = rest.join().unwrap().into_bytes();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    heard.extend(said("login", &output, true));
    stored_secrets(home.path(), &mut secrets);
    assert!(
        secrets.len() >= 2,
        "an access and a refresh token are stored"
    );

    // A client-credentials login with a client secret.
    let bot_home = tempfile::tempdir().unwrap();
    let client = register(
        &server,
        json!({
            "client_name": "ci-bot", "token_endpoint_auth_method": "client_secret_post",
            "grant_types": ["client_credentials"], "redirect_uris": [],
        }),
    )
    .await;
    let client_secret = client["client_secret"].as_str().unwrap().to_owned();
    secrets.push(client_secret.clone());
    let output = traced(bot_home.path())
        .args(["login", &url, "--client-credentials", "--insecure-storage"])
        .args(["--client-id", client["client_id"].as_str().unwrap()])
        .env("SK_CLIENT_SECRET", &client_secret)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    heard.extend(said("login --client-credentials", &output, true));
    stored_secrets(bot_home.path(), &mut secrets);

    // `token` within a minute of expiry: refreshes, rotating the refresh token.
    let output = traced(home.path()).arg("token").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    heard.extend(said("token", &output, false));
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    secrets.push(token.clone());
    stored_secrets(home.path(), &mut secrets);
    let output = traced(bot_home.path()).arg("token").output().unwrap();
    heard.extend(said("token (bot)", &output, false));
    let bot_token = String::from_utf8_lossy(&output.stdout).trim().to_owned();

    // serve sees the tokens, valid and tampered.
    for bearer in [&token, &bot_token, &format!("{token}x")] {
        http_post(&url, Some(bearer), &call_greet("x")).await;
    }
    assert_eq!(
        http_post(&url, Some(&token), &call_greet("x")).await.status,
        200
    );

    // check-token, from stdin and from the store.
    let mut child = traced(home.path())
        .arg("check-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("Bearer {token}").as_bytes(),
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    heard.extend(said("check-token", &output, true));
    let output = traced(home.path())
        .args(["check-token", "--server", &url, "--json"])
        .output()
        .unwrap();
    heard.extend(said("check-token --server", &output, true));
    let output = traced(home.path())
        .args(["check-token", "not.a-token.at-all-but-secret-ish"])
        .output()
        .unwrap();
    heard.extend(said("check-token (malformed)", &output, true));

    // status, then logout (which revokes: the refresh token goes to the server once more).
    for args in [&["status"][..], &["status", "--json"], &["logout", &url]] {
        let output = traced(home.path()).args(args).output().unwrap();
        heard.extend(said(&args.join(" "), &output, true));
    }

    files_outside_the_store(home.path(), &mut heard);
    files_outside_the_store(bot_home.path(), &mut heard);
    heard.push(Said {
        what: "serve --dev stderr".into(),
        text: server.stderr(),
    });
    files_outside_the_store(&server_dir_path, &mut heard);
    assert!(
        heard.iter().any(|said| said.text.contains("TRACE")),
        "trace logging was on"
    );

    secrets.push("not.a-token.at-all-but-secret-ish".into());
    secrets.sort();
    secrets.dedup();
    let lines: usize = heard.iter().map(|said| said.text.lines().count()).sum();
    eprintln!(
        "{} secrets checked against {} sources, {lines} lines",
        secrets.len(),
        heard.len()
    );

    for said in &heard {
        for secret in &secrets {
            // The signature of a JWT is its unforgeable part; opaque tokens are matched whole.
            let needle = secret.rsplit('.').next().unwrap_or(secret);
            assert!(
                !said.text.contains(needle),
                "a credential ({} chars) appears in {}",
                secret.len(),
                said.what
            );
        }
        assert!(
            !said.text.to_ascii_lowercase().contains("bearer ey"),
            "an Authorization header value appears in {}",
            said.what
        );
    }
}
