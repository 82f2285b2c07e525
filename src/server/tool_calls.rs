//! What a JSON-RPC body asks of the tools, read in front of the handler for the policies
//! (`auth::tool_scopes`, the tool rate limits, the audit line), and a `tools/list` answer with
//! only the tools a caller may call.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::metrics::method_label;

/// One JSON-RPC request or notification of a body: its method (one of the known MCP methods,
/// else `other`: see [`method_label`]) and, for a `tools/call`, the tool it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub method: &'static str,
    pub tool: Option<String>,
}

impl Operation {
    /// The operation of a request for `method`, calling `tool` (for a `tools/call`).
    pub fn new(method: &str, tool: Option<&str>) -> Self {
        let method = method_label(method);
        let tool = tool.filter(|_| method == "tools/call").map(str::to_owned);
        Self { method, tool }
    }

    /// The tool a `tools/call` calls.
    pub fn called_tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }
}

/// What a JSON-RPC body asks: its requests and notifications (one, or several for a batch) and
/// whether it lists the tools. Nothing for a body that is not JSON (which rmcp then refuses),
/// nor for a client's answers to the server (they have no method).
///
/// Read as a generic JSON value, the way a lenient parser would read it (a repeated key: the last
/// one counts), so that no spelling of a call reaches the handler with a tool name other than
/// the one checked here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ToolRequests {
    pub operations: Vec<Operation>,
    pub lists: bool,
}

impl ToolRequests {
    /// The tools the body calls.
    pub fn calls(&self) -> impl Iterator<Item = &str> {
        self.operations.iter().filter_map(Operation::called_tool)
    }
}

pub fn tool_requests(body: &[u8]) -> ToolRequests {
    let mut requests = ToolRequests::default();
    let mut read = |message: &Value| {
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return;
        };
        let tool = message
            .get("params")
            .and_then(|params| params.get("name"))
            .and_then(Value::as_str);
        requests.lists |= method == "tools/list";
        requests.operations.push(Operation::new(method, tool));
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(messages)) => messages.iter().for_each(&mut read),
        Ok(message) => read(&message),
        Err(_) => {}
    }
    requests
}

/// The operations of a body, read for the audit line and the metrics alone (no tool scopes or
/// tool limits to decide): the fields they need are read in place and everything else is
/// skipped, where [`tool_requests`] builds the whole message as a JSON value. A body this reader
/// refuses (a repeated key, say) only goes unrecorded; no decision depends on it.
pub fn operations_quickly(body: &[u8]) -> Vec<Operation> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        method: Option<Cow<'a, str>>,
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        name: Option<Cow<'a, str>>,
    }
    let operation = |message: Message<'_>| {
        let tool = message.params.and_then(|params| params.name);
        Some(Operation::new(message.method.as_deref()?, tool.as_deref()))
    };
    let batch = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[');
    if batch {
        serde_json::from_slice::<Vec<Message<'_>>>(body)
            .map(|messages| messages.into_iter().filter_map(operation).collect())
            .unwrap_or_default()
    } else {
        serde_json::from_slice::<Message<'_>>(body)
            .ok()
            .and_then(operation)
            .into_iter()
            .collect()
    }
}

/// A `tools/list` answer (a JSON body, or an event stream's `data:` lines) with only the tools
/// `allowed` keeps; `None` when it leaves every tool in (the answer is then passed on as it is).
pub fn filter_listed_tools(
    body: &[u8],
    event_stream: bool,
    allowed: impl Fn(&str) -> bool,
) -> Option<Vec<u8>> {
    if !event_stream {
        return filter_message(body, &allowed);
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let filtered = line
            .strip_prefix("data:")
            .and_then(|data| filter_message(data.trim().as_bytes(), &allowed));
        match filtered {
            Some(message) => {
                changed = true;
                out.push_str("data: ");
                out.push_str(&String::from_utf8_lossy(&message));
                out.push_str(if line.ends_with("\r\n") { "\r\n" } else { "\n" });
            }
            None => out.push_str(line),
        }
    }
    changed.then(|| out.into_bytes())
}

/// One JSON-RPC message or batch, with the tools of every `tools/list` result filtered.
fn filter_message(json: &[u8], allowed: &impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(json).ok()?;
    let mut changed = false;
    let mut filter = |message: &mut Value| {
        let Some(tools) = message
            .get_mut("result")
            .and_then(|result| result.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        let before = tools.len();
        tools.retain(|tool| {
            tool.get("name")
                .and_then(Value::as_str)
                .is_some_and(allowed)
        });
        changed |= tools.len() != before;
    };
    match &mut message {
        Value::Array(messages) => messages.iter_mut().for_each(&mut filter),
        message => filter(message),
    }
    changed.then(|| serde_json::to_vec(&message).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(requests: &ToolRequests) -> Vec<&str> {
        requests.calls().collect()
    }

    fn call(method: &'static str, tool: Option<&str>) -> Operation {
        Operation {
            method,
            tool: tool.map(str::to_owned),
        }
    }

    #[test]
    fn tool_calls_and_lists_are_found() {
        let one = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_todo","arguments":{}}}"#;
        assert_eq!(calls(&tool_requests(one)), ["add_todo"]);
        assert!(!tool_requests(one).lists);
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                         {"jsonrpc":"2.0","id":2,"method":"tools/list"},
                         {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"b"}},
                         {"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"p"}},
                         {"jsonrpc":"2.0","id":5,"method":"vendor/thing"}]"#;
        assert_eq!(
            tool_requests(batch),
            ToolRequests {
                operations: vec![
                    call("tools/call", Some("a")),
                    call("tools/list", None),
                    call("tools/call", Some("b")),
                    call("prompts/get", None),
                    call("other", None),
                ],
                lists: true
            }
        );
        let repeated = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","name":"admin_x"}}"#;
        assert_eq!(
            calls(&tool_requests(repeated)),
            ["admin_x"],
            "the last key counts"
        );
        assert_eq!(tool_requests(b"not json"), ToolRequests::default());
        let answer = br#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
        assert_eq!(tool_requests(answer), ToolRequests::default());
    }

    #[test]
    fn the_quick_reader_finds_the_same_operations() {
        let one = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_todo","arguments":{"a":[1,{"b":2}]}}}"#;
        assert_eq!(
            operations_quickly(one),
            [call("tools/call", Some("add_todo"))]
        );
        let batch = br#" [{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                          {"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#;
        assert_eq!(
            operations_quickly(batch),
            [call("tools/call", Some("a")), call("tools/list", None)]
        );
        let escaped =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"x\u0041"}}"#;
        assert_eq!(
            operations_quickly(escaped),
            [call("tools/call", Some("xA"))]
        );
        assert_eq!(
            operations_quickly(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            [call("notifications/initialized", None)]
        );
        assert!(operations_quickly(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).is_empty());
        assert!(operations_quickly(b"not json").is_empty());
    }

    #[test]
    fn listed_tools_are_filtered_in_json_and_in_event_streams() {
        let answer =
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"},{"name":"admin_x"}]}}"#;
        let allowed = |name: &str| !name.starts_with("admin_");
        let filtered = filter_listed_tools(answer.as_bytes(), false, allowed).unwrap();
        let filtered: Value = serde_json::from_slice(&filtered).unwrap();
        assert_eq!(
            filtered["result"]["tools"],
            serde_json::json!([{"name": "a"}])
        );
        assert!(filter_listed_tools(answer.as_bytes(), false, |_| true).is_none());

        let stream = format!("id: 0\nretry: 3000\ndata: \n\nid: 1\ndata: {answer}\n\n");
        let filtered = filter_listed_tools(stream.as_bytes(), true, allowed).unwrap();
        let filtered = String::from_utf8(filtered).unwrap();
        assert!(
            filtered.starts_with("id: 0\nretry: 3000\ndata: \n\nid: 1\ndata: {"),
            "{filtered}"
        );
        assert!(!filtered.contains("admin_x"), "{filtered}");
        assert!(filtered.ends_with("}\n\n"), "{filtered}");
    }
}
