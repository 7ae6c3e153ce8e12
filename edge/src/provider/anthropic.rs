//! Anthropic Messages API (outbound): `POST {base_url}/v1/messages`.
//!
//! Wire format from Anthropic's Messages API reference (create message, streaming messages,
//! errors). Translation choices worth knowing:
//!
//! - **`max_tokens`** is required by Anthropic: the client's `max_completion_tokens` /
//!   `max_tokens`, else [`DEFAULT_MAX_TOKENS`].
//! - **Roles**: system and developer messages become the top-level `system` string (joined by a
//!   blank line). `tool` results become `tool_result` blocks in a user message. Anthropic wants
//!   user and assistant turns to alternate, so consecutive messages of the same role (e.g.
//!   several tool results, or tool results followed by a user message) are merged into one
//!   message, with the `tool_result` blocks first as Anthropic requires.
//! - **JSON mode**: the classic Messages API has no JSON switch. `json_schema` is done with a
//!   forced tool named [`JSON_TOOL`] whose `input_schema` is the client's schema: Anthropic
//!   validates tool input against the schema's shape far more reliably than it follows a
//!   prompt. The response translators turn that tool's input back into the message text (and a
//!   `tool_use` stop into `stop`), so the client sees plain JSON content. `json_object` has no
//!   schema to force, so it appends an instruction to the system prompt instead.
//! - **Thinking**: `thinking` blocks are returned as `reasoning_content` on the message/delta
//!   (the non-standard field DeepSeek and vLLM use; OpenAI SDKs keep unknown fields).
//!   `redacted_thinking` and server-tool blocks are dropped: they have no OpenAI form.
//! - **Usage**: Anthropic's `input_tokens` *excludes* `cache_read_input_tokens` and
//!   `cache_creation_input_tokens`, so usage is built with [`Usage::from_parts`]; Anthropic
//!   does not report thinking tokens separately, so `reasoning_tokens` is 0.
//! - Parameters Anthropic lacks (`seed`, `frequency_penalty`, `presence_penalty`, `logprobs`,
//!   `logit_bias`) are dropped; `n > 1` is refused because Anthropic returns one choice.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::content::{self, Image, Part, ResponseFormat, ToolChoice};
use super::chunk::ChunkWriter;
use super::{pass_through, ProviderErrorBody, ResponseContext, StreamDecoder, StreamFault, Translated};
use crate::config::{AnthropicConfig, ModelRoute};
use crate::error::GatewayError;
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, Usage};
use crate::sse::SseDecoder;

/// Output cap sent when the client gives none (Anthropic requires one). Every current Claude
/// model accepts at least this many output tokens.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Name of the tool used to force JSON output for `response_format: json_schema`. Reserved:
/// client tools may not use it, so a `tool_use` with this name is always the JSON answer.
pub const JSON_TOOL: &str = "gateway_json_response";

/// Appended to the system prompt for `response_format: json_object`.
const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object only, with no text before or after it.";

/// Anthropic request fields a client may send through unchanged (in `request.rest`).
const PASS_THROUGH: &[&str] = &["top_k", "thinking", "service_tier"];

/// Media types Anthropic accepts for base64 image sources.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Anthropic `stop_reason` -> OpenAI `finish_reason`. `pause_turn` (a server tool paused a
/// long turn) has no OpenAI equivalent; the turn did end, so `stop`.
const FINISH: &[(&str, &str)] = &[
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("pause_turn", "stop"),
];

const PROVIDER: &str = "anthropic";

fn invalid(message: impl Into<String>, param: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest { message: message.into(), param: Some(param.into()) }
}

fn bad_response(detail: &str) -> GatewayError {
    GatewayError::UpstreamInvalidResponse { provider: PROVIDER.into(), detail: detail.into() }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// The OpenAI chat request as an Anthropic Messages call.
pub fn chat_request(config: &AnthropicConfig, route: &ModelRoute, request: &ChatRequest, api_key: &str) -> Result<OutboundRequest, GatewayError> {
    let body = request_body(route, request)?;
    let stream = request.is_stream();
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("accept".to_string(), if stream { "text/event-stream" } else { "application/json" }.to_string()),
        ("x-api-key".to_string(), api_key.to_string()),
        ("anthropic-version".to_string(), config.version.clone()),
    ];
    Ok(OutboundRequest {
        method: "POST",
        url: format!("{}/v1/messages", config.base_url.trim_end_matches('/')),
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    })
}

/// The Messages API JSON body.
fn request_body(route: &ModelRoute, request: &ChatRequest) -> Result<Value, GatewayError> {
    if request.choices() > 1 {
        return Err(invalid("Anthropic models return one choice per request; 'n' must be 1.", "n"));
    }
    let (system, indexes) = content::split_system(request)?;
    let format = content::response_format(request)?;
    let messages = messages(request, &indexes)?;
    if messages.is_empty() {
        return Err(invalid("'messages' must contain at least one user or assistant message.", "messages"));
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(route.upstream_model));
    body.insert("max_tokens".into(), json!(request.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS)));
    let mut system: Vec<String> = system.into_iter().filter(|s| !s.is_empty()).collect();
    if format == ResponseFormat::JsonObject {
        system.push(JSON_OBJECT_INSTRUCTION.to_string());
    }
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    tools_and_choice(request, &format, &mut body)?;
    let stop = content::stop_sequences(request)?;
    if !stop.is_empty() {
        body.insert("stop_sequences".into(), json!(stop));
    }
    for key in ["temperature", "top_p"] {
        if let Some(value) = content::number(request, key)? {
            body.insert(key.into(), json!(value));
        }
    }
    if let Some(user) = request.rest.get("user").and_then(Value::as_str).filter(|u| !u.is_empty()) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    pass_through(&request.rest, PASS_THROUGH, &mut body);
    if request.is_stream() {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

/// One Anthropic message being built; consecutive same-role messages are merged into it.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// The non-system messages as alternating Anthropic turns.
fn messages(request: &ChatRequest, indexes: &[usize]) -> Result<Vec<Value>, GatewayError> {
    let mut turns: Vec<Turn> = Vec::new();
    // The synthetic id given to the last legacy `function_call`, for the `function` reply.
    let mut legacy_id: Option<String> = None;
    for &i in indexes {
        let Some(message) = request.messages.get(i) else { continue };
        let at = format!("messages[{i}]");
        let (role, blocks) = match message.get("role").and_then(Value::as_str).unwrap_or_default() {
            "user" => ("user", user_blocks(message, &at)?),
            "assistant" => ("assistant", assistant_blocks(message, i, &at, &mut legacy_id)?),
            "tool" => ("user", vec![tool_result(message, &at)?]),
            "function" => ("user", vec![legacy_function_result(message, &at, legacy_id.as_deref())?]),
            other => return Err(invalid(format!("{at}.role '{other}' is not supported here."), format!("{at}.role"))),
        };
        if blocks.is_empty() {
            if role == "user" {
                return Err(invalid(format!("{at}.content must not be empty."), format!("{at}.content")));
            }
            // An assistant turn with no text and no tool calls carries nothing; Anthropic
            // refuses empty content, so it is left out.
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }
    Ok(turns
        .into_iter()
        .map(|mut turn| {
            if turn.role == "user" {
                tool_results_first(&mut turn.blocks);
            }
            json!({ "role": turn.role, "content": turn.blocks })
        })
        .collect())
}

/// Anthropic requires a user message's `tool_result` blocks before any other content.
fn tool_results_first(blocks: &mut [Value]) {
    blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
}

fn text_block(text: String) -> Value {
    json!({ "type": "text", "text": text })
}

fn user_blocks(message: &Value, at: &str) -> Result<Vec<Value>, GatewayError> {
    let at = format!("{at}.content");
    let mut blocks = Vec::new();
    for (j, part) in content::parts(message.get("content"), &at)?.into_iter().enumerate() {
        match part {
            // Anthropic refuses empty text blocks; an empty part carries nothing.
            Part::Text(text) if text.is_empty() => {}
            Part::Text(text) => blocks.push(text_block(text)),
            Part::Image(image) => blocks.push(image_block(image, &format!("{at}[{j}].image_url.url"))?),
        }
    }
    Ok(blocks)
}

fn image_block(image: Image, at: &str) -> Result<Value, GatewayError> {
    let source = match image {
        Image::Url(url) => json!({ "type": "url", "url": url }),
        Image::Base64 { media_type, data } => {
            if !IMAGE_TYPES.contains(&media_type.as_str()) {
                return Err(invalid(
                    format!("{at}: image type '{media_type}' is not supported by Anthropic (use {}).", IMAGE_TYPES.join(", ")),
                    at,
                ));
            }
            json!({ "type": "base64", "media_type": media_type, "data": data })
        }
    };
    Ok(json!({ "type": "image", "source": source }))
}

/// An assistant message's text and tool calls (`tool_use` blocks, input as an object).
fn assistant_blocks(message: &Value, i: usize, at: &str, legacy_id: &mut Option<String>) -> Result<Vec<Value>, GatewayError> {
    let mut blocks = Vec::new();
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    if !text.is_empty() {
        blocks.push(text_block(text));
    }
    for call in content::identified_tool_calls(message, i, at, legacy_id)? {
        let id = call.id;
        blocks.push(json!({ "type": "tool_use", "id": id, "name": call.name, "input": call.arguments }));
    }
    Ok(blocks)
}

/// A `tool` message as a `tool_result` block.
fn tool_result(message: &Value, at: &str) -> Result<Value, GatewayError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid(format!("{at}.tool_call_id is required for tool messages."), format!("{at}.tool_call_id")))?;
    result_block(id, message, at)
}

/// A legacy `function` message, answering the last legacy `function_call`.
fn legacy_function_result(message: &Value, at: &str, legacy_id: Option<&str>) -> Result<Value, GatewayError> {
    let id = legacy_id.ok_or_else(|| invalid(format!("{at} answers no earlier assistant function_call."), format!("{at}.role")))?;
    result_block(id, message, at)
}

fn result_block(id: &str, message: &Value, at: &str) -> Result<Value, GatewayError> {
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    let mut block = json!({ "type": "tool_result", "tool_use_id": id });
    // `content` is optional for Anthropic; an empty string is left out rather than sent.
    if !text.is_empty() {
        block["content"] = json!(text);
    }
    Ok(block)
}

fn thinking_enabled(request: &ChatRequest) -> bool {
    request
        .rest
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled")
}

/// `tools` and `tool_choice`, including the forced JSON tool for `json_schema`.
fn tools_and_choice(request: &ChatRequest, format: &ResponseFormat, body: &mut Map<String, Value>) -> Result<(), GatewayError> {
    let client_tools = content::tools(request)?;
    if client_tools.iter().any(|t| t.name == JSON_TOOL) {
        return Err(invalid(format!("The tool name '{JSON_TOOL}' is reserved by the gateway."), "tools"));
    }
    let choice = content::tool_choice(request)?;
    if let Some(ToolChoice::Function(name)) = &choice {
        if !client_tools.iter().any(|t| &t.name == name) {
            return Err(invalid(format!("'tool_choice' names the function '{name}', which is not in 'tools'."), "tool_choice"));
        }
    }
    let mut tools: Vec<Value> = client_tools
        .iter()
        .map(|t| {
            let mut tool = json!({ "name": t.name, "input_schema": t.parameters });
            if let Some(description) = &t.description {
                tool["description"] = json!(description);
            }
            tool
        })
        .collect();
    let mut anthropic_choice = choice.as_ref().map(|c| match c {
        ToolChoice::Auto => json!({ "type": "auto" }),
        ToolChoice::None => json!({ "type": "none" }),
        ToolChoice::Required => json!({ "type": "any" }),
        ToolChoice::Function(name) => json!({ "type": "tool", "name": name }),
    });

    if let ResponseFormat::JsonSchema { name, schema, .. } = format {
        if thinking_enabled(request) {
            // Anthropic does not allow forced tool use together with extended thinking.
            return Err(invalid(
                "response_format json_schema cannot be combined with 'thinking' on Anthropic models.",
                "response_format",
            ));
        }
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(invalid(
                "Anthropic models need a json_schema whose root 'type' is 'object'.",
                "response_format.json_schema.schema.type",
            ));
        }
        if choice == Some(ToolChoice::None) {
            tools.clear();
        }
        tools.push(json!({
            "name": JSON_TOOL,
            "description": format!("Give the final answer by calling this tool. Its input is the answer, as JSON matching the '{name}' schema."),
            "input_schema": schema,
        }));
        anthropic_choice = match (&choice, tools.len()) {
            // The client forced one of its own functions: that wins for this turn.
            (Some(ToolChoice::Function(_)), _) => anthropic_choice,
            (_, 1) => Some(json!({ "type": "tool", "name": JSON_TOOL })),
            // Client tools too: the model must call one of them or answer in JSON.
            _ => Some(json!({ "type": "any" })),
        };
    }

    if tools.is_empty() {
        // Anthropic has no tool_choice without tools; OpenAI's "none" without tools is a no-op.
        return Ok(());
    }
    body.insert("tools".into(), Value::Array(tools));
    if request.rest.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
        let choice = anthropic_choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(choice) = anthropic_choice {
        body.insert("tool_choice".into(), choice);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// Normalised usage from an Anthropic usage object (whole response, or a stream's merged one).
/// `input_tokens` there excludes both cache reads and cache writes.
fn usage_of(usage: &Map<String, Value>) -> Option<Usage> {
    if !usage.contains_key("input_tokens") && !usage.contains_key("output_tokens") {
        return None;
    }
    let get = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage::from_parts(
        get("input_tokens"),
        get("cache_read_input_tokens"),
        get("cache_creation_input_tokens"),
        get("output_tokens"),
        0,
    ))
}

/// An Anthropic stop reason as an OpenAI finish reason. `tool_use` caused only by the JSON
/// tool is a normal stop for the client.
fn finish_reason(stop_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match stop_reason.map(|r| content::map_finish(r, FINISH)) {
        Some("tool_calls") if !has_tool_calls => "stop",
        Some(reason) => reason,
        None => "stop",
    }
}

/// A whole Anthropic `message` as an OpenAI `chat.completion`.
pub fn chat_response(body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("response body is not JSON"))?;
    let blocks = value.get("content").and_then(Value::as_array).ok_or_else(|| bad_response("response has no content array"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("thinking") => reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => {
                let name = block.get("name").and_then(Value::as_str).ok_or_else(|| bad_response("tool_use block without a name"))?;
                let arguments = block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into());
                if name == JSON_TOOL {
                    text.push_str(&arguments);
                } else {
                    let id = block.get("id").and_then(Value::as_str).unwrap_or_default();
                    calls.push(json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } }));
                }
            }
            // redacted_thinking, server tool blocks, future types: no OpenAI form.
            _ => {}
        }
    }
    let finish = finish_reason(value.get("stop_reason").and_then(Value::as_str), !calls.is_empty());
    let message = super::assistant_message(text, &reasoning, calls);
    let raw_usage = value.get("usage").filter(|u| u.is_object()).cloned();
    let usage = raw_usage.as_ref().and_then(Value::as_object).and_then(usage_of);
    let mut out = json!({
        "id": value.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(&ctx.id),
        "object": "chat.completion",
        "created": ctx.created,
        "model": value.get("model").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(&ctx.model),
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
    });
    if let Some(usage) = &usage {
        out["usage"] = usage.to_openai();
    }
    Ok(Translated { body: out, usage, raw_usage })
}

/// Anthropic's error body: `{"type":"error","error":{"type":"...","message":"..."}}`.
pub fn error_message(_status: u16, body: &[u8]) -> Option<ProviderErrorBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let message = error.get("message").and_then(Value::as_str)?.to_string();
    let kind = error.get("type").and_then(Value::as_str).map(str::to_string);
    Some(ProviderErrorBody { message, kind })
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// What a content block index carries, from its `content_block_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool,
    /// The forced JSON tool: its argument deltas are the answer text.
    Json,
    Thinking,
    /// Blocks with no OpenAI form (redacted thinking, server tools); their deltas are dropped.
    Other,
}

/// Anthropic's SSE stream as OpenAI chunks. The content block `index` is the tool-call key, so
/// parallel tool calls keep distinct, stable OpenAI indexes whatever order their deltas come in.
pub struct AnthropicStream {
    sse: SseDecoder,
    writer: ChunkWriter,
    blocks: BTreeMap<u64, Block>,
    /// `message_start`'s usage, overwritten by each `message_delta`'s cumulative counts.
    raw_usage: Option<Map<String, Value>>,
    /// `message_stop` arrived: the stream ended properly.
    stopped: bool,
}

impl AnthropicStream {
    pub fn new(ctx: ResponseContext) -> Self {
        AnthropicStream { sse: SseDecoder::new(), writer: ChunkWriter::new(&ctx), blocks: BTreeMap::new(), raw_usage: None, stopped: false }
    }

    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let Some(usage) = usage.and_then(Value::as_object) {
            let raw = self.raw_usage.get_or_insert_with(Map::new);
            for (key, value) in usage.iter().filter(|(_, v)| !v.is_null()) {
                raw.insert(key.clone(), value.clone());
            }
        }
    }

    fn event(&mut self, data: &str, name: Option<&str>, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if self.stopped {
            return Ok(());
        }
        let data: Value = serde_json::from_str(data).map_err(|_| StreamFault::Malformed { detail: "event data is not JSON".into() })?;
        let kind = data.get("type").and_then(Value::as_str).or(name).unwrap_or_default();
        match kind {
            "message_start" => {
                let message = data.get("message");
                if let Some(id) = message.and_then(|m| m.get("id")).and_then(Value::as_str) {
                    self.writer.set_id(id);
                }
                if let Some(model) = message.and_then(|m| m.get("model")).and_then(Value::as_str) {
                    self.writer.set_model(model);
                }
                self.merge_usage(message.and_then(|m| m.get("usage")));
                self.writer.start(0, out);
            }
            "content_block_start" => self.block_start(&data, out),
            "content_block_delta" => self.block_delta(&data, out),
            "message_delta" => {
                self.merge_usage(data.get("usage"));
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    let finish = finish_reason(Some(reason), self.writer.has_tool_calls(0));
                    self.writer.finish(0, finish, out);
                }
            }
            "message_stop" => {
                self.stopped = true;
                self.writer.finish(0, finish_reason(None, false), out);
                if let Some(usage) = self.usage() {
                    self.writer.usage(&usage, out);
                }
            }
            "error" => {
                let kind = data.pointer("/error/type").and_then(Value::as_str).unwrap_or("error");
                return Err(StreamFault::Provider { kind: kind.to_string() });
            }
            // ping, content_block_stop, and event types Anthropic may add later.
            _ => {}
        }
        Ok(())
    }

    fn block_start(&mut self, data: &Value, out: &mut Vec<Value>) {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let block = data.get("content_block").unwrap_or(&Value::Null);
        let str_of = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
        let kind = match str_of("type") {
            "text" => {
                self.writer.text(0, str_of("text"), out);
                Block::Text
            }
            "thinking" => {
                self.writer.reasoning(0, str_of("thinking"), out);
                Block::Thinking
            }
            "tool_use" if str_of("name") == JSON_TOOL => Block::Json,
            "tool_use" => {
                self.writer.tool_call_start(0, index, str_of("id"), str_of("name"), out);
                Block::Tool
            }
            _ => Block::Other,
        };
        // The start's `input` is normally `{}` with the arguments following as deltas; a
        // non-empty one is sent as the first fragment so nothing is lost.
        if let Some(input) = block.get("input").and_then(Value::as_object).filter(|i| !i.is_empty()) {
            let fragment = Value::Object(input.clone()).to_string();
            self.arguments(kind, index, &fragment, out);
        }
        self.blocks.insert(index, kind);
    }

    fn block_delta(&mut self, data: &Value, out: &mut Vec<Value>) {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let Some(delta) = data.get("delta") else { return };
        let str_of = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or_default();
        let block = self.blocks.get(&index).copied();
        match str_of("type") {
            "text_delta" if block != Some(Block::Other) => self.writer.text(0, str_of("text"), out),
            "thinking_delta" if block != Some(Block::Other) => self.writer.reasoning(0, str_of("thinking"), out),
            // A delta for a block never started is treated as a tool call (the writer opens
            // an anonymous one) rather than dropped.
            "input_json_delta" => self.arguments(block.unwrap_or(Block::Tool), index, str_of("partial_json"), out),
            // signature_delta, citations_delta, ...: nothing to show.
            _ => {}
        }
    }

    fn arguments(&mut self, kind: Block, index: u64, fragment: &str, out: &mut Vec<Value>) {
        match kind {
            Block::Tool => self.writer.tool_call_arguments(0, index, fragment, out),
            Block::Json => self.writer.text(0, fragment, out),
            _ => {}
        }
    }
}

impl StreamDecoder for AnthropicStream {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), StreamFault> {
        for event in self.sse.push(bytes) {
            self.event(&event.data, event.event.as_deref(), out)?;
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Value>) -> Result<(), StreamFault> {
        // Whatever follows `message_stop` (an unterminated trailing event) does not matter.
        std::mem::take(&mut self.sse).finish();
        if self.stopped {
            Ok(())
        } else {
            Err(StreamFault::Truncated)
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.raw_usage.as_ref().and_then(usage_of)
    }

    fn raw_usage(&self) -> Option<Value> {
        self.raw_usage.clone().map(Value::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::test_support::{deltas, drive};
    use crate::config::ModelKind;
    use crate::openai::parse_request;

    fn config() -> AnthropicConfig {
        AnthropicConfig { base_url: "https://api.anthropic.com".into(), api_key_secret: "ANTHROPIC_KEY".into(), version: "2023-06-01".into(), timeout_ms: None }
    }

    fn route() -> ModelRoute {
        ModelRoute { name: "claude".into(), provider: "anthropic".into(), upstream_model: "claude-sonnet-4-5".into(), kind: ModelKind::Chat, guard: None }
    }

    fn ctx() -> ResponseContext {
        ResponseContext { id: "chatcmpl-gw".into(), created: 1700000000, model: "claude-sonnet-4-5".into() }
    }

    fn request(body: Value) -> ChatRequest {
        parse_request(body.to_string().as_bytes()).unwrap()
    }

    fn body_of(body: Value) -> Value {
        let out = chat_request(&config(), &route(), &request(body), "sk-ant-secret").unwrap();
        serde_json::from_slice(&out.body).unwrap()
    }

    fn param_of(body: Value) -> String {
        match chat_request(&config(), &route(), &request(body), "k") {
            Err(GatewayError::InvalidRequest { param: Some(p), .. }) => p,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    // ----- request -----

    #[test]
    fn golden_rich_request() {
        let out = chat_request(
            &config(),
            &route(),
            &request(json!({
                "model": "claude",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                    {"role": "user", "content": [
                        {"type": "text", "text": "Weather where these were taken?"},
                        {"type": "image_url", "image_url": {"url": "https://img.example/a.jpg"}},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}
                    ]},
                    {"role": "assistant", "content": "Checking both.", "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                    {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "4C"}]},
                    {"role": "user", "content": "Thanks. Also compare."}
                ],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
                "tool_choice": "required",
                "parallel_tool_calls": false,
                "response_format": {"type": "json_object"},
                "stop": ["END", "STOP"],
                "temperature": 0.5,
                "top_p": 0.9,
                "top_k": 40,
                "service_tier": "auto",
                "seed": 7,
                "frequency_penalty": 0.1,
                "user": "user-hash-1",
                "max_completion_tokens": 512,
                "stream": true,
                "stream_options": {"include_usage": true}
            })),
            "sk-ant-secret",
        )
        .unwrap();
        assert_eq!(out.method, "POST");
        assert_eq!(out.url, "https://api.anthropic.com/v1/messages");
        assert!(out.headers.contains(&("x-api-key".into(), "sk-ant-secret".into())));
        assert!(out.headers.contains(&("anthropic-version".into(), "2023-06-01".into())));
        assert!(out.headers.contains(&("content-type".into(), "application/json".into())));
        assert!(out.headers.contains(&("accept".into(), "text/event-stream".into())));
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        let expected = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 512,
            "system": format!("You are terse.\n\nUse metric units.\n\n{JSON_OBJECT_INSTRUCTION}"),
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather where these were taken?"},
                    {"type": "image", "source": {"type": "url", "url": "https://img.example/a.jpg"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "4C"},
                    {"type": "text", "text": "Thanks. Also compare."}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END", "STOP"],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "service_tier": "auto",
            "metadata": {"user_id": "user-hash-1"},
            "stream": true
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn default_max_tokens_and_no_stream_flag() {
        let body = body_of(json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]));
        for key in ["stream", "system", "tools", "tool_choice", "metadata"] {
            assert!(body.get(key).is_none(), "{key}");
        }
        let body = body_of(json!({"model": "claude", "max_tokens": 99, "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(body["max_tokens"], 99);
    }

    #[test]
    fn tool_choice_mapping() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let choice = |c: Value| {
            body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": c}))["tool_choice"].clone()
        };
        assert_eq!(choice(json!("auto")), json!({"type": "auto"}));
        assert_eq!(choice(json!("none")), json!({"type": "none"}));
        assert_eq!(choice(json!("required")), json!({"type": "any"}));
        assert_eq!(choice(json!({"type": "function", "function": {"name": "f"}})), json!({"type": "tool", "name": "f"}));
        let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "parallel_tool_calls": false}));
        assert_eq!(body["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object", "properties": {}}));
        // tool_choice without tools is not sent (Anthropic has no such thing).
        let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}));
        assert!(body.get("tool_choice").is_none());
    }

    #[test]
    fn json_schema_forces_the_reserved_tool() {
        let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}});
        let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": true}}}));
        assert_eq!(body["tools"][0]["name"], JSON_TOOL);
        assert_eq!(body["tools"][0]["input_schema"], schema);
        assert_eq!(body["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
        assert!(body.get("system").is_none());
        // With client tools the model must call one of them or answer in JSON.
        let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}}));
        assert_eq!(body["tools"].as_array().unwrap().len(), 2);
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
    }

    #[test]
    fn consecutive_same_role_messages_merge_and_legacy_functions_work() {
        let body = body_of(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "function", "name": "f", "content": "done"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "ok"}
        ]}));
        assert_eq!(body["messages"], json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_legacy_2", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_legacy_2", "content": "done"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}
        ]));
    }

    #[test]
    fn bad_input_is_an_invalid_request_naming_the_field() {
        let user = json!({"role": "user", "content": "x"});
        assert_eq!(param_of(json!({"model": "m", "n": 2, "messages": [user]})), "n");
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "system", "content": "only"}]})), "messages");
        assert_eq!(
            param_of(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]})),
            "messages[0].content[0].image_url.url"
        );
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]})), "messages[0].content[0].type");
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": ""}]})), "messages[0].content");
        assert_eq!(param_of(json!({"model": "m", "messages": [user, {"role": "tool", "content": "r"}]})), "messages[1].tool_call_id");
        assert_eq!(param_of(json!({"model": "m", "messages": [user, {"role": "function", "name": "f", "content": "r"}]})), "messages[1].role");
        assert_eq!(
            param_of(json!({"model": "m", "messages": [user, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]})),
            "messages[1].tool_calls[0].id"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": [user, {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "[1"}}]}]})),
            "messages[1].tool_calls[0].arguments"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": [user], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}})),
            "tool_choice"
        );
        assert_eq!(param_of(json!({"model": "m", "messages": [user], "tools": [{"type": "function", "function": {"name": JSON_TOOL}}]})), "tools");
        let schema = json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}});
        assert_eq!(param_of(json!({"model": "m", "messages": [user], "response_format": schema, "thinking": {"type": "enabled", "budget_tokens": 1024}})), "response_format");
        let array_schema = json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "array"}}});
        assert_eq!(param_of(json!({"model": "m", "messages": [user], "response_format": array_schema})), "response_format.json_schema.schema.type");
        assert_eq!(param_of(json!({"model": "m", "messages": [user], "temperature": "hot"})), "temperature");
        assert_eq!(param_of(json!({"model": "m", "messages": [user], "stop": [1]})), "stop");
    }

    #[test]
    fn odd_shapes_never_panic() {
        let odd = [
            json!({"role": "user", "content": {"weird": true}}),
            json!({"role": "user", "content": [null, 5]}),
            json!({"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}),
            json!({"role": "assistant", "tool_calls": "nope"}),
            json!({"role": "assistant", "tool_calls": [{"id": "t"}]}),
            json!({"role": "assistant", "tool_calls": [{"id": "t", "function": {"arguments": 5}}]}),
            json!({"role": "tool", "tool_call_id": 5, "content": "x"}),
            json!({"role": "tool", "tool_call_id": "t", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}),
        ];
        for message in odd {
            let r = request(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, message]}));
            let _ = chat_request(&config(), &route(), &r, "k");
        }
    }

    // ----- response -----

    #[test]
    fn response_with_text_thinking_tools_and_cached_usage() {
        let body = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xx"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Oslo"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50, "output_tokens": 30}
        });
        let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["id"], "msg_01");
        assert_eq!(t.body["object"], "chat.completion");
        assert_eq!(t.body["created"], 1700000000);
        assert_eq!(t.body["model"], "claude-sonnet-4-5-20250929");
        let choice = &t.body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["logprobs"], Value::Null);
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(choice["message"]["reasoning_content"], "Two cities.");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([
                {"id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ])
        );
        // Cached tokens are not double counted: 100 fresh + 1000 read + 50 written.
        let usage = t.usage.unwrap();
        assert_eq!(usage, Usage::from_parts(100, 1000, 50, 30, 0));
        assert_eq!(t.body["usage"]["prompt_tokens"], 1150);
        assert_eq!(t.body["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
        assert_eq!(t.body["usage"]["total_tokens"], 1180);
        assert_eq!(t.raw_usage, Some(body["usage"].clone()));
    }

    #[test]
    fn finish_reasons_and_json_tool_answer() {
        for (theirs, ours) in [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "content_filter"), ("pause_turn", "stop"), ("new_reason", "stop")] {
            let body = json!({"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": theirs, "usage": {"input_tokens": 1, "output_tokens": 1}});
            let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
            assert_eq!(t.body["choices"][0]["finish_reason"], ours, "{theirs}");
        }
        let body = json!({"id": "m", "content": [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"answer": "42"}}], "stop_reason": "tool_use"});
        let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["choices"][0]["message"], json!({"role": "assistant", "content": "{\"answer\":\"42\"}"}));
        assert_eq!(t.body["choices"][0]["finish_reason"], "stop");
        assert!(t.usage.is_none());
        // Only tool calls: content is null, as OpenAI sends it.
        let body = json!({"content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "stop_reason": "tool_use"});
        let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["id"], "chatcmpl-gw");
        assert_eq!(t.body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(t.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
    }

    #[test]
    fn malformed_responses_are_upstream_errors_without_body_text() {
        for body in [&b"not json secret-text"[..], b"{}", br#"{"content": "secret-text"}"#, br#"{"content": [{"type": "tool_use"}]}"#] {
            match chat_response(body, &ctx()) {
                Err(GatewayError::UpstreamInvalidResponse { provider, detail }) => {
                    assert_eq!(provider, "anthropic");
                    assert!(!detail.contains("secret-text"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn error_bodies() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"}}"#;
        assert_eq!(
            error_message(400, body),
            Some(ProviderErrorBody { message: "max_tokens: field required".into(), kind: Some("invalid_request_error".into()) })
        );
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        assert_eq!(error_message(529, body).unwrap().kind.as_deref(), Some("overloaded_error"));
        assert_eq!(error_message(500, b"<html>"), None);
        assert_eq!(error_message(500, br#"{"error":"x"}"#), None);
    }

    // ----- stream -----

    fn sse(events: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for event in events {
            let name = event["type"].as_str().unwrap();
            out.extend_from_slice(format!("event: {name}\ndata: {event}\n\n").as_bytes());
        }
        out
    }

    /// A realistic stream: thinking, text, two parallel tool calls whose argument deltas
    /// interleave, cached usage.
    fn parallel_tools_stream() -> Vec<u8> {
        sse(&[
            json!({"type": "message_start", "message": {"id": "msg_s1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Two cities."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking ü "}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "both."}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}}),
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":"}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "\"CET\"}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "content_block_stop", "index": 3}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 42}}),
            json!({"type": "message_stop"}),
        ])
    }

    fn run(chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, AnthropicStream) {
        drive(AnthropicStream::new(ctx()), chunks)
    }

    #[test]
    fn stream_with_parallel_tool_calls() {
        let bytes = parallel_tools_stream();
        let (out, result, decoder) = run(&[&bytes]);
        assert_eq!(result, Ok(()));
        for chunk in &out {
            assert_eq!(chunk["id"], "msg_s1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["model"], "claude-sonnet-4-5");
        }
        // Regression: the very first chunk carries the role.
        assert_eq!(deltas(&out), vec![
            json!({"role": "assistant", "content": ""}),
            json!({"reasoning_content": "Two cities."}),
            json!({"content": "Checking ü "}),
            json!({"content": "both."}),
            json!({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
            // Regression: interleaved argument deltas keep their own call's index.
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\":"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"CET\"}"}}]}),
            json!({}),
        ]);
        let finish = &out[out.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        // The usage chunk comes last, once, with cached tokens counted once.
        let last = out.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 1150);
        assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
        assert_eq!(last["usage"]["completion_tokens"], 42);
        assert_eq!(out.iter().filter(|c| c.get("usage").is_some()).count(), 1);
        assert_eq!(decoder.usage(), Some(Usage::from_parts(100, 1000, 50, 42, 0)));
        assert_eq!(
            decoder.raw_usage(),
            Some(json!({"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50, "output_tokens": 42}))
        );
    }

    #[test]
    fn stream_output_does_not_depend_on_chunk_boundaries() {
        let bytes = parallel_tools_stream();
        let (expected, result, _) = run(&[&bytes]);
        assert_eq!(result, Ok(()));
        for split in 1..bytes.len() {
            let (out, result, _) = run(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(result, Ok(()), "split at {split}");
            assert_eq!(out, expected, "split at {split}");
        }
        // Many random multi-way splits (deterministic LCG, no rand crate).
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..200 {
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let len = 1 + ((seed >> 33) % 48) as usize;
                let end = (at + len).min(bytes.len());
                chunks.push(&bytes[at..end]);
                at = end;
            }
            let (out, result, _) = run(&chunks);
            assert_eq!(result, Ok(()), "round {round}");
            assert_eq!(out, expected, "round {round}");
        }
    }

    #[test]
    fn stream_error_after_content_is_reported() {
        let mut bytes = sse(&[
            json!({"type": "message_start", "message": {"id": "msg_e", "model": "c", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
        ]);
        bytes.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        let (out, result, _) = run(&[&bytes]);
        assert_eq!(result, Err(StreamFault::Provider { kind: "overloaded_error".into() }));
        assert_eq!(deltas(&out).last().unwrap(), &json!({"content": "Hel"}));
        assert!(out.iter().all(|c| c["choices"][0]["finish_reason"].is_null()), "no finish before the error");
    }

    #[test]
    fn truncated_and_malformed_streams() {
        let bytes = parallel_tools_stream();
        let cut = bytes.len() - "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".len();
        let (out, result, _) = run(&[&bytes[..cut]]);
        assert_eq!(result, Err(StreamFault::Truncated));
        assert!(out.iter().all(|c| c.get("usage").is_none()));
        let (_, result, _) = run(&[b""]);
        assert_eq!(result, Err(StreamFault::Truncated));
        let (_, result, _) = run(&[b"data: {not json\n\n"]);
        assert!(matches!(result, Err(StreamFault::Malformed { .. })));
    }

    #[test]
    fn stream_json_tool_becomes_text_and_stop() {
        let bytes = sse(&[
            json!({"type": "message_start", "message": {"id": "msg_j", "model": "c", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_j", "name": JSON_TOOL, "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"answer\":"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "42}"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ]);
        let (out, result, _) = run(&[&bytes]);
        assert_eq!(result, Ok(()));
        assert_eq!(deltas(&out), vec![json!({"role": "assistant", "content": ""}), json!({"content": "{\"answer\":"}), json!({"content": "42}"}), json!({})]);
        assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn stream_finish_mapping_and_late_usage_fields() {
        let bytes = sse(&[
            json!({"type": "message_start", "message": {"id": "msg_m", "model": "c", "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}}),
            json!({"type": "some_future_event", "x": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                "usage": {"input_tokens": 10, "cache_read_input_tokens": 20, "cache_creation_input_tokens": null, "output_tokens": 7}}),
            json!({"type": "message_stop"}),
            json!({"type": "error", "error": {"type": "late"}}),
        ]);
        let (out, result, decoder) = run(&[&bytes]);
        assert_eq!(result, Ok(()), "events after message_stop are ignored");
        assert_eq!(deltas(&out)[1], json!({"content": "Hi"}));
        assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "length");
        assert_eq!(decoder.usage(), Some(Usage::from_parts(10, 20, 0, 7, 0)));
    }
}
