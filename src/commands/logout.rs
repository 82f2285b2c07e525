//! `scalekit-mcp logout [SERVER_URL] [--all]`: revokes the tokens at the authorization server
//! when it offers revocation (RFC 7009), then removes the stored secrets and metadata.

use clap::Args;

use crate::client::assertion::{ASSERTION_TYPE, AssertionKey};
use crate::client::credentials::ServerCredentials;
use crate::client::home::{Home, ServerRecord};
use crate::client::secret::Secret;
use crate::client::vault::{Storage, Vault, account};
use crate::commands::token::target_server;

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The server; default: the default server.
    #[arg(value_name = "SERVER_URL", conflicts_with = "all")]
    pub server_url: Option<String>,

    /// Log out of every server.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(args: &LogoutArgs) -> anyhow::Result<()> {
    let home = Home::locate()?;
    let state = home.load()?;
    let targets: Vec<ServerRecord> = if args.all {
        state.servers.values().cloned().collect()
    } else {
        let url = target_server(&home, args.server_url.as_deref())?;
        match state.servers.get(&url) {
            Some(record) => vec![record.clone()],
            None => {
                println!("Not logged in to {url}.");
                return Ok(());
            }
        }
    };
    for record in targets {
        let vault = Vault::open(Storage::parse(&record.storage), &home).await?;
        let revoked = revoke(&vault, &record).await;
        let credentials = ServerCredentials {
            home: home.clone(),
            vault,
            template: record.clone(),
        };
        credentials.remove().await?;
        let note = match revoked {
            Some(Ok(())) => " (tokens revoked at the authorization server)",
            Some(Err(error)) => {
                eprintln!(
                    "warning: could not revoke the token at the authorization server: {error}"
                );
                ""
            }
            None => "",
        };
        println!("Logged out of {}{note}", record.server_url);
    }
    Ok(())
}

/// Revokes the refresh token (which ends its access tokens too at most servers) or the access
/// token. `None` when the server offers no revocation endpoint.
async fn revoke(vault: &Vault, record: &ServerRecord) -> Option<Result<(), String>> {
    let endpoint = record
        .authorization_server
        .as_ref()?
        .get("revocation_endpoint")?
        .as_str()?
        .to_owned();
    let (kind, hint) = if record.has_refresh_token {
        ("refresh-token", "refresh_token")
    } else {
        ("access-token", "access_token")
    };
    let token = vault.get(&account(kind, &record.server_url)).await.ok()??;
    let secret = match &record.issuer {
        Some(issuer) => vault
            .get(&account("client-secret", issuer))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    // A private_key_jwt client authenticates its revocation as it did its token request.
    let assertion = match (&record.client_assertion_key, &record.issuer) {
        (Some(path), Some(issuer)) => {
            let signed = AssertionKey::load(path)
                .and_then(|key| key.sign(&record.client_id, issuer, crate::auth::time::now()));
            match signed {
                Ok(assertion) => Some(assertion),
                Err(error) => return Some(Err(format!("{error:#}"))),
            }
        }
        _ => None,
    };
    let client = Client {
        id: &record.client_id,
        secret: secret.as_ref(),
        assertion: assertion.as_ref(),
    };
    Some(post_revocation(&endpoint, &token, hint, &client).await)
}

/// How the client authenticates a revocation request.
struct Client<'a> {
    id: &'a str,
    secret: Option<&'a Secret>,
    assertion: Option<&'a Secret>,
}

async fn post_revocation(
    endpoint: &str,
    token: &Secret,
    hint: &str,
    client: &Client<'_>,
) -> Result<(), String> {
    let http = crate::client::discovery::http_client().map_err(|err| err.to_string())?;
    let mut form = vec![("token", token.expose()), ("token_type_hint", hint)];
    if let Some(assertion) = client.assertion {
        // RFC 7523 §2.2: the assertion names the client; no client_id beside it.
        form.push(("client_assertion_type", ASSERTION_TYPE));
        form.push(("client_assertion", assertion.expose()));
    } else if !client.id.is_empty() {
        form.push(("client_id", client.id));
    }
    if let Some(secret) = client.secret {
        form.push(("client_secret", secret.expose()));
    }
    let response = http
        .post(endpoint)
        .form(&form)
        .send()
        .await
        .map_err(|err| crate::error::error_chain(&err))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{endpoint} answered HTTP {}", response.status()))
    }
}
