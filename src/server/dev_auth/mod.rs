//! `serve --dev`: an OAuth 2.1 authorization server embedded in the MCP server, for development
//! only, so the whole login → call loop runs on a fresh machine with no account and no network.
//!
//! ```text
//! /.well-known/oauth-authorization-server/dev-auth   RFC 8414 metadata (path insertion)
//! /dev-auth/.well-known/openid-configuration         the same document, where OIDC clients look
//! /dev-auth/keys                                     JWKS (RS256, kid = RFC 7638 thumbprint)
//! /dev-auth/authorize                                code flow + PKCE S256; consent page or auto-approve
//! /dev-auth/token                                    authorization_code, refresh_token, client_credentials
//! /dev-auth/register                                 RFC 7591 dynamic client registration
//! /dev-auth/revoke                                   RFC 7009 revocation
//! ```
//!
//! Its tokens are verified like any other: the MCP endpoint's JWKS cache loads the key set this
//! server publishes and `auth::validate` checks them against the same policy (see
//! [`DevAuth::key_fetcher`]). There is no password: every user is `--dev-user`, which is why
//! `--dev` refuses to listen beyond loopback.

mod authorize;
mod keys;
mod register;
mod revoke;
mod store;
mod token;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::jwks::{FetchFuture, FetchedKeys, KeyFetcher};
use crate::auth::keys::KeySet;
use crate::config::{DEV_AUTH_PATH, DevAuthConfig, ServeConfig};
pub use keys::{KeyOrigin, SigningKey};
use store::{Full, Store};

/// Authorization codes expire this many seconds after they are issued.
const CODE_TTL_SECONDS: i64 = 60;
/// A consent page must be answered within this many seconds.
const CONSENT_TTL_SECONDS: i64 = 600;
/// Refresh tokens expire this many seconds after they are issued (each rotation starts anew).
const REFRESH_TTL_SECONDS: i64 = 14 * 24 * 3600;
/// The scope that asks for a refresh token, as with Scalekit.
const OFFLINE_ACCESS: &str = "offline_access";
/// Largest request body accepted by these endpoints: their requests are a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1, RFC 7591 §3.2.2 and
/// RFC 8707 §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    InvalidTarget,
    UnsupportedTokenType,
    InvalidRedirectUri,
    InvalidClientMetadata,
    TemporarilyUnavailable,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::InvalidTarget => "invalid_target",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }
}

/// An OAuth error: the code, a description for the developer, and the HTTP status.
#[derive(Debug)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    status: StatusCode,
    /// RFC 6749 §5.2: a failed `Authorization: Basic` client authentication gets 401 with a
    /// `WWW-Authenticate` challenge.
    basic_challenge: bool,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            code,
            description: description.into(),
            status,
            basic_challenge: false,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    /// For failures of the random number generator or the signer: nothing the client can fix.
    fn server_error(what: &str) -> Self {
        tracing::error!("dev-auth: {what} failed");
        Self::new(
            ErrorCode::ServerError,
            format!("{what} failed; see the server log"),
        )
    }
}

impl From<Full> for OAuthError {
    fn from(Full(what): Full) -> Self {
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            format!("the development server holds too many {what}; wait a minute or restart it"),
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code.as_str(), "error_description": self.description });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"dev-auth\""),
            );
        }
        response
    }
}

/// The parameters of a query string or form body, kept in order with repeats, so that a repeated
/// parameter can be refused (RFC 6749 §3.1) and `resource` can be repeated (RFC 8707 §2).
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(encoded: &[u8]) -> Self {
        let pairs = url::form_urlencoded::parse(encoded)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            // RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were
            // omitted from the request."
            .filter(|(_, value)| !value.is_empty())
            .collect();
        Self(pairs)
    }

    /// The one value of `name`. RFC 6749 §3.1: "Request and response parameters MUST NOT be
    /// included more than once."
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, OAuthError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "the {name} parameter is sent more than once"
            )));
        }
        Ok(first)
    }

    /// The one value of `name`, which must be present.
    pub fn required<'a>(&'a self, name: &'a str) -> Result<&'a str, OAuthError> {
        self.single(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("the {name} parameter is missing")))
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.all(name).next().is_some()
    }
}

/// The running development authorization server: configuration, signing key and memory.
pub struct DevAuth {
    config: DevAuthConfig,
    key: SigningKey,
    store: Mutex<Store>,
    /// The RFC 8414 metadata document, built once.
    metadata: bytes::Bytes,
    /// Host values and origins accepted by the MCP endpoint; CORS here follows the same rules.
    allowed_hosts: Vec<String>,
    cors_origins: Vec<String>,
}

impl DevAuth {
    /// Starts the development authorization server when `--dev` is on: loads or generates the
    /// signing key and prints the development-only banner. `None` without `--dev`.
    pub fn start(config: &ServeConfig) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(dev) = &config.dev else {
            return Ok(None);
        };
        let (key, origin) = SigningKey::load_or_generate(dev.key_file.as_deref())?;
        let dev_auth = Self::new(
            dev.clone(),
            key,
            config.allowed_hosts.clone(),
            config.cors_origins.clone(),
        );
        dev_auth.banner(origin);
        Ok(Some(Arc::new(dev_auth)))
    }

    fn new(
        config: DevAuthConfig,
        key: SigningKey,
        allowed_hosts: Vec<String>,
        cors_origins: Vec<String>,
    ) -> Self {
        let metadata = bytes::Bytes::from(
            serde_json::to_vec_pretty(&metadata_document(&config)).unwrap_or_default(),
        );
        Self {
            config,
            key,
            store: Mutex::new(Store::default()),
            metadata,
            allowed_hosts,
            cors_origins,
        }
    }

    fn banner(&self, origin: KeyOrigin) {
        let rule = "=".repeat(78);
        tracing::warn!("{rule}");
        tracing::warn!(
            "DEVELOPMENT ONLY: serve --dev runs an authorization server that logs ANYONE in as {:?}",
            self.config.user
        );
        tracing::warn!(
            "without a password. Never expose it; use SK_ENV_URL (Scalekit) for real deployments."
        );
        if self.config.auto_approve {
            tracing::warn!(
                "--dev-auto-approve: authorization requests are approved without a consent page."
            );
        }
        tracing::warn!("{rule}");
        let key = match (origin, &self.config.key_file) {
            (KeyOrigin::Generated, _) => {
                "a fresh key (tokens from earlier runs are refused; --dev-key keeps one)".to_owned()
            }
            (KeyOrigin::CreatedFile, Some(file)) => {
                format!("a new key saved to {}", file.display())
            }
            (_, file) => format!(
                "the key in {}",
                file.as_deref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default()
            ),
        };
        tracing::info!(
            issuer = %self.config.issuer,
            metadata = %self.url("/.well-known/openid-configuration"),
            register = %self.url("/register"),
            kid = %self.key.kid(),
            "dev-auth: signing with {key}"
        );
    }

    /// An endpoint's absolute URL: `{issuer}{path}`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The fetcher for the MCP endpoint's JWKS cache.
    ///
    /// Why not an `HttpFetcher` to `{issuer}/keys`? The bytes are the same either way — this
    /// fetcher hands the cache exactly the document `/dev-auth/keys` serves, and the cache parses
    /// it with `KeySet::from_jwks_json` and verifies tokens with `auth::validate`, the path every
    /// Scalekit token takes. Going over HTTP would only add a startup race (the listener is not up
    /// yet when the cache first loads) and a failure when `--public-url` names a proxy or tunnel
    /// this host cannot reach itself. Another server can still use the dev keys over HTTP with
    /// `--issuer {issuer} --jwks-url {issuer}/keys` (the tests do).
    pub fn key_fetcher(&self) -> Box<dyn KeyFetcher> {
        Box::new(PublishedKeys(self.key.jwks()))
    }

    /// The public routes of the authorization server, to merge into the application. They are not
    /// behind bearer authentication nor the MCP endpoint's Host check: a browser and an MCP client
    /// reach them before having any token.
    pub fn router(self: &Arc<Self>) -> Router {
        let path = |suffix: &str| format!("{DEV_AUTH_PATH}{suffix}");
        Router::new()
            .route(
                &format!("/.well-known/oauth-authorization-server{DEV_AUTH_PATH}"),
                get(metadata),
            )
            .route(&path("/.well-known/openid-configuration"), get(metadata))
            .route(
                &format!("/.well-known/openid-configuration{DEV_AUTH_PATH}"),
                get(metadata),
            )
            .route(&path("/keys"), get(jwks))
            .route(
                &path("/authorize"),
                get(authorize::show).post(authorize::decide),
            )
            .route(&path("/token"), post(token::token))
            .route(&path("/register"), post(register::register))
            .route(&path("/revoke"), post(revoke::revoke))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(self.cors_layer())
            .with_state(self.clone())
    }

    /// Browser-based MCP clients (MCP Inspector) call the metadata, registration and token
    /// endpoints from a page: origins on the hosts the MCP endpoint accepts (loopback and the
    /// public URL's) or listed with --cors-origin may, others may not.
    fn cors_layer(&self) -> CorsLayer {
        let hosts = self.allowed_hosts.clone();
        let origins = self.cors_origins.clone();
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                origin.to_str().is_ok_and(|origin| {
                    crate::server::hosts::origin_allowed(origin, &hosts, &origins)
                })
            }))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
    }
}

/// The RFC 8414 §2 authorization server metadata.
fn metadata_document(config: &DevAuthConfig) -> serde_json::Value {
    let issuer = &config.issuer;
    let mut scopes = config.scopes.clone();
    if !scopes.iter().any(|scope| scope == OFFLINE_ACCESS) {
        scopes.push(OFFLINE_ACCESS.to_owned());
    }
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/keys"),
        "registration_endpoint": format!("{issuer}/register"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "service_documentation": "https://github.com/scalekit-inc/scalekit-mcp/blob/main/docs/dev-auth.md",
    })
}

async fn metadata(State(dev): State<Arc<DevAuth>>) -> Response {
    json_document(dev.metadata.clone())
}

async fn jwks(State(dev): State<Arc<DevAuth>>) -> Response {
    json_document(dev.key.jwks())
}

/// A public JSON document. Short cache: the key changes at each restart without --dev-key.
fn json_document(body: bytes::Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Serves the published JWKS to the JWKS cache (see [`DevAuth::key_fetcher`]).
struct PublishedKeys(bytes::Bytes);

impl KeyFetcher for PublishedKeys {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let keys =
                KeySet::from_jwks_json(&self.0).map_err(|err| format!("dev-auth JWKS: {err}"))?;
            Ok(FetchedKeys {
                keys,
                max_age: None,
            })
        })
    }
}

/// A new random value for a code, token, id or secret (256 bits unless said otherwise).
fn random(bytes: usize) -> Result<String, OAuthError> {
    keys::random_string(bytes)
        .ok_or_else(|| OAuthError::server_error("the system random number generator"))
}

/// Splits a space-separated `scope` parameter (RFC 6749 §3.3), without repeats.
fn split_scopes(scope: Option<&str>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|scope| !scope.is_empty())
    {
        if !scopes.iter().any(|known| known == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

impl DevAuth {
    /// The scopes granted for a request: the requested ones, each known, or every configured scope
    /// when none is requested (RFC 6749 §3.3 lets the server pick a default).
    fn grantable_scopes(
        &self,
        requested: Option<&str>,
        allow_offline: bool,
    ) -> Result<Vec<String>, OAuthError> {
        let requested = split_scopes(requested);
        if requested.is_empty() {
            return Ok(self.config.scopes.clone());
        }
        for scope in &requested {
            let known =
                self.config.scopes.contains(scope) || (allow_offline && scope == OFFLINE_ACCESS);
            if !known {
                let mut supported = self.config.scopes.clone();
                if allow_offline {
                    supported.push(OFFLINE_ACCESS.into());
                }
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!(
                        "unknown scope {:?} (supported: {})",
                        printable(scope),
                        supported.join(" ")
                    ),
                ));
            }
        }
        Ok(requested)
    }

    /// The token audiences: each `resource` parameter, which RFC 8707 §2 requires to be an
    /// absolute URI without a fragment, or this server's resource when there is none.
    fn audiences(&self, params: &Params) -> Result<Vec<String>, OAuthError> {
        let mut audiences: Vec<String> = Vec::new();
        for resource in params.all("resource") {
            let valid = url::Url::parse(resource).is_ok_and(|url| url.fragment().is_none());
            if !valid {
                return Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    format!(
                        "resource {:?} is not an absolute URI without a fragment (RFC 8707 §2)",
                        printable(resource)
                    ),
                ));
            }
            if !audiences.iter().any(|known| known == resource) {
                audiences.push(resource.to_owned());
            }
        }
        if audiences.is_empty() {
            audiences.push(self.config.resource.clone());
        }
        Ok(audiences)
    }
}

/// Client-supplied text made safe to echo in a description: printable ASCII, at most 100 chars.
fn printable(text: &str) -> String {
    text.chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn dev_auth(auto_approve: bool) -> Arc<DevAuth> {
        let config = DevAuthConfig {
            issuer: "http://localhost:3002/dev-auth".into(),
            resource: "http://localhost:3002/".into(),
            user: "dev-user".into(),
            token_ttl: std::time::Duration::from_secs(3600),
            scopes: vec!["mcp:tools".into()],
            auto_approve,
            key_file: None,
        };
        let key =
            SigningKey::from_pem(include_bytes!("../../../tests/fixtures/rsa-a.pem")).unwrap();
        Arc::new(DevAuth::new(config, key, vec!["localhost".into()], vec![]))
    }

    #[test]
    fn params_refuse_repeats_and_ignore_empty_values() {
        let params = Params::parse(b"a=1&a=2&b=&c=3&resource=x&resource=y");
        assert_eq!(
            params.single("a").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(params.single("b").unwrap(), None);
        assert_eq!(params.required("c").unwrap(), "3");
        assert_eq!(params.all("resource").collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn scopes_default_and_unknown_ones_are_refused() {
        let dev = dev_auth(true);
        assert_eq!(dev.grantable_scopes(None, true).unwrap(), ["mcp:tools"]);
        assert_eq!(
            dev.grantable_scopes(Some("mcp:tools offline_access"), true)
                .unwrap(),
            ["mcp:tools", "offline_access"]
        );
        assert_eq!(
            dev.grantable_scopes(Some("offline_access"), false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidScope
        );
        assert_eq!(
            dev.grantable_scopes(Some("admin"), true).unwrap_err().code,
            ErrorCode::InvalidScope
        );
    }

    #[test]
    fn audiences_come_from_resource_or_default() {
        let dev = dev_auth(true);
        assert_eq!(
            dev.audiences(&Params::parse(b"")).unwrap(),
            ["http://localhost:3002/"]
        );
        let two = Params::parse(
            b"resource=https%3A%2F%2Fa.example%2Fmcp&resource=https%3A%2F%2Fb.example",
        );
        assert_eq!(
            dev.audiences(&two).unwrap(),
            ["https://a.example/mcp", "https://b.example"]
        );
        let bad = Params::parse(b"resource=not-a-uri");
        assert_eq!(
            dev.audiences(&bad).unwrap_err().code,
            ErrorCode::InvalidTarget
        );
        let fragment = Params::parse(b"resource=https%3A%2F%2Fa.example%23x");
        assert_eq!(
            dev.audiences(&fragment).unwrap_err().code,
            ErrorCode::InvalidTarget
        );
    }

    #[test]
    fn metadata_advertises_what_the_server_does() {
        let dev = dev_auth(true);
        let metadata: serde_json::Value = serde_json::from_slice(&dev.metadata).unwrap();
        assert_eq!(metadata["issuer"], "http://localhost:3002/dev-auth");
        assert_eq!(
            metadata["code_challenge_methods_supported"],
            json!(["S256"])
        );
        assert_eq!(
            metadata["authorization_response_iss_parameter_supported"],
            true
        );
        assert_eq!(
            metadata["scopes_supported"],
            json!(["mcp:tools", "offline_access"])
        );
    }
}
