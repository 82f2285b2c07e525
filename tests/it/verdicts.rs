//! One token corpus through both `serve` and `check-token`: they must give the same verdict and
//! the same reason for every token, because they share one implementation of the rules.
//!
//! `serve` runs in-process (the real router, a fixed key set, `tower::ServiceExt::oneshot`), and
//! its reason is the `error_description` of the `WWW-Authenticate` challenge. `check-token` is the
//! binary with `--json`; its reason is the first failing check's detail. serve is configured with
//! flags and check-token with the same values as environment variables, so the resolution of
//! issuers and audiences from SK_ENV_URL and PROTECTED_RESOURCE_METADATA is compared too.

use std::sync::Arc;

use assert_cmd::cargo::cargo_bin_cmd;
use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use http::{Request, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use scalekit_mcp::auth::jwks::JwksCache;
use scalekit_mcp::auth::keys::KeySet;
use scalekit_mcp::auth::time;
use scalekit_mcp::cli::{Cli, Command};
use scalekit_mcp::config::ServeConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const SK_ENV_URL: &str = "https://acme.scalekit.dev/";
const METADATA: &str = r#"{"resource":"https://mcp.example.com/","authorization_servers":["https://acme.scalekit.dev/resources/res_1"]}"#;
const ALGORITHMS: &str = "RS256,ES256";
const SCOPE: &str = "mcp:tools";

/// The verdict of one command on one token: `None` when accepted, else the reason.
type Verdict = Option<String>;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(fixture(&format!("{key}.pem"))).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(&pem),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Valid claims for `now`, with `overrides` on top (null removes a claim).
fn claims(now: i64, overrides: Value) -> Value {
    let mut claims = json!({
        "iss": "https://acme.scalekit.dev",
        "sub": "usr_42",
        "aud": ["res_1", "https://mcp.example.com/"],
        "exp": now + 3_600,
        "iat": now - 60,
        "scope": "mcp:tools mcp:read",
    });
    let object = claims.as_object_mut().unwrap();
    for (name, value) in overrides.as_object().unwrap() {
        match value {
            Value::Null => object.remove(name),
            value => object.insert(name.clone(), value.clone()),
        };
    }
    claims
}

/// The corpus: a name and a token. Times are far from unit boundaries, so the relative times in
/// the reasons ("3h ago") read the same in both commands even a few seconds apart.
fn corpus(now: i64) -> Vec<(&'static str, String)> {
    let rs = |overrides: Value| {
        sign(
            Algorithm::RS256,
            "rsa-a",
            Some("key-a"),
            &claims(now, overrides),
        )
    };
    let raw = |header: Value, overrides: Value, signature: &str| {
        format!(
            "{}.{}.{signature}",
            segment(&header),
            segment(&claims(now, overrides))
        )
    };
    let valid = rs(json!({}));
    vec![
        ("valid, issuer {env}", valid.clone()),
        (
            "valid, issuer {env}/resources/{res}",
            rs(json!({"iss": "https://acme.scalekit.dev/resources/res_1"})),
        ),
        (
            "valid ES256",
            sign(
                Algorithm::ES256,
                "ec-p256",
                Some("key-ec"),
                &claims(now, json!({})),
            ),
        ),
        (
            "audience string",
            rs(json!({"aud": "https://mcp.example.com/"})),
        ),
        (
            "scopes array",
            rs(json!({"scope": null, "scopes": [SCOPE]})),
        ),
        ("expired", rs(json!({"exp": now - 3 * 3_600 - 1_200}))),
        ("not yet valid", rs(json!({"nbf": now + 2 * 3_600 + 1_200}))),
        (
            "issued in the future",
            rs(json!({"iat": now + 2 * 3_600 + 1_200})),
        ),
        ("no exp", rs(json!({"exp": null}))),
        ("exp not a number", rs(json!({"exp": "tomorrow"}))),
        ("wrong issuer", rs(json!({"iss": "https://evil.example"}))),
        ("no issuer", rs(json!({"iss": null}))),
        ("wrong audience", rs(json!({"aud": ["res_2"]}))),
        ("audience without the resource", rs(json!({"aud": "res_1"}))),
        ("missing scope (scope)", rs(json!({"scope": "mcp:read"}))),
        (
            "missing scope (scp)",
            rs(json!({"scope": null, "scp": ["mcp:read"]})),
        ),
        (
            "missing scope (scopes)",
            rs(json!({"scope": null, "scopes": ["mcp:read"]})),
        ),
        (
            "expired and wrong issuer",
            rs(json!({"exp": now - 7_200 - 1_200, "iss": "https://evil.example"})),
        ),
        (
            "bad signature",
            sign(
                Algorithm::RS256,
                "rsa-b",
                Some("key-a"),
                &claims(now, json!({})),
            ),
        ),
        (
            "wrong kid",
            sign(
                Algorithm::RS256,
                "rsa-a",
                Some("key-gone"),
                &claims(now, json!({})),
            ),
        ),
        (
            "no kid, several keys",
            sign(Algorithm::RS256, "rsa-a", None, &claims(now, json!({}))),
        ),
        (
            "RS256 kid on an EC key",
            sign(
                Algorithm::RS256,
                "rsa-a",
                Some("key-ec"),
                &claims(now, json!({})),
            ),
        ),
        (
            "HS256",
            sign(
                Algorithm::HS256,
                "rsa-a",
                Some("key-a"),
                &claims(now, json!({})),
            ),
        ),
        (
            "RS512 not allowed",
            sign(
                Algorithm::RS512,
                "rsa-a",
                Some("key-a"),
                &claims(now, json!({})),
            ),
        ),
        ("alg none", raw(json!({"alg": "none"}), json!({}), "")),
        (
            "crit header",
            raw(
                json!({"alg": "RS256", "kid": "key-a", "crit": ["exp"]}),
                json!({}),
                "c2ln",
            ),
        ),
        (
            "empty signature",
            raw(json!({"alg": "RS256", "kid": "key-a"}), json!({}), ""),
        ),
        ("garbage", "hello.world.!!".into()),
        (
            "JWE",
            format!(
                "{}.a2V5.aXY.Y2lwaGVy.dGFn",
                segment(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"}))
            ),
        ),
        ("two segments", valid.rsplit_once('.').unwrap().0.to_owned()),
        ("one segment", "abc".into()),
        (
            "payload not JSON",
            format!(
                "{}.{}.c2ln",
                segment(&json!({"alg": "RS256"})),
                URL_SAFE_NO_PAD.encode("hi")
            ),
        ),
    ]
}

/// serve's router with the corpus configuration and the fixture keys, no network.
fn serve_router() -> axum::Router {
    let cli = Cli::try_parse_from([
        "scalekit-mcp",
        "serve",
        "--sk-env-url",
        SK_ENV_URL,
        "--protected-resource-metadata",
        METADATA,
        "--required-scope",
        SCOPE,
        "--algorithms",
        ALGORITHMS,
    ])
    .unwrap();
    let Command::Serve(args) = cli.command else {
        panic!("parsed as another command");
    };
    let config = ServeConfig::from_args(&args).unwrap();
    let keys = KeySet::from_jwks_json(&std::fs::read(fixture("jwks-all.json")).unwrap()).unwrap();
    scalekit_mcp::server::router(
        &config,
        Arc::new(JwksCache::fixed(keys)),
        CancellationToken::new(),
    )
    .unwrap()
}

/// serve's verdict: accepted (any success status), or the challenge's `error_description`.
async fn serve_verdict(router: &axum::Router, token: &str) -> Verdict {
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "corpus", "version": "0"}},
    });
    let request = Request::post("/")
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(initialize.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    if response.status().is_success() {
        return None;
    }
    assert!(
        matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ),
        "unexpected status {}",
        response.status()
    );
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    let (_, rest) = challenge.split_once("error_description=\"").unwrap();
    Some(rest.split('"').next().unwrap().to_owned())
}

/// check-token's verdict, from `--json`: accepted, or the first failing check's detail.
fn check_token_verdict(token: &str, now: i64) -> (Verdict, i32) {
    let home = tempfile::tempdir().unwrap();
    let output = cargo_bin_cmd!("scalekit-mcp")
        .env_clear()
        .env("HOME", home.path())
        .env("SK_ENV_URL", SK_ENV_URL)
        .env("PROTECTED_RESOURCE_METADATA", METADATA)
        .env("SCALEKIT_MCP_REQUIRED_SCOPES", SCOPE)
        .env("SCALEKIT_MCP_ALGORITHMS", ALGORITHMS)
        .current_dir(home.path())
        .args(["check-token", "--json", "--now", &now.to_string()])
        .args(["--jwks", &fixture("jwks-all.json"), token])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let first_failure = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["status"] == "fail")
        .map(|check| check["detail"].as_str().unwrap().to_owned());
    assert_eq!(report["valid"], json!(first_failure.is_none()));
    (first_failure, output.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_check_token_agree_on_every_token() {
    let router = serve_router();
    // serve reads the clock itself; check-token gets the same instant through --now.
    let now = time::now();
    let mut disagreements = Vec::new();
    let mut refused = 0;
    for (name, token) in corpus(now) {
        let served = serve_verdict(&router, &token).await;
        let (checked, exit) = check_token_verdict(&token, now);
        if served != checked {
            disagreements.push(format!(
                "{name}:\n  serve:       {served:?}\n  check-token: {checked:?}"
            ));
        }
        let expected_exit = match &checked {
            None => 0,
            Some(reason) if reason.starts_with("malformed token:") => 2,
            Some(_) => 1,
        };
        assert_eq!(exit, expected_exit, "{name}: check-token exit code");
        refused += usize::from(served.is_some());
    }
    assert!(
        disagreements.is_empty(),
        "verdicts differ:\n{}",
        disagreements.join("\n")
    );
    // The corpus must exercise both sides: five tokens are valid, all others refused.
    assert_eq!(refused, corpus(now).len() - 5);
}
