//! The OpenAI answer shapes every translating provider builds from its own response: the
//! `chat.completion` and its choices, the assistant message, finish reasons, embedding rows and
//! the embeddings `list`, so that null content, optional fields, fallbacks and the usage
//! envelope are decided once.

use base64::Engine;
use serde_json::{json, Value};

use super::call::{ResponseContext, Translated};
use crate::error::GatewayError;
use crate::openai::{EmbeddingsRequest, Usage};

/// An OpenAI assistant message from a provider's answer: `content` is null when the answer is
/// only tool calls, `tool_calls` and `reasoning_content` appear only when there are some.
pub fn assistant_message(text: String, reasoning: &str, calls: Vec<Value>) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    message
}

/// An OpenAI `chat.completion` of a provider's whole answer. `id` and `model` are the
/// provider's own where it gives them (non-empty), else the context's; `usage` is there only when
/// the provider reported a usage object (`raw_usage`, read with its `usage_of`).
pub fn completion(
    ctx: &ResponseContext,
    id: Option<&str>,
    model: Option<&str>,
    choices: Vec<Value>,
    raw_usage: Option<&Value>,
    usage_of: fn(&Value) -> Option<Usage>,
) -> Translated {
    let raw_usage = raw_usage.filter(|u| u.is_object()).cloned();
    let usage = raw_usage.as_ref().and_then(usage_of);
    let mut body = json!({
        "id": id.filter(|id| !id.is_empty()).unwrap_or(&ctx.id),
        "object": "chat.completion",
        "created": ctx.created,
        "model": model.filter(|model| !model.is_empty()).unwrap_or(&ctx.model),
        "choices": choices,
    });
    if let Some(usage) = &usage {
        body["usage"] = usage.to_openai();
    }
    Translated { body, usage, raw_usage }
}

/// One choice of a whole answer.
pub fn choice(index: usize, message: Value, finish_reason: &str) -> Value {
    json!({ "index": index, "message": message, "logprobs": null, "finish_reason": finish_reason })
}

/// An OpenAI embeddings `list` with the provider's rows and usage (`prompt_tokens` 0 when the
/// provider reports none).
pub fn embeddings_list(data: Vec<Value>, ctx: &ResponseContext, usage: Option<Usage>, raw_usage: Option<Value>) -> Translated {
    let prompt = usage.map_or(0, |u| u.input_tokens);
    Translated {
        body: json!({
            "object": "list",
            "data": data,
            "model": ctx.model,
            "usage": { "prompt_tokens": prompt, "total_tokens": prompt },
        }),
        usage,
        raw_usage,
    }
}

/// Map a finish reason in a provider's vocabulary to OpenAI's, via a table `(theirs, ours)`;
/// anything unlisted becomes `stop`.
pub fn map_finish(reason: &str, table: &[(&str, &'static str)]) -> &'static str {
    table.iter().find(|(theirs, _)| *theirs == reason).map(|(_, ours)| *ours).unwrap_or("stop")
}

/// A provider's stop reason as an OpenAI finish reason via `table`; none is `stop`. A
/// `tool_calls` finish without any tool call to show (the gateway's forced JSON tool was the
/// only one) is a plain `stop` for the client.
pub fn finish_reason(reason: Option<&str>, table: &[(&str, &'static str)], has_tool_calls: bool) -> &'static str {
    match reason.map(|r| map_finish(r, table)) {
        Some("tool_calls") if !has_tool_calls => "stop",
        Some(reason) => reason,
        None => "stop",
    }
}

/// OpenAI `embedding` objects for a provider's vectors (one per input, in order): floats, or
/// base64 of little-endian f32 when the client asked for `encoding_format: "base64"`. `bad` makes
/// the provider's own invalid-response error.
pub fn embedding_data(
    vectors: &[&Value],
    request: &EmbeddingsRequest,
    bad: impl Fn(&str) -> GatewayError,
) -> Result<Vec<Value>, GatewayError> {
    if vectors.len() != request.inputs().len() {
        return Err(bad("response has a different number of embeddings than inputs"));
    }
    let base64 = request.wants_base64();
    vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let values: Vec<f32> = vector
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_f64().map(|f| f as f32)).collect())
                .ok_or_else(|| bad("an embedding is not a list of numbers"))?;
            let embedding = if base64 {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(values)
            };
            Ok(json!({ "object": "embedding", "index": index, "embedding": embedding }))
        })
        .collect()
}
