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
fn matches(pattern: &str, name: &str) -> bool {
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

/// The tools a JSON-RPC body calls: one for a `tools/call` request, several for a batch, none
/// for anything else (including a body that is not JSON, which rmcp then refuses).
///
/// Read as a generic JSON value, the way a lenient parser would read it (a repeated key: the last
/// one counts), so that no spelling of a call reaches the handler with a tool name other than
/// the one checked here.
pub(crate) fn called_tools(body: &[u8]) -> Vec<String> {
    let tool = |message: &Value| -> Option<String> {
        if message.get("method")?.as_str()? != "tools/call" {
            return None;
        }
        Some(message.get("params")?.get("name")?.as_str()?.to_owned())
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(messages)) => messages.iter().filter_map(tool).collect(),
        Ok(message) => tool(&message).into_iter().collect(),
        Err(_) => Vec::new(),
    }
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
    fn only_tool_calls_name_tools() {
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_todo","arguments":{}}}"#;
        assert_eq!(called_tools(call), ["add_todo"]);
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                         {"jsonrpc":"2.0","id":2,"method":"tools/list"},
                         {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"b"}}]"#;
        assert_eq!(called_tools(batch), ["a", "b"]);
        assert!(called_tools(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).is_empty());
        assert!(called_tools(b"not json").is_empty());
    }
}
