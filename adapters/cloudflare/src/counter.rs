//! Strongly consistent counters for limits and budgets: one Durable Object per subject.
//!
//! The core's [`Host::counter`](edge::Host::counter) needs the operations of one subject applied
//! one at a time to one state that every isolate in every location sees. Workers KV cannot give
//! that (about one write per second per key, up to ~60 s to propagate); a Durable Object can: it
//! is single-threaded and its storage is transactional. So each subject (a resolved limit scope,
//! e.g. `consumer:web`) gets its own object, `COUNTERS.idFromName(subject)` — never one global
//! object, which would serialise every request of every tenant through one thread.
//!
//! A jurisdiction (`"eu"`, `"fedramp"`) pins the object's state there:
//! `COUNTERS.jurisdiction("eu").idFromName(subject)`. The same name in another jurisdiction is a
//! different object, with its own counts. `worker` 0.8.7 does not wrap `jurisdiction()` on
//! `ObjectNamespace` (only `unique_id_with_jurisdiction`, which cannot address an object by
//! name), so [`namespace_in`] calls the JavaScript method directly. Reference:
//! <https://developers.cloudflare.com/durable-objects/reference/data-location/>.
//!
//! The wire between the Worker and the object is the core's own protocol: a `POST` whose body is
//! a [`CounterOp`] as JSON, answered with the [`CounterReply`] as JSON.

use std::cell::{Cell, RefCell};

use edge::HostError;
use policy::limits::{CounterOp, CounterReply, CounterState};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    durable_object, js_sys, Date, DurableObject, Env, Headers, Method, ObjectNamespace, Request, RequestInit, Response,
    Result, ScheduledTime, State,
};

/// The Durable Object namespace binding (`wrangler.toml`: `[[durable_objects.bindings]]`).
pub const COUNTERS_BINDING: &str = "COUNTERS";

/// The one storage key of a counter object: its whole [`CounterState`] as JSON.
const STATE_KEY: &str = "state";

/// The URL of requests to this adapter's objects. Only the method and body matter: an object is
/// addressed by its stub, not by the URL.
const OP_ORIGIN: &str = "https://gateway-object.internal";

/// The counters of one subject. Applies one [`CounterOp`] per request with its own clock and
/// persists the state before it answers, so a reply means the change survives a restart.
#[durable_object(alarm)]
pub struct GatewayCounter {
    state: State,
    /// The state as last persisted (or loaded): storage is read once per object instance.
    cached: RefCell<Option<CounterState>>,
    /// The alarm time this instance set, if any: avoids a storage write per operation when the
    /// earliest deadline has not changed. Lost on eviction, which only costs one extra write.
    alarm_at: Cell<Option<u64>>,
}

impl DurableObject for GatewayCounter {
    fn new(state: State, _env: Env) -> Self {
        Self { state, cached: RefCell::new(None), alarm_at: Cell::new(None) }
    }

    async fn fetch(&self, mut request: Request) -> Result<Response> {
        if request.method() != Method::Post {
            return Response::error("counter objects accept POST with a counter operation", 405);
        }
        let body = request.text().await?;
        let op: CounterOp = match serde_json::from_str(&body) {
            Ok(op) => op,
            Err(e) => return Response::error(format!("invalid counter operation: {e}"), 400),
        };
        let reply = self.apply(&op).await?;
        Response::from_json(&reply)
    }

    /// Expires stale reservations (a crashed request's estimate) even when no request comes.
    async fn alarm(&self) -> Result<Response> {
        self.alarm_at.set(None);
        self.apply(&CounterOp::Expire).await?;
        Response::empty()
    }
}

impl GatewayCounter {
    /// Load (once), apply `op` with the current time, persist, then schedule housekeeping.
    ///
    /// The apply is one synchronous step on the cached state, and the write of exactly that
    /// state is issued before the next await, so two operations can never interleave between
    /// reading and writing the state; the Durable Object's input and output gates do the rest
    /// (no reply leaves before the write is confirmed).
    async fn apply(&self, op: &CounterOp) -> Result<CounterReply> {
        self.load().await?;
        let now_ms = Date::now().as_millis();
        let (reply, json, next_deadline) = {
            let mut cached = self.cached.borrow_mut();
            let state = cached.get_or_insert_with(CounterState::new);
            let reply = state.apply(op, now_ms);
            let json = if state.is_empty() { None } else { Some(serde_json::to_string(&*state)?) };
            (reply, json, state.next_deadline_ms())
        };
        let storage = self.state.storage();
        let written = match json {
            Some(json) => storage.put(STATE_KEY, json).await,
            None => storage.delete(STATE_KEY).await.map(|_| ()),
        };
        if let Err(e) = written {
            // Memory is now ahead of storage: forget it, so the next operation reloads the truth.
            self.cached.replace(None);
            return Err(e);
        }
        self.schedule_alarm(next_deadline).await?;
        Ok(reply)
    }

    /// Read the persisted state into memory on the first operation of this instance.
    async fn load(&self) -> Result<()> {
        if self.cached.borrow().is_some() {
            return Ok(());
        }
        let stored: Option<String> = self.state.storage().get(STATE_KEY).await?;
        let state = match stored {
            Some(json) => serde_json::from_str(&json)?,
            None => CounterState::new(),
        };
        // Another operation may have loaded it while this one awaited: keep the newer one.
        let mut cached = self.cached.borrow_mut();
        if cached.is_none() {
            *cached = Some(state);
        }
        Ok(())
    }

    /// Make sure an alarm fires at the earliest reservation deadline.
    async fn schedule_alarm(&self, next_deadline: Option<u64>) -> Result<()> {
        let Some(deadline) = next_deadline else { return Ok(()) };
        if self.alarm_at.get().is_some_and(|at| at <= deadline) {
            return Ok(()); // an earlier alarm is set; it reschedules when it runs
        }
        let when = js_sys::Date::new(&JsValue::from_f64(deadline as f64));
        self.state.storage().set_alarm(ScheduledTime::new(when)).await?;
        self.alarm_at.set(Some(deadline));
        Ok(())
    }
}

/// The namespace to address `subject` in: the binding itself, or its subnamespace for a
/// jurisdiction (`namespace.jurisdiction("eu")` in JavaScript). An unknown jurisdiction is an
/// error from the runtime.
pub fn namespace_in(namespace: ObjectNamespace, jurisdiction: Option<&str>) -> std::result::Result<ObjectNamespace, HostError> {
    let Some(jurisdiction) = jurisdiction else { return Ok(namespace) };
    let raw: &JsValue = namespace.as_ref();
    let method = js_sys::Reflect::get(raw, &JsValue::from_str("jurisdiction"))
        .ok()
        .and_then(|m| m.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| HostError("this runtime has no DurableObjectNamespace.jurisdiction()".into()))?;
    let sub = method
        .call1(raw, &JsValue::from_str(jurisdiction))
        .map_err(|e| HostError(format!("jurisdiction {jurisdiction:?}: {}", js_message(&e))))?;
    Ok(ObjectNamespace::unchecked_from_js(sub))
}

/// Send `op` to `subject`'s counter object and return its reply.
pub async fn call(env: &Env, subject: &str, jurisdiction: Option<&str>, op: &CounterOp) -> std::result::Result<CounterReply, HostError> {
    post_json(env, COUNTERS_BINDING, subject, jurisdiction, op).await
}

/// POST `request` as JSON to the Durable Object named `name` in `binding` (in `jurisdiction`'s
/// subnamespace, if any) and parse its JSON reply: the wire of every object of this adapter.
pub(crate) async fn post_json<Req: serde::Serialize, Reply: serde::de::DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    jurisdiction: Option<&str>,
    request: &Req,
) -> std::result::Result<Reply, HostError> {
    post_json_at(env, binding, name, jurisdiction, "/op", request).await
}

/// [`post_json`] to another path of the object (one object class serving two protocols).
pub(crate) async fn post_json_at<Req: serde::Serialize, Reply: serde::de::DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    jurisdiction: Option<&str>,
    path: &str,
    request: &Req,
) -> std::result::Result<Reply, HostError> {
    let namespace = env.durable_object(binding).map_err(|_| HostError(format!("no Durable Object binding {binding}")))?;
    let namespace = namespace_in(namespace, jurisdiction)?;
    let stub = namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(|e| HostError(format!("{binding} object: {e}")))?;
    let body = serde_json::to_string(request).map_err(|e| HostError(format!("{binding} request: {e}")))?;
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(|e| HostError(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init(&format!("{OP_ORIGIN}{path}"), &init).map_err(|e| HostError(format!("{binding} request: {e}")))?;
    let mut response =
        stub.fetch_with_request(request).await.map_err(|e| HostError(format!("{binding} object unreachable: {e}")))?;
    let status = response.status_code();
    let text = response.text().await.map_err(|e| HostError(format!("{binding} reply: {e}")))?;
    if status != 200 {
        return Err(HostError(format!("{binding} object answered {status}: {}", truncate(&text, 200))));
    }
    serde_json::from_str(&text).map_err(|e| HostError(format!("{binding} reply: {e}")))
}

pub(crate) fn js_message(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
