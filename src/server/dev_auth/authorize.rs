//! The authorization endpoint: the authorization code flow with PKCE, and the consent page.
//!
//! `GET /dev-auth/authorize` checks the request (RFC 6749 §4.1.1, RFC 7636, RFC 8707) and then
//! either shows the consent page or, with `--dev-auto-approve`, redirects at once with a code.
//! `POST /dev-auth/authorize` receives the consent page's answer (a one-time consent id and
//! approve / deny); a POSTed authorization request (RFC 6749 §3.1 allows it) is handled like GET.
//!
//! RFC 6749 §4.1.2.1 splits errors in two: when the client or its redirect URI is unknown, the
//! user is told and nothing is redirected (a redirect could go anywhere); every other error is
//! sent back to the client's redirect URI with `error`, `error_description`, `state` and `iss`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use url::Url;

use super::register::redirect_uri_matches;
use super::store::{AuthCode, AuthRequest, Consent};
use super::{
    CODE_TTL_SECONDS, CONSENT_TTL_SECONDS, DevAuth, ErrorCode, OAuthError, Params, printable,
    random,
};
use crate::auth::time;

const CONSENT_PAGE: &str = include_str!("consent.html");

pub async fn show(State(dev): State<Arc<DevAuth>>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    dev.begin(&params, time::now())
}

pub async fn decide(State(dev): State<Arc<DevAuth>>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    if params.contains("consent") {
        dev.answer_consent(&params, time::now())
    } else {
        dev.begin(&params, time::now())
    }
}

/// Where errors go once the client and its redirect URI are known.
#[derive(Clone)]
struct ReplyTo {
    redirect_uri: String,
    state: Option<String>,
}

/// A refused authorization request.
enum Refused {
    /// Shown to the user: the client or redirect URI cannot be trusted with a redirect.
    Direct(OAuthError),
    /// Sent back to the client.
    Redirect(OAuthError, ReplyTo),
}

impl DevAuth {
    fn begin(&self, params: &Params, now: i64) -> Response {
        let request = match self.check_request(params) {
            Ok(request) => request,
            Err(Refused::Direct(error)) => return error.into_response(),
            Err(Refused::Redirect(error, reply_to)) => {
                return self.redirect_error(&reply_to, &error, StatusCode::FOUND);
            }
        };
        if self.config.auto_approve {
            return self.approve(request, now, StatusCode::FOUND);
        }
        let reply_to = ReplyTo {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
        };
        match self.hold_for_consent(request, now) {
            Ok(page) => page,
            Err(error) => self.redirect_error(&reply_to, &error, StatusCode::FOUND),
        }
    }

    /// Checks an authorization request in the order RFC 6749 §4.1.2.1 implies: client and
    /// redirect URI first (errors shown), then the rest (errors redirected).
    fn check_request(&self, params: &Params) -> Result<AuthRequest, Refused> {
        let (client, redirect_uri) = self.client_and_redirect(params).map_err(Refused::Direct)?;
        let reply_to = ReplyTo {
            redirect_uri: redirect_uri.clone(),
            state: params.all("state").next().map(str::to_owned),
        };
        let refuse = |error| Refused::Redirect(error, reply_to.clone());

        for name in [
            "response_type",
            "code_challenge",
            "code_challenge_method",
            "scope",
            "state",
        ] {
            params.single(name).map_err(refuse)?;
        }
        match params.single("response_type").map_err(refuse)? {
            Some("code") => {}
            None => {
                return Err(refuse(OAuthError::invalid_request(
                    "the response_type parameter is missing: use code",
                )));
            }
            Some(other) => {
                return Err(refuse(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    format!(
                        "response_type {:?} is not supported: use code (OAuth 2.1 has no implicit flow)",
                        printable(other)
                    ),
                )));
            }
        }
        if !client.allows_grant("authorization_code") {
            return Err(refuse(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client did not register the authorization_code grant type",
            )));
        }
        let code_challenge = check_pkce(params).map_err(refuse)?;
        let scopes = self
            .grantable_scopes(params.single("scope").map_err(refuse)?, true)
            .map_err(refuse)?;
        let audiences = self.audiences(params).map_err(refuse)?;
        Ok(AuthRequest {
            client_id: client.id,
            client_name: client.name,
            redirect_uri,
            redirect_uri_given: params.contains("redirect_uri"),
            state: reply_to.state.clone(),
            code_challenge,
            scopes,
            audiences,
        })
    }

    /// The registered client and the redirect URI to use. RFC 6749 §3.1.2.3: without
    /// `redirect_uri`, the client must have registered exactly one.
    fn client_and_redirect(
        &self,
        params: &Params,
    ) -> Result<(super::store::Client, String), OAuthError> {
        let client_id = params.required("client_id")?;
        let client = self.store().client(client_id).cloned().ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidClient,
                format!(
                    "unknown client_id {:?}: register the client at {} first (clients are forgotten when the server restarts)",
                    printable(client_id),
                    self.url("/register")
                ),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?;
        let redirect_uri = match (
            params.single("redirect_uri")?,
            client.redirect_uris.as_slice(),
        ) {
            (Some(uri), registered)
                if registered
                    .iter()
                    .any(|known| redirect_uri_matches(known, uri)) =>
            {
                uri.to_owned()
            }
            (Some(uri), registered) => {
                return Err(OAuthError::invalid_request(format!(
                    "redirect_uri {:?} is not registered for this client (registered: {})",
                    printable(uri),
                    registered.join(", ")
                )));
            }
            (None, [only]) => only.clone(),
            (None, []) => {
                return Err(OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    "this client registered no redirect_uris, so it cannot use the authorization code flow",
                ));
            }
            (None, _) => {
                return Err(OAuthError::invalid_request(
                    "the redirect_uri parameter is missing, and the client registered several",
                ));
            }
        };
        Ok((client, redirect_uri))
    }

    fn hold_for_consent(&self, request: AuthRequest, now: i64) -> Result<Response, OAuthError> {
        let id = random(32)?;
        let page = consent_page(&request, &self.config.user, &id);
        let consent = Consent {
            request,
            expires_at: now + CONSENT_TTL_SECONDS,
        };
        self.store().add_consent(id, consent, now)?;
        Ok(page)
    }

    fn answer_consent(&self, params: &Params, now: i64) -> Response {
        let decision = match params.single("decision") {
            Ok(Some(decision @ ("approve" | "deny"))) => decision,
            Ok(_) => {
                return OAuthError::invalid_request("decision must be approve or deny")
                    .into_response();
            }
            Err(error) => return error.into_response(),
        };
        let consent = params
            .single("consent")
            .ok()
            .flatten()
            .and_then(|id| self.store().take_consent(id, now));
        let Some(consent) = consent else {
            return OAuthError::invalid_request(
                "this consent page has expired or was already answered: start the login again from the client",
            )
            .into_response();
        };
        // 303: the browser follows with GET, whatever the form's method.
        if decision == "approve" {
            return self.approve(consent.request, now, StatusCode::SEE_OTHER);
        }
        let reply_to = ReplyTo {
            redirect_uri: consent.request.redirect_uri,
            state: consent.request.state,
        };
        let denied = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
        self.redirect_error(&reply_to, &denied, StatusCode::SEE_OTHER)
    }

    /// Issues a single-use code for an approved request and sends the user back with it.
    fn approve(&self, request: AuthRequest, now: i64, status: StatusCode) -> Response {
        let reply_to = ReplyTo {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
        };
        let client_id = request.client_id.clone();
        let issued = random(32).and_then(|code| {
            let entry = AuthCode {
                request,
                sub: self.config.user.clone(),
                expires_at: now + CODE_TTL_SECONDS,
                used: false,
                family: None,
            };
            self.store().add_code(&code, entry, now)?;
            Ok(code)
        });
        match issued {
            Ok(code) => {
                tracing::info!(client_id = %client_id, sub = %self.config.user, "dev-auth: approved an authorization request");
                self.redirect(&reply_to, &[("code", &code)], status)
            }
            Err(error) => self.redirect_error(&reply_to, &error, status),
        }
    }

    fn redirect_error(
        &self,
        reply_to: &ReplyTo,
        error: &OAuthError,
        status: StatusCode,
    ) -> Response {
        let pairs = [
            ("error", error.code.as_str()),
            ("error_description", error.description.as_str()),
        ];
        self.redirect(reply_to, &pairs, status)
    }

    /// Redirects to the client with `pairs`, `state` when the request had one, and `iss`
    /// (RFC 9207 §2: "the authorization server MUST include the iss parameter" in every
    /// authorization response, success or error, once it advertises support).
    fn redirect(&self, reply_to: &ReplyTo, pairs: &[(&str, &str)], status: StatusCode) -> Response {
        let Ok(mut url) = Url::parse(&reply_to.redirect_uri) else {
            return OAuthError::invalid_request("the redirect_uri is not a URL").into_response();
        };
        {
            let mut query = url.query_pairs_mut();
            query.extend_pairs(pairs);
            if let Some(state) = &reply_to.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.config.issuer);
        }
        let Ok(location) = HeaderValue::from_str(url.as_str()) else {
            return OAuthError::invalid_request(
                "the redirect_uri cannot be sent in a Location header",
            )
            .into_response();
        };
        (
            status,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response()
    }
}

/// The S256 code challenge of a request. PKCE is required (OAuth 2.1 §4.1.1) and only S256 is
/// accepted: RFC 7636 §4.3 makes `plain` the default when the method is absent, so an absent
/// method is refused too.
fn check_pkce(params: &Params) -> Result<String, OAuthError> {
    let Some(challenge) = params.single("code_challenge")? else {
        return Err(OAuthError::invalid_request(
            "the code_challenge parameter is missing: PKCE with S256 is required (RFC 7636)",
        ));
    };
    match params.single("code_challenge_method")? {
        Some("S256") => {}
        None => {
            return Err(OAuthError::invalid_request(
                "the code_challenge_method parameter is missing: send S256 (its default, plain, is refused)",
            ));
        }
        Some(method) => {
            return Err(OAuthError::invalid_request(format!(
                "code_challenge_method {:?} is refused: only S256 is supported",
                printable(method)
            )));
        }
    }
    // BASE64URL(SHA256(verifier)) without padding is always 43 characters (RFC 7636 §4.2).
    let well_formed = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(OAuthError::invalid_request(
            "code_challenge is not an S256 challenge: send BASE64URL(SHA256(code_verifier)), 43 characters",
        ));
    }
    Ok(challenge.to_owned())
}

/// The consent page, with every client-supplied value HTML-escaped.
fn consent_page(request: &AuthRequest, user: &str, consent_id: &str) -> Response {
    let client = request.client_name.as_deref().unwrap_or(&request.client_id);
    let html = CONSENT_PAGE
        .replace("{{client}}", &escape(client))
        .replace("{{client_id}}", &escape(&request.client_id))
        .replace("{{redirect}}", &escape(&request.redirect_uri))
        .replace("{{scopes}}", &escape(&request.scopes.join(" ")))
        .replace("{{audiences}}", &escape(&request.audiences.join(", ")))
        .replace("{{user}}", &escape(user))
        .replace("{{consent}}", &escape(consent_id));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // No scripts, no framing (clickjacking the Approve button), no referrer leaking the query.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                ),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        html,
    )
        .into_response()
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_requires_s256() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let ok = Params::parse(
            format!("code_challenge={challenge}&code_challenge_method=S256").as_bytes(),
        );
        assert_eq!(check_pkce(&ok).unwrap(), challenge);
        for query in [
            "code_challenge_method=S256".to_owned(),
            format!("code_challenge={challenge}"),
            format!("code_challenge={challenge}&code_challenge_method=plain"),
            "code_challenge=short&code_challenge_method=S256".to_owned(),
        ] {
            assert_eq!(
                check_pkce(&Params::parse(query.as_bytes()))
                    .unwrap_err()
                    .code,
                ErrorCode::InvalidRequest,
                "{query}"
            );
        }
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape(r#"<b a="1">&'"#),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }
}
