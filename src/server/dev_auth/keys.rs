//! The development authorization server's signing key, and the randomness and hashing it needs.
//!
//! A fresh RSA-2048 key is generated at each start, so tokens from an earlier run stop verifying
//! (their `kid` is unknown). `--dev-key FILE` keeps one key across restarts: the file is read when
//! it exists and created (mode 0600) when it does not. The `kid` is the key's RFC 7638 thumbprint,
//! so the same key always gets the same `kid`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The private key that signs access tokens, with its published JWKS.
pub struct SigningKey {
    key: EncodingKey,
    kid: String,
    /// The JWKS document served at `{issuer}/keys`, exactly as it is served.
    jwks: bytes::Bytes,
}

/// Where the signing key came from, for the startup log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Generated,
    CreatedFile,
    LoadedFile,
}

impl SigningKey {
    /// The key in `file` (created when missing), or a fresh one when `file` is `None`.
    pub fn load_or_generate(file: Option<&Path>) -> anyhow::Result<(Self, KeyOrigin)> {
        let Some(file) = file else {
            return Ok((
                Self::from_pem(generate_pem()?.as_bytes())?,
                KeyOrigin::Generated,
            ));
        };
        match std::fs::read(file) {
            Ok(pem) => {
                let key = Self::from_pem(&pem).with_context(|| {
                    format!("--dev-key {}: not a usable RSA private key", file.display())
                })?;
                Ok((key, KeyOrigin::LoadedFile))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let pem = generate_pem()?;
                write_private_file(file, pem.as_bytes()).with_context(|| {
                    format!("--dev-key {}: creating the key file", file.display())
                })?;
                Ok((Self::from_pem(pem.as_bytes())?, KeyOrigin::CreatedFile))
            }
            Err(err) => Err(err)
                .with_context(|| format!("--dev-key {}: reading the key file", file.display())),
        }
    }

    /// A PEM RSA private key, PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`), of 2048 bits
    /// or more.
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<Self> {
        let key = EncodingKey::from_rsa_pem(pem)
            .map_err(|err| anyhow::anyhow!("not a PEM RSA private key ({err})"))?;
        // A public key parses as an RSA key too; deriving the public components from it fails.
        let jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).map_err(|err| {
            anyhow::anyhow!("not an RSA private key of 2048 bits or more ({err})")
        })?;
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            anyhow::bail!("not an RSA key");
        };
        let kid = thumbprint(&rsa.n, &rsa.e);
        let jwks = serde_json::json!({
            "keys": [{ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": rsa.n, "e": rsa.e }]
        });
        let signing = Self {
            key,
            kid,
            jwks: bytes::Bytes::from(serde_json::to_vec(&jwks)?),
        };
        // Sign once now, so a key aws-lc refuses (too small, malformed) fails at startup and not
        // at the first token request.
        signing.sign(&serde_json::json!({})).map_err(|err| {
            anyhow::anyhow!("this RSA key cannot sign RS256 tokens ({err}); use 2048 bits or more")
        })?;
        Ok(signing)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// A compact RS256 JWS of `claims`, with `kid` and `typ: JWT` in the header as Scalekit's.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
    }
}

/// A new RSA-2048 key as PKCS#8 PEM.
fn generate_pem() -> anyhow::Result<String> {
    let pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("generating an RSA key failed"))?;
    let der = pair
        .as_der()
        .map_err(|_| anyhow::anyhow!("encoding the RSA key failed"))?;
    let base64 = STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

/// Creates `path` readable by its owner only; never overwrites an existing file.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The RFC 7638 §3 JWK thumbprint of an RSA key: SHA-256 of the required members in
/// lexicographic order, without whitespace.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    digest(&SHA256, data).as_ref().to_vec()
}

/// `bytes` random bytes from the system CSPRNG, base64url-encoded: codes, tokens, ids.
pub fn random_string(bytes: usize) -> Option<String> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).ok()?;
    Some(URL_SAFE_NO_PAD.encode(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeySet;
    use crate::auth::validate::{TokenPolicy, validate};

    #[test]
    fn generated_keys_sign_tokens_their_jwks_verifies() {
        let (key, origin) = SigningKey::load_or_generate(None).unwrap();
        assert_eq!(origin, KeyOrigin::Generated);
        let token = key
            .sign(&serde_json::json!({ "iss": "i", "aud": ["a"], "exp": 4_000_000_000_i64, "sub": "u" }))
            .unwrap();
        let keys = KeySet::from_jwks_json(&key.jwks()).unwrap();
        let policy = TokenPolicy {
            issuers: vec!["i".into()],
            audiences: vec!["a".into()],
            algorithms: vec![Algorithm::RS256],
            required_scopes: vec![],
            leeway: 0,
            allowed_orgs: vec![],
        };
        let caller = validate(&token, &policy, &keys, 1_000).unwrap();
        assert_eq!(caller.sub.as_deref(), Some("u"));
    }

    #[test]
    fn a_key_file_is_created_then_reused_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.pem");
        let (first, origin) = SigningKey::load_or_generate(Some(&path)).unwrap();
        assert_eq!(origin, KeyOrigin::CreatedFile);
        let (second, origin) = SigningKey::load_or_generate(Some(&path)).unwrap();
        assert_eq!(origin, KeyOrigin::LoadedFile);
        assert_eq!(first.kid(), second.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn loads_a_pem_private_key_and_refuses_public_keys_and_junk() {
        let private = include_bytes!("../../../tests/fixtures/rsa-a.pem");
        assert!(SigningKey::from_pem(private).is_ok());
        let public = include_bytes!("../../../tests/fixtures/rsa-a.pub.pem");
        assert!(SigningKey::from_pem(public).is_err());
        assert!(SigningKey::from_pem(b"hello").is_err());
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
