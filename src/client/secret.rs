//! Secrets as a type: an access token, refresh token or client secret never prints itself.
//!
//! `Debug` and `Display` show `[redacted]`; the only way to the value is [`Secret::expose`], which
//! makes every place that handles the raw value easy to find.
//!
//! ```
//! use scalekit_mcp::client::secret::Secret;
//! let token = Secret::new("eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_string());
//! assert_eq!(format!("{token} {token:?}"), "[redacted] Secret([redacted])");
//! assert!(token.expose().starts_with("eyJ"));
//! ```

/// A value that must never be logged or printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The raw value, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}
