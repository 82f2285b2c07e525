//! Keeps the request timeout's timers from waking a thread on every request.
//!
//! tokio (1.54) wakes its driver, an eventfd write and often a futex wake of the other worker,
//! whenever a new timer is due earlier than every timer the driver knew of when it last parked
//! (`time::Handle::reregister`). The timer behind `--request-timeout` lives only while a request
//! is in the server, a few microseconds each, and the only long-lived timer, the JWKS refresh, is
//! due later: so nearly every request paid a `write` and a `futex` call and a cross-thread
//! wakeup. strace counted 0.87 of each per request, against none for a bare axum route.
//!
//! The floor is one timer that is always due no later than any request's deadline, re-armed
//! when it fires: a request's timer is then never the earliest, and the driver is left alone.
//! It costs one wakeup per request timeout (60 s by default).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Shortest period of the floor timer: with a request timeout shorter than this, requests may
/// wake the driver again, which is only slower, never wrong.
const SHORTEST_PERIOD: Duration = Duration::from_secs(1);

/// Runs until `shutdown`, keeping a timer due within `request_timeout` in tokio's timer wheel.
pub async fn hold(request_timeout: Duration, shutdown: CancellationToken) {
    let period = request_timeout.max(SHORTEST_PERIOD);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_until_shutdown() {
        let shutdown = CancellationToken::new();
        let floor = tokio::spawn(hold(Duration::from_millis(1), shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!floor.is_finished(), "the floor timer stopped on its own");
        shutdown.cancel();
        floor
            .await
            .expect("the floor task ends cleanly on shutdown");
    }
}
