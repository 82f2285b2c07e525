//! The authentication middleware in front of every non-public route.
//!
//! It takes the bearer token from the `Authorization` header only (never the query string or a
//! form body, OAuth 2.1 §5.1.1), validates it with the shared rules in `auth::validate`, and
//! either lets the request through with the caller in its extensions or answers with the
//! RFC 6750 challenge built by `auth::challenge`. In stateful mode it also holds each MCP session
//! to the caller who opened it (`server::sessions`).

use std::sync::Arc;

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tower::Service;

use super::audit;
use super::rate_limits::OverLimit;
use super::sessions::{Access, Sessions};
use super::tool_calls::{ToolRequests, filter_listed_tools, operations_quickly, tool_requests};
use super::{AppState, Authentication};
use crate::auth::challenge::{AuthFailure, Refusal};
use crate::auth::time;
use crate::auth::validate::{Caller, Rejection, validate};

const SESSION_ID: &str = "mcp-session-id";

/// What rmcp answers for a session it does not know, word for word: a session bound to another
/// caller must look exactly like one that does not exist.
fn session_not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
}

/// The validated caller's subject, left on the response for the request log line (only when
/// that line is written: see [`super::request_line::enabled`]). A copy of the text, not a clone of
/// the caller: the one cached caller's reference count is shared by every worker thread, and
/// touching it twice more per request showed in a busy server's profile.
#[derive(Clone)]
pub struct LoggedSubject(pub Option<Box<str>>);

/// The guard in front of the MCP endpoint and every other path that is not public: the
/// Host/Origin checks ([`super::hosts::refusal`]), then [`authenticate`].
///
/// A service around the protected router as a whole rather than an axum middleware on each of
/// its routes: a middleware boxes the service below it and clones it, with everything below it,
/// on every request; this costs one boxed future and a reference count.
#[derive(Clone)]
pub struct Guarded<S> {
    state: Arc<AppState>,
    authentication: Authentication,
    inner: S,
}

impl<S> Guarded<S> {
    pub(super) fn new(state: Arc<AppState>, authentication: Authentication, inner: S) -> Self {
        Self {
            state,
            authentication,
            inner,
        }
    }
}

impl<S> Service<Request> for Guarded<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Serve with the service that was polled ready; leave a fresh clone for the next call.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let state = self.state.clone();
        let authentication = self.authentication;
        Box::pin(async move {
            if let Some(refusal) = super::hosts::refusal(&state, &request) {
                return Ok(refusal);
            }
            Ok(match authentication {
                Authentication::Required => authenticate(&state, request, ready).await,
                Authentication::Off => pass(ready, request).await,
            })
        })
    }
}

/// Hands the request to the routes below, which `Guarded::poll_ready` made ready (and which
/// cannot fail: their errors are `Infallible`).
async fn pass<S>(mut inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let Ok(response) = inner.call(request).await;
    response
}

/// Lets the request through to `inner` with its caller in the extensions, or answers with the
/// challenge. In stateful mode, also holds sessions to their callers and their caps
/// ([`in_session`]).
async fn authenticate<S>(state: &AppState, mut request: Request, inner: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match caller_of(state, request.headers(), request.extensions()).await {
        Ok(caller) => {
            let logged = super::request_line::enabled()
                .then(|| LoggedSubject(caller.sub.as_deref().map(Box::from)));
            if let Err(over) = state.rate_limits.admit_caller(&caller).await {
                return over_limit(state, &over);
            }
            let mut tool_requests = ToolRequests::default();
            if state.reads_bodies() && request.method() == Method::POST {
                (request, tool_requests) = match check_tool_calls(state, &caller, request).await {
                    Ok(checked) => checked,
                    Err((refusal, outcome, operations)) => {
                        let record = record(state, caller, operations);
                        if let Some(record) = record {
                            record.finish(outcome);
                        }
                        return refusal;
                    }
                };
            }
            let scopes = tool_requests.lists.then(|| caller.scopes.clone());
            // Cloned only when the endpoint may report: every clone of the one cached caller
            // touches a reference count shared by all worker threads.
            let caller_for_report = state.endpoint_reports.then(|| caller.clone());
            let audited = match tool_requests.operations.is_empty() {
                true => None,
                false => record(state, caller.clone(), tool_requests.operations),
            };
            let mut response = match &state.sessions {
                Some(sessions) => in_session(state, sessions, request, caller, inner).await,
                None => {
                    request.extensions_mut().insert(caller);
                    pass(inner, request).await
                }
            };
            if let Some(scopes) = scopes {
                response = only_allowed_tools(state, &scopes, response).await;
            }
            let reported = caller_for_report.and_then(|caller| {
                Some((
                    caller,
                    response.extensions_mut().remove::<audit::Reported>()?,
                ))
            });
            if let Some(call) = audited {
                response = call.follow(response);
            } else if let Some((caller, reported)) = reported {
                response = follow_reported(state, caller, reported, response);
            }
            if let Some(logged) = logged {
                response.extensions_mut().insert(logged);
            }
            response
        }
        Err(refusal) => refusal,
    }
}

/// A request in stateful mode: one naming a session must be its caller's (else 404, as for a
/// session that does not exist); one naming none may open a session, if `--max-sessions` leaves
/// room (else 503), and a session it opens is bound to its caller. In front of a server the
/// handler cannot reach, 502 instead ([`super::bad_gateway`]).
async fn in_session<S>(
    state: &AppState,
    sessions: &Arc<Sessions>,
    mut request: Request,
    caller: Arc<Caller>,
    inner: S,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let named = request
        .headers()
        .get(SESSION_ID)
        .and_then(|value| value.to_str().ok());
    if let Some(id) = named {
        let answers_a_post = request.method() == Method::POST;
        let in_use = match sessions.check(id, &caller, answers_a_post) {
            Access::Permitted { touch_due, in_use } => {
                if touch_due && !still_shared(sessions, id).await {
                    return session_not_found();
                }
                in_use
            }
            Access::Refused => return session_not_found(),
            #[cfg(feature = "redis")]
            Access::Unknown if sessions.shared().is_some() => {
                let id = id.to_owned();
                return take_over(sessions, id, request, caller, inner).await;
            }
            Access::Unknown => return session_not_found(),
        };
        if request.method() == Method::POST
            && let Some(down) = state.relay_down.as_ref().and_then(|down| down())
        {
            return down.refuse(request, state.max_body_bytes).await;
        }
        request.extensions_mut().insert(caller);
        let response = pass(inner, request).await;
        return match in_use {
            Some(in_use) => in_use.until_answered(response),
            None => response,
        };
    }
    // Only a POST without a session id can open one (an `initialize`; rmcp refuses the rest).
    if request.method() != Method::POST {
        request.extensions_mut().insert(caller);
        return pass(inner, request).await;
    }
    let Some(reservation) = sessions.reserve() else {
        return too_many_sessions(sessions.limits().max_sessions);
    };
    request.extensions_mut().insert(caller.clone());
    let response = pass(inner, request).await;
    let opened = response
        .headers()
        .get(SESSION_ID)
        .and_then(|value| value.to_str().ok());
    if let Some(opened) = opened {
        #[cfg(feature = "redis")]
        if let Some(records) = sessions.shared() {
            // Fail closed: a session whose owner Redis does not know could be taken over by
            // anyone on another replica, so without its record there is no session.
            let owner = stored_owner(&caller);
            if records.persist(opened, &owner).await.is_err() {
                sessions.forget(opened).await;
                return store_unavailable();
            }
        }
        sessions.bind(opened, &caller, reservation);
    }
    response
}

/// Whether the Redis record of session `id`, held here, still exists (its expiry pushed back).
/// A record gone means the session was deleted on another replica (or expired): it ends here
/// too. While Redis fails, sessions held here go on.
async fn still_shared(sessions: &Sessions, id: &str) -> bool {
    #[cfg(feature = "redis")]
    if let Some(records) = sessions.shared()
        && let Ok(false) = records.touch(id).await
    {
        sessions.forget(id).await;
        return false;
    }
    let _ = (sessions, id);
    true
}

/// A request for session `id`, which this replica does not hold: served if Redis has its
/// record and the caller is its owner (rmcp restores it from the record), else 404; 503 while
/// Redis cannot say.
#[cfg(feature = "redis")]
async fn take_over<S>(
    sessions: &Arc<Sessions>,
    id: String,
    mut request: Request,
    caller: Arc<Caller>,
    inner: S,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let Some(records) = sessions.shared() else {
        return session_not_found();
    };
    let owner = match records.owner_of(&id).await {
        Ok(Some(owner)) => owner,
        Ok(None) => return session_not_found(),
        Err(_) => return store_unavailable(),
    };
    if owner != stored_owner(&caller) {
        records.forget_pending(&id);
        return session_not_found();
    }
    if request.method() == Method::DELETE {
        // Ending a session needs no copy of it here: its record goes, and the replicas that
        // hold it notice within a second (`still_shared`).
        records.forget_pending(&id);
        return match records.remove(&id).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(_) => store_unavailable(),
        };
    }
    let Some(reservation) = sessions.reserve() else {
        records.forget_pending(&id);
        return too_many_sessions(sessions.limits().max_sessions);
    };
    sessions.expect_restore(&id, &caller, reservation);
    let answers_a_post = request.method() == Method::POST;
    request.extensions_mut().insert(caller.clone());
    let response = pass(inner, request).await;
    sessions.restore_settled(&id);
    // Restored by now (or not at all): in use while its answer (or stream) lasts.
    sessions.start_sweeping();
    match sessions.check(&id, &caller, answers_a_post) {
        Access::Permitted {
            in_use: Some(in_use),
            ..
        } => in_use.until_answered(response),
        _ => response,
    }
}

/// The owner a session record names for `caller`: as `server::sessions` binds sessions.
#[cfg(feature = "redis")]
fn stored_owner(caller: &Caller) -> crate::server::redis_store::sessions::StoredOwner {
    crate::server::redis_store::sessions::StoredOwner {
        issuer: caller.issuer.clone().unwrap_or_default(),
        subject: caller
            .sub
            .clone()
            .or_else(|| caller.client_id.clone())
            .unwrap_or_default(),
    }
}

/// 503 while the session store (Redis) cannot be reached: a new session, or one held by
/// another replica, needs it. Sessions held by this replica go on.
#[cfg(feature = "redis")]
fn store_unavailable() -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": "session_store_unavailable",
            "error_description": "the session store (Redis) cannot be reached, so no session \
                can be opened or taken over by this replica; retry shortly",
        })),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The operations the endpoint reported it answered ([`audit::Reported`]), recorded now when
/// the endpoint knows how they ended, else when the answer has been sent.
fn follow_reported(
    state: &AppState,
    caller: Arc<Caller>,
    reported: audit::Reported,
    response: Response,
) -> Response {
    let Some(record) = record(state, caller, reported.operations) else {
        return response;
    };
    match reported.outcome {
        Some(outcome) => {
            record.finish(outcome);
            response
        }
        None => record.follow(response),
    }
}

/// What follows a request's operations to their answer (audit lines, metrics), if anything does.
fn record(
    state: &AppState,
    caller: Arc<Caller>,
    operations: Vec<super::tool_calls::Operation>,
) -> Option<audit::Record> {
    audit::Record::new(caller, operations, state.audit, state.metrics.clone())
}

/// A refusal for a rate limit: 429, counted in the metrics.
fn over_limit(state: &AppState, over: &OverLimit) -> Response {
    if let Some(metrics) = &state.metrics {
        metrics.record_rate_limited(over.kind());
    }
    over.response()
}

/// A refused request's answer, the reason it was refused, and the operations it asked for.
type CheckRefusal = (Response, audit::Outcome, Vec<super::tool_calls::Operation>);

/// Reads a POST's body for what it asks (its operations, whether it lists the tools) and
/// refuses a `tools/call` whose tool needs scopes the caller's token lacks (403, before the
/// handler sees it) or that is over its tool's rate limit (429); otherwise gives the request
/// back with the body it read.
async fn check_tool_calls(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<(Request, ToolRequests), CheckRefusal> {
    let (parts, body) = request.into_parts();
    let bytes = super::direct::read_body(body, state.max_body_bytes)
        .await
        .map_err(|refusal| (refusal, audit::Outcome::Error, Vec::new()))?;
    let requests = if state.decides_on_tool_calls() {
        tool_requests(&bytes)
    } else {
        ToolRequests {
            operations: operations_quickly(&bytes),
            lists: false,
        }
    };
    let mut refused = None;
    for tool in requests.calls() {
        let missing = state.tool_scopes.missing(tool, &caller.scopes);
        if !missing.is_empty() {
            let needed = state.tool_scopes.needed_by(tool);
            let refusal = refusal_response(state.challenge.refuse_tool(tool, &needed, &missing));
            refused = Some((refusal, audit::Outcome::Denied));
            break;
        }
        // Counted only once the call is allowed: a refused call costs the caller nothing.
        if let Err(over) = state.rate_limits.admit_tool(caller, tool).await {
            refused = Some((over_limit(state, &over), audit::Outcome::RateLimited));
            break;
        }
    }
    if let Some((refusal, outcome)) = refused {
        return Err((refusal, outcome, requests.operations));
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), requests))
}

/// The largest `tools/list` answer read to filter it (a list of a few thousand tools).
const MAX_TOOL_LIST_BYTES: usize = 16 * 1024 * 1024;

/// A `tools/list` answer with only the tools `scopes` allow: a caller is not shown tools it
/// could not call. The answer is read whole (it is short: one event, then the stream ends).
async fn only_allowed_tools(state: &AppState, scopes: &[String], response: Response) -> Response {
    let event_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_TOOL_LIST_BYTES).await else {
        // Cut off or too large: nothing trustworthy to pass on.
        return (StatusCode::BAD_GATEWAY, "the tool list could not be read").into_response();
    };
    let allowed = |tool: &str| state.tool_scopes.missing(tool, scopes).is_empty();
    match filter_listed_tools(&bytes, event_stream, allowed) {
        Some(filtered) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(filtered))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// 503 for an `initialize` while `--max-sessions` are open. Sessions end on DELETE or after the
/// idle timeout, so a retry later can succeed.
fn too_many_sessions(max: usize) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": "too_many_sessions",
            "error_description": format!(
                "the server holds its maximum of {max} open MCP sessions (--max-sessions); \
                 retry later, or close unused sessions with DELETE"
            ),
        })),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The caller a request's token names, or the answer that refuses the request.
///
/// A token accepted before costs a hash, one atomic load and one map lookup. A request without a
/// usable token, or with one not seen before, first counts against its client IP's
/// `--anonymous-rate-limit` (429 over it), so that a flood of bad tokens cannot burn CPU on
/// signature checks.
async fn caller_of(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Result<Arc<Caller>, Response> {
    let unverified = || state.rate_limits.admit_unverified(extensions, headers);
    let refuse = |failure: AuthFailure| {
        if let Some(metrics) = &state.metrics {
            metrics.record_refusal(&failure);
        }
        refusal_response(state.challenge.refuse(&failure))
    };
    let token = match bearer_token(headers) {
        Ok(token) => token,
        Err(failure) => {
            unverified()
                .await
                .map_err(|over| over_limit(state, &over))?;
            return Err(refuse(failure));
        }
    };
    let now = time::now();
    let leeway = i64::try_from(state.policy.leeway).unwrap_or(i64::MAX);
    if let Some(caller) = state
        .verdicts
        .get(token, state.keys.generation(), now, leeway)
    {
        return Ok(caller);
    }
    unverified()
        .await
        .map_err(|over| over_limit(state, &over))?;
    verify(state, token, now).await.map_err(refuse)
}

/// Validates `token` against the current keys, refetching the key set once (within the cooldown)
/// when the token names a key it does not hold: that is how a signing-key rotation is picked up.
/// An accepted token is remembered, so its signature is checked once, not on every request.
async fn verify(state: &AppState, token: &str, now: i64) -> Result<Arc<Caller>, AuthFailure> {
    let (mut keys, mut generation) = state
        .keys
        .current_with_generation()
        .ok_or(AuthFailure::KeysUnavailable)?;
    let mut verdict = validate(token, &state.policy, &keys, now);
    if matches!(verdict, Err(Rejection::UnknownKey(_)))
        && state.keys.refresh_for_unknown_kid().await
    {
        (keys, generation) = state
            .keys
            .current_with_generation()
            .ok_or(AuthFailure::KeysUnavailable)?;
        verdict = validate(token, &state.policy, &keys, now);
    }
    let caller = Arc::new(verdict.map_err(AuthFailure::Rejected)?);
    state
        .verdicts
        .insert(token, caller.clone(), generation, now);
    Ok(caller)
}

/// The bearer-token check alone, for routes of an application that are not MCP: the same
/// validation and the same challenges as the MCP endpoint, and the caller in the request's
/// extensions for the route (the `Authenticated` extractor). No Host/Origin check and no
/// sessions: those are the MCP endpoint's.
/// The service [`BearerAuthLayer`](crate::BearerAuthLayer) wraps a route in.
#[derive(Clone)]
pub struct BearerAuth<S> {
    state: Arc<AppState>,
    inner: S,
}

impl<S> BearerAuth<S> {
    pub(super) fn new(state: Arc<AppState>, inner: S) -> Self {
        Self { state, inner }
    }
}

impl<S> Service<Request> for BearerAuth<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let state = self.state.clone();
        Box::pin(async move {
            Ok(
                match caller_of(&state, request.headers(), request.extensions()).await {
                    Ok(caller) => {
                        request.extensions_mut().insert(caller);
                        pass(ready, request).await
                    }
                    Err(refusal) => refusal,
                },
            )
        })
    }
}

/// The bearer token from the one `Authorization` header. The scheme is case-insensitive
/// (RFC 9110 §11.1); another scheme (Basic…) counts as no bearer credentials.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthFailure::NoCredentials);
    };
    if values.next().is_some() {
        return Err(AuthFailure::BadCredentials(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthFailure::BadCredentials("the Authorization header is not ASCII"))?;
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::NoCredentials);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(AuthFailure::BadCredentials(
            "no token after Bearer in the Authorization header",
        ));
    }
    Ok(token)
}

/// An HTTP response for a refusal: status, challenge, Retry-After and the JSON body.
pub fn refusal_response(refusal: Refusal) -> Response {
    let mut response = (refusal.status, axum::Json(refusal.body)).into_response();
    let headers = response.headers_mut();
    if let Some(challenge) = refusal.www_authenticate {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    if let Some(seconds) = refusal.retry_after_seconds {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn extracts_bearer_tokens_case_insensitively() {
        assert_eq!(bearer_token(&headers(&["Bearer abc"])).unwrap(), "abc");
        assert_eq!(bearer_token(&headers(&["bearer  abc "])).unwrap(), "abc");
        assert_eq!(bearer_token(&headers(&["BEARER abc"])).unwrap(), "abc");
    }

    #[test]
    fn classifies_missing_and_bad_credentials() {
        assert!(matches!(
            bearer_token(&headers(&[])),
            Err(AuthFailure::NoCredentials)
        ));
        assert!(matches!(
            bearer_token(&headers(&["Basic dXNlcjpwdw=="])),
            Err(AuthFailure::NoCredentials)
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer"])),
            Err(AuthFailure::BadCredentials(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer   "])),
            Err(AuthFailure::BadCredentials(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(AuthFailure::BadCredentials(_))
        ));
    }
}
