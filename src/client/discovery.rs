//! OAuth discovery for an MCP server, in the order the MCP authorization spec (2025-11-25) gives:
//!
//! 1. an unauthenticated request; a 401's `WWW-Authenticate` may name `resource_metadata`;
//! 2. else the path-suffixed, then the root `/.well-known/oauth-protected-resource` (RFC 9728);
//! 3. the metadata's first `authorization_servers` entry;
//! 4. its RFC 8414 metadata with path insertion, then the OpenID Connect forms.
//!
//! The metadata is looked for whatever the first request got: a server may accept `initialize`
//! without a token and ask for one only on `tools/list` (the MCP spec allows it), so a 200 there
//! proves nothing. Only a server that answered without a token *and* publishes no metadata is
//! one without OAuth.
//!
//! A server that refused the request but publishes no protected resource metadata is treated
//! as one of the 2025-03-26 revision: its authorization server metadata is at the server's
//! origin (`/.well-known/oauth-authorization-server`), else the default `/authorize`, `/token`
//! and `/register` endpoints there are used.
//!
//! Every step is recorded in a trace (`login -v` prints it), and a failure says which URLs were
//! tried and what came back.

use std::time::Duration;

use rmcp::transport::auth::{AuthorizationMetadata, WWWAuthenticateParams};
use serde_json::{Value, json};
use url::Url;

use crate::error::{Exit, ExitError, error_chain};

/// Everything discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The 401 challenge, when the server sent one.
    pub challenge: Option<String>,
    /// `scope` from the challenge.
    pub challenge_scope: Option<String>,
    /// The protected resource (`resource` of its metadata): the token audience, RFC 8707.
    pub resource: String,
    pub resource_scopes: Vec<String>,
    /// The authorization server issuer.
    pub issuer: String,
    pub metadata: AuthorizationMetadata,
    /// The raw authorization server metadata document, kept for refresh and revocation.
    pub metadata_document: Value,
    /// Found the 2025-03-26 way (no protected resource metadata).
    pub legacy: bool,
    pub trace: Vec<String>,
}

/// What the unauthenticated request got.
struct Probe {
    /// The server refused it (401), or a later request was refused.
    refused: bool,
    /// It was answered with success: the server may not use OAuth at all.
    accepted: bool,
    challenge: Option<String>,
}

fn unreachable(message: String) -> anyhow::Error {
    ExitError {
        exit: Exit::Unreachable,
        message,
    }
    .into()
}

/// An HTTP client for discovery and token requests: bounded, no redirects to other origins.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scalekit-mcp/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Runs discovery against `server`, starting with an unauthenticated `initialize`.
pub async fn discover(client: &reqwest::Client, server: &Url) -> anyhow::Result<Discovered> {
    let mut trace = Vec::new();
    let probe = probe(client, server, &mut trace).await?;
    find(client, server, probe, trace).await
}

/// Runs discovery after the server refused a request with `challenge` (a 401's
/// `WWW-Authenticate`), e.g. a `tools/list` after an `initialize` it accepted without a token.
pub async fn discover_after_refusal(
    client: &reqwest::Client,
    server: &Url,
    challenge: Option<&str>,
) -> anyhow::Result<Discovered> {
    let trace = vec![format!(
        "{server} refused a request{}",
        challenge
            .map(|c| format!(", WWW-Authenticate: {c}"))
            .unwrap_or_default()
    )];
    let probe = Probe {
        refused: true,
        accepted: false,
        challenge: challenge.map(str::to_owned),
    };
    find(client, server, probe, trace).await
}

async fn find(
    client: &reqwest::Client,
    server: &Url,
    probe: Probe,
    mut trace: Vec<String>,
) -> anyhow::Result<Discovered> {
    let params = probe
        .challenge
        .as_deref()
        .map(|header| WWWAuthenticateParams::parse(header, server));

    let mut candidates = Vec::new();
    if let Some(url) = params
        .as_ref()
        .and_then(|p| p.resource_metadata_url.clone())
    {
        candidates.push(url);
    }
    let named_metadata = !candidates.is_empty();
    candidates.extend(well_known_resource_urls(server));
    let (prm_url, prm) = match first_json(
        client,
        &candidates,
        "protected resource metadata",
        &mut trace,
    )
    .await
    {
        Ok(found) => found,
        Err(attempts) if probe.accepted => {
            return Err(ExitError::usage(format!(
                "{server} answered without asking for a token and publishes no protected resource \
                 metadata (tried {}): it does not use OAuth, so there is nothing to log in to (call it \
                 directly)",
                attempts.join("; ")
            ))
            .into());
        }
        // Only a server that names no metadata and answers that it has none is a 2025-03-26 one:
        // a named or failing (5xx, unreachable) metadata URL is reported, not guessed around.
        Err(misses) if probe.refused && misses.absent && !named_metadata => {
            let mut discovered = legacy(client, server, &mut trace).await?;
            discovered.challenge_scope = params.and_then(|p| p.scope);
            discovered.challenge = probe.challenge;
            discovered.trace = trace;
            return Ok(discovered);
        }
        Err(attempts) => {
            return Err(unreachable(format!(
                "could not find the protected resource metadata; tried {}",
                attempts.join("; ")
            )));
        }
    };

    let resource = prm
        .get("resource")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| server.to_string());
    let issuer = prm
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|servers| servers.first())
        .and_then(Value::as_str)
        .ok_or_else(|| {
            unreachable(format!(
                "{prm_url} names no authorization_servers: the server cannot tell where to log in"
            ))
        })?
        .to_owned();
    let issuer_url = Url::parse(&issuer).map_err(|err| {
        unreachable(format!(
            "{prm_url}: authorization server {issuer:?} is not a URL ({err})"
        ))
    })?;
    trace.push(format!("authorization server: {issuer}"));

    let as_urls = crate::auth::jwks::metadata_urls(&issuer_url);
    let (as_url, document) = first_json(
        client,
        &as_urls,
        "authorization server metadata",
        &mut trace,
    )
    .await
    .map_err(|attempts| {
        unreachable(format!(
            "could not find the authorization server metadata; tried {}",
            attempts.join("; ")
        ))
    })?;
    if let Some(stated) = document.get("issuer").and_then(Value::as_str)
        && stated.trim_end_matches('/') != issuer.trim_end_matches('/')
    {
        return Err(unreachable(format!(
            "{as_url} says its issuer is {stated}, not {issuer} (RFC 8414 §3.3): refusing metadata that \
             belongs to another server"
        )));
    }
    let metadata = parse_metadata(&as_url, &document)?;

    Ok(Discovered {
        challenge_scope: params.and_then(|p| p.scope),
        challenge: probe.challenge,
        resource,
        resource_scopes: string_list(prm.get("scopes_supported")),
        issuer,
        metadata,
        metadata_document: document,
        legacy: false,
        trace,
    })
}

fn parse_metadata(as_url: &Url, document: &Value) -> anyhow::Result<AuthorizationMetadata> {
    serde_json::from_value(document.clone()).map_err(|err| {
        unreachable(format!("{as_url}: not usable authorization server metadata ({err}): it needs authorization_endpoint and token_endpoint"))
    })
}

/// The 2025-03-26 revision, for servers without protected resource metadata: the authorization
/// server's metadata at the MCP server's origin, else the default endpoints there (its section
/// "Fallbacks for Servers without Metadata Discovery").
///
/// The metadata URL is derived from the MCP server, not from an issuer named beforehand, so the
/// RFC 8414 §3.3 issuer comparison has nothing to compare with; the document's own `issuer` (or
/// the origin) keys the client registration. PKCE is mandatory in that revision too, so the
/// default endpoints are taken to support S256.
async fn legacy(
    client: &reqwest::Client,
    server: &Url,
    trace: &mut Vec<String>,
) -> anyhow::Result<Discovered> {
    let origin = server.origin().ascii_serialization();
    trace.push(format!(
        "no protected resource metadata: trying the 2025-03-26 discovery at {origin}"
    ));
    let metadata_url = Url::parse(&format!("{origin}/.well-known/oauth-authorization-server"))?;
    let document = match first_json(
        client,
        std::slice::from_ref(&metadata_url),
        "authorization server metadata",
        trace,
    )
    .await
    {
        Ok((_, document)) => document,
        Err(_) => {
            trace.push(format!(
                "no authorization server metadata: using the default endpoints {origin}/authorize, \
                 {origin}/token, {origin}/register"
            ));
            json!({
                "issuer": origin,
                "authorization_endpoint": format!("{origin}/authorize"),
                "token_endpoint": format!("{origin}/token"),
                "registration_endpoint": format!("{origin}/register"),
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            })
        }
    };
    let metadata = parse_metadata(&metadata_url, &document)?;
    let issuer = document
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or(&origin)
        .to_owned();
    trace.push(format!("authorization server (2025-03-26): {issuer}"));
    Ok(Discovered {
        challenge: None,
        challenge_scope: None,
        resource: server.to_string(),
        resource_scopes: Vec::new(),
        issuer,
        metadata,
        metadata_document: document,
        legacy: true,
        trace: Vec::new(),
    })
}

/// Sends an unauthenticated MCP `initialize` and reports how it was answered.
async fn probe(
    client: &reqwest::Client,
    server: &Url,
    trace: &mut Vec<String>,
) -> anyhow::Result<Probe> {
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "scalekit-mcp", "version": env!("CARGO_PKG_VERSION")}}});
    let response = client
        .post(server.clone())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(initialize.to_string())
        .send()
        .await
        .map_err(|err| unreachable(format!("cannot reach {server}: {}", error_chain(&err))))?;
    let status = response.status();
    let challenge = response
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    trace.push(format!(
        "POST {server} (no token) → {status}{}",
        challenge
            .as_deref()
            .map(|c| format!(", WWW-Authenticate: {c}"))
            .unwrap_or_default()
    ));
    // A session the probe opened is closed again (best effort; stateless servers have none).
    if status.is_success()
        && let Some(session) = response.headers().get("mcp-session-id").cloned()
    {
        let _ = client
            .delete(server.clone())
            .header("mcp-session-id", session)
            .send()
            .await;
    }
    let refused = status == http::StatusCode::UNAUTHORIZED;
    Ok(Probe {
        refused,
        accepted: status.is_success(),
        challenge: if refused { challenge } else { None },
    })
}

/// RFC 9728 §3.1: the well-known URL with the resource's path appended, then the root one.
fn well_known_resource_urls(server: &Url) -> Vec<Url> {
    let path = server.path().trim_end_matches('/');
    let mut urls = Vec::new();
    let mut url = server.clone();
    url.set_query(None);
    url.set_fragment(None);
    if !path.is_empty() {
        let mut suffixed = url.clone();
        suffixed.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
        urls.push(suffixed);
    }
    url.set_path("/.well-known/oauth-protected-resource");
    urls.push(url);
    urls
}

/// Why no document was found: each URL tried with what came back.
struct Misses {
    attempts: Vec<String>,
    /// Every URL answered, and none had it (a 4xx, or something that is not a JSON object), as
    /// opposed to an unreachable or failing (5xx) server, where absence is not established.
    absent: bool,
}

impl Misses {
    fn join(&self, separator: &str) -> String {
        self.attempts.join(separator)
    }
}

/// GETs each URL in turn and returns the first JSON object; the error lists every attempt.
async fn first_json(
    client: &reqwest::Client,
    urls: &[Url],
    what: &str,
    trace: &mut Vec<String>,
) -> Result<(Url, Value), Misses> {
    let mut attempts = Vec::new();
    let mut absent = true;
    for url in urls {
        let outcome = match client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
        {
            Err(err) => {
                absent = false;
                Err(error_chain(&err))
            }
            Ok(response) if !response.status().is_success() => {
                absent &= response.status().is_client_error();
                Err(format!("HTTP {}", response.status()))
            }
            Ok(response) => match response.json::<Value>().await {
                Ok(value) if value.is_object() => Ok(value),
                Ok(_) => Err("not a JSON object".to_owned()),
                Err(err) => Err(format!("not JSON ({err})")),
            },
        };
        match outcome {
            Ok(value) => {
                trace.push(format!("GET {url} → {what}"));
                return Ok((url.clone(), value));
            }
            Err(reason) => {
                trace.push(format!("GET {url} → {reason}"));
                attempts.push(format!("{url}: {reason}"));
            }
        }
    }
    Err(Misses { attempts, absent })
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_try_the_path_then_the_root() {
        let urls: Vec<String> =
            well_known_resource_urls(&Url::parse("https://mcp.example.com/mcp").unwrap())
                .iter()
                .map(Url::to_string)
                .collect();
        assert_eq!(
            urls,
            [
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            well_known_resource_urls(&Url::parse("http://localhost:3002/").unwrap()).len(),
            1
        );
    }
}
