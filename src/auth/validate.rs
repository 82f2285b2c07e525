//! The rules a bearer token must pass, as pure functions of the token, the policy, the keys and
//! the clock.
//!
//! [`evaluate`] runs every check in one fixed order — structure, algorithm, key, signature, expiry,
//! not-before, issued-at, issuer, audience, scope — and records an outcome for each. `serve` calls
//! [`validate`], which stops at the first failure; `check-token` asks for the full report. Because
//! both go through `evaluate`, the verdict and its reason are the same for any token.
//!
//! Signature comes before the claims so a forged token is reported as forged, not as "expired";
//! scope comes last so an expired token is a 401 (get a new token) rather than a 403 (step up).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::keys::{KeySet, VerificationKey};
use super::time::{iso8601, relative};

/// Tokens longer than this are refused before any decoding: real access tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a token is checked against.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// Accepted `iss` values, compared exactly. Empty: the issuer check is skipped (check-token only).
    pub issuers: Vec<String>,
    /// Accepted `aud` values, compared exactly. Empty: the audience check is skipped (check-token only).
    pub audiences: Vec<String>,
    /// Allowed signature algorithms; always asymmetric.
    pub algorithms: Vec<Algorithm>,
    /// Scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// Organizations (`org_id`, else `oid`) whose tokens are accepted. Empty: any, and the check
    /// is not made.
    pub allowed_orgs: Vec<String>,
}

/// The algorithms an operator may allow: asymmetric only, so a public key can never act as an
/// HMAC secret (algorithm confusion).
pub const ASYMMETRIC_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A JWT split into its parts, header and claims decoded but nothing verified yet.
#[derive(Debug)]
pub struct DecodedToken<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

/// Which of the three compact-serialization segments a structural problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Header,
    Payload,
    Signature,
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// Why a string is not a JWT at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the token is empty")]
    Empty,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the token has 5 segments: it looks like an encrypted JWE, not a signed JWT")]
    LooksLikeJwe,
    #[error("a JWT has 3 dot-separated segments, this token has {0}")]
    SegmentCount(usize),
    #[error("the {0} segment is not valid base64url (unpadded, URL-safe alphabet)")]
    Base64(Segment),
    #[error("the {0} segment is not a JSON object")]
    NotJsonObject(Segment),
    #[error("the signature segment is empty")]
    EmptySignature,
}

/// Why a token was refused. The messages become `error_description` and never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
///
/// Variants with fields carry the values their message names (times as ISO 8601 with a relative
/// form such as `3h ago`, lists joined with `, `).
#[allow(missing_docs)] // the fields: see the message of each variant
pub enum Rejection {
    /// Not a compact JWT (structure, base64url, JSON, size).
    #[error("malformed token: {0}")]
    Malformed(Malformed),
    /// The header's `alg` is not an allowed algorithm.
    #[error("algorithm {alg} is not allowed (allowed: {allowed})")]
    Algorithm { alg: String, allowed: String },
    /// The header has a `crit` parameter (RFC 7515 §4.1.11).
    #[error("the token header marks extensions {0} as critical, and none is supported")]
    CriticalHeader(String),
    /// No `kid`, and more than one key it could be.
    #[error("the token has no kid and the key set holds {0} keys: cannot choose one")]
    MissingKid(usize),
    /// The `kid` names no key of the set (a refetch is tried first, within the cooldown).
    #[error("no signing key with kid {0} in the key set")]
    UnknownKey(String),
    /// The key named cannot verify this algorithm.
    #[error("key {kid} cannot verify {alg} signatures")]
    KeyMismatch { kid: String, alg: String },
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// A required claim (`exp`) is absent.
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type.
    #[error("the {claim} claim is not {expected}")]
    ClaimType {
        claim: &'static str,
        expected: &'static str,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("token expired at {at} ({ago})")]
    Expired { at: String, ago: String },
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid before {at} ({from_now})")]
    NotYetValid { at: String, from_now: String },
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future, at {at} ({from_now})")]
    IssuedInFuture { at: String, from_now: String },
    /// `iss` is not an accepted issuer.
    #[error("issuer {got} is not accepted (accepted: {accepted})")]
    Issuer { got: String, accepted: String },
    /// No `aud` value is an accepted audience.
    #[error("audience {got} does not include an accepted audience (accepted: {accepted})")]
    Audience { got: String, accepted: String },
    /// The token's organization is not an allowed one (or it names none).
    #[error("organization {got} is not allowed (allowed: {allowed})")]
    Organization { got: String, allowed: String },
    /// A tool the token was checked for (`check-token --tool`) needs scopes it lacks (403).
    #[error("tool {tool} needs scope {needs}; the token lacks {missing}")]
    ToolScope {
        tool: String,
        needs: String,
        missing: String,
    },
    /// Required scopes are missing (403 rather than 401).
    #[error("missing required scope: {}", .missing.join(" "))]
    InsufficientScope { missing: Vec<String> },
}

impl From<Malformed> for Rejection {
    fn from(malformed: Malformed) -> Self {
        Rejection::Malformed(malformed)
    }
}

/// The checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckName {
    /// Three base64url segments, JSON header and payload, at most 16 KiB.
    Structure,
    /// An allowed, asymmetric `alg`; no `crit`.
    Algorithm,
    /// The key `kid` names, of a type that fits the algorithm.
    Key,
    /// The signature.
    Signature,
    /// `exp` present and not passed.
    Expiry,
    /// `nbf` not in the future.
    NotBefore,
    /// `iat` not in the future.
    IssuedAt,
    /// `iss` accepted.
    Issuer,
    /// `aud` contains an accepted audience.
    Audience,
    /// `org_id` (or `oid`) an allowed organization; only made when organizations are listed.
    Organization,
    /// The required scopes.
    Scope,
    /// The scopes a tool needs (`check-token --tool`; never made by `serve` on the token alone).
    Tool,
}

impl CheckName {
    /// The name `check-token` prints (`structure`, `not-before`…).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Structure => "structure",
            CheckName::Algorithm => "algorithm",
            CheckName::Key => "key",
            CheckName::Signature => "signature",
            CheckName::Expiry => "expiry",
            CheckName::NotBefore => "not-before",
            CheckName::IssuedAt => "issued-at",
            CheckName::Issuer => "issuer",
            CheckName::Audience => "audience",
            CheckName::Organization => "organization",
            CheckName::Scope => "scope",
            CheckName::Tool => "tool",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed; what was found.
    Pass(String),
    /// Failed; why.
    Fail(Rejection),
    /// Not performed (no keys given, nothing configured to compare with); why.
    Skip(String),
}

/// Every check's outcome, in order.
#[derive(Debug, Default)]
pub struct Report {
    /// Each check performed, in order.
    pub checks: Vec<(CheckName, Outcome)>,
}

impl Report {
    /// The first failure, which is the verdict `serve` gives.
    pub fn first_failure(&self) -> Option<&Rejection> {
        self.checks.iter().find_map(|(_, outcome)| match outcome {
            Outcome::Fail(rejection) => Some(rejection),
            _ => None,
        })
    }

    fn record(&mut self, name: CheckName, outcome: Outcome) {
        self.checks.push((name, outcome));
    }

    fn failed(&self) -> bool {
        self.first_failure().is_some()
    }
}

/// Whether [`evaluate`] stops at the first failure (serve) or runs every check (check-token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    FailFast,
    Explain,
}

/// Splits and decodes a compact JWT without verifying anything.
pub fn decode(token: &str) -> Result<DecodedToken<'_>, Malformed> {
    if token.is_empty() {
        return Err(Malformed::Empty);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Malformed::TooLong);
    }
    let segments = token.split('.').count();
    match segments {
        3 => {}
        5 => return Err(Malformed::LooksLikeJwe),
        n => return Err(Malformed::SegmentCount(n)),
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Malformed::SegmentCount(1))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(Malformed::SegmentCount(2))?;
    let header = decode_json_segment(header, Segment::Header)?;
    let claims = decode_json_segment(payload, Segment::Payload)?;
    // An unsecured JWT (`alg: none`, RFC 7519 §6) has an empty signature by definition: let it
    // through to the algorithm check, which refuses it by name. Any other empty signature is a
    // truncated token. `none` is matched in any casing (`None`, `NONE`) so each is named too.
    let unsecured = header
        .get("alg")
        .and_then(Value::as_str)
        .is_some_and(|alg| alg.eq_ignore_ascii_case("none"));
    if signature.is_empty() && !unsecured {
        return Err(Malformed::EmptySignature);
    }
    if !signature.is_empty() && URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Err(Malformed::Base64(Segment::Signature));
    }
    Ok(DecodedToken {
        header,
        claims,
        signing_input,
        signature,
    })
}

fn decode_json_segment(segment: &str, which: Segment) -> Result<Map<String, Value>, Malformed> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Malformed::Base64(which))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Malformed::NotJsonObject(which)),
    }
}

/// Runs the checks on a raw token string: the entry point for both commands.
///
/// `keys` is `None` only in `check-token` without `--jwks`: the signature check is then skipped.
pub fn evaluate<'t>(
    token: &'t str,
    policy: &TokenPolicy,
    keys: Option<&KeySet>,
    now: i64,
    mode: Mode,
) -> (Report, Option<DecodedToken<'t>>) {
    let mut report = Report::default();
    let decoded = match decode(token) {
        Ok(decoded) => decoded,
        Err(malformed) => {
            report.record(CheckName::Structure, Outcome::Fail(malformed.into()));
            return (report, None);
        }
    };
    report.record(
        CheckName::Structure,
        Outcome::Pass("three segments, JSON header and payload".into()),
    );
    let stop = |report: &Report| mode == Mode::FailFast && report.failed();

    let algorithm = check_algorithm(&decoded.header, policy);
    let alg = algorithm.as_ref().ok().copied();
    report.record(
        CheckName::Algorithm,
        outcome(algorithm.map(|alg| format!("{alg:?} is allowed"))),
    );
    if stop(&report) {
        return (report, Some(decoded));
    }

    match (keys, alg) {
        (None, _) => {
            report.record(
                CheckName::Key,
                Outcome::Skip("no key set given (--jwks FILE)".into()),
            );
            report.record(
                CheckName::Signature,
                Outcome::Skip("no key set given (--jwks FILE)".into()),
            );
        }
        (Some(_), None) => {
            report.record(
                CheckName::Key,
                Outcome::Skip("algorithm not allowed".into()),
            );
            report.record(
                CheckName::Signature,
                Outcome::Skip("algorithm not allowed".into()),
            );
        }
        (Some(keys), Some(alg)) => match select_key(&decoded.header, keys, alg) {
            Ok(key) => {
                let label = key.kid.clone().unwrap_or_else(|| "the only key".into());
                report.record(CheckName::Key, Outcome::Pass(label));
                let signature = check_signature(&decoded, key, alg);
                report.record(
                    CheckName::Signature,
                    outcome(signature.map(|()| "verified".into())),
                );
            }
            Err(rejection) => {
                report.record(CheckName::Key, Outcome::Fail(rejection));
                report.record(
                    CheckName::Signature,
                    Outcome::Skip("no key to verify with".into()),
                );
            }
        },
    }
    if stop(&report) {
        return (report, Some(decoded));
    }

    let claims = &decoded.claims;
    let leeway = i64::try_from(policy.leeway).unwrap_or(i64::MAX);
    let time_checks: [(CheckName, TimeCheck); 3] = [
        (CheckName::Expiry, check_expiry),
        (CheckName::NotBefore, check_not_before),
        (CheckName::IssuedAt, check_issued_at),
    ];
    for (name, check) in time_checks {
        report.record(name, outcome(check(claims, now, leeway)));
        if stop(&report) {
            return (report, Some(decoded));
        }
    }

    report.record(
        CheckName::Issuer,
        optional(
            check_issuer(claims, &policy.issuers),
            "no issuer expected (--issuer, or SK_ENV_URL / PROTECTED_RESOURCE_METADATA)",
        ),
    );
    if stop(&report) {
        return (report, Some(decoded));
    }
    report.record(
        CheckName::Audience,
        optional(
            check_audience(claims, &policy.audiences),
            "no audience expected (--audience, or EXPECTED_AUDIENCE / PROTECTED_RESOURCE_METADATA)",
        ),
    );
    if stop(&report) {
        return (report, Some(decoded));
    }
    // Recorded only when organizations are listed, so that a server without an allow-list
    // reports exactly the checks it makes.
    if !policy.allowed_orgs.is_empty() {
        report.record(
            CheckName::Organization,
            outcome(check_organization(claims, &policy.allowed_orgs)),
        );
        if stop(&report) {
            return (report, Some(decoded));
        }
    }
    report.record(
        CheckName::Scope,
        check_scopes(claims, &policy.required_scopes),
    );
    (report, Some(decoded))
}

/// The token's organization (`org_id`, else `oid`) must be one of `allowed`.
fn check_organization(
    claims: &Map<String, Value>,
    allowed: &[String],
) -> Result<String, Rejection> {
    let org = ["org_id", "oid"]
        .iter()
        .find_map(|name| claims.get(*name).and_then(Value::as_str));
    match org {
        Some(org) if allowed.iter().any(|allowed| allowed == org) => {
            Ok(format!("{org} is allowed"))
        }
        got => Err(Rejection::Organization {
            got: got.map_or_else(
                || "(none: the token has no org_id or oid claim)".to_owned(),
                str::to_owned,
            ),
            allowed: allowed.join(", "),
        }),
    }
}

/// A check on one time claim: `(claims, now, leeway)` to a pass detail or a rejection.
type TimeCheck = fn(&Map<String, Value>, i64, i64) -> Result<String, Rejection>;

fn outcome(result: Result<String, Rejection>) -> Outcome {
    match result {
        Ok(detail) => Outcome::Pass(detail),
        Err(rejection) => Outcome::Fail(rejection),
    }
}

/// Like [`outcome`], for checks that are skipped when nothing is expected (`Ok(None)`).
fn optional(result: Result<Option<String>, Rejection>, skipped: &str) -> Outcome {
    match result {
        Ok(Some(detail)) => Outcome::Pass(detail),
        Ok(None) => Outcome::Skip(skipped.into()),
        Err(rejection) => Outcome::Fail(rejection),
    }
}

/// Validates a token for `serve`: the first failing check, or the caller's identity.
pub fn validate(
    token: &str,
    policy: &TokenPolicy,
    keys: &KeySet,
    now: i64,
) -> Result<Caller, Rejection> {
    let (report, decoded) = evaluate(token, policy, Some(keys), now, Mode::FailFast);
    if let Some(rejection) = report.first_failure() {
        return Err(rejection.clone());
    }
    let decoded = decoded.ok_or(Rejection::Malformed(Malformed::Empty))?;
    Ok(Caller::from_claims(decoded.claims))
}

fn check_algorithm(
    header: &Map<String, Value>,
    policy: &TokenPolicy,
) -> Result<Algorithm, Rejection> {
    let allowed = || {
        policy
            .algorithms
            .iter()
            .map(|alg| format!("{alg:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = match header.get("alg") {
        Some(Value::String(name)) => name.as_str(),
        Some(_) | None => {
            return Err(Rejection::Algorithm {
                alg: "(missing)".into(),
                allowed: allowed(),
            });
        }
    };
    // Parse exactly: `none`, `None`, `HS256` and anything unknown all fall through to the refusal.
    let alg = name
        .parse::<Algorithm>()
        .ok()
        .filter(|alg| policy.algorithms.contains(alg) && ASYMMETRIC_ALGORITHMS.contains(alg));
    let Some(alg) = alg else {
        return Err(Rejection::Algorithm {
            alg: printable(name),
            allowed: allowed(),
        });
    };
    // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` lists an extension it does not
    // understand. This server understands none.
    if let Some(critical) = header.get("crit") {
        return Err(Rejection::CriticalHeader(printable(&critical.to_string())));
    }
    Ok(alg)
}

fn select_key<'k>(
    header: &Map<String, Value>,
    keys: &'k KeySet,
    alg: Algorithm,
) -> Result<&'k VerificationKey, Rejection> {
    let key = match header.get("kid") {
        Some(Value::String(kid)) => keys
            .find(kid)
            .or_else(|| sole_unnamed_key(keys))
            .ok_or_else(|| Rejection::UnknownKey(printable(kid)))?,
        Some(_) => return Err(Rejection::UnknownKey("(not a string)".into())),
        None if keys.len() == 1 => keys.iter().next().ok_or(Rejection::MissingKid(0))?,
        None => return Err(Rejection::MissingKid(keys.len())),
    };
    if !key.can_verify(alg) {
        return Err(Rejection::KeyMismatch {
            kid: key
                .kid
                .as_deref()
                .map_or_else(|| "(no kid)".into(), printable),
            alg: format!("{alg:?}"),
        });
    }
    Ok(key)
}

/// A set of exactly one key without a `kid` (a PEM file, a minimal JWKS) has nothing to match a
/// token's `kid` against: that key is the key for every token, and the signature decides.
fn sole_unnamed_key(keys: &KeySet) -> Option<&VerificationKey> {
    let mut iter = keys.iter();
    match (iter.next(), iter.next()) {
        (Some(key), None) if key.kid.is_none() => Some(key),
        _ => None,
    }
}

fn check_signature(
    decoded: &DecodedToken<'_>,
    key: &VerificationKey,
    alg: Algorithm,
) -> Result<(), Rejection> {
    match jsonwebtoken::crypto::verify(
        decoded.signature,
        decoded.signing_input.as_bytes(),
        &key.key,
        alg,
    ) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(Rejection::Signature),
    }
}

/// A NumericDate claim (RFC 7519 §2): a JSON number; fractional seconds are truncated. A number
/// outside the 64-bit range (`1e300`, `2^64`) is refused rather than saturated: saturating would
/// turn it into a token that never expires.
pub fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<i64>, Rejection> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.is_finite() && (I64_LOW..I64_HIGH).contains(f))
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or(Rejection::ClaimType {
                claim,
                expected: "a NumericDate (seconds since the epoch)",
            }),
        Some(_) => Err(Rejection::ClaimType {
            claim,
            expected: "a NumericDate (seconds since the epoch)",
        }),
    }
}

/// The `f64`s that convert to `i64` without saturating: [-2^63, 2^63).
const I64_LOW: f64 = -9_223_372_036_854_775_808.0;
const I64_HIGH: f64 = 9_223_372_036_854_775_808.0;

fn check_expiry(claims: &Map<String, Value>, now: i64, leeway: i64) -> Result<String, Rejection> {
    let exp = numeric_date(claims, "exp")?.ok_or(Rejection::MissingClaim("exp"))?;
    if now > exp.saturating_add(leeway) {
        return Err(Rejection::Expired {
            at: iso8601(exp),
            ago: relative(exp, now),
        });
    }
    Ok(format!("expires {} ({})", iso8601(exp), relative(exp, now)))
}

fn check_not_before(
    claims: &Map<String, Value>,
    now: i64,
    leeway: i64,
) -> Result<String, Rejection> {
    match numeric_date(claims, "nbf")? {
        None => Ok("no nbf claim".into()),
        Some(nbf) if nbf > now.saturating_add(leeway) => Err(Rejection::NotYetValid {
            at: iso8601(nbf),
            from_now: relative(nbf, now),
        }),
        Some(nbf) => Ok(format!("valid since {}", iso8601(nbf))),
    }
}

fn check_issued_at(
    claims: &Map<String, Value>,
    now: i64,
    leeway: i64,
) -> Result<String, Rejection> {
    match numeric_date(claims, "iat")? {
        None => Ok("no iat claim".into()),
        Some(iat) if iat > now.saturating_add(leeway) => Err(Rejection::IssuedInFuture {
            at: iso8601(iat),
            from_now: relative(iat, now),
        }),
        Some(iat) => Ok(format!("issued {} ({})", iso8601(iat), relative(iat, now))),
    }
}

fn check_issuer(
    claims: &Map<String, Value>,
    accepted: &[String],
) -> Result<Option<String>, Rejection> {
    if accepted.is_empty() {
        return Ok(None);
    }
    let issuer = match claims.get("iss") {
        None => return Err(Rejection::MissingClaim("iss")),
        Some(Value::String(issuer)) => issuer,
        Some(_) => {
            return Err(Rejection::ClaimType {
                claim: "iss",
                expected: "a string",
            });
        }
    };
    if accepted.iter().any(|candidate| candidate == issuer) {
        Ok(Some(format!("{issuer} is accepted")))
    } else {
        Err(Rejection::Issuer {
            got: printable(issuer),
            accepted: accepted.join(", "),
        })
    }
}

fn check_audience(
    claims: &Map<String, Value>,
    accepted: &[String],
) -> Result<Option<String>, Rejection> {
    if accepted.is_empty() {
        return Ok(None);
    }
    let audiences = string_or_array(claims, "aud")?.ok_or(Rejection::MissingClaim("aud"))?;
    match audiences
        .iter()
        .find(|aud| accepted.iter().any(|ok| ok == *aud))
    {
        Some(matched) => Ok(Some(format!("{matched} is accepted"))),
        None => Err(Rejection::Audience {
            got: if audiences.is_empty() {
                "(empty)".into()
            } else {
                printable(&audiences.join(", "))
            },
            accepted: accepted.join(", "),
        }),
    }
}

fn check_scopes(claims: &Map<String, Value>, required: &[String]) -> Outcome {
    if required.is_empty() {
        return Outcome::Skip("no scope required".into());
    }
    let granted = scopes(claims);
    let missing: Vec<String> = required
        .iter()
        .filter(|scope| !granted.contains(scope))
        .cloned()
        .collect();
    if missing.is_empty() {
        Outcome::Pass(format!("has {}", required.join(" ")))
    } else {
        Outcome::Fail(Rejection::InsufficientScope { missing })
    }
}

/// A claim that may be one string or an array of strings (`aud`, RFC 7519 §4.1.3).
fn string_or_array(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<Vec<String>>, Rejection> {
    let invalid = Rejection::ClaimType {
        claim,
        expected: "a string or an array of strings",
    };
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::String(one)) => Ok(Some(vec![one.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(invalid.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid),
    }
}

/// The granted scopes, from `scope` (space-separated, RFC 8693 / RFC 9068), `scp` and `scopes`
/// (arrays, or space-separated strings): servers differ, Scalekit uses `scope` and `scopes`.
pub fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut granted: Vec<String> = Vec::new();
    for claim in ["scope", "scp", "scopes"] {
        let values: Vec<&str> = match claims.get(claim) {
            Some(Value::String(list)) => list.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        for value in values {
            if !granted.iter().any(|known| known == value) {
                granted.push(value.to_owned());
            }
        }
    }
    granted
}

/// Attacker-controlled text made safe to put in a message and a header: printable ASCII only,
/// no quotes or backslashes, at most 80 characters.
fn printable(text: &str) -> String {
    let mut safe: String = text
        .chars()
        .take(80)
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect();
    if text.chars().count() > 80 {
        safe.push_str("...");
    }
    safe
}

/// The caller a valid token identifies, handed to tool handlers through the request extensions.
/// `Default` is a caller without claims (for building one in tests).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Caller {
    /// `sub`: the user (for machine tokens, the client).
    pub sub: Option<String>,
    /// `client_id` (else `azp`): the OAuth client the token was issued to.
    pub client_id: Option<String>,
    /// From `org_id`, or `oid` where a server uses that name.
    pub org_id: Option<String>,
    /// From `scope` (space-separated), `scp` or `scopes`.
    pub scopes: Vec<String>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `aud`, a string or an array.
    pub audiences: Vec<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: Option<i64>,
    /// Every claim of the token, for anything else.
    #[serde(skip)]
    pub claims: Map<String, Value>,
}

impl Caller {
    /// The caller a validated token's claims describe.
    pub fn from_claims(claims: Map<String, Value>) -> Self {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        Caller {
            sub: text("sub"),
            client_id: text("client_id").or_else(|| text("azp")),
            org_id: text("org_id").or_else(|| text("oid")),
            scopes: scopes(&claims),
            issuer: text("iss"),
            audiences: string_or_array(&claims, "aud")
                .ok()
                .flatten()
                .unwrap_or_default(),
            expires_at: numeric_date(&claims, "exp").ok().flatten(),
            claims,
        }
    }

    /// Who this is, across tokens: the issuer, and the subject (else the client id). Two callers
    /// with one principal are one user, or one machine client, whichever token each came with.
    pub(crate) fn principal(&self) -> (&str, &str) {
        let subject = self.sub.as_deref().or(self.client_id.as_deref());
        (
            self.issuer.as_deref().unwrap_or_default(),
            subject.unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_767_225_600;

    fn segment(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    fn rs256(claims: &Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!(
            "../../tests/fixtures/rsa-a.pem"
        ))
        .unwrap();
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some("key-a".into());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuers: vec!["https://acme.example".into()],
            audiences: vec!["res_1".into()],
            algorithms: vec![Algorithm::RS256],
            required_scopes: vec!["mcp:tools".into()],
            leeway: 30,
            allowed_orgs: vec![],
        }
    }

    fn keys() -> KeySet {
        KeySet::from_jwks_json(include_bytes!("../../tests/fixtures/jwks-a.json")).unwrap()
    }

    #[test]
    fn alg_none_is_refused_by_name_not_as_malformed() {
        let token = format!(
            "{}.{}.",
            segment(&json!({"alg": "none"})),
            segment(&json!({}))
        );
        let verdict = validate(&token, &policy(), &keys(), NOW).unwrap_err();
        assert!(matches!(verdict, Rejection::Algorithm { ref alg, .. } if alg == "none"));
    }

    #[test]
    fn out_of_range_dates_are_refused_not_saturated() {
        for exp in [
            json!(1e300),
            json!(18_446_744_073_709_551_615_u64),
            json!(9.3e18),
        ] {
            let token = rs256(
                &json!({"iss": "https://acme.example", "aud": "res_1", "exp": exp, "scope": "mcp:tools"}),
            );
            let verdict = validate(&token, &policy(), &keys(), NOW).unwrap_err();
            assert!(
                matches!(verdict, Rejection::ClaimType { claim: "exp", .. }),
                "{exp}: {verdict}"
            );
        }
        let token = rs256(
            &json!({"iss": "https://acme.example", "aud": "res_1", "exp": (NOW + 60) as f64 + 0.5, "scope": "mcp:tools"}),
        );
        assert!(
            validate(&token, &policy(), &keys(), NOW).is_ok(),
            "fractional seconds are fine"
        );
    }

    #[test]
    fn an_empty_signature_is_malformed_for_real_algorithms() {
        let token = format!(
            "{}.{}.",
            segment(&json!({"alg": "RS256"})),
            segment(&json!({}))
        );
        let verdict = validate(&token, &policy(), &keys(), NOW).unwrap_err();
        assert_eq!(verdict, Rejection::Malformed(Malformed::EmptySignature));
    }

    #[test]
    fn explain_reports_every_check_and_agrees_with_fail_fast() {
        let token = rs256(&json!({
            "iss": "https://other.example", "aud": "res_2", "exp": NOW - 3600, "scope": "x"
        }));
        let (report, decoded) = evaluate(&token, &policy(), Some(&keys()), NOW, Mode::Explain);
        assert!(decoded.is_some());
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|(_, outcome)| matches!(outcome, Outcome::Fail(_)))
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(failed, ["expiry", "issuer", "audience", "scope"]);
        assert_eq!(report.checks.len(), 10);
        let verdict = validate(&token, &policy(), &keys(), NOW).unwrap_err();
        assert_eq!(report.first_failure(), Some(&verdict));
    }

    #[test]
    fn skips_say_what_to_pass() {
        let mut open = policy();
        open.issuers.clear();
        open.audiences.clear();
        let token = rs256(&json!({"exp": NOW + 60, "scope": "mcp:tools"}));
        let (report, _) = evaluate(&token, &open, None, NOW, Mode::Explain);
        let skipped: Vec<String> = report
            .checks
            .iter()
            .filter_map(|(name, outcome)| match outcome {
                Outcome::Skip(why) => Some(format!("{}: {why}", name.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped[1].starts_with("signature: no key set given (--jwks FILE)"));
        assert!(skipped[2].contains("--issuer"));
        assert!(skipped[3].contains("EXPECTED_AUDIENCE"));
    }
}
