//! The adversarial suite for `serve`, in-process: every forged, altered, misdirected or malformed
//! credential the issue lists (one table), JWKS faults the binary tests do not cover (an `oct` key,
//! a flood of 10,000 unknown kids, a slow refetch), and the request limits.
//!
//! Each refused request must be a 401 carrying the right `WWW-Authenticate`: `error="invalid_token"`
//! with a description naming the failed check when a bearer token was presented, and no `error=`
//! at all when none was (RFC 6750 §3.1). And no tool may have run: the answer is the middleware's
//! refusal body, not a JSON-RPC response, and the greeting for the case's unique name is absent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey};
use scalekit_mcp::auth::jwks::{CacheSettings, FetchFuture, FetchedKeys, JwksCache, KeyFetcher};
use scalekit_mcp::auth::keys::KeySet;
use serde_json::{Value, json};

use crate::util::*;

const METADATA_URL: &str = "http://localhost:3002/.well-known/oauth-protected-resource";

fn app_default() -> axum::Router {
    app(BASE_ARGS, keys("jwks-all.json"))
}

/// What a case sends in place of a good `Authorization: Bearer` header.
enum Credentials {
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// These exact `Authorization` header values (none, one or several), as raw bytes.
    Headers(Vec<Vec<u8>>),
    /// No header; the token in the `access_token` query parameter (OAuth 2.1 forbids it).
    Query(String),
}

/// What the challenge must say.
enum Expect {
    /// 401, `error="invalid_token"`, and a description containing this.
    InvalidToken(&'static str),
    /// 401 with no `error=` attribute: no bearer credentials were presented.
    NoCredentials,
}

struct Case {
    name: &'static str,
    credentials: Credentials,
    expect: Expect,
}

fn token(name: &'static str, token: String, reason: &'static str) -> Case {
    Case {
        name,
        credentials: Credentials::Token(token),
        expect: Expect::InvalidToken(reason),
    }
}

/// Good claims with `patch` applied (a `null` removes the claim).
fn claims_with(patch: Value) -> Value {
    let mut claims = good_claims();
    for (key, value) in patch.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn rsa_key(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(fixture(&format!("rsa-{name}.pem"))).unwrap()).unwrap()
}

/// Signs an arbitrary header and payload segment: for headers jsonwebtoken would not write.
fn sign_raw(header: &Value, payload_segment: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let signing_input = format!("{}.{payload_segment}", segment(header));
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).unwrap();
    format!("{signing_input}.{signature}")
}

/// RS256 with key a and the given header (which should say RS256).
fn rs256_with_header(header: Value, claims: &Value) -> String {
    sign_raw(&header, &segment(claims), Algorithm::RS256, &rsa_key("a"))
}

/// The algorithm-confusion attack: an HMAC token whose secret is the server's RSA public key.
fn hmac_with_public_key(alg: Algorithm) -> String {
    let public = std::fs::read(fixture("rsa-a.pub.pem")).unwrap();
    let name = format!("{alg:?}");
    sign_raw(
        &json!({"alg": name, "kid": "key-a", "typ": "JWT"}),
        &segment(&good_claims()),
        alg,
        &EncodingKey::from_secret(&public),
    )
}

/// The public JWK of fixture key b, for a token that carries its own key in `jwk`.
fn jwk_b() -> Value {
    let jwks: Value = serde_json::from_str(&fixture_text("jwks-b.json")).unwrap();
    jwks["keys"][0].clone()
}

fn bad_token_cases() -> Vec<Case> {
    let now = now();
    let good = mint(&good_claims());
    let (signing_input, signature) = good.rsplit_once('.').unwrap();
    let header_segment = signing_input.split('.').next().unwrap();
    let mut cases = vec![];

    // alg none, in every casing: never an algorithm, whatever the spelling.
    for alg in ["none", "None", "NONE", "nOnE"] {
        cases.push(token(
            "alg none",
            raw_token(&json!({"alg": alg, "typ": "JWT"}), &good_claims(), ""),
            "is not allowed",
        ));
    }
    cases.push(token(
        "alg none with a signature",
        raw_token(&json!({"alg": "none"}), &good_claims(), "c2ln"),
        "algorithm none is not allowed",
    ));
    // Algorithm confusion: HMAC keyed with the RSA public key.
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        cases.push(token(
            "HMAC signed with the RSA public key",
            hmac_with_public_key(alg),
            "is not allowed (allowed: RS256)",
        ));
    }
    cases.extend([
        token(
            "alg missing",
            raw_token(&json!({"kid": "key-a"}), &good_claims(), "c2ln"),
            "algorithm (missing) is not allowed",
        ),
        token(
            "alg not a string",
            raw_token(&json!({"alg": 256, "kid": "key-a"}), &good_claims(), "c2ln"),
            "algorithm (missing) is not allowed",
        ),
        token(
            "allowed alg, key of another type",
            rs256_with_header(json!({"alg": "RS256", "kid": "key-ec"}), &good_claims()),
            "key key-ec cannot verify RS256",
        ),
        token(
            "unknown kid",
            mint_with(&good_claims(), "a", Some("key-zzz")),
            "no signing key with kid key-zzz",
        ),
        token(
            "missing kid with several keys",
            mint_with(&good_claims(), "a", None),
            "no kid and the key set holds 3 keys",
        ),
        token(
            "kid not a string",
            rs256_with_header(json!({"alg": "RS256", "kid": 7}), &good_claims()),
            "no signing key with kid (not a string)",
        ),
    ]);
    // kid values that would hurt a server that looked keys up in files, URLs or SQL.
    for kid in [
        "../../../../etc/passwd",
        "key-a' OR '1'='1",
        "https://attacker.example/keys#key-a",
        "key-a\u{0}",
        "key-a/../key-a",
    ] {
        cases.push(token(
            "kid with a path or injection",
            mint_with(&good_claims(), "a", Some(kid)),
            "no signing key with kid",
        ));
    }
    // Headers that point at keys elsewhere are never followed: the attacker's key b signs.
    cases.extend([
        token(
            "jku pointing at the attacker's JWKS",
            sign_raw(
                &json!({"alg": "RS256", "kid": "attacker", "jku": "https://attacker.example/jwks.json"}),
                &segment(&good_claims()),
                Algorithm::RS256,
                &rsa_key("b"),
            ),
            "no signing key with kid attacker",
        ),
        token(
            "x5u pointing at the attacker's certificate",
            sign_raw(
                &json!({"alg": "RS256", "kid": "key-a", "x5u": "https://attacker.example/cert.pem"}),
                &segment(&good_claims()),
                Algorithm::RS256,
                &rsa_key("b"),
            ),
            "invalid signature",
        ),
        token(
            "embedded jwk of the signing key",
            sign_raw(
                &json!({"alg": "RS256", "kid": "key-a", "jwk": jwk_b()}),
                &segment(&good_claims()),
                Algorithm::RS256,
                &rsa_key("b"),
            ),
            "invalid signature",
        ),
        token(
            "crit with an unknown extension",
            rs256_with_header(
                json!({"alg": "RS256", "kid": "key-a", "crit": ["http://example.com/ext"], "http://example.com/ext": true}),
                &good_claims(),
            ),
            "marks extensions",
        ),
        token(
            "signature stripped",
            format!("{signing_input}."),
            "the signature segment is empty",
        ),
        token(
            "signature truncated",
            format!("{signing_input}.{}", &signature[..signature.len() - 2]),
            "invalid signature",
        ),
        token(
            "signature from another key",
            mint_with(&good_claims(), "b", Some("key-a")),
            "invalid signature",
        ),
        token(
            "signature of another token",
            format!(
                "{signing_input}.{}",
                mint(&claims_with(json!({"sub": "usr_1"})))
                    .rsplit('.')
                    .next()
                    .unwrap()
            ),
            "invalid signature",
        ),
        token(
            "payload altered after signing",
            format!(
                "{header_segment}.{}.{signature}",
                segment(&claims_with(json!({"sub": "admin", "scope": "mcp:tools admin"})))
            ),
            "invalid signature",
        ),
        token(
            "expired just past the leeway",
            mint(&claims_with(json!({"exp": now - 31}))),
            "token expired at",
        ),
        token(
            "expired long ago",
            mint(&claims_with(json!({"exp": 1, "iat": 0, "nbf": 0}))),
            "token expired at 1970-01-01",
        ),
        token(
            "nbf in the future",
            mint(&claims_with(json!({"nbf": now + 3600}))),
            "not valid before",
        ),
        token(
            "iat far in the future",
            mint(&claims_with(json!({"iat": now + 365 * 86_400}))),
            "issued in the future",
        ),
        token(
            "missing exp",
            mint(&claims_with(json!({"exp": null}))),
            "no exp claim",
        ),
        token(
            "exp as a string",
            mint(&claims_with(json!({"exp": (now + 3600).to_string()}))),
            "exp claim is not a NumericDate",
        ),
        token(
            "exp beyond i64",
            mint(&claims_with(json!({"exp": 1e300}))),
            "exp claim is not a NumericDate",
        ),
        token(
            "issuer: a prefix of ours",
            mint(&claims_with(json!({"iss": &ISSUER[..ISSUER.len() - 1]}))),
            "is not accepted",
        ),
        token(
            "issuer: ours with a suffix",
            mint(&claims_with(json!({"iss": format!("{ISSUER}.attacker.example")}))),
            "is not accepted",
        ),
        token(
            "issuer: another resource of our environment",
            mint(&claims_with(json!({"iss": format!("{ISSUER}/resources/res_999")}))),
            "is not accepted",
        ),
        token(
            "issuer: different case",
            mint(&claims_with(json!({"iss": ISSUER.to_ascii_uppercase()}))),
            "is not accepted",
        ),
        token(
            "issuer: trailing slash",
            mint(&claims_with(json!({"iss": format!("{ISSUER}/")}))),
            "is not accepted",
        ),
        token(
            "issuer: missing",
            mint(&claims_with(json!({"iss": null}))),
            "no iss claim",
        ),
        token(
            "issuer: an array",
            mint(&claims_with(json!({"iss": [ISSUER]}))),
            "iss claim is not a string",
        ),
        token(
            "wrong audience",
            mint(&claims_with(json!({"aud": "https://other.example/"}))),
            "does not include an accepted audience",
        ),
        token(
            "audience array without ours",
            mint(&claims_with(json!({"aud": ["https://other.example/", "res_9"]}))),
            "does not include an accepted audience",
        ),
        token(
            "audience: ours without the trailing slash",
            mint(&claims_with(json!({"aud": AUDIENCE.trim_end_matches('/')}))),
            "does not include an accepted audience",
        ),
        token(
            "empty audience",
            mint(&claims_with(json!({"aud": []}))),
            "audience (empty)",
        ),
        token(
            "missing audience",
            mint(&claims_with(json!({"aud": null}))),
            "no aud claim",
        ),
        token(
            "another Scalekit resource's token (right issuer, other audience)",
            mint(&claims_with(
                json!({"iss": ISSUER, "aud": ["res_999", "https://other-mcp.example/"]}),
            )),
            "does not include an accepted audience",
        ),
        token(
            "nested JWT",
            sign_raw(
                &json!({"alg": "RS256", "kid": "key-a", "cty": "JWT"}),
                &URL_SAFE_NO_PAD.encode(good.as_bytes()),
                Algorithm::RS256,
                &rsa_key("a"),
            ),
            "payload segment is not a JSON object",
        ),
        token(
            "JWE (5 segments)",
            format!("{}.a2V5.aXY.Y2lwaGVy.dGFn", segment(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"}))),
            "encrypted JWE",
        ),
        token(
            "2 segments",
            signing_input.to_owned(),
            "this token has 2",
        ),
        token(
            "4 segments",
            format!("{good}.c2ln"),
            "this token has 4",
        ),
        token(
            "standard base64 alphabet, not base64url",
            format!(
                "{}.{}.{signature}",
                STANDARD.encode(br#"{"alg":"RS256","kid":"key-a","x":"??>>"}"#),
                segment(&good_claims())
            ),
            "header segment is not valid base64url",
        ),
        token(
            "padded payload segment",
            format!(
                "{header_segment}.{}.{signature}",
                URL_SAFE_NO_PAD.encode(b"{}") + "=="
            ),
            "payload segment is not valid base64url",
        ),
        token(
            "padded signature",
            format!("{good}=="),
            "signature segment is not valid base64url",
        ),
        token(
            "header not JSON",
            format!("{}.{}.{signature}", URL_SAFE_NO_PAD.encode(b"RS256"), segment(&good_claims())),
            "header segment is not a JSON object",
        ),
        token(
            "header a JSON array",
            format!("{}.{}.{signature}", URL_SAFE_NO_PAD.encode(b"[1]"), segment(&good_claims())),
            "header segment is not a JSON object",
        ),
        token(
            "payload not JSON",
            format!("{header_segment}.{}.{signature}", URL_SAFE_NO_PAD.encode(b"not json")),
            "payload segment is not a JSON object",
        ),
        token("empty segments", "..".into(), "header segment is not a JSON object"),
        token("garbage", "not-a-token".into(), "this token has 1"),
        token(
            "a token over 16 KiB",
            format!("{}.{}.{signature}", header_segment, "A".repeat(20 * 1024)),
            "longer than 16384 bytes",
        ),
        token(
            "space inside the token",
            format!("{header_segment} {signing_input}.{signature}"),
            "malformed token",
        ),
    ]);
    let bearer = |value: &str| value.as_bytes().to_vec();
    cases.extend([
        Case {
            name: "duplicate Authorization headers",
            credentials: Credentials::Headers(vec![
                bearer(&format!("Bearer {good}")),
                bearer(&format!("Bearer {good}")),
            ]),
            expect: Expect::InvalidToken("more than one Authorization header"),
        },
        Case {
            name: "Bearer with nothing after it",
            credentials: Credentials::Headers(vec![bearer("Bearer")]),
            expect: Expect::InvalidToken("no token after Bearer"),
        },
        Case {
            name: "Bearer and spaces",
            credentials: Credentials::Headers(vec![bearer("Bearer    ")]),
            expect: Expect::InvalidToken("no token after Bearer"),
        },
        Case {
            name: "non-ASCII Authorization header",
            credentials: Credentials::Headers(vec![b"Bearer \xffabc".to_vec()]),
            expect: Expect::InvalidToken("not ASCII"),
        },
        Case {
            name: "two tokens in one header",
            credentials: Credentials::Headers(vec![bearer(&format!(
                "Bearer {good}, Bearer {good}"
            ))]),
            expect: Expect::InvalidToken("malformed token"),
        },
        Case {
            name: "token in the query string",
            credentials: Credentials::Query(good.clone()),
            expect: Expect::NoCredentials,
        },
        Case {
            name: "Basic scheme",
            credentials: Credentials::Headers(vec![bearer("Basic dXNlcjpwYXNz")]),
            expect: Expect::NoCredentials,
        },
        Case {
            name: "the token without a scheme",
            credentials: Credentials::Headers(vec![bearer(&good)]),
            expect: Expect::NoCredentials,
        },
        Case {
            name: "no Authorization header",
            credentials: Credentials::Headers(vec![]),
            expect: Expect::NoCredentials,
        },
    ]);
    cases
}

fn request_for(credentials: &Credentials, message: &Value) -> http::Request<Body> {
    let (path, headers) = match credentials {
        Credentials::Token(token) => ("/".to_owned(), vec![format!("Bearer {token}").into_bytes()]),
        Credentials::Headers(values) => ("/".to_owned(), values.clone()),
        Credentials::Query(token) => (format!("/?access_token={token}"), vec![]),
    };
    let mut request = http::Request::post(path)
        .header("host", "localhost:3002")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(Body::from(message.to_string()))
        .unwrap();
    for value in headers {
        request.headers_mut().append(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(&value).unwrap(),
        );
    }
    request
}

/// Asserts a refusal: status 401, the right challenge, and no sign that a tool ran.
fn assert_refused(case: &str, expect: &Expect, reply: &Reply, victim: &str) {
    assert_eq!(reply.status, 401, "{case}: {}", reply.body);
    let challenge = reply
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{case}: no challenge"));
    assert!(
        challenge.starts_with("Bearer realm=\"OAuth\", ")
            && challenge.contains(&format!("resource_metadata=\"{METADATA_URL}\"")),
        "{case}: {challenge}"
    );
    let body = reply.json();
    assert!(
        body.get("jsonrpc").is_none(),
        "{case}: an MCP answer: {body}"
    );
    assert!(!reply.body.contains(victim), "{case}: the tool ran: {body}");
    match expect {
        Expect::InvalidToken(reason) => {
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{case}: {challenge}"
            );
            let description = challenge_description(challenge);
            assert!(
                description.contains(reason),
                "{case}: {description:?} lacks {reason:?}"
            );
            assert_eq!(body["error"], "invalid_token", "{case}");
            assert_eq!(body["error_description"], description, "{case}");
        }
        Expect::NoCredentials => {
            assert!(!challenge.contains("error="), "{case}: {challenge}");
            assert_eq!(body["error"], "unauthorized", "{case}");
        }
    }
}

#[tokio::test]
async fn every_bad_credential_is_refused_with_its_challenge_and_no_tool_runs() {
    let app = app_default();
    let cases = bad_token_cases();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    eprintln!("{} bad credentials", cases.len());
    for (i, case) in cases.iter().enumerate() {
        let victim = format!("victim-{i}");
        let reply = send(&app, request_for(&case.credentials, &call_greet(&victim))).await;
        assert_refused(
            &format!("#{i} {}", case.name),
            &case.expect,
            &reply,
            &victim,
        );
        if let Credentials::Token(token) = &case.credentials {
            let signature = token.rsplit('.').next().unwrap_or_default();
            assert!(
                signature.len() < 8 || !reply.body.contains(signature),
                "#{i} {}: the token is echoed",
                case.name
            );
        }
    }
    // The control: the same app accepts a good token, whatever the scheme's casing.
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let request = mcp_post(None)
            .header(
                "authorization",
                format!("{scheme} {}", mint(&good_claims())),
            )
            .body(Body::from(call_greet("Ana").to_string()))
            .unwrap();
        let reply = send(&app, request).await;
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.body);
        assert_eq!(tool_text(&reply.rpc()), "Hi Ana, welcome to Scalekit!");
    }
}

#[tokio::test]
async fn a_64_kib_token_is_refused_fast_with_431() {
    let app = app_default();
    let huge = format!(
        "{}.{}.c2ln",
        segment(&json!({"alg": "RS256"})),
        "A".repeat(64 * 1024)
    );
    let started = Instant::now();
    let reply = send(
        &app,
        request_for(&Credentials::Token(huge), &call_greet("victim")),
    )
    .await;
    assert_eq!(reply.status, 431, "{}", reply.body);
    assert!(!reply.body.contains("victim"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A fetcher that serves a fixed document and counts calls, with a delay the test can change.
struct Counting {
    body: String,
    calls: Arc<AtomicUsize>,
    delay: Arc<std::sync::Mutex<Duration>>,
}

impl KeyFetcher for Counting {
    fn fetch(&self) -> FetchFuture<'_> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let keys = KeySet::from_jwks_json(self.body.as_bytes()).map_err(|e| e.to_string())?;
            Ok(FetchedKeys {
                keys,
                max_age: None,
            })
        })
    }
}

struct CountingCache {
    cache: Arc<JwksCache>,
    calls: Arc<AtomicUsize>,
    delay: Arc<std::sync::Mutex<Duration>>,
}

/// A loaded cache of `jwks-all.json` whose fetches are counted.
async fn counting_cache(cooldown: Duration) -> CountingCache {
    let calls = Arc::new(AtomicUsize::new(0));
    let delay = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let cache = Arc::new(JwksCache::new(
        Box::new(Counting {
            body: fixture_text("jwks-all.json"),
            calls: calls.clone(),
            delay: delay.clone(),
        }),
        CacheSettings {
            default_ttl: Duration::from_secs(600),
            unknown_kid_cooldown: cooldown,
        },
    ));
    cache.refresh().await.unwrap();
    CountingCache {
        cache,
        calls,
        delay,
    }
}

#[tokio::test]
async fn an_hmac_key_in_the_jwks_is_ignored() {
    let jwks = json!({"keys": [
        {"kty": "oct", "kid": "key-h", "k": URL_SAFE_NO_PAD.encode(b"shared-secret"), "alg": "HS256"},
        serde_json::from_str::<Value>(&fixture_text("jwks-a.json")).unwrap()["keys"][0],
    ]});
    let keys = KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1, "only the RSA key is loaded");
    let app = app(BASE_ARGS, keys);
    let secret = EncodingKey::from_secret(b"shared-secret");
    let cases = [
        (
            sign_raw(
                &json!({"alg": "HS256", "kid": "key-h"}),
                &segment(&good_claims()),
                Algorithm::HS256,
                &secret,
            ),
            "algorithm HS256 is not allowed",
        ),
        (
            rs256_with_header(json!({"alg": "RS256", "kid": "key-h"}), &good_claims()),
            "no signing key with kid key-h",
        ),
    ];
    for (token, reason) in cases {
        let reply = post(&app, Some(&token), &call_greet("victim")).await;
        assert_refused("oct key", &Expect::InvalidToken(reason), &reply, "victim");
    }
    let reply = post(&app, Some(&mint(&good_claims())), &call_greet("x")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_kids_cause_at_most_one_fetch_per_cooldown() {
    let keys = counting_cache(Duration::from_secs(3600)).await;
    let app = app_with_cache(BASE_ARGS, keys.cache.clone());
    // One valid signature, many kids: signing 10,000 tokens would dominate the run time.
    let claims = segment(&good_claims());
    let signature = mint(&good_claims()).rsplit('.').next().unwrap().to_owned();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..50 {
        let (app, claims, signature) = (app.clone(), claims.clone(), signature.clone());
        tasks.spawn(async move {
            for i in 0..200 {
                let header = json!({"alg": "RS256", "kid": format!("random-{chunk}-{i}")});
                let token = format!("{}.{claims}.{signature}", segment(&header));
                let reply = post(&app, Some(&token), &call_greet("x")).await;
                assert_eq!(reply.status, 401, "{}", reply.body);
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    assert_eq!(
        keys.calls.load(Ordering::SeqCst),
        1,
        "only the initial load: the flood came within the cooldown"
    );
    eprintln!("10,000 unknown-kid requests in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_refetch_holds_up_nobody() {
    // Generous times, so a slow machine still fits the second unknown kid inside the cooldown
    // the slow refetch started (3 s), well before that refetch ends (6 s).
    let keys = counting_cache(Duration::from_secs(3)).await;
    let app = app_with_cache(BASE_ARGS, keys.cache.clone());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    *keys.delay.lock().unwrap() = Duration::from_secs(6);

    // This unknown kid starts a refetch that takes 6 s.
    let slow = {
        let app = app.clone();
        let token = mint_with(&good_claims(), "a", Some("new-kid"));
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = post(&app, Some(&token), &call_greet("x")).await;
            (reply.status, started.elapsed())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while keys.calls.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the refetch never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Meanwhile a known kid is answered at once, and another unknown kid is refused at once
    // instead of queueing behind the refetch.
    let started = Instant::now();
    let mut claims = good_claims();
    claims["jti"] = json!("while-refetching");
    let reply = post(&app, Some(&mint(&claims)), &call_greet("x")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = mint_with(&good_claims(), "a", Some("other-new-kid"));
    let reply = post(&app, Some(&token), &call_greet("x")).await;
    assert_eq!(reply.status, 401);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held up for {:?}",
        started.elapsed()
    );

    let (status, took) = slow.await.unwrap();
    assert_eq!(status, 401);
    assert!(
        took >= Duration::from_secs(5),
        "it waited for its own refetch: {took:?}"
    );
    assert_eq!(
        keys.calls.load(Ordering::SeqCst),
        2,
        "one refetch in the window"
    );
}

// Limits: each answered with its own status, never a dropped request or a crash.

fn limited_app(extra: &[&str]) -> axum::Router {
    app(&[BASE_ARGS, extra].concat(), keys("jwks-all.json"))
}

#[tokio::test]
async fn oversized_headers_get_431_before_authentication() {
    let app = limited_app(&["--max-header-bytes", "8192"]);
    let mut request = mcp_post(None)
        .body(Body::from(call_greet("victim").to_string()))
        .unwrap();
    for i in 0..40 {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
            http::HeaderValue::from_str(&"f".repeat(300)).unwrap(),
        );
    }
    let reply = send(&app, request).await;
    assert_eq!(reply.status, 431, "{}", reply.body);
    assert_eq!(reply.json()["error"], "request_header_fields_too_large");
    // Under the limit, the same request is an ordinary 401.
    let reply = post(&app, None, &call_greet("victim")).await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let app = limited_app(&["--max-body-bytes", "1024"]);
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "greet_user", "arguments": {"name": "x".repeat(4096)}}});
    // Declared: refused before authentication, without reading the body.
    let request = mcp_post(None)
        .header("content-length", big.to_string().len())
        .body(Body::from(big.to_string()))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.json()["error"], "request_too_large");
    // Streamed without a length: counted as it is read.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
        .to_string()
        .into_bytes()
        .chunks(512)
        .map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk)))
        .collect();
    let request = mcp_post(Some(&mint(&good_claims())))
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(!reply.body.contains("welcome"));
}

#[tokio::test]
async fn a_request_that_stalls_gets_408_but_event_streams_stay_open() {
    let app = limited_app(&["--request-timeout", "1s"]);
    // A body that never finishes: the handler waits for it until the timeout answers.
    let first: Result<bytes::Bytes, std::io::Error> =
        Ok(bytes::Bytes::from_static(b"{\"jsonrpc\""));
    let stalled = futures::stream::iter([first]).chain(futures::stream::pending());
    let request = mcp_post(Some(&mint(&good_claims())))
        .body(Body::from_stream(stalled))
        .unwrap();
    let started = Instant::now();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, 408, "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(15));

    // A stateful session's GET event stream outlives the timeout.
    let app = crate::util::app(
        &[
            "--sk-env-url",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--request-timeout",
            "1s",
        ],
        keys("jwks-all.json"),
    );
    let token = mint(&good_claims());
    let init = post(&app, Some(&token), &initialize()).await;
    let session = init.header("mcp-session-id").expect("a session").to_owned();
    let notify = mcp_post(Some(&token))
        .header("mcp-session-id", &session)
        .body(Body::from(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        ))
        .unwrap();
    assert_eq!(send(&app, notify).await.status, 202);
    let get = http::Request::get("/")
        .header("host", "localhost:3002")
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .header("mcp-session-id", &session)
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.clone(), get).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body().into_data_stream();
    let open_for = tokio::time::timeout(Duration::from_millis(2500), async {
        while let Some(frame) = body.next().await {
            frame.unwrap();
        }
    })
    .await;
    assert!(open_for.is_err(), "the event stream ended within 2.5 s");
}

// The same limits on the real binary, where hyper and the listener are in play.

/// Sends raw bytes on a fresh connection and returns whatever comes back before it closes.
fn raw_exchange(port: u16, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// The real binary, stateless, with three connection slots (and `extra` flags).
fn three_slot_server(jwks: &JwksServer, extra: &[&str]) -> Server {
    let url = jwks.url();
    let mut args = vec![
        "--sk-env-url",
        &url,
        "--audience",
        AUDIENCE,
        "--stateless",
        "--max-connections",
        "3",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Waits until a new connection is served again, and checks nothing panicked meanwhile.
fn serves_again(server: &Server) {
    server.wait_until(|| {
        server
            .get_blocking("/health")
            .is_some_and(|(status, _)| status == 200)
    });
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[test]
fn the_binary_answers_limits_and_keeps_serving() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = three_slot_server(&jwks, &[]);
    // A megabyte of headers: hyper's buffer limit answers (431) before our code sees it.
    let huge = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        "A".repeat(1024 * 1024)
    );
    let response = raw_exchange(server.port, huge.as_bytes());
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "{response:.200}"
    );
    // 64 KiB: under hyper's limit, so ours answers.
    let big = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "A".repeat(64 * 1024)
    );
    let response = raw_exchange(server.port, big.as_bytes());
    assert!(response.starts_with("HTTP/1.1 431"), "{response:.200}");

    // Hold every connection slot with idle keep-alive connections: the next one is shed.
    let connect = || std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut held: Vec<std::net::TcpStream> = (0..3).map(|_| connect()).collect();
    // The server accepts the held connections asynchronously, and the two above close
    // asynchronously: a held connection can be shed while they still hold their slots, leaving a
    // slot free later. So poll, generously for a busy machine, and whenever a probe finds a free
    // slot, hold one more connection, until the probe itself is shed.
    let mut response = String::new();
    server.wait_until(|| {
        response = raw_exchange(
            server.port,
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        if response.starts_with("HTTP/1.1 503") {
            return true;
        }
        held.push(connect());
        false
    });
    assert!(response.contains("retry-after: 1"), "{response}");
    drop(held);
    serves_again(&server);
}

/// Reads until the server closes the connection; `None` if it is still open after 30 s.
fn read_until_closed(stream: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => Some(String::from_utf8_lossy(&response).into_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&response).into_owned())
        }
        Err(_) => None,
    }
}

#[test]
fn idle_and_stalled_connections_are_closed_and_free_their_slots() {
    use std::io::Write;
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = three_slot_server(&jwks, &["--idle-timeout", "1s"]);
    let connect = || std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    // Every slot taken: one connection sends nothing, one stops halfway through a request head,
    // one is kept alive after its request.
    let mut silent = connect();
    let mut stalled = connect();
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
        .unwrap();
    let mut kept_alive = connect();
    kept_alive
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();

    assert_eq!(
        read_until_closed(&mut silent).as_deref(),
        Some(""),
        "a silent connection stayed open"
    );
    assert_eq!(
        read_until_closed(&mut stalled).as_deref(),
        Some(""),
        "a stalled request head kept its connection open"
    );
    let answered =
        read_until_closed(&mut kept_alive).expect("an idle keep-alive connection stayed open");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");

    // Their slots are free again.
    serves_again(&server);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_slower_than_the_client_timeout_is_abandoned_and_cached_keys_serve() {
    let jwks = JwksServer::start(&fixture_text("jwks-a.json"));
    let server = Server::start(&[
        "--sk-env-url",
        &jwks.url(),
        "--audience",
        AUDIENCE,
        "--stateless",
        "--jwks-cooldown",
        "1s",
    ]);
    server.wait_until(|| {
        server
            .get_blocking("/ready")
            .is_some_and(|(status, _)| status == 200)
    });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    jwks.set_delay(Duration::from_secs(30));
    let mut claims = good_claims();
    claims["iss"] = json!(jwks.url());
    let url = server.url("/");

    // An unknown kid starts a refetch that the 5 s client timeout abandons.
    let unknown = tokio::spawn({
        let (url, token) = (url.clone(), mint_with(&claims, "a", Some("rotated")));
        async move {
            let started = Instant::now();
            let status = http_post(&url, Some(&token), &call_greet("x")).await.status;
            (status, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile known kids are served at once from the cached keys.
    let started = Instant::now();
    let reply = http_post(&url, Some(&mint(&claims)), &call_greet("x")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Not held behind the refetch: answered before the 5 s timeout could have freed it.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    let (status, took) = unknown.await.unwrap();
    assert_eq!(status, 401);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(20),
        "bounded by the 5 s timeout: {took:?}"
    );
    assert_eq!(
        server.get_blocking("/ready").unwrap().0,
        200,
        "old keys kept"
    );
}

/// Opens a stateful session as `token` on the in-process app; returns its id.
async fn open_session(app: &axum::Router, token: &str) -> String {
    let init = post(app, Some(token), &initialize()).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let session = init.header("mcp-session-id").unwrap().to_owned();
    let notify = mcp_post(Some(token))
        .header("mcp-session-id", &session)
        .body(Body::from(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        ))
        .unwrap();
    assert_eq!(send(app, notify).await.status, 202);
    session
}

async fn call_in_session(app: &axum::Router, token: &str, session: &str, name: &str) -> Reply {
    let call = mcp_post(Some(token))
        .header("mcp-session-id", session)
        .body(Body::from(call_greet(name).to_string()))
        .unwrap();
    send(app, call).await
}

#[tokio::test]
async fn a_session_belongs_to_the_caller_who_opened_it() {
    let app = crate::util::app(
        &["--sk-env-url", ISSUER, "--audience", AUDIENCE],
        keys("jwks-all.json"),
    );
    let alice = mint(&good_claims());
    let session = open_session(&app, &alice).await;
    let mut claims = good_claims();
    claims["sub"] = json!("usr_mallory");
    let mallory = mint(&claims);

    // Another valid caller who knows the id is told the session does not exist.
    let reply = call_in_session(&app, &mallory, &session, "mallory").await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.body, "Not Found: Session not found");
    let unknown = call_in_session(&app, &mallory, "no-such-session", "x").await;
    assert_eq!((unknown.status, unknown.body), (404, reply.body));
    let delete = http::Request::delete("/")
        .header("host", "localhost:3002")
        .header("authorization", format!("Bearer {mallory}"))
        .header("mcp-session-id", &session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, delete).await.status, 404, "nor close it");

    // The owner carries on, with a new token for the same subject too.
    let reply = call_in_session(&app, &alice, &session, "alice").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(tool_text(&reply.rpc()), "Hi alice, welcome to Scalekit!");
    let mut renewed = good_claims();
    renewed["jti"] = json!("renewed");
    let reply = call_in_session(&app, &mint(&renewed), &session, "again").await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Closed by its owner, it is gone for everyone.
    let delete = http::Request::delete("/")
        .header("host", "localhost:3002")
        .header("authorization", format!("Bearer {alice}"))
        .header("mcp-session-id", &session)
        .body(Body::empty())
        .unwrap();
    assert!(send(&app, delete).await.status < 300);
    let reply = call_in_session(&app, &alice, &session, "after").await;
    assert_eq!(reply.status, 404);
}
