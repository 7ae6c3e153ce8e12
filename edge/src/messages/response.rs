//! A whole OpenAI `chat.completion` rendered as an Anthropic `message`, and the pieces of a
//! message (id, envelope, usage, stop reason, `tool_use` block) the stream encoder reuses.

use serde_json::{json, Value};

use crate::openai::Usage;

/// An Anthropic message id: the completion's id, prefixed with `msg_` unless it has it.
pub(super) fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else if id.is_empty() {
        "msg_gateway".to_string()
    } else {
        format!("msg_{id}")
    }
}

/// An Anthropic `message` object. The stream's `message_start` sends the same envelope, empty and
/// without a stop reason, so both are built here.
pub(super) fn message_envelope(id: &str, model: &str, content: Vec<Value>, reason: Option<&str>, usage: &Usage) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": null,
        "usage": anthropic_usage(usage),
    })
}

/// A `tool_use` content block (the stream starts it with an empty `input`).
pub(super) fn tool_use_block(id: &str, name: &str, input: Value) -> Value {
    json!({ "type": "tool_use", "id": id, "name": name, "input": input })
}

/// Anthropic's `usage`: its `input_tokens` excludes cache reads and writes, which it reports
/// separately, while the gateway's [`Usage::input_tokens`] (OpenAI's `prompt_tokens`) includes
/// them; subtracting here keeps `input + cache_read + cache_creation` equal to the real total.
pub(super) fn anthropic_usage(usage: &Usage) -> Value {
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
pub(super) fn stop_reason(finish: Option<&str>, has_tool_calls: bool, refused: bool) -> &'static str {
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
        content.push(tool_use_block(
            call.get("id").and_then(Value::as_str).unwrap_or_default(),
            function.get("name").and_then(Value::as_str).unwrap_or_default(),
            tool_input(function.get("arguments")),
        ));
    }
    let usage = usage.or_else(|| completion.get("usage").and_then(Usage::from_openai)).unwrap_or_default();
    let reason = stop_reason(choice.get("finish_reason").and_then(Value::as_str), !calls.is_empty(), refusal.is_some());
    message_envelope(&message_id(completion.get("id").and_then(Value::as_str).unwrap_or_default()), model, content, Some(reason), &usage)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
