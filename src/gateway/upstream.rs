//! The upstream MCP server: what it is (a command, or a Streamable HTTP URL), and one session's
//! connection to it.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::model::{InitializeRequestParams, InitializeResult, ServerPeerInfo, Tool};
use rmcp::service::{Peer, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData as McpError, RoleClient, RoleServer, ServiceExt};
use tokio::io::AsyncBufReadExt;

use super::health::Health;
use super::relay::Relay;
use crate::auth::validate::Caller;
use crate::server::bad_gateway::Unreachable;

/// Where the upstream MCP server is.
#[derive(Debug, Clone)]
pub enum Target {
    /// A command speaking MCP on stdin/stdout, started once per session.
    Command { program: String, args: Vec<String> },
    /// A Streamable HTTP endpoint.
    Http {
        url: String,
        /// Static headers (`--upstream-header`), and the bearer token (`--upstream-bearer-env`),
        /// never logged.
        headers: Vec<(HeaderName, HeaderValue)>,
        bearer: Option<String>,
    },
}

/// The upstream and how long its answers may take.
pub struct Upstream {
    pub target: Target,
    /// Longest wait for an answer (reset by each progress notification of that request).
    pub timeout: Duration,
    /// Numbers the sessions' connections, for the log lines of their children.
    sessions: AtomicU64,
    /// Whether it answered the latest attempt, for `/ready`.
    pub health: Arc<Health>,
    /// The tools its `tools/list` answers named, for the metrics' tool label.
    pub tools: KnownTools,
    /// The sessions' children, stopped with SIGTERM at shutdown.
    pub children: Children,
    /// One HTTP client for every session's upstream connection: its connection pool and TLS
    /// settings are shared (rmcp's default is a client per session, without a pool, which cost
    /// about 180 KiB per session and a new connection per request).
    http_client: std::sync::OnceLock<reqwest::Client>,
}

/// The process ids of the sessions' children. rmcp stops a session's child when the session
/// ends (stdin closed, SIGTERM, SIGKILL), but at shutdown the process exits before that
/// finishes, so the gateway sends SIGTERM to every child itself and waits for them.
#[derive(Default, Clone)]
pub struct Children(Arc<std::sync::Mutex<std::collections::HashSet<u32>>>);

/// A child in [`Children`] until this is dropped.
pub struct Child {
    pid: u32,
    children: Children,
}

impl Drop for Child {
    fn drop(&mut self) {
        self.children.lock().remove(&self.pid);
    }
}

impl Children {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u32>> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Counts `pid` among the children until the returned guard is dropped.
    pub(super) fn add(&self, pid: u32) -> Child {
        self.lock().insert(pid);
        Child {
            pid,
            children: self.clone(),
        }
    }

    /// Sends SIGTERM to every child, and waits until they are gone, at most `grace`.
    pub async fn stop(&self, grace: Duration) {
        let pids: Vec<u32> = self.lock().iter().copied().collect();
        for pid in &pids {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while pids.iter().any(|pid| running(*pid)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether process `pid` still runs (it exists and is not a zombie waiting to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// The upstream's tools as its `tools/list` answers showed them, up to [`KnownTools::MAX`]:
/// a tool the upstream named is its own label in the metrics, any other name is `other`, so a
/// client cannot grow the label set by calling made-up tools.
#[derive(Default)]
pub struct KnownTools(std::sync::RwLock<HashMap<String, Tool>>);

impl KnownTools {
    /// More tools than any real server lists; past it, new names are not labels.
    pub const MAX: usize = 1000;

    pub fn learn(&self, tools: impl IntoIterator<Item = Tool>) {
        let mut known = self.0.write().unwrap_or_else(|poison| poison.into_inner());
        for tool in tools {
            if known.len() < Self::MAX || known.contains_key(tool.name.as_ref()) {
                known.insert(tool.name.to_string(), tool);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<Tool> {
        self.0
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(name)
            .cloned()
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.describe())
    }
}

/// One session's connection: the upstream client, the upstream's `initialize` answer, and the
/// relay that brings the upstream's own messages to the client.
pub struct Connected {
    client: RunningService<RoleClient, Relay>,
    pub info: InitializeResult,
    pub relay: Relay,
    /// The session's child in [`Children`], while it runs.
    _child: Option<Child>,
    last_stderr: LastStderr,
}

impl Connected {
    /// [`Upstream::failure`], with a gone child's last stderr line, which usually says why.
    pub async fn failure(&self, upstream: &Upstream, error: &ServiceError) -> McpError {
        let gone = matches!(
            error,
            ServiceError::TransportClosed | ServiceError::TransportSend(_)
        );
        let last = match gone && matches!(upstream.target, Target::Command { .. }) {
            true => self.last_stderr.line().await,
            false => String::new(),
        };
        if last.is_empty() {
            return upstream.failure(error);
        }
        upstream.unavailable(format!(
            "{} is gone (its connection closed); its last stderr line: {last}",
            upstream.describe()
        ))
    }

    pub fn peer(&self) -> &Peer<RoleClient> {
        self.client.peer()
    }
}

impl Upstream {
    pub fn new(target: Target, timeout: Duration) -> Self {
        let health = Arc::new(Health::new(describe(&target)));
        Self {
            target,
            timeout,
            sessions: AtomicU64::new(0),
            health,
            tools: KnownTools::default(),
            children: Children::default(),
            http_client: std::sync::OnceLock::new(),
        }
    }

    /// Serves `relay` on `transport` (seen in order, see [`Relay::in_order`]): the upstream's
    /// `initialize` with the client's parameters.
    async fn initialize<T>(
        &self,
        relay: &Relay,
        transport: T,
    ) -> Result<RunningService<RoleClient, Relay>, Unreachable>
    where
        T: rmcp::transport::Transport<RoleClient> + Send + 'static,
    {
        relay
            .clone()
            .serve(relay.in_order(transport))
            .await
            .map_err(|error| {
                self.cannot_connect(format!("{} did not initialize: {error}", self.describe()))
            })
    }

    /// The HTTP client for the sessions' upstream connections. Redirects are not followed: the
    /// upstream is one configured URL, and the caller's headers must not go anywhere else.
    fn http_client(&self) -> &reqwest::Client {
        self.http_client.get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!(
                    "scalekit-mcp/",
                    env!("CARGO_PKG_VERSION"),
                    " gateway"
                ))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        })
    }

    /// A new session's number, for the log lines of its child.
    pub(super) fn next_session(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The upstream as named in messages: the command's program, or the URL (never a header).
    pub fn describe(&self) -> String {
        describe(&self.target)
    }

    /// Connects one session: starts the command (or opens an HTTP session) and initializes it
    /// with the client's own `initialize` parameters. `downstream` is the client, for what the
    /// upstream sends on its own. A failure is the client's 502 (504 past `--upstream-timeout`).
    pub async fn connect(
        &self,
        client_info: InitializeRequestParams,
        caller: Option<&Caller>,
        downstream: Peer<RoleServer>,
    ) -> Result<Connected, Unreachable> {
        let number = self.next_session();
        let relay = Relay::new(downstream, client_info);
        let mut child = None;
        let last_stderr = LastStderr::default();
        let connecting = async {
            match &self.target {
                Target::Command { program, args } => {
                    let transport = self.spawn(program, args, caller, number, &last_stderr)?;
                    child = transport.id().map(|pid| self.children.add(pid));
                    self.initialize(&relay, transport).await
                }
                Target::Http {
                    url,
                    headers,
                    bearer,
                } => {
                    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                        .custom_headers(forwarded_headers(headers, caller));
                    if let Some(bearer) = bearer {
                        config = config.auth_header(bearer.as_str());
                    }
                    let transport = StreamableHttpClientTransport::with_client(
                        self.http_client().clone(),
                        config,
                    );
                    self.initialize(&relay, transport).await
                }
            }
        };
        let client = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| {
                let message = format!(
                    "{} did not answer initialize within {} s (--upstream-timeout)",
                    self.describe(),
                    self.timeout.as_secs()
                );
                tracing::error!("{message}");
                Unreachable::gateway_timeout(message)
            });
        let client = match client.and_then(|connected| connected) {
            Ok(client) => {
                self.health.reachable();
                client
            }
            Err(error) => {
                self.health.unreachable(&error.message);
                return Err(error);
            }
        };
        let info = client
            .peer()
            .peer_info()
            .map(|info| initialize_result(&info))
            .ok_or_else(|| {
                self.cannot_connect(format!("{} sent no initialize result", self.describe()))
            })?;
        Ok(Connected {
            client,
            info,
            relay,
            _child: child,
            last_stderr,
        })
    }

    /// Starts the command for session `number`, with the caller in its environment and its
    /// stderr in our log.
    fn spawn(
        &self,
        program: &str,
        args: &[String],
        caller: Option<&Caller>,
        number: u64,
        last_stderr: &LastStderr,
    ) -> Result<TokioChildProcess, Unreachable> {
        let (transport, stderr) = TokioChildProcess::builder(command(program, args, caller))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                self.cannot_connect(format!("cannot start {}: {error}", self.describe()))
            })?;
        if let Some(stderr) = stderr {
            tokio::spawn(log_stderr(stderr, number, last_stderr.clone()));
        }
        Ok(transport)
    }

    /// The error a client gets when the upstream cannot be reached or started.
    fn unavailable(&self, message: String) -> McpError {
        tracing::error!("{message}");
        McpError::internal_error(message, None)
    }

    /// A session's failure to reach or start the upstream: the client's 502.
    fn cannot_connect(&self, message: String) -> Unreachable {
        tracing::error!("{message}");
        Unreachable::bad_gateway(message)
    }

    /// The error a client gets when a forwarded request fails: the upstream's own JSON-RPC
    /// error as it is, anything else named.
    pub fn failure(&self, error: &ServiceError) -> McpError {
        match error {
            ServiceError::McpError(error) => error.clone(),
            ServiceError::Timeout { timeout } => McpError::internal_error(
                format!(
                    "{} did not answer within {} s (--upstream-timeout)",
                    self.describe(),
                    timeout.as_secs()
                ),
                None,
            ),
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                if let Some(reason) = self.not_reached(error) {
                    // No connection at all: the upstream is down for every session, which then
                    // get 502 at once until it answers again (logged there, once).
                    self.health.unreachable(&reason);
                    return McpError::internal_error(reason, None);
                }
                self.unavailable(format!(
                    "{} is gone (its connection closed): {error}",
                    self.describe()
                ))
            }
            other => McpError::internal_error(format!("{}: {other}", self.describe()), None),
        }
    }

    /// Why an HTTP upstream is unreachable, when `error` is a failure to connect to it at all
    /// (refused, no route, DNS): unlike an error it answered with, or a session it lost, that
    /// holds for every session. The reason never holds the URL's password.
    fn not_reached(&self, error: &ServiceError) -> Option<String> {
        let ServiceError::TransportSend(error) = error else {
            return None;
        };
        let error = error
            .error
            .downcast_ref::<StreamableHttpError<reqwest::Error>>()?;
        let StreamableHttpError::Client(error) = error else {
            return None;
        };
        if !error.is_connect() {
            return None;
        }
        // reqwest's own message names the URL; its sources say what happened.
        let cause = std::error::Error::source(error)
            .map(crate::error::error_chain)
            .unwrap_or_else(|| "cannot connect".to_owned());
        Some(format!("{} is unreachable: {cause}", self.describe()))
    }
}

/// `target` as named in messages: see [`Upstream::describe`].
fn describe(target: &Target) -> String {
    match target {
        Target::Command { program, .. } => format!("upstream command {program}"),
        Target::Http { url, .. } => format!("upstream {}", without_password(url)),
    }
}

/// `url` as it may be logged: a password in it replaced by `***`.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The upstream's `initialize` answer, to give the client as ours.
fn initialize_result(upstream: &ServerPeerInfo) -> InitializeResult {
    let mut result = InitializeResult::new(upstream.capabilities.clone());
    result.protocol_version = upstream.protocol_version.clone();
    if let Some(server_info) = &upstream.server_info {
        result.server_info = server_info.clone();
    }
    result.instructions = upstream.instructions.clone();
    result.meta = upstream.meta.clone();
    result
}

/// The upstream command, to be started: stopped when dropped and when the gateway dies
/// ([`super::launcher`]), without the gateway's own variables, with the caller (if the child
/// is the caller's alone) in its environment.
pub fn command(program: &str, args: &[String], caller: Option<&Caller>) -> tokio::process::Command {
    let mut command = super::launcher::command(program, args);
    command.kill_on_drop(true);
    // The gateway's own secrets and settings stay with the gateway.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("SCALEKIT_MCP_") || name.starts_with("SK_") {
            command.env_remove(name.as_ref());
        }
    }
    // The allocator setting the `serve` binary gave itself (see its `allocator` module, which
    // marks it so) is not the user's, so not the command's.
    if std::env::var_os("SCALEKIT_MCP_PURGE_DELAY_SET").is_some() {
        command.env_remove("MIMALLOC_PURGE_DELAY");
    }
    for (name, value) in forwarded_environment(caller) {
        command.env(name, value);
    }
    command
}

/// The caller as environment variables of a command upstream.
fn forwarded_environment(caller: Option<&Caller>) -> Vec<(&'static str, String)> {
    let Some(caller) = caller else {
        return Vec::new();
    };
    vec![
        ("MCP_FORWARDED_USER", caller.sub.clone().unwrap_or_default()),
        (
            "MCP_FORWARDED_ORG_ID",
            caller.org_id.clone().unwrap_or_default(),
        ),
        (
            "MCP_FORWARDED_CLIENT_ID",
            caller.client_id.clone().unwrap_or_default(),
        ),
        ("MCP_FORWARDED_SCOPES", caller.scopes.join(" ")),
    ]
}

/// The names of the caller's headers to an HTTP upstream, in [`forwarded_environment`]'s order.
const FORWARDED_HEADER_NAMES: [HeaderName; 4] = [
    HeaderName::from_static("x-forwarded-user"),
    HeaderName::from_static("x-forwarded-org-id"),
    HeaderName::from_static("x-forwarded-client-id"),
    HeaderName::from_static("x-forwarded-scopes"),
];

/// The headers of an HTTP upstream: the configured ones, then the caller's `X-Forwarded-*`
/// (which no configured header can replace).
pub fn forwarded_headers(
    configured: &[(HeaderName, HeaderValue)],
    caller: Option<&Caller>,
) -> HashMap<HeaderName, HeaderValue> {
    let mut headers: HashMap<HeaderName, HeaderValue> = configured
        .iter()
        .filter(|(name, _)| !FORWARDED_HEADER_NAMES.contains(name))
        .cloned()
        .collect();
    headers.extend(caller_headers(caller));
    headers
}

/// The caller's `X-Forwarded-*` headers alone, built straight from its claims: what every
/// request to an HTTP upstream adds to the headers fixed at startup (which have none of these
/// names, see [`forwarded_headers`]).
pub fn caller_headers(caller: Option<&Caller>) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    let values = caller.map(|caller| {
        [
            caller.sub.as_deref().and_then(header_value),
            caller.org_id.as_deref().and_then(header_value),
            caller.client_id.as_deref().and_then(header_value),
            header_value(&caller.scopes.join(" ")),
        ]
    });
    FORWARDED_HEADER_NAMES
        .into_iter()
        .zip(values.into_iter().flatten())
        .filter_map(|(name, value)| Some((name, value?)))
}

/// A claim as a header's value: none for an empty claim (a claim the token does not have is no
/// header, not an empty one) or one a header cannot carry.
fn header_value(claim: &str) -> Option<HeaderValue> {
    if claim.is_empty() {
        return None;
    }
    HeaderValue::from_str(claim).ok()
}

/// Writes each line a child writes on stderr to our log, under its session's number, and keeps
/// the last one.
async fn log_stderr(stderr: tokio::process::ChildStderr, session: u64, last: LastStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "upstream", session, "{line}");
        *last
            .line
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = line;
    }
    last.closed.cancel();
}

/// A session child's last stderr line, for the error that reports it gone; `closed` once its
/// stderr is.
#[derive(Clone, Default)]
pub struct LastStderr {
    line: Arc<std::sync::Mutex<String>>,
    closed: tokio_util::sync::CancellationToken,
}

impl LastStderr {
    /// The last line, once stderr has closed (or after a moment: a child's stderr can outlive
    /// its stdout).
    async fn line(&self) -> String {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.closed.cancelled()).await;
        self.line
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            sub: Some("usr_1".into()),
            org_id: Some("org_2".into()),
            client_id: Some("skc_3".into()),
            scopes: vec!["mcp:tools".into(), "admin".into()],
            ..Caller::default()
        }
    }

    #[test]
    fn a_password_in_the_upstream_url_is_never_described() {
        let target = Target::Http {
            url: "https://svc:s3cret@mcp.example.com/mcp".into(),
            headers: Vec::new(),
            bearer: None,
        };
        let described = Upstream::new(target, Duration::from_secs(1)).describe();
        assert_eq!(described, "upstream https://svc:***@mcp.example.com/mcp");
    }

    #[test]
    fn configured_headers_cannot_replace_the_callers() {
        let configured = vec![
            (
                HeaderName::from_static("x-forwarded-user"),
                HeaderValue::from_static("spoofed"),
            ),
            (
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_static("k"),
            ),
        ];
        let headers = forwarded_headers(&configured, Some(&caller()));
        let header = |headers: &HashMap<HeaderName, HeaderValue>, name: &'static str| {
            headers.get(&HeaderName::from_static(name)).cloned()
        };
        assert_eq!(header(&headers, "x-forwarded-user").unwrap(), "usr_1");
        assert_eq!(header(&headers, "x-forwarded-org-id").unwrap(), "org_2");
        assert_eq!(header(&headers, "x-forwarded-client-id").unwrap(), "skc_3");
        assert_eq!(
            header(&headers, "x-forwarded-scopes").unwrap(),
            "mcp:tools admin"
        );
        assert_eq!(header(&headers, "x-api-key").unwrap(), "k");
        let anonymous = forwarded_headers(&configured, None);
        assert_eq!(
            header(&anonymous, "x-forwarded-user"),
            None,
            "a spoofed value is removed"
        );
        let mut no_org = caller();
        no_org.org_id = None;
        let headers = forwarded_headers(&[], Some(&no_org));
        assert_eq!(
            header(&headers, "x-forwarded-org-id"),
            None,
            "no org, no header"
        );
        assert_eq!(header(&headers, "x-forwarded-user").unwrap(), "usr_1");

        // What each request adds to the headers fixed at startup: the caller's, and no others.
        let names = |caller: Option<&Caller>| -> Vec<String> {
            caller_headers(caller)
                .map(|(name, _)| name.to_string())
                .collect()
        };
        assert_eq!(
            names(Some(&caller())),
            [
                "x-forwarded-user",
                "x-forwarded-org-id",
                "x-forwarded-client-id",
                "x-forwarded-scopes"
            ]
        );
        assert_eq!(
            names(Some(&no_org)),
            [
                "x-forwarded-user",
                "x-forwarded-client-id",
                "x-forwarded-scopes"
            ]
        );
        assert!(names(None).is_empty());
    }
}
