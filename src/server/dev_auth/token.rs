//! The token endpoint (RFC 6749 §3.2) and client authentication (RFC 6749 §2.3).
//!
//! - `authorization_code` with `code_verifier` (RFC 7636 §4.5–4.6); codes are single-use and a
//!   second use revokes the refresh tokens the first one started (RFC 6749 §4.1.2).
//! - `refresh_token` with rotation: each use returns a new refresh token and retires the old one;
//!   presenting a retired one revokes its whole family (RFC 9700 §4.14.2).
//! - `client_credentials` for confidential clients, with `sub` = `client_id` as Scalekit does for
//!   machine tokens.
//!
//! Access tokens are RS256 JWTs shaped like Scalekit's: `iss`, `sub`, `aud` (array), `client_id`,
//! `scope`, `exp`, `iat`, `nbf`, `jti`, and `kid` in the header.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, header};
use serde::Serialize;
use serde_json::{Value, json};

use super::keys::sha256;
use super::store::{Client, Grant, RefreshToken};
use super::{
    DevAuth, ErrorCode, OAuthError, OFFLINE_ACCESS, Params, REFRESH_TTL_SECONDS, printable, random,
};
use crate::auth::time;

const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];

pub async fn token(State(dev): State<Arc<DevAuth>>, headers: HeaderMap, body: Bytes) -> Response {
    match dev.token(&headers, &body, time::now()) {
        Ok(document) => (
            [
                // RFC 6749 §5.1: responses with tokens must not be cached.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            axum::Json(document),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// The claims of an access token.
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a [String],
    client_id: &'a str,
    scope: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
}

/// A client after authentication at the token or revocation endpoint.
pub struct AuthenticatedClient {
    pub client: Client,
    /// Whether it proved a secret (a confidential client), as opposed to naming itself.
    pub confidential: bool,
}

impl DevAuth {
    fn token(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Value, OAuthError> {
        let params = form_params(headers, body)?;
        let grant_type = params.required("grant_type")?;
        if !GRANT_TYPES.contains(&grant_type) {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type {:?} is not supported: use authorization_code, refresh_token or client_credentials",
                    printable(grant_type)
                ),
            ));
        }
        let client = self.authenticate_client(headers, &params)?;
        match grant_type {
            "authorization_code" => self.redeem_code(&client, &params, now),
            "refresh_token" => self.rotate_refresh_token(&client, &params, now),
            _ => self.client_credentials(&client, &params, now),
        }
    }

    /// RFC 6749 §2.3: a confidential client proves its secret with HTTP Basic or in the body
    /// (never both, §2.3.1); a public client only names itself with `client_id`.
    pub fn authenticate_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let basic = basic_credentials(headers)?;
        let body_id = params.single("client_id")?;
        let body_secret = params.single("client_secret")?;
        let (client_id, secret, via_basic) = match (basic, body_secret) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "the client authenticated twice (Authorization: Basic and client_secret): use one method",
                ));
            }
            (Some((id, _)), _) if body_id.is_some_and(|body_id| body_id != id) => {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the one in Authorization: Basic",
                ));
            }
            (Some((id, secret)), None) => (id, Some(secret), true),
            (None, secret) => {
                let id = body_id.ok_or_else(|| {
                    OAuthError::new(
                        ErrorCode::InvalidClient,
                        "no client authentication: send client_id (public clients) or the client's credentials",
                    )
                })?;
                (id.to_owned(), secret.map(str::to_owned), false)
            }
        };
        let fail = |description: String| {
            let error = OAuthError::new(ErrorCode::InvalidClient, description);
            if via_basic {
                error.with_basic_challenge()
            } else {
                error
            }
        };
        let client = self.store().client(&client_id).cloned().ok_or_else(|| {
            fail(format!(
                "unknown client_id {:?}: register it first",
                printable(&client_id)
            ))
        })?;
        let confidential = match (&client.secret_hash, secret) {
            (None, None) => false,
            (None, Some(_)) => {
                return Err(fail(
                    "this client is public and has no secret: send only client_id".into(),
                ));
            }
            (Some(_), None) => {
                return Err(fail(
                    "this client is confidential: authenticate with its client_secret".into(),
                ));
            }
            // Comparing SHA-256 digests: timing reveals nothing usable about the secret itself.
            (Some(expected), Some(secret)) if *expected == sha256(secret.as_bytes()) => true,
            (Some(_), Some(_)) => {
                return Err(fail(
                    "client authentication failed: wrong client_secret".into(),
                ));
            }
        };
        Ok(AuthenticatedClient {
            client,
            confidential,
        })
    }

    /// `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5).
    fn redeem_code(
        &self,
        caller: &AuthenticatedClient,
        params: &Params,
        now: i64,
    ) -> Result<Value, OAuthError> {
        let client = &caller.client;
        if !client.allows_grant("authorization_code") {
            return Err(unauthorized(client, "authorization_code"));
        }
        let code = params.required("code")?;
        let verifier = params.required("code_verifier")?;
        check_verifier_format(verifier)?;
        let redirect_uri = params.single("redirect_uri")?;

        let mut store = self.store();
        let invalid = |description: &str| OAuthError::new(ErrorCode::InvalidGrant, description);
        let entry = store
            .code_mut(code)
            .ok_or_else(|| invalid("the authorization code is unknown or expired"))?;
        if entry.request.client_id != client.id {
            return Err(invalid(
                "the authorization code was issued to another client",
            ));
        }
        if entry.used {
            // RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization
            // server MUST deny the request and SHOULD revoke (when possible) all tokens previously
            // issued based on that authorization code."
            let family = entry.family.take();
            if let Some(family) = family {
                store.revoke_family(&family);
            }
            tracing::warn!(client_id = %client.id, "dev-auth: an authorization code was used twice; its refresh tokens are revoked");
            return Err(invalid(
                "the authorization code was already used; tokens issued from it are revoked",
            ));
        }
        if now > entry.expires_at {
            return Err(invalid(
                "the authorization code has expired (codes live 60 seconds)",
            ));
        }
        // RFC 6749 §4.1.3: redirect_uri is required when the authorization request had one, and
        // must be identical.
        match (redirect_uri, entry.request.redirect_uri_given) {
            (Some(uri), _) if uri == entry.request.redirect_uri => {}
            (None, false) => {}
            (None, true) => {
                return Err(OAuthError::invalid_request(
                    "the redirect_uri parameter is missing: repeat the one sent to /authorize",
                ));
            }
            (Some(_), _) => {
                return Err(invalid(
                    "redirect_uri differs from the one sent to /authorize",
                ));
            }
        }
        // RFC 7636 §4.6: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) == code_challenge.
        if URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes())) != entry.request.code_challenge {
            return Err(invalid(
                "code_verifier does not match the code_challenge (PKCE S256)",
            ));
        }
        entry.used = true;
        let grant = Grant {
            sub: entry.sub.clone(),
            scopes: entry.request.scopes.clone(),
            audiences: entry.request.audiences.clone(),
        };
        let refresh = if grant.scopes.iter().any(|scope| scope == OFFLINE_ACCESS) {
            let family = random(16)?;
            entry.family = Some(family.clone());
            Some(self.new_refresh_token(&mut store, &client.id, family, grant.clone(), now)?)
        } else {
            None
        };
        drop(store);
        tracing::info!(client_id = %client.id, sub = %grant.sub, "dev-auth: exchanged an authorization code");
        self.token_response(&client.id, &grant, &grant.scopes, refresh, now)
    }

    /// `grant_type=refresh_token` with rotation (RFC 6749 §6, RFC 9700 §4.14.2).
    fn rotate_refresh_token(
        &self,
        caller: &AuthenticatedClient,
        params: &Params,
        now: i64,
    ) -> Result<Value, OAuthError> {
        let client = &caller.client;
        let presented = params.required("refresh_token")?;
        let requested_scope = params.single("scope")?;
        let mut store = self.store();
        let invalid = |description: &str| OAuthError::new(ErrorCode::InvalidGrant, description);
        let entry = store
            .refresh_token_mut(presented)
            .ok_or_else(|| invalid("the refresh token is unknown, expired or revoked"))?;
        if entry.client_id != client.id {
            return Err(invalid("the refresh token was issued to another client"));
        }
        if entry.used {
            // Two parties hold this token: the client and someone who stole it. The server cannot
            // tell which one is presenting it, so the whole family goes.
            let family = entry.family.clone();
            let revoked = store.revoke_family(&family);
            tracing::warn!(client_id = %client.id, revoked, "dev-auth: a refresh token was reused; its family is revoked");
            return Err(invalid(
                "the refresh token was already used: reuse detected, every token of its family is revoked",
            ));
        }
        if now > entry.expires_at {
            return Err(invalid("the refresh token has expired"));
        }
        // RFC 6749 §6: a narrower scope may be requested, never a wider one.
        let access_scopes = match requested_scope {
            None => entry.grant.scopes.clone(),
            Some(scope) => {
                let requested = super::split_scopes(Some(scope));
                if let Some(extra) = requested
                    .iter()
                    .find(|scope| !entry.grant.scopes.contains(scope))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!(
                            "scope {:?} was not granted to this refresh token",
                            printable(extra)
                        ),
                    ));
                }
                requested
            }
        };
        let mut grant = entry.grant.clone();
        // RFC 8707 §2.2: a refresh request may name a subset of the granted resources.
        if params.contains("resource") {
            let requested = self.audiences(params)?;
            if let Some(extra) = requested.iter().find(|aud| !grant.audiences.contains(aud)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    format!(
                        "resource {:?} was not granted to this refresh token",
                        printable(extra)
                    ),
                ));
            }
            grant.audiences = requested;
        }
        entry.used = true;
        let family = entry.family.clone();
        let stored_grant = entry.grant.clone();
        let refresh = self.new_refresh_token(&mut store, &client.id, family, stored_grant, now)?;
        drop(store);
        tracing::info!(client_id = %client.id, sub = %grant.sub, "dev-auth: rotated a refresh token");
        self.token_response(&client.id, &grant, &access_scopes, Some(refresh), now)
    }

    /// `grant_type=client_credentials` (RFC 6749 §4.4): confidential clients only.
    fn client_credentials(
        &self,
        caller: &AuthenticatedClient,
        params: &Params,
        now: i64,
    ) -> Result<Value, OAuthError> {
        let client = &caller.client;
        if !caller.confidential {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "client_credentials needs a confidential client: register one with token_endpoint_auth_method \
                 client_secret_basic or client_secret_post",
            ));
        }
        if !client.allows_grant("client_credentials") {
            return Err(unauthorized(client, "client_credentials"));
        }
        // No user, no refresh token: offline_access means nothing here (RFC 6749 §4.4.3).
        let scopes = self.grantable_scopes(params.single("scope")?, false)?;
        let grant = Grant {
            sub: client.id.clone(),
            scopes,
            audiences: self.audiences(params)?,
        };
        tracing::info!(client_id = %client.id, "dev-auth: issued a client_credentials token");
        self.token_response(&client.id, &grant, &grant.scopes, None, now)
    }

    fn new_refresh_token(
        &self,
        store: &mut super::store::Store,
        client_id: &str,
        family: String,
        grant: Grant,
        now: i64,
    ) -> Result<String, OAuthError> {
        let token = random(32)?;
        let entry = RefreshToken {
            client_id: client_id.to_owned(),
            family,
            grant,
            expires_at: now + REFRESH_TTL_SECONDS,
            used: false,
        };
        store.add_refresh_token(&token, entry, now)?;
        Ok(token)
    }

    /// The RFC 6749 §5.1 response with a freshly signed access token.
    fn token_response(
        &self,
        client_id: &str,
        grant: &Grant,
        scopes: &[String],
        refresh_token: Option<String>,
        now: i64,
    ) -> Result<Value, OAuthError> {
        let ttl = i64::try_from(self.config.token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = AccessClaims {
            iss: &self.config.issuer,
            sub: &grant.sub,
            aud: &grant.audiences,
            client_id,
            scope: scopes.join(" "),
            exp: now.saturating_add(ttl),
            iat: now,
            nbf: now,
            jti: random(16)?,
        };
        let access_token = self
            .key
            .sign(&claims)
            .map_err(|_| OAuthError::server_error("signing the access token"))?;
        let mut response = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": claims.scope,
        });
        if let Some(refresh_token) = refresh_token {
            response["refresh_token"] = json!(refresh_token);
        }
        Ok(response)
    }
}

fn unauthorized(client: &Client, grant_type: &str) -> OAuthError {
    OAuthError::new(
        ErrorCode::UnauthorizedClient,
        format!(
            "this client did not register the {grant_type} grant type (registered: {})",
            client.grant_types.join(", ")
        ),
    )
}

/// The parameters of a token or revocation request: RFC 6749 §3.2 requires a form body.
pub fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::invalid_request(
            "send the parameters as a form: Content-Type: application/x-www-form-urlencoded",
        ));
    }
    Ok(Params::parse(body))
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
fn check_verifier_format(verifier: &str) -> Result<(), OAuthError> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if (43..=128).contains(&verifier.len()) && verifier.bytes().all(unreserved) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)",
        ))
    }
}

/// The client id and secret of an `Authorization: Basic` header, each form-urldecoded as
/// RFC 6749 §2.3.1 requires. `None` when the header is absent or uses another scheme.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        OAuthError::new(
            ErrorCode::InvalidClient,
            "the Authorization: Basic header is malformed",
        )
        .with_basic_challenge()
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |part: &str| -> String {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_decoded_and_urldecoded() {
        let encoded = STANDARD.encode("my%20client:s%3Acret");
        assert_eq!(
            basic_credentials(&basic(&format!("Basic {encoded}"))).unwrap(),
            Some(("my client".into(), "s:cret".into()))
        );
        assert_eq!(basic_credentials(&basic("Bearer abc")).unwrap(), None);
        assert_eq!(basic_credentials(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            basic_credentials(&basic("Basic !!!")).unwrap_err().code,
            ErrorCode::InvalidClient
        );
    }

    #[test]
    fn verifier_format() {
        assert!(check_verifier_format(&"a".repeat(43)).is_ok());
        assert!(check_verifier_format(&"a".repeat(42)).is_err());
        assert!(check_verifier_format(&"a".repeat(129)).is_err());
        assert!(check_verifier_format(&format!("{}+", "a".repeat(43))).is_err());
    }
}
