//! AWS Bedrock Runtime: Converse / ConverseStream for chat, InvokeModel (Amazon Titan Text
//! Embeddings V2) for embeddings, signed with SigV4 ([`sigv4`]); streams arrive in the AWS
//! event-stream binary framing ([`eventstream`]).
//!
//! Wire format from the Amazon Bedrock API Reference (`Converse`, `ConverseStream`, `Message`,
//! `ContentBlock`, `ToolResultBlock`, `ToolChoice`, `TokenUsage`, `MessageStopEvent`,
//! `ConverseStreamOutput`) and the Titan Text Embeddings V2 model parameters page.
//! Translation choices worth knowing:
//!
//! - **URL**: `POST {base_url}/model/{modelId}/converse` (or `/converse-stream`). The model id is
//!   percent-encoded as one path segment: ids contain `:` and inference-profile ARNs `/`.
//! - **Roles**: system and developer messages become `system: [{text}]`. `tool` results become
//!   `toolResult` blocks in a user message; consecutive same-role messages are merged, with
//!   `toolResult` blocks first (Claude on Bedrock requires it, as on Anthropic's API).
//! - **Images**: Converse takes image bytes only, so base64 data URLs become
//!   `{image: {format, source: {bytes}}}`; plain image URLs are refused with `InvalidRequest`.
//! - **tool_choice**: `auto` -> `{auto:{}}`, `required` -> `{any:{}}`, a function ->
//!   `{tool:{name}}`. Converse has no "none": the tools are left out. But Bedrock refuses
//!   `toolUse`/`toolResult` blocks in the history without a `toolConfig`, so when the history
//!   has them the tools stay (the client's, else one placeholder per tool name used earlier)
//!   with no `toolChoice`; the model could then still call one.
//! - **JSON mode**: Converse has no general JSON switch (`outputConfig.textFormat` exists but
//!   only for some models, with the schema as a string). `json_schema` is done with a forced
//!   tool named [`JSON_TOOL`] whose input schema is the client's schema; the response
//!   translators turn its input back into the message text. `json_object` appends an
//!   instruction to the system prompt.
//! - **Parameters**: `max_tokens`/`max_completion_tokens`, `temperature`, `top_p` and `stop` go
//!   in `inferenceConfig`; `top_k` and `thinking` go in `additionalModelRequestFields` (the
//!   Anthropic field names, merged with a client-given `additionalModelRequestFields`); the
//!   Converse fields `guardrailConfig`, `performanceConfig`, `requestMetadata` and
//!   `additionalModelResponseFieldPaths` pass through. `seed`, penalties, `logprobs`,
//!   `parallel_tool_calls` and tool `strict` have no Converse form and are dropped; `n > 1` is
//!   refused.
//! - **Usage**: Converse's `inputTokens` excludes `cacheReadInputTokens` and
//!   `cacheWriteInputTokens` (they are reported beside it, like Anthropic's), so usage is built
//!   with [`Usage::from_parts`]. Reasoning tokens are not reported apart: 0.
//! - **Embeddings**: Titan V2 (`InvokeModel`, `{inputText, dimensions?, normalize?}`) embeds one
//!   text per call, so a request with several inputs is refused rather than fanned out.

pub mod eventstream;
pub mod sigv4;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use self::eventstream::{Decoder, Message};
pub use self::sigv4::AwsCredentials;
use super::answer::{self, assistant_message, embeddings_list};
use super::call::{ProviderContext, ProviderErrorBody, ResponseContext, Translated};
use super::chunk::ChunkWriter;
pub use super::content::JSON_TOOL;
use super::content::{self, invalid, pass_through, Image, PastToolCall, ResponseFormat, ToolChoice, JSON_OBJECT_INSTRUCTION};
use super::decode::{EventTranslator, FramedDecoder, Progress, StreamFault};
use super::turns::{self, Blocks};
use super::url::percent_encode_segment;
use crate::config::{BedrockConfig, ModelRoute};
use crate::error::GatewayError;
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};

/// Top-level Converse request fields a client may send through unchanged.
const PASS_THROUGH: &[&str] = &["guardrailConfig", "performanceConfig", "requestMetadata", "additionalModelResponseFieldPaths"];

/// OpenAI-side parameters that go into `additionalModelRequestFields` under the same name
/// (Anthropic's names on Bedrock).
const MODEL_FIELDS: &[&str] = &["top_k", "thinking"];

/// Data-URL media type -> Converse `ImageBlock.format`.
const IMAGE_FORMATS: &[(&str, &str)] = &[("image/png", "png"), ("image/jpeg", "jpeg"), ("image/jpg", "jpeg"), ("image/gif", "gif"), ("image/webp", "webp")];

/// Converse `stopReason` -> OpenAI `finish_reason`.
const FINISH: &[(&str, &str)] = &[
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"),
    ("content_filtered", "content_filter"),
];

const PROVIDER: &str = "bedrock";
const SERVICE: &str = "bedrock";

fn bad_response(detail: &str) -> GatewayError {
    GatewayError::UpstreamInvalidResponse { provider: PROVIDER.into(), detail: detail.into() }
}

/// The configured secrets as AWS credentials.
pub fn credentials(config: &BedrockConfig, ctx: &ProviderContext<'_>) -> Result<AwsCredentials, GatewayError> {
    Ok(AwsCredentials {
        access_key_id: ctx.require(&config.access_key_id_secret)?,
        secret_access_key: ctx.require(&config.secret_access_key_secret)?,
        session_token: config.session_token_secret.as_deref().map(|n| ctx.require(n)).transpose()?,
    })
}

/// A signed JSON `POST {base_url}/model/{model}/{action}`.
fn signed_post(config: &BedrockConfig, model: &str, action: &str, body: &Value, creds: &AwsCredentials, now_ms: u64) -> OutboundRequest {
    let url = format!("{}/model/{}/{action}", config.base_url.trim_end_matches('/'), percent_encode_segment(model));
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if action != "converse-stream" {
        headers.push(("accept".to_string(), "application/json".to_string()));
    }
    let auth = sigv4::sign("POST", &url, &headers, &body, &config.region, SERVICE, creds, now_ms);
    headers.extend(auth);
    OutboundRequest { method: "POST", url, headers, body }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// The OpenAI chat request as a signed Converse (or ConverseStream) call.
pub fn chat_request(config: &BedrockConfig, route: &ModelRoute, request: &ChatRequest, creds: &AwsCredentials, now_ms: u64) -> Result<OutboundRequest, GatewayError> {
    let body = request_body(request)?;
    let action = if request.is_stream() { "converse-stream" } else { "converse" };
    Ok(signed_post(config, &route.upstream_model, action, &body, creds, now_ms))
}

/// The Converse JSON body (the model id is in the URL, not the body).
fn request_body(request: &ChatRequest) -> Result<Value, GatewayError> {
    if request.choices() > 1 {
        return Err(invalid("Bedrock models return one choice per request; 'n' must be 1.", "n"));
    }
    let (system, indexes) = content::split_system(request)?;
    let format = content::response_format(request)?;
    let messages = turns::turns::<ConverseBlocks>(request, &indexes)?;
    if messages.is_empty() {
        return Err(invalid("'messages' must contain at least one user or assistant message.", "messages"));
    }

    let mut body = Map::new();
    let history_tools = tool_names_in_history(&messages);
    body.insert("messages".into(), Value::Array(messages));
    let mut system: Vec<Value> = system.into_iter().filter(|s| !s.is_empty()).map(|text| json!({ "text": text })).collect();
    if format == ResponseFormat::JsonObject {
        system.push(json!({ "text": JSON_OBJECT_INSTRUCTION }));
    }
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    if let Some(inference) = inference_config(request)? {
        body.insert("inferenceConfig".into(), inference);
    }
    if let Some(tool_config) = tool_config(request, &format, history_tools)? {
        body.insert("toolConfig".into(), tool_config);
    }
    if let Some(fields) = model_fields(request)? {
        body.insert("additionalModelRequestFields".into(), fields);
    }
    pass_through(&request.rest, PASS_THROUGH, &mut body);
    Ok(Value::Object(body))
}

fn inference_config(request: &ChatRequest) -> Result<Option<Value>, GatewayError> {
    let mut config = Map::new();
    if let Some(max) = request.max_output_tokens() {
        config.insert("maxTokens".into(), json!(max));
    }
    if let Some(t) = content::number(request, "temperature")? {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = content::number(request, "top_p")? {
        config.insert("topP".into(), json!(p));
    }
    let stop = content::stop_sequences(request)?;
    if !stop.is_empty() {
        config.insert("stopSequences".into(), json!(stop));
    }
    Ok((!config.is_empty()).then_some(Value::Object(config)))
}

/// `additionalModelRequestFields`: the client's own object, plus `top_k` / `thinking`.
fn model_fields(request: &ChatRequest) -> Result<Option<Value>, GatewayError> {
    let mut fields = match request.rest.get("additionalModelRequestFields") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(invalid("'additionalModelRequestFields' must be an object.", "additionalModelRequestFields")),
    };
    pass_through(&request.rest, MODEL_FIELDS, &mut fields);
    Ok((!fields.is_empty()).then_some(Value::Object(fields)))
}

/// Converse's content blocks, for [`turns::turns`].
struct ConverseBlocks;

impl Blocks for ConverseBlocks {
    fn text(text: String) -> Value {
        json!({ "text": text })
    }

    fn image(image: Image, at: &str) -> Result<Value, GatewayError> {
        match image {
            Image::Url(_) => Err(invalid(
                format!("{at}: Bedrock models take images as bytes only; send the image as a data:<type>;base64,<data> URL."),
                at,
            )),
            Image::Base64 { media_type, data } => {
                let format = IMAGE_FORMATS.iter().find(|(m, _)| *m == media_type).map(|(_, f)| *f).ok_or_else(|| {
                    invalid(format!("{at}: image type '{media_type}' is not supported by Bedrock (use png, jpeg, gif or webp)."), at)
                })?;
                Ok(json!({ "image": { "format": format, "source": { "bytes": data } } }))
            }
        }
    }

    fn tool_call(call: PastToolCall) -> Value {
        json!({ "toolUse": { "toolUseId": call.id, "name": call.name, "input": call.arguments } })
    }

    /// OpenAI tool results are text; an empty one is sent with no content blocks, since
    /// Bedrock refuses blank text.
    fn tool_result(id: &str, text: String) -> Value {
        let content = if text.is_empty() { json!([]) } else { json!([{ "text": text }]) };
        json!({ "toolResult": { "toolUseId": id, "content": content } })
    }

    fn is_tool_result(block: &Value) -> bool {
        block.get("toolResult").is_some()
    }
}

/// Whether the history has `toolUse`/`toolResult` blocks, and the tool names it used.
fn tool_names_in_history(messages: &[Value]) -> Option<Vec<String>> {
    let mut any = false;
    let mut names: Vec<String> = Vec::new();
    for block in messages.iter().filter_map(|m| m.get("content").and_then(Value::as_array)).flatten() {
        if let Some(name) = block.pointer("/toolUse/name").and_then(Value::as_str) {
            any = true;
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        any |= block.get("toolResult").is_some();
    }
    any.then_some(names)
}

fn thinking_enabled(request: &ChatRequest) -> bool {
    let enabled = |v: Option<&Value>| v.and_then(|t| t.get("type")).and_then(Value::as_str).is_some_and(|t| t != "disabled");
    enabled(request.rest.get("thinking")) || enabled(request.rest.get("additionalModelRequestFields").and_then(|f| f.get("thinking")))
}

fn tool_spec(name: &str, description: Option<&str>, schema: &Value) -> Value {
    let mut spec = json!({ "name": name, "inputSchema": { "json": schema } });
    if let Some(description) = description {
        spec["description"] = json!(description);
    }
    json!({ "toolSpec": spec })
}

/// `toolConfig`, including the forced JSON tool for `json_schema` and the tools Bedrock needs
/// whenever the history has tool blocks. `history` is `Some(names used)` when it has them.
fn tool_config(request: &ChatRequest, format: &ResponseFormat, history: Option<Vec<String>>) -> Result<Option<Value>, GatewayError> {
    let (client_tools, choice) = content::tools_beside_json_tool(request)?;
    let all_client: Vec<Value> = client_tools.iter().map(|t| tool_spec(&t.name, t.description.as_deref(), &t.parameters)).collect();
    let mut tools = if choice == Some(ToolChoice::None) { Vec::new() } else { all_client.clone() };
    let mut bedrock_choice = match &choice {
        Some(ToolChoice::Auto) => Some(json!({ "auto": {} })),
        Some(ToolChoice::Required) => Some(json!({ "any": {} })),
        Some(ToolChoice::Function(name)) => Some(json!({ "tool": { "name": name } })),
        Some(ToolChoice::None) | None => None,
    };

    if let ResponseFormat::JsonSchema { name, schema, .. } = format {
        if thinking_enabled(request) {
            return Err(invalid("response_format json_schema cannot be combined with 'thinking' on Bedrock models.", "response_format"));
        }
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(invalid("Bedrock models need a json_schema whose root 'type' is 'object'.", "response_format.json_schema.schema.type"));
        }
        let description = format!("Give the final answer by calling this tool. Its input is the answer, as JSON matching the '{name}' schema.");
        tools.push(tool_spec(JSON_TOOL, Some(&description), schema));
        bedrock_choice = match (&choice, tools.len()) {
            // The client forced one of its own functions: that wins for this turn.
            (Some(ToolChoice::Function(_)), _) => bedrock_choice,
            (_, 1) => Some(json!({ "tool": { "name": JSON_TOOL } })),
            // Client tools too: the model must call one of them or answer in JSON.
            _ => Some(json!({ "any": {} })),
        };
    }

    if tools.is_empty() {
        let Some(names) = history else { return Ok(None) };
        // Bedrock refuses tool blocks in the history without a toolConfig.
        tools = if all_client.is_empty() {
            let names = if names.is_empty() { vec!["tool".to_string()] } else { names };
            names
                .iter()
                .map(|n| tool_spec(n, Some("A tool used earlier in this conversation."), &json!({ "type": "object", "properties": {} })))
                .collect()
        } else {
            all_client
        };
        bedrock_choice = None;
    }
    let mut config = json!({ "tools": tools });
    if let Some(choice) = bedrock_choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// Normalised usage from a Converse `TokenUsage` (whole response or stream `metadata`).
/// `inputTokens` there excludes the cache reads and writes reported beside it.
fn usage_of(usage: &Value) -> Option<Usage> {
    let object = usage.as_object()?;
    if !object.contains_key("inputTokens") && !object.contains_key("outputTokens") {
        return None;
    }
    let get = |key: &str| object.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage::from_parts(get("inputTokens"), get("cacheReadInputTokens"), get("cacheWriteInputTokens"), get("outputTokens"), 0))
}

/// A Converse stop reason as an OpenAI finish reason; `tool_use` caused only by the JSON tool
/// is a normal stop for the client.
fn finish_reason(stop_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    answer::finish_reason(stop_reason, FINISH, has_tool_calls)
}

/// A whole Converse response as an OpenAI `chat.completion`.
pub fn chat_response(body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("response body is not JSON"))?;
    let blocks = value
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_response("response has no output.message.content array"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            let name = tool.get("name").and_then(Value::as_str).ok_or_else(|| bad_response("toolUse block without a name"))?;
            let arguments = tool.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into());
            if name == JSON_TOOL {
                text.push_str(&arguments);
            } else {
                let id = tool.get("toolUseId").and_then(Value::as_str).unwrap_or_default();
                calls.push(json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } }));
            }
        } else if let Some(t) = block.pointer("/reasoningContent/reasoningText/text").and_then(Value::as_str) {
            reasoning.push_str(t);
        }
        // Redacted reasoning, images, citations, future block types: no OpenAI form.
    }
    let finish = finish_reason(value.get("stopReason").and_then(Value::as_str), !calls.is_empty());
    let choice = answer::choice(0, assistant_message(text, &reasoning, calls), finish);
    Ok(answer::completion(ctx, None, None, vec![choice], value.get("usage"), usage_of))
}

/// Bedrock's error body is `{"message": "..."}`; the error type travels in the
/// `x-amzn-errortype` header, which is not available here. Some errors spell it `Message`.
pub fn error_message(_status: u16, body: &[u8]) -> Option<ProviderErrorBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = value.get("message").or_else(|| value.get("Message")).and_then(Value::as_str)?.to_string();
    Some(ProviderErrorBody { message, kind: None })
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// What a content block index carries, from its `contentBlockStart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Tool,
    /// The forced JSON tool: its input deltas are the answer text.
    Json,
}

/// ConverseStream's event-stream as OpenAI chunks.
pub type BedrockStream = FramedDecoder<Decoder, BedrockEvents>;

/// ConverseStream's events as OpenAI chunks. `contentBlockIndex` is the tool-call key, so
/// parallel tool calls keep distinct, stable OpenAI indexes. The stream ends properly with
/// `messageStop`; the `metadata` event (usage) follows it and triggers the usage chunk.
pub struct BedrockEvents {
    writer: ChunkWriter,
    blocks: BTreeMap<u64, Block>,
    /// Complete at `messageStop`: after it only the usage can be missing, which is not worth
    /// failing a complete answer for.
    progress: Progress,
    /// The usage is settled (`metadata` after `messageStop`, or usage already known at
    /// `messageStop`): nothing more is read.
    done: bool,
}

impl EventTranslator for BedrockEvents {
    type Event = Message;
    const USAGE: fn(&Value) -> Option<Usage> = usage_of;

    fn new(ctx: &ResponseContext) -> Self {
        BedrockEvents { writer: ChunkWriter::new(ctx), blocks: BTreeMap::new(), progress: Progress::default(), done: false }
    }

    fn event(&mut self, message: &Message, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        match message.header_str(":message-type") {
            Some("event") => {}
            Some("exception") => {
                let kind = message.header_str(":exception-type").unwrap_or("exception");
                return Err(StreamFault::Provider { kind: kind.to_string() });
            }
            Some("error") => {
                let kind = message.header_str(":error-code").unwrap_or("error");
                return Err(StreamFault::Provider { kind: kind.to_string() });
            }
            // Message types AWS may add later.
            _ => return Ok(()),
        }
        let event = message.header_str(":event-type").unwrap_or_default().to_string();
        let data: Value = serde_json::from_slice(&message.payload).map_err(|_| StreamFault::Malformed { detail: "event payload is not JSON".into() })?;
        let index = data.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
        match event.as_str() {
            "messageStart" => self.writer.start(0, out),
            "contentBlockStart" => {
                if let Some(tool) = data.pointer("/start/toolUse") {
                    let str_of = |key: &str| tool.get(key).and_then(Value::as_str).unwrap_or_default();
                    if str_of("name") == JSON_TOOL {
                        self.blocks.insert(index, Block::Json);
                    } else {
                        self.writer.tool_call_start(0, index, str_of("toolUseId"), str_of("name"), out);
                        self.blocks.insert(index, Block::Tool);
                    }
                }
            }
            "contentBlockDelta" => self.delta(index, data.get("delta").unwrap_or(&Value::Null), out),
            "messageStop" => {
                self.progress.complete = true;
                let finish = finish_reason(data.get("stopReason").and_then(Value::as_str), self.writer.has_tool_calls(0));
                self.writer.finish(0, finish, out);
                // Usage that came early (Bedrock sends metadata after messageStop) goes out now.
                if let Some(usage) = self.usage() {
                    self.writer.usage(&usage, out);
                    self.done = true;
                }
            }
            "metadata" => {
                if let Some(usage) = data.get("usage").filter(|u| u.is_object()) {
                    self.progress.raw_usage = Some(usage.clone());
                }
                if self.progress.complete {
                    if let Some(usage) = self.usage() {
                        self.writer.usage(&usage, out);
                    }
                    self.done = true;
                }
            }
            // contentBlockStop and event types AWS may add later.
            _ => {}
        }
        Ok(())
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn closed(&self) -> bool {
        self.done
    }
}

impl BedrockEvents {
    fn delta(&mut self, index: u64, delta: &Value, out: &mut Vec<Value>) {
        if let Some(text) = delta.get("text").and_then(Value::as_str) {
            self.writer.text(0, text, out);
        } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
            // A delta for a block never started is treated as a tool call (the writer opens an
            // anonymous one) rather than dropped.
            match self.blocks.get(&index).copied().unwrap_or(Block::Tool) {
                Block::Tool => self.writer.tool_call_arguments(0, index, input, out),
                Block::Json => self.writer.text(0, input, out),
            }
        } else if let Some(text) = delta.pointer("/reasoningContent/text").and_then(Value::as_str) {
            self.writer.reasoning(0, text, out);
        }
        // Reasoning signatures and redacted reasoning have no OpenAI form.
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings (Amazon Titan Text Embeddings V2 through InvokeModel)
// ---------------------------------------------------------------------------------------------

/// The OpenAI embeddings request as a signed Titan `InvokeModel` call. Titan embeds one text
/// per call, so exactly one text input is accepted.
pub fn embeddings_request(config: &BedrockConfig, route: &ModelRoute, request: &EmbeddingsRequest, creds: &AwsCredentials, now_ms: u64) -> Result<OutboundRequest, GatewayError> {
    let inputs = request.inputs();
    let text = match inputs.as_slice() {
        [EmbeddingInput::Text(text)] => *text,
        [EmbeddingInput::Tokens(_)] => return Err(invalid("Bedrock Titan embeddings take text, not token arrays.", "input")),
        _ => {
            return Err(invalid(
                "Bedrock Titan embeddings take one input per request; send each text in its own request.",
                "input",
            ))
        }
    };
    let mut body = json!({ "inputText": text });
    if let Some(dimensions) = request.dimensions() {
        body["dimensions"] = json!(dimensions);
    }
    match request.rest.get("normalize") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => body["normalize"] = json!(b),
        Some(_) => return Err(invalid("'normalize' must be a boolean.", "normalize")),
    }
    Ok(signed_post(config, &route.upstream_model, "invoke", &body, creds, now_ms))
}

/// Titan's `{embedding: [...], inputTextTokenCount}` as an OpenAI embeddings `list`.
pub fn embeddings_response(request: &EmbeddingsRequest, body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("response body is not JSON"))?;
    let vector = value.get("embedding").ok_or_else(|| bad_response("response has no embedding list of numbers"))?;
    let data = answer::embedding_data(&[vector], request, bad_response)?;
    let tokens = value.get("inputTextTokenCount").and_then(Value::as_u64);
    let usage = tokens.map(|t| Usage::from_parts(t, 0, 0, 0, 0));
    let raw_usage = tokens.map(|t| json!({ "inputTextTokenCount": t }));
    Ok(embeddings_list(data, ctx, usage, raw_usage))
}


#[cfg(test)]
mod tests;
