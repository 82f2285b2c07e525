//! How `call` and `tools` show what a server answered, for a person at a terminal.
//!
//! Both work on the JSON form of rmcp's types, so content kinds this version does not know still
//! print something sensible. `--json` bypasses all of this and prints the document itself.
//!
//! - A tool result: structured content as pretty JSON (the text block that merely repeats it is
//!   skipped); text content as text; images, audio and resources summarised as
//!   `[image image/png, 1.2 KiB]` rather than dumped as base64.
//! - A tool list: name, description and parameters with their types, required ones marked.

use serde_json::Value;

use super::arguments::describe_type;

/// The text shown for a `CallToolResult` (as JSON), ending with a newline unless empty.
pub fn tool_result(result: &Value) -> String {
    let mut blocks: Vec<String> = Vec::new();
    let content = result.get("content").and_then(Value::as_array);
    // A server that returns a plain value (FastMCP, the SDKs' servers) wraps it as
    // `{"result": value}` beside a text block holding the value: show the text once.
    let structured = result
        .get("structuredContent")
        .filter(|structured| !wraps_a_text_block(structured, content));
    if let Some(structured) = structured {
        blocks.push(pretty(structured));
    }
    for block in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                if structured.is_some_and(|structured| repeats(text, structured)) {
                    continue;
                }
                blocks.push(text.to_owned());
            }
            "image" | "audio" => blocks.push(format!(
                "[{kind} {}, {}]",
                str_field(block, "mimeType").unwrap_or("unknown type"),
                size(base64_len(str_field(block, "data").unwrap_or("")))
            )),
            "resource" => blocks.push(embedded_resource(block.get("resource"))),
            "resource_link" => {
                let mut line = format!(
                    "[resource link {}",
                    str_field(block, "uri").unwrap_or("(no uri)")
                );
                if let Some(mime) = str_field(block, "mimeType") {
                    line.push_str(&format!(", {mime}"));
                }
                if let Some(bytes) = block.get("size").and_then(Value::as_u64) {
                    line.push_str(&format!(", {}", size(bytes)));
                }
                line.push(']');
                blocks.push(line);
            }
            _ => blocks.push(pretty(block)),
        }
    }
    let mut text = blocks.join("\n");
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn str_field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

fn embedded_resource(resource: Option<&Value>) -> String {
    let Some(resource) = resource else {
        return "[resource]".into();
    };
    let uri = str_field(resource, "uri").unwrap_or("(no uri)");
    let mime = str_field(resource, "mimeType").unwrap_or("unknown type");
    let bytes = match (str_field(resource, "text"), str_field(resource, "blob")) {
        (Some(text), _) => text.len() as u64,
        (None, Some(blob)) => base64_len(blob),
        (None, None) => 0,
    };
    format!("[resource {uri}, {mime}, {}]", size(bytes))
}

/// Whether `structured` is `{"result": v}` and a text block is `v` (a string) or `v`'s JSON.
fn wraps_a_text_block(structured: &Value, content: Option<&Vec<Value>>) -> bool {
    let Some(value) = structured
        .as_object()
        .filter(|object| object.len() == 1)
        .and_then(|object| object.get("result"))
    else {
        return false;
    };
    content.into_iter().flatten().any(|block| {
        block.get("type").and_then(Value::as_str) == Some("text")
            && block
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(|text| value.as_str() == Some(text) || repeats(text, value))
    })
}

/// Whether a text block is just the structured content serialised (as rmcp and most SDKs add
/// for older clients).
fn repeats(text: &str, structured: &Value) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|parsed| &parsed == structured)
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The decoded size of base64 text.
fn base64_len(data: &str) -> u64 {
    let data = data.trim_end_matches('=');
    (data.len() as u64 * 3) / 4
}

fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// The text shown by `tools`: one paragraph per tool (tools as JSON).
pub fn tool_list(tools: &[Value]) -> String {
    if tools.is_empty() {
        return "(the server lists no tools)\n".into();
    }
    let mut out = String::new();
    for (index, tool) in tools.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(str_field(tool, "name").unwrap_or("(unnamed)"));
        out.push('\n');
        if let Some(description) = str_field(tool, "description") {
            for line in description.lines() {
                out.push_str(&format!("  {}\n", line.trim()));
            }
        }
        let schema = tool.get("inputSchema");
        let properties = schema
            .and_then(|schema| schema.get("properties"))
            .and_then(Value::as_object);
        let required: Vec<&str> = schema
            .and_then(|schema| schema.get("required"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match properties {
            Some(properties) if !properties.is_empty() => {
                out.push_str("  parameters:\n");
                let width = properties.keys().map(String::len).max().unwrap_or(0);
                for (name, property) in properties {
                    let property = resolve_ref(schema, property);
                    let mut kind = describe_type(property);
                    if kind.is_empty() {
                        kind = "any".into();
                    }
                    let mut line = format!("    {name:<width$}  {kind}");
                    if required.contains(&name.as_str()) {
                        line.push_str(" (required)");
                    }
                    if let Some(allowed) = property.get("enum").and_then(Value::as_array) {
                        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
                        line.push_str(&format!(" one of {}", list.join(", ")));
                    }
                    if let Some(description) = str_field(property, "description") {
                        line.push_str(&format!(" — {}", description.trim()));
                    }
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
            _ => out.push_str("  parameters: none\n"),
        }
    }
    out
}

fn resolve_ref<'a>(schema: Option<&'a Value>, property: &'a Value) -> &'a Value {
    let Some(reference) = property.get("$ref").and_then(Value::as_str) else {
        return property;
    };
    let name = reference.rsplit('/').next().unwrap_or_default();
    schema
        .and_then(|schema| {
            schema
                .get("$defs")
                .or_else(|| schema.get("definitions"))
                .and_then(|defs| defs.get(name))
        })
        .unwrap_or(property)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_prints_as_text() {
        let result = json!({"content": [{"type": "text", "text": "Hi Saif"}], "isError": false});
        assert_eq!(tool_result(&result), "Hi Saif\n");
    }

    #[test]
    fn structured_content_prints_as_pretty_json_once() {
        let result = json!({
            "content": [{"type": "text", "text": "{\"sub\":\"usr_42\"}"}],
            "structuredContent": {"sub": "usr_42"}
        });
        assert_eq!(tool_result(&result), "{\n  \"sub\": \"usr_42\"\n}\n");
    }

    #[test]
    fn a_wrapped_plain_value_prints_as_its_text() {
        let result = json!({
            "content": [{"type": "text", "text": "Hello x, from FastMCP!"}],
            "structuredContent": {"result": "Hello x, from FastMCP!"}
        });
        assert_eq!(tool_result(&result), "Hello x, from FastMCP!\n");
        let number = json!({"content": [{"type": "text", "text": "42"}], "structuredContent": {"result": 42}});
        assert_eq!(tool_result(&number), "42\n");
    }

    #[test]
    fn binary_content_is_summarised() {
        let result = json!({"content": [
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "audio", "data": "A".repeat(4096), "mimeType": "audio/wav"},
            {"type": "resource", "resource": {"uri": "file:///a.txt", "mimeType": "text/plain", "text": "hello"}},
            {"type": "resource_link", "uri": "https://x/y", "name": "y", "mimeType": "application/pdf"}
        ]});
        assert_eq!(
            tool_result(&result),
            "[image image/png, 3 bytes]\n[audio audio/wav, 3.0 KiB]\n\
             [resource file:///a.txt, text/plain, 5 bytes]\n[resource link https://x/y, application/pdf]\n"
        );
    }

    #[test]
    fn tool_list_shows_types_and_required_parameters() {
        let tools = [
            json!({"name": "greet_user", "description": "Greets.", "inputSchema": {
                "type": "object",
                "properties": {"name": {"type": "string", "description": "Who"},
                               "times": {"type": ["integer", "null"]}},
                "required": ["name"]}}),
            json!({"name": "whoami", "inputSchema": {"type": "object"}}),
        ];
        assert_eq!(
            tool_list(&tools),
            "greet_user\n  Greets.\n  parameters:\n    name   string (required) — Who\n    \
             times  integer or null\n\nwhoami\n  parameters: none\n"
        );
    }
}
