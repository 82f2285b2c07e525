//! The lines a busy server writes for every request — the request line and the audit line —
//! written by hand, byte for byte as the text format writes them, when that format without
//! colours is the whole of logging (the subscriber [`super::init`] installs, writing to a file or
//! a pipe, as a service manager collects it).
//!
//! Through tracing, each line costs its event's dispatch, tracing-subscriber's general field
//! formatting (a visitor that wraps every name in an ANSI style, even with colours off) and a copy
//! from the formatter's buffer into the thread's: at the default level that was 13 % of a
//! stateful server's throughput (`bench/log_cost.py`). Here a line is written straight into the
//! thread's buffer of lines ([`super::write_line`]); with the audit line also taken off the guard
//! (`server::direct` writes it) and the request line's layer no longer boxing the application
//! (`server::request_line`), the default level costs about 5 % (docs/performance.md).
//!
//! The filter still decides (the callers ask `tracing::enabled!` first), and lines go through
//! tracing as before whenever anything else could see them differently: the JSON format, colours
//! on a terminal, a library user's own subscriber, a span entered around the line (the text
//! format names it). The tests compare both ways of writing each line, byte for byte.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the global subscriber is [`super::init`]'s text format without colours.
static PLAIN_TEXT: AtomicBool = AtomicBool::new(false);

/// Records whether the subscriber just installed writes plain text (see [`PLAIN_TEXT`]).
pub(super) fn set_plain_text(plain: bool) {
    PLAIN_TEXT.store(plain, Ordering::Relaxed);
}

/// Whether an INFO line may be written by hand now: see the module documentation.
pub fn by_hand() -> bool {
    PLAIN_TEXT.load(Ordering::Relaxed)
        && tracing::dispatcher::get_default(|current| {
            current.is::<super::TextSubscriber>() && current.current_span().id().is_none()
        })
}

/// A field's value, as tracing's text format shows it.
pub enum Value<'a> {
    /// A string field (`name = "text"`, or `name` for a `&str` variable): quoted and escaped as
    /// `Debug` quotes it.
    Text(&'a str),
    /// A `%` field, or a number: as `Display` shows it.
    Shown(&'a dyn Display),
}

/// Writes an INFO line with `message` and `fields`, as the text format writes
/// `tracing::info!(name = value, …, "message")`: see the module documentation.
pub fn info(message: &str, fields: &[(&str, Value<'_>)]) {
    super::write_line(|line| info_into(line, message, fields));
}

/// The line of [`info`], appended to `line`.
pub(super) fn info_into(line: &mut Vec<u8>, message: &str, fields: &[(&str, Value<'_>)]) {
    super::timestamp_into(line);
    line.extend_from_slice(b" INFO ");
    line.extend_from_slice(message.as_bytes());
    for (name, value) in fields {
        line.push(b' ');
        line.extend_from_slice(name.as_bytes());
        line.push(b'=');
        match value {
            Value::Text(text) => quoted_into(line, text),
            Value::Shown(value) => {
                // Writing into a Vec cannot fail.
                let _ = write!(line, "{value}");
            }
        }
    }
    line.push(b'\n');
}

/// `text` as `{:?}` writes it: in quotes, with quotes, backslashes and anything unprintable
/// escaped (the usual case, printable ASCII, copied as it is).
fn quoted_into(line: &mut Vec<u8>, text: &str) {
    let plain = text
        .bytes()
        .all(|byte| (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'\\');
    if plain {
        line.push(b'"');
        line.extend_from_slice(text.as_bytes());
        line.push(b'"');
    } else {
        let _ = write!(line, "{text:?}");
    }
}

/// What tracing's text format writes for an event `emit` sends, without colours, and without
/// its timestamp: the reference the hand-written lines are compared with.
#[cfg(test)]
pub(crate) fn traced(emit: impl FnOnce()) -> String {
    use std::sync::{Arc, Mutex};
    let written = Arc::new(Mutex::new(Vec::new()));
    let sink = written.clone();
    let subscriber = super::text_subscriber(false)
        .with_writer(move || Captured(sink.clone()))
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    let written = written.lock().unwrap().clone();
    without_timestamp(&String::from_utf8(written).unwrap()).to_owned()
}

/// What [`info`] writes for `message` and `fields`, without its timestamp.
#[cfg(test)]
pub(crate) fn by_hand_text(message: &str, fields: &[(&str, Value<'_>)]) -> String {
    let mut line = Vec::new();
    info_into(&mut line, message, fields);
    without_timestamp(&String::from_utf8(line).unwrap()).to_owned()
}

/// `line` after its timestamp (which is checked on its own, in `super::tests`).
#[cfg(test)]
fn without_timestamp(line: &str) -> &str {
    let (timestamp, rest) = line.split_once(' ').unwrap();
    assert_eq!(
        timestamp.len(),
        "2026-12-05T13:40:16.123456Z".len(),
        "{line}"
    );
    rest
}

#[cfg(test)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Value::{Shown, Text};
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_line_by_hand_is_the_text_formats_line() {
        for text in [
            "usr_1",
            "",
            "with \"quotes\" and \\",
            "tab\tnew\nline",
            "ünïcödé ✓",
            "bell\u{7}",
            "combining\u{301}",
        ] {
            let traced =
                traced(|| tracing::info!(name = text, number = 42_u64, shown = %"a b", "message"));
            let by_hand = by_hand_text(
                "message",
                &[
                    ("name", Text(text)),
                    ("number", Shown(&42_u64)),
                    ("shown", Shown(&"a b")),
                ],
            );
            assert_eq!(by_hand, traced);
        }
        assert_eq!(
            by_hand_text("request", &[("status", Shown(&200_u16))]),
            " INFO request status=200\n"
        );
    }

    #[test]
    fn lines_go_through_tracing_inside_a_span_and_under_another_subscriber() {
        set_plain_text(true);
        let ours = || {
            super::super::text_subscriber(false)
                .with_writer(super::super::stderr as fn() -> super::super::Stderr)
                .finish()
                .with(super::super::filter_of("info", "info"))
        };
        tracing::subscriber::with_default(ours(), || {
            assert!(by_hand());
            let span = tracing::info_span!("outer");
            let _entered = span.enter();
            assert!(!by_hand());
        });
        let json = tracing_subscriber::fmt().json().finish();
        tracing::subscriber::with_default(json, || assert!(!by_hand()));
        assert!(!by_hand(), "no subscriber at all");
    }
}
