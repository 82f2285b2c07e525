//! rmcp's `CredentialStore` for one MCP server, over our state file and vault.
//!
//! rmcp's `AuthorizationManager` saves what a token request returned and loads it back before a
//! refresh. This store splits that record: the access and refresh tokens go to the vault (each its
//! own entry), everything else (client id, scopes, expiry, subject) to `state.json`, so `status`
//! can describe a login without touching a secret.

use async_trait::async_trait;
use oauth2::TokenResponse;
use rmcp::transport::auth::{AuthError, CredentialStore, OAuthTokenResponse, StoredCredentials};
use serde_json::json;

use super::home::{Home, ServerRecord};
use super::secret::Secret;
use super::vault::{Vault, account};

/// The credentials of one server.
pub struct ServerCredentials {
    pub home: Home,
    pub vault: Vault,
    /// The fields fixed at login (server, resource, issuer, metadata, grant); `save` fills in the rest.
    pub template: ServerRecord,
}

impl ServerCredentials {
    pub fn server_url(&self) -> &str {
        &self.template.server_url
    }

    /// The stored access token, as is (no refresh).
    pub async fn access_token(&self) -> anyhow::Result<Option<Secret>> {
        self.vault
            .get(&account("access-token", self.server_url()))
            .await
    }

    /// The server's current record.
    pub fn record(&self) -> anyhow::Result<Option<ServerRecord>> {
        Ok(self.home.load()?.servers.get(self.server_url()).cloned())
    }

    /// Stores a token response: secrets in the vault, the rest in the state file.
    pub async fn store_token(
        &self,
        client_id: &str,
        token: &OAuthTokenResponse,
        requested_scopes: &[String],
        received_at: u64,
    ) -> anyhow::Result<ServerRecord> {
        let url = self.server_url().to_owned();
        let access = Secret::new(token.access_token().secret().to_owned());
        self.vault
            .set(&account("access-token", &url), &access)
            .await?;
        let has_refresh_token = match token.refresh_token() {
            Some(refresh) => {
                let refresh = Secret::new(refresh.secret().to_owned());
                self.vault
                    .set(&account("refresh-token", &url), &refresh)
                    .await?;
                true
            }
            None => {
                self.vault.delete(&account("refresh-token", &url)).await?;
                false
            }
        };
        let claims = unverified_claims(access.expose());
        let scopes = token
            .scopes()
            .map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect())
            .or_else(|| {
                claims
                    .as_ref()
                    .map(crate::auth::validate::scopes)
                    .filter(|list| !list.is_empty())
            })
            .unwrap_or_else(|| requested_scopes.to_vec());
        let expires_at = token
            .expires_in()
            .map(|expires_in| received_at as i64 + expires_in.as_secs() as i64)
            .or_else(|| {
                claims
                    .as_ref()
                    .and_then(|claims| claims.get("exp"))
                    .and_then(serde_json::Value::as_i64)
            });
        let record = ServerRecord {
            client_id: client_id.to_owned(),
            scopes,
            subject: claims
                .as_ref()
                .and_then(|claims| claims.get("sub"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            expires_at,
            received_at: Some(received_at),
            has_refresh_token,
            storage: self.vault.storage().as_str().to_owned(),
            ..self.template.clone()
        };
        let saved = record.clone();
        self.home.update(move |state| {
            state.servers.insert(url, record);
        })?;
        Ok(saved)
    }

    /// Removes the server's secrets and record.
    pub async fn remove(&self) -> anyhow::Result<()> {
        let url = self.server_url().to_owned();
        self.vault.delete(&account("access-token", &url)).await?;
        self.vault.delete(&account("refresh-token", &url)).await?;
        self.home.update(|state| {
            state.servers.remove(&url);
            if state.default_server.as_deref() == Some(url.as_str()) {
                state.default_server = state.servers.keys().next().cloned();
            }
        })?;
        Ok(())
    }
}

fn store_error(error: anyhow::Error) -> AuthError {
    AuthError::CredentialStoreError(format!("{error:#}"))
}

#[async_trait]
impl CredentialStore for ServerCredentials {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let Some(record) = self.record().map_err(store_error)? else {
            return Ok(None);
        };
        let Some(access) = self.access_token().await.map_err(store_error)? else {
            return Ok(None);
        };
        let refresh = if record.has_refresh_token {
            self.vault
                .get(&account("refresh-token", self.server_url()))
                .await
                .map_err(store_error)?
        } else {
            None
        };
        let expires_in = match (record.expires_at, record.received_at) {
            (Some(expires_at), Some(received_at)) => Some((expires_at - received_at as i64).max(0)),
            _ => None,
        };
        let mut document = json!({ "access_token": access.expose(), "token_type": "Bearer" });
        if let Some(expires_in) = expires_in {
            document["expires_in"] = json!(expires_in);
        }
        if let Some(refresh) = &refresh {
            document["refresh_token"] = json!(refresh.expose());
        }
        let token: OAuthTokenResponse = serde_json::from_value(document).map_err(|err| {
            AuthError::CredentialStoreError(format!("stored token unreadable: {err}"))
        })?;
        Ok(Some(
            StoredCredentials::new(
                record.client_id.clone(),
                Some(token),
                record.scopes.clone(),
                record.received_at,
            )
            .with_issuer(record.issuer.clone()),
        ))
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let Some(token) = credentials.token_response.as_ref() else {
            return Ok(());
        };
        let received_at = credentials
            .token_received_at
            .unwrap_or_else(|| crate::auth::time::now() as u64);
        self.store_token(
            &credentials.client_id,
            token,
            &credentials.granted_scopes,
            received_at,
        )
        .await
        .map(|_| ())
        .map_err(store_error)
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.remove().await.map_err(store_error)
    }
}

/// The claims of a JWT access token, decoded without verification: only for showing who is
/// logged in. Opaque tokens have none.
pub fn unverified_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    crate::auth::validate::decode(token)
        .ok()
        .map(|decoded| decoded.claims)
}
