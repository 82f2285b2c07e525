//! The prompts: a plain one, one with two arguments, one embedding a resource, one with an image;
//! and the completions offered for the arguments' values.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ContentBlock, PromptMessage, ResourceContents, Role};
use rmcp::{prompt, prompt_router};
use serde::Deserialize;

use crate::media::RED_PIXEL_PNG;
use crate::server::ConformanceServer;

const WITH_ARGUMENTS: &str = "test_prompt_with_arguments";

#[derive(Deserialize, schemars::JsonSchema)]
pub struct TwoArguments {
    /// First test argument
    arg1: String,
    /// Second test argument
    arg2: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ResourceToEmbed {
    /// URI of the resource to embed
    #[serde(rename = "resourceUri")]
    resource_uri: String,
}

#[prompt_router(vis = "pub(crate)")]
impl ConformanceServer {
    #[prompt(
        name = "test_simple_prompt",
        description = "A prompt without arguments"
    )]
    fn simple_prompt(&self) -> Vec<PromptMessage> {
        vec![user_text("This is a simple prompt for testing.")]
    }

    #[prompt(
        name = "test_prompt_with_arguments",
        description = "A prompt that quotes its two arguments"
    )]
    fn prompt_with_arguments(
        &self,
        Parameters(TwoArguments { arg1, arg2 }): Parameters<TwoArguments>,
    ) -> Vec<PromptMessage> {
        vec![user_text(format!(
            "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        ))]
    }

    #[prompt(
        name = "test_prompt_with_embedded_resource",
        description = "A prompt that embeds the resource its argument names"
    )]
    fn prompt_with_embedded_resource(
        &self,
        Parameters(ResourceToEmbed { resource_uri }): Parameters<ResourceToEmbed>,
    ) -> Vec<PromptMessage> {
        let resource =
            ResourceContents::text("Embedded resource content for testing.", resource_uri)
                .with_mime_type("text/plain");
        vec![
            PromptMessage::new(Role::User, ContentBlock::resource(resource)),
            user_text("Please process the embedded resource above."),
        ]
    }

    #[prompt(
        name = "test_prompt_with_image",
        description = "A prompt with an image"
    )]
    fn prompt_with_image(&self) -> Vec<PromptMessage> {
        vec![
            PromptMessage::new(Role::User, ContentBlock::image(RED_PIXEL_PNG, "image/png")),
            user_text("Please analyze the image above."),
        ]
    }
}

fn user_text(text: impl Into<String>) -> PromptMessage {
    PromptMessage::new_text(Role::User, text)
}

/// Completions for argument `argument` of prompt `prompt`.
pub fn argument_suggestions(prompt: &str, argument: &str) -> &'static [&'static str] {
    match (prompt, argument) {
        (WITH_ARGUMENTS, "arg1") => &["paris", "park", "party"],
        (WITH_ARGUMENTS, "arg2") => &["world", "word", "work"],
        _ => &[],
    }
}
