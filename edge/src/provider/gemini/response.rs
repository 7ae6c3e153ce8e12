//! Gemini's answers back to OpenAI's shape: whole `GenerateContentResponse`s, the `alt=sse`
//! stream, error bodies and embeddings.

use serde_json::{json, Value};

use crate::provider::answer::{self, assistant_message, embeddings_list};
use crate::provider::call::{ProviderErrorBody, ResponseContext, Translated};
use crate::provider::chunk::ChunkWriter;
use crate::provider::decode::{self, EventTranslator, FramedDecoder, Progress, StreamFault};
use crate::error::GatewayError;
use crate::openai::{EmbeddingsRequest, Usage};
use crate::sse::{SseDecoder, SseEvent};

const PROVIDER: &str = "gemini";

/// Gemini `finishReason` -> OpenAI `finish_reason`; anything else (`STOP`, `OTHER`,
/// `MALFORMED_FUNCTION_CALL`, ...) is `stop`.
const FINISH: &[(&str, &str)] = &[
    ("STOP", "stop"),
    ("MAX_TOKENS", "length"),
    ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"),
    ("SPII", "content_filter"),
    ("IMAGE_SAFETY", "content_filter"),
];

/// Candidate indexes above this are malformed (OpenAI's `n` is at most 128); it also keeps
/// per-choice state small whatever index the upstream sends.
const MAX_CANDIDATES: u64 = 128;

fn bad_response(detail: &str) -> GatewayError {
    GatewayError::UpstreamInvalidResponse { provider: PROVIDER.into(), detail: detail.into() }
}

/// Normalised usage from `usageMetadata`. `promptTokenCount` includes the cached tokens.
fn usage_of(meta: &Value) -> Option<Usage> {
    let meta = meta.as_object()?;
    if !["promptTokenCount", "candidatesTokenCount", "totalTokenCount"].iter().any(|k| meta.contains_key(*k)) {
        return None;
    }
    let get = |key: &str| meta.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = get("cachedContentTokenCount");
    let fresh = get("promptTokenCount").saturating_sub(cached).saturating_add(get("toolUsePromptTokenCount"));
    let thoughts = get("thoughtsTokenCount");
    Some(Usage::from_parts(fresh, cached, 0, get("candidatesTokenCount").saturating_add(thoughts), thoughts))
}

/// A Gemini finish reason as OpenAI's: a normal stop after function calls is `tool_calls`.
fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match reason.map(|r| answer::map_finish(r, FINISH)) {
        Some("stop") | None if has_tool_calls => "tool_calls",
        Some(reason) => reason,
        None => "stop",
    }
}

/// Tool call ids for one response: the part's own id, else `call_<response id>_<n>`.
#[derive(Debug)]
struct CallIds {
    stem: String,
    next: u64,
}

impl CallIds {
    fn new(ctx: &ResponseContext) -> Self {
        let stem: String = ctx.id.strip_prefix("chatcmpl-").unwrap_or(&ctx.id).chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        CallIds { stem, next: 0 }
    }

    fn id(&mut self, own: Option<&str>) -> String {
        let n = self.next;
        self.next += 1;
        match own.filter(|id| !id.is_empty()) {
            Some(id) => id.to_string(),
            None if self.stem.is_empty() => format!("call_{n}"),
            None => format!("call_{}_{n}", self.stem),
        }
    }
}

/// A `functionCall` part's name, arguments (a JSON string) and thought signature.
fn function_call(part: &Value) -> Option<(&str, Option<&str>, String, Option<&str>)> {
    let call = part.get("functionCall")?;
    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
    let arguments = match call.get("args") {
        Some(args) if args.is_object() => args.to_string(),
        _ => "{}".to_string(),
    };
    let id = call.get("id").and_then(Value::as_str);
    let signature = part.get("thoughtSignature").and_then(Value::as_str).filter(|s| !s.is_empty());
    Some((name, id, arguments, signature))
}

fn signature_extra(signature: &str) -> Value {
    json!({ "google": { "thought_signature": signature } })
}

/// The candidate's index (proto3 JSON omits a zero `index`); `None` when out of range.
fn candidate_index(candidate: &Value, position: usize) -> Option<usize> {
    let index = candidate.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
    (index < MAX_CANDIDATES).then_some(index as usize)
}

fn candidate_parts(candidate: &Value) -> &[Value] {
    candidate.pointer("/content/parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// A whole `GenerateContentResponse` as an OpenAI `chat.completion`.
pub fn chat_response(body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("response body is not JSON"))?;
    if !value.is_object() {
        return Err(bad_response("response body is not a JSON object"));
    }
    let candidates = value.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let blocked = value.pointer("/promptFeedback/blockReason").and_then(Value::as_str).is_some();
    if candidates.is_empty() && !blocked {
        return Err(bad_response("response has no candidates"));
    }
    let mut ids = CallIds::new(ctx);
    if candidates.len() as u64 > MAX_CANDIDATES {
        return Err(bad_response("response has too many candidates"));
    }
    let mut choices = Vec::new();
    for (position, candidate) in candidates.iter().enumerate() {
        let index = candidate_index(candidate, position).ok_or_else(|| bad_response("candidate index out of range"))?;
        choices.push(choice(candidate, index, &mut ids));
    }
    if choices.is_empty() {
        // The prompt itself was blocked: no candidate at all.
        choices.push(answer::choice(0, json!({ "role": "assistant", "content": "" }), "content_filter"));
    }
    let model = value.get("modelVersion").and_then(Value::as_str);
    Ok(answer::completion(ctx, None, model, choices, value.get("usageMetadata"), usage_of))
}

fn choice(candidate: &Value, index: usize, ids: &mut CallIds) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for part in candidate_parts(candidate) {
        if let Some((name, own_id, arguments, signature)) = function_call(part) {
            let mut call = json!({ "id": ids.id(own_id), "type": "function", "function": { "name": name, "arguments": arguments } });
            if let Some(signature) = signature {
                call["extra_content"] = signature_extra(signature);
            }
            calls.push(call);
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                reasoning.push_str(t);
            } else {
                text.push_str(t);
            }
        }
        // inlineData, executableCode, ...: no OpenAI chat form.
    }
    let finish = finish_reason(candidate.get("finishReason").and_then(Value::as_str), !calls.is_empty());
    let message = assistant_message(text, &reasoning, calls);
    answer::choice(index, message, finish)
}

/// Gemini's error body: `{"error":{"code":400,"message":"...","status":"INVALID_ARGUMENT"}}`
/// (streaming endpoints may wrap it in an array).
pub fn error_message(_status: u16, body: &[u8]) -> Option<ProviderErrorBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let value = match value {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    let error = value.get("error")?;
    let message = error.get("message").and_then(Value::as_str)?.to_string();
    let kind = error.get("status").and_then(Value::as_str).map(str::to_string);
    Some(ProviderErrorBody { message, kind })
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// Gemini's `alt=sse` stream as OpenAI chunks.
pub type GeminiStream = FramedDecoder<SseDecoder, GeminiEvents>;

/// Gemini's stream events as OpenAI chunks.
///
/// Each event is a whole `GenerateContentResponse` with the new parts only. Function calls
/// arrive whole, so each becomes a tool-call start plus one arguments delta, keyed by its
/// position among the candidate's calls. There is no terminal event: the stream is complete
/// when every candidate seen has a `finishReason`, and events after that are still read.
/// `usageMetadata` repeats; the last wins, and its usage chunk goes out when the body ends.
pub struct GeminiEvents {
    writer: ChunkWriter,
    ids: CallIds,
    /// Per choice: function calls seen so far (the next call's key).
    calls: Vec<u64>,
    /// Per choice: whether it has appeared.
    seen: Vec<bool>,
    /// Complete while every candidate seen has finished (and at least one was seen).
    progress: Progress,
}

impl EventTranslator for GeminiEvents {
    type Event = SseEvent;
    const USAGE: fn(&Value) -> Option<Usage> = usage_of;

    fn new(ctx: &ResponseContext) -> Self {
        GeminiEvents { writer: ChunkWriter::new(ctx), ids: CallIds::new(ctx), calls: Vec::new(), seen: Vec::new(), progress: Progress::default() }
    }

    fn event(&mut self, event: &SseEvent, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        let result = match decode::json_data(&event.data)? {
            Value::Array(items) => items.iter().try_for_each(|item| self.response(item, out)),
            other => self.response(&other, out),
        };
        self.progress.complete = self.all_finished();
        result
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    /// No terminal event to close on: a later event may still bring usage.
    fn closed(&self) -> bool {
        false
    }

    fn end(&mut self, out: &mut Vec<Value>) {
        if let Some(usage) = self.usage() {
            self.writer.usage(&usage, out);
        }
    }
}

impl GeminiEvents {
    /// Every candidate seen has a finish reason, and there was one.
    fn all_finished(&self) -> bool {
        let mut seen = self.seen.iter().enumerate().filter(|(_, s)| **s).peekable();
        seen.peek().is_some() && seen.all(|(index, _)| self.writer.finished(index))
    }

    fn see(&mut self, index: usize) {
        if self.seen.len() <= index {
            self.seen.resize(index + 1, false);
            self.calls.resize(index + 1, 0);
        }
        self.seen[index] = true;
    }

    fn response(&mut self, value: &Value, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if !value.is_object() {
            return Err(StreamFault::Malformed { detail: "event is not a JSON object".into() });
        }
        if let Some(error) = value.get("error") {
            let kind = error.get("status").and_then(Value::as_str).map(str::to_string).or_else(|| error.get("code").map(Value::to_string));
            return Err(StreamFault::Provider { kind: kind.unwrap_or_else(|| "error".into()) });
        }
        if let Some(model) = value.get("modelVersion").and_then(Value::as_str) {
            self.writer.set_model(model);
        }
        if let Some(usage) = value.get("usageMetadata").filter(|u| u.is_object()) {
            self.progress.raw_usage = Some(usage.clone());
        }
        let candidates = value.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for (position, candidate) in candidates.iter().enumerate() {
            let index = candidate_index(candidate, position).ok_or_else(|| StreamFault::Malformed { detail: "candidate index out of range".into() })?;
            self.candidate(index, candidate, out);
        }
        if candidates.is_empty() && value.pointer("/promptFeedback/blockReason").and_then(Value::as_str).is_some() {
            self.see(0);
            self.writer.finish(0, "content_filter", out);
        }
        Ok(())
    }

    fn candidate(&mut self, index: usize, candidate: &Value, out: &mut Vec<Value>) {
        self.see(index);
        for part in candidate_parts(candidate) {
            if let Some((name, own_id, arguments, signature)) = function_call(part) {
                let key = self.calls[index];
                self.calls[index] += 1;
                let id = self.ids.id(own_id);
                self.writer.tool_call_start(index, key, &id, name, out);
                if let (Some(signature), Some(chunk)) = (signature, out.last_mut()) {
                    if let Some(call) = chunk.pointer_mut("/choices/0/delta/tool_calls/0") {
                        call["extra_content"] = signature_extra(signature);
                    }
                }
                self.writer.tool_call_arguments(index, key, &arguments, out);
            } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    self.writer.reasoning(index, text, out);
                } else {
                    self.writer.text(index, text, out);
                }
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            let finish = finish_reason(Some(reason), self.writer.has_tool_calls(index));
            self.writer.finish(index, finish, out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

/// `batchEmbedContents` (`embeddings[].values`) or Vertex `predict`
/// (`predictions[].embeddings.values`) as an OpenAI embeddings list.
pub fn embeddings_response(request: &EmbeddingsRequest, body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("response body is not JSON"))?;
    let (vectors, statistics): (Vec<&Value>, Option<Vec<Value>>) = if let Some(list) = value.get("embeddings").and_then(Value::as_array) {
        (list.iter().map(|e| e.get("values").unwrap_or(&Value::Null)).collect(), None)
    } else if let Some(list) = value.get("predictions").and_then(Value::as_array) {
        let vectors = list.iter().map(|p| p.pointer("/embeddings/values").unwrap_or(&Value::Null)).collect();
        let statistics = list.iter().map(|p| p.pointer("/embeddings/statistics").cloned().unwrap_or(Value::Null)).collect();
        (vectors, Some(statistics))
    } else {
        return Err(bad_response("response has neither embeddings nor predictions"));
    };
    let data = answer::embedding_data(&vectors, request, bad_response)?;
    // Only Vertex reports token counts (per input); the Generative Language API reports none.
    let usage = statistics.as_ref().map(|stats| {
        let tokens = stats
            .iter()
            .map(|s| s.get("token_count").or_else(|| s.get("tokenCount")).and_then(Value::as_f64).unwrap_or(0.0) as u64)
            .sum();
        Usage::from_parts(tokens, 0, 0, 0, 0)
    });
    Ok(embeddings_list(data, ctx, usage, statistics.map(Value::Array)))
}
