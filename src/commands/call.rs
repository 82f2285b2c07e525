//! `scalekit-mcp call <TOOL> [KEY=VALUE…] [-- COMMAND…]`: calls one tool and prints its result,
//! for people at a shell and for CI scripts.
//!
//! Arguments are checked against the tool's input schema before the call (see
//! `client::arguments`), so a typo costs a usage error, not a server round trip. Exit codes:
//! 0 success, 2 usage, 3 authentication, 4 unreachable / protocol / timeout, 5 the tool reported
//! an error. With `--json`, stdout holds exactly the CallToolResult and errors are one JSON line
//! on stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration as StdDuration;

use clap::Args;
use rmcp::model::CallToolRequestParams;
use serde_json::Value;

use crate::client::arguments::{self, Pair};
use crate::client::home::Home;
use crate::client::mcp::{self, Connection, Target, with_session};
use crate::client::oauth::Reauthorize;
use crate::client::render;
use crate::client::secret::Secret;
use crate::commands::token::target_server;
use crate::config::Duration;
use crate::error::{Exit, ExitError};

/// How `call` and `tools` reach a server.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// The MCP server URL; default: the one logged in to last.
    #[arg(long, env = "SCALEKIT_MCP_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Access token to send as is (never stored, never refreshed), e.g. in CI. Prefer the
    /// SCALEKIT_MCP_TOKEN variable: a flag shows in the process list. Default: the stored login.
    #[arg(
        long,
        env = "SCALEKIT_MCP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Give up after this long (connecting, refreshing and calling): 30s, 2m, 500ms.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub timeout: Duration,

    /// Machine-readable output: the whole result as JSON on stdout; errors as one JSON line
    /// {"error":{"code","message"}} on stderr.
    #[arg(long)]
    pub json: bool,

    /// When the server asks for a login (401) or for more scopes (403 insufficient_scope), log in
    /// (step-up: the scopes held plus the ones asked for) and retry, once each. Default when
    /// stdin and stderr are a terminal.
    #[arg(long, overrides_with = "no_login")]
    pub login: bool,

    /// Never log in: exit 3 with the exact login command to run. Default without a terminal, so
    /// CI never waits for a browser.
    #[arg(long, overrides_with = "login")]
    pub no_login: bool,

    /// When logging in, print the login URL instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,
}

impl ConnectionArgs {
    /// The checked connection: a stdio command wins over any server URL.
    pub fn connection(&self, command: &[String]) -> anyhow::Result<Connection> {
        let target = if command.is_empty() {
            let home = Home::locate()?;
            Target::Http(target_server(&home, self.server.as_deref())?)
        } else {
            Target::Stdio(command.to_vec())
        };
        let token = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(|token| {
                let token = token
                    .strip_prefix("Bearer ")
                    .or_else(|| token.strip_prefix("bearer "))
                    .unwrap_or(token);
                Secret::new(token.trim().to_owned())
            });
        Ok(Connection {
            target,
            token,
            timeout: self.timeout.0,
            reauthorize: self
                .logs_in()
                .then(|| Reauthorize::new(!self.no_browser, BROWSER_LOGIN_TIMEOUT)),
        })
    }

    /// `--login`, `--no-login`, else whether a person is at a terminal to finish a login.
    fn logs_in(&self) -> bool {
        use std::io::IsTerminal;
        if self.login || self.no_login {
            return self.login;
        }
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }
}

/// How long `--login` waits for the browser (login's own `--timeout` default).
const BROWSER_LOGIN_TIMEOUT: StdDuration = StdDuration::from_secs(300);

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The tool to call (see `scalekit-mcp tools`).
    pub tool: String,

    /// Arguments: key=value (coerced by the tool's schema: strings stay strings, numbers and
    /// booleans are parsed, arrays and objects are JSON) or key:=<json> (raw JSON).
    #[arg(value_name = "KEY=VALUE")]
    pub arguments: Vec<String>,

    /// All arguments as one JSON object: literal JSON, @file.json, or - for stdin. key=value
    /// arguments override its fields.
    #[arg(long = "args", value_name = "JSON|@FILE|-")]
    pub args_object: Option<String>,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Run a stdio MCP server and call it instead of an HTTP server, e.g.
    /// `-- scalekit-mcp serve --transport stdio`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(args: &CallArgs) -> anyhow::Result<ExitCode> {
    let json = args.connection.json;
    match call(args).await {
        Ok(code) => Ok(code),
        Err(error) if json => {
            eprintln!("{}", crate::output::json_error(&error));
            Ok(crate::error::exit_code_for(&error).into())
        }
        Err(error) => Err(error),
    }
}

async fn call(args: &CallArgs) -> anyhow::Result<ExitCode> {
    // Everything local is checked before any connection.
    let pairs = args
        .arguments
        .iter()
        .map(|text| arguments::parse_pair(text))
        .collect::<anyhow::Result<Vec<Pair>>>()?;
    let base = match &args.args_object {
        Some(spec) => arguments::read_args_object(spec, std::io::stdin().lock())?,
        None => serde_json::Map::new(),
    };
    let connection = args.connection.connection(&args.command)?;
    let tool_name = args.tool.as_str();

    let spinner = crate::output::delayed_spinner(
        &format!("calling {tool_name}…"),
        StdDuration::from_millis(300),
    );
    let result = with_session(&connection, async |peer| {
        let tools = peer.list_all_tools().await?;
        let Some(tool) = tools.iter().find(|tool| tool.name == tool_name) else {
            let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
            // A name close to a listed one is a typo, refused without a call. Any other may be
            // a tool the server leaves out of the list for this token (it lacks the tool's
            // scopes): the call is then refused before the tool runs, naming the scopes, and
            // that becomes the login command that gets them. Any other answer means there is
            // no such tool.
            if arguments::closest(tool_name, &names).is_empty() {
                let unlisted = CallToolRequestParams::new(tool_name.to_owned()).with_arguments(
                    arguments::build(tool_name, &serde_json::Map::new(), base.clone(), &pairs)?,
                );
                if let Err(error) = peer.call_tool(unlisted).await
                    && mcp::is_refusal(&error)
                {
                    return Err(error.into());
                }
            }
            return Err(ExitError::usage(format!(
                "{} has no tool `{tool_name}`{}",
                connection.target.describe(),
                arguments::suggestion(tool_name, &names, "its tools are")
            ))
            .into());
        };
        let arguments = arguments::build(tool_name, &tool.input_schema, base.clone(), &pairs)?;
        let params = CallToolRequestParams::new(tool_name.to_owned()).with_arguments(arguments);
        Ok(peer.call_tool(params).await?)
    })
    .await;
    drop(spinner);
    let result = serde_json::to_value(result?)?;
    let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);

    let mut stdout = std::io::stdout().lock();
    if args.connection.json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&result)?)?;
    } else if !is_error {
        write!(stdout, "{}", render::tool_result(&result))?;
    }
    stdout.flush()?;
    if is_error {
        let text = render::tool_result(&result);
        let text = text.trim_end();
        return Err(ExitError {
            exit: Exit::ToolError,
            message: if text.is_empty() {
                format!("the tool {tool_name} reported an error")
            } else {
                format!("the tool {tool_name} reported an error: {text}")
            },
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
