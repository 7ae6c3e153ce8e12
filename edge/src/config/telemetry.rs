//! The `telemetry` section: OpenTelemetry traces and metrics exported over OTLP/HTTP JSON
//! (docs/observability.md), and who opts in to having prompts and completions captured.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::providers::ProviderCheck;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    otlp: RawOtlp,
    #[serde(default)]
    traces: Option<bool>,
    #[serde(default)]
    metrics: Option<bool>,
    #[serde(default)]
    sample_ratio: Option<f64>,
    #[serde(default)]
    capture_content: bool,
    /// Per consumer (`auth.consumers[].id`): overrides of the document-wide setting.
    #[serde(default)]
    consumers: BTreeMap<String, RawContentCapture>,
    /// Per model (a `models` key): overrides of the document-wide setting.
    #[serde(default)]
    models: BTreeMap<String, RawContentCapture>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtlp {
    endpoint: String,
    /// Header name -> `{ "secret": NAME }`: header values come from secrets only.
    #[serde(default)]
    headers: BTreeMap<String, RawSecretRef>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    service_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecretRef {
    secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContentCapture {
    capture_content: bool,
}

/// Where and what to export.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The collector's OTLP/HTTP root, without trailing slash (`/v1/traces` and `/v1/metrics`
    /// are appended).
    pub endpoint: String,
    /// (header name, secret name): the value is read through the host at export time.
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub service_name: String,
    pub traces: bool,
    pub metrics: bool,
    /// The share of new traces exported, 0..=1 (a client's sampled flag decides for its traces).
    pub sample_ratio: f64,
    pub capture_content: bool,
    pub consumers: BTreeMap<String, bool>,
    pub models: BTreeMap<String, bool>,
}

impl Telemetry {
    /// Whether prompts and completions of this request are exported: the consumer's setting,
    /// else the model's, else the document's.
    pub fn captures_content(&self, consumer: Option<&str>, model: Option<&str>) -> bool {
        consumer
            .and_then(|c| self.consumers.get(c))
            .or_else(|| model.and_then(|m| self.models.get(m)))
            .copied()
            .unwrap_or(self.capture_content)
    }
}

pub(super) fn validate_telemetry(
    raw: Option<RawTelemetry>,
    consumers: &dyn Fn(&str) -> bool,
    models: &dyn Fn(&str) -> bool,
    issue: &mut impl FnMut(String, String),
) -> Option<Telemetry> {
    let raw = raw?;
    let mut check = ProviderCheck { path: "telemetry", issues: Vec::new() };
    let endpoint = check.url(Some(raw.otlp.endpoint), None, "otlp.endpoint");
    let mut headers = Vec::new();
    for (name, value) in raw.otlp.headers {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            check.issue(&format!("otlp.headers.{name}"), "must be an HTTP header name (letters, digits, '-', '_')".into());
        } else if matches!(lower.as_str(), "content-type" | "content-length" | "host" | "traceparent" | "tracestate") {
            check.issue(&format!("otlp.headers.{name}"), "is set by the gateway".into());
        }
        check.secret(&value.secret, &format!("otlp.headers.{name}.secret"));
        headers.push((lower, value.secret));
    }
    let timeout_ms = raw.otlp.timeout_ms.unwrap_or(5_000);
    if timeout_ms == 0 || timeout_ms > 30_000 {
        check.issue("otlp.timeout_ms", "must be between 1 and 30000 (the platform ends background work about 30 s after the response)".into());
    }
    let service_name = raw.otlp.service_name.unwrap_or_else(|| "edge-ai-gateway".into());
    if service_name.trim().is_empty() || service_name.len() > 128 {
        check.issue("otlp.service_name", "must be 1 to 128 characters".into());
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        check.issue("sample_ratio", "must be between 0 and 1".into());
    }
    for name in raw.consumers.keys().filter(|c| !consumers(c)) {
        check.issue(&format!("consumers.{name}"), format!("'{name}' is not a consumer in auth.consumers"));
    }
    for name in raw.models.keys().filter(|m| !models(m)) {
        check.issue(&format!("models.{name}"), format!("'{name}' is not a configured model"));
    }
    for (path, message) in check.issues {
        issue(path, message);
    }
    Some(Telemetry {
        endpoint,
        headers,
        timeout_ms,
        service_name,
        traces: raw.traces.unwrap_or(true),
        metrics: raw.metrics.unwrap_or(true),
        sample_ratio,
        capture_content: raw.capture_content,
        consumers: raw.consumers.into_iter().map(|(k, v)| (k, v.capture_content)).collect(),
        models: raw.models.into_iter().map(|(k, v)| (k, v.capture_content)).collect(),
    })
}
