//! The OpenAI `chat.completion.chunk` stream encoded as Anthropic's stream events
//! (`message_start`, sequential content blocks, `message_delta`, `message_stop`, or `error`).

use serde_json::{json, Value};

use super::error::stream_error_body;
use super::response::{anthropic_usage, message_envelope, message_id, stop_reason, tool_use_block};
use crate::error::GatewayError;
use crate::openai::Usage;

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
        event("error", &stream_error_body(error), out);
        self.done = true;
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = message_envelope(&self.id, &self.model, Vec::new(), None, &Usage::default());
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
                        tool_use_block(id, name, json!({}))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::chunk::ChunkWriter;
    use crate::provider::ResponseContext;
    use crate::sse::SseDecoder;

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
