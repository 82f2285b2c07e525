//! Terminal output helpers shared by the commands: colour and spinners only on a terminal, and
//! never with NO_COLOR.

use std::io::IsTerminal;
use std::time::Duration;

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
