//! `scalekit-mcp`: an MCP server whose every request needs an OAuth 2.1 bearer token from Scalekit
//! or any standards-compliant authorization server, and the tools around it.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that integration tests can
//! build the HTTP router in-process (`server::router`) as well as run the binary.

pub mod allocator;
pub mod auth;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod error;
pub mod logging;
pub mod output;
pub mod server;
