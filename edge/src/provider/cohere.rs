//! Cohere v2 Chat (`POST {base_url}/v2/chat`) and v2 Embed (`POST {base_url}/v2/embed`).
//!
//! Wire format from Cohere's API reference (docs.cohere.com/reference/chat, /chat-stream,
//! /embed, /errors) and the request/response types of Cohere's generated SDK (cohere-python
//! `v2/raw_client.py`, `types/streamed_chat_response_v2.py`, `types/usage.py`, ...).
//! Translation choices worth knowing:
//!
//! - **Roles**: system and developer messages become one `system` message at the start (Cohere
//!   refuses a system turn anywhere else). Tool results are `tool` messages with
//!   `tool_call_id`; assistant tool calls keep OpenAI's shape (arguments as a JSON string).
//!   An assistant message's own `tool_plan` (a Cohere field) is forwarded when the client sent it.
//! - **Images**: `image_url` parts go through as `{type: image_url, image_url: {url, detail?}}`;
//!   Cohere takes both http(s) URLs and base64 data URLs.
//! - **tool_choice**: Cohere has only `REQUIRED` and `NONE` (no value = auto). OpenAI's
//!   "call this function" becomes `REQUIRED` with `tools` narrowed to that one function.
//! - **JSON mode**: `response_format` `{type: json_object, json_schema?}` covers both OpenAI's
//!   `json_object` and `json_schema` (the schema goes in `json_schema`).
//! - **Sampling**: `top_p` -> `p`, `max_completion_tokens`/`max_tokens` -> `max_tokens`; `k`
//!   (or `top_k`) and the Cohere-only fields in [`PASS_THROUGH`] pass from `request.rest`.
//!   `n > 1` is refused: Cohere returns one reply per call.
//! - **Responses**: `tool_plan` and `thinking` content become `reasoning_content` (the
//!   non-standard field DeepSeek and vLLM use; OpenAI SDKs keep unknown fields). Citations have
//!   no OpenAI form and are dropped. `finish_reason` `ERROR`/`TIMEOUT` is a failure, not a stop.
//! - **Usage**: Cohere reports `billed_units` (what is charged) and `tokens` (what the model
//!   processed, including Cohere's own prompt template). Usage is taken from `tokens`, falling
//!   back to `billed_units`; the v2 `Usage` type documents no cache breakdown, so
//!   `cached_input_tokens` is 0 and nothing can be double counted. The whole provider usage
//!   object is kept as the raw usage. Counts arrive as JSON floats (`913.0`) and are read as such.
//! - **Embeddings**: text inputs only (token arrays are refused); `input_type` defaults to
//!   `search_document` and may be overridden by the client's `input_type`; `dimensions` becomes
//!   `output_dimension` (only embed-v4 and newer accept it; Cohere says so when it does not).

use serde_json::{json, Map, Value};

use super::chunk::ChunkWriter;
use super::content::{self, Image, Part, ResponseFormat, ToolChoice};
use super::{pass_through, ProviderErrorBody, ResponseContext, StreamDecoder, StreamFault, Translated};
use crate::config::{CohereConfig, ModelRoute};
use crate::error::GatewayError;
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};
use crate::sse::SseDecoder;

const PROVIDER: &str = "cohere";

/// Cohere chat request fields a client may send through unchanged (in `request.rest`).
const PASS_THROUGH: &[&str] = &["k", "safety_mode", "documents", "citation_options", "strict_tools", "thinking"];

/// Cohere embed request fields a client may send through unchanged.
const EMBED_PASS_THROUGH: &[&str] = &["truncate", "max_tokens"];

/// `input_type` sent to the Embed API when the client names none: OpenAI's embeddings endpoint
/// has no such notion, and documents for retrieval are its most common use.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

/// Cohere `finish_reason` -> OpenAI `finish_reason`.
const FINISH: &[(&str, &str)] = &[("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls")];

/// Finish reasons that mean the generation failed.
const FAILED: &[&str] = &["ERROR", "TIMEOUT"];

fn invalid(message: impl Into<String>, param: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest { message: message.into(), param: Some(param.into()) }
}

fn bad_response(detail: &str) -> GatewayError {
    GatewayError::UpstreamInvalidResponse { provider: PROVIDER.into(), detail: detail.into() }
}

fn post(config: &CohereConfig, path: &str, body: &Value, api_key: &str, stream: bool) -> OutboundRequest {
    OutboundRequest {
        method: "POST",
        url: format!("{}{path}", config.base_url.trim_end_matches('/')),
        headers: vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), if stream { "text/event-stream" } else { "application/json" }.to_string()),
            ("authorization".to_string(), format!("Bearer {api_key}")),
        ],
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Chat request
// ---------------------------------------------------------------------------------------------

/// The OpenAI chat request as a Cohere v2 Chat call.
pub fn chat_request(config: &CohereConfig, route: &ModelRoute, request: &ChatRequest, api_key: &str) -> Result<OutboundRequest, GatewayError> {
    let body = request_body(route, request)?;
    Ok(post(config, "/v2/chat", &body, api_key, request.is_stream()))
}

/// The v2 Chat JSON body.
fn request_body(route: &ModelRoute, request: &ChatRequest) -> Result<Value, GatewayError> {
    if request.choices() > 1 {
        return Err(invalid("Cohere models return one choice per request; 'n' must be 1.", "n"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(route.upstream_model));
    body.insert("messages".into(), Value::Array(messages(request)?));
    tools_and_choice(request, &mut body)?;
    match content::response_format(request)? {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            body.insert("response_format".into(), json!({ "type": "json_object" }));
        }
        ResponseFormat::JsonSchema { schema, .. } => {
            body.insert("response_format".into(), json!({ "type": "json_object", "json_schema": schema }));
        }
    }
    let stop = content::stop_sequences(request)?;
    if !stop.is_empty() {
        body.insert("stop_sequences".into(), json!(stop));
    }
    sampling(request, &mut body)?;
    pass_through(&request.rest, PASS_THROUGH, &mut body);
    // Cohere documents `stream` as part of every chat body (false for whole responses).
    body.insert("stream".into(), json!(request.is_stream()));
    Ok(Value::Object(body))
}

/// Sampling and length parameters under Cohere's names.
fn sampling(request: &ChatRequest, body: &mut Map<String, Value>) -> Result<(), GatewayError> {
    for (ours, theirs) in [("temperature", "temperature"), ("top_p", "p"), ("frequency_penalty", "frequency_penalty"), ("presence_penalty", "presence_penalty")] {
        if let Some(value) = content::number(request, ours)? {
            body.insert(theirs.into(), json!(value));
        }
    }
    if let Some(max) = request.max_output_tokens() {
        body.insert("max_tokens".into(), json!(max));
    }
    match request.rest.get("seed") {
        None | Some(Value::Null) => {}
        Some(seed) => {
            let seed = seed.as_i64().ok_or_else(|| invalid("'seed' must be an integer.", "seed"))?;
            body.insert("seed".into(), json!(seed));
        }
    }
    // `top_k` is what several OpenAI-compatible servers call Cohere's `k`.
    if !request.rest.contains_key("k") {
        if let Some(top_k) = request.rest.get("top_k").filter(|v| !v.is_null()) {
            let top_k = top_k.as_u64().ok_or_else(|| invalid("'top_k' must be a non-negative integer.", "top_k"))?;
            body.insert("k".into(), json!(top_k));
        }
    }
    Ok(())
}

/// The conversation as Cohere messages: one system message first, then the rest in order.
fn messages(request: &ChatRequest) -> Result<Vec<Value>, GatewayError> {
    let (system, indexes) = content::split_system(request)?;
    let mut out = Vec::with_capacity(indexes.len() + 1);
    let system: Vec<String> = system.into_iter().filter(|s| !s.is_empty()).collect();
    if !system.is_empty() {
        out.push(json!({ "role": "system", "content": system.join("\n\n") }));
    }
    // The synthetic id given to the last legacy `function_call`, for the `function` reply.
    let mut legacy_id: Option<String> = None;
    for &i in &indexes {
        let Some(message) = request.messages.get(i) else { continue };
        let at = format!("messages[{i}]");
        let translated = match message.get("role").and_then(Value::as_str).unwrap_or_default() {
            "user" => Some(json!({ "role": "user", "content": user_content(message, &at)? })),
            "assistant" => assistant_message(message, i, &at, &mut legacy_id)?,
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| invalid(format!("{at}.tool_call_id is required for tool messages."), format!("{at}.tool_call_id")))?;
                Some(tool_message(id, message, &at)?)
            }
            "function" => {
                let id = legacy_id
                    .clone()
                    .ok_or_else(|| invalid(format!("{at} answers no earlier assistant function_call."), format!("{at}.role")))?;
                Some(tool_message(&id, message, &at)?)
            }
            other => return Err(invalid(format!("{at}.role '{other}' is not supported here."), format!("{at}.role"))),
        };
        out.extend(translated);
    }
    if out.iter().all(|m| m["role"] == "system") {
        return Err(invalid("'messages' must contain at least one user, assistant or tool message.", "messages"));
    }
    Ok(out)
}

/// A user message's content: a plain string stays a string; parts become Cohere content items.
fn user_content(message: &Value, at: &str) -> Result<Value, GatewayError> {
    let raw = message.get("content");
    let at = format!("{at}.content");
    if let Some(Value::String(text)) = raw {
        return Ok(json!(text));
    }
    let mut items = Vec::new();
    for (j, part) in content::parts(raw, &at)?.into_iter().enumerate() {
        match part {
            Part::Text(text) => items.push(json!({ "type": "text", "text": text })),
            Part::Image(image) => {
                let url = match image {
                    Image::Url(url) => url,
                    Image::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
                };
                let mut image_url = json!({ "url": url });
                // OpenAI's and Cohere's `detail` share the values auto / low / high.
                let detail = raw.and_then(|c| c.get(j)).and_then(|p| p.pointer("/image_url/detail")).and_then(Value::as_str);
                if let Some(detail) = detail {
                    image_url["detail"] = json!(detail);
                }
                items.push(json!({ "type": "image_url", "image_url": image_url }));
            }
        }
    }
    if items.is_empty() {
        return Err(invalid(format!("{at} must not be empty."), at));
    }
    Ok(Value::Array(items))
}

/// An assistant message with its tool calls; `None` for one that carries nothing.
fn assistant_message(message: &Value, i: usize, at: &str, legacy_id: &mut Option<String>) -> Result<Option<Value>, GatewayError> {
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    let mut calls = Vec::new();
    for call in content::identified_tool_calls(message, i, at, legacy_id)? {
        let id = call.id;
        calls.push(json!({
            "id": id,
            "type": "function",
            "function": { "name": call.name, "arguments": call.arguments.to_string() },
        }));
    }
    if text.is_empty() && calls.is_empty() {
        // Cohere refuses empty turns; an empty assistant message carries nothing.
        return Ok(None);
    }
    let mut out = json!({ "role": "assistant" });
    if !text.is_empty() {
        out["content"] = json!(text);
    }
    if !calls.is_empty() {
        out["tool_calls"] = Value::Array(calls);
        if let Some(plan) = message.get("tool_plan").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            out["tool_plan"] = json!(plan);
        }
    }
    Ok(Some(out))
}

fn tool_message(id: &str, message: &Value, at: &str) -> Result<Value, GatewayError> {
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    Ok(json!({ "role": "tool", "tool_call_id": id, "content": text }))
}

/// `tools`, `tool_choice` and `strict_tools`.
fn tools_and_choice(request: &ChatRequest, body: &mut Map<String, Value>) -> Result<(), GatewayError> {
    let mut tools = content::tools(request)?;
    let choice = content::tool_choice(request)?;
    let cohere_choice = match &choice {
        None | Some(ToolChoice::Auto) => None,
        Some(ToolChoice::None) => Some("NONE"),
        Some(ToolChoice::Required) => Some("REQUIRED"),
        Some(ToolChoice::Function(name)) => {
            // Cohere cannot force one named tool; offering only that tool and requiring a call does.
            tools.retain(|t| &t.name == name);
            if tools.is_empty() {
                return Err(invalid(format!("'tool_choice' names the function '{name}', which is not in 'tools'."), "tool_choice"));
            }
            Some("REQUIRED")
        }
    };
    if tools.is_empty() {
        if cohere_choice == Some("REQUIRED") {
            return Err(invalid("'tool_choice' 'required' needs at least one tool in 'tools'.", "tool_choice"));
        }
        // OpenAI's "none" without tools is a no-op; Cohere has nothing to refuse.
        return Ok(());
    }
    let strict = tools.iter().any(|t| t.strict == Some(true));
    let tools: Vec<Value> = tools
        .into_iter()
        .map(|t| {
            let mut function = json!({ "name": t.name, "parameters": t.parameters });
            if let Some(description) = t.description {
                function["description"] = json!(description);
            }
            json!({ "type": "function", "function": function })
        })
        .collect();
    body.insert("tools".into(), Value::Array(tools));
    if let Some(choice) = cohere_choice {
        body.insert("tool_choice".into(), json!(choice));
    }
    if strict {
        // Cohere's strictness is per request: a strict tool makes every tool call strict.
        body.insert("strict_tools".into(), json!(true));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Chat response
// ---------------------------------------------------------------------------------------------

/// A token count; Cohere's SDK types them as floats, so `913.0` is as good as `913`.
fn count(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    value.as_u64().or_else(|| value.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f.round() as u64))
}

/// Normalised usage from a Cohere `usage` object: `tokens` (processed), else `billed_units`.
fn usage_of(usage: &Value) -> Option<Usage> {
    let pick = |key: &str| usage.get(key).filter(|v| v.is_object());
    let counts = pick("tokens").or_else(|| pick("billed_units"))?;
    let input = count(counts.get("input_tokens"));
    let output = count(counts.get("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage::from_parts(input.unwrap_or(0), 0, 0, output.unwrap_or(0), 0))
}

/// A Cohere finish reason as an OpenAI one; `TOOL_CALL` without any call is a plain stop.
fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match reason.map(|r| content::map_finish(r, FINISH)) {
        Some("tool_calls") if !has_tool_calls => "stop",
        Some(reason) => reason,
        None => "stop",
    }
}

/// A whole v2 Chat response as an OpenAI `chat.completion`.
pub fn chat_response(body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("response body is not JSON"))?;
    let message = value.get("message").filter(|m| m.is_object()).ok_or_else(|| bad_response("response has no message object"))?;
    let reason = value.get("finish_reason").and_then(Value::as_str);
    if let Some(failed) = reason.and_then(|r| FAILED.iter().find(|f| **f == r)) {
        return Err(bad_response(&format!("Cohere ended the generation with finish_reason {failed}")));
    }
    let (text, mut reasoning) = response_content(message.get("content"))?;
    if let Some(plan) = message.get("tool_plan").and_then(Value::as_str).filter(|p| !p.is_empty()) {
        reasoning.push_str(plan);
    }
    let calls = response_tool_calls(message.get("tool_calls"))?;
    let finish = finish_reason(reason, !calls.is_empty());
    let out_message = super::assistant_message(text, &reasoning, calls);
    let raw_usage = value.get("usage").filter(|u| u.is_object()).cloned();
    let usage = raw_usage.as_ref().and_then(usage_of);
    let mut out = json!({
        "id": value.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(&ctx.id),
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{ "index": 0, "message": out_message, "logprobs": null, "finish_reason": finish }],
    });
    if let Some(usage) = &usage {
        out["usage"] = usage.to_openai();
    }
    Ok(Translated { body: out, usage, raw_usage })
}

/// The text and the thinking of a response message's `content` items.
fn response_content(content: Option<&Value>) -> Result<(String, String), GatewayError> {
    let (mut text, mut thinking) = (String::new(), String::new());
    match content {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(items)) => {
            for item in items {
                match item.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(item.get("text").and_then(Value::as_str).unwrap_or_default()),
                    Some("thinking") => thinking.push_str(item.get("thinking").and_then(Value::as_str).unwrap_or_default()),
                    // Types Cohere may add later have no OpenAI form.
                    _ => {}
                }
            }
        }
        Some(_) => return Err(bad_response("message content is neither a list nor a string")),
    }
    Ok((text, thinking))
}

/// A function's arguments as the JSON string OpenAI clients expect.
fn arguments_string(arguments: Option<&Value>) -> String {
    match arguments {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => "{}".to_string(),
        Some(other) => other.to_string(),
    }
}

fn response_tool_calls(calls: Option<&Value>) -> Result<Vec<Value>, GatewayError> {
    let Some(calls) = calls.and_then(Value::as_array) else { return Ok(Vec::new()) };
    calls
        .iter()
        .map(|call| {
            let function = call.get("function").ok_or_else(|| bad_response("tool call without a function"))?;
            let name = function.get("name").and_then(Value::as_str).ok_or_else(|| bad_response("tool call without a name"))?;
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
            Ok(json!({
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": arguments_string(function.get("arguments")) },
            }))
        })
        .collect()
}

/// Cohere's error body: `{"message": "..."}` (sometimes with an `id`; the older spec calls the
/// field `data`). Cohere sends no error code, so `kind` is named after the documented status.
pub fn error_message(status: u16, body: &[u8]) -> Option<ProviderErrorBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = value.get("message").or_else(|| value.get("data")).and_then(Value::as_str)?.to_string();
    let kind = match status {
        400 => Some("bad_request"),
        401 => Some("unauthorized"),
        402 => Some("payment_required"),
        403 => Some("forbidden"),
        404 => Some("not_found"),
        422 => Some("unprocessable_entity"),
        429 => Some("too_many_requests"),
        498 => Some("invalid_token"),
        499 => Some("client_closed_request"),
        500 => Some("internal_server_error"),
        501 => Some("not_implemented"),
        503 => Some("service_unavailable"),
        504 => Some("gateway_timeout"),
        _ => None,
    };
    Some(ProviderErrorBody { message, kind: kind.map(str::to_string) })
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// Cohere's SSE stream (`message-start` ... `message-end`) as OpenAI chunks. Each tool call's
/// `index` from `tool-call-start`/`tool-call-delta` is its key, so parallel calls keep distinct,
/// stable OpenAI indexes.
pub struct CohereStream {
    sse: SseDecoder,
    writer: ChunkWriter,
    /// `message-end`'s `delta.usage`, unchanged.
    raw_usage: Option<Value>,
    /// `message-end` arrived: the stream ended properly.
    ended: bool,
}

impl CohereStream {
    pub fn new(ctx: ResponseContext) -> Self {
        CohereStream { sse: SseDecoder::new(), writer: ChunkWriter::new(&ctx), raw_usage: None, ended: false }
    }

    fn event(&mut self, data: &str, name: Option<&str>, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if self.ended || data.trim() == "[DONE]" {
            return Ok(());
        }
        let data: Value = serde_json::from_str(data).map_err(|_| StreamFault::Malformed { detail: "event data is not JSON".into() })?;
        let kind = data.get("type").and_then(Value::as_str).or(name).unwrap_or_default();
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let message = data.pointer("/delta/message").unwrap_or(&Value::Null);
        match kind {
            "message-start" => {
                if let Some(id) = data.get("id").and_then(Value::as_str) {
                    self.writer.set_id(id);
                }
                self.writer.start(0, out);
            }
            "content-start" | "content-delta" => {
                let part = message.get("content").unwrap_or(&Value::Null);
                let str_of = |key: &str| part.get(key).and_then(Value::as_str).unwrap_or_default();
                self.writer.reasoning(0, str_of("thinking"), out);
                self.writer.text(0, str_of("text"), out);
            }
            "tool-plan-delta" => {
                self.writer.reasoning(0, message.get("tool_plan").and_then(Value::as_str).unwrap_or_default(), out);
            }
            "tool-call-start" => self.tool_call_start(index, message.get("tool_calls"), out),
            "tool-call-delta" => {
                let fragment = tool_call_of(message.get("tool_calls"))
                    .and_then(|c| c.pointer("/function/arguments"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.writer.tool_call_arguments(0, index, fragment, out);
            }
            "message-end" => self.message_end(data.get("delta").unwrap_or(&Value::Null), out)?,
            // content-end, tool-call-end, citation-start/end, debug, and types added later.
            _ => {}
        }
        Ok(())
    }

    fn tool_call_start(&mut self, index: u64, call: Option<&Value>, out: &mut Vec<Value>) {
        let call = tool_call_of(call).unwrap_or(&Value::Null);
        let id = call.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("call_{index}"));
        let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
        self.writer.tool_call_start(0, index, &id, name, out);
        // The start's arguments are normally empty; a non-empty one is the first fragment.
        if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
            self.writer.tool_call_arguments(0, index, arguments, out);
        }
    }

    fn message_end(&mut self, delta: &Value, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        let reason = delta.get("finish_reason").and_then(Value::as_str);
        let error = delta.get("error").and_then(Value::as_str).is_some_and(|e| !e.is_empty());
        if let Some(failed) = reason.and_then(|r| FAILED.iter().find(|f| **f == r)) {
            return Err(StreamFault::Provider { kind: (*failed).to_string() });
        }
        if error {
            return Err(StreamFault::Provider { kind: "ERROR".into() });
        }
        self.ended = true;
        self.raw_usage = delta.get("usage").filter(|u| u.is_object()).cloned();
        let finish = finish_reason(reason, self.writer.has_tool_calls(0));
        self.writer.finish(0, finish, out);
        if let Some(usage) = self.usage() {
            self.writer.usage(&usage, out);
        }
        Ok(())
    }
}

/// The tool call of a stream event: documented as one object, tolerated as a one-item list.
fn tool_call_of(value: Option<&Value>) -> Option<&Value> {
    match value? {
        Value::Array(items) => items.first(),
        other => Some(other),
    }
}

impl StreamDecoder for CohereStream {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), StreamFault> {
        for event in self.sse.push(bytes) {
            self.event(&event.data, event.event.as_deref(), out)?;
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Value>) -> Result<(), StreamFault> {
        // Whatever follows `message-end` (an unterminated trailing event) does not matter.
        std::mem::take(&mut self.sse).finish();
        if self.ended {
            Ok(())
        } else {
            Err(StreamFault::Truncated)
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.raw_usage.as_ref().and_then(usage_of)
    }

    fn raw_usage(&self) -> Option<Value> {
        self.raw_usage.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

/// The OpenAI embeddings request as a Cohere v2 Embed call (float embeddings).
pub fn embeddings_request(config: &CohereConfig, route: &ModelRoute, request: &EmbeddingsRequest, api_key: &str) -> Result<OutboundRequest, GatewayError> {
    let mut texts = Vec::new();
    for input in request.inputs() {
        match input {
            EmbeddingInput::Text(text) => texts.push(text.to_string()),
            EmbeddingInput::Tokens(_) => {
                return Err(invalid("Cohere embedding models take text only; token-id arrays are not supported.", "input"));
            }
        }
    }
    if texts.is_empty() {
        return Err(invalid("'input' must contain at least one text.", "input"));
    }
    let input_type = match request.rest.get("input_type") {
        None | Some(Value::Null) => DEFAULT_INPUT_TYPE,
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        Some(_) => return Err(invalid("'input_type' must be a non-empty string (e.g. search_document, search_query).", "input_type")),
    };
    let mut body = Map::new();
    body.insert("model".into(), json!(route.upstream_model));
    body.insert("texts".into(), json!(texts));
    body.insert("input_type".into(), json!(input_type));
    body.insert("embedding_types".into(), json!(["float"]));
    if let Some(dimensions) = request.dimensions() {
        body.insert("output_dimension".into(), json!(dimensions));
    }
    pass_through(&request.rest, EMBED_PASS_THROUGH, &mut body);
    Ok(post(config, "/v2/embed", &Value::Object(body), api_key, false))
}

/// A v2 Embed response as an OpenAI embeddings `list`.
pub fn embeddings_response(request: &EmbeddingsRequest, body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("response body is not JSON"))?;
    let vectors = value
        .pointer("/embeddings/float")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_response("response has no embeddings.float list"))?;
    let vectors: Vec<&Value> = vectors.iter().collect();
    let data = content::embedding_data(&vectors, request, bad_response)?;
    let raw_usage = value.get("meta").filter(|m| m.is_object()).cloned();
    let usage = raw_usage.as_ref().and_then(usage_of);
    Ok(super::embeddings_list(data, ctx, usage, raw_usage))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelKind;
    use crate::openai::parse_request;

    fn config() -> CohereConfig {
        CohereConfig { base_url: "https://api.cohere.com/".into(), api_key_secret: "COHERE_KEY".into(), timeout_ms: None }
    }

    fn route() -> ModelRoute {
        ModelRoute { name: "chat".into(), provider: "cohere".into(), upstream_model: "command-a-03-2025".into(), kind: ModelKind::Chat, guard: None }
    }

    fn ctx() -> ResponseContext {
        ResponseContext { id: "chatcmpl-gw".into(), created: 7, model: "command-a-03-2025".into() }
    }

    fn chat(body: &str) -> ChatRequest {
        parse_request(body.as_bytes()).unwrap()
    }

    fn body_of(request: &OutboundRequest) -> Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    fn param_of(err: GatewayError) -> String {
        match err {
            GatewayError::InvalidRequest { param: Some(p), .. } => p,
            other => panic!("expected InvalidRequest with a param, got {other:?}"),
        }
    }

    // ----- request ------------------------------------------------------------------------

    const RICH: &str = r#"{"model":"chat","messages":[
        {"role":"system","content":"Be brief."},
        {"role":"developer","content":[{"type":"text","text":"Answer in JSON."}]},
        {"role":"user","content":[
            {"type":"text","text":"What is this, and the weather?"},
            {"type":"image_url","image_url":{"url":"https://x.example/cat.jpg","detail":"low"}},
            {"type":"image_url","image_url":{"url":"data:image/PNG;base64,iVBOR"}}]},
        {"role":"assistant","content":null,"tool_plan":"I will check the weather.","tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
            {"id":"call_2","type":"function","function":{"name":"get_time","arguments":""}}]},
        {"role":"tool","tool_call_id":"call_1","content":"18C"},
        {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"12:00"}]},
        {"role":"assistant","content":"It is 18C."},
        {"role":"assistant","content":""},
        {"role":"user","content":"Thanks. JSON please."}],
      "tools":[
        {"type":"function","function":{"name":"get_weather","description":"Weather by city","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
        {"type":"function","function":{"name":"get_time"}}],
      "tool_choice":"required",
      "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"a":{"type":"string"}}}}},
      "stop":["END"],"temperature":0.2,"top_p":0.9,"max_completion_tokens":300,"seed":7,
      "frequency_penalty":0.1,"presence_penalty":0.2,"top_k":40,"safety_mode":"STRICT",
      "logit_bias":{"1":2},"user":"u-1"}"#;

    #[test]
    fn golden_rich_request() {
        let out = chat_request(&config(), &route(), &chat(RICH), "sk-cohere").unwrap();
        assert_eq!(out.method, "POST");
        assert_eq!(out.url, "https://api.cohere.com/v2/chat");
        assert!(out.headers.contains(&("authorization".into(), "Bearer sk-cohere".into())));
        assert!(out.headers.contains(&("accept".into(), "application/json".into())));
        let expected = json!({
            "model": "command-a-03-2025",
            "messages": [
                {"role": "system", "content": "Be brief.\n\nAnswer in JSON."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "https://x.example/cat.jpg", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
                {"role": "assistant", "tool_plan": "I will check the weather.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
                {"role": "assistant", "content": "It is 18C."},
                {"role": "user", "content": "Thanks. JSON please."}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
            ],
            "tool_choice": "REQUIRED",
            "response_format": {"type": "json_object", "json_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
            "stop_sequences": ["END"],
            "temperature": 0.2,
            "p": 0.9,
            "frequency_penalty": 0.1,
            "presence_penalty": 0.2,
            "max_tokens": 300,
            "seed": 7,
            "k": 40,
            "safety_mode": "STRICT",
            "stream": false
        });
        assert_eq!(body_of(&out), expected);
    }

    #[test]
    fn streaming_json_object_and_named_function_choice() {
        let request = chat(
            r#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}],
               "tools":[{"type":"function","function":{"name":"a","strict":true}},{"type":"function","function":{"name":"b"}}],
               "tool_choice":{"type":"function","function":{"name":"b"}},
               "response_format":{"type":"json_object"},"max_tokens":5}"#,
        );
        let out = chat_request(&config(), &route(), &request, "k").unwrap();
        assert!(out.headers.contains(&("accept".into(), "text/event-stream".into())));
        let body = body_of(&out);
        assert_eq!(body["stream"], true);
        assert_eq!(body["tools"].as_array().unwrap().len(), 1, "only the forced function is offered");
        assert_eq!(body["tools"][0]["function"]["name"], "b");
        assert_eq!(body["tool_choice"], "REQUIRED");
        assert!(body.get("strict_tools").is_none(), "the strict tool was narrowed away");
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));

        let auto = chat(
            r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"tool_choice":"auto",
               "tools":[{"type":"function","function":{"name":"a","strict":true}}]}"#,
        );
        let body = body_of(&chat_request(&config(), &route(), &auto, "k").unwrap());
        assert!(body.get("tool_choice").is_none(), "auto is Cohere's default");
        assert_eq!(body["strict_tools"], true);
        let none = chat(r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"tool_choice":"none"}"#);
        assert!(body_of(&chat_request(&config(), &route(), &none, "k").unwrap()).get("tool_choice").is_none());
    }

    #[test]
    fn legacy_function_call_round_trip() {
        let request = chat(
            r#"{"model":"chat","messages":[{"role":"user","content":"hi"},
               {"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{\"x\":1}"}},
               {"role":"function","name":"f","content":"done"}]}"#,
        );
        let body = body_of(&chat_request(&config(), &route(), &request, "k").unwrap());
        assert_eq!(body["messages"][1]["tool_calls"][0]["id"], "call_legacy_1");
        assert_eq!(body["messages"][2], json!({"role": "tool", "tool_call_id": "call_legacy_1", "content": "done"}));
    }

    #[test]
    fn bad_input_is_an_invalid_request_naming_the_field() {
        let cases = [
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
            (r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
            (r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}"#, "messages[0].content[0].type"),
            (r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#, "messages[0].content[0].image_url.url"),
            (r#"{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://a/b.png"}}]},{"role":"user","content":"x"}]}"#, "messages[0].content"),
            (r#"{"model":"m","messages":[{"role":"user","content":[]}]}"#, "messages[0].content"),
            (r#"{"model":"m","messages":[{"role":"user","content":5}]}"#, "messages[0].content"),
            (r#"{"model":"m","messages":[{"role":"system","content":"only"}]}"#, "messages"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":1.5}"#, "seed"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, "temperature"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":-1}"#, "top_k"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#, "stop"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}"#, "tool_choice"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"function","function":{"name":"zz"}},"tools":[{"type":"function","function":{"name":"a"}}]}"#, "tool_choice"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"retrieval"}]}"#, "tools[0].type"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}"#, "response_format.json_schema"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}]}"#, "messages[1].tool_calls[0].id"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{nope"}}]}]}"#, "messages[1].tool_calls[0].arguments"),
            (r#"{"model":"m","messages":[{"role":"function","content":"x"}]}"#, "messages[0].role"),
        ];
        for (body, param) in cases {
            let err = chat_request(&config(), &route(), &chat(body), "k").unwrap_err();
            assert_eq!(param_of(err), param, "{body}");
        }
    }

    // ----- response -----------------------------------------------------------------------

    #[test]
    fn whole_response_with_text_tool_calls_and_usage() {
        let body = br#"{"id":"c0ffee","finish_reason":"TOOL_CALL","message":{"role":"assistant",
            "tool_plan":"I will look it up.",
            "tool_calls":[
              {"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Madrid\"}"}},
              {"id":"get_weather_2","type":"function","function":{"name":"get_weather","arguments":{"city":"Lima"}}}]},
            "usage":{"billed_units":{"input_tokens":37,"output_tokens":28},"tokens":{"input_tokens":913.0,"output_tokens":83.0}}}"#;
        let t = chat_response(body, &ctx()).unwrap();
        assert_eq!(t.body["id"], "c0ffee");
        assert_eq!(t.body["object"], "chat.completion");
        assert_eq!(t.body["model"], "command-a-03-2025");
        let choice = &t.body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(choice["message"]["reasoning_content"], "I will look it up.");
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls[0], json!({"id": "get_weather_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Madrid\"}"}}));
        assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Lima\"}", "object arguments become a JSON string");
        assert_eq!(t.usage, Some(Usage::from_parts(913, 0, 0, 83, 0)));
        assert_eq!(t.body["usage"]["prompt_tokens"], 913);
        assert_eq!(t.body["usage"]["total_tokens"], 996);
        assert_eq!(t.raw_usage.unwrap()["billed_units"]["input_tokens"], 37);
    }

    #[test]
    fn whole_response_text_thinking_finish_reasons_and_billed_fallback() {
        let body = br#"{"id":"x","finish_reason":"MAX_TOKENS","message":{"role":"assistant","content":[
            {"type":"thinking","thinking":"Hmm."},{"type":"text","text":"Hello"},{"type":"text","text":" world"}]},
            "usage":{"billed_units":{"input_tokens":5,"output_tokens":2}}}"#;
        let t = chat_response(body, &ctx()).unwrap();
        assert_eq!(t.body["choices"][0]["message"]["content"], "Hello world");
        assert_eq!(t.body["choices"][0]["message"]["reasoning_content"], "Hmm.");
        assert_eq!(t.body["choices"][0]["finish_reason"], "length");
        assert_eq!(t.usage, Some(Usage::from_parts(5, 0, 0, 2, 0)));
        for (reason, expected) in [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("TOOL_CALL", "stop"), ("SOMETHING_NEW", "stop")] {
            let body = format!(r#"{{"id":"x","finish_reason":"{reason}","message":{{"content":[{{"type":"text","text":"a"}}]}}}}"#);
            let t = chat_response(body.as_bytes(), &ctx()).unwrap();
            assert_eq!(t.body["choices"][0]["finish_reason"], expected, "{reason}");
            assert!(t.usage.is_none() && t.body.get("usage").is_none());
        }
    }

    #[test]
    fn malformed_or_failed_responses_are_upstream_errors_without_body_text() {
        let bodies: [&[u8]; 6] = [
            b"not json SECRET",
            br#"{"id":"x","finish_reason":"COMPLETE"}"#,
            br#"{"id":"x","message":{"content":7},"finish_reason":"COMPLETE"}"#,
            br#"{"id":"x","message":{"tool_calls":[{"id":"a","function":{}}]},"finish_reason":"TOOL_CALL"}"#,
            br#"{"id":"x","message":{"content":[{"type":"text","text":"SECRET partial"}]},"finish_reason":"ERROR"}"#,
            br#"{"id":"x","message":{"content":[]},"finish_reason":"TIMEOUT"}"#,
        ];
        for body in bodies {
            match chat_response(body, &ctx()) {
                Err(GatewayError::UpstreamInvalidResponse { provider, detail }) => {
                    assert_eq!(provider, "cohere");
                    assert!(!detail.contains("SECRET"), "{detail}");
                }
                other => panic!("expected UpstreamInvalidResponse, got {other:?}"),
            }
        }
    }

    #[test]
    fn error_bodies() {
        let e = error_message(400, br#"{"id":"abc","message":"invalid request: temperature must be between 0 and 1.0 inclusive."}"#).unwrap();
        assert_eq!(e.message, "invalid request: temperature must be between 0 and 1.0 inclusive.");
        assert_eq!(e.kind.as_deref(), Some("bad_request"));
        let e = error_message(429, br#"{"message":"You are using a Trial key"}"#).unwrap();
        assert_eq!(e.kind.as_deref(), Some("too_many_requests"));
        assert_eq!(error_message(418, br#"{"data":"odd"}"#).unwrap(), ProviderErrorBody { message: "odd".into(), kind: None });
        assert_eq!(error_message(500, b"<html>oops</html>"), None);
        assert_eq!(error_message(500, br#"{"error":{"message":"x"}}"#), None);
    }

    // ----- stream -------------------------------------------------------------------------

    fn frame(name: &str, data: Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    /// A tool-calling turn: a streamed plan, then two parallel calls with streamed arguments.
    fn tool_stream() -> Vec<u8> {
        let delta_args = |index: u64, args: &str| {
            frame("tool-call-delta", json!({"type": "tool-call-delta", "index": index, "delta": {"message": {"tool_calls": {"function": {"arguments": args}}}}}))
        };
        let start = |index: u64, id: &str| {
            frame(
                "tool-call-start",
                json!({"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls":
                    {"id": id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}}),
            )
        };
        let mut s = String::new();
        s.push_str(&frame("message-start", json!({"id": "c0ffee", "type": "message-start", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}})));
        s.push_str(&frame("tool-plan-delta", json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}})));
        s.push_str(&frame("tool-plan-delta", json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": " check."}}})));
        s.push_str(&start(0, "get_weather_a1"));
        s.push_str(&delta_args(0, "{\"city\":"));
        s.push_str(&start(1, "get_weather_b2"));
        s.push_str(&delta_args(1, "{\"city\": \"Brasília\"}"));
        s.push_str(&delta_args(0, " \"Madrid\"}"));
        s.push_str(&frame("tool-call-end", json!({"type": "tool-call-end", "index": 0})));
        s.push_str(&frame("tool-call-end", json!({"type": "tool-call-end", "index": 1})));
        s.push_str(&frame(
            "message-end",
            json!({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
                "billed_units": {"input_tokens": 37.0, "output_tokens": 28.0}, "tokens": {"input_tokens": 913.0, "output_tokens": 83.0}}}}),
        ));
        s.into_bytes()
    }

    fn text_stream() -> Vec<u8> {
        let mut s = String::new();
        s.push_str(&frame("message-start", json!({"id": "t1", "type": "message-start", "delta": {"message": {"role": "assistant"}}})));
        s.push_str(&frame("content-start", json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}})));
        for piece in ["It is", " 24°C", " in Madrid."] {
            s.push_str(&frame("content-delta", json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}, "logprobs": null})));
        }
        s.push_str(&frame("citation-start", json!({"type": "citation-start", "index": 0, "delta": {"message": {"citations": {"start": 6, "end": 10, "text": "24°C", "sources": []}}}})));
        s.push_str(&frame("citation-end", json!({"type": "citation-end", "index": 0})));
        s.push_str(&frame("content-end", json!({"type": "content-end", "index": 0})));
        s.push_str(&frame("message-end", json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {"tokens": {"input_tokens": 10, "output_tokens": 6}}}})));
        s.into_bytes()
    }

    /// Feed `bytes` cut at `cuts`; the chunks, and what `finish` said.
    fn run(bytes: &[u8], cuts: &[usize]) -> (Vec<Value>, Result<(), StreamFault>, Option<Usage>) {
        let mut stream = CohereStream::new(ctx());
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            if let Err(fault) = stream.push(&bytes[from..cut], &mut out) {
                return (out, Err(fault), stream.usage());
            }
            from = cut;
        }
        let finished = stream.finish(&mut out);
        (out, finished, stream.usage())
    }

    fn tool_deltas(chunks: &[Value]) -> Vec<Value> {
        chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0").cloned()).collect()
    }

    #[test]
    fn stream_with_two_parallel_tool_calls() {
        let (chunks, finished, usage) = run(&tool_stream(), &[]);
        assert_eq!(finished, Ok(()));
        assert!(chunks.iter().all(|c| c["id"] == "c0ffee" && c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(chunks.iter().filter(|c| c.pointer("/choices/0/delta/role").is_some()).count(), 1);
        let plan: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/reasoning_content").and_then(Value::as_str)).collect();
        assert_eq!(plan, "I will check.");

        let deltas = tool_deltas(&chunks);
        assert_eq!(deltas[0], json!({"index": 0, "id": "get_weather_a1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}));
        let args = |index: u64| -> String {
            deltas.iter().filter(|d| d["index"] == index).filter_map(|d| d.pointer("/function/arguments").and_then(Value::as_str)).collect()
        };
        assert_eq!(args(0), "{\"city\": \"Madrid\"}");
        assert_eq!(args(1), "{\"city\": \"Brasília\"}");
        assert_eq!(deltas.iter().filter(|d| d.get("id").is_some()).count(), 2, "id only on each call's first delta");
        assert_eq!(deltas.iter().find(|d| d["index"] == 1).unwrap()["id"], "get_weather_b2");

        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 913);
        assert_eq!(last["usage"]["completion_tokens"], 83);
        assert_eq!(chunks.iter().filter(|c| c.get("usage").is_some()).count(), 1, "usage exactly once");
        assert_eq!(usage, Some(Usage::from_parts(913, 0, 0, 83, 0)));
    }

    #[test]
    fn text_stream_ignores_citations_and_ends_with_usage() {
        let mut stream = CohereStream::new(ctx());
        let mut chunks = Vec::new();
        stream.push(&text_stream(), &mut chunks).unwrap();
        stream.finish(&mut chunks).unwrap();
        let text: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
        assert_eq!(text, "It is 24°C in Madrid.");
        assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 16);
        assert_eq!(stream.raw_usage(), Some(json!({"tokens": {"input_tokens": 10, "output_tokens": 6}})));
    }

    #[test]
    fn stream_output_does_not_depend_on_chunking() {
        for bytes in [tool_stream(), text_stream()] {
            let whole = run(&bytes, &[]);
            for cut in 1..bytes.len() {
                assert_eq!(run(&bytes, &[cut]), whole, "split at {cut}");
            }
            // Many random cuts, from a fixed-seed linear congruential generator.
            let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
            for _ in 0..300 {
                let mut cuts = Vec::new();
                let mut at = 0;
                loop {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    at += 1 + (seed >> 33) as usize % 40;
                    if at >= bytes.len() {
                        break;
                    }
                    cuts.push(at);
                }
                assert_eq!(run(&bytes, &cuts), whole, "cuts {cuts:?}");
            }
        }
    }

    #[test]
    fn error_at_message_end_is_a_provider_fault() {
        let mut bytes = text_stream();
        let at = String::from_utf8_lossy(&bytes).find("event: message-end").unwrap();
        bytes.truncate(at);
        let mut failed = bytes.clone();
        failed.extend(frame("message-end", json!({"type": "message-end", "delta": {"error": "SECRET internal detail", "finish_reason": "ERROR"}})).bytes());
        let (chunks, result, _) = run(&failed, &[]);
        assert_eq!(result, Err(StreamFault::Provider { kind: "ERROR".into() }));
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        let mut timeout = bytes.clone();
        timeout.extend(frame("message-end", json!({"type": "message-end", "delta": {"finish_reason": "TIMEOUT"}})).bytes());
        assert_eq!(run(&timeout, &[]).1, Err(StreamFault::Provider { kind: "TIMEOUT".into() }));
        let mut error_only = bytes;
        error_only.extend(frame("message-end", json!({"type": "message-end", "delta": {"error": "boom"}})).bytes());
        assert_eq!(run(&error_only, &[]).1, Err(StreamFault::Provider { kind: "ERROR".into() }));
    }

    #[test]
    fn truncated_and_malformed_streams() {
        let bytes = tool_stream();
        let at = String::from_utf8_lossy(&bytes).find("event: message-end").unwrap();
        let (chunks, result, usage) = run(&bytes[..at], &[]);
        assert_eq!(result, Err(StreamFault::Truncated));
        assert!(!chunks.is_empty() && usage.is_none());
        assert_eq!(run(b"", &[]).1, Err(StreamFault::Truncated));
        assert!(matches!(run(b"data: {not json\n\n", &[]).1, Err(StreamFault::Malformed { .. })));
        // Events without the fields they should carry are skipped, never a panic.
        let odd = b"data: {\"type\":\"tool-call-delta\"}\n\ndata: {\"type\":\"content-delta\",\"delta\":7}\n\ndata: [DONE]\n\ndata: {\"type\":\"message-end\"}\n\n";
        let (chunks, result, usage) = run(odd, &[]);
        assert_eq!(result, Ok(()));
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
        assert!(usage.is_none());
    }

    // ----- embeddings ---------------------------------------------------------------------

    fn embed(body: &str) -> EmbeddingsRequest {
        parse_request(body.as_bytes()).unwrap()
    }

    #[test]
    fn embeddings_request_body() {
        let out = embeddings_request(&config(), &route(), &embed(r#"{"model":"e","input":["a","b"],"dimensions":256,"truncate":"END","user":"u"}"#), "k").unwrap();
        assert_eq!(out.url, "https://api.cohere.com/v2/embed");
        assert!(out.headers.contains(&("authorization".into(), "Bearer k".into())));
        assert_eq!(
            body_of(&out),
            json!({"model": "command-a-03-2025", "texts": ["a", "b"], "input_type": "search_document",
                   "embedding_types": ["float"], "output_dimension": 256, "truncate": "END"})
        );
        let query = embeddings_request(&config(), &route(), &embed(r#"{"model":"e","input":"q","input_type":"search_query"}"#), "k").unwrap();
        let body = body_of(&query);
        assert_eq!(body["input_type"], "search_query");
        assert_eq!(body["texts"], json!(["q"]));
        assert!(body.get("output_dimension").is_none());

        for (bad, param) in [
            (r#"{"model":"e","input":[1,2,3]}"#, "input"),
            (r#"{"model":"e","input":["a",[1,2]]}"#, "input"),
            (r#"{"model":"e","input":"a","input_type":5}"#, "input_type"),
        ] {
            assert_eq!(param_of(embeddings_request(&config(), &route(), &embed(bad), "k").unwrap_err()), param, "{bad}");
        }
    }

    #[test]
    fn embeddings_response_in_float_and_base64() {
        let body = br#"{"id":"e1","embeddings":{"float":[[0.5,-0.25],[1,0]]},"texts":["a","b"],
            "meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":4}}}"#;
        let float = embeddings_response(&embed(r#"{"model":"e","input":["a","b"]}"#), body, &ctx()).unwrap();
        assert_eq!(
            float.body,
            json!({"object": "list", "model": "command-a-03-2025",
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
                   "usage": {"prompt_tokens": 4, "total_tokens": 4}})
        );
        assert_eq!(float.usage, Some(Usage::from_parts(4, 0, 0, 0, 0)));
        assert_eq!(float.raw_usage.unwrap()["billed_units"]["input_tokens"], 4);

        let b64 = embeddings_response(&embed(r#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#), body, &ctx()).unwrap();
        let encoded = b64.body["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
        let decoded: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(decoded, vec![0.5, -0.25]);
    }

    #[test]
    fn bad_embeddings_responses() {
        let request = embed(r#"{"model":"e","input":["a","b"]}"#);
        let bodies: [&[u8]; 4] = [
            b"nope",
            br#"{"id":"e","embeddings":{"int8":[[1]]}}"#,
            br#"{"id":"e","embeddings":{"float":[[0.1]]}}"#,
            br#"{"id":"e","embeddings":{"float":[[0.1],["x"]]}}"#,
        ];
        for body in bodies {
            assert!(matches!(embeddings_response(&request, body, &ctx()), Err(GatewayError::UpstreamInvalidResponse { .. })));
        }
    }
}
