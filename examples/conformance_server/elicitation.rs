//! The forms the elicitation tools send (`elicitation/create`), and sending one.
//!
//! The schemas are written as the JSON the client gets and parsed into rmcp's typed
//! `ElicitationSchema`, which must carry every keyword through: defaults of each primitive type
//! (SEP-1034) and the five enum shapes (SEP-1330).

use rmcp::model::{
    ClientResult, ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationSchema,
    ServerRequest,
};
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};

/// A username and an email address, both required.
pub fn contact_form() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"}
        },
        "required": ["username", "email"]
    })
}

/// One field of each primitive type, each with a default (SEP-1034).
pub fn form_with_defaults() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Name", "default": "John Doe"},
            "age": {"type": "integer", "description": "Age", "default": 30},
            "score": {"type": "number", "description": "Score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "Status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": {"type": "boolean", "description": "Verified", "default": true}
        }
    })
}

/// One field of each enum shape (SEP-1330): single and multiple choice, with and without titles,
/// and the legacy `enumNames`.
pub fn form_with_enums() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {
                "type": "string",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}
                ]
            },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
            },
            "titledMulti": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"}
                    ]
                }
            }
        }
    })
}

/// Asks the client to show `message` and have `form` filled in; the answer, described as the
/// tools return it (`action=accept, content={...}`), or why there is none.
pub async fn ask(peer: &Peer<RoleServer>, message: &str, form: Value) -> Result<String, String> {
    let supported = peer
        .peer_info()
        .is_some_and(|client| client.capabilities.elicitation.is_some());
    if !supported {
        return Err("the client does not support elicitation".to_owned());
    }
    let requested_schema: ElicitationSchema = serde_json::from_value(form)
        .map_err(|error| format!("this server's form is not an elicitation schema: {error}"))?;
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema,
    };
    let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
    match peer.send_request(request).await {
        Ok(ClientResult::ElicitResult(answer)) => Ok(describe(&answer)),
        Ok(_) => Err("the client answered elicitation/create with another result".to_owned()),
        Err(error) => Err(format!("elicitation/create failed: {error}")),
    }
}

fn describe(answer: &ElicitResult) -> String {
    let action = serde_json::to_value(&answer.action).unwrap_or_default();
    let content = answer.content.clone().unwrap_or_else(|| json!({}));
    format!(
        "action={}, content={content}",
        action.as_str().unwrap_or("?")
    )
}
