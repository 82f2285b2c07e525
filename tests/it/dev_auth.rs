//! `serve --dev`: the embedded development authorization server, driven over HTTP on loopback the
//! way an MCP client and a browser would: discovery, registration, the code flow with PKCE, the
//! token endpoint's grants and errors, revocation, and the MCP call the token is for.
//!
//! Most tests run the application in-process on a listener bound to 127.0.0.1:0 (its port is
//! then passed as --port, so the issuer URL is right and nothing races for the port); one spawns
//! the binary to cover `serve::run`'s wiring end to end.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Parser;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use scalekit_mcp::auth::jwks::{HttpFetcher, JwksCache};
use scalekit_mcp::cli::{Cli, Command as CliCommand};
use scalekit_mcp::config::ServeConfig;
use scalekit_mcp::server::{self, dev_auth::DevAuth};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;

const LOOPBACK_REDIRECT: &str = "http://127.0.0.1/callback";

/// A running server: its public URL and a client that does not follow redirects (the test plays
/// the browser and reads each `Location`).
struct Running {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn issuer(&self) -> String {
        self.url("/dev-auth")
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn serve_config(args: &[&str]) -> ServeConfig {
    let argv = ["scalekit-mcp", "serve"].iter().chain(args);
    let CliCommand::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not serve");
    };
    ServeConfig::from_args(&args).unwrap()
}

/// Runs `serve --stateless <args>` in-process on a fresh loopback port. With `--dev` the keys come
/// from the development server, otherwise over HTTP as in production.
async fn start(args: &[&str]) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut all = vec!["--port", &port, "--stateless"];
    all.extend_from_slice(args);
    let config = serve_config(&all);
    let dev = DevAuth::start(&config).unwrap();
    let fetcher = match &dev {
        Some(dev) => dev.key_fetcher(),
        None => Box::new(HttpFetcher::new(
            reqwest::Client::new(),
            config.jwks_source().clone(),
        )),
    };
    let keys = Arc::new(JwksCache::new(fetcher, config.cache_settings()));
    let shutdown = CancellationToken::new();
    let app = server::app(
        &config,
        keys.clone(),
        dev.as_ref().map(DevAuth::router),
        shutdown.clone(),
    )
    .unwrap();
    let serving = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { serving.cancelled().await })
            .await
            .unwrap();
    });
    // After the listener is up: a server reading another's JWKS over HTTP needs it serving.
    keys.refresh().await.unwrap();
    Running {
        base: config
            .public_url()
            .as_str()
            .trim_end_matches('/')
            .to_owned(),
        http: http_client(),
        shutdown,
    }
}

async fn start_dev(extra: &[&str]) -> Running {
    let mut args = vec!["--dev", "--dev-auto-approve"];
    args.extend_from_slice(extra);
    start(&args).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A PKCE verifier and its S256 challenge (RFC 7636 §4.1–4.2).
fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier.clone(), URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

fn query_param(location: &str, name: &str) -> Option<String> {
    Url::parse(location)
        .ok()?
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

async fn json_body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn register(server: &Running, metadata: Value) -> (StatusCode, Value) {
    let response = server
        .http
        .post(server.url("/dev-auth/register"))
        .json(&metadata)
        .send()
        .await
        .unwrap();
    json_body(response).await
}

async fn register_public(server: &Running) -> String {
    let (status, client) = register(
        server,
        json!({
            "client_name": "test client",
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    client["client_id"].as_str().unwrap().to_owned()
}

/// GET /dev-auth/authorize with `params`, not following the redirect.
async fn authorize(server: &Running, params: &[(&str, &str)]) -> reqwest::Response {
    let mut url = Url::parse(&server.url("/dev-auth/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    server.http.get(url).send().await.unwrap()
}

/// The usual authorization request of a public client, with overrides appended.
fn code_request<'a>(
    client_id: &'a str,
    challenge: &'a str,
    redirect_uri: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("state", "st-123"),
    ]
}

async fn token(server: &Running, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = server
        .http
        .post(server.url("/dev-auth/token"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    json_body(response).await
}

/// The whole login of a public client: authorize (auto-approved), then redeem the code.
async fn login(server: &Running, client_id: &str, scope: &str) -> Value {
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:49152/callback";
    let mut params = code_request(client_id, &challenge, redirect);
    params.push(("scope", scope));
    let response = authorize(server, &params).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let code = query_param(&location, "code").unwrap();
    let (status, tokens) = token(
        server,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

/// `tools/call greet_user` on a `--stateless` server: the status and the tool's text (or the
/// error body).
async fn greet(
    server: &Running,
    access_token: &str,
    name: &str,
) -> (StatusCode, String, Option<String>) {
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "greet_user", "arguments": { "name": name } },
    });
    let response = server
        .http
        .post(server.url("/"))
        .header(AUTHORIZATION, format!("Bearer {access_token}"))
        .header("Accept", "application/json, text/event-stream")
        .json(&call)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let text = body["result"]["content"][0]["text"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_owned);
    (status, text, challenge)
}

/// The claims of a JWT, undecoded signature aside.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn metadata_names_the_dev_issuer_and_what_it_supports() {
    let server = start_dev(&[]).await;
    let resource: Value = server
        .http
        .get(server.url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resource["authorization_servers"], json!([server.issuer()]));
    assert_eq!(resource["resource"], json!(server.url("/")));
    assert_eq!(resource["scopes_supported"], json!(["mcp:tools"]));

    for path in [
        "/.well-known/oauth-authorization-server/dev-auth",
        "/dev-auth/.well-known/openid-configuration",
    ] {
        let (status, metadata) =
            json_body(server.http.get(server.url(path)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(metadata["issuer"], json!(server.issuer()));
        assert_eq!(
            metadata["token_endpoint"],
            json!(server.url("/dev-auth/token"))
        );
        assert_eq!(
            metadata["registration_endpoint"],
            json!(server.url("/dev-auth/register"))
        );
        assert_eq!(
            metadata["revocation_endpoint"],
            json!(server.url("/dev-auth/revoke"))
        );
        assert_eq!(
            metadata["code_challenge_methods_supported"],
            json!(["S256"])
        );
        assert_eq!(metadata["response_types_supported"], json!(["code"]));
        assert_eq!(
            metadata["authorization_response_iss_parameter_supported"],
            json!(true)
        );
        assert_eq!(
            metadata["token_endpoint_auth_methods_supported"],
            json!(["none", "client_secret_basic", "client_secret_post"])
        );
        assert_eq!(
            metadata["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(
            metadata["scopes_supported"],
            json!(["mcp:tools", "offline_access"])
        );
    }
    let (status, jwks) = json_body(
        server
            .http
            .get(server.url("/dev-auth/keys"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert!(jwks["keys"][0]["kid"].is_string());
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private part in the JWKS"
    );
}

#[tokio::test]
async fn code_flow_with_pkce_gives_a_scalekit_shaped_token_that_calls_tools() {
    let server = start_dev(&[]).await;
    let client_id = register_public(&server).await;
    let (verifier, challenge) = pkce();
    // Registered as http://127.0.0.1/callback; RFC 8252 §7.3: any port at request time.
    let redirect = "http://127.0.0.1:51234/callback";
    let mut params = code_request(&client_id, &challenge, redirect);
    let resource = server.url("/");
    params.push(("resource", &resource));
    let response = authorize(&server, &params).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://127.0.0.1:51234/callback?"),
        "{location}"
    );
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-123"));
    assert_eq!(
        query_param(&location, "iss"),
        Some(server.issuer()),
        "RFC 9207"
    );
    let code = query_param(&location, "code").unwrap();

    let (status, tokens) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "mcp:tools");
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );

    let access_token = tokens["access_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert!(header["kid"].is_string());
    let claims = claims(access_token);
    assert_eq!(claims["iss"], json!(server.issuer()));
    assert_eq!(claims["aud"], json!([resource]));
    assert_eq!(claims["sub"], "dev-user");
    assert_eq!(claims["client_id"], json!(client_id));
    assert_eq!(claims["scope"], "mcp:tools");
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert!(claims["jti"].is_string());

    let (status, text, _) = greet(&server, access_token, "Ada").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, "Hi Ada, welcome to Scalekit!");

    // RFC 6749 §4.1.2: a code works once.
    let (status, error) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_grant");
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
}

#[tokio::test]
async fn consent_page_approves_and_denies() {
    let server = start(&["--dev", "--dev-user", "ada@example.com"]).await;
    let client_id = register_public(&server).await;
    let (_, challenge) = pkce();
    let params = code_request(&client_id, &challenge, LOOPBACK_REDIRECT);

    let consent_id = |html: &str| {
        let start =
            html.find("name=\"consent\" value=\"").unwrap() + "name=\"consent\" value=\"".len();
        html[start..].split('"').next().unwrap().to_owned()
    };
    let decide = |consent: String, decision: &'static str| {
        server
            .http
            .post(server.url("/dev-auth/authorize"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(&[("consent", &consent), ("decision", decision)]))
            .send()
    };

    let page = authorize(&server, &params).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("test client")
            && html.contains("ada@example.com")
            && html.contains("mcp:tools")
    );
    let approve_id = consent_id(&html);
    let approved = decide(approve_id.clone(), "approve").await.unwrap();
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let location = approved.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(query_param(&location, "code").is_some(), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-123"));

    let (status, error) = json_body(decide(approve_id, "approve").await.unwrap()).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a consent is answered once"
    );
    assert_eq!(error["error"], "invalid_request");

    let html = authorize(&server, &params).await.text().await.unwrap();
    let denied = decide(consent_id(&html), "deny").await.unwrap();
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    let location = denied.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(&location, "iss"), Some(server.issuer()));
    assert!(query_param(&location, "code").is_none());
}

#[tokio::test]
async fn dynamic_client_registration_for_public_and_confidential_clients() {
    let server = start_dev(&[]).await;
    let (status, public) = register(
        &server,
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none", "client_name": "cli" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        public["client_id"]
            .as_str()
            .unwrap()
            .starts_with("dev_client_")
    );
    assert_eq!(public["token_endpoint_auth_method"], "none");
    assert_eq!(public["grant_types"], json!(["authorization_code"]));
    assert_eq!(public["client_name"], "cli");
    assert!(public.get("client_secret").is_none());

    // RFC 7591 §2: without token_endpoint_auth_method the client is client_secret_basic.
    let (status, confidential) = register(
        &server,
        json!({ "redirect_uris": ["https://app.example/cb"] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        confidential["token_endpoint_auth_method"],
        "client_secret_basic"
    );
    assert!(confidential["client_secret"].as_str().unwrap().len() >= 32);
    assert_eq!(confidential["client_secret_expires_at"], 0);

    let refused = [
        (
            json!({ "redirect_uris": ["http://app.example/cb"], "token_endpoint_auth_method": "none" }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "redirect_uris": ["http://127.0.0.1/cb#frag"] }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "token_endpoint_auth_method": "none" }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "redirect_uris": [LOOPBACK_REDIRECT], "grant_types": ["implicit"] }),
            "invalid_client_metadata",
        ),
        (
            json!({ "grant_types": ["client_credentials"], "token_endpoint_auth_method": "none" }),
            "invalid_client_metadata",
        ),
    ];
    for (metadata, code) in refused {
        let (status, error) = register(&server, metadata.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{metadata}");
        assert_eq!(error["error"], code, "{metadata}");
        assert!(error["error_description"].is_string());
    }
    let not_json = server
        .http
        .post(server.url("/dev-auth/register"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("redirect_uris=x")
        .send()
        .await
        .unwrap();
    let (status, error) = json_body(not_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_client_metadata");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let server = start_dev(&[]).await;
    let client_id = register_public(&server).await;
    let tokens = login(&server, &client_id, "mcp:tools offline_access").await;
    assert_eq!(tokens["scope"], "mcp:tools offline_access");
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();

    let refresh = |refresh_token: String| {
        let client_id = client_id.clone();
        let server = &server;
        async move {
            token(
                server,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", &client_id),
                    ("refresh_token", &refresh_token),
                ],
            )
            .await
        }
    };
    let (status, rotated) = refresh(first.clone()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "rotated");
    let (status, text, _) = greet(&server, rotated["access_token"].as_str().unwrap(), "Bo").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "Hi Bo, welcome to Scalekit!")
    );

    // The first token again: reuse. Refused, and the family (the second token too) revoked.
    let (status, error) = refresh(first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_grant");
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("reuse")
    );
    let (status, error) = refresh(second).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_grant", "the family is revoked");

    // Another login is its own family and is unaffected; narrowing scope works, widening not.
    let tokens = login(&server, &client_id, "mcp:tools offline_access").await;
    let third = tokens["refresh_token"].as_str().unwrap();
    let (status, narrowed) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", third),
            ("scope", "mcp:tools"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{narrowed}");
    assert_eq!(narrowed["scope"], "mcp:tools");
    let fourth = narrowed["refresh_token"].as_str().unwrap();
    let (status, error) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", fourth),
            ("scope", "admin"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "invalid_scope");
}

#[tokio::test]
async fn client_credentials_for_confidential_clients_only() {
    let server = start_dev(&[]).await;
    let (_, machine) = register(
        &server,
        json!({ "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic" }),
    )
    .await;
    let id = machine["client_id"].as_str().unwrap();
    let secret = machine["client_secret"].as_str().unwrap();
    let basic = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    let response = server
        .http
        .post(server.url("/dev-auth/token"))
        .header(AUTHORIZATION, &basic)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("grant_type", "client_credentials")]))
        .send()
        .await
        .unwrap();
    let (status, tokens) = json_body(response).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens.get("refresh_token").is_none());
    let access_token = tokens["access_token"].as_str().unwrap();
    let claims = claims(access_token);
    assert_eq!(
        claims["sub"],
        json!(id),
        "machine tokens: sub == client_id, as Scalekit"
    );
    assert_eq!(claims["client_id"], json!(id));
    let (status, text, _) = greet(&server, access_token, "Robot").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "Hi Robot, welcome to Scalekit!")
    );

    // client_secret_post works too.
    let (status, _) = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // A wrong secret over Basic: 401 invalid_client with a Basic challenge (RFC 6749 §5.2).
    let wrong = format!("Basic {}", STANDARD.encode(format!("{id}:nope")));
    let response = server
        .http
        .post(server.url("/dev-auth/token"))
        .header(AUTHORIZATION, wrong)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("grant_type", "client_credentials")]))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let (status, error) = json_body(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"], "invalid_client");

    // A public client cannot use client_credentials.
    let public = register_public(&server).await;
    let (status, error) = token(
        &server,
        &[("grant_type", "client_credentials"), ("client_id", &public)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "unauthorized_client");
}

#[tokio::test]
async fn authorization_errors_are_shown_or_redirected_with_their_codes() {
    let server = start_dev(&[]).await;
    let client_id = register_public(&server).await;
    let (_, challenge) = pkce();
    let redirect = "http://127.0.0.1:40000/callback";

    // Unknown client or redirect URI: shown, never redirected (RFC 6749 §4.1.2.1).
    let shown: [(Vec<(&str, &str)>, &str); 3] = [
        (
            code_request("nobody", &challenge, redirect),
            "invalid_client",
        ),
        (
            code_request(&client_id, &challenge, "http://127.0.0.1:40000/elsewhere"),
            "invalid_request",
        ),
        (
            code_request(&client_id, &challenge, "https://evil.example/callback"),
            "invalid_request",
        ),
    ];
    for (params, code) in shown {
        let response = authorize(&server, &params).await;
        assert!(response.headers().get(LOCATION).is_none());
        let (status, error) = json_body(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error["error"], code, "{params:?}");
    }

    // Everything else goes back to the client with error, error_description, state and iss.
    let base = code_request(&client_id, &challenge, redirect);
    let with = |name: &'static str, value: &'static str| {
        let mut params: Vec<(&str, &str)> = base
            .iter()
            .filter(|(key, _)| *key != name)
            .cloned()
            .collect();
        if !value.is_empty() {
            params.push((name, value));
        }
        params
    };
    let cases = [
        (with("response_type", "token"), "unsupported_response_type"),
        (with("response_type", ""), "invalid_request"),
        (with("code_challenge", ""), "invalid_request"),
        (with("code_challenge_method", "plain"), "invalid_request"),
        (with("code_challenge_method", ""), "invalid_request"),
        (with("scope", "admin"), "invalid_scope"),
        (with("resource", "not a uri"), "invalid_target"),
        (
            with("state", "st-123")
                .into_iter()
                .chain([("state", "again")])
                .collect(),
            "invalid_request",
        ),
    ];
    for (params, code) in cases {
        let response = authorize(&server, &params).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{params:?}");
        let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(location.starts_with(redirect), "{location}");
        assert_eq!(
            query_param(&location, "error").as_deref(),
            Some(code),
            "{params:?}"
        );
        assert!(query_param(&location, "error_description").is_some());
        assert_eq!(query_param(&location, "state").as_deref(), Some("st-123"));
        assert_eq!(query_param(&location, "iss"), Some(server.issuer()));
        assert!(query_param(&location, "code").is_none());
    }

    // A client registered for client_credentials only cannot run the code flow.
    let (_, machine) = register(
        &server,
        json!({ "grant_types": ["client_credentials"], "redirect_uris": [LOOPBACK_REDIRECT] }),
    )
    .await;
    let machine_id = machine["client_id"].as_str().unwrap();
    let response = authorize(&server, &code_request(machine_id, &challenge, redirect)).await;
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("unauthorized_client")
    );
}

/// Token request parameters to replace (an empty value removes the parameter).
type Overrides = Vec<(&'static str, String)>;

#[tokio::test]
async fn token_errors_carry_rfc_6749_codes() {
    let server = start_dev(&[]).await;
    let client_id = register_public(&server).await;
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:40001/callback";
    let new_code = || async {
        let response = authorize(&server, &code_request(&client_id, &challenge, redirect)).await;
        query_param(response.headers()[LOCATION].to_str().unwrap(), "code").unwrap()
    };
    let code = new_code().await;
    let redeem = |extra: Overrides| {
        let mut pairs: Vec<(&str, String)> = vec![
            ("grant_type", "authorization_code".into()),
            ("client_id", client_id.clone()),
            ("code", code.clone()),
            ("code_verifier", verifier.clone()),
            ("redirect_uri", redirect.into()),
        ];
        for (name, value) in extra {
            pairs.retain(|(key, _)| *key != name);
            if !value.is_empty() {
                pairs.push((name, value));
            }
        }
        let server = &server;
        async move {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token(server, &pairs).await
        }
    };
    let (_, other) = pkce();
    let other_client = register_public(&server).await;
    let cases: Vec<(Overrides, StatusCode, &str)> = vec![
        (
            vec![("grant_type", "password".into())],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", String::new())],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("code", String::new())],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("code_verifier", String::new())],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("code_verifier", "short".into())],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("code_verifier", format!("{other}x"))],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            vec![("code", "no-such-code".into())],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            vec![("redirect_uri", "http://127.0.0.1:1/callback".into())],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            vec![("redirect_uri", String::new())],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("client_id", other_client)],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            vec![("client_id", "nobody".into())],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("client_id", String::new())],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("client_secret", "x".into())],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ];
    for (extra, status, code) in cases {
        let label = format!("{extra:?}");
        let (got, error) = redeem(extra).await;
        assert_eq!(
            (got, error["error"].as_str()),
            (status, Some(code)),
            "{label}: {error}"
        );
        assert!(
            error["error_description"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        );
    }
    // None of those consumed the code.
    let (status, _) = redeem(vec![]).await;
    assert_eq!(status, StatusCode::OK);

    // Form bodies only (RFC 6749 §3.2).
    let response = server
        .http
        .post(server.url("/dev-auth/token"))
        .json(&json!({ "grant_type": "authorization_code" }))
        .send()
        .await
        .unwrap();
    let (status, error) = json_body(response).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // A client registered without authorization_code cannot redeem codes.
    let (_, machine) = register(&server, json!({ "grant_types": ["client_credentials"] })).await;
    let (status, error) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", machine["client_id"].as_str().unwrap()),
            ("client_secret", machine["client_secret"].as_str().unwrap()),
            ("code", "x"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn revocation_revokes_refresh_families_and_explains_access_tokens() {
    let server = start_dev(&[]).await;
    let client_id = register_public(&server).await;
    let tokens = login(&server, &client_id, "mcp:tools offline_access").await;
    let revoke = |token: String| {
        let client_id = client_id.clone();
        let server = &server;
        async move {
            let response = server
                .http
                .post(server.url("/dev-auth/revoke"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form(&[("token", &token), ("client_id", &client_id)]))
                .send()
                .await
                .unwrap();
            json_body(response).await
        }
    };
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(revoke(refresh_token.clone()).await.0, StatusCode::OK);
    let (status, error) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // RFC 7009 §2.2: an unknown token is not an error.
    assert_eq!(revoke("never-issued".into()).await.0, StatusCode::OK);
    // Access tokens are JWTs checked offline: the server says it cannot revoke them.
    let (status, error) = revoke(tokens["access_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_token_type"))
    );
}

#[tokio::test]
async fn dev_tokens_are_refused_by_a_server_expecting_another_audience() {
    let dev = start_dev(&[]).await;
    let client_id = register_public(&dev).await;
    let tokens = login(&dev, &client_id, "mcp:tools").await;
    let access_token = tokens["access_token"].as_str().unwrap();

    // A second, ordinary server trusting the dev issuer and reading its JWKS over HTTP, as it
    // would Scalekit's: it accepts the token for the right audience, and refuses it otherwise.
    let issuer = dev.issuer();
    let jwks = dev.url("/dev-auth/keys");
    let resource = dev.url("/");
    let same = start(&[
        "--issuer",
        &issuer,
        "--jwks-url",
        &jwks,
        "--audience",
        &resource,
    ])
    .await;
    let (status, text, _) = greet(&same, access_token, "Ada").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "Hi Ada, welcome to Scalekit!")
    );

    let other = start(&[
        "--issuer",
        &issuer,
        "--jwks-url",
        &jwks,
        "--audience",
        "https://other.example/mcp",
    ])
    .await;
    let (status, text, challenge) = greet(&other, access_token, "Ada").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = challenge.unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("audience"), "{challenge}");
    assert!(text.contains("audience"), "{text}");

    // The same with the dev server itself configured for another audience.
    let elsewhere = start_dev(&["--audience", "https://other.example/mcp"]).await;
    let client_id = register_public(&elsewhere).await;
    let tokens = login(&elsewhere, &client_id, "mcp:tools").await;
    let (status, text, _) =
        greet(&elsewhere, tokens["access_token"].as_str().unwrap(), "Ada").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("audience"), "{text}");
}

#[test]
fn dev_refuses_a_public_host() {
    let output = scalekit_command()
        .args(["serve", "--dev", "--host", "0.0.0.0", "--port", "3002"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--dev refuses --host 0.0.0.0"), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
}

/// The binary, with a clean environment: no real settings, no `.env` (cwd is a temp dir).
fn scalekit_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scalekit-mcp"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command.current_dir(std::env::temp_dir());
    command
}

struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads an MCP response (JSON, or the first `data:` event of an SSE stream).
async fn mcp_message(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    if let Ok(value) = serde_json::from_str(&text) {
        return value;
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .find_map(|data| serde_json::from_str(data.trim()).ok())
        .unwrap_or(Value::Null)
}

/// End to end with the binary: `serve --dev --dev-auto-approve` on a free port, discovery from
/// the 401 challenge, registration, the code flow, then a stateful MCP session.
#[tokio::test]
async fn binary_serves_the_whole_loop_offline() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = scalekit_command()
        .args([
            "serve",
            "--dev",
            "--dev-auto-approve",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Spawned(child);
    let http = http_client();
    let base = format!("http://localhost:{port}");
    let mut ready = false;
    // Up to 30 s: a debug binary generates an RSA key at start on a possibly busy machine.
    for _ in 0..300 {
        if http
            .get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server did not become ready");

    let mcp = |session: Option<&str>, token: &str, body: Value| {
        let mut request = http
            .post(format!("{base}/"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header("Accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request.header("Mcp-Session-Id", session);
        }
        request.send()
    };

    // Discovery the way an MCP client does it: 401 → resource metadata → AS metadata.
    let unauthenticated = http
        .post(format!("{base}/"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let challenge = unauthenticated.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    let metadata_url = challenge
        .split("resource_metadata=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let resource: Value = http
        .get(metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = resource["authorization_servers"][0].as_str().unwrap();
    let issuer_url = Url::parse(issuer).unwrap();
    let as_metadata_url = format!(
        "{}/.well-known/oauth-authorization-server{}",
        issuer_url.origin().ascii_serialization(),
        issuer_url.path()
    );
    let as_metadata: Value = http
        .get(as_metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(as_metadata["issuer"], issuer);

    let registration: Value = http
        .post(as_metadata["registration_endpoint"].as_str().unwrap())
        .json(
            &json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none" }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registration["client_id"].as_str().unwrap();
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:53682/callback";
    let mut authorize_url =
        Url::parse(as_metadata["authorization_endpoint"].as_str().unwrap()).unwrap();
    authorize_url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("scope", "mcp:tools"),
        ("resource", resource["resource"].as_str().unwrap()),
        ("state", "s1"),
    ]);
    let redirected = http.get(authorize_url).send().await.unwrap();
    let location = redirected.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(query_param(&location, "iss").as_deref(), Some(issuer));
    let code = query_param(&location, "code").unwrap();
    let tokens: Value = http
        .post(as_metadata["token_endpoint"].as_str().unwrap())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", redirect),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access_token = tokens["access_token"].as_str().unwrap();

    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "test", "version": "1" } },
    });
    let response = mcp(None, access_token, initialize).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        mcp_message(response).await["result"]["serverInfo"]["name"],
        "scalekit-mcp"
    );
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert!(
        mcp(Some(&session), access_token, initialized)
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "greet_user", "arguments": { "name": "Ada" } },
    });
    let response = mcp(Some(&session), access_token, call).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result = mcp_message(response).await;
    assert_eq!(
        result["result"]["content"][0]["text"], "Hi Ada, welcome to Scalekit!",
        "{result}"
    );
}
