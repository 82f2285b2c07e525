//! The OAuth flows of `login` and the token upkeep of every client command, on rmcp's `auth`
//! module: PKCE S256, `state` and RFC 9207 `iss` checks, RFC 8707 `resource`, dynamic client
//! registration and refresh are rmcp's; discovery, the redirect listener, registration reuse,
//! storage and the cross-process refresh lock are ours.

use std::time::Duration;

use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationMetadata, AuthorizationRequest,
    AuthorizationSession, ClientCredentialsConfig,
};

use super::callback::Listener;
use super::credentials::ServerCredentials;
use super::discovery::Discovered;
use super::home::{Home, Registration, ServerRecord};
use super::secret::Secret;
use super::vault::{Storage, Vault, account};
use crate::error::{Exit, ExitError};

/// Refresh a token this long before it expires, so a request never leaves with a dying token…
pub const REFRESH_MARGIN_SECS: i64 = 60;
/// …or, for a token that lives less than four minutes, a quarter of its lifetime: a 30-second
/// token refreshed 60 s ahead would be refreshed before every request.
const REFRESH_MARGIN_SHARE: i64 = 4;

fn auth_error(message: String) -> anyhow::Error {
    ExitError {
        exit: Exit::Auth,
        message,
    }
    .into()
}

fn rmcp_error(context: &str, error: AuthError) -> anyhow::Error {
    let exit = match &error {
        AuthError::HttpError(_) | AuthError::DiscoveryRequestFailed { .. } => Exit::Unreachable,
        AuthError::CredentialStoreError(_) | AuthError::InternalError(_) => Exit::Internal,
        _ => Exit::Auth,
    };
    ExitError {
        exit,
        message: format!("{context}: {}", crate::error::error_chain(&error)),
    }
    .into()
}

/// How the client identifies itself to the authorization server.
#[derive(Debug, Default, Clone)]
pub struct ClientIdentity {
    /// A pre-registered client id (`--client-id`).
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// A Client ID Metadata Document URL, used when the server supports it.
    pub client_metadata_url: Option<String>,
}

/// Options of the browser login.
#[derive(Debug, Clone)]
pub struct BrowserLogin {
    pub scopes: Vec<String>,
    pub identity: ClientIdentity,
    pub callback_port: u16,
    pub timeout: Duration,
    pub open_browser: bool,
    /// Check that a remembered registration is still known before sending the user to the
    /// browser (costs one request to the authorization endpoint). A step-up skips it: the
    /// registration has just been used.
    pub verify_registration: bool,
}

/// The scopes to request: explicit ones, else the challenge's, else the resource's, else the
/// authorization server's; `offline_access` is added by rmcp when the server offers it.
pub fn select_scopes(explicit: &[String], discovered: &Discovered) -> Vec<String> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    if let Some(scope) = &discovered.challenge_scope {
        return scope.split_whitespace().map(str::to_owned).collect();
    }
    if !discovered.resource_scopes.is_empty() {
        return discovered.resource_scopes.clone();
    }
    discovered
        .metadata
        .scopes_supported
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|scope| scope != "offline_access")
        .collect()
}

/// The record fields fixed at login.
fn template(
    server_url: &str,
    discovered: &Discovered,
    grant: &str,
    storage: Storage,
) -> ServerRecord {
    ServerRecord {
        server_url: server_url.to_owned(),
        resource: discovered.resource.clone(),
        issuer: Some(discovered.issuer.clone()),
        authorization_server: Some(discovered.metadata_document.clone()),
        grant: grant.to_owned(),
        storage: storage.as_str().to_owned(),
        ..ServerRecord::default()
    }
}

/// An rmcp manager for `resource`, with known metadata and our store.
async fn manager(
    resource: &str,
    metadata: AuthorizationMetadata,
    store: ServerCredentials,
) -> anyhow::Result<AuthorizationManager> {
    // The resource URL is the base: rmcp sends it as the RFC 8707 `resource` parameter.
    let mut manager = AuthorizationManager::new_allowing_private_addresses(resource)
        .await
        .map_err(|err| rmcp_error("preparing the OAuth client", err))?;
    manager.set_metadata(metadata);
    manager.set_credential_store(store);
    Ok(manager)
}

/// The authorization-code login with PKCE, through the user's browser.
pub async fn login_in_browser(
    home: &Home,
    vault: &Vault,
    server_url: &str,
    discovered: &Discovered,
    options: &BrowserLogin,
) -> anyhow::Result<ServerRecord> {
    let supports_s256 = discovered
        .metadata
        .code_challenge_methods_supported
        .as_ref()
        .is_some_and(|methods| methods.iter().any(|method| method == "S256"));
    if !supports_s256 {
        return Err(auth_error(format!(
            "the authorization server {} does not list PKCE S256 in code_challenge_methods_supported; \
             logging in without PKCE is unsafe, so scalekit-mcp refuses",
            discovered.issuer
        )));
    }
    let remembered = home.load()?.registrations.get(&discovered.issuer).cloned();
    match browser_flow(
        home,
        vault,
        server_url,
        discovered,
        options,
        remembered.as_ref(),
    )
    .await
    {
        Err(error)
            if remembered.is_some()
                && options.identity.client_id.is_none()
                && is_stale_client(&error) =>
        {
            tracing::info!("the remembered client registration was refused; registering again");
            forget_registration(home, vault, &discovered.issuer).await?;
            browser_flow(home, vault, server_url, discovered, options, None).await
        }
        result => result,
    }
}

fn is_stale_client(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("invalid_client") || text.contains("stale client registration")
}

async fn forget_registration(home: &Home, vault: &Vault, issuer: &str) -> anyhow::Result<()> {
    vault.delete(&account("client-secret", issuer)).await?;
    home.update(|state| {
        state.registrations.remove(issuer);
    })
}

async fn browser_flow(
    home: &Home,
    vault: &Vault,
    server_url: &str,
    discovered: &Discovered,
    options: &BrowserLogin,
    remembered: Option<&Registration>,
) -> anyhow::Result<ServerRecord> {
    let store = ServerCredentials {
        home: home.clone(),
        vault: vault.clone(),
        template: template(
            server_url,
            discovered,
            "authorization_code",
            vault.storage(),
        ),
    };
    let manager = manager(&discovered.resource, discovered.metadata.clone(), store).await?;
    let listener = Listener::bind(options.callback_port).await?;
    let scopes = select_scopes(&options.scopes, discovered);

    let mut request = AuthorizationRequest::new(listener.redirect_uri())
        .with_client_name("scalekit-mcp")
        .with_scopes(scopes.clone());
    let identity = &options.identity;
    let reused = match (&identity.client_id, remembered) {
        (Some(client_id), _) => {
            request = request.with_preregistered_client(client_id);
            if let Some(secret) = &identity.client_secret {
                request = request.with_client_secret(secret.expose());
            }
            false
        }
        (None, Some(registration)) => {
            request = request.with_preregistered_client(&registration.client_id);
            if registration.has_secret
                && let Some(secret) = vault
                    .get(&account("client-secret", &discovered.issuer))
                    .await?
            {
                request = request.with_client_secret(secret.expose());
            }
            true
        }
        (None, None) => {
            if let Some(url) = &identity.client_metadata_url {
                request = request.with_client_metadata_url(url);
            }
            false
        }
    };
    let session = AuthorizationSession::new(manager, request)
        .await
        .map_err(|(_, err)| {
            rmcp_error(
                &format!("starting the login with {}", discovered.issuer),
                err,
            )
        })?;
    let (client_id, _) = session
        .get_credentials()
        .await
        .map_err(|err| rmcp_error("reading the client registration", err))?;
    if reused && options.verify_registration {
        check_registration_alive(session.get_authorization_url()).await?;
    }

    let auth_url = with_consent_prompt(session.get_authorization_url());
    let redirect = wait_for_redirect(listener, &auth_url, options).await?;
    if let Some(error) = &redirect.error {
        return Err(auth_error(format!(
            "the authorization server refused the login: {error}{}",
            redirect
                .error_description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )));
    }
    let expected_state = url::Url::parse(&auth_url).ok().and_then(|url| {
        url.query_pairs()
            .find(|(key, _)| key == "state")
            .map(|(_, value)| value.into_owned())
    });
    let (Some(code), Some(state)) = (redirect.code.as_deref(), redirect.state.as_deref()) else {
        return Err(auth_error(
            "the login redirect carried no code or no state".into(),
        ));
    };
    if expected_state.as_deref() != Some(state) {
        return Err(auth_error(
            "the login redirect's state does not match this login (a stale browser tab, or a forged redirect); \
             run login again"
                .into(),
        ));
    }
    session
        .handle_callback_with_issuer(code, state, redirect.iss.as_deref())
        .await
        .map_err(|err| rmcp_error("exchanging the authorization code", err))?;

    if identity.client_id.is_none() && !reused && !client_id.starts_with("https://") {
        home.update(|state| {
            state.registrations.insert(
                discovered.issuer.clone(),
                Registration {
                    client_id: client_id.clone(),
                    has_secret: false,
                    kind: "dynamic".into(),
                },
            );
        })?;
    }
    finish_login(home, server_url)
}

/// Adds `prompt=consent` to an authorization URL that asks for `offline_access`.
///
/// OpenID Connect Core §11: an OpenID Provider ignores `offline_access` unless the request has
/// `prompt=consent`, so without it the login succeeds but no refresh token comes back (seen
/// with the `oidc-provider` package in tests/interop). Plain OAuth servers ignore the unknown
/// parameter (RFC 6749 §3.1). The official Python MCP SDK does the same. rmcp builds the URL
/// and has no option for it, hence this rewrite.
pub fn with_consent_prompt(auth_url: &str) -> String {
    let Ok(mut url) = url::Url::parse(auth_url) else {
        return auth_url.to_owned();
    };
    let wants_offline = url
        .query_pairs()
        .any(|(key, value)| key == "scope" && value.split(' ').any(|s| s == "offline_access"));
    let has_prompt = url.query_pairs().any(|(key, _)| key == "prompt");
    if !wants_offline || has_prompt {
        return auth_url.to_owned();
    }
    url.query_pairs_mut().append_pair("prompt", "consent");
    url.into()
}

/// A remembered registration can be forgotten by the server (a restarted development server, a
/// deleted client). The authorization endpoint then shows an error page instead of redirecting
/// (RFC 6749 §4.1.2.1), which would leave the user stuck; a 4xx there means "register again".
async fn check_registration_alive(auth_url: &str) -> anyhow::Result<()> {
    let client = super::discovery::http_client()?;
    if let Ok(response) = client
        .get(auth_url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        && matches!(response.status().as_u16(), 400 | 401)
    {
        return Err(auth_error(
            "stale client registration: the authorization server does not know it".into(),
        ));
    }
    Ok(())
}

async fn wait_for_redirect(
    listener: Listener,
    auth_url: &str,
    options: &BrowserLogin,
) -> anyhow::Result<super::callback::Redirect> {
    let opened = options.open_browser && open::that_detached(auth_url).is_ok();
    if opened {
        eprintln!(
            "Opened the login page in your browser. If it did not appear, open this URL:\n  {auth_url}"
        );
    } else {
        eprintln!("Open this URL in a browser to log in:\n  {auth_url}");
    }
    let spinner = crate::output::spinner("waiting for the browser login to finish…");
    let result = tokio::time::timeout(options.timeout, listener.wait()).await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    match result {
        Ok(redirect) => redirect,
        Err(_) => Err(auth_error(format!(
            "timed out after {}s waiting for the browser login; run login again (or raise --timeout)",
            options.timeout.as_secs()
        ))),
    }
}

/// Marks `server_url` as the default server and returns its record.
fn finish_login(home: &Home, server_url: &str) -> anyhow::Result<ServerRecord> {
    home.update(|state| {
        state.default_server = Some(server_url.to_owned());
        state.servers.get(server_url).cloned()
    })?
    .ok_or_else(|| anyhow::anyhow!("the login succeeded but its record was not saved"))
}

/// How a confidential client proves who it is at the token endpoint.
pub enum ClientAuth {
    /// A client secret (`client_secret_basic` or `_post`, as the server supports).
    Secret(Secret),
    /// `private_key_jwt`: an RFC 7523 assertion signed with the key in this file.
    PrivateKeyJwt(std::path::PathBuf),
}

/// Machine-to-machine login (client credentials grant), for CI.
pub async fn login_with_client_credentials(
    home: &Home,
    vault: &Vault,
    server_url: &str,
    discovered: &Discovered,
    client_id: &str,
    auth: &ClientAuth,
    scopes: &[String],
) -> anyhow::Result<ServerRecord> {
    let mut record = template(
        server_url,
        discovered,
        "client_credentials",
        vault.storage(),
    );
    if let ClientAuth::PrivateKeyJwt(path) = auth {
        // An absolute path, so renewing works from any directory.
        record.client_assertion_key = Some(std::path::absolute(path).unwrap_or(path.clone()));
    }
    let store = ServerCredentials {
        home: home.clone(),
        vault: vault.clone(),
        template: record,
    };
    let scopes = select_scopes(scopes, discovered);
    match auth {
        ClientAuth::Secret(secret) => {
            client_credentials_exchange(
                store,
                &discovered.resource,
                discovered.metadata.clone(),
                client_id,
                secret,
                &scopes,
            )
            .await?;
            vault
                .set(&account("client-secret", &discovered.issuer), secret)
                .await?;
        }
        ClientAuth::PrivateKeyJwt(path) => {
            let key = super::assertion::AssertionKey::load(path)?;
            private_key_jwt_exchange(
                &store,
                &discovered.issuer,
                &discovered.metadata_document,
                client_id,
                &key,
                &scopes,
            )
            .await?;
        }
    }
    home.update(|state| {
        state.registrations.insert(
            discovered.issuer.clone(),
            Registration {
                client_id: client_id.to_owned(),
                has_secret: matches!(auth, ClientAuth::Secret(_)),
                kind: "preregistered".into(),
            },
        );
    })?;
    finish_login(home, server_url)
}

async fn client_credentials_exchange(
    store: ServerCredentials,
    resource: &str,
    metadata: AuthorizationMetadata,
    client_id: &str,
    client_secret: &Secret,
    scopes: &[String],
) -> anyhow::Result<()> {
    let config = ClientCredentialsConfig::ClientSecret {
        client_id: client_id.to_owned(),
        client_secret: client_secret.expose().to_owned(),
        scopes: scopes.to_vec(),
        resource: Some(resource.to_owned()),
    };
    let mut manager = manager(resource, metadata, store).await?;
    manager
        .configure_client_credentials(&config)
        .map_err(|err| rmcp_error("configuring the client credentials", err))?;
    manager
        .exchange_client_credentials(&config)
        .await
        .map_err(|err| rmcp_error("requesting a token with the client credentials", err))?;
    Ok(())
}

/// The client credentials grant with `private_key_jwt` (RFC 7523 §2.2): the assertion replaces
/// the secret, and `client_id` is left out of the body (the assertion's `sub` names the client).
///
/// Ours rather than rmcp's: rmcp's signs without a `kid` and reads RSA and P-256/P-384 PEM only,
/// and an authorization server holding several keys for a client needs the `kid`.
async fn private_key_jwt_exchange(
    store: &ServerCredentials,
    issuer: &str,
    metadata: &serde_json::Value,
    client_id: &str,
    key: &super::assertion::AssertionKey,
    scopes: &[String],
) -> anyhow::Result<()> {
    let listed = |field: &str| -> Option<Vec<String>> {
        metadata.get(field)?.as_array().map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
    };
    if let Some(methods) = listed("token_endpoint_auth_methods_supported")
        && !methods.iter().any(|method| method == "private_key_jwt")
    {
        return Err(auth_error(format!(
            "the authorization server {issuer} does not accept private_key_jwt (it lists {}): use a \
             client secret instead of --client-assertion-key",
            methods.join(", ")
        )));
    }
    let algorithm = key.algorithm_name();
    if let Some(algorithms) = listed("token_endpoint_auth_signing_alg_values_supported")
        && !algorithms.contains(&algorithm)
    {
        return Err(auth_error(format!(
            "the authorization server {issuer} does not accept {algorithm} client assertions (it \
             lists {}): give a key of one of those kinds",
            algorithms.join(", ")
        )));
    }
    let token_endpoint = metadata
        .get("token_endpoint")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| auth_error(format!("{issuer} has no token_endpoint")))?;
    let now = crate::auth::time::now();
    let assertion = key.sign(client_id, issuer, now)?;
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", super::assertion::ASSERTION_TYPE),
        ("client_assertion", assertion.expose()),
        ("resource", store.template.resource.as_str()),
    ];
    let scope = scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    let response = super::discovery::http_client()?
        .post(token_endpoint)
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|err| ExitError {
            exit: Exit::Unreachable,
            message: format!(
                "requesting a token from {token_endpoint}: {}",
                crate::error::error_chain(&err)
            ),
        })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let field = |name: &str| body.get(name).and_then(serde_json::Value::as_str);
        return Err(auth_error(format!(
            "{token_endpoint} refused the client assertion (HTTP {status}{}{}): check --client-id and \
             that the authorization server has this key's public half for the client",
            field("error").map(|e| format!(", {e}")).unwrap_or_default(),
            field("error_description")
                .map(|d| format!(": {d}"))
                .unwrap_or_default(),
        )));
    }
    let token: rmcp::transport::auth::OAuthTokenResponse =
        serde_json::from_value(body).map_err(|err| {
            auth_error(format!(
                "{token_endpoint} answered with no usable token ({err})"
            ))
        })?;
    store
        .store_token(client_id, &token, scopes, now as u64)
        .await?;
    Ok(())
}

/// What `call` and `tools` (and the stdio proxy) may do when a server asks for a login or for
/// more scopes in the middle of a session: the `--login` behaviour.
#[derive(Debug, Clone)]
pub struct Reauthorize {
    /// Open the login page in a browser (else print its URL).
    pub open_browser: bool,
    /// How long to wait for the browser login.
    pub timeout: Duration,
    /// Scopes asked for on top of the stored login's and the challenge's (`proxy --scope`); a
    /// first login asks for exactly these when given.
    pub scopes: Vec<String>,
    /// A client registered in advance (`proxy --client-id`), for a first login; its secret, if
    /// any, is read from SK_CLIENT_SECRET as `login` does.
    pub client_id: Option<String>,
    /// Port of the loopback redirect listener (0: a random one).
    pub callback_port: u16,
}

impl Reauthorize {
    /// The `--login` behaviour of `call` and `tools`: the login's defaults.
    pub fn new(open_browser: bool, timeout: Duration) -> Self {
        Self {
            open_browser,
            timeout,
            scopes: Vec::new(),
            client_id: None,
            callback_port: 0,
        }
    }
}

/// `granted` followed by the scopes of `required` it lacks, in order and without duplicates: the
/// scope set a step-up asks for (MCP authorization, "Scope Challenge Handling"), so a new token
/// keeps what the old one could do.
pub fn scope_union(granted: &[String], required: &[String]) -> Vec<String> {
    let mut union: Vec<String> = Vec::new();
    for scope in granted.iter().chain(required) {
        if !union.contains(scope) {
            union.push(scope.clone());
        }
    }
    union
}

/// Logs in to `server_url` after it refused a request with a 401 and no stored login could fix
/// it: discovery from that refusal (its challenge's `resource_metadata` and `scope`), then the
/// browser login (or, for a client-credentials login, a new token without one). Returns the new
/// access token, stored as `login` stores it.
pub async fn login_after_refusal(
    home: &Home,
    server_url: &str,
    challenge: Option<&str>,
    options: &Reauthorize,
) -> anyhow::Result<Secret> {
    crate::output::stop_delayed_spinners();
    let existing = home.load()?.servers.get(server_url).cloned();
    let storage = match &existing {
        Some(record) => Storage::parse(&record.storage),
        None => Storage::chosen(false)?,
    };
    let challenge_scopes = challenge
        .and_then(|c| super::mcp::challenge_attribute(c, "scope"))
        .map(|scope| {
            scope
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    // A login of ours is done again the way it was done, keeping its scopes; a token stored with
    // --with-token (or none) gets a browser login from discovery.
    if let Some(record) = existing.filter(|record| record.grant != "token") {
        eprintln!("{server_url} refused the stored login; logging in again.");
        let scopes = scope_union(
            &scope_union(&record.scopes, &options.scopes),
            &challenge_scopes,
        );
        return reauthorize_record(home, record, scopes, options, true).await;
    }
    let vault = Vault::open(storage, home).await?;
    let server = url::Url::parse(server_url)?;
    let client = super::discovery::http_client()?;
    let discovered = super::discovery::discover_after_refusal(&client, &server, challenge).await?;
    eprintln!("{server_url} asks for a login.");
    let identity = ClientIdentity {
        client_secret: options.client_id.as_ref().and_then(|_| {
            std::env::var("SK_CLIENT_SECRET")
                .ok()
                .filter(|secret| !secret.is_empty())
                .map(Secret::new)
        }),
        client_id: options.client_id.clone(),
        client_metadata_url: None,
    };
    let options = BrowserLogin {
        scopes: options.scopes.clone(),
        identity,
        callback_port: options.callback_port,
        timeout: options.timeout,
        open_browser: options.open_browser,
        verify_registration: true,
    };
    login_in_browser(home, &vault, server_url, &discovered, &options).await?;
    read_access_token(&vault, server_url).await
}

/// [`login_after_refusal`] (or, with `required` scopes, [`step_up`]) for processes that may run
/// side by side, such as several `proxy` processes a desktop client starts at once: the login
/// runs under a lock file of its own per server, so at most one browser login per server is under
/// way, and a process that waited for the lock takes the token the other one stored instead of
/// logging in again. `refused` is the token the server refused (`None`: there was none).
///
/// Not `refresh.lock`: that one is shared by every server and held for a refresh's few
/// milliseconds, where a browser login takes minutes.
pub async fn login_once(
    home: &Home,
    server_url: &str,
    refused: Option<&Secret>,
    challenge: Option<&str>,
    required: &[String],
    options: &Reauthorize,
) -> anyhow::Result<Secret> {
    let _server_lock = lock(home, login_lock_name(server_url)).await?;
    // Logins to two servers through one fixed callback port take turns instead of failing on a
    // port the other holds (always after the server's lock, so no two processes wait on each
    // other).
    let _port_lock = match options.callback_port {
        0 => None,
        port => Some(lock(home, format!("callback-{port}.lock")).await?),
    };
    let stored = home.load()?.servers.get(server_url).cloned();
    if let Some(record) = &stored
        && record.grant != "token"
        && required.iter().all(|scope| record.scopes.contains(scope))
        && let Ok(token) = valid_access_token(home, server_url).await
        && refused.is_none_or(|refused| *refused != token)
    {
        tracing::info!("using the login another process finished while this one waited");
        return Ok(token);
    }
    if required.is_empty() || stored.is_none() {
        login_after_refusal(home, server_url, challenge, options).await
    } else {
        step_up(home, server_url, required, options).await
    }
}

/// Takes the lock file `name` in the config directory, waiting for it off the async threads.
async fn lock(home: &Home, name: String) -> anyhow::Result<std::fs::File> {
    let home = home.clone();
    tokio::task::spawn_blocking(move || home.lock(&name))
        .await
        .map_err(|err| anyhow::anyhow!("waiting for the login lock: {err}"))?
}

/// `login-<first 16 hex digits of SHA-256(server URL)>.lock`: one lock per server, with a file
/// name any file system takes.
fn login_lock_name(server_url: &str) -> String {
    use aws_lc_rs::digest::{SHA256, digest};
    let hash = digest(&SHA256, server_url.as_bytes());
    let hex: String = hash.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("login-{hex}.lock")
}

/// Step-up authorization after a 403 `insufficient_scope`: a new token for the union of the
/// scopes the stored login has and `required` (the challenge's `scope`), through the browser for
/// a user's login and without one for client credentials. Returns the new access token.
pub async fn step_up(
    home: &Home,
    server_url: &str,
    required: &[String],
    options: &Reauthorize,
) -> anyhow::Result<Secret> {
    crate::output::stop_delayed_spinners();
    let record = stored_record(home, server_url)?;
    let scopes = scope_union(&record.scopes, required);
    eprintln!(
        "{server_url} asks for the scope {}; authorizing again with {}.",
        required.join(" "),
        scopes.join(" ")
    );
    reauthorize_record(home, record, scopes, options, false).await
}

/// A new token for an existing login, for `scopes`, with what that login used before (its
/// authorization server, client, grant). `verify_registration`: see [`BrowserLogin`].
async fn reauthorize_record(
    home: &Home,
    record: ServerRecord,
    scopes: Vec<String>,
    options: &Reauthorize,
    verify_registration: bool,
) -> anyhow::Result<Secret> {
    let server_url = record.server_url.clone();
    let vault = Vault::open(Storage::parse(&record.storage), home).await?;
    let login_again = |why: &str| {
        auth_error(format!(
            "{why}: run scalekit-mcp login {server_url}{}",
            scopes
                .iter()
                .map(|scope| format!(" --scope {scope}"))
                .collect::<String>()
        ))
    };
    let document = record
        .authorization_server
        .clone()
        .ok_or_else(|| login_again("the stored login has no authorization server to ask"))?;
    let metadata: AuthorizationMetadata = serde_json::from_value(document.clone())
        .map_err(|_| login_again("the stored authorization server metadata is unusable"))?;
    let issuer = record.issuer.clone().unwrap_or_default();
    match record.grant.as_str() {
        "client_credentials" => {
            let secret = vault.get(&account("client-secret", &issuer)).await?;
            let store = ServerCredentials {
                home: home.clone(),
                vault: vault.clone(),
                template: record.clone(),
            };
            client_credentials_again(store, &record, metadata, secret, &scopes).await?;
        }
        "authorization_code" => {
            let discovered = Discovered {
                challenge: None,
                challenge_scope: None,
                resource: record.resource.clone(),
                resource_scopes: Vec::new(),
                issuer: issuer.clone(),
                metadata,
                metadata_document: document,
                legacy: false,
                trace: Vec::new(),
            };
            // The client the login used: the remembered registration (login_in_browser finds
            // it), else the client id it was given (a pre-registered or metadata-document one).
            let remembered = home.load()?.registrations.get(&issuer).cloned();
            let identity = if remembered.is_some_and(|r| r.client_id == record.client_id) {
                ClientIdentity::default()
            } else {
                ClientIdentity {
                    client_id: Some(record.client_id.clone()),
                    client_secret: std::env::var("SK_CLIENT_SECRET")
                        .ok()
                        .filter(|secret| !secret.is_empty())
                        .map(Secret::new),
                    client_metadata_url: None,
                }
            };
            let options = BrowserLogin {
                scopes,
                identity,
                callback_port: options.callback_port,
                timeout: options.timeout,
                open_browser: options.open_browser,
                verify_registration,
            };
            login_in_browser(home, &vault, &server_url, &discovered, &options).await?;
        }
        _ => {
            return Err(login_again(
                "the stored token was given with login --with-token, so it cannot be renewed here",
            ));
        }
    }
    read_access_token(&vault, &server_url).await
}

async fn read_access_token(vault: &Vault, server_url: &str) -> anyhow::Result<Secret> {
    vault
        .get(&account("access-token", server_url))
        .await?
        .ok_or_else(|| {
            auth_error(format!(
                "no token stored after logging in: run scalekit-mcp login {server_url}"
            ))
        })
}

/// Stores a token obtained elsewhere (`login --with-token`).
pub async fn store_given_token(
    home: &Home,
    vault: &Vault,
    server_url: &str,
    discovered: Option<&Discovered>,
    token: &Secret,
) -> anyhow::Result<ServerRecord> {
    let mut record = ServerRecord {
        server_url: server_url.to_owned(),
        resource: server_url.to_owned(),
        grant: "token".into(),
        storage: vault.storage().as_str().to_owned(),
        ..ServerRecord::default()
    };
    if let Some(discovered) = discovered {
        record = template(server_url, discovered, "token", vault.storage());
    }
    let store = ServerCredentials {
        home: home.clone(),
        vault: vault.clone(),
        template: record,
    };
    let document = serde_json::json!({ "access_token": token.expose(), "token_type": "Bearer" });
    let response = serde_json::from_value(document)?;
    store
        .store_token("", &response, &[], crate::auth::time::now() as u64)
        .await?;
    finish_login(home, server_url)
}

/// A usable access token for `server_url`: the stored one while it has more than a minute left,
/// else a refreshed one. Refreshes are serialised across processes by a lock, and the stored
/// token is read again under the lock, so concurrent commands refresh once and all end with a
/// working token.
pub async fn valid_access_token(home: &Home, server_url: &str) -> anyhow::Result<Secret> {
    let record = stored_record(home, server_url)?;
    let vault = Vault::open(Storage::parse(&record.storage), home).await?;
    if is_fresh(&record)
        && let Some(token) = vault.get(&account("access-token", server_url)).await?
    {
        return Ok(token);
    }
    let _lock = home.lock("refresh.lock")?;
    let record = stored_record(home, server_url)?;
    if is_fresh(&record)
        && let Some(token) = vault.get(&account("access-token", server_url)).await?
    {
        return Ok(token);
    }
    renew_and_read(home, &vault, record).await
}

/// Refreshes even when the stored token still looks valid (after a 401).
pub async fn force_refresh(home: &Home, server_url: &str) -> anyhow::Result<Secret> {
    let _lock = home.lock("refresh.lock")?;
    let record = stored_record(home, server_url)?;
    let vault = Vault::open(Storage::parse(&record.storage), home).await?;
    renew_and_read(home, &vault, record).await
}

/// Renews the token of `record` and returns the newly stored access token.
async fn renew_and_read(
    home: &Home,
    vault: &Vault,
    record: ServerRecord,
) -> anyhow::Result<Secret> {
    let server_url = record.server_url.clone();
    renew(home, vault, record).await?;
    vault
        .get(&account("access-token", &server_url))
        .await?
        .ok_or_else(|| {
            auth_error(format!(
                "no token stored after refreshing: run scalekit-mcp login {server_url}"
            ))
        })
}

fn stored_record(home: &Home, server_url: &str) -> anyhow::Result<ServerRecord> {
    home.load()?
        .servers
        .get(server_url)
        .cloned()
        .ok_or_else(|| {
            auth_error(format!(
                "not logged in to {server_url}: run scalekit-mcp login {server_url}"
            ))
        })
}

/// Whether the record's token has more than its refresh margin left (or no known expiry).
pub fn is_fresh(record: &ServerRecord) -> bool {
    is_fresh_at(record, crate::auth::time::now())
}

fn is_fresh_at(record: &ServerRecord, now: i64) -> bool {
    record
        .expires_at
        .is_none_or(|expires_at| expires_at - now > refresh_margin(record))
}

/// [`REFRESH_MARGIN_SECS`], or a quarter of the token's lifetime when that is shorter.
fn refresh_margin(record: &ServerRecord) -> i64 {
    let lifetime = match (record.expires_at, record.received_at) {
        (Some(expires_at), Some(received_at)) => expires_at - received_at as i64,
        _ => return REFRESH_MARGIN_SECS,
    };
    // At least a second: expiry is known to the second, so "0 s left" may be a few milliseconds.
    (lifetime / REFRESH_MARGIN_SHARE).clamp(1, REFRESH_MARGIN_SECS)
}

/// The client credentials grant again, for `scopes`: with the stored secret, or a new assertion
/// signed with the remembered key file.
async fn client_credentials_again(
    store: ServerCredentials,
    record: &ServerRecord,
    metadata: AuthorizationMetadata,
    secret: Option<Secret>,
    scopes: &[String],
) -> anyhow::Result<()> {
    let server_url = &record.server_url;
    if let Some(path) = &record.client_assertion_key {
        let key = super::assertion::AssertionKey::load(path).map_err(|err| {
            auth_error(format!(
                "{err:#}; the login of {server_url} signs with that file: restore it, or run \
                 scalekit-mcp login {server_url} --client-credentials again"
            ))
        })?;
        let document = record.authorization_server.clone().unwrap_or_default();
        let issuer = record.issuer.clone().unwrap_or_default();
        return private_key_jwt_exchange(
            &store,
            &issuer,
            &document,
            &record.client_id,
            &key,
            scopes,
        )
        .await;
    }
    let secret = secret.ok_or_else(|| {
        auth_error(format!(
            "the client secret is no longer stored: run scalekit-mcp login {server_url}"
        ))
    })?;
    client_credentials_exchange(
        store,
        &record.resource,
        metadata,
        &record.client_id,
        &secret,
        scopes,
    )
    .await
}

/// Gets a new access token: the refresh token, or the client credentials again.
async fn renew(home: &Home, vault: &Vault, record: ServerRecord) -> anyhow::Result<()> {
    let server_url = record.server_url.clone();
    let login_again = |why: &str| auth_error(format!("{why}: run scalekit-mcp login {server_url}"));
    let metadata: AuthorizationMetadata = record
        .authorization_server
        .clone()
        .and_then(|document| serde_json::from_value(document).ok())
        .ok_or_else(|| login_again("the stored token expired and cannot be renewed"))?;
    let issuer = record.issuer.clone().unwrap_or_default();
    let secret = vault.get(&account("client-secret", &issuer)).await?;
    let store = ServerCredentials {
        home: home.clone(),
        vault: vault.clone(),
        template: record.clone(),
    };

    if record.grant == "client_credentials" {
        return client_credentials_again(store, &record, metadata, secret, &record.scopes).await;
    }
    if !record.has_refresh_token {
        return Err(login_again(
            "the access token expired and there is no refresh token",
        ));
    }
    let mut manager = manager(&record.resource, metadata, store).await?;
    let mut config = rmcp::transport::auth::OAuthClientConfig::new(
        record.client_id.clone(),
        "http://127.0.0.1/callback",
    );
    if let Some(secret) = &secret {
        config = config.with_client_secret(secret.expose());
    }
    manager
        .configure_client(config)
        .map_err(|err| rmcp_error("configuring the OAuth client", err))?;
    match manager.refresh_token().await {
        Ok(_) => Ok(()),
        Err(AuthError::TokenRefreshRejected(_) | AuthError::AuthorizationRequired) => Err(
            login_again("the authorization server refused the refresh token"),
        ),
        Err(err) => Err(rmcp_error("refreshing the access token", err)),
    }
}

#[cfg(test)]
mod tests {
    use super::{ServerRecord, is_fresh_at, with_consent_prompt};

    fn token(received_at: i64, lifetime: i64) -> ServerRecord {
        ServerRecord {
            received_at: Some(received_at as u64),
            expires_at: Some(received_at + lifetime),
            ..ServerRecord::default()
        }
    }

    #[test]
    fn an_hour_long_token_is_refreshed_a_minute_before_it_expires() {
        let hour = token(1_000, 3_600);
        assert!(is_fresh_at(&hour, 1_000 + 3_600 - 61));
        assert!(!is_fresh_at(&hour, 1_000 + 3_600 - 60));
    }

    #[test]
    fn a_short_token_is_refreshed_in_its_last_quarter_not_at_every_request() {
        let half_minute = token(1_000, 30);
        assert!(
            is_fresh_at(&half_minute, 1_000),
            "a new 30 s token is fresh"
        );
        assert!(is_fresh_at(&half_minute, 1_000 + 22));
        assert!(!is_fresh_at(&half_minute, 1_000 + 23), "7 s left: refresh");
        let five_seconds = token(1_000, 5);
        assert!(is_fresh_at(&five_seconds, 1_003));
        assert!(!is_fresh_at(&five_seconds, 1_004));
        let three_seconds = token(1_000, 3);
        assert!(is_fresh_at(&three_seconds, 1_001));
        assert!(
            !is_fresh_at(&three_seconds, 1_002),
            "never used in its last second"
        );
    }

    #[test]
    fn without_a_receipt_time_the_margin_is_a_minute_and_without_expiry_never_stale() {
        let unknown_start = ServerRecord {
            expires_at: Some(1_100),
            ..ServerRecord::default()
        };
        assert!(!is_fresh_at(&unknown_start, 1_040));
        assert!(is_fresh_at(&unknown_start, 1_039));
        assert!(is_fresh_at(&ServerRecord::default(), i64::MAX));
    }

    #[test]
    fn offline_access_requests_get_prompt_consent() {
        let url = "https://as.example/authorize?response_type=code&scope=mcp%3Atools+offline_access&state=s";
        assert_eq!(with_consent_prompt(url), format!("{url}&prompt=consent"));
    }

    #[test]
    fn other_requests_are_left_alone() {
        for url in [
            "https://as.example/authorize?response_type=code&scope=mcp%3Atools&state=s",
            "https://as.example/authorize?scope=offline_access&prompt=login",
            "https://as.example/authorize?scope=not_offline_access",
        ] {
            assert_eq!(with_consent_prompt(url), url);
        }
    }
}
