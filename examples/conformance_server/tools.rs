//! The tools, one for each server scenario that calls one, named as the scenario asks.

// Sampling and logging are deprecated for the 2026-07-28 protocol (SEP-2577); the suite's client
// speaks 2025-11-25, where they are current.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequestParams, CreateMessageResult, Extensions,
    JsonObject, LoggingLevel, ProgressNotificationParam, RequestMetaObject, ResourceContents,
    SamplingMessage,
};
use rmcp::{Peer, RoleServer, tool, tool_router};
use scalekit_mcp::ResponseStream;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::elicitation;
use crate::media::{RED_PIXEL_PNG, SILENCE_WAV};
use crate::server::ConformanceServer;

/// The pause between the steps of the logging and progress tools: long enough for the client to
/// see separate notifications arrive during the call.
const STEP: Duration = Duration::from_millis(50);

/// How soon the client is told to come back when `test_reconnection` ends its stream.
const RECONNECT_AFTER: Duration = Duration::from_millis(100);

/// How long `test_reconnection` works after ending its stream: ten times `RECONNECT_AFTER`, so
/// the client is back before the answer (which would be lost otherwise: see `ResponseStream`).
const ANSWER_AFTER: Duration = Duration::from_secs(1);

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SamplingRequest {
    /// The prompt to send to the LLM
    prompt: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ElicitationRequest {
    /// The message to show the user
    message: String,
}

#[tool_router(vis = "pub(crate)")]
impl ConformanceServer {
    #[tool(name = "test_simple_text", description = "Returns a text block")]
    fn simple_text(&self) -> CallToolResult {
        text("This is a simple text response for testing.")
    }

    #[tool(
        name = "test_image_content",
        description = "Returns an image: a 1x1 red PNG"
    )]
    fn image_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::image(RED_PIXEL_PNG, "image/png")])
    }

    #[tool(
        name = "test_audio_content",
        description = "Returns audio: 1 ms of silence as WAV"
    )]
    fn audio_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::audio(SILENCE_WAV, "audio/wav")])
    }

    #[tool(
        name = "test_embedded_resource",
        description = "Returns an embedded text resource"
    )]
    fn embedded_resource(&self) -> CallToolResult {
        let resource = ResourceContents::text(
            "This is an embedded resource content.",
            "test://embedded-resource",
        );
        CallToolResult::success(vec![ContentBlock::resource(
            resource.with_mime_type("text/plain"),
        )])
    }

    #[tool(
        name = "test_multiple_content_types",
        description = "Returns text, an image and an embedded JSON resource"
    )]
    fn multiple_content_types(&self) -> CallToolResult {
        let data = json!({"test": "data", "value": 123}).to_string();
        let resource = ResourceContents::text(data, "test://mixed-content-resource")
            .with_mime_type("application/json");
        CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(RED_PIXEL_PNG, "image/png"),
            ContentBlock::resource(resource),
        ])
    }

    #[tool(
        name = "test_tool_with_logging",
        description = "Logs three messages at info level, 50 ms apart"
    )]
    async fn tool_with_logging(&self, peer: Peer<RoleServer>) -> CallToolResult {
        let messages = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        for (step, message) in messages.into_iter().enumerate() {
            if step > 0 {
                tokio::time::sleep(STEP).await;
            }
            self.log(&peer, LoggingLevel::Info, message).await;
        }
        text("Logged 3 messages at info level.")
    }

    #[tool(name = "test_error_handling", description = "Always fails")]
    fn error_handling(&self) -> CallToolResult {
        failure("This tool intentionally returns an error for testing")
    }

    #[tool(
        name = "test_tool_with_progress",
        description = "Reports progress 0, 50 and 100 of 100, 50 ms apart, to a caller who asks"
    )]
    async fn tool_with_progress(
        &self,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> CallToolResult {
        let token = meta.get_progress_token();
        for (step, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
            if step > 0 {
                tokio::time::sleep(STEP).await;
            }
            if let Some(token) = &token {
                let update = ProgressNotificationParam::new(token.clone(), progress);
                // A client gone mid-call is no failure of the tool's.
                let _ = peer.notify_progress(update.with_total(100.0)).await;
            }
        }
        text("Reported progress 0, 50 and 100 of 100.")
    }

    #[tool(
        name = "test_sampling",
        description = "Asks the client's LLM to answer a prompt"
    )]
    async fn sampling(
        &self,
        peer: Peer<RoleServer>,
        Parameters(SamplingRequest { prompt }): Parameters<SamplingRequest>,
    ) -> CallToolResult {
        let supported = peer
            .peer_info()
            .is_some_and(|client| client.capabilities.sampling.is_some());
        if !supported {
            return failure("the client does not support sampling");
        }
        let request =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
        match peer.create_message(request).await {
            Ok(answer) => text(format!("LLM response: {}", text_of(&answer))),
            Err(error) => failure(format!("sampling/createMessage failed: {error}")),
        }
    }

    #[tool(
        name = "test_elicitation",
        description = "Asks the user for a username and an email"
    )]
    async fn elicitation(
        &self,
        peer: Peer<RoleServer>,
        Parameters(ElicitationRequest { message }): Parameters<ElicitationRequest>,
    ) -> CallToolResult {
        let answer = elicitation::ask(&peer, &message, elicitation::contact_form()).await;
        answered("User response", answer)
    }

    #[tool(
        name = "test_elicitation_sep1034_defaults",
        description = "Asks the user for values of each primitive type, each with a default"
    )]
    async fn elicitation_with_defaults(&self, peer: Peer<RoleServer>) -> CallToolResult {
        let message = "Please review these values; each has a default.";
        let answer = elicitation::ask(&peer, message, elicitation::form_with_defaults()).await;
        answered("Elicitation completed", answer)
    }

    #[tool(
        name = "test_elicitation_sep1330_enums",
        description = "Asks the user to choose, in each of the five enum shapes"
    )]
    async fn elicitation_with_enums(&self, peer: Peer<RoleServer>) -> CallToolResult {
        let message = "Please choose.";
        let answer = elicitation::ask(&peer, message, elicitation::form_with_enums()).await;
        answered("Elicitation completed", answer)
    }

    #[tool(
        name = "json_schema_2020_12_tool",
        description = "Tool with JSON Schema 2020-12 features",
        input_schema = schema_2020_12()
    )]
    fn json_schema_2020_12(&self, arguments: JsonObject) -> CallToolResult {
        text(format!("Received {}", Value::Object(arguments)))
    }

    #[tool(
        name = "test_reconnection",
        description = "Ends its response stream before answering; the answer comes on the \
                       stream the client resumes with Last-Event-ID (SEP-1699)"
    )]
    async fn reconnection(&self, extensions: Extensions) -> CallToolResult {
        let Some(stream) = ResponseStream::of(&extensions) else {
            return text("Answered at once: this request has no stream of its own to end.");
        };
        if let Err(error) = stream.close(RECONNECT_AFTER).await {
            return failure(format!("could not end the response stream: {error}"));
        }
        tokio::time::sleep(ANSWER_AFTER).await;
        text("Answered on the resumed stream.")
    }
}

fn text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// A tool error the caller reads (`isError: true`), not a protocol error.
fn failure(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

fn answered(label: &str, answer: Result<String, String>) -> CallToolResult {
    match answer {
        Ok(answer) => text(format!("{label}: {answer}")),
        Err(why) => failure(why),
    }
}

fn text_of(answer: &CreateMessageResult) -> &str {
    answer
        .message
        .content
        .first()
        .and_then(|block| block.as_text())
        .map_or("(no text)", |block| block.text.as_str())
}

/// An input schema using JSON Schema 2020-12 keywords (`$schema`, `$defs` with a `$ref` to it,
/// `additionalProperties`), which must reach the client as written (SEP-1613).
fn schema_2020_12() -> Arc<JsonObject> {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"}
        },
        "additionalProperties": false
    });
    match schema {
        Value::Object(schema) => Arc::new(schema),
        _ => unreachable!("a JSON object literal"),
    }
}
