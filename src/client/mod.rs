//! The client side: logging in to MCP servers, keeping their credentials, and talking to them.
//!
//! - [`secret`]: a newtype that keeps tokens out of logs and error messages.
//! - [`home`]: the config directory and its non-secret state file (servers, registrations).
//! - [`vault`]: where secrets live — the OS keyring, or an explicit 0600 file.
//! - [`credentials`]: rmcp's `CredentialStore` over those two, one server at a time.
//! - [`oauth`]: discovery, the authorization-code flow with its loopback redirect listener,
//!   client credentials, refresh, and the login or scope step-up a refused request asks for,
//!   built on rmcp's `auth` module.
//! - [`assertion`]: `private_key_jwt` client authentication (RFC 7523 assertions from a key file).
//! - [`mcp`]: one MCP session for `call` and `tools` (HTTP with the token rules, or a stdio child).
//! - [`proxy`]: the stdio bridge of `proxy`: a desktop client's messages to a server over HTTP.
//! - [`arguments`]: `key=value` / `key:=json` / `--args` checked against a tool's input schema.
//! - [`render`]: tool results and tool lists for a terminal.

pub mod arguments;
pub mod assertion;
pub mod callback;
pub mod credentials;
pub mod discovery;
pub mod home;
pub mod mcp;
pub mod oauth;
pub mod proxy;
pub mod render;
pub mod secret;
pub mod vault;
