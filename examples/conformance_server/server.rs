//! [`ConformanceServer`]: the tools and prompts (from their routers) and the rest of
//! `ServerHandler` written out: resources and subscriptions, completion, the logging level.

// Logging is deprecated for the 2026-07-28 protocol (SEP-2577); the suite's client speaks
// 2025-11-25, where it is current. rmcp marks `resources/subscribe` and `unsubscribe` likewise.
#![allow(deprecated)]

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, CompletionInfo, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Reference, ServerCapabilities, ServerConfig,
    SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, prompt_handler, tool_handler};
use serde_json::json;

use crate::session::Session;
use crate::{prompts, resources};

#[derive(Clone)]
pub struct ConformanceServer {
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
    session: Session,
}

impl ConformanceServer {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
            session: Session::default(),
        }
    }

    /// Sends `message` to the client as a log message at `level`, unless the session asked for
    /// more severe ones only.
    pub(crate) async fn log(&self, peer: &Peer<RoleServer>, level: LoggingLevel, message: &str) {
        if self.session.logs(level) {
            let notification = LoggingMessageNotificationParam::new(level, json!(message))
                .with_logger("conformance_server");
            // A client gone mid-call is no failure of the tool's.
            let _ = peer.notify_logging_message(notification).await;
        }
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("conformance-server", "1.0.0"))
            .with_instructions("Fixtures for the MCP conformance suite's server scenarios.")
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(resources::listed()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let contents = resources::read(&request.uri)?;
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let uri = request.uri;
        if !resources::exists(&uri) {
            let message = format!("no resource {uri} to subscribe to");
            return Err(ErrorData::resource_not_found(
                message,
                Some(json!({"uri": uri})),
            ));
        }
        self.session.watch(uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session.unwatch(&request.uri);
        Ok(())
    }

    /// Offers the known values that start with what the user typed.
    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let argument = &request.argument;
        let known = match &request.r#ref {
            Reference::Prompt(prompt) => {
                prompts::argument_suggestions(&prompt.name, &argument.name)
            }
            Reference::Resource(template) => {
                resources::argument_suggestions(&template.uri, &argument.name)
            }
            _ => &[],
        };
        let matching = known
            .iter()
            .filter(|value| value.starts_with(&argument.value))
            .map(|value| (*value).to_owned())
            .collect();
        let completion = CompletionInfo::new(matching)
            .map_err(|error| ErrorData::internal_error(error, None))?;
        Ok(CompleteResult::new(completion))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session.set_log_level(request.level);
        Ok(())
    }
}
