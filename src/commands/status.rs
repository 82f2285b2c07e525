//! `scalekit-mcp status`: what is stored for each server — subject, scopes, expiry, storage,
//! whether it can be refreshed — and never a token.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::auth::time::{iso8601, now, relative};
use crate::client::home::{Home, ServerRecord};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Whether the stored credentials can no longer produce a token without a new login.
fn is_dead(record: &ServerRecord) -> bool {
    let expired = record.expires_at.is_some_and(|at| at <= now());
    expired && !record.has_refresh_token && record.grant != "client_credentials"
}

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let state = Home::locate()?.load()?;
    let default = state.default_server.as_deref();
    if args.json {
        let servers: Vec<_> = state
            .servers
            .values()
            .map(|record| {
                json!({
                    "server": record.server_url,
                    "default": Some(record.server_url.as_str()) == default,
                    "subject": record.subject,
                    "scopes": record.scopes,
                    "issuer": record.issuer,
                    "client_id": record.client_id,
                    "expires_at": record.expires_at.map(iso8601),
                    "expired": record.expires_at.is_some_and(|at| at <= now()),
                    "refreshable": record.has_refresh_token || record.grant == "client_credentials",
                    "storage": record.storage,
                    "grant": record.grant,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "servers": servers }))?
        );
    } else if state.servers.is_empty() {
        println!("Not logged in to any server. Log in with: scalekit-mcp login <SERVER_URL>");
    } else {
        for record in state.servers.values() {
            print_record(record, Some(record.server_url.as_str()) == default);
        }
    }
    let dead = state.servers.values().any(is_dead);
    Ok(if dead {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_record(record: &ServerRecord, is_default: bool) {
    let expiry = match record.expires_at {
        Some(at) if at <= now() => format!("expired {} ({})", relative(at, now()), iso8601(at)),
        Some(at) => format!("expires {} ({})", relative(at, now()), iso8601(at)),
        None => "no known expiry".to_owned(),
    };
    let renewal = match (record.has_refresh_token, record.grant.as_str()) {
        (true, _) => "refresh token stored",
        (false, "client_credentials") => "renewed with client credentials",
        _ => "no refresh token",
    };
    println!(
        "{}{}",
        record.server_url,
        if is_default { " (default)" } else { "" }
    );
    println!("  subject: {}", record.subject.as_deref().unwrap_or("-"));
    println!(
        "  scopes:  {}",
        if record.scopes.is_empty() {
            "-".to_owned()
        } else {
            record.scopes.join(" ")
        }
    );
    println!("  token:   {expiry}; {renewal}");
    println!(
        "  storage: {}",
        if record.storage == "file" {
            "file (0600)"
        } else {
            "OS keyring"
        }
    );
    if is_dead(record) {
        println!("  log in again: scalekit-mcp login {}", record.server_url);
    }
}
