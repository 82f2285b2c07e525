//! The upstream client's side of a gateway session: what the upstream sends on its own (progress,
//! log messages, list changes, sampling, elicitation, roots) goes to the client, and the
//! client's answers go back.
//!
//! rmcp gives each request it sends upstream a progress token of its own, so the client's token
//! is kept here and put back on the upstream's progress notifications; they, and everything else
//! the upstream sends while a client request is in flight, are sent on that request's stream.
//!
//! rmcp hands each notification to its own task, so without help a request's last progress
//! notification can reach the client after the answer (whose stream is then closed) and two
//! notifications can swap. [`InOrder`] numbers the notifications as they arrive; the relay
//! forwards them in that order, and the gateway sends an answer only once everything that
//! arrived before it has been forwarded.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ClientConfig, ClientResult, GetExtensions, GetMeta, JsonRpcMessage, ProgressToken, RequestId,
    ServerNotification, ServerRequest,
};
use rmcp::service::{
    NotificationContext, OriginatingRequestId, Peer, RequestContext, RxJsonRpcMessage,
    TxJsonRpcMessage,
};
use rmcp::transport::Transport;
use rmcp::{ErrorData as McpError, RoleClient, RoleServer, Service};
use tokio::sync::watch;

/// Longest wait for an earlier notification to be forwarded before going on without it: the
/// order is kept while the client reads, not at the cost of a session stuck behind one that
/// cannot be delivered.
const ORDER_WAIT: Duration = Duration::from_secs(5);

/// See the module documentation. Clones share their state.
#[derive(Clone)]
pub struct Relay {
    downstream: Peer<RoleServer>,
    client_info: Arc<ClientConfig>,
    state: Arc<Mutex<RelayState>>,
    arrivals: Arc<watch::Sender<Arrivals>>,
}

/// Where the progress of one upstream request goes: the client's token and request. The gateway
/// puts it on the request it sends; [`InOrder`] files it under the upstream token as the request
/// leaves, so no progress can arrive before it is known.
#[derive(Debug, Clone)]
pub struct ProgressRoute {
    pub client_token: ProgressToken,
    pub request: RequestId,
}

#[derive(Default)]
struct RelayState {
    /// Upstream progress token → where its progress goes.
    progress: HashMap<ProgressToken, ProgressRoute>,
    /// The client requests in flight, oldest first.
    in_flight: Vec<RequestId>,
}

/// A client request in flight until this is dropped.
pub struct InFlight {
    state: Arc<Mutex<RelayState>>,
    id: RequestId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if let Some(position) = state.in_flight.iter().position(|id| *id == self.id) {
            state.in_flight.remove(position);
        }
    }
}

/// The upstream's notifications by arrival number: how many arrived, and how many of the first
/// ones have been forwarded.
#[derive(Default)]
struct Arrivals {
    received: u64,
    /// Every notification numbered below this has been forwarded (or given up on).
    forwarded_below: u64,
    /// Forwarded, but after a gap: numbers at or above `forwarded_below`.
    forwarded_early: BTreeSet<u64>,
}

impl Arrivals {
    fn forwarded(&mut self, number: u64) {
        if number >= self.forwarded_below {
            self.forwarded_early.insert(number);
            self.advance();
        }
    }

    /// Treats everything numbered below `number` as forwarded.
    fn give_up_below(&mut self, number: u64) {
        if number > self.forwarded_below {
            self.forwarded_below = number;
            self.forwarded_early = self.forwarded_early.split_off(&number);
            self.advance();
        }
    }

    fn advance(&mut self) {
        while self.forwarded_early.remove(&self.forwarded_below) {
            self.forwarded_below += 1;
        }
    }
}

/// A notification's arrival number, carried in its extensions from [`InOrder`] to the relay.
#[derive(Debug, Clone, Copy)]
struct Arrival(u64);

fn lock(state: &Mutex<RelayState>) -> std::sync::MutexGuard<'_, RelayState> {
    state.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Relay {
    /// A relay to `downstream`, which introduces itself upstream as the client did to us.
    pub fn new(downstream: Peer<RoleServer>, client_info: ClientConfig) -> Self {
        Self {
            downstream,
            client_info: Arc::new(client_info),
            state: Arc::default(),
            arrivals: Arc::new(watch::Sender::new(Arrivals::default())),
        }
    }

    /// `transport` with its messages seen by this relay as they pass, for their order.
    pub fn in_order<T>(&self, transport: T) -> InOrder<T> {
        InOrder {
            inner: transport,
            relay: self.clone(),
        }
    }

    /// Marks client request `id` as in flight, until the returned guard is dropped.
    pub fn begin(&self, id: RequestId) -> InFlight {
        lock(&self.state).in_flight.push(id.clone());
        InFlight {
            state: self.state.clone(),
            id,
        }
    }

    /// Waits until every notification that arrived so far has been forwarded, then forgets
    /// `upstream`'s progress route: called with a request's answer in hand, so that its
    /// progress and log messages reach the client before the answer closes the stream.
    pub async fn settle(&self, upstream: &ProgressToken) {
        let arrived = self.arrivals.borrow().received;
        self.wait_until_forwarded_below(arrived).await;
        lock(&self.state).progress.remove(upstream);
    }

    /// Waits until every notification numbered below `number` has been forwarded, at most
    /// [`ORDER_WAIT`]; then goes on as if they had been.
    async fn wait_until_forwarded_below(&self, number: u64) {
        let mut arrivals = self.arrivals.subscribe();
        let forwarded = arrivals.wait_for(|arrivals| arrivals.forwarded_below >= number);
        if tokio::time::timeout(ORDER_WAIT, forwarded).await.is_err() {
            tracing::debug!(
                number,
                "an earlier notification from upstream is still not forwarded; going on without it"
            );
            self.arrivals
                .send_modify(|arrivals| arrivals.give_up_below(number));
        }
    }

    /// Numbers a notification as it arrives (see [`InOrder`]).
    fn arrived(&self) -> Arrival {
        let mut number = 0;
        self.arrivals.send_if_modified(|arrivals| {
            number = arrivals.received;
            arrivals.received += 1;
            false
        });
        Arrival(number)
    }

    fn route_progress(&self, upstream: ProgressToken, route: ProgressRoute) {
        lock(&self.state).progress.insert(upstream, route);
    }

    /// Sends a notification from upstream to the client, on the stream of the request it
    /// belongs to.
    async fn forward(&self, mut notification: ServerNotification) {
        let mut related = None;
        if let ServerNotification::ProgressNotification(progress) = &mut notification {
            let route = lock(&self.state)
                .progress
                .get(&progress.params.progress_token)
                .cloned();
            // Progress for no request the client asked to follow is not the client's business.
            let Some(route) = route else {
                return;
            };
            progress.params.progress_token = route.client_token;
            related = Some(route.request);
        }
        if let Some(id) = related.or_else(|| self.current_request()) {
            notification
                .extensions_mut()
                .insert(OriginatingRequestId(id));
        }
        if let Err(error) = self.downstream.send_notification(notification).await {
            tracing::debug!(%error, "a notification from upstream could not reach the client");
        }
    }

    /// The client request a message from upstream most likely belongs to: the latest in flight.
    fn current_request(&self) -> Option<RequestId> {
        lock(&self.state).in_flight.last().cloned()
    }
}

impl Service<RoleClient> for Relay {
    async fn handle_request(
        &self,
        mut request: ServerRequest,
        _context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, McpError> {
        if let Some(id) = self.current_request() {
            request.extensions_mut().insert(OriginatingRequestId(id));
        }
        self.downstream
            .send_request(request)
            .await
            .map_err(|error| match error {
                rmcp::service::ServiceError::McpError(error) => error,
                other => {
                    McpError::internal_error(format!("the client did not answer: {other}"), None)
                }
            })
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        context: NotificationContext<RoleClient>,
    ) -> Result<(), McpError> {
        let arrival = context.extensions.get::<Arrival>().copied();
        if let Some(Arrival(number)) = arrival {
            self.wait_until_forwarded_below(number).await;
        }
        self.forward(notification).await;
        if let Some(Arrival(number)) = arrival {
            self.arrivals
                .send_modify(|arrivals| arrivals.forwarded(number));
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        (*self.client_info).clone()
    }
}

/// The upstream transport, watched by the relay: a request's progress route is filed as the
/// request leaves, and each notification is numbered as it arrives, in the transport's order.
pub struct InOrder<T> {
    inner: T,
    relay: Relay,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for InOrder<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        message: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let JsonRpcMessage::Request(request) = &message
            && let Some(route) = request.request.extensions().get::<ProgressRoute>()
            && let Some(token) = request.request.get_meta().get_progress_token()
        {
            self.relay.route_progress(token, route.clone());
        }
        self.inner.send(message)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let mut message = self.inner.receive().await;
        if let Some(JsonRpcMessage::Notification(notification)) = &mut message
            // rmcp may keep a cancellation to itself; numbering one would hold up the rest.
            && !matches!(
                notification.notification,
                ServerNotification::CancelledNotification(_)
            )
        {
            let arrival = self.relay.arrived();
            notification.notification.extensions_mut().insert(arrival);
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::Arrivals;

    #[test]
    fn arrivals_count_as_forwarded_only_without_a_gap() {
        let mut arrivals = Arrivals {
            received: 4,
            ..Arrivals::default()
        };
        arrivals.forwarded(1);
        arrivals.forwarded(2);
        assert_eq!(arrivals.forwarded_below, 0);
        arrivals.forwarded(0);
        assert_eq!(arrivals.forwarded_below, 3);
        assert!(arrivals.forwarded_early.is_empty());
        // Forwarded twice (or after being given up on) changes nothing.
        arrivals.forwarded(1);
        assert_eq!(arrivals.forwarded_below, 3);
    }

    #[test]
    fn giving_up_skips_the_gap_and_keeps_what_came_after_it() {
        let mut arrivals = Arrivals {
            received: 6,
            ..Arrivals::default()
        };
        arrivals.forwarded(3);
        arrivals.forwarded(5);
        // 0, 1 and 2 never come: past 2, 3 was already forwarded, 4 was not.
        arrivals.give_up_below(3);
        assert_eq!(arrivals.forwarded_below, 4);
        arrivals.forwarded(4);
        assert_eq!(arrivals.forwarded_below, 6);
        arrivals.give_up_below(2);
        assert_eq!(arrivals.forwarded_below, 6);
    }
}
