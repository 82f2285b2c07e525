//! Verification keys: a JWKS (or a single JWK, or a PEM public key for `check-token`) turned into
//! the keys a signature check may use.
//!
//! Parsing is deliberately forgiving per key and strict per set: a key this server cannot use (an
//! `oct` / HMAC secret, an encryption key, an unknown `kty`) is skipped, so one odd entry never takes
//! the whole set down, but a set with no usable signing key is an error. HMAC keys are never loaded:
//! accepting one would let anyone who read the JWKS mint tokens.

use jsonwebtoken::{Algorithm, DecodingKey, jwk::AlgorithmParameters, jwk::Jwk};
use serde_json::Value;

/// Why a key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("expected a JWKS object with a \"keys\" array, or a single JWK")]
    NotAKeySet,
    #[error("no usable signing key ({skipped} skipped: HMAC, encryption-only or unsupported keys)")]
    NoUsableKey { skipped: usize },
    #[error("not a PEM public key this tool understands (RSA, EC or Ed25519): {0}")]
    BadPem(String),
}

/// One public key with the metadata needed to pick it for a token.
pub struct VerificationKey {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it pins one: a token signed with another algorithm is refused.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl VerificationKey {
    /// Whether this key's type can verify `alg` (RSA for RS*/PS*, EC for ES*, OKP for EdDSA) and the
    /// JWK does not pin a different algorithm.
    pub fn can_verify(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// The keys a token may be verified with.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`) or a single JWK object.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<Self, KeySetError> {
        let document: Value =
            serde_json::from_slice(bytes).map_err(|err| KeySetError::NotJson(err.to_string()))?;
        let entries = match &document {
            Value::Object(object) if object.get("keys").is_some_and(Value::is_array) => {
                object["keys"].as_array().cloned().unwrap_or_default()
            }
            Value::Object(object) if object.contains_key("kty") => vec![document.clone()],
            _ => return Err(KeySetError::NotAKeySet),
        };
        let total = entries.len();
        let keys: Vec<VerificationKey> = entries.into_iter().filter_map(signing_key).collect();
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey { skipped: total });
        }
        Ok(Self { keys })
    }

    /// Parses a PEM public key (RSA, EC or Ed25519); it has no `kid`, so it verifies any token.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeySetError> {
        let key = DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_ed_pem(pem))
            .map_err(|err| KeySetError::BadPem(err.to_string()))?;
        Ok(Self {
            keys: vec![VerificationKey {
                kid: None,
                alg: None,
                key,
            }],
        })
    }

    /// Builds a set from keys already made (the development authorization server's own key).
    pub fn from_keys(keys: Vec<VerificationKey>) -> Self {
        Self { keys }
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in the order the set lists them.
    pub fn iter(&self) -> impl Iterator<Item = &VerificationKey> {
        self.keys.iter()
    }

    /// The key with this `kid`, if any.
    pub fn find(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.iter().find(|key| key.kid.as_deref() == Some(kid))
    }
}

/// Turns one JWKS entry into a verification key, or `None` when it is not a usable signing key.
fn signing_key(entry: Value) -> Option<VerificationKey> {
    let is_signing = entry
        .get("use")
        .and_then(Value::as_str)
        .is_none_or(|usage| usage == "sig");
    if !is_signing {
        return None;
    }
    let jwk: Jwk = serde_json::from_value(entry).ok()?;
    if !matches!(
        jwk.algorithm,
        AlgorithmParameters::RSA(_)
            | AlgorithmParameters::EllipticCurve(_)
            | AlgorithmParameters::OctetKeyPair(_)
    ) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        Some(key_alg) => Some(key_alg.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerificationKey {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS_ALL: &str = include_str!("../../tests/fixtures/jwks-all.json");

    #[test]
    fn loads_rsa_and_ec_keys_by_kid() {
        let set = KeySet::from_jwks_json(JWKS_ALL.as_bytes()).unwrap();
        assert_eq!(set.len(), 3);
        assert!(set.find("key-a").unwrap().can_verify(Algorithm::RS256));
        assert!(!set.find("key-a").unwrap().can_verify(Algorithm::ES256));
        assert!(set.find("key-ec").unwrap().can_verify(Algorithm::ES256));
        assert!(set.find("missing").is_none());
    }

    #[test]
    fn skips_hmac_and_encryption_keys() {
        let jwks = r#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"RSA","use":"enc","kid":"e","n":"AQAB","e":"AQAB"}
        ]}"#;
        let err = KeySet::from_jwks_json(jwks.as_bytes()).err().unwrap();
        assert!(matches!(err, KeySetError::NoUsableKey { skipped: 2 }));
    }

    #[test]
    fn accepts_a_single_jwk_and_rejects_other_json() {
        let all: Value = serde_json::from_str(JWKS_ALL).unwrap();
        let single = serde_json::to_vec(&all["keys"][0]).unwrap();
        assert_eq!(KeySet::from_jwks_json(&single).unwrap().len(), 1);
        assert!(matches!(
            KeySet::from_jwks_json(b"[1,2]"),
            Err(KeySetError::NotAKeySet)
        ));
        assert!(matches!(
            KeySet::from_jwks_json(b"{nope"),
            Err(KeySetError::NotJson(_))
        ));
    }

    #[test]
    fn loads_pem_public_keys() {
        let rsa = include_bytes!("../../tests/fixtures/rsa-a.pub.pem");
        assert!(
            KeySet::from_pem(rsa)
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .can_verify(Algorithm::RS256)
        );
        let ec = include_bytes!("../../tests/fixtures/ec-p256.pub.pem");
        assert_eq!(KeySet::from_pem(ec).unwrap().len(), 1);
        assert!(KeySet::from_pem(b"not a key").is_err());
    }
}
