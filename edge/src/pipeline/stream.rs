//! The streamed response stage: upstream SSE in, client SSE out, chunk by chunk.
//!
//! Each upstream chunk is decoded, translated and forwarded as soon as it arrives; nothing waits
//! for the end of the stream. On the way the stage
//! - captures token usage from whichever chunk carries it (also a final chunk that still has
//!   `choices`), and strips the usage chunk the gateway injected when the client did not ask;
//! - turns a broken upstream, an idle timeout, a missing `[DONE]`, an event larger than
//!   `limits.max_sse_event_bytes` or (OpenAI format) a `data:` line that is not JSON into an SSE
//!   error event, so an error after the 200 always reaches the client;
//! - passes the upstream's own error events and error types only through the call's [`Scrub`],
//!   so no credential the gateway sent reaches the client;
//! - reports how the stream ended exactly once, including when the client went away (the stage
//!   is dropped, which drops, and so cancels, the upstream body).

use futures::future::{select, Either};
use futures::{FutureExt, StreamExt};
use serde_json::Value;

use std::collections::BTreeMap;

use policy::guard::StreamGuard;

use crate::cache::AnswerRecorder;
use crate::error::GatewayError;
use crate::event::Outcome;
use crate::event::GuardSummary;
use crate::pipeline::guard::{RequestGuard, StreamKey};
use crate::host::{ByteStream, Host};
use crate::messages::AnthropicEventEncoder;
use crate::openai::Usage;
use crate::provider::{Scrub, StreamDecoder, StreamFault};
use crate::sse::{SseDecoder, SseEvent};

/// How to translate one stream.
pub struct StreamPlan {
    pub provider: String,
    /// Remove usage from the client's stream (the gateway asked for it, the client did not).
    pub strip_usage: bool,
    /// Longest wait for the next upstream chunk before the stream is ended with an error.
    pub idle_timeout_ms: u64,
    /// How the upstream's bytes become OpenAI chunks: `None` when they already are OpenAI SSE.
    pub decoder: Option<Box<dyn StreamDecoder>>,
    /// How the chunks are written for the client.
    pub client: ClientFormat,
    /// Count the output text forwarded to the client (a reservation may be charged by it).
    pub count_delivered: bool,
    /// Largest single upstream event (`limits.max_sse_event_bytes`).
    pub max_event_bytes: usize,
    /// Removes the call's credentials from upstream error text.
    pub scrub: Scrub,
    /// Assemble the answer as the upstream sent it (before the output guard), for the response
    /// cache: [`StreamEnd::answer`] has it when the stream completed.
    pub record_answer: bool,
}

/// Writes translated OpenAI chunks in another API's stream format (Anthropic events).
pub trait ClientEncoder {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>);
    /// The stream completed; `usage` is the provider's final usage if it reported any.
    fn done(&mut self, usage: Option<Usage>, out: &mut Vec<u8>);
    fn error(&mut self, error: &GatewayError, out: &mut Vec<u8>);
}

/// Anthropic stream events (`/v1/messages` clients), from the pipeline's OpenAI chunks.
impl ClientEncoder for AnthropicEventEncoder {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.push(chunk, out);
    }

    fn done(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        self.finish(usage, out);
    }

    fn error(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        AnthropicEventEncoder::error(self, error, out);
    }
}

/// The client's stream format.
pub enum ClientFormat {
    /// OpenAI chat completion chunks, `data: [DONE]` at the end.
    OpenAi,
    Other(Box<dyn ClientEncoder>),
}

impl ClientFormat {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        match self {
            ClientFormat::OpenAi => crate::sse::encode(None, &chunk.to_string(), out),
            ClientFormat::Other(encoder) => encoder.chunk(chunk, out),
        }
    }

    fn done(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        match self {
            ClientFormat::OpenAi => out.extend_from_slice(b"data: [DONE]\n\n"),
            ClientFormat::Other(encoder) => encoder.done(usage, out),
        }
    }

    fn error(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        match self {
            ClientFormat::OpenAi => out.extend(error.to_sse_event()),
            ClientFormat::Other(encoder) => encoder.error(error, out),
        }
    }
}

/// How a stream ended, as reported to the pipeline once.
pub struct StreamEnd {
    pub outcome: Outcome,
    /// The error label when the stream ended with an error event.
    pub error: Option<&'static str>,
    pub usage: Option<Usage>,
    /// The provider's own usage object when a translating provider reported one.
    pub raw_usage: Option<Value>,
    pub guard: Option<GuardSummary>,
    /// Upper-bound output tokens of the text forwarded to the client (0 unless counted).
    pub delivered_output_tokens: u64,
    /// The whole chat completion the stream added up to, when it was recorded and completed.
    pub answer: Option<Value>,
}

type OnEnd = Box<dyn FnOnce(StreamEnd)>;

/// The output guard of one stream: the request's guard state and one text guard per choice.
pub struct OutputGuard {
    guard: RequestGuard,
    choices: BTreeMap<StreamKey, StreamGuard>,
}

impl OutputGuard {
    pub fn new(guard: RequestGuard) -> Self {
        OutputGuard { guard, choices: BTreeMap::new() }
    }
}

/// Reports the end exactly once; if dropped unreported, the client went away.
struct EndReport {
    on_end: Option<OnEnd>,
    usage: Option<Usage>,
    raw_usage: Option<Value>,
    guard: Option<OutputGuard>,
    /// `None` when the delivered text is not counted.
    delivered: Option<u64>,
    /// `None` when the answer is not recorded.
    recorder: Option<AnswerRecorder>,
}

impl EndReport {
    fn new(on_end: Option<OnEnd>, guard: Option<OutputGuard>, count_delivered: bool) -> Self {
        EndReport { on_end, usage: None, raw_usage: None, guard, delivered: count_delivered.then_some(0), recorder: None }
    }

    fn record(&mut self, chunk: &Value) {
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.push(chunk);
        }
    }

    fn report(&mut self, outcome: Outcome, error: Option<&'static str>) {
        if let Some(on_end) = self.on_end.take() {
            let guard = self.guard.as_ref().map(|g| g.guard.summary());
            let delivered_output_tokens = self.delivered.unwrap_or(0);
            let answer = self.recorder.take().filter(|_| outcome == Outcome::Completed).and_then(AnswerRecorder::finish);
            on_end(StreamEnd { outcome, error, usage: self.usage, raw_usage: self.raw_usage.take(), guard, delivered_output_tokens, answer });
        }
    }

    /// Count the text of an OpenAI chunk forwarded to the client as it is (its SSE data, given
    /// as the text `before` and `after` a member that was cut out).
    fn delivered_data(&mut self, before: &str, after: &str) {
        if let Some(count) = self.delivered.as_mut() {
            let parsed = if after.is_empty() { serde_json::from_str::<Value>(before) } else { serde_json::from_str(&[before, after].concat()) };
            if let Ok(chunk) = parsed {
                *count = count.saturating_add(crate::tokenize::chunk_output_tokens(&chunk));
            }
        }
    }

    fn delivered_chunk(&mut self, chunk: &Value) {
        if let Some(count) = self.delivered.as_mut() {
            *count = count.saturating_add(crate::tokenize::chunk_output_tokens(chunk));
        }
    }
}

impl Drop for EndReport {
    fn drop(&mut self) {
        self.report(Outcome::ClientDisconnected, None);
    }
}

/// Where the upstream's chunks come from.
enum Source {
    /// OpenAI SSE, forwarded event by event (byte for byte when nothing needs changing).
    OpenAiSse(SseDecoder),
    /// Another provider's stream, decoded into OpenAI chunk objects.
    Provider(Box<dyn StreamDecoder>),
}

/// Translation state for one stream.
struct Translator {
    source: Source,
    client: ClientFormat,
    strip_usage: bool,
    saw_done: bool,
    saw_error: bool,
    scrub: Scrub,
}

impl Translator {
    fn new(decoder: Option<Box<dyn StreamDecoder>>, client: ClientFormat, strip_usage: bool, max_event_bytes: usize, scrub: Scrub) -> Self {
        let source = match decoder {
            Some(decoder) => Source::Provider(decoder),
            None => Source::OpenAiSse(SseDecoder::with_max_event_bytes(max_event_bytes)),
        };
        // Other client formats carry usage in their own events: the encoder needs the chunk.
        let strip_usage = strip_usage && matches!(client, ClientFormat::OpenAi);
        Translator { source, client, strip_usage, saw_done: false, saw_error: false, scrub }
    }

    fn push(&mut self, bytes: &[u8], end: &mut EndReport, out: &mut Vec<u8>, provider: &str) -> Result<(), GatewayError> {
        match &mut self.source {
            Source::OpenAiSse(decoder) => {
                let events = decoder.push(bytes);
                let overflow = decoder.overflow();
                for event in events {
                    self.translate(event, end, out)?;
                }
                match overflow {
                    Some(limit) => Err(fault_error(StreamFault::EventTooLarge { limit }, provider)),
                    None => Ok(()),
                }
            }
            Source::Provider(decoder) => {
                let mut chunks = Vec::new();
                let pushed = decoder.push(bytes, &mut chunks);
                for chunk in chunks {
                    self.chunk(chunk, end, out)?;
                }
                pushed.map_err(|fault| fault_error(fault, provider))
            }
        }
    }

    /// The upstream body ended: whether the stream is complete (else the caller fails it).
    fn finish(&mut self, end: &mut EndReport, out: &mut Vec<u8>, provider: &str) -> Result<bool, GatewayError> {
        let Source::Provider(decoder) = &mut self.source else {
            if self.saw_done && !matches!(self.client, ClientFormat::OpenAi) {
                self.client.done(end.usage, out);
            }
            return Ok(self.saw_done);
        };
        let mut chunks = Vec::new();
        let finished = decoder.finish(&mut chunks);
        let (usage, raw) = (decoder.usage(), decoder.raw_usage());
        for chunk in chunks {
            self.chunk(chunk, end, out)?;
        }
        finished.map_err(|fault| fault_error(fault, provider))?;
        // The decoder's usage is exact (cache writes included); the usage chunk's is OpenAI's view.
        if usage.is_some() {
            end.usage = usage;
        }
        end.raw_usage = raw;
        if let Some(guard) = end.guard.as_mut().filter(|g| g.guard.guards_stream()) {
            flush_unfinished(guard, &mut self.client, out)?;
        }
        self.saw_done = true;
        self.client.done(end.usage, out);
        Ok(true)
    }

    fn translate(&mut self, event: SseEvent, end: &mut EndReport, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        let guard = end.guard.as_mut().filter(|g| g.guard.guards_stream());
        if event.data == "[DONE]" {
            if let Some(guard) = guard {
                flush_unfinished(guard, &mut self.client, out)?;
            }
            self.saw_done = true;
            if matches!(self.client, ClientFormat::OpenAi) {
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            return Ok(());
        }
        if !is_json(&event.data) {
            return Err(data_not_json());
        }
        let mentions_usage = event.data.contains("\"usage\"");
        let has_error = event.data.contains("\"error\"");
        if guard.is_none() && end.recorder.is_none() && matches!(self.client, ClientFormat::OpenAi) {
            // Most chunks carry neither usage nor an error: forward their bytes without
            // re-encoding, and remove a compact `"usage":null` textually instead of parsing.
            if !has_error && mentions_usage && self.strip_usage {
                if let Some((before, after)) = without_null_usage(&event.data) {
                    end.delivered_data(before, after);
                    encode_joined(event.event.as_deref(), before, after, out);
                    return Ok(());
                }
            }
            if !(mentions_usage || has_error) {
                end.delivered_data(&event.data, "");
                crate::sse::encode(event.event.as_deref(), &event.data, out);
                return Ok(());
            }
        }
        let chunk = serde_json::from_str::<Value>(&event.data).map_err(|_| data_not_json())?;
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            self.saw_error = true;
            if !matches!(self.client, ClientFormat::OpenAi) {
                let kind = chunk.pointer("/error/type").and_then(Value::as_str).unwrap_or("error").to_string();
                return Err(GatewayError::UpstreamStreamFailed { provider: String::new(), kind });
            }
            // The upstream's own error event, with the call's credentials taken out.
            let Some(scrubbed) = self.scrub.error_body(&chunk) else {
                return Err(GatewayError::UpstreamStreamFailed { provider: String::new(), kind: "error".into() });
            };
            crate::sse::encode(event.event.as_deref(), &scrubbed.to_string(), out);
            return Ok(());
        }
        let guarded = end.guard.as_ref().is_some_and(|g| g.guard.guards_stream());
        let keep_bytes = !guarded && !self.strip_usage && matches!(self.client, ClientFormat::OpenAi);
        if keep_bytes {
            // Nothing to change: capture the usage, forward the upstream's bytes.
            if let Some(u) = chunk.get("usage").and_then(Usage::from_openai) {
                end.usage = Some(u);
            }
            end.record(&chunk);
            end.delivered_chunk(&chunk);
            crate::sse::encode(event.event.as_deref(), &event.data, out);
            return Ok(());
        }
        self.chunk(chunk, end, out)
    }

    /// One OpenAI chunk object: capture usage, guard its text, strip injected usage, write it.
    fn chunk(&mut self, mut chunk: Value, end: &mut EndReport, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        end.record(&chunk);
        let chunk_usage = chunk.get("usage").filter(|u| !u.is_null());
        if let Some(u) = chunk_usage.and_then(Usage::from_openai) {
            end.usage = Some(u);
        }
        let only_usage = chunk_usage.is_some() && chunk.get("choices").and_then(Value::as_array).is_some_and(|c| c.is_empty());
        if let Some(guard) = end.guard.as_mut().filter(|g| g.guard.guards_stream()) {
            guard.guard.guard_chunk(&mut guard.choices, &mut chunk)?;
        }
        if self.strip_usage && chunk.get("usage").is_some() {
            if only_usage {
                return Ok(());
            }
            if let Some(object) = chunk.as_object_mut() {
                object.remove("usage");
            }
        }
        end.delivered_chunk(&chunk);
        self.client.chunk(&chunk, out);
        Ok(())
    }
}

fn fault_error(fault: StreamFault, provider: &str) -> GatewayError {
    match fault {
        StreamFault::Provider { kind } => GatewayError::UpstreamStreamFailed { provider: provider.to_string(), kind },
        StreamFault::Malformed { .. } | StreamFault::Truncated => GatewayError::UpstreamStreamBroken { provider: provider.to_string() },
        StreamFault::EventTooLarge { limit } => GatewayError::UpstreamInvalidResponse {
            provider: provider.to_string(),
            detail: format!("a stream event is larger than the gateway's limit of {limit} bytes (limits.max_sse_event_bytes)"),
        },
    }
}

/// Whether an OpenAI-format event's data is JSON (checked without building it).
fn is_json(data: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok()
}

/// An OpenAI-format event whose data is not JSON: the stream cannot be trusted further. The
/// provider is named when the stream fails.
fn data_not_json() -> GatewayError {
    GatewayError::UpstreamInvalidResponse { provider: String::new(), detail: "a stream event's data is not JSON".into() }
}

/// Release text still held for choices whose stream ended without a `finish_reason`.
fn flush_unfinished(guard: &mut OutputGuard, client: &mut ClientFormat, out: &mut Vec<u8>) -> Result<(), GatewayError> {
    for (index, delta) in guard.guard.release_unfinished(&mut guard.choices)? {
        let chunk = serde_json::json!({
            "object": "chat.completion.chunk",
            "choices": [{ "index": index, "delta": delta, "finish_reason": null }]
        });
        client.chunk(&chunk, out);
    }
    Ok(())
}

/// The chunk with a compact `"usage":null` member removed, if that is the only usage it has:
/// the text before and after the member.
fn without_null_usage(data: &str) -> Option<(&str, &str)> {
    if data.matches("\"usage\"").count() != 1 {
        return None;
    }
    for member in [",\"usage\":null", "\"usage\":null,"] {
        if let Some(at) = data.find(member) {
            return Some((&data[..at], &data[at + member.len()..]));
        }
    }
    None
}

/// [`crate::sse::encode`] of the data `before` + `after`, without joining them first when the
/// data is one line (an event's data never holds a line ending unless it had several lines).
fn encode_joined(event: Option<&str>, before: &str, after: &str, out: &mut Vec<u8>) {
    if before.contains('\n') || after.contains('\n') {
        crate::sse::encode(event, &[before, after].concat(), out);
        return;
    }
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(before.as_bytes());
    out.extend_from_slice(after.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Output size up to which upstream chunks that are already there are batched into one.
const BATCH_BYTES: usize = 16 * 1024;

struct State<H: Host> {
    upstream: Option<ByteStream>,
    /// The upstream's next item (its end or an error), read while batching and not yet handled.
    pending: Option<Option<crate::http::BodyChunk>>,
    translator: Translator,
    host: H,
    plan: StreamPlan,
    end: EndReport,
}

impl<H: Host> State<H> {
    /// End the stream with an error event for the client.
    fn fail(&mut self, error: GatewayError) -> Vec<u8> {
        let named = |provider: String| if provider.is_empty() { self.plan.provider.clone() } else { provider };
        let error = match error {
            // The provider's error type is upstream text too.
            GatewayError::UpstreamStreamFailed { provider, kind } => {
                GatewayError::UpstreamStreamFailed { provider: named(provider), kind: self.plan.scrub.label(&kind) }
            }
            GatewayError::UpstreamInvalidResponse { provider, detail } => GatewayError::UpstreamInvalidResponse { provider: named(provider), detail },
            other => other,
        };
        self.upstream = None;
        self.end.report(Outcome::StreamError, Some(error.label()));
        let mut out = Vec::new();
        self.translator.client.error(&error, &mut out);
        out
    }
}

/// Translate an upstream stream for the client chunk by chunk, guarding its text if `guard` is set.
pub fn translate_stream<H: Host>(
    upstream: ByteStream,
    host: H,
    mut plan: StreamPlan,
    guard: Option<OutputGuard>,
    on_end: impl FnOnce(StreamEnd) + 'static,
) -> ByteStream {
    let client = std::mem::replace(&mut plan.client, ClientFormat::OpenAi);
    let translator = Translator::new(plan.decoder.take(), client, plan.strip_usage, plan.max_event_bytes, plan.scrub.clone());
    let mut end = EndReport::new(Some(Box::new(on_end)), guard, plan.count_delivered);
    if plan.record_answer {
        end.recorder = Some(AnswerRecorder::default());
    }
    let state = State {
        upstream: Some(upstream),
        pending: None,
        translator,
        host,
        plan,
        end,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            let upstream = state.upstream.as_mut()?;
            // A chunk the upstream already holds needs no idle timer.
            let next = match state.pending.take().or_else(|| upstream.next().now_or_never()) {
                Some(next) => next,
                None => {
                    let timer = state.host.sleep(state.plan.idle_timeout_ms);
                    match select(upstream.next(), Box::pin(timer)).await {
                        Either::Left((next, _)) => next,
                        Either::Right(_) => {
                            let error = GatewayError::UpstreamTimeout {
                                provider: state.plan.provider.clone(),
                                after_ms: state.plan.idle_timeout_ms,
                            };
                            let out = state.fail(error);
                            return Some((Ok(out), state));
                        }
                    }
                }
            };
            match next {
                Some(Ok(bytes)) => {
                    let mut out = Vec::new();
                    let mut pushed = state.translator.push(&bytes, &mut state.end, &mut out, &state.plan.provider);
                    // Chunks that arrived together leave as one: translate those the upstream
                    // already holds into the same output, up to a bound.
                    while pushed.is_ok() && out.len() < BATCH_BYTES {
                        match state.upstream.as_mut().and_then(|u| u.next().now_or_never()) {
                            Some(Some(Ok(bytes))) => pushed = state.translator.push(&bytes, &mut state.end, &mut out, &state.plan.provider),
                            Some(other) => {
                                state.pending = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    if let Err(error) = pushed {
                        // A guard blocked the response: what was already checked goes out, then
                        // the error event; the upstream is cancelled.
                        out.extend(state.fail(error));
                        return Some((Ok(out), state));
                    }
                    if !out.is_empty() {
                        return Some((Ok(out), state));
                    }
                }
                Some(Err(_)) => {
                    let out = state.fail(GatewayError::UpstreamStreamBroken { provider: state.plan.provider.clone() });
                    return Some((Ok(out), state));
                }
                None => {
                    state.upstream = None;
                    if state.translator.saw_error {
                        state.end.report(Outcome::StreamError, Some("upstream_error"));
                        return None;
                    }
                    let provider = state.plan.provider.clone();
                    let mut out = Vec::new();
                    match state.translator.finish(&mut state.end, &mut out, &provider) {
                        Ok(true) => {
                            state.end.report(Outcome::Completed, None);
                            return (!out.is_empty()).then_some((Ok(out), state));
                        }
                        Ok(false) => out.extend(state.fail(GatewayError::UpstreamStreamBroken { provider })),
                        Err(error) => out.extend(state.fail(error)),
                    }
                    return Some((Ok(out), state));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate_all(input: &[u8], strip_usage: bool) -> (Vec<u8>, Option<Usage>) {
        let mut translator = Translator::new(None, ClientFormat::OpenAi, strip_usage, crate::sse::DEFAULT_MAX_EVENT_BYTES, Scrub::default());
        let mut end = EndReport::new(None, None, false);
        let mut out = Vec::new();
        translator.push(input, &mut end, &mut out, "p").unwrap();
        (out, end.usage)
    }

    const WITH_USAGE: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn injected_usage_is_captured_and_stripped() {
        let (out, usage) = translate_all(WITH_USAGE, true);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("usage"), "{text}");
        assert!(text.contains("\"content\":\"hi\""));
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(usage.unwrap().total_tokens, 6);
    }

    #[test]
    fn requested_usage_is_forwarded_byte_for_byte() {
        let (out, usage) = translate_all(WITH_USAGE, false);
        assert_eq!(out, WITH_USAGE);
        assert_eq!(usage.unwrap().input_tokens, 5);
    }

    #[test]
    fn null_usage_is_removed_textually_only_when_unambiguous() {
        let joined = |data| without_null_usage(data).map(|(before, after)| [before, after].concat());
        assert_eq!(joined(r#"{"a":1,"usage":null}"#).as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(joined(r#"{"usage":null,"a":1}"#).as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(without_null_usage(r#"{"a":1, "usage": null}"#), None, "spaced JSON takes the parsing path");
        assert_eq!(without_null_usage(r#"{"a":{"usage":null},"usage":null}"#), None, "nested usage");
        let (out, _) = translate_all(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}], \"usage\": null}\n\n", true);
        assert!(!String::from_utf8(out).unwrap().contains("usage"));
    }

    #[test]
    fn usage_on_a_final_chunk_with_choices_is_not_lost() {
        let input = b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        let (out, usage) = translate_all(input, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("finish_reason"), "the chunk itself is kept");
        assert!(!text.contains("usage"));
        assert_eq!(usage.unwrap().total_tokens, 5);
    }

    #[test]
    fn pass_through_events_keep_their_bytes_when_usage_is_stripped() {
        let input = b"event: x\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a b\"}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"}}],\"usage\":null}\n\n\
data: {\"usage\":null,\"choices\":[]}\n\ndata: [DONE]\n\n";
        let (out, _) = translate_all(input, true);
        let expected = b"event: x\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a b\"}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"}}]}\n\n\
data: {\"choices\":[]}\n\ndata: [DONE]\n\n";
        assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected.to_vec()).unwrap());
    }

    #[test]
    fn a_chunk_the_gateway_changes_is_re_encoded() {
        // Real usage on a chunk with choices: parsed, usage removed, the rest re-serialised.
        let input = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}], \"usage\": {\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n";
        let (out, usage) = translate_all(input, true);
        assert_eq!(String::from_utf8(out).unwrap(), "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"index\":0}]}\n\n");
        assert_eq!(usage.unwrap().total_tokens, 2);
    }

    #[test]
    fn joined_encoding_matches_encoding_the_joined_data() {
        for (event, before, after) in [(None, "{\"a\":1", "}"), (Some("e"), "{\"a\":", "2}"), (None, "{\"a\":\n1", "}"), (Some("e"), "x", "")] {
            let (mut joined, mut plain) = (Vec::new(), Vec::new());
            encode_joined(event, before, after, &mut joined);
            crate::sse::encode(event, &[before, after].concat(), &mut plain);
            assert_eq!(joined, plain, "{before}|{after}");
        }
    }

    fn openai_plan() -> StreamPlan {
        StreamPlan {
            provider: "p".into(),
            strip_usage: false,
            idle_timeout_ms: 1000,
            decoder: None,
            client: ClientFormat::OpenAi,
            count_delivered: false,
            max_event_bytes: crate::sse::DEFAULT_MAX_EVENT_BYTES,
            scrub: Scrub::default(),
            record_answer: false,
        }
    }

    #[test]
    fn chunks_that_arrived_together_leave_as_one_and_the_end_still_completes() {
        use std::cell::RefCell;
        use std::rc::Rc;
        let host = crate::testing::MemoryHost::new();
        let pieces: Vec<&[u8]> = vec![&WITH_USAGE[..40], &WITH_USAGE[40..100], &WITH_USAGE[100..]];
        let upstream: ByteStream = Box::pin(futures::stream::iter(pieces.into_iter().map(|p| Ok(p.to_vec()))));
        let plan = openai_plan();
        let ended = Rc::new(RefCell::new(None));
        let seen = ended.clone();
        let stream = translate_stream(upstream, host, plan, None, move |end| *seen.borrow_mut() = Some((end.outcome, end.usage)));
        let outputs: Vec<Vec<u8>> = futures::executor::block_on(stream.map(Result::unwrap).collect());
        assert_eq!(outputs, vec![WITH_USAGE.to_vec()], "one output for the three ready reads, bytes unchanged");
        let (outcome, usage) = ended.borrow_mut().take().expect("reported");
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(usage.unwrap().total_tokens, 6);
    }

    #[test]
    fn an_upstream_failure_read_while_batching_follows_the_chunks_before_it() {
        let host = crate::testing::MemoryHost::new();
        let items = vec![Ok(b"data: {\"choices\":[]}\n\n".to_vec()), Err(crate::http::BodyError("reset".into()))];
        let upstream: ByteStream = Box::pin(futures::stream::iter(items));
        let plan = openai_plan();
        let stream = translate_stream(upstream, host, plan, None, |end| assert_eq!(end.outcome, Outcome::StreamError));
        let outputs: Vec<Vec<u8>> = futures::executor::block_on(stream.map(Result::unwrap).collect());
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0], b"data: {\"choices\":[]}\n\n");
        assert!(String::from_utf8(outputs[1].clone()).unwrap().contains("error"));
    }
}
