//! The resources: a text one, a binary one, one to watch, and the template
//! `test://template/{id}/data`, whose contents name the id they were read with.

use rmcp::ErrorData;
use rmcp::model::{Resource, ResourceContents, ResourceTemplate};
use serde_json::json;

use crate::media::RED_PIXEL_PNG;

const STATIC_TEXT: &str = "test://static-text";
const STATIC_BINARY: &str = "test://static-binary";
const WATCHED: &str = "test://watched-resource";
const TEMPLATE: &str = "test://template/{id}/data";
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

/// `resources/list`: the direct resources (the template is listed apart).
pub fn listed() -> Vec<Resource> {
    vec![
        Resource::new(STATIC_TEXT, "static-text")
            .with_description("A text resource whose contents never change")
            .with_mime_type("text/plain"),
        Resource::new(STATIC_BINARY, "static-binary")
            .with_description("A binary resource: a 1x1 red PNG")
            .with_mime_type("image/png"),
        Resource::new(WATCHED, "watched-resource")
            .with_description("A text resource to subscribe to")
            .with_mime_type("text/plain"),
    ]
}

/// `resources/templates/list`.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(TEMPLATE, "template-data")
            .with_description("JSON data for any id")
            .with_mime_type("application/json"),
    ]
}

/// Whether `uri` names a resource here (listed, or matching the template).
pub fn exists(uri: &str) -> bool {
    read(uri).is_ok()
}

/// `resources/read` of `uri`: its contents, or "resource not found" (-32002).
pub fn read(uri: &str) -> Result<ResourceContents, ErrorData> {
    let contents = match uri {
        STATIC_TEXT => text(uri, "This is the content of the static text resource."),
        STATIC_BINARY => ResourceContents::blob(RED_PIXEL_PNG, uri).with_mime_type("image/png"),
        WATCHED => text(
            uri,
            "This resource never changes; subscribing to it is accepted.",
        ),
        _ => match template_id(uri) {
            Some(id) => template_data(uri, id),
            None => {
                let message = format!("no resource {uri}");
                return Err(ErrorData::resource_not_found(
                    message,
                    Some(json!({"uri": uri})),
                ));
            }
        },
    };
    Ok(contents)
}

fn text(uri: &str, text: &str) -> ResourceContents {
    ResourceContents::text(text, uri).with_mime_type("text/plain")
}

/// The `{id}` of a URI matching the template.
fn template_id(uri: &str) -> Option<&str> {
    uri.strip_prefix(TEMPLATE_PREFIX)?
        .strip_suffix(TEMPLATE_SUFFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

fn template_data(uri: &str, id: &str) -> ResourceContents {
    let data = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
    ResourceContents::text(data.to_string(), uri).with_mime_type("application/json")
}

/// Completions for argument `argument` of resource template `template`.
pub fn argument_suggestions(template: &str, argument: &str) -> &'static [&'static str] {
    match (template, argument) {
        (TEMPLATE, "id") => &["1", "2", "3", "123"],
        _ => &[],
    }
}
