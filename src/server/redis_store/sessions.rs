//! Session records in Redis (`--session-store`): who opened each session and the client's
//! `initialize` parameters, so that any replica can take a session over.
//!
//! One hash per session, `<prefix>session:<id>`, with `iss` and `sub` (the owner, as
//! `server::sessions` binds it) and `params` (the `initialize` parameters, JSON). It expires
//! after `--session-idle-timeout` without use; a replica that serves the session pushes the
//! expiry back ([`SessionRecords::touch`]).
//!
//! The record is written by the guard, after the handshake and before the client sees the
//! session id, in one atomic round trip ([`SessionRecords::persist`]): if Redis cannot take it,
//! the session is closed and the client gets 503, so no session ever exists without its owner
//! binding. rmcp hands the parameters over a moment earlier, through its [`SessionStore`]
//! ([`RmcpSessionStore::store`]); they wait in memory for the guard.
//!
//! Taking over: a replica that does not hold a session reads its record
//! ([`SessionRecords::owner_of`]); the guard answers 404 unless the caller is the owner, and
//! otherwise lets rmcp restore the session, which asks [`RmcpSessionStore::load`] for the
//! parameters the guard just read (no second round trip).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::InitializeRequestParams;
use rmcp::transport::streamable_http_server::session::{
    SessionState, SessionStore, SessionStoreError,
};

use super::{RedisStore, StoreError, lock};

/// The sessions' records in one Redis.
pub struct SessionRecords {
    store: Arc<RedisStore>,
    /// How long a record lives without use: `--session-idle-timeout`.
    ttl: Duration,
    /// `initialize` parameters on their way between rmcp and the guard, by session id.
    pending: Mutex<HashMap<String, InitializeRequestParams>>,
}

/// The owner a record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOwner {
    pub issuer: String,
    pub subject: String,
}

impl SessionRecords {
    pub fn new(store: Arc<RedisStore>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            ttl,
            pending: Mutex::default(),
        })
    }

    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    fn key(&self, id: &str) -> String {
        self.store.key(&format!("session:{id}"))
    }

    fn ttl_millis(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Writes the record of session `id`, opened by `owner`: one atomic round trip.
    pub async fn persist(&self, id: &str, owner: &StoredOwner) -> Result<(), StoreError> {
        let params = lock(&self.pending).remove(id);
        let params = match params {
            Some(params) => serde_json::to_string(&params).unwrap_or_default(),
            // rmcp stores the parameters of every handshake it completes; without them the
            // session can still be owned here, just not taken over elsewhere.
            None => String::new(),
        };
        let key = self.key(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &key,
                &[
                    ("iss", owner.issuer.as_str()),
                    ("sub", owner.subject.as_str()),
                    ("params", params.as_str()),
                ],
            )
            .ignore()
            .pexpire(&key, self.ttl_millis() as i64)
            .ignore();
        let mut connection = self.store.connection();
        let write = pipe.query_async::<()>(&mut connection);
        self.store.run("storing a new session", write).await
    }

    /// The owner of session `id`, or `None` when Redis has no such session (never opened,
    /// deleted, or expired). Its parameters are kept for rmcp's restore that follows.
    pub async fn owner_of(&self, id: &str) -> Result<Option<StoredOwner>, StoreError> {
        let mut connection = self.store.connection();
        let mut command = redis::cmd("HMGET");
        command.arg(self.key(id)).arg(&["iss", "sub", "params"]);
        let read = command
            .query_async::<(Option<String>, Option<String>, Option<String>)>(&mut connection);
        let (issuer, subject, params) = self.store.run("reading a session", read).await?;
        let (Some(issuer), Some(subject)) = (issuer, subject) else {
            return Ok(None);
        };
        if let Some(params) = params.and_then(|json| serde_json::from_str(&json).ok()) {
            lock(&self.pending).insert(id.to_owned(), params);
        }
        Ok(Some(StoredOwner { issuer, subject }))
    }

    /// Pushes the expiry of session `id` back; `false` when Redis no longer has it (deleted on
    /// another replica, or expired).
    pub async fn touch(&self, id: &str) -> Result<bool, StoreError> {
        let mut connection = self.store.connection();
        let ttl = self.ttl_millis() as i64;
        let mut command = redis::cmd("PEXPIRE");
        command.arg(self.key(id)).arg(ttl);
        let expire = command.query_async::<i64>(&mut connection);
        Ok(self.store.run("refreshing a session", expire).await? == 1)
    }

    /// Deletes the record of session `id`: it ends on every replica.
    pub async fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.forget_pending(id);
        let mut connection = self.store.connection();
        let mut command = redis::cmd("DEL");
        command.arg(self.key(id));
        let delete = command.query_async::<i64>(&mut connection);
        self.store.run("deleting a session", delete).await.map(drop)
    }

    /// Drops parameters nobody will collect (the session ended before the guard stored it).
    pub fn forget_pending(&self, id: &str) {
        lock(&self.pending).remove(id);
    }
}

/// The [`SessionStore`] rmcp consults: parameters in ([`store`](Self::store), kept for the
/// guard), parameters out for a restore ([`load`](Self::load)), and `DELETE`
/// ([`delete`](Self::delete)).
pub struct RmcpSessionStore(pub Arc<SessionRecords>);

#[async_trait::async_trait]
impl SessionStore for RmcpSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let kept = lock(&self.0.pending).remove(session_id);
        if let Some(params) = kept {
            return Ok(Some(SessionState::new(params)));
        }
        // Only reached when the guard did not read the record first; read it now.
        let mut connection = self.0.store.connection();
        let mut command = redis::cmd("HGET");
        command.arg(self.0.key(session_id)).arg("params");
        let read = command.query_async::<Option<String>>(&mut connection);
        let params = self.0.store.run("reading a session", read).await?;
        Ok(params
            .and_then(|json| serde_json::from_str(&json).ok())
            .map(SessionState::new))
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        lock(&self.0.pending).insert(session_id.to_owned(), state.initialize_params.clone());
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        Ok(self.0.remove(session_id).await?)
    }
}
