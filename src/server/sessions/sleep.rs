//! Sleeping sessions: an idle session gives up rmcp's worker and keeps only what wakes it.
//!
//! Most MCP clients never send `DELETE`, so a session whose client has gone lives until
//! `--session-idle-timeout`, and rmcp's worker for it holds about 67 KiB all that time
//! (docs/performance.md). After `--session-sleep-after` without a request and with no stream
//! open, a session sleeps: its worker is closed, and its entry in the table keeps the owner, the
//! slot and the client's `initialize` parameters, about 1 KiB.
//!
//! - A plain tool request is answered on a sleeping session as on an awake one (`server::direct`
//!   needs no worker), without waking it.
//! - Any other request wakes it: rmcp finds no worker, asks its [`SessionStore`] ([`WakeStore`])
//!   for the session's parameters and replays the handshake on a new worker, as it does for a
//!   session restored from Redis. The handler sees a fresh `initialize` with the client's
//!   original parameters.
//! - A sleeping session still ends after `--session-idle-timeout` without a request.
//! - With `--session-store`, a session that sleeps is simply let go here: its record in Redis
//!   wakes it, on this replica or another, as for any take-over.
//!
//! Only for handlers that allow it (the built-in tools;
//! [`McpServer::with_sleeping_sessions`](crate::McpServer::with_sleeping_sessions)): a woken
//! session has a new handler and a new peer, so a handler that keeps per-session state, or sends
//! the client something outside a request while no request is in flight, must not sleep.
//!
//! What counts as in use: every request of the session until its answer's body is dropped (a
//! `GET` stream for as long as it is open). A request whose client goes away before its answer
//! is complete pins its session awake: rmcp may still finish it and keep the answer for a resume.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use rmcp::transport::streamable_http_server::session::{
    SessionId, SessionManager, SessionState, SessionStore, SessionStoreError,
};

use super::{Entry, SessionLimits, Sessions};

/// How often, at most, idle sessions are put to sleep and sleeping ones past the idle timeout
/// ended.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A session's requests in flight, kept beside its entry: a request's end (often the end of a
/// stream, long after the guard let it through) is counted without the table's lock.
#[derive(Default)]
pub(super) struct Usage {
    in_flight: AtomicU32,
    /// A request lost its client before its answer was complete: the session never sleeps.
    pinned: AtomicBool,
    /// When the last request in flight ended, in milliseconds from [`Sessions::epoch`] (0:
    /// none has).
    last_done: AtomicU64,
}

impl Entry {
    /// Whether the session is held here without an rmcp worker, whose keep-alive would end it:
    /// asleep, or passed through. The sweep ends it when idle (none of its streams open).
    fn has_no_worker(&self) -> bool {
        (self.asleep || self.passed_through) && self.usage.in_flight.load(Ordering::Relaxed) == 0
    }

    /// How long the session has been idle at `now`: since its last request came in or ended.
    fn idle(&self, now: Instant, epoch: Instant) -> Duration {
        let done = epoch + Duration::from_millis(self.usage.last_done.load(Ordering::Relaxed));
        now.saturating_duration_since(self.last_used.max(done))
    }

    /// Whether this session, idle for `idle`, should sleep now. With a shared store its record
    /// wakes it; else it needs its `initialize` parameters. One idle for the whole idle timeout is
    /// ending instead (rmcp's keep-alive), and is left to end.
    fn ready_to_sleep(&self, idle: Duration, limits: &SessionLimits, shared: bool) -> bool {
        !self.asleep
            && !self.passed_through
            && self.initialized
            && self.owner.is_some()
            && self.usage.in_flight.load(Ordering::Relaxed) == 0
            && !self.usage.pinned.load(Ordering::Relaxed)
            && idle >= limits.sleep_after
            && idle < limits.idle_timeout
            && (shared || self.wake_with.is_some())
    }
}

impl Sessions {
    /// Lets idle sessions sleep: the handler allows it. Until then (and by default) they do
    /// not.
    pub fn let_sleep(&self) {
        self.may_sleep.store(true, Ordering::Relaxed);
    }

    pub(super) fn may_sleep(&self) -> bool {
        self.may_sleep.load(Ordering::Relaxed)
    }

    /// Sessions asleep now (held here without a worker).
    pub fn asleep(&self) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|entry| entry.asleep)
            .count()
    }

    /// Starts the task that puts idle sessions to sleep (and ends idle passed-through ones),
    /// once, when sessions may sleep or are passed through. Called with the first session opened
    /// or taken over (inside the runtime).
    pub fn start_sweeping(self: &Arc<Self>) {
        if !self.may_sleep() && !self.passes_through() {
            return;
        }
        self.sweeping.call_once(|| {
            let sessions = Arc::downgrade(self);
            let every = SWEEP_EVERY
                .min(self.limits.sleep_after / 4)
                .max(Duration::from_millis(10));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Some(sessions) = sessions.upgrade() else {
                        return;
                    };
                    sessions.sweep().await;
                }
            });
        });
    }

    /// Puts the sessions idle for `--session-sleep-after` to sleep, and ends the sleeping ones
    /// idle for `--session-idle-timeout` (which rmcp's keep-alive no longer sees).
    async fn sweep(&self) {
        let shared = self.has_shared_store();
        // Taken before any session is marked asleep: a wake must find either a session awake
        // with its worker, or one asleep whose worker is gone.
        let _transitions = self.transitions.lock().await;
        let now = Instant::now();
        let falling_asleep = {
            let mut table = self.lock();
            let mut falling_asleep = Vec::new();
            let mut expired = Vec::new();
            for (id, entry) in table.entries.iter_mut() {
                let idle = entry.idle(now, self.epoch);
                if entry.has_no_worker() && idle >= self.limits.idle_timeout {
                    expired.push(id.clone());
                } else if entry.ready_to_sleep(idle, &self.limits, shared) {
                    entry.asleep = true;
                    // rmcp reports the worker's end as a session's end: ignore it then.
                    entry.sleep_echoes += 1;
                    falling_asleep.push(id.clone());
                }
            }
            // Let go here with a shared store: the record wakes the session (`auth::take_over`).
            let gone = expired
                .iter()
                .chain(falling_asleep.iter().filter(|_| shared));
            for id in gone {
                table.remove(id);
            }
            falling_asleep
        };
        if falling_asleep.is_empty() {
            return;
        }
        tracing::debug!(
            sessions = falling_asleep.len(),
            "idle sessions falling asleep"
        );
        for id in falling_asleep {
            let _ = self.inner.close_session(&id).await;
        }
    }

    /// Whether `id` is a session held here that sleeps (rmcp must wake it before use).
    pub(super) fn is_asleep(&self, id: &str) -> bool {
        self.lock()
            .entries
            .get(id)
            .is_some_and(|entry| entry.asleep)
    }

    /// Gives sleeping session `id` a new worker. rmcp replays the handshake next; until its
    /// `notifications/initialized` is through ([`Sessions::handshake_done`]), the session counts
    /// as asleep, so that a request arriving meanwhile waits for the wake (rmcp holds every
    /// restore of one session behind the first) instead of reaching a worker before its
    /// `initialize`. `None` when `id` is not a session asleep here.
    pub(super) async fn wake(
        &self,
        id: SessionId,
    ) -> Option<Result<<Self as SessionManager>::Transport, <Self as SessionManager>::Error>> {
        let _transitions = self.transitions.lock().await;
        if !self.is_asleep(&id) {
            return None;
        }
        match self.inner.restore_session(id).await {
            Ok(rmcp::transport::streamable_http_server::session::RestoreOutcome::Restored(
                transport,
            )) => Some(Ok(transport)),
            // Only sleeping puts a session's worker away, and it is done (`transitions`).
            Ok(_) => None,
            Err(error) => Some(Err(error)),
        }
    }

    /// Whether rmcp's report of the end of session `id` is only the end of a worker put to
    /// sleep (counted off). Anything else ends the session.
    pub(super) fn is_sleep_echo(&self, id: &str) -> bool {
        let mut table = self.lock();
        match table.entries.get_mut(id) {
            Some(entry) if entry.sleep_echoes > 0 => {
                entry.sleep_echoes -= 1;
                true
            }
            _ => false,
        }
    }
}

/// A request of a session in flight ([`Sessions::check`]): the session is in use until this
/// is dropped, with the answer's body when it is handed one ([`Self::until_answered`]).
pub struct InUse {
    usage: Arc<Usage>,
    epoch: Instant,
    /// Whether the answer was complete (or need not be); if not, the session is pinned awake.
    finished: bool,
}

impl InUse {
    /// `answers_a_post`: the answer carries a request's result, so a client that leaves before
    /// its end pins the session awake (a `GET` stream is only ever cut, never complete).
    pub(super) fn new(usage: &Arc<Usage>, epoch: Instant, answers_a_post: bool) -> Self {
        usage.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            usage: usage.clone(),
            epoch,
            finished: !answers_a_post,
        }
    }

    /// `response`, with the session in use until its body is done. An answer already whole in
    /// memory (the direct path's, an error) is done now.
    pub fn until_answered(mut self, response: Response) -> Response {
        if response.body().size_hint().exact().is_some() {
            self.finished = true;
            return response;
        }
        response.map(|inner| {
            Body::new(Held {
                inner,
                in_use: self,
            })
        })
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        if !self.finished {
            self.usage.pinned.store(true, Ordering::Relaxed);
        }
        let since_epoch = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.usage.last_done.store(since_epoch, Ordering::Relaxed);
        self.usage.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body that keeps its session in use until it is done.
struct Held {
    inner: Body,
    in_use: InUse,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.in_use.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.in_use.finished = true;
        }
    }
}

/// The [`SessionStore`] rmcp wakes sleeping sessions from, for sessions in this process only:
/// it keeps the `initialize` parameters of each session in its entry, and hands them back for a
/// session that sleeps.
pub struct WakeStore(pub Arc<Sessions>);

#[async_trait::async_trait]
impl SessionStore for WakeStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let table = self.0.lock();
        Ok(table
            .entries
            .get(session_id)
            .filter(|entry| entry.asleep)
            .and_then(|entry| entry.wake_with.clone())
            .map(SessionState::new))
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        if let Some(entry) = self.0.lock().entries.get_mut(session_id) {
            entry.wake_with = Some(state.initialize_params.clone());
        }
        Ok(())
    }

    /// A `DELETE`: rmcp has already reported the session's end ([`SessionManager::close_session`]).
    async fn delete(&self, _session_id: &str) -> Result<(), SessionStoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::validate::Caller;

    fn alice() -> Caller {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), "https://a".into());
        claims.insert("sub".into(), "alice".into());
        Caller::from_claims(claims)
    }

    fn sessions_that_sleep_after(sleep_after: Duration) -> Arc<Sessions> {
        let sessions = Arc::new(Sessions::new(SessionLimits {
            max_sessions: 10,
            max_per_caller: 10,
            idle_timeout: Duration::from_secs(300),
            sleep_after,
        }));
        sessions.let_sleep();
        sessions
    }

    /// A session opened, bound and past its handshake, as rmcp and the guard leave it, with
    /// its `initialize` parameters stored the way rmcp stores them.
    async fn open(sessions: &Arc<Sessions>) -> SessionId {
        let reservation = sessions.reserve().unwrap();
        let (id, _transport) = sessions.create_session().await.unwrap();
        sessions.bind(&id, &alice(), reservation);
        sessions.lock().entries.get_mut(&id).unwrap().initialized = true;
        let params = serde_json::from_value(serde_json::json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "sleepy-client", "version": "1"}
        }))
        .unwrap();
        let store = WakeStore(sessions.clone());
        store.store(&id, &SessionState::new(params)).await.unwrap();
        id
    }

    /// A request of alice's on session `id`, as the guard lets it through.
    fn in_use(sessions: &Sessions, id: &str, answers_a_post: bool) -> InUse {
        match sessions.check(id, &alice(), answers_a_post) {
            super::super::Access::Permitted {
                in_use: Some(in_use),
                ..
            } => in_use,
            _ => panic!("session {id} is not alice's"),
        }
    }

    /// Waits until session `id` sleeps (the sweep runs in the background), or gives up.
    async fn sleeps(sessions: &Sessions, id: &str) -> bool {
        for _ in 0..100 {
            if sessions.is_asleep(id) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn only_idle_sessions_sleep_and_a_cut_answer_pins_its_session_awake() {
        let sessions = sessions_that_sleep_after(Duration::from_millis(50));
        let idle = open(&sessions).await;
        let busy = open(&sessions).await;
        let cut = open(&sessions).await;
        let streaming = open(&sessions).await;
        let held = in_use(&sessions, &busy, true);
        drop(in_use(&sessions, &cut, true));
        drop(in_use(&sessions, &streaming, false));

        assert!(sleeps(&sessions, &idle).await);
        assert!(
            sleeps(&sessions, &streaming).await,
            "a GET stream's end is no cut"
        );
        assert!(!sessions.is_asleep(&busy), "in use");
        assert!(!sessions.is_asleep(&cut), "an answer cut short pins it");
        assert_eq!(sessions.asleep(), 2);

        // Its answer read to the end: no longer in use, and not cut.
        let answer =
            held.until_answered(Response::new(Body::from_stream(futures::stream::iter([
                Ok::<_, std::io::Error>("an answer, streamed"),
            ]))));
        axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(sleeps(&sessions, &busy).await, "no longer in use");
        assert!(!sessions.is_asleep(&cut));
    }

    #[tokio::test]
    async fn a_sleeping_session_wakes_from_its_own_parameters_and_only_it() {
        let sessions = sessions_that_sleep_after(Duration::from_millis(50));
        let id = open(&sessions).await;
        let store = WakeStore(sessions.clone());
        assert!(
            store.load(&id).await.unwrap().is_none(),
            "awake: nothing to wake"
        );
        assert!(sleeps(&sessions, &id).await);
        assert!(!sessions.has_session(&id).await.unwrap());
        let state = store.load(&id).await.unwrap().expect("its parameters");
        assert_eq!(state.initialize_params.client_info.name, "sleepy-client");
        assert!(store.load("unknown").await.unwrap().is_none());

        assert!(sessions.wake(id.clone()).await.unwrap().is_ok());
        assert!(
            !sessions.has_session(&id).await.unwrap(),
            "not before the handshake is replayed"
        );
        sessions.handshake_done(&id);
        assert!(!sessions.is_asleep(&id));
        assert!(sessions.has_session(&id).await.unwrap());
        assert!(
            sessions.wake(id.clone()).await.is_none(),
            "an awake session is not woken again"
        );
    }

    #[tokio::test]
    async fn the_end_of_a_worker_put_to_sleep_does_not_end_its_session() {
        let sessions = sessions_that_sleep_after(Duration::from_millis(50));
        let id = open(&sessions).await;
        assert!(sleeps(&sessions, &id).await);
        // rmcp reports the end of the worker put to sleep as a session's end.
        sessions.close_session(&id).await.unwrap();
        assert!(sessions.permits(&id, &alice()), "still open, asleep");
        // A DELETE then ends it, and gives its place back.
        sessions.close_session(&id).await.unwrap();
        assert!(!sessions.permits(&id, &alice()));
        assert!(sessions.is_empty());
    }
}
