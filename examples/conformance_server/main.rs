//! Test fixture: the server the official MCP conformance suite grades
//! (`@modelcontextprotocol/conformance`, run by `tests/interop/cases/test_conformance_server.py`).
//!
//! An rmcp handler with every fixture the suite's server scenarios call, under the names and with
//! the answers their descriptions and checks ask for: tools returning text, an image, audio, an
//! embedded resource, mixed content and an error; tools that log, report progress, ask the client
//! to sample or to fill in forms, and end their response stream for the client to resume;
//! resources, a resource template and subscriptions; prompts with arguments, an embedded resource
//! and an image; completion; the logging level. Built on the library the way its users build
//! theirs, it shows that any MCP server can be served by this crate.
//!
//! The suite's harness sends no bearer token, so this serves with the bearer-token check left out,
//! as `bench_no_auth` does, and is otherwise `scalekit-mcp serve` with the same flags, router and
//! layers. A test fixture, never a product switch: the product has no way to turn auth off.
//!
//!     cargo run --example conformance_server -- --port 3002 \
//!         --sk-env-url https://conformance.invalid --audience http://localhost:3002/

mod elicitation;
mod media;
mod prompts;
mod resources;
mod server;
mod session;
mod tools;

use std::process::ExitCode;

use clap::Parser;
use scalekit_mcp::{Config, McpServer, ServeArgs};

use server::ConformanceServer;

/// `serve`'s flags, unchanged.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve`'s own logging set-up, as bench_no_auth has it (an inner module, reached through the
    // `internals` feature examples are built with); a user's server sets up tracing its own way.
    scalekit_mcp::logging::init(cli.serve.log_format, cli.serve.log_level.as_deref(), "info");
    let result = Config::from_args(&cli.serve)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let server = McpServer::new(config, ConformanceServer::new())?;
            tokio::runtime::Runtime::new()?.block_on(server.serve_without_auth_for_benchmarks())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conformance_server: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
