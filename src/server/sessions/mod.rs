//! Stateful MCP sessions: who owns each one, and how many there may be.
//!
//! [`Sessions`] is the session manager rmcp's Streamable HTTP service runs on: rmcp's own
//! in-memory manager underneath, with a table beside it that the bearer guard (`server::auth`)
//! consults on every request.
//!
//! - **Owner binding.** Every request is authenticated on its own, but without this a caller
//!   holding any valid token who learned another session's `Mcp-Session-Id` could post into that
//!   session. The MCP specification asks servers to bind session ids to user-specific
//!   information; this does, with the issuer and subject (else client id) of the token that
//!   initialized the session. A request naming a session that is not its caller's gets 404, the
//!   answer for a session that does not exist, so other users' session ids cannot even be
//!   confirmed; MCP clients answer a 404 by starting a new session.
//! - **Bounds.** Most clients never send `DELETE`, so a session lives until it has been idle for
//!   `--session-idle-timeout` (rmcp's keep-alive). Meanwhile any token holder could open sessions
//!   until memory runs out, so there are two caps: `--max-sessions` in all (an `initialize` over
//!   it gets 503, see [`Sessions::reserve`]) and `--max-sessions-per-caller` (opening one more
//!   closes that caller's least recently used session, so a client that reconnects in a loop
//!   cannot lock itself, or anyone else, out).
//!
//! rmcp reports every session's end, whatever the cause (`DELETE`, idle timeout, a failed
//! handshake, shutdown), through [`SessionManager::close_session`]; that is where an entry and its
//! slot are given back, so the table holds exactly the sessions that are alive.
//!
//! With `--session-store` (`server::redis_store::sessions`), each session also has a record in
//! Redis, and a replica can take over a session it does not hold: the guard reads the record,
//! checks its owner, and rmcp restores the session ([`Sessions::expect_restore`], then
//! [`SessionManager::restore_session`]). A session held here is checked against its record at
//! most once per [`TOUCH_EVERY`] ([`Access::Permitted::touch_due`]), which keeps the record alive
//! and notices a `DELETE` made on another replica.
//!
//! An idle session sleeps when the handler allows it (`--session-sleep-after`, see [`sleep`]):
//! its rmcp worker is closed, its entry here keeps what wakes it, and rmcp wakes it through
//! [`SessionManager::restore_session`] when a request needs a worker; its
//! [`SessionManager::close_session`] tells the end of a worker put to sleep from the end of the
//! session.
//!
//! An endpoint of the crate's own may hold its sessions here too, without rmcp (the gateway's
//! pass-through, [`Sessions::hold_passed_through`]): the guard binds and caps them like the
//! others, the sweep ends them when idle, and every end reaches the endpoint through
//! [`Sessions::when_let_go`].
//!
//! Each request answered on a stream also gets its [`ResponseStream`], with which its handler may
//! end that stream early for the client to resume (see there).
//!
//! A plain tool request on a session whose handshake is done may be answered without rmcp's
//! session worker (`server::direct`, for handlers that allow it: [`Sessions::answers_directly`]).
//! The worker then sees nothing of it, and would end a session used only that way when its
//! keep-alive runs out; so such a session's worker is nudged with a message that changes
//! nothing, at most once per [`NUDGE_EVERY`] (an eighth of the idle timeout when that is less).

mod sleep;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use futures::Stream;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, GetExtensions, InitializeRequestParams,
    ServerJsonRpcMessage,
};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::response_stream::ResponseStream;
use crate::auth::validate::Caller;
pub use sleep::{InUse, WakeStore};

/// How often a session held here is checked against its Redis record (at most).
pub const TOUCH_EVERY: Duration = Duration::from_secs(1);

/// How often, at most, the worker of a session answered directly is nudged (see the module doc).
pub const NUDGE_EVERY: Duration = Duration::from_secs(10);

/// A request stream number rmcp's worker never gives out (it counts from 0): closing it does
/// nothing but restart the worker's keep-alive.
const NO_SUCH_STREAM: u64 = u64::MAX;

/// The caps and the idle timeout of `serve`'s sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Sessions open at once, all callers together.
    pub max_sessions: usize,
    /// Sessions open at once per caller (issuer + subject).
    pub max_per_caller: usize,
    /// A session with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A session with no request and no open stream for this long sleeps, when the handler
    /// allows it ([`Sessions::let_sleep`], `sleep`).
    pub sleep_after: Duration,
}

/// Who opened a session: the token's issuer, and its subject (else its client id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Owner {
    issuer: Box<str>,
    subject: Box<str>,
}

impl Owner {
    fn of(caller: &Caller) -> Self {
        let (issuer, subject) = caller.principal();
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }

    /// Compared field by field: no allocation on the request path.
    fn is(&self, caller: &Caller) -> bool {
        caller.principal() == (&*self.issuer, &*self.subject)
    }
}

/// One live session. `owner` and `slot` are filled in when the guard sees the `initialize`
/// response that opened it; until then the session is known to rmcp only.
struct Entry {
    owner: Option<Owner>,
    last_used: Instant,
    /// When the Redis record was last checked (with `--session-store`).
    last_touched: Instant,
    /// Whether the client has sent `notifications/initialized` (or the session was restored,
    /// which replays the handshake): until then, every request goes to rmcp.
    initialized: bool,
    /// When the session's rmcp worker last saw a message of ours (see [`NUDGE_EVERY`]).
    worker_nudged: Instant,
    /// The session's share of `--max-sessions`, given back when the entry goes.
    _slot: Option<OwnedSemaphorePermit>,
    /// Whether the session sleeps: no rmcp worker until a request needs one (`sleep`).
    asleep: bool,
    /// The client's `initialize` parameters, which wake the session (when sessions may sleep).
    wake_with: Option<InitializeRequestParams>,
    /// Its requests in flight, as they tell the sweep without this table's lock (`sleep`).
    usage: Arc<sleep::Usage>,
    /// Workers of this session put to sleep whose end rmcp has yet to report (ignored then).
    sleep_echoes: u32,
    /// Whether the session is an endpoint's of the crate's own, which rmcp never sees
    /// ([`Sessions::hold_passed_through`]): it has no worker, and ends here when idle.
    passed_through: bool,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            owner: None,
            last_used: now,
            last_touched: now,
            initialized: false,
            worker_nudged: now,
            _slot: None,
            asleep: false,
            wake_with: None,
            usage: Arc::default(),
            sleep_echoes: 0,
            passed_through: false,
        }
    }
}

#[derive(Default)]
struct Table {
    entries: HashMap<SessionId, Entry>,
    /// Each owner's sessions, for the per-caller cap.
    by_owner: HashMap<Owner, Vec<SessionId>>,
    /// Told of every session no longer held here ([`Sessions::when_let_go`]).
    let_go: Option<LetGo>,
}

/// What an endpoint of the crate's own does when one of its sessions is no longer held here
/// (its `DELETE`, the idle timeout, the per-caller cap): called under the table's lock, so it
/// must not block (it hands the id to a task).
pub type LetGo = Box<dyn Fn(&SessionId) + Send + Sync>;

impl Table {
    fn remove(&mut self, id: &str) -> Option<Entry> {
        let (id, entry) = self.entries.remove_entry(id)?;
        if let Some(let_go) = &self.let_go {
            let_go(&id);
        }
        let id = &*id;
        if let Some(owner) = &entry.owner
            && let Some(ids) = self.by_owner.get_mut(owner)
        {
            ids.retain(|known| &**known != id);
            if ids.is_empty() {
                self.by_owner.remove(owner);
            }
        }
        Some(entry)
    }

    /// The least recently used session of `owner`, when it has more than `max`.
    fn over_cap(&self, owner: &Owner, max: usize) -> Option<SessionId> {
        let ids = self.by_owner.get(owner)?;
        if ids.len() <= max {
            return None;
        }
        ids.iter()
            .min_by_key(|id| self.entries.get(*id).map(|entry| entry.last_used))
            .cloned()
    }
}

/// A reserved place for one more session under `--max-sessions`, taken before an `initialize`
/// reaches rmcp. It becomes the session's slot when the session opens ([`Sessions::bind`]), and
/// is given back if none does.
pub struct Reservation(OwnedSemaphorePermit);

/// Whether a request may use the session it names ([`Sessions::check`]).
pub enum Access {
    /// The caller's own session, held here. `touch_due`: its Redis record should be checked
    /// before the request goes on. `in_use`: the session is in use while this is held, when
    /// sessions may sleep.
    Permitted {
        touch_due: bool,
        in_use: Option<InUse>,
    },
    /// Held here, but not the caller's (or not bound yet): 404.
    Refused,
    /// Not held here: 404, unless a shared store has it.
    Unknown,
}

/// rmcp's in-memory session manager, with owner binding and the session caps.
pub struct Sessions {
    inner: LocalSessionManager,
    table: Mutex<Table>,
    slots: Arc<Semaphore>,
    limits: SessionLimits,
    /// The sessions' records in Redis (`--session-store`).
    #[cfg(feature = "redis")]
    shared: Option<Arc<crate::server::redis_store::sessions::SessionRecords>>,
    /// Sessions the guard let through to be restored, with their owner and slot.
    #[cfg(feature = "redis")]
    restoring: Mutex<HashMap<String, (Owner, Reservation)>>,
    /// Whether idle sessions may sleep ([`Self::let_sleep`]).
    may_sleep: AtomicBool,
    /// Whether an endpoint of the crate's own holds sessions here ([`Self::when_let_go`]).
    passes_through: AtomicBool,
    /// Held while sessions are put to sleep and while one is woken, so that a wake never meets
    /// a worker being closed.
    transitions: tokio::sync::Mutex<()>,
    /// The task that puts idle sessions to sleep, started with the first session.
    sweeping: Once,
    /// What the times in [`sleep::Usage`] count from.
    epoch: Instant,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(limits.idle_timeout);
        Self {
            inner,
            table: Mutex::default(),
            slots: Arc::new(Semaphore::new(limits.max_sessions.max(1))),
            limits,
            #[cfg(feature = "redis")]
            shared: None,
            #[cfg(feature = "redis")]
            restoring: Mutex::default(),
            may_sleep: AtomicBool::new(false),
            passes_through: AtomicBool::new(false),
            transitions: tokio::sync::Mutex::const_new(()),
            sweeping: Once::new(),
            epoch: Instant::now(),
        }
    }

    /// Sessions whose records are kept in Redis too, so that other replicas can take them over.
    #[cfg(feature = "redis")]
    pub fn shared_in(
        mut self,
        records: Arc<crate::server::redis_store::sessions::SessionRecords>,
    ) -> Self {
        use crate::server::redis_store::events::RedisEventStore;
        let events = RedisEventStore::new(records.store().clone(), self.limits.idle_timeout);
        self.inner = std::mem::take(&mut self.inner).with_event_store(Arc::new(events));
        self.shared = Some(records);
        self
    }

    /// The sessions' records in Redis, if they are kept there.
    #[cfg(feature = "redis")]
    pub fn shared(&self) -> Option<&Arc<crate::server::redis_store::sessions::SessionRecords>> {
        self.shared.as_ref()
    }

    /// The rmcp view of the session records, for a restore ([`Self::shared`]).
    #[cfg(feature = "redis")]
    pub fn rmcp_store(
        &self,
    ) -> Option<Arc<dyn rmcp::transport::streamable_http_server::session::SessionStore>> {
        use crate::server::redis_store::sessions::RmcpSessionStore;
        let records = self.shared.clone()?;
        Some(Arc::new(RmcpSessionStore(records)))
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// The `retry` delay of the priming event rmcp starts a request's stream with, if any.
    pub fn priming_retry(&self) -> Option<Duration> {
        self.inner.session_config.sse_retry
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Sessions alive now (opened and not yet closed).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A place for a new session, or `None` when `--max-sessions` are open (or reserved by
    /// `initialize` requests in flight).
    pub fn reserve(&self) -> Option<Reservation> {
        self.slots.clone().try_acquire_owned().ok().map(Reservation)
    }

    /// Whether `caller` may use session `id`: only the caller who opened it. Marks it used.
    pub fn permits(&self, id: &str, caller: &Caller) -> bool {
        matches!(self.check(id, caller, false), Access::Permitted { .. })
    }

    /// Whether `caller` may use session `id`, and whether its Redis record is due a check.
    /// Marks it used, and in use until the answer is done (see [`InUse`]; `answers_a_post`: the
    /// answer carries a request's result).
    pub fn check(&self, id: &str, caller: &Caller, answers_a_post: bool) -> Access {
        let mut table = self.lock();
        let Some(entry) = table.entries.get_mut(id) else {
            return Access::Unknown;
        };
        if !entry.owner.as_ref().is_some_and(|owner| owner.is(caller)) {
            return Access::Refused;
        }
        let now = Instant::now();
        entry.last_used = now;
        let touch_due =
            self.has_shared_store() && now.duration_since(entry.last_touched) >= self.touch_every();
        if touch_due {
            entry.last_touched = now;
        }
        // A passed-through session ends when idle, not while a stream of it is open.
        let in_use = (self.may_sleep() || entry.passed_through)
            .then(|| InUse::new(&entry.usage, self.epoch, answers_a_post));
        Access::Permitted { touch_due, in_use }
    }

    fn has_shared_store(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.shared.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// [`TOUCH_EVERY`], or less with a very short idle timeout (the record must not expire
    /// between two checks).
    fn touch_every(&self) -> Duration {
        TOUCH_EVERY.min(self.limits.idle_timeout / 4)
    }

    /// Whether a plain tool request on session `id` may skip rmcp's session worker: the session
    /// is held here and its handshake is done. (Its owner is the guard's to check, before.) The
    /// worker is nudged when that is due, so that its keep-alive counts such requests too; a
    /// session whose worker is gone is not answered here.
    pub async fn answers_directly(&self, id: &str) -> bool {
        let nudge_due = {
            let mut table = self.lock();
            let Some(entry) = table.entries.get_mut(id).filter(|entry| entry.initialized) else {
                return false;
            };
            if entry.asleep {
                // No worker to keep alive: the sweep ends the session when it is idle.
                return true;
            }
            let now = Instant::now();
            let due = now.duration_since(entry.worker_nudged) >= self.nudge_every();
            if due {
                entry.worker_nudged = now;
            }
            due
        };
        !nudge_due || self.nudge_worker(id).await
    }

    /// Session `id`'s handshake is done: the client's, or its replay when the session was woken
    /// (it is awake from now on) or restored.
    fn handshake_done(&self, id: &str) {
        if let Some(entry) = self.lock().entries.get_mut(id) {
            entry.initialized = true;
            entry.asleep = false;
            entry.worker_nudged = Instant::now();
        }
    }

    /// Restarts the keep-alive of session `id`'s worker: false when the worker is gone.
    async fn nudge_worker(&self, id: &str) -> bool {
        let Some(handle) = self.inner.sessions.read().await.get(id).cloned() else {
            return false;
        };
        handle
            .close_request_wise_channel(NO_SUCH_STREAM)
            .await
            .is_ok()
    }

    /// [`NUDGE_EVERY`], or an eighth of the idle timeout when that is less: a session used only
    /// directly then lives at least seven eighths of the idle timeout after its last request.
    fn nudge_every(&self) -> Duration {
        NUDGE_EVERY.min(self.limits.idle_timeout / 8)
    }

    /// Ends session `id` here: its record is gone from the shared store (a `DELETE` on another
    /// replica, or it expired).
    pub async fn forget(&self, id: &str) {
        if self.lock().remove(id).is_some() {
            let _ = self.inner.close_session(&SessionId::from(id)).await;
        }
    }

    /// Holds session `id`, opened by an endpoint of the crate's own that rmcp never sees (the
    /// gateway's pass-through): owner binding and the caps as for any session, once the guard
    /// sees the id in the `initialize` answer ([`Self::bind`]). Such a session has no worker, so
    /// it ends here after `--session-idle-timeout` without a request or an open stream, and the
    /// endpoint hears of its end through [`Self::when_let_go`].
    pub fn hold_passed_through(&self, id: SessionId) {
        let entry = Entry {
            initialized: true,
            passed_through: true,
            ..Entry::new(Instant::now())
        };
        self.lock().entries.insert(id, entry);
    }

    /// Calls `let_go` with every session this table stops holding, whatever the reason.
    pub fn when_let_go(&self, let_go: LetGo) {
        self.lock().let_go = Some(let_go);
        self.passes_through.store(true, Ordering::Relaxed);
    }

    pub(super) fn passes_through(&self) -> bool {
        self.passes_through.load(Ordering::Relaxed)
    }

    /// Lets rmcp restore session `id` (not held here; its record names `caller` as the owner),
    /// which then holds `reservation` as its slot.
    #[cfg(feature = "redis")]
    pub fn expect_restore(&self, id: &str, caller: &Caller, reservation: Reservation) {
        self.restoring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(id.to_owned(), (Owner::of(caller), reservation));
    }

    /// Gives back what [`Self::expect_restore`] set aside if rmcp did not restore the session.
    #[cfg(feature = "redis")]
    pub fn restore_settled(&self, id: &str) {
        self.restoring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(id);
        if let Some(records) = &self.shared {
            records.forget_pending(id);
        }
    }

    /// Records that `caller` opened session `id`, which takes `reservation` as its slot. When
    /// that gives the caller more than `--max-sessions-per-caller` sessions, its least recently
    /// used one is closed (its client gets 404 and starts over, as MCP clients do).
    pub fn bind(self: &Arc<Self>, id: &str, caller: &Caller, reservation: Reservation) {
        let owner = Owner::of(caller);
        let evicted = {
            let mut table = self.lock();
            let Some(id) = table
                .entries
                .get_key_value(id)
                .map(|(known, _)| known.clone())
            else {
                // The session already ended (its handshake failed): nothing to hold a slot for.
                return;
            };
            if let Some(entry) = table.entries.get_mut(&id) {
                entry.owner = Some(owner.clone());
                entry.last_used = Instant::now();
                entry._slot = Some(reservation.0);
            }
            self.count_for_owner(&mut table, id, &owner)
        };
        self.close_evicted(evicted, &owner);
        self.start_sweeping();
    }

    /// Adds `id` to `owner`'s sessions; the least recently used one of them if that makes one
    /// too many (already out of the table).
    fn count_for_owner(
        &self,
        table: &mut Table,
        id: SessionId,
        owner: &Owner,
    ) -> Option<SessionId> {
        table.by_owner.entry(owner.clone()).or_default().push(id);
        table
            .over_cap(owner, self.limits.max_per_caller)
            .and_then(|lru| table.remove(&lru).map(|_| lru))
    }

    /// Holds session `id`, just restored by rmcp, for the owner the guard found in its record.
    #[cfg(feature = "redis")]
    fn adopt_restored(&self, id: SessionId) {
        let expected = self
            .restoring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&*id);
        let Some((owner, reservation)) = expected else {
            // Not let through by the guard: nobody's, so every request for it gets 404.
            return;
        };
        let now = Instant::now();
        let mut table = self.lock();
        table.entries.insert(
            id.clone(),
            Entry {
                owner: Some(owner.clone()),
                // rmcp's restore replays the whole handshake before it reports the session.
                initialized: true,
                _slot: Some(reservation.0),
                ..Entry::new(now)
            },
        );
        // An eviction here is rare (a caller with more sessions than the cap on this replica);
        // its worker stops when its keep-alive ends.
        if let Some(evicted) = self.count_for_owner(&mut table, id, &owner) {
            tracing::debug!(session = %evicted, "over --max-sessions-per-caller after a restore");
        }
    }

    fn close_evicted(self: &Arc<Self>, evicted: Option<SessionId>, owner: &Owner) {
        let Some(evicted) = evicted else {
            return;
        };
        tracing::debug!(
            subject = %owner.subject,
            "closing a caller's least recently used session: over --max-sessions-per-caller"
        );
        // Already unreachable (its entry is gone, so its requests get 404); rmcp's worker is
        // stopped off the request path, and its record (if shared) deleted, so that no other
        // replica takes it over.
        let sessions = Arc::clone(self);
        tokio::spawn(async move {
            let _ = sessions.inner.close_session(&evicted).await;
            #[cfg(feature = "redis")]
            if let Some(records) = &sessions.shared {
                let _ = records.remove(&evicted).await;
            }
        });
    }
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        self.lock()
            .entries
            .insert(id.clone(), Entry::new(Instant::now()));
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    /// A sleeping session has none here until rmcp wakes it ([`Self::restore_session`]).
    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        if self.is_asleep(id) {
            return Ok(false);
        }
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        if self.is_sleep_echo(id) {
            // Only the worker of a session put to sleep ended; a new one may serve it already.
            return Ok(());
        }
        self.lock().remove(id);
        // The record stays: another replica may be serving the session (a DELETE removes the
        // record through rmcp's store, and a record without use expires by itself).
        #[cfg(feature = "redis")]
        if let Some(records) = &self.shared {
            records.forget_pending(id);
        }
        self.inner.close_session(id).await
    }

    /// What rmcp's manager does, with the request's [`ResponseStream`] added to its extensions:
    /// rmcp numbers the stream here and keeps the number to itself.
    async fn create_stream(
        &self,
        id: &SessionId,
        mut message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let session = self
            .inner
            .sessions
            .read()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))?;
        let stream = session.establish_request_wise_channel().await?;
        if let (ClientJsonRpcMessage::Request(request), Some(stream_id)) =
            (&mut message, stream.http_request_id)
        {
            let response_stream = ResponseStream::new(session.clone(), stream_id);
            request.request.extensions_mut().insert(response_stream);
        }
        session
            .push_message(message, stream.http_request_id)
            .await?;
        let mut events = stream.inner;
        Ok(futures::stream::poll_fn(move |context| {
            events.poll_recv(context)
        }))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        let completes_handshake = matches!(
            &message,
            ClientJsonRpcMessage::Notification(notification)
                if matches!(notification.notification, ClientNotification::InitializedNotification(_))
        );
        self.inner.accept_message(id, message).await?;
        if completes_handshake {
            self.handshake_done(id);
        }
        Ok(())
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }

    /// Wakes a sleeping session; with `--session-store`, restores one this replica does not
    /// hold (the guard has checked its owner). Nothing else: in memory, a session that is not
    /// asleep here does not exist.
    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        if let Some(woken) = self.wake(id.clone()).await {
            return woken.map(RestoreOutcome::Restored);
        }
        if !self.has_shared_store() {
            return Ok(RestoreOutcome::NotSupported);
        }
        let outcome = self.inner.restore_session(id.clone()).await?;
        #[cfg(feature = "redis")]
        if matches!(outcome, RestoreOutcome::Restored(_)) {
            self.adopt_restored(id);
        }
        Ok(outcome)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
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

    fn limits(max_sessions: usize, max_per_caller: usize) -> SessionLimits {
        SessionLimits {
            max_sessions,
            max_per_caller,
            idle_timeout: Duration::from_secs(300),
            sleep_after: Duration::from_secs(30),
        }
    }

    /// Opens a session in rmcp's manager and binds it to `caller`, as the guard does.
    async fn open(sessions: &Arc<Sessions>, caller: &Caller) -> Option<SessionId> {
        let reservation = sessions.reserve()?;
        let (id, _transport) = sessions.create_session().await.unwrap();
        sessions.bind(&id, caller, reservation);
        Some(id)
    }

    #[tokio::test]
    async fn only_the_opener_may_use_a_session() {
        let sessions = Arc::new(Sessions::new(limits(10, 10)));
        let alice = caller("https://a", Some("alice"), None);
        let id = open(&sessions, &alice).await.unwrap();
        assert!(sessions.permits(&id, &alice));
        assert!(!sessions.permits(&id, &caller("https://a", Some("bob"), None)));
        assert!(!sessions.permits(&id, &caller("https://b", Some("alice"), None)));
        assert!(
            !sessions.permits("unknown", &alice),
            "unknown sessions are not permitted"
        );
        sessions.close_session(&id).await.unwrap();
        assert!(!sessions.permits(&id, &alice));
        assert!(sessions.is_empty());
    }

    #[tokio::test]
    async fn machine_callers_are_told_apart_by_client_id() {
        let sessions = Arc::new(Sessions::new(limits(10, 10)));
        let id = open(&sessions, &caller("https://a", None, Some("bot-1")))
            .await
            .unwrap();
        assert!(sessions.permits(&id, &caller("https://a", None, Some("bot-1"))));
        assert!(!sessions.permits(&id, &caller("https://a", None, Some("bot-2"))));
    }

    #[tokio::test]
    async fn a_session_not_yet_bound_is_nobodys() {
        let sessions = Arc::new(Sessions::new(limits(10, 10)));
        let (id, _transport) = sessions.create_session().await.unwrap();
        assert!(!sessions.permits(&id, &caller("https://a", Some("alice"), None)));
    }

    #[tokio::test]
    async fn the_global_cap_refuses_reservations_until_a_session_ends() {
        let sessions = Arc::new(Sessions::new(limits(2, 10)));
        let alice = caller("https://a", Some("alice"), None);
        let first = open(&sessions, &alice).await.unwrap();
        open(&sessions, &alice).await.unwrap();
        assert!(sessions.reserve().is_none(), "two of two are open");
        sessions.close_session(&first).await.unwrap();
        assert!(
            sessions.reserve().is_some(),
            "a closed session frees its slot"
        );
    }

    #[tokio::test]
    async fn an_unused_reservation_is_given_back() {
        let sessions = Arc::new(Sessions::new(limits(1, 10)));
        let reservation = sessions.reserve().unwrap();
        assert!(sessions.reserve().is_none());
        drop(reservation);
        assert!(sessions.reserve().is_some());
    }

    #[tokio::test]
    async fn a_session_that_ended_before_it_was_bound_holds_no_slot() {
        let sessions = Arc::new(Sessions::new(limits(1, 10)));
        let reservation = sessions.reserve().unwrap();
        let (id, _transport) = sessions.create_session().await.unwrap();
        sessions.close_session(&id).await.unwrap();
        sessions.bind(&id, &caller("https://a", Some("alice"), None), reservation);
        assert!(sessions.is_empty());
        assert!(sessions.reserve().is_some(), "the slot came back");
    }

    #[tokio::test]
    async fn one_more_session_than_the_per_caller_cap_closes_the_least_recently_used() {
        let sessions = Arc::new(Sessions::new(limits(100, 3)));
        let alice = caller("https://a", Some("alice"), None);
        let bob = caller("https://a", Some("bob"), None);
        let bobs = open(&sessions, &bob).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(open(&sessions, &alice).await.unwrap());
            // Distinct instants, so "least recently used" is well defined.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The oldest is used again, so the second is now the least recently used.
        assert!(sessions.permits(&ids[0], &alice));
        let newest = open(&sessions, &alice).await.unwrap();
        assert!(sessions.permits(&ids[0], &alice));
        assert!(!sessions.permits(&ids[1], &alice), "the LRU one was closed");
        assert!(sessions.permits(&ids[2], &alice));
        assert!(sessions.permits(&newest, &alice));
        assert!(sessions.permits(&bobs, &bob), "another caller is untouched");
        assert_eq!(sessions.len(), 4);
    }
}
