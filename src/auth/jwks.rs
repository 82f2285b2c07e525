//! The JWKS cache: where `serve` gets the keys that verify token signatures.
//!
//! - Loaded at startup, and retried with backoff until it loads; until then MCP requests get 503
//!   (never a token accepted without keys) and `/ready` says why.
//! - Refreshed on a TTL: the response's `Cache-Control: max-age` when present, else the configured
//!   default (10 minutes).
//! - A token with an unknown `kid` triggers at most one refetch per cooldown window, so a flood of
//!   random kids cannot turn this server into a load generator against the authorization server.
//! - A failed refresh (network, status, malformed document) keeps the last good keys.
//!
//! Fetching sits behind [`KeyFetcher`] so the cache can be tested without sockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use url::Url;

use super::keys::KeySet;
use crate::error::error_chain;

/// Keys from one successful fetch, with how long the server said they may be cached.
pub struct FetchedKeys {
    pub keys: KeySet,
    pub max_age: Option<Duration>,
}

pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<FetchedKeys, String>> + Send + 'a>>;

/// Something that can fetch the current key set. The error is a message for logs and `/ready`.
pub trait KeyFetcher: Send + Sync {
    fn fetch(&self) -> FetchFuture<'_>;
}

/// Where the JWKS comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A known JWKS URL (`--jwks-url`, or `{SK_ENV_URL}/keys`).
    Url(Url),
    /// The issuer's `jwks_uri`, discovered from its RFC 8414 or OpenID Connect metadata.
    Discover(Url),
}

/// Timings of the cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Refresh interval when the JWKS response has no `max-age`.
    pub default_ttl: Duration,
    /// Minimum time between two fetches caused by unknown `kid`s.
    pub unknown_kid_cooldown: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(600),
            unknown_kid_cooldown: Duration::from_secs(30),
        }
    }
}

/// Shortest and longest refresh intervals honoured from `Cache-Control: max-age`.
const MIN_TTL: Duration = Duration::from_secs(30);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Retry delays after a failed fetch: 1 s doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
    ttl: Option<Duration>,
    fetches: u64,
    /// Fetches that loaded keys, and fetches that failed.
    fetched: u64,
    failed: u64,
    /// When the current keys were fetched (or put in place, for a fixed set).
    loaded_at: Option<Instant>,
}

/// What the metrics report about the signing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStats {
    pub fetched: u64,
    pub failed: u64,
    /// Keys held now.
    pub keys: usize,
    /// Time since the current keys were loaded; `None` while none have.
    pub age: Option<Duration>,
}

/// The cached key set and the logic that keeps it fresh.
pub struct JwksCache {
    fetcher: Box<dyn KeyFetcher>,
    settings: CacheSettings,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Bumped, under the `keys` write lock, each time a key set is put in place; 0 while none
    /// has loaded. Lets the verdict cache tell whether a token was verified with the current
    /// keys from one atomic load, without taking the lock or a reference on every request.
    generation: AtomicU64,
    state: Mutex<FetchState>,
    /// Serialises fetches, so concurrent unknown-kid requests share one fetch.
    fetch_gate: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub fn new(fetcher: Box<dyn KeyFetcher>, settings: CacheSettings) -> Self {
        Self {
            fetcher,
            settings,
            keys: RwLock::new(None),
            generation: AtomicU64::new(0),
            state: Mutex::new(FetchState::default()),
            fetch_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// A cache that already holds `keys` and never fetches: for the development authorization
    /// server's own key and for tests.
    pub fn fixed(keys: KeySet) -> Self {
        let cache = Self::new(Box::new(NoFetch), CacheSettings::default());
        cache.replace_keys(keys);
        cache.lock_state().loaded_at = Some(Instant::now());
        cache
    }

    /// Puts `keys` in place as a new generation.
    fn replace_keys(&self, keys: KeySet) {
        let mut current = self
            .keys
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        *current = Some(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current keys, or `None` while none have ever loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// The current keys with their generation (see [`JwksCache::generation`]), read together.
    pub fn current_with_generation(&self) -> Option<(Arc<KeySet>, u64)> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        let generation = self.generation.load(Ordering::Acquire);
        keys.clone().map(|keys| (keys, generation))
    }

    /// Which key set is current: a new number each time keys are replaced, 0 while none has
    /// loaded.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `Ok(number of keys)` when keys are loaded, else the reason they are not.
    pub fn readiness(&self) -> Result<usize, String> {
        match self.current() {
            Some(keys) => Ok(keys.len()),
            None => Err(self
                .lock_state()
                .last_error
                .clone()
                .unwrap_or_else(|| "signing keys not loaded yet".into())),
        }
    }

    /// How many fetches have been attempted (for tests and diagnostics).
    pub fn fetch_count(&self) -> u64 {
        self.lock_state().fetches
    }

    /// Fetch outcomes, keys held and their age, for the metrics.
    pub fn stats(&self) -> KeyStats {
        let keys = self.current().map_or(0, |keys| keys.len());
        let state = self.lock_state();
        KeyStats {
            fetched: state.fetched,
            failed: state.failed,
            keys,
            age: state.loaded_at.map(|at| at.elapsed()),
        }
    }

    /// Fetches now. On failure the last good keys stay in place and the error is returned.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _gate = self.fetch_gate.lock().await;
        self.fetch_locked().await
    }

    /// Called when a token names a `kid` the cache does not hold: refetches unless a fetch happened
    /// (or started) within the cooldown window. Returns whether new keys were loaded.
    ///
    /// The cooldown is checked before waiting for the fetch gate, so while one refetch is in
    /// flight (bounded by the HTTP client's timeout) other unknown-kid requests are refused at
    /// once instead of queueing behind it; requests with known kids never touch the gate.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        if self.within_cooldown() {
            return false;
        }
        let _gate = self.fetch_gate.lock().await;
        if self.within_cooldown() {
            return false;
        }
        self.fetch_locked().await.is_ok()
    }

    fn within_cooldown(&self) -> bool {
        self.lock_state()
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.settings.unknown_kid_cooldown)
    }

    async fn fetch_locked(&self) -> Result<usize, String> {
        {
            let mut state = self.lock_state();
            state.last_attempt = Some(Instant::now());
            state.fetches += 1;
        }
        let result = self.fetcher.fetch().await;
        let mut state = self.lock_state();
        match result {
            Ok(fetched) => {
                let count = fetched.keys.len();
                state.fetched += 1;
                state.loaded_at = Some(Instant::now());
                state.last_error = None;
                state.ttl = fetched.max_age.map(|age| age.clamp(MIN_TTL, MAX_TTL));
                self.replace_keys(fetched.keys);
                tracing::debug!(keys = count, "loaded signing keys");
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(%error, "could not fetch signing keys; keeping the last good ones");
                state.failed += 1;
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Keeps the keys fresh until `shutdown`: loads them (retrying with backoff), then refreshes
    /// on the TTL, retrying failed refreshes with backoff.
    pub async fn maintain(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let delay = match self.refresh().await {
                Ok(_) => {
                    backoff = Duration::from_secs(1);
                    self.lock_state().ttl.unwrap_or(self.settings.default_ttl)
                }
                Err(_) => {
                    let delay = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    delay
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// The fetcher behind [`JwksCache::fixed`].
struct NoFetch;

impl KeyFetcher for NoFetch {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async { Err("this key set is fixed and is never fetched".to_string()) })
    }
}

/// Largest JWKS or metadata document accepted: a real one is a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Fetches the JWKS over HTTP, discovering its URL from the issuer's metadata when needed.
pub struct HttpFetcher {
    client: reqwest::Client,
    source: JwksSource,
    discovered: Mutex<Option<Url>>,
}

impl HttpFetcher {
    pub fn new(client: reqwest::Client, source: JwksSource) -> Self {
        Self {
            client,
            source,
            discovered: Mutex::new(None),
        }
    }

    async fn jwks_url(&self) -> Result<Url, String> {
        let issuer = match &self.source {
            JwksSource::Url(url) => return Ok(url.clone()),
            JwksSource::Discover(issuer) => issuer,
        };
        if let Some(url) = self
            .discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(url);
        }
        let url = discover_jwks_uri(&self.client, issuer).await?;
        tracing::info!(jwks_uri = %url, issuer = %issuer, "discovered the JWKS URL");
        *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.clone());
        Ok(url)
    }
}

impl KeyFetcher for HttpFetcher {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let url = self.jwks_url().await?;
            let (body, max_age) = get_document(&self.client, &url).await?;
            let keys =
                KeySet::from_jwks_json(&body).map_err(|err| format!("JWKS at {url}: {err}"))?;
            Ok(FetchedKeys { keys, max_age })
        })
    }
}

/// GETs a JSON document, bounded in size; returns the body and the `Cache-Control: max-age`.
async fn get_document(
    client: &reqwest::Client,
    url: &Url,
) -> Result<(Vec<u8>, Option<Duration>), String> {
    let mut response = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|err| format!("GET {url}: {}", error_chain(&err)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    let max_age = response
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_max_age);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| format!("GET {url}: {}", error_chain(&err)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// `max-age=N` from a Cache-Control value.
fn parse_max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| {
                value
                    .trim()
                    .trim_matches('"')
                    .parse()
                    .ok()
                    .map(Duration::from_secs)
            })
            .flatten()
    })
}

/// The metadata URLs to try for an issuer, in the order the MCP authorization spec gives:
/// RFC 8414 with path insertion, OpenID Connect with path insertion, OpenID Connect appended.
pub fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut origin = issuer.clone();
    origin.set_query(None);
    origin.set_fragment(None);
    let at = |suffix: String| {
        let mut url = origin.clone();
        url.set_path(&suffix);
        url
    };
    let mut urls = vec![at(format!("/.well-known/oauth-authorization-server{path}"))];
    if path.is_empty() {
        urls.push(at("/.well-known/openid-configuration".into()));
    } else {
        urls.push(at(format!("/.well-known/openid-configuration{path}")));
        urls.push(at(format!("{path}/.well-known/openid-configuration")));
    }
    urls
}

/// Finds the issuer's `jwks_uri` from its metadata, trying each well-known URL in turn.
pub async fn discover_jwks_uri(client: &reqwest::Client, issuer: &Url) -> Result<Url, String> {
    let mut tried = Vec::new();
    for url in metadata_urls(issuer) {
        let outcome = async {
            let (body, _) = get_document(client, &url).await?;
            let metadata: serde_json::Value =
                serde_json::from_slice(&body).map_err(|err| format!("{url}: not JSON: {err}"))?;
            let jwks_uri = metadata
                .get("jwks_uri")
                .and_then(|value| value.as_str())
                .ok_or_else(|| format!("{url}: no jwks_uri in the metadata"))?;
            Url::parse(jwks_uri)
                .map_err(|err| format!("{url}: jwks_uri {jwks_uri:?} is not a URL: {err}"))
        }
        .await;
        match outcome {
            Ok(jwks_uri) => return Ok(jwks_uri),
            Err(error) => tried.push(error),
        }
    }
    Err(format!(
        "could not discover the JWKS of issuer {issuer}: {}; set --jwks-url (or SK_ENV_URL for Scalekit)",
        tried.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const JWKS_A: &str = include_str!("../../tests/fixtures/jwks-a.json");

    /// Serves a scripted sequence of results and counts calls.
    struct Scripted {
        calls: AtomicUsize,
        results: Vec<Result<&'static str, &'static str>>,
    }

    impl KeyFetcher for Scripted {
        fn fetch(&self) -> FetchFuture<'_> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let result = self.results[call.min(self.results.len() - 1)];
            Box::pin(async move {
                let body = result.map_err(str::to_owned)?;
                let keys = KeySet::from_jwks_json(body.as_bytes()).map_err(|e| e.to_string())?;
                Ok(FetchedKeys {
                    keys,
                    max_age: None,
                })
            })
        }
    }

    fn cache(results: Vec<Result<&'static str, &'static str>>) -> JwksCache {
        JwksCache::new(
            Box::new(Scripted {
                calls: AtomicUsize::new(0),
                results,
            }),
            CacheSettings {
                default_ttl: Duration::from_secs(600),
                unknown_kid_cooldown: Duration::from_secs(3600),
            },
        )
    }

    #[tokio::test]
    async fn not_ready_until_loaded_and_keeps_keys_on_failure() {
        let cache = cache(vec![
            Err("connection refused"),
            Ok(JWKS_A),
            Err("boom"),
            Ok("{bad"),
        ]);
        assert!(cache.current().is_none());
        assert_eq!(cache.refresh().await, Err("connection refused".into()));
        assert_eq!(cache.readiness(), Err("connection refused".into()));
        assert_eq!(cache.generation(), 0, "no keys, no generation");
        assert_eq!(cache.refresh().await, Ok(1));
        assert_eq!(cache.readiness(), Ok(1));
        assert_eq!(cache.generation(), 1);
        assert!(cache.refresh().await.is_err());
        assert!(cache.refresh().await.is_err(), "malformed JWKS is an error");
        assert!(
            cache.current().unwrap().find("key-a").is_some(),
            "last good keys kept"
        );
        assert_eq!(cache.generation(), 1, "failed fetches keep the generation");
    }

    #[tokio::test]
    async fn every_new_key_set_is_a_new_generation() {
        let cache = cache(vec![Ok(JWKS_A), Ok(JWKS_A)]);
        cache.refresh().await.unwrap();
        let (first, generation) = cache.current_with_generation().unwrap();
        cache.refresh().await.unwrap();
        let (second, next) = cache.current_with_generation().unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(
            (generation, next),
            (1, 2),
            "the same keys fetched again still count"
        );
        assert_eq!(cache.generation(), 2);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_at_most_once_per_cooldown() {
        let cache = cache(vec![Ok(JWKS_A)]);
        cache.refresh().await.unwrap();
        assert!(
            !cache.refresh_for_unknown_kid().await,
            "within cooldown of the load"
        );
        assert_eq!(cache.fetch_count(), 1);
        for _ in 0..100 {
            cache.refresh_for_unknown_kid().await;
        }
        assert_eq!(cache.fetch_count(), 1);
    }

    #[test]
    fn parses_max_age() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("no-store"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }

    #[test]
    fn metadata_urls_follow_the_spec_order() {
        let root = Url::parse("https://auth.example.com").unwrap();
        let urls: Vec<String> = metadata_urls(&root).iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        let pathed = Url::parse("https://env.scalekit.dev/resources/res_1").unwrap();
        let urls: Vec<String> = metadata_urls(&pathed).iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://env.scalekit.dev/.well-known/oauth-authorization-server/resources/res_1",
                "https://env.scalekit.dev/.well-known/openid-configuration/resources/res_1",
                "https://env.scalekit.dev/resources/res_1/.well-known/openid-configuration",
            ]
        );
    }
}
