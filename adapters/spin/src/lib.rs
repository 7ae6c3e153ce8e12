//! The Fermyon Spin adapter: translates Spin's HTTP request, outbound HTTP, key-value store,
//! SQLite, Redis and variables into the core's types and back. No gateway logic lives here.
//!
//! Built on `spin-sdk` 7 (WASI 0.3: `wasi:http@0.3.0` and the async component model), for the
//! `wasm32-wasip2` target. Bindings (see `spin.toml` and docs/spin.md):
//! - variable `gateway_config`: the configuration document shipped with the application;
//! - key-value store `default`, key `config`: overrides the shipped document when present;
//! - provider keys as (secret) variables: a provider's `api_key_secret` `OPENAI_API_KEY` is read
//!   from the Spin variable `openai_api_key` (Spin variable names are lower-case);
//! - outbound HTTP to the hosts listed in `allowed_outbound_hosts`;
//! - limit counters in SQLite database `default` (`sqlite_databases`), or in Redis when the
//!   variable `counter_store` is `redis` (see `counters`);
//! - the semantic cache's vector index in the same SQLite database (see `vectors`); variable
//!   `jurisdictions`: the jurisdictions this deployment runs in (a partition of another one is
//!   refused).
//!
//! Consistency and lifetime of what this adapter gives the core:
//!
//! | method     | Spin                                                                       |
//! |------------|----------------------------------------------------------------------------|
//! | `kv_get`/`kv_put`/`kv_list` | store `default`: eventually consistent when hosted (SQLite under `spin up`) |
//! | `cache_get`/`cache_put` | the same store, keys `cache/<hash>`, values ≤ 1 MB with their expiry in front (one tier: there is no per-location cache) |
//! | `fetch`    | `wasi:http/client.send`, streamed body; dropping the body cancels the call |
//! | `sleep`    | `wasi:clocks/monotonic-clock.wait-for`                                      |
//! | `secret`   | Spin variables, read once per component instance (blocks on first read)    |
//! | `counter`  | SQLite `default` or Redis: compare-and-swap per op (`edge::counter_store`) |
//! | `vector_upsert`/`vector_query` | SQLite `default`, table `gateway_vectors`: a partition's rows scanned per op (`edge::vector_store`); strongly consistent |
//! | `wait_until` | `wasip3::spawn`: runs on the request's task after the response is returned |

mod counters;
mod database;
mod vectors;
mod request_log;
mod stats;

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use edge::{Body, BodyError, ByteStream, FetchError, HostError, OutboundRequest, OutboundResponse, RequestFacts, VectorMatch, VectorPartition};
use policy::limits::{CounterOp, CounterReply};
use futures::StreamExt;
use http_body::Frame;
use http_body_util::BodyDataStream;
use spin_sdk::http::{FullBody, Request};
use spin_sdk::http_service;
use spin_sdk::key_value::{self, Store};
use spin_sdk::variables;
use spin_sdk::wasip3::http::types::ErrorCode;

/// The Spin variable holding the shipped configuration document.
const CONFIG_VARIABLE: &str = "gateway_config";
/// The key-value store whose key `config` overrides the shipped document.
const KV_STORE: &str = "default";
/// Prefix of the response cache's keys in the store.
const CACHE_PREFIX: &str = "cache/";
/// Largest value Spin's key-value store takes (its documented default limit).
const CACHE_MAX_VALUE_BYTES: usize = 1024 * 1024;

thread_local! {
    /// One gateway per component instance: the parsed configuration is cached across the
    /// requests an instance serves (Spin may serve several, concurrently, from one instance).
    static GATEWAY: Rc<edge::Gateway> = Rc::new(edge::Gateway::new());
    /// Variables already read by this instance (`None`: undefined or empty).
    static VARIABLES: RefCell<HashMap<String, Option<String>>> = RefCell::new(HashMap::new());
}

/// The Spin variable name for a secret name from the config (`OPENAI_API_KEY` ->
/// `openai_api_key`): Spin variable names are lower-case letters, digits and underscores.
fn variable_name(secret: &str) -> String {
    secret.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// Reads a variable through the per-instance cache. An undefined or empty variable is `None`
/// (optional secrets are declared in `spin.toml` with `default = ""`). A failing variables
/// provider (e.g. Vault unreachable) is also `None` for this request, but is not cached.
pub(crate) async fn read_variable(name: &str) -> Option<String> {
    if let Some(cached) = VARIABLES.with(|v| v.borrow().get(name).cloned()) {
        return cached;
    }
    let value = match variables::get(name).await {
        Ok(value) => Some(value).filter(|v| !v.is_empty()),
        Err(variables::Error::Undefined(_) | variables::Error::InvalidName(_)) => None,
        Err(_) => return None,
    };
    VARIABLES.with(|v| v.borrow_mut().insert(name.to_string(), value.clone()));
    value
}

/// Spin's platform facilities seen through the core's host trait.
#[derive(Clone)]
struct SpinHost {
    /// `gateway_config`, read (asynchronously) before the request is handed to the core.
    shipped_config: Option<Rc<str>>,
}

impl edge::Host for SpinHost {
    fn now_ms(&self) -> u64 {
        let now = spin_sdk::wasip3::clocks::system_clock::now();
        (now.seconds.max(0) as u64) * 1000 + u64::from(now.nanoseconds / 1_000_000)
    }

    fn random_u64(&self) -> u64 {
        spin_sdk::wasip3::random::insecure::get_insecure_random_u64() // request ids only
    }

    fn secure_random(&self) -> [u8; 32] {
        let bytes = spin_sdk::wasip3::random::random::get_random_bytes(32);
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes[..32]);
        out
    }

    fn sleep(&self, ms: u64) -> impl std::future::Future<Output = ()> + 'static {
        spin_sdk::time::sleep(Duration::from_millis(ms))
    }

    fn secret(&self, name: &str) -> Option<String> {
        // The trait is synchronous and Spin 7's variables API is async: block this task on the
        // host call (only the first read per instance; later reads hit the cache).
        let name = variable_name(name);
        spin_sdk::wit_bindgen::block_on(async move { read_variable(&name).await })
    }

    fn shipped_config(&self) -> Option<String> {
        self.shipped_config.as_deref().map(str::to_string)
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, HostError> {
        let store = match Store::open(KV_STORE).await {
            Ok(store) => store,
            // Not granted in spin.toml (`key_value_stores`): KV is optional, use the shipped config.
            Err(key_value::Error::NoSuchStore | key_value::Error::AccessDenied) => return Ok(None),
            Err(e) => return Err(HostError(format!("key-value store {KV_STORE}: {e}"))),
        };
        match store.get(key).await {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => {
                String::from_utf8(bytes).map(Some).map_err(|_| HostError(format!("key {key}: not UTF-8")))
            }
            Err(e) => Err(HostError(format!("key-value get {key}: {e}"))),
        }
    }

    async fn kv_put(&self, key: &str, value: &str) -> Result<(), HostError> {
        let store = Store::open(KV_STORE).await.map_err(|e| HostError(format!("key-value store {KV_STORE}: {e}")))?;
        store.set(key, value.as_bytes()).await.map_err(|e| HostError(format!("key-value set {key}: {e}")))
    }

    /// A cached answer; its expiry (8 bytes, big-endian milliseconds) is stored in front of it,
    /// since the store has no TTL: an expired entry is deleted when found.
    async fn cache_get(&self, key: &str, _placement: edge::CachePlacement) -> Result<Option<Vec<u8>>, HostError> {
        let Ok(store) = Store::open(KV_STORE).await else { return Ok(None) };
        let key = format!("{CACHE_PREFIX}{key}");
        let Some(stored) = store.get(&key).await.map_err(|e| HostError(format!("key-value get: {e}")))? else { return Ok(None) };
        let Some((expiry, value)) = stored.split_first_chunk::<8>() else { return Ok(None) };
        if u64::from_be_bytes(*expiry) <= self.now_ms() {
            let _ = store.delete(&key).await;
            return Ok(None);
        }
        Ok(Some(value.to_vec()))
    }

    /// The store is one tier wherever the component runs; the placement (no global tier for a
    /// residency-bound tenant) is the operator's choice of where the store lives.
    async fn cache_put(&self, key: &str, value: Vec<u8>, ttl_s: u64, _placement: edge::CachePlacement) -> Result<(), HostError> {
        if value.len() + 8 > CACHE_MAX_VALUE_BYTES {
            return Err(HostError("the entry is larger than the key-value store takes".into()));
        }
        let store = Store::open(KV_STORE).await.map_err(|e| HostError(format!("key-value store {KV_STORE}: {e}")))?;
        let expiry = self.now_ms().saturating_add(ttl_s.saturating_mul(1000));
        let mut stored = Vec::with_capacity(value.len() + 8);
        stored.extend_from_slice(&expiry.to_be_bytes());
        stored.extend_from_slice(&value);
        store.set(&format!("{CACHE_PREFIX}{key}"), &stored).await.map_err(|e| HostError(format!("key-value set: {e}")))
    }

    async fn kv_list(&self, prefix: &str) -> Result<Vec<String>, HostError> {
        let store = match Store::open(KV_STORE).await {
            Ok(store) => store,
            Err(key_value::Error::NoSuchStore | key_value::Error::AccessDenied) => return Ok(Vec::new()),
            Err(e) => return Err(HostError(format!("key-value store {KV_STORE}: {e}"))),
        };
        let keys = store.get_keys().await.collect().await.map_err(|e| HostError(format!("key-value list: {e}")))?;
        let mut keys: Vec<String> = keys.into_iter().filter(|k| k.starts_with(prefix)).collect();
        keys.sort_unstable();
        Ok(keys)
    }

    async fn fetch(&self, request: OutboundRequest) -> Result<OutboundResponse, FetchError> {
        let mut builder = http::Request::builder().method(request.method).uri(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if !request.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length")) {
            // The body is whole: send it with a length rather than chunked, as fetch() does.
            builder = builder.header("content-length", request.body.len());
        }
        let outbound = builder
            .body(FullBody::new(Bytes::from(request.body)))
            .map_err(|e| FetchError::InvalidRequest(e.to_string()))?;
        let response = spin_sdk::http::send(outbound).await.map_err(fetch_error)?;
        let status = response.status().as_u16();
        let headers = header_pairs(response.headers());
        // Dropping this stream drops the wasi:http body stream, which cancels the upstream call.
        let body = BodyDataStream::new(response.into_body())
            .map(|chunk| chunk.map(|bytes| bytes.to_vec()).map_err(|e| BodyError(e.to_string())));
        Ok(OutboundResponse { status, headers, body: Body::Stream(Box::pin(body)) })
    }

    fn emit(&self, event: &edge::UsageEvent) {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}"); // Spin collects component stdout (`.spin/logs`, `spin cloud logs`)
        }
    }

    /// SQLite (default) or Redis, each op a compare-and-swap on the subject's state: strongly
    /// consistent across instances that share the store, persisted before the reply. Spin's
    /// key-value store could not do this (no atomic read-modify-write, eventually consistent
    /// when hosted). See `counters` and docs/spin.md.
    async fn counter(&self, subject: &str, jurisdiction: Option<&str>, op: &CounterOp) -> Result<CounterReply, HostError> {
        counters::apply(subject, jurisdiction, op, || edge::Host::now_ms(self)).await
    }

    /// The semantic cache's index: rows of SQLite `default`, the partition scanned per op
    /// (`edge::vector_store`); written before the reply, so the next query sees it. A partition
    /// with a jurisdiction only where the variable `jurisdictions` declares it (see `vectors`).
    async fn vector_upsert(&self, at: &VectorPartition<'_>, id: &str, vector: &[f32], metadata: &str) -> Result<(), HostError> {
        vectors::upsert(at, id, vector, metadata).await
    }

    async fn vector_query(&self, at: &VectorPartition<'_>, vector: &[f32], top_k: usize) -> Result<Vec<VectorMatch>, HostError> {
        vectors::query(at, vector, top_k).await
    }

    async fn stats(&self, shard: u32, op: &policy::stats::StatsOp) -> Result<policy::stats::StatsReply, HostError> {
        stats::apply(shard, op).await
    }

    async fn request_log(&self, shard: u32, op: &policy::reqlog::LogOp) -> Result<policy::reqlog::LogReply, HostError> {
        request_log::apply(shard, op).await
    }

    /// Spawned on the current component-model task (`wasip3::spawn`, the same mechanism the SDK
    /// uses to stream the response body after the handler returned): it runs concurrently with
    /// the response body and the host keeps the instance alive until every spawned task is done.
    /// Calling this inside `wit_bindgen::block_on` (as `secret` does) would make that call wait
    /// for the task; the core only calls it from the request's async code.
    fn wait_until(&self, task: impl std::future::Future<Output = ()> + 'static) {
        spin_sdk::wasip3::spawn(task);
    }
}

fn fetch_error(code: ErrorCode) -> FetchError {
    match code {
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
            FetchError::InvalidRequest(code.to_string())
        }
        ErrorCode::HttpRequestDenied => {
            FetchError::Connect("outbound request denied: the host is not in allowed_outbound_hosts (spin.toml)".into())
        }
        other => FetchError::Connect(other.to_string()),
    }
}

fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect()
}

fn into_core_request(request: Request) -> edge::Request {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_ascii_uppercase();
    let body = if matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        Body::Empty
    } else {
        let stream = BodyDataStream::new(body)
            .map(|chunk| chunk.map(|bytes| bytes.to_vec()).map_err(|e| BodyError(e.to_string())));
        Body::Stream(Box::pin(stream))
    };
    edge::Request {
        method,
        path: parts.uri.path().to_string(),
        headers: header_pairs(&parts.headers),
        body,
        // Spin reports no location for a request (no country/colo): routing sees "unknown".
        facts: RequestFacts { query: parts.uri.query().map(str::to_string), ..RequestFacts::default() },
    }
}

/// The core's response body as an `http_body::Body` (the SDK streams it to the client from a
/// task after the handler returns). Not `Send`: it may hold the upstream's body stream.
enum ResponseBody {
    Empty,
    Bytes(Option<Bytes>),
    Stream(ByteStream),
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(stream) => stream.as_mut().poll_next(cx).map(|chunk| {
                chunk.map(|c| c.map(|bytes| Frame::data(Bytes::from(bytes))).map_err(|e| std::io::Error::other(e.0)))
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Empty | ResponseBody::Bytes(None))
    }
}

fn into_spin_response(response: edge::Response) -> http::Response<ResponseBody> {
    let mut builder = http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name, value);
    }
    let body = match response.body {
        Body::Empty => ResponseBody::Empty,
        Body::Bytes(bytes) => ResponseBody::Bytes(Some(Bytes::from(bytes))),
        Body::Stream(stream) => ResponseBody::Stream(stream),
    };
    builder.body(body).unwrap_or_else(|_| {
        // Only reachable if the core produced an invalid header; never expected.
        let mut fallback = http::Response::new(ResponseBody::Empty);
        *fallback.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

#[http_service]
async fn handle(request: Request) -> http::Response<ResponseBody> {
    let gateway = GATEWAY.with(Rc::clone);
    let host = SpinHost { shipped_config: read_variable(CONFIG_VARIABLE).await.map(Rc::from) };
    let response = gateway.handle(into_core_request(request), &host).await;
    into_spin_response(response)
}
