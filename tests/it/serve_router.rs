//! `serve`'s HTTP behaviour, driven in-process through the router: challenges, issuers, audiences,
//! scopes, tools, metadata, Host/Origin and CORS. The table of refused credentials is in
//! `adversarial.rs`.

use std::sync::Arc;

use axum::body::Body;
use scalekit_mcp::auth::jwks::{CacheSettings, FetchFuture, JwksCache, KeyFetcher};
use serde_json::json;

use crate::util::*;

fn app_default() -> axum::Router {
    app(BASE_ARGS, keys("jwks-all.json"))
}

const METADATA_URL: &str = "http://localhost:3002/.well-known/oauth-protected-resource";

#[tokio::test]
async fn health_is_exactly_the_seeds_body() {
    let reply = send(
        &app_default(),
        http::Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"status": "healthy"}));
}

#[tokio::test]
async fn missing_token_gets_a_challenge_without_error() {
    let reply = post(&app_default(), None, &call_greet("Saif")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate").unwrap(),
        format!("Bearer realm=\"OAuth\", resource_metadata=\"{METADATA_URL}\"")
    );
    assert_eq!(reply.json()["error"], "unauthorized");
}

#[tokio::test]
async fn a_valid_token_calls_greet_user() {
    let reply = post(
        &app_default(),
        Some(&mint(&good_claims())),
        &call_greet("Saif"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(tool_text(&reply.rpc()), "Hi Saif, welcome to Scalekit!");
}

#[tokio::test]
async fn whoami_reads_the_validated_claims() {
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let reply = post(&app_default(), Some(&mint(&good_claims())), &call).await;
    let caller = &reply.rpc()["result"]["structuredContent"];
    assert_eq!(caller["sub"], "usr_42");
    assert_eq!(caller["client_id"], "skc_client");
    assert_eq!(caller["org_id"], "org_7", "org id read from oid");
    assert_eq!(caller["scopes"], json!(["mcp:tools", "user:read"]));
    assert_eq!(caller["issuer"], ISSUER);
}

#[tokio::test]
async fn both_scalekit_issuer_forms_are_accepted() {
    let metadata =
        json!({"resource": AUDIENCE, "authorization_servers": [RESOURCE_ISSUER]}).to_string();
    let app = app(
        &[
            "--sk-env-url",
            ISSUER,
            "--protected-resource-metadata",
            &metadata,
            "--stateless",
        ],
        keys("jwks-all.json"),
    );
    for issuer in [ISSUER, RESOURCE_ISSUER] {
        let mut claims = good_claims();
        claims["iss"] = json!(issuer);
        let reply = post(&app, Some(&mint(&claims)), &call_greet("x")).await;
        assert_eq!(reply.status, 200, "{issuer}: {}", reply.body);
    }
}

#[tokio::test]
async fn issuer_flag_replaces_the_defaults() {
    let app = app(
        &[
            "--issuer",
            "https://other.example",
            "--audience",
            AUDIENCE,
            "--stateless",
        ],
        keys("jwks-all.json"),
    );
    let reply = post(&app, Some(&mint(&good_claims())), &call_greet("x")).await;
    assert_eq!(reply.status, 401);
    let mut claims = good_claims();
    claims["iss"] = json!("https://other.example");
    assert_eq!(
        post(&app, Some(&mint(&claims)), &call_greet("x"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn any_accepted_audience_in_a_string_or_array_passes() {
    let app = app(
        &[
            "--sk-env-url",
            ISSUER,
            "--audience",
            "https://a.example/,https://b.example/",
            "--stateless",
        ],
        keys("jwks-all.json"),
    );
    for aud in [
        json!("https://b.example/"),
        json!(["res_1", "https://a.example/"]),
    ] {
        let mut claims = good_claims();
        claims["aud"] = aud.clone();
        assert_eq!(
            post(&app, Some(&mint(&claims)), &call_greet("x"))
                .await
                .status,
            200,
            "{aud}"
        );
    }
    let mut claims = good_claims();
    claims["aud"] = json!("https://a.example");
    assert_eq!(
        post(&app, Some(&mint(&claims)), &call_greet("x"))
            .await
            .status,
        401,
        "exact comparison"
    );
}

#[tokio::test]
async fn audience_defaults_to_the_metadata_resource() {
    let metadata =
        json!({"resource": "https://mcp.example.com/", "authorization_servers": [ISSUER]})
            .to_string();
    let app = app(
        &["--protected-resource-metadata", &metadata, "--stateless"],
        keys("jwks-all.json"),
    );
    let mut claims = good_claims();
    claims["aud"] = json!("https://mcp.example.com/");
    let request = with_host(
        mcp_post(Some(&mint(&claims))),
        "mcp.example.com",
        &call_greet("x"),
    );
    assert_eq!(send(&app, request).await.status, 200);
}

#[tokio::test]
async fn scopes_are_read_from_scope_scp_and_scopes() {
    let app = app(
        &[BASE_ARGS, &["--required-scope", "mcp:admin"]].concat(),
        keys("jwks-all.json"),
    );
    let forms = [
        json!({"scope": "mcp:tools mcp:admin"}),
        json!({"scp": ["mcp:admin"]}),
        json!({"scopes": ["mcp:tools", "mcp:admin"]}),
    ];
    for form in forms {
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove("scope");
        claims
            .as_object_mut()
            .unwrap()
            .extend(form.as_object().unwrap().clone());
        let reply = post(&app, Some(&mint(&claims)), &call_greet("x")).await;
        assert_eq!(reply.status, 200, "{form}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_missing_scope_is_403_insufficient_scope() {
    let app = app(
        &[BASE_ARGS, &["--required-scope", "mcp:admin"]].concat(),
        keys("jwks-all.json"),
    );
    let reply = post(&app, Some(&mint(&good_claims())), &call_greet("x")).await;
    assert_eq!(reply.status, 403);
    let challenge = reply.header("www-authenticate").unwrap();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"OAuth\", resource_metadata=\"{METADATA_URL}\", scope=\"mcp:admin\", \
             error=\"insufficient_scope\", error_description=\"missing required scope: mcp:admin\""
        )
    );
    assert_eq!(reply.json()["error"], "insufficient_scope");

    let no_token = post(&app, None, &call_greet("x")).await;
    assert!(
        no_token
            .header("www-authenticate")
            .unwrap()
            .ends_with("scope=\"mcp:admin\"")
    );
}

#[tokio::test]
async fn an_expired_token_without_the_scope_is_still_401() {
    let app = app(
        &[BASE_ARGS, &["--required-scope", "mcp:admin"]].concat(),
        keys("jwks-all.json"),
    );
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 3600);
    let reply = post(&app, Some(&mint(&claims)), &call_greet("x")).await;
    assert_eq!(reply.status, 401);
    assert!(challenge_description(reply.header("www-authenticate").unwrap()).contains("expired"));
}

#[tokio::test]
async fn algorithms_flag_allows_es256() {
    let ec_pem = std::fs::read(fixture("ec-p256.pem")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("key-ec".into());
    let token = jsonwebtoken::encode(
        &header,
        &good_claims(),
        &jsonwebtoken::EncodingKey::from_ec_pem(&ec_pem).unwrap(),
    )
    .unwrap();
    let default = post(&app_default(), Some(&token), &call_greet("x")).await;
    assert_eq!(default.status, 401, "ES256 is not allowed by default");
    let app = app(
        &[BASE_ARGS, &["--algorithms", "RS256,ES256"]].concat(),
        keys("jwks-all.json"),
    );
    assert_eq!(post(&app, Some(&token), &call_greet("x")).await.status, 200);
}

/// A fetcher that always fails, for a cache that never loads.
struct Down;

impl KeyFetcher for Down {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async { Err("GET http://127.0.0.1:9/keys: connection refused".to_string()) })
    }
}

#[tokio::test]
async fn without_keys_tokens_get_503_and_ready_says_why() {
    let cache = Arc::new(JwksCache::new(Box::new(Down), CacheSettings::default()));
    let _ = cache.refresh().await;
    let app = app_with_cache(BASE_ARGS, cache);
    let reply = post(&app, Some(&mint(&good_claims())), &call_greet("x")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(
        post(&app, None, &call_greet("x")).await.status,
        401,
        "no credentials is still a 401"
    );
    let ready = send(
        &app,
        http::Request::get("/ready").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.json()["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
    let health = send(
        &app,
        http::Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn ready_reports_loaded_keys() {
    let ready = send(
        &app_default(),
        http::Request::get("/ready").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), json!({"status": "ready", "signing_keys": 3}));
}

#[tokio::test]
async fn metadata_is_served_verbatim() {
    let metadata = r#"{"resource":"http://localhost:3002/","authorization_servers":["https://env.example.scalekit.dev/resources/res_123"],"bearer_methods_supported":["header"],"scopes_supported":["user:read"]}"#;
    let app = app(
        &[
            "--sk-env-url",
            ISSUER,
            "--protected-resource-metadata",
            metadata,
        ],
        keys("jwks-a.json"),
    );
    let reply = send(
        &app,
        http::Request::get("/.well-known/oauth-protected-resource")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, metadata);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn metadata_is_generated_and_path_suffixed_for_a_non_root_mcp_path() {
    let app = app(
        &[
            "--sk-env-url",
            ISSUER,
            "--mcp-path",
            "/mcp",
            "--public-url",
            "https://mcp.example.com",
            "--scopes-supported",
            "mcp:tools",
        ],
        keys("jwks-a.json"),
    );
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let reply = send(&app, http::Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.json(),
            json!({"resource": "https://mcp.example.com/mcp", "authorization_servers": [ISSUER],
                   "bearer_methods_supported": ["header"], "scopes_supported": ["mcp:tools"]})
        );
    }
    let request = http::Request::post("/mcp")
        .header("host", "mcp.example.com")
        .body(Body::from(call_greet("x").to_string()))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, 401);
    assert!(reply.header("www-authenticate").unwrap().contains(
        "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
    ));
}

/// `--mcp-path` serves MCP at exactly that path, stateless or not; with a token, any other path
/// (a trailing slash, the root) is a JSON 404.
#[tokio::test]
async fn a_non_root_mcp_path_is_served_there_only() {
    let token = mint(&good_claims());
    for mode in [&["--stateless"][..], &[]] {
        let args = [
            &[
                "--sk-env-url",
                ISSUER,
                "--audience",
                AUDIENCE,
                "--mcp-path",
                "/mcp",
            ][..],
            mode,
        ]
        .concat();
        let app = app(&args, keys("jwks-a.json"));
        let at = |path: &str| {
            let body = if mode.is_empty() {
                initialize()
            } else {
                call_greet("x")
            };
            http::Request::post(path)
                .header("host", "localhost")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let served = send(&app, at("/mcp")).await;
        assert_eq!(served.status, 200, "{mode:?}: {}", served.body);
        for path in ["/", "/mcp/", "/MCP", "/mcp/x"] {
            let missing = send(&app, at(path)).await;
            assert_eq!(missing.status, 404, "{mode:?} {path}");
            assert_eq!(missing.json()["error"], "not_found", "{mode:?} {path}");
        }
    }
}

#[tokio::test]
async fn unknown_paths_need_a_token_too() {
    let app = app_default();
    let anonymous = send(
        &app,
        http::Request::get("/admin")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    let request = http::Request::get("/admin")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", mint(&good_claims())))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.status, 404);
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused_before_auth() {
    let app = app_default();
    let token = mint(&good_claims());
    let rebinding = with_host(
        mcp_post(Some(&token)),
        "evil.example:3002",
        &call_greet("x"),
    );
    let reply = send(&app, rebinding).await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("--allowed-host evil.example")
    );

    let origin = mcp_post(Some(&token))
        .header("origin", "http://evil.example")
        .body(Body::from(call_greet("x").to_string()))
        .unwrap();
    assert_eq!(send(&app, origin).await.status, 403);

    let local_origin = mcp_post(Some(&token))
        .header("origin", "http://localhost:6274")
        .body(Body::from(call_greet("x").to_string()))
        .unwrap();
    assert_eq!(send(&app, local_origin).await.status, 200);
}

#[tokio::test]
async fn allowed_host_flag_and_public_url_extend_the_host_list() {
    let app = app(
        &[
            BASE_ARGS,
            &[
                "--allowed-host",
                "internal.example",
                "--public-url",
                "https://mcp.example.com",
            ],
        ]
        .concat(),
        keys("jwks-all.json"),
    );
    let token = mint(&good_claims());
    for host in ["internal.example:8080", "mcp.example.com"] {
        let request = with_host(mcp_post(Some(&token)), host, &call_greet("x"));
        assert_eq!(send(&app, request).await.status, 200, "{host}");
    }
}

#[tokio::test]
async fn cors_preflight_is_answered_without_a_token() {
    let app = app(
        &[BASE_ARGS, &["--cors-origin", "https://app.example.com"]].concat(),
        keys("jwks-all.json"),
    );
    let preflight = http::Request::options("/")
        .header("host", "localhost")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-protocol-version",
        )
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, preflight).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let allowed = reply
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("mcp-session-id"),
        "{allowed}"
    );

    let request = mcp_post(None)
        .header("origin", "https://app.example.com")
        .body(Body::from(call_greet("x").to_string()))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, 401);
    let exposed = reply
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("www-authenticate"), "{exposed}");
}

/// Whether a response carries CORS headers depends on the request's Origin and preflight headers,
/// so every response says so in `Vary`, with or without an Origin; an origin not on the list gets
/// no `Access-Control-Allow-Origin`.
#[tokio::test]
async fn cors_answers_vary_everywhere_and_allows_only_listed_origins() {
    let app = app(
        &[BASE_ARGS, &["--cors-origin", "https://app.example.com"]].concat(),
        keys("jwks-all.json"),
    );
    let preflight = |origin: &str| {
        http::Request::options("/")
            .header("host", "localhost")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .unwrap()
    };
    let listed = send(&app, preflight("https://app.example.com")).await;
    let unlisted = send(&app, preflight("https://app.example.com.evil.test")).await;
    let health = send(
        &app,
        http::Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    let refused = post(&app, None, &call_greet("x")).await;
    assert_eq!(
        listed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(unlisted.header("access-control-allow-origin"), None);
    for (name, reply) in [
        ("listed", &listed),
        ("unlisted", &unlisted),
        ("health", &health),
        ("refused", &refused),
    ] {
        let vary: Vec<&str> = reply
            .headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            vary,
            ["origin, access-control-request-method, access-control-request-headers"],
            "{name}"
        );
    }
}

#[tokio::test]
async fn stateful_sessions_initialize_then_call() {
    let app = app(
        &["--sk-env-url", ISSUER, "--audience", AUDIENCE],
        keys("jwks-all.json"),
    );
    let token = mint(&good_claims());
    let init = post(&app, Some(&token), &initialize()).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let session = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_owned();
    assert_eq!(init.rpc()["result"]["serverInfo"]["name"], "scalekit-mcp");

    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let request = mcp_post(Some(&token))
        .header("mcp-session-id", &session)
        .body(Body::from(initialized.to_string()))
        .unwrap();
    assert_eq!(send(&app, request).await.status, 202);

    let request = mcp_post(Some(&token))
        .header("mcp-session-id", &session)
        .body(Body::from(call_greet("Saif").to_string()))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(tool_text(&reply.rpc()), "Hi Saif, welcome to Scalekit!");

    let request = mcp_post(None)
        .header("mcp-session-id", &session)
        .body(Body::from(call_greet("Saif").to_string()))
        .unwrap();
    assert_eq!(
        send(&app, request).await.status,
        401,
        "a session id is no substitute for a token"
    );
}

#[tokio::test]
async fn tools_list_describes_both_tools() {
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let reply = post(&app_default(), Some(&mint(&good_claims())), &list).await;
    let tools = reply.rpc()["result"]["tools"].as_array().unwrap().clone();
    let names: Vec<&str> = tools
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"greet_user") && names.contains(&"whoami"));
    let greet = tools
        .iter()
        .find(|tool| tool["name"] == "greet_user")
        .unwrap();
    assert_eq!(greet["inputSchema"]["required"], json!(["name"]));
    assert_eq!(greet["inputSchema"]["properties"]["name"]["type"], "string");
}

/// The origin (scheme://host[:port]) of an absolute URL.
fn origin_of(url: &str) -> String {
    url::Url::parse(url).unwrap().origin().ascii_serialization()
}

/// A client follows the challenge's `resource_metadata` to the metadata document: both must be on
/// the resource's own origin, whichever way the resource is configured, and the URL must be
/// served. A production server must never send clients to localhost.
#[tokio::test]
async fn the_challenge_and_the_metadata_agree_on_the_resources_origin() {
    let verbatim = r#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://env.example.scalekit.dev"]}"#;
    let cases: [(&str, Vec<&str>, &str); 5] = [
        (
            "PROTECTED_RESOURCE_METADATA",
            vec![
                "--sk-env-url",
                ISSUER,
                "--protected-resource-metadata",
                verbatim,
                "--mcp-path",
                "/mcp",
            ],
            "https://mcp.example.com",
        ),
        (
            "--resource",
            vec![
                "--issuer",
                ISSUER,
                "--resource",
                "https://mcp.example.com/mcp",
                "--mcp-path",
                "/mcp",
            ],
            "https://mcp.example.com",
        ),
        (
            "--resource at another path than --mcp-path",
            vec!["--issuer", ISSUER, "--resource", "https://mcp.example.com/"],
            "https://mcp.example.com",
        ),
        (
            "generated from --public-url",
            vec![
                "--issuer",
                ISSUER,
                "--public-url",
                "https://public.example.org",
                "--mcp-path",
                "/mcp",
            ],
            "https://public.example.org",
        ),
        ("--dev", vec!["--dev"], "http://localhost:3002"),
    ];
    for (way, args, expected_origin) in cases {
        let config = serve_config(&args);
        let mcp_path = config.mcp_path().to_owned();
        let app = app(&args, keys("jwks-all.json"));
        let host = url::Url::parse(expected_origin)
            .unwrap()
            .authority()
            .to_owned();
        let request = http::Request::post(mcp_path.as_str())
            .header("host", &host)
            .header("content-type", "application/json")
            .body(Body::from(call_greet("Ada").to_string()))
            .unwrap();
        let reply = send(&app, request).await;
        assert_eq!(reply.status, 401, "{way}: {}", reply.body);
        let challenge = reply.header("www-authenticate").unwrap().to_owned();
        let metadata_url = challenge
            .split("resource_metadata=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("{way}: no resource_metadata in {challenge}"));
        assert_eq!(
            origin_of(metadata_url),
            expected_origin,
            "{way}: {challenge}"
        );

        let path = url::Url::parse(metadata_url).unwrap().path().to_owned();
        let request = http::Request::get(path.as_str())
            .body(Body::empty())
            .unwrap();
        let document = send(&app, request).await;
        assert_eq!(document.status, 200, "{way}: {metadata_url} is not served");
        let resource = document.json()["resource"].as_str().unwrap().to_owned();
        assert_eq!(
            origin_of(&resource),
            expected_origin,
            "{way}: resource {resource}"
        );
    }
}

/// The resource names a path, the endpoint is elsewhere: a warning names both (not an error: a
/// proxy may rewrite the path).
#[test]
fn a_resource_path_other_than_the_mcp_path_is_a_warning() {
    let config = serve_config(&[
        "--issuer",
        ISSUER,
        "--resource",
        "https://mcp.example.com/mcp",
    ]);
    let warning = config
        .warnings()
        .iter()
        .find(|warning| warning.contains("--mcp-path"))
        .expect("a warning about the path");
    assert!(
        warning.contains("\"/mcp\"") && warning.contains("\"/\""),
        "{warning}"
    );
    let matching = serve_config(&[
        "--issuer",
        ISSUER,
        "--resource",
        "https://mcp.example.com/mcp",
        "--mcp-path",
        "/mcp",
    ]);
    assert!(
        !matching.warnings().iter().any(|w| w.contains("--mcp-path")),
        "{:?}",
        matching.warnings()
    );
}
