//! Cloudflare Workers AI through the Worker's AI binding (`env.AI.run(model, inputs)`), the
//! native interface, which needs no account id or API token. Elsewhere (Spin, or a Worker
//! without the binding) `workers_ai` uses the REST API's OpenAI-compatible endpoints instead
//! (see `config.rs`).
//!
//! Native text generation (https://developers.cloudflare.com/workers-ai/models/, "Text
//! Generation" input/output schemas):
//! - input: `{messages: [{role, content}], tools: [{type: "function", function: {name,
//!   description, parameters}}], response_format: {type: "json_object"|"json_schema",
//!   json_schema}, stream, max_tokens, temperature, top_p, top_k, seed, repetition_penalty,
//!   frequency_penalty, presence_penalty}`;
//! - output: `{response: string, tool_calls: [{name, arguments: object}], usage:
//!   {prompt_tokens, completion_tokens, total_tokens}}`;
//! - stream: server-sent events `data: {"response": "<text>"}` ... and `data: [DONE]`; the
//!   last data event before `[DONE]` may carry `usage`.
//!
//! Embeddings (`@cf/baai/bge-*`): input `{text: [..]}`, output `{shape: [n, dims], data: [[..]]}`.
//! Images are not accepted by these text models: a request with image parts is a 400 here.

use serde_json::{json, Map, Value};

use super::answer::{self, assistant_message, embeddings_list};
use super::call::{ResponseContext, Translated};
use super::chunk::ChunkWriter;
use super::content::{self, invalid, pass_through, Part, ResponseFormat};
use super::decode::{self, EventTranslator, FramedDecoder, Progress, StreamFault};
use crate::config::ModelRoute;
use crate::error::GatewayError;
use crate::openai::{ChatRequest, EmbeddingsRequest, Usage};
use crate::sse::{SseDecoder, SseEvent};

/// Sampling parameters the native schema shares with OpenAI's, passed through as they are.
const SHARED_PARAMETERS: [&str; 5] = ["temperature", "top_p", "seed", "frequency_penalty", "presence_penalty"];

/// Parameters only the native schema has, accepted from the client as provider-specific ones.
const NATIVE_PARAMETERS: [&str; 2] = ["top_k", "repetition_penalty"];

fn bad_response(detail: &str) -> GatewayError {
    GatewayError::UpstreamInvalidResponse { provider: "workers_ai".into(), detail: detail.into() }
}

/// The binding's `inputs` for a chat request.
pub fn chat_input(request: &ChatRequest) -> Result<Value, GatewayError> {
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.iter().enumerate() {
        let at = format!("messages[{i}].content");
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        let role = if role == "developer" { "system" } else { role };
        let mut text = String::new();
        for part in content::parts(message.get("content"), &at)? {
            match part {
                Part::Text(t) => text.push_str(&t),
                Part::Image(_) => {
                    return Err(invalid(format!("{at}: images are not supported by Workers AI text models through the binding."), &at))
                }
            }
        }
        let mut out = json!({ "role": role, "content": text });
        // An assistant turn that called tools, and the tool results, as the native schema has them.
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| {
                    let arguments = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    json!({ "name": c.pointer("/function/name").cloned().unwrap_or(Value::Null), "arguments": serde_json::from_str::<Value>(arguments).unwrap_or(json!({})) })
                })
                .collect();
            out["tool_calls"] = Value::Array(calls);
        }
        if let Some(id) = message.get("tool_call_id").and_then(Value::as_str) {
            out["tool_call_id"] = json!(id);
        }
        messages.push(out);
    }
    let mut input = Map::new();
    input.insert("messages".into(), Value::Array(messages));
    let tools = content::tools(request)?;
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .into_iter()
            .map(|t| json!({ "type": "function", "function": { "name": t.name, "description": t.description.unwrap_or_default(), "parameters": t.parameters } }))
            .collect();
        input.insert("tools".into(), Value::Array(tools));
    }
    match content::response_format(request)? {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            input.insert("response_format".into(), json!({ "type": "json_object" }));
        }
        ResponseFormat::JsonSchema { schema, .. } => {
            input.insert("response_format".into(), json!({ "type": "json_schema", "json_schema": schema }));
        }
    }
    if !content::stop_sequences(request)?.is_empty() {
        return Err(invalid("'stop' is not supported by Workers AI through the binding.", "stop"));
    }
    let max_tokens = request.rest.get("max_completion_tokens").or_else(|| request.rest.get("max_tokens")).filter(|v| !v.is_null());
    if let Some(max) = max_tokens {
        let max = max.as_u64().ok_or_else(|| invalid("'max_tokens' must be a positive integer.", "max_tokens"))?;
        input.insert("max_tokens".into(), json!(max));
    }
    for key in SHARED_PARAMETERS {
        if let Some(value) = content::number(request, key)? {
            input.insert(key.into(), json!(value));
        }
    }
    pass_through(&request.rest, &NATIVE_PARAMETERS, &mut input);
    if request.is_stream() {
        input.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(input))
}

/// The binding's `inputs` for an embeddings request.
pub fn embeddings_input(request: &EmbeddingsRequest) -> Result<Value, GatewayError> {
    let texts: Vec<String> = match &request.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| invalid("'input' must be a string or an array of strings for Workers AI.", "input")))
            .collect::<Result<_, _>>()?,
        _ => return Err(invalid("'input' must be a string or an array of strings for Workers AI.", "input")),
    };
    Ok(json!({ "text": texts }))
}

fn usage_of(raw: &Value) -> Option<Usage> {
    let input = raw.get("prompt_tokens")?.as_u64()?;
    let output = raw.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
    Some(Usage::from_parts(input, 0, 0, output, 0))
}

/// A native `tool_calls` list as OpenAI's, with generated ids (the native schema has none).
fn tool_calls(calls: Option<&Value>) -> Vec<Value> {
    let Some(calls) = calls.and_then(Value::as_array) else { return Vec::new() };
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let arguments = match c.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "{}".into(),
            };
            json!({ "id": format!("call_{i}"), "type": "function", "function": { "name": c.get("name").cloned().unwrap_or(json!("")), "arguments": arguments } })
        })
        .collect()
}

/// Translate a whole native text-generation result.
pub fn chat_response(body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("result is not JSON"))?;
    let text = match value.get("response") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        // JSON mode may answer with the object itself.
        Some(other) => other.to_string(),
    };
    let calls = tool_calls(value.get("tool_calls"));
    let finish = if calls.is_empty() { "stop" } else { "tool_calls" };
    let choice = answer::choice(0, assistant_message(text, "", calls), finish);
    Ok(answer::completion(ctx, None, None, vec![choice], value.get("usage"), usage_of))
}

/// Translate a native embeddings result.
pub fn embeddings_response(request: &EmbeddingsRequest, body: &[u8], ctx: &ResponseContext) -> Result<Translated, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad_response("result is not JSON"))?;
    let rows = value.get("data").and_then(Value::as_array).ok_or_else(|| bad_response("result has no data array"))?;
    let data = answer::embedding_data(&rows.iter().collect::<Vec<_>>(), request, bad_response)?;
    Ok(embeddings_list(data, ctx, None, None))
}

/// The native stream as OpenAI chunks.
pub type WorkersAiStream = FramedDecoder<SseDecoder, WorkersAiEvents>;

/// The native stream's events (`data: {"response": ...}` ... `data: [DONE]`) as OpenAI chunks.
pub struct WorkersAiEvents {
    writer: ChunkWriter,
    /// Complete at `[DONE]`; the usage object comes with the last data event before it.
    progress: Progress,
    /// Tool calls seen so far (the next call's key).
    calls: u64,
}

impl EventTranslator for WorkersAiEvents {
    type Event = SseEvent;
    const USAGE: fn(&Value) -> Option<Usage> = usage_of;

    fn new(ctx: &ResponseContext) -> Self {
        WorkersAiEvents { writer: ChunkWriter::new(ctx), progress: Progress::default(), calls: 0 }
    }

    fn event(&mut self, event: &SseEvent, out: &mut Vec<Value>) -> Result<(), StreamFault> {
        if event.data.trim() == "[DONE]" {
            self.progress.complete = true;
            let finish = if self.writer.has_tool_calls(0) { "tool_calls" } else { "stop" };
            self.writer.start(0, out);
            self.writer.finish(0, finish, out);
            if let Some(usage) = self.usage() {
                self.writer.usage(&usage, out);
            }
            return Ok(());
        }
        let value = decode::json_data(&event.data)?;
        self.writer.start(0, out);
        if let Some(text) = value.get("response").and_then(Value::as_str) {
            self.writer.text(0, text, out);
        }
        for call in tool_calls(value.get("tool_calls")) {
            let key = self.calls;
            self.calls += 1;
            let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
            self.writer.tool_call_start(0, key, &format!("call_{key}"), name, out);
            let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
            self.writer.tool_call_arguments(0, key, arguments, out);
        }
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            self.progress.raw_usage = Some(usage.clone());
        }
        Ok(())
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }
}

/// The upstream model of a route as the binding names it (`@cf/...`).
pub fn model(route: &ModelRoute) -> &str {
    &route.upstream_model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::parse_request;

    fn ctx() -> ResponseContext {
        ResponseContext { id: "chatcmpl-test".into(), created: 1, model: "@cf/meta/llama-3.1-8b-instruct".into() }
    }

    #[test]
    fn chat_input_maps_messages_tools_format_and_parameters() {
        let request: ChatRequest = parse_request(
            json!({
                "model": "x", "stream": true, "max_tokens": 64, "temperature": 0.2, "top_k": 5,
                "messages": [
                    { "role": "developer", "content": "Be brief." },
                    { "role": "user", "content": [{ "type": "text", "text": "Weather " }, { "type": "text", "text": "in Paris?" }] },
                    { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_0", "type": "function", "function": { "name": "weather", "arguments": "{\"city\":\"Paris\"}" } }] },
                    { "role": "tool", "tool_call_id": "call_0", "content": "18C" }
                ],
                "tools": [{ "type": "function", "function": { "name": "weather", "description": "Weather", "parameters": { "type": "object" } } }],
                "response_format": { "type": "json_object" }
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let input = chat_input(&request).unwrap();
        assert_eq!(input["messages"][0], json!({ "role": "system", "content": "Be brief." }));
        assert_eq!(input["messages"][1]["content"], "Weather in Paris?");
        assert_eq!(input["messages"][2]["tool_calls"][0], json!({ "name": "weather", "arguments": { "city": "Paris" } }));
        assert_eq!(input["messages"][3], json!({ "role": "tool", "content": "18C", "tool_call_id": "call_0" }));
        assert_eq!(input["tools"][0]["function"]["name"], "weather");
        assert_eq!(input["response_format"], json!({ "type": "json_object" }));
        assert_eq!((input["max_tokens"].as_u64(), input["top_k"].as_u64(), input["stream"].as_bool()), (Some(64), Some(5), Some(true)));
        assert_eq!(input["temperature"], 0.2);
    }

    #[test]
    fn images_are_a_clear_400() {
        let request: ChatRequest = parse_request(
            br#"{"model":"x","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}"#,
        )
        .unwrap();
        let error = chat_input(&request).unwrap_err();
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn whole_results_translate_with_tool_calls_and_usage() {
        let body = br#"{"response":"","tool_calls":[{"name":"weather","arguments":{"city":"Paris"}}],"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}"#;
        let t = chat_response(body, &ctx()).unwrap();
        assert_eq!(t.body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(t.body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(t.body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(t.usage.unwrap().total_tokens, 42);
        let t = chat_response(br#"{"response":"Hi there","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#, &ctx()).unwrap();
        assert_eq!((t.body["choices"][0]["message"]["content"].as_str(), t.body["choices"][0]["finish_reason"].as_str()), (Some("Hi there"), Some("stop")));
        assert!(chat_response(b"nope", &ctx()).is_err());
    }

    const STREAM: &str = "data: {\"response\":\"Hel\",\"p\":\"abc\"}\n\ndata: {\"response\":\"lo \\u00e9\"}\n\ndata: {\"response\":\"\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\ndata: [DONE]\n\n";

    fn decode(chunks: &[&[u8]]) -> (Vec<Value>, Result<(), StreamFault>) {
        let (out, end, _) = crate::provider::test_support::drive(WorkersAiStream::new(ctx()), chunks);
        (out, end)
    }

    #[test]
    fn streams_translate_whatever_the_byte_boundaries() {
        let whole = decode(&[STREAM.as_bytes()]);
        assert!(whole.1.is_ok());
        let text: String = whole.0.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
        assert_eq!(text, "Hello é");
        assert_eq!(whole.0[0]["choices"][0]["delta"]["role"], "assistant");
        let last = whole.0.last().unwrap();
        assert_eq!(last["usage"]["total_tokens"], 7);
        let bytes = STREAM.as_bytes();
        for split in 1..bytes.len() {
            assert_eq!(decode(&[&bytes[..split], &bytes[split..]]).0, whole.0, "split at {split}");
        }
    }

    #[test]
    fn a_stream_without_done_is_truncated() {
        let (_, end) = decode(&[b"data: {\"response\":\"Hel\"}\n\n"]);
        assert_eq!(end, Err(StreamFault::Truncated));
    }

    #[test]
    fn embeddings_translate() {
        let request: EmbeddingsRequest = parse_request(br#"{"model":"e","input":["a","b"]}"#).unwrap();
        assert_eq!(embeddings_input(&request).unwrap(), json!({ "text": ["a", "b"] }));
        let t = embeddings_response(&request, br#"{"shape":[2,2],"data":[[0.1,0.2],[0.3,0.4]]}"#, &ctx()).unwrap();
        assert_eq!(t.body["data"][1]["embedding"], json!([0.3f32 as f64, 0.4f32 as f64]));
        assert!(embeddings_response(&request, br#"{"shape":[1,2],"data":[[0.1,0.2]]}"#, &ctx()).is_err(), "one vector for two inputs");
    }
}
