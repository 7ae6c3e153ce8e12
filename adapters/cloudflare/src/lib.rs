//! The Cloudflare Workers adapter: translates the Worker's request and bindings into the core's
//! types and back. No gateway logic lives here.
//!
//! Bindings (see `wrangler.toml`):
//! - `GATEWAY_CONFIG` (var): the configuration document shipped with the Worker;
//! - `GATEWAY_KV` (KV namespace, optional): key `config` overrides the shipped document;
//! - provider keys as Worker secrets, named by each provider's `api_key_secret`;
//! - `GATEWAY_CACHE_KV` (KV namespace, optional): the response cache's global tier (its
//!   per-location tier is the Cache API, always there; see [`cache_tiers`]);
//! - `COUNTERS` (Durable Object namespace of class [`GatewayCounter`]): limits and budgets, one
//!   object per subject (see [`counter`]);
//! - `SEMANTIC_INDEX` (Durable Object namespace of class [`GatewayVectorIndex`]): the semantic
//!   cache's vector index, one object per partition, or `VECTORIZE` (a Vectorize index, optional)
//!   for partitions without a jurisdiction (see [`vector`]);
//! - `STATS` (Durable Object namespace of class [`GatewayStats`]): the usage rollups, one object
//!   per shard (see [`stats`]); the same objects keep the request log and the feedback
//!   ownership rows in two more tables (see [`request_log`]).

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

mod cache_tiers;
mod counter;
mod departure;
mod request_log;
mod stats;
mod vector;

pub use counter::GatewayCounter;
pub use stats::GatewayStats;
pub use vector::GatewayVectorIndex;
use departure::{handle_until_departure, Departure, DepartingBody};

use policy::limits::{CounterOp, CounterReply};
use edge::{Body, BodyError, ByteStream, FetchError, HostError, OutboundRequest, OutboundResponse, RequestFacts, VectorMatch, VectorPartition};
use futures::{Stream, StreamExt};
use worker::{
    console_log, event, js_sys, AbortController, Context, Delay, Env, Fetch, Headers, Method, Request, RequestInit,
    Response, ResponseBuilder, Result, ScheduleContext, ScheduledEvent,
};

const CONFIG_VAR: &str = "GATEWAY_CONFIG";
const KV_BINDING: &str = "GATEWAY_KV";

thread_local! {
    /// One gateway per isolate: the parsed configuration is cached across requests.
    static GATEWAY: Rc<edge::Gateway> = Rc::new(edge::Gateway::new());
}

/// The Worker's bindings seen through the core's host trait.
#[derive(Clone)]
struct WorkerHost {
    env: Env,
    /// The fetch event's context, for `wait_until` (none in a scheduled event, whose handler is
    /// awaited to the end anyway).
    ctx: Option<Rc<Context>>,
}

impl edge::Host for WorkerHost {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn random_u64(&self) -> u64 {
        // Request ids only; not used for anything secret.
        let high = (js_sys::Math::random() * u32::MAX as f64) as u64;
        let low = (js_sys::Math::random() * u32::MAX as f64) as u64;
        (high << 32) | low
    }

    fn secure_random(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let bytes = js_sys::Uint8Array::new_with_length(32);
        // `crypto.getRandomValues` is on the global scope of every Worker.
        let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).expect("Workers have crypto");
        let get_random_values: js_sys::Function =
            js_sys::Reflect::get(&crypto, &"getRandomValues".into()).expect("crypto.getRandomValues").into();
        get_random_values.call1(&crypto, &bytes).expect("crypto.getRandomValues never fails for 32 bytes");
        bytes.copy_to(&mut out);
        out
    }

    fn sleep(&self, ms: u64) -> impl std::future::Future<Output = ()> + 'static {
        Delay::from(Duration::from_millis(ms))
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.env.secret(name).ok().map(|s| s.to_string())
    }

    fn shipped_config(&self) -> Option<String> {
        self.env.var(CONFIG_VAR).ok().map(|v| v.to_string())
    }

    async fn kv_get(&self, key: &str) -> std::result::Result<Option<String>, HostError> {
        let Ok(kv) = self.env.kv(KV_BINDING) else {
            return Ok(None); // KV is optional: without the binding the shipped config is used.
        };
        kv.get(key).text().await.map_err(|e| HostError(e.to_string()))
    }

    async fn kv_put(&self, key: &str, value: &str) -> std::result::Result<(), HostError> {
        let kv = self.env.kv(KV_BINDING).map_err(|_| HostError(format!("no KV namespace bound as {KV_BINDING}")))?;
        kv.put(key, value).map_err(|e| HostError(e.to_string()))?.execute().await.map_err(|e| HostError(e.to_string()))
    }

    async fn cache_get(&self, key: &str, placement: edge::CachePlacement) -> std::result::Result<Option<Vec<u8>>, HostError> {
        cache_tiers::get(&self.env, key, placement).await
    }

    async fn cache_put(&self, key: &str, value: Vec<u8>, ttl_s: u64, placement: edge::CachePlacement) -> std::result::Result<(), HostError> {
        cache_tiers::put(&self.env, key, value, ttl_s, placement, self.now_ms()).await
    }

    async fn kv_list(&self, prefix: &str) -> std::result::Result<Vec<String>, HostError> {
        let Ok(kv) = self.env.kv(KV_BINDING) else { return Ok(Vec::new()) };
        let mut names = Vec::new();
        let mut cursor = None;
        loop {
            let mut list = kv.list().prefix(prefix.to_string());
            if let Some(cursor) = cursor.take() {
                list = list.cursor(cursor);
            }
            let page = list.execute().await.map_err(|e| HostError(e.to_string()))?;
            names.extend(page.keys.into_iter().map(|k| k.name));
            match page.cursor.filter(|_| !page.list_complete) {
                Some(next) => cursor = Some(next),
                None => return Ok(names),
            }
        }
    }

    async fn fetch(&self, request: OutboundRequest) -> std::result::Result<OutboundResponse, FetchError> {
        let headers = Headers::new();
        for (name, value) in &request.headers {
            headers.append(name, value).map_err(|_| FetchError::InvalidRequest(format!("header {name}")))?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::from(request.method.to_string())).with_headers(headers);
        // fetch() refuses a GET or HEAD with a body, even an empty one (JWKS, carbon feed).
        if !request.body.is_empty() || !matches!(request.method, "GET" | "HEAD") {
            let body = js_sys::Uint8Array::from(request.body.as_slice());
            init.with_body(Some(body.into()));
        }
        let outbound =
            Request::new_with_init(&request.url, &init).map_err(|_| FetchError::InvalidRequest("bad upstream URL".into()))?;
        // Aborts the subrequest if this future is dropped (timeout) or the body is dropped
        // (client went away) before the upstream finished.
        let abort = AbortOnDrop(Some(AbortController::default()));
        let signal = abort.0.as_ref().expect("just created").signal();
        let mut response = Fetch::Request(outbound)
            .send_with_signal(&signal)
            .await
            .map_err(|e| FetchError::Connect(e.to_string()))?;
        let headers: Vec<(String, String)> = response.headers().entries().collect();
        let body = match response.stream() {
            Ok(stream) => Body::Stream(Box::pin(Cancelling {
                inner: Box::pin(stream.map(|chunk| chunk.map_err(|e| BodyError(e.to_string())))),
                abort,
            })),
            Err(_) => Body::Empty,
        };
        Ok(OutboundResponse { status: response.status_code(), headers, body })
    }

    /// `env[binding].run(model, inputs)`: the inputs object is parsed by `JSON.parse` so the
    /// binding gets plain objects (not the `Map`s serde_wasm_bindgen would make). A thrown error
    /// (unknown model, bad input, capacity) counts as an unreachable upstream: fallback applies,
    /// and the client sees no binding internals.
    async fn ai_run(&self, binding: &str, model: &str, inputs: &str, stream: bool) -> std::result::Result<OutboundResponse, FetchError> {
        use worker::wasm_bindgen::JsCast;
        let env: &worker::wasm_bindgen::JsValue = self.env.as_ref();
        let ai = js_sys::Reflect::get(env, &binding.into())
            .ok()
            .filter(|v| v.is_object())
            .ok_or_else(|| FetchError::InvalidRequest(format!("no AI binding named {binding}")))?;
        let run: js_sys::Function = js_sys::Reflect::get(&ai, &"run".into())
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or_else(|| FetchError::InvalidRequest(format!("binding {binding} has no run()")))?;
        let inputs = js_sys::JSON::parse(inputs).map_err(|_| FetchError::InvalidRequest("inputs are not JSON".into()))?;
        let called = run.call2(&ai, &model.into(), &inputs).map_err(|_| FetchError::Connect("AI binding threw".into()))?;
        let result = worker::wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&called))
            .await
            .map_err(|_| FetchError::Connect("AI binding rejected the call".into()))?;
        if stream {
            let readable: worker::web_sys::ReadableStream =
                result.dyn_into().map_err(|_| FetchError::Connect("AI binding returned no stream".into()))?;
            let bytes = worker::ByteStream::from(readable);
            let body = Body::Stream(Box::pin(bytes.map(|chunk| chunk.map_err(|e| BodyError(e.to_string())))));
            return Ok(OutboundResponse { status: 200, headers: vec![("content-type".into(), "text/event-stream".into())], body });
        }
        let json = js_sys::JSON::stringify(&result).map_err(|_| FetchError::Connect("AI result is not JSON".into()))?;
        let text = String::from(json);
        Ok(OutboundResponse { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: Body::Bytes(text.into_bytes()) })
    }

    fn emit(&self, event: &edge::UsageEvent) {
        if let Ok(line) = serde_json::to_string(event) {
            console_log!("{line}");
        }
    }

    async fn counter(&self, subject: &str, jurisdiction: Option<&str>, op: &CounterOp) -> std::result::Result<CounterReply, HostError> {
        counter::call(&self.env, subject, jurisdiction, op).await
    }

    async fn stats(&self, shard: u32, op: &policy::stats::StatsOp) -> std::result::Result<policy::stats::StatsReply, HostError> {
        stats::call(&self.env, shard, op).await
    }

    async fn request_log(&self, shard: u32, op: &policy::reqlog::LogOp) -> std::result::Result<policy::reqlog::LogReply, HostError> {
        stats::call_log(&self.env, shard, op).await
    }

    async fn vector_upsert(&self, at: &VectorPartition<'_>, id: &str, vector: &[f32], metadata: &str) -> std::result::Result<(), HostError> {
        vector::upsert(&self.env, at, id, vector, metadata).await
    }

    async fn vector_query(&self, at: &VectorPartition<'_>, vector: &[f32], top_k: usize) -> std::result::Result<Vec<VectorMatch>, HostError> {
        vector::query(&self.env, at, vector, top_k).await
    }

    fn wait_until(&self, task: impl std::future::Future<Output = ()> + 'static) {
        match &self.ctx {
            Some(ctx) => ctx.wait_until(task),
            None => worker::wasm_bindgen_futures::spawn_local(task),
        }
    }
}

/// Aborts the upstream request when dropped, unless the body was read to its end.
struct AbortOnDrop(Option<AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(controller) = self.0.take() {
            controller.abort();
        }
    }
}

/// An upstream body that cancels the subrequest if dropped before its end.
struct Cancelling {
    inner: ByteStream,
    abort: AbortOnDrop,
}

impl Stream for Cancelling {
    type Item = edge::host::BodyChunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.abort.0 = None; // finished normally: nothing to cancel
        }
        next
    }
}

fn request_facts(request: &Request) -> RequestFacts {
    let query = request.url().ok().and_then(|url| url.query().map(str::to_string));
    let Some(cf) = request.cf() else {
        return RequestFacts { query, ..RequestFacts::default() };
    };
    RequestFacts {
        country: cf.country(),
        continent: cf.continent(),
        colo: Some(cf.colo()).filter(|c| !c.is_empty()),
        is_eu_country: Some(cf.is_eu_country()),
        coordinates: cf.coordinates().map(|(lat, lon)| (lat as f64, lon as f64)),
        query,
    }
}

fn into_core_request(mut request: Request) -> edge::Request {
    let method = request.method().to_string();
    let headers: Vec<(String, String)> = request.headers().entries().collect();
    let facts = request_facts(&request);
    let path = request.path();
    let body = if matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        Body::Empty
    } else {
        match request.stream() {
            Ok(stream) => Body::Stream(Box::pin(stream.map(|chunk| chunk.map_err(|e| BodyError(e.to_string()))))),
            Err(_) => Body::Empty,
        }
    };
    edge::Request { method, path, headers, body, facts }
}

/// The Worker's response. A streamed body is watched for the client leaving (see [`departure`]):
/// the watch is registered with `waitUntil` now, while the request is alive.
fn into_worker_response(response: edge::Response, departure: Departure, ctx: &Context) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &response.headers {
        headers.append(name, value)?;
    }
    let builder = ResponseBuilder::new().with_status(response.status).with_headers(headers);
    Ok(match response.body {
        Body::Empty => builder.empty(),
        Body::Bytes(bytes) => builder.fixed(bytes),
        Body::Stream(stream) => {
            let (body, watch) = DepartingBody::watch(stream, departure);
            ctx.wait_until(watch);
            builder.from_stream(body.map(|chunk| chunk.map_err(|e| worker::Error::RustError(e.0))))?
        }
    })
}

/// Status of the response to a client that left before it (nobody reads it).
const CLIENT_CLOSED_REQUEST: u16 = 499;

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> Result<Response> {
    let gateway = GATEWAY.with(Rc::clone);
    let departure = Departure::watch(request.inner().signal());
    let ctx = Rc::new(ctx);
    let host = WorkerHost { env, ctx: Some(Rc::clone(&ctx)) };
    let handling = gateway.handle(into_core_request(request), &host);
    match handle_until_departure(handling, departure.clone()).await {
        Some(response) => into_worker_response(response, departure, &ctx),
        None => Ok(ResponseBuilder::new().with_status(CLIENT_CLOSED_REQUEST).empty()),
    }
}

/// Cron triggers (`[triggers] crons` in wrangler.toml): refresh live carbon intensities into KV
/// when the configuration has a `carbon_feed` (a no-op otherwise).
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let gateway = GATEWAY.with(Rc::clone);
    let host = WorkerHost { env, ctx: None };
    // `*/5 * * * *` evaluates the alert rules, `*/30 * * * *` refreshes the carbon feed.
    let summary = gateway.scheduled_cron(&host, &event.cron()).await;
    console_log!("{summary}");
}
