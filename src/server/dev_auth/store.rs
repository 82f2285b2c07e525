//! The development authorization server's memory: registered clients, pending consents,
//! authorization codes and refresh tokens.
//!
//! Everything lives in memory and is lost at restart (clients register again, as MCP clients do on
//! an unknown `client_id`). Every map is bounded so a script hammering `/register` or `/authorize`
//! cannot exhaust memory: when one is full, expired entries are dropped, and if it is still full
//! the request is refused with `temporarily_unavailable` instead of evicting live state.
//! Codes and refresh tokens are keyed by their SHA-256, so the maps never hold a usable secret.

use std::collections::HashMap;
use std::hash::Hash;

use super::keys::sha256;

pub const MAX_CLIENTS: usize = 1_000;
pub const MAX_CONSENTS: usize = 1_000;
pub const MAX_CODES: usize = 1_000;
pub const MAX_REFRESH_TOKENS: usize = 10_000;

/// How a client authenticates at the token endpoint (RFC 7591 §2 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client: no secret, PKCE protects its codes.
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

impl AuthMethod {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

/// A registered client. No `Debug`: it holds a secret's hash, and there is no need to print one.
#[derive(Clone)]
pub struct Client {
    pub id: String,
    pub name: Option<String>,
    /// SHA-256 of the client secret; `None` for public clients.
    pub secret_hash: Option<Vec<u8>>,
    pub auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
}

impl Client {
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|allowed| allowed == grant_type)
    }
}

/// What the user approved: who, which scopes, for which audiences.
#[derive(Clone)]
pub struct Grant {
    pub sub: String,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
}

/// A checked authorization request, waiting for consent or turned into a code.
#[derive(Clone)]
pub struct AuthRequest {
    pub client_id: String,
    pub client_name: Option<String>,
    /// The redirect URI to send the user back to (with the request's port for loopback URIs).
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri`: then the token request must repeat it
    /// (RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    /// The S256 `code_challenge`.
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
}

pub struct Consent {
    pub request: AuthRequest,
    pub expires_at: i64,
}

pub struct AuthCode {
    pub request: AuthRequest,
    pub sub: String,
    pub expires_at: i64,
    /// Set when the code is redeemed. A used code stays until it expires so that a second use is
    /// recognised and the tokens issued from the first one revoked (RFC 6749 §4.1.2).
    pub used: bool,
    /// The refresh-token family the code started, if it granted `offline_access`.
    pub family: Option<String>,
}

pub struct RefreshToken {
    pub client_id: String,
    /// Every token rotated from the same code shares a family; reuse of any revokes them all.
    pub family: String,
    pub grant: Grant,
    pub expires_at: i64,
    /// Set when it has been exchanged for a new one; kept to detect reuse.
    pub used: bool,
}

trait Expires {
    fn expires_at(&self) -> i64;
}

impl Expires for Consent {
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Expires for AuthCode {
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Expires for RefreshToken {
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

/// A map that reached its bound; the name says which.
#[derive(Debug)]
pub struct Full(pub &'static str);

#[derive(Default)]
pub struct Store {
    clients: HashMap<String, Client>,
    consents: HashMap<String, Consent>,
    codes: HashMap<Vec<u8>, AuthCode>,
    refresh_tokens: HashMap<Vec<u8>, RefreshToken>,
}

/// The map key of a code or refresh token.
fn secret_key(secret: &str) -> Vec<u8> {
    sha256(secret.as_bytes())
}

fn insert_bounded<K: Eq + Hash, V: Expires>(
    map: &mut HashMap<K, V>,
    key: K,
    value: V,
    cap: usize,
    now: i64,
    name: &'static str,
) -> Result<(), Full> {
    if map.len() >= cap {
        map.retain(|_, entry| entry.expires_at() >= now);
    }
    if map.len() >= cap {
        return Err(Full(name));
    }
    map.insert(key, value);
    Ok(())
}

impl Store {
    pub fn add_client(&mut self, client: Client) -> Result<(), Full> {
        if self.clients.len() >= MAX_CLIENTS {
            return Err(Full("registered clients"));
        }
        self.clients.insert(client.id.clone(), client);
        Ok(())
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    pub fn add_consent(&mut self, id: String, consent: Consent, now: i64) -> Result<(), Full> {
        insert_bounded(
            &mut self.consents,
            id,
            consent,
            MAX_CONSENTS,
            now,
            "pending consents",
        )
    }

    /// Removes and returns a pending consent that has not expired: each can be answered once.
    pub fn take_consent(&mut self, id: &str, now: i64) -> Option<Consent> {
        self.consents
            .remove(id)
            .filter(|consent| consent.expires_at >= now)
    }

    pub fn add_code(&mut self, code: &str, entry: AuthCode, now: i64) -> Result<(), Full> {
        insert_bounded(
            &mut self.codes,
            secret_key(code),
            entry,
            MAX_CODES,
            now,
            "authorization codes",
        )
    }

    pub fn code_mut(&mut self, code: &str) -> Option<&mut AuthCode> {
        self.codes.get_mut(&secret_key(code))
    }

    pub fn add_refresh_token(
        &mut self,
        token: &str,
        entry: RefreshToken,
        now: i64,
    ) -> Result<(), Full> {
        insert_bounded(
            &mut self.refresh_tokens,
            secret_key(token),
            entry,
            MAX_REFRESH_TOKENS,
            now,
            "refresh tokens",
        )
    }

    pub fn refresh_token_mut(&mut self, token: &str) -> Option<&mut RefreshToken> {
        self.refresh_tokens.get_mut(&secret_key(token))
    }

    /// Forgets every refresh token of `family`; returns how many there were.
    pub fn revoke_family(&mut self, family: &str) -> usize {
        let before = self.refresh_tokens.len();
        self.refresh_tokens
            .retain(|_, token| token.family != family);
        before - self.refresh_tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "c".into(),
            client_name: None,
            redirect_uri: "http://127.0.0.1/cb".into(),
            redirect_uri_given: true,
            state: None,
            code_challenge: "x".into(),
            scopes: vec![],
            audiences: vec![],
        }
    }

    fn code(expires_at: i64) -> AuthCode {
        AuthCode {
            request: request(),
            sub: "u".into(),
            expires_at,
            used: false,
            family: None,
        }
    }

    #[test]
    fn codes_are_bounded_and_expired_ones_make_room() {
        let mut store = Store::default();
        for n in 0..MAX_CODES {
            store.add_code(&format!("code-{n}"), code(100), 50).unwrap();
        }
        assert!(
            store.add_code("one-more", code(100), 50).is_err(),
            "full of live codes"
        );
        assert!(
            store.add_code("one-more", code(300), 200).is_ok(),
            "expired codes were dropped"
        );
        assert!(store.code_mut("code-1").is_none());
        assert!(store.code_mut("one-more").is_some());
    }

    #[test]
    fn consents_are_single_use_and_expire() {
        let mut store = Store::default();
        let consent = |expires_at| Consent {
            request: request(),
            expires_at,
        };
        store.add_consent("a".into(), consent(100), 0).unwrap();
        store.add_consent("b".into(), consent(100), 0).unwrap();
        assert!(store.take_consent("a", 50).is_some());
        assert!(store.take_consent("a", 50).is_none(), "answered once");
        assert!(store.take_consent("b", 101).is_none(), "expired");
    }

    #[test]
    fn revoking_a_family_leaves_other_families() {
        let mut store = Store::default();
        let token = |family: &str| RefreshToken {
            client_id: "c".into(),
            family: family.into(),
            grant: Grant {
                sub: "u".into(),
                scopes: vec![],
                audiences: vec![],
            },
            expires_at: 100,
            used: false,
        };
        store.add_refresh_token("r1", token("f1"), 0).unwrap();
        store.add_refresh_token("r2", token("f1"), 0).unwrap();
        store.add_refresh_token("r3", token("f2"), 0).unwrap();
        assert_eq!(store.revoke_family("f1"), 2);
        assert!(store.refresh_token_mut("r1").is_none());
        assert!(store.refresh_token_mut("r3").is_some());
    }

    #[test]
    fn clients_are_bounded() {
        let mut store = Store::default();
        let client = |id: usize| Client {
            id: id.to_string(),
            name: None,
            secret_hash: None,
            auth_method: AuthMethod::None,
            redirect_uris: vec![],
            grant_types: vec![],
        };
        for id in 0..MAX_CLIENTS {
            store.add_client(client(id)).unwrap();
        }
        assert!(store.add_client(client(MAX_CLIENTS)).is_err());
    }
}
