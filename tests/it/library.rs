//! The library's API used the way an application uses it, in-process.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use scalekit_mcp::tools::ScalekitTools;
use scalekit_mcp::{Authenticated, Config, McpServer};

use crate::util::*;

/// An application that protects a route with the auth layer alone (no MCP router, no health
/// routes): the signing keys must still load.
#[tokio::test]
async fn an_auth_layer_alone_loads_the_signing_keys() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let config = Config::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url(format!("{}/keys", jwks.url()))
        .build()
        .unwrap();
    let mcp = McpServer::new(config, ScalekitTools::new()).unwrap();
    let app = Router::new().route(
        "/api/me",
        get(|caller: Authenticated| async move { caller.sub.clone().unwrap_or_default() })
            .layer(mcp.auth_layer()),
    );
    let token = mint(&good_claims());
    let started = Instant::now();
    loop {
        let request = http::Request::get("/api/me")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let reply = send(&app, request).await;
        if reply.status == 200 {
            assert_eq!(reply.body, "usr_42");
            break;
        }
        assert_eq!(reply.status, 503, "keys not loaded yet: {}", reply.body);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the signing keys never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A mounted server with `metrics_addr`: its first router starts the metrics listener, and the
/// mounted MCP endpoint's requests are counted there.
#[tokio::test(flavor = "multi_thread")]
async fn a_mounted_server_serves_its_metrics_on_their_own_listener() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let metrics_port = free_port();
    let config = Config::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_url(format!("{}/keys", jwks.url()))
        .mcp_path("/mcp")
        .metrics_addr(format!("127.0.0.1:{metrics_port}"))
        .build()
        .unwrap();
    let mcp = McpServer::new(config, ScalekitTools::new()).unwrap();
    let app = Router::new().merge(mcp.router());
    let request = http::Request::post("/mcp")
        .header("host", "localhost:3002")
        .body(Body::empty())
        .unwrap();
    let refused = send(&app, request).await;
    assert_eq!(refused.status, 401);

    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let started = Instant::now();
    let text = loop {
        if let Ok(response) = reqwest::get(&url).await {
            break response.text().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no metrics listener"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        text.contains(
            "http_server_request_duration_seconds_count{http_request_method=\"POST\",\
             http_route=\"/mcp\",http_response_status_code=\"401\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("scalekit_mcp_auth_refusals_total{reason=\"missing\"} 1"),
        "{text}"
    );
}
