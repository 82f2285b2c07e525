//! The scopes each tool needs, checked before a `tools/call` reaches the handler.
//!
//! The seed's `admin_tool` checked its scope inside the tool and answered with a tool error. Here
//! the check happens in front of the handler, on the HTTP request: a call whose token lacks a
//! scope of its tool is answered 403 with an `insufficient_scope` challenge naming every scope
//! the tool needs (MCP authorization spec, "Scope Challenge Handling"), so a client can ask for
//! them and retry, and the tool never runs.
//!
//! A rule names a tool or a pattern (`*` matches any run of characters: `admin_*`); a tool that
//! matches several rules needs all their scopes. Scopes are compared as exact strings: there is
//! no hierarchy (`todo:write` does not imply `todo:read`).

use serde_json::Value;

/// Which scopes which tools need. Empty by default: every tool is open to every valid token.
///
/// ```
/// use scalekit_mcp::ToolScopes;
///
/// let scopes = ToolScopes::new()
///     .require("add_todo", ["todo:write"])
///     .require("admin_*", ["admin"]);
/// assert_eq!(scopes.needed_by("add_todo"), ["todo:write"]);
/// assert_eq!(scopes.needed_by("admin_reset"), ["admin"]);
/// assert!(scopes.needed_by("list_todos").is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ToolScopes {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    scopes: Vec<String>,
}

impl ToolScopes {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tools named `pattern` (`*` matches any run of characters) need every scope in `scopes`.
    pub fn require<S: Into<String>>(
        mut self,
        pattern: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.rules.push(Rule {
            pattern: pattern.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Rules written as `--tool-scope` takes them: `NAME=SCOPE[ SCOPE…]`, NAME a tool or a
    /// pattern. Every malformed entry is reported, with the fix.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, Vec<String>> {
        let mut rules = Self::new();
        let mut problems = Vec::new();
        for entry in entries.iter().map(|entry| entry.as_ref().trim()) {
            if entry.is_empty() {
                continue;
            }
            let Some((pattern, scopes)) = entry.split_once('=') else {
                problems.push(format!(
                    "--tool-scope {entry:?} has no '=': write NAME=SCOPE (e.g. admin_*=admin)"
                ));
                continue;
            };
            let scopes: Vec<&str> = scopes.split_whitespace().collect();
            match (pattern.trim(), scopes.is_empty()) {
                ("", _) => problems.push(format!(
                    "--tool-scope {entry:?} names no tool: write NAME=SCOPE (e.g. admin_*=admin)"
                )),
                (_, true) => problems.push(format!(
                    "--tool-scope {entry:?} names no scope: write NAME=SCOPE[ SCOPE…]"
                )),
                (pattern, false) => rules = rules.require(pattern, scopes),
            }
        }
        if problems.is_empty() {
            Ok(rules)
        } else {
            Err(problems)
        }
    }

    /// The rules as `--tool-scope` entries (`NAME=SCOPE SCOPE`).
    pub fn entries(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|rule| format!("{}={}", rule.pattern, rule.scopes.join(" ")))
            .collect()
    }

    /// What `tool` needs that `granted` lacks: empty when it may be called.
    pub fn missing(&self, tool: &str, granted: &[String]) -> Vec<String> {
        self.needed_by(tool)
            .into_iter()
            .filter(|scope| !granted.contains(scope))
            .collect()
    }

    /// These rules and `other`'s: a tool then needs the scopes of both.
    pub fn and(mut self, other: &ToolScopes) -> Self {
        self.rules.extend(other.rules.iter().cloned());
        self
    }

    /// Whether there are no rules (then no request is read for them).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every scope any rule names, each once: what the resource's metadata lists as
    /// `scopes_supported` when none is configured.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for scope in self.rules.iter().flat_map(|rule| &rule.scopes) {
            if !all.contains(scope) {
                all.push(scope.clone());
            }
        }
        all
    }

    /// Every scope `tool` needs, in the order the rules name them, each once.
    pub fn needed_by(&self, tool: &str) -> Vec<String> {
        let mut needed: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|rule| matches(&rule.pattern, tool)) {
            for scope in &rule.scopes {
                if !needed.contains(scope) {
                    needed.push(scope.clone());
                }
            }
        }
        needed
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        // No `*` at all: the whole name must be the pattern.
        return rest.is_empty();
    };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

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

/// A `tools/list` answer (a JSON body, or an event stream's `data:` lines) with only the tools
/// `allowed` keeps; `None` when it leaves every tool in (the answer is then passed on as it is).
pub(crate) fn filter_listed_tools(
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
    fn patterns_match_names_with_stars_anywhere() {
        assert!(matches("add_todo", "add_todo"));
        assert!(!matches("add_todo", "add_todos"));
        assert!(!matches("add_todo", "add"));
        assert!(matches("admin_*", "admin_reset"));
        assert!(matches("admin_*", "admin_"));
        assert!(!matches("admin_*", "user_admin_reset"));
        assert!(matches("*_todo", "add_todo"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c-y-b"));
        assert!(!matches("a*a", "a"), "the two ends may not overlap");
    }

    #[test]
    fn a_tool_matching_several_rules_needs_all_their_scopes_once() {
        let scopes = ToolScopes::new()
            .require("admin_*", ["admin"])
            .require("admin_reset", ["admin", "danger"]);
        assert_eq!(scopes.needed_by("admin_reset"), ["admin", "danger"]);
        assert_eq!(scopes.needed_by("admin_list"), ["admin"]);
        assert!(scopes.needed_by("greet_user").is_empty());
    }

    #[test]
    fn flag_entries_parse_and_bad_ones_are_all_reported() {
        let scopes = ToolScopes::parse(&["admin_*=admin", " add_todo = todo:write  todo:read "])
            .unwrap();
        assert_eq!(scopes.needed_by("admin_x"), ["admin"]);
        assert_eq!(scopes.needed_by("add_todo"), ["todo:write", "todo:read"]);
        let problems = ToolScopes::parse(&["nothing", "=admin", "tool=", ""]).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("has no '='"), "{problems:?}");
        assert!(problems[1].contains("names no tool"), "{problems:?}");
        assert!(problems[2].contains("names no scope"), "{problems:?}");
    }

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
