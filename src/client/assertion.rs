//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect Core §9): instead of a
//! client secret, the client proves who it is with a short-lived JWT signed by its private key,
//! whose public half the authorization server has on file.
//!
//! The key file is either a PEM private key (PKCS#8 `PRIVATE KEY`, or `RSA PRIVATE KEY` /
//! `EC PRIVATE KEY`), whose algorithm follows from the key (RSA → RS256, P-256 → ES256,
//! P-384 → ES384, Ed25519 → EdDSA) and which carries no `kid`; or a private JWK (RFC 7517, JSON),
//! whose `kid` goes into the assertion's header and whose `alg` (else the one its curve implies)
//! signs it. An authorization server with several keys for a client needs the `kid`: use the JWK.
//!
//! The key never leaves this module: it is read, used to sign, and dropped; only the file's
//! path is remembered (for renewing the token), never its contents.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::secret::Secret;
use crate::error::ExitError;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one token request, short enough that a
/// captured one is soon useless.
const LIFETIME_SECS: i64 = 120;

/// A signing key read from a file.
pub struct AssertionKey {
    path: PathBuf,
    key: EncodingKey,
    pub algorithm: Algorithm,
    pub kid: Option<String>,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("path", &self.path)
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn bad_key(path: &Path, problem: impl std::fmt::Display) -> anyhow::Error {
    ExitError::usage(format!(
        "--client-assertion-key {}: {problem}; give a PEM private key (PKCS#8 `BEGIN PRIVATE KEY`, \
         or `BEGIN RSA PRIVATE KEY` / `BEGIN EC PRIVATE KEY`) or a private JWK (JSON with `d`), \
         e.g. `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem`",
        path.display()
    ))
    .into()
}

impl AssertionKey {
    /// Reads and checks the key at `path` (a test signature proves the algorithm fits the key).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).map_err(|err| {
            ExitError::usage(format!(
                "--client-assertion-key {}: cannot read it ({err}); give the path of the client's \
                 private key file",
                path.display()
            ))
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad_key(path, "not a text file"))?;
        let trimmed = text.trim_start();
        let (candidates, kid) = if trimmed.starts_with('{') {
            from_jwk(path, trimmed)?
        } else if trimmed.starts_with("-----BEGIN") {
            (from_pem(path, trimmed.as_bytes())?, None)
        } else {
            return Err(bad_key(path, "neither a PEM key nor a JSON Web Key"));
        };
        for (algorithm, key) in candidates {
            let probe = jsonwebtoken::encode(&Header::new(algorithm), &json!({}), &key);
            if probe.is_ok() {
                return Ok(Self {
                    path: path.to_owned(),
                    key,
                    algorithm,
                    kid,
                });
            }
        }
        Err(bad_key(
            path,
            "the key cannot sign with RS256, ES256, ES384 or EdDSA (an unsupported curve or key size?)",
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `alg` name, e.g. `ES256`.
    pub fn algorithm_name(&self) -> String {
        format!("{:?}", self.algorithm)
    }

    /// A fresh assertion for `client_id` with audience `audience` (the authorization server's
    /// issuer, RFC 7523 §3 and draft-ietf-oauth-rfc7523bis): `iss` = `sub` = the client id, a
    /// unique `jti`, two minutes of validity.
    pub fn sign(&self, client_id: &str, audience: &str, now: i64) -> anyhow::Result<Secret> {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.clone();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti)
            .map_err(|_| anyhow::anyhow!("no randomness for the assertion's jti"))?;
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME_SECS,
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|err| {
            anyhow::anyhow!(
                "signing the client assertion with {}: {err}",
                self.path.display()
            )
        })?;
        Ok(Secret::new(jwt))
    }
}

type Candidates = Vec<(Algorithm, EncodingKey)>;

/// The algorithms a PEM key may sign with, most likely first (the test signature picks).
fn from_pem(path: &Path, pem: &[u8]) -> anyhow::Result<Candidates> {
    let mut candidates = Vec::new();
    if let Some(der) = pem_body(pem, "EC PRIVATE KEY") {
        // SEC1 (RFC 5915), which the signer does not read: re-wrapped as PKCS#8.
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        };
        for (algorithm, signing) in [
            (Algorithm::ES256, &ECDSA_P256_SHA256_FIXED_SIGNING),
            (Algorithm::ES384, &ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            if let Ok(pair) = EcdsaKeyPair::from_private_key_der(signing, &der)
                && let Ok(pkcs8) = pair.to_pkcs8v1()
            {
                candidates.push((algorithm, EncodingKey::from_ec_der(pkcs8.as_ref())));
            }
        }
    }
    if let Ok(key) = EncodingKey::from_ec_pem(pem) {
        candidates.push((Algorithm::ES256, key.clone()));
        candidates.push((Algorithm::ES384, key));
    }
    if let Ok(key) = EncodingKey::from_ed_pem(pem) {
        candidates.push((Algorithm::EdDSA, key));
    }
    if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
        candidates.push((Algorithm::RS256, key));
    }
    if candidates.is_empty() {
        let text = String::from_utf8_lossy(pem);
        if text.contains("PUBLIC KEY") || text.contains("CERTIFICATE") {
            return Err(bad_key(
                path,
                "this is a public key or certificate; the client signs with its private key",
            ));
        }
        if text.contains("ENCRYPTED") {
            return Err(bad_key(
                path,
                "the key is encrypted; decrypt it first (`openssl pkey -in key.pem -out plain.pem`)",
            ));
        }
        return Err(bad_key(path, "not a private key this tool can read"));
    }
    Ok(candidates)
}

/// The DER inside `-----BEGIN {label}-----`, if the text has that block.
fn pem_body(pem: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find(&format!("-----BEGIN {label}-----"))?;
    let body = &text[start..];
    let body = &body[body.find('\n')? + 1..];
    let end = body.find("-----END")?;
    let base64: String = body[..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()
}

/// An EC (P-256, P-384) or OKP (Ed25519) private JWK; RSA JWKs are refused with the fix.
fn from_jwk(path: &Path, text: &str) -> anyhow::Result<(Candidates, Option<String>)> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair,
    };
    let jwk: Value =
        serde_json::from_str(text).map_err(|err| bad_key(path, format!("not JSON ({err})")))?;
    let field = |name: &str| -> anyhow::Result<Vec<u8>> {
        let value = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad_key(path, format!("the JWK has no `{name}`")))?;
        URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| bad_key(path, format!("the JWK's `{name}` is not base64url")))
    };
    if jwk.get("d").is_none() {
        return Err(bad_key(
            path,
            "this JWK has no `d`: it is a public key; the client signs with its private key",
        ));
    }
    let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
    let stated = jwk.get("alg").and_then(Value::as_str);
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
    let (algorithm, pkcs8) = match (kty, crv) {
        ("EC", "P-256" | "P-384") => {
            let (algorithm, signing) = if crv == "P-256" {
                (Algorithm::ES256, &ECDSA_P256_SHA256_FIXED_SIGNING)
            } else {
                (Algorithm::ES384, &ECDSA_P384_SHA384_FIXED_SIGNING)
            };
            let mut point = vec![4u8];
            point.extend(field("x")?);
            point.extend(field("y")?);
            let pair = EcdsaKeyPair::from_private_key_and_public_key(signing, &field("d")?, &point)
                .map_err(|err| {
                    bad_key(path, format!("the JWK is not a valid {crv} key ({err})"))
                })?;
            let der = pair
                .to_pkcs8v1()
                .map_err(|_| bad_key(path, "the JWK cannot be converted"))?;
            (algorithm, EncodingKey::from_ec_der(der.as_ref()))
        }
        ("OKP", "Ed25519") => {
            let pair = Ed25519KeyPair::from_seed_and_public_key(&field("d")?, &field("x")?)
                .map_err(|err| {
                    bad_key(path, format!("the JWK is not a valid Ed25519 key ({err})"))
                })?;
            let der = pair
                .to_pkcs8v1()
                .map_err(|_| bad_key(path, "the JWK cannot be converted"))?;
            (Algorithm::EdDSA, EncodingKey::from_ed_der(der.as_ref()))
        }
        ("RSA", _) => {
            return Err(bad_key(
                path,
                "RSA keys are read from PEM only (convert the JWK to PEM, e.g. with `step crypto key format`)",
            ));
        }
        _ => {
            return Err(bad_key(
                path,
                format!(
                    "unsupported JWK kty {kty:?} / crv {crv:?} (EC P-256, EC P-384 or OKP Ed25519)"
                ),
            ));
        }
    };
    if let Some(stated) = stated
        && stated != format!("{algorithm:?}")
    {
        return Err(bad_key(
            path,
            format!("the JWK says alg {stated}, but its key signs with {algorithm:?}"),
        ));
    }
    Ok((vec![(algorithm, pkcs8)], kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pkcs8_p256() -> String {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    }

    #[test]
    fn a_p256_pem_signs_es256_without_a_kid() {
        let dir = tempfile::tempdir().unwrap();
        let key = AssertionKey::load(&write(&dir, "k.pem", &pkcs8_p256())).unwrap();
        assert_eq!(key.algorithm, Algorithm::ES256);
        assert_eq!(key.kid, None);
        let jwt = key.sign("client-1", "https://as.example", 1_000).unwrap();
        let header = jsonwebtoken::decode_header(jwt.expose()).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.expose().split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "https://as.example");
        assert_eq!(claims["exp"], 1_000 + LIFETIME_SECS);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn sec1_and_jwk_keys_are_read_with_their_algorithm_and_kid() {
        use aws_lc_rs::encoding::{AsBigEndian, AsDer};
        use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let sec1 = pair.private_key().as_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(sec1.as_ref());
        let pem = format!("-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n");
        let key = AssertionKey::load(&write(&dir, "sec1.pem", &pem)).unwrap();
        assert_eq!((key.algorithm, key.kid.clone()), (Algorithm::ES384, None));

        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(48);
        let d = pair.private_key().as_be_bytes().unwrap();
        let jwk = json!({
            "kty": "EC", "crv": "P-384", "kid": "ci-key-2", "alg": "ES384",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
            "d": URL_SAFE_NO_PAD.encode(d.as_ref()),
        });
        let key = AssertionKey::load(&write(&dir, "key.jwk", &jwk.to_string())).unwrap();
        assert_eq!(key.algorithm, Algorithm::ES384);
        let jwt = key.sign("c", "https://as.example", 0).unwrap();
        let header = jsonwebtoken::decode_header(jwt.expose()).unwrap();
        assert_eq!(header.kid.as_deref(), Some("ci-key-2"));
        // Verifies with the public half.
        let public = jsonwebtoken::DecodingKey::from_ec_components(
            &URL_SAFE_NO_PAD.encode(x),
            &URL_SAFE_NO_PAD.encode(y),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES384);
        validation.set_audience(&["https://as.example"]);
        validation.validate_exp = false;
        jsonwebtoken::decode::<Value>(jwt.expose(), &public, &validation).unwrap();

        // A JWK whose alg does not fit its key is refused.
        let mut wrong = jwk.clone();
        wrong["alg"] = json!("ES256");
        let error = AssertionKey::load(&write(&dir, "wrong.jwk", &wrong.to_string())).unwrap_err();
        assert!(format!("{error:#}").contains("says alg ES256"), "{error:#}");
    }

    #[test]
    fn bad_files_are_usage_errors_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("hello", "neither a PEM key nor a JSON Web Key"),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "public key",
            ),
            (
                "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}",
                "no `d`",
            ),
            ("{not json", "not JSON"),
        ] {
            let error = AssertionKey::load(&write(&dir, "k", text)).unwrap_err();
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{message}");
            assert_eq!(
                crate::error::exit_code_for(&error),
                crate::error::Exit::Usage
            );
        }
        let error = AssertionKey::load(&dir.path().join("missing.pem")).unwrap_err();
        assert!(format!("{error:#}").contains("cannot read it"));
    }
}
