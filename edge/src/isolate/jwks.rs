//! Keys fetched from a configured JWKS URL, kept per isolate and shared through KV.
//!
//! Refresh rules: the set is refetched once it is older than `jwks_refresh_ms`; a failed fetch
//! keeps the previous keys and is not retried for a minute; a token whose `kid` the set does not
//! know triggers one refetch at most once a minute (anyone can send any `kid`). A fresh isolate
//! first adopts the set another isolate stored in KV, so it verifies without a round trip.

use std::cell::RefCell;

use policy::identity::{JwksSource, JwtKeySet};
use serde_json::{json, Value};

use crate::host::{with_timeout, Host, OutboundRequest};
use crate::http::read_body;

/// Refetching a JWKS for an unknown `kid` at most this often.
const JWKS_MISS_REFETCH_MS: u64 = 60_000;

/// Longest wait for the JWKS document.
const JWKS_FETCH_TIMEOUT_MS: u64 = 5_000;

/// A fetched JWKS document's keys and when they were fetched (and last tried).
struct Fetched {
    url: String,
    keys: JwtKeySet,
    fetched_at_ms: Option<u64>,
    attempted_at_ms: u64,
}

/// The JWKS keys of one isolate.
#[derive(Default)]
pub struct JwksCache {
    slot: RefCell<Option<Fetched>>,
}

impl JwksCache {
    /// The keys of `url`, fetched (or adopted from KV) when missing or older than `refresh_ms`.
    /// `None` when no fetch has ever succeeded.
    pub async fn keys<H: Host>(&self, url: &str, refresh_ms: u64, host: &H) -> Option<JwtKeySet> {
        let now_ms = host.now_ms();
        let (stale, may_try, empty) = {
            let slot = self.slot.borrow();
            let stale = slot.as_ref().is_none_or(|c| c.url != url || c.fetched_at_ms.is_none_or(|at| now_ms.saturating_sub(at) >= refresh_ms));
            let may_try = slot
                .as_ref()
                .is_none_or(|c| c.url != url || c.fetched_at_ms.is_some() || now_ms.saturating_sub(c.attempted_at_ms) >= JWKS_MISS_REFETCH_MS);
            (stale, may_try, slot.is_none())
        };
        if stale && may_try {
            let adopted = empty && self.adopt_stored(url, refresh_ms, host).await;
            if !adopted {
                self.refresh(url, host).await;
            }
        }
        self.slot.borrow().as_ref().filter(|c| c.url == url && c.fetched_at_ms.is_some()).map(|c| c.keys.clone())
    }

    /// After a token failed with an unknown key: refetch (at most once a minute) and return the
    /// new keys, or `None` when no refetch was allowed or none succeeded.
    pub async fn refetch_for_unknown_key<H: Host>(&self, url: &str, host: &H) -> Option<JwtKeySet> {
        let now_ms = host.now_ms();
        let may_refetch = self.slot.borrow().as_ref().is_none_or(|c| now_ms.saturating_sub(c.attempted_at_ms) >= JWKS_MISS_REFETCH_MS);
        if !may_refetch {
            return None;
        }
        self.refresh(url, host).await;
        self.slot.borrow().as_ref().filter(|c| c.fetched_at_ms.is_some()).map(|c| c.keys.clone())
    }

    /// Use the JWKS document stored in KV by an earlier fetch (any isolate, any location) when it
    /// is younger than `max_age_ms`.
    async fn adopt_stored<H: Host>(&self, url: &str, max_age_ms: u64, host: &H) -> bool {
        let Ok(Some(text)) = host.kv_get(&kv_key(url)).await else { return false };
        let Ok(stored) = serde_json::from_str::<Value>(&text) else { return false };
        let (Some(fetched_at), Some(document)) = (stored["fetched_at_ms"].as_u64(), stored["jwks"].as_str()) else { return false };
        let now_ms = host.now_ms();
        if now_ms.saturating_sub(fetched_at) >= max_age_ms {
            return false;
        }
        let Ok(parsed) = JwtKeySet::parse_jwks(document, JwksSource::Remote) else { return false };
        if parsed.keys.is_empty() {
            return false;
        }
        *self.slot.borrow_mut() = Some(Fetched { url: url.to_string(), keys: parsed.keys, fetched_at_ms: Some(fetched_at), attempted_at_ms: now_ms });
        true
    }

    /// Fetch the JWKS; keep the previous keys when the fetch fails or yields no usable key.
    async fn refresh<H: Host>(&self, url: &str, host: &H) {
        let now_ms = host.now_ms();
        let request = OutboundRequest {
            method: "GET",
            url: url.to_string(),
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
        };
        let call = async {
            let response = host.fetch(request).await.ok()?;
            if response.status != 200 {
                return None;
            }
            let body = read_body(response.body, 1024 * 1024).await.ok()?;
            let text = String::from_utf8(body).ok()?;
            let parsed = JwtKeySet::parse_jwks(&text, JwksSource::Remote).ok()?;
            (!parsed.keys.is_empty()).then_some((parsed.keys, text))
        };
        let fetched = with_timeout(host, JWKS_FETCH_TIMEOUT_MS, call).await.flatten();
        let mut slot = self.slot.borrow_mut();
        match (fetched, slot.as_mut().filter(|c| c.url == url)) {
            (Some((keys, text)), _) => {
                *slot = Some(Fetched { url: url.to_string(), keys, fetched_at_ms: Some(now_ms), attempted_at_ms: now_ms });
                // Share it with other isolates (public keys only; best effort).
                let stored = json!({ "fetched_at_ms": now_ms, "jwks": text }).to_string();
                let (key, store) = (kv_key(url), host.clone());
                host.wait_until(async move {
                    let _ = store.kv_put(&key, &stored).await;
                });
            }
            (None, Some(cache)) => cache.attempted_at_ms = now_ms,
            (None, None) => {
                *slot = Some(Fetched { url: url.to_string(), keys: JwtKeySet::default(), fetched_at_ms: None, attempted_at_ms: now_ms })
            }
        }
    }
}

/// The key-value key of a JWKS URL's last fetched document.
fn kv_key(url: &str) -> String {
    format!("jwks:{}", &hex::encode(policy::auth::key_digest(url))[..32])
}
