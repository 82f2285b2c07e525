//! `scalekit-mcp login <SERVER_URL>`: gets an access token the way MCP clients must — discovery
//! (protected resource metadata, or the 2025-03-26 fallback), PKCE, client registration — and
//! keeps it in the OS keyring.

use std::io::Read;

use clap::Args;

use crate::client::assertion::AssertionKey;
use crate::client::discovery::{discover, http_client};
use crate::client::home::{Home, ServerRecord, canonical_server_url};
use crate::client::oauth::{self, BrowserLogin, ClientAuth, ClientIdentity};
use crate::client::secret::Secret;
use crate::client::vault::{Storage, Vault};
use crate::config::Duration;
use crate::error::ExitError;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The MCP server URL, e.g. http://localhost:3002/
    pub server_url: String,

    /// Scope to request (repeatable). Default: the server's challenge, else its metadata.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,

    /// A client id registered in advance with the authorization server (skips registration).
    #[arg(long, env = "SCALEKIT_MCP_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    /// Environment variable holding the client secret (never pass a secret as a flag value).
    /// Default: SK_CLIENT_SECRET.
    #[arg(long, value_name = "VAR", default_value = "SK_CLIENT_SECRET")]
    pub client_secret_env: String,

    /// HTTPS URL of this client's metadata document, used when the server supports Client ID
    /// Metadata Documents.
    #[arg(long, env = "SCALEKIT_MCP_CLIENT_METADATA_URL", value_name = "URL")]
    pub client_metadata_url: Option<String>,

    /// Port of the 127.0.0.1 redirect listener (0 = random; pre-registered clients need a fixed one).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub callback_port: u16,

    /// How long to wait for the browser login.
    #[arg(long, default_value = "300s", value_name = "DURATION")]
    pub timeout: Duration,

    /// Print the login URL instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,

    /// Machine-to-machine login with --client-id and its secret (client credentials grant), no browser.
    #[arg(long, requires = "client_id")]
    pub client_credentials: bool,

    /// With --client-credentials: authenticate with a JWT signed by this private key
    /// (private_key_jwt, RFC 7523) instead of a secret. A PEM key (algorithm from the key: RSA →
    /// RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA) or a private JWK (its kid and alg).
    #[arg(long, requires = "client_credentials", value_name = "FILE")]
    pub client_assertion_key: Option<std::path::PathBuf>,

    /// Read an access token from stdin and store it, for tokens obtained elsewhere.
    #[arg(long, conflicts_with = "client_credentials")]
    pub with_token: bool,

    /// Keep credentials in a plaintext file (mode 0600) in the config directory instead of the OS
    /// keyring. Also SCALEKIT_MCP_STORAGE=file.
    #[arg(long)]
    pub insecure_storage: bool,

    /// Print each discovery step.
    #[arg(short, long)]
    pub verbose: bool,
}

pub async fn run(args: LoginArgs) -> anyhow::Result<()> {
    let server_url = canonical_server_url(&args.server_url)?;
    let home = Home::locate()?;
    let storage = Storage::chosen(args.insecure_storage)?;
    let vault = Vault::open(storage, &home).await?;
    if storage == Storage::File {
        eprintln!(
            "warning: credentials will be stored in plaintext in {} (mode 0600), not in the OS keyring",
            home.path("credentials.json").display()
        );
    }

    let client = http_client()?;
    let server = url::Url::parse(&server_url)?;
    if args.with_token {
        let token = read_token_from_stdin()?;
        let discovered = discover(&client, &server).await.ok();
        let record =
            oauth::store_given_token(&home, &vault, &server_url, discovered.as_ref(), &token)
                .await?;
        print_success(&record);
        return Ok(());
    }

    let discovered = discover(&client, &server).await;
    if args.verbose
        && let Ok(discovered) = &discovered
    {
        for step in &discovered.trace {
            eprintln!("discovery: {step}");
        }
    }
    let discovered = discovered?;
    if discovered.legacy {
        eprintln!(
            "note: {server_url} publishes no protected resource metadata (RFC 9728); logging in the \
             2025-03-26 way, at the authorization server {} (-v shows how it was found)",
            discovered.issuer
        );
    }

    let record = if args.client_credentials {
        let client_id = args.client_id.as_deref().unwrap_or_default();
        let auth = match &args.client_assertion_key {
            Some(path) => {
                // Read before any request, so a bad file costs a usage error, not a round trip.
                AssertionKey::load(path)?;
                ClientAuth::PrivateKeyJwt(path.clone())
            }
            None => ClientAuth::Secret(client_secret(&args.client_secret_env)?
                .ok_or_else(|| ExitError::usage(format!(
                    "--client-credentials needs the client secret in ${} (or a key: --client-assertion-key FILE): \
                     export it (or name another variable with --client-secret-env)",
                    args.client_secret_env
                )))?),
        };
        oauth::login_with_client_credentials(
            &home,
            &vault,
            &server_url,
            &discovered,
            client_id,
            &auth,
            &args.scopes,
        )
        .await?
    } else {
        let identity = ClientIdentity {
            client_secret: match &args.client_id {
                Some(_) => client_secret(&args.client_secret_env)?,
                None => None,
            },
            client_id: args.client_id.clone(),
            client_metadata_url: args.client_metadata_url.clone(),
        };
        let options = BrowserLogin {
            scopes: args.scopes.clone(),
            identity,
            callback_port: args.callback_port,
            timeout: args.timeout.0,
            open_browser: !args.no_browser,
            verify_registration: true,
        };
        oauth::login_in_browser(&home, &vault, &server_url, &discovered, &options).await?
    };
    print_success(&record);
    Ok(())
}

fn client_secret(variable: &str) -> anyhow::Result<Option<Secret>> {
    Ok(std::env::var(variable)
        .ok()
        .filter(|value| !value.is_empty())
        .map(Secret::new))
}

fn read_token_from_stdin() -> anyhow::Result<Secret> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let token = input.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    if token.is_empty() {
        return Err(ExitError::usage(
            "--with-token reads the token from stdin, and stdin was empty",
        )
        .into());
    }
    Ok(Secret::new(token.to_owned()))
}

fn print_success(record: &ServerRecord) {
    let who = record
        .subject
        .as_deref()
        .unwrap_or("(token without a subject)");
    let scopes = if record.scopes.is_empty() {
        "(none)".to_owned()
    } else {
        record.scopes.join(" ")
    };
    let expiry = match record.expires_at {
        Some(at) => format!(
            "expires {} ({})",
            crate::auth::time::relative(at, crate::auth::time::now()),
            crate::auth::time::iso8601(at)
        ),
        None => "expiry unknown".to_owned(),
    };
    let storage = if record.storage == "file" {
        "a 0600 file"
    } else {
        "the OS keyring"
    };
    println!(
        "Logged in to {} as {who}\n  scopes: {scopes}\n  token: {expiry}{}\n  stored in {storage}",
        record.server_url,
        if record.has_refresh_token {
            ", refreshable"
        } else {
            ""
        }
    );
}
