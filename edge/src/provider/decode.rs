//! Stream decoding: the [`StreamDecoder`] the pipeline drives for a translating provider, and
//! [`FramedDecoder`], the one loop every provider stream runs.
//!
//! A provider stream is two things: a [`Framing`] that cuts the body into events (server-sent
//! events, or Bedrock's AWS event-stream) and an [`EventTranslator`] that turns one event into
//! OpenAI chunks and knows what a proper end looks like. The loop between them (feed bytes,
//! translate complete events, stop at a framing fault, ignore what follows the terminal event,
//! call a body that ends early truncated) is written once here, so the providers cannot drift
//! apart on it.

use serde_json::Value;

use super::call::ResponseContext;
use crate::openai::Usage;
use crate::sse::{SseDecoder, SseEvent};

/// Why a provider's stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFault {
    /// The provider sent an error event inside the stream. `kind` is the provider's error type
    /// (e.g. `overloaded_error`), never its message text.
    Provider { kind: String },
    /// Bytes that are not the provider's stream format.
    Malformed { detail: String },
    /// The body ended before the provider's terminal event.
    Truncated,
    /// One event was larger than the gateway holds (`limits.max_sse_event_bytes`).
    EventTooLarge { limit: usize },
}

/// Incremental translation of one provider's streamed response into OpenAI chunk objects.
///
/// Implementations must be chunking-independent: the chunks produced for a byte stream are the
/// same whatever the byte boundaries. The first chunk with content carries `role: "assistant"`;
/// each tool call keeps one `index` for all its deltas; the last chunk has `choices: []` and the
/// `usage` object (OpenAI's final usage chunk), and the stream stage strips it when the client
/// did not ask for usage.
pub trait StreamDecoder {
    /// Feed upstream bytes; append translated chunks to `out`.
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), StreamFault>;
    /// The upstream body ended: flush and check the stream ended properly.
    fn finish(&mut self, out: &mut Vec<Value>) -> Result<(), StreamFault>;
    /// Normalised usage, once the provider has reported it.
    fn usage(&self) -> Option<Usage>;
    /// The provider's own usage object(s), unchanged.
    fn raw_usage(&self) -> Option<Value>;
}

/// How a provider's body is cut into events, whatever the byte boundaries.
pub trait Framing: Default {
    type Event;
    /// A framing that holds at most `max_event_bytes` of one event, where the format lets the
    /// gateway choose (by default the format's own bound applies).
    fn limited(_max_event_bytes: usize) -> Self {
        Self::default()
    }
    /// Feed bytes; the events they complete. An error means no event came before the fault.
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Self::Event>, StreamFault>;
    /// A fault found after the events the last `push` returned. Those events are translated
    /// first, so the output does not depend on whether the bad bytes arrived in the same chunk.
    fn take_fault(&mut self) -> Option<StreamFault> {
        None
    }
}

/// Server-sent events: any bytes frame; an unterminated last event is dropped, as the
/// specification says (a stream that needed it is caught by its missing terminal event).
impl Framing for SseDecoder {
    type Event = SseEvent;

    fn limited(max_event_bytes: usize) -> Self {
        SseDecoder::with_max_event_bytes(max_event_bytes)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, StreamFault> {
        // The inherent `SseDecoder::push`, not this method.
        Ok(SseDecoder::push(self, bytes))
    }

    fn take_fault(&mut self) -> Option<StreamFault> {
        self.overflow().map(|limit| StreamFault::EventTooLarge { limit })
    }
}

/// How far a provider's stream has got: what the loop asks of every translator.
#[derive(Debug, Default)]
pub struct Progress {
    /// The stream has ended properly (its terminal event arrived); a body that ends before
    /// this is truncated.
    pub complete: bool,
    /// The provider's own usage object, as last reported.
    pub raw_usage: Option<Value>,
}

/// One provider's stream events as OpenAI chunks: all a provider stream knows besides its
/// framing.
pub trait EventTranslator {
    type Event;
    /// Normalises this provider's usage object.
    const USAGE: fn(&Value) -> Option<Usage>;

    fn new(ctx: &ResponseContext) -> Self;
    /// Translate one event, appending chunks to `out`.
    fn event(&mut self, event: &Self::Event, out: &mut Vec<Value>) -> Result<(), StreamFault>;
    /// Whether the stream is complete, and the usage reported so far.
    fn progress(&self) -> &Progress;
    /// Whether nothing more is read: later bytes, even corrupt ones, cannot spoil a complete
    /// answer. By default as soon as the stream is complete.
    fn closed(&self) -> bool {
        self.progress().complete
    }
    /// The body ended after a complete stream: append any last chunks.
    fn end(&mut self, _out: &mut Vec<Value>) {}
    /// Normalised usage, once the provider has reported it.
    fn usage(&self) -> Option<Usage> {
        self.progress().raw_usage.as_ref().and_then(Self::USAGE)
    }
}

/// A provider's stream decoder: its framing and its event translator, joined by the one loop.
pub struct FramedDecoder<F, T> {
    framing: F,
    translator: T,
}

impl<F: Framing, T: EventTranslator<Event = F::Event>> FramedDecoder<F, T> {
    pub fn new(ctx: ResponseContext) -> Self {
        FramedDecoder { framing: F::default(), translator: T::new(&ctx) }
    }

    /// A decoder whose framing holds at most `max_event_bytes` of one event.
    pub fn limited(ctx: ResponseContext, max_event_bytes: usize) -> Self {
        FramedDecoder { framing: F::limited(max_event_bytes), translator: T::new(&ctx) }
    }
}

impl<F: Framing, T: EventTranslator<Event = F::Event>> StreamDecoder for FramedDecoder<F, T> {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if self.translator.closed() {
            return Ok(());
        }
        for event in self.framing.push(bytes)? {
            if self.translator.closed() {
                break;
            }
            self.translator.event(&event, out)?;
        }
        match self.framing.take_fault() {
            Some(fault) if !self.translator.closed() => Err(fault),
            _ => Ok(()),
        }
    }

    fn finish(&mut self, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if !self.translator.progress().complete {
            return Err(StreamFault::Truncated);
        }
        self.translator.end(out);
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        self.translator.usage()
    }

    fn raw_usage(&self) -> Option<Value> {
        self.translator.progress().raw_usage.clone()
    }
}

/// An event's data as JSON; anything else is a malformed stream (the detail never quotes it).
pub fn json_data(data: &str) -> Result<Value, StreamFault> {
    serde_json::from_str(data).map_err(|_| StreamFault::Malformed { detail: "event data is not JSON".into() })
}
