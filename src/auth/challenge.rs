//! The answers to a request that fails authentication: status, `WWW-Authenticate` challenge and
//! JSON body, exactly as RFC 6750 §3 and RFC 9728 §5.1 describe them.
//!
//! - No credentials: 401 with `realm` and `resource_metadata` (and `scope` when scopes are
//!   required), and no `error` attribute (RFC 6750 §3.1).
//! - A token that was presented and refused: 401 with `error="invalid_token"`.
//! - A valid token without a required scope: 403 with `error="insufficient_scope"` and the
//!   `scope` needed, so a client can step up.
//! - No signing keys loaded yet: 503 with `Retry-After`; no token is ever accepted without keys.

use http::{HeaderValue, StatusCode};
use serde_json::json;

use super::validate::Rejection;

/// Why a request was not let through.
#[derive(Debug, Clone)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` credentials at all.
    NoCredentials,
    /// An `Authorization` header that is not a usable bearer token (empty, or sent twice).
    BadCredentials(&'static str),
    /// A token that failed a check.
    Rejected(Rejection),
    /// The signing keys have never loaded, so no token can be checked.
    KeysUnavailable,
}

/// A complete refusal, ready to become an HTTP response.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub www_authenticate: Option<HeaderValue>,
    pub retry_after_seconds: Option<u64>,
    pub body: serde_json::Value,
}

/// The fixed parts of every challenge this server sends.
#[derive(Debug, Clone)]
pub struct ChallengeParams {
    /// Absolute URL of the protected resource metadata (RFC 9728 §5.1).
    pub resource_metadata: String,
    /// Scopes every request needs; advertised in the challenge so clients request them up front.
    pub required_scopes: Vec<String>,
}

impl ChallengeParams {
    /// The refusal for `failure`.
    pub fn refuse(&self, failure: &AuthFailure) -> Refusal {
        match failure {
            AuthFailure::NoCredentials => Refusal {
                status: StatusCode::UNAUTHORIZED,
                www_authenticate: Some(self.header(None, &self.required_scopes)),
                retry_after_seconds: None,
                body: json!({
                    "error": "unauthorized",
                    "error_description": "missing bearer token: send Authorization: Bearer <access token>",
                }),
            },
            AuthFailure::BadCredentials(reason) => self.invalid_token(reason),
            AuthFailure::Rejected(Rejection::InsufficientScope { missing }) => {
                let description = format!("missing required scope: {}", missing.join(" "));
                Refusal {
                    status: StatusCode::FORBIDDEN,
                    www_authenticate: Some(self.header(
                        Some(("insufficient_scope", &description)),
                        &self.required_scopes,
                    )),
                    retry_after_seconds: None,
                    body: json!({ "error": "insufficient_scope", "error_description": description }),
                }
            }
            AuthFailure::Rejected(Rejection::ToolScope {
                tool,
                needs,
                missing,
            }) => {
                let words = |list: &str| list.split(' ').map(str::to_owned).collect::<Vec<_>>();
                self.refuse_tool(tool, &words(needs), &words(missing))
            }
            AuthFailure::Rejected(rejection) => self.invalid_token(&rejection.to_string()),
            AuthFailure::KeysUnavailable => Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                www_authenticate: None,
                retry_after_seconds: Some(5),
                body: json!({
                    "error": "temporarily_unavailable",
                    "error_description": "the authorization server's signing keys have not loaded yet; retry shortly",
                }),
            },
        }
    }

    /// The refusal for a `tools/call` whose token lacks scopes its tool needs: 403
    /// `insufficient_scope` naming every scope the call needs (the tool's and those every request
    /// needs), so that a client asks for all of them at once (MCP authorization spec, "Scope
    /// Challenge Handling"). `offline_access` is never named: it is not a resource's scope.
    pub fn refuse_tool(&self, tool: &str, tool_scopes: &[String], missing: &[String]) -> Refusal {
        let mut scopes: Vec<String> = self.required_scopes.clone();
        for scope in tool_scopes {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        scopes.retain(|scope| scope != "offline_access");
        let description = no_parameter_syntax(
            &Rejection::ToolScope {
                tool: tool.to_owned(),
                needs: tool_scopes.join(" "),
                missing: missing.join(" "),
            }
            .to_string(),
        );
        Refusal {
            status: StatusCode::FORBIDDEN,
            www_authenticate: Some(
                self.header(Some(("insufficient_scope", &description)), &scopes),
            ),
            retry_after_seconds: None,
            body: json!({ "error": "insufficient_scope", "error_description": description }),
        }
    }

    fn invalid_token(&self, description: &str) -> Refusal {
        let description = &no_parameter_syntax(description);
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            www_authenticate: Some(
                self.header(Some(("invalid_token", description)), &self.required_scopes),
            ),
            retry_after_seconds: None,
            body: json!({ "error": "invalid_token", "error_description": description }),
        }
    }

    fn header(&self, error: Option<(&str, &str)>, scopes: &[String]) -> HeaderValue {
        let mut value = format!(
            "Bearer realm=\"OAuth\", resource_metadata=\"{}\"",
            quoted_string_safe(&self.resource_metadata)
        );
        if !scopes.is_empty() {
            value.push_str(&format!(
                ", scope=\"{}\"",
                quoted_string_safe(&scopes.join(" "))
            ));
        }
        if let Some((code, description)) = error {
            value.push_str(&format!(
                ", error=\"{code}\", error_description=\"{}\"",
                quoted_string_safe(description)
            ));
        }
        HeaderValue::from_str(&value)
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"OAuth\""))
    }
}

/// A description can quote attacker-chosen text (a `kid`, an issuer). Clients that scan the
/// header for `scope=` or `resource_metadata=` (rmcp's parser finds the first occurrence, quoted
/// or not) would read `kid x scope=admin` as a scope to request: `=` is replaced so no quoted
/// text can look like a parameter. Body and header keep the same description.
fn no_parameter_syntax(description: &str) -> String {
    description.replace('=', ":")
}

/// RFC 6750 §3 limits attribute values to %x20-21 / %x23-5B / %x5D-7E: printable ASCII without
/// `"` and `\`. Anything else is replaced so the header is always well-formed.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(scopes: &[&str]) -> ChallengeParams {
        ChallengeParams {
            resource_metadata: "http://localhost:3002/.well-known/oauth-protected-resource".into(),
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn header(refusal: &Refusal) -> &str {
        refusal.www_authenticate.as_ref().unwrap().to_str().unwrap()
    }

    #[test]
    fn no_credentials_has_no_error_attribute() {
        let refusal = params(&[]).refuse(&AuthFailure::NoCredentials);
        assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&refusal),
            "Bearer realm=\"OAuth\", resource_metadata=\"http://localhost:3002/.well-known/oauth-protected-resource\""
        );
    }

    #[test]
    fn no_credentials_advertises_required_scopes() {
        let refusal = params(&["mcp:tools", "mcp:read"]).refuse(&AuthFailure::NoCredentials);
        assert!(header(&refusal).ends_with(", scope=\"mcp:tools mcp:read\""));
    }

    #[test]
    fn rejected_token_is_invalid_token_with_reason() {
        let refusal = params(&[]).refuse(&AuthFailure::Rejected(Rejection::Signature));
        assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
        assert!(
            header(&refusal)
                .ends_with(", error=\"invalid_token\", error_description=\"invalid signature\"")
        );
        assert_eq!(refusal.body["error_description"], "invalid signature");
    }

    #[test]
    fn missing_scope_is_403_insufficient_scope() {
        let rejection = Rejection::InsufficientScope {
            missing: vec!["admin".into()],
        };
        let refusal = params(&["admin"]).refuse(&AuthFailure::Rejected(rejection));
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        let value = header(&refusal);
        assert!(value.contains("scope=\"admin\""), "{value}");
        assert!(value.contains("error=\"insufficient_scope\""), "{value}");
        assert!(value.contains("resource_metadata=\""), "{value}");
    }

    #[test]
    fn descriptions_cannot_smuggle_parameters() {
        let rejection = Rejection::UnknownKey("x scope=admin resource_metadata=http://evil".into());
        let refusal = params(&[]).refuse(&AuthFailure::Rejected(rejection));
        let value = header(&refusal);
        assert!(!value.contains("scope="), "{value}");
        assert_eq!(value.matches("resource_metadata=").count(), 1, "{value}");
        assert_eq!(
            refusal.body["error_description"],
            challenge_description(value)
        );
    }

    fn challenge_description(value: &str) -> &str {
        value
            .split("error_description=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"')
    }

    #[test]
    fn descriptions_cannot_break_the_header() {
        let refusal = params(&[]).refuse(&AuthFailure::BadCredentials("a \"quoted\"\\ value\n"));
        assert!(header(&refusal).ends_with("error_description=\"a 'quoted'' value?\""));
    }
}
