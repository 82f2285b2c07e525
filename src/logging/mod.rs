//! Logging set-up: always to stderr (stdout belongs to command output and to the stdio MCP
//! transport), text or JSON, filtered by RUST_LOG, else the seed's LOG_LEVEL, else `info` (with
//! rmcp's own lines at `warn`).
//!
//! Nothing in this crate logs a token, a client secret or an Authorization header; the request log
//! line records the path without its query string for the same reason.
//!
//! `serve` writes a line or two per request, each formatted into one `write` to stderr: at the
//! default level those writes cost about 14 % of stateful throughput (`bench/log_cost.py`). On the
//! runtime's worker threads of [`runtime`], lines are kept in a buffer of the thread's own
//! instead, and written out in one `write` when the thread has nothing else to do (tokio parks
//! it), when the buffer passes [`BUFFER_BYTES`], and when the thread stops. So a quiet server's
//! lines appear at once, a busy one's go out in batches, and none is ever dropped. (Handing lines
//! to a writer thread was tried first and measured slower: waking it costs more than the write.)
//! The request and audit lines themselves are written by hand where nothing else could see them
//! differently ([`plain`]).

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub mod plain;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `level` is LOG_LEVEL (Python names such as `WARNING` work).
pub fn init(format: LogFormat, level: Option<&str>, default_level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| {
            quiet_dependencies(
                &level.map_or_else(|| default_level.to_owned(), python_level_to_filter),
            )
        });
    let filter = filter_of(&filter, default_level);
    let ansi = color_on_stderr();
    // A second init (tests calling commands in-process) is harmless: keep the first subscriber.
    let installed = match format {
        LogFormat::Text => text_subscriber(ansi)
            .with_writer(stderr as fn() -> Stderr)
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_timer(Timestamp)
            .with_max_level(LevelFilter::TRACE)
            .with_ansi(ansi)
            .with_writer(|| Stderr)
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init(),
    };
    if installed.is_ok() {
        plain::set_plain_text(format == LogFormat::Text && !ansi);
    }
}

/// The subscriber [`init`] installs for the text format.
type TextSubscriber = tracing_subscriber::layer::Layered<
    Targets,
    tracing_subscriber::fmt::Subscriber<
        tracing_subscriber::fmt::format::DefaultFields,
        tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, Timestamp>,
        LevelFilter,
        fn() -> Stderr,
    >,
>;

/// The text format's subscriber, before its writer: what [`plain`] writes by hand is compared
/// with it.
fn text_subscriber(
    ansi: bool,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, Timestamp>,
> {
    tracing_subscriber::fmt()
        .with_timer(Timestamp)
        // Everything reaches the filter, which decides.
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(ansi)
        .with_target(false)
}

/// The filter `directives` describe (RUST_LOG's syntax: `level` and `target=level`, comma
/// separated), or `fallback` when they do not parse. tracing-subscriber's `Targets`, not its
/// `EnvFilter`: span and field directives are left out, and so is the regex engine they need
/// (about 300 KB of the binary).
pub fn filter_of(directives: &str, fallback: &str) -> Targets {
    directives
        .parse()
        .or_else(|_| fallback.parse())
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
}

/// tracing-subscriber's own timestamp (RFC 3339 in UTC, to the microsecond), byte for byte, with
/// the part up to the second formatted once a second per thread: formatting the whole date for
/// every line was about 2 % of a busy server's CPU (perf, `bench/log_cost.py`).
struct Timestamp;

/// This thread's last second formatted: the Unix second, and its text up to the `.`.
struct SecondCache {
    second: u64,
    text: String,
}

thread_local! {
    static SECOND: RefCell<SecondCache> = const {
        RefCell::new(SecondCache { second: u64::MAX, text: String::new() })
    };
}

impl FormatTime for Timestamp {
    fn format_time(&self, writer: &mut Writer<'_>) -> std::fmt::Result {
        let since_epoch = unix_time();
        let second = since_epoch.as_secs();
        SECOND.with(|cache| {
            let Ok(mut cache) = cache.try_borrow_mut() else {
                return tracing_subscriber::fmt::time::SystemTime.format_time(writer);
            };
            if cache.second != second && !cache.refill(second) {
                return tracing_subscriber::fmt::time::SystemTime.format_time(writer);
            }
            writer.write_str(&cache.text)?;
            write!(writer, "{:06}Z", since_epoch.subsec_micros())
        })
    }
}

/// The timestamp [`Timestamp`] writes, and the space after it, appended to `line`.
fn timestamp_into(line: &mut Vec<u8>) {
    let since_epoch = unix_time();
    let second = since_epoch.as_secs();
    let cached = SECOND.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return false;
        };
        if cache.second != second && !cache.refill(second) {
            return false;
        }
        line.extend_from_slice(cache.text.as_bytes());
        let mut micros = since_epoch.subsec_micros();
        let mut digits = [b'0'; 6];
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        line.extend_from_slice(&digits);
        true
    });
    if cached {
        line.extend_from_slice(b"Z ");
    } else {
        let mut text = String::with_capacity(32);
        let _ = Timestamp.format_time(&mut Writer::new(&mut text));
        line.extend_from_slice(text.as_bytes());
        line.push(b' ');
    }
}

impl SecondCache {
    /// Formats `second` the way tracing-subscriber does (its clock read inside the same second),
    /// keeping the text up to the fraction. False if the second changed meanwhile.
    fn refill(&mut self, second: u64) -> bool {
        let mut text = String::with_capacity(32);
        if tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut text))
            .is_err()
            || unix_time().as_secs() != second
        {
            return false;
        }
        let Some(dot) = text.rfind('.') else {
            return false;
        };
        text.truncate(dot + 1);
        self.second = second;
        self.text = text;
        true
    }
}

fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `elapsed` in milliseconds with one decimal (`12.3`), as the request and audit lines give
/// durations, without a float's exact formatting (which was 1 % of a busy server's CPU).
pub fn milliseconds(elapsed: Duration) -> Milliseconds {
    Milliseconds((elapsed.as_micros() + 50) / 100)
}

/// See [`milliseconds`]: tenths of a millisecond.
pub struct Milliseconds(u128);

impl std::fmt::Display for Milliseconds {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// A worker thread's buffered lines are written out once they pass this many bytes.
const BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    /// This thread's lines not yet written: `None` on threads that write at once (every thread
    /// but a worker of [`runtime`] that has parked once).
    static BUFFERED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Where log lines go: stderr, through the thread's buffer when it has one.
struct Stderr;

fn stderr() -> Stderr {
    Stderr
}

impl Write for Stderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let buffered = BUFFERED.with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else {
                return false;
            };
            let Some(lines) = buffer.as_mut() else {
                return false;
            };
            lines.extend_from_slice(bytes);
            if lines.len() >= BUFFER_BYTES {
                write_out(lines);
            }
            true
        });
        if buffered {
            Ok(bytes.len())
        } else {
            std::io::stderr().write_all(bytes).map(|()| bytes.len())
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `write` on this thread's buffer of lines, as [`Stderr`] would have buffered what it
/// appends, or on a line of its own written at once: for [`plain`]'s lines.
fn write_line(write: impl FnOnce(&mut Vec<u8>)) {
    let mut write = Some(write);
    BUFFERED.with(|buffer| {
        let Ok(mut buffer) = buffer.try_borrow_mut() else {
            return;
        };
        if let Some(lines) = buffer.as_mut()
            && let Some(write) = write.take()
        {
            write(lines);
            if lines.len() >= BUFFER_BYTES {
                write_out(lines);
            }
        }
    });
    if let Some(write) = write {
        let mut line = Vec::with_capacity(256);
        write(&mut line);
        let _ = std::io::stderr().write_all(&line);
    }
}

/// Writes `lines` to stderr in one go and empties them; an error (stderr closed) loses them, as a
/// direct write would have.
fn write_out(lines: &mut Vec<u8>) {
    if !lines.is_empty() {
        let _ = std::io::stderr().write_all(lines);
        lines.clear();
    }
}

/// Writes out this thread's buffered lines, and buffers the thread's lines from now on.
fn on_worker_park() {
    BUFFERED.with(|buffer| {
        if let Ok(mut buffer) = buffer.try_borrow_mut() {
            match buffer.as_mut() {
                Some(lines) => write_out(lines),
                // Only the runtime's workers park: from now on this one buffers.
                None => *buffer = Some(Vec::with_capacity(BUFFER_BYTES)),
            }
        }
    });
}

/// Writes out this thread's buffered lines for good: the thread is ending.
fn on_thread_stop() {
    BUFFERED.with(|buffer| {
        if let Ok(mut buffer) = buffer.try_borrow_mut()
            && let Some(mut lines) = buffer.take()
        {
            write_out(&mut lines);
        }
    });
}

/// The multi-threaded tokio runtime the binary serves on, its workers' log lines buffered (see
/// the module's documentation).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(on_worker_park)
        .on_thread_stop(on_thread_stop)
        .build()
}

/// At `info`, rmcp would log each MCP session's start and end (with `--stateless`, every request
/// that reaches it): lines about the library, not the server. They stay available through
/// `RUST_LOG` or a `debug` level.
fn quiet_dependencies(level: &str) -> String {
    if level == "info" {
        "info,rmcp=warn".to_owned()
    } else {
        level.to_owned()
    }
}

/// Maps Python / uvicorn level names to tracing's (`WARNING` → `warn`, `CRITICAL` → `error`).
fn python_level_to_filter(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        "warning" => "warn".into(),
        "critical" | "fatal" => "error".into(),
        "notset" => "trace".into(),
        other => other.into(),
    }
}

/// Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
pub fn color_on_stderr() -> bool {
    use std::io::IsTerminal;
    no_color_unset() && std::io::stderr().is_terminal()
}

/// The same rule for command output on stdout (`check-token`).
pub fn color_on_stdout() -> bool {
    use std::io::IsTerminal;
    no_color_unset() && std::io::stdout().is_terminal()
}

fn no_color_unset() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn maps_python_levels() {
        assert_eq!(super::python_level_to_filter("WARNING"), "warn");
        assert_eq!(super::python_level_to_filter("INFO"), "info");
        assert_eq!(super::python_level_to_filter("critical"), "error");
    }

    /// A worker's lines wait in its buffer until it parks, then go out whole and in order; a
    /// thread that never parked writes at once.
    #[test]
    fn a_workers_lines_are_held_until_it_parks() {
        use std::io::Write;
        // A thread that has not parked: nothing is buffered.
        std::thread::spawn(|| {
            write!(super::Stderr, "").unwrap();
            assert!(super::BUFFERED.with(|buffer| buffer.borrow().is_none()));
        })
        .join()
        .unwrap();
        std::thread::spawn(|| {
            super::on_worker_park();
            for n in 0..3 {
                writeln!(super::Stderr, "line {n}").unwrap();
            }
            let held = super::BUFFERED.with(|buffer| buffer.borrow().clone().unwrap());
            assert_eq!(String::from_utf8(held).unwrap(), "line 0\nline 1\nline 2\n");
            super::on_worker_park();
            assert!(super::BUFFERED.with(|buffer| buffer.borrow().as_ref().unwrap().is_empty()));
            writeln!(super::Stderr, "last").unwrap();
            super::on_thread_stop();
            assert!(super::BUFFERED.with(|buffer| buffer.borrow().is_none()));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_full_buffer_is_written_out_without_waiting_for_a_park() {
        use std::io::Write;
        std::thread::spawn(|| {
            super::on_worker_park();
            let line = [b'x'; 1000];
            for _ in 0..(super::BUFFER_BYTES / line.len() + 1) {
                super::Stderr.write_all(&line).unwrap();
            }
            let held = super::BUFFERED.with(|buffer| buffer.borrow().as_ref().unwrap().len());
            assert!(held < super::BUFFER_BYTES, "written out at {held} bytes");
            super::on_thread_stop();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_filter_reads_levels_and_targets_and_falls_back_when_it_cannot() {
        use tracing::Level;
        let filter = super::filter_of("info,rmcp=warn,audit=off", "error");
        assert!(filter.would_enable("scalekit_mcp::server", &Level::INFO));
        assert!(!filter.would_enable("scalekit_mcp::server", &Level::DEBUG));
        assert!(!filter.would_enable("rmcp::service", &Level::INFO));
        assert!(filter.would_enable("rmcp::service", &Level::WARN));
        assert!(!filter.would_enable("audit", &Level::ERROR));
        let fallback = super::filter_of("info,[span{x=1}]=debug", "warn");
        assert!(fallback.would_enable("scalekit_mcp", &Level::WARN));
        assert!(!fallback.would_enable("scalekit_mcp", &Level::INFO));
    }

    #[test]
    fn rmcp_is_quiet_at_info_only() {
        assert_eq!(super::quiet_dependencies("info"), "info,rmcp=warn");
        assert_eq!(super::quiet_dependencies("debug"), "debug");
        assert_eq!(super::quiet_dependencies("warn"), "warn");
    }

    /// The cached timestamp reads as tracing-subscriber's own, to the second and in shape.
    #[test]
    fn timestamps_are_tracing_subscribers_own() {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::FormatTime;
        let format = |timer: &dyn FormatTime| {
            let mut text = String::new();
            timer.format_time(&mut Writer::new(&mut text)).unwrap();
            text
        };
        for _ in 0..3 {
            let (ours, theirs) = loop {
                let second = super::unix_time().as_secs();
                let ours = format(&super::Timestamp);
                let theirs = format(&tracing_subscriber::fmt::time::SystemTime);
                let mut by_hand = Vec::new();
                super::timestamp_into(&mut by_hand);
                let by_hand = String::from_utf8(by_hand).unwrap();
                if super::unix_time().as_secs() == second {
                    assert_eq!(by_hand.strip_suffix(' '), Some(&by_hand[..ours.len()]));
                    assert_eq!(by_hand[..20], theirs[..20], "{by_hand} / {theirs}");
                    break (ours, theirs);
                }
            };
            assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
            assert_eq!(ours[..20], theirs[..20], "{ours} / {theirs}");
            assert!(ours.ends_with('Z') && ours[20..26].bytes().all(|b| b.is_ascii_digit()));
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
    }

    #[test]
    fn durations_are_milliseconds_with_one_decimal() {
        let shown =
            |micros| super::milliseconds(std::time::Duration::from_micros(micros)).to_string();
        assert_eq!(shown(0), "0.0");
        assert_eq!(shown(49), "0.0");
        assert_eq!(shown(50), "0.1");
        assert_eq!(shown(1_234), "1.2");
        assert_eq!(shown(1_250), "1.3");
        assert_eq!(shown(12_345_678), "12345.7");
    }
}
