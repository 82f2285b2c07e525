//! What a JSON-RPC body asks of the tools, read in front of the handler for the policies
//! (`auth::tool_scopes`, the tool rate limits, the audit line), and a `tools/list` answer with
//! only the tools a caller may call.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

/// What a JSON-RPC body asks of the tools: the tools it calls (one for a `tools/call` request,
/// several for a batch) and whether it lists them. Nothing for anything else, including a body
/// that is not JSON (which rmcp then refuses).
///
/// Read as a generic JSON value, the way a lenient parser would read it (a repeated key: the last
/// one counts), so that no spelling of a call reaches the handler with a tool name other than
/// the one checked here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ToolRequests {
    pub calls: Vec<String>,
    pub lists: bool,
}

pub fn tool_requests(body: &[u8]) -> ToolRequests {
    let mut requests = ToolRequests::default();
    let mut read = |message: &Value| match message.get("method").and_then(Value::as_str) {
        Some("tools/call") => {
            if let Some(name) = message
                .get("params")
                .and_then(|params| params.get("name"))
                .and_then(Value::as_str)
            {
                requests.calls.push(name.to_owned());
            }
        }
        Some("tools/list") => requests.lists = true,
        _ => {}
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(messages)) => messages.iter().for_each(&mut read),
        Ok(message) => read(&message),
        Err(_) => {}
    }
    requests
}

/// The tools a body calls, read for the audit line alone (no tool scopes or tool limits to
/// decide): the fields it needs are read in place and everything else is skipped, where
/// [`tool_requests`] builds the whole message as a JSON value. A body this reader refuses (a
/// repeated key, say) only goes without an audit line; no decision depends on it.
pub fn called_tools_quickly(body: &[u8]) -> Vec<String> {
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
    let called = |message: Message<'_>| match (message.method.as_deref(), message.params) {
        (Some("tools/call"), Some(Params { name: Some(name) })) => Some(name.into_owned()),
        _ => None,
    };
    let batch = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[');
    if batch {
        serde_json::from_slice::<Vec<Message<'_>>>(body)
            .map(|messages| messages.into_iter().filter_map(called).collect())
            .unwrap_or_default()
    } else {
        serde_json::from_slice::<Message<'_>>(body)
            .ok()
            .and_then(called)
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
        tools.retain(|tool| tool.get("name").and_then(Value::as_str).is_some_and(allowed));
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

    #[test]
    fn tool_calls_and_lists_are_found() {
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_todo","arguments":{}}}"#;
        assert_eq!(tool_requests(call).calls, ["add_todo"]);
        assert!(!tool_requests(call).lists);
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                         {"jsonrpc":"2.0","id":2,"method":"tools/list"},
                         {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"b"}}]"#;
        assert_eq!(
            tool_requests(batch),
            ToolRequests {
                calls: vec!["a".into(), "b".into()],
                lists: true
            }
        );
        let repeated = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","name":"admin_x"}}"#;
        assert_eq!(tool_requests(repeated).calls, ["admin_x"], "the last key counts");
        assert_eq!(tool_requests(b"not json"), ToolRequests::default());
    }

    #[test]
    fn the_quick_reader_finds_the_same_calls() {
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_todo","arguments":{"a":[1,{"b":2}]}}}"#;
        assert_eq!(called_tools_quickly(call), ["add_todo"]);
        let batch = br#" [{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                          {"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#;
        assert_eq!(called_tools_quickly(batch), ["a"]);
        let escaped = br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"x\u0041"}}"#;
        assert_eq!(called_tools_quickly(escaped), ["xA"]);
        assert!(called_tools_quickly(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_empty());
        assert!(called_tools_quickly(b"not json").is_empty());
    }

    #[test]
    fn listed_tools_are_filtered_in_json_and_in_event_streams() {
        let answer = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"},{"name":"admin_x"}]}}"#;
        let allowed = |name: &str| !name.starts_with("admin_");
        let filtered = filter_listed_tools(answer.as_bytes(), false, allowed).unwrap();
        let filtered: Value = serde_json::from_slice(&filtered).unwrap();
        assert_eq!(filtered["result"]["tools"], serde_json::json!([{"name": "a"}]));
        assert!(filter_listed_tools(answer.as_bytes(), false, |_| true).is_none());

        let stream = format!("id: 0\nretry: 3000\ndata: \n\nid: 1\ndata: {answer}\n\n");
        let filtered = filter_listed_tools(stream.as_bytes(), true, allowed).unwrap();
        let filtered = String::from_utf8(filtered).unwrap();
        assert!(filtered.starts_with("id: 0\nretry: 3000\ndata: \n\nid: 1\ndata: {"), "{filtered}");
        assert!(!filtered.contains("admin_x"), "{filtered}");
        assert!(filtered.ends_with("}\n\n"), "{filtered}");
    }
}
