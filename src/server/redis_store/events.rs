//! Event streams in Redis (`--session-store`): an SSE stream cut mid-way resumes with
//! `Last-Event-ID` on any replica, with no event lost.
//!
//! rmcp asks its [`EventStore`] for an id before it sends each event. Waiting for Redis there
//! would add a round trip to every answer, so the id is made here, unique without asking anyone
//! (`<stream id>|<replica>-<n>`: a session's streams are numbered again by each replica that
//! holds it, so the replica's random tag keeps the ids apart), and the event is written in the
//! background by one task per replica, in order, many events per round trip. A client resumes
//! after the stream's `retry` delay (seconds), by when its events are in Redis.
//!
//! Each stream is a list, `<prefix>events:<stream id>`, holding its last [`KEEP_EVENTS`] events
//! (trimmed at most once a second, so it may briefly hold a second's more). The session's own
//! stream (rmcp's `<session>:common`, the GET) expires with the session's idle timeout; a
//! request's stream [`REQUEST_STREAM_TTL`] after its last event. If Redis cannot take the events, the stream goes
//! on (the failure is counted and logged): only a resume elsewhere loses them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::{
    EventId, EventStore, EventStoreError, EventStream, ServerSseMessage,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::RedisStore;

/// Events kept per stream: a resume further back than this starts over.
pub const KEEP_EVENTS: isize = 1000;
/// Events waiting for the writer; beyond, new ones are not kept (counted as failures).
const QUEUE: usize = 8192;
/// Events written per round trip, at most.
const BATCH: usize = 256;

/// One event as kept in Redis.
#[derive(Serialize, Deserialize)]
struct Kept {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<ServerJsonRpcMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_ms: Option<u64>,
}

struct Write {
    key: String,
    record: String,
}

/// The [`EventStore`] of a replica whose sessions are shared on Redis.
pub struct RedisEventStore {
    store: Arc<RedisStore>,
    ttl: Duration,
    /// This replica's tag in the event ids.
    replica: String,
    next: AtomicU64,
    /// The background writer, started with the first event (inside the runtime).
    writer: OnceLock<mpsc::Sender<Write>>,
}

impl RedisEventStore {
    pub fn new(store: Arc<RedisStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            replica: replica_tag(),
            next: AtomicU64::new(0),
            writer: OnceLock::new(),
        }
    }

    fn key(&self, stream_id: &str) -> String {
        self.store.key(&format!("events:{stream_id}"))
    }

    fn queue(&self, write: Write) {
        let writer = self.writer.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(write_events(self.store.clone(), self.ttl, receiver));
            sender
        });
        if writer.try_send(write).is_err() {
            self.store
                .note_failure("keeping an event", "the queue of events to write is full");
        }
    }
}

/// A random tag for this replica: 8 hex digits from the system's random source.
fn replica_tag() -> String {
    let mut bytes = [0u8; 4];
    // The tag only has to differ between replicas; should the random source fail, the process
    // id and the time still make a clash unlikely.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let fallback = std::process::id() ^ (crate::auth::time::now() as u32);
        bytes = fallback.to_be_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// How long a request's stream is kept after its last event. Ten times the `retry` rmcp tells
/// clients to wait before resuming; keeping every answered request's events for the session's
/// whole idle timeout would hold minutes of traffic in Redis.
const REQUEST_STREAM_TTL: Duration = Duration::from_secs(30);

/// How often each stream's list is trimmed and its expiry pushed back, at most: doing it with
/// every event would triple the commands per event.
const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// Writes queued events to Redis, in order, a batch per round trip, until the store is dropped.
async fn write_events(store: Arc<RedisStore>, ttl: Duration, mut queue: mpsc::Receiver<Write>) {
    let millis = |ttl: Duration| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
    // The session's own stream (its GET) lives as long as the session; a request's, briefly.
    let (session_ttl, request_ttl) = (millis(ttl), millis(ttl.min(REQUEST_STREAM_TTL)));
    let mut batch = Vec::with_capacity(BATCH);
    // When each stream was last trimmed and given its expiry (a new stream: at its first event).
    let mut maintained: HashMap<String, Instant> = HashMap::new();
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let now = Instant::now();
        let mut pipe = redis::pipe();
        for write in &batch {
            pipe.rpush(&write.key, &write.record).ignore();
        }
        for write in &batch {
            let due = maintained
                .get(&write.key)
                .is_none_or(|last| now.duration_since(*last) >= MAINTAIN_EVERY);
            if due {
                pipe.ltrim(&write.key, -KEEP_EVENTS, -1).ignore();
                let ttl = match write.key.ends_with(":common") {
                    true => session_ttl,
                    false => request_ttl,
                };
                pipe.pexpire(&write.key, ttl).ignore();
                maintained.insert(write.key.clone(), now);
            }
        }
        // Streams quiet for longer than the expiry are gone from Redis: forget them here too.
        if maintained.len() > 10_000 {
            maintained.retain(|_, last| now.duration_since(*last) < ttl);
        }
        let mut connection = store.connection();
        let _ = store
            .run("keeping events", pipe.query_async::<()>(&mut connection))
            .await;
        batch.clear();
    }
}

#[async_trait::async_trait]
impl EventStore for RedisEventStore {
    async fn store_event(
        &self,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<EventId, EventStoreError> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{stream_id}|{}-{number}", self.replica);
        let kept = Kept {
            id: id.clone(),
            message: event.message.as_deref().cloned(),
            retry_ms: event
                .retry
                .map(|retry| u64::try_from(retry.as_millis()).unwrap_or(u64::MAX)),
        };
        let record = serde_json::to_string(&kept)?;
        self.queue(Write {
            key: self.key(stream_id),
            record,
        });
        Ok(id)
    }

    async fn replay_events_after(
        &self,
        last_event_id: &str,
    ) -> Result<EventStream, EventStoreError> {
        let Some((stream_id, _)) = last_event_id.rsplit_once('|') else {
            return Err(format!("{last_event_id:?} is not an event id of this server").into());
        };
        let mut connection = self.store.connection();
        let mut command = redis::cmd("LRANGE");
        command.arg(self.key(stream_id)).arg(0).arg(-1);
        let read = command.query_async::<Vec<String>>(&mut connection);
        let records = self.store.run("replaying events", read).await?;
        let kept: Vec<Kept> = records
            .iter()
            .filter_map(|record| serde_json::from_str(record).ok())
            .collect();
        let Some(last) = kept.iter().position(|event| event.id == last_event_id) else {
            return Err(format!(
                "event {last_event_id:?} is no longer kept (at most {KEEP_EVENTS} per stream, \
                 for the session's idle timeout)"
            )
            .into());
        };
        let replay: Vec<ServerSseMessage> = kept
            .into_iter()
            .skip(last + 1)
            .map(|event| {
                let mut message = ServerSseMessage::default();
                message.event_id = Some(event.id);
                message.message = event.message.map(Arc::new);
                message.retry = event.retry_ms.map(Duration::from_millis);
                message
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(replay)))
    }
}
