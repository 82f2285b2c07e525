//! check-token's input handling on arbitrary text: the `Bearer ` stripping applied to a pasted
//! token and the server URL canonicalisation of `--server` (also used by `token` and `login`).
//! Stripping never grows the input and is idempotent on its result's whitespace; canonical URLs
//! are fixed points.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scalekit_mcp::client::home::canonical_server_url;
use scalekit_mcp::commands::check_token::strip_bearer;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let stripped = strip_bearer(text);
    assert!(stripped.len() <= text.len());
    assert_eq!(stripped.trim(), stripped);
    if let Ok(url) = canonical_server_url(text) {
        assert_eq!(canonical_server_url(&url).ok().as_deref(), Some(url.as_str()), "{text:?}");
    }
});
