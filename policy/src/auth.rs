//! Authentication of callers by API key.
//!
//! Keys are never stored: the configuration holds the SHA-256 of each key, and a presented key is
//! hashed and compared in constant time. A consumer's identity is its configured id.

use sha2::{Digest, Sha256};

/// A configured consumer key: the hex SHA-256 of the key the consumer presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerKey {
    pub consumer: String,
    pub key_sha256: [u8; 32],
}

/// Why a caller was not authenticated. The variants never carry the presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` (or `x-api-key`) credential was presented.
    MissingCredential,
    /// A credential was presented but matches no configured consumer.
    InvalidCredential,
}

/// The outcome of authenticating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Authentication is switched off in the configuration; the caller is anonymous.
    Anonymous,
    /// The presented key belongs to this consumer.
    Consumer(String),
}

/// How callers authenticate, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTable {
    /// Every request is accepted as anonymous (local development, or a gateway behind another
    /// authenticating proxy).
    Disabled,
    /// Requests must present one of these keys.
    Keys(Vec<ConsumerKey>),
}

/// Hash a key the way the configuration stores it.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Parse a 64-hex-digit SHA-256 as written in the configuration.
pub fn parse_key_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_digest).ok()?;
    bytes.try_into().ok()
}

/// Compare two digests without an early exit, so timing does not reveal a matching prefix.
pub fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl KeyTable {
    /// Decide who is calling from the credential the request presented (already stripped of its
    /// `Bearer ` prefix).
    pub fn authenticate(&self, presented: Option<&str>) -> Result<AuthDecision, AuthError> {
        match self {
            KeyTable::Disabled => Ok(AuthDecision::Anonymous),
            KeyTable::Keys(keys) => {
                let presented = presented
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .ok_or(AuthError::MissingCredential)?;
                let digest = key_digest(presented);
                // Check every key so the time taken does not depend on which one matched.
                let mut found = None;
                for key in keys {
                    if digest_eq(&key.key_sha256, &digest) && found.is_none() {
                        found = Some(key.consumer.clone());
                    }
                }
                found.map(AuthDecision::Consumer).ok_or(AuthError::InvalidCredential)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> KeyTable {
        KeyTable::Keys(vec![
            ConsumerKey { consumer: "web".into(), key_sha256: key_digest("sk-web") },
            ConsumerKey { consumer: "batch".into(), key_sha256: key_digest("sk-batch") },
        ])
    }

    #[test]
    fn known_key_maps_to_its_consumer() {
        assert_eq!(table().authenticate(Some("sk-batch")), Ok(AuthDecision::Consumer("batch".into())));
    }

    #[test]
    fn missing_and_blank_keys_are_missing() {
        assert_eq!(table().authenticate(None), Err(AuthError::MissingCredential));
        assert_eq!(table().authenticate(Some("  ")), Err(AuthError::MissingCredential));
    }

    #[test]
    fn unknown_key_is_invalid() {
        assert_eq!(table().authenticate(Some("sk-nope")), Err(AuthError::InvalidCredential));
    }

    #[test]
    fn disabled_table_accepts_anyone_as_anonymous() {
        assert_eq!(KeyTable::Disabled.authenticate(None), Ok(AuthDecision::Anonymous));
    }

    #[test]
    fn digest_parsing_round_trips_and_rejects_bad_hex() {
        let d = key_digest("sk-web");
        assert_eq!(parse_key_digest(&hex::encode(d)), Some(d));
        assert_eq!(parse_key_digest("abc"), None);
        assert_eq!(parse_key_digest(&"zz".repeat(32)), None);
    }
}
