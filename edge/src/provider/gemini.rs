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
//!
//! Layout: this file builds the requests (chat and embeddings); `gemini/response.rs`
//! translates whole answers and streams back, and `gemini/schema.rs` rewrites JSON Schemas
//! ([`schema`]). Neither imports this file.

mod response;
mod schema;
#[cfg(test)]
mod tests;

use serde_json::{json, Map, Value};

pub use self::response::{chat_response, embeddings_response, error_message, GeminiEvents, GeminiStream};
pub use self::schema::schema;
use super::call::ProviderContext;
use super::content::{self, invalid, pass_through, Image, Part, ResponseFormat, ToolChoice};
use super::url::percent_encode_segment;
use crate::config::{GeminiApi, GeminiConfig, ModelRoute};
use crate::error::GatewayError;
use crate::host::OutboundRequest;
use crate::openai::{ChatRequest, EmbeddingInput, EmbeddingsRequest};

/// Top-level `GenerateContentRequest` fields a client may send through unchanged.
const PASS_THROUGH: &[&str] = &["safetySettings", "cachedContent", "labels"];

/// `GenerationConfig` fields a client may send through unchanged (top level of its request).
const GENERATION_PASS_THROUGH: &[&str] = &["thinkingConfig", "mediaResolution"];

/// `EmbedContentRequest` fields a client may send through (Generative Language only).
const EMBED_PASS_THROUGH: &[&str] = &["taskType", "title"];

/// Where Gemini Files API URIs live: the one kind of `https` URI `fileData` accepts.
const FILES_API_PREFIX: &str = "https://generativelanguage.googleapis.com/";

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

/// The credential for the configured API: the API key or the Vertex access token.
pub fn credential(config: &GeminiConfig, ctx: &ProviderContext<'_>) -> Result<String, GatewayError> {
    match &config.api {
        GeminiApi::GenerativeLanguage { api_key_secret, .. } => ctx.require(api_key_secret),
        GeminiApi::Vertex { access_token_secret, .. } => ctx.require(access_token_secret),
    }
}

