//! Token revocation (RFC 7009).
//!
//! Revoking a refresh token revokes its whole family (RFC 7009 §2.1: the server SHOULD also
//! invalidate the other tokens of the same grant). Access tokens are self-contained JWTs that the
//! MCP endpoint checks offline against the JWKS, so they cannot be revoked: asking for it gets
//! `unsupported_token_type` (RFC 7009 §2.2.1) and the reason, rather than a 200 that would
//! suggest the token stopped working. Unknown tokens get 200, as §2.2 requires.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::token::form_params;
use super::{DevAuth, ErrorCode, OAuthError};
use crate::auth::validate::decode;

pub async fn revoke(State(dev): State<Arc<DevAuth>>, headers: HeaderMap, body: Bytes) -> Response {
    match dev.revoke(&headers, &body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

impl DevAuth {
    fn revoke(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
        let params = form_params(headers, body)?;
        let token = params.required("token")?;
        // The hint is only an optimisation (RFC 7009 §2.1); an unknown one is ignored.
        let _hint = params.single("token_type_hint")?;
        let caller = self.authenticate_client(headers, &params)?;

        let mut store = self.store();
        if let Some(entry) = store.refresh_token_mut(token) {
            if entry.client_id != caller.client.id {
                // RFC 7009 §2.1: a token issued to another client is refused, and the client told.
                return Err(OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    "this token was issued to another client",
                ));
            }
            let family = entry.family.clone();
            let revoked = store.revoke_family(&family);
            tracing::info!(client_id = %caller.client.id, revoked, "dev-auth: revoked a refresh token family");
            return Ok(());
        }
        drop(store);
        let is_our_jwt = decode(token)
            .ok()
            .and_then(|decoded| {
                decoded
                    .claims
                    .get("iss")
                    .and_then(|iss| iss.as_str())
                    .map(str::to_owned)
            })
            .is_some_and(|iss| iss == self.config.issuer);
        if is_our_jwt {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedTokenType,
                "access tokens are self-contained JWTs, checked offline against the JWKS, and cannot be revoked; \
                 they expire at their exp (--dev-token-ttl). Revoke the refresh token instead",
            ));
        }
        Ok(())
    }
}
