//! What one MCP session has set: the least severe log level it wants (`logging/setLevel`) and the
//! resources it watches (`resources/subscribe`).

// Logging is deprecated for the 2026-07-28 protocol (SEP-2577); the suite's client speaks
// 2025-11-25, where it is current.
#![allow(deprecated)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use rmcp::model::LoggingLevel;

/// One session's settings.
///
/// The server builds each session's handler by cloning the one it was given, so a clone starts
/// afresh: two sessions never share a log level or subscriptions.
#[derive(Default)]
pub struct Session(Arc<Mutex<Settings>>);

impl Clone for Session {
    fn clone(&self) -> Self {
        Self::default()
    }
}

struct Settings {
    least_severe_logged: LoggingLevel,
    watched: BTreeSet<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            least_severe_logged: LoggingLevel::Info,
            watched: BTreeSet::new(),
        }
    }
}

impl Session {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn set_log_level(&self, level: LoggingLevel) {
        self.settings().least_severe_logged = level;
    }

    /// Whether a log message at `level` is to be sent.
    pub fn logs(&self, level: LoggingLevel) -> bool {
        severity(level) >= severity(self.settings().least_severe_logged)
    }

    /// Watches `uri`. The resources here never change, so no `notifications/resources/updated`
    /// is ever due; the set is what a server whose resources change would consult.
    pub fn watch(&self, uri: String) {
        self.settings().watched.insert(uri);
    }

    pub fn unwatch(&self, uri: &str) {
        self.settings().watched.remove(uri);
    }
}

/// RFC 5424's order, which MCP's levels follow: `debug` is the least severe.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}
