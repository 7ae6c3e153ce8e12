//! An in-memory [`Host`] so the whole pipeline runs in `cargo test` (and the native benchmark)
//! without a runtime: a manual clock, scripted upstreams, a map for KV, recorded events.
//!
//! Time is virtual: [`MemoryHost::sleep`] completes only when the test moves the clock past its
//! deadline with [`MemoryHost::advance`], so timeout tests never sleep and never flake.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::StreamExt;

use crate::event::UsageEvent;
use crate::host::{Body, FetchError, Host, HostError, OutboundRequest, OutboundResponse};

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
    shipped_config: RefCell<Option<String>>,
    upstream: RefCell<Option<Upstream>>,
    requests: RefCell<Vec<RecordedRequest>>,
    events: RefCell<Vec<UsageEvent>>,
}

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

    pub fn kv_put(&self, key: &str, value: &str) {
        self.inner.kv.borrow_mut().insert(key.into(), value.into());
    }

    /// Make KV reads fail (store outage).
    pub fn break_kv(&self, broken: bool) {
        self.inner.kv_broken.set(broken);
    }

    /// Move the clock forward, waking every timer that is now due.
    pub fn advance(&self, ms: u64) {
        self.inner.clock_ms.set(self.inner.clock_ms.get() + ms);
        for waker in self.inner.timers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.requests.borrow().clone()
    }

    pub fn events(&self) -> Vec<UsageEvent> {
        self.inner.events.borrow().clone()
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
}

/// Collect a whole body (test helper). Panics if the stream breaks.
pub async fn collect_body(body: Body) -> Vec<u8> {
    match body {
        Body::Empty => Vec::new(),
        Body::Bytes(bytes) => bytes,
        Body::Stream(stream) => stream.map(|chunk| chunk.expect("body stream broke")).concat().await,
    }
}
