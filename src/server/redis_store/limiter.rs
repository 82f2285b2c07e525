//! Rate limits shared by every replica (`--rate-limit-store`): GCRA, as in memory
//! (`server::rate_limits`), with its one number per key (the theoretical arrival time) in Redis.
//!
//! Each decision is one Lua script: read, decide, write, atomically, on Redis's own clock, so
//! N replicas admit exactly the configured rate in total. The key expires when it is back at a
//! full burst, so idle callers cost Redis nothing.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::{RedisStore, StoreError};
use crate::config::Rate;

/// KEYS[1]: the limit's key. ARGV[1]: the emission interval, ARGV[2]: the burst (requests).
/// Returns 0 when admitted, else the microseconds until a request would be.
const GCRA: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now_us
if tat < now_us then tat = now_us end
local new_tat = tat + interval
local ahead = new_tat - now_us
if ahead > burst * interval then
  return ahead - burst * interval
end
-- '%.0f': Lua 5.1 would print a number this large with 14 digits, losing microseconds.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000))
return 0
";

/// One limit's state in Redis.
pub struct RedisLimiter {
    store: Arc<RedisStore>,
    /// `<prefix>rate:<limit name>:`, before each key.
    namespace: String,
    interval_micros: u64,
    burst: u32,
    script: Script,
}

impl RedisLimiter {
    /// The limiter of the limit called `name` (`caller`, `client IP`, `tool NAME`) at `rate`.
    pub fn new(store: Arc<RedisStore>, name: &str, rate: Rate) -> Self {
        let interval = rate.interval().max(Duration::from_micros(1));
        Self {
            namespace: store.key(&format!("rate:{name}:")),
            store,
            interval_micros: u64::try_from(interval.as_micros()).unwrap_or(u64::MAX),
            burst: rate.burst.max(1),
            script: Script::new(GCRA),
        }
    }

    /// Admits one request for `key`, or says how long until one would be admitted. `Err` when
    /// Redis could not decide.
    pub async fn admit(&self, key: &str) -> Result<Result<(), Duration>, StoreError> {
        let mut connection = self.store.connection();
        let mut invocation = self.script.key(format!("{}{key}", self.namespace));
        invocation.arg(self.interval_micros).arg(self.burst);
        let decide = invocation.invoke_async::<u64>(&mut connection);
        let wait = self.store.run("deciding a rate limit", decide).await?;
        Ok(match wait {
            0 => Ok(()),
            micros => Err(Duration::from_micros(micros)),
        })
    }
}
