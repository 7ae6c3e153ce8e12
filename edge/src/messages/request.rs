//! An Anthropic Messages request, validated the way Anthropic validates it (errors name the field
//! as a dotted path such as `messages.0.content.1.source`), translated to the OpenAI
//! [`ChatRequest`] the pipeline runs, plus the [`MessagesMeta`] the response side needs.

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::openai::{ApiRequest, ChatRequest};

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
        system_message(system, "system", &mut messages)?;
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

/// A system prompt (top-level `system`, or a `system` turn): a string or a list of text blocks,
/// joined with newlines, appended as a system message unless empty.
fn system_message(system: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let text = match system {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let at = format!("{at}.{i}");
                match block_type(block, &at)? {
                    "text" => texts.push(string_field(block, "text", &at)?),
                    _ => return Err(invalid(&format!("{at}.type"), "Input should be 'text'")),
                }
            }
            texts.join("\n")
        }
        _ => return Err(invalid(at, "Input should be a valid string or a list of text blocks")),
    };
    if !text.is_empty() {
        out.push(json!({ "role": "system", "content": text }));
    }
    Ok(())
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
        Some("system") => system_message(content, &format!("{at}.content"), out),
        Some(_) => Err(invalid(&format!("{at}.role"), "Input should be 'user' or 'assistant'")),
        None => Err(invalid(&format!("{at}.role"), "Field required")),
    }
}

/// A block's `type`, after checking the block is an object.
fn block_type<'a>(block: &'a Value, at: &str) -> Result<&'a str, GatewayError> {
    if !block.is_object() {
        return Err(invalid(at, "Input should be a valid dictionary"));
    }
    string_field(block, "type", at)
}

/// A required string field of the object at `at` (errors name `{at}.{key}`).
fn string_field<'a>(block: &'a Value, key: &str, at: &str) -> Result<&'a str, GatewayError> {
    match block.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(&format!("{at}.{key}"), "Input should be a valid string")),
        None => Err(invalid(&format!("{at}.{key}"), "Field required")),
    }
}

/// A required string field that must not be empty (ids, names, sources).
fn required_string<'a>(block: &'a Value, key: &str, at: &str) -> Result<&'a str, GatewayError> {
    match string_field(block, key, at)? {
        "" => Err(invalid(&format!("{at}.{key}"), "String should have at least 1 character")),
        s => Ok(s),
    }
}

/// A required object field (tool inputs and JSON schemas).
fn object_field<'a>(block: &'a Value, key: &str, at: &str) -> Result<&'a Value, GatewayError> {
    match block.get(key) {
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(invalid(&format!("{at}.{key}"), "Input should be a valid dictionary")),
        None => Err(invalid(&format!("{at}.{key}"), "Field required")),
    }
}

/// An optional boolean field; `null` counts as absent.
fn optional_bool(block: &Value, key: &str, at: &str) -> Result<Option<bool>, GatewayError> {
    match block.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(&format!("{at}.{key}"), "Input should be a valid boolean")),
    }
}

/// The error for a `content` that is neither a string nor a list of blocks.
fn content_shape_error(at: &str) -> GatewayError {
    invalid(&format!("{at}.content"), "Input should be a valid string or a list of content blocks")
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
        Value::String(s) if !s.is_empty() => {
            out.push(json!({ "role": "user", "content": s }));
            return Ok(());
        }
        Value::Array(blocks) if !blocks.is_empty() => blocks,
        Value::String(_) | Value::Array(_) => {
            return Err(invalid(&format!("{at}.content"), "user messages must have non-empty content"))
        }
        _ => return Err(content_shape_error(at)),
    };
    let mut tool_messages = Vec::new();
    let mut tool_images = Vec::new();
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{j}");
        match block_type(block, &at)? {
            "text" => parts.push(json!({ "type": "text", "text": string_field(block, "text", &at)? })),
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
        _ => return Err(content_shape_error(at)),
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{j}");
        match block_type(block, &at)? {
            "text" => text.push_str(string_field(block, "text", &at)?),
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

fn tool_call(block: &Value, at: &str) -> Result<Value, GatewayError> {
    let id = required_string(block, "id", at)?;
    let name = required_string(block, "name", at)?;
    let input = object_field(block, "input", at)?;
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
                        "text" => Ok(json!({ "type": "text", "text": string_field(item, "text", &at)? })),
                        "image" => image_part(item, &at),
                        _ => Err(invalid(&format!("{at}.type"), "Input should be 'text' or 'image'")),
                    }
                })
                .collect(),
            _ => Err(content_shape_error(&source_at)),
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
        Some(Value::String(s)) => texts.push(s.as_str()),
        Some(Value::Array(items)) => {
            for (k, item) in items.iter().enumerate() {
                let at = format!("{at}.content.{k}");
                match block_type(item, &at)? {
                    "text" => texts.push(string_field(item, "text", &at)?),
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
        Some(_) => return Err(content_shape_error(at)),
    }
    let is_error = optional_bool(block, "is_error", at)?.unwrap_or(false);
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
        let schema = object_field(tool, "input_schema", &at)?.clone();
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
        if let Some(strict) = optional_bool(tool, "strict", &at)? {
            function.insert("strict".into(), json!(strict));
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
    let disable = optional_bool(choice, "disable_parallel_tool_use", "tool_choice")?;
    let parallel = disable.filter(|_| kind != "none").map(|disable| !disable);
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
    let schema = object_field(format, "schema", "output_config.format")?.clone();
    Ok(Some(json!({ "type": "json_schema", "json_schema": { "name": "output", "schema": schema } })))
}

#[cfg(test)]
mod tests;
