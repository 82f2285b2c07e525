//! `serve -- <command>` and `serve --upstream <url>`: the OAuth checks of `serve` in front of an
//! MCP server someone else wrote, run as a child process (stdio) or reached over Streamable HTTP.
//!
//! [`Gateway`] is an rmcp [`ServerHandler`] that answers nothing itself: each MCP session
//! (rmcp clones the handler once per session) connects to the upstream at `initialize` with the
//! client's own `initialize` parameters, and from then on every request is sent upstream as it
//! came, with the caller added under `_meta["scalekit-mcp/caller"]`, and the upstream's answer
//! (or JSON-RPC error) goes back unchanged. What the upstream sends on its own — progress, log
//! messages, list changes, sampling, elicitation, roots — goes to the client through
//! [`relay::Relay`]. The client's `Authorization` header never reaches the upstream: the
//! upstream connection is this process's own.
//!
//! Served over HTTP, a session is passed through below rmcp: in front of a command, one child
//! per session, message by message ([`child_sessions`]; the caller is in the child's environment
//! too: `MCP_FORWARDED_*`); in front of an HTTP upstream, one upstream session per session, at
//! the HTTP level ([`pass_through`]; the caller in `X-Forwarded-*` headers). [`Gateway`] relays
//! only when the gateway itself speaks stdio (`--transport stdio`), where there is one session.
//! `--stateless` forwards every request on one shared upstream session ([`stateless`]).
//!
//! An `initialize` that cannot reach or start the upstream is an HTTP 502 (504 past
//! `--upstream-timeout`), and while an HTTP upstream is known down a session's requests get 502
//! before the endpoint sees them (`server::bad_gateway`). A failure found once a request's 200
//! has started can only be a JSON-RPC error inside its stream.

pub mod child_sessions;
pub mod health;
mod http_client;
pub mod launcher;
mod link;
mod message;
pub mod pass_through;
mod relay;
pub mod stateless;
pub mod upstream;

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::Request as HttpRequest;
use axum::response::Response as HttpResponse;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelledNotificationParam, ClientNotification,
    ClientRequest, CompleteRequestParams, CompleteResult, CustomNotification, CustomRequest,
    CustomResult, GetExtensions, GetMeta, GetPromptRequestParams, GetPromptResponse,
    InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, Request,
    RequestOptionalParam, ServerResult, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::json;

use relay::ProgressRoute;

use crate::auth::validate::Caller;
use crate::config::ServeArgs;
use crate::error::ExitError;
use crate::server::OwnEndpoint;
pub use upstream::Upstream;

/// The [`OwnEndpoint`] that answers each request with `shared`'s `answer` (an error is an
/// answer too, so it never fails): the endpoint of each of the gateway's modes.
fn own_endpoint<S, A, F>(shared: Arc<S>, answer: A) -> OwnEndpoint
where
    S: Send + Sync + 'static,
    A: Fn(Arc<S>, HttpRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let endpoint = tower::service_fn(move |request: HttpRequest| {
        let answered = answer(shared.clone(), request);
        async move { Ok(answered.await) }
    });
    tower::util::BoxCloneSyncService::new(endpoint)
}

/// The upstream `serve`'s gateway flags name, checked; `None` when they name none (the built-in
/// tools are served).
fn has_session_store(args: &ServeArgs) -> bool {
    args.session_store
        .as_deref()
        .is_some_and(|url| !url.trim().is_empty())
}

pub fn upstream_of(args: &ServeArgs) -> Result<Option<Upstream>, ExitError> {
    let gateway = &args.gateway;
    let url = gateway
        .upstream
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty());
    let target = match (url, gateway.upstream_command.split_first()) {
        (None, None) => {
            if !gateway.upstream_headers.is_empty() || gateway.upstream_bearer_env.is_some() {
                return Err(ExitError::usage(
                    "--upstream-header and --upstream-bearer-env need --upstream URL",
                ));
            }
            return Ok(None);
        }
        (Some(_), Some(_)) => {
            return Err(ExitError::usage(
                "both --upstream and a command after --: serve one upstream, not two",
            ));
        }
        _ if has_session_store(args) && !args.stateless => {
            // A session's upstream (a child process, or an upstream session) lives on the
            // replica that opened it; another replica taking the session over would start a
            // new one, with none of its state.
            return Err(ExitError::usage(
                "--session-store cannot move a gateway's sessions between replicas: each holds \
                 an upstream session (or a child process) on the replica that opened it. Use \
                 --stateless (one upstream session or child per replica, shared by every \
                 caller), or send each client to one replica at the load balancer (nginx: \
                 ip_hash) without --session-store",
            ));
        }
        (None, Some((program, rest))) => {
            if !gateway.upstream_headers.is_empty() || gateway.upstream_bearer_env.is_some() {
                return Err(ExitError::usage(
                    "--upstream-header and --upstream-bearer-env are for an HTTP upstream \
                     (--upstream URL), not a command",
                ));
            }
            if !runnable(program) {
                return Err(ExitError::usage(format!(
                    "the upstream command {program:?} is not a file nor on PATH: check the command \
                     after -- (e.g. -- npx -y @modelcontextprotocol/server-everything)"
                )));
            }
            upstream::Target::Command {
                program: program.clone(),
                args: rest.to_vec(),
            }
        }
        (Some(url), None) => http_target(url, gateway)?,
    };
    Ok(Some(Upstream::new(target, gateway.upstream_timeout.0)))
}

/// Whether `program` names a file (a path) or a file in a `PATH` directory, as the shell would
/// find it: checked at startup, so that a typo stops `serve` instead of failing every session.
fn runnable(program: &str) -> bool {
    let path = std::path::Path::new(program);
    if path.components().count() > 1 {
        return path.is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|directory| directory.join(program).is_file())
    })
}

/// `--upstream` with its headers and bearer token, checked.
fn http_target(
    url: &str,
    gateway: &crate::config::GatewayArgs,
) -> Result<upstream::Target, ExitError> {
    let parsed = url::Url::parse(url).map_err(|error| {
        ExitError::usage(format!(
            "--upstream {url:?} is not a URL ({error}): e.g. http://127.0.0.1:8000/mcp"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ExitError::usage(format!(
            "--upstream {url:?} must be an http:// or https:// URL"
        )));
    }
    let mut headers = Vec::new();
    for header in &gateway.upstream_headers {
        let parsed = header.split_once(':').and_then(|(name, value)| {
            let name = http::HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            let value = http::HeaderValue::from_str(value.trim()).ok()?;
            Some((name, value))
        });
        match parsed {
            Some((name, _)) if name == http::header::AUTHORIZATION => {
                return Err(ExitError::usage(
                    "--upstream-header cannot set Authorization: use --upstream-bearer-env VAR, \
                     which keeps the secret off the command line",
                ));
            }
            Some(header) => headers.push(header),
            None => {
                // The value may be a secret: only the name is repeated.
                let name = header.split(':').next().unwrap_or_default().trim();
                return Err(ExitError::usage(format!(
                    "--upstream-header for {name:?} is not 'Name: value' with a valid name and value"
                )));
            }
        }
    }
    let bearer = match &gateway.upstream_bearer_env {
        None => None,
        Some(variable) => match std::env::var(variable) {
            Ok(token) if !token.trim().is_empty() => Some(token.trim().to_owned()),
            _ => {
                return Err(ExitError::usage(format!(
                    "--upstream-bearer-env {variable}: the variable {variable} is not set (or empty); \
                     export it with the upstream's token"
                )));
            }
        },
    };
    Ok(upstream::Target::Http {
        url: url.to_owned(),
        headers,
        bearer,
    })
}

/// The `_meta` key under which every forwarded request names its caller.
pub const CALLER_META_KEY: &str = "scalekit-mcp/caller";

/// The gateway's handler: see the module documentation. A clone is a new session, not yet
/// connected, with the same upstream: rmcp clones the handler once for each MCP session.
pub struct Gateway {
    upstream: Arc<Upstream>,
    session: Arc<tokio::sync::OnceCell<upstream::Connected>>,
}

impl Clone for Gateway {
    fn clone(&self) -> Self {
        Self::new(self.upstream.clone())
    }
}

impl Gateway {
    /// A gateway to `upstream`.
    pub fn new(upstream: Arc<Upstream>) -> Self {
        Self {
            upstream,
            session: Arc::default(),
        }
    }

    /// This session's upstream connection, made by `initialize`.
    fn connected(&self) -> Result<&upstream::Connected, McpError> {
        self.session.get().ok_or_else(|| {
            McpError::invalid_request(
                "this session has no upstream connection: send initialize first",
                None,
            )
        })
    }

    /// Sends `request` upstream with the client's `_meta` and the caller, and waits for the
    /// answer; a cancellation from the client is passed on.
    async fn forward(
        &self,
        mut request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, McpError> {
        let connected = self.connected()?;
        let meta = request.get_meta_mut();
        *meta = context.meta.clone();
        meta.0.remove(CALLER_META_KEY);
        if let Some(caller) = Caller::of(&context.extensions) {
            meta.0
                .insert(CALLER_META_KEY.to_owned(), json!(caller_meta(&caller)));
        }
        let client_token = context.meta.get_progress_token();
        let options =
            PeerRequestOptions::with_timeout(self.upstream.timeout).reset_timeout_on_progress();
        if let Some(client_token) = client_token {
            request.extensions_mut().insert(ProgressRoute {
                client_token,
                request: context.id.clone(),
            });
        }
        // rmcp has started the client's 200 event stream before calling the handler: from here a
        // failure can only be a JSON-RPC error inside it. `failure` marks an HTTP upstream that
        // cannot be connected to as down, so that the next requests get a 502 instead.
        let in_flight = connected.relay.begin(context.id.clone());
        let handle = match connected
            .peer()
            .send_request_with_option(request, options)
            .await
        {
            Ok(handle) => handle,
            Err(error) => return Err(connected.failure(&self.upstream, &error).await),
        };
        let upstream_id = handle.id.clone();
        let upstream_token = handle.progress_token.clone();
        let answer = tokio::select! {
            answer = handle.await_response() => match answer {
                Ok(answer) => Ok(answer),
                Err(error) => Err(connected.failure(&self.upstream, &error).await),
            },
            () = context.ct.cancelled() => {
                let cancel = CancelledNotificationParam::new(
                    Some(upstream_id),
                    Some("cancelled by the client".into()),
                );
                let _ = connected.peer().notify_cancelled(cancel).await;
                Err(McpError::internal_error("cancelled by the client", None))
            }
        };
        connected.relay.settle(&upstream_token).await;
        drop(in_flight);
        answer
    }
}

/// The caller as forwarded in `_meta`: subject, organization, client id and scopes. Serialized
/// straight from the caller's claims (in the order a JSON object's members sort in), without a
/// JSON value built first on each request.
#[derive(serde::Serialize)]
struct CallerMeta<'a> {
    client_id: &'a Option<String>,
    org_id: &'a Option<String>,
    scopes: &'a [String],
    sub: &'a Option<String>,
}

fn caller_meta(caller: &Caller) -> CallerMeta<'_> {
    CallerMeta {
        client_id: &caller.client_id,
        org_id: &caller.org_id,
        scopes: &caller.scopes,
        sub: &caller.sub,
    }
}

/// A request without parameters (or with optional ones), as sent upstream.
fn optional<M: Default, P>(params: Option<P>) -> RequestOptionalParam<M, P> {
    RequestOptionalParam {
        method: M::default(),
        params,
        extensions: Default::default(),
    }
}

/// The answer of the kind `$variant`, or an error naming what came instead.
macro_rules! expect_result {
    ($result:expr, $variant:ident) => {
        match $result? {
            ServerResult::$variant(result) => Ok(result.into()),
            other => Err(unexpected(&other)),
        }
    };
}

fn unexpected(result: &ServerResult) -> McpError {
    let kind = serde_json::to_value(result)
        .ok()
        .and_then(|value| {
            value
                .as_object()
                .map(|object| object.keys().cloned().collect::<Vec<_>>())
        })
        .unwrap_or_default();
    McpError::internal_error(
        format!(
            "the upstream answered with an unexpected result (fields: {})",
            kind.join(", ")
        ),
        None,
    )
}

impl ServerHandler for Gateway {
    /// Sessions start with `initialize`, which opens the upstream session: the 2026-07-28
    /// revision's per-request lifecycle (`server/discover`, no `initialize`) is not relayed yet,
    /// so it is not offered, and clients that try it first fall back to `initialize`.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::DiscoverResult, McpError> {
        Err(McpError::method_not_found::<
            rmcp::model::DiscoverRequestMethod,
        >())
    }

    fn get_info(&self) -> InitializeResult {
        self.session
            .get()
            .map(|connected| connected.info.clone())
            .unwrap_or_default()
    }

    async fn initialize(
        &self,
        params: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        let caller = Caller::of(&context.extensions);
        let connected = self
            .session
            .get_or_try_init(|| {
                self.upstream
                    .connect(params, caller.as_deref(), context.peer.clone())
            })
            .await;
        match connected {
            Ok(connected) => Ok(connected.info.clone()),
            Err(failure) => Err(McpError::internal_error(failure.message, None)),
        }
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), McpError> {
        let ping = ClientRequest::PingRequest(rmcp::model::PingRequest::default());
        self.forward(ping, context).await.map(|_| ())
    }

    async fn complete(
        &self,
        params: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let answer = self.forward(
            ClientRequest::CompleteRequest(Request::new(params)),
            context,
        );
        expect_result!(answer.await, CompleteResult)
    }

    #[allow(
        deprecated,
        reason = "logging is deprecated in the 2026 revision, not gone from 2025 clients"
    )]
    async fn set_level(
        &self,
        params: rmcp::model::SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let answer = self.forward(
            ClientRequest::SetLevelRequest(Request::new(params)),
            context,
        );
        answer.await.map(|_| ())
    }

    async fn get_prompt(
        &self,
        params: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let answer = self.forward(
            ClientRequest::GetPromptRequest(Request::new(params)),
            context,
        );
        match answer.await? {
            ServerResult::GetPromptResult(result) => Ok(result.into()),
            ServerResult::InputRequiredResult(result) => {
                Ok(GetPromptResponse::InputRequired(result))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn list_prompts(
        &self,
        params: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let answer = self.forward(ClientRequest::ListPromptsRequest(optional(params)), context);
        expect_result!(answer.await, ListPromptsResult)
    }

    async fn list_resources(
        &self,
        params: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let answer = self.forward(
            ClientRequest::ListResourcesRequest(optional(params)),
            context,
        );
        expect_result!(answer.await, ListResourcesResult)
    }

    async fn list_resource_templates(
        &self,
        params: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let message = ClientRequest::ListResourceTemplatesRequest(optional(params));
        expect_result!(
            self.forward(message, context).await,
            ListResourceTemplatesResult
        )
    }

    async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let answer = self.forward(
            ClientRequest::ReadResourceRequest(Request::new(params)),
            context,
        );
        match answer.await? {
            ServerResult::ReadResourceResult(result) => Ok(result.into()),
            ServerResult::InputRequiredResult(result) => {
                Ok(ReadResourceResponse::InputRequired(result))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn subscribe(
        &self,
        params: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let answer = self.forward(
            ClientRequest::SubscribeRequest(Request::new(params)),
            context,
        );
        answer.await.map(|_| ())
    }

    async fn unsubscribe(
        &self,
        params: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let answer = self.forward(
            ClientRequest::UnsubscribeRequest(Request::new(params)),
            context,
        );
        answer.await.map(|_| ())
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let answer = self.forward(
            ClientRequest::CallToolRequest(Request::new(params)),
            context,
        );
        match answer.await? {
            ServerResult::CallToolResult(result) => Ok(result.into()),
            ServerResult::InputRequiredResult(result) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_tools(
        &self,
        params: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let answer = self.forward(ClientRequest::ListToolsRequest(optional(params)), context);
        let listed: Result<ListToolsResult, McpError> =
            expect_result!(answer.await, ListToolsResult);
        if let Ok(listed) = &listed {
            self.upstream.tools.learn(listed.tools.iter().cloned());
        }
        listed
    }

    /// A tool the upstream listed (to any session), so that the metrics label it by name.
    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.upstream.tools.get(name)
    }

    async fn on_custom_request(
        &self,
        custom: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        expect_result!(
            self.forward(ClientRequest::CustomRequest(custom), context)
                .await,
            CustomResult
        )
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleServer>,
    ) {
        let progress = rmcp::model::Notification::new(params);
        self.notify(ClientNotification::ProgressNotification(progress))
            .await;
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        let changed = rmcp::model::RootsListChangedNotification::default();
        self.notify(ClientNotification::RootsListChangedNotification(changed))
            .await;
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleServer>,
    ) {
        self.notify(ClientNotification::CustomNotification(notification))
            .await;
    }
}

impl Gateway {
    /// Sends a client's notification upstream; one that cannot be delivered is logged.
    async fn notify(&self, notification: ClientNotification) {
        let Ok(connected) = self.connected() else {
            return;
        };
        if let Err(error) = connected.peer().send_notification(notification).await {
            tracing::debug!(%error, "a notification could not be passed upstream");
        }
    }
}
