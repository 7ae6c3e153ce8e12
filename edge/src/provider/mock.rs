//! The built-in deterministic provider, so the gateway answers without any network.
//!
//! It produces byte-for-byte what an OpenAI-compatible upstream would: the same JSON shapes, the
//! same SSE framing (always with the usage chunk, as if `include_usage` had been injected), and
//! usage counted with a simple, stable estimate (about four characters per token plus OpenAI's
//! per-message overhead). The same request always gets the same answer, streamed or not.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::ModelRoute;
use crate::host::{Body, OutboundResponse};
use crate::openai::{ChatRequest, EmbeddingInput, EmbeddingsRequest};

/// Default vector size of mock embeddings.
pub const DEFAULT_DIMENSIONS: usize = 256;

/// Rough token count of a text: about four characters per token, at least one for non-empty text.
pub fn approx_tokens(text: &str) -> u64 {
    let chars = text.chars().count() as u64;
    chars.div_ceil(4)
}

/// The text of a message's `content`: a string, or the text parts of a content array.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn prompt_tokens(request: &ChatRequest) -> u64 {
    // OpenAI's documented accounting: 3 tokens per message, 1 more for a name, 3 to prime the reply.
    3 + request
        .messages
        .iter()
        .map(|m| {
            3 + approx_tokens(&content_text(m.get("content")))
                + m.get("name").map_or(0, |_| 1)
                + m.get("tool_calls").map_or(0, |t| approx_tokens(&t.to_string()))
        })
        .sum::<u64>()
}

/// The reply split into token-sized pieces, and whether it was cut short by the token cap.
fn reply_pieces(request: &ChatRequest) -> (Vec<String>, bool) {
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default();
    let echo: String = last_user.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect();
    let text = if echo.is_empty() {
        "This is a mock response from the edge gateway.".to_string()
    } else {
        format!("This is a mock response from the edge gateway. You said: {echo}")
    };
    let mut pieces: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
    let cap = request.max_output_tokens().unwrap_or(u64::MAX);
    let truncated = (pieces.len() as u64) > cap;
    if truncated {
        pieces.truncate(cap as usize);
    }
    (pieces, truncated)
}

fn completion_id(request: &ChatRequest) -> String {
    let digest = Sha256::digest(serde_json::to_vec(&request.messages).unwrap_or_default());
    format!("chatcmpl-mock{}", &hex::encode(digest)[..20])
}

fn usage_json(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

fn json_response(value: &Value) -> OutboundResponse {
    OutboundResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Body::Bytes(serde_json::to_vec(value).unwrap_or_default()),
    }
}

pub fn chat(route: &ModelRoute, request: &ChatRequest, now_ms: u64) -> OutboundResponse {
    let (pieces, truncated) = reply_pieces(request);
    let finish_reason = if truncated { "length" } else { "stop" };
    let choices = request.choices();
    let prompt = prompt_tokens(request);
    let completion = pieces.len() as u64 * choices;
    let id = completion_id(request);
    let created = now_ms / 1000;
    let model = &route.upstream_model;

    if !request.is_stream() {
        let content: String = pieces.concat();
        let choices: Vec<Value> = (0..choices)
            .map(|i| {
                json!({
                    "index": i,
                    "message": { "role": "assistant", "content": content, "refusal": null, "annotations": [] },
                    "logprobs": null,
                    "finish_reason": finish_reason
                })
            })
            .collect();
        return json_response(&json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage_json(prompt, completion),
            "service_tier": "default",
            "system_fingerprint": "fp_mock"
        }));
    }

    let chunk = |choices: Value, usage: Value| -> Vec<u8> {
        let value = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
            "choices": choices,
            "usage": usage
        });
        let mut out = Vec::new();
        crate::sse::encode(None, &value.to_string(), &mut out);
        out
    };
    let delta = |i: u64, delta: Value, finish: Value| json!([{ "index": i, "delta": delta, "logprobs": null, "finish_reason": finish }]);

    let mut events = Vec::new();
    for i in 0..choices {
        events.push(chunk(delta(i, json!({"role": "assistant", "content": "", "refusal": null}), Value::Null), Value::Null));
        for piece in &pieces {
            events.push(chunk(delta(i, json!({"content": piece}), Value::Null), Value::Null));
        }
        events.push(chunk(delta(i, json!({}), json!(finish_reason)), Value::Null));
    }
    events.push(chunk(json!([]), usage_json(prompt, completion)));
    events.push(b"data: [DONE]\n\n".to_vec());
    OutboundResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream; charset=utf-8".into())],
        body: Body::Stream(Box::pin(futures::stream::iter(events.into_iter().map(Ok)))),
    }
}

/// A deterministic unit vector for one input.
fn vector(seed: &[u8], dimensions: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(dimensions);
    let mut block = 0u32;
    while values.len() < dimensions {
        let mut hasher = Sha256::new();
        hasher.update(seed);
        hasher.update(block.to_le_bytes());
        let digest = hasher.finalize();
        for word in digest.chunks_exact(4) {
            if values.len() == dimensions {
                break;
            }
            let n = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            values.push((n as f64 / u32::MAX as f64 * 2.0 - 1.0) as f32);
        }
        block += 1;
    }
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    values.iter_mut().for_each(|v| *v /= norm);
    values
}

pub fn embeddings(route: &ModelRoute, request: &EmbeddingsRequest) -> OutboundResponse {
    let dimensions = request.dimensions().map_or(DEFAULT_DIMENSIONS, |d| d as usize);
    let mut tokens = 0;
    let data: Vec<Value> = request
        .inputs()
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let seed = match input {
                EmbeddingInput::Text(text) => {
                    tokens += approx_tokens(text);
                    text.as_bytes().to_vec()
                }
                EmbeddingInput::Tokens(ids) => {
                    tokens += ids.len() as u64;
                    serde_json::to_vec(ids).unwrap_or_default()
                }
            };
            let values = vector(&seed, dimensions);
            let embedding = if request.wants_base64() {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(values)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    json_response(&json!({
        "object": "list",
        "data": data,
        "model": route.upstream_model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelKind;
    use crate::openai::parse_request;
    use crate::sse::SseDecoder;
    use futures::StreamExt;

    fn route() -> ModelRoute {
        ModelRoute { name: "mock".into(), provider: "mock".into(), upstream_model: "mock-1".into(), kind: ModelKind::Chat, guard: None }
    }

    fn body_bytes(response: OutboundResponse) -> Vec<u8> {
        match response.body {
            Body::Bytes(b) => b,
            Body::Stream(s) => futures::executor::block_on(s.map(|c| c.unwrap()).concat()),
            Body::Empty => Vec::new(),
        }
    }

    #[test]
    fn streamed_and_whole_answers_agree() {
        let whole: ChatRequest = parse_request(br#"{"model":"mock","messages":[{"role":"user","content":"Hello there"}]}"#).unwrap();
        let streamed: ChatRequest =
            parse_request(br#"{"model":"mock","messages":[{"role":"user","content":"Hello there"}],"stream":true}"#).unwrap();
        let whole: Value = serde_json::from_slice(&body_bytes(chat(&route(), &whole, 1_700_000_000_000))).unwrap();
        let events = SseDecoder::new().push(&body_bytes(chat(&route(), &streamed, 1_700_000_000_000)));

        let mut text = String::new();
        let mut usage = Value::Null;
        assert_eq!(events.last().unwrap().data, "[DONE]");
        for event in &events[..events.len() - 1] {
            let chunk: Value = serde_json::from_str(&event.data).unwrap();
            if let Some(t) = chunk.pointer("/choices/0/delta/content").and_then(Value::as_str) {
                text.push_str(t);
            }
            if !chunk["usage"].is_null() {
                usage = chunk["usage"].clone();
            }
        }
        let first: Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(text, whole["choices"][0]["message"]["content"].as_str().unwrap());
        assert!(text.ends_with("You said: Hello there"));
        assert_eq!(usage, whole["usage"]);
        let u = &whole["usage"];
        assert_eq!(u["total_tokens"].as_u64(), Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()));
    }

    #[test]
    fn max_tokens_truncates_with_length_finish() {
        let request: ChatRequest =
            parse_request(br#"{"model":"mock","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"n":2}"#).unwrap();
        let value: Value = serde_json::from_slice(&body_bytes(chat(&route(), &request, 0))).unwrap();
        assert_eq!(value["choices"][1]["finish_reason"], "length");
        assert_eq!(value["usage"]["completion_tokens"], 4);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors_in_both_encodings() {
        let float: EmbeddingsRequest = parse_request(br#"{"model":"e","input":["a","b"],"dimensions":8}"#).unwrap();
        let b64: EmbeddingsRequest =
            parse_request(br#"{"model":"e","input":["a","b"],"dimensions":8,"encoding_format":"base64"}"#).unwrap();
        let float: Value = serde_json::from_slice(&body_bytes(embeddings(&route(), &float))).unwrap();
        let b64: Value = serde_json::from_slice(&body_bytes(embeddings(&route(), &b64))).unwrap();
        let v: Vec<f32> = serde_json::from_value(float["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(v.len(), 8);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["embedding"].as_str().unwrap()).unwrap();
        let decoded: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(decoded, v);
        assert_ne!(float["data"][0]["embedding"], float["data"][1]["embedding"]);
        assert_eq!(float["usage"]["prompt_tokens"], 2);
    }
}
