//! The facts the pipeline records for one request's telemetry, as plain data.

use std::rc::Rc;

use serde_json::Value;

use crate::config::Telemetry;
use crate::host::Host;
use crate::openai::ChatRequest;

/// One attribute value, as OTLP types them.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Strs(Vec<String>),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(s.to_string())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(s)
    }
}

impl From<u64> for AttrValue {
    fn from(n: u64) -> Self {
        AttrValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// Attributes: keys are fixed names, never client text.
pub type Attrs = Vec<(&'static str, AttrValue)>;

/// One upstream call (a fallback makes several).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub span_id: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    /// The configured provider's name and its `gen_ai.provider.name`.
    pub provider: String,
    pub system: String,
    pub model: String,
    /// The upstream's host and port (none for a platform binding or a local answer).
    pub server: Option<(String, u16)>,
    /// The upstream's HTTP status, when one came back.
    pub status: Option<u16>,
    /// The error label when the attempt failed.
    pub error: Option<&'static str>,
}

/// A gateway phase worth a child span: the input guard, the cache lookup, the output guard.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub span_id: u64,
    pub name: &'static str,
    pub start_ms: u64,
    pub end_ms: u64,
    pub attrs: Attrs,
}

/// What the pipeline recorded for one request's telemetry.
#[derive(Debug, Clone)]
pub struct Trace {
    pub settings: Rc<Telemetry>,
    pub trace_id: u128,
    /// The gateway's server span.
    pub span_id: u64,
    /// The client's span, from its `traceparent`.
    pub parent: Option<u64>,
    pub tracestate: Option<String>,
    /// Spans are exported (metrics are exported either way).
    pub sampled: bool,
    /// `gen_ai.provider.name` of the provider that served (or was about to).
    pub system: Option<String>,
    /// `gen_ai.request.*` parameters the client set.
    pub request: Attrs,
    pub response_id: Option<String>,
    pub response_model: Option<String>,
    pub finish_reasons: Vec<String>,
    pub attempts: Vec<Attempt>,
    pub phases: Vec<Phase>,
    /// Milliseconds from the request to the stream's first chunk.
    pub first_chunk_ms: Option<u64>,
    /// Whether prompts and completions are exported for this request.
    pub capture_content: bool,
    /// The prompt and the completion as guarded (redacted again at export), when captured.
    pub input_messages: Option<Vec<Message>>,
    pub output_messages: Option<Vec<Message>>,
}

/// One captured message: its role, its text, and (for outputs) why it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub text: String,
    pub finish_reason: Option<String>,
}

/// A new, non-zero span id.
pub fn span_id<H: Host>(host: &H) -> u64 {
    host.random_u64().max(1)
}

impl Trace {
    /// The headers an upstream call carries: our attempt span as the parent, the client's
    /// `tracestate`.
    pub fn propagation(&self, attempt_span: u64) -> Vec<(String, String)> {
        let mut headers = vec![("traceparent".to_string(), super::traceparent::format(self.trace_id, attempt_span, self.sampled))];
        headers.extend(self.tracestate.clone().map(|s| ("tracestate".to_string(), s)));
        headers
    }

    /// The trace id in hex (the `x-gateway-trace-id` response header).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// Record a phase that ran from `start_ms` to `end_ms`.
    pub fn phase<H: Host>(&mut self, host: &H, name: &'static str, start_ms: u64, attrs: Attrs) {
        self.phases.push(Phase { span_id: span_id(host), name, start_ms, end_ms: host.now_ms(), attrs });
    }

    /// What the response said of itself (OpenAI shape): id, model, finish reasons and, when
    /// captured, the completion. The first answer noted wins.
    pub fn note_response(&mut self, body: &Value) {
        if self.response_id.is_some() || self.response_model.is_some() {
            return;
        }
        self.response_id = body.get("id").and_then(Value::as_str).map(str::to_string);
        self.response_model = body.get("model").and_then(Value::as_str).map(str::to_string);
        let choices = body.get("choices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        self.finish_reasons = choices.iter().filter_map(|c| c.get("finish_reason").and_then(Value::as_str)).map(str::to_string).collect();
        if self.capture_content {
            self.output_messages = Some(
                choices
                    .iter()
                    .map(|c| Message {
                        role: "assistant".into(),
                        text: c.pointer("/message/content").map(text_of).unwrap_or_default(),
                        finish_reason: c.get("finish_reason").and_then(Value::as_str).map(str::to_string),
                    })
                    .collect(),
            );
        }
    }

    /// The chat request's parameters and (when captured) its messages, as the input guard left
    /// them.
    pub fn note_request(&mut self, request: &ChatRequest) {
        self.request = request_attributes(request);
        if self.capture_content {
            self.input_messages = Some(
                request
                    .messages
                    .iter()
                    .map(|m| Message {
                        role: m.get("role").and_then(Value::as_str).unwrap_or("user").to_string(),
                        text: m.get("content").map(text_of).unwrap_or_default(),
                        finish_reason: None,
                    })
                    .collect(),
            );
        }
    }
}

/// The text of a message's content: a string, or the text parts of an array.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// `gen_ai.request.*` of a chat request, for the parameters the client set.
pub fn request_attributes(request: &ChatRequest) -> Attrs {
    let mut attrs = Attrs::new();
    if let Some(max) = request.max_output_tokens() {
        attrs.push(("gen_ai.request.max_tokens", max.into()));
    }
    let double = |key: &str| request.rest.get(key).and_then(Value::as_f64);
    for (key, name) in [
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
    ] {
        if let Some(v) = double(key) {
            attrs.push((name, AttrValue::Double(v)));
        }
    }
    if let Some(seed) = request.rest.get("seed").and_then(Value::as_i64) {
        attrs.push(("gen_ai.request.seed", AttrValue::Int(seed)));
    }
    match request.rest.get("stop") {
        Some(Value::String(s)) => attrs.push(("gen_ai.request.stop_sequences", AttrValue::Strs(vec![s.clone()]))),
        Some(Value::Array(list)) => {
            attrs.push(("gen_ai.request.stop_sequences", AttrValue::Strs(list.iter().filter_map(Value::as_str).map(str::to_string).collect())))
        }
        _ => {}
    }
    if let Some(n) = request.rest.get("n").and_then(Value::as_u64).filter(|n| *n != 1) {
        attrs.push(("gen_ai.request.choice.count", n.into()));
    }
    attrs
}

