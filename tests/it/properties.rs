//! Property tests of the parsers the fuzz targets (`fuzz/`) exercise, on stable and in the default
//! `cargo test`: token decoding and validation, the `Authorization` header, the challenge both
//! ways (ours built, rmcp's parser reading it), check-token's input handling and `call`'s arguments. Case counts are
//! modest so the suite stays fast; the fuzzers run the same properties for longer.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use rmcp::transport::auth::WWWAuthenticateParams;
use scalekit_mcp::auth::challenge::{AuthFailure, ChallengeParams};
use scalekit_mcp::auth::keys::KeySet;
use scalekit_mcp::auth::validate::{Mode, Rejection, TokenPolicy, evaluate, validate};
use scalekit_mcp::client::arguments::{Pair, build, parse_pair};
use scalekit_mcp::client::home::canonical_server_url;
use scalekit_mcp::commands::check_token::strip_bearer;
use scalekit_mcp::server::auth::bearer_token;
use serde_json::json;

use crate::util::*;

static KEYS: LazyLock<KeySet> = LazyLock::new(|| keys("jwks-all.json"));

fn policy() -> TokenPolicy {
    TokenPolicy {
        issuers: vec![ISSUER.into()],
        audiences: vec![AUDIENCE.into()],
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        required_scopes: vec!["mcp:tools".into()],
        leeway: 30,
        allowed_orgs: vec![],
    }
}

/// One valid token, signed once: mutating it is the cheap way to get near-valid input.
static VALID: LazyLock<String> = LazyLock::new(|| mint(&good_claims()));

const METADATA_URL: &str = "http://localhost:3002/.well-known/oauth-protected-resource";

/// Strings that look like JWTs: three segments of base64url-encoded JSON-ish bytes.
fn jwt_like() -> impl Strategy<Value = String> {
    let json_ish = prop_oneof![
        any::<Vec<u8>>(),
        (
            prop::sample::select(vec!["RS256", "none", "HS256", "ES256", "None", ""]),
            ".*"
        )
            .prop_map(|(alg, kid)| json!({"alg": alg, "kid": kid}).to_string().into_bytes()),
    ];
    (json_ish.clone(), json_ish, any::<Vec<u8>>()).prop_map(|(header, payload, signature)| {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Never a panic, and serve's fail-fast verdict is check-token's first failure.
    #[test]
    fn validation_is_total_and_agrees_with_the_report(token in prop_oneof![".*", jwt_like()]) {
        let now = now();
        let verdict = validate(&token, &policy(), &KEYS, now);
        let (report, _) = evaluate(&token, &policy(), Some(&KEYS), now, Mode::Explain);
        prop_assert_eq!(report.first_failure(), verdict.as_ref().err());
        prop_assert!(verdict.is_err(), "random input was accepted: {token}");
    }

    /// Changing any one character of a valid token gets it refused.
    #[test]
    fn any_one_character_changed_is_refused(position in 0usize..2000, replacement in "[A-Za-z0-9_.=+/ -]") {
        let valid = VALID.as_str();
        let position = position % valid.len();
        let replacement = replacement.chars().next().unwrap();
        prop_assume!(valid.as_bytes()[position] as char != replacement);
        let mut mutated = valid.to_owned();
        mutated.replace_range(position..=position, &replacement.to_string());
        prop_assert!(validate(&mutated, &policy(), &KEYS, now()).is_err(), "{mutated}");
    }

    /// `Bearer <token>` in any casing yields exactly the token; other text never panics.
    #[test]
    fn bearer_extraction(token in "[A-Za-z0-9._~+/-]{1,64}=*", upper in any::<[bool; 6]>(), noise in ".*") {
        let scheme: String = "bearer"
            .chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("{scheme} {token}")).unwrap(),
        );
        prop_assert_eq!(bearer_token(&headers).ok(), Some(token.as_str()));
        if let Ok(value) = http::HeaderValue::from_str(&noise) {
            headers.insert(http::header::AUTHORIZATION, value);
            let _ = bearer_token(&headers);
        }
    }

    /// Whatever a refused token's kid says, our challenge is a valid header, and rmcp's parser
    /// (what `login` runs) reads our error, our metadata URL and no scope from it.
    #[test]
    fn challenges_survive_hostile_descriptions(
        kid in prop_oneof![".*", "[a-z ,]*(scope|Scope|resource_metadata|error)=\"?[a-z:/]*\"?"],
        scoped in any::<bool>(),
    ) {
        let params = ChallengeParams {
            resource_metadata: METADATA_URL.into(),
            required_scopes: if scoped { vec!["mcp:tools".into()] } else { vec![] },
        };
        let refusal = params.refuse(&AuthFailure::Rejected(Rejection::UnknownKey(kid)));
        let header = refusal.www_authenticate.unwrap();
        let header = header.to_str().unwrap();
        let base = url::Url::parse("http://localhost:3002/").unwrap();
        let parsed = WWWAuthenticateParams::parse(header, &base);
        prop_assert_eq!(parsed.error.as_deref(), Some("invalid_token"));
        prop_assert_eq!(
            parsed.resource_metadata_url.as_ref().map(url::Url::as_str),
            Some(METADATA_URL)
        );
        prop_assert_eq!(parsed.scope.as_deref(), scoped.then_some("mcp:tools"));
    }

    /// rmcp's parser never panics on a header from a hostile server.
    #[test]
    fn any_challenge_parses(header in ".*") {
        let base = url::Url::parse("http://localhost:3002/mcp").unwrap();
        let _ = WWWAuthenticateParams::parse(&header, &base);
    }

    /// check-token's input handling: stripping `Bearer ` only shrinks and trims; canonical
    /// server URLs are fixed points.
    #[test]
    fn check_token_input(text in prop_oneof![".*", "(?i)(bearer)?[ \t\n]*[a-z0-9.]*[ \n]*", "(HTTP|https)://[a-zA-Z0-9.:\\[\\]/#?%-]*"]) {
        let stripped = strip_bearer(&text);
        prop_assert!(stripped.len() <= text.len());
        prop_assert_eq!(stripped.trim(), stripped);
        if let Ok(url) = canonical_server_url(&text) {
            prop_assert_eq!(canonical_server_url(&url).ok(), Some(url));
        }
    }

    /// `call`'s arguments (the `call_arguments` fuzz target's properties): parsing and building
    /// never panic; an accepted `key=value` for a string property keeps its text exactly; every
    /// required argument is present.
    #[test]
    fn call_arguments(lines in prop::collection::vec(prop_oneof![
        ".*",
        "(zip|n|ok|tags|x)(:)?=.{0,12}",
    ], 0..6)) {
        let schema = json!({"type": "object", "required": ["zip"], "properties": {
            "zip": {"type": "string"}, "n": {"type": "integer"}, "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}}}});
        let schema = schema.as_object().unwrap();
        let pairs: Vec<Pair> = lines.iter().filter_map(|line| parse_pair(line).ok()).collect();
        if let Ok(arguments) = build("tool", schema, serde_json::Map::new(), &pairs) {
            prop_assert!(arguments.contains_key("zip"));
            let last_zip = pairs.iter().rev().find(|pair| pair.key() == "zip");
            if let Some(Pair::Text(_, text)) = last_zip {
                prop_assert_eq!(arguments.get("zip"), Some(&json!(text)));
            }
        }
    }
}
