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
use super::chunk::ChunkWriter;
use super::content::{self, Image, Part, ResponseFormat, ToolChoice};
use super::{ProviderErrorBody, ResponseContext, StreamDecoder, StreamFault, Translated};
use crate::config::{BedrockConfig, ModelRoute};
use crate::error::GatewayError;
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};

/// Name of the tool used to force JSON output for `response_format: json_schema`. Reserved:
/// client tools may not use it.
pub const JSON_TOOL: &str = "gateway_json_response";

/// Appended to the system prompt for `response_format: json_object`.
const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object only, with no text before or after it.";

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

fn invalid(message: impl Into<String>, param: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest { message: message.into(), param: Some(param.into()) }
}

fn bad_response(detail: &str) -> GatewayError {
    GatewayError::UpstreamInvalidResponse { provider: PROVIDER.into(), detail: detail.into() }
}

/// AWS credentials resolved from the configured secrets.
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

pub fn credentials(config: &BedrockConfig, ctx: &super::ProviderContext<'_>) -> Result<AwsCredentials, GatewayError> {
    Ok(AwsCredentials {
        access_key_id: ctx.require(&config.access_key_id_secret)?,
        secret_access_key: ctx.require(&config.secret_access_key_secret)?,
        session_token: config.session_token_secret.as_deref().map(|n| ctx.require(n)).transpose()?,
    })
}

/// A model id (or ARN) as one URL path segment: everything but RFC 3986 unreserved characters
/// percent-encoded, so `:` is `%3A` and `/` is `%2F`.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A signed JSON `POST {base_url}/model/{model}/{action}`.
fn signed_post(config: &BedrockConfig, model: &str, action: &str, body: &Value, creds: &AwsCredentials, now_ms: u64) -> OutboundRequest {
    let url = format!("{}/model/{}/{action}", config.base_url.trim_end_matches('/'), encode_segment(model));
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
    let messages = messages(request, &indexes)?;
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
    super::pass_through(&request.rest, PASS_THROUGH, &mut body);
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
    super::pass_through(&request.rest, MODEL_FIELDS, &mut fields);
    Ok((!fields.is_empty()).then_some(Value::Object(fields)))
}

/// One Converse message being built; consecutive same-role messages are merged into it.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// The non-system messages as alternating Converse messages.
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
            "function" => {
                let id = legacy_id.clone().ok_or_else(|| invalid(format!("{at} answers no earlier assistant function_call."), format!("{at}.role")))?;
                ("user", vec![result_block(&id, message, &at)?])
            }
            other => return Err(invalid(format!("{at}.role '{other}' is not supported here."), format!("{at}.role"))),
        };
        if blocks.is_empty() {
            if role == "user" {
                return Err(invalid(format!("{at}.content must not be empty."), format!("{at}.content")));
            }
            // An assistant turn with nothing in it: Bedrock refuses empty content, leave it out.
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
                turn.blocks.sort_by_key(|b| b.get("toolResult").is_none());
            }
            json!({ "role": turn.role, "content": turn.blocks })
        })
        .collect())
}

fn user_blocks(message: &Value, at: &str) -> Result<Vec<Value>, GatewayError> {
    let at = format!("{at}.content");
    let mut blocks = Vec::new();
    for (j, part) in content::parts(message.get("content"), &at)?.into_iter().enumerate() {
        match part {
            // Bedrock refuses blank text blocks; an empty part carries nothing.
            Part::Text(text) if text.is_empty() => {}
            Part::Text(text) => blocks.push(json!({ "text": text })),
            Part::Image(image) => blocks.push(image_block(image, &format!("{at}[{j}].image_url.url"))?),
        }
    }
    Ok(blocks)
}

fn image_block(image: Image, at: &str) -> Result<Value, GatewayError> {
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

/// An assistant message's text and tool calls (`toolUse` blocks, input as an object).
fn assistant_blocks(message: &Value, i: usize, at: &str, legacy_id: &mut Option<String>) -> Result<Vec<Value>, GatewayError> {
    let mut blocks = Vec::new();
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    if !text.is_empty() {
        blocks.push(json!({ "text": text }));
    }
    for call in content::identified_tool_calls(message, i, at, legacy_id)? {
        let id = call.id;
        blocks.push(json!({ "toolUse": { "toolUseId": id, "name": call.name, "input": call.arguments } }));
    }
    Ok(blocks)
}

fn tool_result(message: &Value, at: &str) -> Result<Value, GatewayError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid(format!("{at}.tool_call_id is required for tool messages."), format!("{at}.tool_call_id")))?;
    result_block(id, message, at)
}

/// A `toolResult` block. OpenAI tool results are text; an empty one is sent with no content
/// blocks, since Bedrock refuses blank text.
fn result_block(id: &str, message: &Value, at: &str) -> Result<Value, GatewayError> {
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    let content = if text.is_empty() { json!([]) } else { json!([{ "text": text }]) };
    Ok(json!({ "toolResult": { "toolUseId": id, "content": content } }))
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
    match stop_reason.map(|r| content::map_finish(r, FINISH)) {
        Some("tool_calls") if !has_tool_calls => "stop",
        Some(reason) => reason,
        None => "stop",
    }
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
    let message = super::assistant_message(text, &reasoning, calls);
    let raw_usage = value.get("usage").filter(|u| u.is_object()).cloned();
    let usage = raw_usage.as_ref().and_then(usage_of);
    let mut out = json!({
        "id": ctx.id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
    });
    if let Some(usage) = &usage {
        out["usage"] = usage.to_openai();
    }
    Ok(Translated { body: out, usage, raw_usage })
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

/// ConverseStream's event-stream as OpenAI chunks. `contentBlockIndex` is the tool-call key,
/// so parallel tool calls keep distinct, stable OpenAI indexes. The stream ends properly with
/// `messageStop`; the `metadata` event (usage) follows it and triggers the usage chunk.
pub struct BedrockStream {
    frames: Decoder,
    writer: ChunkWriter,
    blocks: BTreeMap<u64, Block>,
    raw_usage: Option<Value>,
    /// `messageStop` arrived: the stream ended properly.
    stopped: bool,
    /// `metadata` arrived after `messageStop`: nothing more is translated.
    done: bool,
}

impl BedrockStream {
    pub fn new(ctx: ResponseContext) -> Self {
        BedrockStream { frames: Decoder::new(), writer: ChunkWriter::new(&ctx), blocks: BTreeMap::new(), raw_usage: None, stopped: false, done: false }
    }

    fn message(&mut self, message: &Message, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if self.done {
            return Ok(());
        }
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
                self.stopped = true;
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
                    self.raw_usage = Some(usage.clone());
                }
                if self.stopped {
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

impl StreamDecoder for BedrockStream {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if self.done {
            return Ok(());
        }
        let messages = self.frames.push(bytes).map_err(|e| StreamFault::Malformed { detail: e.detail().into() })?;
        for message in &messages {
            self.message(message, out)?;
        }
        // Corrupt bytes after those messages: fail now, unless the stream already ended (as
        // when they arrive in a later chunk).
        match self.frames.take_error() {
            Some(e) if !self.done => Err(StreamFault::Malformed { detail: e.detail().into() }),
            _ => Ok(()),
        }
    }

    fn finish(&mut self, _out: &mut Vec<Value>) -> Result<(), StreamFault> {
        // After messageStop only the usage can be missing; that is not worth failing a
        // complete answer for.
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
        self.raw_usage.clone()
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
    let data = content::embedding_data(&[vector], request, bad_response)?;
    let tokens = value.get("inputTextTokenCount").and_then(Value::as_u64);
    let usage = tokens.map(|t| Usage::from_parts(t, 0, 0, 0, 0));
    let raw_usage = tokens.map(|t| json!({ "inputTextTokenCount": t }));
    Ok(super::embeddings_list(data, ctx, usage, raw_usage))
}


#[cfg(test)]
mod tests {
    use super::eventstream::encode_message;
    use super::*;
    use crate::provider::test_support::{deltas, drive};
    use crate::config::ModelKind;
    use crate::openai::parse_request;

    const NOW_MS: u64 = 1_440_938_160_000;

    fn config() -> BedrockConfig {
        BedrockConfig {
            region: "us-east-1".into(),
            base_url: "https://bedrock-runtime.us-east-1.amazonaws.com/".into(),
            access_key_id_secret: "AWS_KEY_ID".into(),
            secret_access_key_secret: "AWS_SECRET".into(),
            session_token_secret: None,
            timeout_ms: None,
        }
    }

    fn creds() -> AwsCredentials {
        AwsCredentials { access_key_id: "AKIDEXAMPLE".into(), secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(), session_token: Some("SESSION".into()) }
    }

    fn route() -> ModelRoute {
        ModelRoute { name: "claude".into(), provider: "bedrock".into(), upstream_model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(), kind: ModelKind::Chat, guard: None }
    }

    fn ctx() -> ResponseContext {
        ResponseContext { id: "chatcmpl-gw".into(), created: 1700000000, model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into() }
    }

    fn request(body: Value) -> ChatRequest {
        parse_request(body.to_string().as_bytes()).unwrap()
    }

    fn body_of(body: Value) -> Value {
        let out = chat_request(&config(), &route(), &request(body), &creds(), NOW_MS).unwrap();
        serde_json::from_slice(&out.body).unwrap()
    }

    fn param_of(body: Value) -> String {
        match chat_request(&config(), &route(), &request(body), &creds(), NOW_MS) {
            Err(GatewayError::InvalidRequest { param: Some(p), .. }) => p,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    fn header<'a>(out: &'a OutboundRequest, name: &str) -> Option<&'a str> {
        out.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
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
                        {"type": "text", "text": "Weather where this was taken?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4A"}}
                    ]},
                    {"role": "assistant", "content": "Checking both.", "tool_calls": [
                        {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "tooluse_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "tooluse_1", "content": "18C"},
                    {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "4C"}]},
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
                "seed": 7,
                "frequency_penalty": 0.1,
                "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
                "max_completion_tokens": 512,
                "stream": true,
                "stream_options": {"include_usage": true}
            })),
            &creds(),
            NOW_MS,
        )
        .unwrap();
        assert_eq!(out.method, "POST");
        assert_eq!(out.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream");
        assert_eq!(header(&out, "content-type"), Some("application/json"));
        assert_eq!(header(&out, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(header(&out, "x-amz-security-token"), Some("SESSION"));
        let auth = header(&out, "authorization").unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="));
        assert!(!auth.contains("wJalr"));
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        let expected = json!({
            "system": [{"text": "You are terse."}, {"text": "Use metric units."}, {"text": JSON_OBJECT_INSTRUCTION}],
            "messages": [
                {"role": "user", "content": [
                    {"text": "Weather where this was taken?"},
                    {"image": {"format": "png", "source": {"bytes": "iVBORw0K"}}},
                    {"image": {"format": "jpeg", "source": {"bytes": "/9j/4A"}}}
                ]},
                {"role": "assistant", "content": [
                    {"text": "Checking both."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather", "input": {"city": "Oslo"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}},
                    {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "4C"}]}},
                    {"text": "Thanks. Also compare."}
                ]}
            ],
            "inferenceConfig": {"maxTokens": 512, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END", "STOP"]},
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
                "toolChoice": {"any": {}}
            },
            "additionalModelRequestFields": {"top_k": 40},
            "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn minimal_request_and_the_signature_is_deterministic() {
        let r = request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        let mut no_token = creds();
        no_token.session_token = None;
        let a = chat_request(&config(), &route(), &r, &no_token, NOW_MS).unwrap();
        let b = chat_request(&config(), &route(), &r, &no_token, NOW_MS).unwrap();
        assert_eq!(a.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
        assert_eq!(header(&a, "accept"), Some("application/json"));
        assert_eq!(header(&a, "authorization"), header(&b, "authorization"));
        assert!(header(&a, "x-amz-security-token").is_none());
        assert!(header(&a, "authorization").unwrap().contains("SignedHeaders=accept;content-type;host;x-amz-date,"));
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body, json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}));
        // Inference profile ARNs keep their '/' inside the one path segment.
        let mut arn = route();
        arn.upstream_model = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0".into();
        let out = chat_request(&config(), &arn, &r, &no_token, NOW_MS).unwrap();
        assert!(out.url.ends_with("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"));
    }

    #[test]
    fn tool_choice_mapping_and_none() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let config_of = |c: Value| {
            body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": c}))["toolConfig"].clone()
        };
        assert_eq!(config_of(json!("auto"))["toolChoice"], json!({"auto": {}}));
        assert_eq!(config_of(json!("required"))["toolChoice"], json!({"any": {}}));
        assert_eq!(config_of(json!({"type": "function", "function": {"name": "f"}}))["toolChoice"], json!({"tool": {"name": "f"}}));
        assert_eq!(config_of(json!("auto"))["tools"][0]["toolSpec"]["inputSchema"]["json"], json!({"type": "object", "properties": {}}));
        // "none" without tool history: no toolConfig at all.
        assert_eq!(config_of(json!("none")), Value::Null);
        // "none" with tool history: Bedrock needs the toolConfig, so the tools stay, unforced.
        let history = json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "done"}
        ]);
        let body = body_of(json!({"model": "m", "messages": history, "tools": tools, "tool_choice": "none"}));
        assert_eq!(body["toolConfig"], json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}));
        // Tool history but no tools at all: a placeholder per tool name used.
        let body = body_of(json!({"model": "m", "messages": history}));
        assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], "lookup");
        assert!(body["toolConfig"].get("toolChoice").is_none());
        // Tool result without a toolUse in view (e.g. trimmed history): still a toolConfig.
        let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "t9", "content": ""}]}));
        assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], "tool");
        assert_eq!(body["messages"][0]["content"][0], json!({"toolResult": {"toolUseId": "t9", "content": []}}));
    }

    #[test]
    fn json_schema_forces_the_reserved_tool_and_model_fields_merge() {
        let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}});
        let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": true}}}));
        assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], JSON_TOOL);
        assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"], schema);
        assert_eq!(body["toolConfig"]["toolChoice"], json!({"tool": {"name": JSON_TOOL}}));
        assert!(body.get("system").is_none());
        let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}}));
        assert_eq!(body["toolConfig"]["tools"].as_array().unwrap().len(), 2);
        assert_eq!(body["toolConfig"]["toolChoice"], json!({"any": {}}));
        let body = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "additionalModelRequestFields": {"foo": 1}, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "performanceConfig": {"latency": "optimized"}}));
        assert_eq!(body["additionalModelRequestFields"], json!({"foo": 1, "thinking": {"type": "enabled", "budget_tokens": 1024}}));
        assert_eq!(body["performanceConfig"], json!({"latency": "optimized"}));
    }

    #[test]
    fn consecutive_same_role_messages_merge_and_legacy_functions_work() {
        let body = body_of(json!({"model": "m", "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "function", "name": "f", "content": "done"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "ok"}
        ]}));
        assert_eq!(body["messages"], json!([
            {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_legacy_2", "name": "f", "input": {}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "call_legacy_2", "content": [{"text": "done"}]}}]},
            {"role": "assistant", "content": [{"text": "ok"}]}
        ]));
    }

    #[test]
    fn bad_input_is_an_invalid_request_naming_the_field() {
        let user = json!({"role": "user", "content": "x"});
        assert_eq!(param_of(json!({"model": "m", "n": 2, "messages": [user]})), "n");
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "system", "content": "only"}]})), "messages");
        assert_eq!(
            param_of(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://img.example/a.jpg"}}]}]})),
            "messages[0].content[0].image_url.url"
        );
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
        assert_eq!(param_of(json!({"model": "m", "messages": [user], "additionalModelRequestFields": 3})), "additionalModelRequestFields");
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
            let _ = chat_request(&config(), &route(), &r, &creds(), NOW_MS);
        }
    }

    // ----- response -----

    #[test]
    fn response_with_text_reasoning_tools_and_cached_usage() {
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Two cities.", "signature": "sig"}}},
                {"reasoningContent": {"redactedContent": "eHg="}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}}},
                {"toolUse": {"toolUseId": "tooluse_b", "name": "get_weather", "input": {"city": "Oslo"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 100, "outputTokens": 30, "totalTokens": 1180, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 50},
            "metrics": {"latencyMs": 812}
        });
        let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["id"], "chatcmpl-gw");
        assert_eq!(t.body["object"], "chat.completion");
        assert_eq!(t.body["created"], 1700000000);
        assert_eq!(t.body["model"], "anthropic.claude-3-5-sonnet-20240620-v1:0");
        let choice = &t.body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["logprobs"], Value::Null);
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(choice["message"]["reasoning_content"], "Two cities.");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([
                {"id": "tooluse_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "tooluse_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ])
        );
        // Cache tokens are reported beside inputTokens: 100 fresh + 1000 read + 50 written.
        assert_eq!(t.usage, Some(Usage::from_parts(100, 1000, 50, 30, 0)));
        assert_eq!(t.body["usage"]["prompt_tokens"], 1150);
        assert_eq!(t.body["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
        assert_eq!(t.body["usage"]["total_tokens"], 1180);
        assert_eq!(t.raw_usage, Some(body["usage"].clone()));
    }

    #[test]
    fn finish_reasons_and_json_tool_answer() {
        for (theirs, ours) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
            ("new_reason", "stop"),
        ] {
            let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": theirs, "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}});
            let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
            assert_eq!(t.body["choices"][0]["finish_reason"], ours, "{theirs}");
        }
        let body = json!({"output": {"message": {"content": [{"toolUse": {"toolUseId": "t", "name": JSON_TOOL, "input": {"answer": "42"}}}]}}, "stopReason": "tool_use"});
        let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["choices"][0]["message"], json!({"role": "assistant", "content": "{\"answer\":\"42\"}"}));
        assert_eq!(t.body["choices"][0]["finish_reason"], "stop");
        assert!(t.usage.is_none());
        let body = json!({"output": {"message": {"content": [{"toolUse": {"toolUseId": "t", "name": "f"}}]}}, "stopReason": "tool_use"});
        let t = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(t.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
    }

    #[test]
    fn malformed_responses_are_upstream_errors_without_body_text() {
        for body in [&b"not json secret-text"[..], b"{}", br#"{"output": {"message": {"content": "secret-text"}}}"#, br#"{"output": {"message": {"content": [{"toolUse": {}}]}}}"#] {
            match chat_response(body, &ctx()) {
                Err(GatewayError::UpstreamInvalidResponse { provider, detail }) => {
                    assert_eq!(provider, "bedrock");
                    assert!(!detail.contains("secret-text"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(400, br#"{"message":"The provided model identifier is invalid."}"#),
            Some(ProviderErrorBody { message: "The provided model identifier is invalid.".into(), kind: None })
        );
        assert_eq!(error_message(403, br#"{"Message":"User is not authorized"}"#).unwrap().message, "User is not authorized");
        assert_eq!(error_message(500, b"<html>"), None);
        assert_eq!(error_message(500, br#"{"error":"x"}"#), None);
    }

    // ----- stream -----

    fn event(kind: &str, payload: Value) -> Vec<u8> {
        encode_message(&[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], payload.to_string().as_bytes())
    }

    fn exception(kind: &str, message: &str) -> Vec<u8> {
        encode_message(
            &[(":exception-type", kind), (":content-type", "application/json"), (":message-type", "exception")],
            json!({ "message": message }).to_string().as_bytes(),
        )
    }

    /// A realistic stream: reasoning, text, two parallel tool calls whose input deltas
    /// interleave, cached usage in the trailing metadata.
    fn parallel_tools_stream() -> Vec<u8> {
        [
            event("messageStart", json!({"role": "assistant"})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Two cities."}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": "Checking ü "}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": "both."}})),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event("contentBlockStart", json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}})),
            event("contentBlockStart", json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_b", "name": "get_time"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{\"tz\":"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\":"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"Paris\"}"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "\"CET\"}"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 2})),
            event("contentBlockStop", json!({"contentBlockIndex": 3})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event("metadata", json!({"usage": {"inputTokens": 100, "outputTokens": 42, "totalTokens": 1192, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 50}, "metrics": {"latencyMs": 900}})),
        ]
        .concat()
    }

    fn run(chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, BedrockStream) {
        drive(BedrockStream::new(ctx()), chunks)
    }

    #[test]
    fn stream_with_parallel_tool_calls() {
        let bytes = parallel_tools_stream();
        let (out, result, decoder) = run(&[&bytes]);
        assert_eq!(result, Ok(()));
        for chunk in &out {
            assert_eq!(chunk["id"], "chatcmpl-gw");
            assert_eq!(chunk["object"], "chat.completion.chunk");
        }
        assert_eq!(deltas(&out), vec![
            json!({"role": "assistant", "content": ""}),
            json!({"reasoning_content": "Two cities."}),
            json!({"content": "Checking ü "}),
            json!({"content": "both."}),
            json!({"tool_calls": [{"index": 0, "id": "tooluse_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 1, "id": "tooluse_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\":"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"CET\"}"}}]}),
            json!({}),
        ]);
        assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
        let last = out.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 1150);
        assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
        assert_eq!(last["usage"]["completion_tokens"], 42);
        assert_eq!(out.iter().filter(|c| c.get("usage").is_some()).count(), 1);
        assert_eq!(decoder.usage(), Some(Usage::from_parts(100, 1000, 50, 42, 0)));
        assert_eq!(decoder.raw_usage().unwrap()["totalTokens"], 1192);
    }

    #[test]
    fn stream_output_does_not_depend_on_chunk_boundaries() {
        let bytes = parallel_tools_stream();
        let (expected, result, _) = run(&[&bytes]);
        assert_eq!(result, Ok(()));
        for split in 0..=bytes.len() {
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
                let len = 1 + ((seed >> 33) % 64) as usize;
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
    fn stream_exception_after_content_is_reported() {
        let bytes = [
            event("messageStart", json!({"role": "assistant"})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}})),
            exception("modelStreamErrorException", "secret-text"),
        ]
        .concat();
        let (out, result, _) = run(&[&bytes]);
        assert_eq!(result, Err(StreamFault::Provider { kind: "modelStreamErrorException".into() }));
        assert_eq!(deltas(&out).last().unwrap(), &json!({"content": "Hel"}));
        assert!(out.iter().all(|c| c["choices"][0]["finish_reason"].is_null()), "no finish before the error");
        let (_, result, _) = run(&[&exception("throttlingException", "slow down")]);
        assert_eq!(result, Err(StreamFault::Provider { kind: "throttlingException".into() }));
    }

    #[test]
    fn truncated_corrupt_and_malformed_streams() {
        let bytes = parallel_tools_stream();
        let metadata_len = event("metadata", json!({"usage": {"inputTokens": 100, "outputTokens": 42, "totalTokens": 1192, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 50}, "metrics": {"latencyMs": 900}})).len();
        let stop_len = event("messageStop", json!({"stopReason": "tool_use"})).len();
        // Cut before messageStop: truncated, no usage.
        let (out, result, _) = run(&[&bytes[..bytes.len() - metadata_len - stop_len]]);
        assert_eq!(result, Err(StreamFault::Truncated));
        assert!(out.iter().all(|c| c.get("usage").is_none()));
        // Cut inside the trailing metadata: the answer is complete, only usage is missing.
        let (out, result, _) = run(&[&bytes[..bytes.len() - 3]]);
        assert_eq!(result, Ok(()));
        assert!(out.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(run(&[b""]).1, Err(StreamFault::Truncated));
        // A flipped bit fails the CRC.
        let mut corrupt = bytes.clone();
        corrupt[30] ^= 0x20;
        assert!(matches!(run(&[&corrupt]).1, Err(StreamFault::Malformed { .. })));
        // A JSON error body where frames were expected.
        assert!(matches!(run(&[br#"{"message":"nope"}"#]).1, Err(StreamFault::Malformed { .. })));
        // A valid frame whose payload is not JSON.
        let bad = encode_message(&[(":event-type", "contentBlockDelta"), (":message-type", "event")], b"{oops");
        assert!(matches!(run(&[&bad]).1, Err(StreamFault::Malformed { .. })));
    }

    #[test]
    fn stream_json_tool_becomes_text_and_stop_and_early_metadata() {
        let bytes = [
            event("messageStart", json!({"role": "assistant"})),
            event("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"answer\":"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "42}"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            // Metadata before messageStop (not what Bedrock does, but handled): usage after finish.
            event("metadata", json!({"usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14}})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event("metadata", json!({"usage": {"inputTokens": 999, "outputTokens": 999}})),
            exception("internalServerException", "late"),
        ]
        .concat();
        let (out, result, decoder) = run(&[&bytes]);
        assert_eq!(result, Ok(()), "events after the end are ignored");
        assert_eq!(deltas(&out), vec![json!({"role": "assistant", "content": ""}), json!({"content": "{\"answer\":"}), json!({"content": "42}"}), json!({})]);
        assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(out.last().unwrap()["usage"]["total_tokens"], 14);
        assert_eq!(decoder.usage(), Some(Usage::from_parts(5, 0, 0, 9, 0)));
    }

    // ----- embeddings -----

    fn embeddings(body: Value) -> EmbeddingsRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn titan_embeddings_request_and_response() {
        let mut titan = route();
        titan.upstream_model = "amazon.titan-embed-text-v2:0".into();
        let r = embeddings(json!({"model": "e", "input": ["hello"], "dimensions": 256, "normalize": true}));
        let out = embeddings_request(&config(), &titan, &r, &creds(), NOW_MS).unwrap();
        assert_eq!(out.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke");
        assert!(header(&out, "authorization").is_some());
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body, json!({"inputText": "hello", "dimensions": 256, "normalize": true}));

        let response = json!({"embedding": [0.5, -1.0], "inputTextTokenCount": 3});
        let t = embeddings_response(&r, response.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(t.body["object"], "list");
        assert_eq!(t.body["data"], json!([{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}]));
        assert_eq!(t.body["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(t.usage.unwrap().input_tokens, 3);
        let b64 = embeddings(json!({"model": "e", "input": "hello", "encoding_format": "base64"}));
        let t = embeddings_response(&b64, response.to_string().as_bytes(), &ctx()).unwrap();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, t.body["data"][0]["embedding"].as_str().unwrap()).unwrap();
        assert_eq!(bytes, [0.5f32.to_le_bytes(), (-1.0f32).to_le_bytes()].concat());
        assert!(matches!(embeddings_response(&r, b"{\"embedding\": \"secret\"}", &ctx()), Err(GatewayError::UpstreamInvalidResponse { .. })));
    }

    #[test]
    fn titan_embeddings_refuse_several_inputs_and_tokens() {
        let param = |body: Value| match embeddings_request(&config(), &route(), &embeddings(body), &creds(), NOW_MS) {
            Err(GatewayError::InvalidRequest { param: Some(p), .. }) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(param(json!({"model": "e", "input": ["a", "b"]})), "input");
        assert_eq!(param(json!({"model": "e", "input": [1, 2, 3]})), "input");
        assert_eq!(param(json!({"model": "e", "input": "a", "normalize": "yes"})), "normalize");
    }
}
