//! The upstream client's side of a gateway session: what the upstream sends on its own (progress,
//! log messages, list changes, sampling, elicitation, roots) goes to the client, and the
//! client's answers go back.
//!
//! rmcp gives each request it sends upstream a progress token of its own, so the client's token
//! is kept here and put back on the upstream's progress notifications; they, and everything else
//! the upstream sends while a client request is in flight, are sent on that request's stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientConfig, ClientResult, GetExtensions, ProgressToken, RequestId, ServerNotification,
    ServerRequest,
};
use rmcp::service::{NotificationContext, OriginatingRequestId, Peer, RequestContext};
use rmcp::{ErrorData as McpError, RoleClient, RoleServer, Service};

/// See the module documentation. Clones share their state.
#[derive(Clone)]
pub struct Relay {
    downstream: Peer<RoleServer>,
    client_info: Arc<ClientConfig>,
    state: Arc<Mutex<RelayState>>,
}

#[derive(Default)]
struct RelayState {
    /// Upstream progress token → the client's token and the client request it belongs to.
    progress: HashMap<ProgressToken, (ProgressToken, RequestId)>,
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

    /// Progress the upstream reports under `upstream` belongs to client request `request`,
    /// whose token is `client`.
    pub fn map_progress(&self, upstream: ProgressToken, client: ProgressToken, request: RequestId) {
        lock(&self.state).progress.insert(upstream, (client, request));
    }

    pub fn forget_progress(&self, upstream: &ProgressToken) {
        lock(&self.state).progress.remove(upstream);
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
                other => McpError::internal_error(format!("the client did not answer: {other}"), None),
            })
    }

    async fn handle_notification(
        &self,
        mut notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), McpError> {
        let mut related = None;
        if let ServerNotification::ProgressNotification(progress) = &mut notification {
            let mapped = lock(&self.state)
                .progress
                .get(&progress.params.progress_token)
                .cloned();
            // Progress for no request the client asked to follow is not the client's business.
            let Some((client_token, request)) = mapped else {
                return Ok(());
            };
            progress.params.progress_token = client_token;
            related = Some(request);
        }
        if let Some(id) = related.or_else(|| self.current_request()) {
            notification.extensions_mut().insert(OriginatingRequestId(id));
        }
        if let Err(error) = self.downstream.send_notification(notification).await {
            tracing::debug!(%error, "a notification from upstream could not reach the client");
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        (*self.client_info).clone()
    }
}
