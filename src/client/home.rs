//! The config directory and its state file.
//!
//! The directory is `SCALEKIT_MCP_HOME` when set (tests, CI, several identities), else the
//! platform config directory (`~/.config/scalekit-mcp` on Linux). `state.json` holds what is not
//! secret: the servers logged in to, their scopes, subjects and expiry, the client registrations
//! per authorization server, and the default server. Secrets are in the vault, never here.
//!
//! Writes are atomic (a temp file renamed over the old one) so a crash or a concurrent reader
//! never sees half a file; `refresh.lock` serialises refreshes across processes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where the files live.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// What is remembered about one MCP server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerRecord {
    /// The MCP server URL, canonical form (the key of the map too).
    pub server_url: String,
    /// The resource indicator sent to the authorization server (RFC 8707).
    pub resource: String,
    /// The authorization server's issuer.
    pub issuer: Option<String>,
    /// The authorization server's metadata, kept so that refresh needs no discovery.
    #[serde(default)]
    pub authorization_server: Option<serde_json::Value>,
    pub client_id: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub subject: Option<String>,
    /// When the access token expires, seconds since the epoch.
    pub expires_at: Option<i64>,
    /// When the token was received, seconds since the epoch.
    pub received_at: Option<u64>,
    pub has_refresh_token: bool,
    /// `keyring` or `file`.
    pub storage: String,
    /// `authorization_code`, `client_credentials` or `token` (stored as given).
    pub grant: String,
    /// For client credentials with `private_key_jwt`: the key file's path (never its contents),
    /// to sign the assertion of the next token request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_key: Option<PathBuf>,
}

/// A client registration with one authorization server, reused across logins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    pub client_id: String,
    /// Whether a client secret for it is in the vault.
    pub has_secret: bool,
    /// `dynamic` (RFC 7591) or `preregistered`.
    pub kind: String,
}

/// The whole state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub default_server: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerRecord>,
    /// Keyed by authorization server issuer.
    #[serde(default)]
    pub registrations: BTreeMap<String, Registration>,
}

impl Home {
    /// The config directory from SCALEKIT_MCP_HOME or the platform default.
    pub fn locate() -> anyhow::Result<Self> {
        if let Some(dir) = std::env::var_os("SCALEKIT_MCP_HOME").filter(|dir| !dir.is_empty()) {
            return Ok(Self {
                dir: PathBuf::from(dir),
            });
        }
        let dirs = directories::ProjectDirs::from("com", "scalekit", "scalekit-mcp").context(
            "cannot find a home directory for the config: set SCALEKIT_MCP_HOME to a writable directory",
        )?;
        Ok(Self {
            dir: dirs.config_dir().to_path_buf(),
        })
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn state_path(&self) -> PathBuf {
        self.path("state.json")
    }

    /// Reads the state; a missing file is an empty state.
    pub fn load(&self) -> anyhow::Result<State> {
        let path = self.state_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not valid state JSON: fix or delete it (then log in again)",
                    path.display()
                )
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, state: &State) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(state)?;
        write_atomic(&self.state_path(), &bytes, false)
    }

    /// Loads, changes and saves the state under the state lock, so two processes cannot lose
    /// each other's updates.
    pub fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> anyhow::Result<T> {
        let _lock = self.lock("state.lock")?;
        let mut state = self.load()?;
        let result = change(&mut state);
        self.save(&state)?;
        Ok(result)
    }

    /// An exclusive lock on `name` in the config directory, held until the value is dropped.
    pub fn lock(&self, name: &str) -> anyhow::Result<fs::File> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.path(name);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(file)
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename. With
/// `private`, the file is created with mode 0600 before any byte is written.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("state"),
        std::process::id()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The canonical form of a server URL, used as its key: scheme and host lowercased (the `url`
/// crate does that), no fragment, no query, and a path (`/` when empty).
pub fn canonical_server_url(raw: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(raw.trim()).map_err(|err| {
        crate::error::ExitError::usage(format!(
            "{raw:?} is not a server URL ({err}): use the full URL, e.g. http://localhost:3002/"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(crate::error::ExitError::usage(format!(
            "{raw:?} is not an http:// or https:// server URL"
        ))
        .into());
    }
    url.set_fragment(None);
    url.set_query(None);
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_server_urls() {
        assert_eq!(
            canonical_server_url("HTTP://LocalHost:3002").unwrap(),
            "http://localhost:3002/"
        );
        assert_eq!(
            canonical_server_url("https://mcp.example.com/mcp#x").unwrap(),
            "https://mcp.example.com/mcp"
        );
        assert!(canonical_server_url("localhost:3002").is_err());
        assert!(canonical_server_url("ftp://x").is_err());
    }

    #[test]
    fn state_round_trips_and_updates_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert!(home.load().unwrap().servers.is_empty());
        home.update(|state| state.default_server = Some("http://localhost:3002/".into()))
            .unwrap();
        assert_eq!(
            home.load().unwrap().default_server.as_deref(),
            Some("http://localhost:3002/")
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
