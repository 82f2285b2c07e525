//! Benchmark only: the ceiling row of `bench/run`. A bare axum route that answers every POST with
//! the same fixed JSON-RPC greeting, with no authentication and no MCP: what one HTTP JSON
//! endpoint can do on this machine with the same runtime, HTTP stack, allocator and TCP_NODELAY as
//! `serve`.
//!
//!     cargo run --release --example bench_ceiling -- PORT

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use http::header;

/// The binary's allocator, as in `src/main.rs`: the ceiling gets every advantage `serve` has.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GREETING: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Hi bench, welcome to Scalekit!"}],"isError":false}}"#;

fn main() -> std::io::Result<()> {
    // The product's memory setting (scalekit_mcp::allocator).
    scalekit_mcp::allocator::disable_huge_pages();
    tokio::runtime::Runtime::new()?.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|port| port.parse().ok())
        .unwrap_or(3002);
    let app = Router::new()
        .route(
            "/",
            post(|| async { ([(header::CONTENT_TYPE, "application/json")], GREETING) }),
        )
        .route("/ready", get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, app).await
}
