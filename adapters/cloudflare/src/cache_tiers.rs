//! The response cache's two tiers on Workers (docs/cache.md, "Where entries live"):
//! - the **Cache API** of the serving location (`caches.default`), first: fast, per location,
//!   never replicated. An entry is a response under a synthetic GET URL made from the key's hash,
//!   with `Cache-Control: max-age` = the entry's TTL, so the location expires it on its own;
//! - **Workers KV** (`GATEWAY_CACHE_KV`, optional) as the global tier, only for
//!   [`CachePlacement::Anywhere`]: values up to 25 MiB, an expiration TTL (KV's minimum is 60 s;
//!   the core checks the entry's own timestamp anyway), and at most one write per key per second
//!   from this isolate (KV refuses faster writes to one key).
//!
//! A global hit is copied into the location's tier. Entries of a tenant with a residency
//! constraint are [`CachePlacement::LocalOnly`] and never touch KV.

use std::cell::RefCell;
use std::collections::HashMap;

use edge::CachePlacement;
use edge::HostError;
use worker::{Cache, Env, Headers, Response};

const CACHE_KV_BINDING: &str = "GATEWAY_CACHE_KV";
/// The synthetic origin of Cache API entries: never fetched, only a namespace for keys.
const CACHE_URL: &str = "https://gateway-cache.invalid/v1/";
/// Workers KV's largest value.
const KV_MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// Workers KV's shortest expiration TTL.
const KV_MIN_TTL_S: u64 = 60;
/// Entries in the per-isolate map of recent KV writes before it is pruned.
const RECENT_WRITES_MAX: usize = 1024;

thread_local! {
    /// When this isolate last wrote each key to KV (milliseconds), for the one-write-per-second rule.
    static RECENT_KV_WRITES: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
}

fn error(e: impl std::fmt::Display) -> HostError {
    HostError(e.to_string())
}

pub async fn get(env: &Env, key: &str, placement: CachePlacement) -> Result<Option<Vec<u8>>, HostError> {
    let cache = Cache::default();
    let url = format!("{CACHE_URL}{key}");
    if let Some(mut response) = cache.get(url.as_str(), true).await.map_err(error)? {
        return response.bytes().await.map(Some).map_err(error);
    }
    if placement != CachePlacement::Anywhere {
        return Ok(None);
    }
    let Ok(kv) = env.kv(CACHE_KV_BINDING) else { return Ok(None) };
    kv.get(key).bytes().await.map_err(error)
}

pub async fn put(env: &Env, key: &str, value: Vec<u8>, ttl_s: u64, placement: CachePlacement, now_ms: u64) -> Result<(), HostError> {
    if placement == CachePlacement::Anywhere && value.len() <= KV_MAX_VALUE_BYTES && claim_kv_write(key, now_ms) {
        if let Ok(kv) = env.kv(CACHE_KV_BINDING) {
            // A failed global write only costs other locations a miss.
            if let Ok(put) = kv.put_bytes(key, &value) {
                let _ = put.expiration_ttl(ttl_s.max(KV_MIN_TTL_S)).execute().await;
            }
        }
    }
    let headers = Headers::new();
    headers.set("cache-control", &format!("max-age={ttl_s}")).map_err(error)?;
    headers.set("content-type", "application/octet-stream").map_err(error)?;
    let response = Response::from_bytes(value).map_err(error)?.with_headers(headers);
    Cache::default().put(format!("{CACHE_URL}{key}"), response).await.map_err(error)
}

/// Whether this isolate may write `key` to KV now (not within the last second); records it.
fn claim_kv_write(key: &str, now_ms: u64) -> bool {
    RECENT_KV_WRITES.with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent.len() >= RECENT_WRITES_MAX {
            recent.retain(|_, at| now_ms.saturating_sub(*at) < 1_000);
        }
        match recent.get(key) {
            Some(at) if now_ms.saturating_sub(*at) < 1_000 => false,
            _ => {
                recent.insert(key.to_string(), now_ms);
                true
            }
        }
    })
}
