//! The inbound Anthropic Messages API (`POST /v1/messages`), as pure translation.
//!
//! Clients written against the official Anthropic SDKs talk to the gateway unchanged; inside,
//! everything is OpenAI Chat Completions, so the request is routed to any provider. This module
//! has the three translations the route needs and nothing else (no I/O):
//!
//! - [`parse_messages_request`]: an Anthropic request, validated the way Anthropic validates it
//!   (errors name the field as a dotted path such as `messages.0.content.1.source`), becomes an
//!   OpenAI [`ChatRequest`] plus the [`MessagesMeta`] the response side needs.
//! - [`to_anthropic_message`]: an OpenAI `chat.completion` becomes an Anthropic `message`.
//! - [`AnthropicEventEncoder`]: the OpenAI `chat.completion.chunk` stream becomes Anthropic's
//!   stream events (`message_start`, content blocks, `message_delta`, `message_stop`).
//!
//! Errors use Anthropic's body (`{"type":"error","error":{"type","message"}}`) via
//! [`anthropic_error_body`].
//!
//! Wire formats follow Anthropic's API reference (Messages, Streaming Messages, Errors) and the
//! types of the official TypeScript SDK (`@anthropic-ai/sdk`, `resources/messages/messages.ts`,
//! and `lib/MessageStream.ts` for how it accumulates stream events).
//!
//! Deliberate limits, each answered with a clear `invalid_request_error` rather than silently
//! mistranslated: server tools (web search, code execution, ...), PDF documents, Files API
//! sources, and block types that only Anthropic's own servers produce. Thinking blocks sent back
//! by the client are dropped (only Anthropic can verify their signatures), and no thinking blocks
//! are produced (an Anthropic thinking block requires a signature the gateway cannot make).

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::openai::{ApiRequest, ChatRequest, Usage};

/// What the response side of `/v1/messages` needs to know about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagesMeta {
    /// The model name exactly as the client sent it, echoed in the response's `model`.
    pub model: String,
    /// The client asked for a stream of Anthropic events.
    pub stream: bool,
    /// Anthropic's `top_k`. OpenAI's API has no such parameter and rejects unknown ones, so it is
    /// not put into the [`ChatRequest`]; it is kept here for routes whose provider has it.
    pub top_k: Option<u64>,
}

/// Top-level request fields that are translated.
const TRANSLATED_FIELDS: [&str; 13] = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "stream",
    "output_config",
];

/// Top-level Anthropic fields accepted and ignored: they tune Anthropic's own service (caching,
/// tiers, regions, containers for server tools, extended thinking) and have no meaning for
/// another provider. Any other field is refused, as Anthropic refuses unknown fields.
const IGNORED_FIELDS: [&str; 9] = [
    "cache_control",
    "container",
    "diagnostics",
    "inference_geo",
    "service_tier",
    "speed",
    "thinking",
    "user_profile_id",
    "workspace_id",
];

/// Image media types Anthropic accepts for base64 image sources.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Block types that exist in Anthropic's API but cannot be routed to another provider.
const ANTHROPIC_ONLY_BLOCKS: [&str; 12] = [
    "search_result",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
    "tool_reference",
    "mcp_tool_use",
    "mcp_tool_result",
];

/// An `invalid_request_error` naming the field, in Anthropic's `path: message` style.
fn invalid(param: &str, message: impl std::fmt::Display) -> GatewayError {
    GatewayError::InvalidRequest { message: format!("{param}: {message}"), param: Some(param.to_string()) }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Parse and validate an Anthropic Messages request and translate it to an OpenAI chat request.
///
/// `model` stays the client's model name: routing happens on it like on any other request.
/// Streams always ask for the final usage chunk, because Anthropic's stream always reports usage.
pub fn parse_messages_request(body: &[u8]) -> Result<(ChatRequest, MessagesMeta), GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson { detail: e.to_string() })?;
    let Some(object) = value.as_object() else {
        return Err(GatewayError::InvalidRequest { message: "The request body must be a JSON object.".into(), param: None });
    };
    check_fields(object)?;

    let model = match object.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(Value::String(_)) => return Err(invalid("model", "String should have at least 1 character")),
        Some(_) => return Err(invalid("model", "Input should be a valid string")),
        None => return Err(invalid("model", "Field required")),
    };
    let max_tokens = match object.get("max_tokens") {
        None => return Err(invalid("max_tokens", "Field required")),
        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| invalid("max_tokens", "Input should be a positive integer"))?,
    };
    let stream = match present(object, "stream") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| invalid("stream", "Input should be a valid boolean"))?,
    };

    let mut messages = Vec::new();
    if let Some(system) = present(object, "system") {
        if let Some(text) = system_text(system, "system")? {
            messages.push(json!({ "role": "system", "content": text }));
        }
    }
    let list = match object.get("messages") {
        None => return Err(invalid("messages", "Field required")),
        Some(Value::Array(list)) if list.is_empty() => return Err(invalid("messages", "At least one message is required")),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid("messages", "Input should be a valid list")),
    };
    for (i, message) in list.iter().enumerate() {
        convert_message(message, &format!("messages.{i}"), &mut messages)?;
    }

    let mut rest = Map::new();
    rest.insert("max_tokens".into(), json!(max_tokens));
    for key in ["temperature", "top_p"] {
        if let Some(v) = present(object, key) {
            let n = v.as_f64().ok_or_else(|| invalid(key, "Input should be a valid number"))?;
            rest.insert(key.into(), json!(n));
        }
    }
    let top_k = match present(object, "top_k") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| invalid("top_k", "Input should be a non-negative integer"))?),
    };
    if let Some(stops) = stop_sequences(object)? {
        rest.insert("stop".into(), stops);
    }
    if let Some(user) = metadata_user(object)? {
        rest.insert("user".into(), json!(user));
    }
    let tools = tools(object)?;
    if !tools.is_empty() {
        let (choice, parallel) = tool_choice(object)?;
        rest.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = choice {
            rest.insert("tool_choice".into(), choice);
        }
        if parallel == Some(false) {
            rest.insert("parallel_tool_calls".into(), json!(false));
        }
    } else {
        // OpenAI refuses `tool_choice` and `parallel_tool_calls` without tools; still validate.
        tool_choice(object)?;
    }
    if let Some(format) = output_format(object)? {
        rest.insert("response_format".into(), format);
    }

    let request = ChatRequest {
        model: model.clone(),
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then(|| {
            let mut options = Map::new();
            options.insert("include_usage".into(), json!(true));
            options
        }),
        rest,
    };
    request.check()?;
    Ok((request, MessagesMeta { model, stream, top_k }))
}

/// A field's value when it is present and not `null` (Anthropic treats `null` as absent for
/// optional fields).
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

fn check_fields(object: &Map<String, Value>) -> Result<(), GatewayError> {
    match object.keys().find(|k| !TRANSLATED_FIELDS.contains(&k.as_str()) && !IGNORED_FIELDS.contains(&k.as_str())) {
        Some(key) => Err(invalid(key, "Extra inputs are not permitted")),
        None => Ok(()),
    }
}

/// `system`: a string or a list of text blocks, joined with newlines; `None` when empty.
fn system_text(system: &Value, at: &str) -> Result<Option<String>, GatewayError> {
    let text = match system {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let at = format!("{at}.{i}");
                match block_type(block, &at)? {
                    "text" => texts.push(text_of_block(block, &at)?),
                    _ => return Err(invalid(&format!("{at}.type"), "Input should be 'text'")),
                }
            }
            texts.join("\n")
        }
        _ => return Err(invalid(at, "Input should be a valid string or a list of text blocks")),
    };
    Ok((!text.is_empty()).then_some(text))
}

/// One Anthropic message appended as one or more OpenAI messages.
fn convert_message(message: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let Some(object) = message.as_object() else {
        return Err(invalid(at, "Input should be a valid dictionary"));
    };
    let content = object.get("content").ok_or_else(|| invalid(&format!("{at}.content"), "Field required"))?;
    match object.get("role").and_then(Value::as_str) {
        Some("user") => user_message(content, at, out),
        Some("assistant") => assistant_message(content, at, out),
        // The SDK's `SystemMessageParam`: a system turn in place, text only.
        Some("system") => {
            if let Some(text) = system_text(content, &format!("{at}.content"))? {
                out.push(json!({ "role": "system", "content": text }));
            }
            Ok(())
        }
        Some(_) => Err(invalid(&format!("{at}.role"), "Input should be 'user' or 'assistant'")),
        None => Err(invalid(&format!("{at}.role"), "Field required")),
    }
}

/// A block's `type`, after checking the block is an object.
fn block_type<'a>(block: &'a Value, at: &str) -> Result<&'a str, GatewayError> {
    if !block.is_object() {
        return Err(invalid(at, "Input should be a valid dictionary"));
    }
    match block.get("type") {
        Some(Value::String(t)) => Ok(t),
        Some(_) => Err(invalid(&format!("{at}.type"), "Input should be a valid string")),
        None => Err(invalid(&format!("{at}.type"), "Field required")),
    }
}

fn text_of_block(block: &Value, at: &str) -> Result<String, GatewayError> {
    match block.get("text") {
        Some(Value::String(t)) => Ok(t.clone()),
        Some(_) => Err(invalid(&format!("{at}.text"), "Input should be a valid string")),
        None => Err(invalid(&format!("{at}.text"), "Field required")),
    }
}

/// The error for a block type that is not allowed where it appears.
fn unsupported_block(kind: &str, at: &str, role: &str) -> GatewayError {
    let param = format!("{at}.type");
    match kind {
        "text" | "image" | "document" | "tool_result" => {
            invalid(&param, format!("'{kind}' blocks are not allowed in {role} messages"))
        }
        "tool_use" => invalid(&param, "'tool_use' blocks may only appear in assistant messages"),
        k if ANTHROPIC_ONLY_BLOCKS.contains(&k) => invalid(
            &param,
            format!("'{k}' blocks belong to Anthropic's server-side features and are not supported by this gateway"),
        ),
        k => invalid(
            &param,
            format!(
                "Input tag '{k}' found using 'type' does not match any of the expected tags: 'text', 'image', \
                 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'"
            ),
        ),
    }
}

/// A user message: `tool_result` blocks become `tool` messages first (OpenAI wants tool results
/// right after the assistant's calls), then the remaining text and images one user message.
/// Images inside tool results go into that user message too: OpenAI tool messages take text only.
fn user_message(content: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let blocks = match content {
        Value::String(s) if s.is_empty() => return Err(invalid(&format!("{at}.content"), "user messages must have non-empty content")),
        Value::String(s) => {
            out.push(json!({ "role": "user", "content": s }));
            return Ok(());
        }
        Value::Array(blocks) if blocks.is_empty() => {
            return Err(invalid(&format!("{at}.content"), "user messages must have non-empty content"))
        }
        Value::Array(blocks) => blocks,
        _ => return Err(invalid(&format!("{at}.content"), "Input should be a valid string or a list of content blocks")),
    };
    let mut tool_messages = Vec::new();
    let mut tool_images = Vec::new();
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{j}");
        match block_type(block, &at)? {
            "text" => parts.push(json!({ "type": "text", "text": text_of_block(block, &at)? })),
            "image" => parts.push(image_part(block, &at)?),
            "document" => parts.extend(document_parts(block, &at)?),
            "tool_result" => {
                let (message, images) = tool_result(block, &at)?;
                tool_messages.push(message);
                tool_images.extend(images);
            }
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(other, &at, "user")),
        }
    }
    out.extend(tool_messages);
    tool_images.extend(parts);
    match tool_images.as_slice() {
        [] => {}
        [only] if only["type"] == "text" => out.push(json!({ "role": "user", "content": only["text"] })),
        _ => out.push(json!({ "role": "user", "content": tool_images })),
    }
    Ok(())
}

/// An assistant message: text blocks joined into `content`, `tool_use` blocks into `tool_calls`
/// (arguments as a JSON string, OpenAI's form). Thinking blocks are dropped; a message left with
/// nothing is skipped.
fn assistant_message(content: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let blocks = match content {
        Value::String(s) => {
            if !s.is_empty() {
                out.push(json!({ "role": "assistant", "content": s }));
            }
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(invalid(&format!("{at}.content"), "Input should be a valid string or a list of content blocks")),
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{j}");
        match block_type(block, &at)? {
            "text" => text.push_str(&text_of_block(block, &at)?),
            "tool_use" => calls.push(tool_call(block, &at)?),
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(other, &at, "assistant")),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut message = json!({ "role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) } });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    out.push(message);
    Ok(())
}

fn required_string<'a>(block: &'a Value, key: &str, at: &str) -> Result<&'a str, GatewayError> {
    match block.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(invalid(&format!("{at}.{key}"), "String should have at least 1 character")),
        Some(_) => Err(invalid(&format!("{at}.{key}"), "Input should be a valid string")),
        None => Err(invalid(&format!("{at}.{key}"), "Field required")),
    }
}

fn tool_call(block: &Value, at: &str) -> Result<Value, GatewayError> {
    let id = required_string(block, "id", at)?;
    let name = required_string(block, "name", at)?;
    let input = match block.get("input") {
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(invalid(&format!("{at}.input"), "Input should be a valid dictionary")),
        None => return Err(invalid(&format!("{at}.input"), "Field required")),
    };
    Ok(json!({ "id": id, "type": "function", "function": { "name": name, "arguments": input.to_string() } }))
}

/// An image block as an OpenAI `image_url` part: base64 sources become a data URL.
fn image_part(block: &Value, at: &str) -> Result<Value, GatewayError> {
    let at = format!("{at}.source");
    let source = block.get("source").ok_or_else(|| invalid(&at, "Field required"))?;
    let url = match block_type(source, &at)? {
        "base64" => {
            let media_type = required_string(source, "media_type", &at)?;
            if !IMAGE_TYPES.contains(&media_type) {
                return Err(invalid(
                    &format!("{at}.media_type"),
                    "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                ));
            }
            let data = required_string(source, "data", &at)?;
            format!("data:{media_type};base64,{data}")
        }
        "url" => required_string(source, "url", &at)?.to_string(),
        "file" => {
            return Err(invalid(
                &format!("{at}.type"),
                "Files API sources are not supported by this gateway; send the image as 'base64' or 'url'",
            ))
        }
        _ => return Err(invalid(&format!("{at}.type"), "Input should be 'base64' or 'url'")),
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// A document block. Plain-text and inline-content documents become text (and image) parts;
/// PDFs and file references have no portable form across providers and are refused.
fn document_parts(block: &Value, at: &str) -> Result<Vec<Value>, GatewayError> {
    let source_at = format!("{at}.source");
    let source = block.get("source").ok_or_else(|| invalid(&source_at, "Field required"))?;
    match block_type(source, &source_at)? {
        "text" => {
            let data = source.get("data").and_then(Value::as_str).ok_or_else(|| invalid(&format!("{source_at}.data"), "Input should be a valid string"))?;
            Ok(vec![json!({ "type": "text", "text": data })])
        }
        "content" => match source.get("content") {
            Some(Value::String(s)) => Ok(vec![json!({ "type": "text", "text": s })]),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(k, item)| {
                    let at = format!("{source_at}.content.{k}");
                    match block_type(item, &at)? {
                        "text" => Ok(json!({ "type": "text", "text": text_of_block(item, &at)? })),
                        "image" => image_part(item, &at),
                        _ => Err(invalid(&format!("{at}.type"), "Input should be 'text' or 'image'")),
                    }
                })
                .collect(),
            _ => Err(invalid(&format!("{source_at}.content"), "Input should be a valid string or a list of content blocks")),
        },
        _ => Err(invalid(
            &format!("{source_at}.type"),
            "PDF and file documents are not supported by this gateway; send plain-text documents or text blocks",
        )),
    }
}

/// A `tool_result` block as an OpenAI `tool` message (text only) plus any images it carried.
/// `is_error: true` is kept as an `Error: ` prefix, since OpenAI tool messages have no flag.
fn tool_result(block: &Value, at: &str) -> Result<(Value, Vec<Value>), GatewayError> {
    let id = required_string(block, "tool_use_id", at)?;
    let mut texts = Vec::new();
    let mut images = Vec::new();
    match block.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => texts.push(s.clone()),
        Some(Value::Array(items)) => {
            for (k, item) in items.iter().enumerate() {
                let at = format!("{at}.content.{k}");
                match block_type(item, &at)? {
                    "text" => texts.push(text_of_block(item, &at)?),
                    "image" => images.push(image_part(item, &at)?),
                    other => {
                        return Err(invalid(
                            &format!("{at}.type"),
                            format!("'{other}' blocks inside tool_result are not supported by this gateway; use text or image"),
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(invalid(&format!("{at}.content"), "Input should be a valid string or a list of content blocks")),
    }
    let is_error = match block.get("is_error") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid(&format!("{at}.is_error"), "Input should be a valid boolean")),
    };
    let text = texts.join("\n");
    let text = if is_error { format!("Error: {text}") } else { text };
    Ok((json!({ "role": "tool", "tool_call_id": id, "content": text }), images))
}

fn stop_sequences(object: &Map<String, Value>) -> Result<Option<Value>, GatewayError> {
    let Some(value) = present(object, "stop_sequences") else { return Ok(None) };
    let list = value.as_array().ok_or_else(|| invalid("stop_sequences", "Input should be a valid list"))?;
    for (i, s) in list.iter().enumerate() {
        if !s.is_string() {
            return Err(invalid(&format!("stop_sequences.{i}"), "Input should be a valid string"));
        }
    }
    Ok((!list.is_empty()).then(|| value.clone()))
}

fn metadata_user(object: &Map<String, Value>) -> Result<Option<String>, GatewayError> {
    let Some(metadata) = present(object, "metadata") else { return Ok(None) };
    let metadata = metadata.as_object().ok_or_else(|| invalid("metadata", "Input should be a valid dictionary"))?;
    if let Some(key) = metadata.keys().find(|k| *k != "user_id") {
        return Err(invalid(&format!("metadata.{key}"), "Extra inputs are not permitted"));
    }
    match metadata.get("user_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.is_empty()).then(|| s.clone())),
        Some(_) => Err(invalid("metadata.user_id", "Input should be a valid string")),
    }
}

/// `tools` as OpenAI function tools. Only custom tools (`type` absent, null or `custom`) can be
/// routed to another provider; Anthropic's server tools run on Anthropic's side.
fn tools(object: &Map<String, Value>) -> Result<Vec<Value>, GatewayError> {
    let Some(value) = present(object, "tools") else { return Ok(Vec::new()) };
    let list = value.as_array().ok_or_else(|| invalid("tools", "Input should be a valid list"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let at = format!("tools.{i}");
        if !tool.is_object() {
            return Err(invalid(&at, "Input should be a valid dictionary"));
        }
        match tool.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "custom" => {}
            Some(Value::String(t)) => {
                return Err(invalid(
                    &format!("{at}.type"),
                    format!(
                        "server tool '{t}' is not supported by this gateway; only custom tools (name, description, input_schema) can be used"
                    ),
                ))
            }
            Some(_) => return Err(invalid(&format!("{at}.type"), "Input should be a valid string")),
        }
        let name = required_string(tool, "name", &at)?;
        let schema = match tool.get("input_schema") {
            Some(s @ Value::Object(_)) => s.clone(),
            Some(_) => return Err(invalid(&format!("{at}.input_schema"), "Input should be a valid dictionary")),
            None => return Err(invalid(&format!("{at}.input_schema"), "Field required")),
        };
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        match tool.get("description") {
            None | Some(Value::Null) => {}
            Some(Value::String(d)) => {
                function.insert("description".into(), json!(d));
            }
            Some(_) => return Err(invalid(&format!("{at}.description"), "Input should be a valid string")),
        }
        function.insert("parameters".into(), schema);
        match tool.get("strict") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => {
                function.insert("strict".into(), json!(b));
            }
            Some(_) => return Err(invalid(&format!("{at}.strict"), "Input should be a valid boolean")),
        }
        out.push(json!({ "type": "function", "function": function }));
    }
    Ok(out)
}

/// `tool_choice` as OpenAI's `tool_choice`, and `parallel_tool_calls` when the client disabled
/// parallel use.
fn tool_choice(object: &Map<String, Value>) -> Result<(Option<Value>, Option<bool>), GatewayError> {
    let Some(choice) = present(object, "tool_choice") else { return Ok((None, None)) };
    let kind = block_type(choice, "tool_choice")?;
    let openai = match kind {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => json!({ "type": "function", "function": { "name": required_string(choice, "name", "tool_choice")? } }),
        _ => return Err(invalid("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")),
    };
    let parallel = match choice.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(disable)) if kind != "none" => Some(!disable),
        Some(Value::Bool(_)) => None,
        Some(_) => return Err(invalid("tool_choice.disable_parallel_tool_use", "Input should be a valid boolean")),
    };
    Ok((Some(openai), parallel))
}

/// `output_config.format` (structured outputs, a JSON schema) as OpenAI's `response_format`.
/// `strict` is left off: OpenAI's strict mode adds schema restrictions Anthropic's does not have,
/// and a schema valid for Anthropic must not fail upstream. `output_config.effort` is ignored.
fn output_format(object: &Map<String, Value>) -> Result<Option<Value>, GatewayError> {
    let Some(config) = present(object, "output_config") else { return Ok(None) };
    let config = config.as_object().ok_or_else(|| invalid("output_config", "Input should be a valid dictionary"))?;
    if let Some(key) = config.keys().find(|k| *k != "format" && *k != "effort") {
        return Err(invalid(&format!("output_config.{key}"), "Extra inputs are not permitted"));
    }
    let Some(format) = present(config, "format") else { return Ok(None) };
    if block_type(format, "output_config.format")? != "json_schema" {
        return Err(invalid("output_config.format.type", "Input should be 'json_schema'"));
    }
    let schema = match format.get("schema") {
        Some(s @ Value::Object(_)) => s.clone(),
        Some(_) => return Err(invalid("output_config.format.schema", "Input should be a valid dictionary")),
        None => return Err(invalid("output_config.format.schema", "Field required")),
    };
    Ok(Some(json!({ "type": "json_schema", "json_schema": { "name": "output", "schema": schema } })))
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// An Anthropic message id: the completion's id, prefixed with `msg_` unless it has it.
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else if id.is_empty() {
        "msg_gateway".to_string()
    } else {
        format!("msg_{id}")
    }
}

/// Anthropic's `usage`: its `input_tokens` excludes cache reads and writes, which it reports
/// separately, while the gateway's [`Usage::input_tokens`] (OpenAI's `prompt_tokens`) includes
/// them; subtracting here keeps `input + cache_read + cache_creation` equal to the real total.
fn anthropic_usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens.saturating_sub(usage.cached_input_tokens).saturating_sub(usage.cache_write_tokens),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    })
}

/// OpenAI `finish_reason` to Anthropic `stop_reason`. OpenAI does not say which stop sequence
/// ended the text (nor whether one did), so `stop` is always `end_turn`, never `stop_sequence`.
/// Tool calls under another finish reason still mean `tool_use`: Anthropic clients run tools on it.
fn stop_reason(finish: Option<&str>, has_tool_calls: bool, refused: bool) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if has_tool_calls => "tool_use",
        _ if refused => "refusal",
        _ => "end_turn",
    }
}

/// A message's text content: a string, or text parts joined (some compatible servers send parts).
fn completion_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// A tool call's arguments (OpenAI: a JSON string) as Anthropic's `input` object. Arguments that
/// are not a JSON object (a model may emit broken JSON) become `{}`: Anthropic's `input` must be
/// an object, and echoing unparsable model output into an error would help no one.
fn tool_input(arguments: Option<&Value>) -> Value {
    match arguments {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object).unwrap_or_else(|| json!({})),
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    }
}

/// Translate an OpenAI `chat.completion` into an Anthropic `message`.
///
/// `model` is the client's model name. `usage` is the gateway's normalised usage when it has it
/// (exact, including cache writes, which OpenAI's usage object cannot carry); otherwise the
/// completion's own `usage` is read. Only the first choice is used (Anthropic has no `n`).
/// `reasoning_content` is dropped: an Anthropic thinking block needs a signature.
pub fn to_anthropic_message(completion: &Value, model: &str, usage: Option<Usage>) -> Value {
    let choice = completion.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let text = completion_text(message.get("content"));
    if !text.is_empty() {
        content.push(json!({ "type": "text", "text": text }));
    }
    let refusal = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty());
    if let Some(refusal) = refusal {
        content.push(json!({ "type": "text", "text": refusal }));
    }
    let calls = message.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for call in calls {
        let function = call.get("function").unwrap_or(&Value::Null);
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or_default(),
            "name": function.get("name").and_then(Value::as_str).unwrap_or_default(),
            "input": tool_input(function.get("arguments")),
        }));
    }
    let usage = usage.or_else(|| completion.get("usage").and_then(Usage::from_openai)).unwrap_or_default();
    json!({
        "id": message_id(completion.get("id").and_then(Value::as_str).unwrap_or_default()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str), !calls.is_empty(), refusal.is_some()),
        "stop_sequence": null,
        "usage": anthropic_usage(&usage),
    })
}

// ---------------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------------

/// One content block of the answer, in order of first appearance.
#[derive(Debug)]
struct Item {
    kind: ItemKind,
    /// Text or argument JSON received but not yet sent.
    pending: String,
    /// The Anthropic block index, once `content_block_start` was sent.
    block: Option<usize>,
    closed: bool,
}

#[derive(Debug)]
enum ItemKind {
    Text,
    /// A tool call; `index` is OpenAI's tool-call index, `arguments` everything received so far.
    Tool { index: u64, id: String, name: String, arguments: String },
}

impl Item {
    /// Whether nothing more can belong to this block, so a later block may start. Text is done as
    /// soon as anything else appears; a tool call when its arguments are a whole JSON object
    /// (anything appended to a whole object would make it invalid).
    fn complete(&self) -> bool {
        match &self.kind {
            ItemKind::Text => true,
            ItemKind::Tool { arguments, .. } => {
                let trimmed = arguments.trim();
                trimmed.ends_with('}') && serde_json::from_str::<Value>(trimmed).is_ok()
            }
        }
    }
}

/// OpenAI chunk objects in, Anthropic stream events (SSE bytes) out.
///
/// Anthropic's blocks are strictly sequential: a block is started, receives deltas, and is
/// stopped before the next begins (the SDK appends each `content_block_start` to the message and
/// applies deltas to the block at `index`). OpenAI may interleave the argument deltas of parallel
/// tool calls. The encoder therefore keeps every text segment and tool call as an item in order
/// of first appearance and streams only the first unfinished one (the head) live; deltas for later
/// items are held back. The head is closed, and the next item started with what it has
/// accumulated, once something later exists and the head is complete (text: always; a tool call:
/// its arguments parse as a JSON object). At the finish reason, or at the end, all remaining items
/// are flushed and closed in order. In the usual sequential case everything streams live; with
/// interleaving, later calls arrive in bursts but every block is whole and correctly indexed.
///
/// `message_start` carries `input_tokens: 0`: OpenAI reports usage only at the end of the stream.
/// The real counts go into `message_delta.usage` (input, cache reads, cache writes, output), which
/// the SDK's stream accumulator copies into the final message.
#[derive(Debug)]
pub struct AnthropicEventEncoder {
    id: String,
    model: String,
    started: bool,
    done: bool,
    items: Vec<Item>,
    /// Position in `items` of the block being streamed.
    head: usize,
    next_block: usize,
    finish_reason: Option<String>,
    refused: bool,
    usage: Option<Usage>,
}

impl AnthropicEventEncoder {
    /// `model` is the client's model name; `id` the response id (`msg_` is prefixed if missing).
    pub fn new(model: &str, id: &str) -> Self {
        AnthropicEventEncoder {
            id: message_id(id),
            model: model.to_string(),
            started: false,
            done: false,
            items: Vec::new(),
            head: 0,
            next_block: 0,
            finish_reason: None,
            refused: false,
            usage: None,
        }
    }

    /// Translate one OpenAI `chat.completion.chunk` (including the final usage chunk).
    pub fn push(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()).and_then(Usage::from_openai) {
            self.usage = Some(usage);
        }
        let choices = chunk.get("choices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        // Anthropic has no `n`: only the first choice is an Anthropic message.
        for choice in choices.iter().filter(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0) {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                self.text(text);
            }
            if let Some(refusal) = delta.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                self.refused = true;
                self.text(refusal);
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
                self.tool_delta(call);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_string());
                self.flush(out);
            }
        }
        self.pump(out);
    }

    /// The stream ended: close open blocks and send `message_delta` and `message_stop`. `usage`
    /// is the gateway's normalised usage if it has it; otherwise the usage chunk seen, if any
    /// (without any, the counts are 0).
    pub fn finish(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.flush(out);
        let has_tools = self.items.iter().any(|i| matches!(i.kind, ItemKind::Tool { .. }));
        let reason = stop_reason(self.finish_reason.as_deref(), has_tools, self.refused);
        let usage = usage.or(self.usage).unwrap_or_default();
        event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": reason, "stop_sequence": null },
                "usage": anthropic_usage(&usage),
            }),
            out,
        );
        event("message_stop", &json!({ "type": "message_stop" }), out);
        self.done = true;
    }

    /// The stream failed after the 200: an `error` event (the SDK raises it as an `APIError`),
    /// after which nothing more is sent. Only the gateway's own message is used, never upstream
    /// text.
    pub fn error(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        // A provider's in-stream error type (a fixed label, not its message) is kept when it is
        // one of Anthropic's, e.g. `overloaded_error`, so clients can tell it apart.
        let kind = match error {
            GatewayError::UpstreamStreamFailed { kind, .. } => ANTHROPIC_ERROR_TYPES.iter().find(|t| **t == kind.as_str()).copied(),
            _ => None,
        }
        .unwrap_or_else(|| anthropic_error_type(error.status()));
        event("error", &json!({ "type": "error", "error": { "type": kind, "message": error.message() } }), out);
        self.done = true;
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": anthropic_usage(&Usage::default()),
        });
        event("message_start", &json!({ "type": "message_start", "message": message }), out);
        event("ping", &json!({ "type": "ping" }), out);
    }

    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        match self.items.last_mut() {
            Some(item) if matches!(item.kind, ItemKind::Text) && !item.closed => item.pending.push_str(text),
            _ => self.items.push(Item { kind: ItemKind::Text, pending: text.to_string(), block: None, closed: false }),
        }
    }

    fn tool_delta(&mut self, call: &Value) {
        let function = call.get("function").unwrap_or(&Value::Null);
        let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
        let name = function.get("name").and_then(Value::as_str).unwrap_or_default();
        let fragment = function.get("arguments").and_then(Value::as_str).unwrap_or_default();
        // A missing index means the call being streamed (compatible servers with one call).
        let last_tool = self.items.iter().rev().find_map(|i| match i.kind {
            ItemKind::Tool { index, .. } => Some(index),
            _ => None,
        });
        let index = call.get("index").and_then(Value::as_u64).or(last_tool).unwrap_or(0);
        let found = self.items.iter_mut().find(|i| matches!(i.kind, ItemKind::Tool { index: k, .. } if k == index));
        match found {
            // Closed only once its arguments were a whole object: a late fragment could only
            // break them, so it is dropped.
            Some(item) if item.closed => {}
            Some(item) => {
                let started = item.block.is_some();
                if let ItemKind::Tool { id: known_id, name: known_name, arguments, .. } = &mut item.kind {
                    if !started && known_id.is_empty() {
                        *known_id = id.to_string();
                    }
                    if !started && known_name.is_empty() {
                        *known_name = name.to_string();
                    }
                    arguments.push_str(fragment);
                }
                item.pending.push_str(fragment);
            }
            None => self.items.push(Item {
                kind: ItemKind::Tool { index, id: id.to_string(), name: name.to_string(), arguments: fragment.to_string() },
                pending: fragment.to_string(),
                block: None,
                closed: false,
            }),
        }
    }

    /// Stream the head; move on while the head is complete and something follows it.
    fn pump(&mut self, out: &mut Vec<u8>) {
        while self.head < self.items.len() {
            self.send_head(out);
            let followed = self.head + 1 < self.items.len();
            if followed && self.items[self.head].complete() {
                self.close_head(out);
            } else {
                break;
            }
        }
    }

    /// Send and close every remaining item, in order.
    fn flush(&mut self, out: &mut Vec<u8>) {
        while self.head < self.items.len() {
            self.send_head(out);
            self.close_head(out);
        }
    }

    /// Start the head's block if needed and send what it has pending.
    fn send_head(&mut self, out: &mut Vec<u8>) {
        let next_block = self.next_block;
        let Some(item) = self.items.get_mut(self.head) else { return };
        let index = match item.block {
            Some(index) => index,
            None => {
                item.block = Some(next_block);
                self.next_block += 1;
                let content_block = match &mut item.kind {
                    ItemKind::Text => json!({ "type": "text", "text": "" }),
                    ItemKind::Tool { index, id, name, .. } => {
                        if id.is_empty() {
                            *id = format!("call_{index}");
                        }
                        json!({ "type": "tool_use", "id": id, "name": name, "input": {} })
                    }
                };
                event(
                    "content_block_start",
                    &json!({ "type": "content_block_start", "index": next_block, "content_block": content_block }),
                    out,
                );
                next_block
            }
        };
        if item.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut item.pending);
        let delta = match item.kind {
            ItemKind::Text => json!({ "type": "text_delta", "text": pending }),
            ItemKind::Tool { .. } => json!({ "type": "input_json_delta", "partial_json": pending }),
        };
        event("content_block_delta", &json!({ "type": "content_block_delta", "index": index, "delta": delta }), out);
    }

    fn close_head(&mut self, out: &mut Vec<u8>) {
        if let Some(item) = self.items.get_mut(self.head) {
            item.closed = true;
            if let Some(index) = item.block {
                event("content_block_stop", &json!({ "type": "content_block_stop", "index": index }), out);
            }
        }
        self.head += 1;
    }
}

/// One Anthropic SSE event: `event: <name>` and one `data:` line (serialised JSON has no newlines).
fn event(name: &str, data: &Value, out: &mut Vec<u8>) {
    crate::sse::encode(Some(name), &data.to_string(), out);
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Anthropic's error types.
const ANTHROPIC_ERROR_TYPES: [&str; 8] = [
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
];

/// Anthropic's error type for an HTTP status, per its Errors reference: other 4xx statuses are
/// `invalid_request_error`, other 5xx `api_error`.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The Anthropic error body for a gateway error, sent with `error.status()`.
///
/// For a client-caused upstream status whose OpenAI-style body the gateway forwards on its OpenAI
/// routes (it says what was wrong with the request), that message is used here too; every other
/// error uses the gateway's own message, which never holds upstream text or secrets.
pub fn anthropic_error_body(error: &GatewayError) -> Value {
    let forwarded = match error {
        GatewayError::UpstreamStatus { body: Some(body), .. } => {
            body.pointer("/error/message").and_then(Value::as_str).map(str::to_string)
        }
        _ => None,
    };
    json!({
        "type": "error",
        "error": {
            "type": anthropic_error_type(error.status()),
            "message": forwarded.unwrap_or_else(|| error.message()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::chunk::ChunkWriter;
    use crate::provider::ResponseContext;
    use crate::sse::SseDecoder;

    fn parse(body: Value) -> Result<(ChatRequest, MessagesMeta), GatewayError> {
        parse_messages_request(body.to_string().as_bytes())
    }

    fn param_of(err: &GatewayError) -> Option<&str> {
        match err {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    fn bad(body: Value) -> (String, String) {
        let err = parse(body).unwrap_err();
        assert_eq!(err.status(), 400);
        (param_of(&err).unwrap_or_default().to_string(), err.message())
    }

    fn base() -> Value {
        json!({ "model": "claude-x", "max_tokens": 64, "messages": [{ "role": "user", "content": "hi" }] })
    }

    #[test]
    fn request_validation_names_the_field() {
        let mut b = base();
        b.as_object_mut().unwrap().remove("max_tokens");
        let (param, message) = bad(b);
        assert_eq!(param, "max_tokens");
        assert!(message.contains("Field required"), "{message}");

        for v in [json!(0), json!(-1), json!("10"), json!(1.5)] {
            let mut b = base();
            b["max_tokens"] = v;
            assert_eq!(bad(b).0, "max_tokens");
        }

        let mut b = base();
        b.as_object_mut().unwrap().remove("model");
        assert_eq!(bad(b).0, "model");

        let mut b = base();
        b["messages"] = json!([]);
        assert_eq!(bad(b).0, "messages");

        let mut b = base();
        b["messages"] = json!([{ "role": "user", "content": "a" }, { "role": "robot", "content": "b" }]);
        let (param, message) = bad(b);
        assert_eq!(param, "messages.1.role");
        assert!(message.contains("'user' or 'assistant'"), "{message}");

        let mut b = base();
        b["messages"][0]["content"] = json!([{ "type": "text", "text": "a" }, { "type": "video", "url": "x" }]);
        let (param, message) = bad(b);
        assert_eq!(param, "messages.0.content.1.type");
        assert!(message.contains("'video'"), "{message}");

        let mut b = base();
        b["messages"][0]["content"] = json!([{ "type": "text", "text": "a" }, { "type": "image" }]);
        assert_eq!(bad(b).0, "messages.0.content.1.source");

        let mut b = base();
        b["messages"][0]["content"] =
            json!([{ "type": "image", "source": { "type": "base64", "media_type": "image/bmp", "data": "AAAA" } }]);
        assert_eq!(bad(b).0, "messages.0.content.0.source.media_type");

        let mut b = base();
        b["messages"][0]["content"] = json!([{ "type": "document", "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBER" } }]);
        let (param, message) = bad(b);
        assert_eq!(param, "messages.0.content.0.source.type");
        assert!(message.contains("PDF"), "{message}");

        let mut b = base();
        b["tools"] = json!([{ "type": "web_search_20250305", "name": "web_search" }]);
        let (param, message) = bad(b);
        assert_eq!(param, "tools.0.type");
        assert!(message.contains("server tool"), "{message}");

        let mut b = base();
        b["tools"] = json!([{ "name": "f" }]);
        assert_eq!(bad(b).0, "tools.0.input_schema");

        let mut b = base();
        b["messages"][0]["content"] = json!([{ "type": "tool_use", "id": "t", "name": "f", "input": {} }]);
        assert_eq!(bad(b).0, "messages.0.content.0.type");

        let mut b = base();
        b["tool_choice"] = json!({ "type": "sometimes" });
        assert_eq!(bad(b).0, "tool_choice.type");

        let mut b = base();
        b["frequency_penalty"] = json!(1);
        let (param, message) = bad(b);
        assert_eq!(param, "frequency_penalty");
        assert!(message.contains("Extra inputs"), "{message}");

        let mut b = base();
        b["messages"][0]["content"] = json!("");
        assert_eq!(bad(b).0, "messages.0.content");

        assert!(matches!(parse_messages_request(b"{nope"), Err(GatewayError::InvalidJson { .. })));
        assert!(matches!(parse_messages_request(b"[1]"), Err(GatewayError::InvalidRequest { param: None, .. })));
    }

    #[test]
    fn bad_input_never_panics() {
        let samples = [
            json!({"model": "m", "max_tokens": 1, "messages": [null]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [null, 3]}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": "x"}]}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": {"a": 1}}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user"}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "system": 5}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "tools": [7]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "metadata": {"user_id": 3}}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "stop_sequences": [1]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "output_config": {"format": {"type": "json_schema"}}}),
        ];
        for sample in samples {
            let err = parse(sample.clone()).unwrap_err();
            assert!(param_of(&err).is_some(), "{sample} -> {err:?}");
        }
    }

    #[test]
    fn rich_request_round_trip() {
        let body = json!({
            "model": "claude-sonnet",
            "max_tokens": 1024,
            "system": [{ "type": "text", "text": "You are terse." }, { "type": "text", "text": "Use tools.", "cache_control": { "type": "ephemeral" } }],
            "messages": [
                { "role": "user", "content": [
                    { "type": "text", "text": "What is in these?" },
                    { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
                    { "type": "image", "source": { "type": "url", "url": "https://example.com/cat.jpg" } }
                ]},
                { "role": "assistant", "content": [
                    { "type": "thinking", "thinking": "hmm", "signature": "sig" },
                    { "type": "text", "text": "Let me look up both." },
                    { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } },
                    { "type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {} }
                ]},
                { "role": "user", "content": [
                    { "type": "text", "text": "Thanks, and summarise." },
                    { "type": "tool_result", "tool_use_id": "toolu_1", "content": [{ "type": "text", "text": "18C" }, { "type": "image", "source": { "type": "url", "url": "https://example.com/map.png" } }] },
                    { "type": "tool_result", "tool_use_id": "toolu_2", "content": "no clock", "is_error": true }
                ]},
                { "role": "assistant", "content": "Sure:" }
            ],
            "tools": [
                { "name": "get_weather", "description": "Weather for a city", "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } },
                { "type": "custom", "name": "get_time", "input_schema": { "type": "object" } }
            ],
            "tool_choice": { "type": "any", "disable_parallel_tool_use": true },
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "metadata": { "user_id": "u-42" },
            "thinking": { "type": "enabled", "budget_tokens": 2048 },
            "stream": true
        });
        let (request, meta) = parse(body).unwrap();
        assert_eq!(meta, MessagesMeta { model: "claude-sonnet".into(), stream: true, top_k: Some(40) });
        let got = serde_json::to_value(&request).unwrap();
        let expected = json!({
            "model": "claude-sonnet",
            "messages": [
                { "role": "system", "content": "You are terse.\nUse tools." },
                { "role": "user", "content": [
                    { "type": "text", "text": "What is in these?" },
                    { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
                    { "type": "image_url", "image_url": { "url": "https://example.com/cat.jpg" } }
                ]},
                { "role": "assistant", "content": "Let me look up both.", "tool_calls": [
                    { "id": "toolu_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                    { "id": "toolu_2", "type": "function", "function": { "name": "get_time", "arguments": "{}" } }
                ]},
                { "role": "tool", "tool_call_id": "toolu_1", "content": "18C" },
                { "role": "tool", "tool_call_id": "toolu_2", "content": "Error: no clock" },
                { "role": "user", "content": [
                    { "type": "image_url", "image_url": { "url": "https://example.com/map.png" } },
                    { "type": "text", "text": "Thanks, and summarise." }
                ]},
                { "role": "assistant", "content": "Sure:" }
            ],
            "stream": true,
            "stream_options": { "include_usage": true },
            "max_tokens": 1024,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": ["END"],
            "user": "u-42",
            "tools": [
                { "type": "function", "function": { "name": "get_weather", "description": "Weather for a city", "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } },
                { "type": "function", "function": { "name": "get_time", "parameters": { "type": "object" } } }
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false
        });
        assert_eq!(got, expected);

        // The translated request is valid input for every provider translator.
        let reparsed: ChatRequest = crate::openai::parse_request(serde_json::to_vec(&request).unwrap().as_slice()).unwrap();
        assert_eq!(crate::provider::content::tool_choice(&reparsed).unwrap(), Some(crate::provider::content::ToolChoice::Required));
        assert_eq!(crate::provider::content::tools(&reparsed).unwrap().len(), 2);
        for (i, m) in reparsed.messages.iter().enumerate() {
            if m["role"] == "user" {
                crate::provider::content::parts(m.get("content"), &format!("messages[{i}].content")).unwrap();
            }
        }
    }

    #[test]
    fn tool_choice_variants_and_plain_options() {
        let cases = [
            (json!({ "type": "auto" }), json!("auto"), None),
            (json!({ "type": "none" }), json!("none"), None),
            (json!({ "type": "tool", "name": "f", "disable_parallel_tool_use": false }), json!({ "type": "function", "function": { "name": "f" } }), Some(true)),
        ];
        for (choice, expected, parallel) in cases {
            let mut b = base();
            b["tools"] = json!([{ "name": "f", "input_schema": { "type": "object" } }]);
            b["tool_choice"] = choice;
            let (request, _) = parse(b).unwrap();
            assert_eq!(request.rest["tool_choice"], expected);
            assert_eq!(request.rest.get("parallel_tool_calls").and_then(Value::as_bool), parallel.filter(|p| !p));
        }
        // Without tools, OpenAI refuses tool_choice: it is dropped.
        let mut b = base();
        b["tool_choice"] = json!({ "type": "auto", "disable_parallel_tool_use": true });
        let (request, meta) = parse(b).unwrap();
        assert!(request.rest.get("tool_choice").is_none() && request.rest.get("parallel_tool_calls").is_none());
        assert!(!meta.stream && request.stream.is_none() && request.stream_options.is_none());
        assert_eq!(request.messages, vec![json!({ "role": "user", "content": "hi" })]);

        let mut b = base();
        b["output_config"] = json!({ "format": { "type": "json_schema", "schema": { "type": "object" } }, "effort": "low" });
        b["system"] = json!("Be brief.");
        b["messages"] = json!([
            { "role": "user", "content": [{ "type": "document", "source": { "type": "text", "media_type": "text/plain", "data": "doc body" } }, { "type": "text", "text": "summarise" }] }
        ]);
        let (request, _) = parse(b).unwrap();
        assert_eq!(request.rest["response_format"], json!({ "type": "json_schema", "json_schema": { "name": "output", "schema": { "type": "object" } } }));
        assert_eq!(request.messages[0], json!({ "role": "system", "content": "Be brief." }));
        assert_eq!(request.messages[1]["content"][0], json!({ "type": "text", "text": "doc body" }));
    }

    #[test]
    fn response_with_text_tools_and_cached_usage() {
        let completion = json!({
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "reasoning_content": "private",
                    "tool_calls": [
                        { "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                        { "id": "call_2", "type": "function", "function": { "name": "get_time", "arguments": "{broken" } }
                    ]
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": { "prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050, "prompt_tokens_details": { "cached_tokens": 800 } }
        });
        let message = to_anthropic_message(&completion, "claude-x", None);
        assert_eq!(
            message,
            json!({
                "id": "msg_chatcmpl-abc",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [
                    { "type": "text", "text": "Checking." },
                    { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                    { "type": "tool_use", "id": "call_2", "name": "get_time", "input": {} }
                ],
                "stop_reason": "tool_use",
                "stop_sequence": null,
                "usage": { "input_tokens": 200, "output_tokens": 50, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800 }
            })
        );

        // The gateway's normalised usage wins and carries cache writes: nothing counted twice.
        let usage = Usage::from_parts(10, 800, 190, 50, 0);
        let message = to_anthropic_message(&completion, "claude-x", Some(usage));
        let u = &message["usage"];
        assert_eq!(u["input_tokens"], 10);
        assert_eq!(u["cache_read_input_tokens"], 800);
        assert_eq!(u["cache_creation_input_tokens"], 190);
        let total = ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"].iter().map(|k| u[*k].as_u64().unwrap()).sum::<u64>();
        assert_eq!(total, usage.input_tokens);

        for (finish, expected) in [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")] {
            let c = json!({ "id": "msg_x", "choices": [{ "message": { "content": "a" }, "finish_reason": finish }] });
            let m = to_anthropic_message(&c, "m", None);
            assert_eq!(m["stop_reason"], expected);
            assert_eq!(m["id"], "msg_x");
            assert_eq!(m["usage"]["input_tokens"], 0);
        }
        // Garbage never panics and is still a message.
        let m = to_anthropic_message(&json!(42), "m", None);
        assert_eq!(m["content"], json!([]));
        assert_eq!(m["stop_reason"], "end_turn");
    }

    #[test]
    fn error_bodies_follow_anthropic_types() {
        let cases: [(u16, &str); 10] = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (415, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in cases {
            assert_eq!(anthropic_error_type(status), kind, "{status}");
        }
        let err = GatewayError::InvalidRequest { message: "max_tokens: Field required".into(), param: Some("max_tokens".into()) };
        assert_eq!(anthropic_error_body(&err), json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "max_tokens: Field required" } }));
        assert_eq!(anthropic_error_body(&GatewayError::InvalidCredential)["error"]["type"], "authentication_error");
        let upstream = GatewayError::UpstreamStatus { provider: "p".into(), status: 500, retry_after: None, body: None };
        assert_eq!(anthropic_error_body(&upstream)["error"]["type"], "api_error");
        let forwarded = GatewayError::UpstreamStatus {
            provider: "p".into(),
            status: 400,
            retry_after: None,
            body: Some(json!({ "error": { "message": "bad stop", "type": "invalid_request_error" } })),
        };
        assert_eq!(anthropic_error_body(&forwarded)["error"], json!({ "type": "invalid_request_error", "message": "bad stop" }));
    }

    // -- stream ----------------------------------------------------------------------------

    /// What a checked stream amounts to.
    #[derive(Debug, Default)]
    struct Outcome {
        blocks: Vec<Value>,
        stop_reason: Option<String>,
        usage: Option<Value>,
        error: Option<Value>,
        names: Vec<String>,
    }

    /// Decode Anthropic SSE bytes and check them against the documented order: `message_start`;
    /// then blocks, each `content_block_start` (indexes 0, 1, 2, ...) with deltas of its own kind
    /// for its own index only and a `content_block_stop` before the next begins; then one
    /// `message_delta` and `message_stop`, nothing after. `ping` may appear anywhere in between;
    /// an `error` ends the stream. Rebuilds the message the way the SDK's accumulator does.
    fn check(bytes: &[u8]) -> Outcome {
        check_with(bytes, true)
    }

    /// `whole_inputs`: every tool block's argument JSON must parse (false for streams cut short,
    /// whose last call may be incomplete; the SDK parses tool input leniently).
    fn check_with(bytes: &[u8], whole_inputs: bool) -> Outcome {
        let mut decoder = SseDecoder::new();
        let events = decoder.push(bytes);
        assert!(decoder.finish(), "stream ends on an event boundary");
        let mut outcome = Outcome::default();
        let mut started = false;
        let mut open: Option<usize> = None;
        let mut json_buf = String::new();
        let mut delta_seen = false;
        let mut stopped = false;
        for ev in events {
            let name = ev.event.clone().expect("every event is named");
            let data: Value = serde_json::from_str(&ev.data).expect("data is JSON");
            assert_eq!(data["type"], name.as_str(), "data.type matches the event name");
            assert!(!stopped && outcome.error.is_none(), "nothing after message_stop or error: {name}");
            outcome.names.push(name.clone());
            match name.as_str() {
                "error" => {
                    assert!(data["error"]["type"].is_string() && data["error"]["message"].is_string());
                    outcome.error = Some(data["error"].clone());
                }
                "message_start" => {
                    assert!(!started, "one message_start");
                    started = true;
                    let m = &data["message"];
                    assert_eq!(m["type"], "message");
                    assert_eq!(m["role"], "assistant");
                    assert_eq!(m["content"], json!([]));
                    assert!(m["stop_reason"].is_null());
                    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
                    assert!(m["usage"]["input_tokens"].is_u64() && m["usage"]["output_tokens"].is_u64());
                }
                "ping" => assert!(started),
                "content_block_start" => {
                    assert!(started && !delta_seen && open.is_none(), "blocks are sequential");
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(index, outcome.blocks.len(), "indexes increase by one from 0");
                    let block = data["content_block"].clone();
                    match block["type"].as_str() {
                        Some("text") => assert_eq!(block["text"], ""),
                        Some("tool_use") => {
                            assert!(block["id"].as_str().is_some_and(|s| !s.is_empty()));
                            assert!(block["name"].is_string());
                            assert_eq!(block["input"], json!({}));
                        }
                        other => panic!("unexpected block {other:?}"),
                    }
                    outcome.blocks.push(block);
                    open = Some(index);
                    json_buf.clear();
                }
                "content_block_delta" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(Some(index), open, "deltas go to the open block");
                    let block = &mut outcome.blocks[index];
                    match (block["type"].as_str(), data["delta"]["type"].as_str()) {
                        (Some("text"), Some("text_delta")) => {
                            let text = format!("{}{}", block["text"].as_str().unwrap(), data["delta"]["text"].as_str().unwrap());
                            block["text"] = json!(text);
                        }
                        (Some("tool_use"), Some("input_json_delta")) => json_buf.push_str(data["delta"]["partial_json"].as_str().unwrap()),
                        other => panic!("delta {other:?} does not fit the block"),
                    }
                }
                "content_block_stop" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(Some(index), open, "stop closes the open block");
                    if outcome.blocks[index]["type"] == "tool_use" && !json_buf.is_empty() {
                        match serde_json::from_str(&json_buf) {
                            Ok(input) => outcome.blocks[index]["input"] = input,
                            Err(e) => assert!(!whole_inputs, "tool input is not whole JSON: {e}"),
                        }
                    }
                    open = None;
                }
                "message_delta" => {
                    assert!(started && open.is_none() && !delta_seen, "one message_delta after all blocks");
                    delta_seen = true;
                    assert!(data["delta"]["stop_sequence"].is_null());
                    outcome.stop_reason = data["delta"]["stop_reason"].as_str().map(str::to_string);
                    assert!(outcome.stop_reason.is_some());
                    assert!(data["usage"]["output_tokens"].is_u64());
                    outcome.usage = Some(data["usage"].clone());
                }
                "message_stop" => {
                    assert!(delta_seen, "message_delta before message_stop");
                    stopped = true;
                }
                other => panic!("unknown event {other}"),
            }
        }
        assert!(stopped || outcome.error.is_some(), "the stream ends with message_stop or error");
        outcome
    }

    fn writer() -> ChunkWriter {
        ChunkWriter::new(&ResponseContext { id: "chatcmpl-1".into(), created: 1, model: "up".into() })
    }

    fn encode(chunks: &[Value], usage: Option<Usage>) -> Vec<u8> {
        let mut encoder = AnthropicEventEncoder::new("claude-x", "chatcmpl-1");
        let mut out = Vec::new();
        for chunk in chunks {
            encoder.push(chunk, &mut out);
        }
        encoder.finish(usage, &mut out);
        out
    }

    #[test]
    fn text_stream_with_usage_chunk() {
        let mut w = writer();
        let mut chunks = Vec::new();
        w.start(0, &mut chunks);
        w.reasoning(0, "thinking...", &mut chunks);
        w.text(0, "Hello", &mut chunks);
        w.text(0, ", world", &mut chunks);
        w.finish(0, "stop", &mut chunks);
        w.usage(&Usage { cache_write_tokens: 0, ..Usage::from_openai(&json!({ "prompt_tokens": 30, "completion_tokens": 4, "prompt_tokens_details": { "cached_tokens": 20 } })).unwrap() }, &mut chunks);
        let out = check(&encode(&chunks, None));
        assert_eq!(out.blocks, vec![json!({ "type": "text", "text": "Hello, world" })]);
        assert_eq!(out.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(out.usage, Some(json!({ "input_tokens": 10, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 20 })));
        assert_eq!(out.names[..2], ["message_start".to_string(), "ping".to_string()]);

        // Usage passed to finish (the gateway's normalised one) wins over the chunk's.
        let out = check(&encode(&chunks, Some(Usage::from_parts(5, 20, 5, 4, 0))));
        assert_eq!(out.usage.unwrap()["cache_creation_input_tokens"], 5);
    }

    #[test]
    fn usage_inside_the_last_chunk_and_missing_usage() {
        let chunks = [
            json!({ "choices": [{ "index": 0, "delta": { "role": "assistant", "content": "ok" }, "finish_reason": null }] }),
            json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "length" }], "usage": { "prompt_tokens": 7, "completion_tokens": 1 } }),
        ];
        let out = check(&encode(&chunks, None));
        assert_eq!(out.stop_reason.as_deref(), Some("max_tokens"));
        assert_eq!(out.usage.unwrap()["input_tokens"], 7);
        let out = check(&encode(&chunks[..1], None));
        assert_eq!(out.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(out.usage.unwrap()["output_tokens"], 0);
    }

    #[test]
    fn empty_stream_is_a_valid_empty_message() {
        let out = check(&encode(&[], None));
        assert!(out.blocks.is_empty());
        assert_eq!(out.names, ["message_start", "ping", "message_delta", "message_stop"]);
    }

    #[test]
    fn sequential_and_interleaved_parallel_tool_calls() {
        // Sequential (OpenAI's usual order), written through the gateway's ChunkWriter.
        let mut w = writer();
        let mut chunks = Vec::new();
        w.text(0, "Checking both.", &mut chunks);
        w.tool_call_start(0, 1, "call_a", "get_weather", &mut chunks);
        w.tool_call_arguments(0, 1, "{\"city\":", &mut chunks);
        w.tool_call_arguments(0, 1, "\"Paris\"}", &mut chunks);
        w.tool_call_start(0, 2, "call_b", "get_time", &mut chunks);
        w.tool_call_arguments(0, 2, "{\"tz\":\"CET\"}", &mut chunks);
        w.finish(0, "tool_calls", &mut chunks);
        let expected = vec![
            json!({ "type": "text", "text": "Checking both." }),
            json!({ "type": "tool_use", "id": "call_a", "name": "get_weather", "input": { "city": "Paris" } }),
            json!({ "type": "tool_use", "id": "call_b", "name": "get_time", "input": { "tz": "CET" } }),
        ];
        let bytes = encode(&chunks, None);
        let out = check(&bytes);
        assert_eq!(out.blocks, expected);
        assert_eq!(out.stop_reason.as_deref(), Some("tool_use"));
        // The first call streamed live, fragment by fragment.
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(r#""partial_json":"{\"city\":""#), "{text}");

        // Interleaved fragments of two calls, then text after the calls.
        let mut w = writer();
        let mut chunks = Vec::new();
        w.tool_call_start(0, 1, "call_a", "get_weather", &mut chunks);
        w.tool_call_start(0, 2, "call_b", "get_time", &mut chunks);
        w.tool_call_arguments(0, 1, "{\"city\":", &mut chunks);
        w.tool_call_arguments(0, 2, "{\"tz\":", &mut chunks);
        w.tool_call_arguments(0, 1, "\"Paris\"}", &mut chunks);
        w.tool_call_arguments(0, 2, "\"CET\"}", &mut chunks);
        w.text(0, "Done.", &mut chunks);
        w.finish(0, "tool_calls", &mut chunks);
        w.usage(&Usage::from_parts(3, 0, 0, 9, 0), &mut chunks);
        let out = check(&encode(&chunks, None));
        assert_eq!(out.blocks[..], [expected[1].clone(), expected[2].clone(), json!({ "type": "text", "text": "Done." })]);
        assert_eq!(out.usage.unwrap()["output_tokens"], 9);

        // Same through every prefix: events already sent never need revising.
        for cut in 0..chunks.len() {
            let mut encoder = AnthropicEventEncoder::new("claude-x", "msg_1");
            let mut out = Vec::new();
            for chunk in &chunks[..cut] {
                encoder.push(chunk, &mut out);
            }
            encoder.finish(None, &mut out);
            let outcome = check_with(&out, false);
            assert!(outcome.blocks.len() <= 3);
        }
    }

    #[test]
    fn a_call_without_arguments_and_a_late_fragment() {
        let chunks = [
            json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [{ "index": 0, "id": "c0", "type": "function", "function": { "name": "ping", "arguments": "" } }] } }] }),
            json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [{ "index": 1, "id": "c1", "type": "function", "function": { "name": "f", "arguments": "{}" } }] } }] }),
            json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [{ "index": 1, "function": { "arguments": " " } }] } }] }),
            json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] }),
        ];
        let out = check(&encode(&chunks, None));
        assert_eq!(out.blocks.len(), 2);
        assert_eq!(out.blocks[0]["input"], json!({}));
        assert_eq!(out.stop_reason.as_deref(), Some("tool_use"), "tool calls mean tool_use whatever the finish reason");
    }

    #[test]
    fn error_event_mid_stream() {
        let mut encoder = AnthropicEventEncoder::new("claude-x", "chatcmpl-9");
        let mut out = Vec::new();
        encoder.push(&json!({ "choices": [{ "index": 0, "delta": { "content": "partial" } }] }), &mut out);
        encoder.error(&GatewayError::UpstreamStreamFailed { provider: "anthropic".into(), kind: "overloaded_error".into() }, &mut out);
        encoder.push(&json!({ "choices": [{ "index": 0, "delta": { "content": "more" } }] }), &mut out);
        encoder.finish(None, &mut out);
        let outcome = check(&out);
        assert_eq!(outcome.error.unwrap()["type"], "overloaded_error");
        assert_eq!(outcome.names.last().map(String::as_str), Some("error"));

        let mut encoder = AnthropicEventEncoder::new("claude-x", "chatcmpl-9");
        let mut out = Vec::new();
        encoder.error(&GatewayError::UpstreamStreamBroken { provider: "openai".into() }, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("event: error\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"));
        let outcome = check(&out);
        assert_eq!(outcome.error.unwrap()["type"], "api_error");
    }
}
