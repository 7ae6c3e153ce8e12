//! Building OpenAI `chat.completion.chunk` objects from any provider's stream events.
//!
//! Every translating stream decoder writes through one [`ChunkWriter`], so the invariants the
//! clients rely on hold for all of them: `role: "assistant"` on the first delta of each choice,
//! one stable `index` per tool call (in order of first appearance, whatever the provider numbers
//! its content blocks), the tool call's `id`, `type` and `name` only on its first delta, a
//! `finish_reason` chunk, and the usage chunk with `choices: []` last.

use serde_json::{json, Value};

use super::call::ResponseContext;
use crate::openai::Usage;

/// One choice's stream state (providers that stream several candidates use several).
#[derive(Debug, Default)]
struct ChoiceState {
    role_sent: bool,
    /// Provider-side keys of the tool calls seen, in order: the position is the OpenAI index.
    tool_keys: Vec<u64>,
    finished: bool,
}

#[derive(Debug)]
pub struct ChunkWriter {
    id: String,
    created: u64,
    model: String,
    choices: Vec<ChoiceState>,
}

impl ChunkWriter {
    pub fn new(ctx: &ResponseContext) -> Self {
        ChunkWriter { id: ctx.id.clone(), created: ctx.created, model: ctx.model.clone(), choices: Vec::new() }
    }

    /// Use the provider's own response id / model once known (e.g. from a `message_start`).
    pub fn set_id(&mut self, id: &str) {
        if !id.is_empty() {
            self.id = id.to_string();
        }
    }

    pub fn set_model(&mut self, model: &str) {
        if !model.is_empty() {
            self.model = model.to_string();
        }
    }

    fn choice(&mut self, index: usize) -> &mut ChoiceState {
        if self.choices.len() <= index {
            self.choices.resize_with(index + 1, ChoiceState::default);
        }
        &mut self.choices[index]
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// A delta for choice `index`, with the role added if it is the choice's first.
    fn delta(&mut self, index: usize, mut delta: serde_json::Map<String, Value>, out: &mut Vec<Value>) {
        let state = self.choice(index);
        if !state.role_sent {
            state.role_sent = true;
            delta.insert("role".into(), json!("assistant"));
        }
        let chunk = self.chunk(json!([{ "index": index, "delta": Value::Object(delta), "logprobs": null, "finish_reason": null }]));
        out.push(chunk);
    }

    /// Announce the assistant's turn before any content (providers that open with a start event).
    pub fn start(&mut self, index: usize, out: &mut Vec<Value>) {
        if !self.choice(index).role_sent {
            let mut delta = serde_json::Map::new();
            delta.insert("content".into(), json!(""));
            self.delta(index, delta, out);
        }
    }

    /// Generated text.
    pub fn text(&mut self, index: usize, text: &str, out: &mut Vec<Value>) {
        if text.is_empty() {
            return;
        }
        let mut delta = serde_json::Map::new();
        delta.insert("content".into(), json!(text));
        self.delta(index, delta, out);
    }

    /// Reasoning ("thinking") text, in the `reasoning_content` delta field used by DeepSeek,
    /// vLLM and others; OpenAI SDKs keep unknown delta fields.
    pub fn reasoning(&mut self, index: usize, text: &str, out: &mut Vec<Value>) {
        if text.is_empty() {
            return;
        }
        let mut delta = serde_json::Map::new();
        delta.insert("reasoning_content".into(), json!(text));
        self.delta(index, delta, out);
    }

    /// A tool call begins. `key` is the provider's identifier for it (content block index, part
    /// number, ...). Returns the OpenAI tool-call index.
    pub fn tool_call_start(&mut self, index: usize, key: u64, id: &str, name: &str, out: &mut Vec<Value>) -> usize {
        let state = self.choice(index);
        let position = match state.tool_keys.iter().position(|k| *k == key) {
            Some(p) => p,
            None => {
                state.tool_keys.push(key);
                state.tool_keys.len() - 1
            }
        };
        let mut delta = serde_json::Map::new();
        delta.insert(
            "tool_calls".into(),
            json!([{ "index": position, "id": id, "type": "function", "function": { "name": name, "arguments": "" } }]),
        );
        self.delta(index, delta, out);
        position
    }

    /// A fragment of a tool call's JSON arguments. Unknown keys start an anonymous call first.
    pub fn tool_call_arguments(&mut self, index: usize, key: u64, fragment: &str, out: &mut Vec<Value>) {
        if fragment.is_empty() {
            return;
        }
        let known = self.choice(index).tool_keys.iter().position(|k| *k == key);
        let position = match known {
            Some(p) => p,
            None => self.tool_call_start(index, key, &format!("call_{key}"), "", out),
        };
        let mut delta = serde_json::Map::new();
        delta.insert("tool_calls".into(), json!([{ "index": position, "function": { "arguments": fragment } }]));
        self.delta(index, delta, out);
    }

    /// Whether choice `index` has made any tool call.
    pub fn has_tool_calls(&self, index: usize) -> bool {
        self.choices.get(index).is_some_and(|c| !c.tool_keys.is_empty())
    }

    /// The choice ended. `reason` is an OpenAI finish reason (`stop`, `length`, `tool_calls`,
    /// `content_filter`). A second finish for the same choice is ignored.
    pub fn finish(&mut self, index: usize, reason: &str, out: &mut Vec<Value>) {
        let state = self.choice(index);
        if state.finished {
            return;
        }
        state.finished = true;
        let role_sent = state.role_sent;
        state.role_sent = true;
        let delta = if role_sent { json!({}) } else { json!({ "role": "assistant", "content": "" }) };
        let chunk = self.chunk(json!([{ "index": index, "delta": delta, "logprobs": null, "finish_reason": reason }]));
        out.push(chunk);
    }

    /// Whether choice `index` has finished.
    pub fn finished(&self, index: usize) -> bool {
        self.choices.get(index).is_some_and(|c| c.finished)
    }

    /// The final usage chunk (`choices: []`).
    pub fn usage(&self, usage: &Usage, out: &mut Vec<Value>) {
        let mut chunk = self.chunk(json!([]));
        chunk["usage"] = usage.to_openai();
        out.push(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> ChunkWriter {
        ChunkWriter::new(&ResponseContext { id: "chatcmpl-1".into(), created: 7, model: "m".into() })
    }

    #[test]
    fn role_only_on_the_first_delta_and_tool_indexes_follow_first_appearance() {
        let mut w = writer();
        let mut out = Vec::new();
        w.text(0, "Hi", &mut out);
        w.text(0, " there", &mut out);
        assert_eq!(w.tool_call_start(0, 5, "toolu_a", "get_weather", &mut out), 0);
        assert_eq!(w.tool_call_start(0, 2, "toolu_b", "get_time", &mut out), 1);
        w.tool_call_arguments(0, 5, "{\"city\":", &mut out);
        w.tool_call_arguments(0, 2, "{}", &mut out);
        w.finish(0, "tool_calls", &mut out);
        w.finish(0, "stop", &mut out);
        w.usage(&Usage::from_parts(10, 0, 0, 5, 0), &mut out);
        assert_eq!(out[0]["choices"][0]["delta"], json!({"role": "assistant", "content": "Hi"}));
        assert_eq!(out[1]["choices"][0]["delta"], json!({"content": " there"}));
        assert_eq!(out[2]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(out[3]["choices"][0]["delta"]["tool_calls"][0]["id"], "toolu_b");
        assert_eq!(out[4]["choices"][0]["delta"]["tool_calls"][0], json!({"index": 0, "function": {"arguments": "{\"city\":"}}));
        assert_eq!(out[5]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(out[6]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out.len(), 8, "the second finish is ignored");
        assert_eq!(out[7]["choices"], json!([]));
        assert_eq!(out[7]["usage"]["total_tokens"], 15);
    }

    #[test]
    fn a_finish_without_content_still_carries_the_role() {
        let mut w = writer();
        let mut out = Vec::new();
        w.finish(0, "stop", &mut out);
        assert_eq!(out[0]["choices"][0]["delta"]["role"], "assistant");
    }
}
