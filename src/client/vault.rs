//! Where secrets live: the OS keyring (Keychain, Windows Credential Manager, Secret Service), or —
//! only when the user asks for it — a 0600 file in the config directory.
//!
//! There is no silent fallback to plaintext: when no keyring is reachable, the error explains the
//! choices. Each secret is its own entry (`access-token:<server>`, `refresh-token:<server>`,
//! `client-secret:<issuer>`), which keeps every entry under Windows' 2560-character limit. Keyring
//! calls run on a blocking thread with a timeout, so a locked or hung keyring cannot freeze the CLI.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::home::{Home, write_atomic};
use super::secret::Secret;
use crate::error::ExitError;

/// The keyring service name all entries share.
const SERVICE: &str = "scalekit-mcp";
/// How long one keyring call may take.
const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);

/// Which backend holds a server's secrets; recorded per server so later commands look in the
/// same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Keyring,
    File,
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Keyring => "keyring",
            Storage::File => "file",
        }
    }

    pub fn parse(name: &str) -> Storage {
        if name == "file" {
            Storage::File
        } else {
            Storage::Keyring
        }
    }

    /// The storage the user chose: `--insecure-storage` or SCALEKIT_MCP_STORAGE=file, else the keyring.
    pub fn chosen(insecure_flag: bool) -> anyhow::Result<Storage> {
        match std::env::var("SCALEKIT_MCP_STORAGE")
            .ok()
            .as_deref()
            .map(str::trim)
        {
            _ if insecure_flag => Ok(Storage::File),
            None | Some("") | Some("keyring") => Ok(Storage::Keyring),
            Some("file") => Ok(Storage::File),
            Some(other) => Err(ExitError::usage(format!(
                "SCALEKIT_MCP_STORAGE={other:?} is not a storage: use keyring (default) or file"
            ))
            .into()),
        }
    }
}

/// A secret store.
#[derive(Debug, Clone)]
pub enum Vault {
    Keyring,
    File(PathBuf),
}

impl Vault {
    /// Opens `storage`. The keyring is probed first, so an unreachable one fails here, with the
    /// choices spelled out, rather than half-way through a login.
    pub async fn open(storage: Storage, home: &Home) -> anyhow::Result<Vault> {
        match storage {
            Storage::File => Ok(Vault::File(home.path("credentials.json"))),
            Storage::Keyring => {
                let status = blocking(|| match keyring::Entry::store_status() {
                    Ok(()) => Ok(()),
                    Err(err) => Err(err.to_string()),
                })
                .await;
                match status {
                    Ok(Ok(())) => Ok(Vault::Keyring),
                    Ok(Err(reason)) | Err(reason) => Err(no_keyring(&reason)),
                }
            }
        }
    }

    pub fn storage(&self) -> Storage {
        match self {
            Vault::Keyring => Storage::Keyring,
            Vault::File(_) => Storage::File,
        }
    }

    pub async fn get(&self, account: &str) -> anyhow::Result<Option<Secret>> {
        match self {
            Vault::File(path) => Ok(read_file(path)?.remove(account).map(Secret::new)),
            Vault::Keyring => {
                let account = account.to_owned();
                let result = blocking(move || {
                    let entry = keyring::Entry::new(SERVICE, &account)?;
                    match entry.get_password() {
                        Ok(value) => Ok(Some(value)),
                        Err(keyring::Error::NoEntry) => Ok(None),
                        Err(err) => Err(err),
                    }
                })
                .await
                .map_err(|reason| no_keyring(&reason))?;
                Ok(result
                    .context("reading a secret from the keyring")?
                    .map(Secret::new))
            }
        }
    }

    pub async fn set(&self, account: &str, secret: &Secret) -> anyhow::Result<()> {
        match self {
            Vault::File(path) => {
                let _lock = lock_beside(path)?;
                let mut secrets = read_file(path)?;
                secrets.insert(account.to_owned(), secret.expose().to_owned());
                write_file(path, &secrets)
            }
            Vault::Keyring => {
                let account = account.to_owned();
                let value = secret.expose().to_owned();
                blocking(move || keyring::Entry::new(SERVICE, &account)?.set_password(&value))
                    .await
                    .map_err(|reason| no_keyring(&reason))?
                    .context("writing a secret to the keyring")
            }
        }
    }

    /// Removes a secret; a missing one is not an error.
    pub async fn delete(&self, account: &str) -> anyhow::Result<()> {
        match self {
            Vault::File(path) => {
                let _lock = lock_beside(path)?;
                let mut secrets = read_file(path)?;
                if secrets.remove(account).is_some() {
                    write_file(path, &secrets)?;
                }
                Ok(())
            }
            Vault::Keyring => {
                let account = account.to_owned();
                let result = blocking(move || {
                    match keyring::Entry::new(SERVICE, &account)?.delete_credential() {
                        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                        Err(err) => Err(err),
                    }
                })
                .await
                .map_err(|reason| no_keyring(&reason))?;
                result.context("deleting a secret from the keyring")
            }
        }
    }
}

/// Runs a keyring call on a blocking thread, bounded by [`KEYRING_TIMEOUT`].
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(KEYRING_TIMEOUT, tokio::task::spawn_blocking(call)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join)) => Err(format!("the keyring call failed: {join}")),
        Err(_) => Err(format!(
            "the keyring did not answer within {}s (is it locked?)",
            KEYRING_TIMEOUT.as_secs()
        )),
    }
}

fn no_keyring(reason: &str) -> anyhow::Error {
    ExitError::usage(format!(
        "no OS keyring is reachable ({reason}).\n  Choices:\n  \
         - start a Secret Service (e.g. gnome-keyring or KeePassXC) in this session and run the command again;\n  \
         - or keep credentials in a plaintext file readable only by you: add --insecure-storage, \
         or set SCALEKIT_MCP_STORAGE=file"
    ))
    .into()
}

fn read_file(path: &std::path::Path) -> anyhow::Result<BTreeMap<String, String>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not valid JSON: fix or delete it, then log in again",
                path.display()
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_file(path: &std::path::Path, secrets: &BTreeMap<String, String>) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(secrets)?, true)
}

fn lock_beside(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let home = Home::at(path.parent().unwrap_or(std::path::Path::new(".")));
    home.lock("credentials.lock")
}

/// The account name of a secret.
pub fn account(kind: &str, key: &str) -> String {
    format!("{kind}:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_vault_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(Storage::File, &Home::at(dir.path()))
            .await
            .unwrap();
        assert!(vault.get("access-token:x").await.unwrap().is_none());
        vault
            .set("access-token:x", &Secret::new("s3cret".into()))
            .await
            .unwrap();
        assert_eq!(
            vault.get("access-token:x").await.unwrap().unwrap().expose(),
            "s3cret"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("credentials.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        vault.delete("access-token:x").await.unwrap();
        vault.delete("access-token:x").await.unwrap();
        assert!(vault.get("access-token:x").await.unwrap().is_none());
    }
}
