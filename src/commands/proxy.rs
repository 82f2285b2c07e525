//! `scalekit-mcp proxy <SERVER_URL>`: a stdio MCP server for desktop clients (Claude Desktop,
//! Cursor, VS Code) that forwards everything to a protected server over Streamable HTTP with the
//! stored login's token (see `client::proxy` for the bridge), and `proxy --print-config` that
//! prints the client configuration that runs it.
//!
//! Everything that can fail before MCP traffic is checked here, first: the flags, and with
//! `--no-login` a usable stored login (exit 3 with the login command, for unattended use).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::client::home::{Home, canonical_server_url};
use crate::client::oauth::{self, Reauthorize};
use crate::client::proxy::{self, Credentials, Options};
use crate::client::secret::Secret;
use crate::config::Duration;
use crate::error::{Exit, ExitError, exit_code_for};

/// The variable a static token is read from when `--token-env` names none.
const TOKEN_VARIABLE: &str = "SCALEKIT_MCP_TOKEN";

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The MCP server URL (Streamable HTTP), e.g. https://mcp.example.com/mcp
    pub server_url: String,

    /// Print the configuration block that makes this desktop client run this proxy, say which
    /// file it goes in, and exit.
    #[arg(long, value_enum, value_name = "CLIENT")]
    pub print_config: Option<DesktopClient>,

    /// Environment variable holding an access token to send as is instead of the stored login
    /// (never stored, never refreshed), e.g. for CI or agents. Default: SCALEKIT_MCP_TOKEN when
    /// it is set.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,

    /// An extra header for every request to the server, e.g. --header 'X-Tenant: acme'
    /// (repeatable). Not for tokens: see --token-env.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Scope to request when logging in (repeatable). Default: the server's challenge, else its
    /// metadata.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,

    /// When logging in: a client id registered in advance with the authorization server (its
    /// secret, if any, in SK_CLIENT_SECRET).
    #[arg(long, env = "SCALEKIT_MCP_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    /// When logging in: port of the 127.0.0.1 redirect listener (0 = random; pre-registered
    /// clients need a fixed one).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub callback_port: u16,

    /// How long a login waits for the browser.
    #[arg(long, default_value = "300s", value_name = "DURATION")]
    pub timeout: Duration,

    /// When logging in, print the login URL on stderr instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,

    /// Never log in: without a usable stored login, exit 3 with the login command before any
    /// MCP traffic (for unattended use).
    #[arg(long)]
    pub no_login: bool,

    /// Also write the proxy's log lines to this file (appended).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// The desktop clients `--print-config` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DesktopClient {
    /// Claude Desktop.
    Claude,
    /// Cursor.
    Cursor,
    /// Visual Studio Code.
    Vscode,
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let server_url = canonical_server_url(&args.server_url)?;
    if let Some(client) = args.print_config {
        return print_config(client, &server_url, &args);
    }
    let headers = parse_headers(&args.headers)?;
    init_logging(args.log_file.as_deref())?;
    let credentials = credentials(&args, &server_url).await?;
    tracing::info!("proxying stdio to {server_url}");
    proxy::run(Options {
        server_url,
        headers,
        credentials,
    })
    .await
}

/// The token to start with: a given one, else the stored login's (refreshed, or logged in again
/// when the refresh is refused), else none yet (the server's first 401 starts the login).
async fn credentials(args: &ProxyArgs, server_url: &str) -> anyhow::Result<Credentials> {
    if let Some(token) = given_token(args.token_env.as_deref())? {
        return Ok(Credentials::Given(token));
    }
    let home = Home::locate()?;
    let login = (!args.no_login).then(|| Reauthorize {
        scopes: args.scopes.clone(),
        client_id: args.client_id.clone(),
        callback_port: args.callback_port,
        ..Reauthorize::new(!args.no_browser, args.timeout.0)
    });
    let stored = home.load()?.servers.contains_key(server_url);
    if !stored {
        if login.is_none() {
            return Err(no_login(format!(
                "not logged in to {server_url}: run scalekit-mcp login {server_url}"
            )));
        }
        return Ok(Credentials::Stored {
            home,
            token: None,
            login,
        });
    }
    let token = match oauth::valid_access_token(&home, server_url).await {
        Ok(token) => Some(token),
        Err(error) if exit_code_for(&error) == Exit::Auth => match &login {
            None => return Err(no_login(format!("{error:#}"))),
            Some(options) => {
                tracing::info!("the stored login cannot be renewed ({error:#}); logging in");
                Some(oauth::login_once(&home, server_url, None, None, &[], options).await?)
            }
        },
        // The authorization server is down: start anyway with what is stored; the server's
        // answer decides, and the next refusal tries again.
        Err(error) => {
            tracing::warn!("{error:#}");
            None
        }
    };
    Ok(Credentials::Stored { home, token, login })
}

fn no_login(message: String) -> anyhow::Error {
    ExitError {
        exit: Exit::Auth,
        message: format!("{message} (proxy --no-login never opens a login)"),
    }
    .into()
}

/// `--token-env VAR` (which must be set), else SCALEKIT_MCP_TOKEN when set.
fn given_token(variable: Option<&str>) -> anyhow::Result<Option<Secret>> {
    let name = variable.unwrap_or(TOKEN_VARIABLE);
    let value = std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned());
    let token = value.filter(|value| !value.is_empty()).map(|value| {
        let bare = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(&value)
            .trim()
            .to_owned();
        Secret::new(bare)
    });
    if token.is_none() && variable.is_some() {
        return Err(ExitError::usage(format!(
            "--token-env {name}: ${name} is not set or empty; export the token in it"
        ))
        .into());
    }
    Ok(token)
}

/// `Name: value` headers, checked.
fn parse_headers(raw: &[String]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for text in raw {
        let (name, value) = text.split_once(':').ok_or_else(|| {
            ExitError::usage(format!(
                "--header {text:?} is not 'Name: value' (e.g. --header 'X-Tenant: acme')"
            ))
        })?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            ExitError::usage(format!(
                "--header {text:?}: {:?} is not a header name",
                name.trim()
            ))
        })?;
        let reserved = [
            "authorization",
            "mcp-session-id",
            "mcp-protocol-version",
            "accept",
            "content-type",
            "last-event-id",
        ];
        if reserved.contains(&name.as_str()) {
            let hint = if name == http::header::AUTHORIZATION {
                ": pass a token with --token-env VAR instead"
            } else {
                ": the proxy sets it"
            };
            return Err(ExitError::usage(format!("--header {name} is not allowed{hint}")).into());
        }
        let value = HeaderValue::from_str(value.trim()).map_err(|_| {
            ExitError::usage(format!(
                "--header {name}: the value is not a valid header value"
            ))
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Log lines on stderr (stdout belongs to the protocol) and, with `--log-file`, in that file.
/// `info` by default: a desktop client keeps a server's stderr in its logs, and the proxy's
/// lines (refreshes, logins, new sessions) are what one looks for there.
fn init_logging(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| "info,rmcp=off,reqwest=warn,hyper=warn".to_owned());
    let filter = crate::logging::filter_of(&filter, "info");
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_target(false);
    let _ = match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|err| ExitError::usage(format!("--log-file {}: {err}", path.display())))?;
            builder
                .with_ansi(false)
                .with_writer(std::io::stderr.and(std::sync::Mutex::new(file)))
                .finish()
                .with(filter)
                .try_init()
        }
        None => builder
            .with_ansi(crate::logging::color_on_stderr())
            .with_writer(std::io::stderr)
            .finish()
            .with(filter)
            .try_init(),
    };
    Ok(())
}

/// `--print-config`: the JSON block on stdout, where it goes on stderr.
fn print_config(client: DesktopClient, server_url: &str, args: &ProxyArgs) -> anyhow::Result<()> {
    let program = std::env::current_exe()
        .and_then(std::path::absolute)
        .map_err(|err| anyhow::anyhow!("cannot find the path of this program: {err}"))?;
    let (block, file) = config_block(client, &program.to_string_lossy(), server_url, args);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&block)?)?;
    stdout.flush()?;
    eprintln!("{file}");
    Ok(())
}

/// The configuration block for `client`, and a sentence naming the file it goes in on this OS.
fn config_block(
    client: DesktopClient,
    program: &str,
    server_url: &str,
    args: &ProxyArgs,
) -> (serde_json::Value, String) {
    let mut proxy_args = vec!["proxy".to_owned(), server_url.to_owned()];
    for scope in &args.scopes {
        proxy_args.extend(["--scope".to_owned(), scope.clone()]);
    }
    if let Some(client_id) = &args.client_id {
        proxy_args.extend(["--client-id".to_owned(), client_id.clone()]);
    }
    if args.callback_port != 0 {
        proxy_args.extend(["--callback-port".to_owned(), args.callback_port.to_string()]);
    }
    for header in &args.headers {
        proxy_args.extend(["--header".to_owned(), header.clone()]);
    }
    if let Some(variable) = &args.token_env {
        proxy_args.extend(["--token-env".to_owned(), variable.clone()]);
    }
    if args.no_browser {
        proxy_args.push("--no-browser".to_owned());
    }
    if args.no_login {
        proxy_args.push("--no-login".to_owned());
    }
    let name = entry_name(server_url);
    let config_dir = directories::BaseDirs::new()
        .map(|dirs| dirs.config_dir().display().to_string())
        .unwrap_or_else(|| "<your config directory>".to_owned());
    let home_dir = directories::BaseDirs::new()
        .map(|dirs| dirs.home_dir().display().to_string())
        .unwrap_or_else(|| "~".to_owned());
    let separator = std::path::MAIN_SEPARATOR;
    match client {
        DesktopClient::Claude => (
            serde_json::json!({"mcpServers": {name.clone(): {"command": program, "args": proxy_args}}}),
            format!(
                "Add the \"{name}\" entry to \"mcpServers\" in \
                 {config_dir}{separator}Claude{separator}claude_desktop_config.json \
                 (Claude Desktop: Settings > Developer > Edit Config), then restart Claude Desktop."
            ),
        ),
        DesktopClient::Cursor => (
            serde_json::json!({"mcpServers": {name.clone(): {"command": program, "args": proxy_args}}}),
            format!(
                "Add the \"{name}\" entry to \"mcpServers\" in {home_dir}{separator}.cursor{separator}mcp.json \
                 (every project), or in .cursor{separator}mcp.json in a project (that project only)."
            ),
        ),
        DesktopClient::Vscode => (
            serde_json::json!({"servers": {name.clone(): {"type": "stdio", "command": program, "args": proxy_args}}}),
            format!(
                "Add the \"{name}\" entry to \"servers\" in .vscode{separator}mcp.json in a workspace, \
                 or in your user mcp.json ({config_dir}{separator}Code{separator}User{separator}mcp.json; \
                 command palette: MCP: Open User Configuration)."
            ),
        ),
    }
}

/// The entry's name in the client's list: the server's host (and port), e.g. `mcp-example-com`.
fn entry_name(server_url: &str) -> String {
    let Ok(url) = url::Url::parse(server_url) else {
        return "scalekit-mcp".to_owned();
    };
    let mut name: String = url
        .host_str()
        .unwrap_or("server")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if let Some(port) = url.port() {
        name.push_str(&format!("-{port}"));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        let headers = parse_headers(&["X-Tenant: acme".into(), "x-a:b".into()]).unwrap();
        assert_eq!(headers["x-tenant"], "acme");
        assert_eq!(headers["x-a"], "b");
        for bad in [
            "no colon",
            "Authorization: Bearer x",
            "bad name: x",
            "Mcp-Session-Id: 1",
        ] {
            let error = parse_headers(&[bad.into()]).unwrap_err();
            assert_eq!(exit_code_for(&error), Exit::Usage, "{bad}");
        }
    }

    #[test]
    fn entries_are_named_after_the_host() {
        assert_eq!(entry_name("https://mcp.example.com/mcp"), "mcp-example-com");
        assert_eq!(entry_name("http://127.0.0.1:3002/"), "127-0-0-1-3002");
    }
}
