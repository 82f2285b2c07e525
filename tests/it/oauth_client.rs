//! The client's OAuth against servers shaped like the MCP conformance suite's (issue 23): a
//! server that accepts `initialize` without a token and asks for one later, step-up on 403
//! `insufficient_scope` with `call`/`tools --login` (and its retry limit), the 2025-03-26
//! fallbacks for servers without protected resource metadata, and `private_key_jwt` client
//! credentials. One scripted server plays both the MCP server and its authorization server;
//! the test plays the browser for every login URL the command prints.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::util::*;

/// What the scripted server does, and what it saw.
#[derive(Default)]
struct Script {
    /// `initialize` needs no token (the step-up scenario's server).
    open_initialize: bool,
    /// Publishes protected resource metadata (else: a 2025-03-26 server).
    prm: bool,
    /// The 401 challenge names the metadata URL even when it is not published (a broken server).
    names_missing_metadata: bool,
    /// Publishes authorization server metadata at the origin: `Some("")` for an issuer at the
    /// origin, `Some("/oauth")` for endpoints under that prefix (2025-03-26 back-compat).
    metadata_prefix: Option<&'static str>,
    /// Scopes each MCP method needs; methods not listed need a token with any scopes.
    required: HashMap<&'static str, Vec<&'static str>>,
    /// tools/call is refused with 403 whatever the token has.
    never_enough: bool,
    /// The public key client assertions are checked with (x, y of a P-256 key).
    assertion_key: Option<(String, String)>,
    /// `expires_in` of issued tokens.
    lifetime: u64,
    /// Issued tokens and their scopes.
    tokens: HashMap<String, Vec<String>>,
    codes: HashMap<String, String>,
    /// The `scope` of every authorization request (None when absent).
    authorizations: Vec<Option<String>>,
    /// Every token request's form.
    token_requests: Vec<HashMap<String, String>>,
    /// Every verified client assertion: (header, claims).
    assertions: Vec<(Value, Value)>,
    registrations: usize,
    /// `method → status` of every MCP request.
    mcp: Vec<(String, u16)>,
    /// Every revocation request's form.
    revocations: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
struct Fake {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl Fake {
    fn start(script: Script) -> Self {
        let lifetime = if script.lifetime == 0 {
            3600
        } else {
            script.lifetime
        };
        let script = Arc::new(Mutex::new(Script { lifetime, ..script }));
        let served = script.clone();
        let addr = serve_on_a_thread(move |addr| {
            Router::new()
                .route("/mcp", axum::routing::post(mcp))
                .route(
                    "/.well-known/oauth-protected-resource/mcp",
                    axum::routing::get(prm),
                )
                .route(
                    "/.well-known/oauth-authorization-server",
                    axum::routing::get(as_metadata),
                )
                .route("/authorize", axum::routing::get(authorize))
                .route("/oauth/authorize", axum::routing::get(authorize))
                .route("/token", axum::routing::post(token))
                .route("/oauth/token", axum::routing::post(token))
                .route("/register", axum::routing::post(register))
                .route("/revoke", axum::routing::post(revoke))
                .route("/oauth/register", axum::routing::post(register))
                .with_state(Fake {
                    addr,
                    script: served,
                })
        });
        Fake { addr, script }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self) -> String {
        format!("{}/mcp", self.base())
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }
}

async fn prm(State(fake): State<Fake>) -> Response {
    if !fake.script().prm {
        return http::StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(json!({
        "resource": fake.url(),
        "authorization_servers": [fake.base()],
        "scopes_supported": ["read"],
    }))
    .into_response()
}

async fn as_metadata(State(fake): State<Fake>) -> Response {
    let Some(prefix) = fake.script().metadata_prefix else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let at = |path: &str| format!("{}{prefix}{path}", fake.base());
    axum::Json(json!({
        "issuer": at(""),
        "authorization_endpoint": at("/authorize"),
        "token_endpoint": at("/token"),
        "registration_endpoint": at("/register"),
        "revocation_endpoint": at("/revoke"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
    }))
    .into_response()
}

async fn authorize(
    State(fake): State<Fake>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut script = fake.script();
    script.authorizations.push(query.get("scope").cloned());
    let code = format!("code-{}", script.authorizations.len());
    script.codes.insert(
        code.clone(),
        query.get("scope").cloned().unwrap_or_default(),
    );
    let mut redirect = url::Url::parse(&query["redirect_uri"]).unwrap();
    redirect
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &query["state"]);
    (
        http::StatusCode::FOUND,
        [("location", redirect.to_string())],
    )
        .into_response()
}

async fn register(State(fake): State<Fake>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or_default();
    fake.script().registrations += 1;
    (
        http::StatusCode::CREATED,
        axum::Json(json!({
            "client_id": "dynamic-client",
            "redirect_uris": request["redirect_uris"],
            "token_endpoint_auth_method": "none",
        })),
    )
        .into_response()
}

async fn revoke(State(fake): State<Fake>, body: String) -> Response {
    let form = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    fake.script().revocations.push(form);
    http::StatusCode::OK.into_response()
}

async fn token(State(fake): State<Fake>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut script = fake.script();
    script.token_requests.push(form.clone());
    let scope = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => script.codes[&form["code"]].clone(),
        Some("client_credentials") => {
            let Some((x, y)) = script.assertion_key.clone() else {
                return (http::StatusCode::BAD_REQUEST, "no key").into_response();
            };
            let key = jsonwebtoken::DecodingKey::from_ec_components(&x, &y).unwrap();
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
            validation.set_audience(&[fake.base()]);
            validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
            let assertion = form.get("client_assertion").cloned().unwrap_or_default();
            let Ok(verified) = jsonwebtoken::decode::<Value>(&assertion, &key, &validation) else {
                return (
                    http::StatusCode::UNAUTHORIZED,
                    axum::Json(
                        json!({"error": "invalid_client", "error_description": "bad assertion"}),
                    ),
                )
                    .into_response();
            };
            let header: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(assertion.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            script.assertions.push((header, verified.claims));
            form.get("scope").cloned().unwrap_or_default()
        }
        _ => return (http::StatusCode::BAD_REQUEST, "grant").into_response(),
    };
    let token = format!("issued-token-{}", script.token_requests.len());
    script.tokens.insert(
        token.clone(),
        scope.split_whitespace().map(str::to_owned).collect(),
    );
    axum::Json(json!({
        "access_token": token, "token_type": "Bearer", "expires_in": script.lifetime,
        "scope": scope,
    }))
    .into_response()
}

async fn mcp(State(fake): State<Fake>, headers: http::HeaderMap, body: String) -> Response {
    let message: Value = serde_json::from_str(&body).unwrap();
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    let response = mcp_answer(&fake, &headers, &message, &method);
    fake.script().mcp.push((method, response.status().as_u16()));
    response
}

fn mcp_answer(fake: &Fake, headers: &http::HeaderMap, message: &Value, method: &str) -> Response {
    let script = fake.script();
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", fake.base());
    let open =
        method.starts_with("notifications/") || (method == "initialize" && script.open_initialize);
    if !open {
        let token = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let Some(granted) = token.and_then(|token| script.tokens.get(token)) else {
            let challenge = if script.prm || script.names_missing_metadata {
                format!("Bearer resource_metadata=\"{metadata}\", scope=\"read\"")
            } else {
                "Bearer".to_owned()
            };
            return (
                http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", challenge)],
            )
                .into_response();
        };
        let needed = script.required.get(method).cloned().unwrap_or_default();
        let lacking = needed
            .iter()
            .any(|scope| !granted.iter().any(|g| g == scope));
        if lacking || (method == "tools/call" && script.never_enough) {
            let challenge = format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{metadata}\", \
                 error_description=\"needs {}\"",
                needed.join(" "),
                needed.join(" ")
            );
            return (
                http::StatusCode::FORBIDDEN,
                [("www-authenticate", challenge)],
            )
                .into_response();
        }
    }
    let Some(id) = message.get("id").cloned() else {
        return http::StatusCode::ACCEPTED.into_response();
    };
    let result = match method {
        "initialize" => json!({
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "scripted", "version": "1"}
        }),
        "tools/list" => json!({"tools": [{"name": "publish", "inputSchema": {"type": "object"}}]}),
        "tools/call" => json!({"content": [{"type": "text", "text": "published"}]}),
        _ => json!({}),
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// A client home; commands run with file storage and without a terminal.
fn client(home: &Path, args: &[&str]) -> std::process::Command {
    let mut command = binary(home);
    command
        .args(args)
        .env("SCALEKIT_MCP_STORAGE", "file")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs a command, playing the browser for each login URL it prints; returns its output with
/// all of stderr.
async fn run_with_browser(mut command: std::process::Command) -> Output {
    let mut child: Child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (urls, lines) = std::sync::mpsc::channel::<Option<String>>();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("response_type=code") {
                urls.send(Some(line.trim().to_owned())).unwrap();
            }
            all.push(line);
        }
        let _ = urls.send(None);
        all.join("\n")
    });
    // Blocking receives are fine here: the tests run on a multi-thread runtime.
    while let Ok(Some(url)) = lines.recv() {
        let page = crate::login::browse(&url).await;
        assert_eq!(page.status(), 200, "the listener took the code");
    }
    let mut output = child.wait_with_output().unwrap();
    output.stderr = reader.join().unwrap().into_bytes();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn stored_scopes(home: &Path) -> Value {
    let output = client(home, &["status", "--json"]).output().unwrap();
    serde_json::from_slice::<Value>(&output.stdout).unwrap()["servers"][0]["scopes"].clone()
}

/// The step-up scenario's server: `initialize` without a token, `tools/list` with `read`,
/// `tools/call` with `read write`.
fn step_up_server() -> Fake {
    Fake::start(Script {
        open_initialize: true,
        prm: true,
        metadata_prefix: Some(""),
        required: HashMap::from([
            ("tools/list", vec!["read"]),
            ("tools/call", vec!["read", "write"]),
        ]),
        ..Script::default()
    })
}

/// `initialize` answered without a token proves nothing: `login` finds the metadata anyway;
/// only a server without a token demand *and* without metadata has nothing to log in to.
#[tokio::test(flavor = "multi_thread")]
async fn login_finds_the_metadata_when_initialize_needs_no_token() {
    let fake = step_up_server();
    let home = tempfile::tempdir().unwrap();
    let output =
        run_with_browser(client(home.path(), &["login", &fake.url(), "--no-browser"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fake.script().authorizations, [Some("read".to_owned())]);
    assert_eq!(stored_scopes(home.path()), json!(["read"]));

    let open = FakeMcp::start();
    let output = client(home.path(), &["login", &open.url(), "--no-browser"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "answered without asking for a token and publishes no protected resource metadata"
        ) && stderr.contains("/.well-known/oauth-protected-resource/mcp: HTTP 404"),
        "{stderr}"
    );
}

/// Without a login, `tools` (no terminal: --no-login) names a `login` command that works; with
/// --login it runs that login itself, from the refusal's challenge, and lists the tools.
#[tokio::test(flavor = "multi_thread")]
async fn tools_logs_in_when_asked_and_otherwise_names_a_login_that_works() {
    let fake = step_up_server();
    let home = tempfile::tempdir().unwrap();
    let url = fake.url();
    let output = client(home.path(), &["tools", "--server", &url])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains(&format!(
            "requires authentication: run scalekit-mcp login {url}"
        )),
        "{}",
        text(&output.stderr)
    );
    assert!(
        fake.script().authorizations.is_empty(),
        "no login without --login"
    );

    let output = run_with_browser(client(
        home.path(),
        &["tools", "--server", &url, "--login", "--no-browser"],
    ))
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("publish"),
        "{}",
        text(&output.stdout)
    );
    assert!(text(&output.stderr).contains("asks for a login"));
    assert_eq!(fake.script().authorizations, [Some("read".to_owned())]);
    // Stored like a login: the next command needs no browser.
    let output = client(home.path(), &["tools", "--server", &url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fake.script().authorizations.len(), 1);
}

/// A stored login the server no longer accepts, with no refresh token: --no-login names the
/// login command; --login logs in again the way the login was made, keeping its scopes.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_stored_login_that_cannot_refresh_logs_in_again_with_login() {
    let fake = step_up_server();
    let home = tempfile::tempdir().unwrap();
    let url = fake.url();
    let output = run_with_browser(client(home.path(), &["login", &url, "--no-browser"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    fake.script().tokens.clear();

    let output = client(home.path(), &["tools", "--server", &url])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains(&format!(
            "there is no refresh token: run scalekit-mcp login {url}"
        )),
        "{}",
        text(&output.stderr)
    );

    let output = run_with_browser(client(
        home.path(),
        &["tools", "--server", &url, "--login", "--no-browser"],
    ))
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("refused the stored login; logging in again"));
    let script = fake.script();
    assert_eq!(script.authorizations.last(), Some(&Some("read".to_owned())));
    assert_eq!(script.registrations, 1, "the registration is reused");
}

/// A 403 insufficient_scope: --no-login names the login command with the scopes held plus the
/// ones asked for; --login re-authorizes with exactly that union and retries the call once.
#[tokio::test(flavor = "multi_thread")]
async fn a_403_steps_up_to_the_union_of_scopes_and_retries() {
    let fake = step_up_server();
    let home = tempfile::tempdir().unwrap();
    let url = fake.url();
    let output = run_with_browser(client(home.path(), &["login", &url, "--no-browser"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    let output = client(
        home.path(),
        &["call", "publish", "--server", &url, "--no-login"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains(&format!(
            "run scalekit-mcp login {url} --scope read --scope write (or pass --login)"
        )),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(fake.script().authorizations.len(), 1);

    let output = publish_with_login(home.path(), &url).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "published\n");
    assert_eq!(
        fake.script().authorizations,
        [Some("read".to_owned()), Some("read write".to_owned())],
        "one step-up, to the union, and no registration check against the authorize endpoint"
    );
    assert_eq!(stored_scopes(home.path()), json!(["read", "write"]));
    let calls: Vec<(String, u16)> = fake
        .script()
        .mcp
        .iter()
        .filter(|(method, _)| method == "tools/call")
        .cloned()
        .collect();
    assert_eq!(
        calls,
        [
            ("tools/call".to_owned(), 403),
            ("tools/call".to_owned(), 403),
            ("tools/call".to_owned(), 200)
        ]
    );
    assert_eq!(fake.script().registrations, 1, "the registration is reused");
}

/// A server that keeps answering 403 gets one step-up per command, never a loop.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_keeps_asking_gets_one_step_up() {
    let fake = step_up_server();
    fake.script().never_enough = true;
    let home = tempfile::tempdir().unwrap();
    let url = fake.url();
    let output = run_with_browser(client(home.path(), &["login", &url, "--no-browser"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = publish_with_login(home.path(), &url).await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains(
            "still refuses the token for lack of the scope read write after authorizing again"
        ),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(fake.script().authorizations.len(), 2, "login + one step-up");
}

/// 2025-03-26 servers publish no protected resource metadata: the authorization server's
/// metadata at the server's origin (whatever issuer it names), else the default endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn servers_without_resource_metadata_use_the_2025_03_26_fallbacks() {
    for prefix in [Some("/oauth"), None] {
        let fake = Fake::start(Script {
            metadata_prefix: prefix,
            ..Script::default()
        });
        let home = tempfile::tempdir().unwrap();
        let output = run_with_browser(client(
            home.path(),
            &["login", &fake.url(), "--no-browser", "--verbose"],
        ))
        .await;
        let stderr = text(&output.stderr);
        assert!(output.status.success(), "{prefix:?}: {stderr}");
        assert!(
            stderr.contains("trying the 2025-03-26 discovery")
                && stderr.contains(
                    "publishes no protected resource metadata (RFC 9728); logging in the 2025-03-26 way"
                ),
            "{stderr}"
        );
        let issuer = format!("{}{}", fake.base(), prefix.unwrap_or(""));
        assert!(
            stderr.contains(&format!("authorization server (2025-03-26): {issuer}")),
            "{stderr}"
        );
        if prefix.is_none() {
            assert!(stderr.contains("using the default endpoints"), "{stderr}");
        }
        {
            let script = fake.script();
            assert_eq!(script.registrations, 1);
            assert_eq!(script.authorizations.len(), 1);
            assert_eq!(script.token_requests[0]["grant_type"], "authorization_code");
            assert!(script.token_requests[0].contains_key("code_verifier"));
        }
        let output = client(home.path(), &["call", "publish", "--server", &fake.url()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

/// Metadata the server names but does not serve is an error naming it, not a 2025-03-26 guess.
#[test]
fn named_but_missing_metadata_is_reported_not_guessed_around() {
    let fake = Fake::start(Script {
        names_missing_metadata: true,
        metadata_prefix: Some(""),
        ..Script::default()
    });
    let home = tempfile::tempdir().unwrap();
    let output = client(home.path(), &["login", &fake.url(), "--no-browser"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("could not find the protected resource metadata; tried")
            && stderr.contains("/.well-known/oauth-protected-resource/mcp: HTTP 404"),
        "{stderr}"
    );
    assert!(fake.script().authorizations.is_empty());
}

fn p256_key(dir: &Path) -> (std::path::PathBuf, (String, String)) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let der = pair.to_pkcs8v1().unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let path = dir.join("client-key.pem");
    std::fs::write(
        &path,
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let point = pair.public_key().as_ref();
    let (x, y) = point[1..].split_at(32);
    (path, (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)))
}

/// Client credentials with private_key_jwt: a signed assertion instead of a secret (no
/// client_secret, no client_id in the form), verified by the server with the public key; the
/// key file is re-read to renew the token, and a step-up asks for more scopes the same way.
#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_with_a_private_key_jwt() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = p256_key(keys.path());
    let fake = Fake::start(Script {
        prm: true,
        metadata_prefix: Some(""),
        assertion_key: Some(public),
        required: HashMap::from([("tools/call", vec!["read", "write"])]),
        // A one-second token is inside its refresh margin (at least 1 s) from the start: every
        // use renews. (The fake's tokens are opaque: it never refuses an expired one.)
        lifetime: 1,
        ..Script::default()
    });
    let home = tempfile::tempdir().unwrap();
    let url = fake.url();
    let key_arg = key.to_str().unwrap();
    let log_in = || {
        let args = [
            "login",
            &url,
            "--client-credentials",
            "--client-id",
            "ci-bot",
            "--client-assertion-key",
            key_arg,
        ];
        client(home.path(), &args).output().unwrap()
    };
    let output = log_in();
    assert!(output.status.success(), "{}", text(&output.stderr));
    {
        let script = fake.script();
        let form = &script.token_requests[0];
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(form["resource"], url);
        assert_eq!(form["scope"], "read");
        assert!(!form.contains_key("client_secret") && !form.contains_key("client_id"));
        let (header, claims) = &script.assertions[0];
        assert_eq!(header["alg"], "ES256");
        assert_eq!(
            (&claims["iss"], &claims["sub"]),
            (&json!("ci-bot"), &json!("ci-bot"))
        );
        assert_eq!(claims["aud"], fake.base());
    }
    let state = std::fs::read_to_string(home.path().join(".scalekit-mcp/state.json")).unwrap();
    assert!(state.contains("client-key.pem") && !state.contains("PRIVATE KEY"));

    // `call --login`: the token is renewed with a new assertion, then stepped up to read write.
    let output = client(
        home.path(),
        &["call", "publish", "--server", &url, "--login"],
    )
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    {
        let script = fake.script();
        assert_eq!(script.assertions.len(), 3, "login, renewal, step-up");
        assert_ne!(script.assertions[0].1["jti"], script.assertions[1].1["jti"]);
        assert_eq!(script.token_requests[2]["scope"], "read write");
    }

    // logout authenticates its revocation with an assertion too.
    let output = client(home.path(), &["logout", &url]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("revoked"),
        "{}",
        text(&output.stdout)
    );
    {
        let script = fake.script();
        let form = &script.revocations[0];
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert!(!form.contains_key("client_id") && !form.contains_key("client_secret"));
        let (x, y) = script.assertion_key.clone().unwrap();
        let key = jsonwebtoken::DecodingKey::from_ec_components(&x, &y).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&[fake.base()]);
        jsonwebtoken::decode::<Value>(&form["client_assertion"], &key, &validation).unwrap();
    }

    // A key file that went away is named, with the fix.
    let output = log_in();
    assert!(output.status.success(), "{}", text(&output.stderr));
    std::fs::remove_file(&key).unwrap();
    let output = client(home.path(), &["token"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains("cannot read it"),
        "{}",
        text(&output.stderr)
    );
}

/// A key file that is not a private key is a usage error before any request.
#[test]
fn a_bad_assertion_key_is_refused_before_any_request() {
    let fake = Fake::start(Script {
        prm: true,
        metadata_prefix: Some(""),
        ..Script::default()
    });
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let output = client(
        home.path(),
        &[
            "login",
            &fake.url(),
            "--client-credentials",
            "--client-id",
            "ci-bot",
            "--client-assertion-key",
            key.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr
            .contains("this is a public key or certificate; the client signs with its private key"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    assert!(fake.script().token_requests.is_empty());
}

/// `call publish --login --no-browser` against `url`, with the test's browser answering.
async fn publish_with_login(home: &std::path::Path, url: &str) -> std::process::Output {
    let args = [
        "call",
        "publish",
        "--server",
        url,
        "--login",
        "--no-browser",
    ];
    run_with_browser(client(home, &args)).await
}
