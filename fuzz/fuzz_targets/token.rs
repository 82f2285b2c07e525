//! Token decoding and validation, as `serve` and `check-token` run them, on arbitrary input:
//! never a panic, and the fail-fast verdict always equals the explain report's first failure.
//! The same input is also tried as an `Authorization` header value and as a JWKS document.

#![no_main]

use std::sync::LazyLock;

use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use scalekit_mcp::auth::keys::KeySet;
use scalekit_mcp::auth::validate::{Mode, TokenPolicy, evaluate, validate};
use scalekit_mcp::server::auth::bearer_token;

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    KeySet::from_jwks_json(include_bytes!("../../tests/fixtures/jwks-all.json")).unwrap()
});

static POLICY: LazyLock<TokenPolicy> = LazyLock::new(|| TokenPolicy {
    issuers: vec!["https://env.example.scalekit.dev".into()],
    audiences: vec!["http://localhost:3002/".into(), "res_123".into()],
    algorithms: vec![Algorithm::RS256, Algorithm::ES256],
    required_scopes: vec!["mcp:tools".into()],
    leeway: 30,
});

const NOW: i64 = 1_767_225_600;

fuzz_target!(|data: &[u8]| {
    let _ = KeySet::from_jwks_json(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let verdict = validate(text, &POLICY, &KEYS, NOW);
    let (report, _) = evaluate(text, &POLICY, Some(&KEYS), NOW, Mode::Explain);
    assert_eq!(report.first_failure(), verdict.as_ref().err());
    let (report, _) = evaluate(text, &POLICY, None, NOW, Mode::Explain);
    let _ = report.first_failure().map(ToString::to_string);
    if let Ok(value) = http::HeaderValue::from_str(text) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        if let Ok(token) = bearer_token(&headers) {
            let _ = validate(token, &POLICY, &KEYS, NOW);
        }
    }
});
