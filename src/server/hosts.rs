//! DNS-rebinding protection: the `Host` and `Origin` checks in front of the MCP endpoint.
//!
//! A web page that rebinds its own name to 127.0.0.1 can make a browser send requests to a local
//! server, but the browser still sends the attacker's name in `Host` and `Origin`. The MCP
//! transport spec requires servers to validate `Origin`; checking `Host` as well covers clients
//! that send none. Loopback names and the public URL's host are accepted; `--allowed-host` adds
//! more. Public routes (`/health`, `/ready`, metadata) are not checked: load balancers probe them
//! by IP.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::json;

use super::AppState;

/// The 403 to answer for this request's `Host` or `Origin`, if any. Checked by the guard in front
/// of the MCP endpoint ([`super::auth::Guarded`]) before the bearer token.
pub fn refusal(state: &AppState, request: &Request) -> Option<Response> {
    let allowed = &state.allowed_hosts;
    if request
        .headers()
        .get_all(header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        return Some(forbidden(
            "the request has more than one Host header".into(),
        ));
    }
    if !allowed.is_empty() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| {
                request
                    .uri()
                    .authority()
                    .map(|authority| authority.as_str())
            });
        match host {
            Some(host) if host_allowed(host, allowed) => {}
            Some(host) => {
                return Some(forbidden(format!(
                    "Host {} is not allowed: start the server with --allowed-host {} (or set --public-url)",
                    sanitize(host),
                    sanitize(host_name(host))
                )));
            }
            None => return Some(forbidden("the request has no Host header".into())),
        }
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(origin, allowed, &state.cors_origins) {
            return Some(forbidden(format!(
                "Origin {} is not allowed: add it with --cors-origin",
                sanitize(origin)
            )));
        }
    }
    None
}

fn forbidden(description: String) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({ "error": "forbidden", "error_description": description })),
    )
        .into_response()
}

/// The host part of a `Host` value, without the port (`[::1]:3002` → `[::1]`).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// Whether a `Host` value is accepted: an entry with a port must match exactly, one without
/// matches any port. Case-insensitive; an empty list accepts everything.
pub fn host_allowed(authority: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    // Compared in place, without lowercased copies: this runs on every MCP request.
    let name = host_name(authority);
    allowed.iter().any(|entry| {
        if host_name(entry).len() == entry.len() {
            entry.eq_ignore_ascii_case(name)
        } else {
            entry.eq_ignore_ascii_case(authority)
        }
    })
}

/// Whether an `Origin` is accepted: listed for CORS, or on an accepted host.
pub(crate) fn origin_allowed(
    origin: &str,
    allowed_hosts: &[String],
    cors_origins: &[String],
) -> bool {
    if cors_origins
        .iter()
        .any(|listed| listed.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    match url::Url::parse(origin) {
        Ok(url) => match url.host_str() {
            Some(host) => {
                let authority = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                };
                host_allowed(&authority, allowed_hosts)
            }
            None => false,
        },
        Err(_) => false,
    }
}

fn sanitize(text: &str) -> String {
    text.chars()
        .take(100)
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|entry| entry.to_string()).collect()
    }

    #[test]
    fn hosts_match_with_and_without_ports() {
        let allowed = list(&["localhost", "127.0.0.1", "[::1]", "mcp.example.com:8443"]);
        assert!(host_allowed("localhost:3002", &allowed));
        assert!(host_allowed("LOCALHOST", &allowed));
        assert!(host_allowed("[::1]:3002", &allowed));
        assert!(host_allowed("mcp.example.com:8443", &allowed));
        assert!(!host_allowed("mcp.example.com", &allowed));
        assert!(!host_allowed("evil.example:3002", &allowed));
        assert!(host_allowed("anything", &[]));
    }

    #[test]
    fn origins_follow_hosts_and_the_cors_list() {
        let allowed = list(&["localhost"]);
        let cors = list(&["https://app.example.com"]);
        assert!(origin_allowed("http://localhost:6274", &allowed, &cors));
        assert!(origin_allowed("https://app.example.com", &allowed, &cors));
        assert!(!origin_allowed("http://evil.example:3002", &allowed, &cors));
        assert!(!origin_allowed("null", &allowed, &cors));
    }
}
