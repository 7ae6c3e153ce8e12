//! The `admin` section: the admin API's credential, kept as the SHA-256 of its key.

use policy::KeyTable;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    key_sha256: String,
    /// How long audit entries are listed, in days (default 90, at most 3650).
    #[serde(default)]
    audit_retention_days: Option<u64>,
}

/// The admin API's credential (its SHA-256; the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub key_sha256: [u8; 32],
    /// Audit entries older than this many days are no longer listed.
    pub audit_retention_days: u64,
}

/// The admin credential, which must not also be a consumer key.
pub(super) fn validate_admin(raw: Option<RawAdmin>, keys: &KeyTable, issue: &mut impl FnMut(String, String)) -> Option<Admin> {
    let admin = raw.and_then(|a| match policy::auth::parse_key_digest(&a.key_sha256) {
        Some(key_sha256) => Some(Admin { key_sha256, audit_retention_days: a.audit_retention_days.unwrap_or(90).clamp(1, 3650) }),
        None => {
            issue("admin.key_sha256".into(), "must be the 64-hex-digit SHA-256 of the admin key (never the key itself)".into());
            None
        }
    });
    if let (Some(admin), KeyTable::Keys(consumer_keys)) = (&admin, keys) {
        if consumer_keys.iter().any(|k| k.key_sha256 == admin.key_sha256) {
            issue("admin.key_sha256".into(), "the admin key must not also be a consumer key".into());
        }
    }
    admin
}
