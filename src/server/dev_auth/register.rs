//! Dynamic client registration (RFC 7591), and the redirect URI rules shared with `/authorize`.
//!
//! Public clients (`token_endpoint_auth_method: none`, as MCP clients register) and confidential
//! ones (`client_secret_basic`, the RFC 7591 §2 default, or `client_secret_post`) are accepted. A
//! confidential client gets a secret, shown once in the response and kept only as a hash.
//! Redirect URIs are `https`, loopback `http` (RFC 8252 §7.3, any port at request time) or a
//! private-use scheme of a native app (RFC 8252 §7.1).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use url::Url;

use super::keys::sha256;
use super::store::{AuthMethod, Client};
use super::{DevAuth, ErrorCode, OAuthError, printable, random};

const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];
/// Schemes a redirect may never use: they run code or read files in the browser.
const FORBIDDEN_SCHEMES: &[&str] = &["javascript", "data", "file", "vbscript", "about", "blob"];
const MAX_REDIRECT_URIS: usize = 20;

pub async fn register(
    State(dev): State<Arc<DevAuth>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dev.register(&headers, &body) {
        Ok(document) => (
            StatusCode::CREATED,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            axum::Json(document),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

impl DevAuth {
    fn register(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !is_json {
            return Err(metadata_error(
                "send the client metadata as a JSON object with Content-Type: application/json",
            ));
        }
        let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
            return Err(metadata_error(
                "the body is not a JSON object of client metadata (RFC 7591 §2)",
            ));
        };
        let registration = Registration::parse(&request)?;
        let secret = match registration.auth_method {
            AuthMethod::None => None,
            _ => Some(random(32)?),
        };
        let client = Client {
            id: format!("dev_client_{}", random(12)?),
            name: registration.name.clone(),
            secret_hash: secret.as_deref().map(|secret| sha256(secret.as_bytes())),
            auth_method: registration.auth_method,
            redirect_uris: registration.redirect_uris.clone(),
            grant_types: registration.grant_types.clone(),
        };
        let mut response = json!({
            "client_id": client.id,
            "client_id_issued_at": crate::auth::time::now(),
            "redirect_uris": client.redirect_uris,
            "grant_types": client.grant_types,
            "response_types": registration.response_types,
            "token_endpoint_auth_method": client.auth_method.as_str(),
        });
        if let Some(name) = &client.name {
            response["client_name"] = json!(name);
        }
        if let Some(secret) = secret {
            response["client_secret"] = json!(secret);
            // RFC 7591 §3.2.1: 0 means the secret does not expire.
            response["client_secret_expires_at"] = json!(0);
        }
        tracing::info!(client_id = %client.id, auth_method = client.auth_method.as_str(), "dev-auth: registered a client");
        self.store().add_client(client)?;
        Ok(response)
    }
}

/// The client metadata of a registration request, checked.
struct Registration {
    name: Option<String>,
    auth_method: AuthMethod,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    response_types: Vec<String>,
}

impl Registration {
    fn parse(request: &serde_json::Map<String, Value>) -> Result<Self, OAuthError> {
        let auth_method = match request.get("token_endpoint_auth_method") {
            // RFC 7591 §2: "If unspecified or omitted, the default is client_secret_basic".
            None => AuthMethod::ClientSecretBasic,
            Some(Value::String(name)) => AuthMethod::parse(name).ok_or_else(|| {
                metadata_error(format!(
                    "token_endpoint_auth_method {:?} is not supported: use none, client_secret_basic or client_secret_post",
                    printable(name)
                ))
            })?,
            Some(_) => return Err(metadata_error("token_endpoint_auth_method must be a string")),
        };
        let grant_types = string_list(request, "grant_types", &["authorization_code"])?;
        if let Some(unknown) = grant_types
            .iter()
            .find(|grant| !GRANT_TYPES.contains(&grant.as_str()))
        {
            return Err(metadata_error(format!(
                "grant type {:?} is not supported: use authorization_code, refresh_token or client_credentials",
                printable(unknown)
            )));
        }
        let response_types = string_list(request, "response_types", &["code"])?;
        if response_types
            .iter()
            .any(|response_type| response_type != "code")
        {
            return Err(metadata_error(
                "only the \"code\" response type is supported (OAuth 2.1 has no implicit flow)",
            ));
        }
        let uses_code = grant_types
            .iter()
            .any(|grant| grant == "authorization_code");
        if grant_types
            .iter()
            .any(|grant| grant == "client_credentials")
            && auth_method == AuthMethod::None
        {
            return Err(metadata_error(
                "client_credentials needs a confidential client: register with token_endpoint_auth_method \
                 client_secret_basic or client_secret_post",
            ));
        }
        let redirect_uris = string_list(request, "redirect_uris", &[])?;
        if uses_code && redirect_uris.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "redirect_uris is required for the authorization_code grant",
            ));
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                format!("at most {MAX_REDIRECT_URIS} redirect_uris"),
            ));
        }
        for uri in &redirect_uris {
            check_redirect_uri(uri)?;
        }
        let name = match request.get("client_name") {
            Some(Value::String(name)) => Some(name.chars().take(100).collect()),
            _ => None,
        };
        Ok(Self {
            name,
            auth_method,
            redirect_uris,
            grant_types,
            response_types,
        })
    }
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

/// A metadata field that is an array of strings, or `default` when absent.
fn string_list(
    request: &serde_json::Map<String, Value>,
    field: &str,
    default: &[&str],
) -> Result<Vec<String>, OAuthError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(default.iter().map(|item| (*item).to_owned()).collect()),
        Some(Value::Array(items)) if items.len() <= 100 => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| metadata_error(format!("{field} must be an array of strings"))),
        Some(_) => Err(metadata_error(format!(
            "{field} must be an array of strings"
        ))),
    }
}

/// The rules a redirect URI must follow to be registered.
fn check_redirect_uri(uri: &str) -> Result<(), OAuthError> {
    let invalid = |why: &str| {
        OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            format!("redirect URI {:?} {why}", printable(uri)),
        )
    };
    let url = Url::parse(uri).map_err(|_| invalid("is not an absolute URI"))?;
    // RFC 6749 §3.1.2: "The endpoint URI MUST NOT include a fragment component."
    if url.fragment().is_some() {
        return Err(invalid("has a fragment (RFC 6749 §3.1.2)"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(invalid(
            "uses http on a host that is not loopback: use https, or http://127.0.0.1 (RFC 8252 §7.3)",
        )),
        scheme if FORBIDDEN_SCHEMES.contains(&scheme) => {
            Err(invalid("uses a scheme that runs in the browser"))
        }
        _ => Ok(()),
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether a redirect URI sent in a request matches a registered one. Exact string comparison,
/// except that RFC 8252 §7.3 requires loopback URIs to match on any port: "The authorization
/// server MUST allow any port to be specified at the time of the request for loopback IP
/// redirect URIs, to accommodate clients that obtain an available ephemeral port from the
/// operating system at the time of the request."
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(registered), Ok(requested)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    registered.scheme() == "http"
        && requested.scheme() == "http"
        && is_loopback(&registered)
        && registered.host() == requested.host()
        && registered.path() == requested.path()
        && registered.query() == requested.query()
        && requested.fragment().is_none()
        && requested.username().is_empty()
        && requested.password().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port_only() {
        assert!(redirect_uri_matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:51234/callback"
        ));
        assert!(redirect_uri_matches(
            "http://127.0.0.1:8080/callback",
            "http://127.0.0.1:9/callback"
        ));
        assert!(redirect_uri_matches(
            "http://[::1]/cb",
            "http://[::1]:4000/cb"
        ));
        assert!(redirect_uri_matches(
            "http://localhost/cb",
            "http://localhost:4000/cb"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:5/other"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/callback",
            "http://localhost:5/callback"
        ));
        assert!(!redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example:8443/cb"
        ));
        assert!(redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example/cb"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/cb?x=1"
        ));
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(check_redirect_uri("http://127.0.0.1/callback").is_ok());
        assert!(check_redirect_uri("http://localhost:3000/cb").is_ok());
        assert!(check_redirect_uri("https://app.example/cb").is_ok());
        assert!(check_redirect_uri("com.example.app:/oauth").is_ok());
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#x",
            "javascript:alert(1)",
            "/relative",
        ] {
            assert_eq!(
                check_redirect_uri(bad).unwrap_err().code,
                ErrorCode::InvalidRedirectUri,
                "{bad}"
            );
        }
    }

    #[test]
    fn registration_defaults_and_consistency() {
        let parse = |json: Value| Registration::parse(json.as_object().unwrap());
        let public = parse(
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}),
        )
        .unwrap();
        assert_eq!(public.auth_method, AuthMethod::None);
        assert_eq!(public.grant_types, ["authorization_code"]);
        let default = parse(json!({"redirect_uris": ["http://127.0.0.1/cb"]})).unwrap();
        assert_eq!(
            default.auth_method,
            AuthMethod::ClientSecretBasic,
            "RFC 7591 §2 default"
        );
        let machine = parse(json!({"grant_types": ["client_credentials"]})).unwrap();
        assert!(machine.redirect_uris.is_empty());
        let errors = [
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "response_types": ["token"]}),
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["password"]}),
            json!({"redirect_uris": "http://127.0.0.1/cb"}),
            json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
        ];
        for error in errors {
            assert_eq!(
                parse(error.clone()).err().unwrap().code,
                ErrorCode::InvalidClientMetadata,
                "{error}"
            );
        }
        assert_eq!(
            parse(json!({})).err().unwrap().code,
            ErrorCode::InvalidRedirectUri
        );
    }
}
