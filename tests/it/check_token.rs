//! `scalekit-mcp check-token` end to end: the binary run on minted tokens, its human and JSON
//! output compared with golden files, its exit codes asserted.
//!
//! Goldens live in `tests/golden/check-token/`; after an intended output change, regenerate them
//! with `SCALEKIT_MCP_UPDATE_GOLDEN=1 cargo test check_token` and review the diff.
//! Every run uses a fixed clock (`--now`), an empty environment and a temp working directory, so
//! neither the developer's variables nor a `.env` can leak in.

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin_cmd;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;
const ISSUER: &str = "https://acme.scalekit.dev";
const AUDIENCE: &str = "res_1";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_arg(name: &str) -> String {
    fixture(name).display().to_string()
}

/// Signs `claims` with a fixture key (`rsa-a`, `rsa-b`, `ec-p256`), under `kid` when given.
fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(fixture(&format!("{key}.pem"))).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// An RS256 token from key-a with `claims` on top of valid defaults (null removes a claim).
fn token(overrides: Value) -> String {
    sign(Algorithm::RS256, "rsa-a", Some("key-a"), &claims(overrides))
}

fn claims(overrides: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER,
        "sub": "usr_42",
        "aud": [AUDIENCE],
        "client_id": "skc_1",
        "exp": NOW + 3_600,
        "iat": NOW - 600,
        "nbf": NOW - 600,
        "scope": "mcp:tools mcp:read",
    });
    for (name, value) in overrides.as_object().unwrap() {
        match value {
            Value::Null => claims.as_object_mut().unwrap().remove(name),
            value => claims
                .as_object_mut()
                .unwrap()
                .insert(name.clone(), value.clone()),
        };
    }
    claims
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Extra environment variables for a run.
type Env<'a> = &'a [(&'a str, &'a str)];

/// One run of the binary.
struct Run {
    exit: i32,
    stdout: String,
    stderr: String,
}

/// Runs `check-token` with a clean environment (plus `env`) in a temp directory.
fn run<S: AsRef<str>>(args: &[S], env: Env<'_>, stdin: Option<&str>) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut command = cargo_bin_cmd!("scalekit-mcp");
    command
        .env_clear()
        .env("HOME", home.path())
        .env("SCALEKIT_MCP_HOME", home.path())
        .env("NO_COLOR", "1")
        .current_dir(home.path())
        .arg("check-token")
        .args(["--now", &NOW.to_string()])
        .args(args.iter().map(AsRef::as_ref))
        .envs(env.iter().copied());
    command.write_stdin(stdin.unwrap_or(""));
    let output = command.output().unwrap();
    Run {
        exit: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// The flags most cases use: all fixture keys, the expected issuer, audience and scope.
fn expecting() -> Vec<String> {
    [
        "--jwks",
        &fixture_arg("jwks-all.json"),
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
        "--require-scope",
        "mcp:tools",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Compares `actual` with the golden file, or rewrites it under SCALEKIT_MCP_UPDATE_GOLDEN=1.
fn assert_golden(file: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/check-token")
        .join(file);
    if std::env::var_os("SCALEKIT_MCP_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden {}: run with SCALEKIT_MCP_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {} (SCALEKIT_MCP_UPDATE_GOLDEN=1 regenerates it)",
        path.display()
    );
}

fn transcript(run: &Run) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.exit, run.stdout, run.stderr
    )
}

/// Runs one case in both output modes, checks both goldens, the exit code, that the JSON is the
/// documented shape and agrees with the exit code, and that the token never appears.
fn case(name: &str, token: &str, args: &[String], env: &[(&str, &str)], exit: i32) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut human_args = args.clone();
    human_args.push(token);
    let human = run(&human_args, env, None);
    assert_golden(&format!("{name}.human.txt"), &transcript(&human));
    assert_eq!(
        human.exit,
        exit,
        "{name}: human exit code\n{}",
        transcript(&human)
    );

    let mut json_args = args.clone();
    json_args.extend(["--json", token]);
    let json_run = run(&json_args, env, None);
    assert_golden(&format!("{name}.json.txt"), &transcript(&json_run));
    assert_eq!(json_run.exit, exit, "{name}: --json exit code");
    assert_json_shape(&json_run.stdout, exit);

    for output in [&human, &json_run] {
        assert_never_prints_token(token, output);
    }
}

fn assert_json_shape(stdout: &str, exit: i32) {
    let document: Value = serde_json::from_str(stdout).unwrap();
    let keys: Vec<&str> = document
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["checks", "claims", "header", "valid"]);
    assert_eq!(document["valid"], json!(exit == 0));
    for check in document["checks"].as_array().unwrap() {
        assert!(["pass", "fail", "skip"].contains(&check["status"].as_str().unwrap()));
        assert!(check["name"].is_string() && check["detail"].is_string());
    }
}

fn assert_never_prints_token(token: &str, output: &Run) {
    let signature = token.rsplit('.').next().unwrap_or_default();
    for text in [&output.stdout, &output.stderr] {
        assert!(!text.contains(token), "the raw token was printed");
        if signature.len() > 8 {
            assert!(!text.contains(signature), "the signature was printed");
        }
    }
}

fn with(extra: &[&str]) -> Vec<String> {
    let mut args = expecting();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// SK_ENV_URL (with a trailing slash, as people write it) and the metadata Scalekit shows.
const SCALEKIT_ENV: &[(&str, &str)] = &[
    ("SK_ENV_URL", "https://acme.scalekit.dev/"),
    (
        "PROTECTED_RESOURCE_METADATA",
        r#"{"resource":"https://mcp.example.com/","authorization_servers":["https://acme.scalekit.dev/resources/res_1"]}"#,
    ),
];

#[test]
fn valid() {
    case("valid", &token(json!({})), &expecting(), &[], 0);
}

#[test]
fn valid_without_jwks_skips_the_signature() {
    let args = ["--issuer", ISSUER].map(str::to_owned).to_vec();
    case("no-jwks", &token(json!({})), &args, &[], 0);
}

#[test]
fn expired() {
    let token = token(json!({"exp": NOW - 3 * 3_600 - 120, "iat": NOW - 4 * 3_600, "nbf": null}));
    case("expired", &token, &expecting(), &[], 1);
}

#[test]
fn not_yet_valid() {
    case(
        "not-yet-valid",
        &token(json!({"nbf": NOW + 600})),
        &expecting(),
        &[],
        1,
    );
}

#[test]
fn wrong_issuer() {
    let token = token(json!({"iss": "https://evil.example"}));
    case("wrong-issuer", &token, &expecting(), &[], 1);
}

#[test]
fn scalekit_issuer_env_form() {
    let token = token(json!({"aud": ["res_1", "https://mcp.example.com/"]}));
    case("scalekit-issuer-env", &token, &[], SCALEKIT_ENV, 0);
}

#[test]
fn scalekit_issuer_resource_form() {
    let token = token(json!({
        "iss": "https://acme.scalekit.dev/resources/res_1",
        "aud": ["res_1", "https://mcp.example.com/"],
    }));
    case("scalekit-issuer-resource", &token, &[], SCALEKIT_ENV, 0);
}

#[test]
fn scalekit_env_still_refuses_other_issuers() {
    let token = token(json!({"iss": "https://acme.scalekit.dev/resources/res_2"}));
    let run = run(&["--json", &token], SCALEKIT_ENV, None);
    assert_eq!(run.exit, 1);
    assert!(run.stdout.contains(
        "issuer https://acme.scalekit.dev/resources/res_2 is not accepted (accepted: \
         https://acme.scalekit.dev, https://acme.scalekit.dev/resources/res_1)"
    ));
}

#[test]
fn wrong_audience() {
    case(
        "wrong-audience",
        &token(json!({"aud": "res_other"})),
        &expecting(),
        &[],
        1,
    );
}

#[test]
fn audience_array() {
    let token = token(json!({"aud": ["https://other.example/", "res_1"]}));
    case("audience-array", &token, &expecting(), &[], 0);
}

#[test]
fn missing_scope_in_scope_string() {
    let token = token(json!({"scope": "mcp:read"}));
    case("missing-scope-string", &token, &expecting(), &[], 1);
}

#[test]
fn missing_scope_in_scp_array() {
    let token = token(json!({"scope": null, "scp": ["mcp:read"]}));
    case("missing-scope-scp", &token, &expecting(), &[], 1);
}

#[test]
fn missing_scope_in_scopes_array() {
    let token = token(json!({"scope": null, "scopes": ["mcp:read"]}));
    case("missing-scope-scopes", &token, &expecting(), &[], 1);
}

#[test]
fn scopes_array_grants_the_scope() {
    let token = token(json!({"scope": null, "scopes": ["mcp:tools"]}));
    let run = run(&with(&[&token]), &[], None);
    assert_eq!(run.exit, 0, "{}", transcript(&run));
    assert!(run.stdout.contains("pass  scope       has mcp:tools"));
}

#[test]
fn bad_signature() {
    // Signed with key B, labelled as key A.
    let token = sign(Algorithm::RS256, "rsa-b", Some("key-a"), &claims(json!({})));
    case("bad-signature", &token, &expecting(), &[], 1);
}

#[test]
fn wrong_kid() {
    let token = sign(
        Algorithm::RS256,
        "rsa-a",
        Some("key-rotated"),
        &claims(json!({})),
    );
    case("wrong-kid", &token, &expecting(), &[], 1);
}

#[test]
fn hs256() {
    let header = Header::new(Algorithm::HS256);
    let key = EncodingKey::from_secret(b"a shared secret");
    let token = jsonwebtoken::encode(&header, &claims(json!({})), &key).unwrap();
    case("hs256", &token, &expecting(), &[], 1);
}

#[test]
fn alg_none() {
    let token = format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "typ": "JWT"})),
        segment(&claims(json!({})))
    );
    case("alg-none", &token, &expecting(), &[], 1);
}

#[test]
fn es256_when_allowed() {
    let token = sign(
        Algorithm::ES256,
        "ec-p256",
        Some("key-ec"),
        &claims(json!({})),
    );
    case(
        "es256",
        &token,
        &with(&["--algorithms", "RS256,ES256"]),
        &[],
        0,
    );
}

#[test]
fn garbage() {
    case("garbage", "hello.world.!!", &expecting(), &[], 2);
}

#[test]
fn jwe() {
    let token = format!(
        "{}.a2V5.aXY.Y2lwaGVy.dGFn",
        segment(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"}))
    );
    case("jwe", &token, &expecting(), &[], 2);
}

#[test]
fn two_segments() {
    let token = token(json!({}));
    let two = token.rsplit_once('.').unwrap().0;
    case("two-segments", two, &expecting(), &[], 2);
}

#[test]
fn payload_not_json() {
    let token = format!(
        "{}.{}.c2ln",
        segment(&json!({"alg": "RS256"})),
        URL_SAFE_NO_PAD.encode("hi")
    );
    case("payload-not-json", &token, &expecting(), &[], 2);
}

#[test]
fn stdin_input_matches_the_argument() {
    let token = token(json!({}));
    let args = expecting();
    let piped = run(&args, &[], Some(&format!("  Bearer {token}\n")));
    let dashed = run(&with(&["-"]), &[], Some(&format!("bearer {token}")));
    let argument = run(&with(&[&token]), &[], None);
    assert_golden("stdin.human.txt", &transcript(&piped));
    assert_eq!(piped.exit, 0);
    assert_eq!(transcript(&piped), transcript(&argument));
    assert_eq!(transcript(&dashed), transcript(&argument));
    let json = run(&with(&["--json"]), &[], Some(&token));
    assert_golden("stdin.json.txt", &transcript(&json));
    assert_never_prints_token(&token, &piped);
}

#[test]
fn bearer_prefix_on_the_argument() {
    let token = token(json!({}));
    let args = with(&[&format!("Bearer {token}")]);
    let run = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        None,
    );
    assert_eq!(run.exit, 0, "{}", transcript(&run));
}

#[test]
fn pem_public_key_verifies() {
    let token = token(json!({}));
    let pem = fixture_arg("rsa-a.pub.pem");
    let good = run(&["--jwks", &pem, &token], &[], None);
    assert_eq!(good.exit, 0, "{}", transcript(&good));
    assert!(good.stdout.contains("pass  signature   verified"));
    let forged = sign(Algorithm::RS256, "rsa-b", Some("key-a"), &claims(json!({})));
    let bad = run(&["--jwks", &pem, &forged], &[], None);
    assert_eq!(bad.exit, 1);
    assert!(bad.stdout.contains("fail  signature   invalid signature"));
}

#[test]
fn no_colour_when_stdout_is_not_a_terminal() {
    let token = token(json!({}));
    let home = tempfile::tempdir().unwrap();
    let output = cargo_bin_cmd!("scalekit-mcp")
        .env_clear()
        .current_dir(home.path())
        .args(["check-token", "--now", &NOW.to_string(), &token])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(!String::from_utf8(output.stdout).unwrap().contains('\x1b'));
}

#[test]
fn usage_errors_exit_2_with_the_fix() {
    let token = token(json!({}));
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let cases: [(&[&str], Env, &str); 6] = [
        (&["--jwks", manifest], &[], "not JSON"),
        (
            &["--jwks", "/nonexistent/keys.json"],
            &[],
            "cannot read --jwks /nonexistent/keys.json",
        ),
        (
            &["--jwks", &fixture_arg("rsa-a.pem")],
            &[],
            "is a private key: give the public key",
        ),
        (
            &["--algorithms", "HS256"],
            &[],
            "is symmetric (HMAC) and never allowed",
        ),
        (&["--leeway", "soon"], &[], "is not a duration"),
        (
            &[],
            &[("PROTECTED_RESOURCE_METADATA", "{resource")],
            "PROTECTED_RESOURCE_METADATA is not valid JSON",
        ),
    ];
    for (args, env, message) in cases {
        let mut args = args.to_vec();
        args.push(&token);
        let run = run(&args, env, None);
        assert_eq!(run.exit, 2, "{args:?}: {}", transcript(&run));
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn no_token_on_a_closed_stdin_is_a_usage_error() {
    let run = run::<&str>(&[], &[], Some(""));
    assert_eq!(run.exit, 2);
    assert!(
        run.stderr
            .contains("not a JWT: the token is empty; pass the token"),
        "{}",
        run.stderr
    );
}

#[test]
fn reads_the_servers_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "SK_ENV_URL=https://acme.scalekit.dev\nEXPECTED_AUDIENCE=res_1\n",
    )
    .unwrap();
    let token = token(json!({"iss": "https://evil.example"}));
    let output = cargo_bin_cmd!("scalekit-mcp")
        .env_clear()
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .args(["check-token", "--now", &NOW.to_string(), &token])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains(
        "fail  issuer      issuer https://evil.example is not accepted (accepted: https://acme.scalekit.dev)"
    ));
    assert!(stdout.contains("pass  audience    res_1 is accepted"));
}
