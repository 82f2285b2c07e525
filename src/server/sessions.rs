//! Binds each MCP session to the caller who opened it.
//!
//! Every request is authenticated on its own, but without this a caller holding any valid token
//! who learned another session's `Mcp-Session-Id` could post into that session. The MCP
//! specification asks servers to bind session ids to user-specific information; this does, with
//! the issuer and subject (else client id) of the token that initialized the session.
//!
//! A request naming a session that is not bound to its caller gets 404, the answer for a session
//! that does not exist, so another user's session ids cannot even be confirmed; MCP clients
//! answer a 404 by starting a new session. Entries idle longer than rmcp's session keep-alive are
//! dropped when the table fills up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::validate::Caller;

/// Sessions remembered at most; beyond, idle ones go first, then the least recently used.
const CAPACITY: usize = 100_000;
/// Longer than rmcp's default session keep-alive (5 minutes), after which it closes the session.
const IDLE: Duration = Duration::from_secs(600);

struct Owner {
    identity: String,
    last_used: Instant,
}

#[derive(Default)]
pub struct SessionOwners {
    owners: Mutex<HashMap<String, Owner>>,
}

/// Who a caller is, for the purpose of owning a session.
fn identity(caller: &Caller) -> String {
    let subject = caller.sub.as_deref().or(caller.client_id.as_deref());
    format!(
        "{}\n{}",
        caller.issuer.as_deref().unwrap_or_default(),
        subject.unwrap_or_default()
    )
}

impl SessionOwners {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owner>> {
        self.owners
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether `caller` may use session `id`: only the caller who opened it.
    pub fn permits(&self, id: &str, caller: &Caller) -> bool {
        let mut owners = self.lock();
        match owners.get_mut(id) {
            Some(owner) if owner.identity == identity(caller) => {
                owner.last_used = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Records that `caller` opened session `id`.
    pub fn bind(&self, id: &str, caller: &Caller) {
        let mut owners = self.lock();
        if owners.len() >= CAPACITY {
            owners.retain(|_, owner| owner.last_used.elapsed() < IDLE);
        }
        if owners.len() >= CAPACITY
            && let Some(oldest) = owners
                .iter()
                .min_by_key(|(_, owner)| owner.last_used)
                .map(|(id, _)| id.clone())
        {
            owners.remove(&oldest);
        }
        owners.insert(
            id.to_owned(),
            Owner {
                identity: identity(caller),
                last_used: Instant::now(),
            },
        );
    }

    /// Forgets a closed session.
    pub fn unbind(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(iss: &str, sub: Option<&str>, client_id: Option<&str>) -> Caller {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), iss.into());
        if let Some(sub) = sub {
            claims.insert("sub".into(), sub.into());
        }
        if let Some(client_id) = client_id {
            claims.insert("client_id".into(), client_id.into());
        }
        Caller::from_claims(claims)
    }

    #[test]
    fn only_the_opener_may_use_a_session() {
        let owners = SessionOwners::default();
        let alice = caller("https://a", Some("alice"), None);
        owners.bind("s1", &alice);
        assert!(owners.permits("s1", &alice));
        assert!(!owners.permits("s1", &caller("https://a", Some("bob"), None)));
        assert!(!owners.permits("s1", &caller("https://b", Some("alice"), None)));
        assert!(
            !owners.permits("s2", &alice),
            "unknown sessions are not permitted"
        );
        owners.unbind("s1");
        assert!(!owners.permits("s1", &alice));
    }

    #[test]
    fn machine_callers_are_told_apart_by_client_id() {
        let owners = SessionOwners::default();
        owners.bind("s", &caller("https://a", None, Some("bot-1")));
        assert!(owners.permits("s", &caller("https://a", None, Some("bot-1"))));
        assert!(!owners.permits("s", &caller("https://a", None, Some("bot-2"))));
    }
}
