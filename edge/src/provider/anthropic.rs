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

use super::answer::{self, assistant_message};
use super::call::{ProviderErrorBody, ResponseContext, Translated};
use super::chunk::ChunkWriter;
pub use super::content::JSON_TOOL;
use super::content::{self, invalid, pass_through, Image, PastToolCall, ResponseFormat, ToolChoice, JSON_OBJECT_INSTRUCTION};
use super::decode::{self, EventTranslator, FramedDecoder, Progress, StreamFault};
use super::turns::{self, Blocks};
use crate::config::{AnthropicConfig, ModelRoute};
use crate::error::GatewayError;
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, Usage};
use crate::sse::{SseDecoder, SseEvent};

/// Output cap sent when the client gives none (Anthropic requires one). Every current Claude
/// model accepts at least this many output tokens.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

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
    let messages = turns::turns::<AnthropicBlocks>(request, &indexes)?;
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

/// Anthropic's content blocks, for [`turns::turns`].
struct AnthropicBlocks;

impl Blocks for AnthropicBlocks {
    fn text(text: String) -> Value {
        json!({ "type": "text", "text": text })
    }

    fn image(image: Image, at: &str) -> Result<Value, GatewayError> {
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

    fn tool_call(call: PastToolCall) -> Value {
        json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments })
    }

    fn tool_result(id: &str, text: String) -> Value {
        let mut block = json!({ "type": "tool_result", "tool_use_id": id });
        // `content` is optional for Anthropic; an empty string is left out rather than sent.
        if !text.is_empty() {
            block["content"] = json!(text);
        }
        block
    }

    fn is_tool_result(block: &Value) -> bool {
        block.get("type").and_then(Value::as_str) == Some("tool_result")
    }
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
    let (client_tools, choice) = content::tools_beside_json_tool(request)?;
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
fn usage_of(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
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
    answer::finish_reason(stop_reason, FINISH, has_tool_calls)
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
    let choice = answer::choice(0, assistant_message(text, &reasoning, calls), finish);
    let (id, model) = (value.get("id").and_then(Value::as_str), value.get("model").and_then(Value::as_str));
    Ok(answer::completion(ctx, id, model, vec![choice], value.get("usage"), usage_of))
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

/// Anthropic's SSE stream as OpenAI chunks.
pub type AnthropicStream = FramedDecoder<SseDecoder, AnthropicEvents>;

/// Anthropic's stream events as OpenAI chunks. The content block `index` is the tool-call key,
/// so parallel tool calls keep distinct, stable OpenAI indexes whatever order their deltas come
/// in. The stream ends properly with `message_stop`; whatever follows it is ignored.
pub struct AnthropicEvents {
    writer: ChunkWriter,
    blocks: BTreeMap<u64, Block>,
    /// Complete at `message_stop`. The usage object is `message_start`'s, overwritten member by
    /// member by each `message_delta`'s cumulative counts.
    progress: Progress,
}

impl EventTranslator for AnthropicEvents {
    type Event = SseEvent;
    const USAGE: fn(&Value) -> Option<Usage> = usage_of;

    fn new(ctx: &ResponseContext) -> Self {
        AnthropicEvents { writer: ChunkWriter::new(ctx), blocks: BTreeMap::new(), progress: Progress::default() }
    }

    fn event(&mut self, event: &SseEvent, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        let data = decode::json_data(&event.data)?;
        let kind = data.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or_default();
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
                self.progress.complete = true;
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

    fn progress(&self) -> &Progress {
        &self.progress
    }
}

impl AnthropicEvents {
    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let Some(usage) = usage.and_then(Value::as_object) {
            if let Value::Object(raw) = self.progress.raw_usage.get_or_insert_with(|| Value::Object(Map::new())) {
                for (key, value) in usage.iter().filter(|(_, v)| !v.is_null()) {
                    raw.insert(key.clone(), value.clone());
                }
            }
        }
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

#[cfg(test)]
mod tests;
