//! A client that goes away, as workerd reports it, turned into the core's own disconnect path.
//!
//! The core notices a disconnect by being dropped: a request future dropped before its response
//! head records `client_disconnected` and stops the fallback loop, a response stream dropped
//! mid-way records `client_disconnected` and charges what it delivered. workerd does not drop
//! either. When the client hangs up it stops pumping the response body without cancelling its
//! `ReadableStream` (workerd#6832, since 1.20260619), so the Rust stream behind the body is never
//! polled or dropped again, and, unless a `waitUntil` is pending, the request's context is torn
//! down with it: no usage event, and the reservation expires uncharged.
//!
//! What workerd does report is `request.signal` aborting (compatibility flag
//! `enable_request_signal`, see `wrangler.toml`), inside the request's context. [`Departure`]
//! watches that signal; [`handle_until_departure`] drops the request future when it fires, and
//! [`DepartingBody`] drops the response stream, from a task registered with `waitUntil` up front so
//! the drop and what it starts (usage event, settlement) run while the context is alive.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};

use edge::ByteStream;
use futures::channel::oneshot;
use futures::future::{self, Either, FutureExt, Shared};
use futures::Stream;
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::JsCast;
use worker::web_sys::AbortSignal;

/// Resolves when the client has gone away (`request.signal` aborted); never otherwise.
#[derive(Clone)]
pub struct Departure {
    aborted: Shared<oneshot::Receiver<()>>,
    _watch: Rc<SignalWatch>,
}

/// The `onabort` handler on the request's signal, removed when the last [`Departure`] goes, so
/// the signal never calls a freed closure.
struct SignalWatch {
    signal: AbortSignal,
    _on_abort: Closure<dyn FnMut()>,
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.signal.set_onabort(None);
    }
}

impl Departure {
    pub fn watch(signal: AbortSignal) -> Self {
        let (sender, aborted) = oneshot::channel();
        let mut sender = Some(sender);
        let mut fire = move || {
            if let Some(sender) = sender.take() {
                let _ = sender.send(());
            }
        };
        if signal.aborted() {
            fire();
        }
        let on_abort = Closure::<dyn FnMut()>::new(fire);
        signal.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
        Departure { aborted: aborted.shared(), _watch: Rc::new(SignalWatch { signal, _on_abort: on_abort }) }
    }
}

impl Future for Departure {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        match self.aborted.poll_unpin(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            // The sender lives in the closure this future owns: it cannot be dropped first.
            Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs the request to its response, or until the client leaves: then the request future is
/// dropped (the core records the disconnect and settles) and `None` is returned.
pub async fn handle_until_departure<T>(handling: impl Future<Output = T>, departure: Departure) -> Option<T> {
    match future::select(Box::pin(handling), departure).await {
        Either::Left((response, _)) => Some(response),
        Either::Right(((), handling)) => {
            drop(handling);
            None
        }
    }
}

/// The response body as workerd pulls it: the core's stream until it ends, or until the client
/// leaves and [`DepartingBody::watch`] drops it.
pub struct DepartingBody {
    shared: Rc<RefCell<BodyState>>,
}

struct BodyState {
    /// `None` once the stream ended, or was dropped because the client left.
    stream: Option<ByteStream>,
    /// The pending pull, woken when the stream is dropped under it.
    reader: Option<Waker>,
    /// Fired when the body ends or workerd drops it: the watch is over.
    finished: Option<oneshot::Sender<()>>,
}

impl BodyState {
    /// Take the stream out (dropping it happens outside the borrow), wake a pending pull, end the watch.
    fn close(&mut self) -> Option<ByteStream> {
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        self.finished.take();
        self.stream.take()
    }
}

impl DepartingBody {
    /// The body, and the task to register with `waitUntil` now: it drops the stream if the client
    /// leaves first, and resolves as soon as the body ends either way.
    pub fn watch(stream: ByteStream, departure: Departure) -> (Self, impl Future<Output = ()> + 'static) {
        let (finished, body_finished) = oneshot::channel();
        let shared = Rc::new(RefCell::new(BodyState { stream: Some(stream), reader: None, finished: Some(finished) }));
        let watched = Rc::clone(&shared);
        let watch = async move {
            if let Either::Right(_) = future::select(body_finished, departure).await {
                let abandoned = watched.borrow_mut().close();
                drop(abandoned);
            }
        };
        (DepartingBody { shared }, watch)
    }
}

impl Stream for DepartingBody {
    type Item = edge::host::BodyChunk;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.shared.borrow_mut();
        let Some(stream) = state.stream.as_mut() else { return Poll::Ready(None) };
        match stream.as_mut().poll_next(cx) {
            Poll::Pending => {
                state.reader = Some(cx.waker().clone());
                Poll::Pending
            }
            Poll::Ready(None) => {
                let ended = state.close();
                drop(state);
                drop(ended);
                Poll::Ready(None)
            }
            ready => ready,
        }
    }
}

impl Drop for DepartingBody {
    /// workerd cancelled the body (a runtime that does): the client left, as far as the core goes.
    fn drop(&mut self) {
        let abandoned = self.shared.borrow_mut().close();
        drop(abandoned);
    }
}
