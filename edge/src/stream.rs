//! The streamed response stage: upstream SSE in, client SSE out, chunk by chunk.
//!
//! Each upstream chunk is decoded, translated and forwarded as soon as it arrives; nothing waits
//! for the end of the stream. On the way the stage
//! - captures token usage from whichever chunk carries it (also a final chunk that still has
//!   `choices`), and strips the usage chunk the gateway injected when the client did not ask;
//! - turns a broken upstream, an idle timeout or a missing `[DONE]` into an SSE error event, so
//!   an error after the 200 always reaches the client;
//! - reports how the stream ended exactly once, including when the client went away (the stage
//!   is dropped, which drops, and so cancels, the upstream body).

use futures::future::{select, Either};
use futures::StreamExt;
use serde_json::Value;

use std::collections::BTreeMap;

use policy::guard::StreamGuard;

use crate::error::GatewayError;
use crate::event::Outcome;
use crate::guard::{GuardSummary, RequestGuard, StreamKey};
use crate::host::{ByteStream, Host};
use crate::openai::Usage;
use crate::sse::{SseDecoder, SseEvent};

/// How to translate one stream.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub provider: String,
    /// Remove usage from the client's stream (the gateway asked for it, the client did not).
    pub strip_usage: bool,
    /// Longest wait for the next upstream chunk before the stream is ended with an error.
    pub idle_timeout_ms: u64,
}

/// How a stream ended, as reported to the pipeline once.
pub struct StreamEnd {
    pub outcome: Outcome,
    /// The error label when the stream ended with an error event.
    pub error: Option<&'static str>,
    pub usage: Option<Usage>,
    pub guard: Option<GuardSummary>,
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
    guard: Option<OutputGuard>,
}

impl EndReport {
    fn report(&mut self, outcome: Outcome, error: Option<&'static str>) {
        if let Some(on_end) = self.on_end.take() {
            let guard = self.guard.as_ref().map(|g| g.guard.summary());
            on_end(StreamEnd { outcome, error, usage: self.usage, guard });
        }
    }
}

impl Drop for EndReport {
    fn drop(&mut self) {
        self.report(Outcome::ClientDisconnected, None);
    }
}

/// Translation state for an OpenAI-format chunk stream.
struct Translator {
    decoder: SseDecoder,
    strip_usage: bool,
    saw_done: bool,
    saw_error: bool,
}

impl Translator {
    fn push(&mut self, bytes: &[u8], end: &mut EndReport, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        for event in self.decoder.push(bytes) {
            self.translate(event, end, out)?;
        }
        Ok(())
    }

    fn translate(&mut self, event: SseEvent, end: &mut EndReport, out: &mut Vec<u8>) -> Result<(), GatewayError> {
        let guard = end.guard.as_mut().filter(|g| g.guard.guards_stream());
        if event.data == "[DONE]" {
            if let Some(guard) = guard {
                flush_unfinished(guard, out)?;
            }
            self.saw_done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
            return Ok(());
        }
        let mentions_usage = event.data.contains("\"usage\"");
        let has_error = event.data.contains("\"error\"");
        if guard.is_none() {
            // Most chunks carry neither usage nor an error: forward their bytes without
            // re-encoding, and remove a compact `"usage":null` textually instead of parsing.
            if !has_error && mentions_usage && self.strip_usage {
                if let Some(stripped) = without_null_usage(&event.data) {
                    crate::sse::encode(event.event.as_deref(), &stripped, out);
                    return Ok(());
                }
            }
            if !(mentions_usage || has_error) {
                crate::sse::encode(event.event.as_deref(), &event.data, out);
                return Ok(());
            }
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(&event.data) else {
            crate::sse::encode(event.event.as_deref(), &event.data, out);
            return Ok(());
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            self.saw_error = true;
        }
        let chunk_usage = chunk.get("usage").filter(|u| !u.is_null());
        if let Some(u) = chunk_usage.and_then(Usage::from_openai) {
            end.usage = Some(u);
        }
        let only_usage = chunk_usage.is_some() && chunk.get("choices").and_then(Value::as_array).is_some_and(|c| c.is_empty());
        let mut modified = false;
        if let Some(guard) = end.guard.as_mut().filter(|g| g.guard.guards_stream()) {
            guard.guard.guard_chunk(&mut guard.choices, &mut chunk)?;
            modified = true;
        }
        if self.strip_usage && chunk.get("usage").is_some() {
            if only_usage {
                return Ok(());
            }
            if let Some(object) = chunk.as_object_mut() {
                object.remove("usage");
            }
            modified = true;
        }
        if modified {
            crate::sse::encode(event.event.as_deref(), &chunk.to_string(), out);
        } else {
            crate::sse::encode(event.event.as_deref(), &event.data, out);
        }
        Ok(())
    }
}

/// Release text still held for choices whose stream ended without a `finish_reason`.
fn flush_unfinished(guard: &mut OutputGuard, out: &mut Vec<u8>) -> Result<(), GatewayError> {
    for (index, delta) in guard.guard.release_unfinished(&mut guard.choices)? {
        let chunk = serde_json::json!({
            "object": "chat.completion.chunk",
            "choices": [{ "index": index, "delta": delta, "finish_reason": null }]
        });
        crate::sse::encode(None, &chunk.to_string(), out);
    }
    Ok(())
}

/// The chunk with a compact `"usage":null` member removed, if that is the only usage it has.
fn without_null_usage(data: &str) -> Option<String> {
    if data.matches("\"usage\"").count() != 1 {
        return None;
    }
    for member in [",\"usage\":null", "\"usage\":null,"] {
        if let Some(at) = data.find(member) {
            let mut out = String::with_capacity(data.len());
            out.push_str(&data[..at]);
            out.push_str(&data[at + member.len()..]);
            return Some(out);
        }
    }
    None
}

struct State<H: Host> {
    upstream: Option<ByteStream>,
    translator: Translator,
    host: H,
    plan: StreamPlan,
    end: EndReport,
}

impl<H: Host> State<H> {
    /// End the stream with an error event for the client.
    fn fail(&mut self, error: GatewayError) -> Vec<u8> {
        self.upstream = None;
        self.end.report(Outcome::StreamError, Some(error.label()));
        error.to_sse_event()
    }
}

/// Translate an OpenAI-format SSE stream for the client, guarding its text if `guard` is set.
pub fn openai_chunks<H: Host>(
    upstream: ByteStream,
    host: H,
    plan: StreamPlan,
    guard: Option<OutputGuard>,
    on_end: impl FnOnce(StreamEnd) + 'static,
) -> ByteStream {
    let state = State {
        upstream: Some(upstream),
        translator: Translator { decoder: SseDecoder::new(), strip_usage: plan.strip_usage, saw_done: false, saw_error: false },
        host,
        plan,
        end: EndReport { on_end: Some(Box::new(on_end)), usage: None, guard },
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            let upstream = state.upstream.as_mut()?;
            let timer = state.host.sleep(state.plan.idle_timeout_ms);
            let next = match select(upstream.next(), Box::pin(timer)).await {
                Either::Left((next, _)) => next,
                Either::Right(_) => {
                    let error = GatewayError::UpstreamTimeout {
                        provider: state.plan.provider.clone(),
                        after_ms: state.plan.idle_timeout_ms,
                    };
                    let out = state.fail(error);
                    return Some((Ok(out), state));
                }
            };
            match next {
                Some(Ok(bytes)) => {
                    let mut out = Vec::new();
                    if let Err(error) = state.translator.push(&bytes, &mut state.end, &mut out) {
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
                    if state.translator.saw_done {
                        state.end.report(Outcome::Completed, None);
                        return None;
                    }
                    let out = state.fail(GatewayError::UpstreamStreamBroken { provider: state.plan.provider.clone() });
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
        let mut translator = Translator { decoder: SseDecoder::new(), strip_usage, saw_done: false, saw_error: false };
        let mut end = EndReport { on_end: None, usage: None, guard: None };
        let mut out = Vec::new();
        translator.push(input, &mut end, &mut out).unwrap();
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
        assert_eq!(without_null_usage(r#"{"a":1,"usage":null}"#).as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(without_null_usage(r#"{"usage":null,"a":1}"#).as_deref(), Some(r#"{"a":1}"#));
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
}
