//! An in-memory [`Host`] so the whole pipeline runs in `cargo test` (and the native benchmark)
//! without a runtime: a manual clock, scripted upstreams, a map for KV, recorded events.
//!
//! Time is virtual: [`MemoryHost::sleep`] completes only when the test moves the clock past its
//! deadline with [`MemoryHost::advance`], so timeout tests never sleep and never flake.
//!
//! Counters live in one map, one [`CounterState`] per (jurisdiction, subject); each operation is
//! applied to its state in one synchronous step, so operations on one subject never interleave
//! (what a Durable Object gives on Workers). Background tasks ([`Host::wait_until`]) are queued
//! and run only when the test calls [`MemoryHost::run_background`], so a test can observe the
//! state before and after the post-response work.
//!
//! The vector index is one [`PartitionIndex`] per (index, jurisdiction, partition), bounded like
//! the Durable Object's, and immediately consistent.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::StreamExt;
use policy::cache::{PartitionIndex, DEFAULT_PARTITION_CAPACITY};
use policy::limits::{CounterOp, CounterReply, CounterState};

use crate::event::UsageEvent;
use crate::host::{Body, CachePlacement, FetchError, Host, HostError, OutboundRequest, OutboundResponse, VectorMatch, VectorPartition};

/// A vector partition's address in the in-memory index: (index, jurisdiction, partition).
type VectorKey = (String, Option<String>, String);

fn vector_key(at: &VectorPartition<'_>) -> VectorKey {
    (at.index.to_string(), at.jurisdiction.map(str::to_string), at.partition.to_string())
}

/// What a scripted upstream does with one request.
pub enum Scripted {
    Respond(OutboundResponse),
    Fail(FetchError),
    /// Never answer (to exercise timeouts).
    Hang,
}

type Upstream = Rc<dyn Fn(&OutboundRequest) -> Scripted>;

/// A request the host was asked to send, as the upstream would have received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::find_header(&self.headers, name)
    }
}

#[derive(Default)]
struct Inner {
    clock_ms: Cell<u64>,
    timers: RefCell<Vec<Waker>>,
    rng: Cell<u64>,
    secrets: RefCell<HashMap<String, String>>,
    kv: RefCell<HashMap<String, String>>,
    kv_broken: Cell<bool>,
    /// Writes under this key prefix fail (one part of the store out, e.g. the audit log).
    kv_put_refused_prefix: RefCell<Option<String>>,
    /// The response cache's tiers, by tier then key: (value, expiry on the virtual clock).
    cache: RefCell<BTreeMap<(CacheTier, String), StoredAnswer>>,
    shipped_config: RefCell<Option<String>>,
    upstream: RefCell<Option<Upstream>>,
    requests: RefCell<Vec<RecordedRequest>>,
    events: RefCell<Vec<UsageEvent>>,
    /// Keyed by (jurisdiction, subject): the same subject in another jurisdiction is another
    /// counter, as on Workers.
    counters: RefCell<BTreeMap<(Option<String>, String), CounterState>>,
    counters_broken: Cell<bool>,
    counter_calls: RefCell<Vec<(String, Option<String>)>>,
    /// The usage rollups, one store per shard.
    stats: RefCell<BTreeMap<u32, policy::stats::RowStore>>,
    stats_broken: Cell<bool>,
    /// The request log and feedback ownership rows, one store per shard.
    request_log: RefCell<BTreeMap<u32, policy::reqlog::LogStore>>,
    /// Every request-log operation, for assertions (a consumer that did not opt in is never
    /// written with an entry).
    request_log_ops: RefCell<Vec<policy::reqlog::LogOp>>,
    background: RefCell<Vec<Pin<Box<dyn Future<Output = ()>>>>>,
    vectors: RefCell<HashMap<VectorKey, PartitionIndex>>,
    /// `None`: [`DEFAULT_PARTITION_CAPACITY`].
    vector_capacity: Cell<Option<usize>>,
    vectors_broken: Cell<bool>,
    /// Deadlines of pending timers, for [`MemoryHost::block_on`].
    deadlines: RefCell<Vec<u64>>,
}

/// A tier of the in-memory response cache, as the Workers adapter has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheTier {
    /// Per location (the Cache API on Workers).
    Local,
    /// Replicated everywhere (KV on Workers).
    Global,
}

/// One stored response cache value and when it expires (virtual clock).
type StoredAnswer = (Vec<u8>, u64);

/// The in-memory host. Clones share state.
#[derive(Clone, Default)]
pub struct MemoryHost {
    inner: Rc<Inner>,
}

impl MemoryHost {
    pub fn new() -> Self {
        let host = Self::default();
        host.inner.clock_ms.set(1_767_225_600_000); // 2026-01-01T00:00:00Z
        host.inner.rng.set(0x9E37_79B9_7F4A_7C15);
        host
    }

    pub fn with_config(self, json: &str) -> Self {
        *self.inner.shipped_config.borrow_mut() = Some(json.to_string());
        self
    }

    /// Set the clock (milliseconds since the Unix epoch).
    pub fn with_clock_ms(self, ms: u64) -> Self {
        self.inner.clock_ms.set(ms);
        self
    }

    pub fn with_secret(self, name: &str, value: &str) -> Self {
        self.inner.secrets.borrow_mut().insert(name.into(), value.into());
        self
    }

    /// Answer every upstream call with this function.
    pub fn with_upstream(self, upstream: impl Fn(&OutboundRequest) -> Scripted + 'static) -> Self {
        *self.inner.upstream.borrow_mut() = Some(Rc::new(upstream));
        self
    }

    /// Put a value in KV directly (test setup).
    pub fn kv_set(&self, key: &str, value: &str) {
        self.inner.kv.borrow_mut().insert(key.into(), value.into());
    }

    /// A value in KV (what the gateway wrote), for assertions.
    pub fn kv_value(&self, key: &str) -> Option<String> {
        self.inner.kv.borrow().get(key).cloned()
    }

    /// Make KV reads fail (store outage).
    pub fn break_kv(&self, broken: bool) {
        self.inner.kv_broken.set(broken);
    }

    /// Make KV writes under `prefix` fail (or none with `None`), leaving the rest of KV working:
    /// shows that an operation whose first write fails leaves no trace in the others.
    pub fn refuse_kv_puts_under(&self, prefix: Option<&str>) {
        *self.inner.kv_put_refused_prefix.borrow_mut() = prefix.map(str::to_string);
    }

    /// Move the clock forward, waking every timer that is now due.
    pub fn advance(&self, ms: u64) {
        self.inner.clock_ms.set(self.inner.clock_ms.get() + ms);
        for waker in self.inner.timers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Run `future` to completion on virtual time: whenever it can make no progress and a timer
    /// is pending (a retry backoff, a timeout), jump the clock to the earliest deadline. Use it
    /// for pipelines that sleep; `futures::executor::block_on` would wait forever there.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            let next = self.inner.deadlines.borrow().iter().copied().min();
            match next {
                Some(deadline) => {
                    self.inner.deadlines.borrow_mut().retain(|d| *d > deadline);
                    let now = self.inner.clock_ms.get();
                    self.advance(deadline.saturating_sub(now));
                }
                None => panic!("MemoryHost::block_on: the future is stuck with no timer pending"),
            }
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.requests.borrow().clone()
    }

    pub fn events(&self) -> Vec<UsageEvent> {
        self.inner.events.borrow().clone()
    }

    /// Every response cache entry stored and not expired, as (tier, key), so tests can see what
    /// is stored where.
    pub fn cache_entries(&self) -> Vec<(CacheTier, String)> {
        let now = self.now_ms();
        self.inner.cache.borrow().iter().filter(|(_, (_, expiry))| *expiry > now).map(|(k, _)| k.clone()).collect()
    }

    /// Make counter operations fail (the Durable Object is unreachable), to test each limit's
    /// failure mode. A failed operation changes nothing.
    pub fn break_counters(&self, broken: bool) {
        self.inner.counters_broken.set(broken);
    }

    /// Every `(subject, jurisdiction)` a counter operation was sent to, in call order (failed
    /// calls included), so tests can assert which objects a request touched.
    pub fn counter_subjects(&self) -> Vec<(String, Option<String>)> {
        self.inner.counter_calls.borrow().clone()
    }

    /// A copy of one subject's counter state, for assertions (`None`: nothing stored, i.e. never
    /// touched or empty again, as a Durable Object deletes an empty state).
    pub fn counter_state(&self, subject: &str, jurisdiction: Option<&str>) -> Option<CounterState> {
        self.inner.counters.borrow().get(&(jurisdiction.map(str::to_string), subject.to_string())).cloned()
    }

    /// Bound every vector partition to `capacity` entries (to test eviction).
    pub fn with_vector_capacity(self, capacity: usize) -> Self {
        self.inner.vector_capacity.set(Some(capacity));
        self
    }

    /// Make vector index calls fail (the index is unreachable).
    pub fn break_vectors(&self, broken: bool) {
        self.inner.vectors_broken.set(broken);
    }

    /// How many entries one vector partition holds, for assertions.
    pub fn vector_count(&self, at: &VectorPartition<'_>) -> usize {
        self.inner.vectors.borrow().get(&vector_key(at)).map_or(0, PartitionIndex::len)
    }

    /// Make stats and request-log operations fail (no store bound: on Workers both are the same
    /// Durable Object).
    pub fn break_stats(&self, broken: bool) {
        self.inner.stats_broken.set(broken);
    }

    /// How many rollup rows each shard holds, for assertions.
    pub fn stats_rows_per_shard(&self) -> BTreeMap<u32, usize> {
        self.inner.stats.borrow().iter().map(|(shard, store)| (*shard, store.len())).collect()
    }

    /// Every request-log operation applied so far, in order.
    pub fn request_log_ops(&self) -> Vec<policy::reqlog::LogOp> {
        self.inner.request_log_ops.borrow().clone()
    }

    /// Every stored request-log entry (with bodies), of all shards.
    pub fn request_log_entries(&self) -> Vec<policy::reqlog::LogEntry> {
        self.inner.request_log.borrow().values().flat_map(|s| s.entries.values().cloned()).collect()
    }

    /// How many feedback ownership rows all shards hold.
    pub fn request_index_rows(&self) -> usize {
        self.inner.request_log.borrow().values().map(|s| s.index.len()).sum()
    }

    /// How many [`Host::wait_until`] tasks are queued and not yet run.
    pub fn background_pending(&self) -> usize {
        self.inner.background.borrow().len()
    }

    /// Run every queued background task to completion, including tasks queued while running
    /// (the platform keeps the request alive until all of them finish). A task that waits on the
    /// virtual clock only finishes once the test [`advance`](MemoryHost::advance)s it, so do that
    /// concurrently (or do not sleep in background tasks).
    pub async fn run_background(&self) {
        loop {
            let tasks: Vec<_> = self.inner.background.borrow_mut().drain(..).collect();
            if tasks.is_empty() {
                return;
            }
            futures::future::join_all(tasks).await;
        }
    }
}

/// A timer on the virtual clock.
struct Sleep {
    inner: Rc<Inner>,
    deadline_ms: u64,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.clock_ms.get() >= self.deadline_ms {
            Poll::Ready(())
        } else {
            self.inner.timers.borrow_mut().push(cx.waker().clone());
            self.inner.deadlines.borrow_mut().push(self.deadline_ms);
            Poll::Pending
        }
    }
}

impl Host for MemoryHost {
    fn now_ms(&self) -> u64 {
        self.inner.clock_ms.get()
    }

    fn random_u64(&self) -> u64 {
        // xorshift64*: deterministic, good enough for ids in tests.
        let mut x = self.inner.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.inner.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn secure_random(&self) -> [u8; 32] {
        // Deterministic in tests; distinct per call.
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.random_u64().to_le_bytes());
        }
        out
    }

    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + 'static {
        Sleep { inner: self.inner.clone(), deadline_ms: self.inner.clock_ms.get().saturating_add(ms) }
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.inner.secrets.borrow().get(name).cloned()
    }

    fn shipped_config(&self) -> Option<String> {
        self.inner.shipped_config.borrow().clone()
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, HostError> {
        if self.inner.kv_broken.get() {
            return Err(HostError("store unavailable".into()));
        }
        Ok(self.inner.kv.borrow().get(key).cloned())
    }

    /// An AI binding call goes to the scripted upstream as `POST binding://{binding}/{model}`
    /// with the inputs as body, so tests script bindings like any upstream.
    async fn ai_run(&self, binding: &str, model: &str, inputs: &str, _stream: bool) -> Result<OutboundResponse, FetchError> {
        let request = OutboundRequest { method: "POST", url: format!("binding://{binding}/{model}"), headers: Vec::new(), body: inputs.as_bytes().to_vec() };
        self.fetch(request).await
    }

    async fn kv_put(&self, key: &str, value: &str) -> Result<(), HostError> {
        let refused = self.inner.kv_put_refused_prefix.borrow().as_deref().is_some_and(|p| key.starts_with(p));
        if self.inner.kv_broken.get() || refused {
            return Err(HostError("store unavailable".into()));
        }
        self.inner.kv.borrow_mut().insert(key.into(), value.into());
        Ok(())
    }

    async fn cache_get(&self, key: &str, placement: CachePlacement) -> Result<Option<Vec<u8>>, HostError> {
        let now = self.now_ms();
        let cache = self.inner.cache.borrow();
        let tiers: &[CacheTier] = match placement {
            CachePlacement::LocalOnly => &[CacheTier::Local],
            CachePlacement::Anywhere => &[CacheTier::Local, CacheTier::Global],
        };
        Ok(tiers.iter().find_map(|tier| cache.get(&(*tier, key.to_string())).filter(|(_, expiry)| *expiry > now).map(|(value, _)| value.clone())))
    }

    async fn cache_put(&self, key: &str, value: Vec<u8>, ttl_s: u64, placement: CachePlacement) -> Result<(), HostError> {
        let expiry = self.now_ms().saturating_add(ttl_s.saturating_mul(1000));
        let mut cache = self.inner.cache.borrow_mut();
        if placement == CachePlacement::Anywhere {
            cache.insert((CacheTier::Global, key.to_string()), (value.clone(), expiry));
        }
        cache.insert((CacheTier::Local, key.to_string()), (value, expiry));
        Ok(())
    }

    async fn kv_list(&self, prefix: &str) -> Result<Vec<String>, HostError> {
        if self.inner.kv_broken.get() {
            return Err(HostError("store unavailable".into()));
        }
        let mut keys: Vec<String> = self.inner.kv.borrow().keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        keys.sort_unstable();
        Ok(keys)
    }

    async fn fetch(&self, request: OutboundRequest) -> Result<OutboundResponse, FetchError> {
        self.inner.requests.borrow_mut().push(RecordedRequest {
            method: request.method,
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        });
        let upstream = self.inner.upstream.borrow().clone();
        let scripted = match upstream {
            Some(upstream) => upstream(&request),
            None => Scripted::Fail(FetchError::Connect("no upstream scripted".into())),
        };
        match scripted {
            Scripted::Respond(response) => Ok(response),
            Scripted::Fail(error) => Err(error),
            Scripted::Hang => futures::future::pending().await,
        }
    }

    fn emit(&self, event: &UsageEvent) {
        self.inner.events.borrow_mut().push(event.clone());
    }

    async fn counter(&self, subject: &str, jurisdiction: Option<&str>, op: &CounterOp) -> Result<CounterReply, HostError> {
        self.inner.counter_calls.borrow_mut().push((subject.to_string(), jurisdiction.map(str::to_string)));
        if self.inner.counters_broken.get() {
            return Err(HostError("counter store unavailable".into()));
        }
        // One borrow for the whole operation and no await inside: atomic per subject.
        let now_ms = self.inner.clock_ms.get();
        let mut counters = self.inner.counters.borrow_mut();
        let state = counters.entry((jurisdiction.map(str::to_string), subject.to_string())).or_default();
        let reply = state.apply(op, now_ms);
        if state.is_empty() {
            // What the Durable Object does: nothing worth storing, delete it.
            counters.remove(&(jurisdiction.map(str::to_string), subject.to_string()));
        }
        Ok(reply)
    }

    async fn stats(&self, shard: u32, op: &policy::stats::StatsOp) -> Result<policy::stats::StatsReply, HostError> {
        if self.inner.stats_broken.get() {
            return Err(HostError("stats store unavailable".into()));
        }
        Ok(self.inner.stats.borrow_mut().entry(shard).or_default().apply(op))
    }

    async fn request_log(&self, shard: u32, op: &policy::reqlog::LogOp) -> Result<policy::reqlog::LogReply, HostError> {
        if self.inner.stats_broken.get() {
            return Err(HostError("request log store unavailable".into()));
        }
        self.inner.request_log_ops.borrow_mut().push(op.clone());
        Ok(self.inner.request_log.borrow_mut().entry(shard).or_default().apply(op))
    }

    fn wait_until(&self, task: impl Future<Output = ()> + 'static) {
        self.inner.background.borrow_mut().push(Box::pin(task));
    }

    async fn vector_upsert(&self, at: &VectorPartition<'_>, id: &str, vector: &[f32], metadata: &str) -> Result<(), HostError> {
        if self.inner.vectors_broken.get() {
            return Err(HostError("vector index unavailable".into()));
        }
        let capacity = self.inner.vector_capacity.get().unwrap_or(DEFAULT_PARTITION_CAPACITY);
        let mut vectors = self.inner.vectors.borrow_mut();
        let partition = vectors.entry(vector_key(at)).or_insert_with(|| PartitionIndex::new(capacity));
        partition.upsert(id, vector.to_vec(), metadata.to_string());
        Ok(())
    }

    async fn vector_query(&self, at: &VectorPartition<'_>, vector: &[f32], top_k: usize) -> Result<Vec<VectorMatch>, HostError> {
        if self.inner.vectors_broken.get() {
            return Err(HostError("vector index unavailable".into()));
        }
        Ok(self.inner.vectors.borrow().get(&vector_key(at)).map(|p| p.query(vector, top_k)).unwrap_or_default())
    }
}

/// Collect a whole body (test helper). Panics if the stream breaks.
pub async fn collect_body(body: Body) -> Vec<u8> {
    match body {
        Body::Empty => Vec::new(),
        Body::Bytes(bytes) => bytes,
        Body::Stream(stream) => stream.map(|chunk| chunk.expect("body stream broke")).concat().await,
    }
}

/// A finished, routed-looking chat request's usage event (consumer `web` of tenant `acme`, model
/// `smart` served by `backup`'s `claude`, 12 + 5 tokens, 4 of them cache reads), for tests and
/// benchmarks of what is built from events.
pub fn sample_usage_event() -> UsageEvent {
    UsageEvent {
        request_id: "req_1".into(),
        operation: "chat.completions",
        consumer: Some("web".into()),
        issuer: None,
        tenant: Some("acme".into()),
        tier: None,
        model: Some("smart".into()),
        provider: Some("backup".into()),
        upstream_model: Some("claude".into()),
        stream: false,
        status: 200,
        outcome: crate::event::Outcome::Completed,
        error: None,
        error_detail: None,
        usage: Some(crate::openai::Usage { input_tokens: 12, output_tokens: 5, total_tokens: 17, cached_input_tokens: 4, cache_write_tokens: 0, reasoning_tokens: 0 }),
        provider_usage: None,
        quota: None,
        route: None,
        latency_ms: 300,
        duration_ms: 400,
        country: None,
        colo: None,
        guard: None,
        cache: Some(crate::event::CacheSummary::of(crate::event::CacheStatus::Miss)),
        metadata: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use policy::limits::{Amounts, LimitSpec, Metric, Window, DEFAULT_RESERVATION_TTL_MS};

    fn admit(id: &str, limit: u64) -> CounterOp {
        CounterOp::Admit {
            specs: vec![LimitSpec::new(Metric::Requests, Window::Minute, limit)],
            amounts: Amounts::estimate(10, 20, policy::limits::Nanos(0)),
            reservation_id: id.into(),
            ttl_ms: DEFAULT_RESERVATION_TTL_MS,
        }
    }

    fn allowed(reply: CounterReply) -> bool {
        match reply {
            CounterReply::Admitted(admission) => admission.allowed,
            other => panic!("expected an admission, got {other:?}"),
        }
    }

    #[test]
    fn counter_applies_ops_per_subject_and_jurisdiction() {
        let host = MemoryHost::new();
        block_on(async {
            assert!(allowed(host.counter("consumer:web", None, &admit("r1", 2)).await.unwrap()));
            assert!(allowed(host.counter("consumer:web", None, &admit("r2", 2)).await.unwrap()));
            assert!(!allowed(host.counter("consumer:web", None, &admit("r3", 2)).await.unwrap()), "third request over a limit of 2");
            // Another subject, and the same subject in another jurisdiction, count separately.
            assert!(allowed(host.counter("consumer:other", None, &admit("r3", 2)).await.unwrap()));
            assert!(allowed(host.counter("consumer:web", Some("eu"), &admit("r3", 2)).await.unwrap()));
            // Releasing gives the capacity back.
            let released = host.counter("consumer:web", None, &CounterOp::Release { reservation_id: "r1".into() }).await.unwrap();
            assert_eq!(released, CounterReply::Released { known: true });
            assert!(allowed(host.counter("consumer:web", None, &admit("r4", 2)).await.unwrap()));
        });
        assert_eq!(host.counter_state("consumer:web", None).map(|s| s.in_flight()), Some(2));
        assert_eq!(host.counter_state("consumer:web", Some("eu")).map(|s| s.in_flight()), Some(1));
        let subjects = host.counter_subjects();
        assert_eq!(subjects.len(), 7);
        assert!(subjects.contains(&("consumer:web".to_string(), Some("eu".to_string()))));
    }

    #[test]
    fn counter_uses_the_host_clock() {
        let host = MemoryHost::new();
        block_on(async {
            assert!(allowed(host.counter("s", None, &admit("a", 1)).await.unwrap()));
            host.counter("s", None, &CounterOp::Settle { reservation_id: "a".into(), actual: Amounts::of(Metric::Requests, 1) })
                .await
                .unwrap();
            assert!(!allowed(host.counter("s", None, &admit("b", 1)).await.unwrap()));
            host.advance(60_000); // the next minute window
            assert!(allowed(host.counter("s", None, &admit("b", 1)).await.unwrap()));
        });
    }

    #[test]
    fn broken_counters_fail_and_change_nothing() {
        let host = MemoryHost::new();
        host.break_counters(true);
        let result = block_on(host.counter("s", None, &admit("a", 1)));
        assert!(result.is_err());
        assert!(host.counter_state("s", None).is_none());
        assert_eq!(host.counter_subjects(), vec![("s".to_string(), None)]);
        host.break_counters(false);
        assert!(allowed(block_on(host.counter("s", None, &admit("a", 1))).unwrap()));
    }

    #[test]
    fn an_empty_state_is_not_kept() {
        let host = MemoryHost::new();
        block_on(async {
            host.counter("s", None, &admit("a", 5)).await.unwrap();
            host.counter("s", None, &CounterOp::Release { reservation_id: "a".into() }).await.unwrap();
            host.counter("s", None, &CounterOp::Expire).await.unwrap();
        });
        assert!(host.counter_state("s", None).is_none());
    }

    #[test]
    fn vector_index_searches_one_partition_only() {
        let host = MemoryHost::new();
        let web = VectorPartition { index: "semantic", partition: "p1", jurisdiction: None };
        let other_tenant = VectorPartition { partition: "p2", ..web };
        let in_eu = VectorPartition { jurisdiction: Some("eu"), ..web };
        block_on(async {
            host.vector_upsert(&web, "a", &[1.0, 0.0], r#"{"q":"a"}"#).await.unwrap();
            host.vector_upsert(&web, "b", &[0.6, 0.8], r#"{"q":"b"}"#).await.unwrap();
            host.vector_upsert(&other_tenant, "c", &[1.0, 0.0], "{}").await.unwrap();
            let hits = host.vector_query(&web, &[1.0, 0.0], 5).await.unwrap();
            assert_eq!(hits.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
            assert_eq!(hits[0].metadata, r#"{"q":"a"}"#);
            assert!((hits[1].score - 0.6).abs() < 1e-6);
            assert!(host.vector_query(&in_eu, &[1.0, 0.0], 5).await.unwrap().is_empty(), "a jurisdiction is its own partition");
            assert_eq!(host.vector_query(&other_tenant, &[1.0, 0.0], 5).await.unwrap().len(), 1);
        });
    }

    #[test]
    fn vector_partitions_are_bounded_and_can_fail() {
        let host = MemoryHost::new().with_vector_capacity(2);
        let at = VectorPartition { index: "semantic", partition: "p", jurisdiction: None };
        block_on(async {
            for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
                host.vector_upsert(&at, id, &[1.0, i as f32], "").await.unwrap();
            }
        });
        assert_eq!(host.vector_count(&at), 2, "the oldest write was evicted");
        let ids: Vec<String> = block_on(host.vector_query(&at, &[1.0, 0.0], 5)).unwrap().into_iter().map(|m| m.id).collect();
        assert!(!ids.contains(&"a".to_string()));
        host.break_vectors(true);
        assert!(block_on(host.vector_query(&at, &[1.0, 0.0], 5)).is_err());
        assert!(block_on(host.vector_upsert(&at, "d", &[1.0, 0.0], "")).is_err());
    }

    #[test]
    fn background_tasks_run_only_when_asked() {
        let host = MemoryHost::new();
        let ran = Rc::new(Cell::new(0));
        let (h, r) = (host.clone(), ran.clone());
        host.wait_until(async move {
            r.set(r.get() + 1);
            // A task may queue another; run_background runs it too.
            let r2 = r.clone();
            h.wait_until(async move { r2.set(r2.get() + 10) });
        });
        assert_eq!((ran.get(), host.background_pending()), (0, 1));
        block_on(host.run_background());
        assert_eq!((ran.get(), host.background_pending()), (11, 0));
    }
}
