//! `scalekit-mcp token [SERVER_URL]`: prints a valid access token, refreshing it when needed —
//! for `curl -H "Authorization: Bearer $(scalekit-mcp token)"`. The one command that prints a
//! token, because that is its job.

use clap::Args;

use crate::client::home::{Home, canonical_server_url};
use crate::client::oauth::valid_access_token;
use crate::error::{Exit, ExitError};

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The server; default: the one logged in to last (also SCALEKIT_MCP_SERVER).
    #[arg(env = "SCALEKIT_MCP_SERVER", value_name = "SERVER_URL")]
    pub server_url: Option<String>,
}

/// The server a client command targets: the given URL, else the default from the last login.
pub fn target_server(home: &Home, given: Option<&str>) -> anyhow::Result<String> {
    if let Some(url) = given {
        return canonical_server_url(url);
    }
    home.load()?.default_server.ok_or_else(|| {
        ExitError {
            exit: Exit::Auth,
            message: "no server given and none logged in to: run scalekit-mcp login <SERVER_URL>"
                .into(),
        }
        .into()
    })
}

pub async fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let home = Home::locate()?;
    let server_url = target_server(&home, args.server_url.as_deref())?;
    let token = valid_access_token(&home, &server_url).await?;
    println!("{}", token.expose());
    Ok(())
}
