//! One MCP session for `call` and `tools`: connect, run an operation, close — with the token
//! rules and the exit codes of DESIGN.md.
//!
//! - Over Streamable HTTP (rmcp's reqwest client) with a bearer token: the one given with
//!   `--token` / SCALEKIT_MCP_TOKEN (used as given: never stored, never refreshed, never a reason
//!   for discovery), else the stored login's, refreshed when it is within a minute of expiry.
//!   With neither, the server is called without a token: a server that needs none just works,
//!   and one that answers 401 gets the exact `login` command to run.
//! - Over stdio, when a command follows `--`: the server runs as a child; MCP uses no OAuth there.
//!
//! A 401 with stored credentials gets one forced refresh and one retry (a token revoked or
//! rotated early looks fresh locally). Without `--login`, a 401 that refreshing cannot fix names
//! the `login` command, and a 403 names the scope the server asked for and the `login --scope`
//! command that gets it. With `--login` ([`Connection::reauthorize`]) the client does it itself:
//! a 401 runs the login (discovery from that very refusal), a 403 `insufficient_scope` a step-up
//! to the union of the scopes held and the ones asked for (MCP authorization, "Scope Challenge
//! Handling"); each at most once per session, so a server that keeps asking cannot loop the
//! client, and the operation is retried after each. Everything but the browser login runs under
//! one deadline (`--timeout`), which starts again after a login.

use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{Peer, RoleClient, ServiceError, ServiceExt};
use tokio::io::AsyncReadExt;

use super::home::Home;
use super::oauth::{Reauthorize, force_refresh, login_after_refusal, step_up, valid_access_token};
use super::secret::Secret;
use crate::error::{Exit, ExitError, error_chain, exit_code_for};

/// Where the server is.
#[derive(Debug, Clone)]
pub enum Target {
    /// A Streamable HTTP endpoint (canonical URL).
    Http(String),
    /// A stdio server: program and arguments.
    Stdio(Vec<String>),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Http(url) => url.clone(),
            Target::Stdio(command) => format!("the stdio server `{}`", command.join(" ")),
        }
    }
}

/// Which token a session sends, and what may be done when it is refused.
#[derive(Debug, Clone)]
enum Credentials {
    /// No token (stdio, or a server never logged in to).
    None,
    /// `--token` / SCALEKIT_MCP_TOKEN: used as given.
    Given,
    /// The stored login: refreshable.
    Stored(Home),
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct Connection {
    pub target: Target,
    /// A token given on the command line or in the environment.
    pub token: Option<Secret>,
    /// The deadline for the whole session, refresh included.
    pub timeout: Duration,
    /// Log in, or step up the scopes, when the server asks (`--login`); `None` reports the
    /// command to run instead (`--no-login`).
    pub reauthorize: Option<Reauthorize>,
}

fn exit(exit: Exit, message: String) -> anyhow::Error {
    ExitError { exit, message }.into()
}

/// Runs `operation` in a session with the server and closes it. The operation may run twice
/// (after a refresh), so it must not consume its inputs.
pub async fn with_session<T>(
    connection: &Connection,
    operation: impl AsyncFn(&Peer<RoleClient>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut deadline = tokio::time::Instant::now() + connection.timeout;
    let (mut credentials, mut token) =
        within(connection, deadline, resolve_credentials(connection)).await??;
    let mut refreshed = false;
    let mut logged_in = false;
    let mut stepped_up = false;
    loop {
        let attempt = within(
            connection,
            deadline,
            attempt(&connection.target, token.as_ref(), &operation),
        )
        .await?;
        let refusal = match attempt {
            Ok(value) => return Ok(value),
            Err(Failure::Other(error)) => return Err(error),
            Err(Failure::Refused(refusal)) => refusal,
        };
        let Target::Http(url) = &connection.target else {
            return Err(exit(
                Exit::Auth,
                format!("the stdio server refused the call: {}", refusal.challenge),
            ));
        };
        let login = connection.reauthorize.as_ref();
        // A 401 of the stored token: one forced refresh. When that fails too and --login is on,
        // the login below takes over.
        if let Credentials::Stored(home) = &credentials
            && !refusal.forbidden
            && !refreshed
        {
            refreshed = true;
            tracing::debug!("the server refused the stored token; refreshing once");
            match within(connection, deadline, force_refresh(home, url)).await? {
                Ok(fresh) => {
                    token = Some(fresh);
                    continue;
                }
                Err(error) if login.is_none() || exit_code_for(&error) != Exit::Auth => {
                    return Err(error);
                }
                Err(error) => tracing::debug!("the refresh failed ({error:#}); logging in"),
            }
        }
        // A 401 that a refresh cannot cure: the login, once.
        if !refusal.forbidden
            && !logged_in
            && !matches!(credentials, Credentials::Given)
            && let Some(options) = login
        {
            logged_in = true;
            let home = Home::locate()?;
            token = Some(login_after_refusal(&home, url, Some(&refusal.challenge), options).await?);
            credentials = Credentials::Stored(home);
            // The new token is fresh: a refusal of it is not cured by a refresh.
            refreshed = true;
            deadline = tokio::time::Instant::now() + connection.timeout;
            continue;
        }
        // Where `--login` would have helped, the message says so.
        let hint = if login.is_none() {
            " (or pass --login)"
        } else {
            ""
        };
        match (&credentials, refusal.forbidden) {
            (Credentials::Given, true) => return Err(forbidden(url, &refusal, &[], "")),
            (Credentials::Given, false) => {
                return Err(exit(
                    Exit::Auth,
                    format!(
                        "{url} refused the token given with --token / SCALEKIT_MCP_TOKEN{} \
                         (a given token is used as is, never refreshed)",
                        refusal.reason()
                    ),
                ));
            }
            (Credentials::Stored(home), true) => {
                let required = refusal.scopes();
                if let Some(options) = login
                    && !stepped_up
                    && !required.is_empty()
                {
                    stepped_up = true;
                    token = Some(step_up(home, url, &required, options).await?);
                    deadline = tokio::time::Instant::now() + connection.timeout;
                    continue;
                }
                let granted = home
                    .load()?
                    .servers
                    .get(url)
                    .map(|record| record.scopes.clone())
                    .unwrap_or_default();
                if stepped_up {
                    return Err(exit(
                        Exit::Auth,
                        format!(
                            "{url} still refuses the token for lack of the scope {} after authorizing \
                             again with it{}: the authorization server did not grant it, or the server \
                             asks for a scope it never accepts; ask its operator (not retrying, so this \
                             cannot loop)",
                            required.join(" "),
                            refusal.reason()
                        ),
                    ));
                }
                return Err(forbidden(url, &refusal, &granted, hint));
            }
            (Credentials::None, true) => return Err(forbidden(url, &refusal, &[], hint)),
            (Credentials::Stored(_), false) => {
                return Err(exit(
                    Exit::Auth,
                    format!(
                        "{url} refused the stored token even after a refresh{}: run scalekit-mcp login {url}{hint}",
                        refusal.reason()
                    ),
                ));
            }
            (Credentials::None, false) => {
                return Err(exit(
                    Exit::Auth,
                    format!(
                        "{url} requires authentication{}: run scalekit-mcp login {url}{hint}",
                        refusal.reason()
                    ),
                ));
            }
        }
    }
}

/// `future`, or exit 4 when the session's deadline passes first.
async fn within<F: Future>(
    connection: &Connection,
    deadline: tokio::time::Instant,
    future: F,
) -> anyhow::Result<F::Output> {
    tokio::time::timeout_at(deadline, future)
        .await
        .map_err(|_| {
            exit(
                Exit::Unreachable,
                format!(
                    "{} did not answer within {}: raise --timeout if it is just slow",
                    connection.target.describe(),
                    humanize(connection.timeout)
                ),
            )
        })
}

/// The `login --scope` command that gets what a 403 asked for, keeping the scopes `granted`
/// already (a login replaces the token, and the new one must still do what the old one did).
fn forbidden(url: &str, refusal: &Refusal, granted: &[String], hint: &str) -> anyhow::Error {
    let required = refusal.scopes();
    if required.is_empty() {
        return exit(
            Exit::Auth,
            format!(
                "{url} refused the token for lack of a scope it did not name{}: ask its operator \
                 which scope, then run scalekit-mcp login {url} --scope <SCOPE>",
                refusal.reason()
            ),
        );
    }
    let flags: Vec<String> = super::oauth::scope_union(granted, &required)
        .iter()
        .map(|scope| format!("--scope {scope}"))
        .collect();
    exit(
        Exit::Auth,
        format!(
            "the token lacks the scope {} that {url} requires{}: run scalekit-mcp login {url} {}{hint}",
            required.join(" "),
            refusal.reason(),
            flags.join(" ")
        ),
    )
}

/// The credentials for the target and the token to start with.
async fn resolve_credentials(
    connection: &Connection,
) -> anyhow::Result<(Credentials, Option<Secret>)> {
    let Target::Http(url) = &connection.target else {
        return Ok((Credentials::None, None));
    };
    if let Some(token) = &connection.token {
        return Ok((Credentials::Given, Some(token.clone())));
    }
    let home = Home::locate()?;
    if !home.load()?.servers.contains_key(url) {
        return Ok((Credentials::None, None));
    }
    let token = valid_access_token(&home, url).await?;
    Ok((Credentials::Stored(home), Some(token)))
}

/// A 401 or 403 from the server.
#[derive(Debug)]
struct Refusal {
    forbidden: bool,
    challenge: String,
    scope: Option<String>,
    description: Option<String>,
}

impl Refusal {
    fn from_challenge(challenge: &str) -> Self {
        let error = challenge_attribute(challenge, "error");
        Refusal {
            forbidden: error.as_deref() == Some("insufficient_scope"),
            challenge: challenge.to_owned(),
            scope: challenge_attribute(challenge, "scope"),
            description: challenge_attribute(challenge, "error_description"),
        }
    }

    /// The scopes the challenge asks for.
    fn scopes(&self) -> Vec<String> {
        self.scope
            .as_deref()
            .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// ` (the server's description)` or nothing.
    fn reason(&self) -> String {
        self.description
            .as_deref()
            .map(|description| format!(" ({description})"))
            .unwrap_or_default()
    }
}

enum Failure {
    Refused(Refusal),
    Other(anyhow::Error),
}

/// The value of `name="value"` (or `name=token`) in a `WWW-Authenticate` challenge.
pub fn challenge_attribute(challenge: &str, name: &str) -> Option<String> {
    let mut rest = challenge;
    while let Some(position) = rest.find(name) {
        let before = rest[..position].chars().next_back();
        let after = &rest[position + name.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        if let Some(quoted) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => return Some(out),
                    c => out.push(c),
                }
            }
            return Some(out);
        }
        let end = value.find([',', ' ']).unwrap_or(value.len());
        return Some(value[..end].to_owned());
    }
    None
}

/// One connection, the operation, and a polite close.
async fn attempt<T>(
    target: &Target,
    token: Option<&Secret>,
    operation: &impl AsyncFn(&Peer<RoleClient>) -> anyhow::Result<T>,
) -> Result<T, Failure> {
    let (service, stderr) = connect(target, token).await?;
    let result = operation(service.peer()).await;
    // Ends the session (stateful HTTP: DELETE; stdio: close stdin and wait for the child).
    let _ = tokio::time::timeout(Duration::from_secs(2), service.cancel()).await;
    result.map_err(|error| classify(target, error, stderr))
}

type Service = RunningService<RoleClient, ClientConfig>;

/// The last bytes the stdio child wrote to stderr, for error messages.
type ChildStderr = Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>;

/// What `initialize` says about us. It offers the newest protocol version that still has an
/// `initialize` handshake (2025-11-25), not rmcp's default, its newest of all: that is
/// 2026-07-28, the revision that replaced the handshake with per-request metadata, so offering it
/// in a handshake contradicts itself. Servers answer such an offer with a handshake version
/// anyway (rmcp's do), so nothing is lost; and a server that checks the offer (the conformance
/// suite's `initialize` scenario) grades 2026-07-28 a version mismatch.
fn client_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("scalekit-mcp", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

async fn connect(
    target: &Target,
    token: Option<&Secret>,
) -> Result<(Service, ChildStderr), Failure> {
    match target {
        Target::Http(url) => {
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            if let Some(token) = token {
                config = config.auth_header(token.expose());
            }
            let transport = StreamableHttpClientTransport::from_config(config);
            let service = client_info()
                .serve(transport)
                .await
                .map_err(|error| initialize_failure(target, error, &None))?;
            Ok((service, None))
        }
        Target::Stdio(argv) => {
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| Failure::Other(ExitError::usage("no command after --").into()))?;
            let mut command = tokio::process::Command::new(program);
            command
                .args(args)
                .env_remove("SCALEKIT_MCP_TOKEN")
                .kill_on_drop(true);
            let (transport, stderr) = TokioChildProcess::builder(command)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|err| {
                    Failure::Other(exit(
                        Exit::Unreachable,
                        format!("cannot start {}: {err}", target.describe()),
                    ))
                })?;
            let collected = stderr.map(collect_tail);
            let service = client_info()
                .serve(transport)
                .await
                .map_err(|error| initialize_failure(target, error, &collected))?;
            Ok((service, collected))
        }
    }
}

/// Reads the child's stderr so it never blocks on a full pipe, keeping the last 4 KiB.
fn collect_tail(
    mut stderr: tokio::process::ChildStderr,
) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    const KEEP: usize = 4096;
    let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = tail.clone();
    tokio::spawn(async move {
        let mut buffer = [0u8; 1024];
        while let Ok(read) = stderr.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            let mut tail = sink.lock().unwrap_or_else(|poison| poison.into_inner());
            tail.extend_from_slice(&buffer[..read]);
            if tail.len() > KEEP {
                let excess = tail.len() - KEEP;
                tail.drain(..excess);
            }
        }
    });
    tail
}

fn stderr_note(stderr: &ChildStderr) -> String {
    let Some(tail) = stderr else {
        return String::new();
    };
    let tail = tail.lock().unwrap_or_else(|poison| poison.into_inner());
    let text = String::from_utf8_lossy(&tail);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("\nits stderr ended with:\n{text}")
    }
}

fn initialize_failure(
    target: &Target,
    error: ClientInitializeError,
    stderr: &ChildStderr,
) -> Failure {
    if let Some(challenge) = error.auth_challenge() {
        return Failure::Refused(Refusal::from_challenge(challenge));
    }
    if let Some(answer) = unchallenged_refusal(&error) {
        return Failure::Other(exit(
            Exit::Auth,
            format!(
                "{} refused the request without a WWW-Authenticate challenge ({answer}): check \
                 the token, or run scalekit-mcp login {}",
                target.describe(),
                target.describe()
            ),
        ));
    }
    // The transport's own error says what happened (connection refused, DNS, TLS, HTTP status);
    // rmcp's wrapper around it only names its internal types.
    let cause = match &error {
        ClientInitializeError::TransportError { error, .. } => {
            match error
                .error
                .downcast_ref::<StreamableHttpError<reqwest::Error>>()
            {
                Some(StreamableHttpError::Client(reqwest)) => error_chain(reqwest),
                _ => error_chain(error.error.as_ref()),
            }
        }
        other => error_chain(other),
    };
    let cause = cause.strip_prefix("Client error: ").unwrap_or(&cause);
    Failure::Other(exit(
        Exit::Unreachable,
        format!(
            "cannot start an MCP session with {}: {cause}{}",
            target.describe(),
            stderr_note(stderr)
        ),
    ))
}

/// A 401 or 403 that came without a `WWW-Authenticate` challenge (a proxy, or a server that does
/// not follow RFC 6750): rmcp reports it as an unexpected answer, `HTTP 401 Unauthorized: <body>`,
/// but it is still a refusal of the credentials, so it exits 3 (not 4: retrying will not help).
fn unchallenged_refusal(error: &ClientInitializeError) -> Option<String> {
    let ClientInitializeError::TransportError { error, .. } = error else {
        return None;
    };
    match error
        .error
        .downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        // The status line only: the body is the server's, and a careless one may echo the
        // request's Authorization header back.
        Some(StreamableHttpError::UnexpectedServerResponse(answer))
            if answer.starts_with("HTTP 401") || answer.starts_with("HTTP 403") =>
        {
            let status = answer
                .split_once(':')
                .map_or(answer.as_ref(), |(status, _)| status);
            Some(status.trim().to_owned())
        }
        _ => None,
    }
}

/// Sorts an operation's error: refusals (retried or explained), errors that already carry an
/// exit code, the server's JSON-RPC errors, and transport failures (exit 4).
/// Whether the server refused an operation for the token's sake (401 / 403 with a challenge):
/// [`with_session`] turns such an error into the login command that fixes it.
pub fn is_refusal(error: &ServiceError) -> bool {
    error.auth_challenge().is_some()
}

fn classify(target: &Target, error: anyhow::Error, stderr: ChildStderr) -> Failure {
    let Some(service_error) = error.downcast_ref::<ServiceError>() else {
        return Failure::Other(error);
    };
    if let Some(challenge) = service_error.auth_challenge() {
        return Failure::Refused(Refusal::from_challenge(challenge));
    }
    let (code, message) = match service_error {
        ServiceError::McpError(data) if data.code.0 == -32602 => (
            Exit::Usage,
            format!(
                "{} refused the arguments: {}",
                target.describe(),
                data.message
            ),
        ),
        ServiceError::McpError(data) => (
            Exit::Unreachable,
            format!(
                "{} answered with an error: {} (JSON-RPC code {})",
                target.describe(),
                data.message,
                data.code.0
            ),
        ),
        other => (
            Exit::Unreachable,
            format!(
                "talking to {} failed: {}{}",
                target.describe(),
                error_chain(other),
                stderr_note(&stderr)
            ),
        ),
    };
    Failure::Other(exit(code, message))
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() != 0 || duration.as_secs() == 0 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}s", duration.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_attributes_are_read() {
        let challenge = r#"Bearer realm="OAuth", resource_metadata="http://x/.well-known/oauth-protected-resource", scope="mcp:tools admin", error="insufficient_scope", error_description="missing required scope: admin""#;
        assert_eq!(
            challenge_attribute(challenge, "scope").as_deref(),
            Some("mcp:tools admin")
        );
        assert_eq!(
            challenge_attribute(challenge, "error").as_deref(),
            Some("insufficient_scope")
        );
        assert_eq!(
            challenge_attribute(challenge, "error_description").as_deref(),
            Some("missing required scope: admin")
        );
        assert_eq!(
            challenge_attribute(challenge, "realm").as_deref(),
            Some("OAuth")
        );
        assert_eq!(
            challenge_attribute("Bearer error=invalid_token", "error").as_deref(),
            Some("invalid_token")
        );
        assert_eq!(challenge_attribute("Bearer realm=\"x\"", "scope"), None);
        let refusal = Refusal::from_challenge(challenge);
        assert!(refusal.forbidden);
        let message = format!(
            "{:#}",
            forbidden("http://x/", &refusal, &[], " (or pass --login)")
        );
        assert!(
            message.ends_with(
                "run scalekit-mcp login http://x/ --scope mcp:tools --scope admin (or pass --login)"
            ),
            "{message}"
        );
        // The login command keeps the scopes the token has.
        let granted = ["openid".to_owned(), "admin".to_owned()];
        let message = format!("{:#}", forbidden("http://x/", &refusal, &granted, ""));
        assert!(
            message.ends_with("login http://x/ --scope openid --scope admin --scope mcp:tools"),
            "{message}"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(30)), "30s");
        assert_eq!(humanize(Duration::from_millis(250)), "250ms");
    }
}
