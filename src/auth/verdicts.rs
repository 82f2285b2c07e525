//! A cache of accepted tokens, so a client that sends the same token on every request pays for
//! its signature check once.
//!
//! Only successes are cached, keyed by the SHA-256 of the token (the token itself is never kept).
//! A cached verdict is used only while the token is unexpired (with the same leeway as the full
//! check) and only with the very key set that verified it, named by the JWKS cache's generation:
//! when the JWKS is replaced (rotation, a removed key), every verdict is checked again. The map
//! is bounded: when full, expired entries go first, then everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;

use super::validate::Caller;

/// Entries kept at most.
const CAPACITY: usize = 10_000;

struct Verdict {
    caller: Arc<Caller>,
    expires_at: i64,
    /// The generation of the key set that verified the token ([`JwksCache::generation`]).
    ///
    /// [`JwksCache::generation`]: super::jwks::JwksCache::generation
    key_generation: u64,
}

#[derive(Default)]
pub struct VerdictCache {
    entries: Mutex<HashMap<[u8; 32], Verdict>>,
}

fn key(token: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    key
}

impl VerdictCache {
    /// The caller of an already accepted `token`, if it is still unexpired at `now` (allowing
    /// `leeway` seconds, as validation does) and was verified with the key set of
    /// `key_generation`.
    pub fn get(
        &self,
        token: &str,
        key_generation: u64,
        now: i64,
        leeway: i64,
    ) -> Option<Arc<Caller>> {
        let key = key(token);
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let verdict = entries.get(&key)?;
        if now > verdict.expires_at.saturating_add(leeway)
            || verdict.key_generation != key_generation
        {
            entries.remove(&key);
            return None;
        }
        Some(verdict.caller.clone())
    }

    /// Remembers that `token` was accepted with the key set of `key_generation`. Tokens without
    /// `exp` are not cached (validation refuses them anyway).
    pub fn insert(&self, token: &str, caller: Arc<Caller>, key_generation: u64, now: i64) {
        let Some(expires_at) = caller.expires_at else {
            return;
        };
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, verdict| verdict.expires_at >= now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            key(token),
            Verdict {
                caller,
                expires_at,
                key_generation,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(expires_at: i64) -> Arc<Caller> {
        let mut claims = serde_json::Map::new();
        claims.insert("exp".into(), expires_at.into());
        claims.insert("sub".into(), "usr_1".into());
        Arc::new(Caller::from_claims(claims))
    }

    #[test]
    fn hits_until_expiry_plus_leeway() {
        let cache = VerdictCache::default();
        cache.insert("token", caller(1_000), 1, 900);
        assert_eq!(
            cache.get("token", 1, 1_000, 30).unwrap().sub.as_deref(),
            Some("usr_1")
        );
        assert!(cache.get("token", 1, 1_030, 30).is_some());
        assert!(cache.get("token", 1, 1_031, 30).is_none(), "expired");
        assert!(cache.is_empty(), "expired entries are dropped");
        assert!(cache.get("other", 1, 900, 30).is_none());
    }

    #[test]
    fn a_new_key_set_invalidates_verdicts() {
        let cache = VerdictCache::default();
        cache.insert("token", caller(1_000), 1, 900);
        assert!(cache.get("token", 2, 900, 30).is_none());
        assert!(
            cache.get("token", 1, 900, 30).is_none(),
            "the stale verdict was dropped"
        );
    }

    #[test]
    fn stays_bounded() {
        let cache = VerdictCache::default();
        for i in 0..CAPACITY + 10 {
            cache.insert(&format!("token-{i}"), caller(1_000), 1, 900);
        }
        assert!(cache.len() <= CAPACITY);
    }
}
