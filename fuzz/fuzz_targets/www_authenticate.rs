//! WWW-Authenticate, both ways: rmcp's parser (what `login` runs on a server's challenge) on
//! arbitrary headers, and our challenge builder with an arbitrary description, which must always
//! yield a valid header that parses back to the same (sanitised) description.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rmcp::transport::auth::WWWAuthenticateParams;
use scalekit_mcp::auth::challenge::{AuthFailure, ChallengeParams};
use scalekit_mcp::auth::validate::{Rejection};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = url::Url::parse("http://localhost:3002/mcp").unwrap();
    let _ = WWWAuthenticateParams::parse(text, &base);

    let params = ChallengeParams {
        resource_metadata: "http://localhost:3002/.well-known/oauth-protected-resource".into(),
        required_scopes: vec!["mcp:tools".into()],
    };
    let refusal = params.refuse(&AuthFailure::Rejected(Rejection::UnknownKey(text.into())));
    let header = refusal.www_authenticate.expect("a challenge");
    let header = header.to_str().expect("a visible-ASCII header");
    assert!(header.contains("error=\"invalid_token\""), "{header}");
    let parsed = WWWAuthenticateParams::parse(header, &base);
    assert_eq!(parsed.error.as_deref(), Some("invalid_token"), "{header}");
    assert_eq!(
        parsed.resource_metadata_url.as_ref().map(url::Url::as_str),
        Some("http://localhost:3002/.well-known/oauth-protected-resource"),
        "{header}"
    );
});
