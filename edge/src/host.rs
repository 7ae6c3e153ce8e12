//! The one trait through which the core reaches the outside world.
//!
//! The core never reads the clock, draws random numbers, reads environment variables, opens
//! sockets or spawns tasks: every such effect goes through [`Host`]. That keeps the pipeline
//! deterministic under test (a manual clock, scripted upstreams) and lets the same code run in a
//! Cloudflare Worker, a Spin component and `cargo test`.
//!
//! The trait uses plain `async fn` without a `Send` bound, so it can be implemented over the
//! Worker's JS-backed (`!Send`) types and used through generics (`Gateway::handle<H: Host>`).
//!
//! Consistency each adapter gives:
//!
//! | method     | Cloudflare Workers                        | in-memory host           |
//! |------------|-------------------------------------------|--------------------------|
//! | `kv_get`/`kv_put`/`kv_list` | Workers KV: eventually consistent (~60 s) | immediate |
//! | `fetch`    | `fetch()` subrequest, streamed body       | scripted upstreams       |
//! | `sleep`    | `setTimeout`                              | resolves at once (virtual time) |
//! | `cache_get`/`cache_put` | Cache API of the location (immediate there, per location), then KV when bound (eventually consistent, ~60 s) | immediate, both tiers in maps |
//! | `counter`  | one Durable Object per subject: strongly consistent, one op at a time, durable | a map applied atomically |
//! | `wait_until` | `ctx.waitUntil`: runs after the response, bounded by the platform | queued until `run_background` |
//! | `stats` | one Durable Object per shard (SQLite, one op at a time, durable) | a map per shard |
//! | `request_log` | the same Durable Object per shard as `stats` (other tables) | a map per shard |
//! | `vector_upsert`/`vector_query` | one Durable Object per partition (SQLite, strongly consistent, read-your-writes); or Vectorize (eventually consistent: an upsert is queryable after a few seconds) | a map, immediate |
//!
//! On Spin, `counter` runs over SQLite (default) or Redis with a compare-and-swap per op
//! (`counter_store`, docs/spin.md): Spin's SDK has no transaction that spans requests.
//! `vector_upsert`/`vector_query` run over SQLite rows per partition (`vector_store`, strongly
//! consistent); a partition with a jurisdiction only where the deployment declares it.

use std::future::Future;

use futures::future::{select, Either};
use policy::limits::{CounterOp, CounterReply};
use policy::reqlog::{LogOp, LogReply};
use policy::stats::{StatsOp, StatsReply};

pub use policy::cache::VectorMatch;

pub use crate::http::{Body, BodyChunk, BodyError, ByteStream, RequestFacts};

use crate::event::UsageEvent;

/// An HTTP request the core wants sent upstream.
#[derive(Debug)]
pub struct OutboundRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The upstream's answer: status and headers arrived, the body may still be streaming.
#[derive(Debug)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl OutboundResponse {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::find_header(&self.headers, name)
    }
}

/// Why an outbound call produced no response at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// DNS, TCP, TLS or similar: nothing came back.
    Connect(String),
    /// The request could not even be built (bad URL, invalid header).
    InvalidRequest(String),
}

/// A failure of a host facility other than outbound HTTP (e.g. the KV store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

/// Where a cached answer may be kept (docs/cache.md, "Where entries live").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePlacement {
    /// Only in the tier of the location serving the request: a tenant whose data must stay in a
    /// jurisdiction, at a location inside it. Never replicated, never in a global store.
    LocalOnly,
    /// The location's tier and, where the platform has one, a global tier.
    Anywhere,
}

/// Where a semantic-cache vector lives: a named index (the cache stage's `responses`), one
/// partition of it (see `policy::cache::partition_id`), and the jurisdiction its data must stay
/// in, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorPartition<'a> {
    pub index: &'a str,
    pub partition: &'a str,
    /// `Some("eu")`: stored only where that jurisdiction allows (a jurisdiction-pinned Durable
    /// Object on Workers, never a global index); the same partition under another jurisdiction is
    /// a different one.
    pub jurisdiction: Option<&'a str>,
}

/// Everything a platform provides to the gateway core.
#[allow(async_fn_in_trait)] // deliberately no Send bound: Worker types are !Send
pub trait Host: Clone + 'static {
    /// Milliseconds since the Unix epoch. On Workers this only advances across I/O.
    fn now_ms(&self) -> u64;

    /// 64 random bits (request ids, jitter, sampling); not for secrets.
    fn random_u64(&self) -> u64;

    /// 32 bytes from a cryptographically secure source (`crypto.getRandomValues` on Workers,
    /// `wasi:random` on Spin), for secrets the gateway issues: virtual API keys.
    fn secure_random(&self) -> [u8; 32];

    /// A timer that completes after `ms` milliseconds; used for upstream timeouts.
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + 'static;

    /// A secret (provider API key) by name. Secrets never come from the config document.
    fn secret(&self, name: &str) -> Option<String>;

    /// The configuration document shipped with the deployment (a Worker var), if any.
    fn shipped_config(&self) -> Option<String>;

    /// Read a value from the platform's key-value store (config, virtual keys, audit log).
    async fn kv_get(&self, key: &str) -> Result<Option<String>, HostError>;

    /// Write a value to the key-value store. An error when the platform has no store bound (the
    /// admin API needs one; reads without a store just find nothing).
    async fn kv_put(&self, key: &str, value: &str) -> Result<(), HostError>;

    /// Every key that starts with `prefix`, in lexicographic order (all pages).
    async fn kv_list(&self, prefix: &str) -> Result<Vec<String>, HostError>;

    /// A cached answer stored under `key` (a hex digest), if any: the location's tier first, then
    /// the global tier when `placement` allows one. Stale reads are possible (a global tier is
    /// eventually consistent), which the entry's own timestamp bounds. Hosts without a response
    /// cache find nothing.
    async fn cache_get(&self, key: &str, placement: CachePlacement) -> Result<Option<Vec<u8>>, HostError> {
        let _ = (key, placement);
        Ok(None)
    }

    /// Store a cached answer for `ttl_s` seconds where `placement` allows. Best effort: a lost
    /// write costs a later miss, so callers run it in the background and ignore its error.
    async fn cache_put(&self, key: &str, value: Vec<u8>, ttl_s: u64, placement: CachePlacement) -> Result<(), HostError> {
        let _ = (key, value, ttl_s, placement);
        Err(HostError("this host has no response cache".into()))
    }

    /// Send a request upstream. Resolves when the response head has arrived; the body streams.
    /// Dropping the returned body must cancel the upstream call.
    async fn fetch(&self, request: OutboundRequest) -> Result<OutboundResponse, FetchError>;

    /// Run a model through the platform's AI binding named `binding` (Workers AI's
    /// `env.AI.run(model, inputs)`); `inputs` is JSON. The answer is shaped like an HTTP one:
    /// status 200 with the JSON result, or with a server-sent-event stream when `stream`. Hosts
    /// without such a binding refuse, and the request fails as an unreachable upstream.
    async fn ai_run(&self, binding: &str, model: &str, inputs: &str, stream: bool) -> Result<OutboundResponse, FetchError> {
        let _ = (model, inputs, stream);
        Err(FetchError::InvalidRequest(format!("this host has no AI binding named {binding}")))
    }

    /// Record one finished request (a structured log line on Workers).
    fn emit(&self, event: &UsageEvent);

    /// Apply one operation to the counters of `subject` (a resolved limit scope, e.g.
    /// `consumer:web`) and return the store's answer.
    ///
    /// Guarantees the core relies on (see `policy::limits::counter`, "The invariant"):
    /// - **one at a time**: the operations of one subject are applied serially, each to the state
    ///   the previous one left, with the store's own clock (time is not part of the op);
    /// - **strongly consistent**: every caller, in every location and isolate, sees the same
    ///   counters; there is no per-instance copy (a per-instance limiter lets through
    ///   limit x instances);
    /// - **durable before the reply**: a reply means the new state was persisted, so it survives
    ///   a restart of the store (on Workers: a Durable Object per subject, written to its
    ///   storage before it answers).
    ///
    /// Different subjects are independent (one object each, never one global object), so the core
    /// must not assume any ordering between them.
    ///
    /// `jurisdiction` (e.g. `"eu"`) pins the subject's state to that jurisdiction where the
    /// platform supports it; the same subject under another (or no) jurisdiction is a different
    /// counter. An error means the store could not answer (unreachable, overloaded, unsupported on
    /// this platform, unknown jurisdiction): whether the op took effect is unknown, which the ops'
    /// idempotency by reservation id makes safe to retry. The limit's `FailureMode` decides what
    /// the request gets.
    async fn counter(&self, subject: &str, jurisdiction: Option<&str>, op: &CounterOp) -> Result<CounterReply, HostError>;

    /// Apply one operation to shard `shard` of the usage rollups (`crate::rollups`): add a
    /// request's row (merged into the row of its hour and dimensions, rows past the retention
    /// deleted), or read the rows of a range of hours. Each shard applies its ops one at a time
    /// and durably (a Durable Object per shard on Workers, SQLite on Spin). Hosts without a
    /// store refuse: nothing is rolled up and `/admin/stats` answers 503.
    async fn stats(&self, shard: u32, op: &StatsOp) -> Result<StatsReply, HostError> {
        let _ = (shard, op);
        Err(HostError("this host has no stats store".into()))
    }

    /// Apply one operation to shard `shard` of the request log (`crate::request_log`): keep a
    /// request's ownership row (and its entry when opted in), read entries, attach feedback.
    /// Each shard applies its ops one at a time and durably, and deletes rows past their
    /// `expires_ms` on write. Hosts without a store refuse: nothing is logged, feedback answers
    /// 503 and `/admin/requests` 503.
    async fn request_log(&self, shard: u32, op: &LogOp) -> Result<LogReply, HostError> {
        let _ = (shard, op);
        Err(HostError("this host has no request log store".into()))
    }

    /// Store `vector` under `id` in one partition of a vector index, replacing an entry with the
    /// same id, with `metadata` (opaque text, JSON by convention: the cached query and the exact
    /// cache key of its answer) returned by [`vector_query`](Self::vector_query).
    ///
    /// Each partition is bounded (`policy::cache::DEFAULT_PARTITION_CAPACITY` on the embedded
    /// stores): past it the oldest write is evicted, so a partition never grows without limit.
    /// Consistency is the store's (see the table above): the Durable Object index answers the next
    /// query with this entry; Vectorize may take seconds. Hosts without an index refuse, and the
    /// semantic tier is skipped (the exact tier still works).
    async fn vector_upsert(&self, at: &VectorPartition<'_>, id: &str, vector: &[f32], metadata: &str) -> Result<(), HostError> {
        let _ = (id, vector, metadata);
        Err(HostError(format!("this host has no vector index {:?}", at.index)))
    }

    /// The `top_k` entries of one partition most similar to `vector` (cosine similarity, best
    /// first), never an entry of another partition. Entries of another dimension never match.
    async fn vector_query(&self, at: &VectorPartition<'_>, vector: &[f32], top_k: usize) -> Result<Vec<VectorMatch>, HostError> {
        let _ = (vector, top_k);
        Err(HostError(format!("this host has no vector index {:?}", at.index)))
    }

    /// Run `task` in the background, after the response has been handed to the platform: work the
    /// client must not wait for but that must not be lost, e.g. settling a stream's usage once its
    /// last chunk was sent, or sending an alert webhook.
    ///
    /// The platform keeps the request alive until `task` finishes (on Workers
    /// `ctx.waitUntil`, bounded by the platform's limit of about 30 s after the response;
    /// on Spin a task spawned on the request's component-model task). `task` must handle its own
    /// errors: nothing observes its outcome. It is not cancelled when the client disconnects.
    fn wait_until(&self, task: impl Future<Output = ()> + 'static);
}

/// Run `future` unless `ms` pass first (on the host's clock: virtual time under test).
pub async fn with_timeout<H: Host, T>(host: &H, ms: u64, future: impl Future<Output = T>) -> Option<T> {
    match select(Box::pin(future), Box::pin(host.sleep(ms))).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}
