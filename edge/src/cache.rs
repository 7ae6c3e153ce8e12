//! The exact response cache's pure parts: the canonical form of a request and its key, the
//! per-request directives (`cache-control`, `x-gateway-cache-*`), the stored entry, and the
//! conversion between a streamed answer and a whole one (recorded from chunks, replayed as
//! chunks). No I/O: the cache stage (`pipeline::cache`) does the lookups and fills.
//!
//! What is hashed is everything that can change the answer, and nothing else: the cache scope,
//! the resolved model, the guard profile, and the request body as it is sent upstream minus
//! `model` (replaced by the resolved one), `stream` and `stream_options` (they change only the
//! framing, and a streamed and a whole answer are stored alike). Every other field is part of the
//! key, known or not. The canonical form sorts object keys, writes numbers by value (`1`, `1.0`
//! and `1e0` are one number) and writes a message content that is a single text part as the
//! plain string it means, which is how a `/v1/messages` request and the same conversation sent
//! to `/v1/chat/completions` meet.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::openai::{ChatRequest, EmbeddingsRequest, Usage};

/// The version of the key and entry formats: a change of either makes old entries unreachable.
const FORMAT_VERSION: u32 = 1;

/// The longest namespace name `x-gateway-cache-namespace` may give.
const MAX_NAMESPACE_LEN: usize = 64;

/// Who a key belongs to and what it is for, besides the request body.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// The resolved scope, e.g. `consumer:web`, `tenant:acme`, `shared:docs`, with the request's
    /// namespace appended (`consumer:web/ns:drafts`).
    pub scope: &'a str,
    /// The configured model the request resolved to.
    pub model: &'a str,
    /// The guard profile that applied: the same request under another profile is another entry.
    pub guard_profile: Option<&'a str>,
}

/// A cache key: the hex SHA-256 of the canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub String);

impl CacheKey {
    fn of(operation: &str, parts: KeyParts<'_>, body: Value) -> CacheKey {
        let document = json!({
            "v": FORMAT_VERSION,
            "operation": operation,
            "scope": parts.scope,
            "model": parts.model,
            "guard": parts.guard_profile,
            "request": body,
        });
        let mut canonical = String::new();
        write_canonical(&document, &mut canonical);
        CacheKey(hex::encode(Sha256::digest(canonical.as_bytes())))
    }
}

/// The key of a chat request (OpenAI or Anthropic client, translated to the OpenAI form).
pub fn chat_key(parts: KeyParts<'_>, request: &ChatRequest) -> CacheKey {
    CacheKey::of("chat", parts, chat_body(request, |_| true))
}

/// The semantic tier's context hash: the exact key's canonical form of everything except the
/// conversation's turns — the system (and developer) messages, tools, `tool_choice`,
/// `response_format`, every generation parameter and unknown field, and the guard profile.
/// Scope and model are not in it: `policy::cache::partition_id` adds them.
pub fn chat_context_hash(guard_profile: Option<&str>, request: &ChatRequest) -> String {
    let parts = KeyParts { scope: "", model: "", guard_profile };
    CacheKey::of("chat-context", parts, chat_body(request, is_instruction)).0
}

/// The request body as it is hashed, with the messages `keep` selects: framing removed,
/// messages in canonical form.
fn chat_body(request: &ChatRequest, keep: impl Fn(&Value) -> bool) -> Value {
    let mut body = request.rest.clone();
    for framing in ["model", "stream", "stream_options"] {
        body.remove(framing);
    }
    let messages = request.messages.iter().filter(|m| keep(m)).map(canonical_message).collect();
    body.insert("messages".into(), Value::Array(messages));
    Value::Object(body)
}

/// A system or developer message: an instruction, part of the context rather than a turn.
fn is_instruction(message: &Value) -> bool {
    matches!(message.get("role").and_then(Value::as_str), Some("system" | "developer"))
}

/// The conversation as `(role, text)` turns for the semantic tier's query text, or `None` when
/// it cannot be compared as text: a message carries a part that is not text (an image, audio,
/// a file: two requests with the same words could be about different pictures), or the last
/// message is not the user's (a tool result or an assistant prefill continues a conversation
/// the query text does not show).
pub fn chat_turns(request: &ChatRequest) -> Option<Vec<(String, String)>> {
    let last_role = request.messages.last()?.get("role").and_then(Value::as_str);
    if last_role != Some("user") {
        return None;
    }
    let mut turns = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default().to_string();
        let text = match message.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => {
                let mut texts = Vec::with_capacity(parts.len());
                for part in parts {
                    match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(text)) => texts.push(text),
                        _ => return None,
                    }
                }
                texts.join("\n")
            }
            Some(_) => return None,
        };
        turns.push((role, text));
    }
    Some(turns)
}

/// What the semantic tier stores beside a query's vector: the query text (for the false-hit
/// check) and the exact key of the answer (to read it from the exact cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemanticEntry {
    pub query: String,
    /// The exact cache key, hex.
    pub key: String,
}

impl SemanticEntry {
    /// The metadata JSON `{"query": …, "key": …}`.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The entry in a stored metadata string, if it is one.
    pub fn decode(metadata: &str) -> Option<SemanticEntry> {
        serde_json::from_str::<SemanticEntry>(metadata).ok().filter(|e| e.key.len() == 64 && e.key.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// The key of an embeddings request.
pub fn embeddings_key(parts: KeyParts<'_>, request: &EmbeddingsRequest) -> CacheKey {
    let mut body = request.rest.clone();
    body.remove("model");
    body.insert("input".into(), request.input.clone());
    CacheKey::of("embeddings", parts, Value::Object(body))
}

/// A message with a content of one plain text part written as the string it means.
fn canonical_message(message: &Value) -> Value {
    let mut message = message.clone();
    if let Some(content) = message.get_mut("content") {
        let text = match content.as_array().map(Vec::as_slice) {
            Some([Value::Object(part)]) if part.len() == 2 && part.get("type").and_then(Value::as_str) == Some("text") => {
                part.get("text").and_then(Value::as_str).map(str::to_string)
            }
            _ => None,
        };
        if let Some(text) = text {
            *content = Value::String(text);
        }
    }
    message
}

/// Write `value` in canonical JSON: object keys sorted, numbers by value, no whitespace.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Number(number) => out.push_str(&canonical_number(number)),
        other => out.push_str(&other.to_string()),
    }
}

/// A number by its value: integers (also `1.0`, `1e2`) as integers, others in Rust's shortest
/// round-trip form.
fn canonical_number(number: &Number) -> String {
    if let Some(n) = number.as_i64() {
        return n.to_string();
    }
    if let Some(n) = number.as_u64() {
        return n.to_string();
    }
    let float = number.as_f64().unwrap_or(0.0);
    if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)] // integral and below 2^53: exact
        return (float as i64).to_string();
    }
    let mut out = String::new();
    let _ = write!(out, "{float:?}");
    out
}

/// What the client asked of the cache for this request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// `cache-control: no-cache`: do not answer from the cache; store the fresh answer.
    pub no_cache: bool,
    /// `cache-control: no-store`: do not store this answer (a stored one may still answer).
    pub no_store: bool,
    /// `cache-control: max-age=N`: only an entry at most N seconds old answers.
    pub max_age_s: Option<u64>,
    /// `x-gateway-cache-ttl: N`: store for N seconds (at most the configured `ttl_s`).
    pub ttl_s: Option<u64>,
    /// `x-gateway-cache-namespace`: a separate set of entries inside the caller's own scope.
    pub namespace: Option<String>,
}

impl CacheDirectives {
    /// Read the directives from the request headers; a malformed one is a 400.
    pub fn from_headers(headers: &[(String, String)]) -> Result<CacheDirectives, GatewayError> {
        let mut directives = CacheDirectives::default();
        let invalid = |header: &str, message: &str| GatewayError::InvalidRequest { message: format!("{header}: {message}"), param: None };
        for (name, value) in headers {
            match name.to_ascii_lowercase().as_str() {
                "cache-control" => {
                    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                        let (name, argument) = directive.split_once('=').map_or((directive, None), |(n, a)| (n.trim(), Some(a.trim().trim_matches('"'))));
                        match (name.to_ascii_lowercase().as_str(), argument) {
                            ("no-cache", _) => directives.no_cache = true,
                            ("no-store", _) => directives.no_store = true,
                            ("max-age", Some(seconds)) => {
                                directives.max_age_s = Some(seconds.parse().map_err(|_| invalid("cache-control", "max-age must be a number of seconds"))?)
                            }
                            // Other directives (e.g. `max-stale`) mean nothing to this cache.
                            _ => {}
                        }
                    }
                }
                "x-gateway-cache-ttl" => {
                    let seconds: u64 = value.trim().parse().map_err(|_| invalid("x-gateway-cache-ttl", "must be a number of seconds"))?;
                    if seconds == 0 {
                        directives.no_store = true;
                    }
                    directives.ttl_s = Some(seconds);
                }
                "x-gateway-cache-namespace" => {
                    let namespace = value.trim();
                    let valid = !namespace.is_empty()
                        && namespace.len() <= MAX_NAMESPACE_LEN
                        && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                    if !valid {
                        return Err(invalid("x-gateway-cache-namespace", "must be 1-64 letters, digits, '-', '_' or '.'"));
                    }
                    directives.namespace = Some(namespace.to_string());
                }
                _ => {}
            }
        }
        Ok(directives)
    }
}

/// What an answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An OpenAI chat completion object.
    Chat,
    /// An OpenAI embeddings response.
    Embeddings,
}

/// One stored answer: the OpenAI-format body as the upstream answered it (before any output
/// guard, which is applied again on every replay with the replaying request's own state), and
/// what producing it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub v: u32,
    pub kind: EntryKind,
    pub created_ms: u64,
    pub ttl_s: u64,
    pub body: Value,
    /// The provider's usage of the call that produced the answer: what a hit saves.
    pub usage: Option<Usage>,
    pub provider: String,
    pub upstream_model: String,
    /// The call's estimated gCO2e, when the route had a carbon estimate.
    pub gco2e: Option<f64>,
}

impl CachedAnswer {
    pub fn new(kind: EntryKind, created_ms: u64, ttl_s: u64, body: Value, usage: Option<Usage>, provider: &str, upstream_model: &str) -> Self {
        CachedAnswer { v: FORMAT_VERSION, kind, created_ms, ttl_s, body, usage, provider: provider.into(), upstream_model: upstream_model.into(), gco2e: None }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The entry in `bytes`, if it is one of this format.
    pub fn decode(bytes: &[u8]) -> Option<CachedAnswer> {
        serde_json::from_slice::<CachedAnswer>(bytes).ok().filter(|a| a.v == FORMAT_VERSION)
    }

    /// Whole seconds since the entry was stored (the `age` header).
    pub fn age_s(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.created_ms) / 1000
    }

    /// Whether the entry may answer now: within its TTL (tiers expire entries on their own, but
    /// not to the second) and within the client's `max-age`.
    pub fn fresh(&self, now_ms: u64, max_age_s: Option<u64>) -> bool {
        let age_ms = now_ms.saturating_sub(self.created_ms);
        age_ms < self.ttl_s.saturating_mul(1000) && max_age_s.is_none_or(|max| age_ms <= max.saturating_mul(1000))
    }
}

/// One choice of a streamed answer, as recorded.
#[derive(Debug, Default)]
struct RecordedChoice {
    content: Option<String>,
    refusal: Option<String>,
    /// By tool-call index: id, name, arguments.
    tool_calls: BTreeMap<u64, (Option<String>, Option<String>, String)>,
    finish_reason: Option<Value>,
}

/// Assembles a streamed answer's OpenAI chunks into the chat completion they add up to, for the
/// cache. Anything it cannot replay faithfully (log probabilities, audio, reasoning deltas, a
/// chunk that is not a chat chunk) makes the answer unrecordable, and it is not stored.
#[derive(Debug, Default)]
pub struct AnswerRecorder {
    id: Option<Value>,
    model: Option<Value>,
    created: Option<Value>,
    system_fingerprint: Option<Value>,
    choices: BTreeMap<u64, RecordedChoice>,
    usage: Option<Value>,
    unrecordable: bool,
}

impl AnswerRecorder {
    pub fn push(&mut self, chunk: &Value) {
        if self.unrecordable {
            return;
        }
        let Some(object) = chunk.as_object() else {
            self.unrecordable = true;
            return;
        };
        for (field, slot) in [("id", &mut self.id), ("model", &mut self.model), ("created", &mut self.created), ("system_fingerprint", &mut self.system_fingerprint)] {
            if let Some(value) = object.get(field).filter(|v| !v.is_null()) {
                slot.get_or_insert_with(|| value.clone());
            }
        }
        if let Some(usage) = object.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        for choice in object.get("choices").and_then(Value::as_array).into_iter().flatten() {
            if !self.push_choice(choice) {
                self.unrecordable = true;
                return;
            }
        }
    }

    fn push_choice(&mut self, choice: &Value) -> bool {
        if choice.get("logprobs").is_some_and(|l| !l.is_null()) {
            return false;
        }
        let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
        let recorded = self.choices.entry(index).or_default();
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            recorded.finish_reason = Some(reason.clone());
        }
        let Some(delta) = choice.get("delta").and_then(Value::as_object) else { return true };
        for (field, value) in delta {
            match (field.as_str(), value) {
                // An empty text (OpenAI's first chunk carries `"content": ""`) adds nothing.
                (_, Value::Null) | ("role", _) => {}
                ("content" | "refusal", Value::String(text)) if text.is_empty() => {}
                ("content", Value::String(text)) => recorded.content.get_or_insert_with(String::new).push_str(text),
                ("refusal", Value::String(text)) => recorded.refusal.get_or_insert_with(String::new).push_str(text),
                ("tool_calls", Value::Array(calls)) => {
                    for call in calls {
                        let at = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let slot = recorded.tool_calls.entry(at).or_insert((None, None, String::new()));
                        if let Some(id) = call.get("id").and_then(Value::as_str) {
                            slot.0 = Some(id.to_string());
                        }
                        if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                            slot.1.get_or_insert_with(String::new).push_str(name);
                        }
                        if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                            slot.2.push_str(arguments);
                        }
                    }
                }
                _ => return false,
            }
        }
        true
    }

    /// The completion the chunks add up to, if every choice finished and all was recordable.
    pub fn finish(self) -> Option<Value> {
        if self.unrecordable || self.choices.is_empty() || self.choices.values().any(|c| c.finish_reason.is_none()) {
            return None;
        }
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, choice)| {
                let mut message = Map::new();
                message.insert("role".into(), json!("assistant"));
                message.insert("content".into(), choice.content.map_or(Value::Null, Value::String));
                if let Some(refusal) = choice.refusal {
                    message.insert("refusal".into(), Value::String(refusal));
                }
                if !choice.tool_calls.is_empty() {
                    let calls = choice
                        .tool_calls
                        .into_values()
                        .map(|(id, name, arguments)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
                        .collect();
                    message.insert("tool_calls".into(), Value::Array(calls));
                }
                json!({"index": index, "message": message, "logprobs": null, "finish_reason": choice.finish_reason})
            })
            .collect();
        let mut completion = json!({
            "id": self.id.unwrap_or(Value::Null),
            "object": "chat.completion",
            "created": self.created.unwrap_or(json!(0)),
            "model": self.model.unwrap_or(Value::Null),
            "choices": choices,
        });
        if let Some(fingerprint) = self.system_fingerprint {
            completion["system_fingerprint"] = fingerprint;
        }
        if let Some(usage) = self.usage {
            completion["usage"] = usage;
        }
        Some(completion)
    }
}

/// A stored chat completion as the OpenAI stream that delivers it, `data: [DONE]` included: per
/// choice a role chunk, its content, its tool calls, its finish; then a usage chunk when the
/// completion has usage (the stream stage strips it when the client did not ask for it).
pub fn replay_stream(completion: &Value, id: &str, created: u64) -> Vec<u8> {
    let model = completion.get("model").cloned().unwrap_or(Value::Null);
    let chunk = |choices: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, "usage": null});
    let mut out = Vec::new();
    let mut emit = |chunk: Value| crate::sse::encode(None, &chunk.to_string(), &mut out);
    for choice in completion.get("choices").and_then(Value::as_array).into_iter().flatten() {
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let message = choice.get("message").cloned().unwrap_or(Value::Null);
        emit(chunk(json!([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])));
        for field in ["content", "refusal"] {
            if let Some(text) = message.get(field).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                emit(chunk(json!([{"index": index, "delta": {field: text}, "logprobs": null, "finish_reason": null}])));
            }
        }
        for (at, call) in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let delta = json!({"tool_calls": [{"index": at, "id": call.get("id"), "type": "function", "function": call.get("function")}]});
            emit(chunk(json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}])));
        }
        let finish = choice.get("finish_reason").cloned().unwrap_or(json!("stop"));
        emit(chunk(json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": finish}])));
    }
    if let Some(usage) = completion.get("usage").filter(|u| !u.is_null()) {
        let mut last = chunk(json!([]));
        last["usage"] = usage.clone();
        emit(last);
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

#[cfg(test)]
mod tests;
