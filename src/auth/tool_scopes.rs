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
        for rule in self
            .rules
            .iter()
            .filter(|rule| matches(&rule.pattern, tool))
        {
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
        let scopes =
            ToolScopes::parse(&["admin_*=admin", " add_todo = todo:write  todo:read "]).unwrap();
        assert_eq!(scopes.needed_by("admin_x"), ["admin"]);
        assert_eq!(scopes.needed_by("add_todo"), ["todo:write", "todo:read"]);
        let problems = ToolScopes::parse(&["nothing", "=admin", "tool=", ""]).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("has no '='"), "{problems:?}");
        assert!(problems[1].contains("names no tool"), "{problems:?}");
        assert!(problems[2].contains("names no scope"), "{problems:?}");
    }
}
