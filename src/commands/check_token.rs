//! `scalekit-mcp check-token`: explains an access token offline — what to reach for when a
//! server answers 401 and you need to know why.
//!
//! It runs the very checks `serve` runs ([`validate::evaluate`], in `Explain` mode so that every
//! check reports instead of stopping at the first failure), against the issuers and audiences
//! `serve` would accept: the flags here, else serve's own settings from the environment or `.env`
//! (resolved by the functions `serve` uses, in `config`). It never opens a network connection:
//! the signature is checked only against a key file given with `--jwks`.
//!
//! Exit codes: 0 every check performed passed, 1 a check failed, 2 usage errors and input that is
//! not a JWT. The raw token and its signature are never printed.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::challenge::{AuthFailure, ChallengeParams};
use crate::auth::keys::KeySet;
use crate::auth::time::{self, iso8601, relative};
use crate::auth::tool_scopes::ToolScopes;
use crate::auth::validate::{
    self, CheckName, Malformed, Mode, Outcome, Rejection, Report, numeric_date,
};
use crate::client::home::{Home, canonical_server_url};
use crate::client::vault::{Storage, Vault, account};
use crate::config::{self, PolicyArgs};
use crate::error::ExitError;
use crate::logging;

/// stdin is read up to this many bytes; a token is refused beyond 16 KiB anyway.
const MAX_STDIN_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub struct CheckTokenArgs {
    /// The access token. Without it, or with `-`, it is read from stdin (prefer that: an argument
    /// stays in your shell history). A leading `Bearer ` is ignored.
    #[arg(value_name = "TOKEN")]
    pub token: Option<String>,

    /// Check the access token `login` stored for this server instead (read as stored: no
    /// refresh, no network).
    #[arg(long, value_name = "SERVER_URL", conflicts_with = "token")]
    pub server: Option<String>,

    /// Verify the signature with these keys: a JWKS (the JSON at {SK_ENV_URL}/keys), a single
    /// JWK or a PEM public key. Keys are matched by `kid` (a lone key without one, such as a PEM,
    /// matches any). Without it, the signature is not checked.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Also check whether the token may call this tool (repeatable), by the --tool-scope
    /// settings serve reads.
    #[arg(long = "tool", value_name = "NAME")]
    pub tools: Vec<String>,

    /// Print one JSON object {header, claims, checks: [{name, status, detail}], valid} instead.
    #[arg(long)]
    pub json: bool,

    /// The clock, in seconds since the Unix epoch. For tests: makes relative times reproducible.
    #[arg(long, hide = true, value_name = "UNIX_SECONDS")]
    pub now: Option<i64>,
}

pub fn run(args: &CheckTokenArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.server {
        Some(server) => stored_token(server)?,
        None => read_token(args.token.as_deref())?,
    };
    let policy = config::offline_policy(&args.policy)?;
    let keys = args.jwks.as_deref().map(load_keys).transpose()?;
    let now = args.now.unwrap_or_else(time::now);

    let tool_scopes = ToolScopes::parse(&args.policy.tool_scopes).map_err(|problems| {
        ExitError::usage(format!(
            "the tool scopes (--tool-scope, or SCALEKIT_MCP_TOOL_SCOPES) are invalid:\n  - {}",
            problems.join("\n  - ")
        ))
    })?;

    let (mut report, decoded) =
        validate::evaluate(&token, &policy, keys.as_ref(), now, Mode::Explain);
    if let Some(decoded) = &decoded {
        let granted = validate::scopes(&decoded.claims);
        for tool in &args.tools {
            report
                .checks
                .push((CheckName::Tool, tool_check(&tool_scopes, tool, &granted)));
        }
    }
    let parts = decoded.as_ref().map(|token| (&token.header, &token.claims));
    let rendered = if args.json {
        render_json(&report, parts)
    } else {
        parts.map_or_else(String::new, |(header, claims)| {
            render_human(&report, header, claims, now, logging::color_on_stdout())
        })
    };
    print(&rendered)?;

    if let Some((_, Outcome::Fail(Rejection::Malformed(malformed)))) = report.checks.first() {
        return Err(ExitError::usage(not_a_jwt(malformed)).into());
    }
    Ok(if report.first_failure().is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether a token with the `granted` scopes may call `tool`.
fn tool_check(tool_scopes: &ToolScopes, tool: &str, granted: &[String]) -> Outcome {
    let needs = tool_scopes.needed_by(tool);
    let missing = tool_scopes.missing(tool, granted);
    match (needs.is_empty(), missing.is_empty()) {
        (true, _) => Outcome::Pass(format!("{tool} needs no scope of its own")),
        (false, true) => Outcome::Pass(format!("{tool}: has {}", needs.join(" "))),
        (false, false) => Outcome::Fail(Rejection::ToolScope {
            tool: tool.to_owned(),
            needs: needs.join(" "),
            missing: missing.join(" "),
        }),
    }
}

/// The access token stored by `login` for `server`, from the keyring or the credentials file.
fn stored_token(server: &str) -> anyhow::Result<String> {
    let home = Home::locate()?;
    let url = canonical_server_url(server)?;
    let not_stored = || {
        ExitError::usage(format!(
            "no token stored for {url}: run scalekit-mcp login {url}"
        ))
    };
    let record = home
        .load()?
        .servers
        .get(&url)
        .cloned()
        .ok_or_else(not_stored)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let token = runtime.block_on(async {
        let vault = Vault::open(Storage::parse(&record.storage), &home).await?;
        vault.get(&account("access-token", &url)).await
    })?;
    Ok(token.ok_or_else(not_stored)?.expose().to_owned())
}

/// Writes command output; a closed pipe (`| head`) is not an error worth a message.
fn print(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

/// The token from the argument or stdin, without `Bearer ` and surrounding whitespace.
fn read_token(argument: Option<&str>) -> Result<String, ExitError> {
    let raw = match argument {
        Some(token) if token != "-" => token.to_owned(),
        Some(_) => read_stdin()?,
        // Waiting on a terminal would look like a hang: say what is expected instead.
        None if std::io::stdin().is_terminal() => {
            return Err(ExitError::usage(
                "no token given: pass it as an argument, or pipe it on stdin \
                 (e.g. `pbpaste | scalekit-mcp check-token`)",
            ));
        }
        None => read_stdin()?,
    };
    Ok(strip_bearer(&raw).to_owned())
}

fn read_stdin() -> Result<String, ExitError> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|err| ExitError::usage(format!("cannot read the token from stdin: {err}")))?;
    String::from_utf8(bytes).map_err(|_| {
        ExitError::usage(
            "stdin is not UTF-8 text: pipe the token itself (header.payload.signature)",
        )
    })
}

/// `Bearer abc` (any case, as copied from an Authorization header) and padding become `abc`.
/// Public for the fuzz target `check_token_input`.
pub fn strip_bearer(raw: &str) -> &str {
    let trimmed = raw.trim();
    match trimmed.split_at_checked(6) {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("bearer") && rest.starts_with(char::is_whitespace) =>
        {
            rest.trim()
        }
        _ => trimmed,
    }
}

/// Loads `--jwks FILE`: PEM when it starts like one, else a JWKS or single JWK.
fn load_keys(path: &Path) -> Result<KeySet, ExitError> {
    let bytes = std::fs::read(path)
        .map_err(|err| ExitError::usage(format!("cannot read --jwks {}: {err}", path.display())))?;
    // A private key would parse as garbage or, worse, be copied around: refuse it by name.
    if bytes
        .windows(16)
        .any(|window| window == b"PRIVATE KEY-----")
    {
        return Err(ExitError::usage(format!(
            "--jwks {} is a private key: give the public key (`openssl pkey -in KEY -pubout`) or the JWKS",
            path.display()
        )));
    }
    let parsed = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        KeySet::from_pem(&bytes)
    } else {
        KeySet::from_jwks_json(&bytes)
    };
    parsed.map_err(|err| {
        ExitError::usage(format!(
            "--jwks {}: {err}; give a JWKS (save {{SK_ENV_URL}}/keys), a single JWK or a PEM public key",
            path.display()
        ))
    })
}

/// The message for input that is not a JWT: what is wrong, then what to do about it.
fn not_a_jwt(malformed: &Malformed) -> String {
    let fix = match malformed {
        Malformed::Empty => "pass the token as an argument or pipe it on stdin",
        Malformed::TooLong => "an access token is a few KiB: check that only the token was pasted",
        Malformed::LooksLikeJwe => {
            "check-token reads signed tokens; configure the authorization server to issue signed \
             (JWS) access tokens"
        }
        Malformed::SegmentCount(_) | Malformed::EmptySignature => {
            "copy the whole token, header.payload.signature: it was probably cut when copied"
        }
        Malformed::Base64(_) => {
            "the token has stray characters or was cut: copy it again, without quotes or line breaks"
        }
        Malformed::NotJsonObject(_) => {
            "this is not a JWT access token (opaque tokens cannot be inspected offline)"
        }
    };
    format!("not a JWT: {malformed}; {fix}")
}

// ----- output -----

#[derive(Serialize)]
struct JsonReport<'a> {
    header: Option<&'a Map<String, Value>>,
    claims: Option<&'a Map<String, Value>>,
    checks: Vec<JsonCheck>,
    valid: bool,
}

#[derive(Serialize)]
struct JsonCheck {
    name: &'static str,
    status: &'static str,
    detail: String,
}

type Parts<'a> = Option<(&'a Map<String, Value>, &'a Map<String, Value>)>;

/// The `--json` document: a stable shape, documented in the README (`check-token`, Output).
fn render_json(report: &Report, parts: Parts<'_>) -> String {
    let document = JsonReport {
        header: parts.map(|(header, _)| header),
        claims: parts.map(|(_, claims)| claims),
        checks: report
            .checks
            .iter()
            .map(|(name, outcome)| {
                let (status, detail) = status_and_detail(outcome);
                JsonCheck {
                    name: name.as_str(),
                    status,
                    detail,
                }
            })
            .collect(),
        valid: report.first_failure().is_none(),
    };
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

fn status_and_detail(outcome: &Outcome) -> (&'static str, String) {
    match outcome {
        Outcome::Pass(detail) => ("pass", detail.clone()),
        Outcome::Fail(rejection) => ("fail", rejection.to_string()),
        Outcome::Skip(why) => ("skip", why.clone()),
    }
}

/// ANSI styling, written by hand: four codes do not justify a dependency.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn paint(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    fn status(self, status: &str) -> String {
        let code = match status {
            "pass" => "32",
            "fail" => "1;31",
            _ => "33",
        };
        self.paint(code, status)
    }
}

/// The human report: header, claims (times decoded), one line per check, and the verdict.
fn render_human(
    report: &Report,
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    now: i64,
    color: bool,
) -> String {
    let paint = Paint(color);
    let mut out = String::new();
    out.push_str(&paint.bold("header"));
    out.push('\n');
    push_fields(&mut out, &header_fields(header));

    out.push('\n');
    out.push_str(&paint.bold("claims"));
    out.push('\n');
    let fields: Vec<(String, String)> = claims
        .iter()
        .map(|(name, value)| (name.clone(), claim_value(claims, name, value, now)))
        .collect();
    push_fields(&mut out, &fields);

    out.push('\n');
    out.push_str(&paint.bold("checks"));
    out.push('\n');
    let width = longest(report.checks.iter().map(|(name, _)| name.as_str()));
    for (name, outcome) in &report.checks {
        let (status, detail) = status_and_detail(outcome);
        let name = name.as_str();
        out.push_str(&format!(
            "  {}  {name:<width$}  {}\n",
            paint.status(status),
            terminal_safe(&detail)
        ));
    }
    out.push('\n');
    out.push_str(&verdict_line(report, paint));
    out.push('\n');
    out
}

/// `alg`, `typ` and `kid` always, in that order (marked absent when missing), then the rest.
fn header_fields(header: &Map<String, Value>) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = ["alg", "typ", "kid"]
        .iter()
        .map(|name| {
            let value = header.get(*name).map_or_else(|| "(absent)".into(), inline);
            (name.to_string(), value)
        })
        .collect();
    fields.extend(
        header
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "alg" | "typ" | "kid"))
            .map(|(name, value)| (name.clone(), inline(value))),
    );
    fields
}

/// A claim's value; `exp`, `nbf` and `iat` also as ISO 8601 UTC and relative to now.
fn claim_value(claims: &Map<String, Value>, name: &str, value: &Value, now: i64) -> String {
    let (claim, future, past) = match name {
        "exp" => ("exp", "expires", "expired"),
        "nbf" => ("nbf", "starts", "started"),
        "iat" => ("iat", "issued", "issued"),
        _ => return inline(value),
    };
    match numeric_date(claims, claim) {
        Ok(Some(at)) => {
            let verb = if at > now { future } else { past };
            format!(
                "{}  {}, {verb} {}",
                inline(value),
                iso8601(at),
                relative(at, now)
            )
        }
        _ => inline(value),
    }
}

/// A JSON value on one line when it is short and flat, else pretty-printed; JSON escaping keeps
/// control characters in claims from reaching the terminal.
fn inline(value: &Value) -> String {
    let flat = match value {
        Value::Array(items)
            if items
                .iter()
                .all(|item| !item.is_array() && !item.is_object()) =>
        {
            let items: Vec<String> = items.iter().map(Value::to_string).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(_) | Value::Array(_) => {
            serde_json::to_string_pretty(value).unwrap_or_default()
        }
        scalar => scalar.to_string(),
    };
    terminal_safe(&flat)
}

/// Aligned `name  value` lines; continuation lines of multi-line values are indented under the
/// value column.
fn push_fields(out: &mut String, fields: &[(String, String)]) {
    let width = longest(fields.iter().map(|(name, _)| name.as_str()));
    let indent = " ".repeat(width + 4);
    for (name, value) in fields {
        let value = value.replace('\n', &format!("\n{indent}"));
        out.push_str(&format!("  {:<width$}  {value}\n", terminal_safe(name)));
    }
}

fn longest<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(0)
}

/// The conclusion, and what `serve` would answer when the token is refused (the same challenge
/// builder serve uses decides 401 or 403).
fn verdict_line(report: &Report, paint: Paint) -> String {
    let count = |wanted: &str| {
        report
            .checks
            .iter()
            .filter(|(_, outcome)| status_and_detail(outcome).0 == wanted)
            .count()
    };
    let skipped = match count("skip") {
        0 => String::new(),
        n => format!(" ({n} skipped)"),
    };
    let Some(first) = report.first_failure() else {
        return format!(
            "{}: every check performed passed{skipped}",
            paint.paint("1;32", "valid")
        );
    };
    let params = ChallengeParams {
        resource_metadata: String::new(),
        required_scopes: Vec::new(),
    };
    let refusal = params.refuse(&AuthFailure::Rejected(first.clone()));
    let error = refusal.body["error"].as_str().unwrap_or("invalid_token");
    format!(
        "{}: {} failed{skipped}; serve would answer {} {error}: {}",
        paint.paint("1;31", "invalid"),
        plural(count("fail"), "check"),
        refusal.status.as_u16(),
        terminal_safe(&first.to_string())
    )
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Replaces control characters (escape sequences, C1 controls) so a hostile claim cannot drive the
/// terminal. Newlines are ours to place, so they go too.
fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_bearer_and_whitespace() {
        assert_eq!(strip_bearer("  Bearer abc.def.ghi \n"), "abc.def.ghi");
        assert_eq!(strip_bearer("bearer\tabc"), "abc");
        assert_eq!(strip_bearer("BEARER  abc"), "abc");
        assert_eq!(strip_bearer("abc.def.ghi\n"), "abc.def.ghi");
        assert_eq!(strip_bearer("Bearerabc"), "Bearerabc");
        assert_eq!(strip_bearer("Béarer x"), "Béarer x");
    }

    #[test]
    fn terminal_safe_drops_escape_sequences() {
        assert_eq!(terminal_safe("a\x1b[31mb\u{9b}c"), "a?[31mb?c");
        assert_eq!(inline(&Value::String("\u{9b}2J".into())), "\"?2J\"");
    }

    #[test]
    fn every_malformed_input_gets_a_fix() {
        let message = not_a_jwt(&Malformed::SegmentCount(2));
        assert!(
            message.starts_with("not a JWT: a JWT has 3 dot-separated segments, this token has 2;")
        );
        assert!(not_a_jwt(&Malformed::LooksLikeJwe).contains("signed (JWS)"));
    }
}
