//! A finished request's trace and usage event as OpenTelemetry spans and metric points.
//!
//! One SERVER span per request, named `{gen_ai.operation.name} {gen_ai.request.model}`; a CLIENT
//! child per upstream attempt, named `{operation} {upstream model}`; INTERNAL children for the
//! input guard, the cache lookup and the output guard. Metric points carry bounded attributes
//! only: operation, provider, model, consumer (configured consumers only), tenant, outcome.

use policy::guard::redact_all;
use serde_json::json;

use super::trace::{AttrValue, Attrs, Message, Trace};
use crate::event::{CacheStatus, Outcome, UsageEvent};

/// SERVER, CLIENT, INTERNAL as OTLP numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub span_id: u64,
    pub parent: Option<u64>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ms: u64,
    pub end_ms: u64,
    pub attrs: Attrs,
    /// Status ERROR with this message (an error label, never upstream text).
    pub error: Option<String>,
}

/// Bucket boundaries the convention gives for `gen_ai.client.token.usage`.
pub const TOKEN_BUCKETS: &[f64] =
    &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0];
/// Bucket boundaries the convention gives for `gen_ai.client.operation.duration` and the time
/// to the first chunk (seconds).
pub const DURATION_BUCKETS: &[f64] = &[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];

/// What one metric point measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Histogram { bounds: &'static [f64], value: f64 },
    SumInt(i64),
    SumDouble(f64),
}

/// One delta data point of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub measure: Measure,
    pub attrs: Attrs,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// `gen_ai.operation.name` of a gateway operation.
pub fn operation_name(operation: &str) -> &'static str {
    match operation {
        "embeddings" => "embeddings",
        _ => "chat",
    }
}

fn outcome(event: &UsageEvent) -> &'static str {
    match event.outcome {
        Outcome::Completed => "completed",
        Outcome::Failed => "failed",
        Outcome::StreamError => "stream_error",
        Outcome::ClientDisconnected => "client_disconnected",
    }
}

/// The request's spans: the server span first, then its children.
pub fn spans(trace: &Trace, event: &UsageEvent, end_ms: u64) -> Vec<Span> {
    let operation = operation_name(event.operation);
    let start_ms = end_ms.saturating_sub(event.duration_ms);
    let mut attrs: Attrs = vec![("gen_ai.operation.name", operation.into())];
    let provider = trace.system.clone().or_else(|| event.provider.clone());
    if let Some(p) = &provider {
        attrs.push(("gen_ai.provider.name", p.as_str().into()));
    }
    if let Some(model) = &event.model {
        attrs.push(("gen_ai.request.model", model.as_str().into()));
    }
    attrs.extend(trace.request.iter().cloned());
    if let Some(model) = trace.response_model.clone().or_else(|| event.upstream_model.clone()) {
        attrs.push(("gen_ai.response.model", model.into()));
    }
    if let Some(id) = &trace.response_id {
        attrs.push(("gen_ai.response.id", id.as_str().into()));
    }
    if !trace.finish_reasons.is_empty() {
        attrs.push(("gen_ai.response.finish_reasons", AttrValue::Strs(trace.finish_reasons.clone())));
    }
    if let Some(usage) = &event.usage {
        attrs.push(("gen_ai.usage.input_tokens", usage.input_tokens.into()));
        attrs.push(("gen_ai.usage.output_tokens", usage.output_tokens.into()));
        if usage.cached_input_tokens > 0 {
            attrs.push(("gen_ai.usage.cache_read.input_tokens", usage.cached_input_tokens.into()));
        }
        if usage.cache_write_tokens > 0 {
            attrs.push(("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens.into()));
        }
        if usage.reasoning_tokens > 0 {
            attrs.push(("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens.into()));
        }
    }
    if let Some((host, port)) = trace.attempts.last().and_then(|a| a.server.clone()) {
        attrs.push(("server.address", host.into()));
        attrs.push(("server.port", u64::from(port).into()));
    }
    if let Some(error) = event.error {
        attrs.push(("error.type", error.into()));
    }
    attrs.push(("http.response.status_code", u64::from(event.status).into()));
    attrs.push(("gateway.request_id", event.request_id.as_str().into()));
    attrs.push(("gateway.outcome", outcome(event).into()));
    attrs.push(("gateway.stream", AttrValue::Bool(event.stream)));
    if let Some(c) = &event.consumer {
        attrs.push(("gateway.consumer", c.as_str().into()));
    }
    if let Some(t) = &event.tenant {
        attrs.push(("gateway.tenant", t.as_str().into()));
    }
    if let Some(p) = &event.provider {
        attrs.push(("gateway.provider", p.as_str().into()));
    }
    if let Some(cache) = &event.cache {
        attrs.push(("gateway.cache.status", cache.status.header_value().into()));
    }
    if let Some(route) = &event.route {
        attrs.push(("gateway.route.target", route.target.as_str().into()));
        attrs.push(("gateway.route.region", route.region.as_str().into()));
        attrs.push(("gateway.route.attempts", u64::from(route.attempts).into()));
        if let Some(g) = route.gco2e {
            attrs.push(("gateway.gco2e", AttrValue::Double(g)));
        }
    }
    if let Some(cost) = event.quota.as_ref().and_then(|q| q.cost_nanos) {
        attrs.push(("gateway.cost_usd_nanos", cost.into()));
    }
    if let Some(messages) = &trace.input_messages {
        attrs.push(("gen_ai.input.messages", messages_json(messages).into()));
    }
    if let Some(messages) = &trace.output_messages {
        attrs.push(("gen_ai.output.messages", messages_json(messages).into()));
    }
    let name = match &event.model {
        Some(model) => format!("{operation} {model}"),
        None => operation.to_string(),
    };
    let mut out = Vec::with_capacity(1 + trace.attempts.len() + trace.phases.len());
    out.push(Span {
        span_id: trace.span_id,
        parent: trace.parent,
        name,
        kind: SpanKind::Server,
        start_ms,
        end_ms,
        attrs,
        error: event.error.map(str::to_string),
    });
    for attempt in &trace.attempts {
        let mut attrs: Attrs = vec![
            ("gen_ai.operation.name", operation.into()),
            ("gen_ai.provider.name", attempt.system.as_str().into()),
            ("gen_ai.request.model", attempt.model.as_str().into()),
            ("gateway.provider", attempt.provider.as_str().into()),
        ];
        if let Some((host, port)) = &attempt.server {
            attrs.push(("server.address", host.as_str().into()));
            attrs.push(("server.port", u64::from(*port).into()));
        }
        if let Some(status) = attempt.status {
            attrs.push(("http.response.status_code", u64::from(status).into()));
        }
        if let Some(error) = attempt.error {
            attrs.push(("error.type", error.into()));
        }
        out.push(Span {
            span_id: attempt.span_id,
            parent: Some(trace.span_id),
            name: format!("{operation} {}", attempt.model),
            kind: SpanKind::Client,
            start_ms: attempt.start_ms,
            end_ms: attempt.end_ms,
            attrs,
            error: attempt.error.map(str::to_string),
        });
    }
    for phase in &trace.phases {
        out.push(Span {
            span_id: phase.span_id,
            parent: Some(trace.span_id),
            name: phase.name.to_string(),
            kind: SpanKind::Internal,
            start_ms: phase.start_ms,
            end_ms: phase.end_ms.max(phase.start_ms),
            attrs: phase.attrs.clone(),
            error: None,
        });
    }
    out
}

/// The request's metric points (delta temporality: each point is this request alone).
pub fn metrics(trace: &Trace, event: &UsageEvent, end_ms: u64) -> Vec<MetricPoint> {
    let operation = operation_name(event.operation);
    let start_ms = end_ms.saturating_sub(event.duration_ms);
    let mut base: Attrs = vec![("gen_ai.operation.name", operation.into())];
    if let Some(p) = trace.system.clone().or_else(|| event.provider.clone()) {
        base.push(("gen_ai.provider.name", p.into()));
    }
    if let Some(model) = &event.model {
        base.push(("gen_ai.request.model", model.as_str().into()));
    }
    // A token's subject is unbounded: only configured consumers label metrics.
    if let (Some(c), None) = (&event.consumer, &event.issuer) {
        base.push(("gateway.consumer", c.as_str().into()));
    }
    if let Some(t) = &event.tenant {
        base.push(("gateway.tenant", t.as_str().into()));
    }
    let point = |name, unit, description, measure, extra: Attrs| {
        let mut attrs = base.clone();
        attrs.extend(extra);
        MetricPoint { name, unit, description, measure, attrs, start_ms, end_ms }
    };
    let mut out = Vec::new();
    if let Some(usage) = &event.usage {
        for (kind, tokens) in [("input", usage.input_tokens), ("output", usage.output_tokens)] {
            out.push(point(
                "gen_ai.client.token.usage",
                "{token}",
                "Number of input and output tokens used",
                Measure::Histogram { bounds: TOKEN_BUCKETS, value: tokens as f64 },
                vec![("gen_ai.token.type", kind.into())],
            ));
        }
    }
    let error: Attrs = event.error.map(|e| vec![("error.type", e.into())]).unwrap_or_default();
    out.push(point(
        "gen_ai.client.operation.duration",
        "s",
        "GenAI operation duration",
        Measure::Histogram { bounds: DURATION_BUCKETS, value: event.duration_ms as f64 / 1000.0 },
        error,
    ));
    if let Some(ms) = trace.first_chunk_ms.filter(|_| event.stream) {
        out.push(point(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk of a streamed response",
            Measure::Histogram { bounds: DURATION_BUCKETS, value: ms as f64 / 1000.0 },
            Vec::new(),
        ));
    }
    out.push(point("gateway.requests", "{request}", "Requests by outcome", Measure::SumInt(1), vec![("gateway.outcome", outcome(event).into())]));
    if let Some(cache) = event.cache.as_ref().filter(|c| matches!(c.status, CacheStatus::Hit | CacheStatus::SemanticHit)) {
        out.push(point(
            "gateway.cache.hits",
            "{request}",
            "Requests answered from the response cache",
            Measure::SumInt(1),
            vec![("gateway.cache.status", cache.status.header_value().into())],
        ));
    }
    for action in event.guard.iter().flat_map(|g| &g.actions) {
        out.push(point(
            "gateway.guard.actions",
            "{action}",
            "Guardrail actions taken",
            Measure::SumInt(i64::from(action.count)),
            vec![("gateway.guard.action", action.action.into()), ("gateway.guard.direction", action.direction.into())],
        ));
    }
    if let Some(label @ ("rate_limit_exceeded" | "insufficient_quota")) = event.error {
        out.push(point("gateway.limit.rejections", "{request}", "Requests refused by a rate limit or budget", Measure::SumInt(1), vec![("error.type", label.into())]));
    }
    if let Some(g) = event.route.as_ref().and_then(|r| r.gco2e) {
        out.push(point("gateway.gco2e", "g", "Estimated grams of CO2e of the requests", Measure::SumDouble(g), Vec::new()));
    }
    out
}

/// Captured messages in the convention's shape, every text redacted by the PII detectors.
fn messages_json(messages: &[Message]) -> String {
    let list: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let mut v = json!({ "role": m.role, "parts": [{ "type": "text", "content": redact_all(&m.text) }] });
            if let Some(reason) = &m.finish_reason {
                v["finish_reason"] = json!(reason);
            }
            v
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

