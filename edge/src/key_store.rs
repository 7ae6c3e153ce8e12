//! Virtual keys as the admin API stores them in the host's key-value store, and their lookup
//! when a client presents one. Only the SHA-256 of a key is ever stored (see
//! `policy::identity::virtual_keys` for the record and its key layout).

use policy::identity::virtual_keys::{self, KeyStatus, VirtualKey};

use crate::error::GatewayError;
use crate::host::{Host, HostError};

/// A store failure as the client sees it: the store's own message stays out of the response (it
/// may name bindings or keys), and a key that cannot be checked is not accepted.
pub fn store_error(_error: HostError) -> GatewayError {
    GatewayError::StoreUnavailable
}

/// The stored record of the key whose SHA-256 (hex) is `digest`.
pub async fn load_record<H: Host>(host: &H, digest: &str) -> Result<Option<VirtualKey>, GatewayError> {
    let text = host.kv_get(&virtual_keys::record_key(digest)).await.map_err(store_error)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// Look up a presented virtual key: the record when it is active.
pub async fn active_key<H: Host>(presented: &str, host: &H) -> Result<Option<VirtualKey>, GatewayError> {
    if !virtual_keys::looks_like_virtual_key(presented) {
        return Ok(None);
    }
    let digest = hex::encode(policy::auth::key_digest(presented));
    let record = load_record(host, &digest).await?;
    Ok(record.filter(|r| r.status(host.now_ms()) == KeyStatus::Active))
}
