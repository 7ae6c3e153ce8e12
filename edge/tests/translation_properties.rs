//! Property tests for the translation contract (issue 3), independent of the pipeline: they call
//! the provider dispatch (`provider::chat`, `provider::chat_response`, `provider::stream_decoder`),
//! the stream stage (`stream::translate_stream`) and the `/v1/messages` side (`messages`)
//! directly.
//!
//! 1. Any valid OpenAI chat request translates for every provider kind without panicking (Ok,
//!    or a typed client error); random and mutated JSON never panics the parsers or translators.
//! 2. Stream translation is chunking-independent for every provider's wire format, for the
//!    decoders alone and through the stream stage for both client formats (OpenAI chunks and
//!    Anthropic events), and the translated chunks honour the chunk contract.
//! 3. Usage is never double counted: cache reads and writes are added to the prompt once, and
//!    survive the round trip back to Anthropic's usage shape.
//!
//! No property-testing crate: a small xorshift generator, seeded per case. Every failure names
//! its seed; rerun one case with `PROP_SEED=0x... cargo test -p edge --test translation_properties
//! <test name>`; `PROP_CASES=n` changes the number of cases (300 by default).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use edge::config::{
    AnthropicConfig, AzureConfig, BedrockConfig, CohereConfig, GeminiApi, GeminiConfig, ModelKind, ModelRoute, OpenAiFlavor, OpenAiProviderConfig,
    ProviderConfig, WorkersAiBindingConfig,
};
use edge::event::Outcome;
use edge::messages::{parse_messages_request, to_anthropic_message, AnthropicEventEncoder};
use edge::openai::{parse_request, ChatRequest, EmbeddingsRequest, Usage};
use edge::provider::bedrock::eventstream::encode_message;
use edge::provider::{self, Dispatch, ProviderContext, ResponseContext, StreamFault};
use edge::sse::SseDecoder;
use edge::pipeline::stream::{translate_stream, ClientFormat, StreamEnd, StreamPlan};
use edge::testing::MemoryHost;
use edge::ByteStream;
use futures::StreamExt;
use serde_json::{json, Map, Value};

// =============================================================================================
// Generator and runner
// =============================================================================================

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n (0 when n is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// lo..=hi.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Run `property` for every case; a failing case is reported with its seed.
#[allow(clippy::disallowed_methods)] // PROP_SEED / PROP_CASES: knobs of this test binary only
fn forall(name: &str, property: impl Fn(&mut Rng)) {
    let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let seeds: Vec<u64> = match std::env::var("PROP_SEED") {
        Ok(s) => {
            let s = s.trim();
            let seed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            vec![seed.expect("PROP_SEED must be a number (decimal or 0x-hex)")]
        }
        Err(_) => {
            let cases = std::env::var("PROP_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300u64);
            (0..cases).map(|i| splitmix(salt.wrapping_add(i))).collect()
        }
    };
    for seed in seeds {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| property(&mut Rng::new(seed)))) {
            panic!(
                "property `{name}` failed for seed {seed:#018x}: {}\n  rerun: PROP_SEED={seed:#x} cargo test -p edge --test translation_properties",
                panic_text(&*payload)
            );
        }
    }
}

// ----- strings and JSON ------------------------------------------------------------------------

/// Pieces random text is made of: multi-byte UTF-8 (2, 3 and 4 bytes, combining marks, ZWJ
/// sequences, RTL), control characters, and text that looks like the wire formats themselves.
const PIECES: &[&str] = &[
    "a", "Hello", " world", "ü", "é", "e\u{301}", "日本語", "🦀", "👍🏽", "👨‍👩‍👧", "مرحبا", "\n", "\r\n", "\r", "\t", "\"", "\\", "\u{0}", "\u{7f}",
    "\u{2028}", "\u{feff}", "data: x\n\n", "event: ping\n", ": c", "[DONE]", "{\"a\":1}", "</s>", "\"usage\":null", "error", "  ", "0",
];

/// Random text; empty one time in ten.
fn text(rng: &mut Rng) -> String {
    let n = if rng.chance(10) { 0 } else { 1 + rng.below(3) };
    (0..n).map(|_| *rng.pick(PIECES)).collect()
}

fn some_text(rng: &mut Rng) -> String {
    let mut s = text(rng);
    if s.is_empty() {
        let piece = rng.pick(PIECES);
        s.push_str(piece);
    }
    s
}

const KEYS: &[&str] = &["city", "unit", "q", "n", "ünï", "a b", "", "nested", "list", "$ref", "type"];

fn json_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth >= 3 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => match rng.below(10) {
            0 => json!(u64::MAX),
            1 => json!(i64::MIN),
            _ => json!(rng.between(0, 1000) as i64 - 500),
        },
        // Quarters print and parse back exactly.
        3 => json!(rng.between(0, 400) as f64 / 4.0 - 50.0),
        4 => json!(text(rng)),
        5 => {
            let n = rng.below(4);
            Value::Array((0..n).map(|_| json_value(rng, depth + 1)).collect())
        }
        _ => json_object(rng, depth + 1),
    }
}

fn json_object(rng: &mut Rng, depth: usize) -> Value {
    let mut map = Map::new();
    for _ in 0..rng.below(4) {
        let key = if rng.chance(80) { rng.pick(KEYS).to_string() } else { text(rng) };
        let value = json_value(rng, depth + 1);
        map.insert(key, value);
    }
    Value::Object(map)
}

// =============================================================================================
// Requests
// =============================================================================================

const TOOL_NAMES: &[&str] = &["get_weather", "get_time", "search", "calc_2", "do-it", "lookup_order"];
const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];
const BASE64: &[&str] = &["iVBORw0KGgo=", "R0lGODlhAQABAAAAACw=", "/9j/4AAQSkZJRg==", "UklGRhYAAABXRUJQ"];
const URLS: &[&str] = &["https://example.com/cat.png", "https://img.example/%C3%BC/a%20b.jpg?x=1&y=2", "https://example.org/image"];

/// A JSON Schema: every type, enums, formats, arrays, nested objects, nullable unions, and
/// (when the root has `$defs`) recursive `$ref`s.
fn schema(rng: &mut Rng, depth: usize, defs: bool) -> Value {
    let kinds = if depth >= 3 { 5 } else { 9 };
    let mut s = match rng.below(kinds) {
        0 => {
            let mut s = json!({"type": "string"});
            match rng.below(4) {
                0 => s["enum"] = json!(["celsius", "fahrenheit", "ü"]),
                1 => s["format"] = json!(*rng.pick(&["date-time", "email", "uri", "enum"])),
                2 => s["minLength"] = json!(1),
                _ => {}
            }
            s
        }
        1 => json!({"type": "integer", "minimum": 0, "maximum": 100}),
        2 => json!({"type": "number"}),
        3 => json!({"type": "boolean"}),
        4 => json!({"type": ["string", "null"]}),
        5 => json!({"type": "array", "items": schema(rng, depth + 1, defs), "minItems": 1}),
        6 => object_schema(rng, depth + 1, defs),
        7 => json!({"anyOf": [schema(rng, depth + 1, defs), {"type": "null"}]}),
        _ if defs => json!({"$ref": "#/$defs/node"}),
        _ => json!({"allOf": [schema(rng, depth + 1, defs)]}),
    };
    if rng.chance(30) {
        s["description"] = json!(text(rng));
    }
    s
}

fn object_schema(rng: &mut Rng, depth: usize, defs: bool) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for _ in 0..rng.below(4) {
        let name = rng.pick(KEYS).to_string();
        if rng.chance(50) {
            required.push(json!(name.clone()));
        }
        let prop = schema(rng, depth, defs);
        properties.insert(name, prop);
    }
    let mut s = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        required.dedup();
        s["required"] = Value::Array(required);
    }
    if rng.chance(40) {
        s["additionalProperties"] = json!(false);
    }
    s
}

fn tool_parameters(rng: &mut Rng) -> Value {
    let defs = rng.chance(20);
    let mut s = object_schema(rng, 0, defs);
    if defs {
        s["$defs"] = json!({"node": {"type": "object", "properties": {"value": {"type": "string"}, "next": {"$ref": "#/$defs/node"}}}});
    }
    s
}

fn text_parts(rng: &mut Rng) -> Value {
    let n = 1 + rng.below(3);
    Value::Array((0..n).map(|_| json!({"type": "text", "text": text(rng)})).collect())
}

fn text_content(rng: &mut Rng) -> Value {
    if rng.chance(60) {
        json!(text(rng))
    } else {
        text_parts(rng)
    }
}

fn data_url(rng: &mut Rng) -> String {
    format!("data:{};base64,{}", rng.pick(IMAGE_TYPES), rng.pick(BASE64))
}

fn user_content(rng: &mut Rng) -> Value {
    if rng.chance(45) {
        return json!(text(rng));
    }
    let n = 1 + rng.below(4);
    let parts = (0..n)
        .map(|_| match rng.below(10) {
            0..=5 => json!({"type": "text", "text": text(rng)}),
            6 | 7 => {
                let mut image = json!({"url": *rng.pick(URLS)});
                if rng.chance(50) {
                    image["detail"] = json!(*rng.pick(&["low", "high", "auto"]));
                }
                json!({"type": "image_url", "image_url": image})
            }
            // Valid OpenAI parts that most providers cannot take: a typed error, not a panic.
            _ if rng.chance(15) => json!({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}),
            _ if rng.chance(15) => json!({"type": "file", "file": {"file_id": "file-abc123"}}),
            _ => json!({"type": "image_url", "image_url": {"url": data_url(rng)}}),
        })
        .collect();
    Value::Array(parts)
}

fn arguments(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => String::new(),
        1 => "{}".into(),
        _ => json_object(rng, 1).to_string(),
    }
}

/// A valid OpenAI chat request with a random mix of everything the API has.
fn chat_request_json(rng: &mut Rng) -> Value {
    let mut names: Vec<&str> = Vec::new();
    for _ in 0..rng.below(4) {
        let name = *rng.pick(TOOL_NAMES);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut messages = Vec::new();
    for _ in 0..rng.below(3) {
        let role = *rng.pick(&["system", "developer"]);
        messages.push(json!({"role": role, "content": text_content(rng)}));
    }
    let mut call_no = 0;
    for _ in 0..1 + rng.below(4) {
        let mut user = json!({"role": "user", "content": user_content(rng)});
        if rng.chance(10) {
            user["name"] = json!("alice");
        }
        messages.push(user);
        if !rng.chance(55) {
            continue;
        }
        let mut assistant = json!({"role": "assistant"});
        match rng.below(4) {
            0 => assistant["content"] = Value::Null,
            1 => assistant["content"] = text_parts(rng),
            2 => {}
            _ => assistant["content"] = json!(text(rng)),
        }
        if rng.chance(50) {
            let n = 1 + rng.below(3);
            let mut ids = Vec::new();
            let calls: Vec<Value> = (0..n)
                .map(|_| {
                    call_no += 1;
                    let id = format!("call_{call_no}");
                    ids.push(id.clone());
                    let name = if names.is_empty() { *rng.pick(TOOL_NAMES) } else { *rng.pick(&names) };
                    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments(rng)}})
                })
                .collect();
            assistant["tool_calls"] = Value::Array(calls);
            if rng.chance(20) {
                assistant["refusal"] = Value::Null;
            }
            messages.push(assistant);
            if rng.chance(30) {
                ids.reverse();
            }
            for id in ids {
                let content = if rng.chance(70) { json!(text(rng)) } else { text_parts(rng) };
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
        } else if rng.chance(8) {
            // The deprecated function-calling shape.
            assistant["function_call"] = json!({"name": *rng.pick(TOOL_NAMES), "arguments": arguments(rng)});
            messages.push(assistant);
            messages.push(json!({"role": "function", "name": *rng.pick(TOOL_NAMES), "content": text(rng)}));
        } else {
            if assistant.get("content").is_none_or(Value::is_null) {
                assistant["content"] = json!(text(rng));
            }
            messages.push(assistant);
        }
    }
    if rng.chance(10) {
        messages.push(json!({"role": "assistant", "content": text(rng)}));
    }

    let models = ["gpt-4o", "m", "claude-sonnet-4-5", "modèle/ü", "@cf/meta/llama-3.1-8b-instruct"];
    let mut request = json!({"model": *rng.pick(&models), "messages": messages});
    let r = request.as_object_mut().unwrap();
    if !names.is_empty() && rng.chance(70) {
        let tools: Vec<Value> = names
            .iter()
            .map(|name| {
                let mut function = json!({"name": name});
                if rng.chance(70) {
                    function["description"] = json!(text(rng));
                }
                if rng.chance(85) {
                    function["parameters"] = tool_parameters(rng);
                }
                if rng.chance(20) {
                    function["strict"] = json!(rng.chance(50));
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        r.insert("tools".into(), Value::Array(tools));
        match rng.below(6) {
            0 => {}
            1 => {
                r.insert("tool_choice".into(), json!("auto"));
            }
            2 => {
                r.insert("tool_choice".into(), json!("none"));
            }
            3 => {
                r.insert("tool_choice".into(), json!("required"));
            }
            _ => {
                r.insert("tool_choice".into(), json!({"type": "function", "function": {"name": *rng.pick(&names)}}));
            }
        }
        if rng.chance(30) {
            r.insert("parallel_tool_calls".into(), json!(rng.chance(50)));
        }
    }
    match rng.below(6) {
        0 => {
            r.insert("response_format".into(), json!({"type": "json_object"}));
        }
        1 => {
            let mut spec = json!({"name": "answer", "schema": object_schema(rng, 1, false)});
            if rng.chance(50) {
                spec["strict"] = json!(rng.chance(50));
            }
            if rng.chance(30) {
                spec["description"] = json!(text(rng));
            }
            r.insert("response_format".into(), json!({"type": "json_schema", "json_schema": spec}));
        }
        2 => {
            r.insert("response_format".into(), json!({"type": "text"}));
        }
        _ => {}
    }
    match rng.below(4) {
        0 => {
            r.insert("stop".into(), json!(some_text(rng)));
        }
        1 => {
            let n = rng.below(5);
            r.insert("stop".into(), Value::Array((0..n).map(|_| json!(some_text(rng))).collect()));
        }
        _ => {}
    }
    if rng.chance(50) {
        r.insert("temperature".into(), json!(rng.between(0, 20) as f64 / 10.0));
    }
    if rng.chance(30) {
        r.insert("top_p".into(), json!(rng.between(0, 4) as f64 / 4.0));
    }
    match rng.below(5) {
        0 => {
            r.insert("max_tokens".into(), json!(rng.between(1, 8192)));
        }
        1 => {
            r.insert("max_completion_tokens".into(), json!(rng.between(1, 8192)));
        }
        2 => {
            r.insert("max_tokens".into(), json!(rng.between(1, 8192)));
            r.insert("max_completion_tokens".into(), json!(rng.between(1, 8192)));
        }
        _ => {}
    }
    if rng.chance(10) {
        r.insert("n".into(), json!(rng.between(1, 3)));
    }
    for (key, value) in [
        ("seed", json!(rng.between(0, 1 << 40))),
        ("presence_penalty", json!(rng.between(0, 8) as f64 / 2.0 - 2.0)),
        ("frequency_penalty", json!(rng.between(0, 8) as f64 / 2.0 - 2.0)),
        ("user", json!("user-1234")),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(rng.between(0, 20))),
        ("metadata", json!({"k": "v"})),
        ("store", json!(false)),
        ("service_tier", json!("auto")),
        ("reasoning_effort", json!(*rng.pick(&["low", "medium", "high"]))),
        ("logit_bias", json!({"50256": -100})),
    ] {
        if rng.chance(10) {
            r.insert(key.into(), value);
        }
    }
    match rng.below(4) {
        0 => {
            r.insert("stream".into(), json!(false));
        }
        1 => {
            r.insert("stream".into(), json!(true));
        }
        2 => {
            r.insert("stream".into(), json!(true));
            r.insert("stream_options".into(), json!({"include_usage": rng.chance(50)}));
        }
        _ => {}
    }
    request
}

/// Change `value` somewhere: replace a random subtree with random JSON, drop a member or an
/// element, or change a leaf's type.
fn mutate(rng: &mut Rng, value: &mut Value) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.chance(75) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            if rng.chance(15) {
                map.remove(&key);
            } else {
                mutate(rng, map.get_mut(&key).unwrap());
            }
        }
        Value::Array(items) if !items.is_empty() && rng.chance(75) => {
            let at = rng.below(items.len());
            if rng.chance(15) {
                items.remove(at);
            } else {
                mutate(rng, &mut items[at]);
            }
        }
        _ => *value = json_value(rng, 1),
    }
}

/// A random Anthropic Messages request (valid more often than not).
fn anthropic_request_json(rng: &mut Rng) -> Value {
    let mut messages = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for turn in 0..1 + rng.below(5) {
        if turn % 2 == 0 {
            let mut blocks: Vec<Value> = pending
                .drain(..)
                .map(|id| {
                    let content = if rng.chance(50) { json!(text(rng)) } else { json!([{"type": "text", "text": some_text(rng)}]) };
                    json!({"type": "tool_result", "tool_use_id": id, "content": content, "is_error": rng.chance(10)})
                })
                .collect();
            for _ in 0..rng.below(3) {
                blocks.push(match rng.below(4) {
                    0 => json!({"type": "image", "source": {"type": "base64", "media_type": *rng.pick(IMAGE_TYPES), "data": *rng.pick(BASE64)}}),
                    1 => json!({"type": "image", "source": {"type": "url", "url": *rng.pick(URLS)}}),
                    _ => json!({"type": "text", "text": some_text(rng)}),
                });
            }
            let content = if blocks.is_empty() { json!(some_text(rng)) } else { Value::Array(blocks) };
            messages.push(json!({"role": "user", "content": content}));
        } else {
            let mut blocks = vec![json!({"type": "text", "text": some_text(rng)})];
            for i in 0..rng.below(3) {
                let id = format!("toolu_{turn}_{i}");
                pending.push(id.clone());
                blocks.push(json!({"type": "tool_use", "id": id, "name": *rng.pick(TOOL_NAMES), "input": json_object(rng, 1)}));
            }
            messages.push(json!({"role": "assistant", "content": blocks}));
        }
    }
    let mut request = json!({"model": "claude-client", "max_tokens": rng.between(1, 4096), "messages": messages});
    if rng.chance(50) {
        request["system"] = if rng.chance(50) {
            json!(text(rng))
        } else {
            json!([{"type": "text", "text": some_text(rng), "cache_control": {"type": "ephemeral"}}])
        };
    }
    if rng.chance(50) {
        let tools: Vec<Value> = TOOL_NAMES[..1 + rng.below(3)]
            .iter()
            .map(|name| json!({"name": name, "description": text(rng), "input_schema": tool_parameters(rng)}))
            .collect();
        request["tools"] = Value::Array(tools);
        request["tool_choice"] = match rng.below(4) {
            0 => json!({"type": "auto"}),
            1 => json!({"type": "any"}),
            2 => json!({"type": "none"}),
            _ => json!({"type": "tool", "name": TOOL_NAMES[0]}),
        };
    }
    for (key, value) in [
        ("stop_sequences", json!([some_text(rng)])),
        ("temperature", json!(rng.between(0, 4) as f64 / 4.0)),
        ("top_p", json!(0.5)),
        ("top_k", json!(rng.between(1, 100))),
        ("metadata", json!({"user_id": "u-1"})),
        ("stream", json!(rng.chance(50))),
        ("thinking", json!({"type": "enabled", "budget_tokens": 1024})),
        ("service_tier", json!("auto")),
    ] {
        if rng.chance(25) {
            request[key] = value;
        }
    }
    request
}

// ----- providers ------------------------------------------------------------------------------

/// One configuration of every provider kind the gateway has.
fn providers() -> Vec<(&'static str, ProviderConfig, &'static str)> {
    let openai = |flavor: OpenAiFlavor, key: bool| {
        ProviderConfig::OpenAi(OpenAiProviderConfig {
            base_url: "https://api.example.com/v1".into(),
            api_key_secret: key.then(|| "OPENAI_KEY".to_string()),
            timeout_ms: None,
            flavor,
        })
    };
    vec![
        ("openai", openai(OpenAiFlavor::OpenAi, true), "gpt-4o"),
        ("mistral", openai(OpenAiFlavor::Mistral, true), "mistral-large-latest"),
        ("groq", openai(OpenAiFlavor::Groq, true), "llama-3.3-70b-versatile"),
        ("together", openai(OpenAiFlavor::Together, true), "meta-llama/Llama-3-70b"),
        ("deepseek", openai(OpenAiFlavor::DeepSeek, true), "deepseek-chat"),
        ("ollama", openai(OpenAiFlavor::Ollama, false), "llama3"),
        ("vllm", openai(OpenAiFlavor::Vllm, false), "qwen"),
        ("workers_ai_rest", openai(OpenAiFlavor::WorkersAi, true), "@cf/meta/llama-3.1-8b-instruct"),
        ("compatible", openai(OpenAiFlavor::Compatible, false), "local"),
        (
            "azure",
            ProviderConfig::Azure(AzureConfig {
                base_url: "https://res.openai.azure.com".into(),
                api_version: "2024-10-21".into(),
                api_key_secret: "AZURE_KEY".into(),
                timeout_ms: None,
            }),
            "my deployment/ü",
        ),
        (
            "anthropic",
            ProviderConfig::Anthropic(AnthropicConfig {
                base_url: "https://api.anthropic.com".into(),
                api_key_secret: "ANTHROPIC_KEY".into(),
                version: "2023-06-01".into(),
                timeout_ms: None,
            }),
            "claude-sonnet-4-5",
        ),
        (
            "gemini",
            ProviderConfig::Gemini(GeminiConfig {
                api: GeminiApi::GenerativeLanguage { base_url: "https://generativelanguage.googleapis.com".into(), api_key_secret: "GEMINI_KEY".into() },
                timeout_ms: None,
            }),
            "gemini-2.5-flash",
        ),
        (
            "vertex",
            ProviderConfig::Gemini(GeminiConfig {
                api: GeminiApi::Vertex {
                    base_url: "https://europe-west4-aiplatform.googleapis.com".into(),
                    project: "my-project".into(),
                    location: "europe-west4".into(),
                    access_token_secret: "VERTEX_TOKEN".into(),
                },
                timeout_ms: None,
            }),
            "gemini-2.5-pro",
        ),
        (
            "bedrock",
            ProviderConfig::Bedrock(BedrockConfig {
                region: "us-east-1".into(),
                base_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
                access_key_id_secret: "AWS_KEY_ID".into(),
                secret_access_key_secret: "AWS_SECRET".into(),
                session_token_secret: Some("AWS_SESSION".into()),
                timeout_ms: None,
            }),
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
        (
            "cohere",
            ProviderConfig::Cohere(CohereConfig { base_url: "https://api.cohere.com".into(), api_key_secret: "COHERE_KEY".into(), timeout_ms: None }),
            "command-a-03-2025",
        ),
        (
            "workers_ai_binding",
            ProviderConfig::WorkersAiBinding(WorkersAiBindingConfig { binding: "AI".into(), timeout_ms: None }),
            "@cf/meta/llama-3.1-8b-instruct",
        ),
        ("mock", ProviderConfig::Mock, "mock-model"),
    ]
}

fn route(provider: &str, upstream_model: &str) -> ModelRoute {
    ModelRoute { name: "m".into(), provider: provider.into(), upstream_model: upstream_model.into(), kind: ModelKind::Chat, guard: None }
}

fn secret(name: &str) -> Option<String> {
    Some(format!("secret-value-{name}"))
}

/// Translate `request` for every provider kind. `valid`: the request is a valid OpenAI request,
/// so an error must be a client error (4xx) and the OpenAI family must accept it.
fn translate_everywhere(request: &ChatRequest, valid: bool) {
    for (name, provider, upstream_model) in providers() {
        let route = route(name, upstream_model);
        let ctx = ProviderContext { provider_name: name, now_ms: 1_700_000_000_000, secret: &secret };
        let outcome = catch_unwind(AssertUnwindSafe(|| provider::chat(&provider, &route, request.clone(), &ctx)));
        let request_json = || serde_json::to_string(request).unwrap_or_default();
        let result = match outcome {
            Ok(result) => result,
            Err(payload) => panic!("provider `{name}` panicked ({}) on {}", panic_text(&*payload), request_json()),
        };
        match result {
            Ok(Dispatch::Upstream(out)) => {
                assert!(out.url.starts_with("https://") || out.url.starts_with("http://"), "{name}: url {}", out.url);
                let body: Value = serde_json::from_slice(&out.body).unwrap_or_else(|e| panic!("{name}: upstream body is not JSON ({e})"));
                assert!(body.is_object(), "{name}: upstream body is not an object");
                if matches!(provider, ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_)) {
                    // The OpenAI family forwards the conversation untouched.
                    assert_eq!(body["model"], upstream_model, "{name}");
                    assert_eq!(body["messages"], Value::Array(request.messages.clone()), "{name}");
                }
            }
            Ok(Dispatch::Binding(call)) => {
                let inputs: Value = serde_json::from_str(&call.inputs).unwrap_or_else(|e| panic!("{name}: binding inputs are not JSON ({e})"));
                assert!(inputs.is_object(), "{name}");
                assert_eq!(call.stream, request.is_stream(), "{name}");
            }
            Ok(Dispatch::Local(response)) => {
                if valid {
                    assert_eq!(response.status, 200, "{name}");
                }
            }
            Err(error) => {
                if valid {
                    assert!(
                        (400..500).contains(&error.status()) && !error.message().is_empty(),
                        "{name}: a valid request failed with a non-client error {error:?} on {}",
                        request_json()
                    );
                    assert!(
                        !matches!(provider, ProviderConfig::OpenAi(_) | ProviderConfig::Azure(_) | ProviderConfig::Mock),
                        "{name}: the OpenAI family refused a valid request: {error:?}"
                    );
                }
            }
        }
    }
}

// =============================================================================================
// Property 1: request translation never panics
// =============================================================================================

#[test]
fn valid_openai_requests_translate_for_every_provider() {
    forall("valid_openai_requests_translate_for_every_provider", |rng| {
        let body = chat_request_json(rng);
        let request: ChatRequest = parse_request(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("a valid request was refused: {e:?}\n{body}"));
        translate_everywhere(&request, true);
    });
}

#[test]
fn random_and_mutated_json_never_panics() {
    forall("random_and_mutated_json_never_panics", |rng| {
        let bytes: Vec<u8> = match rng.below(6) {
            0 => json_value(rng, 0).to_string().into_bytes(),
            1 => {
                // Cut a valid request short anywhere (also inside a multi-byte character).
                let whole = chat_request_json(rng).to_string().into_bytes();
                let at = rng.below(whole.len() + 1);
                whole[..at].to_vec()
            }
            2 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            _ => {
                let mut value = chat_request_json(rng);
                for _ in 0..1 + rng.below(4) {
                    mutate(rng, &mut value);
                }
                value.to_string().into_bytes()
            }
        };
        let parsed = catch_unwind(AssertUnwindSafe(|| parse_request::<ChatRequest>(&bytes)))
            .unwrap_or_else(|p| panic!("parse_request::<ChatRequest> panicked ({}) on {}", panic_text(&*p), String::from_utf8_lossy(&bytes)));
        if let Ok(request) = parsed {
            translate_everywhere(&request, false);
        }
        catch_unwind(AssertUnwindSafe(|| parse_request::<EmbeddingsRequest>(&bytes)))
            .unwrap_or_else(|p| panic!("parse_request::<EmbeddingsRequest> panicked ({})", panic_text(&*p)))
            .ok();
    });
}

#[test]
fn anthropic_inbound_requests_never_panic() {
    forall("anthropic_inbound_requests_never_panic", |rng| {
        let mut value = anthropic_request_json(rng);
        if rng.chance(60) {
            for _ in 0..1 + rng.below(3) {
                mutate(rng, &mut value);
            }
        }
        let bytes = value.to_string().into_bytes();
        let parsed = catch_unwind(AssertUnwindSafe(|| parse_messages_request(&bytes)))
            .unwrap_or_else(|p| panic!("parse_messages_request panicked ({}) on {value}", panic_text(&*p)));
        if let Ok((request, _meta)) = parsed {
            translate_everywhere(&request, false);
        }
    });
}

/// Whole upstream response bodies, valid-looking and mutated, never panic a translator.
#[test]
fn random_upstream_response_bodies_never_panic() {
    forall("random_upstream_response_bodies_never_panic", |rng| {
        let mut c = counts(rng, true);
        if rng.chance(25) {
            // Counts at the top of the range: adding them up must not overflow.
            let mut huge = || u64::MAX - rng.below(3) as u64;
            c = Counts { input: huge(), cache_read: huge(), cache_write: huge(), output: huge(), reasoning: 0 };
        }
        let mut body = match rng.below(5) {
            0 => anthropic_body(rng, &c),
            1 => bedrock_body(rng, &c),
            2 => gemini_body(rng, &Counts { cache_write: 0, ..c }),
            3 => json!({"id": "c1", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": [{"type": "text", "text": text(rng)}]},
                "usage": {"tokens": {"input_tokens": 3, "output_tokens": 4}}}),
            _ => json!({"response": text(rng), "tool_calls": [{"name": "f", "arguments": json_object(rng, 1)}], "usage": {"prompt_tokens": 1}}),
        };
        for _ in 0..rng.below(4) {
            mutate(rng, &mut body);
        }
        let bytes = body.to_string().into_bytes();
        let ctx = response_ctx();
        for (name, provider, _) in providers() {
            catch_unwind(AssertUnwindSafe(|| provider::chat_response(&provider, &bytes, &ctx)))
                .unwrap_or_else(|p| panic!("{name}: chat_response panicked ({}) on {body}", panic_text(&*p)));
            catch_unwind(AssertUnwindSafe(|| provider::error_body(&provider, 400, &bytes)))
                .unwrap_or_else(|p| panic!("{name}: error_body panicked ({}) on {body}", panic_text(&*p)));
        }
    });
}

// =============================================================================================
// Property 2: streams
// =============================================================================================

/// Token counts of one response: `input` excludes the cache parts (Anthropic's and Bedrock's
/// view); `reasoning` is part of `output`.
#[derive(Debug, Clone, Copy)]
struct Counts {
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
    reasoning: u64,
}

fn count(rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => 0,
        1 | 2 => rng.between(1, 200),
        3 => rng.between(200, 200_000),
        _ => rng.between(1, 2_000_000_000),
    }
}

fn counts(rng: &mut Rng, cache_write: bool) -> Counts {
    let output = count(rng);
    Counts {
        input: count(rng),
        cache_read: count(rng),
        cache_write: if cache_write { count(rng) } else { 0 },
        output,
        reasoning: if rng.chance(50) { rng.between(0, output) } else { 0 },
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
    Cohere,
    Bedrock,
    WorkersAi,
}

impl Wire {
    fn provider(self) -> ProviderConfig {
        let name = match self {
            Wire::OpenAi => "deepseek",
            Wire::Anthropic => "anthropic",
            Wire::Gemini => "gemini",
            Wire::Cohere => "cohere",
            Wire::Bedrock => "bedrock",
            Wire::WorkersAi => "workers_ai_binding",
        };
        providers().into_iter().find(|(n, ..)| *n == name).unwrap().1
    }

    /// The provider streams reasoning text.
    fn reasons(self) -> bool {
        self != Wire::WorkersAi
    }

    /// Function calls arrive whole, not as argument deltas.
    fn whole_calls(self) -> bool {
        matches!(self, Wire::Gemini | Wire::WorkersAi)
    }

    /// The provider reports cache writes.
    fn cache_writes(self) -> bool {
        matches!(self, Wire::Anthropic | Wire::Bedrock)
    }

    /// The provider reports cache reads.
    fn cache_reads(self) -> bool {
        matches!(self, Wire::OpenAi | Wire::Anthropic | Wire::Bedrock | Wire::Gemini)
    }

    /// The provider names its tool calls.
    fn own_ids(self) -> bool {
        !self.whole_calls()
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Reason(String),
    Text(String),
    /// Tool call `n` starts (whole-call providers: the whole call).
    Start(usize),
    /// A fragment of tool call `n`'s arguments.
    Args(usize, String),
}

#[derive(Debug, Clone)]
struct Call {
    id: String,
    name: String,
    args: Value,
    /// `args` serialised: what the client must receive.
    args_text: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    End,
    Length,
    Tools,
}

#[derive(Debug, Clone)]
struct Script {
    events: Vec<Ev>,
    calls: Vec<Call>,
    stop: Stop,
    counts: Counts,
}

/// Split `s` at random character boundaries into 1..=4 non-empty pieces.
fn fragments(rng: &mut Rng, s: &str) -> Vec<String> {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(1).collect();
    let mut cuts: Vec<usize> = (0..rng.below(4)).filter(|_| !bounds.is_empty()).map(|_| *rng.pick(&bounds)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain(std::iter::once(s.len())) {
        out.push(s[from..cut].to_string());
        from = cut;
    }
    out
}

fn script(rng: &mut Rng, wire: Wire) -> Script {
    let mut events = Vec::new();
    if wire.reasons() && rng.chance(40) {
        for _ in 0..1 + rng.below(3) {
            events.push(Ev::Reason(some_text(rng)));
        }
    }
    let n_calls = if rng.chance(50) { 1 + rng.below(3) } else { 0 };
    let mut n_text = rng.below(4);
    if n_calls == 0 && n_text == 0 {
        n_text = 1;
    }
    for _ in 0..n_text {
        events.push(Ev::Text(some_text(rng)));
    }
    let prefix = match wire {
        Wire::Anthropic => "toolu_",
        Wire::Bedrock => "tooluse_",
        Wire::Cohere => "get_weather_",
        _ => "call_",
    };
    let calls: Vec<Call> = (0..n_calls)
        .map(|i| {
            let args = json_object(rng, 1);
            Call { id: format!("{prefix}{i}{:x}", rng.next() % 0xffff), name: rng.pick(TOOL_NAMES).to_string(), args_text: args.to_string(), args }
        })
        .collect();
    if wire.whole_calls() {
        events.extend((0..n_calls).map(Ev::Start));
    } else {
        // Argument deltas of parallel calls may interleave; each call starts before its
        // deltas, and calls start in order.
        let pieces: Vec<Vec<String>> = calls.iter().map(|c| fragments(rng, &c.args_text)).collect();
        let mut sent = vec![None::<usize>; n_calls];
        let interleave = rng.chance(50);
        loop {
            let open: Vec<usize> = (0..n_calls)
                .filter(|&c| sent[c].is_none_or(|k| k < pieces[c].len()))
                .filter(|&c| sent[c].is_some() || c == 0 || sent[c - 1].is_some())
                .collect();
            let Some(&first) = open.first() else { break };
            let c = if interleave { *rng.pick(&open) } else { first };
            match sent[c] {
                None => {
                    events.push(Ev::Start(c));
                    sent[c] = Some(0);
                }
                Some(k) => {
                    events.push(Ev::Args(c, pieces[c][k].clone()));
                    sent[c] = Some(k + 1);
                }
            }
        }
    }
    if rng.chance(15) {
        events.push(Ev::Text(some_text(rng)));
    }
    let stop = if n_calls > 0 {
        if rng.chance(85) {
            Stop::Tools
        } else {
            Stop::Length
        }
    } else if rng.chance(80) {
        Stop::End
    } else {
        Stop::Length
    };
    let mut counts = counts(rng, wire.cache_writes());
    if !wire.cache_reads() {
        counts.cache_read = 0;
    }
    Script { events, calls, stop, counts }
}

/// What the client must receive for a script.
struct Expect {
    text: String,
    reasoning: String,
    /// (id if the provider has its own, name, arguments) in OpenAI index order.
    calls: Vec<(Option<String>, String, String)>,
    finish: &'static str,
    usage: Usage,
}

fn expect(script: &Script, wire: Wire) -> Expect {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for ev in &script.events {
        match ev {
            Ev::Text(t) => text.push_str(t),
            Ev::Reason(t) => reasoning.push_str(t),
            Ev::Start(c) => {
                let call = &script.calls[*c];
                calls.push((wire.own_ids().then(|| call.id.clone()), call.name.clone(), call.args_text.clone()));
            }
            Ev::Args(..) => {}
        }
    }
    let finish = match (script.stop, wire) {
        (Stop::Tools, _) => "tool_calls",
        (_, Wire::WorkersAi) if !script.calls.is_empty() => "tool_calls",
        (_, Wire::WorkersAi) | (Stop::End, _) => "stop",
        (Stop::Length, _) => "length",
    };
    let c = script.counts;
    let usage = match wire {
        Wire::Anthropic | Wire::Bedrock => Usage::from_parts(c.input, c.cache_read, c.cache_write, c.output, 0),
        Wire::Gemini | Wire::OpenAi => Usage::from_parts(c.input, c.cache_read, 0, c.output, c.reasoning),
        Wire::Cohere | Wire::WorkersAi => Usage::from_parts(c.input, 0, 0, c.output, 0),
    };
    Expect { text, reasoning, calls, finish, usage }
}

// ----- wire encoders ----------------------------------------------------------------------------

fn sse_named(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
}

/// OpenAI (and compatible: DeepSeek's `reasoning_content`) chat.completion.chunk SSE.
fn openai_sse(rng: &mut Rng, s: &Script) -> Vec<u8> {
    let nl = if rng.chance(30) { "\r\n" } else { "\n" };
    let null_usage = rng.chance(50);
    let mut out = Vec::new();
    let emit = |rng: &mut Rng, choices: Value, out: &mut Vec<u8>| {
        let mut chunk = json!({"id": "chatcmpl-up1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "deepseek-chat",
            "system_fingerprint": "fp_1", "choices": choices});
        if null_usage {
            chunk["usage"] = Value::Null;
        }
        if rng.chance(10) {
            out.extend_from_slice(format!(": keep-alive{nl}{nl}").as_bytes());
        }
        out.extend_from_slice(format!("data: {chunk}{nl}{nl}").as_bytes());
    };
    let delta = |delta: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]);
    emit(rng, delta(json!({"role": "assistant", "content": "", "refusal": null})), &mut out);
    for ev in &s.events {
        let d = match ev {
            Ev::Text(t) => json!({"content": t}),
            Ev::Reason(t) => json!({"reasoning_content": t}),
            Ev::Start(c) => {
                let call = &s.calls[*c];
                json!({"tool_calls": [{"index": c, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]})
            }
            Ev::Args(c, f) => json!({"tool_calls": [{"index": c, "function": {"arguments": f}}]}),
        };
        emit(rng, delta(d), &mut out);
    }
    let finish = match s.stop {
        Stop::End => "stop",
        Stop::Length => "length",
        Stop::Tools => "tool_calls",
    };
    emit(rng, json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]), &mut out);
    let c = s.counts;
    let usage = json!({"prompt_tokens": c.input + c.cache_read, "completion_tokens": c.output, "total_tokens": c.input + c.cache_read + c.output,
        "prompt_tokens_details": {"cached_tokens": c.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": c.reasoning, "audio_tokens": 0}});
    let chunk = json!({"id": "chatcmpl-up1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "deepseek-chat", "choices": [], "usage": usage});
    out.extend_from_slice(format!("data: {chunk}{nl}{nl}data: [DONE]{nl}{nl}").as_bytes());
    out
}

/// Content blocks as Anthropic and Bedrock number them: reasoning and text runs are one block
/// each; tool calls one block each, open until something other than tool calls follows.
struct Blocks {
    next: u64,
    /// The open text/reasoning block: (is reasoning, index).
    run: Option<(bool, u64)>,
    tools: Vec<(usize, u64)>,
}

enum BlockOp {
    Start(u64, Value),
    Delta(u64, Value),
    Stop(u64),
}

impl Blocks {
    fn new() -> Self {
        Blocks { next: 0, run: None, tools: Vec::new() }
    }

    fn close_all(&mut self, ops: &mut Vec<BlockOp>) {
        if let Some((_, index)) = self.run.take() {
            ops.push(BlockOp::Stop(index));
        }
        for (_, index) in self.tools.drain(..) {
            ops.push(BlockOp::Stop(index));
        }
    }

    /// The block operations for one script event; `start` describes a new block's content.
    fn event(&mut self, ev: &Ev, s: &Script, ops: &mut Vec<BlockOp>) {
        match ev {
            Ev::Text(_) | Ev::Reason(_) => {
                let reasoning = matches!(ev, Ev::Reason(_));
                if self.run.is_none_or(|(r, _)| r != reasoning) || !self.tools.is_empty() {
                    self.close_all(ops);
                    let index = self.next;
                    self.next += 1;
                    self.run = Some((reasoning, index));
                    ops.push(BlockOp::Start(index, json!({"kind": if reasoning { "reasoning" } else { "text" }})));
                }
                let index = self.run.unwrap().1;
                ops.push(BlockOp::Delta(index, ev_text(ev)));
            }
            Ev::Start(c) => {
                if let Some((_, index)) = self.run.take() {
                    ops.push(BlockOp::Stop(index));
                }
                let index = self.next;
                self.next += 1;
                self.tools.push((*c, index));
                ops.push(BlockOp::Start(index, json!({"kind": "tool", "call": c, "id": s.calls[*c].id, "name": s.calls[*c].name})));
            }
            Ev::Args(c, f) => {
                let index = self.tools.iter().find(|(k, _)| k == c).expect("call started").1;
                ops.push(BlockOp::Delta(index, json!({"kind": "args", "fragment": f})));
            }
        }
    }
}

fn ev_text(ev: &Ev) -> Value {
    match ev {
        Ev::Text(t) => json!({"kind": "text", "text": t}),
        Ev::Reason(t) => json!({"kind": "reasoning", "text": t}),
        _ => unreachable!(),
    }
}

fn block_ops(s: &Script) -> Vec<BlockOp> {
    let mut blocks = Blocks::new();
    let mut ops = Vec::new();
    for ev in &s.events {
        blocks.event(ev, s, &mut ops);
    }
    blocks.close_all(&mut ops);
    ops
}

/// Anthropic Messages streaming events.
fn anthropic_sse(rng: &mut Rng, s: &Script) -> Vec<u8> {
    let c = s.counts;
    let mut out = Vec::new();
    sse_named(
        &mut out,
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_01Up", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": c.input, "cache_creation_input_tokens": c.cache_write, "cache_read_input_tokens": c.cache_read, "output_tokens": 1}}}),
    );
    let mut kinds = std::collections::HashMap::new();
    for op in block_ops(s) {
        if rng.chance(8) {
            sse_named(&mut out, "ping", &json!({"type": "ping"}));
        }
        match op {
            BlockOp::Start(index, what) => {
                let block = match what["kind"].as_str().unwrap() {
                    "reasoning" => json!({"type": "thinking", "thinking": ""}),
                    "text" => json!({"type": "text", "text": ""}),
                    _ => json!({"type": "tool_use", "id": what["id"], "name": what["name"], "input": {}}),
                };
                kinds.insert(index, what["kind"].as_str().unwrap().to_string());
                sse_named(&mut out, "content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": block}));
            }
            BlockOp::Delta(index, what) => {
                let delta = match what["kind"].as_str().unwrap() {
                    "reasoning" => json!({"type": "thinking_delta", "thinking": what["text"]}),
                    "text" => json!({"type": "text_delta", "text": what["text"]}),
                    _ => json!({"type": "input_json_delta", "partial_json": what["fragment"]}),
                };
                sse_named(&mut out, "content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}));
            }
            BlockOp::Stop(index) => {
                if kinds[&index] == "reasoning" {
                    let delta = json!({"type": "signature_delta", "signature": "EqQBCgIYAhIM"});
                    sse_named(&mut out, "content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}));
                }
                sse_named(&mut out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}));
            }
        }
    }
    let stop = match s.stop {
        Stop::End => "end_turn",
        Stop::Length => "max_tokens",
        Stop::Tools => "tool_use",
    };
    let mut usage = json!({"output_tokens": c.output});
    if rng.chance(50) {
        // Newer API versions repeat the cumulative input counts.
        usage = json!({"input_tokens": c.input, "cache_creation_input_tokens": c.cache_write, "cache_read_input_tokens": c.cache_read, "output_tokens": c.output});
    }
    sse_named(&mut out, "message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": usage}));
    sse_named(&mut out, "message_stop", &json!({"type": "message_stop"}));
    out
}

/// Bedrock ConverseStream: AWS event-stream frames. Also returns where each frame starts.
fn bedrock_stream(rng: &mut Rng, s: &Script) -> (Vec<u8>, Vec<usize>) {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let event = |kind: &str, payload: Value| {
        encode_message(&[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], payload.to_string().as_bytes())
    };
    frames.push(event("messageStart", json!({"role": "assistant"})));
    let mut kinds = std::collections::HashMap::new();
    for op in block_ops(s) {
        match op {
            BlockOp::Start(index, what) => {
                kinds.insert(index, what["kind"].as_str().unwrap().to_string());
                if what["kind"] == "tool" {
                    frames.push(event(
                        "contentBlockStart",
                        json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": what["id"], "name": what["name"]}}}),
                    ));
                }
            }
            BlockOp::Delta(index, what) => {
                let delta = match what["kind"].as_str().unwrap() {
                    "reasoning" => json!({"reasoningContent": {"text": what["text"]}}),
                    "text" => json!({"text": what["text"]}),
                    _ => json!({"toolUse": {"input": what["fragment"]}}),
                };
                frames.push(event("contentBlockDelta", json!({"contentBlockIndex": index, "delta": delta})));
            }
            BlockOp::Stop(index) => {
                if kinds[&index] == "reasoning" && rng.chance(50) {
                    frames.push(event("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": "c2ln"}}})));
                }
                frames.push(event("contentBlockStop", json!({"contentBlockIndex": index})));
            }
        }
    }
    let stop = match s.stop {
        Stop::End => "end_turn",
        Stop::Length => "max_tokens",
        Stop::Tools => "tool_use",
    };
    frames.push(event("messageStop", json!({"stopReason": stop})));
    let c = s.counts;
    frames.push(event(
        "metadata",
        json!({"usage": {"inputTokens": c.input, "outputTokens": c.output, "totalTokens": c.input + c.cache_read + c.cache_write + c.output,
            "cacheReadInputTokens": c.cache_read, "cacheWriteInputTokens": c.cache_write}, "metrics": {"latencyMs": rng.between(1, 5000)}}),
    ));
    let mut starts = Vec::new();
    let mut out = Vec::new();
    for frame in frames {
        starts.push(out.len());
        out.extend(frame);
    }
    (out, starts)
}

/// Gemini `streamGenerateContent?alt=sse`: whole GenerateContentResponse objects, cumulative usage.
fn gemini_sse(rng: &mut Rng, s: &Script) -> Vec<u8> {
    let c = s.counts;
    let usage = |scale: u64| {
        let part = |n: u64| n / scale;
        json!({"promptTokenCount": c.input + c.cache_read, "cachedContentTokenCount": c.cache_read,
            "candidatesTokenCount": part(c.output - c.reasoning), "thoughtsTokenCount": part(c.reasoning),
            "totalTokenCount": c.input + c.cache_read + part(c.output)})
    };
    let mut parts_of_events: Vec<Vec<Value>> = Vec::new();
    let mut i = 0;
    while i < s.events.len() {
        let take = (1 + rng.below(3)).min(s.events.len() - i);
        let parts = s.events[i..i + take]
            .iter()
            .map(|ev| match ev {
                Ev::Text(t) => json!({"text": t}),
                Ev::Reason(t) => json!({"text": t, "thought": true}),
                Ev::Start(n) => {
                    let call = &s.calls[*n];
                    let mut part = json!({"functionCall": {"name": call.name, "args": call.args}});
                    if rng.chance(30) {
                        part["thoughtSignature"] = json!("c2lnbmF0dXJl");
                    }
                    part
                }
                Ev::Args(..) => unreachable!("Gemini sends whole calls"),
            })
            .collect();
        parts_of_events.push(parts);
        i += take;
    }
    let reason = if s.stop == Stop::Length { "MAX_TOKENS" } else { "STOP" };
    let separate_finish = parts_of_events.is_empty() || rng.chance(40);
    let nl = if rng.chance(70) { "\r\n" } else { "\n" };
    let mut out = Vec::new();
    let n = parts_of_events.len();
    for (k, parts) in parts_of_events.into_iter().enumerate() {
        let last = k + 1 == n && !separate_finish;
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if last {
            candidate["finishReason"] = json!(reason);
        }
        let event = json!({"candidates": [candidate], "usageMetadata": usage(if last { 1 } else { (n - k) as u64 + 1 }),
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"});
        out.extend_from_slice(format!("data: {event}{nl}{nl}").as_bytes());
    }
    if separate_finish {
        let event = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": reason, "index": 0}],
            "usageMetadata": usage(1), "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"});
        out.extend_from_slice(format!("data: {event}{nl}{nl}").as_bytes());
    }
    out
}

/// Cohere v2 chat streaming events.
fn cohere_sse(rng: &mut Rng, s: &Script) -> Vec<u8> {
    let mut out = Vec::new();
    let frame = |out: &mut Vec<u8>, data: Value| {
        let name = data["type"].as_str().unwrap().to_string();
        sse_named(out, &name, &data);
    };
    frame(
        &mut out,
        json!({"id": "5a7e-c0ffee", "type": "message-start", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
    );
    let mut content_index = 0;
    let mut in_text = false;
    let mut open_calls: Vec<usize> = Vec::new();
    for ev in &s.events {
        if !matches!(ev, Ev::Text(_)) && in_text {
            frame(&mut out, json!({"type": "content-end", "index": content_index}));
            content_index += 1;
            in_text = false;
        }
        match ev {
            Ev::Reason(t) => frame(&mut out, json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": t}}})),
            Ev::Text(t) => {
                for c in open_calls.drain(..) {
                    frame(&mut out, json!({"type": "tool-call-end", "index": c}));
                }
                if !in_text {
                    frame(&mut out, json!({"type": "content-start", "index": content_index, "delta": {"message": {"content": {"type": "text", "text": ""}}}}));
                    in_text = true;
                }
                frame(&mut out, json!({"type": "content-delta", "index": content_index, "delta": {"message": {"content": {"text": t}}}, "logprobs": null}));
            }
            Ev::Start(c) => {
                let call = &s.calls[*c];
                open_calls.push(*c);
                frame(
                    &mut out,
                    json!({"type": "tool-call-start", "index": c, "delta": {"message": {"tool_calls":
                        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}}}}),
                );
            }
            Ev::Args(c, f) => frame(&mut out, json!({"type": "tool-call-delta", "index": c, "delta": {"message": {"tool_calls": {"function": {"arguments": f}}}}})),
        }
    }
    if in_text {
        frame(&mut out, json!({"type": "content-end", "index": content_index}));
    }
    for c in open_calls {
        frame(&mut out, json!({"type": "tool-call-end", "index": c}));
    }
    let reason = match s.stop {
        Stop::End => "COMPLETE",
        Stop::Length => "MAX_TOKENS",
        Stop::Tools => "TOOL_CALL",
    };
    let c = s.counts;
    let number = |rng: &mut Rng, n: u64| if rng.chance(50) { json!(n as f64) } else { json!(n) };
    let usage = json!({"billed_units": {"input_tokens": number(rng, c.input / 2), "output_tokens": number(rng, c.output / 2)},
        "tokens": {"input_tokens": number(rng, c.input), "output_tokens": number(rng, c.output)}});
    frame(&mut out, json!({"type": "message-end", "delta": {"finish_reason": reason, "usage": usage}}));
    out
}

/// Workers AI binding stream: `data: {"response": ...}` events, usage last, `[DONE]`.
fn workers_ai_sse(_rng: &mut Rng, s: &Script) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in &s.events {
        let data = match ev {
            Ev::Text(t) => json!({"response": t}),
            Ev::Start(c) => json!({"response": "", "tool_calls": [{"name": s.calls[*c].name, "arguments": s.calls[*c].args}]}),
            _ => unreachable!("Workers AI streams text and whole calls"),
        };
        out.extend_from_slice(format!("data: {data}\n\n").as_bytes());
    }
    let c = s.counts;
    let usage = json!({"response": "", "usage": {"prompt_tokens": c.input, "completion_tokens": c.output, "total_tokens": c.input + c.output}});
    out.extend_from_slice(format!("data: {usage}\n\ndata: [DONE]\n\n").as_bytes());
    out
}

fn encode(rng: &mut Rng, wire: Wire, s: &Script) -> (Vec<u8>, Vec<usize>) {
    match wire {
        Wire::OpenAi => (openai_sse(rng, s), Vec::new()),
        Wire::Anthropic => (anthropic_sse(rng, s), Vec::new()),
        Wire::Gemini => (gemini_sse(rng, s), Vec::new()),
        Wire::Cohere => (cohere_sse(rng, s), Vec::new()),
        Wire::Bedrock => bedrock_stream(rng, s),
        Wire::WorkersAi => (workers_ai_sse(rng, s), Vec::new()),
    }
}

// ----- chunkings ------------------------------------------------------------------------------

/// Ways to cut `bytes` into chunks, as cut positions (non-decreasing; a repeated position is an
/// empty chunk). Always: 1-byte chunks, small and large random chunks, cuts inside every
/// multi-byte UTF-8 character, empty chunks; for event-stream frames, cuts inside each frame's
/// prelude (lengths and prelude CRC) and inside its message CRC.
fn chunkings(rng: &mut Rng, bytes: &[u8], frames: &[usize]) -> Vec<(&'static str, Vec<usize>)> {
    let len = bytes.len();
    let mut plans = Vec::new();
    plans.push(("1-byte", (1..len).collect()));
    for (name, max) in [("small", 7), ("large", 97)] {
        let mut cuts = Vec::new();
        let mut at = 0;
        loop {
            at += 1 + rng.below(max);
            if at >= len {
                break;
            }
            cuts.push(at);
        }
        plans.push((name, cuts));
    }
    let inside_utf8: Vec<usize> = (1..len).filter(|&i| bytes[i] & 0xC0 == 0x80).collect();
    plans.push(("inside-utf8", inside_utf8));
    let mut empties: Vec<usize> = (0..1 + rng.below(6)).map(|_| rng.below(len + 1)).collect();
    empties.extend([0, 0, len, len]);
    empties.sort_unstable();
    plans.push(("empty-chunks", empties));
    plans.push(("one-cut", vec![rng.below(len + 1)]));
    if !frames.is_empty() {
        let mut cuts = Vec::new();
        let mut ends: Vec<usize> = frames[1..].to_vec();
        ends.push(len);
        for (&start, &end) in frames.iter().zip(&ends) {
            cuts.push(start + 1 + rng.below(11)); // inside the 12-byte prelude
            cuts.push(end - 1 - rng.below(3)); // inside the message CRC
        }
        cuts.sort_unstable();
        plans.push(("inside-prelude-and-crc", cuts));
    }
    plans
}

fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts {
        out.push(&bytes[from..c]);
        from = c;
    }
    out.push(&bytes[from..]);
    out
}

// ----- running decoders and the stream stage ----------------------------------------------------

fn response_ctx() -> ResponseContext {
    ResponseContext { id: "chatcmpl-gwprop".into(), created: 1_700_000_123, model: "upstream-model".into() }
}

type Decoded = (Vec<Value>, Result<(), StreamFault>, Option<Usage>, Option<Value>);

fn decode(provider: &ProviderConfig, chunks: &[&[u8]]) -> Decoded {
    let mut decoder = provider::stream_decoder(provider, &response_ctx(), edge::sse::DEFAULT_MAX_EVENT_BYTES).expect("a translating provider");
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(fault) = decoder.push(chunk, &mut out) {
            return (out, Err(fault), decoder.usage(), decoder.raw_usage());
        }
    }
    let result = decoder.finish(&mut out);
    (out, result, decoder.usage(), decoder.raw_usage())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Clone, PartialEq)]
struct Ended {
    outcome: Outcome,
    error: Option<&'static str>,
    usage: Option<Usage>,
    raw_usage: Option<Value>,
}

/// The stream stage's client bytes for `chunks` of the upstream body, and how it ended.
fn translate(provider: &ProviderConfig, chunks: &[&[u8]], client: Client, strip_usage: bool) -> (Vec<u8>, Ended) {
    let host = MemoryHost::new();
    let items: Vec<Result<Vec<u8>, edge::BodyError>> = chunks.iter().map(|c| Ok(c.to_vec())).collect();
    let upstream: ByteStream = Box::pin(futures::stream::iter(items));
    let plan = StreamPlan {
        provider: "p".into(),
        strip_usage,
        idle_timeout_ms: 60_000,
        decoder: provider::stream_decoder(provider, &response_ctx(), edge::sse::DEFAULT_MAX_EVENT_BYTES),
        max_event_bytes: edge::sse::DEFAULT_MAX_EVENT_BYTES,
        scrub: provider::Scrub::default(),
        record_answer: false,
        client: match client {
            Client::OpenAi => ClientFormat::OpenAi,
            Client::Anthropic => ClientFormat::Other(Box::new(AnthropicEventEncoder::new("claude-client", "msg_gwprop"))),
        },
        count_delivered: false,
    };
    let ended = Rc::new(RefCell::new(None));
    let sink = ended.clone();
    let body = translate_stream(upstream, host.clone(), plan, None, move |end: StreamEnd| {
        *sink.borrow_mut() = Some(Ended { outcome: end.outcome, error: end.error, usage: end.usage, raw_usage: end.raw_usage });
    });
    let bytes = host.block_on(body.map(|item| item.expect("the stream stage yields bytes")).concat());
    let ended = ended.borrow_mut().take().expect("the end is reported");
    (bytes, ended)
}

fn sse_events(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let mut decoder = SseDecoder::new();
    let events = decoder.push(bytes);
    assert!(decoder.finish(), "the client stream ends on an event boundary");
    events.into_iter().map(|e| (e.event, e.data)).collect()
}

// ----- the chunk contract -----------------------------------------------------------------------

/// Check OpenAI chunks against the contract and the script: role on the first delta only, each
/// tool call's id/type/name on its first delta only with stable indexes, text, reasoning and
/// arguments complete, one finish reason, and (when `usage`) one usage chunk, last, with
/// `choices: []`.
fn check_chunks(chunks: &[Value], expect: &Expect, usage: bool) {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finishes = Vec::new();
    let mut usage_chunks = Vec::new();
    let mut first = true;
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            assert_eq!(chunk["choices"], json!([]), "the usage chunk has no choices: {chunk}");
            assert_eq!(i + 1, chunks.len(), "the usage chunk is the last");
            usage_chunks.push(u.clone());
            continue;
        }
        for choice in chunk["choices"].as_array().expect("choices") {
            assert_eq!(choice["index"], 0, "{chunk}");
            let delta = &choice["delta"];
            assert!(delta.is_object(), "{chunk}");
            if first {
                assert_eq!(delta["role"], "assistant", "the first delta carries the role: {chunk}");
                first = false;
            } else {
                assert!(delta.get("role").is_none(), "the role only on the first delta: {chunk}");
            }
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                text.push_str(t);
            }
            if let Some(t) = delta.get("reasoning_content").and_then(Value::as_str) {
                reasoning.push_str(t);
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
                let index = call["index"].as_u64().expect("tool call index") as usize;
                let fragment = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
                if index == calls.len() {
                    let id = call["id"].as_str().expect("a tool call's first delta has its id");
                    let name = call.pointer("/function/name").and_then(Value::as_str).expect("and its name");
                    assert_eq!(call["type"], "function");
                    calls.push((id.to_string(), name.to_string(), fragment.to_string()));
                } else {
                    assert!(index < calls.len(), "tool call indexes are dense: {chunk}");
                    assert!(call.get("id").is_none() && call.pointer("/function/name").is_none(), "id and name only once: {chunk}");
                    calls[index].2.push_str(fragment);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                finishes.push(reason.to_string());
            }
        }
    }
    assert_eq!(text, expect.text, "text");
    assert_eq!(reasoning, expect.reasoning, "reasoning");
    assert_eq!(calls.len(), expect.calls.len(), "number of tool calls: {calls:?}");
    let mut ids = Vec::new();
    for ((id, name, args), (want_id, want_name, want_args)) in calls.iter().zip(&expect.calls) {
        if let Some(want_id) = want_id {
            assert_eq!(id, want_id);
        }
        assert!(!id.is_empty() && !ids.contains(id), "tool call ids are present and distinct: {calls:?}");
        ids.push(id.clone());
        assert_eq!(name, want_name);
        assert_eq!(args, want_args, "arguments of {name}");
    }
    assert_eq!(finishes, vec![expect.finish.to_string()], "one finish reason");
    if usage {
        assert_eq!(usage_chunks.len(), 1, "one usage chunk");
        let want = Usage { cache_write_tokens: 0, ..expect.usage };
        assert_eq!(Usage::from_openai(&usage_chunks[0]), Some(want), "usage chunk {}", usage_chunks[0]);
    } else {
        assert!(usage_chunks.is_empty(), "usage stripped");
    }
}

fn openai_chunks(bytes: &[u8]) -> Vec<Value> {
    let events = sse_events(bytes);
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("[DONE]"), "the stream ends with [DONE]");
    events[..events.len() - 1].iter().map(|(_, data)| serde_json::from_str(data).expect("chunk JSON")).collect()
}

/// Check the Anthropic events for the client: strictly sequential blocks with dense indexes,
/// text and tool inputs complete, the stop reason, and the exact usage.
fn check_anthropic_events(bytes: &[u8], expect: &Expect) {
    let events = sse_events(bytes);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_deref().unwrap_or("")).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert_eq!(names[names.len() - 2], "message_delta");
    let mut text = String::new();
    let mut tools: Vec<(String, String, String)> = Vec::new();
    let mut blocks = 0u64;
    let mut open: Option<(u64, bool)> = None;
    let mut message_delta = Value::Null;
    for (name, data) in &events {
        let data: Value = serde_json::from_str(data).expect("event JSON");
        assert_eq!(data["type"].as_str(), name.as_deref(), "event name and type agree");
        match name.as_deref().unwrap() {
            "content_block_start" => {
                assert!(open.is_none(), "blocks are sequential");
                assert_eq!(data["index"], blocks, "block indexes are dense");
                let block = &data["content_block"];
                let tool = block["type"] == "tool_use";
                if tool {
                    tools.push((block["id"].as_str().unwrap().into(), block["name"].as_str().unwrap().into(), String::new()));
                } else {
                    assert_eq!(block["type"], "text");
                }
                open = Some((blocks, tool));
                blocks += 1;
            }
            "content_block_delta" => {
                let (index, tool) = open.expect("a delta inside a block");
                assert_eq!(data["index"], index);
                if tool {
                    tools.last_mut().unwrap().2.push_str(data.pointer("/delta/partial_json").and_then(Value::as_str).unwrap());
                } else {
                    text.push_str(data.pointer("/delta/text").and_then(Value::as_str).unwrap());
                }
            }
            "content_block_stop" => {
                assert_eq!(data["index"], open.take().expect("stop of an open block").0);
            }
            "message_delta" => message_delta = data,
            _ => {}
        }
    }
    assert!(open.is_none(), "every block is closed");
    assert_eq!(text, expect.text);
    assert_eq!(tools.len(), expect.calls.len());
    for ((id, name, input), (want_id, want_name, want_args)) in tools.iter().zip(&expect.calls) {
        if let Some(want_id) = want_id {
            assert_eq!(id, want_id);
        }
        assert_eq!(name, want_name);
        assert_eq!(input, want_args);
    }
    let stop = match expect.finish {
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        _ if !expect.calls.is_empty() => "tool_use",
        _ => "end_turn",
    };
    assert_eq!(message_delta.pointer("/delta/stop_reason"), Some(&json!(stop)));
    let u = expect.usage;
    assert_eq!(
        message_delta["usage"],
        json!({"input_tokens": u.input_tokens - u.cached_input_tokens - u.cache_write_tokens, "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cached_input_tokens, "cache_creation_input_tokens": u.cache_write_tokens}),
        "Anthropic usage: input excludes the cache parts"
    );
}

/// The stream property for one wire format.
fn stream_property(name: &str, wire: Wire) {
    let provider = wire.provider();
    forall(name, |rng| {
        let script = script(rng, wire);
        let expect = expect(&script, wire);
        let (bytes, frames) = encode(rng, wire, &script);
        let plans = chunkings(rng, &bytes, &frames);
        let context = |plan: &str| format!("{wire:?} stream, chunking `{plan}`, upstream:\n{}", String::from_utf8_lossy(&bytes));

        // The decoder alone.
        if wire != Wire::OpenAi {
            let whole = decode(&provider, &[&bytes]);
            assert_eq!(whole.1, Ok(()), "{}", context("whole"));
            check_chunks(&whole.0, &expect, true);
            assert_eq!(whole.2, Some(expect.usage), "the decoder's exact usage");
            for (plan, cuts) in &plans {
                let split = decode(&provider, &cut(&bytes, cuts));
                assert!(split == whole, "decoder output differs: {}", context(plan));
            }
        }

        // The stream stage, for both client formats.
        for client in [Client::OpenAi, Client::Anthropic] {
            let strip_usage = rng.chance(50);
            let (out, ended) = translate(&provider, &[&bytes], client, strip_usage);
            assert_eq!(ended.outcome, Outcome::Completed, "{}", context("whole"));
            let want_usage = if wire == Wire::OpenAi { Usage { cache_write_tokens: 0, ..expect.usage } } else { expect.usage };
            assert_eq!(ended.usage, Some(want_usage));
            match client {
                Client::OpenAi => check_chunks(&openai_chunks(&out), &expect, !strip_usage),
                Client::Anthropic => check_anthropic_events(&out, &expect),
            }
            // 1-byte chunks through the whole stage only for some cases (it is the slow one).
            let skip_one_byte = !rng.chance(20);
            for (plan, cuts) in &plans {
                if *plan == "1-byte" && skip_one_byte {
                    continue;
                }
                let (split_out, split_ended) = translate(&provider, &cut(&bytes, cuts), client, strip_usage);
                assert!(split_out == out, "{client:?} client bytes differ: {}", context(plan));
                assert_eq!(split_ended, ended, "{}", context(plan));
            }
        }
    });
}

#[test]
fn openai_stream_is_chunking_independent() {
    stream_property("openai_stream_is_chunking_independent", Wire::OpenAi);
}

#[test]
fn anthropic_stream_is_chunking_independent() {
    stream_property("anthropic_stream_is_chunking_independent", Wire::Anthropic);
}

#[test]
fn gemini_stream_is_chunking_independent() {
    stream_property("gemini_stream_is_chunking_independent", Wire::Gemini);
}

#[test]
fn cohere_stream_is_chunking_independent() {
    stream_property("cohere_stream_is_chunking_independent", Wire::Cohere);
}

#[test]
fn bedrock_stream_is_chunking_independent() {
    stream_property("bedrock_stream_is_chunking_independent", Wire::Bedrock);
}

#[test]
fn workers_ai_stream_is_chunking_independent() {
    stream_property("workers_ai_stream_is_chunking_independent", Wire::WorkersAi);
}

/// Corrupted streams (bytes flipped, dropped or truncated) never panic a decoder or the stream
/// stage, and the outcome still does not depend on the chunking.
#[test]
fn corrupted_streams_never_panic() {
    let wires = [Wire::OpenAi, Wire::Anthropic, Wire::Gemini, Wire::Cohere, Wire::Bedrock, Wire::WorkersAi];
    forall("corrupted_streams_never_panic", |rng| {
        let wire = *rng.pick(&wires);
        let provider = wire.provider();
        let script = script(rng, wire);
        let (mut bytes, _) = encode(rng, wire, &script);
        for _ in 0..1 + rng.below(3) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = rng.next() as u8,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        let plans = chunkings(rng, &bytes, &[]);
        let whole = if wire == Wire::OpenAi { None } else { Some(decode(&provider, &[&bytes])) };
        let (out, ended) = translate(&provider, &[&bytes], Client::OpenAi, false);
        for (plan, cuts) in plans.iter().filter(|(p, _)| *p != "1-byte") {
            let chunks = cut(&bytes, cuts);
            if let Some(whole) = &whole {
                let split = decode(&provider, &chunks);
                assert!(
                    &split == whole,
                    "{wire:?} decoder, chunking `{plan}`: whole input gave {} chunks and {:?}, split input {} chunks and {:?}",
                    whole.0.len(),
                    whole.1,
                    split.0.len(),
                    split.1
                );
            }
            let (split_out, split_ended) = translate(&provider, &chunks, Client::OpenAi, false);
            assert!(split_out == out && split_ended == ended, "{wire:?} stream stage, chunking `{plan}`");
        }
    });
}

// =============================================================================================
// Property 3: usage is never double counted
// =============================================================================================

/// A usage object; optional fields that are zero are sometimes absent or null, as providers
/// omit them.
fn usage_object(rng: &mut Rng, fields: &[(&str, u64, bool)]) -> Value {
    let mut map = Map::new();
    for (key, n, optional) in fields {
        if *optional && *n == 0 && rng.chance(60) {
            if rng.chance(50) {
                map.insert(key.to_string(), Value::Null);
            }
        } else {
            map.insert(key.to_string(), json!(n));
        }
    }
    Value::Object(map)
}

fn anthropic_body(rng: &mut Rng, c: &Counts) -> Value {
    let mut content = vec![json!({"type": "text", "text": text(rng)})];
    if rng.chance(40) {
        content.push(json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": json_object(rng, 1)}));
    }
    let usage = usage_object(
        rng,
        &[
            ("input_tokens", c.input, false),
            ("cache_read_input_tokens", c.cache_read, true),
            ("cache_creation_input_tokens", c.cache_write, true),
            ("output_tokens", c.output, false),
        ],
    );
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": content,
        "stop_reason": "end_turn", "stop_sequence": null, "usage": usage})
}

fn bedrock_body(rng: &mut Rng, c: &Counts) -> Value {
    let usage = usage_object(
        rng,
        &[
            ("inputTokens", c.input, false),
            ("outputTokens", c.output, false),
            ("cacheReadInputTokens", c.cache_read, true),
            ("cacheWriteInputTokens", c.cache_write, true),
        ],
    );
    json!({"output": {"message": {"role": "assistant", "content": [{"text": text(rng)}]}}, "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 10}})
}

fn gemini_body(rng: &mut Rng, c: &Counts) -> Value {
    let usage = usage_object(
        rng,
        &[
            ("promptTokenCount", c.input.saturating_add(c.cache_read), false),
            ("cachedContentTokenCount", c.cache_read, true),
            ("candidatesTokenCount", c.output - c.reasoning, true),
            ("thoughtsTokenCount", c.reasoning, true),
        ],
    );
    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text(rng)}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "r1"})
}

/// The normalised usage and OpenAI's usage object agree with the provider's parts: the prompt
/// counts fresh input, cache reads and cache writes once each; cached tokens are the reads.
fn check_usage(body: &Value, usage: Option<Usage>, c: &Counts) {
    let prompt = c.input + c.cache_read + c.cache_write;
    let usage = usage.expect("usage reported");
    assert_eq!(usage, Usage::from_parts(c.input, c.cache_read, c.cache_write, c.output, c.reasoning));
    let u = &body["usage"];
    assert_eq!(u["prompt_tokens"], prompt, "prompt_tokens = input + cache reads + cache writes: {u}");
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], c.cache_read, "cached_tokens = cache reads: {u}");
    assert_eq!(u["completion_tokens"], c.output);
    assert_eq!(u["total_tokens"], prompt + c.output);
    // Back to Anthropic's shape (the /v1/messages response): the exact parts again.
    let message = to_anthropic_message(body, "claude-client", Some(usage));
    assert_eq!(
        message["usage"],
        json!({"input_tokens": c.input, "cache_read_input_tokens": c.cache_read, "cache_creation_input_tokens": c.cache_write, "output_tokens": c.output})
    );
    // From OpenAI's usage object alone (which cannot carry cache writes) nothing is counted twice.
    let message = to_anthropic_message(body, "claude-client", None);
    let m = &message["usage"];
    let parts = ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"].map(|k| m[k].as_u64().unwrap());
    assert_eq!(parts.iter().sum::<u64>(), prompt, "Anthropic's parts add up to the prompt: {m}");
    assert_eq!(parts[1], c.cache_read);
}

#[test]
fn whole_response_usage_is_not_double_counted() {
    forall("whole_response_usage_is_not_double_counted", |rng| {
        let ctx = response_ctx();
        // Anthropic: input_tokens excludes cache reads and writes.
        let c = Counts { reasoning: 0, ..counts(rng, true) };
        let body = anthropic_body(rng, &c);
        let t = provider::chat_response(&Wire::Anthropic.provider(), body.to_string().as_bytes(), &ctx).unwrap().unwrap();
        check_usage(&t.body, t.usage, &c);
        assert_eq!(t.raw_usage.as_ref(), Some(&body["usage"]));

        // Bedrock Converse: the same split.
        let c = Counts { reasoning: 0, ..counts(rng, true) };
        let body = bedrock_body(rng, &c);
        let t = provider::chat_response(&Wire::Bedrock.provider(), body.to_string().as_bytes(), &ctx).unwrap().unwrap();
        check_usage(&t.body, t.usage, &c);

        // Gemini: promptTokenCount already includes the cached tokens; thoughts are output.
        let c = counts(rng, false);
        let body = gemini_body(rng, &c);
        let t = provider::chat_response(&Wire::Gemini.provider(), body.to_string().as_bytes(), &ctx).unwrap().unwrap();
        check_usage(&t.body, t.usage, &c);
        assert_eq!(t.body["usage"]["completion_tokens_details"]["reasoning_tokens"], c.reasoning);
    });
}

#[test]
fn stream_usage_is_not_double_counted() {
    forall("stream_usage_is_not_double_counted", |rng| {
        for wire in [Wire::Anthropic, Wire::Bedrock, Wire::Gemini, Wire::OpenAi] {
            let script = script(rng, wire);
            let c = script.counts;
            let (bytes, _) = encode(rng, wire, &script);
            let (out, ended) = translate(&wire.provider(), &[&bytes], Client::OpenAi, false);
            let usage = ended.usage.expect("usage reported");
            let prompt = c.input + c.cache_read + c.cache_write;
            assert_eq!(usage.input_tokens, prompt, "{wire:?}");
            assert_eq!(usage.cached_input_tokens, c.cache_read, "{wire:?}");
            assert_eq!(usage.total_tokens, prompt + c.output, "{wire:?}");
            let chunks = openai_chunks(&out);
            let last = &chunks.last().unwrap()["usage"];
            assert_eq!(last["prompt_tokens"], prompt, "{wire:?}: {last}");
            assert_eq!(last["prompt_tokens_details"]["cached_tokens"], c.cache_read, "{wire:?}: {last}");
            assert_eq!(last["total_tokens"], prompt + c.output, "{wire:?}: {last}");
            // The same stream for an Anthropic client reports the parts exactly.
            let (out, _) = translate(&wire.provider(), &[&bytes], Client::Anthropic, true);
            let events = sse_events(&out);
            let delta: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
            assert_eq!(
                delta["usage"],
                json!({"input_tokens": c.input, "cache_read_input_tokens": c.cache_read, "cache_creation_input_tokens": c.cache_write, "output_tokens": c.output}),
                "{wire:?}"
            );
        }
    });
}
