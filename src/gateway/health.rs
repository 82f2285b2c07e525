//! Whether the upstream answers, as `/ready` reports it: a gateway whose upstream is down is
//! alive (`/health`) but not ready, so that a load balancer sends its traffic elsewhere.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

/// What the latest attempt to reach the upstream found. Shared by everything that talks to it.
pub struct Health {
    upstream: String,
    state: Mutex<State>,
}

enum State {
    /// Not tried yet: the first connection is under way.
    Connecting,
    Reachable,
    Unreachable {
        reason: String,
        since: Instant,
    },
}

impl Health {
    /// The health of `upstream` (as named in messages), not tried yet.
    pub fn new(upstream: String) -> Self {
        Self {
            upstream,
            state: Mutex::new(State::Connecting),
        }
    }

    pub fn reachable(&self) {
        let mut state = self.lock();
        if let State::Unreachable { since, .. } = &*state {
            tracing::info!(
                "{} answers again, after {} s",
                self.upstream,
                since.elapsed().as_secs()
            );
        }
        *state = State::Reachable;
    }

    /// Records a failure; `reason` names the upstream and what went wrong. Logged at ERROR when
    /// the upstream was not known to be down already.
    pub fn unreachable(&self, reason: &str) {
        let mut state = self.lock();
        let since = match &*state {
            State::Unreachable { since, .. } => *since,
            _ => {
                tracing::error!("{reason}");
                Instant::now()
            }
        };
        *state = State::Unreachable {
            reason: reason.to_owned(),
            since,
        };
    }

    pub fn is_reachable(&self) -> bool {
        matches!(*self.lock(), State::Reachable)
    }

    /// `/ready`'s verdict on the upstream: its name when it answers, else why not.
    pub fn readiness(&self) -> Result<Value, String> {
        match &*self.lock() {
            State::Reachable => Ok(json!({"upstream": self.upstream, "status": "reachable"})),
            State::Connecting => Err(format!("connecting to {}", self.upstream)),
            State::Unreachable { reason, since } => Err(down_for(reason, *since)),
        }
    }

    /// Why the upstream is down, while it is known to be (not while the first attempt is still
    /// under way): what a request on a stateful gateway's session is answered, with 502.
    pub fn down(&self) -> Option<String> {
        match &*self.lock() {
            State::Unreachable { reason, since } => Some(down_for(reason, *since)),
            State::Connecting | State::Reachable => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// `reason`, with how long it has held.
fn down_for(reason: &str, since: Instant) -> String {
    format!(
        "{reason} (for {} s; retried every few seconds)",
        since.elapsed().as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_the_upstream_answered_and_until_it_fails() {
        let health = Health::new("upstream http://127.0.0.1:9/mcp".into());
        assert_eq!(
            health.down(),
            None,
            "not known down while the first attempt runs"
        );
        assert_eq!(
            health.readiness().unwrap_err(),
            "connecting to upstream http://127.0.0.1:9/mcp"
        );
        health.reachable();
        assert_eq!(health.readiness().unwrap()["status"], "reachable");
        health.unreachable("upstream http://127.0.0.1:9/mcp: connection refused");
        let reason = health.readiness().unwrap_err();
        assert!(
            reason.starts_with("upstream http://127.0.0.1:9/mcp: connection refused (for 0 s"),
            "{reason}"
        );
        assert!(!health.is_reachable());
        assert_eq!(health.down(), Some(reason));
        health.reachable();
        assert_eq!(health.down(), None);
    }
}
