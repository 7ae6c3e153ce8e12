//! The OpenAI answer shapes every translating provider builds from its own response: the
//! assistant message and the embeddings `list`, so that null content, optional fields and the
//! usage envelope are decided once.

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
