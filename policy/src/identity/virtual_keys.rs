//! Virtual API keys: keys the gateway issues per consumer at runtime (through the admin API),
//! as opposed to the keys listed in the configuration.
//!
//! A key is shown once, when it is created; the store keeps only its SHA-256 and a record of who
//! it belongs to. Records are looked up by digest when a key is presented, by id when an admin
//! revokes one, and listed per consumer. A key can expire and can be revoked; a revoked record is
//! kept (with the time of revocation) so the audit trail and listings still show it.

use serde::{Deserialize, Serialize};

/// The prefix of every issued key, so leaked keys are recognisable (secret scanners, our own PII
/// detector) and never confused with provider keys.
pub const KEY_PREFIX: &str = "sk-gw-";

/// One issued key, without the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualKey {
    /// `vk_` + 16 hex digits; safe to show and log.
    pub id: String,
    pub consumer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Model allow-list (exact names, `*`, `prefix*`); `None` = every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// A label for people ("ci", "mobile app").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
    /// The first characters of the key (`sk-gw-1a2b…`), so people can tell keys apart.
    pub hint: String,
    /// Issued for a consumer the configuration did not declare: the key's own `models` are its
    /// only bound. A key issued for a declared consumer (`false`, and every record written
    /// before this field existed) dies with that consumer: see [`VirtualKey::owner_present`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standalone: bool,
}

/// Whether a presented key may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

impl VirtualKey {
    /// Whether the key still has an owner, given whether the current configuration declares its
    /// consumer. A key issued for a declared consumer must not outlive it: removing the consumer
    /// would otherwise leave a key bounded by nothing (no consumer's model list, limits or tenant).
    pub fn owner_present(&self, consumer_declared: bool) -> bool {
        self.standalone || consumer_declared
    }

    pub fn status(&self, now_ms: u64) -> KeyStatus {
        if self.revoked_ms.is_some() {
            KeyStatus::Revoked
        } else if self.expires_ms.is_some_and(|e| now_ms >= e) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// A new key and its record. `random` must come from a cryptographic source (the host's).
#[allow(clippy::too_many_arguments)]
pub fn issue(
    random: [u64; 4],
    id_random: u64,
    consumer: &str,
    tenant: Option<String>,
    models: Option<Vec<String>>,
    name: Option<String>,
    now_ms: u64,
    ttl_ms: Option<u64>,
) -> (String, VirtualKey) {
    let mut secret = String::from(KEY_PREFIX);
    for word in random {
        secret.push_str(&format!("{word:016x}"));
    }
    let record = VirtualKey {
        id: format!("vk_{id_random:016x}"),
        consumer: consumer.to_string(),
        tenant,
        models,
        name,
        created_ms: now_ms,
        expires_ms: ttl_ms.map(|t| now_ms.saturating_add(t)),
        revoked_ms: None,
        hint: format!("{}…", &secret[..KEY_PREFIX.len() + 4]),
        standalone: false,
    };
    (secret, record)
}

/// The store key of a record, by the key's SHA-256 (hex).
pub fn record_key(digest_hex: &str) -> String {
    format!("vkey:{digest_hex}")
}

/// The store key mapping a key id to its digest (for revocation by id).
pub fn id_key(id: &str) -> String {
    format!("vkey-id:{id}")
}

/// The store key listing a consumer's keys: one entry per key, under a common prefix.
pub fn consumer_index_key(consumer: &str, id: &str) -> String {
    format!("vkey-consumer:{consumer}:{id}")
}

pub fn consumer_index_prefix(consumer: &str) -> String {
    format!("vkey-consumer:{consumer}:")
}

/// Whether a string looks like an issued key (cheap check before hashing and a store read).
pub fn looks_like_virtual_key(presented: &str) -> bool {
    presented.len() == KEY_PREFIX.len() + 64 && presented.starts_with(KEY_PREFIX) && presented[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_have_the_prefix_256_random_bits_and_a_hint() {
        let (secret, record) = issue([1, 2, 3, u64::MAX], 0xabc, "alice", Some("acme".into()), None, None, 1_000, Some(500));
        assert!(looks_like_virtual_key(&secret));
        assert_eq!(secret.len(), 6 + 64);
        assert_eq!(record.id, "vk_0000000000000abc");
        assert_eq!(record.hint, "sk-gw-0000…");
        assert!(!serde_json::to_string(&record).unwrap().contains(&secret[6..]), "the record never holds the key");
        assert_eq!(record.status(1_499), KeyStatus::Active);
        assert_eq!(record.status(1_500), KeyStatus::Expired);
        let revoked = VirtualKey { revoked_ms: Some(1_200), ..record };
        assert_eq!(revoked.status(1_300), KeyStatus::Revoked);
    }

    #[test]
    fn a_key_for_a_declared_consumer_dies_with_it_and_old_records_fail_closed() {
        let (_, record) = issue([1, 2, 3, 4], 1, "alice", None, None, None, 0, None);
        assert!(record.owner_present(true));
        assert!(!record.owner_present(false), "the consumer was removed");
        let standalone = VirtualKey { standalone: true, ..record.clone() };
        assert!(standalone.owner_present(false));
        let mut old = serde_json::to_value(&record).unwrap();
        old.as_object_mut().unwrap().remove("standalone");
        let old: VirtualKey = serde_json::from_value(old).unwrap();
        assert!(!old.owner_present(false), "a record without the field is a declared consumer's");
    }

    #[test]
    fn only_the_issued_shape_is_looked_up() {
        assert!(!looks_like_virtual_key("sk-gw-short"));
        assert!(!looks_like_virtual_key(&format!("sk-xx-{}", "a".repeat(64))));
        assert!(!looks_like_virtual_key(&format!("sk-gw-{}", "g".repeat(64))));
    }
}
