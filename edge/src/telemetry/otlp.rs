//! The OTLP/HTTP JSON encoding (opentelemetry-proto's JSON mapping): `ExportTraceServiceRequest`
//! and `ExportMetricsServiceRequest` bodies. Ids are lower-case hex, 64-bit integers and
//! timestamps are decimal strings, enums are integers, attributes are `{key, value: {...Value}}`.
//! Written straight into a string: one request's export is encoded in microseconds.

use std::fmt::Write;

use super::span::{Measure, MetricPoint, Span};
use super::trace::{AttrValue, Attrs, Trace};

/// The resource every export describes: this gateway.
pub struct Resource<'a> {
    pub service_name: &'a str,
}

const SCOPE: &str = "edge-ai-gateway";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `aggregationTemporality`: DELTA.
const DELTA: u8 = 1;

/// `POST /v1/traces` body with the spans of one trace.
pub fn traces_body(resource: &Resource<'_>, trace: &Trace, spans: &[Span]) -> String {
    let mut out = envelope(resource, "Spans", "spans");
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"traceId":"{:032x}","spanId":"{:016x}""#, trace.trace_id, span.span_id);
        if let Some(parent) = span.parent {
            let _ = write!(out, r#","parentSpanId":"{parent:016x}""#);
        }
        if let Some(state) = trace.tracestate.as_deref().filter(|_| span.parent == trace.parent) {
            out.push_str(r#","traceState":"#);
            string(state, &mut out);
        }
        out.push_str(r#","name":"#);
        string(&span.name, &mut out);
        let _ = write!(
            out,
            r#","kind":{},"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":"#,
            span.kind as u8,
            nanos(span.start_ms),
            nanos(span.end_ms)
        );
        attributes(&span.attrs, &mut out);
        match &span.error {
            Some(message) => {
                out.push_str(r#","status":{"code":2,"message":"#);
                string(message, &mut out);
                out.push('}');
            }
            None => out.push_str(r#","status":{}"#),
        }
        out.push('}');
    }
    out.push_str("]}]}]}");
    out
}

/// `POST /v1/metrics` body: one metric per point (a request has at most one point per metric
/// and attribute set).
pub fn metrics_body(resource: &Resource<'_>, points: &[MetricPoint]) -> String {
    let mut out = envelope(resource, "Metrics", "metrics");
    for (i, point) in points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"name":"{}","unit":"{}","description":"{}","#, point.name, point.unit, point.description);
        let times = format!(r#""startTimeUnixNano":"{}","timeUnixNano":"{}""#, nanos(point.start_ms), nanos(point.end_ms));
        match &point.measure {
            Measure::Histogram { bounds, value } => {
                let bucket = bounds.iter().position(|b| value <= b).unwrap_or(bounds.len());
                let _ = write!(out, r#""histogram":{{"aggregationTemporality":{DELTA},"dataPoints":[{{{times},"count":"1","sum":{},"min":{},"max":{},"bucketCounts":["#, double(*value), double(*value), double(*value));
                for n in 0..=bounds.len() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(if n == bucket { "\"1\"" } else { "\"0\"" });
                }
                out.push_str(r#"],"explicitBounds":["#);
                for (n, b) in bounds.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(&double(*b));
                }
                out.push_str(r#"],"attributes":"#);
            }
            Measure::SumInt(n) => {
                let _ = write!(out, r#""sum":{{"aggregationTemporality":{DELTA},"isMonotonic":true,"dataPoints":[{{{times},"asInt":"{n}","attributes":"#);
            }
            Measure::SumDouble(v) => {
                let _ = write!(out, r#""sum":{{"aggregationTemporality":{DELTA},"isMonotonic":true,"dataPoints":[{{{times},"asDouble":{},"attributes":"#, double(*v));
            }
        }
        attributes(&point.attrs, &mut out);
        out.push_str("}]}}");
    }
    out.push_str("]}]}]}");
    out
}

/// The opening of an export body up to its list of `items`: `{"resource{signal}":[{"resource":
/// ..., "scope{signal}":[{"scope": ..., "{items}":[` (closed by `]}]}]}`).
fn envelope(resource: &Resource<'_>, signal: &str, items: &str) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(out, r#"{{"resource{signal}":[{{"resource":"#);
    resource_json(resource, &mut out);
    let _ = write!(out, r#","scope{signal}":[{{"scope":{{"name":"{SCOPE}","version":"{VERSION}"}},"{items}":["#);
    out
}

fn resource_json(resource: &Resource<'_>, out: &mut String) {
    let attrs: Attrs = vec![
        ("service.name", resource.service_name.into()),
        ("service.version", VERSION.into()),
        ("telemetry.sdk.name", SCOPE.into()),
        ("telemetry.sdk.language", "rust".into()),
    ];
    out.push_str(r#"{"attributes":"#);
    attributes(&attrs, out);
    out.push('}');
}

fn nanos(ms: u64) -> u128 {
    u128::from(ms) * 1_000_000
}

/// A finite JSON number (NaN and infinities have no JSON form: 0).
fn double(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".into()
    }
}

fn attributes(attrs: &Attrs, out: &mut String) {
    out.push('[');
    for (i, (key, value)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"key":""#);
        out.push_str(key);
        out.push_str(r#"","value":"#);
        any_value(value, out);
        out.push('}');
    }
    out.push(']');
}

fn any_value(value: &AttrValue, out: &mut String) {
    match value {
        AttrValue::Str(s) => {
            out.push_str(r#"{"stringValue":"#);
            string(s, out);
            out.push('}');
        }
        AttrValue::Int(n) => {
            let _ = write!(out, r#"{{"intValue":"{n}"}}"#);
        }
        AttrValue::Double(v) => {
            let _ = write!(out, r#"{{"doubleValue":{}}}"#, double(*v));
        }
        AttrValue::Bool(b) => {
            let _ = write!(out, r#"{{"boolValue":{b}}}"#);
        }
        AttrValue::Strs(list) => {
            out.push_str(r#"{"arrayValue":{"values":["#);
            for (i, s) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"stringValue":"#);
                string(s, out);
                out.push('}');
            }
            out.push_str("]}}");
        }
    }
}

/// A JSON string literal.
fn string(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}
