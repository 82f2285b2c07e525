//! `scalekit-mcp serve`: the OAuth-protected MCP server, over Streamable HTTP or stdio.
//!
//! Every setting is a flag that names its environment variable ([`ServeArgs`], in `config`); the
//! seed's variables (SK_ENV_URL, EXPECTED_AUDIENCE, PROTECTED_RESOURCE_METADATA, PORT,
//! LOG_LEVEL…) are read under their own names, from the environment or a `.env` in the working
//! directory, so a team running the Python pattern can point this binary at the same `.env`.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::auth::tool_scopes::ToolScopes;
use crate::config::{ServeArgs, Transport};
use crate::gateway::Upstream;
use crate::gateway::child_sessions::ChildSessions;
use crate::gateway::pass_through::PassThrough;
use crate::gateway::stateless::Forwarder;
use crate::gateway::upstream::Target;
use crate::logging;
use crate::server::bad_gateway::{DownCheck, Unreachable};
use crate::server::sessions::Sessions;
use crate::server::{Extras, OwnEndpoint, ReadinessCheck, SessionEndpoint};
use crate::tools::ScalekitTools;

/// `--max-sessions` when a command is served and the flag is not given: each session is a
/// process, so the cap is lower than the 1,000 of plain sessions.
const COMMAND_MAX_SESSIONS: usize = 100;

/// How long the sessions' children have after SIGTERM at shutdown (then they are killed).
const CHILD_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the server with the built-in tools until SIGINT / SIGTERM.
/// With an upstream (`--upstream URL`, or a command after `--`), its tools instead.
/// `max_sessions_set`: whether `--max-sessions` was given, rather than left at its default.
pub async fn run(mut args: ServeArgs, max_sessions_set: bool) -> anyhow::Result<()> {
    let upstream = crate::gateway::upstream_of(&args)?;
    logging::init(args.log_format, args.log_level.as_deref(), "info");
    match upstream {
        Some(upstream) => {
            let command = matches!(upstream.target, Target::Command { .. });
            if command && !max_sessions_set {
                args.max_sessions = COMMAND_MAX_SESSIONS;
            }
            if args.stateless {
                tracing::info!(
                    "serving {} behind OAuth, on one upstream session shared by every caller (--stateless)",
                    upstream.describe()
                );
            } else {
                let children = if command { " (one process each)" } else { "" };
                tracing::info!(
                    "serving {} behind OAuth, at most {} sessions{children} (--max-sessions)",
                    upstream.describe(),
                    args.max_sessions
                );
            }
            let upstream = Arc::new(upstream);
            let extras = gateway_extras(&args, &upstream);
            let gateway = crate::gateway::Gateway::new(upstream);
            crate::server::run_with_extras(&args, gateway, ToolScopes::default(), extras).await
        }
        // The built-in tools never call back to the client: they may be answered directly.
        None => {
            let extras = crate::server::Extras {
                direct_tool_calls: true,
                sessions_may_sleep: true,
                ..Default::default()
            };
            crate::server::run_with_extras(
                &args,
                ScalekitTools::new(),
                ToolScopes::default(),
                extras,
            )
            .await
        }
    }
}

/// What a gateway adds to the server: `/ready` reports the upstream (checked in the background
/// until it answers), and with `--stateless` the endpoint is the forwarder on one shared
/// upstream session; without, the guard answers 502 for an upstream that cannot be reached
/// (`server::bad_gateway`).
fn gateway_extras(args: &ServeArgs, upstream: &Arc<Upstream>) -> Extras {
    if args.transport == Transport::Stdio {
        return Extras::default();
    }
    let health = upstream.health.clone();
    let readiness: ReadinessCheck = Arc::new(move || health.readiness());
    // Never cancelled: the checks end with the process.
    let forever = CancellationToken::new();
    let forwarder = Forwarder::new(upstream.clone(), args.max_body_bytes);
    if args.stateless {
        tokio::spawn(forwarder.clone().connect_in_background(forever));
        let stopping = forwarder.clone();
        Extras {
            direct_tool_calls: false,
            sessions_may_sleep: false,
            endpoint: Some(forwarder.endpoint()),
            session_endpoint: None,
            readiness: Some(readiness),
            before_sessions_end: None,
            after_requests: Some(Arc::new(move || Box::pin(stopping.clone().shut_down()))),
            // The forwarder answers 502 itself.
            relay_down: None,
        }
    } else {
        tokio::spawn(forwarder.probe_until_reachable(forever));
        match upstream.target {
            Target::Http { .. } => pass_through_extras(args, upstream, readiness),
            Target::Command { .. } => child_sessions_extras(args, upstream, readiness),
        }
    }
}

/// A [`SessionEndpoint`] whose endpoint `make` builds once, on the server's sessions, and the
/// slot that then holds it (for the shutdown hooks).
fn built_once<T: Send + Sync + 'static>(
    make: impl Fn(Arc<Sessions>) -> T + Send + Sync + 'static,
    endpoint: fn(&T) -> OwnEndpoint,
) -> (Arc<OnceLock<T>>, SessionEndpoint) {
    let built: Arc<OnceLock<T>> = Arc::default();
    let slot = built.clone();
    let build: SessionEndpoint =
        Arc::new(move |sessions| endpoint(slot.get_or_init(|| make(sessions))));
    (built, build)
}

/// A stateful gateway in front of an HTTP upstream: each session passed through to an upstream
/// session of its own (`gateway::pass_through`), whose upstream sessions are deleted at
/// shutdown once the requests in flight are answered. While the upstream is known down, a
/// session's requests get 502 from the guard at once.
fn pass_through_extras(
    args: &ServeArgs,
    upstream: &Arc<Upstream>,
    readiness: ReadinessCheck,
) -> Extras {
    let (max_body_bytes, on) = (args.max_body_bytes, upstream.clone());
    let (built, endpoint) = built_once(
        move |sessions| PassThrough::new(on.clone(), sessions, max_body_bytes),
        PassThrough::endpoint,
    );
    let health = upstream.health.clone();
    let down: DownCheck = Arc::new(move || health.down().map(Unreachable::bad_gateway));
    Extras {
        session_endpoint: Some(endpoint),
        readiness: Some(readiness),
        after_requests: Some(Arc::new(move || {
            let built = built.clone();
            Box::pin(async move {
                if let Some(pass_through) = built.get() {
                    pass_through.shut_down().await;
                }
            })
        })),
        relay_down: Some(down),
        ..Extras::default()
    }
}

/// A stateful gateway in front of a command: a child per session, passed through message by
/// message (`gateway::child_sessions`), every child stopped at shutdown (SIGTERM, then SIGKILL
/// after [`CHILD_STOP_GRACE`]). A child failing to start says nothing of the ones running, so
/// sessions are never refused for it.
fn child_sessions_extras(
    args: &ServeArgs,
    upstream: &Arc<Upstream>,
    readiness: ReadinessCheck,
) -> Extras {
    let (max_body_bytes, on) = (args.max_body_bytes, upstream.clone());
    let (built, endpoint) = built_once(
        move |sessions| ChildSessions::new(on.clone(), sessions, max_body_bytes),
        ChildSessions::endpoint,
    );
    let children = upstream.children.clone();
    Extras {
        session_endpoint: Some(endpoint),
        readiness: Some(readiness),
        before_sessions_end: Some(Arc::new(move || {
            if let Some(child_sessions) = built.get() {
                child_sessions.shutting_down();
            }
            let children = children.clone();
            Box::pin(async move { children.stop(CHILD_STOP_GRACE).await })
        })),
        ..Extras::default()
    }
}
