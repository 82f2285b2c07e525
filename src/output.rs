//! Terminal output helpers shared by the commands: colour and spinners only on a terminal, and
//! never with NO_COLOR.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set once a login starts in the middle of a command: delayed spinners stay hidden from then on.
static DELAYED_OFF: AtomicBool = AtomicBool::new(false);
/// The delayed spinners on screen, to clear them when a login starts.
static DELAYED_SHOWN: Mutex<Vec<indicatif::ProgressBar>> = Mutex::new(Vec::new());

/// Clears the delayed spinners and keeps new ones hidden: a login in the middle of `call` or
/// `tools` prints its URL and runs its own spinner, which a "calling…" spinner would overwrite.
pub fn stop_delayed_spinners() {
    DELAYED_OFF.store(true, Ordering::SeqCst);
    let shown = std::mem::take(&mut *DELAYED_SHOWN.lock().unwrap_or_else(|p| p.into_inner()));
    for bar in shown {
        bar.finish_and_clear();
    }
}

/// A spinner on stderr with `message`, or `None` when stderr is not a terminal.
pub fn spinner(message: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(100));
    Some(spinner)
}

/// A spinner that appears only when the work takes longer than `delay`, so quick commands never
/// flicker; cleared when dropped. Nothing at all when stderr is not a terminal.
pub struct DelayedSpinner {
    bar: Option<indicatif::ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts a [`DelayedSpinner`]; needs a Tokio runtime.
pub fn delayed_spinner(message: &str, delay: Duration) -> DelayedSpinner {
    if !std::io::stderr().is_terminal() {
        return DelayedSpinner {
            bar: None,
            task: None,
        };
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden());
    bar.set_style(indicatif::ProgressStyle::default_spinner());
    bar.set_message(message.to_owned());
    let shown = bar.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut on_screen = DELAYED_SHOWN.lock().unwrap_or_else(|p| p.into_inner());
        if DELAYED_OFF.load(Ordering::SeqCst) {
            return;
        }
        shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        shown.enable_steady_tick(Duration::from_millis(100));
        on_screen.push(shown);
    });
    DelayedSpinner {
        bar: Some(bar),
        task: Some(task),
    }
}

impl Drop for DelayedSpinner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The one-line JSON form of an error for `--json` commands:
/// `{"error":{"code":<exit code>,"message":"…"}}`.
pub fn json_error(error: &anyhow::Error) -> String {
    let code = crate::error::exit_code_for(error) as u8;
    serde_json::json!({ "error": { "code": code, "message": format!("{error:#}") } }).to_string()
}
