//! OpenTelemetry traces and metrics of each API request, exported over OTLP/HTTP JSON
//! (docs/observability.md).
//!
//! Sans-IO like the rest of the core: the pipeline records plain facts into a [`Trace`] as the
//! request runs (ids, attempt and phase timings, request parameters, response facts, captured
//! content when opted in); when the request's usage event is emitted, [`export`] hands the trace
//! and the event to `Host::wait_until`, where [`span`] turns them into spans and metric data
//! points and [`otlp`] encodes them. Nothing of it runs before the response.
//!
//! Attribute names follow the OpenTelemetry GenAI semantic conventions as of
//! semantic-conventions v1.41.0 (status: Development).

pub mod otlp;
pub mod span;
pub mod traceparent;

use std::rc::Rc;

use serde_json::Value;

use crate::config::{Config, OpenAiFlavor, ProviderConfig, Telemetry};
use crate::event::UsageEvent;
use crate::host::{with_timeout, Host, OutboundRequest};
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

/// The trace of a request that just arrived, when telemetry is configured: a child of the
/// client's `traceparent` when it has a valid one, else a new trace (sampled by the ratio).
pub fn start<H: Host>(config: &Config, headers: &[(String, String)], host: &H) -> Option<Box<Trace>> {
    let settings = config.telemetry.clone()?;
    let parent = crate::http::find_header(headers, "traceparent").and_then(traceparent::parse);
    let (trace_id, sampled) = match parent {
        Some(p) => (p.trace_id, p.sampled()),
        None => {
            let id = (u128::from(host.random_u64()) << 64) | u128::from(host.random_u64());
            // Draw in [0, 1): 53 random bits.
            let draw = (host.random_u64() >> 11) as f64 / (1u64 << 53) as f64;
            (id.max(1), draw < settings.sample_ratio)
        }
    };
    let tracestate = parent.and(crate::http::find_header(headers, "tracestate")).and_then(traceparent::tracestate);
    Some(Box::new(Trace {
        settings,
        trace_id,
        span_id: span_id(host),
        parent: parent.map(|p| p.span_id),
        tracestate,
        sampled,
        system: None,
        request: Vec::new(),
        response_id: None,
        response_model: None,
        finish_reasons: Vec::new(),
        attempts: Vec::new(),
        phases: Vec::new(),
        first_chunk_ms: None,
        capture_content: false,
        input_messages: None,
        output_messages: None,
    }))
}

/// A new, non-zero span id.
pub fn span_id<H: Host>(host: &H) -> u64 {
    host.random_u64().max(1)
}

impl Trace {
    /// The headers an upstream call carries: our attempt span as the parent, the client's
    /// `tracestate`.
    pub fn propagation(&self, attempt_span: u64) -> Vec<(String, String)> {
        let mut headers = vec![("traceparent".to_string(), traceparent::format(self.trace_id, attempt_span, self.sampled))];
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

/// A guard phase's attributes: its profile, how many actions it took, what blocked.
pub fn guard_attrs(summary: Option<&crate::event::GuardSummary>) -> Attrs {
    let Some(summary) = summary else { return Vec::new() };
    let mut attrs: Attrs = vec![
        ("gateway.guard.profile", summary.profile.as_str().into()),
        ("gateway.guard.actions", summary.actions.iter().map(|a| u64::from(a.count)).sum::<u64>().into()),
    ];
    if let Some(rule) = &summary.blocked {
        attrs.push(("gateway.guard.blocked", rule.as_str().into()));
    }
    attrs
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

/// The convention's `gen_ai.provider.name` for a configured provider: its well-known value
/// where the kind (or an OpenAI-compatible URL) identifies one, else the provider's own name.
pub fn provider_system(provider: &ProviderConfig, name: &str) -> String {
    let known = match provider {
        ProviderConfig::OpenAi(p) => match p.flavor {
            OpenAiFlavor::OpenAi => Some("openai"),
            OpenAiFlavor::Mistral => Some("mistral_ai"),
            OpenAiFlavor::Groq => Some("groq"),
            OpenAiFlavor::DeepSeek => Some("deepseek"),
            _ => known_host(&p.base_url),
        },
        ProviderConfig::Azure(_) => Some("azure.ai.openai"),
        ProviderConfig::Anthropic(_) => Some("anthropic"),
        ProviderConfig::Gemini(g) => Some(match g.api {
            crate::config::GeminiApi::GenerativeLanguage { .. } => "gcp.gemini",
            crate::config::GeminiApi::Vertex { .. } => "gcp.vertex_ai",
        }),
        ProviderConfig::Bedrock(_) => Some("aws.bedrock"),
        ProviderConfig::Cohere(_) => Some("cohere"),
        ProviderConfig::WorkersAiBinding(_) | ProviderConfig::Mock => None,
    };
    known.map(str::to_string).unwrap_or_else(|| name.to_string())
}

/// Well-known providers behind an OpenAI-compatible base URL.
fn known_host(base_url: &str) -> Option<&'static str> {
    let host = server_of(base_url)?.0;
    [
        ("api.openai.com", "openai"),
        ("api.x.ai", "x_ai"),
        ("api.perplexity.ai", "perplexity"),
        ("api.deepseek.com", "deepseek"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.groq.com", "groq"),
    ]
    .into_iter()
    .find(|(h, _)| *h == host)
    .map(|(_, system)| system)
}

/// `server.address` and `server.port` of a URL.
pub fn server_of(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        (host, after.strip_prefix(':').map_or(Some(default), |p| p.parse().ok())?)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default),
        }
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

/// Hand the request's export to the background: its spans to `{endpoint}/v1/traces` (when
/// sampled) and its metric points to `{endpoint}/v1/metrics`. Failures are swallowed.
pub fn export<H: Host>(host: &H, trace: &Trace, event: UsageEvent, end_ms: u64) {
    let settings = trace.settings.clone();
    let traces = settings.traces && trace.sampled;
    if !traces && !settings.metrics {
        return;
    }
    let trace = trace.clone();
    let background = host.clone();
    host.wait_until(async move {
        let host = background;
        let bodies = build(&trace, &event, end_ms, traces);
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        for (name, secret) in &settings.headers {
            match host.secret(secret) {
                Some(value) => headers.push((name.clone(), value)),
                // Without its credential the collector would refuse: send nothing.
                None => return,
            }
        }
        for (path, body) in bodies {
            let request = OutboundRequest { method: "POST", url: format!("{}{path}", settings.endpoint), headers: headers.clone(), body: body.into_bytes() };
            let _ = with_timeout(&host, settings.timeout_ms, host.fetch(request)).await;
        }
    });
}

/// The export bodies of one request: (`/v1/traces`, spans) when `traces`, and
/// (`/v1/metrics`, points) when metrics are on.
pub fn build(trace: &Trace, event: &UsageEvent, end_ms: u64, traces: bool) -> Vec<(&'static str, String)> {
    let resource = otlp::Resource { service_name: &trace.settings.service_name };
    let mut out = Vec::with_capacity(2);
    if traces {
        let spans = span::spans(trace, event, end_ms);
        out.push(("/v1/traces", otlp::traces_body(&resource, trace, &spans)));
    }
    if trace.settings.metrics {
        let points = span::metrics(trace, event, end_ms);
        out.push(("/v1/metrics", otlp::metrics_body(&resource, &points)));
    }
    out
}

#[cfg(test)]
mod tests;
