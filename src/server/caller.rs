//! The validated caller, where a tool or a route needs it.
//!
//! The bearer guard puts the caller (an `Arc<Caller>`) in the HTTP request's extensions. rmcp
//! hands a tool the HTTP request's parts among its context's extensions (stateful, stateless and
//! the direct path alike), so a tool finds the caller there; over stdio there is no HTTP request
//! and so no caller.
//!
//! - In a tool: `caller: Authenticated` as a parameter (refuses the call when there is no
//!   caller), or [`Caller::of`] on the tool's `Extensions` (`None` over stdio).
//! - In an axum handler behind [`BearerAuthLayer`](crate::BearerAuthLayer): `Authenticated` as
//!   an extractor.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use rmcp::ErrorData;
use rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use rmcp::model::Extensions;

use crate::auth::validate::Caller;

impl Caller {
    /// The caller of the MCP request whose extensions these are: a tool's `Extensions`
    /// parameter, or its `RequestContext`'s `extensions`. `None` over stdio, where MCP uses no
    /// OAuth.
    ///
    /// ```
    /// use rmcp::model::Extensions;
    /// use scalekit_mcp::Caller;
    ///
    /// fn organization(extensions: &Extensions) -> String {
    ///     Caller::of(extensions)
    ///         .and_then(|caller| caller.org_id.clone())
    ///         .unwrap_or_else(|| "none".into())
    /// }
    /// assert_eq!(organization(&Extensions::new()), "none");
    /// ```
    pub fn of(extensions: &Extensions) -> Option<Arc<Caller>> {
        extensions
            .get::<Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<Caller>>())
            .cloned()
    }
}

/// The validated caller, as a tool parameter or an axum extractor.
///
/// In an rmcp tool, a call without a caller (over stdio) is refused with an `invalid_request`
/// error before the tool runs; take `extensions: Extensions` and [`Caller::of`] instead when the
/// tool should also work without one.
///
/// ```
/// use rmcp::{handler::server::router::tool::ToolRouter, tool, tool_router};
/// use scalekit_mcp::Authenticated;
///
/// #[derive(Clone)]
/// struct Tools {
///     tool_router: ToolRouter<Self>,
/// }
///
/// #[tool_router]
/// impl Tools {
///     #[tool(description = "Who am I?")]
///     async fn me(&self, caller: Authenticated) -> String {
///         caller.sub.clone().unwrap_or_default()
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated(pub Arc<Caller>);

impl Deref for Authenticated {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl<C: AsRequestContext> FromContextPart<C> for Authenticated {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        Caller::of(&context.as_request_context().extensions)
            .map(Authenticated)
            .ok_or_else(|| {
                ErrorData::invalid_request(
                    "this tool needs an authenticated caller, and this request has none \
                     (MCP over stdio carries no OAuth token)",
                    None,
                )
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        parts
            .extensions
            .get::<Arc<Caller>>()
            .cloned()
            .map(Authenticated)
            .ok_or_else(|| {
                // A programming error, not a client's: the route is not behind the layer.
                tracing::error!(
                    path = parts.uri.path(),
                    "Authenticated used on a route without BearerAuthLayer"
                );
                (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
            })
    }
}
