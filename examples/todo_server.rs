//! A whole MCP server with your own tools behind OAuth: a to-do list per tenant.
//!
//! The seed's multi-tenancy and scope patterns with real tools:
//! - `add_todo(title)` and `complete_todo(id)` need scope `todo:write`, `list_todos()` needs
//!   `todo:read`: declared once in [`tool_scopes`], and a call without them is refused with 403
//!   `insufficient_scope` before the tool runs;
//! - to-dos are kept per organization (the token's `org_id` or `oid`), or per subject when the
//!   token names no organization, so one tenant never sees another's.
//!
//! It takes every `scalekit-mcp serve` flag, environment variable and `.env` setting:
//!
//! ```sh
//! cargo run --release --example todo_server -- --dev    # offline, with its own authorization server
//! cargo run --release --example todo_server             # with the Python pattern's .env (Scalekit)
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use scalekit_mcp::{Authenticated, ToolScopes};
use serde::{Deserialize, Serialize};

/// One to-do item.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

/// Every tenant's list, shared by all sessions (the handler is cloned per session).
#[derive(Default)]
struct Store {
    next_id: u64,
    by_tenant: HashMap<String, Vec<Todo>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct AddTodo {
    /// What there is to do.
    title: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct CompleteTodo {
    /// The `id` that `add_todo` or `list_todos` gave.
    id: u64,
}

#[derive(Serialize, schemars::JsonSchema)]
struct TodoList {
    tenant: String,
    todos: Vec<Todo>,
}

#[derive(Clone)]
struct TodoServer {
    store: Arc<Mutex<Store>>,
    tool_router: ToolRouter<Self>,
}

/// The tenant a caller's to-dos belong to: their organization, else themselves.
fn tenant(caller: &Authenticated) -> String {
    match (&caller.org_id, &caller.sub) {
        (Some(org), _) => format!("org:{org}"),
        (None, Some(sub)) => format!("user:{sub}"),
        (None, None) => "user:".to_owned(),
    }
}

#[tool_router]
impl TodoServer {
    fn new() -> Self {
        Self {
            store: Arc::default(),
            tool_router: Self::tool_router(),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    #[tool(description = "Adds a to-do to your organization's list (scope todo:write).")]
    async fn add_todo(
        &self,
        caller: Authenticated,
        Parameters(AddTodo { title }): Parameters<AddTodo>,
    ) -> rmcp::Json<Todo> {
        let mut store = self.store();
        store.next_id += 1;
        let todo = Todo {
            id: store.next_id,
            title,
            done: false,
        };
        store
            .by_tenant
            .entry(tenant(&caller))
            .or_default()
            .push(todo.clone());
        rmcp::Json(todo)
    }

    #[tool(description = "Lists your organization's to-dos (scope todo:read).")]
    async fn list_todos(&self, caller: Authenticated) -> rmcp::Json<TodoList> {
        let tenant = tenant(&caller);
        let todos = self
            .store()
            .by_tenant
            .get(&tenant)
            .cloned()
            .unwrap_or_default();
        rmcp::Json(TodoList { tenant, todos })
    }

    #[tool(description = "Marks one of your organization's to-dos done (scope todo:write).")]
    async fn complete_todo(
        &self,
        caller: Authenticated,
        Parameters(CompleteTodo { id }): Parameters<CompleteTodo>,
    ) -> Result<rmcp::Json<Todo>, ErrorData> {
        let mut store = self.store();
        // Another tenant's id is "not found", exactly like an id that does not exist.
        let todo = store
            .by_tenant
            .get_mut(&tenant(&caller))
            .and_then(|todos| todos.iter_mut().find(|todo| todo.id == id))
            .ok_or_else(|| ErrorData::invalid_params(format!("no to-do with id {id}"), None))?;
        todo.done = true;
        Ok(rmcp::Json(todo.clone()))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TodoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("todo-server", "1.0.0"))
            .with_instructions(
                "A to-do list per organization: add_todo, list_todos, complete_todo.",
            )
    }
}

/// Which scopes each tool needs.
fn tool_scopes() -> ToolScopes {
    ToolScopes::new()
        .require("add_todo", ["todo:write"])
        .require("complete_todo", ["todo:write"])
        .require("list_todos", ["todo:read"])
}

/// The tools never use their peer and keep no per-session state (the store is shared), so plain
/// tool calls on sessions take the direct path and idle sessions sleep.
fn main() -> std::process::ExitCode {
    scalekit_mcp::Main::new(TodoServer::new())
        .with_tool_scopes(tool_scopes())
        .with_direct_tool_calls()
        .with_sleeping_sessions()
        .run()
}
