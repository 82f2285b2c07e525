//! Redis, shared by the replicas of one deployment: their sessions (`--session-store`,
//! [`sessions`]) and their rate limits (`--rate-limit-store`, [`limiter`]).
//!
//! [`RedisStore`] is one multiplexed connection (redis-rs's `ConnectionManager`, which reconnects
//! by itself) with the deployment's key prefix. It is created without waiting for Redis: a
//! replica starts while Redis is down, reports it on `/ready` (503, from a probe every
//! [`PROBE_EVERY`]) and recovers without a restart. Every command has a short timeout, so a
//! Redis that stops answering slows no request by more than [`COMMAND_TIMEOUT`]. Failures are
//! counted (`scalekit_mcp_store_errors_total`) and logged at ERROR, at most once per
//! [`ERROR_LOG_EVERY`] so an outage does not flood the log.
//!
//! The URL's password never reaches a log line or an error: [`RedisStore::describe`] shows it
//! without.

pub mod events;
pub mod limiter;
pub mod sessions;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::StoreUrl;

/// How long one Redis command may take before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How often reachability is probed for `/ready`.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// At most one ERROR line per this long while Redis keeps failing.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// A Redis URL that cannot be used, said in words naming the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreUrlError(String);

/// One Redis server: a connection, the key prefix, and what is known of its health.
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    /// The URL without its password, for logs and `/ready`.
    description: String,
    reachable: AtomicBool,
    /// The last failure, for `/ready` (never holds the URL's password: redis-rs errors do not
    /// carry the URL).
    last_error: Mutex<Option<String>>,
    errors: Counter,
    last_logged: Mutex<Option<Instant>>,
    /// Errors since the last ERROR line, reported with the next one.
    unlogged: AtomicU64,
}

impl RedisStore {
    /// A store for `url` (checked by the configuration), its keys under `prefix`, its failures
    /// counted in `errors`. Does not connect: the connection is made by the first command (and
    /// [`RedisStore::watch`]'s probe).
    pub fn open(url: &StoreUrl, prefix: &str, errors: Counter) -> Result<Arc<Self>, StoreUrlError> {
        let description = url.redacted();
        let client = redis::Client::open(url.secret_url()).map_err(|error| {
            StoreUrlError(format!(
                "{description} is not a usable Redis URL ({error}): write it as \
                 redis://[user:password@]host:port[/db], or rediss:// for TLS"
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| StoreUrlError(format!("{description}: {error}")))?;
        Ok(Arc::new(Self {
            connection,
            prefix: prefix.to_owned(),
            description,
            reachable: AtomicBool::new(false),
            last_error: Mutex::new(Some("not connected yet".to_owned())),
            errors,
            last_logged: Mutex::new(None),
            unlogged: AtomicU64::new(0),
        }))
    }

    /// The URL without its password.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// `prefix` + `name`: every key of this deployment.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A handle on the shared connection (cheap: the connection is multiplexed).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The failures counted so far (with the other stores sharing the counter).
    pub fn errors(&self) -> u64 {
        self.errors.get()
    }

    /// Runs `command` with the timeout, recording the outcome: `Err` names what failed, for the
    /// caller's own answer.
    pub async fn run<T>(
        &self,
        what: &str,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let outcome = match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(redis_error_text(&error)),
            Err(_) => Err(format!("no answer within {} s", COMMAND_TIMEOUT.as_secs())),
        };
        match outcome {
            Ok(value) => {
                self.mark_reachable();
                Ok(value)
            }
            Err(reason) => {
                self.failed(what, &reason);
                Err(StoreError(reason))
            }
        }
    }

    fn mark_reachable(&self) {
        if !self.reachable.swap(true, Ordering::Relaxed) {
            *lock(&self.last_error) = None;
            tracing::info!(redis = %self.description, "Redis is reachable");
        }
    }

    /// Counts and logs a failure that happened without a command (a full queue).
    pub fn note_failure(&self, what: &str, reason: &str) {
        self.failed(what, reason);
    }

    fn failed(&self, what: &str, reason: &str) {
        self.errors.inc();
        self.reachable.store(false, Ordering::Relaxed);
        *lock(&self.last_error) = Some(reason.to_owned());
        let now = Instant::now();
        let mut last_logged = lock(&self.last_logged);
        if last_logged.is_some_and(|at| now.duration_since(at) < ERROR_LOG_EVERY) {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last_logged = Some(now);
        let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::error!(
            redis = %self.description,
            %reason,
            failures_not_logged = unlogged,
            "Redis failed while {what}"
        );
    }

    /// For `/ready`: details when Redis answered last time, else why not.
    pub fn readiness(&self) -> Result<serde_json::Value, String> {
        if self.reachable.load(Ordering::Relaxed) {
            return Ok(serde_json::Value::String(self.description.clone()));
        }
        let reason = lock(&self.last_error)
            .clone()
            .unwrap_or_else(|| "not connected yet".to_owned());
        Err(format!(
            "Redis at {} is unreachable: {reason}",
            self.description
        ))
    }

    /// One `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        self.run("checking that it answers", ping).await.map(drop)
    }

    /// Probes Redis every [`PROBE_EVERY`] until `shutdown`, so `/ready` follows its health even
    /// while no request needs it.
    pub fn watch(self: &Arc<Self>, shutdown: CancellationToken) {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        let _ = store.ping().await;
                    }
                }
            }
        });
    }
}

/// The Redis servers a configuration names: for sessions, for rate limits (the same one when
/// the URLs are equal).
pub struct Stores {
    pub sessions: Option<Arc<RedisStore>>,
    pub rate_limits: Option<Arc<RedisStore>>,
    /// Their failures, together: `scalekit_mcp_store_errors_total`.
    pub errors: Counter,
}

impl Stores {
    pub fn open(config: &crate::config::ServeConfig) -> Result<Self, StoreUrlError> {
        let errors = Counter::default();
        let open = |url: &StoreUrl| RedisStore::open(url, &config.redis_prefix, errors.clone());
        let sessions = config.session_store.as_ref().map(open).transpose()?;
        let rate_limits = match (&config.rate_limit_store, &sessions) {
            (Some(url), Some(shared)) if Some(url) == config.session_store.as_ref() => {
                Some(shared.clone())
            }
            (Some(url), _) => Some(open(url)?),
            (None, _) => None,
        };
        Ok(Self {
            sessions,
            rate_limits,
            errors,
        })
    }

    /// Each store once.
    pub fn all(&self) -> Vec<Arc<RedisStore>> {
        let mut all: Vec<Arc<RedisStore>> = Vec::new();
        for store in self.sessions.iter().chain(&self.rate_limits) {
            if !all.iter().any(|known| Arc::ptr_eq(known, store)) {
                all.push(store.clone());
            }
        }
        all
    }
}

/// `check` (the gateway's, if any), then every store's: the first failure, else their details
/// together.
pub(crate) fn with_readiness(
    check: Option<crate::server::ReadinessCheck>,
    stores: &[Arc<RedisStore>],
) -> Option<crate::server::ReadinessCheck> {
    if stores.is_empty() {
        return check;
    }
    let stores = stores.to_vec();
    Some(Arc::new(move || {
        let mut details = match &check {
            Some(check) => check()?,
            None => serde_json::json!({}),
        };
        let redis: Vec<serde_json::Value> = stores
            .iter()
            .map(|store| store.readiness())
            .collect::<Result<_, _>>()?;
        if let Some(details) = details.as_object_mut() {
            details.insert("redis".to_owned(), serde_json::Value::Array(redis));
        }
        Ok(details)
    }))
}

/// A Redis command that failed: what went wrong, without the URL.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A redis-rs error as text (redis-rs errors do not include the URL).
fn redis_error_text(error: &redis::RedisError) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_url(text: &str) -> StoreUrl {
        StoreUrl::parse("--session-store", text).unwrap()
    }

    #[test]
    fn the_description_hides_the_password() {
        assert_eq!(
            store_url("redis://app:s3cret@cache.internal:6380/2").redacted(),
            "redis://app:***@cache.internal:6380/2"
        );
        assert_eq!(
            store_url("rediss://cache.internal").redacted(),
            "rediss://cache.internal"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_reported_without_the_password() {
        // Port 9 (discard) is closed on loopback: the connection is refused at once.
        let url = store_url("redis://app:s3cret@127.0.0.1:9");
        let store = RedisStore::open(&url, "test:", Counter::default()).unwrap();
        let error = store.ping().await.unwrap_err().to_string();
        assert!(!error.contains("s3cret"), "{error}");
        let reason = store.readiness().unwrap_err();
        assert!(reason.contains("redis://app:***@127.0.0.1:9"), "{reason}");
        assert!(!reason.contains("s3cret"), "{reason}");
        assert_eq!(store.errors(), 1);
    }
}
