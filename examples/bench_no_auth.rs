//! Benchmark only: `scalekit-mcp serve` (HTTP) with the bearer-token check left out and
//! everything else as in the product: same flags, router, layers and tools. `bench/run` compares
//! it with `serve` to measure what authentication costs per request.
//!
//! This is a separate binary on purpose: the product has no switch that turns auth off.
//!
//!     cargo run --release --example bench_no_auth -- --port 3002 --sk-env-url … --audience …

use std::process::ExitCode;

/// The binary's allocator, as in `src/main.rs`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use scalekit_mcp::config::ServeArgs;
use scalekit_mcp::config::ServeConfig;
use scalekit_mcp::logging;

/// `serve`'s flags, unchanged.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    scalekit_mcp::allocator::disable_huge_pages();
    let cli = Cli::parse();
    logging::init(cli.serve.log_format, cli.serve.log_level.as_deref(), "info");
    let result = ServeConfig::from_args(&cli.serve)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let server =
                scalekit_mcp::McpServer::new(config, scalekit_mcp::tools::ScalekitTools::new())?
                    .with_direct_tool_calls();
            logging::runtime()?.block_on(server.serve_without_auth_for_benchmarks())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_no_auth: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
