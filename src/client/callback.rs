//! The loopback redirect listener of the authorization-code flow (RFC 8252 §7.3).
//!
//! It listens on 127.0.0.1 only — never on all interfaces — on a random port unless one is pinned
//! (pre-registered clients often need a fixed redirect URI), accepts exactly one redirect to
//! `/callback`, answers the browser with a small page, and hands the query to the login.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use tokio::sync::oneshot;

/// What the authorization server sent back in the redirect.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Redirect {
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207 authorization response issuer.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .finish()
    }
}

/// A bound listener waiting for one redirect.
pub struct Listener {
    pub address: SocketAddr,
    receiver: oneshot::Receiver<Redirect>,
    shutdown: Option<oneshot::Sender<()>>,
}

type Slot = Arc<Mutex<Option<oneshot::Sender<Redirect>>>>;

impl Listener {
    /// Binds 127.0.0.1:`port` (0 = any free port) and starts serving.
    pub async fn bind(port: u16) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.with_context(|| {
            format!("cannot listen for the login redirect on 127.0.0.1:{port} (is the port in use? pick another with --callback-port)")
        })?;
        let address = tcp.local_addr()?;
        let (sender, receiver) = oneshot::channel();
        let (shutdown, stop) = oneshot::channel::<()>();
        let slot: Slot = Arc::new(Mutex::new(Some(sender)));
        let app = axum::Router::new()
            .route("/callback", get(callback))
            .with_state(slot);
        tokio::spawn(async move {
            let _ = axum::serve(tcp, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.await;
                })
                .await;
        });
        Ok(Self {
            address,
            receiver,
            shutdown: Some(shutdown),
        })
    }

    /// The redirect URI to register and send: `http://127.0.0.1:<port>/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.address.port())
    }

    /// Waits for the redirect.
    pub async fn wait(mut self) -> anyhow::Result<Redirect> {
        let redirect = (&mut self.receiver)
            .await
            .context("the redirect listener stopped")?;
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        Ok(redirect)
    }
}

async fn callback(State(slot): State<Slot>, Query(redirect): Query<Redirect>) -> impl IntoResponse {
    let page = match (&redirect.error, &redirect.code) {
        (Some(error), _) => page(
            "Login failed",
            &format!(
                "The authorization server answered <code>{}</code>{}. You can close this tab.",
                escape(error),
                redirect
                    .error_description
                    .as_deref()
                    .map(|d| format!(": {}", escape(d)))
                    .unwrap_or_default()
            ),
        ),
        (None, Some(_)) => page(
            "Logged in",
            "scalekit-mcp received the authorization. You can close this tab.",
        ),
        (None, None) => page(
            "Login failed",
            "The redirect carried neither a code nor an error.",
        ),
    };
    if let Some(sender) = slot
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take()
    {
        let _ = sender.send(redirect);
    }
    Html(page)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} · scalekit-mcp</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}</style>\
         </head><body><h1>{title}</h1><p>{body}</p></body></html>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receives_one_redirect_on_loopback() {
        let listener = Listener::bind(0).await.unwrap();
        assert!(listener.address.ip().is_loopback());
        let url = format!(
            "{}?code=abc&state=xyz&iss=https%3A%2F%2Fas.example",
            listener.redirect_uri()
        );
        let page =
            tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
        let redirect = listener.wait().await.unwrap();
        assert_eq!(redirect.code.as_deref(), Some("abc"));
        assert_eq!(redirect.state.as_deref(), Some("xyz"));
        assert_eq!(redirect.iss.as_deref(), Some("https://as.example"));
        assert!(page.await.unwrap().contains("Logged in"));
    }

    #[tokio::test]
    async fn shows_the_servers_error() {
        let listener = Listener::bind(0).await.unwrap();
        let url = format!(
            "{}?error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E",
            listener.redirect_uri()
        );
        let page =
            tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
        let redirect = listener.wait().await.unwrap();
        assert_eq!(redirect.error.as_deref(), Some("access_denied"));
        let page = page.await.unwrap();
        assert!(
            page.contains("access_denied") && page.contains("&lt;b&gt;no"),
            "{page}"
        );
    }
}
