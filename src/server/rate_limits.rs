//! Rate limits per caller (`--rate-limit`) and per caller and tool (`--tool-rate-limit`),
//! answered 429 before the request reaches the handler.
//!
//! The algorithm is GCRA (the `governor` crate): requests are admitted at the steady rate, one
//! every `per / count`, and up to `burst` may come at once after a quiet spell; a refused request
//! does not count. A caller is the token's issuer and subject (else client id), as for session
//! binding.
//!
//! The state behind a limit is a [`Limiter`]: in memory here, one entry per key, and the entries
//! of keys that have been idle long enough to be back at a full burst are dropped every minute,
//! so a flood of distinct callers cannot grow memory without bound. With `--rate-limit-store`,
//! it is in Redis instead ([`RateLimits::shared_on`]), so that every replica counts against the
//! same limit; while Redis fails, requests are admitted (the failure is logged and counted): a
//! limit store that is down must not take the service down with it.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use crate::auth::tool_scopes::matches;
use crate::auth::validate::Caller;
use crate::config::{Cidr, Rate};

use super::client_ip::client_ip;

/// The state behind one limit, per key.
pub trait Limiter: Send + Sync {
    /// Admits one request for `key`, or says how long until one would be admitted.
    fn admit(&self, key: &str) -> Result<(), Duration>;
    /// Drops the state of keys that are back where a new key starts (memory stays bounded).
    fn forget_idle(&self);
    /// Keys with state.
    fn len(&self) -> usize;
    /// Whether no key has state.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A [`Limiter`] in this process's memory.
pub struct MemoryLimiter<C: Clock = MonotonicClock> {
    limiter: RateLimiter<String, DashMapStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl MemoryLimiter {
    pub fn new(rate: Rate) -> Self {
        Self::with_clock(rate, MonotonicClock)
    }
}

impl<C: Clock + Clone> MemoryLimiter<C> {
    /// With the clock given: tests advance a fake one.
    pub fn with_clock(rate: Rate, clock: C) -> Self {
        let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }
}

impl<C> Limiter for MemoryLimiter<C>
where
    C: Clock + Send + Sync,
    C::Instant: Send + Sync,
{
    fn admit(&self, key: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// One limit: its rate, what it applies to (for the answer), and its state.
struct Limit {
    rate: Rate,
    /// `caller`, or `tool NAME` (the rule's pattern).
    name: String,
    state: LimitState,
}

/// Where a limit's counts are kept.
enum LimitState {
    Memory(Box<dyn Limiter>),
    /// In Redis, shared by every replica.
    #[cfg(feature = "redis")]
    Shared(super::redis_store::limiter::RedisLimiter),
}

/// Every configured limit.
#[derive(Default)]
pub struct RateLimits {
    caller: Option<Limit>,
    /// Requests that need a token checked, per client IP.
    anonymous: Option<Limit>,
    /// Proxies whose forwarding headers name the client.
    trusted_proxies: Vec<Cidr>,
    /// Per caller and tool: (the tool name or pattern it applies to, the limit).
    tools: Vec<(String, Limit)>,
}

/// A request over a limit: what `serve` answers with 429.
#[derive(Debug)]
pub struct OverLimit {
    name: String,
    rate: Rate,
    retry_after: Duration,
}

/// The key a caller's requests are counted under.
fn caller_key(caller: &Caller) -> String {
    let subject = caller.sub.as_deref().or(caller.client_id.as_deref());
    format!(
        "{}\n{}",
        caller.issuer.as_deref().unwrap_or_default(),
        subject.unwrap_or_default()
    )
}

impl RateLimits {
    /// The limits `serve` was configured with.
    pub fn new(
        caller: Option<Rate>,
        tools: &[(String, Rate)],
        anonymous: Option<Rate>,
        trusted_proxies: &[Cidr],
    ) -> Self {
        let limit = |rate: Rate, name: String| Limit {
            rate,
            name,
            state: LimitState::Memory(Box::new(MemoryLimiter::new(rate))),
        };
        Self {
            caller: caller.map(|rate| limit(rate, "caller".into())),
            anonymous: anonymous.map(|rate| limit(rate, "client IP".into())),
            trusted_proxies: trusted_proxies.to_vec(),
            tools: tools
                .iter()
                .map(|(pattern, rate)| (pattern.clone(), limit(*rate, format!("tool {pattern}"))))
                .collect(),
        }
    }

    /// The same limits, counted in Redis: every replica using `store` shares them.
    #[cfg(feature = "redis")]
    pub fn shared_on(mut self, store: &std::sync::Arc<super::redis_store::RedisStore>) -> Self {
        use super::redis_store::limiter::RedisLimiter;
        let all = self.caller.iter_mut().chain(&mut self.anonymous);
        for limit in all.chain(self.tools.iter_mut().map(|(_, limit)| limit)) {
            limit.state =
                LimitState::Shared(RedisLimiter::new(store.clone(), &limit.name, limit.rate));
        }
        self
    }

    /// Whether there is any limit at all.
    pub fn is_empty(&self) -> bool {
        self.caller.is_none() && self.tools.is_empty() && self.anonymous.is_none()
    }

    /// Counts one request of this client IP that needs a token checked (no usable token, or one
    /// not seen before). A request whose client is unknown is not counted.
    pub async fn admit_unverified(
        &self,
        extensions: &Extensions,
        headers: &HeaderMap,
    ) -> Result<(), OverLimit> {
        let Some(limit) = &self.anonymous else {
            return Ok(());
        };
        match client_ip(extensions, headers, &self.trusted_proxies) {
            Some(ip) => admit(limit, &ip.to_string()).await,
            None => Ok(()),
        }
    }

    /// Whether `tools/call` requests are counted per tool (their body must then be read).
    pub fn limits_tools(&self) -> bool {
        !self.tools.is_empty()
    }

    /// Counts one request of `caller`.
    pub async fn admit_caller(&self, caller: &Caller) -> Result<(), OverLimit> {
        let Some(limit) = &self.caller else {
            return Ok(());
        };
        admit(limit, &caller_key(caller)).await
    }

    /// Counts one call of `tool` by `caller`, under every tool limit that matches it.
    pub async fn admit_tool(&self, caller: &Caller, tool: &str) -> Result<(), OverLimit> {
        let mut key = None;
        for (pattern, limit) in &self.tools {
            if !matches(pattern, tool) {
                continue;
            }
            let key = key.get_or_insert_with(|| format!("{}\n{tool}", caller_key(caller)));
            admit(limit, key).await?;
        }
        Ok(())
    }

    /// Drops idle keys' state everywhere.
    pub fn forget_idle(&self) {
        let all = self.caller.iter().chain(&self.anonymous);
        for limit in all.chain(self.tools.iter().map(|(_, limit)| limit)) {
            match &limit.state {
                LimitState::Memory(limiter) => limiter.forget_idle(),
                // Redis expires its keys by itself.
                #[cfg(feature = "redis")]
                LimitState::Shared(_) => {}
            }
        }
    }
}

async fn admit(limit: &Limit, key: &str) -> Result<(), OverLimit> {
    let decision = match &limit.state {
        LimitState::Memory(limiter) => limiter.admit(key),
        // Fail open: the store has logged and counted the failure.
        #[cfg(feature = "redis")]
        LimitState::Shared(limiter) => limiter.admit(key).await.unwrap_or(Ok(())),
    };
    decision.map_err(|retry_after| OverLimit {
        name: limit.name.clone(),
        rate: limit.rate,
        retry_after,
    })
}

impl OverLimit {
    /// Which kind of limit it is, for the metrics: `caller`, `client_ip` or `tool`.
    pub fn kind(&self) -> &'static str {
        match self.name.as_str() {
            "caller" => "caller",
            "client IP" => "client_ip",
            _ => "tool",
        }
    }

    /// Whole seconds until a retry can succeed, at least 1.
    fn retry_seconds(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }

    /// 429 with `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` headers
    /// (draft-ietf-httpapi-ratelimit-headers): the policy's quota and window, and none
    /// remaining until the reset.
    pub fn response(&self) -> Response {
        let seconds = self.retry_seconds().max(1);
        let policy = self.name.replace(' ', "-").to_ascii_lowercase();
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({
                "error": "rate_limited",
                "error_description": format!(
                    "rate limit {} per {} exceeded: retry in {seconds} s",
                    self.rate,
                    match self.name.as_str() {
                        "caller" | "client IP" => self.name.clone(),
                        tool => format!("caller and {tool}"),
                    },
                ),
            })),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        let quota = format!(
            "\"{policy}\";q={};w={}",
            self.rate.count,
            self.rate.per.as_secs()
        );
        let state = format!("\"{policy}\";r=0;t={seconds}");
        for (name, value) in [("ratelimit-policy", quota), ("ratelimit", state)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn rate(text: &str, burst: u32) -> Rate {
        Rate {
            burst,
            ..text.parse().unwrap()
        }
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = MemoryLimiter::with_clock(rate("60/min", 3), clock.clone());
        for _ in 0..3 {
            assert!(limiter.admit("a").is_ok());
        }
        let wait = limiter.admit("a").unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(1),
            "one request per second after the burst"
        );
        assert!(limiter.admit("b").is_ok(), "another key has its own burst");
        clock.advance(Duration::from_secs(1));
        assert!(limiter.admit("a").is_ok());
        assert!(
            limiter.admit("a").is_err(),
            "a refused request did not count"
        );
    }

    #[test]
    fn idle_keys_are_forgotten_so_memory_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let limiter = MemoryLimiter::with_clock(rate("10/s", 1), clock.clone());
        for n in 0..100_000 {
            assert!(limiter.admit(&format!("subject-{n}")).is_ok());
        }
        assert_eq!(limiter.len(), 100_000);
        limiter.forget_idle();
        assert_eq!(
            limiter.len(),
            100_000,
            "not yet idle: each is still counted"
        );
        clock.advance(Duration::from_secs(1));
        limiter.forget_idle();
        assert_eq!(limiter.len(), 0);
    }

    #[test]
    fn the_answer_names_the_limit_and_when_to_retry() {
        let over = OverLimit {
            name: "tool greet_*".into(),
            rate: rate("2/h", 1),
            retry_after: Duration::from_millis(1_800_500),
        };
        let response = over.response();
        assert_eq!(response.status(), 429);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("retry-after"), "1801");
        assert_eq!(header("ratelimit-policy"), "\"tool-greet_*\";q=2;w=3600");
        assert_eq!(header("ratelimit"), "\"tool-greet_*\";r=0;t=1801");
    }
}
