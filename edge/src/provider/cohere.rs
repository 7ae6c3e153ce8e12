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

use super::answer::{self, embeddings_list};
use super::call::{ProviderErrorBody, ResponseContext, Translated};
use super::chunk::ChunkWriter;
use super::content::{self, invalid, pass_through, Image, Part, ResponseFormat, ToolChoice};
use super::decode::{self, EventTranslator, FramedDecoder, Progress, StreamFault};
use crate::config::{CohereConfig, ModelRoute};
use crate::error::GatewayError;
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};
use crate::sse::{SseDecoder, SseEvent};

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
            "tool" => Some(tool_message(content::tool_call_id(message, &at)?, message, &at)?),
            "function" => Some(tool_message(content::legacy_call_id(&legacy_id, &at)?, message, &at)?),
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
    answer::finish_reason(reason, FINISH, has_tool_calls)
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
    let choice = answer::choice(0, answer::assistant_message(text, &reasoning, calls), finish);
    let id = value.get("id").and_then(Value::as_str);
    Ok(answer::completion(ctx, id, None, vec![choice], value.get("usage"), usage_of))
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

/// Cohere's SSE stream as OpenAI chunks.
pub type CohereStream = FramedDecoder<SseDecoder, CohereEvents>;

/// Cohere's stream events (`message-start` ... `message-end`) as OpenAI chunks. Each tool
/// call's `index` from `tool-call-start`/`tool-call-delta` is its key, so parallel calls keep
/// distinct, stable OpenAI indexes. Whatever follows `message-end` is ignored.
pub struct CohereEvents {
    writer: ChunkWriter,
    /// Complete at `message-end`, whose `delta.usage` is the usage object.
    progress: Progress,
}

impl EventTranslator for CohereEvents {
    type Event = SseEvent;
    const USAGE: fn(&Value) -> Option<Usage> = usage_of;

    fn new(ctx: &ResponseContext) -> Self {
        CohereEvents { writer: ChunkWriter::new(ctx), progress: Progress::default() }
    }

    fn event(&mut self, event: &SseEvent, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if event.data.trim() == "[DONE]" {
            return Ok(());
        }
        let data = decode::json_data(&event.data)?;
        let kind = data.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or_default();
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

    fn progress(&self) -> &Progress {
        &self.progress
    }
}

impl CohereEvents {
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
        self.progress.complete = true;
        self.progress.raw_usage = delta.get("usage").filter(|u| u.is_object()).cloned();
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
    let data = answer::embedding_data(&vectors, request, bad_response)?;
    let raw_usage = value.get("meta").filter(|m| m.is_object()).cloned();
    let usage = raw_usage.as_ref().and_then(usage_of);
    Ok(embeddings_list(data, ctx, usage, raw_usage))
}


#[cfg(test)]
mod tests;
