//! Google Gemini: the Generative Language API (API key) and Vertex AI (OAuth access token).
//!
//! Both speak the same `GenerateContentRequest` / `GenerateContentResponse` JSON; only the URL
//! and the credential header differ:
//!
//! - Generative Language: `{base}/v1beta/models/{model}:generateContent` (streamed:
//!   `:streamGenerateContent?alt=sse`), key in `x-goog-api-key`.
//! - Vertex AI: `{base}/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:...`,
//!   token in `Authorization: Bearer`.
//!
//! Wire format from the Gemini API reference (ai.google.dev/api/generate-content, /api/caching
//! for `Content`, `Part`, `Tool`, `Schema`; /api/embeddings) and the Vertex AI REST reference
//! (`GenerateContentResponse`, `TextEmbeddingPredictionParams`). Translation choices:
//!
//! - **Roles**: system/developer messages become `systemInstruction`; `assistant` is `model`;
//!   tool results (role `tool`, legacy `function`) become `functionResponse` parts of a `user`
//!   turn. Gemini wants the function *name* there, so it is looked up from the earlier assistant
//!   `tool_calls` entry with the same `tool_call_id`. Consecutive turns of one role are merged
//!   (several tool results answer one model turn with several calls).
//! - **Tool call ids**: Gemini has none on older models, so calls get `call_<response>_<n>`
//!   (unique within and across responses); a part's own `id`, when present, is used instead.
//!   Ids are not sent back to Gemini (the field is optional and matching is by name/order).
//! - **Thought signatures**: Gemini 3 rejects a history whose `functionCall` parts lost their
//!   `thoughtSignature`. Like Google's own OpenAI-compatible endpoint, the signature travels
//!   on the OpenAI tool call as `extra_content.google.thought_signature` and is put back on
//!   the `functionCall` part when the client replays the conversation.
//! - **Schemas**: Gemini's `Schema` is an OpenAPI 3.0 subset, so tool parameters and
//!   `json_schema` response formats are rewritten to it ([`schema`]): local `$ref`s inlined,
//!   `oneOf` read as `anyOf`, `type: [x, "null"]` as `nullable`, unknown keywords
//!   (`additionalProperties`, `$schema`, `strict`, ...) dropped.
//! - **Images**: data URLs become `inlineData`. Gemini does not fetch arbitrary web URLs for
//!   `fileData`, so `http(s)` image URLs are refused with a clear error; `gs://` and Gemini
//!   Files API URIs are passed as `fileData`.
//! - **Thinking**: `thought: true` parts are returned as `reasoning_content`.
//! - **Usage**: `promptTokenCount` already *includes* `cachedContentTokenCount` (Gemini API
//!   reference, `UsageMetadata`), so cached tokens are not added again; `toolUsePromptTokenCount`
//!   is input too. Output is `candidatesTokenCount + thoughtsTokenCount` (thoughts are billed as
//!   output), reasoning is `thoughtsTokenCount`.
//! - **Embeddings**: Generative Language uses `batchEmbedContents`, which reports no token
//!   counts (usage 0 in the body, `None` to the pipeline). Vertex uses the `:predict` text
//!   embedding format, whose per-input `statistics.token_count` is summed.
//! - OpenAI parameters Gemini lacks (`logit_bias`, `logprobs`, `reasoning_effort`, `user`) are
//!   dropped; Gemini-specific ones may be passed through (see [`PASS_THROUGH`]).

use serde_json::{json, Map, Value};

use super::chunk::ChunkWriter;
use super::content::{self, Image, Part, ResponseFormat, ToolChoice};
use super::openai::percent_encode_segment;
use super::{pass_through, ProviderErrorBody, ResponseContext, StreamDecoder, StreamFault, Translated};
use crate::config::{GeminiApi, GeminiConfig, ModelRoute};
use crate::error::GatewayError;
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};
use crate::sse::SseDecoder;

const PROVIDER: &str = "gemini";

/// Top-level `GenerateContentRequest` fields a client may send through unchanged.
const PASS_THROUGH: &[&str] = &["safetySettings", "cachedContent", "labels"];

/// `GenerationConfig` fields a client may send through unchanged (top level of its request).
const GENERATION_PASS_THROUGH: &[&str] = &["thinkingConfig", "mediaResolution"];

/// `EmbedContentRequest` fields a client may send through (Generative Language only).
const EMBED_PASS_THROUGH: &[&str] = &["taskType", "title"];

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

/// Where Gemini Files API URIs live: the one kind of `https` URI `fileData` accepts.
const FILES_API_PREFIX: &str = "https://generativelanguage.googleapis.com/";

/// Candidate indexes above this are malformed (OpenAI's `n` is at most 128); it also keeps
/// per-choice state small whatever index the upstream sends.
const MAX_CANDIDATES: u64 = 128;

/// Nesting bound for schema rewriting (also stops `$ref` cycles).
const MAX_SCHEMA_DEPTH: usize = 32;

/// How many `$ref`s are inlined along one path: recursive types are cut off below this.
const MAX_REF_DEPTH: usize = 3;

/// Most schema nodes one rewrite may produce: inlining a recursive `$ref` that appears twice
/// per level would otherwise grow exponentially with the depth bound.
const MAX_SCHEMA_NODES: usize = 2_000;

fn invalid(message: impl Into<String>, param: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest { message: message.into(), param: Some(param.into()) }
}

fn bad_response(detail: &str) -> GatewayError {
    GatewayError::UpstreamInvalidResponse { provider: PROVIDER.into(), detail: detail.into() }
}

// ---------------------------------------------------------------------------------------------
// URLs and headers
// ---------------------------------------------------------------------------------------------

/// `{model resource}:{method}` for the configured API.
fn model_url(config: &GeminiConfig, model: &str, method: &str) -> String {
    match &config.api {
        GeminiApi::GenerativeLanguage { base_url, .. } => {
            format!("{}/v1beta/{}:{method}", base_url.trim_end_matches('/'), generative_language_model(model))
        }
        GeminiApi::Vertex { base_url, project, location, .. } => format!(
            "{}/v1/projects/{}/locations/{}/publishers/google/models/{}:{method}",
            base_url.trim_end_matches('/'),
            percent_encode_segment(project),
            percent_encode_segment(location),
            percent_encode_segment(model)
        ),
    }
}

/// The Generative Language resource name: `models/{m}`, or a `models/...`/`tunedModels/...`
/// name given whole; each segment percent-encoded.
fn generative_language_model(model: &str) -> String {
    let name = if model.starts_with("models/") || model.starts_with("tunedModels/") { model.to_string() } else { format!("models/{model}") };
    name.split('/').map(percent_encode_segment).collect::<Vec<_>>().join("/")
}

fn post(config: &GeminiConfig, url: String, body: &Value, credential: &str, stream: bool) -> OutboundRequest {
    let auth = match &config.api {
        GeminiApi::GenerativeLanguage { .. } => ("x-goog-api-key".to_string(), credential.to_string()),
        GeminiApi::Vertex { .. } => ("authorization".to_string(), format!("Bearer {credential}")),
    };
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("accept".to_string(), if stream { "text/event-stream" } else { "application/json" }.to_string()),
        auth,
    ];
    OutboundRequest { method: "POST", url, headers, body: serde_json::to_vec(body).unwrap_or_default() }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// The OpenAI chat request as a `generateContent` (or streamed) call.
pub fn chat_request(config: &GeminiConfig, route: &ModelRoute, request: &ChatRequest, credential: &str) -> Result<OutboundRequest, GatewayError> {
    let body = request_body(request)?;
    let stream = request.is_stream();
    let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
    Ok(post(config, model_url(config, &route.upstream_model, method), &body, credential, stream))
}

/// The `GenerateContentRequest` JSON body.
fn request_body(request: &ChatRequest) -> Result<Value, GatewayError> {
    let (system, indexes) = content::split_system(request)?;
    let contents = contents(request, &indexes)?;
    if contents.is_empty() {
        return Err(invalid("'messages' must contain at least one non-empty user or assistant message.", "messages"));
    }
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    let system: Vec<Value> = system.into_iter().filter(|s| !s.is_empty()).map(|text| json!({ "text": text })).collect();
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    tools_and_config(request, &mut body)?;
    let generation = generation_config(request)?;
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    pass_through(&request.rest, PASS_THROUGH, &mut body);
    Ok(Value::Object(body))
}

/// Append parts as a turn, merged into the previous turn when it has the same role (Gemini
/// wants user and model turns to alternate). Empty part lists add nothing.
fn push_turn(turns: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            if let Some(existing) = last.get_mut("parts").and_then(Value::as_array_mut) {
                existing.extend(parts);
                return;
            }
        }
    }
    turns.push(json!({ "role": role, "parts": parts }));
}

fn contents(request: &ChatRequest, indexes: &[usize]) -> Result<Vec<Value>, GatewayError> {
    let mut turns = Vec::new();
    for &i in indexes {
        let Some(message) = request.messages.get(i) else { continue };
        let at = format!("messages[{i}]");
        match message.get("role").and_then(Value::as_str) {
            Some("user") => push_turn(&mut turns, "user", user_parts(message.get("content"), &format!("{at}.content"))?),
            Some("assistant") => push_turn(&mut turns, "model", assistant_parts(message, &at)?),
            Some("tool") => push_turn(&mut turns, "user", vec![tool_response(request, i, message, &at)?]),
            Some("function") => push_turn(&mut turns, "user", vec![legacy_function_response(message, &at)?]),
            _ => return Err(invalid(format!("{at}.role is not supported here."), format!("{at}.role"))),
        }
    }
    Ok(turns)
}

fn user_parts(content: Option<&Value>, at: &str) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    for (i, part) in content::parts(content, at)?.into_iter().enumerate() {
        match part {
            Part::Text(text) if text.is_empty() => {}
            Part::Text(text) => out.push(json!({ "text": text })),
            Part::Image(image) => out.push(image_part(image, &format!("{at}[{i}].image_url.url"))?),
        }
    }
    Ok(out)
}

/// An image as `inlineData` (data URL) or `fileData` (`gs://` or Files API URI).
fn image_part(image: Image, at: &str) -> Result<Value, GatewayError> {
    match image {
        Image::Base64 { media_type, data } => Ok(json!({ "inlineData": { "mimeType": media_type, "data": data } })),
        Image::Url(url) if url.starts_with("gs://") || url.starts_with(FILES_API_PREFIX) => {
            let mut file = Map::new();
            if let Some(mime) = mime_from_extension(&url) {
                file.insert("mimeType".into(), json!(mime));
            }
            file.insert("fileUri".into(), json!(url));
            Ok(json!({ "fileData": Value::Object(file) }))
        }
        Image::Url(_) => Err(invalid(
            "Gemini cannot fetch images from web URLs: send the image inline as a data:<type>;base64,<data> URL \
             (gs:// and Gemini Files API URIs are also accepted).",
            at,
        )),
    }
}

/// The image MIME type implied by a URI's extension (Vertex requires one for `fileData`).
fn mime_from_extension(uri: &str) -> Option<&'static str> {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    Some(match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "gif" => "image/gif",
        _ => return None,
    })
}

/// An assistant message: its text, then its tool calls as `functionCall` parts (with their
/// thought signatures, when the client kept them).
fn assistant_parts(message: &Value, at: &str) -> Result<Vec<Value>, GatewayError> {
    let mut parts = Vec::new();
    let text = content::text_of(message.get("content"), &format!("{at}.content"))?;
    if !text.is_empty() {
        parts.push(json!({ "text": text }));
    }
    let raw_calls = message.get("tool_calls").and_then(Value::as_array);
    for (j, call) in content::past_tool_calls(message, at)?.into_iter().enumerate() {
        if call.name.is_empty() {
            return Err(invalid(format!("{at}.tool_calls[{j}].function.name is required."), format!("{at}.tool_calls[{j}].function.name")));
        }
        let mut part = json!({ "functionCall": { "name": call.name, "args": call.arguments } });
        let signature = raw_calls
            .and_then(|calls| calls.get(j))
            .and_then(|c| c.pointer("/extra_content/google/thought_signature"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if let Some(signature) = signature {
            part["thoughtSignature"] = json!(signature);
        }
        parts.push(part);
    }
    Ok(parts)
}

/// A `tool` message as a `functionResponse` part, named after the call it answers.
fn tool_response(request: &ChatRequest, index: usize, message: &Value, at: &str) -> Result<Value, GatewayError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid(format!("{at}.tool_call_id is required."), format!("{at}.tool_call_id")))?;
    let name = called_function(request, index, id).ok_or_else(|| {
        invalid(
            format!("{at}.tool_call_id '{id}' does not match a tool call of an earlier assistant message (Gemini needs the function name)."),
            format!("{at}.tool_call_id"),
        )
    })?;
    let output = content::text_of(message.get("content"), &format!("{at}.content"))?;
    Ok(json!({ "functionResponse": { "name": name, "response": function_output(&output) } }))
}

/// The legacy `function` role message (`name` + `content`).
fn legacy_function_response(message: &Value, at: &str) -> Result<Value, GatewayError> {
    let name = message
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(format!("{at}.name is required."), format!("{at}.name")))?;
    let output = content::text_of(message.get("content"), &format!("{at}.content"))?;
    Ok(json!({ "functionResponse": { "name": name, "response": function_output(&output) } }))
}

/// The name of the function called with `id` by the nearest earlier assistant message.
fn called_function(request: &ChatRequest, before: usize, id: &str) -> Option<String> {
    request.messages.get(..before)?.iter().rev().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant")).find_map(|m| {
        m.get("tool_calls")?
            .as_array()?
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
            .and_then(|c| c.pointer("/function/name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

/// `functionResponse.response` must be an object: a JSON object result is used as is,
/// anything else goes under `output` (the key Gemini documents for function output).
fn function_output(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Value::Object(object),
        Ok(other) => json!({ "output": other }),
        Err(_) => json!({ "output": text }),
    }
}

/// `tools` and `toolConfig` from the request's tools and tool choice.
fn tools_and_config(request: &ChatRequest, body: &mut Map<String, Value>) -> Result<(), GatewayError> {
    let tools = content::tools(request)?;
    let choice = content::tool_choice(request)?;
    if !tools.is_empty() {
        let declarations: Vec<Value> = tools
            .iter()
            .map(|tool| {
                let mut declaration = Map::new();
                declaration.insert("name".into(), json!(tool.name));
                if let Some(description) = tool.description.as_deref().filter(|d| !d.is_empty()) {
                    declaration.insert("description".into(), json!(description));
                }
                // Gemini refuses an OBJECT schema with no properties; a function without
                // parameters leaves `parameters` unset, as its reference says.
                let parameters = schema(&tool.parameters);
                if parameters.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty()) {
                    declaration.insert("parameters".into(), parameters);
                }
                Value::Object(declaration)
            })
            .collect();
        body.insert("tools".into(), json!([{ "functionDeclarations": declarations }]));
    }
    let config = match choice {
        None => return Ok(()),
        Some(ToolChoice::Auto) if tools.is_empty() => return Ok(()),
        Some(ToolChoice::None) if tools.is_empty() => return Ok(()),
        Some(ToolChoice::Auto) => json!({ "mode": "AUTO" }),
        Some(ToolChoice::None) => json!({ "mode": "NONE" }),
        Some(ToolChoice::Required) if tools.is_empty() => {
            return Err(invalid("'tool_choice' is 'required' but no tools are given.", "tool_choice"));
        }
        Some(ToolChoice::Required) => json!({ "mode": "ANY" }),
        Some(ToolChoice::Function(name)) => {
            if !tools.iter().any(|t| t.name == name) {
                return Err(invalid(format!("'tool_choice' names function '{name}', which is not in 'tools'."), "tool_choice"));
            }
            json!({ "mode": "ANY", "allowedFunctionNames": [name] })
        }
    };
    body.insert("toolConfig".into(), json!({ "functionCallingConfig": config }));
    Ok(())
}

/// `generationConfig`: sampling, limits, stop sequences, candidates, JSON output.
fn generation_config(request: &ChatRequest) -> Result<Map<String, Value>, GatewayError> {
    let mut config = Map::new();
    for (ours, theirs) in [("temperature", "temperature"), ("top_p", "topP"), ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")] {
        if let Some(value) = content::number(request, ours)? {
            config.insert(theirs.into(), json!(value));
        }
    }
    if let Some(top_k) = integer(request, "top_k")? {
        config.insert("topK".into(), json!(top_k));
    }
    if let Some(seed) = integer(request, "seed")? {
        config.insert("seed".into(), json!(seed));
    }
    if let Some(max) = request.max_output_tokens() {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    let stop = content::stop_sequences(request)?;
    if !stop.is_empty() {
        config.insert("stopSequences".into(), json!(stop));
    }
    if request.choices() > 1 {
        config.insert("candidateCount".into(), json!(request.choices()));
    }
    match content::response_format(request)? {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        ResponseFormat::JsonSchema { schema: s, .. } => {
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseSchema".into(), schema(&s));
        }
    }
    pass_through(&request.rest, GENERATION_PASS_THROUGH, &mut config);
    Ok(config)
}

/// An integer parameter (`seed`, `top_k`), if set.
fn integer(request: &ChatRequest, key: &str) -> Result<Option<i64>, GatewayError> {
    match request.rest.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| invalid(format!("'{key}' must be an integer."), key)),
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

/// A JSON Schema rewritten to Gemini's `Schema` (an OpenAPI 3.0 subset).
///
/// Kept: `type` (upper-cased), `format` (only the ones Gemini lists for the type), `title`,
/// `description`, `nullable`, `enum` (string enums only), `properties`, `required` (only names
/// that are properties), `items`, `anyOf`, `minItems`/`maxItems`, `minLength`/`maxLength`,
/// `minProperties`/`maxProperties`, `minimum`/`maximum`, `pattern`, `example`, `default`,
/// `propertyOrdering`. Local `$ref`s (`#/$defs/..`, `#/definitions/..`) are inlined, at most
/// [`MAX_REF_DEPTH`] deep (recursive types are cut off there); `oneOf` is read as `anyOf`; a
/// one-element `allOf` is merged; everything else is dropped.
pub fn schema(value: &Value) -> Value {
    let mut walk = Walk { root: value, budget: MAX_SCHEMA_NODES };
    Value::Object(rewrite(value, 0, 0, &mut walk))
}

/// What one schema rewrite carries along: the root (for `$ref`s) and the nodes left.
struct Walk<'a> {
    root: &'a Value,
    budget: usize,
}

fn rewrite(value: &Value, depth: usize, refs: usize, walk: &mut Walk<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(object) = value.as_object() else { return out };
    if depth > MAX_SCHEMA_DEPTH || walk.budget == 0 {
        return out;
    }
    walk.budget -= 1;
    // A reference or a single-element allOf: the target, with this schema's own annotations.
    let root = walk.root;
    if let Some(target) = object.get("$ref").and_then(Value::as_str).and_then(|r| resolve(root, r)) {
        if refs < MAX_REF_DEPTH {
            out = rewrite(target, depth + 1, refs + 1, walk);
        }
    } else if let Some(only) = object.get("allOf").and_then(Value::as_array).filter(|a| a.len() == 1).and_then(|a| a.first()) {
        out = rewrite(only, depth + 1, refs, walk);
    }
    let mut nullable = false;
    match object.get("type") {
        Some(Value::String(t)) if t == "null" => nullable = true,
        Some(Value::String(t)) => {
            if let Some(t) = gemini_type(t) {
                out.insert("type".into(), json!(t));
            }
        }
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            nullable = names.contains(&"null");
            let kinds: Vec<&str> = names.iter().filter_map(|t| gemini_type(t)).collect();
            match kinds.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), json!(one));
                }
                many => {
                    out.insert("anyOf".into(), Value::Array(many.iter().map(|t| json!({ "type": t })).collect()));
                }
            }
        }
        _ => {}
    }
    if let Some(variants) = object.get("anyOf").or_else(|| object.get("oneOf")).and_then(Value::as_array) {
        let mut kept = Vec::new();
        for variant in variants {
            if variant.get("type").and_then(Value::as_str) == Some("null") {
                nullable = true;
            } else {
                kept.push(Value::Object(rewrite(variant, depth + 1, refs, walk)));
            }
        }
        match kept.len() {
            0 => {}
            1 => {
                if let Some(Value::Object(only)) = kept.pop() {
                    for (key, value) in only {
                        out.entry(key).or_insert(value);
                    }
                }
            }
            _ => {
                out.insert("anyOf".into(), Value::Array(kept));
            }
        }
    }
    for key in ["title", "description", "pattern"] {
        if let Some(text) = object.get(key).and_then(Value::as_str) {
            out.insert(key.into(), json!(text));
        }
    }
    for key in ["minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"] {
        if let Some(n) = object.get(key).and_then(Value::as_u64) {
            out.insert(key.into(), json!(n));
        }
    }
    for key in ["minimum", "maximum"] {
        if let Some(n) = object.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), n.clone());
        }
    }
    for key in ["example", "default"] {
        if let Some(v) = object.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if nullable || object.get("nullable").and_then(Value::as_bool) == Some(true) {
        out.insert("nullable".into(), json!(true));
    }
    let strings = |v: &Value| -> Option<Vec<Value>> { v.as_array()?.iter().map(|e| e.as_str().map(|s| json!(s))).collect() };
    if let Some(values) = object.get("enum").and_then(strings) {
        out.insert("enum".into(), Value::Array(values));
    } else if let Some(constant) = object.get("const").and_then(Value::as_str) {
        out.insert("enum".into(), json!([constant]));
    }
    if let Some(format) = object.get("format").and_then(Value::as_str) {
        let allowed: &[&str] = match out.get("type").and_then(Value::as_str) {
            Some("STRING") => &["enum", "date-time"],
            Some("NUMBER") => &["float", "double"],
            Some("INTEGER") => &["int32", "int64"],
            _ => &[],
        };
        if allowed.contains(&format) {
            out.insert("format".into(), json!(format));
        }
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        let rewritten: Map<String, Value> =
            properties.iter().map(|(name, s)| (name.clone(), Value::Object(rewrite(s, depth + 1, refs, walk)))).collect();
        out.insert("properties".into(), Value::Object(rewritten));
    }
    if let Some(ordering) = object.get("propertyOrdering").and_then(strings) {
        out.insert("propertyOrdering".into(), Value::Array(ordering));
    }
    if let Some(required) = object.get("required").and_then(Value::as_array) {
        let known = out.get("properties").and_then(Value::as_object);
        let kept: Vec<Value> = required
            .iter()
            .filter_map(Value::as_str)
            .filter(|name| known.is_some_and(|p| p.contains_key(*name)))
            .map(|name| json!(name))
            .collect();
        if !kept.is_empty() {
            out.insert("required".into(), Value::Array(kept));
        }
    }
    let items = match object.get("items") {
        Some(Value::Array(tuple)) => tuple.first(),
        other => other,
    };
    if let Some(items) = items.filter(|i| i.is_object()) {
        out.insert("items".into(), Value::Object(rewrite(items, depth + 1, refs, walk)));
    }
    out
}

fn gemini_type(json_type: &str) -> Option<&'static str> {
    Some(match json_type.to_ascii_lowercase().as_str() {
        "string" => "STRING",
        "number" => "NUMBER",
        "integer" => "INTEGER",
        "boolean" => "BOOLEAN",
        "array" => "ARRAY",
        "object" => "OBJECT",
        _ => return None,
    })
}

/// A local JSON pointer reference (`#/...`) inside the root schema.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

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
    match reason.map(|r| content::map_finish(r, FINISH)) {
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
        choices.push(json!({
            "index": 0, "message": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": "content_filter"
        }));
    }
    let raw_usage = value.get("usageMetadata").filter(|u| u.is_object()).cloned();
    let usage = raw_usage.as_ref().and_then(usage_of);
    let mut out = json!({
        "id": ctx.id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": value.get("modelVersion").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(&ctx.model),
        "choices": choices,
    });
    if let Some(usage) = &usage {
        out["usage"] = usage.to_openai();
    }
    Ok(Translated { body: out, usage, raw_usage })
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
    let message = super::assistant_message(text, &reasoning, calls);
    json!({ "index": index, "message": message, "logprobs": null, "finish_reason": finish })
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
///
/// Each event is a whole `GenerateContentResponse` with the new parts only. Function calls
/// arrive whole, so each becomes a tool-call start plus one arguments delta, keyed by its
/// position among the candidate's calls. There is no terminal event: the stream is complete
/// when every candidate seen has a `finishReason`. `usageMetadata` repeats; the last wins.
pub struct GeminiStream {
    sse: SseDecoder,
    writer: ChunkWriter,
    ids: CallIds,
    /// Per choice: function calls seen so far (the next call's key).
    calls: Vec<u64>,
    /// Per choice: whether it has appeared.
    seen: Vec<bool>,
    raw_usage: Option<Value>,
}

impl GeminiStream {
    pub fn new(ctx: ResponseContext) -> Self {
        GeminiStream { sse: SseDecoder::new(), writer: ChunkWriter::new(&ctx), ids: CallIds::new(&ctx), calls: Vec::new(), seen: Vec::new(), raw_usage: None }
    }

    fn see(&mut self, index: usize) {
        if self.seen.len() <= index {
            self.seen.resize(index + 1, false);
            self.calls.resize(index + 1, 0);
        }
        self.seen[index] = true;
    }

    fn event(&mut self, data: &str, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        let value: Value = serde_json::from_str(data).map_err(|_| StreamFault::Malformed { detail: "event data is not JSON".into() })?;
        match value {
            Value::Array(items) => items.iter().try_for_each(|item| self.response(item, out)),
            other => self.response(&other, out),
        }
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
            self.raw_usage = Some(usage.clone());
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

impl StreamDecoder for GeminiStream {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), StreamFault> {
        for event in self.sse.push(bytes) {
            self.event(&event.data, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        std::mem::take(&mut self.sse).finish();
        let complete = self.seen.iter().any(|s| *s)
            && self.seen.iter().enumerate().filter(|(_, s)| **s).all(|(index, _)| self.writer.finished(index));
        if !complete {
            return Err(StreamFault::Truncated);
        }
        if let Some(usage) = self.usage() {
            self.writer.usage(&usage, out);
        }
        Ok(())
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

/// The inputs as text; Gemini embeds text only.
fn embedding_texts(request: &EmbeddingsRequest) -> Result<Vec<&str>, GatewayError> {
    request
        .inputs()
        .into_iter()
        .map(|input| match input {
            EmbeddingInput::Text(text) => Ok(text),
            EmbeddingInput::Tokens(_) => Err(invalid("Gemini embeddings take text input; token-id arrays are not supported.", "input")),
        })
        .collect()
}

/// OpenAI embeddings as `batchEmbedContents` (Generative Language) or the text embedding
/// `:predict` call (Vertex AI).
pub fn embeddings_request(config: &GeminiConfig, route: &ModelRoute, request: &EmbeddingsRequest, credential: &str) -> Result<OutboundRequest, GatewayError> {
    let texts = embedding_texts(request)?;
    if texts.is_empty() {
        return Err(invalid("'input' must not be empty.", "input"));
    }
    let model = &route.upstream_model;
    let (method, body) = match &config.api {
        GeminiApi::GenerativeLanguage { .. } => {
            let name = generative_language_model(model);
            let requests: Vec<Value> = texts
                .iter()
                .map(|text| {
                    let mut one = Map::new();
                    one.insert("model".into(), json!(name));
                    one.insert("content".into(), json!({ "parts": [{ "text": text }] }));
                    if let Some(dimensions) = request.dimensions() {
                        one.insert("outputDimensionality".into(), json!(dimensions));
                    }
                    pass_through(&request.rest, EMBED_PASS_THROUGH, &mut one);
                    Value::Object(one)
                })
                .collect();
            ("batchEmbedContents", json!({ "requests": requests }))
        }
        GeminiApi::Vertex { .. } => {
            let instances: Vec<Value> = texts.iter().map(|text| json!({ "content": text })).collect();
            let mut body = json!({ "instances": instances });
            if let Some(dimensions) = request.dimensions() {
                body["parameters"] = json!({ "outputDimensionality": dimensions });
            }
            ("predict", body)
        }
    };
    Ok(post(config, model_url(config, model, method), &body, credential, false))
}

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
    let data = content::embedding_data(&vectors, request, bad_response)?;
    // Only Vertex reports token counts (per input); the Generative Language API reports none.
    let usage = statistics.as_ref().map(|stats| {
        let tokens = stats
            .iter()
            .map(|s| s.get("token_count").or_else(|| s.get("tokenCount")).and_then(Value::as_f64).unwrap_or(0.0) as u64)
            .sum();
        Usage::from_parts(tokens, 0, 0, 0, 0)
    });
    Ok(super::embeddings_list(data, ctx, usage, statistics.map(Value::Array)))
}

/// The credential for the configured API: the API key or the Vertex access token.
pub fn credential(config: &GeminiConfig, ctx: &super::ProviderContext<'_>) -> Result<String, GatewayError> {
    match &config.api {
        GeminiApi::GenerativeLanguage { api_key_secret, .. } => ctx.require(api_key_secret),
        GeminiApi::Vertex { access_token_secret, .. } => ctx.require(access_token_secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::test_support::{deltas, drive};
    use crate::config::ModelKind;
    use crate::openai::parse_request;

    fn generative() -> GeminiConfig {
        GeminiConfig {
            api: GeminiApi::GenerativeLanguage { base_url: "https://generativelanguage.googleapis.com/".into(), api_key_secret: "GEMINI_KEY".into() },
            timeout_ms: None,
        }
    }

    fn vertex() -> GeminiConfig {
        GeminiConfig {
            api: GeminiApi::Vertex {
                base_url: "https://europe-west4-aiplatform.googleapis.com".into(),
                project: "my-project".into(),
                location: "europe-west4".into(),
                access_token_secret: "VERTEX_TOKEN".into(),
            },
            timeout_ms: None,
        }
    }

    fn route() -> ModelRoute {
        ModelRoute { name: "gem".into(), provider: "google".into(), upstream_model: "gemini-2.5-flash".into(), kind: ModelKind::Chat, guard: None }
    }

    fn embed_route() -> ModelRoute {
        ModelRoute { name: "emb".into(), provider: "google".into(), upstream_model: "gemini-embedding-001".into(), kind: ModelKind::Embeddings, guard: None }
    }

    fn ctx() -> ResponseContext {
        ResponseContext { id: "chatcmpl-gw1".into(), created: 1700000000, model: "gemini-2.5-flash".into() }
    }

    fn request(body: Value) -> ChatRequest {
        parse_request(body.to_string().as_bytes()).unwrap()
    }

    fn body_of(body: Value) -> Value {
        let out = chat_request(&generative(), &route(), &request(body), "AIza-secret").unwrap();
        serde_json::from_slice(&out.body).unwrap()
    }

    fn param_of(body: Value) -> String {
        match chat_request(&generative(), &route(), &request(body), "k") {
            Err(GatewayError::InvalidRequest { param: Some(p), .. }) => p,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    // ----- request -----

    #[test]
    fn golden_rich_request() {
        let body = body_of(json!({
            "model": "gem",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather and time here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "gs://bucket/photo.JPG"}}
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                     "extra_content": {"google": {"thought_signature": "c2ln"}}},
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
                {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":21}"},
                {"role": "user", "content": "Thanks. JSON please."}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "strict": true, "parameters": {
                    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": false,
                    "properties": {"city": {"type": "string", "format": "uri"}, "unit": {"type": ["string", "null"], "enum": ["c", "f"]}},
                    "required": ["city", "ghost"]}}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
            ],
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
            "stop": ["END"],
            "temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_tokens": 300, "seed": 7,
            "presence_penalty": 0.1, "frequency_penalty": 0.2, "n": 2,
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}],
            "logit_bias": {"1": 2}, "user": "u1"
        }));
        assert_eq!(body, json!({
            "contents": [
                {"role": "user", "parts": [
                    {"text": "Weather and time here?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/photo.JPG"}}
                ]},
                {"role": "model", "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                    {"functionCall": {"name": "get_time", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"text": "Thanks. JSON please."}
                ]}
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use tools."}]},
            "tools": [{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather for a city", "parameters": {
                    "type": "OBJECT",
                    "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "nullable": true, "enum": ["c", "f"]}},
                    "required": ["city"]}},
                {"name": "get_time"}
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            "generationConfig": {
                "temperature": 0.2, "topP": 0.9, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
                "topK": 40, "seed": 7, "maxOutputTokens": 300, "stopSequences": ["END"], "candidateCount": 2,
                "responseMimeType": "application/json"
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}]
        }));
    }

    #[test]
    fn urls_and_auth_headers() {
        let plain = request(json!({"model": "gem", "messages": [{"role": "user", "content": "hi"}]}));
        let streamed = request(json!({"model": "gem", "messages": [{"role": "user", "content": "hi"}], "stream": true}));
        let out = chat_request(&generative(), &route(), &plain, "AIza-secret").unwrap();
        assert_eq!(out.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
        assert!(out.headers.contains(&("x-goog-api-key".into(), "AIza-secret".into())));
        assert!(!out.url.contains("AIza"), "the key never goes into the URL");
        let out = chat_request(&generative(), &route(), &streamed, "AIza-secret").unwrap();
        assert_eq!(out.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
        assert!(out.headers.contains(&("accept".into(), "text/event-stream".into())));
        let out = chat_request(&vertex(), &route(), &streamed, "ya29.token").unwrap();
        assert_eq!(
            out.url,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert!(out.headers.contains(&("authorization".into(), "Bearer ya29.token".into())));
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body, json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}));
        let tuned = ModelRoute { upstream_model: "tunedModels/my-model".into(), ..route() };
        let out = chat_request(&generative(), &tuned, &plain, "k").unwrap();
        assert_eq!(out.url, "https://generativelanguage.googleapis.com/v1beta/tunedModels/my-model:generateContent");
    }

    #[test]
    fn tool_choice_mapping() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}]);
        let config = |choice: Value| body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}))["toolConfig"].clone();
        assert_eq!(config(json!("auto")), json!({"functionCallingConfig": {"mode": "AUTO"}}));
        assert_eq!(config(json!("none")), json!({"functionCallingConfig": {"mode": "NONE"}}));
        assert_eq!(config(json!({"type": "function", "function": {"name": "f"}})), json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}));
        let no_tools = body_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}));
        assert!(no_tools.get("toolConfig").is_none() && no_tools.get("tools").is_none());
    }

    #[test]
    fn json_schema_response_format_is_rewritten() {
        let body = body_of(json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": {
                "type": "object", "additionalProperties": false,
                "$defs": {"Pet": {"type": "object", "properties": {"kind": {"const": "dog"}}}},
                "properties": {
                    "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}], "description": "years"},
                    "born": {"type": "string", "format": "date-time"},
                    "pet": {"$ref": "#/$defs/Pet", "description": "their pet"},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                    "id": {"oneOf": [{"type": "string"}, {"type": "number", "format": "double"}]},
                    "size": {"type": "integer", "enum": [1, 2]}
                },
                "required": ["age"]
            }}}
        }));
        assert_eq!(body["generationConfig"]["responseMimeType"], "application/json");
        assert_eq!(body["generationConfig"]["responseSchema"], json!({
            "type": "OBJECT",
            "properties": {
                "age": {"type": "INTEGER", "minimum": 0, "description": "years", "nullable": true},
                "born": {"type": "STRING", "format": "date-time"},
                "pet": {"type": "OBJECT", "properties": {"kind": {"enum": ["dog"]}}, "description": "their pet"},
                "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 3},
                "id": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER", "format": "double"}]},
                "size": {"type": "INTEGER"}
            },
            "required": ["age"]
        }));
    }

    #[test]
    fn recursive_refs_terminate() {
        let tree = json!({"type": "object", "properties": {"child": {"$ref": "#"}}});
        let out = schema(&tree);
        assert_eq!(out["type"], "OBJECT");
        assert_eq!(out["properties"]["child"]["properties"]["child"]["type"], "OBJECT");
        assert!(out.to_string().len() < 100_000);
        // Two self-references per level: bounded by the node budget, not 2^depth.
        let binary = json!({"type": "object", "properties": {"left": {"$ref": "#"}, "right": {"$ref": "#"}}});
        let out = schema(&binary);
        assert_eq!(out["properties"]["right"]["type"], "OBJECT");
        assert!(out.to_string().len() < 200_000);
    }

    #[test]
    fn legacy_functions_and_same_role_merging() {
        let body = body_of(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": ""},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": null, "function_call": {"name": "lookup", "arguments": "{\"q\":1}"}},
                {"role": "function", "name": "lookup", "content": "[1,2]"},
                {"role": "assistant", "content": ""}
            ],
            "functions": [{"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}}],
            "function_call": {"name": "lookup"}
        }));
        assert_eq!(body["contents"], json!([
            {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": 1}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"output": [1, 2]}}}]}
        ]));
        assert_eq!(body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"], json!(["lookup"]));
    }

    #[test]
    fn a_reused_tool_call_id_names_the_nearest_call() {
        let body = body_of(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "first", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "1"},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "second", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "2"}
        ]}));
        assert_eq!(body["contents"][4]["parts"][0]["functionResponse"]["name"], "second");
        assert_eq!(body["contents"][2]["parts"][0]["functionResponse"]["name"], "first");
    }

    #[test]
    fn bad_input_is_an_invalid_request_naming_the_field() {
        let user = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
        assert_eq!(param_of(user(json!([{"type": "image_url", "image_url": {"url": "https://x.example/cat.png"}}]))), "messages[0].content[0].image_url.url");
        assert_eq!(param_of(user(json!([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "http://x/c.png"}}]))), "messages[0].content[1].image_url.url");
        assert_eq!(param_of(user(json!([{"type": "input_audio"}]))), "messages[0].content[0].type");
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "system", "content": "only system"}]})), "messages");
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}]})), "messages[1].tool_call_id");
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "1"}]})), "messages[1].tool_call_id");
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1.5})), "seed");
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})), "tool_choice");
        assert_eq!(
            param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "g"}},
                "tools": [{"type": "function", "function": {"name": "f"}}]})),
            "tool_choice"
        );
        assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"})), "temperature");
        assert_eq!(
            param_of(json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "", "arguments": "{}"}}]}]})),
            "messages[0].tool_calls[0].function.name"
        );
        // The error message never carries the credential.
        let err = chat_request(&generative(), &route(), &request(user(json!([{"type": "image_url", "image_url": {"url": "https://x/c.png"}}]))), "AIza-secret").unwrap_err();
        assert!(!format!("{err:?}").contains("AIza"));
    }

    #[test]
    fn odd_shapes_never_panic() {
        for messages in [
            json!([{"role": "user", "content": 5}]),
            json!([{"role": "user", "content": [5]}]),
            json!([{"role": "assistant", "tool_calls": "x"}, {"role": "user", "content": "x"}]),
            json!([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 5}}]}]),
            json!([{"role": "tool", "tool_call_id": 5, "content": null}]),
            json!([{"role": "function", "content": "x"}]),
        ] {
            let _ = chat_request(&generative(), &route(), &request(json!({"model": "m", "messages": messages})), "k");
        }
        for weird in [json!(true), json!([]), json!({"type": 5, "properties": 3, "required": "x", "items": [], "anyOf": {}}), json!({"$ref": "#/nope"})] {
            let _ = schema(&weird);
        }
    }

    // ----- response -----

    #[test]
    fn response_with_text_thoughts_tools_and_cached_usage() {
        let body = json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "Let me think.", "thought": true},
                    {"text": "Checking "},
                    {"text": "both."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                    {"functionCall": {"name": "get_time", "args": {}}},
                    {"functionCall": {"id": "own-id", "name": "get_date"}}
                ]},
                "finishReason": "STOP"
            }],
            "usageMetadata": {"promptTokenCount": 1200, "cachedContentTokenCount": 1000, "candidatesTokenCount": 30,
                "thoughtsTokenCount": 12, "totalTokenCount": 1242},
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "abc"
        });
        let out = chat_response(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(out.body["id"], "chatcmpl-gw1");
        assert_eq!(out.body["object"], "chat.completion");
        assert_eq!(out.body["model"], "gemini-2.5-flash-001");
        let choice = &out.body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Checking both.");
        assert_eq!(choice["message"]["reasoning_content"], "Let me think.");
        assert_eq!(choice["message"]["tool_calls"], json!([
            {"id": "call_gw1_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
             "extra_content": {"google": {"thought_signature": "c2ln"}}},
            {"id": "call_gw1_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            {"id": "own-id", "type": "function", "function": {"name": "get_date", "arguments": "{}"}}
        ]));
        let usage = out.usage.unwrap();
        assert_eq!(usage, Usage::from_parts(200, 1000, 0, 42, 12));
        assert_eq!(usage.input_tokens, 1200, "cached tokens are not counted twice");
        assert_eq!(usage.total_tokens, 1242);
        assert_eq!(out.body["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
        assert_eq!(out.body["usage"]["completion_tokens_details"]["reasoning_tokens"], 12);
        assert_eq!(out.raw_usage, Some(body["usageMetadata"].clone()));
    }

    #[test]
    fn finish_reasons_blocks_and_candidates() {
        let finish = |reason: &str| {
            let body = json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]});
            chat_response(body.to_string().as_bytes(), &ctx()).unwrap().body["choices"][0]["finish_reason"].clone()
        };
        assert_eq!(finish("STOP"), "stop");
        assert_eq!(finish("MAX_TOKENS"), "length");
        for filtered in ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"] {
            assert_eq!(finish(filtered), "content_filter");
        }
        assert_eq!(finish("OTHER"), "stop");
        // A blocked prompt: no candidates at all.
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}});
        let out = chat_response(blocked.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(out.body["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out.body["choices"][0]["message"]["content"], "");
        assert_eq!(out.usage.unwrap().input_tokens, 8);
        // A candidate stopped for safety carries no content.
        let out = chat_response(br#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#, &ctx()).unwrap();
        assert_eq!(out.body["choices"][0]["message"]["content"], "");
        // Several candidates: index from the candidate (a zero index is omitted by proto3 JSON).
        let two = json!({"candidates": [
            {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
            {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1}
        ]});
        let out = chat_response(two.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(out.body["choices"][1]["index"], 1);
        assert_eq!(out.body["choices"][1]["message"]["content"], "b");
        assert_eq!(out.body["choices"][1]["finish_reason"], "length");
        assert!(out.usage.is_none());
    }

    #[test]
    fn malformed_responses_are_upstream_errors_without_body_text() {
        for body in [&b"not json SECRET"[..], b"[1,2]", b"{}", br#"{"candidates": "SECRET"}"#, br#"{"candidates": [{"index": 4000000000}]}"#] {
            match chat_response(body, &ctx()) {
                Err(GatewayError::UpstreamInvalidResponse { provider, detail }) => {
                    assert_eq!(provider, "gemini");
                    assert!(!detail.contains("SECRET"));
                }
                other => panic!("expected an upstream error, got {other:?}"),
            }
        }
    }

    #[test]
    fn error_bodies() {
        let body = br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(error_message(400, body), Some(ProviderErrorBody { message: "API key not valid.".into(), kind: Some("INVALID_ARGUMENT".into()) }));
        let wrapped = br#"[{"error":{"code":429,"message":"Resource exhausted.","status":"RESOURCE_EXHAUSTED"}}]"#;
        assert_eq!(error_message(429, wrapped).unwrap().kind.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(error_message(500, b"<html>"), None);
        assert_eq!(error_message(500, b"[]"), None);
        assert_eq!(error_message(500, br#"{"error":{"code":500}}"#), None);
    }

    // ----- stream -----

    fn sse(events: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for event in events {
            out.extend_from_slice(format!("data: {event}\r\n\r\n").as_bytes());
        }
        out
    }

    /// A realistic stream: thoughts, text in pieces, two parallel calls in one event and a
    /// third in a later one, cumulative usage repeated on every event.
    fn parallel_tools_stream() -> Vec<u8> {
        let usage = |out: u64| json!({"promptTokenCount": 500, "cachedContentTokenCount": 400, "candidatesTokenCount": out, "thoughtsTokenCount": 7, "totalTokenCount": 507 + out});
        sse(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Two cities.", "thought": true}]}}], "usageMetadata": usage(0), "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking ü "}]}}], "usageMetadata": usage(3), "modelVersion": "gemini-2.5-flash"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "both."}]}}], "usageMetadata": usage(5), "modelVersion": "gemini-2.5-flash"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}
            ]}}], "usageMetadata": usage(20), "modelVersion": "gemini-2.5-flash"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_date", "args": {}}}]}, "finishReason": "STOP"}],
                "usageMetadata": usage(30), "modelVersion": "gemini-2.5-flash"}),
        ])
    }

    fn run(chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>, GeminiStream) {
        drive(GeminiStream::new(ctx()), chunks)
    }

    #[test]
    fn stream_with_parallel_tool_calls() {
        let bytes = parallel_tools_stream();
        let (out, result, decoder) = run(&[&bytes]);
        assert_eq!(result, Ok(()));
        for chunk in &out {
            assert_eq!(chunk["id"], "chatcmpl-gw1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["model"], "gemini-2.5-flash");
        }
        assert_eq!(deltas(&out), vec![
            json!({"role": "assistant", "reasoning_content": "Two cities."}),
            json!({"content": "Checking ü "}),
            json!({"content": "both."}),
            json!({"tool_calls": [{"index": 0, "id": "call_gw1_0", "type": "function", "function": {"name": "get_weather", "arguments": ""},
                "extra_content": {"google": {"thought_signature": "c2ln"}}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}]}),
            json!({"tool_calls": [{"index": 1, "id": "call_gw1_1", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"tz\":\"CET\"}"}}]}),
            json!({"tool_calls": [{"index": 2, "id": "call_gw1_2", "type": "function", "function": {"name": "get_date", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 2, "function": {"arguments": "{}"}}]}),
            json!({}),
        ]);
        assert_eq!(out[out.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
        let last = out.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 500);
        assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 400);
        assert_eq!(last["usage"]["completion_tokens"], 37);
        assert_eq!(out.iter().filter(|c| c.get("usage").is_some()).count(), 1);
        assert_eq!(decoder.usage(), Some(Usage::from_parts(100, 400, 0, 37, 7)));
        assert_eq!(decoder.raw_usage().unwrap()["candidatesTokenCount"], 30, "the last usage wins");
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
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
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
    fn stream_error_event_is_a_provider_fault() {
        let bytes = sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
        ]);
        let (out, result, _) = run(&[&bytes]);
        assert_eq!(result, Err(StreamFault::Provider { kind: "UNAVAILABLE".into() }));
        assert_eq!(deltas(&out), vec![json!({"role": "assistant", "content": "Hel"})]);
    }

    #[test]
    fn truncated_and_malformed_streams() {
        let bytes = sse(&[json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]})]);
        assert_eq!(run(&[&bytes]).1, Err(StreamFault::Truncated));
        assert_eq!(run(&[b""]).1, Err(StreamFault::Truncated));
        // The finishing event cut off before its blank line.
        let whole = parallel_tools_stream();
        assert_eq!(run(&[&whole[..whole.len() - 4]]).1, Err(StreamFault::Truncated));
        assert!(matches!(run(&[b"data: {oops\n\n"]).1, Err(StreamFault::Malformed { .. })));
        assert!(matches!(run(&[b"data: 5\n\n"]).1, Err(StreamFault::Malformed { .. })));
        assert!(matches!(run(&[b"data: {\"candidates\":[{\"index\":4000000000}]}\n\n"]).1, Err(StreamFault::Malformed { .. })));
    }

    #[test]
    fn stream_blocked_prompt_and_several_candidates() {
        let blocked = sse(&[json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}})]);
        let (out, result, _) = run(&[&blocked]);
        assert_eq!(result, Ok(()));
        assert_eq!(out[0]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out[1]["usage"]["prompt_tokens"], 9);

        let two = sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "a"}]}}, {"index": 1, "content": {"parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}]}),
        ]);
        // Candidate 1 never finished: the stream is incomplete.
        let (out, result, _) = run(&[&two]);
        assert_eq!(result, Err(StreamFault::Truncated));
        assert_eq!(out[1]["choices"][0]["index"], 1);
        assert_eq!(out[1]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        let mut finished = two.clone();
        finished.extend(sse(&[json!({"candidates": [{"index": 1, "finishReason": "STOP"}]})]));
        let (out, result, _) = run(&[&finished]);
        assert_eq!(result, Ok(()));
        let last = out.last().unwrap();
        assert_eq!(last["choices"][0]["index"], 1);
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    }

    // ----- embeddings -----

    fn embeddings(body: Value) -> EmbeddingsRequest {
        parse_request(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn embeddings_requests_for_both_apis() {
        let request = embeddings(json!({"model": "emb", "input": ["a", "b"], "dimensions": 256, "taskType": "RETRIEVAL_QUERY"}));
        let out = embeddings_request(&generative(), &embed_route(), &request, "AIza-secret").unwrap();
        assert_eq!(out.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents");
        assert!(out.headers.contains(&("x-goog-api-key".into(), "AIza-secret".into())));
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body, json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256, "taskType": "RETRIEVAL_QUERY"},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 256, "taskType": "RETRIEVAL_QUERY"}
        ]}));
        let out = embeddings_request(&vertex(), &embed_route(), &request, "ya29.t").unwrap();
        assert_eq!(
            out.url,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-project/locations/europe-west4/publishers/google/models/gemini-embedding-001:predict"
        );
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body, json!({"instances": [{"content": "a"}, {"content": "b"}], "parameters": {"outputDimensionality": 256}}));
        let tokens = embeddings(json!({"model": "emb", "input": [1, 2, 3]}));
        assert!(matches!(
            embeddings_request(&generative(), &embed_route(), &tokens, "k"),
            Err(GatewayError::InvalidRequest { param: Some(p), .. }) if p == "input"
        ));
    }

    #[test]
    fn embeddings_responses_in_both_encodings() {
        let float = embeddings(json!({"model": "emb", "input": ["a", "b"]}));
        let b64 = embeddings(json!({"model": "emb", "input": ["a", "b"], "encoding_format": "base64"}));
        let generative_body = br#"{"embeddings":[{"values":[0.5,-1.0]},{"values":[0.25,2.0]}]}"#;
        let out = embeddings_response(&float, generative_body, &ctx()).unwrap();
        assert_eq!(out.body, json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}, {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]}],
            "model": "gemini-2.5-flash",
            "usage": {"prompt_tokens": 0, "total_tokens": 0}
        }));
        assert_eq!(out.usage, None, "the Generative Language API reports no embedding tokens");
        let out = embeddings_response(&b64, generative_body, &ctx()).unwrap();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, out.body["data"][1]["embedding"].as_str().unwrap()).unwrap();
        let decoded: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(decoded, vec![0.25, 2.0]);

        let vertex_body = br#"{"predictions":[{"embeddings":{"values":[1.0],"statistics":{"token_count":3,"truncated":false}}},
            {"embeddings":{"values":[2.0],"statistics":{"token_count":4,"truncated":false}}}]}"#;
        let out = embeddings_response(&float, vertex_body, &ctx()).unwrap();
        assert_eq!(out.usage.unwrap().input_tokens, 7);
        assert_eq!(out.body["usage"], json!({"prompt_tokens": 7, "total_tokens": 7}));
        assert_eq!(out.body["data"][1]["embedding"], json!([2.0]));

        for bad in [&b"nope"[..], br#"{"embeddings":[{"values":[1]}]}"#, br#"{"embeddings":[{"values":"x"},{"values":[1]}]}"#, b"{}"] {
            assert!(matches!(embeddings_response(&float, bad, &ctx()), Err(GatewayError::UpstreamInvalidResponse { .. })));
        }
    }
}
